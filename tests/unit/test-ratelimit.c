/* SPDX-License-Identifier: Apache-2.0 */
/*
 * util/ratelimit: first event logged, the rest of a burst counted, at most
 * one summary per interval, nothing lost between lines. Times are made up
 * (the limiter takes the clock from its caller), so nothing here waits.
 */
#include "tests.h"
#include "util/ratelimit.h"

#define S USEC_PER_SEC_RL

TEST(first_then_held_then_summary) {
        RateLimit rl = RATELIMIT_INIT(10 * S);
        uint64_t held = 99;

        /* A monotonic clock may start near 0: the first event still goes out. */
        ASSERT_EQ(ratelimit_event(&rl, 0, &held), RATELIMIT_FIRST);
        ASSERT_EQ(held, 0);
        for (int i = 0; i < 244; i++)
                ASSERT_EQ(ratelimit_event(&rl, (uint64_t) i * 1000, &held), RATELIMIT_HELD);
        ASSERT_EQ(rl.held, 244);
        /* Just short of the interval: still held. */
        ASSERT_EQ(ratelimit_event(&rl, 10 * S - 1, &held), RATELIMIT_HELD);
        ASSERT_EQ(ratelimit_event(&rl, 10 * S + 1, &held), RATELIMIT_SUMMARY);
        ASSERT_EQ(held, 245);
        ASSERT_EQ(rl.held, 0);
        ASSERT_EQ(rl.total, 247);
}

TEST(quiet_interval_resets) {
        RateLimit rl = RATELIMIT_INIT(10 * S);
        uint64_t held;

        ASSERT_EQ(ratelimit_event(&rl, 5 * S, &held), RATELIMIT_FIRST);
        /* Nothing held back in between: the next line after the interval is a plain first. */
        ASSERT_EQ(ratelimit_event(&rl, 100 * S, &held), RATELIMIT_FIRST);
        ASSERT_EQ(held, 0);
        ASSERT_EQ(ratelimit_event(&rl, 101 * S, &held), RATELIMIT_HELD);
}

TEST(flush_reports_tail_once) {
        RateLimit rl = RATELIMIT_INIT(10 * S);

        ASSERT_EQ(ratelimit_next_flush(&rl, 1), UINT64_MAX);
        ASSERT_EQ(ratelimit_event(&rl, 1 * S, NULL), RATELIMIT_FIRST);
        ASSERT_EQ(ratelimit_event(&rl, 2 * S, NULL), RATELIMIT_HELD);
        ASSERT_EQ(ratelimit_event(&rl, 3 * S, NULL), RATELIMIT_HELD);
        ASSERT_EQ(ratelimit_next_flush(&rl, 3 * S), 8 * S);
        ASSERT_EQ(ratelimit_flush(&rl, 5 * S), 0); /* too early */
        ASSERT_EQ(ratelimit_flush(&rl, 11 * S), 2);
        ASSERT_EQ(ratelimit_flush(&rl, 30 * S), 0); /* already reported */
        /* The flush counted as a line: an event right after it is held. */
        ASSERT_EQ(ratelimit_event(&rl, 12 * S, NULL), RATELIMIT_HELD);
        ASSERT_EQ(ratelimit_event(&rl, 22 * S, NULL), RATELIMIT_SUMMARY);
}

TEST(clock_backwards_is_no_time) {
        RateLimit rl = RATELIMIT_INIT(10 * S);

        ASSERT_EQ(ratelimit_event(&rl, 50 * S, NULL), RATELIMIT_FIRST);
        ASSERT_EQ(ratelimit_event(&rl, 1 * S, NULL), RATELIMIT_HELD);
        ASSERT_EQ(ratelimit_flush(&rl, 2 * S), 0);
        ASSERT_EQ(ratelimit_next_flush(&rl, 2 * S), 10 * S);
}
