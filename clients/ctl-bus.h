/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: D-Bus connection helpers shared by the query commands
 * (ctl-bus.c) and app-exec (ctl-exec.c).
 */
#pragma once

#include <systemd/sd-bus.h>

#include "ctl.h"

int ctl_bus_open(const CtlOptions *o, sd_bus **ret);
int ctl_bus_call_failed(const CtlOptions *o, int r, const sd_bus_error *error, const char *what);
const char *ctl_bus_describe(const CtlOptions *o, char *buf, size_t size);
int ctl_bus_append_settings(sd_bus_message *m, char **settings);
