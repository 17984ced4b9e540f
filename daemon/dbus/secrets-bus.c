/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's secrets API over D-Bus, through the same secrets block as HTTP:
 *   GetSecret(s app_id, s store, s name, a{ss} metadata) → a{ss} data
 *   GetBulkSecret(s app_id, s store, a{ss} metadata) → a{sa{ss}} data
 *
 * The caller acts as an app, and that app's scopes apply (component scopes
 * and its Configuration's spec.secrets.scopes). Empty app_id means the app the
 * caller's systemd unit names (mooring-app@<id>.service): no question asked.
 * Naming any other app needs polkit's org.mooring.runtime1.get-secret (root
 * and the daemon's user pass). Replies are marked sensitive, so sd-bus wipes
 * them when they are freed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/secrets.h"
#include "../core/errors.h"
#include "../core/registry.h"
#include "../manager.h"
#include "../util/strv.h"
#include "polkit.h"
#include "secrets-bus.h"
#include "state-bus.h"

/* Runs op once the caller may act as the app it names (first argument). */
static int with_identity(sd_bus_message *call, Manager *m, PolkitContinueFn op, sd_bus_error *reterr) {
        _cleanup_free_ char *own = bus_sender_app(call);
        const char *app_id;
        int r = sd_bus_message_read(call, "s", &app_id);
        if (r < 0)
                return r;
        if (!*app_id) {
                if (!own)
                        return sd_bus_error_set(reterr, BUS_ERROR_PERMISSION_DENIED,
                                                "The caller is not an app: pass an app id (needs authorization) "
                                                "or call from mooring-app@<id>.service");
                return op(call, m);
        }
        if (own && streq(own, app_id))
                return op(call, m);
        return polkit_authorize_async(call, m, "org.mooring.runtime1.get-secret", op, reterr);
}

static int reply_error(sd_bus_message *call, int error, const char *fmt, const char *a, const char *b) {
        _cleanup_free_ char *msg = NULL;
        if (asprintf(&msg, "%s%s%s", fmt, a ? a : "", b ? b : "") < 0)
                return -ENOMEM;
        return sd_bus_reply_method_errorf(call, error_lookup(ERROR_CONTEXT_SECRET, error)->bus_error, "%s", msg);
}

/* Re-reads app id and store; answers itself (and sets *ret_replied) when they do not resolve. */
static int resolve(sd_bus_message *call, Manager *m, char **ret_app, SecretStore **ret_store, bool *ret_replied) {
        _cleanup_free_ char *own = NULL;
        const char *app_id, *store, *why = NULL;
        int r;

        *ret_replied = true;
        r = sd_bus_message_rewind(call, true);
        if (r >= 0)
                r = sd_bus_message_read(call, "ss", &app_id, &store);
        if (r < 0)
                return r;
        if (!*app_id)
                app_id = own = bus_sender_app(call);
        if (!app_id || !registry_find_app(m->registry, app_id))
                return sd_bus_reply_method_errorf(call, BUS_ERROR_NO_SUCH_APP, "No app '%s' is registered",
                                                  strna(app_id));
        r = secrets_lookup(m->registry, store, app_id, ret_store, &why);
        if (r == -ENODEV)
                return reply_error(call, r, "No secret store is configured", NULL, NULL);
        if (r == -EIO)
                return reply_error(call, -ENXIO, "The secret store did not open: ", why, NULL);
        if (r < 0)
                return reply_error(call, -ENXIO, "No secret store '", store, "' for this app");
        *ret_app = strdup(app_id);
        if (!*ret_app)
                return -ENOMEM;
        *ret_replied = false;
        return 0;
}

