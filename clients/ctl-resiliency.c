/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl resiliency: the Resiliency policies mooringd has in force and
 * its circuit breakers, from GET /mooring/v1/resiliency on the shared socket.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "ctl.h"

static const char *str(json_t *o, const char *key) {
        const char *s = json_string_value(json_object_get(o, key));
        return s && *s ? s : "-";
}

int ctl_resiliency(const CtlOptions *o) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        json_t *docs, *cbs, *d, *t, *v;
        const char *name;
        size_t i, k;
        int r;

        r = ctl_http_get_json(o, "/mooring/v1/resiliency", &j);
        if (r < 0)
                return r;
        if (o->json) {
                char *s = json_dumps(j, JSON_COMPACT);
                if (!s)
                        return ctl_log_oom();
                puts(s);
                free(s);
                return 0;
        }
        docs = json_object_get(j, "documents");
        cbs = json_object_get(j, "circuitBreakers");
        if (json_array_size(docs) == 0)
                printf("No Resiliency policies are loaded.\n");
        json_array_foreach(docs, i, d) {
                printf("%s%s (%s:%" PRId64 ")", i ? "\n" : "", str(d, "name"), str(d, "file"),
                       (int64_t) json_integer_value(json_object_get(d, "line")));
                if (json_array_size(json_object_get(d, "scopes")) > 0) {
                        printf(" scopes:");
                        json_array_foreach(json_object_get(d, "scopes"), k, v)
                                printf(" %s", json_string_value(v));
                }
                printf("\n");
                json_object_foreach(json_object_get(d, "timeouts"), name, v)
                        printf("  timeout %-24s %gs\n", name, json_real_value(v));
                json_object_foreach(json_object_get(d, "retries"), name, v)
                        printf("  retry   %-24s %s, maxRetries %" PRId64 "\n", name, str(v, "policy"),
                               (int64_t) json_integer_value(json_object_get(v, "maxRetries")));
                json_object_foreach(json_object_get(d, "circuitBreakers"), name, v)
                        printf("  breaker %-24s trip '%s', timeout %gs\n", name, str(v, "trip"),
                               json_real_value(json_object_get(v, "timeoutSec")));
                json_array_foreach(json_object_get(d, "targets"), k, t)
                        printf("  target  %-18s %-20s timeout %s, retry %s, circuitBreaker %s\n", str(t, "kind"),
                               str(t, "name"), str(t, "timeout"), str(t, "retry"), str(t, "circuitBreaker"));
        }
        if (json_array_size(cbs) > 0) {
                printf("\n%-16s %-18s %-20s %-16s %-10s %s\n", "CALLER", "KIND", "TARGET", "POLICY", "STATE",
                       "FAILURES");
                json_array_foreach(cbs, i, v)
                        printf("%-16s %-18s %-20s %-16s %-10s %" PRId64 "\n", str(v, "caller"), str(v, "kind"),
                               str(v, "target"), str(v, "policy"), str(v, "state"),
                               (int64_t) json_integer_value(json_object_get(v, "consecutiveFailures")));
        }
        return 0;
}
