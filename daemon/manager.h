/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Manager runs the daemon's lifecycle: it owns the sd-event loop, the
 * settings, the listeners, the HTTP and D-Bus front-ends, the transport (every
 * call into an app) and the Registry (what is registered and open: apps,
 * components, stores, brokers, Configurations; see core/registry.h). It
 * starts them, reloads configuration by diffing old against new (unchanged
 * apps keep their listeners and never drop a request), and stops with a
 * bounded drain.
 *
 * Nothing below the front-ends includes this header: blocks, core, drivers
 * and transport take the Registry, and tell the Manager what happened through
 * the registry's callbacks (tests/check-includes.sh enforces it).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "core/conferr.h"
#include "core/registry.h"
#include "core/settings.h"
#include "forward.h"
#include "transport/trace-export.h"

typedef enum ManagerState {
        MANAGER_STARTING,
        MANAGER_RUNNING,
        MANAGER_RELOADING,
        MANAGER_STOPPING,
        _MANAGER_STATE_MAX,
} ManagerState;

typedef enum BusMode {
        BUS_MODE_SYSTEM,
        BUS_MODE_SESSION,
        BUS_MODE_NONE,
        _BUS_MODE_MAX,
        _BUS_MODE_INVALID = -EINVAL,
} BusMode;

typedef struct ActivatedFd {
        int fd;
        char *name;
} ActivatedFd;

struct Manager {
        sd_event *event;
        char *config_dir;
        char *state_dir;
        char *runtime_dir;
        BusMode bus_mode;
        int cli_log_level;          /* -1: take the config file's */
        Settings settings;
        ManagerState state;

        Registry *registry;         /* what is registered and open */

        HttpServer *http;
        GrpcServer *grpc;           /* the gRPC API on the apps' grpc.sock and GrpcPort= */
        HttpListener *api_listener;
        HttpListener *metrics_listener;   /* MetricsPort=, NULL when off */
        HttpListener *dashboard_listener; /* DashboardPort=, NULL when off */
        char *api_socket_path;
        Transport *transport;       /* every call into an app */
        PeerTls *peer_tls;          /* [Cluster]: this host's key, certificate, trust root; NULL: one host */
        HttpListener *peer_listener; /* [Cluster] PeerListen=, NULL when off */
        sd_event_source *cert_check; /* [Cluster]: daily look at the certificate's expiry */
        sd_bus *bus;
        sd_event_source *bus_retry; /* reconnects after the bus dropped us */
        struct BusOwnedApp *owned_apps; /* apps registered with Ephemeral=yes, gone with their client (dbus/) */

        ActivatedFd *activated;     /* sockets passed by systemd and not yet claimed */
        size_t n_activated;

        TraceExporter *tracer;      /* spec.tracing of config.yaml; NULL: no export */
        bool exiting;               /* the loop ends once the last spans are out */
        sd_event_source *drain_timer;
        uint64_t start_usec;
};

Manager *manager_new(void);
Manager *manager_free(Manager *m);
DEFINE_CLEANUP_FUNC(Manager, manager_free);

/* Brings every listener and component up, then tells systemd READY=1. */
int manager_start(Manager *m);
/*
 * Re-reads settings, apps, components, Configurations and subscriptions; keeps
 * what did not change, and the running version of whatever is now broken.
 * Returns < 0 only for what stopped the reload (OOM); configuration errors
 * are counted in the registry's n_config_errors (n_config_kept of them kept a
 * previous version).
 */
int manager_reload(Manager *m);
/* Starts the bounded drain; the loop exits when it ends. */
void manager_stop(Manager *m);

/* Adds an app given over D-Bus. Errors say what was wrong in e. */
int manager_register_app(Manager *m, AppConfig *config_take, ConfError *e);
int manager_unregister_app(Manager *m, const char *id);
/* Loads the components again (an app with ResourcesPath= came or went). < 0 only on OOM. */
int manager_reload_components(Manager *m);

bool manager_is_ready(const Manager *m);
uint64_t manager_max_body(const Manager *m);
uint64_t manager_uptime_sec(const Manager *m);

/* manager-membership.c: cluster membership when [Cluster] is on (logs its errors); and its end (withdraws
 * this host's record). */
int manager_membership_start(Manager *m);
void manager_membership_stop(Manager *m);
/* manager-peer.c: [Cluster]'s peer listener and TLS. Start: host id and trust domain into the
 * registry, and with PeerListen= the listener and the TLS files (errors logged; < 0, which stops
 * the start, only for OOM and a listener that cannot bind; without its files the listener refuses
 * every peer). Reload (SIGHUP): the TLS files again (a bad one keeps the old, logged; missing ones
 * at start are looked for again). Free: after the HTTP server and the transport. */
int manager_peer_start(Manager *m);
void manager_peer_reload(Manager *m);
void manager_peer_free(Manager *m);

/* From the HTTP front-end: the last request in flight ended. */
void manager_on_http_drained(Manager *m);

const char *manager_state_to_string(ManagerState s);
const char *manager_bus_mode_to_string(BusMode b);
BusMode manager_bus_mode_from_string(const char *s);
