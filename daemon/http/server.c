/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See server.h.
 *
 * MHD runs in "external epoll" mode: its epoll fd sits in sd-event as one io
 * source and MHD_run() is called when it fires; MHD's next timeout arms one
 * time source. We own the listening sockets: on accept we build a Caller and
 * hand the fd to MHD_add_connection(); MHD's connection-start notification
 * (called synchronously from MHD_add_connection in this mode) attaches the
 * Caller as the connection's socket context, where handlers find it.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include "../core/app.h"
#include "../core/identity.h"
#include "../manager.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "handlers.h"
#include "router.h"
#include "server.h"

struct HttpServer {
        Manager *manager;           /* back-reference */
        sd_event *event;
        struct MHD_Daemon *mhd;
        sd_event_source *mhd_io;
        sd_event_source *mhd_timer;
        sd_event_source *mhd_kick;  /* runs MHD once after a resume */
        struct MHD_Response *empty; /* shared body-less response (204s): no allocation per reply */
        Caller *pending;            /* Caller for the connection being added */
        HttpListener *listeners;    /* list, for drain */
        HttpRequest *suspended;     /* list of requests waiting for an answer */
        HttpStream *streams;        /* list of streamed replies whose request is alive */
        unsigned n_requests;
        bool draining;
};

struct HttpListener {
        HttpServer *server;
        ListenerKind kind;
        sd_event_source *backoff;   /* re-enables accepting after running out of fds */
        App *app;                   /* ref; NULL for LISTENER_API */
        int fd;
        sd_event_source *source;
        char *unlink_path;
        HttpListener *next, *prev;
};

struct HttpRequest {
        HttpServer *server;
        struct MHD_Connection *conn;
        const Caller *caller;       /* borrowed from the connection */
        const char *method;         /* borrowed from MHD, valid for the request */
        const char *url;
        char *raw_uri;              /* as on the request line, query string included */
        char *body;
        size_t body_len, body_cap;
        uint64_t expected_len;      /* Content-Length, when given and acceptable */
        bool too_large;
        bool started;               /* handler ran */
        bool counted;               /* included in n_requests */
        bool suspended;
        struct MHD_Response *response; /* reply waiting to be queued */
        bool response_shared;       /* response is the server's, not ours to destroy */
        unsigned status;
        HttpStream *stream;         /* streamed reply, ref */
        HttpRequestEndFn on_end;    /* the request is over (answered or connection gone) */
        void *on_end_userdata;
        HttpRequest *susp_next, *susp_prev;
};

/*
 * A streamed reply body: a bounded buffer between a producer (the app
 * channel) and MHD's content reader. Referenced by the request and by the
 * MHD response, whichever goes last frees it. When the buffer is empty the
 * reader suspends the connection; a write resumes it. When it is full the
 * producer is told "not now" and gets drain() once half of it has been sent.
 */
struct HttpStream {
        unsigned n_ref;
        HttpServer *server;
        struct MHD_Connection *conn; /* NULL once the request is over */
        char *buf;
        size_t off, len;            /* pending bytes: buf[off .. off+len) */
        bool ended, failed, discard;
        bool reader_waiting;        /* the reader suspended the connection for want of data */
        bool producer_blocked;
        HttpStreamDrainFn drain;
        void *drain_userdata;
        HttpStream *next, *prev;
};

#define STREAM_BUFFER_MAX (256U * 1024)

static void mhd_schedule(HttpServer *s);
static void stream_detach(HttpStream *st);
static void stream_wake_reader(HttpStream *st);

/* ---- callers ---- */

static Caller *caller_free(Caller *c) {
        if (!c)
                return NULL;
        app_unref(c->app);
        free(c->unit);
        free(c);
        return NULL;
}

