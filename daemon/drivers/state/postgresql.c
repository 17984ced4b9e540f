/* SPDX-License-Identifier: Apache-2.0 */
/*
 * state.postgresql (alias state.postgres): libpq in non-blocking mode on the
 * sd-event loop, no threads. libpq is not linked: the first open() loads it
 * (dl-libpq.h), so every libpq call here goes through a sym_ pointer.
 *
 * One connection per store, connected and reconnected by drivers/pg-link.c
 * (without blocking, with a timeout and backoff). Once connected, the table is created and the statements are
 * prepared (the "setup" phase), then operations run one command at a time from
 * a FIFO queue whose head is the operation in flight; a transaction holds the
 * head for its whole BEGIN..COMMIT sequence.
 *
 * Phases: the link's BACKOFF (no connection, a retry is scheduled, operations
 * fail fast with -ENOTCONN) → CONNECTING → connected, setting up (both:
 * operations queue) → ready. A
 * failed attempt or a lost connection fails everything queued with -ENOTCONN
 * and schedules a retry (100 ms doubling to 5 s). An operation older than
 * `timeout` fails with -ETIMEDOUT; if it was on the wire the connection is
 * reset (reconnected at once; what is queued behind it stays queued).
 *
 * Every outcome, including immediate ones, goes through a completion list that
 * a defer source delivers, so done never runs inside a starting call and no
 * handler but that one runs user code. The engine state lives in a separate,
 * reference counted Pg so a done callback may close the store.
 *
 * Table: key TEXT PK, value BYTEA, etag BIGINT (nextval of <table>_etag_seq on
 * every write, so etags never repeat), expire_at TIMESTAMPTZ NULL, update_time.
 */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "../../util/cleanup.h"
#include "../../core/component.h"
#include "../../util/strv.h"
#include "../../util/log.h"
#include "../dl-libpq.h"
#include "../pg-conninfo.h"
#include "../pg-link.h"
#include "driver.h"
#include "postgresql-query.h"
#include "query.h"

#define PG_USEC_PER_MSEC UINT64_C(1000)
#define PG_USEC_PER_SEC UINT64_C(1000000)
#define PG_BACKOFF_MIN_USEC (100 * PG_USEC_PER_MSEC)
#define PG_BACKOFF_MAX_USEC (5 * PG_USEC_PER_SEC)
#define PG_TIMEOUT_DEFAULT_USEC (20 * PG_USEC_PER_SEC)
#define PG_CLEANUP_DEFAULT_USEC (3600 * PG_USEC_PER_SEC)
#define PG_IDENT_MAX 63 /* NAMEDATALEN - 1 */

/* Type OIDs (catalog/pg_type_d.h is a server header). */
#define PG_OID_BYTEA 17
#define PG_OID_INT8 20
#define PG_OID_TEXT 25

typedef enum PgStmt {
        PG_STMT_GET,
        PG_STMT_UPSERT,       /* last-write, no etag */
        PG_STMT_INSERT_FIRST, /* first-write, no etag: only if absent or expired */
        PG_STMT_UPDATE_ETAG,  /* etag given: only if it matches a live row */
        PG_STMT_DELETE,
        PG_STMT_DELETE_ETAG,
        PG_STMT_PURGE,
        _PG_STMT_MAX,
} PgStmt;

static const struct {
        const char *name;
        int n_params;
        Oid types[4];
} pg_stmts[_PG_STMT_MAX] = {
        [PG_STMT_GET] = { "mooring_get", 1, { PG_OID_TEXT } },
        [PG_STMT_UPSERT] = { "mooring_upsert", 3, { PG_OID_TEXT, PG_OID_BYTEA, PG_OID_INT8 } },
        [PG_STMT_INSERT_FIRST] = { "mooring_insert_first", 3, { PG_OID_TEXT, PG_OID_BYTEA, PG_OID_INT8 } },
        [PG_STMT_UPDATE_ETAG] = { "mooring_update_etag", 4,
                                  { PG_OID_TEXT, PG_OID_BYTEA, PG_OID_INT8, PG_OID_INT8 } },
        [PG_STMT_DELETE] = { "mooring_delete", 1, { PG_OID_TEXT } },
        [PG_STMT_DELETE_ETAG] = { "mooring_delete_etag", 2, { PG_OID_TEXT, PG_OID_INT8 } },
        [PG_STMT_PURGE] = { "mooring_purge", 0, {} },
};

/* One write, with everything copied from the caller's StateOp. */
typedef struct PgWrite {
        StateOpKind kind;
        StateConcurrency concurrency;
        char *key;
        void *value;           /* value_len bytes, NULL when empty */
        size_t value_len;
        char *etag;            /* canonical decimal, NULL: none given */
        char ttl[24];          /* decimal seconds; <= 0 never expires */
} PgWrite;

typedef enum PgOpKind {
        PG_OP_GET,
        PG_OP_WRITE,
        PG_OP_TRANSACT,
        PG_OP_PURGE, /* internal: no done */
        PG_OP_QUERY, /* answered through qdone */
} PgOpKind;

typedef struct PgOp PgOp;
struct PgOp {
        PgOp *prev, *next;    /* in Pg.queue or Pg.completed */
        PgOpKind kind;
        char *key;            /* get */
        PgWrite *writes;      /* write: 1, transact: n_writes */
        size_t n_writes;
        uint64_t deadline;    /* CLOCK_MONOTONIC */
        bool started;         /* its first command went out: it owns the connection */
        size_t step;          /* transact: 0 BEGIN, 1..n the writes, n+1 COMMIT */
        bool rolling_back;
        long rows;            /* rows the last command returned or affected */
        StateResult result;
        StateDoneFn done;     /* NULL for internal operations */
        void *userdata;
        PgQueryPlan plan;     /* query */
        StateQueryResult qresult;
        StateQueryDoneFn qdone;
};

typedef struct OpList {
        PgOp *head, *tail;
        size_t n;
} OpList;

