/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes core/cloudevent.c. The input's first line is a content type, the
 * rest the published body. cloudevent_build() runs twice (plain, and with
 * overrides, a TTL and no trace context, the first line doubling as every
 * override value); each result must be one valid JSON object of the length
 * returned, with the topic and pubsub set, and a data_base64 must decode to
 * the body. A failure must be -EINVAL with a message. The body also goes
 * through cloudevent_parse(), cloudevent_expired() and cloudevent_wrap_raw(),
 * and the first line through the RFC 3339 parser, whose result must format
 * and parse back to itself.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/cloudevent.h"
#include "fuzz.h"
#include "util/base64.h"
#include "util/cleanup.h"

#define NOW 1714566896123456ULL

static void check_event(const char *text, size_t len, const void *body, size_t body_len, bool envelope) {
        json_t *j, *b64;

        if (!text || strlen(text) != len)
                abort();
        j = cloudevent_parse(text, len);
        if (!j || !json_is_string(json_object_get(j, "topic")) || !json_is_string(json_object_get(j, "pubsubname")))
                abort();
        if (!streq(json_string_value(json_object_get(j, "topic")), "topic/a"))
                abort();
        b64 = json_object_get(j, "data_base64");
        if (envelope) {
                if (!json_object_get(j, "id") || !!b64 == !!json_object_get(j, "data"))
                        abort(); /* exactly one of data and data_base64 */
                if (b64) {
                        char *d = NULL;
                        size_t n = 0;
                        if (base64_decode(json_string_value(b64), json_string_length(b64), &d, &n) < 0 ||
                            n != body_len || (n > 0 && memcmp(d, body, n) != 0))
                                abort();
                        free(d);
                }
        }
        (void) cloudevent_expired(j, NOW);
        json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *in = (const char *) data;
        char *ct = NULL, *out = NULL, *err = NULL;
        const char *body;
        size_t k = 0, body_len, len = 0;
        int r;

        if (size > 256 * 1024)
                return 0;
        while (k < size && in[k] != '\n')
                k++;
        ct = strndup(in, k); /* stops at a NUL too */
        if (!ct)
                return 0;
        body = k < size ? in + k + 1 : "";
        body_len = k < size ? size - k - 1 : 0;

        for (int pass = 0; pass < 2; pass++) {
                char *overrides[] = { "cloudevent.id", ct, "SOURCE", ct, "type", ct, "traceid", ct, "tracestate", ct, NULL };
                CloudEventInput ce = {
                        .topic = "topic/a", .pubsub = "pubsub", .source = pass ? NULL : "app",
                        .content_type = ct, .data = body, .len = body_len,
                        .traceparent = pass ? NULL : "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                        .tracestate = pass ? NULL : "k=v", .ttl_sec = pass ? (int64_t) size * 1000000000 : 0,
                        .overrides = pass ? overrides : NULL, .now_realtime_usec = pass ? 0 : NOW,
                };
                r = cloudevent_build(&ce, &out, &len, &err);
                if (r >= 0) {
                        if (err)
                                abort();
                        check_event(out, len, body, body_len, !cloudevent_is_content_type(ct));
                        free(out);
                        out = NULL;
                } else {
                        if (out || (r == -EINVAL && !err) || (r != -EINVAL && r != -ENOMEM))
                                abort();
                        free(err);
                        err = NULL;
                }
        }

        json_t *j = cloudevent_parse(body, body_len);
        if (j && !json_is_object(j))
                abort();
        (void) cloudevent_expired(j, NOW);
        (void) cloudevent_expired(j, 0);
        json_decref(j);

        if (cloudevent_wrap_raw("topic/a", "pubsub", body, body_len, &out, &len) < 0)
                abort();
        check_event(out, len, body, body_len, true);
        free(out);

        int64_t t, t2;
        if (cloudevent_parse_time(ct, &t) >= 0 && t >= 0) {
                char buf[CLOUDEVENT_TIME_MAX];
                cloudevent_format_time((uint64_t) t, buf);
                if (cloudevent_parse_time(buf, &t2) < 0 || t2 != t)
                        abort();
        }
        free(ct);
        return 0;
}
