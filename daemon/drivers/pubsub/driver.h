/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pub/sub broker driver interface: one const PubsubDriver per engine
 * (pubsub.sqlite — the embedded default —, pubsub.redis, pubsub.mqtt3,
 * pubsub.in-memory), listed in drivers/pubsub/registry.c. The pub/sub block
 * (blocks/pubsub.c) owns everything Dapr-specific — CloudEvent envelopes,
 * subscriptions and routing, calling the app, deciding ack/retry/drop,
 * dead-letter topics — and hands drivers opaque message bytes.
 *
 * Delivery model (at least once):
 * - publish() stores one message on a topic. done runs once the broker has
 *   durably accepted it (SQLite: committed; Redis: XADD answered; MQTT: QoS 1
 *   PUBACK received). Only then does the publisher get 204.
 * - subscribe(topic, group) starts consuming. Groups are app ids: every group
 *   subscribed to a topic gets every message of that topic published after
 *   the group first subscribed (and, as a queue, those published while the
 *   group's subscriber was away: a group, once created, persists in the
 *   broker); within one group each message goes to one consumer (competing
 *   consumers, e.g. two daemons on two hosts sharing a Redis or MQTT
 *   broker, both running app "orders").
 * - deliver() hands the block one message; the block answers with exactly one
 *   settle(): PUBSUB_ACK removes it for that group; PUBSUB_RETRY makes the
 *   broker offer it again after retry_after_usec (or later). A delivery never
 *   settled (the daemon crashed, or the subscription was closed) is offered
 *   again by the broker on its own — at the latest after a restart.
 * - At most max_in_flight deliveries of one subscription are unsettled at
 *   once; the driver waits for settles before delivering more.
 * - Order: per topic and group, first delivery follows publish order where
 *   the engine gives it (SQLite, Redis, MQTT); retries may reorder.
 *
 * Rules every driver follows (as for state drivers):
 * - publish/subscribe return 0 after starting; a negative return means nothing
 *   was started and no callback will run. Callbacks run later, on the loop,
 *   never from inside the starting call.
 * - Arguments are borrowed for the duration of the call only: copy what you keep.
 * - Blocking engines run their work on a thread (work/queue.h), batching
 *   commits ("group commit": many publishes, one fsync); network engines use
 *   non-blocking I/O on b->event and never block the loop.
 * - A lost server yields publish errors (-ENOTCONN) with a clear message, then
 *   a reconnect with backoff; subscriptions resume by themselves after it.
 *   A driver never exits the daemon.
 * - close() ends everything: every pending publish gets its outcome before
 *   close() returns (0 when it was stored after all, else -ECANCELED);
 *   unsettled deliveries are abandoned (redelivered later by the broker);
 *   subscriptions are freed. unsubscribe() likewise for one subscription: no
 *   deliver() afterwards, its deliveries become invalid.
 * - A publish started after subscribe() returned reaches that group where
 *   the engine can promise it (SQLite, in-memory); network brokers create the
 *   group asynchronously and may miss messages of the first moments.
 * - Messages published to a topic no group ever subscribed: embedded brokers
 *   keep them for the first group that subscribes (queue semantics); Redis
 *   keeps them in the stream (groups start at its beginning); MQTT drops them.
 * - max_in_flight 0 means the driver's default.
 * - attempt counts deliveries the broker knows of, including those abandoned by
 *   unsubscribe() or close(); a crash may not be counted.
 * - metadata is an even list of non-NULL strings.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "../../forward.h"
#include "../../util/ratelimit.h"

#define PUBSUB_DRIVER_ABI 1

typedef struct PubsubDriver PubsubDriver;
typedef struct PubsubBroker PubsubBroker;
typedef struct PubsubSubscription PubsubSubscription; /* driver-defined */
typedef struct PubsubDelivery PubsubDelivery;         /* driver-defined */

typedef enum PubsubOutcome {
        PUBSUB_ACK,    /* done with it for this group (delivered, dropped or dead-lettered) */
        PUBSUB_RETRY,  /* offer it again after retry_after_usec */
} PubsubOutcome;

/* One message as the broker gives it to deliver(); valid during the call only. */
typedef struct PubsubMessage {
        const char *topic;
        const void *data;              /* the bytes published (any bytes) */
        size_t len;
        char *const *metadata;         /* name, value pairs (NULL-terminated) the broker carries; may be NULL */
        const char *id;                /* the broker's id for it, for logs; may be NULL */
        unsigned attempt;              /* 1 on the first delivery, more on redeliveries the broker knows of */
} PubsubMessage;

/* error 0, or a negative errno with message (valid during the call). */
typedef void (*PubsubDoneFn)(int error, const char *message, void *userdata);
/* Exactly one settle() per delivery, later or from inside this callback. */
typedef void (*PubsubDeliverFn)(PubsubSubscription *sub, PubsubDelivery *d, const PubsubMessage *msg,
                                void *userdata);

/* The generic part every engine's instance begins with (the engine's struct embeds it first). */
struct PubsubBroker {
        const PubsubDriver *driver;
        Component *component;          /* ref: metadata via component_get_string() */
        sd_event *event;               /* the loop (borrowed) */
        const char *name;              /* component name (borrowed from component) */
        const char *state_dir;         /* the daemon's state directory (borrowed), for embedded brokers */
        const char *instance_id;       /* stable per daemon installation (persisted in the state dir):
                                        * a consumer name that survives restarts, so a restarted daemon
                                        * reclaims its own unsettled messages first */
        RateLimit publish_failures;    /* the block's: failed publishes are logged, not one line each */
        struct PublishLine *publish_lines; /* the block's: each app's publishes waiting for the driver */
};

struct PubsubDriver {
        const char *type;              /* Dapr spec.type, e.g. "pubsub.redis" */
        const char *alias;             /* another accepted type; may be NULL */
        unsigned abi;                  /* PUBSUB_DRIVER_ABI */
        size_t instance_size;          /* sizeof the engine's struct, PubsubBroker first */
        bool native_ttl;               /* the engine expires messages itself (else the block stamps
                                        * "expiration" into the envelope and drops late ones) */
        /* Only this daemon writes the engine's messages (its own file or memory): metadata the block
         * stored with a message comes back as it was written, so the block may trust it. */
        bool own_storage;

        /*
         * Validates the component's metadata and sets up (may start connecting; a server that is
         * not there yet is not an error). On failure returns < 0 and sets *reterr_msg (malloc'd)
         * naming the offending metadata field.
         */
        int (*open)(PubsubBroker *b, char **reterr_msg);
        void (*close)(PubsubBroker *b);

        /* ttl_sec > 0: expire after that many seconds if native_ttl. metadata: pairs or NULL. */
        int (*publish)(PubsubBroker *b, const char *topic, const void *data, size_t len, char *const *metadata,
                       int64_t ttl_sec, PubsubDoneFn done, void *userdata);
        int (*subscribe)(PubsubBroker *b, const char *topic, const char *group, unsigned max_in_flight,
                         PubsubDeliverFn deliver, void *userdata, PubsubSubscription **ret);
        void (*unsubscribe)(PubsubSubscription *s);
        void (*settle)(PubsubDelivery *d, PubsubOutcome outcome, uint64_t retry_after_usec);
        /* subscribe() takes MQTT-style wildcard filters (Dapr's SUBSCRIBE_WILDCARDS); deliveries carry
         * the message's own topic */
        bool subscribe_wildcards;
};

/* Registry (registry.c): by type or alias; NULL if unknown. */
const PubsubDriver *pubsub_driver_find(const char *type);
