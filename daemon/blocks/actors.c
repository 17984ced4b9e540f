/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See actors.h. The pieces:
 *
 *   ActorRuntime  one per registry: hosted types, active actors (hash by
 *                 type+id), reminders (hash by type+id+name), the two heaps,
 *                 the actor state store.
 *   ActorType     a hosted type: its app and settings, its reminders (a list,
 *                 in the order they are stored), the coalesced write of its
 *                 "actors||<type>" record.
 *   Actor         an active (type, id): a FIFO of turns, the turns in the app
 *                 (one, or a reentrant chain), its timers, its idle deadline.
 *   Turn          one call into the app for an actor: a method call, a
 *                 reminder or a timer. A method call's Turn is the ActorCall.
 *
 * Turns never complete from inside the call that started them: a failure
 * found before anything is queued is returned instead.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/actor-config.h"
#include "../core/actor-heap.h"
#include "../core/actor-time.h"
#include "../core/app.h"
#include "../core/cloudevent.h"
#include "../core/component.h"
#include "../core/membership.h"
#include "../core/metrics.h"
#include "../core/placement.h"
#include "../core/registry.h"
#include "../core/resiliency.h"
#include "../core/settings.h"
#include "../transport/app-channel.h"
#include "../transport/transport.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "actors.h"
#include "invoke.h"
#include "state.h"
#include "../util/fnv.h"

#define ACTOR_ANSWER_MAX (16U << 20)
#define CONFIG_ANSWER_MAX (1U << 20)
#define ACTOR_CALL_RETRIES 2
/* A reminder or timer whose app could not be reached is tried again this much later. */
#define FIRE_RETRY_USEC (1000000ULL)
/*
 * Reminder and timer fires of one app that are in the app at once. Due ones beyond this wait in
 * the app's FIFO and start as fires end: 100,000 reminders due at one moment must not become
 * 100,000 simultaneous connections (each a connect() and, once past the transport's idle pool,
 * a TIME_WAIT port: the ephemeral range runs out and connect() itself gets slow). Per app, so
 * one app's slow reminders never hold back another app's. Below the transport's idle pool
 * (POOL_IDLE_MAX, 256) so fires reuse keep-alive connections.
 */
#define FIRES_IN_APP_MAX 128U
/* Reminder records are written in the store's line of this name (they belong to no one app). */
#define REMINDER_QUEUE "mooring-actors"
#define REENTRANCY_HEADER "Dapr-Reentrancy-Id"
#if HAVE_SQLITE
#define OWN_STORE_TYPE "state.sqlite"
#else
#define OWN_STORE_TYPE "state.in-memory"
#endif

/* ---- a small intrusive hash table of string keys ---- */

typedef struct HNode {
        char *key;
        struct HNode *next;
} HNode;

typedef struct HTable {
        HNode **b;
        size_t nb, n;
} HTable;

static uint64_t hash_str(const char *s) {
        return fnv64_str(s);
}

static HNode *ht_find(const HTable *t, const char *key) {
        if (!t->nb)
                return NULL;
        for (HNode *n = t->b[hash_str(key) % t->nb]; n; n = n->next)
                if (streq(n->key, key))
                        return n;
        return NULL;
}

static int ht_add(HTable *t, HNode *node) {
        if (t->n >= t->nb) {
                size_t nb = t->nb ? t->nb * 2 : 64;
                HNode **b = calloc(nb, sizeof *b);
                if (!b)
                        return -ENOMEM;
                for (size_t i = 0; i < t->nb; i++)
                        for (HNode *n = t->b[i], *next; n; n = next) {
                                next = n->next;
                                size_t k = hash_str(n->key) % nb;
                                n->next = b[k];
                                b[k] = n;
                        }
                free(t->b);
                t->b = b;
                t->nb = nb;
        }
        size_t k = hash_str(node->key) % t->nb;
        node->next = t->b[k];
        t->b[k] = node;
        t->n++;
        return 0;
}

static void ht_remove(HTable *t, HNode *node) {
        if (!t->nb)
                return;
        for (HNode **p = &t->b[hash_str(node->key) % t->nb]; *p; p = &(*p)->next)
                if (*p == node) {
                        *p = node->next;
                        t->n--;
                        return;
                }
}

/* ---- types ---- */

typedef struct ActorRuntime ActorRuntime;
typedef struct ActorType ActorType;
typedef struct Actor Actor;
typedef struct Reminder Reminder;
typedef struct Timer Timer;
typedef struct Turn Turn;

typedef struct FireGate FireGate;
typedef struct Waiter Waiter;

typedef enum DueKind { DUE_REMINDER, DUE_TIMER } DueKind;

/* First member of Reminder and Timer: what the due heap holds. */
typedef struct DueItem {
        ActorHeapEntry entry;
        DueKind kind;
        FireGate *parked;         /* due, waiting in this gate's FIFO; NULL: not waiting */
        struct DueItem *pnext, *pprev;
} DueItem;

/* One app's fires in the app (at most FIRES_IN_APP_MAX) and its due items waiting for a slot. */
struct FireGate {
        char *app_id;
        unsigned running;
        DueItem *head, *tail;
        FireGate *next;
};

struct Waiter {
        ActorDoneFn done;         /* NULL: the caller left */
        void *userdata;
        struct Waiter *next;
};

typedef enum RemindersState { REM_UNLOADED, REM_LOADING, REM_LOADED, REM_FAILED } RemindersState;

/* One stored record of a type's reminders (see "reminders: records"). */
typedef struct RemPart {
        ActorType *type;          /* back-reference */
        unsigned index;           /* from 0; the record's partition number is index + 1 */
        Reminder *head, *tail;
        size_t n;
        bool dirty;               /* changed since the commit that last took it: on the dirty list */
        uint64_t flush_gen;       /* the commit that last took it */
        Waiter *waiters;          /* told when a commit holding the latest change is done */
        struct RemPart *dprev, *dnext;
} RemPart;

/* daprd writes a UUID; another id is taken as it is, up to this length. */
#define LAYOUT_ID_MAX 64

struct ActorType {
        HNode node;               /* in the runtime's by_name while hosted; key: cfg.type */
        ActorRuntime *rt;
        ActorType *next;
        ActorTypeConfig cfg;      /* owns cfg.type */
        char *app_id;
        FireGate *gate;           /* the app's; lives as long as the runtime */
        size_t n_active;
        RemindersState rem_state;
        char *rem_error;
        size_t n_reminders;
        RemPart *parts;           /* n_parts of them: n_layout, or one when unpartitioned */
        unsigned n_parts;
        unsigned n_layout;        /* the layout written: remindersStoragePartitions, 0 for none */
        char layout_id[LAYOUT_ID_MAX]; /* its metadata id */
        Reminder *loaded;         /* read from the store, not laid out yet */
        unsigned loads_pending;
        bool zero_found;          /* "actors||<type>" held reminders */
        bool load_bad;            /* some record could not be read */
        bool migrate, write_meta; /* the layout changed: written by the next commit as a whole */
        uint64_t migrate_gen;     /* the commit that took the migration */
        char **drop_keys;         /* the records of the layouts before, deleted by the migration
                                   * (kept until it is committed) */
        unsigned store_calls;     /* loads whose answer is pending */
        bool gone;                /* no longer hosted: freed when store_calls is 0 */
        uint64_t hosts_sig;       /* cluster: which hosts serve the type, as last seen */
        bool reload_wanted;       /* cluster: they changed; reload the records once no commit runs */
};

struct Reminder {
        DueItem due;              /* first */
        HNode node;               /* "type\x1fid\x1fname", in strs */
        RemPart *part;            /* back-reference; NULL while loading */
        const char *actor_id, *name; /* in strs */
        const char *due_str, *period_str, *ttl_str; /* in strs; NULL: none */
        const char *data;         /* JSON text, in strs; NULL: none */
        ActorSchedule sc;
        int64_t next_usec;        /* the due time of the next fire */
        int64_t left;             /* fires left; -1 without bound */
        char *record;             /* its stored record as JSON text, made when first needed; NULL
                                   * after a change (a partition write joins these: no JSON per write) */
        size_t record_len;
        Turn *turn;               /* firing now */
        bool due_when_read;       /* read from the store already due: its first fire here may repeat
                                   * one the host that had it made but could not record */
        Reminder *pnext, *pprev;  /* the partition's list (or the type's loaded list) */
        char strs[];              /* the strings above, one allocation with the struct */
};

struct Timer {
        DueItem due;              /* first */
        Actor *actor;             /* back-reference */
        char *name, *callback;
        char *due_str, *period_str;
        json_t *data;
        ActorSchedule sc;
        int64_t next_usec, left;
        Turn *turn;
        Timer *next;
};

struct Actor {
        HNode node;               /* "type\x1fid" */
        ActorRuntime *rt;
        ActorType *type;
        char *id;
        ActorHeapEntry idle;
        Turn *head, *tail;        /* waiting */
        size_t queued;
        Turn *running;            /* in the app */
        Turn *retrying;           /* method calls waiting to retry (Resiliency), linked by next */
        unsigned in_flight;       /* turns in the app: 1, or a reentrant chain */
        char *chain;              /* the running chain's reentrancy id */
        Timer *timers;
        bool leaving;             /* another host owns it now: it takes no new turn, drains, deactivates */
        sd_event_source *drain_timer; /* bounds the drain (drainOngoingCallTimeout) */
        bool released;            /* the new owner asked for it: it leaves even if this view lags */
        Waiter *release_waiters;  /* told when it is gone (the new owner's release request) */
        bool releasing;           /* taken over from a host still alive: no turn starts until it let go */
        TransportCall *release_tc;
};

typedef enum TurnKind { TURN_METHOD, TURN_REMINDER, TURN_TIMER } TurnKind;

/* What an ActorCall handle is: a Turn here, or a Forward to the host that owns the actor. */
typedef struct CallHead {
        bool forwarded;
} CallHead;

struct Turn {
        CallHead head;            /* first: ActorCall handles are Turns or Forwards */
        ActorRuntime *rt;
        Actor *actor;             /* back-reference */
        TurnKind kind;
        char *target;
        char **headers;
        const void *body;
        char *owned_body;
        size_t body_len;
        char *reentry;            /* the caller's Dapr-Reentrancy-Id, if any */
        ActorInvokeDoneFn done;
        void *userdata;
        bool cancelled;
        bool running;
        bool static_headers;      /* headers are a constant table, not packed for this turn */
        Reminder *reminder;       /* TURN_REMINDER; NULL once the reminder was deleted */
        Timer *timer;             /* TURN_TIMER; likewise */
        FireGate *gate;           /* a fire in the app: counted in this gate's running */
        TransportCall *tc;
        Turn *next;               /* the actor's queue, or its retrying list */
        Turn *rnext, *rprev;      /* the actor's running list */
        /* a method call under the caller's Resiliency policy for the actor type, when one applies */
        Resiliency *res;          /* ref */
        ResiliencyPolicy policy;  /* retry and breaker; the breaker is held (resiliency_breaker_release) */
        unsigned retries_done;
        uint64_t first_usec;      /* CLOCK_MONOTONIC: the first attempt (exponential maxElapsedTime) */
        uint64_t breaker_generation;
        bool breaker_counting;    /* the attempt in the app was allowed by the breaker */
        const char *refused;      /* why the breaker refused the call (static), answered from the loop */
        sd_event_source *retry_timer; /* set while on the actor's retrying list */
};

struct ActorRuntime {
        Registry *registry;
        Placement *placement;
        ActorHeap *due;           /* CLOCK_REALTIME: reminders and timers */
        ActorHeap *idle;          /* CLOCK_MONOTONIC: idle deadlines */
        ActorType *types;
        HTable by_name;           /* the hosted (not gone) types: an app may host thousands */
        HTable actors;
        HTable reminders;
        FireGate *gates;
        sd_event_source *gate_pump; /* defer: starts waiting fires when slots are free */
        StateStore *store;        /* borrowed: the registry's or own_store */
        StateStore *own_store;    /* the embedded store, when no component is marked */
        char *store_error;
        uint64_t chain_seq;
        RemPart *dirty_head, *dirty_tail; /* partitions for the next group commit */
        sd_event_source *flush_defer;     /* the group commit, once per loop pass */
        sd_event_source *flush_retry;     /* after a failed one */
        bool flush_running, flush_retry_armed;
        bool flush_migrated;              /* the running commit holds a migration */
        Waiter *flushing;                 /* told when the running commit is done */
        uint64_t flush_gen;
        /* metrics (mooring_actor_*, actors_metrics()) */
        uint64_t fires_maybe_repeated;    /* reminders fired that were already due when read from the store */
        uint64_t forwarded;               /* calls sent to the host that owns their actor */
        uint64_t releases_asked;          /* activations that first asked the previous owner to let go */
};

static ActorRuntime *runtime(Registry *r) {
        return r->actors;
}

static int64_t now_realtime(ActorRuntime *rt) {
        return (int64_t) actor_heap_now(rt->due);
}

static ActorType *find_type(ActorRuntime *rt, const char *name) {
        HNode *n = ht_find(&rt->by_name, name);
        return n ? (ActorType *) ((char *) n - offsetof(ActorType, node)) : NULL;
}

static char *actor_key(const char *type, const char *id) {
        char *k;
        return asprintf(&k, "%s\x1f%s", type, id) < 0 ? NULL : k;
}

/* A lookup key ("a\x1fb" or "a\x1fb\x1fc") in buf, without an allocation: these run on every
 * call. NULL when a part is longer than any stored name can be (so nothing has that key). */
#define LOOKUP_KEY_MAX (3 * (ACTOR_NAME_MAX + 1))
static const char *lookup_key(char buf[static LOOKUP_KEY_MAX], const char *a, const char *b, const char *c) {
        const char *parts[] = { a, b, c };
        char *p = buf;
        for (size_t i = 0; i < 3 && parts[i]; i++) {
                size_t n = strlen(parts[i]);
                if (n > ACTOR_NAME_MAX)
                        return NULL;
                if (i > 0)
                        *p++ = '\x1f';
                p = mempcpy(p, parts[i], n);
        }
        *p = 0;
        return buf;
}

static Actor *find_actor(ActorRuntime *rt, const char *type, const char *id) {
        char buf[LOOKUP_KEY_MAX];
        const char *k = lookup_key(buf, type, id, NULL);
        HNode *n = k ? ht_find(&rt->actors, k) : NULL;
        return n ? (Actor *) ((char *) n - offsetof(Actor, node)) : NULL;
}

static Reminder *find_reminder(ActorRuntime *rt, const char *type, const char *id, const char *name) {
        char buf[LOOKUP_KEY_MAX];
        const char *k = lookup_key(buf, type, id, name);
        HNode *n = k ? ht_find(&rt->reminders, k) : NULL;
        return n ? (Reminder *) ((char *) n - offsetof(Reminder, node)) : NULL;
}

/* Percent-encodes s as one path segment at p; returns the end. Room: 3 * strlen(s). */
static char *put_segment(char *p, const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (c && strchr("-._~!$&'()*+,;=:@", c)))
                        *p++ = (char) c;
                else {
                        *p++ = '%';
                        *p++ = hex[c >> 4];
                        *p++ = hex[c & 15];
                }
        }
        return p;
}

/* "/actors/{type}/{id}[/method/{m}[/{name}]][?query]", the segments escaped, in one allocation. */
static char *actor_path(const char *type, const char *id, const char *m, const char *name, const char *query) {
        size_t len = 8 + 3 * strlen(type) + 1 + 3 * strlen(id) + 1;
        if (m)
                len += 8 + 3 * strlen(m);
        if (m && name)
                len += 1 + 3 * strlen(name);
        if (query && *query)
                len += 1 + strlen(query);
        char *o = malloc(len), *p = o;
        if (!o)
                return NULL;
        p = put_segment(mempcpy(p, "/actors/", 8), type);
        *p++ = '/';
        p = put_segment(p, id);
        if (m) {
                p = put_segment(mempcpy(p, "/method/", 8), m);
                if (name) {
                        *p++ = '/';
                        p = put_segment(p, name);
                }
        }
        if (query && *query) {
                *p++ = '?';
                p = stpcpy(p, query);
        }
        *p = 0;
        return o;
}

static bool name_ok(const char *s) {
        return s && *s && strlen(s) <= ACTOR_NAME_MAX && !strstr(s, "||");
}

/* ---- fire gates ---- */

static FireGate *gate_get(ActorRuntime *rt, const char *app_id) {
        for (FireGate *g = rt->gates; g; g = g->next)
                if (streq(g->app_id, app_id))
                        return g;
        FireGate *g = calloc(1, sizeof *g);
        if (!g || !(g->app_id = strdup(app_id))) {
                free(g);
                return NULL;
        }
        g->next = rt->gates;
        rt->gates = g;
        return g;
}

static void due_park(FireGate *g, DueItem *d) {
        d->parked = g;
        d->pnext = NULL;
        d->pprev = g->tail;
        if (g->tail)
                g->tail->pnext = d;
        else
                g->head = d;
        g->tail = d;
}

/* Takes d out of its gate's FIFO; no-op when it does not wait there. */
static void due_unpark(DueItem *d) {
        FireGate *g = d->parked;
        if (!g)
                return;
        if (d->pprev)
                d->pprev->pnext = d->pnext;
        else
                g->head = d->pnext;
        if (d->pnext)
                d->pnext->pprev = d->pprev;
        else
                g->tail = d->pprev;
        d->parked = NULL;
        d->pnext = d->pprev = NULL;
}

/* A slot of g is free: waiting fires start on the next loop pass (never from inside the caller). */
static void gate_release(ActorRuntime *rt, FireGate *g) {
        g->running--;
        if (g->head && rt->gate_pump)
                (void) sd_event_source_set_enabled(rt->gate_pump, SD_EVENT_ONESHOT);
}

/* ---- the store ---- */

StateStore *actors_state_store(Registry *r, const char **ret_error) {
        ActorRuntime *rt = runtime(r);
        if (ret_error)
                *ret_error = rt && rt->store_error ? rt->store_error : "the actor runtime is not set up";
        return rt ? rt->store : NULL;
}

