/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pubsub.sqlite: the embedded, durable default broker, one SQLite file in the
 * state directory. At least once: a publish is answered after its commit
 * (WAL, synchronous=FULL: fsynced), a message leaves a group's queue only
 * when the group's consumer acks it. A commit without a publish (acks,
 * fetches) does not wait for fsync: the next publish's fsync covers it.
 *
 * Schema (user_version 1):
 *   groups(id INTEGER PRIMARY KEY, topic, grp, created_at, UNIQUE(topic, grp))
 *       one row per (topic, group), written when the group first subscribes,
 *       never removed: a group is a queue that outlives its subscribers.
 *   messages(id INTEGER PRIMARY KEY AUTOINCREMENT, topic, data BLOB,
 *            metadata BLOB, published_at, expire_at, refs)
 *       ids are never reused (leases name rows by msg_id); metadata is
 *       "name\0value\0..." (NULL: none); expire_at unix ms (NULL: never);
 *       refs counts the queue rows that point at the message. refs 0
 *       means "unclaimed": published while the topic had no group at all.
 *       Such messages wait for the first group that ever subscribes to the
 *       topic, which claims them all (queue semantics, as pubsub.in-memory);
 *       a group that subscribes later starts with what is published after it.
 *   queue(gid, next_at, msg_id, attempts, PRIMARY KEY(gid, next_at, msg_id))
 *       WITHOUT ROWID: one row per message and group, created in the publish's
 *       transaction for every group of the topic. next_at (unix ms) is when
 *       the row is due: the publish time, later after a RETRY. attempts
 *       counts the deliveries the broker knows ended without an ACK (RETRY,
 *       or abandoned by an unsubscribe or close). An ACK deletes the row, and
 *       the message with its last row.
 *   A due row is fetched in (next_at, msg_id) order, which is publish order
 *   for first deliveries (while the wall clock does not step back).
 *
 * Statements per message, what the writer thread spends its time on: a publish is one INSERT into
 * messages and one plain INSERT per group (the topic's group ids are read once per Batch); an ACK
 * deletes its queue row at once and its message's reference with the Batch's others, a run of
 * consecutive message ids by one range DELETE plus one range UPDATE; a fetched row that this
 * very transaction stored takes its bytes from the publish in memory, not from a read back.
 *
 * Threading and group commit. The connection is opened and its statements
 * prepared on the loop in open(); from then on only the WorkQueue thread uses
 * them. The loop collects every operation — publishes, settles (ACK, RETRY,
 * RELEASE of abandoned deliveries), group creations, and a fetch per group
 * that has room and something new — into one pending Batch. At most one
 * Batch is on the thread at a time; it runs as ONE transaction (one fsync):
 * group rows, settles, publishes, then the fetches, then COMMIT. While it
 * runs, the next Batch collects whatever arrives, so under load every commit
 * carries every publish and settle that arrived during the previous one.
 * When a Batch completes, the loop first turns its fetched rows into
 * deliveries and submits the next Batch (the thread keeps working), and only
 * then runs the callbacks: each publish's done() after its commit, deliver()
 * for each fetched row. Publishes on a topic mark the topic's groups, so the
 * fetch that delivers a fresh message runs in the very transaction that
 * stored it: no polling. Retries are woken by one CLOCK_REALTIME timer at the
 * earliest next_at the broker knows of.
 *
 * Leases are in memory only (a crash must redeliver): a delivery keeps its
 * row leased from the fetch until the commit of its settle, and every fetch
 * skips the group's leased rows; a group has at most one fetch in flight, so
 * two subscriptions of a group never get the same row at the same time.
 *
 * Lifetime. The PubsubBroker memory belongs to the caller, which frees it
 * right after close() — possibly from inside one of our callbacks. All state
 * therefore lives in a reference-counted Engine; a completing Batch holds a
 * reference while it runs callbacks and stops as soon as close() began.
 * close() submits what is pending (unsettled deliveries become RELEASEs),
 * lets the thread finish (work_queue_free() runs the remaining Batches'
 * completions, so every publish's done() has run — 0 when its commit made
 * it — before close() returns), then frees subscriptions and deliveries.
 *
 * TTL: native (ttl_sec, and the optional retentionPeriod for messages without
 * one): an expired message is never delivered; fetches drop expired rows they
 * meet, and once an hour a Batch purges the rest.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../../work/queue.h"
#include "../sqlite-common.h"
#include "driver.h"

#define USEC_PER_SEC 1000000ULL
#define USEC_PER_MSEC 1000ULL
#define DEFAULT_PATH "pubsub.db"
#define DEFAULT_BUSY_TIMEOUT_USEC (20 * USEC_PER_SEC)
#define DEFAULT_MAX_IN_FLIGHT 64u
#define FETCH_MAX 1024u                 /* rows per group per Batch */
#define PURGE_INTERVAL_MS (3600 * 1000)
#define FAILURE_BACKOFF_MS 1000
#define SCHEMA_VERSION 1

/* Intrusive doubly linked lists: f##_prev/f##_next in the item, head and tail in the owner. */
#define DLIST_APPEND(f, head, tail, item)                      \
        do {                                                   \
                (item)->f##_next = NULL;                       \
                (item)->f##_prev = (tail);                     \
                if (tail)                                      \
                        (tail)->f##_next = (item);             \
                else                                           \
                        (head) = (item);                       \
                (tail) = (item);                               \
        } while (0)
#define DLIST_REMOVE(f, head, tail, item)                                \
        do {                                                             \
                if ((item)->f##_prev)                                    \
                        (item)->f##_prev->f##_next = (item)->f##_next;   \
                else                                                     \
                        (head) = (item)->f##_next;                       \
                if ((item)->f##_next)                                    \
                        (item)->f##_next->f##_prev = (item)->f##_prev;   \
                else                                                     \
                        (tail) = (item)->f##_prev;                       \
                (item)->f##_prev = (item)->f##_next = NULL;              \
        } while (0)

typedef enum SqlStmt {
        SQL_BEGIN,
        SQL_COMMIT,
        SQL_ROLLBACK,
        SQL_GROUP_INSERT,
        SQL_GROUP_ID,
        SQL_GROUP_COUNT,
        SQL_CLAIM_QUEUE,
        SQL_CLAIM_MESSAGES,
        SQL_MSG_INSERT,
        SQL_GROUP_IDS,
        SQL_QUEUE_INSERT,
        SQL_QUEUE_DELETE,
        SQL_MSG_DELETE,
        SQL_MSG_DELETE_LAST,
        SQL_MSG_UNREF,
        SQL_MSG_DELETE_LAST_RANGE,
        SQL_MSG_UNREF_RANGE,
        SQL_QUEUE_RETRY,
        SQL_QUEUE_RELEASE,
        SQL_FETCH,
        SQL_MSG_GET,
        SQL_NEXT_DUE,
        SQL_EXPIRED_ANY,
        SQL_PURGE_QUEUE,
        SQL_PURGE_MESSAGES,
        _SQL_MAX,
} SqlStmt;

static const char *const sql_text[_SQL_MAX] = {
        [SQL_BEGIN] = "BEGIN IMMEDIATE",
        [SQL_COMMIT] = "COMMIT",
        [SQL_ROLLBACK] = "ROLLBACK",
        [SQL_GROUP_INSERT] = "INSERT OR IGNORE INTO groups (topic, grp, created_at) VALUES (?1, ?2, ?3)",
        [SQL_GROUP_ID] = "SELECT id FROM groups WHERE topic = ?1 AND grp = ?2",
        [SQL_GROUP_COUNT] = "SELECT count(*) FROM groups WHERE topic = ?1",
        [SQL_CLAIM_QUEUE] = "INSERT INTO queue (gid, next_at, msg_id, attempts) "
                            "SELECT ?1, ?2, id, 0 FROM messages WHERE refs = 0 AND topic = ?3",
        [SQL_CLAIM_MESSAGES] = "UPDATE messages SET refs = 1 WHERE refs = 0 AND topic = ?1",
        [SQL_MSG_INSERT] = "INSERT INTO messages (topic, data, metadata, published_at, expire_at, refs) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        [SQL_GROUP_IDS] = "SELECT id FROM groups WHERE topic = ?1",
        [SQL_QUEUE_INSERT] = "INSERT INTO queue (gid, next_at, msg_id, attempts) VALUES (?1, ?2, ?3, 0)",
        [SQL_QUEUE_DELETE] = "DELETE FROM queue WHERE gid = ?1 AND next_at = ?2 AND msg_id = ?3",
        [SQL_MSG_DELETE] = "DELETE FROM messages WHERE id = ?1",
        [SQL_MSG_DELETE_LAST] = "DELETE FROM messages WHERE id = ?1 AND refs <= 1",
        [SQL_MSG_UNREF] = "UPDATE messages SET refs = refs - 1 WHERE id = ?1 AND refs > 1",
        [SQL_MSG_DELETE_LAST_RANGE] = "DELETE FROM messages WHERE id BETWEEN ?1 AND ?2 AND refs <= 1",
        [SQL_MSG_UNREF_RANGE] = "UPDATE messages SET refs = refs - 1 WHERE id BETWEEN ?1 AND ?2 AND refs > 1",
        [SQL_QUEUE_RETRY] = "UPDATE queue SET next_at = ?4, attempts = attempts + 1 "
                            "WHERE gid = ?1 AND next_at = ?2 AND msg_id = ?3",
        [SQL_QUEUE_RELEASE] = "UPDATE queue SET attempts = attempts + 1 "
                              "WHERE gid = ?1 AND next_at = ?2 AND msg_id = ?3",
        [SQL_FETCH] = "SELECT next_at, msg_id, attempts FROM queue WHERE gid = ?1 AND next_at <= ?2 "
                      "ORDER BY next_at, msg_id",
        [SQL_MSG_GET] = "SELECT data, metadata, expire_at FROM messages WHERE id = ?1",
        [SQL_NEXT_DUE] = "SELECT next_at FROM queue WHERE gid = ?1 AND next_at > ?2 ORDER BY next_at LIMIT 1",
        [SQL_EXPIRED_ANY] = "SELECT 1 FROM messages WHERE expire_at IS NOT NULL AND expire_at <= ?1 LIMIT 1",
        [SQL_PURGE_QUEUE] = "DELETE FROM queue WHERE msg_id IN "
                            "(SELECT id FROM messages WHERE expire_at IS NOT NULL AND expire_at <= ?1)",
        [SQL_PURGE_MESSAGES] = "DELETE FROM messages WHERE expire_at IS NOT NULL AND expire_at <= ?1",
};

static const char schema_sql[] =
        "CREATE TABLE IF NOT EXISTS groups ("
        " id INTEGER PRIMARY KEY,"
        " topic TEXT NOT NULL,"
        " grp TEXT NOT NULL,"
        " created_at INTEGER NOT NULL,"
        " UNIQUE (topic, grp));"
        "CREATE TABLE IF NOT EXISTS messages ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " topic TEXT NOT NULL,"
        " data BLOB NOT NULL,"
        " metadata BLOB,"
        " published_at INTEGER NOT NULL,"
        " expire_at INTEGER,"
        " refs INTEGER NOT NULL);"
        "CREATE INDEX IF NOT EXISTS messages_unclaimed ON messages (topic) WHERE refs = 0;"
        "CREATE INDEX IF NOT EXISTS messages_expire ON messages (expire_at) WHERE expire_at IS NOT NULL;"
        "CREATE TABLE IF NOT EXISTS queue ("
        " gid INTEGER NOT NULL,"
        " next_at INTEGER NOT NULL,"
        " msg_id INTEGER NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (gid, next_at, msg_id)) WITHOUT ROWID;";

typedef struct Engine Engine;
typedef struct Group Group;
typedef struct Batch Batch;
typedef struct PubOp PubOp;
typedef struct EnsureOp EnsureOp;
typedef struct FetchReq FetchReq;
typedef struct FetchRow FetchRow;

typedef enum DeliveryState {
        DELIVERY_READY,    /* fetched, deliver() not called yet: in engine->ready and sub->dels */
        DELIVERY_OUT,      /* deliver() called, not settled: in sub->dels */
        DELIVERY_SETTLING, /* settled or abandoned: an op in a Batch until its commit */
} DeliveryState;

typedef enum SettleKind {
        SETTLE_ACK,
        SETTLE_RETRY,
        SETTLE_RELEASE, /* abandoned (unsubscribe, close): count the attempt, due again now */
} SettleKind;

struct PubsubDelivery {
        Engine *engine;           /* back-reference */
        Group *group;             /* back-reference; the lease is in group->leases until freed */
        PubsubSubscription *sub;  /* READY and OUT only */
        DeliveryState state;
        int64_t msg_id, next_at;  /* the queue row's key (with group->gid) */
        unsigned attempts;        /* stored; deliver() reports attempts + 1 */
        SettleKind kind;          /* SETTLING */
        int64_t new_next_at;      /* SETTLE_RETRY */
        void *data, *md;          /* READY: the message, until deliver() */
        size_t len, md_len;
        PubsubDelivery *lease_prev, *lease_next;
        PubsubDelivery *sub_prev, *sub_next;
        PubsubDelivery *ready_prev, *ready_next;
        PubsubDelivery *op_next;  /* in its Batch's settles */
};

struct PubsubSubscription {
        Engine *engine; /* back-reference */
        Group *group;   /* back-reference */
        PubsubDeliverFn deliver;
        void *userdata;
        unsigned max_in_flight;
        unsigned in_flight; /* READY + OUT deliveries */
        PubsubDelivery *dels_head, *dels_tail;
        PubsubSubscription *sub_prev, *sub_next;
};

/* A (topic, group) this broker has subscribed at least once; kept until the Engine is freed. */
struct Group {
        Engine *engine;  /* back-reference */
        char *topic, *name; /* immutable: the thread may read them while a Batch runs */
        int64_t gid;     /* groups.id, 0 until known */
        EnsureOp *ensure; /* the op creating the row, while one is pending or running */
        bool dirty;      /* something may be due: fetch when there is room */
        bool fetching;   /* a fetch of this group is in the running Batch */
        int64_t next_due; /* unix ms of the earliest known future row, 0: none */
        PubsubSubscription *subs_head, *subs_tail;
        PubsubSubscription *turn; /* round robin among subs */
        PubsubDelivery *leases_head, *leases_tail;
        Group *next;
};

/* One publish: the bytes, the topic and the metadata in one allocation. */
struct PubOp {
        PubOp *next;
        PubsubDoneFn done;
        void *userdata;
        int error;
        char *message;
        int64_t expire_at; /* unix ms, 0: never */
        const char *topic;
        const void *md;    /* "name\0value\0...", NULL: none */
        size_t md_len, len;
        int64_t msg_id;    /* result */
        unsigned char data[];
};

struct EnsureOp {
        Group *group; /* loop side only */
        const char *topic, *name; /* the group's immutable strings */
        int64_t gid;  /* result */
        EnsureOp *next;
};

struct FetchRow {
        int64_t msg_id, next_at;
        unsigned attempts;
        void *data, *md;
        size_t len, md_len;
        bool drop; /* expired or dangling: not delivered */
};

struct FetchReq {
        Group *group;      /* loop side only */
        int64_t gid;       /* or, when 0, ensure->gid once the ensure ran */
        EnsureOp *ensure;
        unsigned limit;
        int64_t *exclude;  /* leased msg_ids, sorted */
        size_t n_exclude;
        FetchRow *rows;
        size_t n_rows;
        bool more;         /* stopped at limit: more may be due */
        int64_t next_due;  /* earliest future row, 0: none */
};

/* What batch_run() keeps across the ops of one Batch (the thread's side only). */
typedef struct RunCache {
        const char *topic;     /* the topic whose group ids ids[] holds, NULL: none */
        int64_t *ids;
        size_t n_ids, cap_ids;
        int64_t *unref;        /* messages whose queue row an ACK removed, once per row */
        size_t n_unref, cap_unref;
        PubOp **fresh;         /* the Batch's stored publishes, by msg_id */
        size_t n_fresh;
} RunCache;

struct Batch {
        Engine *engine;
        PubOp *pubs_head, **pubs_tail;
        PubsubDelivery *settles_head, **settles_tail;
        EnsureOp *ensures_head, **ensures_tail;
        FetchReq *fetches;
        size_t n_pubs, n_settles, n_ensures, n_fetches;
        int error;     /* the transaction failed: every op failed */
        char *message;
        uint64_t commit_gen; /* its commit's number (Engine.committed_gen), 0: nothing to sync */
};

struct Engine {
        unsigned n_ref;
        sd_event *event; /* ref */

        /* Configuration (open()). */
        char *path;
        bool path_is_uri;           /* a "file:" URI connectionString */
        uint64_t busy_timeout_usec;
        int64_t retention_ms; /* 0: keep until acked */

        /* The thread's, once it runs (see the top of the file). */
        sqlite3 *db;
        sqlite3_stmt *stmt[_SQL_MAX];
        int64_t next_purge_ms;
        bool sync_full;  /* PRAGMA synchronous is FULL (else NORMAL) */
        atomic_uint_least64_t committed_gen; /* commits that stored a publish, counted */

        /* The syncer thread's (see sync_run()). */
        int wal_fd;               /* the WAL file, -1: none (FULL commits instead) */
        uint64_t synced_gen;      /* every commit up to this one is on disk */

        /* Loop only. */
        WorkQueue *queue;
        WorkQueue *syncq;         /* NULL when wal_fd is -1 */
        sd_event_source *kick, *timer;
        Batch *pending;  /* collecting; NULL once close() began */
        bool in_flight;  /* a Batch is on the thread */
        bool closing;
        Group *groups;
        PubsubDelivery *ready_head, *ready_tail;
        PubOp *done_head, **done_tail; /* committed (or failed) publishes whose done() is due */
};

typedef struct SqliteBroker {
        PubsubBroker base;
        Engine *engine;
} SqliteBroker;

/* ---- helpers ---- */

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}



/* A statement ready to bind: every use binds all of its parameters, and stmt_done() clears the
 * bindings after a step (no pointer into freed memory stays bound), so no clear here. */
static sqlite3_stmt *stmt_get(Engine *e, SqlStmt which) {
        sqlite3_stmt *st = e->stmt[which];
        (void) sqlite3_reset(st);
        return st;
}

/* Runs a statement that returns no rows (or ignores them); resets it. SQLite error code. */
static int stmt_done(sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE || rc == SQLITE_ROW)
                rc = SQLITE_OK;
        (void) sqlite3_reset(st);
        (void) sqlite3_clear_bindings(st);
        return rc;
}

/* Binds ?1..?3 to the key of a queue row. */
static int bind_row_key(sqlite3_stmt *st, int64_t gid, int64_t next_at, int64_t msg_id) {
        int rc = sqlite3_bind_int64(st, 1, gid);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 2, next_at);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 3, msg_id);
        return rc;
}

