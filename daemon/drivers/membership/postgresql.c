/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Membership in PostgreSQL ([Cluster] Membership=postgresql): one row per
 * host in a table (default mooring_hosts, created if missing) with the
 * host's address, apps and actor types and the end of its lease in the
 * server's time, so hosts with skewed clocks still agree on who is alive.
 *
 *   host_id text PRIMARY KEY, address text, apps text[], actor_types text[],
 *   generation bigint, expires_at timestamptz
 *
 * Every lease/3 a host renews its row and reads every row whose lease runs
 * (the lease left is computed by the server and counted down locally). A
 * renewal that changes the row, or brings back one that had expired, sends
 * NOTIFY on a channel of the table's name with "id address" as payload; every
 * host LISTENs there and reads the rows at once on a notice from another
 * host, so a change travels in one round trip, with the periodic read as the
 * safety net for a missed notice. Closing deletes the row (and notifies).
 *
 * libpq in non-blocking mode on the loop, one connection, one statement at a
 * time. A lost connection is retried with backoff (100 ms doubling up to
 * lease/3); the core keeps the last view until its leases run out.
 */
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../dl-libpq.h"
#include "../pg-conninfo.h"
#include "../pg-link.h"
#include "driver.h"

#define USEC_PER_MSEC 1000ULL
#define BACKOFF_MIN_USEC (100 * USEC_PER_MSEC)
#define STATEMENT_TIMEOUT_USEC (10 * 1000 * USEC_PER_MSEC)
#define CLOSE_WAIT_MSEC 1000
#define DEFAULT_TABLE "mooring_hosts"
#define IDENT_MAX 63
/* any constant: serializes the CREATE TABLE IF NOT EXISTS of hosts starting together */
#define SETUP_LOCK_KEY "7268430190263"

typedef enum Step {
        STEP_NONE,
        STEP_SETUP,    /* table, LISTEN */
        STEP_RENEW,
        STEP_READ,
        STEP_WITHDRAW,
} Step;

typedef struct PgMembership {
        MembershipBackend base;
        char *conninfo;             /* secret: wiped on free */
        char *table;                /* a plain identifier: table and channel */
        char *sql_setup, *sql_renew, *sql_read, *sql_withdraw;
        uint64_t lease_usec;
        PgLink link;                /* connecting, reconnecting with backoff */
        PGconn *conn;               /* pg_link_conn(&link): NULL while not ready */
        Step busy;                  /* the statement in flight */
        bool failed;                /* the statement in flight failed */
        char *step_error;
        bool set_up;                /* STEP_SETUP done on this connection */
        bool need_renew, need_read;
        sd_event_source *tick;      /* every lease/3: renew and read */
        sd_event_source *timer;     /* the statement's deadline */
} PgMembership;

static uint64_t now_usec(PgMembership *p) {
        return membership_backend_now(&p->base);
}

static void arm_timer(PgMembership *p, uint64_t at) {
        (void) sd_event_source_set_time(p->timer, at);
        (void) sd_event_source_set_enabled(p->timer, SD_EVENT_ONESHOT);
}

static void disconnect(PgMembership *p, const char *why) {
        pg_link_fail(&p->link, "connection lost", why && *why ? why : "connection lost");
}

static void flush(PgMembership *p) {
        (void) pg_link_flush(&p->link);
}

/* {"a","b"}: a text[] literal (names never hold control characters; quotes and backslashes escaped). */
static char *array_literal(char *const *l) {
        size_t n = 3;
        char *s, *o;
        for (char *const *k = l; k && *k; k++)
                n += 2 * strlen(*k) + 3;
        s = o = malloc(n);
        if (!s)
                return NULL;
        *o++ = '{';
        for (char *const *k = l; k && *k; k++) {
                if (k != l)
                        *o++ = ',';
                *o++ = '"';
                for (const char *c = *k; *c; c++) {
                        if (*c == '"' || *c == '\\')
                                *o++ = '\\';
                        *o++ = *c;
                }
                *o++ = '"';
        }
        *o++ = '}';
        *o = 0;
        return s;
}

