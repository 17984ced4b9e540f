/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: the D-Bus transport.
 *
 * Connects to the system bus, the session bus (--user) or an explicit
 * address (--bus-address), reads org.mooring.Runtime1's properties and fills
 * the model. Connection problems and a missing daemon are reported here and
 * returned as -CTL_ERR_UNREACHABLE; every other failure keeps its own errno
 * (never -CTL_ERR_UNREACHABLE) so main() can tell the two apart.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-bus.h"

/* "system bus", "session bus" or "bus at 'ADDR'", for messages. */
const char *ctl_bus_describe(const CtlOptions *o, char *buf, size_t size) {
        if (o->bus_address) {
                snprintf(buf, size, "bus at '%s'", o->bus_address);
                return buf;
        }
        return o->user ? "session bus" : "system bus";
}

/* Errors sd-bus returns when the connection itself broke or never came up. */
static bool errno_is_disconnect(int r) {
        switch (abs(r)) {
        case ECONNREFUSED:
        case ECONNRESET:
        case ECONNABORTED:
        case ENOTCONN:
        case ESHUTDOWN:
        case EPIPE:
        case ENOENT:
                return true;
        default:
                return false;
        }
}

static int log_cannot_connect(const CtlOptions *o, int r) {
        char buf[512];

        if (r == -ENOMEM)
                return ctl_log_oom();
        if (o->bus_address && r == -EINVAL)
                return ctl_log_errno(r, "invalid D-Bus address '%s'", o->bus_address);
        if (!o->bus_address && o->user && r == -ENOMEDIUM) {
                ctl_log("cannot connect to the session bus: $DBUS_SESSION_BUS_ADDRESS and "
                        "$XDG_RUNTIME_DIR are not set");
                return -CTL_ERR_UNREACHABLE;
        }
        ctl_log_errno(r, "cannot connect to the %s: %m", ctl_bus_describe(o, buf, sizeof(buf)));
        return -CTL_ERR_UNREACHABLE;
}

/*
 * Open the bus the options select and wait until the connection is up (the
 * Hello reply arrived), so that "cannot connect" is reported here rather
 * than as an odd error from the first call. Returns 0 and a new reference in
 * *ret, or a reported negative errno.
 */
int ctl_bus_open(const CtlOptions *o, sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const char *unique;
        int r;

        if (o->bus_address) {
                r = sd_bus_new(&bus);
                if (r < 0)
                        return ctl_log_oom();
                r = sd_bus_set_address(bus, o->bus_address);
                if (r < 0)
                        return log_cannot_connect(o, r);
                r = sd_bus_set_bus_client(bus, 1);
                if (r < 0)
                        return log_cannot_connect(o, r);
                r = sd_bus_start(bus);
        } else if (o->user)
                r = sd_bus_open_user(&bus);
        else
                r = sd_bus_open_system(&bus);
        if (r < 0)
                return log_cannot_connect(o, r);

        r = sd_bus_get_unique_name(bus, &unique);
        if (r < 0)
                return log_cannot_connect(o, r);

        *ret = TAKE_PTR(bus);
        return 0;
}

/*
 * Report a failed call described by `what` ("reading the daemon's state")
 * and return the errno to pass up: -CTL_ERR_UNREACHABLE when nobody owns the
 * name or the connection broke, r otherwise.
 */
int ctl_bus_call_failed(const CtlOptions *o, int r, const sd_bus_error *error, const char *what) {
        char buf[512];

        if (sd_bus_error_has_name(error, SD_BUS_ERROR_NAME_HAS_NO_OWNER) ||
            sd_bus_error_has_name(error, SD_BUS_ERROR_SERVICE_UNKNOWN)) {
                ctl_log("mooringd is not running (nobody owns " CTL_BUS_NAME " on the %s)",
                        ctl_bus_describe(o, buf, sizeof(buf)));
                return -CTL_ERR_UNREACHABLE;
        }
        if (sd_bus_error_is_set(error))
                ctl_log("%s failed: %s", what, error->message ?: error->name);
        else if (errno_is_disconnect(r)) {
                ctl_log_errno(r, "lost the connection to the %s: %m", ctl_bus_describe(o, buf, sizeof(buf)));
                return -CTL_ERR_UNREACHABLE;
        } else if (r == -ENXIO || r == -EBADMSG)
                /* sd-bus says ENXIO when a reply's signature is not what we asked for */
                ctl_log("%s failed: unexpected reply from mooringd", what);
        else if (r == -ENOMEM)
                return ctl_log_oom();
        else
                ctl_log_errno(r, "%s failed: %m", what);

        return r == -CTL_ERR_UNREACHABLE ? -EIO : r;
}

