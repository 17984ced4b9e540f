/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bindings built into mooringd, one line each. Engines whose client
 * library meson did not find are left out (HAVE_* from config.h).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "driver.h"

extern const BindingDriver binding_cron_driver;
extern const BindingDriver binding_http_driver;
extern const BindingDriver binding_localstorage_driver;
#if HAVE_LIBMOSQUITTO && HAVE_SQLITE
extern const BindingDriver binding_mqtt_driver;
#endif
#if HAVE_HIREDIS
extern const BindingDriver binding_redis_driver;
#endif
#if HAVE_LIBPQ
extern const BindingDriver binding_postgresql_driver;
#endif

static const BindingDriver *const binding_drivers[] = {
        &binding_cron_driver,
        &binding_http_driver,
        &binding_localstorage_driver,
#if HAVE_LIBMOSQUITTO && HAVE_SQLITE
        &binding_mqtt_driver,
#endif
#if HAVE_HIREDIS
        &binding_redis_driver,
#endif
#if HAVE_LIBPQ
        &binding_postgresql_driver,
#endif
};

const BindingDriver *binding_driver_find(const char *type) {
        for (size_t i = 0; i < ELEMENTSOF(binding_drivers); i++)
                if (streq(binding_drivers[i]->type, type) ||
                    (binding_drivers[i]->alias && streq(binding_drivers[i]->alias, type)))
                        return binding_drivers[i];
        return NULL;
}

const char *binding_driver_operation(const BindingDriver *d, const char *op) {
        for (const char *const *p = d->operations; p && *p; p++)
                if (streq(*p, op))
                        return *p;
        return NULL;
}

char *binding_driver_operations_string(const BindingDriver *d) {
        size_t n = 1;
        char *s;

        for (const char *const *p = d->operations; p && *p; p++)
                n += strlen(*p) + 2;
        s = malloc(n);
        if (!s)
                return NULL;
        *s = 0;
        for (const char *const *p = d->operations; p && *p; p++) {
                if (p != d->operations)
                        strcat(s, ", ");
                strcat(s, *p);
        }
        return s;
}

const char *binding_metadata_get(char *const *md, const char *name) {
        for (char *const *p = md; p && p[0] && p[1]; p += 2)
                if (streq(p[0], name))
                        return p[1];
        return NULL;
}

const char *binding_component_get(const Component *c, const char *name) {
        for (size_t i = 0; i < c->n_items; i++)
                if (strcasecmp(c->items[i].name, name) == 0)
                        return c->items[i].value;
        return NULL;
}
