/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Membership in Redis ([Cluster] Membership=redis): a key per host,
 * <prefix>host:<id>, holding the host's record in JSON with the lease as its
 * expiry (PX), a set <prefix>hosts of host ids, and change notices on the
 * channel <prefix>hosts (payload: the host id). Keyspace notifications would
 * need server configuration we cannot assume, so hosts publish themselves.
 *
 * Every lease/3 a host renews its key (a script: SET PX, SADD, and PUBLISH
 * only when the value changed or the key had expired) and reads every host
 * (a script: each id in the set whose key still exists, with its PTTL; ids
 * whose key expired are removed from the set). A notice from another host
 * triggers a read at once; the periodic read is the safety net. Closing
 * deletes the key and publishes.
 *
 * Two RedisConns (../redis-common.h), commands and the subscription, each
 * reconnecting by itself; when the subscription comes back everything is
 * read again, since notices may have been missed.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../dl-hiredis.h"
#include "../redis-common.h"
#include "driver.h"

#define DEFAULT_PREFIX "mooring:"
#define CLOSE_WAIT_MSEC 500

/* KEYS: the host's key, the set. ARGV: record, lease ms, id, "id address" (the notice's payload:
 * a host skips the notices of its own renewals by it, and reads on one from another daemon that
 * was given the same id). */
static const char script_renew[] =
        "local old = redis.call('GET', KEYS[1])\n"
        "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
        "redis.call('SADD', KEYS[2], ARGV[3])\n"
        "if old ~= ARGV[1] then redis.call('PUBLISH', KEYS[2], ARGV[4]) end\n"
        "return 1\n";

/* KEYS: the set. ARGV: the key prefix of hosts. Returns record, pttl pairs. */
static const char script_read[] =
        "local out = {}\n"
        "for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
        "  local k = ARGV[1] .. id\n"
        "  local v = redis.call('GET', k)\n"
        "  if v then\n"
        "    out[#out + 1] = v\n"
        "    out[#out + 1] = redis.call('PTTL', k)\n"
        "  else\n"
        "    redis.call('SREM', KEYS[1], id)\n"
        "  end\n"
        "end\n"
        "return out\n";

/* KEYS: the host's key, the set. ARGV: id. */
static const char script_withdraw[] =
        "redis.call('DEL', KEYS[1])\n"
        "redis.call('SREM', KEYS[2], ARGV[1])\n"
        "redis.call('PUBLISH', KEYS[2], ARGV[1])\n"
        "return 1\n";

typedef struct RedisMembership {
        MembershipBackend base;
        RedisConfig config;
        bool config_set;
        RedisConn conn;            /* commands */
        RedisConn sub;             /* the change channel */
        bool conn_open, sub_open;
        char *host_prefix;         /* <prefix>host: */
        char *key;                 /* <prefix>host:<id> */
        char *set;                 /* <prefix>hosts: the set and the channel */
        uint64_t lease_usec;
        bool renewing, reading;    /* a command in flight */
        bool need_read;            /* a notice came while a read was in flight */
        sd_event_source *tick;     /* every lease/3 */
} RedisMembership;

static void report_state(RedisMembership *p) {
        if (redis_conn_is_ready(&p->conn))
                membership_backend_state(&p->base, NULL);
        else
                membership_backend_state(&p->base, p->conn.last_error ?: "not connected");
}

static void on_renewed(const redisReply *reply, int error, const char *message, void *userdata) {
        RedisMembership *p = userdata;
        p->renewing = false;
        if (reply && reply->type != REDIS_REPLY_ERROR) {
                membership_backend_renewed(&p->base, p->lease_usec);
                return;
        }
        if (reply) {
                _cleanup_free_ char *m = strndup(reply->str ?: "", MIN(reply->len, 512));
                membership_backend_state(&p->base, m ?: "error reply");
        } else if (error != -ECANCELED)
                membership_backend_state(&p->base, message ?: "no reply");
}

static void send_read(RedisMembership *p);

