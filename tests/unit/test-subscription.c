/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for core/subscription.c: declarative Subscription YAML (v1alpha1 and
 * v2alpha1, scopes, dead-letter topic, metadata, multi-document files with
 * bad documents and their file:line:field errors), the app's
 * /dapr/subscribe JSON (v1 route, v2 routes, bad entries skipped), match
 * expressions (compile errors with columns, evaluation) and routing.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cloudevent.h"
#include "core/conferr.h"
#include "core/subscription.h"
#include "util/strv.h"
#include "tests.h"

#define FILE_NAME "subscriptions/test.yaml"

typedef struct Loaded {
        Subscription *subs[16];
        size_t n;
        ConfError errors[16];
        size_t n_errors;
} Loaded;

static void on_sub(Subscription *s, void *ud) {
        Loaded *l = ud;
        if (l->n >= ELEMENTSOF(l->subs)) {
                subscription_free(s);
                return;
        }
        l->subs[l->n++] = s;
}

static void on_error(const ConfError *e, void *ud) {
        Loaded *l = ud;
        _cleanup_free_ char *s = conf_error_format(e);
        fprintf(stderr, "  load error: %s\n", strna(s));
        if (l->n_errors >= ELEMENTSOF(l->errors))
                return;
        ConfError *c = &l->errors[l->n_errors++];
        c->file = e->file ? strdup(e->file) : NULL;
        c->line = e->line;
        c->field = e->field ? strdup(e->field) : NULL;
        c->message = e->message ? strdup(e->message) : NULL;
}

static void loaded_done(Loaded *l) {
        for (size_t i = 0; i < l->n; i++)
                subscription_free(l->subs[i]);
        for (size_t i = 0; i < l->n_errors; i++)
                conf_error_done(&l->errors[i]);
        *l = (Loaded){};
}

static int load(const char *text, Loaded *l) {
        *l = (Loaded){};
        return subscription_load_yaml(FILE_NAME, text, strlen(text), on_sub, on_error, l);
}

static void check_error(const ConfError *e, unsigned line, const char *field, const char *needle) {
        ASSERT_STREQ(e->file, FILE_NAME);
        ASSERT_EQ(e->line, line);
        if (field)
                ASSERT_STREQ(e->field, field);
        else
                ASSERT_NULL(e->field);
        ASSERT_NOT_NULL(e->message);
        if (needle && !strstr(e->message, needle)) {
                fprintf(stderr, "message \"%s\" does not contain \"%s\"\n", e->message, needle);
                ASSERT_TRUE(false);
        }
}

/* One document that must fail with this line, field and message part. */
static void expect_error(const char *text, unsigned line, const char *field, const char *needle) {
        Loaded l;
        int r = load(text, &l);

        ASSERT_EQ(r, 0);
        ASSERT_EQ(l.n, 0);
        ASSERT_EQ(l.n_errors, 1);
        check_error(&l.errors[0], line, field, needle);
        loaded_done(&l);
}

static json_t *event_from(const char *text) {
        json_t *j = cloudevent_parse(text, strlen(text));
        ASSERT_NOT_NULL(j);
        return j;
}

TEST(yaml_v2alpha1) {
        static const char text[] =
                "apiVersion: dapr.io/v2alpha1\n"                                 /* 1 */
                "kind: Subscription\n"                                           /* 2 */
                "metadata:\n"                                                    /* 3 */
                "  name: order-sub\n"                                            /* 4 */
                "spec:\n"                                                        /* 5 */
                "  pubsubname: pubsub\n"                                         /* 6 */
                "  topic: orders\n"                                              /* 7 */
                "  routes:\n"                                                    /* 8 */
                "    rules:\n"                                                   /* 9 */
                "    - match: 'event.type == \"widget\"'\n"                      /* 10 */
                "      path: /widgets\n"                                         /* 11 */
                "    - match: event.data.amount > 100 && event.data.vip\n"       /* 12 */
                "      path: big\n"                                              /* 13 */
                "    default: /orders\n"                                         /* 14 */
                "  metadata: {rawPayload: \"true\", other: 5, empty: }\n"        /* 15 */
                "  deadLetterTopic: poison\n"                                    /* 16 */
                "  bulkSubscribe: {enabled: false, maxMessagesCount: 100}\n"     /* 17 */
                "scopes: [app-a, app-b]\n";                                      /* 18 */
        Loaded l;
        Subscription *s;

        ASSERT_EQ(load(text, &l), 1);
        ASSERT_EQ(l.n_errors, 0);
        s = l.subs[0];
        ASSERT_STREQ(s->name, "order-sub");
        ASSERT_STREQ(s->pubsub, "pubsub");
        ASSERT_STREQ(s->topic, "orders");
        ASSERT_EQ(s->n_rules, 2);
        ASSERT_STREQ(s->rules[0].match, "event.type == \"widget\"");
        ASSERT_NOT_NULL(s->rules[0].expr);
        ASSERT_STREQ(s->rules[0].path, "/widgets");
        ASSERT_STREQ(s->rules[1].path, "/big");
        ASSERT_STREQ(s->default_path, "/orders");
        ASSERT_TRUE(s->raw_payload);
        ASSERT_STREQ(subscription_get_metadata(s, "rawPayload"), "true");
        ASSERT_STREQ(subscription_get_metadata(s, "other"), "5");
        ASSERT_STREQ(subscription_get_metadata(s, "empty"), "");
        ASSERT_NULL(subscription_get_metadata(s, "missing"));
        ASSERT_EQ(strv_length(s->metadata), 6);
        ASSERT_STREQ(s->dead_letter_topic, "poison");
        ASSERT_EQ(strv_length(s->scopes), 2);
        ASSERT_TRUE(subscription_in_scope(s, "app-a"));
        ASSERT_TRUE(subscription_in_scope(s, "app-b"));
        ASSERT_TRUE(!subscription_in_scope(s, "app-c"));
        ASSERT_TRUE(!subscription_in_scope(s, NULL));
        ASSERT_TRUE(s->declarative);
        ASSERT_STREQ(s->file, FILE_NAME);
        ASSERT_EQ(s->line, 1);

        json_t *e = event_from("{\"type\":\"widget\",\"data\":{\"amount\":500,\"vip\":true}}");
        ASSERT_STREQ(subscription_route(s, e), "/widgets");
        json_decref(e);
        e = event_from("{\"type\":\"gadget\",\"data\":{\"amount\":500,\"vip\":true}}");
        ASSERT_STREQ(subscription_route(s, e), "/big");
        json_decref(e);
        e = event_from("{\"type\":\"gadget\",\"data\":{\"amount\":500,\"vip\":\"yes\"}}");
        ASSERT_STREQ(subscription_route(s, e), "/orders");
        json_decref(e);
        ASSERT_STREQ(subscription_route(s, NULL), "/orders");
        loaded_done(&l);
}

