/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: printing the model as text tables or JSON.
 *
 * Tables size their columns from the data. Strings come from config files
 * the daemon read, so control characters are shown as '?' rather than sent
 * to the terminal. JSON output uses the admin routes' key names and is the
 * same whichever transport filled the model.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"


/* Columns on screen taken by s: UTF-8 continuation bytes take none. */
static size_t display_width(const char *s) {
        size_t w = 0;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if ((*p & 0xc0) != 0x80)
                        w++;
        return w;
}

static void put_cell(const char *s, size_t pad_to) {
        size_t w = 0;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, stdout);
                if ((*p & 0xc0) != 0x80)
                        w++;
        }
        for (; w < pad_to; w++)
                fputc(' ', stdout);
}

/*
 * Print a header line and n_rows rows of n_cols cells (row-major), columns
 * two spaces apart, the last column unpadded.
 */
static void print_table(const char *const *header, size_t n_cols, const char *const *cells, size_t n_rows) {
        size_t width[8] = {};

        assert(n_cols <= ELEMENTSOF(width));
        for (size_t c = 0; c < n_cols; c++) {
                width[c] = display_width(header[c]);
                for (size_t r = 0; r < n_rows; r++) {
                        size_t w = display_width(cells[r * n_cols + c]);

                        if (w > width[c])
                                width[c] = w;
                }
        }

        for (size_t r = 0; r <= n_rows; r++) {
                /* row 0 is the header */
                const char *const *row = r == 0 ? header : cells + (r - 1) * n_cols;

                for (size_t c = 0; c < n_cols; c++) {
                        bool last = c + 1 == n_cols;

                        put_cell(row[c], last ? 0 : width[c]);
                        fputs(last ? "\n" : "  ", stdout);
                }
        }
}

/* Print j on one line to stdout; consumes nothing. */
static int print_json(json_t *j) {
        if (json_dumpf(j, stdout, JSON_PRESERVE_ORDER) < 0)
                return ctl_log_errno(-EIO, "cannot write JSON output");
        fputc('\n', stdout);
        return 0;
}

/* "status": a short summary, or {"version","state","apps","components"}. */
int ctl_print_status(const CtlStatus *s, bool json) {
        if (json) {
                _cleanup_(json_decrefp) json_t *j = json_pack("{s:s, s:s, s:I, s:I}",
                                                              "version", s->version,
                                                              "state", s->state,
                                                              "apps", (json_int_t) s->n_apps,
                                                              "components", (json_int_t) s->n_components);
                if (!j)
                        return ctl_log_oom();
                return print_json(j);
        }

        fputs("mooringd ", stdout);
        put_cell(s->version, 0);
        fputs(": ", stdout);
        put_cell(s->state, 0);
        printf("\napps:       %" PRIu64 "\ncomponents: %" PRIu64 "\n", s->n_apps, s->n_components);
        return 0;
}

