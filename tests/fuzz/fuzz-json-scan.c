/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes core/json-scan.c (yajl underneath) against jansson: whatever jansson accepts as JSON
 * (any value, "\u0000" allowed) json_text_is_valid() must accept too, and for an object
 * cloudevent_peek() must find the same top-level "expiration", "traceparent" and "tracestate"
 * strings that jansson's tree holds, and what jansson refuses they refuse; json_peek_string_ci()
 * finds the top-level "status" member (any ASCII case) jansson's tree holds, where the tree has
 * one such member (jansson merges repeats of one spelling into the first's place, so with two
 * spellings "the last" differs between a tree and the text). Inputs with a raw NUL
 * byte are left out of the comparison: jansson ends the text at it ("3\0x" is 3 to it), which
 * the old publish path then spliced, NUL and all, into an envelope; yajl refuses it.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json-scan.h"
#include "fuzz.h"

static const char *member(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);
        const char *s = json_string_value(v);
        return s && strlen(s) == json_string_length(v) ? s : NULL;
}

/* The "status" member of o, any ASCII case, and how many members match. */
static const char *member_ci(json_t *o, unsigned *ret_n) {
        const char *k, *found = NULL;
        json_t *v;
        *ret_n = 0;
        json_object_foreach (o, k, v)
                if (strcasecmp(k, "status") == 0) {
                        const char *s = json_string_value(v);
                        found = s && strlen(s) == json_string_length(v) ? s : NULL;
                        (*ret_n)++;
                }
        return found;
}

static void same(const char *a, const char *b) {
        if (!a != !b || (a && strcmp(a, b) != 0))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_error_t err;
        json_t *j = json_loadb((const char *) data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        bool valid = json_text_is_valid(data, size);
        CloudEventPeek pk = {};
        int r = cloudevent_peek(data, size, &pk);
        char *status = NULL;
        int rs = json_peek_string_ci(data, size, "status", &status);

        if (r != 0 && r != -EINVAL && r != -ENOMEM)
                abort();
        if (r == 0 && !valid)
                abort(); /* an object is valid JSON */
        if (rs != r && rs != -ENOMEM && r != -ENOMEM)
                abort(); /* the same texts are objects to both */
        if (memchr(data, 0, size)) {
                /* jansson stops at a raw NUL; json-scan refuses it */
        } else if (!j) {
                if (valid || r == 0)
                        abort();
        } else {
                if (!valid)
                        abort();
                if (json_is_object(j) != (r == 0))
                        abort();
                if (r == 0) {
                        same(member(j, "expiration"), pk.expiration);
                        same(member(j, "traceparent"), pk.traceparent);
                        same(member(j, "tracestate"), pk.tracestate);
                }
                unsigned n;
                const char *js = r == 0 && rs == 0 ? member_ci(j, &n) : NULL;
                if (r == 0 && rs == 0 && n <= 1)
                        same(js, status);
        }
        cloudevent_peek_done(&pk);
        free(status);
        json_decref(j);
        return 0;
}
