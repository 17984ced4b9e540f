/* SPDX-License-Identifier: Apache-2.0 */
/*
 * state.sqlite: an embedded store in one SQLite file (Dapr's state.sqlite
 * metadata names; our own table layout).
 *
 * Threading: open() opens the database and prepares every statement on the
 * loop thread (start-up; nothing else uses the connection yet). From then on
 * the writer connection and its statements are used only by the store's
 * writer WorkQueue thread, one job at a time (the queue's mutex orders open()
 * before the first job), and they are closed by close() after the thread is
 * joined. With WAL on a file, gets run on a second connection on a second
 * thread (the reader): WAL lets it read the last commit while the writer
 * works, so a read never waits behind another app's big write (issue 10
 * finding 4). An in-memory database has one connection, so there gets share
 * the writer's thread. A job owns copies of its arguments and its
 * StateResult; the thread fills the result, the loop hands it to the caller.
 *
 * Group commit: writes (single, many, transactions) wait on the loop in
 * `pending` while a commit runs. When it is done, everything pending (up to
 * BATCH_MAX_OPS operations) goes to the writer as ONE batch: one BEGIN, a
 * SAVEPOINT per request, one COMMIT, so one fsync for the lot. A request that
 * fails (etag mismatch, first-write conflict, constraint) is rolled back to
 * its savepoint and fails alone; later requests in the batch see the effects
 * of earlier ones, so etag and first-write checks stay exact. Every request is
 * answered only after the COMMIT that holds it returned: an acknowledged write
 * is on disk. A hard error that ends the whole transaction (I/O, disk full)
 * fails every request of the batch that was not committed.
 *
 * Durability: journal_mode=WAL (unless disableWAL) with synchronous=FULL, so
 * every commit fsyncs the WAL before the write is acknowledged: an answered
 * write survives a crash and a power loss. (WAL with synchronous=NORMAL is
 * faster but may lose the last commits on power loss; we do not trade that.
 * Group commit gets the speed back by sharing the fsync instead.)
 *
 * Table: key TEXT PRIMARY KEY, value BLOB NOT NULL, etag TEXT NOT NULL (32
 * lowercase hex chars, 128 random bits, new on every write), expire_at
 * INTEGER (unix seconds, NULL = never), update_time INTEGER (unix seconds).
 * A row whose expire_at <= now is absent for every operation; a timer purges
 * such rows every cleanupInterval.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../../work/queue.h"
#include "../sqlite-common.h"
#include "driver.h"
#include "query.h"
#include "sqlite-query.h"

#define USEC_PER_SEC 1000000ULL
#define DEFAULT_PATH "state.db"
#define DEFAULT_TABLE "state"
#define DEFAULT_BUSY_TIMEOUT_USEC (20 * USEC_PER_SEC)
#define DEFAULT_CLEANUP_USEC (3600 * USEC_PER_SEC)
#define MIN_CLEANUP_USEC USEC_PER_SEC
#define TABLE_NAME_MAX 64
#define ETAG_BYTES 16
#define ETAG_LEN (ETAG_BYTES * 2)
/* Operations per commit. Large enough that 50+ concurrent saves share one fsync; small
 * enough that a batch (and the wait of whoever is behind it) stays short. One request is
 * never split, so a bigger request makes a bigger batch of its own. */
#define BATCH_MAX_OPS 1024U
/* The longest a write waits for others to join its batch (see kick()). */
#define BATCH_LINGER_USEC 500U

typedef enum SqlStmt {
        SQL_GET,
        SQL_UPSERT,       /* last-write, no etag */
        SQL_INSERT_FIRST, /* first-write, no etag: insert, or replace an expired row */
        SQL_UPDATE_ETAG,  /* etag given */
        SQL_DELETE,
        SQL_DELETE_ETAG,
        SQL_PURGE,
        SQL_BEGIN,
        SQL_COMMIT,
        SQL_ROLLBACK,
        SQL_SAVEPOINT,
        SQL_RELEASE,
        SQL_ROLLBACK_TO,
        _SQL_MAX,
} SqlStmt;

/* @T stands for the (validated) table name, substituted by sql_expand(). */
static const char *const sql_text[_SQL_MAX] = {
        [SQL_GET] = "SELECT value, etag, expire_at FROM \"@T\" "
                    "WHERE key = ?1 AND (expire_at IS NULL OR expire_at > ?2)",
        [SQL_UPSERT] = "INSERT INTO \"@T\" (key, value, etag, expire_at, update_time) "
                       "VALUES (?1, ?2, ?3, ?4, ?5) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag, "
                       "expire_at = excluded.expire_at, update_time = excluded.update_time",
        [SQL_INSERT_FIRST] = "INSERT INTO \"@T\" (key, value, etag, expire_at, update_time) "
                             "VALUES (?1, ?2, ?3, ?4, ?5) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag, "
                             "expire_at = excluded.expire_at, update_time = excluded.update_time "
                             "WHERE \"@T\".expire_at IS NOT NULL AND \"@T\".expire_at <= ?5",
        [SQL_UPDATE_ETAG] = "UPDATE \"@T\" SET value = ?2, etag = ?3, expire_at = ?4, update_time = ?5 "
                            "WHERE key = ?1 AND etag = ?6 AND (expire_at IS NULL OR expire_at > ?5)",
        [SQL_DELETE] = "DELETE FROM \"@T\" WHERE key = ?1",
        [SQL_DELETE_ETAG] = "DELETE FROM \"@T\" "
                            "WHERE key = ?1 AND etag = ?2 AND (expire_at IS NULL OR expire_at > ?3)",
        [SQL_PURGE] = "DELETE FROM \"@T\" WHERE expire_at IS NOT NULL AND expire_at <= ?1",
        [SQL_BEGIN] = "BEGIN IMMEDIATE",
        [SQL_COMMIT] = "COMMIT",
        [SQL_ROLLBACK] = "ROLLBACK",
        [SQL_SAVEPOINT] = "SAVEPOINT req",
        [SQL_RELEASE] = "RELEASE req",
        [SQL_ROLLBACK_TO] = "ROLLBACK TO req",
};

