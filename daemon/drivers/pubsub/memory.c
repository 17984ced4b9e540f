/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pubsub.in-memory: a broker in the daemon's memory, for tests and for
 * messages that may be lost with the process. Per topic, groups (created by
 * their first subscribe, then kept) each hold a FIFO of entries pointing at
 * shared, reference-counted messages; subscriptions of one group take turns
 * on its entries. One defer source "pumps" due entries to subscriptions with
 * room; one timer wakes it for retries.
 *
 * Messages published to a topic no group has subscribed yet wait for the
 * first group that does (queue semantics), as with the embedded SQLite broker.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "driver.h"

typedef struct MemMsg {
        unsigned n_ref;
        char *topic;
        void *data;
        size_t len;
        char **metadata;
        char id[24];
} MemMsg;

typedef struct MemEntry {
        MemMsg *msg;
        unsigned attempt;
        uint64_t due_usec;           /* CLOCK_MONOTONIC; 0: now */
        PubsubDelivery *lease;       /* the delivery holding it, NULL when free */
        struct MemEntry *next, *prev;
} MemEntry;

typedef struct MemGroup MemGroup;
typedef struct MemBroker MemBroker;

struct PubsubSubscription {
        MemBroker *broker;
        MemGroup *group;
        PubsubDeliverFn deliver;
        void *userdata;
        unsigned max_in_flight, in_flight;
        PubsubSubscription *next;    /* in the group */
};

struct PubsubDelivery {
        PubsubSubscription *sub;
        MemEntry *entry;
        PubsubDelivery *next, *prev; /* broker's list of unsettled deliveries */
};

struct MemGroup {
        char *topic, *name;
        MemEntry *head, *tail;
        PubsubSubscription *subs;
        PubsubSubscription *turn;    /* round robin among subs */
        MemGroup *next;
};

typedef struct MemPublish {
        MemBroker *broker;
        PubsubDoneFn done;
        void *userdata;
        struct MemPublish *next;
} MemPublish;

struct MemBroker {
        PubsubBroker base;
        MemGroup *groups;
        MemEntry *orphans_head, *orphans_tail; /* published before any group subscribed */
        PubsubDelivery *deliveries;
        MemPublish *published, **published_tail; /* done callbacks waiting for the loop */
        sd_event_source *pump, *timer;
        uint64_t next_id;
};

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static MemMsg *msg_unref(MemMsg *m) {
        if (m && --m->n_ref == 0) {
                free(m->topic);
                free(m->data);
                strv_free(m->metadata);
                free(m);
        }
        return NULL;
}

static void list_append(MemEntry **head, MemEntry **tail, MemEntry *e) {
        e->prev = *tail;
        e->next = NULL;
        if (*tail)
                (*tail)->next = e;
        else
                *head = e;
        *tail = e;
}

static void list_remove(MemEntry **head, MemEntry **tail, MemEntry *e) {
        if (e->prev)
                e->prev->next = e->next;
        else
                *head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                *tail = e->prev;
        e->next = e->prev = NULL;
}

static void entry_free(MemEntry *e) {
        msg_unref(e->msg);
        free(e);
}

static void kick(MemBroker *b) {
        (void) sd_event_source_set_enabled(b->pump, SD_EVENT_ONESHOT);
}

static void delivery_free(MemBroker *b, PubsubDelivery *d) {
        if (d->prev)
                d->prev->next = d->next;
        else
                b->deliveries = d->next;
        if (d->next)
                d->next->prev = d->prev;
        free(d);
}