/* "apps": table APP ADDRESS SOCKET PORT GRPC HEALTH (GRPC: the gRPC port), or a JSON array. */
int ctl_print_apps(const CtlAppList *l, bool json) {
        static const char *const header[] = { "APP", "ADDRESS", "SOCKET", "PORT", "GRPC", "HEALTH" };
        _cleanup_free_ const char **cells = NULL;
        _cleanup_free_ char (*ports)[8] = NULL, (*gports)[8] = NULL;

        if (json) {
                _cleanup_(json_decrefp) json_t *a = json_array();

                if (!a)
                        return ctl_log_oom();
                for (size_t i = 0; i < l->n; i++) {
                        const CtlApp *app = &l->items[i];
                        json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s}",
                                              "id", app->id,
                                              "appAddress", app->app_address,
                                              "httpSocket", app->http_socket,
                                              "httpPort", (int) app->http_port,
                                              "health", app->health);

                        if (o && (json_object_set_new(o, "grpcSocket", json_string(strempty(app->grpc_socket))) < 0 ||
                                  json_object_set_new(o, "grpcPort", json_integer(app->grpc_port)) < 0))
                                o = (json_decref(o), NULL);
                        if (!o || json_array_append_new(a, o) < 0)
                                return ctl_log_oom();
                }
                return print_json(a);
        }

        if (l->n == 0) {
                puts("No apps registered.");
                return 0;
        }

        cells = calloc(l->n * ELEMENTSOF(header), sizeof(char *));
        ports = calloc(l->n, sizeof(*ports));
        gports = calloc(l->n, sizeof(*gports));
        if (!cells || !ports || !gports)
                return ctl_log_oom();
        for (size_t i = 0; i < l->n; i++) {
                const CtlApp *app = &l->items[i];
                const char **row = cells + i * ELEMENTSOF(header);

                if (app->http_port == 0)
                        strcpy(ports[i], "-");
                else
                        snprintf(ports[i], sizeof(ports[i]), "%u", (unsigned) app->http_port);
                row[0] = app->id;
                row[1] = app->app_address;
                row[2] = app->http_socket;
                row[3] = ports[i];
                if (app->grpc_port == 0)
                        strcpy(gports[i], "-");
                else
                        snprintf(gports[i], sizeof(gports[i]), "%u", (unsigned) app->grpc_port);
                row[4] = gports[i];
                row[5] = app->health;
        }
        print_table(header, ELEMENTSOF(header), cells, l->n);
        return 0;
}

/*
 * A list whose columns are all strings: a JSON array of objects (keys[] name the
 * fields, values as they are) or a table (header[]; an empty cell shows "-").
 * row(i, cells) fills the n_cols cells of item i.
 */
typedef void (*StringRowFn)(const void *list, size_t i, const char **cells);

static int print_string_rows(const void *list, size_t n, StringRowFn row, const char *const *header,
                             const char *const *keys, size_t n_cols, bool json, const char *none) {
        _cleanup_free_ const char **cells = calloc((n ? n : 1) * n_cols, sizeof(char *));

        if (!cells)
                return ctl_log_oom();
        for (size_t i = 0; i < n; i++)
                row(list, i, cells + i * n_cols);
        if (json) {
                _cleanup_(json_decrefp) json_t *a = json_array();
                if (!a)
                        return ctl_log_oom();
                for (size_t i = 0; i < n; i++) {
                        json_t *o = json_object();
                        if (!o || json_array_append_new(a, o) < 0)
                                return ctl_log_oom();
                        for (size_t c = 0; c < n_cols; c++)
                                if (json_object_set_new(o, keys[c], json_string(cells[i * n_cols + c])) < 0)
                                        return ctl_log_oom();
                }
                return print_json(a);
        }
        if (n == 0) {
                puts(none);
                return 0;
        }
        for (size_t i = 0; i < n * n_cols; i++)
                if (!cells[i][0])
                        cells[i] = "-";
        print_table(header, n_cols, cells, n);
        return 0;
}

static void component_row(const void *list, size_t i, const char **cells) {
        const CtlComponent *c = &((const CtlComponentList *) list)->items[i];
        cells[0] = c->name;
        cells[1] = c->type;
        cells[2] = c->version;
        cells[3] = c->file;
        cells[4] = c->error;
}

/* "components": table NAME TYPE VERSION FILE ERROR (why one could not be loaded), or a JSON array. */
int ctl_print_components(const CtlComponentList *l, bool json) {
        static const char *const header[] = { "NAME", "TYPE", "VERSION", "FILE", "ERROR" };
        static const char *const keys[] = { "name", "type", "version", "file", "error" };
        return print_string_rows(l, l->n, component_row, header, keys, ELEMENTSOF(header), json,
                                 "No components loaded.");
}

