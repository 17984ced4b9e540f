/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See cloudevent.h. After Dapr release-1.14: pkg/runtime/pubsub/cloudevents.go
 * (NewCloudEvent) and components-contrib pubsub/envelope.go
 * (NewCloudEventsEnvelope, FromCloudEvent, FromRawPayload, ApplyMetadata,
 * HasExpired), as summarized in the reference §4.2, §4.3 and §4.6.
 *
 * Where mooring differs, on purpose:
 *  - A JSON body is not decoded and re-encoded: its own text becomes "data"
 *    once it is known to parse. jansson would print 0.1 as
 *    0.10000000000000001 (17 significant digits) and refuses integers beyond
 *    64 bits; Go's float64 round trip loses digits of its own. The text as
 *    sent is what the publisher meant.
 *  - A text body that is not valid UTF-8 goes out as data_base64 instead of
 *    having its bad bytes replaced by U+FFFD, as Go's encoder does.
 *  - time and expiration carry microseconds; Dapr writes whole seconds
 *    (time.RFC3339). Both are RFC 3339 and parse the same everywhere.
 *  - traceid/traceparent are only written when the caller has a traceparent.
 *  - A passthrough event is checked against CloudEvents 1.0 before it is
 *    stored (cloudevent_validate()). daprd checks nothing but "a JSON
 *    object" (FromCloudEvent only unmarshals into a map), so it stores `{}`,
 *    specversion "2.0", a numeric id or undecodable data_base64, and the
 *    failure shows up later, at a subscriber (Dapr's own gRPC delivery
 *    retries an event whose data_base64 does not decode, forever). Such a
 *    publish is refused here with the error daprd gives a body that is no
 *    JSON object (ERR_PUBSUB_CLOUD_EVENTS_SER, HTTP 500). Where daprd fills
 *    source, type and specversion in an event that lacks them, so does
 *    mooring: the filled event is valid, and clients that rely on it work.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <yajl/yajl_gen.h>

#include "../util/base64.h"
#include "../util/cleanup.h"
#include "../util/growbuf.h"
#include "cloudevent.h"
#include "../util/strv.h"
#include "json-scan.h"

#define USEC_PER_SEC 1000000ULL
/* 9999-12-31T23:59:59.999999Z: the last instant RFC 3339's four-digit year can write. */
#define TIME_MAX_USEC 253402300799999999ULL

/* ---- small helpers ---- */

/* Strict UTF-8, as jansson checks it: no overlong forms, no surrogates, nothing above U+10FFFF. */

/* Does content type ct name media type type (case-insensitive, parameters and blanks ignored)? */
static bool media_type_is(const char *ct, const char *type) {
        size_t n;

        if (!ct)
                return false;
        ct += strspn(ct, " \t");
        n = strcspn(ct, ";");
        while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
                n--;
        return n == strlen(type) && strncasecmp(ct, type, n) == 0;
}

bool cloudevent_is_content_type(const char *content_type) {
        return media_type_is(content_type, CLOUDEVENT_CONTENT_TYPE);
}

/* Sets *reterr (when wanted) to a message; always returns -EINVAL. */
_printf_(2, 3) static int fail(char **reterr, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;

        if (!reterr)
                return -EINVAL;
        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        *reterr = m;
        return -EINVAL;
}

/* Sets key to the string v, which must be valid UTF-8. 0, -EINVAL (bad UTF-8) or -ENOMEM. */
static int set_string(json_t *o, const char *key, const char *v) {
        json_t *s;

        if (!utf8_is_valid(v, strlen(v)))
                return -EINVAL;
        s = json_string_nocheck(v);
        if (!s || json_object_set_new_nocheck(o, key, s) < 0) /* set_new drops s on failure */
                return -ENOMEM;
        return 0;
}

/* set_string() with the message for a bad value. */
static int set_field(json_t *o, const char *key, const char *v, char **reterr) {
        int r = set_string(o, key, v);
        if (r == -EINVAL)
                return fail(reterr, "the value for CloudEvent field '%s' is not valid UTF-8", key);
        return r;
}

