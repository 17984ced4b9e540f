/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's pub/sub RPCs: PublishEvent, BulkPublishEvent (and its Alpha1 name),
 * and the streaming SubscribeTopicEventsAlpha1 that newer SDKs use. Publish
 * calls the same pubsub_publish() as the HTTP route; the answer comes once the
 * broker durably accepted the message. A streaming subscription is a sink of
 * the pub/sub block (as a D-Bus subscriber is) in the app's consumer group:
 * each message goes out as a TopicEventRequest, and the app's
 * event_processed answer settles it (SUCCESS, RETRY, DROP). Messages not
 * settled when the stream ends are offered again to the group.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../blocks/pubsub.h"
#include "../core/cloudevent.h"
#include "../core/registry.h"
#include "../util/base64.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "services.h"

/* Entries started per loop pass, so one large bulk does not hold the loop (as http/api-pubsub.c). */
#define BULK_SLICE 256
/* Unsettled messages of one streaming subscription at most. */
#define SUBSCRIBE_IN_FLIGHT 64U

static DaprError publish_error(int error) {
        return error_lookup(ERROR_CONTEXT_PUBLISH, error)->dapr;
}

static int publish_fail(GrpcCall *c, int error, const char *message) {
        return grpc_fail_dapr_status(c, error_grpc_status(ERROR_CONTEXT_PUBLISH, error, DAPR_ERR_PUBSUB_PUBLISH_MESSAGE),
                                     publish_error(error), "%s", message ?: strerror(-error));
}

/* Map entries (key, value) as pairs appended to *l. */
#define APPEND_MAP(l, n, md)                                                                   \
        ({                                                                                     \
                int _k = 0;                                                                    \
                for (size_t _i = 0; _k >= 0 && _i < (n); _i++)                                 \
                        _k = strv_extend((l), (md)[_i]->key) < 0 || strv_extend((l), (md)[_i]->value) < 0 \
                                     ? -ENOMEM                                                 \
                                     : 0;                                                      \
                _k;                                                                            \
        })

/* ---- PublishEvent ---- */

static void on_published(int error, const char *message, void *userdata) {
        GrpcCall *c = userdata;
        if (error < 0)
                (void) publish_fail(c, error, message);
        else {
                Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
                (void) grpc_call_reply(c, &e.base);
        }
}

int grpc_dapr_publish_event(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(PublishEventRequest) *req = (const PB(PublishEventRequest) *) m;
        _cleanup_strv_free_ char **md = NULL;

        if (!*req->pubsub_name)
                return grpc_fail_dapr(c, DAPR_ERR_PUBSUB_EMPTY, "pubsub name is empty");
        if (APPEND_MAP(&md, req->n_metadata, req->metadata) < 0)
                return -ENOMEM;
        PublishRequest p = {
                .app = grpc_call_app_id(c),
                .pubsub = req->pubsub_name,
                .topic = req->topic,
                .data = req->data.data ?: (const uint8_t *) "",
                .len = req->data.len,
                .content_type = *req->data_content_type ? req->data_content_type : NULL,
                .metadata = md,
                .traceparent = grpc_call_metadata(c, "traceparent"),
                .tracestate = grpc_call_metadata(c, "tracestate"),
        };
        /* No cancel: a publish the broker took is not taken back; the answer is dropped if the
         * client left. */
        return pubsub_publish(grpc_call_registry(c), &p, on_published, c);
}

/* ---- BulkPublishEvent ---- */

typedef struct BulkEntry BulkEntry;

typedef struct BulkPublish {
        GrpcCall *call;
        Registry *registry;
        unsigned pending;            /* entries out, + 1 while slices remain to start */
        PB(BulkPublishRequest) *req; /* the request, re-packed and owned (the server frees its own) */
        size_t next;
        char **md;
        char *traceparent, *tracestate;
        sd_event_source *slice;
        size_t n_failed;
        PB(BulkPublishResponseFailedEntry) **failed;
        bool gone;                   /* the caller left: start nothing more */
} BulkPublish;

