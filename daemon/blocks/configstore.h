/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configuration block: Dapr's configuration API (GET
 * /v1.0/configuration/{store}, subscribe, unsubscribe) apart from HTTP or
 * D-Bus. Not to be confused with core/configuration.c, which reads the Dapr
 * Configuration *document* (config.yaml); here "configuration" is a store of
 * items (key, value, version, metadata) that apps read and watch.
 *
 * Subscriptions belong to the app that made them: only it can end them, and
 * they end with it (the app leaves the registry) or with the store (a reload
 * that changes or removes the component). Changes reach an app as daprd
 * sends them: POST /configuration/{store}/{key} with
 * {"id":"<subscription>","items":{...}}, one call per changed key, in order,
 * one at a time per subscription, retried a few times when the app does not
 * answer 200.
 */
#pragma once

#include "../drivers/configuration/driver.h"
#include "../forward.h"

/* Opens a store for component c (a configuration.* component). */
int configstore_open(Registry *m, Component *c, ConfigStore **ret, char **reterr_msg);
/* Ends its subscriptions, answers pending gets (-ECANCELED), frees. NULL-safe; returns NULL. */
ConfigStore *configstore_close(ConfigStore *s);

/* -ENODEV: no configuration store at all; -ENOENT: no such store, or app_id outside its scopes. */
int configstore_lookup(Registry *m, const char *name, const char *app_id, ConfigStore **ret);

typedef struct ConfigStoreCall ConfigStoreCall;
/*
 * Reads keys (NULL/empty: every item). done runs exactly once, later, unless
 * configstore_cancel() came first (*ret_call is the handle for that, valid
 * until then).
 */
int configstore_get(ConfigStore *s, char *const *keys, char *const *metadata, ConfigStoreGetFn done,
                    void *userdata, ConfigStoreCall **ret_call);
void configstore_cancel(ConfigStoreCall *c);

/*
 * A subscriber other than an app's HTTP channel (D-Bus): gets the id and the changed items of
 * each change. NULL: changes go to the app's channel as daprd sends them.
 */
typedef void (*ConfigStoreNotifyFn)(ConfigStore *s, const char *id, const ConfigItem *items, size_t n_items,
                                    void *userdata);

/*
 * Subscribes app_id to changes of keys (NULL/empty: all). -EADDRNOTAVAIL: the app has no channel
 * to be told through (Dapr's ERR_APP_CHANNEL_NIL) and fn is NULL; -EMFILE: the app has too many
 * subscriptions; -EINVAL with *reterr_msg from the store (a missing pgNotifyChannel, ...).
 * *ret_id (malloc'd) names the subscription.
 */
int configstore_subscribe(ConfigStore *s, const char *app_id, char *const *keys, char *const *metadata,
                          ConfigStoreNotifyFn fn, void *userdata, char **ret_id, char **reterr_msg);
/* Ends subscription id of app_id on s. -ENOENT: there is none (or it is another app's). */
int configstore_unsubscribe(ConfigStore *s, const char *app_id, const char *id);
/* Ends every subscription of app_id (all stores) whose notify userdata is userdata (NULL: any). */
void configstore_unsubscribe_all(Registry *m, const char *app_id, void *userdata);
/* Counts the subscriptions of s (for mooringctl and tests). */
size_t configstore_n_subscriptions(const ConfigStore *s);

/* Writes items through the store (embedded stores only: -EOPNOTSUPP otherwise). */
int configstore_set(ConfigStore *s, const ConfigItem *items, size_t n_items, ConfigStoreGetFn done,
                    void *userdata, ConfigStoreCall **ret_call);
