/* SPDX-License-Identifier: Apache-2.0 */
/*
 * core/actor-time and core/actor-config: the formats of Dapr's timers and
 * reminders as daprd reads them (Go durations, ISO 8601 with Rn/, RFC 3339),
 * schedules (first fire, period, repetitions, ttl), GET /dapr/config answers
 * and the min-heap behind every reminder. Times are made up; nothing waits.
 */
#include <stdlib.h>
#include <string.h>

#include "core/actor-config.h"
#include "core/actor-heap.h"
#include "core/actor-time.h"
#include "tests.h"

#define SEC 1000000LL
#define NOW (1765000000LL * SEC) /* 2025-12-06T05:46:40Z */

static int64_t go(const char *s) {
        int64_t v = -42;
        ASSERT_OK(actor_parse_go_duration(s, &v));
        return v;
}

TEST(go_durations) {
        int64_t v;
        ASSERT_EQ(go("0"), 0);
        ASSERT_EQ(go("1h30m"), 5400 * SEC);
        ASSERT_EQ(go("0h0m3s0ms"), 3 * SEC);
        ASSERT_EQ(go("1.5s"), 1500000);
        ASSERT_EQ(go("-2m"), -120 * SEC);
        ASSERT_EQ(go("250ms"), 250000);
        ASSERT_EQ(go("10us"), 10);
        ASSERT_EQ(go("10\xc2\xb5s"), 10);
        ASSERT_EQ(go(".5h"), 1800 * SEC);
        /* daprd's time.ParseDuration has no "d"; a bare number other than 0 has no unit */
        ASSERT_ERROR(actor_parse_go_duration("1d12h", &v), EINVAL);
        ASSERT_ERROR(actor_parse_go_duration("5", &v), EINVAL);
        ASSERT_ERROR(actor_parse_go_duration("", &v), EINVAL);
        ASSERT_ERROR(actor_parse_go_duration("s", &v), EINVAL);
        ASSERT_ERROR(actor_parse_go_duration("1h ", &v), EINVAL);
        ASSERT_ERROR(actor_parse_go_duration("9999999999h", &v), ERANGE);
}

TEST(iso_durations) {
        ActorPeriod p;
        int64_t reps;
        ASSERT_OK(actor_parse_iso_duration("PT3S", &p, NULL));
        ASSERT_EQ(p.usec, 3 * SEC);
        ASSERT_OK(actor_parse_iso_duration("P1DT2H", &p, &reps));
        ASSERT_EQ(p.days, 1);
        ASSERT_EQ(p.usec, 7200 * SEC);
        ASSERT_EQ(reps, -1);
        ASSERT_OK(actor_parse_iso_duration("R5/PT10S", &p, &reps));
        ASSERT_EQ(reps, 5);
        ASSERT_OK(actor_parse_iso_duration("P1Y2M3W4DT5H6M7S", &p, NULL));
        ASSERT_EQ(p.years, 1);
        ASSERT_EQ(p.months, 2);
        ASSERT_EQ(p.days, 25);
        ASSERT_EQ(p.usec, (5 * 3600 + 6 * 60 + 7) * SEC);
        ASSERT_ERROR(actor_parse_iso_duration("R0/PT1S", &p, &reps), EINVAL);
        ASSERT_ERROR(actor_parse_iso_duration("R5/PT1S", &p, NULL), EINVAL); /* no repetitions for a point */
        ASSERT_ERROR(actor_parse_iso_duration("PT", &p, NULL), EINVAL);
        ASSERT_ERROR(actor_parse_iso_duration("P", &p, NULL), EINVAL);
        ASSERT_ERROR(actor_parse_iso_duration("PT1.5S", &p, NULL), EINVAL);
        ASSERT_ERROR(actor_parse_iso_duration("P1D1Y", &p, NULL), EINVAL);
        ASSERT_ERROR(actor_parse_iso_duration("pt1s", &p, NULL), EINVAL);
}

