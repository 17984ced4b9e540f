/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See metrics.h. Every series lives in a fixed table of its AppMetrics,
 * found by hashing its labels (open addressing, linear probing): a request
 * that brings a label value never seen before takes a free slot or, once the
 * table is full, lands in the overflow series. Nothing grows at run time.
 *
 * Histograms keep one counter per bucket (not cumulative) and are summed at
 * scrape time, so recording touches one bucket. Latencies are milliseconds
 * and sizes bytes, with daprd's bucket bounds, so Dapr's Grafana dashboards
 * read them unchanged.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "app.h"
#include "component.h"
#include "metrics.h"
#include "registry.h"

/* daprd's latency distribution, milliseconds (diagnostics/utils defaultLatencyDistribution). */
static const double lat_bounds[] = { 1,   2,   3,   4,   5,   6,    8,    10,   13,    16,    20,    25,
                                     30,  40,  50,  65,  80,  100,  130,  160,  200,   250,   300,   400,
                                     500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000 };
#define LAT_N ELEMENTSOF(lat_bounds)
/* daprd's size distribution, bytes (defaultSizeDistribution). */
static const double size_bounds[] = { 1024,     2048,      4096,      16384,      65536,      262144,    1048576,
                                      4194304,  16777216,  67108864,  268435456,  1073741824, 4294967296.0 };
#define SIZE_N ELEMENTSOF(size_bounds)
/* The same bounds as integers, microseconds and bytes: what recording compares with. */
static const uint64_t lat_bounds_usec[] = {
        1000,   2000,   3000,   4000,   5000,   6000,   8000,    10000,   13000,    16000,    20000,    25000,
        30000,  40000,  50000,  65000,  80000,  100000, 130000,  160000,  200000,   250000,   300000,   400000,
        500000, 650000, 800000, 1000000, 2000000, 5000000, 10000000, 20000000, 50000000, 100000000 };
static const uint64_t size_bounds_int[] = { 1024,     2048,      4096,      16384,      65536,      262144,
                                            1048576,  4194304,   16777216,  67108864,  268435456, 1073741824,
                                            4294967296ULL };
_Static_assert(ELEMENTSOF(lat_bounds_usec) == ELEMENTSOF(lat_bounds), "latency bounds differ");
_Static_assert(ELEMENTSOF(size_bounds_int) == ELEMENTSOF(size_bounds), "size bounds differ");

typedef struct LatHist {
        uint64_t count;
        uint64_t sum;      /* microseconds */
        uint64_t b[LAT_N]; /* observations <= bound i (and > bound i-1); above the last: count - sum(b) */
} LatHist;

typedef struct SizeHist {
        uint64_t count;
        uint64_t sum;      /* bytes */
        uint64_t b[SIZE_N];
} SizeHist;

typedef MetricsMethod Method;
static const char *const method_names[_METRICS_METHOD_MAX] = { "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
                                                  "_other" };

#define SERVER_SLOTS 128
#define CLIENT_SLOTS 32
#define COMP_SLOTS 128
#define COMP_NAME_MAX 64
#define COMP_OP_MAX 24
#define COMP_TOPIC_MAX 96
#define COMP_STATUS_MAX 16
#define STATUS_OTHER 0xFFFFu /* the overflow series' status */
/* gRPC methods' series share the server table: route GRPC_ROUTE | method (HTTP routes are below
 * 0x8000, or METRICS_ROUTE_UNMATCHED) */
#define GRPC_ROUTE 0x8000u
#define GRPC_ROUTE_MASK 0xC000u

/* Internal kinds kept in the component table besides MetricsKind. */
enum {
        K_INIT_OK = _METRICS_KIND_MAX,
        K_INIT_FAIL,
        _K_MAX,
};

typedef struct ServerSeries {
        bool used;
        uint8_t method;
        uint16_t route;    /* GRPC_ROUTE | index: a gRPC method's series (status: its code + 1) */
        uint16_t status;   /* 0: the request_count series (started requests) */
        uint64_t count;
        LatHist lat;       /* unused for status 0 */
} ServerSeries;

typedef struct ClientSeries {
        bool used;
        uint8_t kind, method;
        uint16_t status;
        uint64_t count;
        LatHist lat;
        SizeHist sent;
} ClientSeries;

typedef struct CompSeries {
        bool used;
        uint8_t kind;
        char component[COMP_NAME_MAX];
        char op[COMP_OP_MAX];
        char topic[COMP_TOPIC_MAX];
        char status[COMP_STATUS_MAX];
        uint64_t count;
        LatHist lat;
} CompSeries;

