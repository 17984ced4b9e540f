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
