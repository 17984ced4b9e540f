/* SPDX-License-Identifier: Apache-2.0 */
/* See grpc-app.h. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../util/base64.h"
#include "../util/cleanup.h"
#include "../util/grpc-frame.h"
#include "../util/strv.h"
#include "grpc-app.h"
#include "mooring-proto.h"

#define PB(name) Dapr__Proto__Runtime__V1__##name
#define PBC(name) Dapr__Proto__Common__V1__##name
#define SVC "/dapr.proto.runtime.v1."
/* An answer of an unbuffered call (invocation) is collected up to this: gRPC has no streaming
 * OnInvoke, so it arrives whole anyway. */
#define STREAMED_ANSWER_MAX (64U << 20)

struct GrpcAppCall {
        TransportCall *tc;
        const TransportHandler *h;
        void *userdata;
        GrpcAppFinishedFn finished;
        TransportPurpose purpose;
        char *name;                 /* input bindings: the binding */
        GrpcStream *stream;
        GrpcDecoder dec;
        uint8_t *msg;               /* the (first) answer message */
        size_t msg_len;
        bool have_msg;
        char **resp_headers;
        /* the HTTP-shaped answer */
        TransportAnswer answer;
        char **ans_headers;
        char *ans_body;
        size_t ans_len;
        bool paused;                /* body() said not now */
        bool head_sent;
        sd_event_source *later;     /* delivers again after a resume */
};

static void call_free(GrpcAppCall *c) {
        if (!c)
                return;
        grpc_stream_cancel(c->stream);
        grpc_decoder_done(&c->dec);
        sd_event_source_disable_unref(c->later);
        free(c->msg);
        free(c->name);
        strv_free(c->resp_headers);
        strv_free(c->ans_headers);
        free(c->ans_body);
        free(c);
}

/* The end for the transport's caller, then the transport's bookkeeping. */
static void call_done(GrpcAppCall *c, const TransportAnswer *a, const TransportError *e) {
        TransportCall *tc = c->tc;
        c->stream = NULL; /* ended already */
        c->h->done(tc, a, e, c->userdata);
        c->finished(tc);
        call_free(c);
}

static void call_error(GrpcAppCall *c, int error, bool answered, const char *fmt, ...) _printf_(4, 5);
static void call_error(GrpcAppCall *c, int error, bool answered, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        TransportError e = { .error = error, .answered = answered, .attempts = 1, .message = msg ?: "error" };
        call_done(c, NULL, &e);
}

/* The HTTP status daprd answers for a gRPC app's status (invokev1.HTTPStatusFromCode). */
static unsigned http_from_grpc(long code) {
        static const unsigned map[] = { 200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500,
                                        503, 500, 401 };
        return code >= 0 && code < (long) ELEMENTSOF(map) ? map[code] : 500;
}

static int add_header(GrpcAppCall *c, const char *name, const char *value) {
        return strv_extend(&c->ans_headers, name) < 0 || strv_extend(&c->ans_headers, value) < 0 ? -ENOMEM : 0;
}

static int set_json_body(GrpcAppCall *c, json_t *j) {
        if (!j)
                return -ENOMEM;
        c->ans_body = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!c->ans_body)
                return -ENOMEM;
        c->ans_len = strlen(c->ans_body);
        return add_header(c, "Content-Type", "application/json");
}

static int on_later(sd_event_source *s, void *userdata);

/* Hands the HTTP-shaped answer over: head and body for a streaming handler, else all in done. */
static void deliver(GrpcAppCall *c) {
        static char *const no_headers[] = { NULL };
        c->answer.headers = c->ans_headers ?: no_headers;
        c->answer.content_length = (int64_t) c->ans_len;
        if (!c->h->head) {
                c->answer.body = c->ans_body ?: "";
                c->answer.body_len = c->ans_len;
                call_done(c, &c->answer, NULL);
                return;
        }
        if (!c->head_sent) {
                c->head_sent = true;
                c->h->head(c->tc, &c->answer, c->userdata);
        }
        if (c->ans_len > 0 && !c->h->body(c->tc, c->ans_body, c->ans_len, c->userdata)) {
                c->paused = true; /* offered again after grpc_app_call_resume() */
                return;
        }
        c->paused = false;
        call_done(c, &c->answer, NULL);
}

