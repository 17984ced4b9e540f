/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See registry.h. The registry only holds and finds; it starts nothing and
 * opens no socket. The one thing it loads itself is the Configuration cache,
 * because a lookup (registry_app_configuration()) may have to read a file the
 * first time an app names it.
 *
 * Hooks are a singly linked list per event. A removal during a dispatch only
 * marks the hook dead (the running loop may hold a pointer to it or to its
 * successor); the dead ones are unlinked once the outermost dispatch ends.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../drivers/bindings/driver.h"
#include "../drivers/pubsub/driver.h"
#include "../drivers/state/driver.h"
#include "../util/fileio.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "app.h"
#include "component.h"
#include "metrics.h"
#include "registry.h"
#include "resiliency.h"

struct RegistryHook {
        RegistryAppFn fn;
        void *userdata;
        bool dead;
        RegistryHook *next;
};

static const char *const event_names[_REGISTRY_EVENT_MAX] = {
        [REGISTRY_APP_HEALTH_CHANGED] = "app-health-changed",
        [REGISTRY_APP_REMOVED] = "app-removed",
};

const char *registry_event_to_string(RegistryEvent ev) {
        return ev >= 0 && ev < _REGISTRY_EVENT_MAX ? event_names[ev] : NULL;
}

Registry *registry_new(sd_event *e) {
        Registry *r = calloc(1, sizeof *r);
        if (!r)
                return NULL;
        r->extended = json_object();
        r->metrics = app_metrics_new();
        if (!r->extended || !r->metrics) {
                json_decref(r->extended);
                app_metrics_free(r->metrics);
                free(r);
                return NULL;
        }
        r->event = sd_event_ref(e);
        return r;
}

static void configuration_entries_free(ConfigurationEntry *l, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(l[i].path);
                configuration_free(l[i].c);
                free(l[i].error);
        }
        free(l);
}

Registry *registry_free(Registry *r) {
        if (!r)
                return NULL;
        /* The owner emptied the app list through registry_remove_app() (listeners close there); what
         * is left here had no one to tell. */
        for (size_t i = 0; i < r->n_apps; i++) {
                r->apps[i]->registry = NULL;
                app_unref(r->apps[i]);
        }
        free(r->apps);
        for (size_t i = 0; i < r->n_components; i++)
                component_unref(r->components[i]);
        free(r->components);
        free(r->state_stores);
        free(r->lock_stores);
        free(r->config_stores);
        free(r->pubsubs);
        free(r->bindings);
        free(r->secret_stores);
        strv_free(r->component_errors);
        resiliency_unref(r->resiliency);
        configuration_entries_free(r->configurations, r->n_configurations);
        json_decref(r->extended);
        app_metrics_free(r->metrics);
        free(r->instance_id);
        free(r->host_id);
        free(r->trust_domain);
        free(r->default_configuration);
        sd_event_source_disable_unref(r->invoke_timer); /* invoke_done() did, unless it never ran */
        for (int ev = 0; ev < _REGISTRY_EVENT_MAX; ev++)
                while (r->hooks[ev]) {
                        RegistryHook *h = r->hooks[ev];
                        r->hooks[ev] = h->next;
                        free(h);
                }
        sd_event_unref(r->event);
        free(r);
        return NULL;
}

/* ---- events ---- */

int registry_add_callback(Registry *r, RegistryEvent ev, RegistryAppFn fn, void *userdata) {
        RegistryHook **tail = &r->hooks[ev];

        assert(ev >= 0 && ev < _REGISTRY_EVENT_MAX && fn);
        for (; *tail; tail = &(*tail)->next)
                if (!(*tail)->dead && (*tail)->fn == fn && (*tail)->userdata == userdata)
                        return -EEXIST;
        RegistryHook *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        *h = (RegistryHook){ .fn = fn, .userdata = userdata };
        *tail = h;
        return 0;
}

static void sweep(Registry *r, RegistryEvent ev) {
        for (RegistryHook **p = &r->hooks[ev]; *p;) {
                RegistryHook *h = *p;
                if (!h->dead) {
                        p = &h->next;
                        continue;
                }
                *p = h->next;
                free(h);
        }
}

int registry_remove_callback(Registry *r, RegistryEvent ev, RegistryAppFn fn, void *userdata) {
        assert(ev >= 0 && ev < _REGISTRY_EVENT_MAX);
        for (RegistryHook *h = r->hooks[ev]; h; h = h->next) {
                if (h->dead || h->fn != fn || h->userdata != userdata)
                        continue;
                h->dead = true;
                if (r->dispatching == 0)
                        sweep(r, ev);
                return 0;
        }
        return -ENOENT;
}