static int open_own_store(ActorRuntime *rt);
static void type_free(ActorType *t);
static void waiters_tell(Waiter *w, int error, const char *message);

/* The store t's loads went to is replaced: no answer from it counts any more. */
static void forget_store_calls(ActorType *t, StateStore *still_open) {
        if (t->store_calls == 0)
                return;
        if (still_open)
                state_cancel(still_open, t);
        t->store_calls = 0;
}

/* Likewise for the running group commit. */
static void forget_flush(ActorRuntime *rt, StateStore *still_open) {
        if (!rt->flush_running)
                return;
        if (still_open)
                state_cancel(still_open, rt);
        rt->flush_running = false;
        waiters_tell(TAKE_PTR(rt->flushing), -ECANCELED, "the actor state store changed");
}
static void type_reload_reminders(ActorType *t);

void actors_sync_store(Registry *r) {
        ActorRuntime *rt = runtime(r);
        StateStore *marked = NULL, *old, *want;

        if (!rt)
                return;
        old = rt->store;
        for (size_t i = 0; i < r->n_state_stores; i++) {
                const char *v = component_get_string(r->state_stores[i]->component, "actorStateStore");
                if (v && strcasecmp(v, "true") == 0) {
                        marked = r->state_stores[i];
                        break;
                }
        }
        free(rt->store_error);
        rt->store_error = NULL;
        want = marked;
        if (marked && (!(marked->driver->features & STATE_FEATURE_TRANSACTIONAL) || !marked->driver->transact)) {
                if (asprintf(&rt->store_error, "the actor state store '%s' (%s) does not support transactions: "
                             "actors are disabled", marked->name, marked->driver->type) < 0)
                        rt->store_error = NULL;
                log_struct(LOG_ERR, 0, NULL, marked->name, "State store '%s' is marked actorStateStore but %s does "
                           "not support transactions; actors are disabled.", marked->name, marked->driver->type);
                want = NULL;
        }
        if (!marked) {
                if (!rt->own_store && open_own_store(rt) < 0)
                        rt->store_error = strdup("the embedded actor state store could not be opened");
                want = rt->own_store;
        }
        if (want == old)
                return;
        /* The old store's answers no longer count: cancel what waits there (if it is still open). */
        bool old_open = old && old == rt->own_store;
        for (size_t i = 0; old && i < r->n_state_stores; i++)
                old_open = old_open || r->state_stores[i] == old;
        rt->store = want;
        forget_flush(rt, old_open ? old : NULL);
        for (ActorType *t = rt->types, *next; t; t = next) {
                next = t->next;
                forget_store_calls(t, old_open ? old : NULL);
                if (t->gone)
                        type_free(t);
        }
        if (marked && rt->own_store)
                rt->own_store = state_store_close(rt->own_store);
        for (ActorType *t = rt->types; t; t = t->next)
                type_reload_reminders(t);
}

typedef struct OwnComponent {
        Component *c;
} OwnComponent;

static void on_own_component(Component *c, void *userdata) {
        OwnComponent *o = userdata;
        component_unref(o->c);
        o->c = c;
}

static void on_own_component_error(const ConfError *e, void *userdata) {
        (void) e;
        (void) userdata;
}

/* With no store marked actorStateStore, actors keep their state and reminders in an embedded
 * SQLite database of their own (actors.db in the state directory): a first run needs nothing. */
static int open_own_store(ActorRuntime *rt) {
        static const char yaml[] = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: actorstatestore\n"
                                   "spec:\n  type: " OWN_STORE_TYPE "\n  metadata:\n"
                                   "  - name: connectionString\n    value: actors.db\n";
        OwnComponent o = {};
        _cleanup_free_ char *err = NULL;
        int r = component_parse("(built-in actor store)", yaml, sizeof yaml - 1, on_own_component,
                                on_own_component_error, &o);
        if (r < 0 || !o.c) {
                component_unref(o.c);
                return r < 0 ? r : -EINVAL;
        }
        r = state_store_open(rt->registry, o.c, &rt->own_store, &err);
        component_unref(o.c);
        if (r < 0) {
                log_error_errno(r, "Failed to open the embedded actor state store: %s", err ?: "");
                rt->own_store = NULL;
        }
        return r;
}

/* ---- reminders: records ----
 *
 * Storage is Dapr's (daprd 1.x before its scheduler): a type's reminders are JSON arrays of
 * records, in ONE record "actors||<type>" when the app asks for no partitions, else spread over
 * remindersStoragePartitions records "actors||<type>||<layout id>||reminders||<i>" (i from 1, a
 * reminder in partition fnv32a(actor id, name) % count + 1) named by the metadata record
 * "actors||<type>||metadata" = {"id": <layout id>, "actorRemindersMetadata": {"partitionCount": n}}.
 * So a store that daprd wrote reads back here, and the other way round.
 *
 * Writes are group commits: a change (registration, delete, a fire that moves a schedule on or
 * ends a reminder) only marks its partition dirty; ONE transaction per pass of the loop writes
 * every dirty partition of every type, and while it runs the next changes gather for the one
 * after. A fire costs a share of a partition write, not a write of its own, and a busy moment
 * writes each partition once however many of its reminders fired. Who waits for a registration
 * or a delete is told when the transaction holding it is committed.
 *
 * A change of the count (or a store laid out otherwise) is a migration: every partition under a
 * new layout id, the metadata, and the deletion of the old records, in one transaction, so a
 * crash leaves the old layout or the new one, never a mix.
 */

/* daprd's id of the unpartitioned layout. */
#define LAYOUT_ZERO_ID "00000000-0000-0000-0000-000000000000"
/* Operations in one group commit; a migration is never split (so this may be passed once). */
#define FLUSH_OPS_MAX 4096U
/* A reminder whose actor another host owns is looked at again after this (a change of owner
 * reloads every record anyway). */
#define NOT_OWNER_RECHECK_USEC (3600ULL * 1000000)
/* A group commit that failed is tried again this much later (everything it held). */
#define FLUSH_RETRY_USEC (1000000ULL)

static void turn_drop(Turn *t);

/* Dapr's choice of partition (daprd: "do not change this hash function"): FNV-1a over the actor id
 * then the name. An index into t->parts. */
static unsigned part_index(unsigned count, const char *id, const char *name) {
        uint32_t h = 2166136261U;
        if (count == 0)
                return 0;
        for (const char *s = id; *s; s++)
                h = (h ^ (unsigned char) *s) * 16777619U;
        for (const char *s = name; *s; s++)
                h = (h ^ (unsigned char) *s) * 16777619U;
        return h % count;
}

static char *part_key(const ActorType *t, unsigned count, const char *layout_id, unsigned index) {
        char *k;
        int r = count == 0 ? asprintf(&k, "actors||%s", t->cfg.type)
                           : asprintf(&k, "actors||%s||%s||reminders||%u", t->cfg.type, layout_id, index + 1);
        return r < 0 ? NULL : k;
}

static char *meta_key(const ActorType *t) {
        char *k;
        return asprintf(&k, "actors||%s||metadata", t->cfg.type) < 0 ? NULL : k;
}

static void flush_arm(ActorRuntime *rt) {
        if (!rt->flush_running && !rt->flush_retry_armed && rt->flush_defer)
                (void) sd_event_source_set_enabled(rt->flush_defer, SD_EVENT_ONESHOT);
}

static void dirty_unlink(ActorRuntime *rt, RemPart *p) {
        if (!p->dirty)
                return;
        if (p->dprev)
                p->dprev->dnext = p->dnext;
        else
                rt->dirty_head = p->dnext;
        if (p->dnext)
                p->dnext->dprev = p->dprev;
        else
                rt->dirty_tail = p->dprev;
        p->dprev = p->dnext = NULL;
        p->dirty = false;
}

/* p changed: it is written by the next group commit. */
static void part_mark(RemPart *p) {
        ActorRuntime *rt = p->type->rt;
        if (!p->dirty) {
                p->dirty = true;
                p->dnext = NULL;
                p->dprev = rt->dirty_tail;
                if (rt->dirty_tail)
                        rt->dirty_tail->dnext = p;
                else
                        rt->dirty_head = p;
                rt->dirty_tail = p;
        }
        flush_arm(rt);
}

/* Takes m out of its partition's list (it stays in the lookup table and the heap). */
static void part_remove(Reminder *m) {
        RemPart *p = m->part;
        if (m->pprev)
                m->pprev->pnext = m->pnext;
        else
                p->head = m->pnext;
        if (m->pnext)
                m->pnext->pprev = m->pprev;
        else
                p->tail = m->pprev;
        m->pnext = m->pprev = NULL;
        m->part = NULL;
        p->n--;
        p->type->n_reminders--;
}

/* Takes m out of everything: its partition, the lookup table, the heap; a queued fire is dropped. */
static void reminder_unlink(ActorRuntime *rt, Reminder *m) {
        actor_heap_remove(rt->due, &m->due.entry);
        due_unpark(&m->due);
        ht_remove(&rt->reminders, &m->node);
        if (m->part)
                part_remove(m);
        if (m->turn)
                turn_drop(m->turn);
        m->turn = NULL;
}

static void reminder_free(Reminder *m) {
        if (!m)
                return;
        free(m->record);
        free(m);
}

/* A reminder with its strings (one allocation): the lookup key "type\x1fid\x1fname", the id, the
 * name and the optional texts (NULL or empty: none). data is JSON text. NULL: out of memory. */
static Reminder *reminder_new(const char *type, const char *id, const char *name, const char *due,
                              const char *period, const char *ttl, const char *data) {
        const char *opt[] = { due, period, ttl, data };
        size_t len = strlen(type) + 1 + strlen(id) + 1 + strlen(name) + 1 + strlen(id) + 1 + strlen(name) + 1;
        for (size_t i = 0; i < 4; i++)
                if (opt[i] && *opt[i])
                        len += strlen(opt[i]) + 1;
        Reminder *m = calloc(1, sizeof *m + len);
        if (!m)
                return NULL;
        char *p = m->strs;
        m->node.key = p;
        p += sprintf(p, "%s\x1f%s\x1f%s", type, id, name) + 1;
        m->actor_id = p;
        p = stpcpy(p, id) + 1;
        m->name = p;
        p = stpcpy(p, name) + 1;
        const char **dst[] = { &m->due_str, &m->period_str, &m->ttl_str, &m->data };
        for (size_t i = 0; i < 4; i++)
                if (opt[i] && *opt[i]) {
                        *dst[i] = p;
                        p = stpcpy(p, opt[i]) + 1;
                }
        m->due.kind = DUE_REMINDER;
        return m;
}

/* Puts m (in no partition) at the end of p's list. */
static void reminder_link(RemPart *p, Reminder *m) {
        ActorType *t = p->type;
        m->part = p;
        m->pnext = NULL;
        m->pprev = p->tail;
        if (p->tail)
                p->tail->pnext = m;
        else
                p->head = m;
        p->tail = m;
        p->n++;
        t->n_reminders++;
}

/* A growing text buffer; on allocation failure it stays failed (ok false) and writes nothing. */
typedef struct Buf {
        char *p;
        size_t len, cap;
        bool ok;
} Buf;

static bool buf_room(Buf *b, size_t n) {
        if (!b->ok)
                return false;
        if (b->len + n + 1 > b->cap) {
                size_t cap = MAX(b->cap * 2, b->len + n + 1 + 256);
                char *p = realloc(b->p, cap);
                if (!p)
                        return (b->ok = false);
                b->p = p;
                b->cap = cap;
        }
        return true;
}

static void buf_put(Buf *b, const char *s, size_t n) {
        if (buf_room(b, n)) {
                memcpy(b->p + b->len, s, n);
                b->len += n;
                b->p[b->len] = 0;
        }
}

static void buf_puts(Buf *b, const char *s) {
        buf_put(b, s, strlen(s));
}

/* s as a JSON string. */
static void buf_put_jstr(Buf *b, const char *s) {
        static const char hex[] = "0123456789abcdef";
        size_t n = strlen(s);
        if (!buf_room(b, 6 * n + 2))
                return;
        char *p = b->p + b->len;
        *p++ = '"';
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if (c == '"' || c == '\\') {
                        *p++ = '\\';
                        *p++ = (char) c;
                } else if (c < 0x20) {
                        p = mempcpy(p, "\\u00", 4);
                        *p++ = hex[c >> 4];
                        *p++ = hex[c & 15];
                } else
                        *p++ = (char) c;
        }
        *p++ = '"';
        *p = 0;
        b->len = (size_t) (p - b->p);
}

static void buf_put_int(Buf *b, int64_t v) {
        char num[24];
        buf_put(b, num, (size_t) snprintf(num, sizeof num, "%" PRId64, v));
}

/* Dapr's record: actorID, actorType, name, data, period, dueTime, registeredTime (the first fire),
 * expirationTime; ours besides (daprd ignores unknown fields): where the schedule stands. Written
 * by hand: this runs for every reminder that changes, and data is kept as its JSON text. */
static void reminder_record(const Reminder *m, Buf *b) {
        char when[32];
        buf_puts(b, "{\"actorID\":");
        buf_put_jstr(b, m->actor_id);
        buf_puts(b, ",\"actorType\":");
        buf_put_jstr(b, m->part->type->cfg.type);
        buf_puts(b, ",\"name\":");
        buf_put_jstr(b, m->name);
        if (m->data) {
                buf_puts(b, ",\"data\":");
                buf_puts(b, m->data);
        }
        buf_puts(b, ",\"period\":");
        buf_put_jstr(b, strempty(m->period_str));
        buf_puts(b, ",\"dueTime\":");
        buf_put_jstr(b, strempty(m->due_str));
        buf_puts(b, ",\"registeredTime\":");
        buf_put_jstr(b, actor_format_rfc3339(m->sc.first_usec, when));
        if (m->sc.expiry_usec) {
                buf_puts(b, ",\"expirationTime\":");
                buf_put_jstr(b, actor_format_rfc3339(m->sc.expiry_usec, when));
        }
        buf_puts(b, ",\"mooringNextFireUsec\":");
        buf_put_int(b, m->next_usec);
        buf_puts(b, ",\"mooringFiresLeft\":");
        buf_put_int(b, m->left);
        if (m->ttl_str) {
                buf_puts(b, ",\"mooringTtl\":");
                buf_put_jstr(b, m->ttl_str);
        }
        buf_puts(b, "}");
}

/* The record's text, kept until the reminder changes (a partition write joins these: no encoding
 * per write). NULL: out of memory. */
static const char *reminder_record_text(Reminder *m) {
        if (!m->record) {
                Buf b = { .ok = true };
                reminder_record(m, &b);
                if (!b.ok) {
                        free(b.p);
                        return NULL;
                }
                m->record = b.p;
                m->record_len = b.len;
        }
        return m->record;
}

/* The record changes (where the schedule stands): its text is made again when next written. */
static void reminder_changed(Reminder *m) {
        free(m->record);
        m->record = NULL;
        part_mark(m->part);
}

static void waiters_tell(Waiter *w, int error, const char *message) {
        while (w) {
                Waiter *n = w->next;
                if (w->done)
                        w->done(error, message, w->userdata);
                free(w);
                w = n;
        }
}

static Waiter **waiters_end(Waiter **l) {
        while (*l)
                l = &(*l)->next;
        return l;
}

/* p's partition record: a JSON array of its reminders' records, joined from their texts. */
static char *part_text(RemPart *p, size_t *ret_len) {
        size_t len = 2;
        for (Reminder *m = p->head; m; m = m->pnext) {
                if (!reminder_record_text(m))
                        return NULL;
                len += m->record_len + 1;
        }
        char *text = malloc(len + 1), *o = text;
        if (!text)
                return NULL;
        *o++ = '[';
        for (Reminder *m = p->head; m; m = m->pnext) {
                if (m != p->head)
                        *o++ = ',';
                o = mempcpy(o, m->record, m->record_len);
        }
        *o++ = ']';
        *o = 0;
        *ret_len = (size_t) (o - text);
        return text;
}

/* The operations of one group commit, owning their keys and values. */
typedef struct OpList {
        StateOp *ops;
        size_t n, cap;
} OpList;

static void op_list_done(OpList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free((char *) l->ops[i].key);
                free((char *) l->ops[i].value);
        }
        free(l->ops);
        *l = (OpList){};
}

/* Takes key and value (NULL: a delete), also on failure. */
static int op_list_add(OpList *l, char *key, char *value, size_t value_len) {
        if (key && l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 64;
                StateOp *ops = reallocarray(l->ops, cap, sizeof *ops);
                if (ops) {
                        l->ops = ops;
                        l->cap = cap;
                }
        }
        if (!key || l->n == l->cap) {
                free(key);
                free(value);
                return -ENOMEM;
        }
        l->ops[l->n++] = (StateOp){ .kind = value ? STATE_OP_UPSERT : STATE_OP_DELETE, .key = key,
                                    .value = value, .value_len = value_len };
        return 0;
}

/* Adds the write of p (taking its waiters into the commit's). */
static int flush_add_part(ActorRuntime *rt, OpList *l, RemPart *p) {
        ActorType *t = p->type;
        size_t len = 0;
        char *text = part_text(p, &len);
        if (!text)
                return -ENOMEM;
        int r = op_list_add(l, part_key(t, t->n_layout, t->layout_id, p->index), text, len);
        if (r < 0)
                return r;
        dirty_unlink(rt, p);
        p->flush_gen = rt->flush_gen;
        *waiters_end(&rt->flushing) = TAKE_PTR(p->waiters);
        return 0;
}

