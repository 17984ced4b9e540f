/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for drivers/state/sqlite.c (and work/queue.c under it), driven
 * directly through the StateDriver vtable on a real sd-event loop: every
 * StateOp rule of driver.h, etags, TTL and the purge, transactions, metadata
 * validation, durability across close+reopen, and close() with calls in
 * flight. Group commit: requests queued together share a transaction yet
 * see each other exactly, fail alone, and survive a SIGKILL in the middle of
 * batches exactly when acknowledged; a cancelled unstarted write never
 * happens; a get is not queued behind a 100,000-item write.
 */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "core/component.h"
#include "drivers/state/driver.h"
#include "util/cleanup.h"
#include "util/strv.h"
#include "work/queue.h"
#include "tests.h"

extern const StateDriver state_sqlite_driver;

/* What one done() delivered, deep-copied. */
typedef struct Call {
        unsigned n_fired;
        int error;
        char *message;
        bool found;
        void *value;
        size_t value_len;
        char *etag;
        uint64_t expire_usec;
} Call;

static void call_done(Call *c) {
        free(c->message);
        free(c->value);
        free(c->etag);
        *c = (Call){};
}

static void on_done(const StateResult *r, void *userdata) {
        Call *c = userdata;

        call_done(c);
        c->n_fired = 1;
        c->error = r->error;
        c->message = r->message ? strdup(r->message) : NULL;
        c->found = r->value.found;
        if (r->value.found) {
                /* The driver promises a NUL after the bytes. */
                if (((const char *) r->value.value)[r->value.value_len] != 0)
                        c->error = -EBADMSG;
                c->value = malloc(r->value.value_len ?: 1);
                if (r->value.value_len)
                        memcpy(c->value, r->value.value, r->value.value_len);
                c->value_len = r->value.value_len;
                c->etag = r->value.etag ? strdup(r->value.etag) : NULL;
                c->expire_usec = r->value.expire_realtime_usec;
        }
}

/* Runs the loop until c fired (at most ~10 s). */
static void wait_call(sd_event *e, Call *c) {
        for (unsigned i = 0; c->n_fired == 0 && i < 100; i++)
                ASSERT_OK(sd_event_run(e, 100 * 1000));
        ASSERT_EQ(c->n_fired, 1);
}

/* ---- a store on a temporary directory ---- */

typedef struct Env {
        sd_event *event;
        char dir[64];
} Env;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void env_init(Env *env) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";
        *env = (Env){};
        ASSERT_TRUE((size_t) snprintf(env->dir, sizeof env->dir, "%s/test-sqlite-XXXXXX", tmp) <
                    sizeof env->dir);
        ASSERT_NOT_NULL(mkdtemp(env->dir));
        ASSERT_OK(sd_event_new(&env->event));
}

