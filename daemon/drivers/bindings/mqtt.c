/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bindings.mqtt3 (alias bindings.mqtt): MQTT in and out, on the very engine of
 * pubsub.mqtt3 (drivers/pubsub/mqtt.c), which this driver opens as a private
 * broker instance: the same libmosquitto connection handling on the loop,
 * reconnects with backoff, QoS 1 publishes that answer only on PUBACK, and
 * its spool, which makes input at least once across a crash of the daemon
 * (a message is acknowledged to the broker only once it is in the spool, and
 * leaves the spool only when the app answered 2xx).
 *
 * Metadata (Dapr's): url (required), topic (required; the input topic and
 * the default output topic), consumerID, qos (1 default, or 2), retain,
 * cleanSession (false). The private broker is named "bindings-<name>", so
 * its client ids ("<consumerID or instance-name>-sub-<app>") and its spool
 * (<state dir>/pubsub-mqtt-bindings-<name>.db) never collide with a
 * pubsub.mqtt3 component of the same name. The engine's limits apply: no
 * TLS yet, no wildcard topics (each app reads the topic as the MQTT shared
 * subscription $share/<app>/<topic>: two daemons running the same app share
 * the messages, different apps each get all of them).
 *
 * Output: create publishes the request's data (the JSON bytes, as daprd
 * sends them) to metadata `topic` or the component's topic, and answers once
 * the broker acknowledged it; `retain` in the request metadata overrides the
 * component's. Input events carry metadata `topic`.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../pubsub/driver.h"
#include "driver.h"

typedef struct MqttBinding {
        Binding base;
        const PubsubDriver *engine;
        PubsubBroker *broker;
        Component *inner;            /* the private broker's component (owned) */
        char *topic;
} MqttBinding;

struct BindingReader {
        MqttBinding *mb;
        PubsubSubscription *ds;
        BindingEventFn fn;
        void *userdata;
};

typedef struct PubCall {
        BindingDoneFn done;
        void *userdata;
} PubCall;

static const char *const mqtt_operations[] = { "create", NULL };

static const PubsubDriver *engine(void) {
        return pubsub_driver_find("pubsub.mqtt3");
}

static int inner_add(Component *c, const char *name, const char *value) {
        ComponentItem *items = realloc(c->items, (c->n_items + 1) * sizeof *items);
        if (!items)
                return -ENOMEM;
        c->items = items;
        ComponentItem *it = &items[c->n_items];
        *it = (ComponentItem){ .name = strdup(name), .value = strdup(value), .resolved = true };
        c->n_items++;
        return it->name && it->value ? 0 : -ENOMEM;
}

static int mqtt_open(Binding *b, char **reterr_msg) {
        MqttBinding *mb = (MqttBinding *) b;
        const Component *c = b->component;
        static const char *const passed[] = { "url", "consumerID", "qos", "retain", "cleanSession", "caCert",
                                              "clientCert", "clientKey", NULL };
        const char *v;
        int r;

        mb->engine = engine();
        if (!mb->engine)
                return asprintf(reterr_msg, "this build has no MQTT engine (pubsub.mqtt3)") < 0 ? -ENOMEM
                                                                                                : -EOPNOTSUPP;
        v = binding_component_get(c, "topic");
        if (!v || !*v)
                return asprintf(reterr_msg, "'topic' is required") < 0 ? -ENOMEM : -EINVAL;
        mb->topic = strdup(v);
        mb->inner = calloc(1, sizeof *mb->inner);
        if (!mb->topic || !mb->inner)
                return -ENOMEM;
        mb->inner->n_ref = 1;
        if (asprintf(&mb->inner->name, "bindings-%s", c->name) < 0) {
                mb->inner->name = NULL;
                return -ENOMEM;
        }
        mb->inner->type = strdup("pubsub.mqtt3");
        mb->inner->version = strdup("v1");
        mb->inner->file = strdup(c->file ?: "");
        mb->inner->line = c->line;
        if (!mb->inner->type || !mb->inner->version || !mb->inner->file)
                return -ENOMEM;
        for (const char *const *p = passed; *p; p++) {
                v = binding_component_get(c, *p);
                if (v && (r = inner_add(mb->inner, *p, v)) < 0)
                        return r;
        }

        PubsubBroker *pb = calloc(1, mb->engine->instance_size);
        if (!pb)
                return -ENOMEM;
        *pb = (PubsubBroker){ .driver = mb->engine, .component = component_ref(mb->inner), .event = b->event,
                              .name = mb->inner->name, .state_dir = b->state_dir, .instance_id = b->instance_id };
        r = mb->engine->open(pb, reterr_msg);
        if (r < 0) {
                mb->engine->close(pb);
                component_unref(pb->component);
                free(pb);
                return r;
        }
        mb->broker = pb;
        return 0;
}

