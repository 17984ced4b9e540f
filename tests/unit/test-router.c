/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for http/router.c: matching method + escaped path against the real
 * route table (http_routes), parameter capture and unescaping, path
 * normalisation (trailing and repeated slashes), refusal of bad escapes, and
 * http_unescape() on its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/router.h"
#include "util/cleanup.h"
#include "tests.h"

/* Index of the route in http_routes with this method and pattern; fails the test if absent. */
static const Route *route(const char *method, const char *pattern) {
        for (size_t i = 0; i < http_routes_n; i++)
                if (strcmp(http_routes[i].method, method) == 0 && strcmp(http_routes[i].pattern, pattern) == 0)
                        return &http_routes[i];
        fprintf(stderr, "route %s %s not in http_routes\n", method, pattern);
        ASSERT_TRUE(false);
        return NULL;
}

/* Matches against http_routes; expects route `want` (NULL: no match) and param0 if given. */
static void expect_match(const char *method, const char *path, const Route *want, const char *param0) {
        RouteMatch m = {};
        int r;

        fprintf(stderr, "%s %s\n", method, path);
        r = router_match(http_routes, http_routes_n, method, path, &m);
        if (!want) {
                ASSERT_EQ(r, 0);
                ASSERT_EQ(m.n_params, 0);
                return;
        }
        ASSERT_EQ(r, 1);
        ASSERT_TRUE(m.route == want);
        if (param0) {
                ASSERT_EQ(m.n_params, 1);
                ASSERT_STREQ(m.params[0], param0);
        } else
                ASSERT_EQ(m.n_params, 0);
        route_match_done(&m);
        ASSERT_NULL(m.route);
        ASSERT_EQ(m.n_params, 0);
}

TEST(every_route_matches) {
        /* Build a concrete path for each pattern, "{x}" → "value", and expect that very route back. */
        for (size_t i = 0; i < http_routes_n; i++) {
                char path[256] = "";
                size_t n_params = 0;
                for (const char *p = http_routes[i].pattern; *p;) {
                        if (*p == '{') {
                                const char *e = strchr(p, '}');
                                ASSERT_NOT_NULL(e);
                                strcat(path, "value");
                                n_params++;
                                p = e + 1;
                        } else {
                                strncat(path, p, 1);
                                p++;
                        }
                }
                RouteMatch m = {};
                fprintf(stderr, "%s %s\n", http_routes[i].method, path);
                ASSERT_EQ(router_match(http_routes, http_routes_n, http_routes[i].method, path, &m), 1);
                ASSERT_TRUE(m.route == &http_routes[i]);
                ASSERT_EQ(m.n_params, n_params);
                for (size_t j = 0; j < m.n_params; j++)
                        ASSERT_STREQ(m.params[j], "value");
                route_match_done(&m);
        }
}

TEST(named_routes) {
        expect_match("GET", "/v1.0/healthz", route("GET", "/v1.0/healthz"), NULL);
        expect_match("GET", "/v1.0/healthz/outbound", route("GET", "/v1.0/healthz/outbound"), NULL);
        expect_match("GET", "/v1.0/metadata", route("GET", "/v1.0/metadata"), NULL);
        expect_match("PUT", "/v1.0/metadata/mykey", route("PUT", "/v1.0/metadata/{key}"), "mykey");
        expect_match("GET", "/mooring/v1/status", route("GET", "/mooring/v1/status"), NULL);
        expect_match("GET", "/mooring/v1/apps", route("GET", "/mooring/v1/apps"), NULL);
        expect_match("GET", "/mooring/v1/components", route("GET", "/mooring/v1/components"), NULL);
}

TEST(route_flags) {
        ASSERT_TRUE(route("GET", "/v1.0/healthz")->flags & ROUTE_NO_TOKEN);
        ASSERT_TRUE(route("GET", "/v1.0/healthz/outbound")->flags & ROUTE_NO_TOKEN);
        ASSERT_TRUE(!(route("GET", "/v1.0/metadata")->flags & (ROUTE_NO_TOKEN | ROUTE_ADMIN)));
        ASSERT_TRUE(route("GET", "/mooring/v1/status")->flags & ROUTE_ADMIN);
        for (size_t i = 0; i < http_routes_n; i++)
                ASSERT_NOT_NULL(http_routes[i].handler);
}

