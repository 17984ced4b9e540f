/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metrics: the counters and histograms behind GET /metrics, under the names,
 * labels and buckets daprd exports (dapr_http_server_*, dapr_grpc_io_server_*,
 * dapr_http_client_*, dapr_component_*, dapr_runtime_component_*), with the label app_id on
 * everything that belongs to an app. See mooringd(8) for the list.
 *
 * Guarantees:
 *   - Recording costs no syscall and no allocation: every app owns a
 *     preallocated AppMetrics (allocated with the App) whose series live in
 *     fixed open-addressed tables; the loop thread is the only writer.
 *   - Cardinality is bounded whatever callers send: HTTP paths are route
 *     templates (the route's index, labelled by the front-end), methods are a
 *     fixed set, and each table has a fixed number of series; a series that
 *     finds no room is counted in one overflow series whose labels say
 *     "_other".
 *   - spec.metric.enabled: false in an app's Dapr Configuration (or in
 *     config.yaml for callers that are no app) turns recording off for it.
 *
 * Blocks that do not exist yet add a
 * MetricsKind below, record with metrics_component_op(), and give the kind's
 * name and label layout in metrics.c's kind table: the exposition follows.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "../forward.h"



/* Route index for requests that matched no route (service invocation by header, 404s). */
#define METRICS_ROUTE_UNMATCHED 0xFFFFu
/* gRPC method indexes (labelled by the gRPC front-end) are below this; these two are fixed. */
#define METRICS_GRPC_METHODS_MAX 0x3FFEu
#define METRICS_GRPC_PROXY 0x3FFEu    /* a call proxied to an app's own service: "proxy" */
#define METRICS_GRPC_UNKNOWN 0x3FFFu  /* a method mooringd does not serve: "_other" */

/* The method label: a fixed set, whatever a client invents counts as "_other". */
typedef enum MetricsMethod {
        METRICS_GET, METRICS_POST, METRICS_PUT, METRICS_DELETE, METRICS_PATCH, METRICS_HEAD, METRICS_OPTIONS,
        METRICS_METHOD_OTHER, _METRICS_METHOD_MAX,
} MetricsMethod;

MetricsMethod metrics_method(const char *s);

/* Kinds of component operations, each one metric family (count + latencies). */
typedef enum MetricsKind {
        METRICS_STATE,           /* dapr_component_state_*            operation, success */
        METRICS_PUBSUB_EGRESS,   /* dapr_component_pubsub_egress_*     success, topic */
        METRICS_PUBSUB_INGRESS,  /* dapr_component_pubsub_ingress_*    process_status, topic */
        METRICS_OUTPUT_BINDING,  /* dapr_component_output_binding_*    operation, success (bindings block) */
        METRICS_INPUT_BINDING,   /* dapr_component_input_binding_*     success (bindings block) */
        METRICS_SECRET,          /* dapr_component_secret_*            operation, success (secrets block) */
        _METRICS_KIND_MAX,
} MetricsKind;

/* Kinds of calls into an app (the path label of dapr_http_client_*: templates, never raw). */
typedef enum MetricsCallKind {
        METRICS_CALL_INVOKE,     /* service invocation: path "/{method}" */
        METRICS_CALL_DELIVERY,   /* pub/sub delivery: path "/{subscription-route}" */
        METRICS_CALL_CONFIG,     /* GET /dapr/subscribe, /dapr/config */
        METRICS_CALL_PROBE,      /* health probe */
        METRICS_CALL_ACTOR,      /* actor calls (actors block) */
        METRICS_CALL_BINDING,    /* input binding deliveries (bindings block) */
        _METRICS_CALL_KIND_MAX,
} MetricsCallKind;

AppMetrics *app_metrics_new(void);
AppMetrics *app_metrics_free(AppMetrics *m);
/* Recording on or off (spec.metric.enabled); the series are kept. */
void app_metrics_set_enabled(AppMetrics *m, bool enabled);
bool app_metrics_enabled(const AppMetrics *m);

/* Requests received so far (the dashboard's request rate). */
uint64_t app_metrics_requests(const AppMetrics *m);

/* Monotonic microseconds from the vDSO clock (no syscall), for latencies. Inline: it runs several
 * times per request. */
static inline uint64_t metrics_now_usec(void) {
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

/*
 * The HTTP front-end labels route indexes: path_of(i) is the template of route i,
 * valid for the daemon's life. Set once at start.
 */
void metrics_set_route_labels(const char *(*path_of)(unsigned route));
/* The same for the gRPC front-end: name_of(i) is the full name of method i ("/pkg.Service/Method"). */
void metrics_set_grpc_method_labels(const char *(*name_of)(unsigned method));

/* ---- recording (loop thread; m may be NULL: nothing is recorded) ---- */

/* A request's head arrived: dapr_http_server_request_count, _request_bytes. */
void metrics_http_server_begin(AppMetrics *m, unsigned route, MetricsMethod method, uint64_t body_len);
/* Its answer is out (or it ended): _response_count, _latency, _response_bytes. */
void metrics_http_server_end(AppMetrics *m, unsigned route, MetricsMethod method, unsigned status,
                             uint64_t response_len, uint64_t usec);
/* An inbound gRPC call is over: dapr_grpc_io_server_completed_rpcs, _server_latency. method: an index
 * of the front-end's (or METRICS_GRPC_PROXY / _UNKNOWN), code: the gRPC status code. */
void metrics_grpc_server(AppMetrics *m, unsigned method, unsigned code, uint64_t usec);
/* A call into the app is over: dapr_http_client_*. status 0: no answer. */
void metrics_http_client(AppMetrics *m, MetricsCallKind kind, const char *method, unsigned status,
                         uint64_t sent_len, uint64_t received_len, uint64_t usec);
/*
 * A component operation is over. operation is a fixed string of the caller's ("get", "set", ...)
 * or NULL; topic may be NULL. status: success true/false, or for ingress the process status.
 */
void metrics_component_op(AppMetrics *m, MetricsKind kind, const char *component, const char *operation,
                          const char *topic, const char *status, uint64_t usec);

/* dapr_runtime_component_init_total / _init_fail_total (host-wide series, app_id ""). */
void metrics_component_init(AppMetrics *host, const char *component, bool ok);

/* ---- exposition ---- */

/*
 * Writes the Prometheus text format (version 0.0.4) of every app's series plus the
 * process and component figures. Allocates (scrape time only). Returns 0 or -errno.
 */
int metrics_format(Registry *r, char **ret, size_t *ret_len);

/*
 * Other modules' own series (trace export, later blocks): fn writes complete families
 * (HELP, TYPE, samples) to f. Registered once, at start; at most 16.
 */
typedef void (*MetricsWriterFn)(FILE *f, void *userdata);
int metrics_add_writer(MetricsWriterFn fn, void *userdata);
void metrics_remove_writer(MetricsWriterFn fn, void *userdata);
