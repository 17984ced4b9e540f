/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See state-query.h. The body is decoded as daprd decodes it: the top level
 * into a Go map (member names exact: "filter", "sort", "page"), each sort
 * entry and the page into Go structs (member names matched without regard to
 * case, as encoding/json does; unknown members ignored).
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../util/strv.h"
#include "state-query.h"
#include "state.h"

typedef struct Parser {
        char *error;
        unsigned nodes;
} Parser;

_printf_(2, 3) static int fail(Parser *p, const char *fmt, ...) {
        va_list ap;
        if (p->error)
                return -EINVAL;
        va_start(ap, fmt);
        if (vasprintf(&p->error, fmt, ap) < 0)
                p->error = NULL;
        va_end(ap);
        return p->error ? -EINVAL : -ENOMEM;
}

static void value_done(StateQueryValue *v) {
        free(v->string);
        free(v->json);
}

static void filter_done(StateQueryFilter *f) {
        strv_free(f->path);
        for (size_t i = 0; i < f->n_values; i++)
                value_done(&f->values[i]);
        free(f->values);
        for (size_t i = 0; i < f->n_children; i++)
                filter_done(&f->children[i]);
        free(f->children);
}

StateQuery *state_query_free(StateQuery *q) {
        if (!q)
                return NULL;
        if (q->filter)
                filter_done(q->filter);
        free(q->filter);
        for (size_t i = 0; i < q->n_sort; i++)
                strv_free(q->sort[i].path);
        free(q->sort);
        free(q->key_prefix);
        free(q);
        return NULL;
}

/* "a.b.c" → {"a","b","c"}; every member non-empty, without '"' (the SQLite path quotes them). */
static int parse_path(Parser *p, const char *what, const char *s, char ***ret) {
        char **l = NULL;
        const char *start = s;

        if (!*s)
                return fail(p, "%s: the field name is empty", what);
        for (const char *c = s;; c++) {
                if (*c != '.' && *c)
                        continue;
                if (c == start) {
                        strv_free(l);
                        return fail(p, "%s: field '%s' has an empty member", what, s);
                }
                _cleanup_free_ char *m = strndup(start, (size_t) (c - start));
                if (!m || strv_extend(&l, m) < 0) {
                        strv_free(l);
                        return -ENOMEM;
                }
                if (strpbrk(m, "\"\\")) {
                        strv_free(l);
                        return fail(p, "%s: field '%s' may not contain '\"' or '\\'", what, s);
                }
                if (!*c)
                        break;
                start = c + 1;
        }
        *ret = l;
        return 0;
}

static int parse_value(Parser *p, const char *what, json_t *j, StateQueryValue *v) {
        *v = (StateQueryValue){};
        if (json_is_string(j)) {
                if (strlen(json_string_value(j)) != json_string_length(j))
                        return fail(p, "%s: strings may not contain NUL", what);
                v->type = STATE_QUERY_STRING;
                v->string = strdup(json_string_value(j));
                if (!v->string)
                        return -ENOMEM;
        } else if (json_is_integer(j)) {
                v->type = STATE_QUERY_INTEGER;
                v->integer = json_integer_value(j);
        } else if (json_is_real(j)) {
                v->type = STATE_QUERY_REAL;
                v->real = json_real_value(j);
        } else if (json_is_boolean(j)) {
                v->type = STATE_QUERY_BOOL;
                v->integer = json_is_true(j);
        } else if (json_is_null(j))
                v->type = STATE_QUERY_NULL;
        else
                return fail(p, "%s: only a string, number, boolean or null can be compared", what);
        v->json = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!v->json) {
                free(v->string);
                return -ENOMEM;
        }
        return 0;
}

static int count_node(Parser *p) {
        if (++p->nodes > STATE_QUERY_NODES_MAX)
                return fail(p, "the filter has more than %u parts", STATE_QUERY_NODES_MAX);
        return 0;
}

static int parse_filter(Parser *p, json_t *j, unsigned depth, StateQueryFilter *f);

