/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/rate-load.c - open-loop, constant-rate HTTP/1.1 POST load generator,
 * used by bench/invoke.sh for latency at a fixed load.  Not part of the
 * daemon; never installed.
 *
 *   rate-load --tcp HOST:PORT --rate R --duration S [--path P] [--warmup S]
 *             [--connections C] [--body-size B] [--drain S]
 *
 * Request k is due at t0 + k/R (evenly spaced, R per second), whatever
 * happened to the earlier ones: the schedule does not wait for answers
 * (open loop, like wrk2).  A due request goes out at once on an idle
 * keep-alive connection of a pool of C, opened before t0; when all C are
 * busy it waits for the first one to come free.  Each request is
 *   POST P HTTP/1.1 with a B-byte body (Content-Type: application/octet-stream)
 * and must be answered 200 with the same B bytes (an echo app).
 *
 * Latency runs from the moment the request was due to the last byte of its
 * answer, so time spent waiting for a free connection or for the generator
 * itself is counted (no coordinated omission).  "svc" latency runs from the
 * first byte written instead.  The first `warmup` seconds of the schedule
 * are sent but not recorded; then `duration` seconds are.  After the last
 * request went out, answers are awaited for at most `drain` seconds.
 *
 * Prints one line on stdout:
 *   target_rps=R rps=X sent=N measured=N ok=N p50_ms=X p90_ms=X p99_ms=X
 *   p999_ms=X max_ms=X svc_p50_ms=X svc_p99_ms=X bad_status=N bad_body=N
 *   errors=N unanswered=N reconnects=N late_1ms=N max_lag_ms=X
 * rps counts answers (to any request) received during the recorded window,
 * divided by its length.  late_1ms counts recorded requests written more
 * than 1 ms after they were due (the pool or the generator could not keep
 * up); max_lag_ms is the largest such delay.  Percentiles are nearest-rank
 * over the recorded requests that got an answer.  The first unexpected
 * answer and the first socket error are described on stderr.  Exit status
 * 0 when every recorded request got the expected answer, 1 otherwise, 2 on
 * usage errors.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define RBUF 131072
#define MAX_BODY 65536

typedef struct Conn {
        int fd;
        bool connected;          /* connect() finished */
        bool busy;               /* a request is in flight */
        bool want_out;           /* EPOLLOUT registered */
        bool in_idle;            /* on the idle stack */
        long k;                  /* index of the request in flight */
        uint64_t t_sent;         /* when its first byte was written */
        size_t woff;             /* bytes of the request written */
        char rbuf[RBUF];
        size_t rlen;
} Conn;

static const char *tcp_addr, *path = "/";
static double rate, duration, warmup = 1, drain = 5;
static long conc = 50, body_size = 1024;

static struct sockaddr_in target;
static char *req, *body;
static size_t req_len;

static int ep, tfd;
static uint64_t t0, rec_start, rec_end;  /* schedule origin; recorded window */
static long k_first, k_end;              /* recorded requests: [k_first, k_end) */
static long next_k, inflight;
static Conn *conns;
static long *idle, n_idle;               /* stack of idle connections (indices) */
static uint64_t *lat, *svc;              /* per recorded request; 0 = no answer */
static long n_sent, n_answers_in_window, n_ok, n_bad_status, n_bad_body, n_errors, n_reconnects, n_late;
static uint64_t max_lag;
static bool reported_answer, reported_error;

static uint64_t due(long k) {
        return t0 + (uint64_t) ((double) k * 1e9 / rate);
}

static bool recorded(long k) {
        return k >= k_first && k < k_end;
}

static void usage(FILE *f) {
        fprintf(f, "usage: rate-load --tcp HOST:PORT --rate R --duration S [--path P] [--warmup S]\n"
                   "                 [--connections C] [--body-size B] [--drain S]\n");
}

static void set_out(Conn *c, bool on) {
        if (c->want_out == on)
                return;
        c->want_out = on;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int open_conn(Conn *c) {
        int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *) &target, sizeof target) < 0 && errno != EINPROGRESS) {
                int e = errno;
                close(fd);
                return -e;
        }
        c->fd = fd;
        c->connected = false;
        c->busy = false;
        c->rlen = 0;
        c->want_out = true;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                int e = errno;
                close(fd);
                c->fd = -1;
                return -e;
        }
        return 0;
}