/* Encodes metadata pairs as "name\0value\0...". *ret NULL for none. 0 or -ENOMEM. */
static int metadata_encode(char *const *md, void **ret, size_t *ret_len) {
        size_t n = 0, k;
        char *out, *o;

        for (k = 0; md && md[k] && md[k + 1]; k += 2)
                n += strlen(md[k]) + strlen(md[k + 1]) + 2;
        if (n == 0) {
                *ret = NULL;
                *ret_len = 0;
                return 0;
        }
        out = o = malloc(n);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < k; i++)
                o = stpcpy(o, md[i]) + 1;
        *ret = out;
        *ret_len = n;
        return 0;
}

/* Decodes an encoded blob into a NULL-terminated pair vector in one allocation. NULL for none or OOM. */
static char **metadata_decode(const void *blob, size_t len) {
        const char *b = blob;
        size_t n = 0;
        char **v, *s;

        if (!blob || len == 0 || b[len - 1] != 0)
                return NULL;
        for (size_t i = 0; i < len; i++)
                n += b[i] == 0;
        if (n % 2 != 0)
                return NULL;
        v = malloc((n + 1) * sizeof(char *) + len);
        if (!v)
                return NULL;
        s = (char *) (v + n + 1);
        memcpy(s, b, len);
        for (size_t i = 0; i < n; i++) {
                v[i] = s;
                s += strlen(s) + 1;
        }
        v[n] = NULL;
        return v;
}

