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
int state_store_open(Registry *m, Component *c, StateStore **ret, char **reterr_msg);
/* Closes (in-flight callbacks get -ECANCELED) and frees. NULL-safe. */
StateStore *state_store_close(StateStore *s);
const char *state_store_name(const StateStore *s);

/*
 * The store named name as seen by app_id (NULL: an unidentified caller).
 * -ENODEV when no state store is configured at all, -ENOENT when there is no
 * such store or the caller is outside its scopes.
 */
int state_lookup(Registry *m, const char *name, const char *app_id, StateStore **ret);

/* key → stored key for this caller ("app||key"). -EINVAL: empty key or one containing "||". */
int state_scope_key(const StateStore *s, const char *app_id, const char *key, char **ret);
/* The caller's part of a stored key (after the first "||", or all of it). */
const char *state_unscope_key(const char *stored);

/*
 * The most items or operations one request may carry on s (component metadata
 * maxOperationsPerRequest, default 10,000; 0: no bound). Past it the calls below
 * return -E2BIG and start nothing.
 */
size_t state_store_max_ops(const StateStore *s);

/* Dapr capability strings of a store ("ETAG", "TRANSACTIONAL", "TTL"), NULL-terminated, static. */
const char *const *state_store_capabilities(const StateStore *s);

/* Parses metadata ttlInSeconds ("-1" or a non-negative integer). -EINVAL otherwise. */
int state_parse_ttl(const char *s, int64_t *ret);

/*
 * ---- calls; every done runs exactly once, later, on the loop ----
 *
 * Calls are queued per store and per app: at most a few dozen of one app's
 * calls are in the driver at a time, the rest wait in that app's order, so
 * one app's backlog does not delay another's calls. -E2BIG: more items than
 * state_store_max_ops().
 */

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

/*
 * The same with keys used exactly as given (no keyPrefix scoping, "||" allowed), for a block that
 * owns its key space in the store (actors: "<app>||<type>||<id>||<key>", "actors||<type>").
 * queue_id names the per-app line the calls wait in (the acting app).
 */
int state_get_raw(StateStore *s, const char *queue_id, const char *key, StateDoneFn done, void *userdata);
int state_write_raw(StateStore *s, const char *queue_id, const StateOp *ops, size_t n, StateDoneFn done,
                    void *userdata);
int state_transact_raw(StateStore *s, const char *queue_id, const StateOp *ops, size_t n, StateDoneFn done,
                       void *userdata);

/*
 * Bulk get: results[i] belongs to keys[i]; both valid during the call only. failed non-NULL: the
 * get failed as a whole (the store's Resiliency policy timed it out or gave up on it, its circuit
 * breaker is open, or it never reached the store): results is NULL and n 0. daprd runs a bulk get
 * as one operation and then answers 500 ERR_STATE_BULK_GET, not an error per key.
 */
typedef void (*StateBulkDoneFn)(const StateResult *results, size_t n, const StateResult *failed, void *userdata);
int state_bulk_get(StateStore *s, const char *app_id, char *const *keys, size_t n, StateBulkDoneFn done,
                   void *userdata);

/*
 * The caller of every call on s started with userdata is gone: calls still
 * queued are dropped unstarted (their writes never happen), calls in the
 * driver are cancelled there if it can, and no done runs for any of them
 * afterwards. Only valid while such a call's done has not run (a front-end
 * that clears its hook in done() satisfies this: the store outlives every
 * call whose done is pending).
 */
void state_cancel(StateStore *s, void *userdata);