void registry_notify(Registry *r, RegistryEvent ev, App *a) {
        RegistryHook *last = NULL;

        assert(ev >= 0 && ev < _REGISTRY_EVENT_MAX);
        /* Only the hooks there now: one added by a callback waits for the next event. */
        for (RegistryHook *h = r->hooks[ev]; h; h = h->next)
                last = h;
        if (!last)
                return;
        r->dispatching++;
        for (RegistryHook *h = r->hooks[ev];; h = h->next) {
                if (!h->dead)
                        h->fn(r, a, h->userdata);
                if (h == last)
                        break;
        }
        if (--r->dispatching == 0)
                for (int i = 0; i < _REGISTRY_EVENT_MAX; i++)
                        sweep(r, (RegistryEvent) i);
}

/* ---- apps ---- */

static size_t app_index(Registry *r, const char *id, bool *ret_found) {
        size_t lo = 0, hi = r->n_apps;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = strcmp(r->apps[mid]->config->id, id);
                if (c == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_found = false;
        return lo;
}

App *registry_find_app(Registry *r, const char *id) {
        bool found;
        size_t i = app_index(r, id, &found);
        return found ? r->apps[i] : NULL;
}

App *registry_find_app_by_file(Registry *r, const char *file) {
        for (size_t i = 0; i < r->n_apps; i++)
                if (r->apps[i]->source == APP_SOURCE_FILE && streq_ptr(r->apps[i]->config->file, file))
                        return r->apps[i];
        return NULL;
}

int registry_add_app(Registry *r, App *a) {
        bool found;
        size_t i = app_index(r, a->config->id, &found);
        if (found)
                return -EEXIST;
        App **n = realloc(r->apps, (r->n_apps + 1) * sizeof(App *));
        if (!n)
                return -ENOMEM;
        r->apps = n;
        memmove(r->apps + i + 1, r->apps + i, (r->n_apps - i) * sizeof(App *));
        r->apps[i] = app_ref(a);
        r->n_apps++;
        a->registry = r;
        return 0;
}

App *registry_remove_app(Registry *r, App *a) {
        bool found;
        size_t i = app_index(r, a->config->id, &found);

        assert(found && r->apps[i] == a);
        memmove(r->apps + i, r->apps + i + 1, (r->n_apps - i - 1) * sizeof(App *));
        r->n_apps--;
        /* Blocks end what they run for it (queued calls, subscriptions) while it can still be named. */
        registry_notify(r, REGISTRY_APP_REMOVED, a);
        a->registry = NULL;
        return a;
}

/* ---- state stores and brokers ---- */

StateStore *registry_find_state_store(Registry *r, const char *name) {
        for (size_t i = 0; i < r->n_state_stores; i++)
                if (streq(r->state_stores[i]->component->name, name))
                        return r->state_stores[i];
        return NULL;
}

PubsubBroker *registry_find_pubsub(Registry *r, const char *name) {
        for (size_t i = 0; i < r->n_pubsubs; i++)
                if (streq(r->pubsubs[i]->component->name, name))
                        return r->pubsubs[i];
        return NULL;
}

Binding *registry_find_binding(Registry *r, const char *name) {
        for (size_t i = 0; i < r->n_bindings; i++)
                if (streq(r->bindings[i]->component->name, name))
                        return r->bindings[i];
        return NULL;
}

const char *registry_component_error(const Registry *r, const char *name) {
        for (char **p = r->component_errors; p && p[0] && p[1]; p += 2)
                if (streq(p[0], name))
                        return p[1];
        return NULL;
}

int registry_set_component_error(Registry *r, const char *name, const char *message) {
        for (char **p = r->component_errors; p && p[0] && p[1]; p += 2)
                if (streq(p[0], name)) {
                        char *m = strdup(message);
                        if (!m)
                                return -ENOMEM;
                        free(p[1]);
                        p[1] = m;
                        return 0;
                }
        if (strv_extend(&r->component_errors, name) < 0)
                return -ENOMEM;
        if (strv_extend(&r->component_errors, message) < 0) {
                /* keep the list in pairs */
                size_t n = strv_length(r->component_errors);
                free(r->component_errors[n - 1]);
                r->component_errors[n - 1] = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* ---- configuration errors ---- */

void registry_log_conf_error(Registry *r, const ConfError *e) {
        /* one line (and one count) per error: a file with three errors shows all three at once */
        for (; e; e = e->next) {
                _cleanup_free_ char *s = conf_error_format_one(e);
                r->n_config_errors++;
                log_error("%s", s ?: "configuration error");
        }
}

void registry_log_conf_kept(Registry *r, const ConfError *e) {
        r->n_config_kept++;
        for (; e; e = e->next) {
                _cleanup_free_ char *s = conf_error_format_one(e);
                r->n_config_errors++;
                /* A warning, not an error: nothing stopped working, but the file on disk is not what runs. */
                log_warning("%s; kept the previous version", s ?: "configuration error");
        }
}

/* ---- Dapr Configuration files ---- */

/*
 * Loads path into the cache (once). A missing default config.yaml is "no configuration".
 * previous: the entry of the same path before a reload, or NULL. When the file is now broken
 * (unreadable or invalid, but not removed) and previous held a good Configuration, that one is
 * moved over and stays in force (an accessControl deny included) instead of failing closed.
 */
static ConfigurationEntry *configuration_load(Registry *r, const char *path, bool must_exist,
                                              ConfigurationEntry *previous) {
        _cleanup_free_ char *text = NULL;
        ConfError e = {};
        size_t len;
        int k;

        for (size_t i = 0; i < r->n_configurations; i++)
                if (streq(r->configurations[i].path, path))
                        return &r->configurations[i];
        ConfigurationEntry *l = realloc(r->configurations, (r->n_configurations + 1) * sizeof *l);
        if (!l)
                return NULL;
        r->configurations = l;
        ConfigurationEntry *ce = &l[r->n_configurations];
        *ce = (ConfigurationEntry){ .path = strdup(path) };
        if (!ce->path)
                return NULL;
        r->n_configurations++;

        k = read_full_file(path, SETTINGS_FILE_MAX, &text, &len);
        if (k == -ENOENT && !must_exist)
                return ce;
        if (k < 0)
                conf_error_set(&e, path, 0, NULL, "cannot read: %s", strerror(-k));
        else {
                k = configuration_parse(path, text, len, &ce->c, &e);
                if (k >= 0 && !ce->c && must_exist)
                        k = conf_error_set(&e, path, 0, NULL, "no document of kind Configuration");
        }
        if (k < 0 && k != -ENOENT && previous && previous->c) {
                ce->c = configuration_free(ce->c);
                ce->c = TAKE_PTR(previous->c);
                registry_log_conf_kept(r, &e);
        } else if (k < 0) {
                ce->c = configuration_free(ce->c);
                ce->error = conf_error_format(&e);
                registry_log_conf_error(r, &e);
                if (ce->c == NULL && !ce->error)
                        ce->error = strdup(path);
        }
        conf_error_done(&e);
        return ce;
}

static ConfigurationEntry *configuration_find(ConfigurationEntry *l, size_t n, const char *path) {
        for (size_t i = 0; i < n; i++)
                if (streq(l[i].path, path))
                        return &l[i];
        return NULL;
}

void registry_reload_configurations(Registry *r) {
        _cleanup_free_ char *path = NULL;
        ConfigurationEntry *old = TAKE_PTR(r->configurations);
        size_t n_old = r->n_configurations;

        /* Everything is read again; the old entries are only a fallback for files now broken. */
        r->n_configurations = 0;
        if (asprintf(&path, "%s/config.yaml", r->config_dir) >= 0)
                (void) configuration_load(r, path, false, configuration_find(old, n_old, path));
        for (size_t i = 0; i < r->n_apps; i++) {
                const char *p = r->apps[i]->config->configuration;
                if (p)
                        (void) configuration_load(r, p, true, configuration_find(old, n_old, p));
        }
        configuration_entries_free(old, n_old);
        registry_refresh_metrics(r);
}

/* Dapr's sampling rate when a Configuration does not say (see blocks/invoke.c). */
static double sampling_rate(const Configuration *c) {
        return c && c->tracing.sampling_rate_set ? c->tracing.sampling_rate : 0.0001;
}

const Configuration *registry_host_configuration(Registry *r) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/config.yaml", r->config_dir) < 0)
                return NULL;
        ConfigurationEntry *ce = configuration_find(r->configurations, r->n_configurations, path);
        return ce ? ce->c : NULL;
}

/* spec.metric.enabled and the sampling rate of each app's Configuration (config.yaml for callers
 * that are no app). */
void registry_refresh_metrics(Registry *r) {
        const Configuration *host = registry_host_configuration(r);
        app_metrics_set_enabled(r->metrics, !(host && host->metric_disabled));
        r->trace_rate = sampling_rate(host);
        for (size_t i = 0; i < r->n_apps; i++) {
                const Configuration *c = NULL;
                const char *err = NULL;
                if (registry_app_configuration(r, r->apps[i], &c, &err) >= 0) {
                        app_metrics_set_enabled(r->apps[i]->metrics, !(c && c->metric_disabled));
                        r->apps[i]->trace_rate = sampling_rate(c);
                }
        }
}

int registry_app_configuration(Registry *r, const App *a, const Configuration **ret, const char **ret_error) {
        const char *path = a->config->configuration;
        /* Every call asks: the path is made once (the config directory never changes). */
        if (!path) {
                if (!r->default_configuration &&
                    asprintf(&r->default_configuration, "%s/config.yaml", r->config_dir) < 0) {
                        r->default_configuration = NULL;
                        return -ENOMEM;
                }
                path = r->default_configuration;
        }
        ConfigurationEntry *ce = configuration_load(r, path, a->config->configuration != NULL, NULL);
        if (!ce)
                return -ENOMEM;
        if (ce->error) {
                *ret_error = ce->error;
                return -EINVAL;
        }
        *ret = ce->c;
        return 0;
}
