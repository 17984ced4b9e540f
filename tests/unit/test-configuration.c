/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for core/configuration.c: parsing Dapr Configuration YAML (every
 * field, the multi-document rules, every error path with its line and
 * field), service-invocation access control (acl_evaluate) and secret
 * scopes (secret_scope_check).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conferr.h"
#include "core/configuration.h"
#include "util/strv.h"
#include "tests.h"

#define FILE_NAME "config/test.yaml"

static Configuration *parse_ok(const char *text) {
        Configuration *c = NULL;
        ConfError e = {};
        int r = configuration_parse(FILE_NAME, text, strlen(text), &c, &e);
        if (r < 0) {
                _cleanup_free_ char *s = conf_error_format(&e);
                fprintf(stderr, "  error: %s\n", strna(s));
        }
        ASSERT_OK(r);
        ASSERT_NULL(e.message);
        conf_error_done(&e);
        return c;
}

static void expect_error(const char *text, unsigned line, const char *field, const char *needle) {
        Configuration *c = NULL;
        ConfError e = {};
        int r = configuration_parse(FILE_NAME, text, strlen(text), &c, &e);
        _cleanup_free_ char *s = conf_error_format(&e);

        fprintf(stderr, "  expected error: %s\n", strna(s));
        ASSERT_ERROR(r, EINVAL);
        ASSERT_NULL(c);
        ASSERT_STREQ(e.file, FILE_NAME);
        ASSERT_EQ(e.line, line);
        if (field)
                ASSERT_STREQ(e.field, field);
        else
                ASSERT_NULL(e.field);
        ASSERT_NOT_NULL(e.message);
        if (needle && !strstr(e.message, needle)) {
                fprintf(stderr, "message \"%s\" does not contain \"%s\"\n", e.message, needle);
                ASSERT_TRUE(false);
        }
        conf_error_done(&e);
}

static const char full_config[] =
        "apiVersion: dapr.io/v1alpha1\n"                    /* 1 */
        "kind: Configuration\n"                             /* 2 */
        "metadata:\n"                                       /* 3 */
        "  name: appconfig\n"                               /* 4 */
        "  namespace: prod\n"                               /* 5 */
        "spec:\n"                                           /* 6 */
        "  tracing:\n"                                      /* 7 */
        "    samplingRate: \"0.5\"\n"                       /* 8 */
        "    stdout: true\n"                                /* 9 */
        "    zipkin: {endpointAddress: \"http://localhost:9411/api/v2/spans\"}\n" /* 10 */
        "    otel: {endpointAddress: \"localhost:4317\", isSecure: true, protocol: grpc}\n" /* 11 */
        "  metric: {enabled: true}\n"                       /* 12: ignored */
        "  httpPipeline: {handlers: [{name: up, type: middleware.http.uppercase}]}\n" /* 13 */
        "  secrets:\n"                                      /* 14 */
        "    scopes:\n"                                     /* 15 */
        "    - storeName: localsecretstore\n"               /* 16 */
        "      defaultAccess: deny\n"                       /* 17 */
        "      allowedSecrets: [\"a\", \"b\"]\n"            /* 18 */
        "      deniedSecrets: [\"c\"]\n"                    /* 19 */
        "    - storeName: other\n"                          /* 20 */
        "  accessControl:\n"                                /* 21 */
        "    defaultAction: deny\n"                         /* 22 */
        "    trustDomain: corp\n"                           /* 23 */
        "    policies:\n"                                   /* 24 */
        "    - appId: app1\n"                               /* 25 */
        "      defaultAction: allow\n"                      /* 26 */
        "      trustDomain: corp\n"                         /* 27 */
        "      namespace: prod\n"                           /* 28 */
        "      operations:\n"                               /* 29 */
        "      - {name: /op1, httpVerb: [POST, GET], action: deny}\n" /* 30 */
        "      - {name: /Op2/*, httpVerb: [\"*\"], action: Allow}\n"  /* 31 */
        "      - name: /op3/**\n"                           /* 32 */
        "        action: deny\n"                            /* 33 */
        "    - appId: app2\n"                               /* 34 */
        "  features:\n"                                     /* 35 */
        "  - name: ActorStateTTL\n"                         /* 36 */
        "    enabled: true\n"                               /* 37 */
        "  - name: Other\n"                                 /* 38 */
        "  api: {allowed: [{name: state, version: v1.0, protocol: http}]}\n" /* 39 */
        "  nameResolution: {component: mdns}\n";            /* 40 */

