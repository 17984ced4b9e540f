/* SPDX-License-Identifier: Apache-2.0 */
/* See router.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../util/cleanup.h"
#include "router.h"

static bool in_buf(const RouteMatch *m, const char *p) {
        return p >= m->buf && p < m->buf + sizeof m->buf;
}

void route_match_done(RouteMatch *m) {
        for (size_t i = 0; i < m->n_params; i++)
                if (!in_buf(m, m->params[i]))
                        free(m->params[i]);
        m->route = NULL;
        m->n_params = 0;
        m->buf_used = 0;
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

/* Percent-decodes s[0..len) into out (room for len + 1); returns the decoded length, or -1 for
 * a bad escape or an escaped NUL. */
static ssize_t unescape_to(const char *s, size_t len, bool plus_is_space, char *out) {
        char *o = out;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '%') {
                        int a, b;
                        if (i + 2 >= len)
                                return -1;
                        a = hexval(s[i + 1]);
                        b = hexval(s[i + 2]);
                        if (a < 0 || b < 0 || (a == 0 && b == 0)) /* no NULs */
                                return -1;
                        *o++ = (char) (a * 16 + b);
                        i += 2;
                } else if (plus_is_space && s[i] == '+')
                        *o++ = ' ';
                else
                        *o++ = s[i];
        }
        *o = 0;
        return o - out;
}

char *http_unescape(const char *s, size_t len, bool plus_is_space) {
        char *out = malloc(len + 1);
        if (out && unescape_to(s, len, plus_is_space, out) < 0) {
                free(out);
                return NULL;
        }
        return out;
}

char *http_unescape_buf(const char *s, size_t len, bool plus_is_space, char *buf, size_t size) {
        if (len >= size)
                return http_unescape(s, len, plus_is_space);
        return unescape_to(s, len, plus_is_space, buf) < 0 ? NULL : buf;
}

/* Unescapes a captured parameter into m's buffer, or a malloc'd string when it does not fit. */
static int capture(RouteMatch *m, const char *s, size_t len) {
        char *out;
        if (m->n_params >= ROUTE_PARAMS_MAX)
                return -EINVAL;
        if (len < sizeof m->buf - m->buf_used) {
                out = m->buf + m->buf_used;
                ssize_t n = unescape_to(s, len, false, out);
                if (n < 0)
                        return -EINVAL;
                m->buf_used += (size_t) n + 1;
        } else if (!(out = http_unescape(s, len, false)))
                return -EINVAL;
        m->params[m->n_params++] = out;
        return 0;
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
                        int k = capture(m, us, (size_t) (vend - us));
                        if (k < 0)
                                return k;
                        if (rest)
                                return 1;
                        continue;
                }
                if (pl != ul || memcmp(ps, us, pl) != 0)
                        return 0;
        }
}

/*
 * The route index: routes grouped by their first two path segments, so a lookup hashes the
 * path's first two segments once and tries only the routes of its group, in table order (the
 * first match still wins). A route whose first two segments are not both literal ("{...}")
 * belongs to every group. A hash collision only costs a failed match_one(), never a wrong
 * answer. Built on a table's first lookup: the tables are constant, and the daemon (like the
 * fuzzer) looks routes up from one thread. A table that does not fit is scanned whole.
 */
#define ROUTE_INDEX_TABLES 4
#define ROUTE_INDEX_ROUTES 256
#define ROUTE_INDEX_SLOTS 128 /* power of two, more than groups */
#define ROUTE_INDEX_POOL 2048

typedef struct RouteIndex {
        const Route *table;
        size_t n;
        bool usable;
        uint32_t slot_key[ROUTE_INDEX_SLOTS]; /* 0: empty slot */
        uint16_t slot_start[ROUTE_INDEX_SLOTS], slot_len[ROUTE_INDEX_SLOTS];
        uint16_t other_start, other_len; /* for a path of no group: the parameter routes only */
        uint16_t pool[ROUTE_INDEX_POOL];
} RouteIndex;

static RouteIndex route_index[ROUTE_INDEX_TABLES];

/* FNV-1a over the first two segments (as next_segment() splits them); never 0. *literal is
 * cleared when either of them starts a parameter. */
