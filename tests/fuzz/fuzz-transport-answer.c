/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes how transport/transport.c reads an app's answer, through the real
 * transport on a real sd-event loop: one call per input to a Unix socket this
 * target listens on, whose accepted end writes the input as the app's bytes.
 *
 * The first input byte picks the call and the delivery:
 *   bit 0  streamed (head/body callbacks) instead of buffered
 *   bit 1  a HEAD request (the answer must then carry no body)
 *   bit 2  streamed only: body() refuses every other chunk, resumed from the loop
 *   bits 3-7  where the bytes are split in two writes, the loop running between
 *             them, so heads and chunk sizes get cut anywhere
 * the rest is the answer; then the "app" shuts its side (EOF).
 *
 * Checked on every input: done runs exactly once, no callback after it; a
 * success has a status >= 200, well-formed header pairs, a buffered body
 * within max_answer and NUL-terminated; a failure has a negative errno and a
 * message; the transport ends with no call in flight (and ASan/LSan watch).
 * A call that never ends is a bug too: after the EOF nothing can be pending.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "fuzz.h"
#include "transport/transport.h"
#include "util/cleanup.h"

#define MAX_ANSWER 4096
#define INPUT_MAX (128 * 1024) /* stays below a Unix socket's buffer: the writes never block */

static char dir[128], path[192];
static int listen_fd = -1;

typedef struct Run {
        sd_event *event;
        bool streamed, refuse, done;
        unsigned heads, offers, late;
        sd_event_source *resume;
        TransportCall *call;
} Run;

static void cleanup_dir(void) {
        if (listen_fd >= 0)
                close(listen_fd);
        (void) unlink(path);
        (void) rmdir(dir);
}

static void setup_once(void) {
        struct sockaddr_un su = { .sun_family = AF_UNIX };

        if (listen_fd >= 0)
                return;
        snprintf(dir, sizeof dir, "%s/fuzz-transport-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        if (!mkdtemp(dir))
                abort();
        snprintf(path, sizeof path, "%s/app.sock", dir);
        strcpy(su.sun_path, path);
        listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *) &su, sizeof su) < 0 || listen(listen_fd, 16) < 0)
                abort();
        atexit(cleanup_dir);
}

static void check_headers(char *const *h) {
        if (!h)
                abort();
        for (; h[0]; h += 2)
                if (!h[1])
                        abort();
                else
                        (void) (strlen(h[0]) + strlen(h[1]));
}

static void on_head(TransportCall *c, const TransportAnswer *a, void *userdata) {
        Run *r = userdata;
        if (r->done || !r->streamed)
                r->late++;
        r->heads++;
        if (a->status < 200)
                abort(); /* 1xx are the transport's to skip */
        check_headers(a->headers);
}

static int on_resume(sd_event_source *s, void *userdata) {
        Run *r = userdata;
        r->resume = sd_event_source_disable_unref(r->resume);
        transport_call_resume(r->call);
        return 0;
}

static bool on_body(TransportCall *c, const void *buf, size_t len, void *userdata) {
        Run *r = userdata;
        if (r->done || r->heads != 1 || len == 0)
                r->late++;
        (void) memchr(buf, 0, len); /* the bytes must be readable */
        if (r->refuse && r->offers++ % 2 == 0) {
                if (sd_event_add_defer(r->event, &r->resume, on_resume, r) < 0)
                        abort();
                return false;
        }
        return true;
}

static void on_done(TransportCall *c, const TransportAnswer *a, const TransportError *e, void *userdata) {
        Run *r = userdata;
        if (r->done)
                r->late++;
        r->done = true;
        r->call = NULL;
        if (!a == !e)
                abort();
        if (e) {
                if (e->error >= 0 || !e->message)
                        abort();
                (void) strlen(e->message);
                return;
        }
        if (a->status < 200 || a->status > 999)
                abort();
        check_headers(a->headers);
        if (!r->streamed && (!a->body || a->body_len > MAX_ANSWER || ((const char *) a->body)[a->body_len] != 0))
                abort();
}

static const TransportHandler buffered = { .done = on_done };
static const TransportHandler streamed = { .head = on_head, .body = on_body, .done = on_done };

/* The transport may have hung up already (it gave up on the first piece): no SIGPIPE, no error. */
static void app_send(int fd, const uint8_t *p, size_t n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 ? errno != EPIPE && errno != ECONNRESET : (size_t) k != n)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_close_ int fd = -1;
        sd_event *e = NULL;
        Transport *t;
        Run r = {};
        char sink[4096];

        if (size < 1 || size > INPUT_MAX)
                return 0;
        setup_once();
        r.streamed = data[0] & 1;
        r.refuse = r.streamed && (data[0] & 4);
        size_t split = 1 + (size - 1) * (data[0] >> 3) / 32;

        if (sd_event_new(&e) < 0)
                abort();
        r.event = e;
        t = transport_new(e);
        if (!t)
                abort();
        TransportAddress addr = { .kind = TRANSPORT_ADDRESS_UNIX, .host = path };
        TransportRequest req = { .method = data[0] & 2 ? "HEAD" : "GET", .target = "/fuzz",
                                 .max_answer = MAX_ANSWER };
        if (transport_call_start(t, &addr, &req, r.streamed ? &streamed : &buffered, &r, &r.call) < 0)
                abort();
        /* A Unix connect() to a listening socket completes at once: the connection waits here. */
        fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                abort();
        while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) /* the request, so closing sends no reset */
                ;

        app_send(fd, data + 1, split - 1);
        for (unsigned i = 0; i < 8 && !r.done; i++)
                if (sd_event_run(e, 0) < 0)
                        abort();
        app_send(fd, data + split, size - split);
        (void) shutdown(fd, SHUT_WR);
        for (unsigned i = 0; !r.done; i++)
                if (i > 100000 || sd_event_run(e, 1000 * 1000) < 0)
                        abort(); /* after the EOF nothing may keep a call waiting */

        if (r.late > 0 || transport_calls_in_flight(t) != 0)
                abort();
        r.resume = sd_event_source_disable_unref(r.resume);
        transport_free(t);
        sd_event_unref(e);
        return 0;
}
