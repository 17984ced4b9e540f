/* SPDX-License-Identifier: Apache-2.0 */
/* See binding-body.h. */
#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../util/cleanup.h"
#include "../util/strv.h"
#include "binding-body.h"

void binding_body_done(BindingBody *b) {
        free(b->operation);
        free(b->data);
        strv_free(b->metadata);
        *b = (BindingBody){};
}

static int fail(char **reterr_msg, const char *fmt, ...) _printf_(2, 3);
static int fail(char **reterr_msg, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(reterr_msg, fmt, ap) < 0) {
                *reterr_msg = NULL;
                va_end(ap);
                return -ENOMEM;
        }
        va_end(ap);
        return -EINVAL;
}

/* Go's json.Marshal escapes these in strings (HTML safety); jansson does not. */
static char *go_escape(const char *s, size_t *ret_len) {
        size_t n = 0;
        for (const char *p = s; *p; p++) {
                if (*p == '<' || *p == '>' || *p == '&')
                        n += 6;
                else if ((unsigned char) p[0] == 0xe2 && (unsigned char) p[1] == 0x80 &&
                         ((unsigned char) p[2] == 0xa8 || (unsigned char) p[2] == 0xa9)) {
                        n += 6;
                        p += 2;
                } else
                        n++;
        }
        char *out = malloc(n + 1), *o = out;
        if (!out)
                return NULL;
        for (const char *p = s; *p; p++) {
                /* outside strings these bytes cannot occur in JSON text, so every one is inside a string */
                if (*p == '<' || *p == '>' || *p == '&')
                        o += sprintf(o, "\\u%04x", (unsigned) *p);
                else if ((unsigned char) p[0] == 0xe2 && (unsigned char) p[1] == 0x80 &&
                         ((unsigned char) p[2] == 0xa8 || (unsigned char) p[2] == 0xa9)) {
                        o += sprintf(o, "\\u%04x", (unsigned char) p[2] == 0xa8 ? 0x2028u : 0x2029u);
                        p += 2;
                } else
                        *o++ = *p;
        }
        *o = 0;
        *ret_len = (size_t) (o - out);
        return out;
}

int binding_body_parse(const void *body, size_t len, BindingBody *ret, char **reterr_msg) {
        json_error_t jerr;
        json_t *j, *data = NULL, *md = NULL, *op = NULL;
        BindingBody b = {};
        _cleanup_free_ char *dump = NULL;
        const char *k;
        json_t *v;
        int r;

        *reterr_msg = NULL;
        j = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!j)
                return fail(reterr_msg, "failed deserializing HTTP body: %s (line %d, column %d)", jerr.text,
                            jerr.line, jerr.column);
        if (!json_is_object(j) && !json_is_null(j)) {
                json_decref(j);
                return fail(reterr_msg, "failed deserializing HTTP body: the body is not a JSON object");
        }
        json_object_foreach(j, k, v) {
                if (strcasecmp(k, "data") == 0)
                        data = v;
                else if (strcasecmp(k, "metadata") == 0)
                        md = v;
                else if (strcasecmp(k, "operation") == 0)
                        op = v;
        }
        if (op && !json_is_null(op)) {
                if (!json_is_string(op)) {
                        r = fail(reterr_msg, "failed deserializing HTTP body: 'operation' must be a string");
                        goto out;
                }
                b.operation = strdup(json_string_value(op));
                if (!b.operation) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        if (md && !json_is_null(md)) {
                if (!json_is_object(md)) {
                        r = fail(reterr_msg, "failed deserializing HTTP body: 'metadata' must be an object of "
                                             "strings");
                        goto out;
                }
                json_object_foreach(md, k, v) {
                        if (!json_is_string(v) && !json_is_null(v)) {
                                r = fail(reterr_msg, "failed deserializing HTTP body: metadata '%s' must be a string",
                                         k);
                                goto out;
                        }
                        if (strv_extend(&b.metadata, k) < 0 ||
                            strv_extend(&b.metadata, json_is_string(v) ? json_string_value(v) : "") < 0) {
                                r = -ENOMEM;
                                goto out;
                        }
                }
        }
        dump = data && !json_is_null(data) ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS)
                                           : strdup("null");
        if (!dump) {
                r = -ENOMEM;
                goto out;
        }
        b.data = go_escape(dump, &b.data_len);
        if (!b.data) {
                r = -ENOMEM;
                goto out;
        }
        json_decref(j);
        *ret = b;
        return 0;
out:
        json_decref(j);
        binding_body_done(&b);
        return r;
}
