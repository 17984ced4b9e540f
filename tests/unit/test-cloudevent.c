/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for core/cloudevent.c (Dapr's envelope for JSON, text, binary and
 * non-UTF-8 bodies, the application/cloudevents+json passthrough, overrides,
 * expiration, raw wrapping, parsing, RFC 3339 times, ids) and the shared
 * base64 code in util/base64.c, including its use by http/invoke-url.c.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cloudevent.h"
#include "http/invoke-url.h"
#include "util/base64.h"
#include "util/strv.h"
#include "tests.h"

/* 2024-05-01T12:34:56.123456Z */
#define NOW 1714566896123456ULL
#define TRACEPARENT "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

/*
 * An envelope's bytes are jansson's compact, key-sorted form (what mooring wrote before it generated
 * envelopes with yajl): the attributes exactly, and the data member too unless it is the spliced
 * JSON body, which keeps its own text.
 */
static void check_jansson_form(const char *text, size_t len, json_t *j) {
        _cleanup_(json_decrefp) json_t *attrs = json_deep_copy(j);
        json_t *data = json_object_get(j, "data"), *b64 = json_object_get(j, "data_base64");
        _cleanup_free_ char *a = NULL, *d = NULL;

        ASSERT_NOT_NULL(attrs);
        json_object_del(attrs, "data");
        json_object_del(attrs, "data_base64");
        a = json_dumps(attrs, JSON_COMPACT | JSON_SORT_KEYS);
        ASSERT_NOT_NULL(a);
        /* the text ends with the attributes as jansson writes them */
        ASSERT_TRUE(len > strlen(a) && text[len - strlen(a)] == ',' && memcmp(text + len - strlen(a) + 1, a + 1,
                                                                              strlen(a) - 1) == 0);
        if (b64 || json_is_string(data)) {
                d = json_dumps(b64 ?: data, JSON_COMPACT | JSON_ENCODE_ANY);
                ASSERT_NOT_NULL(d);
                const char *key = b64 ? "{\"data_base64\":" : "{\"data\":";
                ASSERT_EQ(len, strlen(key) + strlen(d) + strlen(a) - 1 + 1);
                ASSERT_TRUE(strneq(text, key, strlen(key)));
                ASSERT_TRUE(memcmp(text + strlen(key), d, strlen(d)) == 0);
        } else
                ASSERT_TRUE(strneq(text, "{\"data\":", strlen("{\"data\":")));
}

static json_t *build(const CloudEventInput *in, char **ret_text) {
        char *text = NULL, *err = NULL;
        size_t len = 0;
        json_t *j;
        int r;

        r = cloudevent_build(in, &text, &len, &err);
        if (r < 0)
                fprintf(stderr, "  error: %s\n", strna(err));
        ASSERT_OK(r);
        ASSERT_NULL(err);
        ASSERT_NOT_NULL(text);
        ASSERT_EQ(len, strlen(text));
        j = json_loadb(text, len, JSON_ALLOW_NUL, NULL);
        if (!j)
                fprintf(stderr, "  not JSON: %s\n", text);
        ASSERT_TRUE(json_is_object(j));
        if (!cloudevent_is_content_type(in->content_type))
                check_jansson_form(text, len, j);
        if (ret_text)
                *ret_text = text;
        else
                free(text);
        return j;
}

static const char *str(json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

static bool is_uuid4(const char *s) {
        if (!s || strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return false;
                } else if (!strchr("0123456789abcdef", s[i]))
                        return false;
        }
        return s[14] == '4' && strchr("89ab", s[19]);
}

static void build_fail(const CloudEventInput *in, const char *needle) {
        char *text = NULL, *err = NULL;
        size_t len = 0;

        ASSERT_ERROR(cloudevent_build(in, &text, &len, &err), EINVAL);
        ASSERT_NULL(text);
        ASSERT_NOT_NULL(err);
        fprintf(stderr, "  expected error: %s\n", err);
        if (!strstr(err, needle)) {
                fprintf(stderr, "message \"%s\" does not contain \"%s\"\n", err, needle);
                ASSERT_TRUE(false);
        }
        free(err);
}

TEST(envelope_json) {
        static const char body[] = "  {\"b\": [0.1, 2], \"a\": 1, \"n\": 12345678901234567890.5}\n";
        CloudEventInput in = {
                .topic = "orders", .pubsub = "pubsub", .source = "checkout", .content_type = "application/json",
                .data = body, .len = strlen(body), .traceparent = TRACEPARENT, .tracestate = "k=v",
                .now_realtime_usec = NOW,
        };
        _cleanup_free_ char *text = NULL;
        json_t *j = build(&in, &text), *d;

        ASSERT_TRUE(is_uuid4(str(j, "id")));
        ASSERT_STREQ(str(j, "specversion"), "1.0");
        ASSERT_STREQ(str(j, "datacontenttype"), "application/json");
        ASSERT_STREQ(str(j, "source"), "checkout");
        ASSERT_STREQ(str(j, "type"), "com.dapr.event.sent");
        ASSERT_STREQ(str(j, "topic"), "orders");
        ASSERT_STREQ(str(j, "pubsubname"), "pubsub");
        ASSERT_STREQ(str(j, "traceid"), TRACEPARENT);
        ASSERT_STREQ(str(j, "traceparent"), TRACEPARENT);
        ASSERT_STREQ(str(j, "tracestate"), "k=v");
        ASSERT_STREQ(str(j, "time"), "2024-05-01T12:34:56.123456Z");
        ASSERT_NULL(json_object_get(j, "expiration"));
        ASSERT_NULL(json_object_get(j, "data_base64"));
        d = json_object_get(j, "data");
        ASSERT_TRUE(json_is_object(d));
        ASSERT_EQ(json_integer_value(json_object_get(d, "a")), 1);
        ASSERT_EQ(json_array_size(json_object_get(d, "b")), 2);
        ASSERT_EQ(json_object_size(j), 12);
        /* The body's own text, numbers as written; the rest sorted. */
        ASSERT_TRUE(strneq(text, "{\"data\":{\"b\": [0.1, 2], \"a\": 1, \"n\": 12345678901234567890.5},"
                                 "\"datacontenttype\":",
                           strlen("{\"data\":{\"b\": [0.1, 2], \"a\": 1, \"n\": 12345678901234567890.5},"
                                  "\"datacontenttype\":")));
        json_decref(j);
}

