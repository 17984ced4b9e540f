/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/pubsub-pub.c - the publisher of bench/pubsub.sh: Dapr publish
 * requests over HTTP/1.1 keep-alive, closed loop (as fast as answers come)
 * or open loop at a fixed rate.  Not part of the daemon; never installed.
 *
 *   pubsub-pub (--tcp HOST:PORT | --unix PATH) --pubsub NAME --run R --count M
 *              [--topic T] [--connections C] [--rate R] [--size B]
 *              [--max-seconds S]
 *
 * Message k (0 <= k < M) is
 *   POST /v1.0/publish/NAME/T HTTP/1.1   (Content-Type: application/json)
 *   {"run":R,"seq":k,"ts":<ns>,"pad":"xxx..."}       exactly B bytes (1024)
 * and must be answered 204 (the broker stored it).  ts is CLOCK_MONOTONIC in
 * ns, the clock bench/pubsub-sub.c reads when the message reaches it.
 *
 * Closed loop (no --rate): C connections, one request in flight on each, a
 * new one written as soon as an answer arrives, until M were sent.  ts is
 * the time the request is written.  Open loop (--rate R): message k is due
 * at t0 + k/R whatever happened to the others (like bench/rate-load.c); it
 * goes out at once on an idle connection of the pool of C, opened before t0,
 * or waits for one to come free.  ts is the time it was due, so waiting for
 * a connection counts in every latency.
 *
 * Everything runs on one thread with epoll.  Prints one line on stdout:
 *   sent=N ok=N pub_rps=X p50_ms=X p99_ms=X max_ms=X svc_p50_ms=X svc_p99_ms=X
 *   bad_status=N errors=N reconnects=N elapsed_s=X late_1ms=N max_lag_ms=X
 *   timed_out=0|1
 * pub_rps = ok / (last answer - first write).  The percentiles (nearest
 * rank over answered requests) are the publish latency: from ts to the
 * last byte of the answer; svc_ ones from the first byte written instead
 * (the same in the closed loop).  errors counts requests lost to socket errors
 * (they are not sent again); late_1ms the open-loop requests written more
 * than 1 ms after they were due (max_lag_ms the largest delay).  The first
 * unexpected answer and the first socket error are described on stderr.
 * Exit status 0 when all M got 204, 1 otherwise, 2 on usage errors.
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define RBUF 65536
#define MAX_SIZE 65536

typedef struct Conn {
        int fd;
        bool connected;          /* connect() finished */
        bool busy;               /* a request is in flight */
        bool want_out;           /* EPOLLOUT registered */
        bool in_idle;            /* on the idle stack */
        long k;                  /* message in flight */
        uint64_t t0;             /* its ts (latency origin) */
        uint64_t t_write;        /* when its first byte was written */
        char *wbuf;              /* the request */
        size_t wlen, woff;
        char rbuf[RBUF];
        size_t rlen;
} Conn;

static const char *unix_path, *tcp_addr, *pubsub_name, *topic = "bench";
static long run_id = -1, count, conc = 64, size = 1024;
static double rate, max_seconds = 120;

static struct sockaddr_storage target;
static socklen_t target_len;
static char head[512];
static size_t head_len;

static int ep, tfd;
static Conn *conns;
static long *idle, n_idle;
static long next_k, inflight, n_ok, n_bad_status, n_errors, n_reconnects, n_late, n_answered;
static uint64_t *lat, *svc;              /* per message: latency (from ts / from the write) + 1; 0 = no answer */
static uint64_t t_sched, t_first, t_last, max_lag;
static bool reported_answer, reported_error;
static volatile sig_atomic_t stop;

static uint64_t due(long k) {
        return t_sched + (uint64_t) ((double) k * 1e9 / rate);
}

static void on_signal(int sig) {
        (void) sig;
        stop = 1;
}

static void usage(FILE *f) {
        fprintf(f, "usage: pubsub-pub (--tcp HOST:PORT | --unix PATH) --pubsub NAME --run R --count M\n"
                   "                  [--topic T] [--connections C] [--rate R] [--size B] [--max-seconds S]\n");
}