typedef struct SqliteStore {
        StateStore base;

        /* Configuration (open()). */
        char *path; /* file name or URI handed to sqlite3_open_v2() */
        bool path_is_uri;
        char *table;
        uint64_t busy_timeout_usec;
        uint64_t cleanup_usec; /* 0 = no purge timer */
        bool disable_wal;

        /* Used only on the writer's thread once it runs (see the top of the file). */
        sqlite3 *db;
        sqlite3_stmt *stmt[_SQL_MAX];
        /* The reader: used only on the reader's thread. NULL: gets go to the writer. */
        sqlite3 *rdb;
        sqlite3_stmt *rget;

        WorkQueue *queue;  /* the writer */
        WorkQueue *rqueue; /* the reader, or NULL */
        sd_event_source *purge_timer;
        sd_event_source *kick_idle;  /* starts the next batch once the loop has read what came in */
        sd_event_source *kick_timer; /* ... or after BATCH_LINGER_USEC at the latest */
        bool purge_in_flight; /* loop only */
        bool closing;         /* loop only: close() started, calls are refused */
        atomic_bool cancel;   /* set by close(): jobs not yet run answer -ECANCELED */

        /* Group commit, loop only. */
        struct SqliteJob *pending_head, *pending_tail; /* writes waiting for the next batch */
        size_t n_pending_ops;
        struct SqliteBatch *committing; /* the batch on the writer, or NULL */
        struct SqliteBatch *delivering; /* the batch whose answers are being handed out */
} SqliteStore;

typedef enum JobKind {
        JOB_GET,
        JOB_WRITE,      /* one op */
        JOB_WRITE_MANY, /* independent ops, each fails alone */
        JOB_TRANSACT,   /* all ops or none */
        JOB_PURGE,
        JOB_QUERY,      /* on the reader, like a get */
} JobKind;

typedef struct SqliteJob {
        SqliteStore *store; /* back-reference; run() touches only db and stmt[] */
        JobKind kind;
        char *key;    /* get */
        StateOp *ops; /* write/transact: deep copies (key, value, etag owned) */
        size_t n_ops;
        StateResult result;
        StateDoneFn done;
        void *userdata;
        atomic_bool cancelled;   /* the caller is gone: skip if not begun */
        struct SqliteJob *next;  /* in pending */
        SqliteQueryPlan plan;    /* query */
        StateQueryResult qresult;
        StateQueryDoneFn qdone;
} SqliteJob;

/* A group commit: the jobs of one transaction, in order. */
typedef struct SqliteBatch {
        SqliteStore *store;  /* back-reference */
        SqliteJob **jobs;
        size_t n, next;      /* next: the first job not yet answered */
        bool store_gone;     /* close() answered the rest and the store is going away */
} SqliteBatch;

/* ---- helpers ---- */

static int64_t now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec;
}

/* Expiry for ttl_sec from now, rounded up to the next whole second so an item
 * lives at least ttl_sec. 0 = never. */
static int64_t expire_at_for(int64_t ttl_sec) {
        struct timespec ts;
        int64_t t;

        if (ttl_sec <= 0)
                return 0;
        clock_gettime(CLOCK_REALTIME, &ts);
        t = (int64_t) ts.tv_sec + (ts.tv_nsec > 0 ? 1 : 0);
        return ttl_sec > INT64_MAX - t ? INT64_MAX : t + ttl_sec;
}

