/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The actor block: Dapr's virtual actors, independent of HTTP or D-Bus.
 *
 * - Discovery: when an app becomes healthy (the registry's
 *   REGISTRY_APP_HEALTH_CHANGED callback, again after every recovery) the
 *   block asks it GET /dapr/config and hosts the types it lists, with their
 *   idle timeout, drain timeout and reentrancy settings. A type goes to the
 *   first app that declares it; a second app declaring it is logged and
 *   ignored. Which host serves an actor is asked of core/placement.h.
 * - Turns: one Actor per active (type, id), created on the first call, timer
 *   or reminder. At most one turn is in the app at a time; others wait in a
 *   FIFO bounded by ACTOR_QUEUE_MAX (past it: -EBUSY). With reentrancy on, a
 *   call carrying the running turn's Dapr-Reentrancy-Id enters at once, up to
 *   maxStackDepth. Each call is bounded by the hosting app's InvokeTimeoutSec=.
 * - Idle actors are deactivated (DELETE /actors/{type}/{id}) after their
 *   type's idle timeout: one monotonic heap of idle deadlines, no scan.
 * - State: keys "<app>||<type>||<id>||<key>" in the actor state store (the
 *   state store marked actorStateStore: "true", else an embedded SQLite
 *   store of the block's own), through the state block's transactional path.
 * - Reminders are durable: kept per type under "actors||<type>" as a JSON
 *   array in Dapr's record shape, written back (coalesced) after each
 *   change and fire, loaded when the type is hosted; one realtime heap holds
 *   every reminder and timer. Timers live in memory with their actor.
 *
 * Every call returns < 0 when nothing was started (and no callback runs);
 * otherwise its done runs exactly once, later, on the loop. Errors: -ENODEV
 * actors unavailable (no usable actor state store), -ENOENT no app hosts the
 * type, -EPERM the caller does not host the type (reminders, state),
 * -EADDRNOTAVAIL the actor is not active here (state, timers), -EBUSY the
 * actor's queue is full, -ELOOP reentrancy deeper than maxStackDepth,
 * -EINVAL bad input (*reterr says which), -EBADMSG the app answered non-200,
 * -EREMCHG (a call from a peer host, local_only) another host owns the actor by this host's view.
 *
 * In a cluster, core/placement.h names the owner of each actor; a method call for an actor owned
 * elsewhere is forwarded to that host over the peer transport (and again after a change of owner,
 * for up to FORWARD_PATIENCE_USEC while the owner cannot be reached). When the view changes, actors
 * this host no longer owns take no new turn, finish the ones they have (bounded by their type's
 * drainOngoingCallTimeout) and are deactivated.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "../drivers/state/driver.h"
#include "../forward.h"

#define ACTOR_QUEUE_MAX 1024U

typedef struct ActorCall ActorCall;

/* Hooks the block into the registry (discovery). */
int actors_setup(Registry *r);
/* The cluster's membership was started (registry->membership): placement follows its view from now on.
 * host_id: this host's id in it. -ENOMEM. */
int actors_attach_membership(Registry *r, const char *host_id);
/* Ends every turn (done gets -ECANCELED), frees everything, unhooks. */
void actors_done(Registry *r);
/* After the state stores changed (start, reload): picks the actor state store again. */
void actors_sync_store(Registry *r);
/* The store actors use now (NULL: none usable); *ret_error says why not. */
StateStore *actors_state_store(Registry *r, const char **ret_error);

/* ---- method calls ---- */

typedef struct ActorInvokeRequest {
        const char *caller_app;   /* NULL: not an app */
        const char *type, *id, *method;  /* unescaped */
        const char *query;        /* raw query string without '?', or NULL */
        char *const *headers;     /* pairs, NULL-terminated; hop-by-hop ones are dropped here */
        const void *body;         /* borrowed until done */
        size_t body_len;
        bool local_only;          /* from a peer host: run here or fail with -EREMCHG (never sent on) */
} ActorInvokeRequest;

typedef struct ActorAnswer {
        unsigned status;
        char *const *headers;     /* pairs, hop-by-hop removed */
        const void *body;
        size_t body_len;
} ActorAnswer;

/* error 0: the app's answer (200, or any status with X-DaprErrorResponseHeader); -EBADMSG: the app
 * answered non-200 (a carries its answer); else a is NULL and message says why. */
typedef void (*ActorInvokeDoneFn)(const ActorAnswer *a, int error, const char *message, void *userdata);

int actor_invoke(Registry *r, const ActorInvokeRequest *req, ActorInvokeDoneFn done, void *userdata,
                 ActorCall **ret);
/* The caller is gone: no callback; a queued call is dropped, a running one's answer ignored. */
void actor_call_cancel(ActorCall *c);

/*
 * In a cluster: a request about actor (type, id) that its owner, another host, must serve (a
 * reminder set or deleted: -EREMOTE from actor_reminder_set()/_delete()) is sent there as it came;
 * done gets the owner's answer as it is. -EINVAL on one host. Cancel with actor_call_cancel().
 */
typedef struct ActorForwardRequest {
        const char *caller_app, *type, *id;
        const char *verb;
        const char *target;       /* "/v1.0/actors/...", with the query, as received (escaped) */
        char *const *headers;     /* pairs, NULL-terminated */
        const void *body;         /* borrowed until done */
        size_t body_len;
} ActorForwardRequest;
int actor_forward(Registry *r, const ActorForwardRequest *req, ActorInvokeDoneFn done, void *userdata,
                  ActorCall **ret);

/* ---- state ---- */

/* caller_app must host type and (type, id) must be active here. Keys are the actor's own. */
int actor_state_get(Registry *r, const char *caller_app, const char *type, const char *id, const char *key,
                    StateDoneFn done, void *userdata);
int actor_state_transact(Registry *r, const char *caller_app, const char *type, const char *id,
                         const StateOp *ops, size_t n, StateDoneFn done, void *userdata);
/* Drops the outcome of state calls started with userdata (see state_cancel()). */
void actor_state_cancel(Registry *r, void *userdata);

/* ---- reminders and timers ---- */

typedef struct ActorReminderSpec {
        const char *due, *period, *ttl, *callback;   /* NULL: absent */
        json_t *data;             /* borrowed; NULL: none */
} ActorReminderSpec;

typedef void (*ActorDoneFn)(int error, const char *message, void *userdata);

/*
 * Another host takes (type, id) over and asks this one to let it go: 0 when it is not active here;
 * 1 when it is: it takes no new turn, finishes its calls (bounded by drainOngoingCallTimeout) and
 * is deactivated, then done runs. -ENOMEM. (The peer route /mooring/peer/v1/actors/.../release.)
 */
int actor_release(Registry *r, const char *type, const char *id, ActorDoneFn done, void *userdata);
/* The asker is gone: its done is not called. */
void actor_release_cancel(Registry *r, void *userdata);

/* Creates or replaces; done once it is stored. */
int actor_reminder_set(Registry *r, const char *caller_app, const char *type, const char *id, const char *name,
                       const ActorReminderSpec *spec, ActorDoneFn done, void *userdata, const char **reterr);
int actor_reminder_delete(Registry *r, const char *caller_app, const char *type, const char *id,
                          const char *name, ActorDoneFn done, void *userdata);
/*
 * After -EREMOTE from actor_reminder_set() (spec) or actor_reminder_delete() (spec NULL), for a
 * front-end that cannot send its own request on as it came (gRPC, D-Bus; HTTP uses actor_forward()):
 * the block sends the owning host what Dapr's HTTP API would get (the peer listener serves it) and
 * done gets the outcome: 0, or an error with the owner's message. -EINVAL on one host; -ENOMEM.
 * Cancel with actor_call_cancel() (done is then not called).
 */
int actor_reminder_forward(Registry *r, const char *caller_app, const char *type, const char *id, const char *name,
                           const ActorReminderSpec *spec, ActorDoneFn done, void *userdata, ActorCall **ret);
/* {"data","dueTime","period"} (new reference), or *ret NULL when there is no such reminder. Synchronous;
 * -EAGAIN while the type's reminders are still being loaded. */
int actor_reminder_get(Registry *r, const char *caller_app, const char *type, const char *id, const char *name,
                       json_t **ret);
/* Every reminder of one actor, as [{"name", "dueTime", "period", "ttl", "data", "nextFire"}] (new reference). */
int actor_reminder_list(Registry *r, const char *type, const char *id, json_t **ret);
/* Drops the outcome of reminder calls started with userdata (the write still happens). */
void actor_reminder_cancel(Registry *r, void *userdata);

/* Timers: in memory, only on an active actor. Synchronous. */
int actor_timer_set(Registry *r, const char *caller_app, const char *type, const char *id, const char *name,
                    const ActorReminderSpec *spec, const char **reterr);
int actor_timer_delete(Registry *r, const char *caller_app, const char *type, const char *id, const char *name);

/* ---- what runs ---- */

/* [{"type","count"}] of the types app_id hosts (NULL: every type), new reference. */
json_t *actors_active_json(Registry *r, const char *app_id);
/* Dapr's "actorRuntime" object for app_id's metadata (new reference). */
json_t *actors_runtime_json(Registry *r, const char *app_id);
/* [{"type","app","active","reminders","idleTimeout","reentrancy"}] of every hosted type (new reference). */
json_t *actors_types_json(Registry *r);
