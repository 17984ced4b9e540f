/* SPDX-License-Identifier: Apache-2.0 */
/*
 * state.in-memory: a first-class driver kept in the daemon's memory, for tests
 * and caches. A chained hash table of items; etags are a per-store counter;
 * expired items are hidden at once and purged every few seconds. Answers are
 * deferred to the loop (sd-event defer sources), never given inside the call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "driver.h"
#include "../../util/fnv.h"

#define PURGE_INTERVAL_USEC (5ULL * 1000000)

typedef struct MemItem {
        char *key;
        void *value;
        size_t value_len;
        uint64_t etag;
        uint64_t expire_usec; /* CLOCK_REALTIME, 0 = never */
        struct MemItem *next;
} MemItem;

typedef struct MemCall MemCall;

typedef struct MemStore {
        StateStore base;
        MemItem **buckets;
        size_t n_buckets, n_items;
        uint64_t next_etag;
        sd_event_source *purge;
        MemCall *calls; /* answers waiting for their turn on the loop */
} MemStore;

struct MemCall {
        MemStore *store;
        sd_event_source *defer;
        StateResult result;
        StateDoneFn done;
        void *userdata;
        MemCall *next, *prev;
};

static uint64_t now_realtime(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static size_t hash(const char *s) {
        return (size_t) fnv64_str(s);
}

static void item_free(MemItem *i) {
        free(i->key);
        free(i->value);
        free(i);
}

static bool expired(const MemItem *i, uint64_t now) {
        return i->expire_usec && i->expire_usec <= now;
}

/* Finds key; an expired item is removed on the way and reported absent. */
static MemItem **lookup(MemStore *m, const char *key) {
        MemItem **p = &m->buckets[hash(key) % m->n_buckets];
        uint64_t now = now_realtime();
        for (; *p; p = &(*p)->next)
                if (streq((*p)->key, key)) {
                        if (expired(*p, now)) {
                                MemItem *dead = *p;
                                *p = dead->next;
                                item_free(dead);
                                m->n_items--;
                                return p; /* *p is now the next item or NULL: not this key */
                        }
                        return p;
                }
        return p;
}

static MemItem *find(MemStore *m, const char *key) {
        MemItem **p = lookup(m, key);
        return *p && streq((*p)->key, key) ? *p : NULL;
}

static int grow(MemStore *m) {
        size_t n = m->n_buckets * 2;
        MemItem **b = calloc(n, sizeof(MemItem *));
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_buckets; i++)
                for (MemItem *it = m->buckets[i], *next; it; it = next) {
                        next = it->next;
                        size_t h = hash(it->key) % n;
                        it->next = b[h];
                        b[h] = it;
                }
        free(m->buckets);
        m->buckets = b;
        m->n_buckets = n;
        return 0;
}

/* ---- deferred answers ---- */

static void call_free(MemCall *c) {
        MemStore *m = c->store;
        if (c->prev)
                c->prev->next = c->next;
        else
                m->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        sd_event_source_disable_unref(c->defer);
        state_result_done(&c->result);
        free(c);
}

static int on_defer(sd_event_source *s, void *userdata) {
        MemCall *c = userdata;
        StateDoneFn done = c->done;
        void *ud = c->userdata;
        StateResult r = c->result;

        c->result = (StateResult){};
        call_free(c);
        done(&r, ud);
        state_result_done(&r);
        return 0;
}

/* Queues result (taken) for delivery on the loop. */
static int answer(MemStore *m, StateResult *result, StateDoneFn done, void *userdata) {
        MemCall *c = calloc(1, sizeof *c);
        if (!c) {
                state_result_done(result);
                return -ENOMEM;
        }
        *c = (MemCall){ .store = m, .result = *result, .done = done, .userdata = userdata };
        *result = (StateResult){};
        if (sd_event_add_defer(m->base.event, &c->defer, on_defer, c) < 0) {
                state_result_done(&c->result);
                free(c);
                return -ENOMEM;
        }
        c->next = m->calls;
        if (c->next)
                c->next->prev = c;
        m->calls = c;
        return 0;
}

