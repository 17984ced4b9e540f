/* SPDX-License-Identifier: Apache-2.0 */
/* See router.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../util/cleanup.h"
#include "router.h"

void route_match_done(RouteMatch *m) {
        for (size_t i = 0; i < m->n_params; i++)
                free(m->params[i]);
        *m = (RouteMatch){};
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

char *http_unescape(const char *s, size_t len, bool plus_is_space) {
        char *out = malloc(len + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '%') {
                        int a, b;
                        if (i + 2 >= len) {
                                free(out);
                                return NULL;
                        }
                        a = hexval(s[i + 1]);
                        b = hexval(s[i + 2]);
                        if (a < 0 || b < 0 || (a == 0 && b == 0)) { /* no NULs */
                                free(out);
                                return NULL;
                        }
                        *o++ = (char) (a * 16 + b);
                        i += 2;
                } else if (plus_is_space && s[i] == '+')
                        *o++ = ' ';
                else
                        *o++ = s[i];
        }
        *o = 0;
        return out;
}

/* Next path segment of p (after any run of '/'), returns its length; *p moved past it. */
static size_t next_segment(const char **p, const char **ret_start) {
        const char *s = *p;
        while (*s == '/')
                s++;
        const char *e = strchrnul(s, '/');
        *ret_start = s;
        *p = e;
        return (size_t) (e - s);
}

static int match_one(const Route *r, const char *path, RouteMatch *m) {
        const char *pp = r->pattern, *up = path;

        for (;;) {
                const char *ps, *us;
                size_t pl = next_segment(&pp, &ps);
                size_t ul = next_segment(&up, &us);

                if (pl == 0)
                        return ul == 0 ? 1 : 0; /* trailing slashes already consumed */
                if (ps[0] == '{') {
                        bool rest = pl >= 3 && ps[pl - 2] == '*';
                        const char *vend = rest ? us + strlen(us) : us + ul;
                        if (ul == 0)
                                return 0;
                        if (rest) /* drop trailing slashes of the remainder */
                                while (vend > us && vend[-1] == '/')
                                        vend--;
                        if (m->n_params >= ROUTE_PARAMS_MAX)
                                return -EINVAL;
                        char *v = http_unescape(us, (size_t) (vend - us), false);
                        if (!v)
                                return -EINVAL;
                        m->params[m->n_params++] = v;
                        if (rest)
                                return 1;
                        continue;
                }
                if (pl != ul || memcmp(ps, us, pl) != 0)
                        return 0;
        }
}

int router_match(const Route *table, size_t n, const char *method, const char *path, RouteMatch *ret) {
        if (!path || path[0] != '/')
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                RouteMatch m = {};
                if (!streq(table[i].method, "*") && !streq(table[i].method, method))
                        continue;
                int r = match_one(&table[i], path, &m);
                if (r <= 0) {
                        route_match_done(&m);
                        if (r < 0)
                                return r;
                        continue;
                }
                m.route = &table[i];
                *ret = m;
                return 1;
        }
        return 0;
}
