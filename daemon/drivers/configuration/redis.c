/* SPDX-License-Identifier: Apache-2.0 */
/*
 * configuration.redis: Dapr's Redis configuration store (components-contrib
 * configuration/redis). An item is a plain string key whose value is
 * "<value>||<version>" (or just "<value>"); other key types are skipped, and
 * so are empty values, as daprd does. Changes arrive as keyspace
 * notifications: like daprd, the store turns them on (CONFIG SET
 * notify-keyspace-events KA, ignored where CONFIG is refused) and listens on
 * __keyspace@<db>__:* on a second connection; a "set" is read back, a
 * "del"/"expired"/"evicted" is reported as a deletion.
 *
 * Two RedisConns (../redis-common.h): one for commands, one in subscribe
 * mode from open() on, so a subscription is live as soon as it is answered.
 * When the subscribing one reconnects it subscribes again and, since
 * notifications may have been missed meanwhile, every item is read and
 * reported to the watches once.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../dl-hiredis.h"
#include "../redis-common.h"
#include "driver.h"

/* KEYS[]: the keys to read, none: every key. Returns key, value pairs of string keys. */
static const char script_get[] =
        "local ks = KEYS\n"
        "if #ks == 0 then ks = redis.call('KEYS', '*') end\n"
        "local out = {}\n"
        "for _, k in ipairs(ks) do\n"
        "  if redis.call('TYPE', k).ok == 'string' then\n"
        "    local v = redis.call('GET', k)\n"
        "    if v and v ~= '' then out[#out + 1] = k; out[#out + 1] = v end\n"
        "  end\n"
        "end\n"
        "return out\n";

struct ConfigStoreWatch {
        uint64_t seq;          /* in order of creation: a change noticed before it is not its business */
        ConfigStoreChangeFn fn;
        void *userdata;
        ConfigStoreWatch *next, *prev;
};

typedef struct RedisConfigStore {
        ConfigStore base;
        RedisConfig config;
        uint64_t timeout_usec;
        RedisConn conn;        /* commands */
        RedisConn sub;         /* keyspace notifications */
        bool sub_open;
        bool subscribed;
        bool ever_subscribed;  /* a later subscription follows a lost connection: resync */
        char *pattern;         /* __keyspace@<db>__:* */
        ConfigStoreWatch *watches;
        uint64_t watch_seq;    /* of the newest watch */
        bool closing;
} RedisConfigStore;

typedef enum CallKind {
        CALL_GET,      /* answers done */
        CALL_CHANGED,  /* a key changed: report what it holds now */
        CALL_RESYNC,   /* after a reconnect: report everything */
} CallKind;

typedef struct Call {
        RedisConfigStore *store;
        CallKind kind;
        char *key;     /* CALL_CHANGED */
        uint64_t seq;  /* CALL_CHANGED, CALL_RESYNC: the newest watch when the change was noticed */
        ConfigStoreGetFn done;
        void *userdata;
} Call;

/*
 * To the watches that existed when the change was noticed (seq): a
 * notification still on its way when a subscription starts is about what was
 * there before it, which daprd does not post either.
 */
static void report(RedisConfigStore *s, const ConfigItem *items, size_t n, uint64_t seq) {
        for (ConfigStoreWatch *w = s->watches, *next; w; w = next) {
                next = w->next;
                if (w->seq <= seq)
                        w->fn(&s->base, items, n, w->userdata);
        }
}

/* "value||version" -> item (borrowing key; value/version allocated in *ret). */
static int split_value(const char *key, const char *raw, size_t len, ConfigItem *ret) {
        const char *sep = memmem(raw, len, "||", 2);
        *ret = (ConfigItem){ .key = (char *) key };
        ret->value = strndup(raw, sep ? (size_t) (sep - raw) : len);
        if (sep) {
                const char *v = sep + 2, *end = memmem(v, len - (size_t) (v - raw), "||", 2);
                ret->version = strndup(v, end ? (size_t) (end - v) : len - (size_t) (v - raw));
        }
        return ret->value && (!sep || ret->version) ? 0 : -ENOMEM;
}

