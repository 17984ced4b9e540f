/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NULL-terminated string vectors and small string helpers. Dependency-free.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

char **strv_free(char **l);
DEFINE_CLEANUP_FUNC(char *, strv_free);
#define _cleanup_strv_free_ _cleanup_(strv_freep)

size_t strv_length(char *const *l);
bool strv_contains(char *const *l, const char *s);
/* Appends a copy of s. Returns 0 or -ENOMEM (l unchanged on failure). */
int strv_extend(char ***l, const char *s);
/* Deep copy into *ret (NULL stays NULL). 0 or -ENOMEM. */
int strv_copy(char *const *l, char ***ret);
bool strv_equal(char *const *a, char *const *b);
/* Copies the first n strings of l (all of them up to NULL when n == SIZE_MAX) into ONE
 * allocation: the NULL-terminated pointer array followed by the strings. Free it with free(),
 * not strv_free(). NULL on out of memory. */
char **strv_pack(char *const *l, size_t n);
/* l as Go's %v prints a []string ("[a b]"), as daprd's messages show lists of keys; malloc'd,
 * NULL on out of memory. */
char *strv_go_text(char *const *l);

/* RFC 9110 5.6.2: tchar (ALPHA, DIGIT and !#$%&'*+-.^_`|~; a byte table: one load per byte
 * on the invoke path, which checks every forwarded header name), and a token (one or more tchar). */
extern const uint8_t tchar_table[256];
static inline bool is_tchar(unsigned char c) {
        return tchar_table[c];
}
bool is_token(const char *s);
/* ASCII case-insensitive equality; a and b NUL-terminated. Cheaper than strcasecmp() for the
 * short header names it compares, most of which differ in their first byte. */
static inline unsigned char ascii_lower(unsigned char c) {
        return c >= 'A' && c <= 'Z' ? c | 0x20 : c;
}
static inline bool ascii_eq_ci(const char *a, const char *b) {
        for (;; a++, b++) {
                unsigned char x = ascii_lower((unsigned char) *a), y = ascii_lower((unsigned char) *b);
                if (x != y)
                        return false;
                if (!x)
                        return true;
        }
}
/* The same for n bytes of each (no NUL needed). */
static inline bool ascii_eq_ci_n(const char *a, const char *b, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (ascii_lower((unsigned char) a[i]) != ascii_lower((unsigned char) b[i]))
                        return false;
        return true;
}

/* A list of lower-case header names with their lengths, for the per-header checks of the
 * proxy path: a name is compared only with the entries of its length. */
typedef struct HeaderName {
        const char *name;
        size_t len;
} HeaderName;
#define HEADER_NAME(s) { (s), sizeof(s) - 1 }

static inline bool header_name_in(const HeaderName *l, size_t n, const char *name, size_t len) {
        for (size_t i = 0; i < n; i++)
                if (l[i].len == len && ascii_eq_ci_n(l[i].name, name, len))
                        return true;
        return false;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
bool utf8_is_valid(const void *p, size_t n);
/* Writes v in decimal at p (no NUL); returns the end. At most 20 bytes. */
char *fmt_u64(char *p, uint64_t v);

/* Removes leading and trailing whitespace in place, returns s. */
char *strstrip(char *s);
bool startswith(const char *s, const char *prefix);
const char *startswith_ptr(const char *s, const char *prefix);
bool endswith(const char *s, const char *suffix);

/* "yes/no/true/false/on/off/1/0" → 1/0, anything else -EINVAL. */
int parse_boolean(const char *s);
/* "4194304", "4M", "4MiB", "512K", "1G" (base 1024). */
int parse_size(const char *s, uint64_t *ret);
/* Seconds as a plain integer ("10"), or Go/systemd-style "1m30s", "500ms", "2h". */
int parse_duration_usec(const char *s, uint64_t *ret);
/* 1..65535 */
int parse_port(const char *s, uint16_t *ret);

/* A valid app id or component name: [a-zA-Z0-9][a-zA-Z0-9._-]{0,62}. */
bool name_is_valid(const char *s);
