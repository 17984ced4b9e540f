/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See configstore.h. Each subscription is a ConfigSub on its store: the
 * driver's watch reports changes, the block keeps those of the subscribed
 * keys and queues one delivery per changed key (daprd's shape), sent one at
 * a time through the transport to the app's channel so the app sees changes
 * in order. A queue is bounded (CONFIG_SUB_QUEUE_MAX): past it the oldest
 * delivery is dropped and logged, so a stuck app costs bounded memory.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../core/app.h"
#include "../core/component.h"
#include "../core/registry.h"
#include "../transport/app-channel.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "configstore.h"

#define CONFIG_SUB_QUEUE_MAX 1024U
#define CONFIG_APP_SUBS_MAX 256U
#define CONFIG_DELIVERY_ATTEMPTS 3U
#define CONFIG_RETRY_USEC (1000 * 1000ULL)
#define CONFIG_DELIVERY_TIMEOUT_USEC (30 * 1000 * 1000ULL)
#define CONFIG_ANSWER_MAX (64 * 1024)

typedef struct ConfigDelivery ConfigDelivery;
struct ConfigDelivery {
        char *target;          /* /configuration/{store}/{key} */
        char *body;            /* {"id":..,"items":{..}} */
        ConfigDelivery *next;
};

typedef struct ConfigSub ConfigSub;
struct ConfigSub {
        ConfigStore *store;    /* back-reference */
        char *id;
        char *app_id;
        char **keys;
        ConfigStoreWatch *watch;
        ConfigStoreNotifyFn fn;
        void *userdata;
        ConfigDelivery *head, *tail;
        size_t n_queued;
        TransportCall *call;   /* the head's delivery in flight */
        unsigned attempts;
        sd_event_source *retry;
        ConfigSub *next, *prev;
};

struct ConfigStoreCall {
        ConfigStoreGetFn done;
        void *userdata;
        bool cancelled;
};

struct ConfigStoreSched {
        Registry *registry;    /* borrowed */
        ConfigSub *subs;
        size_t n_subs;
};

/* ---- subscriptions ---- */

static void delivery_free(ConfigDelivery *d) {
        free(d->target);
        free(d->body);
        free(d);
}

static ConfigSub *sub_free(ConfigSub *sub) {
        ConfigStoreSched *q = sub->store->sched;

        if (sub->watch)
                sub->store->driver->unwatch(sub->store, sub->watch);
        transport_call_cancel(sub->call);
        sd_event_source_disable_unref(sub->retry);
        while (sub->head) {
                ConfigDelivery *d = sub->head;
                sub->head = d->next;
                delivery_free(d);
        }
        if (sub->prev)
                sub->prev->next = sub->next;
        else if (q->subs == sub)
                q->subs = sub->next;
        if (sub->next)
                sub->next->prev = sub->prev;
        q->n_subs--;
        free(sub->id);
        free(sub->app_id);
        strv_free(sub->keys);
        free(sub);
        return NULL;
}

static void delivery_next(ConfigSub *sub);

static int on_retry(sd_event_source *es, uint64_t usec, void *userdata) {
        delivery_next(userdata);
        return 0;
}

/* The head delivery is settled (delivered, or given up): on to the next. */
static void delivery_pop(ConfigSub *sub) {
        ConfigDelivery *d = sub->head;
        sub->head = d->next;
        if (!sub->head)
                sub->tail = NULL;
        sub->n_queued--;
        sub->attempts = 0;
        delivery_free(d);
        delivery_next(sub);
}

static void on_app_answered(TransportCall *c, const TransportAnswer *a, const TransportError *e, void *userdata) {
        ConfigSub *sub = userdata;
        ConfigStore *s = sub->store;
        uint64_t now;

        sub->call = NULL;
        if (!e && a->status == 200) {
                delivery_pop(sub);
                return;
        }
        if (++sub->attempts >= CONFIG_DELIVERY_ATTEMPTS) {
                if (e)
                        log_struct(LOG_WARNING, 0, sub->app_id, s->name,
                                   "Configuration update %s not delivered to the app: %s; giving up.",
                                   sub->head->target, e->message ?: strerror(-e->error));
                else
                        log_struct(LOG_WARNING, 0, sub->app_id, s->name,
                                   "Configuration update %s: the app answered %u; giving up.", sub->head->target,
                                   a->status);
                delivery_pop(sub);
                return;
        }
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0 ||
            sd_event_add_time(s->event, &sub->retry, CLOCK_MONOTONIC, now + CONFIG_RETRY_USEC, 0, on_retry, sub) < 0)
                delivery_pop(sub);
}

