/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pubsub.redis: Dapr's Redis Streams broker. A topic is the stream key; a
 * group is a stream consumer group (the subscribe() group, or `consumerID`
 * when set), created at "0" with MKSTREAM as Dapr does, so a new group also
 * gets what the stream still holds. Entries carry the fields `data` (the
 * bytes) and, when there is metadata, `metadata` (a JSON object of strings).
 *
 * Connections (RedisConn, ../redis-common.h): one command connection per
 * broker for XADD, XACK, XPENDING and XCLAIM, which never blocks, and one
 * reader connection per subscription for XREADGROUP ... BLOCK, so a waiting
 * reader never delays a publish. Both reconnect with backoff; publishes
 * without a connection fail with -ENOTCONN and the reason.
 *
 * A subscription reads as consumer `<instance_id>:<component>` (with `.<n>`
 * appended for the n-th concurrent subscription of one topic and group in
 * this broker), a name that survives restarts and that no other daemon or
 * component shares. Once its reader is connected it:
 * 1. creates the group (XGROUP CREATE, BUSYGROUP is fine);
 * 2. re-reads its own pending entries (XREADGROUP ... ID 0 onwards), those a
 *    previous run or a lost connection left unacknowledged;
 * 3. reads new entries ('>') with BLOCK, COUNT being the free delivery slots;
 *    it does not read at all while max_in_flight deliveries are unsettled.
 * Delivery counts come from XPENDING, so `attempt` is the broker's.
 *
 * Settling: ACK is XACK (kept and re-sent if the command connection is
 * down). RETRY keeps the entry pending and arms a timer; when it fires the
 * entry is fetched again with XCLAIM (min-idle 0, which also renews it
 * against other consumers) and offered again. A retry holds its delivery
 * slot while it waits.
 *
 * Reclaim: every redeliverInterval, XPENDING IDLE processingTimeout lists
 * entries of the group that nobody touched for that long (their consumer
 * died or left), and XCLAIM with the same min-idle takes them atomically, so
 * two daemons never both win one. Entries this broker itself holds are
 * skipped. A reclaim waits for free slots like a read does, and goes before
 * the next read.
 *
 * Known limits: a retry that waits longer than processingTimeout may be
 * reclaimed by another daemon meanwhile and then be delivered by both; a
 * delivery whose app takes longer than processingTimeout likewise (as in
 * Dapr). Host names are resolved synchronously by hiredis when connecting:
 * use an address or a local name for a loop that must never stall.
 */
#include <assert.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
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

#define PS_DEFAULT_PROCESSING_TIMEOUT_USEC (60 * 1000000ULL)
#define PS_DEFAULT_REDELIVER_INTERVAL_USEC (15 * 1000000ULL)
#define PS_DEFAULT_QUEUE_DEPTH 100
#define PS_BLOCK_MAX_USEC (2 * 1000000ULL)  /* longest XREADGROUP BLOCK: bounds how late a reclaim starts */
#define PS_RETRY_LATER_USEC (1000000ULL)    /* a step that failed for want of a connection or server */
#define PS_ID_MAX 48                        /* "<ms>-<seq>" is at most 41 characters */

typedef struct RedisBroker RedisBroker;

typedef enum SubPhase {
        SUB_IDLE,          /* reader not connected */
        SUB_CREATING,      /* XGROUP CREATE sent */
        SUB_OWN_PENDING,   /* re-reading this consumer's unacknowledged entries */
        SUB_LIVE,          /* reading new entries */
        SUB_BROKEN,        /* the server refused a step: try again after a while */
} SubPhase;

typedef enum DeliveryState {
        DELIVERY_OPEN,       /* handed to deliver(), not settled */
        DELIVERY_WAIT,       /* settled RETRY, waiting for its timer */
        DELIVERY_CLAIMING,   /* XCLAIM sent to fetch it again */
        DELIVERY_ACKING,     /* XACK sent */
        DELIVERY_ACK_QUEUED, /* XACK waits for the command connection */
} DeliveryState;

struct PubsubDelivery {
        PubsubSubscription *sub;       /* back-reference (the sub outlives it, see sub_unref()) */
        PubsubDelivery *prev, *next;   /* in sub->deliveries */
        DeliveryState state;
        bool cmd_out;                  /* a command about it is out on the command connection */
        unsigned attempt;
        sd_event_source *timer;        /* DELIVERY_WAIT */
        char id[PS_ID_MAX];
};

/* A delivery count reported by XPENDING, for the attempt number of what is read or claimed next. */
typedef struct PendingCount {
        char id[PS_ID_MAX];
        unsigned count;
} PendingCount;

typedef struct PendingCounts {
        PendingCount *items;
        size_t n;
} PendingCounts;

struct PubsubSubscription {
        unsigned n_ref;                /* the owner's, one per command out on the command connection,
                                        * and one held around each round of deliver() calls */
        bool dead;                     /* unsubscribed (or the broker closed): no deliver(), no I/O */
        RedisBroker *broker;           /* back-reference; not to be used once dead */
        PubsubSubscription *prev, *next;
        char *topic, *group, *consumer;
        unsigned index;                /* consumer name suffix; 1: none */
        unsigned limit;                /* unsettled deliveries at most */
        unsigned n_busy;               /* deliveries OPEN, WAIT or CLAIMING */
        PubsubDeliverFn deliver;
        void *userdata;

        RedisConn reader;
        SubPhase phase;
        bool dispatching;              /* inside a round of deliver() calls: no new reads yet */
        bool reading;                  /* an XREADGROUP is out on the reader */
        unsigned read_reserved;        /* slots that read may fill */
        char cursor[PS_ID_MAX];        /* SUB_OWN_PENDING: the last id read */
        PendingCounts read_counts;

