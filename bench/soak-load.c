/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/soak-load.c - one kind of traffic of bench/soak.sh, at a steady rate
 * for a long time, with cumulative counters the script samples while it
 * runs.  Not part of the daemon; never installed.
 *
 *   soak-load --kind state|invoke|publish|idle|abort (--unix PATH | --tcp HOST:PORT)
 *             --duration S --stats FILE [--rate R] [--connections C]
 *             [--store NAME] [--app ID] [--pubsub NAME] [--topic T] [--run N]
 *             [--keys K] [--size B] [--interval S] [--timeout S] [--drain S]
 *
 * Kinds (each process runs one; bench/soak.sh starts one of each):
 *   state    R requests/s on C keep-alive connections, alternately
 *            POST /v1.0/state/STORE [{"key":"soak-<i>","value":"vvv..."}] -> 204
 *            GET  /v1.0/state/STORE/soak-<i> -> 200 "vvv..." (or 204: not saved yet)
 *   invoke   R requests/s of POST /v1.0/invoke/APP/method/echo with a B-byte
 *            body, answered 200 with the same bytes (bench/echo-app.c)
 *   publish  R requests/s of POST /v1.0/publish/PUBSUB/T, a B-byte body
 *            {"run":N,"seq":k,"ts":ns,"pad":"xx..."} as bench/pubsub-pub.c
 *            sends (so bench/pubsub-sub.c counts the deliveries) -> 204
 *   idle     C keep-alive connections that stay open the whole run and each
 *            send GET /v1.0/healthz (-> 204) once every S seconds (--interval,
 *            at a random phase), enough to stay under the server's idle
 *            timeout: mostly idle connections, held open
 *   abort    R connections/s, at most C at once, each sending part of a
 *            request and then going away; the variants take turns:
 *              0 half of a state save's header
 *              1 a state save's header and half of its body
 *              2 an invocation's header and half of its body
 *              3 a publish's header and half of its body (run 0: stray)
 *              4 a whole invocation, gone before the answer
 *              5 a whole state save (key soak-abort-<i>), gone before the answer
 *            held open 0, 25 or 50 ms, then closed with a FIN or a RST
 *            (SO_LINGER 0), in turns.  Nothing is read from them.
 *
 * Pacing (state, invoke, publish): request k is due at t0 + k/R; it goes out
 * on an idle connection of the pool, or waits for one.  A backlog of more
 * than one second of requests is dropped and counted as "skipped" (the
 * daemon or this client could not keep up), so that a slow phase does not
 * turn into a burst after it.  A request not answered within --timeout
 * seconds counts as a timeout and its connection is replaced.
 *
 * Every second and at the end, FILE is replaced (write + rename) with one
 * line of cumulative counters:
 *   kind=K t_s=X sent=N answered=N ok=N s5xx=N s4xx=N bad_status=N
 *   bad_body=N errors=N timeouts=N unanswered=N reconnects=N
 *   server_closed=N skipped=N connect_errors=N attempts=N aborted=N
 * answered: requests that got a complete answer (any status); ok: the
 * expected one; s5xx, s4xx: by status class; bad_status: any other
 * unexpected status (s5xx and s4xx included); bad_body: the expected status
 * with a wrong body; errors: connections the server closed or reset while a
 * request was in flight, or answers that could not be parsed; unanswered:
 * requests still in flight at the end of the drain; server_closed: idle
 * keep-alive connections the server closed; attempts/aborted: abort kind.
 * The first 20 unexpected events are described on stderr with the time since
 * the start.  The same line goes to stdout at the end.  Exit status 0 when
 * every request got the expected answer (abort: always, unless it could not
 * connect at all), 1 otherwise, 2 on usage errors.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
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

#define HEAD_MAX 8192
#define TICK_NS 5000000ULL            /* pacing, timeouts and holds: every 5 ms */
#define RETRY_NS 100000000ULL         /* a failed connect is retried after 100 ms */
#define MAX_REPORTS 20

enum { K_STATE, K_INVOKE, K_PUBLISH, K_IDLE, K_ABORT };
static const char *const kind_names[] = { "state", "invoke", "publish", "idle", "abort" };

enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY, C_HOLD };
enum { OP_SAVE, OP_GET, OP_INVOKE, OP_PUBLISH, OP_PING };

typedef struct Conn {
        int fd;
        int st;
        bool want_out;            /* EPOLLOUT registered */
        bool in_idle;             /* on the idle stack */
        int op;                   /* request in flight */
        long k;                   /* its number */
        uint64_t t_sent;          /* when it went out (timeouts) */
        uint64_t next_ping;       /* idle kind: when to send the next healthz */
        uint64_t retry_at;        /* C_DOWN: when to connect again */
        uint64_t close_at;        /* C_HOLD: when to go away */
        int variant, rst;         /* abort kind */
        char *wbuf;               /* the request: [woff, wlen) still to write */
        size_t wlen, woff, wcap;
        char *rbuf;
        size_t rlen, rcap;
} Conn;

static int kind = -1;
static const char *unix_path, *tcp_addr, *stats_path;
static const char *store = "statestore", *app = "echo", *pubsub_name = "pubsub", *topic = "soak";
static double rate, duration, interval = 30, timeout_s = 30, drain_s = 5;
static long conc = -1, n_keys = 1000, body_size = -1, run_id = 1;

static struct sockaddr_storage target;
static socklen_t target_len;
static int ep;
static Conn **conns;
static Conn **idle_stack;
static long n_idle;
static uint64_t t0;
static char *value;               /* body_size 'v' characters (state values) */
static char *get_expect;          /* "\"vvv...\"" */
static size_t get_expect_len;

static struct {
        long sent, answered, ok, s5xx, s4xx, bad_status, bad_body, errors, timeouts, unanswered;
        long reconnects, server_closed, skipped, connect_errors, attempts, aborted;
} n;
static long slots;                /* paced kinds: requests sent or skipped so far */
static int reports;

static double since_start(void) {
        return (double) (now_ns() - t0) / 1e9;
}

/* The first few unexpected events, with when they happened: what the soak
 * report quotes when something went wrong. */
__attribute__((format(printf, 1, 2))) static void report(const char *fmt, ...) {
        if (reports >= MAX_REPORTS)
                return;
        if (++reports == MAX_REPORTS)
                fprintf(stderr, "soak-load[%s]: (further events are only counted)\n", kind_names[kind]);
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "soak-load[%s]: t=%.1fs: ", kind_names[kind], since_start());
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

static void stats_line(char *buf, size_t size) {
        snprintf(buf, size,
                 "kind=%s t_s=%.1f sent=%ld answered=%ld ok=%ld s5xx=%ld s4xx=%ld bad_status=%ld bad_body=%ld "
                 "errors=%ld timeouts=%ld unanswered=%ld reconnects=%ld server_closed=%ld skipped=%ld "
                 "connect_errors=%ld attempts=%ld aborted=%ld\n",
                 kind_names[kind], since_start(), n.sent, n.answered, n.ok, n.s5xx, n.s4xx, n.bad_status,
                 n.bad_body, n.errors, n.timeouts, n.unanswered, n.reconnects, n.server_closed, n.skipped,
                 n.connect_errors, n.attempts, n.aborted);
}

/* Replaced, never rewritten in place: the script never reads half a line. */
static void write_stats(void) {
        char line[1024], tmp[4096];
        stats_line(line, sizeof line);
        snprintf(tmp, sizeof tmp, "%s.tmp", stats_path);
        FILE *f = fopen(tmp, "we");
        if (!f)
                return;
        fputs(line, f);
        if (fclose(f) == 0)
                (void) rename(tmp, stats_path);
}

static bool reserve(char **buf, size_t *cap, size_t need) {
        if (need <= *cap)
                return true;
        char *p = realloc(*buf, need);
        if (!p)
                return false;
        *buf = p;
        *cap = need;
        return true;
}

static void set_out(Conn *c, bool out) {
        if (c->want_out == out)
                return;
        struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = out;
}

static void push_idle(Conn *c) {
        if (!c->in_idle) {
                idle_stack[n_idle++] = c;
                c->in_idle = true;
        }
}

