/* SPDX-License-Identifier: Apache-2.0 */
/*
 * transport/transport.c, the daemon's one HTTP/1.1 client into apps, driven
 * on a real sd-event loop against real app processes: tests/unit/
 * transport-app.py, started per test on a socket this file binds (a Unix
 * socket in a temp dir, or a loopback port) and handed over across exec.
 *
 * What is checked is what transport.h promises, never how fast:
 *   - keep-alive: sequential calls share one connection, on Unix and TCP;
 *   - retries happen only while no answer byte arrived (refused connect: yes;
 *     an answer cut after its first byte: no, the app saw one request), and a
 *     pooled connection the app closed while idle is resent once for free;
 *   - every framing (Content-Length, chunked, until close, HEAD, 1xx first)
 *     gives the same bytes, streamed or buffered; 204 and 304 carry no body
 *     whatever their Content-Length says; a 40 KB header and an empty one;
 *   - 64 MiB each way with the consumer refusing chunks: every byte in order
 *     (the app's pattern carries its own offsets), no chunk larger than the
 *     read buffer, nothing offered between a refusal and the resume;
 *   - the errors: -ETIMEDOUT, -ECONNRESET (answered), -EMSGSIZE, -EPROTO,
 *     -ECONNREFUSED, -ENOENT, -ECANCELED;
 *   - 1,000 calls in flight, answered in random order, each matched to its
 *     own request;
 *   - cancel from outside and from inside head/body callbacks: no callback
 *     afterwards, nothing leaked (the unit suite runs under ASan/LSan).
 *
 * The app script is found through MOORING_SOURCE_ROOT (set by meson).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "transport/transport.h"
#include "util/cleanup.h"
#include "tests.h"

#define MiB (1024 * 1024)
#define READ_BUFFER_MAX (16 * 1024) /* transport.c's CONN_RBUF_SIZE: the most one body() may get */
/* Only a guard against a hung test (meson's timeout would be slower and say less); no
 * assertion depends on how long anything takes. */
#define HANG_USEC (180ULL * 1000 * 1000)

/* ---- the app process ---- */

typedef struct App {
        pid_t pid;
        int ctl;                /* the app's stdin: a line there makes a --wait app listen */
        int out;                /* the app's stdout: "ready" once it listens */
        char dir[128];
        char path[192];
        TransportAddress addr;
} App;

/* Apps a failed test abandoned (ASSERT longjmps past app_stop()) are killed at exit, or by
 * PR_SET_PDEATHSIG when the runner leaves with _exit(). */
static pid_t app_pids[64];

static void app_pids_kill(void) {
        for (size_t i = 0; i < ELEMENTSOF(app_pids); i++)
                if (app_pids[i] > 0) {
                        (void) kill(app_pids[i], SIGKILL);
                        (void) waitpid(app_pids[i], NULL, 0);
                        app_pids[i] = 0;
                }
}

static void app_pids_set(pid_t old, pid_t new) {
        static bool registered;
        if (!registered) {
                atexit(app_pids_kill);
                registered = true;
        }
        for (size_t i = 0; i < ELEMENTSOF(app_pids); i++)
                if (app_pids[i] == old) {
                        app_pids[i] = new;
                        return;
                }
}

static void app_wait_ready(App *a) {
        char buf[16];
        size_t n = 0;
        /* The app writes exactly "ready\n" and nothing else before it. */
        while (n < 6) {
                ssize_t k = read(a->out, buf + n, 6 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                ASSERT_TRUE(k > 0); /* the app died: python3 missing, or the script failed */
                n += (size_t) k;
        }
        ASSERT_TRUE(memcmp(buf, "ready\n", 6) == 0);
}

/* Binds a socket for the app and starts it. wait: it listens only after app_listen(). */
static void app_start(App *a, TransportAddressKind kind, bool wait) {
        const char *root = getenv("MOORING_SOURCE_ROOT");
        _cleanup_free_ char *script = NULL;
        _cleanup_close_ int fd = -1;
        int in[2], out[2];

        *a = (App){ .pid = -1, .ctl = -1, .out = -1 };
        ASSERT_NOT_NULL(root);
        ASSERT_TRUE(asprintf(&script, "%s/tests/unit/transport-app.py", root) > 0);
        ASSERT_OK(access(script, R_OK));

        if (kind == TRANSPORT_ADDRESS_UNIX) {
                struct sockaddr_un su = { .sun_family = AF_UNIX };
                snprintf(a->dir, sizeof a->dir, "%s/ttest-XXXXXX", getenv("TMPDIR") ?: "/tmp");
                ASSERT_NOT_NULL(mkdtemp(a->dir));
                snprintf(a->path, sizeof a->path, "%s/app.sock", a->dir);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                ASSERT_OK(fd);
                strcpy(su.sun_path, a->path);
                ASSERT_OK(bind(fd, (struct sockaddr *) &su, sizeof su));
                a->addr = (TransportAddress){ .kind = kind, .host = a->path };
        } else {
                struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                socklen_t len = sizeof sin;
                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                ASSERT_OK(fd);
                ASSERT_OK(bind(fd, (struct sockaddr *) &sin, sizeof sin));
                ASSERT_OK(getsockname(fd, (struct sockaddr *) &sin, &len));
                a->addr = (TransportAddress){ .kind = kind, .host = "127.0.0.1", .port = ntohs(sin.sin_port) };
        }

        ASSERT_OK(pipe2(in, O_CLOEXEC));
        ASSERT_OK(pipe2(out, O_CLOEXEC));
        a->pid = fork();
        ASSERT_OK(a->pid);
        if (a->pid == 0) {
                /* A failed test leaves with _exit(), past any cleanup: the app goes with us. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                        _exit(126);
                /* dup2() onto another number clears FD_CLOEXEC; when fd already is 3, clear it here. */
                if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 ||
                    (fd == 3 ? fcntl(3, F_SETFD, 0) : dup2(fd, 3)) < 0)
                        _exit(126);
                execlp("python3", "python3", script, "3", wait ? "--wait" : NULL, (char *) NULL);
                _exit(127);
        }
        app_pids_set(0, a->pid);
        close(in[0]);
        close(out[1]);
        a->ctl = in[1];
        a->out = out[0];
        if (!wait)
                app_wait_ready(a);
}