/* Adds t's migration: every partition, the metadata, the deletion of the old layout's records. */
static int flush_add_migration(ActorRuntime *rt, OpList *l, ActorType *t) {
        int r = 0;
        for (unsigned i = 0; i < t->n_parts && r >= 0; i++)
                r = flush_add_part(rt, l, &t->parts[i]);
        if (r >= 0 && t->write_meta) {
                char *meta = NULL;
                if (asprintf(&meta, "{\"id\":\"%s\",\"actorRemindersMetadata\":{\"partitionCount\":%u}}",
                             t->n_layout ? t->layout_id : LAYOUT_ZERO_ID, t->n_layout) < 0)
                        meta = NULL;
                r = meta ? op_list_add(l, meta_key(t), meta, strlen(meta)) : -ENOMEM;
        }
        for (size_t i = 0; t->drop_keys && t->drop_keys[i] && r >= 0; i++)
                r = op_list_add(l, strdup(t->drop_keys[i]), NULL, 0);
        if (r >= 0) {
                t->migrate_gen = rt->flush_gen;
                rt->flush_migrated = true;
        }
        return r;
}

static void flush_failed(ActorRuntime *rt, uint64_t gen);
static void on_flushed(const StateResult *res, void *userdata);

/* ---- reminders in a cluster: one record, several writers ---- */

static void reload_wanted_types(ActorRuntime *rt);

/*
 * In a cluster the hosts serving a type share its reminder records in the shared actor state
 * store, and each reminder is changed (registered, fired, deleted) by the host that owns its
 * actor only. A partition record thus has several writers. A write reads the record first, keeps
 * the reminders of actors another host owns as the store has them, puts this host's own from
 * memory, and writes back only if nobody wrote in between (etag; -ESTALE fails the commit, whose
 * partitions are marked again and read afresh by the next one).
 */
typedef struct ClusterRead {
        struct ClusterFlush *f;
        RemPart *part;
        char *text;               /* the record as stored; NULL: absent */
        size_t len;
        char *etag;
} ClusterRead;

typedef struct ClusterFlush {
        ActorRuntime *rt;
        ClusterRead *reads;
        size_t n, pending;
        int error;
        char *message;
} ClusterFlush;

static bool owned_here(ActorRuntime *rt, const char *type, const char *id) {
        PlacementAnswer pa;
        return placement_lookup(rt->placement, type, id, &pa) >= 0 && pa.local;
}

static void cluster_flush_free(ClusterFlush *f) {
        for (size_t i = 0; i < f->n; i++) {
                free(f->reads[i].text);
                free(f->reads[i].etag);
        }
        free(f->reads);
        free(f->message);
        free(f);
}

/* p's record: this host's reminders from memory, the others' from the stored text. */
static char *cluster_part_text(ActorRuntime *rt, RemPart *p, const ClusterRead *cr, size_t *ret_len) {
        const char *type = p->type->cfg.type;
        Buf b = { .ok = true };
        bool first = true;

        buf_puts(&b, "[");
        for (Reminder *m = p->head; m; m = m->pnext) {
                if (!owned_here(rt, type, m->actor_id))
                        continue;
                if (!reminder_record_text(m)) {
                        b.ok = false;
                        break;
                }
                if (!first)
                        buf_puts(&b, ",");
                buf_put(&b, m->record, m->record_len);
                first = false;
        }
        json_t *stored = cr->text ? json_loadb(cr->text, cr->len, 0, NULL) : NULL;
        size_t i;
        json_t *o;
        json_array_foreach(stored, i, o) {
                const char *id = json_string_value(json_object_get(o, "actorID"));
                if (!id || owned_here(rt, type, id))
                        continue; /* ours are in memory (an own one not there was deleted here) */
                _cleanup_free_ char *t = json_dumps(o, JSON_COMPACT);
                if (!t) {
                        b.ok = false;
                        break;
                }
                if (!first)
                        buf_puts(&b, ",");
                buf_puts(&b, t);
                first = false;
        }
        json_decref(stored);
        buf_puts(&b, "]");
        if (!b.ok) {
                free(b.p);
                return NULL;
        }
        *ret_len = b.len;
        return b.p;
}

static void cluster_flush_write(ClusterFlush *f) {
        ActorRuntime *rt = f->rt;
        _cleanup_(op_list_done) OpList l = {};
        int r = f->error;

        for (size_t i = 0; i < f->n && r >= 0; i++) {
                ClusterRead *cr = &f->reads[i];
                RemPart *p = cr->part;
                ActorType *t = p->type;
                size_t len = 0;
                char *text = cluster_part_text(rt, p, cr, &len);
                r = text ? op_list_add(&l, part_key(t, t->n_layout, t->layout_id, p->index), text, len) : -ENOMEM;
                if (r >= 0) {
                        /* the etag the record had when read; absent then: it must still be absent */
                        l.ops[l.n - 1].etag = cr->etag;
                        l.ops[l.n - 1].concurrency = cr->etag ? STATE_CONCURRENCY_LAST_WRITE
                                                              : STATE_CONCURRENCY_FIRST_WRITE;
                }
        }
        if (r >= 0 && l.n > 0) {
                r = state_transact_raw(rt->store, REMINDER_QUEUE, l.ops, l.n, on_flushed, rt);
                if (r >= 0) {
                        cluster_flush_free(f); /* the store copied what it keeps */
                        return;
                }
        }
        rt->flush_running = false;
        log_struct(LOG_WARNING, 0, NULL, NULL, "Failed to store actor reminders: %s; trying again.",
                   f->message ?: strerror(-r));
        waiters_tell(TAKE_PTR(rt->flushing), r, "the reminder records could not be written");
        flush_failed(rt, rt->flush_gen);
        cluster_flush_free(f);
        reload_wanted_types(rt);
}

static void on_cluster_read(const StateResult *res, void *userdata) {
        ClusterRead *cr = userdata;
        ClusterFlush *f = cr->f;

        if (res->error < 0 && f->error >= 0) {
                f->error = res->error;
                f->message = res->message ? strdup(res->message) : NULL;
        } else if (res->error >= 0 && res->value.found) {
                cr->text = malloc(res->value.value_len + 1);
                if (cr->text)
                        memcpy(cr->text, res->value.value, res->value.value_len);
                cr->len = res->value.value_len;
                cr->etag = res->value.etag ? strdup(res->value.etag) : NULL;
                if (!cr->text || (res->value.etag && !cr->etag))
                        f->error = -ENOMEM;
        }
        if (--f->pending == 0)
                cluster_flush_write(f);
}

/* The cluster's group commit: read every dirty partition, then write them all in one transaction. */
static void on_flush_cluster(ActorRuntime *rt) {
        size_t n = 0, cap = rt->store ? state_store_max_ops(rt->store) : 0;
        if (cap == 0 || cap > FLUSH_OPS_MAX)
                cap = FLUSH_OPS_MAX;
        for (RemPart *p = rt->dirty_head; p && n < cap; p = p->dnext)
                n++;
        ClusterFlush *f = calloc(1, sizeof *f);
        if (f && !(f->reads = calloc(n, sizeof *f->reads))) {
                free(f);
                f = NULL;
        }
        if (!f) {
                flush_failed(rt, rt->flush_gen);
                return;
        }
        f->rt = rt;
        rt->flush_gen++;
        rt->flush_migrated = false;
        rt->flush_running = true;
        /* what changes from here on is marked again and goes with the next commit */
        while (rt->dirty_head && f->n < n) {
                RemPart *p = rt->dirty_head;
                dirty_unlink(rt, p);
                p->flush_gen = rt->flush_gen;
                /* a layout change in a cluster is written like any change of its partitions */
                p->type->migrate = false;
                *waiters_end(&rt->flushing) = TAKE_PTR(p->waiters);
                f->reads[f->n++] = (ClusterRead){ .f = f, .part = p };
        }
        f->pending = f->n + 1; /* held until every read is started */
        for (size_t i = 0; i < f->n; i++) {
                ActorType *t = f->reads[i].part->type;
                _cleanup_free_ char *key = part_key(t, t->n_layout, t->layout_id, f->reads[i].part->index);
                if (!key || state_get_raw(rt->store, REMINDER_QUEUE, key, on_cluster_read, &f->reads[i]) < 0) {
                        f->error = -ENOMEM;
                        f->pending -= f->n - i;
                        break;
                }
        }
        if (--f->pending == 0)
                cluster_flush_write(f);
}

/* The group commit: every dirty partition (a migrating type's all at once) in one transaction. */
static int on_flush(sd_event_source *s, void *userdata) {
        ActorRuntime *rt = userdata;
        _cleanup_(op_list_done) OpList l = {};
        size_t cap = rt->store ? state_store_max_ops(rt->store) : 0;
        int r = 0;

        if (rt->flush_running || !rt->store || !rt->dirty_head)
                return 0;
        if (placement_is_cluster(rt->placement)) {
                on_flush_cluster(rt);
                return 0;
        }
        if (cap == 0 || cap > FLUSH_OPS_MAX)
                cap = FLUSH_OPS_MAX;
        rt->flush_gen++;
        rt->flush_migrated = false;
        while (rt->dirty_head && r >= 0) {
                RemPart *p = rt->dirty_head;
                ActorType *t = p->type;
                if (t->migrate) {
                        size_t need = t->n_parts + 1 + strv_length(t->drop_keys);
                        if (l.n > 0 && l.n + need > cap)
                                break;
                        r = flush_add_migration(rt, &l, t);
                        if (r >= 0)
                                t->migrate = false;
                } else {
                        if (l.n >= cap)
                                break;
                        r = flush_add_part(rt, &l, p);
                }
        }
        if (r >= 0 && l.n > 0) {
                r = state_transact_raw(rt->store, REMINDER_QUEUE, l.ops, l.n, on_flushed, rt);
                if (r >= 0) {
                        rt->flush_running = true;
                        return 0;
                }
        }
        if (r < 0) {
                waiters_tell(TAKE_PTR(rt->flushing), r, "the reminder records could not be written");
                flush_failed(rt, rt->flush_gen);
        }
        return 0;
}

static int on_flush_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        ActorRuntime *rt = userdata;
        rt->flush_retry_armed = false;
        if (rt->dirty_head)
                flush_arm(rt);
        return 0;
}

/* The commit gen did not happen: what it held is dirty again, written in a while. */
static void flush_failed(ActorRuntime *rt, uint64_t gen) {
        /* the timer first: the marks below must not start the next commit at once */
        rt->flush_retry_armed = rt->flush_retry &&
                                sd_event_source_set_time_relative(rt->flush_retry, FLUSH_RETRY_USEC) >= 0 &&
                                sd_event_source_set_enabled(rt->flush_retry, SD_EVENT_ONESHOT) >= 0;
        for (ActorType *t = rt->types; t; t = t->next) {
                if (t->gone || t->rem_state != REM_LOADED)
                        continue;
                if (t->migrate_gen == gen)
                        t->migrate = true;
                for (unsigned i = 0; i < t->n_parts; i++)
                        if (t->parts[i].flush_gen == gen || t->migrate)
                                part_mark(&t->parts[i]);
        }
}

static void on_flushed(const StateResult *res, void *userdata) {
        ActorRuntime *rt = userdata;
        Waiter *w = TAKE_PTR(rt->flushing);

        rt->flush_running = false;
        reload_wanted_types(rt);
        if (res->error < 0) {
                log_struct(LOG_WARNING, 0, NULL, NULL, "Failed to store actor reminders: %s; trying again.",
                           res->message ?: strerror(-res->error));
                flush_failed(rt, rt->flush_gen);
        } else if (rt->flush_migrated)
                /* a committed migration: its old records are gone */
                for (ActorType *t = rt->types; t; t = t->next)
                        if (t->migrate_gen == rt->flush_gen && !t->migrate)
                                t->drop_keys = strv_free(t->drop_keys);
        waiters_tell(w, res->error, res->message ?: (res->error < 0 ? strerror(-res->error) : NULL));
        if (rt->dirty_head)
                flush_arm(rt);
}

/* The next commit holding p's latest change tells done. */
static int part_add_waiter(RemPart *p, ActorDoneFn done, void *userdata) {
        Waiter *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        *w = (Waiter){ .done = done, .userdata = userdata };
        *waiters_end(&p->waiters) = w;
        return 0;
}

/* ---- reminders: loading and layout ---- */

static void schedule_reminder(ActorRuntime *rt, Reminder *m, int64_t when) {
        due_unpark(&m->due);
        /* reminders due together fire partition by partition: each partition is then written
         * once for many of its fires (the group commit takes what changed meanwhile) */
        m->due.entry.tie = (uintptr_t) m->part;
        if (actor_heap_set(rt->due, &m->due.entry, (uint64_t) MAX(when, 1)) < 0)
                log_oom();
}

static int reminder_from_record(ActorType *t, json_t *o, int64_t now, Reminder **ret) {
        const char *id = json_string_value(json_object_get(o, "actorID"));
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *period = json_string_value(json_object_get(o, "period"));
        const char *due = json_string_value(json_object_get(o, "dueTime"));
        const char *reg = json_string_value(json_object_get(o, "registeredTime"));
        const char *exp = json_string_value(json_object_get(o, "expirationTime"));
        const char *ttl = json_string_value(json_object_get(o, "mooringTtl"));
        json_t *next = json_object_get(o, "mooringNextFireUsec"), *left = json_object_get(o, "mooringFiresLeft");
        const char *err;
        Reminder *m;
        ActorSchedule sc;

        if (!name_ok(id) || !name_ok(name))
                return -EINVAL;
        if (actor_schedule_parse(NULL, period, NULL, now, &sc, &err) < 0)
                return -EINVAL;
        if (reg && actor_parse_rfc3339(reg, &sc.first_usec) < 0)
                return -EINVAL;
        sc.expiry_usec = 0;
        if (exp && *exp && actor_parse_rfc3339(exp, &sc.expiry_usec) < 0)
                return -EINVAL;
        json_t *d = json_object_get(o, "data");
        _cleanup_free_ char *data = d && !json_is_null(d) ? json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (d && !json_is_null(d) && !data)
                return -ENOMEM;
        m = reminder_new(t->cfg.type, id, name, due, period, ttl, data);
        if (!m)
                return -ENOMEM;
        m->sc = sc;
        m->next_usec = json_is_integer(next) ? json_integer_value(next) : sc.first_usec;
        m->left = json_is_integer(left) ? json_integer_value(left) : sc.repetitions;
        m->due_when_read = m->next_usec <= now;
        *ret = m;
        return 0;
}

/* t->loaded: read, in the lookup table, in no partition yet (pnext/pprev link them). */
static void loaded_add(ActorType *t, Reminder *m) {
        m->pprev = NULL;
        m->pnext = t->loaded;
        if (t->loaded)
                t->loaded->pprev = m;
        t->loaded = m;
}

static void loaded_remove(ActorType *t, Reminder *m) {
        if (m->pprev)
                m->pprev->pnext = m->pnext;
        else
                t->loaded = m->pnext;
        if (m->pnext)
                m->pnext->pprev = m->pprev;
        m->pnext = m->pprev = NULL;
}

/* Frees t's partitions and their reminders; their waiters are told error. */
static void type_drop_parts(ActorType *t, int error, const char *why) {
        ActorRuntime *rt = t->rt;
        for (unsigned i = 0; i < t->n_parts; i++) {
                RemPart *p = &t->parts[i];
                while (p->head) {
                        Reminder *m = p->head;
                        reminder_unlink(rt, m);
                        reminder_free(m);
                }
                dirty_unlink(rt, p);
                waiters_tell(TAKE_PTR(p->waiters), error, why);
        }
        free(t->parts);
        t->parts = NULL;
        t->n_parts = 0;
        while (t->loaded) {
                Reminder *m = t->loaded;
                loaded_remove(t, m);
                reminder_unlink(rt, m);
                reminder_free(m);
        }
        t->migrate = t->write_meta = false;
        t->drop_keys = strv_free(t->drop_keys);
}

/*
 * Lays t's reminders out over count partitions (Dapr's hash), the ones in t->loaded and those in
 * its current partitions alike. With migrate, the new layout is written as a migration (a new
 * layout id, every partition, the metadata, drop: the old records, deleted); else t->n_layout and
 * t->layout_id are already what the store holds.
 */
static int type_layout(ActorType *t, unsigned count, bool migrate, char **drop) {
        ActorRuntime *rt = t->rt;
        unsigned n = MAX(count, 1U);
        RemPart *parts = calloc(n, sizeof *parts);
        Waiter *waiters = NULL;

        if (!parts) {
                strv_free(drop);
                return -ENOMEM;
        }
        if (migrate && count > 0) {
                char id[CLOUDEVENT_UUID_MAX];
                if (cloudevent_new_id(id) < 0) {
                        free(parts);
                        strv_free(drop);
                        return -EIO;
                }
                memcpy(t->layout_id, id, sizeof id);
        } else if (count == 0)
                strcpy(t->layout_id, LAYOUT_ZERO_ID);
        /* the reminders of the old partitions join the loaded ones (table, heap and fires stay) */
        for (unsigned i = 0; i < t->n_parts; i++) {
                RemPart *p = &t->parts[i];
                while (p->head) {
                        Reminder *m = p->head;
                        part_remove(m);
                        loaded_add(t, m);
                }
                dirty_unlink(rt, p);
                *waiters_end(&waiters) = TAKE_PTR(p->waiters);
        }
        free(t->parts);
        t->parts = parts;
        t->n_parts = n;
        t->n_layout = count;
        for (unsigned i = 0; i < n; i++)
                parts[i] = (RemPart){ .type = t, .index = i };
        parts[0].waiters = waiters;
        while (t->loaded) {
                Reminder *m = t->loaded;
                loaded_remove(t, m);
                reminder_link(&parts[part_index(count, m->actor_id, m->name)], m);
        }
        if (migrate) {
                /* a migration not committed yet: its old records still go too (but never the
                 * record the new layout writes) */
                for (size_t i = 0; t->drop_keys && t->drop_keys[i]; i++)
                        if (!strv_contains(drop, t->drop_keys[i]) && strv_extend(&drop, t->drop_keys[i]) < 0) {
                                strv_free(drop);
                                return -ENOMEM;
                        }
                if (count == 0) {
                        _cleanup_free_ char *zero = part_key(t, 0, NULL, 0);
                        size_t k = 0;
                        for (size_t i = 0; drop[i]; i++)
                                if (zero && streq(drop[i], zero))
                                        free(drop[i]);
                                else
                                        drop[k++] = drop[i];
                        drop[k] = NULL;
                }
                strv_free(t->drop_keys);
                t->drop_keys = drop;
                t->migrate = t->write_meta = true;
                for (unsigned i = 0; i < n; i++)
                        part_mark(&parts[i]);
        } else
                strv_free(drop);
        return 0;
}

