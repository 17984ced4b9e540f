/* SPDX-License-Identifier: Apache-2.0 */
/* The actor methods of org.mooring.Runtime1 (see dbus/org.mooring.Runtime1.xml). */
#pragma once

#include <systemd/sd-bus.h>

int bus_method_invoke_actor(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_get_actor_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_execute_actor_state_transaction(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_register_actor_reminder(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_unregister_actor_reminder(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_register_actor_timer(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_unregister_actor_timer(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_list_actor_types(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_list_actor_reminders(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
