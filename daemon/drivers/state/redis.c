/* SPDX-License-Identifier: Apache-2.0 */
/*
 * state.redis: Dapr's Redis state store on hiredis' async API, driven by the
 * daemon's sd-event loop through a small adapter in this file (one io source
 * whose event mask follows hiredis' addRead/delRead/addWrite/delWrite hooks).
 *
 * Data model (Dapr's): every key is a hash with the fields `data` (the value
 * bytes) and `version` (an integer, the etag). Conditional writes and
 * transactions are Lua scripts run with EVAL, so each is atomic on the
 * server; a transaction checks every condition (in order, simulating the
 * effect of the earlier ops) before it writes anything. Redis expires keys
 * itself, so no purge timer is needed.
 *
 * Connection: opened at open() without waiting; AUTH/SELECT are pipelined
 * right after connect. Commands issued while connecting are queued behind
 * them. When the connection is lost every in-flight call fails with
 * -ENOTCONN, and a timer reconnects with backoff (100 ms doubling to 5 s);
 * while no connection exists calls fail fast with -ENOTCONN. A watchdog
 * timer bounds connecting (dialTimeout) and every command (timeout /
 * readTimeout): when the oldest command has no reply in time the connection
 * is dropped (its calls get -ETIMEDOUT) and re-established.
 *
 * hiredis callback rules honoured here (0.14 async.c): pending reply
 * callbacks run with a NULL reply when the context dies, then ev.cleanup,
 * then onDisconnect (only if it had connected), then the context is freed;
 * redisAsyncFree() called from inside a reply callback is postponed until
 * that callback returns. A done callback may close the store, so after any
 * call that can run done callbacks we check a refcounted liveness flag
 * before touching the store again.
 */
#include <assert.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "driver.h"

#define REDIS_DEFAULT_PORT 6379
#define REDIS_DEFAULT_TIMEOUT_USEC (3 * 1000000ULL)
#define REDIS_DEFAULT_DIAL_TIMEOUT_USEC (5 * 1000000ULL)
#define REDIS_BACKOFF_MIN_USEC (100 * 1000ULL)
#define REDIS_BACKOFF_MAX_USEC (5 * 1000000ULL)
#define REDIS_ETAG_MAX 20 /* "18446744073709551615" */


/*
 * Upsert. KEYS[1] key; ARGV: mode ("0" unconditional, "1" only if absent,
 * "2" only if version == ARGV[2]), etag, value, ttl seconds (> 0: EXPIRE,
 * else PERSIST). Returns the new version, or 0 when the condition failed.
 */
static const char script_set[] =
        "local m = ARGV[1]\n"
        "if m == '1' then\n"
        "  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
        "elseif m == '2' then\n"
        "  if redis.call('HGET', KEYS[1], 'version') ~= ARGV[2] then return 0 end\n"
        "end\n"
        "redis.call('HSET', KEYS[1], 'data', ARGV[3])\n"
        "local v = redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
        "if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
        "else redis.call('PERSIST', KEYS[1]) end\n"
        "return v\n";

/* Delete only if version == ARGV[1]. Returns 1, or 0 when the etag did not match. */
static const char script_del[] =
        "if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end\n"
        "redis.call('DEL', KEYS[1])\n"
        "return 1\n";

/* Returns nil when absent, else { data, version, pttl }. */
static const char script_get[] =
        "local r = redis.call('HMGET', KEYS[1], 'data', 'version')\n"
        "if not r[1] then return nil end\n"
        "return { r[1], r[2], redis.call('PTTL', KEYS[1]) }\n";

/*
 * Transaction. KEYS[i] is op i's key; ARGV holds 5 strings per op: kind
 * ("u" upsert, "d" delete), mode (as in script_set), etag, value, ttl.
 * First every condition is checked against the state the earlier ops of
 * the transaction would leave; on failure returns -i (1-based op index)
 * with nothing written. Otherwise applies all ops and returns 1.
 */
static const char script_tx[] =
        "local st = {}\n"
        "for i, k in ipairs(KEYS) do\n"
        "  local b = (i - 1) * 5\n"
        "  local kind, mode, etag = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]\n"
        "  local s = st[k]\n"
        "  if s == nil then\n"
        "    s = { e = redis.call('EXISTS', k) == 1, v = redis.call('HGET', k, 'version') }\n"
        "    st[k] = s\n"
        "  end\n"
        "  if mode == '1' and s.e then return -i end\n"
        "  if mode == '2' and s.v ~= etag then return -i end\n"
        "  if kind == 'u' then\n"
        "    s.e = true\n"
        "    s.v = tostring((tonumber(s.v) or 0) + 1)\n"
        "  else\n"
        "    s.e = false\n"
        "    s.v = false\n"
        "  end\n"
        "end\n"
        "for i, k in ipairs(KEYS) do\n"
        "  local b = (i - 1) * 5\n"
        "  if ARGV[b + 1] == 'u' then\n"
        "    redis.call('HSET', k, 'data', ARGV[b + 4])\n"
        "    redis.call('HINCRBY', k, 'version', 1)\n"
        "    if tonumber(ARGV[b + 5]) > 0 then redis.call('EXPIRE', k, ARGV[b + 5])\n"
        "    else redis.call('PERSIST', k) end\n"
        "  else\n"
        "    redis.call('DEL', k)\n"
        "  end\n"
        "end\n"
        "return 1\n";

