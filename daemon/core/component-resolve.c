/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See component_resolve() in component.h. Only what component metadata needs
 * at load time: the two local secret stores Dapr users reach for here. The
 * secrets API itself (GET /v1.0/secrets) is a building block of its own.
 *
 * secretstores.local.file: metadata secretsFile (a JSON object; nested
 * objects are flattened with nestedSeparator, default ":"), as Dapr's.
 * secretstores.local.env: the secret is the environment variable of that name.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../util/fileio.h"
#include "../util/strv.h"
#include "component.h"

#define SECRETS_FILE_MAX (1024 * 1024)

/* Looks name up in a JSON object whose nested objects are joined with sep. */
static const char *flat_lookup(json_t *obj, const char *name, const char *sep) {
        const char *k;
        json_t *v;
        size_t seplen = strlen(sep);

        json_object_foreach(obj, k, v) {
                size_t kl = strlen(k);
                if (streq(k, name))
                        return json_is_string(v) ? json_string_value(v) : NULL;
                if (json_is_object(v) && strneq(name, k, kl) && strneq(name + kl, sep, seplen)) {
                        const char *r = flat_lookup(v, name + kl + seplen, sep);
                        if (r)
                                return r;
                }
        }
        return NULL;
}

static int secret_from_store(const Component *store, const char *name, const char *key, char **ret,
                             const char **reterr) {
        if (streq(store->type, "secretstores.local.env")) {
                const char *v = getenv(name);
                if (!v) {
                        *reterr = "no such environment variable";
                        return -ENOENT;
                }
                *ret = strdup(v);
                return *ret ? 0 : -ENOMEM;
        }
        if (streq(store->type, "secretstores.local.file")) {
                const char *path = component_get_string(store, "secretsFile");
                const char *sep = component_get_string(store, "nestedSeparator") ?: ":";
                _cleanup_erase_free_ char *text = NULL;
                json_t *root;
                size_t len;
                int r;

                if (!path) {
                        *reterr = "the secret store has no secretsFile";
                        return -EINVAL;
                }
                r = read_full_file(path, SECRETS_FILE_MAX, &text, &len);
                if (r < 0) {
                        *reterr = "cannot read the secret store's secretsFile";
                        return r;
                }
                root = json_loadb(text, len, 0, NULL);
                explicit_wipe(text, len);
                if (!json_is_object(root)) {
                        json_decref(root);
                        *reterr = "the secret store's secretsFile is not a JSON object";
                        return -EINVAL;
                }
                /* Dapr: a single-valued store answers {name: value}; key must be name (or empty). */
                const char *v = flat_lookup(root, name, sep);
                if (!v && key && !streq(key, name)) {
                        json_t *o = json_object_get(root, name);
                        v = json_is_object(o) ? json_string_value(json_object_get(o, key)) : NULL;
                }
                if (v)
                        *ret = strdup(v);
                json_decref(root); /* jansson does not wipe: the file's text was wiped above */
                if (!v) {
                        *reterr = "no such secret in the secret store";
                        return -ENOENT;
                }
                return *ret ? 0 : -ENOMEM;
        }
        *reterr = "auth.secretStore must be a secretstores.local.file or secretstores.local.env component";
        return -EOPNOTSUPP;
}

int component_resolve(Component *c, Component *const *all, size_t n_all, ConfError *e) {
        for (size_t i = 0; i < c->n_items; i++) {
                ComponentItem *it = &c->items[i];
                const char *why = NULL;
                char *v = NULL;
                int r;

                if (it->value && !it->resolved)
                        continue;
                if (it->env_ref) {
                        const char *env = getenv(it->env_ref);
                        if (!env)
                                return conf_error_set(e, c->file, it->line, "spec.metadata[].envRef",
                                                      "environment variable '%s' for '%s' is not set", it->env_ref,
                                                      it->name);
                        v = strdup(env);
                        if (!v)
                                return -ENOMEM;
                } else if (it->secret_name) {
                        const Component *store = NULL;
                        if (!c->secret_store)
                                return conf_error_set(e, c->file, it->line, "spec.metadata[].secretKeyRef",
                                                      "'%s' uses secretKeyRef but the component has no "
                                                      "auth.secretStore", it->name);
                        for (size_t j = 0; j < n_all && !store; j++)
                                if (streq(all[j]->name, c->secret_store))
                                        store = all[j];
                        if (!store)
                                return conf_error_set(e, c->file, it->line, "auth.secretStore",
                                                      "no secret store component named '%s'", c->secret_store);
                        r = secret_from_store(store, it->secret_name, it->secret_key, &v, &why);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                return conf_error_set(e, c->file, it->line, "spec.metadata[].secretKeyRef",
                                                      "secret '%s' for '%s' from store '%s': %s", it->secret_name,
                                                      it->name, store->name, why);
                } else
                        continue;
                if (it->resolved)
                        erase_and_free(it->value);
                it->value = v;
                it->resolved = true;
        }
        return 0;
}
