/* SPDX-License-Identifier: Apache-2.0 */
/* Lock, state query and configuration methods of org.mooring.Runtime1 (dbus/org.mooring.Runtime1.xml). */
#pragma once

#include <systemd/sd-bus.h>

int bus_method_try_lock(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_unlock(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_query_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_get_configuration(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