static void on_read(const redisReply *reply, int error, const char *message, void *userdata) {
        RedisMembership *p = userdata;

        p->reading = false;
        if (!reply) {
                if (error != -ECANCELED)
                        membership_backend_state(&p->base, message ?: "no reply");
                return;
        }
        if (reply->type != REDIS_REPLY_ARRAY) {
                _cleanup_free_ char *m = reply->type == REDIS_REPLY_ERROR ? strndup(reply->str ?: "", MIN(reply->len, 512))
                                                                        : strdup("unexpected reply");
                membership_backend_state(&p->base, m ?: "unexpected reply");
                return;
        }
        membership_backend_state(&p->base, NULL);
        membership_backend_sync_begin(&p->base);
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
                const redisReply *v = reply->element[i], *t = reply->element[i + 1];
                MemberRecord rec = {};
                long long pttl;

                if (v->type != REDIS_REPLY_STRING || t->type != REDIS_REPLY_INTEGER)
                        continue;
                pttl = t->integer;
                if (pttl == -1) /* no expiry: someone else's doing; take it as one lease */
                        pttl = (long long) (p->lease_usec / 1000);
                if (pttl <= 0 || member_record_parse(v->str, v->len, &rec) < 0)
                        continue;
                membership_backend_seen(&p->base, &rec, (uint64_t) pttl * 1000);
                member_record_done(&rec);
        }
        membership_backend_sync_end(&p->base);
        if (p->need_read)
                send_read(p);
}

static void send_read(RedisMembership *p) {
        const char *argv[] = { "EVAL", script_read, "1", p->set, p->host_prefix };
        size_t len[] = { 4, sizeof script_read - 1, 1, strlen(p->set), strlen(p->host_prefix) };

        if (p->reading) {
                p->need_read = true;
                return;
        }
        p->need_read = false;
        if (!redis_conn_is_ready(&p->conn))
                return;
        if (redis_conn_send(&p->conn, REDIS_DEFAULT_TIMEOUT_USEC, on_read, p, 5, argv, len) >= 0)
                p->reading = true;
}

/* The payload of this host's renewal notices: "id address". */
static char *own_notice(RedisMembership *p) {
        const MemberRecord *self = membership_backend_self(&p->base);
        char *s;
        return asprintf(&s, "%s %s", self->id, self->address) < 0 ? NULL : s;
}

static void send_renew(RedisMembership *p) {
        _cleanup_free_ char *json = NULL, *notice = NULL;
        char ms[24];

        if (p->renewing || !redis_conn_is_ready(&p->conn))
                return;
        json = member_record_to_json(membership_backend_self(&p->base));
        notice = own_notice(p);
        if (!json || !notice)
                return;
        (void) snprintf(ms, sizeof ms, "%llu", (unsigned long long) (p->lease_usec / 1000));
        const char *id = membership_backend_self(&p->base)->id;
        const char *argv[] = { "EVAL", script_renew, "2", p->key, p->set, json, ms, id, notice };
        size_t len[] = { 4, sizeof script_renew - 1, 1, strlen(p->key), strlen(p->set), strlen(json), strlen(ms),
                         strlen(id), strlen(notice) };
        if (redis_conn_send(&p->conn, REDIS_DEFAULT_TIMEOUT_USEC, on_renewed, p, 9, argv, len) >= 0)
                p->renewing = true;
}

static int on_tick(sd_event_source *es, uint64_t usec, void *userdata) {
        RedisMembership *p = userdata;
        if (!redis_conn_is_ready(&p->conn))
                report_state(p); /* a server that never answered is reported here */
        send_renew(p);
        send_read(p);
        (void) sd_event_source_set_time(p->tick, membership_backend_now(&p->base) + p->lease_usec / 3);
        (void) sd_event_source_set_enabled(p->tick, SD_EVENT_ON);
        return 0;
}

static void on_conn_ready(RedisConn *conn, bool ready, void *userdata) {
        RedisMembership *p = userdata;
        report_state(p);
        if (ready) {
                /* announce at once: a host that came back is seen without waiting for the tick */
                send_renew(p);
                send_read(p);
        }
}

/* ["message", channel, id] */
static void on_notice(const redisReply *reply, void *userdata) {
        RedisMembership *p = userdata;
        const redisReply *what, *payload;

        if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
                return;
        what = reply->element[0];
        payload = reply->element[2];
        if (what->type != REDIS_REPLY_STRING || !streq(what->str, "message"))
                return;
        /* our own renewal needs no read; another daemon's, though it carries our id (given the same
         * HostId=), does: the read then shows it (see membership_backend_seen()) */
        _cleanup_free_ char *own = own_notice(p);
        if (own && payload->type == REDIS_REPLY_STRING && streq(payload->str, own))
                return;
        send_read(p);
}

static void on_sub_ready(RedisConn *conn, bool ready, void *userdata) {
        RedisMembership *p = userdata;
        const char *argv[] = { "SUBSCRIBE", p->set };
        size_t len[] = { 9, strlen(p->set) };

        if (!ready)
                return;
        if (redis_conn_subscribe(&p->sub, on_notice, p, 2, argv, len) >= 0)
                /* notices may have been missed while the subscription was down */
                send_read(p);
}

