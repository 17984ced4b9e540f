/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A log rate limiter: the first event of a burst is reported in full, the
 * rest of the burst is only counted, and at most one line per interval says
 * how many were held back. Meant for "a component keeps failing" (issue 10
 * part 6): an operator must see the cause once, and then that it goes on,
 * without the journal drowning in one line per failed request.
 *
 * Dependency-free and clock-free: every call takes the current time from the
 * caller (CLOCK_MONOTONIC microseconds, e.g. from sd_event_now()), so tests
 * drive it with made-up times and the owner decides which clock counts.
 *
 * Usage, per component (or per whatever should be limited separately):
 *
 *         RateLimit rl = RATELIMIT_INIT(10 * USEC_PER_SEC_RL);
 *         uint64_t held;
 *         switch (ratelimit_event(&rl, now, &held)) {
 *         case RATELIMIT_FIRST:   log the cause in full
 *         case RATELIMIT_SUMMARY: log the cause plus "held back N similar"
 *         case RATELIMIT_HELD:    say nothing
 *         }
 *
 * and, from a timer if the owner has one, ratelimit_flush() to emit the
 * summary of a burst that stopped before the interval ran out.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define USEC_PER_SEC_RL UINT64_C(1000000)

typedef struct RateLimit {
        uint64_t interval_usec; /* at most one line per this long */
        uint64_t last_usec;     /* when the last line was allowed; 0 = never */
        uint64_t held;          /* events counted but not reported since then */
        uint64_t total;         /* events ever seen, for metrics */
} RateLimit;

#define RATELIMIT_INIT(interval) ((RateLimit){ .interval_usec = (interval) })

typedef enum RateLimitVerdict {
        RATELIMIT_HELD,    /* inside the interval: count only, do not log */
        RATELIMIT_FIRST,   /* first event after a quiet interval: log it in full */
        RATELIMIT_SUMMARY, /* interval over with events held back: log it with the count */
} RateLimitVerdict;

/*
 * Records one event at now_usec. On RATELIMIT_SUMMARY *ret_held (if not NULL)
 * is the number of events held back since the previous line (this one not
 * included); otherwise it is set to 0. A clock that goes backwards is taken
 * as "no time passed".
 */
RateLimitVerdict ratelimit_event(RateLimit *rl, uint64_t now_usec, uint64_t *ret_held);

/*
 * Returns the number of events held back if the interval since the last
 * line is over (and resets that count, so the caller should log a summary
 * line now), else 0. Lets a timer report the tail of a burst.
 */
uint64_t ratelimit_flush(RateLimit *rl, uint64_t now_usec);

/* Microseconds from now_usec until a flush could report something; UINT64_MAX if nothing is held. */
uint64_t ratelimit_next_flush(const RateLimit *rl, uint64_t now_usec);