static const TransportHandler delivery_handler = { .done = on_app_answered };

static void delivery_next(ConfigSub *sub) {
        ConfigStoreSched *q = sub->store->sched;
        TransportAddress addr;
        App *app;

        sub->retry = sd_event_source_disable_unref(sub->retry);
        if (sub->call || !sub->head)
                return;
        app = registry_find_app(q->registry, sub->app_id);
        if (!app || !app_channel_address(app, &addr)) {
                on_app_answered(NULL, NULL, &(TransportError){ .error = -EADDRNOTAVAIL, .message = "no app channel" },
                                sub);
                return;
        }
        static char *const headers[] = { "Content-Type", "application/json", "User-Agent", APP_CHANNEL_USER_AGENT,
                                         NULL };
        TransportRequest req = {
                .method = "POST",
                .target = sub->head->target,
                .headers = headers,
                .body = sub->head->body,
                .body_len = strlen(sub->head->body),
                .timeout_usec = CONFIG_DELIVERY_TIMEOUT_USEC,
                .max_answer = CONFIG_ANSWER_MAX,
        };
        if (transport_call_start(q->registry->transport, &addr, &req, &delivery_handler, sub, &sub->call) < 0)
                on_app_answered(NULL, NULL, &(TransportError){ .error = -ENOMEM, .message = "out of memory" }, sub);
}

/* Dapr's item object: value, version, metadata (empty ones left out, as Go's omitempty does). */
static json_t *item_json(const ConfigItem *it) {
        json_t *j, *md;
        if (!it->value)
                return json_null(); /* deleted (daprd sends the key with null) */
        j = json_object();
        if (!j)
                return NULL;
        if (*it->value)
                json_object_set_new(j, "value", json_string(it->value));
        if (it->version && *it->version)
                json_object_set_new(j, "version", json_string(it->version));
        md = json_object();
        for (char **p = it->metadata; md && p && p[0] && p[1]; p += 2)
                json_object_set_new(md, p[0], json_string(p[1]));
        if (json_object_size(md) > 0)
                json_object_set(j, "metadata", md);
        json_decref(md);
        return j;
}

static void queue_delivery(ConfigSub *sub, char *target, char *body) {
        ConfigDelivery *d = calloc(1, sizeof *d);
        if (!d || !target || !body) {
                free(d);
                free(target);
                free(body);
                log_struct(LOG_WARNING, 0, sub->app_id, sub->store->name,
                           "Configuration update lost: out of memory.");
                return;
        }
        *d = (ConfigDelivery){ .target = target, .body = body };
        if (sub->n_queued >= CONFIG_SUB_QUEUE_MAX) {
                /* the app does not keep up: the oldest waiting (not the one in flight) goes */
                ConfigDelivery *victim = sub->call && sub->head ? sub->head->next : sub->head;
                if (victim) {
                        log_struct(LOG_WARNING, 0, sub->app_id, sub->store->name,
                                   "Configuration update %s dropped: %u updates already wait for the app.",
                                   victim->target, CONFIG_SUB_QUEUE_MAX);
                        if (victim == sub->head)
                                sub->head = victim->next;
                        else
                                sub->head->next = victim->next;
                        if (sub->tail == victim)
                                sub->tail = sub->head == victim ? NULL : sub->head;
                        delivery_free(victim);
                        sub->n_queued--;
                }
        }
        if (sub->tail)
                sub->tail->next = d;
        else
                sub->head = d;
        sub->tail = d;
        sub->n_queued++;
        delivery_next(sub);
}

