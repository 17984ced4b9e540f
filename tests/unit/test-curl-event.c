/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for the libcurl loader (drivers/dl-curl.c) and its sd-event glue
 * (drivers/curl-event.c) against the real libcurl and a small HTTP/1.1
 * server on a loopback port, run by a thread of this test: transfers finish
 * through the loop, keep-alive connections are reused, a refused
 * connection reports libcurl's error, and a cancelled or abandoned
 * transfer calls nobody back.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drivers/curl-event.h"
#include "drivers/dl-curl.h"
#include "util/cleanup.h"
#include "tests.h"

typedef struct Server {
        int fd;
        unsigned port;
        unsigned connections;    /* accepted */
        unsigned max_connections;
        pthread_t thread;
} Server;

static void *server_run(void *userdata) {
        Server *s = userdata;
        static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: yes\r\n\r\nhello";

        while (s->connections < s->max_connections) {
                int c = accept(s->fd, NULL, NULL);
                if (c < 0)
                        break;
                __atomic_add_fetch(&s->connections, 1, __ATOMIC_SEQ_CST);
                char buf[4096];
                size_t have = 0;
                for (;;) {
                        ssize_t n = read(c, buf + have, sizeof buf - 1 - have);
                        if (n <= 0)
                                break;
                        have += (size_t) n;
                        buf[have] = 0;
                        char *end;
                        while ((end = strstr(buf, "\r\n\r\n"))) {
                                if (write(c, answer, sizeof answer - 1) < 0)
                                        break;
                                size_t used = (size_t) (end + 4 - buf);
                                memmove(buf, end + 4, have - used + 1);
                                have -= used;
                        }
                }
                close(c);
        }
        return NULL;
}

static void server_start(Server *s, unsigned max_connections) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;

        *s = (Server){ .max_connections = max_connections };
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(s->fd >= 0);
        ASSERT_OK(bind(s->fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(listen(s->fd, 16));
        ASSERT_OK(getsockname(s->fd, (struct sockaddr *) &sa, &len));
        s->port = ntohs(sa.sin_port);
        ASSERT_EQ(pthread_create(&s->thread, NULL, server_run, s), 0);
}

static void server_stop(Server *s) {
        shutdown(s->fd, SHUT_RDWR);
        pthread_join(s->thread, NULL);
        close(s->fd);
}

typedef struct Result {
        unsigned calls;
        CURLcode code;
        long status;
        char body[64];
        size_t body_len;
        sd_event *event;
        unsigned want;
} Result;

static size_t on_write(char *p, size_t size, size_t n, void *userdata) {
        Result *r = userdata;
        size_t len = size * n;
        if (r->body_len + len < sizeof r->body) {
                memcpy(r->body + r->body_len, p, len);
                r->body_len += len;
        }
        return len;
}

static void on_done(CURL *easy, CURLcode code, void *userdata) {
        Result *r = userdata;
        r->calls++;
        r->code = code;
        (void) sym_curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->status);
}

/* Runs the loop until r has its answers (sd_event_exit() would end the loop for good). */
static void run_until(sd_event *e, Result *r) {
        while (r->calls < r->want)
                ASSERT_TRUE(sd_event_run(e, UINT64_MAX) >= 0);
}

static CURL *easy_for(unsigned port, Result *r) {
        char url[64];
        CURL *easy = sym_curl_easy_init();
        ASSERT_NOT_NULL(easy);
        snprintf(url, sizeof url, "http://127.0.0.1:%u/x", port);
        (void) sym_curl_easy_setopt(easy, CURLOPT_URL, url);
        (void) sym_curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_write);
        (void) sym_curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
        (void) sym_curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 20000L);
        return easy;
}

TEST(transfers_run_on_the_loop_and_reuse_the_connection) {
        _cleanup_free_ char *msg = NULL;
        sd_event *e = NULL;
        CurlEvent *ce = NULL;
        Server s;

        server_start(&s, 8);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_event_new(e, "test", &ce, &msg));
        for (unsigned round = 0; round < 3; round++) {
                Result r = { .event = e, .want = 1 };
                CURL *easy = easy_for(s.port, &r);
                ASSERT_OK(curl_event_start(ce, easy, on_done, &r));
                ASSERT_EQ(r.calls, 0u); /* never from inside the start */
                ASSERT_EQ(curl_event_running(ce), 1u);
                run_until(e, &r);
                ASSERT_EQ(r.calls, 1u);
                ASSERT_EQ(r.code, CURLE_OK);
                ASSERT_EQ(r.status, 200L);
                ASSERT_EQ(r.body_len, 5u);
                ASSERT_TRUE(memcmp(r.body, "hello", 5) == 0);
                ASSERT_EQ(curl_event_running(ce), 0u);
                sym_curl_easy_cleanup(easy);
        }
        /* three transfers, one connection: the multi handle kept it */
        ASSERT_EQ(__atomic_load_n(&s.connections, __ATOMIC_SEQ_CST), 1u);
        curl_event_free(ce);
        server_stop(&s);
        sd_event_unref(e);
}

TEST(refused_connection_reports_the_error) {
        _cleanup_free_ char *msg = NULL;
        sd_event *e = NULL;
        CurlEvent *ce = NULL;
        Server s;

        /* a port that was just free: bind, read it, close */
        server_start(&s, 0);
        server_stop(&s);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_event_new(e, "test", &ce, &msg));
        Result r = { .event = e, .want = 1 };
        CURL *easy = easy_for(s.port, &r);
        ASSERT_OK(curl_event_start(ce, easy, on_done, &r));
        run_until(e, &r);
        ASSERT_EQ(r.calls, 1u);
        ASSERT_EQ(r.code, CURLE_COULDNT_CONNECT);
        sym_curl_easy_cleanup(easy);
        curl_event_free(ce);
        sd_event_unref(e);
}

static int on_quit(sd_event_source *src, uint64_t usec, void *userdata) {
        *(bool *) userdata = true;
        return 0;
}

TEST(cancelled_and_abandoned_transfers_call_nobody) {
        _cleanup_free_ char *msg = NULL;
        sd_event *e = NULL;
        CurlEvent *ce = NULL;
        Server s;

        server_start(&s, 8);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_event_new(e, "test", &ce, &msg));
        Result r = { .event = e, .want = 1 };
        CURL *a = easy_for(s.port, &r), *b = easy_for(s.port, &r);
        ASSERT_OK(curl_event_start(ce, a, on_done, &r));
        ASSERT_OK(curl_event_start(ce, b, on_done, &r));
        curl_event_cancel(ce, a);
        ASSERT_EQ(curl_event_running(ce), 1u);
        /* b runs to its end; a never reports */
        bool quit = false;
        ASSERT_OK(sd_event_add_time_relative(e, NULL, CLOCK_MONOTONIC, 300 * 1000, 0, on_quit, &quit));
        while (!quit)
                ASSERT_TRUE(sd_event_run(e, UINT64_MAX) >= 0);
        ASSERT_EQ(r.calls, 1u);
        /* started and abandoned: freeing the glue calls nobody */
        ASSERT_OK(curl_event_start(ce, a, on_done, &r));
        ce = curl_event_free(ce);
        ASSERT_EQ(r.calls, 1u);
        sym_curl_easy_cleanup(a);
        sym_curl_easy_cleanup(b);
        server_stop(&s);
        sd_event_unref(e);
}