typedef struct Pg {
        unsigned n_ref;
        bool closed;
        sd_event *event;

        /* configuration */
        char *conninfo;                 /* secret: wiped on free */
        char *setup_sql;
        char *sql[_PG_STMT_MAX];
        char *table;                    /* quoted, for queries */
        uint64_t timeout_usec;
        uint64_t cleanup_usec;          /* 0: no purge timer */

        /* connection */
        PgLink link;                    /* connecting, reconnecting with backoff */
        PGconn *conn;                   /* pg_link_conn(&link): NULL while not connected */
        bool ready;                     /* connected and set up: operations go out */
        bool busy;                      /* a command is on the wire, results not all read */
        unsigned setup_step;            /* 0: DDL, 1..: prepare statement step-1 */
        char *cmd_error;                /* setup: the first error of the running command */
        char *lost_error;               /* READY: a result said the session is gone */
        char *last_error;               /* why we are not connected (for fail-fast messages) */
        sd_event_source *setup_timer;   /* connected, setting up: its timeout */
        sd_event_source *deadline_timer;/* the oldest queued operation's deadline */
        sd_event_source *purge_timer;
        sd_event_source *defer;         /* delivers .completed */

        OpList queue;                   /* head is the one in flight once started */
        OpList completed;               /* outcomes waiting for delivery */
        bool purge_queued;
} Pg;

typedef struct PgStore {
        StateStore store;
        Pg *pg;                         /* NULL once closed */
} PgStore;

/* ---- small helpers ---- */

static void op_list_append(OpList *l, PgOp *op) {
        op->next = NULL;
        op->prev = l->tail;
        if (l->tail)
                l->tail->next = op;
        else
                l->head = op;
        l->tail = op;
        l->n++;
}

static void op_list_remove(OpList *l, PgOp *op) {
        if (op->prev)
                op->prev->next = op->next;
        else
                l->head = op->next;
        if (op->next)
                op->next->prev = op->prev;
        else
                l->tail = op->prev;
        op->prev = op->next = NULL;
        l->n--;
}

static PgOp *op_list_pop(OpList *l) {
        PgOp *op = l->head;
        if (op)
                op_list_remove(l, op);
        return op;
}

/*
 * The clock itself, not sd_event_now(): that is the time the current loop
 * iteration woke up, which may be long past when an operation starts after a
 * slow iteration (or, in a test, after the loop sat idle), and a deadline
 * counted from it would fire early. A vDSO call per operation costs nothing.
 */
static uint64_t pg_now(Pg *p) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * PG_USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* a + b, saturated well below "never" (a wrapped deadline would fire at once, forever) */
static uint64_t usec_add(uint64_t a, uint64_t b) {
        const uint64_t limit = UINT64_MAX / 2;
        return a >= limit || b >= limit - a ? limit : a + b;
}

/* A libpq message on one line: each whitespace run becomes one space, trimmed. */
static char *pg_message_dup(const char *m) {
        char *s, *d;

        s = strdup(m && *m ? m : "unknown error");
        if (!s)
                return NULL;
        d = s;
        for (const char *c = s; *c;) {
                if (*c == ' ' || *c == '\n' || *c == '\r' || *c == '\t') {
                        while (*c == ' ' || *c == '\n' || *c == '\r' || *c == '\t')
                                c++;
                        if (d > s && *c)
                                *d++ = ' ';
                        continue;
                }
                *d++ = *c++;
        }
        *d = 0;
        return s;
}

static char *mfree_str(char *s) {
        free(s);
        return NULL;
}

static void pg_write_done(PgWrite *w) {
        free(w->key);
        free(w->value);
        free(w->etag);
}

static PgOp *pg_op_free(PgOp *op) {
        if (!op)
                return NULL;
        free(op->key);
        for (size_t i = 0; i < op->n_writes; i++)
                pg_write_done(&op->writes[i]);
        free(op->writes);
        state_result_done(&op->result);
        pg_query_plan_done(&op->plan);
        state_query_result_done(&op->qresult);
        free(op);
        return NULL;
}
DEFINE_CLEANUP_FUNC(PgOp, pg_op_free);

static Pg *pg_ref(Pg *p) {
        p->n_ref++;
        return p;
}

/* What the driver keeps about a connection, forgotten with it (the link drops the connection). */
static void pg_drop_connection(Pg *p) {
        p->conn = NULL;
        p->ready = false;
        (void) sd_event_source_set_enabled(p->setup_timer, SD_EVENT_OFF);
        p->busy = false;
        p->cmd_error = mfree_str(p->cmd_error);
        p->lost_error = mfree_str(p->lost_error);
}

static Pg *pg_unref(Pg *p) {
        if (!p || --p->n_ref > 0)
                return NULL;
        /* close() emptied both lists; a half-built Pg from open() has none */
        assert(!p->queue.head && !p->completed.head);
        pg_link_done(&p->link);
        pg_drop_connection(p);
        sd_event_source_disable_unref(p->setup_timer);
        sd_event_source_disable_unref(p->deadline_timer);
        sd_event_source_disable_unref(p->purge_timer);
        sd_event_source_disable_unref(p->defer);
        sd_event_unref(p->event);
        erase_and_free(p->conninfo);
        free(p->setup_sql);
        free(p->table);
        for (size_t i = 0; i < _PG_STMT_MAX; i++)
                free(p->sql[i]);
        free(p->last_error);
        free(p);
        return NULL;
}
DEFINE_CLEANUP_FUNC(Pg, pg_unref);

/* ---- completion ---- */

/* Takes op (already out of the queue): its result is delivered from the defer source. */
static void pg_complete(Pg *p, PgOp *op) {
        if (!op->done && !op->qdone) {
                if (op->kind == PG_OP_PURGE)
                        p->purge_queued = false;
                pg_op_free(op);
                return;
        }
        op_list_append(&p->completed, op);
        (void) sd_event_source_set_enabled(p->defer, SD_EVENT_ONESHOT);
}

