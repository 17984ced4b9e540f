/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See manager.h.
 *
 * Listeners: a socket systemd passed us (named "api" or "app-<id>") is used as
 * is; otherwise we bind our own under the runtime directory. A reload diffs the
 * app files against the running apps: an unchanged app is not touched at all,
 * a changed one keeps its listeners when they are the same, a removed one
 * closes its listeners while the connections already accepted finish (they
 * hold a reference on the App).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "core/app-config.h"
#include "core/app.h"
#include "blocks/actors.h"
#include "blocks/configstore.h"
#include "blocks/invoke.h"
#include "blocks/bindings.h"
#include "blocks/lock.h"
#include "blocks/pubsub.h"
#include "blocks/secrets.h"
#include "blocks/state.h"
#include "core/component.h"
#include "core/conf-keep.h"
#include "core/metrics.h"
#include "core/registry.h"
#include "dbus/runtime-bus.h"
#include "grpc/server.h"
#include "http/server.h"
#include "manager.h"
#include "transport/app-channel.h"
#include "transport/transport.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/strv.h"

#define COMPONENT_FILE_MAX (4 * 1024 * 1024)

static const char *const state_names[_MANAGER_STATE_MAX] = {
        [MANAGER_STARTING] = "starting",
        [MANAGER_RUNNING] = "running",
        [MANAGER_RELOADING] = "reloading",
        [MANAGER_STOPPING] = "stopping",
};

static const char *const bus_mode_names[_BUS_MODE_MAX] = {
        [BUS_MODE_SYSTEM] = "system",
        [BUS_MODE_SESSION] = "session",
        [BUS_MODE_NONE] = "none",
};

const char *manager_state_to_string(ManagerState s) {
        return s >= 0 && s < _MANAGER_STATE_MAX ? state_names[s] : NULL;
}

const char *manager_bus_mode_to_string(BusMode b) {
        return b >= 0 && b < _BUS_MODE_MAX ? bus_mode_names[b] : NULL;
}

BusMode manager_bus_mode_from_string(const char *s) {
        for (int i = 0; i < _BUS_MODE_MAX; i++)
                if (streq(s, bus_mode_names[i]))
                        return (BusMode) i;
        return _BUS_MODE_INVALID;
}

static void on_app_health_changed(Registry *r, App *a, void *userdata);

Manager *manager_new(void) {
        Manager *m = calloc(1, sizeof *m);
        if (!m)
                return NULL;
        m->cli_log_level = -1;
        settings_init(&m->settings);
        /* Our own loop, not sd_event_default(): the default one checks gettid() on every iteration. */
        if (sd_event_new(&m->event) < 0)
                return manager_free(m);
        m->registry = registry_new(m->event);
        if (!m->registry)
                return manager_free(m);
        /* The Manager hears a health change first (log, bus signal), then the blocks act on it. */
        if (registry_add_callback(m->registry, REGISTRY_APP_HEALTH_CHANGED, on_app_health_changed, m) < 0 ||
            invoke_setup(m->registry) < 0 || pubsub_setup(m->registry) < 0 || bindings_setup(m->registry) < 0 ||
            actors_setup(m->registry) < 0)
                return manager_free(m);
        return m;
}

static void app_unlink(Manager *m, App *a);
static int reload_components(Manager *m);

