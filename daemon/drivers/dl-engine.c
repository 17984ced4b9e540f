/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dl_engine_load(): the package hint around dlopen_syms(). See dl-engine.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "../util/cleanup.h"
#include "dl-engine.h"

int dl_engine_load(DlEngine *e, const char *who, char **reterr_msg) {
        _cleanup_free_ char *why = NULL;
        int r;

        r = dlopen_syms(&e->dl, e->soname, e->syms, e->n_syms, &why);
        if (r >= 0)
                return 0;
        if (r == -ENOMEM || !why)
                return -ENOMEM;
        /*
         * Debian's package is named even when the library is present but unusable (a symbol
         * missing, a broken file): reinstalling that package is the fix in both cases.
         */
        if (reterr_msg && asprintf(reterr_msg, "%s needs %s: apt install %s (%s)", who, e->package, e->package,
                                   why) < 0) {
                *reterr_msg = NULL;
                return -ENOMEM;
        }
        return r;
}
