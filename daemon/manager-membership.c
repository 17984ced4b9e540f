/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Manager's part of cluster membership (core/membership.h): starts it
 * when [Cluster] is on, with this host's id and the address peers dial, and
 * keeps this host's record of healthy apps current from the registry's app
 * events (an app is announced once found healthy, withdrawn when it turns
 * unhealthy or leaves). [Cluster] is read at start only: a change takes a
 * restart (a reload says so).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blocks/actors.h"
#include "core/app-config.h"
#include "core/app.h"
#include "core/configuration.h"
#include "core/membership.h"
#include "core/registry.h"
#include "manager.h"
#include "util/log.h"
#include "util/strv.h"

/* This host's healthy apps, to its record. */
static void publish_apps(Registry *reg) {
        _cleanup_free_ char **ids = calloc(reg->n_apps + 1, sizeof *ids);
        size_t n = 0;
        int r;

        if (!ids) {
                log_oom();
                return;
        }
        for (size_t i = 0; i < reg->n_apps; i++)
                if (reg->apps[i]->health == APP_HEALTH_HEALTHY)
                        ids[n++] = reg->apps[i]->config->id;
        r = membership_set_apps(reg->membership, ids);
        if (r < 0)
                log_warning_errno(r, "Failed to update this host's apps in the cluster membership, ignoring: %m");
}

static void on_app_event(Registry *reg, App *a, void *userdata) {
        if (reg->membership)
                publish_apps(reg);
}

static ClusterMembershipKind kind_from_dapr(const char *component) {
        if (streq(component, "mdns"))
                return CLUSTER_MEMBERSHIP_MDNS;
        if (streq(component, "postgresql") || streq(component, "postgres"))
                return CLUSTER_MEMBERSHIP_POSTGRESQL;
        if (streq(component, "redis"))
                return CLUSTER_MEMBERSHIP_REDIS;
        return CLUSTER_MEMBERSHIP_NONE;
}

/*
 * mooringd.conf's [Cluster] and config.yaml's spec.nameResolution, merged into *eff (a shallow copy
 * borrowing from both): what mooringd.conf says wins; the Configuration names the engine only when
 * Membership= and Peers= are both absent, and gives its connection and table to the engine they agree on.
 */
static int effective_settings(Manager *m, ClusterSettings *eff) {
        const Configuration *conf = registry_host_configuration(m->registry);
        const ConfigNameResolution *nr = conf ? &conf->name_resolution : NULL;
        ClusterMembershipKind k;

        *eff = m->settings.cluster;
        if (nr && nr->component) {
                k = kind_from_dapr(nr->component);
                if (k == CLUSTER_MEMBERSHIP_NONE)
                        log_warning("%s:%u: spec.nameResolution.component '%s' is not supported here (mdns, postgresql, "
                                    "redis), ignoring.", conf->file, nr->line, nr->component);
                else if (eff->membership == CLUSTER_MEMBERSHIP_NONE)
                        eff->membership = k;
                else if (eff->membership != k)
                        log_info("mooringd.conf's Membership=%s wins over spec.nameResolution '%s' of %s.",
                                 cluster_membership_to_string(eff->membership), nr->component, conf->file);
                if (eff->membership == k) {
                        if (!eff->membership_connection)
                                eff->membership_connection = nr->connection;
                        eff->membership_table = nr->table;
                }
        }
        if (eff->membership == CLUSTER_MEMBERSHIP_NONE)
                return log_error_errno(EINVAL, "[Cluster] PeerListen= needs Membership=, Peers=, or a "
                                               "spec.nameResolution in config.yaml naming how hosts find each other.");
        if ((eff->membership == CLUSTER_MEMBERSHIP_POSTGRESQL || eff->membership == CLUSTER_MEMBERSHIP_REDIS) &&
            !eff->membership_connection)
                return log_error_errno(EINVAL, "[Cluster] Membership=%s needs MembershipConnection= (or "
                                               "spec.nameResolution.configuration.connectionString in config.yaml).",
                                       cluster_membership_to_string(eff->membership));
        return 0;
}

int manager_membership_start(Manager *m) {
        ClusterSettings eff;
        const ClusterSettings *cs = &eff;
        char host[HOST_NAME_MAX + 1] = {};
        /* the peer transport's (manager-peer.c): the name peers' certificates are checked against */
        const char *id = m->registry->host_id ?: m->settings.cluster.host_id;
        const char *address = m->settings.cluster.advertise ?: m->settings.cluster.listen;
        int r;

        if (!m->settings.cluster.listen || m->registry->membership)
                return 0;
        r = effective_settings(m, &eff);
        if (r < 0)
                return r;
        if (!id) {
                if (gethostname(host, sizeof host - 1) < 0)
                        return log_error_errno(errno, "Failed to read the host name for [Cluster] HostId=: %m");
                id = host;
        }
        r = membership_new(m->event, cs, id, address, &m->registry->membership);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "Failed to start cluster membership (%s), see above.",
                                       cluster_membership_to_string(cs->membership));
        membership_set_transport(m->registry->membership, m->transport);
        r = registry_add_callback(m->registry, REGISTRY_APP_HEALTH_CHANGED, on_app_event, m);
        if (r >= 0)
                r = registry_add_callback(m->registry, REGISTRY_APP_REMOVED, on_app_event, m);
        if (r >= 0) /* actor placement follows the view from now on */
                r = actors_attach_membership(m->registry, id);
        if (r < 0)
                return log_oom();
        publish_apps(m->registry);
        log_info("Cluster: host '%s' at %s, membership %s, lease %llu ms.", id, address,
                 membership_engine(m->registry->membership),
                 (unsigned long long) (membership_lease_usec(m->registry->membership) / 1000));
        return 0;
}

void manager_membership_stop(Manager *m) {
        if (!m->registry || !m->registry->membership)
                return;
        (void) registry_remove_callback(m->registry, REGISTRY_APP_HEALTH_CHANGED, on_app_event, m);
        (void) registry_remove_callback(m->registry, REGISTRY_APP_REMOVED, on_app_event, m);
        m->registry->membership = membership_free(m->registry->membership);
}
