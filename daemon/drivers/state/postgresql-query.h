/* SPDX-License-Identifier: Apache-2.0 */
/*
 * state.postgresql's query (QUERY_API): a StateQuery (query.h) as one SELECT
 * whose every piece of input is a bound parameter ($n, text format). Values
 * are BYTEA; mooring_state_jsonb() (created with the table) reads a value as
 * jsonb, or NULL when it is not JSON.
 */
#pragma once

#include <stddef.h>

#include "query.h"

typedef struct PgQueryPlan {
        char *sql;
        char **params;         /* n_params, each NULL (SQL NULL) or text */
        size_t n_params, n_allocated;
} PgQueryPlan;

/* The function the plan relies on, created during setup (idempotent). */
#define PG_QUERY_SETUP_SQL                                                                                      \
        "CREATE OR REPLACE FUNCTION mooring_state_jsonb(b bytea) RETURNS jsonb "                               \
        "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$ BEGIN "                                       \
        "RETURN convert_from(b, 'UTF8')::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $f$"

/* Plans q on table (a quoted, validated identifier). 0 or -ENOMEM. */
int pg_query_plan(const char *table, const StateQuery *q, PgQueryPlan *ret);
void pg_query_plan_done(PgQueryPlan *p);
