/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See server.h.
 *
 * One nghttp2 server session per connection. The connections' fds sit behind
 * one IoMux source (util/iomux.h), as the HTTP server's do: a wake-up with N
 * ready connections is one loop iteration. A connection's turn is one recv()
 * fed to nghttp2_session_mem_recv(), then everything nghttp2 has to say
 * gathered by nghttp2_session_mem_send() into the connection's write buffer
 * and written with one send(). An answer given outside that (the usual case:
 * blocks answer from their own loop iteration) is written from inside the
 * reply call, as HTTP's replies are: one send() and no extra loop iteration.
 * Output that does not end a call (stream messages) and connections to close
 * wait on a list that one server-wide defer source drains once per loop
 * iteration, so a handler sending many messages costs one write.
 *
 * A call is one HTTP/2 stream; it holds one reference for the stream and one
 * for the handler while the handler owes its answer, so either side may end
 * first. Call objects are kept on a free list with their buffers (request
 * headers, request message, output) so a call in the steady state allocates
 * nothing of its own; requests are unpacked into an arena on the stack.
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
#include <assert.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/app.h"
#include "../core/metrics.h"
#include "../core/trace.h"
#include "../manager.h"
#include "../util/base64.h"
#include "../util/iomux.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "../util/grpc-frame.h"
#include "mooring-proto.h"
#include "server.h"
#include "services.h"

#if defined(__has_include)
#  if __has_include(<sanitizer/asan_interface.h>)
#    include <sanitizer/asan_interface.h>
#  endif
#endif
#ifndef ASAN_POISON_MEMORY_REGION
#  define ASAN_POISON_MEMORY_REGION(addr, size) ((void) (addr), (void) (size))
#  define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void) (addr), (void) (size))
#endif

#define GRPC_MAX_STREAMS 1024U
#define GRPC_STREAM_WINDOW (1U << 20)
#define GRPC_CONN_WINDOW (16U << 20)
#define GRPC_MAX_HEADER_LIST (64U * 1024)
#define GRPC_READ_CHUNK (64U * 1024)
#define GRPC_READS_PER_WAKEUP 8
/* Output gathered from nghttp2 before a send(). */
#define GRPC_WRITE_BATCH (64U * 1024)
/* Call objects kept for reuse, and the largest buffers they keep. */
#define GRPC_CALL_POOL 256U
#define GRPC_CALL_KEEP_BUFFER (64U * 1024)
/* nghttp2's small blocks: size classes 64 << 0 .. 64 << (N-1) bytes, so many kept per class. */
#define H2_MEM_CLASSES 6U
#define H2_MEM_KEEP 1024U
/* The stack arena requests are unpacked into; larger ones spill to malloc. */
#define GRPC_UNPACK_ARENA 4096U
/* Input held per connection (partial messages, requests waiting for their end) at most. */
#define GRPC_CONN_INPUT_MIN (64ULL << 20)
/* A stream's queued output past which grpc_call_send() refuses (the client does not read). */
#define GRPC_SEND_QUEUE_MAX (16U << 20)

typedef struct GrpcConn GrpcConn;

/* A request is unpacked into an arena: protobuf-c allocates the message, its strings and arrays
 * piece by piece, and all of it is dropped at once. Pieces that do not fit spill to malloc. */
typedef struct UnpackArena {
        ProtobufCAllocator allocator;
        size_t used;
        bool spilled;
        alignas(max_align_t) uint8_t buf[GRPC_UNPACK_ARENA];
} UnpackArena;

typedef struct H2MemFree {
        struct H2MemFree *next;
} H2MemFree;

/* In front of every block handed to nghttp2. */
typedef union H2MemHeader {
        struct {
                unsigned cls;       /* H2_MEM_CLASSES: not from a class, size says how big */
                size_t size;        /* what nghttp2 asked for */
        };
        max_align_t align;
} H2MemHeader;

struct GrpcServer {
        Manager *manager;           /* back-reference */
        sd_event *event;            /* borrowed from the Manager */
        IoMux *mux;                 /* every connection's fd */
        sd_event_source *flush;     /* defer: writes (or closes) the connections on pending */
        bool flush_armed;
        GrpcConn *pending;          /* connections with output or a close waiting for the flush */
        GrpcConn *conns;
        GrpcListener *listeners;
        unsigned n_conns;
        unsigned calls_in_flight;   /* calls not yet finished */
        bool draining;
        GrpcCall *pool;             /* free call objects, poisoned under ASan */
        unsigned n_pool;
        nghttp2_mem h2_mem;         /* nghttp2's allocator: the free lists below, then malloc */
        H2MemFree *h2_free[H2_MEM_CLASSES];
        unsigned h2_n_free[H2_MEM_CLASSES];
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
        IoWatch *io;
        uint32_t events;
        nghttp2_session *h2;
        bool in_io;                 /* inside mem_recv/mem_send: nghttp2 must not be re-entered */
        bool want_write;            /* we submitted output since the last write (while in_io: it waits
                                     * for the I/O handler's write); conn_write() need not ask nghttp2 */
        bool on_pending;            /* on server->pending */
        bool broken;                /* to be closed by the flush */
        bool goaway;                /* a GOAWAY went out or came in: the session may be over */
        GrpcConn *next_pending;
        uint8_t *wbuf;              /* output gathered from nghttp2, wbuf[woff..wlen) not written yet */
        size_t woff, wlen, wcap;
        uint64_t input_held;        /* across its calls (see GRPC_CONN_INPUT_MIN) */
        uint64_t input_max;
        GrpcCall *calls;
        GrpcCall *last_call;        /* borrowed: stream_call()'s memo, cleared when it detaches */
        const GrpcMethod *last_method; /* the method of the connection's last call */
        unsigned last_method_slot;     /* its slot in method_slots[] (its metrics label) */
        GrpcConn *next, *prev;
};

struct GrpcCall {
        unsigned n_ref;
        GrpcServer *server;         /* borrowed: outlives every call that can still reach it */
        GrpcConn *conn;             /* NULL once the stream is gone */
        App *app;                   /* ref */
        int32_t stream_id;
        const GrpcMethod *method;
        /* The request headers, "name\0value\0" one after the other from hbuf[1] (offset 0
         * means absent). Pointers into it are made once the headers are complete (call_start):
         * before, it may still move. */
        char *hbuf;
        size_t hlen, hcap;
        uint32_t off_path, off_method, off_ctype, off_timeout, off_encoding, off_app_id, off_token;
        const char *path, *http_method, *content_type; /* into hbuf, from call_start on */
        char **md;                  /* request metadata pairs into hbuf, pseudo-headers left out;
                                     * offsets into hbuf until call_start */
        size_t n_md, cap_md;        /* strings in md (without its NULL), slots allocated */
        size_t header_bytes;
        bool started;               /* the request headers were checked and dispatched */
        bool malformed;             /* the request breaks RFC 9113 8.2/8.3: reset at call_start */
        bool regular_seen;          /* a regular field came: no pseudo-header may follow */
        unsigned pseudo_seen;       /* PSEUDO_* */
        int64_t content_length;     /* the request's content-length, -1: none */
        uint64_t data_received;     /* DATA payload bytes, against content_length */
        bool input_ended;           /* END_STREAM from the client */
        bool handler_owes;          /* the handler holds a reference until it answers */
        bool finished;              /* the status is decided; no more output */
        bool headers_sent;
        bool deferred;              /* the data provider waits for output */
        bool counted;               /* in calls_in_flight */
        GrpcDecoder dec;
        uint64_t held;              /* input this call holds (accounted in conn->input_held) */
        bool have_req, extra_req;
        UnpackArena *arena;         /* unary: where the request is unpacked; kept with the pooled call */
        ProtobufCMessage *req_msg;  /* unary: the request, unpacked as it arrived, until the call is freed */
        size_t req_len;             /* its encoded length: input held until the handler runs */
        bool drafting;              /* out holds a unary answer's draft (see grpc_call_draft_append) */
        uint8_t *out;               /* framed messages not yet taken by nghttp2 */
        size_t out_len, out_off, out_cap;
        char *hout;                 /* response headers the handler added, "name\0value\0" each */
        size_t hout_len, hout_cap;
        char **trailers_out;
        GrpcCode status;
        char *status_message;       /* percent-encoded, or NULL */
        char *details_bin;          /* base64 google.rpc.Status, or NULL */
        sd_event_source *deadline;
        uint64_t deadline_usec;     /* CLOCK_MONOTONIC, 0: none */
        GrpcCallCancelFn on_cancel;
        void *cancel_userdata;
        void *userdata;
        unsigned metric_method;     /* the method's label (METRICS_GRPC_*) */
        uint64_t metric_start;      /* CLOCK_MONOTONIC µs the call started; 0: not counted */
        bool traced;                /* span is running (an exporter is set up) */
        Span span;                  /* the inbound call's SERVER span, child of the caller's traceparent */
        GrpcCall *next, *prev;
        /* the handler's scratch space (grpc_call_scratch), as long as the call */
        alignas(max_align_t) uint8_t scratch[GRPC_CALL_SCRATCH];
};

