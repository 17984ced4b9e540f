/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Calls into a gRPC app (AppProtocol=grpc) for the transport: a request in the
 * transport's HTTP shape becomes the AppCallback RPC its purpose names, and
 * the RPC's answer comes back in HTTP shape, so the blocks treat HTTP and gRPC
 * apps alike (as daprd's app channel does):
 *
 *   INVOKE         OnInvoke(InvokeRequest{method, data, content_type,
 *                  http_extension{verb, querystring}}), headers as metadata;
 *                  InvokeResponse -> 200 with its content type; a gRPC error
 *                  -> the HTTP status daprd maps it to, body Dapr's status JSON
 *   DELIVERY       OnTopicEvent(TopicEventRequest from the CloudEvent) ->
 *                  200 {"status": SUCCESS|RETRY|DROP}; an error -> 500 (retry)
 *   SUBSCRIPTIONS  ListTopicSubscriptions -> Dapr's /dapr/subscribe JSON;
 *                  UNIMPLEMENTED -> 404 (none)
 *   PROBE          AppCallbackHealthCheck.HealthCheck -> 200, an error status -> its HTTP status
 *   BINDING_PROBE  ListInputBindings -> 200 when it names the binding, else 404
 *   BINDING_EVENT  OnBindingEvent(BindingEventRequest{name, data, metadata}) -> 200;
 *                  an error -> the HTTP status daprd maps it to (the block retries)
 */
#pragma once

#include "grpc-channel.h"
#include "transport.h"

typedef struct GrpcAppCall GrpcAppCall;

/* Called once the call's done has run: the transport frees tc. */
typedef void (*GrpcAppFinishedFn)(TransportCall *tc);

/*
 * Starts the RPC. h and userdata as for transport_call_start(); tc is what the handler's callbacks
 * get. -ENOMEM, or -EINVAL for a request that cannot be translated (nothing started).
 */
int grpc_app_call_start(GrpcChannel *g, const TransportAddress *addr, const TransportRequest *req,
                        const TransportHandler *h, void *userdata, TransportCall *tc, GrpcAppFinishedFn finished,
                        GrpcAppCall **ret);
/* Ends the call now with error (its done runs). */
void grpc_app_call_abort(GrpcAppCall *c, int error);
/* No more callbacks; the RPC is reset. */
void grpc_app_call_cancel(GrpcAppCall *c);
void grpc_app_call_resume(GrpcAppCall *c);