struct BulkEntry {
        BulkPublish *bulk;
        size_t index;
};

static void bulk_free(BulkPublish *bp) {
        sd_event_source_disable_unref(bp->slice);
        for (size_t i = 0; i < bp->n_failed; i++) {
                free(bp->failed[i]->error);
                free(bp->failed[i]);
        }
        free(bp->failed);
        if (bp->req)
                protobuf_c_message_free_unpacked(&bp->req->base, NULL);
        strv_free(bp->md);
        free(bp->traceparent);
        free(bp->tracestate);
        free(bp);
}

static void bulk_fail_entry(BulkPublish *bp, size_t i, const char *error) {
        PB(BulkPublishResponseFailedEntry) *f = calloc(1, sizeof *f), **l;
        l = f ? realloc(bp->failed, (bp->n_failed + 1) * sizeof *l) : NULL;
        if (!l) {
                free(f);
                return; /* out of memory: the entry's failure is not reported (logged by the broker) */
        }
        bp->failed = l;
        dapr__proto__runtime__v1__bulk_publish_response_failed_entry__init(f);
        f->entry_id = bp->req->entries[i]->entry_id; /* borrowed from the request */
        f->error = strdup(error);
        if (!f->error) {
                free(f);
                return;
        }
        bp->failed[bp->n_failed++] = f;
}

static void bulk_release(BulkPublish *bp) {
        if (--bp->pending > 0)
                return;
        if (!bp->gone) {
                PB(BulkPublishResponse) resp = DAPR__PROTO__RUNTIME__V1__BULK_PUBLISH_RESPONSE__INIT;
                grpc_call_on_cancel(bp->call, NULL, NULL);
                resp.n_failedentries = bp->n_failed;
                resp.failedentries = bp->failed;
                /* Partial failures are no error (daprd: the failed entries say it all). */
                (void) grpc_call_reply(bp->call, &resp.base);
        }
        bulk_free(bp);
}

static void on_bulk_entry(int error, const char *message, void *userdata) {
        BulkEntry *be = userdata;
        BulkPublish *bp = be->bulk;
        if (error < 0)
                bulk_fail_entry(bp, be->index, message ?: strerror(-error));
        free(be);
        bulk_release(bp);
}

static void bulk_start_slice(BulkPublish *bp) {
        size_t n = bp->req->n_entries, end = MIN(n, bp->next + BULK_SLICE);

        for (; !bp->gone && bp->next < end; bp->next++) {
                const PB(BulkPublishRequestEntry) *e = bp->req->entries[bp->next];
                _cleanup_strv_free_ char **emd = NULL;
                BulkEntry *be = calloc(1, sizeof *be);
                /* request-level metadata first, the entry's after it (later pairs win) */
                if (!be || strv_copy(bp->md, &emd) < 0 || APPEND_MAP(&emd, e->n_metadata, e->metadata) < 0) {
                        free(be);
                        bulk_fail_entry(bp, bp->next, "out of memory");
                        continue;
                }
                *be = (BulkEntry){ .bulk = bp, .index = bp->next };
                PublishRequest p = {
                        .app = grpc_call_app_id(bp->call),
                        .pubsub = bp->req->pubsub_name,
                        .topic = bp->req->topic,
                        .data = e->event.data ?: (const uint8_t *) "",
                        .len = e->event.len,
                        .content_type = *e->content_type ? e->content_type : NULL,
                        .metadata = emd,
                        .traceparent = bp->traceparent,
                        .tracestate = bp->tracestate,
                };
                bp->pending++;
                if (pubsub_publish(bp->registry, &p, on_bulk_entry, be) < 0) {
                        bp->pending--;
                        free(be);
                        bulk_fail_entry(bp, bp->next, "out of memory");
                }
        }
        if (!bp->gone && bp->next < n && sd_event_source_set_enabled(bp->slice, SD_EVENT_ONESHOT) >= 0)
                return;
        bulk_release(bp); /* ours: every entry started */
}

