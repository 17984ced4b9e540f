/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's state API over HTTP: parse bodies into StateOps, call the state
 * block, render its answers with Dapr's status codes. Every call is
 * asynchronous: the request is suspended until the driver answers.
 *
 * Values are stored as the compact JSON encoding of the item's "value" (as
 * Dapr does), and GET returns those bytes unchanged.
 *
 * A request that ends before its answer (the client went away) cancels its
 * call in the block (http_request_on_end() -> state_cancel()): queued work is
 * never started. Every done callback unhooks that first, so the block's call
 * and the request end together either way.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../blocks/state.h"
#include "../core/app.h"
#include "../core/registry.h"
#include "../util/strv.h"
#include "handlers.h"
#include "server.h"
#include "state-body.h"

static const char *caller_app(HttpRequest *r) {
        const Caller *c = http_request_caller(r);
        return c->app ? c->app->config->id : NULL;
}

/* Finds the store or answers the error itself (returns < 0 then). */
static int find_store(HttpRequest *r, const char *name, StateStore **ret) {
        int k;
        /* State belongs to an app: an unidentified caller on the shared socket has none. */
        if (!caller_app(r))
                return http_reply_error(r, DAPR_ERR_PERMISSION_DENIED,
                                        "the caller is not an app: use the app's own socket or port, or run in "
                                        "mooring-app@<app-id>.service"),
                       -1;
        k = state_lookup(http_request_registry(r), name, caller_app(r), ret);
        if (k == -ENODEV)
                return http_reply_error(r, DAPR_ERR_STATE_STORE_NOT_CONFIGURED, "state store is not configured"),
                       -1;
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_STATE_STORE_NOT_FOUND, "state store %s is not found", name), -1;
        return 0;
}

static int collect_query_metadata(const char *key, const char *value, void *userdata) {
        const char *k = startswith_ptr(key, "metadata.");
        if (k && *k)
                return json_object_set_new(userdata, k, json_string(value)) < 0 ? -EINVAL : 0;
        return 0;
}

/* metadata.* query arguments as a JSON object (new reference), or NULL on bad encoding. */
static json_t *query_metadata(HttpRequest *r) {
        json_t *md = json_object();
        if (md && http_request_foreach_query(r, collect_query_metadata, md) < 0)
                md = (json_decref(md), NULL);
        return md;
}

/* ---- the request ended before the answer ---- */

static void on_request_end(HttpRequest *r, void *userdata) {
        state_cancel(userdata, r);
}

/* From a done callback: the answer is here, the cancel hook is no longer wanted. */
static HttpRequest *answering(void *userdata) {
        HttpRequest *r = userdata;
        http_request_on_end(r, NULL, NULL);
        return r;
}

/* ---- answers ---- */

static void answer_write(HttpRequest *r, const StateResult *res, DaprError code) {
        if (res->error == 0)
                (void) http_reply_empty(r, 204);
        else if (res->error == -ESTALE) /* the status of etag problems: core/errors.c */
                (void) http_reply_error_status(r, error_lookup(ERROR_CONTEXT_STATE, res->error)->http_status, code,
                                               "possible etag mismatch: %s", strna(res->message));
        else if (res->error == -EINVAL)
                (void) http_reply_error_status(r, error_lookup(ERROR_CONTEXT_STATE, res->error)->http_status, code,
                                               "invalid etag: %s", strna(res->message));
        else
                (void) http_reply_error(r, code, "%s", res->message ?: strerror(-res->error));
}

static void on_saved(const StateResult *res, void *userdata) {
        answer_write(answering(userdata), res, DAPR_ERR_STATE_SAVE);
}

static void on_deleted(const StateResult *res, void *userdata) {
        answer_write(answering(userdata), res, DAPR_ERR_STATE_DELETE);
}

static void on_transacted(const StateResult *res, void *userdata) {
        (void) answering(userdata);
        if (res->error == 0)
                (void) http_reply_empty(userdata, 204);
        else
                (void) http_reply_error(userdata, DAPR_ERR_STATE_TRANSACTION, "error while executing state transaction: %s",
                                        res->message ?: strerror(-res->error));
}

