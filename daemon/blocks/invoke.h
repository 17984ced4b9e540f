/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The service-invocation block: what Dapr's invoke API means, independent of
 * HTTP or D-Bus. Given a caller (an app identified by its listener or peer
 * credentials, never by a header), a target app, a verb, a method path and
 * headers + body, it
 *   - finds the target (unknown: error), applies the callee's Configuration
 *     accessControl (denied: -EACCES, the callee never sees the call),
 *   - fails fast when the target is unhealthy or has no AppAddress,
 *   - waits for a slot under the target's MaxConcurrency=,
 *   - sends the call through the transport (keep-alive connections),
 *     retrying with backoff only while nothing reached the app (connection
 *     refused, reset before any answer byte),
 *   - never forwards the caller's routing and identity headers, and bounds
 *     chains of calls through this host (INVOKE_HOPS_HEADER),
 *   - applies the Resiliency policy that targets the callee for this caller
 *     (core/resiliency.h): a timeout per attempt, retries of failed attempts
 *     (an answer outside 200-399 is held back while another attempt follows)
 *     and a circuit breaker that fails calls fast while it is open,
 *   - bounds the whole call by the target's InvokeTimeoutSec=,
 *   - propagates W3C trace context (creating it when absent),
 *   - and streams the answer back: head, then body chunks with flow control.
 *
 * It fails with an errno only; what each front-end answers for it (Dapr code,
 * HTTP status, D-Bus error name) is core/errors.c's ERROR_CONTEXT_INVOKE rows.
 *
 * Front-ends translate to and from these calls (http/api-invoke.c,
 * dbus/invoke-bus.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/tracecontext.h"
#include "../forward.h"

typedef struct InvokeCall InvokeCall;

/* Headers as pairs: name, value, name, value, ..., NULL. Names as received (any case). */
typedef struct InvokeRequest {
        const char *caller_app;  /* NULL: not an app (global defaultAction applies) */
        const char *target_app;
        const char *verb;        /* as received, upper case ("GET") */
        const char *method;      /* path for the callee as sent (escaped), with or without leading '/',
                                  * may carry "?query" which is passed verbatim */
        char *const *headers;    /* the caller's headers; hop-by-hop ones are dropped here; the
                                  * array is read during invoke_start() only, the strings are
                                  * borrowed until done runs or the call is cancelled */
        const void *body;        /* borrowed until done runs or the call is cancelled */
        size_t body_len;
        bool routed_by_authorization; /* Authorization (Basic dapr-app-id:<id>) named the target:
                                       * it is not forwarded */
        const TraceContext *trace_parent; /* the front-end's span of the inbound call, whose child the
                                           * call is; NULL: the caller's traceparent header */
        bool trace_parent_remote; /* with trace_parent: it is itself the child of a traceparent the caller
                                   * sent (so the caller's tracestate travels on) */
        const char *caller_trust_domain; /* a caller on a peer host: the trust domain its certificate
                                          * names; NULL: this host's TrustDomain= */
        bool local_only;         /* the call came from a peer host: only an app on this host may take
                                  * it (a call is never sent on from host to host) */
} InvokeRequest;

/* Counts the calls through mooringd that led to this one: mooringd sets it on every call it
 * makes, reads it on every call it gets, and refuses past a bound (loops). Not Dapr's. */
#define INVOKE_HOPS_HEADER "mooring-hops"
/* On a call from one mooringd to another over the peer listener (mutual TLS): the calling app's
 * id. Believed only on a peer listener, whose certificate check says which host sent it; dropped
 * from every other caller's headers and never forwarded to an app. Not Dapr's. */
#define INVOKE_PEER_CALLER_HEADER "mooring-caller-app"

/* Why a call ended without an answer from the callee. */
typedef struct InvokeError {
        int error;               /* negative errno: -ENOENT no such app, -EACCES denied, -EHOSTDOWN
                                  * unhealthy, -EADDRNOTAVAIL no address, -ETIMEDOUT, -ECONNREFUSED,
                                  * -EIO transport, -ECANCELED stopping, -ELOOP too many hops */
        const char *message;     /* "failed to invoke, id: b, err: ..." valid during the callback */
} InvokeError;

typedef struct InvokeHandler {
        /*
         * The callee answered: its status and headers (pairs, NULL-terminated,
         * hop-by-hop, Content-Length and Date removed). content_length is the
         * callee's Content-Length, or -1 if it sent none. Runs once, before any body.
         * headers and their strings are valid only during the call: copy what you keep.
         */
        void (*head)(InvokeCall *c, unsigned status, char *const *headers, int64_t content_length, void *userdata);
        /*
         * A body chunk. Return true when taken; false means "not now": the call
         * pauses and offers the same bytes again after invoke_call_resume().
         */
        bool (*body)(InvokeCall *c, const void *buf, size_t len, void *userdata);
        /*
         * The end, exactly once, later on the loop (never from inside
         * invoke_start()). e is NULL when the whole answer was delivered. After
         * head ran, e means the body was cut short. The call is freed after
         * done returns.
         */
        void (*done)(InvokeCall *c, const InvokeError *e, void *userdata);
} InvokeHandler;

/*
 * Starts a call. Fails (nothing started, no callback) only on OOM or a
 * malformed request (-EINVAL); every other failure reaches done.
 */
int invoke_start(Registry *m, const InvokeRequest *req, const InvokeHandler *h, void *userdata,
                 InvokeCall **ret);
/* The front-end can take bytes again after body() said no. */
void invoke_call_resume(InvokeCall *c);
/* The caller went away: stop, no more callbacks, free. NULL-safe. Not from inside one of
 * the call's own callbacks (head, body, done): it frees the call at once. */
void invoke_call_cancel(InvokeCall *c);
/* W3C traceparent of this call's span (for the caller's response). */
const char *invoke_call_traceparent(const InvokeCall *c);

/* Hooks the block into the registry: when an app leaves it, the calls queued for it fail. */
int invoke_setup(Registry *m);
/* Ends every call still queued, waiting to retry or in flight (done gets -ECANCELED), and unhooks. */
void invoke_done(Registry *m);
