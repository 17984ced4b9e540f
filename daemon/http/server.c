/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See server.h.
 *
 * Our own HTTP/1.1 server on sd-event. Each connection is one io source; its
 * bytes go into the connection's RequestParser (request-parse.c) and a
 * complete request is dispatched to the route table. One request at a time
 * per connection: pipelined bytes wait in the buffer until the answer is
 * out. The fast path of a request costs one read and one writev: the reply
 * is written from inside http_reply() and the io source keeps EPOLLIN the
 * whole time; EPOLLOUT is armed only while output is pending.
 *
 * Lifetimes. The HttpRequest is embedded in its connection and stays valid
 * until the request is over: its answer fully written, or its client gone
 * while a handler that registered on_end waits. A handler that waits
 * without on_end keeps the connection object (not its socket) until it
 * answers. Nothing is ever freed from inside a reply call: finishing a
 * request (on_end, the next pipelined request, closing) runs after the
 * handler returned, or from a defer source for answers given later.
 *
 * Deadlines are coarse: one list per kind (idle, head, body/progress,
 * linger), each in deadline order because every entry of a list got the
 * same timeout from "now"; one server timer sweeps them every second. So no
 * timer syscall per request.
 *
 * The peer listener ([Cluster]) speaks the same HTTP/1.1 inside mutual TLS
 * (transport/peer-tls.h): the handshake runs on the loop like any other I/O
 * (no thread, no blocking), the caller's host and trust domain come from its
 * verified certificate, and only then is a byte of HTTP read. Reads and
 * writes go through conn_recv()/conn_writev(), which keep the plain sockets'
 * meaning (a short read drained everything, TLS's buffer included), so the
 * edge-triggered machinery below is the same for both.
 *
 * Limits (global, per listener or per peer uid on the shared socket, per peer
 * uid over Unix sockets) are checked at accept; a refused connection gets a
 * 503 in Dapr's JSON shape and is closed. Refusals and accept errors are
 * counted (GET /mooring/v1/status) and logged at most once per listener
 * every few seconds, with the number held back.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <systemd/sd-login.h>
#include <time.h>
#include <unistd.h>

#include "../core/app.h"
#include "../core/identity.h"
#include "../core/metrics.h"
#include "../core/trace.h"
#include "../manager.h"
#include "../transport/peer-tls.h"
#include "../util/iomux.h"
#include "../util/log.h"
#include "../util/ratelimit.h"
#include "../util/strv.h"
#include "handlers.h"
#include "request-parse.h"
#include "router.h"
#include "server.h"

#define STREAM_BUFFER_MAX (256U * 1024)
#define LINGER_USEC (2ULL * 1000000)     /* after an error answer: read and drop, then close */
#define LINGER_MAX_BYTES (256U * 1024)
#define LOG_INTERVAL_USEC (5ULL * 1000000)
#define SWEEP_USEC (1000ULL * 1000)
/* Edge-triggered: sd-event dispatches one source per loop iteration and re-collects every
 * level-triggered fd that is still ready each time, which is quadratic when thousands of
 * connections become readable at once (a flood hanging up). With edges each readiness is
 * reported once; we read until a short read and remember input we chose not to read yet. */
#define BASE_EVENTS (EPOLLIN | EPOLLRDHUP | EPOLLET)

typedef struct HttpConn HttpConn;

typedef enum ConnPhase {
        CONN_IDLE,    /* no byte of a request yet (fresh or kept alive) */
        CONN_HEAD,    /* head arriving */
        CONN_BODY,    /* body arriving */
        CONN_HANDLER, /* request complete, no answer yet */
        CONN_WRITE,   /* answer being written (or a stream waiting for its producer) */
        CONN_LINGER,  /* error answered and write side shut: dropping input until EOF */
} ConnPhase;

typedef enum DeadlineKind {
        DEADLINE_NONE = -1,
        DEADLINE_IDLE,
        DEADLINE_HEAD,
        DEADLINE_PROGRESS, /* body arriving or answer leaving: must move within BodyTimeoutSec */
        DEADLINE_LINGER,
        _DEADLINE_MAX,
} DeadlineKind;

typedef struct UidCount {
        uid_t uid;
        unsigned all; /* over every Unix listener */
        unsigned api; /* on the shared socket */
} UidCount;

struct HttpRequest {
        HttpConn *conn;             /* back-reference: the request is embedded in it */
        bool counted;               /* in n_requests (head complete, not over) */
        bool replied;
        bool suspended;
        bool keep_alive;
        bool head;                  /* HEAD: no body goes out */
        bool streaming, chunked, stream_ended, stream_failed, producer_blocked, discard;
        int64_t stream_left;        /* body bytes still due for a sized stream; -1 chunked/unsized */
        HttpStreamDrainFn drain;
        void *drain_userdata;
        HttpRequestEndFn on_end;
        void *on_end_userdata;
        /* metrics (core/metrics.h): the route's index, the status and body bytes that went out */
        bool metric_begun;
        bool traced;                /* span is an inbound SERVER span (core/trace.h) */
        Span span;
        uint16_t metric_route;
        uint8_t metric_method;      /* MetricsMethod */
        unsigned metric_status;
        uint64_t metric_bytes, metric_start;
};

struct HttpConn {
        HttpServer *server;         /* back-reference */
        HttpListener *listener;     /* back-reference; NULL once the listener is gone */
        int fd;                     /* -1 once the client is gone */
        struct ssl_st *ssl;         /* LISTENER_PEER: TLS on fd (owned); NULL: plain */
        bool handshaking;           /* LISTENER_PEER: the TLS handshake is not done yet */
        IoWatch *io;                /* in the server's mux */
        uint32_t events;            /* what io is armed for */
        Caller caller;
        bool has_uid;               /* counted in the server's uid table */
        uid_t uid;
        ConnPhase phase;
        RequestParser rp;
        HttpRequest req;
        char *out;                  /* pending output: out[out_off .. out_off+out_len) */
        size_t out_off, out_len, out_cap;
        size_t lingered;
        bool close_after;           /* no further request on this connection */
        bool broken;                /* a write failed: treat as gone at the next step */
        bool in_dispatch;           /* the handler is running: finishing waits for it */
        bool post_queued;
        bool release_next;          /* http_request_release() follows the answer at once */
        bool maybe_more;            /* the socket may hold input we have not read (edge-triggered) */
        bool rdhup;                 /* the peer shut down its side: its EOF is still to be read */
        DeadlineKind dl_kind;
        uint64_t deadline;
        HttpConn *dl_next, *dl_prev;
        HttpConn *post_next, *post_prev;
        HttpConn *next, *prev;
};

struct HttpServer {
        Manager *manager;           /* back-reference */
        sd_event *event;
        HttpListener *listeners;
        HttpConn *conns;
        HttpConn *dl_head[_DEADLINE_MAX], *dl_tail[_DEADLINE_MAX];
        HttpConn *post_head, *post_tail;
        sd_event_source *sweep;     /* deadline timer, on while some deadline is pending */
        sd_event_source *post;      /* finishes requests answered outside their handler */
        IoMux *mux;                 /* every connection's fd: one loop pass serves all that are ready */
        PeerTls *peer_tls;          /* borrowed from the Manager; NULL without [Cluster] */
        bool post_armed;            /* post is enabled (one-shot) */
        UidCount *uids;
        size_t n_uids;
        unsigned n_conns;
        unsigned n_requests;
        unsigned nofile_cap;        /* RLIMIT_NOFILE minus a reserve */
        bool draining;
        HttpServerStats stats;
        time_t date_sec;
        char date[40];              /* "Date: ...\r\n", rebuilt once per second */
};

struct HttpListener {
        HttpServer *server;         /* back-reference */
        ListenerKind kind;
        App *app;                   /* ref; NULL for LISTENER_API */
        int fd;
        bool is_unix;
        unsigned n_conns;
        sd_event_source *source;
        sd_event_source *backoff;   /* re-enables accepting after running out of fds */
        RateLimit log_rl;           /* refusals and accept errors on this listener */
        char *unlink_path;
        HttpListener *next, *prev;
};

static void conn_finish(HttpConn *c);
static void conn_process(HttpConn *c);
static void conn_free(HttpConn *c);
static AppMetrics *caller_metrics(HttpConn *c);
static const char *route_path(unsigned i);

static uint64_t now_usec(HttpServer *s) {
        uint64_t t = 0;
        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &t);
        return t;
}

static const Settings *settings(const HttpServer *s) {
        return &s->manager->settings;
}

/* ---- callers ---- */