TEST(yaml_v1alpha1) {
        static const char text[] =
                "apiVersion: dapr.io/v1alpha1\n"
                "kind: Subscription\n"
                "metadata: {name: legacy}\n"
                "spec:\n"
                "  topic: orders\n"
                "  route: checkout\n"
                "  pubsubname: pubsub\n"
                "  bulkSubscribe: [whatever]\n";
        Loaded l;
        Subscription *s;

        ASSERT_EQ(load(text, &l), 1);
        s = l.subs[0];
        ASSERT_STREQ(s->name, "legacy");
        ASSERT_TRUE(!s->bulk); /* the list form of the v1alpha1 docs is not daprd's type: ignored */
        ASSERT_EQ(s->n_rules, 0);
        ASSERT_NULL(s->rules);
        ASSERT_STREQ(s->default_path, "/checkout");
        ASSERT_NULL(s->metadata);
        ASSERT_NULL(s->dead_letter_topic);
        ASSERT_NULL(s->scopes);
        ASSERT_TRUE(!s->raw_payload);
        ASSERT_TRUE(subscription_in_scope(s, "anyone"));
        ASSERT_TRUE(subscription_in_scope(s, NULL));
        ASSERT_STREQ(subscription_route(s, NULL), "/checkout");
        loaded_done(&l);

        /* routes.default wins over route; an empty scopes list means every app; no name is fine. */
        static const char both[] =
                "apiVersion: dapr.io/v2alpha1\n"
                "kind: Subscription\n"
                "spec: {pubsubname: p, topic: t, route: /old, routes: {default: /new}, deadLetterTopic: \"\"}\n"
                "scopes: []\n";
        ASSERT_EQ(load(both, &l), 1);
        s = l.subs[0];
        ASSERT_NULL(s->name);
        ASSERT_STREQ(s->default_path, "/new");
        ASSERT_NULL(s->dead_letter_topic);
        ASSERT_NOT_NULL(s->scopes);
        ASSERT_TRUE(subscription_in_scope(s, "x"));
        loaded_done(&l);

        /* Only rules: no default path. */
        static const char rules_only[] =
                "apiVersion: dapr.io/v2alpha1\n"
                "kind: Subscription\n"
                "spec: {pubsubname: p, topic: t, routes: {rules: [{match: 'event.type == \"a\"', path: /a}]}}\n";
        ASSERT_EQ(load(rules_only, &l), 1);
        s = l.subs[0];
        ASSERT_NULL(s->default_path);
        json_t *e = event_from("{\"type\":\"b\"}");
        ASSERT_NULL(subscription_route(s, e));
        json_decref(e);
        ASSERT_NULL(subscription_route(s, NULL));
        loaded_done(&l);
}

