/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's alpha RPCs of the blocks that came after the gRPC front-end:
 *
 *   TryLockAlpha1, UnlockAlpha1          blocks/lock.h, as http/api-lock.c
 *   GetConfiguration(Alpha1)             blocks/configstore.h, as http/api-configuration.c
 *   SubscribeConfiguration(Alpha1)       a server stream: the first message names the
 *                                        subscription, then one message per change
 *   UnsubscribeConfiguration(Alpha1)     ends that stream (OK); an unknown id is
 *                                        {ok: false, message}, not an error, as daprd answers
 *   QueryStateAlpha1                     blocks/state-query.h, as http/api-state-query.c
 *
 * A streaming subscription is the app's own (it is told through the stream,
 * not through its app channel, so an app without AppAddress can subscribe).
 * It ends when the client leaves or with UnsubscribeConfiguration (the
 * stream then ends OK). A reload that replaces the component frees the
 * block's subscription: the stream stays open without further updates (as
 * an HTTP subscriber hears nothing more either). Updates a client does not
 * read are dropped past the server's send bound, and logged.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/configstore.h"
#include "../blocks/lock.h"
#include "../blocks/state-query.h"
#include "../blocks/state.h"
#include "../core/registry.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "services.h"

/* ---- distributed lock ---- */

static int lock_store(GrpcCall *c, const char *name, const char *resource, const char *owner, int64_t expiry,
                      bool unlocking, LockStore **ret) {
        Registry *reg = grpc_call_registry(c);
        const char *problem;
        int k;

        if (reg->n_lock_stores == 0)
                return grpc_fail_dapr(c, DAPR_ERR_LOCK_STORE_NOT_CONFIGURED, "lock store is not configured"), -1;
        problem = lock_request_problem(resource, owner, expiry, unlocking);
        if (problem) {
                _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wformat-nonliteral\"")
                (void) grpc_fail_dapr(c, DAPR_ERR_MALFORMED_REQUEST, problem, name);
                _Pragma("GCC diagnostic pop") return -1;
        }
        k = lock_lookup(reg, name, grpc_call_app_id(c), ret);
        if (k < 0)
                return grpc_fail_dapr(c, error_lookup(ERROR_CONTEXT_LOCK, k)->dapr, "lock store %s not found", name),
                       -1;
        return 0;
}

typedef struct LockCall {
        GrpcCall *call;
        LockStore *store;
} LockCall;

static void on_lock_cancel(GrpcCall *c, void *userdata) {
        LockCall *lc = userdata;
        lock_cancel(lc->store, lc);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the lock store answered");
        free(lc);
}

static GrpcCall *lock_answering(LockCall *lc) {
        GrpcCall *c = lc->call;
        grpc_call_on_cancel(c, NULL, NULL);
        free(lc);
        return c;
}

static void on_locked(const LockResult *res, void *userdata) {
        GrpcCall *c = lock_answering(userdata);
        if (res->error < 0) {
                (void) grpc_fail_dapr(c, DAPR_ERR_TRY_LOCK, "failed to try acquiring lock: %s",
                                      res->message ?: strerror(-res->error));
                return;
        }
        PB(TryLockResponse) resp = DAPR__PROTO__RUNTIME__V1__TRY_LOCK_RESPONSE__INIT;
        resp.success = res->acquired;
        (void) grpc_call_reply(c, &resp.base);
}

static void on_unlocked(const LockResult *res, void *userdata) {
        GrpcCall *c = lock_answering(userdata);
        if (res->error < 0) {
                (void) grpc_fail_dapr(c, DAPR_ERR_UNLOCK, "failed to release lock: %s",
                                      res->message ?: strerror(-res->error));
                return;
        }
        PB(UnlockResponse) resp = DAPR__PROTO__RUNTIME__V1__UNLOCK_RESPONSE__INIT;
        resp.status = (PB(UnlockResponse__Status)) res->status; /* the block's enum is Dapr's numbering */
        (void) grpc_call_reply(c, &resp.base);
}