struct AppMetrics {
        bool disabled;     /* zero, the mapping's default, is enabled: creating one writes nothing */
        /* The series the last request began and ended in: the next is most often the same (a client
         * repeating its call), found without hashing and probing. Points into server[] (or overflow). */
        ServerSeries *last_begin, *last_end, *last_grpc;
        ClientSeries *last_client;
        SizeHist request_bytes, response_bytes, client_received;
        ServerSeries server[SERVER_SLOTS];
        ServerSeries server_overflow;
        ClientSeries client[CLIENT_SLOTS];
        ClientSeries client_overflow;
        CompSeries comp[COMP_SLOTS];
        CompSeries comp_overflow[_K_MAX];
};

static const char *(*route_label)(unsigned route);

typedef struct Writer {
        MetricsWriterFn fn;
        void *userdata;
} Writer;
static Writer writers[16];

/*
 * The tables are fixed (about 120 KiB per app) so that recording never allocates, but most apps use a
 * few series: they are mapped, not malloc'd, so that only the pages a recording touched become
 * resident (a malloc'd block may be recycled memory that calloc() clears page by page). An idle
 * app costs nothing until its first recording.
 */
AppMetrics *app_metrics_new(void) {
        AppMetrics *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                return NULL;
        return m;
}

AppMetrics *app_metrics_free(AppMetrics *m) {
        if (m)
                (void) munmap(m, sizeof *m);
        return NULL;
}

void app_metrics_set_enabled(AppMetrics *m, bool enabled) {
        if (m && m->disabled == enabled)
                m->disabled = !enabled;
}

bool app_metrics_enabled(const AppMetrics *m) {
        return m && !m->disabled;
}

uint64_t app_metrics_requests(const AppMetrics *m) {
        uint64_t n = 0;
        if (!m)
                return 0;
        for (size_t i = 0; i < SERVER_SLOTS; i++)
                if (m->server[i].used && m->server[i].status == 0)
                        n += m->server[i].count;
        return n;
}

static const char *(*grpc_label)(unsigned method);

void metrics_set_grpc_method_labels(const char *(*name_of)(unsigned method)) {
        grpc_label = name_of;
}

static bool is_grpc(const ServerSeries *s) {
        return s->status != STATUS_OTHER && (s->route & GRPC_ROUTE_MASK) == GRPC_ROUTE;
}

void metrics_set_route_labels(const char *(*path_of)(unsigned route)) {
        route_label = path_of;
}

int metrics_add_writer(MetricsWriterFn fn, void *userdata) {
        for (size_t i = 0; i < ELEMENTSOF(writers); i++)
                if (!writers[i].fn) {
                        writers[i] = (Writer){ fn, userdata };
                        return 0;
                }
        return -ENOSPC;
}

void metrics_remove_writer(MetricsWriterFn fn, void *userdata) {
        for (size_t i = 0; i < ELEMENTSOF(writers); i++)
                if (writers[i].fn == fn && writers[i].userdata == userdata)
                        writers[i] = (Writer){};
}

/* ---- recording ---- */

MetricsMethod metrics_method(const char *s) {
        /* A fixed set: whatever a client invents counts as "_other". */
        switch (s ? s[0] : 0) {
        case 'G': return streq(s, "GET") ? METRICS_GET : METRICS_METHOD_OTHER;
        case 'P':
                /* the most frequent (invoke), compared in place: each test stops at the first
                 * difference, the terminator included, so a shorter s is never read past */
                if (s[1] == 'O' && s[2] == 'S' && s[3] == 'T' && s[4] == 0)
                        return METRICS_POST;
                return streq(s, "PUT") ? METRICS_PUT : streq(s, "PATCH") ? METRICS_PATCH : METRICS_METHOD_OTHER;
        case 'D': return streq(s, "DELETE") ? METRICS_DELETE : METRICS_METHOD_OTHER;
        case 'H': return streq(s, "HEAD") ? METRICS_HEAD : METRICS_METHOD_OTHER;
        case 'O': return streq(s, "OPTIONS") ? METRICS_OPTIONS : METRICS_METHOD_OTHER;
        default: return METRICS_METHOD_OTHER;
        }
}

/* The bucket of each whole number of milliseconds up to LAT_TABLE_MS: most latencies. */
#define LAT_TABLE_MS 100
static uint8_t lat_bucket_of_ms[LAT_TABLE_MS + 1];

static void lat_table_init(void) {
        for (size_t ms = 0, i = 0; ms <= LAT_TABLE_MS; ms++) {
                while (lat_bounds_usec[i] < ms * 1000)
                        i++;
                lat_bucket_of_ms[ms] = (uint8_t) i;
        }
}