static void caller_done(Caller *c) {
        c->app = app_unref(c->app);
        free(c->unit);
        c->unit = NULL;
        free(c->peer_host);
        c->peer_host = NULL;
        free(c->peer_trust_domain);
        c->peer_trust_domain = NULL;
}

static void caller_init(Caller *c, const HttpListener *l, const struct ucred *cred) {
        *c = (Caller){ .via = l->kind };
        if (l->kind == LISTENER_PEER)
                return; /* who it is comes from its certificate, after the handshake */
        if (l->kind != LISTENER_API) {
                c->app = app_ref(l->app);
                return;
        }
        if (!cred || cred->pid <= 0)
                return; /* anonymous */
        c->has_cred = true;
        c->cred = *cred;

        /* The caller's unit decides its app: mooring-app@<id>.service. The cgroup is read at
         * accept time, while the peer that connected is still the one that owns the pid. */
        char *unit = NULL;
        if (sd_pid_get_unit(cred->pid, &unit) < 0 || !unit || !identity_app_from_unit(unit, NULL)) {
                free(unit);
                unit = NULL;
                (void) sd_pid_get_user_unit(cred->pid, &unit);
        }
        c->unit = unit;
        if (unit) {
                _cleanup_free_ char *id = NULL;
                if (identity_app_from_unit(unit, &id) && id)
                        c->app = app_ref(registry_find_app(l->server->manager->registry, id));
        }
}

/* ---- deadlines ---- */

static void deadline_unlink(HttpConn *c) {
        HttpServer *s = c->server;
        DeadlineKind k = c->dl_kind;
        if (k == DEADLINE_NONE)
                return;
        if (c->dl_prev)
                c->dl_prev->dl_next = c->dl_next;
        else
                s->dl_head[k] = c->dl_next;
        if (c->dl_next)
                c->dl_next->dl_prev = c->dl_prev;
        else
                s->dl_tail[k] = c->dl_prev;
        c->dl_next = c->dl_prev = NULL;
        c->dl_kind = DEADLINE_NONE;
}

/* (Re)starts the connection's deadline of kind k from now: appended, so each list stays in
 * deadline order (same timeout for all). Costs no syscall; the sweep timer runs while any
 * list is non-empty. */
static void deadline_set(HttpConn *c, DeadlineKind k) {
        HttpServer *s = c->server;
        const Settings *st = settings(s);
        uint64_t t = k == DEADLINE_IDLE       ? st->idle_timeout_usec
                     : k == DEADLINE_HEAD     ? st->header_timeout_usec
                     : k == DEADLINE_PROGRESS ? st->body_timeout_usec
                                              : LINGER_USEC;

        deadline_unlink(c);
        if (k == DEADLINE_NONE)
                return;
        c->dl_kind = k;
        c->deadline = now_usec(s) + t;
        c->dl_prev = s->dl_tail[k];
        if (c->dl_prev)
                c->dl_prev->dl_next = c;
        else
                s->dl_head[k] = c;
        s->dl_tail[k] = c;

        int enabled = SD_EVENT_OFF;
        (void) sd_event_source_get_enabled(s->sweep, &enabled);
        if (enabled == SD_EVENT_OFF) {
                (void) sd_event_source_set_time(s->sweep, now_usec(s) + SWEEP_USEC);
                (void) sd_event_source_set_enabled(s->sweep, SD_EVENT_ONESHOT);
        }
}

/* ---- socket i/o: plain, or TLS on the peer listener ---- */

static ssize_t conn_recv(HttpConn *c, void *buf, size_t len) {
        return c->ssl ? peer_tls_read(c->ssl, buf, len) : read(c->fd, buf, len);
}

static ssize_t conn_writev(HttpConn *c, const struct iovec *iov, int n) {
        return c->ssl ? peer_tls_writev(c->ssl, iov, n) : writev(c->fd, iov, n);
}

/* ---- output ---- */

static int out_reserve(HttpConn *c, size_t n) {
        if (c->out_off > 0 && c->out_len == 0)
                c->out_off = 0;
        if (c->out_off + c->out_len + n <= c->out_cap)
                return 0;
        if (c->out_off > 0) {
                memmove(c->out, c->out + c->out_off, c->out_len);
                c->out_off = 0;
                if (c->out_len + n <= c->out_cap)
                        return 0;
        }
        size_t cap = MAX(c->out_cap * 2, c->out_len + n);
        cap = MAX(cap, (size_t) 1024);
        char *b = realloc(c->out, cap);
        if (!b)
                return -ENOMEM;
        c->out = b;
        c->out_cap = cap;
        return 0;
}

static int out_append(HttpConn *c, const void *p, size_t n) {
        if (n == 0)
                return 0;
        int r = out_reserve(c, n);
        if (r < 0)
                return r;
        memcpy(c->out + c->out_off + c->out_len, p, n);
        c->out_len += n;
        return 0;
}

static void conn_set_events(HttpConn *c, uint32_t events) {
        if (!c->io || c->events == events)
                return;
        if (iomux_set_events(c->io, events) >= 0)
                c->events = events;
}

/*
 * Writes what is pending, then extra (borrowed, e.g. a reply body) in the same writev; what
 * the socket does not take is kept in out. Never frees anything: a failed write only marks
 * the connection broken. Returns -ENOMEM if the rest could not be kept.
 */
static int conn_flush_full(HttpConn *c, const void *extra, size_t extra_len, bool writable) {
        if (c->fd < 0 || c->broken)
                return 0; /* nobody to write to: the answer is dropped */
        if ((c->events & EPOLLOUT) && !writable) /* the socket is full: queue behind what waits */
                return out_append(c, extra, extra_len);

        struct iovec iov[2];
        int n = 0;
        if (c->out_len > 0)
                iov[n++] = (struct iovec){ c->out + c->out_off, c->out_len };
        if (extra_len > 0)
                iov[n++] = (struct iovec){ (void *) extra, extra_len };
        if (n == 0)
                return 0;
        ssize_t k = conn_writev(c, iov, n);
        if (k < 0) {
                if (errno != EAGAIN && errno != EINTR) {
                        c->broken = true;
                        return 0;
                }
                k = 0;
        }
        size_t w = (size_t) k;
        size_t from_out = MIN(w, c->out_len);
        c->out_off += from_out;
        c->out_len -= from_out;
        w -= from_out;
        if (w < extra_len && out_append(c, (const char *) extra + w, extra_len - w) < 0)
                return -ENOMEM;
        if (c->out_len > 0) {
                /* The rest goes when the socket has room; EPOLLRDHUP still tells us of a
                 * client that left. */
                if (!(c->events & EPOLLOUT))
                        conn_set_events(c, BASE_EVENTS | EPOLLOUT);
                if (c->phase == CONN_HANDLER || c->phase == CONN_WRITE) {
                        c->phase = CONN_WRITE;
                        deadline_set(c, DEADLINE_PROGRESS);
                }
        }
        return 0;
}

static int conn_flush(HttpConn *c, const void *extra, size_t extra_len) {
        return conn_flush_full(c, extra, extra_len, false);
}

static const char *date_header(HttpServer *s) {
        uint64_t t = 0;
        (void) sd_event_now(s->event, CLOCK_REALTIME, &t);
        time_t sec = (time_t) (t / 1000000);
        if (sec != s->date_sec || !s->date[0]) {
                struct tm tm;
                s->date_sec = sec;
                if (gmtime_r(&sec, &tm))
                        (void) strftime(s->date, sizeof s->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        }
        return s->date;
}

static const char *reason(unsigned status) {
        const char *r = http_status_str((enum http_status) status);
        return r && r[0] != '<' ? r : "Status";
}

/* Header fields the server writes itself; a handler's (e.g. an app's, passed through by
 * service invocation) are dropped, as are fields that would break the framing. */
static bool header_ok(const char *name, size_t name_len, const char *value) {
        static const HeaderName own[] = {
                HEADER_NAME("content-length"), HEADER_NAME("transfer-encoding"), HEADER_NAME("connection"),
                HEADER_NAME("keep-alive"), HEADER_NAME("date"), HEADER_NAME("upgrade"), HEADER_NAME("te"),
                HEADER_NAME("trailer"),
        };
        if (name_len == 0 || name[strcspn(name, "\r\n: \t")] || value[strcspn(value, "\r\n")])
                return false;
        return !header_name_in(own, ELEMENTSOF(own), name, name_len);
}

/* "name: value\r\n" */
static int out_header(HttpConn *c, const char *name, size_t name_len, const char *value) {
        size_t value_len = strlen(value);
        int r = out_reserve(c, name_len + value_len + 4);
        if (r < 0)
                return r;
        char *p = c->out + c->out_off + c->out_len;
        memcpy(p, name, name_len);
        p += name_len;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, value, value_len);
        p += value_len;
        *p++ = '\r';
        *p++ = '\n';
        c->out_len += name_len + value_len + 4;
        return 0;
}