static void env_done(Env *env) {
        (void) nftw(env->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        env->event = sd_event_unref(env->event);
}

static void on_component(Component *c, void *userdata) {
        Component **ret = userdata;
        if (*ret)
                component_unref(*ret);
        *ret = c;
}

/* metadata: YAML list items ("  - name: x\n    value: y\n") or "" for none. */
static Component *make_component(const char *metadata) {
        _cleanup_free_ char *yaml = NULL;
        Component *c = NULL;

        ASSERT_TRUE(asprintf(&yaml,
                             "apiVersion: dapr.io/v1alpha1\n"
                             "kind: Component\n"
                             "metadata:\n"
                             "  name: sqlitestore\n"
                             "spec:\n"
                             "  type: state.sqlite\n"
                             "  version: v1\n"
                             "%s%s",
                             *metadata ? "  metadata:\n" : "", metadata) > 0);
        ASSERT_EQ(component_parse("test.yaml", yaml, strlen(yaml), on_component, NULL, &c), 1);
        ASSERT_NOT_NULL(c);
        return c;
}

/* Opens a store; returns the open() result, *ret_msg gets the error message. */
static int store_open_full(Env *env, const char *metadata, StateStore **ret, char **ret_msg) {
        const StateDriver *d = &state_sqlite_driver;
        StateStore *s = calloc(1, d->instance_size);
        char *msg = NULL;
        int r;

        ASSERT_NOT_NULL(s);
        s->driver = d;
        s->component = make_component(metadata);
        s->event = env->event;
        s->name = s->component->name;
        s->state_dir = env->dir;
        r = d->open(s, &msg);
        if (r < 0) {
                ASSERT_NOT_NULL(msg);
                component_unref(s->component);
                free(s);
                s = NULL;
        } else
                ASSERT_NULL(msg);
        *ret = s;
        if (ret_msg)
                *ret_msg = msg;
        else
                free(msg);
        return r;
}

static StateStore *store_open(Env *env, const char *metadata) {
        StateStore *s = NULL;
        char *msg = NULL;
        int r = store_open_full(env, metadata, &s, &msg);
        if (r < 0)
                fprintf(stderr, "open: %s\n", msg);
        free(msg);
        ASSERT_OK(r);
        return s;
}

static void store_close(StateStore *s) {
        if (!s)
                return;
        s->driver->close(s);
        component_unref(s->component);
        free(s);
}

/* ---- synchronous wrappers: start, check nothing fired yet, run the loop ---- */

static void do_get(Env *env, StateStore *s, const char *key, Call *c) {
        call_done(c);
        ASSERT_OK(s->driver->get(s, key, on_done, c));
        ASSERT_EQ(c->n_fired, 0); /* never from inside the call */
        wait_call(env->event, c);
}

static int do_op(Env *env, StateStore *s, const StateOp *op) {
        Call c = {};
        ASSERT_OK(s->driver->write(s, op, on_done, &c));
        ASSERT_EQ(c.n_fired, 0);
        wait_call(env->event, &c);
        if (c.error != 0)
                ASSERT_NOT_NULL(c.message);
        int r = c.error;
        call_done(&c);
        return r;
}

static int do_tx(Env *env, StateStore *s, const StateOp *ops, size_t n) {
        Call c = {};
        ASSERT_OK(s->driver->transact(s, ops, n, on_done, &c));
        ASSERT_EQ(c.n_fired, 0);
        wait_call(env->event, &c);
        if (c.error != 0)
                ASSERT_NOT_NULL(c.message);
        int r = c.error;
        call_done(&c);
        return r;
}

static int put(Env *env, StateStore *s, const char *key, const char *value, const char *etag) {
        StateOp op = {
                .kind = STATE_OP_UPSERT, .key = key, .value = value, .value_len = strlen(value), .etag = etag
        };
        return do_op(env, s, &op);
}

static int del(Env *env, StateStore *s, const char *key, const char *etag) {
        StateOp op = { .kind = STATE_OP_DELETE, .key = key, .etag = etag };
        return do_op(env, s, &op);
}

/* Gets key and checks it holds value (NULL: absent). Returns the etag (caller frees). */
static char *expect(Env *env, StateStore *s, const char *key, const char *value) {
        Call c = {};
        do_get(env, s, key, &c);
        ASSERT_EQ(c.error, 0);
        if (!value) {
                ASSERT_TRUE(!c.found);
                call_done(&c);
                return NULL;
        }
        ASSERT_TRUE(c.found);
        ASSERT_EQ(c.value_len, strlen(value));
        ASSERT_TRUE(memcmp(c.value, value, c.value_len) == 0);
        ASSERT_NOT_NULL(c.etag);
        char *etag = TAKE_PTR(c.etag);
        call_done(&c);
        return etag;
}

static bool is_sqlite_etag(const char *e) {
        if (strlen(e) != 32)
                return false;
        for (; *e; e++)
                if (!strchr("0123456789abcdef", *e))
                        return false;
        return true;
}

#define OTHER_ETAG "0123456789abcdef0123456789abcdef"

/* ---- tests ---- */

TEST(driver_table) {
        ASSERT_STREQ(state_sqlite_driver.type, "state.sqlite");
        ASSERT_STREQ(state_sqlite_driver.alias, "state.sqlite3");
        ASSERT_EQ(state_sqlite_driver.abi, STATE_DRIVER_ABI);
        ASSERT_EQ(state_sqlite_driver.features,
                  STATE_FEATURE_ETAG | STATE_FEATURE_TRANSACTIONAL | STATE_FEATURE_TTL | STATE_FEATURE_QUERY);
        ASSERT_NOT_NULL(state_sqlite_driver.transact);
        ASSERT_TRUE(state_driver_find("state.sqlite") == &state_sqlite_driver);
        ASSERT_TRUE(state_driver_find("state.sqlite3") == &state_sqlite_driver);
}

TEST(roundtrip_binary) {
        static const char bytes[] = { 'a', 0, 'b', '\xff', 0, '\n', 0 };
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        Call c = {};

        do_get(&env, s, "app||k", &c);
        ASSERT_EQ(c.error, 0);
        ASSERT_TRUE(!c.found);

        StateOp op = { .kind = STATE_OP_UPSERT, .key = "app||k", .value = bytes, .value_len = sizeof bytes };
        ASSERT_EQ(do_op(&env, s, &op), 0);
        do_get(&env, s, "app||k", &c);
        ASSERT_EQ(c.error, 0);
        ASSERT_TRUE(c.found);
        ASSERT_EQ(c.value_len, sizeof bytes);
        ASSERT_TRUE(memcmp(c.value, bytes, sizeof bytes) == 0);
        ASSERT_TRUE(is_sqlite_etag(c.etag));
        ASSERT_EQ(c.expire_usec, 0);

        /* Empty value is a value, not NULL. */
        op = (StateOp){ .kind = STATE_OP_UPSERT, .key = "app||empty", .value = NULL, .value_len = 0 };
        ASSERT_EQ(do_op(&env, s, &op), 0);
        free(expect(&env, s, "app||empty", ""));

        /* Keys are exact: UTF-8, separators, case. */
        ASSERT_EQ(put(&env, s, "app||Ключ", "v1", NULL), 0);
        ASSERT_EQ(put(&env, s, "app||ключ", "v2", NULL), 0);
        free(expect(&env, s, "app||Ключ", "v1"));

        ASSERT_EQ(del(&env, s, "app||k", NULL), 0);
        free(expect(&env, s, "app||k", NULL));
        /* Deleting what is absent is success. */
        ASSERT_EQ(del(&env, s, "app||k", NULL), 0);

        call_done(&c);
        store_close(s);
        env_done(&env);
}

TEST(etags) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        _cleanup_free_ char *e1 = NULL, *e2 = NULL, *e3 = NULL;

        ASSERT_EQ(put(&env, s, "k", "one", NULL), 0);
        e1 = expect(&env, s, "k", "one");
        ASSERT_EQ(put(&env, s, "k", "one", NULL), 0); /* same bytes, still a new etag */
        e2 = expect(&env, s, "k", "one");
        ASSERT_TRUE(is_sqlite_etag(e1) && is_sqlite_etag(e2));
        ASSERT_TRUE(!streq(e1, e2));

        /* Stale etag: rejected, nothing changed. */
        ASSERT_ERROR(put(&env, s, "k", "two", e1), ESTALE);
        ASSERT_ERROR(put(&env, s, "k", "two", OTHER_ETAG), ESTALE);
        free(expect(&env, s, "k", "one"));
        /* Current etag: applied, new etag. */
        ASSERT_EQ(put(&env, s, "k", "two", e2), 0);
        e3 = expect(&env, s, "k", "two");
        ASSERT_TRUE(!streq(e3, e2));
        /* An etag for an absent key is a mismatch too. */
        ASSERT_ERROR(put(&env, s, "absent", "x", e3), ESTALE);
        free(expect(&env, s, "absent", NULL));

        /* Delete with etag: wrong → ESTALE and kept; right → gone; absent → ESTALE. */
        ASSERT_ERROR(del(&env, s, "k", e2), ESTALE);
        free(expect(&env, s, "k", "two"));
        ASSERT_EQ(del(&env, s, "k", e3), 0);
        free(expect(&env, s, "k", NULL));
        ASSERT_ERROR(del(&env, s, "k", e3), ESTALE);

        store_close(s);
        env_done(&env);
}