static void conn_flush_later(GrpcConn *c);
static void conn_kick(GrpcConn *c);
static void conn_free(GrpcConn *c);
static void call_finish(GrpcCall *c, GrpcCode code, const char *message, const char *details_bin);

static void *mfree(void *p) {
        free(p);
        return NULL;
}

/* ---- nghttp2's memory ----
 *
 * nghttp2 allocates and frees a handful of small blocks per stream (the stream, its outbound
 * items, copies of header arrays, header buffers). Through malloc that was a tenth of a call's
 * instructions; kept on free lists by size class (single-threaded, like everything here) it is a
 * pointer swap. */

/* The class of a block, from the highest bit of its size in 64-byte units (no loop: this runs for
 * every block nghttp2 asks for). */
static unsigned h2_mem_class(size_t size) {
        if (size > ((size_t) 64 << (H2_MEM_CLASSES - 1)) - sizeof(H2MemHeader))
                return H2_MEM_CLASSES;
        size_t units = (size + sizeof(H2MemHeader) - 1) >> 6;
        return units == 0 ? 0 : (unsigned) (sizeof(unsigned long long) * 8 - __builtin_clzll(units));
}

static void *h2_malloc(size_t size, void *userdata) {
        GrpcServer *s = userdata;
        unsigned k = h2_mem_class(size);
        H2MemHeader *h;

        if (k < H2_MEM_CLASSES && s->h2_free[k]) {
                h = (H2MemHeader *) s->h2_free[k];
                ASAN_UNPOISON_MEMORY_REGION(h, (size_t) 64 << k);
                s->h2_free[k] = ((H2MemFree *) h)->next;
                s->h2_n_free[k]--;
        } else {
                if (size > SIZE_MAX - sizeof *h)
                        return NULL;
                h = malloc(k < H2_MEM_CLASSES ? (size_t) 64 << k : sizeof *h + size);
                if (!h)
                        return NULL;
        }
        h->cls = k;
        h->size = size;
        return h + 1;
}

static void h2_free(void *p, void *userdata) {
        GrpcServer *s = userdata;
        if (!p)
                return;
        H2MemHeader *h = (H2MemHeader *) p - 1;
        unsigned k = h->cls;
        if (k >= H2_MEM_CLASSES || s->h2_n_free[k] >= H2_MEM_KEEP) {
                free(h);
                return;
        }
        ((H2MemFree *) h)->next = s->h2_free[k];
        s->h2_free[k] = (H2MemFree *) h;
        s->h2_n_free[k]++;
        ASAN_POISON_MEMORY_REGION(h, (size_t) 64 << k);
}

static void *h2_calloc(size_t n, size_t size, void *userdata) {
        if (size > 0 && n > SIZE_MAX / size)
                return NULL;
        void *p = h2_malloc(n * size, userdata);
        if (p)
                memset(p, 0, n * size);
        return p;
}

static void *h2_realloc(void *p, size_t size, void *userdata) {
        if (!p)
                return h2_malloc(size, userdata);
        H2MemHeader *h = (H2MemHeader *) p - 1;
        if (h->cls < H2_MEM_CLASSES && size + sizeof *h <= (size_t) 64 << h->cls) {
                h->size = size;
                return p;
        }
        void *n = h2_malloc(size, userdata);
        if (!n)
                return NULL;
        memcpy(n, p, MIN(h->size, size));
        h2_free(p, userdata);
        return n;
}

static void h2_mem_done(GrpcServer *s) {
        for (unsigned k = 0; k < H2_MEM_CLASSES; k++)
                while (s->h2_free[k]) {
                        H2MemFree *f = s->h2_free[k];
                        ASAN_UNPOISON_MEMORY_REGION(f, (size_t) 64 << k);
                        s->h2_free[k] = f->next;
                        free(f);
                }
}

/* ---- calls ---- */

static GrpcCall *call_ref(GrpcCall *c) {
        c->n_ref++;
        return c;
}

/* The call is over (its status decided, or its stream gone): out of the in-flight count, and into
 * the metrics (dapr_grpc_io_server_*) and the trace with its status. */
static void call_uncount(GrpcCall *c) {
        if (!c->counted)
                return;
        c->counted = false;
        c->server->calls_in_flight--;
        uint64_t now = c->metric_start || c->traced ? metrics_now_usec() : 0;
        if (c->metric_start)
                metrics_grpc_server(c->app->metrics, c->metric_method, c->status, now - c->metric_start);
        if (c->traced) {
                c->traced = false;
                trace_span_end_at(&c->span, now, 0, c->status != GRPC_STATUS_OK);
        }
}

static void call_free_buffers(GrpcCall *c) {
        free(c->arena);
        free(c->hbuf);
        free(c->md);
        free(c->out);
        free(c->hout);
}

/* A fresh call: from the pool, with the buffers it kept, or new. */
static GrpcCall *call_alloc(GrpcServer *s) {
        GrpcCall *c = s->pool;
        if (!c)
                return calloc(1, sizeof *c);
        ASAN_UNPOISON_MEMORY_REGION(c, sizeof *c);
        s->pool = c->next;
        s->n_pool--;
        char *hbuf = c->hbuf, **md = c->md, *hout = c->hout;
        uint8_t *out = c->out;
        size_t hcap = c->hcap, cap_md = c->cap_md, out_cap = c->out_cap, hout_cap = c->hout_cap;
        UnpackArena *arena = c->arena;
        /* everything but the scratch space, which grpc_call_scratch() clears when it is asked for */
        memset(c, 0, offsetof(GrpcCall, scratch));
        c->hbuf = hbuf, c->hcap = hcap, c->md = md, c->cap_md = cap_md;
        c->out = out, c->out_cap = out_cap, c->hout = hout, c->hout_cap = hout_cap, c->arena = arena;
        return c;
}

