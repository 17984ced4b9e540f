/* SPDX-License-Identifier: Apache-2.0 */
/* SecretData: what a secret store driver hands back; every value is wiped before it is freed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/cleanup.h"
#include "driver.h"

int secret_data_add(SecretData *d, const char *name, const char *key, const void *value, size_t len) {
        SecretEntry it = {};

        if (d->n == d->allocated) {
                size_t na = d->allocated ? d->allocated * 2 : 8;
                SecretEntry *n = realloc(d->items, na * sizeof(SecretEntry));
                if (!n)
                        return -ENOMEM;
                d->items = n;
                d->allocated = na;
        }
        it.name = strdup(name);
        it.key = strdup(key);
        it.value = malloc(len + 1);
        if (!it.name || !it.key || !it.value) {
                free(it.name);
                free(it.key);
                free(it.value);
                return -ENOMEM;
        }
        if (len > 0)
                memcpy(it.value, value, len);
        it.value[len] = 0;
        it.value_len = len;
        d->items[d->n++] = it;
        return 0;
}

void secret_data_done(SecretData *d) {
        for (size_t i = 0; i < d->n; i++) {
                SecretEntry *it = &d->items[i];
                explicit_wipe(it->value, it->value_len);
                free(it->value);
                /* names can be secret too (a bulk answer lists what a host keeps) */
                erase_and_free(it->name);
                erase_and_free(it->key);
        }
        free(d->items);
        *d = (SecretData) {};
}

const SecretEntry *secret_data_find(const SecretData *d, const char *name, const char *key) {
        for (size_t i = 0; i < d->n; i++)
                if (streq(d->items[i].name, name) && streq(d->items[i].key, key))
                        return &d->items[i];
        return NULL;
}

static int item_cmp(const void *a, const void *b) {
        const SecretEntry *x = a, *y = b;
        int c = strcmp(x->name, y->name);
        return c ?: strcmp(x->key, y->key);
}

void secret_data_sort(SecretData *d) {
        if (d->n > 1)
                qsort(d->items, d->n, sizeof(SecretEntry), item_cmp);
}

char *secret_msg(const char *fmt, ...) {
        char *s = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}
