/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CloudEvents 1.0 (JSON format) as Dapr's pub/sub writes and reads them
 * (reference §4.2, §4.3, §4.6): the envelope built around a published body,
 * the passthrough of a body that already is a CloudEvent, the wrapping of raw
 * broker bytes for rawPayload subscriptions, and the parsing and expiry check
 * done before delivery. Pure functions apart from the clock and the random
 * ids; fuzzed by tests/fuzz/fuzz-cloudevent.c.
 *
 * Output is compact JSON with the keys sorted, as Go's encoder writes Dapr's
 * map-based envelopes. Every string put into an event must be valid UTF-8
 * (JSON's rule, and jansson's): an input that is not is refused with
 * -EINVAL, except the body, which then travels as data_base64.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLOUDEVENT_SPEC_VERSION "1.0"
#define CLOUDEVENT_DEFAULT_SOURCE "Dapr"
#define CLOUDEVENT_DEFAULT_TYPE "com.dapr.event.sent"
#define CLOUDEVENT_CONTENT_TYPE "application/cloudevents+json"

/* "2024-05-01T12:34:56.123456Z": 27 characters and a NUL. */
#define CLOUDEVENT_TIME_MAX 28
/* "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" and a NUL. */
#define CLOUDEVENT_UUID_MAX 37

typedef struct CloudEventInput {
        const char *topic, *pubsub;        /* required */
        const char *source;                /* publishing app id; NULL → "Dapr" */
        const char *content_type;          /* request Content-Type; NULL/"" → "text/plain" */
        const void *data;                  /* the request body (may be NULL when len is 0) */
        size_t len;
        const char *traceparent;           /* may be NULL: no traceid/traceparent fields */
        const char *tracestate;            /* may be NULL: tracestate "" */
        int64_t ttl_sec;                   /* > 0: add "expiration" = now + ttl, RFC 3339 UTC */
        /* Name, value pairs (NULL-terminated) from ?metadata.cloudevent.<field>=v. Fields id,
         * source, type, traceparent (alias traceid) and tracestate, matched case-insensitively,
         * with or without the "cloudevent." prefix; others are ignored, as is an empty value.
         * Dapr's envelope only: a passthrough event is not changed by them. May be NULL. */
        char *const *overrides;
        uint64_t now_realtime_usec;        /* 0: the current CLOCK_REALTIME (tests set it) */
        /* Out, may be NULL: what Dapr's own envelope was given for its delivery (set stays false
         * for a passthrough event, whose members come from the body). */
        struct CloudEventFacts *facts;
} CloudEventInput;

/* The members a delivery reads, as cloudevent_build() wrote them into Dapr's envelope. */
typedef struct CloudEventFacts {
        bool set;
        const char *traceparent;           /* borrowed from the input; NULL: none */
        const char *tracestate;            /* borrowed from the input; "" for none */
        char expiration[CLOUDEVENT_TIME_MAX]; /* "": none */
} CloudEventFacts;

/*
 * The event to store on the broker for one publish: Dapr's envelope (§4.2),
 * or, when content_type is application/cloudevents+json (any case, with or
 * without parameters), the body itself completed by the passthrough rules
 * (§4.3). Envelope fields: id (a new UUID v4 unless overridden), specversion
 * "1.0", datacontenttype (the content type as given, or text/plain), source,
 * type "com.dapr.event.sent", topic, pubsubname, time (now, RFC 3339 UTC with
 * microseconds), traceid + traceparent (when there is one), tracestate
 * (always, "" when none), expiration (with ttl_sec), and the body as
 *   - data, the body's own JSON text, when the media type is application/json
 *     and the body parses as JSON (any JSON value; the text is kept as sent,
 *     minus surrounding whitespace, so numbers keep their exact spelling);
 *   - data_base64 when the media type is application/octet-stream, or when the
 *     body is not valid UTF-8 (a JSON string cannot carry it; Go's encoder
 *     would replace such bytes by U+FFFD, losing them);
 *   - data as a JSON string otherwise (also for JSON that does not parse).
 *
 * Returns 0 with *ret (malloc'd, NUL-terminated JSON, compact apart from a
 * JSON body's own text) and *ret_len. -EINVAL when the passthrough body is
 * not JSON (a raw NUL byte counts as not JSON), not an object or not a valid
 * CloudEvent (cloudevent_validate()), or when topic,
 * pubsub, source, content type, trace fields or overrides are not valid
 * UTF-8: then *reterr, if reterr is not NULL, gets a malloc'd message (NULL on
 * OOM). -ENOMEM; another negative errno if no random id could be had.
 */
