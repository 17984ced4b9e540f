/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The route table and the handlers of the foundation: health, metadata and the
 * admin routes of the shared socket. Handlers translate between HTTP and the
 * registry's model (the Manager only for its lifecycle state and counters);
 * they decide nothing the D-Bus front-end would decide differently.
 */
#include <errno.h>
#include <string.h>

#include "../blocks/actors.h"
#include "../blocks/pubsub.h"
#include "../blocks/state.h"
#include "../core/app.h"
#include "../core/component.h"
#include "../core/identity.h"
#include "../core/subscription.h"
#include "../manager.h"
#include "../util/cleanup.h"
#include "../transport/app-channel.h"
#include "handlers.h"
#include "router.h"
#include "server.h"

/* The Dapr API level we answer as; SDKs read it only for display. */
#define DAPR_COMPAT_VERSION "1.14.0"
#define METADATA_VALUE_MAX (64 * 1024)
#define METADATA_KEYS_MAX 256

static int get_healthz(HttpRequest *r, const RouteMatch *m) {
        Manager *mg = http_request_manager(r);
        const Caller *c = http_request_caller(r);
        _cleanup_free_ char *appid = http_request_query(r, "appid");

        if (!manager_is_ready(mg))
                return http_reply_error(r, DAPR_ERR_HEALTH_NOT_READY, "mooringd is %s",
                                        manager_state_to_string(mg->state));
        if (appid && (!c->app || !streq(appid, c->app->config->id)))
                return http_reply_error(r, DAPR_ERR_HEALTH_APPID_NOT_MATCH,
                                        "app id '%s' does not match this caller's app id '%s'", appid,
                                        c->app ? c->app->config->id : "");
        return http_reply_empty(r, 204);
}

static int get_healthz_outbound(HttpRequest *r, const RouteMatch *m) {
        Manager *mg = http_request_manager(r);
        if (!manager_is_ready(mg))
                return http_reply_error(r, DAPR_ERR_OUTBOUND_HEALTH_NOT_READY, "mooringd is %s",
                                        manager_state_to_string(mg->state));
        return http_reply_empty(r, 204);
}

static json_t *component_json(Registry *m, const Component *c) {
        json_t *caps = json_array();
        for (size_t i = 0; caps && i < m->n_state_stores; i++)
                if (m->state_stores[i]->component == c)
                        for (const char *const *cap = state_store_capabilities(m->state_stores[i]); *cap; cap++)
                                json_array_append_new(caps, json_string(*cap));
        for (size_t i = 0; caps && i < m->n_pubsubs; i++)
                if (m->pubsubs[i]->component == c && m->pubsubs[i]->driver->subscribe_wildcards)
                        json_array_append_new(caps, json_string("SUBSCRIBE_WILDCARDS"));
        /* Dapr marks the store actors use */
        StateStore *as = actors_state_store(m, NULL);
        if (caps && as && as->component == c)
                json_array_append_new(caps, json_string("ACTOR"));
        return json_pack("{s:s, s:s, s:s, s:o*}", "name", c->name, "type", c->type, "version", c->version,
                         "capabilities", caps);
}

static json_t *app_connection_json(const App *a) {
        const AppConfig *c = a->config;
        json_t *j;

        if (c->address_kind == APP_ADDRESS_NONE)
                return NULL;
        if (c->address_kind == APP_ADDRESS_HTTP)
                j = json_pack("{s:i, s:s, s:s}", "port", (int) c->address_port, "protocol", "http",
                              "channelAddress", c->address_host);
        else
                j = json_pack("{s:s, s:s}", "protocol", "http", "channelAddress", c->app_address);
        if (j && c->health_check_path)
                json_object_set_new(j, "health",
                                    json_pack("{s:s, s:s, s:s, s:i}", "healthCheckPath", c->health_check_path,
                                              "healthProbeInterval", "5s", "healthProbeTimeout", "500ms",
                                              "healthThreshold", 3));
        return j;
}

