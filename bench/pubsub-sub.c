/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/pubsub-sub.c - the subscribing app of bench/pubsub.sh: a minimal
 * HTTP/1.1 server that receives mooringd's pub/sub deliveries and measures
 * them.  Not part of the daemon; never installed.
 *
 *   pubsub-sub PORT PUBSUB [TOPIC [ROUTE]]      (TOPIC "bench", ROUTE "/bench")
 *
 * Listens on 127.0.0.1:PORT and serves keep-alive connections from one
 * thread with epoll (level-triggered), like bench/echo-app.c:
 *   GET  /dapr/subscribe  200 [{"pubsubname":PUBSUB,"topic":TOPIC,"route":ROUTE}]
 *   POST ROUTE            200 {"status":"SUCCESS"}, at once; the body (a
 *                         CloudEvent) is searched for the numbers "run",
 *                         "seq" and "ts" that bench/pubsub-pub.c put in its
 *                         data, and the delivery is recorded (see below)
 *   POST /control/start?run=R&count=M
 *                         a new measurement: run R, messages seq 0..M-1;
 *                         answers the previous run's stats line (final)
 *   GET  /control/wait?timeout_ms=T
 *                         answers the stats line once all M messages of the
 *                         run arrived, or after T ms, whichever comes first
 *   GET  /control/stats   the stats line, at once
 *   anything else         200, empty (the daemon's health probe: GET /)
 * A request without Content-Length has no body (RFC 9112); a chunked one
 * gets 411, a malformed one 400, both closing the connection.  SIGTERM or
 * SIGINT ends it with status 0.
 *
 * Recording.  "ts" is a CLOCK_MONOTONIC time in ns (the clock is the same for
 * every process of the machine): when the publisher wrote the message, or,
 * for rate-limited publishing, when it was due.  A delivery of the current
 * run with a seq seen for the first time records its latency, receive time
 * (when its request was complete) minus ts; a seq seen before counts as a
 * duplicate.  A delivery of another run (a warm-up message, a late copy of
 * an earlier run) counts as "stray"; one whose body has no run/seq/ts as
 * "bad".  Stats line (one line, key=value):
 *   run=R expected=M received=N unique=N duplicates=N stray=N bad=N
 *   complete=0|1 first_ts_ns=X last_recv_ns=X span_s=X deliver_rps=X
 *   p50_ms=X p90_ms=X p99_ms=X max_ms=X max_gap_ms=X conns=N max_conns=N
 *   delivery_conns=N
 * span_s runs from the smallest ts of the run (its first publish) to the last
 * first-time delivery; deliver_rps = unique / span_s.  Percentiles are
 * nearest-rank over the unique deliveries.  max_gap_ms is the longest time
 * between two consecutive first-time deliveries (a stall).  conns/max_conns:
 * connections open now / at most at once since the run started (any: the
 * daemon's deliveries and probes, the control requests); delivery_conns: the
 * connections that carried deliveries during the run (the daemon's parallel
 * deliveries, as it keeps its connections alive).
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
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define READ_CHUNK 16384              /* free space offered to each recv() */
#define MAX_HEAD 65536                /* request line + headers */
#define MAX_BODY (16u * 1024 * 1024)
#define WRITE_HIGH (1024 * 1024)      /* stop reading while this much is unsent */
#define MAX_COUNT 100000000L

typedef struct Conn {
        int fd;
        char *rbuf;                   /* received, not yet answered: [roff, rlen) */
        size_t roff, rlen, rcap;
        char *wbuf;                   /* answers not yet sent: [woff, wlen) */
        size_t woff, wlen, wcap;
        uint32_t events;              /* what epoll watches now */
        bool closing;                 /* close once wbuf is sent; read nothing more */
        long run_seen;                /* run of the last delivery on it (delivery_conns) */
} Conn;

static int ep;
static volatile sig_atomic_t stop;
static const char *pubsub_name, *topic = "bench", *route = "/bench";
static char subscribe_answer[1024];

/* the current run */
static long run_id = -1, expected;
static uint64_t *lat;                 /* per seq: latency + 1 ns; 0 = not received */
static long received, unique_n, duplicates, stray, bad;
static uint64_t first_ts, last_recv, max_gap;
static long conns, max_conns, delivery_conns;

/* the waiter of GET /control/wait */
static Conn *waiter;
static uint64_t wait_deadline;

static void on_signal(int sig) {
        (void) sig;
        stop = 1;
}

static void conn_free(Conn *c) {
        if (waiter == c)
                waiter = NULL;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        free(c->rbuf);
        free(c->wbuf);
        free(c);
        conns--;
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

static bool answer(Conn *c, const char *status, const char *type, const char *body, size_t blen, bool close_after) {
        char h[256];
        int n = snprintf(h, sizeof h, "HTTP/1.1 %s\r\n%s%s%sContent-Length: %zu\r\n%s\r\n", status,
                         type ? "Content-Type: " : "", type ? type : "", type ? "\r\n" : "", blen,
                         close_after ? "Connection: close\r\n" : "");
        return out(c, h, (size_t) n) && out(c, body, blen);
}

/* An error answer; the connection closes after it. */
static void answer_error(Conn *c, const char *status) {
        (void) answer(c, status, NULL, "", 0, true);
        c->closing = true;
}

static int stats_line(char *buf, size_t size) {
        uint64_t *v = NULL;
        long n = 0;
        if (unique_n > 0 && (v = malloc((size_t) unique_n * sizeof *v))) {
                for (long i = 0; i < expected; i++)
                        if (lat[i])
                                v[n++] = lat[i] - 1;
                qsort(v, (size_t) n, sizeof *v, cmp_u64);
        }
        double span = unique_n > 0 && last_recv > first_ts ? (double) (last_recv - first_ts) / 1e9 : 0;
        int k = snprintf(buf, size,
                         "run=%ld expected=%ld received=%ld unique=%ld duplicates=%ld stray=%ld bad=%ld complete=%d "
                         "first_ts_ns=%llu last_recv_ns=%llu span_s=%.3f deliver_rps=%.1f p50_ms=%.3f p90_ms=%.3f "
                         "p99_ms=%.3f max_ms=%.3f max_gap_ms=%.3f conns=%ld max_conns=%ld delivery_conns=%ld\n",
                         run_id, expected, received, unique_n, duplicates, stray, bad,
                         expected > 0 && unique_n == expected, (unsigned long long) first_ts,
                         (unsigned long long) last_recv, span, span > 0 ? (double) unique_n / span : 0,
                         pct_ms(v, n, 0.50), pct_ms(v, n, 0.90), pct_ms(v, n, 0.99),
                         n ? (double) v[n - 1] / 1e6 : 0, (double) max_gap / 1e6, conns, max_conns,
                         delivery_conns);
        free(v);
        return k;
}

static bool answer_stats(Conn *c) {
        char line[1024];
        int n = stats_line(line, sizeof line);
        return answer(c, "200 OK", "text/plain", line, (size_t) n, false);
}

/* Answers the waiter (if any) now. */
static void release_waiter(void);
static void process(Conn *c);
static void watch(Conn *c, uint32_t ev);

/*
 * The integer after the JSON key `key` in [p, p+n): "key": 123, also when
 * the JSON sits escaped inside a string (\"key\": 123).  false if absent.
 */
static bool find_number(const char *p, size_t n, const char *key, long long *ret) {
        size_t kl = strlen(key);
        const char *end = p + n;
        for (const char *s = p; s < end;) {
                const char *q = memmem(s, (size_t) (end - s), key, kl);
                if (!q)
                        return false;
                s = q + kl;
                if (q == p || q[-1] != '"')
                        continue;
                const char *v = q + kl;
                if (v < end && *v == '\\')
                        v++;
                if (v >= end || *v != '"')
                        continue;
                v++;
                while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'))
                        v++;
                if (v >= end || *v != ':')
                        continue;
                v++;
                while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'))
                        v++;
                if (v >= end || *v < '0' || *v > '9')
                        continue;
                long long x = 0;
                while (v < end && *v >= '0' && *v <= '9')
                        x = x * 10 + (*v++ - '0');
                *ret = x;
                return true;
        }
        return false;
}

static void record(Conn *c, const char *body, size_t blen, uint64_t now) {
        long long run, seq, ts;
        received++;
        if (c->run_seen != run_id) {
                c->run_seen = run_id;
                delivery_conns++;
        }
        if (!find_number(body, blen, "run", &run) || !find_number(body, blen, "seq", &seq) ||
            !find_number(body, blen, "ts", &ts)) {
                bad++;
                return;
        }
        if (run != run_id || seq < 0 || seq >= expected) {
                stray++;
                return;
        }
        if (lat[seq]) {
                duplicates++;
                return;
        }
        lat[seq] = (now > (uint64_t) ts ? now - (uint64_t) ts : 0) + 1;
        if (last_recv && now - last_recv > max_gap)
                max_gap = now - last_recv;
        unique_n++;
        if (!first_ts || (uint64_t) ts < first_ts)
                first_ts = (uint64_t) ts;
        last_recv = now;
        if (unique_n == expected)
                release_waiter();
}

/* "name=value" in the query string of target [t, t+n); -1 if absent. */
static long long query_num(const char *t, size_t n, const char *name) {
        const char *q = memchr(t, '?', n);
        size_t nl = strlen(name);
        if (!q)
                return -1;
        for (const char *p = q + 1; p < t + n;) {
                const char *amp = memchr(p, '&', (size_t) (t + n - p));
                const char *e = amp ? amp : t + n;
                if ((size_t) (e - p) > nl && strncmp(p, name, nl) == 0 && p[nl] == '=')
                        return strtoll(p + nl + 1, NULL, 10);
                p = e + 1;
        }
        return -1;
}

static bool path_is(const char *t, size_t n, const char *path) {
        size_t pl = strlen(path);
        return n >= pl && memcmp(t, path, pl) == 0 && (n == pl || t[pl] == '?');
}

/* POST /control/start: answers the previous run's final stats, then resets. */
static void control_start(Conn *c, const char *t, size_t tn) {
        long long r = query_num(t, tn, "run"), m = query_num(t, tn, "count");
        if (r < 0 || m < 1 || m > MAX_COUNT) {
                (void) answer(c, "400 Bad Request", "text/plain", "run and count required\n", 23, false);
                return;
        }
        uint64_t *l = calloc((size_t) m, sizeof *l);
        if (!l) {
                (void) answer(c, "500 Internal Server Error", "text/plain", "out of memory\n", 14, false);
                return;
        }
        release_waiter();
        (void) answer_stats(c);
        free(lat);
        lat = l;
        run_id = r;
        expected = m;
        received = unique_n = duplicates = stray = bad = 0;
        first_ts = last_recv = max_gap = 0;
        max_conns = conns;
        delivery_conns = 0;
}

typedef struct Request {
        const char *method, *target;
        size_t method_len, target_len;
        bool http10, has_length, conn_close, conn_keep_alive;
        uint64_t length;
} Request;

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

/* Parses the head [p, p+n); NULL when acceptable, else the status to answer. */
static const char *parse_head(const char *p, size_t n, Request *r) {
        const char *end = p + n, *eol, *sp1, *sp2;
        bool te = false;

        memset(r, 0, sizeof *r);
        eol = memchr(p, '\n', n);
        if (!eol)
                return "400 Bad Request";
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
                if (!colon || colon == l)
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
                } else if (IS("Transfer-Encoding")) {
                        te = true;
                } else if (IS("Connection")) {
                        r->conn_close |= has_token(v, vl, "close");
                        r->conn_keep_alive |= has_token(v, vl, "keep-alive");
                } else if (IS("Expect")) {
                        return "417 Expectation Failed"; /* mooringd sends "Expect:" (none) */
                }
#undef IS
                l = le + 1;
        }
        if (te)
                return "411 Length Required";
        if (r->length > MAX_BODY)
                return "413 Content Too Large";
        return NULL;
}

static void handle_request(Conn *c, const Request *r, const char *body, size_t blen, uint64_t now) {
        static const char success[] = "{\"status\":\"SUCCESS\"}";
        bool post = r->method_len == 4 && memcmp(r->method, "POST", 4) == 0;
        bool get = r->method_len == 3 && memcmp(r->method, "GET", 3) == 0;

        if (post && path_is(r->target, r->target_len, route)) {
                record(c, body, blen, now);
                (void) answer(c, "200 OK", "application/json", success, sizeof success - 1, false);
        } else if (get && path_is(r->target, r->target_len, "/dapr/subscribe")) {
                (void) answer(c, "200 OK", "application/json", subscribe_answer, strlen(subscribe_answer), false);
        } else if (post && path_is(r->target, r->target_len, "/control/start")) {
                control_start(c, r->target, r->target_len);
        } else if (get && path_is(r->target, r->target_len, "/control/stats")) {
                (void) answer_stats(c);
        } else if (get && path_is(r->target, r->target_len, "/control/wait")) {
                long long t = query_num(r->target, r->target_len, "timeout_ms");
                if (expected > 0 && unique_n == expected) {
                        (void) answer_stats(c);
                } else {
                        if (waiter != c)
                                release_waiter();
                        waiter = c;
                        wait_deadline = now + (uint64_t) (t > 0 ? t : 60000) * 1000000ULL;
                }
        } else {
                (void) answer(c, "200 OK", NULL, "", 0, false);
        }
}

/* The end of a header block ("\r\n\r\n") in p[0..n), or NULL. */
static const char *find_head_end(const char *p, size_t n) {
        for (size_t i = 0; i + 4 <= n; i++)
                if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
                        return p + i;
        return NULL;
}

/* Answer every complete request in [roff, rlen); stops at a pending wait. */
static void process(Conn *c) {
        uint64_t now = 0;
        while (!c->closing && waiter != c && c->rlen > c->roff && c->rbuf) {
                const char *p = c->rbuf + c->roff;
                size_t avail = c->rlen - c->roff;
                const char *hend = find_head_end(p, avail);
                if (!hend) {
                        if (avail > MAX_HEAD)
                                answer_error(c, "431 Request Header Fields Too Large");
                        break;
                }
                size_t hlen = (size_t) (hend + 4 - p);
                Request r;
                const char *badst = parse_head(p, hlen, &r);
                if (badst) {
                        answer_error(c, badst);
                        break;
                }
                size_t blen = (size_t) r.length;
                if (avail < hlen + blen) {
                        /* the body is still coming: make room for all of it */
                        if (c->roff > 0) {
                                memmove(c->rbuf, c->rbuf + c->roff, avail);
                                c->rlen = avail;
                                c->roff = 0;
                        }
                        if (!reserve(&c->rbuf, &c->rcap, hlen + blen + READ_CHUNK))
                                answer_error(c, "413 Content Too Large");
                        break;
                }
                if (!now)
                        now = now_ns();
                handle_request(c, &r, p + hlen, blen, now);
                c->roff += hlen + blen;
                if (r.conn_close || (r.http10 && !r.conn_keep_alive))
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
                if (c->closing && waiter != c) {
                        shutdown(c->fd, SHUT_WR);
                        conn_free(c);
                        return false;
                }
        }
        uint32_t ev = 0;
        if (!c->closing && waiter != c && c->wlen - c->woff < WRITE_HIGH)
                ev |= EPOLLIN;
        if (c->wlen > c->woff)
                ev |= EPOLLOUT;
        if (waiter == c)
                ev |= EPOLLRDHUP; /* notice a waiter that gives up */
        watch(c, ev);
        return true;
}

/* Answers the waiter now.  Never frees a connection (the caller may be in
 * the middle of an epoll batch): the answer goes out on the next EPOLLOUT. */
static void release_waiter(void) {
        Conn *w = waiter;
        if (!w)
                return;
        waiter = NULL;
        (void) answer_stats(w);
        process(w); /* whatever it pipelined behind the wait */
        watch(w, EPOLLOUT | (w->closing ? 0 : EPOLLIN));
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
                if (waiter == c) {
                        conn_free(c);
                        return;
                }
                process(c);
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
                                fprintf(stderr, "pubsub-sub: accept: %s\n", strerror(errno));
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
                        continue;
                }
                if (++conns > max_conns)
                        max_conns = conns;
        }
}