/* Offers the first due entry of g to the next subscription with room. true if it did. */
static bool pump_group(MemBroker *b, MemGroup *g, uint64_t now, uint64_t *next_due) {
        for (MemEntry *e = g->head; e && g->subs; e = e->next) {
                if (e->lease)
                        continue;
                if (e->due_usec > now) {
                        if (e->due_usec < *next_due)
                                *next_due = e->due_usec;
                        continue;
                }
                /* The next subscription (round robin) with room. */
                PubsubSubscription *s = g->turn ?: g->subs, *start = s;
                while (s->in_flight >= s->max_in_flight) {
                        s = s->next ?: g->subs;
                        if (s == start)
                                return false; /* everyone is full */
                }
                g->turn = s->next ?: g->subs;
                PubsubDelivery *d = calloc(1, sizeof *d);
                if (!d)
                        return false;
                *d = (PubsubDelivery){ .sub = s, .entry = e, .next = b->deliveries };
                if (d->next)
                        d->next->prev = d;
                b->deliveries = d;
                e->lease = d;
                e->attempt++;
                s->in_flight++;
                PubsubMessage m = { .topic = e->msg->topic, .data = e->msg->data, .len = e->msg->len,
                                    .metadata = e->msg->metadata, .id = e->msg->id, .attempt = e->attempt };
                /* deliver may settle (ACK frees e) or unsubscribe: the caller starts over. */
                s->deliver(s, d, &m, s->userdata);
                return true;
        }
        return false;
}

static int on_pump(sd_event_source *src, void *userdata) {
        MemBroker *b = userdata;
        uint64_t now = now_usec(), next_due = UINT64_MAX;

        /* Publish answers first: "durably accepted" here means stored in memory. */
        while (b->published) {
                MemPublish *p = b->published;
                b->published = p->next;
                if (!b->published)
                        b->published_tail = &b->published;
                p->done(0, NULL, p->userdata);
                free(p);
        }
        /* A bounded number of deliveries per turn, so the loop serves others in between. */
        for (unsigned n = 0; n < 64;) {
                bool any = false;
                next_due = UINT64_MAX;
                for (MemGroup *g = b->groups; g && n < 64; g = g->next)
                        while (n < 64 && pump_group(b, g, now, &next_due)) {
                                n++;
                                any = true;
                        }
                if (!any)
                        break;
                if (n >= 64) {
                        kick(b);
                        return 0;
                }
        }
        if (next_due != UINT64_MAX) {
                (void) sd_event_source_set_time(b->timer, next_due);
                (void) sd_event_source_set_enabled(b->timer, SD_EVENT_ONESHOT);
        }
        return 0;
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        kick(userdata);
        return 0;
}

