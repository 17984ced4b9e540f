/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the trace exporter's own HTTP client (transport/trace-http.c) where
 * it reads what it did not write: a collector's answer, and a collector URL.
 *
 * The first input byte picks the case:
 *   0x00-0x7f  the rest is an answer, fed in two pieces cut at (byte * len / 128),
 *              then the connection's end when more is needed. Checked: a
 *              complete answer has a final status (200..999), nothing is
 *              complete after an error, and feeding past completion is refused.
 *   0x80-0xff  the rest is a URL. Checked: a URL that splits has a non-empty
 *              host, a port of 1..65535 in digits, a path that starts with '/',
 *              and none of them holds a space or control character.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "transport/trace-http.h"

static void answer(const char *p, size_t n, size_t cut) {
        TraceHttpAnswer a;
        int r;

        trace_http_answer_init(&a);
        r = trace_http_answer_feed(&a, p, cut);
        if (r == 0)
                r = trace_http_answer_feed(&a, p + cut, n - cut);
        if (r == 0)
                r = trace_http_answer_eof(&a);
        if (r == 1) {
                if (!a.complete || a.status < 200 || a.status > 999)
                        abort();
                if (trace_http_answer_feed(&a, "x", 1) >= 0)
                        abort();
        } else if (r >= 0)
                abort();
}

static bool clean(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s <= ' ' || (unsigned char) *s >= 0x7f)
                        return false;
        return true;
}

static void url(const char *p, size_t n) {
        char *in = strndup(p, n), *host = NULL, *port = NULL, *authority = NULL, *path = NULL;
        if (!in)
                return;
        if (trace_http_url_split(in, &host, &port, &authority, &path) >= 0) {
                unsigned long v = strtoul(port, NULL, 10);
                if (!*host || !*authority || path[0] != '/' || v == 0 || v > 65535 ||
                    strspn(port, "0123456789") != strlen(port) || !clean(authority) || !clean(path))
                        abort();
        }
        free(in);
        free(host);
        free(port);
        free(authority);
        free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > 64 * 1024)
                return 0;
        const char *p = (const char *) data + 1;
        size_t n = size - 1;
        if (data[0] < 0x80)
                answer(p, n, n * data[0] / 128);
        else
                url(p, n);
        return 0;
}
