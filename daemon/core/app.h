/* SPDX-License-Identifier: Apache-2.0 */
/*
 * App: one registered app at run time — its configuration, its listeners
 * (owned by the HTTP front-end, referenced here), its health as seen through
 * the app channel, and the extended metadata it set with PUT /v1.0/metadata.
 *
 * Reference counted: a connection accepted on an app's socket holds the App,
 * so an app removed by a reload still answers the requests already in flight.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "../forward.h"
#include "app-config.h"

typedef enum AppSource {
        APP_SOURCE_FILE,
        APP_SOURCE_BUS,
        _APP_SOURCE_MAX,
} AppSource;

typedef enum AppHealth {
        APP_HEALTH_UNKNOWN,
        APP_HEALTH_HEALTHY,
        APP_HEALTH_UNHEALTHY,
        _APP_HEALTH_MAX,
} AppHealth;

struct App {
        unsigned n_ref;
        Registry *registry;        /* back-reference; NULL once removed from it */
        AppConfig *config;
        AppSource source;
        AppHealth health;
        unsigned probe_failures;
        unsigned probes_before_up; /* probes sent while the app has never been found healthy */
        bool was_healthy;          /* found healthy at least once: probes at the configured interval */
        sd_event_source *probe_timer;
        void *probe_request;       /* in-flight probe (TransportCall), NULL if none */
        HttpListener *listener_unix;
        HttpListener *listener_tcp;
        char *socket_path;         /* runtime_dir/apps/<id>/http.sock */
        GrpcListener *grpc_unix;   /* owned by the gRPC front-end: apps/<id>/grpc.sock */
        GrpcListener *grpc_tcp;    /* loopback GrpcPort=, if set */
        char *grpc_socket_path;    /* runtime_dir/apps/<id>/grpc.sock */
        json_t *extended;          /* PUT /v1.0/metadata/{key} values */
        unsigned slots_active;     /* calls to this app holding a slot (MaxConcurrency=) */
        AppSlotWaiter *slot_waiters; /* calls waiting for a slot, FIFO */
        AppSlotWaiter *slot_waiters_tail;
        AppMetrics *metrics;       /* its series (core/metrics.h), preallocated */
        double trace_rate;         /* spec.tracing.samplingRate of its Configuration */
};

/*
 * MaxConcurrency= (Dapr's app-max-concurrency): every call mooringd makes to an
 * app's routes — service invocation and pub/sub deliveries alike — holds one
 * slot. With no limit every acquire succeeds at once.
 */
struct AppSlotWaiter {
        void (*granted)(AppSlotWaiter *w); /* the slot is now held by the waiter */
        AppSlotWaiter *next;
        bool queued;
};

/* true: the slot is held now. false: w waits in line; granted runs when it is its turn. */
bool app_slot_acquire(App *a, AppSlotWaiter *w);
/* A waiting w leaves the line (no-op when it is not queued). */
void app_slot_cancel(App *a, AppSlotWaiter *w);
/* Gives a held slot back: the first waiter gets it (its granted runs now). */
void app_slot_release(App *a);

App *app_new(AppConfig *config_take, AppSource source);
App *app_ref(App *a);
App *app_unref(App *a);
DEFINE_CLEANUP_FUNC(App, app_unref);

const char *app_source_to_string(AppSource s);
const char *app_health_to_string(AppHealth h);

/*
 * The app's own unit, running as uid, asks for its endpoints (mooringctl app-exec, the ExecStart=
 * of mooring-app@.service): without User= or AllowAnyUser= the app's sockets were created 0600 and
 * ours, because a DynamicUser= unit's uid is only known once it runs; they are handed to uid. The
 * caller must have checked that unit is the app's own, from the peer's cgroup (which it cannot
 * choose). unit is for the log.
 */
void app_hand_sockets(App *a, uid_t uid, const char *unit);

/* Constant-time compare of a presented token with the app's; false when none configured. */
bool app_token_matches(const App *a, const char *presented);