static Caller *caller_new(const HttpListener *l, int fd) {
        Caller *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->via = l->kind;
        if (l->kind != LISTENER_API) {
                c->app = app_ref(l->app);
                return c;
        }

        socklen_t len = sizeof c->cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0 || c->cred.pid <= 0)
                return c; /* anonymous */
        c->has_cred = true;

        /* The caller's unit decides its app: mooring-app@<id>.service. The cgroup is read at
         * accept time, while the peer that connected is still the one that owns the pid. */
        char *unit = NULL;
        if (sd_pid_get_unit(c->cred.pid, &unit) < 0 || !unit || !identity_app_from_unit(unit, NULL)) {
                free(unit);
                unit = NULL;
                (void) sd_pid_get_user_unit(c->cred.pid, &unit);
        }
        c->unit = unit;
        if (unit) {
                _cleanup_free_ char *id = NULL;
                if (identity_app_from_unit(unit, &id) && id)
                        c->app = app_ref(manager_find_app(l->server->manager, id));
        }
        return c;
}

/* ---- MHD glue ---- */

_printf_(2, 0) static void mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        (void) vsnprintf(buf, sizeof buf, fmt, ap);
        buf[strcspn(buf, "\n")] = 0;
        /* MHD tries TCP socket options on Unix sockets too; those failures mean nothing. */
        if (strstr(buf, "TCP_NODELAY") || strstr(buf, "TCP_CORK") || strstr(buf, "push the data"))
                return;
        log_debug("libmicrohttpd: %s", buf);
}

/* Leave the path escaped: the router matches escaped paths and unescapes parameters
 * itself, so "%2F" inside a key survives. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s) {
        return strlen(s);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
        HttpServer *s = cls;
        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                *socket_context = TAKE_PTR(s->pending);
        } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
                caller_free(*socket_context);
                *socket_context = NULL;
        }
}

static void request_free(HttpRequest *r) {
        if (!r)
                return;
        if (r->response && !r->response_shared)
                MHD_destroy_response(r->response);
        free(r->raw_uri);
        free(r->body);
        free(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
        HttpServer *s = cls;
        HttpRequest *r = *con_cls;
        if (!r)
                return;
        *con_cls = NULL;
        if (r->on_end) {
                HttpRequestEndFn fn = r->on_end;
                r->on_end = NULL;
                fn(r, r->on_end_userdata);
        }
        if (r->stream)
                stream_detach(TAKE_PTR(r->stream));
        if (r->counted) {
                s->n_requests--;
                if (s->draining && s->n_requests == 0)
                        manager_on_http_drained(s->manager);
        }
        request_free(r);
}

static int send_queued(HttpRequest *r) {
        struct MHD_Response *resp = TAKE_PTR(r->response);
        if (r->server->draining && !r->response_shared)
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        enum MHD_Result ok = MHD_queue_response(r->conn, r->status, resp); /* MHD takes a ref */
        if (!r->response_shared)
                MHD_destroy_response(resp);
        return ok == MHD_YES ? 0 : -EIO;
}

/* An app's TCP port is reachable by anything on the host: with a token configured,
 * the token is what makes the caller that app. */
static bool token_ok(HttpRequest *r, RouteFlags flags) {
        const Caller *c = r->caller;
        return c->via != LISTENER_APP_TCP || !c->app || !c->app->config->api_token || (flags & ROUTE_NO_TOKEN) ||
               app_token_matches(c->app, http_request_header(r, "dapr-api-token"));
}

