/* SPDX-License-Identifier: Apache-2.0 */
/* See settings.h. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/fileio.h"
#include "../util/ini.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "settings.h"

void settings_init(Settings *s) {
        *s = (Settings){
                .max_request_body = SETTINGS_DEFAULT_MAX_BODY,
                .drain_usec = SETTINGS_DEFAULT_DRAIN_USEC,
                .max_connections = SETTINGS_DEFAULT_MAX_CONNECTIONS,
                .max_connections_per_listener = SETTINGS_DEFAULT_MAX_CONNECTIONS_PER_LISTENER,
                .max_connections_per_user = SETTINGS_DEFAULT_MAX_CONNECTIONS_PER_USER,
                .header_timeout_usec = SETTINGS_DEFAULT_HEADER_TIMEOUT_USEC,
                .body_timeout_usec = SETTINGS_DEFAULT_BODY_TIMEOUT_USEC,
                .idle_timeout_usec = SETTINGS_DEFAULT_IDLE_TIMEOUT_USEC,
                .log_level = -1,
                .cluster.lease_usec = SETTINGS_DEFAULT_LEASE_USEC,
        };
}

static void settings_done_token(Settings *s) {
        if (s->dashboard_token)
                explicit_bzero(s->dashboard_token, strlen(s->dashboard_token));
        free(s->dashboard_token);
        s->dashboard_token = NULL;
}

static void cluster_done(ClusterSettings *c) {
        free(c->host_id);
        free(c->listen);
        free(c->advertise);
        free(c->membership_connection);
        free(c->membership_table);
        strv_free(c->peers);
        free(c->trust_domain);
        free(c->cert_file);
        free(c->key_file);
        free(c->trust_root_file);
        *c = (ClusterSettings){ .lease_usec = SETTINGS_DEFAULT_LEASE_USEC };
}

void settings_done(Settings *s) {
        free(s->api_socket);
        s->api_socket = NULL;
        settings_done_token(s);
        cluster_done(&s->cluster);
}

static const char *const membership_names[_CLUSTER_MEMBERSHIP_MAX] = {
        [CLUSTER_MEMBERSHIP_NONE] = "none",
        [CLUSTER_MEMBERSHIP_STATIC] = "static",
        [CLUSTER_MEMBERSHIP_POSTGRESQL] = "postgresql",
        [CLUSTER_MEMBERSHIP_REDIS] = "redis",
        [CLUSTER_MEMBERSHIP_MDNS] = "mdns",
};

const char *cluster_membership_to_string(ClusterMembershipKind k) {
        return k >= 0 && k < _CLUSTER_MEMBERSHIP_MAX ? membership_names[k] : NULL;
}

int cluster_parse_address(const char *s, char **ret_addr, uint16_t *ret_port) {
        const char *colon, *a = s;
        size_t alen;
        char *e;
        unsigned long port;

        if (*s == '[') {
                const char *close = strchr(s, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                a = s + 1;
                alen = (size_t) (close - a);
                colon = close + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || memchr(s, ':', (size_t) (colon - s)))
                        return -EINVAL; /* a v6 literal needs its brackets */
                alen = (size_t) (colon - s);
        }
        if (alen == 0 || alen > 253 || colon[1] < '0' || colon[1] > '9')
                return -EINVAL;
        errno = 0;
        port = strtoul(colon + 1, &e, 10);
        if (errno != 0 || *e != 0 || port == 0 || port > 65535)
                return -EINVAL;
        for (size_t i = 0; i < alen; i++)
                if (!strchr("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:%_", a[i]))
                        return -EINVAL;
        char *c = strndup(a, alen);
        if (!c)
                return -ENOMEM;
        *ret_addr = c;
        *ret_port = (uint16_t) port;
        return 0;
}

