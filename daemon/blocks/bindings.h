/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bindings block: Dapr's input and output bindings, independent of HTTP,
 * D-Bus or gRPC (front-ends: http/api-bindings.c, dbus/bindings-bus.c).
 *
 * Output: bindings_invoke() finds the caller's binding (component scopes),
 * checks the operation against what the driver supports, adds the caller's
 * trace context to the metadata as Dapr does, and runs it on the driver. The
 * answer (body, metadata, content type) comes back through done, with an
 * error or not (a driver may return metadata with an error: bindings.http
 * does for a non-2xx answer).
 *
 * Input: every input binding (a driver with read_start) is offered to every
 * app in its scopes once the app is healthy: unless the component's
 * `direction` names input, the app is asked `OPTIONS /{route}` first and
 * subscribes by answering 2xx or 405, as daprd asks. Each event is then
 * POSTed to /{route} through the transport, with Content-Type
 * application/json and the event's metadata as headers, holding one of the
 * app's MaxConcurrency= slots. A 2xx answer settles it; anything else (or no
 * answer) is retried with backoff when the source can redeliver (MQTT),
 * else logged (cron: the next tick comes anyway). A gRPC app (AppProtocol=grpc)
 * is asked ListInputBindings and gets OnBindingEvent instead: the transport
 * translates (the requests carry TRANSPORT_PURPOSE_BINDING_*).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../drivers/bindings/driver.h"
#include "../forward.h"

#define BINDINGS_RETRY_FIRST_USEC (500 * 1000ULL)
#define BINDINGS_RETRY_MAX_USEC (30ULL * 1000000)
#define BINDINGS_DEFAULT_IN_FLIGHT 64U

typedef struct BindingRunner BindingRunner;
typedef struct BindingOut BindingOut;

/* Opens a binding for component c (a bindings.* component). *reterr_msg says why not. */
int binding_open(Registry *m, Component *c, Binding **ret, char **reterr_msg);
/* Stops its readers, answers its calls (-ECANCELED), frees it. NULL-safe. */
Binding *binding_close(Registry *m, Binding *b);

/* ---- output ---- */

typedef struct BindingInvokeRequest {
        const char *app;             /* caller app id (component scopes); NULL: no app */
        const char *name;            /* binding (component) name */
        const char *operation;
        const void *data;            /* JSON bytes as Dapr re-encodes the request's data */
        size_t len;
        char *const *metadata;       /* pairs; may be NULL */
        const char *traceparent, *tracestate; /* added to the metadata when set (and not already there) */
} BindingInvokeRequest;

/*
 * Starts an output call. done runs exactly once, later on the loop (unless cancelled), with:
 * 0 and resp (NULL: nothing to return); -ENOENT no such binding for this caller; -EINVAL the
 * operation is missing; -EOPNOTSUPP the binding does not support it (or is input only); any
 * other errno: the binding failed (message says why; resp may carry its metadata).
 * Returns < 0 only on OOM (nothing started). *ret (optional) lets the caller cancel.
 */
int bindings_invoke(Registry *m, const BindingInvokeRequest *req, BindingDoneFn done, void *userdata,
                    BindingOut **ret);
/* The caller is gone: done will not run (the operation itself still finishes). NULL-safe. */
void bindings_invoke_cancel(BindingOut *o);

/* ---- input ---- */

/* Hooks the block into the registry (app health, app removal). */
int bindings_setup(Registry *m);
/* Starts the readers of every healthy app not reading yet (after a load or reload). */
int bindings_reload(Registry *m);
/* Stops every reader (before bindings close or change). */
void bindings_stop_all(Registry *m);
/* Stops everything and unhooks (at exit). */
void bindings_done(Registry *m);

/* What reads, for the metadata API and mooringctl. */
typedef void (*BindingReaderFn)(const char *app_id, const char *binding, const char *route, void *userdata);
void bindings_foreach_reader(Registry *m, BindingReaderFn fn, void *userdata);