Manager *manager_free(Manager *m) {
        Registry *reg;

        if (!m)
                return NULL;
        reg = m->registry;
        if (reg) {
                /* Service-invocation calls end first (-ECANCELED): their callers are still there to be told. */
                invoke_done(reg);
                /* Input bindings' readers, then the bindings (their calls get -ECANCELED). */
                bindings_done(reg);
                for (size_t i = 0; i < reg->n_bindings; i++)
                        binding_close(reg, reg->bindings[i]);
                reg->n_bindings = 0;
                /* Actor turns end before the stores their reminders and state live in close. */
                actors_done(reg);
                /* The blocks above are done with the cluster view: this host's record is withdrawn. */
                manager_membership_stop(m);
                /* Subscriptions before the brokers they hang off. */
                pubsub_done(reg);
                for (size_t i = 0; i < reg->n_pubsubs; i++)
                        pubsub_broker_close(reg, reg->pubsubs[i]);
                reg->n_pubsubs = 0;
                /* Stores first: their pending callbacks (-ECANCELED) answer suspended HTTP requests. */
                for (size_t i = 0; i < reg->n_state_stores; i++)
                        state_store_close(reg->state_stores[i]);
                reg->n_state_stores = 0;
                for (size_t i = 0; i < reg->n_secret_stores; i++)
                        secret_store_close(reg->secret_stores[i]);
                reg->n_secret_stores = 0;
                for (size_t i = 0; i < reg->n_lock_stores; i++)
                        lock_store_close(reg->lock_stores[i]);
                reg->n_lock_stores = 0;
                for (size_t i = 0; i < reg->n_config_stores; i++)
                        configstore_close(reg->config_stores[i]);
                reg->n_config_stores = 0;
                while (reg->n_apps > 0)
                        app_unlink(m, reg->apps[reg->n_apps - 1]);
        }
        runtime_bus_done(m);
        /* Outgoing requests first: their callbacks may still answer suspended HTTP requests. */
        m->transport = transport_free(m->transport);
        m->api_listener = http_listener_free(m->api_listener);
        m->metrics_listener = http_listener_free(m->metrics_listener);
        m->dashboard_listener = http_listener_free(m->dashboard_listener);
        m->peer_listener = http_listener_free(m->peer_listener);
        m->http = http_server_free(m->http);
        m->grpc = grpc_server_free(m->grpc);
        m->tracer = trace_exporter_free(m->tracer);
        manager_peer_free(m); /* after everything that held a TLS connection */
        for (size_t i = 0; i < m->n_activated; i++) {
                safe_close(m->activated[i].fd);
                free(m->activated[i].name);
        }
        free(m->activated);
        sd_event_source_disable_unref(m->drain_timer);
        m->registry = registry_free(m->registry);
        settings_done(&m->settings);
        free(m->api_socket_path);
        free(m->config_dir);
        free(m->state_dir);
        free(m->runtime_dir);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

bool manager_is_ready(const Manager *m) {
        return m->state == MANAGER_RUNNING || m->state == MANAGER_RELOADING;
}

uint64_t manager_max_body(const Manager *m) {
        return m->settings.max_request_body;
}

uint64_t manager_uptime_sec(const Manager *m) {
        uint64_t now = 0;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        return now > m->start_usec ? (now - m->start_usec) / 1000000 : 0;
}

static void notify_status(Manager *m, const char *extra) {
        char buf[320], errors[128] = "";
        if (m->registry->n_config_kept > 0)
                snprintf(errors, sizeof errors, ", %u configuration errors (%u kept the previous version): see the log",
                         m->registry->n_config_errors, m->registry->n_config_kept);
        else if (m->registry->n_config_errors > 0)
                snprintf(errors, sizeof errors, ", %u configuration errors: see the log", m->registry->n_config_errors);
        snprintf(buf, sizeof buf, "%sSTATUS=%s: %zu apps, %zu components%s", strempty(extra),
                 manager_state_to_string(m->state), m->registry->n_apps, m->registry->n_components, errors);
        (void) sd_notify(false, buf);
}

/* ---- sockets ---- */

static int mkdir_p_mode(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* Claims the activated fd with that name (ownership moves to the caller), or -EBADF. */
static int take_activated(Manager *m, const char *name, int family) {
        for (size_t i = 0; i < m->n_activated; i++) {
                struct sockaddr_storage sa;
                socklen_t len = sizeof sa;
                if (!streq(m->activated[i].name, name))
                        continue;
                if (getsockname(m->activated[i].fd, (struct sockaddr *) &sa, &len) < 0 ||
                    (family != AF_UNSPEC && sa.ss_family != family))
                        continue;
                int fd = m->activated[i].fd;
                free(m->activated[i].name);
                m->activated[i] = m->activated[--m->n_activated];
                return fd;
        }
        return -EBADF;
}

static int bind_unix(const char *path, mode_t mode) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) unlink(path); /* a stale socket from an earlier run */
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -errno;
        if (chmod(path, mode) < 0)
                return -errno;
        if (listen(fd, SOMAXCONN) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static int bind_tcp_loopback(uint16_t port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;

        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -errno;
        if (listen(fd, SOMAXCONN) < 0)
                return -errno;
        return TAKE_FD(fd);
}

/* A user name or numeric uid to uid/gid. getpwnam() may ask NSS: only at load time. */
static int resolve_user(const char *user, uid_t *ret_uid, gid_t *ret_gid) {
        struct passwd *pw;
        char *end;
        unsigned long n;

        errno = 0;
        n = strtoul(user, &end, 10);
        if (*user && !*end && errno == 0) {
                pw = getpwuid((uid_t) n);
                *ret_uid = (uid_t) n;
                *ret_gid = pw ? pw->pw_gid : (gid_t) n;
                return 0;
        }
        pw = getpwnam(user);
        if (!pw)
                return -ESRCH;
        *ret_uid = pw->pw_uid;
        *ret_gid = pw->pw_gid;
        return 0;
}

static int collect_activated(Manager *m) {
        char **names = NULL;
        int n = sd_listen_fds_with_names(true, &names);
        if (n <= 0)
                return n;
        m->activated = calloc((size_t) n, sizeof(ActivatedFd));
        if (!m->activated) {
                strv_free(names);
                return -ENOMEM;
        }
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
                (void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                m->activated[m->n_activated++] = (ActivatedFd){ .fd = fd, .name = names[i] };
                names[i] = NULL;
        }
        free(names);
        log_debug("Received %d socket(s) from systemd.", n);
        return n;
}

static int open_api_listener(Manager *m) {
        const char *sock = m->settings.api_socket ?: "mooringd.sock";
        int fd, r;

        free(m->api_socket_path);
        m->api_socket_path = NULL;
        if (sock[0] == '/')
                m->api_socket_path = strdup(sock);
        else if (asprintf(&m->api_socket_path, "%s/%s", m->runtime_dir, sock) < 0)
                m->api_socket_path = NULL;
        if (!m->api_socket_path)
                return log_oom();

        fd = take_activated(m, "api", AF_UNIX);
        if (fd >= 0)
                return http_listener_new(m->http, LISTENER_API, NULL, fd, NULL, &m->api_listener);
        fd = bind_unix(m->api_socket_path, 0666);
        if (fd < 0)
                return log_error_errno(fd, "Failed to listen on %s: %m", m->api_socket_path);
        r = http_listener_new(m->http, LISTENER_API, NULL, fd, m->api_socket_path, &m->api_listener);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the API listener: %m");
        return 0;
}

/* MetricsPort= and DashboardPort=: loopback only, taken at start (a change waits for the next one). */
static int open_admin_port(Manager *m, const char *name, uint16_t port, ListenerKind kind, HttpListener **ret) {
        int fd, r;
        if (port == 0)
                return 0;
        fd = take_activated(m, name, AF_INET);
        if (fd < 0)
                fd = bind_tcp_loopback(port);
        if (fd < 0)
                return log_error_errno(fd, "Failed to listen on 127.0.0.1:%u (%s): %m", (unsigned) port,
                                       kind == LISTENER_METRICS ? "MetricsPort=" : "DashboardPort=");
        r = http_listener_new(m->http, kind, NULL, fd, NULL, ret);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the %s listener: %m", name);
        return 0;
}

/* ---- apps ---- */

/* Takes a out of the registry (the blocks drop what they run for it), closes its listeners and
 * socket directory. Connections already accepted hold their own reference and finish. */
static void app_unlink(Manager *m, App *a) {
        app_channel_probe_stop(a);
        a = registry_remove_app(m->registry, a);
        a->listener_unix = http_listener_free(a->listener_unix);
        a->listener_tcp = http_listener_free(a->listener_tcp);
        a->grpc_unix = grpc_listener_free(a->grpc_unix);
        a->grpc_tcp = grpc_listener_free(a->grpc_tcp);
        if (a->socket_path) { /* the directory is ours too */
                _cleanup_free_ char *dir = strndup(a->socket_path, strrchr(a->socket_path, '/') - a->socket_path);
                if (dir)
                        (void) rmdir(dir);
        }
        app_unref(a);
}

/*
 * The gRPC API's listeners (grpc/server.h), beside the HTTP ones and made the same way: a socket
 * systemd passed as "grpc-<id>" (Unix and/or TCP), else apps/<id>/grpc.sock with the mode and owner
 * of http.sock, and a loopback GrpcPort= when set.
 */
static int app_open_grpc_listeners(Manager *m, App *a, const char *dir, ConfError *e) {
        _cleanup_free_ char *name = NULL;
        int fd, r;

        if (asprintf(&name, "grpc-%s", a->config->id) < 0 || asprintf(&a->grpc_socket_path, "%s/grpc.sock", dir) < 0)
                return -ENOMEM;
        fd = take_activated(m, name, AF_UNIX);
        if (fd >= 0)
                r = grpc_listener_new(m->grpc, GRPC_LISTENER_UNIX, a, fd, NULL, &a->grpc_unix);
        else {
                uid_t uid = 0;
                gid_t gid = 0;
                r = a->config->user ? resolve_user(a->config->user, &uid, &gid) : 0;
                if (r >= 0)
                        r = mkdir_p_mode(dir, 0755);
                if (r >= 0)
                        r = fd = bind_unix(a->grpc_socket_path,
                                           a->config->allow_any_user && !a->config->user ? 0666 : 0600);
                if (r >= 0 && a->config->user && chown(a->grpc_socket_path, uid, gid) < 0) {
                        r = -errno;
                        safe_close(fd);
                }
                if (r >= 0)
                        r = grpc_listener_new(m->grpc, GRPC_LISTENER_UNIX, a, fd, a->grpc_socket_path,
                                              &a->grpc_unix);
        }
        if (r < 0)
                return conf_error_set(e, a->config->file, 0, NULL, "cannot listen on %s: %s", a->grpc_socket_path,
                                      strerror(-r));
        if (a->config->grpc_port == 0)
                return 0;
        fd = take_activated(m, name, AF_INET);
        if (fd < 0)
                fd = take_activated(m, name, AF_INET6);
        if (fd < 0)
                fd = bind_tcp_loopback(a->config->grpc_port);
        r = fd >= 0 ? grpc_listener_new(m->grpc, GRPC_LISTENER_TCP, a, fd, NULL, &a->grpc_tcp) : fd;
        if (r < 0)
                return conf_error_set(e, a->config->file, 0, "GrpcPort", "cannot listen on 127.0.0.1:%u: %s",
                                      (unsigned) a->config->grpc_port, strerror(-r));
        return 0;
}

static int app_open_listeners(Manager *m, App *a, ConfError *e) {
        _cleanup_free_ char *dir = NULL, *name = NULL;
        const char *id = a->config->id;
        int fd, r;

        if (asprintf(&dir, "%s/apps/%s", m->runtime_dir, id) < 0 || asprintf(&name, "app-%s", id) < 0)
                return -ENOMEM;
        if (asprintf(&a->socket_path, "%s/http.sock", dir) < 0) {
                a->socket_path = NULL;
                return -ENOMEM;
        }

        fd = take_activated(m, name, AF_UNIX);
        if (fd >= 0)
                r = http_listener_new(m->http, LISTENER_APP_UNIX, a, fd, NULL, &a->listener_unix);
        else {
                uid_t uid = 0;
                gid_t gid = 0;
                /* Whoever can connect to this socket IS the app (connecting needs write access).
                 * With User=: 0600, owned by that user. Without: 0600 and ours until the app's own
                 * unit (mooring-app@<id>.service, DynamicUser= by default, so its uid is not known
                 * before it starts) asks for its endpoints over D-Bus and the socket is handed to
                 * its uid (manager_app_claim_socket()). AllowAnyUser=yes is the development opt-out:
                 * 0666, every local user may act as the app. The directory stays ours, so we can
                 * remove the socket later. */
                if (a->config->user) {
                        r = resolve_user(a->config->user, &uid, &gid);
                        if (r < 0)
                                return conf_error_set(e, a->config->file, 0, "User", "unknown user '%s'",
                                                      a->config->user);
                }
                r = mkdir_p_mode(dir, 0755);
                if (r >= 0)
                        r = fd = bind_unix(a->socket_path,
                                           a->config->allow_any_user && !a->config->user ? 0666 : 0600);
                if (r >= 0 && a->config->user && chown(a->socket_path, uid, gid) < 0) {
                        r = -errno;
                        safe_close(fd);
                }
                if (r >= 0)
                        r = http_listener_new(m->http, LISTENER_APP_UNIX, a, fd, a->socket_path,
                                              &a->listener_unix);
        }
        if (r < 0)
                return conf_error_set(e, a->config->file, 0, NULL, "cannot listen on %s: %s%s", a->socket_path,
                                      strerror(-r),
                                      r == -EPERM ? " (User= needs CAP_CHOWN, see mooringd.service)" : "");

        r = app_open_grpc_listeners(m, a, dir, e);
        if (r < 0)
                return r;
        if (a->config->http_port == 0)
                return 0;
        fd = take_activated(m, name, AF_INET);
        if (fd < 0)
                fd = take_activated(m, name, AF_INET6);
        if (fd < 0)
                fd = bind_tcp_loopback(a->config->http_port);
        if (fd >= 0)
                r = http_listener_new(m->http, LISTENER_APP_TCP, a, fd, NULL, &a->listener_tcp);
        else
                r = fd;
        if (r < 0)
                return conf_error_set(e, a->config->file, 0, "HttpPort", "cannot listen on 127.0.0.1:%u: %s",
                                      (unsigned) a->config->http_port, strerror(-r));
        return 0;
}

/* Creates, listens, registers and starts probing. Takes config. */
static int app_add(Manager *m, AppConfig *config, AppSource source, ConfError *e) {
        _cleanup_(app_config_freep) AppConfig *c = config;
        App *a;
        int r;

        if (registry_find_app(m->registry, c->id)) {
                conf_error_set(e, c->file, 0, NULL, "an app with id '%s' is already registered", c->id);
                return -EEXIST;
        }
        for (size_t i = 0; c->http_port && i < m->registry->n_apps; i++)
                if (m->registry->apps[i]->config->http_port == c->http_port)
                        return conf_error_set(e, c->file, 0, "HttpPort", "port %u is already used by app '%s'",
                                              (unsigned) c->http_port, m->registry->apps[i]->config->id);
        for (size_t i = 0; c->grpc_port && i <= m->registry->n_apps; i++) {
                const AppConfig *o = i < m->registry->n_apps ? m->registry->apps[i]->config : c;
                if ((o != c && o->grpc_port == c->grpc_port) || o->http_port == c->grpc_port)
                        return conf_error_set(e, c->file, 0, "GrpcPort", "port %u is already used by app '%s'",
                                              (unsigned) c->grpc_port, o->id);
        }
        a = app_new(c, source);
        if (!a)
                return -ENOMEM;
        TAKE_PTR(c);
        r = app_open_listeners(m, a, e);
        if (r >= 0)
                r = registry_add_app(m->registry, a);
        if (r < 0) {
                a->listener_unix = http_listener_free(a->listener_unix);
                a->listener_tcp = http_listener_free(a->listener_tcp);
                a->grpc_unix = grpc_listener_free(a->grpc_unix);
                a->grpc_tcp = grpc_listener_free(a->grpc_tcp);
                app_unref(a);
                return r;
        }
        app_unref(a); /* the registry holds it now */
        if (app_channel_probe_start(m->registry, a) < 0)
                log_struct(LOG_WARNING, 0, a->config->id, NULL, "Failed to start health probing, ignoring.");
        log_struct(LOG_INFO, 0, a->config->id, NULL, "App registered from %s: socket %s%s%.0u.",
                   a->config->file ?: "D-Bus", a->socket_path, a->config->http_port ? ", port " : "",
                   (unsigned) a->config->http_port);
        return 0;
}

/* Loads apps.d into a list of configs; bad files are logged and skipped. A bad file whose app is
 * running (a reload) keeps it: the file goes into *ret_kept and the app is left alone. */
static int load_app_configs(Manager *m, AppConfig ***ret, size_t *ret_n, char ***ret_kept) {
        static const char *const suffixes[] = { ".conf", NULL };
        _cleanup_strv_free_ char **files = NULL, **kept = NULL;
        _cleanup_free_ char *dir = NULL;
        AppConfig **l = NULL;
        size_t n = 0;
        int r;

        if (asprintf(&dir, "%s/apps.d", m->config_dir) < 0)
                return -ENOMEM;
        r = dir_list_sorted(dir, suffixes, &files);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", dir);
        l = calloc(strv_length(files) + 1, sizeof(AppConfig *));
        if (!l)
                return -ENOMEM;
        for (char **f = files; f && *f; f++) {
                ConfError e = {};
                AppConfig *c = NULL;
                r = app_config_load(*f, &c, &e);
                /* Whatever made the file unreadable or invalid, the running app from it stays as it
                 * is (same object, listeners, connections); a removed file is no error and is not here. */
                if (r < 0 && r != -ENOMEM && registry_find_app_by_file(m->registry, *f)) {
                        r = strv_extend(&kept, *f);
                        if (r >= 0)
                                registry_log_conf_kept(m->registry, &e);
                } else if (r < 0 && r != -ENOMEM)
                        registry_log_conf_error(m->registry, &e);
                else if (r >= 0)
                        l[n++] = c;
                conf_error_done(&e);
                if (r == -ENOMEM) {
                        for (size_t i = 0; i < n; i++)
                                app_config_free(l[i]);
                        free(l);
                        return r;
                }
        }
        *ret = l;
        *ret_n = n;
        *ret_kept = TAKE_PTR(kept);
        return 0;
}

static int reload_apps(Manager *m) {
        _cleanup_strv_free_ char **kept = NULL;
        AppConfig **configs = NULL;
        size_t n = 0;
        bool changed = false;
        int r = load_app_configs(m, &configs, &n, &kept);
        if (r < 0)
                return r;

        /* Removed or changed file apps first, so a moved port can be re-bound. */
        for (size_t i = m->registry->n_apps; i > 0; i--) {
                App *a = m->registry->apps[i - 1];
                AppConfig *nc = NULL;
                if (a->source != APP_SOURCE_FILE)
                        continue;
                if (strv_contains(kept, a->config->file))
                        continue; /* its file is broken now: the last good version keeps serving */
                for (size_t j = 0; j < n; j++)
                        if (configs[j] && streq(configs[j]->id, a->config->id))
                                nc = configs[j];
                if (nc && app_config_equal(nc, a->config)) {
                        for (size_t j = 0; j < n; j++)
                                if (configs[j] == nc)
                                        configs[j] = app_config_free(configs[j]);
                        continue; /* untouched: keeps serving as it is */
                }
                if (nc && app_config_same_listeners(nc, a->config)) {
                        /* Same sockets, new settings: swap in place, restart probing. */
                        for (size_t j = 0; j < n; j++)
                                if (configs[j] == nc)
                                        configs[j] = NULL;
                        app_channel_probe_stop(a);
                        app_config_free(a->config);
                        a->config = nc;
                        a->health = APP_HEALTH_UNKNOWN;
                        a->probe_failures = 0;
                        (void) app_channel_probe_start(m->registry, a);
                        log_struct(LOG_INFO, 0, a->config->id, NULL, "App settings changed.");
                        changed = true;
                        continue;
                }
                log_struct(LOG_INFO, 0, a->config->id, NULL, nc ? "App listeners changed, re-creating."
                                                                : "App removed.");
                app_unlink(m, a);
                changed = true;
        }
        for (size_t j = 0; j < n; j++) {
                ConfError e = {};
                if (!configs[j])
                        continue;
                App *existing = registry_find_app(m->registry, configs[j]->id);
                if (existing && existing->source == APP_SOURCE_BUS) {
                        conf_error_set(&e, configs[j]->file, 0, NULL,
                                       "app '%s' is already registered over D-Bus; file ignored", configs[j]->id);
                        registry_log_conf_error(m->registry, &e);
                        conf_error_done(&e);
                        configs[j] = app_config_free(configs[j]);
                        continue;
                }
                r = app_add(m, TAKE_PTR(configs[j]), APP_SOURCE_FILE, &e);
                if (r == -ENOMEM) {
                        conf_error_done(&e);
                        break;
                }
                if (r < 0)
                        registry_log_conf_error(m->registry, &e);
                else
                        changed = true;
                conf_error_done(&e);
        }
        for (size_t j = 0; j < n; j++)
                app_config_free(configs[j]);
        free(configs);
        if (changed)
                runtime_bus_emit_apps_changed(m);
        return r == -ENOMEM ? r : 0;
}

int manager_register_app(Manager *m, AppConfig *config, ConfError *e) {
        int r;
        if (m->state == MANAGER_STOPPING) {
                app_config_free(config);
                conf_error_set(e, NULL, 0, NULL, "mooringd is stopping");
                return -ESHUTDOWN;
        }
        bool resources = config->resources_paths != NULL;
        r = app_add(m, config, APP_SOURCE_BUS, e);
        if (r >= 0) {
                registry_refresh_metrics(m->registry); /* its Configuration's spec.metric */
                runtime_bus_emit_apps_changed(m);
                notify_status(m, NULL);
                /* the components of its ResourcesPath= serve it from now on */
                if (resources)
                        r = manager_reload_components(m);
        }
        return r;
}

int manager_unregister_app(Manager *m, const char *id) {
        App *a = registry_find_app(m->registry, id);
        bool resources;
        if (!a)
                return -ENOENT;
        resources = a->config->resources_paths != NULL;
        log_struct(LOG_INFO, 0, id, NULL, "App unregistered.");
        app_unlink(m, a);
        /* its own components go with it */
        if (resources && manager_reload_components(m) == -ENOMEM)
                return -ENOMEM;
        runtime_bus_emit_apps_changed(m);
        notify_status(m, NULL);
        return 0;
}

/* Registered first on REGISTRY_APP_HEALTH_CHANGED: the pub/sub block's hook runs after it. */
static void on_app_health_changed(Registry *r, App *a, void *userdata) {
        Manager *m = userdata;
        log_struct(a->health == APP_HEALTH_HEALTHY ? LOG_INFO : LOG_WARNING, 0, a->config->id, NULL,
                   "App is %s (channel %s).", app_health_to_string(a->health), a->config->app_address);
        runtime_bus_emit_apps_changed(m);
}

/* ---- components ---- */

typedef struct {
        Manager *m;
        Component **list;
        size_t n;
        bool oom;
        ConfKeep keep;          /* what of the running set a broken file keeps */
        bool app_resources;     /* reading apps' ResourcesPath= directories */
        size_t file_start;      /* list[file_start..n) came from the file being read */
} ComponentLoad;

static void on_component(Component *c, void *ud) {
        ComponentLoad *cl = ud;
        for (size_t i = 0; i < cl->n; i++)
                if (streq(cl->list[i]->name, c->name) && cl->app_resources) {
                        /* An app's resources (mooringd run --resources-path) meet a name the host already
                         * serves: the host's component stays, so that e.g. a quickstart's Redis "statestore"
                         * runs on the embedded default where no Redis is configured. Said, not counted. */
                        log_struct(LOG_WARNING, 0, NULL, c->name,
                                   "%s:%u: component '%s' of an app's resources is not used: the name is taken "
                                   "by %s:%u, which serves the app instead.", c->file, c->line, c->name,
                                   cl->list[i]->file, cl->list[i]->line);
                        component_unref(c);
                        return;
                } else if (streq(cl->list[i]->name, c->name)) {
                        ConfError e = {};
                        conf_error_set(&e, c->file, c->line, "metadata.name",
                                       "component '%s' is already defined in %s:%u", c->name, cl->list[i]->file,
                                       cl->list[i]->line);
                        registry_log_conf_error(cl->m->registry, &e);
                        conf_error_done(&e);
                        component_unref(c);
                        return;
                }
        Component **n = realloc(cl->list, (cl->n + 1) * sizeof(Component *));
        if (!n) {
                cl->oom = true;
                component_unref(c);
                return;
        }
        cl->list = n;
        cl->list[cl->n++] = c;
}

static void on_component_error(const ConfError *e, void *ud) {
        ComponentLoad *cl = ud;
        registry_log_conf_error(cl->m->registry, e);
}

/*
 * A bad document (or file) on reload. Decided per document where the document names the component
 * it meant (metadata.name): the running component of that name from this file stays. Where it names
 * none (a YAML syntax error, which leaves the rest of the file unread; a document that is no mapping
 * or has no name), per file: every running component from this file stays and nothing read from it
 * now is used. See core/conf-keep.h.
 */
static void on_component_error_named(const ConfError *e, const char *name, void *ud) {
        ComponentLoad *cl = ud;
        int r = conf_keep_note_error(&cl->keep, name);
        if (r < 0)
                cl->oom = true;
        if (r > 0)
                registry_log_conf_kept(cl->m->registry, e);
        else
                registry_log_conf_error(cl->m->registry, e);
}

static const char *component_file_of(const void *o) {
        return ((const Component *) o)->file;
}

static const char *component_name_of(const void *o) {
        return ((const Component *) o)->name;
}

static bool component_has_new(const char *name, void *ud) {
        ComponentLoad *cl = ud;
        for (size_t i = cl->file_start; i < cl->n; i++)
                if (streq(cl->list[i]->name, name))
                        return true;
        return false;
}

/* Carries running component i into the new set: the same object, so its store and data stay. */
static void component_keep(size_t i, void *ud) {
        ComponentLoad *cl = ud;
        on_component(component_ref(cl->m->registry->components[i]), cl);
}

/* With no component of a category at all, Dapr apps still find the name they expect
 * ("statestore", "pubsub"): ours, embedded. */
static int add_default_component(ComponentLoad *cl, const char *category, const char *name, const char *type) {
        _cleanup_free_ char *yaml = NULL;
        for (size_t i = 0; i < cl->n; i++)
                if (component_is_category(cl->list[i], category))
                        return 0;
        int k = asprintf(&yaml, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\n"
                                "spec:\n  type: %s\n", name, type);
        if (k < 0)
                return -ENOMEM;
        int r = component_parse(COMPONENT_BUILTIN_FILE, yaml, (size_t) k, on_component, on_component_error, cl);
        return r < 0 || cl->oom ? -ENOMEM : 0;
}

static int add_default_components(ComponentLoad *cl) {
        int r = add_default_component(cl, "state", "statestore", HAVE_SQLITE ? "state.sqlite" : "state.in-memory");
        if (r >= 0)
                r = add_default_component(cl, "pubsub", "pubsub",
                                          pubsub_driver_find("pubsub.sqlite") ? "pubsub.sqlite" : "pubsub.in-memory");
        /* Dapr has no default lock store; ours is the embedded one, named as Dapr's docs name theirs. */
        if (r >= 0 && lock_driver_find("lock.sqlite"))
                r = add_default_component(cl, "lock", "lockstore", "lock.sqlite");
        /* Nor a default configuration store; ours is named as Dapr's docs name theirs. */
        if (r >= 0 && config_store_driver_find("configuration.sqlite"))
                r = add_default_component(cl, "configuration", "configstore", "configuration.sqlite");
        return r;
}

/* One open store per state component: unchanged components keep theirs (and the
 * requests in flight on it), removed or changed ones are closed, new ones opened. */
/* How one kind of component-backed instance (state store, pub/sub broker) is kept in sync. */
typedef struct InstanceKind {
        const char *category;   /* "state" */
        const char *what;       /* "state store", for messages */
        int (*open)(Registry *r, Component *c, void **ret, char **reterr_msg);
        void (*close)(Registry *r, void *instance);
        Component *(*component)(void *instance);
        const char *const *block_keys; /* metadata the block reads later, not at open */
} InstanceKind;

static int state_open_any(Registry *r, Component *c, void **ret, char **reterr_msg) {
        int k = state_store_open(r, c, (StateStore **) ret, reterr_msg);
        metrics_component_init(r->metrics, c->name, k >= 0);
        return k;
}
static void state_close_any(Registry *r, void *i) {
        state_store_close(i);
}
static Component *state_component_any(void *i) {
        return ((StateStore *) i)->component;
}
static int pubsub_open_any(Registry *r, Component *c, void **ret, char **reterr_msg) {
        int k = pubsub_broker_open(r, c, (PubsubBroker **) ret, reterr_msg);
        metrics_component_init(r->metrics, c->name, k >= 0);
        return k;
}
static void pubsub_close_any(Registry *r, void *i) {
        pubsub_broker_close(r, i);
}
static Component *pubsub_component_any(void *i) {
        return ((PubsubBroker *) i)->component;
}

static const char *const state_block_keys[] = { "keyPrefix", "maxOperationsPerRequest", "actorStateStore", NULL };
static const char *const pubsub_block_keys[] = { "allowedTopics", "publishingScopes", "subscriptionScopes",
                                                  "concurrency", NULL };
static const InstanceKind state_kind = { "state", "state store", state_open_any, state_close_any, state_component_any,
                                         state_block_keys };
static const InstanceKind pubsub_kind = { "pubsub", "pub/sub", pubsub_open_any, pubsub_close_any, pubsub_component_any,
                                          pubsub_block_keys };

/* Metadata that neither the driver nor the block reads does nothing here: say so, by name and line,
 * instead of ignoring it silently (issue 14 part 6). */
static void warn_unused_metadata(const Component *c, const InstanceKind *k) {
        /* (a kind without block_keys, bindings for now, is not checked: its block may read more later) */
        for (size_t i = 0; k->block_keys && i < c->n_items; i++) {
                const ComponentItem *it = &c->items[i];
                bool known = it->used;
                for (const char *const *b = k->block_keys; b && *b && !known; b++)
                        known = strcasecmp(*b, it->name) == 0;
                if (!known)
                        log_struct(LOG_WARNING, 0, NULL, c->name,
                                   "%s:%u: component '%s' (%s): metadata field '%s' is not supported by mooring "
                                   "and is ignored.", strna(c->file), it->line ?: c->line, c->name, c->type,
                                   it->name);
        }
}

static int secret_open_any(Registry *r, Component *c, void **ret, char **reterr_msg) {
        return secret_store_open(r, c, (SecretStore **) ret, reterr_msg);
}
static void secret_close_any(Registry *r, void *i) {
        secret_store_close(i);
}
static Component *secret_component_any(void *i) {
        return ((SecretStore *) i)->component;
}

static const InstanceKind secret_kind = { "secretstores", "secret store", secret_open_any, secret_close_any,
                                          secret_component_any };

static int lock_open_any(Registry *r, Component *c, void **ret, char **reterr_msg) {
        return lock_store_open(r, c, (LockStore **) ret, reterr_msg);
}
static void lock_close_any(Registry *r, void *i) {
        lock_store_close(i);
}
static Component *lock_component_any(void *i) {
        return ((LockStore *) i)->component;
}

static int config_open_any(Registry *r, Component *c, void **ret, char **reterr_msg) {
        return configstore_open(r, c, (ConfigStore **) ret, reterr_msg);
}
static void config_close_any(Registry *r, void *i) {
        configstore_close(i);
}
static Component *config_component_any(void *i) {
        return ((ConfigStore *) i)->component;
}

static const char *const config_block_keys[] = { NULL };
static const InstanceKind config_kind = { "configuration", "configuration store", config_open_any, config_close_any,
                                          config_component_any, config_block_keys };
static const char *const lock_block_keys[] = { "keyPrefix", NULL };
static const InstanceKind lock_kind = { "lock", "lock store", lock_open_any, lock_close_any, lock_component_any,
                                        lock_block_keys };
static int binding_open_any(Registry *r, Component *c, void **ret, char **reterr_msg) {
        return binding_open(r, c, (Binding **) ret, reterr_msg);
}
static void binding_close_any(Registry *r, void *i) {
        binding_close(r, i);
}
static Component *binding_component_any(void *i) {
        return ((Binding *) i)->component;
}
static const InstanceKind binding_kind = { "bindings", "binding", binding_open_any, binding_close_any,
                                           binding_component_any };

/*
 * A changed component i that fails to resolve or open (its file parses, but the driver refuses it):
 * when the running instance of that name is still there, it stays, and so does its component
 * object in m->registry->components, so the store keeps its data. Returns the kept instance or NULL.
 */
/* secretKeyRef: through whichever secret store is open (blocks/secrets.c). */
static int resolve_secret(const char *store, const char *name, const char *key, char **ret, char **reterr_msg,
                          void *userdata) {
        return secrets_resolve(userdata, store, name, key, ret, reterr_msg);
}

/* What /v1.0/metadata shows for a component that did not open. */
static void note_component_error(Manager *m, const Component *c, const ConfError *e) {
        _cleanup_free_ char *text = conf_error_format(e);
        if (!text || registry_set_component_error(m->registry, c->name, text) < 0)
                log_oom();
}

static void *keep_previous_instance(Manager *m, const InstanceKind *k, void **list, size_t n_list, size_t i) {
        for (size_t j = 0; j < n_list; j++) {
                void *found = list[j];
                if (!found || !streq(k->component(found)->name, m->registry->components[i]->name))
                        continue;
                list[j] = NULL;
                component_unref(m->registry->components[i]);
                m->registry->components[i] = component_ref(k->component(found));
                return found;
        }
        return NULL;
}

/*
 * Why a driver refused c, at the line of the metadata item its message names ("metadata field
 * 'connectionString': ...", "url: ...") when there is one, else at the document's start: in a
 * long component the offending line, not the first (issue 14 part 6).
 */
static void conf_error_for_open(ConfError *e, const Component *c, const char *what, const char *msg) {
        const ComponentItem *at = NULL;
        for (size_t i = 0; i < c->n_items && !at; i++) {
                const char *name = c->items[i].name;
                size_t n = strlen(name);
                _cleanup_free_ char *quoted = NULL;
                if (n == 0 || !c->items[i].line)
                        continue;
                if ((strneq(msg, name, n) && (msg[n] == ':' || msg[n] == ' ')) ||
                    (asprintf(&quoted, "'%s'", name) >= 0 && strstr(msg, quoted)))
                        at = &c->items[i];
        }
        _cleanup_free_ char *field = NULL;
        if (at && asprintf(&field, "spec.metadata.%s", at->name) < 0)
                field = NULL;
        conf_error_set(e, c->file, at ? at->line : c->line, field ?: "spec.metadata", "%s '%s' (%s): %s", what,
                       c->name, c->type, msg);
}

/* A component that could not be loaded stays listed with why (admin API, mooringctl), and out of
 * the Dapr metadata API, as in Dapr. */
static void note_load_error(Component *c, const ConfError *e) {
        free(c->load_error);
        c->load_error = conf_error_format(e);
}

/* One open instance per component of the kind: unchanged components keep theirs (and what is
 * in flight on it), removed or changed ones are closed, new ones opened. */
static int sync_instances(Manager *m, const InstanceKind *k, void ***list, size_t *n_list) {
        void **n = calloc(m->registry->n_components + 1, sizeof(void *));
        size_t kept = 0;

        if (!n)
                return log_oom();
        for (size_t i = 0; i < m->registry->n_components; i++) {
                Component *c = m->registry->components[i];
                void *found = NULL;
                _cleanup_free_ char *msg = NULL;

                if (!component_is_category(c, k->category))
                        continue;
                for (size_t j = 0; j < *n_list; j++)
                        if ((*list)[j] && k->component((*list)[j]) == c) {
                                found = (*list)[j];
                                (*list)[j] = NULL;
                        }
                if (found) {
                        n[kept++] = found;
                        continue;
                }
                ConfError re = {};
                int r = component_resolve(c, resolve_secret, m->registry, &re);
                if (r == -ENOMEM) {
                        free(n);
                        return log_oom();
                }
                if (r < 0) {
                        found = keep_previous_instance(m, k, *list, *n_list, i);
                        if (found) {
                                registry_log_conf_kept(m->registry, &re);
                                n[kept++] = found;
                        } else {
                                registry_log_conf_error(m->registry, &re);
                                note_load_error(c, &re);
                                note_component_error(m, c, &re);
                        }
                        conf_error_done(&re);
                        continue;
                }
                r = k->open(m->registry, c, &found, &msg);
                if (r == -ENOMEM) {
                        free(n);
                        return log_oom();
                }
                if (r < 0) {
                        ConfError e = {};
                        conf_error_for_open(&e, c, k->what, msg ?: strerror(-r));
                        found = keep_previous_instance(m, k, *list, *n_list, i);
                        if (found) {
                                registry_log_conf_kept(m->registry, &e);
                                n[kept++] = found;
                        } else {
                                registry_log_conf_error(m->registry, &e);
                                note_load_error(c, &e);
                                note_component_error(m, c, &e);
                        }
                        conf_error_done(&e);
                        continue;
                }
                /* only now, with the driver open, is the component loaded */
                log_struct(LOG_INFO, 0, NULL, c->name, "Component loaded: %s %s from %s:%u (%s ready).", c->type,
                           c->version, c->file, c->line, k->what);
                warn_unused_metadata(c, k);
                n[kept++] = found;
        }
        for (size_t j = 0; j < *n_list; j++)
                if ((*list)[j])
                        k->close(m->registry, (*list)[j]);
        free(*list);
        *list = n;
        *n_list = kept;
        return 0;
}

/*
 * The components of apps' ResourcesPath= directories (mooringctl run --resources-path, Dapr's
 * resources for one app): each directory is read once, and its components serve only the apps
 * that named it, whatever scopes the files give. A name the host already serves (its own files, a
 * built-in default, another app's resources) keeps the host's component: a warning says so.
 */
static int load_app_resources(ComponentLoad *cl) {
        static const char *const suffixes[] = { ".yaml", ".yml", NULL };
        Registry *reg = cl->m->registry;
        _cleanup_strv_free_ char **dirs = NULL;
        int r;

        for (size_t i = 0; i < reg->n_apps; i++)
                for (char **p = reg->apps[i]->config->resources_paths; p && *p; p++)
                        if (!strv_contains(dirs, *p) && strv_extend(&dirs, *p) < 0)
                                return -ENOMEM;
        cl->app_resources = true;
        for (char **d = dirs; d && *d; d++) {
                _cleanup_strv_free_ char **scopes = NULL, **files = NULL;

                for (size_t i = 0; i < reg->n_apps; i++)
                        if (strv_contains(reg->apps[i]->config->resources_paths, *d) &&
                            strv_extend(&scopes, reg->apps[i]->config->id) < 0)
                                return -ENOMEM;
                r = dir_list_sorted(*d, suffixes, &files);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        ConfError e = {};
                        conf_error_set(&e, *d, 0, NULL, "cannot read the resources directory of app '%s': %s",
                                       scopes[0], strerror(-r));
                        registry_log_conf_error(reg, &e);
                        conf_error_done(&e);
                        continue;
                }
                for (char **f = files; f && *f; f++) {
                        _cleanup_free_ char *text = NULL;
                        size_t len, start = cl->n;

                        r = read_full_file(*f, COMPONENT_FILE_MAX, &text, &len);
                        if (r < 0) {
                                ConfError e = {};
                                conf_error_set(&e, *f, 0, NULL, "cannot read: %s", strerror(-r));
                                registry_log_conf_error(reg, &e);
                                conf_error_done(&e);
                                continue;
                        }
                        r = component_parse(*f, text, len, on_component, on_component_error, cl);
                        if (r == -ENOMEM || cl->oom)
                                return -ENOMEM;
                        for (size_t i = start; i < cl->n; i++) {
                                char **copy = NULL;
                                if (strv_copy(scopes, &copy) < 0)
                                        return -ENOMEM;
                                strv_free(cl->list[i]->scopes);
                                cl->list[i]->scopes = copy;
                        }
                }
        }
        return 0;
}

static int reload_components(Manager *m) {
        static const char *const suffixes[] = { ".yaml", ".yml", NULL };
        _cleanup_strv_free_ char **files = NULL;
        _cleanup_free_ char *dir = NULL;
        ComponentLoad cl = {
                .m = m,
                .keep = { .old = (void *const *) m->registry->components, .n_old = m->registry->n_components,
                          .file_of = component_file_of, .name_of = component_name_of },
        };
        bool changed;
        int r;

        if (asprintf(&dir, "%s/components", m->config_dir) < 0)
                return -ENOMEM;
        r = dir_list_sorted(dir, suffixes, &files);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", dir);
        for (char **f = files; f && *f; f++) {
                _cleanup_free_ char *text = NULL;
                size_t len;
                cl.file_start = cl.n;
                conf_keep_begin_file(&cl.keep, *f);
                r = read_full_file(*f, COMPONENT_FILE_MAX, &text, &len);
                if (r < 0) {
                        ConfError e = {};
                        conf_error_set(&e, *f, 0, NULL, "cannot read: %s", strerror(-r));
                        on_component_error_named(&e, NULL, &cl);
                        conf_error_done(&e);
                        r = 0;
                } else
                        r = component_parse_named(*f, text, len, on_component, on_component_error_named, &cl);
                if (r == -ENOMEM || cl.oom)
                        break;
                if (cl.keep.whole) /* the file's last good version stays whole: drop what was read now */
                        while (cl.n > cl.file_start)
                                component_unref(cl.list[--cl.n]);
                conf_keep_end_file(&cl.keep, component_has_new, component_keep, &cl);
                if (cl.oom)
                        break;
        }
        conf_keep_done(&cl.keep);
        /* the defaults stand in for what the configuration lacks; an app's own resources come after
         * them and cannot take their names (see load_app_resources) */
        if (r >= 0 && !cl.oom)
                r = add_default_components(&cl);
        if (r >= 0 && !cl.oom)
                r = load_app_resources(&cl);
        if (r == -ENOMEM || cl.oom) {
                for (size_t i = 0; i < cl.n; i++)
                        component_unref(cl.list[i]);
                free(cl.list);
                return log_oom();
        }

        /* Keep the running object of every unchanged component (drivers will hang off it). */
        changed = cl.n != m->registry->n_components;
        for (size_t i = 0; i < cl.n; i++) {
                bool kept = false;
                for (size_t j = 0; j < m->registry->n_components; j++)
                        if (component_equal(cl.list[i], m->registry->components[j])) {
                                component_unref(cl.list[i]);
                                cl.list[i] = component_ref(m->registry->components[j]);
                                kept = true;
                                break;
                        }
                if (!kept) {
                        changed = true;
                        /* state stores and brokers are "loaded" once their driver opened (sync_instances) */
                        if (!component_is_category(cl.list[i], state_kind.category) &&
                            !component_is_category(cl.list[i], pubsub_kind.category))
                                log_struct(LOG_INFO, 0, NULL, cl.list[i]->name, "Component loaded: %s %s from %s:%u.",
                                           cl.list[i]->type, cl.list[i]->version, cl.list[i]->file,
                                           cl.list[i]->line);
                }
        }
        for (size_t j = 0; j < m->registry->n_components; j++) {
                bool still = false, renewed = false;
                for (size_t i = 0; i < cl.n; i++) {
                        still = still || cl.list[i] == m->registry->components[j];
                        renewed = renewed || streq(cl.list[i]->name, m->registry->components[j]->name);
                }
                /* A changed one was just logged as loaded; only a name that is gone is "removed". */
                if (!still && !renewed)
                        log_struct(LOG_INFO, 0, NULL, m->registry->components[j]->name, "Component removed.");
                component_unref(m->registry->components[j]);
        }
        free(m->registry->components);
        m->registry->components = cl.list;
        m->registry->n_components = cl.n;
        m->registry->component_errors = strv_free(m->registry->component_errors);
        /* Secret stores first: the others' secretKeyRef resolve through them. */
        r = sync_instances(m, &secret_kind, (void ***) &m->registry->secret_stores, &m->registry->n_secret_stores);
        if (r >= 0)
                r = sync_instances(m, &state_kind, (void ***) &m->registry->state_stores,
                                   &m->registry->n_state_stores);
        if (r >= 0)
                r = sync_instances(m, &lock_kind, (void ***) &m->registry->lock_stores, &m->registry->n_lock_stores);
        if (r >= 0)
                r = sync_instances(m, &config_kind, (void ***) &m->registry->config_stores,
                                   &m->registry->n_config_stores);
        if (r >= 0) {
                /* Subscriptions hang off brokers: stop them, sync, start them again (pubsub_reload). */
                pubsub_stop_all(m->registry);
                r = sync_instances(m, &pubsub_kind, (void ***) &m->registry->pubsubs, &m->registry->n_pubsubs);
        }
        /* A removed or changed binding stops its readers as it closes; bindings_reload() starts new ones. */
        if (r >= 0)
                r = sync_instances(m, &binding_kind, (void ***) &m->registry->bindings, &m->registry->n_bindings);
        actors_sync_store(m->registry);
        if (changed)
                runtime_bus_emit_components_changed(m);
        return r;
}

int manager_reload_components(Manager *m) {
        int r = reload_components(m);
        if (r >= 0)
                r = pubsub_reload(m->registry);
        return r < 0 ? log_oom() : 0;
}

/* ---- lifecycle ---- */

static int apply_settings(Manager *m) {
        ConfError e = {};
        _cleanup_free_ char *path = NULL;
        int r;

        if (asprintf(&path, "%s/mooringd.conf", m->config_dir) < 0)
                return -ENOMEM;
        r = settings_load(&m->settings, path, &e);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                registry_log_conf_error(m->registry, &e); /* the previous settings stay */
        conf_error_done(&e);
        if (m->cli_log_level < 0 && m->settings.log_level >= 0)
                log_set_max_level(m->settings.log_level);
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        if (si->ssi_signo == SIGHUP)
                (void) manager_reload(m);
        else
                manager_stop(m);
        return 0;
}

/* A random id made once per state directory: consumer names that survive restarts. */
static int load_instance_id(Manager *m) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t len;
        uint8_t raw[8];
        char id[17];

        if (asprintf(&path, "%s/instance-id", m->state_dir) < 0)
                return -ENOMEM;
        if (read_full_file(path, 64, &text, &len) >= 0 && len >= 16 && strspn(text, "0123456789abcdef") >= 16) {
                m->registry->instance_id = strndup(text, 16);
                return m->registry->instance_id ? 0 : -ENOMEM;
        }
        if (getrandom(raw, sizeof raw, 0) != (ssize_t) sizeof raw)
                return -errno;
        for (size_t i = 0; i < sizeof raw; i++)
                snprintf(id + 2 * i, 3, "%02x", raw[i]);
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        FILE *f = fopen(tmp, "we");
        if (!f)
                return -errno;
        fprintf(f, "%s\n", id);
        if (fflush(f) != 0 || fsync(fileno(f)) < 0 || fclose(f) != 0 || rename(tmp, path) < 0)
                return -errno;
        m->registry->instance_id = strdup(id);
        return m->registry->instance_id ? 0 : -ENOMEM;
}

