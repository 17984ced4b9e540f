/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/resiliency.c: the document loader, lookups, breakers, back-off. */
#include <stdlib.h>
#include <string.h>

#include "core/resiliency.h"
#include "tests.h"

typedef struct {
        Resiliency *set;
        unsigned n_errors;
        char *first_error;
} Load;

static void found(ResiliencyDoc *d, void *userdata) {
        Load *l = userdata;
        ASSERT_OK(resiliency_add(l->set, d));
}

static void error(const ConfError *e, void *userdata) {
        Load *l = userdata;
        if (!l->first_error)
                l->first_error = conf_error_format(e);
        l->n_errors++;
}

static Load load(const char *text) {
        Load l = { .set = resiliency_new() };
        ASSERT_NOT_NULL(l.set);
        (void) resiliency_parse("res.yaml", text, strlen(text), found, error, &l);
        return l;
}

static void load_done(Load *l) {
        resiliency_unref(l->set);
        free(l->first_error);
}

#define HEAD "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\n"

static void bad(const char *text, const char *want) {
        Load l = load(text);
        ASSERT_EQ(l.set->n_docs, 0);
        ASSERT_EQ(l.n_errors, 1);
        if (!strstr(l.first_error, want)) {
                fprintf(stderr, "expected '%s' in '%s'\n", want, l.first_error);
                ASSERT_TRUE(false);
        }
        load_done(&l);
}

TEST(refused_with_line) {
        bad(HEAD "spec:\n  policies:\n    retries:\n      r:\n        policy: linear\n",
            "res.yaml:9: field 'spec.policies.retries.policy': expected constant or exponential");
        bad(HEAD "spec:\n  policies:\n    retries:\n      r:\n        maxRetry: 3\n", "res.yaml:9: field "
            "'spec.policies.retries': unknown key 'maxRetry'");
        bad(HEAD "spec:\n  policies:\n    timeouts:\n      t: 5 seconds\n", "res.yaml:8:");
        bad(HEAD "spec:\n  policies:\n    circuitBreakers:\n      c:\n        trip: consecutiveFailures >= 3 || x\n",
            "res.yaml:9: field 'spec.policies.circuitBreakers.trip'");
        bad(HEAD "spec:\n  targets:\n    actors:\n      a:\n        circuitBreaker: c\n",
            "must include circuitBreakerScope");
        bad(HEAD "spec: {}\ntargets: {apps: {}}\n", "'targets' belongs under 'spec'");
}

TEST(durations) {
        uint64_t u;
        ASSERT_OK(resiliency_parse_duration("1m30s", &u));
        ASSERT_EQ(u, 90000000ULL);
        ASSERT_OK(resiliency_parse_duration("1.5s", &u));
        ASSERT_EQ(u, 1500000ULL);
        ASSERT_OK(resiliency_parse_duration("250", &u)); /* daprd: a bare integer is milliseconds */
        ASSERT_EQ(u, 250000ULL);
        ASSERT_OK(resiliency_parse_duration("100ms", &u));
        ASSERT_EQ(u, 100000ULL);
        ASSERT_TRUE(resiliency_parse_duration("5 s", &u) < 0);
        ASSERT_TRUE(resiliency_parse_duration("s", &u) < 0);
        ASSERT_TRUE(resiliency_parse_duration("", &u) < 0);
}

TEST(trip_expressions) {
        uint64_t c[_TRIP_VAR_MAX] = {};
        const char *msg;
        TripExpr e;
        ASSERT_OK(resiliency_parse_trip("consecutiveFailures >= 3 && requests > 4 || totalFailures == 9", &e, &msg));
        ASSERT_EQ(e.n, 3);
        c[TRIP_CONSECUTIVE_FAILURES] = 3;
        ASSERT_TRUE(!resiliency_trip_eval(&e, c));
        c[TRIP_REQUESTS] = 5;
        ASSERT_TRUE(resiliency_trip_eval(&e, c));
        c[TRIP_CONSECUTIVE_FAILURES] = 0;
        c[TRIP_TOTAL_FAILURES] = 9;
        ASSERT_TRUE(resiliency_trip_eval(&e, c));
        ASSERT_TRUE(resiliency_parse_trip("consecutiveFailures >= -1", &e, &msg) < 0);
        ASSERT_TRUE(resiliency_parse_trip("(consecutiveFailures >= 1)", &e, &msg) < 0);
        ASSERT_TRUE(resiliency_parse_trip("consecutiveFailures >= 1 &&", &e, &msg) < 0);
        ASSERT_TRUE(resiliency_parse_trip("failures >= 1", &e, &msg) < 0);
}

static const char *const full =
        HEAD "scopes: [a, b]\nspec:\n  policies:\n    timeouts: {t: 2s}\n"
        "    retries:\n      r: {maxRetries: 2, duration: 1s}\n"
        "      DefaultStatestoreComponentOutboundRetryPolicy: {maxRetries: 7}\n"
        "      DefaultRetryPolicy: {maxRetries: 9}\n"
        "    circuitBreakers:\n      c: {timeout: 10s, trip: consecutiveFailures >= 2, maxRequests: 1}\n"
        "  targets:\n    apps: {x: {timeout: t, retry: r, circuitBreaker: c}}\n"
        "    components: {s: {outbound: {retry: r}}}\n";