        sd_event_source *reclaim_timer;
        bool reclaim_due, reclaiming;
        unsigned claim_reserved;
        char reclaim_start[PS_ID_MAX + 1]; /* XPENDING range start: "-" or "(<id>" */
        PendingCounts claim_counts;

        sd_event_source *broken_timer;
        PubsubDelivery *deliveries, *deliveries_tail;
};

struct RedisBroker {
        PubsubBroker base;

        RedisConfig config;
        uint64_t timeout_usec;
        uint64_t processing_timeout_usec;   /* 0: no reclaim */
        uint64_t redeliver_interval_usec;   /* 0: no reclaim */
        uint64_t block_usec;
        uint64_t max_len;                   /* 0: streams grow unbounded */
        unsigned queue_depth;
        unsigned concurrency;               /* 0: as the block asks */
        char *group_override;               /* consumerID */
        char *consumer_base;                /* "<instance_id>:<component name>" */

        RedisConn cmd;
        PubsubSubscription *subs;
        bool closing;
};

extern const PubsubDriver pubsub_redis_driver;

typedef struct Publish {
        PubsubDoneFn done;
        void *userdata;
} Publish;

static void sub_pump(PubsubSubscription *sub);
static void sub_setup(PubsubSubscription *sub);
static void delivery_ack(PubsubDelivery *d);

/* ---- small helpers ---- */

static uint64_t now_usec(sd_event *e) {
        uint64_t t = 0;
        if (sd_event_now(e, CLOCK_MONOTONIC, &t) < 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                t = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
        }
        return t;
}

/* Arms (creating if needed) a one-shot timer usec from now. */
static int timer_arm(sd_event *e, sd_event_source **s, uint64_t usec, sd_event_time_handler_t handler,
                     void *userdata) {
        uint64_t t = now_usec(e) + usec;
        int r;

        if (!*s)
                return sd_event_add_time(e, s, CLOCK_MONOTONIC, t, 1000, handler, userdata);
        r = sd_event_source_set_time(*s, t);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
}

static bool reply_is_error(const redisReply *reply, const char *prefix) {
        size_t n = strlen(prefix);
        return reply->type == REDIS_REPLY_ERROR && reply->len >= n && strneq(reply->str, prefix, n);
}

/* Copies a stream id out of a reply element. */
static bool id_copy(char dst[static PS_ID_MAX], const redisReply *r) {
        if (!r || r->type != REDIS_REPLY_STRING || r->len == 0 || r->len >= PS_ID_MAX)
                return false;
        memcpy(dst, r->str, r->len);
        dst[r->len] = 0;
        return true;
}

static void counts_clear(PendingCounts *c) {
        free(c->items);
        *c = (PendingCounts){};
}

/*
 * Parses an XPENDING extended reply ([id, consumer, idle, count] per entry)
 * into c, replacing what it held. Returns the number of entries the reply
 * had (including ones skipped as malformed), or -ENOMEM.
 */
static int counts_parse(PendingCounts *c, const redisReply *reply, char last_id[static PS_ID_MAX]) {
        counts_clear(c);
        last_id[0] = 0;
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0)
                return 0;
        c->items = calloc(reply->elements, sizeof(*c->items));
        if (!c->items)
                return -ENOMEM;
        for (size_t i = 0; i < reply->elements; i++) {
                const redisReply *e = reply->element[i];
                PendingCount *pc = &c->items[c->n];

                if (e->type != REDIS_REPLY_ARRAY || e->elements < 4 || !id_copy(pc->id, e->element[0]) ||
                    e->element[3]->type != REDIS_REPLY_INTEGER)
                        continue;
                pc->count = e->element[3]->integer > 0 && e->element[3]->integer < UINT32_MAX
                                    ? (unsigned) e->element[3]->integer
                                    : 1;
                memcpy(last_id, pc->id, PS_ID_MAX);
                c->n++;
        }
        return (int) MIN(reply->elements, (size_t) INT32_MAX);
}

/* The attempt number of an entry about to be delivered again: one more than it was delivered so far. */
static unsigned counts_attempt(const PendingCounts *c, const char *id) {
        for (size_t i = 0; i < c->n; i++)
                if (streq(c->items[i].id, id))
                        return c->items[i].count + 1;
        return 2; /* it was pending, so it was delivered at least once */
}

/* ---- subscriptions: lifetime ---- */

static PubsubSubscription *sub_ref(PubsubSubscription *sub) {
        sub->n_ref++;
        return sub;
}

static void delivery_free(PubsubDelivery *d) {
        PubsubSubscription *sub = d->sub;

        if (d->prev)
                d->prev->next = d->next;
        else
                sub->deliveries = d->next;
        if (d->next)
                d->next->prev = d->prev;
        else
                sub->deliveries_tail = d->prev;
        d->timer = sd_event_source_disable_unref(d->timer);
        free(d);
}

/* Drops a reference; the last one frees the subscription (it is dead by then). */
static void sub_unref(PubsubSubscription *sub) {
        assert(sub->n_ref > 0);
        if (--sub->n_ref > 0)
                return;
        assert(sub->dead);
        while (sub->deliveries)
                delivery_free(sub->deliveries);
        counts_clear(&sub->read_counts);
        counts_clear(&sub->claim_counts);
        free(sub->topic);
        free(sub->group);
        free(sub->consumer);
        free(sub);
}

/*
 * Ends a subscription's activity: no deliver() from now on. Deliveries with
 * a command out stay until its answer (which drops the reference it holds);
 * the rest are abandoned to the broker, which offers them again later.
 */