static int lock_started(GrpcCall *c, LockCall *lc, int k, bool unlocking, const char *resource) {
        if (k < 0)
                free(lc);
        if (k == -EBADR) /* daprd: a resource id with "||" fails the call, it is no malformed request */
                return grpc_fail_dapr(c, unlocking ? DAPR_ERR_UNLOCK : DAPR_ERR_TRY_LOCK,
                                      "%s: input key/keyPrefix '%s' can't contain '||'",
                                      unlocking ? "failed to release lock" : "failed to try acquiring lock", resource);
        if (k < 0)
                return k;
        grpc_call_on_cancel(c, on_lock_cancel, lc);
        return 0;
}

int grpc_dapr_try_lock(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(TryLockRequest) *req = (const PB(TryLockRequest) *) m;
        LockStore *s;
        LockCall *lc;

        if (lock_store(c, req->store_name, req->resource_id, req->lock_owner, req->expiry_in_seconds, false, &s) < 0)
                return 0;
        lc = calloc(1, sizeof *lc);
        if (!lc)
                return -ENOMEM;
        *lc = (LockCall){ .call = c, .store = s };
        return lock_started(c, lc, lock_try(s, grpc_call_app_id(c), req->resource_id, req->lock_owner,
                                            req->expiry_in_seconds, on_locked, lc),
                            false, req->resource_id);
}

int grpc_dapr_unlock(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(UnlockRequest) *req = (const PB(UnlockRequest) *) m;
        LockStore *s;
        LockCall *lc;

        if (lock_store(c, req->store_name, req->resource_id, req->lock_owner, 0, true, &s) < 0)
                return 0;
        lc = calloc(1, sizeof *lc);
        if (!lc)
                return -ENOMEM;
        *lc = (LockCall){ .call = c, .store = s };
        return lock_started(c, lc, lock_unlock(s, grpc_call_app_id(c), req->resource_id, req->lock_owner, on_unlocked,
                                               lc),
                            true, req->resource_id);
}

/* ---- configuration ---- */

static int config_store(GrpcCall *c, const char *name, ConfigStore **ret) {
        int k = configstore_lookup(grpc_call_registry(c), name, grpc_call_app_id(c), ret);
        if (k == -ENODEV)
                return grpc_fail_dapr(c, DAPR_ERR_CONFIGURATION_STORE_NOT_CONFIGURED,
                                      "configuration stores not configured"),
                       -1;
        if (k < 0)
                return grpc_fail_dapr(c, DAPR_ERR_CONFIGURATION_STORE_NOT_FOUND, "configuration store %s not found",
                                      name),
                       -1;
        return 0;
}

static int config_args(size_t n_keys, char *const *keys, size_t n_md,
                       PB(GetConfigurationRequest__MetadataEntry) *const *md, char ***ret_keys, char ***ret_md) {
        for (size_t i = 0; i < n_keys; i++)
                if (strv_extend(ret_keys, keys[i]) < 0)
                        return -ENOMEM;
        for (size_t i = 0; i < n_md; i++)
                if (strv_extend(ret_md, md[i]->key) < 0 || strv_extend(ret_md, md[i]->value) < 0)
                        return -ENOMEM;
        return 0;
}

/* items as a map<string, ConfigurationItem>; everything in one allocation the caller frees (*ret_mem). The
 * strings are borrowed from items. DataEntry of GetConfigurationResponse and ItemsEntry of
 * SubscribeConfigurationResponse differ in type only: each caller packs its own. */
typedef struct ConfigMap {
        PBC(ConfigurationItem) *items;
        PBC(ConfigurationItem__MetadataEntry) *md;
        PBC(ConfigurationItem__MetadataEntry) **mdp;
} ConfigMap;

static void config_map_done(ConfigMap *m) {
        free(m->items);
        free(m->md);
        free(m->mdp);
}