typedef struct RedisStore RedisStore;
typedef struct RedisOp RedisOp;

/*
 * Tells a dispatcher (io handler, watchdog) whether the store still exists
 * after it called into code that can run done callbacks, which may close
 * the store (and the core then frees it).
 */
typedef struct Liveness {
        unsigned n_ref;
        bool alive;
} Liveness;

static Liveness *liveness_ref(Liveness *l) {
        l->n_ref++;
        return l;
}

static Liveness *new0_liveness(void) {
        Liveness *l = calloc(1, sizeof(*l));
        if (l)
                *l = (Liveness){ .n_ref = 1, .alive = true };
        return l;
}

static Liveness *mfree_liveness(Liveness *l) {
        free(l);
        return NULL;
}

/* Drops a reference; returns whether the store is still alive. */
static bool liveness_unref(Liveness *l) {
        bool alive = l->alive;
        assert(l->n_ref > 0);
        if (--l->n_ref == 0)
                free(l);
        return alive;
}

typedef enum RedisOpKind {
        REDIS_OP_GET,
        REDIS_OP_SET,
        REDIS_OP_DEL,
        REDIS_OP_TX,
} RedisOpKind;

typedef enum RedisSetMode {
        REDIS_SET_ANY = '0',
        REDIS_SET_ABSENT = '1',
        REDIS_SET_ETAG = '2',
} RedisSetMode;

struct RedisOp {
        RedisStore *store;             /* back-reference; NULL once close() answered an op hiredis still holds */
        RedisOp *prev, *next;          /* in store->pending or store->deferred */
        RedisOpKind kind;
        RedisSetMode mode;             /* REDIS_OP_SET */
        bool conditional;              /* REDIS_OP_DEL: with etag */
        StateDoneFn done;
        void *userdata;
        uint64_t deadline;             /* CLOCK_MONOTONIC; pending ops only */
        sd_event_source *defer;        /* deferred ops: answers result without hiredis */
        StateResult result;            /* deferred ops: the answer */
};

typedef struct OpList {
        RedisOp *head, *tail;
} OpList;

struct RedisStore {
        StateStore base;

        /* configuration */
        char *host;                    /* TCP host (brackets stripped), or NULL with unix_path */
        int port;
        char *unix_path;
        char *username;
        char *password;                /* secret: wiped on free */
        unsigned db;
        int64_t default_ttl_sec;
        uint64_t timeout_usec;
        uint64_t dial_timeout_usec;

        /* connection */
        redisAsyncContext *ac;         /* NULL while waiting to reconnect */
        sd_event_source *io;
        uint32_t io_events;
        bool ready;                    /* connected and AUTH/SELECT answered */
        unsigned handshake_pending;
        uint64_t connect_deadline;
        uint64_t backoff_usec;
        sd_event_source *reconnect_timer;
        sd_event_source *watchdog;
        char *last_error;              /* why there is no connection */
        int fail_error;                /* set while we tear a connection down ourselves */
        char *fail_message;

        OpList pending;                /* submitted to hiredis, reply order */
        OpList deferred;               /* answered on the next loop iteration */

        bool closing;
        Liveness *liveness;            /* shared with dispatchers that may outlive us, see the header comment */
};

extern const StateDriver state_redis_driver;

static void list_append(OpList *l, RedisOp *op) {
        op->prev = l->tail;
        op->next = NULL;
        if (l->tail)
                l->tail->next = op;
        else
                l->head = op;
        l->tail = op;
}

static void list_remove(OpList *l, RedisOp *op) {
        if (op->prev)
                op->prev->next = op->next;
        else
                l->head = op->next;
        if (op->next)
                op->next->prev = op->prev;
        else
                l->tail = op->prev;
        op->prev = op->next = NULL;
}

static uint64_t now_monotonic(RedisStore *s) {
        uint64_t t = 0;
        if (sd_event_now(s->base.event, CLOCK_MONOTONIC, &t) < 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                t = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
        }
        return t;
}

static char *mfree_str(char *p) {
        free(p);
        return NULL;
}

static void set_string(char **p, char *v) {
        free(*p);
        *p = v;
}

/* ---- completion ---- */

static void op_finish(RedisOp *op, StateResult *r) {
        StateDoneFn done = op->done;
        void *userdata = op->userdata;

        free(op);
        done(r, userdata);
        state_result_done(r);
}

static int on_defer(sd_event_source *es, void *userdata) {
        RedisOp *op = userdata;
        StateResult r = op->result;

        list_remove(&op->store->deferred, op);
        op->defer = sd_event_source_unref(op->defer);
        op_finish(op, &r);
        return 0;
}

/* Answers on the next loop iteration. Returns 0, or -ENOMEM with nothing started. */
static int op_defer(RedisStore *s, RedisOp *op, int error, const char *fmt, ...) _printf_(4, 5);
static int op_defer(RedisStore *s, RedisOp *op, int error, const char *fmt, ...) {
        char *m = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        if (!m)
                return -ENOMEM;

        r = sd_event_add_defer(s->base.event, &op->defer, on_defer, op);
        if (r < 0) {
                free(m);
                return r;
        }
        op->store = s;
        op->result = (StateResult){ .error = error, .message = m };
        list_append(&s->deferred, op);
        return 0;
}

