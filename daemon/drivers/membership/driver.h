/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The membership engine interface: one const MembershipDriver per engine
 * (postgresql, redis, static, mdns), chosen by core/membership.c from
 * [Cluster] Membership=. The core keeps the view, the leases and the
 * callbacks; an engine only carries records:
 *
 * - it publishes this host's record (membership_backend_self()) and renews
 *   it at least every lease/3, and at once after publish() was called;
 * - it reports every other host's record it reads with the lease left on it
 *   (membership_backend_seen()), a host that withdrew (_gone()), and, after
 *   a read of the whole set, which hosts were in it (_sync_begin/_end):
 *   hosts not seen between the two are dropped;
 * - it reports its connection state (membership_backend_state()); the core
 *   logs transitions. A lost server means errors and a reconnect with
 *   backoff, never an exit; the view stays as it was until leases run out.
 *
 * All calls come on the loop. close() withdraws this host's record, bounded
 * to about a second, and leaves nothing armed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "../../core/membership.h"

#define MEMBERSHIP_DRIVER_ABI 1

typedef struct MembershipDriver MembershipDriver;

/* What an engine is started with (borrowed during open() only: an engine copies what it keeps). */
typedef struct MembershipOptions {
        const char *host_id;
        const char *address;
        const char *connection;    /* MembershipConnection= (a conninfo, a Redis address or URL) */
        char *const *peers;        /* Peers= "ID=ADDR:PORT" */
        const char *table;         /* postgresql: table and channel name; redis: key prefix. NULL: default */
        uint64_t lease_usec;
} MembershipOptions;

/* The generic part every engine's struct embeds first. */
typedef struct MembershipBackend {
        const MembershipDriver *driver;
        Membership *membership;    /* back-reference */
        sd_event *event;           /* borrowed */
} MembershipBackend;

struct MembershipDriver {
        const char *name;          /* "postgresql": as in Membership= */
        unsigned abi;
        size_t instance_size;
        /* Starts (connecting needs no answer yet). < 0 with *reterr_msg (malloc'd, may be NULL) saying
         * which setting is wrong; close() is called on failure too. */
        int (*open)(MembershipBackend *b, const MembershipOptions *o, char **reterr_msg);
        void (*close)(MembershipBackend *b);
        /* This host's record changed: publish it soon (on the loop, not from inside this call). */
        void (*publish)(MembershipBackend *b);
};

extern const MembershipDriver membership_postgresql_driver;
extern const MembershipDriver membership_redis_driver;
extern const MembershipDriver membership_static_driver;
extern const MembershipDriver membership_mdns_driver;

/* This host's record as it is now. */
const MemberRecord *membership_backend_self(MembershipBackend *b);
/* This host's record is stored with lease_usec left (from now). */
void membership_backend_renewed(MembershipBackend *b, uint64_t lease_usec);
/* Host rec->id announced rec, lease_left_usec left on it (from now). The core copies what it needs.
 * This host's own record is ignored. */
void membership_backend_seen(MembershipBackend *b, const MemberRecord *rec, uint64_t lease_left_usec);
/* Host id withdrew. */
void membership_backend_gone(MembershipBackend *b, const char *id);
/* A read of the whole set starts / ended: hosts not seen in between are dropped at the end. */
void membership_backend_sync_begin(MembershipBackend *b);
void membership_backend_sync_end(MembershipBackend *b);
/* Connected (error NULL), or not, and why (copied; logged once per change of text). */
void membership_backend_state(MembershipBackend *b, const char *error);
/* The peer transport (membership_set_transport()), NULL until set. */
Transport *membership_backend_transport(MembershipBackend *b);
/* The loop's CLOCK_MONOTONIC now. */
uint64_t membership_backend_now(MembershipBackend *b);

/*
 * For tests and for engines the core does not pick by Membership= (the unit tests' own): as
 * membership_new() with driver (NULL: none) and opts instead of ClusterSettings.
 */
int membership_new_with_driver(sd_event *e, const MembershipDriver *driver, const MembershipOptions *opts,
                               Membership **ret);
/* The backend (tests feed it records). */
MembershipBackend *membership_get_backend(Membership *m);