static bool status_has_body(unsigned status) {
        return !(status < 200 || status == 204 || status == 304);
}

/*
 * The status line and header block. length < 0: unknown, the body is chunked (HTTP/1.1) or
 * ends with the connection (HTTP/1.0).
 */
static int write_head(HttpConn *c, unsigned status, const char *content_type, int64_t length,
                      const char *const *headers) {
        HttpRequest *r = &c->req;
        int k;

        if (c->server->draining || !r->keep_alive)
                c->close_after = true;
        r->metric_status = status;
        r->metric_bytes = length > 0 && !r->head ? (uint64_t) length : 0;
        /* No printf here: formatting was a tenth of the CPU of a proxied call. */
        char line[64], *p = line;
        const char *why = reason(status);
        size_t why_len = strlen(why);
        if (status > 999)
                status = 500;
        p = mempcpy(p, "HTTP/1.1 ", 9);
        p = fmt_u64(p, status);
        *p++ = ' ';
        k = out_append(c, line, (size_t) (p - line));
        if (k >= 0)
                k = out_append(c, why, why_len);
        if (k >= 0)
                k = out_append(c, "\r\n", 2);
        if (k >= 0)
                k = out_append(c, date_header(c->server), strlen(c->server->date));
        if (k >= 0 && content_type)
                k = out_header(c, "Content-Type", 12, content_type);
        for (const char *const *h = headers; k >= 0 && h && h[0]; h += 2) {
                size_t n = strlen(h[0]);
                if (h[1] && header_ok(h[0], n, h[1]))
                        k = out_header(c, h[0], n, h[1]);
        }
        if (k >= 0 && status_has_body(status)) {
                if (length >= 0) {
                        p = mempcpy(line, "Content-Length: ", 16);
                        p = fmt_u64(p, (uint64_t) length);
                        p = mempcpy(p, "\r\n", 2);
                        k = out_append(c, line, (size_t) (p - line));
                } else if (c->rp.parser.http_minor >= 1 && !r->head) {
                        r->chunked = true;
                        k = out_append(c, "Transfer-Encoding: chunked\r\n", 28);
                } else
                        c->close_after = true; /* the end of the body is the end of the connection */
        }
        if (k >= 0 && c->close_after)
                k = out_append(c, "Connection: close\r\n\r\n", 21);
        else if (k >= 0 && c->rp.parser.http_minor == 0)
                k = out_append(c, "Connection: keep-alive\r\n\r\n", 26);
        else if (k >= 0)
                k = out_append(c, "\r\n", 2);
        return k;
}

/* ---- finishing requests ---- */

static void post_unlink(HttpConn *c) {
        HttpServer *s = c->server;
        if (!c->post_queued)
                return;
        if (c->post_prev)
                c->post_prev->post_next = c->post_next;
        else
                s->post_head = c->post_next;
        if (c->post_next)
                c->post_next->post_prev = c->post_prev;
        else
                s->post_tail = c->post_prev;
        c->post_next = c->post_prev = NULL;
        c->post_queued = false;
}

/* An answer given outside the handler's own call: finish from the loop, not from inside
 * whatever called us (it may still use the request). A defer source costs no syscall. */
static void post_queue(HttpConn *c) {
        HttpServer *s = c->server;
        if (c->in_dispatch || c->post_queued)
                return;
        c->post_queued = true;
        c->post_prev = s->post_tail;
        if (c->post_prev)
                c->post_prev->post_next = c;
        else
                s->post_head = c;
        s->post_tail = c;
        /* Released at once by the caller: no loop pass needed (enabling and disabling the
         * source cost as much as formatting the answer). */
        if (!c->release_next && !s->post_armed)
                s->post_armed = sd_event_source_set_enabled(s->post, SD_EVENT_ONESHOT) >= 0;
}

static void request_uncount(HttpConn *c) {
        HttpServer *s = c->server;
        if (!c->req.counted)
                return;
        c->req.counted = false;
        s->n_requests--;
        if (s->draining && s->n_requests == 0)
                manager_on_http_drained(s->manager);
}

/* The request is over: tell whoever waits on it, once. */
static void request_end(HttpConn *c) {
        HttpRequest *r = &c->req;
        uint64_t now = 0; /* one clock reading for the span and the latency */
        if (r->traced) {
                r->traced = false;
                now = metrics_now_usec();
                trace_span_end_at(&r->span, now, r->metric_status, r->metric_status >= 500 || !r->metric_status);
        }
        if (r->metric_begun && r->metric_status) {
                r->metric_begun = false;
                AppMetrics *m = caller_metrics(c);
                if (app_metrics_enabled(m) && r->metric_start)
                        metrics_http_server_end(m, r->metric_route, r->metric_method, r->metric_status,
                                                r->metric_bytes, (now ?: metrics_now_usec()) - r->metric_start);
        }
        if (r->on_end) {
                HttpRequestEndFn fn = r->on_end;
                r->on_end = NULL;
                fn(r, r->on_end_userdata);
        }
        r->drain = NULL;
        request_uncount(c);
}

/* The client is gone (hang-up, reset, write error) or a deadline passed. */
static void conn_lost(HttpConn *c) {
        HttpRequest *r = &c->req;

        c->io = iomux_remove(c->io);
        c->fd = safe_close(c->fd);
        deadline_unlink(c);
        if (c->phase == CONN_HANDLER && !r->replied && !r->on_end) {
                /* A handler is still working on it and has no way to hear that the client
                 * left: keep the request until it answers (into the void). */
                return;
        }
        conn_free(c);
}

static void conn_close_with_linger(HttpConn *c) {
        /* Tell the client we are done, then read what it still sends until it closes (or
         * the linger deadline): closing with unread input would reset the connection and
         * could destroy our answer before the client read it. */
        if (c->ssl && c->fd >= 0)
                peer_tls_shutdown(c->ssl); /* close_notify: the answer before it is complete */
        if (c->fd < 0 || shutdown(c->fd, SHUT_WR) < 0) {
                conn_free(c);
                return;
        }
        c->phase = CONN_LINGER;
        c->lingered = 0;
        conn_set_events(c, BASE_EVENTS);
        deadline_set(c, DEADLINE_LINGER);
}

/* Whether the answer is fully out; if so, ends the request and prepares the next one.
 * Returns true when the connection is ready for its next request (it may have been freed
 * otherwise: the caller must not touch it then). */
static bool conn_complete(HttpConn *c) {
        HttpRequest *r = &c->req;

        if (c->broken || c->fd < 0) {
                conn_lost(c);
                return false;
        }
        if (!r->replied && !r->streaming)
                return false; /* the handler has not answered yet */
        if (c->out_len > 0 || (r->streaming && !r->stream_ended)) {
                c->phase = CONN_WRITE;
                return false;
        }
        bool close = c->close_after || (r->streaming && (r->stream_failed || r->stream_left > 0));
        request_end(c);
        if (close) {
                conn_close_with_linger(c);
                return false;
        }
        *r = (HttpRequest){ .conn = c };
        request_parser_next(&c->rp);
        conn_set_events(c, BASE_EVENTS);
        if (request_parser_pending(&c->rp) > 0) {
                c->phase = CONN_HEAD;
                deadline_set(c, DEADLINE_HEAD);
        } else {
                c->phase = CONN_IDLE;
                deadline_set(c, DEADLINE_IDLE);
        }
        return true;
}

static void conn_read(HttpConn *c);

static void conn_finish(HttpConn *c) {
        if (!conn_complete(c))
                return;
        /* Input left in the socket while the request ran will not be reported again: read it
         * from the loop (queued first: conn_process may free c). */
        if (c->maybe_more)
                post_queue(c);
        conn_process(c);
}

static int on_post(sd_event_source *src, void *userdata) {
        HttpServer *s = userdata;
        /* Finishing one may queue another (a pipelined request answered later): take the list
         * as it is now, the rest runs on the next pass. */
        HttpConn *c;
        unsigned n = 0;
        s->post_armed = false; /* one-shot: off now */
        while ((c = s->post_head) && n++ < 1024) {
                post_unlink(c);
                if (c->phase == CONN_HANDLER || c->phase == CONN_WRITE)
                        conn_finish(c);
                else if (c->maybe_more)
                        conn_read(c);
        }
        if (s->post_head)
                s->post_armed = sd_event_source_set_enabled(s->post, SD_EVENT_ONESHOT) >= 0;
        return 0;
}

