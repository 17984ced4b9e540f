/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's actor operations over D-Bus, through the same actor block as HTTP
 * (blocks/actors.h). Every method takes app_id first, with the state
 * methods' rules (state-bus.h: bus_with_identity()): the caller acts as
 * the app its unit names, or as an app it may act as. InvokeActor also
 * takes "" from a caller that is no app (any caller may call an actor, as on
 * the shared HTTP socket). Errors: core/errors.c's ERROR_CONTEXT_ACTOR rows.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/actors.h"
#include "../core/errors.h"
#include "../manager.h"
#include "../util/strv.h"
#include "actors-bus.h"
#include "state-bus.h"

/* dbus-daemon's message limit, less room for the header (see state-bus.c). */
#define REPLY_MAX (((size_t) 32 << 20) - 64 * 1024)

static int reply_error(sd_bus_message *call, int error, const char *message) {
        const ErrorRow *row = error_lookup(ERROR_CONTEXT_ACTOR, error);
        return sd_bus_reply_method_errorf(call, row->bus_error, "%s", message ?: strerror(-error));
}

/* Re-reads app_id and resolves it ("" → the caller's own app, NULL when it is none). */
static int read_app(sd_bus_message *call, char **ret) {
        const char *app_id;
        int r = sd_bus_message_rewind(call, true);
        if (r >= 0)
                r = sd_bus_message_read(call, "s", &app_id);
        if (r < 0)
                return r;
        *ret = *app_id ? strdup(app_id) : bus_sender_app(call);
        return *app_id && !*ret ? -ENOMEM : 0;
}

/* ---- InvokeActor(s app_id, s type, s id, s method, ay data) → (ay data) ---- */

static void on_invoked(const ActorAnswer *a, int error, const char *message, void *userdata) {
        sd_bus_message *call = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;

        if (error < 0)
                (void) reply_error(call, error, message);
        else if (a->body_len > REPLY_MAX)
                (void) sd_bus_reply_method_errorf(call, BUS_ERROR_RESPONSE_TOO_LARGE,
                                                  "The answer (%zu bytes) does not fit in one D-Bus message",
                                                  a->body_len);
        else if (sd_bus_message_new_method_return(call, &reply) >= 0 &&
                 sd_bus_message_append_array(reply, 'y', a->body ?: "", a->body_len) >= 0)
                (void) sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(call);
}

static int do_invoke(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        const char *type, *id, *method;
        const void *data;
        size_t len;
        int r = read_app(call, &app);
        if (r < 0)
                return r;
        r = sd_bus_message_read(call, "sss", &type, &id, &method);
        if (r >= 0)
                r = sd_bus_message_read_array(call, 'y', &data, &len);
        if (r < 0)
                return r;
        static char *const headers[] = { "Content-Type", "application/json", NULL };
        ActorInvokeRequest req = { .caller_app = app, .type = type, .id = id, .method = method,
                                   .headers = headers, .body = data, .body_len = len };
        r = actor_invoke(m->registry, &req, on_invoked, sd_bus_message_ref(call), NULL);
        if (r < 0) {
                sd_bus_message_unref(call);
                return reply_error(call, r, r == -ENOENT ? "No app hosts that actor type" : NULL);
        }
        return 1;
}

int bus_method_invoke_actor(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        _cleanup_free_ char *own = bus_sender_app(call);
        const char *app_id;
        int r = sd_bus_message_read(call, "s", &app_id);
        if (r < 0)
                return r;
        if (!*app_id && !own) /* no app: allowed, as on the shared socket */
                return do_invoke(call, userdata);
        r = sd_bus_message_rewind(call, true);
        if (r < 0)
                return r;
        return bus_with_identity(call, userdata, do_invoke, reterr);
}

/* ---- GetActorState(s app_id, s type, s id, s key) → (b found, ay value) ---- */

static void on_state_got(const StateResult *res, void *userdata) {
        sd_bus_message *call = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;

        if (res->error < 0)
                (void) sd_bus_reply_method_errorf(call, BUS_ERROR_FAILED, "%s",
                                                  res->message ?: strerror(-res->error));
        else if (res->value.value_len > REPLY_MAX)
                (void) sd_bus_reply_method_errorf(call, BUS_ERROR_RESPONSE_TOO_LARGE, "The value does not fit");
        else if (sd_bus_message_new_method_return(call, &reply) >= 0 &&
                 sd_bus_message_append(reply, "b", res->value.found) >= 0 &&
                 sd_bus_message_append_array(reply, 'y', res->value.value ?: "", res->value.value_len) >= 0)
                (void) sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(call);
}

static int do_get_state(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        const char *type, *id, *key;
        int r = read_app(call, &app);
        if (r >= 0)
                r = sd_bus_message_read(call, "sss", &type, &id, &key);
        if (r < 0)
                return r;
        r = actor_state_get(m->registry, app, type, id, key, on_state_got, sd_bus_message_ref(call));
        if (r < 0) {
                sd_bus_message_unref(call);
                return reply_error(call, r, r == -EADDRNOTAVAIL ? "The actor is not active on this host for that app"
                                                               : NULL);
        }
        return 1;
}

