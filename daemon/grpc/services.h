/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC services mooringd serves and their translation functions. To add
 * an RPC: write `int grpc_dapr_<name>(GrpcCall *c, const ProtobufCMessage *req)`
 * in the file of its block (grpc/dapr-<block>.c), declare it here, and add one
 * entry to the table in grpc/services.c. Anything not in a table is answered
 * UNIMPLEMENTED.
 */
#pragma once

#include "../core/errors.h"
#include "mooring-proto.h"
#include "server.h"

/* Shorter names for the generated types. */
#define PB(name) Dapr__Proto__Runtime__V1__##name
#define PBC(name) Dapr__Proto__Common__V1__##name

/* Every service's table; NULL-terminated. */
extern const GrpcService *const grpc_services[];

/* Answers with Dapr's gRPC status and error code for e (core/errors.c), message formatted. */
int grpc_fail_dapr(GrpcCall *c, DaprError e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same with the status given. */
int grpc_fail_dapr_status(GrpcCall *c, int status, DaprError e, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* state (dapr-state.c) */
int grpc_dapr_get_state(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_get_bulk_state(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_save_state(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_delete_state(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_delete_bulk_state(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_execute_state_transaction(GrpcCall *c, const ProtobufCMessage *req);

/* invocation (dapr-invoke.c) */
int grpc_dapr_invoke_service(GrpcCall *c, const ProtobufCMessage *req);

/* pub/sub (dapr-pubsub.c) */
int grpc_dapr_publish_event(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_bulk_publish_event(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_subscribe_open(GrpcCall *c);
int grpc_dapr_subscribe_message(GrpcCall *c, const ProtobufCMessage *req);
void grpc_dapr_subscribe_half_closed(GrpcCall *c);

/* output bindings (dapr-bindings.c) */
int grpc_dapr_invoke_binding(GrpcCall *c, const ProtobufCMessage *req);

/* secrets (dapr-secrets.c) */
int grpc_dapr_get_secret(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_get_bulk_secret(GrpcCall *c, const ProtobufCMessage *req);

/* actors (dapr-actors.c) */
int grpc_dapr_invoke_actor(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_get_actor_state(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_execute_actor_state_transaction(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_register_actor_reminder(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_unregister_actor_reminder(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_register_actor_timer(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_unregister_actor_timer(GrpcCall *c, const ProtobufCMessage *req);

/* alpha APIs: lock, configuration, state query (dapr-alpha.c) */
int grpc_dapr_try_lock(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_unlock(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_get_configuration(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_subscribe_configuration_open(GrpcCall *c);
int grpc_dapr_subscribe_configuration_message(GrpcCall *c, const ProtobufCMessage *req);
void grpc_dapr_subscribe_configuration_half_closed(GrpcCall *c);
int grpc_dapr_unsubscribe_configuration(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_query_state(GrpcCall *c, const ProtobufCMessage *req);

/* proxying to a gRPC app's own services (proxy.c): any method not served here, with dapr-app-id */
extern const GrpcMethod grpc_proxy_method;

/* metadata and lifecycle (dapr-metadata.c) */
int grpc_dapr_get_metadata(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_set_metadata(GrpcCall *c, const ProtobufCMessage *req);
int grpc_dapr_shutdown(GrpcCall *c, const ProtobufCMessage *req);