/* ---- errors the server answers itself ---- */

static void conn_fail(HttpConn *c, unsigned status, const char *code, const char *msg) {
        HttpServer *s = c->server;
        _cleanup_free_ char *body = NULL;
        json_t *j = json_pack("{s:s, s:s}", "errorCode", code, "message", msg);

        s->stats.bad_requests++;
        request_uncount(c); /* no handler ran: nothing waits for an end */
        if (j) {
                body = json_dumps(j, JSON_COMPACT);
                json_decref(j);
        }
        if (!body) {
                conn_free(c);
                return;
        }
        c->close_after = true;
        c->req.keep_alive = false;
        c->phase = CONN_WRITE;
        c->out_len = c->out_off = 0;
        if (write_head(c, status, "application/json", (int64_t) strlen(body), NULL) < 0 ||
            conn_flush(c, body, strlen(body)) < 0) {
                conn_free(c);
                return;
        }
        c->req.replied = true;
        if (c->out_len == 0 && !c->broken)
                conn_close_with_linger(c);
        else if (c->broken)
                conn_free(c);
        /* else: the rest goes out on EPOLLOUT, then conn_complete() closes (close_after) */
}

/* ---- metrics ---- */

static AppMetrics *caller_metrics(HttpConn *c) {
        return c->caller.app ? c->caller.app->metrics : c->server->manager->registry->metrics;
}

static const char *route_path(unsigned i) {
        return i < http_routes_n ? http_routes[i].pattern : NULL;
}

/*
 * daprd makes no span for a health check: its tracing middleware passes over any request whose
 * path contains "/healthz" (probes would be most of a trace store's spans). The same test here,
 * on the path without the query; the health routes themselves are known by their flag, without
 * looking at the path (probes are frequent).
 */
static bool is_health_check(const Route *route, HttpRequest *r) {
        /* nor for a metrics scrape: daprd serves metrics from a server of their own, untraced */
        if (route && (route->flags & (ROUTE_HEALTH | ROUTE_METRICS)))
                return true;
        /* Most paths have no 'z' at all: one vectorised strchr() rules them out. Then strstr() (also
         * vectorised; memmem() sets up a two-way search, 200 instructions). */
        const char *url = http_request_url(r), *h;
        if (!strchr(url, 'z'))
                return false;
        h = strstr(url, "/healthz");
        return h && !memchr(url, '?', (size_t) (h - url));
}

/* The method label from the parser's number: no string compared per request. */
static MetricsMethod method_label(unsigned method) {
        switch (method) {
        case HTTP_GET: return METRICS_GET;
        case HTTP_POST: return METRICS_POST;
        case HTTP_PUT: return METRICS_PUT;
        case HTTP_DELETE: return METRICS_DELETE;
        case HTTP_PATCH: return METRICS_PATCH;
        case HTTP_HEAD: return METRICS_HEAD;
        case HTTP_OPTIONS: return METRICS_OPTIONS;
        default: return METRICS_METHOD_OTHER;
        }
}

/* The request is complete and routed: count it under its route's template (never its path). */
static void metrics_request_begin(HttpRequest *r, const Route *route) {
        HttpConn *c = r->conn;
        size_t len = 0;
        (void) http_request_body(r, &len);
        r->metric_begun = true;
        r->metric_route = route ? (uint16_t) (route - http_routes) : METRICS_ROUTE_UNMATCHED;
        r->metric_method = (uint8_t) method_label(c->rp.parser.method);
        metrics_http_server_begin(caller_metrics(c), r->metric_route, r->metric_method, len);
        if (trace_enabled() && !is_health_check(route, r)) {
                /* The inbound call's span: a child of the caller's traceparent, named by the route. */
                TraceContext parent;
                const char *tp = request_parser_traceparent(&c->rp);
                bool has_parent = tp && traceparent_parse(tp, &parent) >= 0;
                App *app = c->caller.app;
                /* it starts when the head was in (the clock read then for the metrics, if it was) */
                trace_span_begin_at(&r->span, r->metric_start ?: metrics_now_usec(), has_parent ? &parent : NULL,
                                 app ? app->trace_rate : c->server->manager->registry->trace_rate, SPAN_SERVER,
                                 route ? route->pattern : "unmatched", app ? app->config->id : NULL);
                r->traced = true;
        }
}

const TraceContext *http_request_trace(const HttpRequest *r) {
        return r->traced ? &r->span.ctx : NULL;
}

bool http_request_trace_remote(const HttpRequest *r) {
        return r->traced && r->span.has_parent;
}

/* ---- dispatch ---- */

/* An app's TCP port is reachable by anything on the host: with a token configured,
 * the token is what makes the caller that app. */
static bool token_ok(HttpRequest *r, RouteFlags flags) {
        const Caller *c = &r->conn->caller;
        return c->via != LISTENER_APP_TCP || !c->app || !c->app->config->api_token || (flags & ROUTE_NO_TOKEN) ||
               app_token_matches(c->app, http_request_header(r, "dapr-api-token"));
}

static bool secret_eq(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        unsigned char d = la != lb;
        for (size_t i = 0; i < la; i++)
                d |= (unsigned char) (a[i] ^ b[i % (lb ? lb : 1)]);
        return d == 0;
}

/* DashboardToken=, when set, guards the dashboard port's data (not its static files):
 * "Authorization: Bearer TOKEN" or "?token=TOKEN". */
static bool dashboard_token_ok(HttpRequest *r, RouteFlags flags) {
        const char *want = settings(r->conn->server)->dashboard_token, *h;
        if (r->conn->caller.via != LISTENER_DASHBOARD || !want || (flags & ROUTE_NO_TOKEN))
                return true;
        h = http_request_header(r, "authorization");
        if (h && strncasecmp(h, "Bearer ", 7) == 0 && secret_eq(h + 7, want))
                return true;
        _cleanup_free_ char *q = http_request_query(r, "token");
        return q && secret_eq(q, want);
}

/* Route flags a listener admits besides the Dapr API: the shared socket everything, the
 * metrics and dashboard ports only their own routes. */
static bool route_allowed(const Caller *c, RouteFlags flags) {
        switch (c->via) {
        case LISTENER_API:
                return true;
        case LISTENER_METRICS:
                return flags & ROUTE_METRICS;
        case LISTENER_DASHBOARD:
                return flags & ROUTE_DASHBOARD;
        case LISTENER_PEER:
                return flags & ROUTE_PEER;
        default:
                return !(flags & ROUTE_ADMIN);
        }
}

static int dispatch(HttpRequest *r) {
        const Caller *c = &r->conn->caller;
        const char *method = http_request_method(r), *url = http_request_url(r);
        RouteMatch match; /* router_match() fills it */
        int k;

        k = router_match(http_routes, http_routes_n, method, url, &match);
        if (k == 0)
                k = router_match(http_missing_routes, http_missing_routes_n, method, url, &match);
        metrics_request_begin(r, k == 1 && route_allowed(c, match.route->flags) ? match.route : NULL);
        if ((c->via == LISTENER_METRICS || c->via == LISTENER_DASHBOARD) &&
            (k != 1 || !route_allowed(c, match.route->flags))) {
                /* These ports serve their few routes and nothing else: no invocation by header. */
                route_match_done(&match);
                return http_reply(r, 404, "text/plain", "not found\n", 10);
        }
        if (c->via == LISTENER_PEER && (k != 1 || !route_allowed(c, match.route->flags))) {
                /* Peers reach invocation, actors and the peer protocol; no state, no admin, no
                 * invocation by header. */
                route_match_done(&match);
                return http_reply_error_status(r, 404, DAPR_ERR_DIRECT_INVOKE_NOT_FOUND,
                                               "no route for %s %s on the peer listener", method, url);
        }
        if (k < 0 && k != -ENOMEM)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "malformed request path");
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_INTERNAL, "out of memory");
        if (k == 0 || !route_allowed(c, match.route->flags)) {
                route_match_done(&match);
                /* Anything unrouted is service invocation when a header names the target app. */
                if (k == 0 && !token_ok(r, 0))
                        return http_reply(r, 401, "text/plain", "invalid api token", strlen("invalid api token"));
                if (k == 0 && (k = http_invoke_by_header(r)) != 0) {
                        if (k < 0 && !r->replied && !r->suspended)
                                return http_reply_error(r, DAPR_ERR_INTERNAL, "internal error: %s", strerror(-k));
                        return 0;
                }
                /* What Dapr answers for anything unrouted: it falls through to service
                 * invocation, which finds no target app. */
                return http_reply_error(r, DAPR_ERR_DIRECT_INVOKE_NOT_FOUND,
                                        "failed getting app id either from the URL path or the header "
                                        "dapr-app-id (no route for %s %s)", method, url);
        }

        trace_set_current(http_request_trace(r)); /* blocks' operations become its children */
        if (!token_ok(r, match.route->flags) || !dashboard_token_ok(r, match.route->flags)) {
                route_match_done(&match);
                return http_reply(r, 401, "text/plain", "invalid api token", strlen("invalid api token"));
        }
        k = match.route->handler(r, &match);
        route_match_done(&match);
        if (k < 0 && !r->replied && !r->streaming && !r->suspended)
                return http_reply_error(r, DAPR_ERR_INTERNAL, "internal error: %s", strerror(-k));
        return 0;
}

