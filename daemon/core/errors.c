/* SPDX-License-Identifier: Apache-2.0 */
/* See errors.h. Status codes follow Dapr release-1.14 (see shared/reference). */
#include <stddef.h>

#include "../util/cleanup.h"
#include "errors.h"

static const struct {
        const char *code;
        unsigned status;
} table[_DAPR_ERROR_MAX] = {
        [DAPR_ERR_MALFORMED_REQUEST] = { "ERR_MALFORMED_REQUEST", 400 },
        [DAPR_ERR_BODY_READ] = { "ERR_BODY_READ", 400 },
        [DAPR_ERR_BAD_REQUEST] = { "ERR_BAD_REQUEST", 400 },
        /* Dapr answers an oversized body with 413 from its HTTP server before routing. */
        [DAPR_ERR_BODY_TOO_LARGE] = { "ERR_BODY_TOO_LARGE", 413 },
        [DAPR_ERR_DIRECT_INVOKE_NOT_FOUND] = { "ERR_DIRECT_INVOKE", 404 },
        [DAPR_ERR_DIRECT_INVOKE] = { "ERR_DIRECT_INVOKE", 500 },
        [DAPR_ERR_HEALTH_NOT_READY] = { "ERR_HEALTH_NOT_READY", 500 },
        [DAPR_ERR_OUTBOUND_HEALTH_NOT_READY] = { "ERR_OUTBOUND_HEALTH_NOT_READY", 500 },
        [DAPR_ERR_HEALTH_APPID_NOT_MATCH] = { "ERR_HEALTH_APPID_NOT_MATCH", 500 },
        [DAPR_ERR_METADATA_GET] = { "ERR_METADATA_GET", 500 },
        [DAPR_ERR_INTERNAL] = { "ERROR", 500 },
        [DAPR_ERR_STATE_STORE_NOT_CONFIGURED] = { "ERR_STATE_STORE_NOT_CONFIGURED", 500 },
        [DAPR_ERR_STATE_STORE_NOT_FOUND] = { "ERR_STATE_STORE_NOT_FOUND", 400 },
        [DAPR_ERR_STATE_GET] = { "ERR_STATE_GET", 500 },
        [DAPR_ERR_STATE_SAVE] = { "ERR_STATE_SAVE", 500 },
        [DAPR_ERR_STATE_DELETE] = { "ERR_STATE_DELETE", 500 },
        [DAPR_ERR_STATE_BULK_GET] = { "ERR_STATE_BULK_GET", 500 },
        [DAPR_ERR_STATE_TRANSACTION] = { "ERR_STATE_TRANSACTION", 500 },
        [DAPR_ERR_NOT_SUPPORTED_STATE_OPERATION] = { "ERR_NOT_SUPPORTED_STATE_OPERATION", 400 },
        [DAPR_ERR_STATE_STORE_TOO_MANY_TRANSACTIONS] = { "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS", 400 },
        [DAPR_ERR_STATE_STORE_NOT_SUPPORTED] = { "ERR_STATE_STORE_NOT_SUPPORTED", 500 },
        [DAPR_ERR_PERMISSION_DENIED] = { "ERR_PERMISSION_DENIED", 403 },
        [DAPR_ERR_PUBSUB_NOT_CONFIGURED] = { "ERR_PUBSUB_NOT_CONFIGURED", 400 },
        [DAPR_ERR_PUBSUB_EMPTY] = { "ERR_PUBSUB_EMPTY", 404 },
        [DAPR_ERR_PUBSUB_NOT_FOUND] = { "ERR_PUBSUB_NOT_FOUND", 404 },
        [DAPR_ERR_TOPIC_NAME_EMPTY] = { "ERR_TOPIC_NAME_EMPTY", 404 },
        [DAPR_ERR_PUBSUB_REQUEST_METADATA] = { "ERR_PUBSUB_REQUEST_METADATA", 400 },
        [DAPR_ERR_PUBSUB_FORBIDDEN] = { "ERR_PUBSUB_FORBIDDEN", 403 },
        [DAPR_ERR_PUBSUB_PUBLISH_MESSAGE] = { "ERR_PUBSUB_PUBLISH_MESSAGE", 500 },
        [DAPR_ERR_PUBSUB_CLOUD_EVENTS_SER] = { "ERR_PUBSUB_CLOUD_EVENTS_SER", 500 },
        [DAPR_ERR_PUBSUB_EVENTS_SER] = { "ERR_PUBSUB_EVENTS_SER", 400 },
        [DAPR_ERR_INVOKE_OUTPUT_BINDING] = { "ERR_INVOKE_OUTPUT_BINDING", 500 },
        [DAPR_ERR_API_UNIMPLEMENTED] = { "ERR_API_UNIMPLEMENTED", 501 },
        [DAPR_ERR_SECRET_STORES_NOT_CONFIGURED] = { "ERR_SECRET_STORES_NOT_CONFIGURED", 500 },
        /* daprd answers an unknown secret store with 401, not 404 */
        [DAPR_ERR_SECRET_STORE_NOT_FOUND] = { "ERR_SECRET_STORE_NOT_FOUND", 401 },
        [DAPR_ERR_SECRET_GET] = { "ERR_SECRET_GET", 500 },
        [DAPR_ERR_ACTOR_RUNTIME_NOT_FOUND] = { "ERR_ACTOR_RUNTIME_NOT_FOUND", 500 },
        [DAPR_ERR_ACTOR_INSTANCE_MISSING] = { "ERR_ACTOR_INSTANCE_MISSING", 400 },
        [DAPR_ERR_ACTOR_INVOKE_METHOD] = { "ERR_ACTOR_INVOKE_METHOD", 500 },
        [DAPR_ERR_ACTOR_STATE_GET] = { "ERR_ACTOR_STATE_GET", 500 },
        [DAPR_ERR_ACTOR_STATE_TRANSACTION_SAVE] = { "ERR_ACTOR_STATE_TRANSACTION_SAVE", 500 },
        [DAPR_ERR_ACTOR_REMINDER_CREATE] = { "ERR_ACTOR_REMINDER_CREATE", 500 },
        [DAPR_ERR_ACTOR_REMINDER_GET] = { "ERR_ACTOR_REMINDER_GET", 500 },
        [DAPR_ERR_ACTOR_REMINDER_DELETE] = { "ERR_ACTOR_REMINDER_DELETE", 500 },
        [DAPR_ERR_ACTOR_REMINDER_NON_HOSTED] = { "ERR_ACTOR_REMINDER_NON_HOSTED", 403 },
        [DAPR_ERR_ACTOR_TIMER_CREATE] = { "ERR_ACTOR_TIMER_CREATE", 500 },
        [DAPR_ERR_ACTOR_TIMER_DELETE] = { "ERR_ACTOR_TIMER_DELETE", 500 },
        [DAPR_ERR_STATE_QUERY] = { "ERR_STATE_QUERY", 500 },
        [DAPR_ERR_LOCK_STORE_NOT_CONFIGURED] = { "ERR_LOCK_STORE_NOT_CONFIGURED", 500 },
        [DAPR_ERR_LOCK_STORE_NOT_FOUND] = { "ERR_LOCK_STORE_NOT_FOUND", 400 },
        [DAPR_ERR_TRY_LOCK] = { "ERR_TRY_LOCK", 500 },
        [DAPR_ERR_UNLOCK] = { "ERR_UNLOCK", 500 },
        [DAPR_ERR_CONFIGURATION_STORE_NOT_CONFIGURED] = { "ERR_CONFIGURATION_STORE_NOT_CONFIGURED", 500 },
        [DAPR_ERR_CONFIGURATION_STORE_NOT_FOUND] = { "ERR_CONFIGURATION_STORE_NOT_FOUND", 400 },
        [DAPR_ERR_CONFIGURATION_GET] = { "ERR_CONFIGURATION_GET", 500 },
        [DAPR_ERR_CONFIGURATION_SUBSCRIBE] = { "ERR_CONFIGURATION_SUBSCRIBE", 500 },
        [DAPR_ERR_CONFIGURATION_UNSUBSCRIBE] = { "ERR_CONFIGURATION_UNSUBSCRIBE", 500 },
        [DAPR_ERR_APP_CHANNEL_NIL] = { "ERR_APP_CHANNEL_NIL", 500 },
};

