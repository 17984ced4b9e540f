/* SPDX-License-Identifier: Apache-2.0 */
/* The bindings methods of org.mooring.Runtime1 (see dbus/org.mooring.Runtime1.xml). */
#pragma once

#include <systemd/sd-bus.h>

int bus_method_invoke_binding(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