/* The records of t's layout (count, id), and "actors||<type>" too when with_zero. NULL: no memory. */
static char **layout_keys(const ActorType *t, unsigned count, const char *id, bool with_zero) {
        char **k = calloc(MAX(count, 1U) + 2, sizeof *k);
        size_t n = 0;
        for (unsigned i = 0; k && i < MAX(count, 1U); i++)
                if (!(k[n++] = part_key(t, count, id, i)))
                        k = strv_free(k);
        if (k && with_zero && count > 0 && !(k[n++] = part_key(t, 0, NULL, 0)))
                k = strv_free(k);
        return k;
}

/* Lays t out over want partitions, migrating when that is not what the store holds (n_layout, and
 * "actors||<type>" holding records besides partitions when zero_found). */
static int type_relayout(ActorType *t, unsigned want, bool zero_found) {
        bool migrate = want != t->n_layout || (want > 0 && zero_found);
        char **drop = NULL;

        if (migrate) {
                /* the old records go; "actors||<type>" stays when that is where they now are */
                drop = layout_keys(t, t->n_layout, t->layout_id, want > 0 && zero_found);
                if (!drop)
                        return -ENOMEM;
        }
        return type_layout(t, want, migrate, drop);
}

/* Every record is read: lay the reminders out as the app asks, migrating if the store differs. */
static void type_loaded(ActorType *t) {
        ActorRuntime *rt = t->rt;
        unsigned stored = t->n_layout;
        int r = type_relayout(t, t->cfg.reminder_partitions, t->zero_found);
        bool migrate = t->migrate;
        if (r < 0) {
                t->rem_state = REM_FAILED;
                free(t->rem_error);
                t->rem_error = strdup("out of memory");
                return;
        }
        int64_t now = now_realtime(rt);
        for (unsigned i = 0; i < t->n_parts; i++)
                for (Reminder *m = t->parts[i].head; m; m = m->pnext)
                        /* one that fell due while we were down fires now, once */
                        schedule_reminder(rt, m, MAX(m->next_usec, now));
        t->rem_state = REM_LOADED;
        if (migrate)
                log_struct(LOG_INFO, 0, t->app_id, NULL, "Actor type '%s': reminders stored in %u partitions "
                           "are moved to %u.", t->cfg.type, stored, t->n_layout);
        log_struct(LOG_INFO, 0, t->app_id, NULL, "Actor type '%s': %zu reminders loaded%s.", t->cfg.type,
                   t->n_reminders, t->load_bad ? ", some records unreadable and skipped" : "");
}

static void type_load_failed(ActorType *t, const char *why) {
        t->rem_state = REM_FAILED;
        free(t->rem_error);
        t->rem_error = strdup(why);
        log_struct(LOG_ERR, 0, t->app_id, NULL, "Failed to load the reminders of actor type '%s': %s", t->cfg.type,
                   why);
        type_drop_parts(t, -ECANCELED, "the reminders could not be loaded");
}

/* One partition record read: its reminders join t->loaded (a later record of a name wins). */
static void on_part_loaded(const StateResult *res, void *userdata) {
        ActorType *t = userdata;
        ActorRuntime *rt = t->rt;

        t->store_calls--;
        if (t->gone) {
                if (t->store_calls == 0)
                        type_free(t);
                return;
        }
        if (t->rem_state != REM_LOADING)
                return; /* an earlier read failed */
        if (res->error < 0)
                return type_load_failed(t, res->message ?: strerror(-res->error));
        if (res->value.found) {
                int64_t now = now_realtime(rt);
                json_t *a = json_loadb(res->value.value, res->value.value_len, 0, NULL);
                if (!json_is_array(a))
                        t->load_bad = true;
                for (size_t i = 0; i < json_array_size(a); i++) {
                        Reminder *m = NULL;
                        json_t *o = json_array_get(a, i);
                        const char *type = json_string_value(json_object_get(o, "actorType"));
                        if ((type && !streq(type, t->cfg.type)) || reminder_from_record(t, o, now, &m) < 0) {
                                t->load_bad = true;
                                continue;
                        }
                        /* the same name twice: the later one, as on replace */
                        Reminder *old = find_reminder(rt, t->cfg.type, m->actor_id, m->name);
                        if (old) {
                                loaded_remove(t, old);
                                reminder_unlink(rt, old);
                                reminder_free(old);
                        }
                        if (ht_add(&rt->reminders, &m->node) < 0) {
                                reminder_free(m);
                                t->load_bad = true;
                                continue;
                        }
                        loaded_add(t, m);
                }
                json_decref(a);
        }
        if (--t->loads_pending == 0)
                type_loaded(t);
}

static void on_zero_loaded(const StateResult *res, void *userdata) {
        ActorType *t = userdata;
        if (!t->gone && res->error >= 0 && res->value.found && res->value.value_len > 2)
                t->zero_found = true;
        on_part_loaded(res, userdata);
}

static int type_get(ActorType *t, char *key, StateDoneFn done) {
        _cleanup_free_ char *k = key;
        if (!k || state_get_raw(t->rt->store, REMINDER_QUEUE, k, done, t) < 0)
                return -ENOMEM;
        t->store_calls++;
        t->loads_pending++;
        return 0;
}

/* The metadata record says how the type's reminders are laid out: read those records (and
 * "actors||<type>", which holds them when unpartitioned and may hold old ones otherwise). */
static void on_meta_loaded(const StateResult *res, void *userdata) {
        ActorType *t = userdata;
        unsigned count = 0;

        t->store_calls--;
        if (t->gone) {
                if (t->store_calls == 0)
                        type_free(t);
                return;
        }
        if (t->rem_state != REM_LOADING)
                return;
        if (res->error >= 0 && res->value.found) {
                json_t *j = json_loadb(res->value.value, res->value.value_len, 0, NULL);
                const char *id = json_string_value(json_object_get(j, "id"));
                json_t *n = json_object_get(json_object_get(j, "actorRemindersMetadata"), "partitionCount");
                if (json_is_integer(n) && json_integer_value(n) > 0 && id && *id &&
                    strlen(id) < sizeof t->layout_id && !strstr(id, "||") &&
                    json_integer_value(n) <= (json_int_t) (ACTOR_PARTITIONS_MAX * 10)) {
                        count = (unsigned) json_integer_value(n);
                        strcpy(t->layout_id, id);
                } else if (!j || (n && !json_is_integer(n)))
                        t->load_bad = true;
                json_decref(j);
        }
        if (res->error < 0)
                return type_load_failed(t, res->message ?: strerror(-res->error));
        t->n_layout = count;
        t->loads_pending = 1; /* held until every read is started */
        int r = type_get(t, part_key(t, 0, NULL, 0), on_zero_loaded);
        for (unsigned i = 0; i < count && r >= 0; i++)
                r = type_get(t, part_key(t, count, t->layout_id, i), on_part_loaded);
        if (r < 0)
                return type_load_failed(t, "the reminder records could not be read");
        if (--t->loads_pending == 0)
                type_loaded(t);
}

static void type_drop_reminders(ActorType *t) {
        type_drop_parts(t, -ECANCELED, "the reminders of the actor type were dropped");
}

static void type_reload_reminders(ActorType *t) {
        ActorRuntime *rt = t->rt;
        _cleanup_free_ char *key = NULL;

        type_drop_reminders(t);
        t->rem_state = REM_UNLOADED;
        t->zero_found = t->load_bad = false;
        t->n_layout = 0;
        t->loads_pending = 0;
        if (!rt->store)
                return;
        if (!(key = meta_key(t)) || state_get_raw(rt->store, REMINDER_QUEUE, key, on_meta_loaded, t) < 0) {
                t->rem_state = REM_FAILED;
                return;
        }
        t->store_calls++;
        t->rem_state = REM_LOADING;
}

/* ---- actors and turns ---- */

static void turn_free(Turn *t) {
        if (!t)
                return;
        transport_call_cancel(t->tc);
        sd_event_source_disable_unref(t->retry_timer);
        if (t->breaker_counting) /* an attempt that ends unheard (its app went away) failed */
                resiliency_breaker_report(t->policy.breaker, t->breaker_generation, false,
                                          actor_heap_now(t->rt->idle));
        resiliency_breaker_release(t->policy.breaker);
        resiliency_unref(t->res);
        free(t->target);
        if (!t->static_headers)
                free(t->headers); /* packed */
        free(t->owned_body);
        free(t->reentry);
        free(t);
}

static void idle_arm(Actor *a) {
        if (a->in_flight == 0 && !a->head && !a->retrying) {
                uint64_t now = actor_heap_now(a->rt->idle);
                /* an actor another host owns now goes as soon as its last turn is over */
                if (actor_heap_set(a->rt->idle, &a->idle, a->leaving ? now : now + a->type->cfg.idle_usec) < 0)
                        log_oom();
        }
}

static void timer_free(Timer *tm);

/* Frees an actor whose queue is empty and which has nothing in the app. */
static void actor_free(Actor *a) {
        ActorRuntime *rt = a->rt;
        actor_heap_remove(rt->idle, &a->idle);
        ht_remove(&rt->actors, &a->node);
        sd_event_source_disable_unref(a->drain_timer);
        transport_call_cancel(a->release_tc);
        waiters_tell(TAKE_PTR(a->release_waiters), 0, NULL);
        while (a->timers) {
                Timer *tm = a->timers;
                a->timers = tm->next;
                timer_free(tm);
        }
        a->type->n_active--;
        free(a->node.key);
        free(a->id);
        free(a->chain);
        free(a);
}

static void release_ask(Actor *a);

static Actor *actor_get(ActorRuntime *rt, ActorType *t, const char *id, bool create) {
        Actor *a = find_actor(rt, t->cfg.type, id);
        if (a || !create)
                return a;
        a = calloc(1, sizeof *a);
        if (!a)
                return NULL;
        *a = (Actor){ .rt = rt, .type = t };
        a->id = strdup(id);
        a->node.key = actor_key(t->cfg.type, id);
        if (!a->id || !a->node.key || ht_add(&rt->actors, &a->node) < 0) {
                free(a->id);
                free(a->node.key);
                free(a);
                return NULL;
        }
        t->n_active++;
        log_debug("Actor %s/%s activated.", t->cfg.type, id);
        release_ask(a);
        return a;
}

static const char *const request_skip[] = {
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "host", "content-length", "expect", "dapr-api-token", "dapr-reentrancy-id", INVOKE_PEER_CALLER_HEADER,
        NULL,
};

/* What a call forwarded to the owning host does not carry on: hop-by-hop, what the transport
 * writes, the caller's token (the peer is reached over mutual TLS, not with it). The reentrancy id
 * goes on: a reentrant chain may cross hosts. */
static const char *const forward_skip[] = {
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "host", "content-length", "expect", "dapr-api-token", INVOKE_PEER_CALLER_HEADER, NULL,
};

static const char *const answer_skip[] = {
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "content-length", "date", "x-daprremindercancel", NULL,
};

static bool in_list(const char *const *l, const char *s) {
        for (; *l; l++)
                if (ascii_eq_ci(*l, s))
                        return true;
        return false;
}

static const char *header_get(char *const *h, const char *name) {
        for (; h && h[0] && h[1]; h += 2)
                if (ascii_eq_ci(h[0], name))
                        return h[1];
        return NULL;
}

/*
 * The name, value pairs of h whose name is not in skip (NULL: all), then the pair extra_name,
 * extra_value if extra_name is given, as ONE allocation (strv_pack: free() it). 0 or -ENOMEM.
 */
static int headers_pack(char *const *h, const char *const *skip, const char *extra_name, const char *extra_value,
                        char ***ret) {
        size_t n = 0;
        for (char *const *x = h; x && x[0] && x[1]; x += 2)
                n += 2;
        _cleanup_free_ char **keep = malloc((n + 3) * sizeof *keep);
        if (!keep)
                return -ENOMEM;
        size_t k = 0;
        for (char *const *x = h; x && x[0] && x[1]; x += 2)
                if (!skip || !in_list(skip, x[0])) {
                        keep[k++] = x[0];
                        keep[k++] = x[1];
                }
        if (extra_name) {
                keep[k++] = (char *) extra_name;
                keep[k++] = (char *) extra_value;
        }
        keep[k] = NULL;
        *ret = strv_pack(keep, SIZE_MAX);
        return *ret ? 0 : -ENOMEM;
}

static void turn_finish(Turn *t, const TransportAnswer *ans, const TransportError *e);
static void on_turn_answer(TransportCall *c, const TransportAnswer *a, const TransportError *e, void *userdata) {
        Turn *t = userdata;
        t->tc = NULL;
        turn_finish(t, a, e);
}

static const TransportHandler turn_handler = { .done = on_turn_answer };

/* Sends t to the app. Fails (nothing sent) with < 0. */
static int turn_send(Turn *t) {
        Actor *a = t->actor;
        ActorRuntime *rt = t->rt;
        App *app = registry_find_app(rt->registry, a->type->app_id);
        TransportAddress addr;
        _cleanup_free_ char **chained = NULL;

        if (!app || !app_channel_address(app, &addr))
                return -EHOSTDOWN;
        /* the turn's own headers as they are (the transport copies what it sends), or with the chain's id */
        if (a->type->cfg.reentrancy && a->chain && headers_pack(t->headers, NULL, REENTRANCY_HEADER, a->chain,
                                                                &chained) < 0)
                return -ENOMEM;
        TransportRequest req = {
                .method = "PUT",
                .target = t->target,
                .headers = chained ?: t->headers,
                .body = t->body,
                .body_len = t->body_len,
                .timeout_usec = app->config->invoke_timeout_usec,
                .retries = ACTOR_CALL_RETRIES,
                .max_answer = ACTOR_ANSWER_MAX,
        };
        /* the Resiliency timeout of the actor type (core/resiliency.h), when shorter */
        uint64_t to = resiliency_actor_timeout(rt->registry->resiliency, app->config->id, a->type->cfg.type);
        if (to > 0 && (req.timeout_usec == 0 || to < req.timeout_usec))
                req.timeout_usec = to;
        return transport_call_start(rt->registry->transport, &addr, &req, &turn_handler, t, &t->tc);
}

/* Starts t in the app: t is at the head of its actor's line, or enters a running reentrant chain. */
static int turn_start(Turn *t) {
        Actor *a = t->actor;
        int r;

        if (a->in_flight == 0) {
                free(a->chain);
                a->chain = NULL;
                if (a->type->cfg.reentrancy) {
                        if (t->reentry)
                                a->chain = strdup(t->reentry);
                        else if (asprintf(&a->chain, "%016" PRIx64 "-%08x-mooring", ++a->rt->chain_seq,
                                          (unsigned) random()) < 0)
                                a->chain = NULL;
                        if (!a->chain)
                                return -ENOMEM;
                }
        }
        actor_heap_remove(a->rt->idle, &a->idle);
        r = turn_send(t);
        if (r < 0)
                return r;
        if (t->kind != TURN_METHOD && (t->gate = a->type->gate))
                t->gate->running++;
        a->in_flight++;
        t->running = true;
        t->rprev = NULL;
        t->rnext = a->running;
        if (a->running)
                a->running->rprev = t;
        a->running = t;
        return 0;
}

static void turn_complete(Turn *t, const ActorAnswer *ans, int error, const char *message);

/* Starts waiting turns while the actor is free. Turns that cannot start end with their error. */
static void actor_pump(Actor *a) {
        while (!a->releasing && a->in_flight == 0 && a->head) {
                Turn *t = a->head;
                a->head = t->next;
                if (!a->head)
                        a->tail = NULL;
                a->queued--;
                t->next = NULL;
                int r = turn_start(t);
                if (r < 0)
                        turn_complete(t, NULL, r, r == -EHOSTDOWN ? "the app hosting the actor is not reachable"
                                                                  : strerror(-r));
        }
        if (a->in_flight == 0 && !a->head)
                idle_arm(a);
}

static void reminder_after_fire(Reminder *m, bool retry, bool cancel);
static void timer_after_fire(Timer *tm, bool retry, bool cancel);

/* The end of a turn that was started or queued: tells its owner, frees it. Does not pump. */
static void turn_complete(Turn *t, const ActorAnswer *ans, int error, const char *message) {
        switch (t->kind) {
        case TURN_METHOD:
                if (!t->cancelled && t->done)
                        t->done(ans, error, message, t->userdata);
                break;
        case TURN_REMINDER:
                if (t->reminder) {
                        t->reminder->turn = NULL;
                        reminder_after_fire(t->reminder, error < 0 && error != -EBADMSG,
                                            ans && strcasecmp(strempty(header_get(ans->headers,
                                                                                 "X-DaprReminderCancel")),
                                                              "true") == 0);
                }
                break;
        case TURN_TIMER:
                if (t->timer) {
                        t->timer->turn = NULL;
                        timer_after_fire(t->timer, error < 0 && error != -EBADMSG,
                                         ans && strcasecmp(strempty(header_get(ans->headers, "X-DaprReminderCancel")),
                                                           "true") == 0);
                }
                break;
        }
        turn_free(t);
}

static void running_unlink(Actor *a, Turn *t) {
        if (t->rprev)
                t->rprev->rnext = t->rnext;
        else
                a->running = t->rnext;
        if (t->rnext)
                t->rnext->rprev = t->rprev;
        t->rnext = t->rprev = NULL;
        a->in_flight--;
        t->running = false;
        if (t->gate)
                gate_release(a->rt, TAKE_PTR(t->gate));
}