static void call_unref(GrpcCall *c) {
        if (!c || --c->n_ref > 0)
                return;
        GrpcServer *s = c->server;
        call_uncount(c);
        if (c->req_msg && c->arena->spilled)
                /* only pieces that spilled need freeing; the walk is skipped when there are none */
                protobuf_c_message_free_unpacked(c->req_msg, &c->arena->allocator);
        sd_event_source_disable_unref(c->deadline);
        grpc_decoder_done(&c->dec);
        app_unref(c->app);
        strv_free(c->trailers_out);
        free(c->status_message);
        free(c->details_bin);
        if (s->n_pool >= GRPC_CALL_POOL) {
                call_free_buffers(c);
                free(c);
                return;
        }
        /* Big buffers are not kept: one large call must not pin its memory for good. */
        if (c->hcap > GRPC_CALL_KEEP_BUFFER) {
                c->hbuf = mfree(c->hbuf);
                c->hcap = 0;
        }
        if (c->hout_cap > GRPC_CALL_KEEP_BUFFER) {
                c->hout = mfree(c->hout);
                c->hout_cap = 0;
        }
        if (c->out_cap > GRPC_CALL_KEEP_BUFFER) {
                c->out = mfree(c->out);
                c->out_cap = 0;
        }
        if (c->cap_md > 64) {
                c->md = mfree(c->md);
                c->cap_md = 0;
        }
        c->next = s->pool;
        s->pool = c;
        s->n_pool++;
        ASAN_POISON_MEMORY_REGION(c, sizeof *c);
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
        if (conn->last_call == c)
                conn->last_call = NULL;
        c->conn = NULL;
        c->deadline = sd_event_source_disable_unref(c->deadline);
        if (!c->finished) {
                c->finished = true;
                c->status = GRPC_STATUS_CANCELLED; /* the stream went before an answer */
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

/* Room for n more bytes at c->out + c->out_len. */
static int out_reserve(GrpcCall *c, size_t n) {
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
        return 0;
}

/* nghttp2 copies these (names and values that may change before the frame is out) */
static nghttp2_nv make_nv(const char *name, const char *value) {
        return (nghttp2_nv){ (uint8_t *) name, (uint8_t *) value, strlen(name), strlen(value),
                             NGHTTP2_NV_FLAG_NONE };
}

/* Names and values the call owns and keeps unchanged until it is freed, which is after its stream
 * closed (the response headers, status message, details, trailers): nghttp2 need not copy them. */
static nghttp2_nv call_nv(const char *name, const char *value) {
        return (nghttp2_nv){ (uint8_t *) name, (uint8_t *) value, strlen(name), strlen(value),
                             NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE };
}

/* Constant names and values: nghttp2 takes them as they are, without a copy. */
#define STATIC_NV(n, v)                                                                                          \
        { (uint8_t *) (n), (uint8_t *) (v), sizeof(n) - 1, sizeof(v) - 1,                                       \
          NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE }

/* What grpc-go (so daprd) sends: no grpc-accept-encoding (optional in gRPC's HTTP/2 mapping; the
 * encoding of a compressed request is answered UNIMPLEMENTED), which HPACK would encode per call. */
static const nghttp2_nv response_headers[] = {
        STATIC_NV(":status", "200"),
        STATIC_NV("content-type", "application/grpc"),
};

/* grpc-status, by code: the whole trailer field constant, so it is never formatted or copied
 * (and HPACK indexes it: a repeated status costs one byte). */
static const nghttp2_nv status_nv[] = {
        STATIC_NV("grpc-status", "0"),  STATIC_NV("grpc-status", "1"),  STATIC_NV("grpc-status", "2"),
        STATIC_NV("grpc-status", "3"),  STATIC_NV("grpc-status", "4"),  STATIC_NV("grpc-status", "5"),
        STATIC_NV("grpc-status", "6"),  STATIC_NV("grpc-status", "7"),  STATIC_NV("grpc-status", "8"),
        STATIC_NV("grpc-status", "9"),  STATIC_NV("grpc-status", "10"), STATIC_NV("grpc-status", "11"),
        STATIC_NV("grpc-status", "12"), STATIC_NV("grpc-status", "13"), STATIC_NV("grpc-status", "14"),
        STATIC_NV("grpc-status", "15"), STATIC_NV("grpc-status", "16"),
};

static nghttp2_nv status_field(GrpcCode code) {
        return (unsigned) code < ELEMENTSOF(status_nv) ? status_nv[code] : status_nv[GRPC_STATUS_UNKNOWN];
}

/* The status fields (grpc-status, grpc-message, details, the handler's trailers) into nv. */
static size_t status_fields(const GrpcCall *c, nghttp2_nv *nv, size_t n, size_t max) {
        nv[n++] = status_field(c->status);
        if (c->status_message && *c->status_message)
                nv[n++] = call_nv("grpc-message", c->status_message);
        if (c->details_bin)
                nv[n++] = call_nv("grpc-status-details-bin", c->details_bin);
        for (char **p = c->trailers_out; p && p[0] && p[1] && n < max; p += 2)
                nv[n++] = call_nv(p[0], p[1]);
        return n;
}

static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data);

/* Headers (and, for a trailers-only answer, everything) go out with the first output. */
static int call_send_headers(GrpcCall *c, bool trailers_only) {
        nghttp2_nv nv[64];
        size_t n = ELEMENTSOF(response_headers);

        memcpy(nv, response_headers, sizeof response_headers);
        for (size_t o = 0; o < c->hout_len && n < ELEMENTSOF(nv) - 8;) {
                const char *name = c->hout + o, *value = name + strlen(name) + 1;
                nv[n] = call_nv(name, value);
                o = (size_t) (value - c->hout) + nv[n].valuelen + 1;
                n++;
        }
        if (trailers_only) {
                n = status_fields(c, nv, n, ELEMENTSOF(nv));
                c->headers_sent = true;
                return nghttp2_submit_response(c->conn->h2, c->stream_id, nv, n, NULL) < 0 ? -EIO : 0;
        }
        nghttp2_data_provider prd = { .source.ptr = c, .read_callback = data_read };
        c->headers_sent = true;
        return nghttp2_submit_response(c->conn->h2, c->stream_id, nv, n, &prd) < 0 ? -EIO : 0;
}

static void call_submit_trailers(GrpcCall *c) {
        nghttp2_nv nv[24];
        size_t n = status_fields(c, nv, 0, ELEMENTSOF(nv));
        (void) nghttp2_submit_trailer(c->conn->h2, c->stream_id, nv, n);
}

/* The bytes of a DATA frame are not copied here but by data_send(), straight from the call's
 * output into the connection's write buffer (NGHTTP2_DATA_FLAG_NO_COPY): nghttp2 calls it within
 * the same nghttp2_session_mem_send(), before anything else can touch c->out. */
static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data) {
        GrpcCall *c = source->ptr;
        size_t left = c->out_len - c->out_off, n = MIN(length, left);

        if (n == left) {
                if (!c->finished) {
                        if (n == 0) {
                                c->deferred = true;
                                return NGHTTP2_ERR_DEFERRED;
                        }
                } else {
                        /* Everything is out with this frame: the status follows as trailers. */
                        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
                        call_submit_trailers(c);
                }
        }
        if (n > 0)
                *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
        return (ssize_t) n;
}

/* New output for the stream: nghttp2 is told; the bytes go out with the connection's next write. */
static void call_resume(GrpcCall *c) {
        if (c->conn && c->deferred) {
                c->deferred = false;
                (void) nghttp2_session_resume_data(c->conn->h2, c->stream_id);
        }
}