static void set_out(Conn *c, bool on) {
        if (c->want_out == on)
                return;
        c->want_out = on;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int open_conn(Conn *c) {
        int fd = socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
        if (fd < 0)
                return -errno;
        if (target.ss_family == AF_INET)
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *) &target, target_len) < 0 && errno != EINPROGRESS && errno != EAGAIN) {
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

static void make_idle(Conn *c) {
        c->in_idle = true;
        idle[n_idle++] = c - conns;
}

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

static void conn_error(Conn *c, const char *what, int err) {
        if (!reported_error) {
                reported_error = true;
                fprintf(stderr, "pubsub-pub: first socket error: %s%s%s (request in flight: %s)\n", what,
                        err ? ": " : "", err ? strerror(err) : "", c->busy ? "yes" : "no");
        }
        if (c->busy) {
                n_errors++; /* that message is lost: not sent again */
                c->busy = false;
                inflight--;
        }
}

static void reconnect(Conn *c) {
        leave_idle(c);
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        c->connected = false;
        if (next_k >= count || stop)
                return;
        n_reconnects++;
        int r = open_conn(c);
        if (r < 0) {
                conn_error(c, "connect", -r);
                c->fd = -1;
        }
}

static bool flush_out(Conn *c) {
        while (c->woff < c->wlen) {
                ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
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
        set_out(c, c->woff < c->wlen);
        return true;
}

/* Writes message next_k on c; ts is `now` (closed loop) or its due time. */
static void send_next(Conn *c, uint64_t now) {
        long k = next_k++;
        uint64_t ts = now;
        if (rate > 0) {
                ts = due(k);
                if (now > ts) {
                        uint64_t lag = now - ts;
                        if (lag > 1000000)
                                n_late++;
                        if (lag > max_lag)
                                max_lag = lag;
                }
        }
        if (!t_first)
                t_first = now;
        /* the body: exactly `size` bytes */
        char *b = c->wbuf + head_len;
        int n = snprintf(b, (size_t) size + 1, "{\"run\":%ld,\"seq\":%ld,\"ts\":%llu,\"pad\":\"", run_id, k,
                         (unsigned long long) ts);
        memset(b + n, 'x', (size_t) (size - n - 2));
        b[size - 2] = '"';
        b[size - 1] = '}';
        c->k = k;
        c->t0 = ts;
        c->t_write = now;
        c->busy = true;
        c->woff = 0;
        c->wlen = head_len + (size_t) size;
        inflight++;
        (void) flush_out(c);
}

/* One complete answer in c->rbuf: bytes it takes (> 0), 0 if more are needed, -1 if malformed. */
static long parse_response(Conn *c, int *status, bool *close_after) {
        const char *buf = c->rbuf;
        const char *hend = memmem(buf, c->rlen, "\r\n\r\n", 4);
        if (!hend)
                return c->rlen >= RBUF ? -1 : 0;
        if (c->rlen < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
                return -1;
        *status = atoi(buf + 9);
        size_t hlen = (size_t) (hend + 4 - buf);
        if (*status >= 100 && *status < 200)
                return (long) hlen;
        const char *hdrs = memchr(buf, '\n', (size_t) (hend - buf));
        hdrs = hdrs ? hdrs + 1 : hend;
        const char *cl = find_header(hdrs, hend + 2, "Content-Length");
        const char *te = find_header(hdrs, hend + 2, "Transfer-Encoding");
        const char *cn = find_header(hdrs, hend + 2, "Connection");
        *close_after = cn && strncasecmp(cn, "close", 5) == 0;
        if (te && strncasecmp(te, "chunked", 7) == 0) {
                size_t off = hlen;
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
                                return (long) (t + 2 - buf);
                        }
                        if (off + sz + 2 > c->rlen)
                                return c->rlen >= RBUF ? -1 : 0;
                        off += sz + 2;
                }
        }
        size_t blen = (*status == 204 || *status == 304) ? 0 : cl ? strtoul(cl, NULL, 10) : 0;
        if (hlen + blen > RBUF)
                return -1;
        if (c->rlen < hlen + blen)
                return 0;
        return (long) (hlen + blen);
}

static void on_answer(Conn *c, int status, uint64_t now) {
        c->busy = false;
        inflight--;
        n_answered++;
        t_last = now;
        lat[c->k] = (now > c->t0 ? now - c->t0 : 0) + 1;
        svc[c->k] = (now > c->t_write ? now - c->t_write : 0) + 1;
        if (status == 204) {
                n_ok++;
        } else {
                n_bad_status++;
                if (!reported_answer) {
                        /* on one line: CR and LF shown as spaces */
                        char text[401];
                        size_t n = c->rlen > 400 ? 400 : c->rlen;
                        for (size_t i = 0; i < n; i++)
                                text[i] = c->rbuf[i] == '\r' || c->rbuf[i] == '\n' ? ' ' : c->rbuf[i];
                        text[n] = 0;
                        reported_answer = true;
                        fprintf(stderr, "pubsub-pub: first unexpected answer (seq %ld): %s\n", c->k, text);
                }
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
        if (c->busy && c->woff < c->wlen && (events & EPOLLOUT)) {
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
                bool close_after = false;
                long used = parse_response(c, &status, &close_after);
                if (used == 0)
                        break;
                if (used < 0) {
                        conn_error(c, "malformed HTTP response", 0);
                        reconnect(c);
                        return;
                }
                bool interim = status >= 100 && status < 200;
                if (!interim)
                        on_answer(c, status, now);
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

static bool parse_num(const char *v, double *out) {
        char *end;
        errno = 0;
        *out = strtod(v, &end);
        return errno == 0 && end != v && !*end;
}

static bool name_ok(const char *s) {
        if (!s || !*s || strlen(s) > 200)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      strchr("-_.~", *s)))
                        return false;
        return true;
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
                else if (!strcmp(a, "--unix"))
                        unix_path = v;
                else if (!strcmp(a, "--pubsub"))
                        pubsub_name = v;
                else if (!strcmp(a, "--topic"))
                        topic = v;
                else if (!strcmp(a, "--run") && parse_num(v, &x))
                        run_id = (long) x;
                else if (!strcmp(a, "--count") && parse_num(v, &x))
                        count = (long) x;
                else if (!strcmp(a, "--connections") && parse_num(v, &x))
                        conc = (long) x;
                else if (!strcmp(a, "--rate") && parse_num(v, &rate))
                        ;
                else if (!strcmp(a, "--size") && parse_num(v, &x))
                        size = (long) x;
                else if (!strcmp(a, "--max-seconds") && parse_num(v, &max_seconds))
                        ;
                else {
                        usage(stderr);
                        return 2;
                }
        }
        if (!!tcp_addr == !!unix_path || !name_ok(pubsub_name) || !name_ok(topic) || run_id < 0 || count < 1 ||
            count > 100000000L || conc < 1 || conc > 10000 || size < 128 || size > MAX_SIZE || rate < 0 ||
            rate > 1e7 || max_seconds <= 0) {
                usage(stderr);
                return 2;
        }
        if (unix_path) {
                struct sockaddr_un *sa = (struct sockaddr_un *) &target;
                if (strlen(unix_path) >= sizeof sa->sun_path) {
                        fprintf(stderr, "pubsub-pub: socket path too long: %s\n", unix_path);
                        return 2;
                }
                sa->sun_family = AF_UNIX;
                strcpy(sa->sun_path, unix_path);
                target_len = sizeof *sa;
        } else {
                struct sockaddr_in *sa = (struct sockaddr_in *) &target;
                char host[64];
                const char *colon = strrchr(tcp_addr, ':');
                if (!colon || (size_t) (colon - tcp_addr) >= sizeof host) {
                        fprintf(stderr, "pubsub-pub: bad --tcp address: %s\n", tcp_addr);
                        return 2;
                }
                memcpy(host, tcp_addr, (size_t) (colon - tcp_addr));
                host[colon - tcp_addr] = 0;
                sa->sin_family = AF_INET;
                sa->sin_port = htons((uint16_t) atoi(colon + 1));
                if (inet_pton(AF_INET, host, &sa->sin_addr) != 1 || !sa->sin_port) {
                        fprintf(stderr, "pubsub-pub: bad --tcp address: %s\n", tcp_addr);
                        return 2;
                }
                target_len = sizeof *sa;
        }
        head_len = (size_t) snprintf(head, sizeof head,
                                     "POST /v1.0/publish/%s/%s HTTP/1.1\r\nHost: %s\r\n"
                                     "Content-Type: application/json\r\nContent-Length: %ld\r\n\r\n",
                                     pubsub_name, topic, tcp_addr ? tcp_addr : "localhost", size);

        lat = calloc((size_t) count, sizeof *lat);
        svc = calloc((size_t) count, sizeof *svc);
        conns = calloc((size_t) conc, sizeof *conns);
        idle = calloc((size_t) conc, sizeof *idle);
        if (!lat || !svc || !conns || !idle) {
                perror("pubsub-pub");
                return 2;
        }
        for (long i = 0; i < conc; i++) {
                conns[i].fd = -1;
                conns[i].wbuf = malloc(head_len + (size_t) size + 64);
                if (!conns[i].wbuf) {
                        perror("pubsub-pub");
                        return 2;
                }
                memcpy(conns[i].wbuf, head, head_len);
        }

        struct sigaction sa = { .sa_handler = on_signal };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        (void) prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
        ep = epoll_create1(EPOLL_CLOEXEC);
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (ep < 0 || tfd < 0) {
                perror("pubsub-pub: epoll/timerfd");
                return 2;
        }
        struct epoll_event tev = { .events = EPOLLIN, .data.ptr = NULL };
        epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

        /* open the pool; sending starts once every connection is up */
        for (long i = 0; i < conc; i++) {
                int r = open_conn(&conns[i]);
                if (r < 0) {
                        fprintf(stderr, "pubsub-pub: connect %s: %s\n", tcp_addr ? tcp_addr : unix_path, strerror(-r));
                        return 1;
                }
        }
        struct epoll_event evs[256];
        uint64_t limit = now_ns() + 5000000000ULL;
        while (n_idle < conc) {
                if (now_ns() > limit || stop) {
                        fprintf(stderr, "pubsub-pub: only %ld of %ld connections came up within 5 s\n", n_idle, conc);
                        return 1;
                }
                int n = epoll_wait(ep, evs, 256, 100);
                for (int i = 0; i < n; i++)
                        if (evs[i].data.ptr)
                                handle(evs[i].data.ptr, evs[i].events);
                if (reported_error) {
                        fprintf(stderr, "pubsub-pub: could not open the connection pool\n");
                        return 1;
                }
        }
        n_reconnects = 0;

        t_sched = now_ns() + 1000000;
        uint64_t give_up = t_sched + (uint64_t) (max_seconds * 1e9);
        bool timed_out = false;
        for (;;) {
                uint64_t now = now_ns();
                while (next_k < count && n_idle > 0 && !stop && (rate <= 0 || due(next_k) <= now)) {
                        Conn *c = &conns[idle[--n_idle]];
                        c->in_idle = false;
                        send_next(c, now);
                        if (rate > 0)
                                now = now_ns();
                }
                if ((next_k >= count || stop) && inflight == 0)
                        break;
                if (now >= give_up) {
                        timed_out = true;
                        break;
                }
                long live = 0;
                for (long i = 0; i < conc; i++)
                        live += conns[i].fd >= 0;
                if (live == 0) {
                        fprintf(stderr, "pubsub-pub: every connection failed\n");
                        break;
                }
                if (rate > 0 && next_k < count && n_idle > 0)
                        arm_timer(due(next_k));
                int n = epoll_wait(ep, evs, 256, 100);
                if (n < 0 && errno != EINTR) {
                        perror("pubsub-pub: epoll_wait");
                        return 1;
                }
                for (int i = 0; i < n; i++) {
                        Conn *c = evs[i].data.ptr;
                        if (!c) {
                                uint64_t exp;
                                if (read(tfd, &exp, sizeof exp) < 0 && errno != EAGAIN)
                                        perror("pubsub-pub: timerfd");
                                continue;
                        }
                        if (c->fd >= 0)
                                handle(c, evs[i].events);
                }
        }

        uint64_t *v = malloc((size_t) count * sizeof *v), *w = malloc((size_t) count * sizeof *w);
        if (!v || !w) {
                perror("pubsub-pub");
                return 2;
        }
        long nv = 0;
        for (long i = 0; i < count; i++)
                if (lat[i]) {
                        v[nv] = lat[i] - 1;
                        w[nv++] = svc[i] - 1;
                }
        qsort(v, (size_t) nv, sizeof *v, cmp_u64);
        qsort(w, (size_t) nv, sizeof *w, cmp_u64);
        double elapsed = t_last > t_first ? (double) (t_last - t_first) / 1e9 : 0;
        printf("sent=%ld ok=%ld pub_rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f svc_p50_ms=%.3f svc_p99_ms=%.3f "
               "bad_status=%ld errors=%ld reconnects=%ld elapsed_s=%.3f late_1ms=%ld max_lag_ms=%.3f timed_out=%d\n",
               next_k, n_ok, elapsed > 0 ? (double) n_ok / elapsed : 0, pct_ms(v, nv, 0.50), pct_ms(v, nv, 0.99),
               nv ? (double) v[nv - 1] / 1e6 : 0, pct_ms(w, nv, 0.50), pct_ms(w, nv, 0.99), n_bad_status, n_errors,
               n_reconnects, elapsed, n_late, (double) max_lag / 1e6, timed_out);
        fflush(stdout);
        for (long i = 0; i < conc; i++)
                if (conns[i].fd >= 0)
                        close(conns[i].fd);
        free(v);
        free(w);
        return n_ok == count ? 0 : 1;
}
