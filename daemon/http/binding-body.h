/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsing of the output binding request body
 * {"data": <any JSON>, "metadata": {"k": "v"}, "operation": "create"} as
 * daprd decodes it into its OutputBindingRequest struct: a JSON object (or
 * null), field names matched case-insensitively (the last of duplicates
 * wins), metadata values strings (null: ""), operation a string; other
 * fields ignored. data is re-encoded to JSON bytes the way Go's
 * json.Marshal writes it (compact, object keys sorted, <, >, & and
 * U+2028/U+2029 escaped); absent or null data becomes "null".
 * Pure: no I/O; fuzzed by tests/fuzz/fuzz-binding-body.c.
 */
#pragma once

#include <stddef.h>

typedef struct BindingBody {
        char *operation;     /* NULL when absent */
        char *data;          /* NUL-terminated JSON text */
        size_t data_len;
        char **metadata;     /* name, value pairs (strv) */
} BindingBody;

/* 0, or -EINVAL with *reterr_msg (malloc'd) saying why (Dapr answers 400), or -ENOMEM. */
int binding_body_parse(const void *body, size_t len, BindingBody *ret, char **reterr_msg);
void binding_body_done(BindingBody *b);
