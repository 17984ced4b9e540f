/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for core/component.c: parsing Dapr Component YAML (every field, the
 * multi-document rules, every error path with its line and field), and the
 * helpers on the parsed model (scope, equality, lookup, refcounting).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/component.h"
#include "core/conferr.h"
#include "util/strv.h"
#include "tests.h"

#define RESULT_MAX 16

/* Everything one component_parse() call handed out: components kept, errors deep-copied. */
typedef struct Result {
        int r;
        Component *found[RESULT_MAX];
        size_t n_found;
        ConfError errors[RESULT_MAX];
        size_t n_errors;
} Result;

static void on_found(Component *c, void *userdata) {
        Result *res = userdata;
        if (res->n_found >= RESULT_MAX) {
                component_unref(c);
                return;
        }
        res->found[res->n_found++] = c;
}

static void on_error(const ConfError *e, void *userdata) {
        Result *res = userdata;
        if (res->n_errors >= RESULT_MAX)
                return;
        conf_error_set(&res->errors[res->n_errors++], e->file, e->line, e->field, "%s",
                       e->message ?: "(no message)");
}

static void result_done(Result *res) {
        for (size_t i = 0; i < res->n_found; i++)
                component_unref(res->found[i]);
        for (size_t i = 0; i < res->n_errors; i++)
                conf_error_done(&res->errors[i]);
        *res = (Result){};
}

static void parse(const char *text, Result *res) {
        *res = (Result){};
        res->r = component_parse("components/test.yaml", text, strlen(text), on_found, on_error, res);
        for (size_t i = 0; i < res->n_errors; i++) {
                _cleanup_free_ char *s = conf_error_format(&res->errors[i]);
                fprintf(stderr, "  error: %s\n", s);
        }
}

/* Parses text, which must hold exactly one bad Component: checks line, field and message. */
static void expect_error(const char *text, unsigned line, const char *field, const char *needle) {
        Result res;

        parse(text, &res);
        ASSERT_EQ(res.r, 0);
        ASSERT_EQ(res.n_found, 0);
        ASSERT_EQ(res.n_errors, 1);
        ASSERT_STREQ(res.errors[0].file, "components/test.yaml");
        ASSERT_EQ(res.errors[0].line, line);
        if (field)
                ASSERT_STREQ(res.errors[0].field, field);
        else
                ASSERT_NULL(res.errors[0].field);
        ASSERT_NOT_NULL(res.errors[0].message);
        if (needle && !strstr(res.errors[0].message, needle)) {
                fprintf(stderr, "message \"%s\" does not contain \"%s\"\n", res.errors[0].message, needle);
                ASSERT_TRUE(false);
        }
        result_done(&res);
}

/* Document prefixes: HEAD is lines 1-2, HEAD_X adds line 3, SPEC_FLOW line 4, SPEC_BLOCK lines 4-5. */
#define HEAD "apiVersion: dapr.io/v1alpha1\nkind: Component\n"
#define HEAD_X HEAD "metadata: {name: x}\n"
#define SPEC_FLOW HEAD_X "spec: {type: state.redis}\n"
#define SPEC_BLOCK HEAD_X "spec:\n  type: state.redis\n"