int manager_start(Manager *m) {
        int r;

        m->state = MANAGER_STARTING;
        /* main() sets the directories after manager_new(); the registry borrows them from here on. */
        m->registry->config_dir = m->config_dir;
        m->registry->state_dir = m->state_dir;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &m->start_usec);
        (void) sd_notify(false, "STATUS=Starting...");

        r = collect_activated(m);
        if (r < 0)
                return log_error_errno(r, "Failed to receive sockets from systemd: %m");
        r = mkdir_p_mode(m->runtime_dir, 0755);
        if (r >= 0)
                r = mkdir_p_mode(m->state_dir, 0750);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s or %s: %m", m->runtime_dir, m->state_dir);

        r = apply_settings(m);
        if (r < 0)
                return log_oom();
        r = load_instance_id(m);
        if (r < 0)
                return log_error_errno(r, "Failed to read or create %s/instance-id: %m", m->state_dir);

        if (sd_event_add_signal(m->event, NULL, SIGTERM, on_signal, m) < 0 ||
            sd_event_add_signal(m->event, NULL, SIGINT, on_signal, m) < 0 ||
            sd_event_add_signal(m->event, NULL, SIGHUP, on_signal, m) < 0)
                return log_error_errno(ENOMEM, "Failed to install signal handlers.");
        /* Sends WATCHDOG=1 on time whenever $WATCHDOG_USEC asks for it. */
        (void) sd_event_set_watchdog(m->event, true);

        m->http = http_server_new(m, m->event);
        m->grpc = grpc_server_new(m, m->event);
        m->transport = transport_new(m->event);
        m->registry->transport = m->transport;
        if (!m->http || !m->grpc || !m->transport)
                return log_error_errno(ENOMEM, "Failed to set up the HTTP front-end.");
        r = open_api_listener(m);
        if (r >= 0)
                r = open_admin_port(m, "metrics", m->settings.metrics_port, LISTENER_METRICS, &m->metrics_listener);
        if (r >= 0)
                r = open_admin_port(m, "dashboard", m->settings.dashboard_port, LISTENER_DASHBOARD,
                                    &m->dashboard_listener);
        if (r >= 0)
                r = manager_peer_start(m);
        if (r < 0)
                return r;

        r = reload_apps(m);
        if (r < 0)
                return r;
        registry_reload_configurations(m->registry);
        trace_exporter_configure(&m->tracer, m->event, registry_host_configuration(m->registry));
        r = reload_components(m);
        if (r < 0)
                return r;
        r = registry_reload_resiliency(m->registry);
        if (r >= 0)
                r = pubsub_reload(m->registry);
        if (r < 0)
                return log_oom();
        (void) bindings_reload(m->registry);
        r = manager_membership_start(m);
        if (r < 0)
                return r;

        if (m->bus_mode != BUS_MODE_NONE) {
                r = runtime_bus_setup(m);
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < m->n_activated; i++)
                log_warning("Socket '%s' passed by systemd matches no app, ignoring.", m->activated[i].name);

        m->state = MANAGER_RUNNING;
        runtime_bus_emit_state_changed(m);
        notify_status(m, "READY=1\n");
        log_info("mooringd %s ready: %zu apps, %zu components, API socket %s.", PACKAGE_VERSION, m->registry->n_apps,
                 m->registry->n_components, m->api_socket_path);
        return 0;
}

