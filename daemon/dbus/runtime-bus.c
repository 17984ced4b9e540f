/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See runtime-bus.h. The vtable is built with SD_BUS_METHOD_WITH_ARGS so that
 * introspection carries argument names; a test compares the live
 * introspection with dbus/org.mooring.Runtime1.xml.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-login.h>

#include "../core/app.h"
#include "../core/component.h"
#include "../core/errors.h"
#include "../core/identity.h"
#include "../manager.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "actors-bus.h"
#include "invoke-bus.h"
#include "lock-bus.h"
#include "polkit.h"
#include "pubsub-bus.h"
#include "bindings-bus.h"
#include "secrets-bus.h"
#include "state-bus.h"
#include "runtime-bus.h"


static int prop_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *reterr) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int prop_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                      sd_bus_message *reply, void *userdata, sd_bus_error *reterr) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", manager_state_to_string(m->state));
}

static int prop_apps(sd_bus *bus, const char *path, const char *interface, const char *property,
                     sd_bus_message *reply, void *userdata, sd_bus_error *reterr) {
        Manager *m = userdata;
        int r = sd_bus_message_open_container(reply, 'a', "(sssqs)");
        for (size_t i = 0; r >= 0 && i < m->registry->n_apps; i++) {
                const App *a = m->registry->apps[i];
                r = sd_bus_message_append(reply, "(sssqs)", a->config->id, strempty(a->config->app_address),
                                          strempty(a->socket_path), a->config->http_port,
                                          app_health_to_string(a->health));
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

static int prop_components(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *reterr) {
        Manager *m = userdata;
        int r = sd_bus_message_open_container(reply, 'a', "(ssss)");
        for (size_t i = 0; r >= 0 && i < m->registry->n_components; i++) {
                const Component *c = m->registry->components[i];
                r = sd_bus_message_append(reply, "(ssss)", c->name, c->type, c->version, c->file);
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

/* (name, why) of each component that could not be loaded. */
static int prop_component_errors(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *reterr) {
        Manager *m = userdata;
        int r = sd_bus_message_open_container(reply, 'a', "(ss)");
        for (size_t i = 0; r >= 0 && i < m->registry->n_components; i++) {
                const Component *c = m->registry->components[i];
                if (c->load_error)
                        r = sd_bus_message_append(reply, "(ss)", c->name, c->load_error);
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

/* ---- Reload ---- */

static int reload_authorized(sd_bus_message *call, Manager *m) {
        if (m->state != MANAGER_RUNNING)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_FAILED, "Cannot reload while %s",
                                                  manager_state_to_string(m->state));
        int r = manager_reload(m);
        if (r < 0)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_FAILED, "Reload failed: %s", strerror(-r));
        /* The good files were applied, but the caller must not take the reload for a clean one. */
        if (m->registry->n_config_errors > 0)
                return sd_bus_reply_method_errorf(
                        call, BUS_ERROR_CONFIGURATION_ERRORS,
                        "Reloaded with %u configuration errors; %u broken files or documents kept their "
                        "previous version (see the log for file:line)",
                        m->registry->n_config_errors, m->registry->n_config_kept);
        return sd_bus_reply_method_return(call, NULL);
}

static int method_reload(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return polkit_authorize_async(call, userdata, "org.mooring.runtime1.reload", reload_authorized, reterr);
}

/* A continuation runs after polkit answered: read the app id from the top again. */
static int reread_app_id(sd_bus_message *call, const char **ret) {
        int r = sd_bus_message_rewind(call, true);
        if (r < 0)
                return r;
        return sd_bus_message_read(call, "s", ret);
}

/* ---- RegisterApp ---- */

/*
 * An app registered with Ephemeral=yes (mooringctl run) lives as long as the connection that
 * registered it: sd-bus's tracking watches NameOwnerChanged of that unique name, so the app goes
 * when the client closes its connection, exits or is killed (SIGKILL included). The entry goes
 * when the app leaves the registry for whatever reason (REGISTRY_APP_REMOVED).
 */
typedef struct BusOwnedApp {
        Manager *m;
        App *app;                  /* borrowed: the entry goes when the app leaves the registry */
        sd_bus_track *track;
        struct BusOwnedApp *next;
} BusOwnedApp;

static void owned_app_free(Manager *m, BusOwnedApp *o) {
        for (BusOwnedApp **p = &m->owned_apps; *p; p = &(*p)->next)
                if (*p == o) {
                        *p = o->next;
                        break;
                }
        sd_bus_track_unref(o->track);
        free(o);
}

static int on_owner_gone(sd_bus_track *t, void *userdata) {
        BusOwnedApp *o = userdata;
        Manager *m = o->m;

        log_struct(LOG_INFO, 0, o->app->config->id, NULL, "The client that registered the app left the bus; removing it.");
        /* REGISTRY_APP_REMOVED frees o (sd-bus holds its own reference on t during this call) */
        if (manager_unregister_app(m, o->app->config->id) < 0)
                owned_app_free(m, o);
        return 1; /* handled: not to be dispatched again */
}

static void on_app_removed(Registry *r, App *a, void *userdata) {
        Manager *m = userdata;
        for (BusOwnedApp *o = m->owned_apps; o; o = o->next)
                if (o->app == a) {
                        owned_app_free(m, o);
                        return;
                }
}

static int track_owner(Manager *m, sd_bus_message *call, const char *id) {
        BusOwnedApp *o;
        int r;

        App *a = registry_find_app(m->registry, id);
        if (!a)
                return -ENOENT;
        o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        *o = (BusOwnedApp) { .m = m, .app = a, .next = m->owned_apps };
        m->owned_apps = o;
        r = registry_add_callback(m->registry, REGISTRY_APP_REMOVED, on_app_removed, m);
        if (r < 0 && r != -EEXIST)
                return r;
        r = sd_bus_track_new(sd_bus_message_get_bus(call), &o->track, on_owner_gone, o);
        if (r >= 0)
                r = sd_bus_track_add_sender(o->track, call);
        return r;
}

/* The connection closed: every client that registered an app is gone with it. */
static void owned_apps_drop_all(Manager *m) {
        while (m->owned_apps) {
                BusOwnedApp *o = m->owned_apps;
                const char *id = o->app->config->id;
                log_struct(LOG_INFO, 0, id, NULL, "Removing the app: the bus its client was on is gone.");
                if (manager_unregister_app(m, id) < 0 || m->owned_apps == o)
                        owned_app_free(m, o);
        }
}

static int read_settings(sd_bus_message *call, const char *id, AppConfig **ret, bool *ret_ephemeral,
                         sd_bus_error *reterr) {
        _cleanup_(app_config_freep) AppConfig *c = NULL;
        int r;

        if (!app_id_is_valid(id))
                return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid app id '%s': lower-case letters, digits, '.', '_', '-', at most 63, "
                                         "starting with a letter or digit", id);
        c = app_config_new(id);
        if (!c)
                return -ENOMEM;
        r = sd_bus_message_enter_container(call, 'a', "{sv}");
        if (r < 0)
                return r;
        for (;;) {
                const char *key, *contents, *s = NULL;
                char buf[16];
                _cleanup_free_ char *msg = NULL;

                r = sd_bus_message_enter_container(call, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read(call, "s", &key);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(call, NULL, &contents);
                if (r < 0)
                        return r;
                r = sd_bus_message_enter_container(call, 'v', contents);
                if (r < 0)
                        return r;
                if (streq(contents, "s"))
                        r = sd_bus_message_read(call, "s", &s);
                else if (streq(contents, "q") || streq(contents, "u") || streq(contents, "i")) {
                        uint32_t v = 0;
                        r = sd_bus_message_read_basic(call, contents[0], &v);
                        if (contents[0] == 'q')
                                v &= 0xffff;
                        snprintf(buf, sizeof buf, "%u", v);
                        s = buf;
                } else
                        return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                                 "Setting '%s' has type '%s'; expected a string or number", key,
                                                 contents);
                if (r < 0)
                        return r;
                if (streq(key, "Ephemeral")) {
                        /* not an app file setting: how long the registration lives */
                        if (!s || (!streq(s, "yes") && !streq(s, "no") && !streq(s, "true") && !streq(s, "false") &&
                                   !streq(s, "1") && !streq(s, "0")))
                                return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                                         "Setting 'Ephemeral': expected yes or no");
                        *ret_ephemeral = streq(s, "yes") || streq(s, "true") || streq(s, "1");
                        r = 0;
                } else
                        r = app_config_set(c, key, s, &msg);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT, "Setting '%s': %s", key,
                                                 msg ?: "invalid");
                r = sd_bus_message_exit_container(call);
                if (r >= 0)
                        r = sd_bus_message_exit_container(call);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_exit_container(call);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

static int register_authorized(sd_bus_message *call, Manager *m) {
        sd_bus_error err = SD_BUS_ERROR_NULL;
        AppConfig *c = NULL;
        ConfError ce = {};
        const char *id;
        bool ephemeral = false;
        int r;

        r = reread_app_id(call, &id);
        if (r < 0)
                return r;
        r = read_settings(call, id, &c, &ephemeral, &err);
        if (r < 0) {
                if (!sd_bus_error_is_set(&err))
                        sd_bus_error_set_errno(&err, r);
                r = sd_bus_reply_method_error(call, &err);
                sd_bus_error_free(&err);
                return r;
        }
        r = manager_register_app(m, c, &ce);
        if (r < 0) {
                _cleanup_free_ char *s = conf_error_format(&ce);
                conf_error_done(&ce);
                if (r == -ENOMEM)
                        return r;
                return sd_bus_reply_method_errorf(call, r == -EEXIST ? BUS_ERROR_APP_EXISTS : BUS_ERROR_INVALID_ARGUMENT, "%s",
                                                  s ?: "invalid");
        }
        if (ephemeral) {
                r = track_owner(m, call, id);
                if (r < 0) {
                        /* an app nobody would remove must not stay */
                        (void) manager_unregister_app(m, id);
                        return sd_bus_reply_method_errorf(call, BUS_ERROR_FAILED, "Cannot watch the caller: %s",
                                                          strerror(-r));
                }
        }
        return sd_bus_reply_method_return(call, NULL);
}

static int method_register_app(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return polkit_authorize_async(call, userdata, "org.mooring.runtime1.manage-apps", register_authorized,
                                      reterr);
}

/* ---- UnregisterApp ---- */

static int unregister_authorized(sd_bus_message *call, Manager *m) {
        const char *id;
        int r;

        r = reread_app_id(call, &id);
        if (r < 0)
                return r;
        App *a = registry_find_app(m->registry, id);
        if (!a)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_NO_SUCH_APP, "No app '%s' is registered", id);
        if (a->source != APP_SOURCE_BUS)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_INVALID_ARGUMENT,
                                                  "App '%s' comes from %s; remove the file and reload instead", id,
                                                  strna(a->config->file));
        r = manager_unregister_app(m, id);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(call, NULL);
}

static int method_unregister_app(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return polkit_authorize_async(call, userdata, "org.mooring.runtime1.manage-apps", unregister_authorized,
                                      reterr);
}

/* ---- GetApp ---- */

/* The token goes only to root, the daemon's own user, and the app's own unit. */
static bool may_see_token(sd_bus_message *call, const char *id) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const char *unit = NULL;
        _cleanup_free_ char *unit_app = NULL;
        uid_t uid;

        if (sd_bus_query_sender_creds(call, SD_BUS_CREDS_EUID | SD_BUS_CREDS_UNIT | SD_BUS_CREDS_USER_UNIT,
                                      &creds) < 0)
                return false;
        if (sd_bus_creds_get_euid(creds, &uid) >= 0 && (uid == 0 || uid == geteuid()))
                return true;
        if ((sd_bus_creds_get_unit(creds, &unit) >= 0 && identity_app_from_unit(unit, &unit_app) &&
             streq(unit_app, id)))
                return true;
        return false;
}