static int send_step(PgMembership *p, Step step) {
        const MemberRecord *self = membership_backend_self(&p->base);
        char lease_ms[24], gen[24];

        switch (step) {
        case STEP_SETUP:
                return sym_PQsendQuery(p->conn, p->sql_setup);
        case STEP_RENEW: {
                _cleanup_free_ char *apps = array_literal(self->apps), *types = array_literal(self->actor_types);
                if (!apps || !types)
                        return -ENOMEM;
                (void) snprintf(lease_ms, sizeof lease_ms, "%llu", (unsigned long long) (p->lease_usec / 1000));
                (void) snprintf(gen, sizeof gen, "%llu", (unsigned long long) self->generation);
                const char *v[6] = { self->id, self->address, apps, types, lease_ms, gen };
                return sym_PQsendQueryParams(p->conn, p->sql_renew, 6, NULL, v, NULL, NULL, 0);
        }
        case STEP_READ:
                return sym_PQsendQueryParams(p->conn, p->sql_read, 0, NULL, NULL, NULL, NULL, 0);
        case STEP_WITHDRAW: {
                const char *v[1] = { self->id };
                return sym_PQsendQueryParams(p->conn, p->sql_withdraw, 1, NULL, v, NULL, NULL, 0);
        }
        default:
                return 0;
        }
}

static void dispatch(PgMembership *p) {
        Step next;
        int ok;

        if (!p->conn || p->busy != STEP_NONE)
                return;
        if (!p->set_up)
                next = STEP_SETUP;
        else if (p->need_renew)
                next = STEP_RENEW;
        else if (p->need_read)
                next = STEP_READ;
        else
                return;
        ok = send_step(p, next);
        if (ok == -ENOMEM) {
                disconnect(p, "out of memory");
                return;
        }
        if (!ok) {
                disconnect(p, sym_PQerrorMessage(p->conn));
                return;
        }
        if (next == STEP_RENEW)
                p->need_renew = false;
        else if (next == STEP_READ)
                p->need_read = false;
        p->busy = next;
        p->failed = false;
        free(p->step_error);
        p->step_error = NULL;
        arm_timer(p, now_usec(p) + STATEMENT_TIMEOUT_USEC);
        flush(p);
}

/* One row of the read: host_id, address, apps (JSON), actor_types (JSON), generation, lease left (µs). */
static void take_row(PgMembership *p, const PGresult *res, int i) {
        _cleanup_free_ char *json = NULL;
        MemberRecord rec = {};
        long long left;

        if (sym_PQgetisnull(res, i, 0) || sym_PQgetisnull(res, i, 5))
                return;
        left = strtoll(sym_PQgetvalue(res, i, 5), NULL, 10);
        if (left <= 0)
                return;
        /* through the record parser, so a row is checked as any record from outside is */
        json_t *o = json_pack("{s:s, s:s, s:o?, s:o?, s:I}", "id", sym_PQgetvalue(res, i, 0), "address",
                              sym_PQgetvalue(res, i, 1), "apps",
                              json_loads(sym_PQgetvalue(res, i, 2), 0, NULL), "actorTypes",
                              json_loads(sym_PQgetvalue(res, i, 3), 0, NULL), "generation",
                              (json_int_t) strtoll(sym_PQgetvalue(res, i, 4), NULL, 10));
        json = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!json || member_record_parse(json, strlen(json), &rec) < 0)
                return; /* a row some other program wrote: not a host */
        membership_backend_seen(&p->base, &rec, (uint64_t) left);
        member_record_done(&rec);
}

static void step_done(PgMembership *p, Step step) {
        if (p->failed) {
                /* the statement failed but the session is fine (a lock timeout, a permission): say so, retry at
                 * the next tick */
                membership_backend_state(&p->base, p->step_error ?: "statement failed");
                if (step == STEP_SETUP)
                        disconnect(p, p->step_error);
                return;
        }
        membership_backend_state(&p->base, NULL);
        if (step == STEP_SETUP) {
                p->set_up = true;
                /* a new session: announce ourselves and read everything missed meanwhile */
                p->need_renew = p->need_read = true;
        } else if (step == STEP_RENEW)
                membership_backend_renewed(&p->base, p->lease_usec);
}