static void app_listen(App *a) {
        ASSERT_EQ(write(a->ctl, "listen\n", 7), 7);
        app_wait_ready(a);
}

static void app_stop(App *a) {
        if (a->pid > 0) {
                (void) kill(a->pid, SIGKILL);
                (void) waitpid(a->pid, NULL, 0);
                app_pids_set(a->pid, 0);
        }
        safe_close(a->ctl);
        safe_close(a->out);
        if (a->dir[0]) {
                (void) unlink(a->path);
                (void) rmdir(a->dir);
        }
        *a = (App){ .pid = -1, .ctl = -1, .out = -1 };
}

/* ---- the app's test pattern: the 8-byte little-endian word at offset o holds o ---- */

static uint8_t pattern_byte(uint64_t off) {
        return (uint8_t) ((off - off % 8) >> (8 * (off % 8)));
}

static void pattern_fill(uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                p[i] = pattern_byte(i);
}

/* The first offset in [off, off + n) whose byte is not the pattern's, or -1. */
static int64_t pattern_check(const uint8_t *p, size_t n, uint64_t off) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != pattern_byte(off + i))
                        return (int64_t) (off + i);
        return -1;
}

/* ---- calls and what their callbacks saw ---- */

static sd_event *loop; /* the test's loop, shared by all tests */

typedef struct Call Call;
struct Call {
        Transport *t;
        TransportCall *tc;
        bool done;              /* done() ran, or the test cancelled the call */
        unsigned n_done;
        unsigned late;          /* callbacks after the end: must stay 0 */

        int error;
        bool answered;
        unsigned attempts;
        char message[256];
        unsigned status;
        int64_t content_length;
        char *body;             /* buffered: a copy of what done() got */
        size_t body_len;
        const char *want_header; /* copy this answer header's value into header */
        char header[256];
        size_t header_len;      /* all of it, and whether it is one byte repeated */
        bool header_uniform;
        bool saw_empty;         /* an "X-Empty" header with an empty value */
        bool saw_link;          /* the 103's Link header leaked into the final answer */

        /* streamed */
        unsigned heads;
        unsigned chunks;        /* chunks taken */
        uint64_t got;           /* bytes taken */
        int64_t bad_at;         /* first offset off the pattern, -1: none */
        size_t max_chunk;
        unsigned refuse_every;  /* refuse (pause) every n-th chunk, resume from a timer */
        unsigned refusals, resumes, offers_while_paused;
        bool paused;            /* refused and not yet resumed */
        bool reoffer_expected;  /* resumed: the next offer must be the refused chunk again */
        size_t held_len;
        sd_event_source *timer;
        unsigned cancel_in_body_at;     /* cancel from inside body() at this chunk (1-based) */
        bool cancel_in_head;
        bool cancel_on_reoffer;         /* cancel from inside the body() a resume made */
        uint64_t stop_flag_at;          /* set reached once got >= this (0: never) */
        bool reached;

        void (*then)(Call *c);  /* runs from inside done() */
        void *then_data;
};

static void call_clear(Call *c) {
        free(c->body);
        c->timer = sd_event_source_disable_unref(c->timer);
        *c = (Call){};
}

static void copy_header(Call *c, char *const *h) {
        for (; h && h[0] && h[1]; h += 2) {
                if (c->want_header && strcasecmp(h[0], c->want_header) == 0) {
                        snprintf(c->header, sizeof c->header, "%s", h[1]);
                        c->header_len = strlen(h[1]);
                        c->header_uniform = strspn(h[1], (char[]){ h[1][0], 0 }) == c->header_len;
                }
                if (strcasecmp(h[0], "X-Empty") == 0 && h[1][0] == 0)
                        c->saw_empty = true;
                if (strcasecmp(h[0], "Link") == 0)
                        c->saw_link = true;
        }
}