static void format_expiry(uint64_t usec, char *buf, size_t n) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void on_got(const StateResult *res, void *userdata) {
        HttpRequest *r = answering(userdata);
        char expiry[64] = "";

        if (res->error < 0) {
                (void) http_reply_error(r, DAPR_ERR_STATE_GET, "fail to get from state store: %s",
                                        res->message ?: strerror(-res->error));
                return;
        }
        if (!res->value.found) {
                (void) http_reply_empty(r, 204);
                return;
        }
        if (res->value.expire_realtime_usec)
                format_expiry(res->value.expire_realtime_usec, expiry, sizeof expiry);
        const char *headers[] = { "ETag", res->value.etag, "metadata.ttlExpireTime", *expiry ? expiry : NULL, NULL };
        (void) http_reply_headers(r, 200, "application/json", res->value.value, res->value.value_len, headers);
}

/* After starting a block call: answer a bad key, pass other errors up, or wait for done. */
static int started(HttpRequest *r, StateStore *s, int k) {
        if (k == -EINVAL)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "keys must be non-empty and must not contain '||'");
        if (k < 0)
                return k;
        http_request_on_end(r, on_request_end, s);
        http_request_suspend(r);
        return 0;
}

/* A body past the store's bound (state_store_max_ops()), in Dapr's shape. */
static int too_many(HttpRequest *r, DaprError code, const char *err) {
        return http_reply_error_status(r, 400, code, "%s (maxOperationsPerRequest)", err);
}

/* ---- handlers ---- */

int http_state_save(HttpRequest *r, const RouteMatch *m) {
        _cleanup_(json_decrefp) json_t *qmd = NULL;
        _cleanup_free_ char *err = NULL;
        OpList l = {};
        StateStore *s;
        size_t len;
        const char *data = http_request_body(r, &len);
        int k;

        if (find_store(r, m->params[0], &s) < 0)
                return 0;
        qmd = query_metadata(r);
        if (!qmd)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "bad metadata query parameters");
        k = state_body_parse_save(data, len, qmd, state_store_max_ops(s), &l, &err);
        if (k == -ENOMEM)
                return k;
        if (k == -E2BIG)
                return too_many(r, DAPR_ERR_STATE_SAVE, err);
        if (k == -ERANGE)
                return http_reply_error(r, DAPR_ERR_STATE_SAVE, "failed saving state: %s", err);
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "%s", err);
        k = state_write_all(s, caller_app(r), l.ops, l.n, on_saved, r);
        op_list_done(&l);
        return started(r, s, k);
}

int http_state_get(HttpRequest *r, const RouteMatch *m) {
        StateStore *s;
        int k;

        if (find_store(r, m->params[0], &s) < 0)
                return 0;
        k = state_get(s, caller_app(r), m->params[1], on_got, r);
        if (k < 0 && k != -EINVAL)
                return http_reply_error(r, DAPR_ERR_STATE_GET, "fail to get %s from state store %s: %s", m->params[1],
                                        m->params[0], strerror(-k));
        return started(r, s, k);
}

int http_state_delete(HttpRequest *r, const RouteMatch *m) {
        _cleanup_free_ char *conc = http_request_query(r, "concurrency");
        StateStore *s;
        StateOp op = { .kind = STATE_OP_DELETE, .key = m->params[1] };
        const char *etag = http_request_header(r, "If-Match");
        int k;

        if (find_store(r, m->params[0], &s) < 0)
                return 0;
        if (etag && *etag)
                op.etag = etag;
        if (conc && streq(conc, "first-write"))
                op.concurrency = STATE_CONCURRENCY_FIRST_WRITE;
        else if (conc && *conc && !streq(conc, "last-write"))
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "concurrency must be first-write or last-write");
        k = state_write_all(s, caller_app(r), &op, 1, on_deleted, r);
        return started(r, s, k);
}

typedef struct BulkCall {
        HttpRequest *r;
        StateStore *store;     /* borrowed: outlives the call (see state_cancel()) */
        char **keys;
        size_t n;
} BulkCall;

static void bulk_call_free(BulkCall *b) {
        strv_free(b->keys);
        free(b);
}

static void on_bulk_request_end(HttpRequest *r, void *userdata) {
        BulkCall *b = userdata;
        /* No answer comes after this: the call is ours to free. */
        state_cancel(b->store, b);
        bulk_call_free(b);
}