const char *dapr_error_code(DaprError e) {
        return e >= 0 && e < _DAPR_ERROR_MAX ? table[e].code : "ERROR";
}

unsigned dapr_error_status(DaprError e) {
        return e >= 0 && e < _DAPR_ERROR_MAX ? table[e].status : 500;
}

/*
 * Per context, specific rows first and the default (error 0) last. The answers are the ones the
 * front-ends gave before this table existed; the integration tests pin them.
 */
static const ErrorRow rows[] = {
        /* Dapr answers a denied invocation with 403; a loop is ours (508 Loop Detected, RFC 5842). */
        { ERROR_CONTEXT_INVOKE, -ENOENT, DAPR_ERR_DIRECT_INVOKE, 500, BUS_ERROR_NO_SUCH_APP },
        { ERROR_CONTEXT_INVOKE, -EACCES, DAPR_ERR_DIRECT_INVOKE, 403, BUS_ERROR_PERMISSION_DENIED },
        { ERROR_CONTEXT_INVOKE, -ETIMEDOUT, DAPR_ERR_DIRECT_INVOKE, 500, BUS_ERROR_TIMEOUT },
        { ERROR_CONTEXT_INVOKE, -EHOSTDOWN, DAPR_ERR_DIRECT_INVOKE, 500, BUS_ERROR_UNAVAILABLE },
        { ERROR_CONTEXT_INVOKE, -EADDRNOTAVAIL, DAPR_ERR_DIRECT_INVOKE, 500, BUS_ERROR_UNAVAILABLE },
        { ERROR_CONTEXT_INVOKE, -ECONNREFUSED, DAPR_ERR_DIRECT_INVOKE, 500, BUS_ERROR_UNAVAILABLE },
        { ERROR_CONTEXT_INVOKE, -EIO, DAPR_ERR_DIRECT_INVOKE, 500, BUS_ERROR_UNAVAILABLE },
        { ERROR_CONTEXT_INVOKE, -ELOOP, DAPR_ERR_DIRECT_INVOKE, 508, BUS_ERROR_FAILED },
        { ERROR_CONTEXT_INVOKE, 0, DAPR_ERR_DIRECT_INVOKE, 500, BUS_ERROR_FAILED },

        /* invoke_start() refused: a request the block will not make (a verb such as CONNECT) */
        { ERROR_CONTEXT_INVOKE_START, -EINVAL, DAPR_ERR_DIRECT_INVOKE, 400, BUS_ERROR_INVALID_ARGUMENT },
        { ERROR_CONTEXT_INVOKE_START, 0, DAPR_ERR_INTERNAL, 500, BUS_ERROR_FAILED },

        { ERROR_CONTEXT_PUBLISH, -ENODEV, DAPR_ERR_PUBSUB_NOT_CONFIGURED, 400, BUS_ERROR_NO_SUCH_PUBSUB },
        { ERROR_CONTEXT_PUBLISH, -ENOENT, DAPR_ERR_PUBSUB_NOT_FOUND, 404, BUS_ERROR_NO_SUCH_PUBSUB },
        { ERROR_CONTEXT_PUBLISH, -EDESTADDRREQ, DAPR_ERR_TOPIC_NAME_EMPTY, 404, BUS_ERROR_INVALID_ARGUMENT },
        { ERROR_CONTEXT_PUBLISH, -EINVAL, DAPR_ERR_PUBSUB_REQUEST_METADATA, 400, BUS_ERROR_INVALID_ARGUMENT },
        { ERROR_CONTEXT_PUBLISH, -EACCES, DAPR_ERR_PUBSUB_FORBIDDEN, 403, BUS_ERROR_PERMISSION_DENIED },
        /* the CloudEvent could not be built from what was given */
        { ERROR_CONTEXT_PUBLISH, -EBADMSG, DAPR_ERR_PUBSUB_CLOUD_EVENTS_SER, 500, BUS_ERROR_INVALID_ARGUMENT },
        { ERROR_CONTEXT_PUBLISH, 0, DAPR_ERR_PUBSUB_PUBLISH_MESSAGE, 500, BUS_ERROR_FAILED },

        /* The code is the operation's (ERR_STATE_SAVE, ERR_STATE_DELETE, ...); etag problems change the
         * status only, as Dapr does. */
        { ERROR_CONTEXT_STATE, -ESTALE, _DAPR_ERROR_INVALID, 409, BUS_ERROR_ETAG_MISMATCH },
        { ERROR_CONTEXT_STATE, -EINVAL, _DAPR_ERROR_INVALID, 400, BUS_ERROR_INVALID_ARGUMENT },
        { ERROR_CONTEXT_STATE, 0, _DAPR_ERROR_INVALID, 500, BUS_ERROR_FAILED },

        /* daprd answers every refused or failed output binding call 500 ERR_INVOKE_OUTPUT_BINDING. */
        { ERROR_CONTEXT_BINDING, -ENOENT, DAPR_ERR_INVOKE_OUTPUT_BINDING, 500, BUS_ERROR_NO_SUCH_BINDING },
        { ERROR_CONTEXT_BINDING, -EINVAL, DAPR_ERR_INVOKE_OUTPUT_BINDING, 500, BUS_ERROR_INVALID_ARGUMENT },
        { ERROR_CONTEXT_BINDING, -EOPNOTSUPP, DAPR_ERR_INVOKE_OUTPUT_BINDING, 500, BUS_ERROR_NOT_SUPPORTED },
        { ERROR_CONTEXT_BINDING, 0, DAPR_ERR_INVOKE_OUTPUT_BINDING, 500, BUS_ERROR_FAILED },
        /* secrets_lookup(): no secret store at all, no such store (or out of scope, or did not open);
         * secrets_get(): refused by spec.secrets.scopes; the store's answer: -ENOENT no such secret (daprd:
         * ERR_SECRET_GET, 500, for local stores), anything else. */
        { ERROR_CONTEXT_SECRET, -ENODEV, DAPR_ERR_SECRET_STORES_NOT_CONFIGURED, 500, BUS_ERROR_NO_SUCH_STORE },
        { ERROR_CONTEXT_SECRET, -ENXIO, DAPR_ERR_SECRET_STORE_NOT_FOUND, 401, BUS_ERROR_NO_SUCH_STORE },
        { ERROR_CONTEXT_SECRET, -EACCES, DAPR_ERR_PERMISSION_DENIED, 403, BUS_ERROR_PERMISSION_DENIED },
        { ERROR_CONTEXT_SECRET, -ENOENT, DAPR_ERR_SECRET_GET, 500, BUS_ERROR_NO_SUCH_SECRET },
        { ERROR_CONTEXT_SECRET, 0, DAPR_ERR_SECRET_GET, 500, BUS_ERROR_FAILED },
        /* Actors: the code is the operation's (ERR_ACTOR_INVOKE_METHOD, ERR_ACTOR_REMINDER_CREATE, ...)
         * unless the row names one; daprd answers 500 for nearly everything. */
        { ERROR_CONTEXT_ACTOR, -ENODEV, DAPR_ERR_ACTOR_RUNTIME_NOT_FOUND, 500, BUS_ERROR_UNAVAILABLE },
        { ERROR_CONTEXT_ACTOR, -EPERM, DAPR_ERR_ACTOR_REMINDER_NON_HOSTED, 403, BUS_ERROR_PERMISSION_DENIED },
        { ERROR_CONTEXT_ACTOR, -EADDRNOTAVAIL, DAPR_ERR_ACTOR_INSTANCE_MISSING, 400, BUS_ERROR_NO_SUCH_ACTOR },
        { ERROR_CONTEXT_ACTOR, -ENOENT, _DAPR_ERROR_INVALID, 500, BUS_ERROR_NO_SUCH_ACTOR },
        /* ours: an actor's line is full (daprd's is unbounded) */
        { ERROR_CONTEXT_ACTOR, -EBUSY, _DAPR_ERROR_INVALID, 429, BUS_ERROR_UNAVAILABLE },
        { ERROR_CONTEXT_ACTOR, -ETIMEDOUT, _DAPR_ERROR_INVALID, 500, BUS_ERROR_TIMEOUT },
        { ERROR_CONTEXT_ACTOR, -EHOSTDOWN, _DAPR_ERROR_INVALID, 500, BUS_ERROR_UNAVAILABLE },
        { ERROR_CONTEXT_ACTOR, -EAGAIN, _DAPR_ERROR_INVALID, 500, BUS_ERROR_UNAVAILABLE },
        /* multi-host: the actor's owner is another host (gRPC and D-Bus reminder calls are not sent
         * there; HTTP ones are), or a peer's call reached a host that does not own it */
        { ERROR_CONTEXT_ACTOR, -EREMOTE, _DAPR_ERROR_INVALID, 500, BUS_ERROR_UNAVAILABLE },
        { ERROR_CONTEXT_ACTOR, -EREMCHG, _DAPR_ERROR_INVALID, 503, BUS_ERROR_UNAVAILABLE },
        { ERROR_CONTEXT_ACTOR, -EINVAL, _DAPR_ERROR_INVALID, 500, BUS_ERROR_INVALID_ARGUMENT },
        { ERROR_CONTEXT_ACTOR, 0, _DAPR_ERROR_INVALID, 500, BUS_ERROR_FAILED },
        /* Dapr 1.14 (pkg/messages): a bad request is ERR_MALFORMED_REQUEST; a store failure, or a
         * resource id containing "||", is the operation's own code (ERR_TRY_LOCK, ERR_UNLOCK). */
        { ERROR_CONTEXT_LOCK, -ENODEV, DAPR_ERR_LOCK_STORE_NOT_CONFIGURED, 500, BUS_ERROR_NO_SUCH_STORE },
        { ERROR_CONTEXT_LOCK, -ENOENT, DAPR_ERR_LOCK_STORE_NOT_FOUND, 400, BUS_ERROR_NO_SUCH_STORE },
        { ERROR_CONTEXT_LOCK, -EINVAL, DAPR_ERR_MALFORMED_REQUEST, 400, BUS_ERROR_INVALID_ARGUMENT },
        { ERROR_CONTEXT_LOCK, 0, _DAPR_ERROR_INVALID, 500, BUS_ERROR_FAILED },

        { ERROR_CONTEXT_CONFIGSTORE, -ENODEV, DAPR_ERR_CONFIGURATION_STORE_NOT_CONFIGURED, 500,
          BUS_ERROR_NO_SUCH_STORE },
        { ERROR_CONTEXT_CONFIGSTORE, -ENOENT, DAPR_ERR_CONFIGURATION_STORE_NOT_FOUND, 400, BUS_ERROR_NO_SUCH_STORE },
        { ERROR_CONTEXT_CONFIGSTORE, 0, _DAPR_ERROR_INVALID, 500, BUS_ERROR_FAILED },
};

