/* SPDX-License-Identifier: Apache-2.0 */
/* See state.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/component.h"
#include "../manager.h"
#include "../util/strv.h"
#include "state.h"

int state_store_open(Manager *m, Component *c, StateStore **ret, char **reterr_msg) {
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
        *s = (StateStore){ .driver = d, .component = component_ref(c), .manager = m, .event = m->event,
                           .name = c->name, .state_dir = m->state_dir };
        r = d->open(s, reterr_msg);
        if (r < 0) {
                d->close(s);
                component_unref(s->component);
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

StateStore *state_store_close(StateStore *s) {
        if (!s)
                return NULL;
        s->driver->close(s);
        component_unref(s->component);
        free(s);
        return NULL;
}

const char *state_store_name(const StateStore *s) {
        return s->component->name;
}

int state_lookup(Manager *m, const char *name, const char *app_id, StateStore **ret) {
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
        else if (asprintf(&k, "%s||%s", prefix, key) < 0)
                k = NULL;
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
        static const char *const table[8][4] = {
                [0] = { NULL },
                [STATE_FEATURE_ETAG] = { "ETAG", NULL },
                [STATE_FEATURE_TRANSACTIONAL] = { "TRANSACTIONAL", NULL },
                [STATE_FEATURE_ETAG | STATE_FEATURE_TRANSACTIONAL] = { "ETAG", "TRANSACTIONAL", NULL },
                [STATE_FEATURE_TTL] = { "TTL", NULL },
                [STATE_FEATURE_ETAG | STATE_FEATURE_TTL] = { "ETAG", "TTL", NULL },
                [STATE_FEATURE_TRANSACTIONAL | STATE_FEATURE_TTL] = { "TRANSACTIONAL", "TTL", NULL },
                [STATE_FEATURE_ETAG | STATE_FEATURE_TRANSACTIONAL | STATE_FEATURE_TTL] = { "ETAG", "TRANSACTIONAL",
                                                                                          "TTL", NULL },
        };
        return table[s->driver->features & 7];
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

/* ---- scoping copies of op arrays ---- */

static StateOp *scope_ops(const StateStore *s, const char *app_id, const StateOp *ops, size_t n, int *ret_err) {
        StateOp *c = calloc(n ? n : 1, sizeof(StateOp));
        if (!c) {
                *ret_err = -ENOMEM;
                return NULL;
        }
        for (size_t i = 0; i < n; i++) {
                char *k;
                int r = state_scope_key(s, app_id, ops[i].key, &k);
                if (r < 0) {
                        for (size_t j = 0; j < i; j++)
                                free((char *) c[j].key);
                        free(c);
                        *ret_err = r;
                        return NULL;
                }
                c[i] = ops[i];
                c[i].key = k;
        }
        return c;
}

static void free_ops(StateOp *ops, size_t n) {
        for (size_t i = 0; ops && i < n; i++)
                free((char *) ops[i].key);
        free(ops);
}

int state_get(StateStore *s, const char *app_id, const char *key, StateDoneFn done, void *userdata) {
        _cleanup_free_ char *k = NULL;
        int r = state_scope_key(s, app_id, key, &k);
        if (r < 0)
                return r;
        return s->driver->get(s, k, done, userdata);
}

int state_transact(StateStore *s, const char *app_id, const StateOp *ops, size_t n, StateDoneFn done,
                   void *userdata) {
        StateOp *scoped;
        int r = 0;

        if (!(s->driver->features & STATE_FEATURE_TRANSACTIONAL) || !s->driver->transact)
                return -EOPNOTSUPP;
        scoped = scope_ops(s, app_id, ops, n, &r);
        if (!scoped)
                return r;
        r = s->driver->transact(s, scoped, n, done, userdata);
        free_ops(scoped, n);
        return r;
}

/* ---- fan-out: several driver calls, one answer ---- */

typedef struct Batch {
        size_t n, pending;
        StateDoneFn done;            /* write_all */
        StateBulkDoneFn bulk_done;   /* bulk_get */
        void *userdata;
        StateResult first;           /* write_all: first failure */
        StateResult *results;        /* bulk_get */
        sd_event_source *defer;      /* for n == 0 */
} Batch;

typedef struct BatchPart {
        Batch *batch;
        size_t index;
} BatchPart;

static void batch_finish(Batch *b) {
        if (b->bulk_done) {
                b->bulk_done(b->results, b->n, b->userdata);
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
        } else if (r->error < 0 && b->first.error == 0) {
                b->first.error = r->error;
                b->first.message = r->message ? strdup(r->message) : NULL;
        }
        free(p);
        if (--b->pending == 0)
                batch_finish(b);
}

static int on_empty_batch(sd_event_source *s, void *userdata) {
        batch_finish(userdata);
        return 0;
}

/* Starts n parts with start(i); parts that fail to start count as done with their error. */
static int batch_run(StateStore *s, Batch *b, int (*start)(StateStore *s, size_t i, void *ctx, StateDoneFn fn,
                                                           void *ud), void *ctx) {
        if (b->n == 0) {
                if (sd_event_add_defer(s->event, &b->defer, on_empty_batch, b) < 0) {
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
                                if (!b->bulk_done && b->first.error == 0)
                                        b->first.error = r;
                        }
                        state_result_done(&fail);
                }
        }
        /* Drop the guard. Drivers never answer inside the starting call, so the batch is
         * finished from the loop, as promised — unless every part failed to start. */
        if (--b->pending == 0) {
                if (sd_event_add_defer(s->event, &b->defer, on_empty_batch, b) < 0)
                        batch_finish(b); /* last resort: answer now */
        }
        return 0;
}

typedef struct {
        const char *app_id;
        const StateOp *ops;          /* scoped */
        char *const *keys;           /* unscoped, bulk get */
} BatchCtx;

static int start_write(StateStore *s, size_t i, void *ctx, StateDoneFn fn, void *ud) {
        BatchCtx *c = ctx;
        return s->driver->write(s, &c->ops[i], fn, ud);
}

static int start_get(StateStore *s, size_t i, void *ctx, StateDoneFn fn, void *ud) {
        BatchCtx *c = ctx;
        return state_get(s, c->app_id, c->keys[i], fn, ud);
}

int state_write_all(StateStore *s, const char *app_id, const StateOp *ops, size_t n, StateDoneFn done,
                    void *userdata) {
        int r = 0;
        StateOp *scoped = scope_ops(s, app_id, ops, n, &r);
        Batch *b;

        if (!scoped)
                return r;
        b = calloc(1, sizeof *b);
        if (!b) {
                free_ops(scoped, n);
                return -ENOMEM;
        }
        *b = (Batch){ .n = n, .done = done, .userdata = userdata };
        BatchCtx ctx = { .app_id = app_id, .ops = scoped };
        r = batch_run(s, b, start_write, &ctx);
        free_ops(scoped, n);
        return r;
}

int state_bulk_get(StateStore *s, const char *app_id, char *const *keys, size_t n, StateBulkDoneFn done,
                   void *userdata) {
        /* A bad key spoils the whole request (as in Dapr), before anything starts. */
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *k = NULL;
                int r = state_scope_key(s, app_id, keys[i], &k);
                if (r < 0)
                        return r;
        }
        Batch *b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        *b = (Batch){ .n = n, .bulk_done = done, .userdata = userdata };
        b->results = calloc(n ? n : 1, sizeof(StateResult));
        if (!b->results) {
                free(b);
                return -ENOMEM;
        }
        BatchCtx ctx = { .app_id = app_id, .keys = keys };
        return batch_run(s, b, start_get, &ctx);
}
