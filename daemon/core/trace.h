/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Finished spans waiting for the trace exporter (transport/trace-export.c):
 * a bounded ring, preallocated when an exporter is configured. Recording
 * copies one fixed-size Span into it (no allocation, no syscall); past its
 * capacity spans are dropped and counted (mooring_trace_spans_dropped_total).
 *
 * Threads: spans are recorded on the loop thread (the one producer) and read
 * by the exporter's thread (the one consumer): a single-producer,
 * single-consumer ring with no lock. The producer fills a slot and then
 * publishes it (release store of the tail); the consumer reads slots below
 * the tail it loaded (acquire) in place and gives them back with
 * trace_queue_pop() (release store of the head), which the producer loads
 * (acquire) before it reuses a slot. The counters are atomic. Everything
 * else here (setup, the current span, the batch-ready hook) is the loop
 * thread's, and trace_queue_setup() runs only while no consumer does.
 *
 * Who records: the HTTP front-end (a SERVER span per inbound API call), the
 * invoke block (a CLIENT span per call into an app). Blocks still to come
 * (actors, bindings, secrets, component operations) record theirs the same
 * way: trace_span_begin() from the context of the call that caused them,
 * trace_span_end() when it is over.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "metrics.h"
#include "tracecontext.h"

#define TRACE_QUEUE_MAX 4096
#define TRACE_NAME_MAX 96
#define TRACE_SERVICE_MAX 64

typedef enum SpanKind {
        SPAN_INTERNAL = 1, /* OTLP's numbers */
        SPAN_SERVER = 2,
        SPAN_CLIENT = 3,
        SPAN_PRODUCER = 4,
        SPAN_CONSUMER = 5,
} SpanKind;

/*
 * The fixed-size fields first and the two strings last, packed one after the other in text[]: a span
 * is queued as its fixed part plus the bytes of text[] in use, which for most spans (short app ids
 * and route names) is two cache lines of the ring rather than the four of the whole struct. Every
 * line the loop thread writes there, the exporter's thread later reads from another CPU, so the
 * lines a span does not touch are what it saves.
 */
typedef struct Span {
        TraceContext ctx;                 /* this span: trace id, span id, sampled flag */
        uint8_t parent_id[8];
        bool has_parent;
        bool error;
        uint8_t kind;                     /* SpanKind */
        uint8_t name_len, service_len;    /* strlen() of the two strings, kept for the encoders */
        unsigned http_status;             /* 0: none */
        uint64_t start_usec, end_usec;    /* CLOCK_MONOTONIC microseconds (see trace_realtime_offset_usec()) */
        /* the service (the app on whose behalf: service.name; "mooringd" for none), NUL, then the name
         * (a route template or "CallLocal/<app>/<method>"), NUL; read them with span_service() and
         * span_name() */
        char text[TRACE_SERVICE_MAX + TRACE_NAME_MAX];
} Span;

static inline const char *span_service(const Span *s) {
        return s->text;
}

static inline const char *span_name(const Span *s) {
        return s->text + s->service_len + 1;
}

/* Is an exporter set up (spans are worth making)? */
bool trace_enabled(void);
/* Sets up (capacity > 0, a power of two) or tears down (0) the ring; never while a consumer runs. -ENOMEM. */
int trace_queue_setup(size_t capacity);

/*
 * Starts s: a child of parent (its trace id and sampled flag), or a new trace sampled with
 * probability rate when parent is NULL. name and service are copied (cut to size).
 */
void trace_span_begin(Span *s, const TraceContext *parent, double rate, SpanKind kind, const char *name,
                      const char *service);
/*
 * The same, started at now_usec (CLOCK_MONOTONIC microseconds, as metrics_now_usec()): a caller that
 * has read the clock for its own figures shares that reading.
 */
void trace_span_begin_at(Span *s, uint64_t now_usec, const TraceContext *parent, double rate, SpanKind kind,
                         const char *name, const char *service);
/* CLOCK_MONOTONIC microseconds, from the vDSO (no system call): the metrics' clock, which spans share. */
static inline uint64_t trace_now_usec(void) {
        return metrics_now_usec();
}
/* CLOCK_REALTIME minus CLOCK_MONOTONIC, microseconds, now: what turns a span's times into Unix times. */
uint64_t trace_realtime_offset_usec(void);

/* Appends n bytes of p to s's name (cut to size): for names made of parts, without printf. */
void trace_span_name_append(Span *s, const char *p, size_t n);
/* Ends s now and queues it if it is sampled (dropped and counted when the ring is full). */
void trace_span_end(Span *s, unsigned http_status, bool error);
/* The same, ended at now_usec (see trace_span_begin_at()). */
void trace_span_end_at(Span *s, uint64_t now_usec, unsigned http_status, bool error);

/*
 * Runs fn (the exporter's) when the queue has just reached n spans: a batch is worth sending now
 * rather than at the next tick. fn runs inside trace_span_end(), on the loop thread and the request's
 * path: it may only wake the exporter, never do its work. fn NULL: none.
 */
void trace_set_batch_ready(size_t n, void (*fn)(void *userdata), void *userdata);

/*
 * The span of the inbound call being handled right now (the front-end sets it around its handler),
 * so that a block's operation started from the handler becomes its child. NULL outside.
 */
void trace_set_current(const TraceContext *c);
const TraceContext *trace_current(void);
/* A child of the current span, if there is one and an exporter (else s stays unused: false). */
bool trace_span_begin_child(Span *s, SpanKind kind, const char *name, const char *service);

/*
 * The queued spans, oldest first, read in place (no copy) by the consumer: trace_queue_at(i) for
 * i < trace_queue_length(), valid until its next trace_queue_pop() or trace_queue_setup().
 * trace_queue_length() may be read by any thread (a gauge: a moment's figure).
 */
size_t trace_queue_length(void);
const Span *trace_queue_at(size_t i);
/* Removes the n oldest (n <= length); consumer only. */
void trace_queue_pop(size_t n);
/* Counts spans the exporter gave up on (as dropped). Any thread. */
void trace_count_dropped(uint64_t n);
void trace_count_exported(uint64_t n);
uint64_t trace_dropped(void);
uint64_t trace_exported(void);

/* Lower-case hex of n bytes into buf (2n + 1). */
void trace_hex(const uint8_t *p, size_t n, char *buf);
