/* SPDX-License-Identifier: Apache-2.0 */
/*
 * secretstores.local.env: the daemon's own environment, as Dapr's env store.
 * Metadata: prefix (optional): secret NAME is the variable <prefix>NAME, and
 * bulk lists only variables with the prefix, the prefix cut off.
 *
 * As daprd: APP_API_TOKEN and every DAPR_* variable are never given out
 * (nor, here, MOORING_* ones, the daemon's own); a variable that is not set
 * is answered with an empty value, not an error (daprd does the same).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "driver.h"

extern char **environ;

typedef struct EnvStore {
        SecretStore base;
        char *prefix;
} EnvStore;

static bool allowed(const char *var) {
        return strcasecmp(var, "APP_API_TOKEN") != 0 && strncasecmp(var, "DAPR_", 5) != 0 &&
               strncasecmp(var, "MOORING_", 8) != 0;
}

static int env_open(SecretStore *s, const Component *c, char **reterr_msg) {
        EnvStore *e = (EnvStore *) s;
        e->prefix = strdup(component_get_string(c, "prefix") ?: "");
        return e->prefix ? 0 : -ENOMEM;
}

static void env_close(SecretStore *s) {
        free(((EnvStore *) s)->prefix);
}

static int env_get(SecretStore *s, const char *name, char *const *metadata, SecretData *ret, char **reterr_msg) {
        EnvStore *e = (EnvStore *) s;
        _cleanup_free_ char *var = NULL;
        const char *v = NULL;

        if (asprintf(&var, "%s%s", e->prefix, name) < 0)
                return -ENOMEM;
        if (allowed(var))
                v = getenv(var);
        return secret_data_add(ret, name, name, v ?: "", v ? strlen(v) : 0);
}

static int env_bulk(SecretStore *s, char *const *metadata, SecretData *ret, char **reterr_msg) {
        EnvStore *e = (EnvStore *) s;
        size_t pl = strlen(e->prefix);

        for (char **p = environ; p && *p; p++) {
                const char *eq = strchr(*p, '=');
                _cleanup_free_ char *var = NULL;
                int r;

                if (!eq || (size_t) (eq - *p) <= pl || !strneq(*p, e->prefix, pl))
                        continue;
                var = strndup(*p, eq - *p);
                if (!var)
                        return -ENOMEM;
                if (!allowed(var))
                        continue;
                r = secret_data_add(ret, var + pl, var + pl, eq + 1, strlen(eq + 1));
                if (r < 0)
                        return r;
        }
        return 0;
}

const SecretDriver secret_local_env_driver = {
        .type = "secretstores.local.env",
        .abi = SECRET_DRIVER_ABI,
        .instance_size = sizeof(EnvStore),
        .open = env_open,
        .close = env_close,
        .get = env_get,
        .bulk = env_bulk,
};
