/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's secrets API over HTTP (GET /v1.0/secrets/{store}/{name} and
 * /bulk): find the store, start the block's call, render its answer as
 * daprd does. The JSON text of an answer is wiped once it is sent.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/secrets.h"
#include "../core/app.h"
#include "../core/errors.h"
#include "../core/registry.h"
#include "../util/strv.h"
#include "handlers.h"
#include "server.h"

static const char *caller_app(HttpRequest *r) {
        const Caller *c = http_request_caller(r);
        return c->app ? c->app->config->id : NULL;
}

/* Dapr's code and status for error (core/errors.c), with a message that never holds a value. */
_printf_(3, 4) static int reply_secret_error(HttpRequest *r, int error, const char *fmt, ...) {
        const ErrorRow *row = error_lookup(ERROR_CONTEXT_SECRET, error);
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        return http_reply_error_status(r, row->http_status, row->dapr, "%s", msg ?: "out of memory");
}

/* Finds the store or answers the error itself (returns < 0 then). */
static int find_store(HttpRequest *r, const char *name, SecretStore **ret) {
        const char *why = NULL;
        int k;

        /* Scopes are per app: an unidentified caller on the shared socket has none. */
        if (!caller_app(r))
                return http_reply_error(r, DAPR_ERR_PERMISSION_DENIED,
                                        "the caller is not an app: use the app's own socket or port, or run in "
                                        "mooring-app@<app-id>.service"),
                       -1;
        k = secrets_lookup(http_request_registry(r), name, caller_app(r), ret, &why);
        if (k == -ENODEV)
                return reply_secret_error(r, k, "secret store is not configured"), -1;
        if (k == -EIO) /* the component is there but did not open: say why */
                return reply_secret_error(r, -ENXIO, "failed finding secret store with key %s: it did not open: %s",
                                          name, strna(why)),
                       -1;
        if (k < 0)
                return reply_secret_error(r, -ENXIO, "failed finding secret store with key %s", name),
                       -1;
        return 0;
}

static int collect_metadata(const char *key, const char *value, void *userdata) {
        const char *k = startswith_ptr(key, "metadata.");
        if (!k || !*k)
                return 0;
        return strv_extend(userdata, k) < 0 || strv_extend(userdata, value) < 0 ? -ENOMEM : 0;
}

/* One call in flight: what the answer names. */
typedef struct SecretReq {
        HttpRequest *r;
        SecretStore *store;
        char *store_name;
        char *name;
} SecretReq;

static SecretReq *secret_req_free(SecretReq *q) {
        if (q) {
                free(q->store_name);
                free(q->name);
                free(q);
        }
        return NULL;
}

DEFINE_CLEANUP_FUNC(SecretReq, secret_req_free);

static SecretReq *secret_req_new(HttpRequest *r, SecretStore *s, const char *store_name, const char *name) {
        SecretReq *q = calloc(1, sizeof *q);
        if (!q)
                return NULL;
        q->r = r;
        q->store = s;
        q->store_name = strdup(store_name);
        q->name = strdup(name ?: "");
        return q->store_name && q->name ? q : secret_req_free(q);
}

/* The client left before the answer: the call's done will not run. */
static void on_request_end(HttpRequest *r, void *userdata) {
        SecretReq *q = userdata;
        secrets_cancel(q->store, q);
        secret_req_free(q);
}

/* From done: the answer is here, the cancel hook is no longer wanted. */
static HttpRequest *answering(SecretReq *q) {
        HttpRequest *r = q->r;
        http_request_on_end(r, NULL, NULL);
        return r;
}

/* Sends j (taken) as the answer, then wipes its text. */
static void reply_secret_json(HttpRequest *r, json_t *j) {
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!s) {
                (void) http_reply_error(r, DAPR_ERR_SECRET_GET, "out of memory");
                return;
        }
        size_t len = strlen(s);
        (void) http_reply(r, 200, "application/json", s, len);
        explicit_wipe(s, len);
        free(s);
}

