/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the request side of the HTTP server (http/request-parse.c) exactly
 * as a connection drives it, without a socket: the input's first byte picks
 * the size of each "read" (1..256 bytes, so every split of a head across
 * reads is tried), the rest is the byte stream. Every complete request is
 * checked (its pointers lie in the buffer, its body within the limit) and
 * then dropped for the next pipelined one; an error ends the stream, as it
 * closes a connection.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http/request-parse.h"
#include "util/cleanup.h"

static void check_in_buffer(const RequestParser *p, const char *s) {
        if (s[0] && (s < p->buf || s >= p->buf + p->cap))
                abort();
        (void) strlen(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        RequestLimits limits = {
                .max_head = 4096,
                .max_uri = 1024,
                .max_fields = 16,
                .max_body = 8192,
        };
        RequestParser p;
        size_t step, off = 1;

        if (size < 1 || size > 256 * 1024)
                return 0;
        step = (size_t) data[0] + 1;
        request_parser_init(&p, &limits);
        while (off < size) {
                char *buf;
                size_t room, n = MIN(step, size - off);
                if (request_parser_space(&p, n, &buf, &room) < 0)
                        break;
                n = MIN(n, room);
                memcpy(buf, data + off, n);
                request_parser_commit(&p, n);
                off += n;

                RequestParseResult r;
                while ((r = request_parser_run(&p)) == REQUEST_PARSE_DONE) {
                        size_t len;
                        const void *body = request_parser_body(&p, &len);
                        if (len > limits.max_body || !request_parser_method(&p))
                                abort();
                        if (len > 0 && ((const char *) body < p.buf || (const char *) body + len > p.buf + p.len))
                                abort();
                        check_in_buffer(&p, request_parser_path(&p));
                        if (request_parser_query(&p))
                                check_in_buffer(&p, request_parser_query(&p));
                        for (unsigned i = 0; i < p.n_fields; i++) {
                                check_in_buffer(&p, request_parser_field_name(&p, i));
                                check_in_buffer(&p, request_parser_field_value(&p, i));
                        }
                        (void) request_parser_header(&p, "host");
                        /* the field found while parsing is the one a search finds */
                        if (request_parser_traceparent(&p) != request_parser_header(&p, "traceparent"))
                                abort();
                        (void) request_parser_keep_alive(&p);
                        request_parser_next(&p);
                }
                if (r == REQUEST_PARSE_ERROR) {
                        if (p.error_status < 400 || p.error_status > 599 || !p.error_code || !p.error_msg)
                                abort();
                        break;
                }
        }
        request_parser_done(&p);
        return 0;
}
