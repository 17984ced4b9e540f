/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster membership: which hosts are alive, where their peer listeners are,
 * and which apps and actor types each one serves. Every daemon of a cluster
 * announces its own record with a lease in a shared engine (a PostgreSQL
 * table, Redis keys, a static peer list asked over the peer transport, or
 * DNS-SD through Avahi) and reads everyone else's; invocation (blocks/invoke.c)
 * and actor placement (core/placement.c) decide from the view kept here.
 *
 * This file is the engine-independent part: the view, the leases by the local
 * clock, the change callbacks. The engines are in drivers/membership/ and
 * report through drivers/membership/driver.h.
 *
 * Guarantees:
 * - The view always holds this host (self = true), whatever the engine's
 *   state; other hosts are in it while their lease runs. A host's lease is
 *   what its engine said was left at the last read, counted down on this
 *   host's monotonic clock, so an engine that goes away leaves the last view
 *   in place until those leases run out (then only this host remains), and
 *   the engine reconnects with backoff meanwhile.
 * - Hosts are sorted by id; apps and actor types are sorted, unique,
 *   NULL-terminated. What membership_hosts()/membership_find() return is
 *   valid until the next change of the view, i.e. until the loop runs again
 *   or this host's own record is changed through membership_set_*().
 * - membership_generation() bumps on every change of the view (a host came
 *   or went, its address, apps or actor types changed); renewals that change
 *   nothing do not bump it. Callbacks run on the loop after a change (changes
 *   made in one loop iteration are coalesced into one run), in the order they
 *   were added; a callback may add or remove callbacks.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "../forward.h"
#include "../util/cleanup.h"
#include "settings.h"

typedef struct ClusterHost {
        const char *id;            /* host id */
        const char *address;       /* "ADDR:PORT" / "[V6]:PORT" of its peer listener */
        char *const *apps;         /* app ids with a healthy app there, sorted, NULL-terminated */
        char *const *actor_types;  /* actor types hosted there, sorted, NULL-terminated */
        bool self;
        /* appended to the agreed API: when the lease ends on CLOCK_MONOTONIC (self: the end of the lease
         * last renewed in the engine; 0 when never renewed, or for an engine without leases) */
        uint64_t lease_end_usec;
} ClusterHost;

typedef struct Membership Membership;
typedef void (*MembershipChangedFn)(Membership *m, void *userdata);

/*
 * Starts membership on loop e with the engine cs->membership (CLUSTER_MEMBERSHIP_NONE: a view of this
 * host alone). host_id and address (what peers dial) are this host's. Copies what it needs from cs.
 * A setting the engine cannot use (a malformed MembershipConnection=, Peers=) is logged with what is
 * wrong and returns -EINVAL; a missing engine library -EOPNOTSUPP (logged). A server that cannot be
 * reached is not an error: the engine keeps trying. -ENOMEM.
 */
int membership_new(sd_event *e, const ClusterSettings *cs, const char *host_id, const char *address,
                   Membership **ret);
/* Withdraws this host's record (best effort, bounded to about a second) and frees. NULL-safe. */
Membership *membership_free(Membership *m);
DEFINE_CLEANUP_FUNC(Membership, membership_free);

/* This host's healthy apps (any order, copied); republished when they differ. 0, -EINVAL (an empty or
 * oversized id), -ENOMEM (nothing changed). */
int membership_set_apps(Membership *m, char *const *apps);
/* The actor types this host serves (core/placement.c). As membership_set_apps(). */
int membership_set_actor_types(Membership *m, char *const *types);

/* Live hosts, self included, sorted by id; *ret_n set. Valid until the next change. */
const ClusterHost *membership_hosts(const Membership *m, size_t *ret_n);
/* The live host host_id, or NULL. */
const ClusterHost *membership_find(const Membership *m, const char *host_id);
/* Bumps on every change of the view. */
uint64_t membership_generation(const Membership *m);

/* Adds fn(userdata). -ENOMEM, -EEXIST when the pair is there already. */
int membership_add_callback(Membership *m, MembershipChangedFn fn, void *userdata);
/* Removes the pair, also from inside a callback. -ENOENT when it is not there. */
int membership_remove_callback(Membership *m, MembershipChangedFn fn, void *userdata);

/* The transport for calls to peers (static membership asks each peer for its record); borrowed, must
 * outlive m. Set by the Manager right after membership_new(). */
void membership_set_transport(Membership *m, Transport *t);

/* ---- for the admin route and mooringctl ---- */

/* "postgresql", "redis", "static", "mdns", "none". */
const char *membership_engine(const Membership *m);
/* Why the engine is not connected right now, or NULL when it is. */
const char *membership_engine_error(const Membership *m);
/* LeaseSec= in force. */
uint64_t membership_lease_usec(const Membership *m);
/*
 * The address from which another daemon announces this host's id (two hosts given the same
 * HostId=), or NULL. While that lasts (and for a lease after it was last seen) this host's own
 * lease is not renewed in the view, so placement counts it as no member: it owns no actor. Logged.
 */
const char *membership_self_conflict(const Membership *m);
/* This host's record as JSON (GET /mooring/peer/v1/self, the Redis value, ...): malloc'd, NULL on OOM. */
char *membership_self_json(const Membership *m);

/* ---- records: one host's announcement, as the engines carry it ---- */

typedef struct MemberRecord {
        char *id;
        char *address;
        char **apps;               /* sorted, unique; never NULL once parsed/made */
        char **actor_types;
        uint64_t generation;       /* the announcing host's own counter: bumps when its record changes */
} MemberRecord;

void member_record_done(MemberRecord *r);
/*
 * Parses a record in JSON: {"id": .., "address": "ADDR:PORT", "apps": [..], "actorTypes": [..],
 * "generation": N} (unknown keys ignored). Checks every field (see member_id_is_valid() and
 * member_name_is_valid()), sorts and dedups the lists. 0 with *ret filled, -EINVAL with nothing
 * allocated, -ENOMEM. Outside input: fuzzed by tests/fuzz/fuzz-membership-record.c.
 */
int member_record_parse(const char *text, size_t len, MemberRecord *ret);
/* The record as compact JSON, malloc'd; NULL on OOM. */
char *member_record_to_json(const MemberRecord *r);
/* A host id: 1..253 bytes of [A-Za-z0-9._-], starting with a letter or digit (a DNS name). */
bool member_id_is_valid(const char *s);
/* An app id or actor type: 1..256 bytes, valid UTF-8, no control characters. */
bool member_name_is_valid(const char *s);