TEST(first_write) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        _cleanup_free_ char *e = NULL;
        StateOp op = { .kind = STATE_OP_UPSERT,
                       .key = "fw",
                       .value = "a",
                       .value_len = 1,
                       .concurrency = STATE_CONCURRENCY_FIRST_WRITE };

        ASSERT_EQ(do_op(&env, s, &op), 0);
        op.value = "b";
        ASSERT_ERROR(do_op(&env, s, &op), ESTALE);
        e = expect(&env, s, "fw", "a");
        /* first-write with the current etag is an etag-checked update. */
        op.etag = e;
        ASSERT_EQ(do_op(&env, s, &op), 0);
        free(expect(&env, s, "fw", "b"));
        ASSERT_ERROR(do_op(&env, s, &op), ESTALE); /* etag changed */

        store_close(s);
        env_done(&env);
}

TEST(malformed_etag) {
        static const char *const bad[] = {
                "",
                "1",
                "abc",
                "0123456789ABCDEF0123456789ABCDEF",  /* upper case */
                "0123456789abcdef0123456789abcde",   /* 31 */
                "0123456789abcdef0123456789abcdef0", /* 33 */
                "0123456789abcdef0123456789abcdeg",
                "W/\"0123456789abcdef0123456789abcdef\"",
        };
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");

        ASSERT_EQ(put(&env, s, "k", "v", NULL), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ASSERT_ERROR(put(&env, s, "k", "x", bad[i]), EINVAL);
                ASSERT_ERROR(del(&env, s, "k", bad[i]), EINVAL);
        }
        free(expect(&env, s, "k", "v"));

        /* In a transaction: the whole thing is rejected. */
        StateOp ops[] = {
                { .kind = STATE_OP_UPSERT, .key = "t1", .value = "1", .value_len = 1 },
                { .kind = STATE_OP_DELETE, .key = "k", .etag = "nope" },
        };
        ASSERT_ERROR(do_tx(&env, s, ops, ELEMENTSOF(ops)), EINVAL);
        free(expect(&env, s, "t1", NULL));
        free(expect(&env, s, "k", "v"));

        store_close(s);
        env_done(&env);
}

TEST(transaction) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        _cleanup_free_ char *ea = NULL, *eb = NULL;

        ASSERT_EQ(put(&env, s, "a", "a0", NULL), 0);
        ASSERT_EQ(put(&env, s, "b", "b0", NULL), 0);
        ea = expect(&env, s, "a", "a0");
        eb = expect(&env, s, "b", "b0");

        /* Second op fails (wrong etag): the first is not applied either. */
        StateOp bad[] = {
                { .kind = STATE_OP_UPSERT, .key = "a", .value = "a1", .value_len = 2 },
                { .kind = STATE_OP_UPSERT, .key = "b", .value = "b1", .value_len = 2, .etag = OTHER_ETAG },
                { .kind = STATE_OP_UPSERT, .key = "c", .value = "c1", .value_len = 2 },
        };
        ASSERT_ERROR(do_tx(&env, s, bad, ELEMENTSOF(bad)), ESTALE);
        free(expect(&env, s, "a", "a0"));
        free(expect(&env, s, "b", "b0"));
        free(expect(&env, s, "c", NULL));

        /* First-write conflict inside a transaction, after a delete. */
        StateOp bad2[] = {
                { .kind = STATE_OP_DELETE, .key = "a" },
                { .kind = STATE_OP_UPSERT,
                  .key = "b",
                  .value = "b1",
                  .value_len = 2,
                  .concurrency = STATE_CONCURRENCY_FIRST_WRITE },
        };
        ASSERT_ERROR(do_tx(&env, s, bad2, ELEMENTSOF(bad2)), ESTALE);
        free(expect(&env, s, "a", "a0"));

        /* All good: all applied, in order (the later op on the same key wins). */
        StateOp good[] = {
                { .kind = STATE_OP_UPSERT, .key = "a", .value = "a1", .value_len = 2, .etag = ea },
                { .kind = STATE_OP_DELETE, .key = "b", .etag = eb },
                { .kind = STATE_OP_UPSERT, .key = "c", .value = "c1", .value_len = 2 },
                { .kind = STATE_OP_UPSERT, .key = "c", .value = "c2", .value_len = 2 },
        };
        ASSERT_EQ(do_tx(&env, s, good, ELEMENTSOF(good)), 0);
        free(expect(&env, s, "a", "a1"));
        free(expect(&env, s, "b", NULL));
        free(expect(&env, s, "c", "c2"));

        /* Empty transaction. */
        ASSERT_EQ(do_tx(&env, s, NULL, 0), 0);

        store_close(s);
        env_done(&env);
}