/* {key: value} of the items [from, to) of d, or NULL with *ret_bad naming a secret that is no UTF-8 text. */
static json_t *keys_json(const SecretData *d, size_t from, size_t to, const char **ret_bad) {
        json_t *o = json_object();
        for (size_t i = from; o && i < to; i++) {
                const SecretEntry *it = &d->items[i];
                json_t *v = json_stringn(it->value, it->value_len);
                if (!v || json_object_set_new(o, it->key, v) < 0) {
                        *ret_bad = it->name;
                        json_decref(o);
                        return NULL;
                }
        }
        return o;
}

static void on_got(int error, const char *message, const SecretData *d, void *userdata) {
        _cleanup_(secret_req_freep) SecretReq *q = userdata;
        HttpRequest *r = answering(q);
        const char *bad = NULL;
        json_t *j;

        if (error < 0) {
                (void) reply_secret_error(r, error, "failed getting secret with key %s from secret store %s: %s",
                                          q->name, q->store_name, message ?: strerror(-error));
                return;
        }
        if (d->n == 0) {
                (void) http_reply_empty(r, 204);
                return;
        }
        j = keys_json(d, 0, d->n, &bad);
        if (!j) {
                (void) http_reply_error(r, DAPR_ERR_SECRET_GET, "secret %s is not UTF-8 text", strna(bad));
                return;
        }
        reply_secret_json(r, j);
}

static void on_bulk(int error, const char *message, const SecretData *d, void *userdata) {
        _cleanup_(secret_req_freep) SecretReq *q = userdata;
        HttpRequest *r = answering(q);
        const char *bad = NULL;
        json_t *all;

        if (error < 0) {
                (void) reply_secret_error(r, error, "failed getting secrets from secret store %s: %s",
                                          q->store_name, message ?: strerror(-error));
                return;
        }
        all = json_object();
        /* d is sorted by name: one object per run of items with the same name */
        for (size_t i = 0; all && i < d->n;) {
                size_t e = i;
                while (e < d->n && streq(d->items[e].name, d->items[i].name))
                        e++;
                json_t *o = keys_json(d, i, e, &bad);
                if (!o) {
                        json_decref(all);
                        (void) http_reply_error(r, DAPR_ERR_SECRET_GET, "secret %s is not UTF-8 text", strna(bad));
                        return;
                }
                json_object_set_new(all, d->items[i].name, o);
                i = e;
        }
        reply_secret_json(r, all);
}

int http_secret_get(HttpRequest *r, const RouteMatch *m) {
        _cleanup_(secret_req_freep) SecretReq *q = NULL;
        _cleanup_strv_free_ char **md = NULL;
        SecretStore *s;
        int k;

        if (find_store(r, m->params[0], &s) < 0)
                return 0;
        if (http_request_foreach_query(r, collect_metadata, &md) < 0)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "bad metadata query parameters");
        q = secret_req_new(r, s, m->params[0], m->params[1]);
        if (!q)
                return -ENOMEM;
        k = secrets_get(s, caller_app(r), m->params[1], md, on_got, q);
        if (k == -EACCES)
                return reply_secret_error(r, k, "access denied by policy to get \"%s\" from \"%s\"", m->params[1],
                                          m->params[0]);
        if (k == -EINVAL) /* the app's Configuration is broken: nothing is readable (fail closed) */
                return reply_secret_error(r, -EACCES, "access denied by policy to get \"%s\" from \"%s\": %s",
                                          m->params[1], m->params[0], "the app's Configuration is broken");
        if (k < 0)
                return k;
        http_request_on_end(r, on_request_end, TAKE_PTR(q));
        http_request_suspend(r);
        return 0;
}

int http_secret_bulk(HttpRequest *r, const RouteMatch *m) {
        _cleanup_(secret_req_freep) SecretReq *q = NULL;
        _cleanup_strv_free_ char **md = NULL;
        SecretStore *s;
        int k;

        if (find_store(r, m->params[0], &s) < 0)
                return 0;
        if (http_request_foreach_query(r, collect_metadata, &md) < 0)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "bad metadata query parameters");
        q = secret_req_new(r, s, m->params[0], NULL);
        if (!q)
                return -ENOMEM;
        k = secrets_bulk(s, caller_app(r), md, on_bulk, q);
        if (k < 0)
                return k;
        http_request_on_end(r, on_request_end, TAKE_PTR(q));
        http_request_suspend(r);
        return 0;
}