static int config_map(const ConfigItem *items, size_t n, ConfigMap *m) {
        size_t n_md = 0, j = 0;
        for (size_t i = 0; i < n; i++)
                n_md += strv_length(items[i].metadata) / 2;
        m->items = calloc(n ?: 1, sizeof *m->items);
        m->md = calloc(n_md ?: 1, sizeof *m->md);
        m->mdp = calloc(n_md ?: 1, sizeof *m->mdp);
        if (!m->items || !m->md || !m->mdp)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                PBC(ConfigurationItem) *it = &m->items[i];
                dapr__proto__common__v1__configuration_item__init(it);
                it->value = items[i].value ?: (char *) "";
                it->version = items[i].version ?: (char *) "";
                it->metadata = m->mdp + j;
                for (char **p = items[i].metadata; p && p[0] && p[1]; p += 2) {
                        dapr__proto__common__v1__configuration_item__metadata_entry__init(&m->md[j]);
                        m->md[j].key = p[0];
                        m->md[j].value = p[1];
                        m->mdp[j] = &m->md[j];
                        j++;
                        it->n_metadata++;
                }
        }
        return 0;
}

typedef struct ConfigGet {
        GrpcCall *call;
        ConfigStoreCall *sc;
        char *store;
        char *keys;
} ConfigGet;

static void config_get_free(ConfigGet *g) {
        free(g->store);
        free(g->keys);
        free(g);
}

static void on_config_cancel(GrpcCall *c, void *userdata) {
        ConfigGet *g = userdata;
        configstore_cancel(g->sc);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the configuration store answered");
        config_get_free(g);
}

static void on_config_got(const ConfigResult *res, void *userdata) {
        ConfigGet *g = userdata;
        GrpcCall *c = g->call;
        PB(GetConfigurationResponse) resp = DAPR__PROTO__RUNTIME__V1__GET_CONFIGURATION_RESPONSE__INIT;
        _cleanup_free_ PB(GetConfigurationResponse__ItemsEntry) *e = NULL;
        _cleanup_free_ PB(GetConfigurationResponse__ItemsEntry) **ep = NULL;
        ConfigMap map = {};

        grpc_call_on_cancel(c, NULL, NULL);
        if (res->error < 0) {
                (void) grpc_fail_dapr(c, DAPR_ERR_CONFIGURATION_GET, "failed to get %s from Configuration store %s: %s",
                                      g->keys, g->store, res->message ?: strerror(-res->error));
                goto out;
        }
        e = calloc(res->n_items ?: 1, sizeof *e);
        ep = calloc(res->n_items ?: 1, sizeof *ep);
        if (!e || !ep || config_map(res->items, res->n_items, &map) < 0) {
                (void) grpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < res->n_items; i++) {
                dapr__proto__runtime__v1__get_configuration_response__items_entry__init(&e[i]);
                e[i].key = res->items[i].key;
                e[i].value = &map.items[i];
                ep[i] = &e[i];
        }
        resp.n_items = res->n_items;
        resp.items = ep;
        (void) grpc_call_reply(c, &resp.base);
out:
        config_map_done(&map);
        config_get_free(g);
}

int grpc_dapr_get_configuration(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(GetConfigurationRequest) *req = (const PB(GetConfigurationRequest) *) m;
        _cleanup_strv_free_ char **keys = NULL, **md = NULL;
        ConfigStore *s;
        ConfigGet *g;
        int k;

        if (config_store(c, req->store_name, &s) < 0)
                return 0;
        if (config_args(req->n_keys, req->keys, req->n_metadata, req->metadata, &keys, &md) < 0)
                return -ENOMEM;
        g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        *g = (ConfigGet){ .call = c, .store = strdup(req->store_name), .keys = strv_go_text(keys) };
        if (!g->store || !g->keys) {
                config_get_free(g);
                return -ENOMEM;
        }
        k = configstore_get(s, keys, md, on_config_got, g, &g->sc);
        if (k < 0) {
                config_get_free(g);
                return grpc_fail_dapr(c, DAPR_ERR_CONFIGURATION_GET, "failed to get from Configuration store %s: %s",
                                      req->store_name, strerror(-k));
        }
        grpc_call_on_cancel(c, on_config_cancel, g);
        return 0;
}

