/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The state drivers built into mooringd, one line each. Engines whose client
 * library meson did not find are left out (HAVE_* from config.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/cleanup.h"
#include "driver.h"

extern const StateDriver state_memory_driver;
#if HAVE_SQLITE
extern const StateDriver state_sqlite_driver;
#endif
#if HAVE_LIBPQ
extern const StateDriver state_postgresql_driver;
#endif
#if HAVE_HIREDIS
extern const StateDriver state_redis_driver;
#endif

static const StateDriver *const state_drivers[] = {
        &state_memory_driver,
#if HAVE_SQLITE
        &state_sqlite_driver,
#endif
#if HAVE_LIBPQ
        &state_postgresql_driver,
#endif
#if HAVE_HIREDIS
        &state_redis_driver,
#endif
};

const StateDriver *state_driver_find(const char *type) {
        for (size_t i = 0; i < ELEMENTSOF(state_drivers); i++)
                if (streq(state_drivers[i]->type, type) ||
                    (state_drivers[i]->alias && streq(state_drivers[i]->alias, type)))
                        return state_drivers[i];
        return NULL;
}

void state_result_done(StateResult *r) {
        free(r->message);
        free(r->value.value);
        free(r->value.etag);
        free(r->op_failed);
        *r = (StateResult){};
}

int state_result_fail(StateResult *r, int error, const char *fmt, ...) {
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