static void pg_op_deliver(PgOp *op) {
        if (op->kind == PG_OP_QUERY) {
                if (op->result.error != 0 && op->qresult.error == 0) /* timed out, lost, closed */
                        (void) state_query_fail(&op->qresult, op->result.error, "%s", strna(op->result.message));
                else if (op->qresult.error == 0 && op->result.error == 0 && op->rows < 0)
                        (void) state_query_fail(&op->qresult, -EIO, "postgresql: query gave no result");
                op->qdone(&op->qresult, op->userdata);
        } else
                op->done(&op->result, op->userdata);
        pg_op_free(op);
}

static int on_defer(sd_event_source *s, void *userdata) {
        Pg *p = pg_ref(userdata);
        /* only what was there on entry: a callback that resubmits must not starve the loop */
        size_t n = p->completed.n;

        while (n-- > 0 && !p->closed) {
                PgOp *op = op_list_pop(&p->completed);
                if (!op)
                        break;
                pg_op_deliver(op); /* may close the store: p stays alive through our reference */
        }
        if (!p->closed && p->completed.head)
                (void) sd_event_source_set_enabled(p->defer, SD_EVENT_ONESHOT);
        pg_unref(p);
        return 0;
}

static void pg_arm_deadline(Pg *p) {
        if (!p->queue.head) {
                (void) sd_event_source_set_enabled(p->deadline_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(p->deadline_timer, p->queue.head->deadline);
        (void) sd_event_source_set_enabled(p->deadline_timer, SD_EVENT_ONESHOT);
}

/* Everything queued fails with error; a rolling-back transaction keeps its first error. */
static void pg_fail_queue(Pg *p, int error, const char *what, const char *why) {
        PgOp *op;

        while ((op = op_list_pop(&p->queue))) {
                if (!(op->rolling_back && op->result.error != 0))
                        (void) state_result_fail(&op->result, error, "postgresql %s: %s", what, why);
                pg_complete(p, op);
        }
        pg_arm_deadline(p);
}

/* ---- connection ---- */

static void pg_dispatch(Pg *p);

/* The connection is gone or never came up: everything queued fails (on_lost) and a retry is
 * scheduled with backoff. */
static void pg_disconnect(Pg *p, const char *what, const char *why) {
        pg_link_fail(&p->link, what, why);
}

static int pg_flush(Pg *p) {
        return pg_link_flush(&p->link);
}

static void pg_setup_send(Pg *p) {
        int ok;

        if (p->setup_step == 0)
                ok = sym_PQsendQuery(p->conn, p->setup_sql);
        else {
                PgStmt i = (PgStmt) (p->setup_step - 1);
                ok = sym_PQsendPrepare(p->conn, pg_stmts[i].name, p->sql[i], pg_stmts[i].n_params,
                                   pg_stmts[i].types);
        }
        if (!ok) {
                pg_disconnect(p, "connection failed", sym_PQerrorMessage(p->conn));
                return;
        }
        p->busy = true;
        (void) pg_flush(p);
}

/* PgLink: connected: the session is set up (DDL, prepared statements) within one timeout */
static void on_ready(PgLink *l, void *userdata) {
        Pg *p = userdata;
        p->conn = pg_link_conn(l);
        p->setup_step = 0;
        (void) sd_event_source_set_time(p->setup_timer, usec_add(pg_now(p), p->timeout_usec));
        (void) sd_event_source_set_enabled(p->setup_timer, SD_EVENT_ONESHOT);
        pg_setup_send(p);
}

/* PgLink: the connection is gone, or never came up: everything queued fails with -ENOTCONN
 * ("postgresql <what>: <why>"); the link retries with backoff. */
static void on_lost(PgLink *l, const char *what, const char *why, void *userdata) {
        Pg *p = userdata;
        _cleanup_free_ char *msg = pg_message_dup(why);

        pg_drop_connection(p);
        pg_fail_queue(p, -ENOTCONN, what, msg ?: "out of memory");
        free(p->last_error);
        p->last_error = NULL;
        if (msg)
                (void) asprintf(&p->last_error, "%s: %s", what, msg);
}

static void pg_read(Pg *p);

static void on_io(PgLink *l, uint32_t revents, void *userdata) {
        Pg *p = userdata;
        if ((revents & EPOLLOUT) && pg_flush(p) < 0)
                return;
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                pg_read(p);
}

static const PgLinkOps link_ops = { .ready = on_ready, .lost = on_lost, .io = on_io };

static int on_setup_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Pg *p = userdata;
        char buf[64];

        if (p->conn && !p->ready) {
                (void) snprintf(buf, sizeof buf, "timed out after %" PRIu64 " ms", p->timeout_usec / PG_USEC_PER_MSEC);
                pg_disconnect(p, "connection failed", buf);
        }
        return 0;
}

/* ---- commands ---- */

/* Maps a failed PGresult onto op->result (first error wins); marks a dead session. */
static void pg_result_error(Pg *p, PgOp *op, const PGresult *res) {
        const char *state = sym_PQresultErrorField(res, PG_DIAG_SQLSTATE);
        const char *primary = sym_PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        _cleanup_free_ char *msg = NULL;
        int error = -EIO;

        msg = pg_message_dup(primary ?: sym_PQresultErrorMessage(res));
        if (state && (startswith(state, "08") || streq(state, "57P01") || streq(state, "57P02") ||
                      streq(state, "57P03"))) {
                /* the server ended the session: handled as a lost connection once the command ends */
                if (!p->lost_error)
                        p->lost_error = TAKE_PTR(msg);
                return;
        }
        if (state && startswith(state, "22"))
                error = -EINVAL; /* data exception: bad encoding in a key, ttl out of range, ... */
        else if (state && startswith(state, "54"))
                error = -E2BIG; /* program limit exceeded: value too large */
        if (op->result.error == 0)
                (void) state_result_fail(&op->result, error, "postgresql: %s%s%s%s", strna(msg),
                                         state ? " (SQLSTATE " : "", strempty(state), state ? ")" : "");
}

static void pg_get_result(PgOp *op, const PGresult *res) {
        StateValue *v = &op->result.value;
        int len;
        uint64_t n;

        if (sym_PQntuples(res) != 1)
                return; /* not found */
        if (sym_PQnfields(res) != 3 || sym_PQfformat(res, 0) != 1 || sym_PQgetlength(res, 0, 1) != 8) {
                (void) state_result_fail(&op->result, -EIO, "postgresql: unexpected result shape");
                return;
        }
        len = sym_PQgetlength(res, 0, 0);
        v->value = malloc((size_t) len + 1);
        if (!v->value) {
                (void) state_result_fail(&op->result, -ENOMEM, "out of memory");
                return;
        }
        memcpy(v->value, sym_PQgetvalue(res, 0, 0), (size_t) len);
        ((char *) v->value)[len] = 0;
        v->value_len = (size_t) len;

        memcpy(&n, sym_PQgetvalue(res, 0, 1), sizeof n);
        if (asprintf(&v->etag, "%" PRId64, (int64_t) be64toh(n)) < 0) {
                v->etag = NULL;
                (void) state_result_fail(&op->result, -ENOMEM, "out of memory");
                return;
        }
        if (!sym_PQgetisnull(res, 0, 2) && sym_PQgetlength(res, 0, 2) == 8) {
                int64_t t;
                memcpy(&n, sym_PQgetvalue(res, 0, 2), sizeof n);
                t = (int64_t) be64toh(n);
                v->expire_realtime_usec = t > 0 ? (uint64_t) t : 1;
        }
        v->found = true;
}

/* Rows of key (text), value (bytea), etag (int8), all in binary format. */
static void pg_query_result(PgOp *op, const PGresult *res) {
        int n = sym_PQntuples(res);

        if (sym_PQnfields(res) != 3) {
                (void) state_query_fail(&op->qresult, -EIO, "postgresql: unexpected result shape");
                return;
        }
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *key = strndup(sym_PQgetvalue(res, i, 0), (size_t) sym_PQgetlength(res, i, 0));
                char etag[24] = "";
                uint64_t e;

                if (sym_PQgetlength(res, i, 2) == 8) {
                        memcpy(&e, sym_PQgetvalue(res, i, 2), sizeof e);
                        snprintf(etag, sizeof etag, "%" PRId64, (int64_t) be64toh(e));
                }
                if (!key || state_query_result_add(&op->qresult, key, sym_PQgetvalue(res, i, 1),
                                                   (size_t) sym_PQgetlength(res, i, 1), *etag ? etag : NULL) < 0) {
                        (void) state_query_fail(&op->qresult, -ENOMEM, "out of memory");
                        return;
                }
        }
}

