/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Manager's part of [Cluster] that concerns the peer transport: this
 * host's id and trust domain, its key and certificate (transport/peer-tls.h),
 * the peer listener (PeerListen=, or a socket-activated fd named "peer"), and
 * the reload of the TLS files on SIGHUP. The HTTP server and the transport
 * borrow the PeerTls; it is freed after both.
 *
 * PeerListen=, HostId= and TrustDomain= are read at start; a reload that
 * changes them says they wait for the next start. The certificate is looked
 * at once a day (and at every reload): within 7 days of its end a warning
 * names the file and the date.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/registry.h"
#include "http/server.h"
#include "manager.h"
#include "transport/peer-tls.h"
#include "transport/transport.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/strv.h"

#define CERT_WARN_SEC (7LL * 24 * 3600)
#define CERT_CHECK_USEC (24ULL * 3600 * 1000000)

static void check_expiry(Manager *m) {
        int64_t left = peer_tls_seconds_left(m->peer_tls);
        if (left < 0)
                log_error("The peer certificate '%s' has expired: peers refuse this host. Issue a new one "
                          "(mooringctl ca issue) and reload.", peer_tls_certificate_path(m->peer_tls));
        else if (left < CERT_WARN_SEC)
                log_warning("The peer certificate '%s' expires in %lld hours: issue a new one (mooringctl ca "
                            "issue) and reload before then.", peer_tls_certificate_path(m->peer_tls),
                            (long long) (left / 3600));
}

/* TLS is up (at start or at a reload that found the files): the front-end and the transport use it. */
static void tls_ready(Manager *m, const char *warning) {
        if (warning)
                log_warning("[Cluster]: %s.", warning);
        check_expiry(m);
        http_server_set_peer_tls(m->http, m->peer_tls);
        transport_set_peer_tls(m->transport, m->peer_tls);
}

static int on_cert_check(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        if (m->peer_tls)
                check_expiry(m);
        (void) sd_event_source_set_time(s, usec + CERT_CHECK_USEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

/* A TCP listener on ADDR:PORT, ADDR an IPv4 or IPv6 literal (wildcards included). */
static int bind_peer(const char *where, char **reterr) {
        _cleanup_free_ char *addr = NULL;
        struct sockaddr_storage ss = {};
        socklen_t len;
        uint16_t port;
        int one = 1, r;

        r = cluster_parse_address(where, &addr, &port);
        if (r < 0)
                return r;
        struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;
        if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
                s4->sin_family = AF_INET;
                s4->sin_port = htons(port);
                len = sizeof *s4;
        } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
                s6->sin6_family = AF_INET6;
                s6->sin6_port = htons(port);
                len = sizeof *s6;
        } else {
                *reterr = strdup("PeerListen= needs an IP address (no host names)");
                return -EINVAL;
        }
        _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &ss, len) < 0 || listen(fd, SOMAXCONN) < 0)
                return -errno;
        return TAKE_FD(fd);
}

/* The activated socket named "peer", if systemd passed one (see take_activated() in manager.c:
 * the same claim, by name, any address family). */
static int take_peer_socket(Manager *m) {
        for (size_t i = 0; i < m->n_activated; i++) {
                if (!streq(m->activated[i].name, "peer"))
                        continue;
                int fd = m->activated[i].fd;
                free(m->activated[i].name);
                m->activated[i] = m->activated[--m->n_activated];
                return fd;
        }
        return -EBADF;
}

int manager_peer_start(Manager *m) {
        const ClusterSettings *cs = &m->settings.cluster;
        _cleanup_free_ char *warning = NULL, *err = NULL;
        char host[256];
        int fd, r;

        if (cs->host_id)
                m->registry->host_id = strdup(cs->host_id);
        else if (gethostname(host, sizeof host) == 0 && (host[sizeof host - 1] = 0, *host))
                m->registry->host_id = strdup(host);
        else
                m->registry->host_id = strdup("localhost");
        if (!m->registry->host_id)
                return log_oom();
        if (!cs->listen)
                return 0; /* one host */
        m->registry->trust_domain = strdup(cs->trust_domain ?: SETTINGS_DEFAULT_TRUST_DOMAIN);
        if (!m->registry->trust_domain)
                return log_oom();

        /* Without its files the host still runs (membership, its own apps): the peer listener
         * refuses every connection and calls to peers fail, until a reload finds the files. */
        r = peer_tls_new(cs, m->registry->host_id, &m->peer_tls, &warning, &err);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                log_error_errno(r, "[Cluster] PeerListen= is set but peer TLS cannot start: %s. Peers are refused "
                                "until a reload finds the files.", err ?: "unknown error");
        else
                tls_ready(m, warning);

        fd = take_peer_socket(m);
        if (fd < 0) {
                _cleanup_free_ char *why = NULL;
                fd = bind_peer(cs->listen, &why);
                if (fd < 0)
                        return log_error_errno(fd, "Failed to listen on %s (PeerListen=): %s", cs->listen,
                                               why ?: strerror(-fd));
        }
        r = http_listener_new(m->http, LISTENER_PEER, NULL, fd, NULL, &m->peer_listener);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the peer listener: %m");
        if (sd_event_add_time_relative(m->event, &m->cert_check, CLOCK_REALTIME, CERT_CHECK_USEC,
                                       3600ULL * 1000000, on_cert_check, m) < 0)
                return log_oom();
        log_info("Peer listener on %s as host '%s' (trust domain '%s'), certificate %s.", cs->listen,
                 m->registry->host_id, m->registry->trust_domain,
                 m->peer_tls ? peer_tls_certificate_path(m->peer_tls) : "(none)");
        return 0;
}

void manager_peer_reload(Manager *m) {
        const ClusterSettings *cs = &m->settings.cluster;
        _cleanup_free_ char *warning = NULL, *err = NULL;

        if (!!cs->listen != !!m->peer_listener)
                log_warning("[Cluster] PeerListen= changed; it takes effect at the next start.");
        if (!m->peer_listener)
                return;
        if (!m->peer_tls) {
                int r = peer_tls_new(cs, m->registry->host_id, &m->peer_tls, &warning, &err);
                if (r < 0) {
                        log_error_errno(r, "[Cluster] Peer TLS still cannot start: %s.", err ?: "unknown error");
                        return;
                }
                log_info("Peer TLS started: certificate %s.", peer_tls_certificate_path(m->peer_tls));
                tls_ready(m, warning);
                return;
        }
        int r = peer_tls_reload(m->peer_tls, cs, m->registry->host_id, &warning, &err);
        if (r < 0) {
                log_error_errno(r, "Failed to reload the peer TLS files, keeping the ones in use: %s",
                                err ?: "unknown error");
                return;
        }
        log_info("Peer TLS reloaded: certificate %s; new connections use it.", peer_tls_certificate_path(m->peer_tls));
        if (warning)
                log_warning("[Cluster]: %s.", warning);
        check_expiry(m);
}

void manager_peer_free(Manager *m) {
        m->cert_check = sd_event_source_disable_unref(m->cert_check);
        m->peer_tls = peer_tls_free(m->peer_tls);
}
