/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See state.h. Besides translating calls, the block is where a store's work
 * is shared fairly between apps (issue 10 finding 4: one app's 100,000-item
 * save held every other app's reads for 20 s):
 *
 * - Every call is one StateCall. Per store and per app at most
 *   STATE_APP_IN_FLIGHT_MAX calls are in the driver at once; more wait in
 *   that app's FIFO here, and the next one goes in when one of the app's own
 *   calls is answered. So another app's call lands in the driver's queue
 *   behind at most that many calls of a busy app (round-robin by
 *   construction), whatever the busy app has piled up.
 * - A caller that goes away (state_cancel()) takes its queued calls with it:
 *   they are never started; a call already in the driver is cancelled there
 *   if the driver can (it then never starts either), and its outcome is
 *   dropped. done() is never called after state_cancel().
 * - A multi-item save is one driver call (write_many) where the driver has
 *   one, so a bulk save is one job, not one per item.
 * - Failures of the component itself (not etag conflicts, not bad input) are
 *   logged with their cause, rate-limited per store (util/ratelimit.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/app.h"
#include "../core/component.h"
#include "../core/metrics.h"
#include "../core/trace.h"
#include "../core/registry.h"
#include "../core/resiliency.h"
#include "../util/log.h"
#include "../util/ratelimit.h"
#include "../util/strv.h"
#include "state.h"

/* Enough for 50+ concurrent requests of one app to reach the driver's group commit together;
 * small enough that another app waits behind at most this many calls. */
#define STATE_APP_IN_FLIGHT_MAX 64U
/*
 * The default bound on items per request. Dapr bounds a request by its body (4 MiB by
 * default) and lets some stores bound transactions; we bound the item count as well,
 * because a store's cost grows with items, not bytes: 10,000 small items fit in 4 MiB and
 * still commit in well under a second on SQLite. Component metadata
 * maxOperationsPerRequest changes it (0: no bound).
 */
#define STATE_DEFAULT_MAX_OPS 10000U
#define FAILURE_LOG_INTERVAL_USEC (10 * USEC_PER_SEC_RL)

typedef enum CallKind {
        CALL_GET,
        CALL_WRITE,
        CALL_TRANSACT,
        CALL_BULK_GET,
} CallKind;

typedef struct AppQueue AppQueue;

typedef struct StateCall {
        StateSched *sched;        /* back-reference */
        AppQueue *app;            /* back-reference */
        CallKind kind;
        StateDoneFn done;
        StateBulkDoneFn bulk_done;
        void *userdata;
        bool cancelled;           /* the caller is gone: drop the outcome */
        bool in_driver;           /* started: on sched->running, else on app's FIFO */
        /* Owned, while queued: scoped keys, deep copies. */
        StateOp *ops;
        size_t n_ops;
        char **keys;              /* get (one key) and bulk get */
        uint64_t start_usec;      /* metrics: handed to the driver */
        bool traced;              /* span is a child of the inbound call's (core/trace.h) */
        Span span;
        /* Resiliency: the store's outbound policy for this app (core/resiliency.h), when one applies */
        Resiliency *res;          /* ref */
        ResiliencyPolicy policy;
        unsigned retries_done;
        uint64_t first_usec;      /* the first attempt (an exponential policy's maxElapsedTime) */
        uint64_t breaker_generation;
        bool breaker_counting;    /* the attempt in the driver was allowed by the breaker */
        const char *refused;      /* why the breaker refused the last attempt (static) */
        sd_event_source *res_timer; /* the attempt's timeout, or the back-off / answer on sched->waiting */
        struct StateCall *next, *prev;
} StateCall;

struct AppQueue {
        char *app_id;             /* NULL: no app */
        unsigned in_flight;       /* calls of this app in the driver */
        StateCall *head, *tail;   /* waiting */
        AppQueue *next;
};

struct StateSched {
        StateStore *store;        /* back-reference */
        Registry *registry;       /* borrowed: the apps' metrics */
        AppQueue *apps;
        StateCall *running;       /* in the driver, outcome pending */
        StateCall *waiting;       /* Resiliency: waiting to retry, or to be told the breaker is open */
        struct Batch *deferred;   /* batches whose answer waits for the loop (no driver holds them) */
        size_t max_ops;
        bool closing;
        RateLimit failures;
        char *last_failure;       /* for the summary line */
        sd_event_source *flush_timer;
};

static void sched_free(StateSched *q);

int state_store_open(Registry *m, Component *c, StateStore **ret, char **reterr_msg) {
        const StateDriver *d = state_driver_find(c->type);
        StateStore *s;
        int r;

        if (!d) {
                if (asprintf(reterr_msg, "no state store driver for type '%s' in this build", c->type) < 0)
                        *reterr_msg = NULL;
                return -EOPNOTSUPP;
        }
        if (d->abi != STATE_DRIVER_ABI || d->instance_size < sizeof(StateStore))
                return -EPROTO;
        s = calloc(1, d->instance_size);
        if (!s)
                return -ENOMEM;
        *s = (StateStore){ .driver = d, .component = component_ref(c), .event = m->event,
                           .name = c->name, .state_dir = m->state_dir };
        s->sched = calloc(1, sizeof *s->sched);
        if (!s->sched) {
                component_unref(s->component);
                free(s);
                return -ENOMEM;
        }
        *s->sched = (StateSched){ .store = s, .registry = m, .max_ops = STATE_DEFAULT_MAX_OPS,
                                  .failures = RATELIMIT_INIT(FAILURE_LOG_INTERVAL_USEC) };
        const char *v = component_get_string(c, "maxOperationsPerRequest");
        if (v) {
                uint64_t n;
                char *end;
                errno = 0;
                n = strtoull(v, &end, 10);
                if (errno || end == v || *end || *v == '-' || n > SIZE_MAX) {
                        if (asprintf(reterr_msg, "maxOperationsPerRequest: '%s' is not a number of operations "
                                                 "(0 for no bound)", v) < 0)
                                *reterr_msg = NULL;
                        r = -EINVAL;
                        goto fail;
                }
                s->sched->max_ops = (size_t) n;
        }
        r = d->open(s, reterr_msg);
        if (r < 0) {
                d->close(s);
                goto fail;
        }
        *ret = s;
        return 0;

fail:
        sched_free(s->sched);
        component_unref(s->component);
        free(s);
        return r;
}

static void call_free(StateCall *c);
static void call_finish_queued(StateCall *c, int error, const char *msg);
static void deferred_batches_finish(StateSched *q);

static void waiting_unlink(StateSched *q, StateCall *c) {
        if (c->prev)
                c->prev->next = c->next;
        else
                q->waiting = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->next = c->prev = NULL;
        c->res_timer = sd_event_source_disable_unref(c->res_timer);
}

StateStore *state_store_close(StateStore *s) {
        StateSched *q;

        if (!s)
                return NULL;
        q = s->sched;
        q->closing = true;
        /* Calls still waiting here never reach the driver: answered now, like the driver answers
         * its own in-flight ones below. Nothing new is admitted while closing. */
        for (AppQueue *a = q->apps; a; a = a->next)
                while (a->head) {
                        StateCall *c = a->head;
                        a->head = c->next;
                        if (!a->head)
                                a->tail = NULL;
                        call_finish_queued(c, -ECANCELED, "state store closed");
                }
        while (q->waiting) {
                StateCall *c = q->waiting;
                waiting_unlink(q, c);
                call_finish_queued(c, -ECANCELED, "state store closed");
        }
        deferred_batches_finish(q);
        s->driver->close(s);
        sched_free(q);
        component_unref(s->component);
        free(s);
        return NULL;
}

size_t state_store_max_ops(const StateStore *s) {
        return s->sched->max_ops;
}

const char *state_store_name(const StateStore *s) {
        return s->component->name;
}

int state_lookup(Registry *m, const char *name, const char *app_id, StateStore **ret) {
        if (m->n_state_stores == 0)
                return -ENODEV;
        for (size_t i = 0; i < m->n_state_stores; i++) {
                StateStore *s = m->state_stores[i];
                if (!streq(s->component->name, name))
                        continue;
                /* Dapr: an app outside the scopes does not see the store at all. */
                if (app_id && !component_in_scope(s->component, app_id))
                        return -ENOENT;
                *ret = s;
                return 0;
        }
        return -ENOENT;
}

int state_scope_key(const StateStore *s, const char *app_id, const char *key, char **ret) {
        const char *kp = component_get_string(s->component, "keyPrefix");
        const char *prefix;
        char *k;

        if (!key || !*key || strstr(key, "||"))
                return -EINVAL;
        if (!kp || streq(kp, "appid"))
                prefix = app_id && *app_id ? app_id : NULL;
        else if (streq(kp, "name"))
                prefix = s->component->name;
        else if (streq(kp, "none"))
                prefix = NULL;
        else
                prefix = kp;
        if (!prefix)
                k = strdup(key);
        else {
                /* every state call of every front-end passes here: no printf */
                size_t pl = strlen(prefix), kl = strlen(key);
                k = malloc(pl + 2 + kl + 1);
                if (k) {
                        memcpy(k, prefix, pl);
                        memcpy(k + pl, "||", 2);
                        memcpy(k + pl + 2, key, kl + 1);
                }
        }
        if (!k)
                return -ENOMEM;
        *ret = k;
        return 0;
}

const char *state_unscope_key(const char *stored) {
        const char *p = strstr(stored, "||");
        return p ? p + 2 : stored;
}

const char *const *state_store_capabilities(const StateStore *s) {
        /* Every combination of the four feature bits, in Dapr's order; filled once (the loop's thread). */
        static const char *table[16][5];
        static bool built;

        if (!built) {
                for (unsigned f = 0; f < 16; f++) {
                        size_t n = 0;
                        if (f & STATE_FEATURE_ETAG)
                                table[f][n++] = "ETAG";
                        if (f & STATE_FEATURE_TRANSACTIONAL)
                                table[f][n++] = "TRANSACTIONAL";
                        if (f & STATE_FEATURE_TTL)
                                table[f][n++] = "TTL";
                        if (f & STATE_FEATURE_QUERY)
                                table[f][n++] = "QUERY_API";
                }
                built = true;
        }
        return table[s->driver->features & 15];
}

int state_parse_ttl(const char *s, int64_t *ret) {
        char *end;
        long long v;
        if (!s || !*s)
                return -EINVAL;
        errno = 0;
        v = strtoll(s, &end, 10);
        /* Dapr's limit: a TTL is an int32 */
        if (errno || *end || v < -1 || v > INT32_MAX)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* ---- op arrays ---- */

static void free_ops(StateOp *ops, size_t n, bool deep) {
        for (size_t i = 0; ops && i < n; i++) {
                free((char *) ops[i].key);
                if (deep) {
                        free((void *) ops[i].value);
                        free((char *) ops[i].etag);
                }
        }
        free(ops);
}

/*
 * A copy of ops with scoped keys. deep: values and etags copied too (for a call that
 * waits in a queue past its caller's buffers); otherwise they stay borrowed.
 */
static int scope_ops(const StateStore *s, const char *app_id, const StateOp *ops, size_t n, bool deep,
                     bool raw, StateOp **ret) {
        StateOp *c = calloc(n ? n : 1, sizeof(StateOp));
        size_t i;
        int r = 0;

        if (!c)
                return -ENOMEM;
        for (i = 0; i < n; i++) {
                char *k;
                if (raw) /* the caller's own key space (actors): used as given */
                        r = ops[i].key && *ops[i].key ? ((k = strdup(ops[i].key)) ? 0 : -ENOMEM) : -EINVAL;
                else
                        r = state_scope_key(s, app_id, ops[i].key, &k);
                if (r < 0)
                        break;
                c[i] = ops[i];
                c[i].key = k;
                if (!deep)
                        continue;
                c[i].value = NULL;
                c[i].etag = NULL;
                if (ops[i].etag && !(c[i].etag = strdup(ops[i].etag))) {
                        i++;
                        r = -ENOMEM;
                        break;
                }
                if (ops[i].kind == STATE_OP_UPSERT) {
                        void *v = malloc(ops[i].value_len + 1);
                        if (!v) {
                                i++;
                                r = -ENOMEM;
                                break;
                        }
                        if (ops[i].value_len > 0)
                                memcpy(v, ops[i].value, ops[i].value_len);
                        ((char *) v)[ops[i].value_len] = 0;
                        c[i].value = v;
                }
        }
        if (r < 0) {
                free_ops(c, i, deep);
                return r;
        }
        *ret = c;
        return 0;
}

/* ---- fan-out: several driver calls, one answer ---- */

typedef struct Batch {
        size_t n, pending;
        StateDoneFn done;            /* writes */
        StateBulkDoneFn bulk_done;   /* bulk_get */
        void *userdata;
        StateResult first;           /* writes: first failure (and which ops failed: first.op_failed) */
        StateResult *results;        /* bulk_get */
        sd_event_source *defer;      /* for n == 0, or every part failed to start */
        StateSched *sched;           /* while the defer is armed: on sched->deferred */
        struct Batch *next_deferred;
} Batch;

typedef struct BatchPart {
        Batch *batch;
        size_t index;
} BatchPart;

static void batch_finish(Batch *b) {
        if (b->bulk_done) {
                b->bulk_done(b->results, b->n, NULL, b->userdata);
                for (size_t i = 0; i < b->n; i++)
                        state_result_done(&b->results[i]);
                free(b->results);
        } else {
                b->done(&b->first, b->userdata);
                state_result_done(&b->first);
        }
        sd_event_source_disable_unref(b->defer);
        free(b);
}

static void on_part_done(const StateResult *r, void *userdata) {
        BatchPart *p = userdata;
        Batch *b = p->batch;

        if (b->bulk_done) {
                StateResult *dst = &b->results[p->index];
                dst->error = r->error;
                dst->message = r->message ? strdup(r->message) : NULL;
                dst->value.found = r->value.found;
                dst->value.value_len = r->value.value_len;
                dst->value.expire_realtime_usec = r->value.expire_realtime_usec;
                if (r->value.value) {
                        dst->value.value = malloc(r->value.value_len + 1);
                        if (dst->value.value) {
                                memcpy(dst->value.value, r->value.value, r->value.value_len);
                                ((char *) dst->value.value)[r->value.value_len] = 0;
                        } else
                                state_result_fail(dst, -ENOMEM, "out of memory");
                }
                if (r->value.etag)
                        dst->value.etag = strdup(r->value.etag);
        } else if (r->error < 0) {
                if (!b->first.op_failed)
                        b->first.op_failed = calloc(b->n, sizeof(bool));
                if (b->first.op_failed)
                        b->first.op_failed[p->index] = true;
                if (b->first.error == 0) {
                        b->first.error = r->error;
                        b->first.message = r->message ? strdup(r->message) : NULL;
                }
        }
        free(p);
        if (--b->pending == 0)
                batch_finish(b);
}

static int on_empty_batch(sd_event_source *s, void *userdata) {
        Batch *b = userdata;
        for (Batch **pp = &b->sched->deferred; *pp; pp = &(*pp)->next_deferred)
                if (*pp == b) {
                        *pp = b->next_deferred;
                        break;
                }
        batch_finish(b);
        return 0;
}

/* Batches waiting for the loop to answer them (no driver holds them), answered now: the store
 * closes, and the calls they answer and their queues still exist. */
static void deferred_batches_finish(StateSched *q) {
        while (q->deferred) {
                Batch *b = q->deferred;
                q->deferred = b->next_deferred;
                batch_finish(b);
        }
}

/* Answers b from the loop. No driver holds it, so the store must know of it: a store closed
 * before the loop gets there answers it itself (state_store_close()). */
static int batch_defer(StateStore *s, Batch *b) {
        int r = sd_event_add_defer(s->event, &b->defer, on_empty_batch, b);
        if (r < 0)
                return r;
        b->sched = s->sched;
        b->next_deferred = s->sched->deferred;
        s->sched->deferred = b;
        return 0;
}

typedef int (*BatchStartFn)(StateStore *s, size_t i, const void *ctx, StateDoneFn fn, void *ud);

/* Starts n parts with start(i); parts that fail to start count as done with their error. */
static int batch_run(StateStore *s, Batch *b, BatchStartFn start, const void *ctx) {
        if (b->n == 0) {
                if (batch_defer(s, b) < 0) {
                        free(b->results);
                        free(b);
                        return -ENOMEM;
                }
                return 0;
        }
        b->pending = b->n + 1; /* +1 guards against finishing while still starting */
        for (size_t i = 0; i < b->n; i++) {
                BatchPart *p = calloc(1, sizeof *p);
                int r = p ? 0 : -ENOMEM;
                if (p) {
                        *p = (BatchPart){ .batch = b, .index = i };
                        r = start(s, i, ctx, on_part_done, p);
                }
                if (r < 0) {
                        StateResult fail = {};
                        state_result_fail(&fail, r, "could not start: %s", strerror(-r));
                        if (p) {
                                on_part_done(&fail, p); /* cannot finish the batch: the guard holds */
                        } else {
                                b->pending--;
                                if (!b->bulk_done && b->first.op_failed)
                                        b->first.op_failed[i] = true;
                                if (!b->bulk_done && b->first.error == 0)
                                        b->first.error = r;
                        }
                        state_result_done(&fail);
                }
        }
        /* Drop the guard. Drivers never answer inside the starting call, so the batch is
         * finished from the loop, as promised — unless every part failed to start. */
        if (--b->pending == 0) {
                if (batch_defer(s, b) < 0)
                        batch_finish(b); /* last resort: answer now */
        }
        return 0;
}

static int start_write_part(StateStore *s, size_t i, const void *ctx, StateDoneFn fn, void *ud) {
        const StateOp *ops = ctx;
        return s->driver->write(s, &ops[i], fn, ud);
}

static int start_get_part(StateStore *s, size_t i, const void *ctx, StateDoneFn fn, void *ud) {
        char *const *keys = ctx;
        return s->driver->get(s, keys[i], fn, ud);
}

/* ---- failure log ---- */

static const char *call_kind_name(CallKind k) {
        static const char *const names[] = {
                [CALL_GET] = "get", [CALL_WRITE] = "save", [CALL_TRANSACT] = "transaction",
                [CALL_BULK_GET] = "bulk get",
        };
        return names[k];
}

/* Errors of the caller's own making (an etag conflict, a malformed etag, giving up) say
 * nothing about the component: only the rest is logged. */
static bool is_component_failure(int error) {
        return error < 0 && error != -ESTALE && error != -EINVAL && error != -ECANCELED;
}

static int on_flush_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        StateSched *q = userdata;
        uint64_t held = ratelimit_flush(&q->failures, usec);

        if (held > 0)
                log_struct(LOG_WARNING, 0, NULL, q->store->name,
                           "State store '%s': %" PRIu64 " more failed operations in the last %u s, the last: %s",
                           q->store->name, held, (unsigned) (FAILURE_LOG_INTERVAL_USEC / USEC_PER_SEC_RL),
                           strna(q->last_failure));
        return 0;
}

static void note_failure(StateSched *q, const AppQueue *a, CallKind kind, const StateResult *r) {
        StateStore *s = q->store;
        uint64_t now = 0, held = 0, wait;
        const char *cause = r->message ?: strerror(-r->error);

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        switch (ratelimit_event(&q->failures, now, &held)) {
        case RATELIMIT_FIRST:
                log_struct(LOG_WARNING, r->error, a ? a->app_id : NULL, s->name,
                           "State %s against component '%s' failed: %s", call_kind_name(kind), s->name, cause);
                break;
        case RATELIMIT_SUMMARY:
                log_struct(LOG_WARNING, r->error, a ? a->app_id : NULL, s->name,
                           "State %s against component '%s' failed: %s (%" PRIu64
                           " more failures since the last report)",
                           call_kind_name(kind), s->name, cause, held);
                break;
        case RATELIMIT_HELD:
                /* Remember the cause for the summary; arm the timer that reports the tail of
                 * the burst even when no further failure comes to carry it. */
                free(q->last_failure);
                q->last_failure = strdup(cause);
                wait = ratelimit_next_flush(&q->failures, now);
                if (wait == UINT64_MAX)
                        break;
                if (!q->flush_timer) {
                        if (sd_event_add_time(s->event, &q->flush_timer, CLOCK_MONOTONIC, now + wait, 0,
                                              on_flush_timer, q) >= 0)
                                (void) sd_event_source_set_description(q->flush_timer, "state-failure-log");
                } else {
                        int enabled = SD_EVENT_OFF;
                        (void) sd_event_source_get_enabled(q->flush_timer, &enabled);
                        if (enabled == SD_EVENT_OFF) {
                                (void) sd_event_source_set_time(q->flush_timer, now + wait);
                                (void) sd_event_source_set_enabled(q->flush_timer, SD_EVENT_ONESHOT);
                        }
                }
                break;
        }
}

/* ---- calls: per-app admission ---- */

/* Debug only (tests wait for it): what a call is and where it went. */
static void log_call(const StateCall *c, const char *what) {
        if (log_get_max_level() < LOG_DEBUG)
                return;
        log_debug("State %s of %zu item(s) from app '%s' on '%s': %s", call_kind_name(c->kind),
                  c->kind == CALL_GET || c->kind == CALL_BULK_GET ? strv_length(c->keys) : c->n_ops,
                  strna(c->app->app_id), c->sched->store->name, what);
}

static void call_free(StateCall *c) {
        if (!c)
                return;
        sd_event_source_disable_unref(c->res_timer);
        resiliency_unref(c->res);
        free_ops(c->ops, c->n_ops, true);
        strv_free(c->keys);
        free(c);
}

static AppQueue *app_queue_get(StateSched *q, const char *app_id) {
        AppQueue *a;

        for (a = q->apps; a; a = a->next)
                if (streq_ptr(a->app_id, app_id))
                        return a;
        a = calloc(1, sizeof *a);
        if (!a)
                return NULL;
        if (app_id && !(a->app_id = strdup(app_id))) {
                free(a);
                return NULL;
        }
        a->next = q->apps;
        q->apps = a;
        return a;
}

/* Drops a's entry once it holds nothing: the list stays as long as the apps that are busy now. */
static void app_queue_gc(StateSched *q, AppQueue *a) {
        if (a->in_flight > 0 || a->head)
                return;
        for (AppQueue **p = &q->apps; *p; p = &(*p)->next)
                if (*p == a) {
                        *p = a->next;
                        break;
                }
        free(a->app_id);
        free(a);
}

static void sched_free(StateSched *q) {
        if (!q)
                return;
        while (q->apps) {
                AppQueue *a = q->apps;
                q->apps = a->next;
                free(a->app_id);
                free(a);
        }
        sd_event_source_disable_unref(q->flush_timer);
        free(q->last_failure);
        free(q);
}

static void running_unlink(StateSched *q, StateCall *c) {
        if (c->prev)
                c->prev->next = c->next;
        else
                q->running = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->next = c->prev = NULL;
}

static int call_start(StateCall *c);

/* Admits a's waiting calls while it has room in the driver. Loop only, never inside a starting call. */
static void app_admit(StateSched *q, AppQueue *a) {
        while (!q->closing && a->head && a->in_flight < STATE_APP_IN_FLIGHT_MAX) {
                StateCall *c = a->head;
                int r;

                a->head = c->next;
                if (!a->head)
                        a->tail = NULL;
                c->next = NULL;
                r = call_start(c);
                if (r < 0)
                        /* Answering here is "later" for the caller: it started this call long ago. */
                        call_finish_queued(c, r, r == -EHOSTUNREACH && c->refused ? c->refused : "could not start");
        }
}

/* dapr_component_state_*: under the calling app, with daprd's operation names. */
static void call_metrics(StateSched *q, const StateCall *c, bool ok) {
        const AppQueue *a = c->app;
        App *app = a->app_id ? registry_find_app(q->registry, a->app_id) : NULL;
        AppMetrics *m = app ? app->metrics : q->registry->metrics;
        const char *op = c->kind == CALL_GET        ? "get"
                         : c->kind == CALL_BULK_GET ? "bulk_get"
                         : c->kind == CALL_TRANSACT ? "transaction"
                         : c->n_ops > 0 && c->ops[0].kind == STATE_OP_DELETE ? "delete"
                                                                               : "set";
        if (app_metrics_enabled(m))
                metrics_component_op(m, METRICS_STATE, q->store->name, op, NULL, ok ? "true" : "false",
                                     metrics_now_usec() - c->start_usec);
}

/* Appends "'k1', 'k2'" (the caller's keys of the ops whose failed flag is want; at most 20, then a count). */
static void keys_list(FILE *f, const StateCall *c, size_t n, const bool *failed, bool want, size_t count) {
        size_t shown = 0;
        for (size_t i = 0; i < n; i++) {
                if ((failed ? failed[i] : true) != want)
                        continue;
                if (shown == 20) {
                        fprintf(f, " and %zu more", count - shown);
                        break;
                }
                fprintf(f, "%s'%s'", shown ? ", " : "", c->keys[i]);
                shown++;
        }
}

/*
 * A multi-item save that failed says exactly which items were stored and which not (issue 14
 * part 3): each item of a Dapr save stands alone, so some may be there although the answer is
 * an error. Returns a malloc'd message, or NULL (keep the driver's).
 */
static char *write_failure_message(const StateCall *c, const StateResult *r) {
        size_t failed = 0, n = strv_length(c->keys);
        char *buf = NULL;
        size_t len = 0;
        FILE *f;

        if (c->kind != CALL_WRITE || n < 2 || r->error >= 0)
                return NULL;
        for (size_t i = 0; i < n; i++)
                failed += r->op_failed ? r->op_failed[i] : 1;
        f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        fprintf(f, "%s; %zu of %zu items stored", r->message ?: strerror(-r->error), n - failed, n);
        if (failed < n) {
                fputs(": ", f);
                keys_list(f, c, n, r->op_failed, false, n - failed);
                fputs("; not stored: ", f);
                keys_list(f, c, n, r->op_failed, true, failed);
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

/* The operation's span, a child of the call that asked for it: "state/<store>/<operation>". */
static void call_trace_begin(StateCall *c, const char *store, const char *app_id) {
        char name[TRACE_NAME_MAX];
        snprintf(name, sizeof name, "state/%s/%s", store,
                 c->kind == CALL_GET ? "get" : c->kind == CALL_BULK_GET ? "bulk_get"
                 : c->kind == CALL_TRANSACT ? "transaction" : "set");
        c->traced = trace_span_begin_child(&c->span, SPAN_CLIENT, name, app_id);
}

static void call_trace_end(StateCall *c, bool ok) {
        if (c->traced)
                trace_span_end(&c->span, 0, !ok);
        c->traced = false;
}

/* ---- Resiliency: outbound policy of the store ---- */

static int call_start(StateCall *c);

static uint64_t sched_now(const StateSched *q) {
        uint64_t now = 0;
        (void) sd_event_now(q->store->event, CLOCK_MONOTONIC, &now);
        return now;
}

static int on_res_wait(sd_event_source *src, uint64_t usec, void *userdata) {
        StateCall *c = userdata;
        StateSched *q = c->sched;
        AppQueue *a = c->app;
        int r;

        waiting_unlink(q, c);
        a->in_flight--; /* a waiting call kept its place (and its app's entry) */
        if (c->refused) { /* the breaker was open when the call came: say so */
                call_finish_queued(c, -EHOSTUNREACH, c->refused);
                app_queue_gc(q, a);
                return 0;
        }
        log_call(c, "retried");
        r = call_start(c);
        if (r < 0) {
                call_finish_queued(c, r, r == -EHOSTUNREACH && c->refused ? c->refused : "could not start");
                app_queue_gc(q, a);
        }
        return 0;
}

/* Parks c on sched->waiting until delay has passed (0: the next loop iteration). A waiting call
 * counts in its app's in_flight, which also keeps the app's entry (c->app) alive. */
static int resiliency_wait(StateCall *c, uint64_t delay_usec) {
        StateSched *q = c->sched;
        int r = sd_event_add_time_relative(q->store->event, &c->res_timer, CLOCK_MONOTONIC, delay_usec, 0,
                                           on_res_wait, c);
        if (r < 0)
                return r;
        c->prev = NULL;
        c->next = q->waiting;
        if (q->waiting)
                q->waiting->prev = c;
        q->waiting = c;
        return 0;
}

/* The policy's timeout: the caller is answered now; the driver's late outcome is dropped. */
static int on_attempt_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
        StateCall *c = userdata;
        StateResult res = {};

        c->res_timer = sd_event_source_disable_unref(c->res_timer);
        if (c->breaker_counting) {
                c->breaker_counting = false;
                resiliency_breaker_report(c->policy.breaker, c->breaker_generation, false, sched_now(c->sched));
        }
        if (c->cancelled)
                return 0;
        (void) state_result_fail(&res, -ETIMEDOUT, "context deadline exceeded");
        c->cancelled = true; /* the caller has its answer */
        if (c->kind == CALL_BULK_GET)
                c->bulk_done(NULL, 0, &res, c->userdata); /* the get as a whole */
        else
                c->done(&res, c->userdata);
        state_result_done(&res);
        return 0;
}

/* Before an attempt: the breaker's consent and the attempt's timeout. -EHOSTUNREACH: refused. */
static int resiliency_before_attempt(StateCall *c) {
        uint64_t now = sched_now(c->sched);
        int r;

        if (c->first_usec == 0)
                c->first_usec = now;
        c->refused = NULL;
        if (c->policy.breaker) {
                r = resiliency_breaker_allow(c->policy.breaker, now, &c->breaker_generation, &c->refused);
                if (r < 0)
                        return r;
                c->breaker_counting = true;
        }
        if (c->policy.timeout_usec > 0) {
                r = sd_event_add_time_relative(c->sched->store->event, &c->res_timer, CLOCK_MONOTONIC,
                                               c->policy.timeout_usec, 0, on_attempt_timeout, c);
                if (r < 0)
                        return r;
        }
        return 0;
}

/*
 * After the driver answered an attempt: tells the breaker, and when the attempt failed for the
 * component's sake (not a missing key, an etag conflict or bad input) and the policy allows
 * another, takes c off the running list to try again after the back-off. true: retried.
 */
static bool resiliency_after_attempt(StateCall *c, const StateResult *r) {
        StateSched *q = c->sched;
        bool failed = r->error != -ENOENT && is_component_failure(r->error);
        uint64_t now = sched_now(q), delay;

        c->res_timer = sd_event_source_disable_unref(c->res_timer);
        if (c->breaker_counting) {
                c->breaker_counting = false;
                resiliency_breaker_report(c->policy.breaker, c->breaker_generation, !failed, now);
        }
        if (!failed || c->cancelled || q->closing ||
            !resiliency_retry_next(c->policy.retry, c->retries_done + 1, now - c->first_usec, &delay))
                return false;
        running_unlink(q, c);
        c->in_driver = false;
        if (resiliency_wait(c, delay) < 0) {
                /* cannot wait (OOM): the failure stands; back on the list for on_call_done() */
                c->in_driver = true;
                c->next = q->running;
                if (q->running)
                        q->running->prev = c;
                q->running = c;
                return false;
        }
        c->retries_done++;
        return true;
}

/* The driver's answer for c (any kind but bulk get). */
static void on_call_done(const StateResult *r, void *userdata) {
        StateCall *c = userdata;
        StateSched *q = c->sched;
        AppQueue *a = c->app;
        if (c->res && resiliency_after_attempt(c, r))
                return; /* another attempt follows */
        _cleanup_free_ char *why = write_failure_message(c, r);
        StateResult told;
        if (why) {
                told = (StateResult){ .error = r->error, .message = why };
                r = &told;
        }

        call_metrics(q, c, r->error == 0 || r->error == -ENOENT);
        call_trace_end(c, r->error == 0 || r->error == -ENOENT);
        running_unlink(q, c);
        a->in_flight--;
        if (is_component_failure(r->error))
                note_failure(q, a, c->kind, r);
        /* The app's next call goes in before this answer is handed out: the caller's done()
         * may do anything, and q and a are not touched after it. */
        app_admit(q, a);
        app_queue_gc(q, a);
        if (!c->cancelled)
                c->done(r, c->userdata);
        call_free(c);
}

/* The driver's gets, gathered by the batch (which never fails as a whole: failed is NULL). */
static void on_call_bulk_done(const StateResult *results, size_t n, const StateResult *failed_unused,
                              void *userdata) {
        StateCall *c = userdata;
        StateSched *q = c->sched;
        AppQueue *a = c->app;

        const StateResult *whole = NULL;
        if (c->res) {
                /* daprd runs a bulk get as ONE operation under the store's outbound policy
                 * (pkg/api/http onBulkGetState): one timeout for all keys, one breaker count, and a
                 * retry asks for every key again. Its SQL stores fail the whole query when the
                 * server fails, so here an attempt failed when any key failed for the component,
                 * and when the policy gives up, the get failed as a whole. */
                static const StateResult ok_result = {};
                const StateResult *failed = &ok_result;
                for (size_t i = 0; i < n && failed == &ok_result; i++)
                        if (results[i].error != -ENOENT && is_component_failure(results[i].error))
                                failed = &results[i];
                if (resiliency_after_attempt(c, failed))
                        return; /* another attempt follows */
                if (failed != &ok_result)
                        whole = failed;
        }
        bool ok = true;
        for (size_t i = 0; i < n; i++)
                ok = ok && (results[i].error == 0 || results[i].error == -ENOENT);
        call_metrics(q, c, ok);
        call_trace_end(c, ok);
        running_unlink(q, c);
        a->in_flight--;
        for (size_t i = 0; i < n; i++)
                if (is_component_failure(results[i].error)) {
                        note_failure(q, a, c->kind, &results[i]);
                        break;
                }
        app_admit(q, a);
        app_queue_gc(q, a);
        if (!c->cancelled)
                c->bulk_done(whole ? NULL : results, whole ? 0 : n, whole, c->userdata);
        call_free(c);
}

/* Answers a call that never reached the driver (start failed, store closing). */
static void call_finish_queued(StateCall *c, int error, const char *msg) {
        StateResult res = {};

        if (error == -EHOSTUNREACH || error == -ETIMEDOUT) /* Resiliency's own words, as daprd's */
                (void) state_result_fail(&res, error, "%s", msg);
        else
                (void) state_result_fail(&res, error, "%s: %s", msg, strerror(-error));
        if (!c->cancelled) {
                if (c->kind == CALL_BULK_GET)
                        c->bulk_done(NULL, 0, &res, c->userdata); /* it never reached the store */
                else
                        c->done(&res, c->userdata);
        }
        state_result_done(&res);
        call_free(c);
}

/*
 * Hands c to the driver; c's ops/keys are still owned by c (the driver copies what it keeps).
 * On success c is on the running list and its answer comes through on_call_done(); on
 * failure nothing was started and c is unchanged.
 */
static int call_start(StateCall *c) {
        StateSched *q = c->sched;
        StateStore *s = q->store;
        const StateDriver *d = s->driver;
        int r;

        c->start_usec = metrics_now_usec();
        if (c->res) {
                r = resiliency_before_attempt(c);
                if (r < 0)
                        return r;
        }
        switch (c->kind) {
        case CALL_GET:
                r = d->get(s, c->keys[0], on_call_done, c);
                break;
        case CALL_TRANSACT:
                r = d->transact(s, c->ops, c->n_ops, on_call_done, c);
                break;
        case CALL_WRITE:
                if (c->n_ops == 1)
                        r = d->write(s, &c->ops[0], on_call_done, c);
                else if (c->n_ops > 1 && d->write_many)
                        r = d->write_many(s, c->ops, c->n_ops, on_call_done, c);
                else {
                        Batch *b = calloc(1, sizeof *b);
                        if (!b)
                                return -ENOMEM;
                        *b = (Batch){ .n = c->n_ops, .done = on_call_done, .userdata = c };
                        r = batch_run(s, b, start_write_part, c->ops);
                }
                break;
        case CALL_BULK_GET: {
                Batch *b = calloc(1, sizeof *b);
                size_t n = strv_length(c->keys);
                if (!b)
                        return -ENOMEM;
                *b = (Batch){ .n = n, .bulk_done = on_call_bulk_done, .userdata = c };
                b->results = calloc(n ?: 1, sizeof(StateResult));
                if (!b->results) {
                        free(b);
                        return -ENOMEM;
                }
                r = batch_run(s, b, start_get_part, c->keys);
                break;
        }
        default:
                return -EINVAL;
        }
        if (r < 0) {
                c->res_timer = sd_event_source_disable_unref(c->res_timer);
                c->breaker_counting = false;
                return r;
        }
        c->in_driver = true;
        c->app->in_flight++;
        c->prev = NULL;
        c->next = q->running;
        if (q->running)
                q->running->prev = c;
        q->running = c;
        return 0;
}

/*
 * Submits a call whose ops/keys are already scoped copies owned by c. Starts it now if
 * its app has room in the driver, else queues it. Takes c (freed on failure).
 */
static int call_submit(StateStore *s, const char *app_id, StateCall *c) {
        StateSched *q = s->sched;
        AppQueue *a;
        int r;

        if (q->closing) {
                call_free(c);
                return -ECANCELED;
        }
        a = app_queue_get(q, app_id);
        if (!a) {
                call_free(c);
                return -ENOMEM;
        }
        c->sched = q;
        c->app = a;
        if (q->registry && q->registry->resiliency) {
                r = resiliency_lookup(q->registry->resiliency, app_id, RESILIENCY_COMPONENT_OUTBOUND, s->name,
                                      "Statestore", &c->policy);
                if (r < 0) {
                        call_free(c);
                        app_queue_gc(q, a);
                        return r;
                }
                if (r > 0)
                        c->res = resiliency_ref(q->registry->resiliency);
        }
        if (a->in_flight < STATE_APP_IN_FLIGHT_MAX && !a->head) {
                log_call(c, "started");
                r = call_start(c);
                if (r == -EHOSTUNREACH && c->refused) { /* the breaker is open: answered on the loop */
                        r = resiliency_wait(c, 0);
                        if (r >= 0)
                                a->in_flight++;
                }
                if (r < 0) {
                        call_free(c);
                        app_queue_gc(q, a);
                        return r;
                }
                return 0;
        }
        log_call(c, "queued");
        if (a->tail)
                a->tail->next = c;
        else
                a->head = c;
        a->tail = c;
        return 0;
}

static StateCall *call_new(CallKind kind, StateDoneFn done, StateBulkDoneFn bulk_done, void *userdata) {
        StateCall *c = calloc(1, sizeof *c);
        if (c)
                *c = (StateCall){ .kind = kind, .done = done, .bulk_done = bulk_done, .userdata = userdata };
        return c;
}

void state_cancel(StateStore *s, void *userdata) {
        StateSched *q = s->sched;

        for (AppQueue *a = q->apps; a; a = a->next) {
                StateCall **p = &a->head, *prev = NULL;
                while (*p) {
                        StateCall *c = *p;
                        if (c->userdata != userdata) {
                                prev = c;
                                p = &c->next;
                                continue;
                        }
                        /* Never started, never will be: its writes do not happen. */
                        *p = c->next;
                        if (a->tail == c)
                                a->tail = prev;
                        call_free(c);
                }
        }
        for (StateCall *c = q->waiting, *n; c; c = n) {
                n = c->next;
                if (c->userdata == userdata) {
                        waiting_unlink(q, c);
                        c->app->in_flight--;
                        call_free(c);
                }
        }
        for (StateCall *c = q->running; c; c = c->next) {
                if (c->userdata != userdata || c->cancelled)
                        continue;
                c->cancelled = true;
                /* The driver may still drop it if it has not begun; its done() comes either way
                 * and frees c (see on_call_done()). */
                if (s->driver->cancel)
                        s->driver->cancel(s, c);
        }
        /* Drop the app entries this emptied, so the list stays as long as the busy apps. */
        for (AppQueue *a = q->apps, *next; a; a = next) {
                next = a->next;
                app_queue_gc(q, a);
        }
}

/* ---- the calls ---- */

static int get_key(StateStore *s, const char *app_id, char *k, StateDoneFn done, void *userdata);

int state_get(StateStore *s, const char *app_id, const char *key, StateDoneFn done, void *userdata) {
        char *k;
        int r = state_scope_key(s, app_id, key, &k);

        if (r < 0)
                return r;
        return get_key(s, app_id, k, done, userdata);
}

int state_get_raw(StateStore *s, const char *queue_id, const char *key, StateDoneFn done, void *userdata) {
        char *k;

        if (!key || !*key)
                return -EINVAL;
        k = strdup(key);
        if (!k)
                return -ENOMEM;
        return get_key(s, queue_id, k, done, userdata);
}

/* Takes k. */
static int get_key(StateStore *s, const char *app_id, char *k, StateDoneFn done, void *userdata) {
        StateCall *c = call_new(CALL_GET, done, NULL, userdata);
        if (c)
                call_trace_begin(c, s->name, app_id);
        if (!c || !(c->keys = calloc(2, sizeof(char *)))) {
                free(c);
                free(k);
                return -ENOMEM;
        }
        c->keys[0] = k;
        return call_submit(s, app_id, c);
}

static int submit_ops(StateStore *s, CallKind kind, const char *app_id, const StateOp *ops, size_t n, bool raw,
                      StateDoneFn done, void *userdata) {
        StateSched *q = s->sched;
        AppQueue *a;
        StateCall *c;
        int r;

        if (q->max_ops > 0 && n > q->max_ops)
                return -E2BIG;
        c = call_new(kind, done, NULL, userdata);
        if (!c)
                return -ENOMEM;
        if (c)
                call_trace_begin(c, s->name, app_id);
        /* A multi-item save that fails names the items stored and not (write_failure_message()). */
        if (kind == CALL_WRITE && n > 1) {
                c->keys = calloc(n + 1, sizeof(char *));
                for (size_t i = 0; c->keys && i < n; i++)
                        if (!(c->keys[i] = strdup(ops[i].key))) {
                                call_free(c);
                                return -ENOMEM;
                        }
                if (!c->keys) {
                        call_free(c);
                        return -ENOMEM;
                }
        }
        /* Values are only copied when the call has to wait here: the driver copies what it keeps,
         * so a call that starts at once borrows the caller's buffers, as before. */
        a = app_queue_get(q, app_id);
        bool waits = !a || a->in_flight >= STATE_APP_IN_FLIGHT_MAX || a->head;
        ResiliencyPolicy policy;
        /* A Resiliency policy may send the ops again: the call owns its copies then. */
        if (!waits && q->registry && q->registry->resiliency)
                waits = resiliency_lookup(q->registry->resiliency, app_id, RESILIENCY_COMPONENT_OUTBOUND, s->name,
                                          "Statestore", &policy) != 0;
        r = scope_ops(s, app_id, ops, n, waits, raw, &c->ops);
        if (r < 0) {
                strv_free(c->keys);
                free(c);
                if (a)
                        app_queue_gc(q, a);
                return r;
        }
        c->n_ops = n;
        if (!waits) {
                c->sched = q;
                c->app = a;
                log_call(c, "started");
                r = call_start(c);
                /* Started: the driver holds its own copies; only the scoped keys were ours. */
                free_ops(c->ops, c->n_ops, false);
                c->ops = NULL;
                c->n_ops = 0;
                if (r < 0) {
                        call_free(c);
                        app_queue_gc(q, a);
                }
                return r;
        }
        return call_submit(s, app_id, c);
}

int state_write_all(StateStore *s, const char *app_id, const StateOp *ops, size_t n, StateDoneFn done,
                    void *userdata) {
        return submit_ops(s, CALL_WRITE, app_id, ops, n, false, done, userdata);
}

int state_write_raw(StateStore *s, const char *queue_id, const StateOp *ops, size_t n, StateDoneFn done,
                    void *userdata) {
        return submit_ops(s, CALL_WRITE, queue_id, ops, n, true, done, userdata);
}

int state_transact(StateStore *s, const char *app_id, const StateOp *ops, size_t n, StateDoneFn done,
                   void *userdata) {
        if (!(s->driver->features & STATE_FEATURE_TRANSACTIONAL) || !s->driver->transact)
                return -EOPNOTSUPP;
        return submit_ops(s, CALL_TRANSACT, app_id, ops, n, false, done, userdata);
}

int state_transact_raw(StateStore *s, const char *queue_id, const StateOp *ops, size_t n, StateDoneFn done,
                       void *userdata) {
        if (!(s->driver->features & STATE_FEATURE_TRANSACTIONAL) || !s->driver->transact)
                return -EOPNOTSUPP;
        return submit_ops(s, CALL_TRANSACT, queue_id, ops, n, true, done, userdata);
}

int state_bulk_get(StateStore *s, const char *app_id, char *const *keys, size_t n, StateBulkDoneFn done,
                   void *userdata) {
        StateSched *q = s->sched;
        StateCall *c;
        int r = 0;

        if (q->max_ops > 0 && n > q->max_ops)
                return -E2BIG;
        c = call_new(CALL_BULK_GET, NULL, done, userdata);
        if (c)
                call_trace_begin(c, s->name, app_id);
        if (!c || !(c->keys = calloc(n + 1, sizeof(char *)))) {
                free(c);
                return -ENOMEM;
        }
        /* A bad key spoils the whole request (as in Dapr), before anything starts. */
        for (size_t i = 0; i < n && r >= 0; i++)
                r = state_scope_key(s, app_id, keys[i], &c->keys[i]);
        if (r < 0) {
                call_free(c);
                return r;
        }
        return call_submit(s, app_id, c);
}
