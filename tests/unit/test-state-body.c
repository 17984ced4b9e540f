/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http/state-body.c beyond what the fuzzer checks: a body of 100,000 items is
 * parsed with O(1) growths of its buffer list (issue 10 finding 4: it grew one
 * entry at a time, quadratic), and the per-request bound answers -E2BIG with
 * Dapr's wording before parsing any item.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/state-body.h"
#include "util/strv.h"
#include "tests.h"

/* [{"key":"k0","value":{"n":0}}, ...] or the transaction form. */
static char *make_body(size_t n, bool transaction) {
        size_t cap = 64 + n * 96, len = 0;
        char *b = malloc(cap);

        ASSERT_NOT_NULL(b);
        len += (size_t) snprintf(b + len, cap - len, "%s", transaction ? "{\"operations\":[" : "[");
        for (size_t i = 0; i < n; i++)
                len += (size_t) snprintf(b + len, cap - len,
                                         transaction ? "%s{\"operation\":\"upsert\",\"request\":{\"key\":\"k%zu\",\"value\":{\"n\":%zu}}}"
                                                     : "%s{\"key\":\"k%zu\",\"value\":{\"n\":%zu}}",
                                         i ? "," : "", i, i);
        snprintf(b + len, cap - len, "%s", transaction ? "]}" : "]");
        return b;
}

TEST(hundred_thousand_items_linear) {
        enum { N = 100000 };
        _cleanup_free_ char *body = make_body(N, false), *err = NULL;
        json_t *md = json_object();
        OpList l = {};
        unsigned long before = state_body_array_grows();

        ASSERT_OK(state_body_parse_save(body, strlen(body), md, 0, &l, &err));
        ASSERT_EQ(l.n, N);
        ASSERT_STREQ(l.ops[N - 1].key, "k99999");
        ASSERT_TRUE(l.ops[N - 1].value_len == strlen("{\"n\":99999}"));
        /* One allocation for the whole list; the old code grew it N times. */
        ASSERT_TRUE(state_body_array_grows() - before <= 1);
        op_list_done(&l);
        json_decref(md);
}

#define BULK3 "{\"keys\":[\"a\",\"b\",\"c\"]}"

TEST(bound_per_request) {
        _cleanup_free_ char *save = make_body(11, false), *tx = make_body(11, true);
        json_t *md = json_object();
        OpList l = {};
        char *err = NULL, **keys = NULL;

        ASSERT_ERROR(state_body_parse_save(save, strlen(save), md, 10, &l, &err), E2BIG);
        ASSERT_STREQ(err, "the request contains 11 items, which is more than what the state store supports: 10");
        free(err);
        err = NULL;
        ASSERT_ERROR(state_body_parse_transaction(tx, strlen(tx), md, 10, &l, &err), E2BIG);
        ASSERT_STREQ(err,
                     "the transaction contains 11 operations, which is more than what the state store supports: 10");
        free(err);
        err = NULL;
        ASSERT_ERROR(state_body_parse_bulk(BULK3, strlen(BULK3), 2, &keys, &err), E2BIG);
        free(err);
        err = NULL;

        /* At the bound, and with no bound, it parses. */
        ASSERT_OK(state_body_parse_save(save, strlen(save), md, 11, &l, &err));
        ASSERT_EQ(l.n, 11);
        op_list_done(&l);
        ASSERT_OK(state_body_parse_transaction(tx, strlen(tx), md, 0, &l, &err));
        ASSERT_EQ(l.n, 11);
        op_list_done(&l);
        ASSERT_OK(state_body_parse_bulk(BULK3, strlen(BULK3), 3, &keys, &err));
        ASSERT_EQ(strv_length(keys), 3);
        strv_free(keys);
        json_decref(md);
}