static const char *const context_names[_ERROR_CONTEXT_MAX] = {
        [ERROR_CONTEXT_INVOKE] = "invoke",
        [ERROR_CONTEXT_INVOKE_START] = "invoke-start",
        [ERROR_CONTEXT_PUBLISH] = "publish",
        [ERROR_CONTEXT_STATE] = "state",
        [ERROR_CONTEXT_BINDING] = "binding",
        [ERROR_CONTEXT_SECRET] = "secret",
        [ERROR_CONTEXT_ACTOR] = "actor",
        [ERROR_CONTEXT_LOCK] = "lock",
        [ERROR_CONTEXT_CONFIGSTORE] = "configstore",
};

const char *error_context_to_string(ErrorContext ctx) {
        return ctx >= 0 && ctx < _ERROR_CONTEXT_MAX ? context_names[ctx] : NULL;
}

const ErrorRow *error_lookup(ErrorContext ctx, int error) {
        const ErrorRow *dflt = NULL;
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                if (rows[i].context != ctx)
                        continue;
                if (rows[i].error == error && error != 0)
                        return &rows[i];
                if (rows[i].error == 0)
                        dflt = &rows[i];
        }
        /* Every context has a default row (tests/unit/test-errors.c checks it). */
        return dflt ?: &rows[ELEMENTSOF(rows) - 1];
}