static void lat_add(LatHist *h, uint64_t usec) {
        h->count++;
        h->sum += usec;
        /* A value in (k-1, k] milliseconds falls in the first bucket whose bound is >= k ms (the bounds
         * are whole milliseconds): a table lookup for the common ones, a walk for the rest. */
        uint64_t ms = (usec + 999) / 1000;
        if (ms <= LAT_TABLE_MS) {
                if (_unlikely_(lat_bucket_of_ms[LAT_TABLE_MS] == 0))
                        lat_table_init();
                h->b[lat_bucket_of_ms[ms]]++;
                return;
        }
        for (size_t i = 0; i < LAT_N; i++)
                if (usec <= lat_bounds_usec[i]) {
                        h->b[i]++;
                        return;
                }
}

static void size_add(SizeHist *h, uint64_t len) {
        h->count++;
        h->sum += len;
        for (size_t i = 0; i < SIZE_N; i++)
                if (len <= size_bounds_int[i]) {
                        h->b[i]++;
                        return;
                }
}

static uint32_t mix(uint32_t h, uint32_t v) {
        h ^= v;
        return h * 16777619u;
}

static uint32_t hash_str(uint32_t h, const char *s, size_t max) {
        for (size_t i = 0; s && s[i] && i < max - 1; i++)
                h = mix(h, (unsigned char) s[i]);
        return mix(h, 0xff);
}

/* Out of line: the cached lookup below, inlined into every recording, stays a few instructions. */
__attribute__((noinline)) static ServerSeries *server_series(AppMetrics *m, unsigned route, Method method,
                                                             unsigned status) {
        uint32_t h = mix(mix(mix(2166136261u, route), method), status);
        for (size_t i = 0; i < SERVER_SLOTS; i++) {
                ServerSeries *s = &m->server[(h + i) & (SERVER_SLOTS - 1)];
                if (!s->used) {
                        *s = (ServerSeries){ .used = true, .route = route, .method = method, .status = status };
                        return s;
                }
                if (s->route == route && s->method == method && s->status == status)
                        return s;
        }
        m->server_overflow.used = true;
        m->server_overflow.route = METRICS_ROUTE_UNMATCHED;
        m->server_overflow.method = METRICS_METHOD_OTHER;
        m->server_overflow.status = STATUS_OTHER;
        return &m->server_overflow;
}

/* server_series() through a one-entry cache *last. */
static inline ServerSeries *server_series_cached(AppMetrics *m, ServerSeries **last, unsigned route, Method method,
                                                 unsigned status) {
        ServerSeries *s = *last;
        if (s && s->route == route && s->method == method && s->status == status)
                return s;
        return (*last = server_series(m, route, method, status));
}

void metrics_http_server_begin(AppMetrics *m, unsigned route, MetricsMethod method, uint64_t body_len) {
        if (!m || m->disabled)
                return;
        server_series_cached(m, &m->last_begin, route, method, 0)->count++;
        size_add(&m->request_bytes, body_len);
}

void metrics_http_server_end(AppMetrics *m, unsigned route, MetricsMethod method, unsigned status,
                             uint64_t response_len, uint64_t usec) {
        if (!m || m->disabled)
                return;
        /* Status 0 is the started-requests series: an answer always has a status >= 100. */
        ServerSeries *s = server_series_cached(m, &m->last_end, route, method,
                                               status < 100 || status > 999 ? 999 : status);
        s->count++;
        lat_add(&s->lat, usec);
        size_add(&m->response_bytes, response_len);
}

void metrics_grpc_server(AppMetrics *m, unsigned method, unsigned code, uint64_t usec) {
        if (!m || m->disabled)
                return;
        ServerSeries *s = server_series_cached(m, &m->last_grpc, GRPC_ROUTE | (MIN(method, METRICS_GRPC_UNKNOWN)), 0,
                                               MIN(code, 16u) + 1);
        s->count++;
        lat_add(&s->lat, usec);
}

void metrics_http_client(AppMetrics *m, MetricsCallKind kind, const char *method, unsigned status,
                         uint64_t sent_len, uint64_t received_len, uint64_t usec) {
        if (!m || m->disabled)
                return;
        Method me = metrics_method(method);
        if (status > 999)
                status = 999;
        ClientSeries *s = m->last_client;
        if (s && (s->kind != kind || s->method != me || s->status != status))
                s = NULL;
        uint32_t h = s ? 0 : mix(mix(mix(2166136261u, kind), me), status); /* the last series: no search */
        for (size_t i = 0; i < CLIENT_SLOTS && !s; i++) {
                ClientSeries *c = &m->client[(h + i) & (CLIENT_SLOTS - 1)];
                if (!c->used)
                        *c = (ClientSeries){ .used = true, .kind = kind, .method = me, .status = status };
                if (c->kind == kind && c->method == me && c->status == status)
                        s = c;
        }
        if (!s) {
                s = &m->client_overflow;
                s->used = true;
                s->kind = kind;
                s->method = METRICS_METHOD_OTHER;
                s->status = STATUS_OTHER;
        }
        m->last_client = s;
        s->count++;
        lat_add(&s->lat, usec);
        size_add(&s->sent, sent_len);
        size_add(&m->client_received, received_len);
}

