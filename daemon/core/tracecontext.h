/* SPDX-License-Identifier: Apache-2.0 */
/*
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): the
 * `traceparent` header parsed and written, and child spans made from it.
 * Pure functions apart from the random ids; fuzzed by
 * tests/fuzz/fuzz-invoke-url.c.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define TRACEPARENT_LEN 55 /* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define TRACESTATE_MAX 512

typedef struct TraceContext {
        uint8_t trace_id[16];
        uint8_t span_id[8];
        uint8_t flags;         /* bit 0: sampled */
} TraceContext;

/*
 * Parses a traceparent value. Version 00 must be exactly 55 characters;
 * a higher version may carry more after the fourth field, as the spec
 * asks of parsers. Lower-case hex only; all-zero ids and version ff are
 * invalid. -EINVAL when it is not a valid traceparent.
 */
int traceparent_parse(const char *s, TraceContext *ret);
/* Writes version 00; buf gets TRACEPARENT_LEN characters and a NUL. */
void traceparent_format(const TraceContext *t, char buf[static TRACEPARENT_LEN + 1]);
/* Trace id as 32 hex characters and a NUL. */
void trace_id_format(const TraceContext *t, char buf[static 33]);

/*
 * A new span: child of parent (same trace id and flags, new span id), or a
 * new trace when parent is NULL (sampled when sampled is true).
 */
void trace_context_new_span(const TraceContext *parent, bool sampled, TraceContext *ret);

/* Is s a tracestate value we may forward (bounded, printable ASCII)? */
bool tracestate_is_valid(const char *s);
