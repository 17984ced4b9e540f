/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pub/sub block: what Dapr's pub/sub means, independent of HTTP or D-Bus.
 *
 * Publish: finds the caller's broker (component scopes, allowedTopics,
 * publishingScopes), wraps the body in Dapr's CloudEvent envelope (or passes
 * a CloudEvent / raw payload through), and hands it to the driver; the
 * publisher hears back only when the broker has durably accepted it.
 *
 * Subscribe: every app's subscriptions — declarative Subscription files in
 * <config dir>/subscriptions/ and what its GET /dapr/subscribe answers once it
 * is healthy — become driver subscriptions with the app id as group. Each
 * delivered message is POSTed to the route its rules choose, on the app
 * channel; the app's answer decides: ack, retry with backoff, or drop (to the
 * dead-letter topic when one is set). Front-ends translate (http/api-pubsub.c,
 * dbus/pubsub-bus.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../drivers/pubsub/driver.h"
#include "../forward.h"

typedef struct Subscription Subscription;

/* Per app: what its GET /dapr/subscribe answered last (held in the registry). */
typedef struct AppSubscriptions {
        char *app_id;
        Subscription **subs;
        size_t n;
} AppSubscriptions;

#define PUBSUB_RETRY_FIRST_USEC (500 * 1000ULL)
#define PUBSUB_RETRY_MAX_USEC (30ULL * 1000000)
#define PUBSUB_DEFAULT_CONCURRENCY 64U

/* Opens a broker for component c (a pubsub.* component). *reterr_msg says why not. */
int pubsub_broker_open(Registry *m, Component *c, PubsubBroker **ret, char **reterr_msg);
/* Closes (pending publishes get -ECANCELED) and frees. NULL-safe. */
PubsubBroker *pubsub_broker_close(Registry *m, PubsubBroker *b);

/* ---- publish ---- */

typedef struct PublishRequest {
        const char *app;            /* publisher app id; NULL when the caller is no app */
        const char *pubsub, *topic;
        const void *data;
        size_t len;
        const char *content_type;   /* NULL: text/plain */
        char *const *metadata;      /* pairs, "metadata." prefix removed; rawPayload, ttlInSeconds and
                                     * cloudevent.* are Dapr's, the rest goes to the broker */
        const char *traceparent, *tracestate;
} PublishRequest;

/*
 * error 0: durably accepted. Else a negative errno that says which Dapr error:
 * -ENODEV no pub/sub configured, -ENOENT unknown pubsub, -EDESTADDRREQ empty
 * topic, -EINVAL bad metadata, -EACCES outside the pub/sub scopes, -EBADMSG the
 * CloudEvent could not be built, anything else the broker failed. message
 * is valid during the call.
 */
typedef void (*PublishDoneFn)(int error, const char *message, void *userdata);
/*
 * May app publish to topic on pubsub? 0 (and the broker in *ret, if not NULL), or one of the errors
 * above with *reterr (malloc'd) saying why; -ENOMEM. pubsub_publish() checks this itself; bulk
 * publish asks first so a bad target fails the whole request as Dapr does.
 */
int pubsub_check_publish(Registry *m, const char *app, const char *pubsub, const char *topic, PubsubBroker **ret,
                         char **reterr);
/* done runs exactly once, later on the loop. < 0 (nothing started) only on OOM. */
int pubsub_publish(Registry *m, const PublishRequest *req, PublishDoneFn done, void *userdata);

/* ---- subscriptions ---- */

/* Re-reads <config dir>/subscriptions/{star}.yaml and restarts every app's subscriptions. */
int pubsub_reload(Registry *m);
/*
 * Hooks the block into the registry: an app that became healthy is asked for GET /dapr/subscribe
 * and its subscriptions (re)start; an app that left has its subscriptions stopped (unsettled
 * messages are redelivered later).
 */
int pubsub_setup(Registry *m);
/* Stops every subscription (before brokers close or change). */
void pubsub_stop_all(Registry *m);
/* Stops everything, frees the subscription lists and unhooks (at exit). */
void pubsub_done(Registry *m);

/* ---- subscribers that are not apps (D-Bus clients) ---- */

typedef enum PubsubVerdict {
        PUBSUB_VERDICT_SUCCESS,     /* acked */
        PUBSUB_VERDICT_RETRY,       /* offered again after a backoff */
        PUBSUB_VERDICT_DROP,        /* dead-lettered when the subscription has a dead-letter topic, else dropped */
} PubsubVerdict;

typedef struct PubsubSinkDelivery PubsubSinkDelivery;
/*
 * A message for a sink: the CloudEvent as stored (JSON). Answer each with
 * exactly one pubsub_sink_settle(), now or later. d == NULL means the
 * subscription ended (its pubsub component was removed or changed): the
 * runner is already freed, unsettled deliveries are void.
 */
typedef void (*PubsubSinkFn)(PubsubSinkDelivery *d, const char *topic, const void *event, size_t len,
                             void *userdata);
/*
 * Subscribes a sink to topic on pubsub as group (competing with others of the
 * same group, each group gets every message), at most max_in_flight unsettled.
 * -ENOENT no such pubsub (or app outside its scopes), -EACCES topic refused by
 * the pubsub's scopes. app_id is the subscriber's app (scope checks), or NULL.
 */
int pubsub_sink_subscribe(Registry *m, const char *app_id, const char *group, const char *pubsub,
                          const char *topic, unsigned max_in_flight, PubsubSinkFn fn, void *userdata,
                          PubsubRunner **ret);
void pubsub_sink_settle(PubsubSinkDelivery *d, PubsubVerdict v);
/* Stops it; unsettled messages are offered again later (to the group). */
void pubsub_sink_unsubscribe(PubsubRunner *rn);

/* What runs, for the metadata API and mooringctl: calls fn for every active subscription. */
/* app_id NULL for sinks; s NULL for sinks (topic/pubsub then in the arguments). */
typedef void (*PubsubSubscriptionFn)(const char *app_id, const char *pubsub, const char *topic, const Subscription *s,
                                     void *userdata);
void pubsub_foreach_subscription(Registry *m, PubsubSubscriptionFn fn, void *userdata);
