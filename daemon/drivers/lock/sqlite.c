/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lock.sqlite: the embedded lock store for one host (mooring's own; Dapr
 * ships only lock.redis). Leases live in one SQLite table in the daemon's
 * state directory (connectionString, default "locks.db"), each with its end
 * as wall-clock milliseconds, so a lease ends on time whether or not the
 * daemon ran in between, and one taken before a restart is still held after
 * it.
 *
 * SQLite blocks, so every operation is one job on the store's own worker
 * thread (work/queue.h) and completes on the loop. Each operation is one
 * statement or one IMMEDIATE transaction, so two daemons sharing a file (not
 * a supported set-up, but not a corrupting one either) still exclude each
 * other. Expired rows are purged at open and every PURGE_EVERY operations.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/log.h"
#include "../../util/strv.h"
#include "../../work/queue.h"
#include "../sqlite-common.h"
#include "driver.h"

#define DEFAULT_PATH "locks.db"
#define DEFAULT_BUSY_TIMEOUT_USEC (20 * 1000000ULL)
#define PURGE_EVERY 1024U

typedef struct SqliteLockStore {
        LockStore base;
        char *path;
        bool path_is_uri;
        uint64_t busy_timeout_usec;
        sqlite3 *db;              /* used on the worker thread only (and at open/close) */
        WorkQueue *queue;         /* NULL until connected (see connect_now()) */
        unsigned ops_since_purge; /* worker thread */
} SqliteLockStore;

static int connect_now(SqliteLockStore *s, char **reterr_msg);

typedef enum JobKind {
        JOB_TRY,
        JOB_UNLOCK,
} JobKind;

typedef struct Job {
        SqliteLockStore *store;
        JobKind kind;
        char *key;
        char *owner;
        int64_t expiry_sec;
        LockDoneFn done;
        void *userdata;
        LockResult result;
} Job;

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void job_free(Job *j) {
        free(j->key);
        free(j->owner);
        lock_result_done(&j->result);
        free(j);
}

static int exec_sql(sqlite3 *db, const char *sql, char **reterr) {
        char *e = NULL;
        int rc = sqlite3_exec(db, sql, NULL, NULL, &e);
        if (rc != SQLITE_OK) {
                sqlite_fail(reterr, sqlite_errno(rc), "sqlite: %s", e ?: sqlite3_errstr(rc));
                sqlite3_free(e);
                return sqlite_errno(rc);
        }
        return 0;
}

/* Runs sql with key/owner/time bound as ?1 ?2 ?3 ?4; returns the changes, or < 0 with r->message set. */
static int run_stmt(SqliteLockStore *s, LockResult *r, const char *sql, const char *key, const char *owner,
                    int64_t a, int64_t b, bool *ret_row) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
                if (owner)
                        sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 3, a);
                sqlite3_bind_int64(st, 4, b);
                rc = sqlite3_step(st);
                if (ret_row)
                        *ret_row = rc == SQLITE_ROW;
                if (rc == SQLITE_ROW || rc == SQLITE_DONE)
                        rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK)
                return lock_result_fail(r, sqlite_errno(rc), "sqlite: %s", sqlite3_errmsg(s->db));
        return sqlite3_changes(s->db);
}

static void purge(SqliteLockStore *s) {
        LockResult ignored = {};
        (void) run_stmt(s, &ignored, "DELETE FROM locks WHERE ?1 IS NOT NULL AND expires_ms <= ?3", "", NULL, now_ms(),
                        0, NULL);
        lock_result_done(&ignored);
}

/* Worker thread. */
static void job_run(void *userdata) {
        Job *j = userdata;
        SqliteLockStore *s = j->store;
        LockResult *r = &j->result;
        int64_t now = now_ms();
        int k;

        if (++s->ops_since_purge >= PURGE_EVERY) {
                s->ops_since_purge = 0;
                purge(s);
        }
        if (j->kind == JOB_TRY) {
                /* One statement: a new row, or a takeover of an expired one; an unexpired lease stays. */
                k = run_stmt(s, r,
                             "INSERT INTO locks (resource, owner, expires_ms) VALUES (?1, ?2, ?4) "
                             "ON CONFLICT (resource) DO UPDATE SET owner = excluded.owner, "
                             "expires_ms = excluded.expires_ms WHERE locks.expires_ms <= ?3",
                             j->key, j->owner, now, now + j->expiry_sec * 1000, NULL);
                if (k >= 0)
                        r->acquired = k > 0;
                return;
        }

        /* Unlock: whose is it, then delete it if it is the caller's, in one transaction. */
        if (exec_sql(s->db, "BEGIN IMMEDIATE", &r->message) < 0) {
                r->error = -EIO;
                return;
        }
        k = run_stmt(s, r, "DELETE FROM locks WHERE resource = ?1 AND owner = ?2 AND expires_ms > ?3", j->key,
                     j->owner, now, 0, NULL);
        if (k > 0)
                r->status = LOCK_UNLOCK_SUCCESS;
        else if (k == 0) {
                bool held = false;
                k = run_stmt(s, r, "SELECT 1 FROM locks WHERE resource = ?1 AND ?2 IS NULL AND expires_ms > ?3",
                             j->key, NULL, now, 0, &held);
                r->status = held ? LOCK_UNLOCK_OTHER_OWNER : LOCK_UNLOCK_NOT_EXIST;
        }
        if (k < 0) {
                (void) exec_sql(s->db, "ROLLBACK", NULL);
                r->status = LOCK_UNLOCK_INTERNAL_ERROR;
                return;
        }
        if (exec_sql(s->db, "COMMIT", &r->message) < 0) {
                (void) exec_sql(s->db, "ROLLBACK", NULL);
                r->error = -EIO;
                r->status = LOCK_UNLOCK_INTERNAL_ERROR;
        }
}

