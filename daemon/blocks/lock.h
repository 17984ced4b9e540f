/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The distributed-lock block: Dapr's lock API (alpha) apart from HTTP or
 * D-Bus. It opens lock stores for lock.* components, finds a caller's store
 * (component scopes), checks requests the way daprd 1.14 does, gives every
 * resource id Dapr's key ("lock||<app>||<resource>" by default; component
 * metadata keyPrefix: appid, name, none, or a fixed prefix) and hands the
 * result to the driver. Front-ends map its errors with
 * error_lookup(ERROR_CONTEXT_LOCK, ...).
 */
#pragma once

#include <stdint.h>

#include "../drivers/lock/driver.h"
#include "../forward.h"

/* Opens a store for component c (a lock.* component). *reterr_msg says why not. */
int lock_store_open(Registry *m, Component *c, LockStore **ret, char **reterr_msg);
/* Closes (pending calls are answered -ECANCELED) and frees. NULL-safe; returns NULL. */
LockStore *lock_store_close(LockStore *s);

/*
 * The store named name as seen by app_id (NULL: a caller that is no app).
 * -ENODEV when no lock store is configured at all, -ENOENT when there is no
 * such store or the caller is outside its scopes.
 */
int lock_lookup(Registry *m, const char *name, const char *app_id, LockStore **ret);

/*
 * Checks a request in daprd's order (resource id, owner, expiry; expiry_sec
 * is ignored when unlocking): NULL when fine, else Dapr's message for it
 * (static, with one %s for the store name).
 */
const char *lock_request_problem(const char *resource, const char *owner, int64_t expiry_sec, bool unlocking);

/*
 * Starts a try-lock / an unlock. -EINVAL: the request fails lock_request_problem();
 * -EBADR: the resource id contains "||" (daprd answers that as a failed call,
 * ERR_TRY_LOCK / ERR_UNLOCK); -ENOMEM. On 0, done runs exactly once, later,
 * unless lock_cancel() came first.
 */
int lock_try(LockStore *s, const char *app_id, const char *resource, const char *owner, int64_t expiry_sec,
             LockDoneFn done, void *userdata);
int lock_unlock(LockStore *s, const char *app_id, const char *resource, const char *owner, LockDoneFn done,
                void *userdata);

/* The caller of every call started with userdata is gone: none of their done callbacks will run. */
void lock_cancel(LockStore *s, void *userdata);

/* "SUCCESS", "LOCK_DOES_NOT_EXIST", "LOCK_BELONGS_TO_OTHERS", "INTERNAL_ERROR" (Dapr's enum names). */
const char *lock_unlock_status_to_string(LockUnlockStatus s);