static int on_later(sd_event_source *s, void *userdata) {
        deliver(userdata);
        return 0;
}

void grpc_app_call_resume(GrpcAppCall *c) {
        if (!c || !c->paused)
                return;
        (void) sd_event_source_set_enabled(c->later, SD_EVENT_ONESHOT);
}

/* ---- answers by purpose ---- */

static void answer_invoke(GrpcAppCall *c, long code, const char *message) {
        int r = 0;
        /* the app's response metadata become headers, as daprd does */
        for (char **p = c->resp_headers; r >= 0 && p && p[0] && p[1]; p += 2)
                if (!streq(p[0], "content-type") && !endswith(p[0], "-bin") && !startswith(p[0], "grpc-"))
                        r = add_header(c, p[0], p[1]);
        if (code != 0) {
                c->answer.status = http_from_grpc(code);
                r = r < 0 ? r : set_json_body(c, json_pack("{s:I, s:s, s:[]}", "code", (json_int_t) code, "message",
                                                           message ?: "", "details"));
        } else {
                PBC(InvokeResponse) *resp = dapr__proto__common__v1__invoke_response__unpack(NULL, c->msg_len,
                                                                                            c->msg ?: (uint8_t *) "");
                if (!resp) {
                        call_error(c, -EPROTO, true, "the app's InvokeResponse does not decode");
                        return;
                }
                c->answer.status = 200;
                if (resp->data && resp->data->value.len > 0) {
                        c->ans_body = malloc(resp->data->value.len);
                        if (c->ans_body) {
                                memcpy(c->ans_body, resp->data->value.data, resp->data->value.len);
                                c->ans_len = resp->data->value.len;
                        } else
                                r = -ENOMEM;
                }
                if (r >= 0 && *resp->content_type)
                        r = add_header(c, "Content-Type", resp->content_type);
                dapr__proto__common__v1__invoke_response__free_unpacked(resp, NULL);
        }
        if (r < 0) {
                call_error(c, r, true, "out of memory");
                return;
        }
        deliver(c);
}

static void answer_delivery(GrpcAppCall *c, long code, const char *message) {
        const char *st = "SUCCESS";
        if (code != 0) {
                /* daprd retries a message whose handler failed */
                c->answer.status = 500;
                if (set_json_body(c, json_pack("{s:I, s:s}", "code", (json_int_t) code, "message", message ?: "")) < 0) {
                        call_error(c, -ENOMEM, true, "out of memory");
                        return;
                }
                deliver(c);
                return;
        }
        PB(TopicEventResponse) *resp = dapr__proto__runtime__v1__topic_event_response__unpack(NULL, c->msg_len,
                                                                                             c->msg ?: (uint8_t *) "");
        if (!resp) {
                call_error(c, -EPROTO, true, "the app's TopicEventResponse does not decode");
                return;
        }
        if (resp->status == DAPR__PROTO__RUNTIME__V1__TOPIC_EVENT_RESPONSE__TOPIC_EVENT_RESPONSE_STATUS__RETRY)
                st = "RETRY";
        else if (resp->status == DAPR__PROTO__RUNTIME__V1__TOPIC_EVENT_RESPONSE__TOPIC_EVENT_RESPONSE_STATUS__DROP)
                st = "DROP";
        dapr__proto__runtime__v1__topic_event_response__free_unpacked(resp, NULL);
        c->answer.status = 200;
        if (set_json_body(c, json_pack("{s:s}", "status", st)) < 0) {
                call_error(c, -ENOMEM, true, "out of memory");
                return;
        }
        deliver(c);
}

/* A route as the pub/sub block posts to: "/x" for "x", "/" for none. */
static char *route(const char *path) {
        char *r = NULL;
        if (asprintf(&r, "%s%s", path[0] == '/' ? "" : "/", path) < 0)
                return NULL;
        return r;
}