/* Loop. */
static void job_done(void *userdata) {
        Job *j = userdata;
        j->done(&j->result, j->userdata);
        job_free(j);
}

static int submit(SqliteLockStore *s, JobKind kind, const char *key, const char *owner, int64_t expiry_sec,
                  LockDoneFn done, void *userdata) {
        if (!s->queue) {
                _cleanup_free_ char *msg = NULL;
                int r = connect_now(s, &msg);
                if (r < 0) {
                        log_struct(LOG_ERR, 0, NULL, s->base.component->name, "Lock store: %s",
                                   msg ?: "out of memory");
                        return r;
                }
        }
        Job *j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        *j = (Job){ .store = s, .kind = kind, .key = strdup(key), .owner = strdup(owner),
                    .expiry_sec = expiry_sec, .done = done, .userdata = userdata };
        if (!j->key || !j->owner || work_queue_submit(s->queue, job_run, job_done, j) < 0) {
                job_free(j);
                return -ENOMEM;
        }
        return 0;
}

static int sqlite_try_lock(LockStore *base, const char *key, const char *owner, int64_t expiry_sec, LockDoneFn done,
                           void *userdata) {
        return submit((SqliteLockStore *) base, JOB_TRY, key, owner, expiry_sec, done, userdata);
}

static int sqlite_unlock(LockStore *base, const char *key, const char *owner, LockDoneFn done, void *userdata) {
        return submit((SqliteLockStore *) base, JOB_UNLOCK, key, owner, 0, done, userdata);
}

static int sqlite_open(LockStore *base, char **reterr_msg) {
        SqliteLockStore *s = (SqliteLockStore *) base;
        const Component *c = base->component;
        const char *v;
        int r;

        *reterr_msg = NULL;
        r = sqlite_resolve_path(base->state_dir, component_get_string(c, "connectionString"), DEFAULT_PATH,
                                &s->path, &s->path_is_uri, reterr_msg);
        if (r < 0)
                return r;
        s->busy_timeout_usec = DEFAULT_BUSY_TIMEOUT_USEC;
        v = component_get_string(c, "timeout");
        if (v && parse_duration_usec(v, &s->busy_timeout_usec) < 0)
                return sqlite_fail(reterr_msg, -EINVAL, "timeout: '%s' is not a duration (e.g. \"20s\")", v);
        /* The built-in default is there for every host, used by few: its database, cache and thread
         * (about 300 KiB resident) wait for the first lock. A configured store opens now, so that
         * a bad path is a load error with its line. */
        if (component_is_builtin(c))
                return 0;
        return connect_now(s, reterr_msg);
}

/* Loop: the database, its table and the worker thread. */
static int connect_now(SqliteLockStore *s, char **reterr_msg) {
        int r;

        *reterr_msg = NULL;
        r = sqlite_open_durable(s->path, s->path_is_uri, true, s->busy_timeout_usec, NULL, &s->db, reterr_msg);
        if (r < 0)
                return r;
        r = exec_sql(s->db,
                     "CREATE TABLE IF NOT EXISTS locks (resource TEXT PRIMARY KEY NOT NULL, "
                     "owner TEXT NOT NULL, expires_ms INTEGER NOT NULL)",
                     reterr_msg);
        if (r < 0)
                return r;
        purge(s);
        s->queue = work_queue_new(s->base.event);
        if (!s->queue)
                return sqlite_fail(reterr_msg, -errno, "cannot start the worker thread: %m");
        return 0;
}

static void sqlite_close(LockStore *base) {
        SqliteLockStore *s = (SqliteLockStore *) base;
        /* Runs what is queued (each a short statement) and answers it before returning. */
        s->queue = work_queue_free(s->queue);
        if (s->db)
                sqlite3_close_v2(s->db);
        s->db = NULL;
        free(s->path);
}

const LockDriver lock_sqlite_driver = {
        .type = "lock.sqlite",
        .abi = LOCK_DRIVER_ABI,
        .instance_size = sizeof(SqliteLockStore),
        .open = sqlite_open,
        .close = sqlite_close,
        .try_lock = sqlite_try_lock,
        .unlock = sqlite_unlock,
};
