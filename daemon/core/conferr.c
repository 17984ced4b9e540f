/* SPDX-License-Identifier: Apache-2.0 */
/* See conferr.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conferr.h"

void conf_error_done(ConfError *e) {
        if (!e)
                return;
        free(e->file);
        free(e->field);
        free(e->message);
        for (ConfError *n = e->next, *next; n; n = next) {
                next = n->next;
                n->next = NULL;
                conf_error_done(n);
                free(n);
        }
        *e = (ConfError){};
}

static void conf_error_fill(ConfError *e, const char *file, unsigned line, const char *field, const char *fmt,
                            va_list ap) _printf_(5, 0);

static void conf_error_fill(ConfError *e, const char *file, unsigned line, const char *field, const char *fmt,
                            va_list ap) {
        char *m = NULL;

        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        e->file = file ? strdup(file) : NULL;
        e->line = line;
        e->field = field ? strdup(field) : NULL;
        e->message = m;
}

int conf_error_set(ConfError *e, const char *file, unsigned line, const char *field, const char *fmt,
                   ...) {
        va_list ap;

        if (!e)
                return -EINVAL;
        conf_error_done(e);
        va_start(ap, fmt);
        conf_error_fill(e, file, line, field, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

int conf_error_append(ConfError *e, const char *file, unsigned line, const char *field, const char *fmt,
                      ...) {
        ConfError *t;
        va_list ap;

        if (!e)
                return -EINVAL;
        if (e->message || e->file) {
                t = calloc(1, sizeof(ConfError));
                if (!t)
                        return -ENOMEM;
                ConfError *last = e;
                while (last->next)
                        last = last->next;
                last->next = t;
        } else
                t = e;
        va_start(ap, fmt);
        conf_error_fill(t, file, line, field, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

char *conf_error_format_one(const ConfError *e) {
        char *s = NULL;
        char loc[64] = "";

        if (e->line > 0)
                snprintf(loc, sizeof loc, ":%u", e->line);
        if (asprintf(&s, "%s%s%s%s%s%s%s", e->file ?: "", loc, e->file || e->line ? ": " : "",
                     e->field ? "field '" : "", e->field ?: "", e->field ? "': " : "",
                     e->message ?: "invalid configuration") < 0)
                return NULL;
        return s;
}

char *conf_error_format(const ConfError *e) {
        char *s = conf_error_format_one(e);

        for (const ConfError *n = e->next; s && n; n = n->next) {
                char *one = conf_error_format_one(n), *joined = NULL;
                if (!one || asprintf(&joined, "%s; %s", s, one) < 0)
                        joined = NULL;
                free(one);
                free(s);
                s = joined;
        }
        return s;
}