static int dispatch(HttpRequest *r) {
        Manager *m = r->server->manager;
        const Caller *c = r->caller;
        RouteMatch match = {};
        int k;

        if (r->too_large)
                return http_reply_error(r, DAPR_ERR_BODY_TOO_LARGE,
                                        "request body larger than the limit of %llu bytes",
                                        (unsigned long long) manager_max_body(m));

        k = router_match(http_routes, http_routes_n, r->method, r->url, &match);
        if (k < 0 && k != -ENOMEM)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "malformed request path");
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_INTERNAL, "out of memory");
        if (k == 0 || ((match.route->flags & ROUTE_ADMIN) && c->via != LISTENER_API)) {
                route_match_done(&match);
                /* Anything unrouted is service invocation when a header names the target app. */
                if (k == 0 && !token_ok(r, 0))
                        return http_reply(r, 401, "text/plain", "invalid api token", strlen("invalid api token"));
                if (k == 0 && (k = http_invoke_by_header(r)) != 0) {
                        if (k < 0 && !r->response && !r->suspended)
                                return http_reply_error(r, DAPR_ERR_INTERNAL, "internal error: %s", strerror(-k));
                        return 0;
                }
                /* What Dapr answers for anything unrouted: it falls through to service
                 * invocation, which finds no target app. */
                return http_reply_error(r, DAPR_ERR_DIRECT_INVOKE_NOT_FOUND,
                                        "failed getting app id either from the URL path or the header "
                                        "dapr-app-id (no route for %s %s)", r->method, r->url);
        }

        if (!token_ok(r, match.route->flags)) {
                route_match_done(&match);
                return http_reply(r, 401, "text/plain", "invalid api token", strlen("invalid api token"));
        }

        k = match.route->handler(r, &match);
        route_match_done(&match);
        if (k < 0 && !r->response && !r->suspended)
                return http_reply_error(r, DAPR_ERR_INTERNAL, "internal error: %s", strerror(-k));
        return 0;
}

/* MHD's URI logger is the one place that sees the request target before MHD splits off
 * the query string: the request starts here, so invoke can pass the query on verbatim. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
        HttpRequest *r = calloc(1, sizeof *r);
        if (!r)
                return NULL;
        r->server = cls;
        r->raw_uri = strdup(uri ?: "");
        if (!r->raw_uri) {
                free(r);
                return NULL;
        }
        return r;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls) {
        HttpServer *s = cls;
        HttpRequest *r = *con_cls;

        if (!r)
                return MHD_NO; /* on_uri ran out of memory */
        if (!r->conn) {
                const union MHD_ConnectionInfo *ci =
                        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
                if (!ci || !ci->socket_context)
                        return MHD_NO; /* a connection we did not add: drop it */
                r->conn = conn;
                r->caller = ci->socket_context;
                r->method = method;
                r->url = url;
                /* In flight from its headers on: a drain lets a body still arriving finish. */
                r->counted = true;
                s->n_requests++;

                const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                             MHD_HTTP_HEADER_CONTENT_LENGTH);
                if (cl) {
                        char *e;
                        errno = 0;
                        unsigned long long n = strtoull(cl, &e, 10);
                        if (errno == 0 && *e == 0 && n > manager_max_body(s->manager))
                                r->too_large = true;
                        else if (errno == 0 && *e == 0)
                                r->expected_len = n; /* one allocation of the right size */
                }
                if (!r->too_large)
                        return MHD_YES;
                /* Answer before reading the body; MHD then closes the connection. */
        }

        if (r->response)
                return send_queued(r) < 0 ? MHD_NO : MHD_YES;
        if (r->suspended || r->started)
                return MHD_YES;

        if (*upload_data_size > 0 && r->too_large) {
                /* MHD cannot answer in the middle of a body: swallow the rest (nothing is
                 * stored), then answer 413. */
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;
                if (r->body_len + n > manager_max_body(s->manager)) {
                        r->too_large = true;
                        free(r->body);
                        r->body = NULL;
                        r->body_len = r->body_cap = 0;
                } else {
                        if (r->body_len + n + 1 > r->body_cap) {
                                size_t cap = r->body_cap ? r->body_cap
                                                         : MAX((size_t) r->expected_len + 1, (size_t) 4096);
                                while (cap < r->body_len + n + 1)
                                        cap *= 2;
                                char *b = realloc(r->body, cap);
                                if (!b)
                                        return MHD_NO;
                                r->body = b;
                                r->body_cap = cap;
                        }
                        memcpy(r->body + r->body_len, upload_data, n);
                        r->body_len += n;
                        r->body[r->body_len] = 0;
                }
                *upload_data_size = 0;
                return MHD_YES;
        }

        r->started = true;
        (void) dispatch(r);
        if (r->response)
                return send_queued(r) < 0 ? MHD_NO : MHD_YES;
        return MHD_YES; /* suspended: resumed by the reply */
}

static int on_mhd_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        HttpServer *s = userdata;
        (void) MHD_run(s->mhd);
        mhd_schedule(s);
        return 0;
}