/* Dapr's metadata entry for one subscription of the calling app. */
static json_t *subscription_json(const Subscription *s) {
        json_t *md = json_object(), *rules = json_array(), *j;

        for (char **p = s->metadata; md && p && p[0] && p[1]; p += 2)
                json_object_set_new(md, p[0], json_string(p[1]));
        /* as Dapr lists them: the rules in order, then the default route as a rule without match */
        for (size_t i = 0; rules && i < s->n_rules; i++) {
                const SubscriptionRule *rule = &s->rules[i];
                json_array_append_new(rules, *rule->match ? json_pack("{s:s, s:s}", "match", rule->match, "path",
                                                                      rule->path)
                                                          : json_pack("{s:s}", "path", rule->path));
        }
        if (rules && s->default_path)
                json_array_append_new(rules, json_pack("{s:s}", "path", s->default_path));
        j = json_pack("{s:s, s:s, s:s}", "pubsubname", s->pubsub, "topic", s->topic, "type",
                      s->declarative ? "DECLARATIVE" : "PROGRAMMATIC");
        if (j && json_object_size(md) > 0)
                json_object_set(j, "metadata", md);
        if (j && json_array_size(rules) > 0)
                json_object_set_new(j, "rules", json_pack("{s:O}", "rules", rules));
        if (j && s->dead_letter_topic && *s->dead_letter_topic)
                json_object_set_new(j, "deadLetterTopic", json_string(s->dead_letter_topic));
        json_decref(md);
        json_decref(rules);
        return j;
}

typedef struct SubscriptionsOf {
        const char *app_id;
        json_t *list;
} SubscriptionsOf;

static void add_subscription_of(const char *app_id, const char *pubsub, const char *topic, const Subscription *s,
                                void *userdata) {
        SubscriptionsOf *so = userdata;
        if (s && app_id && streq(app_id, so->app_id))
                json_array_append_new(so->list, subscription_json(s));
}

static int get_metadata(HttpRequest *r, const RouteMatch *m) {
        Registry *mg = http_request_registry(r);
        const Caller *c = http_request_caller(r);
        const char *id = c->app ? c->app->config->id : "";
        json_t *j, *comps, *ext;

        comps = json_array();
        for (size_t i = 0; comps && i < mg->n_components; i++)
                /* one that failed to load is not there for Dapr (admin API and mooringctl show it) */
                if (!mg->components[i]->load_error &&
                    (component_in_scope(mg->components[i], c->app ? id : NULL) || !c->app))
                        json_array_append_new(comps, component_json(mg, mg->components[i]));

        ext = json_deep_copy(c->app ? c->app->extended : mg->extended);
        if (ext) {
                json_object_set_new(ext, "daprRuntimeVersion", json_string(DAPR_COMPAT_VERSION));
                json_object_set_new(ext, "mooringVersion", json_string(PACKAGE_VERSION));
        }
        j = json_pack("{s:s, s:s, s:[], s:o*, s:o*}", "id", id, "runtimeVersion",
                      DAPR_COMPAT_VERSION "-mooring." PACKAGE_VERSION, "enabledFeatures", "components", comps,
                      "extended", ext);
        if (j && c->app) {
                json_t *acp = app_connection_json(c->app);
                if (acp)
                        json_object_set_new(j, "appConnectionProperties", acp);
                /* what runs now for this app, declarative and programmatic; omitted when none (as Dapr) */
                SubscriptionsOf so = { .app_id = id, .list = json_array() };
                if (so.list)
                        pubsub_foreach_subscription(mg, add_subscription_of, &so);
                if (json_array_size(so.list) > 0)
                        json_object_set(j, "subscriptions", so.list);
                json_decref(so.list);
                /* "actors" is deprecated in Dapr but still emitted; actorRuntime is its successor */
                json_t *active = actors_active_json(mg, id);
                if (json_array_size(active) > 0)
                        json_object_set(j, "actors", active);
                json_decref(active);
                json_object_set_new(j, "actorRuntime", actors_runtime_json(mg, id));
        }
        return http_reply_json(r, 200, j);
}

