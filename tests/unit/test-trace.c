/* SPDX-License-Identifier: Apache-2.0 */
/*
 * core/trace: the ring of finished spans between the loop thread (which
 * records) and the exporter's thread (which reads and pops). Bounded with
 * drops counted, oldest first, the batch-ready hook at the exact length,
 * and, with a real second thread, every span read whole and in order and
 * every span either read or counted as dropped. Nothing here depends on
 * timing: the threads go as fast as they go, only the totals are checked.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/trace.h"
#include "util/cleanup.h"
#include "tests.h"

/* A sampled root span whose every field says n, so that a torn or misplaced copy shows. */
static void record(uint64_t n) {
        char name[32];
        Span s;
        snprintf(name, sizeof name, "span %llu", (unsigned long long) n);
        trace_span_begin_at(&s, n, NULL, 1.0, SPAN_SERVER, name, "svc");
        trace_span_end_at(&s, n + 1, (unsigned) (100 + n % 500), n % 2);
}

static bool span_is(const Span *s, uint64_t n) {
        char name[32];
        snprintf(name, sizeof name, "span %llu", (unsigned long long) n);
        return s->start_usec == n && s->end_usec == n + 1 && s->http_status == 100 + n % 500 &&
               s->error == (n % 2) && s->name_len == strlen(name) && streq(span_name(s), name) &&
               s->service_len == 3 && streq(span_service(s), "svc") && (s->ctx.flags & 1);
}

static unsigned ready_calls;
static void on_ready(void *userdata) {
        ready_calls++;
        ASSERT_EQ(trace_queue_length(), 4);
}

TEST(bounded_oldest_first_drops_counted) {
        uint64_t dropped0 = trace_dropped();

        ASSERT_OK(trace_queue_setup(8));
        ASSERT_TRUE(trace_enabled());
        trace_set_batch_ready(4, on_ready, NULL);
        for (uint64_t i = 0; i < 10; i++)
                record(i);
        ASSERT_EQ(ready_calls, 1);
        ASSERT_EQ(trace_queue_length(), 8);
        ASSERT_EQ(trace_dropped() - dropped0, 2); /* the two that found it full */
        for (size_t i = 0; i < 8; i++)
                ASSERT_TRUE(span_is(trace_queue_at(i), i));
        trace_queue_pop(3);
        ASSERT_EQ(trace_queue_length(), 5);
        ASSERT_TRUE(span_is(trace_queue_at(0), 3));
        /* room again: the ring wraps around */
        for (uint64_t i = 10; i < 13; i++)
                record(i);
        ASSERT_EQ(trace_queue_length(), 8);
        ASSERT_TRUE(span_is(trace_queue_at(4), 7));
        ASSERT_TRUE(span_is(trace_queue_at(5), 10));
        ASSERT_TRUE(span_is(trace_queue_at(7), 12));
        trace_set_batch_ready(0, NULL, NULL);
        /* taking the ring down counts what was still in it */
        ASSERT_OK(trace_queue_setup(0));
        ASSERT_EQ(trace_dropped() - dropped0, 10);
        ASSERT_TRUE(!trace_enabled());
}

#define N_SPANS 200000

static atomic_bool producer_done;

/* The exporter's side: reads what is queued in place, checks it, pops it. */
static void *consumer(void *userdata) {
        uint64_t *ret_read = userdata, next = 0, read = 0;
        for (;;) {
                bool done = atomic_load(&producer_done);
                size_t n = trace_queue_length();
                for (size_t i = 0; i < n; i++) {
                        const Span *s = trace_queue_at(i);
                        /* in order (drops make gaps) and whole */
                        if (s->start_usec < next || !span_is(s, s->start_usec)) {
                                *ret_read = UINT64_MAX;
                                return NULL;
                        }
                        next = s->start_usec + 1;
                }
                trace_queue_pop(n);
                read += n;
                if (done && n == 0)
                        break;
        }
        *ret_read = read;
        return NULL;
}

TEST(two_threads_every_span_read_whole_or_counted) {
        uint64_t dropped0 = trace_dropped(), read = 0;
        pthread_t t;

        ASSERT_OK(trace_queue_setup(64)); /* small: the producer laps the consumer often */
        atomic_store(&producer_done, false);
        ASSERT_EQ(pthread_create(&t, NULL, consumer, &read), 0);
        for (uint64_t i = 0; i < N_SPANS; i++)
                record(i);
        atomic_store(&producer_done, true);
        ASSERT_EQ(pthread_join(t, NULL), 0);
        ASSERT_TRUE(read != UINT64_MAX);
        ASSERT_EQ(read + (trace_dropped() - dropped0), N_SPANS);
        ASSERT_EQ(trace_queue_length(), 0);
        ASSERT_OK(trace_queue_setup(0));
}

TEST(unsampled_spans_are_not_queued) {
        Span s;
        ASSERT_OK(trace_queue_setup(4));
        trace_span_begin_at(&s, 1, NULL, 0.0, SPAN_CLIENT, "x", NULL);
        trace_span_end_at(&s, 2, 200, false);
        ASSERT_EQ(trace_queue_length(), 0);
        ASSERT_OK(trace_queue_setup(0));
}
