/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Scope-based cleanup helpers used throughout mooring.
 *
 * _cleanup_(f) runs f(&var) when var leaves scope; TAKE_PTR()/TAKE_FD() hand
 * ownership out at the one line where it moves, leaving NULL / -EBADF behind
 * so the cleanup becomes a no-op.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _sentinel_ __attribute__((sentinel))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

#define TAKE_PTR(p)                               \
        ({                                        \
                __typeof__(p) _taken_ = (p);      \
                (p) = NULL;                       \
                _taken_;                          \
        })

#define TAKE_FD(fd)                               \
        ({                                        \
                int _taken_fd_ = (fd);            \
                (fd) = -EBADF;                    \
                _taken_fd_;                       \
        })

/* Defines funcp(Type **p) calling func(*p) if non-NULL, for _cleanup_(). */
#define DEFINE_CLEANUP_FUNC(type, func)                    \
        static inline void func##p(type **p) {             \
                if (*p)                                    \
                        func(*p);                          \
        }

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}

static inline void closep(int *fd) {
        *fd = safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Overwrite memory that held a secret before it is released. */
static inline void explicit_wipe(void *p, size_t n) {
        if (p && n > 0)
                explicit_bzero(p, n);
}

static inline char *erase_and_free(char *s) {
        if (s) {
                explicit_wipe(s, strlen(s));
                free(s);
        }
        return NULL;
}

static inline void erase_and_freep(char **s) {
        *s = erase_and_free(*s);
}
#define _cleanup_erase_free_ _cleanup_(erase_and_freep)

static inline const char *strempty(const char *s) {
        return s ?: "";
}

static inline const char *strna(const char *s) {
        return s ?: "n/a";
}

static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

#define streq(a, b) (strcmp((a), (b)) == 0)
#define strneq(a, b, n) (strncmp((a), (b), (n)) == 0)
#define streq_ptr(a, b) ((a) == (b) || ((a) && (b) && streq((a), (b))))
