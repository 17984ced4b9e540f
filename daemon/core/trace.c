/* SPDX-License-Identifier: Apache-2.0 */
/* See trace.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../util/cleanup.h"
#include "trace.h"

static Span *ring;
static size_t cap, head, len;
static uint64_t dropped, exported;

bool trace_enabled(void) {
        return ring != NULL;
}

int trace_queue_setup(size_t capacity) {
        if (capacity == cap)
                return 0;
        Span *n = NULL;
        if (capacity > 0) {
                n = calloc(capacity, sizeof *n);
                if (!n)
                        return -ENOMEM;
        }
        /* spans still queued in the old ring are lost: a reconfiguration, counted */
        dropped += len;
        free(ring);
        ring = n;
        cap = capacity;
        head = len = 0;
        return 0;
}

static uint64_t now_ns(void) {
        struct timespec ts;
        (void) clock_gettime(CLOCK_REALTIME, &ts); /* vDSO: no system call */
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static void copy(char *dst, size_t size, const char *src) {
        size_t l = strnlen(strempty(src), size - 1);
        memcpy(dst, strempty(src), l);
        dst[l] = 0;
}

void trace_span_begin(Span *s, const TraceContext *parent, double rate, SpanKind kind, const char *name,
                      const char *service) {
        bool sampled = rate >= 1.0 || (rate > 0 && (double) random() / RAND_MAX < rate);
        *s = (Span){ .kind = (uint8_t) kind, .start_ns = now_ns() };
        trace_context_new_span(parent, sampled, &s->ctx);
        if (parent) {
                memcpy(s->parent_id, parent->span_id, sizeof s->parent_id);
                s->has_parent = true;
        }
        copy(s->name, sizeof s->name, name);
        copy(s->service, sizeof s->service, service && *service ? service : "mooringd");
}

void trace_span_end(Span *s, unsigned http_status, bool error) {
        if (!ring || !(s->ctx.flags & 1))
                return;
        s->end_ns = now_ns();
        s->http_status = http_status;
        s->error = error;
        if (len >= cap) {
                dropped++;
                return;
        }
        ring[(head + len) % cap] = *s;
        len++;
}

static const TraceContext *current;

void trace_set_current(const TraceContext *c) {
        current = c;
}

const TraceContext *trace_current(void) {
        return current;
}

bool trace_span_begin_child(Span *s, SpanKind kind, const char *name, const char *service) {
        if (!ring || !current)
                return false;
        trace_span_begin(s, current, 0, kind, name, service);
        return true;
}

size_t trace_queue_take(Span *out, size_t max) {
        size_t n = 0;
        while (n < max && len > 0) {
                out[n++] = ring[head];
                head = (head + 1) % cap;
                len--;
        }
        return n;
}

size_t trace_queue_length(void) {
        return len;
}

void trace_count_dropped(uint64_t n) {
        dropped += n;
}

void trace_count_exported(uint64_t n) {
        exported += n;
}

uint64_t trace_dropped(void) {
        return dropped;
}

uint64_t trace_exported(void) {
        return exported;
}

void trace_hex(const uint8_t *p, size_t n, char *buf) {
        static const char hex[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                buf[2 * i] = hex[p[i] >> 4];
                buf[2 * i + 1] = hex[p[i] & 15];
        }
        buf[2 * n] = 0;
}