/*
 * The app's own unit asking for its endpoints (mooringctl app-exec, the ExecStart= of
 * mooring-app@.service) is handed the app's socket: without User= it was created 0600 and ours,
 * because a DynamicUser= unit's uid is only known once it runs. The unit is read from the
 * caller's cgroup, which the caller cannot choose; its uid is the only one given access.
 */
static void claim_socket(sd_bus_message *call, App *a) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        _cleanup_free_ char *unit_app = NULL, *unit = NULL;
        uid_t uid;
        pid_t pid;

        /* The unit from the pid's cgroup, read here: the bus's own creds may carry no unit. */
        if (a->config->user || a->config->allow_any_user || !a->socket_path ||
            sd_bus_query_sender_creds(call, SD_BUS_CREDS_PID | SD_BUS_CREDS_UID | SD_BUS_CREDS_EUID, &creds) < 0 ||
            (sd_bus_creds_get_euid(creds, &uid) < 0 && sd_bus_creds_get_uid(creds, &uid) < 0) ||
            sd_bus_creds_get_pid(creds, &pid) < 0 || sd_pid_get_unit(pid, &unit) < 0 ||
            !identity_app_from_unit(unit, &unit_app) || !streq_ptr(unit_app, a->config->id))
                return;
        app_hand_sockets(a, uid, unit);
}

