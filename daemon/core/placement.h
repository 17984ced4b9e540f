/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Actor placement: the one place that answers "which host serves actor
 * (type, id)". The actor block asks it before every activation and routes
 * by the answer; nothing else in the daemon may assume that all actors live
 * on this host. On one host the answer is always this host: the multi-host
 * work puts a real placement (leases in PostgreSQL or Redis, every daemon
 * computing the same owner) behind the same interface.
 */
#pragma once

#include <stdbool.h>

typedef struct Placement Placement;

typedef struct PlacementAnswer {
        bool local;             /* this host serves the actor */
        const char *host;       /* the serving host's name (borrowed, valid until the next change) */
} PlacementAnswer;

/* The single-host placement. NULL on OOM. */
Placement *placement_new_local(void);
Placement *placement_free(Placement *p);

/* Who serves (type, id). -ENOENT when no host serves the type at all (local ones are told with
 * placement_set_type_hosted()). */
int placement_lookup(const Placement *p, const char *type, const char *id, PlacementAnswer *ret);
/* This host now serves (or no longer serves) actor type 'type'. -ENOMEM. */
int placement_set_type_hosted(Placement *p, const char *type, bool hosted);
/* "placement: connected" as Dapr's metadata shows it. */
const char *placement_status(const Placement *p);
