/* SPDX-License-Identifier: Apache-2.0 */
/*
 * configuration.postgresql (alias configuration.postgres): Dapr's PostgreSQL
 * configuration store (components-contrib configuration/postgres). Items
 * are rows of the table named by metadata `table` (columns key, value,
 * version, metadata); the operator creates it and a trigger that calls
 * pg_notify(<channel>, '{"data": <the row as JSON>}') on changes. A
 * subscription names its channel in metadata `pgNotifyChannel` and the
 * store LISTENs on it.
 *
 * libpq in non-blocking mode on the loop, one connection per store, one
 * command at a time from a FIFO (gets, LISTEN). A lost connection fails what
 * is queued (-ENOTCONN) and reconnects with backoff (100 ms doubling to
 * 5 s); after a reconnect every channel is LISTENed again and, since
 * notifications may have been missed meanwhile, every item is read and
 * reported to the watches once.
 */
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../dl-libpq.h"
#include "../pg-link.h"
#include "driver.h"

#define USEC_PER_MSEC 1000ULL
#define BACKOFF_MIN_USEC (100 * USEC_PER_MSEC)
#define BACKOFF_MAX_USEC (5000 * USEC_PER_MSEC)
#define TIMEOUT_USEC (20 * 1000 * USEC_PER_MSEC)
#define IDENT_MAX 63

typedef enum OpKind {
        OP_GET,
        OP_LISTEN,  /* internal */
        OP_RESYNC,  /* internal: read everything, report it to the watches */
} OpKind;

typedef struct Op Op;
struct Op {
        OpKind kind;
        char **keys;
        char *sql;             /* LISTEN */
        ConfigResult result;
        ConfigStoreGetFn done;
        void *userdata;
        uint64_t deadline;
        Op *next;
};

struct ConfigStoreWatch {
        char *channel;
        ConfigStoreChangeFn fn;
        void *userdata;
        ConfigStoreWatch *next, *prev;
};

typedef struct PgConfig {
        ConfigStore base;
        char *conninfo;        /* secret: wiped on free */
        char *table;           /* quoted identifier */
        PgLink link;           /* connecting, reconnecting with backoff */
        PGconn *conn;          /* pg_link_conn(&link): NULL while not ready */
        bool busy;
        char *last_error;
        sd_event_source *timer;     /* the head's deadline */
        sd_event_source *defer;     /* delivers done ops */
        Op *head, *tail;            /* queue; head in flight when busy */
        Op *done_head, *done_tail;  /* answered, waiting for delivery */
        ConfigStoreWatch *watches;
        bool was_ready;             /* a connection before this one: a reconnect resyncs */
        bool closing;
} PgConfig;

static uint64_t now_usec(PgConfig *p) {
        uint64_t t = 0;
        (void) sd_event_now(p->base.event, CLOCK_MONOTONIC, &t);
        return t;
}

static void op_free(Op *op) {
        strv_free(op->keys);
        free(op->sql);
        config_result_done(&op->result);
        free(op);
}

static void deliver_later(PgConfig *p, Op *op) {
        op->next = NULL;
        if (p->done_tail)
                p->done_tail->next = op;
        else
                p->done_head = op;
        p->done_tail = op;
        (void) sd_event_source_set_enabled(p->defer, SD_EVENT_ONESHOT);
}

static void report(PgConfig *p, const ConfigItem *items, size_t n, const char *channel) {
        for (ConfigStoreWatch *w = p->watches, *next; w; w = next) {
                next = w->next;
                if (!channel || streq(w->channel, channel))
                        w->fn(&p->base, items, n, w->userdata);
        }
}

static int on_defer(sd_event_source *es, void *userdata) {
        PgConfig *p = userdata;
        Op *op;

        while ((op = p->done_head)) {
                p->done_head = op->next;
                if (!p->done_head)
                        p->done_tail = NULL;
                if (op->kind == OP_GET)
                        op->done(&op->result, op->userdata);
                else if (op->kind == OP_RESYNC && op->result.error == 0 && !p->closing)
                        report(p, op->result.items, op->result.n_items, NULL);
                op_free(op);
        }
        return 0;
}