TEST(lookup_targets_defaults_scopes) {
        Load l = load(full);
        ResiliencyPolicy p;
        ASSERT_EQ(l.n_errors, 0);
        ASSERT_EQ(resiliency_lookup(l.set, "a", RESILIENCY_APP, "x", NULL, &p), 1);
        ASSERT_EQ(p.timeout_usec, 2000000ULL);
        ASSERT_EQ(p.retry->max_retries, 2);
        ASSERT_NOT_NULL(p.breaker);
        /* another app: the document is scoped to a and b */
        ASSERT_EQ(resiliency_lookup(l.set, "z", RESILIENCY_APP, "x", NULL, &p), 0);
        /* not targeted: Default<level>RetryPolicy, the most specific first */
        ASSERT_EQ(resiliency_lookup(l.set, "a", RESILIENCY_COMPONENT_OUTBOUND, "other", "Statestore", &p), 1);
        ASSERT_EQ(p.retry->max_retries, 7);
        ASSERT_EQ(resiliency_lookup(l.set, "a", RESILIENCY_COMPONENT_INBOUND, "other", "Pubsub", &p), 1);
        ASSERT_EQ(p.retry->max_retries, 9);
        ASSERT_EQ(resiliency_lookup(l.set, "b", RESILIENCY_APP, "y", NULL, &p), 1);
        ASSERT_EQ(p.retry->max_retries, 9);
        ASSERT_NULL(p.breaker);
        load_done(&l);
}

TEST(builtin_overrides) {
        Load l = load(HEAD "spec:\n  policies:\n    retries:\n      DaprBuiltInServiceRetries: {maxRetries: 1}\n");
        Load l2 = load(HEAD "spec:\n  policies:\n    retries:\n      DaprBuiltInServiceRetries: {maxRetries: 9}\n");
        ASSERT_EQ(resiliency_builtin_retries(NULL, "a", "DaprBuiltInServiceRetries", 3), 3);
        ASSERT_EQ(resiliency_builtin_retries(l.set, "a", "DaprBuiltInServiceRetries", 5), 3); /* at least 3 */
        ASSERT_EQ(resiliency_builtin_retries(l2.set, "a", "DaprBuiltInServiceRetries", 3), 9);
        ASSERT_EQ(resiliency_builtin_retries(l2.set, "a", "DaprBuiltInActorRetries", 3), 3);
        load_done(&l);
        load_done(&l2);
}

TEST(breaker_opens_half_opens_closes) {
        Load l = load(full);
        ResiliencyPolicy p;
        uint64_t gen, now = 1000000;
        const char *msg;
        ASSERT_EQ(resiliency_lookup(l.set, "a", RESILIENCY_APP, "x", NULL, &p), 1);
        ResiliencyBreaker *b = p.breaker;
        for (int i = 0; i < 2; i++) {
                ASSERT_OK(resiliency_breaker_allow(b, now, &gen, &msg));
                resiliency_breaker_report(b, gen, false, now);
        }
        ASSERT_EQ(resiliency_breaker_state(b, now), BREAKER_OPEN);
        ASSERT_ERROR(resiliency_breaker_allow(b, now + 9000000, &gen, &msg), EHOSTUNREACH);
        ASSERT_STREQ(msg, "circuit breaker is open");
        /* the same breaker again from a second lookup */
        ASSERT_EQ(resiliency_lookup(l.set, "a", RESILIENCY_APP, "x", NULL, &p), 1);
        ASSERT_TRUE(p.breaker == b);
        now += 10000000;
        ASSERT_EQ(resiliency_breaker_state(b, now), BREAKER_HALF_OPEN);
        ASSERT_OK(resiliency_breaker_allow(b, now, &gen, &msg));
        uint64_t g2;
        ASSERT_ERROR(resiliency_breaker_allow(b, now, &g2, &msg), EHOSTUNREACH); /* one probe only */
        ASSERT_STREQ(msg, "too many requests");
        resiliency_breaker_report(b, gen, true, now);
        ASSERT_EQ(resiliency_breaker_state(b, now), BREAKER_CLOSED);
        /* a failed probe opens it again */
        for (int i = 0; i < 2; i++) {
                ASSERT_OK(resiliency_breaker_allow(b, now, &gen, &msg));
                resiliency_breaker_report(b, gen, false, now);
        }
        now += 10000000;
        ASSERT_OK(resiliency_breaker_allow(b, now, &gen, &msg));
        resiliency_breaker_report(b, gen, false, now);
        ASSERT_EQ(resiliency_breaker_state(b, now), BREAKER_OPEN);
        load_done(&l);
}

