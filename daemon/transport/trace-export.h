/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The trace exporter: sends the spans queued in core/trace.h to the
 * collector named by the Dapr Configuration (config.yaml spec.tracing):
 * otel.endpointAddress with protocol http (OTLP/HTTP, protobuf encoding as
 * daprd sends it, POST <endpoint>/v1/traces; http:// unless otel.isSecure) or, without otel,
 * zipkin.endpointAddress (Zipkin v2 JSON, POST to the URL as given).
 * spec.tracing.stdout also writes each span as one JSON line on stdout.
 *
 * Batched (at most TRACE_BATCH_MAX spans a request, every second or as soon
 * as TRACE_BATCH_READY are queued), one request at a time. The encoding and the
 * sending run on a thread of the exporter's own: the loop thread only copies
 * each finished span into the lock-free ring of core/trace.h and, once per
 * batch ready, wakes the thread (an eventfd write), so the export costs the
 * request path nothing else and never blocks it. A plain http:// collector
 * is sent to by trace-http.c's client (one kept-alive connection, the body
 * written as is); anything else (https://) through libcurl's multi
 * interface. The thread sleeps in poll() (curl_multi_poll() with libcurl)
 * until woken, a transfer moves, or a tick passes. A failed
 * batch is sent again with backoff (0.5 s doubling, up to 30 s)
 * TRACE_RETRIES times, then counted as dropped; meanwhile new spans wait in
 * the bounded queue, past which they are dropped and counted. On a graceful
 * stop what is queued is sent once more (bounded by TRACE_FLUSH_USEC) before
 * the daemon exits; the thread tells the loop through a second eventfd.
 */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "../forward.h"

#define TRACE_BATCH_MAX 1024
/* A batch goes out once this many spans wait (or a second passed): the thread is woken early enough
 * that the queue has room for what arrives while it is not yet scheduled (the machine busy). */
#define TRACE_BATCH_READY 512
#define TRACE_RETRIES 5
#define TRACE_FLUSH_USEC (2ULL * 1000000)

typedef struct TraceExporter TraceExporter;

/*
 * Applies c's spec.tracing (NULL: none): sets the exporter up, changes it, or
 * takes it down (then *e becomes NULL). Errors are logged; tracing stays off.
 */
void trace_exporter_configure(TraceExporter **e, sd_event *event, const Configuration *c);
TraceExporter *trace_exporter_free(TraceExporter *e);

/* Sends what is queued, then runs done on the loop (at once when nothing is, or after TRACE_FLUSH_USEC at
 * most). */
typedef void (*TraceFlushedFn)(void *userdata);
void trace_exporter_flush(TraceExporter *e, TraceFlushedFn done, void *userdata);