/* Decides the status and sends what is left. Idempotent: the first decision wins. */
static void call_finish(GrpcCall *c, GrpcCode code, const char *message, const char *details_bin) {
        if (c->finished || !c->conn)
                return;
        c->finished = true;
        c->status = code;
        call_uncount(c);
        c->deadline = sd_event_source_disable_unref(c->deadline);
        if (c->drafting) {
                /* a draft never answered: dropped (the answer is trailers only) */
                c->drafting = false;
                c->out_off = c->out_len = 0;
        }
        c->status = code;
        c->status_message = message ? grpc_percent_encode(message) : NULL;
        c->details_bin = details_bin ? strdup(details_bin) : NULL;
        if (!c->headers_sent) {
                if (call_send_headers(c, true) < 0)
                        (void) nghttp2_submit_rst_stream(c->conn->h2, NGHTTP2_FLAG_NONE, c->stream_id,
                                                         NGHTTP2_INTERNAL_ERROR);
        }
        call_resume(c);
        /* Written by whoever called: the I/O handler after its read, the reply functions once the
         * handler's reference is dropped (conn_kick), the deadline's handler. */
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
        for (size_t i = 0; i + 1 < c->n_md; i += 2)
                if (streq(c->md[i], key))
                        return c->md[i + 1];
        return NULL;
}

char *const *grpc_call_metadata_pairs(const GrpcCall *c) {
        static char *const empty[] = { NULL };
        return c->n_md > 0 ? c->md : empty;
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
        size_t ln = strlen(name), lv = strlen(value), need = c->hout_len + ln + lv + 2;
        if (need > c->hout_cap) {
                size_t cap = MAX(MAX(c->hout_cap * 2, need), (size_t) 256);
                char *b = realloc(c->hout, cap);
                if (!b)
                        return -ENOMEM;
                c->hout = b;
                c->hout_cap = cap;
        }
        memcpy(c->hout + c->hout_len, name, ln + 1);
        memcpy(c->hout + c->hout_len + ln + 1, value, lv + 1);
        c->hout_len = need;
        return 0;
}

void grpc_call_clear_headers(GrpcCall *c) {
        if (!c->headers_sent)
                c->hout_len = 0;
}

int grpc_call_add_trailer(GrpcCall *c, const char *name, const char *value) {
        if (c->finished)
                return -EBUSY;
        if (!header_value_ok(value))
                return -EINVAL;
        return strv_extend(&c->trailers_out, name) < 0 || strv_extend(&c->trailers_out, value) < 0 ? -ENOMEM : 0;
}

/* Queues one message, given encoded (buf) or to encode (msg, packed straight into the output
 * buffer), for nghttp2; it is written by whoever writes the connection next. */
static int call_queue(GrpcCall *c, const ProtobufCMessage *msg, const void *buf, size_t len) {
        int r;

        if (c->finished || !c->conn)
                return -EPIPE;
        if (c->drafting)
                return -EBUSY;
        if (msg)
                len = protobuf_c_message_get_packed_size(msg);
        if (len > UINT32_MAX)
                return -EMSGSIZE;
        if (c->out_len - c->out_off > GRPC_SEND_QUEUE_MAX)
                return -ENOBUFS;
        r = out_reserve(c, GRPC_PREFIX_SIZE + len);
        if (r < 0)
                return r;
        grpc_frame_prefix(c->out + c->out_len, (uint32_t) len);
        if (msg)
                protobuf_c_message_pack(msg, c->out + c->out_len + GRPC_PREFIX_SIZE);
        else if (len > 0 && buf)
                memcpy(c->out + c->out_len + GRPC_PREFIX_SIZE, buf, len);
        c->out_len += GRPC_PREFIX_SIZE + len;
        if (!c->headers_sent && call_send_headers(c, false) < 0)
                return -EIO;
        call_resume(c);
        return 0;
}

int grpc_call_send_raw(GrpcCall *c, const void *buf, size_t len) {
        int r = call_queue(c, NULL, buf, len);
        if (r >= 0)
                conn_flush_later(c->conn);
        return r;
}

int grpc_call_send(GrpcCall *c, const ProtobufCMessage *msg) {
        int r = call_queue(c, msg, NULL, 0);
        if (r >= 0)
                conn_flush_later(c->conn);
        return r;
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
                r = call_queue(c, msg, NULL, 0);
                if (r < 0)
                        call_finish(c, r == -EMSGSIZE ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL,
                                    "mooringd could not send the answer", NULL);
        }
        call_finish(c, GRPC_STATUS_OK, NULL, NULL);
        handler_answered(c);
        /* The answer goes out now, from here, as HTTP's replies do: no loop iteration for it. */
        conn_kick(c->conn);
        call_unref(c);
        return r;
}

void *grpc_call_scratch(GrpcCall *c, size_t size) {
        assert(size <= sizeof c->scratch);
        memset(c->scratch, 0, size);
        return c->scratch;
}

/* The draft sits in c->out after room for the message's prefix and head. */
#define DRAFT_ROOM (GRPC_PREFIX_SIZE + GRPC_DRAFT_HEAD_MAX)

static int draft_begin(GrpcCall *c) {
        if (c->drafting)
                return 0;
        /* a unary answer's, before anything was queued */
        if (c->finished || !c->conn || c->headers_sent || c->out_len != c->out_off)
                return -EBUSY;
        c->out_off = c->out_len = 0;
        int r = out_reserve(c, DRAFT_ROOM);
        if (r < 0)
                return r;
        c->out_len = DRAFT_ROOM;
        c->drafting = true;
        return 0;
}

int grpc_call_draft_append(GrpcCall *c, const void *buf, size_t len) {
        int r = draft_begin(c);
        if (r < 0)
                return r;
        if (len == 0)
                return 0;
        if (c->out_len - DRAFT_ROOM + len > UINT32_MAX)
                return -EMSGSIZE;
        r = out_reserve(c, len);
        if (r < 0)
                return r;
        memcpy(c->out + c->out_len, buf, len);
        c->out_len += len;
        return 0;
}

size_t grpc_call_draft_len(const GrpcCall *c) {
        return c->drafting ? c->out_len - DRAFT_ROOM : 0;
}

int grpc_call_reply_draft(GrpcCall *c, const void *head, size_t head_len, const void *tail, size_t tail_len) {
        int r;

        assert(head_len <= GRPC_DRAFT_HEAD_MAX);
        call_ref(c);
        r = draft_begin(c);
        if (r >= 0) {
                size_t total = head_len + (c->out_len - DRAFT_ROOM) + tail_len;
                r = total > UINT32_MAX ? -EMSGSIZE : out_reserve(c, tail_len);
                if (r >= 0) {
                        /* prefix and head end where the draft begins; the tail follows it */
                        size_t start = DRAFT_ROOM - head_len - GRPC_PREFIX_SIZE;
                        grpc_frame_prefix(c->out + start, (uint32_t) total);
                        if (head_len > 0)
                                memcpy(c->out + start + GRPC_PREFIX_SIZE, head, head_len);
                        if (tail_len > 0)
                                memcpy(c->out + c->out_len, tail, tail_len);
                        c->out_off = start;
                        c->out_len += tail_len;
                        c->drafting = false;
                        if (call_send_headers(c, false) < 0)
                                r = -EIO;
                }
        }
        if (r < 0) {
                c->out_off = c->out_len = 0;
                c->drafting = false;
                call_finish(c, r == -EMSGSIZE ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL,
                            "mooringd could not send the answer", NULL);
        }
        call_finish(c, GRPC_STATUS_OK, NULL, NULL);
        handler_answered(c);
        conn_kick(c->conn);
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
        conn_kick(c->conn);
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

/* ---- request header checks (RFC 9113 8.2, 8.3) ----
 *
 * nghttp2's HTTP messaging checks did these (and more a gRPC server has no use for) at about a
 * tenth of a call's instructions, much of it on fields read again right after. Here they ride on
 * the one pass on_header() makes anyway, with nghttp2's outcomes: a malformed request (upper case
 * in a name, a connection-specific field, te other than "trailers", a pseudo-header unknown,
 * repeated, late or with a bad value, a missing one, a content-length the data does not match)
 * has its stream reset with PROTOCOL_ERROR and never runs; a regular field whose name or value is
 * otherwise invalid is dropped. */

enum {
        PSEUDO_METHOD = 1 << 0,
        PSEUDO_SCHEME = 1 << 1,
        PSEUDO_PATH = 1 << 2,
        PSEUDO_AUTHORITY = 1 << 3,
};

/* on_header()'s verdict on a malformed request: the rest of its fields are skipped, and
 * call_start() resets the stream. */
static int call_malformed(GrpcCall *c) {
        c->malformed = true;
        return 0;
}

/* A request the client got wrong at the HTTP/2 level: its stream is reset with PROTOCOL_ERROR;
 * a handler that runs already hears it through its cancel hook. */
static void call_reset(GrpcCall *c) {
        if (!c->conn)
                return;
        (void) nghttp2_submit_rst_stream(c->conn->h2, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_PROTOCOL_ERROR);
        if (!c->finished) {
                c->finished = true;
                c->status = GRPC_STATUS_INTERNAL; /* reset with PROTOCOL_ERROR: gRPC's reading of it */
                call_uncount(c);
                c->deadline = sd_event_source_disable_unref(c->deadline);
        }
        if (c->handler_owes && c->on_cancel) {
                GrpcCallCancelFn fn = c->on_cancel;
                c->on_cancel = NULL;
                fn(c, c->cancel_userdata);
        }
}

/* ---- dispatch ---- */

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        GrpcCall *c = userdata;
        call_ref(c);
        /* grpc-go's words, which clients show as they are */
        call_abort(c, GRPC_STATUS_DEADLINE_EXCEEDED, "context deadline exceeded");
        conn_kick(c->conn);
        call_unref(c);
        return 0;
}