/* A host id: what the host's certificate names, so a DNS-name-like token. */
static bool host_id_valid(const char *v, size_t n) {
        if (n == 0 || n > 63 || v[0] == '-' || v[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("0123456789abcdefghijklmnopqrstuvwxyz-.", v[i]))
                        return false;
        return true;
}

static int check_address(const char *v, bool wildcard_ok) {
        _cleanup_free_ char *a = NULL;
        uint16_t port;
        int r = cluster_parse_address(v, &a, &port);
        if (r < 0)
                return r;
        if (!wildcard_ok && (streq(a, "0.0.0.0") || streq(a, "::")))
                return -EADDRNOTAVAIL;
        return 0;
}

static int set_string(char **where, const char *value) {
        char *c = strdup(value);
        if (!c)
                return -ENOMEM;
        free(*where);
        *where = c;
        return 0;
}

/* [Cluster] keys. */
static int assign_cluster(ClusterSettings *c, const char *key, const char *value, char **reterr_msg) {
        int r;

        if (streq(key, "HostId")) {
                if (!host_id_valid(value, strlen(value))) {
                        *reterr_msg = strdup("expected a host name of lower-case letters, digits, '-' and '.'");
                        return -EINVAL;
                }
                return set_string(&c->host_id, value);
        }
        if (streq(key, "PeerListen") || streq(key, "PeerAddress")) {
                bool listen = streq(key, "PeerListen");
                r = check_address(value, listen);
                if (r < 0) {
                        *reterr_msg = strdup(r == -EADDRNOTAVAIL ? "peers cannot dial a wildcard address"
                                                                 : "expected ADDRESS:PORT or [IPV6]:PORT");
                        return -EINVAL;
                }
                return set_string(listen ? &c->listen : &c->advertise, value);
        }
        if (streq(key, "Membership")) {
                for (int k = 0; k < _CLUSTER_MEMBERSHIP_MAX; k++)
                        if (streq(value, membership_names[k])) {
                                c->membership = (ClusterMembershipKind) k;
                                return 0;
                        }
                *reterr_msg = strdup("expected none, static, postgresql, redis or mdns");
                return -EINVAL;
        }
        if (streq(key, "MembershipConnection")) {
                if (!*value) {
                        *reterr_msg = strdup("empty");
                        return -EINVAL;
                }
                return set_string(&c->membership_connection, value);
        }
        if (streq(key, "Peers")) {
                /* Space-separated ID=ADDRESS:PORT; an empty value clears the list (systemd style). */
                _cleanup_strv_free_ char **l = NULL;
                const char *p = value;
                while (*p) {
                        size_t n = strcspn(p, " \t");
                        if (n > 0) {
                                _cleanup_free_ char *entry = strndup(p, n);
                                if (!entry)
                                        return -ENOMEM;
                                char *eq = strchr(entry, '=');
                                if (!eq || !host_id_valid(entry, (size_t) (eq - entry)) || check_address(eq + 1, false) < 0) {
                                        *reterr_msg = strdup("expected entries ID=ADDRESS:PORT separated by spaces");
                                        return -EINVAL;
                                }
                                if (strv_extend(&l, entry) < 0)
                                        return -ENOMEM;
                        }
                        p += n;
                        p += strspn(p, " \t");
                }
                if (!l && *value == 0) {
                        strv_free(c->peers);
                        c->peers = NULL;
                        return 0;
                }
                for (char **i = l; i && *i; i++)
                        if (strv_extend(&c->peers, *i) < 0)
                                return -ENOMEM;
                return 0;
        }
        if (streq(key, "LeaseSec")) {
                r = parse_duration_usec(value, &c->lease_usec);
                if (r < 0 || c->lease_usec < 1000000 || c->lease_usec > 3600ULL * 1000000) {
                        *reterr_msg = strdup("expected a duration from 1s to 1h, such as 5 or 5s");
                        return -EINVAL;
                }
                return 0;
        }
        if (streq(key, "TrustDomain")) {
                if (!host_id_valid(value, strlen(value))) {
                        *reterr_msg = strdup("expected a trust domain of lower-case letters, digits, '-' and '.'");
                        return -EINVAL;
                }
                return set_string(&c->trust_domain, value);
        }
        if (streq(key, "CertificateFile") || streq(key, "KeyFile") || streq(key, "TrustRootFile")) {
                if (*value != '/') {
                        *reterr_msg = strdup("expected an absolute path");
                        return -EINVAL;
                }
                return set_string(streq(key, "CertificateFile") ? &c->cert_file
                                  : streq(key, "KeyFile")       ? &c->key_file
                                                                : &c->trust_root_file,
                                  value);
        }
        *reterr_msg = strdup("unknown key");
        return -EINVAL;
}

/* A TCP port for a loopback listener: 1..65535, or 0 for none. */
static int parse_listen_port(const char *v, uint16_t *ret) {
        char *e;
        unsigned long n;
        if (*v < '0' || *v > '9')
                return -EINVAL;
        errno = 0;
        n = strtoul(v, &e, 10);
        if (errno != 0 || *e != 0 || n > 65535)
                return -EINVAL;
        *ret = (uint16_t) n;
        return 0;
}

/* A positive count; 0 would lock every client out, which is never what was meant. */
static int parse_count(const char *v, unsigned *ret) {
        char *e;
        unsigned long n;

        if (*v < '0' || *v > '9')
                return -EINVAL;
        errno = 0;
        n = strtoul(v, &e, 10);
        if (errno != 0 || *e != 0 || n == 0 || n > 1000000000UL)
                return -EINVAL;
        *ret = (unsigned) n;
        return 0;
}

static const struct {
        const char *key;
        size_t offset;
} count_keys[] = {
        { "MaxConnections", offsetof(Settings, max_connections) },
        { "MaxConnectionsPerListener", offsetof(Settings, max_connections_per_listener) },
        { "MaxConnectionsPerUser", offsetof(Settings, max_connections_per_user) },
}, timeout_keys[] = {
        { "HeaderTimeoutSec", offsetof(Settings, header_timeout_usec) },
        { "BodyTimeoutSec", offsetof(Settings, body_timeout_usec) },
        { "IdleTimeoutSec", offsetof(Settings, idle_timeout_usec) },
};

typedef struct {
        Settings *s;
        char field[64]; /* last key, for the error (the parser's buffer is gone by then) */
        ConfError *err;
        const char *file;
        unsigned cluster_line; /* the first [Cluster] assignment: where whole-section errors point */
} ParseState;

static int assign(const char *section, const char *key, const char *value, unsigned line, void *ud,
                  char **reterr_msg) {
        ParseState *p = ud;
        Settings *s = p->s;
        int r;

        p->field[0] = 0;
        if (streq(section, "Cluster")) {
                if (!p->cluster_line)
                        p->cluster_line = line;
                snprintf(p->field, sizeof p->field, "%s", key);
                return assign_cluster(&s->cluster, key, value, reterr_msg);
        }
        if (!streq(section, "Daemon")) {
                *reterr_msg = strdup("unknown section, expected [Daemon] or [Cluster]");
                return -EINVAL;
        }
        snprintf(p->field, sizeof p->field, "%s", key);
        if (streq(key, "ApiSocket")) {
                if (!*value || strlen(value) >= 100) {
                        *reterr_msg = strdup("socket path empty or longer than 99 bytes");
                        return -EINVAL;
                }
                char *c = strdup(value);
                if (!c)
                        return -ENOMEM;
                free(s->api_socket);
                s->api_socket = c;
        } else if (streq(key, "MaxRequestBodySize")) {
                r = parse_size(value, &s->max_request_body);
                if (r < 0 || s->max_request_body == 0) {
                        *reterr_msg = strdup("expected a size such as 4M, 512K or 1048576");
                        return -EINVAL;
                }
        } else if (streq(key, "DrainTimeoutSec")) {
                r = parse_duration_usec(value, &s->drain_usec);
                if (r < 0) {
                        *reterr_msg = strdup("expected a duration such as 10, 10s or 1m30s");
                        return -EINVAL;
                }
        } else if (streq(key, "MetricsPort") || streq(key, "DashboardPort")) {
                if (parse_listen_port(value, streq(key, "MetricsPort") ? &s->metrics_port : &s->dashboard_port) < 0) {
                        *reterr_msg = strdup("expected a TCP port from 1 to 65535, or 0 for none");
                        return -EINVAL;
                }
        } else if (streq(key, "DashboardToken")) {
                if (strlen(value) < 16 || strlen(value) > 256) {
                        *reterr_msg = strdup("expected a token of 16 to 256 characters");
                        return -EINVAL;
                }
                char *c = strdup(value);
                if (!c)
                        return -ENOMEM;
                settings_done_token(s);
                s->dashboard_token = c;
        } else if (streq(key, "LogLevel")) {
                r = log_level_from_string(value);
                if (r < 0) {
                        *reterr_msg = strdup("expected debug, info, notice, warning or err");
                        return -EINVAL;
                }
                s->log_level = r;
        } else {
                for (size_t i = 0; i < sizeof count_keys / sizeof count_keys[0]; i++)
                        if (streq(key, count_keys[i].key)) {
                                if (parse_count(value, (unsigned *) ((char *) s + count_keys[i].offset)) < 0) {
                                        *reterr_msg = strdup("expected a positive number");
                                        return -EINVAL;
                                }
                                return 0;
                        }
                for (size_t i = 0; i < sizeof timeout_keys / sizeof timeout_keys[0]; i++)
                        if (streq(key, timeout_keys[i].key)) {
                                uint64_t *u = (uint64_t *) ((char *) s + timeout_keys[i].offset);
                                r = parse_duration_usec(value, u);
                                if (r < 0 || *u < 1000000) {
                                        *reterr_msg = strdup("expected a duration of at least 1s, such as 10, 10s or 1m");
                                        return -EINVAL;
                                }
                                return 0;
                        }
                *reterr_msg = strdup("unknown key");
                return -EINVAL;
        }
        return 0;
}

/* Every error of the file goes into p->err: one reload shows them all. */
static int collect_error(unsigned line, const char *key, const char *msg, void *ud) {
        ParseState *p = ud;
        /* the field is the key only where the key itself was wrong, not for a misplaced line */
        int r = conf_error_append(p->err, p->file, line, key && p->field[0] ? p->field : NULL, "%s",
                                  msg ?: "invalid");
        return r == -ENOMEM ? r : 0;
}

/* What only the whole section can tell. */
static int cluster_check(ClusterSettings *c, const char *file, unsigned line, ConfError *err) {
        if (!c->listen) {
                if (c->membership != CLUSTER_MEMBERSHIP_NONE || c->peers)
                        return conf_error_append(err, file, line, "PeerListen", "%s",
                                                 "a cluster needs PeerListen=, where peers reach this host");
                return 0;
        }
        if (!c->advertise && check_address(c->listen, false) < 0)
                return conf_error_append(err, file, line, "PeerAddress", "%s",
                                         "PeerListen= is a wildcard: say which address peers dial");
        /* Neither Membership= nor Peers=: the Dapr Configuration's spec.nameResolution may name the engine
         * (the Manager checks that one does once config.yaml is read). */
        if (c->membership == CLUSTER_MEMBERSHIP_NONE && c->peers)
                c->membership = CLUSTER_MEMBERSHIP_STATIC;
        if (c->membership == CLUSTER_MEMBERSHIP_STATIC && !c->peers)
                return conf_error_append(err, file, line, "Peers", "%s", "static membership needs Peers=");
        if ((c->membership == CLUSTER_MEMBERSHIP_POSTGRESQL || c->membership == CLUSTER_MEMBERSHIP_REDIS) &&
            !c->membership_connection)
                return conf_error_append(err, file, line, "MembershipConnection", "%s",
                                         "postgresql and redis membership need MembershipConnection=");
        return 0;
}

int settings_parse(Settings *s, const char *file, const char *text, size_t len, ConfError *err) {
        Settings n;
        int r;

        settings_init(&n);
        conf_error_done(err);
        ParseState p = { .s = &n, .err = err, .file = file };
        r = ini_parse_all(text, len, assign, collect_error, &p);
        if (r >= 0)
                r = cluster_check(&n.cluster, file, p.cluster_line, err);
        if (r < 0) {
                settings_done(&n);
                return r;
        }
        settings_done(s);
        *s = n;
        return 0;
}

int settings_load(Settings *s, const char *path, ConfError *err) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_full_file(path, SETTINGS_FILE_MAX, &text, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                conf_error_set(err, path, 0, NULL, "cannot read: %s", strerror(-r));
                return r;
        }
        return settings_parse(s, path, text, len, err);
}