static RedisOp *op_new(RedisStore *s, RedisOpKind kind, StateDoneFn done, void *userdata) {
        RedisOp *op = calloc(1, sizeof(*op));
        if (!op)
                return NULL;
        op->store = s;
        op->kind = kind;
        op->done = done;
        op->userdata = userdata;
        return op;
}

/* ---- replies ---- */

static int reply_error(StateResult *r, const redisReply *reply) {
        return state_result_fail(r, -EIO, "redis: %.*s", (int) MIN(reply->len, 512), reply->str ?: "");
}

static void parse_get(StateResult *r, const redisReply *reply) {
        if (reply->type == REDIS_REPLY_NIL)
                return; /* not found */
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
            reply->element[0]->type != REDIS_REPLY_STRING) {
                state_result_fail(r, -EIO, "redis: unexpected reply to get");
                return;
        }

        const redisReply *data = reply->element[0], *version = reply->element[1], *pttl = reply->element[2];

        r->value.value = malloc(data->len + 1);
        if (!r->value.value) {
                state_result_fail(r, -ENOMEM, "out of memory");
                return;
        }
        memcpy(r->value.value, data->str, data->len);
        ((char *) r->value.value)[data->len] = 0;
        r->value.value_len = data->len;

        if (version->type == REDIS_REPLY_STRING)
                r->value.etag = strndup(version->str, version->len);
        else if (version->type == REDIS_REPLY_INTEGER)
                if (asprintf(&r->value.etag, "%lld", version->integer) < 0)
                        r->value.etag = NULL;
        if (version->type != REDIS_REPLY_NIL && !r->value.etag) {
                state_result_fail(r, -ENOMEM, "out of memory");
                return;
        }

        if (pttl->type == REDIS_REPLY_INTEGER && pttl->integer > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                r->value.expire_realtime_usec = (uint64_t) ts.tv_sec * 1000000ULL +
                                                (uint64_t) ts.tv_nsec / 1000 +
                                                (uint64_t) pttl->integer * 1000ULL;
        }
        r->value.found = true;
}

static void parse_reply(const RedisOp *op, StateResult *r, const redisReply *reply) {
        if (reply->type == REDIS_REPLY_ERROR) {
                reply_error(r, reply);
                return;
        }

        switch (op->kind) {
        case REDIS_OP_GET:
                parse_get(r, reply);
                return;
        case REDIS_OP_SET:
                if (reply->type != REDIS_REPLY_INTEGER)
                        state_result_fail(r, -EIO, "redis: unexpected reply to set");
                else if (reply->integer == 0)
                        state_result_fail(r, -ESTALE, "%s",
                                          op->mode == REDIS_SET_ABSENT ? "first-write: the key already exists"
                                                                       : "etag mismatch");
                return;
        case REDIS_OP_DEL:
                if (reply->type != REDIS_REPLY_INTEGER)
                        state_result_fail(r, -EIO, "redis: unexpected reply to delete");
                else if (op->conditional && reply->integer == 0)
                        state_result_fail(r, -ESTALE, "etag mismatch");
                return;
        case REDIS_OP_TX:
                if (reply->type != REDIS_REPLY_INTEGER)
                        state_result_fail(r, -EIO, "redis: unexpected reply to transaction");
                else if (reply->integer < 0)
                        state_result_fail(r, -ESTALE,
                                          "transaction op %lld: etag mismatch or first-write conflict, nothing applied",
                                          -reply->integer - 1);
                return;
        }
        state_result_fail(r, -EIO, "internal error: unknown op");
}

static void on_op_reply(redisAsyncContext *ac, void *reply_, void *privdata) {
        RedisOp *op = privdata;
        RedisStore *s = op->store;
        StateResult r = {};

        if (!s) {
                /* close() already answered it. */
                free(op);
                return;
        }
        list_remove(&s->pending, op);

        if (reply_)
                parse_reply(op, &r, reply_);
        else if (s->closing)
                state_result_fail(&r, -ECANCELED, "state store closed");
        else if (s->fail_error)
                state_result_fail(&r, s->fail_error, "%s", s->fail_message ?: "redis connection dropped");
        else if (!(ac->c.flags & REDIS_CONNECTED))
                state_result_fail(&r, -ENOTCONN, "redis connection failed: %s",
                                  ac->errstr ?: (ac->c.errstr[0] ? ac->c.errstr : "unknown error"));
        else
                state_result_fail(&r, -ENOTCONN, "redis connection lost: %s",
                                  ac->errstr ?: (ac->c.errstr[0] ? ac->c.errstr : "connection closed"));

        op_finish(op, &r);
}

/* ---- watchdog: connect and command deadlines ---- */

static uint64_t watchdog_next(RedisStore *s) {
        uint64_t t = UINT64_MAX;
        if (s->ac && !s->ready)
                t = s->connect_deadline;
        if (s->ac && s->pending.head)
                t = MIN(t, s->pending.head->deadline);
        return t;
}

