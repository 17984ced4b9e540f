/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The app channel: how mooringd reaches an app (its AppAddress: a loopback
 * TCP port or a Unix socket), through the transport, whose connections are
 * kept alive and reused. It also probes the app's health on a timer and
 * reports transitions through the registry's REGISTRY_APP_HEALTH_CHANGED
 * callbacks (it knows nothing of who listens).
 */
#pragma once

#include <stdbool.h>

#include "../forward.h"
#include "transport.h"

#define APP_PROBE_TIMEOUT_MS 500L
/* What mooringd's own calls to an app (probes, /dapr/subscribe, deliveries) say they come from. */
#define APP_CHANNEL_USER_AGENT "mooringd/" PACKAGE_VERSION
#define APP_PROBE_THRESHOLD 3

/* Where the transport reaches the app; false when it has no AppAddress. */
bool app_channel_address(const App *a, TransportAddress *ret);

/*
 * Probes the app once, now, besides the periodic probes, and reports the
 * outcome (and any health transition) through done, exactly once, later on the
 * loop. status is the app's HTTP status or 0; error a short text or NULL.
 */
typedef void (*AppProbeDoneFn)(App *a, bool healthy, long status, const char *error, void *userdata);
int app_channel_probe_now(Registry *r, App *a, AppProbeDoneFn done, void *userdata);

/*
 * Is the app down as far as calls are concerned: its probes failed
 * APP_PROBE_THRESHOLD times in a row? An app that has not come up yet (one
 * failed probe at boot makes it "unhealthy") is not: calls to it still get
 * their retries. Invocation fails fast and pub/sub holds messages when true.
 */
bool app_channel_is_down(const App *a);

/* Starts periodic probing (first probe right away). No-op for apps without an address. */
int app_channel_probe_start(Registry *r, App *a);
void app_channel_probe_stop(App *a);