static int cmp_int64(const void *a, const void *b) {
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
        return x < y ? -1 : x > y;
}

/* ---- batches ---- */

static Batch *batch_new(Engine *e) {
        Batch *bt = calloc(1, sizeof *bt);
        if (!bt)
                return NULL;
        bt->engine = e;
        bt->pubs_tail = &bt->pubs_head;
        bt->settles_tail = &bt->settles_head;
        bt->ensures_tail = &bt->ensures_head;
        return bt;
}

static bool batch_is_empty(const Batch *bt) {
        return bt->n_pubs == 0 && bt->n_settles == 0 && bt->n_ensures == 0 && bt->n_fetches == 0;
}

static void fetch_rows_free(FetchReq *f) {
        for (size_t i = 0; i < f->n_rows; i++) {
                free(f->rows[i].data);
                free(f->rows[i].md);
        }
        free(f->rows);
        f->rows = NULL;
        f->n_rows = 0;
}

static void delivery_free(PubsubDelivery *d) {
        free(d->data);
        free(d->md);
        free(d);
}

/* Frees the batch and what it still owns (ops batch_apply() did not take). */
static void batch_free(Batch *bt) {
        if (!bt)
                return;
        for (PubOp *p = bt->pubs_head, *n; p; p = n) {
                n = p->next;
                free(p->message);
                free(p);
        }
        for (PubsubDelivery *d = bt->settles_head, *n; d; d = n) {
                n = d->op_next;
                DLIST_REMOVE(lease, d->group->leases_head, d->group->leases_tail, d);
                delivery_free(d);
        }
        for (EnsureOp *o = bt->ensures_head, *n; o; o = n) {
                n = o->next;
                if (o->group->ensure == o)
                        o->group->ensure = NULL;
                free(o);
        }
        for (size_t i = 0; i < bt->n_fetches; i++) {
                fetch_rows_free(&bt->fetches[i]);
                free(bt->fetches[i].exclude);
        }
        free(bt->fetches);
        free(bt->message);
        free(bt);
}

/* ---- the thread's side: one Batch, one transaction ---- */

/* Records the connection's last error as the batch's (the first one wins). */
static void batch_fail_sqlite(Batch *bt, int rc, const char *what) {
        if (bt->error != 0)
                return;
        bt->error = sqlite_errno(rc) ?: -EIO;
        (void) sqlite_fail(&bt->message, bt->error, "sqlite: %s: %s", what, sqlite3_errmsg(bt->engine->db));
}

static int run_ensure(Engine *e, EnsureOp *o, int64_t now) {
        sqlite3_stmt *st = stmt_get(e, SQL_GROUP_INSERT);
        bool created;
        int rc;

        rc = sqlite3_bind_text(st, 1, o->topic, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 2, o->name, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 3, now);
        if (rc == SQLITE_OK)
                rc = stmt_done(st);
        if (rc != SQLITE_OK)
                return rc;
        created = sqlite3_changes(e->db) > 0;

        st = stmt_get(e, SQL_GROUP_ID);
        rc = sqlite3_bind_text(st, 1, o->topic, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 2, o->name, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        o->gid = sqlite3_column_int64(st, 0);
                        rc = SQLITE_OK;
                } else if (rc == SQLITE_DONE)
                        rc = SQLITE_INTERNAL;
        }
        (void) sqlite3_reset(st);
        if (rc != SQLITE_OK || !created)
                return rc;

        /* The topic's first group ever takes the messages published before any group existed. */
        st = stmt_get(e, SQL_GROUP_COUNT);
        rc = sqlite3_bind_text(st, 1, o->topic, -1, SQLITE_STATIC);
        int64_t n = 0;
        if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        n = sqlite3_column_int64(st, 0);
                        rc = SQLITE_OK;
                }
        }
        (void) sqlite3_reset(st);
        if (rc != SQLITE_OK || n != 1)
                return rc;
        st = stmt_get(e, SQL_CLAIM_QUEUE);
        rc = sqlite3_bind_int64(st, 1, o->gid);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 2, now);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 3, o->topic, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = stmt_done(st);
        if (rc != SQLITE_OK)
                return rc;
        st = stmt_get(e, SQL_CLAIM_MESSAGES);
        rc = sqlite3_bind_text(st, 1, o->topic, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = stmt_done(st);
        return rc;
}

/* Drops one reference to a message: the message itself with its last one. */
static int run_unref(Engine *e, int64_t msg_id) {
        sqlite3_stmt *st = stmt_get(e, SQL_MSG_DELETE_LAST);
        int rc = sqlite3_bind_int64(st, 1, msg_id);
        if (rc == SQLITE_OK)
                rc = stmt_done(st);
        if (rc != SQLITE_OK || sqlite3_changes(e->db) > 0)
                return rc;
        st = stmt_get(e, SQL_MSG_UNREF);
        rc = sqlite3_bind_int64(st, 1, msg_id);
        if (rc == SQLITE_OK)
                rc = stmt_done(st);
        return rc;
}

/* Removes one queue row and drops the message with its last reference. */
static int run_ack(Engine *e, int64_t gid, int64_t next_at, int64_t msg_id) {
        sqlite3_stmt *st = stmt_get(e, SQL_QUEUE_DELETE);
        int rc = bind_row_key(st, gid, next_at, msg_id);
        if (rc == SQLITE_OK)
                rc = stmt_done(st);
        if (rc != SQLITE_OK || sqlite3_changes(e->db) == 0)
                return rc; /* already gone (purged): nothing to unreference */
        return run_unref(e, msg_id);
}

/* An ACK in a Batch: removes the queue row now and notes the message in c->unref, so that
 * run_unrefs() drops the references of the whole Batch together. */
static int run_ack_deferred(Engine *e, RunCache *c, int64_t gid, int64_t next_at, int64_t msg_id) {
        sqlite3_stmt *st = stmt_get(e, SQL_QUEUE_DELETE);
        int rc = bind_row_key(st, gid, next_at, msg_id);
        if (rc == SQLITE_OK)
                rc = stmt_done(st);
        if (rc != SQLITE_OK || sqlite3_changes(e->db) == 0)
                return rc; /* already gone (purged): nothing to unreference */
        if (c->n_unref == c->cap_unref) {
                size_t ncap = c->cap_unref ? c->cap_unref * 2 : 64;
                int64_t *n = realloc(c->unref, ncap * sizeof *n);
                if (!n)
                        return run_unref(e, msg_id); /* one by one, then */
                c->unref = n;
                c->cap_unref = ncap;
        }
        c->unref[c->n_unref++] = msg_id;
        return SQLITE_OK;
}

/* Drops the references the Batch's ACKs noted, one per entry (a message acked by two groups is
 * there twice). A run of consecutive ids without repeats, the common case (one group acking in
 * publish order), takes two statements for the whole run instead of one or two per message:
 * every message in [lo, hi] is in the run, so "refs <= 1: delete, else refs - 1" over the
 * range does exactly what it does per message. */