/* What one attempt of a method call came to, as daprd's actor call path sees it. */
typedef enum AttemptVerdict {
        ATTEMPT_OK,
        ATTEMPT_RETRY,            /* failed; a retry policy may try again */
        ATTEMPT_FAILED,           /* failed for good (daprd: 404 is "actor method not found", permanent) */
} AttemptVerdict;

static bool call_after_attempt(Turn *t, AttemptVerdict v);

static AttemptVerdict attempt_verdict(const TransportAnswer *ans, const TransportError *e) {
        if (e)
                return ATTEMPT_RETRY;
        if (ans->status == 404)
                return ATTEMPT_FAILED;
        /* daprd retries the .NET SDK's error header too: it is an error (ActorError) to the policy */
        if (ans->status != 200 || header_get(ans->headers, "X-DaprErrorResponseHeader"))
                return ATTEMPT_RETRY;
        return ATTEMPT_OK;
}

static void turn_finish(Turn *t, const TransportAnswer *ans, const TransportError *e) {
        Actor *a = t->actor;
        _cleanup_free_ char **headers = NULL, *msg = NULL;

        running_unlink(a, t);
        if (t->res && call_after_attempt(t, attempt_verdict(ans, e))) {
                actor_pump(a); /* the actor is free for others while this call waits to retry */
                return;
        }
        if (e) {
                if (asprintf(&msg, "error invoking actor %s/%s: %s", a->type->cfg.type, a->id, e->message) < 0)
                        msg = NULL;
                turn_complete(t, NULL, e->error == -ETIMEDOUT ? -ETIMEDOUT : -EIO, msg ?: "transport error");
        } else {
                /* keep X-DaprReminderCancel visible to turn_complete */
                const char *cancel = header_get(ans->headers, "X-DaprReminderCancel");
                (void) headers_pack(ans->headers, answer_skip, cancel ? "X-DaprReminderCancel" : NULL, cancel,
                                    &headers);
                ActorAnswer out = { .status = ans->status, .headers = headers, .body = ans->body,
                                    .body_len = ans->body_len };
                /* The .NET SDK signals a failed actor method with this header and its own status. */
                bool dotnet_error = header_get(ans->headers, "X-DaprErrorResponseHeader") != NULL;
                if (ans->status == 200 || dotnet_error)
                        turn_complete(t, &out, 0, NULL);
                else {
                        if (asprintf(&msg, "error from actor service: %.*s", (int) MIN(ans->body_len, 4096),
                                     (const char *) ans->body) < 0)
                                msg = NULL;
                        turn_complete(t, &out, -EBADMSG, msg ?: "error from actor service");
                }
        }
        actor_pump(a);
}

static Turn *turn_new(ActorRuntime *rt, Actor *a, TurnKind kind) {
        Turn *t = calloc(1, sizeof *t);
        if (t)
                *t = (Turn){ .rt = rt, .actor = a, .kind = kind };
        return t;
}

static void queue_remove(Actor *a, Turn *t) {
        for (Turn **p = &a->head; *p; p = &(*p)->next)
                if (*p == t) {
                        *p = t->next;
                        if (a->tail == t) {
                                a->tail = NULL;
                                for (Turn *x = a->head; x; x = x->next)
                                        a->tail = x;
                        }
                        a->queued--;
                        return;
                }
}

/* A fire whose reminder or timer is deleted: a queued one never runs; a running one ends unheard. */
static void turn_drop(Turn *t) {
        t->reminder = NULL;
        t->timer = NULL;
        if (t->running)
                return;
        Actor *a = t->actor;
        queue_remove(a, t);
        turn_free(t);
        if (a->in_flight == 0 && !a->head)
                idle_arm(a);
}

static void turn_enqueue(Actor *a, Turn *t) {
        if (a->tail)
                a->tail->next = t;
        else
                a->head = t;
        a->tail = t;
        a->queued++;
        actor_heap_remove(a->rt->idle, &a->idle);
}

/*
 * Where a method call goes: into the running reentrant chain it belongs to, straight into the app
 * when the actor is free, else to the end of the actor's line. < 0: nothing started.
 */
static int turn_submit(Actor *a, Turn *t) {
        bool enter = a->type->cfg.reentrancy && t->reentry && a->in_flight > 0 && a->chain &&
                     streq(a->chain, t->reentry);
        if (enter && a->in_flight >= a->type->cfg.max_depth)
                return -ELOOP;
        if (!enter && a->queued >= ACTOR_QUEUE_MAX)
                return -EBUSY;
        if (enter || (!a->releasing && a->in_flight == 0 && !a->head))
                return turn_start(t);
        turn_enqueue(a, t);
        return 0;
}

/* ---- Resiliency: retries and circuit breakers of method calls ---- */

/*
 * daprd applies an actor type's retry and circuit breaker around the whole call, before the
 * actor's lock is taken (pkg/api/http actors.go: ActorPreLockPolicy around router.Call), and its
 * timeout to each attempt in the app once the lock is held (ActorPostLockPolicy, turn_send()).
 * So here: the breaker is asked before an attempt joins the actor's line and told the outcome
 * when the app answered; a failed attempt leaves the actor (others go first) and joins the line
 * again after the back-off. What daprd retries: a transport error, a timeout, a status other than
 * 200 except 404, and a 200 carrying the .NET SDK's X-DaprErrorResponseHeader (daprd's router
 * marks local errors permanent but unwraps that mark before the pre-lock policy sees them, so
 * the policy retries them; 404 carries a second mark and is not retried). An open breaker ends
 * the retries at once (breaker errors are permanent). Reminders and timers get none of this, as
 * in daprd (only the post-lock timeout).
 */

static int on_call_retry(sd_event_source *s, uint64_t usec, void *userdata);

/* Parks t on its actor's retrying list until delay has passed (0: the next loop iteration). */
static int call_park(Turn *t, uint64_t delay) {
        Actor *a = t->actor;
        int r = sd_event_add_time_relative(t->rt->registry->event, &t->retry_timer, CLOCK_MONOTONIC, delay, 0,
                                           on_call_retry, t);
        if (r < 0)
                return r;
        t->next = a->retrying;
        a->retrying = t;
        return 0;
}

static void call_unpark(Turn *t) {
        for (Turn **p = &t->actor->retrying; *p; p = &(*p)->next)
                if (*p == t) {
                        *p = t->next;
                        break;
                }
        t->next = NULL;
        t->retry_timer = sd_event_source_disable_unref(t->retry_timer);
}

/* One attempt: the breaker's consent, then the actor's line. < 0: not started (-EHOSTUNREACH with
 * t->refused: the breaker said no). */
static int call_attempt(Turn *t) {
        uint64_t now = actor_heap_now(t->rt->idle);
        int r;

        if (t->first_usec == 0)
                t->first_usec = now;
        t->refused = NULL;
        if (t->policy.breaker) {
                r = resiliency_breaker_allow(t->policy.breaker, now, &t->breaker_generation, &t->refused);
                if (r < 0)
                        return r;
                t->breaker_counting = true;
        }
        r = turn_submit(t->actor, t);
        if (r < 0 && t->breaker_counting) {
                t->breaker_counting = false;
                resiliency_breaker_report(t->policy.breaker, t->breaker_generation, false, now);
        }
        return r;
}

/* After an attempt (t is not running): tells the breaker; true when t waits to try again. */
static bool call_after_attempt(Turn *t, AttemptVerdict v) {
        uint64_t now = actor_heap_now(t->rt->idle), delay;

        if (t->breaker_counting) {
                t->breaker_counting = false;
                resiliency_breaker_report(t->policy.breaker, t->breaker_generation, v == ATTEMPT_OK, now);
        }
        if (v != ATTEMPT_RETRY || t->cancelled ||
            !resiliency_retry_next(t->policy.retry, t->retries_done + 1, now - t->first_usec, &delay) ||
            call_park(t, delay) < 0)
                return false;
        t->retries_done++;
        log_debug("Actor call %s/%s is sent again in %" PRIu64 " ms (Resiliency policy '%s', retry %u).",
                  t->actor->type->cfg.type, t->actor->id, delay / 1000, t->policy.retry->name, t->retries_done);
        return true;
}

static int on_call_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Turn *t = userdata;
        Actor *a = t->actor;
        int r;

        call_unpark(t);
        r = t->refused ? -EHOSTUNREACH : call_attempt(t);
        if (r >= 0)
                return 0;
        bool refused = r == -EHOSTUNREACH && t->refused;
        /* the attempt did not reach the app (its app is down, the line is full): a failed attempt */
        if (!refused && call_after_attempt(t, ATTEMPT_RETRY))
                return 0;
        turn_complete(t, NULL, r, refused           ? t->refused
                                  : r == -EHOSTDOWN ? "the app hosting the actor is not reachable"
                                  : r == -EBUSY     ? "too many calls waiting for this actor"
                                                    : strerror(-r));
        idle_arm(a);
        return 0;
}

/* Ends every turn of a (queued ones unstarted, running ones cancelled in the transport) with error,
 * then frees a. For an app that went away: it lost its actors. */
static void actor_abort(Actor *a, int error, const char *message) {
        while (a->retrying) {
                Turn *t = a->retrying;
                call_unpark(t);
                turn_complete(t, NULL, error, message);
        }
        while (a->head) {
                Turn *t = a->head;
                a->head = t->next;
                a->queued--;
                turn_complete(t, NULL, error, message);
        }
        a->tail = NULL;
        /* running turns: their transport calls are cancelled; the owners are told here */
        while (a->running) {
                Turn *t = a->running;
                transport_call_cancel(TAKE_PTR(t->tc));
                running_unlink(a, t);
                turn_complete(t, NULL, error, message);
        }
        actor_free(a);
}

/* ---- actors owned by another host (multi-host) ---- */

/* How long a forwarded call keeps trying while the owner is unreachable or the hosts' views of the
 * cluster disagree: past a lease (a dead owner leaves every view), with room for the next owner. */
#define FORWARD_PATIENCE_USEC (15 * 1000000ULL)
#define FORWARD_RETRY_USEC (100 * 1000ULL)
/* sd-event's default accuracy (0) would let a forwarded call wait up to 250 ms for its first try */
#define FORWARD_ACCURACY_USEC 1000ULL
/* The answer of a host that does not own the actor by its own view: the sender tries again. */
#define PLACEMENT_HEADER "mooring-placement"

typedef struct Forward {
        CallHead head;            /* forwarded: true */
        ActorRuntime *rt;
        char *type, *id, *method, *query, *caller_app;
        char *verb, *target;      /* a request sent on as received (actor_forward()); NULL: a method call */
        char **headers;           /* packed: the caller's, less forward_skip, plus the caller's app id */
        const void *body;         /* borrowed until done, as the request's (or owned_body) */
        size_t body_len;
        char *owned_body;         /* a request the block wrote (actor_reminder_forward()) */
        ActorInvokeDoneFn done;
        void *userdata;
        ActorDoneFn plain_done;   /* actor_reminder_forward()'s caller (done is then reminder_forwarded) */
        void *plain_userdata;
        TransportCall *tc;        /* the attempt on the owner */
        ActorCall *local;         /* the owner became this host: the call runs here */
        sd_event_source *retry;
        uint64_t give_up_usec;    /* CLOCK_MONOTONIC */
        unsigned attempts;
        char *why;                /* the last failure, for the final error */
} Forward;

static void forward_free(Forward *f) {
        transport_call_cancel(f->tc);
        actor_call_cancel(f->local);
        sd_event_source_disable_unref(f->retry);
        free(f->type);
        free(f->id);
        free(f->method);
        free(f->query);
        free(f->caller_app);
        free(f->verb);
        free(f->target);
        free(f->headers);
        free(f->owned_body);
        free(f->why);
        free(f);
}

static void forward_end(Forward *f, const ActorAnswer *a, int error, const char *message) {
        f->tc = NULL;
        f->local = NULL;
        f->done(a, error, message, f->userdata);
        forward_free(f);
}

static void forward_attempt(Forward *f);

static int on_forward_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Forward *f = userdata;
        f->retry = sd_event_source_disable_unref(f->retry);
        forward_attempt(f);
        return 0;
}

/* Waits a moment and asks the placement again; gives up past the patience. */
static void forward_later(Forward *f, const char *why) {
        uint64_t now = actor_heap_now(f->rt->idle);
        free(f->why);
        f->why = strdup(why);
        if (now >= f->give_up_usec)
                return forward_end(f, NULL, -EHOSTDOWN, f->why ?: "the actor's host cannot be reached");
        if (sd_event_add_time_relative(f->rt->registry->event, &f->retry, CLOCK_MONOTONIC, FORWARD_RETRY_USEC,
                                       FORWARD_ACCURACY_USEC, on_forward_retry, f) < 0)
                forward_end(f, NULL, -ENOMEM, "cannot wait to try again");
}

static void on_forward_answer(TransportCall *c, const TransportAnswer *a, const TransportError *e, void *userdata) {
        Forward *f = userdata;
        f->tc = NULL;
        if (e) {
                if (e->answered)
                        return forward_end(f, NULL, -EIO, e->message);
                /* nothing came back: the owner may be dead (it leaves the view within a lease) */
                return forward_later(f, e->message);
        }
        const char *moved = NULL;
        for (char *const *h = a->headers; h && h[0] && h[1]; h += 2)
                if (ascii_eq_ci(h[0], PLACEMENT_HEADER))
                        moved = h[1];
        if (a->status == 503 && moved)
                return forward_later(f, "the hosts' views of the cluster disagree");
        _cleanup_free_ char **keep = NULL;
        if (headers_pack(a->headers, answer_skip, NULL, NULL, &keep) < 0)
                return forward_end(f, NULL, -ENOMEM, "out of memory");
        ActorAnswer ans = { .status = a->status, .headers = keep, .body = a->body, .body_len = a->body_len };
        forward_end(f, &ans, 0, NULL);
}

static const TransportHandler forward_handler = { .done = on_forward_answer };

static void on_forward_local_done(const ActorAnswer *a, int error, const char *message, void *userdata) {
        Forward *f = userdata;
        f->local = NULL;
        if (error == -EREMCHG) /* moved again meanwhile */
                return forward_later(f, "the actor moved while the call waited");
        forward_end(f, a, error, message);
}

static void forward_attempt(Forward *f) {
        ActorRuntime *rt = f->rt;
        PlacementAnswer pa;
        int k;

        f->attempts++;
        k = placement_lookup(rt->placement, f->type, f->id, &pa);
        if (k == -EHOSTUNREACH)
                return forward_later(f, "this host is cut off from its cluster");
        if (k == -ENOENT)
                return forward_later(f, "no host serves the actor type now");
        if (k < 0)
                return forward_end(f, NULL, k, "cannot place the actor");
        if (pa.local && f->target) /* a request only the front-end can serve here */
                return forward_end(f, NULL, -EAGAIN, "the actor's owner changed meanwhile: try again");
        if (pa.local) {
                ActorInvokeRequest req = { .caller_app = f->caller_app, .type = f->type, .id = f->id,
                                           .method = f->method, .query = f->query, .headers = f->headers,
                                           .body = f->body, .body_len = f->body_len, .local_only = true };
                k = actor_invoke(rt->registry, &req, on_forward_local_done, f, &f->local);
                if (k == -EREMCHG)
                        return forward_later(f, "the actor moved while the call waited");
                if (k < 0)
                        return forward_end(f, NULL, k, NULL);
                return;
        }
        _cleanup_free_ char *host = NULL, *path = NULL, *target = NULL;
        uint16_t port;
        if (!f->target && (!(path = actor_path(f->type, f->id, f->method, NULL, f->query)) ||
                           asprintf(&target, "/v1.0%s", path) < 0)) {
                target = NULL;
                return forward_end(f, NULL, -ENOMEM, "out of memory");
        }
        if (cluster_parse_address(pa.address, &host, &port) < 0)
                return forward_later(f, "the owner announces a bad address");
        TransportAddress addr = { .kind = TRANSPORT_ADDRESS_TCP, .host = host, .port = port, .peer_host = pa.host };
        TransportRequest req = { .method = f->verb ?: "PUT", .target = f->target ?: target, .headers = f->headers,
                                 .body = f->body,
                                 .body_len = f->body_len, .max_answer = ACTOR_ANSWER_MAX + 64 * 1024 };
        k = transport_call_start(rt->registry->transport, &addr, &req, &forward_handler, f, &f->tc);
        if (k < 0)
                forward_end(f, NULL, k, "cannot start the call to the owning host");
}

/* Sends the call to the host that owns the actor (and there again after a change of owner). */
static int forward_start(ActorRuntime *rt, const ActorInvokeRequest *req, const char *verb, const char *target,
                         ActorInvokeDoneFn done, void *userdata, ActorCall **ret) {
        Forward *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        if ((verb && !(f->verb = strdup(verb))) || (target && !(f->target = strdup(target)))) {
                forward_free(f);
                return -ENOMEM;
        }
        f->head.forwarded = true;
        f->rt = rt;
        f->body = req->body;
        f->body_len = req->body_len;
        f->done = done;
        f->userdata = userdata;
        f->give_up_usec = actor_heap_now(rt->idle) + FORWARD_PATIENCE_USEC;
        if (!(f->type = strdup(req->type)) || !(f->id = strdup(req->id)) ||
            (req->method && !(f->method = strdup(req->method))) ||
            (req->query && !(f->query = strdup(req->query))) ||
            (req->caller_app && !(f->caller_app = strdup(req->caller_app))) ||
            headers_pack(req->headers, forward_skip, req->caller_app ? INVOKE_PEER_CALLER_HEADER : NULL,
                         req->caller_app, &f->headers) < 0) {
                forward_free(f);
                return -ENOMEM;
        }
        /* the first attempt from the loop: done never runs inside actor_invoke() */
        if (sd_event_add_time_relative(rt->registry->event, &f->retry, CLOCK_MONOTONIC, 0, FORWARD_ACCURACY_USEC,
                                       on_forward_retry, f) < 0) {
                forward_free(f);
                return -ENOMEM;
        }
        rt->forwarded++;
        if (ret)
                *ret = (ActorCall *) f;
        return 0;
}

