/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for drivers/pubsub/sqlite.c: the generic driver suite (PERSISTENT,
 * unclaimed messages kept for the first group), then what only an embedded
 * durable broker promises: a publish answered is a publish that survives
 * SIGKILL (a forked child publishes and consumes, the parent kills it and
 * reopens the file), and group commit (fsyncs counted by a counting SQLite
 * VFS, so the check needs no clock). Metadata validation and the schema on
 * disk.
 *
 * TESTFUNCS=bench runs a throughput measurement (never part of the normal
 * run: timings are not pass/fail): 20,000 publishes of 1 KiB, 256 in flight,
 * then delivering them with an ACK each.
 */
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "tests.h"
#include "pubsub-driver-suite.h"

extern const PubsubDriver pubsub_sqlite_driver;

static const char *const default_md[] = { NULL };

/* ---- a VFS that counts fsyncs (the default one underneath) ---- */

typedef struct CountFile {
        sqlite3_file base;
        sqlite3_file *real; /* right after this struct, szOsFile of the real VFS */
        bool wal;
} CountFile;

static sqlite3_vfs *count_real_vfs;
static sqlite3_vfs count_vfs;
static atomic_uint count_syncs_wal, count_syncs_other;

#define REAL(f) (((CountFile *) (f))->real)

static int count_close(sqlite3_file *f) {
        return REAL(f)->pMethods->xClose(REAL(f));
}
static int count_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o) {
        return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int count_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o) {
        return REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int count_truncate(sqlite3_file *f, sqlite3_int64 size) {
        return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int count_sync(sqlite3_file *f, int flags) {
        atomic_fetch_add(((CountFile *) f)->wal ? &count_syncs_wal : &count_syncs_other, 1);
        return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int count_file_size(sqlite3_file *f, sqlite3_int64 *size) {
        return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int count_lock(sqlite3_file *f, int l) {
        return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int count_unlock(sqlite3_file *f, int l) {
        return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int count_check_reserved(sqlite3_file *f, int *out) {
        return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int count_file_control(sqlite3_file *f, int op, void *arg) {
        return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int count_sector_size(sqlite3_file *f) {
        return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int count_device_characteristics(sqlite3_file *f) {
        return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int count_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp) {
        return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}
static int count_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
        return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}
static void count_shm_barrier(sqlite3_file *f) {
        REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int count_shm_unmap(sqlite3_file *f, int del) {
        return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int count_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp) {
        return REAL(f)->pMethods->xFetch(REAL(f), o, n, pp);
}
static int count_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p) {
        return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}

static const sqlite3_io_methods count_methods = {
        .iVersion = 3,
        .xClose = count_close,
        .xRead = count_read,
        .xWrite = count_write,
        .xTruncate = count_truncate,
        .xSync = count_sync,
        .xFileSize = count_file_size,
        .xLock = count_lock,
        .xUnlock = count_unlock,
        .xCheckReservedLock = count_check_reserved,
        .xFileControl = count_file_control,
        .xSectorSize = count_sector_size,
        .xDeviceCharacteristics = count_device_characteristics,
        .xShmMap = count_shm_map,
        .xShmLock = count_shm_lock,
        .xShmBarrier = count_shm_barrier,
        .xShmUnmap = count_shm_unmap,
        .xFetch = count_fetch,
        .xUnfetch = count_unfetch,
};

static int count_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *out_flags) {
        CountFile *c = (CountFile *) f;
        int rc;

        c->real = (sqlite3_file *) (c + 1);
        c->wal = flags & SQLITE_OPEN_WAL;
        c->base.pMethods = NULL;
        rc = count_real_vfs->xOpen(count_real_vfs, name, c->real, flags, out_flags);
        if (c->real->pMethods) {
                /* The unix VFS speaks version 3; anything older would need a matching table. */
                if (c->real->pMethods->iVersion < 3) {
                        fprintf(stderr, "counting VFS: io methods version %d\n", c->real->pMethods->iVersion);
                        abort();
                }
                c->base.pMethods = &count_methods;
        }
        return rc;
}

/* Makes the counting VFS the default (for brokers opened from now on). */
static void count_vfs_install(void) {
        if (count_real_vfs)
                return;
        count_real_vfs = sqlite3_vfs_find(NULL);
        ASSERT_NOT_NULL(count_real_vfs);
        count_vfs = *count_real_vfs;
        count_vfs.pNext = NULL;
        count_vfs.zName = "mooring-count";
        count_vfs.szOsFile = (int) sizeof(CountFile) + count_real_vfs->szOsFile;
        count_vfs.xOpen = count_open;
        ASSERT_EQ(sqlite3_vfs_register(&count_vfs, 1), SQLITE_OK);
}

static void count_vfs_remove(void) {
        if (!count_real_vfs)
                return;
        ASSERT_EQ(sqlite3_vfs_unregister(&count_vfs), SQLITE_OK);
        ASSERT_EQ(sqlite3_vfs_register(count_real_vfs, 1), SQLITE_OK);
        count_real_vfs = NULL;
}

/* ---- the suite ---- */

TEST(driver_table) {
        ASSERT_STREQ(pubsub_sqlite_driver.type, "pubsub.sqlite");
        ASSERT_NULL(pubsub_sqlite_driver.alias);
        ASSERT_EQ(pubsub_sqlite_driver.abi, PUBSUB_DRIVER_ABI);
        ASSERT_TRUE(pubsub_sqlite_driver.native_ttl);
        ASSERT_TRUE(pubsub_driver_find("pubsub.sqlite") == &pubsub_sqlite_driver);
}

TEST(suite) {
        pubsub_driver_suite_run(&pubsub_sqlite_driver, default_md,
                                PUBSUB_SUITE_PERSISTENT | PUBSUB_SUITE_KEEPS_UNCLAIMED);
}

/* A few cases again with a file name of our own (relative to the state directory) and a timeout. */
TEST(suite_other_file) {
        static const char *const md[] = { "connectionString", "broker-2.sqlite", "timeout", "5s", NULL };
        const char *given = getenv("PUBSUB_SUITE_CASES");
        _cleanup_free_ char *saved = given ? strdup(given) : NULL;

        if (!given)
                setenv("PUBSUB_SUITE_CASES", "roundtrip:durable_publish:close_unsettled", 1);
        pubsub_driver_suite_run(&pubsub_sqlite_driver, md,
                                PUBSUB_SUITE_PERSISTENT | PUBSUB_SUITE_KEEPS_UNCLAIMED);
        if (!saved)
                unsetenv("PUBSUB_SUITE_CASES");
}

/* ---- metadata ---- */

TEST(metadata) {
        static const struct {
                const char *const md[5];
                const char *field;
        } bad[] = {
                { { "connectionString", "", NULL }, "connectionString" },
                { { "connectionString", "/nonexistent/dir/x.db", NULL }, "connectionString" },
                { { "timeout", "soon", NULL }, "timeout" },
                { { "busyTimeout", "5x", NULL }, "busyTimeout" },
                { { "retentionPeriod", "a while", NULL }, "retentionPeriod" },
        };
        Pss S;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                PubsubBroker *b = NULL;
                _cleanup_free_ char *msg = NULL;

                pss_case_init(&S, &pubsub_sqlite_driver, bad[i].md, 0, "metadata");
                ASSERT_TRUE(pss_open_full(&S, &b, &msg) < 0);
                ASSERT_NULL(b);
                ASSERT_NOT_NULL(msg);
                if (!startswith(msg, bad[i].field)) {
                        fprintf(stderr, "message '%s' does not name '%s'\n", msg, bad[i].field);
                        ASSERT_TRUE(false);
                }
                pss_case_done(&S);
        }

        /* Absolute path, durations, unknown keys ignored. */
        _cleanup_free_ char *abs = NULL;
        pss_case_init(&S, &pubsub_sqlite_driver, NULL, 0, "metadata");
        ASSERT_TRUE(asprintf(&abs, "%s/abs.db", S.dir) > 0);
        const char *const good[] = { "connectionString", abs,         "busyTimeout", "1m30s",
                                     "retentionPeriod",  "24h",       "other",       "x",
                                     NULL };
        S.metadata = good;
        PubsubBroker *b = pss_open(&S);
        pss_close(&S, b);
        ASSERT_TRUE(access(abs, F_OK) == 0);
        pss_case_done(&S);
}

/* ---- what is on disk ---- */

static int64_t query_int(const char *path, const char *sql) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int64_t v = -1;

        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static char *query_text(const char *path, const char *sql) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        char *v = NULL;

        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                v = strdup((const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

/* Acked messages leave the file; a message stays until every group acked it. */
TEST(storage) {
        Pss S;
        _cleanup_free_ char *path = NULL, *mode = NULL;
        PssPub pubs[4];

        pss_case_init(&S, &pubsub_sqlite_driver, NULL, 0, "storage");
        ASSERT_TRUE(asprintf(&path, "%s/pubsub.db", S.dir) > 0);
        PubsubBroker *b = pss_open(&S);
        PssSub *a = pss_subscribe(&S, b, "orders", "app-a", 8, PSS_ACK);
        PssSub *h = pss_subscribe(&S, b, "orders", "app-b", 8, PSS_HOLD);
        pss_publish_keys(&S, b, "orders", 0, 4, pubs);
        pss_wait_published(&S, pubs, 4);
        PSS_WAIT(&S, pss_distinct(a, 0, 4) == 4 && h->outstanding == 4);
        pss_run_for(&S, 100);

        mode = query_text(path, "PRAGMA journal_mode");
        ASSERT_STREQ(mode, "wal");
        ASSERT_EQ(query_int(path, "PRAGMA user_version"), 1);
        ASSERT_EQ(query_int(path, "SELECT count(*) FROM groups WHERE topic = 'orders'"), 2);
        ASSERT_EQ(query_int(path, "SELECT count(*) FROM messages"), 4);
        ASSERT_EQ(query_int(path, "SELECT count(*) FROM queue"), 4); /* app-b's, not yet acked */
        ASSERT_EQ(query_int(path, "SELECT sum(refs) FROM messages"), 4);

        pss_ack_all_held(h);
        pss_run_for(&S, 200);
        ASSERT_EQ(query_int(path, "SELECT count(*) FROM messages"), 0);
        ASSERT_EQ(query_int(path, "SELECT count(*) FROM queue"), 0);

        /* A retry is stored: attempts counted, next_at in the future. */
        h->mode = PSS_RETRY_FIRST;
        h->retry_left = 1;
        h->retry_usec = 60 * 1000 * 1000;
        pss_publish_keys(&S, b, "orders", 10, 1, pubs);
        pss_wait_published(&S, pubs, 1);
        PSS_WAIT(&S, pss_count(h, 10) == 1 && pss_count(a, 10) == 1);
        pss_run_for(&S, 200);
        ASSERT_EQ(query_int(path, "SELECT attempts FROM queue"), 1);
        ASSERT_TRUE(query_int(path, "SELECT next_at - (strftime('%s', 'now') * 1000) FROM queue") >
                    50 * 1000);
        pss_case_done(&S);
}

/* Acks settled in one Batch drop their messages' references together (runs of consecutive ids
 * by range): each group's ack counts once, a message acked by both groups in the same Batch goes,
 * and another topic's messages in between stay. */
TEST(storage_acks_in_one_batch) {
        Pss S;
        _cleanup_free_ char *path = NULL;
        PssPub pubs[12];

        pss_case_init(&S, &pubsub_sqlite_driver, NULL, 0, "storage_acks_in_one_batch");
        ASSERT_TRUE(asprintf(&path, "%s/pubsub.db", S.dir) > 0);
        PubsubBroker *b = pss_open(&S);
        PssSub *a = pss_subscribe(&S, b, "orders", "app-a", 16, PSS_HOLD);
        PssSub *h = pss_subscribe(&S, b, "orders", "app-b", 16, PSS_HOLD);
        PssSub *o = pss_subscribe(&S, b, "other", "app-c", 16, PSS_HOLD);
        pss_publish_keys(&S, b, "orders", 0, 4, pubs);     /* consecutive ids */
        pss_publish_keys(&S, b, "other", 10, 1, pubs + 4); /* one id in between */
        pss_publish_keys(&S, b, "orders", 4, 1, pubs + 5);
        pss_publish_keys(&S, b, "other", 11, 1, pubs + 6);
        pss_publish_keys(&S, b, "orders", 5, 5, pubs + 7);
        pss_wait_published(&S, pubs, 12);
        PSS_WAIT(&S, a->outstanding == 10 && h->outstanding == 10 && o->outstanding == 2);
        pss_run_for(&S, 100);
        ASSERT_EQ(query_int(path, "SELECT sum(refs) FROM messages"), 22);

        /* Both groups' acks before the loop runs again: the same Batch. */
        pss_ack_all_held(a);
        pss_ack_all_held(h);
        pss_run_for(&S, 200);
        ASSERT_EQ(query_int(path, "SELECT count(*) FROM messages"), 2);
        ASSERT_EQ(query_int(path, "SELECT count(*) FROM messages WHERE topic = 'other' AND refs = 1"), 2);
        ASSERT_EQ(query_int(path, "SELECT count(*) FROM queue"), 2);

        /* One group's acks, the other's later: the first only unreferences. */
        pss_publish_keys(&S, b, "orders", 20, 3, pubs);
        pss_wait_published(&S, pubs, 3);
        PSS_WAIT(&S, a->outstanding == 3 && h->outstanding == 3);
        pss_ack_all_held(a);
        pss_run_for(&S, 200);
        ASSERT_EQ(query_int(path, "SELECT count(*) FROM messages WHERE topic = 'orders' AND refs = 1"), 3);
        pss_ack_all_held(h);
        pss_ack_all_held(o);
        pss_run_for(&S, 200);
        ASSERT_EQ(query_int(path, "SELECT count(*) FROM messages"), 0);
        ASSERT_EQ(query_int(path, "SELECT count(*) FROM queue"), 0);
        pss_case_done(&S);
}

/* Metadata is carried byte for byte, empty values and unusual names included. */
TEST(metadata_pairs) {
        char *md[] = { "", "empty name", "k", "", "ünïcödé", "v\xc3\xa9", "k", "dup", NULL };
        Pss S;
        PssPub p;

        pss_case_init(&S, &pubsub_sqlite_driver, NULL, 0, "metadata_pairs");
        PubsubBroker *b = pss_open(&S);
        PssSub *s = pss_subscribe(&S, b, "t", "g", 8, PSS_ACK);
        pss_publish(&S, b, "t", "x", 1, md, 0, &p);
        pss_wait_published(&S, &p, 1);
        PSS_WAIT(&S, s->n_recv == 1);
        ASSERT_NOT_NULL(s->recv[0].metadata);
        ASSERT_TRUE(strv_equal(s->recv[0].metadata, md));
        pss_case_done(&S);
}

/* ---- durability under SIGKILL ---- */

enum { CRASH_N = 20000, CRASH_WINDOW = 64 };

typedef struct Record {
        char kind; /* 'P' publish answered 0, 'D' delivered to group c (acked right away) */
        uint32_t key;
} __attribute__((packed)) Record;

static void write_record(int fd, char kind, uint32_t key) {
        Record r = { kind, key };
        if (write(fd, &r, sizeof r) != (ssize_t) sizeof r)
                _exit(3);
}

/* The child: publishes CRASH_N messages, CRASH_WINDOW at a time, while group c consumes. Reports
 * every publish answered and every message consumed, until killed. */
_Noreturn static void crash_child_run(Pss *S, int fd) {
        static PssPub pubs[CRASH_N];
        unsigned next = 0, reported_pub = 0;
        size_t reported_recv = 0;

        /* The parent's loop is not ours to use (sd-event refuses across fork). */
        S->event = NULL;
        ASSERT_OK(sd_event_new(&S->event));
        PubsubBroker *b = pss_open(S);
        PssSub *g = pss_subscribe(S, b, "crash", "g", 16, PSS_ACK);
        pss_unsubscribe(S, g); /* the group exists from here on, before every publish */
        PssSub *c = pss_subscribe(S, b, "crash", "c", 32, PSS_ACK);

        for (;;) {
                while (next < CRASH_N && next - reported_pub < CRASH_WINDOW) {
                        pss_publish_keys(S, b, "crash", next, 1, &pubs[next]);
                        next++;
                }
                ASSERT_OK(sd_event_run(S->event, 100 * 1000));
                PSS_CHECK(S);
                /* Answers come in publish order (one queue, one transaction at a time). */
                while (reported_pub < next && pubs[reported_pub].n_fired) {
                        if (pubs[reported_pub].error != 0)
                                _exit(4);
                        write_record(fd, 'P', reported_pub);
                        reported_pub++;
                }
                while (reported_recv < c->n_recv)
                        write_record(fd, 'D', (uint32_t) c->recv[reported_recv++].key);
                if (reported_pub == CRASH_N)
                        _exit(0); /* not killed in time: the parent notices */
        }
}

_Noreturn static void crash_child(Pss *S, int fd) {
        /* A failed assertion must end the child, not run the parent's remaining tests. */
        if (setjmp(test_jmp) != 0)
                _exit(2);
        crash_child_run(S, fd);
}

TEST(crash_durability) {
        static unsigned char acked[CRASH_N], consumed[CRASH_N];
        Pss S;
        int fds[2];
        unsigned n_acked = 0, n_consumed = 0;
        Record r;
        ssize_t k;
        pid_t pid;
        int status;

        /* Where the kill lands varies from run to run (the checks hold for any point); printed so
         * a failure can be rerun: PUBSUB_CRASH_SEED=<n>. */
        const char *seed_env = getenv("PUBSUB_CRASH_SEED");
        unsigned seed = seed_env ? (unsigned) strtoul(seed_env, NULL, 10) : (unsigned) (getpid() ^ pss_now());
        srand(seed);
        unsigned kill_after = 2000 + (unsigned) rand() % 2000, jitter_usec = (unsigned) rand() % 3000;
        fprintf(stderr, "crash: seed %u: SIGKILL after %u answered publishes + %u us\n", seed, kill_after,
                jitter_usec);

        memset(acked, 0, sizeof acked);
        memset(consumed, 0, sizeof consumed);
        pss_case_init(&S, &pubsub_sqlite_driver, NULL, 0, "crash");
        ASSERT_OK(pipe(fds));
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                close(fds[0]);
                crash_child(&S, fds[1]);
        }
        close(fds[1]);

        bool killed = false;
        while ((k = read(fds[0], &r, sizeof r)) == (ssize_t) sizeof r) {
                ASSERT_TRUE(r.key < CRASH_N);
                if (r.kind == 'P') {
                        acked[r.key] = 1;
                        n_acked++;
                } else {
                        consumed[r.key]++;
                        n_consumed++;
                }
                if (!killed && n_acked >= kill_after) {
                        /* Mid-flight: publishes, commits and acks are all under way. */
                        (void) usleep(jitter_usec);
                        ASSERT_OK(kill(pid, SIGKILL));
                        killed = true;
                }
        }
        ASSERT_EQ(k, 0); /* EOF: every record the child wrote is read */
        close(fds[0]);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(killed);
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        /* Reopen what the dead child left (WAL recovery) and collect everything. */
        PubsubBroker *b = pss_open(&S);
        PssSub *g = pss_subscribe(&S, b, "crash", "g", 256, PSS_ACK);
        PssSub *c = pss_subscribe(&S, b, "crash", "c", 256, PSS_ACK);
        for (;;) {
                size_t before = g->n_recv + c->n_recv;
                pss_run_for(&S, 300);
                if (g->n_recv + c->n_recv == before)
                        break;
        }

        unsigned lost_g = 0, lost_c = 0, dup_g = 0, redelivered_c = 0, extra = 0;
        for (unsigned i = 0; i < CRASH_N; i++) {
                unsigned ng = pss_count(g, (int) i), nc = pss_count(c, (int) i);
                if (acked[i] && ng == 0)
                        lost_g++;
                if (acked[i] && nc == 0 && !consumed[i])
                        lost_c++;
                if (ng > 1)
                        dup_g++;
                if (consumed[i] && nc > 0)
                        redelivered_c++;
                if (!acked[i] && ng > 0)
                        extra++;
        }
        fprintf(stderr,
                "crash: %u publishes answered before SIGKILL, %u consumed by the child; after reopen: "
                "group g got %zu (%u stored but unanswered), group c got %zu of which %u redeliveries "
                "(consumed, ack not yet committed); duplicates within g: %u\n",
                n_acked, n_consumed, g->n_recv, extra, c->n_recv, redelivered_c, dup_g);
        ASSERT_EQ(lost_g, 0);
        ASSERT_EQ(lost_c, 0);
        ASSERT_EQ(dup_g, 0);
        pss_case_done(&S);
}

/* ---- group commit ---- */

TEST(group_commit) {
        enum { N = 2000 };
        _cleanup_free_ PssPub *pubs = calloc(N, sizeof *pubs);
        Pss S;

        ASSERT_NOT_NULL(pubs);
        count_vfs_install();
        pss_case_init(&S, &pubsub_sqlite_driver, NULL, 0, "group_commit");
        PubsubBroker *b = pss_open(&S);
        PssSub *s = pss_subscribe(&S, b, "gc", "g", 128, PSS_ACK);
        pss_sub_ready(&S, s);
        pss_run_for(&S, 50);

        unsigned w0 = atomic_load(&count_syncs_wal), o0 = atomic_load(&count_syncs_other);
        pss_publish_keys(&S, b, "gc", 0, N, pubs);
        pss_wait_published(&S, pubs, N);
        unsigned w1 = atomic_load(&count_syncs_wal), o1 = atomic_load(&count_syncs_other);
        PSS_WAIT(&S, pss_distinct(s, 0, N) == N);
        pss_run_for(&S, 200);
        unsigned w2 = atomic_load(&count_syncs_wal), o2 = atomic_load(&count_syncs_other);
        PSS_ASSERT_EXACTLY_ONCE(&S, s, 0, N);
        fprintf(stderr,
                "group commit: %u publishes → %u WAL fsyncs (+%u other); delivering and acking them → "
                "%u WAL fsyncs (+%u other)\n",
                N, w1 - w0, o1 - o0, w2 - w1, o2 - o1);
        /* The publishes: at least one fsync happened, far fewer than one per op. Their deliveries
         * and acks store no publish: no commit of theirs waits for an fsync (a checkpoint may
         * still sync the WAL and the database once). */
        ASSERT_TRUE(w1 - w0 >= 1);
        ASSERT_TRUE(w1 - w0 + o1 - o0 <= N / 20);
        ASSERT_TRUE(w2 - w1 + o2 - o1 <= 2);
        pss_case_done(&S);
        count_vfs_remove();
}

/* ---- close() from inside our own callbacks, as the Manager may do on reload ---- */

static Pss *cb_suite;
static PubsubBroker *cb_broker;
static unsigned cb_fired[64], cb_delivered;
static int cb_error[64];

static void close_in_done(int error, const char *message, void *userdata) {
        unsigned i = (unsigned) (uintptr_t) userdata;
        cb_fired[i]++;
        cb_error[i] = error;
        if (i == 10 && cb_broker)
                pss_close(cb_suite, TAKE_PTR(cb_broker)); /* closes and frees it */
}

static void close_in_deliver(PubsubSubscription *sub, PubsubDelivery *d, const PubsubMessage *msg,
                             void *userdata) {
        cb_delivered++;
        if (cb_broker)
                pss_close(cb_suite, TAKE_PTR(cb_broker)); /* d stays unsettled: released */
}

TEST(close_from_callbacks) {
        enum { N = 40 };
        Pss S;
        PssPub p[N];

        pss_case_init(&S, &pubsub_sqlite_driver, NULL, 0, "close_from_callbacks");
        cb_suite = &S;

        /* From a publish's done(): every other done() still runs exactly once. */
        cb_broker = pss_open(&S);
        memset(cb_fired, 0, sizeof cb_fired);
        for (unsigned i = 0; i < N; i++)
                ASSERT_OK(cb_broker->driver->publish(cb_broker, "t", "m", 1, NULL, 0, close_in_done,
                                                     (void *) (uintptr_t) i));
        PSS_WAIT(&S, cb_broker == NULL);
        pss_run_for(&S, 100);
        for (unsigned i = 0; i < N; i++) {
                ASSERT_EQ(cb_fired[i], 1);
                ASSERT_TRUE(cb_error[i] == 0 || cb_error[i] == -ECANCELED);
        }

        /* From deliver(): no more deliveries; the unsettled one comes again, its attempt counted. */
        PubsubBroker *b = pss_open(&S);
        PubsubSubscription *sub = NULL;
        cb_broker = b;
        cb_delivered = 0;
        ASSERT_OK(b->driver->subscribe(b, "t2", "g", 8, close_in_deliver, NULL, &sub));
        pss_publish_keys(&S, b, "t2", 0, N, p);
        PSS_WAIT(&S, cb_broker == NULL);
        pss_run_for(&S, 200);
        ASSERT_EQ(cb_delivered, 1);
        for (unsigned i = 0; i < N; i++)
                ASSERT_EQ(p[i].n_fired, 1); /* stored before the close, or stored by it */

        b = pss_open(&S);
        PssSub *s = pss_subscribe(&S, b, "t2", "g", 64, PSS_ACK);
        PSS_WAIT(&S, pss_distinct(s, 0, N) == N);
        pss_run_for(&S, 100);
        PSS_ASSERT_EXACTLY_ONCE(&S, s, 0, N);
        unsigned second = 0;
        for (size_t i = 0; i < s->n_recv; i++)
                second += s->recv[i].attempt == 2;
        ASSERT_EQ(second, 1);
        pss_case_done(&S);
}

/* ---- a measurement, only on request (TESTFUNCS=bench) ---- */

typedef struct Bench {
        Pss *S;
        PubsubBroker *b;
        unsigned total, started, done, failed;
        char payload[1024];
} Bench;

static void bench_start_one(Bench *bn);

static void bench_published(int error, const char *message, void *userdata) {
        Bench *bn = userdata;
        bn->done++;
        if (error != 0)
                bn->failed++;
        if (bn->started < bn->total)
                bench_start_one(bn);
}

static void bench_start_one(Bench *bn) {
        int r = bn->b->driver->publish(bn->b, "bench", bn->payload, sizeof bn->payload, NULL, 0,
                                       bench_published, bn);
        if (r < 0)
                abort();
        bn->started++;
}

static uint64_t bench_recv, bench_recv_target;
static uint64_t bench_recv_done_at;

static void bench_deliver(PubsubSubscription *sub, PubsubDelivery *d, const PubsubMessage *msg,
                          void *userdata) {
        pubsub_sqlite_driver.settle(d, PUBSUB_ACK, 0);
        if (++bench_recv == bench_recv_target)
                bench_recv_done_at = pss_now();
}

TEST(bench) {
        const char *filter = getenv("TESTFUNCS");
        enum { N = 20000, WINDOW = 256 };
        static Bench bn;
        Pss S;

        if (!filter || !test_selected(filter, "bench")) {
                printf("  (bench: only with TESTFUNCS=bench)\n");
                return;
        }
        count_vfs_install();
        pss_case_init(&S, &pubsub_sqlite_driver, NULL, 0, "bench");
        PubsubBroker *b = pss_open(&S);
        /* The group exists (and is away): every publish is queued for it. */
        PssSub *g = pss_subscribe(&S, b, "bench", "g", 16, PSS_ACK);
        pss_sub_ready(&S, g);
        pss_unsubscribe(&S, g);

        bn = (Bench){ .S = &S, .b = b, .total = N };
        for (size_t i = 0; i < sizeof bn.payload; i++)
                bn.payload[i] = (char) ('a' + i % 26);
        unsigned w0 = atomic_load(&count_syncs_wal), o0 = atomic_load(&count_syncs_other);
        uint64_t t0 = pss_now();
        for (unsigned i = 0; i < WINDOW; i++)
                bench_start_one(&bn);
        PSS_WAIT_UNTIL(&S, bn.done == N, 120 * 1000);
        uint64_t t1 = pss_now();
        unsigned w1 = atomic_load(&count_syncs_wal), o1 = atomic_load(&count_syncs_other);
        ASSERT_EQ(bn.done, N);
        ASSERT_EQ(bn.failed, 0);
        printf("bench: publish %u x 1 KiB, %u in flight: %.0f/s (%.3f s), %u WAL fsyncs + %u other "
               "(%.4f fsyncs per publish)\n",
               N, WINDOW, N / ((t1 - t0) / 1e6), (t1 - t0) / 1e6, w1 - w0, o1 - o0,
               (double) (w1 - w0 + o1 - o0) / N);

        bench_recv = 0;
        bench_recv_target = N;
        PubsubSubscription *sub = NULL;
        uint64_t t2 = pss_now();
        ASSERT_OK(b->driver->subscribe(b, "bench", "g", WINDOW, bench_deliver, NULL, &sub));
        PSS_WAIT_UNTIL(&S, bench_recv >= N, 120 * 1000);
        ASSERT_EQ(bench_recv, N);
        uint64_t t3 = bench_recv_done_at;
        pss_run_for(&S, 300); /* the last acks commit */
        unsigned w2 = atomic_load(&count_syncs_wal), o2 = atomic_load(&count_syncs_other);
        printf("bench: deliver+ack %u, max_in_flight %u: %.0f/s (%.3f s), %u WAL fsyncs + %u other\n", N,
               WINDOW, N / ((t3 - t2) / 1e6), (t3 - t2) / 1e6, w2 - w1, o2 - o1);

        /* Both at once: a live subscriber acking while 256 publishes are in flight. */
        bn = (Bench){ .S = &S, .b = b, .total = N };
        bench_recv = 0;
        bench_recv_target = N;
        uint64_t t4 = pss_now();
        for (unsigned i = 0; i < WINDOW; i++)
                bench_start_one(&bn);
        PSS_WAIT_UNTIL(&S, bn.done == N && bench_recv >= N, 120 * 1000);
        uint64_t t5 = pss_now();
        unsigned w3 = atomic_load(&count_syncs_wal), o3 = atomic_load(&count_syncs_other);
        ASSERT_EQ(bench_recv, N);
        printf("bench: publish+deliver+ack %u live: %.0f msg/s end to end (%.3f s), "
               "%u WAL fsyncs + %u other\n",
               N, N / ((t5 - t4) / 1e6), (t5 - t4) / 1e6, w3 - w2, o3 - o2);
        b->driver->unsubscribe(sub);

        /* For comparison: one publish in flight, so one commit (one fsync) each. */
        enum { N1 = 2000 };
        bn = (Bench){ .S = &S, .b = b, .total = N1 };
        uint64_t t6 = pss_now();
        bench_start_one(&bn);
        PSS_WAIT_UNTIL(&S, bn.done == N1, 120 * 1000);
        uint64_t t7 = pss_now();
        unsigned w4 = atomic_load(&count_syncs_wal), o4 = atomic_load(&count_syncs_other);
        ASSERT_EQ(bn.done, N1);
        printf("bench: publish %u x 1 KiB one at a time: %.0f/s, %u WAL fsyncs + %u other\n", N1,
               N1 / ((t7 - t6) / 1e6), w4 - w3, o4 - o3);
        pss_case_done(&S);
        count_vfs_remove();
}
