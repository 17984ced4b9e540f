/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See grpc-channel.h.
 *
 * Flow control is manual (no automatic WINDOW_UPDATE): bytes of an answer
 * are consumed, and the app's window reopened, only once the stream's handler
 * took them, so a consumer that stops (a slow caller at the other end of a
 * proxied stream) stops the app, and at most one stream window (1 MiB) waits
 * here per stream.
 */
#include <errno.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "grpc-channel.h"

#define STREAM_WINDOW (1U << 20)
#define CONN_WINDOW (16U << 20)
#define READ_CHUNK (64U * 1024)

typedef struct GConn GConn;

struct GrpcChannel {
        sd_event *event;            /* ref */
        GConn *conns;
};

struct GConn {
        GrpcChannel *channel;
        TransportAddressKind kind;
        char *host;
        uint16_t port;
        int fd;
        bool connected;
        bool dead;                  /* no new streams; freed once its streams are gone */
        sd_event_source *io, *defer;
        nghttp2_session *h2;
        uint8_t *wbuf;
        size_t wlen, wcap;
        GrpcStream *streams;
        GConn *next, *prev;
};

struct GrpcStream {
        GConn *conn;                /* NULL once ended */
        int32_t stream_id;          /* 0 until submitted */
        const GrpcStreamHandler *h;
        void *userdata;
        uint8_t *out;
        size_t out_len, out_off, out_cap;
        bool close_send, deferred;
        bool got_headers;
        char **hdrs;                /* the HEADERS block being received */
        uint8_t *held;              /* data the handler refused, not consumed yet */
        size_t held_len;
        bool paused;
        sd_event_source *deadline;
        sd_event_source *later;     /* a done that must wait for the loop */
        int later_error;
        GrpcStream *next, *prev;
};

static void conn_free(GConn *c);
static void conn_schedule(GConn *c);

const char *grpc_pairs_get(char *const *pairs, const char *name) {
        for (char *const *p = pairs; p && p[0] && p[1]; p += 2)
                if (streq(p[0], name))
                        return p[1];
        return NULL;
}

/* ---- streams ---- */

static void stream_unlink(GrpcStream *s) {
        GConn *c = s->conn;
        if (!c)
                return;
        if (s->prev)
                s->prev->next = s->next;
        else
                c->streams = s->next;
        if (s->next)
                s->next->prev = s->prev;
        s->next = s->prev = NULL;
        if (c->h2 && s->stream_id > 0)
                (void) nghttp2_session_set_stream_user_data(c->h2, s->stream_id, NULL);
        s->conn = NULL;
}

static void stream_free(GrpcStream *s) {
        stream_unlink(s);
        sd_event_source_disable_unref(s->deadline);
        sd_event_source_disable_unref(s->later);
        strv_free(s->hdrs);
        free(s->out);
        free(s->held);
        free(s);
}

/* The end: done once, then free. */
static void stream_end(GrpcStream *s, int error, char *const *trailers) {
        const GrpcStreamHandler *h = s->h;
        void *ud = s->userdata;
        stream_unlink(s);
        s->h = NULL;
        if (h)
                h->done(s, error, trailers, ud);
        stream_free(s);
}

static int on_later(sd_event_source *src, void *userdata) {
        GrpcStream *s = userdata;
        stream_end(s, s->later_error, NULL);
        return 0;
}

static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data) {
        GrpcStream *s = source->ptr;
        size_t n = MIN(length, s->out_len - s->out_off);
        if (n > 0)
                memcpy(buf, s->out + s->out_off, n);
        s->out_off += n;
        if (s->out_off == s->out_len) {
                s->out_off = s->out_len = 0;
                if (s->close_send)
                        *flags |= NGHTTP2_DATA_FLAG_EOF;
                else if (n == 0) {
                        s->deferred = true;
                        return NGHTTP2_ERR_DEFERRED;
                }
        }
        return (ssize_t) n;
}

static nghttp2_nv nv(const char *name, const char *value) {
        return (nghttp2_nv){ (uint8_t *) name, (uint8_t *) value, strlen(name), strlen(value), NGHTTP2_NV_FLAG_NONE };
}

static int on_stream_deadline(sd_event_source *src, uint64_t usec, void *userdata) {
        GrpcStream *s = userdata;
        if (s->conn && s->stream_id > 0)
                (void) nghttp2_submit_rst_stream(s->conn->h2, NGHTTP2_FLAG_NONE, s->stream_id, NGHTTP2_CANCEL);
        if (s->conn)
                conn_schedule(s->conn);
        stream_end(s, -ETIMEDOUT, NULL);
        return 0;
}