/* Another host owns a now: it takes no new turn and goes once its turns are over, at the latest
 * after its type's drainOngoingCallTimeout; calls for it are forwarded meanwhile. */
static int on_drain_timeout(sd_event_source *s, uint64_t usec, void *userdata);

static void actor_leave(Actor *a, const char *owner) {
        if (a->leaving)
                return;
        a->leaving = true;
        log_info("Actor %s/%s is now owned by %s: it is deactivated here once its calls are over.",
                 a->type->cfg.type, a->id, owner);
        if (a->in_flight == 0 && !a->head && !a->retrying) {
                idle_arm(a); /* now */
                return;
        }
        if (sd_event_add_time_relative(a->rt->registry->event, &a->drain_timer, CLOCK_MONOTONIC,
                                       a->type->cfg.drain_usec, 0, on_drain_timeout, a) < 0)
                log_oom();
}

static void actor_abort(Actor *a, int error, const char *message);

static int on_drain_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Actor *a = userdata;
        a->drain_timer = sd_event_source_disable_unref(a->drain_timer);
        log_warning("Actor %s/%s: its calls did not end within drainOngoingCallTimeout; they are cut short.",
                    a->type->cfg.type, a->id);
        actor_abort(a, -EHOSTDOWN, "the actor moved to another host");
        return 0;
}

/* ---- taking an actor over from a host that is still alive ---- */

#define RELEASE_PATH_PREFIX "/mooring/peer/v1/actors/"

static void on_released(TransportCall *c, const TransportAnswer *ans, const TransportError *e, void *userdata) {
        Actor *a = userdata;
        a->release_tc = NULL;
        a->releasing = false;
        /* no answer at all: the host is going (it leaves the view within its lease) and its calls
         * into the app with it; an error answer: it cannot have the actor active either */
        if (e || ans->status != 200)
                log_info("Actor %s/%s: the host that owned it did not confirm its release (%s); taking it over.",
                         a->type->cfg.type, a->id, e ? e->message : "no 200");
        actor_pump(a);
}

static const TransportHandler release_handler = { .done = on_released };

/* a was just activated here. If another host owned it before the view changed and is still alive,
 * no turn starts until that host answers that the actor is gone there (its calls drained). */
static void release_ask(Actor *a) {
        ActorRuntime *rt = a->rt;
        PlacementAnswer pa;
        if (!placement_is_cluster(rt->placement))
                return;
        /* the old owner drains for up to drainOngoingCallTimeout after its view changed, which may be up
         * to a lease after this host's did */
        uint64_t window = a->type->cfg.drain_usec + 2 * membership_lease_usec(rt->registry->membership);
        if (placement_previous_owner(rt->placement, a->type->cfg.type, a->id, window, &pa) < 0)
                return;
        _cleanup_free_ char *host = NULL, *path = actor_path(a->type->cfg.type, a->id, NULL, NULL, NULL),
                           *target = NULL;
        uint16_t port;
        if (!path || asprintf(&target, "/mooring/peer/v1%s/release", path) < 0 ||
            cluster_parse_address(pa.address, &host, &port) < 0) {
                target = NULL;
                return;
        }
        TransportAddress addr = { .kind = TRANSPORT_ADDRESS_TCP, .host = host, .port = port, .peer_host = pa.host };
        static char *const headers[] = { "User-Agent", APP_CHANNEL_USER_AGENT, NULL };
        TransportRequest req = { .method = "POST", .target = target, .headers = headers, .max_answer = 64 * 1024,
                                 .timeout_usec = a->type->cfg.drain_usec + 5 * 1000000ULL };
        if (transport_call_start(rt->registry->transport, &addr, &req, &release_handler, a, &a->release_tc) < 0)
                return;
        a->releasing = true;
        rt->releases_asked++;
        log_debug("Actor %s/%s: asking %s, its owner before, to let it go.", a->type->cfg.type, a->id, pa.host);
}

int actor_release(Registry *r, const char *type, const char *id, ActorDoneFn done, void *userdata) {
        ActorRuntime *rt = runtime(r);
        Actor *a = rt ? find_actor(rt, type, id) : NULL;
        if (!a)
                return 0; /* not active here */
        Waiter *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        *w = (Waiter){ .done = done, .userdata = userdata };
        *waiters_end(&a->release_waiters) = w;
        a->released = true;
        actor_leave(a, "the host that asked for it");
        return 1;
}

void actor_release_cancel(Registry *r, void *userdata) {
        ActorRuntime *rt = runtime(r);
        if (!rt)
                return;
        for (size_t i = 0; i < rt->actors.nb; i++)
                for (HNode *n = rt->actors.b[i]; n; n = n->next) {
                        Actor *a = (Actor *) ((char *) n - offsetof(Actor, node));
                        for (Waiter *w = a->release_waiters; w; w = w->next)
                                if (w->userdata == userdata)
                                        w->done = NULL;
                }
}

/* A hash of the ids of the other hosts that serve type t in the view (0: none). This host's own
 * appearance changes nothing it has to read again: it read the records when it began to host the
 * type. */
static uint64_t hosts_signature(Membership *m, const char *type) {
        size_t n;
        const ClusterHost *hosts = membership_hosts(m, &n);
        uint64_t h = 0;
        for (size_t i = 0; i < n; i++) {
                if (hosts[i].self || !strv_contains(hosts[i].actor_types, type))
                        continue;
                h = fnv64_add_str((h ^ 0x9e3779b97f4a7c15ULL) * FNV64_PRIME, hosts[i].id);
        }
        return h;
}

static void type_reload_reminders(ActorType *t);

/* Types whose hosts changed read their reminders again: the records now hold what the previous
 * owners wrote, and this host fires the ones whose actors it owns now. Not while a commit runs:
 * it points into the partitions. */
static void reload_wanted_types(ActorRuntime *rt) {
        if (rt->flush_running)
                return;
        for (ActorType *t = rt->types; t; t = t->next) {
                bool dirty = false; /* changes not yet written wait for their commit (then: here again) */
                for (unsigned i = 0; i < t->n_parts; i++)
                        dirty = dirty || t->parts[i].dirty;
                if (t->reload_wanted && !t->gone && !dirty) {
                        t->reload_wanted = false;
                        log_debug("Actor type %s: the hosts serving it changed; reading its reminders again.",
                                  t->cfg.type);
                        type_reload_reminders(t);
                }
        }
}

/* The cluster's view changed: actors this host no longer owns leave; types whose hosts changed
 * reload their reminders. */
static void on_view_changed(Membership *m, void *userdata) {
        ActorRuntime *rt = userdata;
        for (ActorType *t = rt->types; t; t = t->next) {
                if (t->gone)
                        continue;
                uint64_t sig = hosts_signature(rt->registry->membership, t->cfg.type);
                if (sig != t->hosts_sig && t->rem_state == REM_LOADED)
                        t->reload_wanted = true;
                t->hosts_sig = sig;
        }
        reload_wanted_types(rt);
        for (size_t i = 0; i < rt->actors.nb; i++)
                for (HNode *n = rt->actors.b[i], *next; n; n = next) {
                        next = n->next;
                        Actor *a = (Actor *) ((char *) n - offsetof(Actor, node));
                        PlacementAnswer pa;
                        int k = placement_lookup(rt->placement, a->type->cfg.type, a->id, &pa);
                        if (k >= 0 && pa.local)
                                continue;
                        actor_leave(a, k >= 0 ? pa.host : "no host this one can see");
                }
}

int actor_forward(Registry *r, const ActorForwardRequest *req, ActorInvokeDoneFn done, void *userdata,
                  ActorCall **ret) {
        ActorRuntime *rt = runtime(r);
        if (!rt || !placement_is_cluster(rt->placement))
                return -EINVAL;
        ActorInvokeRequest ir = { .caller_app = req->caller_app, .type = req->type, .id = req->id,
                                  .headers = req->headers, .body = req->body, .body_len = req->body_len };
        return forward_start(rt, &ir, req->verb, req->target, done, userdata, ret);
}

/* The owner's answer to a reminder set or deleted for a front-end (actor_reminder_forward()): 2xx is
 * done, anything else an error with the owner's message (Dapr's error body) when it has one. */
static void reminder_forwarded(const ActorAnswer *a, int error, const char *message, void *userdata) {
        Forward *f = userdata;
        if (error < 0)
                return f->plain_done(error, message, f->plain_userdata);
        if (a->status >= 200 && a->status < 300)
                return f->plain_done(0, NULL, f->plain_userdata);
        _cleanup_(json_decrefp) json_t *j = json_loadb(a->body, a->body_len, 0, NULL);
        const char *m = json_string_value(json_object_get(j, "message"));
        _cleanup_free_ char *why = NULL;
        if (!m && asprintf(&why, "the owning host answered %u", a->status) >= 0)
                m = why;
        f->plain_done(-EREMOTEIO, m ?: "the owning host refused", f->plain_userdata);
}

int actor_reminder_forward(Registry *r, const char *caller_app, const char *type, const char *id, const char *name,
                           const ActorReminderSpec *spec, ActorDoneFn done, void *userdata, ActorCall **ret) {
        ActorRuntime *rt = runtime(r);
        if (!rt || !placement_is_cluster(rt->placement))
                return -EINVAL;
        /* Dapr's HTTP API form, which the peer listener serves: the path, and the body of a set */
        _cleanup_free_ char *path = actor_path(type, id, NULL, NULL, NULL), *target = NULL, *body = NULL;
        if (!path || !(target = malloc(5 + strlen(path) + 11 + 3 * strlen(name) + 1)))
                return -ENOMEM;
        *put_segment(stpcpy(stpcpy(stpcpy(target, "/v1.0"), path), "/reminders/"), name) = 0;
        if (spec) {
                _cleanup_(json_decrefp) json_t *j = json_object();
                /* empty is absent, as for a D-Bus caller */
                if (!j || (spec->due && *spec->due && json_object_set_new(j, "dueTime", json_string(spec->due)) < 0) ||
                    (spec->period && *spec->period &&
                     json_object_set_new(j, "period", json_string(spec->period)) < 0) ||
                    (spec->ttl && *spec->ttl && json_object_set_new(j, "ttl", json_string(spec->ttl)) < 0) ||
                    (spec->data && json_object_set(j, "data", spec->data) < 0) ||
                    !(body = json_dumps(j, JSON_COMPACT)))
                        return -ENOMEM;
        }
        char *headers[] = { (char *) "Content-Type", (char *) "application/json", NULL };
        ActorInvokeRequest ir = { .caller_app = caller_app, .type = type, .id = id, .headers = spec ? headers : NULL,
                                  .body = body ?: "", .body_len = body ? strlen(body) : 0 };
        ActorCall *call = NULL;
        int k = forward_start(rt, &ir, spec ? "POST" : "DELETE", target, reminder_forwarded, NULL, &call);
        if (k < 0)
                return k;
        Forward *f = (Forward *) call;
        f->userdata = f;
        f->owned_body = TAKE_PTR(body);
        f->body = f->owned_body ?: "";
        f->plain_done = done;
        f->plain_userdata = userdata;
        if (ret)
                *ret = call;
        return 0;
}

/* In a cluster, reminders are changed only where their actor lives (see cluster_part_text()). */
static int owner_elsewhere(ActorRuntime *rt, const char *type, const char *id) {
        PlacementAnswer pa;
        if (!placement_is_cluster(rt->placement))
                return 0;
        int k = placement_lookup(rt->placement, type, id, &pa);
        if (k == -EHOSTUNREACH)
                return -EHOSTDOWN;
        return k >= 0 && !pa.local ? -EREMOTE : 0;
}

static void on_lapse(Placement *p, void *userdata) {
        on_view_changed(NULL, userdata);
}

/* ---- method calls ---- */

int actor_invoke(Registry *r, const ActorInvokeRequest *req, ActorInvokeDoneFn done, void *userdata,
                 ActorCall **ret) {
        ActorRuntime *rt = runtime(r);
        PlacementAnswer pa;
        ActorType *type;
        Actor *a;
        Turn *t;
        int k;

        if (!rt || !rt->store)
                return -ENODEV;
        if (!name_ok(req->type) || !name_ok(req->id) || !req->method || !*req->method)
                return -EINVAL;
        k = placement_lookup(rt->placement, req->type, req->id, &pa);
        if (k == -EHOSTUNREACH && req->local_only)
                return -EREMCHG;
        if (k == -EHOSTUNREACH)
                return -EHOSTDOWN; /* cut off from the cluster: this host owns nothing */
        if (k < 0)
                return k;
        if (!pa.local) {
                /* a call from a peer is never sent on: the views differ for a moment, the sender
                 * asks again */
                if (req->local_only)
                        return -EREMCHG;
                return forward_start(rt, req, NULL, NULL, done, userdata, ret);
        }
        type = find_type(rt, req->type);
        if (!type)
                return -ENOENT;
        App *app = registry_find_app(r, type->app_id);
        TransportAddress addr;
        if (!app || !app_channel_address(app, &addr) || app_channel_is_down(app))
                return -EHOSTDOWN;
        a = find_actor(rt, req->type, req->id);
        if (a && a->leaving && !a->released) { /* owned here again before it went: it stays */
                a->leaving = false;
                a->drain_timer = sd_event_source_disable_unref(a->drain_timer);
        }
        const char *reentry = header_get(req->headers, REENTRANCY_HEADER);
        /* checked here before an actor is made for the call; turn_submit() checks again for retries */
        bool enter = a && type->cfg.reentrancy && reentry && a->in_flight > 0 && a->chain &&
                     streq(a->chain, reentry);
        if (enter && a->in_flight >= type->cfg.max_depth)
                return -ELOOP;
        if (a && !enter && a->queued >= ACTOR_QUEUE_MAX)
                return -EBUSY;
        if (!a && !(a = actor_get(rt, type, req->id, true)))
                return -ENOMEM;

        t = turn_new(rt, a, TURN_METHOD);
        if (!t || !(t->target = actor_path(req->type, req->id, req->method, NULL, req->query)) ||
            headers_pack(req->headers, request_skip, NULL, NULL, &t->headers) < 0)
                goto oom;
        if (reentry && !(t->reentry = strdup(reentry)))
                goto oom;
        t->body = req->body;
        t->body_len = req->body_len;
        t->done = done;
        t->userdata = userdata;
        k = resiliency_actor_policy(r->resiliency, req->caller_app, req->type, req->id, &t->policy);
        if (k < 0)
                goto oom;
        if (k > 0) {
                t->res = resiliency_ref(r->resiliency);
                k = call_attempt(t);
                if (k == -EHOSTUNREACH && t->refused) /* the breaker is open: answered from the loop */
                        k = call_park(t, 0);
        } else
                k = turn_submit(a, t);
        if (k < 0) {
                turn_free(t);
                if (a->in_flight == 0 && !a->head)
                        idle_arm(a);
                return k;
        }
        if (ret)
                *ret = (ActorCall *) t;
        return 0;

oom:
        turn_free(t);
        if (a->in_flight == 0 && !a->head)
                idle_arm(a);
        return -ENOMEM;
}

void actor_call_cancel(ActorCall *c) {
        Turn *t = (Turn *) c;
        Actor *a;

        if (!t)
                return;
        if (((CallHead *) c)->forwarded)
                return forward_free((Forward *) c);
        if (t->running) {
                t->cancelled = true; /* the app finishes its turn; nobody hears the answer */
                return;
        }
        a = t->actor;
        if (t->retry_timer)
                call_unpark(t);
        else
                queue_remove(a, t);
        turn_free(t);
        if (a->in_flight == 0 && !a->head)
                idle_arm(a);
}

/* ---- idle deactivation ---- */

static void on_deactivated(TransportCall *c, const TransportAnswer *a, const TransportError *e, void *userdata) {
        char *what = userdata;
        if (e || a->status != 200)
                log_debug("Deactivation of actor %s: %s", what, e ? e->message : "the app did not answer 200");
        free(what);
}

static const TransportHandler deactivate_handler = { .done = on_deactivated };

static void on_idle(ActorHeap *h, ActorHeapEntry *e, void *userdata) {
        ActorRuntime *rt = userdata;
        Actor *a = (Actor *) ((char *) e - offsetof(Actor, idle));
        App *app = registry_find_app(rt->registry, a->type->app_id);
        TransportAddress addr;

        if (a->in_flight > 0 || a->head || a->retrying)
                return; /* busy again: re-armed when it is idle */
        /* Dapr: DELETE /actors/{type}/{id}; the app drops the instance */
        _cleanup_free_ char *path = actor_path(a->type->cfg.type, a->id, NULL, NULL, NULL);
        char *what = NULL;
        if (path && app && app_channel_address(app, &addr) && asprintf(&what, "%s/%s", a->type->cfg.type, a->id) >= 0) {
                static char *const headers[] = { "User-Agent", APP_CHANNEL_USER_AGENT, NULL };
                TransportRequest req = { .method = "DELETE", .target = path, .headers = headers,
                                         .timeout_usec = 10 * 1000000ULL, .max_answer = 64 * 1024 };
                if (transport_call_start(rt->registry->transport, &addr, &req, &deactivate_handler, what, NULL) < 0)
                        free(what);
        }
        log_debug("Actor %s/%s deactivated after being idle.", a->type->cfg.type, a->id);
        actor_free(a);
}

/* ---- reminder and timer fires ---- */

static json_t *fire_body(json_t *data, const char *due, const char *period, const char *callback) {
        json_t *j = json_pack("{s:O?, s:s, s:s}", "data", data, "dueTime", strempty(due), "period", strempty(period));
        if (j && callback)
                json_object_set_new(j, "callback", json_string(callback));
        return j;
}

/* The body of a reminder's fire, {"data":..,"dueTime":..,"period":..}, as daprd sends it. */
static char *reminder_fire_body(const Reminder *m) {
        Buf b = { .ok = true };
        buf_puts(&b, "{\"data\":");
        buf_puts(&b, m->data ?: "null");
        buf_puts(&b, ",\"dueTime\":");
        buf_put_jstr(&b, strempty(m->due_str));
        buf_puts(&b, ",\"period\":");
        buf_put_jstr(&b, strempty(m->period_str));
        buf_puts(&b, "}");
        if (!b.ok) {
                free(b.p);
                return NULL;
        }
        return b.p;
}

