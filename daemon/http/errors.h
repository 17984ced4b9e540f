/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's HTTP error codes, each with the status Dapr answers it with, defined
 * once here. Handlers name an error and a message; http_reply_error() renders
 * {"errorCode":"ERR_...","message":"..."}.
 */
#pragma once

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
        _DAPR_ERROR_MAX,
} DaprError;

const char *dapr_error_code(DaprError e);
unsigned dapr_error_status(DaprError e);