static void watchdog_arm(RedisStore *s) {
        int enabled = SD_EVENT_OFF;
        uint64_t t, armed;

        if (!s->watchdog)
                return;
        t = watchdog_next(s);
        if (t == UINT64_MAX)
                return; /* an armed watchdog finds nothing to do and stays off */
        if (sd_event_source_get_enabled(s->watchdog, &enabled) >= 0 && enabled != SD_EVENT_OFF &&
            sd_event_source_get_time(s->watchdog, &armed) >= 0 && armed <= t)
                return; /* fires earlier and re-arms itself */
        (void) sd_event_source_set_time(s->watchdog, t);
        (void) sd_event_source_set_enabled(s->watchdog, SD_EVENT_ONESHOT);
}

/* Drops the connection on our own initiative; in-flight calls get error + message. May run done callbacks. */
static void connection_abort(RedisStore *s, int error, const char *message) {
        redisAsyncContext *ac = s->ac;

        if (!ac)
                return;
        set_string(&s->last_error, strdup(message));
        s->fail_error = error;
        set_string(&s->fail_message, strdup(message));
        redisAsyncFree(ac);
        /* s may be gone here when not inside a hiredis callback: callers hold a Liveness. */
}

static int on_watchdog(sd_event_source *es, uint64_t usec, void *userdata) {
        RedisStore *s = userdata;
        uint64_t now = now_monotonic(s);
        char buf[128];

        if (s->ac && !s->ready && now >= s->connect_deadline) {
                snprintf(buf, sizeof(buf), "redis connection failed: not connected within %" PRIu64 " ms",
                         s->dial_timeout_usec / 1000);
        } else if (s->ac && s->pending.head && now >= s->pending.head->deadline) {
                snprintf(buf, sizeof(buf), "redis: no reply within %" PRIu64 " ms, connection reset",
                         s->timeout_usec / 1000);
        } else {
                watchdog_arm(s);
                return 0;
        }

        Liveness *l = liveness_ref(s->liveness);
        connection_abort(s, s->ready ? -ETIMEDOUT : -ENOTCONN, buf);
        (void) liveness_unref(l); /* nothing more to do either way */
        return 0;
}

/* ---- sd-event adapter ---- */

static void io_update(RedisStore *s, uint32_t events) {
        if (events == s->io_events || !s->io)
                return;
        s->io_events = events;
        (void) sd_event_source_set_io_events(s->io, events);
}

static void ev_add_read(void *privdata) {
        RedisStore *s = privdata;
        if (s)
                io_update(s, s->io_events | EPOLLIN);
}

static void ev_del_read(void *privdata) {
        RedisStore *s = privdata;
        if (s)
                io_update(s, s->io_events & ~(uint32_t) EPOLLIN);
}

static void ev_add_write(void *privdata) {
        RedisStore *s = privdata;
        if (s)
                io_update(s, s->io_events | EPOLLOUT);
}

static void ev_del_write(void *privdata) {
        RedisStore *s = privdata;
        if (s)
                io_update(s, s->io_events & ~(uint32_t) EPOLLOUT);
}

static int schedule_reconnect(RedisStore *s);

/* hiredis is about to free the context: forget it, and plan the next attempt. */
static void ev_cleanup(void *privdata) {
        RedisStore *s = privdata;

        if (!s)
                return;
        if (!s->last_error && s->ac) {
                const redisAsyncContext *ac = s->ac;
                char *m = NULL;
                if (asprintf(&m, "redis connection lost: %s",
                             ac->errstr ?: (ac->c.errstr[0] ? ac->c.errstr : "connection closed")) < 0)
                        m = NULL;
                s->last_error = m;
        }
        s->io = sd_event_source_disable_unref(s->io);
        s->io_events = 0;
        s->ac = NULL;
        s->ready = false;
        s->handshake_pending = 0;
        s->fail_error = 0;
        s->fail_message = mfree_str(s->fail_message);
        if (!s->closing)
                (void) schedule_reconnect(s);
}

static int on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        RedisStore *s = userdata;
        redisAsyncContext *ac = s->ac;
        Liveness *l;

        if (!ac)
                return 0;

        l = liveness_ref(s->liveness);
        if (revents & (EPOLLIN | EPOLLERR | EPOLLHUP))
                redisAsyncHandleRead(ac);
        if (l->alive && (revents & EPOLLOUT) && s->ac == ac)
                redisAsyncHandleWrite(ac);
        if (liveness_unref(l))
                watchdog_arm(s);
        return 0;
}

/* ---- connecting ---- */

static void handshake_check(RedisStore *s) {
        if (s->handshake_pending > 0 || !s->ac || !(s->ac->c.flags & REDIS_CONNECTED))
                return;
        s->ready = true;
        s->backoff_usec = 0;
        s->last_error = mfree_str(s->last_error);
}

