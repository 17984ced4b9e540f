/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transport: every call mooringd makes into an app (service invocation,
 * pub/sub delivery, GET /dapr/subscribe, health probes, later actors and input
 * bindings) goes through this one API. Blocks describe a request and get a
 * completion; they never see a socket, a parser or a transfer option.
 *
 * Underneath is an HTTP/1.1 client of our own on sd-event (responses parsed
 * by the Debian-packaged http-parser), with a pool of keep-alive connections
 * per app address. It exists because the app channel is the hottest path in
 * the daemon: libcurl's multi interface cost ~17 syscalls and ~60 us of CPU
 * per proxied call (liveness polls, timer churn, an easy handle per call);
 * here a call on a pooled connection is one writev() and one read() plus its
 * share of the loop's epoll_wait(). libcurl stays the tool for outside URLs,
 * where TLS, proxies and redirects matter.
 *
 * Guarantees:
 *   - done runs exactly once per started call, on the loop, never from inside
 *     transport_call_start(); no callback runs after transport_call_cancel().
 *   - A call marked retryable is sent again (fresh connection, backoff) only
 *     while no byte of an answer has arrived: a reused keep-alive connection
 *     the app closed, a refused or reset connection. Once an answer byte is in,
 *     a failure is final.
 *   - Memory per call is bounded: buffered answers are capped by
 *     max_answer; streamed answers pause the connection while the consumer
 *     is full (it stops reading, TCP flow control does the rest).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct Transport Transport;
typedef struct TransportCall TransportCall;
typedef struct PeerTls PeerTls;

typedef enum TransportAddressKind {
        TRANSPORT_ADDRESS_TCP,
        TRANSPORT_ADDRESS_UNIX,
} TransportAddressKind;

/* How the app is spoken to: HTTP/1.1, or Dapr's AppCallback gRPC service (AppProtocol=grpc). */
typedef enum TransportProtocol {
        TRANSPORT_PROTOCOL_HTTP,
        TRANSPORT_PROTOCOL_GRPC,
} TransportProtocol;

/* Where the app listens. Borrowed: copied by the pool on first use. */
typedef struct TransportAddress {
        TransportAddressKind kind;
        const char *host;        /* TCP: IP literal (v4 or v6, no brackets); UNIX: socket path */
        uint16_t port;           /* TCP only */
        TransportProtocol protocol;
        /* Another mooringd host's peer listener: TCP + mutual TLS (transport_set_peer_tls()), and the
         * server's certificate must name this host id. NULL: a plain app channel. */
        const char *peer_host;
} TransportAddress;

/*
 * What a call is for. HTTP apps get the request as it is whatever it is for; for a gRPC app
 * (transport/grpc-app.c) it picks the AppCallback RPC: OnInvoke, OnTopicEvent (the body is the
 * CloudEvent), OnBulkTopicEventAlpha1 (the bulk envelope; answered as {"statuses": [...]}),
 * ListTopicSubscriptions (answered as Dapr's GET /dapr/subscribe JSON), HealthCheck.
 */
typedef enum TransportPurpose {
        TRANSPORT_PURPOSE_INVOKE,
        TRANSPORT_PURPOSE_DELIVERY,
        TRANSPORT_PURPOSE_SUBSCRIPTIONS,
        TRANSPORT_PURPOSE_PROBE,
        TRANSPORT_PURPOSE_BULK_DELIVERY, /* the body is Dapr's bulk envelope: OnBulkTopicEventAlpha1 */
        /* Input bindings (name: the binding). Does the app read it: HTTP as given (OPTIONS /route), gRPC
         * ListInputBindings, answered 200 when it lists name, else 404. An event: HTTP as given, gRPC
         * OnBindingEvent(name, body, headers as metadata). */
        TRANSPORT_PURPOSE_BINDING_PROBE,
        TRANSPORT_PURPOSE_BINDING_EVENT,
} TransportPurpose;

