/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bindings.localstorage: files under rootPath (output: create, get, list,
 * delete), as Dapr's component does, with one difference on purpose: a
 * fileName that would leave rootPath is refused with an error, where daprd
 * (securejoin) silently clamps it into the root. No path ever leaves rootPath:
 * every file is opened relative to a directory fd of the root with openat2()
 * and RESOLVE_BENEATH, so the kernel itself refuses absolute names, ".."
 * beyond the root and symlinks (anywhere in the path, created before or
 * during the call) that point outside it; /proc-style magic links are refused
 * too. The root itself is resolved once at open (symlinks in rootPath are the
 * operator's choice), and rootPath under /proc, /sys, /boot or
 * /var/run/secrets is refused as daprd refuses it.
 *
 * Dapr's data handling: create unquotes a JSON string once and then decodes
 * it from standard base64 if it is valid base64 (so "aGk=" stores "hi"),
 * answers {"fileName": "<relative path>"}, and names the file with a random
 * UUID when no fileName is given; get answers the file's bytes; list answers a
 * JSON array of the absolute paths of the files below the root (or below
 * fileName), in lexical order, `null` when there are none (daprd marshals an
 * empty Go slice so); delete answers nothing.
 *
 * File system calls block: they run on the binding's own worker thread
 * (work/queue.h), one operation after the other, never on the loop.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../core/component.h"
#include "../../util/base64.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../../work/queue.h"
#include "driver.h"

#define LS_FILE_MAX (100ULL * 1024 * 1024)

typedef struct LocalStorage {
        Binding base;
        char *root;          /* absolute, symlinks resolved */
        int root_fd;
        WorkQueue *queue;
} LocalStorage;

typedef enum LsOp { LS_CREATE, LS_GET, LS_LIST, LS_DELETE } LsOp;

typedef struct LsJob {
        LocalStorage *ls;
        LsOp op;
        char *file;          /* as the caller named it (create: possibly generated) */
        void *data;
        size_t len;
        BindingDoneFn done;
        void *userdata;
        /* results, written on the worker */
        int error;
        char *message;
        char *out;
        size_t out_len;
        bool has_out;
} LsJob;

static const char *const ls_operations[] = { "create", "get", "list", "delete", NULL };

static bool root_disallowed(const char *p) {
        static const char *const bad[] = { "/proc", "/sys", "/boot", "/var/run/secrets", "/run/secrets", NULL };
        for (const char *const *b = bad; *b; b++) {
                size_t n = strlen(*b);
                if (strncmp(p, *b, n) == 0 && (p[n] == 0 || p[n] == '/'))
                        return true;
        }
        return false;
}

static int mkdir_parents(const char *path) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++)
                if (*s == '/') {
                        *s = 0;
                        if (mkdir(p, 0777) < 0 && errno != EEXIST)
                                return -errno;
                        *s = '/';
                }
        if (mkdir(p, 0777) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int ls_open(Binding *b, char **reterr_msg) {
        LocalStorage *ls = (LocalStorage *) b;
        const char *root = component_get_string(b->component, "rootPath");
        char resolved[PATH_MAX];
        int r;

        ls->root_fd = -1;
        if (!root || !*root)
                return asprintf(reterr_msg, "'rootPath' is required") < 0 ? -ENOMEM : -EINVAL;
        r = mkdir_parents(root);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return asprintf(reterr_msg, "'rootPath' %s cannot be created: %s", root, strerror(-r)) < 0 ? -ENOMEM
                                                                                                          : r;
        if (!realpath(root, resolved))
                return asprintf(reterr_msg, "'rootPath' %s: %m", root) < 0 ? -ENOMEM : -errno;
        if (root_disallowed(resolved))
                return asprintf(reterr_msg, "'rootPath' %s points to a disallowed location", root) < 0 ? -ENOMEM
                                                                                                        : -EPERM;
        ls->root_fd = open(resolved, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (ls->root_fd < 0)
                return asprintf(reterr_msg, "'rootPath' %s: %m", root) < 0 ? -ENOMEM : -errno;
        ls->root = strdup(resolved);
        if (!ls->root)
                return -ENOMEM;
        ls->queue = work_queue_new(b->event);
        if (!ls->queue)
                return asprintf(reterr_msg, "cannot start a worker thread: %m") < 0 ? -ENOMEM : -errno;
        return 0;
}

static void ls_close(Binding *b) {
        LocalStorage *ls = (LocalStorage *) b;
        /* Runs what is queued and answers it: file operations are short. */
        ls->queue = work_queue_free(ls->queue);
        if (ls->root_fd >= 0)
                close(ls->root_fd);
        free(ls->root);
}

/* ---- on the worker ---- */

static void job_fail(LsJob *j, int error, const char *fmt, ...) _printf_(3, 4);
static void job_fail(LsJob *j, int error, const char *fmt, ...) {
        va_list ap;
        j->error = error;
        va_start(ap, fmt);
        if (vasprintf(&j->message, fmt, ap) < 0)
                j->message = NULL;
        va_end(ap);
}

/* Opens rel (relative to the root) without ever leaving it. -EXDEV: it would. */
static int open_beneath(LocalStorage *ls, const char *rel, int flags, mode_t mode) {
        struct open_how how = {
                .flags = (uint64_t) flags | O_CLOEXEC,
                .mode = (flags & O_CREAT) ? mode : 0,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        int fd = (int) syscall(SYS_openat2, ls->root_fd, rel, &how, sizeof how);
        return fd < 0 ? -errno : fd;
}

/* Creates the directories of rel's parent, each one checked to stay beneath the root. */
static int mkdirs_beneath(LocalStorage *ls, const char *rel) {
        _cleanup_free_ char *p = strdup(rel);
        if (!p)
                return -ENOMEM;
        char *slash = strrchr(p, '/');
        if (!slash)
                return 0;
        *slash = 0;
        for (char *s = p;; s++) {
                if (*s == '/' || *s == 0) {
                        char c = *s;
                        *s = 0;
                        if (*p) {
                                int fd = open_beneath(ls, p, O_DIRECTORY | O_PATH, 0);
                                if (fd == -ENOENT) {
                                        /* the parent just opened beneath the root; create in it */
                                        _cleanup_free_ char *parent = strdup(p);
                                        if (!parent)
                                                return -ENOMEM;
                                        char *ps = strrchr(parent, '/');
                                        const char *name = ps ? ps + 1 : parent;
                                        int pfd = ps ? (*ps = 0, open_beneath(ls, parent, O_DIRECTORY | O_PATH, 0))
                                                     : fcntl(ls->root_fd, F_DUPFD_CLOEXEC, 3);
                                        if (pfd < 0)
                                                return pfd;
                                        int r = mkdirat(pfd, name, 0777) < 0 && errno != EEXIST ? -errno : 0;
                                        close(pfd);
                                        if (r < 0)
                                                return r;
                                        fd = open_beneath(ls, p, O_DIRECTORY | O_PATH, 0);
                                }
                                if (fd < 0)
                                        return fd;
                                close(fd);
                        }
                        if (c == 0)
                                break;
                        *s = c;
                }
        }
        return 0;
}

static const char *path_error(int r) {
        return r == -EXDEV ? "it leaves rootPath" : r == -ELOOP ? "too many symlinks" : strerror(-r);
}

/* Dapr: unquote a JSON string once, then decode standard base64 if the text is that. */
static void create_data(LsJob *j, const void **ret, size_t *ret_len, char **ret_free) {
        const char *d = j->data;
        size_t n = j->len;

        *ret_free = NULL;
        if (n >= 2 && d[0] == '"' && d[n - 1] == '"') {
                json_t *s = json_loadb(d, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                if (json_is_string(s)) {
                        char *u = malloc(json_string_length(s) + 1);
                        if (u) {
                                memcpy(u, json_string_value(s), json_string_length(s) + 1);
                                n = json_string_length(s);
                                d = *ret_free = u;
                        }
                }
                json_decref(s);
        }
        /* Go's StdEncoding: the standard alphabet, '=' padding to a multiple of 4; CR and LF skipped. */
        size_t chars = 0, pad = 0;
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
                char c = d[i];
                if (c == '\r' || c == '\n')
                        continue;
                if (c == '=') {
                        pad++;
                        chars++;
                        continue;
                }
                ok = pad == 0 && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                  c == '+' || c == '/');
                chars++;
        }
        char *decoded = NULL;
        size_t dlen = 0;
        if (ok && chars % 4 == 0 && pad <= 2) {
                _cleanup_free_ char *clean = malloc(n + 1);
                size_t k = 0;
                if (clean) {
                        for (size_t i = 0; i < n; i++)
                                if (d[i] != '\r' && d[i] != '\n')
                                        clean[k++] = d[i];
                        if (base64_decode(clean, k, &decoded, &dlen) >= 0) {
                                free(*ret_free);
                                *ret_free = decoded;
                                d = decoded;
                                n = dlen;
                        }
                }
        }
        *ret = d;
        *ret_len = n;
}

static void job_create(LsJob *j) {
        const void *data;
        size_t len;
        _cleanup_free_ char *owned = NULL;
        int r = mkdirs_beneath(j->ls, j->file);
        if (r < 0)
                return job_fail(j, r, "error creating the directories of %s: %s", j->file, path_error(r));
        int fd = open_beneath(j->ls, j->file, O_WRONLY | O_CREAT | O_TRUNC | O_NOCTTY, 0666);
        if (fd < 0)
                return job_fail(j, fd, "error creating file %s: %s", j->file, path_error(fd));
        create_data(j, &data, &len, &owned);
        for (size_t off = 0; off < len;) {
                ssize_t k = write(fd, (const char *) data + off, len - off);
                if (k < 0) {
                        r = -errno;
                        close(fd);
                        return job_fail(j, r, "error writing to file %s: %s", j->file, strerror(-r));
                }
                off += (size_t) k;
        }
        if (close(fd) < 0)
                return job_fail(j, -errno, "error writing to file %s: %m", j->file);
        json_t *o = json_pack("{s:s}", "fileName", j->file);
        j->out = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!j->out)
                return job_fail(j, -ENOMEM, "out of memory");
        j->out_len = strlen(j->out);
        j->has_out = true;
}

static void job_get(LsJob *j) {
        int fd = open_beneath(j->ls, j->file, O_RDONLY | O_NOCTTY, 0);
        struct stat st;
        if (fd < 0)
                return fd == -ENOENT ? job_fail(j, fd, "file not found: %s", j->file)
                                     : job_fail(j, fd, "error opening path %s: %s", j->file, path_error(fd));
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t) st.st_size > LS_FILE_MAX) {
                close(fd);
                return job_fail(j, -EINVAL, "%s is not a regular file of at most 100 MiB", j->file);
        }
        j->out = malloc((size_t) st.st_size + 1);
        if (!j->out) {
                close(fd);
                return job_fail(j, -ENOMEM, "out of memory");
        }
        size_t have = 0;
        for (;;) {
                ssize_t k = read(fd, j->out + have, (size_t) st.st_size - have);
                if (k < 0) {
                        int r = -errno;
                        close(fd);
                        return job_fail(j, r, "error reading file %s: %s", j->file, strerror(-r));
                }
                if (k == 0 || (have += (size_t) k) == (size_t) st.st_size)
                        break;
        }
        close(fd);
        j->out_len = have;
        j->has_out = true;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Files (anything but directories; symlinks are not followed) below dirfd, absolute, lexical order. */