static void on_reply(const redisReply *reply, int error, const char *message, void *userdata) {
        Call *c = userdata;
        RedisConfigStore *s = c->store;
        ConfigResult r = {};

        if (!reply)
                config_result_fail(&r, error ?: -EIO, "redis: %s", message ?: "no reply");
        else if (reply->type == REDIS_REPLY_ERROR)
                config_result_fail(&r, -EIO, "redis: %.*s", (int) MIN(reply->len, 512), reply->str ?: "");
        else if (reply->type != REDIS_REPLY_ARRAY)
                config_result_fail(&r, -EIO, "redis: unexpected reply");
        else
                for (size_t i = 0; i + 1 < reply->elements; i += 2) {
                        const redisReply *k = reply->element[i], *v = reply->element[i + 1];
                        ConfigItem it;
                        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                                continue;
                        _cleanup_free_ char *key = strndup(k->str, k->len);
                        if (!key || split_value(key, v->str, v->len, &it) < 0 || config_result_add(&r, &it) < 0) {
                                config_result_fail(&r, -ENOMEM, "out of memory");
                                break;
                        }
                        it.key = NULL;
                        config_item_done(&it);
                }
        if (c->kind == CALL_GET)
                c->done(&r, c->userdata);
        else if (r.error == 0 && !s->closing) {
                if (c->kind == CALL_CHANGED && r.n_items == 0) {
                        /* gone again (or emptied, or not a string): as daprd, a deletion */
                        ConfigItem gone = { .key = c->key };
                        report(s, &gone, 1, c->seq);
                } else if (r.n_items > 0)
                        report(s, r.items, r.n_items, c->seq);
        }
        config_result_done(&r);
        free(c->key);
        free(c);
}

static int send_get(RedisConfigStore *s, CallKind kind, char *const *keys, ConfigStoreGetFn done, void *userdata) {
        size_t n = strv_length(keys);
        _cleanup_free_ const char **argv = calloc(n + 3, sizeof *argv);
        _cleanup_free_ size_t *len = calloc(n + 3, sizeof *len);
        char nkeys[24];
        Call *c = calloc(1, sizeof *c);
        int r;

        if (!argv || !len || !c) {
                free(c);
                return -ENOMEM;
        }
        *c = (Call){ .store = s, .kind = kind, .done = done, .userdata = userdata, .seq = s->watch_seq };
        if (kind == CALL_CHANGED && !(c->key = strdup(keys[0]))) {
                free(c);
                return -ENOMEM;
        }
        snprintf(nkeys, sizeof nkeys, "%zu", n);
        argv[0] = "EVAL", len[0] = 4;
        argv[1] = script_get, len[1] = sizeof script_get - 1;
        argv[2] = nkeys, len[2] = strlen(nkeys);
        for (size_t i = 0; i < n; i++)
                argv[3 + i] = keys[i], len[3 + i] = strlen(keys[i]);
        r = redis_conn_send(&s->conn, s->timeout_usec, on_reply, c, (int) n + 3, argv, len);
        if (r < 0) {
                free(c->key);
                free(c);
        }
        return r;
}

static int redis_get(ConfigStore *base, char *const *keys, char *const *metadata, ConfigStoreGetFn done,
                     void *userdata) {
        return send_get((RedisConfigStore *) base, CALL_GET, keys, done, userdata);
}

static void on_ignore(const redisReply *reply, int error, const char *message, void *userdata) {
}

/* Every keyspace event: ["pmessage", pattern, "__keyspace@<db>__:<key>", "<event>"]. */
static void on_keyspace(const redisReply *reply, void *privdata) {
        RedisConfigStore *s = privdata;
        const redisReply *chan, *ev;
        const char *key;

        if (!reply || s->closing || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4)
                return;
        if (reply->element[0]->type != REDIS_REPLY_STRING || strcmp(reply->element[0]->str, "pmessage") != 0)
                return;
        chan = reply->element[2];
        ev = reply->element[3];
        if (chan->type != REDIS_REPLY_STRING || ev->type != REDIS_REPLY_STRING)
                return;
        key = memchr(chan->str, ':', chan->len);
        if (!key)
                return;
        _cleanup_free_ char *k = strndup(key + 1, chan->len - (size_t) (key + 1 - chan->str));
        if (!k)
                return;
        if (streq(ev->str, "del") || streq(ev->str, "expired") || streq(ev->str, "evicted") ||
            streq(ev->str, "rename_from")) {
                ConfigItem gone = { .key = k };
                report(s, &gone, 1, s->watch_seq);
                return;
        }
        char *keys[] = { k, NULL };
        (void) send_get(s, CALL_CHANGED, keys, NULL, NULL);
}

