/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the Redis drivers: connection metadata and RedisConn, a hiredis
 * async connection on sd-event with handshake, watchdog and backoff
 * reconnects. See redis-common.h for what it guarantees.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "../core/component.h"
#include "../util/strv.h"
#include "dl-hiredis.h"
#include "redis-common.h"

#define REDIS_BACKOFF_MIN_USEC (100 * 1000ULL)
#define REDIS_BACKOFF_MAX_USEC (5 * 1000000ULL)

struct RedisCall {
        RedisConn *conn;               /* back-reference; NULL once redis_conn_done() answered it early */
        RedisCall *prev, *next;        /* in conn->pending or conn->deferred */
        RedisReplyFn fn;
        void *userdata;
        uint64_t deadline;             /* CLOCK_MONOTONIC; pending calls only */
        uint64_t timeout_usec;         /* as given, for the message */
        int error;                     /* deferred calls: the answer */
        char *message;
};

/* ---- liveness ---- */

Liveness *liveness_new(void) {
        Liveness *l = calloc(1, sizeof(*l));
        if (l)
                *l = (Liveness){ .n_ref = 1, .alive = true };
        return l;
}

Liveness *liveness_ref(Liveness *l) {
        l->n_ref++;
        return l;
}

bool liveness_unref(Liveness *l) {
        bool alive = l->alive;
        assert(l->n_ref > 0);
        if (--l->n_ref == 0)
                free(l);
        return alive;
}

Liveness *liveness_kill(Liveness *l) {
        if (l) {
                l->alive = false;
                (void) liveness_unref(l);
        }
        return NULL;
}

/* ---- metadata ---- */

int redis_fail_field(char **reterr_msg, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(reterr_msg, fmt, ap) < 0)
                *reterr_msg = NULL;
        va_end(ap);
        return r;
}

int redis_parse_duration_field(const Component *c, const char *name, bool allow_zero, uint64_t *ret,
                               char **reterr_msg) {
        const char *v = component_get_string(c, name);
        uint64_t t;

        if (!v)
                return 0;
        if (parse_duration_usec(v, &t) < 0 || (t == 0 && !allow_zero))
                return redis_fail_field(reterr_msg, -EINVAL, "%s: invalid duration '%s'", name, v);
        *ret = t;
        return 0;
}

int redis_parse_uint_field(const Component *c, const char *name, uint64_t max, uint64_t *ret,
                           char **reterr_msg) {
        const char *v = component_get_string(c, name);
        unsigned long long n;
        char *end;

        if (!v)
                return 0;
        errno = 0;
        n = strtoull(v, &end, 10);
        if (errno != 0 || end == v || *end || v[0] == '-' || n > max)
                return redis_fail_field(reterr_msg, -EINVAL, "%s: invalid number '%s' (0..%" PRIu64 ")",
                                        name, v, max);
        *ret = n;
        return 0;
}

static int parse_host(RedisConfig *cfg, const char *v, char **reterr_msg) {
        if (v[0] == '/') {
                cfg->unix_path = strdup(v);
                return cfg->unix_path ? 0 : -ENOMEM;
        }

        const char *colon = NULL, *hs = v, *he;
        if (v[0] == '[') {
                he = strchr(v, ']');
                if (!he || (he[1] != 0 && he[1] != ':'))
                        goto bad;
                hs = v + 1;
                colon = he[1] == ':' ? he + 1 : NULL;
        } else {
                colon = strrchr(v, ':');
                if (colon && strchr(v, ':') != colon)
                        goto bad; /* bare IPv6 needs brackets */
                he = colon ?: v + strlen(v);
        }
        if (he == hs)
                goto bad;
        if (strchr(v, ','))
                goto bad;

        cfg->port = REDIS_DEFAULT_PORT;
        if (colon) {
                uint16_t port;
                if (parse_port(colon + 1, &port) < 0)
                        goto bad;
                cfg->port = port;
        }
        cfg->host = strndup(hs, (size_t) (he - hs));
        return cfg->host ? 0 : -ENOMEM;

bad:
        return redis_fail_field(reterr_msg, -EINVAL,
                                "redisHost: invalid value '%s' (expected host:port or a socket path)", v);
}

