/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Manager owns everything the daemon runs: the sd-event loop, settings,
 * the app registry, the component set, the HTTP and D-Bus front-ends and the
 * outgoing HTTP client. It starts them, reloads configuration by diffing old
 * against new (unchanged apps keep their listeners and never drop a request),
 * and stops with a bounded drain.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "core/conferr.h"
#include "core/configuration.h"
#include "core/settings.h"
#include "drivers/pubsub/driver.h"
#include "drivers/state/driver.h"
#include "forward.h"

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

/* A Dapr Configuration file as last loaded: c NULL and error set when it is broken. */
typedef struct ConfigurationEntry {
        char *path;
        Configuration *c;
        char *error;        /* "file:line: field 'x': message" */
} ConfigurationEntry;

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

        App **apps;                 /* sorted by id */
        size_t n_apps;
        Component **components;     /* in load order */
        size_t n_components;
        json_t *extended;           /* PUT /v1.0/metadata from unidentified callers */
        StateStore **state_stores;  /* one per state.* component that opened */
        size_t n_state_stores;
        ConfigurationEntry *configurations; /* config.yaml and apps' Configuration= files, by path */
        size_t n_configurations;
        InvokeCall *invoke_calls;   /* every service-invocation call not yet done */
        PubsubBroker **pubsubs;     /* one per pubsub.* component that opened */
        size_t n_pubsubs;
        struct Subscription **subscriptions; /* declarative, from subscriptions/{star}.yaml */
        size_t n_subscriptions;
        struct AppSubscriptions *app_subscriptions; /* programmatic, per app */
        size_t n_app_subscriptions;
        PubsubRunner *pubsub_runners;
        char *instance_id;          /* stable id of this installation (state dir), for broker consumers */

        HttpServer *http;
        HttpListener *api_listener;
        char *api_socket_path;
        Transport *transport;       /* every call into an app */
        sd_bus *bus;
        sd_event_source *bus_retry; /* reconnects after the bus dropped us */

        ActivatedFd *activated;     /* sockets passed by systemd and not yet claimed */
        size_t n_activated;

        sd_event_source *drain_timer;
        uint64_t start_usec;
        unsigned n_config_errors;   /* of the last load */
        unsigned n_config_kept;     /* of those, how many kept a previous version running (reload) */
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
 * are counted in n_config_errors (n_config_kept of them kept a previous version).
 */
int manager_reload(Manager *m);
/* Starts the bounded drain; the loop exits when it ends. */
void manager_stop(Manager *m);

/* Adds an app given over D-Bus. Errors say what was wrong in e. */
int manager_register_app(Manager *m, AppConfig *config_take, ConfError *e);
int manager_unregister_app(Manager *m, const char *id);

App *manager_find_app(Manager *m, const char *id);
bool manager_is_ready(const Manager *m);
/*
 * The Dapr Configuration governing calls to app a: its Configuration= file,
 * else <config dir>/config.yaml. *ret NULL: there is none (everything
 * allowed). -EINVAL when the file is broken or missing where an app named it:
 * *ret_error says why, and calls to a are refused (fail closed).
 */
int manager_app_configuration(Manager *m, const App *a, const Configuration **ret, const char **ret_error);
uint64_t manager_max_body(const Manager *m);
uint64_t manager_uptime_sec(const Manager *m);

/* For blocks that load configuration: log like the Manager does (counts the error). */
void manager_log_conf_error(Manager *m, const ConfError *e);
/* A bad file or document whose previous version stays running: a warning that says so (counts the
 * error, and the kept version). */
void manager_log_conf_kept(Manager *m, const ConfError *e);
/* Sorted list of dir/NAME ending in one of suffixes; a missing dir is empty. */
int manager_list_dir(const char *dir, const char *const *suffixes, char ***ret);

/* Callbacks from the front-ends and the app channel. */
void manager_on_http_drained(Manager *m);
void manager_on_app_health_changed(Manager *m, App *a);

const char *manager_state_to_string(ManagerState s);
const char *manager_bus_mode_to_string(BusMode b);
BusMode manager_bus_mode_from_string(const char *s);
