/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Actor placement: the one place that answers "which host serves actor
 * (type, id)". The actor block asks it before every activation and routes
 * by the answer; nothing else in the daemon may assume that all actors live
 * on this host.
 *
 * On one host the answer is always this host. In a cluster ([Cluster] in
 * mooringd.conf) every daemon computes the same owner from the same
 * membership view, with no coordinator: rendezvous hashing (highest random
 * weight) over the live hosts that serve the type. Each host scores
 * hash(host id, type, actor id) and the highest score owns the actor, so a
 * host joining or leaving moves only the actors it wins or held, about 1/N
 * of them, and the owner of an actor never depends on the order in which
 * hosts were seen.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct Placement Placement;
struct Membership;

typedef struct PlacementAnswer {
        bool local;             /* this host serves the actor */
        const char *host;       /* the serving host's id (borrowed, valid until the next change) */
        const char *address;    /* its peer listener "ADDR:PORT" (NULL when local) */
} PlacementAnswer;

/* The single-host placement. NULL on OOM. */
Placement *placement_new_local(void);
/* The cluster placement over m's view (borrowed: it outlives the placement); self_id is this
 * host's id in it. The types told with placement_set_type_hosted() are announced through m.
 * NULL on OOM. */
Placement *placement_new_cluster(sd_event *e, struct Membership *m, const char *self_id);
/* With PostgreSQL or Redis membership a host owns actors only while its own lease, as last renewed,
 * has a third of its length left (the others drop it when it ends). fn runs when that changes
 * without a change of the view (the engine went away). */
typedef void (*PlacementLapseFn)(Placement *p, void *userdata);
void placement_set_lapse_callback(Placement *p, PlacementLapseFn fn, void *userdata);
Placement *placement_free(Placement *p);

/* Who serves (type, id). -ENOENT when no host serves the type at all (local ones are told with
 * placement_set_type_hosted()); -EHOSTUNREACH when this host's own lease could not be renewed
 * (see placement_set_lapse_callback()): then it owns nothing, so that a host cut off never runs an actor
 * that another host may have activated meanwhile. */
int placement_lookup(const Placement *p, const char *type, const char *id, PlacementAnswer *ret);
/* The owner under a view given as hosts (for the unit test and for comparing two views). */
struct ClusterHost;
int placement_owner_in(const struct ClusterHost *hosts, size_t n, const char *type, const char *id,
                       const struct ClusterHost **ret);
/*
 * Who may still have (type, id) active although this host owns it now: when the view changed within
 * window_usec, the host that owns it when this one is left out (with rendezvous hashing, the one it
 * was on before this host came, or came back). A host taking an actor over asks it to let go first
 * (its calls drain), so that no actor is ever active on two hosts. -ENOENT: nobody to ask.
 */
int placement_previous_owner(const Placement *p, const char *type, const char *id, uint64_t window_usec,
                             PlacementAnswer *ret);
/* This host now serves (or no longer serves) actor type 'type'. -ENOMEM. */
int placement_set_type_hosted(Placement *p, const char *type, bool hosted);
/* Changes of the view: how many so far (compare to see whether owners may have moved). */
uint64_t placement_generation(const Placement *p);
bool placement_is_cluster(const Placement *p);
/* "placement: connected" as Dapr's metadata shows it. */
const char *placement_status(const Placement *p);