static int64_t count_rows(const char *path, const char *table) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        char sql[128];
        int64_t n = -1;

        snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", table);
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return n;
}

static void sleep_until_realtime(uint64_t usec) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t now = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
        if (usec > now)
                usleep((useconds_t) (usec - now));
}

TEST(ttl_and_purge) {
        Env env;
        env_init(&env);
        /* No purge at first: expired rows are only hidden. */
        StateStore *s = store_open(&env, "  - name: cleanupInterval\n    value: \"0\"\n");
        _cleanup_free_ char *path = NULL, *e = NULL;
        Call c = {};
        struct timespec ts;

        ASSERT_TRUE(asprintf(&path, "%s/state.db", env.dir) > 0);
        StateOp op = { .kind = STATE_OP_UPSERT, .key = "t", .value = "v", .value_len = 1, .ttl_sec = 1 };
        ASSERT_EQ(do_op(&env, s, &op), 0);
        op.key = "t2";
        ASSERT_EQ(do_op(&env, s, &op), 0);
        ASSERT_EQ(put(&env, s, "forever", "v", NULL), 0);

        do_get(&env, s, "t", &c);
        ASSERT_TRUE(c.found);
        clock_gettime(CLOCK_REALTIME, &ts);
        /* At least 1 s from now, at most 2 s (whole seconds, rounded up). */
        ASSERT_TRUE(c.expire_usec >= (uint64_t) ts.tv_sec * 1000000 + 1000000);
        ASSERT_TRUE(c.expire_usec <= (uint64_t) ts.tv_sec * 1000000 + 2000000);
        e = TAKE_PTR(c.etag);
        uint64_t expire = c.expire_usec;

        sleep_until_realtime(expire + 10 * 1000);
        free(expect(&env, s, "t", NULL));
        /* Expired counts as absent for writes too. */
        ASSERT_ERROR(put(&env, s, "t", "x", e), ESTALE);
        ASSERT_ERROR(del(&env, s, "t", e), ESTALE);
        ASSERT_EQ(count_rows(path, "state"), 3); /* hidden, not purged */

        /* first-write over an expired row succeeds; ttl <= 0 means never. */
        op = (StateOp){ .kind = STATE_OP_UPSERT,
                        .key = "t2",
                        .value = "w",
                        .value_len = 1,
                        .concurrency = STATE_CONCURRENCY_FIRST_WRITE,
                        .ttl_sec = -1 };
        ASSERT_EQ(do_op(&env, s, &op), 0);
        do_get(&env, s, "t2", &c);
        ASSERT_TRUE(c.found);
        ASSERT_EQ(c.expire_usec, 0);
        store_close(s);

        /* With a purge every second, the expired row goes. */
        s = store_open(&env, "  - name: cleanupInterval\n    value: 1s\n");
        for (unsigned i = 0; i < 30 && count_rows(path, "state") != 2; i++)
                ASSERT_OK(sd_event_run(env.event, 100 * 1000));
        ASSERT_EQ(count_rows(path, "state"), 2);
        free(expect(&env, s, "forever", "v"));
        free(expect(&env, s, "t2", "w"));

        call_done(&c);
        store_close(s);
        env_done(&env);
}

TEST(durable_across_reopen) {
        Env env;
        env_init(&env);
        const char *md = "  - name: connectionString\n    value: sub.db\n"
                         "  - name: tableName\n    value: my_Table_1\n";
        StateStore *s = store_open(&env, md);
        _cleanup_free_ char *e1 = NULL, *e2 = NULL, *path = NULL;

        ASSERT_EQ(put(&env, s, "k", "persisted", NULL), 0);
        e1 = expect(&env, s, "k", "persisted");
        store_close(s);

        ASSERT_TRUE(asprintf(&path, "%s/sub.db", env.dir) > 0);
        ASSERT_TRUE(access(path, F_OK) == 0);
        ASSERT_EQ(count_rows(path, "my_Table_1"), 1);

        s = store_open(&env, md);
        e2 = expect(&env, s, "k", "persisted");
        ASSERT_STREQ(e1, e2);
        store_close(s);

        /* A different table in the same file does not see it. */
        s = store_open(&env, "  - name: connectionString\n    value: file:sub.db?cache=private\n");
        free(expect(&env, s, "k", NULL));
        store_close(s);

        env_done(&env);
}

