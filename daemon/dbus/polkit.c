/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See polkit.h. CheckAuthorization(subject = the caller's bus name) goes to
 * org.freedesktop.PolicyKit1 on the bus the daemon serves; the reply callback
 * holds a reference to the original call until it is answered.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "../manager.h"
#include "../util/log.h"
#include "polkit.h"

typedef struct PolkitQuery {
        sd_bus_message *call;
        Manager *manager;
        PolkitContinueFn cont;
        char *action;
} PolkitQuery;

static void query_free(void *userdata) {
        PolkitQuery *q = userdata;
        sd_bus_message_unref(q->call);
        free(q->action);
        free(q);
}

static int on_polkit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        PolkitQuery *q = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int authorized = 0, challenge = 0, r;

        if (e) {
                log_debug("polkit check for '%s' failed: %s", q->action, e->message);
                r = sd_bus_reply_method_errorf(q->call, "org.mooring.Runtime1.Error.PermissionDenied",
                                               "Not authorized for %s (polkit unavailable: %s)", q->action,
                                               e->message ?: e->name);
        } else if (sd_bus_message_enter_container(reply, 'r', "bba{ss}") < 0 ||
                   sd_bus_message_read(reply, "bb", &authorized, &challenge) < 0)
                r = sd_bus_reply_method_errorf(q->call, "org.mooring.Runtime1.Error.PermissionDenied",
                                               "Not authorized for %s (bad polkit reply)", q->action);
        else if (!authorized)
                r = sd_bus_reply_method_errorf(q->call, "org.mooring.Runtime1.Error.PermissionDenied",
                                               challenge ? "Authentication is required for %s"
                                                         : "Not authorized for %s",
                                               q->action);
        else {
                sd_bus_error err = SD_BUS_ERROR_NULL;
                r = q->cont(q->call, q->manager);
                if (r < 0) {
                        sd_bus_error_set_errno(&err, r);
                        (void) sd_bus_reply_method_error(q->call, &err);
                        sd_bus_error_free(&err);
                }
        }
        if (r < 0)
                log_debug_errno(r, "Failed to answer an authorized call: %m");
        return 0; /* q is freed by the slot's destroy callback */
}

int polkit_authorize_async(sd_bus_message *call, Manager *m, const char *action, PolkitContinueFn cont,
                           sd_bus_error *reterr) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *q = NULL;
        sd_bus *bus = sd_bus_message_get_bus(call);
        const char *sender = sd_bus_message_get_sender(call);
        uid_t uid;
        int r;

        r = sd_bus_query_sender_creds(call, SD_BUS_CREDS_EUID, &creds);
        if (r >= 0)
                r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                return sd_bus_error_setf(reterr, "org.mooring.Runtime1.Error.PermissionDenied",
                                         "Cannot determine the caller's identity");
        if (uid == 0 || uid == geteuid())
                return cont(call, m);
        if (!sender)
                return sd_bus_error_setf(reterr, "org.mooring.Runtime1.Error.PermissionDenied",
                                         "Caller has no bus name");

        PolkitQuery *pq = calloc(1, sizeof *pq);
        if (!pq || !(pq->action = strdup(action))) {
                free(pq);
                return -ENOMEM;
        }
        pq->call = sd_bus_message_ref(call);
        pq->manager = m;
        pq->cont = cont;

        r = sd_bus_message_new_method_call(bus, &q, "org.freedesktop.PolicyKit1",
                                           "/org/freedesktop/PolicyKit1/Authority",
                                           "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(q, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s", sender,
                                          action, 0,
                                          (uint32_t) (sd_bus_message_get_allow_interactive_authorization(call) ? 1 : 0),
                                          "");
        sd_bus_slot *slot = NULL;
        if (r >= 0)
                /* Interactive authentication may take the user a while. */
                r = sd_bus_call_async(bus, &slot, q, on_polkit_reply, pq, 120ULL * 1000000);
        if (r < 0) {
                query_free(pq);
                return r;
        }
        /* The bus owns the pending call from here; pq goes with it, answered or not. */
        (void) sd_bus_slot_set_destroy_callback(slot, query_free);
        (void) sd_bus_slot_set_floating(slot, 1);
        sd_bus_slot_unref(slot);
        return 1;
}
