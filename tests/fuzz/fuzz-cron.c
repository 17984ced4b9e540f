/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the cron schedule parser (drivers/bindings/cron-schedule.c) and,
 * for what it accepts, the next-firing computation: a next time is always
 * later than the time asked about, and no schedule loops forever.
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/bindings/cron-schedule.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char text[256];
        CronSchedule s;
        const char *why = NULL;
        uint64_t next;

        if (size >= sizeof text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        if (cron_schedule_parse(text, &s, &why) < 0) {
                if (!why)
                        abort();
                return 0;
        }
        /* 2026-01-01T00:00:00Z */
        uint64_t t = UINT64_C(1767225600) * 1000000;
        if (cron_schedule_next(&s, t, t, &next) >= 0 && next <= t)
                abort();
        return 0;
}
