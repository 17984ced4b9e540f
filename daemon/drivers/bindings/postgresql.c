/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bindings.postgresql (alias bindings.postgres): SQL on PostgreSQL, as daprd's
 * component runs it, with libpq in non-blocking mode on the loop (dl-libpq.h).
 *
 * Operations: exec and query take request metadata `sql` and optional
 * `params` (a JSON array: numbers, strings, booleans, null; sent as text
 * parameters $1, $2, ... whose types the server infers); exec answers
 * metadata `rows-affected`, query answers the rows as a JSON array of arrays
 * (integers, floats and numerics as JSON numbers, booleans as booleans,
 * json/jsonb as JSON, NULL as null, everything else as its text form; daprd's
 * pgx turns timestamps into RFC 3339 text instead of PostgreSQL's). close
 * ends the connection for good, as daprd closes its pool: later calls fail
 * until the component is reloaded. Every answer carries metadata operation,
 * sql, start-time, end-time (RFC 3339, UTC) and duration (Go's form), so
 * daprd answers 200 (with an empty body for exec); close answers nothing (204).
 *
 * Connection handling as state.postgresql's (drivers/state/postgresql.c):
 * PQconnectStartParams()/PQconnectPoll() driven by an io source, one command
 * at a time from a FIFO, each bounded by `timeout` (20 s; a late command
 * resets the connection); a lost or failed connection fails what is queued
 * with -ENOTCONN and reconnects with backoff (100 ms doubling to 5 s), and
 * while it waits, calls fail at once. Every outcome is delivered from a defer
 * source, never inside invoke().
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../dl-libpq.h"
#include "../pg-link.h"
#include "driver.h"

#define PGB_BACKOFF_MIN_USEC (100 * 1000ULL)
#define PGB_BACKOFF_MAX_USEC (5 * 1000000ULL)
#define PGB_TIMEOUT_DEFAULT_USEC (20 * 1000000ULL)

typedef struct PgCall PgCall;
struct PgCall {
        PgCall *next;
        char *op;                    /* "exec", "query", "close" */
        char *sql;
        char **params;               /* NULL entries are SQL NULL */
        size_t n_params;
        uint64_t deadline;           /* CLOCK_MONOTONIC */
        struct timespec start;
        bool sent;
        /* outcome */
        int error;
        char *message;
        json_t *rows;                /* query */
        char *affected;              /* exec */
        BindingDoneFn done;
        void *userdata;
};

typedef struct PgBinding {
        Binding base;
        char *conninfo;              /* secret: wiped */
        uint64_t timeout_usec;
        PgLink link;                 /* connecting, reconnecting with backoff */
        PGconn *conn;                /* pg_link_conn(&link): NULL while not ready */
        bool closed;                 /* by a close operation (or the binding's close): for good */
        sd_event_source *deadline_timer, *defer;
        char *last_error;
        PgCall *queue, *queue_tail;  /* head is on the wire once sent */
        PgCall *done_head, *done_tail;
} PgBinding;

static const char *const pg_operations[] = { "exec", "query", "close", NULL };

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static char *one_line(const char *m) {
        char *s = strdup(m && *m ? m : "unknown error");
        if (s)
                for (char *p = s; *p; p++)
                        if (*p == '\n' || *p == '\r' || *p == '\t')
                                *p = ' ';
        size_t l = s ? strlen(s) : 0;
        while (l > 0 && s[l - 1] == ' ')
                s[--l] = 0;
        return s;
}

static void call_free(PgCall *c) {
        free(c->op);
        free(c->sql);
        for (size_t i = 0; i < c->n_params; i++)
                free(c->params[i]);
        free(c->params);
        free(c->message);
        json_decref(c->rows);
        free(c->affected);
        free(c);
}

static void call_fail(PgCall *c, int error, const char *fmt, ...) _printf_(3, 4);
static void call_fail(PgCall *c, int error, const char *fmt, ...) {
        va_list ap;
        if (c->error)
                return;
        c->error = error;
        va_start(ap, fmt);
        if (vasprintf(&c->message, fmt, ap) < 0)
                c->message = NULL;
        va_end(ap);
}

/* Takes c (out of the queue): delivered from the defer source. */
static void complete(PgBinding *p, PgCall *c) {
        c->next = NULL;
        if (p->done_tail)
                p->done_tail->next = c;
        else
                p->done_head = c;
        p->done_tail = c;
        (void) sd_event_source_set_enabled(p->defer, SD_EVENT_ONESHOT);
}

static PgCall *queue_pop(PgBinding *p) {
        PgCall *c = p->queue;
        if (c) {
                p->queue = c->next;
                if (!p->queue)
                        p->queue_tail = NULL;
        }
        return c;
}

static void arm_deadline(PgBinding *p) {
        if (!p->queue) {
                (void) sd_event_source_set_enabled(p->deadline_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(p->deadline_timer, p->queue->deadline);
        (void) sd_event_source_set_enabled(p->deadline_timer, SD_EVENT_ONESHOT);
}

static void fail_queue(PgBinding *p, int error, const char *why) {
        PgCall *c;
        while ((c = queue_pop(p))) {
                call_fail(c, error, "%s", why);
                complete(p, c);
        }
        arm_deadline(p);
}

static void dispatch(PgBinding *p);

/* Gone or never came up: what is queued fails (on_lost), a retry is scheduled. */
static void disconnect(PgBinding *p, const char *what, const char *why) {
        pg_link_fail(&p->link, what, why);
}

static int flush(PgBinding *p) {
        return pg_link_flush(&p->link);
}

/* ---- results ---- */

static json_t *cell(const PGresult *res, int row, int col) {
        if (sym_PQgetisnull(res, row, col))
                return json_null();
        const char *v = sym_PQgetvalue(res, row, col);
        switch (sym_PQftype(res, col)) {
        case 20: /* int8 */
        case 21: /* int2 */
        case 23: /* int4 */
        case 26: /* oid */
                return json_integer(strtoll(v, NULL, 10));
        case 700:  /* float4 */
        case 701:  /* float8 */
        case 1700: { /* numeric */
                char *end;
                double d = strtod(v, &end);
                return *end ? json_string(v) : json_real(d);
        }
        case 16: /* bool */
                return json_boolean(v[0] == 't');
        case 114:  /* json */
        case 3802: { /* jsonb */
                json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
                return j ?: json_string(v);
        }
        default:
                return json_string(v);
        }
}

static void take_result(PgBinding *p, PgCall *c, PGresult *res) {
        ExecStatusType st = sym_PQresultStatus(res);
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
                _cleanup_free_ char *m = one_line(sym_PQresultErrorMessage(res));
                call_fail(c, -EIO, "%s", m ?: "query failed");
                return;
        }
        if (streq(c->op, "query") && st == PGRES_TUPLES_OK) {
                json_decref(c->rows);
                c->rows = json_array();
                int nr = sym_PQntuples(res), nf = sym_PQnfields(res);
                for (int i = 0; c->rows && i < nr; i++) {
                        json_t *row = json_array();
                        for (int k = 0; row && k < nf; k++)
                                json_array_append_new(row, cell(res, i, k));
                        json_array_append_new(c->rows, row);
                }
        }
        const char *n = sym_PQcmdTuples(res);
        free(c->affected);
        c->affected = strdup(n && *n ? n : "0");
}

static void read_results(PgBinding *p) {
        if (!sym_PQconsumeInput(p->conn)) {
                disconnect(p, "connection lost", sym_PQerrorMessage(p->conn));
                return;
        }
        while (p->queue && p->queue->sent && !sym_PQisBusy(p->conn)) {
                PGresult *res = sym_PQgetResult(p->conn);
                if (!res) { /* the command is over */
                        PgCall *c = queue_pop(p);
                        complete(p, c);
                        arm_deadline(p);
                        dispatch(p);
                        return;
                }
                take_result(p, p->queue, res);
                sym_PQclear(res);
        }
        if (p->conn && sym_PQstatus(p->conn) == CONNECTION_BAD)
                disconnect(p, "connection lost", sym_PQerrorMessage(p->conn));
}

/* Sends the head of the queue, if the connection is idle. */
static void dispatch(PgBinding *p) {
        PgCall *c = p->queue;
        if (!p->conn || !c || c->sent)
                return;
        if (streq(c->op, "close")) {
                /* daprd closes its pool for good; later calls fail until a reload */
                queue_pop(p);
                pg_link_stop(&p->link);
                p->conn = NULL;
                p->closed = true;
                complete(p, c);
                fail_queue(p, -ENOTCONN, "postgresql: the connection was closed by a close operation");
                return;
        }
        clock_gettime(CLOCK_REALTIME, &c->start);
        if (!sym_PQsendQueryParams(p->conn, c->sql, (int) c->n_params, NULL, (const char *const *) c->params, NULL,
                                   NULL, 0)) {
                disconnect(p, "connection lost", sym_PQerrorMessage(p->conn));
                return;
        }
        c->sent = true;
        (void) flush(p);
}

/* PgLink: connected */
static void on_ready(PgLink *l, void *userdata) {
        PgBinding *p = userdata;
        p->conn = pg_link_conn(l);
        dispatch(p);
}

/* PgLink: the connection is gone, or never came up (a retry is scheduled) */
static void on_lost(PgLink *l, const char *what, const char *why, void *userdata) {
        PgBinding *p = userdata;
        _cleanup_free_ char *msg = one_line(why);
        _cleanup_free_ char *full = NULL;

        p->conn = NULL;
        if (asprintf(&full, "postgresql %s: %s", what, msg ?: "out of memory") < 0)
                full = NULL;
        fail_queue(p, -ENOTCONN, full ?: what);
        free(p->last_error);
        p->last_error = full ? strdup(full) : NULL;
}

static void on_io(PgLink *l, uint32_t revents, void *userdata) {
        PgBinding *p = userdata;
        if (revents & EPOLLOUT && flush(p) < 0)
                return;
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                read_results(p);
}

static const PgLinkOps link_ops = { .ready = on_ready, .lost = on_lost, .io = on_io };

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        PgBinding *p = userdata;
        PgCall *c = p->queue;
        if (!c)
                return 0;
        if (now_usec() < c->deadline) {
                arm_deadline(p);
                return 0;
        }
        queue_pop(p);
        call_fail(c, -ETIMEDOUT, "postgresql: no answer within %" PRIu64 " ms", p->timeout_usec / 1000);
        complete(p, c);
        /* on the wire: the connection is in an unknown state, start afresh (the rest stays queued) */
        if (c->sent && p->conn) {
                PgCall *rest = p->queue, *rest_tail = p->queue_tail;
                p->queue = p->queue_tail = NULL;
                disconnect(p, "connection reset", "a command timed out");
                p->queue = rest;
                p->queue_tail = rest_tail;
                pg_link_start(&p->link); /* at once, not after the backoff */
        }
        arm_deadline(p);
        return 0;
}

/* RFC 3339 with nanoseconds in UTC, as Go's time.RFC3339Nano writes it (trailing zeros dropped). */
static void rfc3339(const struct timespec *ts, char *buf, size_t size) {
        struct tm tm;
        time_t t = ts->tv_sec;
        char frac[16] = "";
        gmtime_r(&t, &tm);
        if (ts->tv_nsec) {
                snprintf(frac, sizeof frac, ".%09ld", ts->tv_nsec);
                for (size_t l = strlen(frac); l > 1 && frac[l - 1] == '0';)
                        frac[--l] = 0;
        }
        snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d%sZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

/* Go's time.Duration.String() for durations under a minute. */
static void go_duration(int64_t ns, char *buf, size_t size) {
        if (ns < 1000)
                snprintf(buf, size, "%" PRId64 "ns", ns);
        else if (ns < 1000000)
                snprintf(buf, size, "%gµs", (double) ns / 1e3);
        else if (ns < 1000000000)
                snprintf(buf, size, "%gms", (double) ns / 1e6);
        else
                snprintf(buf, size, "%gs", (double) ns / 1e9);
}

static int on_defer(sd_event_source *s, void *userdata) {
        PgBinding *p = userdata;
        PgCall *c;

        while ((c = p->done_head)) {
                p->done_head = c->next;
                if (!p->done_head)
                        p->done_tail = NULL;
                struct timespec end;
                clock_gettime(CLOCK_REALTIME, &end);
                if (!c->start.tv_sec)
                        c->start = end;
                char st[64], et[64], dur[32];
                rfc3339(&c->start, st, sizeof st);
                rfc3339(&end, et, sizeof et);
                go_duration((int64_t) (end.tv_sec - c->start.tv_sec) * 1000000000 + (end.tv_nsec - c->start.tv_nsec),
                            dur, sizeof dur);
                char *md[] = { (char *) "operation", c->op, (char *) "sql", c->sql ?: (char *) "",
                               (char *) "start-time", st, (char *) "end-time", et, (char *) "duration", dur,
                               (char *) "rows-affected", c->affected, NULL };
                if (!c->affected || !streq(c->op, "exec"))
                        md[10] = NULL;
                _cleanup_free_ char *rows = c->rows ? json_dumps(c->rows, JSON_COMPACT) : NULL;
                BindingResponse resp = { .data = rows, .len = rows ? strlen(rows) : 0, .metadata = md };
                /* daprd: close answers nothing (204); exec and query their metadata (200) */
                c->done(c->error, c->message, streq(c->op, "close") ? NULL : &resp, c->userdata);
                call_free(c);
        }
        return 0;
}

static int pg_open(Binding *b, char **reterr_msg) {
        PgBinding *p = (PgBinding *) b;
        const char *v;
        int r;

        p->timeout_usec = PGB_TIMEOUT_DEFAULT_USEC;
        r = dlopen_libpq("bindings.postgresql", reterr_msg);
        if (r < 0)
                return r;
        v = binding_component_get(b->component, "connectionString");
        if (!v || !*v)
                return asprintf(reterr_msg, "'connectionString' is required") < 0 ? -ENOMEM : -EINVAL;
        p->conninfo = strdup(v);
        if (!p->conninfo)
                return -ENOMEM;
        v = binding_component_get(b->component, "timeout");
        if (v && *v && (parse_duration_usec(v, &p->timeout_usec) < 0 || p->timeout_usec == 0))
                return asprintf(reterr_msg, "'timeout' is not a duration: %s", v) < 0 ? -ENOMEM : -EINVAL;
        PgLinkOptions lo = { .conninfo = p->conninfo, .application_name = "mooringd",
                             .connect_timeout_usec = p->timeout_usec, .backoff_min_usec = PGB_BACKOFF_MIN_USEC,
                             .backoff_max_usec = PGB_BACKOFF_MAX_USEC };
        if (pg_link_init(&p->link, b->event, &lo, &link_ops, p) < 0 ||
            sd_event_add_time(b->event, &p->deadline_timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_deadline, p) < 0 ||
            sd_event_add_defer(b->event, &p->defer, on_defer, p) < 0)
                return -ENOMEM;
        (void) sd_event_source_set_enabled(p->deadline_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(p->defer, SD_EVENT_OFF);
        pg_link_start(&p->link); /* a server not there yet is not an error: it is retried */
        return 0;
}

static void pg_close(Binding *b) {
        PgBinding *p = (PgBinding *) b;
        if (p->defer) {
                p->closed = true;
                fail_queue(p, -ECANCELED, "the binding was closed");
                on_defer(p->defer, p);
        }
        pg_link_done(&p->link);
        p->conn = NULL;
        sd_event_source_disable_unref(p->deadline_timer);
        sd_event_source_disable_unref(p->defer);
        if (p->conninfo) {
                explicit_bzero(p->conninfo, strlen(p->conninfo));
                free(p->conninfo);
        }
        free(p->last_error);
}

static int pg_invoke(Binding *b, const BindingRequest *req, BindingDoneFn done, void *userdata, char **reterr_msg) {
        PgBinding *p = (PgBinding *) b;
        const char *sql = binding_metadata_get(req->metadata, "sql");
        const char *params = binding_metadata_get(req->metadata, "params");
        PgCall *c;

        if (!streq(req->operation, "close") && (!sql || !*sql))
                return asprintf(reterr_msg, "required metadata not set: sql") < 0 ? -ENOMEM : -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        *c = (PgCall){ .done = done, .userdata = userdata, .deadline = now_usec() + p->timeout_usec };
        c->op = strdup(req->operation);
        c->sql = sql ? strdup(sql) : NULL;
        if (!c->op || (sql && !c->sql)) {
                call_free(c);
                return -ENOMEM;
        }
        if (params && *params) {
                json_t *a = json_loads(params, 0, NULL);
                if (!json_is_array(a)) {
                        json_decref(a);
                        call_free(c);
                        return asprintf(reterr_msg, "'params' is not a JSON array") < 0 ? -ENOMEM : -EINVAL;
                }
                c->n_params = json_array_size(a);
                c->params = calloc(c->n_params + 1, sizeof(char *));
                for (size_t i = 0; c->params && i < c->n_params; i++) {
                        json_t *v = json_array_get(a, i);
                        if (json_is_null(v))
                                continue;
                        c->params[i] = json_is_string(v) ? strdup(json_string_value(v))
                                                         : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                }
                json_decref(a);
                if (!c->params) {
                        call_free(c);
                        return -ENOMEM;
                }
        }
        if (pg_link_state(&p->link) == PG_LINK_BACKOFF || p->closed) {
                call_fail(c, -ENOTCONN, "%s", p->closed ?
                          "postgresql: the connection was closed by a close operation" :
                          p->last_error ?: "postgresql: not connected");
                complete(p, c);
                return 0;
        }
        if (p->queue_tail)
                p->queue_tail->next = c;
        else
                p->queue = c;
        p->queue_tail = c;
        if (p->queue == c)
                arm_deadline(p);
        dispatch(p);
        return 0;
}

const BindingDriver binding_postgresql_driver = {
        .type = "bindings.postgresql",
        .alias = "bindings.postgres",
        .abi = BINDING_DRIVER_ABI,
        .instance_size = sizeof(PgBinding),
        .operations = pg_operations,
        .open = pg_open,
        .close = pg_close,
        .invoke = pg_invoke,
};
