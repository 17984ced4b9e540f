/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's secrets RPCs: GetSecret and GetBulkSecret. The same block calls as
 * http/api-secrets.c (secrets_lookup(), secrets_get(), secrets_bulk()), the
 * same errors through core/errors.c's secret rows, with Dapr's gRPC codes
 * (an unknown store is INVALID_ARGUMENT, none configured FAILED_PRECONDITION,
 * a scope refusal PERMISSION_DENIED). The caller is always an app here (the
 * listener says which), so its secret scopes always apply.
 *
 * Values are handed to the server inside the block's done callback, which
 * wipes them once it returns; protobuf strings must be UTF-8, so a value that
 * is not fails the call as the HTTP route does.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/secrets.h"
#include "../util/strv.h"
#include "services.h"

typedef struct SecretCall {
        GrpcCall *call;
        SecretStore *store;
        char *store_name;
        char *name;
} SecretCall;

static void secret_call_free(SecretCall *q) {
        if (!q)
                return;
        free(q->store_name);
        free(q->name);
        free(q);
}

/* Dapr's code and gRPC status for error in the secrets context; the message never holds a value. */
_printf_(3, 4) static int secret_fail(GrpcCall *c, int error, const char *fmt, ...) {
        const ErrorRow *row = error_lookup(ERROR_CONTEXT_SECRET, error);
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        return grpc_fail_dapr_status(c, error_grpc_status(ERROR_CONTEXT_SECRET, error, row->dapr), row->dapr, "%s",
                                     msg ?: "out of memory");
}

static int find_store(GrpcCall *c, const char *name, SecretStore **ret) {
        const char *why = NULL;
        int k = secrets_lookup(grpc_call_registry(c), name, grpc_call_app_id(c), ret, &why);
        if (k == -ENODEV)
                return secret_fail(c, k, "secret store is not configured"), -1;
        if (k == -EIO)
                return secret_fail(c, -ENXIO, "failed finding secret store with key %s: it did not open: %s", name,
                                   strna(why)),
                       -1;
        if (k < 0)
                return secret_fail(c, -ENXIO, "failed finding secret store with key %s", name), -1;
        return 0;
}

static int collect_metadata(size_t n, PB(GetSecretRequest__MetadataEntry) *const *md, char ***ret) {
        for (size_t i = 0; i < n; i++)
                if (strv_extend(ret, md[i]->key) < 0 || strv_extend(ret, md[i]->value) < 0)
                        return -ENOMEM;
        return 0;
}

static void on_cancel(GrpcCall *c, void *userdata) {
        SecretCall *q = userdata;
        secrets_cancel(q->store, q);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the secret store answered");
        secret_call_free(q);
}

static GrpcCall *answering(SecretCall *q) {
        grpc_call_on_cancel(q->call, NULL, NULL);
        return q->call;
}

static void on_got(int error, const char *message, const SecretData *d, void *userdata) {
        SecretCall *q = userdata;
        GrpcCall *c = answering(q);
        PB(GetSecretResponse) resp = DAPR__PROTO__RUNTIME__V1__GET_SECRET_RESPONSE__INIT;
        _cleanup_free_ PB(GetSecretResponse__DataEntry) *buf = NULL;
        _cleanup_free_ PB(GetSecretResponse__DataEntry) **p = NULL;

        if (error < 0) {
                (void) secret_fail(c, error, "failed getting secret with key %s from secret store %s: %s", q->name,
                                   q->store_name, message ?: strerror(-error));
                goto out;
        }
        buf = calloc(d->n ?: 1, sizeof *buf);
        p = calloc(d->n ?: 1, sizeof *p);
        if (!buf || !p) {
                (void) grpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < d->n; i++) {
                const SecretEntry *it = &d->items[i];
                if (!utf8_is_valid(it->value, it->value_len) || strlen(it->value) != it->value_len) {
                        (void) secret_fail(c, -EIO, "secret %s is not UTF-8 text", it->name);
                        goto out;
                }
                dapr__proto__runtime__v1__get_secret_response__data_entry__init(&buf[i]);
                buf[i].key = it->key;
                buf[i].value = it->value;
                p[i] = &buf[i];
        }
        resp.n_data = d->n;
        resp.data = p;
        (void) grpc_call_reply(c, &resp.base);
out:
        secret_call_free(q);
}

