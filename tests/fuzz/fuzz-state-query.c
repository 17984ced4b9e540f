/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the state query body parser (blocks/state-query.c) and, for every
 * query it accepts, state.sqlite's planner (drivers/state/sqlite-query.c):
 * the planned SELECT must prepare and run on a real (in-memory) SQLite table
 * without error, whatever the field names and values were.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/state-query.h"
#include "drivers/state/sqlite-query.h"
#include "fuzz.h"

static sqlite3 *db;

static void setup(void) {
        if (db)
                return;
        if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
            sqlite3_exec(db,
                         "CREATE TABLE \"state\" (key TEXT PRIMARY KEY, value BLOB NOT NULL, etag TEXT NOT NULL, "
                         "expire_at INTEGER, update_time INTEGER);"
                         "INSERT INTO \"state\" VALUES ('a||1', CAST('{\"x\":1,\"y\":{\"z\":\"s\"}}' AS BLOB), "
                         "'e1', NULL, 0), ('a||2', CAST('not json' AS BLOB), 'e2', NULL, 0), "
                         "('a||3', CAST('[1,2]' AS BLOB), 'e3', 1, 0);",
                         NULL, NULL, NULL) != SQLITE_OK)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        StateQuery *q = NULL;
        char *err = NULL;
        int r;

        if (size > 256 * 1024)
                return 0;
        setup();
        r = state_query_parse(data, size, &q, &err);
        if (r < 0) {
                if (r != -ENOMEM && (r != -EINVAL || !err))
                        abort(); /* a refusal always says why */
                free(err);
                return 0;
        }
        if (err)
                abort();
        for (int scoped = 0; scoped < 2; scoped++) {
                SqliteQueryPlan p = {};
                StateQueryResult res = {};
                free(q->key_prefix);
                q->key_prefix = scoped ? strdup("a||") : NULL;
                if (sqlite_query_plan("state", q, &p) < 0)
                        continue;
                sqlite_query_run(db, &p, 100, &res);
                if (res.error < 0 && res.error != -ENOMEM)
                        abort();
                if (q->limit && res.n_items > q->limit)
                        abort();
                state_query_result_done(&res);
                sqlite_query_plan_done(&p);
        }
        state_query_free(q);
        return 0;
}