/* One streaming subscription: the stream's userdata, and the notify userdata of the block's subscription. */
typedef struct ConfigStream ConfigStream;
struct ConfigStream {
        GrpcCall *call;
        Registry *registry;
        char *app_id;
        char *id;                   /* once subscribed */
        ConfigStream *next, *prev;
};

/* Open streams, for UnsubscribeConfiguration (which arrives on another call). */
static ConfigStream *streams;

/* Ends the block's subscription and frees st: the caller answers the returned call. */
static GrpcCall *stream_detach(ConfigStream *st) {
        GrpcCall *c = st->call;

        if (st->id) /* ends the block's subscription whatever store holds it now */
                configstore_unsubscribe_all(st->registry, st->app_id, st);
        if (st->prev)
                st->prev->next = st->next;
        else if (streams == st)
                streams = st->next;
        if (st->next)
                st->next->prev = st->prev;
        grpc_call_set_userdata(c, NULL);
        grpc_call_on_cancel(c, NULL, NULL);
        free(st->app_id);
        free(st->id);
        free(st);
        return c;
}

/* Ends the block's subscription, frees st, and answers the stream with code and message. */
static void stream_end(ConfigStream *st, GrpcCode code, const char *message) {
        GrpcCall *c = stream_detach(st);
        if (code == GRPC_STATUS_OK)
                (void) grpc_call_reply(c, NULL);
        else
                (void) grpc_call_fail(c, code, "%s", message);
}

static void on_config_changed(ConfigStore *s, const char *id, const ConfigItem *items, size_t n, void *userdata) {
        ConfigStream *st = userdata;
        PB(SubscribeConfigurationResponse) resp = DAPR__PROTO__RUNTIME__V1__SUBSCRIBE_CONFIGURATION_RESPONSE__INIT;
        _cleanup_free_ PB(SubscribeConfigurationResponse__ItemsEntry) *e = calloc(n ?: 1, sizeof *e);
        _cleanup_free_ PB(SubscribeConfigurationResponse__ItemsEntry) **ep = calloc(n ?: 1, sizeof *ep);
        ConfigMap map = {};
        int k;

        if (!e || !ep || config_map(items, n, &map) < 0) {
                config_map_done(&map);
                log_struct(LOG_WARNING, 0, st->app_id, s->name, "Configuration update lost: out of memory.");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                dapr__proto__runtime__v1__subscribe_configuration_response__items_entry__init(&e[i]);
                e[i].key = items[i].key;
                e[i].value = &map.items[i];
                ep[i] = &e[i];
        }
        resp.id = (char *) id;
        resp.n_items = n;
        resp.items = ep;
        k = grpc_call_send(st->call, &resp.base);
        config_map_done(&map);
        /* The app does not read its stream (past the server's send bound): the update is dropped, as the
         * HTTP path drops what an app does not take. Not ended here: this runs inside the store's
         * change walk, where freeing the subscription is not safe. */
        if (k < 0)
                log_struct(LOG_WARNING, k, st->app_id, s->name, "Configuration update for subscription %s dropped: "
                           "%s.", id, k == -ENOBUFS ? "the subscriber does not read its stream" : strerror(-k));
}

static void on_stream_cancel(GrpcCall *c, void *userdata) {
        stream_end(userdata, GRPC_STATUS_CANCELLED, "the subscriber left");
}

int grpc_dapr_subscribe_configuration_open(GrpcCall *c) {
        ConfigStream *st = calloc(1, sizeof *st);
        if (!st)
                return -ENOMEM;
        *st = (ConfigStream){ .call = c, .registry = grpc_call_registry(c), .app_id = strdup(grpc_call_app_id(c)),
                              .next = streams };
        if (!st->app_id) {
                free(st);
                return -ENOMEM;
        }
        if (st->next)
                st->next->prev = st;
        streams = st;
        grpc_call_set_userdata(c, st);
        grpc_call_on_cancel(c, on_stream_cancel, st);
        return 0;
}