static int on_mhd_kick(sd_event_source *src, void *userdata) {
        HttpServer *s = userdata;
        MHD_UNSIGNED_LONG_LONG ms;

        /* A resumed connection needs more than one pass: one to move it back and send the
         * reply, one to finish the request and put the socket back into MHD's epoll set.
         * Run while MHD says there is work due now, a bounded number of times. */
        for (unsigned i = 0; i < 8; i++) {
                (void) MHD_run(s->mhd);
                if (MHD_get_timeout(s->mhd, &ms) != MHD_YES || ms > 0)
                        break;
        }
        mhd_schedule(s);
        return 0;
}

static int on_mhd_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpServer *s = userdata;
        (void) MHD_run(s->mhd);
        mhd_schedule(s);
        return 0;
}

static void mhd_schedule(HttpServer *s) {
        MHD_UNSIGNED_LONG_LONG ms;
        uint64_t now;

        if (MHD_get_timeout(s->mhd, &ms) != MHD_YES) {
                (void) sd_event_source_set_enabled(s->mhd_timer, SD_EVENT_OFF);
                return;
        }
        if (ms == 0) {
                /* Work is due now (a connection still has buffered input, e.g. a large upload
                 * read in MHD-sized pieces): run again from the loop, not after a timer tick. */
                (void) sd_event_source_set_enabled(s->mhd_kick, SD_EVENT_ONESHOT);
                return;
        }
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        (void) sd_event_source_set_time(s->mhd_timer, now + ms * 1000);
        (void) sd_event_source_set_enabled(s->mhd_timer, SD_EVENT_ONESHOT);
}

HttpServer *http_server_new(Manager *m, sd_event *e) {
        HttpServer *s = calloc(1, sizeof *s);
        const union MHD_DaemonInfo *info;

        if (!s)
                return NULL;
        s->manager = m;
        s->event = sd_event_ref(e);
        s->mhd = MHD_start_daemon(
                MHD_USE_EPOLL | MHD_USE_TURBO | MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME |
                        MHD_USE_ERROR_LOG,
                0, NULL, NULL, on_access, s,
                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, s,
                MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) 120,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned) 10000,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 32 * 1024,
                MHD_OPTION_END);
        if (!s->mhd)
                return http_server_free(s);
        s->empty = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
        if (!s->empty)
                return http_server_free(s);
        info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info)
                return http_server_free(s);
        if (sd_event_add_io(e, &s->mhd_io, info->epoll_fd, EPOLLIN, on_mhd_io, s) < 0 ||
            /* accuracy 1 us: 0 would mean sd-event's default of 250 ms */
            sd_event_add_time(e, &s->mhd_timer, CLOCK_MONOTONIC, UINT64_MAX, 1, on_mhd_timer, s) < 0 ||
            sd_event_add_defer(e, &s->mhd_kick, on_mhd_kick, s) < 0)
                return http_server_free(s);
        (void) sd_event_source_set_enabled(s->mhd_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(s->mhd_kick, SD_EVENT_OFF);
        return s;
}

