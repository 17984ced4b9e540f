/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small HTTP/1.1 client for the trace exporter's thread (trace-export.c),
 * for collectors at plain http:// URLs: one POST at a time on a kept-alive
 * TCP connection, the head and the batch's body written by one writev()
 * (libcurl first copied every body into its own send buffer), the answer
 * read through http_parser and only its status kept. The calls block in
 * poll(): the thread has nothing else to do meanwhile, but it also watches
 * a wake fd so that a stop (or a flush out of time) cuts a transfer short.
 * https:// and URLs this client does not take stay with libcurl.
 *
 * Thread-compatible: one TraceHttp is used by one thread at a time.
 */
#pragma once

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct TraceHttp TraceHttp;

/*
 * Splits "http://host[:port][/path]" (host a name, IPv4 or [IPv6]) into its parts, each malloc'd:
 * host without brackets, port ("80" when absent), authority as written (the Host header), path
 * ("/" when absent). -EINVAL for anything else (another scheme, user info, a query without a path,
 * a bad port), -ENOMEM.
 */
int trace_http_url_split(const char *url, char **ret_host, char **ret_port, char **ret_authority,
                         char **ret_path);

/*
 * A client for url that sends head_extra (header lines, each ending in "\r\n") with every request.
 * -EINVAL when url is not one trace_http_url_split() takes, -ENOMEM. Connects on the first post.
 */
int trace_http_new(const char *url, const char *head_extra, TraceHttp **ret);
TraceHttp *trace_http_free(TraceHttp *h);

/* Asked while a post waits: true cuts it short (-ECANCELED). */
typedef bool (*TraceHttpCancelFn)(void *userdata);

/*
 * POSTs len bytes of body and reads the answer: its HTTP status (> 0), or -errno: the connection
 * failed, -ETIMEDOUT past deadline_usec (CLOCK_MONOTONIC microseconds), -EBADMSG for an answer that
 * is no HTTP/1.x, -ECANCELED. wake_fd (an eventfd) is polled as well; when it is readable it is
 * drained and cancel(userdata) asked, which is also asked at least every 250 ms. A kept-alive
 * connection the collector closed before answering is replaced once and the request sent again.
 */
int trace_http_post(TraceHttp *h, const void *body, size_t len, uint64_t deadline_usec, int wake_fd,
                    TraceHttpCancelFn cancel, void *userdata);

/* The answer's reader, on its own for the fuzzer. */
typedef struct TraceHttpAnswer {
        http_parser parser;
        size_t received;        /* bytes fed so far */
        bool complete;
        unsigned status;        /* once complete */
        bool keep_alive;        /* once complete: the connection may carry the next request */
} TraceHttpAnswer;

void trace_http_answer_init(TraceHttpAnswer *a);
/* Feeds n bytes: 1 when the answer is complete, 0 when more is needed, -EBADMSG. */
int trace_http_answer_feed(TraceHttpAnswer *a, const char *p, size_t n);
/* The connection was closed: 1 when that completed the answer, else -ECONNABORTED (nothing was
 * received: a kept-alive connection that had been closed) or -EBADMSG (a cut answer). */
int trace_http_answer_eof(TraceHttpAnswer *a);
