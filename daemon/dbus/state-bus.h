/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The state methods of org.mooring.Runtime1 (see dbus/org.mooring.Runtime1.xml),
 * and the caller identity they share with the other front-ends of the object.
 */
#pragma once

#include <systemd/sd-bus.h>

#include "polkit.h"

/* The app the sender's mooring-app@<id>.service unit names, malloc'd; NULL: not an app. */
char *bus_sender_app(sd_bus_message *call);

/* Runs op once the caller may act as the app named by the call's first argument ("": its own). */
typedef struct Manager Manager;
int bus_with_identity(sd_bus_message *call, Manager *m, int (*op)(sd_bus_message *call, Manager *m),
                      sd_bus_error *reterr);

int bus_method_get_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_save_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_delete_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_get_bulk_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_execute_state_transaction(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