HttpServer *http_server_free(HttpServer *s) {
        if (!s)
                return NULL;
        while (s->listeners)
                http_listener_free(s->listeners);
        sd_event_source_disable_unref(s->mhd_io);
        sd_event_source_disable_unref(s->mhd_timer);
        sd_event_source_disable_unref(s->mhd_kick);
        /* MHD refuses to stop with suspended connections: whatever still waits (nothing
         * should, the Manager ends outgoing requests first) is answered now. */
        while (s->suspended)
                (void) http_reply_error(s->suspended, DAPR_ERR_INTERNAL, "mooringd is stopping");
        for (HttpStream *st = s->streams; st; st = st->next) {
                st->ended = st->failed = true;
                stream_wake_reader(st);
        }
        if (s->mhd)
                MHD_stop_daemon(s->mhd); /* closes connections: completion + close callbacks run */
        if (s->empty)
                MHD_destroy_response(s->empty);
        caller_free(s->pending);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

unsigned http_server_requests_in_flight(const HttpServer *s) {
        return s->n_requests;
}

void http_server_start_drain(HttpServer *s) {
        s->draining = true;
        for (HttpListener *l = s->listeners; l; l = l->next)
                (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
}

/* ---- listeners ---- */

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        HttpListener *l = userdata;
        HttpServer *s = l->server;

        /* Take what is queued, bounded so one busy listener cannot starve the loop. */
        for (unsigned i = 0; i < 64; i++) {
                struct sockaddr_storage sa;
                socklen_t salen = sizeof sa;
                int cfd = accept4(fd, (struct sockaddr *) &sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* The connection stays queued and the socket readable: without a
                                 * pause we would spin. Stop accepting here for a moment. */
                                log_warning_errno(errno, "Failed to accept connection: %m; pausing this "
                                                  "listener for 100ms");
                                (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
                                (void) sd_event_source_set_time_relative(l->backoff, 100 * 1000);
                                (void) sd_event_source_set_enabled(l->backoff, SD_EVENT_ONESHOT);
                        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warning_errno(errno, "Failed to accept connection: %m");
                        break;
                }
                if (s->draining) {
                        safe_close(cfd);
                        continue;
                }
                caller_free(s->pending);
                s->pending = caller_new(l, cfd);
                if (!s->pending) {
                        log_oom();
                        safe_close(cfd);
                        continue;
                }
                /* MHD owns cfd from here, and closes it if it fails. */
                if (MHD_add_connection(s->mhd, cfd, (const struct sockaddr *) &sa, salen) != MHD_YES)
                        log_debug("libmicrohttpd refused a connection");
                if (s->pending) {
                        /* Not attached: MHD did not start the connection. */
                        s->pending = caller_free(s->pending);
                }
        }
        (void) MHD_run(s->mhd);
        mhd_schedule(s);
        return 0;
}

static int on_accept_backoff(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpListener *l = userdata;
        if (!l->server->draining)
                (void) sd_event_source_set_enabled(l->source, SD_EVENT_ON);
        return 0;
}

int http_listener_new(HttpServer *s, ListenerKind kind, App *app, int fd_take, const char *unlink_path,
                      HttpListener **ret) {
        _cleanup_close_ int fd = fd_take;
        HttpListener *l = calloc(1, sizeof *l);
        int r;

        if (!l)
                return -ENOMEM;
        *l = (HttpListener){ .server = s, .kind = kind, .app = app_ref(app), .fd = TAKE_FD(fd) };
        if (unlink_path) {
                l->unlink_path = strdup(unlink_path);
                if (!l->unlink_path) {
                        http_listener_free(l);
                        return -ENOMEM;
                }
        }
        r = sd_event_add_io(s->event, &l->source, l->fd, EPOLLIN, on_accept, l);
        if (r >= 0)
                r = sd_event_add_time(s->event, &l->backoff, CLOCK_MONOTONIC, UINT64_MAX, 0, on_accept_backoff, l);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->backoff, SD_EVENT_OFF);
        if (r < 0) {
                http_listener_free(l);
                return r;
        }
        if (s->draining)
                (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
        l->next = s->listeners;
        if (l->next)
                l->next->prev = l;
        s->listeners = l;
        *ret = l;
        return 0;
}

HttpListener *http_listener_free(HttpListener *l) {
        if (!l)
                return NULL;
        HttpServer *s = l->server;
        if (l->prev)
                l->prev->next = l->next;
        else if (s->listeners == l)
                s->listeners = l->next;
        if (l->next)
                l->next->prev = l->prev;
        sd_event_source_disable_unref(l->source);
        sd_event_source_disable_unref(l->backoff);
        safe_close(l->fd);
        if (l->unlink_path) {
                (void) unlink(l->unlink_path);
                free(l->unlink_path);
        }
        app_unref(l->app);
        free(l);
        return NULL;
}

int http_listener_fd(const HttpListener *l) {
        return l->fd;
}

/* ---- request API ---- */

const Caller *http_request_caller(const HttpRequest *r) {
        return r->caller;
}

Manager *http_request_manager(const HttpRequest *r) {
        return r->server->manager;
}

const char *http_request_method(const HttpRequest *r) {
        return r->method;
}

const char *http_request_url(const HttpRequest *r) {
        return r->url;
}

const char *http_request_header(const HttpRequest *r, const char *name) {
        return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

char *http_request_query(const HttpRequest *r, const char *name) {
        /* Values are still escaped (see no_unescape). */
        const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
        return v ? http_unescape(v, strlen(v), true) : NULL;
}

const void *http_request_body(const HttpRequest *r, size_t *ret_len) {
        *ret_len = r->body_len;
        return r->body ?: "";
}

void http_request_suspend(HttpRequest *r) {
        HttpServer *s = r->server;
        if (r->suspended || r->response)
                return;
        r->suspended = true;
        r->susp_next = s->suspended;
        if (r->susp_next)
                r->susp_next->susp_prev = r;
        s->suspended = r;
        MHD_suspend_connection(r->conn);
}

static void unlink_suspended(HttpRequest *r) {
        if (r->susp_prev)
                r->susp_prev->susp_next = r->susp_next;
        else
                r->server->suspended = r->susp_next;
        if (r->susp_next)
                r->susp_next->susp_prev = r->susp_prev;
        r->susp_next = r->susp_prev = NULL;
}

static int reply_internal(HttpRequest *r, unsigned status, const char *content_type, const void *body,
                          size_t len, const char *const *headers);
static void set_response(HttpRequest *r, struct MHD_Response *resp, unsigned status);
static void resume(HttpServer *s, struct MHD_Connection *conn);

int http_reply(HttpRequest *r, unsigned status, const char *content_type, const void *body, size_t len) {
        return reply_internal(r, status, content_type, body, len, NULL);
}

int http_reply_headers(HttpRequest *r, unsigned status, const char *content_type, const void *body, size_t len,
                       const char *const *headers) {
        return reply_internal(r, status, content_type, body, len, headers);
}

typedef struct {
        HttpRequestQueryFn fn;
        void *userdata;
        int error;
} QueryIter;

static enum MHD_Result on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        QueryIter *it = cls;
        _cleanup_free_ char *k = key ? http_unescape(key, strlen(key), true) : NULL;
        _cleanup_free_ char *v = value ? http_unescape(value, strlen(value), true) : strdup("");
        if (!k || !v) {
                it->error = -EINVAL;
                return MHD_NO;
        }
        it->error = it->fn(k, v, it->userdata);
        return it->error < 0 ? MHD_NO : MHD_YES;
}

int http_request_foreach_query(const HttpRequest *r, HttpRequestQueryFn fn, void *userdata) {
        QueryIter it = { .fn = fn, .userdata = userdata };
        (void) MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, on_query_arg, &it);
        return it.error;
}

static int reply_internal(HttpRequest *r, unsigned status, const char *content_type, const void *body,
                          size_t len, const char *const *headers) {
        struct MHD_Response *resp;

        if (r->response)
                return -EALREADY;
        if (len == 0 && !content_type && !headers && !r->server->draining) {
                resp = r->server->empty;
                r->response_shared = true;
        } else
                resp = MHD_create_response_from_buffer(len, (void *) (body ?: ""), MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return -ENOMEM;
        if (content_type && !r->response_shared)
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        for (const char *const *h = headers; h && h[0]; h += 2)
                if (h[1])
                        (void) MHD_add_response_header(resp, h[0], h[1]);
        set_response(r, resp, status);
        return 0;
}

static void resume(HttpServer *s, struct MHD_Connection *conn) {
        MHD_resume_connection(conn);
        /* MHD's ITC does not reliably wake its epoll fd in external mode: run MHD
         * once ourselves, from the loop (not from inside whatever called us). */
        if (s->mhd_kick)
                (void) sd_event_source_set_enabled(s->mhd_kick, SD_EVENT_ONESHOT);
}

static void set_response(HttpRequest *r, struct MHD_Response *resp, unsigned status) {
        r->response = resp;
        r->status = status;
        if (r->suspended) {
                r->suspended = false;
                unlink_suspended(r);
                resume(r->server, r->conn);
        }
}

int http_reply_empty(HttpRequest *r, unsigned status) {
        return http_reply(r, status, NULL, NULL, 0);
}

int http_reply_json(HttpRequest *r, unsigned status, json_t *j) {
        _cleanup_free_ char *s = NULL;
        if (!j)
                return -ENOMEM;
        s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!s)
                return -ENOMEM;
        return http_reply(r, status, "application/json", s, strlen(s));
}

_printf_(4, 0) static int reply_error_v(HttpRequest *r, unsigned status, DaprError e, const char *fmt,
                                         va_list ap) {
        _cleanup_free_ char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        json_t *j = json_pack("{s:s, s:s}", "errorCode", dapr_error_code(e), "message", msg ?: "");
        int k = http_reply_json(r, status, j);
        if (k == -ENOMEM && !r->response) /* last resort: a body we need not allocate */
                return http_reply(r, 500, "application/json",
                                  "{\"errorCode\":\"ERROR\",\"message\":\"out of memory\"}", 50);
        return k;
}

int http_reply_error_status(HttpRequest *r, unsigned status, DaprError e, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int k = reply_error_v(r, status, e, fmt, ap);
        va_end(ap);
        return k;
}

int http_reply_error(HttpRequest *r, DaprError e, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int k = reply_error_v(r, dapr_error_status(e), e, fmt, ap);
        va_end(ap);
        return k;
}

/* ---- more of the request, for proxying ---- */

const char *http_request_raw_query(const HttpRequest *r) {
        const char *q = r->raw_uri ? strchr(r->raw_uri, '?') : NULL;
        return q ? q + 1 : NULL;
}

typedef struct {
        char **pairs;
        size_t n;
        int error;
} HeaderCollect;

static enum MHD_Result on_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        HeaderCollect *hc = cls;
        char **p = realloc(hc->pairs, (hc->n + 3) * sizeof *p);
        if (!p) {
                hc->error = -ENOMEM;
                return MHD_NO;
        }
        hc->pairs = p;
        p[hc->n] = strdup(key ?: "");
        p[hc->n + 1] = strdup(value ?: "");
        p[hc->n + 2] = NULL;
        if (!p[hc->n] || !p[hc->n + 1]) {
                free(p[hc->n]);
                free(p[hc->n + 1]);
                p[hc->n] = NULL;
                hc->error = -ENOMEM;
                return MHD_NO;
        }
        hc->n += 2;
        return MHD_YES;
}

