/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the Dapr state request body parsers (http/state-body.c): the same
 * bytes as a save body, a transaction body and a bulk-get body, with and
 * without query metadata. Checks that every parsed op is well-formed: a
 * non-empty key, and a value for every upsert.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http/state-body.h"
#include "util/strv.h"

static void check(const OpList *l) {
        for (size_t i = 0; i < l->n; i++) {
                const StateOp *op = &l->ops[i];
                if (!op->key || !*op->key)
                        abort();
                if (op->kind == STATE_OP_UPSERT && !op->value)
                        abort();
                if (op->etag && !*op->etag)
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *text = (const char *) data;
        json_t *mds[2] = { json_object(), json_pack("{s:s}", "ttlInSeconds", "5") };

        if (size > 1024 * 1024 || !mds[0] || !mds[1])
                goto out;
        for (size_t m = 0; m < 2; m++) {
                OpList l = {};
                char *err = NULL, **keys = NULL;

                if (state_body_parse_save(text, size, mds[m], 100, &l, &err) >= 0) {
                        check(&l);
                        op_list_done(&l);
                } else if (!err)
                        abort(); /* every failure but OOM says why */
                free(err);
                err = NULL;
                if (state_body_parse_transaction(text, size, mds[m], 100, &l, &err) >= 0) {
                        check(&l);
                        op_list_done(&l);
                }
                free(err);
                err = NULL;
                if (state_body_parse_bulk(text, size, 100, &keys, &err) >= 0)
                        strv_free(keys);
                free(err);
        }
out:
        json_decref(mds[0]);
        json_decref(mds[1]);
        return 0;
}