int grpc_stream_send(GrpcStream *s, const void *buf, size_t len) {
        if (!s->conn || s->close_send)
                return -EPIPE;
        if (s->out_len + len > s->out_cap) {
                if (s->out_off > 0) {
                        memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
                        s->out_len -= s->out_off;
                        s->out_off = 0;
                }
                if (s->out_len + len > s->out_cap) {
                        size_t cap = MAX(s->out_cap * 2, s->out_len + len);
                        uint8_t *b = realloc(s->out, cap);
                        if (!b)
                                return -ENOMEM;
                        s->out = b;
                        s->out_cap = cap;
                }
        }
        memcpy(s->out + s->out_len, buf, len);
        s->out_len += len;
        if (s->deferred) {
                s->deferred = false;
                (void) nghttp2_session_resume_data(s->conn->h2, s->stream_id);
        }
        conn_schedule(s->conn);
        return 0;
}

size_t grpc_stream_send_queued(const GrpcStream *s) {
        return s->out_len - s->out_off;
}

void grpc_stream_close_send(GrpcStream *s) {
        if (!s->conn || s->close_send)
                return;
        s->close_send = true;
        if (s->deferred) {
                s->deferred = false;
                (void) nghttp2_session_resume_data(s->conn->h2, s->stream_id);
        }
        conn_schedule(s->conn);
}

/* Offers held data again; consumes (reopens the app's window for) what was taken. */
static void stream_deliver_held(GrpcStream *s) {
        if (!s->held_len || !s->h)
                return;
        if (!s->h->data(s, s->held, s->held_len, s->userdata)) {
                s->paused = true;
                return;
        }
        s->paused = false;
        if (s->conn) {
                (void) nghttp2_session_consume(s->conn->h2, s->stream_id, s->held_len);
                conn_schedule(s->conn);
        }
        free(s->held);
        s->held = NULL;
        s->held_len = 0;
}

void grpc_stream_resume(GrpcStream *s) {
        if (s && s->paused)
                stream_deliver_held(s);
}

void grpc_stream_cancel(GrpcStream *s) {
        if (!s)
                return;
        if (s->conn && s->stream_id > 0) {
                (void) nghttp2_submit_rst_stream(s->conn->h2, NGHTTP2_FLAG_NONE, s->stream_id, NGHTTP2_CANCEL);
                conn_schedule(s->conn);
        }
        s->h = NULL;
        stream_free(s);
}

/* ---- nghttp2 callbacks ---- */

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) {
        GrpcStream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (!s)
                return 0;
        if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
                if (valuelen != 3 || memcmp(value, "200", 3) != 0) {
                        /* not a gRPC answer (no such service behind a proxy, ...) */
                        (void) nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                                         NGHTTP2_CANCEL);
                        stream_end(s, -EPROTO, NULL);
                }
                return 0;
        }
        if (namelen > 0 && name[0] == ':')
                return 0;
        _cleanup_free_ char *n = strndup((const char *) name, namelen), *v = strndup((const char *) value, valuelen);
        if (!n || !v || strv_extend(&s->hdrs, n) < 0 || strv_extend(&s->hdrs, v) < 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        GrpcStream *s;
        if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
                return 0;
        s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (!s)
                return 0;
        if (frame->hd.type == NGHTTP2_HEADERS && !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !s->got_headers) {
                s->got_headers = true;
                char **h = TAKE_PTR(s->hdrs);
                if (s->h && s->h->headers)
                        s->h->headers(s, h ?: (char *[]){ NULL }, s->userdata);
                strv_free(h);
                return 0;
        }
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
                /* held data first (a paused consumer gets it before the end only if it takes it now) */
                stream_deliver_held(s);
                char **t = TAKE_PTR(s->hdrs);
                if (!grpc_pairs_get(t, "grpc-status"))
                        stream_end(s, -EPROTO, NULL);
                else
                        stream_end(s, 0, t);
                strv_free(t);
        }
        return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data) {
        GConn *c = user_data;
        GrpcStream *s = nghttp2_session_get_stream_user_data(session, stream_id);
        if (!s || !s->h) {
                (void) nghttp2_session_consume(c->h2, stream_id, len);
                return 0;
        }
        if (!s->held_len && s->h->data(s, data, len, s->userdata)) {
                (void) nghttp2_session_consume(c->h2, stream_id, len);
                return 0;
        }
        /* keep it, unconsumed: the app's window stays closed by that much */
        uint8_t *b = realloc(s->held, s->held_len + len);
        if (!b)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        memcpy(b + s->held_len, data, len);
        s->held = b;
        s->held_len += len;
        s->paused = true;
        return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data) {
        GrpcStream *s = nghttp2_session_get_stream_user_data(session, stream_id);
        if (s)
                stream_end(s, error_code == NGHTTP2_REFUSED_STREAM ? -ECONNREFUSED : -ECONNRESET, NULL);
        return 0;
}