TEST(yaml_multi_doc) {
        static const char text[] =
                "apiVersion: dapr.io/v2alpha1\n"                          /* 1 */
                "kind: Subscription\n"                                    /* 2 */
                "metadata: {name: first}\n"                               /* 3 */
                "spec: {pubsubname: p, topic: a, route: /a}\n"            /* 4 */
                "---\n"                                                   /* 5 */
                "apiVersion: dapr.io/v1alpha1\n"                          /* 6 */
                "kind: Component\n"                                       /* 7 */
                "metadata: {name: pubsub}\n"                              /* 8 */
                "spec: {type: pubsub.redis}\n"                            /* 9 */
                "---\n"                                                   /* 10 */
                "apiVersion: dapr.io/v2alpha1\n"                          /* 11 */
                "kind: Subscription\n"                                    /* 12 */
                "metadata: {name: bad}\n"                                 /* 13 */
                "spec:\n"                                                 /* 14 */
                "  pubsubname: p\n"                                       /* 15 */
                "  topic: b\n"                                            /* 16 */
                "  routes:\n"                                             /* 17 */
                "    rules:\n"                                            /* 18 */
                "    - {match: 'event.type == \"x\"', path: /x}\n"        /* 19 */
                "    - match: event.type = \"y\"\n"                       /* 20 */
                "      path: /y\n"                                        /* 21 */
                "---\n"                                                   /* 22 */
                "apiVersion: dapr.io/v2alpha1\n"                          /* 23 */
                "kind: Subscription\n"                                    /* 24 */
                "metadata: {name: last}\n"                                /* 25 */
                "spec: {pubsubname: p, topic: c, routes: {default: c}}\n" /* 26 */
                "---\n";
        Loaded l;

        ASSERT_EQ(load(text, &l), 2);
        ASSERT_EQ(l.n, 2);
        ASSERT_STREQ(l.subs[0]->name, "first");
        ASSERT_EQ(l.subs[0]->line, 1);
        ASSERT_STREQ(l.subs[1]->name, "last");
        ASSERT_EQ(l.subs[1]->line, 23);
        ASSERT_STREQ(l.subs[1]->default_path, "/c");
        ASSERT_EQ(l.n_errors, 1);
        check_error(&l.errors[0], 20, "spec.routes.rules[1].match", "column 12: unexpected '=' (compare with '==')");

        _cleanup_free_ char *formatted = conf_error_format(&l.errors[0]);
        ASSERT_STREQ(formatted, FILE_NAME ":20: field 'spec.routes.rules[1].match': column 12: unexpected '=' "
                                "(compare with '==')");
        loaded_done(&l);

        /* A syntax error ends the file: earlier documents count, the error is reported. */
        static const char broken[] =
                "apiVersion: dapr.io/v2alpha1\n"
                "kind: Subscription\n"
                "spec: {pubsubname: p, topic: a, route: /a}\n"
                "---\n"
                "kind: [unclosed\n";
        ASSERT_EQ(load(broken, &l), 1);
        ASSERT_EQ(l.n_errors, 1);
        ASSERT_NULL(l.errors[0].field);
        ASSERT_TRUE(strstr(l.errors[0].message, "YAML syntax error") != NULL);
        loaded_done(&l);

        ASSERT_EQ(load("", &l), 0);
        ASSERT_EQ(l.n_errors, 0);
        loaded_done(&l);
}

TEST(yaml_errors) {
#define HEAD "apiVersion: dapr.io/v2alpha1\nkind: Subscription\n"
        expect_error("apiVersion: dapr.io/v3\nkind: Subscription\nspec: {pubsubname: p, topic: t, route: /a}\n", 1,
                     "apiVersion", "unsupported apiVersion 'dapr.io/v3'");
        expect_error("kind: Subscription\nspec: {pubsubname: p, topic: t, route: /a}\n", 1, "apiVersion",
                     "required field is missing");
        expect_error(HEAD "spec: {topic: t, route: /a}\n", 3, "spec.pubsubname", "required field is missing");
        expect_error(HEAD "spec: {pubsubname: p, topic: '', route: /a}\n", 3, "spec.topic", "must not be empty");
        expect_error(HEAD "spec: {pubsubname: [p], topic: t, route: /a}\n", 3, "spec.pubsubname", "expected a string");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n", 4, "spec.routes", "no route");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  routes: {rules: []}\n", 4, "spec.routes", "no route");
        expect_error(HEAD "metadata: x\nspec: {pubsubname: p, topic: t, route: /a}\n", 3, "metadata",
                     "expected a mapping");
        expect_error(HEAD "metadata: {name: ''}\nspec: {pubsubname: p, topic: t, route: /a}\n", 3, "metadata.name",
                     "must not be empty");
        expect_error(HEAD "spec: 5\n", 3, "spec", "required mapping");
        expect_error(HEAD "other: 1\n", 1, "spec", "required mapping");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  route: /a\n  routes: [x]\n", 7, "spec.routes",
                     "expected a mapping");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules: {a: b}\n", 7,
                     "spec.routes.rules", "expected a list");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules:\n    - x\n", 8,
                     "spec.routes.rules[0]", "expected a mapping");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules:\n    - match: 'true'\n", 8,
                     "spec.routes.rules[0].path", "required field is missing");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules:\n    - {path: /a}\n"
                          "    - {match: [x], path: /b}\n", 9, "spec.routes.rules[1].match", "expected a string");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules:\n    - {path: /a b}\n", 8,
                     "spec.routes.rules[0].path", "without spaces");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  routes:\n    rules:\n    - match: 'event.x == \"a'\n"
                          "      path: /a\n", 8, "spec.routes.rules[0].match", "column 12: unterminated string");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  routes: {default: \"a\\tb\"}\n", 6,
                     "spec.routes.default", "control characters");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  route: \"/a\\nb\"\n", 6, "spec.route",
                     "control characters");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  route: /a\n  metadata: [a]\n", 7, "spec.metadata",
                     "expected a mapping");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  route: /a\n  metadata:\n    rawPayload: maybe\n", 8,
                     "spec.metadata.rawPayload", "must be true or false, not 'maybe'");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  route: /a\n  metadata:\n    a: [1]\n", 8,
                     "spec.metadata", "value of 'a' must be a string");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  route: /a\n  metadata:\n    a: 1\n    a: 2\n", 9,
                     "spec.metadata", "duplicate key 'a'");
        expect_error(HEAD "spec:\n  pubsubname: p\n  topic: t\n  route: /a\n  deadLetterTopic: {a: b}\n", 7,
                     "spec.deadLetterTopic", "expected a string");
        expect_error(HEAD "spec: {pubsubname: p, topic: t, route: /a}\nscopes: app\n", 4, "scopes", "expected a list");
        expect_error(HEAD "spec: {pubsubname: p, topic: t, route: /a}\nscopes:\n- good\n- 'bad id'\n", 6, "scopes",
                     "invalid app id 'bad id'");
        expect_error("- a list\n", 1, NULL, "expected a mapping document");
        expect_error("apiVersion: dapr.io/v2alpha1\nspec: {}\n", 1, "kind", "required field is missing");