const ErrorRow *error_table(size_t *ret_n) {
        *ret_n = ELEMENTSOF(rows);
        return rows;
}

/* ---- the gRPC column ---- */

enum { /* grpc-status numbers */
        G_UNKNOWN = 2, G_INVALID_ARGUMENT = 3, G_DEADLINE_EXCEEDED = 4, G_NOT_FOUND = 5, G_PERMISSION_DENIED = 7,
        G_RESOURCE_EXHAUSTED = 8, G_FAILED_PRECONDITION = 9, G_ABORTED = 10, G_UNIMPLEMENTED = 12,
        G_INTERNAL = 13, G_UNAVAILABLE = 14, G_UNAUTHENTICATED = 16,
};

/* Dapr's gRPC code per error code (pkg/messages, pkg/api/errors); 0: derive from the HTTP status. */
static const int grpc_codes[_DAPR_ERROR_MAX] = {
        [DAPR_ERR_MALFORMED_REQUEST] = G_INVALID_ARGUMENT,
        [DAPR_ERR_BODY_READ] = G_INVALID_ARGUMENT,
        [DAPR_ERR_BAD_REQUEST] = G_INVALID_ARGUMENT,
        [DAPR_ERR_BODY_TOO_LARGE] = G_RESOURCE_EXHAUSTED,
        [DAPR_ERR_DIRECT_INVOKE_NOT_FOUND] = G_NOT_FOUND,
        [DAPR_ERR_DIRECT_INVOKE] = G_INTERNAL,
        [DAPR_ERR_HEALTH_NOT_READY] = G_INTERNAL,
        [DAPR_ERR_STATE_STORE_NOT_CONFIGURED] = G_FAILED_PRECONDITION,
        [DAPR_ERR_STATE_STORE_NOT_FOUND] = G_INVALID_ARGUMENT,
        [DAPR_ERR_STATE_GET] = G_INTERNAL,
        [DAPR_ERR_STATE_SAVE] = G_INTERNAL,
        [DAPR_ERR_STATE_DELETE] = G_INTERNAL,
        [DAPR_ERR_STATE_BULK_GET] = G_INTERNAL,
        [DAPR_ERR_STATE_TRANSACTION] = G_INTERNAL,
        [DAPR_ERR_NOT_SUPPORTED_STATE_OPERATION] = G_UNIMPLEMENTED,
        [DAPR_ERR_STATE_STORE_NOT_SUPPORTED] = G_UNIMPLEMENTED,
        [DAPR_ERR_STATE_STORE_TOO_MANY_TRANSACTIONS] = G_INVALID_ARGUMENT,
        [DAPR_ERR_PERMISSION_DENIED] = G_PERMISSION_DENIED,
        [DAPR_ERR_PUBSUB_NOT_CONFIGURED] = G_FAILED_PRECONDITION,
        [DAPR_ERR_PUBSUB_EMPTY] = G_INVALID_ARGUMENT,
        [DAPR_ERR_PUBSUB_NOT_FOUND] = G_INVALID_ARGUMENT,
        [DAPR_ERR_TOPIC_NAME_EMPTY] = G_INVALID_ARGUMENT,
        [DAPR_ERR_PUBSUB_REQUEST_METADATA] = G_INVALID_ARGUMENT,
        [DAPR_ERR_PUBSUB_FORBIDDEN] = G_PERMISSION_DENIED,
        [DAPR_ERR_PUBSUB_PUBLISH_MESSAGE] = G_INTERNAL,
        [DAPR_ERR_PUBSUB_CLOUD_EVENTS_SER] = G_INVALID_ARGUMENT,
        [DAPR_ERR_PUBSUB_EVENTS_SER] = G_INVALID_ARGUMENT,
        [DAPR_ERR_SECRET_STORES_NOT_CONFIGURED] = G_FAILED_PRECONDITION,
        [DAPR_ERR_SECRET_STORE_NOT_FOUND] = G_INVALID_ARGUMENT,
        [DAPR_ERR_LOCK_STORE_NOT_CONFIGURED] = G_FAILED_PRECONDITION,
        [DAPR_ERR_CONFIGURATION_STORE_NOT_CONFIGURED] = G_FAILED_PRECONDITION,
};