void redis_config_done(RedisConfig *cfg) {
        free(cfg->host);
        free(cfg->unix_path);
        free(cfg->username);
        cfg->password = erase_and_free(cfg->password);
        *cfg = (RedisConfig){};
}

int redis_config_parse(RedisConfig *cfg, const Component *c, char **reterr_msg) {
        const char *v;
        uint64_t db = 0;
        int r;

        *cfg = (RedisConfig){ .dial_timeout_usec = REDIS_DEFAULT_DIAL_TIMEOUT_USEC };

        v = component_get_string(c, "enableTLS");
        if (v) {
                r = parse_boolean(v);
                if (r < 0)
                        return redis_fail_field(reterr_msg, -EINVAL, "enableTLS: invalid boolean '%s'", v);
                if (r > 0)
                        return redis_fail_field(reterr_msg, -EOPNOTSUPP, "enableTLS: TLS not supported yet");
        }
        v = component_get_string(c, "redisType");
        if (v && !streq(v, "node"))
                return redis_fail_field(reterr_msg, -EOPNOTSUPP, "redisType: only 'node' is supported, not '%s'", v);
        v = component_get_string(c, "failover");
        if (v && parse_boolean(v) != 0)
                return redis_fail_field(reterr_msg, -EOPNOTSUPP, "failover: sentinel failover is not supported");

        v = component_get_string(c, "redisHost");
        if (!v || !*v)
                return redis_fail_field(reterr_msg, -EINVAL, "redisHost: required metadata field is missing");
        r = parse_host(cfg, v, reterr_msg);
        if (r < 0)
                goto fail;

        r = redis_parse_uint_field(c, "redisDB", INT_MAX, &db, reterr_msg);
        if (r < 0) {
                free(*reterr_msg);
                r = redis_fail_field(reterr_msg, -EINVAL, "redisDB: invalid database number '%s'",
                                     component_get_string(c, "redisDB"));
                goto fail;
        }
        cfg->db = (unsigned) db;

        r = redis_parse_duration_field(c, "dialTimeout", false, &cfg->dial_timeout_usec, reterr_msg);
        if (r < 0)
                goto fail;

        v = component_get_string(c, "redisUsername");
        if (v && *v && !(cfg->username = strdup(v))) {
                r = -ENOMEM;
                goto fail;
        }
        v = component_get_string(c, "redisPassword");
        if (v && *v && !(cfg->password = strdup(v))) {
                r = -ENOMEM;
                goto fail;
        }
        return 0;

fail:
        if (r == -ENOMEM && !*reterr_msg)
                *reterr_msg = strdup("out of memory");
        redis_config_done(cfg);
        return r;
}

/* ---- call lists ---- */

static void list_append(RedisCallList *l, RedisCall *call) {
        call->prev = l->tail;
        call->next = NULL;
        if (l->tail)
                l->tail->next = call;
        else
                l->head = call;
        l->tail = call;
}

static void list_remove(RedisCallList *l, RedisCall *call) {
        if (call->prev)
                call->prev->next = call->next;
        else
                l->head = call->next;
        if (call->next)
                call->next->prev = call->prev;
        else
                l->tail = call->prev;
        call->prev = call->next = NULL;
}

static void call_free(RedisCall *call) {
        free(call->message);
        free(call);
}

static uint64_t now_monotonic(RedisConn *c) {
        uint64_t t = 0;
        if (sd_event_now(c->event, CLOCK_MONOTONIC, &t) < 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                t = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
        }
        return t;
}

static char *mfree(char *p) {
        free(p);
        return NULL;
}

static void set_string(char **p, char *v) {
        free(*p);
        *p = v;
}

static const char *context_error(const redisAsyncContext *ac, const char *fallback) {
        return ac->errstr ?: (ac->c.errstr[0] ? ac->c.errstr : fallback);
}

/* ---- replies ---- */

