/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON checked and read without building a tree, on Debian's yajl (a streaming parser).
 *
 * Why: pub/sub parsed every message twice with jansson, once to decide whether a publish's
 * data is JSON (to splice it into the envelope) and once per delivery to read three envelope
 * fields. jansson's lexer copies byte by byte: callgrind put 85% of the daemon's instructions
 * there, about 200k per 1 KiB message each way, which capped pub/sub near 6k messages/s.
 *
 * Both accept what jansson (JSON_DECODE_ANY | JSON_ALLOW_NUL) accepts: any value at the top,
 * UTF-8 checked, "\u0000" allowed, no comments, nothing after the value, and, as jansson,
 * no integer beyond a long long or real beyond a double (what mooring splices into an envelope
 * must read back with jansson). One difference: jansson ends the text at a raw NUL byte
 * ("3\0x" is 3 to it); these refuse it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

bool json_text_is_valid(const void *text, size_t len);

/* What a delivery needs of a CloudEvent envelope: its top-level string members of these
 * names (NULL when absent, not a string, or holding a NUL). Nested members of the same names
 * (in "data") are not taken. */
typedef struct CloudEventPeek {
        char *expiration;
        char *traceparent;
        char *tracestate;
} CloudEventPeek;

/* 0, -EINVAL when text is not valid JSON or not an object, -ENOMEM. */
int cloudevent_peek(const void *text, size_t len, CloudEventPeek *ret);
void cloudevent_peek_done(CloudEventPeek *p);

/* The top-level string member key of a JSON object, its name compared without ASCII case (the
 * last such member counts, as Go's decoder and jansson's tree then json_object_get_ci() have it):
 * *ret is a copy, NULL when absent, not a string or holding a NUL. For an app's small answers
 * ({"status":"SUCCESS"}), where building a jansson tree cost more than the rest of reading them.
 * 0, -EINVAL when text is not valid JSON or not an object, -ENOMEM. */
int json_peek_string_ci(const void *text, size_t len, const char *key, char **ret);