static void on_head(TransportCall *tc, const TransportAnswer *a, void *userdata) {
        Call *c = userdata;
        if (c->done) {
                c->late++;
                return;
        }
        c->heads++;
        c->status = a->status;
        c->content_length = a->content_length;
        copy_header(c, a->headers);
        if (c->cancel_in_head) {
                transport_call_cancel(tc);
                c->done = true;
        }
}

static int on_resume_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Call *c = userdata;
        c->timer = sd_event_source_disable_unref(c->timer);
        c->paused = false;
        c->reoffer_expected = true;
        c->resumes++;
        transport_call_resume(c->tc);
        return 0;
}

static bool on_body(TransportCall *tc, const void *buf, size_t len, void *userdata) {
        Call *c = userdata;

        if (c->done) {
                c->late++;
                return true;
        }
        if (c->paused)
                c->offers_while_paused++;
        if (c->reoffer_expected) {
                /* The same bytes again, after the resume (held in the read buffer, not copied). */
                ASSERT_EQ(len, c->held_len);
                c->reoffer_expected = false;
                if (c->cancel_on_reoffer) {
                        transport_call_cancel(tc);
                        c->done = true;
                        return true;
                }
        } else if (c->refuse_every > 0 && (c->chunks + 1) % c->refuse_every == 0) {
                c->paused = true;
                c->held_len = len;
                c->refusals++;
                /* A timer, not a defer: the loop runs its other sources (the socket, too) first,
                 * so an offer the transport should not make would have its chance. */
                ASSERT_OK(sd_event_add_time_relative(loop, &c->timer,
                                                     CLOCK_MONOTONIC, 200, 1, on_resume_timer, c));
                return false;
        }
        if (c->cancel_in_body_at > 0 && c->chunks + 1 == c->cancel_in_body_at) {
                transport_call_cancel(tc);
                c->done = true;
                return true;
        }
        c->chunks++;
        c->max_chunk = MAX(c->max_chunk, len);
        if (c->bad_at < 0)
                c->bad_at = pattern_check(buf, len, c->got);
        c->got += len;
        if (c->stop_flag_at > 0 && c->got >= c->stop_flag_at)
                c->reached = true;
        return true;
}

static void on_done(TransportCall *tc, const TransportAnswer *a, const TransportError *e, void *userdata) {
        Call *c = userdata;

        c->n_done++;
        if (c->done) {
                c->late++;
                return;
        }
        c->done = true;
        c->tc = NULL;
        if (e) {
                c->error = e->error;
                c->answered = e->answered;
                c->attempts = e->attempts;
                snprintf(c->message, sizeof c->message, "%s", e->message);
        } else {
                c->status = a->status;
                if (a->body) { /* buffered */
                        c->content_length = a->content_length;
                        c->body = malloc(a->body_len + 1);
                        if (c->body) {
                                memcpy(c->body, a->body, a->body_len + 1);
                                c->body_len = a->body_len;
                        }
                        copy_header(c, a->headers);
                }
        }
        if (c->then)
                c->then(c);
}

static const TransportHandler buffered = { .done = on_done };
static const TransportHandler streamed = { .head = on_head, .body = on_body, .done = on_done };

static TransportRequest request(const char *method, const char *target) {
        return (TransportRequest){ .method = method, .target = target, .max_answer = 8 * MiB,
                                   .timeout_usec = 120ULL * 1000 * 1000 };
}

