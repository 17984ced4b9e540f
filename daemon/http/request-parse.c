/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See request-parse.h.
 *
 * What http_parser 2.9 enforces by itself (lenient_http_headers left at 0):
 * a well-formed request line and method, header names made of token
 * characters (so "Content-Length : 2" fails: a space is not a token
 * character), no control characters in values, a numeric Content-Length
 * given once, Content-Length together with "Transfer-Encoding: chunked", and
 * a Transfer-Encoding whose last coding is not chunked. What it lets through
 * and we refuse here: obs-fold (it joins folded lines), "gzip, chunked" and
 * repeated Transfer-Encoding fields, Content-Length with any
 * Transfer-Encoding, a missing or repeated Host, HTTP versions other than 1.0
 * and 1.1 (it takes any digits), CONNECT, and our size limits.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../util/cleanup.h"
#include "../util/strv.h"
#include "request-parse.h"

enum { CB_NONE, CB_FIELD, CB_VALUE };

/* Dapr has ERR_MALFORMED_REQUEST (400) and ERR_BODY_TOO_LARGE (413); for the statuses Dapr's
 * own HTTP server produces without a code of its own (414, 431, 505) we keep
 * ERR_MALFORMED_REQUEST: the request was malformed in the way the status says. */
#define CODE_MALFORMED "ERR_MALFORMED_REQUEST"
#define CODE_TOO_LARGE "ERR_BODY_TOO_LARGE"

static int fail(RequestParser *p, unsigned status, const char *code, const char *msg) {
        if (p->error_status == 0) {
                p->error_status = status;
                p->error_code = code;
                p->error_msg = msg;
        }
        return -1; /* makes http_parser stop with a callback error */
}

static int on_url(http_parser *hp, const char *at, size_t len) {
        RequestParser *p = hp->data;
        if (p->url_len == 0)
                p->url_off = (size_t) (at - p->buf);
        p->url_len += len;
        if (p->url_len > p->limits.max_uri)
                return fail(p, 414, CODE_MALFORMED, "request target too long");
        return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len) {
        RequestParser *p = hp->data;

        if (p->head_done)
                return 0; /* a trailer field after a chunked body: not kept */
        if (p->last_cb == CB_FIELD) {
                /* The same name continued in the next read: the buffer is contiguous. */
                p->fields[p->n_fields - 1].name_len += (uint32_t) len;
                return 0;
        }
        if (p->n_fields >= p->limits.max_fields)
                return fail(p, 431, CODE_MALFORMED, "too many header fields");
        if (p->n_fields == p->fields_cap) {
                unsigned cap = p->fields_cap ? p->fields_cap * 2 : 16;
                HttpField *f = reallocarray(p->fields, cap, sizeof *f);
                if (!f)
                        return fail(p, 500, "ERROR", "out of memory");
                p->fields = f;
                p->fields_cap = cap;
        }
        p->fields[p->n_fields++] = (HttpField){ .name_off = (uint32_t) (at - p->buf), .name_len = (uint32_t) len };
        p->last_cb = CB_FIELD;
        return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len) {
        RequestParser *p = hp->data;
        HttpField *f;
        size_t off = (size_t) (at - p->buf);

        if (p->head_done || p->n_fields == 0)
                return 0;
        f = &p->fields[p->n_fields - 1];
        if (p->last_cb == CB_VALUE) {
                /* http_parser reports a folded line as a second piece of the value, after a
                 * gap (the CRLF and the fold's whitespace); a value merely split across two
                 * reads continues exactly where the first piece ended. */
                if (off != (size_t) f->value_off + f->value_len)
                        return fail(p, 400, CODE_MALFORMED, "obsolete line folding in a header field");
                f->value_len += (uint32_t) len;
                return 0;
        }
        /* The first piece: a value that was empty on its own line and continued on a folded
         * one has a line break between the colon and here. */
        if (memchr(p->buf + f->name_off + f->name_len, '\n', off - (f->name_off + f->name_len)))
                return fail(p, 400, CODE_MALFORMED, "obsolete line folding in a header field");
        f->value_off = (uint32_t) off;
        f->value_len = (uint32_t) len;
        p->last_cb = CB_VALUE;
        return 0;
}

/* is_tchar() (util/strv.h): http_parser built without HTTP_PARSER_STRICT (as Debian's is) lets
 * a space through in field names, which is how "Content-Length : 2" would slip by. */

