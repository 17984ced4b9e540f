/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl secret get STORE NAME: GetSecret on org.mooring.Runtime1, as
 * app --app (or "" for the app of the caller's mooring-app@APP_ID.service;
 * another app needs polkit's org.mooring.runtime1.get-secret, so the call
 * allows interactive authorization). The app's secret scopes apply.
 *
 * Output: a single-valued secret ({NAME: value}) prints its value and a
 * newline; a secret with several keys prints KEY=VALUE lines; --json prints
 * the {key: value} object. Buffers that held the value are wiped.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-bus.h"

#define CTL_BUS_ERROR_NO_SUCH_SECRET "org.mooring.Runtime1.Error.NoSuchSecret"

static int secret_call_failed(const CtlOptions *o, const char *app, const char *store, const char *name, int r,
                              const sd_bus_error *error) {
        if (sd_bus_error_has_name(error, CTL_BUS_ERROR_NO_SUCH_APP)) {
                if (app[0])
                        ctl_log("no app '%s' is registered", app);
                else
                        ctl_log("no app is registered for the caller's mooring-app@.service unit");
                return -ENOENT;
        }
        if (sd_bus_error_has_name(error, CTL_BUS_ERROR_NO_SUCH_STORE)) {
                ctl_log("secret store '%s': %s", store, error->message);
                return -ENOENT;
        }
        if (sd_bus_error_has_name(error, CTL_BUS_ERROR_NO_SUCH_SECRET)) {
                ctl_log("no secret '%s' in store '%s': %s", name, store, error->message);
                return -ENOENT;
        }
        if (sd_bus_error_has_name(error, CTL_BUS_ERROR_PERMISSION_DENIED)) {
                ctl_log("permission denied reading secret '%s': %s", name, error->message);
                return -EPERM;
        }
        return ctl_bus_call_failed(o, r, error, "reading a secret");
}

int ctl_secret_get(const CtlOptions *o, const char *app, const char *store, const char *name,
                   char *const *metadata) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        json_t *obj = NULL;
        const char *k, *v;
        int r;

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_call(bus, &call, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "GetSecret");
        if (r >= 0)
                r = sd_bus_message_set_allow_interactive_authorization(call, true);
        if (r >= 0)
                r = sd_bus_message_append(call, "sss", app, store, name);
        if (r >= 0)
                r = sd_bus_message_open_container(call, 'a', "{ss}");
        for (char *const *m = metadata; r >= 0 && m && *m; m++) {
                const char *eq = strchr(*m, '=');
                _cleanup_free_ char *key = eq ? strndup(*m, eq - *m) : NULL;
                if (!key)
                        return ctl_log_oom();
                r = sd_bus_message_append(call, "{ss}", key, eq + 1);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (r < 0)
                return ctl_log_errno(r, "reading a secret failed: cannot build the D-Bus call: %m");
        r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0)
                return secret_call_failed(o, app, store, name, r, &error);
        (void) sd_bus_message_sensitive(reply);

        obj = json_object();
        if (!obj)
                return ctl_log_oom();
        r = sd_bus_message_enter_container(reply, 'a', "{ss}");
        while (r >= 0 && (r = sd_bus_message_read(reply, "{ss}", &k, &v)) > 0)
                json_object_set_new(obj, k, json_string(v));
        if (r < 0) {
                json_decref(obj);
                ctl_log("reading a secret failed: unexpected reply from mooringd");
                return -EBADMSG;
        }
        if (o->json) {
                char *s = json_dumps(obj, JSON_COMPACT);
                if (s) {
                        puts(s);
                        explicit_bzero(s, strlen(s));
                        free(s);
                }
        } else if (json_object_size(obj) == 1 && json_object_get(obj, name))
                puts(json_string_value(json_object_get(obj, name)));
        else {
                json_t *val;
                json_object_foreach(obj, k, val)
                        printf("%s=%s\n", k, json_string_value(val));
        }
        json_decref(obj);
        return 0;
}