static int bad_reply(const char *what, int r) {
        if (r == -ENOMEM)
                return ctl_log_oom();
        ctl_log("%s failed: unexpected reply from mooringd", what);
        return -EBADMSG;
}

/* Skip one variant whose contents are an array of `element`, counting the elements. */
static int count_variant_array(sd_bus_message *m, const char *contents, const char *element, uint64_t *ret) {
        uint64_t n = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'v', contents);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'a', element);
        if (r < 0)
                return r;
        for (;;) {
                r = sd_bus_message_at_end(m, false);
                if (r < 0)
                        return r;
                if (r > 0)
                        break;
                r = sd_bus_message_skip(m, element);
                if (r < 0)
                        return r;
                n++;
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = n;
        return 0;
}

/* "status": Version, State and the sizes of Apps and Components, in one GetAll call. */
int ctl_bus_get_status(const CtlOptions *o, CtlStatus *ret) {
        static const char what[] = "reading the daemon's status";
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *version = NULL, *state = NULL;
        uint64_t n_apps = UINT64_MAX, n_components = UINT64_MAX;
        int r;

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;

        r = sd_bus_call_method(bus, CTL_BUS_NAME, CTL_BUS_PATH, "org.freedesktop.DBus.Properties", "GetAll",
                               &error, &reply, "s", CTL_BUS_INTERFACE);
        if (r < 0)
                return ctl_bus_call_failed(o, r, &error, what);

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return bad_reply(what, r);
        for (;;) {
                const char *key;

                r = sd_bus_message_enter_container(reply, 'e', "sv");
                if (r < 0)
                        return bad_reply(what, r);
                if (r == 0)
                        break;
                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return bad_reply(what, r);

                if (streq(key, "Version"))
                        r = sd_bus_message_read(reply, "v", "s", &version);
                else if (streq(key, "State"))
                        r = sd_bus_message_read(reply, "v", "s", &state);
                else if (streq(key, "Apps"))
                        r = count_variant_array(reply, "a(sssqs)", "(sssqs)", &n_apps);
                else if (streq(key, "Components"))
                        r = count_variant_array(reply, "a(ssss)", "(ssss)", &n_components);
                else
                        r = sd_bus_message_skip(reply, "v");
                if (r < 0)
                        return bad_reply(what, r);

                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return bad_reply(what, r);
        }
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return bad_reply(what, r);

        if (!version || !state || n_apps == UINT64_MAX || n_components == UINT64_MAX) {
                ctl_log("%s failed: the reply lacks Version, State, Apps or Components", what);
                return -EBADMSG;
        }

        r = ctl_status_set(ret, version, state, n_apps, n_components);
        if (r < 0)
                return ctl_log_oom();
        return 0;
}

/* The gRPC socket and port of app id (GetApp's GrpcSocket, GrpcPort); left as they are when the
 * daemon does not say. */
static int get_app_grpc(sd_bus *bus, const char *id, CtlApp *app) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(bus, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "GetApp", NULL, &reply,
                                   "s", id);
        if (r < 0)
                return 0; /* gone meanwhile: the list still shows it */
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key, *s;
                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0 && streq(key, "GrpcPort"))
                        r = sd_bus_message_read(reply, "v", "q", &app->grpc_port);
                else if (r >= 0 && streq(key, "GrpcSocket")) {
                        r = sd_bus_message_read(reply, "v", "s", &s);
                        if (r >= 0 && *s && !app->grpc_socket && !(app->grpc_socket = strdup(s)))
                                r = -ENOMEM;
                } else if (r >= 0)
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        return r == -ENOMEM ? r : 0;
}

