/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsing of Dapr state request bodies (save, transaction, bulk get) into
 * StateOps: pure functions of their input, no I/O, fuzzed by
 * tests/fuzz/fuzz-state-body.c. Errors come back as text for the caller's
 * ERR_MALFORMED_REQUEST answer.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "../drivers/state/driver.h"

/* A set of ops plus the buffers they point into (values, the parsed JSON). */
typedef struct OpList {
        StateOp *ops;
        size_t n;
        char **bufs;
        size_t n_bufs, cap_bufs;
        json_t *json;         /* keys and etags point into it */
} OpList;

void op_list_done(OpList *l);

/*
 * query_md: the request's metadata.* arguments (object, may be empty).
 * max_ops: the most items (save, bulk get) or operations (transaction) one
 * request may carry, 0 for no bound; checked before any item is parsed. On
 * error returns < 0 with *reterr_msg set (malloc'd): -EINVAL bad input,
 * -E2BIG more than max_ops, -ERANGE a bad ttlInSeconds (Dapr answers that as
 * a store error), -EOPNOTSUPP (transactions) an unknown operation, -ENOMEM.
 */
int state_body_parse_save(const char *data, size_t len, json_t *query_md, size_t max_ops, OpList *ret,
                          char **reterr_msg);
int state_body_parse_transaction(const char *data, size_t len, json_t *query_md, size_t max_ops, OpList *ret,
                                 char **reterr_msg);
/* {"keys": [...], "parallelism": n}: *ret_keys is a NULL-terminated vector. -E2BIG past max_keys. */
int state_body_parse_bulk(const char *data, size_t len, size_t max_keys, char ***ret_keys, char **reterr_msg);

/* How many times any OpList's buffer array was (re)allocated since start: lets a test show that a body
 * of n items costs O(1) allocations there, not n. */
unsigned long state_body_array_grows(void);