/* The head is complete: the request is in flight from here (a drain lets it finish). */
static void request_begin(HttpConn *c) {
        HttpServer *s = c->server;
        HttpRequest *r = &c->req;

        r->counted = true;
        /* 0: no latency to record (metrics off for this caller: no clock read) */
        r->metric_start = app_metrics_enabled(caller_metrics(c)) ? metrics_now_usec() : 0;
        s->n_requests++;
        s->stats.requests++;
        r->keep_alive = request_parser_keep_alive(&c->rp);
        r->head = c->rp.parser.method == HTTP_HEAD;
        if (!c->rp.complete) {
                c->phase = CONN_BODY;
                deadline_set(c, DEADLINE_PROGRESS);
                if (c->rp.parser.flags & F_CONTENTLENGTH)
                        (void) request_parser_reserve_body(&c->rp, c->rp.parser.content_length);
                if (c->rp.expect_continue) {
                        /* The client waits for this before sending the body; it is short and the
                         * socket is empty in this direction. */
                        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                        struct iovec iov = { (void *) cont, sizeof cont - 1 };
                        if (conn_writev(c, &iov, 1) < 0 && errno != EAGAIN)
                                c->broken = true;
                }
        }
}

/* Parses what is buffered and runs every request that is complete, in order. */
static void conn_process(HttpConn *c) {
        for (;;) {
                RequestParseResult res = request_parser_run(&c->rp);

                if (res == REQUEST_PARSE_ERROR) {
                        conn_fail(c, c->rp.error_status, c->rp.error_code, c->rp.error_msg);
                        return;
                }
                if (c->rp.head_done && !c->req.counted && !c->req.replied)
                        request_begin(c);
                if (c->broken) {
                        conn_lost(c);
                        return;
                }
                if (res == REQUEST_PARSE_MORE) {
                        if (c->phase == CONN_IDLE && request_parser_pending(&c->rp) > 0) {
                                c->phase = CONN_HEAD;
                                deadline_set(c, DEADLINE_HEAD);
                        } else if (c->phase == CONN_BODY)
                                deadline_set(c, DEADLINE_PROGRESS); /* progress: restart the clock */
                        return;
                }

                /* A whole request: dispatch it, nothing more is read until it is answered. */
                c->phase = CONN_HANDLER;
                deadline_unlink(c);
                c->in_dispatch = true;
                (void) dispatch(&c->req);
                trace_set_current(NULL);
                c->in_dispatch = false;
                if (!c->req.replied && !c->req.streaming)
                        return; /* answered later; the connection waits (EPOLLRDHUP watches it) */
                if (!conn_complete(c))
                        return;
        }
}

/* ---- connection io ---- */

static void conn_read(HttpConn *c) {
        char *p;
        size_t room;

        c->maybe_more = false;
        if (c->phase == CONN_HANDLER || c->phase == CONN_WRITE) {
                c->maybe_more = true; /* the next request: read once this one is over */
                return;
        }
        if (c->phase == CONN_LINGER) {
                char junk[4096];
                for (;;) {
                        ssize_t n = read(c->fd, junk, sizeof junk);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                return;
                        if (n <= 0 || (c->lingered += (size_t) n) > LINGER_MAX_BYTES) {
                                conn_free(c);
                                return;
                        }
                }
        }
        if (request_parser_space(&c->rp, 4096, &p, &room) < 0) {
                conn_fail(c, 500, "ERROR", "out of memory");
                return;
        }
        ssize_t n = conn_recv(c, p, room);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return;
                conn_lost(c);
                return;
        }
        if (n == 0) {
                /* EOF: between requests that is the normal end; in the middle of one the
                 * request is incomplete and has nobody to answer to. */
                conn_lost(c);
                return;
        }
        request_parser_commit(&c->rp, (size_t) n);
        if ((size_t) n == room || c->rdhup) {
                /* A full buffer: more may wait in the socket and no new edge will say so. Read
                 * on from the loop (queued before processing, which may free c). */
                c->maybe_more = true;
                post_queue(c);
        }
        conn_process(c);
}

static void conn_write_ready(HttpConn *c) {
        HttpRequest *r = &c->req;

        if (conn_flush_full(c, NULL, 0, true) < 0 || c->broken) {
                conn_lost(c);
                return;
        }
        if (c->out_len > 0) {
                deadline_set(c, DEADLINE_PROGRESS);
                if (r->producer_blocked && r->drain && c->out_len <= STREAM_BUFFER_MAX / 2) {
                        /* half the buffer is free: ask the producer for more */
                        r->producer_blocked = false;
                        r->drain(r->drain_userdata);
                }
                return;
        }
        if (r->streaming && !r->stream_ended) {
                /* Everything written: wait for the producer, no read of the next request yet. */
                conn_set_events(c, BASE_EVENTS);
                deadline_unlink(c);
                if (r->producer_blocked && r->drain) {
                        r->producer_blocked = false;
                        r->drain(r->drain_userdata);
                }
                return;
        }
        conn_set_events(c, BASE_EVENTS);
        conn_finish(c);
}

static void listener_log(HttpListener *l, int error, const char *what);

/* The peer listener's TLS handshake, then the caller's identity from its certificate. Until it
 * is done no byte of HTTP is read; a failure closes the connection without an answer. */
static void conn_handshake(HttpConn *c) {
        _cleanup_free_ char *msg = NULL;
        uint32_t want = 0;
        int r = peer_tls_handshake(c->ssl, &want, &msg);

        if (r == 0) {
                conn_set_events(c, BASE_EVENTS | (want & EPOLLOUT));
                return;
        }
        if (r > 0 && peer_tls_peer_identity(c->ssl, &c->caller.peer_host, &c->caller.peer_trust_domain) < 0) {
                r = -EKEYREJECTED;
                msg = strdup("the client certificate names no host and trust domain (SAN DNS and URI "
                             "spiffe://<trust-domain>/mooring/host/<host-id>)");
        }
        if (r < 0) {
                if (c->listener)
                        listener_log(c->listener, 0, msg ?: "TLS handshake failed");
                conn_free(c);
                return;
        }
        c->handshaking = false;
        conn_set_events(c, BASE_EVENTS);
        deadline_set(c, DEADLINE_IDLE);
        /* The first request may have come with the end of the handshake: its edge is past. */
        conn_read(c);
}

static void on_conn_io(IoWatch *w, int fd, uint32_t revents, void *userdata) {
        HttpConn *c = userdata;

        if (c->handshaking) {
                if (revents & (EPOLLIN | EPOLLOUT))
                        conn_handshake(c);
                else
                        conn_free(c);
                return;
        }

        if (c->phase == CONN_HANDLER) {
                /* Waiting for the handler: only a client that leaves matters. Pipelined bytes
                 * are left in the socket (edge-triggered, they wake us once: we note them). */
                if (revents & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
                        conn_lost(c);
                        return;
                }
                if ((revents & EPOLLOUT) && c->out_len > 0) {
                        conn_write_ready(c);
                        return;
                }
                if (revents & EPOLLIN) {
                        char b;
                        ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
                        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                                conn_lost(c);
                        else if (n > 0)
                                c->maybe_more = true; /* pipelined: read after the answer */
                }
                return;
        }
        if (c->phase == CONN_WRITE && c->out_len == 0 && (revents & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))) {
                /* Everything written, the producer (an app's answer) not done: as while the
                 * handler works, a client that leaves now is gone. Edge-triggered, this is the
                 * only time we hear of it. */
                conn_lost(c);
                return;
        }
        if (revents & EPOLLRDHUP)
                c->rdhup = true; /* reported once: the EOF is read after what precedes it */
        if (revents & EPOLLIN)
                c->maybe_more = true;
        if (revents & EPOLLOUT) {
                conn_write_ready(c); /* may free c */
                return;
        }
        if (revents & EPOLLIN) {
                conn_read(c); /* reads the EOF of a hang-up, if that is what it is */
                return;
        }
        if (revents & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                conn_lost(c);
}