static void on_change(ConfigStore *s, const ConfigItem *items, size_t n_items, void *userdata) {
        ConfigSub *sub = userdata;
        _cleanup_free_ ConfigItem *mine = calloc(n_items ?: 1, sizeof *mine);
        json_t *j, *obj;
        size_t n = 0;

        if (!mine)
                return;
        for (size_t i = 0; i < n_items; i++)
                if (config_keys_match(sub->keys, items[i].key))
                        mine[n++] = items[i]; /* shallow: borrowed for this call */
        if (n == 0)
                return;
        if (sub->fn) {
                sub->fn(s, sub->id, mine, n, sub->userdata);
                return;
        }
        obj = json_object();
        for (size_t i = 0; obj && i < n; i++)
                json_object_set_new(obj, mine[i].key, item_json(&mine[i]));
        j = json_pack("{s:s, s:o*}", "id", sub->id, "items", obj);
        if (!j) {
                log_struct(LOG_WARNING, 0, sub->app_id, s->name, "Configuration update lost: out of memory.");
                return;
        }
        _cleanup_free_ char *body = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        /* daprd: the whole event once per changed key, at /configuration/{store}/{key} */
        for (size_t i = 0; i < n; i++) {
                char *target = NULL;
                if (asprintf(&target, "/configuration/%s/%s", s->name, mine[i].key) < 0)
                        target = NULL;
                queue_delivery(sub, target, body ? strdup(body) : NULL);
        }
}

static int make_id(char **ret) {
        uint8_t b[16];
        if (getrandom(b, sizeof b, 0) != (ssize_t) sizeof b)
                return -errno ?: -EIO;
        b[6] = (b[6] & 0x0f) | 0x40; /* a version 4 UUID, as daprd's */
        b[8] = (b[8] & 0x3f) | 0x80;
        if (asprintf(ret, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                     b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]) < 0)
                return -ENOMEM;
        return 0;
}

int configstore_subscribe(ConfigStore *s, const char *app_id, char *const *keys, char *const *metadata,
                          ConfigStoreNotifyFn fn, void *userdata, char **ret_id, char **reterr_msg) {
        ConfigStoreSched *q = s->sched;
        ConfigSub *sub;
        size_t n_app = 0;
        int r;

        *reterr_msg = NULL;
        if (!fn) {
                App *a = registry_find_app(q->registry, app_id);
                TransportAddress addr;
                if (!a || !app_channel_address(a, &addr))
                        return -EADDRNOTAVAIL;
        }
        for (size_t i = 0; i < q->registry->n_config_stores; i++)
                for (ConfigSub *o = q->registry->config_stores[i]->sched->subs; o; o = o->next)
                        n_app += streq(o->app_id, app_id);
        if (n_app >= CONFIG_APP_SUBS_MAX)
                return -EMFILE;
        sub = calloc(1, sizeof *sub);
        if (!sub)
                return -ENOMEM;
        *sub = (ConfigSub){ .store = s, .fn = fn, .userdata = userdata, .app_id = strdup(app_id) };
        sub->next = q->subs;
        if (sub->next)
                sub->next->prev = sub;
        q->subs = sub;
        q->n_subs++;
        r = make_id(&sub->id);
        if (r >= 0 && !sub->app_id)
                r = -ENOMEM;
        if (r >= 0 && keys)
                r = strv_copy(keys, &sub->keys);
        if (r >= 0)
                r = s->driver->watch(s, keys, metadata, on_change, sub, &sub->watch, reterr_msg);
        if (r >= 0 && !(*ret_id = strdup(sub->id)))
                r = -ENOMEM;
        if (r < 0) {
                sub_free(sub);
                return r;
        }
        return 0;
}

int configstore_unsubscribe(ConfigStore *s, const char *app_id, const char *id) {
        for (ConfigSub *sub = s->sched->subs; sub; sub = sub->next)
                if (streq(sub->id, id) && streq(sub->app_id, app_id)) {
                        sub_free(sub);
                        return 0;
                }
        return -ENOENT;
}

void configstore_unsubscribe_all(Registry *m, const char *app_id, void *userdata) {
        for (size_t i = 0; i < m->n_config_stores; i++) {
                ConfigSub *sub = m->config_stores[i]->sched->subs;
                while (sub) {
                        ConfigSub *next = sub->next;
                        if (streq(sub->app_id, app_id) && (!userdata || sub->userdata == userdata))
                                sub_free(sub);
                        sub = next;
                }
        }
}

size_t configstore_n_subscriptions(const ConfigStore *s) {
        return s->sched->n_subs;
}