int http_request_header_pairs(const HttpRequest *r, char ***ret) {
        HeaderCollect hc = {};
        (void) MHD_get_connection_values(r->conn, MHD_HEADER_KIND, on_header, &hc);
        if (hc.error < 0) {
                strv_free(hc.pairs);
                return hc.error;
        }
        if (!hc.pairs) {
                hc.pairs = calloc(1, sizeof(char *));
                if (!hc.pairs)
                        return -ENOMEM;
        }
        *ret = hc.pairs;
        return 0;
}

void http_request_on_end(HttpRequest *r, HttpRequestEndFn fn, void *userdata) {
        r->on_end = fn;
        r->on_end_userdata = userdata;
}

/* ---- streamed replies ---- */

static void stream_unref(HttpStream *st) {
        if (!st || --st->n_ref > 0)
                return;
        free(st->buf);
        free(st);
}

/* The request is over: no more resumes; the response (if MHD still has it) keeps its ref. */
static void stream_detach(HttpStream *st) {
        HttpServer *s = st->server;
        if (st->prev)
                st->prev->next = st->next;
        else if (s->streams == st)
                s->streams = st->next;
        if (st->next)
                st->next->prev = st->prev;
        st->next = st->prev = NULL;
        st->conn = NULL;
        st->drain = NULL;
        stream_unref(st);
}