static bool name_ok(const char *s) {
        if (!*s || strlen(s) > 200)
                return false;
        for (; *s; s++)
                if (*s == '"' || *s == '\\' || (unsigned char) *s < 0x20 || *s == ' ')
                        return false;
        return true;
}

int main(int argc, char **argv) {
        char *end = NULL;
        long port = 0;

        if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
                printf("usage: pubsub-sub PORT PUBSUB [TOPIC [ROUTE]]\n"
                       "  the subscribing app of bench/pubsub.sh on 127.0.0.1:PORT (see bench/pubsub-sub.c)\n");
                return 0;
        }
        if (argc >= 3 && argc <= 5) {
                port = strtol(argv[1], &end, 10);
                pubsub_name = argv[2];
                if (argc >= 4)
                        topic = argv[3];
                if (argc >= 5)
                        route = argv[4];
        }
        if (argc < 3 || argc > 5 || end == argv[1] || *end || port < 1 || port > 65535 || !name_ok(pubsub_name) ||
            !name_ok(topic) || !name_ok(route) || route[0] != '/' || strchr(route, '?')) {
                fprintf(stderr, "usage: pubsub-sub PORT PUBSUB [TOPIC [ROUTE]]\n");
                return 2;
        }
        snprintf(subscribe_answer, sizeof subscribe_answer, "[{\"pubsubname\":\"%s\",\"topic\":\"%s\",\"route\":\"%s\"}]",
                 pubsub_name, topic, route);

        raise_nofile();
        on_stop_signals(on_signal);
        /* the listener is told apart from connections by a NULL pointer */
        int lfd = listen_loopback("pubsub-sub", port, &ep);
        if (lfd < 0)
                return 1;

        struct epoll_event evs[256];
        while (!stop) {
                int timeout = -1;
                if (waiter) {
                        uint64_t now = now_ns();
                        if (now >= wait_deadline) {
                                release_waiter();
                                continue;
                        }
                        timeout = (int) ((wait_deadline - now) / 1000000ULL) + 1;
                }
                int n = epoll_wait(ep, evs, 256, timeout);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("pubsub-sub: epoll_wait");
                        return 1;
                }
                for (int i = 0; i < n; i++) {
                        Conn *c = evs[i].data.ptr;
                        uint32_t e = evs[i].events;
                        if (!c) {
                                on_accept(lfd);
                                continue;
                        }
                        if (c == waiter) {
                                /* it waits for its answer and sends nothing: notice when it gives up */
                                if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                                        conn_free(c);
                                else if (e & EPOLLOUT)
                                        (void) flush(c);
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
