/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/echo-app.c - a minimal, fast HTTP/1.1 echo server, the app behind
 * bench/invoke.sh.  Not part of the daemon; never installed.
 *
 *   echo-app PORT
 *
 * Listens on 127.0.0.1:PORT and serves keep-alive connections from one
 * thread with epoll (level-triggered).  Every request is answered with 200
 * and its own body echoed back with a Content-Length, whatever the method
 * and path:
 *   - Content-Type is copied from the request, or application/octet-stream
 *     when the request has none and a non-empty body;
 *   - a request without a body (GET, HEAD, ...) gets an empty 200;
 *   - POST/PUT/PATCH without Content-Length (e.g. chunked) get 411 and the
 *     connection is closed; a malformed request gets 400, a head over
 *     64 KiB 431, a body over 64 MiB 413, each closing the connection;
 *   - "Expect: 100-continue" gets an interim 100 before the body is read;
 *   - pipelined requests are answered in order, requests split over many
 *     reads are put together, and "Connection: close" (or HTTP/1.0 without
 *     keep-alive) closes the connection after the answer.
 * Answers to everything that arrived in one read go out in one send().
 * With ECHO_APP_SINK=1 it stands in for a trace collector instead: a request
 * with a body gets an empty 200 and is counted, one without gets the count.
 * SIGTERM or SIGINT ends it with status 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench-util.h"

#define READ_CHUNK 16384              /* free space offered to each recv() */
#define MAX_HEAD 65536                /* request line + headers */
#define MAX_BODY (64u * 1024 * 1024)
#define WRITE_HIGH (1024 * 1024)      /* stop reading while this much is unsent */
#define DEFAULT_TYPE "application/octet-stream"

typedef struct Conn {
        int fd;
        char *rbuf;                   /* received, not yet answered: [roff, rlen) */
        size_t roff, rlen, rcap;
        char *wbuf;                   /* answers not yet sent: [woff, wlen) */
        size_t woff, wlen, wcap;
        uint32_t events;              /* what epoll watches now */
        bool continue_sent;           /* 100 Continue sent for the request at roff */
        bool closing;                 /* close once wbuf is sent; read nothing more */
} Conn;

static int ep;
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
        (void) sig;
        stop = 1;
}

static void conn_free(Conn *c) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        free(c->rbuf);
        free(c->wbuf);
        free(c);
}

static bool reserve(char **buf, size_t *cap, size_t need) {
        if (need <= *cap)
                return true;
        size_t n = *cap ? *cap : 4096;
        while (n < need)
                n *= 2;
        char *p = realloc(*buf, n);
        if (!p)
                return false;
        *buf = p;
        *cap = n;
        return true;
}

static bool out(Conn *c, const void *p, size_t n) {
        if (!reserve(&c->wbuf, &c->wcap, c->wlen + n))
                return false;
        memcpy(c->wbuf + c->wlen, p, n);
        c->wlen += n;
        return true;
}