static void sub_teardown(PubsubSubscription *sub) {
        RedisBroker *b = sub->broker;
        PubsubDelivery *d, *next;

        if (sub->dead)
                return;
        sub->dead = true;
        if (sub->prev)
                sub->prev->next = sub->next;
        else
                b->subs = sub->next;
        if (sub->next)
                sub->next->prev = sub->prev;
        sub->prev = sub->next = NULL;

        sub->reclaim_timer = sd_event_source_disable_unref(sub->reclaim_timer);
        sub->broken_timer = sd_event_source_disable_unref(sub->broken_timer);
        /* Its reply callbacks run now with -ECANCELED, see the sub dead and do nothing. */
        redis_conn_done(&sub->reader, "subscription closed");

        for (d = sub->deliveries; d; d = next) {
                next = d->next;
                if (!d->cmd_out)
                        delivery_free(d);
        }
}

/* ---- delivering ---- */

/* Is the entry held by this broker (delivered, waiting for a retry, being acked) in the group? */
static bool entry_held(const PubsubSubscription *sub, const char *id) {
        for (const PubsubSubscription *s = sub->broker->subs; s; s = s->next) {
                if (s != sub && (!streq(s->topic, sub->topic) || !streq(s->group, sub->group)))
                        continue;
                for (const PubsubDelivery *d = s->deliveries; d; d = d->next)
                        if (streq(d->id, id))
                                return true;
        }
        return false;
}

static unsigned sub_free_slots(const PubsubSubscription *sub) {
        unsigned used = sub->n_busy + sub->read_reserved + sub->claim_reserved;
        return used >= sub->limit ? 0 : sub->limit - used;
}

/* The `metadata` field's JSON object as name, value pairs; NULL when absent or malformed. */
static char **metadata_decode(const char *s, size_t len) {
        _cleanup_strv_free_ char **l = NULL;
        json_t *o, *v;
        const char *k;

        o = json_loadb(s, len, 0, NULL);
        if (!o)
                return NULL;
        if (json_is_object(o))
                json_object_foreach(o, k, v) {
                        if (!json_is_string(v))
                                continue;
                        if (strv_extend(&l, k) < 0 || strv_extend(&l, json_string_value(v)) < 0) {
                                json_decref(o);
                                return NULL;
                        }
                }
        json_decref(o);
        return TAKE_PTR(l);
}

/*
 * Hands one entry (fields: the flat field/value array) to the block through
 * d, which is OPEN and counted busy. The block may settle, unsubscribe or
 * close from inside: the caller holds a reference and checks sub->dead.
 */
static void delivery_offer(PubsubDelivery *d, const redisReply *fields) {
        PubsubSubscription *sub = d->sub;
        _cleanup_strv_free_ char **metadata = NULL;
        const char *data = "";
        size_t len = 0;

        for (size_t i = 0; i + 1 < fields->elements; i += 2) {
                const redisReply *k = fields->element[i], *v = fields->element[i + 1];
                if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                        continue;
                if (k->len == 4 && memcmp(k->str, "data", 4) == 0) {
                        data = v->str;
                        len = v->len;
                } else if (k->len == 8 && memcmp(k->str, "metadata", 8) == 0)
                        metadata = metadata_decode(v->str, v->len);
        }

        const PubsubMessage msg = {
                .topic = sub->topic,
                .data = data,
                .len = len,
                .metadata = metadata,
                .id = d->id,
                .attempt = d->attempt,
        };
        sub->deliver(sub, d, &msg, sub->userdata);
}

static PubsubDelivery *delivery_new(PubsubSubscription *sub, const char *id, unsigned attempt) {
        PubsubDelivery *d = calloc(1, sizeof(*d));
        if (!d)
                return NULL;
        d->sub = sub;
        d->state = DELIVERY_OPEN;
        d->attempt = attempt;
        snprintf(d->id, sizeof(d->id), "%s", id);
        d->prev = sub->deliveries_tail;
        if (sub->deliveries_tail)
                sub->deliveries_tail->next = d;
        else
                sub->deliveries = d;
        sub->deliveries_tail = d;
        sub->n_busy++;
        return d;
}

static void on_ignored_reply(const redisReply *reply, int error, const char *message, void *userdata) {
}

/* XACK without a delivery record: an entry that was deleted from the stream while pending. */
static void ack_orphan_id(PubsubSubscription *sub, const char *id) {
        const char *argv[] = { "XACK", sub->topic, sub->group, id };
        const size_t argvlen[] = { 4, strlen(sub->topic), strlen(sub->group), strlen(id) };
        (void) redis_conn_send(&sub->broker->cmd, sub->broker->timeout_usec, on_ignored_reply, NULL,
                               (int) ELEMENTSOF(argv), argv, argvlen);
}

/*
 * Delivers the entries of an XREADGROUP/XCLAIM entry array: each [id, fields]
 * not already held here becomes a delivery; an entry whose fields are nil was
 * deleted from the stream while pending and is acknowledged away. counts:
 * attempt numbers (NULL: first deliveries). cursor, if not NULL, gets the
 * last id seen. Returns false when the subscription died meanwhile.
 */
