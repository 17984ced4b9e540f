/* SPDX-License-Identifier: Apache-2.0 */
/* See state-body.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/state.h"
#include "../util/json-util.h"
#include "../util/strv.h"
#include "state-body.h"

void op_list_done(OpList *l) {
        for (size_t i = 0; i < l->n_bufs; i++)
                free(l->bufs[i]);
        free(l->bufs);
        free(l->ops);
        json_decref(l->json);
        *l = (OpList){};
}

/* How often a buffer list had to grow; see state_body_array_grows(). */
static unsigned long array_grows;

unsigned long state_body_array_grows(void) {
        return array_grows;
}

/*
 * Makes room for at least want buffers. Called once per body with the item
 * count known up front, so a body of n items costs one allocation here, not
 * n reallocs (issue 10 finding 4: growing one entry at a time was quadratic,
 * ~80 s of blocked loop for 100,000 items under ASan). Growth is geometric
 * all the same, should a caller ever keep more than it announced.
 */
static int op_list_reserve(OpList *l, size_t want) {
        size_t cap;
        char **n;

        if (want <= l->cap_bufs)
                return 0;
        cap = l->cap_bufs > 0 ? l->cap_bufs : 8;
        while (cap < want) {
                if (cap > SIZE_MAX / 2 / sizeof(char *))
                        return -ENOMEM;
                cap *= 2;
        }
        n = realloc(l->bufs, cap * sizeof(char *));
        if (!n)
                return -ENOMEM;
        array_grows++;
        l->bufs = n;
        l->cap_bufs = cap;
        return 0;
}

static char *op_list_keep(OpList *l, char *buf) {
        if (!buf)
                return NULL;
        if (op_list_reserve(l, l->n_bufs + 1) < 0) {
                free(buf);
                return NULL;
        }
        l->bufs[l->n_bufs++] = buf;
        return buf;
}

_printf_(2, 3) static int fail(char **reterr_msg, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(reterr_msg, fmt, ap) < 0)
                *reterr_msg = NULL;
        va_end(ap);
        return *reterr_msg ? -EINVAL : -ENOMEM;
}

/* Dapr reports a bad TTL as a store error (500), not as a malformed request: keep it apart. */
static const char TTL_ERROR[] = "'metadata.ttlInSeconds' must be -1 or an integer from 0 to 2147483647";