TEST(envelope_json_variants) {
        struct {
                const char *ct, *body;
                const char *data_json; /* expected data, as JSON text */
        } cases[] = {
                { "application/json; charset=utf-8", "[1,2]", "[1,2]" },
                { "APPLICATION/JSON", " 42 ", "42" },
                { "application/json", "\"s\"", "\"s\"" },
                { "application/json", "null", "null" },
                { "application/json", "{\"a\":\"\\u0000\"}", "{\"a\":\"\\u0000\"}" },
                { "application/json", "not json", "\"not json\"" },
                { "application/json", "{\"a\":1} trailing", "\"{\\\"a\\\":1} trailing\"" },
                { "application/json", "", "\"\"" },
                { "application/jsonx", "{}", "\"{}\"" },
                { "text/json", "{}", "\"{}\"" },
                { "application/xml", "<a/>", "\"<a/>\"" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                CloudEventInput in = {
                        .topic = "t", .pubsub = "p", .content_type = cases[i].ct, .data = cases[i].body,
                        .len = strlen(cases[i].body), .now_realtime_usec = NOW,
                };
                json_t *j = build(&in, NULL);
                json_t *want = json_loads(cases[i].data_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

                fprintf(stderr, "  case %zu: %s %s\n", i, cases[i].ct, cases[i].body);
                ASSERT_NOT_NULL(want);
                ASSERT_TRUE(json_equal(json_object_get(j, "data"), want));
                ASSERT_NULL(json_object_get(j, "data_base64"));
                ASSERT_STREQ(str(j, "datacontenttype"), cases[i].ct);
                json_decref(want);
                json_decref(j);
        }
}

TEST(envelope_text_defaults) {
        static const char body[] = "hello\0world";
        CloudEventInput in = {
                .topic = "a/b", .pubsub = "p", .data = body, .len = sizeof body - 1, .now_realtime_usec = NOW,
        };
        json_t *j = build(&in, NULL), *d;

        ASSERT_STREQ(str(j, "datacontenttype"), "text/plain");
        ASSERT_STREQ(str(j, "source"), "Dapr");
        ASSERT_STREQ(str(j, "topic"), "a/b");
        ASSERT_NULL(json_object_get(j, "traceid"));
        ASSERT_NULL(json_object_get(j, "traceparent"));
        ASSERT_STREQ(str(j, "tracestate"), "");
        d = json_object_get(j, "data");
        ASSERT_EQ(json_string_length(d), sizeof body - 1);
        ASSERT_TRUE(memcmp(json_string_value(d), body, sizeof body - 1) == 0);
        json_decref(j);

        /* An empty content type is the same as none; no body is "". */
        in = (CloudEventInput){ .topic = "t", .pubsub = "p", .content_type = "", .now_realtime_usec = NOW };
        j = build(&in, NULL);
        ASSERT_STREQ(str(j, "datacontenttype"), "text/plain");
        ASSERT_STREQ(str(j, "data"), "");
        json_decref(j);
}

TEST(envelope_binary) {
        static const char body[] = "\x00\x01\xfe\xff";
        CloudEventInput in = {
                .topic = "t", .pubsub = "p", .content_type = "application/octet-stream", .data = body, .len = 4,
                .now_realtime_usec = NOW,
        };
        json_t *j = build(&in, NULL);

        ASSERT_STREQ(str(j, "data_base64"), "AAH+/w==");
        ASSERT_NULL(json_object_get(j, "data"));
        ASSERT_STREQ(str(j, "datacontenttype"), "application/octet-stream");
        json_decref(j);

        /* Valid UTF-8 is still base64 for octet-stream. */
        in.data = "hi";
        in.len = 2;
        in.content_type = "Application/Octet-Stream; x=y";
        j = build(&in, NULL);
        ASSERT_STREQ(str(j, "data_base64"), "aGk=");
        json_decref(j);
}

TEST(envelope_invalid_utf8) {
        static const char *const bodies[] = {
                "\xff\xfe", "a\xc3", "\xc0\xaf" /* overlong */, "\xed\xa0\x80" /* surrogate */,
                "\xf4\x90\x80\x80" /* > U+10FFFF */,
        };
        static const char *const b64[] = { "//4=", "YcM=", "wK8=", "7aCA", "9JCAgA==" };

        for (size_t i = 0; i < ELEMENTSOF(bodies); i++)
                for (int json = 0; json < 2; json++) {
                        CloudEventInput in = {
                                .topic = "t", .pubsub = "p", .content_type = json ? "application/json" : "text/plain",
                                .data = bodies[i], .len = strlen(bodies[i]), .now_realtime_usec = NOW,
                        };
                        json_t *j = build(&in, NULL);
                        ASSERT_STREQ(str(j, "data_base64"), b64[i]);
                        ASSERT_NULL(json_object_get(j, "data"));
                        json_decref(j);
                }

        /* A raw NUL is not JSON (jansson alone would let "[1\0]" pass): the body is a string. */
        {
                CloudEventInput in = {
                        .topic = "t", .pubsub = "p", .content_type = "application/json", .data = "[1\0]", .len = 4,
                        .now_realtime_usec = NOW,
                };
                json_t *j = build(&in, NULL), *d = json_object_get(j, "data");
                ASSERT_EQ(json_string_length(d), 4);
                ASSERT_TRUE(memcmp(json_string_value(d), "[1\0]", 4) == 0);
                json_decref(j);
        }

        /* Valid multi-byte UTF-8 stays text. */
        CloudEventInput in = {
                .topic = "t", .pubsub = "p", .data = "h\xc3\xa9 \xf0\x9f\x98\x80", .len = 8, .now_realtime_usec = NOW,
        };
        json_t *j = build(&in, NULL);
        ASSERT_STREQ(str(j, "data"), "h\xc3\xa9 \xf0\x9f\x98\x80");
        json_decref(j);
}

TEST(envelope_overrides) {
        char *overrides[] = {
                "cloudevent.ID", "my-id",  "Source",     "other-app", "cloudevent.type", "order.created",
                "TRACEPARENT",   "tp-x",   "tracestate", "a=b",       "unknown",         "x",
                "id",            "second", "source",     "",          NULL,
        };
        CloudEventInput in = {
                .topic = "t", .pubsub = "p", .source = "app", .data = "x", .len = 1, .traceparent = TRACEPARENT,
                .tracestate = "k=v", .overrides = overrides, .now_realtime_usec = NOW,
        };
        json_t *j = build(&in, NULL);

        ASSERT_STREQ(str(j, "id"), "my-id");
        ASSERT_STREQ(str(j, "source"), "other-app");
        ASSERT_STREQ(str(j, "type"), "order.created");
        ASSERT_STREQ(str(j, "traceparent"), "tp-x");
        ASSERT_STREQ(str(j, "traceid"), "tp-x");
        ASSERT_STREQ(str(j, "tracestate"), "a=b");
        ASSERT_NULL(json_object_get(j, "unknown"));
        json_decref(j);

        /* traceid is an alias; empty values do not override. */
        char *o2[] = { "cloudevent.traceid", "tid", "id", "", NULL };
        in.overrides = o2;
        j = build(&in, NULL);
        ASSERT_STREQ(str(j, "traceparent"), "tid");
        ASSERT_TRUE(is_uuid4(str(j, "id")));
        ASSERT_STREQ(str(j, "source"), "app");
        json_decref(j);

        /* An odd trailing name without a value is ignored. */
        char *o3[] = { "id", NULL };
        in.overrides = o3;
        j = build(&in, NULL);
        ASSERT_TRUE(is_uuid4(str(j, "id")));
        json_decref(j);
}

/* Every byte that needs escaping, in attributes and in text data, comes out as jansson wrote it. */
TEST(envelope_escapes) {
        static const char odd[] = "q\"b\\s/ \x01\x1f\x7f \b\f\n\r\t \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
        char *overrides[] = { "source", (char *) odd, "type", (char *) odd, "id", (char *) odd, NULL };
        static const char text_body[] = "a\0b\"c\\\x02\xe2\x80\xa8z";
        const char *cts[] = { "text/plain", "application/json", "application/octet-stream", "text/x\"y" };
        CloudEventInput in = {
                .topic = "t/\"1\"", .pubsub = "p\\", .data = text_body, .len = sizeof text_body - 1,
                .traceparent = TRACEPARENT, .tracestate = odd, .overrides = overrides, .ttl_sec = 60,
                .now_realtime_usec = NOW,
        };

        for (size_t i = 0; i < ELEMENTSOF(cts); i++) {
                in.content_type = cts[i];
                json_t *j = build(&in, NULL); /* build() compares the bytes with jansson's */
                ASSERT_STREQ(str(j, "source"), odd);
                ASSERT_STREQ(str(j, "tracestate"), odd);
                ASSERT_STREQ(str(j, "topic"), "t/\"1\"");
                json_decref(j);
        }
        /* and a JSON body is spliced as written, the attributes still escaped alike */
        static const char json_body[] = " [\"\\u0041\\/\", 1e2] ";
        in.content_type = "application/json";
        in.data = json_body;
        in.len = strlen(json_body);
        _cleanup_free_ char *text = NULL;
        json_t *j = build(&in, &text);
        ASSERT_TRUE(strneq(text, "{\"data\":[\"\\u0041\\/\", 1e2],", strlen("{\"data\":[\"\\u0041\\/\", 1e2],")));
        json_decref(j);
}

TEST(envelope_expiration) {
        CloudEventInput in = {
                .topic = "t", .pubsub = "p", .data = "x", .len = 1, .ttl_sec = 10, .now_realtime_usec = NOW,
        };
        json_t *j = build(&in, NULL);

        ASSERT_STREQ(str(j, "expiration"), "2024-05-01T12:35:06.123456Z");
        ASSERT_TRUE(!cloudevent_expired(j, NOW));
        ASSERT_TRUE(!cloudevent_expired(j, NOW + 10000000));
        ASSERT_TRUE(cloudevent_expired(j, NOW + 10000001));
        json_decref(j);

        /* Far beyond year 9999: clamped to the last writable instant. */
        in.ttl_sec = INT64_MAX;
        j = build(&in, NULL);
        ASSERT_STREQ(str(j, "expiration"), "9999-12-31T23:59:59.999999Z");
        ASSERT_TRUE(!cloudevent_expired(j, NOW));
        json_decref(j);

        in.ttl_sec = -5; /* not > 0: no expiration */
        j = build(&in, NULL);
        ASSERT_NULL(json_object_get(j, "expiration"));
        json_decref(j);
}

TEST(envelope_real_clock) {
        CloudEventInput in = { .topic = "t", .pubsub = "p" };
        json_t *j = build(&in, NULL);
        int64_t t = 0;

        ASSERT_OK(cloudevent_parse_time(str(j, "time"), &t));
        ASSERT_TRUE(t > (int64_t) NOW); /* this test was written after that */
        json_decref(j);
}

TEST(envelope_bad_utf8_fields) {
        CloudEventInput in = { .topic = "t\xff", .pubsub = "p", .now_realtime_usec = NOW };

        build_fail(&in, "'topic'");
        in.topic = "t";
        in.pubsub = "\xc3";
        build_fail(&in, "'pubsubname'");
        in.pubsub = "p";
        in.source = "\x80";
        build_fail(&in, "'source'");
        in.source = NULL;
        in.content_type = "text/\xff";
        build_fail(&in, "'datacontenttype'");
        in.content_type = NULL;
        in.traceparent = "\xff";
        build_fail(&in, "'traceid'");
        in.traceparent = NULL;
        char *o[] = { "type", "\xfe", NULL };
        in.overrides = o;
        build_fail(&in, "'type'");
        /* Passthrough too. */
        in.overrides = NULL;
        in.content_type = "application/cloudevents+json";
        in.data = "{\"id\":\"1\"}";
        in.len = strlen(in.data);
        in.tracestate = "\xff";
        build_fail(&in, "'tracestate'");
}

TEST(passthrough) {
        static const char body[] =
                "{\"id\":\"abc\",\"specversion\":\"1.0\",\"source\":\"me\",\"type\":\"my.type\",\"topic\":\"old\","
                "\"pubsubname\":\"old\",\"data\":{\"x\":1},\"custom\":true,\"datacontenttype\":\"application/json\"}";
        CloudEventInput in = {
                .topic = "orders", .pubsub = "pubsub", .source = "app", .content_type = "application/cloudevents+json",
                .data = body, .len = strlen(body), .traceparent = TRACEPARENT, .tracestate = "k=v",
                .now_realtime_usec = NOW,
        };
        char *ov[] = { "id", "override-ignored", NULL };
        json_t *j, *d;

        in.overrides = ov; /* not applied to a passthrough event, as in Dapr */
        j = build(&in, NULL);
        ASSERT_STREQ(str(j, "id"), "abc");
        ASSERT_STREQ(str(j, "source"), "me");
        ASSERT_STREQ(str(j, "type"), "my.type");
        ASSERT_STREQ(str(j, "specversion"), "1.0");
        ASSERT_STREQ(str(j, "topic"), "orders");
        ASSERT_STREQ(str(j, "pubsubname"), "pubsub");
        ASSERT_STREQ(str(j, "datacontenttype"), "application/json");
        ASSERT_STREQ(str(j, "time"), "2024-05-01T12:34:56.123456Z");
        ASSERT_STREQ(str(j, "traceid"), TRACEPARENT);
        ASSERT_STREQ(str(j, "traceparent"), TRACEPARENT);
        ASSERT_STREQ(str(j, "tracestate"), "k=v");
        d = json_object_get(j, "data");
        ASSERT_EQ(json_integer_value(json_object_get(d, "x")), 1);
        ASSERT_TRUE(json_is_true(json_object_get(j, "custom")));
        ASSERT_NULL(json_object_get(j, "expiration"));
        json_decref(j);
}

TEST(passthrough_fills_and_keeps) {
        /* Minimal event: an id only; source/type/specversion filled (also over null), as Dapr does. */
        static const char minimal[] = "{\"id\":\"1\",\"data\":\"x\",\"source\":null}";
        CloudEventInput in = {
                .topic = "t", .pubsub = "p", .source = "app", .content_type = "Application/CloudEvents+JSON; charset=utf-8",
                .data = minimal, .len = strlen(minimal), .now_realtime_usec = NOW, .ttl_sec = 60,
        };
        json_t *j = build(&in, NULL);

        ASSERT_STREQ(str(j, "id"), "1");
        ASSERT_STREQ(str(j, "source"), "Dapr");
        ASSERT_STREQ(str(j, "type"), "com.dapr.event.sent");
        ASSERT_STREQ(str(j, "specversion"), "1.0");
        ASSERT_STREQ(str(j, "time"), "2024-05-01T12:34:56.123456Z");
        ASSERT_NULL(json_object_get(j, "traceid")); /* no traceparent to add */
        ASSERT_STREQ(str(j, "tracestate"), "");
        ASSERT_STREQ(str(j, "expiration"), "2024-05-01T12:35:56.123456Z");
        ASSERT_STREQ(str(j, "data"), "x");
        json_decref(j);

        /* Present time, traceid and tracestate are kept (traceparent too: it goes with traceid). */
        static const char traced[] =
                "{\"id\":\"1\",\"time\":\"2020-01-01T00:00:00Z\",\"traceid\":\"mine\",\"tracestate\":\"s=1\",\"type\":null,"
                "\"expiration\":\"2000-01-01T00:00:00Z\"}";
        in.data = traced;
        in.len = strlen(traced);
        in.traceparent = TRACEPARENT;
        in.tracestate = "k=v";
        j = build(&in, NULL);
        ASSERT_STREQ(str(j, "time"), "2020-01-01T00:00:00Z");
        ASSERT_STREQ(str(j, "traceid"), "mine");
        ASSERT_NULL(json_object_get(j, "traceparent"));
        ASSERT_STREQ(str(j, "tracestate"), "s=1");
        ASSERT_STREQ(str(j, "type"), "com.dapr.event.sent");
        /* The TTL replaces an expiration given in the event. */
        ASSERT_STREQ(str(j, "expiration"), "2024-05-01T12:35:56.123456Z");
        json_decref(j);

        /* Without traceid, both trace fields are set even when traceparent was given. */
        static const char tp_only[] = "{\"id\":\"1\",\"traceparent\":\"theirs\"}";
        in.data = tp_only;
        in.len = strlen(tp_only);
        j = build(&in, NULL);
        ASSERT_STREQ(str(j, "traceid"), TRACEPARENT);
        ASSERT_STREQ(str(j, "traceparent"), TRACEPARENT);
        json_decref(j);
}

TEST(passthrough_invalid) {
        static const char *const bodies[] = { "[1,2]", "\"s\"", "42", "null", "", "{\"a\":", "{} x", "\xff" };
        static const char *const needles[] = {
                "not a JSON object", "not a JSON object", "not a JSON object", "not a JSON object",
                "not valid JSON",    "not valid JSON",    "not valid JSON",    "not valid JSON",
        };

        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                CloudEventInput in = {
                        .topic = "t", .pubsub = "p", .content_type = "application/cloudevents+json",
                        .data = bodies[i], .len = strlen(bodies[i]), .now_realtime_usec = NOW,
                };
                build_fail(&in, needles[i]);
        }
        {
                CloudEventInput in = {
                        .topic = "t", .pubsub = "p", .content_type = "application/cloudevents+json",
                        .data = "{\"a\":1\0}", .len = 8,
                };
                build_fail(&in, "not valid JSON: NUL byte at offset 6");
        }
        /* reterr may be NULL. */
        CloudEventInput in = { .topic = "t", .pubsub = "p", .content_type = CLOUDEVENT_CONTENT_TYPE, .data = "1", .len = 1 };
        char *text = NULL;
        size_t len = 0;
        ASSERT_ERROR(cloudevent_build(&in, &text, &len, NULL), EINVAL);
}

/* Issue 10 finding 7: events daprd would store and no CloudEvents consumer can read. */
TEST(passthrough_validation) {
        static const struct {
                const char *body, *needle;
        } bad[] = {
                { "{}", "no 'id'" },
                { "{\"id\":null}", "no 'id'" },
                { "{\"id\":42}", "'id' must be a non-empty string" },
                { "{\"id\":\"\"}", "'id' must be a non-empty string" },
                { "{\"id\":\"  \"}", "'id' must be a non-empty string" },
                { "{\"id\":\"1\",\"specversion\":\"2.0\"}", "'specversion' must be \"1.0\"" },
                { "{\"id\":\"1\",\"specversion\":1.0}", "'specversion' must be \"1.0\"" },
                { "{\"id\":\"1\",\"type\":\"\"}", "'type' must be a non-empty string" },
                { "{\"id\":\"1\",\"type\":[\"a\"]}", "'type' must be a non-empty string" },
                { "{\"id\":\"1\",\"subject\":\"\"}", "'subject' must be a non-empty string" },
                { "{\"id\":\"1\",\"source\":\"\"}", "'source' must be a non-empty URI-reference" },
                { "{\"id\":\"1\",\"source\":\"a b\"}", "'source' must be a non-empty URI-reference" },
                { "{\"id\":\"1\",\"source\":7}", "'source' must be a non-empty URI-reference" },
                { "{\"id\":\"1\",\"dataschema\":\"/relative\"}", "'dataschema' must be an absolute URI" },
                { "{\"id\":\"1\",\"datacontenttype\":\"json\"}", "'datacontenttype' must be a media type" },
                { "{\"id\":\"1\",\"datacontenttype\":\"text/\"}", "'datacontenttype' must be a media type" },
                { "{\"id\":\"1\",\"datacontenttype\":5}", "'datacontenttype' must be a media type" },
                { "{\"id\":\"1\",\"time\":\"yesterday\"}", "'time' must be an RFC 3339 timestamp" },
                { "{\"id\":\"1\",\"time\":\"2024-02-30T00:00:00Z\"}", "'time' must be an RFC 3339" },
                { "{\"id\":\"1\",\"time\":1714566896}", "'time' must be an RFC 3339 timestamp" },
                { "{\"id\":\"1\",\"data_base64\":\"!!!!\"}", "'data_base64' is not a base64 string" },
                { "{\"id\":\"1\",\"data_base64\":\"YWJj\"\"}", "not valid JSON" },
                { "{\"id\":\"1\",\"data_base64\":\"YWI\"}", "'data_base64' is not a base64 string" },
                { "{\"id\":\"1\",\"data_base64\":\"YW-_\"}", "'data_base64' is not a base64 string" },
                { "{\"id\":\"1\",\"data_base64\":\"YQ==YQ==\"}", "'data_base64' is not a base64 string" },
                { "{\"id\":\"1\",\"data_base64\":\"====\"}", "'data_base64' is not a base64 string" },
                { "{\"id\":\"1\",\"data_base64\":12}", "'data_base64' is not a base64 string" },
                { "{\"id\":\"1\",\"data\":1,\"data_base64\":\"YQ==\"}", "both 'data' and 'data_base64'" },
                { "{\"id\":\"1\",\"myExt\":\"x\"}", "'myExt' is not a CloudEvent attribute name" },
                { "{\"id\":\"1\",\"my_ext\":\"x\"}", "'my_ext' is not a CloudEvent attribute name" },
                { "{\"id\":\"1\",\"\":\"x\"}", "is not a CloudEvent attribute name" },
                { "{\"id\":\"1\",\"ext\":{\"a\":1}}", "'ext' must be a string, a boolean or an integer" },
                { "{\"id\":\"1\",\"ext\":[1]}", "'ext' must be a string, a boolean or an integer" },
                { "{\"id\":\"1\",\"ext\":1.5}", "'ext' must be a string, a boolean or an integer" },
                { "{\"id\":\"1\",\"ext\":2147483648}", "'ext' is an integer beyond 32 bits" },
                { "{\"id\":\"1\",\"ext\":-2147483649}", "'ext' is an integer beyond 32 bits" },
                { "{\"id\":\"1\",\"id\":\"2\"}", "duplicate object key" },
        };
        static const char *const good[] = {
                "{\"id\":\"1\"}",
                "{\"id\":\"1\",\"source\":null,\"type\":null,\"specversion\":null,\"subject\":null,\"time\":null}",
                "{\"id\":\"a\",\"source\":\"/x\",\"specversion\":\"1.0\",\"type\":\"t\",\"subject\":\"s\","
                "\"dataschema\":\"https://example.com/s.json\",\"datacontenttype\":\"text/plain; charset=utf-8\","
                "\"time\":\"2024-05-01T12:34:56.5+02:00\",\"data\":null}",
                "{\"id\":\"1\",\"data_base64\":\"\"}",
                "{\"id\":\"1\",\"data_base64\":\"YQ==\"}",
                "{\"id\":\"1\",\"data_base64\":\"YWJj\\r\\nZA==\"}",
                "{\"id\":\"1\",\"data\":{\"any\":[1.5,{\"x\":null}]},\"data_base64\":null}",
                "{\"id\":\"1\",\"ext1\":true,\"ext2\":-2147483648,\"ext3\":2147483647,\"ext4\":\"\",\"ext5\":null}",
                /* What Dapr's own envelope carries, so a received event can be published again. */
                /* In parentheses: clang's -Wstring-concatenation takes two pieces for a missing comma. */
                ("{\"id\":\"1\",\"topic\":\"t\",\"pubsubname\":\"p\",\"traceid\":\"x\",\"traceparent\":\"x\","
                 "\"tracestate\":\"\",\"expiration\":\"2024-05-01T12:34:56Z\"}"),
                "{\"id\":\"1\",\"averyveryverylongextensionname\":1}", /* > 20: a SHOULD only */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                CloudEventInput in = {
                        .topic = "t", .pubsub = "p", .content_type = CLOUDEVENT_CONTENT_TYPE,
                        .data = bad[i].body, .len = strlen(bad[i].body), .now_realtime_usec = NOW,
                };
                char *err = NULL;

                fprintf(stderr, "bad: %s\n", bad[i].body);
                build_fail(&in, bad[i].needle);
                ASSERT_ERROR(cloudevent_validate(bad[i].body, strlen(bad[i].body), &err), EINVAL);
                ASSERT_NOT_NULL(err);
                free(err);
                ASSERT_ERROR(cloudevent_validate(bad[i].body, strlen(bad[i].body), NULL), EINVAL);
        }
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                CloudEventInput in = {
                        .topic = "t", .pubsub = "p", .content_type = CLOUDEVENT_CONTENT_TYPE,
                        .data = good[i], .len = strlen(good[i]), .now_realtime_usec = NOW,
                };
                char *err = NULL;

                fputs(good[i], stderr);
                fputc('\n', stderr);
                ASSERT_OK(cloudevent_validate(good[i], strlen(good[i]), &err));
                ASSERT_NULL(err);
                json_decref(build(&in, NULL));
        }

        /* Only a passthrough body is checked: Dapr's envelope around the same text is fine. */
        CloudEventInput in = {
                .topic = "t", .pubsub = "p", .content_type = "application/json", .data = "{}", .len = 2,
                .now_realtime_usec = NOW,
        };
        json_decref(build(&in, NULL));
}

