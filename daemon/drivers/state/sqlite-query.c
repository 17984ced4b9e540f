/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See sqlite-query.h. The value column holds bytes; a value that is valid
 * JSON text is queried through SQLite's JSON functions, any other value has
 * no fields (so it matches no EQ and sorts as missing). Types are compared as
 * query.h says: json_type() tells a JSON string from an object's text, true
 * from 1.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/cleanup.h"
#include "../sqlite-common.h"
#include "sqlite-query.h"

/* The item's value as JSON text, or NULL when it is not JSON. */
#define V "(CASE WHEN json_valid(CAST(value AS TEXT)) THEN CAST(value AS TEXT) END)"

typedef struct Builder {
        SqliteQueryPlan *p;
        char *buf;
        size_t len;
        FILE *f;
} Builder;

static int bind_push(SqliteQueryPlan *p, SqliteBind b) {
        if (p->n_binds == p->n_allocated) {
                size_t n = p->n_allocated ? 2 * p->n_allocated : 8;
                SqliteBind *nb = realloc(p->binds, n * sizeof *nb);
                if (!nb) {
                        free(b.text);
                        return -ENOMEM;
                }
                p->binds = nb;
                p->n_allocated = n;
        }
        p->binds[p->n_binds++] = b;
        return 0;
}

static int bind_text(SqliteQueryPlan *p, const char *s) {
        char *t = strdup(s);
        return t ? bind_push(p, (SqliteBind){ .type = SQLITE_TEXT, .text = t }) : -ENOMEM;
}

static int bind_path(SqliteQueryPlan *p, char *const *path) {
        char *t = state_query_sqlite_path(path);
        return t ? bind_push(p, (SqliteBind){ .type = SQLITE_TEXT, .text = t }) : -ENOMEM;
}

/* One comparison of the field at path with v. */
static int emit_compare(Builder *b, char *const *path, const StateQueryValue *v) {
        int r;

        switch (v->type) {
        case STATE_QUERY_STRING:
                fputs("(json_type(" V ", ?) = 'text' AND json_extract(" V ", ?) = ?)", b->f);
                if ((r = bind_path(b->p, path)) < 0 || (r = bind_path(b->p, path)) < 0)
                        return r;
                return bind_text(b->p, v->string);
        case STATE_QUERY_INTEGER:
        case STATE_QUERY_REAL:
                fputs("(json_type(" V ", ?) IN ('integer', 'real') AND json_extract(" V ", ?) = ?)", b->f);
                if ((r = bind_path(b->p, path)) < 0 || (r = bind_path(b->p, path)) < 0)
                        return r;
                return bind_push(b->p, v->type == STATE_QUERY_INTEGER
                                               ? (SqliteBind){ .type = SQLITE_INTEGER, .integer = v->integer }
                                               : (SqliteBind){ .type = SQLITE_FLOAT, .real = v->real });
        case STATE_QUERY_BOOL:
                fprintf(b->f, "(json_type(" V ", ?) = '%s')", v->integer ? "true" : "false");
                return bind_path(b->p, path);
        case STATE_QUERY_NULL:
                fputs("(coalesce(json_type(" V ", ?), 'null') = 'null')", b->f);
                return bind_path(b->p, path);
        }
        return -EINVAL;
}

static int emit_filter(Builder *b, const StateQueryFilter *f) {
        int r;

        switch (f->op) {
        case STATE_QUERY_EQ:
                return emit_compare(b, f->path, &f->values[0]);
        case STATE_QUERY_IN:
                fputc('(', b->f);
                for (size_t i = 0; i < f->n_values; i++) {
                        if (i > 0)
                                fputs(" OR ", b->f);
                        r = emit_compare(b, f->path, &f->values[i]);
                        if (r < 0)
                                return r;
                }
                fputc(')', b->f);
                return 0;
        case STATE_QUERY_AND:
        case STATE_QUERY_OR:
                fputc('(', b->f);
                for (size_t i = 0; i < f->n_children; i++) {
                        if (i > 0)
                                fputs(f->op == STATE_QUERY_AND ? " AND " : " OR ", b->f);
                        r = emit_filter(b, &f->children[i]);
                        if (r < 0)
                                return r;
                }
                fputc(')', b->f);
                return 0;
        }
        return -EINVAL;
}