static int run_unrefs(Engine *e, RunCache *c) {
        int64_t *v = c->unref;
        size_t n = c->n_unref;
        int rc = SQLITE_OK;

        if (n == 0)
                return SQLITE_OK;
        qsort(v, n, sizeof *v, cmp_int64);
        for (size_t i = 0, j; i < n && rc == SQLITE_OK; i = j) {
                for (j = i + 1; j < n && v[j] == v[j - 1] + 1; j++)
                        ;
                if (j - i == 1) {
                        rc = run_unref(e, v[i]);
                        continue;
                }
                for (SqlStmt w = SQL_MSG_DELETE_LAST_RANGE; w <= SQL_MSG_UNREF_RANGE && rc == SQLITE_OK; w++) {
                        sqlite3_stmt *st = stmt_get(e, w);
                        rc = sqlite3_bind_int64(st, 1, v[i]);
                        if (rc == SQLITE_OK)
                                rc = sqlite3_bind_int64(st, 2, v[j - 1]);
                        if (rc == SQLITE_OK)
                                rc = stmt_done(st);
                }
        }
        c->n_unref = 0;
        return rc;
}

static int run_settle(Engine *e, RunCache *c, PubsubDelivery *d) {
        sqlite3_stmt *st;
        int rc;

        switch (d->kind) {
        case SETTLE_ACK:
                return run_ack_deferred(e, c, d->group->gid, d->next_at, d->msg_id);
        case SETTLE_RETRY:
                st = stmt_get(e, SQL_QUEUE_RETRY);
                rc = bind_row_key(st, d->group->gid, d->next_at, d->msg_id);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(st, 4, d->new_next_at);
                break;
        case SETTLE_RELEASE:
        default:
                st = stmt_get(e, SQL_QUEUE_RELEASE);
                rc = bind_row_key(st, d->group->gid, d->next_at, d->msg_id);
                break;
        }
        if (rc == SQLITE_OK)
                rc = stmt_done(st);
        return rc;
}

/* Reads the ids of topic's groups into c, unless c holds them already: they do not change
 * between the Batch's ensures and its publishes. */
static int group_ids(Engine *e, RunCache *c, const char *topic) {
        sqlite3_stmt *st;
        int rc;

        if (c->topic && streq(c->topic, topic))
                return SQLITE_OK;
        c->topic = NULL;
        c->n_ids = 0;
        st = stmt_get(e, SQL_GROUP_IDS);
        rc = sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
        while (rc == SQLITE_OK) {
                int k = sqlite3_step(st);
                if (k == SQLITE_DONE)
                        break;
                if (k != SQLITE_ROW) {
                        rc = k;
                        break;
                }
                if (c->n_ids == c->cap_ids) {
                        size_t ncap = c->cap_ids ? c->cap_ids * 2 : 8;
                        int64_t *n = realloc(c->ids, ncap * sizeof *n);
                        if (!n) {
                                rc = SQLITE_NOMEM;
                                break;
                        }
                        c->ids = n;
                        c->cap_ids = ncap;
                }
                c->ids[c->n_ids++] = sqlite3_column_int64(st, 0);
        }
        (void) sqlite3_reset(st);
        if (rc == SQLITE_OK)
                c->topic = topic;
        return rc;
}

static int run_publish(Engine *e, RunCache *c, PubOp *p, int64_t now) {
        sqlite3_stmt *st;
        int64_t n_groups;
        size_t i;
        int rc;

        rc = group_ids(e, c, p->topic);
        if (rc != SQLITE_OK)
                return rc;
        n_groups = (int64_t) c->n_ids;

        st = stmt_get(e, SQL_MSG_INSERT);
        rc = sqlite3_bind_text(st, 1, p->topic, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                /* Not NULL for 0 bytes: NULL would bind SQL NULL, not an empty blob. */
                rc = sqlite3_bind_blob64(st, 2, p->len > 0 ? (const void *) p->data : "", p->len,
                                         SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = p->md ? sqlite3_bind_blob64(st, 3, p->md, p->md_len, SQLITE_STATIC)
                           : sqlite3_bind_null(st, 3);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 4, now);
        if (rc == SQLITE_OK)
                rc = p->expire_at > 0 ? sqlite3_bind_int64(st, 5, p->expire_at) : sqlite3_bind_null(st, 5);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 6, n_groups);
        if (rc == SQLITE_OK)
                rc = stmt_done(st);
        if (rc != SQLITE_OK)
                return rc;
        p->msg_id = sqlite3_last_insert_rowid(e->db);
        if (n_groups == 0)
                return SQLITE_OK; /* unclaimed: the first group of the topic takes it */

        /* One plain INSERT per group: cheaper than INSERT ... SELECT, which also needs a statement
         * journal. */
        for (i = 0; i < c->n_ids && rc == SQLITE_OK; i++) {
                st = stmt_get(e, SQL_QUEUE_INSERT);
                rc = bind_row_key(st, c->ids[i], now, p->msg_id);
                if (rc == SQLITE_OK)
                        rc = stmt_done(st);
        }
        if (rc != SQLITE_OK && !sqlite3_get_autocommit(e->db)) {
                /* Still in the transaction: take back the rows made and the message, so that
                 * nothing is counted for rows it does not have. */
                for (size_t k = 0; k + 1 < i; k++) {
                        st = stmt_get(e, SQL_QUEUE_DELETE);
                        (void) bind_row_key(st, c->ids[k], now, p->msg_id);
                        (void) stmt_done(st);
                }
                st = stmt_get(e, SQL_MSG_DELETE);
                (void) sqlite3_bind_int64(st, 1, p->msg_id);
                (void) stmt_done(st);
        }
        return rc;
}

static bool excluded(const FetchReq *f, int64_t msg_id) {
        return f->n_exclude > 0 &&
               bsearch(&msg_id, f->exclude, f->n_exclude, sizeof *f->exclude, cmp_int64) != NULL;
}

static int cmp_pubop_id(const void *a, const void *b) {
        int64_t x = (*(PubOp *const *) a)->msg_id, y = (*(PubOp *const *) b)->msg_id;
        return x < y ? -1 : x > y;
}

static int cmp_id_pubop(const void *key, const void *b) {
        int64_t x = *(const int64_t *) key, y = (*(PubOp *const *) b)->msg_id;
        return x < y ? -1 : x > y;
}

/* Lists the Batch's stored publishes in c->fresh: a fetch takes their bytes from memory instead
 * of reading back what it just wrote. Without memory for the list, every row is read back. */
static void fresh_collect(RunCache *c, Batch *bt) {
        size_t n = 0;
        bool sorted = true;

        c->fresh = bt->n_pubs > 0 ? malloc(bt->n_pubs * sizeof *c->fresh) : NULL;
        if (!c->fresh)
                return;
        for (PubOp *p = bt->pubs_head; p; p = p->next)
                if (p->error == 0 && p->msg_id > 0) {
                        /* AUTOINCREMENT: ascending in publish order; sorted below if not */
                        sorted = sorted && (n == 0 || c->fresh[n - 1]->msg_id < p->msg_id);
                        c->fresh[n++] = p;
                }
        if (!sorted)
                qsort(c->fresh, n, sizeof *c->fresh, cmp_pubop_id);
        c->n_fresh = n;
}

static PubOp *fresh_find(const RunCache *c, int64_t msg_id) {
        PubOp **p;

        if (c->n_fresh == 0 || msg_id < c->fresh[0]->msg_id || msg_id > c->fresh[c->n_fresh - 1]->msg_id)
                return NULL;
        p = bsearch(&msg_id, c->fresh, c->n_fresh, sizeof *c->fresh, cmp_id_pubop);
        return p ? *p : NULL;
}

/* A row's copy of the message: data NUL-terminated (deliveries may read it as a string). */
static int row_fill(FetchRow *row, const void *data, size_t len, const void *md, size_t md_len) {
        row->data = malloc(len + 1);
        row->md = md && md_len > 0 ? malloc(md_len) : NULL;
        if (!row->data || (md && md_len > 0 && !row->md))
                return SQLITE_NOMEM;
        if (len > 0)
                memcpy(row->data, data, len);
        ((char *) row->data)[len] = 0;
        row->len = len;
        if (row->md) {
                memcpy(row->md, md, md_len);
                row->md_len = md_len;
        }
        return SQLITE_OK;
}

