/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small pieces the benchmark helpers (state-load, rate-load, echo-app,
 * pubsub-pub, pubsub-sub) share: clocks, percentiles, HTTP header lookup and
 * the set-up of a loopback server. Header-only, so each helper still builds
 * from its one .c file with a plain `cc` (bench/lib.sh find_helper).
 */
#pragma once

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

static inline uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static inline int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile p (0..1) of n sorted nanosecond values, in ms. */
static inline double pct_ms(const uint64_t *v, long n, double p) {
        if (n <= 0)
                return 0;
        long i = (long) (p * (double) n + 0.999999) - 1;
        if (i < 0)
                i = 0;
        if (i >= n)
                i = n - 1;
        return (double) v[i] / 1e6;
}

/* The value of header name in the header block [h, end), or NULL. */
static inline const char *find_header(const char *h, const char *end, const char *name) {
        size_t nl = strlen(name);
        for (const char *p = h; p < end;) {
                const char *eol = memmem(p, (size_t) (end - p), "\r\n", 2);
                if (!eol)
                        eol = end;
                if ((size_t) (eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
                        const char *v = p + nl + 1;
                        while (v < eol && (*v == ' ' || *v == '\t'))
                                v++;
                        return v;
                }
                p = eol + 2;
        }
        return NULL;
}

/* As many fds as allowed: benchmarks open many connections. */
static inline void raise_nofile(void) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
}

/* SIGTERM/SIGINT call handler; SIGPIPE is ignored (send errors come back as EPIPE). */
static inline void on_stop_signals(void (*handler)(int)) {
        struct sigaction sa = { .sa_handler = handler };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

/*
 * A non-blocking listener on 127.0.0.1:port in a new epoll set (*ret_ep), the
 * listener registered with a NULL data pointer (connections carry theirs).
 * -1 with the reason on stderr, prefixed by prog.
 */
static inline int listen_loopback(const char *prog, long port, int *ret_ep) {
        int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (lfd < 0) {
                fprintf(stderr, "%s: socket: %s\n", prog, strerror(errno));
                return -1;
        }
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        /* bench/multihost.sh: an address of a test network namespace, e.g. 0.0.0.0 inside one */
        const char *addr = getenv("BENCH_LISTEN_ADDRESS");
        if (addr && inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
                fprintf(stderr, "%s: BENCH_LISTEN_ADDRESS=%s is no IPv4 address\n", prog, addr);
                return -1;
        }
        if (bind(lfd, (struct sockaddr *) &sin, sizeof sin) < 0) {
                fprintf(stderr, "%s: bind %s:%ld: %s\n", prog, addr ?: "127.0.0.1", port, strerror(errno));
                return -1;
        }
        if (listen(lfd, SOMAXCONN) < 0) {
                fprintf(stderr, "%s: listen: %s\n", prog, strerror(errno));
                return -1;
        }
        *ret_ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event le = { .events = EPOLLIN, .data.ptr = NULL };
        if (*ret_ep < 0 || epoll_ctl(*ret_ep, EPOLL_CTL_ADD, lfd, &le) < 0) {
                fprintf(stderr, "%s: epoll: %s\n", prog, strerror(errno));
                return -1;
        }
        return lfd;
}