static bool etag_is_valid(const char *s) {
        size_t i;
        for (i = 0; s[i]; i++)
                if (i >= ETAG_LEN || !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return i == ETAG_LEN;
}

static int etag_new(char ret[static ETAG_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";
        uint8_t b[ETAG_BYTES];
        size_t n = 0;

        while (n < sizeof b) {
                ssize_t k = getrandom(b + n, sizeof b - n, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                n += (size_t) k;
        }
        for (size_t i = 0; i < sizeof b; i++) {
                ret[2 * i] = hex[b[i] >> 4];
                ret[2 * i + 1] = hex[b[i] & 15];
        }
        ret[ETAG_LEN] = 0;
        return 0;
}


/* Fills r from the connection's last error (call right after the failing call, on the thread). */
static int fail_sqlite(SqliteStore *s, StateResult *r, int rc, const char *what) {
        return state_result_fail(r, sqlite_errno(rc), "sqlite: %s: %s", what, sqlite3_errmsg(s->db));
}

/* tmpl with every "@T" replaced by table. NULL on OOM. */
static char *sql_expand(const char *tmpl, const char *table) {
        size_t n = 1, tl = strlen(table);
        char *out, *o;

        for (const char *p = tmpl; *p; p++)
                if (strneq(p, "@T", 2)) {
                        n += tl;
                        p++;
                } else
                        n++;
        out = o = malloc(n);
        if (!out)
                return NULL;
        for (const char *p = tmpl; *p; p++)
                if (strneq(p, "@T", 2)) {
                        o = mempcpy(o, table, tl);
                        p++;
                } else
                        *o++ = *p;
        *o = 0;
        return out;
}

static sqlite3_stmt *stmt_get(SqliteStore *s, SqlStmt which) {
        sqlite3_stmt *st = s->stmt[which];
        (void) sqlite3_reset(st);
        (void) sqlite3_clear_bindings(st);
        return st;
}

/* Runs a statement that returns no rows; resets it. SQLite error code. */
static int stmt_exec(sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE || rc == SQLITE_ROW)
                rc = SQLITE_OK;
        (void) sqlite3_reset(st);
        (void) sqlite3_clear_bindings(st);
        return rc;
}

static void job_free(SqliteJob *j) {
        if (!j)
                return;
        free(j->key);
        for (size_t i = 0; i < j->n_ops; i++) {
                free((void *) j->ops[i].key);
                free((void *) j->ops[i].value);
                free((void *) j->ops[i].etag);
        }
        free(j->ops);
        state_result_done(&j->result);
        sqlite_query_plan_done(&j->plan);
        state_query_result_done(&j->qresult);
        free(j);
}
DEFINE_CLEANUP_FUNC(SqliteJob, job_free);

/* ---- the worker side: runs on the queue's thread ---- */

/* On the reader's thread when there is a reader, else on the writer's. */
static void run_get(SqliteJob *j) {
        SqliteStore *s = j->store;
        sqlite3 *db = s->rdb ?: s->db;
        sqlite3_stmt *st = s->rdb ? s->rget : stmt_get(s, SQL_GET);
        StateValue *v = &j->result.value;
        int rc;

        if (s->rdb) {
                (void) sqlite3_reset(st);
                (void) sqlite3_clear_bindings(st);
        }
        if (sqlite3_bind_text(st, 1, j->key, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 2, now_sec()) != SQLITE_OK) {
                (void) state_result_fail(&j->result, sqlite_errno(sqlite3_errcode(db)), "sqlite: get: %s",
                                         sqlite3_errmsg(db));
                return;
        }
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                const void *blob = sqlite3_column_blob(st, 0);
                size_t len = (size_t) sqlite3_column_bytes(st, 0);
                const unsigned char *etag = sqlite3_column_text(st, 1);

                v->value = malloc(len + 1);
                v->etag = etag ? strdup((const char *) etag) : NULL;
                if (!v->value || (etag && !v->etag)) {
                        (void) state_result_fail(&j->result, -ENOMEM, "out of memory");
                        free(v->value);
                        free(v->etag);
                        *v = (StateValue){};
                } else {
                        if (len > 0)
                                memcpy(v->value, blob, len);
                        ((char *) v->value)[len] = 0;
                        v->value_len = len;
                        v->found = true;
                        if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
                                int64_t e = sqlite3_column_int64(st, 2);
                                if (e > 0)
                                        v->expire_realtime_usec = (uint64_t) e > UINT64_MAX / USEC_PER_SEC
                                                                          ? UINT64_MAX
                                                                          : (uint64_t) e * USEC_PER_SEC;
                        }
                }
        } else if (rc != SQLITE_DONE)
                (void) state_result_fail(&j->result, sqlite_errno(rc), "sqlite: get: %s", sqlite3_errmsg(db));
        (void) sqlite3_reset(st);
        (void) sqlite3_clear_bindings(st);
}

/* Applies one op. 0, or fills r and returns its error. */
static int apply_op(SqliteStore *s, const StateOp *op, StateResult *r) {
        int64_t now = now_sec();
        sqlite3_stmt *st;
        int rc;

        if (op->kind == STATE_OP_DELETE) {
                st = stmt_get(s, op->etag ? SQL_DELETE_ETAG : SQL_DELETE);
                rc = sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
                if (rc == SQLITE_OK && op->etag) {
                        rc = sqlite3_bind_text(st, 2, op->etag, -1, SQLITE_STATIC);
                        if (rc == SQLITE_OK)
                                rc = sqlite3_bind_int64(st, 3, now);
                }
                if (rc == SQLITE_OK)
                        rc = stmt_exec(st);
                if (rc != SQLITE_OK)
                        return fail_sqlite(s, r, rc, "delete");
                if (op->etag && sqlite3_changes(s->db) == 0)
                        return state_result_fail(r, -ESTALE, "etag mismatch for key '%s'", op->key);
                return 0;
        }

        char etag[ETAG_LEN + 1];
        int64_t expire_at = expire_at_for(op->ttl_sec);
        bool first_write = !op->etag && op->concurrency == STATE_CONCURRENCY_FIRST_WRITE;

        rc = etag_new(etag);
        if (rc < 0)
                return state_result_fail(r, rc, "cannot generate an etag: %s", strerror(-rc));

        st = stmt_get(s, op->etag ? SQL_UPDATE_ETAG : first_write ? SQL_INSERT_FIRST : SQL_UPSERT);
        rc = sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                /* A non-NULL pointer even for 0 bytes: NULL would bind SQL NULL, not an empty blob. */
                rc = sqlite3_bind_blob64(st, 2, op->value_len > 0 ? op->value : "", op->value_len,
                                         SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 3, etag, ETAG_LEN, SQLITE_TRANSIENT);
        if (rc == SQLITE_OK)
                rc = expire_at > 0 ? sqlite3_bind_int64(st, 4, expire_at) : sqlite3_bind_null(st, 4);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 5, now);
        if (rc == SQLITE_OK && op->etag)
                rc = sqlite3_bind_text(st, 6, op->etag, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = stmt_exec(st);
        if (rc != SQLITE_OK)
                return fail_sqlite(s, r, rc, "write");
        if (sqlite3_changes(s->db) == 0) {
                if (op->etag)
                        return state_result_fail(r, -ESTALE, "etag mismatch for key '%s'", op->key);
                if (first_write)
                        return state_result_fail(r, -ESTALE, "key '%s' already exists (first-write)",
                                                 op->key);
                return state_result_fail(r, -EIO, "sqlite: write of key '%s' changed nothing", op->key);
        }
        return 0;
}

