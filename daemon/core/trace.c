/* SPDX-License-Identifier: Apache-2.0 */
/* See trace.h. */
#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../util/cleanup.h"
#include "trace.h"

/* A slot per span, on cache lines of its own (the ring is allocated aligned to them). */
typedef struct Slot {
        _Alignas(64) Span span;
} Slot;

static Slot *ring;
static size_t cap;
/* Free-running counts (slot = count & (cap - 1)): head is the consumer's (spans it took), tail the
 * producer's (spans it queued); tail - head spans are queued. See trace.h for who orders what. */
static _Atomic size_t head, tail;
static _Atomic uint64_t dropped, exported;

bool trace_enabled(void) {
        return ring != NULL;
}

int trace_queue_setup(size_t capacity) {
        if (capacity == cap)
                return 0;
        assert((capacity & (capacity - 1)) == 0);
        Slot *n = NULL;
        if (capacity > 0) {
                n = aligned_alloc(_Alignof(Slot), capacity * sizeof *n);
                if (!n)
                        return -ENOMEM;
                memset(n, 0, capacity * sizeof *n);
        }
        /* spans still queued in the old ring are lost: a reconfiguration, counted */
        trace_count_dropped(trace_queue_length());
        free(ring);
        ring = n;
        cap = capacity;
        atomic_store(&head, 0);
        atomic_store(&tail, 0);
        return 0;
}

uint64_t trace_realtime_offset_usec(void) {
        struct timespec ts;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t real = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
        return real - trace_now_usec();
}

/* Copies src into dst, at most max - 1 bytes, and a NUL; returns the length copied. */
static uint8_t copy(char *dst, size_t max, const char *src) {
        size_t l = strnlen(strempty(src), max - 1);
        memcpy(dst, strempty(src), l);
        dst[l] = 0;
        return (uint8_t) l;
}

void trace_span_begin(Span *s, const TraceContext *parent, double rate, SpanKind kind, const char *name,
                      const char *service) {
        trace_span_begin_at(s, trace_now_usec(), parent, rate, kind, name, service);
}

void trace_span_begin_at(Span *s, uint64_t now_usec, const TraceContext *parent, double rate, SpanKind kind,
                         const char *name, const char *service) {
        /* Field by field: the name and service arrays are written up to their terminators, not
         * cleared whole (200 bytes); readers go by name_len and service_len. */
        bool sampled = rate >= 1.0 || (rate > 0 && (double) random() / RAND_MAX < rate);
        s->kind = (uint8_t) kind;
        s->start_usec = now_usec;
        s->end_usec = 0;
        s->http_status = 0;
        s->error = false;
        trace_context_new_span(parent, sampled, &s->ctx);
        s->has_parent = parent != NULL;
        if (parent)
                memcpy(s->parent_id, parent->span_id, sizeof s->parent_id);
        else
                memset(s->parent_id, 0, sizeof s->parent_id);
        s->service_len = copy(s->text, TRACE_SERVICE_MAX, service && *service ? service : "mooringd");
        s->name_len = copy(s->text + s->service_len + 1, TRACE_NAME_MAX, name);
}

void trace_span_name_append(Span *s, const char *p, size_t n) {
        char *name = s->text + s->service_len + 1;
        size_t room = TRACE_NAME_MAX - 1 - s->name_len;
        n = MIN(n, room);
        memcpy(name + s->name_len, p, n);
        s->name_len = (uint8_t) (s->name_len + n);
        name[s->name_len] = 0;
}

static size_t ready_at;
static void (*ready_fn)(void *userdata);
static void *ready_userdata;

void trace_set_batch_ready(size_t n, void (*fn)(void *userdata), void *userdata) {
        ready_at = n;
        ready_fn = fn;
        ready_userdata = userdata;
}

void trace_span_end(Span *s, unsigned http_status, bool error) {
        if (!ring || !(s->ctx.flags & 1))
                return;
        trace_span_end_at(s, trace_now_usec(), http_status, error);
}

void trace_span_end_at(Span *s, uint64_t now_usec, unsigned http_status, bool error) {
        if (!ring || !(s->ctx.flags & 1))
                return;
        s->end_usec = MAX(now_usec, s->start_usec);
        s->http_status = http_status;
        s->error = error;
        /* the producer's own tail needs no ordering; the head must be loaded with acquire: the consumer
         * is done reading the slots below it, which may now be overwritten */
        size_t t = atomic_load_explicit(&tail, memory_order_relaxed);
        size_t h = atomic_load_explicit(&head, memory_order_acquire);
        if (t - h >= cap) {
                trace_count_dropped(1);
                return;
        }
        /* the fixed part and the text in use, not the whole struct (see Span) */
        memcpy(&ring[t & (cap - 1)].span, s, offsetof(Span, text) + s->service_len + 1 + s->name_len + 1);
        atomic_store_explicit(&tail, t + 1, memory_order_release); /* publishes the slot's contents */
        if (t + 1 - h == ready_at && ready_fn)
                ready_fn(ready_userdata);
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

const Span *trace_queue_at(size_t i) {
        size_t h = atomic_load_explicit(&head, memory_order_relaxed); /* the consumer's own */
        assert(i < atomic_load_explicit(&tail, memory_order_relaxed) - h);
        return &ring[(h + i) & (cap - 1)].span;
}

void trace_queue_pop(size_t n) {
        size_t h = atomic_load_explicit(&head, memory_order_relaxed);
        assert(n <= atomic_load_explicit(&tail, memory_order_relaxed) - h);
        /* release: the reads of these slots are done before the producer may reuse them */
        atomic_store_explicit(&head, h + n, memory_order_release);
}

size_t trace_queue_length(void) {
        /* acquire on the tail: the slots it counts are filled (what the consumer relies on); the head
         * first, so that another thread's reading never sees the head past the tail */
        size_t h = atomic_load_explicit(&head, memory_order_acquire);
        return atomic_load_explicit(&tail, memory_order_acquire) - h;
}

void trace_count_dropped(uint64_t n) {
        atomic_fetch_add_explicit(&dropped, n, memory_order_relaxed);
}

void trace_count_exported(uint64_t n) {
        atomic_fetch_add_explicit(&exported, n, memory_order_relaxed);
}

uint64_t trace_dropped(void) {
        return atomic_load_explicit(&dropped, memory_order_relaxed);
}

uint64_t trace_exported(void) {
        return atomic_load_explicit(&exported, memory_order_relaxed);
}

void trace_hex(const uint8_t *p, size_t n, char *buf) {
        static const char hex[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                buf[2 * i] = hex[p[i] >> 4];
                buf[2 * i + 1] = hex[p[i] & 15];
        }
        buf[2 * n] = 0;
}
