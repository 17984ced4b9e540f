/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/sqlite-ref.c - the same-run reference for bench/state.sh's
 * state.sqlite part: what SQLite itself does on the same filesystem, with the
 * same durability (journal_mode=WAL, synchronous=FULL) and the same table
 * layout and statement as the state.sqlite driver, with no daemon, no HTTP
 * and no threads in between.
 *
 *   sqlite-ref PATH N BATCH [VALUE_SIZE]
 *
 * Runs N upserts of key "k<i % 1000>" (a JSON string of VALUE_SIZE 'v's, a
 * new 32-hex etag each), committing after every BATCH of them: BATCH 1 is
 * one fsync per save (what an unbatched store can reach), BATCH C is one
 * fsync per C saves (what group commit of C concurrent clients can reach at
 * best). Prints "ops/s=X elapsed_s=X". Not part of the daemon.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void check(sqlite3 *db, int rc, const char *what) {
        if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
                fprintf(stderr, "sqlite-ref: %s: %s\n", what, sqlite3_errmsg(db));
                exit(1);
        }
}

int main(int argc, char **argv) {
        sqlite3 *db = NULL;
        sqlite3_stmt *up = NULL;
        long n, batch, vsize = 100;
        char key[32], etag[33], *value;
        double t0, t1;

        if (argc < 4 || (n = atol(argv[2])) <= 0 || (batch = atol(argv[3])) <= 0 ||
            (argc > 4 && (vsize = atol(argv[4])) < 0)) {
                fprintf(stderr, "usage: sqlite-ref PATH N BATCH [VALUE_SIZE]\n");
                return 2;
        }
        value = malloc((size_t) vsize + 3);
        if (!value)
                return 1;
        value[0] = '"';
        memset(value + 1, 'v', (size_t) vsize);
        value[vsize + 1] = '"';
        value[vsize + 2] = 0;

        check(db, sqlite3_open(argv[1], &db), "open");
        check(db, sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                                   "CREATE TABLE IF NOT EXISTS state (key TEXT NOT NULL PRIMARY KEY,"
                                   " value BLOB NOT NULL, etag TEXT NOT NULL, expire_at INTEGER,"
                                   " update_time INTEGER)",
                                   NULL, NULL, NULL),
              "setup");
        check(db, sqlite3_prepare_v2(db,
                                     "INSERT INTO state (key, value, etag, expire_at, update_time) "
                                     "VALUES (?1, ?2, ?3, NULL, ?4) ON CONFLICT (key) DO UPDATE SET "
                                     "value = excluded.value, etag = excluded.etag, "
                                     "expire_at = excluded.expire_at, update_time = excluded.update_time",
                                     -1, &up, NULL),
              "prepare");
        srandom(1);
        t0 = now_s();
        for (long i = 0; i < n; i++) {
                if (i % batch == 0)
                        check(db, sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), "begin");
                snprintf(key, sizeof key, "k%ld", i % 1000);
                for (int j = 0; j < 32; j++)
                        etag[j] = "0123456789abcdef"[random() & 15];
                etag[32] = 0;
                sqlite3_bind_text(up, 1, key, -1, SQLITE_STATIC);
                sqlite3_bind_blob(up, 2, value, vsize + 2, SQLITE_STATIC);
                sqlite3_bind_text(up, 3, etag, 32, SQLITE_STATIC);
                sqlite3_bind_int64(up, 4, (sqlite3_int64) time(NULL));
                check(db, sqlite3_step(up), "upsert");
                sqlite3_reset(up);
                if (i % batch == batch - 1 || i == n - 1)
                        check(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), "commit");
        }
        t1 = now_s();
        printf("ops/s=%.2f elapsed_s=%.3f\n", (double) n / (t1 - t0), t1 - t0);
        sqlite3_finalize(up);
        sqlite3_close(db);
        free(value);
        return 0;
}