/* Runs one statement of the batch machinery (BEGIN, SAVEPOINT, ...). SQLite code. */
static int exec_ctl(SqliteStore *s, SqlStmt which) {
        return stmt_exec(stmt_get(s, which));
}

/*
 * Applies one request inside the open batch transaction, under its own savepoint.
 * Returns false when the whole transaction is gone (a hard error rolled it back): the
 * caller must then fail every request of the batch that is not committed yet.
 */
static bool apply_job(SqliteStore *s, SqliteJob *j) {
        int rc;

        if (j->result.error != 0) /* rejected when queued (malformed etag): answered as is */
                return true;
        if (atomic_load(&j->cancelled) || atomic_load(&s->cancel)) {
                (void) state_result_fail(&j->result, -ECANCELED, "cancelled before it started");
                return true;
        }
        rc = exec_ctl(s, SQL_SAVEPOINT);
        if (rc != SQLITE_OK) {
                (void) fail_sqlite(s, &j->result, rc, "savepoint");
                return !sqlite3_get_autocommit(s->db);
        }
        switch (j->kind) {
        case JOB_WRITE:
        case JOB_TRANSACT:
                for (size_t i = 0; i < j->n_ops; i++)
                        if (apply_op(s, &j->ops[i], &j->result) < 0)
                                break;
                break;
        case JOB_WRITE_MANY:
                /* Each op stands alone: a refused one changed nothing (SQLite undoes a failed
                 * statement by itself), the others stay; the first failure is the answer. */
                free(j->result.op_failed);
                j->result.op_failed = calloc(j->n_ops ?: 1, sizeof(bool));
                for (size_t i = 0; i < j->n_ops; i++) {
                        StateResult one = {};
                        if (apply_op(s, &j->ops[i], &one) < 0) {
                                if (j->result.op_failed)
                                        j->result.op_failed[i] = true;
                                if (j->result.error == 0) {
                                        j->result.error = one.error;
                                        j->result.message = TAKE_PTR(one.message);
                                }
                        }
                        state_result_done(&one);
                        if (sqlite3_get_autocommit(s->db))
                                break;
                }
                break;
        default:
                assert(false);
        }
        if (j->result.error == 0) {
                free(j->result.op_failed);
                j->result.op_failed = NULL;
        }
        if (sqlite3_get_autocommit(s->db))
                return false; /* the transaction went with the error */
        if (j->result.error != 0 && (j->kind != JOB_WRITE_MANY || !j->result.op_failed))
                /* (a multi-item save that cannot say which items stayed keeps none of them) */
                /* Undo this request's partial effects; the batch goes on. */
                (void) exec_ctl(s, SQL_ROLLBACK_TO);
        rc = exec_ctl(s, SQL_RELEASE);
        if (rc != SQLITE_OK && j->result.error == 0)
                (void) fail_sqlite(s, &j->result, rc, "release savepoint");
        return !sqlite3_get_autocommit(s->db);
}

/* Fails jobs[from..to) that succeeded so far: their effects were not committed. */
static void fail_uncommitted(SqliteBatch *b, size_t from, size_t to, int error, const char *msg) {
        for (size_t i = from; i < to; i++) {
                StateResult *r = &b->jobs[i]->result;
                free(r->op_failed); /* a multi-item save: none of it stayed */
                r->op_failed = NULL;
                if (r->error == 0)
                        (void) state_result_fail(r, error, "sqlite: not committed: %s", msg);
        }
}

/* The writer thread: one transaction (one fsync) for every request of the batch. */
static void batch_run(void *userdata) {
        SqliteBatch *b = userdata;
        SqliteStore *s = b->store;
        size_t i = 0;

        while (i < b->n) {
                size_t first = i;
                int rc = exec_ctl(s, SQL_BEGIN);

                if (rc != SQLITE_OK) {
                        _cleanup_free_ char *m = strdup(sqlite3_errmsg(s->db));
                        for (; i < b->n; i++)
                                if (b->jobs[i]->result.error == 0)
                                        (void) state_result_fail(&b->jobs[i]->result, sqlite_errno(rc),
                                                                 "sqlite: begin transaction: %s", strna(m));
                        return;
                }
                for (; i < b->n; i++)
                        if (!apply_job(s, b->jobs[i])) {
                                /* A hard error ended the transaction: what ran before in it is
                                 * lost, this request has its error; the rest get a new one. */
                                _cleanup_free_ char *m = strdup(sqlite3_errmsg(s->db));
                                int e = sqlite_errno(sqlite3_errcode(s->db)) ?: -EIO;
                                fail_uncommitted(b, first, i, e, strna(m));
                                free(b->jobs[i]->result.op_failed);
                                b->jobs[i]->result.op_failed = NULL;
                                if (b->jobs[i]->result.error == 0)
                                        (void) state_result_fail(&b->jobs[i]->result, e, "sqlite: %s", strna(m));
                                i++;
                                goto next;
                        }
                rc = exec_ctl(s, SQL_COMMIT);
                if (rc != SQLITE_OK) {
                        _cleanup_free_ char *m = strdup(sqlite3_errmsg(s->db));
                        fail_uncommitted(b, first, i, sqlite_errno(rc), strna(m));
                        if (!sqlite3_get_autocommit(s->db))
                                (void) exec_ctl(s, SQL_ROLLBACK);
                }
        next:;
        }
}