int cloudevent_build(const CloudEventInput *in, char **ret, size_t *ret_len, char **reterr);

/*
 * Checks a body published as application/cloudevents+json against
 * CloudEvents 1.0 (spec.md, formats/json-format.md), as it is given, before
 * Dapr's defaults are applied. Refused: not one JSON object (duplicate member
 * names included); no id (null counts as absent, json-format §2.2); id, type
 * or subject not a non-blank string; specversion present and not "1.0";
 * source present and not a non-empty URI-reference; dataschema not an
 * absolute URI; datacontenttype not an RFC 2046 type/subtype; time not an
 * RFC 3339 timestamp; data_base64 not a string of standard, padded base64;
 * both data and data_base64; an attribute name other than lower-case ASCII
 * letters and digits (the spec's MUST; its 20-character limit is a SHOULD
 * and not enforced); an attribute value that is an object, an array, a
 * fraction or an integer beyond 32 bits. Absent (or null) source, type and
 * specversion are allowed: cloudevent_build() fills them as Dapr does.
 * daprd itself checks only "a JSON object"; see cloudevent.c.
 *
 * Returns 0, -EINVAL with *reterr (if reterr is not NULL) a malloc'd message
 * naming the attribute (NULL on OOM), or -ENOMEM.
 */
int cloudevent_validate(const void *data, size_t len, char **reterr);

/*
 * For a subscription with rawPayload=true, at delivery: raw broker bytes
 * wrapped as Dapr does (§4.6): {id (new UUID v4), specversion,
 * datacontenttype "application/octet-stream", source "Dapr", type
 * "com.dapr.event.sent", topic, pubsubname, data_base64}. Returns 0 with *ret
 * and *ret_len as above, -EINVAL when topic or pubsub is not valid UTF-8,
 * -ENOMEM.
 */
int cloudevent_wrap_raw(const char *topic, const char *pubsub, const void *data, size_t len, char **ret,
                        size_t *ret_len);

/*
 * Parses stored bytes as a CloudEvent for routing and expiry. Returns a new
 * reference to the JSON object, or NULL when the bytes are not one JSON
 * object (or on OOM). Strings may hold NULs (\u0000), so compare them with
 * json_string_length().
 */
json_t *cloudevent_parse(const void *data, size_t len);

/*
 * Has the event's "expiration" (an RFC 3339 string) passed at
 * now_realtime_usec (µs since the epoch, CLOCK_REALTIME)? False when event
 * is NULL, has no expiration, or it is not a string or not a valid RFC 3339
 * time (as Dapr: such an event is delivered).
 */
bool cloudevent_expired(json_t *event, uint64_t now_realtime_usec);

/* Is the media type of content_type application/cloudevents+json? NULL → false. */
bool cloudevent_is_content_type(const char *content_type);

/* usec since the epoch as RFC 3339 UTC with microseconds ("...T12:34:56.123456Z"). */
void cloudevent_format_time(uint64_t usec, char buf[static CLOUDEVENT_TIME_MAX]);

/*
 * Parses an RFC 3339 date-time ("2024-05-01T12:34:56Z", with optional
 * fraction, 'Z' or a ±hh:mm offset; 't'/'z' accepted in lower case) into µs
 * since the epoch (negative before 1970). Fractions beyond µs are truncated.
 * 0 or -EINVAL.
 */
int cloudevent_parse_time(const char *s, int64_t *ret_usec);

/* A new random UUID v4 in lower case. 0, or a negative errno from getrandom(). */
int cloudevent_new_id(char buf[static CLOUDEVENT_UUID_MAX]);