static void fail_queue(PgConfig *p, int error, const char *msg) {
        Op *op;
        while ((op = p->head)) {
                p->head = op->next;
                if (op->result.error == 0)
                        (void) config_result_fail(&op->result, error, "postgresql: %s", msg);
                deliver_later(p, op);
        }
        p->tail = NULL;
}

static void arm_timer(PgConfig *p, uint64_t at) {
        (void) sd_event_source_set_time(p->timer, at);
        (void) sd_event_source_set_enabled(p->timer, SD_EVENT_ONESHOT);
}

static void disconnect(PgConfig *p, const char *why) {
        pg_link_fail(&p->link, "connection lost", why);
}

static void flush(PgConfig *p) {
        (void) pg_link_flush(&p->link);
}

static void queue_op(PgConfig *p, Op *op);

static void dispatch(PgConfig *p) {
        Op *op = p->head;
        int ok;

        if (!p->conn || p->busy || !op)
                return;
        if (op->kind == OP_LISTEN)
                ok = sym_PQsendQuery(p->conn, op->sql);
        else {
                /* keys as a text[] parameter; none: every row */
                _cleanup_free_ char *sql = NULL, *arr = NULL;
                size_t n = 3;
                for (char **k = op->keys; k && *k; k++)
                        n += 2 * strlen(*k) + 3;
                arr = malloc(n);
                if (arr) {
                        char *o = arr;
                        *o++ = '{';
                        for (char **k = op->keys; k && *k; k++) {
                                if (k != op->keys)
                                        *o++ = ',';
                                *o++ = '"';
                                for (const char *c = *k; *c; c++) {
                                        if (*c == '"' || *c == '\\')
                                                *o++ = '\\';
                                        *o++ = *c;
                                }
                                *o++ = '"';
                        }
                        *o++ = '}';
                        *o = 0;
                }
                bool all = !op->keys || !*op->keys;
                if (asprintf(&sql,
                             "SELECT key::text, value::text, version::text, metadata::text FROM %s%s ORDER BY 1",
                             p->table, all ? "" : " WHERE key = ANY($1::text[])") < 0 || !arr) {
                        p->head = op->next;
                        if (!p->head)
                                p->tail = NULL;
                        (void) config_result_fail(&op->result, -ENOMEM, "out of memory");
                        deliver_later(p, op);
                        dispatch(p);
                        return;
                }
                const char *values[1] = { arr };
                ok = sym_PQsendQueryParams(p->conn, sql, all ? 0 : 1, NULL, values, NULL, NULL, 0);
        }
        if (!ok) {
                disconnect(p, sym_PQerrorMessage(p->conn));
                return;
        }
        p->busy = true;
        arm_timer(p, op->deadline);
        flush(p);
}

/* metadata column text (a JSON object) -> name, value pairs */
static char **metadata_pairs(const char *text) {
        json_t *j = text ? json_loads(text, 0, NULL) : NULL, *v;
        const char *k;
        char **l = NULL;
        if (json_is_object(j))
                json_object_foreach(j, k, v) {
                        _cleanup_free_ char *d = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                        if (strv_extend(&l, k) < 0 || strv_extend(&l, json_is_string(v) ? json_string_value(v) : strempty(d)) < 0)
                                break;
                }
        json_decref(j);
        return l;
}

static void take_rows(Op *op, const PGresult *res) {
        int n = sym_PQntuples(res);
        if (sym_PQnfields(res) != 4) {
                (void) config_result_fail(&op->result, -EIO, "postgresql: the table needs columns key, value, version, metadata");
                return;
        }
        for (int i = 0; i < n; i++) {
                _cleanup_strv_free_ char **md = sym_PQgetisnull(res, i, 3) ? NULL : metadata_pairs(sym_PQgetvalue(res, i, 3));
                ConfigItem it = { .key = sym_PQgetvalue(res, i, 0),
                                  .value = sym_PQgetisnull(res, i, 1) ? (char *) "" : sym_PQgetvalue(res, i, 1),
                                  .version = sym_PQgetisnull(res, i, 2) ? NULL : sym_PQgetvalue(res, i, 2),
                                  .metadata = md };
                if (config_result_add(&op->result, &it) < 0) {
                        (void) config_result_fail(&op->result, -ENOMEM, "out of memory");
                        return;
                }
        }
}

