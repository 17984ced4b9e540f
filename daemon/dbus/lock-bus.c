/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The app-owned alpha APIs over D-Bus, through the same blocks as HTTP:
 * distributed lock (TryLock, Unlock), state query (QueryState) and the
 * configuration API's read (GetConfiguration). Identity as for the state
 * methods (state-bus.c): the first argument names the app, "" for the
 * caller's own unit's app.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/configstore.h"
#include "../blocks/lock.h"
#include "../blocks/state-query.h"
#include "../blocks/state.h"
#include "../core/errors.h"
#include "../manager.h"
#include "../util/strv.h"
#include "lock-bus.h"
#include "state-bus.h"

/* Re-reads the app id (first argument) and answers NoSuchApp itself (returns 0 and *ret NULL). */
static int read_app(sd_bus_message *call, Manager *m, char **ret) {
        _cleanup_free_ char *own = NULL;
        const char *app_id;
        int r = sd_bus_message_rewind(call, true);
        if (r >= 0)
                r = sd_bus_message_read(call, "s", &app_id);
        if (r < 0)
                return r;
        *ret = NULL;
        if (!*app_id)
                app_id = own = bus_sender_app(call);
        if (!app_id || !registry_find_app(m->registry, app_id))
                return sd_bus_reply_method_errorf(call, BUS_ERROR_NO_SUCH_APP, "No app '%s' is registered", strna(app_id));
        *ret = strdup(app_id);
        return *ret ? 1 : -ENOMEM;
}

static int reply_errno(sd_bus_message *call, ErrorContext ctx, int error, const char *message) {
        return sd_bus_reply_method_errorf(call, error_lookup(ctx, error)->bus_error, "%s",
                                          message ?: strerror(-error));
}

/* ---- TryLock(s app_id, s store, s resource, s owner, i expiry_seconds) → b acquired ---- */

static void on_locked(const LockResult *res, void *userdata) {
        sd_bus_message *call = userdata;
        if (res->error < 0)
                (void) reply_errno(call, ERROR_CONTEXT_LOCK, res->error, res->message);
        else
                (void) sd_bus_reply_method_return(call, "b", res->acquired);
        sd_bus_message_unref(call);
}

static void on_unlocked(const LockResult *res, void *userdata) {
        sd_bus_message *call = userdata;
        if (res->error < 0)
                (void) reply_errno(call, ERROR_CONTEXT_LOCK, res->error, res->message);
        else
                (void) sd_bus_reply_method_return(call, "i", (int32_t) res->status);
        sd_bus_message_unref(call);
}

static int do_lock(sd_bus_message *call, Manager *m, bool unlocking) {
        _cleanup_free_ char *app = NULL;
        const char *store, *resource, *owner, *problem;
        int32_t expiry = 0;
        LockStore *s;
        int r = read_app(call, m, &app);
        if (r <= 0)
                return r;
        r = sd_bus_message_read(call, "sss", &store, &resource, &owner);
        if (r >= 0 && !unlocking)
                r = sd_bus_message_read(call, "i", &expiry);
        if (r < 0)
                return r;
        problem = lock_request_problem(resource, owner, expiry, unlocking);
        if (problem)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_INVALID_ARGUMENT, "%s",
                                                  strstr(problem, " in lock store") ? "resource, owner and a positive "
                                                                                      "expiry are needed" : problem);
        r = lock_lookup(m->registry, store, app, &s);
        if (r < 0)
                return reply_errno(call, ERROR_CONTEXT_LOCK, r, r == -ENODEV ? "No lock store is configured" : "No such lock store");
        sd_bus_message_ref(call);
        r = unlocking ? lock_unlock(s, app, resource, owner, on_unlocked, call)
                      : lock_try(s, app, resource, owner, expiry, on_locked, call);
        if (r < 0) {
                sd_bus_message_unref(call);
                if (r == -EBADR)
                        return sd_bus_reply_method_errorf(call, BUS_ERROR_INVALID_ARGUMENT,
                                                          "A resource id must not contain '||'");
                return sd_bus_reply_method_errnof(call, r, "Cannot start the operation: %m");
        }
        return 1;
}

static int do_try_lock(sd_bus_message *call, Manager *m) {
        return do_lock(call, m, false);
}

static int do_unlock(sd_bus_message *call, Manager *m) {
        return do_lock(call, m, true);
}

int bus_method_try_lock(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_try_lock, reterr);
}

int bus_method_unlock(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_unlock, reterr);
}

/* ---- QueryState(s app_id, s store, s query) → (a(says) items, s token) ---- */

typedef struct QueryCall {
        sd_bus_message *call;
        uint64_t offset, limit;
} QueryCall;

