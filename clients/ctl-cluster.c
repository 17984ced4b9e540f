/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl cluster: this host's view of the cluster (the membership engine
 * and its state, every live host with its apps, actor types and lease),
 * from GET /mooring/v1/cluster on the shared socket.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "ctl.h"

static void print_names(json_t *a) {
        json_t *v;
        size_t i;
        if (json_array_size(a) == 0) {
                printf("-");
                return;
        }
        json_array_foreach(a, i, v)
                printf("%s%s", i ? "," : "", json_string_value(v));
}

int ctl_cluster(const CtlOptions *o) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        json_t *h;
        size_t i;
        int r;

        r = ctl_http_get_json(o, "/mooring/v1/cluster", &j);
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
        if (!json_is_true(json_object_get(j, "enabled"))) {
                printf("This host runs alone: no [Cluster] PeerListen= in mooringd.conf.\n");
                return 0;
        }
        const char *err = json_string_value(json_object_get(j, "engineError"));
        printf("Host %s, membership %s (%s%s%s), lease %gs, generation %" PRId64 "\n",
               json_string_value(json_object_get(j, "self")), json_string_value(json_object_get(j, "engine")),
               err ? "not connected: " : "connected", err ? err : "", err ? ", last view kept" : "",
               json_number_value(json_object_get(j, "leaseSec")),
               (int64_t) json_integer_value(json_object_get(j, "generation")));
        const char *conflict = json_string_value(json_object_get(j, "idConflict"));
        if (conflict)
                printf("Another daemon announces this host's id from %s: two hosts share HostId=; this one owns "
                       "no actors meanwhile.\n", conflict);
        printf("\n%-2s%-24s %-24s %-8s %-30s %s\n", "", "HOST", "ADDRESS", "LEASE", "APPS", "ACTOR TYPES");
        json_array_foreach(json_object_get(j, "hosts"), i, h) {
                json_t *lease = json_object_get(h, "leaseLeftSec");
                char l[32] = "-";
                if (json_is_number(lease))
                        snprintf(l, sizeof l, "%.1fs", json_number_value(lease));
                printf("%-2s%-24s %-24s %-8s ", json_is_true(json_object_get(h, "self")) ? "*" : "",
                       json_string_value(json_object_get(h, "id")), json_string_value(json_object_get(h, "address")),
                       l);
                print_names(json_object_get(h, "apps"));
                printf(" ");
                print_names(json_object_get(h, "actorTypes"));
                printf("\n");
        }
        return 0;
}