static bool deliver_entries(PubsubSubscription *sub, const redisReply *entries, const PendingCounts *counts,
                            char *cursor) {
        bool alive = true;

        if (!entries || entries->type != REDIS_REPLY_ARRAY)
                return true;

        sub_ref(sub);
        sub->dispatching = true;
        for (size_t i = 0; i < entries->elements && alive; i++) {
                const redisReply *e = entries->element[i];
                char id[PS_ID_MAX];

                if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || !id_copy(id, e->element[0]))
                        continue;
                if (cursor)
                        memcpy(cursor, id, PS_ID_MAX);
                if (entry_held(sub, id))
                        continue;
                if (e->element[1]->type != REDIS_REPLY_ARRAY) {
                        ack_orphan_id(sub, id);
                        continue;
                }
                PubsubDelivery *d = delivery_new(sub, id, counts ? counts_attempt(counts, id) : 1);
                if (!d)
                        break; /* left pending: offered again after a reconnect or by a reclaim */
                delivery_offer(d, e->element[1]);
                alive = !sub->dead;
        }
        if (alive)
                sub->dispatching = false;
        sub_unref(sub);
        return alive;
}

/* ---- reading ---- */

static int on_broken_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        PubsubSubscription *sub = userdata;

        if (sub->phase == SUB_BROKEN && redis_conn_is_ready(&sub->reader))
                sub_setup(sub);
        return 0;
}

/* The server refused a step (not a stream, no permission, ...): try the setup again later. */
static void sub_break(PubsubSubscription *sub) {
        sub->phase = SUB_BROKEN;
        (void) timer_arm(sub->broker->base.event, &sub->broken_timer, PS_RETRY_LATER_USEC, on_broken_timer,
                         sub);
}

static void on_read_counts(const redisReply *reply, int error, const char *message, void *userdata) {
        PubsubSubscription *sub = userdata;
        char last[PS_ID_MAX];

        if (sub->dead || !reply)
                return;
        (void) counts_parse(&sub->read_counts, reply, last);
}

static void on_read(const redisReply *reply, int error, const char *message, void *userdata) {
        PubsubSubscription *sub = userdata;
        const redisReply *entries = NULL;

        if (sub->dead)
                return;
        sub->reading = false;
        sub->read_reserved = 0;
        if (!reply) {
                counts_clear(&sub->read_counts);
                return; /* the reader is gone; its ready callback starts over */
        }
        if (reply->type == REDIS_REPLY_ERROR) {
                counts_clear(&sub->read_counts);
                if (reply_is_error(reply, "NOGROUP"))
                        sub_setup(sub); /* the stream or group was deleted (or the server wiped) */
                else
                        sub_break(sub);
                return;
        }

        /* [[topic, [entries]]], or nil when BLOCK timed out */
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
            reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements >= 2)
                entries = reply->element[0]->element[1];

        if (sub->phase == SUB_OWN_PENDING) {
                if (!entries || entries->type != REDIS_REPLY_ARRAY || entries->elements == 0)
                        sub->phase = SUB_LIVE; /* all re-read: on to new entries */
                else if (!deliver_entries(sub, entries, &sub->read_counts, sub->cursor))
                        return;
                counts_clear(&sub->read_counts);
        } else if (!deliver_entries(sub, entries, NULL, NULL))
                return;
        sub_pump(sub);
}

/* Reads up to n entries: this consumer's pending ones first, then new ones. */
static void read_start(PubsubSubscription *sub, unsigned n) {
        RedisBroker *b = sub->broker;
        char count[16], block[32], start[PS_ID_MAX + 1];
        int r;

        snprintf(count, sizeof(count), "%u", n);
        if (sub->phase == SUB_OWN_PENDING) {
                /* Delivery counts first, so the entries come with their attempt numbers. */
                snprintf(start, sizeof(start), "%s%s", streq(sub->cursor, "0") ? "-" : "(",
                         streq(sub->cursor, "0") ? "" : sub->cursor);
                const char *pargv[] = { "XPENDING", sub->topic, sub->group, start, "+", count,
                                        sub->consumer };
                size_t pargvlen[ELEMENTSOF(pargv)];
                for (size_t i = 0; i < ELEMENTSOF(pargv); i++)
                        pargvlen[i] = strlen(pargv[i]);
                r = redis_conn_send(&sub->reader, b->timeout_usec, on_read_counts, sub,
                                    (int) ELEMENTSOF(pargv), pargv, pargvlen);
                if (r < 0)
                        return;

                const char *argv[] = { "XREADGROUP", "GROUP", sub->group, sub->consumer, "COUNT", count,
                                       "STREAMS", sub->topic, sub->cursor };
                size_t argvlen[ELEMENTSOF(argv)];
                for (size_t i = 0; i < ELEMENTSOF(argv); i++)
                        argvlen[i] = strlen(argv[i]);
                r = redis_conn_send(&sub->reader, b->timeout_usec, on_read, sub, (int) ELEMENTSOF(argv),
                                    argv, argvlen);
        } else {
                snprintf(block, sizeof(block), "%" PRIu64, MAX(b->block_usec / 1000, 1U));
                const char *argv[] = { "XREADGROUP", "GROUP", sub->group, sub->consumer, "COUNT", count,
                                       "BLOCK", block, "STREAMS", sub->topic, ">" };
                size_t argvlen[ELEMENTSOF(argv)];
                for (size_t i = 0; i < ELEMENTSOF(argv); i++)
                        argvlen[i] = strlen(argv[i]);
                r = redis_conn_send(&sub->reader, b->block_usec + b->timeout_usec, on_read, sub,
                                    (int) ELEMENTSOF(argv), argv, argvlen);
        }
        if (r < 0)
                return; /* out of memory: the next settle or reclaim tick tries again */
        sub->reading = true;
        sub->read_reserved = n;
}

static void on_group_created(const redisReply *reply, int error, const char *message, void *userdata) {
        PubsubSubscription *sub = userdata;

        if (sub->dead || !reply)
                return;
        if (reply->type == REDIS_REPLY_ERROR && !reply_is_error(reply, "BUSYGROUP")) {
                sub_break(sub);
                return;
        }
        sub->phase = SUB_OWN_PENDING;
        snprintf(sub->cursor, sizeof(sub->cursor), "0");
        sub_pump(sub);
}

