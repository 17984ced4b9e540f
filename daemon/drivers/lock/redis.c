/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lock.redis: Dapr's Redis lock store (components-contrib lock/redis),
 * standalone Redis on RedisConn (../redis-common.h), the connection code
 * state.redis and pubsub.redis use. A lease is a plain key holding the
 * owner, set with SET NX EX, so Redis ends it on time by itself. Unlock is
 * one Lua script (atomic on the server): absent, someone else's, or
 * deleted. Keys and values are what Dapr's component writes, so daprd and
 * mooringd sharing one Redis exclude each other.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../dl-hiredis.h"
#include "../redis-common.h"
#include "driver.h"

/* -1: no such lease; -2: another owner's; 1: deleted. */
static const char script_unlock[] =
        "local v = redis.call('GET', KEYS[1])\n"
        "if v == false then return -1 end\n"
        "if v ~= ARGV[1] then return -2 end\n"
        "return redis.call('DEL', KEYS[1])\n";

typedef struct RedisLockStore {
        LockStore base;
        RedisConfig config;
        uint64_t timeout_usec;
        RedisConn conn;
} RedisLockStore;

typedef struct Call {
        bool unlock;
        LockDoneFn done;
        void *userdata;
} Call;

static void on_reply(const redisReply *reply, int error, const char *message, void *userdata) {
        Call *c = userdata;
        LockResult r = {};

        if (!reply)
                lock_result_fail(&r, error ?: -EIO, "redis: %s", message ?: "no reply");
        else if (reply->type == REDIS_REPLY_ERROR)
                lock_result_fail(&r, -EIO, "redis: %.*s", (int) MIN(reply->len, 512), reply->str ?: "");
        else if (!c->unlock)
                /* SET NX answers OK when it set the key and nil when the key was there. */
                r.acquired = reply->type == REDIS_REPLY_STATUS;
        else if (reply->type != REDIS_REPLY_INTEGER)
                lock_result_fail(&r, -EIO, "redis: unexpected reply to unlock");
        else
                r.status = reply->integer == -1   ? LOCK_UNLOCK_NOT_EXIST
                           : reply->integer == -2 ? LOCK_UNLOCK_OTHER_OWNER
                           : reply->integer == 1  ? LOCK_UNLOCK_SUCCESS
                                                  : LOCK_UNLOCK_INTERNAL_ERROR;
        if (r.error < 0)
                r.status = LOCK_UNLOCK_INTERNAL_ERROR;
        c->done(&r, c->userdata);
        lock_result_done(&r);
        free(c);
}

static int send_call(RedisLockStore *s, bool unlock, LockDoneFn done, void *userdata, int argc, const char **argv,
                     const size_t *argvlen) {
        Call *c = calloc(1, sizeof *c);
        int r;
        if (!c)
                return -ENOMEM;
        *c = (Call){ .unlock = unlock, .done = done, .userdata = userdata };
        r = redis_conn_send(&s->conn, s->timeout_usec, on_reply, c, argc, argv, argvlen);
        if (r < 0)
                free(c);
        return r;
}

static int redis_try_lock(LockStore *base, const char *key, const char *owner, int64_t expiry_sec, LockDoneFn done,
                          void *userdata) {
        RedisLockStore *s = (RedisLockStore *) base;
        char ex[32];
        snprintf(ex, sizeof ex, "%" PRId64, expiry_sec);
        const char *argv[] = { "SET", key, owner, "NX", "EX", ex };
        const size_t len[] = { 3, strlen(key), strlen(owner), 2, 2, strlen(ex) };
        return send_call(s, false, done, userdata, 6, argv, len);
}

static int redis_unlock(LockStore *base, const char *key, const char *owner, LockDoneFn done, void *userdata) {
        RedisLockStore *s = (RedisLockStore *) base;
        const char *argv[] = { "EVAL", script_unlock, "1", key, owner };
        const size_t len[] = { 4, sizeof script_unlock - 1, 1, strlen(key), strlen(owner) };
        return send_call(s, true, done, userdata, 5, argv, len);
}

static int redis_open(LockStore *base, char **reterr_msg) {
        RedisLockStore *s = (RedisLockStore *) base;
        const Component *c = base->component;
        int r;

        *reterr_msg = NULL;
        s->timeout_usec = REDIS_DEFAULT_TIMEOUT_USEC;
        r = dlopen_hiredis("lock.redis", reterr_msg);
        if (r < 0)
                return r;
        r = redis_config_parse(&s->config, c, reterr_msg);
        if (r < 0)
                return r;
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

static void redis_close(LockStore *base) {
        RedisLockStore *s = (RedisLockStore *) base;
        redis_conn_done(&s->conn, "lock store closed");
        redis_config_done(&s->config);
}

const LockDriver lock_redis_driver = {
        .type = "lock.redis",
        .abi = LOCK_DRIVER_ABI,
        .instance_size = sizeof(RedisLockStore),
        .open = redis_open,
        .close = redis_close,
        .try_lock = redis_try_lock,
        .unlock = redis_unlock,
};