static int put_metadata(HttpRequest *r, const RouteMatch *m) {
        Registry *mg = http_request_registry(r);
        const Caller *c = http_request_caller(r);
        size_t len;
        const char *body = http_request_body(r, &len);
        json_t *v;

        json_t *ext = c->app ? c->app->extended : mg->extended;

        if (!*m->params[0])
                return http_reply_error(r, DAPR_ERR_BAD_REQUEST, "metadata key must not be empty");
        /* Bounded, so no caller can grow the daemon's memory at will. */
        if (len > METADATA_VALUE_MAX)
                return http_reply_error(r, DAPR_ERR_BAD_REQUEST, "metadata value larger than %d bytes",
                                        METADATA_VALUE_MAX);
        if (!json_object_get(ext, m->params[0]) && json_object_size(ext) >= METADATA_KEYS_MAX)
                return http_reply_error(r, DAPR_ERR_BAD_REQUEST, "at most %d metadata keys per app",
                                        METADATA_KEYS_MAX);
        v = json_stringn(body, len);
        if (!v)
                return http_reply_error(r, DAPR_ERR_BAD_REQUEST, "metadata value must be UTF-8 text");
        if (json_object_set_new(ext, m->params[0], v) < 0)
                return -ENOMEM;
        return http_reply_empty(r, 204);
}

/* ---- admin routes (shared socket only) ---- */

static int get_status(HttpRequest *r, const RouteMatch *m) {
        Manager *mg = http_request_manager(r);
        const HttpServerStats *h = http_server_stats(mg->http);
        json_t *j =
                json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
                          "version", PACKAGE_VERSION, "state", manager_state_to_string(mg->state), "apps",
                          (json_int_t) mg->registry->n_apps, "components", (json_int_t) mg->registry->n_components, "uptimeSec",
                          (json_int_t) manager_uptime_sec(mg), "bus", manager_bus_mode_to_string(mg->bus_mode),
                          "http", "connections", (json_int_t) h->connections, "accepted",
                          (json_int_t) h->accepted, "requests", (json_int_t) h->requests, "refusedGlobal",
                          (json_int_t) h->refused_global, "refusedListener", (json_int_t) h->refused_listener,
                          "refusedUser", (json_int_t) h->refused_user, "acceptErrors",
                          (json_int_t) h->accept_errors, "headerTimeouts", (json_int_t) h->header_timeouts,
                          "bodyTimeouts", (json_int_t) h->body_timeouts, "badRequests",
                          (json_int_t) h->bad_requests);
        if (j && mg->dashboard_listener)
                json_object_set_new(j, "dashboardPort", json_integer(mg->settings.dashboard_port));
        if (j && mg->metrics_listener)
                json_object_set_new(j, "metricsPort", json_integer(mg->settings.metrics_port));
        return http_reply_json(r, 200, j);
}

/*
 * GET /mooring/v1/self: what GetApp answers over D-Bus, for the app whose own unit
 * (mooring-app@<id>.service, from the peer's cgroup at accept time) is asking, with its sockets
 * handed to the peer's uid. mooringctl app-exec asks here first: a DynamicUser= unit may not be
 * able to reach the system bus (dbus-daemon run with SYSTEMD_NSS_DYNAMIC_BYPASS=1 could not
 * resolve dynamic uids in a booted Debian 12 container), while this socket knows it by its
 * credentials alone.
 */
static int get_self(HttpRequest *r, const RouteMatch *m) {
        const Caller *c = http_request_caller(r);
        _cleanup_free_ char *unit_app = NULL;

        if (!c->has_cred || !c->app || !c->unit || !identity_app_from_unit(c->unit, &unit_app) ||
            !streq_ptr(unit_app, c->app->config->id))
                return http_reply_error_status(r, 403, DAPR_ERR_PERMISSION_DENIED,
                                              "only an app's own unit (mooring-app@<id>.service) may ask for "
                                              "its endpoints here");
        App *a = c->app;
        const AppConfig *cf = a->config;
        app_hand_sockets(a, c->cred.uid, c->unit);
        json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:s}", "appId", cf->id, "appAddress",
                              strempty(cf->app_address), "httpSocket", strempty(a->socket_path), "httpPort",
                              (int) cf->http_port, "grpcSocket", strempty(a->grpc_socket_path), "grpcPort",
                              (int) cf->grpc_port, "health", app_health_to_string(a->health), "exec",
                              strempty(cf->exec), "apiToken", strempty(cf->api_token));
        return http_reply_json(r, 200, o);
}