TEST(content_type) {
        ASSERT_TRUE(cloudevent_is_content_type("application/cloudevents+json"));
        ASSERT_TRUE(cloudevent_is_content_type(" Application/CloudEvents+Json ; charset=utf-8"));
        ASSERT_TRUE(!cloudevent_is_content_type("application/cloudevents-batch+json"));
        ASSERT_TRUE(!cloudevent_is_content_type("application/json"));
        ASSERT_TRUE(!cloudevent_is_content_type(""));
        ASSERT_TRUE(!cloudevent_is_content_type(NULL));
}

TEST(wrap_raw) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        json_t *j;

        ASSERT_OK(cloudevent_wrap_raw("orders", "pubsub", "\x00\xffraw", 5, &text, &len));
        ASSERT_EQ(len, strlen(text));
        j = json_loads(text, 0, NULL);
        ASSERT_NOT_NULL(j);
        ASSERT_TRUE(is_uuid4(str(j, "id")));
        ASSERT_STREQ(str(j, "specversion"), "1.0");
        ASSERT_STREQ(str(j, "datacontenttype"), "application/octet-stream");
        ASSERT_STREQ(str(j, "source"), "Dapr");
        ASSERT_STREQ(str(j, "type"), "com.dapr.event.sent");
        ASSERT_STREQ(str(j, "topic"), "orders");
        ASSERT_STREQ(str(j, "pubsubname"), "pubsub");
        ASSERT_STREQ(str(j, "data_base64"), "AP9yYXc=");
        ASSERT_EQ(json_object_size(j), 8);
        json_decref(j);
        free(TAKE_PTR(text));

        ASSERT_OK(cloudevent_wrap_raw("t", "p", NULL, 0, &text, &len));
        j = json_loads(text, 0, NULL);
        ASSERT_STREQ(str(j, "data_base64"), "");
        json_decref(j);

        char *t2 = NULL;
        ASSERT_ERROR(cloudevent_wrap_raw("t\xff", "p", "x", 1, &t2, &len), EINVAL);
        ASSERT_NULL(t2);
}