/* {"data": {"key": .., "value": .., "version": .., "metadata": {..}}} -> one change */
static void on_notify(PgConfig *p, const char *channel, const char *payload) {
        json_t *j = json_loads(payload, 0, NULL), *data, *v;
        const char *k;
        ConfigItem it = {};

        data = json_object_get(j, "data");
        if (json_is_object(data)) {
                json_object_foreach(data, k, v) {
                        if (strcasecmp(k, "key") == 0 && json_is_string(v))
                                it.key = (char *) json_string_value(v);
                        else if (strcasecmp(k, "value") == 0 && json_is_string(v))
                                it.value = (char *) json_string_value(v);
                        else if (strcasecmp(k, "version") == 0 && json_is_string(v))
                                it.version = (char *) json_string_value(v);
                        else if (strcasecmp(k, "metadata") == 0 && json_is_object(v)) {
                                _cleanup_free_ char *t = json_dumps(v, JSON_COMPACT);
                                it.metadata = metadata_pairs(t);
                        }
                }
                if (it.key) {
                        if (!it.value)
                                it.value = (char *) "";
                        report(p, &it, 1, channel);
                }
        }
        strv_free(it.metadata);
        json_decref(j);
}

static void read_input(PgConfig *p) {
        PGnotify *n;

        if (!sym_PQconsumeInput(p->conn)) {
                disconnect(p, sym_PQerrorMessage(p->conn));
                return;
        }
        while (p->busy && !sym_PQisBusy(p->conn)) {
                PGresult *res = sym_PQgetResult(p->conn);
                Op *op = p->head;
                if (!res) {
                        p->busy = false;
                        p->head = op->next;
                        if (!p->head)
                                p->tail = NULL;
                        deliver_later(p, op);
                        (void) sd_event_source_set_enabled(p->timer, SD_EVENT_OFF);
                        continue;
                }
                ExecStatusType st = sym_PQresultStatus(res);
                if (st == PGRES_TUPLES_OK && op->kind != OP_LISTEN)
                        take_rows(op, res);
                else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && op->result.error == 0) {
                        const char *m = sym_PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
                        (void) config_result_fail(&op->result, -EIO, "postgresql: %s", m ?: "query failed");
                }
                sym_PQclear(res);
        }
        while (p->conn && (n = sym_PQnotifies(p->conn))) {
                on_notify(p, n->relname, n->extra);
                sym_PQfreemem(n);
        }
        if (p->conn && sym_PQstatus(p->conn) == CONNECTION_BAD) {
                disconnect(p, sym_PQerrorMessage(p->conn));
                return;
        }
        dispatch(p);
}

static char *listen_sql(const char *channel) {
        char *sql = NULL;
        /* channels are checked to be identifiers at watch(); quoted so case is kept */
        if (asprintf(&sql, "LISTEN \"%s\"", channel) < 0)
                return NULL;
        return sql;
}

/* PgLink: connected */
static void on_ready(PgLink *l, void *userdata) {
        PgConfig *p = userdata;
        p->conn = pg_link_conn(l);
        bool reconnect = p->was_ready;
        p->was_ready = true;
        /* a session of our own again: every channel is listened to anew, then what may have been missed
         * is read and reported, ahead of whatever waits */
        Op *first = NULL, **tail = &first;
        for (ConfigStoreWatch *w = p->watches; w; w = w->next) {
                Op *op = calloc(1, sizeof *op);
                if (!op)
                        break;
                *op = (Op){ .kind = OP_LISTEN, .sql = listen_sql(w->channel), .deadline = now_usec(p) + TIMEOUT_USEC };
                *tail = op;
                tail = &op->next;
        }
        /* not on the first connection: daprd sends nothing when a subscription starts */
        if (p->watches && reconnect) {
                Op *op = calloc(1, sizeof *op);
                if (op) {
                        *op = (Op){ .kind = OP_RESYNC, .deadline = now_usec(p) + TIMEOUT_USEC };
                        *tail = op;
                        tail = &op->next;
                }
        }
        if (first) {
                *tail = p->head;
                if (!p->head)
                        for (p->tail = first; p->tail->next; p->tail = p->tail->next)
                                ;
                p->head = first;
        }
        dispatch(p);
}