static json_t *subscription_json(const PB(TopicSubscription) *s) {
        json_t *md = json_object(), *rules = json_array(), *j;
        _cleanup_free_ char *dflt = route(s->routes && *s->routes->default_ ? s->routes->default_ : "");
        for (size_t i = 0; md && i < s->n_metadata; i++)
                json_object_set_new(md, s->metadata[i]->key, json_string(s->metadata[i]->value));
        for (size_t i = 0; rules && s->routes && i < s->routes->n_rules; i++) {
                _cleanup_free_ char *p = route(s->routes->rules[i]->path);
                json_array_append_new(rules, json_pack("{s:s, s:s}", "match", s->routes->rules[i]->match, "path",
                                                       p ?: "/"));
        }
        j = json_pack("{s:s, s:s, s:o*, s:{s:o*, s:s}}", "pubsubname", s->pubsub_name, "topic", s->topic, "metadata",
                      md, "routes", "rules", rules, "default", dflt ?: "/");
        if (j && *s->dead_letter_topic)
                json_object_set_new(j, "deadLetterTopic", json_string(s->dead_letter_topic));
        if (j && s->bulk_subscribe)
                json_object_set_new(j, "bulkSubscribe",
                                    json_pack("{s:b, s:i, s:i}", "enabled", s->bulk_subscribe->enabled,
                                              "maxMessagesCount", (int) s->bulk_subscribe->max_messages_count,
                                              "maxAwaitDurationMs", (int) s->bulk_subscribe->max_await_duration_ms));
        return j;
}

static void answer_bulk(GrpcAppCall *c, long code, const char *message) {
        static const char *const st[] = { "SUCCESS", "RETRY", "DROP" };
        if (code != 0) {
                c->answer.status = code == 12 ? 404 : 500; /* 404: every entry dropped, else retried */
                deliver(c);
                return;
        }
        PB(TopicEventBulkResponse) *resp = dapr__proto__runtime__v1__topic_event_bulk_response__unpack(
                NULL, c->msg_len, c->msg ?: (uint8_t *) "");
        if (!resp) {
                call_error(c, -EPROTO, true, "the app's TopicEventBulkResponse does not decode");
                return;
        }
        json_t *a = json_array();
        for (size_t i = 0; a && i < resp->n_statuses; i++) {
                unsigned s = (unsigned) resp->statuses[i]->status;
                json_array_append_new(a, json_pack("{s:s, s:s}", "entryId", resp->statuses[i]->entry_id, "status",
                                                   s < ELEMENTSOF(st) ? st[s] : ""));
        }
        dapr__proto__runtime__v1__topic_event_bulk_response__free_unpacked(resp, NULL);
        c->answer.status = 200;
        if (set_json_body(c, json_pack("{s:o*}", "statuses", a)) < 0) {
                call_error(c, -ENOMEM, true, "out of memory");
                return;
        }
        deliver(c);
}

static void answer_subscriptions(GrpcAppCall *c, long code, const char *message) {
        if (code != 0) {
                /* an app without subscriptions need not implement it: as a 404 from an HTTP app */
                c->answer.status = code == 12 ? 404 : http_from_grpc(code);
                deliver(c);
                return;
        }
        PB(ListTopicSubscriptionsResponse) *resp =
                dapr__proto__runtime__v1__list_topic_subscriptions_response__unpack(NULL, c->msg_len,
                                                                                   c->msg ?: (uint8_t *) "");
        if (!resp) {
                call_error(c, -EPROTO, true, "the app's ListTopicSubscriptionsResponse does not decode");
                return;
        }
        json_t *a = json_array();
        for (size_t i = 0; a && i < resp->n_subscriptions; i++)
                json_array_append_new(a, subscription_json(resp->subscriptions[i]));
        dapr__proto__runtime__v1__list_topic_subscriptions_response__free_unpacked(resp, NULL);
        c->answer.status = 200;
        if (set_json_body(c, a) < 0) {
                call_error(c, -ENOMEM, true, "out of memory");
                return;
        }
        deliver(c);
}

/* Does the app read the binding: 200 when ListInputBindings names it, else 404 (also for an app that does
 * not implement it: it reads none). */
static void answer_binding_probe(GrpcAppCall *c, long code) {
        if (code != 0) {
                c->answer.status = code == 12 ? 404 : http_from_grpc(code);
                deliver(c);
                return;
        }
        PB(ListInputBindingsResponse) *resp = dapr__proto__runtime__v1__list_input_bindings_response__unpack(
                NULL, c->msg_len, c->msg ?: (uint8_t *) "");
        if (!resp) {
                call_error(c, -EPROTO, true, "the app's ListInputBindingsResponse does not decode");
                return;
        }
        c->answer.status = 404;
        for (size_t i = 0; i < resp->n_bindings; i++)
                if (streq(resp->bindings[i], c->name ?: ""))
                        c->answer.status = 200;
        dapr__proto__runtime__v1__list_input_bindings_response__free_unpacked(resp, NULL);
        deliver(c);
}

