/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See subscription.h. After Dapr release-1.14: pkg/runtime/subscription
 * (declarative loading, v1alpha1 converted to v2alpha1), pkg/runtime/pubsub
 * (GetSubscriptionsHTTP: "route" becomes the default rule, "routes.default"
 * wins over it, an entry without any rule is dropped; createRoutingRule: a
 * blank match is always true) and the reference §4.5, §4.7.
 *
 * Where mooring differs, on purpose:
 *  - Match expressions are compiled by our own parser for the CEL subset in
 *    subscription.h, not by cel-go. An expression outside the subset is an
 *    error at load time, not a silently failing route. Evaluation never
 *    fails: what CEL would raise as an error (a missing key, a type
 *    mismatch) is false here, and != with a missing side is true.
 *  - Both apiVersions accept both route forms (Dapr's decoder drops the form
 *    the version does not define, leaving a subscription without a route).
 *  - A rawPayload that is not a boolean is an error instead of false; a path
 *    with spaces or control characters is refused, as no request could carry
 *    it as sent.
 *  - Programmatic entries are judged one by one: a bad entry is skipped with
 *    a reason and the rest are kept (Go's decoder fails the whole answer on
 *    one wrongly typed field).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/json-util.h"
#include "../util/strv.h"
#include "subscription.h"
#include "yaml-walk.h"

/* ---- match expressions: model ---- */

typedef enum ExprKind {
        EXPR_LITERAL, /* literal */
        EXPR_PATH,    /* event.a.b[0] */
        EXPR_NOT,     /* !a */
        EXPR_AND,     /* a && b */
        EXPR_OR,      /* a || b */
        EXPR_CMP,     /* a <op> b */
} ExprKind;

typedef enum CmpOp {
        CMP_EQ,
        CMP_NE,
        CMP_LT,
        CMP_LE,
        CMP_GT,
        CMP_GE,
} CmpOp;

/* What a node yields, known at compile time: only conditions and paths may stand where a truth value
 * is needed. */
typedef enum ExprType {
        TYPE_BOOL,   /* comparisons, &&, ||, !, true, false */
        TYPE_DYN,    /* a path: whatever the event holds */
        TYPE_STRING, /* literals */
        TYPE_NUMBER,
        TYPE_NULL,
} ExprType;

typedef struct PathStep {
        char *key;    /* member name; NULL for an array index */
        size_t index;
} PathStep;

struct MatchExpr {
        ExprKind kind;
        ExprType type;
        CmpOp op;
        MatchExpr *a, *b;     /* operands (NOT: a only) */
        json_t *literal;      /* EXPR_LITERAL */
        PathStep *steps;      /* EXPR_PATH; none: the whole event */
        size_t n_steps;
        size_t column;        /* 1-based start, for messages */
};

MatchExpr *match_expr_free(MatchExpr *e) {
        if (!e)
                return NULL;
        match_expr_free(e->a);
        match_expr_free(e->b);
        json_decref(e->literal);
        for (size_t i = 0; i < e->n_steps; i++)
                free(e->steps[i].key);
        free(e->steps);
        free(e);
        return NULL;
}

/* ---- match expressions: evaluation (no allocation) ---- */

/* The value a node stands for: borrowed (a literal, a part of event, or the
 * true/false singletons), NULL when a path does not resolve. */
static json_t *eval_value(const MatchExpr *e, json_t *event);

static bool eval_truth(const MatchExpr *e, json_t *event) {
        /* Not inside json_is_true(): it is a macro that reads its argument twice. */
        json_t *v = eval_value(e, event);
        return json_is_true(v);
}

static bool values_equal(json_t *x, json_t *y) {
        if (!x || !y)
                return false;
        if (json_is_number(x) && json_is_number(y)) {
                if (json_is_integer(x) && json_is_integer(y))
                        return json_integer_value(x) == json_integer_value(y);
                return json_number_value(x) == json_number_value(y);
        }
        if (json_is_string(x) && json_is_string(y))
                return json_string_length(x) == json_string_length(y) &&
                       memcmp(json_string_value(x), json_string_value(y), json_string_length(x)) == 0;
        return json_equal(x, y); /* true, false, null, objects, arrays; different types differ */
}

/* Orders x against y into *ret (<0, 0, >0); false when they are not comparable. */
static bool values_order(json_t *x, json_t *y, int *ret) {
        if (!x || !y)
                return false;
        if (json_is_number(x) && json_is_number(y)) {
                if (json_is_integer(x) && json_is_integer(y)) {
                        json_int_t a = json_integer_value(x), b = json_integer_value(y);
                        *ret = (a > b) - (a < b);
                } else {
                        double a = json_number_value(x), b = json_number_value(y);
                        *ret = (a > b) - (a < b);
                }
                return true;
        }
        if (json_is_string(x) && json_is_string(y)) {
                size_t n = json_string_length(x), m = json_string_length(y);
                int c = memcmp(json_string_value(x), json_string_value(y), MIN(n, m));
                *ret = c != 0 ? c : (n > m) - (n < m);
                return true;
        }
        if (json_is_boolean(x) && json_is_boolean(y)) {
                *ret = (int) json_is_true(x) - (int) json_is_true(y);
                return true;
        }
        return false;
}

static bool eval_cmp(const MatchExpr *e, json_t *event) {
        json_t *x = eval_value(e->a, event), *y = eval_value(e->b, event);
        int c;

        switch (e->op) {
        case CMP_EQ:
                return values_equal(x, y);
        case CMP_NE:
                return !values_equal(x, y);
        default:
                if (!values_order(x, y, &c))
                        return false;
                return e->op == CMP_LT ? c < 0 : e->op == CMP_LE ? c <= 0 : e->op == CMP_GT ? c > 0 : c >= 0;
        }
}

static json_t *eval_path(const MatchExpr *e, json_t *event) {
        json_t *v = event;

        for (size_t i = 0; v && i < e->n_steps; i++)
                v = e->steps[i].key ? json_object_get(v, e->steps[i].key)
                                    : json_array_get(v, e->steps[i].index);
        return v;
}

