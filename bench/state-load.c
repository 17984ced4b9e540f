/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/state-load.c - closed-loop HTTP/1.1 load generator for the Dapr state
 * API, used by bench/state.sh.  Not part of the daemon.
 *
 *   state-load (--unix PATH | --tcp HOST:PORT) --mode save|get
 *              [--store NAME] [--requests N] [--concurrency C] [--keys K]
 *              [--value-size B] [--max-seconds S]
 *
 * C keep-alive connections, driven by epoll from one thread, each with one
 * request in flight at a time (like redis-benchmark without -P).  Request i
 * (0 <= i < N) uses key "k<i % K>":
 *   save: POST /v1.0/state/<store>  [{"key":"k<i>","value":"<B x 'v'>"}]  -> 204
 *   get:  GET  /v1.0/state/<store>/k<i>                                  -> 200
 *         (a get must return exactly the JSON value a save stores, "vvv...")
 * Latency = from the first byte written to the last byte of the response.
 *
 * Prints one line on stdout:
 *   ops/s=X p50_ms=X p99_ms=X max_ms=X done=N ok=N bad_status=N bad_body=N
 *   errors=N reconnects=N elapsed_s=X timed_out=0|1
 * "ops/s" counts completed requests (any status) over the wall time from the
 * first connect to the last response.  The first unexpected response and the
 * first socket error are described on stderr.  Exit status 0 when all N
 * requests completed with the expected status and body, 1 otherwise, 2 on
 * usage errors.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define RBUF 65536

typedef struct Conn {
        int fd;
        bool connected;          /* connect() finished */
        bool busy;               /* a request is in flight */
        long req;                /* index of the request in flight */
        char wbuf[1024];
        size_t wlen, woff;
        char rbuf[RBUF];
        size_t rlen;
        uint64_t t_start;
        bool want_out;           /* EPOLLOUT registered */
} Conn;

static const char *unix_path, *tcp_addr, *mode, *store = "statestore";
static long n_req = 50000, conc = 50, n_keys = 1000, value_size = 100;
static double max_seconds = 120;
static bool is_save;
static char *value;              /* value_size 'v' characters */
static char *expect_body;        /* "\"vvv...\"" */
static size_t expect_len;

static int ep;
static long next_req, n_done, n_ok, n_bad_status, n_bad_body, n_errors, n_reconnects;
static uint64_t *lat_ns;
static bool reported_status, reported_error;

static void usage(FILE *f) {
        fprintf(f, "usage: state-load (--unix PATH | --tcp HOST:PORT) --mode save|get [--store NAME]\n"
                   "                  [--requests N] [--concurrency C] [--keys K] [--value-size B] [--max-seconds S]\n");
}

static int open_conn(Conn *c) {
        int fd;
        c->connected = false;
        c->rlen = 0;
        if (unix_path) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                if (strlen(unix_path) >= sizeof sa.sun_path) {
                        fprintf(stderr, "state-load: socket path too long: %s\n", unix_path);
                        exit(2);
                }
                strcpy(sa.sun_path, unix_path);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return -errno;
                if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 && errno != EINPROGRESS && errno != EAGAIN) {
                        int e = errno;
                        close(fd);
                        return -e;
                }
        } else {
                struct sockaddr_in sa = { .sin_family = AF_INET };
                char host[64];
                const char *colon = strrchr(tcp_addr, ':');
                if (!colon || (size_t) (colon - tcp_addr) >= sizeof host) {
                        fprintf(stderr, "state-load: bad --tcp address: %s\n", tcp_addr);
                        exit(2);
                }
                memcpy(host, tcp_addr, colon - tcp_addr);
                host[colon - tcp_addr] = 0;
                sa.sin_port = htons((uint16_t) atoi(colon + 1));
                if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
                        fprintf(stderr, "state-load: bad --tcp host: %s\n", host);
                        exit(2);
                }
                fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return -errno;
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 && errno != EINPROGRESS) {
                        int e = errno;
                        close(fd);
                        return -e;
                }
        }
        c->fd = fd;
        c->want_out = true;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
                return -errno;
        return 0;
}

