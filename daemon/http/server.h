/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP front-end: mooring's own HTTP/1.1 server on sd-event (parsing by
 * http_parser, see request-parse.h). We accept on our listeners (shared
 * socket, per-app Unix sockets, per-app TCP ports) and give each connection
 * the identity of the listener it came in on, so "which app is calling" is
 * decided by the kernel, never by a header.
 *
 * Strict about framing (RFC 9112: malformed requests get 400 and the
 * connection is closed), fair (connection limits per listener and per peer
 * uid below the global one, header/body/idle deadlines, all from [Daemon]
 * settings), and every error it produces itself is in Dapr's JSON shape.
 * Handlers may answer later; nothing here blocks.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "../forward.h"
#include "errors.h"

typedef enum ListenerKind {
        LISTENER_API,      /* shared socket: identity from peer credentials */
        LISTENER_APP_UNIX, /* per-app socket: the listener is the identity */
        LISTENER_APP_TCP,  /* per-app loopback port: identity + optional API token */
        LISTENER_METRICS,  /* MetricsPort=: GET /metrics only */
        LISTENER_DASHBOARD, /* DashboardPort=: the dashboard and its read-only JSON routes only */
        LISTENER_PEER,     /* [Cluster] PeerListen=: other mooringd hosts over mutual TLS, routes
                            * flagged ROUTE_PEER only; identity from the verified certificate */
        _LISTENER_KIND_MAX,
} ListenerKind;

/* Who is calling, decided at accept time. */
typedef struct Caller {
        ListenerKind via;
        App *app;              /* ref; NULL for an unidentified shared-socket caller */
        bool has_cred;
        struct ucred cred;
        char *unit;            /* systemd unit of the peer, if known */
        char *peer_host;       /* LISTENER_PEER: the calling host's id (SAN DNS of its certificate) */
        char *peer_trust_domain; /* LISTENER_PEER: its trust domain (SAN URI spiffe://TD/...) */
} Caller;

HttpServer *http_server_new(Manager *m, sd_event *e);
HttpServer *http_server_free(HttpServer *s);
/* The TLS of LISTENER_PEER listeners (borrowed; NULL: such listeners refuse every connection). */
void http_server_set_peer_tls(HttpServer *s, PeerTls *tls);
/* Requests whose headers have arrived and whose response is not yet sent. */
unsigned http_server_requests_in_flight(const HttpServer *s);

/* Counters since start, for GET /mooring/v1/status. */
typedef struct HttpServerStats {
        uint64_t connections;      /* open now */
        uint64_t accepted;
        uint64_t requests;
        uint64_t refused_global;   /* MaxConnections= (or the fd limit) reached */
        uint64_t refused_listener; /* MaxConnectionsPerListener= reached */
        uint64_t refused_user;     /* MaxConnectionsPerUser= reached */
        uint64_t accept_errors;
        uint64_t header_timeouts;
        uint64_t body_timeouts;    /* body or answer without progress */
        uint64_t bad_requests;     /* answered by the server itself (400, 408, 413, 414, 431, 505) */
} HttpServerStats;
const HttpServerStats *http_server_stats(const HttpServer *s);
/* Stop accepting and close idle keep-alive connections after their request. */
void http_server_start_drain(HttpServer *s);

/*
 * Wraps a listening fd (takes it). app may be NULL for LISTENER_API.
 * unlink_path, if given, is removed when the listener is freed.
 */
int http_listener_new(HttpServer *s, ListenerKind kind, App *app, int fd_take, const char *unlink_path,
                      HttpListener **ret);
HttpListener *http_listener_free(HttpListener *l);
DEFINE_CLEANUP_FUNC(HttpListener, http_listener_free);
int http_listener_fd(const HttpListener *l);

/* ---- what handlers use ---- */