static int grpc_from_http(unsigned status) {
        switch (status) {
        case 400: return G_INVALID_ARGUMENT;
        case 401: return G_UNAUTHENTICATED;
        case 403: return G_PERMISSION_DENIED;
        case 404: return G_NOT_FOUND;
        case 409: return G_ABORTED;
        case 413: return G_RESOURCE_EXHAUSTED;
        case 429: return G_RESOURCE_EXHAUSTED;
        case 501: return G_UNIMPLEMENTED;
        case 503: return G_UNAVAILABLE;
        case 504: return G_DEADLINE_EXCEEDED;
        default: return status >= 500 ? G_INTERNAL : G_UNKNOWN;
        }
}

int dapr_error_grpc(DaprError e) {
        if (e < 0 || e >= _DAPR_ERROR_MAX)
                return G_INTERNAL;
        return grpc_codes[e] ?: grpc_from_http(table[e].status);
}

/* Where the context, not the code, decides (the same rows' errnos). */
static const struct {
        ErrorContext context;
        int error;
        int grpc;
} grpc_rows[] = {
        { ERROR_CONTEXT_INVOKE, -EACCES, G_PERMISSION_DENIED },
        { ERROR_CONTEXT_INVOKE, -ETIMEDOUT, G_DEADLINE_EXCEEDED },
        { ERROR_CONTEXT_INVOKE_START, -EINVAL, G_INVALID_ARGUMENT },
        { ERROR_CONTEXT_STATE, -ESTALE, G_ABORTED },
        { ERROR_CONTEXT_STATE, -EINVAL, G_INVALID_ARGUMENT },
};

int error_grpc_status(ErrorContext ctx, int error, DaprError dapr) {
        for (size_t i = 0; i < ELEMENTSOF(grpc_rows); i++)
                if (grpc_rows[i].context == ctx && grpc_rows[i].error == error)
                        return grpc_rows[i].grpc;
        const ErrorRow *row = error_lookup(ctx, error);
        return dapr_error_grpc(row->dapr != _DAPR_ERROR_INVALID ? row->dapr : dapr);
}