/* Reads the a{ss} metadata argument into key, value pairs. */
static int read_metadata(sd_bus_message *call, char ***ret) {
        _cleanup_strv_free_ char **md = NULL;
        const char *k, *v;
        int r = sd_bus_message_enter_container(call, 'a', "{ss}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(call, "{ss}", &k, &v)) > 0)
                if (strv_extend(&md, k) < 0 || strv_extend(&md, v) < 0)
                        return -ENOMEM;
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(call);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(md);
        return 0;
}

/* Appends {key: value} of d's entries [from, to) as a{ss}. -EINVAL: a value is no UTF-8 text. */
static int append_keys(sd_bus_message *reply, const SecretData *d, size_t from, size_t to) {
        int r = sd_bus_message_open_container(reply, 'a', "{ss}");
        for (size_t i = from; r >= 0 && i < to; i++) {
                if (strlen(d->items[i].value) != d->items[i].value_len)
                        return -EINVAL; /* a NUL inside: D-Bus strings cannot carry it */
                r = sd_bus_message_append(reply, "{ss}", d->items[i].key, d->items[i].value);
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

static void send_reply(sd_bus_message *call, int error, const char *message, const SecretData *d, bool bulk) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        if (error < 0) {
                (void) reply_error(call, error, strna(message), NULL, NULL);
                return;
        }
        r = sd_bus_message_new_method_return(call, &reply);
        if (r >= 0)
                r = sd_bus_message_sensitive(reply);
        if (r >= 0 && !bulk)
                r = append_keys(reply, d, 0, d->n);
        else if (r >= 0) {
                r = sd_bus_message_open_container(reply, 'a', "{sa{ss}}");
                /* d is sorted by name: one entry per run of the same name */
                for (size_t i = 0; r >= 0 && i < d->n;) {
                        size_t e = i;
                        while (e < d->n && streq(d->items[e].name, d->items[i].name))
                                e++;
                        r = sd_bus_message_open_container(reply, 'e', "sa{ss}");
                        if (r >= 0)
                                r = sd_bus_message_append(reply, "s", d->items[i].name);
                        if (r >= 0)
                                r = append_keys(reply, d, i, e);
                        if (r >= 0)
                                r = sd_bus_message_close_container(reply);
                        i = e;
                }
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        if (r == -EINVAL)
                (void) sd_bus_reply_method_errorf(call, BUS_ERROR_FAILED,
                                                  "A secret's value is not UTF-8 text without NUL: read it over HTTP");
        else if (r < 0)
                (void) sd_bus_reply_method_errnof(call, r, "Cannot build the answer: %m");
        else
                (void) sd_bus_send(NULL, reply, NULL);
}

static void on_got(int error, const char *message, const SecretData *d, void *userdata) {
        sd_bus_message *call = userdata;
        send_reply(call, error, message, d, false);
        sd_bus_message_unref(call);
}

static void on_bulk(int error, const char *message, const SecretData *d, void *userdata) {
        sd_bus_message *call = userdata;
        send_reply(call, error, message, d, true);
        sd_bus_message_unref(call);
}

static int started(sd_bus_message *call, int r, const char *name, const char *store) {
        if (r >= 0)
                return 1;
        sd_bus_message_unref(call);
        if (r == -EACCES)
                return reply_error(call, r, "Access denied by policy to get ", name, " from that store");
        if (r == -EINVAL)
                return reply_error(call, -EACCES, "The app's Configuration is broken: nothing is readable", NULL,
                                   NULL);
        return sd_bus_reply_method_errnof(call, r, "Cannot start the operation: %m");
}

static int do_get(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        _cleanup_strv_free_ char **md = NULL;
        SecretStore *s;
        const char *name;
        bool replied;
        int r = resolve(call, m, &app, &s, &replied);
        if (r < 0 || replied)
                return r;
        r = sd_bus_message_read(call, "s", &name);
        if (r >= 0)
                r = read_metadata(call, &md);
        if (r < 0)
                return r;
        return started(call, secrets_get(s, app, name, md, on_got, sd_bus_message_ref(call)), name,
                       secret_store_name(s));
}

static int do_bulk(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        _cleanup_strv_free_ char **md = NULL;
        SecretStore *s;
        bool replied;
        int r = resolve(call, m, &app, &s, &replied);
        if (r < 0 || replied)
                return r;
        r = read_metadata(call, &md);
        if (r < 0)
                return r;
        return started(call, secrets_bulk(s, app, md, on_bulk, sd_bus_message_ref(call)), NULL,
                       secret_store_name(s));
}

int bus_method_get_secret(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return with_identity(call, userdata, do_get, reterr);
}

int bus_method_get_bulk_secret(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return with_identity(call, userdata, do_bulk, reterr);
}