#undef HEAD
}

TEST(bulk_subscribe) {
        static const char yaml[] =
                "apiVersion: dapr.io/v2alpha1\n"
                "kind: Subscription\n"
                "metadata: {name: b}\n"
                "spec:\n"
                "  pubsubname: p\n"
                "  topic: t\n"
                "  route: /x\n"
                "  bulkSubscribe: {enabled: true, maxMessagesCount: 999999, maxAwaitDurationMs: 40}\n";
        Loaded l;
        ASSERT_EQ(load(yaml, &l), 1);
        ASSERT_TRUE(l.subs[0]->bulk);
        ASSERT_EQ(l.subs[0]->bulk_max_messages, SUBSCRIPTION_BULK_MAX_MESSAGES);
        ASSERT_EQ(l.subs[0]->bulk_max_await_ms, 40);
        loaded_done(&l);

        static const char bad[] =
                "[{\"pubsubname\":\"p\",\"topic\":\"t\",\"route\":\"/x\",\"bulkSubscribe\":{\"enabled\":\"yes\"}},"
                " {\"pubsubname\":\"p\",\"topic\":\"u\",\"route\":\"/x\",\"bulkSubscribe\":{\"enabled\":true,"
                "\"maxMessagesCount\":-1,\"maxAwaitDurationMs\":1.5}},"
                " {\"pubsubname\":\"p\",\"topic\":\"v\",\"route\":\"/x\",\"bulkSubscribe\":{\"enabled\":true,"
                "\"maxMessagesCount\":-1}}]";
        Subscription **subs = NULL;
        size_t n = 0, skipped = 0;
        char *err = NULL;
        ASSERT_OK(subscription_parse_programmatic(bad, strlen(bad), &subs, &n, &skipped, &err));
        ASSERT_EQ(n, 1);
        ASSERT_EQ(skipped, 2);
        ASSERT_STREQ(err, "subscription 1 (topic 't'): bulkSubscribe.enabled is not a boolean");
        ASSERT_TRUE(subs[0]->bulk);
        ASSERT_EQ(subs[0]->bulk_max_messages, 0); /* <= 0: Dapr's default */
        subscription_free_many(subs, n);
        free(err);
}

TEST(programmatic) {
        static const char body[] =
                "[{\"pubsubname\":\"pubsub\",\"topic\":\"v1\",\"route\":\"orders\"},"
                " {\"pubsubname\":\"pubsub\",\"topic\":\"v2\",\"routes\":{\"rules\":[{\"match\":\"event.type == \\\"a\\\"\","
                "\"path\":\"/a\"},{\"match\":\"\",\"path\":\"/always\"}],\"default\":\"/d\"},\"route\":\"/ignored\","
                "\"metadata\":{\"rawPayload\":\"true\",\"x\":\"y\"},\"deadLetterTopic\":\"dead\","
                "\"bulkSubscribe\":{\"enabled\":true,\"maxMessagesCount\":10},\"unknown\":[1]},"
                " {\"pubsubname\":\"pubsub\",\"topic\":\"rules-only\",\"routes\":{\"rules\":[{\"path\":\"r\"}],"
                "\"default\":null},\"route\":null,\"metadata\":null,\"deadLetterTopic\":\"\"}]";
        Subscription **l = NULL;
        size_t n = 99, skipped = 99;
        char *err = NULL;

        ASSERT_OK(subscription_parse_programmatic(body, strlen(body), &l, &n, &skipped, &err));
        ASSERT_EQ(n, 3);
        ASSERT_EQ(skipped, 0);
        ASSERT_NULL(err);

        ASSERT_NULL(l[0]->name);
        ASSERT_STREQ(l[0]->pubsub, "pubsub");
        ASSERT_STREQ(l[0]->topic, "v1");
        ASSERT_EQ(l[0]->n_rules, 0);
        ASSERT_STREQ(l[0]->default_path, "/orders");
        ASSERT_TRUE(!l[0]->declarative);
        ASSERT_NULL(l[0]->file);
        ASSERT_EQ(l[0]->line, 0);

        ASSERT_STREQ(l[1]->topic, "v2");
        ASSERT_EQ(l[1]->n_rules, 2);
        ASSERT_STREQ(l[1]->rules[0].path, "/a");
        ASSERT_STREQ(l[1]->rules[1].match, "");
        ASSERT_NULL(l[1]->rules[1].expr);
        ASSERT_STREQ(l[1]->default_path, "/d");
        ASSERT_TRUE(l[1]->raw_payload);
        ASSERT_STREQ(subscription_get_metadata(l[1], "x"), "y");
        ASSERT_STREQ(l[1]->dead_letter_topic, "dead");
        ASSERT_TRUE(l[1]->bulk);
        ASSERT_EQ(l[1]->bulk_max_messages, 10);
        ASSERT_EQ(l[1]->bulk_max_await_ms, 0); /* Dapr's default */
        ASSERT_TRUE(!l[0]->bulk);
        json_t *e = event_from("{\"type\":\"a\"}");
        ASSERT_STREQ(subscription_route(l[1], e), "/a");
        json_decref(e);
        e = event_from("{\"type\":\"b\"}");
        ASSERT_STREQ(subscription_route(l[1], e), "/always");
        json_decref(e);

        ASSERT_EQ(l[2]->n_rules, 1);
        ASSERT_STREQ(l[2]->rules[0].path, "/r");
        ASSERT_NULL(l[2]->default_path);
        ASSERT_NULL(l[2]->metadata);
        ASSERT_NULL(l[2]->dead_letter_topic);
        ASSERT_STREQ(subscription_route(l[2], NULL), "/r"); /* no match expression: applies to anything */
        subscription_free_many(l, n);
}