const Caller *http_request_caller(const HttpRequest *r);
/* The Manager, for lifecycle routes only (healthz, metadata); block handlers take the registry. */
Manager *http_request_manager(const HttpRequest *r);
Registry *http_request_registry(const HttpRequest *r);
const char *http_request_method(const HttpRequest *r);
/* The inbound call's span when it is traced (its children name it as parent), else NULL. */
const struct TraceContext *http_request_trace(const HttpRequest *r);
/* Whether that span is the child of a traceparent the caller sent. */
bool http_request_trace_remote(const HttpRequest *r);
/* The path as sent, still escaped, without the query string. */
const char *http_request_url(const HttpRequest *r);
const char *http_request_header(const HttpRequest *r, const char *name);
/* Unescaped query argument (malloc'd) or NULL. */
char *http_request_query(const HttpRequest *r, const char *name);
const void *http_request_body(const HttpRequest *r, size_t *ret_len);
/* Calls fn for every query argument, unescaped. Stops at fn's first error and returns it. */
typedef int (*HttpRequestQueryFn)(const char *key, const char *value, void *userdata);
int http_request_foreach_query(const HttpRequest *r, HttpRequestQueryFn fn, void *userdata);

/*
 * Exactly one reply per request, from the handler or later (after http_request_suspend(), a
 * marker only). The request, its headers and its body stay valid until it is over. The body
 * is not NUL-terminated.
 */
int http_reply(HttpRequest *r, unsigned status, const char *content_type, const void *body, size_t len);
int http_reply_empty(HttpRequest *r, unsigned status);
/* headers: name, value pairs, NULL-terminated; a NULL value skips its pair. */
int http_reply_headers(HttpRequest *r, unsigned status, const char *content_type, const void *body, size_t len,
                       const char *const *headers);
/* Takes j. */
int http_reply_json(HttpRequest *r, unsigned status, json_t *j);
int http_reply_error(HttpRequest *r, DaprError e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same with the status given (Dapr uses one code with several statuses, e.g. ERR_STATE_SAVE 409). */
int http_reply_error_status(HttpRequest *r, unsigned status, DaprError e, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void http_request_suspend(HttpRequest *r);
/*
 * For a reply given outside the handler (after suspend): the caller is done with r and will not
 * touch it again, so the server may finish the request (and start on a pipelined next one) now,
 * from inside the caller, instead of on the next loop pass. Optional: without it the server
 * finishes from the loop. Never from inside an on_end callback.
 */
void http_request_release(HttpRequest *r);
/* Says that the answer about to be given is followed at once by http_request_release(r): it
 * then needs no loop pass of its own. Call it only when that call is certain. */
void http_request_release_next(HttpRequest *r);

/* ---- proxying (service invocation) ---- */

/* The query string exactly as sent (still escaped, without '?'), or NULL. */
const char *http_request_raw_query(const HttpRequest *r);
/* Every request header in arrival order as name, value pairs (NULL-terminated). The strings
 * are the request's (valid while it is); free the array alone with free(). */
int http_request_header_pairs(const HttpRequest *r, char ***ret);
/* The same into l (n slots); -ENOBUFS when they do not fit. */
int http_request_header_pairs_into(const HttpRequest *r, char **l, size_t n);
/* fn runs once when the request is over (answered, or its connection gone). */
typedef void (*HttpRequestEndFn)(HttpRequest *r, void *userdata);
void http_request_on_end(HttpRequest *r, HttpRequestEndFn fn, void *userdata);

/*
 * A reply whose body follows: status and headers (pairs) now, then
 * http_stream_write() chunks and one http_stream_end(). size is the body
 * length if known (else -1: chunked). For HEAD, 1xx, 204 and 304 no body is
 * sent and writes are dropped.
 */
typedef void (*HttpStreamDrainFn)(void *userdata);
int http_reply_stream(HttpRequest *r, unsigned status, const char *const *headers, int64_t size,
                      HttpStreamDrainFn drain, void *userdata);
/* All or nothing: false means the buffer is full; drain() runs once there is room again. */
bool http_stream_write(HttpRequest *r, const void *buf, size_t len);
/* ok false: the body was cut short; the connection is closed after what was sent. */
void http_stream_end(HttpRequest *r, bool ok);
