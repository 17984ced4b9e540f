/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's publish API over HTTP: POST/PUT /v1.0/publish/{pubsub}/{topic} and
 * the alpha bulk form. The request stays suspended until the broker has
 * durably accepted the message(s): 204 means "stored", never "queued in
 * memory".
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../blocks/pubsub.h"
#include "../core/app.h"
#include "../core/cloudevent.h"
#include "../util/strv.h"
#include "handlers.h"
#include "server.h"

static const char *caller_app(HttpRequest *r) {
        const Caller *c = http_request_caller(r);
        return c->app ? c->app->config->id : NULL;
}

/* Dapr's code for a refused or failed publish: the core error table decides (core/errors.c). */
static DaprError publish_error(int error) {
        return error_lookup(ERROR_CONTEXT_PUBLISH, error)->dapr;
}

static int collect_metadata(const char *key, const char *value, void *userdata) {
        char ***l = userdata;
        const char *k = strncasecmp(key, "metadata.", 9) == 0 ? key + 9 : NULL;
        if (!k || !*k)
                return 0;
        return strv_extend(l, k) < 0 || strv_extend(l, value) < 0 ? -ENOMEM : 0;
}

static void on_published(int error, const char *message, void *userdata) {
        HttpRequest *r = userdata;
        if (error < 0)
                (void) http_reply_error(r, publish_error(error), "%s", message ?: strerror(-error));
        else
                (void) http_reply_empty(r, 204);
}

int http_publish(HttpRequest *r, const RouteMatch *m) {
        _cleanup_strv_free_ char **md = NULL;
        size_t len;
        const void *body = http_request_body(r, &len);
        int k = http_request_foreach_query(r, collect_metadata, &md);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_PUBSUB_REQUEST_METADATA, "malformed metadata in the query");
        PublishRequest req = {
                .app = caller_app(r),
                .pubsub = m->params[0],
                .topic = m->n_params > 1 ? m->params[1] : "",
                .data = body,
                .len = len,
                .content_type = http_request_header(r, "Content-Type"),
                .metadata = md,
                .traceparent = http_request_header(r, "traceparent"),
                .tracestate = http_request_header(r, "tracestate"),
        };
        if (!*req.pubsub)
                return http_reply_error(r, DAPR_ERR_PUBSUB_EMPTY, "pubsub name is empty");
        k = pubsub_publish(http_request_registry(r), &req, on_published, r);
        if (k < 0)
                return k;
        http_request_suspend(r);
        return 0;
}

/* ---- bulk ---- */

typedef struct BulkPublish {
        HttpRequest *r;
        unsigned pending;
        json_t *failed;              /* [{entryId, error}] */
} BulkPublish;

typedef struct BulkEntry {
        BulkPublish *bulk;
        char *entry_id;
} BulkEntry;

static void bulk_finish(BulkPublish *bp) {
        if (json_array_size(bp->failed) == 0)
                (void) http_reply_empty(bp->r, 204);
        else
                (void) http_reply_json(bp->r, 500,
                                       json_pack("{s:O, s:s}", "failedEntries", bp->failed, "errorCode",
                                                 "ERR_PUBSUB_PUBLISH_MESSAGE"));
        json_decref(bp->failed);
        free(bp);
}

static void on_bulk_entry(int error, const char *message, void *userdata) {
        BulkEntry *be = userdata;
        BulkPublish *bp = be->bulk;
        if (error < 0)
                json_array_append_new(bp->failed, json_pack("{s:s, s:s}", "entryId", be->entry_id, "error",
                                                             message ?: strerror(-error)));
        free(be->entry_id);
        free(be);
        if (--bp->pending == 0)
                bulk_finish(bp);
}

/* An entry's bytes: JSON content types and CloudEvents as JSON text, a string as its text. */
static char *entry_bytes(json_t *event, const char *content_type, size_t *ret_len) {
        char *s;
        if (json_is_string(event) && !(content_type && strstr(content_type, "json")))
                s = strdup(json_string_value(event));
        else
                s = json_dumps(event, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s)
                *ret_len = json_is_string(event) && !(content_type && strstr(content_type, "json"))
                                   ? json_string_length(event)
                                   : strlen(s);
        return s;
}