TEST(programmatic_skips) {
        static const char body[] =
                "[{\"pubsubname\":\"p\",\"topic\":\"good\",\"route\":\"/g\"},"
                " {\"pubsubname\":\"p\",\"topic\":\"bad-match\",\"routes\":{\"rules\":[{\"match\":\"event.a ==\",\"path\":\"/x\"}]}},"
                " 42,"
                " {\"pubsubname\":\"p\"},"
                " {\"topic\":\"t\",\"route\":\"/x\"},"
                " {\"pubsubname\":\"p\",\"topic\":\"no-route\"},"
                " {\"pubsubname\":\"p\",\"topic\":\"no-route2\",\"routes\":{\"rules\":[]}},"
                " {\"pubsubname\":\"p\",\"topic\":\"md\",\"route\":\"/x\",\"metadata\":{\"a\":1}},"
                " {\"pubsubname\":\"p\",\"topic\":\"raw\",\"route\":\"/x\",\"metadata\":{\"rawPayload\":\"maybe\"}},"
                " {\"pubsubname\":\"p\",\"topic\":\"nul\\u0000\",\"route\":\"/x\"},"
                " {\"pubsubname\":\"p\",\"topic\":\"path\",\"route\":\"/a b\"},"
                " {\"pubsubname\":\"p\",\"topic\":\"rule-path\",\"routes\":{\"rules\":[{\"match\":\"true\"}]}},"
                " {\"pubsubname\":\"p\",\"topic\":\"routes-type\",\"routes\":[]},"
                " {\"pubsubname\":\"p\",\"topic\":\"rules-type\",\"routes\":{\"rules\":{}}},"
                " {\"pubsubname\":\"p\",\"topic\":\"rule-type\",\"routes\":{\"rules\":[7]}},"
                " {\"pubsubname\":\"p\",\"topic\":\"route-type\",\"route\":5},"
                " {\"pubsubname\":\"p\",\"topic\":\"dlt-type\",\"route\":\"/x\",\"deadLetterTopic\":false},"
                " {\"pubsubname\":\"p\",\"topic\":\"good2\",\"routes\":{\"rules\":[{\"match\":\"true\",\"path\":\"/t\"}]}}]";
        Subscription **l = NULL;
        size_t n = 0, skipped = 0;
        _cleanup_free_ char *err = NULL;

        ASSERT_OK(subscription_parse_programmatic(body, strlen(body), &l, &n, &skipped, &err));
        ASSERT_EQ(n, 2);
        ASSERT_EQ(skipped, 16);
        ASSERT_STREQ(l[0]->topic, "good");
        ASSERT_STREQ(l[1]->topic, "good2");
        fprintf(stderr, "  first reason: %s\n", strna(err));
        ASSERT_STREQ(err, "subscription 2 (topic 'bad-match'): routes.rules[0].match: column 11: "
                          "expected a value, 'event.<field>' or '(', found the end");
        subscription_free_many(l, n);

        /* Each reason, one entry at a time. */
        static const struct {
                const char *entry, *reason;
        } cases[] = {
                { "42", "subscription 1: not a JSON object" },
                { "{\"pubsubname\":\"p\"}", "subscription 1: topic is missing" },
                { "{\"topic\":\"t\"}", "subscription 1 (topic 't'): pubsubname is missing" },
                { "{\"pubsubname\":\"p\",\"topic\":\"t\"}", "subscription 1 (topic 't'): no route" },
                { "{\"pubsubname\":\"p\",\"topic\":\"t\",\"route\":\"/x\",\"metadata\":{\"a\":1}}",
                  "subscription 1 (topic 't'): metadata.a is not a string" },
                { "{\"pubsubname\":\"p\",\"topic\":\"t\",\"route\":\"/x\",\"metadata\":{\"rawPayload\":\"x\"}}",
                  "subscription 1 (topic 't'): metadata.rawPayload must be true or false" },
                { "{\"pubsubname\":\"p\",\"topic\":\"t\\u0000\",\"route\":\"/x\"}", "subscription 1: topic is not a string" },
                { "{\"pubsubname\":\"p\",\"topic\":\"t\",\"route\":\"/a b\"}", "subscription 1 (topic 't'): route: path must" },
                { "{\"pubsubname\":\"p\",\"topic\":\"t\",\"routes\":{\"rules\":[{\"match\":\"true\"}]}}",
                  "subscription 1 (topic 't'): routes.rules[0].path is missing" },
                { "{\"pubsubname\":\"p\",\"topic\":\"t\",\"routes\":[]}", "subscription 1 (topic 't'): routes is not an object" },
                { "{\"pubsubname\":\"p\",\"topic\":\"t\",\"routes\":{\"rules\":[{\"path\":\"/a\",\"match\":\"x\"}]}}",
                  "subscription 1 (topic 't'): routes.rules[0].match: column 1: unknown name 'x'" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *b = NULL, *reason = NULL;
                ASSERT_TRUE(asprintf(&b, "[%s]", cases[i].entry) > 0);
                l = (Subscription **) 1;
                ASSERT_OK(subscription_parse_programmatic(b, strlen(b), &l, &n, &skipped, &reason));
                fprintf(stderr, "  %s -> %s\n", cases[i].entry, strna(reason));
                ASSERT_NULL(l);
                ASSERT_EQ(n, 0);
                ASSERT_EQ(skipped, 1);
                ASSERT_NOT_NULL(reason);
                ASSERT_TRUE(strneq(reason, cases[i].reason, strlen(cases[i].reason)));
        }
}

TEST(programmatic_not_array) {
        static const char *const bodies[] = { "{}", "\"x\"", "", "[", "null", "[] x" };
        Subscription **l = NULL;
        size_t n = 7, skipped = 7;

        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                _cleanup_free_ char *err = NULL;
                ASSERT_ERROR(subscription_parse_programmatic(bodies[i], strlen(bodies[i]), &l, &n, &skipped, &err),
                             EINVAL);
                ASSERT_NOT_NULL(err);
                ASSERT_NULL(l);
                ASSERT_EQ(n, 7);
        }
        ASSERT_ERROR(subscription_parse_programmatic("{}", 2, &l, &n, &skipped, NULL), EINVAL);
        /* A raw NUL (which jansson alone would let pass after a number) makes it not JSON. */
        ASSERT_ERROR(subscription_parse_programmatic("[1\0]", 4, &l, &n, &skipped, NULL), EINVAL);

        ASSERT_OK(subscription_parse_programmatic(" [] ", 4, &l, &n, &skipped, NULL));
        ASSERT_NULL(l);
        ASSERT_EQ(n, 0);
        ASSERT_EQ(skipped, 0);
}

