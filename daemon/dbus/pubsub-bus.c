/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's pub/sub over D-Bus, through the same pub/sub block as HTTP.
 *
 * Publish replies only once the broker has durably accepted the message,
 * as POST /v1.0/publish answers 204 only then. The publisher is the app its
 * systemd unit names (mooring-app@<id>.service), or no app; the pubsub's
 * scopes decide, as over HTTP.
 *
 * Subscribe makes the caller a subscriber of one topic: a
 * org.mooring.Runtime1.Subscription object whose Message signals go to the
 * subscriber alone (unicast: destination set to its unique name), each
 * answered by one Ack(delivery, SUCCESS|RETRY|DROP) from that same
 * connection. The subscription is a consumer group of the broker: every
 * group gets every message, within a group each message goes to one
 * subscriber. An app's group is its app id, so a D-Bus subscriber running in
 * mooring-app@<id>.service competes with that app's HTTP subscriptions for
 * the same topic; any other caller names a group, which is put in a
 * namespace of its own ("_dbus-<group>": no app id starts with '_') so that
 * no D-Bus client can join an app's group and take its messages.
 *
 * A subscription ends with Close(), when its subscriber leaves the bus, when
 * the daemon loses the bus, or when the block ends it (its pubsub component
 * was removed or changed; the subscriber then gets Closed). Messages not
 * acked by then are offered again by the broker later, to the group.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "../blocks/pubsub.h"
#include "../core/errors.h"
#include "../core/subscription.h"
#include "../manager.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "pubsub-bus.h"
#include "state-bus.h"


/*
 * Groups of callers that are no app live apart from the apps' groups (app
 * ids): an app id starts with a letter or digit, so none starts with this.
 * Its characters are ones every broker takes in a group name.
 */
#define FOREIGN_GROUP_PREFIX "_dbus-"
/* Unacked messages one subscription may hold; 0 in Subscribe means the block's default. */
#define MAX_IN_FLIGHT_MAX 1024U
/* Subscriptions one connection may hold at once: each is a broker consumer. */
#define SUBSCRIPTIONS_PER_OWNER_MAX 64U
/*
 * The largest event sent in a Message signal. dbus-daemon disconnects a
 * peer whose message exceeds its max_message_size (32 MiB by default on the
 * system bus), which would cost the daemon the bus; the rest is left for the
 * header, the topic and framing. A larger event cannot be delivered over
 * D-Bus at all: it is dropped (dead-lettered where the block does that).
 */
#define EVENT_MAX (((size_t) 32 << 20) - 64 * 1024)

typedef struct BusDelivery {
        uint64_t id;                    /* what the subscriber sees in Message and answers in Ack */
        PubsubSinkDelivery *delivery;   /* the block's, valid until settled or the runner ends */
} BusDelivery;

typedef struct BusSubscription BusSubscription;
struct BusSubscription {
        Manager *manager;               /* back-reference */
        sd_bus *bus;                    /* ref: the connection the subscriber is on */
        sd_bus_message *call;           /* ref: the Subscribe call, until it is answered */
        char *path;
        char *owner;                    /* the subscriber's unique name */
        char *app;                      /* the subscriber's app, NULL when it is none */
        char *pubsub, *topic, *group;   /* group as given to the block (app id or "_dbus-<group>") */
        unsigned max_in_flight;
        PubsubRunner *runner;           /* the block's; NULL before it starts and once the block ended it */
        sd_bus_slot *object_slot;       /* the exported object, once started */
        sd_bus_slot *owner_check_slot;  /* GetNameOwner(owner) in flight */
        BusDelivery *deliveries;        /* unacked messages, in delivery order */
        size_t n_deliveries, allocated;
        uint64_t last_delivery;
        BusSubscription *next, *prev;
};

/*
 * Every subscription, of every Manager (each names its own), and the one
 * NameOwnerChanged match that tells when subscribers leave: one per bus
 * rather than one per subscription, as dbus-daemon limits the match rules of
 * a connection (512 on the system bus).
 */