static void set_out(Conn *c, bool on) {
        if (c->want_out == on)
                return;
        c->want_out = on;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void build_request(Conn *c, long i) {
        long k = i % n_keys;
        int n;
        if (is_save) {
                char body[512 + 64];
                int bl = snprintf(body, sizeof body, "[{\"key\":\"k%ld\",\"value\":\"%s\"}]", k, value);
                n = snprintf(c->wbuf, sizeof c->wbuf,
                             "POST /v1.0/state/%s HTTP/1.1\r\nHost: localhost\r\n"
                             "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                             store, bl, body);
        } else {
                n = snprintf(c->wbuf, sizeof c->wbuf, "GET /v1.0/state/%s/k%ld HTTP/1.1\r\nHost: localhost\r\n\r\n",
                             store, k);
        }
        c->wlen = (size_t) n;
        c->woff = 0;
        c->req = i;
        c->busy = true;
}

static void conn_error(Conn *c, const char *what, int err);
static void reconnect(Conn *c);

/* Write what is left of the request in flight; EPOLLOUT only while some is.
 * Returns false when the connection failed (and was replaced). */
static bool flush_out(Conn *c) {
        while (c->woff < c->wlen) {
                ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
                if (w < 0) {
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

/* Start the next request on c, if any is left.  Returns false when none is
 * or the connection failed. */
static bool start_next(Conn *c) {
        if (next_req >= n_req)
                return false;
        build_request(c, next_req++);
        c->t_start = now_ns();
        return flush_out(c);
}

static void conn_error(Conn *c, const char *what, int err) {
        if (!reported_error) {
                reported_error = true;
                fprintf(stderr, "state-load: first socket error: %s%s%s (request %ld in flight: %s)\n", what,
                        err ? ": " : "", err ? strerror(err) : "", c->req, c->busy ? "yes" : "no");
        }
        if (c->busy) {
                /* the request in flight is lost: counted as done, as an error */
                n_errors++;
                n_done++;
                c->busy = false;
        }
}

static void reconnect(Conn *c) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        if (next_req >= n_req)
                return;
        n_reconnects++;
        int r = open_conn(c);
        if (r < 0) {
                conn_error(c, "connect", -r);
                c->fd = -1;
        }
}

/* Case-insensitive search for header "name:" in [h, end); returns value start or NULL. */
/* Try to parse one complete response from c->rbuf.  Returns bytes consumed
 * (>0), 0 when more data is needed, -1 on a malformed response. */
static long parse_response(Conn *c, int *status, const char **body, size_t *body_len, bool *close_after) {
        const char *buf = c->rbuf;
        const char *hend = memmem(buf, c->rlen, "\r\n\r\n", 4);
        if (!hend)
                return c->rlen >= RBUF ? -1 : 0;
        if (c->rlen < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
                return -1;
        *status = atoi(buf + 9);
        const char *hdrs = memchr(buf, '\n', hend - buf);
        hdrs = hdrs ? hdrs + 1 : hend;
        const char *cl = find_header(hdrs, hend + 2, "Content-Length");
        const char *te = find_header(hdrs, hend + 2, "Transfer-Encoding");
        const char *cn = find_header(hdrs, hend + 2, "Connection");
        *close_after = cn && strncasecmp(cn, "close", 5) == 0;
        size_t hlen = (size_t) (hend + 4 - buf);
        if (te && strncasecmp(te, "chunked", 7) == 0) {
                /* rare here: walk the chunks, report the first one as the body */
                size_t off = hlen;
                const char *first = NULL;
                size_t first_len = 0;
                for (;;) {
                        const char *eol = memmem(buf + off, c->rlen - off, "\r\n", 2);
                        if (!eol)
                                return 0;
                        size_t sz = strtoul(buf + off, NULL, 16);
                        off = (size_t) (eol + 2 - buf);
                        if (sz == 0) {
                                const char *t = memmem(buf + off, c->rlen - off, "\r\n", 2);
                                if (!t)
                                        return 0;
                                off = (size_t) (t + 2 - buf);
                                break;
                        }
                        if (off + sz + 2 > c->rlen)
                                return c->rlen >= RBUF ? -1 : 0;
                        if (!first) {
                                first = buf + off;
                                first_len = sz;
                        }
                        off += sz + 2;
                }
                *body = first ? first : buf + hlen;
                *body_len = first_len;
                return (long) off;
        }
        size_t blen = cl ? strtoul(cl, NULL, 10) : 0;
        if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200))
                blen = cl ? blen : 0;
        if (hlen + blen > RBUF)
                return -1;
        if (c->rlen < hlen + blen)
                return 0;
        *body = buf + hlen;
        *body_len = blen;
        return (long) (hlen + blen);
}

static void on_response(Conn *c, int status, const char *body, size_t blen) {
        uint64_t t = now_ns();
        int want = is_save ? 204 : 200;
        lat_ns[n_done] = t - c->t_start;
        n_done++;
        c->busy = false;
        if (status != want) {
                n_bad_status++;
                if (!reported_status) {
                        reported_status = true;
                        fprintf(stderr, "state-load: first unexpected response (request %ld, key k%ld): HTTP %d, body: %.*s\n",
                                c->req, c->req % n_keys, status, (int) (blen > 300 ? 300 : blen), body);
                }
        } else if (!is_save && (blen != expect_len || memcmp(body, expect_body, blen) != 0)) {
                n_bad_body++;
                if (!reported_status) {
                        reported_status = true;
                        fprintf(stderr, "state-load: first unexpected body (request %ld, key k%ld): %.*s\n", c->req,
                                c->req % n_keys, (int) (blen > 300 ? 300 : blen), body);
                }
        } else {
                n_ok++;
        }
}

static void handle(Conn *c, uint32_t events) {
        if (!c->connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err) {
                        conn_error(c, "connect", err);
                        reconnect(c);
                        return;
                }
                c->connected = true;
                if (!start_next(c)) {
                        if (c->fd >= 0)
                                set_out(c, false);
                        return;
                }
        }
        else if (c->connected && c->busy && c->woff < c->wlen && (events & EPOLLOUT)) {
                if (!flush_out(c))
                        return;
        }
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                for (;;) {
                        ssize_t r = recv(c->fd, c->rbuf + c->rlen, RBUF - c->rlen, 0);
                        if (r > 0) {
                                c->rlen += (size_t) r;
                                if (c->rlen < RBUF)
                                        continue;
                                break;
                        }
                        if (r == 0) {
                                /* peer closed: fine between requests, an error during one */
                                if (c->busy)
                                        conn_error(c, "server closed the connection during a request", 0);
                                reconnect(c);
                                return;
                        }
                        if (errno == EAGAIN)
                                break;
                        conn_error(c, "recv", errno);
                        reconnect(c);
                        return;
                }
                for (;;) {
                        int status = 0;
                        const char *body = NULL;
                        size_t blen = 0;
                        bool close_after = false;
                        long used = parse_response(c, &status, &body, &blen, &close_after);
                        if (used == 0)
                                break;
                        if (used < 0 || !c->busy) {
                                conn_error(c, used < 0 ? "malformed HTTP response" : "response without a request", 0);
                                reconnect(c);
                                return;
                        }
                        on_response(c, status, body, blen);
                        memmove(c->rbuf, c->rbuf + used, c->rlen - (size_t) used);
                        c->rlen -= (size_t) used;
                        if (close_after) {
                                reconnect(c);
                                return;
                        }
                        if (!start_next(c))
                                return;
                }
        }
}

int main(int argc, char **argv) {
        /* --option value pairs */
        for (int i = 1; i < argc; i += 2) {
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                        usage(stdout);
                        return 0;
                }
                if (!v) {
                        usage(stderr);
                        return 2;
                }
                if (!strcmp(a, "--unix"))
                        unix_path = v;
                else if (!strcmp(a, "--tcp"))
                        tcp_addr = v;
                else if (!strcmp(a, "--mode"))
                        mode = v;
                else if (!strcmp(a, "--store"))
                        store = v;
                else if (!strcmp(a, "--requests"))
                        n_req = atol(v);
                else if (!strcmp(a, "--concurrency"))
                        conc = atol(v);
                else if (!strcmp(a, "--keys"))
                        n_keys = atol(v);
                else if (!strcmp(a, "--value-size"))
                        value_size = atol(v);
                else if (!strcmp(a, "--max-seconds"))
                        max_seconds = atof(v);
                else {
                        usage(stderr);
                        return 2;
                }
        }
        if ((!unix_path == !tcp_addr) || !mode || (strcmp(mode, "save") && strcmp(mode, "get")) || n_req < 1 ||
            conc < 1 || n_keys < 1 || value_size < 0 || value_size > 512 || max_seconds <= 0 || strlen(store) > 200) {
                usage(stderr);
                return 2;
        }
        is_save = !strcmp(mode, "save");
        if (conc > n_req)
                conc = n_req;
        value = malloc((size_t) value_size + 1);
        expect_body = malloc((size_t) value_size + 3);
        lat_ns = calloc((size_t) n_req, sizeof *lat_ns);
        Conn *conns = calloc((size_t) conc, sizeof *conns);
        if (!value || !expect_body || !lat_ns || !conns) {
                perror("state-load");
                return 2;
        }
        memset(value, 'v', (size_t) value_size);
        value[value_size] = 0;
        expect_len = (size_t) snprintf(expect_body, (size_t) value_size + 3, "\"%s\"", value);

        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0) {
                perror("state-load: epoll_create1");
                return 2;
        }
        uint64_t t0 = now_ns(), deadline = t0 + (uint64_t) (max_seconds * 1e9);
        for (long i = 0; i < conc; i++) {
                conns[i].fd = -1;
                int r = open_conn(&conns[i]);
                if (r < 0) {
                        fprintf(stderr, "state-load: connect: %s\n", strerror(-r));
                        return 1;
                }
        }
        bool timed_out = false;
        struct epoll_event evs[256];
        while (n_done < n_req) {
                uint64_t t = now_ns();
                if (t >= deadline) {
                        timed_out = true;
                        break;
                }
                long live = 0;
                for (long i = 0; i < conc; i++)
                        live += conns[i].fd >= 0;
                if (live == 0)
                        break; /* every connection failed to reconnect */
                int ms = (int) ((deadline - t) / 1000000) + 1;
                int n = epoll_wait(ep, evs, 256, ms > 1000 ? 1000 : ms);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("state-load: epoll_wait");
                        return 1;
                }
                for (int i = 0; i < n; i++) {
                        Conn *c = evs[i].data.ptr;
                        if (c->fd >= 0)
                                handle(c, evs[i].events);
                }
        }
        uint64_t t1 = now_ns();
        double el = (double) (t1 - t0) / 1e9;

        /* latencies: only requests that got a response */
        long nl = n_done - n_errors;
        uint64_t *v = calloc((size_t) (nl > 0 ? nl : 1), sizeof *v);
        long k = 0;
        for (long i = 0; i < n_done && k < nl; i++)
                if (lat_ns[i])
                        v[k++] = lat_ns[i];
        nl = k;
        qsort(v, (size_t) nl, sizeof *v, cmp_u64);
        printf("ops/s=%.2f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f done=%ld ok=%ld bad_status=%ld bad_body=%ld errors=%ld "
               "reconnects=%ld elapsed_s=%.3f timed_out=%d\n",
               el > 0 ? (double) n_done / el : 0, pct_ms(v, nl, 0.50), pct_ms(v, nl, 0.99),
               nl ? (double) v[nl - 1] / 1e6 : 0, n_done, n_ok, n_bad_status, n_bad_body, n_errors, n_reconnects, el,
               timed_out ? 1 : 0);
        if (timed_out)
                fprintf(stderr, "state-load: stopped after %.0f s (--max-seconds) with %ld of %ld requests done\n",
                        max_seconds, n_done, n_req);
        for (long i = 0; i < conc; i++)
                if (conns[i].fd >= 0)
                        close(conns[i].fd);
        return (n_ok == n_req) ? 0 : 1;
}
