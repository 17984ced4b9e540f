/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dlopen_syms(): see dlfcn-util.h for what it guarantees.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cleanup.h"
#include "dlfcn-util.h"

static int fail(char **reterr_msg, const char *fmt, ...) _printf_(2, 3);
static int fail(char **reterr_msg, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;
        int k;

        if (!reterr_msg)
                return -EOPNOTSUPP;
        va_start(ap, fmt);
        k = vasprintf(&m, fmt, ap);
        va_end(ap);
        /* The text is the only clue an operator gets: losing it to OOM is reported as OOM. */
        if (k < 0) {
                *reterr_msg = NULL;
                return -ENOMEM;
        }
        *reterr_msg = m;
        return -EOPNOTSUPP;
}

static void syms_clear(const DlSym *syms, size_t n_syms) {
        for (size_t i = 0; i < n_syms; i++)
                *syms[i].fn = NULL;
}

int dlopen_syms(void **dl, const char *soname, const DlSym *syms, size_t n_syms, char **reterr_msg) {
        void *h;

        if (*dl)
                return 0;

        /* dlerror() is per thread and sticky: clear what an earlier failure left. */
        (void) dlerror();

        /*
         * RTLD_NOW: a library that cannot be fully bound fails here, with a message, instead of
         * aborting the daemon at the first call of a missing function. RTLD_LOCAL: its symbols
         * stay out of the global namespace, so two engines never interpose on each other.
         */
        h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
        if (!h)
                return fail(reterr_msg, "dlopen %s: %s", soname, dlerror() ?: "unknown error");

        for (size_t i = 0; i < n_syms; i++) {
                const char *e;

                (void) dlerror();
                *syms[i].fn = dlsym(h, syms[i].name);
                e = dlerror();
                /* A symbol may legitimately be NULL only for data; everything here is a function. */
                if (e || !*syms[i].fn) {
                        int r = fail(reterr_msg, "%s lacks '%s' (an older or foreign build?)", soname,
                                     syms[i].name);
                        syms_clear(syms, n_syms);
                        (void) dlclose(h);
                        return r;
                }
        }

        /* Never closed: a function pointer or callback into it may be held anywhere. */
        *dl = h;
        return 0;
}