static BusSubscription *subscriptions;
static uint64_t last_subscription;
static sd_bus_slot *owner_match_slot;
static sd_bus *owner_match_bus;         /* borrowed: the bus owner_match_slot is on */
/* Tells subscribers when the loop ends, before sd-bus's own exit handler closes the bus. */
static sd_event_source *exit_source;

/* ---- Publish(s pubsub, s topic, s content_type, ay data, a{ss} metadata) ---- */

/* The D-Bus error name: the core error table decides (core/errors.c). */
static const char *publish_error_name(int error) {
        return error_lookup(ERROR_CONTEXT_PUBLISH, error)->bus_error;
}

static void on_published(int error, const char *message, void *userdata) {
        sd_bus_message *call = userdata;

        if (error < 0) {
                log_debug("Publish failed: %s", strna(message));
                (void) sd_bus_reply_method_errorf(call, publish_error_name(error), "%s",
                                                  message ?: strerror(-error));
        } else
                (void) sd_bus_reply_method_return(call, NULL);
        sd_bus_message_unref(call);
}

/* Reads the a{ss} metadata into pairs whose strings are borrowed from call. */
static int read_metadata(sd_bus_message *call, char ***ret) {
        _cleanup_free_ char **pairs = NULL;
        size_t n = 0, allocated = 0;
        const char *k, *v;
        int r;

        r = sd_bus_message_enter_container(call, 'a', "{ss}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(call, "{ss}", &k, &v)) > 0) {
                if (n + 3 > allocated) {
                        size_t a = allocated ? allocated * 2 : 8;
                        char **p = reallocarray(pairs, a, sizeof(char *));
                        if (!p)
                                return -ENOMEM;
                        pairs = p;
                        allocated = a;
                }
                pairs[n++] = (char *) k;
                pairs[n++] = (char *) v;
                pairs[n] = NULL;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(call);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(pairs);
        return 0;
}

/*
 * Publish: hands the message to the block and replies from on_published(),
 * once the broker has it. Returns 1 when the publish runs (the reply comes
 * later), or an error sd-bus answers.
 */
int bus_method_publish(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        Manager *m = userdata;
        _cleanup_free_ char **metadata = NULL;
        _cleanup_free_ char *app = NULL;
        const char *pubsub, *topic, *content_type;
        const void *data;
        size_t len;
        int r;

        r = sd_bus_message_read(call, "sss", &pubsub, &topic, &content_type);
        if (r >= 0)
                r = sd_bus_message_read_array(call, 'y', &data, &len);
        if (r >= 0)
                r = read_metadata(call, &metadata);
        if (r < 0)
                return r;
        if (!*pubsub)
                return sd_bus_error_set(reterr, BUS_ERROR_NO_SUCH_PUBSUB, "pubsub name is empty");

        app = bus_sender_app(call);
        PublishRequest req = {
                .app = app,
                .pubsub = pubsub,
                .topic = topic,
                .data = data,
                .len = len,
                .content_type = *content_type ? content_type : NULL,
                .metadata = metadata,
        };
        /* the block copies what it keeps: the strings in call need not outlive this */
        r = pubsub_publish(m->registry, &req, on_published, sd_bus_message_ref(call));
        if (r < 0) {
                sd_bus_message_unref(call);
                return r;
        }
        return 1;
}

/* ---- subscriptions ---- */

static void deliveries_clear(BusSubscription *s) {
        free(s->deliveries);
        s->deliveries = NULL;
        s->n_deliveries = s->allocated = 0;
}

static void owner_match_drop(void) {
        owner_match_slot = sd_bus_slot_unref(owner_match_slot);
        owner_match_bus = NULL;
}

/*
 * Ends s: answers its Subscribe call if that is still open, stops its runner
 * when it has one (unacked messages go back to the broker), withdraws the
 * object and frees it. reason non-NULL: a subscriber that was told of the
 * object gets a Closed signal first.
 */
static void subscription_end(BusSubscription *s, const char *reason) {
        if (!s)
                return;
        if (s->call) {
                (void) sd_bus_reply_method_errorf(s->call, BUS_ERROR_FAILED, "The subscription could not start: %s",
                                                  reason ?: "the subscriber or the bus went away");
                s->call = sd_bus_message_unref(s->call);
        } else if (reason && s->object_slot) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *sig = NULL;
                int r = sd_bus_message_new_signal(s->bus, &sig, s->path, PUBSUB_BUS_SUBSCRIPTION_INTERFACE,
                                                  "Closed");
                if (r >= 0)
                        r = sd_bus_message_set_destination(sig, s->owner);
                if (r >= 0)
                        r = sd_bus_message_append(sig, "s", reason);
                if (r >= 0)
                        r = sd_bus_send(s->bus, sig, NULL);
                if (r < 0)
                        log_debug_errno(r, "Cannot send Closed to %s, ignoring: %m", s->owner);
        }
        if (s->prev)
                s->prev->next = s->next;
        else if (subscriptions == s)
                subscriptions = s->next;
        if (s->next)
                s->next->prev = s->prev;
        /* the block's deliveries die with its runner */
        deliveries_clear(s);
        if (s->runner)
                pubsub_sink_unsubscribe(TAKE_PTR(s->runner));
        s->object_slot = sd_bus_slot_unref(s->object_slot);
        s->owner_check_slot = sd_bus_slot_unref(s->owner_check_slot);
        /* the last subscription on the bus takes the match along */
        bool others = false;
        for (BusSubscription *o = subscriptions; o && !others; o = o->next)
                others = o->bus == owner_match_bus;
        if (!others)
                owner_match_drop();
        sd_bus_unref(s->bus);
        free(s->path);
        free(s->owner);
        free(s->app);
        free(s->pubsub);
        free(s->topic);
        free(s->group);
        free(s);
}