/* The part of an OnBindingEvent answer daprd acts on, as JSON (see answer_binding_event()); NULL: out
 * of memory. */
static json_t *binding_response_json(const PB(BindingEventResponse) *resp) {
        json_t *to = json_array();
        for (size_t i = 0; to && i < resp->n_to; i++)
                if (json_array_append_new(to, json_string(resp->to[i])) < 0) {
                        json_decref(to);
                        to = NULL;
                }
        if (!to)
                return NULL;
        /* daprd decodes the data as JSON and sends it on re-encoded; data that is no JSON goes as null */
        json_t *data = resp->data.len > 0
                               ? json_loadb((const char *) resp->data.data, resp->data.len, JSON_DECODE_ANY, NULL)
                               : NULL;
        bool parallel =
                resp->concurrency == DAPR__PROTO__RUNTIME__V1__BINDING_EVENT_RESPONSE__BINDING_EVENT_CONCURRENCY__PARALLEL;
        /* "o" steals both references, also when json_pack() fails */
        return json_pack("{s:o, s:o, s:s}", "to", to, "data", data ?: json_null(), "concurrency",
                         parallel ? "parallel" : "sequential");
}

/* An event was taken (200) or not (the HTTP status daprd maps the app's gRPC status to). What daprd
 * acts on in the answer, the output bindings to send data to (to, data, concurrency), becomes a JSON
 * body for the bindings block: {"to": [..], "data": <data if it is JSON, else null>, "concurrency":
 * "parallel"|"sequential"}. Its state items daprd ignores (it copies only those three), as here. */
static void answer_binding_event(GrpcAppCall *c, long code, const char *message) {
        if (code != 0) {
                c->answer.status = http_from_grpc(code);
                if (set_json_body(c, json_pack("{s:I, s:s}", "code", (json_int_t) code, "message", message ?: "")) < 0) {
                        call_error(c, -ENOMEM, true, "out of memory");
                        return;
                }
        } else {
                PB(BindingEventResponse) *resp = dapr__proto__runtime__v1__binding_event_response__unpack(
                        NULL, c->msg_len, c->msg ?: (uint8_t *) "");
                if (!resp) {
                        call_error(c, -EPROTO, true, "the app's BindingEventResponse does not decode");
                        return;
                }
                int r = resp->n_to > 0 ? set_json_body(c, binding_response_json(resp)) : 0;
                dapr__proto__runtime__v1__binding_event_response__free_unpacked(resp, NULL);
                if (r < 0) {
                        call_error(c, r, true, "out of memory");
                        return;
                }
                c->answer.status = 200;
        }
        deliver(c);
}

/* ---- the stream ---- */

static void on_headers(GrpcStream *s, char *const *headers, void *userdata) {
        GrpcAppCall *c = userdata;
        if (strv_copy(headers, &c->resp_headers) < 0)
                c->resp_headers = NULL;
}

static int on_message(const uint8_t *msg, size_t len, void *userdata) {
        GrpcAppCall *c = userdata;
        if (c->have_msg)
                return 0; /* a unary answer has one message; more are ignored */
        c->msg = malloc(len ?: 1);
        if (!c->msg)
                return -ENOMEM;
        memcpy(c->msg, msg, len);
        c->msg_len = len;
        c->have_msg = true;
        return 0;
}

static bool on_data(GrpcStream *s, const void *buf, size_t len, void *userdata) {
        GrpcAppCall *c = userdata;
        (void) grpc_decoder_feed(&c->dec, buf, len, on_message, c); /* errors show at the end: no message */
        return true;
}

