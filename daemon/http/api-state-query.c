/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's state query API (alpha) over HTTP: POST/PUT
 * /v1.0-alpha1/state/{store}/query with the query as the body. daprd answers
 * 200 {"results":[{"key","data","etag"}],"token"} with data as the stored
 * JSON, 204 with no body when nothing matched, and every failure as 500
 * ERR_STATE_QUERY (a body it cannot parse included) or
 * ERR_STATE_STORE_NOT_SUPPORTED. The block (blocks/state-query.c) parses
 * and runs the query.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/state-query.h"
#include "../blocks/state.h"
#include "../core/app.h"
#include "../core/registry.h"
#include "../util/cleanup.h"
#include "handlers.h"
#include "server.h"

typedef struct QueryRequest {
        HttpRequest *request;
        StateQueryCall *call;
        uint64_t offset, limit;
} QueryRequest;

static void on_request_end(HttpRequest *r, void *userdata) {
        QueryRequest *qr = userdata;
        state_query_cancel(qr->call);
        free(qr);
}

static json_t *item_json(const StateQueryItem *it) {
        json_error_t e;
        json_t *data = json_loadb(it->value, it->value_len, JSON_DECODE_ANY, &e);
        json_t *j = json_pack("{s:s}", "key", state_unscope_key(it->key));

        if (!j) {
                json_decref(data);
                return NULL;
        }
        /* daprd hands the bytes over as raw JSON; bytes that are not JSON get the item's error field */
        json_object_set_new(j, "data", data ?: json_null());
        if (!data)
                json_object_set_new(j, "error", json_string("the stored value is not JSON"));
        if (it->etag)
                json_object_set_new(j, "etag", json_string(it->etag));
        return j;
}

static void on_queried(const StateQueryResult *res, void *userdata) {
        QueryRequest *qr = userdata;
        HttpRequest *r = qr->request;
        json_t *results, *j;
        uint64_t offset = qr->offset, limit = qr->limit;

        http_request_on_end(r, NULL, NULL);
        free(qr);
        if (res->error < 0) {
                (void) http_reply_error(r, DAPR_ERR_STATE_QUERY, "failed query in state store: %s",
                                        res->message ?: strerror(-res->error));
                return;
        }
        if (res->n_items == 0) {
                (void) http_reply_empty(r, 204);
                return;
        }
        results = json_array();
        for (size_t i = 0; results && i < res->n_items; i++)
                if (json_array_append_new(results, item_json(&res->items[i])) < 0)
                        results = (json_decref(results), NULL);
        j = json_pack("{s:o*}", "results", results);
        if (j && limit > 0) {
                /* daprd's SQL stores: the token is the offset of the next page */
                char token[32];
                snprintf(token, sizeof token, "%" PRIu64, offset + res->n_items);
                json_object_set_new(j, "token", json_string(token));
        }
        (void) http_reply_json(r, 200, j);
}

int http_state_query(HttpRequest *r, const RouteMatch *m) {
        const Caller *c = http_request_caller(r);
        const char *app = c->app ? c->app->config->id : NULL;
        _cleanup_free_ char *err = NULL;
        StateQuery *q = NULL;
        QueryRequest *qr;
        StateStore *s;
        size_t len;
        const void *body = http_request_body(r, &len);
        int k;

        if (!app)
                return http_reply_error(r, DAPR_ERR_PERMISSION_DENIED,
                                        "the caller is not an app: use the app's own socket or port, or run in "
                                        "mooring-app@<app-id>.service");
        k = state_lookup(http_request_registry(r), m->params[0], app, &s);
        if (k == -ENODEV)
                return http_reply_error(r, DAPR_ERR_STATE_STORE_NOT_CONFIGURED, "state store is not configured");
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_STATE_STORE_NOT_FOUND, "state store %s is not found",
                                        m->params[0]);
        if (!(s->driver->features & STATE_FEATURE_QUERY))
                return http_reply_error(r, DAPR_ERR_STATE_STORE_NOT_SUPPORTED,
                                        "state store %s doesn't support query", m->params[0]);
        k = state_query_parse(body, len, &q, &err);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_STATE_QUERY,
                                        "failed query in state store %s: failed to parse JSON query body: %s",
                                        m->params[0], strna(err));
        qr = calloc(1, sizeof *qr);
        if (!qr) {
                state_query_free(q);
                return -ENOMEM;
        }
        *qr = (QueryRequest){ .request = r, .offset = q->offset, .limit = q->limit };
        k = state_query(s, app, q, on_queried, qr, &qr->call);
        state_query_free(q);
        if (k < 0) {
                free(qr);
                return http_reply_error(r, DAPR_ERR_STATE_QUERY, "failed query in state store %s: %s", m->params[0],
                                        strerror(-k));
        }
        http_request_on_end(r, on_request_end, qr);
        http_request_suspend(r);
        return 0;
}
