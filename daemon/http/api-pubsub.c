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
#include "../core/registry.h"
#include "../util/json-util.h"
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

/*
 * A bulk publish starts its entries BULK_SLICE at a time, one slice per loop pass: a bulk of
 * 10,000 entries held the loop for 0.45 s in one go, and every other app's request waited for
 * it. If the caller goes away meanwhile, the entries not yet started are not started.
 */
#define BULK_SLICE 256

typedef struct BulkPublish {
        HttpRequest *r;              /* NULL once the caller is gone */
        Registry *registry;
        unsigned pending;            /* entries out, + 1 while slices remain to start */
        json_t *failed;              /* [{entryId, error}] */
        json_t *entries;             /* ref */
        size_t next;                 /* the first entry not started yet */
        char **md;                   /* the request's metadata pairs */
        char *app, *pubsub, *topic, *traceparent, *tracestate; /* copied: they outlive the request */
        sd_event_source *slice;      /* starts the next slice */
} BulkPublish;

typedef struct BulkEntry {
        BulkPublish *bulk;
        char *entry_id;
} BulkEntry;

static void bulk_free(BulkPublish *bp) {
        sd_event_source_disable_unref(bp->slice);
        json_decref(bp->failed);
        json_decref(bp->entries);
        strv_free(bp->md);
        free(bp->app);
        free(bp->pubsub);
        free(bp->topic);
        free(bp->traceparent);
        free(bp->tracestate);
        free(bp);
}

static void bulk_finish(BulkPublish *bp) {
        HttpRequest *r = bp->r;
        if (r) {
                http_request_on_end(r, NULL, NULL);
                if (json_array_size(bp->failed) == 0)
                        (void) http_reply_empty(r, 204);
                else
                        (void) http_reply_json(r, 500,
                                               json_pack("{s:O, s:s}", "failedEntries", bp->failed, "errorCode",
                                                         "ERR_PUBSUB_PUBLISH_MESSAGE"));
        }
        bulk_free(bp);
}

static void bulk_release(BulkPublish *bp) {
        if (--bp->pending == 0)
                bulk_finish(bp);
}

static void on_bulk_entry(int error, const char *message, void *userdata) {
        BulkEntry *be = userdata;
        BulkPublish *bp = be->bulk;
        if (error < 0)
                json_array_append_new(bp->failed, json_pack("{s:s, s:s}", "entryId", be->entry_id, "error",
                                                             message ?: strerror(-error)));
        free(be->entry_id);
        free(be);
        bulk_release(bp);
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
                const char *ct = json_string_value(json_object_get_ci(e, "contentType"));
                _cleanup_free_ char *bytes = NULL, *why = NULL;
                size_t blen = 0;
                int k;

                if (!cloudevent_is_content_type(ct) || entry_raw(md, json_object_get_ci(e, "metadata")))
                        continue;
                bytes = entry_bytes(json_object_get_ci(e, "event"), ct, &blen);
                if (!bytes)
                        return -ENOMEM;
                k = cloudevent_validate(bytes, blen, &why);
                if (k == -ENOMEM || (k < 0 && !why))
                        return -ENOMEM;
                if (k < 0) {
                        k = http_reply_error(r, DAPR_ERR_PUBSUB_CLOUD_EVENTS_SER, "cannot create cloudevent for entry "
                                             "'%s': %s", json_string_value(json_object_get_ci(e, "entryId")), why);
                        return k < 0 ? k : 1;
                }
        }
        return 0;
}