/* The stored bytes as a JSON value: embedded when they are JSON, else a string. */
static json_t *stored_as_json(const StateValue *v) {
        json_t *j = json_loadb(v->value, v->value_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        return j ?: json_stringn(v->value, v->value_len) ?: json_string("");
}

static void on_bulk(const StateResult *results, size_t n, const StateResult *failed, void *userdata) {
        BulkCall *b = userdata;
        json_t *a = NULL;

        http_request_on_end(b->r, NULL, NULL);
        if (failed) { /* as daprd: the get as a whole, 500, with the error's own text */
                (void) http_reply_error(b->r, DAPR_ERR_STATE_BULK_GET, "%s",
                                        failed->message ?: strerror(-failed->error));
                return bulk_call_free(b);
        }
        a = json_array();
        for (size_t i = 0; a && i < n; i++) {
                const StateResult *res = &results[i];
                json_t *item = json_pack("{s:s}", "key", b->keys[i]);
                if (!item)
                        continue;
                if (res->error < 0)
                        json_object_set_new(item, "error", json_string(res->message ?: strerror(-res->error)));
                else if (res->value.found) {
                        json_object_set_new(item, "data", stored_as_json(&res->value));
                        if (res->value.etag)
                                json_object_set_new(item, "etag", json_string(res->value.etag));
                        if (res->value.expire_realtime_usec) {
                                char expiry[64];
                                format_expiry(res->value.expire_realtime_usec, expiry, sizeof expiry);
                                json_object_set_new(item, "metadata",
                                                    json_pack("{s:s}", "ttlExpireTime", expiry));
                        }
                }
                json_array_append_new(a, item);
        }
        (void) http_reply_json(b->r, 200, a);
        bulk_call_free(b);
}

int http_state_bulk(HttpRequest *r, const RouteMatch *m) {
        _cleanup_free_ char *err = NULL;
        StateStore *s;
        size_t len;
        const char *data = http_request_body(r, &len);
        BulkCall *b;
        int k;

        if (find_store(r, m->params[0], &s) < 0)
                return 0;
        b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        b->r = r;
        b->store = s;
        k = state_body_parse_bulk(data, len, state_store_max_ops(s), &b->keys, &err);
        if (k < 0) {
                free(b);
                if (k == -ENOMEM)
                        return k;
                if (k == -E2BIG)
                        return too_many(r, DAPR_ERR_STATE_BULK_GET, err);
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "%s", err);
        }
        b->n = strv_length(b->keys);
        /* All keys at once: the driver queues what it cannot run in parallel. */
        k = state_bulk_get(s, caller_app(r), b->keys, b->n, on_bulk, b);
        if (k < 0) {
                bulk_call_free(b);
                return started(r, s, k);
        }
        http_request_on_end(r, on_bulk_request_end, b);
        http_request_suspend(r);
        return 0;
}

int http_state_transaction(HttpRequest *r, const RouteMatch *m) {
        _cleanup_(json_decrefp) json_t *qmd = NULL;
        _cleanup_free_ char *err = NULL;
        OpList l = {};
        StateStore *s;
        size_t len;
        const char *data = http_request_body(r, &len);
        int k;

        if (find_store(r, m->params[0], &s) < 0)
                return 0;
        if (!(s->driver->features & STATE_FEATURE_TRANSACTIONAL))
                return http_reply_error(r, DAPR_ERR_STATE_STORE_NOT_SUPPORTED,
                                        "state store %s doesn't support transactions", m->params[0]);
        qmd = query_metadata(r);
        if (!qmd)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "bad metadata query parameters");
        k = state_body_parse_transaction(data, len, qmd, state_store_max_ops(s), &l, &err);
        if (k == -ENOMEM)
                return k;
        if (k == -E2BIG)
                return too_many(r, DAPR_ERR_STATE_STORE_TOO_MANY_TRANSACTIONS, err);
        if (k == -ERANGE)
                return http_reply_error(r, DAPR_ERR_STATE_TRANSACTION, "error while executing state transaction: %s",
                                        err);
        if (k == -EOPNOTSUPP)
                return http_reply_error(r, DAPR_ERR_NOT_SUPPORTED_STATE_OPERATION, "%s", err);
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "%s", err);
        k = state_transact(s, caller_app(r), l.ops, l.n, on_transacted, r);
        op_list_done(&l);
        return started(r, s, k);
}
