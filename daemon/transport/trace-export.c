/* SPDX-License-Identifier: Apache-2.0 */
/* See trace-export.h. */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../core/configuration.h"
#include "../core/metrics.h"
#include "../core/trace.h"
#include "../drivers/dl-curl.h"
#include "../util/cleanup.h"
#include "../util/growbuf.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "trace-export.h"
#include "trace-http.h"

#define TICK_USEC (250ULL * 1000)
#define SEND_EVERY_USEC (1000ULL * 1000)
#define BACKOFF_MIN_USEC (500ULL * 1000)
#define BACKOFF_MAX_USEC (30ULL * 1000000)
#define REQUEST_TIMEOUT_MS 10000L

typedef enum ExportFormat {
        EXPORT_OTLP_HTTP,
        EXPORT_ZIPKIN,
} ExportFormat;

struct TraceExporter {
        /* Set up by trace_exporter_configure() on the loop thread before the exporter's thread starts,
         * then read-only (the curl handles are the exporter thread's alone). */
        ExportFormat format;
        char *url;              /* NULL: stdout only (no libcurl then) */
        char *headers_spec;     /* otel.headers as configured, to notice a change */
        long timeout_ms;
        TraceHttp *http;        /* a plain http:// collector: our own client, no libcurl */
        CURLM *multi;           /* anything else (https://): libcurl */
        CURL *easy;
        struct curl_slist *headers;
        pthread_t thread;
        bool thread_started;

        /* loop thread -> exporter thread: a write to wake_fd wakes it (a batch ready, a flush, stop) */
        int wake_fd;
        atomic_bool to_stdout;
        atomic_bool stop;
        atomic_bool flush;      /* a graceful stop waits: send everything now, then write flushed_fd */
        _Atomic uint64_t flush_deadline;
        /* exporter thread -> loop thread */
        atomic_bool busy;       /* a batch is out or waiting for its retry: the queue is not all there is */
        int flushed_fd;
        sd_event_source *flushed_source;
        /* the loop thread's */
        TraceFlushedFn flushed;
        void *flushed_userdata;

        /* The exporter thread's own: the batch out (or waiting to go again). */
        uint64_t last_send;
        char *body;
        size_t body_len, body_cap;
        size_t n_spans;
        unsigned attempts;
        uint64_t retry_at;      /* 0: not waiting */
        bool in_flight;
        bool flushing;
        /* encode_otlp()'s work space, kept: a batch costs no allocation but its body's growth */
        char *spare;            /* the last body's buffer, reused for the next */
        size_t spare_cap;
        uint32_t span_size[TRACE_BATCH_MAX];
        uint16_t group[TRACE_BATCH_MAX];
        uint16_t first[TRACE_BATCH_MAX];
        const Span *span[TRACE_BATCH_MAX];
        size_t spans_len[TRACE_BATCH_MAX];
};

static void writer(FILE *f, void *userdata) {
        fprintf(f, "# HELP mooring_trace_spans_dropped_total Spans not exported: the queue was full, or the "
                   "collector refused them %d times.\n# TYPE mooring_trace_spans_dropped_total counter\n"
                   "mooring_trace_spans_dropped_total %" PRIu64 "\n",
                TRACE_RETRIES + 1, trace_dropped());
        fprintf(f, "# HELP mooring_trace_spans_exported_total Spans the collector accepted.\n"
                   "# TYPE mooring_trace_spans_exported_total counter\nmooring_trace_spans_exported_total %" PRIu64
                   "\n# HELP mooring_trace_queue_spans Spans waiting to be exported.\n"
                   "# TYPE mooring_trace_queue_spans gauge\nmooring_trace_queue_spans %zu\n",
                trace_exported(), trace_queue_length());
}

/* ---- encodings ---- */

/*
 * Written into one growing buffer, neither built as a JSON tree (an allocation per field, 256 spans
 * a batch) nor printed with stdio (its formatting was half the daemon's CPU on a traced healthz,
 * about 5k instructions per span in callgrind). Strings go through buf_json_str().
 */

static void buf_puts(GrowBuf *b, const char *s) {
        growbuf_put(b, s, strlen(s));
}

static void buf_u64(GrowBuf *b, uint64_t v) {
        char tmp[21];
        growbuf_put(b, tmp, (size_t) (fmt_u64(tmp, v) - tmp));
}

static void buf_hex(GrowBuf *b, const uint8_t *id, size_t n) {
        char tmp[33];
        trace_hex(id, n, tmp);
        growbuf_put(b, tmp, 2 * n);
}

