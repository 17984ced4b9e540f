/* SPDX-License-Identifier: Apache-2.0 */
/* The service-invocation method of org.mooring.Runtime1 (see dbus/org.mooring.Runtime1.xml). */
#pragma once

#include <systemd/sd-bus.h>

/*
 * InvokeMethod(s app_id, s method, s verb, a(ss) headers, ay body)
 *   → (q status, a(ss) headers, ay body); userdata is the Manager.
 */
int bus_method_invoke_method(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
