/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's state query API (alpha; the QUERY_API capability) apart from HTTP
 * or D-Bus: the query body parsed as daprd parses it (components-contrib
 * state/query: a filter of EQ, IN, AND, OR; sort; page with limit and an
 * opaque token), restricted to the caller's own keys, run by the store's
 * driver.
 *
 * Where daprd differs, on purpose: daprd runs a query over the whole table
 * (every app's keys) and pastes field names and sort orders into SQL; here a
 * caller sees only the keys its reads could reach (the store's keyPrefix
 * applied), field paths go to the engine as bound parameters, and a sort
 * order other than ASC/DESC is refused.
 */
#pragma once

#include <stddef.h>

#include "../drivers/state/query.h"
#include "../forward.h"

/* The bounds of one query body: nesting depth and filter nodes plus values. */
#define STATE_QUERY_DEPTH_MAX 32U
#define STATE_QUERY_NODES_MAX 10000U

/*
 * Parses a query body. -EINVAL with *reterr (malloc'd) saying what is wrong, or -ENOMEM.
 * The result is freed with state_query_free().
 */
int state_query_parse(const void *body, size_t len, StateQuery **ret, char **reterr);
StateQuery *state_query_free(StateQuery *q);

typedef struct StateQueryCall StateQueryCall;

/*
 * Runs q (borrowed; its key_prefix is set here from app_id and the store's keyPrefix) on s.
 * -EOPNOTSUPP: the store has no QUERY_API. On 0, done runs exactly once, later, unless
 * state_query_cancel() came first; *ret_call (may be NULL) is the handle for that, valid until
 * done ran or the call was cancelled. Result keys are the stored ones: state_unscope_key() gives
 * the caller's.
 */
int state_query(StateStore *s, const char *app_id, StateQuery *q, StateQueryDoneFn done, void *userdata,
                StateQueryCall **ret_call);
/* The caller is gone: done will not run. */
void state_query_cancel(StateQueryCall *c);