static void job_run(void *userdata) {
        SqliteJob *j = userdata;
        SqliteStore *s = j->store;

        if (j->result.error != 0)
                return;
        if (atomic_load(&s->cancel)) {
                (void) state_result_fail(&j->result, -ECANCELED, "state store closed");
                return;
        }
        switch (j->kind) {
        case JOB_GET:
                run_get(j);
                break;
        case JOB_QUERY:
                sqlite_query_run(s->rdb ?: s->db, &j->plan, now_sec(), &j->qresult);
                break;
        case JOB_PURGE: {
                sqlite3_stmt *st = stmt_get(s, SQL_PURGE);
                int rc = sqlite3_bind_int64(st, 1, now_sec());
                if (rc == SQLITE_OK)
                        rc = stmt_exec(st);
                if (rc != SQLITE_OK)
                        (void) fail_sqlite(s, &j->result, rc, "purge");
                break;
        }
        default:
                assert(false);
        }
}

/* ---- the loop side ---- */

static void job_done(void *userdata) {
        SqliteJob *j = userdata;

        if (j->kind == JOB_PURGE)
                /* Failures are retried on the next tick; nothing to report to. */
                j->store->purge_in_flight = false;
        else if (j->kind == JOB_QUERY) {
                if (j->result.error != 0 && j->qresult.error == 0) /* closed before it ran */
                        (void) state_query_fail(&j->qresult, j->result.error, "%s", strna(j->result.message));
                j->qdone(&j->qresult, j->userdata);
        } else
                j->done(&j->result, j->userdata);
        /* The store may be gone now (done() may have closed it): only j is touched. */
        job_free(j);
}

/* Queues j (taken, also on failure) on the reader if there is one and it is a get, else the writer. */
static int job_submit(SqliteStore *s, SqliteJob *j) {
        int r = work_queue_submit((j->kind == JOB_GET || j->kind == JOB_QUERY) && s->rqueue ? s->rqueue : s->queue,
                                  job_run, job_done, j);
        if (r < 0)
                job_free(j);
        return r;
}

static void batch_free(SqliteBatch *b) {
        if (!b)
                return;
        for (size_t i = 0; i < b->n; i++)
                job_free(b->jobs[i]);
        free(b->jobs);
        free(b);
}

/* Answers b's jobs from b->next on, in order. close() may run inside one of the done()s and
 * answer the rest itself (see sqlite_close()): b->next is shared, so each is answered once. */
static void batch_deliver(SqliteBatch *b) {
        while (b->next < b->n) {
                SqliteJob *j = b->jobs[b->next++];
                j->done(&j->result, j->userdata);
        }
}

static void kick(SqliteStore *s);

static void batch_done(void *userdata) {
        SqliteBatch *b = userdata;
        SqliteStore *s = b->store;

        s->committing = NULL;
        /* Asked for before these answers go out (so a done() that closes the store finds the
         * request and cancels it); it starts once the answered clients' next requests are in. */
        kick(s);
        s->delivering = b;
        batch_deliver(b);
        if (!b->store_gone)
                s->delivering = NULL;
        /* The store may be gone now: only b is touched. */
        batch_free(b);
}

static void start_batch(SqliteStore *s);

static int on_kick(sd_event_source *src, void *userdata) {
        start_batch(userdata);
        return 0;
}

static int on_kick_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        start_batch(userdata);
        return 0;
}

/*
 * Asks for the next batch. It does not start at once: the clients answered by the batch that
 * just finished send their next request right away, and a batch started before the loop has
 * read those would leave them for the one after, splitting the clients into two groups that
 * take turns (half the throughput). So the batch starts from an idle-priority defer, once
 * the loop has nothing else to dispatch (every request that came in is pending here), or
 * after BATCH_LINGER_USEC when the loop never goes idle, or at once when the batch is full.
 * A lone write on a quiet loop starts in the next loop turn.
 */
static void kick(SqliteStore *s) {
        int r;

        if (s->committing || !s->pending_head || s->closing)
                return;
        if (s->n_pending_ops >= BATCH_MAX_OPS) {
                start_batch(s);
                return;
        }
        if (!s->kick_idle) {
                r = sd_event_add_defer(s->base.event, &s->kick_idle, on_kick, s);
                if (r >= 0) {
                        (void) sd_event_source_set_priority(s->kick_idle, SD_EVENT_PRIORITY_IDLE);
                        (void) sd_event_source_set_description(s->kick_idle, "sqlite-batch");
                }
        }
        if (!s->kick_timer) {
                r = sd_event_add_time_relative(s->base.event, &s->kick_timer, CLOCK_MONOTONIC, BATCH_LINGER_USEC,
                                               0, on_kick_timer, s);
                if (r >= 0)
                        (void) sd_event_source_set_description(s->kick_timer, "sqlite-batch-linger");
        } else {
                int enabled = SD_EVENT_OFF;
                (void) sd_event_source_get_enabled(s->kick_timer, &enabled);
                if (enabled == SD_EVENT_OFF) {
                        (void) sd_event_source_set_time_relative(s->kick_timer, BATCH_LINGER_USEC);
                        (void) sd_event_source_set_enabled(s->kick_timer, SD_EVENT_ONESHOT);
                }
        }
        if (s->kick_idle)
                (void) sd_event_source_set_enabled(s->kick_idle, SD_EVENT_ONESHOT);
        if (!s->kick_idle && !s->kick_timer)
                start_batch(s); /* no event sources to be had: no lingering */
}

/* start_batch() could not hand the batch over (OOM): try again from the linger timer, since
 * nothing else may come to kick it. Not kick(): it can call start_batch() right back. */
static void retry_batch_later(SqliteStore *s) {
        if (s->kick_timer && sd_event_source_set_time_relative(s->kick_timer, BATCH_LINGER_USEC) >= 0)
                (void) sd_event_source_set_enabled(s->kick_timer, SD_EVENT_ONESHOT);
}

