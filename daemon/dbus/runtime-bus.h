/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The D-Bus front-end: org.mooring.Runtime1 at /org/mooring/Runtime1 on the
 * system bus (or the session bus), as documented in
 * dbus/org.mooring.Runtime1.xml. It translates calls into Manager operations
 * and nothing more.
 */
#pragma once

#include "../forward.h"

#define RUNTIME_BUS_NAME "org.mooring.Runtime1"
#define RUNTIME_BUS_PATH "/org/mooring/Runtime1"
#define RUNTIME_BUS_INTERFACE "org.mooring.Runtime1"

/* Connects, exports the object and takes the well-known name. */
int runtime_bus_setup(Manager *m);
/* Releases the name and closes the connection. Safe to call when not set up. */
void runtime_bus_done(Manager *m);

void runtime_bus_emit_apps_changed(Manager *m);
void runtime_bus_emit_components_changed(Manager *m);
void runtime_bus_emit_state_changed(Manager *m);
