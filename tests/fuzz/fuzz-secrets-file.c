/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the JSON secrets file of secretstores.local.file
 * (drivers/secretstores/file-parse.c): the same bytes single-valued with ":"
 * and with a multi-byte separator, and multi-valued. Checks that every secret
 * has a name, a key and a NUL-terminated value of the stated length, that a
 * single-valued secret's key is its name, and that an error says why.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/secretstores/file-parse.h"
#include "fuzz.h"

static void check(const SecretData *d, bool multi) {
        for (size_t i = 0; i < d->n; i++) {
                const SecretEntry *it = &d->items[i];
                if (!it->name || !it->key || !it->value || it->value[it->value_len] != 0)
                        abort();
                if (!multi && strcmp(it->name, it->key) != 0)
                        abort();
                if (i > 0 && strcmp(d->items[i - 1].name, it->name) > 0) /* sorted by name */
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const struct {
                const char *sep;
                bool multi;
        } modes[] = { { ":", false }, { "--", false }, { ".", true } };

        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
                SecretData d = {};
                char *err = NULL;
                int r = secret_file_parse((const char *) data, size, modes[m].sep, modes[m].multi, &d, &err);
                if (r >= 0)
                        check(&d, modes[m].multi);
                else if (r != -ENOMEM && !err)
                        abort();
                secret_data_done(&d);
                free(err);
        }
        return 0;
}
