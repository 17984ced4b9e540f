/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One libpq connection on an sd-event loop: the part every PostgreSQL driver
 * (state, configuration, bindings, membership) shares. It connects without
 * blocking (PQconnectStartParams() and PQconnectPoll() driven by an io
 * source, libpq's socket followed as it changes while connecting), bounds
 * connecting by a timeout, and after a failure or a loss drops the
 * connection, tells the driver and tries again after a backoff that doubles
 * from backoff_min to backoff_max (reset once connected). Once ready the
 * driver sends its own statements on pg_link_conn(), says which events it
 * waits for (pg_link_watch(), pg_link_flush()) and gets them through ops->io.
 * Notices are ignored (PQsetNoticeProcessor), the connection is made
 * non-blocking before ready runs.
 *
 * Callbacks run on the loop, never inside a pg_link_*() call except
 * pg_link_fail() and pg_link_flush() (which run lost), and pg_link_start()
 * when libpq refuses at once (lost). A driver may call pg_link_fail(),
 * pg_link_stop() or pg_link_start() from inside any of them.
 */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct PgLink PgLink;

typedef struct PgLinkOps {
        /* Connected: statements may be sent. */
        void (*ready)(PgLink *l, void *userdata);
        /* The connection is gone, or never came up; the next attempt is scheduled (unless the driver
         * stops the link). what: "connection failed" (never ready) or the driver's own word from
         * pg_link_fail(); why: libpq's message as it is (it may end in a newline and run over
         * several lines), or ours. */
        void (*lost)(PgLink *l, const char *what, const char *why, void *userdata);
        /* Ready, and the socket has revents. */
        void (*io)(PgLink *l, uint32_t revents, void *userdata);
} PgLinkOps;

typedef enum PgLinkState {
        PG_LINK_IDLE,         /* not started, or stopped */
        PG_LINK_BACKOFF,      /* waiting to try again */
        PG_LINK_CONNECTING,
        PG_LINK_READY,
} PgLinkState;

typedef struct PgLinkOptions {
        const char *conninfo;          /* borrowed while the link lives (the driver wipes it) */
        const char *application_name;  /* fallback_application_name: what pg_stat_activity shows */
        uint64_t connect_timeout_usec;
        uint64_t backoff_min_usec, backoff_max_usec;
        /* The driver sets the session up after ready (DDL, prepared statements), which may still fail:
         * the backoff starts afresh only at pg_link_good(), not on connecting. */
        bool setup_after_ready;
} PgLinkOptions;

struct PgLink {
        sd_event *event;
        PgLinkOptions o;
        const PgLinkOps *ops;
        void *userdata;
        PgLinkState state;
        PGconn *conn;
        sd_event_source *io;
        uint32_t io_events;
        sd_event_source *timer;        /* backoff, or connecting's timeout */
        uint64_t backoff_usec;
};

/* Sets l up (idle; nothing connects yet). -ENOMEM. */
int pg_link_init(PgLink *l, sd_event *e, const PgLinkOptions *o, const PgLinkOps *ops, void *userdata);
/* Drops the connection and frees what l holds; no callback runs. */
void pg_link_done(PgLink *l);

/* The session is usable (after the driver's setup, with setup_after_ready): the next failure backs off
 * from backoff_min again. */
void pg_link_good(PgLink *l);

/* Connects now (idle or backing off; nothing when connecting or ready). */
void pg_link_start(PgLink *l);
/* Drops the connection and stays idle: no lost, no retry. */
void pg_link_stop(PgLink *l);
/* The driver saw the connection fail (a send, a result, its own deadline): drops it, runs lost(what,
 * why) and schedules the next attempt. */
void pg_link_fail(PgLink *l, const char *what, const char *why);

/* Ready: the connection (NULL otherwise). */
static inline PGconn *pg_link_conn(const PgLink *l) {
        return l->state == PG_LINK_READY ? l->conn : NULL;
}
static inline PgLinkState pg_link_state(const PgLink *l) {
        return l->state;
}
/* Ready: waits for events (EPOLLIN, EPOLLOUT). < 0 on failure (the driver then fails the link). */
int pg_link_watch(PgLink *l, uint32_t events);
/* Ready: PQflush() and the events that follow from it (EPOLLIN, and EPOLLOUT while output remains).
 * < 0: the link failed ("connection lost", reported through lost). */
int pg_link_flush(PgLink *l);
