/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /metrics: the Prometheus text format, on the shared socket and on
 * MetricsPort=. The series are core/metrics.c's; this only answers.
 */
#include <stdlib.h>

#include "../core/metrics.h"
#include "../util/cleanup.h"
#include "handlers.h"
#include "server.h"

int http_get_metrics(HttpRequest *r, const RouteMatch *m) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int k = metrics_format(http_request_registry(r), &text, &len);
        if (k < 0)
                return k;
        return http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