/* Removes delivery id from s's table; the block's delivery, or NULL when there is no such id. */
static PubsubSinkDelivery *delivery_take(BusSubscription *s, uint64_t id) {
        for (size_t i = 0; i < s->n_deliveries; i++)
                if (s->deliveries[i].id == id) {
                        PubsubSinkDelivery *d = s->deliveries[i].delivery;
                        memmove(s->deliveries + i, s->deliveries + i + 1,
                                (s->n_deliveries - i - 1) * sizeof(BusDelivery));
                        s->n_deliveries--;
                        return d;
                }
        return NULL;
}

static int delivery_add(BusSubscription *s, PubsubSinkDelivery *d, uint64_t *ret_id) {
        if (s->n_deliveries == s->allocated) {
                size_t a = s->allocated ? s->allocated * 2 : 16;
                BusDelivery *p = reallocarray(s->deliveries, a, sizeof(BusDelivery));
                if (!p)
                        return -ENOMEM;
                s->deliveries = p;
                s->allocated = a;
        }
        s->deliveries[s->n_deliveries++] = (BusDelivery){ .id = ++s->last_delivery, .delivery = d };
        *ret_id = s->last_delivery;
        return 0;
}

/* The block's sink: one message for the subscriber, or (d NULL) the end of the subscription. */
static void on_sink(PubsubSinkDelivery *d, const char *topic, const void *event, size_t len, void *userdata) {
        BusSubscription *s = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *sig = NULL;
        uint64_t id = 0;
        int r;

        if (!d) {
                /* the runner is gone already, and every delivery with it */
                s->runner = NULL;
                s->n_deliveries = 0;
                log_struct(LOG_INFO, 0, s->app, s->pubsub, "D-Bus subscription %s of %s to topic %s ended: "
                           "its pubsub was removed or changed.", s->path, s->owner, s->topic);
                subscription_end(s, "the pubsub component was removed or changed");
                return;
        }
        if (len > EVENT_MAX) {
                log_struct(LOG_WARNING, 0, s->app, s->pubsub, "A message of topic %s (%zu bytes) does not fit "
                           "in a D-Bus signal for %s; dropping it.", topic, len, s->owner);
                pubsub_sink_settle(d, PUBSUB_VERDICT_DROP);
                return;
        }
        r = delivery_add(s, d, &id);
        if (r >= 0)
                r = sd_bus_message_new_signal(s->bus, &sig, s->path, PUBSUB_BUS_SUBSCRIPTION_INTERFACE, "Message");
        if (r >= 0)
                r = sd_bus_message_set_destination(sig, s->owner);
        if (r >= 0)
                r = sd_bus_message_append(sig, "ts", id, topic);
        if (r >= 0)
                r = sd_bus_message_append_array(sig, 'y', event, len);
        if (r >= 0)
                r = sd_bus_send(s->bus, sig, NULL);
        if (r < 0) {
                /* offered again after a backoff; a subscriber that left is noticed through its name */
                log_debug_errno(r, "Cannot send a message of topic %s to %s, retrying it later: %m", topic,
                                s->owner);
                (void) delivery_take(s, id);
                pubsub_sink_settle(d, PUBSUB_VERDICT_RETRY);
        }
}

