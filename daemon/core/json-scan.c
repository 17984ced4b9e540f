/* SPDX-License-Identifier: Apache-2.0 */
/* See json-scan.h. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_parse.h>

#include "../util/strv.h"
#include "json-scan.h"

/* jansson's limits for numbers: an integer must fit a long long, a real must not overflow a
 * double. Envelopes are read back with jansson where a tree is needed (routing rules, bulk):
 * what it cannot read must not be spliced into one. */
static bool number_fits(const char *s, size_t len) {
        char small[64], *buf = small;
        bool real = memchr(s, '.', len) || memchr(s, 'e', len) || memchr(s, 'E', len), ok;

        if (len >= sizeof small && !(buf = malloc(len + 1)))
                return false;
        memcpy(buf, s, len);
        buf[len] = 0;
        errno = 0;
        if (real) {
                double d = strtod(buf, NULL);
                ok = !(errno == ERANGE && isinf(d));
        } else {
                (void) strtoll(buf, NULL, 10);
                ok = errno != ERANGE;
        }
        if (buf != small)
                free(buf);
        return ok;
}

typedef struct Peek {
        yajl_handle h;
        CloudEventPeek *out;        /* NULL: only check */
        unsigned depth;             /* 1: inside the top-level object or array */
        size_t end;                 /* where the top-level value ended (valid once ended) */
        size_t len;
        bool ended;
        bool finishing;             /* in yajl_complete_parse(): a number ends at the end of text */
        bool top_is_object;
        char **want;                /* where the next value goes, when it is a top-level string */
        const char *ci_key;         /* json_peek_string_ci(): the member wanted, ASCII case ignored */
        char *ci_value;
        bool oom;
} Peek;

/* A wanted member whose value is not a string (or a string with a NUL): absent, also when an
 * earlier member of the same name was a string (the last one counts, as in jansson). */
static int value_seen(Peek *p) {
        if (p->depth == 0) { /* a scalar at the top, or the closing bracket of the top value */
                p->ended = true;
                p->end = p->finishing ? p->len : yajl_get_bytes_consumed(p->h);
        }
        if (p->want) {
                free(*p->want);
                *p->want = NULL;
                p->want = NULL;
        }
        return 1;
}

static int on_null(void *ctx) {
        return value_seen(ctx);
}

static int on_boolean(void *ctx, int b) {
        return value_seen(ctx);
}

static int on_number(void *ctx, const char *s, size_t len) {
        return number_fits(s, len) ? value_seen(ctx) : 0;
}

static int on_string(void *ctx, const unsigned char *s, size_t len) {
        Peek *p = ctx;
        if (!p->want || memchr(s, 0, len))
                return value_seen(p);
        char **field = p->want;
        free(*field);
        *field = strndup((const char *) s, len);
        p->want = NULL;
        if (!*field) {
                p->oom = true;
                return 0;
        }
        return 1;
}

static int on_start_map(void *ctx) {
        Peek *p = ctx;
        if (p->depth == 0)
                p->top_is_object = true;
        int r = value_seen(p); /* as a member's value: not a string */
        p->depth++;
        return r;
}

static int on_map_key(void *ctx, const unsigned char *s, size_t len) {
        Peek *p = ctx;
        p->want = NULL;
        if (p->depth == 1 && p->ci_key && strlen(p->ci_key) == len &&
            strncasecmp((const char *) s, p->ci_key, len) == 0) {
                p->want = &p->ci_value;
                return 1;
        }
        if (p->depth != 1 || !p->out)
                return 1;
#define KEY(name, field)                                                         \
        if (len == sizeof(name) - 1 && memcmp(s, name, len) == 0)                \
                p->want = &p->out->field
        KEY("expiration", expiration);
        else KEY("traceparent", traceparent);
        else KEY("tracestate", tracestate);
#undef KEY
        return 1;
}

static int on_end(void *ctx) {
        Peek *p = ctx;
        p->depth--;
        return value_seen(p);
}

static int on_start_array(void *ctx) {
        Peek *p = ctx;
        int r = value_seen(p);
        p->depth++;
        return r;
}

