/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See ini.h. Lines are copied into a bounded buffer one at a time, so input
 * of any size and content is safe (embedded NULs are rejected).
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ini.h"
#include "strv.h"

#define INI_LINE_MAX 4096

typedef struct FirstError {
        unsigned *line;
        char **msg;
} FirstError;

/* ini_parse(): the first error stops the parse. */
static int stop_at_first(unsigned line, const char *key, const char *msg, void *userdata) {
        FirstError *f = userdata;
        *f->line = line;
        *f->msg = msg ? strdup(msg) : NULL;
        return -EINVAL;
}

/* One error: error_fn decides whether to go on (0) or stop (< 0). */
#define fail(lineno, msg)                                                          \
        do {                                                                       \
                int _k = error_fn(lineno, NULL, msg, error_userdata);                   \
                if (_k < 0)                                                        \
                        return _k;                                                 \
                n_errors++;                                                        \
                goto next;                                                         \
        } while (0)

static int parse(const char *text, size_t len, IniAssignFn fn, void *userdata, IniErrorFn error_fn,
                 void *error_userdata) {
        char section[128] = "";
        unsigned lineno = 0, n_errors = 0;
        bool bad_section = false; /* after a malformed header: its lines are not reported again */
        size_t pos = 0;

        while (pos < len) {
                char buf[INI_LINE_MAX], *l, *eq, *hash;
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t n = (nl ? (size_t) (nl - (text + pos)) : len - pos);

                lineno++;
                if (n >= sizeof buf || memchr(text + pos, 0, n)) {
                        pos += n + 1;
                        fail(lineno, n >= sizeof buf ? "line too long" : "NUL byte in line");
                }
                memcpy(buf, text + pos, n);
                buf[n] = 0;
                pos += n + 1;

                l = strstrip(buf);
                if (!*l || *l == '#' || *l == ';')
                        continue;

                if (*l == '[') {
                        size_t k = strlen(l);
                        bad_section = true;
                        if (k < 3 || l[k - 1] != ']')
                                fail(lineno, "malformed section header, expected '[Name]'");
                        if (k - 2 >= sizeof section)
                                fail(lineno, "section name too long");
                        for (size_t i = 1; i < k - 1; i++)
                                if (!isalnum((unsigned char) l[i]) && l[i] != '-' && l[i] != '_')
                                        fail(lineno, "invalid character in section name");
                        memcpy(section, l + 1, k - 2);
                        section[k - 2] = 0;
                        bad_section = false;
                        continue;
                }

                if (bad_section)
                        continue;
                eq = strchr(l, '=');
                if (!eq)
                        fail(lineno, "expected 'Key=Value'");
                if (!*section)
                        fail(lineno, "assignment outside of a section");
                *eq = 0;
                char *key = strstrip(l), *value = eq + 1;
                if (!*key)
                        fail(lineno, "empty key");
                for (char *c = key; *c; c++)
                        if (!isalnum((unsigned char) *c) && *c != '_' && *c != '-' && *c != '.')
                                fail(lineno, "invalid character in key");

                /* A '#' preceded by whitespace starts a trailing comment. */
                for (hash = value; (hash = strchr(hash, '#')); hash++)
                        if (hash > value && isspace((unsigned char) hash[-1])) {
                                *hash = 0;
                                break;
                        }
                value = strstrip(value);

                char *msg = NULL;
                int r = fn(section, key, value, lineno, userdata, &msg);
                if (r == -ENOMEM) {
                        free(msg);
                        return r;
                }
                if (r < 0) {
                        int k = error_fn(lineno, key, msg, error_userdata);
                        free(msg);
                        if (k < 0)
                                return k;
                        n_errors++;
                }
        next:;
        }
        return n_errors > 0 ? -EINVAL : 0;
}

int ini_parse(const char *text, size_t len, IniAssignFn fn, void *userdata, unsigned *reterr_line,
              char **reterr_msg) {
        FirstError f = { reterr_line, reterr_msg };
        int r;

        *reterr_msg = NULL;
        r = parse(text, len, fn, userdata, stop_at_first, &f);
        /* a callback's own error code (OOM) goes up as it was */
        return r;
}

int ini_parse_all(const char *text, size_t len, IniAssignFn fn, IniErrorFn error_fn, void *userdata) {
        return parse(text, len, fn, userdata, error_fn, userdata);
}