static json_t *eval_value(const MatchExpr *e, json_t *event) {
        bool b;

        switch (e->kind) {
        case EXPR_LITERAL:
                return e->literal;
        case EXPR_PATH:
                return eval_path(e, event);
        case EXPR_NOT:
                b = !eval_truth(e->a, event);
                break;
        case EXPR_AND:
                b = eval_truth(e->a, event) && eval_truth(e->b, event);
                break;
        case EXPR_OR:
                b = eval_truth(e->a, event) || eval_truth(e->b, event);
                break;
        case EXPR_CMP:
                b = eval_cmp(e, event);
                break;
        default:
                return NULL;
        }
        return json_boolean(b); /* the static singletons: no allocation */
}

bool match_expr_eval(const MatchExpr *e, json_t *event) {
        return !e || eval_truth(e, event);
}

/* ---- match expressions: parser ---- */

typedef struct Parser {
        const char *text;
        size_t pos;
        unsigned depth;
        int r;          /* first error: -EINVAL or -ENOMEM */
        char *message;  /* for -EINVAL */
} Parser;

_printf_(3, 4) static MatchExpr *parse_fail(Parser *p, size_t pos, const char *fmt, ...) {
        _cleanup_free_ char *m = NULL;
        va_list ap;

        if (p->r < 0)
                return NULL;
        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        if (!m || asprintf(&p->message, "column %zu: %s", pos + 1, m) < 0) {
                p->message = NULL;
                p->r = -ENOMEM;
                return NULL;
        }
        p->r = -EINVAL;
        return NULL;
}

static MatchExpr *parse_oom(Parser *p) {
        if (p->r >= 0)
                p->r = -ENOMEM;
        return NULL;
}

/* A printable rendering of the character at pos, for messages. */
static const char *describe(const Parser *p, size_t pos, char buf[static 16]) {
        unsigned char c = (unsigned char) p->text[pos];
        if (c == '\0')
                return "the end";
        if (c > ' ' && c < 0x7f)
                snprintf(buf, 16, "'%c'", c);
        else
                snprintf(buf, 16, "byte 0x%02x", c);
        return buf;
}

static void skip_space(Parser *p) {
        p->pos += strspn(p->text + p->pos, " \t\r\n");
}

/* Consumes tok (after blanks) when it is next. */
static bool accept(Parser *p, const char *tok) {
        skip_space(p);
        if (!strneq(p->text + p->pos, tok, strlen(tok)))
                return false;
        p->pos += strlen(tok);
        return true;
}