static void on_call_reply(redisAsyncContext *ac, void *reply, void *privdata) {
        RedisCall *call = privdata;
        RedisConn *c = call->conn;
        char buf[600];

        if (!c) {
                /* redis_conn_done() already answered it. */
                call_free(call);
                return;
        }
        list_remove(&c->pending, call);

        if (reply)
                call->fn(reply, 0, NULL, call->userdata);
        else if (c->closing)
                call->fn(NULL, -ECANCELED, c->close_message, call->userdata);
        else if (c->fail_error)
                call->fn(NULL, c->fail_error, c->fail_message ?: "redis connection dropped", call->userdata);
        else {
                bool connected = ac->c.flags & REDIS_CONNECTED;
                snprintf(buf, sizeof(buf), "redis connection %s: %s", connected ? "lost" : "failed",
                         context_error(ac, connected ? "connection closed" : "unknown error"));
                call->fn(NULL, -ENOTCONN, buf, call->userdata);
        }
        /* c may be gone now. */
        call_free(call);
}

static int on_defer(sd_event_source *es, void *userdata) {
        RedisConn *c = userdata;
        Liveness *l = liveness_ref(c->liveness);
        RedisCall *call;

        /* Calls deferred by the callbacks below wait for the next iteration. */
        c->answering = c->deferred;
        c->deferred = (RedisCallList){};
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);

        /* A callback may end the connection: redis_conn_done() then answers the rest itself. */
        while (l->alive && (call = c->answering.head)) {
                list_remove(&c->answering, call);
                call->fn(NULL, call->error, call->message, call->userdata);
                call_free(call);
        }
        (void) liveness_unref(l);
        return 0;
}

/* ---- watchdog: connect and command deadlines ---- */

static uint64_t watchdog_next(RedisConn *c) {
        uint64_t t = UINT64_MAX;
        if (c->ac && !c->ready)
                t = c->connect_deadline;
        if (c->ac && c->pending.head)
                t = MIN(t, c->pending.head->deadline);
        return t;
}

static void watchdog_arm(RedisConn *c) {
        int enabled = SD_EVENT_OFF;
        uint64_t t, armed;

        if (!c->watchdog)
                return;
        t = watchdog_next(c);
        if (t == UINT64_MAX)
                return; /* an armed watchdog finds nothing to do and stays off */
        if (sd_event_source_get_enabled(c->watchdog, &enabled) >= 0 && enabled != SD_EVENT_OFF &&
            sd_event_source_get_time(c->watchdog, &armed) >= 0 && armed <= t)
                return; /* fires earlier and re-arms itself */
        (void) sd_event_source_set_time(c->watchdog, t);
        (void) sd_event_source_set_enabled(c->watchdog, SD_EVENT_ONESHOT);
}

void redis_conn_reset(RedisConn *c, int error, const char *message) {
        redisAsyncContext *ac = c->ac;

        if (!ac)
                return;
        set_string(&c->last_error, strdup(message));
        c->fail_error = error;
        set_string(&c->fail_message, strdup(message));
        sym_redisAsyncFree(ac);
        /* c may be gone here when not inside a hiredis callback: callers hold a Liveness. */
}

static int on_watchdog(sd_event_source *es, uint64_t usec, void *userdata) {
        RedisConn *c = userdata;
        uint64_t now = now_monotonic(c);
        char buf[128];

        if (c->ac && !c->ready && now >= c->connect_deadline) {
                snprintf(buf, sizeof(buf), "redis connection failed: not connected within %" PRIu64 " ms",
                         c->config->dial_timeout_usec / 1000);
        } else if (c->ac && c->pending.head && now >= c->pending.head->deadline) {
                snprintf(buf, sizeof(buf), "redis: no reply within %" PRIu64 " ms, connection reset",
                         c->pending.head->timeout_usec / 1000);
        } else {
                watchdog_arm(c);
                return 0;
        }

        Liveness *l = liveness_ref(c->liveness);
        redis_conn_reset(c, c->ready ? -ETIMEDOUT : -ENOTCONN, buf);
        (void) liveness_unref(l); /* nothing more to do either way */
        return 0;
}

/* ---- sd-event adapter ---- */

static void io_update(RedisConn *c, uint32_t events) {
        if (events == c->io_events || !c->io)
                return;
        c->io_events = events;
        (void) sd_event_source_set_io_events(c->io, events);
}

static void ev_add_read(void *privdata) {
        RedisConn *c = privdata;
        if (c)
                io_update(c, c->io_events | EPOLLIN);
}

