/* SPDX-License-Identifier: Apache-2.0 */
/*
 * state.sqlite's query (QUERY_API): a StateQuery (query.h) turned into one
 * SELECT with every piece of input a bound parameter, planned on the loop
 * and run on the store's reader or writer thread.
 */
#pragma once

#include <sqlite3.h>
#include <stdint.h>

#include "query.h"

typedef struct SqliteBind {
        int type;          /* SQLITE_TEXT, SQLITE_INTEGER, SQLITE_FLOAT */
        char *text;
        int64_t integer;
        double real;
} SqliteBind;

typedef struct SqliteQueryPlan {
        char *sql;
        SqliteBind *binds; /* in the order of the ?s in sql; the first is the time (set when run) */
        size_t n_binds, n_allocated;
} SqliteQueryPlan;

/* Plans q on table (a validated name). 0 or -ENOMEM. */
int sqlite_query_plan(const char *table, const StateQuery *q, SqliteQueryPlan *ret);
void sqlite_query_plan_done(SqliteQueryPlan *p);
/* Runs the plan on db (its thread) at wall-clock second now; fills r (error and message on failure). */
void sqlite_query_run(sqlite3 *db, const SqliteQueryPlan *p, int64_t now, StateQueryResult *r);