/* ---- time ---- */

static uint64_t now_usec(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_REALTIME, &ts) < 0 || ts.tv_sec < 0)
                return 0;
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

/* The inverse, for days >= 0. */
static void civil_from_days(int64_t z, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d) {
        int64_t era, doe, yoe, doy, mp;

        z += 719468;
        era = z / 146097;
        doe = z - era * 146097;
        yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        mp = (5 * doy + 2) / 153;
        *ret_d = (unsigned) (doy - (153 * mp + 2) / 5 + 1);
        *ret_m = (unsigned) (mp < 10 ? mp + 3 : mp - 9);
        *ret_y = yoe + era * 400 + (*ret_m <= 2);
}

void cloudevent_format_time(uint64_t usec, char buf[static CLOUDEVENT_TIME_MAX]) {
        uint64_t sec, day_sec;
        unsigned m, d;
        int64_t y;

        if (usec > TIME_MAX_USEC)
                usec = TIME_MAX_USEC;
        sec = usec / USEC_PER_SEC;
        day_sec = sec % 86400;
        civil_from_days((int64_t) (sec / 86400), &y, &m, &d);
        /* Digits written directly: snprintf() was 3,500 instructions of a publish. y is
         * 0000-9999 (TIME_MAX_USEC bounds it). */
        unsigned fields[] = { (unsigned) y, m, d, (unsigned) (day_sec / 3600), (unsigned) (day_sec / 60 % 60),
                              (unsigned) (day_sec % 60), (unsigned) (usec % USEC_PER_SEC) };
        static const unsigned widths[] = { 4, 2, 2, 2, 2, 2, 6 };
        static const char seps[] = "--T::.Z";
        char *p = buf;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                for (unsigned k = widths[i], v = fields[i]; k > 0; k--, v /= 10)
                        p[k - 1] = (char) ('0' + v % 10);
                p += widths[i];
                *p++ = seps[i];
        }
        *p = 0;
        assert(p - buf == CLOUDEVENT_TIME_MAX - 1);
}

/* Exactly n decimal digits at *p. */
static bool read_digits(const char **p, unsigned n, unsigned *ret) {
        unsigned v = 0;

        for (unsigned i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return false;
                v = v * 10 + (unsigned) (c - '0');
        }
        *p += n;
        *ret = v;
        return true;
}

static bool is_leap(unsigned y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int cloudevent_parse_time(const char *s, int64_t *ret_usec) {
        static const unsigned mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        unsigned y, mo, d, h, mi, se, oh = 0, om = 0;
        int64_t frac = 0, offset = 0, t;
        const char *p = s;

        if (!s || !read_digits(&p, 4, &y) || *p++ != '-' || !read_digits(&p, 2, &mo) || *p++ != '-' ||
            !read_digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
                return -EINVAL;
        p++;
        if (!read_digits(&p, 2, &h) || *p++ != ':' || !read_digits(&p, 2, &mi) || *p++ != ':' ||
            !read_digits(&p, 2, &se))
                return -EINVAL;
        if (*p == '.') {
                int64_t scale = 100000;
                p++;
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
                        frac += scale * (*p - '0'); /* digits past µs add 0 */
        }
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                int sign = *p++ == '-' ? -1 : 1;
                if (!read_digits(&p, 2, &oh) || *p++ != ':' || !read_digits(&p, 2, &om) || oh > 23 || om > 59)
                        return -EINVAL;
                offset = sign * (int64_t) (oh * 60 + om) * 60;
        } else
                return -EINVAL;
        if (*p != '\0')
                return -EINVAL;
        /* Go's time.Parse refuses a leap second (60) as well. */
        if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && is_leap(y)) || h > 23 || mi > 59 ||
            se > 59)
                return -EINVAL;
        t = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + se - offset;
        *ret_usec = t * (int64_t) USEC_PER_SEC + frac;
        return 0;
}