static bool field_eq(const char *field, const char *s, size_t max) {
        return strncmp(field, strempty(s), max - 1) == 0;
}

static void field_set(char *field, const char *s, size_t max) {
        /* Truncated past max-1 bytes (names and topics that long share a series). */
        snprintf(field, max, "%s", strempty(s));
}

static void comp_record(AppMetrics *m, unsigned kind, const char *component, const char *op, const char *topic,
                        const char *status, uint64_t usec, bool timed) {
        uint32_t h = mix(2166136261u, kind);
        h = hash_str(h, component, COMP_NAME_MAX);
        h = hash_str(h, op, COMP_OP_MAX);
        h = hash_str(h, topic, COMP_TOPIC_MAX);
        h = hash_str(h, status, COMP_STATUS_MAX);
        CompSeries *s = NULL;
        for (size_t i = 0; i < COMP_SLOTS && !s; i++) {
                CompSeries *c = &m->comp[(h + i) & (COMP_SLOTS - 1)];
                if (!c->used) {
                        c->used = true;
                        c->kind = kind;
                        field_set(c->component, component, COMP_NAME_MAX);
                        field_set(c->op, op, COMP_OP_MAX);
                        field_set(c->topic, topic, COMP_TOPIC_MAX);
                        field_set(c->status, status, COMP_STATUS_MAX);
                        s = c;
                } else if (c->kind == kind && field_eq(c->component, component, COMP_NAME_MAX) &&
                           field_eq(c->op, op, COMP_OP_MAX) && field_eq(c->topic, topic, COMP_TOPIC_MAX) &&
                           field_eq(c->status, status, COMP_STATUS_MAX))
                        s = c;
        }
        if (!s) {
                s = &m->comp_overflow[kind];
                if (!s->used) {
                        s->used = true;
                        s->kind = kind;
                        field_set(s->component, "_other", COMP_NAME_MAX);
                        field_set(s->op, op ? "_other" : NULL, COMP_OP_MAX);
                        field_set(s->topic, topic ? "_other" : NULL, COMP_TOPIC_MAX);
                        field_set(s->status, "_other", COMP_STATUS_MAX);
                }
        }
        s->count++;
        if (timed)
                lat_add(&s->lat, usec);
}

void metrics_component_op(AppMetrics *m, MetricsKind kind, const char *component, const char *operation,
                          const char *topic, const char *status, uint64_t usec) {
        if (!m || m->disabled || kind < 0 || kind >= _METRICS_KIND_MAX)
                return;
        comp_record(m, kind, component, operation, topic, status, usec, true);
}

void metrics_component_init(AppMetrics *host, const char *component, bool ok) {
        if (!host || host->disabled)
                return;
        comp_record(host, ok ? K_INIT_OK : K_INIT_FAIL, component, NULL, NULL, ok ? NULL : "init", 0, false);
}

/* ---- exposition ---- */

typedef struct Family {
        const char *name;          /* without _count/_latencies */
        const char *help_count, *help_lat;
        const char *op_label;      /* label name of the op field, NULL: none */
        const char *status_label;  /* label name of the status field */
        bool topic;
} Family;

/* Names and labels as daprd (pkg/diagnostics/component_monitoring.go). */
static const Family families[_METRICS_KIND_MAX] = {
        [METRICS_STATE] = { "dapr_component_state", "The number of operations performed on the state component.",
                            "The latency of the response from the state component.", "operation", "success",
                            false },
        [METRICS_PUBSUB_EGRESS] = { "dapr_component_pubsub_egress",
                                    "The number of outgoing messages published to the pub/sub component.",
                                    "The latency of the response from the pub/sub component.", NULL, "success",
                                    true },
        [METRICS_PUBSUB_INGRESS] = { "dapr_component_pubsub_ingress",
                                     "The number of incoming messages arriving from the pub/sub component.",
                                     "The consuming app event processing latency.", NULL, "process_status",
                                     true },
        [METRICS_OUTPUT_BINDING] = { "dapr_component_output_binding",
                                     "The number of operations invoked on the output binding component.",
                                     "The latency of the response from the output binding component.",
                                     "operation", "success", false },
        [METRICS_INPUT_BINDING] = { "dapr_component_input_binding",
                                    "The number of incoming events arriving from the input binding component.",
                                    "The triggered app event processing latency.", NULL, "success", false },
        [METRICS_SECRET] = { "dapr_component_secret", "The number of operations performed on the secret component.",
                             "The latency of the response from the secret component.", "operation", "success",
                             false },
};