/* Moves pending writes into one batch on the writer, unless one is committing already. */
static void start_batch(SqliteStore *s) {
        SqliteBatch *b;
        size_t n = 0, ops = 0;

        if (s->kick_idle)
                (void) sd_event_source_set_enabled(s->kick_idle, SD_EVENT_OFF);
        if (s->kick_timer)
                (void) sd_event_source_set_enabled(s->kick_timer, SD_EVENT_OFF);
        if (s->committing || !s->pending_head || s->closing)
                return;
        for (SqliteJob *j = s->pending_head; j && (n == 0 || ops + j->n_ops <= BATCH_MAX_OPS); j = j->next) {
                n++;
                ops += j->n_ops;
        }
        b = calloc(1, sizeof *b);
        if (!b || !(b->jobs = calloc(n, sizeof(SqliteJob *)))) {
                free(b);
                retry_batch_later(s); /* nothing is lost */
                return;
        }
        b->store = s;
        for (size_t i = 0; i < n; i++) {
                SqliteJob *j = s->pending_head;
                s->pending_head = j->next;
                j->next = NULL;
                b->jobs[b->n++] = j;
        }
        if (!s->pending_head)
                s->pending_tail = NULL;
        s->n_pending_ops -= ops;
        if (work_queue_submit(s->queue, batch_run, batch_done, b) < 0) {
                /* Put them back in front, in order, and try again a little later. */
                for (size_t i = b->n; i > 0; i--) {
                        SqliteJob *j = b->jobs[i - 1];
                        j->next = s->pending_head;
                        s->pending_head = j;
                        if (!s->pending_tail)
                                s->pending_tail = j;
                }
                s->n_pending_ops += ops;
                free(b->jobs);
                free(b);
                retry_batch_later(s);
                return;
        }
        s->committing = b;
}

/* Adds a write to the next batch (taken). Never answers from here: done runs from batch_done(). */
static int job_enqueue_write(SqliteStore *s, SqliteJob *j) {
        if (s->pending_tail)
                s->pending_tail->next = j;
        else
                s->pending_head = j;
        s->pending_tail = j;
        s->n_pending_ops += j->n_ops;
        kick(s);
        return 0;
}

static SqliteJob *job_new(SqliteStore *s, JobKind kind, StateDoneFn done, void *userdata) {
        SqliteJob *j = calloc(1, sizeof *j);
        if (!j)
                return NULL;
        *j = (SqliteJob){ .store = s, .kind = kind, .done = done, .userdata = userdata };
        return j;
}

/* Deep-copies ops into j. 0 or -ENOMEM. Records a malformed etag as the job's result. */
static int job_copy_ops(SqliteJob *j, const StateOp *ops, size_t n_ops) {
        j->ops = calloc(n_ops ?: 1, sizeof *j->ops);
        if (!j->ops)
                return -ENOMEM;
        for (size_t i = 0; i < n_ops; i++) {
                const StateOp *op = &ops[i];
                StateOp *c = &j->ops[j->n_ops++];
                void *v = NULL;

                assert(op->key);
                *c = (StateOp){ .kind = op->kind, .concurrency = op->concurrency, .ttl_sec = op->ttl_sec };
                c->key = strdup(op->key);
                if (!c->key)
                        return -ENOMEM;
                if (op->etag) {
                        c->etag = strdup(op->etag);
                        if (!c->etag)
                                return -ENOMEM;
                        if (j->result.error == 0 && !etag_is_valid(op->etag))
                                (void) state_result_fail(&j->result, -EINVAL, "invalid etag '%s'", op->etag);
                }
                if (op->kind == STATE_OP_UPSERT) {
                        v = malloc(op->value_len + 1);
                        if (!v)
                                return -ENOMEM;
                        if (op->value_len > 0)
                                memcpy(v, op->value, op->value_len);
                        ((char *) v)[op->value_len] = 0;
                        c->value = v;
                        c->value_len = op->value_len;
                }
        }
        return 0;
}

static int sqlite_get(StateStore *base, const char *key, StateDoneFn done, void *userdata) {
        SqliteStore *s = (SqliteStore *) base;
        _cleanup_(job_freep) SqliteJob *j = NULL;

        assert(key && done);
        if (s->closing || !s->queue)
                return -ECANCELED;
        j = job_new(s, JOB_GET, done, userdata);
        if (!j || !(j->key = strdup(key)))
                return -ENOMEM;
        return job_submit(s, TAKE_PTR(j));
}

static int sqlite_query(StateStore *base, const StateQuery *q, StateQueryDoneFn done, void *userdata) {
        SqliteStore *s = (SqliteStore *) base;
        _cleanup_(job_freep) SqliteJob *j = NULL;

        if (s->closing || !s->queue)
                return -ECANCELED;
        j = job_new(s, JOB_QUERY, NULL, userdata);
        if (!j || sqlite_query_plan(s->table, q, &j->plan) < 0)
                return -ENOMEM;
        j->qdone = done;
        return job_submit(s, TAKE_PTR(j));
}

static int start_write(SqliteStore *s, JobKind kind, const StateOp *ops, size_t n_ops, StateDoneFn done,
                       void *userdata) {
        _cleanup_(job_freep) SqliteJob *j = NULL;

        assert((ops || n_ops == 0) && done);
        if (s->closing || !s->queue)
                return -ECANCELED;
        j = job_new(s, kind, done, userdata);
        if (!j || job_copy_ops(j, ops, n_ops) < 0)
                return -ENOMEM;
        return job_enqueue_write(s, TAKE_PTR(j));
}

static int sqlite_write(StateStore *base, const StateOp *op, StateDoneFn done, void *userdata) {
        return start_write((SqliteStore *) base, JOB_WRITE, op, 1, done, userdata);
}

static int sqlite_write_many(StateStore *base, const StateOp *ops, size_t n_ops, StateDoneFn done,
                             void *userdata) {
        return start_write((SqliteStore *) base, JOB_WRITE_MANY, ops, n_ops, done, userdata);
}