TEST(parse_full) {
        _cleanup_(configuration_freep) Configuration *c = parse_ok(full_config);

        ASSERT_NOT_NULL(c);
        ASSERT_STREQ(c->name, "appconfig");
        ASSERT_STREQ(c->namespace_, "prod");
        ASSERT_STREQ(c->file, FILE_NAME);
        ASSERT_EQ(c->line, 1);

        ASSERT_TRUE(c->tracing.sampling_rate_set);
        ASSERT_TRUE(fabs(c->tracing.sampling_rate - 0.5) < 1e-12);
        ASSERT_TRUE(c->tracing.stdout_);
        ASSERT_STREQ(c->tracing.zipkin_endpoint, "http://localhost:9411/api/v2/spans");
        ASSERT_STREQ(c->tracing.otel_endpoint, "localhost:4317");
        ASSERT_TRUE(c->tracing.otel_is_secure);
        ASSERT_STREQ(c->tracing.otel_protocol, "grpc");

        ASSERT_EQ(c->n_secret_scopes, 2);
        ASSERT_STREQ(c->secret_scopes[0].store_name, "localsecretstore");
        ASSERT_EQ(c->secret_scopes[0].default_access, SECRET_ACCESS_DENY);
        ASSERT_EQ(strv_length(c->secret_scopes[0].allowed_secrets), 2);
        ASSERT_STREQ(c->secret_scopes[0].allowed_secrets[1], "b");
        ASSERT_EQ(strv_length(c->secret_scopes[0].denied_secrets), 1);
        ASSERT_STREQ(c->secret_scopes[0].denied_secrets[0], "c");
        ASSERT_EQ(c->secret_scopes[0].line, 16);
        ASSERT_STREQ(c->secret_scopes[1].store_name, "other");
        ASSERT_EQ(c->secret_scopes[1].default_access, SECRET_ACCESS_ALLOW);
        ASSERT_NULL(c->secret_scopes[1].allowed_secrets);

        const AccessControl *ac = c->access_control;
        ASSERT_NOT_NULL(ac);
        ASSERT_EQ(ac->default_action, ACL_DENY);
        ASSERT_TRUE(ac->default_action_set);
        ASSERT_STREQ(ac->trust_domain, "corp");
        ASSERT_EQ(ac->n_policies, 2);
        const AclPolicy *p = &ac->policies[0];
        ASSERT_STREQ(p->app_id, "app1");
        ASSERT_EQ(p->default_action, ACL_ALLOW);
        ASSERT_STREQ(p->trust_domain, "corp");
        ASSERT_STREQ(p->namespace_, "prod");
        ASSERT_EQ(p->line, 25);
        ASSERT_EQ(p->n_operations, 3);
        ASSERT_STREQ(p->operations[0].name, "/op1");
        ASSERT_EQ(p->operations[0].verbs, HTTP_VERB_POST | HTTP_VERB_GET);
        ASSERT_TRUE(!p->operations[0].all_verbs);
        ASSERT_EQ(p->operations[0].action, ACL_DENY);
        ASSERT_EQ(p->operations[0].line, 30);
        ASSERT_STREQ(p->operations[0].reason, "denied by policy for app 'app1', operation '/op1'");
        ASSERT_STREQ(p->operations[1].name, "/Op2/*");
        ASSERT_STREQ(p->operations[1].pattern, "/op2/*");
        ASSERT_TRUE(p->operations[1].all_verbs);
        ASSERT_EQ(p->operations[1].verbs, HTTP_VERB_ALL);
        ASSERT_EQ(p->operations[1].action, ACL_ALLOW);
        ASSERT_STREQ(p->operations[2].pattern, "/op3/**");
        ASSERT_TRUE(p->operations[2].all_verbs); /* httpVerb absent: every verb */
        ASSERT_EQ(p->operations[2].line, 32);
        ASSERT_STREQ(ac->policies[1].app_id, "app2");
        ASSERT_EQ(ac->policies[1].default_action, _ACL_DECISION_INVALID);
        ASSERT_NULL(ac->policies[1].trust_domain);
        ASSERT_NULL(ac->policies[1].namespace_);
        ASSERT_EQ(ac->policies[1].n_operations, 0);

        ASSERT_EQ(c->n_features, 2);
        ASSERT_STREQ(c->features[0].name, "ActorStateTTL");
        ASSERT_TRUE(c->features[0].enabled);
        ASSERT_TRUE(!c->features[1].enabled);
        ASSERT_TRUE(configuration_feature_enabled(c, "ActorStateTTL"));
        ASSERT_TRUE(!configuration_feature_enabled(c, "Other"));
        ASSERT_TRUE(!configuration_feature_enabled(c, "Missing"));
}

TEST(parse_defaults) {
        _cleanup_(configuration_freep) Configuration *c =
                parse_ok("apiVersion: dapr.io/v1alpha1\nkind: Configuration\n");

        ASSERT_NOT_NULL(c);
        ASSERT_NULL(c->name);
        ASSERT_NULL(c->namespace_);
        ASSERT_TRUE(!c->tracing.sampling_rate_set);
        ASSERT_TRUE(fabs(c->tracing.sampling_rate - 0.0001) < 1e-12);
        ASSERT_TRUE(!c->tracing.stdout_);
        ASSERT_NULL(c->tracing.zipkin_endpoint);
        ASSERT_NULL(c->access_control);
        ASSERT_EQ(c->n_secret_scopes, 0);
        ASSERT_EQ(c->n_features, 0);
        ASSERT_EQ(acl_evaluate(c, "x", "GET", "/y", NULL), ACL_ALLOW);
}

TEST(parse_metric_and_otel_extras) {
        Configuration *c;

        c = parse_ok("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  metric:\n    enabled: false\n"
                     "  tracing:\n    otel:\n      endpointAddress: \"h:4318\"\n      headers: \"a=1,b=x=y\"\n"
                     "      timeout: \"2500\"\n");
        ASSERT_TRUE(c->metric_disabled);
        ASSERT_TRUE(!c->tracing.otel_is_secure_set); /* daprd: absent means secure */
        ASSERT_STREQ(c->tracing.otel_headers, "a=1,b=x=y");
        ASSERT_EQ(c->tracing.otel_timeout_ms, 2500);
        configuration_free(c);

        c = parse_ok("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  tracing:\n    otel:\n"
                     "      isSecure: false\n");
        ASSERT_TRUE(c->tracing.otel_is_secure_set);
        ASSERT_TRUE(!c->tracing.otel_is_secure);
        ASSERT_TRUE(!c->metric_disabled);
        configuration_free(c);
}