static const char full_component[] =
        "apiVersion: dapr.io/v1alpha1\n"            /* 1 */
        "kind: Component\n"                         /* 2 */
        "metadata:\n"                               /* 3 */
        "  name: statestore\n"                      /* 4 */
        "  namespace: prod\n"                       /* 5 */
        "spec:\n"                                   /* 6 */
        "  type: state.redis\n"                     /* 7 */
        "  version: v2\n"                           /* 8 */
        "  initTimeout: 1m30s\n"                    /* 9 */
        "  ignoreErrors: true\n"                    /* 10 */
        "  metadata:\n"                             /* 11 */
        "  - name: redisHost\n"                     /* 12 */
        "    value: localhost:6379\n"               /* 13 */
        "  - name: redisPassword\n"                 /* 14 */
        "    secretKeyRef:\n"                       /* 15 */
        "      name: redis-secret\n"                /* 16 */
        "      key: password\n"                     /* 17 */
        "  - name: other\n"                         /* 18 */
        "    secretKeyRef:\n"                       /* 19 */
        "      name: other-secret\n"                /* 20 */
        "  - name: user\n"                          /* 21 */
        "    envRef: REDIS_USER\n"                  /* 22 */
        "  - name: maxRetries\n"                    /* 23 */
        "    value: 5\n"                            /* 24 */
        "  - name: enableTLS\n"                     /* 25 */
        "    value: false\n"                        /* 26 */
        "  - name: ratio\n"                         /* 27 */
        "    value: 1.5\n"                          /* 28 */
        "  - name: quoted\n"                        /* 29 */
        "    value: \"with: colon # and hash\"\n"   /* 30 */
        "  - name: empty\n"                         /* 31 */
        "    value: \"\"\n"                         /* 32 */
        "auth:\n"                                   /* 33 */
        "  secretStore: vault\n"                    /* 34 */
        "scopes:\n"                                 /* 35 */
        "  - app1\n"                                /* 36 */
        "  - app2\n";                               /* 37 */