/* Paths to methods: an open-addressing table over every service's, made on first use (a scan
 * of the tables compared about a hundred strings per call). */
#define METHOD_SLOTS 512U

static uint32_t path_hash(const char *p) {
        uint32_t h = 2166136261U; /* FNV-1a */
        for (; *p; p++)
                h = (h ^ (uint8_t) *p) * 16777619U;
        return h;
}

static const GrpcMethod *method_slots[METHOD_SLOTS];

/* The method named path and its slot (a stable index: the metrics label), or NULL. */
static const GrpcMethod *method_find(const char *path, unsigned *ret_slot) {
        static bool built = false;
        uint32_t i;

        if (!built) {
                for (const GrpcService *const *s = grpc_services; *s; s++)
                        for (size_t k = 0; k < (*s)->n_methods; k++) {
                                const GrpcMethod *m = &(*s)->methods[k];
                                for (i = path_hash(m->path) & (METHOD_SLOTS - 1); method_slots[i];
                                     i = (i + 1) & (METHOD_SLOTS - 1))
                                        if (streq(method_slots[i]->path, m->path))
                                                break; /* the first table naming it wins, as the scan did */
                                if (!method_slots[i])
                                        method_slots[i] = m;
                        }
                built = true;
        }
        for (i = path_hash(path) & (METHOD_SLOTS - 1); method_slots[i]; i = (i + 1) & (METHOD_SLOTS - 1))
                if (streq(method_slots[i]->path, path)) {
                        *ret_slot = i;
                        return method_slots[i];
                }
        return NULL;
}