int bus_method_get_actor_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_get_state, reterr);
}

/* ---- ExecuteActorStateTransaction(s app_id, s type, s id, a(ssay) operations) ---- */

static void on_state_saved(const StateResult *res, void *userdata) {
        sd_bus_message *call = userdata;
        if (res->error < 0)
                (void) sd_bus_reply_method_errorf(call, BUS_ERROR_FAILED, "%s",
                                                  res->message ?: strerror(-res->error));
        else
                (void) sd_bus_reply_method_return(call, NULL);
        sd_bus_message_unref(call);
}

static int do_transaction(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        _cleanup_free_ StateOp *ops = NULL;
        size_t n = 0, cap = 0;
        const char *type, *id;
        int r = read_app(call, &app);
        if (r >= 0)
                r = sd_bus_message_read(call, "ss", &type, &id);
        if (r >= 0)
                r = sd_bus_message_enter_container(call, 'a', "(ssay)");
        if (r < 0)
                return r;
        for (;;) {
                const char *kind, *key;
                const void *value;
                size_t len;
                r = sd_bus_message_enter_container(call, 'r', "ssay");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read(call, "ss", &kind, &key);
                if (r >= 0)
                        r = sd_bus_message_read_array(call, 'y', &value, &len);
                if (r >= 0)
                        r = sd_bus_message_exit_container(call);
                if (r < 0)
                        return r;
                if (!streq(kind, "upsert") && !streq(kind, "delete"))
                        return sd_bus_reply_method_errorf(call, BUS_ERROR_INVALID_ARGUMENT,
                                                          "Operation '%s' is not supported (upsert, delete)", kind);
                if (!*key)
                        return sd_bus_reply_method_errorf(call, BUS_ERROR_INVALID_ARGUMENT, "A key is empty");
                if (n == cap) {
                        StateOp *nops = realloc(ops, (cap = cap ? cap * 2 : 8) * sizeof(StateOp));
                        if (!nops)
                                return -ENOMEM;
                        ops = nops;
                }
                ops[n++] = (StateOp){ .kind = streq(kind, "upsert") ? STATE_OP_UPSERT : STATE_OP_DELETE,
                                      .key = key, .value = value, .value_len = len };
        }
        r = sd_bus_message_exit_container(call);
        if (r < 0)
                return r;
        r = actor_state_transact(m->registry, app, type, id, ops, n, on_state_saved, sd_bus_message_ref(call));
        if (r < 0) {
                sd_bus_message_unref(call);
                return reply_error(call, r, r == -EADDRNOTAVAIL ? "The actor is not active on this host for that app"
                                                               : NULL);
        }
        return 1;
}

int bus_method_execute_actor_state_transaction(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_transaction, reterr);
}

/* ---- reminders and timers ---- */

/* Reads "s due, s period, s ttl", then (timers) "s callback", then "ay data" (JSON, empty: none). */
static int read_spec(sd_bus_message *call, bool timer, ActorReminderSpec *spec, json_t **ret_data,
                     bool *ret_bad) {
        const void *data;
        size_t len;
        int r = sd_bus_message_read(call, "sss", &spec->due, &spec->period, &spec->ttl);
        if (r >= 0 && timer)
                r = sd_bus_message_read(call, "s", &spec->callback);
        if (r >= 0)
                r = sd_bus_message_read_array(call, 'y', &data, &len);
        if (r < 0)
                return r;
        *ret_bad = false;
        *ret_data = NULL;
        if (len > 0) {
                *ret_data = json_loadb(data, len, JSON_DECODE_ANY, NULL);
                *ret_bad = !*ret_data;
        }
        spec->data = *ret_data;
        return 0;
}

static void on_reminder_done(int error, const char *message, void *userdata) {
        sd_bus_message *call = userdata;
        if (error < 0)
                (void) reply_error(call, error == -EINVAL ? -EIO : error, message);
        else
                (void) sd_bus_reply_method_return(call, NULL);
        sd_bus_message_unref(call);
}

/* RegisterActorReminder(s app_id, s type, s id, s name, s due_time, s period, s ttl, ay data) */
static int do_register_reminder(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        _cleanup_(json_decrefp) json_t *data = NULL;
        ActorReminderSpec spec = {};
        const char *type, *id, *name, *err = NULL;
        bool bad;
        int r = read_app(call, &app);
        if (r >= 0)
                r = sd_bus_message_read(call, "sss", &type, &id, &name);
        if (r >= 0)
                r = read_spec(call, false, &spec, &data, &bad);
        if (r < 0)
                return r;
        if (bad)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_INVALID_ARGUMENT, "data is not JSON");
        r = actor_reminder_set(m->registry, app, type, id, name, &spec, on_reminder_done, sd_bus_message_ref(call),
                               &err);
        if (r == -EREMOTE) /* another host of the cluster owns the actor: the block sends it there */
                r = actor_reminder_forward(m->registry, app, type, id, name, &spec, on_reminder_done, call, NULL);
        if (r < 0) {
                sd_bus_message_unref(call);
                return reply_error(call, r, r == -EPERM ? "The app does not host that actor type" : err);
        }
        return 1;
}