static int on_bulk_slice(sd_event_source *s, void *userdata) {
        bulk_start_slice(userdata);
        return 0;
}

static void on_bulk_cancel(GrpcCall *c, void *userdata) {
        BulkPublish *bp = userdata;
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before every entry was published");
        bp->gone = true;
        if (bp->next < bp->req->n_entries) {
                bp->next = bp->req->n_entries;
                (void) sd_event_source_set_enabled(bp->slice, SD_EVENT_OFF);
                bulk_release(bp);
        }
}

static int cmp_str(const void *x, const void *y) {
        return strcmp(*(const char *const *) x, *(const char *const *) y);
}

static bool entry_raw(char **md, size_t n, PB(BulkPublishRequestEntry__MetadataEntry) **emd) {
        int raw = 0;
        for (char **p = md; p && p[0] && p[1]; p += 2)
                if (strcasecmp(p[0], "rawPayload") == 0)
                        raw = parse_boolean(p[1]);
        for (size_t i = 0; i < n; i++)
                if (strcasecmp(emd[i]->key, "rawPayload") == 0)
                        raw = parse_boolean(emd[i]->value);
        return raw > 0;
}

int grpc_dapr_bulk_publish_event(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(BulkPublishRequest) *req = (const PB(BulkPublishRequest) *) m;
        Registry *reg = grpc_call_registry(c);
        _cleanup_free_ char *why = NULL;
        _cleanup_free_ const char **ids = NULL;
        size_t n = req->n_entries;
        int k;

        if (!*req->pubsub_name)
                return grpc_fail_dapr(c, DAPR_ERR_PUBSUB_EMPTY, "pubsub name is empty");
        /* The target first, as Dapr: a bad pubsub or topic fails the request, not each entry. */
        k = pubsub_check_publish(reg, grpc_call_app_id(c), req->pubsub_name, req->topic, NULL, &why);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return publish_fail(c, k, why);
        ids = calloc(n ?: 1, sizeof *ids);
        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (!*req->entries[i]->entry_id)
                        return grpc_fail_dapr(c, DAPR_ERR_PUBSUB_EVENTS_SER,
                                              "entryId is duplicated or not present for entry");
                ids[i] = req->entries[i]->entry_id;
        }
        qsort(ids, n, sizeof *ids, cmp_str);
        for (size_t i = 1; i < n; i++)
                if (streq(ids[i - 1], ids[i]))
                        return grpc_fail_dapr(c, DAPR_ERR_PUBSUB_EVENTS_SER,
                                              "entryId is duplicated or not present for entry");

        BulkPublish *bp = calloc(1, sizeof *bp);
        if (!bp)
                return -ENOMEM;
        bp->call = c;
        bp->registry = reg;
        bp->pending = 1; /* ours, while slices remain */
        k = APPEND_MAP(&bp->md, req->n_metadata, req->metadata);
        /* Every entry's CloudEvent must be good before any is published (as daprd). */
        for (size_t i = 0; k >= 0 && i < n; i++) {
                const PB(BulkPublishRequestEntry) *e = req->entries[i];
                if (!cloudevent_is_content_type(e->content_type) ||
                    entry_raw(bp->md, e->n_metadata, e->metadata))
                        continue;
                _cleanup_free_ char *err = NULL;
                k = cloudevent_validate(e->event.data ?: (const uint8_t *) "", e->event.len, &err);
                if (k == -ENOMEM || (k < 0 && !err))
                        k = -ENOMEM;
                else if (k < 0) {
                        bulk_free(bp);
                        return grpc_fail_dapr(c, DAPR_ERR_PUBSUB_CLOUD_EVENTS_SER,
                                              "cannot create cloudevent for entry '%s': %s", e->entry_id, err);
                }
        }
        /* Keep the request: the server frees its own copy when we return. */
        size_t plen = protobuf_c_message_get_packed_size(m);
        _cleanup_free_ uint8_t *packed = k >= 0 ? malloc(plen ?: 1) : NULL;
        if (packed) {
                protobuf_c_message_pack(m, packed);
                bp->req = (PB(BulkPublishRequest) *) protobuf_c_message_unpack(m->descriptor, NULL, plen, packed);
        }
        const char *tp = grpc_call_metadata(c, "traceparent"), *ts = grpc_call_metadata(c, "tracestate");
        bp->traceparent = tp ? strdup(tp) : NULL;
        bp->tracestate = ts ? strdup(ts) : NULL;
        if (k < 0 || !bp->req || (tp && !bp->traceparent) || (ts && !bp->tracestate) ||
            sd_event_add_defer(reg->event, &bp->slice, on_bulk_slice, bp) < 0) {
                bulk_free(bp);
                return -ENOMEM;
        }
        (void) sd_event_source_set_enabled(bp->slice, SD_EVENT_OFF);
        grpc_call_on_cancel(c, on_bulk_cancel, bp);
        bulk_start_slice(bp);
        return 0;
}

