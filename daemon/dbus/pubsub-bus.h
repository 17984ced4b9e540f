/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pub/sub methods of org.mooring.Runtime1 (Publish, Subscribe,
 * ListSubscriptions) and the org.mooring.Runtime1.Subscription objects that
 * Subscribe creates, documented in dbus/org.mooring.Runtime1.xml.
 */
#pragma once

#include <systemd/sd-bus.h>

#include "../forward.h"

#define PUBSUB_BUS_SUBSCRIPTION_INTERFACE "org.mooring.Runtime1.Subscription"
#define PUBSUB_BUS_SUBSCRIPTION_PREFIX "/org/mooring/Runtime1/subscription"

/* Method handlers of the Runtime1 vtable; userdata is the Manager. */
int bus_method_publish(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_subscribe(sd_bus_message *call, void *userdata, sd_bus_error *reterr);
int bus_method_list_subscriptions(sd_bus_message *call, void *userdata, sd_bus_error *reterr);

/*
 * The connection bus of the Manager broke: every subscription made on it
 * ends (no signal can reach its subscriber any more); their unsettled
 * messages are offered again by the broker later.
 */
void pubsub_bus_disconnected(Manager *m, sd_bus *bus);
/*
 * The D-Bus front-end stops: every subscription ends. (Subscribers were told
 * with Closed when the event loop ended, while the bus was still open.)
 */
void pubsub_bus_done(Manager *m);
