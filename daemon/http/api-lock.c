/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's distributed lock API (alpha) over HTTP:
 *   POST /v1.0-alpha1/lock/{store}    {"resourceId","lockOwner","expiryInSeconds"} -> {"success":bool}
 *   POST /v1.0-alpha1/unlock/{store}  {"resourceId","lockOwner"}                   -> {"status":N}
 * daprd decodes these bodies with protojson (unknown fields ignored, the
 * proto's snake_case names accepted too, an int32 also as a decimal string)
 * and answers through its universal handler: failures in Dapr's error shape,
 * the unlock status as a number. The lock block decides everything else.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/lock.h"
#include "../core/app.h"
#include "../core/errors.h"
#include "../core/registry.h"
#include "../util/strv.h"
#include "handlers.h"
#include "server.h"

typedef struct LockBody {
        const char *resource;
        const char *owner;
        int64_t expiry_sec;
} LockBody;

/* A protojson string field under either of its names; "" when absent. -EINVAL: not a string. */
static int body_string(json_t *o, const char *camel, const char *snake, const char **ret) {
        json_t *v = json_object_get(o, camel) ?: json_object_get(o, snake);
        if (!v || json_is_null(v)) {
                *ret = "";
                return 0;
        }
        if (!json_is_string(v))
                return -EINVAL;
        *ret = json_string_value(v);
        return 0;
}

/* An int32 field: a JSON integer, or a decimal string as protojson takes it. */
static int body_int32(json_t *o, const char *camel, const char *snake, int64_t *ret) {
        json_t *v = json_object_get(o, camel) ?: json_object_get(o, snake);
        long long n;
        char *end;

        if (!v || json_is_null(v)) {
                *ret = 0;
                return 0;
        }
        if (json_is_integer(v))
                n = json_integer_value(v);
        else if (json_is_string(v) && *json_string_value(v)) {
                errno = 0;
                n = strtoll(json_string_value(v), &end, 10);
                if (errno || *end)
                        return -EINVAL;
        } else
                return -EINVAL;
        if (n < INT32_MIN || n > INT32_MAX)
                return -EINVAL;
        *ret = n;
        return 0;
}

/* Parses the body into b (borrowing from *ret_json). Answers a malformed body itself: returns < 0 then. */
static int parse_body(HttpRequest *r, json_t **ret_json, LockBody *b, bool unlocking) {
        size_t len;
        const char *data = http_request_body(r, &len);
        json_error_t e;
        json_t *j;

        *b = (LockBody){ "", "", 0 };
        if (len == 0) { /* daprd: an empty body is an empty request */
                *ret_json = NULL;
                return 0;
        }
        j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &e);
        if (!j || !json_is_object(j) || body_string(j, "resourceId", "resource_id", &b->resource) < 0 ||
            body_string(j, "lockOwner", "lock_owner", &b->owner) < 0 ||
            (!unlocking && body_int32(j, "expiryInSeconds", "expiry_in_seconds", &b->expiry_sec) < 0)) {
                (void) http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "failed deserializing HTTP body: %s",
                                        !j ? e.text : "a field has the wrong type");
                json_decref(j);
                return -EINVAL;
        }
        *ret_json = j;
        return 0;
}

static const char *caller_app(HttpRequest *r) {
        const Caller *c = http_request_caller(r);
        return c->app ? c->app->config->id : NULL;
}

/* Finds the store after checking the request, in daprd 1.14's order; answers errors itself (< 0). */
static int find_store(HttpRequest *r, const char *name, const LockBody *b, bool unlocking, LockStore **ret) {
        Registry *reg = http_request_registry(r);
        const char *problem;
        int k;

        /* Locks belong to apps (the key carries the app id): a caller that is no app has none. */
        if (!caller_app(r))
                return http_reply_error(r, DAPR_ERR_PERMISSION_DENIED,
                                        "the caller is not an app: use the app's own socket or port, or run in "
                                        "mooring-app@<app-id>.service"),
                       -1;
        if (reg->n_lock_stores == 0)
                return http_reply_error(r, DAPR_ERR_LOCK_STORE_NOT_CONFIGURED, "lock store is not configured"), -1;
        problem = lock_request_problem(b->resource, b->owner, b->expiry_sec, unlocking);
        if (problem) {
                _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wformat-nonliteral\"")
                (void) http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, problem, name);
                _Pragma("GCC diagnostic pop") return -1;
        }
        k = lock_lookup(reg, name, caller_app(r), ret);
        if (k < 0)
                return http_reply_error(r, error_lookup(ERROR_CONTEXT_LOCK, k)->dapr, "lock store %s not found", name),
                       -1;
        return 0;
}

static void on_request_end(HttpRequest *r, void *userdata) {
        lock_cancel(userdata, r);
}

static void on_locked(const LockResult *res, void *userdata) {
        HttpRequest *r = userdata;
        http_request_on_end(r, NULL, NULL);
        if (res->error < 0)
                (void) http_reply_error(r, DAPR_ERR_TRY_LOCK, "failed to try acquiring lock: %s",
                                        res->message ?: strerror(-res->error));
        else
                (void) http_reply_json(r, 200, json_pack("{s:b}", "success", res->acquired));
}

static void on_unlocked(const LockResult *res, void *userdata) {
        HttpRequest *r = userdata;
        http_request_on_end(r, NULL, NULL);
        if (res->error < 0)
                (void) http_reply_error(r, DAPR_ERR_UNLOCK, "failed to release lock: %s",
                                        res->message ?: strerror(-res->error));
        else
                (void) http_reply_json(r, 200, json_pack("{s:i}", "status", (int) res->status));
}

static int lock_or_unlock(HttpRequest *r, const RouteMatch *m, bool unlocking) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        LockBody b;
        LockStore *s;
        int k;

        if (parse_body(r, &j, &b, unlocking) < 0 || find_store(r, m->params[0], &b, unlocking, &s) < 0)
                return 0;
        k = unlocking ? lock_unlock(s, caller_app(r), b.resource, b.owner, on_unlocked, r)
                      : lock_try(s, caller_app(r), b.resource, b.owner, b.expiry_sec, on_locked, r);
        if (k == -EBADR) /* daprd: a resource id with "||" fails the call, it is no malformed request */
                return http_reply_error(r, unlocking ? DAPR_ERR_UNLOCK : DAPR_ERR_TRY_LOCK,
                                        "%s: input key/keyPrefix '%s' can't contain '||'",
                                        unlocking ? "failed to release lock" : "failed to try acquiring lock",
                                        b.resource);
        if (k < 0)
                return k;
        http_request_on_end(r, on_request_end, s);
        http_request_suspend(r);
        return 0;
}

int http_lock(HttpRequest *r, const RouteMatch *m) {
        return lock_or_unlock(r, m, false);
}

int http_unlock(HttpRequest *r, const RouteMatch *m) {
        return lock_or_unlock(r, m, true);
}
