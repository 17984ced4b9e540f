/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See server.h.
 *
 * One nghttp2 server session per connection, fed from the connection's fd on
 * the loop and flushed (nghttp2_session_mem_send) after every read and,
 * through a defer source, after every answer given outside a read. A call is
 * one HTTP/2 stream; it holds one reference for the stream and one for the
 * handler while the handler owes its answer, so either side may end first.
 *
 * Limits: SETTINGS_MAX_CONCURRENT_STREAMS (more are refused by nghttp2),
 * the message size limit per message (Dapr's max request body size, 4 MiB by
 * default: longer ones end in RESOURCE_EXHAUSTED as grpc-go answers), the
 * header list size (past it the connection is closed), and the input held per
 * connection across its streams (past it the stream that would grow it ends
 * in RESOURCE_EXHAUSTED). Protocol errors of the peer (bad preface, frames on
 * the wrong stream, flow-control violations) are nghttp2's to detect: it sends
 * GOAWAY and we close once that is out.
 */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/app.h"
#include "../manager.h"
#include "../util/base64.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "../util/grpc-frame.h"
#include "mooring-proto.h"
#include "server.h"
#include "services.h"

#define GRPC_MAX_STREAMS 1024U
#define GRPC_STREAM_WINDOW (1U << 20)
#define GRPC_CONN_WINDOW (16U << 20)
#define GRPC_MAX_HEADER_LIST (64U * 1024)
#define GRPC_READ_CHUNK (64U * 1024)
#define GRPC_READS_PER_WAKEUP 8
/* Input held per connection (partial messages, requests waiting for their end) at most. */
#define GRPC_CONN_INPUT_MIN (64ULL << 20)
/* A stream's queued output past which grpc_call_send() refuses (the client does not read). */
#define GRPC_SEND_QUEUE_MAX (16U << 20)

typedef struct GrpcConn GrpcConn;

struct GrpcServer {
        Manager *manager;           /* back-reference */
        sd_event *event;            /* borrowed from the Manager */
        GrpcConn *conns;
        GrpcListener *listeners;
        unsigned n_conns;
        unsigned calls_in_flight;   /* calls not yet finished */
        bool draining;
};

struct GrpcListener {
        GrpcServer *server;
        GrpcListenerKind kind;
        App *app;                   /* ref */
        int fd;
        sd_event_source *source;
        sd_event_source *backoff;   /* re-enables source after accept() ran out of fds */
        unsigned n_conns;
        char *unlink_path;
        GrpcListener *next, *prev;
};

struct GrpcConn {
        GrpcServer *server;
        GrpcListener *listener;     /* NULL once the listener is gone */
        App *app;                   /* ref: the caller, from the listener */
        bool tcp;
        int fd;
        sd_event_source *io, *defer;
        nghttp2_session *h2;
        uint8_t *wbuf;              /* bytes nghttp2 gave us that the socket did not take yet */
        size_t wlen, wcap;
        uint64_t input_held;        /* across its calls (see GRPC_CONN_INPUT_MIN) */
        uint64_t input_max;
        GrpcCall *calls;
        bool dead;                  /* freed at the end of the current dispatch */
        GrpcConn *next, *prev;
};

struct GrpcCall {
        unsigned n_ref;
        GrpcServer *server;         /* borrowed: outlives every call that can still reach it */
        GrpcConn *conn;             /* NULL once the stream is gone */
        App *app;                   /* ref */
        int32_t stream_id;
        const GrpcMethod *method;
        char *path;
        char *http_method, *content_type;
        char **md;                  /* request metadata pairs */
        size_t n_md, cap_md;        /* strings in md (without its NULL), slots allocated */
        size_t header_bytes;
        bool started;               /* the request headers were checked and dispatched */
        bool input_ended;           /* END_STREAM from the client */
        bool handler_owes;          /* the handler holds a reference until it answers */
        bool finished;              /* the status is decided; no more output */
        bool headers_sent;
        bool deferred;              /* the data provider waits for output */
        bool counted;               /* in calls_in_flight */
        GrpcDecoder dec;
        uint64_t held;              /* input this call holds (accounted in conn->input_held) */
        uint8_t *req;               /* unary: the one request message, until the input ends */
        size_t req_len;
        bool have_req, extra_req;
        uint8_t *out;               /* framed messages not yet taken by nghttp2 */
        size_t out_len, out_off, out_cap;
        char **headers_out, **trailers_out;
        GrpcCode status;
        char *status_message;       /* percent-encoded */
        char *details_bin;          /* base64 google.rpc.Status, or NULL */
        sd_event_source *deadline;
        uint64_t deadline_usec;     /* CLOCK_MONOTONIC, 0: none */
        GrpcCallCancelFn on_cancel;
        void *cancel_userdata;
        void *userdata;
        GrpcCall *next, *prev;
};

static void conn_schedule_flush(GrpcConn *c);
static void conn_free(GrpcConn *c);
static void call_finish(GrpcCall *c, GrpcCode code, const char *message, const char *details_bin);