/* EQ and IN: {"path": value} and {"path": [values]}. */
static int parse_compare(Parser *p, const char *op, json_t *j, StateQueryFilter *f) {
        const char *key;
        json_t *v;
        int r;

        if (!json_is_object(j))
                return fail(p, "%s filter must be a map", op);
        if (json_object_size(j) != 1)
                return fail(p, "%s filter must contain a single key/value pair", op);
        json_object_foreach(j, key, v) {
                r = parse_path(p, op, key, &f->path);
                if (r < 0)
                        return r;
                if (f->op == STATE_QUERY_EQ) {
                        f->values = calloc(1, sizeof *f->values);
                        if (!f->values)
                                return -ENOMEM;
                        f->n_values = 1;
                        return parse_value(p, op, v, &f->values[0]);
                }
                if (!json_is_array(v))
                        return fail(p, "IN filter value must be an array");
                if (json_array_size(v) == 0)
                        return fail(p, "empty IN operator for key '%s'", key);
                f->values = calloc(json_array_size(v), sizeof *f->values);
                if (!f->values)
                        return -ENOMEM;
                for (size_t i = 0; i < json_array_size(v); i++) {
                        r = count_node(p);
                        if (r >= 0)
                                r = parse_value(p, op, json_array_get(v, i), &f->values[i]);
                        if (r < 0)
                                return r;
                        f->n_values++;
                }
        }
        return 0;
}

