/* SPDX-License-Identifier: Apache-2.0 */
/* Route handlers defined outside routes.c, one file per API area. */
#pragma once

#include <jansson.h>

#include "router.h"

/* api-state.c: Dapr's state API */
int http_state_save(HttpRequest *r, const RouteMatch *m);
int http_state_get(HttpRequest *r, const RouteMatch *m);
int http_state_delete(HttpRequest *r, const RouteMatch *m);
int http_state_bulk(HttpRequest *r, const RouteMatch *m);
int http_state_transaction(HttpRequest *r, const RouteMatch *m);
/* api-state-query.c: Dapr's state query API (alpha) */
int http_state_query(HttpRequest *r, const RouteMatch *m);

/* api-invoke.c: Dapr's service invocation */
int http_invoke(HttpRequest *r, const RouteMatch *m);
/* For an unrouted path: 1 when a dapr-app-id header (or Basic credential) named a target and the
 * call started or was answered, 0 when none did (the caller answers 404), < 0 on error. */
int http_invoke_by_header(HttpRequest *r);

/* api-pubsub.c: Dapr's publish API */
int http_publish(HttpRequest *r, const RouteMatch *m);
int http_publish_bulk(HttpRequest *r, const RouteMatch *m);
int http_publish_no_topic(HttpRequest *r, const RouteMatch *m);

/* admin-dashboard.c: the dashboard's files and the admin routes' extra fields */
int http_get_dashboard(HttpRequest *r, const RouteMatch *m);
int http_get_recent_logs(HttpRequest *r, const RouteMatch *m);
void http_admin_app_extra(const App *a, json_t *o);
void http_admin_component_extra(Registry *reg, const Component *c, json_t *o);

/* admin-metrics.c: GET /metrics (Prometheus text format) */
int http_get_metrics(HttpRequest *r, const RouteMatch *m);
/* api-bindings.c: Dapr's output binding API */
int http_binding_invoke(HttpRequest *r, const RouteMatch *m);

/* api-secrets.c: Dapr's secrets API */
int http_secret_get(HttpRequest *r, const RouteMatch *m);
int http_secret_bulk(HttpRequest *r, const RouteMatch *m);
/* api-actors.c: Dapr's actor API, and the admin view of actors */
int http_actor_method(HttpRequest *r, const RouteMatch *m);
int http_peer_actor_release(HttpRequest *r, const RouteMatch *m);
int http_actor_state_get(HttpRequest *r, const RouteMatch *m);
int http_actor_state_transaction(HttpRequest *r, const RouteMatch *m);
int http_actor_reminder_set(HttpRequest *r, const RouteMatch *m);
int http_actor_reminder_get(HttpRequest *r, const RouteMatch *m);
int http_actor_reminder_delete(HttpRequest *r, const RouteMatch *m);
int http_actor_timer_set(HttpRequest *r, const RouteMatch *m);
int http_actor_timer_delete(HttpRequest *r, const RouteMatch *m);
int http_actors_admin_types(HttpRequest *r, const RouteMatch *m);
/* admin-cluster.c */
int http_get_cluster(HttpRequest *r, const RouteMatch *m);
int http_get_peer_self(HttpRequest *r, const RouteMatch *m);
/* admin-resiliency.c */
int http_get_resiliency(HttpRequest *r, const RouteMatch *m);
int http_actors_admin_reminders(HttpRequest *r, const RouteMatch *m);
/* api-lock.c: Dapr's distributed lock API (alpha) */
int http_lock(HttpRequest *r, const RouteMatch *m);
int http_unlock(HttpRequest *r, const RouteMatch *m);

/* api-configuration.c: Dapr's configuration API (stores of items; not config.yaml) */
int http_configuration_get(HttpRequest *r, const RouteMatch *m);
int http_configuration_subscribe(HttpRequest *r, const RouteMatch *m);
int http_configuration_unsubscribe(HttpRequest *r, const RouteMatch *m);