static void start(Transport *t, const TransportAddress *addr, const TransportRequest *req, bool stream, Call *c) {
        c->t = t;
        c->bad_at = -1;
        ASSERT_OK(transport_call_start(t, addr, req, stream ? &streamed : &buffered, c, &c->tc));
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void run_until(const bool *flag) {
        uint64_t begin = now_usec();
        while (!*flag) {
                ASSERT_TRUE(now_usec() - begin < HANG_USEC);
                ASSERT_OK(sd_event_run(loop, 1000 * 1000));
        }
}

/* One buffered call, run to its end. */
static void call_sync(Transport *t, const TransportAddress *addr, const TransportRequest *req, Call *c) {
        start(t, addr, req, false, c);
        run_until(&c->done);
}

/* The app's own counts, asked over the same transport (a pooled connection if one is idle). */
static void app_stats(Transport *t, const App *a, unsigned *ret_requests, unsigned *ret_connections) {
        TransportRequest req = request("GET", "/stats");
        Call c = {};
        call_sync(t, &a->addr, &req, &c);
        ASSERT_EQ(c.error, 0);
        ASSERT_EQ(c.status, 200);
        ASSERT_EQ(sscanf(c.body, "requests=%u connections=%u", ret_requests, ret_connections), 2);
        call_clear(&c);
}

static void setup(Transport **ret) {
        if (!loop)
                ASSERT_OK(sd_event_new(&loop));
        *ret = transport_new(loop);
        ASSERT_NOT_NULL(*ret);
}

static const TransportAddressKind kinds[] = { TRANSPORT_ADDRESS_UNIX, TRANSPORT_ADDRESS_TCP };

/* ---- keep-alive ---- */

TEST(keep_alive_reuse) {
        Transport *t;
        App u, p;
        unsigned requests, connections;

        setup(&t);
        app_start(&u, TRANSPORT_ADDRESS_UNIX, false);
        app_start(&p, TRANSPORT_ADDRESS_TCP, false);
        /* Interleaved: each address has its own pool, and neither disturbs the other. */
        for (unsigned i = 0; i < 100; i++)
                for (unsigned k = 0; k < 2; k++) {
                        char target[32];
                        snprintf(target, sizeof target, "/cl/%u", i * 37);
                        TransportRequest req = request("GET", target);
                        Call c = {};
                        call_sync(t, k == 0 ? &u.addr : &p.addr, &req, &c);
                        ASSERT_EQ(c.error, 0);
                        ASSERT_EQ(c.status, 200);
                        ASSERT_EQ(c.body_len, i * 37);
                        ASSERT_EQ(pattern_check((uint8_t *) c.body, c.body_len, 0), -1);
                        call_clear(&c);
                }
        ASSERT_EQ(transport_connections_opened(t), 2);
        ASSERT_EQ(transport_calls_in_flight(t), 0);
        app_stats(t, &u, &requests, &connections);
        ASSERT_EQ(requests, 100);
        ASSERT_EQ(connections, 1);
        app_stats(t, &p, &requests, &connections);
        ASSERT_EQ(requests, 100);
        ASSERT_EQ(connections, 1);
        transport_free(t);
        app_stop(&u);
        app_stop(&p);
}

/* ---- retries: before any answer byte only ---- */

TEST(refused_then_listening_is_retried) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                Transport *t;
                App a;
                Call c = {};
                unsigned requests, connections;

                setup(&t);
                app_start(&a, kinds[k], true); /* bound, not listening: connect() is refused */
                TransportRequest req = request("GET", "/cl/10");
                req.retries = 6;
                start(t, &a.addr, &req, false, &c);
                /* The first attempt is made inside transport_call_start(); a refused TCP connect may
                 * still be in flight, so let the loop see what it has (no wait). */
                for (unsigned i = 0; i < 8; i++)
                        ASSERT_OK(sd_event_run(loop, 0));
                ASSERT_TRUE(!c.done);
                ASSERT_EQ(transport_connections_opened(t), 1);
                app_listen(&a);
                run_until(&c.done);
                ASSERT_EQ(c.error, 0);
                ASSERT_EQ(c.status, 200);
                ASSERT_EQ(c.body_len, 10);
                ASSERT_EQ(transport_connections_opened(t), 2);
                app_stats(t, &a, &requests, &connections);
                ASSERT_EQ(requests, 1);
                ASSERT_EQ(connections, 1);
                call_clear(&c);
                transport_free(t);
                app_stop(&a);
        }
}

TEST(refused_without_retries_fails) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                Transport *t;
                App a;
                Call c = {};

                setup(&t);
                app_start(&a, kinds[k], true);
                TransportRequest req = request("GET", "/cl/10");
                call_sync(t, &a.addr, &req, &c);
                ASSERT_ERROR(c.error, ECONNREFUSED);
                ASSERT_TRUE(!c.answered);
                ASSERT_EQ(c.attempts, 1);
                ASSERT_EQ(c.n_done, 1);
                call_clear(&c);
                transport_free(t);
                app_stop(&a);
        }
}

TEST(no_socket_file) {
        Transport *t;
        Call c = {};
        char dir[128], path[192];

        setup(&t);
        snprintf(dir, sizeof dir, "%s/ttest-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        ASSERT_NOT_NULL(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/nobody.sock", dir);
        TransportAddress addr = { .kind = TRANSPORT_ADDRESS_UNIX, .host = path };
        TransportRequest req = request("GET", "/");
        req.retries = 1;
        call_sync(t, &addr, &req, &c);
        ASSERT_ERROR(c.error, ENOENT);
        ASSERT_TRUE(!c.answered);
        ASSERT_EQ(c.attempts, 2);
        ASSERT_NOT_NULL(strstr(c.message, "no socket"));
        call_clear(&c);
        transport_free(t);
        ASSERT_OK(rmdir(dir));
}