/* Is rawPayload on for an entry? Its own metadata wins over the request's, as in pubsub_publish(). */
static bool entry_raw(char **md, json_t *entry_md) {
        const char *key;
        json_t *v;
        int raw = 0;

        for (char **p = md; p && p[0] && p[1]; p += 2)
                if (strcasecmp(p[0], "rawPayload") == 0)
                        raw = parse_boolean(p[1]);
        json_object_foreach(entry_md, key, v)
                if (strcasecmp(key, "rawPayload") == 0 && json_is_string(v))
                        raw = parse_boolean(json_string_value(v));
        return raw > 0;
}

/*
 * daprd builds every entry's CloudEvent before it publishes any, and one that
 * cannot be built fails the whole request with ERR_PUBSUB_CLOUD_EVENTS_SER
 * (pkg/api/http/http.go, onBulkPublish). The same here, with the passthrough
 * checks of cloudevent_validate(): an application/cloudevents+json entry that
 * is no valid CloudEvent refuses the request and nothing is published.
 * Returns 0 when every entry passes, 1 after answering, or -ENOMEM.
 */
static int bulk_check_cloudevents(HttpRequest *r, json_t *entries, char **md) {
        size_t i;
        json_t *e;

        json_array_foreach(entries, i, e) {
                const char *ct = json_string_value(json_object_get(e, "contentType"));
                _cleanup_free_ char *bytes = NULL, *why = NULL;
                size_t blen = 0;
                int k;

                if (!cloudevent_is_content_type(ct) || entry_raw(md, json_object_get(e, "metadata")))
                        continue;
                bytes = entry_bytes(json_object_get(e, "event"), ct, &blen);
                if (!bytes)
                        return -ENOMEM;
                k = cloudevent_validate(bytes, blen, &why);
                if (k == -ENOMEM || (k < 0 && !why))
                        return -ENOMEM;
                if (k < 0) {
                        k = http_reply_error(r, DAPR_ERR_PUBSUB_CLOUD_EVENTS_SER, "cannot create cloudevent for entry "
                                             "'%s': %s", json_string_value(json_object_get(e, "entryId")), why);
                        return k < 0 ? k : 1;
                }
        }
        return 0;
}

static int cmp_id(const void *x, const void *y) {
        return strcmp(*(const char *const *) x, *(const char *const *) y);
}

/* Sets *ret to an entryId that occurs twice in entries (all checked to have one), else NULL. */
static int find_duplicate_entry_id(json_t *entries, const char **ret) {
        size_t n = json_array_size(entries), i;
        json_t *e;
        _cleanup_free_ const char **ids = n ? malloc(n * sizeof *ids) : NULL;

        *ret = NULL;
        if (n && !ids)
                return -ENOMEM;
        json_array_foreach(entries, i, e)
                ids[i] = json_string_value(json_object_get(e, "entryId"));
        if (n > 1)
                qsort(ids, n, sizeof *ids, cmp_id);
        for (i = 1; i < n; i++)
                if (strcmp(ids[i - 1], ids[i]) == 0) {
                        *ret = ids[i];
                        break;
                }
        return 0;
}

