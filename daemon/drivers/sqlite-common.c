/* SPDX-License-Identifier: Apache-2.0 */
/* See sqlite-common.h. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/strv.h"
#include "sqlite-common.h"

int sqlite_errno(int rc) {
        switch (rc & 0xff) {
        case SQLITE_OK:
                return 0;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_INTERRUPT:
                return -EINTR;
        default:
                return -EIO;
        }
}

int sqlite_fail(char **reterr, int r, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;

        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        if (reterr) {
                free(*reterr);
                *reterr = m;
        } else
                free(m);
        return r;
}

/* dir with what a URI would read as syntax %-escaped. */
static int uri_escape_path(const char *dir, char **ret) {
        char *out = malloc(strlen(dir) * 3 + 1), *o = out;
        if (!out)
                return -ENOMEM;
        for (const char *p = dir; *p; p++) {
                if (*p == '%' || *p == '?' || *p == '#')
                        o += sprintf(o, "%%%02X", (unsigned char) *p);
                else
                        *o++ = *p;
        }
        *o = 0;
        *ret = out;
        return 0;
}

int sqlite_resolve_path(const char *state_dir, const char *cs, const char *dflt, char **ret, bool *ret_uri,
                        char **reterr) {
        const char *rest;
        char *path = NULL;

        *ret_uri = false;
        if (!cs)
                cs = dflt;
        if (!*cs)
                return sqlite_fail(reterr, -EINVAL, "connectionString: must not be empty");
        rest = startswith_ptr(cs, "file:");
        if (rest)
                *ret_uri = true;
        /* As given: ":memory:", absolute paths, and file:/abs, file:///abs, file::memory:, file:?... */
        if (streq(cs, ":memory:") || cs[0] == '/' ||
            (rest && (*rest == '/' || *rest == ':' || *rest == '?' || *rest == '#' || !*rest))) {
                *ret = strdup(cs);
                return *ret ? 0 : -ENOMEM;
        }
        if (!state_dir)
                return sqlite_fail(reterr, -EINVAL, "connectionString: relative path '%s' but no state directory",
                                   cs);
        if (rest) {
                _cleanup_free_ char *dir = NULL;
                int r = uri_escape_path(state_dir, &dir);
                if (r < 0)
                        return r;
                if (asprintf(&path, "file:%s/%s", dir, rest) < 0)
                        return -ENOMEM;
        } else if (asprintf(&path, "%s/%s", state_dir, cs) < 0)
                return -ENOMEM;
        *ret = path;
        return 0;
}

int sqlite_open_durable(const char *path, bool uri, bool wal, uint64_t busy_timeout_usec, const char *extra_pragmas,
                        sqlite3 **ret, char **reterr) {
        int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | (uri ? SQLITE_OPEN_URI : 0);
        _cleanup_free_ char *pragmas = NULL;
        uint64_t ms = busy_timeout_usec / 1000;
        int rc;

        rc = sqlite3_open_v2(path, ret, flags, NULL);
        if (rc != SQLITE_OK) {
                /* The OS error says more than SQLITE_CANTOPEN (EACCES, ENOENT, EROFS, ...). */
                int r = *ret && sqlite3_system_errno(*ret) > 0 ? -sqlite3_system_errno(*ret) : sqlite_errno(rc);
                return sqlite_fail(reterr, r, "connectionString: cannot open '%s': %s", path,
                                   *ret ? sqlite3_errmsg(*ret) : sqlite3_errstr(rc));
        }
        (void) sqlite3_busy_timeout(*ret, ms > INT_MAX ? INT_MAX : (int) ms);
        if (asprintf(&pragmas, "PRAGMA journal_mode = %s; PRAGMA synchronous = FULL; %s", wal ? "WAL" : "DELETE",
                     extra_pragmas ?: "") < 0) {
                pragmas = NULL;
                return -ENOMEM;
        }
        rc = sqlite3_exec(*ret, pragmas, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return sqlite_fail(reterr, sqlite_errno(rc), "connectionString: cannot set up '%s': %s", path,
                                   sqlite3_errmsg(*ret));
        return 0;
}