/* ---- calls ---- */

static GrpcCall *call_ref(GrpcCall *c) {
        c->n_ref++;
        return c;
}

static void call_uncount(GrpcCall *c) {
        if (c->counted) {
                c->counted = false;
                c->server->calls_in_flight--;
        }
}

static void call_unref(GrpcCall *c) {
        if (!c || --c->n_ref > 0)
                return;
        call_uncount(c);
        sd_event_source_disable_unref(c->deadline);
        grpc_decoder_done(&c->dec);
        app_unref(c->app);
        free(c->path);
        free(c->http_method);
        free(c->content_type);
        strv_free(c->md);
        free(c->req);
        free(c->out);
        strv_free(c->headers_out);
        strv_free(c->trailers_out);
        free(c->status_message);
        free(c->details_bin);
        free(c);
}

static void call_hold(GrpcCall *c, uint64_t held) {
        if (c->conn) {
                c->conn->input_held -= c->held;
                c->conn->input_held += held;
        }
        c->held = held;
}

/* The stream is gone (closed, reset, connection lost): unlink from the connection. */
static void call_detach(GrpcCall *c) {
        GrpcConn *conn = c->conn;
        if (!conn)
                return;
        call_hold(c, 0);
        if (c->prev)
                c->prev->next = c->next;
        else
                conn->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->next = c->prev = NULL;
        c->conn = NULL;
        c->deadline = sd_event_source_disable_unref(c->deadline);
        if (!c->finished) {
                c->finished = true;
                call_uncount(c);
        }
        if (c->handler_owes && c->on_cancel) {
                GrpcCallCancelFn fn = c->on_cancel;
                c->on_cancel = NULL;
                fn(c, c->cancel_userdata);
        }
        call_unref(c); /* the stream's reference */
}

/* ---- output ---- */

static int out_append(GrpcCall *c, const void *p, size_t n) {
        if (c->out_off > 0 && c->out_off == c->out_len)
                c->out_off = c->out_len = 0;
        if (c->out_len + n > c->out_cap) {
                if (c->out_off > 0) {
                        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
                        c->out_len -= c->out_off;
                        c->out_off = 0;
                }
                if (c->out_len + n > c->out_cap) {
                        size_t cap = MAX(c->out_cap * 2, c->out_len + n);
                        uint8_t *b = realloc(c->out, cap);
                        if (!b)
                                return -ENOMEM;
                        c->out = b;
                        c->out_cap = cap;
                }
        }
        memcpy(c->out + c->out_len, p, n);
        c->out_len += n;
        return 0;
}

static nghttp2_nv make_nv(const char *name, const char *value) {
        return (nghttp2_nv){ (uint8_t *) name, (uint8_t *) value, strlen(name), strlen(value),
                             NGHTTP2_NV_FLAG_NONE };
}

static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data);

/* Headers (and, for a trailers-only answer, everything) go out with the first output. */
static int call_send_headers(GrpcCall *c, bool trailers_only) {
        nghttp2_nv nv[64];
        size_t n = 0;
        char status[16];

        nv[n++] = make_nv(":status", "200");
        nv[n++] = make_nv("content-type", "application/grpc");
        nv[n++] = make_nv("grpc-accept-encoding", "identity");
        for (char **p = c->headers_out; p && p[0] && p[1] && n < ELEMENTSOF(nv) - 8; p += 2)
                nv[n++] = make_nv(p[0], p[1]);
        if (trailers_only) {
                snprintf(status, sizeof status, "%d", (int) c->status);
                nv[n++] = make_nv("grpc-status", status);
                if (c->status_message && *c->status_message)
                        nv[n++] = make_nv("grpc-message", c->status_message);
                if (c->details_bin)
                        nv[n++] = make_nv("grpc-status-details-bin", c->details_bin);
                for (char **p = c->trailers_out; p && p[0] && p[1] && n < ELEMENTSOF(nv); p += 2)
                        nv[n++] = make_nv(p[0], p[1]);
                c->headers_sent = true;
                return nghttp2_submit_response(c->conn->h2, c->stream_id, nv, n, NULL) < 0 ? -EIO : 0;
        }
        nghttp2_data_provider prd = { .source.ptr = c, .read_callback = data_read };
        c->headers_sent = true;
        return nghttp2_submit_response(c->conn->h2, c->stream_id, nv, n, &prd) < 0 ? -EIO : 0;
}

static void call_submit_trailers(GrpcCall *c) {
        nghttp2_nv nv[24];
        size_t n = 0;
        char status[16];

        snprintf(status, sizeof status, "%d", (int) c->status);
        nv[n++] = make_nv("grpc-status", status);
        if (c->status_message && *c->status_message)
                nv[n++] = make_nv("grpc-message", c->status_message);
        if (c->details_bin)
                nv[n++] = make_nv("grpc-status-details-bin", c->details_bin);
        for (char **p = c->trailers_out; p && p[0] && p[1] && n < ELEMENTSOF(nv); p += 2)
                nv[n++] = make_nv(p[0], p[1]);
        (void) nghttp2_submit_trailer(c->conn->h2, c->stream_id, nv, n);
}

