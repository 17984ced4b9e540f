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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/*
 * Read fd up to end of file into a malloc'd buffer (never NULL, even when
 * empty). Quiet: returns 0, -EFBIG when there are more than max bytes,
 * -ENOMEM, or the read error.
 */
int ctl_read_all(int fd, size_t max, char **ret, size_t *ret_size) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, allocated = 0;

        for (;;) {
                ssize_t n;

                if (size == allocated) {
                        /* one byte more than allowed tells "exactly max" from "too much" */
                        size_t a = allocated > 0 ? allocated * 2 : 64 * 1024;
                        char *p;

                        if (a > max + 1)
                                a = max + 1;
                        if (a == allocated)
                                break;
                        p = realloc(buf, a);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        allocated = a;
                }
                n = read(fd, buf + size, allocated - size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        if (size > max)
                return -EFBIG;

        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}
