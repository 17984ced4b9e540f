/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Authorizing privileged D-Bus calls. Root and the daemon's own user are
 * allowed at once; anyone else is asked about through polkit, asynchronously:
 * the method handler returns, and the continuation runs (or an error reply is
 * sent) when polkit answers. No polkit on the bus means "denied".
 */
#pragma once

#include <systemd/sd-bus.h>

#include "../forward.h"

/* Runs the privileged part of a method once the caller is authorized; replies to call itself. */
typedef int (*PolkitContinueFn)(sd_bus_message *call, Manager *m);

/*
 * Checks call's sender for action. Calls cont right away (and returns its
 * result) when no question is needed; otherwise returns 1 and answers later.
 */
int polkit_authorize_async(sd_bus_message *call, Manager *m, const char *action, PolkitContinueFn cont,
                           sd_bus_error *reterr);
