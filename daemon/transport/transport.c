/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See transport.h. Three objects:
 *   Pool:  one per app address, holding its idle keep-alive connections (LIFO:
 *          the most recently used one is the likeliest to be alive and cached).
 *   Conn:  one socket, its sd-event io source (EPOLLIN stays armed for the
 *          connection's whole life, EPOLLOUT only while a request is partly
 *          written), a read buffer and the response parser.
 *   Call:  one request until its done; owns the serialized request head and,
 *          while on a connection, borrows it.
 *
 * The fast path of a call on a pooled connection: transport_call_start()
 * writes head and body with one writev(); the app's answer arrives as one
 * readable event, one read(), the parser's callbacks hand head and body up,
 * the connection goes back to the pool before done runs (so done may start
 * the next call on it). No timer is armed per call unless the caller asked
 * for a deadline, and then with a coarse accuracy so sd-event need not
 * reprogram its timerfd for every call.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/iomux.h"
#include "../util/strv.h"
#include "grpc-app.h"
#include "peer-tls.h"
#include "transport.h"

#define CONN_RBUF_SIZE (16 * 1024)
#define CONN_READS_PER_EVENT 8
#define ANSWER_HEAD_MAX (64 * 1024)     /* status line + headers of one answer */
#define ANSWER_HEADERS_MAX 256
#define POOL_IDLE_MAX 256               /* idle connections kept per app address */
#define RETRY_FIRST_USEC (250 * 1000ULL)

typedef struct Pool Pool;
typedef struct Conn Conn;

struct Pool {
        Transport *transport;
        TransportAddressKind kind;
        char *host;
        uint16_t port;
        struct sockaddr_storage sa;
        socklen_t sa_len;
        char *host_header;              /* "Host: ...\r\n" */
        char *peer_host;                /* a peer host's listener: TLS, its certificate names this */
        PeerTlsSessionSlot session;     /* peer pools: the last TLS session, for resumption */
        Conn *idle;                     /* LIFO through Conn.next_idle */
        unsigned n_idle;
        Pool *next;
};

struct Conn {
        Pool *pool;
        int fd;
        IoWatch *io;                 /* in the transport's mux */
        uint32_t events;                /* what io watches now */
        bool connecting;
        struct ssl_st *ssl;             /* peer pools: TLS on fd (owned) */
        bool handshaking;               /* the TLS handshake is not done yet */
        sd_event_source *more;          /* TLS holds decrypted bytes the socket will not signal */
        unsigned served;                /* answers completed on it: > 0 means a reused connection */
        TransportCall *call;            /* NULL while idle */
        http_parser parser;
        char *rbuf;                     /* CONN_RBUF_SIZE bytes */
        size_t rlen, rpos;              /* bytes in rbuf, bytes of them parsed */
        /* the answer's head, as parsed: "name\0value\0..." and pointers into it */
        char *hbuf;
        size_t hlen, hcap;
        bool in_value;
        char **hdrs;                    /* 2 * ANSWER_HEADERS_MAX + 1 slots */
        size_t n_hdrs;                  /* names + values stored */
        bool message_done;              /* the parser saw the end of the final answer */
        Conn *next_idle;
};

struct TransportCall {
        Transport *transport;
        Pool *pool;
        Conn *conn;                     /* borrowed while the request is on it */
        const TransportHandler *h;
        void *userdata;

        char *head;                     /* the serialized request head: head_text */
        size_t head_len;
        const void *body;               /* borrowed */
        size_t body_len;
        size_t sent;                    /* of head + body on the current attempt */
        bool is_head_request;
        bool streaming;
        size_t max_answer;
        unsigned retries_left;
        unsigned attempts;
        bool stale_retry_used;          /* the one free resend after a dead keep-alive connection */
        uint64_t timeout_usec;

        /* the answer */
        bool answered;
        bool head_seen;
        TransportAnswer answer;
        char *body_buf;
        size_t body_len_got, body_cap;
        bool too_large;
        char *hbuf;                     /* a buffered answer's head, taken over from the connection */
        char **hdrs;
        const char *held;               /* a chunk body() refused, inside conn->rbuf */
        size_t held_len;
        bool paused;

        bool starting;                  /* inside transport_call_start(): done must wait for the loop */
        bool dispatching;               /* inside a handler callback from the parser */
        bool cancelled;                 /* cancel arrived while dispatching */
        bool finished;
        sd_event_source *deadline;
        sd_event_source *backoff;
        sd_event_source *later;         /* deferred done or resume */
        int error;
        char *message;
        GrpcAppCall *grpc;              /* a call into a gRPC app: all of it is there (grpc-app.c) */
        TransportCall *next, *prev;     /* Transport.calls */
        char head_text[];               /* HTTP calls: allocated with the call */
};

struct Transport {
        sd_event *event;
        IoMux *mux;                  /* every connection's fd: one loop pass serves all that are ready */
        Pool *pools;
        TransportCall *calls;
        unsigned n_calls;
        uint64_t connections_opened;
        uint64_t sessions_resumed;
        GrpcChannel *grpc;              /* connections to gRPC apps */
        PeerTls *peer_tls;              /* borrowed from the Manager; NULL without [Cluster] */
};