int manager_reload(Manager *m) {
        int r;
        if (m->state != MANAGER_RUNNING)
                return -EBUSY;
        m->state = MANAGER_RELOADING;
        m->registry->n_config_errors = 0;
        m->registry->n_config_kept = 0;
        runtime_bus_emit_state_changed(m);
        notify_status(m, "RELOADING=1\n");
        log_info("Reloading configuration from %s.", m->config_dir);

        _cleanup_free_ char *old_sock = m->settings.api_socket ? strdup(m->settings.api_socket) : NULL;
        r = apply_settings(m);
        if (r >= 0 && !streq_ptr(old_sock, m->settings.api_socket))
                log_warning("ApiSocket= changed; it takes effect at the next start.");
        if (r >= 0)
                manager_peer_reload(m);
        if (r >= 0)
                r = reload_apps(m);
        if (r >= 0) {
                registry_reload_configurations(m->registry);
                trace_exporter_configure(&m->tracer, m->event, registry_host_configuration(m->registry));
        }
        if (r >= 0)
                r = reload_components(m);
        if (r >= 0)
                r = registry_reload_resiliency(m->registry);
        if (r >= 0)
                r = pubsub_reload(m->registry);
        if (r >= 0)
                (void) bindings_reload(m->registry);

        m->state = MANAGER_RUNNING;
        runtime_bus_emit_state_changed(m);
        notify_status(m, "READY=1\n");
        if (m->registry->n_config_kept > 0)
                log_warning("Reload done: %zu apps, %zu components, %u configuration errors; %u broken files or "
                            "documents kept their previous version.", m->registry->n_apps, m->registry->n_components,
                            m->registry->n_config_errors, m->registry->n_config_kept);
        else
                log_info("Reload done: %zu apps, %zu components, %u configuration errors.", m->registry->n_apps,
                         m->registry->n_components, m->registry->n_config_errors);
        return r;
}