static void pg_command_result(Pg *p, PGresult *res) {
        ExecStatusType st = sym_PQresultStatus(res);
        PgOp *op;

        if (!p->ready) { /* setting up */
                if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !p->cmd_error)
                        p->cmd_error = pg_message_dup(sym_PQresultErrorMessage(res));
                return;
        }
        op = p->queue.head;
        assert(op && op->started);
        switch (st) {
        case PGRES_TUPLES_OK:
                op->rows = sym_PQntuples(res);
                if (op->kind == PG_OP_GET && op->result.error == 0)
                        pg_get_result(op, res);
                if (op->kind == PG_OP_QUERY && op->result.error == 0)
                        pg_query_result(op, res);
                break;
        case PGRES_COMMAND_OK:
                op->rows = strtol(sym_PQcmdTuples(res), NULL, 10);
                break;
        default:
                pg_result_error(p, op, res);
                break;
        }
}

static int pg_send_stmt(Pg *p, PgStmt stmt, const char *const *values, const int *lengths,
                        const int *formats) {
        return sym_PQsendQueryPrepared(p->conn, pg_stmts[stmt].name, pg_stmts[stmt].n_params, values, lengths,
                                   formats, 1);
}

static int pg_send_write(Pg *p, const PgWrite *w) {
        const char *values[4] = { w->key };
        int lengths[4] = {}, formats[4] = {};

        if (w->kind == STATE_OP_DELETE) {
                if (!w->etag)
                        return pg_send_stmt(p, PG_STMT_DELETE, values, lengths, formats);
                values[1] = w->etag;
                return pg_send_stmt(p, PG_STMT_DELETE_ETAG, values, lengths, formats);
        }
        values[1] = w->value ?: ""; /* NULL would be SQL NULL */
        lengths[1] = (int) w->value_len;
        formats[1] = 1;
        values[2] = w->ttl;
        if (w->etag) {
                values[3] = w->etag;
                return pg_send_stmt(p, PG_STMT_UPDATE_ETAG, values, lengths, formats);
        }
        return pg_send_stmt(p, w->concurrency == STATE_CONCURRENCY_FIRST_WRITE ? PG_STMT_INSERT_FIRST
                                                                             : PG_STMT_UPSERT,
                            values, lengths, formats);
}

/* Sends the head operation's next command. */
static void pg_op_send(Pg *p, PgOp *op) {
        const char *values[1] = { op->key };
        int ok;

        op->started = true;
        op->rows = 0;
        switch (op->kind) {
        case PG_OP_GET:
                ok = pg_send_stmt(p, PG_STMT_GET, values, NULL, NULL);
                break;
        case PG_OP_PURGE:
                ok = pg_send_stmt(p, PG_STMT_PURGE, NULL, NULL, NULL);
                break;
        case PG_OP_QUERY:
                ok = sym_PQsendQueryParams(p->conn, op->plan.sql, (int) op->plan.n_params, NULL,
                                           (const char *const *) op->plan.params, NULL, NULL, 1);
                break;
        case PG_OP_WRITE:
                ok = pg_send_write(p, &op->writes[0]);
                break;
        case PG_OP_TRANSACT:
                if (op->rolling_back)
                        ok = sym_PQsendQuery(p->conn, "ROLLBACK");
                else if (op->step == 0)
                        ok = sym_PQsendQuery(p->conn, "BEGIN");
                else if (op->step > op->n_writes)
                        ok = sym_PQsendQuery(p->conn, "COMMIT");
                else
                        ok = pg_send_write(p, &op->writes[op->step - 1]);
                break;
        default:
                assert(false);
                ok = 0;
        }
        if (!ok) {
                pg_disconnect(p, "connection lost", sym_PQerrorMessage(p->conn));
                return;
        }
        p->busy = true;
        (void) pg_flush(p);
}