/* A JSON string: '"' and '\' escaped, control characters (and DEL) as \u00XX; the rest as is. */
static void buf_json_str(GrowBuf *b, const char *s) {
        static const char hex[] = "0123456789abcdef";
        growbuf_lit(b, "\"");
        for (;;) {
                size_t run = 0;
                while (s[run] && s[run] != '"' && s[run] != '\\' && (unsigned char) s[run] >= 0x20 &&
                       (unsigned char) s[run] != 0x7f)
                        run++;
                growbuf_put(b, s, run);
                s += run;
                if (!*s)
                        break;
                unsigned char c = (unsigned char) *s++;
                if (c == '"' || c == '\\') {
                        char esc[2] = { '\\', (char) c };
                        growbuf_put(b, esc, 2);
                } else {
                        char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
                        growbuf_put(b, esc, 6);
                }
        }
        growbuf_lit(b, "\"");
}

static char *buf_finish(GrowBuf *b) {
        if (b->oom || !b->p) {
                free(b->p);
                return NULL;
        }
        return b->p;
}

/*
 * OTLP/HTTP protobuf (what daprd's exporter sends for otel.protocol http): an
 * ExportTraceServiceRequest written straight into one buffer of the exact size, computed first so
 * that every length prefix is known before its message. Ids go as raw bytes and times as fixed64,
 * so a span is mostly memcpy (the JSON mapping's hex ids and decimal times were most of the
 * exporter's cost). Field numbers are opentelemetry-proto's (trace/v1/trace.proto,
 * common/v1/common.proto, resource/v1/resource.proto, collector/trace/v1/trace_service.proto):
 *
 *   ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
 *   ResourceSpans  { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
 *   Resource       { repeated KeyValue attributes = 1; }
 *   ScopeSpans     { InstrumentationScope scope = 1; repeated Span spans = 2; }
 *   InstrumentationScope { string name = 1; }
 *   KeyValue       { string key = 1; AnyValue value = 2; }
 *   AnyValue       { oneof { string string_value = 1; int64 int_value = 3; } }
 *   Span           { bytes trace_id = 1; bytes span_id = 2; bytes parent_span_id = 4; string name = 5;
 *                    SpanKind kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
 *                    repeated KeyValue attributes = 9; Status status = 15; }
 *   Status         { StatusCode code = 3; }   (1 OK, 2 ERROR)
 */
#define STRLEN(s) (sizeof("" s "") - 1)
#define PB_TAG(field, wire) ((uint8_t) ((field) << 3 | (wire)))
#define PB_VARINT 0
#define PB_FIXED64 1
#define PB_LEN 2
#define OTLP_SCOPE "mooringd"
#define OTLP_SERVICE_KEY "service.name"
#define OTLP_STATUS_KEY "http.status_code"

static inline size_t pb_varint_size(uint64_t v) {
        /* one or two bytes: every length and value here but the times (fixed64) and a whole body */
        if (v < (1u << 7))
                return 1;
        if (v < (1u << 14))
                return 2;
        size_t n = 3;
        for (v >>= 21; v; v >>= 7)
                n++;
        return n;
}

static inline uint8_t *pb_varint(uint8_t *p, uint64_t v) {
        if (v < (1u << 7)) {
                p[0] = (uint8_t) v;
                return p + 1;
        }
        if (v < (1u << 14)) { /* an HTTP status, a span's length */
                p[0] = (uint8_t) (v | 0x80);
                p[1] = (uint8_t) (v >> 7);
                return p + 2;
        }
        for (; v >= 0x80; v >>= 7)
                *p++ = (uint8_t) (v | 0x80);
        *p++ = (uint8_t) v;
        return p;
}

/* A length-delimited field's tag and length; its content follows. */
static uint8_t *pb_head(uint8_t *p, unsigned field, size_t len) {
        *p++ = PB_TAG(field, PB_LEN);
        return pb_varint(p, len);
}

static uint8_t *pb_bytes(uint8_t *p, unsigned field, const void *b, size_t len) {
        p = pb_head(p, field, len);
        memcpy(p, b, len);
        return p + len;
}

/* The size of a length-delimited field (tag, length, content) whose content is len bytes. */
static size_t pb_field_size(size_t len) {
        return 1 + pb_varint_size(len) + len;
}

/* KeyValue { key = OTLP_STATUS_KEY, value = AnyValue { int_value = status } } */
static size_t otlp_status_attr_size(unsigned status) {
        return pb_field_size(STRLEN(OTLP_STATUS_KEY)) + pb_field_size(1 + pb_varint_size(status));
}

/* Names are shorter than 128 bytes: their length prefix, like every other one in a span but the
 * span's own, is one byte. */
_Static_assert(TRACE_NAME_MAX <= 128, "a span name's length must fit one varint byte");