static void conn_error(Conn *c, const char *what, int err) {
        if (!reported_error) {
                reported_error = true;
                fprintf(stderr, "rate-load: first socket error: %s%s%s (request in flight: %s)\n", what,
                        err ? ": " : "", err ? strerror(err) : "", c->busy ? "yes" : "no");
        }
        if (c->busy) {
                /* the request in flight is lost */
                if (recorded(c->k))
                        n_errors++;
                c->busy = false;
                inflight--;
        }
}

static void make_idle(Conn *c);
static void leave_idle(Conn *c);

static void reconnect(Conn *c) {
        leave_idle(c);
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        c->connected = false;
        if (next_k >= k_end)
                return; /* nothing left to send */
        n_reconnects++;
        int r = open_conn(c);
        if (r < 0) {
                conn_error(c, "connect", -r);
                c->fd = -1;
        }
}

static void make_idle(Conn *c) {
        c->in_idle = true;
        idle[n_idle++] = c - conns;
}

/* An idle connection is going away (the server closed it): take it off the stack. */
static void leave_idle(Conn *c) {
        if (!c->in_idle)
                return;
        c->in_idle = false;
        for (long i = 0; i < n_idle; i++)
                if (idle[i] == c - conns) {
                        idle[i] = idle[--n_idle];
                        break;
                }
}

/* Write what is left of the request; returns false when the connection failed. */
static bool flush_out(Conn *c) {
        while (c->woff < req_len) {
                ssize_t w = send(c->fd, req + c->woff, req_len - c->woff, MSG_NOSIGNAL);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        conn_error(c, "send", errno);
                        reconnect(c);
                        return false;
                }
                c->woff += (size_t) w;
        }
        set_out(c, c->woff < req_len);
        return true;
}

static void send_next(Conn *c, uint64_t now) {
        long k = next_k++;
        uint64_t d = due(k);
        c->k = k;
        c->busy = true;
        c->woff = 0;
        c->t_sent = now;
        inflight++;
        n_sent++;
        if (recorded(k) && now > d) {
                uint64_t lag = now - d;
                if (lag > 1000000)
                        n_late++;
                if (lag > max_lag)
                        max_lag = lag;
        }
        (void) flush_out(c);
}

/* Case-insensitive search for header "name:" in [h, end); returns value start or NULL. */
/*
 * Try to parse one complete answer from c->rbuf.  Returns the bytes it takes
 * (> 0), 0 when more are needed, -1 when it is malformed.  *body_ok tells
 * whether the body equals the request's.  Interim 1xx answers are skipped.
 */