static void pg_dispatch(Pg *p) {
        if (!p->ready || p->busy || !p->queue.head)
                return;
        pg_op_send(p, p->queue.head);
}

/* A write's command ended without an error: did its condition hold? 0 or -ESTALE/-EIO set in op. */
static int pg_write_check(PgOp *op, const PgWrite *w) {
        if (op->rows > 0)
                return 0;
        if (w->kind == STATE_OP_DELETE) {
                if (!w->etag)
                        return 0; /* absent is success */
                return state_result_fail(&op->result, -ESTALE, "etag mismatch for key '%s'", w->key);
        }
        if (w->etag)
                return state_result_fail(&op->result, -ESTALE, "etag mismatch for key '%s'", w->key);
        if (w->concurrency == STATE_CONCURRENCY_FIRST_WRITE)
                return state_result_fail(&op->result, -ESTALE,
                                         "key '%s' already exists (first-write concurrency)", w->key);
        return state_result_fail(&op->result, -EIO, "postgresql: upsert of key '%s' changed no row",
                                 w->key);
}

/* The head's command ended. Returns true when the operation is finished. */
static bool pg_op_step_done(PgOp *op) {
        switch (op->kind) {
        case PG_OP_GET:
        case PG_OP_PURGE:
        case PG_OP_QUERY:
                return true;
        case PG_OP_WRITE:
                if (op->result.error == 0)
                        (void) pg_write_check(op, &op->writes[0]);
                return true;
        case PG_OP_TRANSACT:
                if (op->rolling_back)
                        return true;
                if (op->step > op->n_writes)
                        return true; /* COMMIT ended, well or not */
                if (op->step == 0) {
                        if (op->result.error != 0)
                                return true; /* BEGIN failed: nothing to roll back */
                        op->step++;
                        return false;
                }
                if (op->result.error != 0 || pg_write_check(op, &op->writes[op->step - 1]) < 0) {
                        op->rolling_back = true;
                        return false;
                }
                op->step++;
                return false;
        }
        return true;
}

static void pg_command_done(Pg *p) {
        PgOp *op;

        if (!p->ready) { /* setting up */
                if (p->cmd_error) {
                        _cleanup_free_ char *e = TAKE_PTR(p->cmd_error);
                        pg_disconnect(p, "setup failed", e);
                        return;
                }
                if (++p->setup_step <= _PG_STMT_MAX) {
                        pg_setup_send(p);
                        return;
                }
                p->ready = true;
                pg_link_good(&p->link);
                p->last_error = mfree_str(p->last_error);
                (void) sd_event_source_set_enabled(p->setup_timer, SD_EVENT_OFF);
                pg_dispatch(p);
                return;
        }

        if (p->lost_error || sym_PQstatus(p->conn) == CONNECTION_BAD) {
                _cleanup_free_ char *e = p->lost_error ? TAKE_PTR(p->lost_error)
                                                       : pg_message_dup(sym_PQerrorMessage(p->conn));
                pg_disconnect(p, "connection lost", e ?: "out of memory");
                return;
        }
        op = p->queue.head;
        assert(op && op->started);
        if (pg_op_step_done(op)) {
                op_list_remove(&p->queue, op);
                pg_complete(p, op);
                pg_arm_deadline(p);
        }
        pg_dispatch(p);
}

static void pg_read(Pg *p) {
        if (!sym_PQconsumeInput(p->conn)) {
                pg_disconnect(p, "connection lost", sym_PQerrorMessage(p->conn));
                return;
        }
        while (p->busy && !sym_PQisBusy(p->conn)) {
                PGresult *res = sym_PQgetResult(p->conn);
                if (!res) {
                        p->busy = false;
                        pg_command_done(p); /* may send the next command, or drop the connection */
                        continue;
                }
                pg_command_result(p, res);
                sym_PQclear(res);
        }
        if (p->conn && sym_PQstatus(p->conn) == CONNECTION_BAD)
                pg_disconnect(p, "connection lost", sym_PQerrorMessage(p->conn));
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Pg *p = userdata;
        uint64_t now = pg_now(p);
        PgOp *op;

        while ((op = p->queue.head) && op->deadline <= now) {
                op_list_remove(&p->queue, op);
                (void) state_result_fail(&op->result, -ETIMEDOUT,
                                         "postgresql operation timed out after %" PRIu64 " ms%s",
                                         p->timeout_usec / PG_USEC_PER_MSEC,
                                         op->started ? "" : " (waiting for the connection)");
                if (op->started) {
                        /* the session is in an unknown state: start over now; the rest stays queued */
                        pg_complete(p, op);
                        pg_link_stop(&p->link);
                        pg_drop_connection(p);
                        pg_link_start(&p->link);
                } else
                        pg_complete(p, op);
        }
        pg_arm_deadline(p);
        return 0;
}

static int on_purge_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Pg *p = userdata;
        PgOp *op;

        (void) sd_event_source_set_time(s, usec_add(pg_now(p), p->cleanup_usec));
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (!p->ready || p->purge_queued)
                return 0;
        op = calloc(1, sizeof *op);
        if (!op)
                return 0; /* next time */
        op->kind = PG_OP_PURGE;
        op->deadline = usec_add(pg_now(p), p->timeout_usec);
        p->purge_queued = true;
        op_list_append(&p->queue, op);
        pg_arm_deadline(p);
        pg_dispatch(p);
        return 0;
}

/* ---- configuration ---- */

static int open_fail(char **reterr_msg, const char *fmt, ...) _printf_(2, 3);
static int open_fail(char **reterr_msg, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;

        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        if (reterr_msg)
                *reterr_msg = m;
        else
                free(m);
        return -EINVAL;
}