static void conn_close(Conn *c, bool rst) {
        if (c->fd >= 0) {
                if (rst) {
                        struct linger l = { .l_onoff = 1, .l_linger = 0 };
                        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
                }
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
        }
        if (c->in_idle) {
                for (long i = 0; i < n_idle; i++)
                        if (idle_stack[i] == c) {
                                idle_stack[i] = idle_stack[--n_idle];
                                break;
                        }
                c->in_idle = false;
        }
        c->st = C_DOWN;
        c->rlen = 0;
        c->wlen = c->woff = 0;
        c->want_out = false;
}

/* Starts a non-blocking connect; the connection is usable once EPOLLOUT says so. */
static void conn_open(Conn *c) {
        int fd = socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                n.connect_errors++;
                report("socket: %s", strerror(errno));
                c->retry_at = now_ns() + RETRY_NS;
                return;
        }
        if (target.ss_family == AF_INET) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (connect(fd, (struct sockaddr *) &target, target_len) < 0 && errno != EINPROGRESS && errno != EAGAIN) {
                n.connect_errors++;
                report("connect: %s", strerror(errno));
                close(fd);
                c->retry_at = now_ns() + RETRY_NS;
                return;
        }
        c->fd = fd;
        c->st = C_CONNECTING;
        struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
        c->want_out = true;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* Replaces a connection that failed or was closed: counted, and connected again. */
static void conn_reopen(Conn *c, bool rst) {
        conn_close(c, rst);
        n.reconnects++;
        conn_open(c);
}

/* ---------------------------------------------------------------- requests */

static bool build_request(Conn *c, int op, long k, size_t *ret_head_len) {
        char head[1024];
        int hl;
        size_t bl = 0;

        if (!reserve(&c->wbuf, &c->wcap, sizeof head + (size_t) body_size + 256))
                return false;
        char *body = c->wbuf + sizeof head; /* built behind the room for the head, then moved */
        switch (op) {
        case OP_SAVE:
                /* the aborting client's whole saves use keys of their own: the
                 * values it stores never reach the state client's gets */
                bl = (size_t) sprintf(body, "[{\"key\":\"soak-%s%ld\",\"value\":\"%s\"}]",
                                      kind == K_ABORT ? "abort-" : "", k % n_keys, value);
                hl = snprintf(head, sizeof head,
                              "POST /v1.0/state/%s HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
                              "Content-Length: %zu\r\n\r\n",
                              store, bl);
                break;
        case OP_GET:
                hl = snprintf(head, sizeof head, "GET /v1.0/state/%s/soak-%ld HTTP/1.1\r\nHost: soak\r\n\r\n", store,
                              k % n_keys);
                break;
        case OP_INVOKE:
                /* shifted by k: an answer that belongs to another request shows */
                for (long i = 0; i < body_size; i++)
                        body[i] = (char) ('a' + (i + k) % 26);
                bl = (size_t) body_size;
                hl = snprintf(head, sizeof head,
                              "POST /v1.0/invoke/%s/method/echo HTTP/1.1\r\nHost: soak\r\n"
                              "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                              app, bl);
                break;
        case OP_PUBLISH: {
                int m = sprintf(body, "{\"run\":%ld,\"seq\":%ld,\"ts\":%llu,\"pad\":\"", kind == K_ABORT ? 0 : run_id,
                                k, (unsigned long long) now_ns());
                long pad = body_size - m - 2;
                if (pad < 0)
                        pad = 0;
                memset(body + m, 'x', (size_t) pad);
                memcpy(body + m + pad, "\"}", 2);
                bl = (size_t) (m + pad + 2);
                hl = snprintf(head, sizeof head,
                              "POST /v1.0/publish/%s/%s HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
                              "Content-Length: %zu\r\n\r\n",
                              pubsub_name, topic, bl);
                break;
        }
        default:
                hl = snprintf(head, sizeof head, "GET /v1.0/healthz HTTP/1.1\r\nHost: soak\r\n\r\n");
                break;
        }
        memmove(c->wbuf + hl, body, bl);
        memcpy(c->wbuf, head, (size_t) hl);
        c->wlen = (size_t) hl + bl;
        c->woff = 0;
        if (ret_head_len)
                *ret_head_len = (size_t) hl;
        return true;
}

/* Writes what is pending; false when the connection failed (already replaced). */
static bool flush_out(Conn *c) {
        while (c->woff < c->wlen) {
                ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 && errno == EAGAIN) {
                        set_out(c, true);
                        return true;
                }
                if (w <= 0) {
                        n.errors++;
                        report("send (request %ld): %s", c->k, strerror(errno));
                        conn_reopen(c, false);
                        return false;
                }
                c->woff += (size_t) w;
        }
        set_out(c, false);
        return true;
}