static int sqlite_transact(StateStore *base, const StateOp *ops, size_t n_ops, StateDoneFn done,
                           void *userdata) {
        return start_write((SqliteStore *) base, JOB_TRANSACT, ops, n_ops, done, userdata);
}

/* Marks the writes started with userdata: a batch skips them unless it has begun them. */
static void sqlite_cancel(StateStore *base, void *userdata) {
        SqliteStore *s = (SqliteStore *) base;

        for (SqliteJob *j = s->pending_head; j; j = j->next)
                if (j->userdata == userdata)
                        atomic_store(&j->cancelled, true);
        if (s->committing)
                for (size_t i = 0; i < s->committing->n; i++)
                        if (s->committing->jobs[i]->userdata == userdata)
                                atomic_store(&s->committing->jobs[i]->cancelled, true);
}

static int on_purge_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        SqliteStore *s = userdata;

        if (!s->purge_in_flight) {
                SqliteJob *j = job_new(s, JOB_PURGE, NULL, NULL);
                if (j && job_submit(s, j) >= 0)
                        s->purge_in_flight = true;
        }
        (void) sd_event_source_set_time_relative(src, s->cleanup_usec);
        (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

/* ---- open/close ---- */


static bool table_name_is_valid(const char *t) {
        size_t n = strlen(t);
        if (n == 0 || n > TABLE_NAME_MAX || strncasecmp(t, "sqlite_", 7) == 0)
                return false;
        for (const char *p = t; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '_'))
                        return false;
        return true;
}

static int parse_metadata(SqliteStore *s, char **reterr_msg) {
        const Component *c = s->base.component;
        const char *v;
        int r;

        r = sqlite_resolve_path(s->base.state_dir, c ? component_get_string(c, "connectionString") : NULL,
                                DEFAULT_PATH, &s->path, &s->path_is_uri, reterr_msg);
        if (r < 0)
                return r;

        v = c ? component_get_string(c, "tableName") : NULL;
        if (v && !table_name_is_valid(v))
                return sqlite_fail(
                        reterr_msg, -EINVAL,
                        "tableName: '%s' is not a valid table name ([A-Za-z0-9_], at most %d characters, "
                        "not starting with 'sqlite_')",
                        v, TABLE_NAME_MAX);
        s->table = strdup(v ?: DEFAULT_TABLE);
        if (!s->table)
                return -ENOMEM;

        /* busyTimeout is an alias of timeout; given both, busyTimeout wins. */
        s->busy_timeout_usec = DEFAULT_BUSY_TIMEOUT_USEC;
        for (const char *const *k = (const char *const[]){ "timeout", "busyTimeout", NULL }; *k; k++) {
                v = c ? component_get_string(c, *k) : NULL;
                if (v && parse_duration_usec(v, &s->busy_timeout_usec) < 0)
                        return sqlite_fail(reterr_msg, -EINVAL,
                                         "%s: '%s' is not a duration (e.g. \"20s\", \"500ms\", or seconds)",
                                         *k, v);
        }

        s->cleanup_usec = DEFAULT_CLEANUP_USEC;
        v = c ? component_get_string(c, "cleanupInterval") : NULL;
        if (v) {
                const char *t = v;
                while (*t == ' ')
                        t++;
                if (*t == '-') /* Dapr: zero or negative disables the purge */
                        s->cleanup_usec = 0;
                else if (parse_duration_usec(t, &s->cleanup_usec) < 0)
                        return sqlite_fail(
                                reterr_msg, -EINVAL,
                                "cleanupInterval: '%s' is not a duration (e.g. \"1h\", or 0 to disable)", v);
                else if (s->cleanup_usec > 0 && s->cleanup_usec < MIN_CLEANUP_USEC)
                        return sqlite_fail(reterr_msg, -EINVAL,
                                         "cleanupInterval: '%s' is below 1s (use 0 to disable the purge)",
                                         v);
        }

        v = c ? component_get_string(c, "disableWAL") : NULL;
        if (v) {
                r = parse_boolean(v);
                if (r < 0)
                        return sqlite_fail(reterr_msg, -EINVAL, "disableWAL: '%s' is not a boolean", v);
                s->disable_wal = r;
        }
        return 0;
}

static void release(SqliteStore *s) {
        s->purge_timer = sd_event_source_disable_unref(s->purge_timer);
        s->kick_idle = sd_event_source_disable_unref(s->kick_idle);
        s->kick_timer = sd_event_source_disable_unref(s->kick_timer);
        /* Taken out first: a done() run by work_queue_free() sees no queue. */
        work_queue_free(TAKE_PTR(s->rqueue));
        work_queue_free(TAKE_PTR(s->queue));
        (void) sqlite3_finalize(s->rget);
        s->rget = NULL;
        if (s->rdb) {
                (void) sqlite3_close(s->rdb);
                s->rdb = NULL;
        }
        for (size_t i = 0; i < _SQL_MAX; i++) {
                (void) sqlite3_finalize(s->stmt[i]);
                s->stmt[i] = NULL;
        }
        if (s->db) {
                (void) sqlite3_close(s->db);
                s->db = NULL;
        }
        free(s->path);
        s->path = NULL;
        free(s->table);
        s->table = NULL;
}