static bool ident_part_valid(const char *s, size_t n) {
        if (n == 0 || n > PG_IDENT_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                        return false;
        return true;
}

/* "Tab" → "tab": unquoted SQL names fold to lower case; we quote them (reserved words) but keep that folding. */
static char *ident_lower(const char *s, size_t n) {
        char *r = strndup(s, n);
        if (r)
                for (char *c = r; *c; c++)
                        if (*c >= 'A' && *c <= 'Z')
                                *c = (char) (*c - 'A' + 'a');
        return r;
}

/* tableName → quoted table, sequence and index names. -EINVAL if invalid, -ENOMEM. */
static int pg_table_names(const char *name, char **ret_table, char **ret_seq, char **ret_index) {
        const char *dot = strchr(name, '.');
        _cleanup_free_ char *schema = NULL, *table = NULL;
        char *t = NULL, *q = NULL, *i = NULL;
        int r;

        if (dot) {
                if (!ident_part_valid(name, (size_t) (dot - name)) ||
                    !ident_part_valid(dot + 1, strlen(dot + 1)))
                        return -EINVAL;
                schema = ident_lower(name, (size_t) (dot - name));
                table = ident_lower(dot + 1, strlen(dot + 1));
        } else {
                if (!ident_part_valid(name, strlen(name)))
                        return -EINVAL;
                table = ident_lower(name, strlen(name));
        }
        if ((dot && !schema) || !table)
                return -ENOMEM;

        if (schema)
                r = asprintf(&t, "\"%s\".\"%s\"", schema, table);
        else
                r = asprintf(&t, "\"%s\"", table);
        if (r < 0)
                return -ENOMEM;
        if (schema)
                r = asprintf(&q, "\"%s\".\"%s_etag_seq\"", schema, table);
        else
                r = asprintf(&q, "\"%s_etag_seq\"", table);
        if (r < 0) {
                free(t);
                return -ENOMEM;
        }
        if (asprintf(&i, "\"%s_expire_at_idx\"", table) < 0) {
                free(t);
                free(q);
                return -ENOMEM;
        }
        *ret_table = t;
        *ret_seq = q;
        *ret_index = i;
        return 0;
}

#define PG_TTL_EXPR "CASE WHEN $3 > 0 THEN now() + make_interval(secs => $3) END"
#define PG_LIVE "(expire_at IS NULL OR expire_at > now())"

static int pg_build_sql(Pg *p, const char *t, const char *q, const char *i) {
        /* Several stores (or daemons) may set up the same fresh database at once, and
         * CREATE ... IF NOT EXISTS is not safe against that: serialize the DDL with a
         * transaction-scoped advisory lock (the statements run as one implicit transaction). */
        if (asprintf(&p->setup_sql,
                     "SELECT pg_advisory_xact_lock(7284110934531067); "
                     "CREATE SEQUENCE IF NOT EXISTS %s; "
                     "CREATE TABLE IF NOT EXISTS %s (key TEXT PRIMARY KEY, value BYTEA NOT NULL, "
                     "etag BIGINT NOT NULL, expire_at TIMESTAMPTZ NULL, "
                     "update_time TIMESTAMPTZ NOT NULL DEFAULT now()); "
                     "CREATE INDEX IF NOT EXISTS %s ON %s (expire_at) WHERE expire_at IS NOT NULL; "
                     PG_QUERY_SETUP_SQL,
                     q, t, i, t) < 0)
                p->setup_sql = NULL;
        if (asprintf(&p->sql[PG_STMT_GET],
                     "SELECT value, etag, (extract(epoch FROM expire_at) * 1000000)::bigint "
                     "FROM %s WHERE key = $1 AND " PG_LIVE,
                     t) < 0)
                p->sql[PG_STMT_GET] = NULL;
        if (asprintf(&p->sql[PG_STMT_UPSERT],
                     "INSERT INTO %s AS t (key, value, etag, expire_at, update_time) "
                     "VALUES ($1, $2, nextval('%s'), " PG_TTL_EXPR ", now()) "
                     "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, etag = EXCLUDED.etag, "
                     "expire_at = EXCLUDED.expire_at, update_time = EXCLUDED.update_time",
                     t, q) < 0)
                p->sql[PG_STMT_UPSERT] = NULL;
        if (asprintf(&p->sql[PG_STMT_INSERT_FIRST],
                     "INSERT INTO %s AS t (key, value, etag, expire_at, update_time) "
                     "VALUES ($1, $2, nextval('%s'), " PG_TTL_EXPR ", now()) "
                     "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, etag = EXCLUDED.etag, "
                     "expire_at = EXCLUDED.expire_at, update_time = EXCLUDED.update_time "
                     "WHERE t.expire_at IS NOT NULL AND t.expire_at <= now()",
                     t, q) < 0)
                p->sql[PG_STMT_INSERT_FIRST] = NULL;
        if (asprintf(&p->sql[PG_STMT_UPDATE_ETAG],
                     "UPDATE %s SET value = $2, etag = nextval('%s'), expire_at = " PG_TTL_EXPR ", "
                     "update_time = now() WHERE key = $1 AND etag = $4 AND " PG_LIVE,
                     t, q) < 0)
                p->sql[PG_STMT_UPDATE_ETAG] = NULL;
        if (asprintf(&p->sql[PG_STMT_DELETE], "DELETE FROM %s WHERE key = $1", t) < 0)
                p->sql[PG_STMT_DELETE] = NULL;
        if (asprintf(&p->sql[PG_STMT_DELETE_ETAG],
                     "DELETE FROM %s WHERE key = $1 AND etag = $2 AND " PG_LIVE, t) < 0)
                p->sql[PG_STMT_DELETE_ETAG] = NULL;
        if (asprintf(&p->sql[PG_STMT_PURGE],
                     "DELETE FROM %s WHERE expire_at IS NOT NULL AND expire_at <= now()", t) < 0)
                p->sql[PG_STMT_PURGE] = NULL;

        if (!p->setup_sql)
                return -ENOMEM;
        for (size_t k = 0; k < _PG_STMT_MAX; k++)
                if (!p->sql[k])
                        return -ENOMEM;
        return 0;
}

/* "0" or a negative value: 0 (disabled). */
static int parse_cleanup_interval(const char *s, uint64_t *ret) {
        if (s[0] == '-') {
                uint64_t ignored;
                if (parse_duration_usec(s + 1, &ignored) < 0)
                        return -EINVAL;
                *ret = 0;
                return 0;
        }
        return parse_duration_usec(s, ret);
}

static int pg_open(StateStore *s, char **reterr_msg) {
        PgStore *ps = (PgStore *) s;
        _cleanup_(pg_unrefp) Pg *p = NULL;
        _cleanup_free_ char *table = NULL, *seq = NULL, *index = NULL;
        const char *v;
        char *err = NULL;
        PQconninfoOption *opts;
        int r;

        /* First: even the connection string is parsed by libpq. */
        r = dlopen_libpq("state.postgresql", reterr_msg);
        if (r < 0)
                return r;

        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->n_ref = 1;
        p->event = sd_event_ref(s->event);
        p->timeout_usec = PG_TIMEOUT_DEFAULT_USEC;
        p->cleanup_usec = PG_CLEANUP_DEFAULT_USEC;

        v = component_get_string(s->component, "connectionString");
        if (!v || !*v)
                return open_fail(reterr_msg, "metadata field 'connectionString' is required");
        /* pgx's spelling (database=, pool_*), as Dapr's component takes it, made libpq's */
        _cleanup_erase_free_ char *conninfo = NULL; /* may hold a password */
        _cleanup_strv_free_ char **ignored = NULL;
        r = pg_conninfo_for_libpq(v, &conninfo, &ignored);
        if (r < 0)
                return r;
        for (char **k = ignored; k && *k; k++)
                log_struct(LOG_WARNING, 0, NULL, s->name,
                           "Component '%s': connectionString setting '%s' is pgx's connection pool's and is "
                           "ignored here.", s->name, *k);
        v = conninfo;
        opts = sym_PQconninfoParse(v, &err);
        if (!opts) {
                _cleanup_free_ char *m = pg_message_dup(err ?: "out of memory");
                sym_PQfreemem(err);
                return open_fail(reterr_msg, "metadata field 'connectionString': %s", strna(m));
        }
        sym_PQconninfoFree(opts);
        p->conninfo = TAKE_PTR(conninfo);

        v = component_get_string(s->component, "tableName");
        r = pg_table_names(v ?: "state", &table, &seq, &index);
        if (r == -EINVAL)
                return open_fail(reterr_msg,
                                 "metadata field 'tableName': invalid table name '%s' "
                                 "(expected [A-Za-z0-9_]+ or schema.table, at most 63 characters each)",
                                 v);
        if (r < 0)
                return r;

        v = component_get_string(s->component, "timeout");
        if (v && (parse_duration_usec(v, &p->timeout_usec) < 0 || p->timeout_usec == 0))
                return open_fail(reterr_msg,
                                 "metadata field 'timeout': invalid duration '%s' (e.g. \"20s\" or \"20\")", v);

        v = component_get_string(s->component, "cleanupInterval");
        if (v && parse_cleanup_interval(v, &p->cleanup_usec) < 0)
                return open_fail(reterr_msg,
                                 "metadata field 'cleanupInterval': invalid duration '%s' (e.g. \"1h\"; 0 disables)",
                                 v);

        r = pg_build_sql(p, table, seq, index);
        if (r < 0)
                return r;
        p->table = strdup(table);
        if (!p->table)
                return -ENOMEM;

        r = sd_event_add_defer(p->event, &p->defer, on_defer, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->defer, SD_EVENT_OFF);
        PgLinkOptions lo = { .conninfo = p->conninfo, .application_name = "mooringd",
                             .connect_timeout_usec = p->timeout_usec, .backoff_min_usec = PG_BACKOFF_MIN_USEC,
                             .backoff_max_usec = PG_BACKOFF_MAX_USEC, .setup_after_ready = true };
        r = pg_link_init(&p->link, p->event, &lo, &link_ops, p);
        if (r < 0)
                return r;
        r = sd_event_add_time(p->event, &p->setup_timer, CLOCK_MONOTONIC, UINT64_MAX, PG_USEC_PER_MSEC,
                              on_setup_timer, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->setup_timer, SD_EVENT_OFF);
        r = sd_event_add_time(p->event, &p->deadline_timer, CLOCK_MONOTONIC, UINT64_MAX,
                              10 * PG_USEC_PER_MSEC, on_deadline, p);
        if (r < 0)
                return r;
        if (p->cleanup_usec > 0) {
                r = sd_event_add_time(p->event, &p->purge_timer, CLOCK_MONOTONIC,
                                      usec_add(pg_now(p), p->cleanup_usec), PG_USEC_PER_SEC, on_purge_timer, p);
                if (r < 0)
                        return r;
        }

        /* a server that is not up yet is no error: calls fail with -ENOTCONN until it is */
        pg_link_start(&p->link);
        ps->pg = TAKE_PTR(p);
        return 0;
}

static void pg_close(StateStore *s) {
        PgStore *ps = (PgStore *) s;
        Pg *p = TAKE_PTR(ps->pg);
        PgOp *op;

        if (!p)
                return;
        p->closed = true;
        /* nothing of ours fires any more; the server rolls back what the session had open */
        p->setup_timer = sd_event_source_disable_unref(p->setup_timer);
        p->deadline_timer = sd_event_source_disable_unref(p->deadline_timer);
        p->purge_timer = sd_event_source_disable_unref(p->purge_timer);
        p->defer = sd_event_source_disable_unref(p->defer);
        pg_link_stop(&p->link);
        pg_drop_connection(p);

        /* outcomes already decided are delivered as they are; the rest is cancelled */
        while ((op = op_list_pop(&p->queue))) {
                state_result_done(&op->result);
                (void) state_result_fail(&op->result, -ECANCELED, "state store closed");
                if (op->done || op->qdone)
                        op_list_append(&p->completed, op);
                else
                        pg_op_free(op);
        }
        while ((op = op_list_pop(&p->completed)))
                pg_op_deliver(op); /* get/write/transact from here return -ECANCELED */
        pg_unref(p);
}

/* ---- operations ---- */

static PgOp *pg_op_new(PgOpKind kind, StateDoneFn done, void *userdata) {
        PgOp *op = calloc(1, sizeof *op);
        if (!op)
                return NULL;
        op->kind = kind;
        op->done = done;
        op->userdata = userdata;
        return op;
}

/* Queues op (taken), or answers it at once when there is no connection to wait for. */
static void pg_submit(Pg *p, PgOp *op) {
        op->deadline = usec_add(pg_now(p), p->timeout_usec);
        if (pg_link_state(&p->link) == PG_LINK_BACKOFF) {
                (void) state_result_fail(&op->result, -ENOTCONN, "postgresql not connected (%s)",
                                         p->last_error ?: "reconnecting");
                pg_complete(p, op);
                return;
        }
        op_list_append(&p->queue, op);
        if (p->queue.head == op)
                pg_arm_deadline(p);
        pg_dispatch(p);
}

/* Decimal int64 only: "123", "-5". */
static bool etag_parse(const char *s, int64_t *ret) {
        const char *d = s[0] == '-' ? s + 1 : s;
        char *end;
        long long v;

        if (!*d || strspn(d, "0123456789") != strlen(d))
                return false;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno != 0 || *end)
                return false;
        *ret = (int64_t) v;
        return true;
}

