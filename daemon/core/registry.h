/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Registry: what the daemon currently knows and runs, apart from how it
 * got there. Apps (sorted by id), components (in load order), the open state
 * stores and pub/sub brokers, the Dapr Configuration cache, the extended
 * metadata of unidentified callers, the subscriptions (declarative and per
 * app) and the service-invocation calls in flight.
 *
 * Blocks and the front-ends' handlers take a Registry, never the Manager.
 * The Manager owns one Registry and fills it (start, reload); it keeps the
 * lifecycle, the settings, the listeners, the bus and the transport.
 *
 * Events that the layers above care about (an app's health changed, an app
 * was removed) are announced through callbacks registered here, sd-event
 * style: whoever cares adds a {fn, userdata} pair, and removes it again.
 * Callbacks run in the order they were added. A callback may remove itself
 * or any other during a dispatch; one added during a dispatch first runs at
 * the next event.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "../forward.h"
#include "conferr.h"
#include "configuration.h"

/* A Dapr Configuration file as last loaded: c NULL and error set when it is broken. */
typedef struct ConfigurationEntry {
        char *path;
        Configuration *c;
        char *error;        /* "file:line: field 'x': message" */
} ConfigurationEntry;

typedef enum RegistryEvent {
        REGISTRY_APP_HEALTH_CHANGED,  /* a->health differs from before; a still registered */
        REGISTRY_APP_REMOVED,         /* a left the registry; a->registry is still set during the call */
        _REGISTRY_EVENT_MAX,
        _REGISTRY_EVENT_INVALID = -EINVAL,
} RegistryEvent;

typedef void (*RegistryAppFn)(Registry *r, App *a, void *userdata);

typedef struct RegistryHook RegistryHook;

struct Registry {
        sd_event *event;            /* ref */
        Transport *transport;       /* borrowed from the Manager: every call into an app */
        const char *config_dir;     /* borrowed from the Manager */
        char *default_configuration; /* <config_dir>/config.yaml, made once */
        const char *state_dir;      /* borrowed from the Manager */
        char *instance_id;          /* stable id of this installation (state dir), for broker consumers */
        char *host_id;              /* [Cluster] HostId=, default the host name (also on a single host) */
        char *trust_domain;         /* [Cluster] TrustDomain=, default "public"; NULL on a single host
                                     * (no PeerListen=): local callers then take the trust domain of
                                     * the callee's accessControl, as before [Cluster] existed */
        bool stopping;              /* the daemon drains: start nothing new */

        App **apps;                 /* refs, sorted by id */
        size_t n_apps;
        Component **components;     /* refs, in load order */
        size_t n_components;
        json_t *extended;           /* PUT /v1.0/metadata from unidentified callers */
        AppMetrics *metrics;        /* series of callers that are no app, and host-wide ones (core/metrics.h) */
        double trace_rate;          /* config.yaml's spec.tracing.samplingRate, for callers that are no app */
        StateStore **state_stores;  /* one per state.* component that opened */
        size_t n_state_stores;
        PubsubBroker **pubsubs;     /* one per pubsub.* component that opened */
        size_t n_pubsubs;
        struct SecretStore **secret_stores; /* one per secretstores.* component that opened */
        size_t n_secret_stores;
        char **component_errors;    /* name, message pairs: components whose store did not open */
        LockStore **lock_stores;    /* one per lock.* component that opened (blocks/lock.c) */
        size_t n_lock_stores;
        ConfigStore **config_stores; /* one per configuration.* component that opened (blocks/configstore.c) */
        size_t n_config_stores;
        ConfigurationEntry *configurations; /* config.yaml and apps' Configuration= files, by path */
        size_t n_configurations;
        InvokeCall *invoke_calls;   /* every service-invocation call not yet done (blocks/invoke.c) */
        /* blocks/invoke.c: the calls with a deadline, earliest first, and one timer for all */
        InvokeCall *invoke_deadline_first, *invoke_deadline_last;
        sd_event_source *invoke_timer;
        unsigned invoke_rr;          /* blocks/invoke.c: where the next call to another host starts */
        uint64_t invoke_timer_usec;  /* when it is set to fire; 0: off */
        struct Subscription **subscriptions; /* declarative, from subscriptions/{star}.yaml */
        size_t n_subscriptions;
        struct AppSubscriptions *app_subscriptions; /* programmatic, per app (blocks/pubsub.c) */
        size_t n_app_subscriptions;
        PubsubRunner *pubsub_runners; /* active subscriptions (blocks/pubsub.c) */
        Binding **bindings;         /* one per bindings.* component that opened */
        size_t n_bindings;
        BindingRunner *binding_runners; /* input bindings read for apps (blocks/bindings.c) */
        struct ActorRuntime *actors;  /* hosted actor types, active actors, reminders (blocks/actors.c) */
        struct Resiliency *resiliency; /* the Resiliency policies in force (core/resiliency.h), ref; NULL: none */
        Membership *membership;     /* the cluster's hosts (core/membership.h), owned by the Manager; NULL: one host */