/* ---- SubscribeTopicEventsAlpha1 ---- */

typedef struct Pending {
        char *id;                   /* the CloudEvent's id, as the app answers with it */
        PubsubSinkDelivery *d;
} Pending;

typedef struct StreamSub {
        GrpcCall *call;
        PubsubRunner *runner;       /* NULL until the initial request, and after the end */
        char *pubsub, *topic;
        Pending *pending;
        size_t n_pending;
} StreamSub;

static void stream_sub_free(StreamSub *s) {
        if (!s)
                return;
        /* Unsettled messages go back to the group (redelivered later). */
        if (s->runner)
                pubsub_sink_unsubscribe(s->runner);
        for (size_t i = 0; i < s->n_pending; i++)
                free(s->pending[i].id);
        free(s->pending);
        free(s->pubsub);
        free(s->topic);
        free(s);
}

static void stream_end(StreamSub *s, GrpcCode code, const char *message) {
        GrpcCall *c = s->call;
        grpc_call_set_userdata(c, NULL);
        grpc_call_on_cancel(c, NULL, NULL);
        stream_sub_free(s);
        if (code == GRPC_STATUS_OK)
                (void) grpc_call_reply(c, NULL);
        else
                (void) grpc_call_fail(c, code, "%s", message);
}

static const char *json_str(json_t *o, const char *k) {
        return json_string_value(json_object_get(o, k)) ?: "";
}

/* The message's data as bytes: a JSON string's text, data_base64 decoded, other JSON as JSON text. */
static int event_data(json_t *ev, char **ret, size_t *ret_len) {
        json_t *d = json_object_get(ev, "data");
        const char *b64 = json_string_value(json_object_get(ev, "data_base64"));
        if (b64)
                return base64_decode(b64, strlen(b64), ret, ret_len);
        if (!d || json_is_null(d)) {
                *ret = strdup("");
                *ret_len = 0;
        } else if (json_is_string(d)) {
                *ret = strndup(json_string_value(d), json_string_length(d));
                *ret_len = json_string_length(d);
        } else {
                *ret = json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
                *ret_len = *ret ? strlen(*ret) : 0;
        }
        return *ret ? 0 : -ENOMEM;
}

