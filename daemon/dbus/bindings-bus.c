/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's output bindings over D-Bus, through the same bindings block as HTTP:
 * InvokeBinding(s app_id, s name, s operation, ay data, a{ss} metadata)
 * → (ay data, a{ss} metadata). The data goes to the binding as given (HTTP
 * re-encodes its JSON "data" field; a D-Bus caller sends bytes, as a gRPC
 * caller does).
 *
 * Who the caller is, as for the state methods: app_id "" means the app of
 * the caller's mooring-app@<id>.service unit, or no app at all (then only
 * bindings without scopes are reachable); naming an app is allowed when it
 * is the caller's own, and otherwise needs polkit's
 * org.mooring.runtime1.act-as-app. The binding's component scopes decide.
 * Errors: NoSuchBinding, InvalidArgument (no operation), NotSupported (the
 * binding lacks the operation), Failed (the binding failed: its message),
 * ResponseTooLarge.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/bindings.h"
#include "../core/errors.h"
#include "../core/registry.h"
#include "../manager.h"
#include "../util/strv.h"
#include "bindings-bus.h"
#include "polkit.h"
#include "state-bus.h"

/* dbus-daemon's max_message_size (32 MiB) less room for the header: see state-bus.c. */
#define REPLY_MAX (((size_t) 32 << 20) - 64 * 1024)

typedef struct BusBinding {
        sd_bus_message *call;
        BindingOut *out;
} BusBinding;

static void on_done(int error, const char *message, const BindingResponse *resp, void *userdata) {
        BusBinding *bb = userdata;
        sd_bus_message *call = bb->call;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        size_t size = resp ? resp->len : 0;
        int r;

        for (char *const *p = resp ? resp->metadata : NULL; p && p[0] && p[1]; p += 2)
                size += strlen(p[0]) + strlen(p[1]) + 16;
        if (error < 0)
                (void) sd_bus_reply_method_errorf(call, error_lookup(ERROR_CONTEXT_BINDING, error)->bus_error, "%s",
                                                  message ?: strerror(-error));
        else if (size > REPLY_MAX)
                (void) sd_bus_reply_method_errorf(call, BUS_ERROR_RESPONSE_TOO_LARGE,
                                                  "The answer (%zu bytes) does not fit in one D-Bus message "
                                                  "(at most %zu); use HTTP", size, REPLY_MAX);
        else {
                r = sd_bus_message_new_method_return(call, &reply);
                if (r >= 0)
                        r = sd_bus_message_append_array(reply, 'y', resp && resp->data ? resp->data : "",
                                                        resp ? resp->len : 0);
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'a', "{ss}");
                for (char *const *p = resp ? resp->metadata : NULL; r >= 0 && p && p[0] && p[1]; p += 2)
                        r = sd_bus_message_append(reply, "{ss}", p[0], p[1]);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r >= 0)
                        (void) sd_bus_send(NULL, reply, NULL);
                else
                        (void) sd_bus_reply_method_errnof(call, r, "Cannot build the reply: %m");
        }
        sd_bus_message_unref(call);
        free(bb);
}

static int do_invoke(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *own = NULL;
        _cleanup_strv_free_ char **md = NULL;
        const char *app_id, *name, *op, *k, *v;
        const void *data;
        size_t len;
        int r;

        r = sd_bus_message_rewind(call, true);
        if (r >= 0)
                r = sd_bus_message_read(call, "sss", &app_id, &name, &op);
        if (r >= 0)
                r = sd_bus_message_read_array(call, 'y', &data, &len);
        if (r >= 0)
                r = sd_bus_message_enter_container(call, 'a', "{ss}");
        while (r >= 0 && (r = sd_bus_message_read(call, "{ss}", &k, &v)) > 0)
                if (strv_extend(&md, k) < 0 || strv_extend(&md, v) < 0)
                        return -ENOMEM;
        if (r >= 0)
                r = sd_bus_message_exit_container(call);
        if (r < 0)
                return r;
        if (!*app_id)
                app_id = own = bus_sender_app(call); /* NULL: the caller is no app */
        if (app_id && !registry_find_app(m->registry, app_id))
                return sd_bus_reply_method_errorf(call, BUS_ERROR_NO_SUCH_APP, "No app '%s' is registered", app_id);

        BusBinding *bb = calloc(1, sizeof *bb);
        if (!bb)
                return -ENOMEM;
        bb->call = sd_bus_message_ref(call);
        BindingInvokeRequest req = { .app = app_id, .name = name, .operation = op, .data = data, .len = len,
                                     .metadata = md };
        r = bindings_invoke(m->registry, &req, on_done, bb, &bb->out);
        if (r < 0) {
                sd_bus_message_unref(bb->call);
                free(bb);
                return r;
        }
        return 1;
}

int bus_method_invoke_binding(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        Manager *m = userdata;
        _cleanup_free_ char *own = bus_sender_app(call);
        const char *app_id;
        int r = sd_bus_message_read(call, "s", &app_id);
        if (r < 0)
                return r;
        if (!*app_id || (own && streq(own, app_id)))
                return do_invoke(call, m);
        return polkit_authorize_async(call, m, "org.mooring.runtime1.act-as-app", do_invoke, reterr);
}