static void on_handshake_reply(redisAsyncContext *ac, void *reply_, void *privdata) {
        RedisStore *s = ac->data;
        redisReply *reply = reply_;
        const char *what = privdata;
        char buf[600];

        if (!s || !reply)
                return; /* closing, or the connection died: the cleanup hook handles it */

        if (reply->type == REDIS_REPLY_ERROR) {
                snprintf(buf, sizeof(buf), "redis %s failed: %.*s", what, (int) MIN(reply->len, 512),
                         reply->str ?: "");
                /* We are inside a reply callback: hiredis frees the context once we return. */
                connection_abort(s, -ENOTCONN, buf);
                return;
        }
        assert(s->handshake_pending > 0);
        s->handshake_pending--;
        handshake_check(s);
}

static void on_connect(const redisAsyncContext *cac, int status) {
        redisAsyncContext *ac = (redisAsyncContext *) cac;
        RedisStore *s = ac->data;
        if (!s)
                return;
        if (status != REDIS_OK) {
                char *m = NULL;
                if (asprintf(&m, "redis connection failed: %s", ac->c.errstr[0] ? ac->c.errstr : "unknown error") < 0)
                        m = NULL;
                set_string(&s->last_error, m);
                return; /* hiredis frees the context next; ev_cleanup schedules a retry */
        }

        handshake_check(s);
}

/* AUTH and SELECT go first into the output buffer, ahead of anything queued while connecting. */
static void handshake_send(RedisStore *s, redisAsyncContext *ac) {
        char buf[32];

        s->handshake_pending = 0;
        if (s->password) {
                const char *argv[3] = { "AUTH" };
                size_t argvlen[3] = { 4 };
                int n = 1;
                if (s->username) {
                        argv[n] = s->username;
                        argvlen[n++] = strlen(s->username);
                }
                argv[n] = s->password;
                argvlen[n++] = strlen(s->password);
                if (redisAsyncCommandArgv(ac, on_handshake_reply, (void *) "AUTH", n, argv, argvlen) == REDIS_OK)
                        s->handshake_pending++;
        }
        if (s->db > 0) {
                snprintf(buf, sizeof(buf), "%u", s->db);
                const char *argv[2] = { "SELECT", buf };
                size_t argvlen[2] = { 6, strlen(buf) };
                if (redisAsyncCommandArgv(ac, on_handshake_reply, (void *) "SELECT", 2, argv, argvlen) == REDIS_OK)
                        s->handshake_pending++;
        }
}

static void connection_start(RedisStore *s) {
        redisAsyncContext *ac;
        int r;

        assert(!s->ac);

        ac = s->unix_path ? redisAsyncConnectUnix(s->unix_path) : redisAsyncConnect(s->host, s->port);
        if (!ac) {
                set_string(&s->last_error, strdup("redis connection failed: out of memory"));
                (void) schedule_reconnect(s);
                return;
        }
        if (ac->err) {
                char *m = NULL;
                if (asprintf(&m, "redis connection failed: %s", ac->errstr ?: "unknown error") < 0)
                        m = NULL;
                set_string(&s->last_error, m);
                redisAsyncFree(ac); /* no hooks or callbacks installed yet */
                (void) schedule_reconnect(s);
                return;
        }

        r = sd_event_add_io(s->base.event, &s->io, ac->c.fd, EPOLLOUT, on_io, s);
        if (r < 0) {
                char *m = NULL;
                if (asprintf(&m, "redis connection failed: cannot watch socket: %s", strerror(-r)) < 0)
                        m = NULL;
                set_string(&s->last_error, m);
                redisAsyncFree(ac);
                (void) schedule_reconnect(s);
                return;
        }
        s->io_events = EPOLLOUT; /* connect(2) completes as writable */

        ac->data = s;
        ac->ev.data = s;
        ac->ev.addRead = ev_add_read;
        ac->ev.delRead = ev_del_read;
        ac->ev.addWrite = ev_add_write;
        ac->ev.delWrite = ev_del_write;
        ac->ev.cleanup = ev_cleanup;
        (void) redisAsyncSetConnectCallback(ac, on_connect);

        s->ac = ac;
        s->ready = false;
        handshake_send(s, ac);
        s->connect_deadline = now_monotonic(s) + s->dial_timeout_usec;
        watchdog_arm(s);
}

static int on_reconnect(sd_event_source *es, uint64_t usec, void *userdata) {
        RedisStore *s = userdata;

        if (!s->ac && !s->closing)
                connection_start(s);
        return 0;
}

static int schedule_reconnect(RedisStore *s) {
        int r;

        s->backoff_usec = s->backoff_usec == 0 ? REDIS_BACKOFF_MIN_USEC
                                                : MIN(s->backoff_usec * 2, REDIS_BACKOFF_MAX_USEC);
        uint64_t t = now_monotonic(s) + s->backoff_usec;

        if (!s->reconnect_timer)
                return sd_event_add_time(s->base.event, &s->reconnect_timer, CLOCK_MONOTONIC, t, 10 * 1000,
                                         on_reconnect, s);
        r = sd_event_source_set_time(s->reconnect_timer, t);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(s->reconnect_timer, SD_EVENT_ONESHOT);
}

/* ---- submitting ---- */

static int op_not_connected(RedisStore *s, RedisOp *op) {
        return op_defer(s, op, -ENOTCONN, "redis not connected: %s",
                        s->last_error ?: "connection not established yet");
}