static void ev_del_read(void *privdata) {
        RedisConn *c = privdata;
        if (c)
                io_update(c, c->io_events & ~(uint32_t) EPOLLIN);
}

static void ev_add_write(void *privdata) {
        RedisConn *c = privdata;
        if (c)
                io_update(c, c->io_events | EPOLLOUT);
}

static void ev_del_write(void *privdata) {
        RedisConn *c = privdata;
        if (c)
                io_update(c, c->io_events & ~(uint32_t) EPOLLOUT);
}

static int schedule_reconnect(RedisConn *c);

/* hiredis is about to free the context: forget it, plan the next attempt, tell the owner. */
static void ev_cleanup(void *privdata) {
        RedisConn *c = privdata;

        if (!c)
                return;
        if (!c->last_error && c->ac) {
                char *m = NULL;
                if (asprintf(&m, "redis connection lost: %s", context_error(c->ac, "connection closed")) < 0)
                        m = NULL;
                c->last_error = m;
        }
        c->io = sd_event_source_disable_unref(c->io);
        c->io_events = 0;
        c->ac = NULL;
        c->ready = false;
        c->handshake_pending = 0;
        c->fail_error = 0;
        c->fail_message = mfree(c->fail_message);
        if (c->closing)
                return;
        (void) schedule_reconnect(c);
        if (c->ready_fn)
                c->ready_fn(c, false, c->userdata);
}

static int on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        RedisConn *c = userdata;
        redisAsyncContext *ac = c->ac;
        Liveness *l;

        if (!ac)
                return 0;

        l = liveness_ref(c->liveness);
        if (revents & (EPOLLIN | EPOLLERR | EPOLLHUP))
                sym_redisAsyncHandleRead(ac);
        if (l->alive && (revents & EPOLLOUT) && c->ac == ac)
                sym_redisAsyncHandleWrite(ac);
        if (liveness_unref(l))
                watchdog_arm(c);
        return 0;
}

/* ---- connecting ---- */

static void handshake_check(RedisConn *c) {
        if (c->ready || c->handshake_pending > 0 || !c->ac || !(c->ac->c.flags & REDIS_CONNECTED))
                return;
        c->ready = true;
        c->backoff_usec = 0;
        c->last_error = mfree(c->last_error);
        if (c->ready_fn)
                c->ready_fn(c, true, c->userdata);
}

static void on_handshake_reply(redisAsyncContext *ac, void *reply_, void *privdata) {
        RedisConn *c = ac->data;
        redisReply *reply = reply_;
        const char *what = privdata;
        char buf[600];

        if (!c || !reply)
                return; /* closing, or the connection died: the cleanup hook handles it */

        if (reply->type == REDIS_REPLY_ERROR) {
                snprintf(buf, sizeof(buf), "redis %s failed: %.*s", what, (int) MIN(reply->len, 512),
                         reply->str ?: "");
                /* We are inside a reply callback: hiredis frees the context once we return. */
                redis_conn_reset(c, -ENOTCONN, buf);
                return;
        }
        assert(c->handshake_pending > 0);
        c->handshake_pending--;
        handshake_check(c);
}

static void on_connect(const redisAsyncContext *cac, int status) {
        redisAsyncContext *ac = (redisAsyncContext *) cac;
        RedisConn *c = ac->data;
        if (!c)
                return;
        if (status != REDIS_OK) {
                char *m = NULL;
                if (asprintf(&m, "redis connection failed: %s", ac->c.errstr[0] ? ac->c.errstr : "unknown error") < 0)
                        m = NULL;
                set_string(&c->last_error, m);
                return; /* hiredis frees the context next; ev_cleanup schedules a retry */
        }

        handshake_check(c);
}

