/* SPDX-License-Identifier: Apache-2.0 */
/* The secrets methods of org.mooring.Runtime1 (see dbus/org.mooring.Runtime1.xml). */
#pragma once

#include <systemd/sd-bus.h>

int bus_method_get_secret(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_get_bulk_secret(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
