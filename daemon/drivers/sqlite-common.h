/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the SQLite-backed drivers (state.sqlite, pubsub.sqlite, the MQTT spool)
 * share: where a connectionString points, opening a database durably (WAL,
 * synchronous=FULL, a busy timeout), and SQLite result codes as errnos.
 */
#pragma once

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "../util/cleanup.h"

/* SQLite result code → negative errno (0 for SQLITE_OK). */
int sqlite_errno(int rc);

/* Formats into *reterr (replacing what was there; NULL: dropped) and returns r. */
int sqlite_fail(char **reterr, int r, const char *fmt, ...) _printf_(3, 4);

/*
 * connectionString → what sqlite3_open_v2() gets: NULL → dflt; an absolute path
 * or ":memory:" as given; a relative path anchored in state_dir; "file:" URIs
 * as given, unless relative (then anchored too). *ret_uri says whether it is a
 * URI. Errors name the field "connectionString".
 */
int sqlite_resolve_path(const char *state_dir, const char *cs, const char *dflt, char **ret, bool *ret_uri,
                        char **reterr);

/*
 * Opens path read-write (created if missing), sets the busy timeout, WAL (or the
 * rollback journal when wal is false), synchronous=FULL and extra_pragmas (may be
 * NULL). On failure *ret may hold a handle to close and *reterr says why.
 */
int sqlite_open_durable(const char *path, bool uri, bool wal, uint64_t busy_timeout_usec, const char *extra_pragmas,
                        sqlite3 **ret, char **reterr);
