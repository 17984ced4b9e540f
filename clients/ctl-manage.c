/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl reload, register, unregister, stop: the daemon's management
 * methods on org.mooring.Runtime1 (D-Bus only; polkit decides for callers
 * other than root and the daemon's own user).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-bus.h"

#define CTL_BUS_ERROR_CONFIGURATION_ERRORS "org.mooring.Runtime1.Error.ConfigurationErrors"

/* "reload": Reload(); a reload that kept broken files is reported, exit status 1. */
int ctl_reload(const CtlOptions *o) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;
        r = sd_bus_call_method(bus, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "Reload", &error, NULL, "");
        if (r < 0)
                return ctl_bus_call_failed(o, r, &error, "reloading");
        return 0;
}

/*
 * Append "KEY=VALUE" settings to an a{sv} being built: every value as a string, as in an
 * apps.d file (the daemon validates them the same way).
 */
int ctl_bus_append_settings(sd_bus_message *m, char **settings) {
        int r = sd_bus_message_open_container(m, 'a', "{sv}");
        for (char **s = settings; r >= 0 && s && *s; s++) {
                const char *eq = strchr(*s, '=');
                _cleanup_free_ char *key = eq ? strndup(*s, (size_t) (eq - *s)) : NULL;

                if (!key)
                        return -ENOMEM;
                r = sd_bus_message_append(m, "{sv}", key, "s", eq + 1);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

/* "register APP_ID KEY=VALUE...": RegisterApp(s, a{sv}); the app stays until "unregister". */
int ctl_register(const CtlOptions *o, const char *app_id, char **settings) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char what[128];
        int r;

        snprintf(what, sizeof(what), "registering app '%s'", app_id);
        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_call(bus, &call, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE,
                                           "RegisterApp");
        if (r >= 0)
                r = sd_bus_message_append(call, "s", app_id);
        if (r >= 0)
                r = ctl_bus_append_settings(call, settings);
        if (r < 0)
                return r == -ENOMEM ? ctl_log_oom() : ctl_log_errno(r, "%s failed: %m", what);
        r = sd_bus_call(bus, call, 0, &error, NULL);
        if (r < 0)
                return ctl_bus_call_failed(o, r, &error, what);
        return 0;
}

/* "unregister APP_ID" and "stop APP_ID": UnregisterApp(s). */
int ctl_unregister(const CtlOptions *o, const char *app_id) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char what[128];
        int r;

        snprintf(what, sizeof(what), "removing app '%s'", app_id);
        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;
        r = sd_bus_call_method(bus, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "UnregisterApp", &error, NULL,
                               "s", app_id);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, CTL_BUS_ERROR_NO_SUCH_APP)) {
                        ctl_log("no app '%s' is registered", app_id);
                        return -ENOENT;
                }
                return ctl_bus_call_failed(o, r, &error, what);
        }
        return 0;
}