/* Copies op into w. 0, -ENOMEM, or -EINVAL/-E2BIG with the message set in result. */
static int pg_write_copy(PgWrite *w, const StateOp *op, StateResult *result) {
        int64_t etag;

        assert(op->key && *op->key);
        w->kind = op->kind;
        w->concurrency = op->concurrency;
        if (op->etag) {
                if (!etag_parse(op->etag, &etag))
                        return state_result_fail(result, -EINVAL, "invalid etag '%s' for key '%s'", op->etag,
                                                 op->key);
                if (asprintf(&w->etag, "%" PRId64, etag) < 0) {
                        w->etag = NULL;
                        return -ENOMEM;
                }
        }
        w->key = strdup(op->key);
        if (!w->key)
                return -ENOMEM;
        if (op->kind == STATE_OP_UPSERT) {
                if (op->value_len > INT_MAX)
                        return state_result_fail(result, -E2BIG, "value of key '%s' is too large", op->key);
                if (op->value_len > 0) {
                        w->value = malloc(op->value_len);
                        if (!w->value)
                                return -ENOMEM;
                        memcpy(w->value, op->value, op->value_len);
                        w->value_len = op->value_len;
                }
                (void) snprintf(w->ttl, sizeof w->ttl, "%" PRId64, op->ttl_sec > 0 ? op->ttl_sec : 0);
        }
        return 0;
}