static void subscribe_now(RedisConfigStore *s) {
        const char *cfg[] = { "CONFIG", "SET", "notify-keyspace-events", "KA" };
        const size_t cfglen[] = { 6, 3, 22, 2 };
        const char *argv[] = { "PSUBSCRIBE", s->pattern };
        const size_t len[] = { 10, strlen(s->pattern) };

        if (!redis_conn_is_ready(&s->sub) || s->subscribed)
                return;
        /* daprd turns keyspace events on itself; a server that refuses CONFIG keeps its own setting */
        (void) redis_conn_send(&s->conn, s->timeout_usec, on_ignore, NULL, 4, cfg, cfglen);
        if (redis_conn_subscribe(&s->sub, on_keyspace, s, 2, argv, len) >= 0) {
                s->subscribed = true;
                /* after a lost connection, or when someone subscribed before we listened, what may have
                 * changed meanwhile is reported once; otherwise nothing (daprd sends nothing when a
                 * subscription starts) */
                if (s->ever_subscribed || s->watches)
                        (void) send_get(s, CALL_RESYNC, NULL, NULL, NULL);
                s->ever_subscribed = true;
        }
}

static void on_sub_ready(RedisConn *conn, bool ready, void *userdata) {
        RedisConfigStore *s = userdata;
        s->subscribed = false;
        if (ready)
                subscribe_now(s);
}

static int redis_watch(ConfigStore *base, char *const *keys, char *const *metadata, ConfigStoreChangeFn fn,
                       void *userdata, ConfigStoreWatch **ret, char **reterr_msg) {
        RedisConfigStore *s = (RedisConfigStore *) base;
        ConfigStoreWatch *w = calloc(1, sizeof *w);

        if (!w)
                return -ENOMEM;
        *w = (ConfigStoreWatch){ .seq = ++s->watch_seq, .fn = fn, .userdata = userdata, .next = s->watches };
        if (w->next)
                w->next->prev = w;
        s->watches = w;
        *ret = w;
        return 0;
}

static void redis_unwatch(ConfigStore *base, ConfigStoreWatch *w) {
        RedisConfigStore *s = (RedisConfigStore *) base;
        if (w->prev)
                w->prev->next = w->next;
        else
                s->watches = w->next;
        if (w->next)
                w->next->prev = w->prev;
        free(w);
        /* the subscription connection stays (it is cheap) until the store closes */
}

static int redis_open(ConfigStore *base, char **reterr_msg) {
        RedisConfigStore *s = (RedisConfigStore *) base;
        int r;

        *reterr_msg = NULL;
        s->timeout_usec = REDIS_DEFAULT_TIMEOUT_USEC;
        r = dlopen_hiredis("configuration.redis", reterr_msg);
        if (r < 0)
                return r;
        r = redis_config_parse(&s->config, base->component, reterr_msg);
        if (r < 0)
                return r;
        if (asprintf(&s->pattern, "__keyspace@%u__:*", s->config.db) < 0) {
                s->pattern = NULL;
                return -ENOMEM;
        }
        r = redis_conn_init(&s->conn, base->event, &s->config, NULL, NULL);
        if (r < 0)
                return redis_fail_field(reterr_msg, r, "cannot set up the connection: %s", strerror(-r));
        /* listening from the start, so a subscription is live when its answer goes out */
        r = redis_conn_init(&s->sub, base->event, &s->config, on_sub_ready, s);
        if (r < 0)
                return redis_fail_field(reterr_msg, r, "cannot set up the connection: %s", strerror(-r));
        s->sub_open = true;
        return 0;
}

static void redis_close(ConfigStore *base) {
        RedisConfigStore *s = (RedisConfigStore *) base;
        s->closing = true;
        if (s->sub_open)
                redis_conn_done(&s->sub, "configuration store closed");
        redis_conn_done(&s->conn, "configuration store closed");
        while (s->watches)
                redis_unwatch(base, s->watches);
        redis_config_done(&s->config);
        free(s->pattern);
}

const ConfigStoreDriver config_redis_driver = {
        .type = "configuration.redis",
        .abi = CONFIG_STORE_DRIVER_ABI,
        .instance_size = sizeof(RedisConfigStore),
        .open = redis_open,
        .close = redis_close,
        .get = redis_get,
        .watch = redis_watch,
        .unwatch = redis_unwatch,
};
