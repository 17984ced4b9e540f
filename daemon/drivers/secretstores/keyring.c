/* SPDX-License-Identifier: Apache-2.0 */
/*
 * secretstores.linux.keyring: the Linux kernel keyring, through libkeyutils
 * (dlopen()ed at the first open). A secret NAME is the key of type "user"
 * whose description is <prefix>NAME, found with keyctl_search() in the
 * keyring (and the keyrings linked into it that the daemon may search);
 * bulk lists the "user" keys linked directly into the keyring whose
 * description starts with the prefix.
 *
 * Metadata: keyring: user (default; the daemon user's user keyring @u),
 * user-session (@us), session (@s: under systemd the service's own, see
 * KeyringMode=), process (@p), or persistent (the user's persistent keyring,
 * kept by the kernel across logins, `keyctl get_persistent @u`);
 * prefix (optional) namespaces the descriptions ("mooring:").
 *
 * The daemon must possess the key or have read and search permission on it
 * as its user: a key added by another process for the mooring user needs
 * `keyctl setperm ID 0x3f0b0000` (possessor all, user view+read+search).
 * keyctl calls are system calls that never wait on anything: they run on the
 * loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../dl-keyutils.h"
#include "driver.h"

#define TYPE "secretstores.linux.keyring"

typedef struct KeyringStore {
        SecretStore base;
        key_serial_t ring;
        char *ring_name;
        char *prefix;
} KeyringStore;

static const struct {
        const char *name;
        key_serial_t id;
} rings[] = {
        { "user", KEY_SPEC_USER_KEYRING },
        { "user-session", KEY_SPEC_USER_SESSION_KEYRING },
        { "session", KEY_SPEC_SESSION_KEYRING },
        { "process", KEY_SPEC_PROCESS_KEYRING },
};

static int keyring_open(SecretStore *s, const Component *c, char **reterr_msg) {
        KeyringStore *k = (KeyringStore *) s;
        const char *ring = component_get_string(c, "keyring");
        char *desc = NULL;
        int r;

        if (!ring || !*ring)
                ring = "user";
        r = dlopen_keyutils(TYPE, reterr_msg);
        if (r < 0)
                return r;
        k->ring = 0;
        for (size_t i = 0; i < ELEMENTSOF(rings); i++)
                if (streq(rings[i].name, ring))
                        k->ring = rings[i].id;
        if (streq(ring, "persistent")) {
                long id = sym_keyctl_get_persistent((uid_t) -1, KEY_SPEC_PROCESS_KEYRING);
                if (id < 0)
                        return *reterr_msg = secret_msg("cannot get the persistent keyring: %s", strerror(errno)),
                               -EIO;
                k->ring = (key_serial_t) id;
        }
        if (k->ring == 0)
                return *reterr_msg = secret_msg("metadata keyring must be user, user-session, session, process "
                                                "or persistent, not '%s'", ring),
                       -EINVAL;
        /* the keyring must be there and describable by us */
        if (sym_keyctl_describe_alloc(k->ring, &desc) < 0)
                return *reterr_msg = secret_msg("cannot use the %s keyring: %s", ring, strerror(errno)), -EIO;
        free(desc);
        k->ring_name = strdup(ring);
        k->prefix = strdup(component_get_string(c, "prefix") ?: "");
        return k->ring_name && k->prefix ? 0 : -ENOMEM;
}

static void keyring_close(SecretStore *s) {
        KeyringStore *k = (KeyringStore *) s;
        free(k->ring_name);
        free(k->prefix);
}

/* Reads key id into ret as secret name. */
static int read_key(KeyringStore *k, key_serial_t id, const char *name, SecretData *ret, char **reterr_msg) {
        void *buf = NULL;
        int n = sym_keyctl_read_alloc(id, &buf);
        int r;

        if (n < 0) {
                r = -errno;
                *reterr_msg = secret_msg("cannot read key '%s%s': %s", k->prefix, name, strerror(-r));
                return r == -EACCES ? r : -EIO;
        }
        r = secret_data_add(ret, name, name, buf, (size_t) n);
        explicit_wipe(buf, (size_t) n);
        free(buf);
        return r;
}

static int keyring_get(SecretStore *s, const char *name, char *const *metadata, SecretData *ret,
                       char **reterr_msg) {
        KeyringStore *k = (KeyringStore *) s;
        _cleanup_free_ char *desc = NULL;
        long id;

        if (asprintf(&desc, "%s%s", k->prefix, name) < 0)
                return -ENOMEM;
        id = sym_keyctl_search(k->ring, "user", desc, 0);
        if (id < 0) {
                int r = -errno; /* before secret_msg() may change errno */
                if (r == -ENOKEY || r == -EKEYEXPIRED || r == -EKEYREVOKED)
                        return *reterr_msg = secret_msg("no key '%s' in the %s keyring", desc, k->ring_name), -ENOENT;
                *reterr_msg = secret_msg("cannot search the %s keyring for '%s': %s", k->ring_name, desc,
                                         strerror(-r));
                return r == -EACCES ? r : -EIO;
        }
        return read_key(k, (key_serial_t) id, name, ret, reterr_msg);
}

static int keyring_bulk(SecretStore *s, char *const *metadata, SecretData *ret, char **reterr_msg) {
        KeyringStore *k = (KeyringStore *) s;
        void *list = NULL;
        int n = sym_keyctl_read_alloc(k->ring, &list);
        int r = 0;

        if (n < 0) {
                r = -errno; /* before secret_msg() may change errno */
                *reterr_msg = secret_msg("cannot list the %s keyring: %s", k->ring_name, strerror(-r));
                return r == -EACCES ? r : -EIO;
        }
        for (size_t i = 0; i < (size_t) n / sizeof(key_serial_t); i++) {
                key_serial_t id = ((key_serial_t *) list)[i];
                char *desc = NULL, *p;
                const char *name;

                /* "type;uid;gid;perm;description"; keys we may not view are not ours to list */
                if (sym_keyctl_describe_alloc(id, &desc) < 0)
                        continue;
                p = desc;
                for (int f = 0; f < 4 && p; f++)
                        p = strchr(p, ';') ? strchr(p, ';') + 1 : NULL;
                if (p && strneq(desc, "user;", 5) && strneq(p, k->prefix, strlen(k->prefix)) &&
                    *(name = p + strlen(k->prefix))) {
                        r = read_key(k, id, name, ret, reterr_msg);
                        if (r == -EACCES || r == -EIO) { /* revoked or not readable since: not listed */
                                free(*reterr_msg);
                                *reterr_msg = NULL;
                                r = 0;
                        }
                }
                free(desc);
                if (r < 0)
                        break;
        }
        free(list);
        return r;
}

const SecretDriver secret_linux_keyring_driver = {
        .type = TYPE,
        .abi = SECRET_DRIVER_ABI,
        .instance_size = sizeof(KeyringStore),
        .open = keyring_open,
        .close = keyring_close,
        .get = keyring_get,
        .bulk = keyring_bulk,
};