/* ---- operations ---- */

static int parse_etag(const char *s, uint64_t *ret) {
        char *end;
        if (!s || !*s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Applies one op; fills r on failure. Never partially applies. */
static int apply(MemStore *m, const StateOp *op, StateResult *r) {
        MemItem *it = find(m, op->key);
        uint64_t etag = 0;

        if (op->etag && parse_etag(op->etag, &etag) < 0)
                return state_result_fail(r, -EINVAL, "invalid etag '%s'", op->etag);
        if (op->etag && (!it || it->etag != etag))
                return state_result_fail(r, -ESTALE, "etag mismatch for key '%s'", op->key);
        if (!op->etag && op->kind == STATE_OP_UPSERT && op->concurrency == STATE_CONCURRENCY_FIRST_WRITE && it)
                return state_result_fail(r, -ESTALE, "key '%s' already exists (first-write)", op->key);

        if (op->kind == STATE_OP_DELETE) {
                if (it) {
                        MemItem **p = lookup(m, op->key);
                        *p = it->next;
                        item_free(it);
                        m->n_items--;
                }
                return 0;
        }

        void *v = malloc(op->value_len + 1);
        if (!v)
                return state_result_fail(r, -ENOMEM, "out of memory");
        memcpy(v, op->value, op->value_len);
        ((char *) v)[op->value_len] = 0;
        if (!it) {
                if (m->n_items >= m->n_buckets * 2 && grow(m) < 0) {
                        free(v);
                        return state_result_fail(r, -ENOMEM, "out of memory");
                }
                it = calloc(1, sizeof *it);
                if (!it || !(it->key = strdup(op->key))) {
                        free(it);
                        free(v);
                        return state_result_fail(r, -ENOMEM, "out of memory");
                }
                MemItem **b = &m->buckets[hash(op->key) % m->n_buckets];
                it->next = *b;
                *b = it;
                m->n_items++;
        }
        free(it->value);
        it->value = v;
        it->value_len = op->value_len;
        it->etag = ++m->next_etag;
        it->expire_usec = op->ttl_sec > 0 ? now_realtime() + (uint64_t) op->ttl_sec * 1000000 : 0;
        return 0;
}

static int mem_get(StateStore *s, const char *key, StateDoneFn done, void *userdata) {
        MemStore *m = (MemStore *) s;
        StateResult r = {};
        MemItem *it = find(m, key);

        if (it) {
                r.value.value = malloc(it->value_len + 1);
                if (!r.value.value || asprintf(&r.value.etag, "%llu", (unsigned long long) it->etag) < 0) {
                        r.value.etag = NULL;
                        state_result_done(&r);
                        return -ENOMEM;
                }
                memcpy(r.value.value, it->value, it->value_len + 1);
                r.value.value_len = it->value_len;
                r.value.found = true;
                r.value.expire_realtime_usec = it->expire_usec;
        }
        return answer(m, &r, done, userdata);
}

static int mem_write(StateStore *s, const StateOp *op, StateDoneFn done, void *userdata) {
        MemStore *m = (MemStore *) s;
        StateResult r = {};
        (void) apply(m, op, &r);
        return answer(m, &r, done, userdata);
}

/* What a key held before a transaction touched it, to put back on failure. */
typedef struct Undo {
        char *key;
        bool existed;
        void *value;
        size_t value_len;
        uint64_t etag, expire_usec;
} Undo;

static int undo_record(MemStore *m, const char *key, Undo *u) {
        MemItem *it = find(m, key);
        *u = (Undo){ .key = strdup(key), .existed = !!it };
        if (!u->key)
                return -ENOMEM;
        if (it) {
                u->value = malloc(it->value_len + 1);
                if (!u->value)
                        return -ENOMEM;
                memcpy(u->value, it->value, it->value_len + 1);
                u->value_len = it->value_len;
                u->etag = it->etag;
                u->expire_usec = it->expire_usec;
        }
        return 0;
}

/* Puts the recorded state back (frees u's buffers either way). */
static void undo_apply(MemStore *m, Undo *u) {
        MemItem *it = find(m, u->key);
        if (!u->existed) {
                if (it) {
                        MemItem **p = lookup(m, u->key);
                        *p = it->next;
                        item_free(it);
                        m->n_items--;
                }
        } else {
                StateOp op = { .kind = STATE_OP_UPSERT, .key = u->key, .value = u->value, .value_len = u->value_len };
                StateResult ignore = {};
                if (apply(m, &op, &ignore) >= 0 && (it = find(m, u->key))) {
                        it->etag = u->etag;
                        it->expire_usec = u->expire_usec;
                }
                state_result_done(&ignore);
        }
        free(u->key);
        free(u->value);
}

static int mem_transact(StateStore *s, const StateOp *ops, size_t n, StateDoneFn done, void *userdata) {
        MemStore *m = (MemStore *) s;
        StateResult r = {};
        Undo *undo = calloc(n ? n : 1, sizeof(Undo));
        size_t n_undo = 0;

        if (!undo)
                return -ENOMEM;
        /* Apply in order, remembering what each op replaced; on the first failure put
         * everything back in reverse: all or nothing. */
        for (size_t i = 0; i < n && r.error == 0; i++) {
                if (undo_record(m, ops[i].key, &undo[n_undo++]) < 0) {
                        state_result_fail(&r, -ENOMEM, "out of memory");
                        break;
                }
                (void) apply(m, &ops[i], &r);
        }
        while (n_undo > 0) {
                Undo *u = &undo[--n_undo];
                if (r.error != 0)
                        undo_apply(m, u);
                else {
                        free(u->key);
                        free(u->value);
                }
        }
        free(undo);
        return answer(m, &r, done, userdata);
}

static int on_purge(sd_event_source *s, uint64_t usec, void *userdata) {
        MemStore *m = userdata;
        uint64_t now = now_realtime();
        for (size_t i = 0; i < m->n_buckets; i++)
                for (MemItem **p = &m->buckets[i]; *p;) {
                        if (expired(*p, now)) {
                                MemItem *dead = *p;
                                *p = dead->next;
                                item_free(dead);
                                m->n_items--;
                        } else
                                p = &(*p)->next;
                }
        (void) sd_event_source_set_time_relative(s, PURGE_INTERVAL_USEC);
        return 0;
}

static int mem_open(StateStore *s, char **reterr_msg) {
        MemStore *m = (MemStore *) s;
        m->n_buckets = 64;
        m->buckets = calloc(m->n_buckets, sizeof(MemItem *));
        if (!m->buckets)
                return -ENOMEM;
        if (sd_event_add_time_relative(s->event, &m->purge, CLOCK_MONOTONIC, PURGE_INTERVAL_USEC, 1000000,
                                       on_purge, m) < 0 ||
            sd_event_source_set_enabled(m->purge, SD_EVENT_ON) < 0) {
                *reterr_msg = strdup("cannot set up the purge timer");
                return -ENOMEM;
        }
        return 0;
}

static void mem_close(StateStore *s) {
        MemStore *m = (MemStore *) s;
        while (m->calls) {
                MemCall *c = m->calls;
                StateDoneFn done = c->done;
                void *ud = c->userdata;
                StateResult r = {};
                state_result_fail(&r, -ECANCELED, "state store closed");
                call_free(c);
                done(&r, ud);
                state_result_done(&r);
        }
        for (size_t i = 0; m->buckets && i < m->n_buckets; i++)
                for (MemItem *it = m->buckets[i], *next; it; it = next) {
                        next = it->next;
                        item_free(it);
                }
        free(m->buckets);
        m->purge = sd_event_source_disable_unref(m->purge);
}

const StateDriver state_memory_driver = {
        .type = "state.in-memory",
        .abi = STATE_DRIVER_ABI,
        .instance_size = sizeof(MemStore),
        .features = STATE_FEATURE_ETAG | STATE_FEATURE_TRANSACTIONAL | STATE_FEATURE_TTL,
        .open = mem_open,
        .close = mem_close,
        .get = mem_get,
        .write = mem_write,
        .transact = mem_transact,
};
