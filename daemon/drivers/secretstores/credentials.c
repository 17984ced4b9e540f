/* SPDX-License-Identifier: Apache-2.0 */
/*
 * secretstores.systemd.credentials: the service's systemd credentials, the
 * files systemd places in $CREDENTIALS_DIRECTORY for LoadCredential=,
 * LoadCredentialEncrypted=, SetCredential= and SetCredentialEncrypted=
 * (decrypted by systemd before the daemon starts; a non-swappable, read-only
 * directory only the service can read). A secret NAME is the credential
 * file NAME; bulk lists every credential.
 *
 * Metadata: directory (optional; default $CREDENTIALS_DIRECTORY, for tests
 * and for credentials placed elsewhere), trimNewline (default false: the
 * bytes as systemd gave them; true drops one trailing "\n", which
 * `echo secret > file` adds).
 *
 * Files are read at each call (they are small and in memory), so a
 * `systemctl reload` after systemd gave new credentials needs nothing more.
 * Names that are no plain file name ("a/b", "..") are refused.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "driver.h"

#define CREDENTIAL_MAX (1024 * 1024)

typedef struct CredStore {
        SecretStore base;
        char *dir;
        bool trim_newline;
} CredStore;

static bool credential_name_ok(const char *name) {
        return *name && !strchr(name, '/') && !streq(name, ".") && !streq(name, "..") && strlen(name) <= NAME_MAX;
}

static int cred_open(SecretStore *s, const Component *c, char **reterr_msg) {
        CredStore *cs = (CredStore *) s;
        const char *dir = component_get_string(c, "directory");
        const char *trim = component_get_string(c, "trimNewline");
        struct stat st;

        if (!dir || !*dir)
                dir = getenv("CREDENTIALS_DIRECTORY");
        if (!dir || !*dir)
                return *reterr_msg = secret_msg("$CREDENTIALS_DIRECTORY is not set: give the service credentials "
                                                "with LoadCredential= or SetCredentialEncrypted=, or set metadata "
                                                "directory"),
                       -EINVAL;
        if (trim && *trim) {
                int b = parse_boolean(trim);
                if (b < 0)
                        return *reterr_msg = secret_msg("metadata trimNewline must be true or false, not '%s'", trim),
                               -EINVAL;
                cs->trim_newline = b;
        }
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return *reterr_msg = secret_msg("credentials directory '%s' is not a readable directory", dir),
                       -EINVAL;
        cs->dir = strdup(dir);
        return cs->dir ? 0 : -ENOMEM;
}

static void cred_close(SecretStore *s) {
        free(((CredStore *) s)->dir);
}

/* Reads dir/name into ret (name, name). */
static int read_credential(CredStore *cs, int dfd, const char *name, SecretData *ret, char **reterr_msg) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        char *buf;
        size_t len = 0;
        int r;

        fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT)
                        return *reterr_msg = secret_msg("no credential '%s'", name), -ENOENT;
                r = -errno;
                return *reterr_msg = secret_msg("cannot open credential '%s': %s", name, strerror(-r)),
                       r == -EACCES ? r : -EIO;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return *reterr_msg = secret_msg("credential '%s' is not a regular file", name), -EIO;
        if (st.st_size > CREDENTIAL_MAX)
                return *reterr_msg = secret_msg("credential '%s' is larger than %d bytes", name, CREDENTIAL_MAX),
                       -EIO;
        buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (len < (size_t) st.st_size) {
                ssize_t k = read(fd, buf + len, (size_t) st.st_size - len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                len += (size_t) k;
        }
        if (cs->trim_newline && len > 0 && buf[len - 1] == '\n')
                len--;
        r = secret_data_add(ret, name, name, buf, len);
        explicit_wipe(buf, (size_t) st.st_size + 1);
        free(buf);
        return r;
}

static int cred_get(SecretStore *s, const char *name, char *const *metadata, SecretData *ret, char **reterr_msg) {
        CredStore *cs = (CredStore *) s;
        _cleanup_close_ int dfd = -EBADF;

        if (!credential_name_ok(name))
                return *reterr_msg = secret_msg("'%s' is not a credential name", name), -ENOENT;
        dfd = open(cs->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return *reterr_msg = secret_msg("cannot open credentials directory '%s': %s", cs->dir,
                                                strerror(errno)),
                       -EIO;
        return read_credential(cs, dfd, name, ret, reterr_msg);
}

static int cred_bulk(SecretStore *s, char *const *metadata, SecretData *ret, char **reterr_msg) {
        CredStore *cs = (CredStore *) s;
        DIR *d = opendir(cs->dir);
        struct dirent *de;
        int r = 0;

        if (!d)
                return *reterr_msg = secret_msg("cannot open credentials directory '%s': %s", cs->dir,
                                                strerror(errno)),
                       -EIO;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                r = read_credential(cs, dirfd(d), de->d_name, ret, reterr_msg);
                if (r == -EIO || r == -ENOENT) { /* not a file, or gone since readdir: not a credential */
                        free(*reterr_msg);
                        *reterr_msg = NULL;
                        r = 0;
                }
                if (r < 0)
                        break;
        }
        closedir(d);
        return r;
}

const SecretDriver secret_systemd_credentials_driver = {
        .type = "secretstores.systemd.credentials",
        .abi = SECRET_DRIVER_ABI,
        .instance_size = sizeof(CredStore),
        .open = cred_open,
        .close = cred_close,
        .get = cred_get,
        .bulk = cred_bulk,
};
