/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes core/json-scan.c (yajl underneath) against jansson: whatever jansson accepts as JSON
 * (any value, "\u0000" allowed) json_text_is_valid() must accept too, and for an object
 * cloudevent_peek() must find the same top-level "expiration", "traceparent" and "tracestate"
 * strings that jansson's tree holds, and what jansson refuses they refuse. Inputs with a raw NUL
 * byte are left out of the comparison: jansson ends the text at it ("3\0x" is 3 to it), which
 * the old publish path then spliced, NUL and all, into an envelope; yajl refuses it.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/json-scan.h"
#include "fuzz.h"

static const char *member(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);
        const char *s = json_string_value(v);
        return s && strlen(s) == json_string_length(v) ? s : NULL;
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

        if (r != 0 && r != -EINVAL && r != -ENOMEM)
                abort();
        if (r == 0 && !valid)
                abort(); /* an object is valid JSON */
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
        }
        cloudevent_peek_done(&pk);
        json_decref(j);
        return 0;
}
