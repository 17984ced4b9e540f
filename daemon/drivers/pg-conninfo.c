/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/cleanup.h"
#include "../util/strv.h"
#include "pg-conninfo.h"

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* pgx's own settings (pgxpool.ParseConfig); libpq knows none of them. */
static bool is_pgx_only(const char *key) {
        static const char *const keys[] = {
                "pool_max_conns", "pool_min_conns", "pool_min_idle_conns", "pool_max_conn_lifetime",
                "pool_max_conn_lifetime_jitter", "pool_max_conn_idle_time", "pool_health_check_period",
                "statement_cache_capacity", "description_cache_capacity", "default_query_exec_mode",
        };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (streq(key, keys[i]))
                        return true;
        return false;
}

/* Appends key='value' (libpq quoting: \ and ' escaped). */
static void put_pair(FILE *f, bool *first, const char *key, const char *value) {
        fprintf(f, "%s%s='", *first ? "" : " ", key);
        for (const char *p = value; *p; p++) {
                if (*p == '\\' || *p == '\'')
                        fputc('\\', f);
                fputc(*p, f);
        }
        fputc('\'', f);
        *first = false;
}

/* libpq's conninfo_parse() rules: key, optional blanks, '=', optional blanks, then a value
 * in single quotes or up to the next blank, with backslash escapes. -EINVAL: not key/value. */
static int rewrite(const char *in, FILE *f, char ***ignored) {
        bool first = true;
        const char *p = in;
        size_t cap = strlen(in) + 1;
        _cleanup_free_ char *key = malloc(cap), *value = malloc(cap);

        if (!key || !value)
                return -ENOMEM;
        for (;;) {
                size_t k = 0, v = 0;
                while (is_space(*p))
                        p++;
                if (!*p)
                        return 0;
                while (*p && *p != '=' && !is_space(*p))
                        key[k++] = *p++;
                key[k] = 0;
                while (is_space(*p))
                        p++;
                if (*p != '=' || k == 0)
                        return -EINVAL;
                p++;
                while (is_space(*p))
                        p++;
                if (*p == '\'') {
                        p++;
                        for (;;) {
                                if (!*p)
                                        return -EINVAL; /* unterminated quote */
                                if (*p == '\'') {
                                        p++;
                                        break;
                                }
                                if (*p == '\\' && p[1])
                                        p++;
                                value[v++] = *p++;
                        }
                } else
                        while (*p && !is_space(*p)) {
                                if (*p == '\\' && p[1])
                                        p++;
                                value[v++] = *p++;
                        }
                value[v] = 0;
                if (is_pgx_only(key)) {
                        if (!strv_contains(*ignored, key) && strv_extend(ignored, key) < 0)
                                return -ENOMEM;
                        continue;
                }
                put_pair(f, &first, streq(key, "database") ? "dbname" : key, value);
        }
}

int pg_conninfo_for_libpq(const char *in, char **ret, char ***ret_ignored) {
        _cleanup_strv_free_ char **ignored = NULL;
        char *buf = NULL;
        size_t len = 0;
        int r;

        *ret = NULL;
        *ret_ignored = NULL;
        if (strneq(in, "postgres://", 11) || strneq(in, "postgresql://", 13)) {
                *ret = strdup(in);
                return *ret ? 0 : -ENOMEM;
        }
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        r = rewrite(in, f, &ignored);
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r == -EINVAL) {
                free(buf);
                *ret = strdup(in);
                return *ret ? 0 : -ENOMEM;
        }
        if (r < 0) {
                free(buf);
                return r;
        }
        *ret = buf;
        *ret_ignored = TAKE_PTR(ignored);
        return 0;
}
