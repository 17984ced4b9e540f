/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes what apps send about actors (core/actor-time.c, core/actor-config.c):
 * the same bytes as a Go duration, an ISO 8601 duration (with and without a
 * repetition prefix), an RFC 3339 time, as dueTime/period/ttl of a schedule,
 * as a GET /dapr/config answer and as a reminder/timer body. Checks the
 * invariants callers rely on: a parsed schedule never starts in the past, a
 * periodic one moves forward, repetitions are -1 or positive, settings are
 * the defaults or sane.
 */
#include <stdlib.h>
#include <string.h>

#include "core/actor-config.h"
#include "core/actor-time.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const int64_t now = 1765000000LL * 1000000LL;
        char *s;

        if (size > 64 * 1024)
                return 0;
        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;

        int64_t usec, reps;
        ActorPeriod p;
        (void) actor_parse_go_duration(s, &usec);
        (void) actor_parse_rfc3339(s, &usec);
        (void) actor_parse_iso_duration(s, &p, NULL);
        if (actor_parse_iso_duration(s, &p, &reps) >= 0) {
                if (reps == 0 || reps < -1 || p.years < 0 || p.months < 0 || p.days < 0 || p.usec < 0)
                        abort();
                if (actor_period_add(&p, now) < now)
                        abort();
        }

        /* split at the first two newlines into dueTime, period, ttl */
        char *period = strchr(s, '\n'), *ttl = NULL;
        if (period) {
                *period++ = 0;
                ttl = strchr(period, '\n');
                if (ttl)
                        *ttl++ = 0;
        }
        ActorSchedule sc;
        const char *err = NULL;
        if (actor_schedule_parse(s, period, ttl, now, &sc, &err) >= 0) {
                if (sc.first_usec < now || sc.repetitions == 0 || sc.repetitions < -1)
                        abort();
                if (sc.expiry_usec && sc.expiry_usec <= now)
                        abort();
                if (sc.periodic && actor_period_add(&sc.period, sc.first_usec) <= sc.first_usec)
                        abort();
        } else if (!err)
                abort();
        if (period)
                period[-1] = '\n';
        if (ttl)
                ttl[-1] = '\n';

        ActorAppConfig c = {};
        char *cerr = NULL;
        if (actor_app_config_parse((const char *) data, size, &c, &cerr) >= 0) {
                for (size_t i = 0; i < c.n; i++)
                        if (!c.types[i].type || !*c.types[i].type || c.types[i].idle_usec == 0 ||
                            c.types[i].max_depth == 0)
                                abort();
                actor_app_config_done(&c);
        }
        free(cerr);

        ActorReminderBody b = {};
        if (actor_reminder_body_parse((const char *) data, size, &b, &err) >= 0)
                actor_reminder_body_done(&b);
        free(s);
        return 0;
}
