/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The connection strings Dapr's PostgreSQL components take, for libpq.
 * Dapr's components connect with pgx, whose key/value form also knows
 * "database" (libpq: dbname) and its own pool_* settings, which libpq refuses
 * as "invalid connection option": the docs' example
 *   host=localhost user=postgres password=example port=5432 connect_timeout=10 database=my_dapr
 * failed (issue 14 part 6). This rewrites a key/value string for libpq:
 * database becomes dbname, the pool settings of pgx are left out (named in
 * *ret_ignored, for a warning), everything else stays as written. A URI
 * (postgres://, postgresql://) or a string that does not parse as key/value
 * is returned unchanged, so libpq reports its own error for it.
 * Pure; fuzzed by tests/fuzz/fuzz-pg-conninfo.c.
 */
#pragma once

/* *ret: the string for libpq (malloc'd). *ret_ignored: NULL or a strv of keys left out. 0 or -ENOMEM. */
int pg_conninfo_for_libpq(const char *in, char **ret, char ***ret_ignored);