/* ---- limits and accepting ---- */

static UidCount *uid_find(HttpServer *s, uid_t uid, bool create) {
        for (size_t i = 0; i < s->n_uids; i++)
                if (s->uids[i].uid == uid)
                        return &s->uids[i];
        if (!create)
                return NULL;
        UidCount *u = reallocarray(s->uids, s->n_uids + 1, sizeof *u);
        if (!u)
                return NULL;
        s->uids = u;
        u[s->n_uids] = (UidCount){ .uid = uid };
        return &u[s->n_uids++];
}

static void uid_release(HttpConn *c) {
        HttpServer *s = c->server;
        if (!c->has_uid)
                return;
        c->has_uid = false;
        UidCount *u = uid_find(s, c->uid, false);
        if (!u)
                return;
        u->all--;
        if (c->caller.via == LISTENER_API)
                u->api--;
        if (u->all == 0)
                *u = s->uids[--s->n_uids];
}

static const char *listener_name(const HttpListener *l) {
        return l->kind == LISTENER_API ? "the shared socket" : l->kind == LISTENER_APP_UNIX ? "its socket" :
               l->kind == LISTENER_METRICS ? "the metrics port" : l->kind == LISTENER_DASHBOARD ? "the dashboard port" :
               l->kind == LISTENER_PEER ? "the peer listener" : "its port";
}

static void listener_log(HttpListener *l, int error, const char *what) {
        uint64_t held = 0;
        switch (ratelimit_event(&l->log_rl, now_usec(l->server), &held)) {
        case RATELIMIT_HELD:
                return;
        case RATELIMIT_FIRST:
                held = 0;
                break;
        case RATELIMIT_SUMMARY:
                break;
        }
        const char *app = l->app ? l->app->config->id : NULL;
        if (error)
                log_struct(LOG_WARNING, error, app, NULL, "HTTP %s on %s: %m (%llu more held back).", what,
                           listener_name(l), (unsigned long long) held);
        else
                log_struct(LOG_WARNING, 0, app, NULL, "HTTP connection refused on %s: %s (%llu more held back).",
                           listener_name(l), what, (unsigned long long) held);
}

static void refuse(HttpListener *l, int fd, const char *why, uint64_t *counter) {
        static const char body[] = "{\"errorCode\":\"ERR_TOO_MANY_CONNECTIONS\",\"message\":\"connection limit reached\"}";
        char buf[256];

        /* Not a Dapr code: Dapr has no per-connection limit. A best-effort 503 lets an HTTP/1.1
         * client tell "too busy" from a network failure. A peer speaks TLS: it just sees the close. */
        if (l->kind == LISTENER_PEER) {
                safe_close(fd);
                (*counter)++;
                listener_log(l, 0, why);
                return;
        }
        int n = snprintf(buf, sizeof buf,
                         "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         sizeof body - 1, body);
        (void) !write(fd, buf, (size_t) n);
        (void) shutdown(fd, SHUT_WR);
        safe_close(fd);
        (*counter)++;
        listener_log(l, 0, why);
}

static unsigned global_cap(HttpServer *s) {
        return MIN(settings(s)->max_connections, s->nofile_cap);
}

static void update_nofile_cap(HttpServer *s) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) {
                s->nofile_cap = UINT32_MAX;
                return;
        }
        /* Keep fds for listeners, drivers, the app channel (one per call in flight), files. */
        rlim_t reserve = MAX((rlim_t) 64, rl.rlim_cur / 8);
        s->nofile_cap = rl.rlim_cur > reserve ? (unsigned) MIN(rl.rlim_cur - reserve, (rlim_t) UINT32_MAX) : 1;
}

static void conn_new(HttpListener *l, int fd) {
        HttpServer *s = l->server;
        const Settings *st = settings(s);
        struct ucred cred = {};
        bool has_cred = false;
        UidCount *u = NULL;

        if (s->n_conns >= global_cap(s)) {
                refuse(l, fd, "global connection limit (MaxConnections=) reached", &s->stats.refused_global);
                return;
        }
        if (l->is_unix) {
                socklen_t len = sizeof cred;
                has_cred = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) >= 0;
        }
        if (has_cred) {
                u = uid_find(s, cred.uid, false);
                if (u && u->all >= st->max_connections_per_user) {
                        refuse(l, fd, "per-user connection limit (MaxConnectionsPerUser=) reached",
                               &s->stats.refused_user);
                        return;
                }
        }
        if (l->kind == LISTENER_API ? (u && u->api >= st->max_connections_per_listener)
                                    : l->n_conns >= st->max_connections_per_listener) {
                refuse(l, fd, "per-listener connection limit (MaxConnectionsPerListener=) reached",
                       &s->stats.refused_listener);
                return;
        }

        HttpConn *c = calloc(1, sizeof *c);
        if (!c) {
                log_oom();
                safe_close(fd);
                return;
        }
        c->server = s;
        c->listener = l;
        c->fd = fd;
        c->dl_kind = DEADLINE_NONE;
        c->req.conn = c;
        c->events = BASE_EVENTS;
        RequestLimits limits = {
                .max_head = REQUEST_MAX_HEAD_DEFAULT,
                .max_uri = REQUEST_MAX_URI_DEFAULT,
                .max_fields = REQUEST_MAX_FIELDS_DEFAULT,
                .max_body = manager_max_body(s->manager),
        };
        request_parser_init(&c->rp, &limits);
        caller_init(&c->caller, l, has_cred ? &cred : NULL);
        if (l->kind == LISTENER_PEER) {
                /* No TLS set up (it failed to load): nobody may come in. */
                if (!s->peer_tls || peer_tls_conn_new(s->peer_tls, fd, NULL, NULL, &c->ssl) < 0) {
                        request_parser_done(&c->rp);
                        safe_close(fd);
                        free(c);
                        listener_log(l, 0, "peer TLS is not set up");
                        return;
                }
                c->handshaking = true;
                /* TLS writes an answer as several records: Nagle would hold the last ones back until
                 * the peer acknowledges the first, which it delays (40 ms) */
                int one = 1;
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (iomux_add(s->mux, fd, c->events, on_conn_io, c, &c->io) < 0) {
                c->ssl = peer_tls_conn_free(c->ssl);
                caller_done(&c->caller);
                request_parser_done(&c->rp);
                safe_close(fd);
                free(c);
                log_oom();
                return;
        }
        if (has_cred && (u = uid_find(s, cred.uid, true))) {
                c->has_uid = true;
                c->uid = cred.uid;
                u->all++;
                if (l->kind == LISTENER_API)
                        u->api++;
        }
        l->n_conns++;
        s->n_conns++;
        s->stats.accepted++;
        c->next = s->conns;
        if (c->next)
                c->next->prev = c;
        s->conns = c;
        c->phase = CONN_IDLE;
        /* a handshake must be done as fast as a request head arrives */
        deadline_set(c, c->handshaking ? DEADLINE_HEAD : DEADLINE_IDLE);
}

static void conn_free(HttpConn *c) {
        HttpServer *s;

        if (!c)
                return;
        s = c->server;
        if (c->req.counted || c->req.on_end)
                request_end(c);
        deadline_unlink(c);
        post_unlink(c);
        uid_release(c);
        if (c->listener)
                c->listener->n_conns--;
        if (c->prev)
                c->prev->next = c->next;
        else if (s->conns == c)
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_conns--;
        iomux_remove(c->io);
        c->ssl = peer_tls_conn_free(c->ssl);
        safe_close(c->fd);
        caller_done(&c->caller);
        request_parser_done(&c->rp);
        free(c->out);
        free(c);
}

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        HttpListener *l = userdata;
        HttpServer *s = l->server;

        /* Take what is queued, bounded so one busy listener cannot starve the loop. */
        for (unsigned i = 0; i < 64; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* The connection stays queued and the socket readable: without a
                                 * pause we would spin. Stop accepting here for a moment. */
                                s->stats.accept_errors++;
                                listener_log(l, errno, "accept failed, pausing the listener for 100ms");
                                (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
                                (void) sd_event_source_set_time_relative(l->backoff, 100 * 1000);
                                (void) sd_event_source_set_enabled(l->backoff, SD_EVENT_ONESHOT);
                        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                                s->stats.accept_errors++;
                                listener_log(l, errno, "accept failed");
                        }
                        break;
                }
                if (s->draining) {
                        safe_close(cfd);
                        continue;
                }
                conn_new(l, cfd);
        }
        return 0;
}