static int open_db(SqliteStore *s, char **reterr_msg) {
        _cleanup_free_ char *sql = NULL;
        int rc = sqlite_open_durable(s->path, s->path_is_uri, !s->disable_wal, s->busy_timeout_usec, NULL, &s->db,
                                     reterr_msg);
        if (rc < 0)
                return rc;
        sql = sql_expand("CREATE TABLE IF NOT EXISTS \"@T\" ("
                         " key TEXT NOT NULL PRIMARY KEY,"
                         " value BLOB NOT NULL,"
                         " etag TEXT NOT NULL,"
                         " expire_at INTEGER,"
                         " update_time INTEGER);"
                         "CREATE INDEX IF NOT EXISTS \"@T_expire_at\" ON \"@T\" (expire_at)"
                         " WHERE expire_at IS NOT NULL;",
                         s->table);
        if (!sql)
                return -ENOMEM;
        rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return sqlite_fail(reterr_msg, sqlite_errno(rc),
                                 "tableName: cannot set up table '%s' in '%s': %s", s->table, s->path,
                                 sqlite3_errmsg(s->db));

        for (size_t i = 0; i < _SQL_MAX; i++) {
                _cleanup_free_ char *q = sql_expand(sql_text[i], s->table);
                if (!q)
                        return -ENOMEM;
                rc = sqlite3_prepare_v3(s->db, q, -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL);
                if (rc != SQLITE_OK)
                        return sqlite_fail(
                                reterr_msg, sqlite_errno(rc),
                                "tableName: table '%s' in '%s' does not have the expected layout: %s",
                                s->table, s->path, sqlite3_errmsg(s->db));
        }
        return 0;
}

/* An in-memory database is private to its connection: a second one would see another database. */
static bool path_is_memory(const SqliteStore *s) {
        return streq(s->path, ":memory:") || (s->path_is_uri && (strstr(s->path, "mode=memory") ||
                                                                 startswith(s->path, "file::memory:")));
}

/* The reader connection and thread, for a file in WAL mode; otherwise gets stay on the writer. */
static int open_reader(SqliteStore *s, char **reterr_msg) {
        _cleanup_free_ char *q = NULL;
        int rc;

        if (s->disable_wal || path_is_memory(s))
                return 0;
        rc = sqlite_open_durable(s->path, s->path_is_uri, true, s->busy_timeout_usec, NULL, &s->rdb, reterr_msg);
        if (rc < 0)
                return rc;
        q = sql_expand(sql_text[SQL_GET], s->table);
        if (!q)
                return -ENOMEM;
        rc = sqlite3_prepare_v3(s->rdb, q, -1, SQLITE_PREPARE_PERSISTENT, &s->rget, NULL);
        if (rc != SQLITE_OK)
                return sqlite_fail(reterr_msg, sqlite_errno(rc), "cannot prepare the reader: %s",
                                   sqlite3_errmsg(s->rdb));
        s->rqueue = work_queue_new(s->base.event);
        if (!s->rqueue)
                return negative_errno();
        return 0;
}

static int sqlite_open(StateStore *base, char **reterr_msg) {
        SqliteStore *s = (SqliteStore *) base;
        int r;

        if (!sqlite3_threadsafe()) {
                r = sqlite_fail(reterr_msg, -EOPNOTSUPP,
                              "this SQLite library is built without thread support");
                goto fail;
        }
        r = parse_metadata(s, reterr_msg);
        if (r < 0)
                goto fail;
        r = open_db(s, reterr_msg);
        if (r < 0)
                goto fail;

        s->queue = work_queue_new(s->base.event);
        if (!s->queue) {
                r = negative_errno();
                goto fail;
        }
        r = open_reader(s, reterr_msg);
        if (r < 0)
                goto fail;
        if (s->cleanup_usec > 0) {
                r = sd_event_add_time_relative(s->base.event, &s->purge_timer, CLOCK_MONOTONIC,
                                               s->cleanup_usec, USEC_PER_SEC, on_purge_timer, s);
                if (r < 0) {
                        (void) sqlite_fail(reterr_msg, r, "cannot set up the purge timer");
                        goto fail;
                }
                (void) sd_event_source_set_description(s->purge_timer, "sqlite-purge");
        }
        return 0;

fail:
        if (reterr_msg && !*reterr_msg)
                (void) sqlite_fail(reterr_msg, r, "cannot open the state store: %s", strerror(-r));
        release(s);
        return r;
}

static void sqlite_close(StateStore *base) {
        SqliteStore *s = (SqliteStore *) base;

        if (s->closing) /* called again from a done() that this close() is delivering */
                return;
        s->closing = true;
        /* Closed from inside a batch's done(): the rest of that batch was committed and is
         * answered here, with its real results, before the store goes away. */
        if (s->delivering) {
                SqliteBatch *b = TAKE_PTR(s->delivering);
                b->store_gone = true;
                batch_deliver(b);
        }
        /* Writes still waiting for a batch never start. */
        while (s->pending_head) {
                SqliteJob *j = s->pending_head;
                s->pending_head = j->next;
                if (j->result.error == 0)
                        (void) state_result_fail(&j->result, -ECANCELED, "state store closed");
                j->done(&j->result, j->userdata);
                job_free(j);
        }
        s->pending_tail = NULL;
        s->n_pending_ops = 0;
        /* Jobs the threads have not started yet answer -ECANCELED; the one running finishes with
         * its real result. work_queue_free() delivers every done() before it returns. */
        atomic_store(&s->cancel, true);
        release(s);
}

const StateDriver state_sqlite_driver = {
        .type = "state.sqlite",
        .alias = "state.sqlite3",
        .abi = STATE_DRIVER_ABI,
        .instance_size = sizeof(SqliteStore),
        .features = STATE_FEATURE_ETAG | STATE_FEATURE_TRANSACTIONAL | STATE_FEATURE_TTL | STATE_FEATURE_QUERY,
        .open = sqlite_open,
        .close = sqlite_close,
        .get = sqlite_get,
        .write = sqlite_write,
        .transact = sqlite_transact,
        .write_many = sqlite_write_many,
        .cancel = sqlite_cancel,
        .query = sqlite_query,
};