static int pg_get(StateStore *s, const char *key, StateDoneFn done, void *userdata) {
        Pg *p = ((PgStore *) s)->pg;
        _cleanup_(pg_op_freep) PgOp *op = NULL;

        assert(key && *key && done);
        if (!p)
                return -ECANCELED;
        op = pg_op_new(PG_OP_GET, done, userdata);
        if (!op)
                return -ENOMEM;
        op->key = strdup(key);
        if (!op->key)
                return -ENOMEM;
        pg_submit(p, TAKE_PTR(op));
        return 0;
}

static int pg_transact(StateStore *s, const StateOp *ops, size_t n_ops, StateDoneFn done, void *userdata) {
        Pg *p = ((PgStore *) s)->pg;
        _cleanup_(pg_op_freep) PgOp *op = NULL;

        assert(done && (ops || n_ops == 0));
        if (!p)
                return -ECANCELED;
        op = pg_op_new(n_ops == 1 ? PG_OP_WRITE : PG_OP_TRANSACT, done, userdata);
        if (!op)
                return -ENOMEM;
        if (n_ops == 0) {
                pg_complete(p, TAKE_PTR(op)); /* nothing to do: success, delivered later */
                return 0;
        }
        op->writes = calloc(n_ops, sizeof(PgWrite));
        if (!op->writes)
                return -ENOMEM;
        op->n_writes = n_ops;
        for (size_t i = 0; i < n_ops; i++) {
                int r = pg_write_copy(&op->writes[i], &ops[i], &op->result);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        /* bad input: nothing was done, and the caller learns why through done */
                        pg_complete(p, TAKE_PTR(op));
                        return 0;
                }
        }
        pg_submit(p, TAKE_PTR(op));
        return 0;
}

static int pg_write(StateStore *s, const StateOp *op, StateDoneFn done, void *userdata) {
        return pg_transact(s, op, 1, done, userdata);
}

static int pg_query(StateStore *s, const StateQuery *q, StateQueryDoneFn done, void *userdata) {
        Pg *p = ((PgStore *) s)->pg;
        _cleanup_(pg_op_freep) PgOp *op = NULL;

        if (!p)
                return -ECANCELED;
        op = pg_op_new(PG_OP_QUERY, NULL, userdata);
        if (!op || pg_query_plan(p->table, q, &op->plan) < 0)
                return -ENOMEM;
        op->qdone = done;
        pg_submit(p, TAKE_PTR(op));
        return 0;
}

const StateDriver state_postgresql_driver = {
        .type = "state.postgresql",
        .alias = "state.postgres",
        .abi = STATE_DRIVER_ABI,
        .instance_size = sizeof(PgStore),
        .features = STATE_FEATURE_ETAG | STATE_FEATURE_TRANSACTIONAL | STATE_FEATURE_TTL | STATE_FEATURE_QUERY,
        .open = pg_open,
        .close = pg_close,
        .get = pg_get,
        .write = pg_write,
        .transact = pg_transact,
        .query = pg_query,
};