/* An error answer; the connection closes after it. */
static void answer_error(Conn *c, const char *status) {
        char h[160];
        int n = snprintf(h, sizeof h, "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
        (void) out(c, h, (size_t) n);
        c->closing = true;
}

/* Is the comma-separated header value [v, v+n) carrying token tok? */
static bool has_token(const char *v, size_t n, const char *tok) {
        size_t tl = strlen(tok);
        const char *end = v + n;
        while (v < end) {
                while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
                        v++;
                const char *s = v;
                while (v < end && *v != ',')
                        v++;
                const char *e = v;
                while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
                        e--;
                if ((size_t) (e - s) == tl && strncasecmp(s, tok, tl) == 0)
                        return true;
        }
        return false;
}

/* ECHO_APP_DAPR_CONFIG: the answer to GET /dapr/config (actor types), for bench/actors.sh; NULL: echo it. */
static const char *dapr_config;
/* ECHO_APP_SINK=1: a trace collector's stand-in for bench/observability.sh: a request with a body is
 * read and answered with an empty 200 and counted; one without (GET) is answered with that count. */
static bool sink;
static unsigned long long sink_count;

typedef struct Request {
        const char *method;
        size_t method_len;
        const char *target;
        size_t target_len;
        bool http10;
        bool has_length;
        uint64_t length;
        const char *type;             /* Content-Type value, or NULL */
        size_t type_len;
        bool te;                      /* Transfer-Encoding present */
        bool conn_close, conn_keep_alive, expect_continue;
} Request;

/*
 * Parse the head [p, p+n) (ends with the blank line's CRLF CRLF).  Returns
 * NULL when it is acceptable, else the status line to answer with.
 */
static const char *parse_head(const char *p, size_t n, Request *r) {
        const char *end = p + n, *eol, *sp1, *sp2;

        memset(r, 0, sizeof *r);
        eol = memchr(p, '\n', n);
        if (!eol)
                return "400 Bad Request";
        /* METHOD SP TARGET SP HTTP/1.x CRLF */
        sp1 = memchr(p, ' ', (size_t) (eol - p));
        if (!sp1 || sp1 == p)
                return "400 Bad Request";
        sp2 = memchr(sp1 + 1, ' ', (size_t) (eol - sp1 - 1));
        if (!sp2 || sp2 == sp1 + 1)
                return "400 Bad Request";
        {
                const char *v = sp2 + 1, *ve = eol;
                if (ve > v && ve[-1] == '\r')
                        ve--;
                if (ve - v != 8 || memcmp(v, "HTTP/1.", 7) != 0 || (v[7] != '0' && v[7] != '1'))
                        return "505 HTTP Version Not Supported";
                r->http10 = v[7] == '0';
        }
        for (const char *m = p; m < sp1; m++)
                if (*m <= ' ' || *m >= 127)
                        return "400 Bad Request";
        r->method = p;
        r->method_len = (size_t) (sp1 - p);
        r->target = sp1 + 1;
        r->target_len = (size_t) (sp2 - sp1 - 1);

        for (const char *l = eol + 1; l < end;) {
                const char *le = memchr(l, '\n', (size_t) (end - l)), *colon, *v, *ve;
                if (!le)
                        return "400 Bad Request";
                ve = le;
                if (ve > l && ve[-1] == '\r')
                        ve--;
                if (ve == l) /* the blank line */
                        break;
                colon = memchr(l, ':', (size_t) (ve - l));
                if (!colon || colon == l || memchr(l, '\r', (size_t) (ve - l)))
                        return "400 Bad Request";
                for (const char *q = l; q < colon; q++)
                        if (*q <= ' ' || *q >= 127)
                                return "400 Bad Request";
                v = colon + 1;
                while (v < ve && (*v == ' ' || *v == '\t'))
                        v++;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                        ve--;
                size_t nl = (size_t) (colon - l), vl = (size_t) (ve - v);
#define IS(name) (nl == sizeof(name) - 1 && strncasecmp(l, name, nl) == 0)
                if (IS("Content-Length")) {
                        uint64_t x = 0;
                        if (vl == 0 || vl > 19)
                                return "400 Bad Request";
                        for (size_t i = 0; i < vl; i++) {
                                if (v[i] < '0' || v[i] > '9')
                                        return "400 Bad Request";
                                x = x * 10 + (uint64_t) (v[i] - '0');
                        }
                        if (r->has_length && x != r->length)
                                return "400 Bad Request";
                        r->has_length = true;
                        r->length = x;
                } else if (IS("Content-Type")) {
                        r->type = v;
                        r->type_len = vl;
                } else if (IS("Transfer-Encoding")) {
                        r->te = true;
                } else if (IS("Connection")) {
                        r->conn_close |= has_token(v, vl, "close");
                        r->conn_keep_alive |= has_token(v, vl, "keep-alive");
                } else if (IS("Expect")) {
                        if (!has_token(v, vl, "100-continue"))
                                return "417 Expectation Failed";
                        r->expect_continue = true;
                }
#undef IS
                l = le + 1;
        }
        if (r->te)
                return "411 Length Required"; /* chunked bodies are not supported */
        if (!r->has_length) {
                static const char *const need[] = { "POST", "PUT", "PATCH" };
                for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
                        if (r->method_len == strlen(need[i]) && memcmp(r->method, need[i], r->method_len) == 0)
                                return "411 Length Required";
        }
        if (r->length > MAX_BODY)
                return "413 Content Too Large";
        return NULL;
}

/* Answer every complete request in [roff, rlen). */
static void process(Conn *c) {
        while (!c->closing && c->rlen > c->roff) {
                const char *p = c->rbuf + c->roff;
                size_t avail = c->rlen - c->roff;
                const char *hend = memmem(p, avail, "\r\n\r\n", 4);
                if (!hend) {
                        if (avail > MAX_HEAD)
                                answer_error(c, "431 Request Header Fields Too Large");
                        break;
                }
                size_t hlen = (size_t) (hend + 4 - p);
                if (hlen > MAX_HEAD) {
                        answer_error(c, "431 Request Header Fields Too Large");
                        break;
                }
                Request r;
                const char *bad = parse_head(p, hlen, &r);
                if (bad) {
                        answer_error(c, bad);
                        break;
                }
                size_t blen = (size_t) r.length;
                if (avail < hlen + blen) {
                        /* the body is still coming: make room for all of it */
                        if (r.expect_continue && !c->continue_sent) {
                                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                                if (!out(c, cont, sizeof cont - 1)) {
                                        c->closing = true;
                                        break;
                                }
                                c->continue_sent = true;
                        }
                        if (c->roff > 0) {
                                memmove(c->rbuf, c->rbuf + c->roff, avail);
                                c->rlen = avail;
                                c->roff = 0;
                        }
                        if (!reserve(&c->rbuf, &c->rcap, hlen + blen + READ_CHUNK))
                                answer_error(c, "413 Content Too Large");
                        break;
                }
                bool close_after = r.conn_close || (r.http10 && !r.conn_keep_alive);
                bool head = r.method_len == 4 && memcmp(r.method, "HEAD", 4) == 0;
                const char *type = r.type;
                size_t type_len = r.type_len;
                if (!type && blen > 0) {
                        type = DEFAULT_TYPE;
                        type_len = sizeof DEFAULT_TYPE - 1;
                }
                const char *conn_hdr = close_after ? "Connection: close\r\n"
                                       : r.http10    ? "Connection: keep-alive\r\n"
                                                     : "";
                char h[512], cnt[32];
                int n;
                const char *body = p + hlen; /* what follows the head: the echo by default */
                size_t body_len = head ? 0 : blen;
                if (dapr_config && r.target_len == 12 && memcmp(r.target, "/dapr/config", 12) == 0) {
                        /* bench/actors.sh: the app declares actor types (GET /dapr/config answers this) */
                        body = dapr_config;
                        body_len = strlen(dapr_config);
                        n = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     "Content-Length: %zu\r\n%s\r\n", body_len, conn_hdr);
                } else if (sink) {
                        body = cnt;
                        body_len = blen > 0 ? 0 : (size_t) snprintf(cnt, sizeof cnt, "%llu", sink_count);
                        sink_count += blen > 0;
                        n = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n%s\r\n", body_len,
                                     conn_hdr);
                } else if (type && type_len < 300)
                        n = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\n%s\r\n",
                                     (int) type_len, type, body_len, conn_hdr);
                else
                        n = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n%s\r\n", body_len,
                                     conn_hdr);
                if (!out(c, h, (size_t) n) || (body_len > 0 && !out(c, body, body_len))) {
                        c->closing = true;
                        break;
                }
                c->roff += hlen + blen;
                c->continue_sent = false;
                if (close_after)
                        c->closing = true;
        }
        if (c->roff == c->rlen)
                c->roff = c->rlen = 0;
}