bool cloudevent_expired(json_t *event, uint64_t now_realtime_usec) {
        json_t *e = json_object_get(event, "expiration");
        int64_t t;

        if (!json_is_string(e) || json_string_length(e) != strlen(json_string_value(e)))
                return false;
        if (cloudevent_parse_time(json_string_value(e), &t) < 0)
                return false;
        return t < 0 || (uint64_t) t < now_realtime_usec;
}

/* ---- ids ---- */

/* Ids need to be unique, not secret. The non-blocking pool first; if it is not
 * initialized yet (early boot) the kernel's insecure pool (5.6+), else wait. */
static int random_fill(uint8_t *p, size_t n) {
        unsigned flags = GRND_NONBLOCK;
        size_t done = 0;

        while (done < n) {
                ssize_t k = getrandom(p + done, n - done, flags);
                if (k >= 0) {
                        done += (size_t) k;
                        continue;
                }
                if (errno == EINTR)
                        continue;
#ifdef GRND_INSECURE
                if (errno == EAGAIN && flags == GRND_NONBLOCK) {
                        flags = GRND_INSECURE;
                        continue;
                }
#endif
                if ((errno == EAGAIN || errno == EINVAL) && flags != 0) {
                        flags = 0;
                        continue;
                }
                return -errno;
        }
        return 0;
}

int cloudevent_new_id(char buf[static CLOUDEVENT_UUID_MAX]) {
        static const char hex[] = "0123456789abcdef";
        uint8_t b[16];
        char *o = buf;
        int r;

        r = random_fill(b, sizeof b);
        if (r < 0)
                return r;
        b[6] = (uint8_t) ((b[6] & 0x0f) | 0x40); /* version 4 */
        b[8] = (uint8_t) ((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
        for (size_t i = 0; i < sizeof b; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        *o++ = '-';
                *o++ = hex[b[i] >> 4];
                *o++ = hex[b[i] & 15];
        }
        *o = '\0';
        return 0;
}

/* ---- JSON ---- */

/*
 * json_loadb() that also takes integers beyond 64 bits, as Go's decoder does
 * (Dapr decodes events into float64s): only when the exact parse fails on
 * one is the text read again with every integer as a double.
 */
static json_t *load_json(const void *data, size_t len, size_t flags, json_error_t *ret_error) {
        const char *nul = memchr(data, 0, len);
        json_error_t e;
        json_t *j;

        /* A raw NUL is never valid JSON, but jansson lets one pass after a number or a keyword
         * ("[1\0]"); a text spliced into an event must not hold one. */
        if (nul) {
                if (ret_error) {
                        *ret_error = (json_error_t){ .line = -1, .column = -1 };
                        snprintf(ret_error->text, sizeof ret_error->text, "NUL byte at offset %zu",
                                 (size_t) (nul - (const char *) data));
                }
                return NULL;
        }
        j = json_loadb(data, len, flags, &e);

        if (!j && json_error_code(&e) == json_error_numeric_overflow)
                j = json_loadb(data, len, flags | JSON_DECODE_INT_AS_REAL, &e);
        if (ret_error)
                *ret_error = e;
        return j;
}

/* ---- building ---- */

/* The first non-empty override for field (or its alias), or NULL. */
static const char *override_get(char *const *ov, const char *field, const char *alias) {
        for (size_t i = 0; ov && ov[i] && ov[i + 1]; i += 2) {
                const char *k = ov[i];
                if (strncasecmp(k, "cloudevent.", strlen("cloudevent.")) == 0)
                        k += strlen("cloudevent.");
                if ((strcasecmp(k, field) == 0 || (alias && strcasecmp(k, alias) == 0)) && ov[i + 1][0])
                        return ov[i + 1];
        }
        return NULL;
}

static uint64_t expiration_usec(uint64_t now, int64_t ttl_sec) {
        if ((uint64_t) ttl_sec >= (TIME_MAX_USEC - MIN(now, TIME_MAX_USEC)) / USEC_PER_SEC)
                return TIME_MAX_USEC;
        return now + (uint64_t) ttl_sec * USEC_PER_SEC;
}

static int set_time(json_t *o, const char *key, uint64_t usec) {
        char buf[CLOUDEVENT_TIME_MAX];

        cloudevent_format_time(usec, buf);
        return set_string(o, key, buf);
}

static int dump(json_t *o, char **ret, size_t *ret_len) {
        char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        if (!s)
                return -ENOMEM;
        *ret_len = strlen(s); /* NULs inside strings are written as \u0000 */
        *ret = s;
        return 0;
}

/* jansson's parse messages may quote input bytes: keep the message printable ASCII. */
static void sanitize(char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f)
                        *s = '?';
}

static bool is_json_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

typedef struct Attr {
        const char *key, *value; /* value NULL: left out */
} Attr;

/* What one pass over an attribute value found (attr_scan()). */
typedef struct AttrText {
        size_t len;
        bool escape; /* has a byte JSON escapes */
} AttrText;

/* Bytes a JSON string must escape: both yajl and jansson escape exactly '"', '\\' and the
 * control characters (not '/', not DEL, not non-ASCII, as this envelope is written). */
static bool needs_escape(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c < 0x20 || c == '"' || c == '\\')
                        return true;
        }
        return false;
}