/* Hands the command to hiredis, or answers -ENOTCONN on the next iteration. Consumes op on success. */
static int op_submit(RedisStore *s, RedisOp *op, int argc, const char **argv, const size_t *argvlen) {
        if (!s->ac || redisAsyncCommandArgv(s->ac, on_op_reply, op, argc, argv, argvlen) != REDIS_OK)
                return op_not_connected(s, op);

        op->deadline = now_monotonic(s) + s->timeout_usec;
        list_append(&s->pending, op);
        watchdog_arm(s);
        return 0;
}

/* A decimal integer etag, normalized into buf (leading zeros dropped). */
static int etag_normalize(const char *etag, char buf[static REDIS_ETAG_MAX + 1]) {
        if (!etag || !*etag || strlen(etag) > REDIS_ETAG_MAX)
                return -EINVAL;
        for (const char *p = etag; *p; p++)
                if (*p < '0' || *p > '9')
                        return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(etag, NULL, 10);
        if (errno != 0)
                return -EINVAL;
        snprintf(buf, REDIS_ETAG_MAX + 1, "%llu", v);
        return 0;
}

static int64_t op_ttl(const RedisStore *s, const StateOp *op) {
        /* 0: none given, the store default applies; < 0: explicitly never. */
        if (op->ttl_sec > 0)
                return op->ttl_sec;
        if (op->ttl_sec == 0 && s->default_ttl_sec > 0)
                return s->default_ttl_sec;
        return 0;
}

static int redis_get(StateStore *base, const char *key, StateDoneFn done, void *userdata) {
        RedisStore *s = (RedisStore *) base;
        RedisOp *op;
        int r;

        assert(key && done);
        if (s->closing)
                return -ECANCELED;
        op = op_new(s, REDIS_OP_GET, done, userdata);
        if (!op)
                return -ENOMEM;

        const char *argv[] = { "EVAL", script_get, "1", key };
        const size_t argvlen[] = { 4, sizeof(script_get) - 1, 1, strlen(key) };
        r = op_submit(s, op, (int) ELEMENTSOF(argv), argv, argvlen);
        if (r < 0)
                free(op);
        return r;
}

static int redis_write(StateStore *base, const StateOp *sop, StateDoneFn done, void *userdata) {
        RedisStore *s = (RedisStore *) base;
        char etag[REDIS_ETAG_MAX + 1] = "", ttl[32];
        RedisOp *op;
        int r;

        assert(sop && sop->key && done);
        if (s->closing)
                return -ECANCELED;

        op = op_new(s, sop->kind == STATE_OP_DELETE ? REDIS_OP_DEL : REDIS_OP_SET, done, userdata);
        if (!op)
                return -ENOMEM;

        if (sop->etag && etag_normalize(sop->etag, etag) < 0) {
                r = op_defer(s, op, -EINVAL, "invalid etag: must be a decimal integer");
                if (r < 0)
                        free(op);
                return r;
        }

        if (sop->kind == STATE_OP_DELETE) {
                op->conditional = sop->etag;
                if (op->conditional) {
                        const char *argv[] = { "EVAL", script_del, "1", sop->key, etag };
                        const size_t argvlen[] = { 4, sizeof(script_del) - 1, 1, strlen(sop->key), strlen(etag) };
                        r = op_submit(s, op, (int) ELEMENTSOF(argv), argv, argvlen);
                } else {
                        const char *argv[] = { "DEL", sop->key };
                        const size_t argvlen[] = { 3, strlen(sop->key) };
                        r = op_submit(s, op, (int) ELEMENTSOF(argv), argv, argvlen);
                }
        } else {
                op->mode = sop->etag ? REDIS_SET_ETAG
                           : sop->concurrency == STATE_CONCURRENCY_FIRST_WRITE ? REDIS_SET_ABSENT
                                                                                : REDIS_SET_ANY;
                char mode[2] = { (char) op->mode, 0 };
                snprintf(ttl, sizeof(ttl), "%" PRId64, op_ttl(s, sop));
                const char *argv[] = { "EVAL", script_set, "1", sop->key, mode, etag,
                                       sop->value_len > 0 ? sop->value : "", ttl };
                const size_t argvlen[] = { 4, sizeof(script_set) - 1, 1, strlen(sop->key), 1, strlen(etag),
                                           sop->value_len, strlen(ttl) };
                r = op_submit(s, op, (int) ELEMENTSOF(argv), argv, argvlen);
        }
        if (r < 0)
                free(op);
        return r;
}

