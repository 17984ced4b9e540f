/* SPDX-License-Identifier: Apache-2.0 */
/* The lock drivers built into mooringd, one line each (HAVE_* from config.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../util/cleanup.h"
#include "driver.h"

#if HAVE_SQLITE
extern const LockDriver lock_sqlite_driver;
#endif
#if HAVE_HIREDIS
extern const LockDriver lock_redis_driver;
#endif

static const LockDriver *const lock_drivers[] = {
#if HAVE_SQLITE
        &lock_sqlite_driver,
#endif
#if HAVE_HIREDIS
        &lock_redis_driver,
#endif
};

const LockDriver *lock_driver_find(const char *type) {
        for (size_t i = 0; i < ELEMENTSOF(lock_drivers); i++)
                if (streq(lock_drivers[i]->type, type))
                        return lock_drivers[i];
        return NULL;
}

void lock_result_done(LockResult *r) {
        free(r->message);
        *r = (LockResult){};
}

int lock_result_fail(LockResult *r, int error, const char *fmt, ...) {
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
