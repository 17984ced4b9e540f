/* SPDX-License-Identifier: Apache-2.0 */
/* The state methods of org.mooring.Runtime1 (see dbus/org.mooring.Runtime1.xml). */
#pragma once

#include <systemd/sd-bus.h>

int bus_method_get_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_save_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_delete_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_get_bulk_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_execute_state_transaction(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
