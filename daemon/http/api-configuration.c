/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's configuration API over HTTP (stable and -alpha1 routes):
 *   GET .../configuration/{store}?key=a&key=b&metadata.x=y    200 {"a":{"value","version","metadata"}}, 204 none
 *   GET .../configuration/{store}/subscribe?key=a             200 {"id":"<id>"}; changes are POSTed to the app
 *   GET .../configuration/{store}/{id}/unsubscribe            200 {"ok":true}; 500 {"message":".."}
 * Answers as daprd 1.14's (pkg/api/http): its codes, its shapes (the
 * unsubscribe failure is no Dapr error body but {"message"}). The block
 * (blocks/configstore.c) does the rest.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/configstore.h"
#include "../core/app.h"
#include "../core/registry.h"
#include "../util/strv.h"
#include "handlers.h"
#include "server.h"

typedef struct Query {
        char **keys;
        char **metadata;
} Query;

static int collect(const char *key, const char *value, void *userdata) {
        Query *q = userdata;
        const char *md = startswith_ptr(key, "metadata.");
        if (streq(key, "key"))
                return strv_extend(&q->keys, value);
        if (md && *md)
                return strv_extend(&q->metadata, md) < 0 ? -ENOMEM : strv_extend(&q->metadata, value);
        return 0;
}

static void query_done(Query *q) {
        strv_free(q->keys);
        strv_free(q->metadata);
}

static const char *caller_app(HttpRequest *r) {
        const Caller *c = http_request_caller(r);
        return c->app ? c->app->config->id : NULL;
}

/* The store, or the error answered (returns < 0). */
static int find_store(HttpRequest *r, const char *name, ConfigStore **ret) {
        int k;
        if (!caller_app(r))
                return http_reply_error(r, DAPR_ERR_PERMISSION_DENIED,
                                        "the caller is not an app: use the app's own socket or port, or run in "
                                        "mooring-app@<app-id>.service"),
                       -1;
        k = configstore_lookup(http_request_registry(r), name, caller_app(r), ret);
        if (k == -ENODEV)
                return http_reply_error(r, DAPR_ERR_CONFIGURATION_STORE_NOT_CONFIGURED,
                                        "configuration stores not configured"),
                       -1;
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_CONFIGURATION_STORE_NOT_FOUND, "configuration store %s not found",
                                        name),
                       -1;
        return 0;
}

/* Dapr's item: value, version, metadata; empty ones left out (Go's omitempty). */
static json_t *item_json(const ConfigItem *it) {
        json_t *j = json_object(), *md = json_object();
        if (!j || !md) {
                json_decref(j);
                json_decref(md);
                return NULL;
        }
        if (it->value && *it->value)
                json_object_set_new(j, "value", json_string(it->value));
        if (it->version && *it->version)
                json_object_set_new(j, "version", json_string(it->version));
        for (char **p = it->metadata; p && p[0] && p[1]; p += 2)
                json_object_set_new(md, p[0], json_string(p[1]));
        if (json_object_size(md) > 0)
                json_object_set(j, "metadata", md);
        json_decref(md);
        return j;
}

typedef struct GetRequest {
        HttpRequest *request;
        ConfigStoreCall *call;
        char *store;
        char *keys;
} GetRequest;

static void get_request_free(GetRequest *g) {
        free(g->store);
        free(g->keys);
        free(g);
}

static void on_request_end(HttpRequest *r, void *userdata) {
        GetRequest *g = userdata;
        configstore_cancel(g->call);
        get_request_free(g);
}

static void on_got(const ConfigResult *res, void *userdata) {
        GetRequest *g = userdata;
        HttpRequest *r = g->request;
        json_t *j;

        http_request_on_end(r, NULL, NULL);
        if (res->error < 0)
                (void) http_reply_error(r, DAPR_ERR_CONFIGURATION_GET, "failed to get %s from Configuration store %s: %s",
                                        strna(g->keys), g->store, res->message ?: strerror(-res->error));
        else if (res->n_items == 0)
                (void) http_reply_empty(r, 204);
        else {
                j = json_object();
                for (size_t i = 0; j && i < res->n_items; i++)
                        json_object_set_new(j, res->items[i].key, item_json(&res->items[i]));
                (void) http_reply_json(r, 200, j);
        }
        get_request_free(g);
}

int http_configuration_get(HttpRequest *r, const RouteMatch *m) {
        _cleanup_(query_done) Query q = {};
        ConfigStore *s;
        GetRequest *g;
        int k;

        if (find_store(r, m->params[0], &s) < 0)
                return 0;
        k = http_request_foreach_query(r, collect, &q);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "malformed query");
        g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        *g = (GetRequest){ .request = r, .store = strdup(m->params[0]), .keys = strv_go_text(q.keys) };
        if (!g->store || !g->keys) {
                get_request_free(g);
                return -ENOMEM;
        }
        k = configstore_get(s, q.keys, q.metadata, on_got, g, &g->call);
        if (k < 0) {
                get_request_free(g);
                return http_reply_error(r, DAPR_ERR_CONFIGURATION_GET, "failed to get from Configuration store %s: %s",
                                        m->params[0], strerror(-k));
        }
        http_request_on_end(r, on_request_end, g);
        http_request_suspend(r);
        return 0;
}

int http_configuration_subscribe(HttpRequest *r, const RouteMatch *m) {
        _cleanup_(query_done) Query q = {};
        _cleanup_free_ char *id = NULL, *err = NULL, *keys = NULL;
        ConfigStore *s;
        int k;

        if (find_store(r, m->params[0], &s) < 0)
                return 0;
        k = http_request_foreach_query(r, collect, &q);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "malformed query");
        k = configstore_subscribe(s, caller_app(r), q.keys, q.metadata, NULL, NULL, &id, &err);
        if (k == -EADDRNOTAVAIL)
                return http_reply_error(r, DAPR_ERR_APP_CHANNEL_NIL,
                                        "app channel is not initialized. cannot subscribe to configuration updates");
        if (k == -ENOMEM)
                return k;
        if (k < 0) {
                keys = strv_go_text(q.keys);
                return http_reply_error(r, DAPR_ERR_CONFIGURATION_SUBSCRIBE,
                                        "failed to subscribe %s from Configuration store %s: %s", strna(keys),
                                        m->params[0],
                                        err ?: k == -EMFILE ? "too many subscriptions of this app" : strerror(-k));
        }
        return http_reply_json(r, 200, json_pack("{s:s}", "id", id));
}

int http_configuration_unsubscribe(HttpRequest *r, const RouteMatch *m) {
        ConfigStore *s;
        _cleanup_free_ char *msg = NULL;

        if (find_store(r, m->params[0], &s) < 0)
                return 0;
        if (configstore_unsubscribe(s, caller_app(r), m->params[1]) == 0)
                return http_reply_json(r, 200, json_pack("{s:b}", "ok", true));
        /* daprd answers this failure with its UnsubscribeConfigurationResponse, not an error body */
        if (asprintf(&msg, "failed to unsubscribe to configuration request %s: subscription with id %s does not exist",
                     m->params[1], m->params[1]) < 0)
                return -ENOMEM;
        return http_reply_json(r, 500, json_pack("{s:s}", "message", msg));
}
