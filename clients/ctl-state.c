/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl state: an app's Dapr state, over D-Bus only.
 *
 * "state get", "state set" and "state delete" call GetState, SaveState and
 * DeleteState on org.mooring.Runtime1. Every call names the app it acts as:
 * --app, or "" for the app whose mooring-app@APP_ID.service unit the caller
 * runs in. Acting as another app needs polkit's
 * org.mooring.runtime1.act-as-app (root and mooringd's own user pass), so
 * the calls allow interactive authorization. The daemon's state errors are
 * reported here in terms of the app, store and key; anything else goes
 * through ctl_bus_call_failed(), which also recognizes a daemon that is not
 * running.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl-bus.h"

/* sd-bus refuses arrays above 64 MiB, so a larger value could not be sent anyway. */
#define VALUE_MAX ((size_t) 64 << 20)

static int bad_reply(const char *what, int r) {
        if (r == -ENOMEM)
                return ctl_log_oom();
        ctl_log("%s failed: unexpected reply from mooringd", what);
        return -EBADMSG;
}

/*
 * Report a failed state call. The daemon's state errors get messages of
 * their own (and -ENOENT, -ESTALE or -EPERM); the rest is left to
 * ctl_bus_call_failed().
 */
static int state_call_failed(const CtlOptions *o, const CtlStateRequest *req, int r, const sd_bus_error *error,
                             const char *what) {
        const char *app = req->app_id;

        if (sd_bus_error_has_name(error, CTL_BUS_ERROR_NO_SUCH_APP)) {
                if (app[0])
                        ctl_log("no app '%s' is registered", app);
                else
                        ctl_log("no app is registered for the caller's mooring-app@.service unit");
                return -ENOENT;
        }
        if (sd_bus_error_has_name(error, CTL_BUS_ERROR_NO_SUCH_STORE)) {
                if (app[0])
                        ctl_log("no state store '%s' for app '%s'", req->store, app);
                else
                        ctl_log("no state store '%s' for the caller's app", req->store);
                return -ENOENT;
        }
        if (sd_bus_error_has_name(error, CTL_BUS_ERROR_ETAG_MISMATCH)) {
                /* the daemon reports a first-write conflict with the same error */
                if (req->first_write && !req->etag)
                        ctl_log("key '%s' already exists in store '%s' (--first-write)", req->key, req->store);
                else
                        ctl_log("etag mismatch for key '%s'", req->key);
                return -ESTALE;
        }
        if (sd_bus_error_has_name(error, CTL_BUS_ERROR_PERMISSION_DENIED)) {
                if (app[0])
                        ctl_log("not authorized to act as app '%s'", app);
                else
                        ctl_log("the caller is not an app: pass --app=APP_ID, or run in the app's "
                                "mooring-app@APP_ID.service");
                return -EPERM;
        }
        return ctl_bus_call_failed(o, r, error, what);
}

/* A method call on org.mooring.Runtime1 with app_id, store and key appended. */
static int new_state_call(sd_bus *bus, const char *method, const CtlStateRequest *req, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, method);
        if (r < 0)
                return r;
        /* polkit may ask the user to authenticate when acting as another app */
        r = sd_bus_message_set_allow_interactive_authorization(m, true);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "sss", req->app_id, req->store, req->key);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

/* Append the etag ("" for none) and the a{ss} options of SaveState and DeleteState. */
static int append_etag_and_options(sd_bus_message *m, const CtlStateRequest *req) {
        int r;

        r = sd_bus_message_append(m, "s", strempty(req->etag));
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "{ss}");
        if (r < 0)
                return r;
        if (req->first_write) {
                r = sd_bus_message_append(m, "{ss}", "concurrency", "first-write");
                if (r < 0)
                        return r;
        }
        if (req->ttl) {
                r = sd_bus_message_append(m, "{ss}", "ttlInSeconds", req->ttl);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
}