TEST(parse_name_resolution) {
        Configuration *c;

        c = parse_ok("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  nameResolution:\n"
                     "    component: postgresql\n    version: v1\n    configuration:\n"
                     "      connectionString: \"host=db dbname=m\"\n      tableName: hosts\n      other: 1\n");
        ASSERT_STREQ(c->name_resolution.component, "postgresql");
        ASSERT_STREQ(c->name_resolution.connection, "host=db dbname=m");
        ASSERT_STREQ(c->name_resolution.table, "hosts");
        ASSERT_EQ(c->name_resolution.line, 5u);
        configuration_free(c);

        /* Dapr's mdns needs no configuration; none at all leaves everything unset */
        c = parse_ok("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  nameResolution:\n"
                     "    component: mdns\n");
        ASSERT_STREQ(c->name_resolution.component, "mdns");
        ASSERT_NULL(c->name_resolution.connection);
        configuration_free(c);
        c = parse_ok("apiVersion: dapr.io/v1alpha1\nkind: Configuration\n");
        ASSERT_NULL(c->name_resolution.component);
        configuration_free(c);
}

TEST(parse_access_control_defaults) {
        Configuration *c;

        /* An empty section is no section. */
        c = parse_ok("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  accessControl: {}\n");
        ASSERT_NULL(c->access_control);
        configuration_free(c);
        c = parse_ok("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  accessControl:\n"
                     "  tracing: ~\n  secrets:\n  features: null\n");
        ASSERT_NULL(c->access_control);
        configuration_free(c);

        /* Policies without a global defaultAction: deny. */
        c = parse_ok("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  accessControl:\n"
                     "    policies: [{appId: a}]\n");
        ASSERT_NOT_NULL(c->access_control);
        ASSERT_TRUE(!c->access_control->default_action_set);
        ASSERT_EQ(c->access_control->default_action, ACL_DENY);
        ASSERT_STREQ(c->access_control->trust_domain, "public");
        configuration_free(c);

        /* Only a trust domain: the documented rule, allow. */
        c = parse_ok("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  accessControl:\n"
                     "    trustDomain: x\n");
        ASSERT_NOT_NULL(c->access_control);
        ASSERT_EQ(c->access_control->default_action, ACL_ALLOW);
        configuration_free(c);
}

TEST(parse_multi_document) {
        Configuration *c;

        c = parse_ok("apiVersion: dapr.io/v1alpha1\n"
                     "kind: Component\n"
                     "metadata: {name: x}\n"
                     "spec: {type: state.redis}\n"
                     "---\n"
                     "- not a mapping\n"
                     "---\n"
                     "just a scalar\n"
                     "---\n"
                     "apiVersion: dapr.io/v1alpha1\n" /* 10 */
                     "kind: Configuration\n"
                     "metadata: {name: first}\n"
                     "---\n"
                     "apiVersion: dapr.io/v1alpha1\n"
                     "kind: Configuration\n"
                     "metadata: {name: second}\n"
                     "spec: {tracing: {samplingRate: \"7\"}}\n"); /* bad, but never looked at */
        ASSERT_NOT_NULL(c);
        ASSERT_STREQ(c->name, "first");
        ASSERT_EQ(c->line, 10);
        configuration_free(c);

        /* No Configuration at all: success, nothing. */
        c = (Configuration *) 0x1;
        ConfError e = {};
        const char *other = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\n---\n---\n";
        ASSERT_OK(configuration_parse(FILE_NAME, other, strlen(other), &c, &e));
        ASSERT_NULL(c);
        c = (Configuration *) 0x1;
        ASSERT_OK(configuration_parse(FILE_NAME, "", 0, &c, &e));
        ASSERT_NULL(c);
        ASSERT_NULL(e.message);

        /* The Configuration is found after a trailing separator and comments too. */
        c = parse_ok("# leading comment\n---\nkind: Configuration\napiVersion: dapr.io/v1alpha1\n---\n");
        ASSERT_NOT_NULL(c);
        ASSERT_EQ(c->line, 3);
        configuration_free(c);
}

#define HEAD "apiVersion: dapr.io/v1alpha1\nkind: Configuration\n"
#define SPEC HEAD "spec:\n"
#define AC SPEC "  accessControl:\n"
#define POL AC "    policies:\n    - appId: a\n"
#define OPS POL "      operations:\n"

