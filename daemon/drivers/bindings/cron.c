/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bindings.cron (input): fires on a schedule (cron-schedule.h) with an empty
 * body and daprd's metadata: timeZone ("Local": daprd's cron runs in the
 * host's zone, CRON_TZ= only moves the schedule) and readTimeUTC (Go's
 * time.String() of the UTC time, "2006-01-02 15:04:05.123456789 +0000 UTC").
 *
 * One timer source for all: every cron reader of every cron binding on a loop
 * sits in one list, and one CLOCK_REALTIME timer is armed at the earliest
 * next firing. A firing that finds the reader's previous event still
 * unsettled is skipped (daprd's handler runs synchronously, so a slow app
 * delays the next tick the same way); a settle with "retry" is a settle:
 * cron cannot redeliver a tick (daprd ignores the handler's error).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "cron-schedule.h"
#include "driver.h"

typedef struct CronBinding {
        Binding base;
        CronSchedule schedule;
} CronBinding;

struct BindingReader {
        CronBinding *cron;
        uint64_t start_usec, next_usec;
        BindingEventFn fn;
        void *userdata;
        bool busy;                   /* an event is out, unsettled */
        struct BindingDelivery {
                BindingReader *reader;
        } delivery;
        struct CronClock *clock;
        BindingReader *next, *prev;
};

/* The one timer of a loop. */
typedef struct CronClock {
        sd_event *event;
        sd_event_source *timer;
        BindingReader *readers;
        struct CronClock *next;
} CronClock;

static CronClock *clocks; /* per loop; normally one */

static void clock_arm(CronClock *k) {
        uint64_t first = UINT64_MAX;
        for (BindingReader *rd = k->readers; rd; rd = rd->next)
                if (rd->next_usec < first)
                        first = rd->next_usec;
        if (first == UINT64_MAX) {
                (void) sd_event_source_set_enabled(k->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(k->timer, first);
        (void) sd_event_source_set_enabled(k->timer, SD_EVENT_ONESHOT);
}

static void reader_schedule(BindingReader *rd, uint64_t now) {
        uint64_t next;
        if (cron_schedule_next(&rd->cron->schedule, rd->start_usec, now, &next) < 0)
                next = UINT64_MAX; /* never again (a date that does not come) */
        rd->next_usec = next;
}

/* Go's Time.String() for a UTC time: fraction without trailing zeros, none if zero. */
static void go_time_string(uint64_t usec, char *buf, size_t size) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        time_t t = (time_t) ts.tv_sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        char frac[16] = "";
        if (ts.tv_nsec) {
                snprintf(frac, sizeof frac, ".%09ld", ts.tv_nsec);
                size_t l = strlen(frac);
                while (l > 1 && frac[l - 1] == '0')
                        frac[--l] = 0;
        }
        snprintf(buf, size, "%04d-%02d-%02d %02d:%02d:%02d%s +0000 UTC", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
        (void) usec;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CronClock *k = userdata;
        uint64_t now;

        (void) sd_event_now(k->event, CLOCK_REALTIME, &now);
        /* Collect the due readers first: a callback may stop any reader, this one included. */
        for (;;) {
                BindingReader *due = NULL;
                for (BindingReader *rd = k->readers; rd; rd = rd->next)
                        if (rd->next_usec <= now) {
                                due = rd;
                                break;
                        }
                if (!due)
                        break;
                reader_schedule(due, now);
                if (due->busy)
                        continue; /* the previous tick is still with the app */
                char when[64];
                go_time_string(now, when, sizeof when);
                char *md[] = { (char *) "timeZone", (char *) "Local", (char *) "readTimeUTC", when, NULL };
                BindingEvent ev = { .data = "", .len = 0, .metadata = md, .attempt = 1 };
                due->busy = true;
                due->fn(due, &due->delivery, &ev, due->userdata);
                /* due may be gone now; the list is walked again from its head */
        }
        clock_arm(k);
        return 0;
}

static CronClock *clock_get(sd_event *e) {
        for (CronClock *k = clocks; k; k = k->next)
                if (k->event == e)
                        return k;
        CronClock *k = calloc(1, sizeof *k);
        if (!k)
                return NULL;
        k->event = e;
        if (sd_event_add_time(e, &k->timer, CLOCK_REALTIME, UINT64_MAX, 1000, on_timer, k) < 0) {
                free(k);
                return NULL;
        }
        (void) sd_event_source_set_description(k->timer, "bindings-cron");
        (void) sd_event_source_set_enabled(k->timer, SD_EVENT_OFF);
        k->next = clocks;
        clocks = k;
        return k;
}

static void clock_put(CronClock *k) {
        if (k->readers)
                return clock_arm(k);
        for (CronClock **p = &clocks; *p; p = &(*p)->next)
                if (*p == k) {
                        *p = k->next;
                        break;
                }
        sd_event_source_disable_unref(k->timer);
        free(k);
}

static int cron_open(Binding *b, char **reterr_msg) {
        CronBinding *cb = (CronBinding *) b;
        const char *v = binding_component_get(b->component, "schedule");
        const char *why = NULL;

        if (!v || !*v)
                return asprintf(reterr_msg, "'schedule' is required") < 0 ? -ENOMEM : -EINVAL;
        if (cron_schedule_parse(v, &cb->schedule, &why) < 0)
                return asprintf(reterr_msg, "invalid schedule format '%s': %s", v, why) < 0 ? -ENOMEM : -EINVAL;
        return 0;
}

static void cron_close(Binding *b) {
        /* The block stops every reader before it closes a binding. */
}

static int cron_read_start(Binding *b, const char *group, unsigned max_in_flight, BindingEventFn fn,
                           void *userdata, BindingReader **ret) {
        CronClock *k = clock_get(b->event);
        BindingReader *rd;
        uint64_t now;

        if (!k)
                return -ENOMEM;
        rd = calloc(1, sizeof *rd);
        if (!rd) {
                clock_put(k);
                return -ENOMEM;
        }
        (void) sd_event_now(b->event, CLOCK_REALTIME, &now);
        *rd = (BindingReader){ .cron = (CronBinding *) b, .start_usec = now, .fn = fn, .userdata = userdata,
                               .clock = k, .next = k->readers };
        rd->delivery.reader = rd;
        if (rd->next)
                rd->next->prev = rd;
        k->readers = rd;
        reader_schedule(rd, now);
        clock_arm(k);
        *ret = rd;
        return 0;
}

static void cron_read_stop(BindingReader *rd) {
        CronClock *k = rd->clock;
        if (rd->prev)
                rd->prev->next = rd->next;
        else
                k->readers = rd->next;
        if (rd->next)
                rd->next->prev = rd->prev;
        free(rd);
        clock_put(k);
}

static void cron_settle(BindingDelivery *d, bool ok, uint64_t retry_after_usec) {
        d->reader->busy = false;
}

const BindingDriver binding_cron_driver = {
        .type = "bindings.cron",
        .abi = BINDING_DRIVER_ABI,
        .instance_size = sizeof(CronBinding),
        .operations = NULL,
        .redelivers = false,
        .open = cron_open,
        .close = cron_close,
        .read_start = cron_read_start,
        .read_stop = cron_read_stop,
        .settle = cron_settle,
};