/* One pass over an attribute value: its length, whether JSON escapes a byte of it, and whether
 * it is valid UTF-8 (looked at closer only when a byte is not ASCII). */
static bool attr_scan(const char *s, AttrText *ret) {
        bool esc = false, ascii = true;
        size_t n = 0;

        for (unsigned char c; (c = (unsigned char) s[n]); n++) {
                esc |= (c < 0x20) | (c == '"') | (c == '\\');
                ascii &= c < 0x80;
        }
        *ret = (AttrText){ .len = n, .escape = esc };
        return ascii || utf8_is_valid(s, n);
}

/* Appends n bytes the caller reserved room for (growbuf_reserve()) before. */
static void put_reserved(GrowBuf *o, const void *s, size_t n) {
        memcpy(o->p + o->len, s, n);
        o->len += n;
}

static void out_string_escaped(GrowBuf *o, const char *s, size_t n);

/* A JSON string: as it is when nothing in it needs escaping (most of an envelope: ids, times,
 * names), else escaped by yajl's generator. */
static void out_string(GrowBuf *o, const char *s, size_t n) {
        if (!needs_escape(s, n)) {
                growbuf_put(o, "\"", 1);
                growbuf_put(o, s, n);
                growbuf_put(o, "\"", 1);
                return;
        }
        out_string_escaped(o, s, n);
}

static void out_string_escaped(GrowBuf *o, const char *s, size_t n) {
        const unsigned char *buf;
        size_t buf_len;
        yajl_gen g = yajl_gen_alloc(NULL);
        if (g && yajl_gen_string(g, (const unsigned char *) s, n) == yajl_gen_status_ok &&
            yajl_gen_get_buf(g, &buf, &buf_len) == yajl_gen_status_ok)
                growbuf_put(o, buf, buf_len);
        else
                o->oom = true;
        yajl_gen_free(g);
}

/*
 * Dapr's own envelope (§4.2) around the body, written directly rather than built as a jansson tree
 * and dumped (that was most of a publish's CPU once the body check went treeless); strings that
 * need escaping go through yajl's generator, the rest (nearly all) are copied as they are.
 * The bytes are what json_dumps(JSON_COMPACT | JSON_SORT_KEYS) wrote before: keys in byte order
 * ("data" and "data_base64" sort first), '/' and non-ASCII as they are, control characters escaped
 * as both libraries do (tests/unit/test-cloudevent.c compares every envelope with jansson's form).
 */