/* The metrics label of a slot (metrics_set_grpc_method_labels()). */
static const char *method_label(unsigned slot) {
        return slot < METHOD_SLOTS && method_slots[slot] ? method_slots[slot]->path : NULL;
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

/* Stream messages are unpacked into an arena on the caller's stack and dropped after the handler
 * ran; a unary request into the call's own arena, where it stays until the call is freed, so a
 * handler answering later borrows from it instead of copying (the invoke body). */

static void *arena_alloc(void *userdata, size_t size) {
        UnpackArena *a = userdata;
        size_t n = (size + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
        if (n >= size && n <= sizeof a->buf - a->used) {
                void *p = a->buf + a->used;
                a->used += n;
                return p;
        }
        a->spilled = true;
        return malloc(size);
}

static void arena_free(void *userdata, void *p) {
        UnpackArena *a = userdata;
        uintptr_t u = (uintptr_t) p, b = (uintptr_t) a->buf;
        if (u < b || u >= b + sizeof a->buf)
                free(p);
}

static void arena_init(UnpackArena *a) {
        a->allocator = (ProtobufCAllocator){ .alloc = arena_alloc, .free = arena_free, .allocator_data = a };
        a->used = 0;
        a->spilled = false;
}

static void arena_free_message(UnpackArena *a, ProtobufCMessage *m) {
        /* Only pieces that spilled need freeing; the walk is skipped when there are none. */
        if (m && a->spilled)
                protobuf_c_message_free_unpacked(m, &a->allocator);
}

static ProtobufCMessage *unpack(GrpcCall *c, UnpackArena *a, const uint8_t *msg, size_t len) {
        arena_init(a);
        ProtobufCMessage *m = protobuf_c_message_unpack(c->method->request, &a->allocator, len, msg);
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
        m = c->req_msg;
        c->req_len = 0;
        call_hold(c, grpc_decoder_buffered(&c->dec));
        c->handler_owes = true;
        call_ref(c);
        trace_set_current(c->traced ? &c->span.ctx : NULL); /* blocks' operations become its children */
        r = c->method->unary(c, m);
        trace_set_current(NULL);
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
                /* Unpacked now, from where the decoder has it (no copy kept of the encoded message), into
                 * the call's arena, where it stays until the call is freed (call_unref): the handler,
                 * run once the input ends, borrows from it until it answers. */
                if (!c->arena && !(c->arena = malloc(sizeof *c->arena)))
                        return -ENOMEM;
                ProtobufCMessage *m = unpack(c, c->arena, len > 0 ? msg : (const uint8_t *) "", len);
                if (!m)
                        return -EBADMSG; /* answered by unpack() */
                c->req_msg = m;
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
        UnpackArena arena;
        ProtobufCMessage *m = unpack(c, &arena, msg, len);
        if (!m)
                return -EBADMSG;
        call_ref(c);
        int r = c->method->message(c, m);
        arena_free_message(&arena, m);
        if (r < 0)
                handler_failed(c, r);
        call_unref(c);
        return 0;
}

static const char *hfield(const GrpcCall *c, uint32_t off) {
        return off > 0 ? c->hbuf + off : NULL;
}

/* The headers are complete and hbuf stays as it is: the pointers into it. */
static void call_index_headers(GrpcCall *c) {
        for (size_t i = 0; i < c->n_md; i++)
                c->md[i] = c->hbuf + (uintptr_t) c->md[i];
        if (c->md)
                c->md[c->n_md] = NULL;
        c->path = hfield(c, c->off_path);
        c->http_method = hfield(c, c->off_method);
        c->content_type = hfield(c, c->off_ctype);
}

/* The request's headers are complete: check them and start the call. */
static void call_start(GrpcCall *c) {
        GrpcConn *conn = c->conn;
        const char *timeout, *enc, *target;
        char msg[256];
        uint64_t usec;
        int r;

        c->started = true;
        c->counted = true;
        c->server->calls_in_flight++;
        c->metric_method = METRICS_GRPC_UNKNOWN;
        c->metric_start = app_metrics_enabled(c->app->metrics) ? metrics_now_usec() : 0;
        call_index_headers(c);
        timeout = hfield(c, c->off_timeout);
        enc = hfield(c, c->off_encoding);
        target = hfield(c, c->off_app_id);
        if (c->malformed ||
            (c->pseudo_seen & (PSEUDO_METHOD | PSEUDO_SCHEME | PSEUDO_PATH)) !=
                    (PSEUDO_METHOD | PSEUDO_SCHEME | PSEUDO_PATH) ||
            !streq(c->http_method, "POST") || c->path[0] != '/') {
                call_reset(c);
                return;
        }
        if (!c->content_type || strncmp(c->content_type, "application/grpc", sizeof "application/grpc" - 1) != 0) {
                /* Not gRPC: gRPC's HTTP mapping says 415 with the status as best effort. */
                nghttp2_nv nv[] = { make_nv(":status", "415"), make_nv("grpc-status", "3"),
                                    make_nv("grpc-message", "invalid gRPC request content-type") };
                (void) nghttp2_submit_response(conn->h2, c->stream_id, nv, ELEMENTSOF(nv), NULL);
                c->headers_sent = c->finished = true;
                c->status = GRPC_STATUS_INVALID_ARGUMENT;
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
            !app_token_matches(c->app, hfield(c, c->off_token))) {
                call_finish(c, GRPC_STATUS_UNAUTHENTICATED, "authentication error: api token mismatch", NULL);
                return;
        }
        /* A connection mostly calls one method over and over: the last one found is tried first. */
        unsigned slot;
        if (conn->last_method && streq(conn->last_method->path, c->path)) {
                c->method = conn->last_method;
                c->metric_method = conn->last_method_slot;
        } else if ((c->method = method_find(c->path, &slot))) {
                conn->last_method = c->method;
                c->metric_method = conn->last_method_slot = slot;
        }
        /* Not ours, with dapr-app-id: a call for that app's own gRPC service (Dapr's proxying). */
        if (!c->method && target && *target) {
                c->method = &grpc_proxy_method;
                c->metric_method = METRICS_GRPC_PROXY;
        }
        if (!c->method) {
                snprintf(msg, sizeof msg, "unknown method %.200s: mooringd does not serve it", c->path);
                call_finish(c, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
                return;
        }
        if (trace_enabled()) {
                /* the inbound call's span, named by the method (a proxied call by its own name is not
                 * bounded: "proxy") */
                TraceContext parent;
                const char *tp = grpc_call_metadata(c, "traceparent");
                bool has_parent = tp && traceparent_parse(tp, &parent) >= 0;
                trace_span_begin_at(&c->span, c->metric_start ?: metrics_now_usec(), has_parent ? &parent : NULL,
                                    c->app->trace_rate, SPAN_SERVER,
                                    c->method == &grpc_proxy_method ? "proxy" : c->method->path, c->app->config->id);
                c->traced = true;
        }
        if (c->method->kind != GRPC_METHOD_UNARY) {
                c->handler_owes = true;
                call_ref(c);
                trace_set_current(c->traced ? &c->span.ctx : NULL);
                r = c->method->open(c);
                trace_set_current(NULL);
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

/* The call of a stream. The last one found is remembered: nghttp2 calls back many times in a row
 * for one stream (every header field), and its lookup is a hash map's. */
static GrpcCall *stream_call(GrpcConn *conn, int32_t stream_id) {
        if (conn->last_call && conn->last_call->stream_id == stream_id)
                return conn->last_call;
        GrpcCall *c = nghttp2_session_get_stream_user_data(conn->h2, stream_id);
        conn->last_call = c;
        return c;
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
        c = call_alloc(conn->server);
        if (!c)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        c->n_ref = 1; /* the stream's */
        c->hlen = 1; /* offset 0 is "absent" */
        c->content_length = -1;
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
        conn->last_call = c; /* its header fields follow: stream_call() finds it without a lookup */
        return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) {
        GrpcConn *conn = user_data;
        GrpcCall *c = stream_call(conn, frame->hd.stream_id);
        uint32_t *slot = NULL;

        if (!c || frame->headers.cat != NGHTTP2_HCAT_REQUEST || c->started)
                return 0; /* the client's trailers carry nothing we use */
        c->header_bytes += namelen + valuelen + 32;
        if (c->header_bytes > GRPC_MAX_HEADER_LIST) {
                /* Past what SETTINGS_MAX_HEADER_LIST_SIZE announced: a peer that ignores it is cut off. */
                (void) nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
                return 0;
        }
        if (c->malformed)
                return 0; /* reset once the headers are complete (call_start) */
        /* RFC 9113 8.2 and 8.3, checked here rather than by nghttp2's HTTP messaging (see
         * conn_new), and remembering on the way the fields mooringd reads itself. */
        if (namelen > 0 && name[0] == ':') {
                unsigned bit = 0;
                switch (namelen) {
                case 5:
                        if (memcmp(name, ":path", 5) == 0)
                                bit = PSEUDO_PATH, slot = &c->off_path;
                        break;
                case 7:
                        if (memcmp(name, ":method", 7) == 0)
                                bit = PSEUDO_METHOD, slot = &c->off_method;
                        else if (memcmp(name, ":scheme", 7) == 0)
                                bit = PSEUDO_SCHEME;
                        break;
                case 10:
                        if (memcmp(name, ":authority", 10) == 0)
                                bit = PSEUDO_AUTHORITY;
                        break;
                }
                /* unknown, repeated, after a regular field, or with a value that cannot be one */
                if (!bit || (c->pseudo_seen & bit) || c->regular_seen ||
                    !grpc_pseudo_value_ok(value, valuelen, bit != PSEUDO_AUTHORITY))
                        return call_malformed(c);
                c->pseudo_seen |= bit;
                if (!slot)
                        return 0; /* :scheme and :authority: checked, not used */
        } else {
                c->regular_seen = true;
                GrpcFieldName k = grpc_field_name_check(name, namelen);
                if (k == GRPC_FIELD_NAME_UPPER)
                        return call_malformed(c);
                /* Other invalid fields are dropped, as nghttp2 drops them. */
                if (k == GRPC_FIELD_NAME_INVALID || !grpc_field_value_ok(value, valuelen))
                        return 0;
                switch (namelen) {
                case 2:
                        /* "trailers" in any case: setting bit 5 lowers letters and makes no other byte one */
                        if (memcmp(name, "te", 2) == 0 &&
                            !(valuelen == 8 &&
                              (grpc_load64(value) | GRPC_ONES * 0x20) == grpc_load64((const uint8_t *) "trailers")))
                                return call_malformed(c);
                        break;
                case 7:
                        if (memcmp(name, "upgrade", 7) == 0)
                                return call_malformed(c);
                        break;
                case 10:
                        if (memcmp(name, "connection", 10) == 0 || memcmp(name, "keep-alive", 10) == 0)
                                return call_malformed(c);
                        break;
                case 11:
                        if (memcmp(name, "dapr-app-id", 11) == 0)
                                slot = &c->off_app_id;
                        break;
                case 12:
                        if (memcmp(name, "content-type", 12) == 0)
                                slot = &c->off_ctype;
                        else if (memcmp(name, "grpc-timeout", 12) == 0)
                                slot = &c->off_timeout;
                        break;
                case 13:
                        if (memcmp(name, "grpc-encoding", 13) == 0)
                                slot = &c->off_encoding;
                        break;
                case 14:
                        if (memcmp(name, "dapr-api-token", 14) == 0)
                                slot = &c->off_token;
                        else if (memcmp(name, "content-length", 14) == 0 &&
                                 (c->content_length >= 0 ||
                                  grpc_content_length_parse(value, valuelen, &c->content_length) < 0))
                                return call_malformed(c);
                        break;
                case 16:
                        if (memcmp(name, "proxy-connection", 16) == 0)
                                return call_malformed(c);
                        break;
                case 17:
                        if (memcmp(name, "transfer-encoding", 17) == 0)
                                return call_malformed(c);
                        break;
                }
        }
        if (!slot || name[0] != ':') {
                /* a metadata pair: its offsets for now, made pointers once hbuf stays put */
                if (c->n_md + 3 > c->cap_md) {
                        size_t cap = MAX(c->cap_md * 2, (size_t) 16);
                        char **m = realloc(c->md, cap * sizeof(char *));
                        if (!m)
                                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                        c->md = m;
                        c->cap_md = cap;
                }
                c->md[c->n_md++] = (char *) (uintptr_t) c->hlen;
                c->md[c->n_md++] = (char *) (uintptr_t) (c->hlen + namelen + 1);
        }
        /* "name\0value\0" appended to the call's one header buffer: no allocation per field once
         * the buffer (kept with the pooled call) is large enough. */
        size_t need = c->hlen + namelen + valuelen + 2;
        if (need > c->hcap) {
                size_t cap = MAX(MAX(c->hcap * 2, need), (size_t) 512);
                char *b = realloc(c->hbuf, cap);
                if (!b)
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                b[0] = 0;
                c->hbuf = b;
                c->hcap = cap;
        }
        char *p = c->hbuf + c->hlen;
        memcpy(p, name, namelen);
        p[namelen] = 0;
        memcpy(p + namelen + 1, value, valuelen);
        p[namelen + 1 + valuelen] = 0;
        if (slot)
                *slot = (uint32_t) (c->hlen + namelen + 1);
        c->hlen = need;
        return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data) {
        GrpcConn *conn = user_data;
        GrpcCall *c = stream_call(conn, stream_id);
        char msg[160];
        int r;

        if (!c)
                return 0;
        c->data_received += len;
        if (c->finished || !c->method)
                return 0;
        if (c->content_length >= 0 && c->data_received > (uint64_t) c->content_length) {
                call_reset(c); /* more data than its content-length said */
                return 0;
        }
        if (conn->input_held + len > conn->input_max) {
                call_abort(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                           "mooringd: too much request data held on this connection; retry later");
                return 0;
        }
        call_ref(c);
        r = grpc_decoder_feed(&c->dec, data, len, on_message, c);
        call_hold(c, grpc_decoder_buffered(&c->dec) + c->req_len);
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

        if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
                if (frame->hd.type == NGHTTP2_GOAWAY)
                        conn->goaway = true;
                /* A WINDOW_UPDATE or SETTINGS may let DATA go that waited for the peer's window, which
                 * nghttp2's outbound queue does not count: conn_write() must look (see there). */
                conn->want_write = true;
                return 0;
        }
        c = stream_call(conn, frame->hd.stream_id);
        if (!c)
                return 0;
        call_ref(c);
        if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST && !c->started)
                call_start(c);
        if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && c->conn) {
                if (c->content_length >= 0 && c->data_received != (uint64_t) c->content_length && !c->finished)
                        call_reset(c); /* less data than its content-length said */
                else
                        call_input_end(c);
        }
        call_unref(c);
        return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        GrpcConn *conn = user_data;
        GrpcCall *c;

        if (frame->hd.type == NGHTTP2_GOAWAY)
                conn->goaway = true;
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
        /* nghttp2 destroys the stream (and its pointer to the call) when this returns */
        if (c)
                call_detach(c);
        return 0;
}

/* ---- connections ---- */

static void conn_update_events(GrpcConn *c) {
        uint32_t ev = EPOLLIN | EPOLLRDHUP;
        if (c->wlen > c->woff)
                ev |= EPOLLOUT;
        if (ev != c->events && iomux_set_events(c->io, ev) >= 0)
                c->events = ev;
}

static int wbuf_append(GrpcConn *c, const uint8_t *p, size_t n) {
        if (c->woff > 0 && c->woff == c->wlen)
                c->woff = c->wlen = 0;
        if (c->wlen + n > c->wcap) {
                if (c->woff > 0) {
                        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
                        c->wlen -= c->woff;
                        c->woff = 0;
                }
                if (c->wlen + n > c->wcap) {
                        size_t cap = MAX(MAX(c->wcap * 2, c->wlen + n), (size_t) 4096);
                        uint8_t *b = realloc(c->wbuf, cap);
                        if (!b)
                                return -ENOMEM;
                        c->wbuf = b;
                        c->wcap = cap;
                }
        }
        memcpy(c->wbuf + c->wlen, p, n);
        c->wlen += n;
        return 0;
}

/* A DATA frame data_read() left uncopied: its header and the call's bytes go to the write buffer
 * (one copy of the payload, where nghttp2's own frame buffer would make two). */
static int data_send(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
                     nghttp2_data_source *source, void *user_data) {
        static const uint8_t zeros[256];
        GrpcConn *conn = user_data;
        GrpcCall *c = source->ptr;
        size_t padlen = frame->data.padlen;

        /* nghttp2 goes on from one DATA frame to the next within one nghttp2_session_mem_send():
         * past a batch, the frame waits (nghttp2 offers it again) until the batch is written. */
        if (conn->wlen - conn->woff >= GRPC_WRITE_BATCH)
                return NGHTTP2_ERR_WOULDBLOCK;
        assert(length <= c->out_len - c->out_off);
        if (wbuf_append(conn, framehd, 9) < 0)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (padlen > 0) {
                /* the Pad Length field, then the padding after the data (we ask for none) */
                uint8_t pl = (uint8_t) (padlen - 1);
                if (wbuf_append(conn, &pl, 1) < 0)
                        return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        if (wbuf_append(conn, c->out + c->out_off, length) < 0)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        for (size_t p = padlen > 1 ? padlen - 1 : 0; p > 0;) {
                size_t k = MIN(p, sizeof zeros);
                if (wbuf_append(conn, zeros, k) < 0)
                        return NGHTTP2_ERR_CALLBACK_FAILURE;
                p -= k;
        }
        c->out_off += length;
        if (c->out_off == c->out_len)
                c->out_off = c->out_len = 0;
        return 0;
}

/*
 * Writes what nghttp2 has for the peer: gathered into wbuf (up to GRPC_WRITE_BATCH at a time)
 * and written with one send(). Not from inside nghttp2 (in_io): then it only notes that output
 * waits, for the I/O handler to write once nghttp2 returned. < 0: the connection is broken or
 * its session is over; the caller closes it.
 */
static int conn_write(GrpcConn *c) {
        int r = 0;

        if (c->broken)
                return -EPIPE;
        if (c->in_io) {
                c->want_write = true;
                return 0;
        }
        c->in_io = true;
        /* After a read that asked for no answer (the usual request: the handler answers later), nghttp2
         * has nothing to send. Its frames of its own (ACKs, WINDOW_UPDATE, RST_STREAM, GOAWAY) are
         * in its outbound queue; DATA is not counted there, but it only becomes ready through us
         * (a reply or message, which set want_write, as conn_flush_later()/conn_kick() do) or a
         * frame of the peer that opens its window (on_frame_recv() sets want_write); a frame
         * nghttp2 had begun is never left half-written without bytes in wbuf. So this is what
         * nghttp2_session_want_write() would say, in a few instructions instead of its scan of
         * every priority queue, and a mem_send() that finds nothing is not made. */
        bool more = c->want_write || c->wlen > c->woff || nghttp2_session_get_outbound_queue_size(c->h2) > 0;
        while (more) {
                bool drained = false;
                c->want_write = false;
                while (c->wlen - c->woff < GRPC_WRITE_BATCH) {
                        const uint8_t *data;
                        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
                        if (n < 0) {
                                r = -EIO;
                                goto out;
                        }
                        if (n == 0) {
                                /* unless data_send() refused a DATA frame for a full batch (then
                                 * nghttp2 says 0 too, and offers the frame again) */
                                drained = c->wlen - c->woff < GRPC_WRITE_BATCH;
                                break;
                        }
                        r = wbuf_append(c, data, (size_t) n);
                        if (r < 0)
                                goto out;
                }
                if (c->wlen == c->woff)
                        break;
                ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
                if (w < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        r = -errno;
                        goto out;
                }
                c->woff += (size_t) w;
                if (c->woff < c->wlen)
                        break; /* the socket is full: EPOLLOUT resumes */
                c->woff = c->wlen = 0;
                /* A mem_send() that returned 0 with room left in the batch found no frame nghttp2
                 * could send (what nghttp2_session_want_write() would say then): only a full batch,
                 * or output submitted meanwhile by us, means more. */
                more = c->want_write || !drained;
        }
out:
        c->in_io = false;
        if (r < 0)
                return r;
        conn_update_events(c);
        /* nghttp2 wants neither to read nor to write only once a GOAWAY went one way or the other
         * (see nghttp2_session_want_read()): before, asking is a waste on every write. */
        if (c->goaway && c->wlen == c->woff && !nghttp2_session_want_read(c->h2) &&
            !nghttp2_session_want_write(c->h2))
                return -ECONNRESET; /* GOAWAY exchanged, or the session ended: done */
        return 0;
}

/* O(pending): only for a connection being freed. */
static void conn_pending_remove(GrpcConn *c) {
        if (!c->on_pending)
                return;
        for (GrpcConn **p = &c->server->pending; *p; p = &(*p)->next_pending)
                if (*p == c) {
                        *p = c->next_pending;
                        break;
                }
        c->on_pending = false;
        c->next_pending = NULL;
}

/* Output (or a close) for the server's flush, once per loop iteration for every connection. */
static void conn_flush_later(GrpcConn *c) {
        GrpcServer *s;
        if (!c)
                return;
        c->want_write = true;
        if (c->in_io)
                return; /* written when nghttp2 returns */
        s = c->server;
        if (!c->on_pending) {
                c->on_pending = true;
                c->next_pending = s->pending;
                s->pending = c;
        }
        if (!s->flush_armed)
                s->flush_armed = sd_event_source_set_enabled(s->flush, SD_EVENT_ONESHOT) >= 0;
}

/* Writes now, unless nghttp2 is busy with this connection (then its I/O handler writes). Never
 * frees the connection: a broken one is closed by the flush, after the caller returned. */
static void conn_kick(GrpcConn *c) {
        if (!c || c->broken)
                return;
        c->want_write = true;
        if (c->in_io)
                return;
        /* On the flush's list or not: what is there goes now, and the flush finds nothing left. */
        if (conn_write(c) < 0) {
                c->broken = true;
                conn_flush_later(c);
        }
}

static int on_flush(sd_event_source *src, void *userdata) {
        GrpcServer *s = userdata;
        s->flush_armed = false;
        while (s->pending) {
                GrpcConn *c = s->pending;
                s->pending = c->next_pending;
                c->next_pending = NULL;
                c->on_pending = false;
                if (c->broken || conn_write(c) < 0)
                        conn_free(c);
        }
        return 0;
}

static void on_conn_io(IoWatch *w, int fd, uint32_t revents, void *userdata) {
        GrpcConn *c = userdata;
        uint8_t buf[GRPC_READ_CHUNK];

        if (c->broken) {
                conn_free(c);
                return;
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
                c->in_io = true;
                for (int i = 0; i < GRPC_READS_PER_WAKEUP; i++) {
                        ssize_t n = recv(fd, buf, sizeof buf, 0);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                break;
                        if (n <= 0) {
                                c->in_io = false;
                                conn_free(c);
                                return;
                        }
                        ssize_t k = nghttp2_session_mem_recv(c->h2, buf, (size_t) n);
                        if (k < 0) {
                                log_struct(LOG_DEBUG, 0, c->app->config->id, NULL,
                                           "gRPC connection closed: %s.", nghttp2_strerror((int) k));
                                c->in_io = false;
                                (void) conn_write(c);
                                conn_free(c);
                                return;
                        }
                        if ((size_t) n < sizeof buf)
                                break;
                }
                c->in_io = false;
        }
        /* what the read produced (answers given inside it included), or what EPOLLOUT lets out */
        if (conn_write(c) < 0)
                conn_free(c);
}

static void conn_free(GrpcConn *c) {
        GrpcServer *s;
        if (!c)
                return;
        s = c->server;
        /* Nothing is written from here on (a handler answering in its cancel hook only queues). */
        c->broken = true;
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
        conn_pending_remove(c);
        nghttp2_session_del(c->h2);
        iomux_remove(c->io);
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
        nghttp2_session_callbacks_set_send_data_callback(cb, data_send);
        nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
        /* gRPC has no use for RFC 7540 priorities: without them (and SETTINGS_NO_RFC7540_PRIORITIES
         * below) nghttp2 keeps no dependency tree and no closed streams for it. */
        nghttp2_option_set_no_closed_streams(opt, 1);
        /* The request checks of RFC 9113 8.2/8.3 are on_header()'s, on the pass it makes anyway;
         * nghttp2's took a tenth of a call's instructions. */
        nghttp2_option_set_no_http_messaging(opt, 1);
        if (nghttp2_session_server_new3(&c->h2, cb, c, opt, &s->h2_mem) != 0)
                goto fail;
        nghttp2_settings_entry iv[] = {
                { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, GRPC_MAX_STREAMS },
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, GRPC_STREAM_WINDOW },
                { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, GRPC_MAX_HEADER_LIST },
                { NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1 },
        };
        if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv)) != 0 ||
            nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, GRPC_CONN_WINDOW) != 0)
                goto fail;
        c->events = EPOLLIN | EPOLLRDHUP;
        if (iomux_add(s->mux, fd, c->events, on_conn_io, c, &c->io) < 0)
                goto fail;
        nghttp2_session_callbacks_del(cb);
        nghttp2_option_del(opt);
        conn_flush_later(c); /* our SETTINGS go out first */
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
        metrics_set_grpc_method_labels(method_label);
        s->h2_mem = (nghttp2_mem){ .mem_user_data = s, .malloc = h2_malloc, .free = h2_free,
                                   .calloc = h2_calloc, .realloc = h2_realloc };
        if (iomux_new(e, "grpc-connections", &s->mux) < 0 || sd_event_add_defer(e, &s->flush, on_flush, s) < 0) {
                iomux_free(s->mux);
                free(s);
                return NULL;
        }
        (void) sd_event_source_set_enabled(s->flush, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->flush, "grpc-flush");
        return s;
}

GrpcServer *grpc_server_free(GrpcServer *s) {
        if (!s)
                return NULL;
        while (s->conns)
                conn_free(s->conns);
        while (s->pool) {
                GrpcCall *c = s->pool;
                ASAN_UNPOISON_MEMORY_REGION(c, sizeof *c);
                s->pool = c->next;
                call_free_buffers(c);
                free(c);
        }
        h2_mem_done(s);
        /* Listeners belong to their apps (freed with them); forget the ones left. */
        for (GrpcListener *l = s->listeners; l; l = l->next) {
                l->server = NULL;
                l->backoff = sd_event_source_disable_unref(l->backoff);
                l->source = sd_event_source_disable_unref(l->source);
        }
        sd_event_source_disable_unref(s->flush);
        iomux_free(s->mux);
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
                conn_flush_later(c);
        }
}
