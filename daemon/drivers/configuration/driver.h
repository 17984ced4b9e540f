/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configuration-store driver interface (Dapr's configuration API, not
 * the Dapr Configuration *document* of core/configuration.c): one const
 * ConfigStoreDriver per engine (configuration.sqlite, the embedded default;
 * configuration.postgresql; configuration.redis), listed in
 * drivers/configuration/registry.c. The block (blocks/configstore.c) owns
 * subscriptions and the delivery of changes to apps; drivers read items and
 * report changes.
 *
 * Rules (as for the state drivers):
 * - get starts the read and returns 0; done runs exactly once, later, on the
 *   loop. A negative return means nothing started.
 * - watch starts reporting changes of the store (of keys, NULL: all) through
 *   a ConfigStoreChangeFn until unwatch; a changed item carries its new
 *   value, a deleted one value NULL. A change may be reported late (after a
 *   reconnect), never dropped silently while the watch stands: an engine
 *   that may have missed changes reports every watched item again.
 * - A lost server yields errors and a reconnect; a driver never exits the
 *   daemon. close() answers pending gets with -ECANCELED and ends watches.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "../../forward.h"

#define CONFIG_STORE_DRIVER_ABI 1

typedef struct ConfigStoreDriver ConfigStoreDriver;
typedef struct ConfigStore ConfigStore;
typedef struct ConfigStoreSched ConfigStoreSched;
typedef struct ConfigStoreWatch ConfigStoreWatch;

typedef struct ConfigItem {
        char *key;
        char *value;               /* NULL: deleted (changes only) */
        char *version;             /* may be NULL */
        char **metadata;           /* name, value pairs, NULL-terminated; may be NULL */
} ConfigItem;

typedef struct ConfigResult {
        int error;                 /* 0 or a negative errno */
        char *message;
        ConfigItem *items;
        size_t n_items;
} ConfigResult;

typedef void (*ConfigStoreGetFn)(const ConfigResult *result, void *userdata);
/* items are valid during the call only. */
typedef void (*ConfigStoreChangeFn)(ConfigStore *s, const ConfigItem *items, size_t n_items, void *userdata);

struct ConfigStore {
        const ConfigStoreDriver *driver;
        Component *component;      /* ref */
        sd_event *event;           /* borrowed */
        const char *name;          /* borrowed from component */
        const char *state_dir;     /* borrowed */
        ConfigStoreSched *sched;   /* the block's (blocks/configstore.c); drivers ignore it */
};

struct ConfigStoreDriver {
        const char *type;
        unsigned abi;
        size_t instance_size;

        int (*open)(ConfigStore *s, char **reterr_msg);
        void (*close)(ConfigStore *s);
        /* keys: NULL or empty for every item. metadata: name, value pairs (request metadata), may be NULL. */
        int (*get)(ConfigStore *s, char *const *keys, char *const *metadata, ConfigStoreGetFn done, void *userdata);
        /* *reterr_msg (malloc'd) says why a watch cannot start (e.g. a missing pgNotifyChannel). */
        int (*watch)(ConfigStore *s, char *const *keys, char *const *metadata, ConfigStoreChangeFn fn,
                     void *userdata, ConfigStoreWatch **ret, char **reterr_msg);
        void (*unwatch)(ConfigStore *s, ConfigStoreWatch *w);
        /* Optional (embedded stores): writes items (value NULL: delete) and reports them to watches. */
        int (*set)(ConfigStore *s, const ConfigItem *items, size_t n_items, ConfigStoreGetFn done, void *userdata);
};

void config_item_done(ConfigItem *i);
int config_item_copy(ConfigItem *dst, const ConfigItem *src);
void config_result_done(ConfigResult *r);
/* Appends a copy of it (deep). -ENOMEM. */
int config_result_add(ConfigResult *r, const ConfigItem *it);
int config_result_fail(ConfigResult *r, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Is key among keys (NULL or empty: every key matches)? */
bool config_keys_match(char *const *keys, const char *key);

const ConfigStoreDriver *config_store_driver_find(const char *type);
