/* SPDX-License-Identifier: Apache-2.0 */
/* The built-in secret store drivers, one line each. */
#include <stddef.h>

#include "../../util/cleanup.h"
#include "driver.h"

extern const SecretDriver secret_local_file_driver;
extern const SecretDriver secret_local_env_driver;
extern const SecretDriver secret_systemd_credentials_driver;
#if HAVE_KEYUTILS
extern const SecretDriver secret_linux_keyring_driver;
#endif
#if HAVE_LIBSECRET
extern const SecretDriver secret_secretservice_driver;
#endif

static const SecretDriver *const drivers[] = {
        &secret_local_file_driver,
        &secret_local_env_driver,
        &secret_systemd_credentials_driver,
#if HAVE_KEYUTILS
        &secret_linux_keyring_driver,
#endif
#if HAVE_LIBSECRET
        &secret_secretservice_driver,
#endif
        NULL,
};

const SecretDriver *secret_driver_find(const char *type) {
        for (size_t i = 0; type && drivers[i]; i++)
                if (streq(drivers[i]->type, type))
                        return drivers[i];
        return NULL;
}

const SecretDriver *const *secret_drivers(void) {
        return drivers;
}