TEST(parse) {
        static const char ev[] = "{\"a\":\"x\\u0000y\"}";
        json_t *j = cloudevent_parse(ev, strlen(ev));
        ASSERT_NOT_NULL(j);
        ASSERT_EQ(json_string_length(json_object_get(j, "a")), 3);
        json_decref(j);

        ASSERT_NULL(cloudevent_parse("[1]", 3));
        ASSERT_NULL(cloudevent_parse("\"s\"", 3));
        ASSERT_NULL(cloudevent_parse("garbage", 7));
        ASSERT_NULL(cloudevent_parse("", 0));
        ASSERT_NULL(cloudevent_parse(NULL, 0));
        ASSERT_NULL(cloudevent_parse("{} {}", 5));
        ASSERT_NULL(cloudevent_parse("{\"a\":1\0}", 8));
}

TEST(expired) {
        static const struct {
                const char *event;
                bool expired;
        } cases[] = {
                { "{}", false },
                { "{\"expiration\":\"\"}", false },
                { "{\"expiration\":42}", false },
                { "{\"expiration\":null}", false },
                { "{\"expiration\":\"garbage\"}", false },
                { "{\"expiration\":\"2024-05-01T12:34:56Z\"}", true },
                { "{\"expiration\":\"2024-05-01T12:34:56.123456Z\"}", false }, /* equal: not before now */
                { "{\"expiration\":\"2024-05-01T12:34:56.123455999Z\"}", true },
                { "{\"expiration\":\"2024-05-01T12:34:57Z\"}", false },
                { "{\"expiration\":\"2024-05-01t12:34:57z\"}", false },
                { "{\"expiration\":\"2024-05-01T14:34:57+02:00\"}", false },
                { "{\"expiration\":\"2024-05-01T14:34:55+02:00\"}", true },
                { "{\"expiration\":\"2024-05-01T10:34:55-02:00\"}", true },
                { "{\"expiration\":\"1969-12-31T23:59:59Z\"}", true },
                { "{\"expiration\":\"2024-05-01T12:34:56Z\\u0000x\"}", false },
                { "{\"expiration\":\"2024-05-01 12:34:56Z\"}", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_t *j = cloudevent_parse(cases[i].event, strlen(cases[i].event));
                fprintf(stderr, "  %s\n", cases[i].event);
                ASSERT_NOT_NULL(j);
                ASSERT_EQ(cloudevent_expired(j, NOW), cases[i].expired);
                json_decref(j);
        }
        ASSERT_TRUE(!cloudevent_expired(NULL, NOW));
}

TEST(time_format_parse) {
        static const struct {
                uint64_t usec;
                const char *text;
        } cases[] = {
                { 0, "1970-01-01T00:00:00.000000Z" },
                { 951782400000000ULL, "2000-02-29T00:00:00.000000Z" },
                { 1709251199999999ULL, "2024-02-29T23:59:59.999999Z" },
                { NOW, "2024-05-01T12:34:56.123456Z" },
                { 4102444800000000ULL, "2100-01-01T00:00:00.000000Z" },
                { 253402300799999999ULL, "9999-12-31T23:59:59.999999Z" },
        };
        char buf[CLOUDEVENT_TIME_MAX];
        int64_t t;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                cloudevent_format_time(cases[i].usec, buf);
                ASSERT_STREQ(buf, cases[i].text);
                ASSERT_OK(cloudevent_parse_time(buf, &t));
                ASSERT_EQ(t, (int64_t) cases[i].usec);
        }
        cloudevent_format_time(UINT64_MAX, buf);
        ASSERT_STREQ(buf, "9999-12-31T23:59:59.999999Z");

        ASSERT_OK(cloudevent_parse_time("0000-01-01T00:00:00Z", &t));
        ASSERT_EQ(t, -62167219200LL * 1000000);
        ASSERT_OK(cloudevent_parse_time("2024-05-01T12:34:56.1Z", &t));
        ASSERT_EQ(t, 1714566896100000LL);

        static const char *const bad[] = {
                "", "2024-05-01", "2024-05-01T12:34:56", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
                "2024-00-01T00:00:00Z", "2024-04-31T00:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T12:60:00Z",
                "2024-05-01T12:34:60Z", "2024-05-01T12:34:56.Z", "2024-05-01T12:34:56+2:00", "2024-05-01T12:34:56+24:00",
                "2024-05-01T12:34:56Zx", "24-05-01T12:34:56Z", "+2024-05-01T12:34:56Z", "2024-05-01T12:34:56 Z",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                fprintf(stderr, "  bad: %s\n", bad[i]);
                ASSERT_ERROR(cloudevent_parse_time(bad[i], &t), EINVAL);
        }
        ASSERT_ERROR(cloudevent_parse_time(NULL, &t), EINVAL);
}