static int log_build_failed(const char *what, int r) {
        if (r == -ENOMEM)
                return ctl_log_oom();
        return ctl_log_errno(r, "%s failed: cannot build the D-Bus call: %m", what);
}

/* Read all of standard input (at most VALUE_MAX bytes) into a malloc'd buffer. */
static int read_stdin(char **ret, size_t *ret_size) {
        int r = ctl_read_all(STDIN_FILENO, VALUE_MAX, ret, ret_size);

        if (r == -ENOMEM)
                return ctl_log_oom();
        if (r == -EFBIG) {
                ctl_log("the value on standard input is larger than %zu MiB, refusing it", VALUE_MAX >> 20);
                return r;
        }
        if (r < 0)
                return ctl_log_errno(r, "cannot read the value from standard input: %m");
        return 0;
}

/*
 * "state get": GetState. Returns 0 with the value in *ret, or a reported
 * negative errno; -ENOENT when the key (or app, or store) does not exist.
 */
int ctl_state_get(const CtlOptions *o, const CtlStateRequest *req, CtlStateValue *ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *etag;
        const void *data;
        size_t size;
        char what[256];
        int found, r;

        snprintf(what, sizeof(what), "reading key '%s'", req->key);

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;

        r = new_state_call(bus, "GetState", req, &call);
        if (r < 0)
                return log_build_failed(what, r);
        r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0)
                return state_call_failed(o, req, r, &error, what);

        r = sd_bus_message_read(reply, "b", &found);
        if (r < 0)
                return bad_reply(what, r);
        r = sd_bus_message_read_array(reply, 'y', &data, &size);
        if (r < 0)
                return bad_reply(what, r);
        r = sd_bus_message_read(reply, "s", &etag);
        if (r < 0)
                return bad_reply(what, r);

        if (!found) {
                ctl_log("key '%s' not found in store '%s'", req->key, req->store);
                return -ENOENT;
        }

        r = ctl_state_value_set(ret, data, size, etag);
        if (r < 0)
                return ctl_log_oom();
        return 0;
}

/*
 * "state set": SaveState with VALUE, or with standard input when VALUE is
 * "-". Returns 0 or a reported negative errno (-ESTALE: etag mismatch or
 * first-write conflict).
 */
int ctl_state_set(const CtlOptions *o, const CtlStateRequest *req) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *input = NULL;
        const char *value = req->value;
        size_t size = 0;
        char what[256];
        int r;

        snprintf(what, sizeof(what), "saving key '%s'", req->key);

        /* read the value first: a failure there should not need the daemon */
        if (streq(value, "-")) {
                r = read_stdin(&input, &size);
                if (r < 0)
                        return r;
                value = input;
        } else
                size = strlen(value);

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;

        r = new_state_call(bus, "SaveState", req, &call);
        if (r >= 0)
                /* an empty value still needs a valid pointer */
                r = sd_bus_message_append_array(call, 'y', value ?: "", size);
        if (r >= 0)
                r = append_etag_and_options(call, req);
        if (r < 0)
                return log_build_failed(what, r);

        r = sd_bus_call(bus, call, 0, &error, NULL);
        if (r < 0)
                return state_call_failed(o, req, r, &error, what);
        return 0;
}

/*
 * "state delete": DeleteState. Deleting a key that does not exist succeeds,
 * as in Dapr. Returns 0 or a reported negative errno (-ESTALE: etag
 * mismatch).
 */
int ctl_state_delete(const CtlOptions *o, const CtlStateRequest *req) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char what[256];
        int r;

        snprintf(what, sizeof(what), "deleting key '%s'", req->key);

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;

        r = new_state_call(bus, "DeleteState", req, &call);
        if (r >= 0)
                r = append_etag_and_options(call, req);
        if (r < 0)
                return log_build_failed(what, r);

        r = sd_bus_call(bus, call, 0, &error, NULL);
        if (r < 0)
                return state_call_failed(o, req, r, &error, what);
        return 0;
}
