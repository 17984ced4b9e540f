/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl binding invoke: run an operation on an output binding through
 * mooringd (Dapr's output bindings), over D-Bus: InvokeBinding on
 * org.mooring.Runtime1. The caller acts as --app, or as the app of its
 * mooring-app@.service unit (or as no app when it runs in none); acting as
 * another app needs polkit's org.mooring.runtime1.act-as-app, so the call
 * allows interactive authorization. The binding's answer goes to standard
 * output as its bytes; --verbose prints its metadata on standard error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl-bus.h"

#define CTL_BUS_ERROR_NO_SUCH_BINDING "org.mooring.Runtime1.Error.NoSuchBinding"

int ctl_binding_invoke(const CtlOptions *o, const CtlBindingRequest *req) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *buf = NULL, *what = NULL;
        const void *data, *out;
        size_t size, out_size;
        int r;

        if (asprintf(&what, "binding %s %s", req->name, req->operation) < 0) {
                what = NULL;
                return ctl_log_oom();
        }
        r = ctl_load_data(req->data, &data, &size, &buf);
        if (r < 0)
                return r;
        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_call(bus, &call, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE,
                                           "InvokeBinding");
        if (r >= 0)
                r = sd_bus_message_set_allow_interactive_authorization(call, true);
        if (r >= 0)
                r = sd_bus_message_append(call, "sss", strempty(req->app_id), req->name, req->operation);
        if (r >= 0)
                r = sd_bus_message_append_array(call, 'y', data ?: "", size);
        if (r >= 0)
                r = sd_bus_message_open_container(call, 'a', "{ss}");
        for (char **m = req->metadata; r >= 0 && m && *m; m++) {
                /* validated by main(): "KEY=VALUE" */
                const char *eq = strchr(*m, '=');
                _cleanup_free_ char *key = strndup(*m, (size_t) (eq - *m));
                r = key ? sd_bus_message_append(call, "{ss}", key, eq + 1) : -ENOMEM;
        }
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (r < 0)
                return r == -ENOMEM ? ctl_log_oom() : ctl_log_errno(r, "%s failed: cannot build the call: %m", what);

        r = sd_bus_call(bus, call, UINT64_MAX, &error, &reply);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, CTL_BUS_ERROR_NO_SUCH_BINDING) ||
                    sd_bus_error_has_name(&error, CTL_BUS_ERROR_NO_SUCH_APP)) {
                        ctl_log("%s failed: %s", what, error.message ?: "no such binding");
                        return -ENOENT;
                }
                if (sd_bus_error_has_name(&error, CTL_BUS_ERROR_PERMISSION_DENIED)) {
                        ctl_log("not authorized to act as app '%s'", strempty(req->app_id));
                        return -EPERM;
                }
                if (sd_bus_error_has_name(&error, "org.mooring.Runtime1.Error.Failed") ||
                    sd_bus_error_has_name(&error, "org.mooring.Runtime1.Error.NotSupported") ||
                    sd_bus_error_has_name(&error, "org.mooring.Runtime1.Error.InvalidArgument")) {
                        ctl_log("%s failed: %s", what, error.message ?: "the binding failed");
                        return -EIO;
                }
                return ctl_bus_call_failed(o, r, &error, what);
        }
        r = sd_bus_message_read_array(reply, 'y', &out, &out_size);
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "{ss}");
        const char *k, *v;
        while (r >= 0 && (r = sd_bus_message_read(reply, "{ss}", &k, &v)) > 0)
                if (req->verbose)
                        fprintf(stderr, "%s: %s\n", k, v);
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0) {
                ctl_log("%s failed: unexpected reply from mooringd", what);
                return -EBADMSG;
        }
        if (out_size > 0 && fwrite(out, 1, out_size, stdout) != out_size)
                return ctl_log_errno(-EIO, "cannot write the answer: %m");
        return 0;
}
