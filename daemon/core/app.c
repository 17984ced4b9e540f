/* SPDX-License-Identifier: Apache-2.0 */
/* See app.h. */
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <unistd.h>

#include "../util/log.h"
#include "app.h"
#include "metrics.h"

App *app_new(AppConfig *config_take, AppSource source) {
        App *a = calloc(1, sizeof *a);
        if (!a)
                return NULL;
        a->n_ref = 1;
        a->config = config_take;
        a->source = source;
        a->extended = json_object();
        a->metrics = app_metrics_new();
        if (!a->extended || !a->metrics) {
                json_decref(a->extended);
                app_metrics_free(a->metrics);
                a->config = NULL; /* caller keeps ownership on failure */
                free(a);
                return NULL;
        }
        return a;
}

App *app_ref(App *a) {
        if (a)
                a->n_ref++;
        return a;
}

App *app_unref(App *a) {
        if (!a || --a->n_ref > 0)
                return NULL;
        /* By now the Manager has unlinked it: listeners closed, probe stopped. */
        sd_event_source_disable_unref(a->probe_timer);
        app_config_free(a->config);
        free(a->socket_path);
        free(a->grpc_socket_path);
        json_decref(a->extended);
        app_metrics_free(a->metrics);
        free(a);
        return NULL;
}

static const char *const source_names[_APP_SOURCE_MAX] = {
        [APP_SOURCE_FILE] = "file",
        [APP_SOURCE_BUS] = "dbus",
};

static const char *const health_names[_APP_HEALTH_MAX] = {
        [APP_HEALTH_UNKNOWN] = "unknown",
        [APP_HEALTH_HEALTHY] = "healthy",
        [APP_HEALTH_UNHEALTHY] = "unhealthy",
};

const char *app_source_to_string(AppSource s) {
        return s >= 0 && s < _APP_SOURCE_MAX ? source_names[s] : NULL;
}

const char *app_health_to_string(AppHealth h) {
        return h >= 0 && h < _APP_HEALTH_MAX ? health_names[h] : NULL;
}

bool app_token_matches(const App *a, const char *presented) {
        const char *t = a->config->api_token;
        size_t n, m;
        unsigned char diff = 0;

        if (!t || !presented)
                return false;
        n = strlen(t);
        m = strlen(presented);
        /* Compare over the expected length whatever the presented one is. */
        for (size_t i = 0; i < n; i++)
                diff |= (unsigned char) t[i] ^ (unsigned char) (i < m ? presented[i] : 0);
        return diff == 0 && n == m;
}

static bool slot_free(const App *a) {
        return a->config->max_concurrency == 0 || a->slots_active < a->config->max_concurrency;
}

bool app_slot_acquire(App *a, AppSlotWaiter *w) {
        if (!a->slot_waiters && slot_free(a)) {
                a->slots_active++;
                return true;
        }
        w->next = NULL;
        w->queued = true;
        if (a->slot_waiters_tail)
                a->slot_waiters_tail->next = w;
        else
                a->slot_waiters = w;
        a->slot_waiters_tail = w;
        return false;
}

void app_slot_cancel(App *a, AppSlotWaiter *w) {
        AppSlotWaiter *prev = NULL;
        if (!w->queued)
                return;
        for (AppSlotWaiter *i = a->slot_waiters; i; prev = i, i = i->next)
                if (i == w) {
                        if (prev)
                                prev->next = w->next;
                        else
                                a->slot_waiters = w->next;
                        if (a->slot_waiters_tail == w)
                                a->slot_waiters_tail = prev;
                        break;
                }
        w->next = NULL;
        w->queued = false;
}

void app_slot_release(App *a) {
        if (a->slots_active > 0)
                a->slots_active--;
        /* A raised limit (reload) may let several go at once. */
        while (a->slot_waiters && slot_free(a)) {
                AppSlotWaiter *w = a->slot_waiters;
                app_slot_cancel(a, w);
                a->slots_active++;
                w->granted(w);
        }
}

void app_hand_sockets(App *a, uid_t uid, const char *unit) {
        const char *paths[] = { a->socket_path, a->grpc_socket_path };

        if (a->config->user || a->config->allow_any_user)
                return;
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
                if (!paths[i])
                        continue;
                /* the gRPC socket may not exist (yet): not an error */
                if (chown(paths[i], uid, (gid_t) -1) < 0) {
                        if (errno != ENOENT || i == 0)
                                log_warning_errno(errno, "Failed to hand socket %s to uid %u of %s, ignoring: %m",
                                                  paths[i], (unsigned) uid, unit);
                } else
                        log_debug("Socket %s handed to uid %u of %s.", paths[i], (unsigned) uid, unit);
        }
}