static int mem_open(PubsubBroker *base, char **reterr_msg) {
        MemBroker *b = (MemBroker *) base;
        b->published_tail = &b->published;
        if (sd_event_add_defer(base->event, &b->pump, on_pump, b) < 0 ||
            sd_event_add_time(base->event, &b->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_timer, b) < 0) {
                *reterr_msg = strdup("cannot set up event sources");
                return -ENOMEM;
        }
        (void) sd_event_source_set_enabled(b->pump, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(b->timer, SD_EVENT_OFF);
        return 0;
}

static void mem_close(PubsubBroker *base) {
        MemBroker *b = (MemBroker *) base;
        while (b->published) {
                MemPublish *p = b->published;
                b->published = p->next;
                p->done(-ECANCELED, "the pub/sub component is closing", p->userdata);
                free(p);
        }
        while (b->deliveries)
                delivery_free(b, b->deliveries);
        while (b->groups) {
                MemGroup *g = b->groups;
                b->groups = g->next;
                while (g->subs) {
                        PubsubSubscription *s = g->subs;
                        g->subs = s->next;
                        free(s);
                }
                while (g->head) {
                        MemEntry *e = g->head;
                        list_remove(&g->head, &g->tail, e);
                        entry_free(e);
                }
                free(g->topic);
                free(g->name);
                free(g);
        }
        while (b->orphans_head) {
                MemEntry *e = b->orphans_head;
                list_remove(&b->orphans_head, &b->orphans_tail, e);
                entry_free(e);
        }
        sd_event_source_disable_unref(b->pump);
        sd_event_source_disable_unref(b->timer);
}

static int mem_publish(PubsubBroker *base, const char *topic, const void *data, size_t len, char *const *metadata,
                       int64_t ttl_sec, PubsubDoneFn done, void *userdata) {
        MemBroker *b = (MemBroker *) base;
        MemMsg *m = calloc(1, sizeof *m);
        MemPublish *p = calloc(1, sizeof *p);
        bool any = false;

        if (!m || !p)
                goto oom;
        m->n_ref = 1;
        m->topic = strdup(topic);
        m->data = malloc(len ? len : 1);
        if (!m->topic || !m->data || (metadata && strv_copy(metadata, &m->metadata) < 0))
                goto oom;
        memcpy(m->data, data, len);
        m->len = len;
        snprintf(m->id, sizeof m->id, "%llu", (unsigned long long) ++b->next_id);

        /* One entry per group of the topic; none yet: keep it for the first. */
        for (MemGroup *g = b->groups; g; g = g->next) {
                if (!streq(g->topic, topic))
                        continue;
                MemEntry *e = calloc(1, sizeof *e);
                if (!e)
                        goto oom; /* entries already queued keep their refs: fine */
                m->n_ref++;
                e->msg = m;
                list_append(&g->head, &g->tail, e);
                any = true;
        }
        if (!any) {
                MemEntry *e = calloc(1, sizeof *e);
                if (!e)
                        goto oom;
                m->n_ref++;
                e->msg = m;
                list_append(&b->orphans_head, &b->orphans_tail, e);
        }
        msg_unref(m);
        *p = (MemPublish){ .broker = b, .done = done, .userdata = userdata };
        *b->published_tail = p;
        b->published_tail = &p->next;
        kick(b);
        return 0;
oom:
        msg_unref(m);
        free(p);
        return -ENOMEM;
}

static int mem_subscribe(PubsubBroker *base, const char *topic, const char *group, unsigned max_in_flight,
                         PubsubDeliverFn deliver, void *userdata, PubsubSubscription **ret) {
        MemBroker *b = (MemBroker *) base;
        MemGroup *g;

        for (g = b->groups; g; g = g->next)
                if (streq(g->topic, topic) && streq(g->name, group))
                        break;
        if (!g) {
                g = calloc(1, sizeof *g);
                if (!g)
                        return -ENOMEM;
                g->topic = strdup(topic);
                g->name = strdup(group);
                if (!g->topic || !g->name) {
                        free(g->topic);
                        free(g->name);
                        free(g);
                        return -ENOMEM;
                }
                g->next = b->groups;
                b->groups = g;
                /* The first group of a topic takes what waited for one. */
                for (MemEntry *e = b->orphans_head, *n; e; e = n) {
                        n = e->next;
                        if (!streq(e->msg->topic, topic))
                                continue;
                        list_remove(&b->orphans_head, &b->orphans_tail, e);
                        list_append(&g->head, &g->tail, e);
                }
        }
        PubsubSubscription *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        *s = (PubsubSubscription){ .broker = b, .group = g, .deliver = deliver, .userdata = userdata,
                                   .max_in_flight = max_in_flight ? max_in_flight : 1, .next = g->subs };
        g->subs = s;
        *ret = s;
        kick(b);
        return 0;
}

static void mem_unsubscribe(PubsubSubscription *s) {
        MemBroker *b = s->broker;
        MemGroup *g = s->group;

        /* Its unsettled deliveries go back to the group, due now. */
        for (PubsubDelivery *d = b->deliveries, *n; d; d = n) {
                n = d->next;
                if (d->sub != s)
                        continue;
                d->entry->lease = NULL;
                delivery_free(b, d);
        }
        for (PubsubSubscription **p = &g->subs; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        if (g->turn == s)
                g->turn = NULL;
        free(s);
        kick(b);
}

static void mem_settle(PubsubDelivery *d, PubsubOutcome outcome, uint64_t retry_after_usec) {
        PubsubSubscription *s = d->sub;
        MemBroker *b = s->broker;
        MemGroup *g = s->group;
        MemEntry *e = d->entry;

        s->in_flight--;
        e->lease = NULL;
        delivery_free(b, d);
        if (outcome == PUBSUB_ACK) {
                list_remove(&g->head, &g->tail, e);
                entry_free(e);
        } else
                e->due_usec = now_usec() + retry_after_usec;
        kick(b);
}

const PubsubDriver pubsub_memory_driver = {
        .type = "pubsub.in-memory",
        .abi = PUBSUB_DRIVER_ABI,
        .instance_size = sizeof(MemBroker),
        .native_ttl = false,
        .own_storage = true,
        .open = mem_open,
        .close = mem_close,
        .publish = mem_publish,
        .subscribe = mem_subscribe,
        .unsubscribe = mem_unsubscribe,
        .settle = mem_settle,
};
