/* SPDX-License-Identifier: Apache-2.0 */
/* See ratelimit.h. */
#include <stddef.h>

#include "ratelimit.h"

static bool interval_over(const RateLimit *rl, uint64_t now_usec) {
        /* last_usec == 0 means "never logged": the very first event always goes out,
         * even when the monotonic clock is still below one interval. */
        if (rl->last_usec == 0)
                return true;
        if (now_usec <= rl->last_usec)
                return false;
        return now_usec - rl->last_usec >= rl->interval_usec;
}

RateLimitVerdict ratelimit_event(RateLimit *rl, uint64_t now_usec, uint64_t *ret_held) {
        RateLimitVerdict v;
        uint64_t held = 0;

        rl->total++;
        if (!interval_over(rl, now_usec)) {
                rl->held++;
                if (ret_held)
                        *ret_held = 0;
                return RATELIMIT_HELD;
        }

        /* A held-back tail that nobody flushed is folded into this line, so no
         * count is lost even when the owner has no timer. */
        held = rl->held;
        v = held > 0 ? RATELIMIT_SUMMARY : RATELIMIT_FIRST;
        rl->held = 0;
        /* 0 is the "never" marker; an event at monotonic time 0 is bumped to 1. */
        rl->last_usec = now_usec > 0 ? now_usec : 1;
        if (ret_held)
                *ret_held = held;
        return v;
}

uint64_t ratelimit_flush(RateLimit *rl, uint64_t now_usec) {
        uint64_t held = rl->held;

        if (held == 0 || !interval_over(rl, now_usec))
                return 0;
        rl->held = 0;
        /* The summary is itself a line: the next one is an interval away. */
        rl->last_usec = now_usec > 0 ? now_usec : 1;
        return held;
}

uint64_t ratelimit_next_flush(const RateLimit *rl, uint64_t now_usec) {
        if (rl->held == 0)
                return UINT64_MAX;
        if (interval_over(rl, now_usec))
                return 0;
        return rl->last_usec + rl->interval_usec - (now_usec > rl->last_usec ? now_usec : rl->last_usec);
}
