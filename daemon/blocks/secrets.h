/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The secrets block: what Dapr's secrets API means, independent of HTTP,
 * D-Bus or gRPC. It opens secret stores (drivers/secretstores/), finds the
 * caller's store (component scopes), applies the caller's Configuration
 * spec.secrets.scopes (per store, per app: the app's Configuration= file or
 * config.yaml), runs the driver where it may block (its worker thread, never
 * the loop), filters bulk answers by scope, and resolves secretKeyRef for
 * component metadata through any open store.
 *
 * Secret values are handed to front-ends only inside a done callback and
 * wiped right after it returns; the block never logs them.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../drivers/secretstores/driver.h"
#include "../forward.h"

/* Opens a store for component c (a secretstores.* component). *reterr_msg says why not. */
int secret_store_open(Registry *r, Component *c, SecretStore **ret, char **reterr_msg);
/* Closes: calls in flight get no done (their callers' hooks are gone with the store). NULL-safe. */
SecretStore *secret_store_close(SecretStore *s);
const char *secret_store_name(const SecretStore *s);
/* Can a secret of s hold several keys (Dapr's MULTIPLE_KEY_VALUES_PER_SECRET feature)? */
bool secret_store_multi_valued(const SecretStore *s);

/*
 * The store named name as app_id sees it. -ENODEV: no secret store component
 * at all; -ENXIO: no such store, or app_id outside its scopes; -EIO: the
 * component exists but did not open (*ret_error, if not NULL, says why;
 * owned by the registry).
 */
int secrets_lookup(Registry *r, const char *name, const char *app_id, SecretStore **ret, const char **ret_error);

/*
 * May app_id read secret from store (its Configuration's spec.secrets.scopes)?
 * 0 yes; -EACCES no; -EINVAL the app's Configuration is broken (fail closed,
 * *ret_error says why); -ENOENT no such app.
 */
int secrets_check_scope(Registry *r, const char *app_id, const char *store, const char *secret,
                        const char **ret_error);

/*
 * The outcome of a call: error 0 and data (valid during the call only; wiped
 * after it), or error < 0 and message (never holding a value): -ENOENT no
 * such secret, -EACCES refused by the engine, -ECANCELED the store closed,
 * -EIO/-errno else.
 */
typedef void (*SecretDoneFn)(int error, const char *message, const SecretData *data, void *userdata);

/*
 * Starts reading secret name for app_id. The scope is checked first: -EACCES
 * (nothing started) when the app may not read it. metadata: NULL-terminated
 * key, value pairs, copied. done runs exactly once, later, on the loop.
 */
int secrets_get(SecretStore *s, const char *app_id, const char *name, char *const *metadata, SecretDoneFn done,
                void *userdata);
/* Every secret app_id may read from s: the others are dropped before done sees them. */
int secrets_bulk(SecretStore *s, const char *app_id, char *const *metadata, SecretDoneFn done, void *userdata);
/* The caller of every call on s started with userdata is gone: no done runs for them. */
void secrets_cancel(SecretStore *s, void *userdata);

/*
 * For component metadata (secretKeyRef): key of secret name in the open store
 * store_name, synchronously (a blocking driver's call runs on a thread of its
 * own and is waited for: load and reload are synchronous anyway). Component
 * scopes and secrets scopes do not apply: the operator wrote both files.
 * *ret is malloc'd (wipe it with erase_and_free()); *reterr_msg malloc'd.
 */
int secrets_resolve(Registry *r, const char *store_name, const char *name, const char *key, char **ret,
                    char **reterr_msg);