int bus_method_register_actor_reminder(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_register_reminder, reterr);
}

/* UnregisterActorReminder(s app_id, s type, s id, s name) */
static int do_unregister_reminder(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        const char *type, *id, *name;
        int r = read_app(call, &app);
        if (r >= 0)
                r = sd_bus_message_read(call, "sss", &type, &id, &name);
        if (r < 0)
                return r;
        r = actor_reminder_delete(m->registry, app, type, id, name, on_reminder_done, sd_bus_message_ref(call));
        if (r == -EREMOTE)
                r = actor_reminder_forward(m->registry, app, type, id, name, NULL, on_reminder_done, call, NULL);
        if (r < 0) {
                sd_bus_message_unref(call);
                return reply_error(call, r, r == -EPERM ? "The app does not host that actor type" : NULL);
        }
        return 1;
}

int bus_method_unregister_actor_reminder(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_unregister_reminder, reterr);
}

/* RegisterActorTimer(s app_id, s type, s id, s name, s due_time, s period, s ttl, s callback, ay data) */
static int do_register_timer(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        _cleanup_(json_decrefp) json_t *data = NULL;
        ActorReminderSpec spec = {};
        const char *type, *id, *name, *err = NULL;
        bool bad;
        int r = read_app(call, &app);
        if (r >= 0)
                r = sd_bus_message_read(call, "sss", &type, &id, &name);
        if (r >= 0)
                r = read_spec(call, true, &spec, &data, &bad);
        if (r < 0)
                return r;
        if (bad)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_INVALID_ARGUMENT, "data is not JSON");
        if (spec.callback && !*spec.callback)
                spec.callback = NULL;
        r = actor_timer_set(m->registry, app, type, id, name, &spec, &err);
        if (r < 0)
                return reply_error(call, r, r == -EADDRNOTAVAIL ? "The actor is not active on this host for that app"
                                                               : err);
        return sd_bus_reply_method_return(call, NULL);
}

int bus_method_register_actor_timer(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_register_timer, reterr);
}

/* UnregisterActorTimer(s app_id, s type, s id, s name) */
static int do_unregister_timer(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        const char *type, *id, *name;
        int r = read_app(call, &app);
        if (r >= 0)
                r = sd_bus_message_read(call, "sss", &type, &id, &name);
        if (r < 0)
                return r;
        r = actor_timer_delete(m->registry, app, type, id, name);
        if (r < 0)
                return reply_error(call, r, r == -EADDRNOTAVAIL ? "The app does not host that actor type" : NULL);
        return sd_bus_reply_method_return(call, NULL);
}

int bus_method_unregister_actor_timer(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_unregister_timer, reterr);
}

/* ---- ListActorTypes() → a(sstt) (type, app, active, reminders) ---- */

int bus_method_list_actor_types(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        Manager *m = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_decrefp) json_t *types = actors_types_json(m->registry);
        int r = sd_bus_message_new_method_return(call, &reply);

        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sstt)");
        for (size_t i = 0; r >= 0 && i < json_array_size(types); i++) {
                json_t *t = json_array_get(types, i);
                r = sd_bus_message_append(reply, "(sstt)", json_string_value(json_object_get(t, "type")),
                                          json_string_value(json_object_get(t, "app")),
                                          (uint64_t) json_integer_value(json_object_get(t, "active")),
                                          (uint64_t) json_integer_value(json_object_get(t, "reminders")));
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* ---- ListActorReminders(s type, s id) → a(ssssx) (name, due_time, period, next_fire, fires_left) ---- */

int bus_method_list_actor_reminders(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        Manager *m = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_decrefp) json_t *list = NULL;
        const char *type, *id;
        int r = sd_bus_message_read(call, "ss", &type, &id);

        if (r < 0)
                return r;
        r = actor_reminder_list(m->registry, type, id, &list);
        if (r == -ENOENT)
                return sd_bus_error_setf(reterr, BUS_ERROR_NO_SUCH_ACTOR, "No app hosts actor type '%s'", type);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(call, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(ssssx)");
        for (size_t i = 0; r >= 0 && i < json_array_size(list); i++) {
                json_t *e = json_array_get(list, i);
                r = sd_bus_message_append(reply, "(ssssx)", json_string_value(json_object_get(e, "name")),
                                          json_string_value(json_object_get(e, "dueTime")),
                                          json_string_value(json_object_get(e, "period")),
                                          json_string_value(json_object_get(e, "nextFire")),
                                          (int64_t) json_integer_value(json_object_get(e, "firesLeft")));
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}