static const char *const call_paths[_METRICS_CALL_KIND_MAX] = {
        [METRICS_CALL_INVOKE] = "/{method}",        [METRICS_CALL_DELIVERY] = "/{subscription-route}",
        [METRICS_CALL_CONFIG] = "/dapr/{config}",   [METRICS_CALL_PROBE] = "/{health-check-path}",
        [METRICS_CALL_ACTOR] = "/actors/{type}/{id}", [METRICS_CALL_BINDING] = "/{binding}",
};

/* A label value, escaped as the text format wants (backslash, quote, newline). */
static void put_value(FILE *f, const char *s) {
        for (; s && *s; s++) {
                if (*s == '\\' || *s == '"')
                        fputc('\\', f);
                if (*s == '\n') {
                        fputs("\\n", f);
                        continue;
                }
                fputc(*s, f);
        }
}

typedef struct Each {
        const char *app_id;
        const AppMetrics *m;
} Each;

/* The host series (callers that are no app) first, then every app's, by id. */
static size_t collect(Registry *r, Each **ret) {
        Each *l = calloc(r->n_apps + 1, sizeof *l);
        size_t n = 0;
        if (!l)
                return 0;
        if (r->metrics)
                l[n++] = (Each){ "", r->metrics };
        for (size_t i = 0; i < r->n_apps; i++)
                if (r->apps[i]->metrics)
                        l[n++] = (Each){ r->apps[i]->config->id, r->apps[i]->metrics };
        *ret = l;
        return n;
}

static void head(FILE *f, const char *name, const char *type, const char *help) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void lat_write(FILE *f, const char *name, const char *labels, const LatHist *h) {
        uint64_t cum = 0;
        for (size_t i = 0; i < LAT_N; i++) {
                cum += h->b[i];
                fprintf(f, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, lat_bounds[i], (unsigned long long) cum);
        }
        fprintf(f, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long) h->count);
        fprintf(f, "%s_sum{%s} %.17g\n%s_count{%s} %llu\n", name, labels, (double) h->sum / 1000.0, name, labels,
                (unsigned long long) h->count);
}

static void size_write(FILE *f, const char *name, const char *labels, const SizeHist *h) {
        uint64_t cum = 0;
        for (size_t i = 0; i < SIZE_N; i++) {
                cum += h->b[i];
                fprintf(f, "%s_bucket{%s,le=\"%.0f\"} %llu\n", name, labels, size_bounds[i], (unsigned long long) cum);
        }
        fprintf(f, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long) h->count);
        fprintf(f, "%s_sum{%s} %.17g\n%s_count{%s} %llu\n", name, labels, (double) h->sum, name, labels,
                (unsigned long long) h->count);
}

/* Labels into a buffer: app_id first, then the series' own. Values are escaped. */
static char *labels_app(char *buf, size_t size, const char *app_id) {
        FILE *f = fmemopen(buf, size, "w");
        if (!f) {
                buf[0] = 0;
                return buf;
        }
        fputs("app_id=\"", f);
        put_value(f, app_id);
        fputc('"', f);
        fclose(f);
        return buf;
}

static const char *route_path(unsigned route) {
        if (route == METRICS_ROUTE_UNMATCHED || !route_label)
                return "_unmatched";
        return strempty(route_label(route));
}

static void server_labels(char *buf, size_t size, const char *app_id, const ServerSeries *s, bool status) {
        char a[512];
        char st[16];
        if (s->status == STATUS_OTHER)
                snprintf(st, sizeof st, "_other");
        else
                snprintf(st, sizeof st, "%u", s->status);
        snprintf(buf, size, "%s,method=\"%s\",path=\"%s\"%s%s%s", labels_app(a, sizeof a, app_id),
                 method_names[s->method], s->status == STATUS_OTHER ? "_other" : route_path(s->route),
                 status ? ",status=\"" : "", status ? st : "", status ? "\"" : "");
}

