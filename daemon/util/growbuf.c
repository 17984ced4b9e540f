/* SPDX-License-Identifier: Apache-2.0 */
/* See growbuf.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "growbuf.h"

void growbuf_reserve(GrowBuf *b, size_t n) {
        if (b->oom || b->cap - b->len > n)
                return;
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= n) {
                if (cap > SIZE_MAX / 2) {
                        b->oom = true;
                        return;
                }
                cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
                b->oom = true;
                return;
        }
        b->p = p;
        b->cap = cap;
}

void growbuf_put(GrowBuf *b, const void *s, size_t n) {
        growbuf_reserve(b, n);
        if (b->oom)
                return;
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}
