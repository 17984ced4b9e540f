/* SPDX-License-Identifier: Apache-2.0 */
/* The configuration-store drivers built into mooringd, and helpers they share. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "driver.h"

#if HAVE_SQLITE
extern const ConfigStoreDriver config_sqlite_driver;
#endif
#if HAVE_LIBPQ
extern const ConfigStoreDriver config_postgresql_driver;
#endif
#if HAVE_HIREDIS
extern const ConfigStoreDriver config_redis_driver;
#endif

static const ConfigStoreDriver *const drivers[] = {
#if HAVE_SQLITE
        &config_sqlite_driver,
#endif
#if HAVE_LIBPQ
        &config_postgresql_driver,
#endif
#if HAVE_HIREDIS
        &config_redis_driver,
#endif
};

const ConfigStoreDriver *config_store_driver_find(const char *type) {
        for (size_t i = 0; i < ELEMENTSOF(drivers); i++)
                if (streq(drivers[i]->type, type))
                        return drivers[i];
        /* Dapr's own spelling of the PostgreSQL one */
        if (streq(type, "configuration.postgres"))
                return config_store_driver_find("configuration.postgresql");
        return NULL;
}

void config_item_done(ConfigItem *i) {
        free(i->key);
        free(i->value);
        free(i->version);
        strv_free(i->metadata);
        *i = (ConfigItem){};
}

int config_item_copy(ConfigItem *dst, const ConfigItem *src) {
        *dst = (ConfigItem){ .key = strdup(src->key), .value = src->value ? strdup(src->value) : NULL,
                             .version = src->version ? strdup(src->version) : NULL };
        if (!dst->key || (src->value && !dst->value) || (src->version && !dst->version) ||
            (src->metadata && strv_copy(src->metadata, &dst->metadata) < 0)) {
                config_item_done(dst);
                return -ENOMEM;
        }
        return 0;
}

void config_result_done(ConfigResult *r) {
        for (size_t i = 0; i < r->n_items; i++)
                config_item_done(&r->items[i]);
        free(r->items);
        free(r->message);
        *r = (ConfigResult){};
}

int config_result_add(ConfigResult *r, const ConfigItem *it) {
        if ((r->n_items & (r->n_items - 1)) == 0) {
                ConfigItem *n = realloc(r->items, (r->n_items ? 2 * r->n_items : 1) * sizeof *n);
                if (!n)
                        return -ENOMEM;
                r->items = n;
        }
        if (config_item_copy(&r->items[r->n_items], it) < 0)
                return -ENOMEM;
        r->n_items++;
        return 0;
}

int config_result_fail(ConfigResult *r, int error, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;
        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        free(r->message);
        r->message = m;
        r->error = error;
        return error;
}

bool config_keys_match(char *const *keys, const char *key) {
        if (!keys || !*keys)
                return true;
        for (char *const *k = keys; *k; k++)
                if (streq(*k, key))
                        return true;
        return false;
}