TEST(new_id) {
        char a[CLOUDEVENT_UUID_MAX], b[CLOUDEVENT_UUID_MAX];

        ASSERT_OK(cloudevent_new_id(a));
        ASSERT_OK(cloudevent_new_id(b));
        ASSERT_TRUE(is_uuid4(a));
        ASSERT_TRUE(is_uuid4(b));
        ASSERT_TRUE(!streq(a, b));
}

TEST(base64) {
        static const struct {
                const char *plain, *enc;
        } vectors[] = { /* RFC 4648 §10 */
                { "", "" },         { "f", "Zg==" },         { "fo", "Zm8=" },        { "foo", "Zm9v" },
                { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
        };

        for (size_t i = 0; i < ELEMENTSOF(vectors); i++) {
                _cleanup_free_ char *e = base64_encode(vectors[i].plain, strlen(vectors[i].plain));
                _cleanup_free_ char *d = NULL, *d2 = NULL;
                size_t n = 0;

                ASSERT_STREQ(e, vectors[i].enc);
                ASSERT_EQ(base64_encoded_len(strlen(vectors[i].plain)), strlen(vectors[i].enc));
                ASSERT_OK(base64_decode(vectors[i].enc, strlen(vectors[i].enc), &d, &n));
                ASSERT_EQ(n, strlen(vectors[i].plain));
                ASSERT_STREQ(d, vectors[i].plain);
                /* Padding is optional. */
                ASSERT_OK(base64_decode(vectors[i].enc, strcspn(vectors[i].enc, "="), &d2, &n));
                ASSERT_STREQ(d2, vectors[i].plain);
        }

        /* Both alphabets; binary data with NULs. */
        _cleanup_free_ char *d = NULL;
        size_t n = 0;
        ASSERT_OK(base64_decode("AP-_", 4, &d, &n));
        ASSERT_EQ(n, 3);
        ASSERT_TRUE(memcmp(d, "\x00\xff\xbf", 3) == 0);
        free(TAKE_PTR(d));
        ASSERT_OK(base64_decode("AP+/", 4, &d, &n));
        ASSERT_TRUE(memcmp(d, "\x00\xff\xbf", 3) == 0);

        char *x = NULL;
        ASSERT_ERROR(base64_decode("Z", 1, &x, &n), EINVAL);
        ASSERT_ERROR(base64_decode("Zm9vY", 5, &x, &n), EINVAL);
        ASSERT_ERROR(base64_decode("Zm 9v", 5, &x, &n), EINVAL);
        ASSERT_ERROR(base64_decode("Zm=v", 4, &x, &n), EINVAL);
        ASSERT_ERROR(base64_decode("Zm9v*", 5, &x, &n), EINVAL);
        ASSERT_NULL(x);
}

TEST(invoke_basic_auth) {
        /* http/invoke-url.c decodes Basic credentials with the shared decoder. */
        char *id = NULL;

        /* "dapr-app-id:orders" */
        ASSERT_EQ(invoke_target_from_headers(NULL, "Basic ZGFwci1hcHAtaWQ6b3JkZXJz", &id), 1);
        ASSERT_STREQ(id, "orders");
        free(TAKE_PTR(id));
        ASSERT_EQ(invoke_target_from_headers(NULL, "basic   ZGFwci1hcHAtaWQ6b3JkZXJz", &id), 1);
        ASSERT_STREQ(id, "orders");
        free(TAKE_PTR(id));
        /* "dapr-app-id:a?>" in the URL-safe alphabet, unpadded */
        ASSERT_EQ(invoke_target_from_headers(NULL, "Basic ZGFwci1hcHAtaWQ6YT8-", &id), 1);
        ASSERT_STREQ(id, "a?>");
        free(TAKE_PTR(id));
        /* "dapr-app-id:a\0b": a NUL inside is refused */
        ASSERT_EQ(invoke_target_from_headers(NULL, "Basic ZGFwci1hcHAtaWQ6YQBi", &id), 0);
        ASSERT_EQ(invoke_target_from_headers(NULL, "Basic !!!!", &id), 0);
        ASSERT_EQ(invoke_target_from_headers(NULL, "Basic dXNlcjpwdw==", &id), 0); /* user:pw */
        ASSERT_NULL(id);
}