/* AUTH and SELECT go first into the output buffer, ahead of anything queued while connecting. */
static void handshake_send(RedisConn *c, redisAsyncContext *ac) {
        const RedisConfig *cfg = c->config;
        char buf[32];

        c->handshake_pending = 0;
        if (cfg->password) {
                const char *argv[3] = { "AUTH" };
                size_t argvlen[3] = { 4 };
                int n = 1;
                if (cfg->username) {
                        argv[n] = cfg->username;
                        argvlen[n++] = strlen(cfg->username);
                }
                argv[n] = cfg->password;
                argvlen[n++] = strlen(cfg->password);
                if (sym_redisAsyncCommandArgv(ac, on_handshake_reply, (void *) "AUTH", n, argv, argvlen) == REDIS_OK)
                        c->handshake_pending++;
        }
        if (cfg->db > 0) {
                snprintf(buf, sizeof(buf), "%u", cfg->db);
                const char *argv[2] = { "SELECT", buf };
                size_t argvlen[2] = { 6, strlen(buf) };
                if (sym_redisAsyncCommandArgv(ac, on_handshake_reply, (void *) "SELECT", 2, argv, argvlen) == REDIS_OK)
                        c->handshake_pending++;
        }
}

static void connection_failed(RedisConn *c, const char *detail) {
        char *m = NULL;
        if (asprintf(&m, "redis connection failed: %s", detail) < 0)
                m = NULL;
        set_string(&c->last_error, m);
        (void) schedule_reconnect(c);
}

static void connection_start(RedisConn *c) {
        const RedisConfig *cfg = c->config;
        redisAsyncContext *ac;
        int r;

        assert(!c->ac);

        ac = cfg->unix_path ? sym_redisAsyncConnectUnix(cfg->unix_path) : sym_redisAsyncConnect(cfg->host, cfg->port);
        if (!ac) {
                connection_failed(c, "out of memory");
                return;
        }
        if (ac->err) {
                connection_failed(c, ac->errstr ?: "unknown error");
                sym_redisAsyncFree(ac); /* no hooks or callbacks installed yet */
                return;
        }

        r = sd_event_add_io(c->event, &c->io, ac->c.fd, EPOLLOUT, on_io, c);
        if (r < 0) {
                char buf[128];
                snprintf(buf, sizeof(buf), "cannot watch socket: %s", strerror(-r));
                connection_failed(c, buf);
                sym_redisAsyncFree(ac);
                return;
        }
        c->io_events = EPOLLOUT; /* connect(2) completes as writable */

        ac->data = c;
        ac->ev.data = c;
        ac->ev.addRead = ev_add_read;
        ac->ev.delRead = ev_del_read;
        ac->ev.addWrite = ev_add_write;
        ac->ev.delWrite = ev_del_write;
        ac->ev.cleanup = ev_cleanup;
        (void) sym_redisAsyncSetConnectCallback(ac, on_connect);

        c->ac = ac;
        c->ready = false;
        handshake_send(c, ac);
        c->connect_deadline = now_monotonic(c) + cfg->dial_timeout_usec;
        watchdog_arm(c);
}

static int on_reconnect(sd_event_source *es, uint64_t usec, void *userdata) {
        RedisConn *c = userdata;

        if (!c->ac && !c->closing)
                connection_start(c);
        return 0;
}

static int schedule_reconnect(RedisConn *c) {
        int r;

        c->backoff_usec = c->backoff_usec == 0 ? REDIS_BACKOFF_MIN_USEC
                                                : MIN(c->backoff_usec * 2, REDIS_BACKOFF_MAX_USEC);
        uint64_t t = now_monotonic(c) + c->backoff_usec;

        if (!c->reconnect_timer)
                return sd_event_add_time(c->event, &c->reconnect_timer, CLOCK_MONOTONIC, t, 10 * 1000,
                                         on_reconnect, c);
        r = sd_event_source_set_time(c->reconnect_timer, t);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(c->reconnect_timer, SD_EVENT_ONESHOT);
}

/* ---- the public part ---- */

int redis_conn_init(RedisConn *c, sd_event *event, const RedisConfig *config, RedisReadyFn ready_fn,
                    void *userdata) {
        int r;

        *c = (RedisConn){ .event = event, .config = config, .ready_fn = ready_fn, .userdata = userdata };
        c->liveness = liveness_new();
        if (!c->liveness)
                return -ENOMEM;
        r = sd_event_add_time(event, &c->watchdog, CLOCK_MONOTONIC, 0, 10 * 1000, on_watchdog, c);
        if (r >= 0)
                r = sd_event_add_defer(event, &c->defer, on_defer, c);
        if (r < 0) {
                c->watchdog = sd_event_source_disable_unref(c->watchdog);
                c->liveness = liveness_kill(c->liveness);
                return r;
        }
        (void) sd_event_source_set_enabled(c->watchdog, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);

        /* Does not wait: a server that is not up yet only makes calls fail with -ENOTCONN. */
        connection_start(c);
        return 0;
}