/* Queues one fire for (type, id) at the end of its line (activating it). Takes body (JSON text). */
static Turn *fire_turn(ActorRuntime *rt, ActorType *type, const char *id, TurnKind kind, const char *name,
                       char *body) {
        static char *const headers[] = { "Content-Type", "application/json", "User-Agent", APP_CHANNEL_USER_AGENT,
                                         NULL };
        Actor *a = body ? actor_get(rt, type, id, true) : NULL;
        Turn *t;

        if (!a) {
                free(body);
                return NULL;
        }
        t = turn_new(rt, a, kind);
        if (!t) {
                free(body);
                return NULL;
        }
        t->target = actor_path(type->cfg.type, id, kind == TURN_REMINDER ? "remind" : "timer", name, NULL);
        t->owned_body = body;
        t->headers = (char **) headers; /* never written: the transport copies what it sends */
        t->static_headers = true;
        if (!t->target) {
                turn_free(t);
                return NULL;
        }
        t->body = t->owned_body;
        t->body_len = strlen(t->owned_body);
        turn_enqueue(a, t);
        return t;
}

static void reminder_delete(Reminder *m) {
        RemPart *p = m->part;
        reminder_unlink(p->type->rt, m);
        reminder_free(m);
        part_mark(p);
}

/* The next due time after the one that just fired, skipping those already passed (fired as one). */
static int64_t next_due(const ActorSchedule *sc, int64_t last, int64_t now) {
        int64_t n = actor_period_add(&sc->period, last);
        if (n <= now && !sc->period.years && !sc->period.months && !sc->period.days && sc->period.usec > 0)
                n += ((now - n) / sc->period.usec + 1) * sc->period.usec;
        for (unsigned i = 0; n <= now && i < 100000; i++)
                n = actor_period_add(&sc->period, n);
        return n;
}

static void reminder_after_fire(Reminder *m, bool retry, bool cancel) {
        ActorRuntime *rt = m->part->type->rt;
        int64_t now = now_realtime(rt);

        if (cancel)
                return reminder_delete(m);
        if (retry) { /* the app was not reached: the same fire again, a little later */
                schedule_reminder(rt, m, now + (int64_t) FIRE_RETRY_USEC);
                return;
        }
        if (m->left > 0)
                m->left--;
        if (!m->sc.periodic || m->left == 0)
                return reminder_delete(m);
        m->next_usec = next_due(&m->sc, m->next_usec, now);
        if (m->sc.expiry_usec && m->next_usec >= m->sc.expiry_usec)
                return reminder_delete(m);
        schedule_reminder(rt, m, m->next_usec);
        reminder_changed(m); /* where the schedule stands */
}

static void fire_reminder(ActorRuntime *rt, Reminder *m) {
        ActorType *t = m->part->type;
        int64_t now = now_realtime(rt);

        if (m->turn)
                return; /* the previous fire still runs: its end schedules the next */
        if (placement_is_cluster(rt->placement) && !owned_here(rt, t->cfg.type, m->actor_id)) {
                /* the owner fires it and keeps its record; a change of owner reloads the records, so
                 * this copy only waits (it is not written from here: see cluster_part_text()) */
                schedule_reminder(rt, m, now + (int64_t) NOT_OWNER_RECHECK_USEC);
                return;
        }
        if (m->sc.expiry_usec && now >= m->sc.expiry_usec)
                return reminder_delete(m);
        Turn *turn = fire_turn(rt, t, m->actor_id, TURN_REMINDER, m->name, reminder_fire_body(m));
        if (!turn) {
                schedule_reminder(rt, m, now + (int64_t) FIRE_RETRY_USEC);
                return;
        }
        if (m->due_when_read) { /* at least once: this fire may be a second one (metrics below) */
                m->due_when_read = false;
                rt->fires_maybe_repeated++;
        }
        turn->reminder = m;
        m->turn = turn;
        actor_pump(turn->actor);
}

static void timer_unlink(Timer *tm) {
        Actor *a = tm->actor;
        actor_heap_remove(a->rt->due, &tm->due.entry);
        due_unpark(&tm->due);
        for (Timer **p = &a->timers; *p; p = &(*p)->next)
                if (*p == tm) {
                        *p = tm->next;
                        break;
                }
        if (tm->turn)
                turn_drop(tm->turn);
        tm->turn = NULL;
}

static void timer_free(Timer *tm) {
        if (!tm)
                return;
        actor_heap_remove(tm->actor->rt->due, &tm->due.entry);
        due_unpark(&tm->due);
        if (tm->turn)
                tm->turn->timer = NULL;
        free(tm->name);
        free(tm->callback);
        free(tm->due_str);
        free(tm->period_str);
        json_decref(tm->data);
        free(tm);
}

static void timer_after_fire(Timer *tm, bool retry, bool cancel) {
        ActorRuntime *rt = tm->actor->rt;
        int64_t now = now_realtime(rt);

        if (!cancel && retry) {
                (void) actor_heap_set(rt->due, &tm->due.entry, (uint64_t) (now + (int64_t) FIRE_RETRY_USEC));
                return;
        }
        if (tm->left > 0)
                tm->left--;
        if (!cancel && tm->sc.periodic && tm->left != 0) {
                tm->next_usec = next_due(&tm->sc, tm->next_usec, now);
                if (!tm->sc.expiry_usec || tm->next_usec < tm->sc.expiry_usec) {
                        (void) actor_heap_set(rt->due, &tm->due.entry, (uint64_t) tm->next_usec);
                        return;
                }
        }
        timer_unlink(tm);
        timer_free(tm);
}

static void fire_timer(ActorRuntime *rt, Timer *tm) {
        Actor *a = tm->actor;
        int64_t now = now_realtime(rt);

        if (tm->turn)
                return;
        if (tm->sc.expiry_usec && now >= tm->sc.expiry_usec) {
                timer_unlink(tm);
                timer_free(tm);
                return;
        }
        _cleanup_(json_decrefp) json_t *body = fire_body(tm->data, tm->due_str, tm->period_str,
                                                         strempty(tm->callback));
        Turn *turn = body ? fire_turn(rt, a->type, a->id, TURN_TIMER, tm->name, json_dumps(body, JSON_COMPACT))
                          : NULL;
        if (!turn) {
                (void) actor_heap_set(rt->due, &tm->due.entry, (uint64_t) (now + (int64_t) FIRE_RETRY_USEC));
                return;
        }
        turn->timer = tm;
        tm->turn = turn;
        actor_pump(a);
}

static FireGate *due_gate(DueItem *d) {
        return d->kind == DUE_REMINDER ? ((Reminder *) d)->part->type->gate : ((Timer *) d)->actor->type->gate;
}

static void due_fire(ActorRuntime *rt, DueItem *d) {
        if (d->kind == DUE_REMINDER)
                fire_reminder(rt, (Reminder *) d);
        else
                fire_timer(rt, (Timer *) d);
}

static void on_due(ActorHeap *h, ActorHeapEntry *e, void *userdata) {
        ActorRuntime *rt = userdata;
        DueItem *d = (DueItem *) e;
        FireGate *g = due_gate(d);
        /* the app has its fill of fires: this one waits its turn, behind those already waiting */
        if (g && (g->running >= FIRES_IN_APP_MAX || g->head))
                return due_park(g, d);
        due_fire(rt, d);
}

/* Starts waiting fires, oldest first, while their app has free slots. */
static int on_gate_pump(sd_event_source *s, void *userdata) {
        ActorRuntime *rt = userdata;
        for (FireGate *g = rt->gates; g; g = g->next)
                while (g->head && g->running < FIRES_IN_APP_MAX) {
                        DueItem *d = g->head;
                        due_unpark(d);
                        due_fire(rt, d);
                }
        return 0;
}

/* ---- reminder API ---- */

/* The type, if caller_app hosts it; -EPERM when it does not (Dapr: ERR_ACTOR_REMINDER_NON_HOSTED). */
static int hosted_by(ActorRuntime *rt, const char *caller_app, const char *type, ActorType **ret) {
        ActorType *t = find_type(rt, type);
        if (!t || !caller_app || !streq(t->app_id, caller_app))
                return -EPERM;
        *ret = t;
        return 0;
}