static const char test_event[] =
        "{\"type\":\"order\",\"source\":\"shop\",\"specversion\":\"1.0\","
        "\"data\":{\"amount\":150,\"price\":19.99,\"ok\":true,\"no\":false,\"none\":null,\"tags\":[\"a\",\"b\"],"
        "\"nested\":{\"x\":{\"y\":\"z\"}},\"my-key\":\"v\",\"q\":\"a\\\"b\\\\c'd\",\"nul\":\"a\\u0000b\","
        "\"big\":12345678901234567890,\"neg\":-3,\"empty\":\"\"}}";

static bool eval(const char *expr, json_t *event) {
        _cleanup_(match_expr_freep) MatchExpr *e = NULL;
        _cleanup_free_ char *err = NULL;
        int r = match_expr_compile(expr, &e, &err);

        if (r < 0)
                fprintf(stderr, "  compile error in %s: %s\n", expr, strna(err));
        ASSERT_OK(r);
        return match_expr_eval(e, event);
}

TEST(match_eval) {
        static const struct {
                const char *expr;
                bool result;
        } cases[] = {
                { "event.type == \"order\"", true },
                { "event.type == 'order'", true },
                { "  event . type==\"order\"  ", true },
                { "event.type != \"order\"", false },
                { "event.type == \"Order\"", false },
                { "\"order\" == event.type", true },
                { "event.data.amount == 150", true },
                { "event.data.amount == 150.0", true },
                { "event.data.amount == 1.5e2", true },
                { "event.data.amount > 100", true },
                { "event.data.amount >= 150 && event.data.amount <= 150", true },
                { "event.data.amount < 100", false },
                { "event.data.amount > 149.5", true },
                { "event.data.price == 19.99", true },
                { "event.data.price < 20", true },
                { "event.data.neg == -3", true },
                { "event.data.neg < -2.5", true },
                { "event.data.big > 100", true }, /* beyond int64 in the event: a double */
                { "event.data.big == 12345678901234567890", true },
                { "event.data.ok == true", true },
                { "event.data.ok", true },
                { "!event.data.ok", false },
                { "event.data.no", false },
                { "!event.data.no", true },
                { "event.data.no == false", true },
                { "event.data.no < event.data.ok", true },
                { "event.data.none == null", true },
                { "event.data.none != null", false },
                { "event.data.missing == null", false },
                { "event.data.missing != null", true },
                { "event.data.missing != \"x\"", true },
                { "event.data.missing == \"x\"", false },
                { "event.data.missing < 1 || event.data.missing >= 1", false },
                { "event.data.missing", false },
                { "!event.data.missing", true },
                { "event.missing.deeper == 1", false },
                { "event.type.length == 5", false },
                { "event.data.tags.x == 1", false },
                { "event.data.nested.x.y == \"z\"", true },
                { "event.data.nested[\"x\"]['y'] == \"z\"", true },
                { "event.data[\"my-key\"] == \"v\"", true },
                { "event.data.tags[1] == \"b\"", true },
                { "event.data.tags[0] == 'a' && event.data.tags[ 1 ] != 'a'", true },
                { "event.data.tags[5] == \"b\"", false },
                { "event.data.tags[5] != \"b\"", true },
                { "event.data.q == \"a\\\"b\\\\c'd\"", true },
                { "event.data.q == 'a\"b\\\\c\\'d'", true },
                { "event.data.nul == \"a\"", false },
                { "event.data.empty == ''", true },
                { "event.data.amount == \"150\"", false },
                { "event.data.amount != \"150\"", true },
                { "event.data.amount > \"1\"", false },
                { "event.type < \"p\"", true },
                { "event.type > \"order\"", false },
                { "event.type >= \"order\"", true },
                { "event.type < \"orders\"", true },
                { "event.data.tags == event.data.tags", true },
                { "event.data.nested == event.data", false },
                { "event.type == \"order\" && event.source == \"shop\"", true },
                { "event.type == \"order\" && event.source == \"x\"", false },
                { "event.type == \"x\" || event.source == \"shop\"", true },
                { "event.type == \"x\" || event.source == \"y\"", false },
                { "!(event.type == \"x\")", true },
                { "!!(event.type == \"order\")", true },
                { "(event.type == \"a\" || event.type == \"order\") && !(event.source != \"shop\")", true },
                { "true", true },
                { "false", false },
                { "true || false && false", true },
                { "(true || false) && false", false },
                { "false && true || true", true },
                { "!true == false", true },
                { "!(true == false)", true },
                { "(event.type == \"order\") == true", true },
                { "null == null", true },
                { "1 == 1.0", true },
                { "-1 < 0", true },
                { "1e2 == 100", true },
                { "9223372036854775807 > 9223372036854775806", true },
                { "99999999999999999999 > 1", true },
                { "event == null", false },
                { "event.specversion == \"1.0\" && event.data.amount > 100 && event.data.ok && !event.data.no", true },
        };
        json_t *ev = event_from(test_event);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                bool r = eval(cases[i].expr, ev);
                if (r != cases[i].result) {
                        fprintf(stderr, "  %s: got %s\n", cases[i].expr, r ? "true" : "false");
                        ASSERT_TRUE(false);
                }
        }
        /* No event (not JSON): every path is missing. */
        ASSERT_TRUE(eval("event.a != 1", NULL));
        ASSERT_TRUE(!eval("event.a == 1", NULL));
        ASSERT_TRUE(!eval("event == null", NULL));
        ASSERT_TRUE(eval("true", NULL));
        ASSERT_TRUE(eval("", NULL));
        ASSERT_TRUE(match_expr_eval(NULL, ev));
        json_decref(ev);
}