TEST(rfc3339_and_calendar) {
        int64_t t;
        char buf[32];
        ASSERT_OK(actor_parse_rfc3339("2026-12-07T05:00:00Z", &t));
        ASSERT_STREQ(actor_format_rfc3339(t, buf), "2026-12-07T05:00:00Z");
        ASSERT_OK(actor_parse_rfc3339("2026-12-07T07:00:00.999+02:00", &t));
        ASSERT_STREQ(actor_format_rfc3339(t, buf), "2026-12-07T05:00:00Z");
        ASSERT_ERROR(actor_parse_rfc3339("2026-02-30T00:00:00Z", &t), EINVAL);
        ASSERT_ERROR(actor_parse_rfc3339("2026-12-07 05:00:00Z", &t), EINVAL);
        ASSERT_ERROR(actor_parse_rfc3339("2026-12-07T05:00:00", &t), EINVAL);
        /* P1M from Jan 31 is Mar 3 (2026 is no leap year), as Go's AddDate */
        ActorPeriod p = { .months = 1 };
        ASSERT_OK(actor_parse_rfc3339("2026-01-31T10:00:00Z", &t));
        ASSERT_STREQ(actor_format_rfc3339(actor_period_add(&p, t), buf), "2026-03-03T10:00:00Z");
}

TEST(schedules) {
        ActorSchedule sc;
        const char *err = NULL;
        ASSERT_OK(actor_schedule_parse(NULL, NULL, NULL, NOW, &sc, &err));
        ASSERT_EQ(sc.first_usec, NOW);
        ASSERT_EQ(sc.repetitions, 1);
        ASSERT_TRUE(!sc.periodic);
        ASSERT_OK(actor_schedule_parse("1m", "R3/PT10S", "1h", NOW, &sc, &err));
        ASSERT_EQ(sc.first_usec, NOW + 60 * SEC);
        ASSERT_TRUE(sc.periodic);
        ASSERT_EQ(sc.repetitions, 3);
        ASSERT_EQ(sc.expiry_usec, NOW + 3660 * SEC); /* ttl counts from the first fire */
        ASSERT_OK(actor_schedule_parse("PT3S", "0h0m9s0ms", NULL, NOW, &sc, &err));
        ASSERT_EQ(sc.first_usec, NOW + 3 * SEC);
        ASSERT_EQ(sc.period.usec, 9 * SEC);
        ASSERT_EQ(sc.repetitions, -1);
        ASSERT_OK(actor_schedule_parse("2000-01-01T00:00:00Z", NULL, NULL, NOW, &sc, &err));
        ASSERT_EQ(sc.first_usec, NOW); /* a past time fires now */
        ASSERT_ERROR(actor_schedule_parse("R2/PT1S", NULL, NULL, NOW, &sc, &err), EINVAL);
        ASSERT_ERROR(actor_schedule_parse(NULL, "1d", NULL, NOW, &sc, &err), EINVAL);
        ASSERT_TRUE(strstr(err, "period") != NULL);
        ASSERT_ERROR(actor_schedule_parse(NULL, "-1s", NULL, NOW, &sc, &err), EINVAL);
        ASSERT_ERROR(actor_schedule_parse(NULL, NULL, "2000-01-01T00:00:00Z", NOW, &sc, &err), EINVAL);
        ASSERT_TRUE(strstr(err, "ttl") != NULL);
        ASSERT_ERROR(actor_schedule_parse("99999999h", NULL, NULL, NOW, &sc, &err), EINVAL);
}