static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data) {
        GrpcCall *c = source->ptr;
        size_t n = MIN(length, c->out_len - c->out_off);

        if (n > 0)
                memcpy(buf, c->out + c->out_off, n);
        c->out_off += n;
        if (c->out_off == c->out_len) {
                c->out_off = c->out_len = 0;
                if (!c->finished) {
                        if (n > 0)
                                return (ssize_t) n;
                        c->deferred = true;
                        return NGHTTP2_ERR_DEFERRED;
                }
                /* Everything is out: the status follows as trailers. */
                *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
                call_submit_trailers(c);
        }
        return (ssize_t) n;
}

static void call_kick(GrpcCall *c) {
        if (!c->conn)
                return;
        if (c->deferred) {
                c->deferred = false;
                (void) nghttp2_session_resume_data(c->conn->h2, c->stream_id);
        }
        conn_schedule_flush(c->conn);
}

/* Decides the status and sends what is left. Idempotent: the first decision wins. */
static void call_finish(GrpcCall *c, GrpcCode code, const char *message, const char *details_bin) {
        if (c->finished || !c->conn)
                return;
        c->finished = true;
        call_uncount(c);
        c->deadline = sd_event_source_disable_unref(c->deadline);
        c->status = code;
        c->status_message = message ? grpc_percent_encode(message) : NULL;
        c->details_bin = details_bin ? strdup(details_bin) : NULL;
        if (!c->headers_sent) {
                if (call_send_headers(c, true) < 0)
                        (void) nghttp2_submit_rst_stream(c->conn->h2, NGHTTP2_FLAG_NONE, c->stream_id,
                                                         NGHTTP2_INTERNAL_ERROR);
        }
        call_kick(c);
}

/* The server ends a call on its own (limits, deadline): the handler, if any, hears of it. */
static void call_abort(GrpcCall *c, GrpcCode code, const char *message) {
        call_finish(c, code, message, NULL);
        if (c->handler_owes && c->on_cancel) {
                GrpcCallCancelFn fn = c->on_cancel;
                c->on_cancel = NULL;
                fn(c, c->cancel_userdata);
        }
}

/* ---- the handler's side ---- */

Registry *grpc_call_registry(const GrpcCall *c) {
        return c->server->manager->registry;
}

Manager *grpc_call_manager(const GrpcCall *c) {
        return c->server->manager;
}

App *grpc_call_app(const GrpcCall *c) {
        return c->app;
}

const char *grpc_call_app_id(const GrpcCall *c) {
        return c->app->config->id;
}

const char *grpc_call_path(const GrpcCall *c) {
        return c->path;
}

const char *grpc_call_metadata(const GrpcCall *c, const char *key) {
        for (char **p = c->md; p && p[0] && p[1]; p += 2)
                if (streq(p[0], key))
                        return p[1];
        return NULL;
}

char *const *grpc_call_metadata_pairs(const GrpcCall *c) {
        static char *const empty[] = { NULL };
        return c->md ?: empty;
}

