/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The RPC tables: one line per RPC mooringd serves, naming the request's
 * type and the translation function. Dapr's service has more RPCs than these
 * (crypto, workflows, jobs, conversation...): those are answered
 * UNIMPLEMENTED until their block exists and adds its line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "../core/errors.h"
#include "../util/cleanup.h"
#include "services.h"

#define DAPR "/dapr.proto.runtime.v1.Dapr/"
#define UNARY(name, type, fn) { DAPR name, GRPC_METHOD_UNARY, &dapr__proto__runtime__v1__##type##__descriptor, fn }

#define CONFIG_STREAM(name)                                                                              \
        { DAPR name, GRPC_METHOD_STREAM, &dapr__proto__runtime__v1__subscribe_configuration_request__descriptor, NULL, \
          grpc_dapr_subscribe_configuration_open, grpc_dapr_subscribe_configuration_message,                     \
          grpc_dapr_subscribe_configuration_half_closed }

static const GrpcMethod dapr_methods[] = {
        UNARY("GetState", get_state_request, grpc_dapr_get_state),
        UNARY("GetBulkState", get_bulk_state_request, grpc_dapr_get_bulk_state),
        UNARY("SaveState", save_state_request, grpc_dapr_save_state),
        UNARY("DeleteState", delete_state_request, grpc_dapr_delete_state),
        UNARY("DeleteBulkState", delete_bulk_state_request, grpc_dapr_delete_bulk_state),
        UNARY("ExecuteStateTransaction", execute_state_transaction_request, grpc_dapr_execute_state_transaction),
        UNARY("InvokeService", invoke_service_request, grpc_dapr_invoke_service),
        UNARY("PublishEvent", publish_event_request, grpc_dapr_publish_event),
        UNARY("BulkPublishEvent", bulk_publish_request, grpc_dapr_bulk_publish_event),
        UNARY("BulkPublishEventAlpha1", bulk_publish_request, grpc_dapr_bulk_publish_event),
        { DAPR "SubscribeTopicEventsAlpha1", GRPC_METHOD_STREAM,
          &dapr__proto__runtime__v1__subscribe_topic_events_request_alpha1__descriptor, NULL,
          grpc_dapr_subscribe_open, grpc_dapr_subscribe_message, grpc_dapr_subscribe_half_closed },
        UNARY("InvokeBinding", invoke_binding_request, grpc_dapr_invoke_binding),
        UNARY("GetSecret", get_secret_request, grpc_dapr_get_secret),
        UNARY("GetBulkSecret", get_bulk_secret_request, grpc_dapr_get_bulk_secret),
        UNARY("InvokeActor", invoke_actor_request, grpc_dapr_invoke_actor),
        UNARY("GetActorState", get_actor_state_request, grpc_dapr_get_actor_state),
        UNARY("ExecuteActorStateTransaction", execute_actor_state_transaction_request,
              grpc_dapr_execute_actor_state_transaction),
        UNARY("RegisterActorReminder", register_actor_reminder_request, grpc_dapr_register_actor_reminder),
        UNARY("UnregisterActorReminder", unregister_actor_reminder_request, grpc_dapr_unregister_actor_reminder),
        UNARY("RegisterActorTimer", register_actor_timer_request, grpc_dapr_register_actor_timer),
        UNARY("UnregisterActorTimer", unregister_actor_timer_request, grpc_dapr_unregister_actor_timer),
        UNARY("TryLockAlpha1", try_lock_request, grpc_dapr_try_lock),
        UNARY("UnlockAlpha1", unlock_request, grpc_dapr_unlock),
        UNARY("GetConfiguration", get_configuration_request, grpc_dapr_get_configuration),
        UNARY("GetConfigurationAlpha1", get_configuration_request, grpc_dapr_get_configuration),
        CONFIG_STREAM("SubscribeConfiguration"),
        CONFIG_STREAM("SubscribeConfigurationAlpha1"),
        UNARY("UnsubscribeConfiguration", unsubscribe_configuration_request, grpc_dapr_unsubscribe_configuration),
        UNARY("UnsubscribeConfigurationAlpha1", unsubscribe_configuration_request,
              grpc_dapr_unsubscribe_configuration),
        UNARY("QueryStateAlpha1", query_state_request, grpc_dapr_query_state),
        UNARY("GetMetadata", get_metadata_request, grpc_dapr_get_metadata),
        UNARY("SetMetadata", set_metadata_request, grpc_dapr_set_metadata),
        UNARY("Shutdown", shutdown_request, grpc_dapr_shutdown),
};

static const GrpcService dapr_service = { dapr_methods, ELEMENTSOF(dapr_methods) };

const GrpcService *const grpc_services[] = {
        &dapr_service,
        NULL,
};

_printf_(4, 0) static int fail_v(GrpcCall *c, int status, DaprError e, const char *fmt, va_list ap) {
        _cleanup_free_ char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        return grpc_call_fail_detail(c, (GrpcCode) status, dapr_error_code(e), "%s", msg ?: "out of memory");
}

int grpc_fail_dapr(GrpcCall *c, DaprError e, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = fail_v(c, dapr_error_grpc(e), e, fmt, ap);
        va_end(ap);
        return r;
}

int grpc_fail_dapr_status(GrpcCall *c, int status, DaprError e, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = fail_v(c, status, e, fmt, ap);
        va_end(ap);
        return r;
}