static void mqtt_close(Binding *b) {
        MqttBinding *mb = (MqttBinding *) b;
        if (mb->broker) {
                mb->engine->close(mb->broker); /* answers pending publishes */
                component_unref(mb->broker->component);
                free(mb->broker);
        }
        component_unref(mb->inner);
        free(mb->topic);
}

static void on_published(int error, const char *message, void *userdata) {
        PubCall *pc = userdata;
        pc->done(error, message, NULL, pc->userdata);
        free(pc);
}

static int mqtt_invoke(Binding *b, const BindingRequest *req, BindingDoneFn done, void *userdata,
                       char **reterr_msg) {
        MqttBinding *mb = (MqttBinding *) b;
        const char *topic = binding_metadata_get(req->metadata, "topic");
        PubCall *pc = malloc(sizeof *pc);
        int r;

        if (!pc)
                return -ENOMEM;
        *pc = (PubCall){ .done = done, .userdata = userdata };
        r = mb->engine->publish(mb->broker, topic && *topic ? topic : mb->topic, req->data, req->len, NULL, 0,
                                on_published, pc);
        if (r < 0)
                free(pc);
        return r;
}

static void on_deliver(PubsubSubscription *sub, PubsubDelivery *d, const PubsubMessage *msg, void *userdata) {
        BindingReader *rd = userdata;
        char *md[] = { (char *) "topic", (char *) msg->topic, NULL };
        BindingEvent ev = { .data = msg->data, .len = msg->len, .metadata = md, .attempt = msg->attempt };
        rd->fn(rd, (BindingDelivery *) d, &ev, rd->userdata);
}

static int mqtt_read_start(Binding *b, const char *group, unsigned max_in_flight, BindingEventFn fn,
                           void *userdata, BindingReader **ret) {
        MqttBinding *mb = (MqttBinding *) b;
        BindingReader *rd = calloc(1, sizeof *rd);
        int r;

        if (!rd)
                return -ENOMEM;
        *rd = (BindingReader){ .mb = mb, .fn = fn, .userdata = userdata };
        r = mb->engine->subscribe(mb->broker, mb->topic, group, max_in_flight, on_deliver, rd, &rd->ds);
        if (r < 0) {
                free(rd);
                return r;
        }
        *ret = rd;
        return 0;
}

static void mqtt_read_stop(BindingReader *rd) {
        /* Unsettled messages stay in the spool and come again. */
        rd->mb->engine->unsubscribe(rd->ds);
        free(rd);
}

static void mqtt_settle(BindingDelivery *d, bool ok, uint64_t retry_after_usec) {
        engine()->settle((PubsubDelivery *) d, ok ? PUBSUB_ACK : PUBSUB_RETRY, retry_after_usec);
}

const BindingDriver binding_mqtt_driver = {
        .type = "bindings.mqtt3",
        .alias = "bindings.mqtt",
        .abi = BINDING_DRIVER_ABI,
        .instance_size = sizeof(MqttBinding),
        .operations = mqtt_operations,
        .redelivers = true,
        .open = mqtt_open,
        .close = mqtt_close,
        .invoke = mqtt_invoke,
        .read_start = mqtt_read_start,
        .read_stop = mqtt_read_stop,
        .settle = mqtt_settle,
};
