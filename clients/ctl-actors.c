/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl actors, actor invoke, actor reminders: Dapr's actors through
 * mooringd's D-Bus methods (ListActorTypes, InvokeActor, ListActorReminders),
 * the same block code as /v1.0/actors over HTTP.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl-bus.h"

/* Calls method; on success *ret is the reply. */
static int call(const CtlOptions *o, sd_bus *bus, sd_bus_message *m, const char *what, sd_bus_message **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call(bus, m, UINT64_MAX, &error, ret);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, "org.mooring.Runtime1.Error.NoSuchActor") ||
                    sd_bus_error_has_name(&error, "org.mooring.Runtime1.Error.Failed") ||
                    sd_bus_error_has_name(&error, "org.mooring.Runtime1.Error.PermissionDenied") ||
                    sd_bus_error_has_name(&error, "org.mooring.Runtime1.Error.Unavailable")) {
                        ctl_log("%s failed: %s", what, error.message ?: error.name);
                        return -EIO;
                }
                return ctl_bus_call_failed(o, r, &error, what);
        }
        return 0;
}

int ctl_actors_list(const CtlOptions *o) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(json_decrefp) json_t *list = json_array();
        const char *type, *app;
        uint64_t active, reminders;
        int r;

        if (!list)
                return ctl_log_oom();
        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_call(bus, &m, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "ListActorTypes");
        if (r < 0)
                return ctl_log_errno(r, "Cannot build the D-Bus call: %m");
        r = call(o, bus, m, "ListActorTypes", &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(sstt)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(sstt)", &type, &app, &active, &reminders)) > 0)
                json_array_append_new(list, json_pack("{s:s, s:s, s:I, s:I}", "type", type, "app", app, "active",
                                                      (json_int_t) active, "reminders", (json_int_t) reminders));
        if (r < 0)
                return ctl_log_errno(r, "Cannot read the reply of ListActorTypes: %m");
        if (o->json) {
                char *s = json_dumps(list, JSON_COMPACT);
                if (!s)
                        return ctl_log_oom();
                puts(s);
                free(s);
                return 0;
        }
        printf("%-24s %-20s %8s %10s\n", "TYPE", "APP", "ACTIVE", "REMINDERS");
        for (size_t i = 0; i < json_array_size(list); i++) {
                json_t *e = json_array_get(list, i);
                printf("%-24s %-20s %8" PRId64 " %10" PRId64 "\n", json_string_value(json_object_get(e, "type")),
                       json_string_value(json_object_get(e, "app")),
                       (int64_t) json_integer_value(json_object_get(e, "active")),
                       (int64_t) json_integer_value(json_object_get(e, "reminders")));
        }
        return 0;
}

int ctl_actor_invoke(const CtlOptions *o, const char *app, const char *type, const char *id, const char *method,
                     const char *data) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ char *buf = NULL;
        const void *body = "", *out;
        size_t len = 0, out_len;
        int r;

        if (data) {
                r = ctl_load_data(data, &body, &len, &buf);
                if (r < 0)
                        return r;
        }
        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_call(bus, &m, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "InvokeActor");
        if (r >= 0)
                r = sd_bus_message_append(m, "ssss", app ?: "", type, id, method);
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', body, len);
        if (r < 0)
                return ctl_log_errno(r, "Cannot build the D-Bus call: %m");
        r = call(o, bus, m, "InvokeActor", &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_read_array(reply, 'y', &out, &out_len);
        if (r < 0)
                return ctl_log_errno(r, "Cannot read the reply of InvokeActor: %m");
        if (out_len > 0 && fwrite(out, 1, out_len, stdout) != out_len)
                return -EIO;
        return 0;
}

int ctl_actor_reminders(const CtlOptions *o, const char *type, const char *id) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(json_decrefp) json_t *list = json_array();
        const char *name, *due, *period, *next;
        int64_t left;
        int r;

        if (!list)
                return ctl_log_oom();
        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_call(bus, &m, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE,
                                           "ListActorReminders");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", type, id);
        if (r < 0)
                return ctl_log_errno(r, "Cannot build the D-Bus call: %m");
        r = call(o, bus, m, "ListActorReminders", &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(ssssx)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(ssssx)", &name, &due, &period, &next, &left)) > 0)
                json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s, s:I}", "name", name, "dueTime", due,
                                                      "period", period, "nextFire", next, "firesLeft",
                                                      (json_int_t) left));
        if (r < 0)
                return ctl_log_errno(r, "Cannot read the reply of ListActorReminders: %m");
        if (o->json) {
                char *s = json_dumps(list, JSON_COMPACT);
                if (!s)
                        return ctl_log_oom();
                puts(s);
                free(s);
                return 0;
        }
        printf("%-24s %-12s %-16s %-22s %s\n", "NAME", "DUE", "PERIOD", "NEXT", "LEFT");
        for (size_t i = 0; i < json_array_size(list); i++) {
                json_t *e = json_array_get(list, i);
                int64_t l = (int64_t) json_integer_value(json_object_get(e, "firesLeft"));
                char lbuf[32];
                if (l < 0)
                        strcpy(lbuf, "-");
                else
                        snprintf(lbuf, sizeof lbuf, "%" PRId64, l);
                printf("%-24s %-12s %-16s %-22s %s\n", json_string_value(json_object_get(e, "name")),
                       json_string_value(json_object_get(e, "dueTime")),
                       json_string_value(json_object_get(e, "period")),
                       json_string_value(json_object_get(e, "nextFire")), lbuf);
        }
        return 0;
}
