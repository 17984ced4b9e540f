/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes configuration_parse() (core/configuration.c): arbitrary bytes as a
 * Configuration file. A parsed configuration is run through acl_evaluate()
 * with a few fixed callers, verbs and paths (plus one path taken from the
 * input, so the normalizer sees fuzzed bytes) and secret_scope_check(); an
 * error is formatted, so every string in the ConfError is read.
 */
#include <stdlib.h>
#include <string.h>

#include "core/conferr.h"
#include "core/configuration.h"
#include "fuzz.h"

static const char *const callers[] = { "app1", "frontend", "", NULL };
static const char *const verbs[] = { "GET", "POST", "DELETE", "PROPFIND", NULL };
static const char *const paths[] = {
        "/", "op1", "/op1/a", "//admin//users?x=1", "/a/b/c/d/e", "/%41dmin/../admin/%2F", "/bad%zz", "", NULL,
};

static void check(const Configuration *c, const char *caller, const char *verb, const char *path) {
        const char *reason = NULL;
        AclDecision d = acl_evaluate(c, caller, verb, path, &reason);
        if ((d != ACL_ALLOW && d != ACL_DENY) || !reason)
                abort();
        (void) strlen(reason);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(configuration_freep) Configuration *c = NULL;
        ConfError e = {};
        int r;

        /* The loader refuses files over 1 MiB before parsing; stay in that range. */
        if (size > 1024 * 1024)
                return 0;
        r = configuration_parse("fuzz.yaml", (const char *) data, size, &c, &e);
        if (r < 0) {
                if (c)
                        abort(); /* nothing is handed out on failure */
                free(conf_error_format(&e));
                conf_error_done(&e);
                return 0;
        }
        if (e.message)
                abort(); /* success leaves the error untouched */

        /* The input's first line, as a path. */
        size_t n = 0;
        while (n < size && n < 256 && data[n] != '\n' && data[n] != '\0')
                n++;
        char *own = strndup((const char *) data, n);
        if (!own)
                return 0;

        for (size_t i = 0; i < ELEMENTSOF(callers); i++)
                for (size_t j = 0; j < ELEMENTSOF(verbs); j++) {
                        for (size_t k = 0; k < ELEMENTSOF(paths); k++)
                                check(c, callers[i], verbs[j], paths[k]);
                        check(c, callers[i], verbs[j], own);
                }
        if (c) {
                for (size_t i = 0; i < (c->access_control ? c->access_control->n_policies : 0); i++)
                        for (size_t j = 0; j < c->access_control->policies[i].n_operations; j++) {
                                const AclOperation *o = &c->access_control->policies[i].operations[j];
                                check(c, c->access_control->policies[i].app_id, "GET", o->name);
                                check(c, c->access_control->policies[i].app_id, "PUT", o->pattern);
                        }
                for (size_t i = 0; i < c->n_secret_scopes; i++) {
                        const SecretScope *s = &c->secret_scopes[i];
                        (void) secret_scope_check(c, s->store_name, "x");
                        for (size_t j = 0; s->allowed_secrets && s->allowed_secrets[j]; j++)
                                (void) secret_scope_check(c, s->store_name, s->allowed_secrets[j]);
                        for (size_t j = 0; s->denied_secrets && s->denied_secrets[j]; j++)
                                (void) secret_scope_check(c, s->store_name, s->denied_secrets[j]);
                }
                (void) configuration_feature_enabled(c, "ActorStateTTL");
        }
        (void) secret_scope_check(c, "store", "secret");
        (void) secret_scope_check(c, NULL, NULL);
        free(own);
        return 0;
}