TEST(params_unescaped) {
        const Route *put = route("PUT", "/v1.0/metadata/{key}");

        expect_match("PUT", "/v1.0/metadata/a%2Fb", put, "a/b");
        expect_match("PUT", "/v1.0/metadata/a%2fb", put, "a/b");
        expect_match("PUT", "/v1.0/metadata/hello%20world", put, "hello world");
        expect_match("PUT", "/v1.0/metadata/a+b", put, "a+b"); /* '+' is only a space in queries */
        expect_match("PUT", "/v1.0/metadata/%25", put, "%");
        expect_match("PUT", "/v1.0/metadata/%2F", put, "/");
        expect_match("PUT", "/v1.0/metadata/caf%C3%A9", put, "caf\xc3\xa9");
        expect_match("PUT", "/v1.0/metadata/a.b-c_d~e", put, "a.b-c_d~e");
}

TEST(trailing_and_duplicate_slashes) {
        const Route *healthz = route("GET", "/v1.0/healthz"), *put = route("PUT", "/v1.0/metadata/{key}");

        expect_match("GET", "/v1.0/healthz/", healthz, NULL);
        expect_match("GET", "/v1.0/healthz//", healthz, NULL);
        expect_match("GET", "//v1.0//healthz", healthz, NULL);
        expect_match("GET", "/v1.0///healthz///", healthz, NULL);
        expect_match("PUT", "/v1.0/metadata/k/", put, "k");
        expect_match("PUT", "/v1.0//metadata//k", put, "k");
}

TEST(wrong_method) {
        expect_match("POST", "/v1.0/healthz", NULL, NULL);
        expect_match("get", "/v1.0/healthz", NULL, NULL); /* methods are case-sensitive */
        expect_match("GET", "/v1.0/metadata/k", NULL, NULL);
        expect_match("DELETE", "/v1.0/metadata/k", NULL, NULL);
        expect_match("PUT", "/v1.0/metadata", NULL, NULL);
        expect_match("", "/v1.0/healthz", NULL, NULL);
}

TEST(unknown_path) {
        expect_match("GET", "/", NULL, NULL);
        expect_match("GET", "/v1.0", NULL, NULL);
        expect_match("GET", "/v1.0/nosuch", NULL, NULL);
        expect_match("GET", "/v1.0/healthzz", NULL, NULL);
        expect_match("GET", "/v1.0/health", NULL, NULL);
        expect_match("GET", "/v1.0/healthz/outbound/x", NULL, NULL);
        expect_match("GET", "/v1.0/Healthz", NULL, NULL);
        expect_match("GET", "/v1.0/healthz%2F", NULL, NULL); /* literal segments compare escaped */
        expect_match("PUT", "/v1.0/metadata/a/b", NULL, NULL);
        expect_match("PUT", "/v1.0/metadata/", NULL, NULL);
        expect_match("PUT", "/v1.0/metadata//", NULL, NULL);
        expect_match("GET", "/v2.0/metadata", NULL, NULL);
}

TEST(invalid_escapes) {
        static const char *const bad[] = {
                "/v1.0/metadata/%zz",
                "/v1.0/metadata/%00",
                "/v1.0/metadata/%4",
                "/v1.0/metadata/a%",
                "/v1.0/metadata/%",
                "/v1.0/metadata/%g1",
                "/v1.0/metadata/%1g",
                "/v1.0/metadata/ok%2",
                "/v1.0/metadata/%4/",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                RouteMatch m = {};
                fprintf(stderr, "PUT %s\n", bad[i]);
                ASSERT_ERROR(router_match(http_routes, http_routes_n, "PUT", bad[i], &m), EINVAL);
                ASSERT_EQ(m.n_params, 0);
        }
}