static int redis_transact(StateStore *base, const StateOp *ops, size_t n_ops, StateDoneFn done, void *userdata) {
        RedisStore *s = (RedisStore *) base;
        _cleanup_free_ const char **argv = NULL;
        _cleanup_free_ size_t *argvlen = NULL;
        _cleanup_free_ char *strs = NULL; /* per op: mode(2) etag(21) ttl(32) */
        const size_t stride = 2 + (REDIS_ETAG_MAX + 1) + 32;
        RedisOp *op;
        int r;

        assert(ops || n_ops == 0);
        assert(done);
        if (s->closing)
                return -ECANCELED;
        if (n_ops > (INT_MAX - 3) / 6)
                return -E2BIG;

        op = op_new(s, REDIS_OP_TX, done, userdata);
        if (!op)
                return -ENOMEM;

        size_t argc = 3 + n_ops * 6;
        argv = calloc(argc, sizeof(*argv));
        argvlen = calloc(argc, sizeof(*argvlen));
        strs = calloc(MAX(n_ops, 1), stride);
        if (!argv || !argvlen || !strs) {
                free(op);
                return -ENOMEM;
        }

        char nkeys[32];
        snprintf(nkeys, sizeof(nkeys), "%zu", n_ops);
        argv[0] = "EVAL";
        argv[1] = script_tx;
        argv[2] = nkeys;

        for (size_t i = 0; i < n_ops; i++) {
                const StateOp *o = &ops[i];
                char *mode = strs + i * stride, *etag = mode + 2, *ttl = etag + REDIS_ETAG_MAX + 1;
                size_t a = 3 + n_ops + i * 5;

                assert(o->key);
                if (o->etag && etag_normalize(o->etag, etag) < 0) {
                        r = op_defer(s, op, -EINVAL, "invalid etag in transaction op %zu: must be a decimal integer", i);
                        if (r < 0)
                                free(op);
                        return r;
                }
                mode[0] = o->etag ? REDIS_SET_ETAG
                          : (o->kind == STATE_OP_UPSERT && o->concurrency == STATE_CONCURRENCY_FIRST_WRITE)
                                  ? REDIS_SET_ABSENT
                                  : REDIS_SET_ANY;
                snprintf(ttl, 32, "%" PRId64, o->kind == STATE_OP_UPSERT ? op_ttl(s, o) : 0);

                argv[3 + i] = o->key;
                argvlen[3 + i] = strlen(o->key);
                argv[a] = o->kind == STATE_OP_DELETE ? "d" : "u";
                argv[a + 1] = mode;
                argv[a + 2] = etag;
                argv[a + 3] = o->kind == STATE_OP_UPSERT && o->value_len > 0 ? o->value : "";
                argv[a + 4] = ttl;
                argvlen[a] = 1;
                argvlen[a + 1] = 1;
                argvlen[a + 2] = strlen(etag);
                argvlen[a + 3] = o->kind == STATE_OP_UPSERT ? o->value_len : 0;
                argvlen[a + 4] = strlen(ttl);
        }
        argvlen[0] = 4;
        argvlen[1] = sizeof(script_tx) - 1;
        argvlen[2] = strlen(nkeys);

        r = op_submit(s, op, (int) argc, argv, argvlen);
        if (r < 0)
                free(op);
        return r;
}

/* ---- open / close ---- */

static int parse_host(RedisStore *s, const char *v, char **reterr_msg) {
        if (v[0] == '/') {
                s->unix_path = strdup(v);
                return s->unix_path ? 0 : -ENOMEM;
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

        s->port = REDIS_DEFAULT_PORT;
        if (colon) {
                uint16_t port;
                if (parse_port(colon + 1, &port) < 0)
                        goto bad;
                s->port = port;
        }
        s->host = strndup(hs, (size_t) (he - hs));
        return s->host ? 0 : -ENOMEM;

bad:
        if (asprintf(reterr_msg, "redisHost: invalid value '%s' (expected host:port or a socket path)", v) < 0)
                *reterr_msg = NULL;
        return -EINVAL;
}

static int fail_field(char **reterr_msg, int r, const char *fmt, ...) _printf_(3, 4);
static int fail_field(char **reterr_msg, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(reterr_msg, fmt, ap) < 0)
                *reterr_msg = NULL;
        va_end(ap);
        return r;
}

static int parse_duration_field(const Component *c, const char *name, uint64_t *ret, char **reterr_msg) {
        const char *v = component_get_string(c, name);
        if (!v)
                return 0;
        if (parse_duration_usec(v, ret) < 0 || *ret == 0)
                return fail_field(reterr_msg, -EINVAL, "%s: invalid duration '%s'", name, v);
        return 0;
}

static void redis_free_config(RedisStore *s) {
        s->host = mfree_str(s->host);
        s->unix_path = mfree_str(s->unix_path);
        s->username = mfree_str(s->username);
        s->password = erase_and_free(s->password);
}

