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