static void send_request(Conn *c, int op, long k) {
        if (!build_request(c, op, k, NULL)) {
                fprintf(stderr, "soak-load: out of memory\n");
                exit(1);
        }
        c->op = op;
        c->k = k;
        c->st = C_BUSY;
        c->t_sent = now_ns();
        c->rlen = 0;
        n.sent++;
        (void) flush_out(c);
}

static int paced_op(long k) {
        switch (kind) {
        case K_STATE:
                return k % 2 == 0 ? OP_SAVE : OP_GET;
        case K_INVOKE:
                return OP_INVOKE;
        default:
                return OP_PUBLISH;
        }
}

/* ---------------------------------------------------------------- answers */

static const char *op_name(int op) {
        static const char *const names[] = { "state save", "state get", "invoke", "publish", "healthz" };
        return names[op];
}

static void on_answer(Conn *c, int status, const char *body, size_t blen) {
        int want = c->op == OP_INVOKE || c->op == OP_GET ? 200 : 204;
        bool ok_status = status == want || (c->op == OP_GET && status == 204);

        n.answered++;
        if (status >= 500 && status < 600)
                n.s5xx++;
        else if (status >= 400 && status < 500)
                n.s4xx++;
        if (!ok_status) {
                n.bad_status++;
                report("%s #%ld answered %d (expected %d): %.*s", op_name(c->op), c->k, status, want,
                       (int) (blen < 300 ? blen : 300), body);
                return;
        }
        bool good = true;
        if (c->op == OP_INVOKE) {
                good = blen == (size_t) body_size;
                for (long i = 0; good && i < body_size; i++)
                        good = body[i] == (char) ('a' + (i + c->k) % 26);
        } else if (c->op == OP_GET && status == 200) {
                good = blen == get_expect_len && memcmp(body, get_expect, blen) == 0;
        }
        if (!good) {
                n.bad_body++;
                report("%s #%ld answered %d with a wrong body (%zu bytes): %.*s", op_name(c->op), c->k, status, blen,
                       (int) (blen < 120 ? blen : 120), body);
                return;
        }
        n.ok++;
}

/* One complete answer at the start of rbuf: its length, 0 when more is
 * needed, -1 when it cannot be parsed.  The daemon answers with a
 * Content-Length (or none for 204); chunked answers are not expected. */
static long parse_answer(Conn *c, int *status, size_t *body_off, size_t *body_len, bool *close_after) {
        const char *b = c->rbuf;
        const char *hend = memmem(b, c->rlen, "\r\n\r\n", 4);
        if (!hend)
                return c->rlen > HEAD_MAX ? -1 : 0;
        if (c->rlen < 12 || strncmp(b, "HTTP/1.", 7) != 0)
                return -1;
        *status = atoi(b + 9);
        const char *h = memchr(b, '\n', (size_t) (hend - b));
        h = h ? h + 1 : hend;
        const char *cl = find_header(h, hend + 2, "Content-Length");
        const char *te = find_header(h, hend + 2, "Transfer-Encoding");
        const char *cn = find_header(h, hend + 2, "Connection");
        if (te)
                return -1;
        *close_after = cn && strncasecmp(cn, "close", 5) == 0;
        size_t hl = (size_t) (hend + 4 - b), bl = cl ? strtoul(cl, NULL, 10) : 0;
        if (bl > (size_t) body_size + 65536)
                return -1;
        if (c->rlen < hl + bl)
                return 0;
        *body_off = hl;
        *body_len = bl;
        return (long) (hl + bl);
}