/* Answers every call of a list that never reached hiredis with -ECANCELED. */
static void calls_cancel(RedisConn *c, RedisCallList *l) {
        RedisCall *call;

        while ((call = l->head)) {
                list_remove(l, call);
                call->fn(NULL, -ECANCELED, c->close_message, call->userdata);
                call_free(call);
        }
}

void redis_conn_done(RedisConn *c, const char *message) {
        RedisCall *call;

        if (c->closing)
                return;
        c->closing = true;
        c->close_message = message ?: "redis connection closed";
        c->liveness = liveness_kill(c->liveness);

        c->reconnect_timer = sd_event_source_disable_unref(c->reconnect_timer);
        c->watchdog = sd_event_source_disable_unref(c->watchdog);
        c->defer = sd_event_source_disable_unref(c->defer);

        if (c->ac) {
                redisAsyncContext *ac = c->ac;

                /* Outside a hiredis callback this runs every pending callback (-ECANCELED) and ev_cleanup now. */
                sym_redisAsyncFree(ac);
                if (c->ac == ac) {
                        /* Inside one: hiredis frees it once that callback returns; cut it loose from us. */
                        ac->data = NULL;
                        ac->ev.data = NULL;
                        c->io = sd_event_source_disable_unref(c->io);
                        c->ac = NULL;
                }
        }

        /* Calls hiredis still holds (postponed free): answer now, hiredis frees the call later. */
        while ((call = c->pending.head)) {
                list_remove(&c->pending, call);
                call->conn = NULL;
                call->fn(NULL, -ECANCELED, c->close_message, call->userdata);
        }
        calls_cancel(c, &c->answering);
        calls_cancel(c, &c->deferred);

        c->io = sd_event_source_disable_unref(c->io);
        c->last_error = mfree(c->last_error);
        c->fail_message = mfree(c->fail_message);
}

static RedisCall *call_new(RedisConn *c, RedisReplyFn fn, void *userdata) {
        RedisCall *call = calloc(1, sizeof(*call));
        if (call)
                *call = (RedisCall){ .conn = c, .fn = fn, .userdata = userdata };
        return call;
}

static void call_defer(RedisConn *c, RedisCall *call, int error) {
        call->error = error;
        list_append(&c->deferred, call);
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
}

int redis_conn_fail_later(RedisConn *c, int error, const char *message, RedisReplyFn fn, void *userdata) {
        RedisCall *call;

        assert(fn && error < 0 && message);
        if (c->closing)
                return -ECANCELED;
        call = call_new(c, fn, userdata);
        if (!call)
                return -ENOMEM;
        call->message = strdup(message);
        if (!call->message) {
                free(call);
                return -ENOMEM;
        }
        call_defer(c, call, error);
        return 0;
}

int redis_conn_send(RedisConn *c, uint64_t timeout_usec, RedisReplyFn fn, void *userdata, int argc,
                    const char **argv, const size_t *argvlen) {
        RedisCall *call;

        assert(fn);
        if (c->closing)
                return -ECANCELED;
        call = call_new(c, fn, userdata);
        if (!call)
                return -ENOMEM;

        if (c->ac && sym_redisAsyncCommandArgv(c->ac, on_call_reply, call, argc, argv, argvlen) == REDIS_OK) {
                uint64_t deadline = now_monotonic(c) + timeout_usec;
                /* Replies come in order: nothing behind a slow command can be answered before it. */
                call->deadline = c->pending.tail ? MAX(deadline, c->pending.tail->deadline) : deadline;
                call->timeout_usec = timeout_usec;
                list_append(&c->pending, call);
                watchdog_arm(c);
                return 0;
        }

        if (asprintf(&call->message, "redis not connected: %s",
                     c->last_error ?: "connection not established yet") < 0) {
                free(call);
                return -ENOMEM;
        }
        call_defer(c, call, -ENOTCONN);
        return 0;
}