static const yajl_callbacks peek_callbacks = {
        .yajl_null = on_null,
        .yajl_boolean = on_boolean,
        .yajl_number = on_number, /* numbers as text, checked against jansson's limits */
        .yajl_string = on_string,
        .yajl_start_map = on_start_map,
        .yajl_map_key = on_map_key,
        .yajl_end_map = on_end,
        .yajl_start_array = on_start_array,
        .yajl_end_array = on_end,
};

void cloudevent_peek_done(CloudEventPeek *p) {
        free(p->expiration);
        free(p->traceparent);
        free(p->tracestate);
        *p = (CloudEventPeek){};
}

static int hex4(const char *s) {
        int v = 0;
        for (int i = 0; i < 4; i++) {
                char c = s[i];
                v = v * 16 + (c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c - 'A' + 10);
        }
        return v;
}

/* yajl turns a lone surrogate escape ("\ud800") into '?'; jansson refuses it. Run on text yajl
 * found valid, where every backslash is inside a string and starts a well-formed escape. */
static bool escapes_pair_surrogates(const char *s, size_t len) {
        for (const char *q = memchr(s, '\\', len), *end = s + len; q; q = memchr(q, '\\', (size_t) (end - q))) {
                if (q + 1 >= end)
                        return false;
                if (q[1] != 'u') {
                        q += 2;
                        continue;
                }
                if (q + 6 > end)
                        return false;
                int cp = hex4(q + 2);
                q += 6;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                        return false;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                        if (q + 6 > end || q[0] != '\\' || q[1] != 'u')
                                return false;
                        int lo = hex4(q + 2);
                        if (lo < 0xdc00 || lo > 0xdfff)
                                return false;
                        q += 6;
                }
                if (q >= end)
                        break;
        }
        return true;
}

static bool is_json_ws(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* yajl misses a token left unfinished after the value ("\"a\" \"" passes): only whitespace may
 * follow where the top-level value ended. */
static bool scan(Peek *p, const char *text, size_t len) {
        /* yajl takes form feed and vertical tab as whitespace; RFC 8259 (and jansson) do not, and
         * inside a string they are raw control characters, invalid too. */
        if (memchr(text, '\f', len) || memchr(text, '\v', len))
                return false;
        /* yajl lets overlong forms through; the strict check of the whole text is also all the
         * check its strings need */
        if (!utf8_is_valid(text, len))
                return false;
        p->h = yajl_alloc(&peek_callbacks, NULL, p);
        if (!p->h) {
                p->oom = true;
                return false;
        }
        (void) yajl_config(p->h, yajl_dont_validate_strings, 1);
        p->len = len;
        bool ok = yajl_parse(p->h, (const unsigned char *) text, len) == yajl_status_ok;
        p->finishing = true;
        ok = ok && yajl_complete_parse(p->h) == yajl_status_ok && p->ended && p->end <= len;
        yajl_free(p->h);
        p->h = NULL;
        for (size_t i = ok ? p->end : len; i < len; i++)
                if (!is_json_ws(text[i]))
                        return false;
        return ok && escapes_pair_surrogates(text, len);
}

bool json_text_is_valid(const void *text, size_t len) {
        Peek p = {};
        return scan(&p, text ?: "", text ? len : 0);
}

int cloudevent_peek(const void *text, size_t len, CloudEventPeek *ret) {
        CloudEventPeek out = {};
        Peek p = { .out = &out };
        bool ok = scan(&p, text ?: "", text ? len : 0);

        if (p.oom || !ok || !p.top_is_object) {
                cloudevent_peek_done(&out);
                return p.oom ? -ENOMEM : -EINVAL;
        }
        *ret = out;
        return 0;
}

int json_peek_string_ci(const void *text, size_t len, const char *key, char **ret) {
        Peek p = { .ci_key = key };
        bool ok = scan(&p, text ?: "", text ? len : 0);

        if (p.oom || !ok || !p.top_is_object) {
                free(p.ci_value);
                return p.oom ? -ENOMEM : -EINVAL;
        }
        *ret = p.ci_value;
        return 0;
}