static void on_sink(PubsubSinkDelivery *d, const char *topic, const void *event, size_t len, void *userdata) {
        StreamSub *s = userdata;
        _cleanup_(json_decrefp) json_t *ev = NULL;
        _cleanup_free_ char *data = NULL;
        size_t data_len = 0;
        Pending *l;

        if (!d) {
                s->runner = NULL; /* gone already, and every delivery with it */
                s->n_pending = 0;
                stream_end(s, GRPC_STATUS_UNAVAILABLE, "the pubsub component was removed or changed");
                return;
        }
        ev = json_loadb(event, len, 0, NULL);
        if (!json_is_object(ev) || event_data(ev, &data, &data_len) < 0) {
                pubsub_sink_settle(d, ev ? PUBSUB_VERDICT_RETRY : PUBSUB_VERDICT_DROP);
                return;
        }
        l = realloc(s->pending, (s->n_pending + 1) * sizeof *l);
        if (!l) {
                pubsub_sink_settle(d, PUBSUB_VERDICT_RETRY);
                return;
        }
        s->pending = l;
        l[s->n_pending] = (Pending){ .id = strdup(json_str(ev, "id")), .d = d };
        if (!l[s->n_pending].id) {
                pubsub_sink_settle(d, PUBSUB_VERDICT_RETRY);
                return;
        }
        s->n_pending++;

        PB(TopicEventRequest) te = DAPR__PROTO__RUNTIME__V1__TOPIC_EVENT_REQUEST__INIT;
        PB(SubscribeTopicEventsResponseAlpha1) resp = DAPR__PROTO__RUNTIME__V1__SUBSCRIBE_TOPIC_EVENTS_RESPONSE_ALPHA1__INIT;
        te.id = (char *) json_str(ev, "id");
        te.source = (char *) json_str(ev, "source");
        te.type = (char *) json_str(ev, "type");
        te.spec_version = (char *) json_str(ev, "specversion");
        te.data_content_type = (char *) json_str(ev, "datacontenttype");
        te.data = (ProtobufCBinaryData){ data_len, (uint8_t *) data };
        te.topic = (char *) topic;
        te.pubsub_name = s->pubsub;
        resp.subscribe_topic_events_response_type_case =
                DAPR__PROTO__RUNTIME__V1__SUBSCRIBE_TOPIC_EVENTS_RESPONSE_ALPHA1__SUBSCRIBE_TOPIC_EVENTS_RESPONSE_TYPE_EVENT_MESSAGE;
        resp.event_message = &te;
        if (grpc_call_send(s->call, &resp.base) < 0) {
                /* the app does not read: offered again after a backoff */
                s->n_pending--;
                free(s->pending[s->n_pending].id);
                pubsub_sink_settle(d, PUBSUB_VERDICT_RETRY);
        }
}

static int subscribe_start(GrpcCall *c, StreamSub *s, const PB(SubscribeTopicEventsRequestInitialAlpha1) *in) {
        const char *app = grpc_call_app_id(c);
        int k;

        if (!*in->pubsub_name)
                return grpc_fail_dapr(c, DAPR_ERR_PUBSUB_EMPTY, "pubsub name is empty");
        if (!*in->topic)
                return grpc_fail_dapr(c, DAPR_ERR_TOPIC_NAME_EMPTY, "topic is empty in pubsub %s", in->pubsub_name);
        s->pubsub = strdup(in->pubsub_name);
        s->topic = strdup(in->topic);
        if (!s->pubsub || !s->topic)
                return -ENOMEM;
        /* The app's own consumer group, as daprd: the app's streams and its other subscriptions share
         * the messages of a topic. */
        k = pubsub_sink_subscribe(grpc_call_registry(c), app, app, s->pubsub, s->topic, SUBSCRIBE_IN_FLIGHT,
                                  on_sink, s, &s->runner);
        if (k == -ENOENT)
                return grpc_fail_dapr(c, DAPR_ERR_PUBSUB_NOT_FOUND, "pubsub %s is not found", s->pubsub);
        if (k == -EACCES)
                return grpc_fail_dapr(c, DAPR_ERR_PUBSUB_FORBIDDEN, "topic %s is not allowed for app id %s",
                                      s->topic, app);
        if (k < 0)
                return k;
        log_struct(LOG_DEBUG, 0, app, s->pubsub, "gRPC streaming subscription to topic %s.", s->topic);
        PB(SubscribeTopicEventsResponseInitialAlpha1) init =
                DAPR__PROTO__RUNTIME__V1__SUBSCRIBE_TOPIC_EVENTS_RESPONSE_INITIAL_ALPHA1__INIT;
        PB(SubscribeTopicEventsResponseAlpha1) resp = DAPR__PROTO__RUNTIME__V1__SUBSCRIBE_TOPIC_EVENTS_RESPONSE_ALPHA1__INIT;
        resp.subscribe_topic_events_response_type_case =
                DAPR__PROTO__RUNTIME__V1__SUBSCRIBE_TOPIC_EVENTS_RESPONSE_ALPHA1__SUBSCRIBE_TOPIC_EVENTS_RESPONSE_TYPE_INITIAL_RESPONSE;
        resp.initial_response = &init;
        return grpc_call_send(c, &resp.base);
}

