/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /mooring/v1/cluster (admin): this host's view of the cluster — the
 * membership engine and whether it is connected, and every live host with
 * its address, apps, actor types and the lease left on it. `mooringctl
 * cluster` prints it. On one host: {"enabled": false} and this host alone
 * is not listed.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "../core/membership.h"
#include "../core/registry.h"
#include "handlers.h"
#include "server.h"

static json_t *names_json(char *const *l) {
        json_t *a = json_array();
        for (char *const *s = l; a && s && *s; s++)
                json_array_append_new(a, json_string(*s));
        return a;
}

int http_get_cluster(HttpRequest *r, const RouteMatch *match) {
        Registry *reg = http_request_registry(r);
        Membership *m = reg->membership;
        const ClusterHost *hosts;
        uint64_t now = 0;
        size_t n;
        json_t *o, *list;

        if (!m)
                return http_reply_json(r, 200, json_pack("{s:b, s:[]}", "enabled", 0, "hosts"));
        (void) sd_event_now(reg->event, CLOCK_MONOTONIC, &now);
        hosts = membership_hosts(m, &n);
        list = json_array();
        for (size_t i = 0; list && i < n; i++) {
                const ClusterHost *h = &hosts[i];
                json_t *lease = h->lease_end_usec == 0 ? json_null()
                                                       : json_real(h->lease_end_usec > now
                                                                           ? (double) (h->lease_end_usec - now) / 1e6
                                                                           : 0.0);
                json_array_append_new(list, json_pack("{s:s, s:s, s:b, s:o, s:o, s:o}", "id", h->id, "address",
                                                      h->address, "self", h->self, "apps", names_json(h->apps),
                                                      "actorTypes", names_json(h->actor_types), "leaseLeftSec",
                                                      lease));
        }
        const ClusterHost *self = NULL;
        for (size_t i = 0; i < n; i++)
                if (hosts[i].self)
                        self = &hosts[i];
        o = json_pack("{s:b, s:s?, s:s, s:s?, s:b, s:f, s:I, s:s?, s:o}", "enabled", 1, "self",
                      self ? self->id : NULL, "engine", membership_engine(m), "engineError",
                      membership_engine_error(m), "connected", membership_engine_error(m) == NULL, "leaseSec",
                      (double) membership_lease_usec(m) / 1e6, "generation", (json_int_t) membership_generation(m),
                      "idConflict", membership_self_conflict(m), "hosts", list ?: json_array());
        return http_reply_json(r, 200, o);
}

/* GET /mooring/peer/v1/self (peer listener): this host's record, as static membership asks for it. */
int http_get_peer_self(HttpRequest *r, const RouteMatch *match) {
        Registry *reg = http_request_registry(r);
        char *s;
        int k;

        if (!reg->membership)
                return http_reply_error_status(r, 404, DAPR_ERR_BAD_REQUEST, "this host is in no cluster");
        s = membership_self_json(reg->membership);
        if (!s)
                return -ENOMEM;
        k = http_reply(r, 200, "application/json", s, strlen(s));
        free(s);
        return k;
}
