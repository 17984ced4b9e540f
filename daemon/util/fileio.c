/* SPDX-License-Identifier: Apache-2.0 */
/* See fileio.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "strv.h"

int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;

        if (fd < 0)
                return -errno;
        for (;;) {
                if (len + 1 >= cap) {
                        size_t ncap = cap ? cap * 2 : 4096;
                        char *n;
                        if (cap > max + 1)
                                return -EFBIG;
                        n = realloc(buf, ncap);
                        if (!n)
                                return -ENOMEM;
                        buf = n;
                        cap = ncap;
                }
                ssize_t k = read(fd, buf + len, cap - len - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
                if (len > max)
                        return -EFBIG;
        }
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int dir_list_sorted(const char *dir, const char *const *suffixes, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        DIR *d = opendir(dir);
        struct dirent *de;

        if (!d) {
                if (errno == ENOENT) {
                        *ret = NULL;
                        return 0;
                }
                return -errno;
        }
        while ((de = readdir(d))) {
                bool ok = false;
                /* Hidden names are editors' and package managers' leftovers, never configuration. */
                if (de->d_name[0] == '.')
                        continue;
                for (const char *const *s = suffixes; *s; s++)
                        ok = ok || endswith(de->d_name, *s);
                if (!ok)
                        continue;
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", dir, de->d_name) < 0 || strv_extend(&l, p) < 0) {
                        closedir(d);
                        return -ENOMEM;
                }
        }
        closedir(d);
        /* Sorted, so that load order (and which of two duplicates wins) does not depend on readdir(). */
        if (l)
                qsort(l, strv_length(l), sizeof(char *), cmp_str);
        *ret = TAKE_PTR(l);
        return 0;
}
