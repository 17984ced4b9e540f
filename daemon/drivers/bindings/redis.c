/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bindings.redis (output): create (SET key data, with metadata ttlInSeconds:
 * SET .. EX), get (GET: the stored bytes; nothing when the key is absent),
 * delete (DEL), increment (INCR, with ttlInSeconds an EXPIRE after it), on
 * the connection code the Redis state and pub/sub drivers share
 * (drivers/redis-common.h: same metadata, same reconnects, same deadlines).
 * The key is request metadata `key` (required). Data is stored as daprd
 * stores it: the request's JSON bytes (a JSON string keeps its quotes).
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../dl-hiredis.h"
#include "../redis-common.h"
#include "driver.h"

typedef struct RedisBinding {
        Binding base;
        RedisConfig config;
        RedisConn conn;
        bool conn_up;
        uint64_t timeout_usec;
} RedisBinding;

typedef struct RedisOp {
        RedisBinding *rb;
        BindingDoneFn done;
        void *userdata;
        bool want_value;   /* get: the reply is the answer */
        char *expire_key;  /* increment with a TTL: EXPIRE after the INCR, whose reply ends it */
        char ttl[24];
} RedisOp;

static void op_free(RedisOp *op) {
        free(op->expire_key);
        free(op);
}

static const char *const redis_operations[] = { "create", "get", "delete", "increment", NULL };

static int rb_open(Binding *b, char **reterr_msg) {
        RedisBinding *rb = (RedisBinding *) b;
        int r;

        rb->timeout_usec = REDIS_DEFAULT_TIMEOUT_USEC;
        r = dlopen_hiredis("bindings.redis", reterr_msg);
        if (r < 0)
                return r;
        r = redis_config_parse(&rb->config, b->component, reterr_msg);
        if (r < 0)
                return r;
        r = redis_parse_duration_field(b->component, "readTimeout", false, &rb->timeout_usec, reterr_msg);
        if (r < 0)
                return r;
        r = redis_conn_init(&rb->conn, b->event, &rb->config, NULL, NULL);
        if (r < 0)
                return redis_fail_field(reterr_msg, r, "cannot set up the connection: %s", strerror(-r));
        rb->conn_up = true;
        return 0;
}

static void rb_close(Binding *b) {
        RedisBinding *rb = (RedisBinding *) b;
        if (rb->conn_up)
                redis_conn_done(&rb->conn, "binding closed"); /* pending commands: -ECANCELED */
        redis_config_done(&rb->config);
}

static void on_reply(const redisReply *reply, int error, const char *message, void *userdata) {
        RedisOp *op = userdata;

        if (!reply) {
                op->done(error, message, NULL, op->userdata);
        } else if (reply->type == REDIS_REPLY_ERROR) {
                op->done(-EIO, reply->str, NULL, op->userdata);
        } else if (op->expire_key) {
                /* the INCR answered; the EXPIRE's reply ends the operation */
                char *key = TAKE_PTR(op->expire_key); /* the EXPIRE's reply then ends it */
                const char *ex[] = { "EXPIRE", key, op->ttl };
                size_t exl[] = { 6, strlen(key), strlen(op->ttl) };
                int r = redis_conn_send(&op->rb->conn, op->rb->timeout_usec, on_reply, op, 3, ex, exl);
                free(key); /* hiredis formatted the command already */
                if (r >= 0)
                        return;
                op->done(-ENOMEM, "out of memory", NULL, op->userdata);
        } else if (op->want_value) {
                BindingResponse resp = {};
                if (reply->type == REDIS_REPLY_STRING) {
                        resp.data = reply->str;
                        resp.len = reply->len;
                }
                op->done(0, NULL, &resp, op->userdata);
        } else
                op->done(0, NULL, NULL, op->userdata);
        op_free(op);
}

static int rb_invoke(Binding *b, const BindingRequest *req, BindingDoneFn done, void *userdata,
                       char **reterr_msg) {
        RedisBinding *rb = (RedisBinding *) b;
        const char *key = binding_metadata_get(req->metadata, "key");
        const char *ttl = binding_metadata_get(req->metadata, "ttlInSeconds");
        const char *argv[6];
        size_t argvlen[6];
        int argc = 0, r;
        long long t = 0;

        if (!key || !*key)
                return asprintf(reterr_msg, "metadata 'key' is required") < 0 ? -ENOMEM : -EINVAL;
        if (ttl && *ttl) {
                char *end;
                errno = 0;
                t = strtoll(ttl, &end, 10);
                if (errno || *end || t <= 0)
                        return asprintf(reterr_msg, "metadata 'ttlInSeconds' must be a positive integer") < 0
                                       ? -ENOMEM : -EINVAL;
        }
        RedisOp *op = calloc(1, sizeof *op);
        if (!op)
                return -ENOMEM;
        *op = (RedisOp){ .rb = rb, .done = done, .userdata = userdata };
        char *tbuf = op->ttl;
        snprintf(op->ttl, sizeof op->ttl, "%lld", t);
#define ARG(s, n) (argv[argc] = (s), argvlen[argc++] = (n))
        if (streq(req->operation, "create")) {
                ARG("SET", 3);
                ARG(key, strlen(key));
                ARG(req->len ? req->data : "", req->len);
                if (t > 0) {
                        ARG("EX", 2);
                        ARG(tbuf, strlen(tbuf));
                }
        } else if (streq(req->operation, "get")) {
                op->want_value = true;
                ARG("GET", 3);
                ARG(key, strlen(key));
        } else if (streq(req->operation, "delete")) {
                ARG("DEL", 3);
                ARG(key, strlen(key));
        } else {
                ARG("INCR", 4);
                ARG(key, strlen(key));
                if (t > 0 && !(op->expire_key = strdup(key))) {
                        op_free(op);
                        return -ENOMEM;
                }
        }
#undef ARG
        r = redis_conn_send(&rb->conn, rb->timeout_usec, on_reply, op, argc, argv, argvlen);
        if (r < 0)
                op_free(op);
        return r;
}

const BindingDriver binding_redis_driver = {
        .type = "bindings.redis",
        .abi = BINDING_DRIVER_ABI,
        .instance_size = sizeof(RedisBinding),
        .operations = redis_operations,
        .open = rb_open,
        .close = rb_close,
        .invoke = rb_invoke,
};
