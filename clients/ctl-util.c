/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: error reporting and small checks shared by all commands.
 *
 * Every message goes to stderr prefixed with "mooringctl: ", so a unit's
 * journal shows which program complained.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static void log_va(const char *fmt, va_list ap) _printf_(1, 0);

static void log_va(const char *fmt, va_list ap) {
        int saved_errno = errno;

        fputs(CTL_PROGRAM ": ", stderr);
        /* keep "%m" meaning what the caller set, whatever fputs() did */
        errno = saved_errno;
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
}

/* Print one error line. */
void ctl_log(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_va(fmt, ap);
        va_end(ap);
}

/*
 * Print one error line with errno set to -r (so "%m" describes r) and return
 * r, for "return ctl_log_errno(r, ...);".
 */
int ctl_log_errno(int r, const char *fmt, ...) {
        va_list ap;

        errno = r < 0 ? -r : r;
        va_start(ap, fmt);
        log_va(fmt, ap);
        va_end(ap);
        return r < 0 ? r : -r;
}

int ctl_log_oom(void) {
        ctl_log("out of memory");
        return -ENOMEM;
}

/* App ids as CONTRACT.md defines them: [a-z0-9][a-z0-9-_.]{0,62}. */
bool ctl_app_id_is_valid(const char *id) {
        size_t n;

        if (!id)
                return false;
        n = strlen(id);
        if (n == 0 || n > 63)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = id[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

                if (!ok && i > 0)
                        ok = c == '-' || c == '_' || c == '.';
                if (!ok)
                        return false;
        }
        return true;
}
