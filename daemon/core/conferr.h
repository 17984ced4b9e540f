/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ConfError: where a configuration file went wrong (file, line, field) and
 * why, so an operator can go straight to it. Filled by the loaders, logged by
 * the Manager, returned over D-Bus by RegisterApp.
 *
 * A file with several errors carries all of them (next), so one reload shows
 * every one instead of one per reload.
 */
#pragma once

#include "../util/cleanup.h"

typedef struct ConfError {
        char *file;     /* may be NULL for settings that came from D-Bus */
        unsigned line;  /* 0 when unknown */
        char *field;    /* may be NULL */
        char *message;
        struct ConfError *next; /* the file's further errors, malloc'd, in order; NULL: none */
} ConfError;

void conf_error_done(ConfError *e);
/* Replaces any previous content. Always returns -EINVAL (for "return conf_error_set(...)"). */
int conf_error_set(ConfError *e, const char *file, unsigned line, const char *field, const char *fmt,
                   ...) _printf_(5, 6);
/* Adds one more error after those already in e (or sets e when it holds none). -EINVAL, or -ENOMEM. */
int conf_error_append(ConfError *e, const char *file, unsigned line, const char *field, const char *fmt,
                      ...) _printf_(5, 6);
/* "file:line: field 'f': message" into a malloc'd string, or NULL on OOM; several errors are
 * joined by "; ". */
char *conf_error_format(const ConfError *e);
/* The same for e alone, without the errors after it. */
char *conf_error_format_one(const ConfError *e);
