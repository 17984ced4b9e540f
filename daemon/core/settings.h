/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Daemon-wide settings from mooringd.conf ([Daemon] section). A missing file
 * means all defaults; a bad file is rejected whole with file:line:field and
 * the previous (or default) settings stay in force.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "conferr.h"

#define SETTINGS_DEFAULT_MAX_BODY (4ULL * 1024 * 1024)
#define SETTINGS_DEFAULT_DRAIN_USEC (10ULL * 1000000)
/* Connection limits of the HTTP front-end (see mooringd.conf(5)). The global one is further
 * capped at start by RLIMIT_NOFILE minus a reserve for everything else the daemon opens. */
#define SETTINGS_DEFAULT_MAX_CONNECTIONS 16384U
#define SETTINGS_DEFAULT_MAX_CONNECTIONS_PER_LISTENER 1024U
#define SETTINGS_DEFAULT_MAX_CONNECTIONS_PER_USER 1024U
#define SETTINGS_DEFAULT_HEADER_TIMEOUT_USEC (10ULL * 1000000)
#define SETTINGS_DEFAULT_BODY_TIMEOUT_USEC (30ULL * 1000000)
#define SETTINGS_DEFAULT_IDLE_TIMEOUT_USEC (60ULL * 1000000)

#define SETTINGS_DEFAULT_LEASE_USEC (5ULL * 1000000)
#define SETTINGS_DEFAULT_TRUST_DOMAIN "public"

/* How the hosts of a cluster find each other ([Cluster] Membership=). */
typedef enum ClusterMembershipKind {
        CLUSTER_MEMBERSHIP_NONE,       /* one host; with PeerListen=: config.yaml's spec.nameResolution decides */
        CLUSTER_MEMBERSHIP_STATIC,     /* Peers= */
        CLUSTER_MEMBERSHIP_POSTGRESQL, /* a table with leases in MembershipConnection= (conninfo) */
        CLUSTER_MEMBERSHIP_REDIS,      /* keys with expiry in MembershipConnection= (host:port or URL) */
        CLUSTER_MEMBERSHIP_MDNS,       /* DNS-SD through Avahi on the LAN */
        _CLUSTER_MEMBERSHIP_MAX,
} ClusterMembershipKind;

/*
 * [Cluster]: past one host (see mooringd.conf(5)). Off unless PeerListen= is set. Peers reach
 * each other over mutual TLS on PeerListen=; each has a certificate naming HostId=, issued by
 * the trust root in TrustRootFile= (mooringctl ca).
 */
typedef struct ClusterSettings {
        char *host_id;           /* HostId=; NULL: the host name */
        char *listen;            /* PeerListen= "ADDR:PORT" ("[v6]:PORT"); NULL: single host */
        char *advertise;         /* PeerAddress=: what peers dial; NULL: listen (then not a wildcard) */
        ClusterMembershipKind membership;
        char *membership_connection; /* MembershipConnection= */
        char *membership_table;  /* not a key: spec.nameResolution.configuration.tableName; NULL: default */
        char **peers;            /* Peers=: "ID=ADDR:PORT" entries (static membership) */
        uint64_t lease_usec;     /* LeaseSec=: a host that stops renewing is gone after it */
        char *trust_domain;      /* TrustDomain=; NULL: "public", as Dapr */
        char *cert_file;         /* CertificateFile=, KeyFile=, TrustRootFile=; NULL: the defaults */
        char *key_file;
        char *trust_root_file;
} ClusterSettings;

typedef struct Settings {
        char *api_socket;        /* relative to the runtime dir, or absolute */
        uint64_t max_request_body;
        uint64_t drain_usec;
        unsigned max_connections;              /* every HTTP connection together */
        unsigned max_connections_per_listener; /* per app listener; per peer uid on the shared socket */
        unsigned max_connections_per_user;     /* per peer uid, over every Unix socket */
        uint64_t header_timeout_usec;          /* whole request head, from its first byte */
        uint64_t body_timeout_usec;            /* body (and reply) without progress */
        uint64_t idle_timeout_usec;            /* keep-alive connection with no request */
        int log_level;           /* -1 when not set in the file */
        uint16_t metrics_port;   /* MetricsPort=: GET /metrics on 127.0.0.1; 0: off */
        uint16_t dashboard_port; /* DashboardPort=: the dashboard on 127.0.0.1; 0: off */
        char *dashboard_token;   /* DashboardToken=: required on DashboardPort= when set */
        ClusterSettings cluster; /* [Cluster] */
} Settings;

void settings_init(Settings *s);
void settings_done(Settings *s);
const char *cluster_membership_to_string(ClusterMembershipKind k);
/* Splits "ADDR:PORT" or "[V6]:PORT" into a malloc'd address (no brackets) and a port. -EINVAL, -ENOMEM. */
int cluster_parse_address(const char *s, char **ret_addr, uint16_t *ret_port);

/* Parses text; on failure *s is unchanged and err says where. */
int settings_parse(Settings *s, const char *file, const char *text, size_t len, ConfError *err);
/* Reads path; -ENOENT is not an error (defaults remain, returns 0). */
int settings_load(Settings *s, const char *path, ConfError *err);
