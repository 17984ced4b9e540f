/* SPDX-License-Identifier: Apache-2.0 */
/* See errors.h. Status codes follow Dapr release-1.14 (see shared/reference). */
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
};

const char *dapr_error_code(DaprError e) {
        return e >= 0 && e < _DAPR_ERROR_MAX ? table[e].code : "ERROR";
}

unsigned dapr_error_status(DaprError e) {
        return e >= 0 && e < _DAPR_ERROR_MAX ? table[e].status : 500;
}