/* "apps": the Apps property, a(sssqs), sorted by id. */
int ctl_bus_get_apps(const CtlOptions *o, CtlAppList *ret) {
        static const char what[] = "reading the list of apps";
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(ctl_app_list_done) CtlAppList list = {};
        int r;

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;

        r = sd_bus_get_property(bus, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "Apps",
                                &error, &reply, "a(sssqs)");
        if (r < 0)
                return ctl_bus_call_failed(o, r, &error, what);

        r = sd_bus_message_enter_container(reply, 'a', "(sssqs)");
        if (r < 0)
                return bad_reply(what, r);
        for (;;) {
                const char *id, *address, *sock, *health;
                uint16_t port;

                r = sd_bus_message_read(reply, "(sssqs)", &id, &address, &sock, &port, &health);
                if (r < 0)
                        return bad_reply(what, r);
                if (r == 0)
                        break;
                r = ctl_app_list_add(&list, id, address, sock, port, health);
                if (r < 0)
                        return ctl_log_oom();
        }
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return bad_reply(what, r);
        for (size_t i = 0; i < list.n; i++)
                if (get_app_grpc(bus, list.items[i].id, &list.items[i]) < 0)
                        return ctl_log_oom();

        ctl_app_list_sort(&list);
        *ret = list;
        list = (CtlAppList) {};
        return 0;
}

/* "components": the Components property, a(ssss), sorted by name. */
int ctl_bus_get_components(const CtlOptions *o, CtlComponentList *ret) {
        static const char what[] = "reading the list of components";
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(ctl_component_list_done) CtlComponentList list = {};
        int r;

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;

        r = sd_bus_get_property(bus, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "Components",
                                &error, &reply, "a(ssss)");
        if (r < 0)
                return ctl_bus_call_failed(o, r, &error, what);

        r = sd_bus_message_enter_container(reply, 'a', "(ssss)");
        if (r < 0)
                return bad_reply(what, r);
        for (;;) {
                const char *name, *type, *version, *file;

                r = sd_bus_message_read(reply, "(ssss)", &name, &type, &version, &file);
                if (r < 0)
                        return bad_reply(what, r);
                if (r == 0)
                        break;
                r = ctl_component_list_add(&list, name, type, version, file);
                if (r < 0)
                        return ctl_log_oom();
        }
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return bad_reply(what, r);

        /* Why some could not be loaded (ComponentErrors); a daemon without the property has none to say. */
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *errors = NULL;
        sd_bus_error_free(&error);
        if (sd_bus_get_property(bus, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "ComponentErrors", &error,
                                &errors, "a(ss)") >= 0 &&
            sd_bus_message_enter_container(errors, 'a', "(ss)") >= 0) {
                const char *name, *why;
                while ((r = sd_bus_message_read(errors, "(ss)", &name, &why)) > 0)
                        if (ctl_component_list_set_error(&list, name, why) < 0)
                                return ctl_log_oom();
                if (r < 0)
                        return bad_reply(what, r);
        }

        ctl_component_list_sort(&list);
        *ret = list;
        list = (CtlComponentList) {};
        return 0;
}

/* "subscriptions": ListSubscriptions() → a(sssss), sorted. */
int ctl_bus_get_subscriptions(const CtlOptions *o, CtlSubscriptionList *ret) {
        static const char what[] = "reading the list of subscriptions";
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(ctl_subscription_list_done) CtlSubscriptionList list = {};
        int r;

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;

        r = sd_bus_call_method(bus, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "ListSubscriptions", &error,
                               &reply, NULL);
        if (r < 0)
                return ctl_bus_call_failed(o, r, &error, what);

        r = sd_bus_message_enter_container(reply, 'a', "(sssss)");
        if (r < 0)
                return bad_reply(what, r);
        for (;;) {
                const char *app, *pubsub, *topic, *route, *kind;

                r = sd_bus_message_read(reply, "(sssss)", &app, &pubsub, &topic, &route, &kind);
                if (r < 0)
                        return bad_reply(what, r);
                if (r == 0)
                        break;
                r = ctl_subscription_list_add(&list, app, pubsub, topic, route, kind);
                if (r < 0)
                        return ctl_log_oom();
        }
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return bad_reply(what, r);

        ctl_subscription_list_sort(&list);
        *ret = list;
        list = (CtlSubscriptionList) {};
        return 0;
}