TEST(parse_errors) {
        /* YAML syntax, header, metadata. */
        expect_error(HEAD "spec: [\n", 4, NULL, "YAML syntax error");
        expect_error("kind: Configuration\napiVersion: v2\n", 2, "apiVersion", "unsupported apiVersion");
        expect_error("kind: Configuration\n", 1, "apiVersion", "required");
        expect_error(HEAD "metadata: [x]\n", 3, "metadata", "mapping");
        expect_error(HEAD "metadata: {name: \"bad name\"}\n", 3, "metadata.name", "invalid configuration name");
        expect_error(HEAD "metadata:\n  namespace: [x]\n", 4, "metadata.namespace", "string");
        expect_error(HEAD "spec: 5\n", 3, "spec", "mapping");

        /* nameResolution. */
        expect_error(SPEC "  nameResolution: [x]\n", 4, "spec.nameResolution", "mapping");
        expect_error(SPEC "  nameResolution:\n    component: \"\"\n", 5, "spec.nameResolution.component", "empty");
        expect_error(SPEC "  nameResolution:\n    configuration: 5\n", 5, "spec.nameResolution.configuration",
                     "mapping");

        /* Tracing. */
        expect_error(SPEC "  tracing: [1]\n", 4, "spec.tracing", "mapping");
        expect_error(SPEC "  metric:\n    enabled: maybe\n", 5, "spec.metric.enabled", "true or false");
        expect_error(SPEC "  tracing:\n    otel:\n      headers: nokey\n", 6, "spec.tracing.otel.headers", NULL);
        expect_error(SPEC "  tracing:\n    otel:\n      timeout: \"-5\"\n", 6, "spec.tracing.otel.timeout", NULL);
        expect_error(SPEC "  tracing:\n    samplingRate: \"1.5\"\n", 5, "spec.tracing.samplingRate", "'1.5'");
        expect_error(SPEC "  tracing:\n    samplingRate: abc\n", 5, "spec.tracing.samplingRate", NULL);
        expect_error(SPEC "  tracing:\n    samplingRate: \"-0.1\"\n", 5, "spec.tracing.samplingRate", NULL);
        expect_error(SPEC "  tracing:\n    samplingRate: nan\n", 5, "spec.tracing.samplingRate", NULL);
        expect_error(SPEC "  tracing:\n    stdout: maybe\n", 5, "spec.tracing.stdout", "true or false");
        expect_error(SPEC "  tracing:\n    zipkin: x\n", 5, "spec.tracing.zipkin", "mapping");
        expect_error(SPEC "  tracing:\n    zipkin: {endpointAddress: \"\"}\n", 5,
                     "spec.tracing.zipkin.endpointAddress", "empty");
        expect_error(SPEC "  tracing:\n    otel:\n      endpointAddress: [a]\n", 6, "spec.tracing.otel.endpointAddress",
                     "string");
        expect_error(SPEC "  tracing:\n    otel:\n      isSecure: 2\n", 6, "spec.tracing.otel.isSecure", NULL);
        expect_error(SPEC "  tracing:\n    otel:\n      protocol: udp\n", 6, "spec.tracing.otel.protocol", "grpc or http");

        /* Access control. */
        expect_error(SPEC "  accessControl: [x]\n", 4, "spec.accessControl", "mapping");
        expect_error(AC "    defaultAction: maybe\n", 5, "spec.accessControl.defaultAction", "allow or deny");
        expect_error(AC "    trustDomain: \"\"\n", 5, "spec.accessControl.trustDomain", "empty");
        expect_error(AC "    policies: {a: b}\n", 5, "spec.accessControl.policies", "list");
        expect_error(AC "    policies:\n    - x\n", 6, "spec.accessControl.policies[]", "mapping");
        expect_error(AC "    policies:\n    - defaultAction: deny\n", 6, "spec.accessControl.policies[].appId",
                     "required");
        expect_error(AC "    policies:\n    - appId: \"a b\"\n", 6, "spec.accessControl.policies[].appId", "invalid app id");
        expect_error(AC "    policies:\n    - appId: a\n    - appId: b\n    - appId: a\n", 8,
                     "spec.accessControl.policies[].appId", "duplicate policy for app 'a' (first on line 6)");
        expect_error(POL "      defaultAction: permit\n", 7, "spec.accessControl.policies[].defaultAction", "'permit'");
        expect_error(POL "      trustDomain: [x]\n", 7, "spec.accessControl.policies[].trustDomain", "string");
        expect_error(POL "      namespace: \"\"\n", 7, "spec.accessControl.policies[].namespace", "empty");
        expect_error(POL "      operations: x\n", 7, "spec.accessControl.policies[].operations", "list");
        expect_error(OPS "      - x\n", 8, "spec.accessControl.policies[].operations[]", "mapping");
        expect_error(OPS "      - {action: allow}\n", 8, "spec.accessControl.policies[].operations[].name", "required");
        expect_error(OPS "      - {name: op1, action: allow}\n", 8, "spec.accessControl.policies[].operations[].name",
                     "must start with '/'");
        expect_error(OPS "      - {name: \"/a b\", action: allow}\n", 8,
                     "spec.accessControl.policies[].operations[].name", "printable");
        expect_error(OPS "      - {name: \"/a?x=1\", action: allow}\n", 8,
                     "spec.accessControl.policies[].operations[].name", NULL);
        expect_error(OPS "      - {name: /a/../b, action: allow}\n", 8,
                     "spec.accessControl.policies[].operations[].name", "'..'");
        expect_error(OPS "      - {name: /a%zz, action: allow}\n", 8,
                     "spec.accessControl.policies[].operations[].name", "escape");
        expect_error(OPS "      - {name: /a/**/b, action: allow}\n", 8,
                     "spec.accessControl.policies[].operations[].name", "'**'");
        expect_error(OPS "      - {name: /a/b**, action: allow}\n", 8,
                     "spec.accessControl.policies[].operations[].name", "'**'");
        expect_error(OPS "      - {name: /a}\n", 8, "spec.accessControl.policies[].operations[].action", "required");
        expect_error(OPS "      - name: /a\n        action: maybe\n", 9,
                     "spec.accessControl.policies[].operations[].action", "allow or deny");
        expect_error(OPS "      - {name: /a, httpVerb: GET, action: allow}\n", 8,
                     "spec.accessControl.policies[].operations[].httpVerb", "list");
        expect_error(OPS "      - name: /a\n        httpVerb:\n        - GET\n        - get\n        action: allow\n", 11,
                     "spec.accessControl.policies[].operations[].httpVerb", "unknown HTTP verb 'get'");
        expect_error(OPS "      - {name: /a, httpVerb: [[GET]], action: allow}\n", 8,
                     "spec.accessControl.policies[].operations[].httpVerb", "(not a string)");

        /* Secrets. */
        expect_error(SPEC "  secrets: [x]\n", 4, "spec.secrets", "mapping");
        expect_error(SPEC "  secrets:\n    scopes: x\n", 5, "spec.secrets.scopes", "list");
        expect_error(SPEC "  secrets:\n    scopes: [x]\n", 5, "spec.secrets.scopes[]", "mapping");
        expect_error(SPEC "  secrets:\n    scopes:\n    - defaultAccess: deny\n", 6, "spec.secrets.scopes[].storeName",
                     "required");
        expect_error(SPEC "  secrets:\n    scopes:\n    - storeName: s\n    - storeName: s\n", 7,
                     "spec.secrets.scopes[].storeName", "duplicate scope for store 's' (first on line 6)");
        expect_error(SPEC "  secrets:\n    scopes:\n    - storeName: s\n      defaultAccess: none\n", 7,
                     "spec.secrets.scopes[].defaultAccess", "'none'");
        expect_error(SPEC "  secrets:\n    scopes:\n    - storeName: s\n      allowedSecrets: a\n", 7,
                     "spec.secrets.scopes[].allowedSecrets", "list");
        expect_error(SPEC "  secrets:\n    scopes:\n    - storeName: s\n      deniedSecrets:\n      - \"\"\n", 8,
                     "spec.secrets.scopes[].deniedSecrets", "non-empty");

        /* Features. */
        expect_error(SPEC "  features: {a: b}\n", 4, "spec.features", "list");
        expect_error(SPEC "  features: [x]\n", 4, "spec.features[]", "mapping");
        expect_error(SPEC "  features:\n  - enabled: true\n", 5, "spec.features[].name", "required");
        expect_error(SPEC "  features:\n  - name: F\n    enabled: sure\n", 6, "spec.features[].enabled", "'sure'");
}

