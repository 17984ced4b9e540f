/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pub/sub block's publish lines (issue 10 part 2): one app's burst of
 * publishes must not stand in front of another app's next one. Run on the
 * real block and the real pubsub.in-memory broker, whose queue is first
 * come, first served, so the order in which publishes complete is the order
 * in which the block handed them to the broker: deterministic, no timing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "blocks/pubsub.h"
#include "core/component.h"
#include "core/registry.h"
#include "drivers/pubsub/driver.h"
#include "util/cleanup.h"
#include "tests.h"

#define BURST 1000

typedef struct Record {
        unsigned n_done;        /* completions so far */
        unsigned b_position;    /* b's publish completed as number ... (1-based; 0: not yet) */
        unsigned n_cancelled;
        unsigned n_ok;
} Record;

typedef struct Tag {
        Record *rec;
        bool is_b;
} Tag;

static void on_done(int error, const char *message, void *userdata) {
        Tag *t = userdata;
        Record *rec = t->rec;
        rec->n_done++;
        if (error == -ECANCELED)
                rec->n_cancelled++;
        else if (error == 0)
                rec->n_ok++;
        if (t->is_b)
                rec->b_position = rec->n_done;
}

static void on_component(Component *c, void *userdata) {
        Component **ret = userdata;
        if (*ret)
                component_unref(*ret);
        *ret = c;
}

static PubsubBroker *broker_open(Registry *reg) {
        static const char yaml[] = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bus\n"
                                   "spec:\n  type: pubsub.in-memory\n  version: v1\n";
        _cleanup_free_ char *msg = NULL;
        Component *c = NULL;
        PubsubBroker *b = NULL;

        ASSERT_EQ(component_parse("test.yaml", yaml, strlen(yaml), on_component, NULL, &c), 1);
        ASSERT_OK(pubsub_broker_open(reg, c, &b, &msg));
        component_unref(c);
        reg->pubsubs = calloc(1, sizeof *reg->pubsubs);
        ASSERT_NOT_NULL(reg->pubsubs);
        reg->pubsubs[0] = b;
        reg->n_pubsubs = 1;
        return b;
}

/* A loop, a registry and the broker "bus" registered in it, as the Manager would set them up. */
typedef struct Env {
        sd_event *event;
        Registry *registry;
        PubsubBroker *broker;
} Env;

static void env_init(Env *env) {
        *env = (Env){};
        ASSERT_OK(sd_event_new(&env->event));
        env->registry = registry_new(env->event);
        ASSERT_NOT_NULL(env->registry);
        env->broker = broker_open(env->registry);
}

/* Closes the broker (what it holds completes) and unregisters it. */
static void env_close_broker(Env *env) {
        pubsub_broker_close(env->registry, env->broker);
        env->broker = NULL;
        free(env->registry->pubsubs);
        env->registry->pubsubs = NULL;
        env->registry->n_pubsubs = 0;
}

static void env_done(Env *env) {
        if (env->broker)
                env_close_broker(env);
        registry_free(env->registry);
        sd_event_unref(env->event);
}

static void publish(Registry *reg, const char *app, Tag *t) {
        static const char data[] = "{\"n\":1}";
        PublishRequest req = {
                .app = app,
                .pubsub = "bus",
                .topic = "orders",
                .data = data,
                .len = sizeof data - 1,
                .content_type = "application/json",
        };
        ASSERT_OK(pubsub_publish(reg, &req, on_done, t));
}

static void run_until(sd_event *e, const unsigned *counter, unsigned want) {
        for (unsigned i = 0; *counter < want && i < 100000; i++)
                ASSERT_TRUE(sd_event_run(e, 1000 * 1000) >= 0);
        ASSERT_EQ(*counter, want);
}

TEST(another_apps_publish_is_not_behind_a_burst) {
        Env env;
        Record rec = {};
        Tag ta = { .rec = &rec }, tb = { .rec = &rec, .is_b = true };

        env_init(&env);
        /* a's burst first, all of it before b's one publish: before the lines, b's came 1001st. */
        for (unsigned i = 0; i < BURST; i++)
                publish(env.registry, "a", &ta);
        publish(env.registry, "b", &tb);
        run_until(env.event, &rec.n_done, BURST + 1);
        ASSERT_EQ(rec.n_ok, BURST + 1);
        /* b went to the broker right behind a's first 64 (its line's share), not behind all 1000. */
        ASSERT_TRUE(rec.b_position > 0 && rec.b_position <= 65 + 1);
        env_done(&env);
}

TEST(closing_the_broker_ends_what_waits) {
        Env env;
        Record rec = {};
        Tag ta = { .rec = &rec };

        env_init(&env);
        for (unsigned i = 0; i < 200; i++)
                publish(env.registry, "a", &ta);
        /* Nothing ran yet: 64 are with the driver, 136 wait in a's line. Every one gets its done. */
        env_close_broker(&env);
        run_until(env.event, &rec.n_done, 200);
        ASSERT_TRUE(rec.n_cancelled >= 200 - 64);
        env_done(&env);
}