static bool header_value_ok(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

int grpc_call_add_header(GrpcCall *c, const char *name, const char *value) {
        if (c->headers_sent)
                return -EBUSY;
        if (!header_value_ok(value))
                return -EINVAL;
        return strv_extend(&c->headers_out, name) < 0 || strv_extend(&c->headers_out, value) < 0 ? -ENOMEM : 0;
}

int grpc_call_add_trailer(GrpcCall *c, const char *name, const char *value) {
        if (c->finished)
                return -EBUSY;
        if (!header_value_ok(value))
                return -EINVAL;
        return strv_extend(&c->trailers_out, name) < 0 || strv_extend(&c->trailers_out, value) < 0 ? -ENOMEM : 0;
}

int grpc_call_send_raw(GrpcCall *c, const void *buf, size_t len) {
        uint8_t prefix[GRPC_PREFIX_SIZE];
        int r;

        if (c->finished || !c->conn)
                return -EPIPE;
        if (len > UINT32_MAX)
                return -EMSGSIZE;
        if (c->out_len - c->out_off > GRPC_SEND_QUEUE_MAX)
                return -ENOBUFS;
        grpc_frame_prefix(prefix, (uint32_t) len);
        r = out_append(c, prefix, sizeof prefix);
        if (r >= 0 && len > 0)
                r = out_append(c, buf, len);
        if (r < 0)
                return r;
        if (!c->headers_sent && call_send_headers(c, false) < 0)
                return -EIO;
        call_kick(c);
        return 0;
}

int grpc_call_send(GrpcCall *c, const ProtobufCMessage *msg) {
        size_t n = protobuf_c_message_get_packed_size(msg);
        _cleanup_free_ uint8_t *buf = malloc(n ?: 1);
        if (!buf)
                return -ENOMEM;
        protobuf_c_message_pack(msg, buf);
        return grpc_call_send_raw(c, buf, n);
}

size_t grpc_call_send_queued(const GrpcCall *c) {
        return c->out_len - c->out_off;
}

/* The handler's answer: drops its reference. */
static void handler_answered(GrpcCall *c) {
        if (!c->handler_owes)
                return;
        c->handler_owes = false;
        c->on_cancel = NULL;
        call_unref(c);
}

int grpc_call_reply(GrpcCall *c, const ProtobufCMessage *msg) {
        int r = 0;
        call_ref(c);
        if (msg && !c->finished && c->conn) {
                r = grpc_call_send(c, msg);
                if (r < 0)
                        call_finish(c, r == -EMSGSIZE ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL,
                                    "mooringd could not send the answer", NULL);
        }
        call_finish(c, GRPC_STATUS_OK, NULL, NULL);
        handler_answered(c);
        call_unref(c);
        return r;
}

_printf_(4, 0) static int fail_internal(GrpcCall *c, GrpcCode code, const char *reason, const char *fmt,
                                         va_list ap) {
        _cleanup_free_ char *msg = NULL, *details = NULL;

        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        if (reason && msg) {
                /* google.rpc.Status { code, message, details: [ErrorInfo{reason, domain}] }, as Dapr sends
                 * its error codes to gRPC callers. */
                Google__Rpc__ErrorInfo info = GOOGLE__RPC__ERROR_INFO__INIT;
                Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
                Google__Protobuf__Any *anys[] = { &any };
                Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
                info.reason = (char *) reason;
                info.domain = (char *) "dapr.io";
                size_t n = google__rpc__error_info__get_packed_size(&info);
                _cleanup_free_ uint8_t *ib = malloc(n ?: 1);
                if (ib) {
                        google__rpc__error_info__pack(&info, ib);
                        any.type_url = (char *) "type.googleapis.com/google.rpc.ErrorInfo";
                        any.value = (ProtobufCBinaryData){ n, ib };
                        st.code = (int32_t) code;
                        st.message = msg;
                        st.n_details = 1;
                        st.details = anys;
                        size_t sn = google__rpc__status__get_packed_size(&st);
                        _cleanup_free_ uint8_t *sb = malloc(sn ?: 1);
                        if (sb) {
                                google__rpc__status__pack(&st, sb);
                                details = base64_encode(sb, sn);
                        }
                }
        }
        call_ref(c);
        call_finish(c, code, msg ?: "error", details);
        handler_answered(c);
        call_unref(c);
        return 0;
}

int grpc_call_fail(GrpcCall *c, GrpcCode code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = fail_internal(c, code, NULL, fmt, ap);
        va_end(ap);
        return r;
}

int grpc_call_fail_detail(GrpcCall *c, GrpcCode code, const char *reason, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = fail_internal(c, code, reason, fmt, ap);
        va_end(ap);
        return r;
}

void grpc_call_on_cancel(GrpcCall *c, GrpcCallCancelFn fn, void *userdata) {
        c->on_cancel = fn;
        c->cancel_userdata = userdata;
}

bool grpc_call_is_gone(const GrpcCall *c) {
        return c->finished || !c->conn;
}

void grpc_call_set_userdata(GrpcCall *c, void *userdata) {
        c->userdata = userdata;
}

void *grpc_call_get_userdata(const GrpcCall *c) {
        return c->userdata;
}

uint64_t grpc_call_deadline_left_usec(const GrpcCall *c) {
        uint64_t now = 0;
        if (!c->deadline_usec)
                return UINT64_MAX;
        (void) sd_event_now(c->server->event, CLOCK_MONOTONIC, &now);
        return c->deadline_usec > now ? c->deadline_usec - now : 0;
}

/* ---- dispatch ---- */

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        GrpcCall *c = userdata;
        call_ref(c);
        /* grpc-go's words, which clients show as they are */
        call_abort(c, GRPC_STATUS_DEADLINE_EXCEEDED, "context deadline exceeded");
        call_unref(c);
        return 0;
}

static const GrpcMethod *method_find(const char *path) {
        for (const GrpcService *const *s = grpc_services; *s; s++)
                for (size_t i = 0; i < (*s)->n_methods; i++)
                        if (streq((*s)->methods[i].path, path))
                                return &(*s)->methods[i];
        return NULL;
}

/* A handler's negative return: it did not answer, so the server does. */
static void handler_failed(GrpcCall *c, int r) {
        if (!c->handler_owes)
                return;
        if (r == -ENOMEM)
                (void) grpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        else
                (void) grpc_call_fail(c, GRPC_STATUS_INTERNAL, "%s", strerror(-r));
}

static ProtobufCMessage *unpack(GrpcCall *c, const uint8_t *msg, size_t len) {
        ProtobufCMessage *m = protobuf_c_message_unpack(c->method->request, NULL, len, msg);
        if (!m)
                /* grpc-go's code and words for a request it cannot decode */
                call_abort(c, GRPC_STATUS_INTERNAL,
                           "grpc: error unmarshalling request: the message does not match the method's type");
        return m;
}

