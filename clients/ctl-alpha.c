/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl lock, unlock, configuration get and state query: Dapr's alpha
 * APIs for an app, over D-Bus only (TryLock, Unlock, GetConfiguration,
 * QueryState on org.mooring.Runtime1), acting as --app or as the app of the
 * caller's own mooring-app@.service unit, like the state commands. Results
 * print as the HTTP API answers them (JSON), so scripts can use either.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-bus.h"

static int call_failed(const CtlOptions *o, const char *app, const char *store, int r, const sd_bus_error *error,
                       const char *what) {
        if (sd_bus_error_has_name(error, CTL_BUS_ERROR_NO_SUCH_APP)) {
                ctl_log(app[0] ? "no app '%s' is registered" : "no app is registered for the caller's unit%s", app);
                return -ENOENT;
        }
        if (sd_bus_error_has_name(error, CTL_BUS_ERROR_NO_SUCH_STORE)) {
                ctl_log("no store '%s' for %s", store, app[0] ? app : "the caller's app");
                return -ENOENT;
        }
        if (sd_bus_error_has_name(error, CTL_BUS_ERROR_PERMISSION_DENIED)) {
                if (app[0])
                        ctl_log("not authorized to act as app '%s'", app);
                else
                        ctl_log("the caller is not an app: pass --app=APP_ID, or run in the app's "
                                "mooring-app@APP_ID.service");
                return -EPERM;
        }
        if (sd_bus_error_has_name(error, "org.mooring.Runtime1.Error.InvalidArgument") ||
            sd_bus_error_has_name(error, "org.mooring.Runtime1.Error.NotSupported")) {
                ctl_log("%s failed: %s", what, error->message);
                return -EINVAL;
        }
        return ctl_bus_call_failed(o, r, error, what);
}

/* Starts a call of method with app_id and store appended. */
static int new_call(sd_bus *bus, const char *method, const char *app, const char *store, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r = sd_bus_message_new_method_call(bus, &m, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, method);
        if (r >= 0)
                r = sd_bus_message_set_allow_interactive_authorization(m, true);
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", app, store);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

static int print_json(json_t *j) {
        _cleanup_free_ char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII) : NULL;
        json_decref(j);
        if (!s)
                return ctl_log_oom();
        puts(s);
        return 0;
}

/*
 * "lock STORE RESOURCE OWNER SECONDS": TryLock. Prints {"success": bool} and returns 0 when acquired,
 * -EBUSY (reported) when someone else holds it.
 */
int ctl_lock(const CtlOptions *o, const char *app, const char *store, const char *resource, const char *owner,
             int32_t seconds) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int acquired, r;

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;
        r = new_call(bus, "TryLock", app, store, &call);
        if (r >= 0)
                r = sd_bus_message_append(call, "ssi", resource, owner, seconds);
        if (r < 0)
                return ctl_log_errno(r, "locking failed: cannot build the D-Bus call: %m");
        r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0)
                return call_failed(o, app, store, r, &error, "locking");
        r = sd_bus_message_read(reply, "b", &acquired);
        if (r < 0)
                return ctl_log_errno(r, "locking failed: unexpected reply: %m");
        r = print_json(json_pack("{s:b}", "success", acquired));
        if (r >= 0 && !acquired) {
                ctl_log("'%s' is locked by another owner", resource);
                return -EBUSY;
        }
        return r;
}

/* "unlock STORE RESOURCE OWNER": Unlock. Prints {"status": N}; anything but 0 is a failure (reported). */
int ctl_unlock(const CtlOptions *o, const char *app, const char *store, const char *resource, const char *owner) {
        static const char *const why[] = { NULL, "there is no such lock", "the lock belongs to another owner",
                                           "the lock store failed" };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int32_t status;
        int r;

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;
        r = new_call(bus, "Unlock", app, store, &call);
        if (r >= 0)
                r = sd_bus_message_append(call, "ss", resource, owner);
        if (r < 0)
                return ctl_log_errno(r, "unlocking failed: cannot build the D-Bus call: %m");
        r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0)
                return call_failed(o, app, store, r, &error, "unlocking");
        r = sd_bus_message_read(reply, "i", &status);
        if (r < 0)
                return ctl_log_errno(r, "unlocking failed: unexpected reply: %m");
        r = print_json(json_pack("{s:i}", "status", (int) status));
        if (r >= 0 && status != 0) {
                ctl_log("'%s' not unlocked: %s", resource,
                        status > 0 && status < 4 ? why[status] : "unknown status");
                return -ENOENT;
        }
        return r;
}