static size_t otlp_span_size(const Span *s) {
        /* trace_id, span_id, name, kind, two times, status; parent and the status code attribute when set */
        size_t n = (2 + 16) + (2 + 8) + (2 + s->name_len) + 2 + 2 * 9 + 4;
        if (s->has_parent)
                n += 2 + 8;
        if (s->http_status)
                n += 2 + otlp_status_attr_size(s->http_status);
        return n;
}

static inline uint8_t *pb_fixed64_at(uint8_t *p, unsigned field, uint64_t v) {
        uint64_t le = htole64(v);
        p[0] = PB_TAG(field, PB_FIXED64);
        memcpy(p + 1, &le, 8);
        return p + 9;
}

/* One span: fixed-size stores for its fixed-size fields (the compiler turns them into moves). */
static uint8_t *otlp_span(uint8_t *p, const Span *s, size_t size, uint64_t offset) {
        p = pb_head(p, 2, size); /* ScopeSpans.spans */
        p[0] = PB_TAG(1, PB_LEN);
        p[1] = 16;
        memcpy(p + 2, s->ctx.trace_id, 16);
        p[18] = PB_TAG(2, PB_LEN);
        p[19] = 8;
        memcpy(p + 20, s->ctx.span_id, 8);
        p += 28;
        if (s->has_parent) {
                p[0] = PB_TAG(4, PB_LEN);
                p[1] = 8;
                memcpy(p + 2, s->parent_id, 8);
                p += 10;
        }
        p[0] = PB_TAG(5, PB_LEN);
        p[1] = s->name_len;
        memcpy(p + 2, span_name(s), s->name_len);
        p += 2 + s->name_len;
        p[0] = PB_TAG(6, PB_VARINT);
        p[1] = s->kind;
        p = pb_fixed64_at(p + 2, 7, (s->start_usec + offset) * 1000);
        p = pb_fixed64_at(p, 8, (s->end_usec + offset) * 1000);
        if (s->http_status) {
                static const uint8_t key[] = { PB_TAG(1, PB_LEN), STRLEN(OTLP_STATUS_KEY),
                                               'h', 't', 't', 'p', '.', 's', 't', 'a', 't', 'u', 's', '_', 'c', 'o',
                                               'd', 'e' };
                _Static_assert(sizeof key == 2 + STRLEN(OTLP_STATUS_KEY), "the key's bytes");
                size_t any = 1 + pb_varint_size(s->http_status);
                p[0] = PB_TAG(9, PB_LEN);
                p[1] = (uint8_t) otlp_status_attr_size(s->http_status);
                memcpy(p + 2, key, sizeof key);
                p += 2 + sizeof key;
                p[0] = PB_TAG(2, PB_LEN);
                p[1] = (uint8_t) any;
                p[2] = PB_TAG(3, PB_VARINT);
                p = pb_varint(p + 3, s->http_status);
        }
        p[0] = PB_TAG(15, PB_LEN);
        p[1] = 2;
        p[2] = PB_TAG(3, PB_VARINT);
        p[3] = s->error ? 2 : 1;
        return p + 4;
}

static bool same_service(const Span *a, const Span *b) {
        /* App ids are short: compared in place, eight bytes at a time, rather than through memcmp(). A
         * service is shorter than TRACE_SERVICE_MAX, a multiple of 8, at the start of text[], so whole
         * words never read past the array; the bytes after it (its NUL, the name) are masked off. */
        size_t n = a->service_len;
        if (n != b->service_len)
                return false;
        for (size_t i = 0; i < n; i += 8) {
                uint64_t x, y;
                memcpy(&x, span_service(a) + i, 8);
                memcpy(&y, span_service(b) + i, 8);
                x = le64toh(x ^ y); /* the first bytes are the low ones */
                if (n - i < 8)
                        x &= (UINT64_C(1) << (8 * (n - i))) - 1;
                if (x)
                        return false;
        }
        return true;
}
_Static_assert(TRACE_SERVICE_MAX % 8 == 0 && TRACE_SERVICE_MAX <= sizeof(((Span *) 0)->text), "same_service() reads whole words");