/* The same build takes a bare CR as a line end ("X: a\rY: b" is two fields to it, one to
 * others: a smuggling vector). RFC 9112 2.2: a bare CR is invalid. Scans the head, which ends
 * at the first empty line, before anything in it is overwritten. */
static bool head_has_bare_cr(const RequestParser *p) {
        const char *start = p->buf + p->start, *q = start, *end = p->buf + p->len, *prev_lf = NULL;
        /* Line by line with memchr (a byte loop was the costliest part of accepting a request). */
        while (q < end) {
                const char *lf = memchr(q, '\n', (size_t) (end - q));
                const char *line_end = lf ? lf : end;
                const char *cr = memchr(q, '\r', (size_t) (line_end - q));
                if (cr && cr != line_end - 1)
                        return true;  /* a CR inside the line */
                if (!lf)
                        return cr != NULL; /* a CR last in what arrived: nothing follows it */
                if (prev_lf && prev_lf > start && (lf == q || (lf == q + 1 && *q == '\r')))
                        return false; /* the empty line: end of the head */
                prev_lf = lf;
                q = lf + 1;
        }
        return false;
}

static bool token_eq(const char *a, size_t alen, const char *b) {
        return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

static int on_headers_complete(http_parser *hp) {
        RequestParser *p = hp->data;
        bool te_only_chunked = true;

        p->head_done = true;
        p->traceparent_field = -1; /* before any early return: never the last request's */
        if (hp->http_major != 1 || hp->http_minor > 1)
                return fail(p, 505, CODE_MALFORMED, "HTTP version not supported, use HTTP/1.1");
        if (hp->method == HTTP_CONNECT)
                return fail(p, 400, CODE_MALFORMED, "CONNECT is not supported");
        if (p->url_len == 0)
                return fail(p, 400, CODE_MALFORMED, "empty request target");
        if (head_has_bare_cr(p))
                return fail(p, 400, CODE_MALFORMED, "bare CR in the request head");
        for (unsigned i = 0; i < p->n_fields; i++) {
                const char *name = p->buf + p->fields[i].name_off;
                for (uint32_t k = 0; k < p->fields[i].name_len; k++)
                        if (!is_tchar((unsigned char) name[k]))
                                return fail(p, 400, CODE_MALFORMED, "invalid character in a header field name");
                if (p->fields[i].name_len == 11 && p->traceparent_field < 0 && strncasecmp(name, "traceparent", 11) == 0)
                        p->traceparent_field = (int) i;
        }

        /* Terminate the request target in place: the byte after it (a space) is consumed. */
        char *url = p->buf + p->url_off;
        url[p->url_len] = 0;
        if (url[0] != '/' && !(url[0] == '*' && url[1] == 0)) {
                /* absolute-form (RFC 9112 3.2.2): serve its path */
                struct http_parser_url u;
                http_parser_url_init(&u);
                if (http_parser_parse_url(url, p->url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH)))
                        return fail(p, 400, CODE_MALFORMED, "malformed request target");
                p->url_off += u.field_data[UF_PATH].off;
                url = p->buf + p->url_off;
        }
        char *q = strchr(url, '?');
        if (q) {
                *q = 0;
                p->query_off = (size_t) (q + 1 - p->buf);
        }
        char *hash = strchr(q ? q + 1 : url, '#'); /* a fragment is never meant for the server */
        if (hash)
                *hash = 0;

        for (unsigned i = 0; i < p->n_fields; i++) {
                HttpField *f = &p->fields[i];
                const char *name = p->buf + f->name_off;
                char *v = p->buf + f->value_off;

                /* http_parser leaves trailing whitespace in the value; RFC 9110 5.5 says it
                 * is not part of it. The byte after the value (CR or whitespace) is ours. */
                while (f->value_len > 0 && (v[f->value_len - 1] == ' ' || v[f->value_len - 1] == '\t'))
                        f->value_len--;
                if (f->value_len > 0)
                        v[f->value_len] = 0;
                if (token_eq(name, f->name_len, "host"))
                        p->n_host++;
                else if (token_eq(name, f->name_len, "content-length"))
                        p->n_content_length++;
                else if (token_eq(name, f->name_len, "transfer-encoding")) {
                        p->n_transfer_encoding++;
                        if (!token_eq(v, f->value_len, "chunked"))
                                te_only_chunked = false;
                } else if (token_eq(name, f->name_len, "expect") && token_eq(v, f->value_len, "100-continue"))
                        p->expect_continue = hp->http_minor == 1;
                /* The name ends at its colon, consumed: terminate it there (after the value
                 * checks above, which compare by length). */
                p->buf[f->name_off + f->name_len] = 0;
        }

        if (p->n_host > 1 || (hp->http_minor == 1 && p->n_host == 0))
                return fail(p, 400, CODE_MALFORMED, "HTTP/1.1 requests need exactly one Host header field");
        if (p->n_transfer_encoding > 0) {
                if (p->n_content_length > 0)
                        return fail(p, 400, CODE_MALFORMED, "both Content-Length and Transfer-Encoding");
                if (hp->http_minor == 0)
                        return fail(p, 400, CODE_MALFORMED, "Transfer-Encoding in an HTTP/1.0 request");
                if (p->n_transfer_encoding > 1 || !te_only_chunked)
                        return fail(p, 400, CODE_MALFORMED, "only \"Transfer-Encoding: chunked\" is supported");
        }
        if (p->n_content_length > 1)
                return fail(p, 400, CODE_MALFORMED, "repeated Content-Length");
        if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > p->limits.max_body)
                return fail(p, 413, CODE_TOO_LARGE, "request body larger than the limit");
        return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len) {
        RequestParser *p = hp->data;
        size_t off = (size_t) (at - p->buf);

        if (p->body_len + len > p->limits.max_body)
                return fail(p, 413, CODE_TOO_LARGE, "request body larger than the limit");
        if (p->body_len == 0)
                p->body_off = off;
        else if (off != p->body_off + p->body_len)
                /* The next chunk of a chunked body: move it down over the chunk framing, which
                 * http_parser has already read past, so the body ends up contiguous. */
                memmove(p->buf + p->body_off + p->body_len, at, len);
        p->body_len += len;
        return 0;
}