/* "configuration get STORE [KEY...]": GetConfiguration; prints the items as the HTTP API does. */
int ctl_configuration_get(const CtlOptions *o, const char *app, const char *store, char **keys) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        json_t *out = json_object();
        int r;

        if (!out)
                return ctl_log_oom();
        r = ctl_bus_open(o, &bus);
        if (r >= 0)
                r = new_call(bus, "GetConfiguration", app, store, &call);
        else {
                json_decref(out);
                return r;
        }
        if (r >= 0)
                r = sd_bus_message_append_strv(call, keys);
        if (r < 0) {
                json_decref(out);
                return ctl_log_errno(r, "reading configuration failed: cannot build the D-Bus call: %m");
        }
        r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0) {
                json_decref(out);
                return call_failed(o, app, store, r, &error, "reading configuration");
        }
        r = sd_bus_message_enter_container(reply, 'a', "(sssa{ss})");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "sssa{ss}")) > 0) {
                const char *key, *value, *version, *k, *v;
                json_t *item = json_object(), *md = json_object();
                r = sd_bus_message_read(reply, "sss", &key, &value, &version);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "{ss}");
                while (r >= 0 && (r = sd_bus_message_read(reply, "{ss}", &k, &v)) > 0)
                        json_object_set_new(md, k, json_string(v));
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0 && item) {
                        if (*value)
                                json_object_set_new(item, "value", json_string(value));
                        if (*version)
                                json_object_set_new(item, "version", json_string(version));
                        if (json_object_size(md) > 0)
                                json_object_set(item, "metadata", md);
                        json_object_set(out, key, item);
                }
                json_decref(item);
                json_decref(md);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0) {
                json_decref(out);
                return ctl_log_errno(r, "reading configuration failed: unexpected reply: %m");
        }
        return print_json(out);
}

/* "state query STORE QUERY": QueryState; prints {"results":[{key, data, etag}], "token"} as HTTP does. */
int ctl_state_query(const CtlOptions *o, const char *app, const char *store, const char *query) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        json_t *results = json_array();
        const char *token;
        int r;

        if (!results)
                return ctl_log_oom();
        r = ctl_bus_open(o, &bus);
        if (r < 0) {
                json_decref(results);
                return r;
        }
        r = new_call(bus, "QueryState", app, store, &call);
        if (r >= 0)
                r = sd_bus_message_append(call, "s", query);
        if (r < 0) {
                json_decref(results);
                return ctl_log_errno(r, "querying failed: cannot build the D-Bus call: %m");
        }
        r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0) {
                json_decref(results);
                return call_failed(o, app, store, r, &error, "querying");
        }
        r = sd_bus_message_enter_container(reply, 'a', "(says)");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "says")) > 0) {
                const char *key, *etag;
                const void *data;
                size_t size;
                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0)
                        r = sd_bus_message_read_array(reply, 'y', &data, &size);
                if (r >= 0)
                        r = sd_bus_message_read(reply, "s", &etag);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0) {
                        json_t *d = json_loadb(data, size, JSON_DECODE_ANY, NULL);
                        json_array_append_new(results, json_pack("{s:s, s:o, s:s}", "key", key, "data",
                                                                 d ?: json_stringn(data, size) ?: json_null(),
                                                                 "etag", etag));
                }
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "s", &token);
        if (r < 0) {
                json_decref(results);
                return ctl_log_errno(r, "querying failed: unexpected reply: %m");
        }
        json_t *out = json_pack("{s:o}", "results", results);
        if (out && *token)
                json_object_set_new(out, "token", json_string(token));
        return print_json(out);
}