static void dispatch_unary(GrpcCall *c) {
        ProtobufCMessage *m;
        int r;

        if (!c->have_req || grpc_decoder_partial(&c->dec)) {
                call_finish(c, GRPC_STATUS_INTERNAL,
                            c->have_req ? "grpc: the request ends inside a message" : "grpc: no request message",
                            NULL);
                return;
        }
        if (c->extra_req) {
                call_finish(c, GRPC_STATUS_INTERNAL, "grpc: more than one request message for a unary method",
                            NULL);
                return;
        }
        m = unpack(c, c->req ?: (const uint8_t *) "", c->req_len);
        free(c->req);
        c->req = NULL;
        call_hold(c, grpc_decoder_buffered(&c->dec));
        if (!m)
                return;
        c->handler_owes = true;
        call_ref(c);
        r = c->method->unary(c, m);
        protobuf_c_message_free_unpacked(m, NULL);
        if (r < 0)
                handler_failed(c, r);
}

static int on_message(const uint8_t *msg, size_t len, void *userdata) {
        GrpcCall *c = userdata;

        if (c->finished)
                return -ECANCELED;
        if (c->method->kind == GRPC_METHOD_UNARY) {
                if (c->have_req) {
                        c->extra_req = true;
                        return 0;
                }
                c->req = malloc(len ?: 1);
                if (!c->req)
                        return -ENOMEM;
                memcpy(c->req, msg, len);
                c->req_len = len;
                c->have_req = true;
                return 0;
        }
        if (c->method->kind == GRPC_METHOD_RAW) {
                call_ref(c);
                int r = c->method->raw(c, msg, len);
                if (r < 0)
                        handler_failed(c, r);
                call_unref(c);
                return 0;
        }
        ProtobufCMessage *m = unpack(c, msg, len);
        if (!m)
                return -EBADMSG;
        call_ref(c);
        int r = c->method->message(c, m);
        protobuf_c_message_free_unpacked(m, NULL);
        if (r < 0)
                handler_failed(c, r);
        call_unref(c);
        return 0;
}