/* Only the connection that subscribed acts on a subscription. */
static int check_owner(BusSubscription *s, sd_bus_message *call, sd_bus_error *reterr) {
        const char *sender = sd_bus_message_get_sender(call);
        if (!sender || !streq(sender, s->owner))
                return sd_bus_error_setf(reterr, BUS_ERROR_PERMISSION_DENIED,
                                         "Only the subscriber (%s) may act on subscription %s", s->owner, s->path);
        return 0;
}

static int verdict_from_string(const char *status, PubsubVerdict *ret) {
        if (strcasecmp(status, "SUCCESS") == 0)
                *ret = PUBSUB_VERDICT_SUCCESS;
        else if (strcasecmp(status, "RETRY") == 0)
                *ret = PUBSUB_VERDICT_RETRY;
        else if (strcasecmp(status, "DROP") == 0)
                *ret = PUBSUB_VERDICT_DROP;
        else
                return -EINVAL;
        return 0;
}

/* Ack(t delivery, s status): settles one message. */
static int method_ack(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        BusSubscription *s = userdata;
        PubsubSinkDelivery *d;
        PubsubVerdict v;
        const char *status;
        uint64_t id;
        int r;

        r = check_owner(s, call, reterr);
        if (r < 0)
                return r;
        r = sd_bus_message_read(call, "ts", &id, &status);
        if (r < 0)
                return r;
        if (verdict_from_string(status, &v) < 0)
                return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid status '%s': SUCCESS, RETRY or DROP", status);
        d = delivery_take(s, id);
        if (!d)
                return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                         "No unacknowledged message %" PRIu64 " on %s", id, s->path);
        pubsub_sink_settle(d, v);
        return sd_bus_reply_method_return(call, NULL);
}

/* Close(): ends the subscription; unacked messages go back to the group. */
static int method_close(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        BusSubscription *s = userdata;
        int r;

        r = check_owner(s, call, reterr);
        if (r < 0)
                return r;
        log_struct(LOG_INFO, 0, s->app, s->pubsub, "D-Bus subscription %s of %s to topic %s closed.", s->path,
                   s->owner, s->topic);
        r = sd_bus_reply_method_return(call, NULL);
        /* sd-bus holds its own reference on the object's slot while this handler runs */
        subscription_end(s, NULL);
        return r;
}

static const sd_bus_vtable subscription_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Pubsub", "s", NULL, offsetof(BusSubscription, pubsub), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Topic", "s", NULL, offsetof(BusSubscription, topic), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Group", "s", NULL, offsetof(BusSubscription, group), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("Ack", SD_BUS_ARGS("t", delivery, "s", status), SD_BUS_NO_RESULT, method_ack,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Close", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_close,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("Message", SD_BUS_ARGS("t", delivery, "s", topic, "ay", event), 0),
        SD_BUS_SIGNAL_WITH_ARGS("Closed", SD_BUS_ARGS("s", reason), 0),
        SD_BUS_VTABLE_END,
};