typedef struct TransportRequest {
        const char *method;      /* an HTTP token, "GET", "POST", ... */
        const char *target;      /* origin form "/path?query", sent exactly as given */
        char *const *headers;    /* name, value pairs, NULL-terminated; sent as given. The transport
                                  * writes Host and Content-Length itself: callers must not pass them. */
        const void *body;        /* borrowed until done runs or the call is cancelled */
        size_t body_len;
        uint64_t timeout_usec;   /* whole call, retries included; 0: none */
        unsigned retries;        /* extra attempts while no answer byte arrived (backoff 250 ms doubling) */
        /* Buffered answers (no head/body callbacks): the body is collected up to this many bytes;
         * a longer answer fails the call with -EMSGSIZE. */
        size_t max_answer;
        TransportPurpose purpose;
        const char *name;        /* TRANSPORT_PURPOSE_BINDING_*: the binding's name */
} TransportRequest;

/* An answer as it arrives. headers: name, value pairs, NULL-terminated, as the app sent them
 * (hop-by-hop ones included: the caller decides what to forward). */
typedef struct TransportAnswer {
        unsigned status;
        char *const *headers;
        int64_t content_length;  /* -1: none given (chunked or until close) */
        const void *body;        /* buffered calls only: the whole body, NUL-terminated */
        size_t body_len;
} TransportAnswer;

/* Why a call ended without a (whole) answer. message is valid during the callback. */
typedef struct TransportError {
        int error;               /* -ECONNREFUSED, -ENOENT (no socket), -ETIMEDOUT, -ECONNRESET (cut
                                  * short after the head), -EPROTO (not HTTP, or TLS failed),
                                  * -EKEYREJECTED (a peer's certificate, or ours, was refused),
                                  * -ENOPROTOOPT (a peer address without peer TLS), -EMSGSIZE,
                                  * -ECANCELED, -ENOMEM, other connect()/read() errnos */
        bool answered;           /* part of an answer had arrived */
        unsigned attempts;       /* how many times the request was sent */
        const char *message;
} TransportError;

typedef struct TransportHandler {
        /*
         * Streaming: head runs once with the final status and headers (1xx answers are skipped), then
         * body for each chunk. body returns false for "not now": the call stops reading and offers the
         * same bytes again after transport_call_resume(). Both NULL: the answer is buffered and handed
         * to done.
         */
        void (*head)(TransportCall *c, const TransportAnswer *a, void *userdata);
        bool (*body)(TransportCall *c, const void *buf, size_t len, void *userdata);
        /*
         * The end, exactly once: e NULL on success (a: the answer; buffered calls carry the body; for
         * streamed calls a is the head again), else a NULL and e says why. The call is freed when done
         * returns.
         */
        void (*done)(TransportCall *c, const TransportAnswer *a, const TransportError *e, void *userdata);
} TransportHandler;

Transport *transport_new(sd_event *e);
/* Calls still running end with -ECANCELED (their done runs), idle connections are closed. */
Transport *transport_free(Transport *t);

/*
 * Starts a call to the app at addr. Fails (no callback) only on OOM or a request that cannot be
 * written (-EINVAL: a method or header with CR/LF, a missing target).
 */
int transport_call_start(Transport *t, const TransportAddress *addr, const TransportRequest *req,
                         const TransportHandler *h, void *userdata, TransportCall **ret);
/* Stops a call: no more callbacks. NULL-safe. Not from inside the call's own done. */
void transport_call_cancel(TransportCall *c);
/* The consumer has room again after body() said no. */
void transport_call_resume(TransportCall *c);

/*
 * The TLS of calls to peer hosts (borrowed; NULL: such calls fail with -ENOPROTOOPT). Pooled peer
 * connections are kept; new ones use the context current at their start.
 */
void transport_set_peer_tls(Transport *t, PeerTls *tls);
/* Peer connections whose TLS session was resumed, since start (tests, bench). */
uint64_t transport_peer_sessions_resumed(const Transport *t);

/* The connections to gRPC apps (transport/grpc-channel.h), for streams of proxied calls. */
struct GrpcChannel *transport_grpc_channel(Transport *t);

/* Calls running or waiting to retry (for drains and tests). */
unsigned transport_calls_in_flight(const Transport *t);
/* Connections opened since start (tests check keep-alive reuse with it). */
uint64_t transport_connections_opened(const Transport *t);
