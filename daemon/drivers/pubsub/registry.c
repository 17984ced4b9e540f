/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pub/sub brokers built into mooringd, one line each. Engines whose client
 * library meson did not find are left out (HAVE_* from config.h).
 */
#include <string.h>

#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "driver.h"

extern const PubsubDriver pubsub_memory_driver;
#if HAVE_SQLITE
extern const PubsubDriver pubsub_sqlite_driver;
#endif
#if HAVE_LIBMOSQUITTO && HAVE_SQLITE
extern const PubsubDriver pubsub_mqtt_driver;
#endif
#if HAVE_HIREDIS
extern const PubsubDriver pubsub_redis_driver;
#endif

static const PubsubDriver *const pubsub_drivers[] = {
        &pubsub_memory_driver,
#if HAVE_SQLITE
        &pubsub_sqlite_driver,
#endif
#if HAVE_LIBMOSQUITTO && HAVE_SQLITE
        &pubsub_mqtt_driver,
#endif
#if HAVE_HIREDIS
        &pubsub_redis_driver,
#endif
};

const PubsubDriver *pubsub_driver_find(const char *type) {
        for (size_t i = 0; i < ELEMENTSOF(pubsub_drivers); i++)
                if (streq(pubsub_drivers[i]->type, type) ||
                    (pubsub_drivers[i]->alias && streq(pubsub_drivers[i]->alias, type)))
                        return pubsub_drivers[i];
        return NULL;
}