static int get_apps(HttpRequest *r, const RouteMatch *m) {
        Registry *mg = http_request_registry(r);
        json_t *a = json_array();
        for (size_t i = 0; a && i < mg->n_apps; i++) {
                const App *app = mg->apps[i];
                json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:i, s:s, s:s}", "id", app->config->id,
                                      "appAddress", strempty(app->config->app_address), "httpSocket",
                                      strempty(app->socket_path), "httpPort", (int) app->config->http_port,
                                      "grpcSocket", strempty(app->grpc_socket_path), "grpcPort",
                                      (int) app->config->grpc_port, "health", app_health_to_string(app->health),
                                      "source", app_source_to_string(app->source));
                if (o)
                        http_admin_app_extra(app, o); /* unit, concurrency, request count (admin-dashboard.c) */
                json_array_append_new(a, o);
        }
        return http_reply_json(r, 200, a);
}

static int get_components(HttpRequest *r, const RouteMatch *m) {
        Registry *mg = http_request_registry(r);
        json_t *a = json_array();
        for (size_t i = 0; a && i < mg->n_components; i++) {
                const Component *c = mg->components[i];
                json_t *scopes = json_array();
                for (char **s = c->scopes; scopes && s && *s; s++)
                        json_array_append_new(scopes, json_string(*s));
                json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:o*, s:s*}", "name", c->name, "type", c->type,
                                      "version", c->version, "file", c->file, "line", (int) c->line, "scopes", scopes,
                                      "error", c->load_error);
                if (o)
                        http_admin_component_extra(mg, c, o); /* its status (admin-dashboard.c) */
                json_array_append_new(a, o);
        }
        return http_reply_json(r, 200, a);
}

static void add_subscription(const char *app_id, const char *pubsub, const char *topic, const Subscription *s,
                             void *userdata) {
        json_array_append_new(userdata,
                              json_pack("{s:s, s:s, s:s, s:s, s:s}", "app", strempty(app_id), "pubsub", pubsub,
                                        "topic", topic, "route", s ? strempty(s->default_path) : "", "kind",
                                        !s ? "dbus" : s->declarative ? "declarative" : "programmatic"));
}

/* Every running subscription: apps' (declarative, programmatic) and D-Bus subscribers'. */
static int get_subscriptions(HttpRequest *r, const RouteMatch *m) {
        json_t *a = json_array();
        if (a)
                pubsub_foreach_subscription(http_request_registry(r), add_subscription, a);
        return http_reply_json(r, 200, a);
}

static void probe_answer(App *a, bool healthy, long status, const char *error, void *userdata) {
        HttpRequest *r = userdata;
        (void) http_reply_json(r, 200,
                               json_pack("{s:s, s:b, s:s, s:i, s:s*}", "id", a->config->id, "ok", healthy, "health",
                                         app_health_to_string(a->health), "status", (int) status, "error", error));
}

/* Probes the app now through the app channel and answers when the probe is done:
 * the request is suspended meanwhile, the loop keeps serving everyone else. */
static int post_app_probe(HttpRequest *r, const RouteMatch *m) {
        Registry *mg = http_request_registry(r);
        App *a = registry_find_app(mg, m->params[0]);
        int k;

        if (!a)
                return http_reply_error(r, DAPR_ERR_BAD_REQUEST, "no app '%s' is registered", m->params[0]);
        k = app_channel_probe_now(mg, a, probe_answer, r);
        if (k == -EADDRNOTAVAIL)
                return http_reply_error(r, DAPR_ERR_BAD_REQUEST, "app '%s' has no AppAddress to probe",
                                        a->config->id);
        if (k < 0)
                return k;
        http_request_suspend(r);
        return 0;
}

