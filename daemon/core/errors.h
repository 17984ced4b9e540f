/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one error table of the daemon. Blocks fail with a negative errno; this
 * module turns it, in the context of the operation (an invocation, a publish,
 * a state call), into what each front-end answers: Dapr's error code
 * (ERR_*), the HTTP status, and the D-Bus error name (and, when the gRPC
 * front-end lands, a gRPC status column). Blocks never pick any of these;
 * front-ends look them up here instead of keeping switches of their own.
 *
 * Dapr's codes and the status Dapr answers each with are defined once here
 * too (http/errors.h is this header, for the HTTP handlers).
 */
#pragma once

#include <errno.h>
#include <stddef.h>

typedef enum DaprError {
        DAPR_ERR_MALFORMED_REQUEST,
        DAPR_ERR_BODY_READ,
        DAPR_ERR_BAD_REQUEST,
        DAPR_ERR_BODY_TOO_LARGE,
        DAPR_ERR_DIRECT_INVOKE_NOT_FOUND,
        DAPR_ERR_DIRECT_INVOKE,       /* 500; 403 when access control denies */
        DAPR_ERR_HEALTH_NOT_READY,
        DAPR_ERR_OUTBOUND_HEALTH_NOT_READY,
        DAPR_ERR_HEALTH_APPID_NOT_MATCH,
        DAPR_ERR_METADATA_GET,
        DAPR_ERR_INTERNAL,
        DAPR_ERR_STATE_STORE_NOT_CONFIGURED,
        DAPR_ERR_STATE_STORE_NOT_FOUND,
        DAPR_ERR_STATE_GET,
        DAPR_ERR_STATE_SAVE,          /* 500; the handler picks 409/400 for etag problems */
        DAPR_ERR_STATE_DELETE,
        DAPR_ERR_STATE_BULK_GET,
        DAPR_ERR_STATE_TRANSACTION,
        DAPR_ERR_NOT_SUPPORTED_STATE_OPERATION,
        DAPR_ERR_STATE_STORE_NOT_SUPPORTED,
        DAPR_ERR_STATE_STORE_TOO_MANY_TRANSACTIONS, /* 400: more operations than the store takes */
        DAPR_ERR_PERMISSION_DENIED,
        DAPR_ERR_PUBSUB_NOT_CONFIGURED,
        DAPR_ERR_PUBSUB_EMPTY,
        DAPR_ERR_PUBSUB_NOT_FOUND,
        DAPR_ERR_TOPIC_NAME_EMPTY,
        DAPR_ERR_PUBSUB_REQUEST_METADATA,
        DAPR_ERR_PUBSUB_FORBIDDEN,
        DAPR_ERR_PUBSUB_PUBLISH_MESSAGE,
        DAPR_ERR_PUBSUB_CLOUD_EVENTS_SER,
        DAPR_ERR_PUBSUB_EVENTS_SER,
        DAPR_ERR_INVOKE_OUTPUT_BINDING,
        DAPR_ERR_API_UNIMPLEMENTED,   /* 501: a Dapr API this mooringd does not serve */
        DAPR_ERR_SECRET_STORES_NOT_CONFIGURED,
        DAPR_ERR_SECRET_STORE_NOT_FOUND,
        DAPR_ERR_SECRET_GET,
        DAPR_ERR_ACTOR_RUNTIME_NOT_FOUND,
        DAPR_ERR_ACTOR_INSTANCE_MISSING,
        DAPR_ERR_ACTOR_INVOKE_METHOD,
        DAPR_ERR_ACTOR_STATE_GET,
        DAPR_ERR_ACTOR_STATE_TRANSACTION_SAVE,
        DAPR_ERR_ACTOR_REMINDER_CREATE,
        DAPR_ERR_ACTOR_REMINDER_GET,
        DAPR_ERR_ACTOR_REMINDER_DELETE,
        DAPR_ERR_ACTOR_REMINDER_NON_HOSTED,
        DAPR_ERR_ACTOR_TIMER_CREATE,
        DAPR_ERR_ACTOR_TIMER_DELETE,
        DAPR_ERR_STATE_QUERY,
        DAPR_ERR_LOCK_STORE_NOT_CONFIGURED,
        DAPR_ERR_LOCK_STORE_NOT_FOUND,
        DAPR_ERR_TRY_LOCK,
        DAPR_ERR_UNLOCK,
        DAPR_ERR_CONFIGURATION_STORE_NOT_CONFIGURED,
        DAPR_ERR_CONFIGURATION_STORE_NOT_FOUND,
        DAPR_ERR_CONFIGURATION_GET,
        DAPR_ERR_CONFIGURATION_SUBSCRIBE,
        DAPR_ERR_CONFIGURATION_UNSUBSCRIBE,
        DAPR_ERR_APP_CHANNEL_NIL,
        _DAPR_ERROR_MAX,
        _DAPR_ERROR_INVALID = -EINVAL,
} DaprError;

