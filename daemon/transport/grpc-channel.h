/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC side of the transport: calls into apps that speak gRPC
 * (AppProtocol=grpc). One HTTP/2 connection (h2c, libnghttp2 client) per app
 * address on the sd-event loop, shared by every call to that app; each call is
 * one stream. Raw streams carry already-framed gRPC messages both ways
 * (proxying); transport.c builds Dapr's AppCallback calls on top of them.
 *
 * Guarantees as for the HTTP transport: done runs exactly once per opened
 * stream, on the loop, never from inside grpc_channel_open(); nothing runs
 * after grpc_stream_cancel(). A connection that fails ends its streams
 * (-ECONNREFUSED before any answer, -ECONNRESET after); the next call opens a
 * new one.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "transport.h"

typedef struct GrpcChannel GrpcChannel;
typedef struct GrpcStream GrpcStream;

typedef struct GrpcStreamHandler {
        /* The answer's headers (name, value pairs, pseudo-headers removed), once, before any data;
         * not called for a trailers-only answer. May be NULL. */
        void (*headers)(GrpcStream *s, char *const *headers, void *userdata);
        /* Raw bytes of the answer's DATA frames (gRPC-framed messages). Return false for "not now":
         * the stream stops taking data (flow control holds the app) until grpc_stream_resume(),
         * and the same bytes are offered again. */
        bool (*data)(GrpcStream *s, const void *buf, size_t len, void *userdata);
        /* The end, exactly once: error 0 and the trailers (grpc-status, grpc-message, ...), or
         * error < 0 (-ECONNREFUSED, -ECONNRESET, -ETIMEDOUT, -ECANCELED, -EPROTO) and NULL. */
        void (*done)(GrpcStream *s, int error, char *const *trailers, void *userdata);
} GrpcStreamHandler;

GrpcChannel *grpc_channel_new(sd_event *e);
/* Open streams end with -ECANCELED (their done runs), connections close. NULL-safe. */
GrpcChannel *grpc_channel_free(GrpcChannel *g);

/*
 * Opens a stream to path ("/pkg.Service/Method") at addr with request metadata (pairs, lower-case
 * names; content-type and te are added). timeout_usec 0: none, else it is sent as grpc-timeout
 * too. The request body follows with grpc_stream_send() and ends with grpc_stream_close_send().
 */
int grpc_channel_open(GrpcChannel *g, const TransportAddress *addr, const char *path, char *const *metadata,
                      uint64_t timeout_usec, const GrpcStreamHandler *h, void *userdata, GrpcStream **ret);
/* Queues raw request bytes (framed messages). -EPIPE once the stream ended. */
int grpc_stream_send(GrpcStream *s, const void *buf, size_t len);
/* Bytes queued and not yet taken by HTTP/2 flow control. */
size_t grpc_stream_send_queued(const GrpcStream *s);
/* The request is complete (END_STREAM after what is queued). */
void grpc_stream_close_send(GrpcStream *s);
/* data() has room again. */
void grpc_stream_resume(GrpcStream *s);
/* Resets the stream; no more callbacks. NULL-safe. Not from inside its own done. */
void grpc_stream_cancel(GrpcStream *s);

sd_event *grpc_channel_event(GrpcChannel *g);

/* First value of name in pairs, or NULL. */
const char *grpc_pairs_get(char *const *pairs, const char *name);