TEST(dapr_config) {
        static const char body[] = "{\"entities\":[\"A\",\"B\",\"A\"],\"actorIdleTimeout\":\"1h\","
                                   "\"drainOngoingCallTimeout\":\"30s\",\"reentrancy\":{\"enabled\":false},"
                                   "\"remindersStoragePartitions\":7,"
                                   "\"entitiesConfig\":[{\"entities\":[\"B\"],\"actorIdleTimeout\":\"5s\","
                                   "\"remindersStoragePartitions\":0,"
                                   "\"reentrancy\":{\"enabled\":true,\"maxStackDepth\":8}}]}";
        ActorAppConfig c = {};
        char *err = NULL;
        ASSERT_OK(actor_app_config_parse(body, strlen(body), &c, &err));
        ASSERT_EQ(c.n, 2);
        ASSERT_STREQ(c.types[0].type, "A");
        ASSERT_EQ(c.types[0].idle_usec, 3600 * SEC);
        ASSERT_EQ(c.types[0].drain_usec, 30 * SEC);
        ASSERT_TRUE(!c.types[0].reentrancy);
        ASSERT_EQ(c.types[0].max_depth, ACTOR_DEFAULT_MAX_DEPTH);
        ASSERT_EQ(c.types[1].idle_usec, 5 * SEC);
        ASSERT_TRUE(c.types[1].reentrancy);
        ASSERT_EQ(c.types[1].max_depth, 8);
        ASSERT_EQ(c.types[0].reminder_partitions, 7);
        ASSERT_EQ(c.types[1].reminder_partitions, 0);
        actor_app_config_done(&c);
        ASSERT_OK(actor_app_config_parse("{}", 2, &c, &err));
        ASSERT_EQ(c.n, 0);
        actor_app_config_done(&c);
        static const char *const bad[] = {
                "[]", "{\"entities\":\"A\"}", "{\"entities\":[\"A\"],\"actorIdleTimeout\":\"1d\"}",
                "{\"entities\":[\"A\"],\"entitiesConfig\":[{\"entities\":[\"C\"]}]}", "{\"entities\":[\"a/b\"]}",
                "{\"entities\":[\"A\"],\"remindersStoragePartitions\":-1}",
                "{\"entities\":[\"A\"],\"remindersStoragePartitions\":\"4\"}",
                "{\"entities\":[\"A\"],\"remindersStoragePartitions\":1001}",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                ASSERT_ERROR(actor_app_config_parse(bad[i], strlen(bad[i]), &c, &err), EINVAL);
                ASSERT_NOT_NULL(err);
                free(err);
                err = NULL;
        }
}

static unsigned fired;
static uint64_t last;

static uintptr_t last_tie;

static void on_fire(ActorHeap *h, ActorHeapEntry *e, void *userdata) {
        ASSERT_TRUE(e->when >= last);
        /* due together: lowest tie first */
        ASSERT_TRUE(e->when > last || e->tie >= last_tie);
        last = e->when;
        last_tie = e->tie;
        fired++;
}

TEST(heap_order) {
        sd_event *ev = NULL;
        ASSERT_OK(sd_event_new(&ev));
        ActorHeap *h = actor_heap_new(ev, CLOCK_MONOTONIC, 0, on_fire, NULL);
        ActorHeapEntry e[1000] = {};
        uint64_t now = actor_heap_now(h);
        for (unsigned i = 0; i < 1000; i++) {
                e[i].tie = (i * 31) % 17;
                ASSERT_OK(actor_heap_set(h, &e[i], now - 1000000 + (i * 7919) % 100));
        }
        for (unsigned i = 0; i < 1000; i += 3) /* moves */
                ASSERT_OK(actor_heap_set(h, &e[i], now - 2000000 + i));
        for (unsigned i = 1; i < 1000; i += 10)
                actor_heap_remove(h, &e[i]);
        ASSERT_EQ(actor_heap_size(h), 900);
        while (actor_heap_size(h) > 0)
                ASSERT_TRUE(sd_event_run(ev, 1000000) >= 0);
        ASSERT_EQ(fired, 900);
        actor_heap_free(h);
        sd_event_unref(ev);
}

/* The timer runs with the accuracy asked for (reminders and timers ask for 1 ms), not sd-event's
 * default of 250 ms, which let every reminder fire up to a quarter second late. */
TEST(heap_timer_accuracy) {
        sd_event *ev = NULL;
        ASSERT_OK(sd_event_new(&ev));
        ActorHeap *h = actor_heap_new(ev, CLOCK_REALTIME, 1000, on_fire, NULL);
        ActorHeapEntry e = {};
        ASSERT_OK(actor_heap_set(h, &e, actor_heap_now(h) + 60 * 1000000ULL));
        uint64_t acc = 0;
        ASSERT_NOT_NULL(actor_heap_timer(h));
        ASSERT_OK(sd_event_source_get_time_accuracy(actor_heap_timer(h), &acc));
        ASSERT_EQ(acc, 1000);
        actor_heap_remove(h, &e);
        actor_heap_free(h);
        sd_event_unref(ev);
}