TEST(parse_list_bound) {
        _cleanup_free_ char *text = NULL;
        size_t cap = 64 * 1024, n = 0;

        text = malloc(cap);
        ASSERT_NOT_NULL(text);
        n += (size_t) snprintf(text + n, cap - n, SPEC "  features:\n");
        for (unsigned i = 0; i < 1025; i++)
                n += (size_t) snprintf(text + n, cap - n, "  - {name: f%u}\n", i);
        ASSERT_TRUE(n < cap);
        expect_error(text, 5, "spec.features", "too many entries");
}

/* ---- access control ---- */

static const char acl_config[] =
        HEAD
        "spec:\n"
        "  accessControl:\n"
        "    defaultAction: deny\n"
        "    policies:\n"
        "    - appId: frontend\n"                 /* allow by default, deny some */
        "      defaultAction: allow\n"
        "      operations:\n"
        "      - {name: /admin/*, httpVerb: [\"*\"], action: deny}\n"
        "      - {name: /admin/status, httpVerb: [GET], action: allow}\n"
        "      - {name: /internal, action: deny}\n"
        "    - appId: worker\n"                   /* no defaultAction: global deny */
        "      operations:\n"
        "      - {name: /jobs/*, httpVerb: [POST, PUT], action: allow}\n"
        "      - {name: /jobs/**, httpVerb: [GET], action: allow}\n"
        "      - {name: /jobs/*/cancel, httpVerb: [POST], action: deny}\n"
        "      - {name: /files/*.txt, action: allow}\n"
        "      - {name: /v1/**, action: allow}\n"
        "      - {name: /v1/secret/**, action: deny}\n"
        "      - {name: /v1/secret/public, action: allow}\n"
        "      - {name: /Mixed/Case, httpVerb: [GET], action: allow}\n"
        "      - {name: /both, httpVerb: [\"*\"], action: deny}\n"
        "      - {name: /both, httpVerb: [DELETE], action: allow}\n"
        "      - {name: /, action: allow}\n"
        "      - {name: /docs, action: deny}\n"
        "      - {name: /docs/**, action: allow}\n"
        "    - appId: other-ns\n"                 /* never matches: caller namespace is "default" */
        "      namespace: prod\n"
        "      defaultAction: allow\n"
        "    - appId: other-td\n"                 /* never matches: trust domain is "public" */
        "      trustDomain: corp\n"
        "      defaultAction: allow\n"
        "    - appId: same\n"
        "      namespace: default\n"
        "      trustDomain: public\n"
        "      defaultAction: allow\n";

typedef struct AclCase {
        const char *caller, *verb, *path;
        AclDecision expect;
        const char *reason; /* substring, or NULL */
} AclCase;