static void redis_publish(MembershipBackend *b) {
        RedisMembership *p = (RedisMembership *) b;
        /* from the loop, not from inside membership_set_*() */
        (void) sd_event_source_set_time(p->tick, 0);
        (void) sd_event_source_set_enabled(p->tick, SD_EVENT_ON);
}

static int fail(char **reterr_msg, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(char **reterr_msg, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(reterr_msg, fmt, ap) < 0)
                *reterr_msg = NULL;
        va_end(ap);
        return r;
}

static int unhex(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* %XX in a URL's user or password. */
static char *url_unescape(const char *s, size_t n) {
        char *o = malloc(n + 1), *w = o;
        if (!o)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '%' && i + 2 < n && unhex(s[i + 1]) >= 0 && unhex(s[i + 2]) >= 0) {
                        *w++ = (char) (unhex(s[i + 1]) * 16 + unhex(s[i + 2]));
                        i += 2;
                } else
                        *w++ = s[i];
        }
        *w = 0;
        return o;
}

/*
 * MembershipConnection= as the metadata of a Dapr Redis component: HOST:PORT, or
 * redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]. Fills items (name, value pairs, malloc'd).
 */
static int connection_items(const char *s, char ***ret, char **reterr_msg) {
        _cleanup_strv_free_ char **l = NULL;
        const char *rest = s, *at, *slash;
        bool tls = false;

        if (startswith(s, "redis://"))
                rest = s + 8;
        else if (startswith(s, "rediss://")) {
                rest = s + 9;
                tls = true;
        } else if (strstr(s, "://"))
                return fail(reterr_msg, -EINVAL, "MembershipConnection='%s': not HOST:PORT or a redis:// URL", s);
        if (rest != s) {
                slash = strchr(rest, '/');
                at = memrchr(rest, '@', slash ? (size_t) (slash - rest) : strlen(rest));
                if (at) {
                        const char *colon = memchr(rest, ':', (size_t) (at - rest));
                        _cleanup_free_ char *user = url_unescape(rest, colon ? (size_t) (colon - rest) : 0);
                        _cleanup_(erase_and_freep) char *pw =
                                url_unescape(colon ? colon + 1 : rest, colon ? (size_t) (at - colon - 1) : (size_t) (at - rest));
                        if (!user || !pw)
                                return -ENOMEM;
                        if ((*user && (strv_extend(&l, "redisUsername") < 0 || strv_extend(&l, user) < 0)) ||
                            (*pw && (strv_extend(&l, "redisPassword") < 0 || strv_extend(&l, pw) < 0)))
                                return -ENOMEM;
                        rest = at + 1;
                }
                _cleanup_free_ char *host = strndup(rest, slash ? (size_t) (slash - rest) : strlen(rest));
                if (!host)
                        return -ENOMEM;
                if (!*host)
                        return fail(reterr_msg, -EINVAL, "MembershipConnection='%s': no host", s);
                if (!strchr(host, ':') || (host[0] == '[' && !strstr(host, "]:"))) {
                        char *h = NULL;
                        if (asprintf(&h, "%s:%d", host, REDIS_DEFAULT_PORT) < 0)
                                return -ENOMEM;
                        free(host);
                        host = h;
                }
                if (strv_extend(&l, "redisHost") < 0 || strv_extend(&l, host) < 0)
                        return -ENOMEM;
                if (slash && slash[1]) {
                        if (strspn(slash + 1, "0123456789") != strlen(slash + 1))
                                return fail(reterr_msg, -EINVAL, "MembershipConnection='%s': '%s' is no database number",
                                            s, slash + 1);
                        if (strv_extend(&l, "redisDB") < 0 || strv_extend(&l, slash + 1) < 0)
                                return -ENOMEM;
                }
                if (tls && (strv_extend(&l, "enableTLS") < 0 || strv_extend(&l, "true") < 0))
                        return -ENOMEM;
        } else if (strv_extend(&l, "redisHost") < 0 || strv_extend(&l, s) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(l);
        return 0;
}

static int redis_open(MembershipBackend *b, const MembershipOptions *o, char **reterr_msg) {
        RedisMembership *p = (RedisMembership *) b;
        _cleanup_strv_free_ char **kv = NULL;
        _cleanup_free_ char *err = NULL;
        const char *prefix = o->table ?: DEFAULT_PREFIX;
        int r;

        p->lease_usec = o->lease_usec;
        r = dlopen_hiredis("membership redis", reterr_msg);
        if (r < 0)
                return r;
        if (!o->connection || !*o->connection)
                return fail(reterr_msg, -EINVAL, "%s", "MembershipConnection= is missing: HOST:PORT or a redis:// URL");
        r = connection_items(o->connection, &kv, reterr_msg);
        if (r < 0)
                return r;
        /* the same checks and connection code as a Dapr Redis component's */
        size_t n = strv_length(kv) / 2;
        _cleanup_free_ ComponentItem *items = calloc(n ?: 1, sizeof *items);
        if (!items)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                items[i] = (ComponentItem){ .name = kv[2 * i], .value = kv[2 * i + 1] };
        Component c = { .name = (char *) "membership", .type = (char *) "membership.redis", .items = items,
                        .n_items = n };
        r = redis_config_parse(&p->config, &c, &err);
        if (r < 0)
                return fail(reterr_msg, r, "MembershipConnection='%s': %s", o->connection, err ?: "invalid");
        p->config_set = true;
        if (asprintf(&p->host_prefix, "%shost:", prefix) < 0 || asprintf(&p->set, "%shosts", prefix) < 0 ||
            asprintf(&p->key, "%s%s", p->host_prefix, o->host_id) < 0)
                return -ENOMEM;
        r = sd_event_add_time(b->event, &p->tick, CLOCK_MONOTONIC, 0, 0, on_tick, p);
        if (r < 0)
                return r;
        r = redis_conn_init(&p->conn, b->event, &p->config, on_conn_ready, p);
        if (r < 0)
                return r;
        p->conn_open = true;
        r = redis_conn_init(&p->sub, b->event, &p->config, on_sub_ready, p);
        if (r < 0)
                return r;
        p->sub_open = true;
        return 0;
}

/* Writes all of buf to a non-blocking fd, waiting at most until deadline (ms left in *budget). */
static bool write_all(int fd, const char *buf, size_t len, int *budget) {
        while (len > 0 && *budget > 0) {
                ssize_t k = write(fd, buf, len);
                if (k > 0) {
                        buf += k;
                        len -= (size_t) k;
                        continue;
                }
                if (k < 0 && errno != EAGAIN && errno != EINTR)
                        return false;
                struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                (void) poll(&pfd, 1, 50);
                *budget -= 50;
        }
        return len == 0;
}

/*
 * Withdraws this host's key, best effort and bounded: on the way out the loop no longer runs, so
 * on a plain connection with nothing in flight the command is written to the socket directly and
 * its answer awaited for a moment. Over TLS (or with commands pending) the key simply expires.
 */
static void withdraw(RedisMembership *p) {
        const char *id = membership_backend_self(&p->base)->id;
        const char *argv[] = { "EVAL", script_withdraw, "2", p->key, p->set, id };
        size_t len[] = { 4, sizeof script_withdraw - 1, 1, strlen(p->key), strlen(p->set), strlen(id) };
        char *cmd = NULL, buf[256];
        int budget = CLOSE_WAIT_MSEC, n;

        if (!redis_conn_is_ready(&p->conn) || p->conn.ssl || p->conn.pending.head || p->conn.olen > p->conn.ooff)
                return;
        n = sym_redisFormatCommandArgv(&cmd, 6, argv, len);
        if (n < 0 || !cmd)
                return;
        if (write_all(p->conn.fd, cmd, (size_t) n, &budget))
                while (budget > 0) {
                        struct pollfd pfd = { .fd = p->conn.fd, .events = POLLIN };
                        if (poll(&pfd, 1, 50) > 0) {
                                /* ":1\r\n" or an error: either way the server has handled it */
                                (void) read(p->conn.fd, buf, sizeof buf);
                                break;
                        }
                        budget -= 50;
                }
        sym_redisFreeCommand(cmd);
}

static void redis_close(MembershipBackend *b) {
        RedisMembership *p = (RedisMembership *) b;

        if (p->conn_open)
                withdraw(p);
        p->tick = sd_event_source_disable_unref(p->tick);
        if (p->sub_open)
                redis_conn_done(&p->sub, "membership closed");
        if (p->conn_open)
                redis_conn_done(&p->conn, "membership closed");
        if (p->config_set)
                redis_config_done(&p->config);
        free(p->host_prefix);
        free(p->key);
        free(p->set);
}

const MembershipDriver membership_redis_driver = {
        .name = "redis",
        .abi = MEMBERSHIP_DRIVER_ABI,
        .instance_size = sizeof(RedisMembership),
        .open = redis_open,
        .close = redis_close,
        .publish = redis_publish,
};
