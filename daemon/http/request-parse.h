/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request side of the HTTP/1.1 server, without sockets: bytes go into one
 * growing buffer, http_parser (Debian's libhttp-parser, lenient mode off)
 * walks them, and the checks http_parser leaves out (RFC 9112: Host,
 * Transfer-Encoding other than a lone "chunked", Content-Length together
 * with Transfer-Encoding, obs-fold, versions other than 1.0/1.1, sizes) are
 * made here. The server feeds it from a connection; the fuzzer feeds it
 * arbitrary bytes.
 *
 * Guarantees:
 * - Nothing of a request is copied out: the request line, every header field
 *   and the body stay in the buffer; the request line and header fields are
 *   NUL-terminated in place once the head is complete, the body is not (use
 *   its length); a chunked body is de-chunked in place. Accessors
 *   return pointers into it, valid until request_parser_next() or more bytes
 *   are added.
 * - Bytes after the current request (pipelining) stay in the buffer and are
 *   not parsed until request_parser_next().
 * - An error leaves status, Dapr code and message set; the parser must then
 *   not be fed again (the connection closes).
 */
#pragma once

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum RequestParseResult {
        REQUEST_PARSE_MORE,   /* need more bytes */
        REQUEST_PARSE_DONE,   /* a whole request is in; see the accessors */
        REQUEST_PARSE_ERROR,  /* p->error_* say how to answer; close afterwards */
} RequestParseResult;

typedef struct RequestLimits {
        size_t max_head;      /* request line + header fields, bytes (431 past it; 414 for the URI) */
        size_t max_uri;       /* request target, bytes */
        unsigned max_fields;  /* header fields (431 past it) */
        uint64_t max_body;    /* 413 past it */
} RequestLimits;

#define REQUEST_MAX_HEAD_DEFAULT (64U * 1024)
#define REQUEST_MAX_URI_DEFAULT (16U * 1024)
#define REQUEST_MAX_FIELDS_DEFAULT 128U

typedef struct HttpField {
        uint32_t name_off, name_len;
        uint32_t value_off, value_len;
} HttpField;

typedef struct RequestParser {
        http_parser parser;
        RequestLimits limits;

        char *buf;              /* owned */
        size_t len, cap;        /* bytes held, allocated */
        size_t start;           /* first byte of the current request */
        size_t parsed;          /* bytes given to http_parser so far */

        /* the current request */
        size_t url_off, url_len;
        size_t query_off;       /* 0: no query string */
        HttpField *fields;      /* owned, kept across requests */
        unsigned n_fields, fields_cap;
        int traceparent_field;  /* the index of the traceparent field, found with the names' check
                                 * (every traced request asks for it); -1: none */
        unsigned last_cb;       /* which data callback ran last (obs-fold detection) */
        unsigned n_host, n_content_length, n_transfer_encoding;
        bool expect_continue;
        bool head_done, complete;
        size_t body_off;
        uint64_t body_len;

        unsigned error_status;  /* set with REQUEST_PARSE_ERROR */
        const char *error_code; /* Dapr's errorCode (static) */
        const char *error_msg;  /* static */
} RequestParser;

void request_parser_init(RequestParser *p, const RequestLimits *limits);
void request_parser_done(RequestParser *p);

/*
 * Room to read into: at least min bytes (grows the buffer, which may move it:
 * callers hold offsets, not pointers, across this call). -ENOMEM, or -ENOBUFS
 * when the current request may not grow any further (the parser reports why
 * on the next run).
 */
int request_parser_space(RequestParser *p, size_t min, char **ret, size_t *ret_room);
/* n bytes were written at the pointer request_parser_space() gave. */
void request_parser_commit(RequestParser *p, size_t n);
/* Reserves room for a body of n bytes announced by Content-Length, in one allocation. */
int request_parser_reserve_body(RequestParser *p, uint64_t n);

RequestParseResult request_parser_run(RequestParser *p);
/* Forgets the current (complete) request; buffered bytes of the next one stay. */
void request_parser_next(RequestParser *p);
/* Bytes buffered that belong to no complete request yet. */
static inline size_t request_parser_pending(const RequestParser *p) {
        return p->len - p->start;
}

/* ---- the complete request (after REQUEST_PARSE_DONE; the head after head_done) ---- */

const char *request_parser_method(const RequestParser *p);
/* Path as sent, escaped, without the query string. */
const char *request_parser_path(const RequestParser *p);
/* Query string without '?', escaped; NULL without one. */
const char *request_parser_query(const RequestParser *p);
const char *request_parser_field_name(const RequestParser *p, unsigned i);
const char *request_parser_field_value(const RequestParser *p, unsigned i);
/* First field of that name (case-insensitive), or NULL. */
const char *request_parser_header(const RequestParser *p, const char *name);
/* request_parser_header(p, "traceparent") without a search. */
const char *request_parser_traceparent(const RequestParser *p);
const void *request_parser_body(const RequestParser *p, size_t *ret_len);
bool request_parser_keep_alive(const RequestParser *p);