/* NameOwnerChanged(name, old, "") : a connection left the bus; its subscriptions end. */
static int on_owner_changed(sd_bus_message *msg, void *userdata, sd_bus_error *reterr) {
        sd_bus *bus = sd_bus_message_get_bus(msg);
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(msg, "sss", &name, &old_owner, &new_owner) < 0 || *new_owner || name[0] != ':')
                return 0;
        for (BusSubscription *s = subscriptions, *n; s; s = n) {
                n = s->next;
                if (s->bus != bus || !streq(s->owner, name))
                        continue;
                if (s->call)
                        log_debug("D-Bus subscriber %s left before its subscription started.", s->owner);
                else
                        log_struct(LOG_INFO, 0, s->app, s->pubsub, "D-Bus subscriber %s of topic %s left; "
                                   "unacked messages go back to group %s.", s->owner, s->topic, s->group);
                subscription_end(s, NULL);
        }
        return 0;
}

/*
 * The bus refused the match (too many match rules?): without it nobody can
 * tell when subscribers leave, so every subscription on that bus ends, and
 * the next Subscribe tries again.
 */
static int on_owner_match_installed(sd_bus_message *reply, void *userdata, sd_bus_error *reterr) {
        sd_bus *bus = sd_bus_message_get_bus(reply);
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (!e)
                return 0;
        log_warning("Cannot watch D-Bus subscribers (AddMatch failed: %s); ending their subscriptions.",
                    e->message ?: e->name);
        /* the slot goes first, so that ending the subscriptions does not touch it */
        if (owner_match_bus == bus)
                owner_match_drop();
        for (BusSubscription *s = subscriptions, *n; s; s = n) {
                n = s->next;
                if (s->bus == bus)
                        subscription_end(s, "the daemon cannot watch its subscribers on the bus");
        }
        return 0;
}

static int owner_match_ensure(sd_bus *bus) {
        if (owner_match_slot && owner_match_bus == bus)
                return 0;
        owner_match_drop();
        int r = sd_bus_add_match_async(bus, &owner_match_slot,
                                       "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                       "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg2=''",
                                       on_owner_changed, on_owner_match_installed, NULL);
        if (r < 0)
                return r;
        owner_match_bus = bus;
        return 0;
}

static int reply_subscribe_error(BusSubscription *s, int r) {
        const char *name = BUS_ERROR_FAILED;
        _cleanup_free_ char *msg = NULL;
        int k;

        switch (r) {
        case -ENOENT:
                name = BUS_ERROR_NO_SUCH_PUBSUB;
                k = asprintf(&msg, "pubsub %s not found", s->pubsub);
                break;
        case -EACCES:
                name = BUS_ERROR_PERMISSION_DENIED;
                k = asprintf(&msg, "topic %s is not allowed for app id %s", s->topic, s->app ?: "(none)");
                break;
        case -EINVAL:
                name = BUS_ERROR_INVALID_ARGUMENT;
                k = asprintf(&msg, "cannot subscribe to topic %s of pubsub %s", s->topic, s->pubsub);
                break;
        default:
                k = asprintf(&msg, "cannot subscribe to topic %s of pubsub %s: %s", s->topic, s->pubsub,
                             strerror(-r));
        }
        if (k < 0)
                msg = NULL;
        return sd_bus_reply_method_errorf(s->call, name, "%s", msg ?: strerror(-r));
}

/*
 * GetNameOwner(owner) answered. It was sent after the AddMatch of the owner
 * match, and the bus handles a connection's messages in order: a subscriber
 * that is still there now will be seen leaving. So the subscription starts
 * only now: the block's sink, the object, then the reply.
 */