static int on_accept_backoff(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpListener *l = userdata;
        if (!l->server->draining)
                (void) sd_event_source_set_enabled(l->source, SD_EVENT_ON);
        return 0;
}

/* ---- deadline sweep ---- */

static void deadline_expired(HttpConn *c, DeadlineKind k) {
        HttpServer *s = c->server;
        switch (k) {
        case DEADLINE_IDLE:
                conn_free(c);
                break;
        case DEADLINE_HEAD:
        case DEADLINE_PROGRESS:
                if (c->phase == CONN_HEAD || c->phase == CONN_BODY) {
                        if (c->phase == CONN_HEAD)
                                s->stats.header_timeouts++;
                        else
                                s->stats.body_timeouts++;
                        /* Slowloris and stalled uploads: 408 (Dapr has no code for it) and close. */
                        deadline_unlink(c);
                        conn_fail(c, 408, "ERR_REQUEST_TIMEOUT",
                                  c->phase == CONN_HEAD ? "request head not received in time"
                                                        : "request body stalled");
                } else {
                        /* an answer the client does not read */
                        s->stats.body_timeouts++;
                        conn_lost(c);
                }
                break;
        default:
                conn_free(c);
        }
}

static int on_sweep(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpServer *s = userdata;
        uint64_t now = now_usec(s);
        bool any = false;

        for (DeadlineKind k = 0; k < _DEADLINE_MAX; k++) {
                HttpConn *c;
                /* Ordered by deadline: stop at the first that has time left. */
                while ((c = s->dl_head[k]) && c->deadline <= now)
                        deadline_expired(c, k);
                any = any || s->dl_head[k];
        }
        if (any) {
                (void) sd_event_source_set_time(s->sweep, now + SWEEP_USEC);
                (void) sd_event_source_set_enabled(s->sweep, SD_EVENT_ONESHOT);
        }
        return 0;
}

/* ---- the server ---- */

