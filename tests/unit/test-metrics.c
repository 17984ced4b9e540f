/* SPDX-License-Identifier: Apache-2.0 */
/*
 * core/metrics.c: what recording puts in the exposition. The latency buckets
 * at and around their bounds (recording looks most of them up in a table,
 * the rest by a walk), the sums in daprd's units, the method labels, and the
 * series a repeated request finds again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "core/metrics.h"
#include "core/registry.h"
#include "util/cleanup.h"
#include "tests.h"

static const char *route_of(unsigned route) {
        return route == 0 ? "/r" : "/other";
}

/* The value of the one exposition line that starts with prefix (-1: none; -2: more than one). */
static double value_of(const char *text, const char *prefix) {
        double v = -1;
        size_t n = strlen(prefix);
        for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
                if (strncmp(l, prefix, n) == 0) {
                        if (v != -1)
                                return -2;
                        v = strtod(l + n, NULL);
                }
        return v;
}

TEST(latency_buckets_at_their_bounds) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        Registry *r = registry_new(e);
        ASSERT_NOT_NULL(r);
        metrics_set_route_labels(route_of);

        /* microseconds: bounds are 1, 2, 3, ... 100, 130, ... 100000 ms */
        static const uint64_t lat[] = { 0, 1000, 1001, 2000, 6001, 8000, 100000, 100001, 99999999, 100000001 };
        uint64_t sum = 0;
        for (size_t i = 0; i < ELEMENTSOF(lat); i++) {
                metrics_http_server_begin(r->metrics, 0, METRICS_GET, 10);
                metrics_http_server_end(r->metrics, 0, METRICS_GET, 200, 20, lat[i]);
                sum += lat[i];
        }
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        ASSERT_OK(metrics_format(r, &text, &len));

        /* cumulative counts, as Prometheus wants them */
        static const struct {
                const char *le;
                double count;
        } want[] = {
                { "1", 2 },  { "2", 4 },     { "3", 4 },      { "6", 4 },        { "8", 6 },
                { "100", 7 }, { "130", 8 }, { "50000", 8 }, { "100000", 9 }, { "+Inf", 10 },
        };
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                char prefix[256];
                snprintf(prefix, sizeof prefix, "dapr_http_server_latency_bucket{app_id=\"\",method=\"GET\",path=\"/r\",status=\"200\",le=\"%s\"} ",
                         want[i].le);
                if (value_of(text, prefix) != want[i].count)
                        fprintf(stderr, "%s\n", text);
                ASSERT_TRUE(value_of(text, prefix) == want[i].count);
        }
        /* the sum in milliseconds, the size sums in bytes */
        double ms = value_of(text, "dapr_http_server_latency_sum{app_id=\"\",method=\"GET\",path=\"/r\",status=\"200\"} ");
        ASSERT_TRUE(ms > (double) sum / 1000.0 - 1e-6 && ms < (double) sum / 1000.0 + 1e-6);
        ASSERT_TRUE(value_of(text, "dapr_http_server_request_bytes_sum{app_id=\"\"} ") == 10.0 * ELEMENTSOF(lat));
        ASSERT_TRUE(value_of(text, "dapr_http_server_response_bytes_sum{app_id=\"\"} ") == 20.0 * ELEMENTSOF(lat));
        /* a repeated request counts in the same series, whatever the cache of the last one held */
        ASSERT_TRUE(value_of(text, "dapr_http_server_request_count{app_id=\"\",method=\"GET\",path=\"/r\"} ") ==
                    (double) ELEMENTSOF(lat));
        r = registry_free(r);
}

TEST(series_alternating_stay_apart) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        Registry *r = registry_new(e);
        ASSERT_NOT_NULL(r);
        metrics_set_route_labels(route_of);
        for (int i = 0; i < 5; i++) {
                metrics_http_server_begin(r->metrics, 0, METRICS_GET, 0);
                metrics_http_server_end(r->metrics, 0, METRICS_GET, 200, 0, 10);
                metrics_http_server_begin(r->metrics, 1, METRICS_POST, 0);
                metrics_http_server_end(r->metrics, 1, METRICS_POST, i % 2 ? 500 : 204, 0, 10);
        }
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        ASSERT_OK(metrics_format(r, &text, &len));
        ASSERT_TRUE(value_of(text, "dapr_http_server_request_count{app_id=\"\",method=\"GET\",path=\"/r\"} ") == 5);
        ASSERT_TRUE(value_of(text, "dapr_http_server_request_count{app_id=\"\",method=\"POST\",path=\"/other\"} ") == 5);
        ASSERT_TRUE(value_of(text, "dapr_http_server_response_count{app_id=\"\",method=\"POST\",path=\"/other\",status=\"204\"} ") == 3);
        ASSERT_TRUE(value_of(text, "dapr_http_server_response_count{app_id=\"\",method=\"POST\",path=\"/other\",status=\"500\"} ") == 2);
        ASSERT_TRUE(value_of(text, "dapr_http_server_response_count{app_id=\"\",method=\"GET\",path=\"/r\",status=\"200\"} ") == 5);
        r = registry_free(r);
}

TEST(method_labels) {
        ASSERT_EQ(metrics_method("GET"), METRICS_GET);
        ASSERT_EQ(metrics_method("POST"), METRICS_POST);
        ASSERT_EQ(metrics_method("PUT"), METRICS_PUT);
        ASSERT_EQ(metrics_method("PATCH"), METRICS_PATCH);
        ASSERT_EQ(metrics_method("DELETE"), METRICS_DELETE);
        ASSERT_EQ(metrics_method("HEAD"), METRICS_HEAD);
        ASSERT_EQ(metrics_method("OPTIONS"), METRICS_OPTIONS);
        /* near misses, and strings shorter than the name they start like */
        static const char *const other[] = { "P", "PO", "POS", "POSTS", "post", "PU", "PUTT", "", "GETX", "BREW" };
        for (size_t i = 0; i < ELEMENTSOF(other); i++) {
                char *copy = strdup(other[i]); /* its own allocation, so that ASan sees a read past it */
                ASSERT_NOT_NULL(copy);
                ASSERT_EQ(metrics_method(copy), METRICS_METHOD_OTHER);
                free(copy);
        }
        ASSERT_EQ(metrics_method(NULL), METRICS_METHOD_OTHER);
}