static bool is_ident_start(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(char c) {
        return is_ident_start(c) || (c >= '0' && c <= '9');
}

static MatchExpr *node_new(Parser *p, ExprKind kind, ExprType type, size_t pos) {
        MatchExpr *e = calloc(1, sizeof *e);
        if (!e)
                return parse_oom(p);
        e->kind = kind;
        e->type = type;
        e->column = pos + 1;
        return e;
}

/* A quoted string at p->pos into a new string (*ret, *ret_len). Returns 0 or the parser error. */
static int lex_string(Parser *p, char **ret, size_t *ret_len) {
        char quote = p->text[p->pos];
        size_t start = p->pos, n = 0;
        _cleanup_free_ char *out = NULL;

        /* The unescaped text is never longer than the quoted one. */
        out = malloc(strlen(p->text + start) + 1);
        if (!out) {
                parse_oom(p);
                return p->r;
        }
        for (p->pos++;; p->pos++) {
                char c = p->text[p->pos];
                if (c == '\0') {
                        parse_fail(p, start, "unterminated string");
                        return p->r;
                }
                if (c == quote)
                        break;
                if (c == '\\') {
                        char d = p->text[++p->pos];
                        switch (d) {
                        case '\\':
                        case '"':
                        case '\'':
                                c = d;
                                break;
                        case 'n':
                                c = '\n';
                                break;
                        case 'r':
                                c = '\r';
                                break;
                        case 't':
                                c = '\t';
                                break;
                        default:
                                if (d == '\0')
                                        parse_fail(p, start, "unterminated string");
                                else
                                        parse_fail(p, p->pos - 1,
                                                   "unsupported escape in string (\\\\ \\\" \\' \\n \\r \\t)");
                                return p->r;
                        }
                }
                out[n++] = c;
        }
        p->pos++; /* the closing quote */
        out[n] = '\0';
        *ret_len = n;
        *ret = TAKE_PTR(out);
        return 0;
}

static MatchExpr *parse_number(Parser *p) {
        const char *s = p->text + p->pos;
        size_t start = p->pos, n = 0;
        bool integer = true;
        MatchExpr *e;
        char buf[64];

        if (s[n] == '-')
                n++;
        if (s[n] < '0' || s[n] > '9')
                return parse_fail(p, start, "expected a number");
        n += strspn(s + n, "0123456789");
        if (s[n] == '.') {
                integer = false;
                n++;
                if (s[n] < '0' || s[n] > '9')
                        return parse_fail(p, start + n, "expected digits after '.'");
                n += strspn(s + n, "0123456789");
        }
        if (s[n] == 'e' || s[n] == 'E') {
                integer = false;
                n++;
                if (s[n] == '+' || s[n] == '-')
                        n++;
                if (s[n] < '0' || s[n] > '9')
                        return parse_fail(p, start + n, "expected digits in the exponent");
                n += strspn(s + n, "0123456789");
        }
        if (is_ident_char(s[n]) || s[n] == '.') {
                char buf2[16];
                return parse_fail(p, start + n, "unexpected %s after a number", describe(p, start + n, buf2));
        }
        if (n >= sizeof buf)
                return parse_fail(p, start, "number too long");
        memcpy(buf, s, n);
        buf[n] = '\0';
        p->pos += n;

        e = node_new(p, EXPR_LITERAL, TYPE_NUMBER, start);
        if (!e)
                return NULL;
        if (integer) {
                char *end = NULL;
                errno = 0;
                long long v = strtoll(buf, &end, 10);
                if (errno == 0 && end && !*end)
                        e->literal = json_integer(v);
                else
                        integer = false; /* beyond 64 bits: compare as a double, as JSON numbers do */
        }
        if (!integer) {
                double d = strtod(buf, NULL);
                if (!isfinite(d)) {
                        match_expr_free(e);
                        return parse_fail(p, start, "number out of range");
                }
                e->literal = json_real(d);
        }
        if (!e->literal) {
                match_expr_free(e);
                return parse_oom(p);
        }
        return e;
}

static int path_add(Parser *p, MatchExpr *e, char *key, size_t index) {
        PathStep *s = reallocarray(e->steps, e->n_steps + 1, sizeof *s);
        if (!s) {
                free(key);
                parse_oom(p);
                return p->r;
        }
        e->steps = s;
        e->steps[e->n_steps++] = (PathStep){ .key = key, .index = index };
        return 0;
}

/* event ( "." ident | "[" string "]" | "[" integer "]" )* */
static MatchExpr *parse_path(Parser *p, size_t start) {
        _cleanup_(match_expr_freep) MatchExpr *e = NULL;
        char buf[16];

        e = node_new(p, EXPR_PATH, TYPE_DYN, start);
        if (!e)
                return NULL;
        for (;;) {
                skip_space(p);
                char c = p->text[p->pos];
                if (c == '.') {
                        p->pos++;
                        skip_space(p);
                        size_t s = p->pos, n = 0;
                        if (!is_ident_start(p->text[s]))
                                return parse_fail(p, s, "expected a field name after '.', found %s",
                                                  describe(p, s, buf));
                        while (is_ident_char(p->text[s + n]))
                                n++;
                        char *key = strndup(p->text + s, n);
                        if (!key)
                                return parse_oom(p);
                        p->pos += n;
                        if (path_add(p, e, key, 0) < 0)
                                return NULL;
                } else if (c == '[') {
                        size_t s = ++p->pos;
                        skip_space(p);
                        c = p->text[p->pos];
                        if (c == '"' || c == '\'') {
                                char *key = NULL;
                                size_t n = 0;
                                if (lex_string(p, &key, &n) < 0)
                                        return NULL;
                                if (strlen(key) != n) { /* cannot happen: no escape yields a NUL */
                                        free(key);
                                        return parse_fail(p, s, "field name holds a NUL");
                                }
                                if (path_add(p, e, key, 0) < 0)
                                        return NULL;
                        } else if (c >= '0' && c <= '9') {
                                size_t n = strspn(p->text + p->pos, "0123456789");
                                char *end = NULL;
                                errno = 0;
                                unsigned long long v = strtoull(p->text + p->pos, &end, 10);
                                if (errno != 0 || end != p->text + p->pos + n || v > SIZE_MAX)
                                        return parse_fail(p, p->pos, "index out of range");
                                p->pos += n;
                                if (path_add(p, e, NULL, (size_t) v) < 0)
                                        return NULL;
                        } else
                                return parse_fail(p, p->pos,
                                                  "expected a quoted field name or an index after '['");
                        if (!accept(p, "]"))
                                return parse_fail(p, p->pos, "expected ']', found %s",
                                                  describe(p, p->pos, buf));
                } else if (c == '(')
                        return parse_fail(p, p->pos, "function calls are not supported");
                else
                        return TAKE_PTR(e);
        }
}

static MatchExpr *parse_or(Parser *p);

/* "(" expr ")" | literal | path */
static MatchExpr *parse_primary(Parser *p) {
        char buf[16];
        size_t start;
        char c;

        skip_space(p);
        start = p->pos;
        c = p->text[start];

        if (c == '(') {
                MatchExpr *e;
                p->pos++;
                if (++p->depth > MATCH_EXPR_DEPTH_MAX)
                        return parse_fail(p, start, "nested too deeply (at most %u levels)",
                                          MATCH_EXPR_DEPTH_MAX);
                e = parse_or(p);
                p->depth--;
                if (!e)
                        return NULL;
                if (!accept(p, ")")) {
                        match_expr_free(e);
                        return parse_fail(p, p->pos, "expected ')' to match the '(' at column %zu, found %s",
                                          start + 1, describe(p, p->pos, buf));
                }
                return e;
        }
        if (c == '"' || c == '\'') {
                char *s = NULL;
                size_t n = 0;
                MatchExpr *e;
                if (lex_string(p, &s, &n) < 0)
                        return NULL;
                e = node_new(p, EXPR_LITERAL, TYPE_STRING, start);
                if (e)
                        e->literal = json_stringn_nocheck(s, n); /* compared as bytes, never printed */
                free(s);
                if (e && !e->literal) {
                        match_expr_free(e);
                        return parse_oom(p);
                }
                return e;
        }
        if (c == '-' || (c >= '0' && c <= '9'))
                return parse_number(p);
        if (is_ident_start(c)) {
                size_t n = 0;
                MatchExpr *e;
                while (is_ident_char(p->text[start + n]))
                        n++;
                p->pos += n;
#define IS(word) (n == strlen(word) && strneq(p->text + start, word, n))
                if (IS("true") || IS("false") || IS("null")) {
                        e = node_new(p, EXPR_LITERAL, IS("null") ? TYPE_NULL : TYPE_BOOL, start);
                        if (e)
                                /* static singletons: nothing to check */
                                e->literal = IS("null") ? json_null() : json_boolean(IS("true"));
                        return e;
                }
                if (IS("event"))
                        return parse_path(p, start);
#undef IS
                return parse_fail(p, start, "unknown name '%.*s' (only 'event' is defined)", (int) MIN(n, 64U),
                                  p->text + start);
        }
        return parse_fail(p, start, "expected a value, 'event.<field>' or '(', found %s",
                          describe(p, start, buf));
}

static MatchExpr *need_condition(Parser *p, MatchExpr *e);

/* "!" unary | primary */
static MatchExpr *parse_unary(Parser *p) {
        size_t start;

        skip_space(p);
        start = p->pos;
        if (p->text[start] == '!' && p->text[start + 1] != '=') {
                MatchExpr *e, *a;
                p->pos++;
                if (++p->depth > MATCH_EXPR_DEPTH_MAX)
                        return parse_fail(p, start, "nested too deeply (at most %u levels)",
                                          MATCH_EXPR_DEPTH_MAX);
                a = need_condition(p, parse_unary(p));
                p->depth--;
                if (!a)
                        return NULL;
                e = node_new(p, EXPR_NOT, TYPE_BOOL, start);
                if (!e) {
                        match_expr_free(a);
                        return NULL;
                }
                e->a = a;
                return e;
        }
        return parse_primary(p);
}

static const char *type_name(ExprType t) {
        switch (t) {
        case TYPE_STRING:
                return "a string";
        case TYPE_NUMBER:
                return "a number";
        case TYPE_NULL:
                return "null";
        default:
                return "a condition";
        }
}

/* Conditions and paths may stand where a truth value is needed; other literals never are true. */
static MatchExpr *need_condition(Parser *p, MatchExpr *e) {
        if (!e || e->type == TYPE_BOOL || e->type == TYPE_DYN)
                return e;
        size_t col = e->column;
        ExprType t = e->type;
        match_expr_free(e);
        return parse_fail(p, col - 1, "expected a condition, found %s", type_name(t));
}

static const struct {
        const char *tok;
        CmpOp op;
} cmp_ops[] = {
        /* Two-character operators first, so "<=" is not read as "<". */
        { "==", CMP_EQ }, { "!=", CMP_NE }, { "<=", CMP_LE },
        { ">=", CMP_GE }, { "<", CMP_LT },  { ">", CMP_GT },
};

/* unary [ op unary ] */
static MatchExpr *parse_relation(Parser *p) {
        MatchExpr *a, *b, *e;
        size_t op_pos;

        a = parse_unary(p);
        if (!a)
                return NULL;
        skip_space(p);
        op_pos = p->pos;
        for (size_t i = 0; i < ELEMENTSOF(cmp_ops); i++) {
                if (!accept(p, cmp_ops[i].tok))
                        continue;
                b = parse_unary(p);
                if (!b) {
                        match_expr_free(a);
                        return NULL;
                }
                e = node_new(p, EXPR_CMP, TYPE_BOOL, op_pos);
                if (!e) {
                        match_expr_free(a);
                        match_expr_free(b);
                        return NULL;
                }
                e->op = cmp_ops[i].op;
                e->a = a;
                e->b = b;
                return e;
        }
        if (p->text[op_pos] == '=') {
                match_expr_free(a);
                return parse_fail(p, op_pos, "unexpected '=' (compare with '==')");
        }
        return a;
}

/* One left-associative level: operand ( tok operand )* */
static MatchExpr *parse_chain(Parser *p, const char *tok, ExprKind kind, MatchExpr *(*operand)(Parser *p)) {
        MatchExpr *e = need_condition(p, operand(p));

        while (e) {
                skip_space(p);
                size_t op_pos = p->pos;
                if (!accept(p, tok))
                        break;
                MatchExpr *b = need_condition(p, operand(p)), *n;
                if (!b) {
                        match_expr_free(e);
                        return NULL;
                }
                n = node_new(p, kind, TYPE_BOOL, op_pos);
                if (!n) {
                        match_expr_free(e);
                        match_expr_free(b);
                        return NULL;
                }
                n->a = e;
                n->b = b;
                e = n;
        }
        return e;
}

static MatchExpr *parse_and(Parser *p) {
        return parse_chain(p, "&&", EXPR_AND, parse_relation);
}

static MatchExpr *parse_or(Parser *p) {
        return parse_chain(p, "||", EXPR_OR, parse_and);
}

int match_expr_compile(const char *text, MatchExpr **ret, char **reterr) {
        Parser p = { .text = text };
        MatchExpr *e;
        char buf[16];

        if (!text || text[strspn(text, " \t\r\n")] == '\0') {
                *ret = NULL;
                return 0;
        }
        if (strlen(text) > MATCH_EXPR_MAX) {
                if (reterr && asprintf(reterr, "longer than %u bytes", MATCH_EXPR_MAX) < 0) {
                        *reterr = NULL;
                        return -ENOMEM;
                }
                return -EINVAL;
        }
        e = parse_or(&p);
        if (e) {
                skip_space(&p);
                if (p.text[p.pos] != '\0') {
                        const char *s = p.text + p.pos;
                        if (s[0] == '&' || s[0] == '|')
                                parse_fail(&p, p.pos, "unexpected %s (use '&&' or '||')",
                                           describe(&p, p.pos, buf));
                        else if (s[0] == '=' || (s[0] == '!' && s[1] == '=') || s[0] == '<' || s[0] == '>')
                                parse_fail(&p, p.pos, "unexpected comparison (comparisons do not chain; "
                                           "use parentheses)");
                        else
                                parse_fail(&p, p.pos, "unexpected %s", describe(&p, p.pos, buf));
                        e = match_expr_free(e);
                }
        }
        if (!e) {
                if (p.r == -EINVAL && reterr)
                        *reterr = TAKE_PTR(p.message);
                free(p.message);
                return p.r < 0 ? p.r : -ENOMEM;
        }
        *ret = e;
        return 0;
}

/* ---- the model ---- */

static void rule_done(SubscriptionRule *r) {
        free(r->match);
        match_expr_free(r->expr);
        free(r->path);
}

Subscription *subscription_free(Subscription *s) {
        if (!s)
                return NULL;
        free(s->name);
        free(s->pubsub);
        free(s->topic);
        for (size_t i = 0; i < s->n_rules; i++)
                rule_done(&s->rules[i]);
        free(s->rules);
        free(s->default_path);
        strv_free(s->metadata);
        free(s->dead_letter_topic);
        strv_free(s->scopes);
        free(s->file);
        free(s);
        return NULL;
}

Subscription **subscription_free_many(Subscription **l, size_t n) {
        for (size_t i = 0; l && i < n; i++)
                subscription_free(l[i]);
        free(l);
        return NULL;
}

const char *subscription_route(const Subscription *s, json_t *event) {
        for (size_t i = 0; i < s->n_rules; i++)
                if (match_expr_eval(s->rules[i].expr, event))
                        return s->rules[i].path;
        return s->default_path;
}

bool subscription_in_scope(const Subscription *s, const char *app_id) {
        if (strv_length(s->scopes) == 0)
                return true;
        return app_id && strv_contains(s->scopes, app_id);
}

const char *subscription_get_metadata(const Subscription *s, const char *name) {
        for (size_t i = 0; s->metadata && s->metadata[i] && s->metadata[i + 1]; i += 2)
                if (streq(s->metadata[i], name))
                        return s->metadata[i + 1];
        return NULL;
}

/* A route path with a leading '/' into *ret. -EINVAL for an empty one or one a request line cannot carry. */
static int make_path(const char *s, char **ret) {
        if (!*s)
                return -EINVAL;
        for (const char *c = s; *c; c++)
                if ((unsigned char) *c <= ' ' || *c == 0x7f)
                        return -EINVAL;
        if (asprintf(ret, "%s%s", s[0] == '/' ? "" : "/", s) < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

#define PATH_RULES "path must be non-empty, without spaces or control characters"

/* Adds one rule; *reterr gets the compile error on -EINVAL (NULL on a bad path). */
static int add_rule(Subscription *s, const char *match, const char *path, char **reterr) {
        SubscriptionRule *r = &s->rules[s->n_rules];
        int k;

        *r = (SubscriptionRule){};
        s->n_rules++; /* counted first, so a half-built rule is freed with s */
        r->match = strdup(match ?: "");
        if (!r->match)
                return -ENOMEM;
        k = match_expr_compile(r->match, &r->expr, reterr);
        if (k < 0)
                return k;
        return make_path(path, &r->path);
}

/* Checks and stores metadata pair (name, value); 0, -EINVAL (bad rawPayload) or -ENOMEM. */
static int add_metadata(Subscription *s, const char *name, const char *value) {
        if (streq(name, "rawPayload")) {
                int b = parse_boolean(value);
                if (b < 0)
                        return -EINVAL;
                s->raw_payload = b;
        }
        if (!s->metadata) {
                s->metadata = calloc(1, sizeof(char *));
                if (!s->metadata)
                        return -ENOMEM;
        }
        if (strv_extend(&s->metadata, name) < 0 || strv_extend(&s->metadata, value) < 0)
                return -ENOMEM;
        return 0;
}

static int dup_to(char **dst, const char *s) {
        if (!s)
                return 0;
        *dst = strdup(s);
        return *dst ? 0 : -ENOMEM;
}

/* ---- declarative YAML ---- */

/* A string field; empty counts as absent unless required. */
static int get_string(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, bool required,
                      const char **ret) {
        const char *s = NULL;
        int r = yaml_get_scalar(w, map, key, field, required, &s);
        if (r < 0)
                return r;
        if (s && !*s) {
                if (required)
                        return yaml_fail(w, yaml_map_get(w, map, key), field, "must not be empty");
                s = NULL;
        }
        *ret = s;
        return 0;
}

static int get_kind(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, yaml_node_type_t type,
                    yaml_node_t **ret) {
        yaml_node_t *n = yaml_map_get(w, map, key);
        if (n && n->type != type)
                return yaml_fail(w, n, field, "%s",
                                 type == YAML_MAPPING_NODE ? "expected a mapping" : "expected a list");
        *ret = n;
        return 0;
}

static size_t seq_len(const yaml_node_t *n) {
        return n ? (size_t) (n->data.sequence.items.top - n->data.sequence.items.start) : 0;
}

static int yaml_path(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, char **dst) {
        const char *s = NULL;
        int r = get_string(w, map, key, field, false, &s);
        if (r < 0 || !s)
                return r;
        r = make_path(s, dst);
        if (r == -EINVAL)
                return yaml_fail(w, yaml_map_get(w, map, key), field, PATH_RULES);
        return r;
}

static int yaml_routes(YamlWalk *w, yaml_node_t *spec, Subscription *s) {
        yaml_node_t *routes = NULL, *rules = NULL;
        int r;

        r = get_kind(w, spec, "routes", "spec.routes", YAML_MAPPING_NODE, &routes);
        if (r < 0)
                return r;
        r = get_kind(w, routes, "rules", "spec.routes.rules", YAML_SEQUENCE_NODE, &rules);
        if (r < 0)
                return r;
        if (seq_len(rules) > SUBSCRIPTION_RULES_MAX)
                return yaml_fail(w, rules, "spec.routes.rules", "too many rules (%zu, at most %u)",
                                 seq_len(rules), SUBSCRIPTION_RULES_MAX);
        if (seq_len(rules) > 0) {
                s->rules = calloc(seq_len(rules), sizeof(SubscriptionRule));
                if (!s->rules)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < seq_len(rules); i++) {
                yaml_node_t *in = yaml_walk_node(w, rules->data.sequence.items.start[i]), *mn;
                _cleanup_free_ char *err = NULL;
                const char *match = NULL, *path = NULL;
                char field[64];

                snprintf(field, sizeof field, "spec.routes.rules[%zu]", i);
                if (!in || in->type != YAML_MAPPING_NODE)
                        return yaml_fail(w, in ?: rules, field, "expected a mapping with 'match' and 'path'");
                snprintf(field, sizeof field, "spec.routes.rules[%zu].match", i);
                r = yaml_get_scalar(w, in, "match", field, false, &match);
                if (r < 0)
                        return r;
                snprintf(field, sizeof field, "spec.routes.rules[%zu].path", i);
                r = get_string(w, in, "path", field, true, &path);
                if (r < 0)
                        return r;
                r = add_rule(s, match, path, &err);
                if (r == -EINVAL && err) {
                        mn = yaml_map_get(w, in, "match");
                        snprintf(field, sizeof field, "spec.routes.rules[%zu].match", i);
                        return yaml_fail(w, mn ?: in, field, "%s", err);
                }
                if (r == -EINVAL)
                        return yaml_fail(w, yaml_map_get(w, in, "path"), field, PATH_RULES);
                if (r < 0)
                        return r;
        }
        return yaml_path(w, routes, "default", "spec.routes.default", &s->default_path);
}

static int yaml_metadata(YamlWalk *w, yaml_node_t *spec, Subscription *s) {
        yaml_node_t *md = NULL;
        int r;

        r = get_kind(w, spec, "metadata", "spec.metadata", YAML_MAPPING_NODE, &md);
        if (r < 0 || !md)
                return r;
        for (yaml_node_pair_t *pair = md->data.mapping.pairs.start; pair < md->data.mapping.pairs.top; pair++) {
                yaml_node_t *kn = yaml_walk_node(w, pair->key), *vn = yaml_walk_node(w, pair->value);
                const char *k = yaml_scalar(kn), *v = yaml_scalar(vn);

                if (!k || !*k)
                        return yaml_fail(w, kn ?: md, "spec.metadata", "keys must be non-empty strings");
                if (subscription_get_metadata(s, k))
                        return yaml_fail(w, kn, "spec.metadata", "duplicate key '%s'", k);
                if (!v)
                        return yaml_fail(w, vn ?: md, "spec.metadata", "value of '%s' must be a string", k);
                r = add_metadata(s, k, yaml_is_null(vn) ? "" : v);
                if (r == -EINVAL)
                        return yaml_fail(w, vn, "spec.metadata.rawPayload", "must be true or false, not '%s'",
                                         v);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int yaml_scopes(YamlWalk *w, yaml_node_t *root, Subscription *s) {
        yaml_node_t *scopes = NULL;
        int r;

        r = get_kind(w, root, "scopes", "scopes", YAML_SEQUENCE_NODE, &scopes);
        if (r < 0 || !scopes)
                return r;
        s->scopes = calloc(1, sizeof(char *));
        if (!s->scopes)
                return -ENOMEM;
        for (yaml_node_item_t *it = scopes->data.sequence.items.start; it < scopes->data.sequence.items.top;
             it++) {
                yaml_node_t *sn = yaml_walk_node(w, *it);
                const char *id = yaml_scalar(sn);
                if (!id || !name_is_valid(id))
                        return yaml_fail(w, sn ?: scopes, "scopes", "invalid app id '%s' in scopes",
                                         id ?: "(not a string)");
                if (strv_extend(&s->scopes, id) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/*
 * bulkSubscribe numbers are Go int32s in daprd; a value <= 0 means "Dapr's default"
 * (utils.GetIntValOrDefault), stored here as 0. maxMessagesCount is capped at
 * SUBSCRIPTION_BULK_MAX_MESSAGES (daprd sizes a buffer by it and has no ceiling).
 */
static int bulk_number(const char *text, double value, bool is_text, unsigned cap, unsigned *ret) {
        long long n;
        if (is_text) {
                char *e;
                errno = 0;
                n = strtoll(text, &e, 10);
                if (!*text || *e || errno)
                        return -EINVAL;
        } else {
                if (!(value >= INT32_MIN && value <= INT32_MAX) || value != (double) (long long) value)
                        return -EINVAL;
                n = (long long) value;
        }
        if (n < INT32_MIN || n > INT32_MAX)
                return -EINVAL;
        *ret = n <= 0 ? 0 : (unsigned long long) n > cap ? cap : (unsigned) n;
        return 0;
}

static int yaml_bulk(YamlWalk *w, yaml_node_t *spec, Subscription *s) {
        static const struct {
                const char *key, *field;
                unsigned cap;
                size_t offset;
        } nums[] = {
                { "maxMessagesCount", "spec.bulkSubscribe.maxMessagesCount", SUBSCRIPTION_BULK_MAX_MESSAGES,
                  offsetof(Subscription, bulk_max_messages) },
                { "maxAwaitDurationMs", "spec.bulkSubscribe.maxAwaitDurationMs", INT32_MAX,
                  offsetof(Subscription, bulk_max_await_ms) },
        };
        yaml_node_t *b = yaml_map_get(w, spec, "bulkSubscribe");
        const char *v = NULL;
        int r;

        /* daprd's type is an object in both versions; the list the v1alpha1 docs show is ignored. */
        if (!b || b->type != YAML_MAPPING_NODE)
                return 0;
        r = yaml_get_scalar(w, b, "enabled", "spec.bulkSubscribe.enabled", false, &v);
        if (r < 0)
                return r;
        if (v) {
                int bv = parse_boolean(v);
                if (bv < 0)
                        return yaml_fail(w, yaml_map_get(w, b, "enabled"), "spec.bulkSubscribe.enabled",
                                         "must be true or false, not '%s'", v);
                s->bulk = bv;
        }
        for (size_t i = 0; i < ELEMENTSOF(nums); i++) {
                r = yaml_get_scalar(w, b, nums[i].key, nums[i].field, false, &v);
                if (r < 0)
                        return r;
                if (v && bulk_number(v, 0, true, nums[i].cap, (unsigned *) ((char *) s + nums[i].offset)) < 0)
                        return yaml_fail(w, yaml_map_get(w, b, nums[i].key), nums[i].field,
                                         "must be a 32-bit integer, not '%s'", v);
        }
        return 0;
}

static int parse_document(YamlWalk *w, yaml_node_t *root, Subscription **ret) {
        _cleanup_(subscription_freep) Subscription *s = NULL;
        yaml_node_t *meta = NULL, *spec = NULL;
        const char *v = NULL;
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->declarative = true;
        s->line = yaml_node_line(root);
        if (dup_to(&s->file, w->file) < 0)
                return -ENOMEM;

        r = yaml_get_scalar(w, root, "apiVersion", "apiVersion", true, &v);
        if (r < 0)
                return r;
        if (!streq(v, "dapr.io/v1alpha1") && !streq(v, "dapr.io/v2alpha1"))
                return yaml_fail(w, yaml_map_get(w, root, "apiVersion"), "apiVersion",
                                 "unsupported apiVersion '%s', expected dapr.io/v2alpha1 or dapr.io/v1alpha1",
                                 v);

        r = get_kind(w, root, "metadata", "metadata", YAML_MAPPING_NODE, &meta);
        if (r < 0)
                return r;
        r = yaml_get_scalar(w, meta, "name", "metadata.name", false, &v);
        if (r < 0)
                return r;
        if (v && !*v)
                return yaml_fail(w, yaml_map_get(w, meta, "name"), "metadata.name", "must not be empty");
        if (dup_to(&s->name, v) < 0)
                return -ENOMEM;

        spec = yaml_map_get(w, root, "spec");
        if (!spec || spec->type != YAML_MAPPING_NODE)
                return yaml_fail(w, spec ?: root, "spec", "required mapping is missing");
        r = get_string(w, spec, "pubsubname", "spec.pubsubname", true, &v);
        if (r < 0)
                return r;
        if (dup_to(&s->pubsub, v) < 0)
                return -ENOMEM;
        r = get_string(w, spec, "topic", "spec.topic", true, &v);
        if (r < 0)
                return r;
        if (dup_to(&s->topic, v) < 0)
                return -ENOMEM;

        r = yaml_routes(w, spec, s);
        if (r < 0)
                return r;
        if (!s->default_path) {
                r = yaml_path(w, spec, "route", "spec.route", &s->default_path);
                if (r < 0)
                        return r;
        }
        if (s->n_rules == 0 && !s->default_path)
                return yaml_fail(w, spec, "spec.routes",
                                 "no route: set spec.routes.rules or spec.routes.default (v2alpha1) "
                                 "or spec.route (v1alpha1)");

        r = yaml_metadata(w, spec, s);
        if (r < 0)
                return r;
        r = get_string(w, spec, "deadLetterTopic", "spec.deadLetterTopic", false, &v);
        if (r < 0)
                return r;
        if (dup_to(&s->dead_letter_topic, v) < 0)
                return -ENOMEM;
        r = yaml_bulk(w, spec, s);
        if (r < 0)
                return r;

        r = yaml_scopes(w, root, s);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

typedef struct {
        SubscriptionFoundFn found_fn;
        SubscriptionNamedErrorFn error_fn;
        SubscriptionErrorFn plain_error_fn; /* subscription_load_yaml()'s caller's, for the trampoline */
        void *userdata;
        int n_good;
} LoadCtx;

/* metadata.name of a document as written, if it is a non-empty scalar: what the document meant to
 * define, even when it is otherwise broken. */
static const char *document_name(YamlWalk *w, yaml_node_t *root) {
        if (!root || root->type != YAML_MAPPING_NODE)
                return NULL;
        const char *s = yaml_scalar(yaml_map_get(w, yaml_map_get(w, root, "metadata"), "name"));
        return s && *s ? s : NULL;
}

static int on_document(YamlWalk *w, yaml_node_t *root, void *userdata) {
        LoadCtx *ctx = userdata;
        const char *kind = yaml_scalar(yaml_map_get(w, root, "kind"));
        int r = 0;

        if (yaml_is_null(root))
                return 0; /* an empty document, e.g. after a trailing "---" */
        if (root->type != YAML_MAPPING_NODE)
                r = conf_error_set(w->err, w->file, yaml_node_line(root), NULL, "expected a mapping document");
        else if (!kind)
                r = conf_error_set(w->err, w->file, yaml_node_line(root), "kind", "required field is missing");
        else if (streq(kind, "Subscription")) {
                Subscription *s = NULL;
                r = parse_document(w, root, &s);
                if (r >= 0) {
                        ctx->found_fn(s, ctx->userdata);
                        ctx->n_good++;
                }
        }
        /* Other kinds (Component, Configuration, Resiliency, ...) are not ours here. */
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                ctx->error_fn(w->err, document_name(w, root), ctx->userdata);
                conf_error_done(w->err);
        }
        return 0;
}

int subscription_load_yaml_named(const char *file, const char *text, size_t len, SubscriptionFoundFn on_sub,
                                 SubscriptionNamedErrorFn on_error, void *ud) {
        LoadCtx ctx = { .found_fn = on_sub, .error_fn = on_error, .userdata = ud };
        ConfError e = {};
        int r = yaml_walk_documents(file, text, len, &e, on_document, &ctx);

        if (r == -EINVAL) /* a YAML syntax error ends the file there: what it meant is unknown */
                on_error(&e, NULL, ud);
        conf_error_done(&e);
        return r == -ENOMEM ? r : ctx.n_good;
}

static void plain_error(const ConfError *e, const char *name, void *userdata) {
        LoadCtx *outer = userdata;
        outer->plain_error_fn(e, outer->userdata);
}

static void plain_found(Subscription *s, void *userdata) {
        LoadCtx *outer = userdata;
        outer->found_fn(s, outer->userdata);
}

int subscription_load_yaml(const char *file, const char *text, size_t len, SubscriptionFoundFn on_sub,
                           SubscriptionErrorFn on_error, void *ud) {
        /* The named variant with the caller's callbacks behind a trampoline. */
        LoadCtx outer = { .found_fn = on_sub, .plain_error_fn = on_error, .userdata = ud };
        return subscription_load_yaml_named(file, text, len, plain_found, plain_error, &outer);
}

/* ---- programmatic JSON ---- */

/* An entry's problem, kept as text; always returns -EINVAL (or -ENOMEM when even that fails). */
_printf_(2, 3) static int entry_fail(char **reason, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(reason, fmt, ap);
        va_end(ap);
        if (r < 0) {
                *reason = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

/* A member that must be a string without NULs if present (null counts as absent). *ret NULL when absent. */
static int json_get_string(json_t *o, const char *key, const char *what, char **reason, const char **ret) {
        json_t *v = json_object_get_ci(o, key);

        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
                return entry_fail(reason, "%s is not a string", what);
        *ret = json_string_value(v);
        return 0;
}

static int json_path(json_t *o, const char *key, const char *what, char **reason, char **dst) {
        const char *s = NULL;
        int r = json_get_string(o, key, what, reason, &s);
        if (r < 0 || !s || !*s)
                return r;
        r = make_path(s, dst);
        if (r == -EINVAL)
                return entry_fail(reason, "%s: " PATH_RULES, what);
        return r;
}

static int json_routes(json_t *o, Subscription *s, char **reason) {
        json_t *routes = json_object_get_ci(o, "routes"), *rules;
        int r;

        if (json_is_null(routes))
                return 0;
        if (routes && !json_is_object(routes))
                return entry_fail(reason, "routes is not an object");
        rules = json_object_get_ci(routes, "rules");
        if (rules && !json_is_null(rules) && !json_is_array(rules))
                return entry_fail(reason, "routes.rules is not an array");
        if (json_array_size(rules) > SUBSCRIPTION_RULES_MAX)
                return entry_fail(reason, "too many rules (%zu, at most %u)", json_array_size(rules),
                                  SUBSCRIPTION_RULES_MAX);
        if (json_array_size(rules) > 0) {
                s->rules = calloc(json_array_size(rules), sizeof(SubscriptionRule));
                if (!s->rules)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < json_array_size(rules); i++) {
                json_t *rule = json_array_get(rules, i);
                _cleanup_free_ char *err = NULL;
                const char *match = NULL, *path = NULL;
                char what[64];

                if (!json_is_object(rule))
                        return entry_fail(reason, "routes.rules[%zu] is not an object", i);
                snprintf(what, sizeof what, "routes.rules[%zu].match", i);
                r = json_get_string(rule, "match", what, reason, &match);
                if (r < 0)
                        return r;
                snprintf(what, sizeof what, "routes.rules[%zu].path", i);
                r = json_get_string(rule, "path", what, reason, &path);
                if (r < 0)
                        return r;
                if (!path || !*path)
                        return entry_fail(reason, "%s is missing", what);
                r = add_rule(s, match, path, &err);
                if (r == -EINVAL && err)
                        return entry_fail(reason, "routes.rules[%zu].match: %s", i, err);
                if (r == -EINVAL)
                        return entry_fail(reason, "%s: " PATH_RULES, what);
                if (r < 0)
                        return r;
        }
        return json_path(routes, "default", "routes.default", reason, &s->default_path);
}

static int json_metadata(json_t *o, Subscription *s, char **reason) {
        json_t *md = json_object_get_ci(o, "metadata"), *v;
        const char *k;
        int r;

        if (!md || json_is_null(md))
                return 0;
        if (!json_is_object(md))
                return entry_fail(reason, "metadata is not an object");
        json_object_foreach (md, k, v) {
                if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
                        return entry_fail(reason, "metadata.%s is not a string", k);
                if (!*k)
                        return entry_fail(reason, "metadata has an empty key");
                r = add_metadata(s, k, json_string_value(v));
                if (r == -EINVAL)
                        return entry_fail(reason, "metadata.rawPayload must be true or false");
                if (r < 0)
                        return r;
        }
        return 0;
}

static int json_bulk(json_t *o, Subscription *s, char **reason) {
        json_t *b = json_object_get_ci(o, "bulkSubscribe"), *v;

        if (!b || json_is_null(b))
                return 0;
        if (!json_is_object(b))
                return entry_fail(reason, "bulkSubscribe is not an object");
        v = json_object_get_ci(b, "enabled");
        if (v && !json_is_null(v) && !json_is_boolean(v))
                return entry_fail(reason, "bulkSubscribe.enabled is not a boolean");
        s->bulk = json_is_true(v);
        v = json_object_get_ci(b, "maxMessagesCount");
        if (v && !json_is_null(v) &&
            (!json_is_number(v) || bulk_number(NULL, json_number_value(v), false, SUBSCRIPTION_BULK_MAX_MESSAGES,
                                              &s->bulk_max_messages) < 0))
                return entry_fail(reason, "bulkSubscribe.maxMessagesCount is not a 32-bit integer");
        v = json_object_get_ci(b, "maxAwaitDurationMs");
        if (v && !json_is_null(v) &&
            (!json_is_number(v) || bulk_number(NULL, json_number_value(v), false, INT32_MAX,
                                              &s->bulk_max_await_ms) < 0))
                return entry_fail(reason, "bulkSubscribe.maxAwaitDurationMs is not a 32-bit integer");
        return 0;
}

static int json_entry(json_t *o, Subscription **ret, char **reason) {
        _cleanup_(subscription_freep) Subscription *s = NULL;
        const char *v = NULL;
        int r;

        if (!json_is_object(o))
                return entry_fail(reason, "not a JSON object");
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;

        r = json_get_string(o, "pubsubname", "pubsubname", reason, &v);
        if (r < 0)
                return r;
        if (!v || !*v)
                return entry_fail(reason, "pubsubname is missing");
        if (dup_to(&s->pubsub, v) < 0)
                return -ENOMEM;
        r = json_get_string(o, "topic", "topic", reason, &v);
        if (r < 0)
                return r;
        if (!v || !*v)
                return entry_fail(reason, "topic is missing");
        if (dup_to(&s->topic, v) < 0)
                return -ENOMEM;

        r = json_routes(o, s, reason);
        if (r < 0)
                return r;
        if (!s->default_path) {
                r = json_path(o, "route", "route", reason, &s->default_path);
                if (r < 0)
                        return r;
        }
        if (s->n_rules == 0 && !s->default_path)
                return entry_fail(reason, "no route (route, routes.rules or routes.default)");

        r = json_metadata(o, s, reason);
        if (r < 0)
                return r;
        r = json_get_string(o, "deadLetterTopic", "deadLetterTopic", reason, &v);
        if (r < 0)
                return r;
        if (v && *v && dup_to(&s->dead_letter_topic, v) < 0)
                return -ENOMEM;
        r = json_bulk(o, s, reason);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

int subscription_parse_programmatic(const char *json, size_t len, Subscription ***ret, size_t *ret_n,
                                    size_t *ret_skipped, char **reterr) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        _cleanup_free_ char *first = NULL;
        Subscription **l = NULL;
        size_t n = 0, skipped = 0;
        json_error_t jerr;

        /* A raw NUL is never JSON, though jansson lets one pass after a number or a keyword. */
        if (!json || !memchr(json, 0, len)) {
                root = json_loadb(json ?: "", json ? len : 0, JSON_ALLOW_NUL, &jerr);
                /* Integers beyond 64 bits (a huge maxMessagesCount, say) as doubles, as Go reads them. */
                if (!root && json_error_code(&jerr) == json_error_numeric_overflow)
                        root = json_loadb(json, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
                if (!root && json_error_code(&jerr) == json_error_out_of_memory)
                        return -ENOMEM;
        }
        if (!json_is_array(root)) {
                if (reterr && asprintf(reterr, "the answer is not a JSON array") < 0)
                        *reterr = NULL;
                return -EINVAL;
        }
        if (json_array_size(root) > 0) {
                l = calloc(json_array_size(root), sizeof(Subscription *));
                if (!l)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < json_array_size(root); i++) {
                json_t *o = json_array_get(root, i), *topic = json_object_get_ci(o, "topic");
                _cleanup_free_ char *reason = NULL;
                int r = json_entry(o, &l[n], &reason);

                if (r == -ENOMEM) {
                        subscription_free_many(l, n);
                        return r;
                }
                if (r >= 0) {
                        l[n]->declarative = false;
                        n++;
                        continue;
                }
                skipped++;
                if (first)
                        continue;
                /* The topic helps find the entry in the app's code; printed only if it is plain text. */
                bool show = json_is_string(topic) && json_string_length(topic) <= 128 &&
                            strlen(json_string_value(topic)) == json_string_length(topic);
                for (const char *c = show ? json_string_value(topic) : ""; *c && show; c++)
                        show = (unsigned char) *c >= 0x20 && *c != 0x7f;
                if (asprintf(&first, "subscription %zu%s%s%s: %s", i + 1, show ? " (topic '" : "",
                             show ? json_string_value(topic) : "", show ? "')" : "", strna(reason)) < 0) {
                        first = NULL;
                        subscription_free_many(l, n);
                        return -ENOMEM;
                }
        }
        if (n == 0) {
                free(l);
                l = NULL;
        }
        *ret = l;
        *ret_n = n;
        *ret_skipped = skipped;
        if (reterr)
                *reterr = TAKE_PTR(first);
        return 0;
}