int grpc_dapr_subscribe_configuration_message(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(SubscribeConfigurationRequest) *req = (const PB(SubscribeConfigurationRequest) *) m;
        ConfigStream *st = grpc_call_get_userdata(c);
        _cleanup_strv_free_ char **keys = NULL, **md = NULL;
        _cleanup_free_ char *err = NULL;
        ConfigStore *s;
        int k;

        if (!st || st->id) /* ended, or a second request on a server stream: ignored */
                return 0;
        if (configstore_lookup(st->registry, req->store_name, st->app_id, &s) < 0)
                return config_store(stream_detach(st), req->store_name, &s), 0; /* answers the error */
        if (config_args(req->n_keys, req->keys, req->n_metadata,
                        (PB(GetConfigurationRequest__MetadataEntry) *const *) req->metadata, &keys, &md) < 0)
                return stream_end(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory"), 0;
        k = configstore_subscribe(s, st->app_id, keys, md, on_config_changed, st, &st->id, &err);
        if (k < 0) {
                _cleanup_free_ char *kt = strv_go_text(keys);
                /* daprd: a subscription the store refuses is INVALID_ARGUMENT */
                return grpc_fail_dapr_status(stream_detach(st), GRPC_STATUS_INVALID_ARGUMENT,
                                             DAPR_ERR_CONFIGURATION_SUBSCRIBE,
                                             "failed to subscribe %s from Configuration store %s: %s", strna(kt),
                                             req->store_name,
                                             err ?: k == -EMFILE ? "too many subscriptions of this app" : strerror(-k)),
                       0;
        }
        PB(SubscribeConfigurationResponse) first = DAPR__PROTO__RUNTIME__V1__SUBSCRIBE_CONFIGURATION_RESPONSE__INIT;
        first.id = st->id;
        if (grpc_call_send(c, &first.base) < 0)
                stream_end(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "the subscriber does not read its stream");
        return 0;
}

void grpc_dapr_subscribe_configuration_half_closed(GrpcCall *c) {
        /* the client sent its one request: the stream goes on until it leaves or unsubscribes */
}

/* Ends the stream of subscription id of app_id, if there is one. */
static bool end_stream(Registry *r, const char *app_id, const char *id) {
        for (ConfigStream *st = streams; st; st = st->next)
                if (st->registry == r && st->id && streq(st->id, id) && streq(st->app_id, app_id)) {
                        stream_end(st, GRPC_STATUS_OK, NULL);
                        return true;
                }
        return false;
}

int grpc_dapr_unsubscribe_configuration(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(UnsubscribeConfigurationRequest) *req = (const PB(UnsubscribeConfigurationRequest) *) m;
        PB(UnsubscribeConfigurationResponse) resp = DAPR__PROTO__RUNTIME__V1__UNSUBSCRIBE_CONFIGURATION_RESPONSE__INIT;
        _cleanup_free_ char *msg = NULL;
        ConfigStore *s;

        if (config_store(c, req->store_name, &s) < 0)
                return 0;
        if (end_stream(grpc_call_registry(c), grpc_call_app_id(c), req->id) ||
            configstore_unsubscribe(s, grpc_call_app_id(c), req->id) == 0)
                resp.ok = true;
        else {
                if (asprintf(&msg, "failed to unsubscribe to configuration request %s: subscription does not exist",
                             req->id) < 0)
                        return -ENOMEM;
                resp.message = msg;
        }
        return grpc_call_reply(c, &resp.base);
}

/* ---- state query ---- */

typedef struct QueryCall {
        GrpcCall *call;
        StateQueryCall *qc;
        uint64_t offset, limit;
} QueryCall;

static void on_query_cancel(GrpcCall *c, void *userdata) {
        QueryCall *qc = userdata;
        state_query_cancel(qc->qc);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the state store answered");
        free(qc);
}

static void on_queried(const StateQueryResult *res, void *userdata) {
        QueryCall *qc = userdata;
        GrpcCall *c = qc->call;
        PB(QueryStateResponse) resp = DAPR__PROTO__RUNTIME__V1__QUERY_STATE_RESPONSE__INIT;
        _cleanup_free_ PB(QueryStateItem) *items = NULL;
        _cleanup_free_ PB(QueryStateItem) **itemp = NULL;
        char token[32];

        grpc_call_on_cancel(c, NULL, NULL);
        if (res->error < 0) {
                (void) grpc_fail_dapr(c, DAPR_ERR_STATE_QUERY, "failed query in state store: %s",
                                      res->message ?: strerror(-res->error));
                goto out;
        }
        items = calloc(res->n_items ?: 1, sizeof *items);
        itemp = calloc(res->n_items ?: 1, sizeof *itemp);
        if (!items || !itemp) {
                (void) grpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < res->n_items; i++) {
                const StateQueryItem *it = &res->items[i];
                dapr__proto__runtime__v1__query_state_item__init(&items[i]);
                items[i].key = (char *) state_unscope_key(it->key);
                items[i].data = (ProtobufCBinaryData){ it->value_len, it->value };
                if (it->etag)
                        items[i].etag = it->etag;
                itemp[i] = &items[i];
        }
        resp.n_results = res->n_items;
        resp.results = itemp;
        if (qc->limit > 0 && res->n_items > 0) {
                /* as the HTTP route: the token is the offset of the next page */
                snprintf(token, sizeof token, "%" PRIu64, qc->offset + res->n_items);
                resp.token = token;
        }
        (void) grpc_call_reply(c, &resp.base);
out:
        free(qc);
}

int grpc_dapr_query_state(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(QueryStateRequest) *req = (const PB(QueryStateRequest) *) m;
        _cleanup_free_ char *err = NULL;
        StateQuery *q = NULL;
        StateStore *s;
        QueryCall *qc;
        int k;

        k = state_lookup(grpc_call_registry(c), req->store_name, grpc_call_app_id(c), &s);
        if (k == -ENODEV)
                return grpc_fail_dapr(c, DAPR_ERR_STATE_STORE_NOT_CONFIGURED, "state store is not configured");
        if (k < 0)
                return grpc_fail_dapr(c, DAPR_ERR_STATE_STORE_NOT_FOUND, "state store %s is not found",
                                      req->store_name);
        /* daprd: ERR_STATE_STORE_NOT_SUPPORTED, but INTERNAL here (not UNIMPLEMENTED as for transactions) */
        if (!(s->driver->features & STATE_FEATURE_QUERY))
                return grpc_fail_dapr_status(c, GRPC_STATUS_INTERNAL, DAPR_ERR_STATE_STORE_NOT_SUPPORTED,
                                             "state store %s doesn't support query", req->store_name);
        k = state_query_parse(req->query, strlen(req->query), &q, &err);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return grpc_fail_dapr(c, DAPR_ERR_STATE_QUERY,
                                      "failed query in state store %s: failed to parse JSON query body: %s",
                                      req->store_name, strna(err));
        qc = calloc(1, sizeof *qc);
        if (!qc) {
                state_query_free(q);
                return -ENOMEM;
        }
        *qc = (QueryCall){ .call = c, .offset = q->offset, .limit = q->limit };
        k = state_query(s, grpc_call_app_id(c), q, on_queried, qc, &qc->qc);
        state_query_free(q);
        if (k < 0) {
                free(qc);
                return grpc_fail_dapr(c, DAPR_ERR_STATE_QUERY, "failed query in state store %s: %s", req->store_name,
                                      strerror(-k));
        }
        grpc_call_on_cancel(c, on_query_cancel, qc);
        return 0;
}