TEST(actor_breakers_scopes_and_cache) {
        Load l = load(HEAD "spec:\n  policies:\n    retries:\n      r: {maxRetries: 2}\n"
                           "      DefaultActorRetryPolicy: {maxRetries: 4}\n"
                           "    circuitBreakers:\n      cb: {trip: consecutiveFailures >= 1}\n"
                           "      DefaultCircuitBreakerPolicy: {}\n"
                           "    timeouts:\n      t: 1s\n"
                           "  targets:\n    actors:\n"
                           "      ById: {retry: r, timeout: t, circuitBreaker: cb, circuitBreakerScope: id,"
                           " circuitBreakerCacheSize: 2}\n"
                           "      Both: {circuitBreaker: cb, circuitBreakerScope: both}\n"
                           "      ByType: {circuitBreaker: cb, circuitBreakerScope: type}\n");
        ResiliencyPolicy p1, p2, p3, p;
        ASSERT_EQ(l.n_errors, 0);
        ASSERT_EQ(resiliency_actor_policy(l.set, "a", "ById", "1", &p1), 1);
        ASSERT_EQ(p1.retry->max_retries, 2);
        ASSERT_EQ(p1.timeout_usec, 0ULL); /* the timeout is the post-lock policy's */
        ASSERT_EQ(resiliency_actor_timeout(l.set, "a", "ById"), 1000000ULL);
        ASSERT_STREQ(p1.breaker->target, "ById-1");
        ASSERT_EQ(resiliency_actor_policy(l.set, "a", "ById", "1", &p), 1);
        ASSERT_TRUE(p.breaker == p1.breaker);
        resiliency_breaker_release(p.breaker);
        /* another caller has breakers of its own */
        ASSERT_EQ(resiliency_actor_policy(l.set, "b", "ById", "1", &p), 1);
        ASSERT_TRUE(p.breaker != p1.breaker);
        resiliency_breaker_release(p.breaker);
        /* a cache of 2: the third id pushes out the least recently used, even while it is held */
        ASSERT_EQ(resiliency_actor_policy(l.set, "a", "ById", "2", &p2), 1);
        ASSERT_EQ(resiliency_actor_policy(l.set, "a", "ById", "3", &p3), 1);
        ASSERT_NULL(p1.breaker->cache);
        uint64_t gen;
        const char *msg;
        ASSERT_OK(resiliency_breaker_allow(p1.breaker, 1, &gen, &msg)); /* still usable by its holder */
        resiliency_breaker_report(p1.breaker, gen, false, 1);
        ASSERT_EQ(resiliency_actor_policy(l.set, "a", "ById", "1", &p), 1);
        ASSERT_TRUE(p.breaker != p1.breaker);
        ASSERT_EQ(resiliency_breaker_state(p.breaker, 1), BREAKER_CLOSED); /* forgotten: a new one */
        resiliency_breaker_release(p.breaker);
        resiliency_breaker_release(p1.breaker); /* freed here (ASan) */
        resiliency_breaker_release(p2.breaker);
        resiliency_breaker_release(p3.breaker);
        /* "both" is "id" in daprd; "type" shares one breaker */
        ASSERT_EQ(resiliency_actor_policy(l.set, "a", "Both", "x", &p), 1);
        ASSERT_STREQ(p.breaker->target, "Both-x");
        resiliency_breaker_release(p.breaker);
        ASSERT_EQ(resiliency_actor_policy(l.set, "a", "ByType", "x", &p1), 1);
        ASSERT_EQ(resiliency_actor_policy(l.set, "a", "ByType", "y", &p2), 1);
        ASSERT_TRUE(p1.breaker == p2.breaker);
        ASSERT_STREQ(p1.breaker->target, "ByType");
        ASSERT_NULL(p1.retry);
        resiliency_breaker_release(p1.breaker);
        resiliency_breaker_release(p2.breaker);
        /* no target: the Default* policies, one breaker per type */
        ASSERT_EQ(resiliency_actor_policy(l.set, "a", "Other", "1", &p), 1);
        ASSERT_EQ(p.retry->max_retries, 4);
        ASSERT_STREQ(p.breaker->target, "Other");
        resiliency_breaker_release(p.breaker);
        ASSERT_EQ(resiliency_actor_policy(NULL, "a", "Other", "1", &p), 0);
        ASSERT_NULL(p.breaker);
        load_done(&l);
}

TEST(backoff) {
        ResiliencyRetry c = { .duration_usec = 5000, .max_retries = 2 };
        uint64_t d;
        ASSERT_TRUE(resiliency_retry_next(&c, 1, 0, &d));
        ASSERT_EQ(d, 5000ULL);
        ASSERT_TRUE(resiliency_retry_next(&c, 2, 0, &d));
        ASSERT_TRUE(!resiliency_retry_next(&c, 3, 0, &d));
        ResiliencyRetry e = { .exponential = true, .initial_interval_usec = 500000, .multiplier = 1.5,
                              .randomization = 0.5, .max_interval_usec = 1000000, .max_elapsed_usec = 60000000,
                              .max_retries = -1 };
        for (unsigned i = 1; i < 50; i++) {
                ASSERT_TRUE(resiliency_retry_next(&e, i, 0, &d));
                ASSERT_TRUE(d >= 250000 && d <= 1500001);
        }
        ASSERT_TRUE(!resiliency_retry_next(&e, 3, 60000000, &d)); /* maxElapsedTime */
}