static void on_done(GrpcStream *s, int error, char *const *trailers, void *userdata) {
        GrpcAppCall *c = userdata;
        const char *status, *message;
        _cleanup_free_ char *msg = NULL;
        char *end;

        c->stream = NULL;
        if (error < 0) {
                call_error(c, error, error == -ECONNRESET || error == -EPROTO, "%s",
                           error == -ETIMEDOUT ? "timed out" : error == -EPROTO ? "the app's answer is not gRPC"
                                                                               : strerror(-error));
                return;
        }
        status = grpc_pairs_get(trailers, "grpc-status");
        message = grpc_pairs_get(trailers, "grpc-message");
        msg = message ? grpc_percent_decode(message) : NULL;
        long code = strtol(status, &end, 10);
        if (*end || code < 0 || code > 16) {
                call_error(c, -EPROTO, true, "the app sent grpc-status '%s'", status);
                return;
        }
        if (code == 0 && !c->have_msg) {
                call_error(c, -EPROTO, true, "the app answered OK without a message");
                return;
        }
        switch (c->purpose) {
        case TRANSPORT_PURPOSE_INVOKE:
                answer_invoke(c, code, msg);
                break;
        case TRANSPORT_PURPOSE_DELIVERY:
                answer_delivery(c, code, msg);
                break;
        case TRANSPORT_PURPOSE_SUBSCRIPTIONS:
                answer_subscriptions(c, code, msg);
                break;
        case TRANSPORT_PURPOSE_BULK_DELIVERY:
                answer_bulk(c, code, msg);
                break;
        case TRANSPORT_PURPOSE_PROBE:
                c->answer.status = http_from_grpc(code);
                deliver(c);
                break;
        case TRANSPORT_PURPOSE_BINDING_PROBE:
                answer_binding_probe(c, code);
                break;
        case TRANSPORT_PURPOSE_BINDING_EVENT:
                answer_binding_event(c, code, msg);
                break;
        }
}

static const GrpcStreamHandler stream_handler = {
        .headers = on_headers,
        .data = on_data,
        .done = on_done,
};

/* ---- requests by purpose ---- */