TEST(match_compile_errors) {
        static const struct {
                const char *expr, *message;
        } cases[] = {
                { "event.type = \"x\"", "column 12: unexpected '=' (compare with '==')" },
                { "event.type == ", "column 15: expected a value, 'event.<field>' or '(', found the end" },
                { "foo.type == \"x\"", "column 1: unknown name 'foo' (only 'event' is defined)" },
                { "event.type == \"x", "column 15: unterminated string" },
                { "event.type == 'x\\", "column 15: unterminated string" },
                { "event.type.startsWith(\"x\")", "column 22: function calls are not supported" },
                { "event.type == \"x\" &", "column 19: unexpected '&' (use '&&' or '||')" },
                { "event.type == \"x\" | true", "column 19: unexpected '|' (use '&&' or '||')" },
                { "event.type == \"x\" and true", "column 19: unexpected 'a'" },
                { "(event.type == \"x\"", "column 19: expected ')' to match the '(' at column 1, found the end" },
                { "\"x\"", "column 1: expected a condition, found a string" },
                { "event.type == \"x\" && 42", "column 22: expected a condition, found a number" },
                { "null || true", "column 1: expected a condition, found null" },
                { "!'x'", "column 2: expected a condition, found a string" },
                { "event.a == 1 == 2", "column 14: unexpected comparison" },
                { "event.a == 1 != 2", "column 14: unexpected comparison" },
                { "event.a ! true", "column 9: unexpected '!'" },
                { "event.a in [\"x\"]", "column 9: unexpected 'i'" },
                { "event.", "column 7: expected a field name after '.', found the end" },
                { "event.1", "column 7: expected a field name after '.', found '1'" },
                { "event[x]", "column 7: expected a quoted field name or an index after '['" },
                { "event['x'", "column 10: expected ']', found the end" },
                { "event[99999999999999999999999]", "column 7: index out of range" },
                { "\"a\\qb\" == event.x", "column 3: unsupported escape in string" },
                { "event.a == 1.", "column 14: expected digits after '.'" },
                { "event.a == 1e", "column 14: expected digits in the exponent" },
                { "event.a == 12abc", "column 14: unexpected 'a' after a number" },
                { "event.a == 1.5.5", "column 15: unexpected '.' after a number" },
                { "event.a == -x", "column 12: expected a number" },
                { "event.a == 1e999", "column 12: number out of range" },
                { "event.a == \xc3\xa9", "column 12: expected a value, 'event.<field>' or '(', found byte 0xc3" },
                { "event.a == 1 && ", "column 17: expected a value" },
                { "()", "column 2: expected a value" },
                { "event.a === 1", "column 11: expected a value, 'event.<field>' or '(', found '='" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                MatchExpr *e = (MatchExpr *) 1;
                _cleanup_free_ char *err = NULL;
                int r = match_expr_compile(cases[i].expr, &e, &err);
                fprintf(stderr, "  %s -> %s\n", cases[i].expr, strna(err));
                ASSERT_ERROR(r, EINVAL);
                ASSERT_TRUE(e == (MatchExpr *) 1); /* untouched */
                ASSERT_NOT_NULL(err);
                ASSERT_TRUE(strneq(err, cases[i].message, strlen(cases[i].message)));
        }

        /* Limits: nesting and length. */
        char deep[200], *p = deep;
        for (int i = 0; i < 70; i++)
                *p++ = '(';
        strcpy(p, "true");
        MatchExpr *e = NULL;
        char *err = NULL;
        ASSERT_ERROR(match_expr_compile(deep, &e, &err), EINVAL);
        ASSERT_TRUE(strstr(err, "nested too deeply") != NULL);
        free(err);
        err = NULL;
        memset(deep, '!', 100);
        strcpy(deep + 100, "true");
        ASSERT_ERROR(match_expr_compile(deep, &e, &err), EINVAL);
        ASSERT_TRUE(strstr(err, "nested too deeply") != NULL);
        free(err);
        err = NULL;

        char *longexpr = malloc(MATCH_EXPR_MAX + 2);
        ASSERT_NOT_NULL(longexpr);
        memset(longexpr, ' ', MATCH_EXPR_MAX + 1);
        memcpy(longexpr, "true", 4);
        longexpr[MATCH_EXPR_MAX + 1] = '\0';
        ASSERT_ERROR(match_expr_compile(longexpr, &e, &err), EINVAL);
        ASSERT_STREQ(err, "longer than 4096 bytes");
        free(err);
        free(longexpr);
        ASSERT_ERROR(match_expr_compile("x", &e, NULL), EINVAL);

        /* Blank is always true: no tree. */
        e = (MatchExpr *) 1;
        ASSERT_OK(match_expr_compile(" \t\n", &e, NULL));
        ASSERT_NULL(e);
        e = (MatchExpr *) 1;
        ASSERT_OK(match_expr_compile(NULL, &e, NULL));
        ASSERT_NULL(e);

        /* A long chain of && is fine (no nesting limit applies to it). */
        _cleanup_free_ char *chain = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&chain, &n);
        ASSERT_NOT_NULL(f);
        for (int i = 0; i < 500; i++)
                fputs(i ? " && event.type != \"x\"" : "event.type != \"x\"", f);
        fclose(f);
        ASSERT_TRUE(strlen(chain) > MATCH_EXPR_MAX); /* ... but the length limit does */
        chain[MATCH_EXPR_MAX - 100] = '\0';
        *strrchr(chain, '&') = '\0';
        chain[strlen(chain) - 2] = '\0';
        ASSERT_OK(match_expr_compile(chain, &e, NULL));
        json_t *ev = event_from(test_event);
        ASSERT_TRUE(match_expr_eval(e, ev));
        json_decref(ev);
        match_expr_free(e);
}