TEST(invalid_paths) {
        RouteMatch m = {};

        ASSERT_ERROR(router_match(http_routes, http_routes_n, "GET", "", &m), EINVAL);
        ASSERT_ERROR(router_match(http_routes, http_routes_n, "GET", "v1.0/healthz", &m), EINVAL);
        ASSERT_ERROR(router_match(http_routes, http_routes_n, "GET", "*", &m), EINVAL);
        ASSERT_ERROR(router_match(http_routes, http_routes_n, "GET", NULL, &m), EINVAL);
        ASSERT_EQ(router_match(http_routes, 0, "GET", "/v1.0/healthz", &m), 0);
}

/* A private table exercising what the daemon's table does not: "{rest*}" and several parameters. */
static int dummy_handler(HttpRequest *r, const RouteMatch *m) {
        return 0;
}

static const Route test_routes[] = {
        { "GET", "/a/{x}/b/{y}", 0, dummy_handler },
        { "GET", "/files/{rest*}", 0, dummy_handler },
        { "GET", "/too/{a}/{b}/{c}/{d}/{e}", 0, dummy_handler },
};

TEST(rest_and_multiple_params) {
        RouteMatch m = {};

        ASSERT_EQ(router_match(test_routes, ELEMENTSOF(test_routes), "GET", "/a/one/b/t%77o", &m), 1);
        ASSERT_TRUE(m.route == &test_routes[0]);
        ASSERT_EQ(m.n_params, 2);
        ASSERT_STREQ(m.params[0], "one");
        ASSERT_STREQ(m.params[1], "two");
        route_match_done(&m);

        ASSERT_EQ(router_match(test_routes, ELEMENTSOF(test_routes), "GET", "/files/dir//sub/f%20x.txt//", &m),
                  1);
        ASSERT_TRUE(m.route == &test_routes[1]);
        ASSERT_EQ(m.n_params, 1);
        ASSERT_STREQ(m.params[0], "dir//sub/f x.txt");
        route_match_done(&m);

        ASSERT_EQ(router_match(test_routes, ELEMENTSOF(test_routes), "GET", "/files", &m), 0);
        ASSERT_EQ(router_match(test_routes, ELEMENTSOF(test_routes), "GET", "/files//", &m), 0);
        ASSERT_ERROR(router_match(test_routes, ELEMENTSOF(test_routes), "GET", "/files/a/%zz", &m), EINVAL);
        /* A bad escape in a captured segment is an error as soon as it is captured. */
        ASSERT_ERROR(router_match(test_routes, ELEMENTSOF(test_routes), "GET", "/a/%zz/c/d", &m), EINVAL);

        /* More parameters than RouteMatch can hold: refused, nothing leaked. */
        ASSERT_ERROR(router_match(test_routes, ELEMENTSOF(test_routes), "GET", "/too/1/2/3/4/5", &m), EINVAL);
}

static void expect_unescape(const char *in, bool plus, const char *want) {
        _cleanup_free_ char *out = http_unescape(in, strlen(in), plus);
        fprintf(stderr, "unescape \"%s\" plus=%d\n", in, plus);
        if (want)
                ASSERT_STREQ(out, want);
        else
                ASSERT_NULL(out);
}

TEST(unescape) {
        expect_unescape("", false, "");
        expect_unescape("plain", false, "plain");
        expect_unescape("a+b", false, "a+b");
        expect_unescape("a+b", true, "a b");
        expect_unescape("%2B+%2b", true, "+ +");
        expect_unescape("%41%62%7e", false, "Ab~");
        expect_unescape("%7E%7e", true, "~~");
        expect_unescape("100%25", false, "100%");
        expect_unescape("%ff", false, "\xff");
        expect_unescape("%zz", false, NULL);
        expect_unescape("%zz", true, NULL);
        expect_unescape("%", false, NULL);
        expect_unescape("%4", true, NULL);
        expect_unescape("ab%4", false, NULL);
        expect_unescape("%00", false, NULL);
        expect_unescape("x%00y", true, NULL);
        expect_unescape("% 1", false, NULL);
        expect_unescape("%+1", true, NULL);

        /* Only len bytes are read: "%41" cut after "%4" is truncated. */
        ASSERT_NULL(http_unescape("%41", 2, false));
        _cleanup_free_ char *s = http_unescape("abc%41", 3, false);
        ASSERT_STREQ(s, "abc");
        _cleanup_free_ char *z = http_unescape(NULL, 0, false);
        ASSERT_STREQ(z, "");
}