static void on_app_removed(Registry *r, App *a, void *userdata) {
        ConfigStore *s = userdata;
        ConfigSub *sub = s->sched->subs;
        while (sub) {
                ConfigSub *next = sub->next;
                if (streq(sub->app_id, a->config->id))
                        sub_free(sub);
                sub = next;
        }
}

/* ---- reads and writes ---- */

static void on_call_done(const ConfigResult *result, void *userdata) {
        ConfigStoreCall *c = userdata;
        if (!c->cancelled)
                c->done(result, c->userdata);
        free(c);
}

static int start_call(ConfigStore *s, bool set, char *const *keys, char *const *metadata, const ConfigItem *items,
                      size_t n_items, ConfigStoreGetFn done, void *userdata, ConfigStoreCall **ret_call) {
        ConfigStoreCall *c;
        int r;

        if (set && !s->driver->set)
                return -EOPNOTSUPP;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        *c = (ConfigStoreCall){ .done = done, .userdata = userdata };
        r = set ? s->driver->set(s, items, n_items, on_call_done, c)
                : s->driver->get(s, keys, metadata, on_call_done, c);
        if (r < 0) {
                free(c);
                return r;
        }
        if (ret_call)
                *ret_call = c;
        return 0;
}

int configstore_get(ConfigStore *s, char *const *keys, char *const *metadata, ConfigStoreGetFn done,
                    void *userdata, ConfigStoreCall **ret_call) {
        return start_call(s, false, keys, metadata, NULL, 0, done, userdata, ret_call);
}

int configstore_set(ConfigStore *s, const ConfigItem *items, size_t n_items, ConfigStoreGetFn done,
                    void *userdata, ConfigStoreCall **ret_call) {
        return start_call(s, true, NULL, NULL, items, n_items, done, userdata, ret_call);
}

void configstore_cancel(ConfigStoreCall *c) {
        if (c)
                c->cancelled = true;
}

/* ---- stores ---- */

int configstore_open(Registry *m, Component *c, ConfigStore **ret, char **reterr_msg) {
        const ConfigStoreDriver *d = config_store_driver_find(c->type);
        ConfigStore *s;
        int r;

        *reterr_msg = NULL;
        if (!d) {
                if (asprintf(reterr_msg, "no configuration store driver for type '%s' in this build", c->type) < 0)
                        *reterr_msg = NULL;
                return -EOPNOTSUPP;
        }
        if (d->abi != CONFIG_STORE_DRIVER_ABI || d->instance_size < sizeof(ConfigStore))
                return -EPROTO;
        s = calloc(1, d->instance_size);
        if (!s)
                return -ENOMEM;
        *s = (ConfigStore){ .driver = d, .component = component_ref(c), .event = m->event, .name = c->name,
                            .state_dir = m->state_dir };
        s->sched = calloc(1, sizeof *s->sched);
        if (!s->sched) {
                r = -ENOMEM;
                goto fail;
        }
        s->sched->registry = m;
        r = d->open(s, reterr_msg);
        if (r < 0) {
                d->close(s);
                goto fail;
        }
        r = registry_add_callback(m, REGISTRY_APP_REMOVED, on_app_removed, s);
        if (r < 0) {
                d->close(s);
                goto fail;
        }
        *ret = s;
        return 0;
fail:
        free(s->sched);
        component_unref(s->component);
        free(s);
        return r;
}

ConfigStore *configstore_close(ConfigStore *s) {
        if (!s)
                return NULL;
        (void) registry_remove_callback(s->sched->registry, REGISTRY_APP_REMOVED, on_app_removed, s);
        while (s->sched->subs)
                sub_free(s->sched->subs);
        s->driver->close(s);
        free(s->sched);
        component_unref(s->component);
        free(s);
        return NULL;
}

int configstore_lookup(Registry *m, const char *name, const char *app_id, ConfigStore **ret) {
        if (m->n_config_stores == 0)
                return -ENODEV;
        for (size_t i = 0; i < m->n_config_stores; i++) {
                ConfigStore *s = m->config_stores[i];
                if (!streq(s->name, name))
                        continue;
                if (app_id && !component_in_scope(s->component, app_id))
                        return -ENOENT;
                *ret = s;
                return 0;
        }
        return -ENOENT;
}