static void read_input(PgMembership *p) {
        PGnotify *n;

        if (!sym_PQconsumeInput(p->conn)) {
                disconnect(p, sym_PQerrorMessage(p->conn));
                return;
        }
        while (p->busy != STEP_NONE && !sym_PQisBusy(p->conn)) {
                PGresult *res = sym_PQgetResult(p->conn);
                Step step = p->busy;
                if (!res) {
                        p->busy = STEP_NONE;
                        (void) sd_event_source_set_enabled(p->timer, SD_EVENT_OFF);
                        step_done(p, step);
                        if (!p->conn)
                                return;
                        continue;
                }
                ExecStatusType st = sym_PQresultStatus(res);
                if (st == PGRES_TUPLES_OK && step == STEP_READ) {
                        if (sym_PQnfields(res) == 6) {
                                membership_backend_sync_begin(&p->base);
                                for (int i = 0; i < sym_PQntuples(res); i++)
                                        take_row(p, res, i);
                                membership_backend_sync_end(&p->base);
                        }
                } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !p->failed) {
                        const char *m = sym_PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
                        p->failed = true;
                        free(p->step_error);
                        p->step_error = NULL;
                        if (asprintf(&p->step_error, "%s", m ?: "statement failed") < 0)
                                p->step_error = NULL;
                }
                sym_PQclear(res);
        }
        while (p->conn && (n = sym_PQnotifies(p->conn))) {
                /* another host changed: read. Our own renewal's notice needs nothing; another daemon's
                 * that carries our id (given the same HostId=) does: the read then shows it (see
                 * membership_backend_seen()). A withdrawal's payload is the id alone. */
                const MemberRecord *self = membership_backend_self(&p->base);
                size_t l = strlen(self->id);
                if (!(strncmp(n->extra, self->id, l) == 0 && n->extra[l] == ' ' && streq(n->extra + l + 1, self->address)))
                        p->need_read = true;
                sym_PQfreemem(n);
        }
        if (p->conn && sym_PQstatus(p->conn) == CONNECTION_BAD) {
                disconnect(p, sym_PQerrorMessage(p->conn));
                return;
        }
        dispatch(p);
}

/* PgLink: connected (a new session: set up again, then renew and read) */
static void on_ready(PgLink *l, void *userdata) {
        PgMembership *p = userdata;
        p->conn = pg_link_conn(l);
        dispatch(p);
}

/* PgLink: the connection is gone (a retry is scheduled): the statement in flight with it */
static void on_lost(PgLink *l, const char *what, const char *why, void *userdata) {
        PgMembership *p = userdata;
        p->conn = NULL;
        p->busy = STEP_NONE;
        p->set_up = false;
        (void) sd_event_source_set_enabled(p->timer, SD_EVENT_OFF);
        _cleanup_free_ char *msg = strndup(why, strcspn(why, "\n")); /* libpq's first line */
        membership_backend_state(&p->base, msg ?: "connection lost");
}

static void on_io(PgLink *l, uint32_t revents, void *userdata) {
        PgMembership *p = userdata;
        if (revents & EPOLLOUT)
                flush(p);
        if (p->conn && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                read_input(p);
}

static const PgLinkOps link_ops = { .ready = on_ready, .lost = on_lost, .io = on_io };

static int on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        PgMembership *p = userdata;
        if (p->busy != STEP_NONE)
                disconnect(p, "the server did not answer in time");
        return 0;
}

static int on_tick(sd_event_source *es, uint64_t usec, void *userdata) {
        PgMembership *p = userdata;
        p->need_renew = p->need_read = true;
        (void) sd_event_source_set_time(p->tick, now_usec(p) + p->lease_usec / 3);
        (void) sd_event_source_set_enabled(p->tick, SD_EVENT_ON);
        dispatch(p);
        return 0;
}