static int walk(int fd_dir, const char *abs, json_t *out) {
        DIR *d = fdopendir(fd_dir);
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        int r = 0;

        if (!d) {
                int r0 = -errno;
                close(fd_dir);
                return r0;
        }
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                char **l = realloc(names, (n + 1) * sizeof *l);
                if (!l || !(l[n] = strdup(de->d_name))) {
                        names = l ? l : names;
                        r = -ENOMEM;
                        break;
                }
                names = l;
                n++;
        }
        if (r >= 0 && n > 0)
                qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n && r >= 0; i++) {
                _cleanup_free_ char *p = NULL;
                struct stat st;
                if (asprintf(&p, "%s/%s", abs, names[i]) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        int fd = openat(dirfd(d), names[i], O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                        if (fd >= 0)
                                r = walk(fd, p, out);
                } else if (json_array_append_new(out, json_string(p)) < 0)
                        r = -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        closedir(d);
        return r;
}

static void job_list(LsJob *j) {
        const char *rel = j->file && *j->file ? j->file : ".";
        _cleanup_free_ char *abs = NULL;
        int fd = open_beneath(j->ls, rel, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0)
                return job_fail(j, fd, fd == -ENOTDIR ? "unable to list files as the file specified is not a "
                                                        "directory: %s" : "error getting stats for path %s: %s",
                                rel, path_error(fd));
        if (asprintf(&abs, "%s%s%s", j->ls->root, streq(rel, ".") ? "" : "/", streq(rel, ".") ? "" : rel) < 0) {
                close(fd);
                return job_fail(j, -ENOMEM, "out of memory");
        }
        json_t *a = json_array();
        int r = a ? walk(fd, abs, a) : (close(fd), -ENOMEM);
        if (r < 0) {
                json_decref(a);
                return job_fail(j, r, "error listing files in the directory %s: %s", rel, strerror(-r));
        }
        j->out = json_array_size(a) ? json_dumps(a, JSON_COMPACT) : strdup("null");
        json_decref(a);
        if (!j->out)
                return job_fail(j, -ENOMEM, "out of memory");
        j->out_len = strlen(j->out);
        j->has_out = true;
}

static void job_delete(LsJob *j) {
        /* What the name resolves to must be beneath the root (a symlink to outside is refused, as for
         * get and create); then the entry itself is removed from its parent, never followed. */
        int fd = open_beneath(j->ls, j->file, O_PATH, 0);
        if (fd < 0 && fd != -ENOENT)
                return job_fail(j, fd, "error deleting file %s: %s", j->file, path_error(fd));
        if (fd >= 0)
                close(fd);
        _cleanup_free_ char *parent = strdup(j->file);
        if (!parent)
                return job_fail(j, -ENOMEM, "out of memory");
        char *slash = strrchr(parent, '/');
        const char *name = slash ? slash + 1 : parent;
        if (slash)
                *slash = 0;
        int pfd = slash ? open_beneath(j->ls, *parent ? parent : ".", O_DIRECTORY | O_PATH, 0)
                        : fcntl(j->ls->root_fd, F_DUPFD_CLOEXEC, 3);
        if (pfd < 0)
                return job_fail(j, pfd, "error deleting file %s: %s", j->file, path_error(pfd));
        if (!*name || streq(name, ".") || streq(name, "..")) {
                close(pfd);
                return job_fail(j, -EINVAL, "error deleting file %s: not a file name", j->file);
        }
        int r = unlinkat(pfd, name, 0) < 0 ? -errno : 0;
        if (r == -EISDIR)
                r = unlinkat(pfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
        close(pfd);
        if (r < 0)
                return job_fail(j, r, "error deleting file %s: %s", j->file, strerror(-r));
}

static void job_run(void *userdata) {
        LsJob *j = userdata;
        switch (j->op) {
        case LS_CREATE:
                return job_create(j);
        case LS_GET:
                return job_get(j);
        case LS_LIST:
                return job_list(j);
        case LS_DELETE:
                return job_delete(j);
        }
}

static void job_noop(void *userdata) {
}

/* ---- on the loop ---- */

static void job_done(void *userdata) {
        LsJob *j = userdata;
        BindingResponse resp = { .data = j->out, .len = j->out_len };
        j->done(j->error, j->message ?: (j->error ? strerror(-j->error) : NULL), j->has_out ? &resp : NULL,
                j->userdata);
        free(j->file);
        free(j->data);
        free(j->message);
        free(j->out);
        free(j);
}

static int uuid4(char ret[static 37]) {
        uint8_t u[16];
        if (getrandom(u, sizeof u, 0) != (ssize_t) sizeof u)
                return -errno;
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        snprintf(ret, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
                 u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
        return 0;
}

static int ls_invoke(Binding *b, const BindingRequest *req, BindingDoneFn done, void *userdata,
                       char **reterr_msg) {
        LocalStorage *ls = (LocalStorage *) b;
        const char *file = binding_metadata_get(req->metadata, "fileName");
        char uuid[37];
        LsJob *j;
        int r;

        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        *j = (LsJob){ .ls = ls, .done = done, .userdata = userdata };
        j->op = streq(req->operation, "create") ? LS_CREATE : streq(req->operation, "get") ? LS_GET
                : streq(req->operation, "list") ? LS_LIST : LS_DELETE;
        if ((!file || !*file) && j->op == LS_CREATE) {
                r = uuid4(uuid);
                if (r < 0) {
                        free(j);
                        return r;
                }
                file = uuid;
        }
        j->file = strdup(file ?: "");
        j->data = malloc(req->len + 1);
        if (!j->file || !j->data) {
                free(j->file);
                free(j->data);
                free(j);
                return -ENOMEM;
        }
        memcpy(j->data, req->data, req->len);
        j->len = req->len;
        /* Refused before any file system call; openat2() would refuse them too. */
        if (j->op != LS_LIST && !*j->file)
                job_fail(j, -EINVAL, "metadata 'fileName' is required for %s", req->operation);
        else if (j->file[0] == '/')
                job_fail(j, -EXDEV, "fileName %s is absolute: it leaves rootPath", j->file);
        r = work_queue_submit(ls->queue, j->error ? job_noop : job_run, job_done, j);
        if (r < 0) {
                free(j->message);
                free(j->file);
                free(j->data);
                free(j);
        }
        return r;
}

const BindingDriver binding_localstorage_driver = {
        .type = "bindings.localstorage",
        .abi = BINDING_DRIVER_ABI,
        .instance_size = sizeof(LocalStorage),
        .operations = ls_operations,
        .open = ls_open,
        .close = ls_close,
        .invoke = ls_invoke,
};