static const AclCase acl_cases[] = {
        /* Unknown or missing caller: global default. */
        { "stranger", "GET", "/anything", ACL_DENY, "global defaultAction" },
        { NULL, "GET", "/anything", ACL_DENY, "global defaultAction" },
        { "", "GET", "/anything", ACL_DENY, "global defaultAction" },
        { "Frontend", "GET", "/", ACL_DENY, "global" }, /* app ids are case-sensitive */

        /* Per-app default. */
        { "frontend", "GET", "/orders", ACL_ALLOW, "defaultAction of the policy for app 'frontend'" },
        { "frontend", "PROPFIND", "/orders", ACL_ALLOW, "policy for app 'frontend'" },
        { "worker", "GET", "/orders", ACL_DENY, "global" },

        /* '*' is one segment, also the parent; an exact name beats it. */
        { "frontend", "GET", "/admin/users", ACL_DENY, "operation '/admin/*'" },
        { "frontend", "GET", "/admin", ACL_DENY, "operation '/admin/*'" },
        { "frontend", "GET", "/admin/users/1", ACL_ALLOW, "defaultAction" },
        { "frontend", "GET", "/admin/status", ACL_ALLOW, "operation '/admin/status'" },
        { "frontend", "POST", "/admin/status", ACL_DENY, "operation '/admin/*'" }, /* verb not listed */
        { "frontend", "HEAD", "/admin/status", ACL_DENY, "operation '/admin/*'" },
        { "frontend", "PROPFIND", "/admin/x", ACL_DENY, "operation '/admin/*'" }, /* "*" covers unknown verbs */

        /* A wildcard-free name covers what is below it (Dapr's trie). */
        { "frontend", "GET", "/internal", ACL_DENY, "operation '/internal'" },
        { "frontend", "GET", "/internal/x/y", ACL_DENY, "operation '/internal'" },
        { "frontend", "GET", "/internalx", ACL_ALLOW, "defaultAction" },

        /* Leading slash, "//", query, fragment, case, escapes, dot segments. */
        { "frontend", "GET", "admin/users", ACL_DENY, "/admin/*" },
        { "frontend", "GET", "//admin///users/", ACL_DENY, "/admin/*" },
        { "frontend", "GET", "/admin/status?verbose=1&x=/y", ACL_ALLOW, "/admin/status" },
        { "frontend", "GET", "/admin/status#frag", ACL_ALLOW, "/admin/status" },
        { "frontend", "GET", "/ADMIN/Status", ACL_ALLOW, "/admin/status" },
        { "frontend", "GET", "/%61dmin/users", ACL_DENY, "/admin/*" },
        { "frontend", "GET", "/public/../admin/users", ACL_DENY, "/admin/*" },
        { "frontend", "GET", "/./admin/./users", ACL_DENY, "/admin/*" },
        { "frontend", "GET", "/../../admin/users", ACL_DENY, "/admin/*" },
        { "frontend", "GET", "/%2e%2e/admin/users", ACL_DENY, "/admin/*" },
        { "frontend", "GET", "/admin%2Fusers", ACL_ALLOW, "defaultAction" }, /* encoded '/' is not a separator */
        { "frontend", "GET", "/admin/%zz", ACL_DENY, "malformed" },
        { "frontend", "GET", "/admin/x%4", ACL_DENY, "malformed" },
        { "frontend", "GET", "", ACL_ALLOW, "defaultAction" },
        { "frontend", "GET", NULL, ACL_ALLOW, "defaultAction" },

        /* '*' vs '**' vs exact, verb lists. */
        { "worker", "POST", "/jobs/42", ACL_ALLOW, "operation '/jobs/*'" },
        { "worker", "PUT", "/jobs/42", ACL_ALLOW, "operation '/jobs/*'" },
        { "worker", "DELETE", "/jobs/42", ACL_DENY, "global" },
        { "worker", "POST", "/jobs/42/retry", ACL_DENY, "global" }, /* '*' is one segment only */
        { "worker", "GET", "/jobs/42/retry", ACL_ALLOW, "operation '/jobs/**'" },
        { "worker", "GET", "/jobs/42", ACL_ALLOW, "operation '/jobs/**'" },
        { "worker", "GET", "/jobs", ACL_ALLOW, "operation '/jobs/**'" }, /* '**' matches the parent */
        { "worker", "POST", "/jobs", ACL_ALLOW, "operation '/jobs/*'" },
        { "worker", "POST", "/jobs/42/cancel", ACL_DENY, "operation '/jobs/*/cancel'" },
        { "worker", "GET", "/jobs/42/cancel", ACL_ALLOW, "operation '/jobs/**'" },
        { "worker", "get", "/jobs/42", ACL_DENY, "global" }, /* verbs are upper case on the wire */
        { "worker", NULL, "/jobs/42", ACL_DENY, "global" },

        /* Glob within a segment. */
        { "worker", "GET", "/files/a.txt", ACL_ALLOW, "operation '/files/*.txt'" },
        { "worker", "GET", "/files/.txt", ACL_ALLOW, "/files/*.txt" },
        { "worker", "GET", "/files/a.txt.bak", ACL_DENY, "global" },
        { "worker", "GET", "/files/a.txt/more", ACL_DENY, "global" }, /* a glob name does not cover below */

        /* The most specific operation wins, whatever the order in the file. */
        { "worker", "GET", "/v1/state", ACL_ALLOW, "operation '/v1/**'" },
        { "worker", "GET", "/v1/secret", ACL_DENY, "operation '/v1/secret/**'" },
        { "worker", "GET", "/v1/secret/a/b", ACL_DENY, "operation '/v1/secret/**'" },
        { "worker", "GET", "/v1/secret/public", ACL_ALLOW, "operation '/v1/secret/public'" },
        { "worker", "GET", "/v1/secret/public/x", ACL_ALLOW, "'/v1/secret/public'" }, /* leftmost literal wins */
        { "worker", "GET", "/docs", ACL_DENY, "operation '/docs'" },
        { "worker", "GET", "/docs/a/b", ACL_ALLOW, "operation '/docs/**'" }, /* '**' beats an implied prefix */
        { "worker", "GET", "/mixed/case", ACL_ALLOW, "operation '/Mixed/Case'" },
        { "worker", "GET", "/both", ACL_DENY, "operation '/both'" },
        { "worker", "DELETE", "/both", ACL_ALLOW, "operation '/both'" }, /* a listed verb beats "*" */
        { "worker", "GET", "/", ACL_ALLOW, "operation '/'" },
        { "worker", "GET", "?x=1", ACL_ALLOW, "operation '/'" },
        { "worker", "GET", "/unlisted", ACL_DENY, "global" }, /* "/" covers only the root */

        /* trustDomain / namespace on the policy. */
        { "other-ns", "GET", "/x", ACL_DENY, "global" },
        { "other-td", "GET", "/x", ACL_DENY, "global" },
        { "same", "GET", "/x", ACL_ALLOW, "policy for app 'same'" },
};