static void write_http(FILE *f, Each *l, size_t n) {
        char lab[1024];

        head(f, "dapr_http_server_request_count", "counter", "Number of HTTP requests started in server.");
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k <= SERVER_SLOTS; k++) {
                        const ServerSeries *s = k < SERVER_SLOTS ? &l[i].m->server[k] : &l[i].m->server_overflow;
                        if (!s->used || is_grpc(s) || (s->status != 0 && s->status != STATUS_OTHER))
                                continue;
                        if (s->status == STATUS_OTHER && k < SERVER_SLOTS)
                                continue;
                        server_labels(lab, sizeof lab, l[i].app_id, s, false);
                        /* The overflow series counts both starts and ends: halve nothing, report ends. */
                        fprintf(f, "dapr_http_server_request_count{%s} %llu\n", lab, (unsigned long long) s->count);
                }
        head(f, "dapr_http_server_response_count", "counter", "The number of HTTP responses");
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < SERVER_SLOTS; k++) {
                        const ServerSeries *s = &l[i].m->server[k];
                        if (!s->used || s->status == 0 || is_grpc(s))
                                continue;
                        server_labels(lab, sizeof lab, l[i].app_id, s, true);
                        fprintf(f, "dapr_http_server_response_count{%s} %llu\n", lab, (unsigned long long) s->count);
                }
        head(f, "dapr_http_server_latency", "histogram", "HTTP request end to end latency in server.");
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < SERVER_SLOTS; k++) {
                        const ServerSeries *s = &l[i].m->server[k];
                        if (!s->used || s->status == 0 || is_grpc(s))
                                continue;
                        server_labels(lab, sizeof lab, l[i].app_id, s, true);
                        lat_write(f, "dapr_http_server_latency", lab, &s->lat);
                }
        head(f, "dapr_http_server_request_bytes", "histogram",
             "HTTP request body size if set as ContentLength (uncompressed) in server.");
        for (size_t i = 0; i < n; i++)
                if (l[i].m->request_bytes.count > 0)
                        size_write(f, "dapr_http_server_request_bytes", labels_app(lab, sizeof lab, l[i].app_id),
                                   &l[i].m->request_bytes);
        head(f, "dapr_http_server_response_bytes", "histogram", "HTTP response body size (uncompressed) in server.");
        for (size_t i = 0; i < n; i++)
                if (l[i].m->response_bytes.count > 0)
                        size_write(f, "dapr_http_server_response_bytes", labels_app(lab, sizeof lab, l[i].app_id),
                                   &l[i].m->response_bytes);
        /* Requests whose labels found no room (bounded tables): one series per app. */
        head(f, "mooring_http_server_overflow_count", "counter",
             "HTTP requests counted without their own series because the app's series table was full.");
        for (size_t i = 0; i < n; i++)
                if (l[i].m->server_overflow.used)
                        fprintf(f, "mooring_http_server_overflow_count{%s} %llu\n",
                                labels_app(lab, sizeof lab, l[i].app_id),
                                (unsigned long long) l[i].m->server_overflow.count);
}

/* gRPC's status names, as Dapr's (OpenCensus's) grpc_server_status label writes them */
static const char *const grpc_code_names[17] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

static void grpc_labels(char *buf, size_t size, const char *app_id, const ServerSeries *s) {
        char a[512];
        unsigned method = s->route & ~GRPC_ROUTE_MASK;
        const char *name = method == METRICS_GRPC_PROXY    ? "proxy"
                           : method == METRICS_GRPC_UNKNOWN || !grpc_label ? "_other"
                                                                          : strempty(grpc_label(method));
        snprintf(buf, size, "%s,grpc_server_method=\"%s\",grpc_server_status=\"%s\"", labels_app(a, sizeof a, app_id),
                 name, grpc_code_names[MIN(s->status - 1u, 16u)]);
}

static void write_grpc(FILE *f, Each *l, size_t n) {
        char lab[1024];

        head(f, "dapr_grpc_io_server_completed_rpcs", "counter", "Count of RPCs by method and status.");
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < SERVER_SLOTS; k++) {
                        const ServerSeries *s = &l[i].m->server[k];
                        if (!s->used || !is_grpc(s))
                                continue;
                        grpc_labels(lab, sizeof lab, l[i].app_id, s);
                        fprintf(f, "dapr_grpc_io_server_completed_rpcs{%s} %llu\n", lab, (unsigned long long) s->count);
                }
        head(f, "dapr_grpc_io_server_server_latency", "histogram",
             "Distribution of time taken by the server, by method and status.");
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < SERVER_SLOTS; k++) {
                        const ServerSeries *s = &l[i].m->server[k];
                        if (!s->used || !is_grpc(s))
                                continue;
                        grpc_labels(lab, sizeof lab, l[i].app_id, s);
                        lat_write(f, "dapr_grpc_io_server_server_latency", lab, &s->lat);
                }
}