static char *journal_mode(const char *path) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        char *m = NULL;
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
                m = strdup((const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(db);
        return m;
}

TEST(metadata) {
        static const struct {
                const char *md;
                const char *field;
        } bad[] = {
                { "  - name: tableName\n    value: \"a;drop\"\n", "tableName" },
                { "  - name: tableName\n    value: \"a b\"\n", "tableName" },
                { "  - name: tableName\n    value: sqlite_master\n", "tableName" },
                { "  - name: timeout\n    value: soon\n", "timeout" },
                { "  - name: busyTimeout\n    value: 5x\n", "busyTimeout" },
                { "  - name: cleanupInterval\n    value: often\n", "cleanupInterval" },
                { "  - name: cleanupInterval\n    value: 10ms\n", "cleanupInterval" },
                { "  - name: disableWAL\n    value: maybe\n", "disableWAL" },
                { "  - name: connectionString\n    value: \"\"\n", "connectionString" },
                { "  - name: connectionString\n    value: /nonexistent/dir/x.db\n", "connectionString" },
        };
        Env env;
        env_init(&env);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                StateStore *s = NULL;
                _cleanup_free_ char *msg = NULL;
                int r = store_open_full(&env, bad[i].md, &s, &msg);
                ASSERT_TRUE(r < 0);
                ASSERT_NULL(s);
                if (!startswith(msg, bad[i].field)) {
                        fprintf(stderr, "message '%s' does not name '%s'\n", msg, bad[i].field);
                        ASSERT_TRUE(false);
                }
        }

        /* Good ones, unknown keys ignored. */
        StateStore *s = store_open(&env, "  - name: timeout\n    value: \"30\"\n"
                                         "  - name: busyTimeout\n    value: 1m30s\n"
                                         "  - name: cleanupInterval\n    value: \"0\"\n"
                                         "  - name: somethingElse\n    value: x\n");
        ASSERT_EQ(put(&env, s, "k", "v", NULL), 0);
        store_close(s);
        s = store_open(&env, "  - name: cleanupInterval\n    value: \"-1s\"\n");
        store_close(s);

        _cleanup_free_ char *path = NULL, *mode = NULL;
        ASSERT_TRUE(asprintf(&path, "%s/state.db", env.dir) > 0);
        mode = journal_mode(path);
        ASSERT_STREQ(mode, "wal");
        free(mode);
        s = store_open(&env, "  - name: disableWAL\n    value: \"true\"\n");
        store_close(s);
        mode = journal_mode(path);
        ASSERT_STREQ(mode, "delete");

        /* In-memory. */
        s = store_open(&env, "  - name: connectionString\n    value: \":memory:\"\n");
        ASSERT_EQ(put(&env, s, "k", "mem", NULL), 0);
        free(expect(&env, s, "k", "mem"));
        store_close(s);

        /* An existing table of another layout is reported, not used. */
        {
                sqlite3 *db = NULL;
                ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
                ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE other (k TEXT PRIMARY KEY, v TEXT)", NULL, NULL,
                                       NULL),
                          SQLITE_OK);
                sqlite3_close(db);
                _cleanup_free_ char *msg = NULL;
                ASSERT_TRUE(store_open_full(&env, "  - name: tableName\n    value: other\n", &s, &msg) < 0);
                ASSERT_TRUE(startswith(msg, "tableName"));
        }
        env_done(&env);
}

TEST(big_value) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        size_t n = 1024 * 1024;
        _cleanup_free_ char *big = malloc(n);
        Call c = {};

        ASSERT_NOT_NULL(big);
        for (size_t i = 0; i < n; i++)
                big[i] = (char) (i * 131 + (i >> 8));
        StateOp op = { .kind = STATE_OP_UPSERT, .key = "big", .value = big, .value_len = n };
        ASSERT_EQ(do_op(&env, s, &op), 0);
        do_get(&env, s, "big", &c);
        ASSERT_TRUE(c.found);
        ASSERT_EQ(c.value_len, n);
        ASSERT_TRUE(memcmp(c.value, big, n) == 0);

        call_done(&c);
        store_close(s);
        env_done(&env);
}

TEST(arguments_are_copied_and_ordered) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        enum { N = 200 };
        static Call calls[N];
        char key[16], value[16];

        /* Queue N writes to one key from a reused buffer; they run in order. */
        for (unsigned i = 0; i < N; i++) {
                snprintf(key, sizeof key, "k");
                snprintf(value, sizeof value, "v%u", i);
                StateOp op = {
                        .kind = STATE_OP_UPSERT, .key = key, .value = value, .value_len = strlen(value)
                };
                calls[i] = (Call){};
                ASSERT_OK(s->driver->write(s, &op, on_done, &calls[i]));
                memset(key, 'X', sizeof key - 1);
                memset(value, 'Y', sizeof value - 1);
        }
        for (unsigned i = 0; i < N; i++) {
                wait_call(env.event, &calls[i]);
                ASSERT_EQ(calls[i].error, 0);
                call_done(&calls[i]);
        }
        snprintf(value, sizeof value, "v%u", N - 1);
        free(expect(&env, s, "k", value));

        store_close(s);
        env_done(&env);
}

static unsigned close_cb_count;
static void on_done_count(const StateResult *r, void *userdata) {
        Call *c = userdata;
        c->n_fired++;
        c->error = r->error;
        close_cb_count++;
        /* Calls on a closing store are refused synchronously. */
        StateStore *s = c->value;
        if (s)
                ASSERT_ERROR(s->driver->get(s, "k", on_done_count, c), ECANCELED);
}

TEST(close_with_calls_in_flight) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        enum { N = 300 };
        static Call calls[N];
        unsigned ok = 0, cancelled = 0;

        close_cb_count = 0;
        for (unsigned i = 0; i < N; i++) {
                char key[32];
                snprintf(key, sizeof key, "k%u", i % 7);
                calls[i] = (Call){ .value = s };
                StateOp op = { .kind = i % 3 == 2 ? STATE_OP_DELETE : STATE_OP_UPSERT,
                               .key = key,
                               .value = "v",
                               .value_len = 1 };
                if (i % 5 == 0)
                        ASSERT_OK(s->driver->get(s, key, on_done_count, &calls[i]));
                else if (i % 5 == 1)
                        ASSERT_OK(s->driver->transact(s, &op, 1, on_done_count, &calls[i]));
                else
                        ASSERT_OK(s->driver->write(s, &op, on_done_count, &calls[i]));
        }
        ASSERT_EQ(close_cb_count, 0);
        /* Let the thread finish some (their done()s wait for the loop), not all. */
        usleep(3000);
        ASSERT_EQ(close_cb_count, 0);
        s->driver->close(s);
        /* Every callback ran exactly once, before close() returned. */
        ASSERT_EQ(close_cb_count, N);
        for (unsigned i = 0; i < N; i++) {
                ASSERT_EQ(calls[i].n_fired, 1);
                ASSERT_TRUE(calls[i].error == 0 || calls[i].error == -ECANCELED);
                if (calls[i].error == 0)
                        ok++;
                else
                        cancelled++;
        }
        fprintf(stderr, "close: %u finished, %u cancelled\n", ok, cancelled);
        component_unref(s->component);
        free(s);

        /* Nothing left on the loop. */
        ASSERT_EQ(sd_event_run(env.event, 0), 0);
        ASSERT_EQ(close_cb_count, N);
        env_done(&env);
}

