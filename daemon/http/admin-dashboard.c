/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dashboard: its three files (data/dashboard/, installed under
 * MOORING_DATA_DIR/dashboard, or $MOORING_DASHBOARD_DIR for development) and
 * the fields the admin routes carry for it. Read-only, and free of secrets:
 * no component metadata, no tokens, only names, states and counts.
 *
 * Files are served by name from a fixed list, never by a path from the
 * request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/app.h"
#include "../core/component.h"
#include "../core/metrics.h"
#include "../core/registry.h"
#include "../util/fileio.h"
#include "../util/log.h"
#include "handlers.h"
#include "server.h"

#define DASHBOARD_FILE_MAX (1024 * 1024)

static const struct {
        const char *name, *type;
} files[] = {
        { "index.html", "text/html; charset=utf-8" },
        { "dashboard.css", "text/css; charset=utf-8" },
        { "dashboard.js", "text/javascript; charset=utf-8" },
};

int http_get_dashboard(HttpRequest *r, const RouteMatch *m) {
        const char *want = m->n_params > 0 ? m->params[0] : "index.html";
        const char *dir = secure_getenv("MOORING_DASHBOARD_DIR") ?: MOORING_DATA_DIR "/dashboard";
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t len = 0;

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                if (!streq(want, files[i].name))
                        continue;
                if (asprintf(&path, "%s/%s", dir, files[i].name) < 0)
                        return -ENOMEM;
                int k = read_full_file(path, DASHBOARD_FILE_MAX, &text, &len);
                if (k < 0) {
                        log_warning_errno(k, "Cannot read dashboard file %s: %m", path);
                        return http_reply(r, 404, "text/plain", "dashboard files are not installed\n", 34);
                }
                /* The page talks to this origin only, and nothing may frame it. */
                static const char *const headers[] = {
                        "Content-Security-Policy",
                        "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'",
                        "X-Content-Type-Options", "nosniff", "Cache-Control", "no-cache", NULL,
                };
                return http_reply_headers(r, 200, files[i].type, text, len, headers);
        }
        return http_reply(r, 404, "text/plain", "not found\n", 10);
}

typedef struct LogsOut {
        json_t *list;
} LogsOut;

static void add_line(uint64_t usec, int level, const char *app_id, const char *message, void *userdata) {
        LogsOut *o = userdata;
        char when[40];
        time_t sec = (time_t) (usec / 1000000);
        struct tm tm;
        if (!gmtime_r(&sec, &tm))
                return;
        size_t k = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + k, sizeof when - k, ".%03uZ", (unsigned) (usec % 1000000 / 1000));
        json_array_append_new(o->list, json_pack("{s:s, s:s, s:s, s:s}", "time", when, "level",
                                                 strempty(log_level_to_string(level)), "app", app_id, "message",
                                                 message));
}

/* GET /mooring/v1/logs[?app=ID]: the daemon's recent lines about apps (the journal has them all). */
int http_get_recent_logs(HttpRequest *r, const RouteMatch *m) {
        _cleanup_free_ char *app = http_request_query(r, "app");
        LogsOut o = { .list = json_array() };
        if (!o.list)
                return -ENOMEM;
        log_recent_foreach(app && *app ? app : NULL, add_line, &o);
        return http_reply_json(r, 200, o.list);
}

void http_admin_app_extra(const App *a, json_t *o) {
        char unit[300];
        snprintf(unit, sizeof unit, "mooring-app@%s.service", a->config->id);
        json_object_set_new(o, "unit", json_string(unit));
        json_object_set_new(o, "maxConcurrency", json_integer(a->config->max_concurrency));
        json_object_set_new(o, "activeCalls", json_integer(a->slots_active));
        json_object_set_new(o, "requests", json_integer((json_int_t) app_metrics_requests(a->metrics)));
}

void http_admin_component_extra(Registry *reg, const Component *c, json_t *o) {
        const char *status = "loaded";
        if (component_is_category(c, "state"))
                status = registry_find_state_store(reg, c->name) ? "ready" : "failed";
        else if (component_is_category(c, "pubsub"))
                status = registry_find_pubsub(reg, c->name) ? "ready" : "failed";
        json_object_set_new(o, "status", json_string(status));
}