static int on_message_complete(http_parser *hp) {
        RequestParser *p = hp->data;
        p->complete = true;
        /* One request at a time: what follows (pipelined) waits in the buffer. */
        http_parser_pause(hp, 1);
        return 0;
}

static const http_parser_settings settings = {
        .on_url = on_url,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
};

void request_parser_init(RequestParser *p, const RequestLimits *limits) {
        *p = (RequestParser){ .limits = *limits, .traceparent_field = -1 };
        http_parser_init(&p->parser, HTTP_REQUEST);
        p->parser.data = p;
}

void request_parser_done(RequestParser *p) {
        free(p->buf);
        free(p->fields);
        p->buf = NULL;
        p->fields = NULL;
        p->len = p->cap = p->start = p->parsed = 0;
        p->n_fields = p->fields_cap = 0;
}

static int grow(RequestParser *p, size_t need) {
        /* The most one request can need, plus a read's worth of the next. */
        size_t limit = p->start + p->limits.max_head + (size_t) p->limits.max_body + 64 * 1024;
        size_t cap;
        char *b;

        if (need <= p->cap)
                return 0;
        if (need > limit)
                return -ENOBUFS;
        cap = p->cap ? p->cap : 4096;
        while (cap < need)
                cap *= 2;
        if (cap > limit)
                cap = limit;
        b = realloc(p->buf, cap);
        if (!b)
                return -ENOMEM;
        p->buf = b;
        p->cap = cap;
        return 0;
}

int request_parser_space(RequestParser *p, size_t min, char **ret, size_t *ret_room) {
        int r = grow(p, p->len + min);
        if (r < 0 && !(r == -ENOBUFS && p->cap > p->len))
                return r;
        *ret = p->buf + p->len;
        *ret_room = p->cap - p->len;
        return 0;
}

void request_parser_commit(RequestParser *p, size_t n) {
        p->len += n;
}

int request_parser_reserve_body(RequestParser *p, uint64_t n) {
        if (n > p->limits.max_body)
                return -EFBIG;
        /* parsed is where the body starts, at the latest: room for all of it at once */
        return grow(p, p->parsed + (size_t) n + 1);
}

static unsigned status_for(enum http_errno e) {
        switch (e) {
        case HPE_HEADER_OVERFLOW:
                return 431;
        default:
                return 400;
        }
}

