/* SPDX-License-Identifier: Apache-2.0 */
/* See pg-link.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "../util/cleanup.h"
#include "dl-libpq.h"
#include "pg-link.h"

static uint64_t now_usec(PgLink *l) {
        uint64_t t = 0;
        (void) sd_event_now(l->event, CLOCK_MONOTONIC, &t);
        return t;
}

static void arm_timer(PgLink *l, uint64_t at) {
        (void) sd_event_source_set_time(l->timer, at);
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
}

static void drop(PgLink *l) {
        l->io = sd_event_source_disable_unref(l->io);
        l->io_events = 0;
        if (l->conn)
                sym_PQfinish(l->conn);
        l->conn = NULL;
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
}

void pg_link_fail(PgLink *l, const char *what, const char *why) {
        /* copied: why may be libpq's, which goes with the connection */
        _cleanup_free_ char *msg = strdup(why && *why ? why : "connection lost");
        drop(l);
        l->state = PG_LINK_BACKOFF;
        arm_timer(l, now_usec(l) + l->backoff_usec);
        l->backoff_usec = l->backoff_usec * 2 < l->o.backoff_max_usec ? l->backoff_usec * 2 : l->o.backoff_max_usec;
        l->ops->lost(l, what, msg ?: "out of memory", l->userdata);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* While connecting libpq may move to another socket (the next address): always the current one. */
static int watch_current(PgLink *l, uint32_t events) {
        l->io = sd_event_source_disable_unref(l->io);
        l->io_events = 0;
        int fd = sym_PQsocket(l->conn);
        if (fd < 0)
                return -EBADF;
        int r = sd_event_add_io(l->event, &l->io, fd, events, on_io, l);
        if (r >= 0)
                l->io_events = events;
        return r;
}

int pg_link_watch(PgLink *l, uint32_t events) {
        if (l->state != PG_LINK_READY)
                return -ENOTCONN;
        if (l->io && l->io_events == events)
                return 0;
        if (!l->io)
                return watch_current(l, events);
        int r = sd_event_source_set_io_events(l->io, events);
        if (r >= 0)
                l->io_events = events;
        return r;
}

int pg_link_flush(PgLink *l) {
        int r = l->state == PG_LINK_READY ? sym_PQflush(l->conn) : -1;
        if (r < 0 || pg_link_watch(l, EPOLLIN | (r > 0 ? EPOLLOUT : 0)) < 0) {
                pg_link_fail(l, "connection lost", l->conn ? sym_PQerrorMessage(l->conn) : "not connected");
                return -ENOTCONN;
        }
        return 0;
}

static void notice_ignore(void *arg, const char *message) {
}

static void connected(PgLink *l) {
        if (sym_PQsetnonblocking(l->conn, 1) < 0)
                return pg_link_fail(l, "connection failed", sym_PQerrorMessage(l->conn));
        l->state = PG_LINK_READY;
        if (!l->o.setup_after_ready)
                pg_link_good(l);
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        if (watch_current(l, EPOLLIN) < 0)
                return pg_link_fail(l, "connection failed", "cannot watch the connection");
        l->ops->ready(l, l->userdata);
}

void pg_link_good(PgLink *l) {
        l->backoff_usec = l->o.backoff_min_usec;
}

static void connect_poll(PgLink *l) {
        int r;
        switch (sym_PQconnectPoll(l->conn)) {
        case PGRES_POLLING_OK:
                return connected(l);
        case PGRES_POLLING_READING:
                r = watch_current(l, EPOLLIN);
                break;
        case PGRES_POLLING_WRITING:
                r = watch_current(l, EPOLLOUT);
                break;
        default:
                return pg_link_fail(l, "connection failed", sym_PQerrorMessage(l->conn));
        }
        if (r < 0)
                pg_link_fail(l, "connection failed", "cannot watch the connection");
}

void pg_link_start(PgLink *l) {
        static const char *const keywords[] = { "dbname", "fallback_application_name", NULL };
        const char *values[] = { l->o.conninfo, l->o.application_name, NULL };

        if (l->state == PG_LINK_CONNECTING || l->state == PG_LINK_READY)
                return;
        drop(l);
        l->state = PG_LINK_CONNECTING;
        /* expand_dbname: the conninfo (key/value or URI) is read as a whole */
        l->conn = sym_PQconnectStartParams(keywords, values, 1);
        if (!l->conn || sym_PQstatus(l->conn) == CONNECTION_BAD)
                return pg_link_fail(l, "connection failed", l->conn ? sym_PQerrorMessage(l->conn) : "out of memory");
        (void) sym_PQsetNoticeProcessor(l->conn, notice_ignore, NULL);
        arm_timer(l, now_usec(l) + l->o.connect_timeout_usec);
        if (watch_current(l, EPOLLOUT) < 0)
                pg_link_fail(l, "connection failed", "cannot watch the connection");
}

void pg_link_stop(PgLink *l) {
        drop(l);
        l->state = PG_LINK_IDLE;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        PgLink *l = userdata;
        if (l->state == PG_LINK_CONNECTING)
                connect_poll(l);
        else if (l->state == PG_LINK_READY)
                l->ops->io(l, revents, l->userdata);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        PgLink *l = userdata;
        if (l->state == PG_LINK_BACKOFF)
                pg_link_start(l);
        else if (l->state == PG_LINK_CONNECTING) {
                char why[64];
                (void) snprintf(why, sizeof why, "timed out after %llu ms",
                                (unsigned long long) (l->o.connect_timeout_usec / 1000));
                pg_link_fail(l, "connection failed", why);
        }
        return 0;
}

int pg_link_init(PgLink *l, sd_event *e, const PgLinkOptions *o, const PgLinkOps *ops, void *userdata) {
        *l = (PgLink){ .event = e, .o = *o, .ops = ops, .userdata = userdata, .backoff_usec = o->backoff_min_usec };
        /* sd-event's default accuracy would let a retry or a timeout come up to 250 ms late */
        int r = sd_event_add_time(e, &l->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_timer, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        return 0;
}

void pg_link_done(PgLink *l) {
        drop(l);
        l->timer = sd_event_source_disable_unref(l->timer);
        l->state = PG_LINK_IDLE;
}
