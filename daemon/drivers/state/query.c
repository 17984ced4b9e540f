/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers the query-capable state drivers share (query.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/cleanup.h"
#include "query.h"

void state_query_result_done(StateQueryResult *r) {
        for (size_t i = 0; i < r->n_items; i++) {
                free(r->items[i].key);
                free(r->items[i].value);
                free(r->items[i].etag);
        }
        free(r->items);
        free(r->message);
        *r = (StateQueryResult){};
}

int state_query_result_add(StateQueryResult *r, const char *key, const void *value, size_t value_len,
                           const char *etag) {
        StateQueryItem *n, *it;

        if ((r->n_items & (r->n_items - 1)) == 0) { /* grow at powers of two */
                n = realloc(r->items, (r->n_items ? 2 * r->n_items : 1) * sizeof *n);
                if (!n)
                        return -ENOMEM;
                r->items = n;
        }
        it = &r->items[r->n_items];
        *it = (StateQueryItem){ .key = strdup(key), .value = malloc(value_len + 1), .value_len = value_len,
                                .etag = etag ? strdup(etag) : NULL };
        if (!it->key || !it->value || (etag && !it->etag)) {
                free(it->key);
                free(it->value);
                free(it->etag);
                return -ENOMEM;
        }
        if (value_len > 0)
                memcpy(it->value, value, value_len);
        ((char *) it->value)[value_len] = 0;
        r->n_items++;
        return 0;
}

char *state_query_sqlite_path(char *const *path) {
        size_t n = 2;
        char *out, *o;

        for (char *const *p = path; *p; p++)
                n += strlen(*p) + 3;
        out = o = malloc(n);
        if (!out)
                return NULL;
        *o++ = '$';
        for (char *const *p = path; *p; p++) {
                *o++ = '.';
                *o++ = '"';
                o = stpcpy(o, *p);
                *o++ = '"';
        }
        *o = 0;
        return out;
}

int state_query_fail(StateQueryResult *r, int error, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;
        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        free(r->message);
        r->message = m;
        r->error = error;
        return error;
}
