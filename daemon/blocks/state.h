/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The state block: what Dapr's state API means, independent of HTTP or D-Bus.
 * It finds a caller's store (component scopes), scopes keys the way Dapr does
 * (keyPrefix: appid by default, name, none, or a fixed prefix), checks the
 * store's features, and fans multi-item calls out to the driver, reporting
 * once when all are done. Front-ends translate to and from these calls.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../drivers/state/driver.h"
#include "../forward.h"

/* Opens a store for component c (a state.* component). *reterr_msg says why not. */
int state_store_open(Manager *m, Component *c, StateStore **ret, char **reterr_msg);
/* Closes (in-flight callbacks get -ECANCELED) and frees. NULL-safe. */
StateStore *state_store_close(StateStore *s);
const char *state_store_name(const StateStore *s);

/*
 * The store named name as seen by app_id (NULL: an unidentified caller).
 * -ENODEV when no state store is configured at all, -ENOENT when there is no
 * such store or the caller is outside its scopes.
 */
int state_lookup(Manager *m, const char *name, const char *app_id, StateStore **ret);

/* key → stored key for this caller ("app||key"). -EINVAL: empty key or one containing "||". */
int state_scope_key(const StateStore *s, const char *app_id, const char *key, char **ret);
/* The caller's part of a stored key (after the first "||", or all of it). */
const char *state_unscope_key(const char *stored);

/* Dapr capability strings of a store ("ETAG", "TRANSACTIONAL", "TTL"), NULL-terminated, static. */
const char *const *state_store_capabilities(const StateStore *s);

/* Parses metadata ttlInSeconds ("-1" or a non-negative integer). -EINVAL otherwise. */
int state_parse_ttl(const char *s, int64_t *ret);

/* ---- calls; every done runs exactly once, later, on the loop ---- */

/* Get: keys are unscoped, scoping is done here. */
int state_get(StateStore *s, const char *app_id, const char *key, StateDoneFn done, void *userdata);

/*
 * Writes (not transactional): each op separately, all started at once. done
 * gets the first failure (or success) after every op finished. Op keys are
 * unscoped. n may be 0 (done still runs, later).
 */
int state_write_all(StateStore *s, const char *app_id, const StateOp *ops, size_t n, StateDoneFn done,
                    void *userdata);

/* All-or-nothing; -EOPNOTSUPP (nothing started) if the store is not transactional. */
int state_transact(StateStore *s, const char *app_id, const StateOp *ops, size_t n, StateDoneFn done,
                   void *userdata);

/* Bulk get: results[i] belongs to keys[i]; both valid during the call only. */
typedef void (*StateBulkDoneFn)(const StateResult *results, size_t n, void *userdata);
int state_bulk_get(StateStore *s, const char *app_id, char *const *keys, size_t n, StateBulkDoneFn done,
                   void *userdata);