/* The request's headers are complete: check them and start the call. */
static void call_start(GrpcCall *c) {
        const char *timeout = grpc_call_metadata(c, "grpc-timeout");
        const char *enc = grpc_call_metadata(c, "grpc-encoding");
        GrpcConn *conn = c->conn;
        char msg[256];
        uint64_t usec;
        int r;

        c->started = true;
        c->counted = true;
        c->server->calls_in_flight++;
        if (!c->http_method || !streq(c->http_method, "POST") || !c->path || c->path[0] != '/') {
                (void) nghttp2_submit_rst_stream(conn->h2, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_PROTOCOL_ERROR);
                c->finished = true;
                call_uncount(c);
                return;
        }
        if (!c->content_type || !startswith(c->content_type, "application/grpc")) {
                /* Not gRPC: gRPC's HTTP mapping says 415 with the status as best effort. */
                nghttp2_nv nv[] = { make_nv(":status", "415"), make_nv("grpc-status", "3"),
                                    make_nv("grpc-message", "invalid gRPC request content-type") };
                (void) nghttp2_submit_response(conn->h2, c->stream_id, nv, ELEMENTSOF(nv), NULL);
                c->headers_sent = c->finished = true;
                call_uncount(c);
                return;
        }
        if (timeout) {
                if (grpc_timeout_parse(timeout, &usec) < 0) {
                        call_finish(c, GRPC_STATUS_INTERNAL, "malformed grpc-timeout", NULL);
                        return;
                }
                uint64_t now = 0;
                (void) sd_event_now(c->server->event, CLOCK_MONOTONIC, &now);
                c->deadline_usec = usec > UINT64_MAX - now ? UINT64_MAX : now + usec;
                if (sd_event_add_time(c->server->event, &c->deadline, CLOCK_MONOTONIC, c->deadline_usec, 0,
                                      on_deadline, c) < 0) {
                        call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
                        return;
                }
        }
        if (enc && !streq(enc, "identity")) {
                snprintf(msg, sizeof msg, "grpc: Decompressor is not installed for grpc-encoding \"%.64s\"", enc);
                call_finish(c, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
                return;
        }
        /* An app's TCP port is reachable by anything on the host: with a token configured, the
         * token is what makes the caller that app (Dapr's words and code). */
        if (conn->tcp && c->app->config->api_token &&
            !app_token_matches(c->app, grpc_call_metadata(c, "dapr-api-token"))) {
                call_finish(c, GRPC_STATUS_UNAUTHENTICATED, "authentication error: api token mismatch", NULL);
                return;
        }
        c->method = method_find(c->path);
        /* Not ours, with dapr-app-id: a call for that app's own gRPC service (Dapr's proxying). */
        const char *target = grpc_call_metadata(c, "dapr-app-id");
        if (!c->method && target && *target)
                c->method = &grpc_proxy_method;
        if (!c->method) {
                snprintf(msg, sizeof msg, "unknown method %.200s: mooringd does not serve it", c->path);
                call_finish(c, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
                return;
        }
        if (c->method->kind != GRPC_METHOD_UNARY) {
                c->handler_owes = true;
                call_ref(c);
                r = c->method->open(c);
                if (r < 0)
                        handler_failed(c, r);
        }
}

static void call_input_end(GrpcCall *c) {
        if (c->input_ended)
                return;
        c->input_ended = true;
        if (c->finished || !c->method)
                return;
        if (c->method->kind == GRPC_METHOD_UNARY)
                dispatch_unary(c);
        else if (grpc_decoder_partial(&c->dec))
                call_abort(c, GRPC_STATUS_INTERNAL, "grpc: the request stream ends inside a message");
        else if (c->method->half_closed) {
                call_ref(c);
                c->method->half_closed(c);
                call_unref(c);
        }
}

/* ---- nghttp2 callbacks ---- */

static GrpcCall *stream_call(GrpcConn *conn, int32_t stream_id) {
        return nghttp2_session_get_stream_user_data(conn->h2, stream_id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        GrpcConn *conn = user_data;
        GrpcCall *c;

        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0;
        if (conn->server->draining) {
                (void) nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                                 NGHTTP2_REFUSED_STREAM);
                return 0;
        }
        c = calloc(1, sizeof *c);
        if (!c)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        c->n_ref = 1; /* the stream's */
        c->server = conn->server;
        c->conn = conn;
        c->app = app_ref(conn->app);
        c->stream_id = frame->hd.stream_id;
        grpc_decoder_init(&c->dec, manager_max_body(conn->server->manager) ?: 4U << 20);
        c->next = conn->calls;
        if (c->next)
                c->next->prev = c;
        conn->calls = c;
        if (nghttp2_session_set_stream_user_data(session, c->stream_id, c) < 0) {
                call_detach(c);
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) {
        GrpcConn *conn = user_data;
        GrpcCall *c = stream_call(conn, frame->hd.stream_id);
        char **slot = NULL;

        if (!c || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0; /* the client's trailers carry nothing we use */
        c->header_bytes += namelen + valuelen + 32;
        if (c->header_bytes > GRPC_MAX_HEADER_LIST) {
                /* Past what SETTINGS_MAX_HEADER_LIST_SIZE announced: a peer that ignores it is cut off. */
                (void) nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
                return 0;
        }
        if (namelen > 0 && name[0] == ':') {
                if (namelen == 5 && memcmp(name, ":path", 5) == 0)
                        slot = &c->path;
                else if (namelen == 7 && memcmp(name, ":method", 7) == 0)
                        slot = &c->http_method;
                if (slot) {
                        free(*slot);
                        *slot = strndup((const char *) value, valuelen);
                        if (!*slot)
                                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                }
                return 0;
        }
        if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
                free(c->content_type);
                c->content_type = strndup((const char *) value, valuelen);
                if (!c->content_type)
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        /* Appended in place, the array growing by doubling: strv_extend() copied each string again
         * and reallocated per string, about 3k instructions of a GetState in callgrind. */
        if (c->n_md + 3 > c->cap_md) {
                size_t cap = c->cap_md ? 2 * c->cap_md : 16;
                char **p = realloc(c->md, cap * sizeof(char *));
                if (!p)
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                c->md = p;
                c->cap_md = cap;
        }
        char *n = strndup((const char *) name, namelen), *v = strndup((const char *) value, valuelen);
        if (!n || !v) {
                free(n);
                free(v);
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        c->md[c->n_md++] = n;
        c->md[c->n_md++] = v;
        c->md[c->n_md] = NULL;
        return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data) {
        GrpcConn *conn = user_data;
        GrpcCall *c = stream_call(conn, stream_id);
        char msg[160];
        int r;

        if (!c || c->finished || !c->method)
                return 0;
        if (conn->input_held + len > conn->input_max) {
                call_abort(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                           "mooringd: too much request data held on this connection; retry later");
                return 0;
        }
        call_ref(c);
        r = grpc_decoder_feed(&c->dec, data, len, on_message, c);
        call_hold(c, grpc_decoder_buffered(&c->dec) + (c->req ? c->req_len : 0));
        if (r == -EMSGSIZE) {
                /* grpc-go's code and words */
                snprintf(msg, sizeof msg, "grpc: received message larger than max (%zu vs. %zu)", c->dec.last_size,
                         c->dec.max_message);
                call_abort(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
        } else if (r == -EPROTONOSUPPORT)
                call_abort(c, GRPC_STATUS_UNIMPLEMENTED,
                           "grpc: compressed message without grpc-encoding: mooringd takes identity only");
        else if (r == -EBADMSG && !c->finished)
                call_abort(c, GRPC_STATUS_INTERNAL, "grpc: bad message flag");
        else if (r == -ENOMEM)
                call_abort(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        call_unref(c);
        return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        GrpcConn *conn = user_data;
        GrpcCall *c;

        if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
                return 0;
        c = stream_call(conn, frame->hd.stream_id);
        if (!c)
                return 0;
        call_ref(c);
        if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST && !c->started)
                call_start(c);
        if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && c->conn)
                call_input_end(c);
        call_unref(c);
        return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        GrpcConn *conn = user_data;
        GrpcCall *c;

        /* Our answer ended the stream while the client still sends: tell it to stop (as grpc-go does). */
        if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && (c = stream_call(conn, frame->hd.stream_id)) &&
            !c->input_ended)
                (void) nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
        return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data) {
        GrpcConn *conn = user_data;
        GrpcCall *c = stream_call(conn, stream_id);
        if (c) {
                (void) nghttp2_session_set_stream_user_data(session, stream_id, NULL);
                call_detach(c);
        }
        return 0;
}

/* ---- connections ---- */

static void conn_set_events(GrpcConn *c) {
        uint32_t ev = EPOLLIN | EPOLLRDHUP;
        if (c->wlen > 0)
                ev |= EPOLLOUT;
        (void) sd_event_source_set_io_events(c->io, ev);
}

/* Writes what nghttp2 has for the peer. < 0: the connection is broken. */
static int conn_flush(GrpcConn *c) {
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
        conn_set_events(c);
        if (c->wlen == 0 && !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
                return -ECONNRESET; /* GOAWAY exchanged, or the session ended: done */
        return 0;
}

static int on_defer(sd_event_source *s, void *userdata) {
        GrpcConn *c = userdata;
        if (conn_flush(c) < 0)
                conn_free(c);
        return 0;
}

static void conn_schedule_flush(GrpcConn *c) {
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        GrpcConn *c = userdata;
        uint8_t buf[GRPC_READ_CHUNK];

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
                for (int i = 0; i < GRPC_READS_PER_WAKEUP; i++) {
                        ssize_t n = recv(fd, buf, sizeof buf, 0);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                break;
                        if (n <= 0) {
                                conn_free(c);
                                return 0;
                        }
                        ssize_t k = nghttp2_session_mem_recv(c->h2, buf, (size_t) n);
                        if (k < 0) {
                                log_struct(LOG_DEBUG, 0, c->app->config->id, NULL,
                                           "gRPC connection closed: %s.", nghttp2_strerror((int) k));
                                (void) conn_flush(c);
                                conn_free(c);
                                return 0;
                        }
                        if ((size_t) n < sizeof buf)
                                break;
                }
        }
        if (conn_flush(c) < 0)
                conn_free(c);
        return 0;
}

static void conn_free(GrpcConn *c) {
        GrpcServer *s;
        if (!c)
                return;
        s = c->server;
        /* Every stream still open ends here: handlers hear it through their cancel hook. */
        while (c->calls) {
                GrpcCall *call = c->calls;
                if (c->h2)
                        (void) nghttp2_session_set_stream_user_data(c->h2, call->stream_id, NULL);
                call_detach(call);
        }
        if (c->prev)
                c->prev->next = c->next;
        else if (s->conns == c)
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_conns--;
        if (c->listener)
                c->listener->n_conns--;
        nghttp2_session_del(c->h2);
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->defer);
        safe_close(c->fd);
        app_unref(c->app);
        free(c->wbuf);
        free(c);
}

static int conn_new(GrpcListener *l, int fd) {
        GrpcServer *s = l->server;
        nghttp2_session_callbacks *cb = NULL;
        nghttp2_option *opt = NULL;
        GrpcConn *c;
        int r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->server = s;
        c->listener = l;
        l->n_conns++;
        c->app = app_ref(l->app);
        c->tcp = l->kind == GRPC_LISTENER_TCP;
        c->fd = fd;
        c->input_max = MAX(GRPC_CONN_INPUT_MIN, 4 * manager_max_body(s->manager));
        c->next = s->conns;
        if (c->next)
                c->next->prev = c;
        s->conns = c;
        s->n_conns++;

        r = -ENOMEM;
        if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
                goto fail;
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
        nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
        if (nghttp2_session_server_new2(&c->h2, cb, c, opt) != 0)
                goto fail;
        nghttp2_settings_entry iv[] = {
                { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, GRPC_MAX_STREAMS },
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, GRPC_STREAM_WINDOW },
                { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, GRPC_MAX_HEADER_LIST },
        };
        if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv)) != 0 ||
            nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, GRPC_CONN_WINDOW) != 0)
                goto fail;
        if (sd_event_add_io(s->event, &c->io, fd, EPOLLIN | EPOLLRDHUP, on_conn_io, c) < 0 ||
            sd_event_add_defer(s->event, &c->defer, on_defer, c) < 0)
                goto fail;
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);
        nghttp2_session_callbacks_del(cb);
        nghttp2_option_del(opt);
        conn_schedule_flush(c); /* our SETTINGS go out first */
        return 0;
