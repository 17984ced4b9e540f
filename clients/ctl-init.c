/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl init and uninstall: a user's own mooring, as "dapr init" sets
 * up Dapr, without Docker and without Redis.
 *
 * init writes ~/.config/mooring ($XDG_CONFIG_HOME/mooring): apps.d/,
 * components/ with a state store and a pub/sub broker on the embedded
 * SQLite stores (named statestore and pubsub, as Dapr's defaults), and a
 * commented mooringd.conf; files that exist are left as they are. Where a
 * systemd user manager runs, mooringd.socket is enabled and started for the
 * user, so the first request starts the daemon. uninstall stops and disables
 * the user units and removes what init wrote, when it is unchanged; with
 * --all also the state (~/.local/state/mooring).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"

static const struct {
        const char *name;
        const char *text;
} init_files[] = {
        { "components/statestore.yaml",
          "# Written by mooringctl init: Dapr's default state store, on mooring's embedded SQLite\n"
          "# (in ~/.local/state/mooring). Replace it with state.postgresql or state.redis as needed.\n"
          "apiVersion: dapr.io/v1alpha1\n"
          "kind: Component\n"
          "metadata:\n"
          "  name: statestore\n"
          "spec:\n"
          "  type: state.sqlite\n"
          "  version: v1\n" },
        { "components/pubsub.yaml",
          "# Written by mooringctl init: Dapr's default pub/sub, on mooring's embedded durable\n"
          "# SQLite broker. Replace it with pubsub.redis or pubsub.mqtt3 as needed.\n"
          "apiVersion: dapr.io/v1alpha1\n"
          "kind: Component\n"
          "metadata:\n"
          "  name: pubsub\n"
          "spec:\n"
          "  type: pubsub.sqlite\n"
          "  version: v1\n" },
        { "mooringd.conf",
          "# Written by mooringctl init: the per-user mooringd's settings (see mooringd.conf(5)).\n"
          "[Daemon]\n"
          "#LogLevel=info\n" },
};

static char *xdg(const char *var, const char *fallback) {
        const char *v = getenv(var), *home = getenv("HOME");
        char *s = NULL;
        if (v && v[0] == '/')
                return asprintf(&s, "%s/mooring", v) < 0 ? NULL : s;
        if (home && home[0] == '/')
                return asprintf(&s, "%s/%s/mooring", home, fallback) < 0 ? NULL : s;
        return NULL;
}

static int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++)
                if (*s == '/') {
                        *s = 0;
                        if (mkdir(p, mode) < 0 && errno != EEXIST)
                                return -errno;
                        *s = '/';
                }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* Whether a systemd user manager runs for us (its private socket is there). */
static bool user_manager_runs(void) {
        const char *rt = getenv("XDG_RUNTIME_DIR");
        _cleanup_free_ char *p = NULL;
        struct stat st;
        if (!rt || rt[0] != '/' || asprintf(&p, "%s/systemd/private", rt) < 0)
                return false;
        return stat(p, &st) >= 0 && S_ISSOCK(st.st_mode);
}

