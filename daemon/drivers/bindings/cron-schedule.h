/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's cron schedules (bindings.cron; robfig/cron v3 with optional
 * seconds, as daprd parses them):
 *   "sec min hour dom month dow" or "min hour dom month dow" (seconds 0),
 *   each field "*", "?", N, N-M, names (JAN-DEC, SUN-SAT), lists with ",",
 *   steps with "/"; day of month and day of week both restricted match
 *   either, as cron does;
 *   "@every 15s" (a Go duration, at least 1 s), "@yearly", "@annually",
 *   "@monthly", "@weekly", "@daily", "@midnight", "@hourly";
 *   an optional "CRON_TZ=Area/City " or "TZ=Area/City " prefix names the
 *   time zone the fields are read in (default: the host's local time).
 * Pure: no I/O but the zone check (the zone must exist in /usr/share/zoneinfo).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct CronSchedule {
        uint64_t second, minute, hour, dom, month, dow; /* bit sets; bit 63: the field was '*' or '?' */
        uint64_t every_usec;                             /* @every: > 0, fields unused */
        char zone[64];                                   /* "" = local time */
} CronSchedule;

/*
 * Parses text into *ret. 0, or -EINVAL with *reterr (static text) saying why.
 */
int cron_schedule_parse(const char *text, CronSchedule *ret, const char **reterr);

/*
 * The first time strictly after after_usec (CLOCK_REALTIME µs) the schedule fires, in *ret_usec.
 * @every schedules fire at start_usec + k * every. -ERANGE when nothing matches within 5 years
 * (e.g. "0 0 30 2 *").
 */
int cron_schedule_next(const CronSchedule *s, uint64_t start_usec, uint64_t after_usec, uint64_t *ret_usec);