static int build_envelope(const CloudEventInput *in, const char *ct, uint64_t now, char **ret, size_t *ret_len,
                          char **reterr) {
        _cleanup_free_ char *b64 = NULL;
        const char *body = in->data ?: "", *id, *tp;
        char idbuf[CLOUDEVENT_UUID_MAX], timebuf[CLOUDEVENT_TIME_MAX], expbuf[CLOUDEVENT_TIME_MAX];
        size_t len = in->data ? in->len : 0;
        bool splice = false;
        int r;

        id = override_get(in->overrides, "id", NULL);
        if (!id) {
                r = cloudevent_new_id(idbuf);
                if (r < 0)
                        return r;
                id = idbuf;
        }
        tp = override_get(in->overrides, "traceparent", "traceid") ?: in->traceparent;
        cloudevent_format_time(now, timebuf);
        if (in->ttl_sec > 0)
                cloudevent_format_time(expiration_usec(now, in->ttl_sec), expbuf);

        const Attr attrs[] = { /* sorted by key */
                { "datacontenttype", ct },
                { "expiration", in->ttl_sec > 0 ? expbuf : NULL },
                { "id", id },
                { "pubsubname", in->pubsub },
                { "source", override_get(in->overrides, "source", NULL) ?: in->source ?: CLOUDEVENT_DEFAULT_SOURCE },
                { "specversion", CLOUDEVENT_SPEC_VERSION },
                { "time", timebuf },
                { "topic", in->topic },
                { "traceid", tp },
                { "traceparent", tp },
                { "tracestate", override_get(in->overrides, "tracestate", NULL) ?: in->tracestate ?: "" },
                { "type", override_get(in->overrides, "type", NULL) ?: CLOUDEVENT_DEFAULT_TYPE },
        };
        AttrText texts[ELEMENTSOF(attrs)];
        size_t attrs_len = 0;
        for (size_t i = 0; i < ELEMENTSOF(attrs); i++) {
                if (!attrs[i].value)
                        continue;
                if (!attr_scan(attrs[i].value, &texts[i]))
                        return fail(reterr, "the value for CloudEvent field '%s' is not valid UTF-8", attrs[i].key);
                attrs_len += strlen(attrs[i].key) + texts[i].len + 6; /* ,"key":"value" */
        }

        /* Checked without a tree (json-scan.h): jansson's parse was most of a publish's CPU. */
        if (media_type_is(ct, "application/json"))
                splice = json_text_is_valid(body, len);
        if (splice) {
                while (len > 0 && is_json_space(body[0])) {
                        body++;
                        len--;
                }
                while (len > 0 && is_json_space(body[len - 1]))
                        len--;
        } else if (media_type_is(ct, "application/octet-stream") || !utf8_is_valid(body, len)) {
                b64 = base64_encode(body, len);
                if (!b64)
                        return -ENOMEM;
        }

        /* Keys in byte order: "data" or "data_base64" first, then the attributes (sorted above). */
        GrowBuf o = {};
        /* The whole envelope in one allocation, unless something needs escaping. */
        growbuf_reserve(&o, len + attrs_len + 32);
        if (splice) {
                growbuf_put(&o, "{\"data\":", 8);
                growbuf_put(&o, body, len);
        } else if (b64) {
                growbuf_put(&o, "{\"data_base64\":", 15);
                out_string(&o, b64, strlen(b64));
        } else {
                growbuf_put(&o, "{\"data\":", 8);
                out_string(&o, body, len);
        }
        for (size_t i = 0; i < ELEMENTSOF(attrs); i++) {
                if (!attrs[i].value)
                        continue;
                size_t klen = strlen(attrs[i].key), vlen = texts[i].len;
                growbuf_reserve(&o, klen + vlen + 6);
                if (o.oom)
                        break;
                put_reserved(&o, ",\"", 2);
                put_reserved(&o, attrs[i].key, klen); /* plain ASCII names */
                if (texts[i].escape) {
                        put_reserved(&o, "\":", 2);
                        out_string_escaped(&o, attrs[i].value, vlen);
                        continue;
                }
                put_reserved(&o, "\":\"", 3);
                put_reserved(&o, attrs[i].value, vlen);
                put_reserved(&o, "\"", 1);
        }
        growbuf_put(&o, "}", 1);
        if (o.oom) {
                free(o.p);
                return -ENOMEM;
        }
        assert(streq(attrs[10].key, "tracestate"));
        if (in->facts)
                *in->facts = (CloudEventFacts){ .set = true, .traceparent = tp, .tracestate = attrs[10].value };
        if (in->facts && in->ttl_sec > 0)
                memcpy(in->facts->expiration, expbuf, sizeof expbuf);
        *ret = o.p;
        *ret_len = o.len;
        return 0;
}