/* systemctl --user ARGS...; returns its exit status, or < 0. */
static int systemctl_user(const char *const *args) {
        const char *argv[16] = { "systemctl", "--user" };
        size_t n = 2;
        int status;
        pid_t pid;

        for (; args[n - 2] && n < ELEMENTSOF(argv) - 1; n++)
                argv[n] = args[n - 2];
        argv[n] = NULL;
        fflush(NULL);
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                execvp("systemctl", (char **) argv);
                fprintf(stderr, CTL_PROGRAM ": cannot execute systemctl: %m\n");
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int write_new(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        size_t n = strlen(text);
        if (fd < 0)
                return -errno;
        if (write(fd, text, n) != (ssize_t) n)
                return errno ? -errno : -EIO;
        return 0;
}

/* The file holds exactly text (what init wrote, unchanged since). */
static bool holds(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        if (fd < 0 || ctl_read_all(fd, 1 << 20, &buf, &size) < 0)
                return false;
        return size == strlen(text) && memcmp(buf, text, size) == 0;
}

int ctl_init(bool no_systemd) {
        _cleanup_free_ char *dir = xdg("XDG_CONFIG_HOME", ".config");
        int r;

        if (!dir)
                return ctl_log_errno(-EINVAL, "cannot tell where the configuration goes: set $HOME");
        for (const char *sub = "apps.d"; sub; sub = streq(sub, "apps.d") ? "components" : NULL) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", dir, sub) < 0)
                        return ctl_log_oom();
                r = mkdir_p(p, 0755);
                if (r < 0)
                        return ctl_log_errno(r, "cannot create %s: %m", p);
        }
        for (size_t i = 0; i < ELEMENTSOF(init_files); i++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", dir, init_files[i].name) < 0)
                        return ctl_log_oom();
                r = write_new(p, init_files[i].text);
                if (r == -EEXIST)
                        printf("kept     %s (it exists)\n", p);
                else if (r < 0)
                        return ctl_log_errno(r, "cannot write %s: %m", p);
                else
                        printf("created  %s\n", p);
        }
        if (no_systemd || !user_manager_runs()) {
                printf("No systemd user manager runs here%s: start the daemon with 'mooringd --user', or let\n"
                       "'mooringctl run' start one for each run.\n",
                       no_systemd ? " (--no-systemd)" : "");
                return 0;
        }
        r = systemctl_user((const char *const[]) { "enable", "--now", "mooringd.socket", NULL });
        if (r != 0)
                return ctl_log_errno(r < 0 ? r : -EIO, "systemctl --user enable --now mooringd.socket failed");
        printf("enabled  mooringd.socket for this user: the first request starts mooringd\n");
        return 0;
}

int ctl_uninstall(bool all, bool no_systemd) {
        _cleanup_free_ char *dir = xdg("XDG_CONFIG_HOME", ".config");
        _cleanup_free_ char *state = xdg("XDG_STATE_HOME", ".local/state");
        int r;

        if (!dir || !state)
                return ctl_log_errno(-EINVAL, "cannot tell where the configuration is: set $HOME");
        if (!no_systemd && user_manager_runs()) {
                r = systemctl_user((const char *const[]) { "disable", "--now", "mooringd.socket", NULL });
                if (r == 0)
                        r = systemctl_user((const char *const[]) { "stop", "mooringd.service", NULL });
                if (r != 0)
                        ctl_log("systemctl --user could not disable or stop mooringd; continuing");
                else
                        printf("disabled mooringd.socket and stopped mooringd for this user\n");
        }
        for (size_t i = 0; i < ELEMENTSOF(init_files); i++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", dir, init_files[i].name) < 0)
                        return ctl_log_oom();
                if (holds(p, init_files[i].text)) {
                        if (unlink(p) < 0)
                                return ctl_log_errno(-errno, "cannot remove %s: %m", p);
                        printf("removed  %s\n", p);
                } else if (access(p, F_OK) == 0)
                        printf("kept     %s (changed since init)\n", p);
        }
        /* the directories go only when nothing of the user's is left in them */
        for (const char *sub = "components"; sub; sub = streq(sub, "components") ? "apps.d" : NULL) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", dir, sub) < 0)
                        return ctl_log_oom();
                if (rmdir(p) < 0 && errno != ENOENT)
                        printf("kept     %s (not empty)\n", p);
        }
        if (rmdir(dir) >= 0)
                printf("removed  %s\n", dir);
        if (all) {
                pid_t pid = fork();
                int status;
                if (pid == 0) {
                        execlp("rm", "rm", "-rf", "--", state, (char *) NULL);
                        _exit(127);
                }
                if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        return ctl_log_errno(-EIO, "cannot remove %s", state);
                printf("removed  %s (the embedded stores' data)\n", state);
        } else if (access(state, F_OK) == 0)
                printf("kept     %s (the stores' data; 'uninstall --all' removes it)\n", state);
        return 0;
}