/* One ResourceSpans per service (app) among the n oldest queued spans, in the order first seen. */
static char *encode_otlp(TraceExporter *e, size_t n, size_t *ret_len) {
        const uint64_t offset = trace_realtime_offset_usec();
        uint32_t *span_size = e->span_size;
        uint16_t *group = e->group, *first = e->first;
        size_t *spans_len = e->spans_len;
        size_t n_groups = 0, total = 0;

        const Span **span = e->span;
        size_t g = 0;

        assert(n <= TRACE_BATCH_MAX);
        for (size_t i = 0; i < n; i++) {
                const Span *s = span[i] = trace_queue_at(i);
                /* the previous span's group first: a batch is mostly runs of one app's spans */
                if (g >= n_groups || !same_service(span[first[g]], s))
                        for (g = 0; g < n_groups; g++)
                                if (same_service(span[first[g]], s))
                                        break;
                if (g == n_groups) {
                        first[n_groups++] = (uint16_t) i;
                        spans_len[g] = 0;
                }
                group[i] = (uint16_t) g;
                span_size[i] = (uint32_t) otlp_span_size(s);
                spans_len[g] += pb_field_size(span_size[i]);
        }
        /* sizes, innermost first: AnyValue, KeyValue, Resource; scope; ScopeSpans; ResourceSpans */
        const size_t scope = pb_field_size(pb_field_size(STRLEN(OTLP_SCOPE)));
        for (g = 0; g < n_groups; g++) {
                const Span *f = span[first[g]];
                size_t any = pb_field_size(f->service_len);
                size_t kv = pb_field_size(STRLEN(OTLP_SERVICE_KEY)) + pb_field_size(any);
                size_t rs = pb_field_size(pb_field_size(kv)) + pb_field_size(scope + spans_len[g]);
                total += pb_field_size(rs);
        }

        if (e->spare_cap < total) {
                char *b = realloc(e->spare, total);
                if (!b)
                        return NULL;
                e->spare = b;
                e->spare_cap = total;
        }
        size_t cap = e->spare_cap;
        uint8_t *body = (uint8_t *) TAKE_PTR(e->spare), *p = body;
        e->spare_cap = 0;
        for (g = 0; g < n_groups; g++) {
                const Span *f = span[first[g]];
                size_t any = pb_field_size(f->service_len);
                size_t kv = pb_field_size(STRLEN(OTLP_SERVICE_KEY)) + pb_field_size(any);
                size_t rs = pb_field_size(pb_field_size(kv)) + pb_field_size(scope + spans_len[g]);
                p = pb_head(p, 1, rs);                          /* resource_spans */
                p = pb_head(p, 1, pb_field_size(kv));           /* .resource */
                p = pb_head(p, 1, kv);                          /* .attributes */
                p = pb_bytes(p, 1, OTLP_SERVICE_KEY, STRLEN(OTLP_SERVICE_KEY));
                p = pb_head(p, 2, any);                         /* .value */
                p = pb_bytes(p, 1, span_service(f), f->service_len); /* .string_value */
                p = pb_head(p, 2, scope + spans_len[g]);        /* .scope_spans */
                p = pb_head(p, 1, pb_field_size(STRLEN(OTLP_SCOPE)));
                p = pb_bytes(p, 1, OTLP_SCOPE, STRLEN(OTLP_SCOPE));
                for (size_t i = first[g]; i < n; i++)
                        if (group[i] == g)
                                p = otlp_span(p, span[i], span_size[i], offset);
        }
        assert((size_t) (p - body) == total);
        e->body_cap = MAX(total, cap);
        *ret_len = total;
        return (char *) body;
}

static void zipkin_span(GrowBuf *b, const Span *s, uint64_t offset) {
        const char *kind = s->kind == SPAN_SERVER ? "SERVER" : s->kind == SPAN_CLIENT ? "CLIENT"
                           : s->kind == SPAN_PRODUCER ? "PRODUCER" : s->kind == SPAN_CONSUMER ? "CONSUMER" : NULL;
        growbuf_lit(b, "{\"traceId\":\"");
        buf_hex(b, s->ctx.trace_id, 16);
        growbuf_lit(b, "\",\"id\":\"");
        buf_hex(b, s->ctx.span_id, 8);
        growbuf_lit(b, "\",");
        if (s->has_parent) {
                growbuf_lit(b, "\"parentId\":\"");
                buf_hex(b, s->parent_id, 8);
                growbuf_lit(b, "\",");
        }
        if (kind) {
                growbuf_lit(b, "\"kind\":\"");
                buf_puts(b, kind);
                growbuf_lit(b, "\",");
        }
        growbuf_lit(b, "\"name\":");
        buf_json_str(b, span_name(s));
        growbuf_lit(b, ",\"timestamp\":");
        buf_u64(b, s->start_usec + offset);
        growbuf_lit(b, ",\"duration\":");
        buf_u64(b, s->end_usec - s->start_usec);
        growbuf_lit(b, ",\"localEndpoint\":{\"serviceName\":");
        buf_json_str(b, span_service(s));
        growbuf_lit(b, "},\"tags\":{");
        if (s->http_status) {
                growbuf_lit(b, "\"http.status_code\":\"");
                buf_u64(b, s->http_status);
                growbuf_lit(b, "\"");
                if (s->error)
                        growbuf_lit(b, ",");
        }
        if (s->error)
                growbuf_lit(b, "\"error\":\"true\"");
        growbuf_lit(b, "}}");
}