const char *dapr_error_code(DaprError e);
unsigned dapr_error_status(DaprError e);

/* D-Bus error names of org.mooring.Runtime1 (dbus/org.mooring.Runtime1.xml). */
#define BUS_ERROR_NO_SUCH_APP "org.mooring.Runtime1.Error.NoSuchApp"
#define BUS_ERROR_NO_SUCH_PUBSUB "org.mooring.Runtime1.Error.NoSuchPubsub"
#define BUS_ERROR_NO_SUCH_STORE "org.mooring.Runtime1.Error.NoSuchStore"
#define BUS_ERROR_PERMISSION_DENIED "org.mooring.Runtime1.Error.PermissionDenied"
#define BUS_ERROR_INVALID_ARGUMENT "org.mooring.Runtime1.Error.InvalidArgument"
#define BUS_ERROR_TIMEOUT "org.mooring.Runtime1.Error.Timeout"
#define BUS_ERROR_UNAVAILABLE "org.mooring.Runtime1.Error.Unavailable"
#define BUS_ERROR_ETAG_MISMATCH "org.mooring.Runtime1.Error.EtagMismatch"
#define BUS_ERROR_FAILED "org.mooring.Runtime1.Error.Failed"
#define BUS_ERROR_APP_EXISTS "org.mooring.Runtime1.Error.AppExists"
#define BUS_ERROR_CONFIGURATION_ERRORS "org.mooring.Runtime1.Error.ConfigurationErrors"
#define BUS_ERROR_NOT_SUPPORTED "org.mooring.Runtime1.Error.NotSupported"
#define BUS_ERROR_NO_SUCH_ACTOR "org.mooring.Runtime1.Error.NoSuchActor"
#define BUS_ERROR_RESPONSE_TOO_LARGE "org.mooring.Runtime1.Error.ResponseTooLarge"
#define BUS_ERROR_NO_SUCH_BINDING "org.mooring.Runtime1.Error.NoSuchBinding"
#define BUS_ERROR_NO_SUCH_SECRET "org.mooring.Runtime1.Error.NoSuchSecret"

typedef enum ErrorContext {
        ERROR_CONTEXT_INVOKE,     /* service invocation: the call ended without the callee's answer */
        ERROR_CONTEXT_INVOKE_START, /* service invocation: invoke_start() refused the request */
        ERROR_CONTEXT_PUBLISH,    /* pub/sub publish: refused or not stored */
        ERROR_CONTEXT_STATE,      /* a state store's answer to a save, delete or transaction */
        ERROR_CONTEXT_BINDING,    /* an output binding call: refused or failed */
        ERROR_CONTEXT_SECRET,     /* secrets: finding the store, the scope check, the store's answer */
        ERROR_CONTEXT_ACTOR,      /* an actor call, actor state, reminder or timer operation */
        ERROR_CONTEXT_LOCK,       /* distributed lock: finding the store, checking the request, the store's answer */
        ERROR_CONTEXT_CONFIGSTORE, /* configuration API (stores of configuration items, not config.yaml) */
        _ERROR_CONTEXT_MAX,
        _ERROR_CONTEXT_INVALID = -EINVAL,
} ErrorContext;

typedef struct ErrorRow {
        ErrorContext context;
        int error;                /* negative errno; 0: the context's row for every other errno */
        DaprError dapr;           /* _DAPR_ERROR_INVALID: the operation's own code (state: get, save, ...) */
        unsigned http_status;     /* what the HTTP front-end answers with */
        const char *bus_error;    /* what the D-Bus front-end answers with */
} ErrorRow;

/* The row for error in ctx: never NULL (an errno without a row of its own gets the context's default). */
const ErrorRow *error_lookup(ErrorContext ctx, int error);
/* Every row, for tests and documentation. */
const ErrorRow *error_table(size_t *ret_n);
const char *error_context_to_string(ErrorContext ctx);

/*
 * The gRPC column (numbers of grpc-status; daemon/grpc/server.h names them). Dapr's status for an
 * error code: its own where Dapr has one, else derived from the HTTP status as Dapr's own mapping
 * does (so an error added without a gRPC entry still answers sensibly).
 */
int dapr_error_grpc(DaprError e);
/* The gRPC status for error in ctx: the context's row where it decides (an etag mismatch is ABORTED,
 * as in Dapr), else the Dapr code's (dapr: the operation's code when the row has none). */
int error_grpc_status(ErrorContext ctx, int error, DaprError dapr);