static long parse_response(Conn *c, int *status, bool *body_ok, bool *close_after) {
        const char *buf = c->rbuf;
        const char *hend = memmem(buf, c->rlen, "\r\n\r\n", 4);
        if (!hend)
                return c->rlen >= RBUF ? -1 : 0;
        if (c->rlen < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
                return -1;
        *status = atoi(buf + 9);
        size_t hlen = (size_t) (hend + 4 - buf);
        if (*status >= 100 && *status < 200) {
                *body_ok = false;
                return (long) hlen;
        }
        const char *hdrs = memchr(buf, '\n', (size_t) (hend - buf));
        hdrs = hdrs ? hdrs + 1 : hend;
        const char *cl = find_header(hdrs, hend + 2, "Content-Length");
        const char *te = find_header(hdrs, hend + 2, "Transfer-Encoding");
        const char *cn = find_header(hdrs, hend + 2, "Connection");
        *close_after = cn && strncasecmp(cn, "close", 5) == 0;
        if (te && strncasecmp(te, "chunked", 7) == 0) {
                size_t off = hlen, got = 0;
                bool same = true;
                for (;;) {
                        const char *eol = memmem(buf + off, c->rlen - off, "\r\n", 2);
                        if (!eol)
                                return c->rlen >= RBUF ? -1 : 0;
                        size_t sz = strtoul(buf + off, NULL, 16);
                        off = (size_t) (eol + 2 - buf);
                        if (sz == 0) {
                                const char *t = memmem(buf + off, c->rlen - off, "\r\n", 2);
                                if (!t)
                                        return c->rlen >= RBUF ? -1 : 0;
                                off = (size_t) (t + 2 - buf);
                                break;
                        }
                        if (off + sz + 2 > c->rlen)
                                return c->rlen >= RBUF ? -1 : 0;
                        if (got + sz > (size_t) body_size || memcmp(buf + off, body + got, sz) != 0)
                                same = false;
                        got += sz;
                        off += sz + 2;
                }
                *body_ok = same && got == (size_t) body_size;
                return (long) off;
        }
        size_t blen = cl ? strtoul(cl, NULL, 10) : 0;
        if (hlen + blen > RBUF)
                return -1;
        if (c->rlen < hlen + blen)
                return 0;
        *body_ok = blen == (size_t) body_size && memcmp(buf + hlen, body, blen) == 0;
        return (long) (hlen + blen);
}

static void on_answer(Conn *c, int status, bool body_ok, uint64_t now) {
        long k = c->k;
        c->busy = false;
        inflight--;
        if (now >= rec_start && now < rec_end)
                n_answers_in_window++;
        if (!recorded(k))
                return;
        lat[k - k_first] = now - due(k) + 1; /* +1: 0 means "no answer" */
        svc[k - k_first] = now - c->t_sent + 1;
        if (status != 200) {
                n_bad_status++;
                if (!reported_answer) {
                        reported_answer = true;
                        fprintf(stderr, "rate-load: first unexpected answer: HTTP %d: %.*s\n", status,
                                (int) (c->rlen > 300 ? 300 : c->rlen), c->rbuf);
                }
        } else if (!body_ok) {
                n_bad_body++;
                if (!reported_answer) {
                        reported_answer = true;
                        fprintf(stderr, "rate-load: first unexpected body (not the %ld bytes sent): %.*s\n", body_size,
                                (int) (c->rlen > 300 ? 300 : c->rlen), c->rbuf);
                }
        } else {
                n_ok++;
        }
}

static void handle(Conn *c, uint32_t events) {
        if (!c->connected) {
                if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                        return;
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err || (events & (EPOLLERR | EPOLLHUP))) {
                        conn_error(c, "connect", err);
                        reconnect(c);
                        return;
                }
                c->connected = true;
                set_out(c, false);
                make_idle(c);
                return;
        }
        if (c->busy && c->woff < req_len && (events & EPOLLOUT)) {
                if (!flush_out(c))
                        return;
        }
        if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                return;
        bool eof = false;
        for (;;) {
                ssize_t r = recv(c->fd, c->rbuf + c->rlen, RBUF - c->rlen, 0);
                if (r > 0) {
                        c->rlen += (size_t) r;
                        if (c->rlen < RBUF)
                                continue;
                        break;
                }
                if (r == 0) {
                        /* the server closed: take the answer it sent before, if any */
                        eof = true;
                        break;
                }
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN)
                        break;
                conn_error(c, "recv", errno);
                reconnect(c);
                return;
        }
        uint64_t now = now_ns();
        while (c->busy) {
                int status = 0;
                bool body_ok = false, close_after = false;
                long used = parse_response(c, &status, &body_ok, &close_after);
                if (used == 0)
                        break;
                if (used < 0) {
                        conn_error(c, "malformed HTTP response", 0);
                        reconnect(c);
                        return;
                }
                bool interim = status >= 100 && status < 200;
                if (!interim)
                        on_answer(c, status, body_ok, now);
                memmove(c->rbuf, c->rbuf + used, c->rlen - (size_t) used);
                c->rlen -= (size_t) used;
                if (interim)
                        continue;
                if (close_after) {
                        reconnect(c);
                        return;
                }
                if (eof)
                        break;
                make_idle(c);
                return;
        }
        if (eof) {
                if (c->busy)
                        conn_error(c, "server closed the connection during a request", 0);
                reconnect(c);
        }
}

