/* SPDX-License-Identifier: Apache-2.0 */
/*
 * blocks/state.c on a real state.sqlite store and a real sd-event loop: how a
 * store's work is shared between apps and what happens to the work of a
 * caller that went away (issue 10 finding 4).
 *
 * - app b's get, and app b's save, are answered while app a's big save, or
 *   app a's backlog of saves, is still going on (ordering, never timing);
 * - cancelled calls (state_cancel(), what the HTTP front-end calls when the
 *   request ends early) never write and never call back;
 * - a request past maxOperationsPerRequest starts nothing (-E2BIG).
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "blocks/state.h"
#include "core/component.h"
#include "core/registry.h"
#include "util/cleanup.h"
#include "util/strv.h"
#include "tests.h"

typedef struct Env {
        sd_event *event;
        char dir[64];
        Registry registry; /* only event and state_dir: what state_store_open() reads */
} Env;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void env_init(Env *env) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";
        *env = (Env){};
        ASSERT_TRUE((size_t) snprintf(env->dir, sizeof env->dir, "%s/test-state-block-XXXXXX", tmp) <
                    sizeof env->dir);
        ASSERT_NOT_NULL(mkdtemp(env->dir));
        ASSERT_OK(sd_event_new(&env->event));
        env->registry.event = env->event;
        env->registry.state_dir = env->dir;
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

static StateStore *store_open(Env *env, const char *metadata) {
        _cleanup_free_ char *yaml = NULL, *msg = NULL;
        Component *c = NULL;
        StateStore *s = NULL;

        ASSERT_TRUE(asprintf(&yaml,
                             "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: st\n"
                             "spec:\n  type: state.sqlite\n  version: v1\n%s%s",
                             *metadata ? "  metadata:\n" : "", metadata) > 0);
        ASSERT_EQ(component_parse("test.yaml", yaml, strlen(yaml), on_component, NULL, &c), 1);
        int r = state_store_open(&env->registry, c, &s, &msg);
        if (r < 0)
                fprintf(stderr, "open: %s\n", strna(msg));
        ASSERT_OK(r);
        component_unref(c);
        return s;
}

typedef struct Done {
        unsigned fired;
        int error;
        bool found;
        unsigned *counter; /* incremented on success, if set */
} Done;

static void on_done(const StateResult *r, void *userdata) {
        Done *d = userdata;
        d->fired++;
        d->error = r->error;
        d->found = r->value.found;
        if (d->counter && r->error == 0)
                (*d->counter)++;
}

/* Runs the loop until d fired. Each turn answers what is ready, so the bound is in turns, not
 * time; a hang is caught by the test's timeout. */
static void wait_done(Env *env, Done *d) {
        for (unsigned i = 0; d->fired == 0 && i < 1000000; i++)
                ASSERT_OK(sd_event_run(env->event, 100 * 1000));
        ASSERT_EQ(d->fired, 1);
}

static int save(Env *env, StateStore *s, const char *app, const char *key, const char *value) {
        StateOp op = { .kind = STATE_OP_UPSERT, .key = key, .value = value, .value_len = strlen(value) };
        Done d = {};
        ASSERT_OK(state_write_all(s, app, &op, 1, on_done, &d));
        wait_done(env, &d);
        return d.error;
}

static bool present(Env *env, StateStore *s, const char *app, const char *key) {
        Done d = {};
        ASSERT_OK(state_get(s, app, key, on_done, &d));
        wait_done(env, &d);
        ASSERT_EQ(d.error, 0);
        return d.found;
}

/* Issue 10 finding 4: app b's get of its own key waited for all of a's 100,000 items. */
TEST(other_app_get_not_behind_big_save) {
        enum { N = 100000 };
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "  - name: maxOperationsPerRequest\n    value: \"0\"\n");
        StateOp *ops = calloc(N, sizeof *ops);
        char (*keys)[16] = calloc(N, 16);
        Done big = {}, get = {};

        ASSERT_NOT_NULL(ops);
        ASSERT_NOT_NULL(keys);
        ASSERT_EQ(save(&env, s, "b", "mine", "\"b\""), 0);
        for (size_t i = 0; i < N; i++) {
                snprintf(keys[i], 16, "k%zu", i);
                ops[i] = (StateOp){ .kind = STATE_OP_UPSERT, .key = keys[i], .value = "{\"n\":12345}",
                                    .value_len = 11 };
        }
        ASSERT_OK(state_write_all(s, "a", ops, N, on_done, &big));
        ASSERT_OK(state_get(s, "b", "mine", on_done, &get));
        wait_done(&env, &get);
        ASSERT_EQ(big.fired, 0); /* b was answered while a's save was still in flight */
        ASSERT_EQ(get.error, 0);
        ASSERT_TRUE(get.found);
        wait_done(&env, &big);
        ASSERT_EQ(big.error, 0);
        ASSERT_TRUE(present(&env, s, "a", "k99999"));
        free(ops);
        free(keys);
        state_store_close(s);
        env_done(&env);
}