static int redis_open(StateStore *base, char **reterr_msg) {
        RedisStore *s = (RedisStore *) base;
        const Component *c = base->component;
        const char *v;
        int r;

        *reterr_msg = NULL;
        s->timeout_usec = REDIS_DEFAULT_TIMEOUT_USEC;
        s->dial_timeout_usec = REDIS_DEFAULT_DIAL_TIMEOUT_USEC;

        v = component_get_string(c, "enableTLS");
        if (v) {
                r = parse_boolean(v);
                if (r < 0)
                        return fail_field(reterr_msg, -EINVAL, "enableTLS: invalid boolean '%s'", v);
                if (r > 0)
                        return fail_field(reterr_msg, -EOPNOTSUPP, "enableTLS: TLS not supported yet");
        }
        v = component_get_string(c, "redisType");
        if (v && !streq(v, "node"))
                return fail_field(reterr_msg, -EOPNOTSUPP, "redisType: only 'node' is supported, not '%s'", v);
        v = component_get_string(c, "failover");
        if (v && parse_boolean(v) != 0)
                return fail_field(reterr_msg, -EOPNOTSUPP, "failover: sentinel failover is not supported");

        v = component_get_string(c, "redisHost");
        if (!v || !*v)
                return fail_field(reterr_msg, -EINVAL, "redisHost: required metadata field is missing");
        r = parse_host(s, v, reterr_msg);
        if (r < 0)
                goto fail;

        v = component_get_string(c, "redisDB");
        if (v) {
                char *end;
                errno = 0;
                unsigned long db = strtoul(v, &end, 10);
                if (errno != 0 || end == v || *end || v[0] == '-' || db > INT_MAX) {
                        r = fail_field(reterr_msg, -EINVAL, "redisDB: invalid database number '%s'", v);
                        goto fail;
                }
                s->db = (unsigned) db;
        }

        v = component_get_string(c, "ttlInSeconds");
        if (v) {
                char *end;
                errno = 0;
                long long t = strtoll(v, &end, 10);
                if (errno != 0 || end == v || *end) {
                        r = fail_field(reterr_msg, -EINVAL, "ttlInSeconds: invalid integer '%s'", v);
                        goto fail;
                }
                s->default_ttl_sec = t;
        }

        r = parse_duration_field(c, "timeout", &s->timeout_usec, reterr_msg);
        if (r >= 0)
                r = parse_duration_field(c, "readTimeout", &s->timeout_usec, reterr_msg);
        if (r >= 0)
                r = parse_duration_field(c, "dialTimeout", &s->dial_timeout_usec, reterr_msg);
        if (r < 0)
                goto fail;

        v = component_get_string(c, "redisUsername");
        if (v && *v && !(s->username = strdup(v))) {
                r = -ENOMEM;
                goto fail;
        }
        v = component_get_string(c, "redisPassword");
        if (v && *v && !(s->password = strdup(v))) {
                r = -ENOMEM;
                goto fail;
        }

        s->liveness = new0_liveness();
        if (!s->liveness) {
                r = -ENOMEM;
                goto fail;
        }

        r = sd_event_add_time(base->event, &s->watchdog, CLOCK_MONOTONIC, 0, 10 * 1000, on_watchdog, s);
        if (r < 0) {
                r = fail_field(reterr_msg, r, "cannot create timer: %s", strerror(-r));
                goto fail;
        }
        (void) sd_event_source_set_enabled(s->watchdog, SD_EVENT_OFF);

        /* Does not wait: a server that is not up yet only makes calls fail with -ENOTCONN. */
        connection_start(s);
        return 0;

fail:
        if (r == -ENOMEM && !*reterr_msg)
                *reterr_msg = strdup("out of memory");
        s->watchdog = sd_event_source_disable_unref(s->watchdog);
        s->liveness = mfree_liveness(s->liveness);
        redis_free_config(s);
        return r;
}

static void redis_close(StateStore *base) {
        RedisStore *s = (RedisStore *) base;
        RedisOp *op;

        s->closing = true;
        if (s->liveness) {
                s->liveness->alive = false;
                (void) liveness_unref(s->liveness);
                s->liveness = NULL;
        }

        s->reconnect_timer = sd_event_source_disable_unref(s->reconnect_timer);
        s->watchdog = sd_event_source_disable_unref(s->watchdog);

        if (s->ac) {
                redisAsyncContext *ac = s->ac;

                /* Outside a hiredis callback this runs every pending callback (-ECANCELED) and ev_cleanup now. */
                redisAsyncFree(ac);
                if (s->ac == ac) {
                        /* Inside one: hiredis frees it once that callback returns; cut it loose from us. */
                        ac->data = NULL;
                        ac->ev.data = NULL;
                        s->io = sd_event_source_disable_unref(s->io);
                        s->ac = NULL;
                }
        }

        /* Calls hiredis still holds (postponed free): answer now, hiredis frees the op later. */
        while ((op = s->pending.head)) {
                StateResult r = {};
                list_remove(&s->pending, op);
                op->store = NULL;
                state_result_fail(&r, -ECANCELED, "state store closed");
                op->done(&r, op->userdata);
                state_result_done(&r);
        }
        while ((op = s->deferred.head)) {
                StateResult r = {};
                list_remove(&s->deferred, op);
                op->defer = sd_event_source_disable_unref(op->defer);
                state_result_done(&op->result);
                state_result_fail(&r, -ECANCELED, "state store closed");
                op_finish(op, &r);
        }

        s->io = sd_event_source_disable_unref(s->io);
        redis_free_config(s);
        s->last_error = mfree_str(s->last_error);
        s->fail_message = mfree_str(s->fail_message);
}

const StateDriver state_redis_driver = {
        .type = "state.redis",
        .alias = NULL,
        .abi = STATE_DRIVER_ABI,
        .instance_size = sizeof(RedisStore),
        .features = STATE_FEATURE_ETAG | STATE_FEATURE_TRANSACTIONAL | STATE_FEATURE_TTL,
        .open = redis_open,
        .close = redis_close,
        .get = redis_get,
        .write = redis_write,
        .transact = redis_transact,
};