const Route http_routes[] = {
        { "GET", "/v1.0/healthz", ROUTE_NO_TOKEN | ROUTE_HEALTH, get_healthz },
        { "GET", "/v1.0/healthz/outbound", ROUTE_NO_TOKEN | ROUTE_HEALTH, get_healthz_outbound },
        { "GET", "/v1.0/metadata", 0, get_metadata },
        { "PUT", "/v1.0/metadata/{key}", 0, put_metadata },
        { "POST", "/v1.0/state/{store}", 0, http_state_save },
        { "PUT", "/v1.0/state/{store}", 0, http_state_save },
        { "POST", "/v1.0/state/{store}/bulk", 0, http_state_bulk },
        { "PUT", "/v1.0/state/{store}/bulk", 0, http_state_bulk },
        { "POST", "/v1.0/state/{store}/transaction", 0, http_state_transaction },
        { "PUT", "/v1.0/state/{store}/transaction", 0, http_state_transaction },
        { "GET", "/v1.0/state/{store}/{key}", 0, http_state_get },
        { "DELETE", "/v1.0/state/{store}/{key}", 0, http_state_delete },
        { "*", "/v1.0/invoke/{id}/method/{method*}", ROUTE_PEER, http_invoke },
        { "POST", "/v1.0/publish/{pubsub}/{topic*}", 0, http_publish },
        { "PUT", "/v1.0/publish/{pubsub}/{topic*}", 0, http_publish },
        { "POST", "/v1.0/publish/{pubsub}", 0, http_publish_no_topic },
        { "PUT", "/v1.0/publish/{pubsub}", 0, http_publish_no_topic },
        { "POST", "/v1.0/bindings/{name}", 0, http_binding_invoke },
        { "PUT", "/v1.0/bindings/{name}", 0, http_binding_invoke },
        { "POST", "/v1.0-alpha1/publish/bulk/{pubsub}/{topic*}", 0, http_publish_bulk },
        { "GET", "/v1.0/secrets/{store}/bulk", 0, http_secret_bulk },
        { "GET", "/v1.0/secrets/{store}/{name}", 0, http_secret_get },
        { "*", "/v1.0/actors/{type}/{id}/method/{method}", ROUTE_PEER, http_actor_method },
        { "POST", "/mooring/peer/v1/actors/{type}/{id}/release", ROUTE_PEER, http_peer_actor_release },
        { "POST", "/v1.0/actors/{type}/{id}/state", ROUTE_PEER, http_actor_state_transaction },
        { "PUT", "/v1.0/actors/{type}/{id}/state", ROUTE_PEER, http_actor_state_transaction },
        { "GET", "/v1.0/actors/{type}/{id}/state/{key}", ROUTE_PEER, http_actor_state_get },
        { "POST", "/v1.0/actors/{type}/{id}/reminders/{name}", ROUTE_PEER, http_actor_reminder_set },
        { "PUT", "/v1.0/actors/{type}/{id}/reminders/{name}", ROUTE_PEER, http_actor_reminder_set },
        { "GET", "/v1.0/actors/{type}/{id}/reminders/{name}", ROUTE_PEER, http_actor_reminder_get },
        { "DELETE", "/v1.0/actors/{type}/{id}/reminders/{name}", ROUTE_PEER, http_actor_reminder_delete },
        { "POST", "/v1.0/actors/{type}/{id}/timers/{name}", ROUTE_PEER, http_actor_timer_set },
        { "PUT", "/v1.0/actors/{type}/{id}/timers/{name}", ROUTE_PEER, http_actor_timer_set },
        { "DELETE", "/v1.0/actors/{type}/{id}/timers/{name}", ROUTE_PEER, http_actor_timer_delete },
        { "POST", "/v1.0-alpha1/state/{store}/query", 0, http_state_query },
        { "PUT", "/v1.0-alpha1/state/{store}/query", 0, http_state_query },
        { "GET", "/v1.0/configuration/{store}", 0, http_configuration_get },
        { "GET", "/v1.0/configuration/{store}/subscribe", 0, http_configuration_subscribe },
        { "GET", "/v1.0/configuration/{store}/{id}/unsubscribe", 0, http_configuration_unsubscribe },
        { "GET", "/v1.0-alpha1/configuration/{store}", 0, http_configuration_get },
        { "GET", "/v1.0-alpha1/configuration/{store}/subscribe", 0, http_configuration_subscribe },
        { "GET", "/v1.0-alpha1/configuration/{store}/{id}/unsubscribe", 0, http_configuration_unsubscribe },
        { "POST", "/v1.0-alpha1/lock/{store}", 0, http_lock },
        { "POST", "/v1.0-alpha1/unlock/{store}", 0, http_unlock },
        { "GET", "/mooring/v1/status", ROUTE_ADMIN | ROUTE_DASHBOARD, get_status },
        { "GET", "/mooring/v1/apps", ROUTE_ADMIN | ROUTE_DASHBOARD, get_apps },
        { "GET", "/mooring/v1/self", ROUTE_ADMIN, get_self },
        { "GET", "/mooring/v1/components", ROUTE_ADMIN | ROUTE_DASHBOARD, get_components },
        { "GET", "/mooring/v1/subscriptions", ROUTE_ADMIN | ROUTE_DASHBOARD, get_subscriptions },
        { "GET", "/mooring/v1/logs", ROUTE_ADMIN | ROUTE_DASHBOARD, http_get_recent_logs },
        { "GET", "/dashboard/", ROUTE_ADMIN | ROUTE_DASHBOARD | ROUTE_NO_TOKEN, http_get_dashboard },
        { "GET", "/dashboard/{file}", ROUTE_ADMIN | ROUTE_DASHBOARD | ROUTE_NO_TOKEN, http_get_dashboard },
        { "POST", "/mooring/v1/apps/{id}/probe", ROUTE_ADMIN, post_app_probe },
        { "GET", "/metrics", ROUTE_ADMIN | ROUTE_METRICS | ROUTE_NO_TOKEN, http_get_metrics },
        { "GET", "/mooring/v1/actors", ROUTE_ADMIN, http_actors_admin_types },
        { "GET", "/mooring/v1/resiliency", ROUTE_ADMIN | ROUTE_DASHBOARD, http_get_resiliency },
        { "GET", "/mooring/v1/cluster", ROUTE_ADMIN | ROUTE_DASHBOARD, http_get_cluster },
        { "GET", "/mooring/peer/v1/self", ROUTE_PEER, http_get_peer_self },
        { "GET", "/mooring/v1/actors/{type}/{id}/reminders", ROUTE_ADMIN, http_actors_admin_reminders },
};
const size_t http_routes_n = ELEMENTSOF(http_routes);