/* One app's backlog of saves does not hold another app's save. */
TEST(other_app_save_not_behind_backlog) {
        enum { N = 2000 };
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        static Done a[N];
        Done b = {};
        unsigned a_ok = 0, a_ok_when_b = 0;
        char key[32];

        for (unsigned i = 0; i < N; i++) {
                snprintf(key, sizeof key, "k%u", i);
                StateOp op = { .kind = STATE_OP_UPSERT, .key = key, .value = "1", .value_len = 1 };
                a[i] = (Done){ .counter = &a_ok };
                ASSERT_OK(state_write_all(s, "a", &op, 1, on_done, &a[i]));
        }
        StateOp op = { .kind = STATE_OP_UPSERT, .key = "mine", .value = "2", .value_len = 1 };
        ASSERT_OK(state_write_all(s, "b", &op, 1, on_done, &b));
        wait_done(&env, &b);
        a_ok_when_b = a_ok;
        ASSERT_EQ(b.error, 0);
        /* Behind at most a few dozen of a's calls, not behind all 2,000. */
        fprintf(stderr, "b answered after %u of a's %u saves\n", a_ok_when_b, N);
        ASSERT_TRUE(a_ok_when_b < N / 4);
        for (unsigned i = 0; i < N; i++)
                wait_done(&env, &a[i]);
        ASSERT_EQ(a_ok, N);
        state_store_close(s);
        env_done(&env);
}

/* A caller that went away: its queued calls never write, and nothing calls back. */
TEST(cancelled_calls_do_not_write) {
        enum { N = 200 };
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        static Done d[N];
        char key[32];

        for (unsigned i = 0; i < N; i++) {
                snprintf(key, sizeof key, "q%u", i);
                StateOp op = { .kind = STATE_OP_UPSERT, .key = key, .value = "1", .value_len = 1 };
                d[i] = (Done){};
                ASSERT_OK(state_write_all(s, "a", &op, 1, on_done, &d[i]));
        }
        /* q1 waits in the driver for the next batch, q150..q199 wait in the block. */
        state_cancel(s, &d[1]);
        for (unsigned i = 150; i < N; i++)
                state_cancel(s, &d[i]);
        for (unsigned i = 0; i < 150; i++)
                if (i != 1)
                        wait_done(&env, &d[i]);
        /* Let anything left run out. */
        while (sd_event_run(env.event, 50 * 1000) > 0)
                ;
        for (unsigned i = 0; i < N; i++) {
                bool cancelled = i == 1 || i >= 150;
                snprintf(key, sizeof key, "q%u", i);
                ASSERT_EQ(d[i].fired, cancelled ? 0 : 1);
                ASSERT_EQ(present(&env, s, "a", key), !cancelled);
        }
        state_store_close(s);
        env_done(&env);
}

static void on_bulk_done(const StateResult *results, size_t n, const StateResult *failed, void *userdata) {
        Done *d = userdata;
        d->fired++;
        d->error = n;
}

/* A bulk get of no keys is answered from the loop, with no driver holding it. A store closed
 * before the loop got there freed the call's queues while that answer was still armed: the
 * answer then ran on freed memory (ASan: heap-use-after-free). It is answered at close now. */
TEST(close_answers_what_waits_for_the_loop) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "");
        char *keys[] = { NULL };
        Done d = {};

        ASSERT_OK(state_bulk_get(s, "a", keys, 0, on_bulk_done, &d));
        state_store_close(s);
        ASSERT_EQ(d.fired, 1);
        for (unsigned i = 0; i < 10; i++)
                ASSERT_TRUE(sd_event_run(env.event, 0) >= 0);
        ASSERT_EQ(d.fired, 1);
        env_done(&env);
}

TEST(bound_per_request) {
        Env env;
        env_init(&env);
        StateStore *s = store_open(&env, "  - name: maxOperationsPerRequest\n    value: \"2\"\n");
        StateOp ops[3] = {
                { .kind = STATE_OP_UPSERT, .key = "x", .value = "1", .value_len = 1 },
                { .kind = STATE_OP_UPSERT, .key = "y", .value = "1", .value_len = 1 },
                { .kind = STATE_OP_UPSERT, .key = "z", .value = "1", .value_len = 1 },
        };
        char *keys[] = { "x", "y", "z", NULL };
        Done d = {};

        ASSERT_EQ(state_store_max_ops(s), 2);
        ASSERT_ERROR(state_write_all(s, "a", ops, 3, on_done, &d), E2BIG);
        ASSERT_ERROR(state_transact(s, "a", ops, 3, on_done, &d), E2BIG);
        ASSERT_ERROR(state_bulk_get(s, "a", keys, 3, NULL, &d), E2BIG);
        ASSERT_OK(state_write_all(s, "a", ops, 2, on_done, &d));
        wait_done(&env, &d);
        ASSERT_EQ(d.error, 0);
        ASSERT_TRUE(!present(&env, s, "a", "z"));
        state_store_close(s);

        /* A bad bound is a component error naming the field. */
        {
                _cleanup_free_ char *yaml = NULL, *msg = NULL;
                Component *c = NULL;
                StateStore *t = NULL;
                ASSERT_TRUE(asprintf(&yaml, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: st\n"
                                            "spec:\n  type: state.sqlite\n  version: v1\n  metadata:\n"
                                            "  - name: maxOperationsPerRequest\n    value: lots\n") > 0);
                ASSERT_EQ(component_parse("test.yaml", yaml, strlen(yaml), on_component, NULL, &c), 1);
                ASSERT_TRUE(state_store_open(&env.registry, c, &t, &msg) < 0);
                ASSERT_TRUE(startswith(msg, "maxOperationsPerRequest"));
                component_unref(c);
        }
        env_done(&env);
}
