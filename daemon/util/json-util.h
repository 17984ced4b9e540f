/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON member lookup the way daprd decodes bodies: Go's encoding/json matches
 * an object's member names to a struct's field names without regard to case
 * ("entryID" fills EntryId), and when several members match one field the last
 * one in the text wins. Bodies that daprd decodes into structs (bulk publish
 * entries, state items, transactions, the app's answers) are read with these,
 * so that what daprd accepts is accepted here too (issue 14 part 2).
 * Maps (metadata, ...) keep their keys as written: they are not fields.
 */
#pragma once

#include <jansson.h>

/* o's member whose name equals key ignoring ASCII case, the last such in o's order; NULL if none or
 * o is no object. */
json_t *json_object_get_ci(const json_t *o, const char *key);