/* ---- validation of a passthrough event ---- */

/* A string that is empty or only blanks counts as empty (as sdk-go's Validate trims first). */
static bool blank(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!strchr(" \t\r\n\v\f", s[i]) || s[i] == '\0')
                        return false;
        return true;
}

/* RFC 2045 token: printable ASCII without blanks and tspecials. */
static size_t token_len(const char *s) {
        size_t n = 0;

        while (s[n] > ' ' && s[n] < 0x7f && !strchr("()<>@,;:\\\"/[]?=", s[n]))
                n++;
        return n;
}

/* RFC 2046 media type: type "/" subtype, optional parameters (checked for printable ASCII only). */
static bool media_type_valid(const char *s) {
        size_t n = token_len(s);

        if (n == 0 || s[n] != '/')
                return false;
        s += n + 1;
        n = token_len(s);
        if (n == 0)
                return false;
        s += n;
        s += strspn(s, " \t");
        if (*s == '\0')
                return true;
        if (*s != ';')
                return false;
        for (; *s; s++)
                if ((unsigned char) *s < ' ' || (unsigned char) *s >= 0x7f)
                        return false;
        return true;
}

/* An absolute URI begins with a scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" (RFC 3986 §3.1). */
static bool uri_absolute(const char *s) {
        size_t i = 0;

        if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
                return false;
        while ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
               s[i] == '+' || s[i] == '-' || s[i] == '.')
                i++;
        return s[i] == ':';
}

/* No ASCII control characters or blanks: what no URI-reference may hold (Go's url.Parse refuses CTLs). */
static bool uri_chars_valid(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] <= ' ' || s[i] == 0x7f)
                        return false;
        return true;
}

/*
 * data_base64 as Go's base64.StdEncoding decodes it (what Dapr's gRPC delivery and sdk-go use): the
 * standard alphabet, '=' padding to a multiple of 4, CR and LF ignored anywhere. util/base64.c is
 * deliberately lenient (URL-safe alphabet, missing padding) for values people type; an event must
 * decode the same in every consumer, so the strict form is checked here.
 */
static bool base64_std_valid(const char *s, size_t n) {
        size_t k = 0, pad = 0;

        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '\r' || c == '\n')
                        continue;
                if (c == '=') {
                        pad++;
                } else {
                        if (pad > 0)
                                return false; /* data after padding */
                        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                              c == '+' || c == '/'))
                                return false;
                }
                k++;
        }
        return k % 4 == 0 && pad <= 2 && !(pad > 0 && k < 4);
}

/* Attribute names (spec §"Attribute Naming Convention"): lower-case ASCII letters and digits. */
static bool attribute_name_valid(const char *name) {
        if (!*name)
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
                        return false;
        return true;
}

/*
 * The rules of CloudEvents 1.0 (spec.md and formats/json-format.md) for one event object, before
 * Dapr's defaults are applied: see cloudevent_validate() in the header for the list and for
 * where this is stricter than daprd.
 */