static void client_labels(char *buf, size_t size, const char *app_id, const ClientSeries *s) {
        char a[512];
        char st[16];
        if (s->status == STATUS_OTHER)
                snprintf(st, sizeof st, "_other");
        else
                snprintf(st, sizeof st, "%u", s->status);
        snprintf(buf, size, "%s,method=\"%s\",path=\"%s\",status=\"%s\"", labels_app(a, sizeof a, app_id),
                 method_names[s->method], call_paths[s->kind], st);
}

static void write_client(FILE *f, Each *l, size_t n) {
        char lab[1024];

        head(f, "dapr_http_client_completed_count", "counter", "Count of completed requests");
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k <= CLIENT_SLOTS; k++) {
                        const ClientSeries *s = k < CLIENT_SLOTS ? &l[i].m->client[k] : &l[i].m->client_overflow;
                        if (!s->used)
                                continue;
                        client_labels(lab, sizeof lab, l[i].app_id, s);
                        fprintf(f, "dapr_http_client_completed_count{%s} %llu\n", lab, (unsigned long long) s->count);
                }
        head(f, "dapr_http_client_roundtrip_latency", "histogram",
             "Time between first byte of request headers sent to last byte of response received, or terminal error");
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k <= CLIENT_SLOTS; k++) {
                        const ClientSeries *s = k < CLIENT_SLOTS ? &l[i].m->client[k] : &l[i].m->client_overflow;
                        if (!s->used)
                                continue;
                        client_labels(lab, sizeof lab, l[i].app_id, s);
                        lat_write(f, "dapr_http_client_roundtrip_latency", lab, &s->lat);
                }
        head(f, "dapr_http_client_sent_bytes", "histogram", "Total bytes sent in request body (not including headers)");
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k <= CLIENT_SLOTS; k++) {
                        const ClientSeries *s = k < CLIENT_SLOTS ? &l[i].m->client[k] : &l[i].m->client_overflow;
                        if (!s->used)
                                continue;
                        client_labels(lab, sizeof lab, l[i].app_id, s);
                        size_write(f, "dapr_http_client_sent_bytes", lab, &s->sent);
                }
        head(f, "dapr_http_client_received_bytes", "histogram",
             "Total bytes received in response bodies (not including headers but including error responses with "
             "bodies)");
        for (size_t i = 0; i < n; i++)
                if (l[i].m->client_received.count > 0)
                        size_write(f, "dapr_http_client_received_bytes", labels_app(lab, sizeof lab, l[i].app_id),
                                   &l[i].m->client_received);
}

static void comp_labels(char *buf, size_t size, const char *app_id, const CompSeries *s, const Family *fam,
                        const char *namespace_) {
        FILE *f = fmemopen(buf, size, "w");
        if (!f) {
                buf[0] = 0;
                return;
        }
        fputs("app_id=\"", f);
        put_value(f, app_id);
        fputs("\",component=\"", f);
        put_value(f, s->component);
        fputs("\",namespace=\"", f);
        put_value(f, namespace_);
        fputc('"', f);
        if (fam && fam->op_label) {
                fprintf(f, ",%s=\"", fam->op_label);
                put_value(f, s->op);
                fputc('"', f);
        }
        if (fam && fam->status_label) {
                fprintf(f, ",%s=\"", fam->status_label);
                put_value(f, s->status);
                fputc('"', f);
        }
        if (fam && fam->topic) {
                fputs(",topic=\"", f);
                put_value(f, s->topic);
                fputc('"', f);
        }
        fclose(f);
}

static const CompSeries *comp_at(const AppMetrics *m, size_t k) {
        return k < COMP_SLOTS ? &m->comp[k] : &m->comp_overflow[k - COMP_SLOTS];
}