/* A done() that closes its own store (from inside the queue's dispatch). */
static void on_done_close(const StateResult *r, void *userdata) {
        StateStore **sp = userdata;
        if (*sp) {
                store_close(*sp);
                *sp = NULL;
        }
}

TEST(close_from_callback) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        StateStore *handle = s;
        Call others[10] = {};

        ASSERT_OK(s->driver->get(s, "k", on_done_close, &handle));
        for (unsigned i = 0; i < ELEMENTSOF(others); i++)
                ASSERT_OK(s->driver->get(s, "k", on_done, &others[i]));
        for (unsigned i = 0; i < 100 && handle; i++)
                ASSERT_OK(sd_event_run(env.event, 100 * 1000));
        ASSERT_NULL(handle);
        for (unsigned i = 0; i < ELEMENTSOF(others); i++) {
                ASSERT_EQ(others[i].n_fired, 1);
                ASSERT_TRUE(others[i].error == 0 || others[i].error == -ECANCELED);
                call_done(&others[i]);
        }
        env_done(&env);
}

/* work/queue.c on its own. */
static void job_run(void *userdata) {
        unsigned *v = userdata;
        (*v)++;
}
static unsigned queue_done_count;
static void job_done(void *userdata) {
        unsigned *v = userdata;
        ASSERT_EQ(*v, 1);
        queue_done_count++;
}

TEST(work_queue) {
        sd_event *e = NULL;
        enum { N = 1000 };
        static unsigned v[N], w[N];

        ASSERT_OK(sd_event_new(&e));
        WorkQueue *q = work_queue_new(e);
        ASSERT_NOT_NULL(q);
        queue_done_count = 0;
        for (unsigned i = 0; i < N; i++) {
                v[i] = 0;
                ASSERT_OK(work_queue_submit(q, job_run, job_done, &v[i]));
        }
        for (unsigned i = 0; i < 100 && queue_done_count < N / 2; i++)
                ASSERT_OK(sd_event_run(e, 100 * 1000));
        /* Queued while the first half may still run: free() runs them all first. */
        for (unsigned i = 0; i < N; i++) {
                w[i] = 0;
                ASSERT_OK(work_queue_submit(q, job_run, job_done, &w[i]));
        }
        ASSERT_NULL(work_queue_free(q));
        ASSERT_EQ(queue_done_count, 2 * N);
        ASSERT_NULL(work_queue_free(NULL));
        sd_event_unref(e);
}

/* ---- group commit ---- */

/* Starts a write without waiting; the caller runs the loop. */
static void start_put(StateStore *s, const char *key, const char *value, const char *etag, StateConcurrency conc,
                      Call *c) {
        StateOp op = { .kind = STATE_OP_UPSERT, .key = key, .value = value, .value_len = strlen(value),
                       .etag = etag, .concurrency = conc };
        *c = (Call){};
        ASSERT_OK(s->driver->write(s, &op, on_done, c));
}

/*
 * Requests queued together share one transaction, yet each sees the ones before it: etag
 * and first-write checks stay exact, a failing request fails alone, a multi-item request
 * stays all-or-nothing (transaction) or item-by-item (bulk save).
 */
