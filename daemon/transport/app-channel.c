/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See app-channel.h. A probe is a GET of the app's HealthCheckPath (2xx =
 * healthy), or, when none is configured, of "/" where any HTTP answer proves
 * the app is there. APP_PROBE_THRESHOLD failures in a row make a healthy app
 * unhealthy; one success makes it healthy again.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "../core/app.h"
#include "../core/registry.h"
#include "../util/cleanup.h"
#include "app-channel.h"
#include "transport.h"

#define APP_PROBE_FAST_FIRST_USEC (20 * 1000ULL)
#define APP_PROBE_FAST_MAX_USEC (500 * 1000ULL)
/* A probe's answer body is not looked at; past this size the app is odd, not down: cut it. */
#define PROBE_ANSWER_MAX (1024 * 1024)

bool app_channel_address(const App *a, TransportAddress *ret) {
        const AppConfig *c = a->config;
        if (c->address_kind == APP_ADDRESS_NONE)
                return false;
        *ret = (TransportAddress){
                .kind = c->address_kind == APP_ADDRESS_UNIX ? TRANSPORT_ADDRESS_UNIX : TRANSPORT_ADDRESS_TCP,
                .host = c->address_host,
                .port = c->address_port,
                .protocol = c->app_protocol_grpc ? TRANSPORT_PROTOCOL_GRPC : TRANSPORT_PROTOCOL_HTTP,
        };
        return true;
}

static char *const probe_headers[] = { "User-Agent", APP_CHANNEL_USER_AGENT, NULL };

/* Starts one probe GET; done gets the app as userdata's owner decides. */
static int probe_send(Registry *r, App *a, const TransportHandler *h, void *userdata, TransportCall **ret) {
        TransportAddress addr;
        if (!app_channel_address(a, &addr))
                return -EADDRNOTAVAIL;
        TransportRequest req = {
                .method = "GET",
                .target = a->config->health_check_path ?: "/",
                .headers = probe_headers,
                .timeout_usec = APP_PROBE_TIMEOUT_MS * 1000,
                .max_answer = PROBE_ANSWER_MAX,
                .purpose = TRANSPORT_PURPOSE_PROBE,
        };
        return transport_call_start(r->transport, &addr, &req, h, userdata, ret);
}

bool app_channel_is_down(const App *a) {
        return a->health == APP_HEALTH_UNHEALTHY && a->probe_failures >= APP_PROBE_THRESHOLD;
}

/* Applies one probe outcome to the app's health; reports a transition. */
static bool probe_apply(App *a, const TransportAnswer *ans) {
        AppHealth before = a->health;
        bool ok = ans && (!a->config->health_check_path || (ans->status >= 200 && ans->status < 300));
        if (ok)
                a->was_healthy = true;
        if (ok) {
                a->probe_failures = 0;
                a->health = APP_HEALTH_HEALTHY;
        } else {
                a->probe_failures++;
                if (a->health == APP_HEALTH_UNKNOWN || a->probe_failures >= APP_PROBE_THRESHOLD)
                        a->health = APP_HEALTH_UNHEALTHY;
        }
        if (a->health != before && a->registry)
                registry_notify(a->registry, REGISTRY_APP_HEALTH_CHANGED, a);
        return ok;
}

static void probe_done(TransportCall *tc, const TransportAnswer *ans, const TransportError *e, void *userdata) {
        App *a = userdata;

        a->probe_request = NULL;
        if (a->registry) /* not removed meanwhile */
                (void) probe_apply(a, ans);
        app_unref(a);
}

static const TransportHandler probe_handler = { .done = probe_done };

/*
 * Until an app is first found healthy it is probed quickly (20 ms, doubling up to 500 ms, never
 * slower than the configured interval), then at the configured interval: daprd reads
 * GET /dapr/subscribe (and /dapr/config) as soon as the app's port opens, and those follow the
 * first healthy probe here (issue 14 part 5; with the default 5 s interval subscriptions
 * started up to 5 s late).
 */
static uint64_t probe_interval(App *a) {
        uint64_t d = APP_PROBE_FAST_FIRST_USEC;
        if (a->was_healthy)
                return a->config->health_probe_interval_usec;
        for (unsigned i = 0; i < a->probes_before_up && d < APP_PROBE_FAST_MAX_USEC; i++)
                d *= 2;
        if (a->probes_before_up < UINT_MAX)
                a->probes_before_up++;
        d = d < APP_PROBE_FAST_MAX_USEC ? d : APP_PROBE_FAST_MAX_USEC;
        return d < a->config->health_probe_interval_usec ? d : a->config->health_probe_interval_usec;
}

static int probe_fire(sd_event_source *s, uint64_t usec, void *userdata) {
        App *a = userdata;
        Registry *r = a->registry;

        if (!r)
                return 0;
        (void) sd_event_source_set_time_relative(s, probe_interval(a));
        if (a->probe_request)
                return 0; /* the previous probe is still out: it will time out on its own */
        if (probe_send(r, a, &probe_handler, app_ref(a), (TransportCall **) &a->probe_request) < 0)
                app_unref(a); /* retried at the next tick */
        return 0;
}

typedef struct ProbeNow {
        App *app;
        AppProbeDoneFn done;
        void *userdata;
} ProbeNow;

static void probe_now_done(TransportCall *tc, const TransportAnswer *ans, const TransportError *e,
                           void *userdata) {
        ProbeNow *p = userdata;
        App *a = p->app;
        bool ok = a->registry ? probe_apply(a, ans) : false;

        p->done(a, ok, ans ? (long) ans->status : 0, e ? e->message : NULL, p->userdata);
        app_unref(a);
        free(p);
}

static const TransportHandler probe_now_handler = { .done = probe_now_done };

int app_channel_probe_now(Registry *reg, App *a, AppProbeDoneFn done, void *userdata) {
        ProbeNow *p = calloc(1, sizeof *p);
        int r;

        if (!p)
                return -ENOMEM;
        *p = (ProbeNow){ .app = app_ref(a), .done = done, .userdata = userdata };
        r = probe_send(reg, a, &probe_now_handler, p, NULL);
        if (r < 0) {
                app_unref(a);
                free(p);
        }
        return r;
}

int app_channel_probe_start(Registry *reg, App *a) {
        int r;
        if (a->config->address_kind == APP_ADDRESS_NONE || a->probe_timer)
                return 0;
        r = sd_event_add_time_relative(reg->event, &a->probe_timer, CLOCK_MONOTONIC, 0, 10 * 1000, probe_fire, a);
        if (r < 0)
                return r;
        /* ON, not ONESHOT: probe_fire() moves the deadline forward each time. */
        return sd_event_source_set_enabled(a->probe_timer, SD_EVENT_ON);
}

void app_channel_probe_stop(App *a) {
        a->probe_timer = sd_event_source_disable_unref(a->probe_timer);
        if (a->probe_request) {
                TransportCall *tc = a->probe_request;
                a->probe_request = NULL;
                transport_call_cancel(tc);
                app_unref(a); /* the ref the call held */
        }
}