static int on_owner_checked(sd_bus_message *reply, void *userdata, sd_bus_error *reterr) {
        BusSubscription *s = userdata;
        int r;

        s->owner_check_slot = sd_bus_slot_unref(s->owner_check_slot);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                log_debug("D-Bus subscriber %s left before its subscription started.", s->owner);
                subscription_end(s, NULL);
                return 0;
        }
        r = pubsub_sink_subscribe(s->manager->registry, s->app, s->group, s->pubsub, s->topic, s->max_in_flight, on_sink, s,
                                  &s->runner);
        if (r < 0) {
                s->runner = NULL;
                (void) reply_subscribe_error(s, r);
                s->call = sd_bus_message_unref(s->call);
                subscription_end(s, NULL);
                return 0;
        }
        r = sd_bus_add_object_vtable(s->bus, &s->object_slot, s->path, PUBSUB_BUS_SUBSCRIPTION_INTERFACE,
                                     subscription_vtable, s);
        if (r >= 0)
                r = sd_bus_reply_method_return(s->call, "o", s->path);
        if (r < 0) {
                log_warning_errno(r, "Cannot start the D-Bus subscription of %s: %m", s->owner);
                (void) sd_bus_reply_method_errnof(s->call, r, "Cannot start the subscription: %m");
                s->call = sd_bus_message_unref(s->call);
                subscription_end(s, NULL);
                return 0;
        }
        s->call = sd_bus_message_unref(s->call);
        log_struct(LOG_INFO, 0, s->app, s->pubsub, "D-Bus client %s subscribed to topic %s as group %s (%s).",
                   s->owner, s->topic, s->group, s->path);
        return 0;
}

static unsigned subscriptions_of(const Manager *m, const char *owner) {
        unsigned n = 0;
        for (BusSubscription *s = subscriptions; s; s = s->next)
                if (s->manager == m && streq(s->owner, owner))
                        n++;
        return n;
}

/*
 * The consumer group a subscriber gets: its own app id (group "" or that
 * id), or for a caller that is no app "_dbus-<group>". Errors go to reterr.
 */
static int resolve_group(const char *app, const char *group, char **ret, sd_bus_error *reterr) {
        char *g;

        if (app) {
                if (*group && !streq(group, app))
                        return sd_bus_error_setf(reterr, BUS_ERROR_PERMISSION_DENIED,
                                                 "App '%s' may only subscribe in its own group ('%s' or \"\"), "
                                                 "not '%s'", app, app, group);
                g = strdup(app);
        } else {
                if (!*group)
                        return sd_bus_error_set(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                                "A caller that is no app must name a group");
                if (!name_is_valid(group))
                        return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                                 "Invalid group '%s': letters, digits, '.', '_', '-', at most 63",
                                                 group);
                if (asprintf(&g, FOREIGN_GROUP_PREFIX "%s", group) < 0)
                        g = NULL;
        }
        if (!g)
                return -ENOMEM;
        *ret = g;
        return 0;
}

/*
 * The event loop is ending (the daemon stops): subscribers hear it (Closed)
 * while the bus is still open, and the subscriptions end before the block's.
 */
static int on_loop_exit(sd_event_source *src, void *userdata) {
        Manager *m = userdata;
        for (BusSubscription *s = subscriptions, *n; s; s = n) {
                n = s->next;
                if (s->manager == m)
                        subscription_end(s, "the daemon is stopping");
        }
        return 0;
}

static int exit_source_ensure(Manager *m) {
        int r;

        if (exit_source)
                return 0;
        r = sd_event_add_exit(m->event, &exit_source, on_loop_exit, m);
        if (r < 0)
                return r;
        /* before the bus's exit handler (attached at SD_EVENT_PRIORITY_NORMAL), which closes it */
        return sd_event_source_set_priority(exit_source, SD_EVENT_PRIORITY_IMPORTANT);
}

/*
 * Subscribe(s pubsub, s topic, s group, u max_in_flight) → o subscription.
 * Checks the arguments, makes sure the subscriber will be seen leaving the
 * bus, and continues in on_owner_checked(), which replies. Returns 1 while
 * that runs, or an error sd-bus answers.
 */