TEST(group_commit_exact_inside_batch) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        _cleanup_free_ char *e0 = NULL;
        Call blocker = {}, w[8] = {};

        ASSERT_EQ(put(&env, s, "k", "v0", NULL), 0);
        e0 = expect(&env, s, "k", "v0");

        /* The blocker goes to the writer at once; everything after it waits for the next batch,
         * which therefore holds all of them. */
        start_put(s, "blocker", "b", NULL, STATE_CONCURRENCY_LAST_WRITE, &blocker);
        start_put(s, "k", "v1", e0, STATE_CONCURRENCY_LAST_WRITE, &w[0]);   /* ok: etag matches */
        start_put(s, "k", "v2", e0, STATE_CONCURRENCY_LAST_WRITE, &w[1]);   /* stale: w[0] changed it */
        start_put(s, "new", "n1", NULL, STATE_CONCURRENCY_FIRST_WRITE, &w[2]); /* ok */
        start_put(s, "new", "n2", NULL, STATE_CONCURRENCY_FIRST_WRITE, &w[3]); /* exists now */
        {
                StateOp tx[] = {
                        { .kind = STATE_OP_UPSERT, .key = "tx-a", .value = "a", .value_len = 1 },
                        { .kind = STATE_OP_UPSERT, .key = "k", .value = "tx", .value_len = 2, .etag = e0 },
                };
                ASSERT_OK(s->driver->transact(s, tx, ELEMENTSOF(tx), on_done, &w[4])); /* all rolled back */
                StateOp many[] = {
                        { .kind = STATE_OP_UPSERT, .key = "m-a", .value = "a", .value_len = 1 },
                        { .kind = STATE_OP_UPSERT, .key = "k", .value = "m", .value_len = 1, .etag = e0 },
                        { .kind = STATE_OP_UPSERT, .key = "m-c", .value = "c", .value_len = 1 },
                };
                ASSERT_OK(s->driver->write_many(s, many, ELEMENTSOF(many), on_done, &w[5])); /* 2 of 3 */
                StateOp d = { .kind = STATE_OP_DELETE, .key = "new", .etag = OTHER_ETAG };
                ASSERT_OK(s->driver->write(s, &d, on_done, &w[6])); /* stale */
                StateOp d2 = { .kind = STATE_OP_DELETE, .key = "blocker" };
                ASSERT_OK(s->driver->write(s, &d2, on_done, &w[7])); /* ok: sees the blocker's commit */
        }
        wait_call(env.event, &blocker);
        ASSERT_EQ(blocker.error, 0);
        for (size_t i = 0; i < ELEMENTSOF(w); i++)
                wait_call(env.event, &w[i]);
        ASSERT_EQ(w[0].error, 0);
        ASSERT_EQ(w[1].error, -ESTALE);
        ASSERT_EQ(w[2].error, 0);
        ASSERT_EQ(w[3].error, -ESTALE);
        ASSERT_EQ(w[4].error, -ESTALE);
        ASSERT_EQ(w[5].error, -ESTALE);
        ASSERT_EQ(w[6].error, -ESTALE);
        ASSERT_EQ(w[7].error, 0);

        free(expect(&env, s, "k", "v1"));
        free(expect(&env, s, "new", "n1"));
        free(expect(&env, s, "tx-a", NULL));
        free(expect(&env, s, "m-a", "a"));
        free(expect(&env, s, "m-c", "c"));
        free(expect(&env, s, "blocker", NULL));
        call_done(&blocker);
        for (size_t i = 0; i < ELEMENTSOF(w); i++)
                call_done(&w[i]);
        store_close(s);
        env_done(&env);
}

/* A cancelled write that has not started never happens; its done still runs, once. */
TEST(cancel_unstarted_write) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        Call blocker = {}, gone = {}, kept = {};

        start_put(s, "blocker", "b", NULL, STATE_CONCURRENCY_LAST_WRITE, &blocker);
        start_put(s, "gone", "g", NULL, STATE_CONCURRENCY_LAST_WRITE, &gone);
        start_put(s, "kept", "k", NULL, STATE_CONCURRENCY_LAST_WRITE, &kept);
        s->driver->cancel(s, &gone);
        ASSERT_EQ(gone.n_fired, 0); /* never from inside the call */
        wait_call(env.event, &blocker);
        wait_call(env.event, &gone);
        wait_call(env.event, &kept);
        ASSERT_EQ(blocker.error, 0);
        ASSERT_EQ(gone.error, -ECANCELED);
        ASSERT_EQ(kept.error, 0);
        free(expect(&env, s, "gone", NULL));
        free(expect(&env, s, "kept", "k"));
        call_done(&blocker);
        call_done(&gone);
        call_done(&kept);
        store_close(s);
        env_done(&env);
}

/*
 * Issue 10 finding 4 at the driver: a get does not wait behind a big write. One bulk save
 * of 100,000 items is one job; a get issued right after it is answered before that job's
 * answer (the reader thread reads the last commit meanwhile).
 */
TEST(get_not_behind_big_write) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        enum { N = 100000 };
        StateOp *ops = calloc(N, sizeof *ops);
        char (*keys)[16] = calloc(N, 16);
        Call big = {}, get = {};

        ASSERT_NOT_NULL(ops);
        ASSERT_NOT_NULL(keys);
        ASSERT_EQ(put(&env, s, "b||mine", "b's value", NULL), 0);
        for (size_t i = 0; i < N; i++) {
                snprintf(keys[i], 16, "a||%zu", i);
                ops[i] = (StateOp){ .kind = STATE_OP_UPSERT, .key = keys[i], .value = "0123456789012345678901234567",
                                    .value_len = 28 };
        }
        ASSERT_OK(s->driver->write_many(s, ops, N, on_done, &big));
        ASSERT_OK(s->driver->get(s, "b||mine", on_done, &get));
        wait_call(env.event, &get);
        /* The order is the point, not the time: b's get is answered while a's save is not. */
        ASSERT_EQ(big.n_fired, 0);
        ASSERT_EQ(get.error, 0);
        ASSERT_TRUE(get.found);
        for (unsigned i = 0; big.n_fired == 0 && i < 1200; i++)
                ASSERT_OK(sd_event_run(env.event, 100 * 1000));
        ASSERT_EQ(big.n_fired, 1);
        ASSERT_EQ(big.error, 0);
        free(expect(&env, s, "a||99999", "0123456789012345678901234567"));
        call_done(&big);
        call_done(&get);
        free(ops);
        free(keys);
        store_close(s);
        env_done(&env);
}

/* ---- crash durability with group commit ---- */

/*
 * The child keeps CRASH_IN_FLIGHT requests in flight: single saves ("s<i>" = "v<i>") and
 * three-item transactions ("t<i>a/b/c" = "x<i>"), and reports each acknowledged one on
 * the pipe as "s <i>\n" or "t <i>\n". It runs until it is killed.
 */
#define CRASH_IN_FLIGHT 64
static int crash_fd = -1;
static StateStore *crash_store;
static unsigned crash_next;

static void crash_start_one(void);