TEST(cut_after_first_byte_not_retried) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                Transport *t;
                App a;
                unsigned requests, connections;

                setup(&t);
                app_start(&a, kinds[k], false);
                for (unsigned s = 0; s < 2; s++) {
                        Call c = {};
                        TransportRequest req = request("POST", "/cut");
                        req.body = "x";
                        req.body_len = 1;
                        req.retries = 3;
                        start(t, &a.addr, &req, s == 1, &c);
                        run_until(&c.done);
                        ASSERT_ERROR(c.error, ECONNRESET);
                        ASSERT_TRUE(c.answered);
                        ASSERT_EQ(c.attempts, 1);
                        ASSERT_EQ(c.heads, 0);
                        call_clear(&c);
                }
                app_stats(t, &a, &requests, &connections);
                ASSERT_EQ(requests, 2); /* one per call: neither was sent again */
                transport_free(t);
                app_stop(&a);
        }
}

/* Each call starts the next one from inside its done(): the connection is back in the pool
 * by then, and the app is closing it (or has), so the request goes onto a dead connection. */
typedef struct Chain {
        const TransportAddress *addr;
        TransportRequest req;
        Call calls[10];
        size_t n;
} Chain;

static void chain_next(Call *c) {
        Chain *ch = c->then_data;
        size_t i = (size_t) (c - ch->calls) + 1;
        if (i >= ch->n)
                return;
        ch->calls[i] = (Call){ .then = chain_next, .then_data = ch };
        start(c->t, ch->addr, &ch->req, false, &ch->calls[i]);
}

TEST(idle_closed_connection_resent_once) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                Transport *t;
                App a;
                unsigned requests, connections;
                Chain ch = { .n = ELEMENTSOF(ch.calls) };

                setup(&t);
                app_start(&a, kinds[k], false);
                /* retries 0: the resend is the free one for a stale pooled connection, not one of the
                 * call's retries. */
                ch.addr = &a.addr;
                ch.req = request("GET", "/idleclose/300");
                ch.calls[0] = (Call){ .then = chain_next, .then_data = &ch };
                start(t, &a.addr, &ch.req, false, &ch.calls[0]);
                run_until(&ch.calls[ch.n - 1].done);
                for (size_t i = 0; i < ch.n; i++) {
                        Call *c = &ch.calls[i];
                        ASSERT_TRUE(c->done);
                        ASSERT_EQ(c->error, 0);
                        ASSERT_EQ(c->status, 200);
                        ASSERT_EQ(c->body_len, 300);
                        ASSERT_EQ(pattern_check((uint8_t *) c->body, c->body_len, 0), -1);
                        call_clear(c);
                }
                ASSERT_EQ(transport_calls_in_flight(t), 0);
                /* Every call but the first went first onto the connection the app had closed, and
                 * then onto a new one: one connection per call, and the app answered each once. */
                ASSERT_EQ(transport_connections_opened(t), ch.n);
                app_stats(t, &a, &requests, &connections);
                ASSERT_EQ(requests, ch.n);
                ASSERT_EQ(connections, ch.n + 1);
                transport_free(t);
                app_stop(&a);
        }
}

/* ---- framings ---- */

typedef struct Framing {
        const char *method;
        const char *target;
        size_t body;            /* bytes of body expected */
        int64_t content_length; /* as the head says: -1 none */
} Framing;

static const Framing framings[] = {
        { "GET", "/cl/0", 0, 0 },
        { "GET", "/cl/1", 1, 1 },
        { "GET", "/cl/16384", 16384, 16384 },
        { "GET", "/cl/100001", 100001, 100001 },
        { "GET", "/chunked/0", 0, -1 },
        { "GET", "/chunked/1", 1, -1 },
        { "GET", "/chunked/300000", 300000, -1 },
        { "GET", "/continue/5000", 5000, 5000 },
        { "HEAD", "/cl/5000", 0, 5000 },
        { "HEAD", "/continue/70000", 0, 70000 },
        /* until close last: they end their connection */
        { "GET", "/eof/0", 0, -1 },
        { "GET", "/eof/100001", 100001, -1 },
};

TEST(answer_framings) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++)
                for (unsigned s = 0; s < 2; s++) {
                        Transport *t;
                        App a;

                        setup(&t);
                        app_start(&a, kinds[k], false);
                        for (size_t i = 0; i < ELEMENTSOF(framings); i++) {
                                const Framing *f = &framings[i];
                                TransportRequest req = request(f->method, f->target);
                                /* streamed: refusing every third chunk, so every framing is paused
                                 * and resumed somewhere */
                                Call c = { .want_header = "X-Kind", .refuse_every = s ? 3 : 0 };
                                fprintf(stderr, "%s %s %s %s\n", kinds[k] == TRANSPORT_ADDRESS_UNIX ? "unix" : "tcp",
                                        s ? "streamed" : "buffered", f->method, f->target);
                                start(t, &a.addr, &req, s == 1, &c);
                                run_until(&c.done);
                                ASSERT_EQ(c.error, 0);
                                ASSERT_EQ(c.n_done, 1);
                                ASSERT_EQ(c.status, 200);
                                ASSERT_EQ(c.content_length, f->content_length);
                                ASSERT_TRUE(!c.saw_link); /* the 103's headers are not the answer's */
                                if (strncmp(f->target, "/chunked", 8) != 0)
                                        ASSERT_STREQ(c.header, strncmp(f->target, "/cl/", 4) == 0 ? "cl" :
                                                               f->target[1] == 'c' ? "continue" : "eof");
                                if (s == 0) {
                                        ASSERT_EQ(c.body_len, f->body);
                                        ASSERT_EQ(c.body[c.body_len], 0); /* NUL-terminated as promised */
                                        ASSERT_EQ(pattern_check((uint8_t *) c.body, c.body_len, 0), -1);
                                } else {
                                        ASSERT_EQ(c.heads, 1);
                                        ASSERT_EQ(c.got, f->body);
                                        ASSERT_EQ(c.bad_at, -1);
                                        ASSERT_TRUE(c.max_chunk <= READ_BUFFER_MAX);
                                        ASSERT_EQ(c.offers_while_paused, 0);
                                        ASSERT_EQ(c.resumes, c.refusals);
                                }
                                ASSERT_EQ(c.late, 0);
                                call_clear(&c);
                        }
                        /* Everything but the until-close answers went over one connection. */
                        ASSERT_EQ(transport_connections_opened(t), 2);
                        transport_free(t);
                        app_stop(&a);
                }
}