TEST(route_order) {
        static const char body[] =
                "[{\"pubsubname\":\"p\",\"topic\":\"t\",\"routes\":{\"rules\":["
                "{\"match\":\"event.data.n > 10\",\"path\":\"/gt10\"},"
                "{\"match\":\"event.data.n > 5\",\"path\":\"/gt5\"},"
                "{\"match\":\"event.data.n > 0 || event.data.n == null\",\"path\":\"/pos-or-null\"}],"
                "\"default\":\"/default\"}}]";
        static const struct {
                const char *event, *path;
        } cases[] = {
                { "{\"data\":{\"n\":11}}", "/gt10" },
                { "{\"data\":{\"n\":6}}", "/gt5" },
                { "{\"data\":{\"n\":1}}", "/pos-or-null" },
                { "{\"data\":{\"n\":null}}", "/pos-or-null" },
                { "{\"data\":{\"n\":-1}}", "/default" },
                { "{\"data\":{}}", "/default" },
                { "{\"data\":\"text\"}", "/default" },
                { "{}", "/default" },
        };
        Subscription **l = NULL;
        size_t n = 0, skipped = 0;

        ASSERT_OK(subscription_parse_programmatic(body, strlen(body), &l, &n, &skipped, NULL));
        ASSERT_EQ(n, 1);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_t *ev = event_from(cases[i].event);
                ASSERT_STREQ(subscription_route(l[0], ev), cases[i].path);
                json_decref(ev);
        }
        ASSERT_STREQ(subscription_route(l[0], NULL), "/default");
        subscription_free_many(l, n);
}
