/* SPDX-License-Identifier: Apache-2.0 */
/* See wipe-alloc.h. */
#include <jansson.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "wipe-alloc.h"

static void wipe_free(void *p) {
        if (!p)
                return;
        /* the whole block as the allocator sees it: jansson does not tell the size */
        explicit_bzero(p, malloc_usable_size(p));
        free(p);
}

void json_wipe_alloc_install(void) {
        json_set_alloc_funcs(malloc, wipe_free);
}
