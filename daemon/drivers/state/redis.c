/* SPDX-License-Identifier: Apache-2.0 */
/*
 * state.redis: Dapr's Redis state store on hiredis' async API, driven by the
 * daemon's sd-event loop through RedisConn (../redis-common.h), which it
 * shares with pubsub.redis.
 *
 * Data model (Dapr's): every key is a hash with the fields `data` (the value
 * bytes) and `version` (an integer, the etag). Conditional writes and
 * transactions are Lua scripts run with EVAL, so each is atomic on the
 * server; a transaction checks every condition (in order, simulating the
 * effect of the earlier ops) before it writes anything. Redis expires keys
 * itself, so no purge timer is needed.
 *
 * Connection (RedisConn): opened at open() without waiting; AUTH/SELECT are
 * pipelined right after connect. Commands issued while connecting are queued
 * behind them. When the connection is lost every in-flight call fails with
 * -ENOTCONN, and a timer reconnects with backoff (100 ms doubling to 5 s);
 * while no connection exists calls fail fast with -ENOTCONN. A watchdog
 * bounds connecting (dialTimeout) and every command (timeout / readTimeout):
 * when the oldest command has no reply in time the connection is dropped
 * (its calls get -ETIMEDOUT) and re-established. A done callback may close
 * the store; RedisConn allows that from inside its callbacks.
 */
#include <assert.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../dl-hiredis.h"
#include "../redis-common.h"
#include "driver.h"

#define REDIS_ETAG_MAX 20 /* "18446744073709551615" */


/*
 * Upsert. KEYS[1] key; ARGV: mode ("0" unconditional, "1" only if absent,
 * "2" only if absent or version == ARGV[2]), etag, value, ttl seconds (> 0: EXPIRE,
 * else PERSIST). Returns the new version, or 0 when the condition failed.
 *
 * An etag on a key that does not exist is no conflict: Dapr's state.redis
 * (components-contrib state/redis, setDefaultQuery and delDefaultQuery) saves
 * and deletes then as if none was given, unlike its SQL and in-memory stores.
 */
static const char script_set[] =
        "local m = ARGV[1]\n"
        "if m == '1' then\n"
        "  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
        "elseif m == '2' then\n"
        "  local v = redis.call('HGET', KEYS[1], 'version')\n"
        "  if v and v ~= ARGV[2] then return 0 end\n"
        "end\n"
        "redis.call('HSET', KEYS[1], 'data', ARGV[3])\n"
        "local v = redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
        "if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
        "else redis.call('PERSIST', KEYS[1]) end\n"
        "return v\n";

/* Delete only if absent or version == ARGV[1]. Returns 1, or 0 when the etag did not match. */
static const char script_del[] =
        "local v = redis.call('HGET', KEYS[1], 'version')\n"
        "if v and v ~= ARGV[1] then return 0 end\n"
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
        "  if mode == '2' and s.v and s.v ~= etag then return -i end\n"
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
        RedisOpKind kind;
        RedisSetMode mode;             /* REDIS_OP_SET */
        bool conditional;              /* REDIS_OP_DEL: with etag */
        StateDoneFn done;
        void *userdata;
};

struct RedisStore {
        StateStore base;

        RedisConfig config;
        int64_t default_ttl_sec;
        uint64_t timeout_usec;

        RedisConn conn;
        bool closing;
};

extern const StateDriver state_redis_driver;

/* ---- completion ---- */

static void op_finish(RedisOp *op, StateResult *r) {
        StateDoneFn done = op->done;
        void *userdata = op->userdata;

        free(op);
        done(r, userdata);
        state_result_done(r);
}

static RedisOp *op_new(RedisOpKind kind, StateDoneFn done, void *userdata) {
        RedisOp *op = calloc(1, sizeof(*op));
        if (!op)
                return NULL;
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

static void on_op_reply(const redisReply *reply, int error, const char *message, void *userdata) {
        RedisOp *op = userdata;
        StateResult r = {};

        if (reply)
                parse_reply(op, &r, reply);
        else
                state_result_fail(&r, error, "%s", message);
        op_finish(op, &r);
}

/* ---- submitting ---- */

/* Hands the command to the connection (which answers -ENOTCONN itself when there is none). Consumes op on success. */
static int op_submit(RedisStore *s, RedisOp *op, int argc, const char **argv, const size_t *argvlen) {
        return redis_conn_send(&s->conn, s->timeout_usec, on_op_reply, op, argc, argv, argvlen);
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
        op = op_new(REDIS_OP_GET, done, userdata);
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

        op = op_new(sop->kind == STATE_OP_DELETE ? REDIS_OP_DEL : REDIS_OP_SET, done, userdata);
        if (!op)
                return -ENOMEM;

        if (sop->etag && etag_normalize(sop->etag, etag) < 0) {
                r = redis_conn_fail_later(&s->conn, -EINVAL, "invalid etag: must be a decimal integer",
                                          on_op_reply, op);
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

        op = op_new(REDIS_OP_TX, done, userdata);
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
                        char m[96];
                        snprintf(m, sizeof(m), "invalid etag in transaction op %zu: must be a decimal integer", i);
                        r = redis_conn_fail_later(&s->conn, -EINVAL, m, on_op_reply, op);
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

static int redis_open(StateStore *base, char **reterr_msg) {
        RedisStore *s = (RedisStore *) base;
        const Component *c = base->component;
        const char *v;
        int r;

        *reterr_msg = NULL;
        s->timeout_usec = REDIS_DEFAULT_TIMEOUT_USEC;

        /* hiredis is mapped by the first Redis component, not at daemon start. */
        r = dlopen_hiredis("state.redis", reterr_msg);
        if (r < 0)
                return r;
        r = redis_config_parse(&s->config, c, reterr_msg);
        if (r < 0)
                return r;

        v = component_get_string(c, "ttlInSeconds");
        if (v) {
                char *end;
                errno = 0;
                long long t = strtoll(v, &end, 10);
                if (errno != 0 || end == v || *end) {
                        r = redis_fail_field(reterr_msg, -EINVAL, "ttlInSeconds: invalid integer '%s'", v);
                        goto fail;
                }
                s->default_ttl_sec = t;
        }

        r = redis_parse_duration_field(c, "timeout", false, &s->timeout_usec, reterr_msg);
        if (r >= 0)
                r = redis_parse_duration_field(c, "readTimeout", false, &s->timeout_usec, reterr_msg);
        if (r < 0)
                goto fail;

        r = redis_conn_init(&s->conn, base->event, &s->config, NULL, NULL);
        if (r < 0) {
                r = redis_fail_field(reterr_msg, r, "cannot set up the connection: %s", strerror(-r));
                goto fail;
        }
        return 0;

fail:
        redis_config_done(&s->config);
        return r;
}

static void redis_close(StateStore *base) {
        RedisStore *s = (RedisStore *) base;

        s->closing = true;
        /* Every call hiredis holds or the connection deferred gets -ECANCELED now. */
        redis_conn_done(&s->conn, "state store closed");
        redis_config_done(&s->config);
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