/*
 * Dapr APIs this mooringd does not serve (issue 14 part 7): a clear error naming the API instead
 * of service invocation's "failed getting app id". Only consulted when http_routes has no match,
 * so a block's real route in http_routes replaces its entry here by itself.
 */
static const char *const missing_api_names[] = {
        "actors", "secrets", "bindings", "configuration", "configuration", "configuration", "distributed lock",
        "distributed lock", "state query", "state query", "cryptography", "workflows", "workflows", "jobs",
        "conversation", "shutdown",
};

static int reply_missing_api(HttpRequest *r, const RouteMatch *m) {
        size_t i = (size_t) (m->route - http_missing_routes);
        return http_reply_error(r, DAPR_ERR_API_UNIMPLEMENTED, "the %s API (%s) is not available in this mooringd",
                                i < ELEMENTSOF(missing_api_names) ? missing_api_names[i] : "requested",
                                m->route->pattern);
}

const Route http_missing_routes[] = {
        { "*", "/v1.0/actors/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0/secrets/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0/bindings/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0/configuration/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0-alpha1/configuration/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0-beta1/configuration/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0-alpha1/lock/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0-alpha1/unlock/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0-alpha1/state/{store}/query", 0, reply_missing_api },
        { "*", "/v1.0-beta1/state/{store}/query", 0, reply_missing_api },
        { "*", "/v1.0-alpha1/crypto/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0-alpha1/workflows/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0-beta1/workflows/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0-alpha1/jobs/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0-alpha1/conversation/{rest*}", 0, reply_missing_api },
        { "*", "/v1.0/shutdown", 0, reply_missing_api },
};
const size_t http_missing_routes_n = ELEMENTSOF(http_missing_routes);
_Static_assert(ELEMENTSOF(missing_api_names) == ELEMENTSOF(http_missing_routes), "one name per missing route");
