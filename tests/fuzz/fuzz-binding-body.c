/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the output binding request body parser (http/binding-body.c). Checks
 * what the front-end relies on: on success the data is a NUL-terminated JSON
 * text of the length given that parses again, metadata come in pairs; on
 * failure there is a message and nothing to free.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http/binding-body.h"
#include "util/strv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        BindingBody b = {};
        char *err = NULL;

        if (size > 1024 * 1024)
                return 0;
        int r = binding_body_parse(data, size, &b, &err);
        if (r >= 0) {
                if (!b.data || strlen(b.data) > b.data_len)
                        abort();
                json_t *j = json_loadb(b.data, b.data_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                if (!j)
                        abort();
                json_decref(j);
                if (strv_length(b.metadata) % 2 != 0)
                        abort();
                binding_body_done(&b);
        } else if (r == -EINVAL && !err)
                abort();
        free(err);
        return 0;
}
