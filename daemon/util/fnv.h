/* SPDX-License-Identifier: Apache-2.0 */
/*
 * 64-bit FNV-1a: the one string hash of the daemon's tables, digests and
 * placement scores. Not for anything an attacker may aim at a table with more
 * than the table's own bound (every table using it has one).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define FNV64_OFFSET 0xcbf29ce484222325ULL
#define FNV64_PRIME 0x100000001b3ULL

/* h with the n bytes at p added. */
static inline uint64_t fnv64_add(uint64_t h, const void *p, size_t n) {
        for (const unsigned char *c = p; n > 0; c++, n--)
                h = (h ^ *c) * FNV64_PRIME;
        return h;
}

/* h with the bytes of s (not its NUL) added. */
static inline uint64_t fnv64_add_str(uint64_t h, const char *s) {
        for (const unsigned char *c = (const unsigned char *) s; *c; c++)
                h = (h ^ *c) * FNV64_PRIME;
        return h;
}

/* The hash of string s. */
static inline uint64_t fnv64_str(const char *s) {
        return fnv64_add_str(FNV64_OFFSET, s);
}
