/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The time formats of Dapr's actor timers and reminders (dueTime, period,
 * ttl): Go durations ("1h30m", "0h0m3s0ms", "-1.5s", "0"), ISO 8601
 * durations ("PT3S", "P1DT2H", "P1M", with an optional "Rn/" repetition
 * prefix where a period is meant) and RFC 3339 times. Pure functions of their
 * input, no I/O, fuzzed by tests/fuzz/fuzz-actor-time.c.
 *
 * Dapr parses these in pkg/.../timeutils; we follow daprd's order: an ISO
 * duration first, then a Go duration, then (for points in time) RFC 3339.
 * Times are whole microseconds; daprd keeps nanoseconds but truncates stored
 * times to whole seconds, which we do where we store them.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* A period: calendar parts (ISO P1Y2M3D, weeks as 7 days) plus a fixed part. All >= 0. */
typedef struct ActorPeriod {
        int years, months, days;
        int64_t usec;
} ActorPeriod;

/* When a timer or reminder fires. Times are CLOCK_REALTIME microseconds. */
typedef struct ActorSchedule {
        int64_t first_usec;     /* the first fire */
        bool periodic;          /* period given and not zero */
        ActorPeriod period;
        int64_t repetitions;    /* fires in all; -1 without bound */
        int64_t expiry_usec;    /* no fire at or after this time; 0 none */
} ActorSchedule;

/* Go's time.ParseDuration, in microseconds (nanoseconds truncated). -EINVAL, -ERANGE. */
int actor_parse_go_duration(const char *s, int64_t *ret_usec);
/*
 * "[Rn/]P[nY][nM][nW][nD][T[nH][nM][nS]]": *ret_repetitions is n, or -1 without the prefix (then
 * it may be NULL, and a prefix is refused with -EINVAL). n == 0 is refused, as daprd does.
 */
int actor_parse_iso_duration(const char *s, ActorPeriod *ret, int64_t *ret_repetitions);
/* RFC 3339 ("2026-12-07T05:00:00Z", "...+02:00", fractions allowed, dropped). */
int actor_parse_rfc3339(const char *s, int64_t *ret_usec);
/* Formats an RFC 3339 UTC time with whole seconds; buf of at least 32 bytes. */
char *actor_format_rfc3339(int64_t usec, char *buf);

/* The time one period after from (calendar parts first, in UTC, as Go's AddDate, then the fixed part). */
int64_t actor_period_add(const ActorPeriod *p, int64_t from_usec);
bool actor_period_is_zero(const ActorPeriod *p);

/*
 * dueTime, period, ttl as given (NULL or "" for absent) at time now. *reterr is a static text
 * saying which field is wrong and why. -EINVAL on bad input; a ttl already passed is -EINVAL too.
 */
int actor_schedule_parse(const char *due, const char *period, const char *ttl, int64_t now_usec,
                         ActorSchedule *ret, const char **reterr);
