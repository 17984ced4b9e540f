/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See app-channel.h. A probe is a GET of the app's HealthCheckPath (2xx =
 * healthy), or, when none is configured, of "/" where any HTTP answer proves
 * the app is there. APP_PROBE_THRESHOLD failures in a row make a healthy app
 * unhealthy; one success makes it healthy again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "../core/app.h"
#include "../manager.h"
#include "../util/cleanup.h"
#include "app-channel.h"
#include "http-client.h"

CURL *app_channel_new_easy(const App *a, const char *path) {
        const AppConfig *c = a->config;
        _cleanup_free_ char *url = NULL;
        CURL *e;
        int k;

        if (c->address_kind == APP_ADDRESS_NONE)
                return NULL;
        if (c->address_kind == APP_ADDRESS_HTTP)
                k = asprintf(&url, strchr(c->address_host, ':') ? "http://[%s]:%u%s" : "http://%s:%u%s",
                             c->address_host, (unsigned) c->address_port, path);
        else
                k = asprintf(&url, "http://localhost%s", path);
        if (k < 0)
                return NULL;
        e = curl_easy_init();
        if (!e)
                return NULL;
        if (c->address_kind == APP_ADDRESS_UNIX)
                curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, c->address_host);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_client_discard_body);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "mooringd/" PACKAGE_VERSION);
        return e;
}

static void probe_done(CURLcode result, long status, void *userdata);

static int probe_fire(sd_event_source *s, uint64_t usec, void *userdata) {
        App *a = userdata;
        Manager *m = a->manager;
        CURL *e;

        if (!m)
                return 0;
        (void) sd_event_source_set_time_relative(s, a->config->health_probe_interval_usec);
        if (a->probe_request)
                return 0; /* the previous probe is still out: it will time out on its own */
        e = app_channel_new_easy(a, a->config->health_check_path ?: "/");
        if (!e)
                return 0; /* retried at the next tick */
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, APP_PROBE_TIMEOUT_MS);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, APP_PROBE_TIMEOUT_MS);
        if (http_client_start(m->http_client, e, probe_done, app_ref(a),
                              (HttpClientRequest **) &a->probe_request) < 0)
                app_unref(a);
        return 0;
}

bool app_channel_is_down(const App *a) {
        return a->health == APP_HEALTH_UNHEALTHY && a->probe_failures >= APP_PROBE_THRESHOLD;
}

/* Applies one probe outcome to the app's health; reports a transition. */
static bool probe_apply(App *a, CURLcode result, long status) {
        AppHealth before = a->health;
        bool ok = result == CURLE_OK && status > 0 &&
                  (!a->config->health_check_path || (status >= 200 && status < 300));
        if (ok) {
                a->probe_failures = 0;
                a->health = APP_HEALTH_HEALTHY;
        } else {
                a->probe_failures++;
                if (a->health == APP_HEALTH_UNKNOWN || a->probe_failures >= APP_PROBE_THRESHOLD)
                        a->health = APP_HEALTH_UNHEALTHY;
        }
        if (a->health != before && a->manager)
                manager_on_app_health_changed(a->manager, a);
        return ok;
}

static void probe_done(CURLcode result, long status, void *userdata) {
        App *a = userdata;

        a->probe_request = NULL;
        if (a->manager) /* not removed meanwhile */
                (void) probe_apply(a, result, status);
        app_unref(a);
}

typedef struct ProbeNow {
        App *app;
        AppProbeDoneFn done;
        void *userdata;
} ProbeNow;

static void probe_now_done(CURLcode result, long status, void *userdata) {
        ProbeNow *p = userdata;
        App *a = p->app;
        bool ok = a->manager ? probe_apply(a, result, status) : false;

        p->done(a, ok, status, result == CURLE_OK ? NULL : curl_easy_strerror(result), p->userdata);
        app_unref(a);
        free(p);
}

int app_channel_probe_now(Manager *m, App *a, AppProbeDoneFn done, void *userdata) {
        ProbeNow *p;
        CURL *e;
        int r;

        if (a->config->address_kind == APP_ADDRESS_NONE)
                return -EADDRNOTAVAIL;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        e = app_channel_new_easy(a, a->config->health_check_path ?: "/");
        if (!e) {
                free(p);
                return -ENOMEM;
        }
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, APP_PROBE_TIMEOUT_MS);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, APP_PROBE_TIMEOUT_MS);
        *p = (ProbeNow){ .app = app_ref(a), .done = done, .userdata = userdata };
        r = http_client_start(m->http_client, e, probe_now_done, p, NULL);
        if (r < 0) {
                app_unref(a);
                free(p);
        }
        return r;
}

int app_channel_probe_start(Manager *m, App *a) {
        int r;
        if (a->config->address_kind == APP_ADDRESS_NONE || a->probe_timer)
                return 0;
        r = sd_event_add_time_relative(m->event, &a->probe_timer, CLOCK_MONOTONIC, 0, 10 * 1000, probe_fire, a);
        if (r < 0)
                return r;
        /* ON, not ONESHOT: probe_fire() moves the deadline forward each time. */
        return sd_event_source_set_enabled(a->probe_timer, SD_EVENT_ON);
}

void app_channel_probe_stop(App *a) {
        a->probe_timer = sd_event_source_disable_unref(a->probe_timer);
        if (a->probe_request) {
                HttpClientRequest *r = a->probe_request;
                a->probe_request = NULL;
                http_client_cancel(r);
                app_unref(a); /* the ref the request held */
        }
}
