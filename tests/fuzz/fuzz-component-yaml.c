/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes component_parse() (core/component.c): arbitrary bytes as a
 * components file. Every component handed out is exercised with the model's
 * helpers and released; every error is formatted, so all strings in a
 * ConfError are read.
 */
#include <stdlib.h>

#include "core/component.h"
#include "core/conferr.h"
#include "fuzz.h"

static void found(Component *c, void *userdata) {
        size_t *n = userdata;

        (void) component_category(c);
        (void) component_in_scope(c, "fuzz");
        (void) component_in_scope(c, NULL);
        (void) component_equal(c, c);
        for (size_t i = 0; i < c->n_items; i++)
                (void) component_get_string(c, c->items[i].name);
        (*n)++;
        component_unref(c);
}

static void error(const ConfError *e, void *userdata) {
        free(conf_error_format(e));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t n = 0;
        int r;

        /* The loader refuses files over 1 MiB before parsing; stay in that range. */
        if (size > 1024 * 1024)
                return 0;
        r = component_parse("fuzz.yaml", (const char *) data, size, found, error, &n);
        if (r >= 0 && (size_t) r != n)
                abort(); /* the count returned must match what was handed out */
        return 0;
}