static void subscription_row(const void *list, size_t i, const char **cells) {
        const CtlSubscription *s = &((const CtlSubscriptionList *) list)->items[i];
        cells[0] = s->app;
        cells[1] = s->pubsub;
        cells[2] = s->topic;
        cells[3] = s->route;
        cells[4] = s->kind;
}

/* "subscriptions": table APP PUBSUB TOPIC ROUTE KIND ("-" for an empty cell), or a JSON array. */
int ctl_print_subscriptions(const CtlSubscriptionList *l, bool json) {
        static const char *const header[] = { "APP", "PUBSUB", "TOPIC", "ROUTE", "KIND" };
        static const char *const keys[] = { "app", "pubsub", "topic", "route", "kind" };
        return print_string_rows(l, l->n, subscription_row, header, keys, ELEMENTSOF(header), json,
                                 "No subscriptions.");
}

/*
 * Whether the n bytes at s are well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF); NUL bytes are allowed.
 */
static bool utf8_is_valid(const unsigned char *s, size_t n) {
        size_t i = 0;

        while (i < n) {
                unsigned char c = s[i];
                size_t len;
                uint32_t cp;

                if (c < 0x80) {
                        i++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf) {
                        len = 2;
                        cp = c & 0x1f;
                } else if (c >= 0xe0 && c <= 0xef) {
                        len = 3;
                        cp = c & 0x0f;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        len = 4;
                        cp = c & 0x07;
                } else
                        return false;
                if (len > n - i)
                        return false;
                for (size_t k = 1; k < len; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += len;
        }
        return true;
}

/* Standard base64 (RFC 4648, padded) of n bytes, malloc'd, or NULL when out of memory. */
static char *base64_encode(const unsigned char *s, size_t n) {
        static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char *out, *p;

        if (n / 3 >= (SIZE_MAX - 1) / 4 - 1)
                return NULL;
        out = p = malloc((n + 2) / 3 * 4 + 1);
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) s[i] << 16;
                size_t left = n - i;

                if (left > 1)
                        v |= (uint32_t) s[i + 1] << 8;
                if (left > 2)
                        v |= s[i + 2];
                *p++ = table[(v >> 18) & 0x3f];
                *p++ = table[(v >> 12) & 0x3f];
                *p++ = left > 1 ? table[(v >> 6) & 0x3f] : '=';
                *p++ = left > 2 ? table[v & 0x3f] : '=';
        }
        *p = '\0';
        return out;
}

/*
 * A state value for JSON output: the value itself when it is a JSON text,
 * else a string when it is UTF-8, else {"base64": "..."}. New reference, or
 * NULL when out of memory.
 */
static json_t *state_value_to_json(const CtlStateValue *v) {
        _cleanup_free_ char *b64 = NULL;
        json_t *j;

        /* jansson checks UTF-8 itself and refuses NUL bytes, as JSON texts cannot hold them */
        j = json_loadb(v->data, v->size, JSON_DECODE_ANY, NULL);
        if (j)
                return j;
        if (utf8_is_valid((const unsigned char *) v->data, v->size))
                return json_stringn_nocheck(v->data, v->size);
        b64 = base64_encode((const unsigned char *) v->data, v->size);
        if (!b64)
                return NULL;
        return json_pack("{s:s}", "base64", b64);
}

/*
 * "state get": the value's bytes exactly as stored (no newline added), or
 * {"found": true, "etag": ..., "value": ...}.
 */
int ctl_print_state_value(const CtlStateValue *v, bool json) {
        if (json) {
                _cleanup_(json_decrefp) json_t *j = json_pack("{s:b, s:s, s:o*}",
                                                              "found", 1,
                                                              "etag", v->etag,
                                                              "value", state_value_to_json(v));
                if (!j || !json_object_get(j, "value"))
                        return ctl_log_oom();
                return print_json(j);
        }

        /* a failed write shows in ferror(stdout), which main() checks when it flushes */
        (void) fwrite(v->data, 1, v->size, stdout);
        return 0;
}