static void write_components(FILE *f, Registry *r, Each *l, size_t n) {
        char lab[1024], name[128];

        for (unsigned kind = 0; kind < _METRICS_KIND_MAX; kind++) {
                const Family *fam = &families[kind];
                snprintf(name, sizeof name, "%s_count", fam->name);
                head(f, name, "counter", fam->help_count);
                for (size_t i = 0; i < n; i++)
                        for (size_t k = 0; k < COMP_SLOTS + _K_MAX; k++) {
                                const CompSeries *s = comp_at(l[i].m, k);
                                if (!s->used || s->kind != kind)
                                        continue;
                                comp_labels(lab, sizeof lab, l[i].app_id, s, fam, "");
                                fprintf(f, "%s{%s} %llu\n", name, lab, (unsigned long long) s->count);
                        }
                snprintf(name, sizeof name, "%s_latencies", fam->name);
                head(f, name, "histogram", fam->help_lat);
                for (size_t i = 0; i < n; i++)
                        for (size_t k = 0; k < COMP_SLOTS + _K_MAX; k++) {
                                const CompSeries *s = comp_at(l[i].m, k);
                                if (!s->used || s->kind != kind)
                                        continue;
                                comp_labels(lab, sizeof lab, l[i].app_id, s, fam, "");
                                lat_write(f, name, lab, &s->lat);
                        }
        }

        /* daprd: per sidecar, the components it loaded. Here: per app, those in its scope. */
        head(f, "dapr_runtime_component_loaded", "gauge", "The number of successfully loaded components.");
        for (size_t i = 0; i < n; i++) {
                size_t c = 0;
                for (size_t k = 0; k < r->n_components; k++)
                        if (!*l[i].app_id || component_in_scope(r->components[k], l[i].app_id))
                                c++;
                fprintf(f, "dapr_runtime_component_loaded{%s} %zu\n", labels_app(lab, sizeof lab, l[i].app_id), c);
        }
        for (unsigned kind = K_INIT_OK; kind <= K_INIT_FAIL; kind++) {
                const char *nm = kind == K_INIT_OK ? "dapr_runtime_component_init_total"
                                                   : "dapr_runtime_component_init_fail_total";
                head(f, nm, "counter",
                     kind == K_INIT_OK ? "The number of initialized components."
                                       : "The number of component initialization failures.");
                for (size_t i = 0; i < n; i++)
                        for (size_t k = 0; k < COMP_SLOTS + _K_MAX; k++) {
                                const CompSeries *s = comp_at(l[i].m, k);
                                if (!s->used || s->kind != kind)
                                        continue;
                                char a[512];
                                FILE *g = fmemopen(lab, sizeof lab, "w");
                                if (!g)
                                        continue;
                                fprintf(g, "%s,component=\"", labels_app(a, sizeof a, l[i].app_id));
                                put_value(g, s->component);
                                fputc('"', g);
                                if (kind == K_INIT_FAIL)
                                        fprintf(g, ",reason=\"%s\"", s->status);
                                fclose(g);
                                fprintf(f, "%s{%s} %llu\n", nm, lab, (unsigned long long) s->count);
                        }
        }
}

/* The process collector's figures (Prometheus client conventions). */
static void write_process(FILE *f) {
        long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
        unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
        long long rss = 0;
        char buf[1024];
        FILE *s;

        s = fopen("/proc/self/stat", "re");
        if (s) {
                size_t k = fread(buf, 1, sizeof buf - 1, s);
                buf[k] = 0;
                fclose(s);
                /* After the command name in parentheses, fields from 3 on (state). */
                char *p = strrchr(buf, ')');
                if (p &&
                    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu "
                                  "%llu %lld",
                           &utime, &stime, &start, &vsize, &rss) == 5) {
                        head(f, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
                        fprintf(f, "process_cpu_seconds_total %.2f\n", (double) (utime + stime) / (double) tick);
                        head(f, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
                        fprintf(f, "process_resident_memory_bytes %lld\n", rss * page);
                        head(f, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
                        fprintf(f, "process_virtual_memory_bytes %llu\n", vsize);
                }
        }
        s = fopen("/proc/stat", "re");
        if (s) {
                unsigned long long btime = 0;
                while (fgets(buf, sizeof buf, s))
                        if (sscanf(buf, "btime %llu", &btime) == 1)
                                break;
                fclose(s);
                if (btime > 0 && start > 0) {
                        head(f, "process_start_time_seconds", "gauge",
                             "Start time of the process since unix epoch in seconds.");
                        fprintf(f, "process_start_time_seconds %.2f\n", (double) btime + (double) start / (double) tick);
                }
        }
        DIR *d = opendir("/proc/self/fd");
        if (d) {
                long n = -1; /* the directory's own fd */
                while (readdir(d))
                        n++;
                closedir(d);
                head(f, "process_open_fds", "gauge", "Number of open file descriptors.");
                fprintf(f, "process_open_fds %ld\n", n - 2); /* "." and ".." */
        }
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                head(f, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
                fprintf(f, "process_max_fds %llu\n", (unsigned long long) rl.rlim_cur);
        }
}

int metrics_format(Registry *r, char **ret, size_t *ret_len) {
        _cleanup_free_ Each *l = NULL;
        char *buf = NULL;
        size_t len = 0, n;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        n = collect(r, &l);
        write_http(f, l, n);
        write_grpc(f, l, n);
        write_client(f, l, n);
        write_components(f, r, l, n);
        write_process(f);
        for (size_t i = 0; i < ELEMENTSOF(writers); i++)
                if (writers[i].fn)
                        writers[i].fn(f, writers[i].userdata);
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}
