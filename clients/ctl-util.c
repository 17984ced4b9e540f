/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: error reporting and small checks shared by all commands.
 *
 * Every message goes to stderr prefixed with "mooringctl: ", so a unit's
 * journal shows which program complained.
 */
#include <errno.h>
#include <fcntl.h>
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

/*
 * The bytes a DATA argument names (invoke --data, publish DATA): NULL (none),
 * the literal text, "@FILE" (the file's bytes) or "-" (standard input), at
 * most CTL_DATA_MAX bytes. *ret_buf gets what must be freed. Returns 0 or a
 * reported negative errno.
 */
int ctl_load_data(const char *data, const void **ret, size_t *ret_size, char **ret_buf) {
        _cleanup_close_ int fd = -EBADF;
        const char *what;
        int r;

        *ret_buf = NULL;
        *ret = NULL;
        *ret_size = 0;
        if (!data)
                return 0;
        if (streq(data, "-")) {
                what = "standard input";
                r = ctl_read_all(STDIN_FILENO, CTL_DATA_MAX, ret_buf, ret_size);
        } else if (data[0] == '@') {
                what = data + 1;
                fd = open(what, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return ctl_log_errno(negative_errno(), "cannot open '%s': %m", what);
                r = ctl_read_all(fd, CTL_DATA_MAX, ret_buf, ret_size);
        } else {
                *ret = data;
                *ret_size = strlen(data);
                return 0;
        }
        if (r == -ENOMEM)
                return ctl_log_oom();
        if (r == -EFBIG) {
                ctl_log("the data in %s%s%s is larger than %zu MiB, refusing it", what == data + 1 ? "'" : "", what,
                        what == data + 1 ? "'" : "", CTL_DATA_MAX >> 20);
                return r;
        }
        if (r < 0)
                return ctl_log_errno(r, "cannot read %s: %m", what);
        *ret = *ret_buf;
        return 0;
}

/*
 * Whether data is a JSON object or array, which invoke and publish then send
 * as application/json (as the Dapr CLI sends its JSON data) when no
 * --content-type says otherwise. A bare number or string ("-5", "\"x\"") is
 * taken as text: on a command line that is what it usually means.
 */
bool ctl_data_is_json(const void *data, size_t size) {
        _cleanup_(json_decrefp) json_t *j = NULL;

        if (size == 0)
                return false;
        j = json_loadb(data, size, 0, NULL);
        return j != NULL;
}

char *ctl_default_socket_path(const CtlOptions *o) {
        const char *rt = getenv("XDG_RUNTIME_DIR");
        char *p;

        if (o->user && rt && rt[0] == '/')
                return asprintf(&p, "%s/mooring/mooringd.sock", rt) < 0 ? NULL : p;
        return strdup(MOORING_RUNTIME_DIR "/mooringd.sock");
}