static void on_stream_cancel(GrpcCall *c, void *userdata) {
        stream_end(userdata, GRPC_STATUS_CANCELLED, "the subscription stream ended");
}

int grpc_dapr_subscribe_open(GrpcCall *c) {
        StreamSub *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->call = c;
        grpc_call_set_userdata(c, s);
        grpc_call_on_cancel(c, on_stream_cancel, s);
        return 0;
}

int grpc_dapr_subscribe_message(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(SubscribeTopicEventsRequestAlpha1) *req = (const PB(SubscribeTopicEventsRequestAlpha1) *) m;
        StreamSub *s = grpc_call_get_userdata(c);
        int k;

        if (!s)
                return 0; /* ended already */
        switch (req->subscribe_topic_events_request_type_case) {
        case DAPR__PROTO__RUNTIME__V1__SUBSCRIBE_TOPIC_EVENTS_REQUEST_ALPHA1__SUBSCRIBE_TOPIC_EVENTS_REQUEST_TYPE_INITIAL_REQUEST:
                if (s->pubsub) {
                        stream_end(s, GRPC_STATUS_INVALID_ARGUMENT, "the initial request may come only once");
                        return 0;
                }
                k = subscribe_start(c, s, req->initial_request);
                if (k < 0 || grpc_call_is_gone(c)) {
                        /* answered by subscribe_start(), or an error for the server to answer */
                        grpc_call_set_userdata(c, NULL);
                        grpc_call_on_cancel(c, NULL, NULL);
                        stream_sub_free(s);
                }
                return k;
        case DAPR__PROTO__RUNTIME__V1__SUBSCRIBE_TOPIC_EVENTS_REQUEST_ALPHA1__SUBSCRIBE_TOPIC_EVENTS_REQUEST_TYPE_EVENT_PROCESSED: {
                const PB(SubscribeTopicEventsRequestProcessedAlpha1) *p = req->event_processed;
                PubsubVerdict v = PUBSUB_VERDICT_SUCCESS;
                if (!s->pubsub) {
                        stream_end(s, GRPC_STATUS_INVALID_ARGUMENT, "the initial request must come first");
                        return 0;
                }
                if (p->status && p->status->status == DAPR__PROTO__RUNTIME__V1__TOPIC_EVENT_RESPONSE__TOPIC_EVENT_RESPONSE_STATUS__RETRY)
                        v = PUBSUB_VERDICT_RETRY;
                else if (p->status && p->status->status == DAPR__PROTO__RUNTIME__V1__TOPIC_EVENT_RESPONSE__TOPIC_EVENT_RESPONSE_STATUS__DROP)
                        v = PUBSUB_VERDICT_DROP;
                for (size_t i = 0; i < s->n_pending; i++)
                        if (streq(s->pending[i].id, p->id)) {
                                PubsubSinkDelivery *d = s->pending[i].d;
                                free(s->pending[i].id);
                                memmove(s->pending + i, s->pending + i + 1, (s->n_pending - i - 1) * sizeof *s->pending);
                                s->n_pending--;
                                pubsub_sink_settle(d, v);
                                break;
                        }
                /* an id we do not wait for (settled already): nothing to do, as daprd */
                return 0;
        }
        default:
                stream_end(s, GRPC_STATUS_INVALID_ARGUMENT, "the request has neither initial_request nor event_processed");
                return 0;
        }
}

void grpc_dapr_subscribe_half_closed(GrpcCall *c) {
        StreamSub *s = grpc_call_get_userdata(c);
        if (s)
                stream_end(s, GRPC_STATUS_OK, NULL);
}
