/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Service invocation of a gRPC app's own services (Dapr's gRPC proxying): a
 * caller's stream to /pkg.Service/Method with dapr-app-id metadata is opened
 * on the target app's gRPC connection, unary and streaming alike. The same
 * checks as invoke_start(): the target exists, its Configuration's access
 * control allows the caller (operation: the full method name, verb: none, as
 * daprd checks proxied calls), it has an address and is not down, the hop
 * bound; the caller's routing and identity metadata are not forwarded, the
 * callee learns the caller from dapr-caller-app-id, and the W3C trace context
 * is continued (or started).
 */
#pragma once

#include "../forward.h"
#include "../transport/grpc-channel.h"

/*
 * Opens the stream (messages follow with grpc_stream_send(), already framed). metadata: the
 * caller's, pairs. On refusal returns < 0 and sets *reterr_msg (malloc'd): -ENOENT no such app,
 * -EPROTONOSUPPORT the app is not AppProtocol=grpc, -EACCES denied, -EADDRNOTAVAIL no address,
 * -EHOSTDOWN unhealthy, -ELOOP too many hops; -ENOMEM.
 */
int invoke_stream_open(Registry *m, const char *caller_app, const char *target_app, const char *path,
                       char *const *metadata, uint64_t timeout_usec, const GrpcStreamHandler *h, void *userdata,
                       GrpcStream **ret, char **reterr_msg);
