/* SPDX-License-Identifier: Apache-2.0 */
/*
 * core/json-scan: JSON checked without a tree (any value at the top, UTF-8 checked, nothing
 * after the value), and the three envelope members a delivery reads, taken only at the top
 * level of an object, the last of repeated ones counting, as jansson's tree would have them.
 */
#include <errno.h>
#include <string.h>

#include "core/json-scan.h"
#include "tests.h"

#define VALID(s) ASSERT_TRUE(json_text_is_valid(s, strlen(s)))
#define INVALID(s) ASSERT_TRUE(!json_text_is_valid(s, strlen(s)))

TEST(validity) {
        VALID("{}");
        VALID("[]");
        VALID("1");
        VALID("\"s\"");
        VALID("true");
        VALID("null");
        VALID(" {\"a\":[1,2,{\"b\":null}],\"c\":\"\\u0000\\u00e9\"} \n");
        /* jansson's number limits (the envelope must read back with it) */
        VALID("9223372036854775807");
        VALID("1e308");
        VALID("1e-999"); /* underflows to 0: jansson takes it */
        INVALID("9223372036854775808");
        INVALID("1e999");
        INVALID("[1, 123456789012345678901234567890]");
        /* a raw NUL byte after the value: jansson would stop there, these do not */
        ASSERT_TRUE(!json_text_is_valid("3\0x", 3));
        INVALID("");
        INVALID("   ");
        INVALID("{");
        INVALID("{\"a\":}");
        INVALID("{} {}");
        INVALID("[1,]");
        INVALID("{'a':1}");
        INVALID("NaN");
        INVALID("// no comments\n{}");
        INVALID("\"\xff\"");
        ASSERT_TRUE(!json_text_is_valid(NULL, 0));
        /* length, not NUL, ends the text */
        ASSERT_TRUE(json_text_is_valid("{}garbage", 2));
        ASSERT_TRUE(!json_text_is_valid("{}\0{}", 5));
}

TEST(peek_takes_top_level_strings) {
        const char *e = "{\"data\":{\"traceparent\":\"inner\",\"expiration\":\"x\"},"
                        "\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\","
                        "\"tracestate\":\"a=b\",\"expiration\":\"2024-05-01T12:34:56Z\",\"n\":[1,{\"tracestate\":1}]}";
        CloudEventPeek p = {};
        ASSERT_EQ(cloudevent_peek(e, strlen(e), &p), 0);
        ASSERT_STREQ(p.traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        ASSERT_STREQ(p.tracestate, "a=b");
        ASSERT_STREQ(p.expiration, "2024-05-01T12:34:56Z");
        cloudevent_peek_done(&p);
        ASSERT_NULL(p.traceparent);
}

TEST(peek_last_member_counts_and_non_strings_are_absent) {
        const char *e = "{\"expiration\":\"2020-01-01T00:00:00Z\",\"expiration\":1,"
                        "\"tracestate\":null,\"tracestate\":\"x\",\"traceparent\":\"a\\u0000b\"}";
        CloudEventPeek p = {};
        ASSERT_EQ(cloudevent_peek(e, strlen(e), &p), 0);
        ASSERT_NULL(p.expiration);
        ASSERT_STREQ(p.tracestate, "x");
        ASSERT_NULL(p.traceparent); /* a NUL inside: not usable as a header */
        cloudevent_peek_done(&p);
}

TEST(peek_refuses_what_is_not_an_object) {
        CloudEventPeek p = {};
        ASSERT_EQ(cloudevent_peek("[{\"traceparent\":\"x\"}]", 21, &p), -EINVAL);
        ASSERT_EQ(cloudevent_peek("\"s\"", 3, &p), -EINVAL);
        ASSERT_EQ(cloudevent_peek("{\"a\":1", 6, &p), -EINVAL);
        ASSERT_EQ(cloudevent_peek("{\"traceparent\":\"x\"} 1", 21, &p), -EINVAL);
        ASSERT_EQ(cloudevent_peek("", 0, &p), -EINVAL);
        ASSERT_NULL(p.traceparent);
}