static void on_traces_flushed(void *userdata) {
        Manager *m = userdata;
        (void) sd_event_exit(m->event, 0);
}

/* The end of a graceful stop: the spans still queued go out first (bounded), then the loop ends. */
static void manager_exit(Manager *m) {
        if (m->exiting)
                return;
        m->exiting = true;
        trace_exporter_flush(m->tracer, on_traces_flushed, m);
}

static int on_drain_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        log_warning("Drain timeout: %u requests still in flight, closing them.",
                    http_server_requests_in_flight(m->http));
        manager_exit(m);
        return 0;
}

void manager_on_http_drained(Manager *m) {
        if (m->state == MANAGER_STOPPING) {
                log_info("All requests done, stopping.");
                manager_exit(m);
        }
}

void manager_stop(Manager *m) {
        if (m->state == MANAGER_STOPPING)
                return;
        m->state = MANAGER_STOPPING;
        m->registry->stopping = true;
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping: draining requests...");
        runtime_bus_emit_state_changed(m);
        if (!m->http) {
                (void) sd_event_exit(m->event, 0);
                return;
        }
        http_server_start_drain(m->http);
        grpc_server_start_drain(m->grpc);
        unsigned n = http_server_requests_in_flight(m->http);
        if (n == 0) {
                log_info("Stopping, no requests in flight.");
                manager_exit(m);
                return;
        }
        log_info("Stopping, draining %u requests for at most %llus.", n,
                 (unsigned long long) (m->settings.drain_usec / 1000000));
        if (sd_event_add_time_relative(m->event, &m->drain_timer, CLOCK_MONOTONIC, m->settings.drain_usec, 0,
                                       on_drain_timeout, m) < 0)
                (void) sd_event_exit(m->event, 0);
}