TEST(full_component) {
        Result res;
        Component *c;

        parse(full_component, &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_EQ(res.n_errors, 0);
        ASSERT_EQ(res.n_found, 1);
        c = res.found[0];
        ASSERT_EQ(c->n_ref, 1);
        ASSERT_STREQ(c->name, "statestore");
        ASSERT_STREQ(c->namespace_, "prod");
        ASSERT_STREQ(c->type, "state.redis");
        ASSERT_STREQ(component_category(c), "state");
        ASSERT_STREQ(c->version, "v2");
        ASSERT_EQ(c->init_timeout_usec, 90000000);
        ASSERT_TRUE(c->ignore_errors);
        ASSERT_STREQ(c->secret_store, "vault");
        ASSERT_STREQ(c->file, "components/test.yaml");
        ASSERT_EQ(c->line, 1);

        ASSERT_EQ(c->n_items, 9);
        ASSERT_STREQ(c->items[0].name, "redisHost");
        ASSERT_STREQ(c->items[0].value, "localhost:6379");
        ASSERT_NULL(c->items[0].secret_name);
        ASSERT_NULL(c->items[0].env_ref);
        ASSERT_EQ(c->items[0].line, 12);

        ASSERT_STREQ(c->items[1].name, "redisPassword");
        ASSERT_NULL(c->items[1].value);
        ASSERT_STREQ(c->items[1].secret_name, "redis-secret");
        ASSERT_STREQ(c->items[1].secret_key, "password");
        ASSERT_EQ(c->items[1].line, 14);

        /* secretKeyRef.key defaults to the secret's name. */
        ASSERT_STREQ(c->items[2].secret_name, "other-secret");
        ASSERT_STREQ(c->items[2].secret_key, "other-secret");

        ASSERT_STREQ(c->items[3].name, "user");
        ASSERT_NULL(c->items[3].value);
        ASSERT_STREQ(c->items[3].env_ref, "REDIS_USER");

        /* Dapr stringifies scalars as written. */
        ASSERT_STREQ(c->items[4].value, "5");
        ASSERT_STREQ(c->items[5].value, "false");
        ASSERT_STREQ(c->items[6].value, "1.5");
        ASSERT_STREQ(c->items[7].value, "with: colon # and hash");
        ASSERT_STREQ(c->items[8].value, "");
        ASSERT_EQ(c->items[8].line, 31);

        ASSERT_EQ(strv_length(c->scopes), 2);
        ASSERT_STREQ(c->scopes[0], "app1");
        ASSERT_STREQ(c->scopes[1], "app2");
        result_done(&res);
}

TEST(minimal_component_defaults) {
        Result res;
        Component *c;

        parse(HEAD "metadata:\n  name: m\nspec:\n  type: pubsub.in-memory\n", &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_EQ(res.n_errors, 0);
        c = res.found[0];
        ASSERT_STREQ(c->version, "v1");
        ASSERT_NULL(c->namespace_);
        ASSERT_NULL(c->secret_store);
        ASSERT_EQ(c->init_timeout_usec, 5000000);
        ASSERT_TRUE(!c->ignore_errors);
        ASSERT_EQ(c->n_items, 0);
        ASSERT_NULL(c->scopes);
        ASSERT_STREQ(component_category(c), "pubsub");
        result_done(&res);

        /* Empty "metadata:" and "scopes:" count as absent; flow style works. */
        parse(HEAD "metadata: {name: m}\nspec: {type: bindings.cron, metadata: }\nscopes:\n", &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_EQ(res.found[0]->n_items, 0);
        ASSERT_NULL(res.found[0]->scopes);
        result_done(&res);

        /* "scopes: []" means every app, too. */
        parse(HEAD "metadata: {name: m}\nspec: {type: bindings.cron, metadata: []}\nscopes: []\n", &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_EQ(strv_length(res.found[0]->scopes), 0);
        ASSERT_TRUE(component_in_scope(res.found[0], "anyone"));
        result_done(&res);
}

TEST(ignore_errors_and_timeouts) {
        Result res;

        parse(HEAD_X "spec: {type: lock.redis, ignoreErrors: \"yes\", initTimeout: 500ms}\n", &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_TRUE(res.found[0]->ignore_errors);
        ASSERT_EQ(res.found[0]->init_timeout_usec, 500000);
        result_done(&res);
        parse(HEAD_X "spec: {type: lock.redis, ignoreErrors: false, initTimeout: 10}\n", &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_TRUE(!res.found[0]->ignore_errors);
        ASSERT_EQ(res.found[0]->init_timeout_usec, 10000000);
        result_done(&res);
}

TEST(multi_document) {
        static const char text[] =
                "# leading comment\n"                  /* 1 */
                "---\n"                                /* 2 */
                HEAD                                   /* 3, 4 */
                "metadata:\n"                          /* 5 */
                "  name: good1\n"                      /* 6 */
                "spec:\n"                              /* 7 */
                "  type: state.in-memory\n"            /* 8 */
                "---\n"                                /* 9 */
                HEAD                                   /* 10, 11 */
                "metadata:\n"                          /* 12 */
                "  name: bad\n"                        /* 13 */
                "spec:\n"                              /* 14 */
                "  type: nosuch.thing\n"               /* 15 */
                "---\n"                                /* 16 */
                "apiVersion: dapr.io/v2alpha1\n"       /* 17 */
                "kind: Subscription\n"                 /* 18 */
                "metadata:\n"                          /* 19 */
                "  name: sub\n"                        /* 20 */
                "spec:\n"                              /* 21 */
                "  topic: orders\n"                    /* 22 */
                "---\n"                                /* 23 */
                "apiVersion: dapr.io/v1alpha1\n"       /* 24 */
                "kind: Configuration\n"                /* 25 */
                "metadata: {name: cfg}\n"              /* 26 */
                "---\n"                                /* 27 */
                HEAD                                   /* 28, 29 */
                "metadata:\n"                          /* 30 */
                "  name: good2\n"                      /* 31 */
                "spec:\n"                              /* 32 */
                "  type: pubsub.redis\n"               /* 33 */
                "  metadata:\n"                        /* 34 */
                "  - {name: redisHost, value: x}\n";   /* 35 */
        Result res;

        parse(text, &res);
        ASSERT_EQ(res.r, 2);
        ASSERT_EQ(res.n_found, 2);
        ASSERT_STREQ(res.found[0]->name, "good1");
        ASSERT_EQ(res.found[0]->line, 3);
        ASSERT_STREQ(res.found[1]->name, "good2");
        ASSERT_EQ(res.found[1]->line, 28);
        ASSERT_EQ(res.found[1]->n_items, 1);
        ASSERT_EQ(res.found[1]->items[0].line, 35);
        ASSERT_EQ(res.n_errors, 1);
        ASSERT_EQ(res.errors[0].line, 15);
        ASSERT_STREQ(res.errors[0].field, "spec.type");
        ASSERT_TRUE(strstr(res.errors[0].message, "nosuch.thing") != NULL);
        result_done(&res);
}

TEST(other_kinds_skipped) {
        Result res;

        parse("apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: r}\nspec: {}\n", &res);
        ASSERT_EQ(res.r, 0);
        ASSERT_EQ(res.n_found, 0);
        ASSERT_EQ(res.n_errors, 0);
        result_done(&res);

        /* kind is case-sensitive, as in Kubernetes: "component" is another kind. */
        parse("apiVersion: dapr.io/v1alpha1\nkind: component\nmetadata: {name: r}\n", &res);
        ASSERT_EQ(res.r, 0);
        ASSERT_EQ(res.n_errors, 0);
        result_done(&res);
}

TEST(empty_inputs) {
        Result res;

        parse("", &res);
        ASSERT_EQ(res.r, 0);
        ASSERT_EQ(res.n_errors, 0);
        result_done(&res);
        parse("# only a comment\n\n", &res);
        ASSERT_EQ(res.r, 0);
        ASSERT_EQ(res.n_errors, 0);
        result_done(&res);
}

TEST(trailing_document_separator) {
        Result res;

        /* Generated manifests often end in "---" or hold an empty document; Dapr skips those. */
        parse(HEAD "metadata: {name: m}\nspec: {type: state.redis}\n---\n", &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_EQ(res.n_errors, 0);
        result_done(&res);
        parse("---\n---\n" HEAD "metadata: {name: m}\nspec: {type: state.redis}\n", &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_EQ(res.n_errors, 0);
        result_done(&res);
}

TEST(document_shape_errors) {
        expect_error("- a\n- b\n", 1, NULL, "mapping document");
        expect_error("just a string\n", 1, NULL, "mapping document");
        expect_error("apiVersion: dapr.io/v1alpha1\nmetadata: {name: x}\n", 1, "kind", "missing");
        expect_error("apiVersion: dapr.io/v1alpha1\nkind: [Component]\n", 1, "kind", "missing");
}

TEST(api_version_errors) {
        expect_error("kind: Component\napiVersion: dapr.io/v2\nmetadata: {name: x}\nspec: {type: state.redis}\n",
                     2,
                     "apiVersion", "dapr.io/v2");
        expect_error("kind: Component\nmetadata: {name: x}\nspec: {type: state.redis}\n", 1, "apiVersion",
                     "missing");
        expect_error("kind: Component\napiVersion: {a: b}\n", 2, "apiVersion", "string");
}

TEST(metadata_errors) {
        expect_error(HEAD "spec: {type: state.redis}\n", 1, "metadata", "missing");
        expect_error(HEAD "metadata: x\nspec: {type: state.redis}\n", 3, "metadata", "missing");
        expect_error(HEAD "metadata:\n  namespace: n\nspec: {type: state.redis}\n", 4, "metadata.name",
                     "missing");
        expect_error(HEAD "metadata:\n  name: bad name!\nspec: {type: state.redis}\n", 4, "metadata.name",
                     "bad name!");
        expect_error(HEAD "metadata:\n  name: -lead\nspec: {type: state.redis}\n", 4, "metadata.name", NULL);
        expect_error(HEAD "metadata:\n  name: \"\"\nspec: {type: state.redis}\n", 4, "metadata.name", NULL);
        expect_error(HEAD "metadata:\n  name: [a]\nspec: {type: state.redis}\n", 4, "metadata.name",
                     "string");
        expect_error(HEAD "metadata:\n  name: n\n  namespace: {a: b}\nspec: {type: state.redis}\n", 5,
                     "metadata.namespace", "string");
}

TEST(spec_type_errors) {
        expect_error(HEAD_X, 1, "spec", "missing");
        expect_error(HEAD_X "spec: [a]\n", 4, "spec", "missing");
        expect_error(HEAD_X "spec:\n  version: v1\n", 5, "spec.type", "missing");
        expect_error(HEAD_X "spec:\n  type: foo.bar\n", 5, "spec.type", "foo.bar");
        expect_error(HEAD_X "spec:\n  type: state\n", 5, "spec.type", NULL);
        expect_error(HEAD_X "spec:\n  type: state.\n", 5, "spec.type", NULL);
        expect_error(HEAD_X "spec:\n  type: .redis\n", 5, "spec.type", NULL);
        expect_error(HEAD_X "spec:\n  type: State.redis\n", 5, "spec.type", NULL);
        expect_error(HEAD_X "spec:\n  type: statestore.redis\n", 5, "spec.type", NULL);
        expect_error(HEAD_X "spec:\n  type: [state.redis]\n", 5, "spec.type", "string");
}

TEST(known_categories) {
        static const char *const types[] = {
                "state.redis",         "pubsub.kafka",           "bindings.cron",
                "secretstores.local.file", "configuration.redis", "lock.redis",
                "middleware.http.oauth2", "nameresolution.mdns",  "crypto.jwks",
                "workflow.dapr",       "conversation.openai",
        };
        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                char text[256];
                Result res;
                snprintf(text, sizeof text, HEAD_X "spec: {type: %s}\n", types[i]);
                parse(text, &res);
                ASSERT_EQ(res.r, 1);
                ASSERT_STREQ(res.found[0]->type, types[i]);
                ASSERT_NOT_NULL(component_category(res.found[0]));
                ASSERT_TRUE(strncmp(types[i], component_category(res.found[0]),
                                    strlen(component_category(res.found[0]))) == 0);
                result_done(&res);
        }
}

TEST(version_and_timeout_errors) {
        expect_error(SPEC_BLOCK "  version: 2\n", 6, "spec.version", "'2'");
        expect_error(SPEC_BLOCK "  version: v\n", 6, "spec.version", NULL);
        expect_error(SPEC_BLOCK "  version: v1beta\n", 6, "spec.version",
                     NULL);
        expect_error(SPEC_BLOCK "  version: [v1]\n", 6, "spec.version",
                     "string");
        expect_error(SPEC_BLOCK "  initTimeout: soon\n", 6,
                     "spec.initTimeout", "soon");
        expect_error(SPEC_BLOCK "  initTimeout: -5s\n", 6,
                     "spec.initTimeout", NULL);
        expect_error(SPEC_BLOCK "  ignoreErrors: maybe\n", 6,
                     "spec.ignoreErrors", "maybe");
}

TEST(item_errors) {
#define SPEC SPEC_BLOCK "  metadata:\n"
        /* line 6 is "  metadata:", items start on line 7 */
        expect_error(SPEC "  - name: a\n    value: [1, 2]\n", 8, "spec.metadata[].value", "scalar");
        expect_error(SPEC "  - name: a\n    value:\n      k: v\n", 9, "spec.metadata[].value", "scalar");
        expect_error(SPEC "  - name: a\n    value: x\n    secretKeyRef: {name: s}\n", 7,
                     "spec.metadata[].value", "exactly one");
        expect_error(SPEC "  - name: a\n    value: x\n    envRef: E\n", 7, "spec.metadata[].value",
                     "exactly one");
        expect_error(SPEC "  - name: a\n", 7, "spec.metadata[].value", "exactly one");
        expect_error(SPEC "  - name: a\n    value: 1\n"
                          "  - name: b\n    value: 2\n"
                          "  - name: a\n    value: 3\n", /* line 11 */
                     11, "spec.metadata[].name", "duplicate");
        expect_error(SPEC "  - value: 1\n", 7, "spec.metadata[].name", "missing");
        expect_error(SPEC "  - name: \"\"\n    value: 1\n", 7, "spec.metadata[].name", "empty");
        expect_error(SPEC "  - name: [a]\n    value: 1\n", 7, "spec.metadata[].name", "string");
        expect_error(SPEC "  - just-a-string\n", 7, "spec.metadata", "mapping");
        expect_error(SPEC "    k: v\n", 7, "spec.metadata", "list");
        expect_error(SPEC_BLOCK "  metadata: text\n", 6, "spec.metadata",
                     "list");
        expect_error(SPEC "  - name: a\n    envRef: DAPR_API_TOKEN\n", 7, "spec.metadata[].envRef",
                     "DAPR_API_TOKEN");
        expect_error(SPEC "  - name: a\n    envRef: DAPR_HTTP_PORT\n", 7, "spec.metadata[].envRef", NULL);
        expect_error(SPEC "  - name: a\n    envRef: APP_API_TOKEN\n", 7, "spec.metadata[].envRef", NULL);
        expect_error(SPEC "  - name: a\n    envRef: [X]\n", 8, "spec.metadata[].envRef", "string");
        expect_error(SPEC "  - name: a\n    secretKeyRef: s\n", 8, "spec.metadata[].secretKeyRef", "name");
        expect_error(SPEC "  - name: a\n    secretKeyRef:\n      key: k\n", 9,
                     "spec.metadata[].secretKeyRef.name", "missing");
        expect_error(SPEC "  - name: a\n    secretKeyRef:\n      name: \"\"\n", 9,
                     "spec.metadata[].secretKeyRef.name", "empty");
        expect_error(SPEC "  - name: a\n    secretKeyRef:\n      name: s\n      key: [k]\n", 10,
                     "spec.metadata[].secretKeyRef.key", "string");
#undef SPEC
}

TEST(item_env_ref_allowed) {
        Result res;

        /* Only DAPR_* and APP_API_TOKEN are reserved; a prefix match must not catch "DAPRX". */
        parse(SPEC_BLOCK "  metadata:\n"
                   "  - {name: a, envRef: DAPRX_HOST}\n  - {name: b, envRef: MY_APP_API_TOKEN}\n",
              &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_STREQ(res.found[0]->items[0].env_ref, "DAPRX_HOST");
        ASSERT_STREQ(res.found[0]->items[1].env_ref, "MY_APP_API_TOKEN");
        result_done(&res);
}

TEST(auth_and_scopes_errors) {
        expect_error(SPEC_FLOW "auth: vault\n", 5, "auth", "secretStore");
        expect_error(SPEC_FLOW "auth:\n  secretStore: [v]\n", 6,
                     "auth.secretStore", "string");
        expect_error(SPEC_FLOW "scopes: app1\n", 5, "scopes", "list");
        expect_error(SPEC_FLOW "scopes: {app1: true}\n", 5, "scopes",
                     "list");
        expect_error(SPEC_FLOW "scopes:\n  - ok\n  - not ok\n", 7, "scopes",
                     "not ok");
        expect_error(SPEC_FLOW "scopes:\n  - [nested]\n", 6, "scopes", NULL);
}

TEST(yaml_syntax_error) {
        Result res;

        /* libyaml reports the line where it noticed: the unclosed "[" on line 4 fails at "spec:". */
        expect_error(HEAD "metadata:\n  name: [unclosed\nspec: {type: state.redis}\n", 5, NULL,
                     "YAML syntax error");
        expect_error("a: b\n c: d\n  - e\n", 2, NULL, "YAML syntax error");
        expect_error("key: \"unterminated\n", 2, NULL, "YAML syntax error");
        expect_error("\tkey: tab-indented\n", 1, NULL, "YAML syntax error");

        /* A syntax error stops the file there, but what came before is kept. */
        parse(HEAD "metadata: {name: first}\nspec: {type: state.redis}\n"     /* 1-4 */
                   "---\n"                                                   /* 5 */
                   HEAD "metadata: {name: [oops}\n"                          /* 6-8 */
                   "---\n"
                   HEAD "metadata: {name: never}\nspec: {type: state.redis}\n",
              &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_EQ(res.n_found, 1);
        ASSERT_STREQ(res.found[0]->name, "first");
        ASSERT_EQ(res.n_errors, 1);
        ASSERT_EQ(res.errors[0].line, 8);
        ASSERT_NULL(res.errors[0].field);
        result_done(&res);
}

TEST(yaml_features) {
        Result res;

        /* Anchors and aliases resolve; quoting and block scalars give plain strings. */
        parse(HEAD_X
                   "spec:\n"
                   "  type: state.redis\n"
                   "  metadata:\n"
                   "  - {name: a, value: &v shared}\n"
                   "  - {name: b, value: *v}\n"
                   "  - name: c\n"
                   "    value: |\n"
                   "      line1\n"
                   "      line2\n"
                   "  - {name: d, value: 'single ''quoted'''}\n"
                   "  - {name: e, value: null}\n"
                   "  - {name: f, value: 0x1F}\n",
              &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_EQ(res.found[0]->n_items, 6);
        ASSERT_STREQ(component_get_string(res.found[0], "a"), "shared");
        ASSERT_STREQ(component_get_string(res.found[0], "b"), "shared");
        ASSERT_STREQ(component_get_string(res.found[0], "c"), "line1\nline2\n");
        ASSERT_STREQ(component_get_string(res.found[0], "d"), "single 'quoted'");
        ASSERT_STREQ(component_get_string(res.found[0], "e"), "null");
        ASSERT_STREQ(component_get_string(res.found[0], "f"), "0x1F");
        result_done(&res);
}

TEST(in_scope) {
        Result res;

        parse(SPEC_FLOW "scopes: [app1, app2]\n", &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_TRUE(component_in_scope(res.found[0], "app1"));
        ASSERT_TRUE(component_in_scope(res.found[0], "app2"));
        ASSERT_TRUE(!component_in_scope(res.found[0], "app3"));
        ASSERT_TRUE(!component_in_scope(res.found[0], "App1"));
        ASSERT_TRUE(!component_in_scope(res.found[0], "app"));
        ASSERT_TRUE(!component_in_scope(res.found[0], NULL));
        result_done(&res);

        parse(SPEC_FLOW, &res);
        ASSERT_TRUE(component_in_scope(res.found[0], "anything"));
        ASSERT_TRUE(component_in_scope(res.found[0], NULL));
        result_done(&res);
}

/* Parses one good component; the caller unrefs it. */
static Component *parse_one(const char *text) {
        Result res;
        parse(text, &res);
        ASSERT_EQ(res.r, 1);
        ASSERT_EQ(res.n_found, 1);
        return res.found[0];
}

TEST(equal) {
        _cleanup_(component_unrefp) Component *a = parse_one(full_component);
        static const char reformatted[] =
                "# the same component in flow style, with quoted and otherwise spelled values\n\n" HEAD
                "metadata: {name: statestore, namespace: prod}\n"
                "spec:\n"
                "  type: state.redis\n"
                "  version: v2\n"
                "  initTimeout: 90s\n"
                "  ignoreErrors: \"on\"\n"
                "  metadata:\n"
                "  - {name: redisHost, value: \"localhost:6379\"}\n"
                "  - {name: redisPassword, secretKeyRef: {name: redis-secret, key: password}}\n"
                "  - {name: other, secretKeyRef: {name: other-secret}}\n"
                "  - {name: user, envRef: REDIS_USER}\n"
                "  - {name: maxRetries, value: \"5\"}\n"
                "  - {name: enableTLS, value: \"false\"}\n"
                "  - {name: ratio, value: \"1.5\"}\n"
                "  - {name: quoted, value: \"with: colon # and hash\"}\n"
                "  - {name: empty, value: ''}\n"
                "auth: {secretStore: vault}\n"
                "scopes: [app1, app2]\n";
        _cleanup_(component_unrefp) Component *b = parse_one(reformatted);
        ASSERT_TRUE(component_equal(a, b));
        ASSERT_TRUE(component_equal(b, a));
        ASSERT_TRUE(component_equal(a, a));

        static const char *const variants[] = {
                SPEC_FLOW,
                HEAD "metadata: {name: y}\nspec: {type: state.redis}\n",
                HEAD "metadata: {name: x, namespace: n}\nspec: {type: state.redis}\n",
                HEAD_X "spec: {type: state.postgresql}\n",
                HEAD_X "spec: {type: state.redis, version: v2}\n",
                HEAD_X "spec: {type: state.redis, initTimeout: 6s}\n",
                HEAD_X "spec: {type: state.redis, ignoreErrors: true}\n",
                SPEC_FLOW "auth: {secretStore: s}\n",
                SPEC_FLOW "scopes: [a]\n",
                SPEC_FLOW "scopes: [b]\n",
                HEAD_X "spec: {type: state.redis, metadata: [{name: k, value: v}]}\n",
                HEAD_X "spec: {type: state.redis, metadata: [{name: k, value: w}]}\n",
                HEAD_X "spec: {type: state.redis, metadata: [{name: k, envRef: v}]}\n",
                HEAD_X "spec: {type: state.redis, metadata: [{name: k, secretKeyRef: {name: v}}]}\n",
                HEAD_X "spec: {type: state.redis, metadata: [{name: k, secretKeyRef: {name: v, key: z}}]}"
                       "\n",
                HEAD_X "spec: {type: state.redis, metadata: [{name: j, value: v}]}\n",
        };
        Component *v[ELEMENTSOF(variants)];
        for (size_t i = 0; i < ELEMENTSOF(variants); i++)
                v[i] = parse_one(variants[i]);
        for (size_t i = 0; i < ELEMENTSOF(variants); i++)
                for (size_t j = 0; j < ELEMENTSOF(variants); j++) {
                        if (component_equal(v[i], v[j]) != (i == j))
                                fprintf(stderr, "variants %zu and %zu\n", i, j);
                        ASSERT_EQ(component_equal(v[i], v[j]), i == j);
                }
        for (size_t i = 0; i < ELEMENTSOF(variants); i++)
                component_unref(v[i]);

        /* The source line is not part of equality: moving a component within its file is no change. */
        _cleanup_(component_unrefp) Component *c = parse_one(SPEC_FLOW);
        _cleanup_(component_unrefp) Component *d = parse_one("\n\n" SPEC_FLOW);
        ASSERT_TRUE(c->line != d->line);
        ASSERT_TRUE(component_equal(c, d));
}

TEST(get_string) {
        _cleanup_(component_unrefp) Component *c = parse_one(full_component);

        ASSERT_STREQ(component_get_string(c, "redisHost"), "localhost:6379");
        ASSERT_STREQ(component_get_string(c, "maxRetries"), "5");
        ASSERT_STREQ(component_get_string(c, "empty"), "");
        ASSERT_NULL(component_get_string(c, "redisPassword")); /* secretKeyRef */
        ASSERT_NULL(component_get_string(c, "user"));          /* envRef */
        ASSERT_NULL(component_get_string(c, "nosuch"));
        /* as dapr/kit's DecodeMetadata (mapstructure) matches names: without regard to case */
        ASSERT_STREQ(component_get_string(c, "redishost"), "localhost:6379");
}

TEST(refcounting) {
        Component *c = parse_one(full_component);

        ASSERT_EQ(c->n_ref, 1);
        ASSERT_TRUE(component_ref(c) == c);
        ASSERT_EQ(c->n_ref, 2);
        ASSERT_NULL(component_unref(c));
        ASSERT_EQ(c->n_ref, 1); /* still alive: ASan would flag this read otherwise */
        ASSERT_STREQ(c->name, "statestore");
        ASSERT_NULL(component_unref(c)); /* freed; LeakSanitizer checks nothing is left */

        ASSERT_NULL(component_ref(NULL));
        ASSERT_NULL(component_unref(NULL));
}

/* Each component must be handed out with one reference that the callee owns. */
static void keep_one_more(Component *c, void *userdata) {
        Component **slot = userdata;
        ASSERT_EQ(c->n_ref, 1);
        *slot = c;
}

static void no_error(const ConfError *e, void *userdata) {
        ASSERT_TRUE(false);
}

TEST(found_callback_owns_reference) {
        Component *c = NULL;
        const char *t = SPEC_FLOW;

        ASSERT_EQ(component_parse(NULL, t, strlen(t), keep_one_more, no_error, &c), 1);
        ASSERT_NOT_NULL(c);
        ASSERT_NULL(c->file);
        component_unref(c);
}

TEST(not_nul_terminated) {
        Component *c = NULL;
        const char t[] = SPEC_FLOW "scopes: [a]GARBAGE[";

        /* Only len bytes are parsed; the bytes after would be a syntax error. */
        ASSERT_EQ(component_parse("f", t, strlen(t) - strlen("GARBAGE["), keep_one_more, no_error, &c), 1);
        ASSERT_STREQ(c->scopes[0], "a");
        component_unref(c);
}
