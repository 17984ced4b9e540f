/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See postgresql-query.h. The semantics are query.h's, the same as
 * state.sqlite's: typed jsonb comparisons (a number equals a number, 2 =
 * 2.0), sorting numbers before strings before missing (ASC NULLS LAST) with
 * strings in byte order (COLLATE "C"), and the key as the last tie-breaker.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/cleanup.h"
#include "postgresql-query.h"

typedef struct Builder {
        PgQueryPlan *p;
        FILE *f;
} Builder;

/* Adds a parameter (taken; NULL: SQL NULL unless oom) and returns its number, or -ENOMEM. */
static int param(PgQueryPlan *p, char *v, bool oom) {
        if (oom)
                return -ENOMEM;
        if (p->n_params == p->n_allocated) {
                size_t n = p->n_allocated ? 2 * p->n_allocated : 8;
                char **np = realloc(p->params, n * sizeof *np);
                if (!np) {
                        free(v);
                        return -ENOMEM;
                }
                p->params = np;
                p->n_allocated = n;
        }
        p->params[p->n_params++] = v;
        return (int) p->n_params;
}

static int param_str(PgQueryPlan *p, const char *s) {
        char *v = strdup(s);
        return param(p, v, !v);
}

/* A text[] literal of the path: {"a","b"} (members hold no '"' or '\\': the parser refuses them). */
static int param_path(PgQueryPlan *p, char *const *path) {
        size_t n = 3;
        char *v, *o;
        for (char *const *m = path; *m; m++)
                n += strlen(*m) + 3;
        v = o = malloc(n);
        if (!v)
                return -ENOMEM;
        *o++ = '{';
        for (char *const *m = path; *m; m++) {
                if (m != path)
                        *o++ = ',';
                *o++ = '"';
                o = stpcpy(o, *m);
                *o++ = '"';
        }
        *o++ = '}';
        *o = 0;
        return param(p, v, false);
}

static int emit_compare(Builder *b, char *const *path, const StateQueryValue *v) {
        int k = param_path(b->p, path), m;
        char num[64];

        if (k < 0)
                return k;
        switch (v->type) {
        case STATE_QUERY_STRING:
                m = param_str(b->p, v->string);
                if (m < 0)
                        return m;
                fprintf(b->f, "(j #> $%d::text[]) = to_jsonb($%d::text)", k, m);
                return 0;
        case STATE_QUERY_INTEGER:
        case STATE_QUERY_REAL:
                if (v->type == STATE_QUERY_INTEGER)
                        snprintf(num, sizeof num, "%" PRId64, v->integer);
                else
                        snprintf(num, sizeof num, "%.17g", v->real);
                m = param_str(b->p, num);
                if (m < 0)
                        return m;
                fprintf(b->f,
                        "(jsonb_typeof(j #> $%d::text[]) = 'number' AND (j #> $%d::text[])::numeric = $%d::numeric)",
                        k, k, m);
                return 0;
        case STATE_QUERY_BOOL:
                fprintf(b->f, "(j #> $%d::text[]) = '%s'::jsonb", k, v->integer ? "true" : "false");
                return 0;
        case STATE_QUERY_NULL:
                fprintf(b->f, "coalesce(j #> $%d::text[], 'null'::jsonb) = 'null'::jsonb", k);
                return 0;
        }
        return -EINVAL;
}

static int emit_filter(Builder *b, const StateQueryFilter *f) {
        int r;

        switch (f->op) {
        case STATE_QUERY_EQ:
                fputc('(', b->f);
                r = emit_compare(b, f->path, &f->values[0]);
                fputc(')', b->f);
                return r;
        case STATE_QUERY_IN:
        case STATE_QUERY_AND:
        case STATE_QUERY_OR:
                fputc('(', b->f);
                for (size_t i = 0; i < (f->op == STATE_QUERY_IN ? f->n_values : f->n_children); i++) {
                        if (i > 0)
                                fputs(f->op == STATE_QUERY_AND ? " AND " : " OR ", b->f);
                        fputc('(', b->f);
                        r = f->op == STATE_QUERY_IN ? emit_compare(b, f->path, &f->values[i])
                                                    : emit_filter(b, &f->children[i]);
                        fputc(')', b->f);
                        if (r < 0)
                                return r;
                }
                fputc(')', b->f);
                return 0;
        }
        return -EINVAL;
}

int pg_query_plan(const char *table, const StateQuery *q, PgQueryPlan *ret) {
        PgQueryPlan p = {};
        Builder b = { .p = &p };
        char *buf = NULL, num[32];
        size_t len = 0;
        int r = 0, k;

        b.f = open_memstream(&buf, &len);
        if (!b.f)
                return -ENOMEM;
        fprintf(b.f,
                "SELECT key, value, etag FROM (SELECT key, value, etag, mooring_state_jsonb(value) AS j FROM %s "
                "WHERE (expire_at IS NULL OR expire_at > now())",
                table);
        if (q->key_prefix) {
                k = r = param_str(&p, q->key_prefix);
                if (r >= 0)
                        fprintf(b.f, " AND left(key, length($%d::text)) = $%d::text", k, k);
        }
        fputs(") AS items", b.f);
        if (r >= 0 && q->filter) {
                fputs(" WHERE ", b.f);
                r = emit_filter(&b, q->filter);
        }
        if (r >= 0)
                fputs(" ORDER BY ", b.f);
        for (size_t i = 0; r >= 0 && i < q->n_sort; i++) {
                const char *dir = q->sort[i].descending ? "DESC NULLS FIRST" : "ASC NULLS LAST";
                k = r = param_path(&p, q->sort[i].path);
                if (r >= 0)
                        fprintf(b.f,
                                "(CASE WHEN jsonb_typeof(j #> $%d::text[]) = 'number' THEN (j #> $%d::text[])::numeric "
                                "END) %s, (CASE WHEN jsonb_typeof(j #> $%d::text[]) = 'string' THEN j #>> $%d::text[] "
                                "END) COLLATE \"C\" %s, ",
                                k, k, dir, k, k, dir);
        }
        if (r >= 0) {
                fputs("key COLLATE \"C\"", b.f);
                snprintf(num, sizeof num, "%" PRIu64, q->limit);
                k = r = q->limit ? param_str(&p, num) : param(&p, NULL, false);
                if (r >= 0)
                        fprintf(b.f, " LIMIT $%d::bigint", k);
                snprintf(num, sizeof num, "%" PRIu64, q->offset);
                if (r >= 0 && (k = r = param_str(&p, num)) >= 0)
                        fprintf(b.f, " OFFSET $%d::bigint", k);
        }
        if (fclose(b.f) != 0 && r >= 0)
                r = -ENOMEM;
        p.sql = buf;
        if (r < 0) {
                pg_query_plan_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

void pg_query_plan_done(PgQueryPlan *p) {
        for (size_t i = 0; i < p->n_params; i++)
                free(p->params[i]);
        free(p->params);
        free(p->sql);
        *p = (PgQueryPlan){};
}