fail:
        nghttp2_session_callbacks_del(cb);
        nghttp2_option_del(opt);
        conn_free(c);
        return r;
}

/* ---- listeners ---- */

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        GrpcListener *l = userdata;
        const Settings *st = &l->server->manager->settings;
        for (unsigned i = 0; i < 64; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* The connection stays queued and the socket readable: pause instead of
                                 * spinning, as the HTTP listeners do. */
                                log_struct(LOG_WARNING, errno, l->app->config->id, NULL,
                                           "gRPC accept failed, pausing the listener for 100ms: %m");
                                (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
                                (void) sd_event_source_set_time_relative(l->backoff, 100 * 1000);
                                (void) sd_event_source_set_enabled(l->backoff, SD_EVENT_ONESHOT);
                        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_struct(LOG_WARNING, errno, l->app->config->id, NULL,
                                           "gRPC accept failed: %m");
                        break;
                }
                /* The same bounds as HTTP's (MaxConnections=, MaxConnectionsPerListener=): a local user
                 * on an app's port cannot take every fd. */
                if (l->n_conns >= st->max_connections_per_listener || l->server->n_conns >= st->max_connections) {
                        log_struct(LOG_WARNING, 0, l->app->config->id, NULL,
                                   "gRPC connection refused: connection limit reached.");
                        safe_close(cfd);
                        continue;
                }
                if (l->server->draining || conn_new(l, cfd) < 0)
                        safe_close(cfd);
        }
        return 0;
}