TEST(acl_table) {
        _cleanup_(configuration_freep) Configuration *c = parse_ok(acl_config);

        for (size_t i = 0; i < ELEMENTSOF(acl_cases); i++) {
                const AclCase *t = &acl_cases[i];
                const char *reason = NULL;
                AclDecision d = acl_evaluate(c, t->caller, t->verb, t->path, &reason);

                if (d != t->expect || !reason || (t->reason && !strstr(reason, t->reason))) {
                        fprintf(stderr, "case %zu: %s %s %s: got %s (%s), expected %s (%s)\n", i, strna(t->caller),
                                strna(t->verb), strna(t->path), strna(acl_decision_to_string(d)), strna(reason),
                                acl_decision_to_string(t->expect), strna(t->reason));
                        ASSERT_TRUE(false);
                }
                /* The reason is optional. */
                ASSERT_EQ(acl_evaluate(c, t->caller, t->verb, t->path, NULL), t->expect);
        }
}

TEST(acl_namespace_and_trust_domain_from_config) {
        _cleanup_(configuration_freep) Configuration *c = parse_ok(
                HEAD
                "metadata: {name: x, namespace: prod}\n"
                "spec:\n"
                "  accessControl:\n"
                "    defaultAction: deny\n"
                "    trustDomain: corp\n"
                "    policies:\n"
                "    - {appId: a, namespace: prod, trustDomain: corp, defaultAction: allow}\n"
                "    - {appId: b, namespace: default, defaultAction: allow}\n"
                "    - {appId: c, trustDomain: public, defaultAction: allow}\n"
                "    - {appId: d, namespace: default, defaultAction: deny}\n"
                "    - {appId: d, namespace: prod, defaultAction: allow}\n");
        const char *reason;

        ASSERT_EQ(acl_evaluate(c, "a", "GET", "/", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "b", "GET", "/", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate(c, "c", "GET", "/", NULL), ACL_DENY);
        /* The same app id in two namespaces: the caller's namespace picks. */
        ASSERT_EQ(acl_evaluate(c, "d", "GET", "/", &reason), ACL_ALLOW);
        ASSERT_STREQ(reason, "allowed by the defaultAction of the policy for app 'd'");
}

TEST(acl_caller_trust_domain) {
        /* A peer host's caller brings the trust domain of its certificate; NULL is the
         * configuration's own (a caller on a single host). */
        _cleanup_(configuration_freep) Configuration *c = parse_ok(
                HEAD
                "spec:\n"
                "  accessControl:\n"
                "    defaultAction: allow\n"
                "    trustDomain: corp\n"
                "    policies:\n"
                "    - {appId: a, trustDomain: evil, defaultAction: deny}\n"
                "    - {appId: b, defaultAction: deny}\n");

        ASSERT_EQ(acl_evaluate_caller(c, "a", "evil", "GET", "/", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate_caller(c, "a", "corp", "GET", "/", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate_caller(c, "a", NULL, "GET", "/", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "a", "GET", "/", NULL), ACL_ALLOW);
        /* a policy without trustDomain matches every trust domain */
        ASSERT_EQ(acl_evaluate_caller(c, "b", "evil", "GET", "/", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate_caller(c, "b", NULL, "GET", "/", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate_caller(c, "x", "evil", "GET", "/", NULL), ACL_ALLOW);
}

TEST(acl_dapr_examples) {
        /* Dapr pkg/acl/acl_test.go's policies, re-stated (mooring has one namespace per host). */
        _cleanup_(configuration_freep) Configuration *c = parse_ok(
                HEAD
                "spec:\n"
                "  accessControl:\n"
                "    defaultAction: deny\n"
                "    policies:\n"
                "    - appId: app1\n"
                "      defaultAction: allow\n"
                "      operations:\n"
                "      - {name: /op1, httpVerb: [POST, GET], action: allow}\n"
                "      - {name: /op2, httpVerb: [\"*\"], action: deny}\n"
                "    - appId: app2\n"
                "      defaultAction: deny\n"
                "      operations:\n"
                "      - {name: /op3/a/*, httpVerb: [PUT, GET], action: allow}\n"
                "      - {name: /op4, httpVerb: [POST], action: allow}\n"
                "    - appId: app3\n"
                "      operations:\n"
                "      - {name: /op5, httpVerb: [POST], action: allow}\n"
                "    - appId: app4\n"
                "      defaultAction: deny\n"
                "      operations:\n"
                "      - {name: /op6, action: allow}\n"
                "      - {name: /op7/a/b/*, action: allow}\n"
                "      - {name: /op7/a/b/c/f, action: allow}\n"
                "      - {name: /op7/a/b*, action: allow}\n"
                "      - {name: /op7/c/**, action: allow}\n");

        ASSERT_EQ(acl_evaluate(c, "appX", "POST", "op1", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate(c, "app1", "POST", "opX", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "app1", "POST", "Op2", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate(c, "app1", "PUT", "op2", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate(c, "app2", "PUT", "op4", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate(c, "app2", "POST", "op4", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "app2", "POST", "/op4", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "app3", "PUT", "op5", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate(c, "app2", "PUT", "/op3/a", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "app2", "PUT", "/op3/a/b", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "app2", "PUT", "/op3/b/b", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate(c, "app4", "GET", "op6", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "app4", "GET", "op7/a/b/c", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "app4", "GET", "op7/a/b/c/d", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate(c, "app4", "GET", "op7/a/b/c/f", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "app4", "GET", "op7/a/bc", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "app4", "GET", "op7/c/d/e", NULL), ACL_ALLOW);
}

TEST(acl_no_access_control) {
        _cleanup_(configuration_freep) Configuration *c = parse_ok(full_config);
        Configuration *none = parse_ok(HEAD);
        const char *reason = NULL;

        ASSERT_EQ(acl_evaluate(NULL, "a", "GET", "/x", &reason), ACL_ALLOW);
        ASSERT_STREQ(reason, "no access control configured");
        ASSERT_EQ(acl_evaluate(none, "a", "GET", "/x", &reason), ACL_ALLOW);
        none = configuration_free(none);
        ASSERT_NULL(none);

        /* full_config: trustDomain corp, namespace prod; app2 has no defaultAction. */
        ASSERT_EQ(acl_evaluate(c, "app1", "GET", "/op1", &reason), ACL_DENY);
        ASSERT_STREQ(reason, "denied by policy for app 'app1', operation '/op1'");
        ASSERT_EQ(acl_evaluate(c, "app1", "PUT", "/op1", NULL), ACL_ALLOW);
        ASSERT_EQ(acl_evaluate(c, "app1", "PUT", "/op2/x", &reason), ACL_ALLOW);
        ASSERT_STREQ(reason, "allowed by policy for app 'app1', operation '/Op2/*'");
        ASSERT_EQ(acl_evaluate(c, "app1", "PUT", "/op3/x/y/z", NULL), ACL_DENY);
        ASSERT_EQ(acl_evaluate(c, "app2", "GET", "/op1", &reason), ACL_DENY);
        ASSERT_STREQ(reason, "denied by the global defaultAction");
}

/* ---- secret scopes ---- */

TEST(secret_scopes) {
        _cleanup_(configuration_freep) Configuration *c = parse_ok(
                SPEC
                "  secrets:\n"
                "    scopes:\n"
                "    - storeName: allowlist\n"
                "      defaultAccess: allow\n"
                "      allowedSecrets: [a, b]\n"
                "      deniedSecrets: [a]\n"
                "    - storeName: denylist\n"
                "      deniedSecrets: [c]\n"
                "    - storeName: closed\n"
                "      defaultAccess: DENY\n"
                "      deniedSecrets: [c]\n"
                "    - storeName: closed-but\n"
                "      defaultAccess: deny\n"
                "      allowedSecrets: [d]\n"
                "    - storeName: empty-lists\n"
                "      defaultAccess: deny\n"
                "      allowedSecrets: []\n"
                "      deniedSecrets: []\n");

        /* allowedSecrets non-empty: only those, whatever the rest says. */
        ASSERT_EQ(secret_scope_check(c, "allowlist", "a"), SECRET_ACCESS_ALLOW);
        ASSERT_EQ(secret_scope_check(c, "allowlist", "b"), SECRET_ACCESS_ALLOW);
        ASSERT_EQ(secret_scope_check(c, "allowlist", "c"), SECRET_ACCESS_DENY);
        ASSERT_EQ(secret_scope_check(c, "allowlist", "A"), SECRET_ACCESS_DENY);
        /* deniedSecrets, then defaultAccess. */
        ASSERT_EQ(secret_scope_check(c, "denylist", "c"), SECRET_ACCESS_DENY);
        ASSERT_EQ(secret_scope_check(c, "denylist", "d"), SECRET_ACCESS_ALLOW);
        ASSERT_EQ(secret_scope_check(c, "closed", "c"), SECRET_ACCESS_DENY);
        ASSERT_EQ(secret_scope_check(c, "closed", "d"), SECRET_ACCESS_DENY);
        ASSERT_EQ(secret_scope_check(c, "closed-but", "d"), SECRET_ACCESS_ALLOW);
        ASSERT_EQ(secret_scope_check(c, "closed-but", "e"), SECRET_ACCESS_DENY);
        ASSERT_EQ(secret_scope_check(c, "empty-lists", "x"), SECRET_ACCESS_DENY);
        /* Stores without a scope, and no configuration: everything readable. */
        ASSERT_EQ(secret_scope_check(c, "unscoped", "x"), SECRET_ACCESS_ALLOW);
        ASSERT_EQ(secret_scope_check(NULL, "allowlist", "c"), SECRET_ACCESS_ALLOW);
}

TEST(enum_strings) {
        ASSERT_STREQ(acl_decision_to_string(ACL_ALLOW), "allow");
        ASSERT_STREQ(acl_decision_to_string(ACL_DENY), "deny");
        ASSERT_NULL(acl_decision_to_string(_ACL_DECISION_INVALID));
        ASSERT_EQ(acl_decision_from_string("Deny"), ACL_DENY);
        ASSERT_EQ(acl_decision_from_string("nope"), _ACL_DECISION_INVALID);
        ASSERT_EQ(acl_decision_from_string(NULL), _ACL_DECISION_INVALID);
        ASSERT_STREQ(secret_access_to_string(SECRET_ACCESS_DENY), "deny");
        ASSERT_EQ(secret_access_from_string("ALLOW"), SECRET_ACCESS_ALLOW);
        ASSERT_EQ(secret_access_from_string(""), _SECRET_ACCESS_INVALID);
        ASSERT_EQ(http_verb_from_string("PATCH"), HTTP_VERB_PATCH);
        ASSERT_EQ(http_verb_from_string("patch"), 0);
        ASSERT_EQ(http_verb_from_string(NULL), 0);
        ASSERT_NULL(configuration_free(NULL));
}
