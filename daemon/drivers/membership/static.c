/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Membership from a fixed list ([Cluster] Membership=static, Peers= "ID=ADDR:PORT ..."), for
 * small setups with no shared engine. There is nothing to publish to: every host asks every
 * peer for its record, GET /mooring/peer/v1/self on the peer's listener over the peer transport
 * (mutual TLS; the peer's certificate must name the id given in Peers=), every lease/3, and
 * answers that route with its own record (http/admin-cluster.c). A peer that answers is alive
 * for one lease; one that stops answering is gone when its lease runs out. A record whose id is
 * not the one Peers= names for that address is refused.
 *
 * The engine is "connected" when every peer answered in the last round; otherwise its error
 * names the first that did not, and why.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../transport/transport.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "driver.h"

#define RECORD_MAX (256 * 1024)

typedef struct StaticMembership StaticMembership;

typedef struct Peer {
        StaticMembership *owner;   /* back-reference */
        char *id;
        char *host;                /* IP literal, no brackets */
        uint16_t port;
        TransportCall *call;       /* in flight */
        char *error;               /* why the last ask failed; NULL: it answered */
        bool asked;                /* at least one answer or failure */
} Peer;

struct StaticMembership {
        MembershipBackend base;
        Peer *peers;
        size_t n_peers;
        uint64_t lease_usec;
        sd_event_source *tick;
};

static void report_state(StaticMembership *p) {
        for (size_t i = 0; i < p->n_peers; i++)
                if (p->peers[i].error) {
                        _cleanup_free_ char *m = NULL;
                        if (asprintf(&m, "peer '%s' (%s:%u): %s", p->peers[i].id, p->peers[i].host,
                                     p->peers[i].port, p->peers[i].error) < 0)
                                m = NULL;
                        membership_backend_state(&p->base, m ?: p->peers[i].error);
                        return;
                }
        for (size_t i = 0; i < p->n_peers; i++)
                if (!p->peers[i].asked)
                        return; /* not a whole round yet */
        membership_backend_state(&p->base, NULL);
}

static void set_error(Peer *peer, const char *fmt, ...) _printf_(2, 3);
static void set_error(Peer *peer, const char *fmt, ...) {
        va_list ap;
        free(peer->error);
        va_start(ap, fmt);
        if (vasprintf(&peer->error, fmt, ap) < 0)
                peer->error = NULL;
        va_end(ap);
        if (!peer->error)
                peer->error = strdup("failed");
}

static void on_answer(TransportCall *c, const TransportAnswer *a, const TransportError *e, void *userdata) {
        Peer *peer = userdata;
        StaticMembership *p = peer->owner;
        MemberRecord rec = {};

        peer->call = NULL;
        peer->asked = true;
        if (e)
                set_error(peer, "%s", e->message ?: strerror(-e->error));
        else if (a->status != 200)
                set_error(peer, "GET /mooring/peer/v1/self answered %u", a->status);
        else if (member_record_parse(a->body, a->body_len, &rec) < 0)
                set_error(peer, "%s", "GET /mooring/peer/v1/self answered no host record");
        else if (!streq(rec.id, peer->id))
                set_error(peer, "it says it is host '%s'", rec.id);
        else {
                free(peer->error);
                peer->error = NULL;
                membership_backend_seen(&p->base, &rec, p->lease_usec);
        }
        member_record_done(&rec);
        report_state(p);
}

static void ask(StaticMembership *p, Peer *peer) {
        static const TransportHandler handler = { .done = on_answer };
        TransportAddress addr = {
                .kind = TRANSPORT_ADDRESS_TCP,
                .host = peer->host,
                .port = peer->port,
                .protocol = TRANSPORT_PROTOCOL_HTTP,
                .peer_host = peer->id,
        };
        TransportRequest req = {
                .method = "GET",
                .target = "/mooring/peer/v1/self",
                .timeout_usec = p->lease_usec / 3,
                .max_answer = RECORD_MAX,
                .purpose = TRANSPORT_PURPOSE_INVOKE,
        };
        Transport *t = membership_backend_transport(&p->base);

        if (peer->call || !t)
                return;
        if (transport_call_start(t, &addr, &req, &handler, peer, &peer->call) < 0) {
                peer->call = NULL;
                set_error(peer, "%s", "cannot start the call");
        }
}

static int on_tick(sd_event_source *es, uint64_t usec, void *userdata) {
        StaticMembership *p = userdata;
        for (size_t i = 0; i < p->n_peers; i++)
                ask(p, &p->peers[i]);
        (void) sd_event_source_set_time(p->tick, membership_backend_now(&p->base) + p->lease_usec / 3);
        (void) sd_event_source_set_enabled(p->tick, SD_EVENT_ON);
        return 0;
}

static void static_publish(MembershipBackend *b) {
        /* nothing to send: peers ask, and get the new record at their next round */
}

static int static_open(MembershipBackend *b, const MembershipOptions *o, char **reterr_msg) {
        StaticMembership *p = (StaticMembership *) b;
        size_t n = strv_length(o->peers);
        int r;

        p->lease_usec = o->lease_usec;
        if (n == 0) {
                *reterr_msg = strdup("static membership needs Peers=");
                return -EINVAL;
        }
        p->peers = calloc(n, sizeof *p->peers);
        if (!p->peers)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *eq = strchr(o->peers[i], '=');
                Peer *peer = &p->peers[p->n_peers];
                if (!eq || eq == o->peers[i]) {
                        if (asprintf(reterr_msg, "Peers=: '%s' is not ID=ADDR:PORT", o->peers[i]) < 0)
                                *reterr_msg = NULL;
                        return -EINVAL;
                }
                if (!(peer->id = strndup(o->peers[i], (size_t) (eq - o->peers[i]))))
                        return -ENOMEM;
                peer->owner = p;
                p->n_peers++;
                r = cluster_parse_address(eq + 1, &peer->host, &peer->port);
                if (r < 0 || !member_id_is_valid(peer->id)) {
                        if (asprintf(reterr_msg, "Peers=: '%s' is not ID=ADDR:PORT", o->peers[i]) < 0)
                                *reterr_msg = NULL;
                        return r == -ENOMEM ? r : -EINVAL;
                }
                if (streq(peer->id, o->host_id)) {
                        /* this host may be listed too (one Peers= line for every host): not asked */
                        free(peer->id);
                        free(peer->host);
                        *peer = (Peer){};
                        p->n_peers--;
                }
        }
        r = sd_event_add_time(b->event, &p->tick, CLOCK_MONOTONIC, 0, 0, on_tick, p);
        return r < 0 ? r : 0;
}

static void static_close(MembershipBackend *b) {
        StaticMembership *p = (StaticMembership *) b;

        p->tick = sd_event_source_disable_unref(p->tick);
        for (size_t i = 0; i < p->n_peers; i++) {
                transport_call_cancel(p->peers[i].call);
                free(p->peers[i].id);
                free(p->peers[i].host);
                free(p->peers[i].error);
        }
        free(p->peers);
}

const MembershipDriver membership_static_driver = {
        .name = "static",
        .abi = MEMBERSHIP_DRIVER_ABI,
        .instance_size = sizeof(StaticMembership),
        .open = static_open,
        .close = static_close,
        .publish = static_publish,
};
