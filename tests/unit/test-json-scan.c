/* SPDX-License-Identifier: Apache-2.0 */
/*
 * core/json-scan: JSON checked without a tree (any value at the top, UTF-8 checked, nothing
 * after the value), and the three envelope members a delivery reads, taken only at the top
 * level of an object, the last of repeated ones counting, as jansson's tree would have them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json-scan.h"
#include "util/strv.h"
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

TEST(peek_string_ci_reads_an_answer) {
        char *s = NULL;
        ASSERT_EQ(json_peek_string_ci("{\"status\":\"SUCCESS\"}", 20, "status", &s), 0);
        ASSERT_STREQ(s, "SUCCESS");
        free(s);
        s = NULL;
        /* any ASCII case, the last one counts; nested ones do not */
        const char *a = "{\"STATUS\":\"RETRY\",\"x\":{\"status\":\"y\"},\"Status\":\"DROP\"}";
        ASSERT_EQ(json_peek_string_ci(a, strlen(a), "status", &s), 0);
        ASSERT_STREQ(s, "DROP");
        free(s);
        s = NULL;
        const char *b = "{\"status\":\"DROP\",\"status\":7}";
        ASSERT_EQ(json_peek_string_ci(b, strlen(b), "status", &s), 0);
        ASSERT_NULL(s);
        ASSERT_EQ(json_peek_string_ci("{}", 2, "status", &s), 0);
        ASSERT_NULL(s);
        const char *c = "[{\"status\":\"DROP\"}]", *d = "{\"status\":\"DROP\"";
        ASSERT_EQ(json_peek_string_ci(c, strlen(c), "status", &s), -EINVAL);
        ASSERT_EQ(json_peek_string_ci(d, strlen(d), "status", &s), -EINVAL);
        ASSERT_EQ(json_peek_string_ci("OK", 2, "status", &s), -EINVAL);
        ASSERT_NULL(s);
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

/* The byte-at-a-time decoder utf8_is_valid() was before it skipped ASCII runs a word at a time. */
static bool utf8_bytewise(const unsigned char *s, size_t n) {
        for (size_t i = 0; i < n;) {
                unsigned char c = s[i];
                uint32_t cp, min;
                size_t k;
                if (c < 0x80) {
                        i++;
                        continue;
                }
                if ((c & 0xe0) == 0xc0)
                        k = 1, cp = c & 0x1f, min = 0x80;
                else if ((c & 0xf0) == 0xe0)
                        k = 2, cp = c & 0x0f, min = 0x800;
                else if ((c & 0xf8) == 0xf0)
                        k = 3, cp = c & 0x07, min = 0x10000;
                else
                        return false;
                if (n - i <= k)
                        return false;
                for (size_t j = 1; j <= k; j++) {
                        if ((s[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + j] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += k + 1;
        }
        return true;
}

TEST(utf8_word_at_a_time_matches_bytewise) {
        /* every string of up to 3 bytes over bytes that matter at every boundary */
        static const unsigned char alphabet[] = { 'a', 0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xed,
                                                  0xef, 0xf0, 0xf4, 0xf5, 0xff, 0xa0, 0x9f, 0x90 };
        const size_t na = sizeof alphabet;
        unsigned char buf[64];
        for (size_t len = 0; len <= 3; len++) {
                size_t total = 1;
                for (size_t i = 0; i < len; i++)
                        total *= na;
                for (size_t x = 0; x < total; x++) {
                        size_t y = x;
                        for (size_t i = 0; i < len; i++, y /= na)
                                buf[i] = alphabet[y % na];
                        ASSERT_EQ(utf8_is_valid(buf, len), utf8_bytewise(buf, len));
                }
        }
        /* ASCII runs of every length and alignment around multi-byte sequences, good and cut */
        static const char *const seqs[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xc3", "\xe2\x82",
                                            "\xf0\x9f\x98", "\xed\xa0\x80", "\xc0\xaf", "\x80", "" };
        for (size_t pre = 0; pre < 20; pre++)
                for (size_t post = 0; post < 20; post++)
                        for (size_t q = 0; q < sizeof seqs / sizeof seqs[0]; q++)
                                for (size_t off = 0; off < 8; off++) {
                                        size_t n = 0;
                                        memset(buf, 'x', off + pre);
                                        n = off + pre;
                                        memcpy(buf + n, seqs[q], strlen(seqs[q]));
                                        n += strlen(seqs[q]);
                                        memset(buf + n, 'y', post);
                                        n += post;
                                        ASSERT_EQ(utf8_is_valid(buf + off, n - off), utf8_bytewise(buf + off, n - off));
                                }
        /* and random bytes, mostly ASCII */
        srand(7);
        for (int t = 0; t < 200000; t++) {
                size_t n = (size_t) rand() % 40;
                for (size_t i = 0; i < n; i++)
                        buf[i] = rand() % 8 ? (unsigned char) (rand() % 0x80) : (unsigned char) (0x80 + rand() % 0x80);
                ASSERT_EQ(utf8_is_valid(buf, n), utf8_bytewise(buf, n));
        }
}

/* fmt_u64() (two digits per step) writes what printf writes, at every length and edge. */
TEST(fmt_u64_matches_printf) {
        uint64_t v = 0;
        char a[32], b[32];
        for (int t = 0; t < 300000; t++) {
                switch (t % 4) {
                case 0: v = (uint64_t) t; break;
                case 1: v = UINT64_MAX - (uint64_t) t; break;
                case 2: v = ((uint64_t) rand() << 33) ^ ((uint64_t) rand() << 11) ^ (uint64_t) rand(); break;
                default: { uint64_t p = 1; for (int k = t % 20; k > 0; k--) p *= 10; v = p - 1 + (uint64_t) (t % 3); }
                }
                *fmt_u64(a, v) = '\0';
                snprintf(b, sizeof b, "%" PRIu64, v);
                ASSERT_STREQ(a, b);
        }
}

/* is_tchar() (a byte table) is RFC 9110's tchar for all 256 bytes, as the bitmap it replaced. */
TEST(tchar_table_is_rfc9110) {
        static const uint32_t bits[4] = { 0x00000000, 0x03ff6cfa, 0xc7fffffe, 0x57ffffff };
        static const char extra[] = "!#$%&'*+-.^_`|~";
        for (unsigned c = 0; c < 256; c++) {
                bool rfc = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c != 0 && strchr(extra, (int) c));
                bool bitmap = c < 128 && (bits[c >> 5] >> (c & 31)) & 1;
                ASSERT_EQ(is_tchar((unsigned char) c), rfc);
                ASSERT_EQ(rfc, bitmap);
        }
        ASSERT_TRUE(is_token("Content-Type"));
        ASSERT_TRUE(!is_token("Bad Name"));
        ASSERT_TRUE(!is_token(""));
}