static void stream_wake_reader(HttpStream *st) {
        if (!st->reader_waiting || !st->conn)
                return;
        st->reader_waiting = false;
        resume(st->server, st->conn);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
        HttpStream *st = cls;
        if (st->discard)
                return MHD_CONTENT_READER_END_OF_STREAM;
        if (st->len > 0) {
                size_t n = MIN(max, st->len);
                memcpy(buf, st->buf + st->off, n);
                st->off += n;
                st->len -= n;
                if (st->len == 0)
                        st->off = 0;
                if (st->producer_blocked && st->len <= STREAM_BUFFER_MAX / 2 && st->drain) {
                        st->producer_blocked = false;
                        st->drain(st->drain_userdata);
                }
                return (ssize_t) n;
        }
        if (st->ended)
                return st->failed ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
        if (!st->conn)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        /* Nothing yet: step out of MHD's loop until the producer writes (allowed from a reader). */
        st->reader_waiting = true;
        MHD_suspend_connection(st->conn);
        return 0;
}

static void stream_response_gone(void *cls) {
        stream_unref(cls);
}

static bool status_has_body(unsigned status, const char *method) {
        return !(status < 200 || status == 204 || status == 304 || (method && streq(method, "HEAD")));
}

int http_reply_stream(HttpRequest *r, unsigned status, const char *const *headers, int64_t size,
                      HttpStreamDrainFn drain, void *userdata) {
        HttpStream *st;
        struct MHD_Response *resp;

        if (r->response)
                return -EALREADY;
        st = calloc(1, sizeof *st);
        if (!st)
                return -ENOMEM;
        *st = (HttpStream){ .n_ref = 1, .server = r->server, .conn = r->conn, .drain = drain,
                            .drain_userdata = userdata };
        if (!status_has_body(status, r->method)) {
                /* No body goes out; whatever the producer sends is dropped. A HEAD answer still
                 * says how long the body would be: MHD never reads a HEAD response's body. */
                st->discard = true;
                if (streq(r->method, "HEAD") && size >= 0) {
                        resp = MHD_create_response_from_callback((uint64_t) size, 32 * 1024, stream_read, st,
                                                                 stream_response_gone);
                        if (resp)
                                st->n_ref++;
                } else
                        resp = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
        } else {
                resp = MHD_create_response_from_callback(size >= 0 ? (uint64_t) size : MHD_SIZE_UNKNOWN,
                                                         32 * 1024, stream_read, st, stream_response_gone);
                if (resp)
                        st->n_ref++;
        }
        if (!resp) {
                stream_unref(st);
                return -ENOMEM;
        }
        for (const char *const *h = headers; h && h[0]; h += 2)
                if (h[1] && MHD_add_response_header(resp, h[0], h[1]) != MHD_YES)
                        log_debug("Dropped response header '%s' that libmicrohttpd refused", h[0]);
        st->next = r->server->streams;
        if (st->next)
                st->next->prev = st;
        r->server->streams = st;
        r->stream = st;
        set_response(r, resp, status);
        return 0;
}