/* Creates the group (and the stream) if need be, then reads. Needs the reader connected. */
static void sub_setup(PubsubSubscription *sub) {
        const char *argv[] = { "XGROUP", "CREATE", sub->topic, sub->group, "0", "MKSTREAM" };
        size_t argvlen[ELEMENTSOF(argv)];

        for (size_t i = 0; i < ELEMENTSOF(argv); i++)
                argvlen[i] = strlen(argv[i]);
        sub->phase = SUB_CREATING;
        if (redis_conn_send(&sub->reader, sub->broker->timeout_usec, on_group_created, sub,
                            (int) ELEMENTSOF(argv), argv, argvlen) < 0)
                sub_break(sub);
}

static void on_reader_ready(RedisConn *conn, bool ready, void *userdata) {
        PubsubSubscription *sub = userdata;

        if (sub->dead)
                return;
        if (ready)
                sub_setup(sub);
        else
                sub->phase = SUB_IDLE;
}

/* ---- reclaiming ---- */

static void reclaim_finish(PubsubSubscription *sub) {
        sub->reclaiming = false;
        sub->claim_reserved = 0;
        counts_clear(&sub->claim_counts);
}

static void on_reclaimed(const redisReply *reply, int error, const char *message, void *userdata) {
        PubsubSubscription *sub = userdata;

        if (!sub->dead) {
                PendingCounts counts = sub->claim_counts;

                sub->claim_counts = (PendingCounts){};
                reclaim_finish(sub);
                /* XCLAIM answers with the entries it took, [id, fields] each. */
                if (!reply || deliver_entries(sub, reply, &counts, NULL))
                        sub_pump(sub);
                counts_clear(&counts);
        }
        sub_unref(sub);
}

/* XCLAIM <topic> <group> <consumer> <min-idle> <id>...: only what is still idle that long moves. */
static int reclaim_claim(PubsubSubscription *sub) {
        RedisBroker *b = sub->broker;
        size_t n = sub->claim_counts.n, argc = 5 + n;
        _cleanup_free_ const char **argv = calloc(argc, sizeof(*argv));
        _cleanup_free_ size_t *argvlen = calloc(argc, sizeof(*argvlen));
        char min_idle[32];
        int r;

        if (!argv || !argvlen)
                return -ENOMEM;
        snprintf(min_idle, sizeof(min_idle), "%" PRIu64, MAX(b->processing_timeout_usec / 1000, 1U));
        argv[0] = "XCLAIM";
        argv[1] = sub->topic;
        argv[2] = sub->group;
        argv[3] = sub->consumer;
        argv[4] = min_idle;
        for (size_t i = 0; i < n; i++)
                argv[5 + i] = sub->claim_counts.items[i].id;
        for (size_t i = 0; i < argc; i++)
                argvlen[i] = strlen(argv[i]);
        r = redis_conn_send(&b->cmd, b->timeout_usec, on_reclaimed, sub_ref(sub), (int) argc, argv, argvlen);
        if (r < 0)
                sub_unref(sub);
        return r;
}

static void on_reclaim_candidates(const redisReply *reply, int error, const char *message, void *userdata) {
        PubsubSubscription *sub = userdata;
        char last[PS_ID_MAX];
        size_t n = 0;
        int r;

        if (sub->dead) {
                sub_unref(sub);
                return;
        }

        r = reply ? counts_parse(&sub->claim_counts, reply, last) : 0;
        /* A full page: there may be more after it, look there next. */
        if (r > 0 && (unsigned) r >= sub->broker->queue_depth && last[0]) {
                snprintf(sub->reclaim_start, sizeof(sub->reclaim_start), "(%s", last);
                sub->reclaim_due = true;
        } else
                snprintf(sub->reclaim_start, sizeof(sub->reclaim_start), "-");

        /* Keep the candidates not held here, up to the slots reserved. */
        for (size_t i = 0; i < sub->claim_counts.n; i++)
                if (n < sub->claim_reserved && !entry_held(sub, sub->claim_counts.items[i].id))
                        sub->claim_counts.items[n++] = sub->claim_counts.items[i];
        sub->claim_counts.n = n;

        if (n == 0 || reclaim_claim(sub) < 0) {
                reclaim_finish(sub);
                sub_pump(sub);
        }
        sub_unref(sub);
}

/* Looks for up to n entries of the group idle longer than processingTimeout, to take them over. */
static void reclaim_start(PubsubSubscription *sub, unsigned n) {
        RedisBroker *b = sub->broker;
        char idle[32], count[16];

        sub->reclaim_due = false;
        snprintf(idle, sizeof(idle), "%" PRIu64, MAX(b->processing_timeout_usec / 1000, 1U));
        snprintf(count, sizeof(count), "%u", b->queue_depth);
        const char *argv[] = { "XPENDING", sub->topic, sub->group, "IDLE",
                               idle, sub->reclaim_start, "+", count };
        size_t argvlen[ELEMENTSOF(argv)];
        for (size_t i = 0; i < ELEMENTSOF(argv); i++)
                argvlen[i] = strlen(argv[i]);
        if (redis_conn_send(&b->cmd, b->timeout_usec, on_reclaim_candidates, sub_ref(sub),
                            (int) ELEMENTSOF(argv), argv, argvlen) < 0) {
                sub_unref(sub);
                return;
        }
        sub->reclaiming = true;
        sub->claim_reserved = n;
}

static int on_reclaim_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        PubsubSubscription *sub = userdata;
        RedisBroker *b = sub->broker;

        (void) timer_arm(b->base.event, &sub->reclaim_timer, b->redeliver_interval_usec, on_reclaim_timer,
                         sub);
        sub->reclaim_due = true;
        sub_pump(sub);
        return 0;
}