static void pg_publish(MembershipBackend *b) {
        PgMembership *p = (PgMembership *) b;
        p->need_renew = true;
        /* from the loop, not from inside membership_set_*() */
        (void) sd_event_source_set_time(p->tick, 0);
        (void) sd_event_source_set_enabled(p->tick, SD_EVENT_ON);
}

static bool ident_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > IDENT_MAX || (s[0] >= '0' && s[0] <= '9'))
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
                        return false;
        return true;
}

static int fail(char **reterr_msg, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(char **reterr_msg, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(reterr_msg, fmt, ap) < 0)
                *reterr_msg = NULL;
        va_end(ap);
        return r;
}

static int make_sql(PgMembership *p) {
        const char *t = p->table;
        if (asprintf(&p->sql_setup,
                     "BEGIN;"
                     "SELECT pg_advisory_xact_lock(" SETUP_LOCK_KEY ");"
                     "CREATE TABLE IF NOT EXISTS %s (host_id text PRIMARY KEY, address text NOT NULL,"
                     " apps text[] NOT NULL DEFAULT '{}', actor_types text[] NOT NULL DEFAULT '{}',"
                     " generation bigint NOT NULL DEFAULT 0, expires_at timestamptz NOT NULL);"
                     /* rows of hosts long gone (killed, never withdrawn) do not pile up */
                     "DELETE FROM %s WHERE expires_at < now() - interval '1 day';"
                     "LISTEN %s;"
                     "COMMIT",
                     t, t, t) < 0)
                return -ENOMEM;
        /* old: the row as it was, if still leased; a notice when the renewal changes what others see,
         * its payload "id address" (a host skips its own by it; see read_input()) */
        if (asprintf(&p->sql_renew,
                     "WITH old AS (SELECT address, apps, actor_types FROM %s WHERE host_id = $1 AND expires_at > now()),"
                     " up AS (INSERT INTO %s (host_id, address, apps, actor_types, generation, expires_at)"
                     " VALUES ($1, $2, $3::text[], $4::text[], $6::bigint, now() + $5::bigint * interval '1 millisecond')"
                     " ON CONFLICT (host_id) DO UPDATE SET address = EXCLUDED.address, apps = EXCLUDED.apps,"
                     " actor_types = EXCLUDED.actor_types, generation = EXCLUDED.generation,"
                     " expires_at = EXCLUDED.expires_at RETURNING 1)"
                     " SELECT pg_notify('%s', $1::text || ' ' || $2::text) FROM up WHERE NOT EXISTS (SELECT 1 FROM old"
                     " WHERE old.address = $2::text AND old.apps = $3::text[] AND old.actor_types = $4::text[])",
                     t, t, t) < 0)
                return -ENOMEM;
        if (asprintf(&p->sql_read,
                     "SELECT host_id, address, array_to_json(apps)::text, array_to_json(actor_types)::text,"
                     " generation::text, (extract(epoch FROM expires_at - now()) * 1000000)::bigint::text"
                     " FROM %s WHERE expires_at > now() ORDER BY host_id",
                     t) < 0)
                return -ENOMEM;
        if (asprintf(&p->sql_withdraw,
                     "WITH gone AS (DELETE FROM %s WHERE host_id = $1 RETURNING 1)"
                     " SELECT pg_notify('%s', $1::text) FROM gone",
                     t, t) < 0)
                return -ENOMEM;
        return 0;
}