int actor_reminder_set(Registry *r, const char *caller_app, const char *type, const char *id, const char *name,
                       const ActorReminderSpec *spec, ActorDoneFn done, void *userdata, const char **reterr) {
        ActorRuntime *rt = runtime(r);
        ActorType *t;
        ActorSchedule sc;
        Reminder *m;
        int k;

        if (!rt || !rt->store)
                return -ENODEV;
        if (!name_ok(id) || !name_ok(name)) {
                *reterr = "the actor id and the reminder name must not be empty or contain '||'";
                return -EINVAL;
        }
        /* they are stored in JSON text: bytes that are no UTF-8 would spoil the whole record */
        if (!utf8_is_valid(id, strlen(id)) || !utf8_is_valid(name, strlen(name))) {
                *reterr = "the actor id and the reminder name must be UTF-8";
                return -EINVAL;
        }
        k = hosted_by(rt, caller_app, type, &t);
        if (k < 0)
                return k;
        k = owner_elsewhere(rt, type, id);
        if (k < 0)
                return k;
        k = actor_schedule_parse(spec->due, spec->period, spec->ttl, now_realtime(rt), &sc, reterr);
        if (k < 0)
                return k;
        if (t->rem_state != REM_LOADED) {
                *reterr = t->rem_state == REM_FAILED ? "the reminders of this type could not be loaded"
                                                     : "the reminders of this type are still being loaded";
                return -EAGAIN;
        }
        _cleanup_free_ char *data = spec->data ? json_dumps(spec->data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (spec->data && !data)
                return -ENOMEM;
        m = reminder_new(t->cfg.type, id, name, spec->due, spec->period, spec->ttl, data);
        if (!m)
                return -ENOMEM;
        m->sc = sc;
        m->next_usec = sc.first_usec;
        m->left = sc.repetitions;
        RemPart *p = &t->parts[part_index(t->n_layout, id, name)];
        if (part_add_waiter(p, done, userdata) < 0) {
                reminder_free(m);
                return -ENOMEM;
        }
        Reminder *old = find_reminder(rt, type, id, name);
        if (old) { /* re-registering replaces */
                reminder_unlink(rt, old);
                reminder_free(old);
        }
        if (ht_add(&rt->reminders, &m->node) < 0) {
                reminder_free(m);
                part_mark(p); /* the waiter is told after the next write */
                return 0;
        }
        reminder_link(p, m);
        schedule_reminder(rt, m, m->next_usec);
        part_mark(p);
        return 0;
}

int actor_reminder_delete(Registry *r, const char *caller_app, const char *type, const char *id,
                          const char *name, ActorDoneFn done, void *userdata) {
        ActorRuntime *rt = runtime(r);
        ActorType *t;
        int k;

        if (!rt || !rt->store)
                return -ENODEV;
        k = hosted_by(rt, caller_app, type, &t);
        if (k < 0)
                return k;
        k = owner_elsewhere(rt, type, id);
        if (k < 0)
                return k;
        if (t->rem_state != REM_LOADED)
                return -EAGAIN;
        Reminder *m = find_reminder(rt, type, id, name);
        RemPart *p = m ? m->part : &t->parts[part_index(t->n_layout, id, name)];
        if (part_add_waiter(p, done, userdata) < 0)
                return -ENOMEM;
        if (m) {
                reminder_unlink(rt, m); /* immediate: no fire after this */
                reminder_free(m);
        }
        part_mark(p); /* answered when written, found or not */
        return 0;
}

/* A reminder's data as JSON (NULL: none, or out of memory). */
static json_t *reminder_data(const Reminder *m) {
        return m->data ? json_loads(m->data, JSON_DECODE_ANY, NULL) : NULL;
}

int actor_reminder_get(Registry *r, const char *caller_app, const char *type, const char *id, const char *name,
                       json_t **ret) {
        ActorRuntime *rt = runtime(r);
        ActorType *t;
        int k;

        if (!rt || !rt->store)
                return -ENODEV;
        k = hosted_by(rt, caller_app, type, &t);
        if (k < 0)
                return k;
        k = owner_elsewhere(rt, type, id); /* this host's copy may be behind the owner's */
        if (k < 0)
                return k;
        if (t->rem_state != REM_LOADED)
                return -EAGAIN;
        Reminder *m = find_reminder(rt, type, id, name);
        if (!m) {
                *ret = NULL;
                return 0;
        }
        *ret = json_pack("{s:o?, s:s, s:s}", "data", reminder_data(m), "dueTime", strempty(m->due_str), "period",
                         strempty(m->period_str));
        return *ret ? 0 : -ENOMEM;
}

int actor_reminder_list(Registry *r, const char *type, const char *id, json_t **ret) {
        ActorRuntime *rt = runtime(r);
        ActorType *t = rt ? find_type(rt, type) : NULL;
        json_t *a = json_array();
        char buf[32];

        if (!a)
                return -ENOMEM;
        if (!t) {
                json_decref(a);
                return -ENOENT;
        }
        for (unsigned i = 0; i < t->n_parts; i++)
                for (Reminder *m = t->parts[i].head; m; m = m->pnext)
                        if (streq(m->actor_id, id))
                                json_array_append_new(
                                        a, json_pack("{s:s, s:s, s:s, s:s, s:o?, s:s, s:I}", "name", m->name,
                                                     "dueTime", strempty(m->due_str), "period",
                                                     strempty(m->period_str), "ttl", strempty(m->ttl_str), "data",
                                                     reminder_data(m), "nextFire",
                                                     actor_format_rfc3339(m->next_usec, buf), "firesLeft",
                                                     (json_int_t) m->left));
        *ret = a;
        return 0;
}

void actor_reminder_cancel(Registry *r, void *userdata) {
        ActorRuntime *rt = runtime(r);
        for (Waiter *w = rt ? rt->flushing : NULL; w; w = w->next)
                if (w->userdata == userdata)
                        w->done = NULL;
        for (ActorType *t = rt ? rt->types : NULL; t; t = t->next)
                for (unsigned i = 0; i < t->n_parts; i++)
                        for (Waiter *w = t->parts[i].waiters; w; w = w->next)
                                if (w->userdata == userdata)
                                        w->done = NULL;
}

/* ---- timers ---- */

int actor_timer_set(Registry *r, const char *caller_app, const char *type, const char *id, const char *name,
                    const ActorReminderSpec *spec, const char **reterr) {
        ActorRuntime *rt = runtime(r);
        ActorType *t;
        ActorSchedule sc;
        Actor *a;
        Timer *tm;
        int k;

        if (!rt || !rt->store)
                return -ENODEV;
        if (!name_ok(name)) {
                *reterr = "the timer name must not be empty or contain '||'";
                return -EINVAL;
        }
        k = hosted_by(rt, caller_app, type, &t);
        if (k < 0)
                return -EADDRNOTAVAIL;
        a = find_actor(rt, type, id);
        if (!a) {
                *reterr = "the actor is not active on this host";
                return -EADDRNOTAVAIL;
        }
        k = actor_schedule_parse(spec->due, spec->period, spec->ttl, now_realtime(rt), &sc, reterr);
        if (k < 0)
                return k;
        tm = calloc(1, sizeof *tm);
        if (!tm)
                return -ENOMEM;
        *tm = (Timer){ .due.kind = DUE_TIMER, .actor = a, .sc = sc, .next_usec = sc.first_usec,
                       .left = sc.repetitions };
        tm->name = strdup(name);
        tm->callback = spec->callback ? strdup(spec->callback) : NULL;
        tm->due_str = spec->due && *spec->due ? strdup(spec->due) : NULL;
        tm->period_str = spec->period && *spec->period ? strdup(spec->period) : NULL;
        tm->data = spec->data ? json_incref(spec->data) : NULL;
        if (!tm->name || (spec->callback && !tm->callback)) {
                timer_free(tm);
                return -ENOMEM;
        }
        (void) actor_timer_delete(r, caller_app, type, id, name); /* replaces */
        tm->next = a->timers;
        a->timers = tm;
        if (actor_heap_set(rt->due, &tm->due.entry, (uint64_t) MAX(tm->next_usec, 1)) < 0) {
                timer_unlink(tm);
                timer_free(tm);
                return -ENOMEM;
        }
        return 0;
}

int actor_timer_delete(Registry *r, const char *caller_app, const char *type, const char *id, const char *name) {
        ActorRuntime *rt = runtime(r);
        ActorType *t;

        if (!rt || !rt->store)
                return -ENODEV;
        if (hosted_by(rt, caller_app, type, &t) < 0)
                return -EADDRNOTAVAIL;
        Actor *a = find_actor(rt, type, id);
        for (Timer *tm = a ? a->timers : NULL; tm; tm = tm->next)
                if (streq(tm->name, name)) {
                        timer_unlink(tm);
                        timer_free(tm);
                        break;
                }
        return 0; /* Dapr: deleting an unknown timer succeeds */
}

/* ---- state ---- */

static int state_target(ActorRuntime *rt, const char *caller_app, const char *type, const char *id,
                        ActorType **ret) {
        ActorType *t;
        if (!rt || !rt->store)
                return -ENODEV;
        /* Dapr: only the host of the actor reads and writes its state, and only while it is active */
        if (hosted_by(rt, caller_app, type, &t) < 0 || !find_actor(rt, type, id))
                return -EADDRNOTAVAIL;
        *ret = t;
        return 0;
}

static char *state_key(const ActorType *t, const char *id, const char *key) {
        char *k;
        return asprintf(&k, "%s||%s||%s||%s", t->app_id, t->cfg.type, id, key) < 0 ? NULL : k;
}

int actor_state_get(Registry *r, const char *caller_app, const char *type, const char *id, const char *key,
                    StateDoneFn done, void *userdata) {
        ActorRuntime *rt = runtime(r);
        ActorType *t;
        int k = state_target(rt, caller_app, type, id, &t);
        if (k < 0)
                return k;
        if (!key || !*key)
                return -EINVAL;
        _cleanup_free_ char *full = state_key(t, id, key);
        if (!full)
                return -ENOMEM;
        return state_get_raw(rt->store, caller_app, full, done, userdata);
}

int actor_state_transact(Registry *r, const char *caller_app, const char *type, const char *id,
                         const StateOp *ops, size_t n, StateDoneFn done, void *userdata) {
        ActorRuntime *rt = runtime(r);
        ActorType *t;
        StateOp *copy;
        int k = state_target(rt, caller_app, type, id, &t);

        if (k < 0)
                return k;
        copy = calloc(n ?: 1, sizeof *copy);
        if (!copy)
                return -ENOMEM;
        for (size_t i = 0; i < n && k >= 0; i++) {
                copy[i] = ops[i];
                copy[i].key = state_key(t, id, ops[i].key);
                if (!copy[i].key)
                        k = -ENOMEM;
        }
        if (k >= 0)
                k = state_transact_raw(rt->store, caller_app, copy, n, done, userdata);
        for (size_t i = 0; i < n; i++)
                free((char *) copy[i].key);
        free(copy);
        return k;
}

void actor_state_cancel(Registry *r, void *userdata) {
        ActorRuntime *rt = runtime(r);
        if (rt && rt->store)
                state_cancel(rt->store, userdata);
}

/* ---- hosting ---- */

static void type_free(ActorType *t) {
        ActorRuntime *rt = t->rt;
        for (ActorType **p = &rt->types; *p; p = &(*p)->next)
                if (*p == t) {
                        *p = t->next;
                        break;
                }
        free(t->cfg.type);
        free(t->app_id);
        free(t->rem_error);
        free(t);
}

/* The type is no longer hosted: its actors end (the app lost them), its reminders wait in the store. */
static void type_unhost(ActorType *t, const char *why) {
        ActorRuntime *rt = t->rt;
        /* (a scan of every active actor: skipped for a type with none, as at shutdown) */
        for (size_t i = 0; t->n_active > 0 && i < rt->actors.nb; i++)
                for (HNode *n = rt->actors.b[i], *next; n; n = next) {
                        next = n->next;
                        Actor *a = (Actor *) ((char *) n - offsetof(Actor, node));
                        if (a->type == t)
                                actor_abort(a, -EHOSTDOWN, why);
                }
        type_drop_parts(t, -ECANCELED, why);
        (void) placement_set_type_hosted(rt->placement, t->cfg.type, false);
        ht_remove(&rt->by_name, &t->node);
        t->gone = true;
        if (t->store_calls == 0)
                type_free(t);
}

/* Ends the active actors of an app's types (it restarted or went down: its instances are gone). */
static void app_lost_actors(ActorRuntime *rt, const char *app_id) {
        for (size_t i = 0; i < rt->actors.nb; i++)
                for (HNode *n = rt->actors.b[i], *next; n; n = next) {
                        next = n->next;
                        Actor *a = (Actor *) ((char *) n - offsetof(Actor, node));
                        if (streq(a->type->app_id, app_id) && a->in_flight == 0 && !a->head && !a->retrying)
                                actor_free(a);
                }
}

static void app_set_types(ActorRuntime *rt, App *app, ActorAppConfig *cfg) {
        const char *id = app->config->id;

        for (ActorType *t = rt->types, *next; t; t = next) {
                next = t->next;
                if (t->gone || !streq(t->app_id, id))
                        continue;
                bool still = false;
                for (size_t i = 0; i < cfg->n; i++)
                        still = still || streq(cfg->types[i].type, t->cfg.type);
                if (!still) {
                        log_struct(LOG_INFO, 0, id, NULL, "App no longer hosts actor type '%s'.", t->cfg.type);
                        type_unhost(t, "the app no longer hosts the actor type");
                }
        }
        for (size_t i = 0; i < cfg->n; i++) {
                ActorTypeConfig *c = &cfg->types[i];
                ActorType *t = find_type(rt, c->type);
                if (t && !streq(t->app_id, id)) {
                        log_struct(LOG_WARNING, 0, id, NULL, "Actor type '%s' is hosted by app '%s' already; "
                                   "ignoring it for this app.", c->type, t->app_id);
                        continue;
                }
                if (t) { /* settings may change; actors and reminders stay */
                        ht_remove(&rt->by_name, &t->node);
                        free(t->cfg.type);
                        t->cfg = *c;
                        c->type = NULL;
                        t->node.key = t->cfg.type;
                        if (ht_add(&rt->by_name, &t->node) < 0) {
                                log_oom();
                                type_unhost(t, "out of memory");
                                continue;
                        }
                        /* a new remindersStoragePartitions moves the stored reminders now (a type
                         * still loading takes it when it is loaded) */
                        if (t->rem_state == REM_LOADED && t->cfg.reminder_partitions != t->n_layout) {
                                unsigned was = t->n_layout;
                                if (type_relayout(t, t->cfg.reminder_partitions, false) < 0)
                                        log_oom();
                                else
                                        log_struct(LOG_INFO, 0, id, NULL, "Actor type '%s': reminders stored in "
                                                   "%u partitions are moved to %u.", t->cfg.type, was,
                                                   t->n_layout);
                        }
                        continue;
                }
                t = calloc(1, sizeof *t);
                if (!t || !(t->app_id = strdup(id)) || placement_set_type_hosted(rt->placement, c->type, true) < 0) {
                        if (t)
                                free(t->app_id);
                        free(t);
                        log_oom();
                        continue;
                }
                t->rt = rt;
                t->gate = gate_get(rt, id); /* NULL (out of memory): its fires are not bounded */
                t->cfg = *c;
                c->type = NULL;
                t->node.key = t->cfg.type;
                if (ht_add(&rt->by_name, &t->node) < 0) {
                        (void) placement_set_type_hosted(rt->placement, t->cfg.type, false);
                        free(t->cfg.type);
                        free(t->app_id);
                        free(t);
                        log_oom();
                        continue;
                }
                t->next = rt->types;
                rt->types = t;
                log_struct(LOG_INFO, 0, id, NULL, "App hosts actor type '%s' (idle timeout %" PRIu64
                           " s, reentrancy %s).", t->cfg.type, t->cfg.idle_usec / 1000000,
                           t->cfg.reentrancy ? "on" : "off");
                type_reload_reminders(t);
        }
}

typedef struct ConfigQuery {
        ActorRuntime *rt;
        App *app;                 /* ref */
} ConfigQuery;

static void on_config_answered(TransportCall *tc, const TransportAnswer *ans, const TransportError *e,
                               void *userdata) {
        ConfigQuery *q = userdata;
        ActorRuntime *rt = q->rt;
        App *a = q->app;
        ActorAppConfig cfg = {};
        _cleanup_free_ char *err = NULL;

        if (!a->registry || rt->registry->stopping || !rt->registry->actors)
                goto done;
        if (e) {
                log_struct(LOG_WARNING, 0, a->config->id, NULL, "GET /dapr/config failed: %s; actor types "
                           "unchanged.", e->message);
                goto done;
        }
        if (ans->status == 200 && actor_app_config_parse(ans->body, ans->body_len, &cfg, &err) < 0) {
                log_struct(LOG_WARNING, 0, a->config->id, NULL, "GET /dapr/config: %s; the app hosts no actors.",
                           err ?: "out of memory");
                actor_app_config_done(&cfg);
        }
        /* non-200: the app hosts no actors (Dapr) */
        app_set_types(rt, a, &cfg);
        actor_app_config_done(&cfg);
done:
        app_unref(a);
        free(q);
}

static const TransportHandler config_handler = { .done = on_config_answered };

static void on_app_health_changed(Registry *r, App *a, void *userdata) {
        ActorRuntime *rt = runtime(r);
        TransportAddress addr;

        if (!rt)
                return;
        if (a->health != APP_HEALTH_HEALTHY) {
                app_lost_actors(rt, a->config->id);
                return;
        }
        /* Dapr reads /dapr/config when the app is up, and again after each recovery */
        app_lost_actors(rt, a->config->id);
        /* daprd's gRPC app channel has no app config (GetAppConfig answers nothing): a gRPC app
         * hosts no actors, and its OnInvoke must not see a "dapr/config" call */
        if (a->config->app_protocol_grpc)
                return;
        if (!app_channel_address(a, &addr) || r->stopping)
                return;
        ConfigQuery *q = calloc(1, sizeof *q);
        if (!q)
                return;
        *q = (ConfigQuery){ .rt = rt, .app = app_ref(a) };
        char *headers[] = { "User-Agent", APP_CHANNEL_USER_AGENT, "Content-Type", "application/json",
                            "dapr-app-id", a->config->id, NULL };
        TransportRequest req = {
                .method = "GET",
                .target = "/dapr/config",
                .headers = headers,
                .timeout_usec = 10 * 1000000ULL,
                .max_answer = CONFIG_ANSWER_MAX,
        };
        if (transport_call_start(r->transport, &addr, &req, &config_handler, q, NULL) < 0) {
                app_unref(q->app);
                free(q);
        }
}

static void on_app_removed(Registry *r, App *a, void *userdata) {
        ActorRuntime *rt = runtime(r);
        for (ActorType *t = rt ? rt->types : NULL, *next; t; t = next) {
                next = t->next;
                if (!t->gone && streq(t->app_id, a->config->id))
                        type_unhost(t, "the app hosting the actor type was removed");
        }
}

/* The actor block's own series on GET /metrics (core/metrics.h writers). Not Dapr's: daprd has no
 * figures for these. */
static void actors_metrics(FILE *f, void *userdata) {
        ActorRuntime *rt = userdata;
        fprintf(f, "# HELP mooring_actor_reminder_fires_maybe_repeated_total Reminder fires whose due time had "
                   "passed when this host read the reminder from the store (after a restart, or on taking its "
                   "actor over from another host): the host that had it may have made the same fire without "
                   "recording it, so each may be a duplicate (reminders fire at least once).\n"
                   "# TYPE mooring_actor_reminder_fires_maybe_repeated_total counter\n"
                   "mooring_actor_reminder_fires_maybe_repeated_total %" PRIu64 "\n",
                rt->fires_maybe_repeated);
        fprintf(f, "# HELP mooring_actor_forwarded_calls_total Actor calls sent to the host that owns the actor.\n"
                   "# TYPE mooring_actor_forwarded_calls_total counter\n"
                   "mooring_actor_forwarded_calls_total %" PRIu64 "\n",
                rt->forwarded);
        fprintf(f, "# HELP mooring_actor_releases_asked_total Activations that first asked the host that had the "
                   "actor before to let it go.\n"
                   "# TYPE mooring_actor_releases_asked_total counter\n"
                   "mooring_actor_releases_asked_total %" PRIu64 "\n",
                rt->releases_asked);
}

int actors_setup(Registry *r) {
        ActorRuntime *rt = calloc(1, sizeof *rt);
        int k;

        if (!rt)
                return -ENOMEM;
        rt->registry = r;
        rt->placement = placement_new_local(); /* a cluster's: actors_attach_membership() */
        /* Reminders and timers fire on time (a millisecond late at most: sd-event's default let
         * them run up to 250 ms late, a quarter of a 1 s timer's period); idle deactivation may
         * wait for a coalesced wake-up. */
        rt->due = actor_heap_new(r->event, CLOCK_REALTIME, 1000, on_due, rt);
        rt->idle = actor_heap_new(r->event, CLOCK_MONOTONIC, 0, on_idle, rt);
        if (rt->placement && rt->due && rt->idle &&
            sd_event_add_defer(r->event, &rt->gate_pump, on_gate_pump, rt) >= 0)
                (void) sd_event_source_set_enabled(rt->gate_pump, SD_EVENT_OFF);
        if (rt->gate_pump && sd_event_add_defer(r->event, &rt->flush_defer, on_flush, rt) >= 0)
                (void) sd_event_source_set_enabled(rt->flush_defer, SD_EVENT_OFF);
        if (rt->flush_defer && sd_event_add_time_relative(r->event, &rt->flush_retry, CLOCK_MONOTONIC, 0, 0,
                                                          on_flush_retry, rt) >= 0)
                (void) sd_event_source_set_enabled(rt->flush_retry, SD_EVENT_OFF);
        if (!rt->placement || !rt->due || !rt->idle || !rt->gate_pump || !rt->flush_defer || !rt->flush_retry) {
                sd_event_source_disable_unref(rt->gate_pump);
                sd_event_source_disable_unref(rt->flush_defer);
                actor_heap_free(rt->due);
                actor_heap_free(rt->idle);
                placement_free(rt->placement);
                free(rt);
                return -ENOMEM;
        }
        r->actors = rt;
        k = metrics_add_writer(actors_metrics, rt);
        if (k < 0)
                return k;
        k = registry_add_callback(r, REGISTRY_APP_HEALTH_CHANGED, on_app_health_changed, NULL);
        if (k >= 0)
                k = registry_add_callback(r, REGISTRY_APP_REMOVED, on_app_removed, NULL);
        return k;
}

int actors_attach_membership(Registry *r, const char *host_id) {
        ActorRuntime *rt = runtime(r);
        if (!rt || !r->membership || placement_is_cluster(rt->placement))
                return 0;
        /* in a cluster every daemon computes the same owner from the same view (core/placement.h) */
        Placement *p = placement_new_cluster(r->event, r->membership, host_id);
        if (!p)
                return -ENOMEM;
        for (ActorType *t = rt->types; t; t = t->next)
                if (!t->gone && placement_set_type_hosted(p, t->cfg.type, true) < 0) {
                        placement_free(p);
                        return -ENOMEM;
                }
        if (membership_add_callback(r->membership, on_view_changed, rt) < 0) {
                placement_free(p);
                return -ENOMEM;
        }
        placement_free(rt->placement);
        rt->placement = p;
        placement_set_lapse_callback(p, on_lapse, rt);
        return 0;
}

void actors_done(Registry *r) {
        ActorRuntime *rt = runtime(r);
        if (!rt)
                return;
        (void) registry_remove_callback(r, REGISTRY_APP_HEALTH_CHANGED, on_app_health_changed, NULL);
        (void) registry_remove_callback(r, REGISTRY_APP_REMOVED, on_app_removed, NULL);
        metrics_remove_writer(actors_metrics, rt);
        if (r->membership)
                (void) membership_remove_callback(r->membership, on_view_changed, rt);
        /* every actor ends in one pass, not one pass per type (thousands of types) */
        for (size_t i = 0; i < rt->actors.nb; i++)
                for (HNode *n = rt->actors.b[i], *next; n; n = next) {
                        next = n->next;
                        actor_abort((Actor *) ((char *) n - offsetof(Actor, node)), -EHOSTDOWN,
                                    "mooringd is stopping");
                }
        for (ActorType *t = rt->types, *next; t; t = next) {
                next = t->next;
                if (!t->gone)
                        type_unhost(t, "mooringd is stopping");
        }
        /* calls still in a store of the registry (closed after us) are forgotten there */
        for (ActorType *t = rt->types; t; t = t->next)
                forget_store_calls(t, rt->store);
        forget_flush(rt, rt->store);
        while (rt->types)
                type_free(rt->types);
        rt->own_store = state_store_close(rt->own_store); /* nothing of ours waits in it any more */
        rt->store = NULL;
        actor_heap_free(rt->due);
        actor_heap_free(rt->idle);
        placement_free(rt->placement);
        sd_event_source_disable_unref(rt->gate_pump);
        sd_event_source_disable_unref(rt->flush_defer);
        sd_event_source_disable_unref(rt->flush_retry);
        while (rt->gates) {
                FireGate *g = rt->gates;
                rt->gates = g->next;
                free(g->app_id);
                free(g);
        }
        free(rt->actors.b);
        free(rt->reminders.b);
        free(rt->by_name.b);
        free(rt->store_error);
        free(rt);
        r->actors = NULL;
}

/* ---- what runs ---- */

json_t *actors_active_json(Registry *r, const char *app_id) {
        ActorRuntime *rt = runtime(r);
        json_t *a = json_array();
        for (ActorType *t = rt ? rt->types : NULL; a && t; t = t->next)
                if (!t->gone && (!app_id || streq(t->app_id, app_id)))
                        json_array_append_new(a, json_pack("{s:s, s:I}", "type", t->cfg.type, "count",
                                                           (json_int_t) t->n_active));
        return a;
}

json_t *actors_runtime_json(Registry *r, const char *app_id) {
        ActorRuntime *rt = runtime(r);
        bool ready = false;
        for (ActorType *t = rt ? rt->types : NULL; t; t = t->next)
                ready = ready || (!t->gone && app_id && streq(t->app_id, app_id) && t->rem_state == REM_LOADED);
        return json_pack("{s:s, s:o, s:b, s:s}", "runtimeStatus", rt && rt->store ? "RUNNING" : "DISABLED",
                         "activeActors", actors_active_json(r, app_id), "hostReady", ready, "placement",
                         rt ? placement_status(rt->placement) : "placement: disconnected");
}

json_t *actors_types_json(Registry *r) {
        ActorRuntime *rt = runtime(r);
        json_t *a = json_array();
        for (ActorType *t = rt ? rt->types : NULL; a && t; t = t->next)
                if (!t->gone)
                        json_array_append_new(
                                a, json_pack("{s:s, s:s, s:I, s:I, s:I, s:b, s:s}", "type", t->cfg.type, "app",
                                             t->app_id, "active", (json_int_t) t->n_active, "reminders",
                                             (json_int_t) t->n_reminders, "idleTimeoutSec",
                                             (json_int_t) (t->cfg.idle_usec / 1000000), "reentrancy",
                                             t->cfg.reentrancy, "reminderState",
                                             t->rem_state == REM_LOADED    ? "loaded"
                                             : t->rem_state == REM_FAILED  ? "failed"
                                             : t->rem_state == REM_LOADING ? "loading"
                                                                           : "unloaded"));
        return a;
}