static const char *const verbs[] = { "", "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                                     "PATCH" };

/* The caller's headers as gRPC metadata: lower case, what HTTP/2 and gRPC allow. */
static int metadata_from_headers(char *const *headers, char ***ret) {
        static const char *const drop[] = { "connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                            "upgrade", "te", "content-type", "content-length", "host", NULL };
        _cleanup_strv_free_ char **md = NULL;
        for (char *const *p = headers; p && p[0] && p[1]; p += 2) {
                _cleanup_free_ char *n = strdup(p[0]);
                bool ok = n && *n;
                if (!n)
                        return -ENOMEM;
                for (char *q = n; ok && *q; q++) {
                        *q = (char) tolower((unsigned char) *q);
                        ok = isalnum((unsigned char) *q) || strchr("-_.", *q);
                }
                for (const char *const *d = drop; ok && *d; d++)
                        ok = !streq(n, *d);
                for (const char *v = p[1]; ok && *v; v++)
                        ok = (unsigned char) *v >= 0x20 && *v != 0x7f;
                if (!ok || startswith(n, "grpc-"))
                        continue;
                if (strv_extend(&md, n) < 0 || strv_extend(&md, p[1]) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(md);
        return 0;
}

static int pack_framed(const ProtobufCMessage *m, uint8_t **ret, size_t *ret_len) {
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *b = malloc(n + GRPC_PREFIX_SIZE);
        if (!b)
                return -ENOMEM;
        grpc_frame_prefix(b, (uint32_t) n);
        protobuf_c_message_pack(m, b + GRPC_PREFIX_SIZE);
        *ret = b;
        *ret_len = n + GRPC_PREFIX_SIZE;
        return 0;
}

static int build_invoke(const TransportRequest *req, uint8_t **ret, size_t *ret_len) {
        PBC(InvokeRequest) ir = DAPR__PROTO__COMMON__V1__INVOKE_REQUEST__INIT;
        PBC(HTTPExtension) ext = DAPR__PROTO__COMMON__V1__HTTPEXTENSION__INIT;
        Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
        const char *target = req->target[0] == '/' ? req->target + 1 : req->target;
        const char *q = strchr(target, '?');
        _cleanup_free_ char *method = q ? strndup(target, (size_t) (q - target)) : strdup(target);
        const char *ct = NULL;

        if (!method)
                return -ENOMEM;
        for (size_t i = 1; i < ELEMENTSOF(verbs); i++)
                if (strcasecmp(req->method, verbs[i]) == 0)
                        ext.verb = (PBC(HTTPExtension__Verb)) i;
        for (char *const *p = req->headers; p && p[0] && p[1]; p += 2)
                if (strcasecmp(p[0], "content-type") == 0)
                        ct = p[1];
        ext.querystring = (char *) (q ? q + 1 : "");
        any.value = (ProtobufCBinaryData){ req->body_len, (uint8_t *) req->body };
        ir.method = method;
        ir.data = &any;
        ir.content_type = (char *) (ct ?: "");
        ir.http_extension = &ext;
        return pack_framed(&ir.base, ret, ret_len);
}

static const char *json_str(json_t *o, const char *k) {
        return json_string_value(json_object_get(o, k)) ?: "";
}

static int build_delivery(const TransportRequest *req, uint8_t **ret, size_t *ret_len) {
        _cleanup_(json_decrefp) json_t *ev = json_loadb(req->body ?: "", req->body_len, 0, NULL);
        PB(TopicEventRequest) te = DAPR__PROTO__RUNTIME__V1__TOPIC_EVENT_REQUEST__INIT;
        _cleanup_free_ char *data = NULL;
        size_t data_len = 0;
        json_t *d;
        const char *b64;

        if (!json_is_object(ev))
                return -EINVAL;
        d = json_object_get(ev, "data");
        b64 = json_string_value(json_object_get(ev, "data_base64"));
        if (b64) {
                if (base64_decode(b64, strlen(b64), &data, &data_len) < 0)
                        return -EINVAL;
        } else if (json_is_string(d)) {
                data = strndup(json_string_value(d), json_string_length(d));
                data_len = json_string_length(d);
        } else if (d && !json_is_null(d)) {
                data = json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
                data_len = data ? strlen(data) : 0;
        } else
                data = strdup("");
        if (!data)
                return -ENOMEM;
        te.id = (char *) json_str(ev, "id");
        te.source = (char *) json_str(ev, "source");
        te.type = (char *) json_str(ev, "type");
        te.spec_version = (char *) json_str(ev, "specversion");
        te.data_content_type = (char *) json_str(ev, "datacontenttype");
        te.data = (ProtobufCBinaryData){ data_len, (uint8_t *) data };
        te.topic = (char *) json_str(ev, "topic");
        te.pubsub_name = (char *) json_str(ev, "pubsubname");
        te.path = (char *) (streq(req->target, "/") ? "" : req->target);
        return pack_framed(&te.base, ret, ret_len);
}

/* A map of strings (JSON object) as protobuf-c map entries of type T: one allocation (pointers,
 * then the entries) that the caller frees; keys and values are borrowed from obj. */
#define MAP_FROM_JSON(T, init, obj, ret_n)                                                         \
        ({                                                                                         \
                size_t _n = json_object_size(obj), _i = 0;                                         \
                T **_p = calloc(1, (_n ?: 1) * (sizeof(T *) + sizeof(T)));                         \
                T *_e = _p ? (T *) (_p + (_n ?: 1)) : NULL;                                        \
                const char *_k;                                                                    \
                json_t *_v;                                                                        \
                if (_p)                                                                            \
                        json_object_foreach(obj, _k, _v) {                                         \
                                if (!json_is_string(_v))                                           \
                                        continue;                                                  \
                                init(&_e[_i]);                                                     \
                                _e[_i].key = (char *) _k;                                          \
                                _e[_i].value = (char *) json_string_value(_v);                     \
                                _p[_i] = &_e[_i];                                                  \
                                _i++;                                                              \
                        }                                                                          \
                *(ret_n) = _i;                                                                     \
                _p;                                                                                \
        })

/* Dapr's bulk envelope (pubsub.c) as TopicEventBulkRequest: each entry a CloudEvent or raw bytes. */
static int build_bulk(const TransportRequest *req, uint8_t **ret, size_t *ret_len) {
        _cleanup_(json_decrefp) json_t *env = json_loadb(req->body ?: "", req->body_len, 0, NULL);
        PB(TopicEventBulkRequest) br = DAPR__PROTO__RUNTIME__V1__TOPIC_EVENT_BULK_REQUEST__INIT;
        json_t *entries = json_object_get(env, "entries"), *e;
        size_t n = json_array_size(entries), i;
        int r = 0;

        if (!json_is_object(env) || !json_is_array(entries))
                return -EINVAL;
        PB(TopicEventBulkRequestEntry) *es = calloc(n ?: 1, sizeof *es), **ep = calloc(n ?: 1, sizeof *ep);
        PB(TopicEventCERequest) *ces = calloc(n ?: 1, sizeof *ces);
        char **bufs = calloc(n ?: 1, sizeof(char *));
        void **mds = calloc(n ?: 1, sizeof(void *));
        if (!es || !ep || !ces || !bufs || !mds)
                r = -ENOMEM;
        json_array_foreach(entries, i, e) {
                if (r < 0)
                        break;
                PB(TopicEventBulkRequestEntry) *x = &es[i];
                json_t *ev = json_object_get(e, "event");
                size_t len = 0;
                dapr__proto__runtime__v1__topic_event_bulk_request_entry__init(x);
                x->entry_id = (char *) json_str(e, "entryId");
                x->content_type = (char *) json_str(e, "contentType");
                mds[i] = MAP_FROM_JSON(PB(TopicEventBulkRequestEntry__MetadataEntry),
                                       dapr__proto__runtime__v1__topic_event_bulk_request_entry__metadata_entry__init,
                                       json_object_get(e, "metadata"), &x->n_metadata);
                x->metadata = mds[i];
                if (json_is_object(ev)) {
                        PB(TopicEventCERequest) *ce = &ces[i];
                        json_t *d = json_object_get(ev, "data");
                        dapr__proto__runtime__v1__topic_event_cerequest__init(ce);
                        ce->id = (char *) json_str(ev, "id");
                        ce->source = (char *) json_str(ev, "source");
                        ce->type = (char *) json_str(ev, "type");
                        ce->spec_version = (char *) json_str(ev, "specversion");
                        ce->data_content_type = (char *) json_str(ev, "datacontenttype");
                        if (json_is_string(d)) {
                                bufs[i] = strndup(json_string_value(d), json_string_length(d));
                                len = json_string_length(d);
                        } else if (d && !json_is_null(d)) {
                                bufs[i] = json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
                                len = bufs[i] ? strlen(bufs[i]) : 0;
                        } else
                                bufs[i] = strdup("");
                        ce->data = (ProtobufCBinaryData){ len, (uint8_t *) bufs[i] };
                        x->event_case = DAPR__PROTO__RUNTIME__V1__TOPIC_EVENT_BULK_REQUEST_ENTRY__EVENT_CLOUD_EVENT;
                        x->cloud_event = ce;
                } else if (json_is_string(ev)) { /* rawPayload: the stored bytes, base64 */
                        if (base64_decode(json_string_value(ev), json_string_length(ev), &bufs[i], &len) < 0)
                                r = -EINVAL;
                        x->event_case = DAPR__PROTO__RUNTIME__V1__TOPIC_EVENT_BULK_REQUEST_ENTRY__EVENT_BYTES;
                        x->bytes = (ProtobufCBinaryData){ len, (uint8_t *) bufs[i] };
                }
                if (r >= 0 && (!bufs[i] || !mds[i]))
                        r = -ENOMEM;
                ep[i] = x;
        }
        if (r >= 0) {
                br.id = (char *) json_str(env, "id");
                br.type = (char *) json_str(env, "type");
                br.topic = (char *) json_str(env, "topic");
                br.pubsub_name = (char *) json_str(env, "pubsubname");
                br.path = (char *) (streq(req->target, "/") ? "" : req->target);
                br.metadata = MAP_FROM_JSON(PB(TopicEventBulkRequest__MetadataEntry),
                                            dapr__proto__runtime__v1__topic_event_bulk_request__metadata_entry__init,
                                            json_object_get(env, "metadata"), &br.n_metadata);
                br.n_entries = n;
                br.entries = ep;
                r = br.metadata ? pack_framed(&br.base, ret, ret_len) : -ENOMEM;
                free(br.metadata);
        }
        for (i = 0; i < n && bufs && mds; i++) {
                free(bufs[i]);
                free(mds[i]);
        }
        free(es);
        free(ep);
        free(ces);
        free(bufs);
        free(mds);
        return r;
}

/* An input binding's event: the body as data, the headers (but the transport's own) as metadata. */
static int build_binding_event(const TransportRequest *req, uint8_t **ret, size_t *ret_len) {
        PB(BindingEventRequest) be = DAPR__PROTO__RUNTIME__V1__BINDING_EVENT_REQUEST__INIT;
        size_t n = 0, max = strv_length(req->headers) / 2;
        _cleanup_free_ PB(BindingEventRequest__MetadataEntry) *md = calloc(max ?: 1, sizeof *md);
        _cleanup_free_ PB(BindingEventRequest__MetadataEntry) **mdp = calloc(max ?: 1, sizeof *mdp);

        if (!md || !mdp)
                return -ENOMEM;
        if (!req->name)
                return -EINVAL;
        for (char *const *p = req->headers; p && p[0] && p[1]; p += 2) {
                if (strcasecmp(p[0], "user-agent") == 0 || strcasecmp(p[0], "content-type") == 0)
                        continue;
                dapr__proto__runtime__v1__binding_event_request__metadata_entry__init(&md[n]);
                md[n].key = p[0];
                md[n].value = p[1];
                mdp[n] = &md[n];
                n++;
        }
        be.name = (char *) req->name;
        be.data = (ProtobufCBinaryData){ req->body_len, (uint8_t *) req->body };
        be.n_metadata = n;
        be.metadata = mdp;
        return pack_framed(&be.base, ret, ret_len);
}

static int build_empty(uint8_t **ret, size_t *ret_len) {
        Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
        return pack_framed(&e.base, ret, ret_len);
}

int grpc_app_call_start(GrpcChannel *g, const TransportAddress *addr, const TransportRequest *req,
                        const TransportHandler *h, void *userdata, TransportCall *tc, GrpcAppFinishedFn finished,
                        GrpcAppCall **ret) {
        _cleanup_free_ uint8_t *body = NULL;
        _cleanup_strv_free_ char **md = NULL;
        size_t len = 0;
        const char *path;
        int r;

        switch (req->purpose) {
        case TRANSPORT_PURPOSE_INVOKE:
                path = SVC "AppCallback/OnInvoke";
                r = build_invoke(req, &body, &len);
                if (r >= 0)
                        r = metadata_from_headers(req->headers, &md);
                break;
        case TRANSPORT_PURPOSE_DELIVERY:
                path = SVC "AppCallback/OnTopicEvent";
                r = build_delivery(req, &body, &len);
                break;
        case TRANSPORT_PURPOSE_SUBSCRIPTIONS:
                path = SVC "AppCallback/ListTopicSubscriptions";
                r = build_empty(&body, &len);
                break;
        case TRANSPORT_PURPOSE_PROBE:
                path = SVC "AppCallbackHealthCheck/HealthCheck";
                r = build_empty(&body, &len);
                break;
        case TRANSPORT_PURPOSE_BULK_DELIVERY:
                path = SVC "AppCallbackAlpha/OnBulkTopicEventAlpha1";
                r = build_bulk(req, &body, &len);
                break;
        case TRANSPORT_PURPOSE_BINDING_PROBE:
                path = SVC "AppCallback/ListInputBindings";
                r = req->name ? build_empty(&body, &len) : -EINVAL;
                break;
        case TRANSPORT_PURPOSE_BINDING_EVENT:
                path = SVC "AppCallback/OnBindingEvent";
                r = build_binding_event(req, &body, &len);
                break;
        default:
                return -EINVAL;
        }
        if (r < 0)
                return r;

        GrpcAppCall *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        *c = (GrpcAppCall){ .tc = tc, .h = h, .userdata = userdata, .finished = finished, .purpose = req->purpose };
        if (req->name && !(c->name = strdup(req->name))) {
                free(c);
                return -ENOMEM;
        }
        grpc_decoder_init(&c->dec, req->max_answer ?: STREAMED_ANSWER_MAX);
        if (sd_event_add_defer(grpc_channel_event(g), &c->later, on_later, c) < 0) {
                call_free(c);
                return -ENOMEM;
        }
        (void) sd_event_source_set_enabled(c->later, SD_EVENT_OFF);
        r = grpc_channel_open(g, addr, path, md, req->timeout_usec, &stream_handler, c, &c->stream);
        if (r >= 0)
                r = grpc_stream_send(c->stream, body, len);
        if (r == -EPIPE)
                r = 0; /* the stream failed already: its done tells */
        if (r < 0) {
                call_free(c);
                return r;
        }
        grpc_stream_close_send(c->stream);
        *ret = c;
        return 0;
}

void grpc_app_call_abort(GrpcAppCall *c, int error) {
        call_error(c, error, false, "%s", error == -ECANCELED ? "mooringd is stopping" : strerror(-error));
}

void grpc_app_call_cancel(GrpcAppCall *c) {
        call_free(c);
}
