/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See component_resolve() in component.h: envRef from the daemon's
 * environment, secretKeyRef through a resolver the caller gives (the Manager
 * hands the secrets block's, so any open secret store serves: local file,
 * environment, systemd credentials, kernel keyring, Secret Service).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../util/strv.h"
#include "component.h"

int component_resolve(Component *c, ComponentSecretFn secret_fn, void *userdata, ConfError *e) {
        for (size_t i = 0; i < c->n_items; i++) {
                ComponentItem *it = &c->items[i];
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
                        _cleanup_free_ char *why = NULL;
                        if (!c->secret_store)
                                return conf_error_set(e, c->file, it->line, "spec.metadata[].secretKeyRef",
                                                      "'%s' uses secretKeyRef but the component has no "
                                                      "auth.secretStore", it->name);
                        if (!secret_fn)
                                return conf_error_set(e, c->file, it->line, "auth.secretStore",
                                                      "no secret store named '%s'", c->secret_store);
                        r = secret_fn(c->secret_store, it->secret_name, it->secret_key, &v, &why, userdata);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                return conf_error_set(e, c->file, it->line, "spec.metadata[].secretKeyRef",
                                                      "secret '%s' for '%s' from store '%s': %s", it->secret_name,
                                                      it->name, c->secret_store, why ?: strerror(-r));
                } else
                        continue;
                if (it->resolved)
                        erase_and_free(it->value);
                it->value = v;
                it->resolved = true;
        }
        return 0;
}