static int pg_open(MembershipBackend *b, const MembershipOptions *o, char **reterr_msg) {
        PgMembership *p = (PgMembership *) b;
        _cleanup_strv_free_ char **ignored = NULL;
        char *perr = NULL;
        PQconninfoOption *opts;
        int r;

        p->lease_usec = o->lease_usec;
        r = dlopen_libpq("membership postgresql", reterr_msg);
        if (r < 0)
                return r;
        if (!o->connection || !*o->connection)
                return fail(reterr_msg, -EINVAL, "%s",
                            "MembershipConnection= is missing: a libpq connection string or URL for the membership table");
        r = pg_conninfo_for_libpq(o->connection, &p->conninfo, &ignored);
        if (r < 0)
                return r;
        opts = sym_PQconninfoParse(p->conninfo, &perr);
        if (!opts) {
                r = fail(reterr_msg, -EINVAL, "MembershipConnection= is not a valid libpq connection string: %s",
                         perr ? perr : "out of memory");
                if (perr) {
                        (*reterr_msg)[strcspn(*reterr_msg, "\n")] = 0;
                        sym_PQfreemem(perr);
                }
                return r;
        }
        sym_PQconninfoFree(opts);
        if (!(p->table = strdup(o->table ?: DEFAULT_TABLE)))
                return -ENOMEM;
        if (!ident_valid(p->table))
                return fail(reterr_msg, -EINVAL,
                            "table '%s' is not a plain lower-case identifier ([a-z0-9_], at most 63)", p->table);
        r = make_sql(p);
        if (r < 0)
                return r;
        /* connecting is bounded by a lease: past it, this host is gone for the others anyway; retries
         * come at least every lease/3, as renewals do */
        PgLinkOptions lo = { .conninfo = p->conninfo, .application_name = "mooringd-membership",
                             .connect_timeout_usec = MAX(p->lease_usec, STATEMENT_TIMEOUT_USEC),
                             .backoff_min_usec = BACKOFF_MIN_USEC,
                             .backoff_max_usec = MAX(p->lease_usec / 3, BACKOFF_MIN_USEC) };
        r = pg_link_init(&p->link, b->event, &lo, &link_ops, p);
        if (r >= 0)
                r = sd_event_add_time(b->event, &p->timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_timer, p);
        if (r >= 0)
                r = sd_event_add_time(b->event, &p->tick, CLOCK_MONOTONIC, 0, 0, on_tick, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->timer, SD_EVENT_OFF);
        pg_link_start(&p->link);
        return 0;
}

/* Waits (poll, bounded) until the statement in flight is answered. false on timeout or a lost connection. */
static bool wait_idle(PgMembership *p, int budget_msec) {
        while (p->conn && p->busy != STEP_NONE && budget_msec > 0) {
                struct pollfd pfd = { .fd = sym_PQsocket(p->conn), .events = POLLIN };
                if (sym_PQflush(p->conn) > 0)
                        pfd.events |= POLLOUT;
                if (poll(&pfd, 1, 50) < 0)
                        return false;
                budget_msec -= 50;
                if (!sym_PQconsumeInput(p->conn))
                        return false;
                while (!sym_PQisBusy(p->conn)) {
                        PGresult *res = sym_PQgetResult(p->conn);
                        if (!res) {
                                p->busy = STEP_NONE;
                                break;
                        }
                        sym_PQclear(res);
                }
        }
        return p->conn && p->busy == STEP_NONE;
}

static void pg_close(MembershipBackend *b) {
        PgMembership *p = (PgMembership *) b;

        /* withdraw: best effort, within about a second, on the way out (blocking is fine here) */
        if (p->conn && p->set_up && wait_idle(p, CLOSE_WAIT_MSEC / 2) &&
            send_step(p, STEP_WITHDRAW) > 0) {
                p->busy = STEP_WITHDRAW;
                (void) wait_idle(p, CLOSE_WAIT_MSEC / 2);
        }
        pg_link_done(&p->link);
        p->conn = NULL;
        p->timer = sd_event_source_disable_unref(p->timer);
        p->tick = sd_event_source_disable_unref(p->tick);
        erase_and_free(p->conninfo);
        free(p->table);
        free(p->sql_setup);
        free(p->sql_renew);
        free(p->sql_read);
        free(p->sql_withdraw);
        free(p->step_error);
}

const MembershipDriver membership_postgresql_driver = {
        .name = "postgresql",
        .abi = MEMBERSHIP_DRIVER_ABI,
        .instance_size = sizeof(PgMembership),
        .open = pg_open,
        .close = pg_close,
        .publish = pg_publish,
};
