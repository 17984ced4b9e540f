/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The secret store driver interface: one const SecretDriver per engine,
 * listed in drivers/secretstores/registry.c. The secrets block
 * (blocks/secrets.c) owns what is Dapr's — scopes, error codes, the bulk
 * filter, running calls off the loop — and drivers only read secrets.
 *
 * Type names follow Dapr's secretstores.<provider>.<name>:
 *   secretstores.local.file            Dapr's, JSON file (secretsFile, nestedSeparator, multiValued)
 *   secretstores.local.env             Dapr's, the daemon's environment (prefix)
 *   secretstores.systemd.credentials   files in $CREDENTIALS_DIRECTORY (LoadCredential=, SetCredentialEncrypted=)
 *   secretstores.linux.keyring         the kernel keyring through libkeyutils (dlopen()ed)
 *   secretstores.freedesktop.secretservice  the Secret Service through libsecret (dlopen()ed)
 *
 * Rules every driver follows:
 * - get/bulk are synchronous and fill a SecretData. A driver whose calls can
 *   block (D-Bus round trips: libsecret) sets .blocking: the block then runs
 *   get/bulk on the store's own worker thread, never on the loop, one call at
 *   a time; such a driver touches nothing of the loop from them. Others are
 *   called on the loop and must not block (local files, syscalls).
 * - Secret values never reach a log line or an error message; names may.
 *   Every buffer that held a value is wiped before it is freed
 *   (secret_data_done() does so for what the driver hands back).
 * - Errors: -ENOENT no such secret; -EACCES the engine refused; -EINVAL bad
 *   request metadata; -EIO/-errno anything else, with a short message
 *   (malloc'd into *reterr_msg) that names no value.
 * - open() validates the metadata and fails with a message that says which
 *   field is wrong; close() frees what open() made (the core frees the store).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../../forward.h"

#define SECRET_DRIVER_ABI 1

typedef struct SecretDriver SecretDriver;
typedef struct SecretStore SecretStore;
typedef struct SecretCall SecretCall;
typedef struct WorkQueue WorkQueue;

typedef enum SecretFeature {
        /* a secret may hold several keys (Dapr's FeatureMultipleKeyValuesPerSecret) */
        SECRET_FEATURE_MULTIPLE_KEY_VALUES = 1 << 0,
} SecretFeature;

/* One key of one secret. Single-valued stores answer key == name (Dapr's {name: value}). */
typedef struct SecretEntry {
        char *name;
        char *key;
        char *value;        /* NUL-terminated; value_len bytes before it; wiped on done */
        size_t value_len;
} SecretEntry;

typedef struct SecretData {
        SecretEntry *items;
        size_t n;
        size_t allocated;
} SecretData;

/* Appends a copy of (name, key, value[0..len)). -ENOMEM (nothing added). */
int secret_data_add(SecretData *d, const char *name, const char *key, const void *value, size_t len);
/* Wipes every value (and name and key) and frees them; d is empty afterwards. */
void secret_data_done(SecretData *d);
/* The value of key in secret name, or NULL. */
const SecretEntry *secret_data_find(const SecretData *d, const char *name, const char *key);
/* Sorts by name, then key (bulk answers are grouped by name). */
void secret_data_sort(SecretData *d);

struct SecretStore {
        const SecretDriver *driver;
        Component *component;   /* ref */
        Registry *registry;     /* back-reference */
        WorkQueue *work;        /* blocking drivers only: their calls run here */
        SecretCall *calls;      /* started and not yet answered (blocks/secrets.c) */
        bool closing;           /* set (atomically) when the store closes: queued calls do not start */
};

struct SecretDriver {
        const char *type;              /* spec.type, e.g. "secretstores.local.file" */
        unsigned abi;                  /* SECRET_DRIVER_ABI; fields are only ever appended */
        size_t instance_size;          /* sizeof the engine's struct, SecretStore first */
        unsigned features;             /* SecretFeature */
        bool blocking;                 /* get/bulk may block: run on a worker thread */

        int (*open)(SecretStore *s, const Component *c, char **reterr_msg);
        void (*close)(SecretStore *s);
        /* The keys of secret name. metadata: NULL-terminated key, value pairs (request metadata). */
        int (*get)(SecretStore *s, const char *name, char *const *metadata, SecretData *ret, char **reterr_msg);
        /* Every secret the store holds. */
        int (*bulk)(SecretStore *s, char *const *metadata, SecretData *ret, char **reterr_msg);
};

/* The driver for a spec.type, or NULL (drivers/secretstores/registry.c). */
const SecretDriver *secret_driver_find(const char *type);
/* Every built-in driver, NULL-terminated (documentation, tests). */
const SecretDriver *const *secret_drivers(void);

/* A malloc'd printf, for *reterr_msg (NULL on OOM: the caller reports the errno alone). */
char *secret_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