static int validate_object(json_t *o, char **reterr) {
        const char *key, *s;
        json_t *v, *data = NULL, *b64 = NULL;
        size_t n;
        int64_t t;

        v = json_object_get(o, "id");
        if (!v || json_is_null(v))
                return fail(reterr, "the CloudEvent has no 'id'");

        json_object_foreach(o, key, v) {
                if (json_is_null(v)) /* json-format §2.2: null is the same as absent */
                        continue;
                if (streq(key, "data")) {
                        data = v; /* any JSON value */
                        continue;
                }
                if (streq(key, "data_base64")) {
                        b64 = v;
                        if (!json_is_string(v) || !base64_std_valid(json_string_value(v), json_string_length(v)))
                                return fail(reterr, "the CloudEvent's 'data_base64' is not a base64 string");
                        continue;
                }
                if (!attribute_name_valid(key))
                        return fail(reterr, "'%.64s' is not a CloudEvent attribute name "
                                    "(lower-case ASCII letters and digits only)", key);

                s = json_string_value(v);
                n = json_string_length(v);
                if (streq(key, "specversion")) {
                        if (!s || n != 3 || !streq(s, CLOUDEVENT_SPEC_VERSION))
                                return fail(reterr, "the CloudEvent's 'specversion' must be \"1.0\"");
                } else if (streq(key, "id") || streq(key, "type") || streq(key, "subject")) {
                        if (!s || blank(s, n))
                                return fail(reterr, "the CloudEvent's '%s' must be a non-empty string", key);
                } else if (streq(key, "source")) {
                        if (!s || n == 0 || !uri_chars_valid(s, n))
                                return fail(reterr, "the CloudEvent's 'source' must be a non-empty URI-reference");
                } else if (streq(key, "dataschema")) {
                        if (!s || !uri_chars_valid(s, n) || !uri_absolute(s))
                                return fail(reterr, "the CloudEvent's 'dataschema' must be an absolute URI");
                } else if (streq(key, "datacontenttype")) {
                        if (!s || strlen(s) != n || !media_type_valid(s))
                                return fail(reterr, "the CloudEvent's 'datacontenttype' must be a media type "
                                            "(type/subtype)");
                } else if (streq(key, "time")) {
                        if (!s || strlen(s) != n || cloudevent_parse_time(s, &t) < 0)
                                return fail(reterr, "the CloudEvent's 'time' must be an RFC 3339 timestamp");
                } else if (json_is_integer(v)) {
                        /* json-format §2.2: Integer is a JSON number without fraction, 32 bits (spec §Type System) */
                        if (json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)
                                return fail(reterr, "the CloudEvent attribute '%s' is an integer beyond 32 bits", key);
                } else if (!json_is_string(v) && !json_is_boolean(v))
                        return fail(reterr, "the CloudEvent attribute '%s' must be a string, a boolean or an "
                                    "integer", key);
        }
        if (data && b64)
                return fail(reterr, "the CloudEvent has both 'data' and 'data_base64'");
        return 0;
}

/* Loads and checks a passthrough body; *ret gets the object. 0, -EINVAL (with *reterr) or -ENOMEM. */
static int load_event(const void *data, size_t len, json_t **ret, char **reterr) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        json_error_t jerr;
        int r;

        /* Duplicate names refused: Go keeps the last, other decoders the first, so an event with two ids
         * would be two different events to two subscribers. */
        o = load_json(data ?: "", data ? len : 0, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES,
                      &jerr);
        if (!o) {
                if (json_error_code(&jerr) == json_error_out_of_memory)
                        return -ENOMEM;
                sanitize(jerr.text);
                if (jerr.line < 0)
                        return fail(reterr, "the " CLOUDEVENT_CONTENT_TYPE " body is not valid JSON: %s",
                                    jerr.text);
                return fail(reterr, "the " CLOUDEVENT_CONTENT_TYPE " body is not valid JSON: %s "
                            "(line %d, column %d)", jerr.text, jerr.line, jerr.column);
        }
        if (!json_is_object(o))
                return fail(reterr, "the " CLOUDEVENT_CONTENT_TYPE " body is not a JSON object");
        r = validate_object(o, reterr);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