/* Reads one save/transaction request object into op. Returns an error text or NULL. */
static const char *parse_request(json_t *item, json_t *query_md, json_t *body_md, StateOpKind kind, OpList *l,
                                 StateOp *op) {
        json_t *key, *etag, *value, *options, *md;
        const char *ttl = NULL;

        if (!json_is_object(item))
                return "each item must be a JSON object";
        key = json_object_get_ci(item, "key");
        if (!json_is_string(key) || json_string_length(key) == 0)
                return "each item needs a non-empty string 'key'";
        *op = (StateOp){ .kind = kind, .key = json_string_value(key), .ttl_sec = 0 };
        if (strlen(op->key) != json_string_length(key))
                return "keys must not contain NUL";

        etag = json_object_get_ci(item, "etag");
        if (etag && !json_is_null(etag)) {
                if (!json_is_string(etag))
                        return "'etag' must be a string";
                if (json_string_length(etag) > 0)
                        op->etag = json_string_value(etag);
        }
        options = json_object_get_ci(item, "options");
        if (options && !json_is_null(options)) {
                json_t *conc;
                if (!json_is_object(options))
                        return "'options' must be an object";
                conc = json_object_get_ci(options, "concurrency");
                if (conc && !json_is_null(conc)) {
                        const char *c = json_string_value(conc);
                        if (c && streq(c, "first-write"))
                                op->concurrency = STATE_CONCURRENCY_FIRST_WRITE;
                        else if (!c || (!streq(c, "last-write") && *c))
                                return "'options.concurrency' must be first-write or last-write";
                }
        }
        md = json_object_get_ci(item, "metadata");
        if (md && !json_is_null(md) && !json_is_object(md))
                return "'metadata' must be an object of strings";
        /* query wins over the body's request-level metadata, which wins over the item's */
        json_t *sources[] = { query_md, body_md, md };
        for (size_t i = 0; i < ELEMENTSOF(sources) && !ttl; i++) {
                json_t *t = json_is_object(sources[i]) ? json_object_get(sources[i], "ttlInSeconds") : NULL;
                if (t && !json_is_string(t))
                        return "'metadata.ttlInSeconds' must be a string";
                ttl = json_string_value(t);
        }
        if (ttl) {
                int64_t v;
                if (state_parse_ttl(ttl, &v) < 0)
                        return TTL_ERROR;
                op->ttl_sec = v;
        }

        if (kind == STATE_OP_UPSERT) {
                value = json_object_get_ci(item, "value");
                char *enc = json_dumps(value ?: json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
                if (!op_list_keep(l, enc))
                        return "out of memory";
                op->value = enc;
                op->value_len = strlen(enc);
        }
        return NULL;
}


/* The answer past the per-request bound: Dapr's wording for transactions, the same shape for the rest. */
static int too_many(char **reterr_msg, bool transaction, size_t n, size_t max) {
        int r = fail(reterr_msg, "the %s contains %zu %s, which is more than what the state store supports: %zu",
                     transaction ? "transaction" : "request", n, transaction ? "operations" : "items", max);
        return r == -EINVAL ? -E2BIG : r;
}

static int parse_list(const char *data, size_t len, json_t *query_md, bool transaction, size_t max_ops,
                      OpList *ret, char **reterr_msg) {
        OpList l = {};
        json_error_t jerr;
        json_t *items, *md = NULL;
        int r = 0;

        /* values may hold \u0000; keys are checked for it separately */
        l.json = json_loadb(data, len, (transaction ? 0 : JSON_DECODE_ANY) | JSON_ALLOW_NUL, &jerr);
        if (!l.json)
                return fail(reterr_msg, "failed deserializing HTTP body: %s (line %d)", jerr.text, jerr.line);
        if (transaction) {
                items = json_object_get_ci(l.json, "operations");
                md = json_object_get_ci(l.json, "metadata");
                if (items && !json_is_array(items))
                        r = fail(reterr_msg, "'operations' must be an array");
                else if (md && !json_is_null(md) && !json_is_object(md))
                        r = fail(reterr_msg, "'metadata' must be an object");
        } else {
                items = l.json;
                if (!json_is_array(items))
                        r = fail(reterr_msg, "the body must be a JSON array of items");
        }
        if (r < 0) {
                op_list_done(&l);
                return r;
        }
        l.n = json_array_size(items);
        /* Counted before anything is parsed: a request past the bound costs one JSON parse,
         * and the store never sees it. */
        if (max_ops > 0 && l.n > max_ops) {
                r = too_many(reterr_msg, transaction, l.n, max_ops);
                op_list_done(&l);
                return r;
        }
        l.ops = calloc(l.n ? l.n : 1, sizeof(StateOp));
        if (!l.ops || op_list_reserve(&l, l.n) < 0) {
                op_list_done(&l);
                return -ENOMEM;
        }
        for (size_t i = 0; i < l.n && r == 0; i++) {
                json_t *o = json_array_get(items, i), *req = o;
                StateOpKind kind = STATE_OP_UPSERT;
                const char *e;
                if (transaction) {
                        const char *k = json_string_value(json_object_get_ci(o, "operation"));
                        if (k && streq(k, "delete"))
                                kind = STATE_OP_DELETE;
                        else if (!k || !streq(k, "upsert")) {
                                r = fail(reterr_msg, "operation type %s not supported", k ?: "(none)");
                                if (r == -EINVAL)
                                        r = -EOPNOTSUPP;
                                break;
                        }
                        req = json_object_get_ci(o, "request");
                }
                e = parse_request(req, query_md, md, kind, &l, &l.ops[i]);
                if (e) {
                        r = fail(reterr_msg, "%s %zu: %s", transaction ? "operation" : "item", i, e);
                        if (r == -EINVAL && e == TTL_ERROR)
                                r = -ERANGE;
                }
        }
        if (r < 0) {
                op_list_done(&l);
                return r;
        }
        *ret = l;
        return 0;
}

int state_body_parse_save(const char *data, size_t len, json_t *query_md, size_t max_ops, OpList *ret,
                          char **reterr_msg) {
        return parse_list(data, len, query_md, false, max_ops, ret, reterr_msg);
}

int state_body_parse_transaction(const char *data, size_t len, json_t *query_md, size_t max_ops, OpList *ret,
                                 char **reterr_msg) {
        return parse_list(data, len, query_md, true, max_ops, ret, reterr_msg);
}

int state_body_parse_bulk(const char *data, size_t len, size_t max_keys, char ***ret_keys, char **reterr_msg) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        _cleanup_strv_free_ char **keys = NULL;
        json_error_t jerr;
        json_t *k, *par;

        body = json_loadb(data, len, 0, &jerr);
        if (!body)
                return fail(reterr_msg, "failed deserializing HTTP body: %s", jerr.text);
        k = json_object_get_ci(body, "keys");
        par = json_object_get_ci(body, "parallelism");
        if (!json_is_array(k))
                return fail(reterr_msg, "'keys' must be an array of strings");
        if (par && !json_is_null(par) && !json_is_integer(par))
                return fail(reterr_msg, "'parallelism' must be an integer");
        if (max_keys > 0 && json_array_size(k) > max_keys)
                return too_many(reterr_msg, false, json_array_size(k), max_keys);
        keys = calloc(json_array_size(k) + 1, sizeof(char *));
        if (!keys)
                return -ENOMEM;
        for (size_t i = 0; i < json_array_size(k); i++) {
                json_t *key = json_array_get(k, i);
                if (!json_is_string(key) || strlen(json_string_value(key)) != json_string_length(key))
                        return fail(reterr_msg, "'keys' must be an array of strings");
                keys[i] = strdup(json_string_value(key));
                if (!keys[i])
                        return -ENOMEM;
        }
        *ret_keys = TAKE_PTR(keys);
        return 0;
}
