/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The route table: method + path pattern → handler, with flags saying who may
 * call it. Matching works on the still-escaped path (as Dapr does), then
 * unescapes captured parameters, so a key may contain "%2F".
 *
 * Pure functions, no I/O: fuzzed by tests/fuzz/fuzz-http-route.c.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../forward.h"

#define ROUTE_PARAMS_MAX 4
/* Captured parameters are unescaped into the match itself while they fit (no allocation on
 * the request path); a longer one is malloc'd. */
#define ROUTE_PARAMS_BUF 512

typedef enum RouteFlags {
        ROUTE_NO_TOKEN = 1 << 0,   /* exempt from dapr-api-token (health) */
        ROUTE_ADMIN = 1 << 1,      /* shared socket only */
        ROUTE_METRICS = 1 << 2,    /* also on MetricsPort= */
        ROUTE_DASHBOARD = 1 << 3,  /* also on DashboardPort= (read-only, no secrets) */
        ROUTE_HEALTH = 1 << 4,     /* a health check: no span (daprd traces no path containing "/healthz") */
        ROUTE_PEER = 1 << 5,       /* also on the peer listener ([Cluster] PeerListen=), the only ones there */
} RouteFlags;

typedef struct RouteMatch RouteMatch;
typedef int (*HttpHandler)(HttpRequest *r, const RouteMatch *m);

typedef struct Route {
        const char *method;        /* "*": any */
        const char *pattern;       /* "/v1.0/metadata/{key}"; "{rest*}" captures the remainder */
        RouteFlags flags;
        HttpHandler handler;
} Route;

struct RouteMatch {
        const Route *route;
        size_t n_params;
        char *params[ROUTE_PARAMS_MAX]; /* unescaped; valid until route_match_done() */
        size_t buf_used;
        char buf[ROUTE_PARAMS_BUF];
};

/* A RouteMatch may point into itself: fill it in place (router_match) and do not copy it. */

void route_match_done(RouteMatch *m);

/*
 * Finds the route for method + path (path without query string).
 * Returns 1 and fills *ret on a match, 0 when nothing matches, -ENOMEM,
 * or -EINVAL for a path that is not a valid escaped path.
 */
int router_match(const Route *table, size_t n, const char *method, const char *path, RouteMatch *ret);

/* Percent-decoding; plus_is_space for query strings. Returns malloc'd or NULL (bad escape / OOM). */
char *http_unescape(const char *s, size_t len, bool plus_is_space);
/* The same into buf when the result fits in size bytes (returns buf), else malloc'd. */
char *http_unescape_buf(const char *s, size_t len, bool plus_is_space, char *buf, size_t size);

/* The daemon's table (http/routes.c). */
extern const Route http_routes[];
extern const size_t http_routes_n;
/* Dapr APIs not served: consulted only when http_routes has no match. */
extern const Route http_missing_routes[];
extern const size_t http_missing_routes_n;