/* Answers that carry no body whatever their head says (RFC 9112 6.3): to HEAD (above), 204, 304.
 * A 304 keeps the Content-Length of the answer it stands for; reading a body for it would hang
 * the call and then misread the connection. */
TEST(answers_without_body) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++)
                for (unsigned s = 0; s < 2; s++) {
                        static const char *const targets[] = { "/nobody/304", "/nobody/204", "/cl/10" };
                        static const unsigned statuses[] = { 304, 204, 200 };
                        Transport *t;
                        App a;

                        setup(&t);
                        app_start(&a, kinds[k], false);
                        for (size_t i = 0; i < ELEMENTSOF(targets); i++) {
                                Call c = {};
                                TransportRequest req = request("GET", targets[i]);
                                /* A hang is the defect; fail it in a while, not after meson's timeout. */
                                req.timeout_usec = 20ULL * 1000 * 1000;
                                start(t, &a.addr, &req, s == 1, &c);
                                run_until(&c.done);
                                ASSERT_EQ(c.error, 0);
                                ASSERT_EQ(c.status, statuses[i]);
                                ASSERT_EQ(s == 0 ? c.body_len : c.got, i == 2 ? 10 : 0);
                                call_clear(&c);
                        }
                        /* The connection stayed in step: all three went over it. */
                        ASSERT_EQ(transport_connections_opened(t), 1);
                        transport_free(t);
                        app_stop(&a);
                }
}

TEST(answer_headers) {
        for (unsigned s = 0; s < 2; s++) {
                Transport *t;
                App a;
                Call c = { .want_header = "X-Big" };

                setup(&t);
                app_start(&a, TRANSPORT_ADDRESS_UNIX, false);
                /* 40,000 bytes: more than two reads of the head, so fields arrive in pieces. */
                TransportRequest req = request("GET", "/bighead/40000");
                start(t, &a.addr, &req, s == 1, &c);
                run_until(&c.done);
                ASSERT_EQ(c.error, 0);
                ASSERT_EQ(c.header_len, 40000);
                ASSERT_TRUE(c.header_uniform);
                ASSERT_EQ(c.header[0], 'b');
                ASSERT_TRUE(c.saw_empty);
                ASSERT_EQ(s == 0 ? c.body_len : c.got, 3);
                call_clear(&c);
                transport_free(t);
                app_stop(&a);
        }
}

/* ---- 64 MiB both ways, the consumer pausing ---- */

TEST(big_both_ways_paused) {
        const size_t size = 64 * MiB;
        _cleanup_free_ uint8_t *out = malloc(size);
        char target[64];

        ASSERT_NOT_NULL(out);
        pattern_fill(out, size);
        snprintf(target, sizeof target, "/big?answer=%zu", size);
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                Transport *t;
                App a;
                Call c = { .want_header = "X-Request-Check", .refuse_every = 7 };
                char check[64];

                setup(&t);
                app_start(&a, kinds[k], false);
                TransportRequest req = request("POST", target);
                req.body = out;
                req.body_len = size;
                start(t, &a.addr, &req, true, &c);
                run_until(&c.done);
                ASSERT_EQ(c.error, 0);
                ASSERT_EQ(c.status, 200);
                snprintf(check, sizeof check, "%zu ok", size);
                ASSERT_STREQ(c.header, check); /* the app got every request byte, in order */
                ASSERT_EQ(c.content_length, (int64_t) size);
                ASSERT_EQ(c.got, size);
                ASSERT_EQ(c.bad_at, -1);
                /* Bounded: never more than the read buffer at once, and nothing read while the
                 * consumer is full (a refused chunk is the only one until the resume). */
                ASSERT_TRUE(c.max_chunk <= READ_BUFFER_MAX);
                ASSERT_EQ(c.offers_while_paused, 0);
                ASSERT_TRUE(c.refusals > 100);
                ASSERT_EQ(c.resumes, c.refusals);
                ASSERT_EQ(c.late, 0);
                call_clear(&c);
                transport_free(t);
                app_stop(&a);
        }
}