/* PgLink: the connection is gone (a retry is scheduled): what is queued fails */
static void on_lost(PgLink *l, const char *what, const char *why, void *userdata) {
        PgConfig *p = userdata;
        p->conn = NULL;
        p->busy = false;
        (void) sd_event_source_set_enabled(p->timer, SD_EVENT_OFF);
        free(p->last_error);
        p->last_error = strndup(why, strcspn(why, "\n")); /* libpq's first line */
        fail_queue(p, -ENOTCONN, p->last_error ?: "connection lost");
}

static void on_io(PgLink *l, uint32_t revents, void *userdata) {
        PgConfig *p = userdata;
        if (revents & EPOLLOUT)
                flush(p);
        if (p->conn && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                read_input(p);
}

static const PgLinkOps link_ops = { .ready = on_ready, .lost = on_lost, .io = on_io };

static int on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        PgConfig *p = userdata;
        if (p->busy)
                disconnect(p, "the server did not answer in time");
        return 0;
}

static void queue_op(PgConfig *p, Op *op) {
        op->deadline = now_usec(p) + TIMEOUT_USEC;
        if (pg_link_state(&p->link) == PG_LINK_BACKOFF && op->kind == OP_GET) {
                (void) config_result_fail(&op->result, -ENOTCONN, "postgresql not connected (%s)",
                                          p->last_error ?: "reconnecting");
                deliver_later(p, op);
                return;
        }
        if (!p->conn && op->kind == OP_LISTEN) {
                op_free(op); /* on_ready() listens on every channel */
                return;
        }
        op->next = NULL;
        if (p->tail)
                p->tail->next = op;
        else
                p->head = op;
        p->tail = op;
        dispatch(p);
}

static int pg_get(ConfigStore *base, char *const *keys, char *const *metadata, ConfigStoreGetFn done,
                  void *userdata) {
        PgConfig *p = (PgConfig *) base;
        Op *op = calloc(1, sizeof *op);
        if (!op)
                return -ENOMEM;
        *op = (Op){ .kind = OP_GET, .done = done, .userdata = userdata };
        if (keys && strv_copy(keys, &op->keys) < 0) {
                op_free(op);
                return -ENOMEM;
        }
        queue_op(p, op);
        return 0;
}

static bool ident_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > IDENT_MAX)
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_'))
                        return false;
        return true;
}

static int pg_watch(ConfigStore *base, char *const *keys, char *const *metadata, ConfigStoreChangeFn fn,
                    void *userdata, ConfigStoreWatch **ret, char **reterr_msg) {
        PgConfig *p = (PgConfig *) base;
        const char *channel = NULL;
        ConfigStoreWatch *w;
        bool listening = false;

        for (char *const *m = metadata; m && m[0] && m[1]; m += 2)
                if (strcasecmp(m[0], "pgNotifyChannel") == 0)
                        channel = m[1];
        if (!channel || !*channel) {
                if (asprintf(reterr_msg, "unable to subscribe to '%s'.pgNotifyChannel attribute cannot be empty",
                             component_get_string(base->component, "table")) < 0)
                        *reterr_msg = NULL;
                return -EINVAL;
        }
        if (!ident_valid(channel)) {
                if (asprintf(reterr_msg, "pgNotifyChannel '%s' is not a plain identifier ([A-Za-z0-9_])", channel) < 0)
                        *reterr_msg = NULL;
                return -EINVAL;
        }
        for (w = p->watches; w; w = w->next)
                listening = listening || streq(w->channel, channel);
        w = calloc(1, sizeof *w);
        if (!w || !(w->channel = strdup(channel))) {
                free(w);
                return -ENOMEM;
        }
        w->fn = fn;
        w->userdata = userdata;
        w->next = p->watches;
        if (w->next)
                w->next->prev = w;
        p->watches = w;
        if (!listening) {
                Op *op = calloc(1, sizeof *op);
                if (op) {
                        *op = (Op){ .kind = OP_LISTEN, .sql = listen_sql(channel) };
                        queue_op(p, op);
                }
        }
        *ret = w;
        return 0;
}