static void arm_timer(uint64_t at) {
        static uint64_t armed;
        if (armed == at)
                return;
        armed = at;
        struct itimerspec its = { .it_value = { .tv_sec = (time_t) (at / 1000000000ULL),
                                                .tv_nsec = (long) (at % 1000000000ULL) } };
        timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Sorted answered latencies (the +1 marker removed); returns their count. */
static long answered(const uint64_t *src, long n, uint64_t *dst) {
        long m = 0;
        for (long i = 0; i < n; i++)
                if (src[i])
                        dst[m++] = src[i] - 1;
        qsort(dst, (size_t) m, sizeof *dst, cmp_u64);
        return m;
}

static bool parse_num(const char *v, double *out) {
        char *end;
        errno = 0;
        *out = strtod(v, &end);
        return errno == 0 && end != v && !*end;
}

int main(int argc, char **argv) {
        for (int i = 1; i < argc; i += 2) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                double x = 0;
                if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                        usage(stdout);
                        return 0;
                }
                if (!v) {
                        usage(stderr);
                        return 2;
                }
                if (!strcmp(a, "--tcp"))
                        tcp_addr = v;
                else if (!strcmp(a, "--path"))
                        path = v;
                else if (!strcmp(a, "--rate") && parse_num(v, &rate))
                        ;
                else if (!strcmp(a, "--duration") && parse_num(v, &duration))
                        ;
                else if (!strcmp(a, "--warmup") && parse_num(v, &warmup))
                        ;
                else if (!strcmp(a, "--drain") && parse_num(v, &drain))
                        ;
                else if (!strcmp(a, "--connections") && parse_num(v, &x))
                        conc = (long) x;
                else if (!strcmp(a, "--body-size") && parse_num(v, &x))
                        body_size = (long) x;
                else {
                        usage(stderr);
                        return 2;
                }
        }
        if (!tcp_addr || rate <= 0 || rate > 1e7 || duration <= 0 || warmup < 0 || drain <= 0 || conc < 1 ||
            conc > 10000 || body_size < 0 || body_size > MAX_BODY || path[0] != '/' || strlen(path) > 1000 ||
            strpbrk(path, " \r\n")) {
                usage(stderr);
                return 2;
        }
        {
                char host[64];
                const char *colon = strrchr(tcp_addr, ':');
                if (!colon || (size_t) (colon - tcp_addr) >= sizeof host) {
                        fprintf(stderr, "rate-load: bad --tcp address: %s\n", tcp_addr);
                        return 2;
                }
                memcpy(host, tcp_addr, (size_t) (colon - tcp_addr));
                host[colon - tcp_addr] = 0;
                target.sin_family = AF_INET;
                target.sin_port = htons((uint16_t) atoi(colon + 1));
                if (inet_pton(AF_INET, host, &target.sin_addr) != 1 || !target.sin_port) {
                        fprintf(stderr, "rate-load: bad --tcp address: %s\n", tcp_addr);
                        return 2;
                }
        }

        /* the request, the same for every k; the body cycles through a-z */
        body = malloc((size_t) body_size + 1);
        req = malloc(strlen(path) + strlen(tcp_addr) + 200 + (size_t) body_size);
        if (!body || !req) {
                perror("rate-load");
                return 2;
        }
        for (long i = 0; i < body_size; i++)
                body[i] = (char) ('a' + i % 26);
        int hl = sprintf(req,
                         "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
                         "Content-Length: %ld\r\n\r\n",
                         path, tcp_addr, body_size);
        memcpy(req + hl, body, (size_t) body_size);
        req_len = (size_t) hl + (size_t) body_size;

        k_first = (long) (warmup * rate);
        k_end = k_first + (long) (duration * rate);
        if (k_end <= k_first) {
                fprintf(stderr, "rate-load: --rate x --duration must be at least 1 request\n");
                return 2;
        }
        lat = calloc((size_t) (k_end - k_first), sizeof *lat);
        svc = calloc((size_t) (k_end - k_first), sizeof *svc);
        conns = calloc((size_t) conc, sizeof *conns);
        idle = calloc((size_t) conc, sizeof *idle);
        if (!lat || !svc || !conns || !idle) {
                perror("rate-load");
                return 2;
        }

        /* timers as exact as the kernel allows (the default slack is 50 us) */
        (void) prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
        ep = epoll_create1(EPOLL_CLOEXEC);
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (ep < 0 || tfd < 0) {
                perror("rate-load: epoll/timerfd");
                return 2;
        }
        struct epoll_event tev = { .events = EPOLLIN, .data.ptr = NULL };
        epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

        /* open the pool; the schedule starts once every connection is up */
        for (long i = 0; i < conc; i++) {
                conns[i].fd = -1;
                int r = open_conn(&conns[i]);
                if (r < 0) {
                        fprintf(stderr, "rate-load: connect %s: %s\n", tcp_addr, strerror(-r));
                        return 1;
                }
        }
        struct epoll_event evs[256];
        uint64_t limit = now_ns() + 5000000000ULL;
        while (n_idle < conc) {
                if (now_ns() > limit) {
                        fprintf(stderr, "rate-load: only %ld of %ld connections to %s came up within 5 s\n", n_idle,
                                conc, tcp_addr);
                        return 1;
                }
                int n = epoll_wait(ep, evs, 256, 100);
                for (int i = 0; i < n; i++)
                        if (evs[i].data.ptr)
                                handle(evs[i].data.ptr, evs[i].events);
                if (reported_error) {
                        fprintf(stderr, "rate-load: could not open the connection pool to %s\n", tcp_addr);
                        return 1;
                }
        }
        n_reconnects = 0;

        t0 = now_ns() + 1000000;
        rec_start = due(k_first);
        rec_end = due(k_end);
        uint64_t give_up = rec_end + (uint64_t) (drain * 1e9);
        for (;;) {
                uint64_t now = now_ns();
                while (next_k < k_end && n_idle > 0 && due(next_k) <= now) {
                        Conn *c = &conns[idle[--n_idle]];
                        c->in_idle = false;
                        send_next(c, now);
                }
                if (next_k >= k_end && inflight == 0)
                        break;
                if (now >= give_up)
                        break;
                long live = 0;
                for (long i = 0; i < conc; i++)
                        live += conns[i].fd >= 0;
                if (live == 0) {
                        fprintf(stderr, "rate-load: every connection failed\n");
                        break;
                }
                if (next_k < k_end && n_idle > 0)
                        arm_timer(due(next_k));
                int n = epoll_wait(ep, evs, 256, 100);
                if (n < 0 && errno != EINTR) {
                        perror("rate-load: epoll_wait");
                        return 1;
                }
                for (int i = 0; i < n; i++) {
                        Conn *c = evs[i].data.ptr;
                        if (!c) {
                                uint64_t exp;
                                if (read(tfd, &exp, sizeof exp) < 0 && errno != EAGAIN)
                                        perror("rate-load: timerfd");
                                continue;
                        }
                        if (c->fd >= 0)
                                handle(c, evs[i].events);
                }
        }

        long nrec = k_end - k_first;
        uint64_t *v = calloc((size_t) nrec, sizeof *v), *s = calloc((size_t) nrec, sizeof *s);
        if (!v || !s) {
                perror("rate-load");
                return 2;
        }
        long nv = answered(lat, nrec, v), ns = answered(svc, nrec, s);
        long unanswered = nrec - nv - n_errors;
        if (unanswered < 0)
                unanswered = 0;
        double window = (double) (rec_end - rec_start) / 1e9;
        printf("target_rps=%.1f rps=%.1f sent=%ld measured=%ld ok=%ld p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f "
               "p999_ms=%.3f max_ms=%.3f svc_p50_ms=%.3f svc_p99_ms=%.3f bad_status=%ld bad_body=%ld errors=%ld "
               "unanswered=%ld reconnects=%ld late_1ms=%ld max_lag_ms=%.3f\n",
               rate, window > 0 ? (double) n_answers_in_window / window : 0, n_sent, nrec, n_ok, pct_ms(v, nv, 0.50),
               pct_ms(v, nv, 0.90), pct_ms(v, nv, 0.99), pct_ms(v, nv, 0.999), nv ? (double) v[nv - 1] / 1e6 : 0,
               pct_ms(s, ns, 0.50), pct_ms(s, ns, 0.99), n_bad_status, n_bad_body, n_errors, unanswered,
               n_reconnects, n_late, (double) max_lag / 1e6);
        if (unanswered > 0)
                fprintf(stderr, "rate-load: %ld recorded requests got no answer within %.1f s of the last send\n",
                        unanswered, drain);
        fflush(stdout);
        for (long i = 0; i < conc; i++)
                if (conns[i].fd >= 0)
                        close(conns[i].fd);
        free(v);
        free(s);
        return n_ok == nrec ? 0 : 1;
}