/* ---- the errors ---- */

TEST(deadline) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                Transport *t;
                App a, r;
                Call c = {}, d = {};

                setup(&t);
                app_start(&a, kinds[k], false);
                TransportRequest req = request("GET", "/never");
                req.timeout_usec = 300 * 1000;
                req.retries = 3;
                start(t, &a.addr, &req, k == 1, &c);
                run_until(&c.done);
                ASSERT_ERROR(c.error, ETIMEDOUT);
                ASSERT_TRUE(!c.answered);
                ASSERT_EQ(c.attempts, 1);

                /* The deadline covers the retries too: an app that never listens. */
                app_start(&r, kinds[k], true);
                req = request("GET", "/cl/1");
                req.timeout_usec = 600 * 1000;
                req.retries = 20;
                start(t, &r.addr, &req, false, &d);
                run_until(&d.done);
                ASSERT_ERROR(d.error, ETIMEDOUT);
                ASSERT_TRUE(d.attempts >= 1);
                ASSERT_EQ(transport_calls_in_flight(t), 0);
                call_clear(&c);
                call_clear(&d);
                transport_free(t);
                app_stop(&a);
                app_stop(&r);
        }
}

TEST(closed_mid_body) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++)
                for (unsigned s = 0; s < 2; s++) {
                        Transport *t;
                        App a;
                        Call c = {};
                        unsigned requests, connections;

                        setup(&t);
                        app_start(&a, kinds[k], false);
                        TransportRequest req = request("GET", "/midbody");
                        req.retries = 3;
                        start(t, &a.addr, &req, s == 1, &c);
                        run_until(&c.done);
                        ASSERT_ERROR(c.error, ECONNRESET);
                        ASSERT_TRUE(c.answered);
                        ASSERT_EQ(c.attempts, 1);
                        if (s == 1) {
                                ASSERT_EQ(c.heads, 1);
                                ASSERT_EQ(c.got, 100);
                                ASSERT_EQ(c.bad_at, -1);
                        }
                        app_stats(t, &a, &requests, &connections);
                        ASSERT_EQ(requests, 1);
                        call_clear(&c);
                        transport_free(t);
                        app_stop(&a);
                }
}

TEST(buffered_answer_too_large) {
        static const struct {
                const char *target;
                size_t max;
                int error;
        } cases[] = {
                { "/cl/2000", 1000, EMSGSIZE },
                { "/chunked/2000", 1000, EMSGSIZE },
                { "/eof/2000", 1999, EMSGSIZE },
                { "/cl/1000", 1000, 0 },
                { "/chunked/1000", 1000, 0 },
                { "/cl/70000", 65536, EMSGSIZE },
        };
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                Transport *t;
                App a;

                setup(&t);
                app_start(&a, kinds[k], false);
                for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                        Call c = {};
                        TransportRequest req = request("GET", cases[i].target);
                        req.max_answer = cases[i].max;
                        call_sync(t, &a.addr, &req, &c);
                        ASSERT_ERROR(c.error, cases[i].error);
                        if (cases[i].error == 0)
                                ASSERT_EQ(c.body_len, cases[i].max);
                        call_clear(&c);
                }
                transport_free(t);
                app_stop(&a);
        }
}

TEST(malformed_answer) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++)
                for (unsigned s = 0; s < 2; s++) {
                        Transport *t;
                        App a;
                        Call c = {};
                        unsigned requests, connections;

                        setup(&t);
                        app_start(&a, kinds[k], false);
                        TransportRequest req = request("GET", "/garbage");
                        req.retries = 3;
                        start(t, &a.addr, &req, s == 1, &c);
                        run_until(&c.done);
                        ASSERT_ERROR(c.error, EPROTO);
                        ASSERT_TRUE(c.answered);
                        ASSERT_EQ(c.attempts, 1);
                        ASSERT_EQ(c.heads, 0);
                        app_stats(t, &a, &requests, &connections);
                        ASSERT_EQ(requests, 1);
                        call_clear(&c);
                        transport_free(t);
                        app_stop(&a);
                }
}

/* ---- 1,000 at once ---- */

