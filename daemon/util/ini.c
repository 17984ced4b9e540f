/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See ini.h. Lines are copied into a bounded buffer one at a time, so input
 * of any size and content is safe (embedded NULs are rejected).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ini.h"
#include "strv.h"

#define INI_LINE_MAX 4096

static int fail(unsigned line, unsigned *reterr_line, char **reterr_msg, const char *msg) {
        *reterr_line = line;
        *reterr_msg = strdup(msg);
        return -EINVAL;
}

int ini_parse(const char *text, size_t len, IniAssignFn fn, void *userdata, unsigned *reterr_line,
              char **reterr_msg) {
        char section[128] = "";
        unsigned lineno = 0;
        size_t pos = 0;

        *reterr_msg = NULL;
        while (pos < len) {
                char buf[INI_LINE_MAX], *l, *eq, *hash;
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t n = (nl ? (size_t) (nl - (text + pos)) : len - pos);

                lineno++;
                if (n >= sizeof buf)
                        return fail(lineno, reterr_line, reterr_msg, "line too long");
                if (memchr(text + pos, 0, n))
                        return fail(lineno, reterr_line, reterr_msg, "NUL byte in line");
                memcpy(buf, text + pos, n);
                buf[n] = 0;
                pos += n + 1;

                l = strstrip(buf);
                if (!*l || *l == '#' || *l == ';')
                        continue;

                if (*l == '[') {
                        size_t k = strlen(l);
                        if (k < 3 || l[k - 1] != ']')
                                return fail(lineno, reterr_line, reterr_msg,
                                            "malformed section header, expected '[Name]'");
                        if (k - 2 >= sizeof section)
                                return fail(lineno, reterr_line, reterr_msg, "section name too long");
                        for (size_t i = 1; i < k - 1; i++)
                                if (!isalnum((unsigned char) l[i]) && l[i] != '-' && l[i] != '_')
                                        return fail(lineno, reterr_line, reterr_msg,
                                                    "invalid character in section name");
                        memcpy(section, l + 1, k - 2);
                        section[k - 2] = 0;
                        continue;
                }

                eq = strchr(l, '=');
                if (!eq)
                        return fail(lineno, reterr_line, reterr_msg, "expected 'Key=Value'");
                if (!*section)
                        return fail(lineno, reterr_line, reterr_msg,
                                    "assignment outside of a section");
                *eq = 0;
                char *key = strstrip(l), *value = eq + 1;
                if (!*key)
                        return fail(lineno, reterr_line, reterr_msg, "empty key");
                for (char *c = key; *c; c++)
                        if (!isalnum((unsigned char) *c) && *c != '_' && *c != '-' && *c != '.')
                                return fail(lineno, reterr_line, reterr_msg, "invalid character in key");

                /* A '#' preceded by whitespace starts a trailing comment. */
                for (hash = value; (hash = strchr(hash, '#')); hash++)
                        if (hash > value && isspace((unsigned char) hash[-1])) {
                                *hash = 0;
                                break;
                        }
                value = strstrip(value);

                int r = fn(section, key, value, lineno, userdata, reterr_msg);
                if (r < 0) {
                        *reterr_line = lineno;
                        return r;
                }
        }
        return 0;
}