/* ---- the pump: what to ask the server for next ---- */

/*
 * Starts a reclaim when one is due, then a read, within the free delivery
 * slots. Called whenever slots free up or a step completes.
 */
static void sub_pump(PubsubSubscription *sub) {
        RedisBroker *b = sub->broker;
        unsigned n;

        if (sub->dead || sub->dispatching)
                return;
        if (sub->phase != SUB_OWN_PENDING && sub->phase != SUB_LIVE)
                return;

        n = MIN(sub_free_slots(sub), b->queue_depth);
        if (n > 0 && sub->reclaim_due && !sub->reclaiming && redis_conn_is_ready(&b->cmd)) {
                reclaim_start(sub, n);
                n = MIN(sub_free_slots(sub), b->queue_depth);
        }
        if (n > 0 && !sub->reading && redis_conn_is_ready(&sub->reader))
                read_start(sub, n);
}

/* ---- settling ---- */

static void on_acked(const redisReply *reply, int error, const char *message, void *userdata) {
        PubsubDelivery *d = userdata;
        PubsubSubscription *sub = d->sub;

        d->cmd_out = false;
        if (!sub->dead && !reply && (error == -ENOTCONN || error == -ETIMEDOUT)) {
                /* XACK is idempotent: send it again once the command connection is back. */
                d->state = DELIVERY_ACK_QUEUED;
                if (redis_conn_is_ready(&sub->broker->cmd))
                        delivery_ack(d);
        } else
                delivery_free(d);
        sub_unref(sub);
}

/* Sends XACK for d (whose slot is already free); d is freed once it is answered. */
static void delivery_ack(PubsubDelivery *d) {
        PubsubSubscription *sub = d->sub;
        RedisBroker *b = sub->broker;
        const char *argv[] = { "XACK", sub->topic, sub->group, d->id };
        const size_t argvlen[] = { 4, strlen(sub->topic), strlen(sub->group), strlen(d->id) };

        d->state = DELIVERY_ACKING;
        if (redis_conn_send(&b->cmd, b->timeout_usec, on_acked, d, (int) ELEMENTSOF(argv), argv, argvlen) <
            0) {
                delivery_free(d); /* stays pending in the group: offered again later */
                return;
        }
        d->cmd_out = true;
        sub_ref(sub);
}

static int on_retry_timer(sd_event_source *es, uint64_t usec, void *userdata);

/* The entry could not be fetched again now: try once more a while later. */
static void delivery_wait(PubsubDelivery *d, uint64_t usec) {
        d->state = DELIVERY_WAIT;
        if (timer_arm(d->sub->broker->base.event, &d->timer, usec, on_retry_timer, d) < 0) {
                /* No timer: give the slot back, a reclaim will find the entry. */
                PubsubSubscription *sub = d->sub;
                sub->n_busy--;
                delivery_free(d);
                sub_pump(sub);
        }
}

static void on_refetched(const redisReply *reply, int error, const char *message, void *userdata) {
        PubsubDelivery *d = userdata;
        PubsubSubscription *sub = d->sub;

        d->cmd_out = false;
        if (sub->dead) {
                delivery_free(d);
                sub_unref(sub);
                return;
        }

        if (!reply)
                delivery_wait(d, PS_RETRY_LATER_USEC);
        else if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                 reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements >= 2 &&
                 reply->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
                /* Offered again, with the next attempt number. */
                d->state = DELIVERY_OPEN;
                d->attempt++;
                sub_ref(sub);
                sub->dispatching = true;
                delivery_offer(d, reply->element[0]->element[1]);
                if (!sub->dead) {
                        sub->dispatching = false;
                        sub_pump(sub);
                }
                sub_unref(sub);
        } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
                /* Deleted from the stream while pending (nil fields): acknowledge it away. */
                sub->n_busy--;
                delivery_ack(d);
                sub_pump(sub);
        } else {
                /* Gone from the group (acknowledged elsewhere, deleted), or refused: nothing to offer. */
                sub->n_busy--;
                delivery_free(d);
                sub_pump(sub);
        }
        sub_unref(sub);
}

static int on_retry_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        PubsubDelivery *d = userdata;
        PubsubSubscription *sub = d->sub;
        RedisBroker *b = sub->broker;
        const char *argv[] = { "XCLAIM", sub->topic, sub->group, sub->consumer, "0", d->id };
        const size_t argvlen[] = { 6, strlen(sub->topic), strlen(sub->group), strlen(sub->consumer), 1,
                                   strlen(d->id) };

        d->timer = sd_event_source_disable_unref(d->timer);
        d->state = DELIVERY_CLAIMING;
        if (redis_conn_send(&b->cmd, b->timeout_usec, on_refetched, d, (int) ELEMENTSOF(argv), argv,
                            argvlen) < 0) {
                delivery_wait(d, PS_RETRY_LATER_USEC);
                return 0;
        }
        d->cmd_out = true;
        sub_ref(sub);
        return 0;
}

/* Settles an OPEN delivery: ACK acknowledges it, RETRY offers it again after retry_after_usec. */
static void redis_settle(PubsubDelivery *d, PubsubOutcome outcome, uint64_t retry_after_usec) {
        PubsubSubscription *sub = d->sub;

        assert(!sub->dead);
        assert(d->state == DELIVERY_OPEN);
        assert(sub->n_busy > 0);

        if (outcome == PUBSUB_RETRY) {
                delivery_wait(d, retry_after_usec);
                return; /* keeps its slot */
        }
        sub->n_busy--;
        delivery_ack(d);
        sub_pump(sub);
}

