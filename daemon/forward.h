/* SPDX-License-Identifier: Apache-2.0 */
/* Forward declarations so headers stay lean and free of cycles. */
#pragma once

typedef struct App App;
typedef struct AppMetrics AppMetrics;
typedef struct AppSlotWaiter AppSlotWaiter;
typedef struct AppConfig AppConfig;
typedef struct Binding Binding;
typedef struct BindingRunner BindingRunner;
typedef struct Component Component;
typedef struct GrpcListener GrpcListener;
typedef struct GrpcServer GrpcServer;
typedef struct ConfigStore ConfigStore;
typedef struct HttpListener HttpListener;
typedef struct HttpRequest HttpRequest;
typedef struct HttpServer HttpServer;
typedef struct InvokeCall InvokeCall;
typedef struct LockStore LockStore;
typedef struct PeerTls PeerTls;
typedef struct PubsubBroker PubsubBroker;
typedef struct PubsubRunner PubsubRunner;
typedef struct Registry Registry;
typedef struct StateStore StateStore;
typedef struct HttpStream HttpStream;
typedef struct Manager Manager;
typedef struct Membership Membership;
typedef struct Transport Transport;