HttpServer *http_server_new(Manager *m, sd_event *e) {
        HttpServer *s = calloc(1, sizeof *s);

        if (!s)
                return NULL;
        s->manager = m;
        s->event = sd_event_ref(e);
        metrics_set_route_labels(route_path);
        update_nofile_cap(s);
        /* accuracy 250 ms: deadlines are coarse by design, let sd-event batch the wakeups */
        if (sd_event_add_time(e, &s->sweep, CLOCK_MONOTONIC, UINT64_MAX, 250 * 1000, on_sweep, s) < 0 ||
            sd_event_add_defer(e, &s->post, on_post, s) < 0 || iomux_new(e, "http-connections", &s->mux) < 0)
                return http_server_free(s);
        (void) sd_event_source_set_enabled(s->sweep, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(s->post, SD_EVENT_OFF);
        return s;
}

HttpServer *http_server_free(HttpServer *s) {
        if (!s)
                return NULL;
        while (s->listeners)
                http_listener_free(s->listeners);
        /* Whatever still waits (nothing should: the Manager ends outgoing requests first) is
         * answered now, then every connection goes (on_end runs for those that have it). */
        for (HttpConn *c = s->conns; c; c = c->next)
                if (c->phase == CONN_HANDLER && !c->req.replied && !c->req.streaming) {
                        c->in_dispatch = true; /* no finishing from inside: we free below */
                        (void) http_reply_error(&c->req, DAPR_ERR_INTERNAL, "mooringd is stopping");
                }
        while (s->conns)
                conn_free(s->conns);
        sd_event_source_disable_unref(s->sweep);
        sd_event_source_disable_unref(s->post);
        iomux_free(s->mux);
        free(s->uids);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

void http_server_set_peer_tls(HttpServer *s, PeerTls *tls) {
        s->peer_tls = tls;
}

unsigned http_server_requests_in_flight(const HttpServer *s) {
        return s->n_requests;
}

const HttpServerStats *http_server_stats(const HttpServer *s) {
        HttpServerStats *st = (HttpServerStats *) &s->stats;
        st->connections = s->n_conns;
        return st;
}

void http_server_start_drain(HttpServer *s) {
        s->draining = true;
        for (HttpListener *l = s->listeners; l; l = l->next)
                (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
        /* Connections between requests (or with half a head) go now; the others after their
         * answer, which says "Connection: close". */
        for (HttpConn *c = s->conns, *n; c; c = n) {
                n = c->next;
                if (c->phase == CONN_IDLE || c->phase == CONN_HEAD || c->phase == CONN_LINGER)
                        conn_free(c);
                else
                        c->close_after = true;
        }
}

/* ---- listeners ---- */

int http_listener_new(HttpServer *s, ListenerKind kind, App *app, int fd_take, const char *unlink_path,
                      HttpListener **ret) {
        _cleanup_close_ int fd = fd_take;
        HttpListener *l = calloc(1, sizeof *l);
        int domain = 0;
        socklen_t dl = sizeof domain;
        int r;

        if (!l)
                return -ENOMEM;
        *l = (HttpListener){ .server = s, .kind = kind, .app = app_ref(app), .fd = TAKE_FD(fd),
                             .log_rl = RATELIMIT_INIT(LOG_INTERVAL_USEC) };
        l->is_unix = getsockopt(l->fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) >= 0 && domain == AF_UNIX;
        if (unlink_path) {
                l->unlink_path = strdup(unlink_path);
                if (!l->unlink_path) {
                        http_listener_free(l);
                        return -ENOMEM;
                }
        }
        r = sd_event_add_io(s->event, &l->source, l->fd, EPOLLIN, on_accept, l);
        if (r >= 0)
                r = sd_event_add_time(s->event, &l->backoff, CLOCK_MONOTONIC, UINT64_MAX, 0, on_accept_backoff, l);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->backoff, SD_EVENT_OFF);
        if (r < 0) {
                http_listener_free(l);
                return r;
        }
        if (s->draining)
                (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
        update_nofile_cap(s); /* a reload may follow a raised limit */
        l->next = s->listeners;
        if (l->next)
                l->next->prev = l;
        s->listeners = l;
        *ret = l;
        return 0;
}

HttpListener *http_listener_free(HttpListener *l) {
        if (!l)
                return NULL;
        HttpServer *s = l->server;
        if (l->prev)
                l->prev->next = l->next;
        else if (s->listeners == l)
                s->listeners = l->next;
        if (l->next)
                l->next->prev = l->prev;
        /* Its connections live on (an app's settings changed, its requests finish) but are
         * no longer counted against it. */
        for (HttpConn *c = s->conns; c && l->n_conns > 0; c = c->next)
                if (c->listener == l) {
                        c->listener = NULL;
                        l->n_conns--;
                }
        sd_event_source_disable_unref(l->source);
        sd_event_source_disable_unref(l->backoff);
        safe_close(l->fd);
        if (l->unlink_path) {
                (void) unlink(l->unlink_path);
                free(l->unlink_path);
        }
        app_unref(l->app);
        free(l);
        return NULL;
}

int http_listener_fd(const HttpListener *l) {
        return l->fd;
}

/* ---- request API ---- */

const Caller *http_request_caller(const HttpRequest *r) {
        return &r->conn->caller;
}

Manager *http_request_manager(const HttpRequest *r) {
        return r->conn->server->manager;
}

Registry *http_request_registry(const HttpRequest *r) {
        return r->conn->server->manager->registry;
}

const char *http_request_method(const HttpRequest *r) {
        return request_parser_method(&r->conn->rp);
}

const char *http_request_url(const HttpRequest *r) {
        return request_parser_path(&r->conn->rp);
}

const char *http_request_header(const HttpRequest *r, const char *name) {
        return request_parser_header(&r->conn->rp, name);
}

const void *http_request_body(const HttpRequest *r, size_t *ret_len) {
        return request_parser_body(&r->conn->rp, ret_len);
}

const char *http_request_raw_query(const HttpRequest *r) {
        return request_parser_query(&r->conn->rp);
}

/* Walks "k=v&k2=v2" (escaped), unescaping each part; a key without '=' has the value "". */
int http_request_foreach_query(const HttpRequest *r, HttpRequestQueryFn fn, void *userdata) {
        const char *q = http_request_raw_query(r);

        while (q && *q) {
                size_t n = strcspn(q, "&");
                const char *eq = memchr(q, '=', n);
                if (n > 0) {
                        size_t kl = eq ? (size_t) (eq - q) : n;
                        _cleanup_free_ char *k = http_unescape(q, kl, true);
                        _cleanup_free_ char *v = eq ? http_unescape(eq + 1, n - kl - 1, true) : strdup("");
                        if (!k || !v)
                                return -EINVAL;
                        int e = fn(k, v, userdata);
                        if (e < 0)
                                return e;
                }
                q += n;
                if (*q == '&')
                        q++;
        }
        return 0;
}

/* The first argument of that name, unescaped; a key without '=' has the value "". */
char *http_request_query(const HttpRequest *r, const char *name) {
        const char *q = http_request_raw_query(r);

        while (q && *q) {
                size_t n = strcspn(q, "&");
                const char *eq = memchr(q, '=', n);
                size_t kl = eq ? (size_t) (eq - q) : n;
                _cleanup_free_ char *k = http_unescape(q, kl, true);
                if (k && streq(k, name))
                        return eq ? http_unescape(eq + 1, n - kl - 1, true) : strdup("");
                q += n;
                if (*q == '&')
                        q++;
        }
        return NULL;
}

int http_request_header_pairs_into(const HttpRequest *r, char **l, size_t n) {
        const RequestParser *p = &r->conn->rp;
        if (2 * (size_t) p->n_fields + 1 > n)
                return -ENOBUFS;
        for (unsigned i = 0; i < p->n_fields; i++) {
                l[2 * i] = (char *) request_parser_field_name(p, i);
                l[2 * i + 1] = (char *) request_parser_field_value(p, i);
        }
        l[2 * (size_t) p->n_fields] = NULL;
        return 0;
}

int http_request_header_pairs(const HttpRequest *r, char ***ret) {
        size_t n = 2 * (size_t) r->conn->rp.n_fields + 1;
        char **l = malloc(n * sizeof *l);

        if (!l)
                return -ENOMEM;
        (void) http_request_header_pairs_into(r, l, n);
        *ret = l;
        return 0;
}

void http_request_on_end(HttpRequest *r, HttpRequestEndFn fn, void *userdata) {
        r->on_end = fn;
        r->on_end_userdata = userdata;
}

void http_request_release(HttpRequest *r) {
        HttpConn *c = r->conn;
        HttpServer *s = c->server;
        c->release_next = false;
        if (!c->post_queued || c->in_dispatch)
                return;
        /* What on_post would do for this connection on the next loop pass, done now: the caller
         * promised not to touch r again. One loop pass less per answered call (each pass is an
         * epoll_wait() and a gettid() in sd-event). */
        post_unlink(c);
        if (!s->post_head && s->post_armed) {
                (void) sd_event_source_set_enabled(s->post, SD_EVENT_OFF);
                s->post_armed = false;
        }
        if (c->phase == CONN_HANDLER || c->phase == CONN_WRITE)
                conn_finish(c);
        else if (c->maybe_more)
                conn_read(c);
}

void http_request_release_next(HttpRequest *r) {
        r->conn->release_next = true;
}

void http_request_suspend(HttpRequest *r) {
        /* Only a marker: a request without an answer simply waits. */
        if (!r->replied)
                r->suspended = true;
}

/* ---- replies ---- */

static int reply_internal(HttpRequest *r, unsigned status, const char *content_type, const void *body,
                          size_t len, const char *const *headers) {
        HttpConn *c = r->conn;
        int k;

        if (r->replied || r->streaming)
                return -EALREADY;
        r->replied = true;
        if (c->fd >= 0) {
                bool has_body = status_has_body(status);
                k = write_head(c, status, content_type, has_body ? (int64_t) len : -1, headers);
                if (k >= 0)
                        /* HEAD: the length of the body that a GET would get, and no body */
                        k = conn_flush(c, body, has_body && !r->head ? len : 0);
                if (k < 0)
                        c->broken = true;
        }
        post_queue(c);
        return 0;
}

int http_reply(HttpRequest *r, unsigned status, const char *content_type, const void *body, size_t len) {
        return reply_internal(r, status, content_type, body, len, NULL);
}

int http_reply_headers(HttpRequest *r, unsigned status, const char *content_type, const void *body, size_t len,
                       const char *const *headers) {
        return reply_internal(r, status, content_type, body, len, headers);
}

int http_reply_empty(HttpRequest *r, unsigned status) {
        return http_reply(r, status, NULL, NULL, 0);
}

int http_reply_json(HttpRequest *r, unsigned status, json_t *j) {
        _cleanup_free_ char *s = NULL;
        if (!j)
                return -ENOMEM;
        s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!s)
                return -ENOMEM;
        return http_reply(r, status, "application/json", s, strlen(s));
}

_printf_(4, 0) static int reply_error_v(HttpRequest *r, unsigned status, DaprError e, const char *fmt,
                                         va_list ap) {
        _cleanup_free_ char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        json_t *j = json_pack("{s:s, s:s}", "errorCode", dapr_error_code(e), "message", msg ?: "");
        int k = http_reply_json(r, status, j);
        if (k == -ENOMEM && !r->replied) /* last resort: a body we need not allocate */
                return http_reply(r, 500, "application/json",
                                  "{\"errorCode\":\"ERROR\",\"message\":\"out of memory\"}", 50);
        return k;
}

int http_reply_error_status(HttpRequest *r, unsigned status, DaprError e, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int k = reply_error_v(r, status, e, fmt, ap);
        va_end(ap);
        return k;
}

int http_reply_error(HttpRequest *r, DaprError e, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int k = reply_error_v(r, dapr_error_status(e), e, fmt, ap);
        va_end(ap);
        return k;
}

/* ---- streamed replies ---- */

int http_reply_stream(HttpRequest *r, unsigned status, const char *const *headers, int64_t size,
                      HttpStreamDrainFn drain, void *userdata) {
        HttpConn *c = r->conn;

        if (r->replied || r->streaming)
                return -EALREADY;
        r->streaming = true;
        r->drain = drain;
        r->drain_userdata = userdata;
        r->discard = !status_has_body(status) || r->head;
        r->stream_left = r->discard ? 0 : size;
        if (c->fd >= 0) {
                /* A HEAD answer still says how long the body would be. */
                if (write_head(c, status, NULL, status_has_body(status) ? size : -1, headers) < 0 ||
                    conn_flush(c, NULL, 0) < 0)
                        c->broken = true;
        }
        if (!c->in_dispatch && c->phase == CONN_HANDLER)
                c->phase = CONN_WRITE;
        if (c->broken)
                post_queue(c);
        return 0;
}

bool http_stream_write(HttpRequest *r, const void *buf, size_t len) {
        HttpConn *c = r->conn;
        char hdr[32];

        if (!r->streaming || r->discard || r->stream_ended || len == 0 || c->fd < 0 || c->broken)
                return true;
        /* All or nothing: a chunk is taken whole, or the producer pauses and offers it again. */
        if (c->out_len > 0 && c->out_len + len > STREAM_BUFFER_MAX) {
                r->producer_blocked = true;
                return false;
        }
        if (r->stream_left < 0)
                r->metric_bytes += len;
        if (r->stream_left >= 0) {
                /* never more than announced: the framing would break */
                if ((uint64_t) len > (uint64_t) r->stream_left)
                        len = (size_t) r->stream_left;
                r->stream_left -= (int64_t) len;
        }
        int k = 0;
        if (r->chunked) {
                int n = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
                k = out_append(c, hdr, (size_t) n);
                if (k >= 0)
                        k = out_append(c, buf, len);
                if (k >= 0)
                        k = out_append(c, "\r\n", 2);
                if (k >= 0)
                        k = conn_flush(c, NULL, 0);
        } else
                k = conn_flush(c, buf, len);
        if (k < 0)
                c->broken = true;
        if (c->broken)
                post_queue(c);
        return true;
}

void http_stream_end(HttpRequest *r, bool ok) {
        HttpConn *c = r->conn;

        if (!r->streaming || r->stream_ended)
                return;
        r->stream_ended = true;
        r->stream_failed = !ok;
        r->drain = NULL; /* the producer is gone */
        if (ok && r->chunked && !r->discard && c->fd >= 0 && !c->broken) {
                if (out_append(c, "0\r\n\r\n", 5) < 0 || conn_flush(c, NULL, 0) < 0)
                        c->broken = true;
        }
        /* A failed stream is cut short: the connection closes after what was sent, so the
         * client sees a truncated body rather than a complete-looking one. */
        if (!ok)
                c->close_after = true;
        post_queue(c);
}
