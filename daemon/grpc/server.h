/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC front-end's transport: an HTTP/2 server (libnghttp2, h2c with
 * prior knowledge, as gRPC clients speak it) on the sd-event loop, on each
 * app's own listeners (apps/<id>/grpc.sock and an optional loopback
 * GrpcPort=). As for HTTP, the listener a connection came in on is the
 * caller's identity; on a TCP listener an app's API token must come as
 * dapr-api-token metadata.
 *
 * It owns what gRPC adds to HTTP/2: the length-prefixed messages (util/grpc-frame.h),
 * grpc-timeout deadlines, the answer's trailers (grpc-status, grpc-message,
 * grpc-status-details-bin), the message size limit, bounds on streams and on
 * buffered input per connection. It dispatches by path to the method tables
 * of the services (grpc/service-*.c); a path no table names is answered
 * UNIMPLEMENTED.
 *
 * Handlers translate: they unpack nothing themselves (the server does, with
 * the method's descriptor) and answer through grpc_call_*().
 */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "../forward.h"

typedef struct GrpcServer GrpcServer;
typedef struct GrpcListener GrpcListener;
typedef struct GrpcCall GrpcCall;

typedef enum GrpcCode {
        GRPC_STATUS_OK = 0,
        GRPC_STATUS_CANCELLED = 1,
        GRPC_STATUS_UNKNOWN = 2,
        GRPC_STATUS_INVALID_ARGUMENT = 3,
        GRPC_STATUS_DEADLINE_EXCEEDED = 4,
        GRPC_STATUS_NOT_FOUND = 5,
        GRPC_STATUS_ALREADY_EXISTS = 6,
        GRPC_STATUS_PERMISSION_DENIED = 7,
        GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
        GRPC_STATUS_FAILED_PRECONDITION = 9,
        GRPC_STATUS_ABORTED = 10,
        GRPC_STATUS_OUT_OF_RANGE = 11,
        GRPC_STATUS_UNIMPLEMENTED = 12,
        GRPC_STATUS_INTERNAL = 13,
        GRPC_STATUS_UNAVAILABLE = 14,
        GRPC_STATUS_DATA_LOSS = 15,
        GRPC_STATUS_UNAUTHENTICATED = 16,
} GrpcCode;

typedef enum GrpcMethodKind {
        GRPC_METHOD_UNARY,   /* one request, one answer: unary() runs once the request is complete */
        GRPC_METHOD_STREAM,  /* open() at the start, message() per request, half_closed() at its end */
        GRPC_METHOD_RAW,     /* as STREAM, but raw() gets each message's bytes undecoded (proxying) */
} GrpcMethodKind;

/*
 * One RPC: its path and what to call. Adding an RPC is one entry in a service's table and one
 * function. The request is unpacked with request (a protobuf-c descriptor). A unary request stays
 * valid until the handler answers (it may borrow from it meanwhile, and must not after); a stream
 * message is freed when message() returns: copy what you keep.
 */
typedef struct GrpcMethod {
        const char *path;                                   /* "/dapr.proto.runtime.v1.Dapr/GetState" */
        GrpcMethodKind kind;
        const ProtobufCMessageDescriptor *request;
        int (*unary)(GrpcCall *c, const ProtobufCMessage *req);
        int (*open)(GrpcCall *c);
        int (*message)(GrpcCall *c, const ProtobufCMessage *req);
        void (*half_closed)(GrpcCall *c);
        int (*raw)(GrpcCall *c, const uint8_t *msg, size_t len);
} GrpcMethod;

/* The services' tables, NULL-terminated list of {methods, n}. */
typedef struct GrpcService {
        const GrpcMethod *methods;
        size_t n_methods;
} GrpcService;

GrpcServer *grpc_server_new(Manager *m, sd_event *e);
GrpcServer *grpc_server_free(GrpcServer *s);
/* Calls whose answer is not complete yet. */
unsigned grpc_server_calls_in_flight(const GrpcServer *s);
/* GOAWAY to every connection and stop accepting: calls in flight finish. */
void grpc_server_start_drain(GrpcServer *s);

typedef enum GrpcListenerKind {
        GRPC_LISTENER_UNIX, /* apps/<id>/grpc.sock: whoever can connect is the app */
        GRPC_LISTENER_TCP,  /* loopback GrpcPort=: the app's API token, if it has one, is required */
} GrpcListenerKind;

/* Wraps a listening fd (takes it) for app. unlink_path, if given, is removed when it is freed. */
int grpc_listener_new(GrpcServer *s, GrpcListenerKind kind, App *app, int fd_take, const char *unlink_path,
                      GrpcListener **ret);
GrpcListener *grpc_listener_free(GrpcListener *l);

/* ---- what handlers use ---- */

Registry *grpc_call_registry(const GrpcCall *c);
Manager *grpc_call_manager(const GrpcCall *c);
/* The calling app (the listener's): never NULL while the call runs. */
App *grpc_call_app(const GrpcCall *c);
const char *grpc_call_app_id(const GrpcCall *c);
const char *grpc_call_path(const GrpcCall *c);
/* First value of a request metadata key (lower case), or NULL. */
const char *grpc_call_metadata(const GrpcCall *c, const char *key);
/* Every request metadata pair (name, value, ..., NULL), pseudo-headers excluded; borrowed. */
char *const *grpc_call_metadata_pairs(const GrpcCall *c);

/* A response header (before the first message or the end). -ENOMEM, -EBUSY when headers went out. */
int grpc_call_add_header(GrpcCall *c, const char *name, const char *value);
/* Forgets the response headers added so far (before they went out). */
void grpc_call_clear_headers(GrpcCall *c);
/* A trailer next to grpc-status. */
int grpc_call_add_trailer(GrpcCall *c, const char *name, const char *value);

/*
 * Unary: the answer, exactly once per call (also after the client left: it is then dropped and the
 * call freed). reply sends msg and OK; fail sends no message and code with message text.
 * fail_detail adds Dapr's error detail (google.rpc.ErrorInfo with reason = Dapr's error code).
 */
int grpc_call_reply(GrpcCall *c, const ProtobufCMessage *msg);
int grpc_call_fail(GrpcCall *c, GrpcCode code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int grpc_call_fail_detail(GrpcCall *c, GrpcCode code, const char *reason, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/*
 * Streams: send messages (queued, all or nothing; -ENOBUFS when the client reads too slowly and
 * more than the send bound waits), then end with grpc_call_reply(c, NULL) or grpc_call_fail().
 * grpc_call_send_raw() sends bytes already encoded (proxying).
 */
int grpc_call_send(GrpcCall *c, const ProtobufCMessage *msg);
int grpc_call_send_raw(GrpcCall *c, const void *buf, size_t len);
/*
 * A unary answer built in place, so a large field is copied once: grpc_call_draft_append() adds
 * bytes to the answer's message, in order; grpc_call_reply_draft() then puts head (at most
 * GRPC_DRAFT_HEAD_MAX bytes: the encoding of the fields before the bytes, their tags and lengths)
 * in front of them and tail behind, and answers OK with head + bytes + tail as the one message,
 * as grpc_call_reply() does. Only before anything else was sent on the call: -EBUSY otherwise.
 * A draft not replied is dropped when the call fails.
 */
#define GRPC_DRAFT_HEAD_MAX 32
int grpc_call_draft_append(GrpcCall *c, const void *buf, size_t len);
size_t grpc_call_draft_len(const GrpcCall *c);
int grpc_call_reply_draft(GrpcCall *c, const void *head, size_t head_len, const void *tail, size_t tail_len);

/*
 * Zeroed scratch space of up to GRPC_CALL_SCRATCH bytes for the handler's state, instead of an
 * allocation: it lives as long as the call object, which may be freed as soon as the handler
 * answered (grpc_call_reply/fail), so nothing may touch it from the answer on. One per call.
 */
#define GRPC_CALL_SCRATCH 256U
void *grpc_call_scratch(GrpcCall *c, size_t size);

/* Bytes queued for the client and not yet taken by HTTP/2 (flow control). */
size_t grpc_call_send_queued(const GrpcCall *c);

/*
 * The client went away, reset the stream, or the deadline passed, before the answer: fn runs once
 * (not after the answer). The handler stops its work there; it still answers (dropped) once.
 */
typedef void (*GrpcCallCancelFn)(GrpcCall *c, void *userdata);
void grpc_call_on_cancel(GrpcCall *c, GrpcCallCancelFn fn, void *userdata);
/* The answer can no longer reach anyone (the stream is gone or was answered by the deadline). */
bool grpc_call_is_gone(const GrpcCall *c);
/* Handler state, for streams. */
void grpc_call_set_userdata(GrpcCall *c, void *userdata);
void *grpc_call_get_userdata(const GrpcCall *c);
/* Remaining time before the caller's deadline (grpc-timeout), or UINT64_MAX when none. */
uint64_t grpc_call_deadline_left_usec(const GrpcCall *c);