static void on_readable(Conn *c) {
        if (!reserve(&c->rbuf, &c->rcap, c->rlen + 16384)) {
                fprintf(stderr, "soak-load: out of memory\n");
                exit(1);
        }
        ssize_t r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (r <= 0) {
                if (c->st == C_BUSY) {
                        n.errors++;
                        report("%s #%ld: the server %s the connection before answering", op_name(c->op), c->k,
                               r == 0 ? "closed" : "reset");
                } else {
                        /* an idle keep-alive connection the server let go of */
                        n.server_closed++;
                        report("the server closed an idle keep-alive connection (%s)",
                               r == 0 ? "FIN" : strerror(errno));
                }
                conn_reopen(c, false);
                return;
        }
        c->rlen += (size_t) r;
        if (c->st != C_BUSY) {
                n.errors++;
                report("%zu bytes from the server with no request in flight", c->rlen);
                conn_reopen(c, true);
                return;
        }
        int status;
        size_t off, bl;
        bool close_after;
        long used = parse_answer(c, &status, &off, &bl, &close_after);
        if (used == 0)
                return;
        if (used < 0 || (size_t) used != c->rlen) {
                n.errors++;
                report("%s #%ld: unparsable answer (%zu bytes): %.*s", op_name(c->op), c->k, c->rlen,
                       (int) (c->rlen < 200 ? c->rlen : 200), c->rbuf);
                conn_reopen(c, true);
                return;
        }
        on_answer(c, status, c->rbuf + off, bl);
        c->rlen = 0;
        c->st = C_IDLE;
        if (close_after) {
                conn_reopen(c, false);
                return;
        }
        if (kind != K_IDLE)
                push_idle(c);
}

/* ---------------------------------------------------------------- abort kind */

static void abort_start(Conn *c) {
        long a = n.attempts++;
        c->variant = (int) (a % 6);
        c->rst = (int) ((a / 6) % 2);
        c->close_at = (uint64_t) (a % 3) * 25000000ULL;
        c->k = a;
        conn_open(c);
}