static uint32_t two_segments_key(const char *p, bool *literal) {
        uint32_t h = 2166136261u;
        for (unsigned i = 0; i < 2; i++) {
                const char *s;
                size_t l = next_segment(&p, &s);
                if (l > 0 && s[0] == '{')
                        *literal = false;
                for (size_t j = 0; j < l; j++)
                        h = (h ^ (unsigned char) s[j]) * 16777619u;
                h = (h ^ '/') * 16777619u;
        }
        return h ?: 1;
}

static size_t slot_of(const RouteIndex *x, uint32_t key) {
        size_t i = key & (ROUTE_INDEX_SLOTS - 1);
        while (x->slot_key[i] && x->slot_key[i] != key)
                i = (i + 1) & (ROUTE_INDEX_SLOTS - 1);
        return i;
}

/* Appends to the pool the routes whose key is key or 0 (parameter routes), in table order. */
static bool add_group(RouteIndex *x, const uint32_t *keys, uint32_t key, size_t *used, uint16_t *start,
                      uint16_t *len) {
        *start = (uint16_t) *used;
        for (size_t k = 0; k < x->n; k++)
                if (keys[k] == 0 || keys[k] == key) {
                        if (*used >= ROUTE_INDEX_POOL)
                                return false;
                        x->pool[(*used)++] = (uint16_t) k;
                }
        *len = (uint16_t) (*used - *start);
        return true;
}

static void index_build(RouteIndex *x, const Route *table, size_t n) {
        uint32_t keys[ROUTE_INDEX_ROUTES] = {};
        size_t used = 0, groups = 0;

        x->table = table;
        x->n = n;
        if (n > ROUTE_INDEX_ROUTES)
                return;
        for (size_t k = 0; k < n; k++) {
                bool literal = true;
                uint32_t key = two_segments_key(table[k].pattern, &literal);
                keys[k] = literal ? key : 0;
        }
        if (!add_group(x, keys, 0, &used, &x->other_start, &x->other_len))
                return;
        for (size_t k = 0; k < n; k++) {
                if (!keys[k])
                        continue;
                size_t i = slot_of(x, keys[k]);
                if (x->slot_key[i])
                        continue; /* its group is there */
                if (++groups >= ROUTE_INDEX_SLOTS / 2 ||
                    !add_group(x, keys, keys[k], &used, &x->slot_start[i], &x->slot_len[i]))
                        return;
                x->slot_key[i] = keys[k];
        }
        x->usable = true;
}

static const RouteIndex *index_of(const Route *table, size_t n) {
        for (size_t i = 0; i < ROUTE_INDEX_TABLES; i++) {
                RouteIndex *x = &route_index[i];
                if (x->table == table && x->n == n)
                        return x->usable ? x : NULL;
                if (!x->table) {
                        index_build(x, table, n);
                        return x->usable ? x : NULL;
                }
        }
        return NULL;
}

/* 1: route k matched (ret filled), 0: it did not, <0: a bad path. */
static int try_route(const Route *table, size_t k, const char *method, const char *path, RouteMatch *ret) {
        const char *tm = table[k].method;
        if (!(tm[0] == '*' && !tm[1]) && !streq(tm, method))
                return 0;
        int r = match_one(&table[k], path, ret);
        if (r <= 0) {
                route_match_done(ret);
                return r;
        }
        ret->route = &table[k];
        return 1;
}

int router_match(const Route *table, size_t n, const char *method, const char *path, RouteMatch *ret) {
        ret->route = NULL;
        ret->n_params = 0;
        ret->buf_used = 0;
        if (!path || path[0] != '/')
                return -EINVAL;
        const RouteIndex *x = index_of(table, n);
        if (!x) {
                for (size_t k = 0; k < n; k++) {
                        int r = try_route(table, k, method, path, ret);
                        if (r != 0)
                                return r;
                }
                return 0;
        }
        bool unused = true;
        uint32_t key = two_segments_key(path, &unused);
        size_t i = slot_of(x, key);
        const uint16_t *l = x->slot_key[i] ? x->pool + x->slot_start[i] : x->pool + x->other_start;
        size_t len = x->slot_key[i] ? x->slot_len[i] : x->other_len;
        for (size_t j = 0; j < len; j++) {
                int r = try_route(table, l[j], method, path, ret);
                if (r != 0)
                        return r;
        }
        return 0;
}