TEST(thousand_in_flight) {
        enum { N = 1000 };
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                Transport *t;
                App a;
                _cleanup_free_ Call *calls = calloc(N, sizeof *calls);
                char ids[N][16];
                char *headers[N][3];
                unsigned ended = 0, inversions = 0, last = 0;

                ASSERT_NOT_NULL(calls);
                setup(&t);
                app_start(&a, kinds[k], false);
                for (unsigned i = 0; i < N; i++) {
                        snprintf(ids[i], sizeof ids[i], "req-%u", i);
                        headers[i][0] = (char *) "X-Id";
                        headers[i][1] = ids[i];
                        headers[i][2] = NULL;
                        TransportRequest req = request("POST", "/id");
                        req.headers = headers[i];
                        req.body = ids[i];
                        req.body_len = strlen(ids[i]);
                        req.retries = 2; /* a Unix socket's full backlog refuses, as connect() says */
                        calls[i].want_header = "X-Id";
                        start(t, &a.addr, &req, false, &calls[i]);
                }
                ASSERT_EQ(transport_calls_in_flight(t), N);
                /* In the order they end; the app's random pauses make that anything but 0..N-1. */
                uint64_t begin = now_usec();
                while (ended < N) {
                        ASSERT_TRUE(now_usec() - begin < HANG_USEC);
                        ASSERT_OK(sd_event_run(loop, 1000 * 1000));
                        for (unsigned i = 0; i < N; i++)
                                if (calls[i].done && calls[i].n_done == 1 && !calls[i].reached) {
                                        calls[i].reached = true; /* counted */
                                        if (i < last)
                                                inversions++;
                                        last = i;
                                        ended++;
                                }
                }
                for (unsigned i = 0; i < N; i++) {
                        ASSERT_EQ(calls[i].error, 0);
                        ASSERT_EQ(calls[i].status, 200);
                        ASSERT_STREQ(calls[i].body, ids[i]);
                        ASSERT_STREQ(calls[i].header, ids[i]);
                        ASSERT_EQ(calls[i].late, 0);
                        call_clear(&calls[i]);
                }
                ASSERT_TRUE(inversions > 0);
                ASSERT_EQ(transport_calls_in_flight(t), 0);
                transport_free(t);
                app_stop(&a);
        }
}

/* ---- cancel ---- */

TEST(cancel_mid_stream) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                Transport *t;
                App a;
                Call c = { .stop_flag_at = 100000 }, d = {};

                setup(&t);
                app_start(&a, kinds[k], false);
                /* /stall sends 200,000 of the 400,000 bytes it promises, then waits. */
                TransportRequest req = request("GET", "/stall/200000");
                start(t, &a.addr, &req, true, &c);
                run_until(&c.reached);
                ASSERT_TRUE(!c.done);
                transport_call_cancel(c.tc);
                c.done = true;
                ASSERT_EQ(transport_calls_in_flight(t), 0);
                /* Another call to the same app, run to its end, gives the first every chance to
                 * call back if it (wrongly) still could. */
                req = request("GET", "/cl/10");
                call_sync(t, &a.addr, &req, &d);
                ASSERT_EQ(d.error, 0);
                ASSERT_EQ(c.late, 0);
                ASSERT_EQ(c.n_done, 0);
                ASSERT_EQ(c.bad_at, -1);
                call_clear(&c);
                call_clear(&d);
                transport_free(t);
                app_stop(&a);
        }
}

TEST(cancel_from_callbacks) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++)
                for (unsigned how = 0; how < 3; how++) {
                        Transport *t;
                        App a;
                        Call c = {}, d = {};

                        setup(&t);
                        app_start(&a, kinds[k], false);
                        if (how == 0)
                                c.cancel_in_head = true;
                        else if (how == 1)
                                c.cancel_in_body_at = 3;
                        else {
                                c.refuse_every = 2; /* refuse the 2nd chunk, cancel when it comes again */
                                c.cancel_on_reoffer = true;
                        }
                        TransportRequest req = request("GET", "/cl/1000000");
                        start(t, &a.addr, &req, true, &c);
                        run_until(&c.done);
                        ASSERT_EQ(transport_calls_in_flight(t), 0);
                        req = request("GET", "/cl/10");
                        call_sync(t, &a.addr, &req, &d);
                        ASSERT_EQ(d.error, 0);
                        ASSERT_EQ(c.late, 0);
                        ASSERT_EQ(c.n_done, 0);
                        ASSERT_EQ(c.heads, 1);
                        ASSERT_EQ(c.chunks, how == 0 ? 0 : how == 1 ? 2 : 1);
                        ASSERT_EQ(c.bad_at, -1);
                        call_clear(&c);
                        call_clear(&d);
                        transport_free(t);
                        app_stop(&a);
                }
}

TEST(free_ends_running_calls) {
        Transport *t;
        App a;
        Call c = {}, d = {};

        setup(&t);
        app_start(&a, TRANSPORT_ADDRESS_UNIX, false);
        TransportRequest req = request("GET", "/never");
        start(t, &a.addr, &req, false, &c);
        start(t, &a.addr, &req, true, &d);
        for (unsigned i = 0; i < 8; i++)
                ASSERT_OK(sd_event_run(loop, 0));
        transport_free(t);
        ASSERT_ERROR(c.error, ECANCELED);
        ASSERT_ERROR(d.error, ECANCELED);
        ASSERT_EQ(c.n_done, 1);
        ASSERT_EQ(d.n_done, 1);
        call_clear(&c);
        call_clear(&d);
        app_stop(&a);
}