static void on_queried(const StateQueryResult *res, void *userdata) {
        QueryCall *q = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        char token[32] = "";
        int r;

        if (res->error < 0) {
                (void) reply_errno(q->call, ERROR_CONTEXT_STATE, res->error, res->message);
                goto out;
        }
        if (q->limit > 0 && res->n_items > 0)
                snprintf(token, sizeof token, "%llu", (unsigned long long) (q->offset + res->n_items));
        r = sd_bus_message_new_method_return(q->call, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(says)");
        for (size_t i = 0; r >= 0 && i < res->n_items; i++) {
                const StateQueryItem *it = &res->items[i];
                r = sd_bus_message_open_container(reply, 'r', "says");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "s", state_unscope_key(it->key));
                if (r >= 0)
                        r = sd_bus_message_append_array(reply, 'y', it->value, it->value_len);
                if (r >= 0)
                        r = sd_bus_message_append(reply, "s", strempty(it->etag));
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", token);
        if (r >= 0)
                (void) sd_bus_send(NULL, reply, NULL);
        else
                (void) sd_bus_reply_method_errnof(q->call, r, "Cannot build the answer: %m");
out:
        sd_bus_message_unref(q->call);
        free(q);
}

static int do_query(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL, *err = NULL;
        const char *store, *text;
        StateQuery *query = NULL;
        StateStore *s;
        QueryCall *q;
        int r = read_app(call, m, &app);
        if (r <= 0)
                return r;
        r = sd_bus_message_read(call, "ss", &store, &text);
        if (r < 0)
                return r;
        if (state_lookup(m->registry, store, app, &s) < 0)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_NO_SUCH_STORE, "State store '%s' is not found", store);
        if (!(s->driver->features & STATE_FEATURE_QUERY))
                return sd_bus_reply_method_errorf(call, BUS_ERROR_NOT_SUPPORTED, "State store '%s' cannot be queried",
                                                  store);
        r = state_query_parse(text, strlen(text), &query, &err);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_INVALID_ARGUMENT, "Bad query: %s", strna(err));
        q = calloc(1, sizeof *q);
        if (!q) {
                state_query_free(query);
                return -ENOMEM;
        }
        *q = (QueryCall){ .call = sd_bus_message_ref(call), .offset = query->offset, .limit = query->limit };
        r = state_query(s, app, query, on_queried, q, NULL);
        state_query_free(query);
        if (r < 0) {
                sd_bus_message_unref(call);
                free(q);
                return sd_bus_reply_method_errnof(call, r, "Cannot start the query: %m");
        }
        return 1;
}

int bus_method_query_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_query, reterr);
}

/* ---- GetConfiguration(s app_id, s store, as keys) → a(sssa{ss}) items ---- */

static void on_configuration(const ConfigResult *res, void *userdata) {
        sd_bus_message *call = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        if (res->error < 0) {
                (void) reply_errno(call, ERROR_CONTEXT_CONFIGSTORE, res->error, res->message);
                sd_bus_message_unref(call);
                return;
        }
        r = sd_bus_message_new_method_return(call, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sssa{ss})");
        for (size_t i = 0; r >= 0 && i < res->n_items; i++) {
                const ConfigItem *it = &res->items[i];
                r = sd_bus_message_open_container(reply, 'r', "sssa{ss}");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "sss", it->key, strempty(it->value), strempty(it->version));
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'a', "{ss}");
                for (char **p = it->metadata; r >= 0 && p && p[0] && p[1]; p += 2)
                        r = sd_bus_message_append(reply, "{ss}", p[0], p[1]);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                (void) sd_bus_send(NULL, reply, NULL);
        else
                (void) sd_bus_reply_method_errnof(call, r, "Cannot build the answer: %m");
        sd_bus_message_unref(call);
}

static int do_get_configuration(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        _cleanup_strv_free_ char **keys = NULL;
        const char *store;
        ConfigStore *s;
        int r = read_app(call, m, &app);
        if (r <= 0)
                return r;
        r = sd_bus_message_read(call, "s", &store);
        if (r >= 0)
                r = sd_bus_message_read_strv(call, &keys);
        if (r < 0)
                return r;
        r = configstore_lookup(m->registry, store, app, &s);
        if (r < 0)
                return reply_errno(call, ERROR_CONTEXT_CONFIGSTORE, r,
                                   r == -ENODEV ? "No configuration store is configured" : "No such configuration store");
        sd_bus_message_ref(call);
        r = configstore_get(s, keys, NULL, on_configuration, call, NULL);
        if (r < 0) {
                sd_bus_message_unref(call);
                return sd_bus_reply_method_errnof(call, r, "Cannot start the read: %m");
        }
        return 1;
}

int bus_method_get_configuration(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_get_configuration, reterr);
}