/* Starts the next BULK_SLICE entries; when none remain, gives up the bulk's own hold on it. */
static void bulk_start_slice(BulkPublish *bp) {
        size_t n = json_array_size(bp->entries), end = MIN(n, bp->next + BULK_SLICE);

        for (; bp->next < end; bp->next++) {
                json_t *e = json_array_get(bp->entries, bp->next);
                const char *ct = json_string_value(json_object_get_ci(e, "contentType"));
                const char *id = json_string_value(json_object_get_ci(e, "entryId"));
                _cleanup_strv_free_ char **emd = NULL;
                size_t blen = 0;
                _cleanup_free_ char *bytes = entry_bytes(json_object_get_ci(e, "event"), ct, &blen);
                const char *key;
                json_t *v;
                BulkEntry *be = calloc(1, sizeof *be);
                int k;

                /* Request-level metadata, then the entry's (which wins: later pairs are read last). */
                k = bytes && be ? strv_copy(bp->md, &emd) : -ENOMEM;
                json_object_foreach(json_object_get_ci(e, "metadata"), key, v)
                        if (k >= 0 && json_is_string(v) &&
                            (strv_extend(&emd, key) < 0 || strv_extend(&emd, json_string_value(v)) < 0))
                                k = -ENOMEM;
                if (k >= 0 && !(be->entry_id = strdup(id)))
                        k = -ENOMEM;
                if (k < 0) {
                        json_array_append_new(bp->failed,
                                              json_pack("{s:s, s:s}", "entryId", id, "error", "out of memory"));
                        if (be)
                                free(be->entry_id);
                        free(be);
                        continue;
                }
                be->bulk = bp;
                PublishRequest req = {
                        .app = bp->app,
                        .pubsub = bp->pubsub,
                        .topic = bp->topic,
                        .data = bytes,
                        .len = blen,
                        .content_type = ct,
                        .metadata = emd,
                        .traceparent = bp->traceparent,
                        .tracestate = bp->tracestate,
                };
                bp->pending++;
                if (pubsub_publish(bp->registry, &req, on_bulk_entry, be) < 0) {
                        bp->pending--;
                        json_array_append_new(bp->failed, json_pack("{s:s, s:s}", "entryId", be->entry_id, "error",
                                                                     "out of memory"));
                        free(be->entry_id);
                        free(be);
                }
        }
        if (bp->next < n && sd_event_source_set_enabled(bp->slice, SD_EVENT_ONESHOT) >= 0)
                return;
        bulk_release(bp); /* every entry started (or the rest failed to be scheduled): ours goes */
}

static int on_bulk_slice(sd_event_source *s, void *userdata) {
        bulk_start_slice(userdata);
        return 0;
}

/* The caller went away: entries not started are not started; those out finish unanswered. */
static void on_bulk_request_end(HttpRequest *r, void *userdata) {
        BulkPublish *bp = userdata;
        bp->r = NULL;
        if (bp->next < json_array_size(bp->entries)) {
                bp->next = json_array_size(bp->entries);
                (void) sd_event_source_set_enabled(bp->slice, SD_EVENT_OFF);
                bulk_release(bp);
        }
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
                ids[i] = json_string_value(json_object_get_ci(e, "entryId"));
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
                const char *id = json_string_value(json_object_get_ci(e, "entryId"));
                if (!json_is_object(e) || !id || !*id || !json_object_get_ci(e, "event")) {
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
        if (!bp) {
                json_decref(entries);
                return -ENOMEM;
        }
        const char *tp = http_request_header(r, "traceparent"), *ts = http_request_header(r, "tracestate");
        *bp = (BulkPublish){ .r = r, .registry = mg, .entries = entries, .md = TAKE_PTR(md), .failed = json_array(),
                             .app = caller_app(r) ? strdup(caller_app(r)) : NULL, .pubsub = strdup(m->params[0]),
                             .topic = strdup(m->params[1]), .traceparent = tp ? strdup(tp) : NULL,
                             .tracestate = ts ? strdup(ts) : NULL, .pending = 1 /* ours, while slices remain */ };
        if (!bp->failed || (caller_app(r) && !bp->app) || !bp->pubsub || !bp->topic || (tp && !bp->traceparent) ||
            (ts && !bp->tracestate) || sd_event_add_defer(mg->event, &bp->slice, on_bulk_slice, bp) < 0) {
                bulk_free(bp);
                return -ENOMEM;
        }
        (void) sd_event_source_set_enabled(bp->slice, SD_EVENT_OFF);
        http_request_on_end(r, on_bulk_request_end, bp);
        http_request_suspend(r);
        bulk_start_slice(bp);
        return 0;
}

int http_publish_no_topic(HttpRequest *r, const RouteMatch *m) {
        return http_reply_error(r, DAPR_ERR_TOPIC_NAME_EMPTY, "topic is empty in pubsub %s", m->params[0]);
}