/* ---- connections ---- */

static int conn_flush(GConn *c) {
        if (!c->connected)
                return 0;
        while (c->wlen > 0) {
                ssize_t n = send(c->fd, c->wbuf, c->wlen, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        return -errno;
                }
                memmove(c->wbuf, c->wbuf + n, c->wlen - (size_t) n);
                c->wlen -= (size_t) n;
        }
        while (c->wlen == 0) {
                const uint8_t *data;
                ssize_t n = nghttp2_session_mem_send(c->h2, &data);
                if (n < 0)
                        return -EIO;
                if (n == 0)
                        break;
                ssize_t w = send(c->fd, data, (size_t) n, MSG_NOSIGNAL);
                if (w < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                return -errno;
                        w = 0;
                }
                if (w < n) {
                        size_t rest = (size_t) (n - w);
                        if (rest > c->wcap) {
                                uint8_t *b = realloc(c->wbuf, rest);
                                if (!b)
                                        return -ENOMEM;
                                c->wbuf = b;
                                c->wcap = rest;
                        }
                        memcpy(c->wbuf, data + w, rest);
                        c->wlen = rest;
                }
        }
        (void) sd_event_source_set_io_events(c->io, EPOLLIN | EPOLLRDHUP | (c->wlen > 0 ? EPOLLOUT : 0));
        if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) && c->wlen == 0)
                return -ECONNRESET;
        return 0;
}

/* The connection is gone: its streams end, and it is freed. */
static void conn_fail(GConn *c, int error) {
        c->dead = true;
        while (c->streams) {
                GrpcStream *s = c->streams;
                stream_end(s, error, NULL);
        }
        conn_free(c);
}

static int on_defer(sd_event_source *src, void *userdata) {
        GConn *c = userdata;
        int r = conn_flush(c);
        if (r < 0)
                conn_fail(c, -ECONNRESET);
        return 0;
}

static void conn_schedule(GConn *c) {
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        GConn *c = userdata;
        uint8_t buf[READ_CHUNK];

        if (!c->connected) {
                int err = 0;
                socklen_t len = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err != 0) {
                        conn_fail(c, -ECONNREFUSED);
                        return 0;
                }
                c->connected = true;
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
                for (int i = 0; i < 8; i++) {
                        ssize_t n = recv(fd, buf, sizeof buf, 0);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                break;
                        if (n <= 0 || nghttp2_session_mem_recv(c->h2, buf, (size_t) n) < 0) {
                                c->dead = true;
                                conn_fail(c, -ECONNRESET);
                                return 0;
                        }
                        if ((size_t) n < sizeof buf)
                                break;
                }
        }
        if (conn_flush(c) < 0)
                conn_fail(c, -ECONNRESET);
        return 0;
}

static void conn_free(GConn *c) {
        if (!c)
                return;
        while (c->streams)
                stream_end(c->streams, -ECANCELED, NULL);
        if (c->prev)
                c->prev->next = c->next;
        else if (c->channel->conns == c)
                c->channel->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        nghttp2_session_del(c->h2);
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->defer);
        safe_close(c->fd);
        free(c->host);
        free(c->wbuf);
        free(c);
}

static int conn_connect(GConn *c) {
        int fd;
        if (c->kind == TRANSPORT_ADDRESS_UNIX) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                if (strlen(c->host) >= sizeof sa.sun_path)
                        return -ENAMETOOLONG;
                strcpy(sa.sun_path, c->host);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return -errno;
                if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 && errno != EINPROGRESS &&
                    errno != EAGAIN) {
                        int r = -errno;
                        safe_close(fd);
                        return r;
                }
        } else {
                struct sockaddr_in6 sa6 = { .sin6_family = AF_INET6, .sin6_port = htons(c->port) };
                struct sockaddr_in sa4 = { .sin_family = AF_INET, .sin_port = htons(c->port) };
                bool v6 = strchr(c->host, ':');
                if (v6 ? inet_pton(AF_INET6, c->host, &sa6.sin6_addr) != 1
                       : inet_pton(AF_INET, c->host, &sa4.sin_addr) != 1)
                        return -EINVAL;
                fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return -errno;
                if (connect(fd, v6 ? (struct sockaddr *) &sa6 : (struct sockaddr *) &sa4,
                            v6 ? sizeof sa6 : sizeof sa4) < 0 && errno != EINPROGRESS) {
                        int r = -errno;
                        safe_close(fd);
                        return r;
                }
        }
        c->fd = fd;
        return 0;
}