        unsigned n_config_errors;   /* of the last load */
        unsigned n_config_kept;     /* of those, how many kept a previous version running (reload) */

        RegistryHook *hooks[_REGISTRY_EVENT_MAX];
        unsigned dispatching;       /* > 0 while callbacks run: removal only marks hooks */
};

/* An empty registry on loop e (referenced). NULL on OOM. */
Registry *registry_new(sd_event *e);
/*
 * Frees the registry's own memory: the app references, components, Configuration cache and hooks.
 * The stores, brokers, subscriptions and calls hang off the blocks that own them: those are closed
 * by their owners (the Manager) before. NULL-safe.
 */
Registry *registry_free(Registry *r);
DEFINE_CLEANUP_FUNC(Registry, registry_free);

/* ---- events ---- */

/* Adds fn(userdata) for ev. -ENOMEM, or -EEXIST when the same pair is there already. */
int registry_add_callback(Registry *r, RegistryEvent ev, RegistryAppFn fn, void *userdata);
/* Removes the pair; safe from inside any callback. -ENOENT when it is not there. */
int registry_remove_callback(Registry *r, RegistryEvent ev, RegistryAppFn fn, void *userdata);
/* Runs the callbacks of ev for a (the app channel calls this on a health transition). */
void registry_notify(Registry *r, RegistryEvent ev, App *a);

/* ---- apps ---- */

App *registry_find_app(Registry *r, const char *id);
/* The running app whose apps.d file is file, if any. */
App *registry_find_app_by_file(Registry *r, const char *file);
/* Takes a reference on a, links a->registry. -EEXIST when the id is taken. */
int registry_add_app(Registry *r, App *a);
/*
 * Unlinks a, runs the REGISTRY_APP_REMOVED callbacks, then clears a->registry. The registry's
 * reference moves to the caller, who drops it once done with the app (listeners, sockets).
 */
App *registry_remove_app(Registry *r, App *a);

/* ---- state stores and brokers ---- */

/* The open store of component name, or NULL. Scopes are the caller's matter. */
StateStore *registry_find_state_store(Registry *r, const char *name);
PubsubBroker *registry_find_pubsub(Registry *r, const char *name);
Binding *registry_find_binding(Registry *r, const char *name);

/* Why component name did not open (the last load), or NULL when it did or is unknown. */
const char *registry_component_error(const Registry *r, const char *name);
/* Records (replacing) why component name did not open. -ENOMEM. */
int registry_set_component_error(Registry *r, const char *name, const char *message);

/* ---- Dapr Configuration cache ---- */

/*
 * The Dapr Configuration governing calls to app a: its Configuration= file,
 * else <config dir>/config.yaml. *ret NULL: there is none (everything
 * allowed). -EINVAL when the file is broken or missing where an app named it:
 * *ret_error says why, and calls to a are refused (fail closed).
 */
int registry_app_configuration(Registry *r, const App *a, const Configuration **ret, const char **ret_error);
/*
 * Reads config.yaml and every app's Configuration= file again. A file now broken whose
 * previous version was good keeps that version in force (and is logged as kept).
 */
void registry_reload_configurations(Registry *r);
/* Applies spec.metric.enabled and spec.tracing.samplingRate of the Configurations to every app (done by
 * the reload above). */
void registry_refresh_metrics(Registry *r);
/* config.yaml's Configuration (the host's: trace export), NULL when there is none or it is broken. */
const Configuration *registry_host_configuration(Registry *r);

/* ---- configuration errors ---- */

/* Logs a configuration error and counts it (n_config_errors). */
void registry_log_conf_error(Registry *r, const ConfError *e);
/* A bad file or document whose previous version stays running: a warning that says so (counts the
 * error, and the kept version). */
void registry_log_conf_kept(Registry *r, const ConfError *e);

/* ---- Resiliency (core/resiliency-load.c) ---- */

/* Loads the Resiliency documents again and swaps the set in; a broken document keeps the running set
 * (logged as kept). -ENOMEM. */
int registry_reload_resiliency(Registry *r);

const char *registry_event_to_string(RegistryEvent ev);