/* ---- the command connection ---- */

static void on_cmd_ready(RedisConn *conn, bool ready, void *userdata) {
        RedisBroker *b = userdata;

        if (!ready)
                return;
        /* Acknowledgements that waited for the connection, then reclaims that were due. */
        for (PubsubSubscription *sub = b->subs; sub; sub = sub->next)
                for (PubsubDelivery *d = sub->deliveries, *next; d; d = next) {
                        next = d->next; /* delivery_ack() may free d */
                        if (d->state == DELIVERY_ACK_QUEUED)
                                delivery_ack(d);
                }
        for (PubsubSubscription *sub = b->subs; sub; sub = sub->next)
                sub_pump(sub);
}

/* ---- publish / subscribe ---- */

static void on_published(const redisReply *reply, int error, const char *message, void *userdata) {
        Publish *p = userdata;
        PubsubDoneFn done = p->done;
        void *ud = p->userdata;
        char buf[600];

        free(p);
        if (!reply)
                done(error, message, ud);
        else if (reply->type == REDIS_REPLY_ERROR) {
                snprintf(buf, sizeof(buf), "redis: XADD failed: %.*s", (int) MIN(reply->len, 512),
                         reply->str ?: "");
                done(-EIO, buf, ud);
        } else
                done(0, NULL, ud);
}