int bus_method_subscribe(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        Manager *m = userdata;
        sd_bus *bus = sd_bus_message_get_bus(call);
        _cleanup_free_ char *app = NULL, *group = NULL;
        const char *pubsub, *topic, *group_arg, *sender;
        BusSubscription *s;
        uint32_t max_in_flight;
        int r;

        r = sd_bus_message_read(call, "sssu", &pubsub, &topic, &group_arg, &max_in_flight);
        if (r < 0)
                return r;
        sender = sd_bus_message_get_sender(call);
        if (!sender || sender[0] != ':')
                return sd_bus_error_set(reterr, BUS_ERROR_FAILED, "Subscriptions need a bus connection with a unique name");
        if (!*topic)
                return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT, "topic is empty in pubsub %s", pubsub);
        if (max_in_flight > MAX_IN_FLIGHT_MAX)
                return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                         "max_in_flight %" PRIu32 " is above %u (0: the default)", max_in_flight,
                                         MAX_IN_FLIGHT_MAX);
        if (subscriptions_of(m, sender) >= SUBSCRIPTIONS_PER_OWNER_MAX)
                return sd_bus_error_setf(reterr, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                         "At most %u subscriptions per connection", SUBSCRIPTIONS_PER_OWNER_MAX);
        app = bus_sender_app(call);
        r = resolve_group(app, group_arg, &group, reterr);
        if (r < 0)
                return r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        *s = (BusSubscription){
                .manager = m,
                .bus = sd_bus_ref(bus),
                .owner = strdup(sender),
                .app = TAKE_PTR(app),
                .pubsub = strdup(pubsub),
                .topic = strdup(topic),
                .group = TAKE_PTR(group),
                .max_in_flight = max_in_flight,
                .next = subscriptions,
        };
        if (s->next)
                s->next->prev = s;
        subscriptions = s;
        if (asprintf(&s->path, PUBSUB_BUS_SUBSCRIPTION_PREFIX "/%" PRIu64, ++last_subscription) < 0)
                s->path = NULL;
        if (!s->path || !s->owner || !s->pubsub || !s->topic) {
                subscription_end(s, NULL);
                return -ENOMEM;
        }
        r = exit_source_ensure(m);
        if (r >= 0)
                r = owner_match_ensure(bus);
        if (r >= 0)
                r = sd_bus_call_method_async(bus, &s->owner_check_slot, "org.freedesktop.DBus",
                                             "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetNameOwner",
                                             on_owner_checked, s, "s", s->owner);
        if (r < 0) {
                subscription_end(s, NULL);
                return r;
        }
        s->call = sd_bus_message_ref(call);
        return 1;
}

/* ---- ListSubscriptions() → a(sssss) (app, pubsub, topic, route, kind) ---- */

static void append_subscription(const char *app_id, const char *pubsub, const char *topic, const Subscription *sub,
                                void *userdata) {
        sd_bus_message *reply = userdata;
        const char *kind = !sub ? "dbus" : sub->declarative ? "declarative" : "programmatic";

        /* a failure sticks in the message: sd_bus_message_close_container() reports it */
        (void) sd_bus_message_append(reply, "(sssss)", strempty(app_id), pubsub, topic,
                                     sub ? strempty(sub->default_path) : "", kind);
}

int bus_method_list_subscriptions(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_new_method_return(call, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sssss)");
        if (r < 0)
                return r;
        pubsub_foreach_subscription(m->registry, append_subscription, reply);
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* ---- the front-end's end ---- */

void pubsub_bus_disconnected(Manager *m, sd_bus *bus) {
        unsigned n_ended = 0;

        for (BusSubscription *s = subscriptions, *n; s; s = n) {
                n = s->next;
                if (s->manager == m && s->bus == bus) {
                        subscription_end(s, NULL);
                        n_ended++;
                }
        }
        if (n_ended > 0)
                log_info("%u D-Bus subscriptions ended with the bus connection; unacked messages go back to "
                         "their groups.", n_ended);
}

void pubsub_bus_done(Manager *m) {
        for (BusSubscription *s = subscriptions, *n; s; s = n) {
                n = s->next;
                if (s->manager != m)
                        continue;
                /*
                 * Normally on_loop_exit() ended them all. Otherwise the block may have stopped
                 * every runner already (pubsub_done() runs before the front-ends close): with no
                 * runner left, ours are gone too.
                 */
                if (!m->registry->pubsub_runners) {
                        s->runner = NULL;
                        s->n_deliveries = 0;
                }
                subscription_end(s, NULL);
        }
        exit_source = sd_event_source_disable_unref(exit_source);
}
