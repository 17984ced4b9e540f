/* SPDX-License-Identifier: Apache-2.0 */
/* See conferr.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "conferr.h"

void conf_error_done(ConfError *e) {
        if (!e)
                return;
        free(e->file);
        free(e->field);
        free(e->message);
        *e = (ConfError){};
}

int conf_error_set(ConfError *e, const char *file, unsigned line, const char *field, const char *fmt,
                   ...) {
        va_list ap;
        char *m = NULL;

        if (!e)
                return -EINVAL;
        conf_error_done(e);
        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        e->file = file ? strdup(file) : NULL;
        e->line = line;
        e->field = field ? strdup(field) : NULL;
        e->message = m;
        return -EINVAL;
}

char *conf_error_format(const ConfError *e) {
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