bool http_stream_write(HttpRequest *r, const void *buf, size_t len) {
        HttpStream *st = r->stream;
        if (!st || st->discard || st->ended || len == 0)
                return true;
        /* All or nothing: a chunk is taken whole, or the producer pauses and offers it again. */
        if (st->len > 0 && st->len + len > STREAM_BUFFER_MAX) {
                st->producer_blocked = true;
                return false;
        }
        if (st->off > 0) {
                memmove(st->buf, st->buf + st->off, st->len);
                st->off = 0;
        }
        size_t cap = MAX((size_t) STREAM_BUFFER_MAX, len);
        if (!st->buf) {
                st->buf = malloc(cap);
                if (!st->buf) {
                        http_stream_end(r, false);
                        return true;
                }
        } else if (st->len + len > STREAM_BUFFER_MAX) {
                char *b = realloc(st->buf, st->len + len);
                if (!b) {
                        http_stream_end(r, false);
                        return true;
                }
                st->buf = b;
        }
        memcpy(st->buf + st->len, buf, len);
        st->len += len;
        stream_wake_reader(st);
        return true;
}

void http_stream_end(HttpRequest *r, bool ok) {
        HttpStream *st = r->stream;
        if (!st || st->ended)
                return;
        st->ended = true;
        st->failed = !ok;
        st->drain = NULL; /* the producer is gone */
        stream_wake_reader(st);
}