static void watch(Conn *c, uint32_t ev) {
        if (c->events == ev)
                return;
        c->events = ev;
        struct epoll_event e = { .events = ev, .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Send what is pending; returns false when the connection is finished (freed). */
static bool flush(Conn *c) {
        while (c->woff < c->wlen) {
                ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        conn_free(c);
                        return false;
                }
                c->woff += (size_t) w;
        }
        if (c->woff == c->wlen) {
                c->woff = c->wlen = 0;
                if (c->closing) {
                        shutdown(c->fd, SHUT_WR);
                        conn_free(c);
                        return false;
                }
        }
        uint32_t ev = 0;
        if (!c->closing && c->wlen - c->woff < WRITE_HIGH)
                ev |= EPOLLIN;
        if (c->wlen > c->woff)
                ev |= EPOLLOUT;
        watch(c, ev);
        return true;
}

static void on_readable(Conn *c) {
        if (c->roff > 0 && c->rcap - c->rlen < READ_CHUNK) {
                memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
                c->rlen -= c->roff;
                c->roff = 0;
        }
        if (!reserve(&c->rbuf, &c->rcap, c->rlen + READ_CHUNK)) {
                conn_free(c);
                return;
        }
        ssize_t r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (r < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return;
                conn_free(c);
                return;
        }
        if (r == 0) {
                /* the peer is done sending: answer what is complete, then close */
                c->closing = true;
                (void) flush(c);
                return;
        }
        c->rlen += (size_t) r;
        process(c);
        (void) flush(c);
}

static void on_accept(int lfd) {
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN && errno != EMFILE && errno != ENFILE)
                                fprintf(stderr, "echo-app: accept: %s\n", strerror(errno));
                        return;
                }
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                Conn *c = calloc(1, sizeof *c);
                if (!c) {
                        close(fd);
                        continue;
                }
                c->fd = fd;
                c->events = EPOLLIN;
                struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
                        close(fd);
                        free(c);
                }
        }
}

int main(int argc, char **argv) {
        char *end = NULL;
        long port = 0;

        if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
                printf("usage: echo-app PORT\n  HTTP/1.1 echo server on 127.0.0.1:PORT (see bench/echo-app.c)\n");
                return 0;
        }
        if (argc == 2)
                port = strtol(argv[1], &end, 10);
        if (argc != 2 || end == argv[1] || *end || port < 1 || port > 65535) {
                fprintf(stderr, "usage: echo-app PORT\n");
                return 2;
        }

        dapr_config = getenv("ECHO_APP_DAPR_CONFIG");
        sink = getenv("ECHO_APP_SINK") && strcmp(getenv("ECHO_APP_SINK"), "1") == 0;
        raise_nofile();
        on_stop_signals(on_signal);
        /* the listener is told apart from connections by a NULL pointer */
        int lfd = listen_loopback("echo-app", port, &ep);
        if (lfd < 0)
                return 1;

        struct epoll_event evs[256];
        while (!stop) {
                int n = epoll_wait(ep, evs, 256, -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("echo-app: epoll_wait");
                        return 1;
                }
                for (int i = 0; i < n; i++) {
                        Conn *c = evs[i].data.ptr;
                        uint32_t e = evs[i].events;
                        if (!c) {
                                on_accept(lfd);
                                continue;
                        }
                        if (e & EPOLLOUT) {
                                if (!flush(c))
                                        continue;
                        }
                        if (e & (EPOLLIN | EPOLLHUP | EPOLLERR))
                                on_readable(c);
                }
        }
        return 0;
}