/* Connected: write the part of the request this variant sends, then hold. */
static void abort_connected(Conn *c) {
        static const int ops[] = { OP_SAVE, OP_SAVE, OP_INVOKE, OP_PUBLISH, OP_INVOKE, OP_SAVE };
        size_t hl, len;
        if (!build_request(c, ops[c->variant], c->k, &hl)) {
                fprintf(stderr, "soak-load: out of memory\n");
                exit(1);
        }
        if (c->variant == 0)
                len = hl / 2;
        else if (c->variant <= 3)
                len = hl + (c->wlen - hl) / 2;
        else
                len = c->wlen;
        /* small enough for the socket buffer: one send, or the attempt just ends early */
        (void) send(c->fd, c->wbuf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        c->st = C_HOLD;
        c->close_at += now_ns();
        struct epoll_event ev = { .events = 0, .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void abort_finish(Conn *c) {
        n.aborted++;
        conn_close(c, c->rst);
}

/* ---------------------------------------------------------------- loop */

static void on_event(Conn *c, uint32_t ev) {
        if (c->st == C_HOLD) {
                /* the server closed or reset the half-sent request: that is fine, go away now */
                abort_finish(c);
                return;
        }
        if (c->st == C_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || (ev & (EPOLLERR | EPOLLHUP))) {
                        n.connect_errors++;
                        report("connect: %s", strerror(err ? err : ECONNRESET));
                        conn_close(c, false);
                        c->retry_at = now_ns() + RETRY_NS;
                        return;
                }
                if (kind == K_ABORT) {
                        abort_connected(c);
                        return;
                }
                c->st = C_IDLE;
                set_out(c, false);
                if (kind != K_IDLE)
                        push_idle(c);
                return;
        }
        if ((ev & EPOLLOUT) && c->st == C_BUSY && !flush_out(c))
                return;
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(c);
}

static void on_tick(uint64_t now, bool sending) {
        for (long i = 0; i < conc; i++) {
                Conn *c = conns[i];
                if (c->st == C_BUSY && now - c->t_sent > (uint64_t) (timeout_s * 1e9)) {
                        n.timeouts++;
                        report("%s #%ld: no answer within %.0f s", op_name(c->op), c->k, timeout_s);
                        conn_reopen(c, true);
                } else if (c->st == C_HOLD && now >= c->close_at) {
                        abort_finish(c);
                } else if (c->st == C_DOWN && kind != K_ABORT && sending && now >= c->retry_at) {
                        conn_open(c);
                } else if (kind == K_IDLE && c->st == C_IDLE && sending && now >= c->next_ping) {
                        c->next_ping += (uint64_t) (interval * 1e9);
                        if (c->next_ping < now)
                                c->next_ping = now + (uint64_t) (interval * 1e9);
                        send_request(c, OP_PING, n.sent);
                }
        }
        if (!sending || kind == K_IDLE)
                return;

        long due = (long) ((double) (now - t0) / 1e9 * rate);
        long behind = due - slots;
        if (behind > (long) rate + 1) {
                /* more than a second behind: drop it, do not burst later */
                n.skipped += behind - (long) rate;
                slots += behind - (long) rate;
        }
        if (kind == K_ABORT) {
                for (long i = 0; i < conc && slots < due; i++)
                        if (conns[i]->st == C_DOWN && now >= conns[i]->retry_at) {
                                abort_start(conns[i]);
                                slots++;
                        }
                return;
        }
        while (slots < due && n_idle > 0) {
                Conn *c = idle_stack[--n_idle];
                c->in_idle = false;
                send_request(c, paced_op(slots), slots);
                slots++;
        }
}

static bool any_busy(void) {
        for (long i = 0; i < conc; i++)
                if (conns[i]->st == C_BUSY || conns[i]->st == C_HOLD || conns[i]->st == C_CONNECTING)
                        return true;
        return false;
}

/* ---------------------------------------------------------------- setup */

static void usage(FILE *f) {
        fprintf(f, "usage: soak-load --kind state|invoke|publish|idle|abort (--unix PATH | --tcp HOST:PORT)\n"
                   "                 --duration S --stats FILE [--rate R] [--connections C] [--store NAME]\n"
                   "                 [--app ID] [--pubsub NAME] [--topic T] [--run N] [--keys K] [--size B]\n"
                   "                 [--interval S] [--timeout S] [--drain S]\n");
}

static bool parse_target(void) {
        memset(&target, 0, sizeof target);
        if (unix_path) {
                struct sockaddr_un *un = (struct sockaddr_un *) &target;
                if (strlen(unix_path) >= sizeof un->sun_path)
                        return false;
                un->sun_family = AF_UNIX;
                strcpy(un->sun_path, unix_path);
                target_len = sizeof *un;
                return true;
        }
        char host[256];
        const char *colon = strrchr(tcp_addr, ':');
        if (!colon || (size_t) (colon - tcp_addr) >= sizeof host)
                return false;
        memcpy(host, tcp_addr, (size_t) (colon - tcp_addr));
        host[colon - tcp_addr] = 0;
        struct sockaddr_in *in = (struct sockaddr_in *) &target;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t) atoi(colon + 1));
        target_len = sizeof *in;
        return inet_pton(AF_INET, host, &in->sin_addr) == 1;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
        (void) sig;
        stop = 1;
}