int sqlite_query_plan(const char *table, const StateQuery *q, SqliteQueryPlan *ret) {
        SqliteQueryPlan p = {};
        Builder b = { .p = &p };
        int r = 0;

        b.f = open_memstream(&b.buf, &b.len);
        if (!b.f)
                return -ENOMEM;
        fprintf(b.f, "SELECT key, value, etag FROM \"%s\" WHERE (expire_at IS NULL OR expire_at > ?)", table);
        r = bind_push(&p, (SqliteBind){ .type = SQLITE_INTEGER }); /* now, set by sqlite_query_run() */
        if (r >= 0 && q->key_prefix) {
                fputs(" AND substr(key, 1, length(?)) = ?", b.f);
                if ((r = bind_text(&p, q->key_prefix)) >= 0)
                        r = bind_text(&p, q->key_prefix);
        }
        if (r >= 0 && q->filter) {
                fputs(" AND ", b.f);
                r = emit_filter(&b, q->filter);
        }
        if (r >= 0)
                fputs(" ORDER BY ", b.f);
        /* typed sort: numbers, then strings, then nothing (ASC); Postgres' NULLS defaults */
        for (size_t i = 0; r >= 0 && i < q->n_sort; i++) {
                fprintf(b.f,
                        "(CASE WHEN json_type(" V ", ?) IN ('integer', 'real', 'text') "
                        "THEN json_extract(" V ", ?) END) %s, ",
                        q->sort[i].descending ? "DESC NULLS FIRST" : "ASC NULLS LAST");
                if ((r = bind_path(&p, q->sort[i].path)) >= 0)
                        r = bind_path(&p, q->sort[i].path);
        }
        if (r >= 0) {
                fputs("key", b.f);
                /* LIMIT -1: none */
                fputs(" LIMIT ? OFFSET ?", b.f);
                r = bind_push(&p, (SqliteBind){ .type = SQLITE_INTEGER,
                                                .integer = q->limit ? (int64_t) MIN(q->limit, (uint64_t) INT64_MAX)
                                                                    : -1 });
                if (r >= 0)
                        r = bind_push(&p, (SqliteBind){ .type = SQLITE_INTEGER, .integer = (int64_t) q->offset });
        }
        if (fclose(b.f) != 0 && r >= 0)
                r = -ENOMEM;
        p.sql = b.buf;
        if (r < 0) {
                sqlite_query_plan_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

void sqlite_query_plan_done(SqliteQueryPlan *p) {
        for (size_t i = 0; i < p->n_binds; i++)
                free(p->binds[i].text);
        free(p->binds);
        free(p->sql);
        *p = (SqliteQueryPlan){};
}

void sqlite_query_run(sqlite3 *db, const SqliteQueryPlan *p, int64_t now, StateQueryResult *r) {
        sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(db, p->sql, -1, &st, NULL);
        for (size_t i = 0; rc == SQLITE_OK && i < p->n_binds; i++) {
                const SqliteBind *b = &p->binds[i];
                int k = (int) i + 1;
                rc = i == 0                      ? sqlite3_bind_int64(st, k, now)
                     : b->type == SQLITE_TEXT    ? sqlite3_bind_text(st, k, b->text, -1, SQLITE_STATIC)
                     : b->type == SQLITE_INTEGER ? sqlite3_bind_int64(st, k, b->integer)
                                                 : sqlite3_bind_double(st, k, b->real);
        }
        while (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_DONE) {
                        rc = SQLITE_OK;
                        break;
                }
                if (rc != SQLITE_ROW)
                        break;
                const unsigned char *key = sqlite3_column_text(st, 0);
                const void *value = sqlite3_column_blob(st, 1);
                size_t len = (size_t) sqlite3_column_bytes(st, 1);
                const unsigned char *etag = sqlite3_column_text(st, 2);
                if (state_query_result_add(r, key ? (const char *) key : "", value, len,
                                           (const char *) etag) < 0) {
                        r->error = -ENOMEM;
                        break;
                }
                rc = SQLITE_OK;
        }
        if (rc != SQLITE_OK && r->error == 0) {
                r->error = sqlite_errno(rc) ?: -EIO;
                free(r->message);
                if (asprintf(&r->message, "sqlite: query: %s", sqlite3_errmsg(db)) < 0)
                        r->message = NULL;
        }
        sqlite3_finalize(st);
}
