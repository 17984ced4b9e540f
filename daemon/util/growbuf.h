/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A text buffer that grows as it is written, for output assembled piece by piece on hot paths
 * (CloudEvent envelopes, trace export bodies) without a tree or stdio. Out of memory is sticky:
 * later writes do nothing and oom stays set, so a writer checks once at the end.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct GrowBuf {
        char *p;        /* NUL-terminated after len once anything was written */
        size_t len, cap;
        bool oom;
} GrowBuf;

/* Room for n more bytes (and the NUL) without a further allocation. */
void growbuf_reserve(GrowBuf *b, size_t n);
void growbuf_put(GrowBuf *b, const void *s, size_t n);
#define growbuf_lit(b, lit) growbuf_put((b), "" lit, sizeof(lit) - 1)