int main(int argc, char **argv) {
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!v) {
                        usage(stderr);
                        return 2;
                }
                i++;
                if (!strcmp(a, "--kind")) {
                        for (int k = 0; k < 5; k++)
                                if (!strcmp(v, kind_names[k]))
                                        kind = k;
                } else if (!strcmp(a, "--unix"))
                        unix_path = v;
                else if (!strcmp(a, "--tcp"))
                        tcp_addr = v;
                else if (!strcmp(a, "--stats"))
                        stats_path = v;
                else if (!strcmp(a, "--rate"))
                        rate = atof(v);
                else if (!strcmp(a, "--duration"))
                        duration = atof(v);
                else if (!strcmp(a, "--connections"))
                        conc = atol(v);
                else if (!strcmp(a, "--store"))
                        store = v;
                else if (!strcmp(a, "--app"))
                        app = v;
                else if (!strcmp(a, "--pubsub"))
                        pubsub_name = v;
                else if (!strcmp(a, "--topic"))
                        topic = v;
                else if (!strcmp(a, "--run"))
                        run_id = atol(v);
                else if (!strcmp(a, "--keys"))
                        n_keys = atol(v);
                else if (!strcmp(a, "--size"))
                        body_size = atol(v);
                else if (!strcmp(a, "--interval"))
                        interval = atof(v);
                else if (!strcmp(a, "--timeout"))
                        timeout_s = atof(v);
                else if (!strcmp(a, "--drain"))
                        drain_s = atof(v);
                else {
                        usage(stderr);
                        return 2;
                }
        }
        if (conc < 0)
                conc = kind == K_IDLE ? 1000 : 16;
        if (body_size < 0)
                body_size = kind == K_STATE ? 100 : 1024;
        if (kind < 0 || !!unix_path == !!tcp_addr || !stats_path || duration <= 0 || conc < 1 || n_keys < 1 ||
            body_size < 64 || body_size > 1048576 || interval <= 0 || timeout_s <= 0 ||
            (kind != K_IDLE && rate <= 0) || !parse_target()) {
                usage(stderr);
                return 2;
        }

        raise_nofile();
        on_stop_signals(on_signal);
        prctl(PR_SET_TIMERSLACK, 1UL);
        srandom((unsigned) getpid());

        value = malloc((size_t) body_size + 1);
        get_expect = malloc((size_t) body_size + 3);
        conns = calloc((size_t) conc, sizeof *conns);
        idle_stack = calloc((size_t) conc, sizeof *idle_stack);
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (!value || !get_expect || !conns || !idle_stack || ep < 0) {
                fprintf(stderr, "soak-load: setup failed\n");
                return 1;
        }
        memset(value, 'v', (size_t) body_size);
        value[body_size] = 0;
        get_expect_len = (size_t) sprintf(get_expect, "\"%s\"", value);

        t0 = now_ns();
        for (long i = 0; i < conc; i++) {
                Conn *c = calloc(1, sizeof *c);
                if (!c)
                        return 1;
                c->fd = -1;
                conns[i] = c;
                if (kind == K_IDLE)
                        c->next_ping = t0 + (uint64_t) ((double) random() / RAND_MAX * interval * 1e9);
                if (kind != K_ABORT)
                        conn_open(c);
        }

        int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        struct itimerspec its = { .it_interval = { 0, TICK_NS }, .it_value = { 0, TICK_NS } };
        struct epoll_event tev = { .events = EPOLLIN, .data.ptr = NULL };
        if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) < 0) {
                fprintf(stderr, "soak-load: timerfd: %s\n", strerror(errno));
                return 1;
        }

        uint64_t t_end = t0 + (uint64_t) (duration * 1e9), t_stats = t0;
        struct epoll_event evs[256];
        for (;;) {
                int k = epoll_wait(ep, evs, 256, -1);
                if (k < 0 && errno != EINTR)
                        break;
                uint64_t now = now_ns();
                for (int i = 0; i < k; i++) {
                        if (!evs[i].data.ptr) {
                                uint64_t x;
                                (void) read(tfd, &x, sizeof x);
                                continue;
                        }
                        on_event(evs[i].data.ptr, evs[i].events);
                }
                bool sending = now < t_end && !stop;
                on_tick(now, sending);
                if (now - t_stats >= 1000000000ULL) {
                        write_stats();
                        t_stats = now;
                }
                if (!sending && (stop || !any_busy() || now >= t_end + (uint64_t) (drain_s * 1e9)))
                        break;
        }
        for (long i = 0; i < conc; i++) {
                if (conns[i]->st == C_BUSY)
                        n.unanswered++;
                if (conns[i]->st == C_HOLD)
                        n.aborted++;
                conn_close(conns[i], false);
        }
        write_stats();
        char line[1024];
        stats_line(line, sizeof line);
        fputs(line, stdout);
        if (kind == K_ABORT)
                return n.aborted > 0 ? 0 : 1;
        return n.ok == n.sent && n.sent > 0 ? 0 : 1;
}