/* Zipkin v2 JSON: an array of the n oldest queued spans. */
static char *encode_zipkin(size_t n, size_t *ret_len) {
        const uint64_t offset = trace_realtime_offset_usec();
        GrowBuf b = {};
        growbuf_lit(&b, "[");
        for (size_t i = 0; i < n; i++) {
                if (i)
                        growbuf_lit(&b, ",");
                zipkin_span(&b, trace_queue_at(i), offset);
        }
        growbuf_lit(&b, "]");
        *ret_len = b.len;
        return buf_finish(&b);
}

/* ---- sending (the exporter's thread) ---- */

static void batch_done(TraceExporter *e) {
        /* the body's buffer is kept for the next (the largest one, bounded by a full batch) */
        if (e->body && e->format == EXPORT_OTLP_HTTP && !e->spare) {
                e->spare = TAKE_PTR(e->body);
                e->spare_cap = e->body_cap;
        }
        free(e->body);
        e->body = NULL;
        e->body_len = 0;
        e->n_spans = 0;
        e->attempts = 0;
        e->retry_at = 0;
        atomic_store(&e->busy, false);
}

/* Tells the loop thread that the flush it asked for is over. */
static void flush_over(TraceExporter *e) {
        uint64_t one = 1;
        e->flushing = false;
        atomic_store(&e->flush, false);
        (void) !write(e->flushed_fd, &one, sizeof one);
}

static void pump(TraceExporter *e, uint64_t t);

/* A transfer is over: code is the collector's HTTP status, or 0 when none came (why says what
 * failed). t: now. */
static void on_sent(TraceExporter *e, long code, const char *why, uint64_t t) {
        e->in_flight = false;
        if (code >= 200 && code <= 299) {
                trace_count_exported(e->n_spans);
                batch_done(e);
                return;
        }
        e->attempts++;
        if (e->attempts > TRACE_RETRIES || e->flushing) {
                log_warning("Trace export to %s failed %u times (%s), dropping %zu spans.", e->url, e->attempts,
                            code ? "HTTP error" : why, e->n_spans);
                trace_count_dropped(e->n_spans);
                batch_done(e);
        } else {
                uint64_t backoff = BACKOFF_MIN_USEC << (e->attempts - 1);
                if (e->attempts == 1)
                        log_debug("Trace export to %s failed (%s, HTTP %ld), retrying.", e->url,
                                  code ? "answer" : why, code);
                e->retry_at = t + MIN(backoff, BACKOFF_MAX_USEC);
        }
}

static void on_curl_done(TraceExporter *e, CURLcode result, uint64_t t) {
        long code = 0;
        if (result == CURLE_OK)
                (void) sym_curl_easy_getinfo(e->easy, CURLINFO_RESPONSE_CODE, &code);
        on_sent(e, code, result != CURLE_OK ? sym_curl_easy_strerror(result) : "no status", t);
}

/* trace_http_post()'s question while it waits: is the daemon going, or a flush out of time? */
static bool post_canceled(void *userdata) {
        TraceExporter *e = userdata;
        /* the flush flag itself, not e->flushing: a flush asked for while this post waits has a deadline
         * too (set before the flag) */
        return atomic_load(&e->stop) ||
               (atomic_load(&e->flush) && trace_now_usec() >= atomic_load(&e->flush_deadline));
}