static void on_bulk(int error, const char *message, const SecretData *d, void *userdata) {
        SecretCall *q = userdata;
        GrpcCall *c = answering(q);
        PB(GetBulkSecretResponse) resp = DAPR__PROTO__RUNTIME__V1__GET_BULK_SECRET_RESPONSE__INIT;
        _cleanup_free_ PB(SecretResponse__SecretsEntry) *buf = NULL;
        _cleanup_free_ PB(SecretResponse__SecretsEntry) **bufp = NULL;
        _cleanup_free_ PB(SecretResponse) *secrets = NULL;
        _cleanup_free_ PB(GetBulkSecretResponse__DataEntry) *outer = NULL;
        _cleanup_free_ PB(GetBulkSecretResponse__DataEntry) **outerp = NULL;
        const char *bad = NULL;
        size_t n = 0;

        if (error < 0) {
                (void) secret_fail(c, error, "failed getting secrets from secret store %s: %s", q->store_name,
                                   message ?: strerror(-error));
                goto out;
        }
        buf = calloc(d->n ?: 1, sizeof *buf);
        bufp = calloc(d->n ?: 1, sizeof *bufp);
        secrets = calloc(d->n ?: 1, sizeof *secrets);
        outer = calloc(d->n ?: 1, sizeof *outer);
        outerp = calloc(d->n ?: 1, sizeof *outerp);
        if (!buf || !bufp || !secrets || !outer || !outerp) {
                (void) grpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < d->n; i++) {
                const SecretEntry *it = &d->items[i];
                if (!utf8_is_valid(it->value, it->value_len) || strlen(it->value) != it->value_len) {
                        bad = it->name;
                        break;
                }
                dapr__proto__runtime__v1__secret_response__secrets_entry__init(&buf[i]);
                buf[i].key = it->key;
                buf[i].value = it->value;
                bufp[i] = &buf[i];
        }
        if (bad) {
                (void) secret_fail(c, -EIO, "secret %s is not UTF-8 text", bad);
                goto out;
        }
        /* d is sorted by name: one SecretResponse per run of items with the same name */
        for (size_t i = 0; i < d->n;) {
                size_t e = i;
                while (e < d->n && streq(d->items[e].name, d->items[i].name))
                        e++;
                dapr__proto__runtime__v1__secret_response__init(&secrets[n]);
                secrets[n].n_secrets = e - i;
                secrets[n].secrets = bufp + i;
                dapr__proto__runtime__v1__get_bulk_secret_response__data_entry__init(&outer[n]);
                outer[n].key = d->items[i].name;
                outer[n].value = &secrets[n];
                outerp[n] = &outer[n];
                n++;
                i = e;
        }
        resp.n_data = n;
        resp.data = outerp;
        (void) grpc_call_reply(c, &resp.base);
out:
        secret_call_free(q);
}

static SecretCall *secret_call_new(GrpcCall *c, SecretStore *s, const char *store_name, const char *name) {
        SecretCall *q = calloc(1, sizeof *q);
        if (!q)
                return NULL;
        *q = (SecretCall){ .call = c, .store = s, .store_name = strdup(store_name), .name = strdup(name ?: "") };
        if (!q->store_name || !q->name) {
                secret_call_free(q);
                return NULL;
        }
        return q;
}

int grpc_dapr_get_secret(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(GetSecretRequest) *req = (const PB(GetSecretRequest) *) m;
        _cleanup_strv_free_ char **md = NULL;
        SecretStore *s;
        SecretCall *q;
        int k;

        if (find_store(c, req->store_name, &s) < 0)
                return 0;
        if (collect_metadata(req->n_metadata, req->metadata, &md) < 0)
                return -ENOMEM;
        q = secret_call_new(c, s, req->store_name, req->key);
        if (!q)
                return -ENOMEM;
        k = secrets_get(s, grpc_call_app_id(c), req->key, md, on_got, q);
        if (k < 0)
                secret_call_free(q);
        if (k == -EACCES)
                return secret_fail(c, k, "access denied by policy to get \"%s\" from \"%s\"", req->key,
                                   req->store_name);
        if (k == -EINVAL) /* the app's Configuration is broken: nothing is readable (fail closed) */
                return secret_fail(c, -EACCES, "access denied by policy to get \"%s\" from \"%s\": %s", req->key,
                                   req->store_name, "the app's Configuration is broken");
        if (k < 0)
                return k;
        grpc_call_on_cancel(c, on_cancel, q);
        return 0;
}

int grpc_dapr_get_bulk_secret(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(GetBulkSecretRequest) *req = (const PB(GetBulkSecretRequest) *) m;
        _cleanup_strv_free_ char **md = NULL;
        SecretStore *s;
        SecretCall *q;
        int k;

        if (find_store(c, req->store_name, &s) < 0)
                return 0;
        if (collect_metadata(req->n_metadata, (PB(GetSecretRequest__MetadataEntry) *const *) req->metadata, &md) < 0)
                return -ENOMEM;
        q = secret_call_new(c, s, req->store_name, NULL);
        if (!q)
                return -ENOMEM;
        k = secrets_bulk(s, grpc_call_app_id(c), md, on_bulk, q);
        if (k < 0) {
                secret_call_free(q);
                return k;
        }
        grpc_call_on_cancel(c, on_cancel, q);
        return 0;
}
