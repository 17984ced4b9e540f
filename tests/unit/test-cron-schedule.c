/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for Dapr's cron schedule forms (drivers/bindings/cron-schedule.c):
 * what parses and what is refused, and the next firing time for each form,
 * computed in a named zone so the answers do not depend on the host's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "drivers/bindings/cron-schedule.h"
#include "tests.h"

/* 2026-01-01T00:00:00Z, a Thursday */
#define T0 (UINT64_C(1767225600) * 1000000)
#define SEC UINT64_C(1000000)

static uint64_t next_of(const char *text, uint64_t after) {
        CronSchedule s;
        const char *why = NULL;
        uint64_t n = 0;
        int r = cron_schedule_parse(text, &s, &why);
        if (r < 0)
                fprintf(stderr, "'%s': %s\n", text, why);
        ASSERT_OK(r);
        ASSERT_OK(cron_schedule_next(&s, T0, after, &n));
        return n;
}

TEST(every) {
        ASSERT_EQ(next_of("@every 15s", T0), T0 + 15 * SEC);
        ASSERT_EQ(next_of("@every 15s", T0 + 15 * SEC), T0 + 30 * SEC);
        ASSERT_EQ(next_of("@every 1m30s", T0 + 1), T0 + 90 * SEC);
        ASSERT_EQ(next_of("@every 2h", T0), T0 + 7200 * SEC);
        /* below a second is a second, as robfig/cron rounds it */
        ASSERT_EQ(next_of("@every 500ms", T0), T0 + SEC);
}

TEST(six_fields_with_seconds) {
        ASSERT_EQ(next_of("CRON_TZ=UTC */15 * * * * *", T0), T0 + 15 * SEC);
        ASSERT_EQ(next_of("CRON_TZ=UTC 0 30 * * * *", T0), T0 + 1800 * SEC);
        ASSERT_EQ(next_of("CRON_TZ=UTC 5 0 0 * * *", T0), T0 + 5 * SEC);
        ASSERT_EQ(next_of("TZ=UTC 0 0 12 1 JAN *", T0), T0 + 12 * 3600 * SEC);
}

TEST(five_fields_mean_second_zero) {
        /* Monday 2026-01-05 09:30 */
        ASSERT_EQ(next_of("CRON_TZ=UTC 30 9 * * MON", T0), T0 + (4 * 86400 + 9 * 3600 + 1800) * SEC);
        ASSERT_EQ(next_of("CRON_TZ=UTC * * * * *", T0), T0 + 60 * SEC);
}

TEST(descriptors) {
        ASSERT_EQ(next_of("CRON_TZ=UTC @hourly", T0), T0 + 3600 * SEC);
        ASSERT_EQ(next_of("CRON_TZ=UTC @daily", T0), T0 + 86400 * SEC);
        ASSERT_EQ(next_of("CRON_TZ=UTC @midnight", T0), T0 + 86400 * SEC);
        /* Sunday 2026-01-04 */
        ASSERT_EQ(next_of("CRON_TZ=UTC @weekly", T0), T0 + 3 * 86400 * SEC);
        ASSERT_EQ(next_of("CRON_TZ=UTC @monthly", T0), T0 + 31 * 86400 * SEC);
        ASSERT_EQ(next_of("CRON_TZ=UTC @yearly", T0), T0 + 365 * 86400 * SEC);
        ASSERT_EQ(next_of("CRON_TZ=UTC @annually", T0), T0 + 365 * 86400 * SEC);
}

TEST(time_zone) {
        /* 09:00 in New York is 14:00 UTC in winter */
        ASSERT_EQ(next_of("CRON_TZ=America/New_York 0 0 9 * * *", T0), T0 + 14 * 3600 * SEC);
}

TEST(day_of_month_or_day_of_week) {
        /* both restricted: either matches (Friday 2026-01-02 comes before the 13th) */
        ASSERT_EQ(next_of("CRON_TZ=UTC 0 0 0 13 * FRI", T0), T0 + 86400 * SEC);
        /* one of them '*': both must match */
        ASSERT_EQ(next_of("CRON_TZ=UTC 0 0 0 13 * *", T0), T0 + 12 * 86400 * SEC);
}

TEST(never) {
        CronSchedule s;
        const char *why;
        uint64_t n;
        ASSERT_OK(cron_schedule_parse("CRON_TZ=UTC 0 0 30 2 *", &s, &why));
        ASSERT_ERROR(cron_schedule_next(&s, T0, T0, &n), ERANGE);
}

TEST(refused) {
        static const char *const bad[] = {
                "", "* * *", "* * * * * * *", "61 * * * * *", "* 60 * * * *", "* * 24 * * *", "* * * 0 * *",
                "* * * * 13 *", "* * * * * 7", "*/0 * * * * *", "5-1 * * * * *", "a * * * * *", "1,,2 * * * * *",
                "1, * * * * *", "@every", "@every 5", "@every 0s", "@every 1s 2s", "@fortnightly",
                "CRON_TZ=Nowhere/Atlantis * * * * *", "CRON_TZ=../../etc/passwd * * * * *", "CRON_TZ= * * * * *",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                CronSchedule s;
                const char *why = NULL;
                int r = cron_schedule_parse(bad[i], &s, &why);
                if (r >= 0)
                        fprintf(stderr, "accepted: '%s'\n", bad[i]);
                ASSERT_TRUE(r < 0);
                ASSERT_NOT_NULL(why);
        }
}