static void pg_unwatch(ConfigStore *base, ConfigStoreWatch *w) {
        PgConfig *p = (PgConfig *) base;
        bool still = false;

        if (w->prev)
                w->prev->next = w->next;
        else
                p->watches = w->next;
        if (w->next)
                w->next->prev = w->prev;
        for (ConfigStoreWatch *o = p->watches; o; o = o->next)
                still = still || streq(o->channel, w->channel);
        if (!still && !p->closing && p->conn) {
                Op *op = calloc(1, sizeof *op);
                if (op) {
                        *op = (Op){ .kind = OP_LISTEN };
                        if (asprintf(&op->sql, "UNLISTEN \"%s\"", w->channel) < 0)
                                op->sql = NULL;
                        if (op->sql)
                                queue_op(p, op);
                        else
                                op_free(op);
                }
        }
        free(w->channel);
        free(w);
}

/* "table" or "schema.table", each part a plain identifier; quoted. */
static int table_ident(const char *t, char **ret) {
        _cleanup_free_ char *copy = strdup(t);
        char *dot;
        if (!copy)
                return -ENOMEM;
        dot = strchr(copy, '.');
        if (dot)
                *dot = 0;
        if (!ident_valid(copy) || (dot && !ident_valid(dot + 1)))
                return -EINVAL;
        if ((dot ? asprintf(ret, "\"%s\".\"%s\"", copy, dot + 1) : asprintf(ret, "\"%s\"", copy)) < 0)
                return -ENOMEM;
        return 0;
}

static int pg_open(ConfigStore *base, char **reterr_msg) {
        PgConfig *p = (PgConfig *) base;
        const Component *c = base->component;
        const char *cs = component_get_string(c, "connectionString");
        const char *t = component_get_string(c, "table");
        int r;

        r = dlopen_libpq(c->type, reterr_msg);
        if (r < 0)
                return r;
        if (!cs || !*cs)
                return asprintf(reterr_msg, "connectionString: missing (a libpq connection string or URL)") < 0
                               ? -ENOMEM : -EINVAL;
        if (!t || !*t)
                return asprintf(reterr_msg, "table: missing (the configuration table's name)") < 0 ? -ENOMEM : -EINVAL;
        r = table_ident(t, &p->table);
        if (r == -EINVAL)
                return asprintf(reterr_msg, "table: '%s' is not [schema.]name of [A-Za-z0-9_]", t) < 0 ? -ENOMEM
                                                                                                           : -EINVAL;
        if (r < 0)
                return r;
        p->conninfo = strdup(cs);
        if (!p->conninfo)
                return -ENOMEM;
        PgLinkOptions lo = { .conninfo = p->conninfo, .application_name = "mooringd",
                             .connect_timeout_usec = TIMEOUT_USEC, .backoff_min_usec = BACKOFF_MIN_USEC,
                             .backoff_max_usec = BACKOFF_MAX_USEC };
        r = pg_link_init(&p->link, base->event, &lo, &link_ops, p);
        if (r >= 0)
                r = sd_event_add_time(base->event, &p->timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_timer, p);
        if (r >= 0)
                r = sd_event_add_defer(base->event, &p->defer, on_defer, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->defer, SD_EVENT_OFF);
        pg_link_start(&p->link);
        return 0;
}

static void pg_close(ConfigStore *base) {
        PgConfig *p = (PgConfig *) base;
        p->closing = true;
        pg_link_done(&p->link);
        p->conn = NULL;
        p->busy = false;
        fail_queue(p, -ECANCELED, "configuration store closed");
        on_defer(NULL, p);
        while (p->watches)
                pg_unwatch(base, p->watches);
        p->timer = sd_event_source_disable_unref(p->timer);
        p->defer = sd_event_source_disable_unref(p->defer);
        erase_and_free(p->conninfo);
        free(p->table);
        free(p->last_error);
}

const ConfigStoreDriver config_postgresql_driver = {
        .type = "configuration.postgresql",
        .abi = CONFIG_STORE_DRIVER_ABI,
        .instance_size = sizeof(PgConfig),
        .open = pg_open,
        .close = pg_close,
        .get = pg_get,
        .watch = pg_watch,
        .unwatch = pg_unwatch,
};
