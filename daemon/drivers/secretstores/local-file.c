/* SPDX-License-Identifier: Apache-2.0 */
/*
 * secretstores.local.file: Dapr's JSON secrets file (see file-parse.h for
 * the format). Metadata: secretsFile (required), nestedSeparator (":"),
 * multiValued (false).
 *
 * daprd reads the file once at start. mooring reads it at open and again
 * whenever the file changed (another inode, size or mtime; one stat() per
 * call), so a rotated secret is served without a reload. A file that became
 * unreadable or broken fails the calls with the reason and keeps nothing of
 * the old contents.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/fileio.h"
#include "../../util/strv.h"
#include "driver.h"
#include "file-parse.h"

typedef struct FileStore {
        SecretStore base;
        char *path;
        char *separator;
        bool multi_valued;
        SecretData data;
        struct stat st;      /* of the file data was read from */
        bool loaded;
} FileStore;

static bool same_file(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static int load(FileStore *f, char **reterr_msg) {
        _cleanup_(secret_data_done) SecretData d = {};
        char *text = NULL;
        struct stat st;
        size_t len;
        int r;

        if (stat(f->path, &st) < 0) {
                r = -errno;
                goto fail;
        }
        if (f->loaded && same_file(&st, &f->st))
                return 0;
        r = read_full_file(f->path, SECRET_FILE_MAX, &text, &len);
        if (r < 0)
                goto fail;
        r = secret_file_parse(text, len, f->separator, f->multi_valued, &d, reterr_msg);
        explicit_wipe(text, len);
        free(text);
        if (r < 0) {
                secret_data_done(&f->data);
                f->loaded = false;
                return r == -ENOMEM ? r : -EIO;
        }
        secret_data_done(&f->data);
        f->data = d;
        d = (SecretData) {};
        f->st = st;
        f->loaded = true;
        return 0;
fail:
        secret_data_done(&f->data);
        f->loaded = false;
        if (r == -ENOMEM)
                return r;
        *reterr_msg = secret_msg("cannot read secretsFile '%s': %s", f->path, strerror(-r));
        return -EIO;
}

static int file_open(SecretStore *s, const Component *c, char **reterr_msg) {
        FileStore *f = (FileStore *) s;
        const char *path = component_get_string(c, "secretsFile");
        const char *sep = component_get_string(c, "nestedSeparator");
        const char *mv = component_get_string(c, "multiValued");

        if (!path || !*path)
                return *reterr_msg = secret_msg("metadata secretsFile is required"), -EINVAL;
        f->multi_valued = false;
        if (mv && *mv) {
                int b = parse_boolean(mv);
                if (b < 0)
                        return *reterr_msg = secret_msg("metadata multiValued must be true or false, not '%s'", mv),
                               -EINVAL;
                f->multi_valued = b;
        }
        f->path = strdup(path);
        f->separator = strdup(sep && *sep ? sep : ":"); /* Dapr: an empty separator means the default */
        if (!f->path || !f->separator)
                return -ENOMEM;
        return load(f, reterr_msg);
}

static void file_close(SecretStore *s) {
        FileStore *f = (FileStore *) s;
        secret_data_done(&f->data);
        free(f->path);
        free(f->separator);
}

static int copy_items(const SecretData *from, const char *name, SecretData *ret) {
        for (size_t i = 0; i < from->n; i++) {
                const SecretEntry *it = &from->items[i];
                if (name && !streq(it->name, name))
                        continue;
                int r = secret_data_add(ret, it->name, it->key, it->value, it->value_len);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int file_get(SecretStore *s, const char *name, char *const *metadata, SecretData *ret, char **reterr_msg) {
        FileStore *f = (FileStore *) s;
        int r = load(f, reterr_msg);
        if (r < 0)
                return r;
        r = copy_items(&f->data, name, ret);
        if (r < 0)
                return r;
        if (ret->n == 0)
                return *reterr_msg = secret_msg("no such secret in secretsFile"), -ENOENT;
        return 0;
}

static int file_bulk(SecretStore *s, char *const *metadata, SecretData *ret, char **reterr_msg) {
        FileStore *f = (FileStore *) s;
        int r = load(f, reterr_msg);
        return r < 0 ? r : copy_items(&f->data, NULL, ret);
}

const SecretDriver secret_local_file_driver = {
        .type = "secretstores.local.file",
        .abi = SECRET_DRIVER_ABI,
        .instance_size = sizeof(FileStore),
        .features = 0, /* multiValued stores have SECRET_FEATURE_MULTIPLE_KEY_VALUES: see the block */
        .open = file_open,
        .close = file_close,
        .get = file_get,
        .bulk = file_bulk,
};