int http_publish_bulk(HttpRequest *r, const RouteMatch *m) {
        Registry *mg = http_request_registry(r);
        _cleanup_strv_free_ char **md = NULL;
        size_t len, i;
        const void *body = http_request_body(r, &len);
        json_error_t jerr;
        json_t *entries, *e;
        _cleanup_free_ char *why = NULL;
        int k;

        /* The target first, as Dapr: a bad pubsub or topic fails the request, not each entry. */
        k = pubsub_check_publish(mg, caller_app(r), m->params[0], m->params[1], NULL, &why);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return http_reply_error(r, publish_error(k), "%s", why);
        entries = json_loadb(body, len, 0, &jerr);
        if (!json_is_array(entries)) {
                json_decref(entries);
                return http_reply_error(r, DAPR_ERR_PUBSUB_EVENTS_SER, "error when unmarshaling the request for "
                                        "topic %s: the body must be a JSON array of entries", m->params[1]);
        }
        /* Validate every entry before publishing any. */
        json_array_foreach(entries, i, e) {
                const char *id = json_string_value(json_object_get(e, "entryId"));
                if (!json_is_object(e) || !id || !*id || !json_object_get(e, "event")) {
                        json_decref(entries);
                        return http_reply_error(r, DAPR_ERR_PUBSUB_EVENTS_SER,
                                                "entry %zu: entryId and event are required", i);
                }
        }
        /* Duplicate ids by sorting, not by comparing every pair: 10,000 entries took the loop
         * 2.3 s with the pairwise check, and every other app's request waited for it. */
        const char *dup = NULL;
        k = find_duplicate_entry_id(entries, &dup);
        if (k < 0) {
                json_decref(entries);
                return k;
        }
        if (dup) {
                /* Answer while dup (owned by entries) is still alive. */
                k = http_reply_error(r, DAPR_ERR_PUBSUB_EVENTS_SER, "entryId '%s' is duplicated", dup);
                json_decref(entries);
                return k;
        }
        k = http_request_foreach_query(r, collect_metadata, &md);
        if (k < 0) {
                json_decref(entries);
                return k == -ENOMEM ? k
                                    : http_reply_error(r, DAPR_ERR_PUBSUB_REQUEST_METADATA, "malformed metadata");
        }
        if (json_array_size(entries) == 0) {
                json_decref(entries);
                return http_reply_empty(r, 204);
        }
        k = bulk_check_cloudevents(r, entries, md);
        if (k != 0) {
                json_decref(entries);
                return k < 0 ? k : 0;
        }

        BulkPublish *bp = calloc(1, sizeof *bp);
        if (!bp || !(bp->failed = json_array())) {
                free(bp);
                json_decref(entries);
                return -ENOMEM;
        }
        bp->r = r;
        bp->pending = 1; /* ours, released below: no answer before every entry started */
        json_array_foreach(entries, i, e) {
                const char *ct = json_string_value(json_object_get(e, "contentType"));
                _cleanup_strv_free_ char **emd = NULL;
                size_t blen = 0;
                _cleanup_free_ char *bytes = entry_bytes(json_object_get(e, "event"), ct, &blen);
                const char *key;
                json_t *v;
                BulkEntry *be = calloc(1, sizeof *be);

                /* Request-level metadata, then the entry's (which wins: later pairs are read last). */
                k = bytes && be ? strv_copy(md, &emd) : -ENOMEM;
                json_object_foreach(json_object_get(e, "metadata"), key, v)
                        if (k >= 0 && json_is_string(v) &&
                            (strv_extend(&emd, key) < 0 || strv_extend(&emd, json_string_value(v)) < 0))
                                k = -ENOMEM;
                if (k >= 0 && !(be->entry_id = strdup(json_string_value(json_object_get(e, "entryId")))))
                        k = -ENOMEM;
                if (k < 0) {
                        json_array_append_new(bp->failed, json_pack("{s:s, s:s}", "entryId",
                                                                     json_string_value(json_object_get(e, "entryId")),
                                                                     "error", "out of memory"));
                        if (be)
                                free(be->entry_id);
                        free(be);
                        continue;
                }
                be->bulk = bp;
                PublishRequest req = {
                        .app = caller_app(r),
                        .pubsub = m->params[0],
                        .topic = m->params[1],
                        .data = bytes,
                        .len = blen,
                        .content_type = ct,
                        .metadata = emd,
                        .traceparent = http_request_header(r, "traceparent"),
                        .tracestate = http_request_header(r, "tracestate"),
                };
                bp->pending++;
                if (pubsub_publish(mg, &req, on_bulk_entry, be) < 0) {
                        bp->pending--;
                        json_array_append_new(bp->failed, json_pack("{s:s, s:s}", "entryId", be->entry_id, "error",
                                                                     "out of memory"));
                        free(be->entry_id);
                        free(be);
                }
        }
        json_decref(entries);
        http_request_suspend(r);
        if (--bp->pending == 0)
                bulk_finish(bp);
        return 0;
}

int http_publish_no_topic(HttpRequest *r, const RouteMatch *m) {
        return http_reply_error(r, DAPR_ERR_TOPIC_NAME_EMPTY, "topic is empty in pubsub %s", m->params[0]);
}
