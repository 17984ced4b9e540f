/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A strict reader for systemd-style INI text: "[Section]" headers,
 * "Key=Value" lines, "#" and ";" comment lines, and trailing comments that
 * start with whitespace followed by "#". Values are whitespace-trimmed.
 *
 * It only tokenizes; the caller decides what keys mean. Errors carry the
 * 1-based line number.
 */
#pragma once

#include <stddef.h>

/*
 * Called for every assignment. Return < 0 to stop parsing; the callback may
 * then set *reterr_msg (malloc'd) to say why.
 */
typedef int (*IniAssignFn)(const char *section, const char *key, const char *value, unsigned line,
                           void *userdata, char **reterr_msg);

/*
 * Parses text (len bytes, need not be NUL-terminated). On error returns < 0
 * and sets *reterr_line and *reterr_msg (malloc'd, may be NULL on OOM).
 */
int ini_parse(const char *text, size_t len, IniAssignFn fn, void *userdata, unsigned *reterr_line,
              char **reterr_msg);

/*
 * Called for each error of ini_parse_all(): line, the key whose assignment failed (NULL for a
 * malformed line) and message (NULL on OOM). Return < 0 to stop parsing.
 */
typedef int (*IniErrorFn)(unsigned line, const char *key, const char *msg, void *userdata);

/*
 * Like ini_parse(), but an error does not stop the parse: each one (a malformed line, or an
 * assignment fn refused, with the message fn set) goes to error_fn and parsing goes on with the next
 * line, so a file reports all its errors at once. Returns 0 when there was none, -EINVAL when there
 * was one, -ENOMEM, or what fn or error_fn returned to stop.
 */
int ini_parse_all(const char *text, size_t len, IniAssignFn fn, IniErrorFn error_fn, void *userdata);