/* The route index must keep the table's first-match order, also where a route with a parameter
 * in its first two segments sits between literal ones, and must not hide a route that a path
 * reaches through repeated slashes. */
static const Route order_table[] = {
        { "GET", "/v1.0/state/{store}/{key}", 0, NULL },  /* 0 */
        { "GET", "/v1.0/{api}/x", 0, NULL },             /* 1: parameter in the second segment */
        { "GET", "/v1.0/state/{store}", 0, NULL },        /* 2 */
        { "*", "/v1.0/state/{store}", 0, NULL },          /* 3: reached by other methods only */
        { "GET", "/metrics", 0, NULL },                   /* 4 */
        { "GET", "/{top}", 0, NULL },                     /* 5 */
        { "GET", "/v1.0/invoke/{id}/method/{m*}", 0, NULL }, /* 6 */
};

static void expect_order(const char *method, const char *path, int want) {
        RouteMatch m;
        int r = router_match(order_table, ELEMENTSOF(order_table), method, path, &m);
        fprintf(stderr, "%s %s -> %d (want %d)\n", method, path, r == 1 ? (int) (m.route - order_table) : -1, want);
        if (want < 0)
                ASSERT_TRUE(r <= 0);
        else {
                ASSERT_EQ(r, 1);
                ASSERT_TRUE(m.route == &order_table[want]);
        }
        route_match_done(&m);
}

TEST(index_keeps_table_order) {
        for (int pass = 0; pass < 2; pass++) { /* the first lookup builds the index, the second uses it */
                expect_order("GET", "/v1.0/state/s/x", 0);
                expect_order("GET", "/v1.0/state/x", 1);  /* route 1 comes before route 2 */
                expect_order("GET", "/v1.0/state/y", 2);
                expect_order("GET", "//v1.0///state/y/", 2);
                expect_order("PUT", "/v1.0/state/y", 3);
                expect_order("GET", "/v1.0/other/x", 1);
                expect_order("GET", "/v1.0/other/y", -1);
                expect_order("GET", "/metrics", 4);
                expect_order("GET", "/metrics/", 4);
                expect_order("GET", "/v1.0", 5);
                expect_order("GET", "/anything", 5);
                expect_order("GET", "/v1.0/invoke/a/method/b/c", 6);
                expect_order("GET", "/v1.0/invoke/a/method", -1);
                expect_order("GET", "/", -1);
        }
}

/* Parameters live in the match while they fit, and are allocated past that. */
TEST(long_params) {
        char path[2200] = "/v1.0/state/";
        size_t n = strlen(path);
        memset(path + n, 'k', 1000);
        path[n + 1000] = '/';
        memset(path + n + 1001, 'v', 1000);
        path[n + 2001] = 0;
        RouteMatch m;
        ASSERT_EQ(router_match(order_table, ELEMENTSOF(order_table), "GET", path, &m), 1);
        ASSERT_TRUE(m.route == &order_table[0]);
        ASSERT_EQ(strlen(m.params[0]), 1000);
        ASSERT_EQ(strlen(m.params[1]), 1000);
        route_match_done(&m);
        ASSERT_EQ(router_match(order_table, ELEMENTSOF(order_table), "GET", "/v1.0/state/a%2Fb/c", &m), 1);
        ASSERT_STREQ(m.params[0], "a/b");
        ASSERT_STREQ(m.params[1], "c");
        ASSERT_TRUE(m.params[0] >= m.buf && m.params[0] < m.buf + sizeof m.buf);
        route_match_done(&m);
}
