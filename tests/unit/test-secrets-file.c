/* SPDX-License-Identifier: Apache-2.0 */
/*
 * drivers/secretstores/file-parse: the JSON secrets file of
 * secretstores.local.file as Dapr reads it (flattened names, arrays by index,
 * multiValued objects), plus what mooring does where daprd misbehaves
 * (numbers as their JSON text; a name that appears twice is an error that
 * says which).
 */
#include <string.h>

#include "drivers/secretstores/file-parse.h"
#include "tests.h"

static int parse(const char *text, const char *sep, bool multi, SecretData *d, char **err) {
        return secret_file_parse(text, strlen(text), sep, multi, d, err);
}

static const char *value(const SecretData *d, const char *name, const char *key) {
        const SecretEntry *e = secret_data_find(d, name, key);
        return e ? e->value : NULL;
}

TEST(single_valued_names_are_flattened) {
        SecretData d = {};
        char *err = NULL;

        ASSERT_OK(parse("{\"db\":{\"user\":\"u\",\"hosts\":[\"a\",{\"x\":\"b\"}],\"port\":5432,\"tls\":true,"
                        "\"none\":null},\"plain\":\"p\"}", ":", false, &d, &err));
        ASSERT_EQ(d.n, 7);
        ASSERT_STREQ(value(&d, "db:user", "db:user"), "u");
        ASSERT_STREQ(value(&d, "db:hosts:0", "db:hosts:0"), "a");
        ASSERT_STREQ(value(&d, "db:hosts:1:x", "db:hosts:1:x"), "b");
        ASSERT_STREQ(value(&d, "db:port", "db:port"), "5432");
        ASSERT_STREQ(value(&d, "db:tls", "db:tls"), "true");
        ASSERT_STREQ(value(&d, "db:none", "db:none"), "null");
        ASSERT_STREQ(value(&d, "plain", "plain"), "p");
        ASSERT_NULL(value(&d, "db", "db"));
        for (size_t i = 1; i < d.n; i++) /* sorted by name */
                ASSERT_TRUE(strcmp(d.items[i - 1].name, d.items[i].name) < 0);
        secret_data_done(&d);
        ASSERT_EQ(d.n, 0);
}

TEST(separator_is_taken_as_given) {
        SecretData d = {};
        char *err = NULL;

        ASSERT_OK(parse("{\"a\":{\"b\":{\"c\":\"v\"}}}", "--", false, &d, &err));
        ASSERT_STREQ(value(&d, "a--b--c", "a--b--c"), "v");
        secret_data_done(&d);
}

TEST(multi_valued_objects_are_one_secret) {
        SecretData d = {};
        char *err = NULL;

        ASSERT_OK(parse("{\"db\":{\"user\":\"u\",\"opt\":{\"ssl\":\"on\"}},\"plain\":\"p\",\"n\":5,\"l\":[1]}", ".",
                        true, &d, &err));
        ASSERT_EQ(d.n, 3); /* numbers and arrays at the top are ignored, as in Dapr */
        ASSERT_STREQ(value(&d, "db", "user"), "u");
        ASSERT_STREQ(value(&d, "db", "opt.ssl"), "on");
        ASSERT_STREQ(value(&d, "plain", "plain"), "p");
        secret_data_done(&d);
}

TEST(values_keep_their_bytes) {
        SecretData d = {};
        char *err = NULL;

        ASSERT_OK(parse("{\"k\":\"caf\\u00e9 \\\"q\\\"\\n\"}", ":", false, &d, &err));
        ASSERT_STREQ(value(&d, "k", "k"), "caf\xc3\xa9 \"q\"\n");
        ASSERT_EQ(d.items[0].value_len, strlen("caf\xc3\xa9 \"q\"\n"));
        secret_data_done(&d);
}

TEST(errors_say_why_and_keep_nothing) {
        static const struct {
                const char *text, *why;
        } bad[] = {
                { "{\"a:b\":\"1\",\"a\":{\"b\":\"2\"}}", "appears twice" },
                { "[\"x\"]", "JSON object" },
                { "{\"a\":", "not valid JSON" },
                { "{\"a\":\"1\",\"a\":\"2\"}", "not valid JSON" }, /* duplicate keys are refused */
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                SecretData d = {};
                char *err = NULL;
                ASSERT_ERROR(parse(bad[i].text, ":", false, &d, &err), EINVAL);
                ASSERT_NOT_NULL(err);
                ASSERT_TRUE(strstr(err, bad[i].why) != NULL);
                ASSERT_EQ(d.n, 0);
                free(err);
        }
}

/* jansson's own error text quotes the input near the error: none of it may reach the message */
TEST(an_error_never_shows_a_value) {
        static const char *const bad[] = {
                "{\"a\": \"s3cr3t-value",     /* premature end of input near '"s3cr3t-value' */
                "{\"a\": s3cr3t}",             /* invalid token near 's3cr3t' */
                "{\"s3cr3t-key\" \"x\"}",    /* ':' expected near '"x"'... and keys may be secret */
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                SecretData d = {};
                char *err = NULL;
                ASSERT_ERROR(parse(bad[i], ":", false, &d, &err), EINVAL);
                ASSERT_TRUE(strstr(err, "s3cr3t") == NULL);
                ASSERT_TRUE(strstr(err, "\"x\"") == NULL);
                free(err);
        }
}