static int on_accept_backoff(sd_event_source *s, uint64_t usec, void *userdata) {
        GrpcListener *l = userdata;
        if (!l->server->draining)
                (void) sd_event_source_set_enabled(l->source, SD_EVENT_ON);
        return 0;
}

int grpc_listener_new(GrpcServer *s, GrpcListenerKind kind, App *app, int fd_take, const char *unlink_path,
                      GrpcListener **ret) {
        GrpcListener *l = calloc(1, sizeof *l);
        if (!l) {
                safe_close(fd_take);
                return -ENOMEM;
        }
        l->server = s;
        l->kind = kind;
        l->app = app_ref(app);
        l->fd = fd_take;
        if (unlink_path && !(l->unlink_path = strdup(unlink_path))) {
                grpc_listener_free(l);
                return -ENOMEM;
        }
        if (sd_event_add_io(s->event, &l->source, l->fd, EPOLLIN, on_accept, l) < 0 ||
            sd_event_add_time_relative(s->event, &l->backoff, CLOCK_MONOTONIC, 100 * 1000, 0, on_accept_backoff,
                                       l) < 0) {
                grpc_listener_free(l);
                return -ENOMEM;
        }
        (void) sd_event_source_set_enabled(l->backoff, SD_EVENT_OFF);
        l->next = s->listeners;
        if (l->next)
                l->next->prev = l;
        s->listeners = l;
        *ret = l;
        return 0;
}

GrpcListener *grpc_listener_free(GrpcListener *l) {
        if (!l)
                return NULL;
        if (l->server) {
                if (l->prev)
                        l->prev->next = l->next;
                else if (l->server->listeners == l)
                        l->server->listeners = l->next;
                if (l->next)
                        l->next->prev = l->prev;
        }
        sd_event_source_disable_unref(l->source);
        sd_event_source_disable_unref(l->backoff);
        /* its connections finish; they no longer count against it */
        for (GrpcConn *c = l->server ? l->server->conns : NULL; c; c = c->next)
                if (c->listener == l)
                        c->listener = NULL;
        safe_close(l->fd);
        if (l->unlink_path)
                (void) unlink(l->unlink_path);
        free(l->unlink_path);
        app_unref(l->app);
        free(l);
        return NULL;
}

/* ---- the server ---- */

GrpcServer *grpc_server_new(Manager *m, sd_event *e) {
        GrpcServer *s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->manager = m;
        s->event = e;
        return s;
}

GrpcServer *grpc_server_free(GrpcServer *s) {
        if (!s)
                return NULL;
        while (s->conns)
                conn_free(s->conns);
        /* Listeners belong to their apps (freed with them); forget the ones left. */
        for (GrpcListener *l = s->listeners; l; l = l->next) {
                l->server = NULL;
                l->backoff = sd_event_source_disable_unref(l->backoff);
                l->source = sd_event_source_disable_unref(l->source);
        }
        free(s);
        return NULL;
}

unsigned grpc_server_calls_in_flight(const GrpcServer *s) {
        return s ? s->calls_in_flight : 0;
}

void grpc_server_start_drain(GrpcServer *s) {
        if (!s || s->draining)
                return;
        s->draining = true;
        for (GrpcListener *l = s->listeners; l; l = l->next)
                (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
        for (GrpcConn *c = s->conns; c; c = c->next) {
                (void) nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                                             nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                                             NULL, 0);
                conn_schedule_flush(c);
        }
}