static int run_fetch(Engine *e, const RunCache *c, FetchReq *f, int64_t now) {
        int64_t gid = f->gid ?: (f->ensure ? f->ensure->gid : 0);
        sqlite3_stmt *st;
        size_t cap = 0;
        int rc;

        if (gid <= 0)
                return SQLITE_OK; /* the group row could not be made: nothing to fetch */

        /* Due rows in (next_at, msg_id) order, leased ones skipped. */
        st = stmt_get(e, SQL_FETCH);
        rc = sqlite3_bind_int64(st, 1, gid);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 2, now);
        while (rc == SQLITE_OK && f->n_rows < f->limit) {
                int s = sqlite3_step(st);
                if (s == SQLITE_DONE)
                        break;
                if (s != SQLITE_ROW) {
                        rc = s;
                        break;
                }
                int64_t msg_id = sqlite3_column_int64(st, 1);
                if (excluded(f, msg_id))
                        continue;
                if (f->n_rows == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        FetchRow *n = realloc(f->rows, ncap * sizeof *n);
                        if (!n) {
                                rc = SQLITE_NOMEM;
                                break;
                        }
                        f->rows = n;
                        cap = ncap;
                }
                int64_t attempts = sqlite3_column_int64(st, 2);
                f->rows[f->n_rows++] = (FetchRow){
                        .next_at = sqlite3_column_int64(st, 0),
                        .msg_id = msg_id,
                        .attempts = attempts < 0            ? 0
                                    : attempts >= UINT_MAX ? UINT_MAX - 1
                                                           : (unsigned) attempts,
                };
        }
        (void) sqlite3_reset(st);
        if (rc != SQLITE_OK)
                return rc;
        f->more = f->n_rows == f->limit;

        /* The messages; an expired one is acked on the spot, a dangling row removed. */
        for (size_t i = 0; i < f->n_rows; i++) {
                FetchRow *row = &f->rows[i];
                PubOp *p = fresh_find(c, row->msg_id);
                if (p) {
                        /* stored by this very transaction: the same bytes are at hand */
                        if (p->expire_at > 0 && p->expire_at <= now)
                                row->drop = true;
                        else if (row_fill(row, p->data, p->len, p->md, p->md_len) != SQLITE_OK)
                                return SQLITE_NOMEM;
                } else {
                        st = stmt_get(e, SQL_MSG_GET);
                        rc = sqlite3_bind_int64(st, 1, row->msg_id);
                        if (rc == SQLITE_OK) {
                                int s = sqlite3_step(st);
                                if (s == SQLITE_ROW) {
                                        if (sqlite3_column_type(st, 2) != SQLITE_NULL &&
                                            sqlite3_column_int64(st, 2) <= now)
                                                row->drop = true; /* expired */
                                        else
                                                rc = row_fill(row, sqlite3_column_blob(st, 0),
                                                              (size_t) sqlite3_column_bytes(st, 0),
                                                              sqlite3_column_blob(st, 1),
                                                              (size_t) sqlite3_column_bytes(st, 1));
                                } else if (s == SQLITE_DONE)
                                        row->drop = true;
                                else
                                        rc = s;
                        }
                        (void) sqlite3_reset(st);
                        if (rc != SQLITE_OK)
                                return rc;
                }
                if (row->drop) {
                        rc = run_ack(e, gid, row->next_at, row->msg_id);
                        if (rc != SQLITE_OK)
                                return rc;
                }
        }

        st = stmt_get(e, SQL_NEXT_DUE);
        rc = sqlite3_bind_int64(st, 1, gid);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 2, now);
        if (rc == SQLITE_OK) {
                int s = sqlite3_step(st);
                if (s == SQLITE_ROW)
                        f->next_due = sqlite3_column_int64(st, 0);
                else if (s != SQLITE_DONE)
                        rc = s;
        }
        (void) sqlite3_reset(st);
        return rc;
}

static int run_purge(Engine *e, int64_t now) {
        sqlite3_stmt *st = stmt_get(e, SQL_EXPIRED_ANY);
        bool any = false;
        int rc;

        rc = sqlite3_bind_int64(st, 1, now);
        if (rc == SQLITE_OK) {
                int s = sqlite3_step(st);
                any = s == SQLITE_ROW;
                if (s != SQLITE_ROW && s != SQLITE_DONE)
                        rc = s;
        }
        (void) sqlite3_reset(st);
        if (rc != SQLITE_OK || !any)
                return rc;
        for (SqlStmt w = SQL_PURGE_QUEUE; w <= SQL_PURGE_MESSAGES; w++) {
                st = stmt_get(e, w);
                rc = sqlite3_bind_int64(st, 1, now);
                if (rc == SQLITE_OK)
                        rc = stmt_done(st);
                if (rc != SQLITE_OK)
                        return rc;
        }
        return SQLITE_OK;
}

/* An op failed: if SQLite rolled the whole transaction back, the batch failed. */
static bool rolled_back(Batch *bt, int rc, const char *what) {
        if (sqlite3_get_autocommit(bt->engine->db)) {
                batch_fail_sqlite(bt, rc, what);
                return true;
        }
        return false;
}

static void run_cache_done(RunCache *c) {
        free(c->ids);
        free(c->unref);
        free(c->fresh);
}

static void batch_run_in(Batch *bt, RunCache *c) {
        Engine *e = bt->engine;
        int64_t now = now_ms();
        bool full = bt->n_pubs > 0 && e->wal_fd < 0;
        int rc;

        /* Only a commit that stores a publish needs to be on disk before its Batch completes:
         * someone waits for it. The syncer thread fsyncs the WAL for it (sync_run()) while this
         * thread runs the next Batch; without the syncer, such a commit waits for its own fsync
         * (FULL). A commit without a publish (acks, retries, fetches, new groups) is left to the
         * next fsync (NORMAL): a WAL file is made durable as a prefix, so that fsync covers it
         * too, and until then a power loss can only bring back deliveries (at least once) or lose
         * a group row that is made again at the next subscribe. NORMAL still syncs around
         * checkpoints. */
        if (full != e->sync_full) {
                rc = sqlite3_exec(e->db, full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                                  NULL, NULL, NULL);
                if (rc == SQLITE_OK)
                        e->sync_full = full;
                else if (full) {
                        batch_fail_sqlite(bt, rc, "synchronous");
                        return;
                } /* else: stays FULL, which is only slower */
        }

        rc = stmt_done(stmt_get(e, SQL_BEGIN));
        if (rc != SQLITE_OK) {
                batch_fail_sqlite(bt, rc, "begin");
                return;
        }
        for (EnsureOp *o = bt->ensures_head; o; o = o->next) {
                rc = run_ensure(e, o, now);
                if (rc != SQLITE_OK) {
                        o->gid = 0;
                        if (rolled_back(bt, rc, "create group"))
                                return;
                }
        }
        /* A settle that fails leaves its row as it was: the message is delivered again. */
        for (PubsubDelivery *d = bt->settles_head; d; d = d->op_next) {
                rc = run_settle(e, c, d);
                if (rc != SQLITE_OK && rolled_back(bt, rc, "settle"))
                        return;
        }
        rc = run_unrefs(e, c);
        if (rc != SQLITE_OK && rolled_back(bt, rc, "settle"))
                return;
        for (PubOp *p = bt->pubs_head; p; p = p->next) {
                rc = run_publish(e, c, p, now);
                if (rc != SQLITE_OK) {
                        p->error = sqlite_errno(rc) ?: -EIO;
                        (void) sqlite_fail(&p->message, p->error, "sqlite: publish to '%s': %s", p->topic,
                                        sqlite3_errmsg(e->db));
                        if (rolled_back(bt, rc, "publish"))
                                return;
                }
        }
        if (now >= e->next_purge_ms) {
                rc = run_purge(e, now);
                if (rc != SQLITE_OK && rolled_back(bt, rc, "purge"))
                        return;
                e->next_purge_ms = now + PURGE_INTERVAL_MS;
        }
        if (bt->n_fetches > 0)
                fresh_collect(c, bt);
        for (size_t i = 0; i < bt->n_fetches; i++) {
                rc = run_fetch(e, c, &bt->fetches[i], now);
                if (rc != SQLITE_OK) {
                        fetch_rows_free(&bt->fetches[i]);
                        bt->fetches[i].next_due = now + FAILURE_BACKOFF_MS;
                        if (rolled_back(bt, rc, "fetch"))
                                return;
                }
        }
        rc = stmt_done(stmt_get(e, SQL_COMMIT));
        if (rc != SQLITE_OK) {
                batch_fail_sqlite(bt, rc, "commit");
                if (!sqlite3_get_autocommit(e->db))
                        (void) stmt_done(stmt_get(e, SQL_ROLLBACK));
        } else if (bt->n_pubs > 0 && e->wal_fd >= 0)
                /* the commit's frames are written: an fsync that starts after this covers them */
                bt->commit_gen = atomic_fetch_add(&e->committed_gen, 1) + 1;
}

static void batch_run(void *userdata) {
        RunCache c = {};

        batch_run_in(userdata, &c);
        run_cache_done(&c);
}

/* ---- the loop's side ---- */

static Engine *engine_ref(Engine *e) {
        e->n_ref++;
        return e;
}

static void engine_unref(Engine *e) {
        if (!e || --e->n_ref > 0)
                return;
        for (Group *g = e->groups, *n; g; g = n) {
                n = g->next;
                free(g->topic);
                free(g->name);
                free(g);
        }
        free(e->path);
        sd_event_unref(e->event);
        free(e);
}

static void kick(Engine *e) {
        if (!e->in_flight && !e->closing && e->kick)
                (void) sd_event_source_set_enabled(e->kick, SD_EVENT_ONESHOT);
}