static void send_body(TraceExporter *e, uint64_t t) {
        if (e->http) {
                /* our own client: the whole transfer, here (the thread has nothing else to do) */
                e->last_send = t;
                int r = trace_http_post(e->http, e->body, e->body_len, t + (uint64_t) e->timeout_ms * 1000,
                                        e->wake_fd, post_canceled, e);
                on_sent(e, r > 0 ? r : 0, r < 0 ? strerror(-r) : "no status", trace_now_usec());
                return;
        }
        if (sym_curl_easy_setopt(e->easy, CURLOPT_URL, e->url) != CURLE_OK ||
            sym_curl_easy_setopt(e->easy, CURLOPT_POSTFIELDS, e->body) != CURLE_OK ||
            sym_curl_easy_setopt(e->easy, CURLOPT_POSTFIELDSIZE, (long) e->body_len) != CURLE_OK ||
            sym_curl_easy_setopt(e->easy, CURLOPT_HTTPHEADER, e->headers) != CURLE_OK ||
            sym_curl_easy_setopt(e->easy, CURLOPT_TIMEOUT_MS, e->timeout_ms) != CURLE_OK ||
            sym_curl_easy_setopt(e->easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            sym_curl_multi_add_handle(e->multi, e->easy) != CURLM_OK) {
                trace_count_dropped(e->n_spans);
                batch_done(e);
                return;
        }
        e->in_flight = true;
        e->last_send = t;
}

static void write_stdout(size_t n) {
        const uint64_t offset = trace_realtime_offset_usec();
        for (size_t i = 0; i < n; i++) {
                GrowBuf b = {};
                zipkin_span(&b, trace_queue_at(i), offset);
                growbuf_lit(&b, "\n");
                _cleanup_free_ char *line = buf_finish(&b);
                if (line)
                        fputs(line, stdout);
        }
        fflush(stdout);
}

/* Starts the next transfer when it is time (a retry that is due, or a new batch); ends a flush when
 * nothing is left. t: now (CLOCK_MONOTONIC microseconds). */
static void pump(TraceExporter *e, uint64_t t) {
        if (e->in_flight)
                return;
        if (e->body) {
                if (e->retry_at <= t || e->flushing)
                        send_body(e, t);
                return;
        }
        size_t q = trace_queue_length();
        if (q == 0 || (!e->flushing && q < TRACE_BATCH_READY && t - e->last_send < SEND_EVERY_USEC)) {
                if (q == 0 && e->flushing)
                        flush_over(e);
                return;
        }
        /* Encoded from the queue in place, then taken off it: the body is what a retry resends. */
        e->n_spans = MIN(q, (size_t) TRACE_BATCH_MAX);
        if (atomic_load_explicit(&e->to_stdout, memory_order_relaxed))
                write_stdout(e->n_spans);
        if (!e->url) {
                trace_queue_pop(e->n_spans);
                trace_count_exported(e->n_spans);
                e->n_spans = 0;
                e->last_send = t;
                return pump(e, t);
        }
        e->body = e->format == EXPORT_OTLP_HTTP ? encode_otlp(e, e->n_spans, &e->body_len)
                                                : encode_zipkin(e->n_spans, &e->body_len);
        /* busy before the spans leave the queue: trace_exporter_flush() never sees neither */
        atomic_store(&e->busy, true);
        trace_queue_pop(e->n_spans);
        if (!e->body) {
                trace_count_dropped(e->n_spans);
                batch_done(e);
                return;
        }
        send_body(e, t);
}

/* How long the thread may sleep: until the next thing it has to do, a tick at most. */
static int sleep_ms(TraceExporter *e, uint64_t t) {
        uint64_t next = t + TICK_USEC;
        size_t q = trace_queue_length();
        if (e->body && !e->in_flight)
                next = MIN(next, e->retry_at);
        else if (!e->body && q >= TRACE_BATCH_READY)
                return 0; /* a batch waits (our client's transfer ended inside pump()) */
        else if (!e->body && q > 0)
                next = MIN(next, e->last_send + SEND_EVERY_USEC);
        if (e->flushing)
                next = MIN(next, atomic_load(&e->flush_deadline));
        return next > t ? (int) ((next - t + 999) / 1000) : 0;
}

/* Runs libcurl's part of the transfer out, if one is; true when it has just ended. */
static bool drive(TraceExporter *e, uint64_t t) {
        int running = 0, left = 0;
        CURLMsg *m;
        bool ended = false;

        if (!e->multi)
                return false;
        (void) sym_curl_multi_perform(e->multi, &running);
        while ((m = sym_curl_multi_info_read(e->multi, &left)))
                if (m->msg == CURLMSG_DONE && m->easy_handle == e->easy) {
                        CURLcode result = m->data.result;
                        (void) sym_curl_multi_remove_handle(e->multi, e->easy);
                        on_curl_done(e, result, t);
                        ended = true;
                }
        return ended;
}

/* Sleeps until woken (wake_fd) or ms have passed, watching the transfer's sockets if one is out. */
static void wait_for_work(TraceExporter *e, int ms) {
        if (e->multi) {
                struct curl_waitfd w = { .fd = e->wake_fd, .events = CURL_WAIT_POLLIN };
                (void) sym_curl_multi_poll(e->multi, &w, 1, ms, NULL);
        } else {
                struct pollfd p = { .fd = e->wake_fd, .events = POLLIN };
                (void) poll(&p, 1, ms);
        }
        uint64_t n;
        (void) !read(e->wake_fd, &n, sizeof n); /* non-blocking: resets the count if it was woken */
}

static void *exporter_thread(void *userdata) {
        TraceExporter *e = userdata;

        while (!atomic_load(&e->stop)) {
                uint64_t t = trace_now_usec();
                if (!e->flushing && atomic_load(&e->flush))
                        e->flushing = true;
                if (e->flushing && t >= atomic_load(&e->flush_deadline)) {
                        /* out of time: what is left is dropped, the daemon goes */
                        if (e->in_flight) {
                                (void) sym_curl_multi_remove_handle(e->multi, e->easy);
                                e->in_flight = false;
                        }
                        size_t q = trace_queue_length();
                        trace_queue_pop(q);
                        trace_count_dropped(q + e->n_spans);
                        batch_done(e);
                        flush_over(e);
                }
                pump(e, t);
                if (drive(e, t))
                        continue; /* a batch has just ended: the next may go at once */
                wait_for_work(e, sleep_ms(e, t));
        }
        if (e->in_flight) {
                (void) sym_curl_multi_remove_handle(e->multi, e->easy);
                e->in_flight = false;
        }
        return NULL;
}

static void wake(TraceExporter *e) {
        uint64_t one = 1;
        (void) !write(e->wake_fd, &one, sizeof one);
}

/* ---- the loop thread's side ---- */

/* A batch is ready (trace_span_end(), on a request's path): wake the exporter. */
static void on_batch_ready(void *userdata) {
        wake(userdata);
}

static int on_flushed(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        TraceExporter *e = userdata;
        uint64_t n;
        (void) !read(fd, &n, sizeof n);
        if (e->flushed) {
                TraceFlushedFn fn = e->flushed;
                e->flushed = NULL;
                fn(e->flushed_userdata);
        }
        return 0;
}

TraceExporter *trace_exporter_free(TraceExporter *e) {
        if (!e)
                return NULL;
        metrics_remove_writer(writer, e);
        trace_set_batch_ready(0, NULL, NULL);
        if (e->thread_started) {
                atomic_store(&e->stop, true);
                wake(e);
                (void) pthread_join(e->thread, NULL);
        }
        sd_event_source_disable_unref(e->flushed_source);
        trace_http_free(e->http);
        if (e->easy)
                sym_curl_easy_cleanup(e->easy);
        if (e->multi)
                (void) sym_curl_multi_cleanup(e->multi);
        if (e->headers)
                sym_curl_slist_free_all(e->headers);
        safe_close(e->wake_fd);
        safe_close(e->flushed_fd);
        trace_count_dropped(e->n_spans);
        free(e->body);
        free(e->spare);
        free(e->url);
        free(e->headers_spec);
        free(e);
        (void) trace_queue_setup(0);
        return NULL;
}

/* "host:port" → "http://host:port/v1/traces"; a URL with a scheme keeps it, a path is kept. */
static char *otlp_url(const ConfigTracing *t) {
        const char *a = t->otel_endpoint;
        bool scheme = strstr(a, "://") != NULL;
        const char *host = scheme ? strstr(a, "://") + 3 : a;
        bool path = strchr(host, '/') != NULL;
        char *u = NULL;
        /* daprd: isSecure defaults to true */
        bool secure = t->otel_is_secure_set ? t->otel_is_secure : true;
        if (asprintf(&u, "%s%s%s", scheme ? "" : secure ? "https://" : "http://", a,
                     path ? "" : "/v1/traces") < 0)
                return NULL;
        return u;
}

void trace_exporter_configure(TraceExporter **ret, sd_event *event, const Configuration *c) {
        const ConfigTracing *t = c ? &c->tracing : NULL;
        _cleanup_free_ char *url = NULL, *err = NULL;
        ExportFormat format = EXPORT_ZIPKIN;
        TraceExporter *e = *ret;

        if (t && t->otel_endpoint && t->otel_protocol && streq(t->otel_protocol, "grpc"))
                log_warning("Configuration %s: spec.tracing.otel.protocol grpc is not supported by mooringd, "
                            "use http (OTLP/HTTP); traces are not exported there.", c->file);
        else if (t && t->otel_endpoint) {
                format = EXPORT_OTLP_HTTP;
                url = otlp_url(t);
        } else if (t && t->zipkin_endpoint)
                url = strdup(t->zipkin_endpoint);
        bool to_stdout = t && t->stdout_;
        if (!url && !to_stdout) {
                *ret = trace_exporter_free(e);
                return;
        }
        const char *hspec = format == EXPORT_OTLP_HTTP ? t->otel_headers : NULL;
        long timeout = format == EXPORT_OTLP_HTTP && t->otel_timeout_ms ? (long) t->otel_timeout_ms : REQUEST_TIMEOUT_MS;
        if (e && streq_ptr(e->url, url) && e->format == format && streq_ptr(e->headers_spec, hspec) &&
            e->timeout_ms == timeout) {
                atomic_store(&e->to_stdout, to_stdout);
                return;
        }
        *ret = e = trace_exporter_free(e);

        e = calloc(1, sizeof *e);
        if (!e) {
                log_oom();
                return;
        }
        e->wake_fd = e->flushed_fd = -EBADF;
        e->format = format;
        atomic_store(&e->to_stdout, to_stdout);
        e->url = TAKE_PTR(url);
        e->timeout_ms = timeout;
        int r = 0;
        if (hspec && !(e->headers_spec = strdup(hspec)))
                r = -ENOMEM;
        /* The header lines of every request: the content type, then otel.headers "k1=v1,k2=v2"
         * (daprd's form) as "k1: v1" ...; an item with a control character in it is left out. */
        GrowBuf extra = {};
        if (format == EXPORT_OTLP_HTTP)
                growbuf_lit(&extra, "Content-Type: application/x-protobuf\r\n");
        else
                growbuf_lit(&extra, "Content-Type: application/json\r\n");
        for (const char *p = e->headers_spec; p && *p;) {
                size_t l = strcspn(p, ","), eq = strcspn(p, "=");
                bool clean = true;
                for (size_t i = 0; i < l; i++)
                        clean = clean && (unsigned char) p[i] >= ' ' && p[i] != 0x7f;
                if (clean && eq > 0 && eq < l) {
                        growbuf_put(&extra, p, eq);
                        growbuf_lit(&extra, ": ");
                        growbuf_put(&extra, p + eq + 1, l - eq - 1);
                        growbuf_lit(&extra, "\r\n");
                }
                p += l + (p[l] == ',');
        }
        _cleanup_free_ char *head_extra = buf_finish(&extra);
        if (!head_extra)
                r = -ENOMEM;
        /* a plain http:// collector gets our own client; https:// (or a URL it does not take) libcurl */
        if (r >= 0 && e->url) {
                r = trace_http_new(e->url, head_extra, &e->http);
                if (r == -EINVAL)
                        r = 0;
        }
        if (r >= 0 && e->url && !e->http) {
                r = dlopen_curl("trace export", &err);
                if (r >= 0 && !(e->multi = sym_curl_multi_init()))
                        r = -ENOMEM;
                if (r >= 0 && !(e->easy = sym_curl_easy_init()))
                        r = -ENOMEM;
                for (char *line = head_extra, *end; r >= 0 && line && (end = strstr(line, "\r\n")); line = end + 2) {
                        struct curl_slist *n;
                        *end = 0;
                        if (!(n = sym_curl_slist_append(e->headers, line)))
                                r = -ENOMEM;
                        else
                                e->headers = n;
                }
        }
        if (r >= 0 && ((e->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
                       (e->flushed_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0))
                r = -errno;
        if (r >= 0)
                r = sd_event_add_io(event, &e->flushed_source, e->flushed_fd, EPOLLIN, on_flushed, e);
        if (r >= 0)
                r = trace_queue_setup(TRACE_QUEUE_MAX);
        if (r >= 0)
                r = metrics_add_writer(writer, e);
        if (r >= 0) {
                /* Spans are encoded and sent on a thread of their own: the loop only copies each into the
                 * ring (see trace.h). It inherits the loop thread's blocked signals. */
                e->last_send = trace_now_usec();
                r = -pthread_create(&e->thread, NULL, exporter_thread, e);
                e->thread_started = r >= 0;
                if (r >= 0)
                        (void) pthread_setname_np(e->thread, "trace-export");
        }
        if (r >= 0)
                trace_set_batch_ready(TRACE_BATCH_READY, on_batch_ready, e);
        if (r < 0) {
                log_error_errno(r, "Cannot export traces%s%s: %m", err ? ": " : "", strempty(err));
                trace_exporter_free(e);
                return;
        }
        log_info("Exporting traces to %s (%s).", e->url ?: "stdout",
                 !e->url ? "JSON lines" : format == EXPORT_OTLP_HTTP ? "OTLP/HTTP protobuf" : "Zipkin v2 JSON");
        *ret = e;
}

/* Called on the loop thread: the exporter's thread sends what is queued at once and says when the
 * queue is empty (on_flushed()), or gives up at the deadline. */
void trace_exporter_flush(TraceExporter *e, TraceFlushedFn done, void *userdata) {
        if (!e || (trace_queue_length() == 0 && !atomic_load(&e->busy))) {
                done(userdata);
                return;
        }
        e->flushed = done;
        e->flushed_userdata = userdata;
        atomic_store(&e->flush_deadline, trace_now_usec() + TRACE_FLUSH_USEC);
        atomic_store(&e->flush, true);
        wake(e);
}