static void conn_close(Conn *cn);
static void call_send(TransportCall *c);
static void call_fail(TransportCall *c, int error, const char *fmt, ...) _printf_(3, 4);
static void conn_read(Conn *cn);
static void conn_handshake(Conn *cn);
static void conn_more_later(Conn *cn);

/* ---- pools ---- */

static Pool *pool_free(Pool *p) {
        while (p->idle)
                conn_close(p->idle);
        if (p->session.session)
                peer_tls_session_slot_done(&p->session);
        free(p->host);
        free(p->host_header);
        free(p->peer_host);
        free(p);
        return NULL;
}

static int pool_get(Transport *t, const TransportAddress *a, Pool **ret) {
        for (Pool *p = t->pools; p; p = p->next)
                if (p->kind == a->kind && p->port == a->port && strcmp(p->host, a->host) == 0 &&
                    streq_ptr(p->peer_host, a->peer_host)) {
                        *ret = p;
                        return 0;
                }

        _cleanup_free_ Pool *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->transport = t;
        p->kind = a->kind;
        p->port = a->port;
        if (a->kind == TRANSPORT_ADDRESS_UNIX) {
                struct sockaddr_un *su = (struct sockaddr_un *) &p->sa;
                if (strlen(a->host) >= sizeof su->sun_path)
                        return -ENAMETOOLONG;
                su->sun_family = AF_UNIX;
                strcpy(su->sun_path, a->host);
                p->sa_len = sizeof *su;
                p->host_header = strdup("Host: localhost\r\n");
        } else {
                struct sockaddr_in *s4 = (struct sockaddr_in *) &p->sa;
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &p->sa;
                if (inet_pton(AF_INET, a->host, &s4->sin_addr) == 1) {
                        s4->sin_family = AF_INET;
                        s4->sin_port = htons(a->port);
                        p->sa_len = sizeof *s4;
                        if (asprintf(&p->host_header, "Host: %s:%u\r\n", a->host, (unsigned) a->port) < 0)
                                p->host_header = NULL;
                } else if (inet_pton(AF_INET6, a->host, &s6->sin6_addr) == 1) {
                        s6->sin6_family = AF_INET6;
                        s6->sin6_port = htons(a->port);
                        p->sa_len = sizeof *s6;
                        if (asprintf(&p->host_header, "Host: [%s]:%u\r\n", a->host, (unsigned) a->port) < 0)
                                p->host_header = NULL;
                } else
                        return -EINVAL; /* apps listen on IP literals: names would need a resolver */
        }
        if (a->peer_host && a->kind != TRANSPORT_ADDRESS_TCP) {
                free(p->host_header);
                return -EINVAL;
        }
        p->host = strdup(a->host);
        p->peer_host = a->peer_host ? strdup(a->peer_host) : NULL;
        if (!p->host || !p->host_header || (a->peer_host && !p->peer_host)) {
                free(p->host);
                free(p->host_header);
                free(p->peer_host);
                return -ENOMEM;
        }
        p->next = t->pools;
        t->pools = p;
        *ret = TAKE_PTR(p);
        return 0;
}

/* ---- connections ---- */

static int conn_set_events(Conn *cn, uint32_t events) {
        if (cn->events == events)
                return 0;
        cn->events = events;
        return iomux_set_events(cn->io, events);
}

static void conn_close(Conn *cn) {
        Pool *p = cn->pool;
        if (!cn->call) { /* idle: unlink from the pool */
                for (Conn **pp = &p->idle; *pp; pp = &(*pp)->next_idle)
                        if (*pp == cn) {
                                *pp = cn->next_idle;
                                p->n_idle--;
                                break;
                        }
        } else
                cn->call->conn = NULL;
        iomux_remove(cn->io);
        sd_event_source_disable_unref(cn->more);
        cn->ssl = peer_tls_conn_free(cn->ssl);
        safe_close(cn->fd);
        free(cn->rbuf);
        free(cn->hbuf);
        free(cn->hdrs);
        free(cn);
}

/* The answer is complete and the connection clean: keep it for the next call, or close it. */
static void conn_release(Conn *cn, bool reusable) {
        Pool *p = cn->pool;
        TransportCall *c = cn->call;
        if (c)
                c->conn = NULL;
        cn->call = NULL;
        /* (bytes after the answer, in our buffer or still inside TLS: the peer talks out of turn) */
        if (!reusable || p->n_idle >= POOL_IDLE_MAX || cn->rpos < cn->rlen ||
            (cn->ssl && peer_tls_pending(cn->ssl))) {
                conn_close(cn);
                return;
        }
        cn->rlen = cn->rpos = 0;
        cn->served++;
        if (conn_set_events(cn, EPOLLIN) < 0) {
                conn_close(cn);
                return;
        }
        cn->next_idle = p->idle;
        p->idle = cn;
        p->n_idle++;
}

static void on_conn_io(IoWatch *w, int fd, uint32_t revents, void *userdata);