/* The publish metadata as a compact JSON object. Returns 0, -EINVAL (a value not UTF-8) or -ENOMEM. */
static int metadata_encode(char *const *metadata, char **ret) {
        json_t *o = json_object();
        char *s;

        if (!o)
                return -ENOMEM;
        for (size_t i = 0; metadata[i] && metadata[i + 1]; i += 2) {
                json_t *v = json_string(metadata[i + 1]);
                if (!v || json_object_set_new(o, metadata[i], v) < 0) {
                        json_decref(o);
                        return -EINVAL;
                }
        }
        s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int redis_publish(PubsubBroker *base, const char *topic, const void *data, size_t len,
                         char *const *metadata, int64_t ttl_sec, PubsubDoneFn done, void *userdata) {
        RedisBroker *b = (RedisBroker *) base;
        _cleanup_free_ char *md = NULL;
        const char *argv[9];
        size_t argvlen[9];
        char maxlen[32];
        int argc = 0, r;

        assert(topic && done);
        assert(data || len == 0);
        if (b->closing)
                return -ECANCELED;
        if (metadata && metadata[0]) {
                r = metadata_encode(metadata, &md);
                if (r < 0)
                        return r;
        }

        /* XADD <topic> [MAXLEN ~ <n>] * data <bytes> [metadata <json>] */
        argv[argc++] = "XADD";
        argv[argc++] = topic;
        if (b->max_len > 0) {
                snprintf(maxlen, sizeof(maxlen), "%" PRIu64, b->max_len);
                argv[argc++] = "MAXLEN";
                argv[argc++] = "~";
                argv[argc++] = maxlen;
        }
        argv[argc++] = "*";
        argv[argc++] = "data";
        for (int i = 0; i < argc; i++)
                argvlen[i] = strlen(argv[i]);
        argv[argc] = len > 0 ? data : "";
        argvlen[argc++] = len;
        if (md) {
                argv[argc] = "metadata";
                argvlen[argc++] = 8;
                argv[argc] = md;
                argvlen[argc++] = strlen(md);
        }

        Publish *p = malloc(sizeof(*p));
        if (!p)
                return -ENOMEM;
        *p = (Publish){ .done = done, .userdata = userdata };
        r = redis_conn_send(&b->cmd, b->timeout_usec, on_published, p, argc, argv, argvlen);
        if (r < 0)
                free(p);
        return r;
}

/* The lowest consumer suffix no live subscription of this topic and group uses. */
static unsigned consumer_index(const RedisBroker *b, const char *topic, const char *group) {
        for (unsigned i = 1;; i++) {
                bool used = false;
                for (const PubsubSubscription *s = b->subs; s && !used; s = s->next)
                        used = s->index == i && streq(s->topic, topic) && streq(s->group, group);
                if (!used)
                        return i;
        }
}

static int redis_subscribe(PubsubBroker *base, const char *topic, const char *group, unsigned max_in_flight,
                           PubsubDeliverFn deliver, void *userdata, PubsubSubscription **ret) {
        RedisBroker *b = (RedisBroker *) base;
        PubsubSubscription *sub;
        int r;

        assert(topic && deliver && ret);
        if (b->closing)
                return -ECANCELED;
        if (b->group_override)
                group = b->group_override;
        if (!group || !*group || !*topic)
                return -EINVAL;

        sub = calloc(1, sizeof(*sub));
        if (!sub)
                return -ENOMEM;
        sub->n_ref = 1;
        sub->dead = true; /* until fully set up: sub_unref() may free it */
        sub->broker = b;
        sub->deliver = deliver;
        sub->userdata = userdata;
        sub->limit = max_in_flight > 0 ? max_in_flight : b->queue_depth;
        if (b->concurrency > 0)
                sub->limit = MIN(sub->limit, b->concurrency);
        sub->index = consumer_index(b, topic, group);
        snprintf(sub->reclaim_start, sizeof(sub->reclaim_start), "-");
        sub->topic = strdup(topic);
        sub->group = strdup(group);
        if (sub->index == 1)
                sub->consumer = strdup(b->consumer_base);
        else if (asprintf(&sub->consumer, "%s.%u", b->consumer_base, sub->index) < 0)
                sub->consumer = NULL;
        if (!sub->topic || !sub->group || !sub->consumer) {
                sub_unref(sub);
                return -ENOMEM;
        }

        if (b->redeliver_interval_usec > 0 && b->processing_timeout_usec > 0) {
                r = timer_arm(base->event, &sub->reclaim_timer, b->redeliver_interval_usec, on_reclaim_timer,
                              sub);
                if (r < 0) {
                        sub_unref(sub);
                        return r;
                }
        }
        /* Connects without waiting; its ready callback creates the group and starts reading. */
        r = redis_conn_init(&sub->reader, base->event, &b->config, on_reader_ready, sub);
        if (r < 0) {
                sub->reclaim_timer = sd_event_source_disable_unref(sub->reclaim_timer);
                sub_unref(sub);
                return r;
        }

        sub->dead = false;
        sub->next = b->subs;
        if (b->subs)
                b->subs->prev = sub;
        b->subs = sub;
        *ret = sub;
        return 0;
}

static void redis_unsubscribe(PubsubSubscription *sub) {
        sub_teardown(sub);
        sub_unref(sub);
}

/* ---- open / close ---- */

static int redis_open(PubsubBroker *base, char **reterr_msg) {
        RedisBroker *b = (RedisBroker *) base;
        const Component *c = base->component;
        uint64_t depth = PS_DEFAULT_QUEUE_DEPTH, concurrency = 0;
        const char *v;
        int r;

        *reterr_msg = NULL;
        b->timeout_usec = REDIS_DEFAULT_TIMEOUT_USEC;
        b->processing_timeout_usec = PS_DEFAULT_PROCESSING_TIMEOUT_USEC;
        b->redeliver_interval_usec = PS_DEFAULT_REDELIVER_INTERVAL_USEC;

        /* hiredis is mapped by the first Redis component, not at daemon start. */
        r = dlopen_hiredis("pubsub.redis", reterr_msg);
        if (r < 0)
                return r;
        r = redis_config_parse(&b->config, c, reterr_msg);
        if (r < 0)
                return r;

        r = redis_parse_duration_field(c, "timeout", false, &b->timeout_usec, reterr_msg);
        if (r >= 0)
                r = redis_parse_duration_field(c, "readTimeout", false, &b->timeout_usec, reterr_msg);
        if (r >= 0)
                r = redis_parse_duration_field(c, "processingTimeout", true, &b->processing_timeout_usec,
                                               reterr_msg);
        if (r >= 0)
                r = redis_parse_duration_field(c, "redeliverInterval", true, &b->redeliver_interval_usec,
                                               reterr_msg);
        if (r >= 0)
                r = redis_parse_uint_field(c, "maxLenApprox", INT64_MAX, &b->max_len, reterr_msg);
        if (r >= 0)
                r = redis_parse_uint_field(c, "queueDepth", 100000, &depth, reterr_msg);
        if (r >= 0)
                r = redis_parse_uint_field(c, "concurrency", 100000, &concurrency, reterr_msg);
        if (r < 0)
                goto fail;
        if (depth == 0 || (component_get_string(c, "concurrency") && concurrency == 0)) {
                r = redis_fail_field(reterr_msg, -EINVAL, "%s: must be at least 1",
                                     depth == 0 ? "queueDepth" : "concurrency");
                goto fail;
        }
        b->queue_depth = (unsigned) depth;
        b->concurrency = (unsigned) concurrency;
        /* A waiting read returns at least this often, so a due reclaim never waits long for it. */
        b->block_usec = PS_BLOCK_MAX_USEC;
        if (b->redeliver_interval_usec > 0)
                b->block_usec = MIN(b->block_usec, MAX(b->redeliver_interval_usec, 10 * 1000ULL));

        v = component_get_string(c, "consumerID");
        if (v && *v && !(b->group_override = strdup(v))) {
                r = -ENOMEM;
                goto fail;
        }
        /* Stable across restarts, and apart from another component of this daemon on the same server. */
        if (asprintf(&b->consumer_base, "%s:%s",
                     base->instance_id && *base->instance_id ? base->instance_id : "mooring",
                     base->name ?: "pubsub") < 0)
                b->consumer_base = NULL;
        if (!b->consumer_base) {
                r = -ENOMEM;
                goto fail;
        }

        r = redis_conn_init(&b->cmd, base->event, &b->config, on_cmd_ready, b);
        if (r < 0) {
                r = redis_fail_field(reterr_msg, r, "cannot set up the connection: %s", strerror(-r));
                goto fail;
        }
        return 0;

fail:
        if (r == -ENOMEM && !*reterr_msg)
                *reterr_msg = strdup("out of memory");
        free(b->group_override);
        free(b->consumer_base);
        b->group_override = b->consumer_base = NULL;
        redis_config_done(&b->config);
        return r;
}

static void redis_close(PubsubBroker *base) {
        RedisBroker *b = (RedisBroker *) base;

        b->closing = true;
        while (b->subs) {
                PubsubSubscription *sub = b->subs;
                sub_teardown(sub);
                sub_unref(sub);
        }
        /* Publishes and acknowledgements still out get -ECANCELED now; that frees the last subscriptions. */
        redis_conn_done(&b->cmd, "pubsub broker closed");
        free(b->group_override);
        free(b->consumer_base);
        redis_config_done(&b->config);
}

const PubsubDriver pubsub_redis_driver = {
        .type = "pubsub.redis",
        .alias = NULL,
        .abi = PUBSUB_DRIVER_ABI,
        .instance_size = sizeof(RedisBroker),
        .native_ttl = false,
        .open = redis_open,
        .close = redis_close,
        .publish = redis_publish,
        .subscribe = redis_subscribe,
        .unsubscribe = redis_unsubscribe,
        .settle = redis_settle,
};
