/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RFC 4648 base64. Encoding writes the standard alphabet with '=' padding
 * (what CloudEvents' data_base64 and Go's base64.StdEncoding use). Decoding
 * is lenient, for values people type: the standard and the URL-safe
 * alphabet ('+' or '-', '/' or '_') may be mixed, trailing '=' padding is
 * optional, leftover bits are ignored. Dependency-free.
 */
#pragma once

#include <stddef.h>

/* Length of the encoding of n bytes, without the NUL. */
size_t base64_encoded_len(size_t n);

/*
 * Encodes n bytes of p (p may be NULL when n is 0) into buf, which must hold
 * base64_encoded_len(n) + 1 bytes; a NUL is written after the text.
 * Returns the text length.
 */
size_t base64_encode_to(const void *p, size_t n, char *buf);

/* The same into a new NUL-terminated string; NULL on OOM. */
char *base64_encode(const void *p, size_t n);

/*
 * Decodes len characters of s. Every character must belong to one of the
 * two alphabets, except for any number of trailing '='. *ret is malloc'd
 * and NUL-terminated one byte past *ret_len (so text can be used as a C
 * string; the data itself may hold NULs). Returns 0, -EINVAL for invalid
 * input (nothing allocated), -ENOMEM.
 */
int base64_decode(const char *s, size_t len, char **ret, size_t *ret_len);