static int conn_get(GrpcChannel *g, const TransportAddress *a, GConn **ret) {
        nghttp2_session_callbacks *cb = NULL;
        nghttp2_option *opt = NULL;
        GConn *c;
        int r;

        for (c = g->conns; c; c = c->next)
                if (!c->dead && c->kind == a->kind && c->port == a->port && streq(c->host, a->host)) {
                        *ret = c;
                        return 0;
                }
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->channel = g;
        c->kind = a->kind;
        c->port = a->port;
        c->fd = -EBADF;
        c->next = g->conns;
        if (c->next)
                c->next->prev = c;
        g->conns = c;
        c->host = strdup(a->host);
        r = -ENOMEM;
        if (!c->host || nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
                goto fail;
        nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
        nghttp2_option_set_no_auto_window_update(opt, 1);
        if (nghttp2_session_client_new2(&c->h2, cb, c, opt) != 0)
                goto fail;
        nghttp2_settings_entry iv[] = {
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
                { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
        };
        if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv)) != 0 ||
            nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0)
                goto fail;
        r = conn_connect(c);
        if (r < 0)
                goto fail;
        if (sd_event_add_io(g->event, &c->io, c->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP, on_io, c) < 0 ||
            sd_event_add_defer(g->event, &c->defer, on_defer, c) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);
        nghttp2_session_callbacks_del(cb);
        nghttp2_option_del(opt);
        *ret = c;
        return 0;
fail:
        nghttp2_session_callbacks_del(cb);
        nghttp2_option_del(opt);
        conn_free(c);
        return r;
}

/* ---- API ---- */

static void format_timeout(uint64_t usec, char buf[static 16]) {
        /* at most 8 digits (the spec's bound): microseconds, else milliseconds, else seconds */
        if (usec < 100000000ULL)
                snprintf(buf, 16, "%lluu", (unsigned long long) usec);
        else if (usec / 1000 < 100000000ULL)
                snprintf(buf, 16, "%llum", (unsigned long long) (usec / 1000));
        else
                snprintf(buf, 16, "%lluS", (unsigned long long) MIN(usec / 1000000, 99999999ULL));
}

int grpc_channel_open(GrpcChannel *g, const TransportAddress *addr, const char *path, char *const *metadata,
                      uint64_t timeout_usec, const GrpcStreamHandler *h, void *userdata, GrpcStream **ret) {
        GConn *c;
        GrpcStream *s;
        nghttp2_nv hv[80];
        size_t n = 0;
        char timeout[16];
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->h = h;
        s->userdata = userdata;
        if (timeout_usec > 0 &&
            sd_event_add_time_relative(g->event, &s->deadline, CLOCK_MONOTONIC, timeout_usec, 1000,
                                       on_stream_deadline, s) < 0) {
                free(s);
                return -ENOMEM;
        }
        r = conn_get(g, addr, &c);
        if (r < 0) {
                /* a refused connect is an answer for the loop, like any other failure */
                s->later_error = r;
                if (sd_event_add_defer(g->event, &s->later, on_later, s) < 0) {
                        stream_free(s);
                        return -ENOMEM;
                }
                *ret = s;
                return 0;
        }
        hv[n++] = nv(":method", "POST");
        hv[n++] = nv(":scheme", "http");
        hv[n++] = nv(":path", path);
        hv[n++] = nv(":authority", c->kind == TRANSPORT_ADDRESS_UNIX ? "localhost" : c->host);
        hv[n++] = nv("content-type", "application/grpc");
        hv[n++] = nv("te", "trailers");
        if (timeout_usec > 0) {
                format_timeout(timeout_usec, timeout);
                hv[n++] = nv("grpc-timeout", timeout);
        }
        for (char *const *p = metadata; p && p[0] && p[1] && n < ELEMENTSOF(hv); p += 2)
                hv[n++] = nv(p[0], p[1]);
        nghttp2_data_provider prd = { .source.ptr = s, .read_callback = data_read };
        int32_t id = nghttp2_submit_request(c->h2, NULL, hv, n, &prd, s);
        if (id < 0) {
                stream_free(s);
                return id == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EINVAL;
        }
        s->stream_id = id;
        s->conn = c;
        s->next = c->streams;
        if (s->next)
                s->next->prev = s;
        c->streams = s;
        conn_schedule(c);
        *ret = s;
        return 0;
}

sd_event *grpc_channel_event(GrpcChannel *g) {
        return g->event;
}

GrpcChannel *grpc_channel_new(sd_event *e) {
        GrpcChannel *g = calloc(1, sizeof *g);
        if (g)
                g->event = sd_event_ref(e);
        return g;
}

GrpcChannel *grpc_channel_free(GrpcChannel *g) {
        if (!g)
                return NULL;
        while (g->conns)
                conn_fail(g->conns, -ECANCELED);
        sd_event_unref(g->event);
        free(g);
        return NULL;
}