static int parse_filter(Parser *p, json_t *j, unsigned depth, StateQueryFilter *f) {
        const char *op;
        json_t *v;
        int r;

        *f = (StateQueryFilter){};
        if (depth > STATE_QUERY_DEPTH_MAX)
                return fail(p, "filters nest deeper than %u", STATE_QUERY_DEPTH_MAX);
        r = count_node(p);
        if (r < 0)
                return r;
        if (!json_is_object(j))
                return fail(p, "filter unit must be a map");
        if (json_object_size(j) != 1)
                return fail(p, "filter unit must have a single element");
        json_object_foreach(j, op, v) {
                if (streq(op, "EQ") || streq(op, "IN")) {
                        f->op = streq(op, "EQ") ? STATE_QUERY_EQ : STATE_QUERY_IN;
                        return parse_compare(p, op, v, f);
                }
                if (!streq(op, "AND") && !streq(op, "OR"))
                        return fail(p, "unsupported filter '%s'", op);
                f->op = streq(op, "AND") ? STATE_QUERY_AND : STATE_QUERY_OR;
                if (!json_is_array(v))
                        return fail(p, "%s filter must be an array", op);
                if (json_array_size(v) < 2)
                        return fail(p, "%s filter must contain at least two entries", op);
                f->children = calloc(json_array_size(v), sizeof *f->children);
                if (!f->children)
                        return -ENOMEM;
                for (size_t i = 0; i < json_array_size(v); i++) {
                        r = parse_filter(p, json_array_get(v, i), depth + 1, &f->children[i]);
                        f->n_children++; /* counted also when it failed: freed with the rest */
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* A member of a Go struct: encoding/json matches names without regard to case; the exact one wins. */
static json_t *struct_member(json_t *o, const char *name) {
        const char *k;
        json_t *v, *found = json_object_get(o, name);

        if (found)
                return found;
        json_object_foreach(o, k, v)
                if (strcasecmp(k, name) == 0)
                        return v;
        return NULL;
}

static int parse_sort(Parser *p, json_t *j, StateQuery *q) {
        if (!json_is_array(j))
                return fail(p, "\"sort\" must be an array");
        if (json_array_size(j) > STATE_QUERY_DEPTH_MAX)
                return fail(p, "at most %u sort keys", STATE_QUERY_DEPTH_MAX);
        q->sort = calloc(json_array_size(j) ?: 1, sizeof *q->sort);
        if (!q->sort)
                return -ENOMEM;
        for (size_t i = 0; i < json_array_size(j); i++) {
                json_t *e = json_array_get(j, i), *key, *order;
                StateQuerySort *s = &q->sort[i];
                int r;

                if (!json_is_object(e))
                        return fail(p, "sort entry %zu must be an object", i);
                key = struct_member(e, "key");
                order = struct_member(e, "order");
                if ((key && !json_is_string(key) && !json_is_null(key)) ||
                    (order && !json_is_string(order) && !json_is_null(order)))
                        return fail(p, "sort entry %zu: \"key\" and \"order\" must be strings", i);
                r = parse_path(p, "sort", json_is_string(key) ? json_string_value(key) : "", &s->path);
                if (r < 0)
                        return r;
                q->n_sort++;
                const char *o = json_is_string(order) ? json_string_value(order) : "";
                if (strcasecmp(o, "DESC") == 0)
                        s->descending = true;
                else if (*o && strcasecmp(o, "ASC") != 0)
                        return fail(p, "sort entry %zu: order must be \"ASC\" or \"DESC\", not '%s'", i, o);
        }
        return 0;
}

static int parse_page(Parser *p, json_t *j, StateQuery *q) {
        json_t *limit, *token;

        if (!json_is_object(j))
                return fail(p, "\"page\" must be a map");
        limit = struct_member(j, "limit");
        token = struct_member(j, "token");
        if (limit && !json_is_null(limit)) {
                if (!json_is_integer(limit))
                        return fail(p, "page: \"limit\" must be an integer");
                /* daprd applies a limit above 0 only */
                q->limit = json_integer_value(limit) > 0 ? (uint64_t) json_integer_value(limit) : 0;
        }
        if (token && !json_is_null(token)) {
                const char *t;
                char *end;
                if (!json_is_string(token))
                        return fail(p, "page: \"token\" must be a string");
                t = json_string_value(token);
                if (*t) {
                        errno = 0;
                        unsigned long long n = strtoull(t, &end, 10);
                        if (errno || *end || *t == '-' || *t == '+' || n > INT64_MAX)
                                return fail(p, "page: invalid token '%s'", t);
                        q->offset = n;
                }
        }
        return 0;
}

int state_query_parse(const void *body, size_t len, StateQuery **ret, char **reterr) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        Parser p = {};
        json_error_t e;
        StateQuery *q;
        json_t *v;
        int r = 0;

        *reterr = NULL;
        j = json_loadb(body, len, 0, &e);
        if (!j) {
                if (asprintf(reterr, "%s (at byte %d)", e.text, e.position) < 0)
                        *reterr = NULL;
                return *reterr ? -EINVAL : -ENOMEM;
        }
        if (!json_is_object(j))
                return fail(&p, "the query must be a JSON object"), *reterr = p.error, p.error ? -EINVAL : -ENOMEM;
        q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        v = json_object_get(j, "filter");
        if (v) {
                q->filter = calloc(1, sizeof *q->filter);
                r = q->filter ? parse_filter(&p, v, 0, q->filter) : -ENOMEM;
        }
        if (r >= 0 && (v = json_object_get(j, "sort")) && !json_is_null(v))
                r = parse_sort(&p, v, q);
        if (r >= 0 && (v = json_object_get(j, "page")) && !json_is_null(v))
                r = parse_page(&p, v, q);
        if (r < 0) {
                state_query_free(q);
                *reterr = p.error;
                return r;
        }
        *ret = q;
        return 0;
}

/* ---- running ---- */

struct StateQueryCall {
        StateQueryDoneFn done;
        void *userdata;
        bool cancelled;
};

static void on_done(const StateQueryResult *result, void *userdata) {
        StateQueryCall *c = userdata;
        if (!c->cancelled)
                c->done(result, c->userdata);
        free(c);
}

int state_query(StateStore *s, const char *app_id, StateQuery *q, StateQueryDoneFn done, void *userdata,
                StateQueryCall **ret_call) {
        _cleanup_free_ char *scoped = NULL;
        StateQueryCall *c;
        int r;

        if (!(s->driver->features & STATE_FEATURE_QUERY) || !s->driver->query)
                return -EOPNOTSUPP;
        /* The caller's keys: what state_scope_key() puts before a key ("app||"), or all for keyPrefix none. */
        r = state_scope_key(s, app_id, "x", &scoped);
        if (r < 0)
                return r;
        free(q->key_prefix);
        q->key_prefix = strlen(scoped) > 1 ? strndup(scoped, strlen(scoped) - 1) : NULL;
        if (strlen(scoped) > 1 && !q->key_prefix)
                return -ENOMEM;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        *c = (StateQueryCall){ .done = done, .userdata = userdata };
        r = s->driver->query(s, q, on_done, c);
        if (r < 0) {
                free(c);
                return r;
        }
        if (ret_call)
                *ret_call = c;
        return 0;
}

void state_query_cancel(StateQueryCall *c) {
        if (c)
                c->cancelled = true;
}