static void on_crash_done(const StateResult *r, void *userdata) {
        uintptr_t id = (uintptr_t) userdata;
        char line[32];
        int n;

        if (r->error != 0)
                _exit(3); /* nothing here should fail */
        n = snprintf(line, sizeof line, "%c %u\n", id & 1 ? 't' : 's', (unsigned) (id >> 1));
        if (write(crash_fd, line, (size_t) n) != n)
                _exit(4);
        crash_start_one();
}

static void crash_start_one(void) {
        unsigned i = crash_next++;
        char k[3][32], v[32];
        int r;

        snprintf(v, sizeof v, "%c%u", i % 4 == 3 ? 'x' : 'v', i);
        if (i % 4 == 3) {
                /* A multi-item request: on disk all three or none. */
                StateOp ops[3];
                for (int j = 0; j < 3; j++) {
                        snprintf(k[j], sizeof k[j], "t%u%c", i, 'a' + j);
                        ops[j] = (StateOp){ .kind = STATE_OP_UPSERT, .key = k[j], .value = v,
                                            .value_len = strlen(v) };
                }
                r = crash_store->driver->transact(crash_store, ops, 3, on_crash_done,
                                                  (void *) (((uintptr_t) i << 1) | 1));
        } else {
                snprintf(k[0], sizeof k[0], "s%u", i);
                StateOp op = { .kind = STATE_OP_UPSERT, .key = k[0], .value = v, .value_len = strlen(v) };
                r = crash_store->driver->write(crash_store, &op, on_crash_done, (void *) ((uintptr_t) i << 1));
        }
        if (r < 0)
                _exit(5);
}

static _Noreturn void crash_child(Env *env, int fd) {
        sd_event *e = NULL;

        crash_fd = fd;
        if (sd_event_new(&e) < 0)
                _exit(6);
        env->event = e;
        crash_store = store_open(env, "");
        for (unsigned i = 0; i < CRASH_IN_FLIGHT; i++)
                crash_start_one();
        for (;;)
                if (sd_event_run(e, UINT64_MAX) < 0)
                        _exit(7);
}

/* Value of key in the table, or NULL. */
static char *db_value(sqlite3 *db, const char *key) {
        sqlite3_stmt *st = NULL;
        char *v = NULL;
        if (sqlite3_prepare_v2(db, "SELECT value FROM state WHERE key = ?1", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                v = strndup(sqlite3_column_blob(st, 0), (size_t) sqlite3_column_bytes(st, 0));
        sqlite3_finalize(st);
        return v;
}

TEST(sigkill_during_group_commit) {
        enum { ACKS_BEFORE_KILL = 3000 };
        Env env;
        int p[2];
        pid_t pid;
        FILE *f;
        char line[64];
        unsigned acks = 0, max_id = 0;
        static bool acked_s[1 << 20], acked_t[1 << 20];

        env_init(&env);
        ASSERT_OK(pipe(p));
        fflush(NULL);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                close(p[0]);
                crash_child(&env, p[1]);
        }
        close(p[1]);
        f = fdopen(p[0], "r");
        ASSERT_NOT_NULL(f);
        memset(acked_s, 0, sizeof acked_s);
        memset(acked_t, 0, sizeof acked_t);
        /* Kill it in full flight: with 64 requests in flight there is always a batch being
         * built or committed. Then read what it acknowledged before it died. */
        while (fgets(line, sizeof line, f)) {
                char kind;
                unsigned id;
                ASSERT_EQ(sscanf(line, "%c %u", &kind, &id), 2);
                ASSERT_TRUE(id < (1u << 20));
                (kind == 't' ? acked_t : acked_s)[id] = true;
                if (id > max_id)
                        max_id = id;
                if (++acks == ACKS_BEFORE_KILL)
                        ASSERT_OK(kill(pid, SIGKILL));
        }
        fclose(f);
        int status;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ASSERT_TRUE(acks >= ACKS_BEFORE_KILL);

        _cleanup_free_ char *path = NULL;
        sqlite3 *db = NULL;
        unsigned present_unacked = 0, tx_whole = 0;
        ASSERT_TRUE(asprintf(&path, "%s/state.db", env.dir) > 0);
        ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK); /* recovers the WAL */
        /* Everything started may be on disk, nothing later: check a margin past the last ack. */
        for (unsigned i = 0; i <= max_id + 2 * CRASH_IN_FLIGHT; i++) {
                char k[32], want[32];
                if (i % 4 == 3) {
                        unsigned n = 0;
                        snprintf(want, sizeof want, "x%u", i);
                        for (int j = 0; j < 3; j++) {
                                snprintf(k, sizeof k, "t%u%c", i, 'a' + j);
                                _cleanup_free_ char *v = db_value(db, k);
                                if (v) {
                                        ASSERT_STREQ(v, want);
                                        n++;
                                }
                        }
                        /* Never half-applied; acknowledged means all there. */
                        ASSERT_TRUE(n == 0 || n == 3);
                        if (acked_t[i])
                                ASSERT_EQ(n, 3);
                        else if (n == 3)
                                present_unacked++;
                        tx_whole += n == 3;
                } else {
                        snprintf(k, sizeof k, "s%u", i);
                        snprintf(want, sizeof want, "v%u", i);
                        _cleanup_free_ char *v = db_value(db, k);
                        if (acked_s[i]) {
                                ASSERT_NOT_NULL(v);
                                ASSERT_STREQ(v, want);
                        } else if (v)
                                present_unacked++;
                }
        }
        fprintf(stderr, "sigkill: %u acknowledged, %u committed but not yet acknowledged, %u whole "
                        "transactions\n", acks, present_unacked, tx_whole);
        sqlite3_close(db);
        env_done(&env);
}