static void arm_timer(Engine *e) {
        int64_t at = 0;

        if (e->closing || !e->timer)
                return;
        for (Group *g = e->groups; g; g = g->next)
                if (g->next_due > 0 && g->subs_head && (at == 0 || g->next_due < at))
                        at = g->next_due;
        if (at == 0) {
                (void) sd_event_source_set_enabled(e->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(e->timer, (uint64_t) at * USEC_PER_MSEC);
        (void) sd_event_source_set_enabled(e->timer, SD_EVENT_ONESHOT);
}

/* How many more deliveries g's subscriptions take, at most FETCH_MAX (one fetch's worth). */
static unsigned group_room(const Group *g) {
        unsigned room = 0;
        for (PubsubSubscription *s = g->subs_head; s && room < FETCH_MAX; s = s->sub_next)
                if (s->in_flight < s->max_in_flight)
                        room += MIN(s->max_in_flight - s->in_flight, FETCH_MAX);
        return MIN(room, FETCH_MAX);
}

/* The next subscription of g with room, round robin; NULL if none. */
static PubsubSubscription *group_pick(Group *g) {
        PubsubSubscription *start = g->turn ?: g->subs_head, *s = start;
        if (!s)
                return NULL;
        do {
                PubsubSubscription *next = s->sub_next ?: g->subs_head;
                if (s->in_flight < s->max_in_flight) {
                        g->turn = next;
                        return s;
                }
                s = next;
        } while (s != start);
        return NULL;
}

/* Makes a fetch request for g into bt. 0 or -ENOMEM. */
static int batch_add_fetch(Batch *bt, Group *g, unsigned limit) {
        FetchReq *f, *n;
        size_t k = 0;

        n = realloc(bt->fetches, (bt->n_fetches + 1) * sizeof *n);
        if (!n)
                return -ENOMEM;
        bt->fetches = n;
        f = &bt->fetches[bt->n_fetches];
        *f = (FetchReq){ .group = g, .gid = g->gid, .ensure = g->gid ? NULL : g->ensure, .limit = limit };
        for (PubsubDelivery *d = g->leases_head; d; d = d->lease_next)
                k++;
        if (k > 0) {
                f->exclude = malloc(k * sizeof *f->exclude);
                if (!f->exclude)
                        return -ENOMEM;
                for (PubsubDelivery *d = g->leases_head; d; d = d->lease_next)
                        f->exclude[f->n_exclude++] = d->msg_id;
                qsort(f->exclude, f->n_exclude, sizeof *f->exclude, cmp_int64);
        }
        bt->n_fetches++;
        return 0;
}

/* Queues the creation of g's row into bt. 0 or -ENOMEM. */
static int batch_add_ensure(Batch *bt, Group *g) {
        EnsureOp *o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        *o = (EnsureOp){ .group = g, .topic = g->topic, .name = g->name };
        *bt->ensures_tail = o;
        bt->ensures_tail = &o->next;
        bt->n_ensures++;
        g->ensure = o;
        return 0;
}

static void batch_done(void *userdata);

/* Sends the pending Batch to the thread (with a fetch for every group that wants one), unless
 * one is running. */
static void submit_pending(Engine *e) {
        Batch *bt = e->pending, *next;

        if (e->in_flight || e->closing || !bt)
                return;
        for (Group *g = e->groups; g; g = g->next) {
                unsigned room;
                if (!g->dirty || g->fetching || !g->subs_head)
                        continue;
                if (!g->gid && !g->ensure && batch_add_ensure(bt, g) < 0)
                        continue;
                room = group_room(g);
                if (room == 0)
                        continue;
                if (batch_add_fetch(bt, g, room) < 0)
                        break; /* stays dirty: retried with the next Batch */
                g->dirty = false;
                g->fetching = true;
        }
        if (batch_is_empty(bt))
                return;
        next = batch_new(e);
        if (!next)
                return; /* out of memory: the next kick tries again */
        if (work_queue_submit(e->queue, batch_run, batch_done, bt) < 0) {
                free(next);
                return;
        }
        e->pending = next;
        e->in_flight = true;
}

static int on_kick(sd_event_source *s, void *userdata) {
        submit_pending(userdata);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Engine *e = userdata;
        int64_t now = now_ms();

        for (Group *g = e->groups; g; g = g->next)
                if (g->next_due > 0 && g->next_due <= now) {
                        g->next_due = 0;
                        g->dirty = true;
                }
        arm_timer(e);
        kick(e);
        return 0;
}

/* Fetched rows become deliveries (READY), spread over g's subscriptions with room. */
static void apply_fetch(Engine *e, FetchReq *f) {
        Group *g = f->group;

        if (!g->gid)
                return; /* its row could not be made: keep the ensure's backoff */
        for (size_t i = 0; i < f->n_rows; i++) {
                FetchRow *row = &f->rows[i];
                PubsubSubscription *s;
                PubsubDelivery *d;

                if (row->drop)
                        continue;
                s = group_pick(g);
                if (!s) {
                        /* A subscription went away meanwhile: the rest stays in the queue. */
                        g->dirty = true;
                        break;
                }
                d = calloc(1, sizeof *d);
                if (!d) {
                        g->dirty = true;
                        break;
                }
                *d = (PubsubDelivery){ .engine = e,
                                       .group = g,
                                       .sub = s,
                                       .state = DELIVERY_READY,
                                       .msg_id = row->msg_id,
                                       .next_at = row->next_at,
                                       .attempts = row->attempts,
                                       .data = TAKE_PTR(row->data),
                                       .len = row->len,
                                       .md = TAKE_PTR(row->md),
                                       .md_len = row->md_len };
                s->in_flight++;
                DLIST_APPEND(lease, g->leases_head, g->leases_tail, d);
                DLIST_APPEND(sub, s->dels_head, s->dels_tail, d);
                DLIST_APPEND(ready, e->ready_head, e->ready_tail, d);
        }
        if (f->more)
                g->dirty = true;
        g->next_due = f->next_due;
}

/* Hands a finished Batch's results to the loop's state: no callbacks here. */
static void batch_apply(Engine *e, Batch *bt) {
        bool ok = bt->error == 0;
        int64_t now = now_ms();

        for (EnsureOp *o = bt->ensures_head; o; o = o->next) {
                Group *g = o->group;
                if (g->ensure == o)
                        g->ensure = NULL;
                if (ok && o->gid > 0)
                        g->gid = o->gid;
                else if (!g->gid) {
                        /* Made again by the first Batch after the backoff (on_timer() → dirty). */
                        g->dirty = false;
                        g->next_due = now + FAILURE_BACKOFF_MS;
                }
        }

        for (PubsubDelivery *d; (d = bt->settles_head);) {
                Group *g = d->group;
                bt->settles_head = d->op_next;
                DLIST_REMOVE(lease, g->leases_head, g->leases_tail, d);
                if (ok && d->kind == SETTLE_RETRY) {
                        if (g->next_due == 0 || d->new_next_at < g->next_due)
                                g->next_due = d->new_next_at;
                } else if (!ok || d->kind == SETTLE_RELEASE)
                        g->dirty = true; /* the row is due (again) */
                delivery_free(d);
        }
        bt->settles_tail = &bt->settles_head;

        for (size_t i = 0; i < bt->n_fetches; i++) {
                FetchReq *f = &bt->fetches[i];
                f->group->fetching = false;
                if (!ok) {
                        f->group->next_due = now + FAILURE_BACKOFF_MS;
                        continue;
                }
                if (!e->closing)
                        apply_fetch(e, f);
        }

        for (PubOp *p; (p = bt->pubs_head);) {
                bt->pubs_head = p->next;
                if (!ok && p->error == 0) {
                        p->error = bt->error;
                        p->message = bt->message ? strdup(bt->message) : NULL;
                }
                p->next = NULL;
                *e->done_tail = p;
                e->done_tail = &p->next;
        }
        bt->pubs_tail = &bt->pubs_head;

        arm_timer(e);
}

static void dispatch_one(Engine *e, PubsubDelivery *d) {
        PubsubSubscription *s = d->sub;
        _cleanup_free_ void *data = TAKE_PTR(d->data);
        _cleanup_free_ char **md = metadata_decode(d->md, d->md_len);
        char id[24];

        DLIST_REMOVE(ready, e->ready_head, e->ready_tail, d);
        free(TAKE_PTR(d->md));
        d->state = DELIVERY_OUT;
        *fmt_u64(id, (uint64_t) d->msg_id) = 0; /* ids are positive; no stdio per delivery */

        PubsubMessage m = {
                .topic = d->group->topic, /* groups live as long as the Engine */
                .data = data ?: "",
                .len = d->len,
                .metadata = md,
                .id = id,
                .attempt = d->attempts + 1,
        };
        /* May settle d, unsubscribe s, publish, or close the broker: touch neither after this. */
        s->deliver(s, d, &m, s->userdata);
}

/* Runs due callbacks: publish done()s first, then deliver()s (none once close() began). */
static void dispatch(Engine *e) {
        for (;;) {
                PubOp *p = e->done_head;
                if (p) {
                        e->done_head = p->next;
                        if (!e->done_head)
                                e->done_tail = &e->done_head;
                        p->done(p->error, p->message, p->userdata);
                        free(p->message);
                        free(p);
                        continue;
                }
                if (e->closing || !e->ready_head)
                        break;
                dispatch_one(e, e->ready_head);
        }
}

/* The syncer thread: makes a Batch's commit durable. One fdatasync() covers every commit that
 * finished before it started, so a Batch whose commit an earlier one covered has nothing to do:
 * when fsyncs are slower than commits, each covers several Batches. A Batch without a commit to
 * sync passes through too, so that Batches complete in the order they committed. A failed fsync
 * fails the Batch's publishes (committed, so they may still be delivered: at least once). */
static void sync_run(void *userdata) {
        Batch *bt = userdata;
        Engine *e = bt->engine;
        uint64_t upto;

        if (bt->commit_gen == 0 || bt->commit_gen <= e->synced_gen)
                return;
        upto = atomic_load(&e->committed_gen);
        if (fdatasync(e->wal_fd) < 0) {
                int r = -errno;
                for (PubOp *p = bt->pubs_head; p; p = p->next)
                        if (p->error == 0) {
                                p->error = r;
                                (void) sqlite_fail(&p->message, r, "sqlite: fsync of '%s-wal': %s", e->path,
                                                   strerror(-r));
                        }
                return;
        }
        e->synced_gen = upto;
}

/* A Batch is committed and, where it stored publishes, on disk: its results reach the loop's
 * state and its callbacks run. */
static void batch_complete(void *userdata) {
        Batch *bt = userdata;
        Engine *e = engine_ref(bt->engine);

        batch_apply(e, bt);
        batch_free(bt);
        /* Keep the thread busy while the callbacks run. */
        submit_pending(e);
        dispatch(e);
        engine_unref(e);
}

/* The writer thread is done with a Batch: it takes the next one while the syncer makes this one
 * durable. */
static void batch_done(void *userdata) {
        Batch *bt = userdata;
        Engine *e = bt->engine;

        e->in_flight = false;
        if (!e->syncq) {
                batch_complete(bt);
                return;
        }
        if (work_queue_submit(e->syncq, sync_run, batch_complete, bt) < 0) {
                /* Out of memory: sync here, on the loop. Batches still with the syncer complete
                 * after this one; each Batch's groups are its own (Group.fetching), so the order
                 * between them is only that of their callbacks. */
                sync_run(bt);
                batch_complete(bt);
                return;
        }
        submit_pending(e);
}

/* ---- the vtable ---- */

static Group *group_find(Engine *e, const char *topic, const char *name) {
        for (Group *g = e->groups; g; g = g->next)
                if (streq(g->topic, topic) && (!name || streq(g->name, name)))
                        return g;
        return NULL;
}

static int sqlite_publish(PubsubBroker *b, const char *topic, const void *data, size_t len,
                          char *const *metadata, int64_t ttl_sec, PubsubDoneFn done, void *userdata) {
        Engine *e = ((SqliteBroker *) b)->engine;
        _cleanup_free_ void *md = NULL;
        size_t md_len = 0, topic_len;
        PubOp *p;
        int r;

        assert(topic && done && (data || len == 0));
        if (!e || e->closing || !e->pending)
                return -ECANCELED;
        r = metadata_encode(metadata, &md, &md_len);
        if (r < 0)
                return r;
        topic_len = strlen(topic);
        if (len > SIZE_MAX - sizeof *p - topic_len - md_len - 1)
                return -E2BIG;
        p = malloc(sizeof *p + len + topic_len + 1 + md_len);
        if (!p)
                return -ENOMEM;
        *p = (PubOp){ .done = done, .userdata = userdata, .len = len, .md_len = md_len };
        if (len > 0)
                memcpy(p->data, data, len);
        p->topic = memcpy(p->data + len, topic, topic_len + 1);
        if (md)
                p->md = memcpy(p->data + len + topic_len + 1, md, md_len);
        if (ttl_sec > 0)
                p->expire_at = now_ms() + (ttl_sec > INT64_MAX / 2000 ? INT64_MAX / 2 : ttl_sec * 1000);
        else if (e->retention_ms > 0)
                p->expire_at = now_ms() + e->retention_ms;

        *e->pending->pubs_tail = p;
        e->pending->pubs_tail = &p->next;
        e->pending->n_pubs++;
        /* The topic's groups fetch in the transaction that stores it. */
        for (Group *g = e->groups; g; g = g->next)
                if (streq(g->topic, topic))
                        g->dirty = true;
        kick(e);
        return 0;
}

static int sqlite_subscribe(PubsubBroker *b, const char *topic, const char *group, unsigned max_in_flight,
                            PubsubDeliverFn deliver, void *userdata, PubsubSubscription **ret) {
        Engine *e = ((SqliteBroker *) b)->engine;
        PubsubSubscription *s;
        Group *g;

        assert(topic && group && deliver && ret);
        if (!e || e->closing || !e->pending)
                return -ECANCELED;
        if (!*topic || !*group)
                return -EINVAL;

        g = group_find(e, topic, group);
        if (!g) {
                g = calloc(1, sizeof *g);
                if (!g)
                        return -ENOMEM;
                g->engine = e;
                g->topic = strdup(topic);
                g->name = strdup(group);
                if (!g->topic || !g->name) {
                        free(g->topic);
                        free(g->name);
                        free(g);
                        return -ENOMEM;
                }
                g->next = e->groups;
                e->groups = g;
        }
        /* Now, not with the first fetch: a publish after this subscribe() must find the group. */
        if (!g->gid && !g->ensure && batch_add_ensure(e->pending, g) < 0)
                return -ENOMEM; /* g stays, harmless: it has no subscription */
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        *s = (PubsubSubscription){ .engine = e,
                                   .group = g,
                                   .deliver = deliver,
                                   .userdata = userdata,
                                   .max_in_flight = max_in_flight ?: DEFAULT_MAX_IN_FLIGHT };
        DLIST_APPEND(sub, g->subs_head, g->subs_tail, s);
        g->dirty = true;
        kick(e);
        *ret = s;
        return 0;
}

/* A delivery of a subscription that goes away: READY ones are dropped, OUT ones released. */
static void delivery_abandon(Engine *e, PubsubDelivery *d) {
        PubsubSubscription *s = d->sub;
        Group *g = d->group;

        DLIST_REMOVE(sub, s->dels_head, s->dels_tail, d);
        s->in_flight--;
        d->sub = NULL;
        if (d->state == DELIVERY_READY)
                DLIST_REMOVE(ready, e->ready_head, e->ready_tail, d);
        if (d->state == DELIVERY_READY || !e->pending) {
                DLIST_REMOVE(lease, g->leases_head, g->leases_tail, d);
                delivery_free(d);
                return;
        }
        /* It was handed out: count the attempt; the lease lasts until that commits. */
        d->state = DELIVERY_SETTLING;
        d->kind = SETTLE_RELEASE;
        d->op_next = NULL;
        *e->pending->settles_tail = d;
        e->pending->settles_tail = &d->op_next;
        e->pending->n_settles++;
}

static void sqlite_unsubscribe(PubsubSubscription *s) {
        Engine *e;
        Group *g;

        if (!s)
                return;
        e = s->engine;
        g = s->group;
        while (s->dels_head)
                delivery_abandon(e, s->dels_head);
        DLIST_REMOVE(sub, g->subs_head, g->subs_tail, s);
        if (g->turn == s)
                g->turn = NULL;
        free(s);
        g->dirty = true;
        kick(e);
}

static void sqlite_settle(PubsubDelivery *d, PubsubOutcome outcome, uint64_t retry_after_usec) {
        Engine *e = d->engine;
        PubsubSubscription *s = d->sub;
        Group *g = d->group;

        assert(d->state == DELIVERY_OUT && s);
        DLIST_REMOVE(sub, s->dels_head, s->dels_tail, d);
        s->in_flight--;
        d->sub = NULL;
        if (e->closing || !e->pending) {
                DLIST_REMOVE(lease, g->leases_head, g->leases_tail, d);
                delivery_free(d);
                return;
        }
        d->state = DELIVERY_SETTLING;
        if (outcome == PUBSUB_RETRY) {
                uint64_t ms = (retry_after_usec + USEC_PER_MSEC - 1) / USEC_PER_MSEC;
                d->kind = SETTLE_RETRY;
                /* +1: next_at is compared in whole ms; never earlier than asked. */
                d->new_next_at = now_ms() + (int64_t) MIN(ms, (uint64_t) INT32_MAX) + 1;
        } else
                d->kind = SETTLE_ACK;
        d->op_next = NULL;
        *e->pending->settles_tail = d;
        e->pending->settles_tail = &d->op_next;
        e->pending->n_settles++;
        g->dirty = true; /* room again */
        kick(e);
}

/* ---- open/close ---- */

static int parse_metadata(Engine *e, const PubsubBroker *b, char **reterr_msg) {
        const Component *c = b->component;
        const char *v;

        int r = sqlite_resolve_path(b->state_dir, c ? component_get_string(c, "connectionString") : NULL,
                                    DEFAULT_PATH, &e->path, &e->path_is_uri, reterr_msg);
        if (r < 0)
                return r;

        /* busyTimeout is an alias of timeout; given both, busyTimeout wins. */
        e->busy_timeout_usec = DEFAULT_BUSY_TIMEOUT_USEC;
        for (const char *const *k = (const char *const[]){ "timeout", "busyTimeout", NULL }; *k; k++) {
                v = c ? component_get_string(c, *k) : NULL;
                if (v && parse_duration_usec(v, &e->busy_timeout_usec) < 0)
                        return sqlite_fail(reterr_msg, -EINVAL,
                                        "%s: '%s' is not a duration (e.g. \"20s\", \"500ms\", or seconds)",
                                        *k, v);
        }

        v = c ? component_get_string(c, "retentionPeriod") : NULL;
        if (v) {
                uint64_t usec;
                if (parse_duration_usec(v, &usec) < 0)
                        return sqlite_fail(reterr_msg, -EINVAL,
                                        "retentionPeriod: '%s' is not a duration (e.g. \"24h\", or 0 to keep "
                                        "messages until acked)",
                                        v);
                e->retention_ms = (int64_t) MIN(usec / USEC_PER_MSEC, (uint64_t) INT64_MAX / 4);
        }
        return 0;
}

/* fsync()s the directory that holds path. 0 or -errno. */
static int fsync_parent_dir(const char *path) {
        _cleanup_free_ char *dir = strdup(path);
        char *slash;
        int fd, r = 0;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash == dir)
                slash[1] = 0;
        else if (slash)
                *slash = 0;
        fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                r = -errno;
        (void) close(fd);
        return r;
}

/* Opens the WAL file for the syncer (its own descriptor: an fsync of any descriptor of a file
 * makes all of the file's written data durable) and switches commits to NORMAL. Without a WAL
 * file on disk (":memory:", a journal mode other than WAL, a VFS other than SQLite's unix ones,
 * as the tests' fsync-counting one), commits stay FULL. */
static void wal_open(Engine *e) {
        const char *db = sqlite3_db_filename(e->db, "main"), *wal;
        sqlite3_stmt *st = NULL;
        bool is_wal = false;

        e->wal_fd = -1;
        /* Only where the file SQLite writes is the file on disk of that name: its own VFSes. */
        sqlite3_vfs *vfs = NULL;
        if (sqlite3_file_control(e->db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) != SQLITE_OK || !vfs ||
            !vfs->zName || strncmp(vfs->zName, "unix", 4) != 0)
                return;
        if (sqlite3_prepare_v2(e->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
                const unsigned char *m = sqlite3_column_text(st, 0);
                is_wal = m && streq((const char *) m, "wal");
        }
        (void) sqlite3_finalize(st);
        if (!is_wal || !db || !*db || !(wal = sqlite3_filename_wal(db)) || !*wal)
                return;
        e->wal_fd = open(wal, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (e->wal_fd < 0)
                return;
        /* The WAL file may be new (the last connection of a run removes it): its name must be on
         * disk too before an fsync of its data means anything. */
        if (fsync_parent_dir(wal) < 0) {
                close(e->wal_fd);
                e->wal_fd = -1;
                return;
        }
        if (sqlite3_exec(e->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
                close(e->wal_fd);
                e->wal_fd = -1;
                return;
        }
        e->sync_full = false;
}

static int open_db(Engine *e, char **reterr_msg) {
        sqlite3_stmt *st = NULL;
        int64_t version = 0;
        /* secure_delete = FAST: Debian builds SQLite with SECURE_DELETE on, which zeroes every page
         * an ack frees and writes it to the WAL again: one more page write per few messages. FAST
         * still wipes a deleted message's bytes inside the page that held it (no extra I/O), and
         * leaves freed pages as they are until reused: the file is 0600 in the state directory. */
        int rc = sqlite_open_durable(e->path, e->path_is_uri, true, e->busy_timeout_usec,
                                     "PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY; "
                                     "PRAGMA secure_delete = FAST;",
                                     &e->db, reterr_msg);
        if (rc < 0)
                return rc;

        rc = sqlite3_prepare_v2(e->db, "PRAGMA user_version", -1, &st, NULL);
        if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                version = sqlite3_column_int64(st, 0);
        (void) sqlite3_finalize(st);
        if (rc != SQLITE_OK)
                return sqlite_fail(reterr_msg, sqlite_errno(rc), "connectionString: cannot read '%s': %s",
                                e->path, sqlite3_errmsg(e->db));
        if (version > SCHEMA_VERSION)
                return sqlite_fail(reterr_msg, -EPROTO,
                                "connectionString: '%s' has schema version %" PRId64
                                ", newer than this daemon's (%d)",
                                e->path, version, SCHEMA_VERSION);

        rc = sqlite3_exec(e->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(e->db, schema_sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK && version < SCHEMA_VERSION)
                rc = sqlite3_exec(e->db, "PRAGMA user_version = 1", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(e->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                int r = sqlite_fail(reterr_msg, sqlite_errno(rc),
                                 "connectionString: cannot set up the tables in '%s': %s", e->path,
                                 sqlite3_errmsg(e->db));
                if (!sqlite3_get_autocommit(e->db))
                        (void) sqlite3_exec(e->db, "ROLLBACK", NULL, NULL, NULL);
                return r;
        }

        e->sync_full = true; /* sqlite_open_durable() */
        wal_open(e);
        for (size_t i = 0; i < _SQL_MAX; i++) {
                rc = sqlite3_prepare_v3(e->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &e->stmt[i], NULL);
                if (rc != SQLITE_OK)
                        return sqlite_fail(reterr_msg, sqlite_errno(rc),
                                        "connectionString: '%s' does not have the expected layout: %s",
                                        e->path, sqlite3_errmsg(e->db));
        }
        return 0;
}

static void db_close(Engine *e) {
        for (size_t i = 0; i < _SQL_MAX; i++) {
                (void) sqlite3_finalize(e->stmt[i]);
                e->stmt[i] = NULL;
        }
        if (e->db) {
                (void) sqlite3_close(e->db);
                e->db = NULL;
        }
        if (e->wal_fd >= 0) {
                (void) close(e->wal_fd);
                e->wal_fd = -1;
        }
}

static void sqlite_close(PubsubBroker *b);

static int sqlite_open(PubsubBroker *b, char **reterr_msg) {
        SqliteBroker *sb = (SqliteBroker *) b;
        Engine *e;
        int r;

        if (!sqlite3_threadsafe())
                return sqlite_fail(reterr_msg, -EOPNOTSUPP,
                                "this SQLite library is built without thread support");
        e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->n_ref = 1;
        e->wal_fd = -1;
        e->event = sd_event_ref(b->event);
        e->done_tail = &e->done_head;
        sb->engine = e;

        r = parse_metadata(e, b, reterr_msg);
        if (r < 0)
                goto fail;
        r = open_db(e, reterr_msg);
        if (r < 0)
                goto fail;
        e->pending = batch_new(e);
        if (!e->pending) {
                r = -ENOMEM;
                goto fail;
        }
        e->queue = work_queue_new(b->event);
        if (!e->queue) {
                r = negative_errno();
                goto fail;
        }
        if (e->wal_fd >= 0) {
                e->syncq = work_queue_new(b->event);
                if (!e->syncq) {
                        r = negative_errno();
                        goto fail;
                }
        }
        r = sd_event_add_defer(b->event, &e->kick, on_kick, e);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(e->kick, SD_EVENT_OFF);
        (void) sd_event_source_set_description(e->kick, "pubsub-sqlite-kick");
        /* 1 ms accuracy: a retry is due at its time, not up to 250 ms later. */
        r = sd_event_add_time(b->event, &e->timer, CLOCK_REALTIME, 0, USEC_PER_MSEC, on_timer, e);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(e->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(e->timer, "pubsub-sqlite-retry");
        return 0;

fail:
        if (reterr_msg && !*reterr_msg)
                (void) sqlite_fail(reterr_msg, r, "cannot open the pub/sub broker: %s", strerror(-r));
        sqlite_close(b);
        return r;
}

static void sqlite_close(PubsubBroker *b) {
        SqliteBroker *sb = (SqliteBroker *) b;
        Engine *e = sb->engine;
        Batch *bt;

        if (!e || e->closing) /* twice, or from a callback this close() runs */
                return;
        e->closing = true;
        e->kick = sd_event_source_disable_unref(e->kick);
        e->timer = sd_event_source_disable_unref(e->timer);

        /* Handed-out deliveries are released (their attempt counted) in a last Batch, with the
         * publishes and settles still pending; the others are dropped. */
        for (Group *g = e->groups; g; g = g->next)
                for (PubsubSubscription *s = g->subs_head; s; s = s->sub_next)
                        while (s->dels_head)
                                delivery_abandon(e, s->dels_head);
        bt = TAKE_PTR(e->pending);
        if (bt && !batch_is_empty(bt) && e->queue &&
            work_queue_submit(e->queue, batch_run, batch_done, bt) >= 0)
                bt = NULL;
        if (bt) {
                if (!batch_is_empty(bt)) {
                        bt->error = -ECANCELED;
                        bt->message = strdup("pub/sub broker closed");
                }
                batch_apply(e, bt);
                batch_free(bt);
        }
        /* Runs what is queued and every finished Batch's completion: all publish done()s. The
         * writer's completions hand their Batches to the syncer, which is freed after it. */
        work_queue_free(TAKE_PTR(e->queue));
        work_queue_free(TAKE_PTR(e->syncq));
        dispatch(e);
        assert(!e->done_head);

        for (Group *g = e->groups; g; g = g->next) {
                for (PubsubSubscription *s; (s = g->subs_head);) {
                        while (s->dels_head)
                                delivery_abandon(e, s->dels_head);
                        DLIST_REMOVE(sub, g->subs_head, g->subs_tail, s);
                        free(s);
                }
                g->turn = NULL;
                /* Nothing is leased any more: every Batch is done. */
                while (g->leases_head) {
                        PubsubDelivery *d = g->leases_head;
                        DLIST_REMOVE(lease, g->leases_head, g->leases_tail, d);
                        delivery_free(d);
                }
        }
        db_close(e);
        sb->engine = NULL;
        engine_unref(e);
}

const PubsubDriver pubsub_sqlite_driver = {
        .type = "pubsub.sqlite",
        .alias = NULL,
        .abi = PUBSUB_DRIVER_ABI,
        .instance_size = sizeof(SqliteBroker),
        .native_ttl = true,
        .own_storage = true,
        .open = sqlite_open,
        .close = sqlite_close,
        .publish = sqlite_publish,
        .subscribe = sqlite_subscribe,
        .unsubscribe = sqlite_unsubscribe,
        .settle = sqlite_settle,
};