static int method_get_app(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        const char *id;
        int r;

        r = sd_bus_message_read(call, "s", &id);
        if (r < 0)
                return r;
        App *a = registry_find_app(m->registry, id);
        if (!a)
                return sd_bus_error_setf(reterr, BUS_ERROR_NO_SUCH_APP, "No app '%s' is registered", id);
        const AppConfig *c = a->config;

        claim_socket(call, a);
        r = sd_bus_message_new_method_return(call, &reply);
        if (r >= 0)
                r = sd_bus_message_append(reply, "a{sv}", 8 + (c->api_token && may_see_token(call, id) ? 1 : 0),
                                          "AppId", "s", c->id, "AppAddress", "s", strempty(c->app_address),
                                          "HttpSocket", "s", strempty(a->socket_path), "HttpPort", "q",
                                          c->http_port, "GrpcSocket", "s", strempty(a->grpc_socket_path),
                                          "GrpcPort", "q", c->grpc_port, "Health", "s",
                                          app_health_to_string(a->health), "Exec", "s", strempty(c->exec),
                                          "ApiToken", "s", strempty(c->api_token));
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static const sd_bus_vtable runtime_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", prop_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", prop_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Apps", "a(sssqs)", prop_apps, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Components", "a(ssss)", prop_components, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ComponentErrors", "a(ss)", prop_component_errors, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("Reload", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_reload,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RegisterApp", SD_BUS_ARGS("s", app_id, "a{sv}", settings), SD_BUS_NO_RESULT,
                                method_register_app, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("UnregisterApp", SD_BUS_ARGS("s", app_id), SD_BUS_NO_RESULT,
                                method_unregister_app, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetApp", SD_BUS_ARGS("s", app_id), SD_BUS_RESULT("a{sv}", info),
                                method_get_app, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetState", SD_BUS_ARGS("s", app_id, "s", store, "s", key),
                                SD_BUS_RESULT("b", found, "ay", value, "s", etag), bus_method_get_state,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SaveState",
                                SD_BUS_ARGS("s", app_id, "s", store, "s", key, "ay", value, "s", etag, "a{ss}", options),
                                SD_BUS_NO_RESULT, bus_method_save_state, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("DeleteState",
                                SD_BUS_ARGS("s", app_id, "s", store, "s", key, "s", etag, "a{ss}", options),
                                SD_BUS_NO_RESULT, bus_method_delete_state, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetBulkState", SD_BUS_ARGS("s", app_id, "s", store, "as", keys),
                                SD_BUS_RESULT("a(sbays)", items), bus_method_get_bulk_state,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ExecuteStateTransaction",
                                SD_BUS_ARGS("s", app_id, "s", store, "a(ssays)", operations), SD_BUS_NO_RESULT,
                                bus_method_execute_state_transaction, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("QueryState", SD_BUS_ARGS("s", app_id, "s", store, "s", query),
                                SD_BUS_RESULT("a(says)", items, "s", token), bus_method_query_state,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("TryLock",
                                SD_BUS_ARGS("s", app_id, "s", store, "s", resource, "s", owner, "i", expiry_seconds),
                                SD_BUS_RESULT("b", acquired), bus_method_try_lock, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Unlock", SD_BUS_ARGS("s", app_id, "s", store, "s", resource, "s", owner),
                                SD_BUS_RESULT("i", status), bus_method_unlock, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetConfiguration", SD_BUS_ARGS("s", app_id, "s", store, "as", keys),
                                SD_BUS_RESULT("a(sssa{ss})", items), bus_method_get_configuration,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("InvokeMethod",
                                SD_BUS_ARGS("s", app_id, "s", method, "s", verb, "a(ss)", headers, "ay", body),
                                SD_BUS_RESULT("q", status, "a(ss)", headers, "ay", body), bus_method_invoke_method,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("InvokeBinding",
                                SD_BUS_ARGS("s", app_id, "s", name, "s", operation, "ay", data, "a{ss}", metadata),
                                SD_BUS_RESULT("ay", data, "a{ss}", metadata), bus_method_invoke_binding,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Publish",
                                SD_BUS_ARGS("s", pubsub, "s", topic, "s", content_type, "ay", data, "a{ss}", metadata),
                                SD_BUS_NO_RESULT, bus_method_publish, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Subscribe", SD_BUS_ARGS("s", pubsub, "s", topic, "s", group, "u", max_in_flight),
                                SD_BUS_RESULT("o", subscription), bus_method_subscribe, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListSubscriptions", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(sssss)", subscriptions),
                                bus_method_list_subscriptions, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetSecret", SD_BUS_ARGS("s", app_id, "s", store, "s", name, "a{ss}", metadata),
                                SD_BUS_RESULT("a{ss}", data), bus_method_get_secret, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetBulkSecret", SD_BUS_ARGS("s", app_id, "s", store, "a{ss}", metadata),
                                SD_BUS_RESULT("a{sa{ss}}", data), bus_method_get_bulk_secret,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("InvokeActor", SD_BUS_ARGS("s", app_id, "s", type, "s", id, "s", method, "ay", data),
                                SD_BUS_RESULT("ay", data), bus_method_invoke_actor, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetActorState", SD_BUS_ARGS("s", app_id, "s", type, "s", id, "s", key),
                                SD_BUS_RESULT("b", found, "ay", value), bus_method_get_actor_state,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ExecuteActorStateTransaction",
                                SD_BUS_ARGS("s", app_id, "s", type, "s", id, "a(ssay)", operations), SD_BUS_NO_RESULT,
                                bus_method_execute_actor_state_transaction, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RegisterActorReminder",
                                SD_BUS_ARGS("s", app_id, "s", type, "s", id, "s", name, "s", due_time, "s", period,
                                            "s", ttl, "ay", data),
                                SD_BUS_NO_RESULT, bus_method_register_actor_reminder, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("UnregisterActorReminder", SD_BUS_ARGS("s", app_id, "s", type, "s", id, "s", name),
                                SD_BUS_NO_RESULT, bus_method_unregister_actor_reminder, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RegisterActorTimer",
                                SD_BUS_ARGS("s", app_id, "s", type, "s", id, "s", name, "s", due_time, "s", period,
                                            "s", ttl, "s", callback, "ay", data),
                                SD_BUS_NO_RESULT, bus_method_register_actor_timer, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("UnregisterActorTimer", SD_BUS_ARGS("s", app_id, "s", type, "s", id, "s", name),
                                SD_BUS_NO_RESULT, bus_method_unregister_actor_timer, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListActorTypes", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(sstt)", types),
                                bus_method_list_actor_types, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListActorReminders", SD_BUS_ARGS("s", type, "s", id),
                                SD_BUS_RESULT("a(ssssx)", reminders), bus_method_list_actor_reminders,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

static int on_bus_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        m->bus_retry = sd_event_source_disable_unref(m->bus_retry);
        if (m->state != MANAGER_STOPPING && !m->bus && runtime_bus_setup(m) >= 0)
                log_info("Reconnected to the %s bus.", manager_bus_mode_to_string(m->bus_mode));
        return 0;
}

/*
 * The bus closed our connection (dbus-daemon restarted, or dropped us, e.g. for a
 * message over its max_message_size): without this, mooringd would silently stay
 * off the bus. Reconnect every 2 s until it works.
 */
static int on_bus_disconnected(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        log_warning("Lost the connection to the %s bus; reconnecting.", manager_bus_mode_to_string(m->bus_mode));
        /* its subscribers cannot be reached any more (and are gone, when the bus itself restarted) */
        pubsub_bus_disconnected(m, sd_bus_message_get_bus(msg));
        owned_apps_drop_all(m);
        if (m->bus == sd_bus_message_get_bus(msg))
                m->bus = sd_bus_flush_close_unref(m->bus);
        if (!m->bus_retry && m->state != MANAGER_STOPPING)
                (void) sd_event_add_time_relative(m->event, &m->bus_retry, CLOCK_MONOTONIC, 2 * 1000000ULL, 100 * 1000,
                                                  on_bus_retry, m);
        return 0;
}

int runtime_bus_setup(Manager *m) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const char *which = manager_bus_mode_to_string(m->bus_mode);
        int r;

        r = m->bus_mode == BUS_MODE_SESSION ? sd_bus_open_user_with_description(&bus, "mooringd")
                                            : sd_bus_open_system_with_description(&bus, "mooringd");
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the %s bus: %m (use --bus=none to run without D-Bus)",
                                       which);
        r = sd_bus_add_object_vtable(bus, NULL, RUNTIME_BUS_PATH, RUNTIME_BUS_INTERFACE, runtime_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Failed to export %s: %m", RUNTIME_BUS_PATH);
        r = sd_bus_request_name(bus, RUNTIME_BUS_NAME, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to acquire %s on the %s bus: %m", RUNTIME_BUS_NAME, which);
        r = sd_bus_match_signal(bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                "org.freedesktop.DBus.Local", "Disconnected", on_bus_disconnected, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the bus connection: %m");
        r = sd_bus_attach_event(bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach the bus to the event loop: %m");
        m->bus = TAKE_PTR(bus);
        log_debug("Serving %s on the %s bus.", RUNTIME_BUS_NAME, which);
        return 0;
}

void runtime_bus_done(Manager *m) {
        m->bus_retry = sd_event_source_disable_unref(m->bus_retry);
        while (m->owned_apps)
                owned_app_free(m, m->owned_apps);
        if (m->registry)
                (void) registry_remove_callback(m->registry, REGISTRY_APP_REMOVED, on_app_removed, m);
        if (!m->bus)
                return;
        pubsub_bus_done(m);
        (void) sd_bus_release_name(m->bus, RUNTIME_BUS_NAME);
        m->bus = sd_bus_flush_close_unref(m->bus);
}

static void emit(Manager *m, const char *property) {
        if (m->bus)
                (void) sd_bus_emit_properties_changed(m->bus, RUNTIME_BUS_PATH, RUNTIME_BUS_INTERFACE, property,
                                                      NULL);
}

void runtime_bus_emit_apps_changed(Manager *m) {
        emit(m, "Apps");
}

void runtime_bus_emit_components_changed(Manager *m) {
        emit(m, "Components");
        emit(m, "ComponentErrors");
}

void runtime_bus_emit_state_changed(Manager *m) {
        emit(m, "State");
}