static int conn_new(Pool *p, Conn **ret) {
        Conn *cn = calloc(1, sizeof *cn);
        int r;

        if (!cn)
                return -ENOMEM;
        cn->pool = p;
        cn->fd = socket(p->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cn->rbuf = malloc(CONN_RBUF_SIZE);
        cn->hdrs = malloc((2 * ANSWER_HEADERS_MAX + 1) * sizeof(char *));
        if (cn->fd < 0 || !cn->rbuf || !cn->hdrs) {
                r = cn->fd < 0 ? -errno : -ENOMEM;
                safe_close(cn->fd);
                free(cn->rbuf);
                free(cn->hdrs);
                free(cn);
                return r;
        }
        if (p->kind == TRANSPORT_ADDRESS_TCP) {
                int one = 1;
                (void) setsockopt(cn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (p->peer_host) {
                r = p->transport->peer_tls ? peer_tls_conn_new(p->transport->peer_tls, cn->fd, p->peer_host,
                                                               &p->session, &cn->ssl)
                                           : -ENOPROTOOPT;
                if (r < 0) {
                        safe_close(cn->fd);
                        free(cn->rbuf);
                        free(cn->hdrs);
                        free(cn);
                        return r;
                }
                cn->handshaking = true;
        }
        p->transport->connections_opened++;
        if (connect(cn->fd, (struct sockaddr *) &p->sa, p->sa_len) < 0) {
                if (errno != EINPROGRESS) {
                        r = -errno;
                        cn->ssl = peer_tls_conn_free(cn->ssl);
                        safe_close(cn->fd);
                        free(cn->rbuf);
                        free(cn->hdrs);
                        free(cn);
                        /* A Unix socket whose backlog is full says EAGAIN: as refused, for now. */
                        return r == -EAGAIN ? -ECONNREFUSED : r;
                }
                cn->connecting = true;
        }
        cn->events = cn->connecting ? EPOLLOUT : EPOLLIN;
        r = iomux_add(p->transport->mux, cn->fd, cn->events, on_conn_io, cn, &cn->io);
        if (r < 0) {
                cn->ssl = peer_tls_conn_free(cn->ssl);
                safe_close(cn->fd);
                free(cn->rbuf);
                free(cn->hdrs);
                free(cn);
                return r;
        }
        *ret = cn;
        return 0;
}

/* ---- the answer parser ---- */

static int hbuf_append(Conn *cn, const char *at, size_t len, bool nul) {
        size_t need = cn->hlen + len + (nul ? 1 : 0);
        if (need > ANSWER_HEAD_MAX)
                return -E2BIG;
        if (need > cn->hcap) {
                size_t cap = MAX(need, cn->hcap ? cn->hcap * 2 : 1024);
                char *n = realloc(cn->hbuf, cap);
                if (!n)
                        return -ENOMEM;
                cn->hbuf = n;
                cn->hcap = cap;
        }
        memcpy(cn->hbuf + cn->hlen, at, len);
        cn->hlen += len;
        if (nul)
                cn->hbuf[cn->hlen++] = 0;
        return 0;
}

static int on_message_begin(http_parser *hp) {
        Conn *cn = hp->data;
        cn->hlen = 0;
        cn->n_hdrs = 0;
        cn->in_value = true; /* so the first field starts a new pair */
        return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len) {
        Conn *cn = hp->data;
        if (cn->in_value) {
                /* A new field: the previous value (if any) ends. Offsets are fixed up at the end. */
                if (cn->n_hdrs > 0 && hbuf_append(cn, "", 0, true) < 0)
                        return -1;
                if (cn->n_hdrs + 2 > 2 * ANSWER_HEADERS_MAX)
                        return -1;
                cn->hdrs[cn->n_hdrs++] = (char *) (uintptr_t) cn->hlen;
                cn->in_value = false;
        }
        return hbuf_append(cn, at, len, false) < 0 ? -1 : 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len) {
        Conn *cn = hp->data;
        if (!cn->in_value) {
                if (hbuf_append(cn, "", 0, true) < 0)
                        return -1;
                cn->hdrs[cn->n_hdrs++] = (char *) (uintptr_t) cn->hlen;
                cn->in_value = true;
        }
        return hbuf_append(cn, at, len, false) < 0 ? -1 : 0;
}

static int on_headers_complete(http_parser *hp) {
        Conn *cn = hp->data;
        TransportCall *c = cn->call;

        if (cn->n_hdrs > 0 && hbuf_append(cn, "", 0, true) < 0)
                return -1;
        if (cn->n_hdrs % 2) /* a field without a value cannot come out of the parser; be safe */
                cn->n_hdrs--;
        /* The buffer no longer moves: turn offsets into pointers. */
        for (size_t i = 0; i < cn->n_hdrs; i++)
                cn->hdrs[i] = cn->hbuf + (uintptr_t) cn->hdrs[i];
        cn->hdrs[cn->n_hdrs] = NULL;

        if (hp->status_code < 200)
                return 0; /* 1xx: an interim answer, the real one follows */
        c->head_seen = true;
        c->answer = (TransportAnswer){
                .status = hp->status_code,
                .headers = cn->hdrs,
                .content_length = (hp->flags & F_CONTENTLENGTH) ? (int64_t) hp->content_length : -1,
        };
        if (c->streaming) {
                c->dispatching = true;
                c->h->head(c, &c->answer, c->userdata);
                c->dispatching = false;
                if (c->cancelled || c->finished)
                        return -1; /* stop parsing; the caller of execute cleans up */
        }
        /* No body follows, whatever the head says (RFC 9112 6.3): an answer to HEAD, a 204, and a
         * 304, whose Content-Length is that of the answer it stands for. Left to the parser, a 304
         * with a length waited for a body that never comes. */
        return c->is_head_request || hp->status_code == 204 || hp->status_code == 304 ? 1 : 0;
}

static int on_body(http_parser *hp, const char *at, size_t len) {
        Conn *cn = hp->data;
        TransportCall *c = cn->call;

        if (!c->head_seen || len == 0)
                return 0;
        if (!c->streaming) {
                if (c->body_len_got + len > c->max_answer) {
                        c->too_large = true;
                        return -1;
                }
                if (c->body_len_got + len + 1 > c->body_cap) {
                        size_t cap = MAX(c->body_len_got + len + 1, c->body_cap * 2);
                        char *n = realloc(c->body_buf, cap);
                        if (!n)
                                return -1;
                        c->body_buf = n;
                        c->body_cap = cap;
                }
                memcpy(c->body_buf + c->body_len_got, at, len);
                c->body_len_got += len;
                return 0;
        }
        c->dispatching = true;
        bool taken = c->h->body(c, at, len, c->userdata);
        c->dispatching = false;
        if (c->cancelled || c->finished)
                return -1;
        if (!taken) {
                /* Hold the chunk where it is (the read buffer is not touched while paused). */
                c->held = at;
                c->held_len = len;
                c->paused = true;
                http_parser_pause(hp, 1);
        }
        return 0;
}

static int on_message_complete(http_parser *hp) {
        Conn *cn = hp->data;
        TransportCall *c = cn->call;
        if (!c->head_seen)
                return 0; /* the end of a 1xx: go on with the next message */
        cn->message_done = true;
        /* Stop here: what follows (nothing, for a well-behaved app) must not be parsed as the next
         * answer before this one is handed up. */
        http_parser_pause(hp, 1);
        return 0;
}

static const http_parser_settings parser_settings = {
        .on_message_begin = on_message_begin,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
};

/* ---- calls ---- */

static void call_unlink(TransportCall *c) {
        Transport *t = c->transport;
        if (c->prev)
                c->prev->next = c->next;
        else if (t->calls == c)
                t->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->next = c->prev = NULL;
        t->n_calls--;
}

/* Takes the connection away from the call and closes it: its state is unknown mid-exchange. */
static void call_drop_conn(TransportCall *c) {
        Conn *cn = c->conn;
        if (!cn)
                return;
        cn->call = NULL;
        c->conn = NULL;
        conn_close(cn);
}

static void call_free(TransportCall *c) {
        call_drop_conn(c);
        call_unlink(c);
        sd_event_source_disable_unref(c->deadline);
        sd_event_source_disable_unref(c->backoff);
        sd_event_source_disable_unref(c->later);
        free(c->body_buf);
        free(c->hbuf);
        free(c->hdrs);
        free(c->message);
        free(c);
}

/* Runs done and frees the call. */
static void call_complete(TransportCall *c) {
        TransportError e = { .error = c->error, .answered = c->answered, .attempts = c->attempts,
                             .message = c->message ?: "out of memory" };
        static char *const no_headers[] = { NULL };

        c->finished = true;
        if (c->error == 0) {
                /* Streamed: they went to head(). Buffered without them: OOM in call_answered(). */
                if (c->streaming || !c->answer.headers)
                        c->answer.headers = no_headers;
                if (!c->streaming) {
                        if (c->body_buf)
                                c->body_buf[c->body_len_got] = 0;
                        c->answer.body = c->body_buf ?: "";
                        c->answer.body_len = c->body_len_got;
                }
        }
        c->h->done(c, c->error ? NULL : &c->answer, c->error ? &e : NULL, c->userdata);
        call_free(c);
}

static int on_later(sd_event_source *s, void *userdata) {
        TransportCall *c = userdata;
        if (c->finished) {
                call_complete(c);
                return 0;
        }
        /* A resume: offer the held chunk again, then go on with what is buffered. */
        Conn *cn = c->conn;
        if (!c->paused || !cn)
                return 0;
        c->dispatching = true;
        bool taken = c->h->body(c, c->held, c->held_len, c->userdata);
        c->dispatching = false;
        if (c->cancelled) {
                call_free(c);
                return 0;
        }
        if (c->finished || !taken)
                return 0; /* still full: the next resume tries again */
        c->paused = false;
        c->held = NULL;
        c->held_len = 0;
        http_parser_pause(&cn->parser, 0);
        if (iomux_set_enabled(cn->io, true) < 0) {
                call_fail(c, -ENOMEM, "cannot watch the connection");
                return 0;
        }
        conn_read(cn);
        return 0;
}

static int call_defer(TransportCall *c) {
        if (!c->later) {
                int r = sd_event_add_defer(c->transport->event, &c->later, on_later, c);
                if (r < 0)
                        return r;
        }
        return sd_event_source_set_enabled(c->later, SD_EVENT_ONESHOT);
}

/* Ends the call with an error. done runs now, or from the loop when we are inside
 * transport_call_start() or one of the call's own callbacks. */
static void call_fail(TransportCall *c, int error, const char *fmt, ...) {
        va_list ap;

        if (c->finished)
                return;
        c->error = error;
        free(c->message);
        va_start(ap, fmt);
        if (vasprintf(&c->message, fmt, ap) < 0)
                c->message = NULL;
        va_end(ap);
        call_drop_conn(c);
        c->deadline = sd_event_source_disable_unref(c->deadline);
        c->backoff = sd_event_source_disable_unref(c->backoff);
        c->finished = true;
        if ((c->starting || c->dispatching) && call_defer(c) >= 0)
                return;
        call_complete(c);
}

static int on_backoff(sd_event_source *s, uint64_t usec, void *userdata) {
        TransportCall *c = userdata;
        c->backoff = sd_event_source_disable_unref(c->backoff);
        call_send(c);
        return 0;
}

static const char *error_text(int error) {
        switch (error) {
        case -ENOENT:
                return "no socket at the app's address (connection refused)";
        case -ECONNREFUSED:
                return "connection refused";
        default:
                return strerror(-error);
        }
}

/*
 * The attempt failed before the answer was complete. Before any answer byte: send again (free
 * once after a dead keep-alive connection, then from the call's retries with backoff); after:
 * the call fails.
 */
static void attempt_failed(TransportCall *c, int error, const char *what) {
        bool reused = c->conn && c->conn->served > 0;

        call_drop_conn(c);
        if (c->answered) {
                if (c->head_seen)
                        return call_fail(c, -ECONNRESET, "the app's answer was cut short: %s", what);
                return call_fail(c, error == -EPROTO ? -EPROTO : -ECONNRESET, "the app's answer broke off: %s",
                                 what);
        }
        if (reused && !c->stale_retry_used) {
                /* The app closed an idle connection just as we picked it: the request never got
                 * there. Every HTTP client resends in this race; it is not one of the retries. */
                c->stale_retry_used = true;
                return call_send(c);
        }
        if (c->retries_left > 0) {
                uint64_t delay = RETRY_FIRST_USEC << MIN(c->attempts - 1, 8U);
                c->retries_left--;
                if (sd_event_add_time_relative(c->transport->event, &c->backoff, CLOCK_MONOTONIC, delay, 1000,
                                               on_backoff, c) >= 0)
                        return;
        }
        call_fail(c, error, "%s%s", what, c->attempts > 1 ? " (after retries)" : "");
}

/* Writes what is left of the request; watches for room when the socket is full. */
static void call_flush(TransportCall *c) {
        Conn *cn = c->conn;
        size_t total = c->head_len + c->body_len;

        while (c->sent < total) {
                struct iovec iov[2];
                struct msghdr mh = { .msg_iov = iov };
                if (c->sent < c->head_len)
                        iov[mh.msg_iovlen++] = (struct iovec){ c->head + c->sent, c->head_len - c->sent };
                size_t boff = c->sent > c->head_len ? c->sent - c->head_len : 0;
                if (c->body_len > boff)
                        iov[mh.msg_iovlen++] = (struct iovec){ (char *) c->body + boff, c->body_len - boff };
                ssize_t k = cn->ssl ? peer_tls_writev(cn->ssl, iov, (int) mh.msg_iovlen)
                                    : sendmsg(cn->fd, &mh, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                if (conn_set_events(cn, EPOLLIN | EPOLLOUT) < 0)
                                        attempt_failed(c, -ENOMEM, "cannot watch the connection");
                                return;
                        }
                        int err = -errno;
                        return attempt_failed(c, err, error_text(err));
                }
                c->sent += (size_t) k;
        }
        if (conn_set_events(cn, EPOLLIN) < 0)
                attempt_failed(c, -ENOMEM, "cannot watch the connection");
}

/* One attempt: an idle pooled connection, or a new one; then the request. */
static void call_send(TransportCall *c) {
        Pool *p = c->pool;
        Conn *cn = p->idle;

        c->attempts++;
        c->sent = 0;
        c->answered = c->head_seen = c->too_large = false;
        c->body_len_got = 0;
        if (cn) {
                p->idle = cn->next_idle;
                p->n_idle--;
                cn->next_idle = NULL;
        } else {
                int r = conn_new(p, &cn);
                if (r < 0)
                        return attempt_failed(c, r, error_text(r));
        }
        cn->call = c;
        c->conn = cn;
        cn->message_done = false;
        http_parser_init(&cn->parser, HTTP_RESPONSE);
        cn->parser.data = cn;
        if (!cn->connecting && cn->handshaking)
                conn_handshake(cn);
        else if (!cn->connecting)
                call_flush(c);
        /* else: on_conn_io writes once the connection is up */
}

/* The answer is whole: the connection goes back to the pool first, so done may reuse it. */
static void call_answered(TransportCall *c) {
        Conn *cn = c->conn;
        bool keep = http_should_keep_alive(&cn->parser) && c->sent == c->head_len + c->body_len;

        http_parser_pause(&cn->parser, 0);
        if (!c->streaming) {
                /* The head's text lives in the connection's buffer: the call takes it over (the
                 * connection grows a new one for its next answer) with a pointer array of just
                 * the right size, so done can read the headers whatever happens to the
                 * connection. call_complete() gives done an empty list if this fails (OOM). */
                c->hbuf = TAKE_PTR(cn->hbuf);
                cn->hcap = cn->hlen = 0;
                c->hdrs = malloc((cn->n_hdrs + 1) * sizeof(char *));
                if (c->hdrs)
                        memcpy(c->hdrs, cn->hdrs, (cn->n_hdrs + 1) * sizeof(char *));
                c->answer.headers = c->hdrs;
        }
        c->deadline = sd_event_source_disable_unref(c->deadline);
        conn_release(cn, keep);
        c->error = 0;
        call_complete(c);
}

static void conn_read(Conn *cn) {
        TransportCall *c = cn->call;

        if (!c) {
                /* Idle: the app closed it (EOF), or talks out of turn. Either way it is done. */
                char b;
                /* (TLS too: a peer's close_notify or anything else unasked for ends it) */
                ssize_t k = recv(cn->fd, &b, 1, MSG_DONTWAIT);
                if (k < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                conn_close(cn);
                return;
        }
        /* At most CONN_READS_PER_EVENT full buffers per wake-up: one app streaming a large answer
         * must not keep the loop from everyone else (epoll is level-triggered: we come back). */
        for (unsigned reads = 0;;) {
                if (cn->rpos == cn->rlen) {
                        if (reads++ >= CONN_READS_PER_EVENT) {
                                /* Bytes TLS decrypted already raise no event of the socket. */
                                if (cn->ssl && peer_tls_pending(cn->ssl))
                                        conn_more_later(cn);
                                break;
                        }
                        ssize_t k = cn->ssl ? peer_tls_read(cn->ssl, cn->rbuf, CONN_RBUF_SIZE)
                                            : read(cn->fd, cn->rbuf, CONN_RBUF_SIZE);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k < 0 && errno == EAGAIN)
                                break;
                        if (k == 0) {
                                /* EOF ends an answer delimited by the close, and breaks any other. */
                                (void) http_parser_execute(&cn->parser, &parser_settings, NULL, 0);
                                if (cn->message_done)
                                        return call_answered(c);
                                return attempt_failed(c, -ECONNRESET, "the app closed the connection");
                        }
                        if (k < 0) {
                                int err = -errno;
                                return attempt_failed(c, err, error_text(err));
                        }
                        cn->rlen = (size_t) k;
                        cn->rpos = 0;
                        c->answered = true;
                }
                size_t n = http_parser_execute(&cn->parser, &parser_settings, cn->rbuf + cn->rpos,
                                               cn->rlen - cn->rpos);
                cn->rpos += n;
                enum http_errno he = HTTP_PARSER_ERRNO(&cn->parser);
                if (c->cancelled) {
                        call_free(c);
                        return;
                }
                if (c->finished)
                        return; /* a handler ended it from inside */
                if (he == HPE_PAUSED) {
                        if (cn->message_done)
                                return call_answered(c);
                        /* body() is full: stop reading until it resumes us. */
                        if (iomux_set_enabled(cn->io, false) < 0)
                                call_fail(c, -ENOMEM, "cannot pause the connection");
                        return;
                }
                if (he != HPE_OK) {
                        if (c->too_large)
                                return call_fail(c, -EMSGSIZE, "the app's answer is larger than %zu bytes",
                                                 c->max_answer);
                        return attempt_failed(c, -EPROTO, http_errno_description(he));
                }
                if (cn->rlen < CONN_RBUF_SIZE)
                        break; /* the last read took less than it could: nothing more waits */
        }
}

static int on_conn_more(sd_event_source *s, void *userdata) {
        Conn *cn = userdata;
        if (cn->call)
                conn_read(cn);
        return 0;
}

static void conn_more_later(Conn *cn) {
        if (!cn->more && sd_event_add_defer(cn->pool->transport->event, &cn->more, on_conn_more, cn) < 0)
                return; /* the next bytes from the socket bring the rest */
        (void) sd_event_source_set_enabled(cn->more, SD_EVENT_ONESHOT);
}

/* A peer connection: the TLS handshake after connect(), then the request. */
static void conn_handshake(Conn *cn) {
        TransportCall *c = cn->call;
        _cleanup_free_ char *msg = NULL;
        uint32_t want = 0;
        int r = peer_tls_handshake(cn->ssl, &want, &msg);

        if (r == 0) {
                if (conn_set_events(cn, want) < 0)
                        attempt_failed(c, -ENOMEM, "cannot watch the connection");
                return;
        }
        if (r < 0)
                return attempt_failed(c, r, msg ?: "TLS handshake failed");
        cn->handshaking = false;
        if (peer_tls_resumed(cn->ssl))
                cn->pool->transport->sessions_resumed++;
        call_flush(c);
}

static void on_conn_io(IoWatch *w, int fd, uint32_t revents, void *userdata) {
        Conn *cn = userdata;
        TransportCall *c = cn->call;

        if (cn->handshaking && !cn->connecting) {
                if (!c) {
                        conn_close(cn);
                        return;
                }
                conn_handshake(cn);
                return;
        }
        if (cn->connecting) {
                int err = 0;
                socklen_t len = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err == 0 && (revents & (EPOLLERR | EPOLLHUP)))
                        err = ECONNREFUSED;
                if (!c) {
                        conn_close(cn);
                        return;
                }
                if (err != 0) {
                        attempt_failed(c, -err, error_text(-err));
                        return;
                }
                cn->connecting = false;
                if (cn->handshaking)
                        conn_handshake(cn);
                else
                        call_flush(c);
                return;
        }
        if (c && (revents & EPOLLOUT) && c->sent < c->head_len + c->body_len) {
                call_flush(c);
                if (cn != c->conn) /* the attempt failed and the connection is gone */
                        return;
        }
        if (!c || (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                conn_read(cn);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        TransportCall *c = userdata;
        c->deadline = sd_event_source_disable_unref(c->deadline);
        call_fail(c, -ETIMEDOUT, "no answer within %.1f s", (double) c->timeout_usec / 1e6);
        return 0;
}

static char *put(char *p, const char *s, size_t n) {
        memcpy(p, s, n);
        return p + n;
}

/* Builds "METHOD target HTTP/1.1", Host, Content-Length and the caller's headers. No printf:
 * formatting was a tenth of the CPU of a proxied call. */
/* Length of a header name that is a token, 0 if it is not one. */
static size_t token_len(const char *s) {
        const char *p = s;
        while (is_tchar((unsigned char) *p))
                p++;
        return *p ? 0 : (size_t) (p - s);
}

/* The request head, measured and checked before the call is allocated (the head lives in the
 * call's own allocation), then written. */
typedef struct HeadPlan {
        size_t len, method_len, target_len, host_len, n_headers;
        bool send_length;
        size_t *lens, lens_small[32]; /* name and value length of each header */
} HeadPlan;

static void head_plan_done(HeadPlan *hp) {
        if (hp->lens != hp->lens_small)
                free(hp->lens);
}

static int head_plan(const Pool *pool, const TransportRequest *req, HeadPlan *hp) {
        hp->send_length = req->body_len > 0 || strcmp(req->method, "POST") == 0 ||
                          strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0;
        hp->method_len = strlen(req->method);
        hp->target_len = strlen(req->target);
        hp->host_len = strlen(pool->host_header);
        hp->len = hp->method_len + 1 + hp->target_len + 11 + hp->host_len + (hp->send_length ? 16 + 20 + 2 : 0) + 2;
        hp->lens = hp->lens_small;
        hp->n_headers = 0;

        if (!is_token(req->method) || hp->target_len == 0 || strpbrk(req->target, " \r\n\t"))
                return -EINVAL;
        for (char *const *h = req->headers; h && h[0] && h[1]; h += 2)
                hp->n_headers++;
        if (hp->n_headers * 2 > ELEMENTSOF(hp->lens_small) &&
            !(hp->lens = malloc(hp->n_headers * 2 * sizeof *hp->lens))) {
                hp->lens = hp->lens_small;
                return -ENOMEM;
        }
        for (size_t i = 0; i < hp->n_headers; i++) {
                const char *name = req->headers[2 * i], *value = req->headers[2 * i + 1];
                size_t nl = token_len(name), vl = strcspn(value, "\r\n");
                if (nl == 0 || value[vl]) {
                        head_plan_done(hp);
                        return -EINVAL;
                }
                hp->lens[2 * i] = nl;
                hp->lens[2 * i + 1] = vl;
                hp->len += nl + 2 + vl + 2;
        }
        return 0;
}

/* Writes the head into b (hp->len + 1 bytes); returns its length. */
static size_t head_write(const Pool *pool, const TransportRequest *req, const HeadPlan *hp, char *b) {
        char *p = b;
        p = put(p, req->method, hp->method_len);
        *p++ = ' ';
        p = put(p, req->target, hp->target_len);
        p = put(p, " HTTP/1.1\r\n", 11);
        p = put(p, pool->host_header, hp->host_len);
        if (hp->send_length) {
                p = put(p, "Content-Length: ", 16);
                p = fmt_u64(p, req->body_len);
                p = put(p, "\r\n", 2);
        }
        for (size_t i = 0; i < hp->n_headers; i++) {
                p = put(p, req->headers[2 * i], hp->lens[2 * i]);
                p = put(p, ": ", 2);
                p = put(p, req->headers[2 * i + 1], hp->lens[2 * i + 1]);
                p = put(p, "\r\n", 2);
        }
        p = put(p, "\r\n", 2);
        *p = 0;
        assert((size_t) (p - b) <= hp->len);
        return (size_t) (p - b);
}

static void grpc_finished(TransportCall *c) {
        c->grpc = NULL;
        call_free(c);
}

/* A gRPC app: the call is grpc-app.c's; this TransportCall is the handle the caller holds. */
static int grpc_call_start(Transport *t, const TransportAddress *addr, const TransportRequest *req,
                           const TransportHandler *h, void *userdata, TransportCall **ret) {
        TransportCall *c = calloc(1, sizeof *c);
        int r;
        if (!c)
                return -ENOMEM;
        *c = (TransportCall){ .transport = t, .h = h, .userdata = userdata, .next = t->calls };
        r = grpc_app_call_start(t->grpc, addr, req, h, userdata, c, grpc_finished, &c->grpc);
        if (r < 0) {
                free(c);
                return r;
        }
        if (c->next)
                c->next->prev = c;
        t->calls = c;
        t->n_calls++;
        if (ret)
                *ret = c;
        return 0;
}

int transport_call_start(Transport *t, const TransportAddress *addr, const TransportRequest *req,
                         const TransportHandler *h, void *userdata, TransportCall **ret) {
        Pool *p;
        int r;

        if (!req->method || !req->target || !h->done || (!h->head != !h->body))
                return -EINVAL;
        if (addr->protocol == TRANSPORT_PROTOCOL_GRPC && addr->peer_host)
                return -EINVAL; /* peers speak HTTP/1.1 over TLS */
        if (addr->protocol == TRANSPORT_PROTOCOL_GRPC)
                return grpc_call_start(t, addr, req, h, userdata, ret);
        r = pool_get(t, addr, &p);
        if (r < 0)
                return r;

        HeadPlan hp;
        r = head_plan(p, req, &hp);
        if (r < 0)
                return r;
        /* one allocation: the call, then its head (the literal below zeroes the call) */
        TransportCall *c = malloc(sizeof *c + hp.len + 1);
        if (!c) {
                head_plan_done(&hp);
                return -ENOMEM;
        }
        *c = (TransportCall){ .transport = t, .pool = p, .h = h, .userdata = userdata, .body = req->body,
                              .body_len = req->body_len, .retries_left = req->retries,
                              .max_answer = req->max_answer, .streaming = h->head != NULL,
                              .is_head_request = strcmp(req->method, "HEAD") == 0,
                              .timeout_usec = req->timeout_usec };
        c->head = c->head_text;
        c->head_len = head_write(p, req, &hp, c->head);
        head_plan_done(&hp);
        if (req->timeout_usec > 0) {
                /* Coarse accuracy on purpose: a deadline a few percent late is harmless, and sd-event
                 * then rarely needs to move its timerfd as calls come and go. */
                uint64_t accuracy = MIN(req->timeout_usec / 16, 250 * 1000ULL);
                r = sd_event_add_time_relative(t->event, &c->deadline, CLOCK_MONOTONIC, req->timeout_usec,
                                               MAX(accuracy, 1000ULL), on_deadline, c);
                if (r < 0) {
                        free(c);
                        return r;
                }
        }
        c->next = t->calls;
        if (c->next)
                c->next->prev = c;
        t->calls = c;
        t->n_calls++;

        c->starting = true;
        call_send(c);
        c->starting = false;
        if (ret)
                *ret = c;
        return 0;
}

void transport_call_cancel(TransportCall *c) {
        if (!c)
                return;
        if (c->grpc) {
                grpc_app_call_cancel(TAKE_PTR(c->grpc));
                call_free(c);
                return;
        }
        if (c->dispatching) {
                c->cancelled = true;
                return;
        }
        call_free(c);
}

void transport_call_resume(TransportCall *c) {
        if (c && c->grpc) {
                grpc_app_call_resume(c->grpc);
                return;
        }
        if (!c || !c->paused || c->finished)
                return;
        (void) call_defer(c);
}

void transport_set_peer_tls(Transport *t, PeerTls *tls) {
        t->peer_tls = tls;
}

uint64_t transport_peer_sessions_resumed(const Transport *t) {
        return t->sessions_resumed;
}

GrpcChannel *transport_grpc_channel(Transport *t) {
        return t->grpc;
}

unsigned transport_calls_in_flight(const Transport *t) {
        return t->n_calls;
}

uint64_t transport_connections_opened(const Transport *t) {
        return t->connections_opened;
}

Transport *transport_new(sd_event *e) {
        Transport *t = calloc(1, sizeof *t);
        if (!t)
                return NULL;
        t->event = sd_event_ref(e);
        if (iomux_new(e, "app-connections", &t->mux) < 0) {
                sd_event_unref(t->event);
                free(t);
                return NULL;
        }
        t->grpc = grpc_channel_new(e);
        if (!t->grpc)
                return transport_free(t);
        return t;
}

Transport *transport_free(Transport *t) {
        if (!t)
                return NULL;
        /* Whoever waits for an answer gets one: gRPC apps' calls first (done with -ECANCELED). */
        t->grpc = grpc_channel_free(t->grpc);
        while (t->calls) {
                TransportCall *c = t->calls;
                if (c->grpc) { /* not on a connection yet (its connect failed): ends now */
                        grpc_app_call_abort(c->grpc, -ECANCELED);
                        continue;
                }
                if (c->finished) { /* done was waiting for the loop */
                        call_complete(c);
                        continue;
                }
                call_fail(c, -ECANCELED, "mooringd is stopping");
        }
        while (t->pools) {
                Pool *p = t->pools;
                t->pools = p->next;
                pool_free(p);
        }
        iomux_free(t->mux);
        sd_event_unref(t->event);
        free(t);
        return NULL;
}