int cloudevent_validate(const void *data, size_t len, char **reterr) {
        _cleanup_(json_decrefp) json_t *o = NULL;

        return load_event(data, len, &o, reterr);
}

/* Sets key to s when the event has no such member (or, with or_null, when it is null). */
static int set_default(json_t *o, const char *key, const char *s, bool or_null, char **reterr) {
        json_t *v = json_object_get(o, key);
        if (v && !(or_null && json_is_null(v)))
                return 0;
        return set_field(o, key, s, reterr);
}

/* A body that already is a CloudEvent (§4.3). */
static int build_passthrough(const CloudEventInput *in, uint64_t now, char **ret, size_t *ret_len,
                             char **reterr) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        int r;

        r = load_event(in->data, in->len, &o, reterr);
        if (r < 0)
                return r;
        if (!json_object_get(o, "time") && (r = set_time(o, "time", now)) < 0)
                return r;
        if (!json_object_get(o, "traceid") && in->traceparent &&
            ((r = set_field(o, "traceid", in->traceparent, reterr)) < 0 ||
             (r = set_field(o, "traceparent", in->traceparent, reterr)) < 0))
                return r;
        if ((r = set_default(o, "tracestate", in->tracestate ?: "", false, reterr)) < 0 ||
            (r = set_field(o, "topic", in->topic, reterr)) < 0 ||
            (r = set_field(o, "pubsubname", in->pubsub, reterr)) < 0 ||
            (r = set_default(o, "source", CLOUDEVENT_DEFAULT_SOURCE, true, reterr)) < 0 ||
            (r = set_default(o, "type", CLOUDEVENT_DEFAULT_TYPE, true, reterr)) < 0 ||
            (r = set_default(o, "specversion", CLOUDEVENT_SPEC_VERSION, true, reterr)) < 0)
                return r;
        if (in->ttl_sec > 0 && (r = set_time(o, "expiration", expiration_usec(now, in->ttl_sec))) < 0)
                return r;
        return dump(o, ret, ret_len);
}

int cloudevent_build(const CloudEventInput *in, char **ret, size_t *ret_len, char **reterr) {
        const char *ct = in->content_type && *in->content_type ? in->content_type : "text/plain";
        uint64_t now = in->now_realtime_usec ?: now_usec();

        assert(in->topic && in->pubsub);
        if (cloudevent_is_content_type(ct))
                return build_passthrough(in, now, ret, ret_len, reterr);
        return build_envelope(in, ct, now, ret, ret_len, reterr);
}

int cloudevent_wrap_raw(const char *topic, const char *pubsub, const void *data, size_t len, char **ret,
                        size_t *ret_len) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        _cleanup_free_ char *b64 = NULL;
        char id[CLOUDEVENT_UUID_MAX];
        int r;

        r = cloudevent_new_id(id);
        if (r < 0)
                return r;
        b64 = base64_encode(data ?: "", data ? len : 0);
        o = json_object();
        if (!b64 || !o)
                return -ENOMEM;
        const struct {
                const char *key, *value;
        } fields[] = {
                { "id", id },
                { "specversion", CLOUDEVENT_SPEC_VERSION },
                { "datacontenttype", "application/octet-stream" },
                { "source", CLOUDEVENT_DEFAULT_SOURCE },
                { "type", CLOUDEVENT_DEFAULT_TYPE },
                { "topic", topic },
                { "pubsubname", pubsub },
                { "data_base64", b64 },
        };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if ((r = set_string(o, fields[i].key, fields[i].value)) < 0)
                        return r;
        return dump(o, ret, ret_len);
}

json_t *cloudevent_parse(const void *data, size_t len) {
        json_t *o = load_json(data ?: "", data ? len : 0, JSON_ALLOW_NUL, NULL);

        if (o && !json_is_object(o)) {
                json_decref(o);
                return NULL;
        }
        return o;
}