RequestParseResult request_parser_run(RequestParser *p) {
        while (!p->complete && p->parsed < p->len) {
                size_t n = p->len - p->parsed;
                if (!p->head_done) {
                        size_t used = p->parsed - p->start;
                        if (used >= p->limits.max_head) {
                                fail(p, 431, CODE_MALFORMED, "request header block too large");
                                return REQUEST_PARSE_ERROR;
                        }
                        n = MIN(n, p->limits.max_head - used);
                }
                size_t k = http_parser_execute(&p->parser, &settings, p->buf + p->parsed, n);
                enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
                p->parsed += k;
                if (p->error_status > 0)
                        return REQUEST_PARSE_ERROR;
                if (e == HPE_PAUSED && p->complete)
                        break;
                if (e != HPE_OK) {
                        fail(p, status_for(e), CODE_MALFORMED, http_errno_description(e));
                        return REQUEST_PARSE_ERROR;
                }
                if (k < n && !p->complete) {
                        /* Only an upgrade makes http_parser stop early without an error, and it
                         * reports the message complete first. */
                        fail(p, 400, CODE_MALFORMED, "protocol upgrade not supported");
                        return REQUEST_PARSE_ERROR;
                }
        }
        if (p->complete)
                return REQUEST_PARSE_DONE;
        if (p->head_done && p->body_len > 0 && p->body_off + p->body_len < p->parsed && p->parsed == p->len) {
                /* Chunked: drop the framing already parsed behind the body so that the buffer
                 * holds the body and not its overhead. */
                p->len = p->parsed = p->body_off + p->body_len;
        }
        return REQUEST_PARSE_MORE;
}

void request_parser_next(RequestParser *p) {
        size_t rest = p->len - p->parsed;

        if (rest > 0 && p->parsed > 0)
                memmove(p->buf, p->buf + p->parsed, rest);
        p->len = rest;
        p->start = p->parsed = 0;
        p->url_off = p->url_len = p->query_off = 0;
        p->n_fields = 0;
        p->traceparent_field = -1;
        p->last_cb = CB_NONE;
        p->n_host = p->n_content_length = p->n_transfer_encoding = 0;
        p->expect_continue = p->head_done = p->complete = false;
        p->body_off = 0;
        p->body_len = 0;
        http_parser_pause(&p->parser, 0);

        /* A large body grew the buffer: do not keep megabytes per idle connection. */
        if (p->cap > 64 * 1024 && rest <= 16 * 1024) {
                char *b = realloc(p->buf, 16 * 1024);
                if (b) {
                        p->buf = b;
                        p->cap = 16 * 1024;
                }
        }
}

const char *request_parser_method(const RequestParser *p) {
        return http_method_str((enum http_method) p->parser.method);
}

const char *request_parser_path(const RequestParser *p) {
        return p->url_len > 0 ? p->buf + p->url_off : "";
}

const char *request_parser_query(const RequestParser *p) {
        return p->query_off > 0 ? p->buf + p->query_off : NULL;
}

const char *request_parser_field_name(const RequestParser *p, unsigned i) {
        return p->buf + p->fields[i].name_off;
}

const char *request_parser_field_value(const RequestParser *p, unsigned i) {
        return p->fields[i].value_len > 0 ? p->buf + p->fields[i].value_off : "";
}

const char *request_parser_header(const RequestParser *p, const char *name) {
        size_t n = strlen(name);
        for (unsigned i = 0; i < p->n_fields; i++)
                if (p->fields[i].name_len == n && strcasecmp(p->buf + p->fields[i].name_off, name) == 0)
                        return request_parser_field_value(p, i);
        return NULL;
}

const char *request_parser_traceparent(const RequestParser *p) {
        return p->head_done && p->traceparent_field >= 0 && (unsigned) p->traceparent_field < p->n_fields
                       ? request_parser_field_value(p, (unsigned) p->traceparent_field)
                       : NULL;
}

const void *request_parser_body(const RequestParser *p, size_t *ret_len) {
        *ret_len = (size_t) p->body_len;
        return p->body_len > 0 ? p->buf + p->body_off : "";
}

bool request_parser_keep_alive(const RequestParser *p) {
        return http_should_keep_alive(&p->parser);
}
