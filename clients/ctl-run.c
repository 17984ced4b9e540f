/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl run: the inner loop of a Dapr user, "dapr run --app-id orders
 * --app-port 3000 -- node app.js", on mooringd.
 *
 * Each app is registered over D-Bus with RegisterApp and Ephemeral=yes: the
 * daemon removes it when our connection goes, however we end (SIGKILL
 * included). Its ResourcesPath= components serve it alone. The app gets
 * Dapr's environment (APP_ID, APP_PORT, DAPR_HTTP_PORT, DAPR_GRPC_PORT where
 * the daemon has gRPC, ...), its output is prefixed as dapr run prefixes it,
 * the signals we get are passed on, and we exit with its status (128+N for a
 * signal). "mooringctl stop ID" (UnregisterApp) or the daemon going away
 * stops it.
 *
 * Which daemon: the one at --bus-address if given, else the per-user one on
 * the session bus. With none running, a private "mooringd --user" is
 * started for the run (and a private bus where there is no session bus),
 * and stopped after it; the user is told so.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "ctl-bus.h"
#include "ctl-run.h"

#define LINE_MAX_BUF 65536
#define STOP_TIMEOUT_USEC (10ULL * 1000000)
#define DAEMON_START_TIMEOUT_USEC (30ULL * 1000000)

typedef struct Run Run;

/* One output stream of an app (or of the private daemon), cut into prefixed lines. */
typedef struct Stream {
        Run *run;
        int fd;
        FILE *to;                  /* stdout or stderr */
        const char *prefix;        /* borrowed */
        bool daemon;               /* the private daemon's stderr: only warnings and worse are shown */
        char buf[LINE_MAX_BUF];
        size_t n;
        sd_event_source *source;
} Stream;

typedef struct Running {
        RunApp *app;
        char *prefix;
        pid_t pid;
        bool exited;
        int status;                /* as an exit status: code, or 128+signal */
        Stream out, err;
        sd_event_source *child;
        bool grpc;                 /* the daemon took GrpcPort= */
        uint16_t http_port, grpc_port;
        char *http_socket;
        char *api_token;
} Running;

struct Run {
        CtlOptions o;
        bool multi;
        bool color;
        sd_event *event;
        sd_bus *bus;
        Running *apps;
        size_t n_apps;
        size_t n_running;
        bool stopping;
        sd_event_source *kill_timer;
        /* the private daemon, when we started one */
        pid_t daemon_pid, dbus_pid;
        char *tmp;
        char *bus_address;
        Stream daemon_err;
        int exit_status;
};

void run_app_done(RunApp *a) {
        if (!a)
                return;
        free(a->app_id);
        for (char **p = a->cmd; p && *p; p++)
                free(*p);
        free(a->cmd);
        free(a->dir);
        for (char **p = a->env; p && *p; p++)
                free(*p);
        free(a->env);
        free(a->app_protocol);
        for (char **p = a->resources; p && *p; p++)
                free(*p);
        free(a->resources);
        free(a->config);
        free(a->health_path);
        free(a->max_concurrency);
        *a = (RunApp) {};
}

/* A free loopback TCP port (the kernel's choice; someone may take it before the daemon does,
 * then RegisterApp says so). 0 on failure. */
static uint16_t free_port(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return 0;
        return ntohs(sa.sin_port);
}

/* ---- output ---- */

static void stream_emit(Stream *s, const char *line, size_t n) {
        Run *run = s->run;

        if (s->daemon) {
                /* "<N>message": show warnings (4) and worse only, as the daemon's own lines */
                if (n >= 3 && line[0] == '<' && line[2] == '>') {
                        if (line[1] > '4')
                                return;
                        line += 3;
                        n -= 3;
                }
        }
        if (run->color)
                fprintf(s->to, "\033[%sm%s\033[0m", s->daemon ? "1;33" : "1;36", s->prefix);
        else
                fputs(s->prefix, s->to);
        fwrite(line, 1, n, s->to);
        fputc('\n', s->to);
        fflush(s->to);
}

static void stream_flush_lines(Stream *s, bool all) {
        size_t start = 0;

        for (size_t i = 0; i < s->n; i++)
                if (s->buf[i] == '\n') {
                        stream_emit(s, s->buf + start, i - start);
                        start = i + 1;
                }
        if ((all || start == 0) && start < s->n && (all || s->n == sizeof s->buf)) {
                stream_emit(s, s->buf + start, s->n - start);
                start = s->n;
        }
        memmove(s->buf, s->buf + start, s->n - start);
        s->n -= start;
}

static void stream_close(Stream *s) {
        stream_flush_lines(s, true);
        s->source = sd_event_source_disable_unref(s->source);
        s->fd = safe_close(s->fd);
}

static int on_stream(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        Stream *s = userdata;
        ssize_t k = read(fd, s->buf + s->n, sizeof s->buf - s->n);

        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (k <= 0) {
                stream_close(s);
                return 0;
        }
        s->n += (size_t) k;
        stream_flush_lines(s, false);
        return 0;
}

static int stream_open(Run *run, Stream *s, int fd, FILE *to, const char *prefix) {
        *s = (Stream) { .run = run, .fd = fd, .to = to, .prefix = prefix };
        (void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        return sd_event_add_io(run->event, &s->source, fd, EPOLLIN, on_stream, s);
}

/* ---- the private daemon ---- */

static const char *mooringd_path(void) {
        const char *e = getenv("MOORINGD");
        return e && e[0] ? e : MOORINGD_PATH;
}

/* Start a bus of our own: "dbus-daemon --session" printing its address on a pipe. */
static int start_private_bus(Run *run) {
        int p[2];
        char addr[512];
        ssize_t k;
        size_t n = 0;

        if (pipe2(p, O_CLOEXEC) < 0)
                return ctl_log_errno(-errno, "cannot create a pipe: %m");
        run->dbus_pid = fork();
        if (run->dbus_pid < 0)
                return ctl_log_errno(-errno, "cannot start dbus-daemon: %m");
        if (run->dbus_pid == 0) {
                char fd[32];
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                (void) setpgid(0, 0); /* a Ctrl-C is ours to handle: we stop it last */
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM); /* and it goes with us, even on SIGKILL */
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (null >= 0) {
                        (void) dup2(null, 0);
                        (void) dup2(null, 2);
                }
                snprintf(fd, sizeof fd, "--print-address=%d", 3);
                if (dup2(p[1], 3) < 0)
                        _exit(127);
                char *argv[] = { (char *) "dbus-daemon", (char *) "--session", (char *) "--nofork", (char *) "--nosyslog",
                                 fd, NULL };
                execvp(argv[0], argv);
                fprintf(stderr, CTL_PROGRAM ": cannot execute dbus-daemon: %m\n");
                _exit(127);
        }
        safe_close(p[1]);
        while (n < sizeof addr - 1 && (k = read(p[0], addr + n, sizeof addr - 1 - n)) > 0) {
                n += (size_t) k;
                if (memchr(addr, '\n', n))
                        break;
        }
        safe_close(p[0]);
        addr[n] = 0;
        addr[strcspn(addr, "\n")] = 0;
        if (!addr[0])
                return ctl_log_errno(-EIO, "dbus-daemon did not start (is the dbus-daemon package installed?)");
        run->bus_address = strdup(addr);
        if (!run->bus_address)
                return ctl_log_oom();
        /* the daemon and the apps use it as their session bus */
        if (setenv("DBUS_SESSION_BUS_ADDRESS", addr, 1) < 0)
                return ctl_log_errno(-errno, "cannot set $DBUS_SESSION_BUS_ADDRESS: %m");
        return 0;
}

static char *join(const char *a, const char *b) {
        char *s = NULL;
        return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

/* ~/.config/mooring (what "mooringctl init" writes) when it exists, else an empty one of ours. */
static char *user_config_dir(const char *tmp) {
        const char *x = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        char *d = NULL;
        struct stat st;

        if (x && x[0] == '/')
                d = join(x, "mooring");
        else if (home && home[0] == '/')
                d = join(home, ".config/mooring");
        if (d && stat(d, &st) >= 0 && S_ISDIR(st.st_mode))
                return d;
        free(d);
        d = join(tmp, "config");
        if (d && mkdir(d, 0700) < 0 && errno != EEXIST)
                d = (free(d), NULL);
        return d;
}

/* ~/.local/state/mooring: the embedded stores keep their data from one run to the next. */
static char *user_state_dir(const char *tmp) {
        const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
        if (x && x[0] == '/')
                return join(x, "mooring");
        if (home && home[0] == '/')
                return join(home, ".local/state/mooring");
        return join(tmp, "state");
}

static int start_private_daemon(Run *run) {
        _cleanup_free_ char *config = NULL, *state = NULL, *runtime = NULL;
        const char *rt = getenv("XDG_RUNTIME_DIR");
        char templ[PATH_MAX];
        int p[2];

        snprintf(templ, sizeof templ, "%s/mooring-run-XXXXXX", rt && rt[0] == '/' && access(rt, W_OK) == 0 ? rt : "/tmp");
        if (!mkdtemp(templ))
                return ctl_log_errno(-errno, "cannot create a directory for the private mooringd: %m");
        run->tmp = strdup(templ);
        config = user_config_dir(templ);
        state = user_state_dir(templ);
        runtime = join(templ, "run");
        if (!run->tmp || !config || !state || !runtime)
                return ctl_log_oom();

        if (pipe2(p, O_CLOEXEC) < 0)
                return ctl_log_errno(-errno, "cannot create a pipe: %m");
        run->daemon_pid = fork();
        if (run->daemon_pid < 0)
                return ctl_log_errno(-errno, "cannot start mooringd: %m");
        if (run->daemon_pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                (void) setpgid(0, 0);
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(p[1], 2) < 0)
                        _exit(127);
                const char *exe = mooringd_path();
                char *argv[] = { (char *) exe, (char *) "--user", (char *) "--bus=session", (char *) "--config-dir",
                                 config, (char *) "--state-dir", state, (char *) "--runtime-dir", runtime, NULL };
                unsetenv("NOTIFY_SOCKET");
                unsetenv("LISTEN_FDS");
                unsetenv("LISTEN_PID");
                execv(exe, argv);
                fprintf(stderr, "<3>cannot execute %s: %m\n", exe);
                _exit(127);
        }
        safe_close(p[1]);
        run->daemon_err.n = 0;
        int r = stream_open(run, &run->daemon_err, p[0], stderr, "== MOORINGD == ");
        if (r < 0)
                return ctl_log_errno(r, "cannot watch mooringd's output: %m");
        run->daemon_err.daemon = true;
        fprintf(stderr, CTL_PROGRAM ": no mooringd is running for this user: started a private one for this run "
                        "(%s --user, config %s, state %s); it stops with the app%s.\n",
                mooringd_path(), config, state, run->n_apps > 1 ? "s" : "");
        if (run->bus_address)
                fprintf(stderr, CTL_PROGRAM ": no session bus: started one for this run (%s)\n", run->bus_address);
        return 0;
}

/* Wait until the daemon owns its name on the bus (or died). */
static int wait_for_daemon(Run *run) {
        struct timespec ts;
        uint64_t end;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        end = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000 + DAEMON_START_TIMEOUT_USEC;
        for (;;) {
                int status;
                if (sd_bus_get_name_creds(run->bus, CTL_BUS_NAME, 0, NULL) >= 0)
                        return 0;
                if (waitpid(run->daemon_pid, &status, WNOHANG) == run->daemon_pid) {
                        run->daemon_pid = 0;
                        /* its last words: what it printed */
                        (void) sd_event_run(run->event, 0);
                        if (run->daemon_err.source)
                                stream_close(&run->daemon_err);
                        ctl_log("the private mooringd failed to start (exit status %d)",
                                WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
                        return -CTL_ERR_UNREACHABLE;
                }
                clock_gettime(CLOCK_MONOTONIC, &ts);
                if ((uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000 > end) {
                        ctl_log("the private mooringd did not come up on the bus in %llu s",
                                (unsigned long long) (DAEMON_START_TIMEOUT_USEC / 1000000));
                        return -ETIMEDOUT;
                }
                /* show what it says meanwhile */
                (void) sd_event_run(run->event, 50 * 1000);
        }
}

static void stop_process(pid_t *pid, const char *what) {
        int status;

        if (*pid <= 0)
                return;
        (void) kill(*pid, SIGTERM);
        for (int i = 0; i < 200; i++) {
                if (waitpid(*pid, &status, WNOHANG) == *pid) {
                        *pid = 0;
                        return;
                }
                usleep(50 * 1000);
        }
        ctl_log("%s did not stop on SIGTERM in 10 s; killing it", what);
        (void) kill(*pid, SIGKILL);
        (void) waitpid(*pid, &status, 0);
        *pid = 0;
}

static int rm_rf(const char *path) {
        /* only the directory we made: sockets, and the config dir of ours when there was none */
        pid_t pid = fork();
        int status;
        if (pid == 0) {
                execlp("rm", "rm", "-rf", "--", path, (char *) NULL);
                _exit(127);
        }
        if (pid < 0 || waitpid(pid, &status, 0) < 0)
                return -errno;
        return 0;
}

/* ---- connecting ---- */

static int bus_open_address(const char *address, sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, 1);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

/* The daemon to use: --bus-address's, or the session bus's; else a private one. */
static int run_connect(Run *run) {
        int r;

        if (run->o.bus_address) {
                r = ctl_bus_open(&run->o, &run->bus);
                if (r < 0)
                        return r;
                if (sd_bus_get_name_creds(run->bus, CTL_BUS_NAME, 0, NULL) < 0) {
                        ctl_log("mooringd is not running (nobody owns " CTL_BUS_NAME " on the bus at '%s')",
                                run->o.bus_address);
                        return -CTL_ERR_UNREACHABLE;
                }
                return 0;
        }
        r = sd_bus_open_user(&run->bus);
        if (r >= 0 && sd_bus_get_name_creds(run->bus, CTL_BUS_NAME, 0, NULL) >= 0)
                return 0;
        if (r < 0) {
                /* no session bus at all: ours */
                run->bus = sd_bus_flush_close_unref(run->bus);
                r = start_private_bus(run);
                if (r < 0)
                        return r;
        }
        r = start_private_daemon(run);
        if (r < 0)
                return r;
        if (!run->bus) {
                r = bus_open_address(run->bus_address, &run->bus);
                if (r < 0)
                        return ctl_log_errno(r, "cannot connect to the private bus: %m");
        }
        return wait_for_daemon(run);
}

/* ---- registering ---- */

static int append_kv(sd_bus_message *m, const char *key, const char *value) {
        return sd_bus_message_append(m, "{sv}", key, "s", value);
}

static int register_app(Run *run, Running *ra, bool with_grpc, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        RunApp *a = ra->app;
        char port[8], gport[8], addr[64];
        int r;

        r = sd_bus_message_new_method_call(run->bus, &call, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE,
                                           "RegisterApp");
        if (r >= 0)
                r = sd_bus_message_append(call, "s", a->app_id);
        if (r >= 0)
                r = sd_bus_message_open_container(call, 'a', "{sv}");
        snprintf(port, sizeof port, "%u", (unsigned) ra->http_port);
        if (r >= 0)
                r = append_kv(call, "Ephemeral", "yes");
        if (r >= 0)
                r = append_kv(call, "HttpPort", port);
        if (r >= 0 && with_grpc) {
                snprintf(gport, sizeof gport, "%u", (unsigned) ra->grpc_port);
                r = append_kv(call, "GrpcPort", gport);
        }
        if (r >= 0 && a->app_port) {
                snprintf(addr, sizeof addr, "http://127.0.0.1:%u", (unsigned) a->app_port);
                r = append_kv(call, "AppAddress", addr);
        }
        /* only what mooringd may not know is sent: it refuses it by name then */
        if (r >= 0 && a->app_protocol && !streq(a->app_protocol, "http"))
                r = append_kv(call, "AppProtocol", a->app_protocol);
        if (r >= 0 && a->health_path)
                r = append_kv(call, "HealthCheckPath", a->health_path);
        if (r >= 0 && a->max_concurrency)
                r = append_kv(call, "MaxConcurrency", a->max_concurrency);
        if (r >= 0 && a->config)
                r = append_kv(call, "Configuration", a->config);
        for (char **p = a->resources; r >= 0 && p && *p; p++)
                r = append_kv(call, "ResourcesPath", *p);
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (r < 0)
                return r;
        return sd_bus_call(run->bus, call, 0, error, NULL);
}

/* GetApp: the socket and the token the daemon gave the app. */
static int read_app(Run *run, Running *ra) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(run->bus, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "GetApp", &error, &reply,
                                   "s", ra->app->app_id);
        if (r < 0)
                return ctl_bus_call_failed(&run->o, r, &error, "looking up the app");
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key, *s;
                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0 && streq(key, "HttpSocket")) {
                        r = sd_bus_message_read(reply, "v", "s", &s);
                        if (r >= 0 && !(ra->http_socket = strdup(s)))
                                r = -ENOMEM;
                } else if (r >= 0 && streq(key, "ApiToken")) {
                        r = sd_bus_message_read(reply, "v", "s", &s);
                        if (r >= 0 && !(ra->api_token = strdup(s)))
                                r = -ENOMEM;
                } else if (r >= 0)
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r < 0)
                return ctl_log_errno(r, "unexpected reply from mooringd to GetApp: %m");
        return 0;
}

static int register_one(Run *run, Running *ra) {
        RunApp *a = ra->app;
        int r;

        ra->http_port = a->http_port ?: free_port();
        ra->grpc_port = a->grpc_port ?: free_port();
        if (!ra->http_port || !ra->grpc_port)
                return ctl_log_errno(-EADDRNOTAVAIL, "cannot find a free port on 127.0.0.1");
        for (int attempt = 0;; attempt++) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                /* DAPR_GRPC_PORT where the daemon has gRPC: a daemon without it refuses GrpcPort= by name */
                bool grpc = attempt == 0;
                r = register_app(run, ra, grpc, &error);
                if (r >= 0) {
                        ra->grpc = grpc;
                        break;
                }
                if (grpc && !a->grpc_port && sd_bus_error_is_set(&error) && error.message &&
                    strstr(error.message, "'GrpcPort'"))
                        continue;
                if (sd_bus_error_is_set(&error)) {
                        ctl_log("registering app '%s' failed: %s", a->app_id, error.message ?: error.name);
                        if (grpc && a->grpc_port && strstr(strempty(error.message), "'GrpcPort'"))
                                ctl_log("(--dapr-grpc-port: this mooringd has no gRPC API)");
                        return -EINVAL;
                }
                return ctl_bus_call_failed(&run->o, r, &error, "registering the app");
        }
        return read_app(run, ra);
}

/* ---- the apps ---- */

static int set_app_env(Run *run, Running *ra) {
        RunApp *a = ra->app;
        char v[64];
        int r = 0;

        r |= setenv("APP_ID", a->app_id, 1);
        snprintf(v, sizeof v, "%u", (unsigned) ra->http_port);
        r |= setenv("DAPR_HTTP_PORT", v, 1);
        snprintf(v, sizeof v, "http://127.0.0.1:%u", (unsigned) ra->http_port);
        r |= setenv("DAPR_HTTP_ENDPOINT", v, 1);
        if (ra->grpc) {
                snprintf(v, sizeof v, "%u", (unsigned) ra->grpc_port);
                r |= setenv("DAPR_GRPC_PORT", v, 1);
                snprintf(v, sizeof v, "127.0.0.1:%u", (unsigned) ra->grpc_port);
                r |= setenv("DAPR_GRPC_ENDPOINT", v, 1);
        } else {
                r |= unsetenv("DAPR_GRPC_PORT");
                r |= unsetenv("DAPR_GRPC_ENDPOINT");
        }
        if (a->app_port) {
                snprintf(v, sizeof v, "%u", (unsigned) a->app_port);
                r |= setenv("APP_PORT", v, 1);
                r |= setenv("APP_CHANNEL_ADDRESS", "127.0.0.1", 1);
        } else
                r |= unsetenv("APP_PORT");
        r |= setenv("APP_PROTOCOL", a->app_protocol ?: "http", 1);
        if (ra->http_socket && ra->http_socket[0])
                r |= setenv("MOORING_HTTP_SOCKET", ra->http_socket, 1);
        if (ra->api_token && ra->api_token[0])
                r |= setenv("DAPR_API_TOKEN", ra->api_token, 1);
        else
                r |= unsetenv("DAPR_API_TOKEN");
        for (char **e = a->env; e && *e; e++)
                r |= putenv(*e);
        return r ? -errno : 0;
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata);

static int spawn_app(Run *run, Running *ra) {
        int out[2], err[2];
        int r;

        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
                return ctl_log_errno(-errno, "cannot create a pipe: %m");
        fflush(NULL);
        ra->pid = fork();
        if (ra->pid < 0)
                return ctl_log_errno(-errno, "cannot start '%s': %m", ra->app->cmd[0]);
        if (ra->pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                /* the app runs as long as run does: also when run is killed */
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (run->multi) {
                        /* several apps: each in its own process group, told to stop by us */
                        (void) setpgid(0, 0);
                        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
                        if (null >= 0)
                                (void) dup2(null, 0);
                }
                if (dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
                        _exit(127);
                if (set_app_env(run, ra) < 0) {
                        fprintf(stderr, "cannot set the app's environment: %m\n");
                        _exit(127);
                }
                if (ra->app->dir && chdir(ra->app->dir) < 0) {
                        fprintf(stderr, "cannot change to %s: %m\n", ra->app->dir);
                        _exit(127);
                }
                execvp(ra->app->cmd[0], ra->app->cmd);
                fprintf(stderr, "cannot execute '%s': %m\n", ra->app->cmd[0]);
                _exit(127);
        }
        safe_close(out[1]);
        safe_close(err[1]);
        if (run->multi)
                (void) setpgid(ra->pid, ra->pid); /* also here: no race with the first signal */
        r = stream_open(run, &ra->out, out[0], stdout, ra->prefix);
        if (r >= 0)
                r = stream_open(run, &ra->err, err[0], stderr, ra->prefix);
        if (r >= 0)
                r = sd_event_add_child(run->event, &ra->child, ra->pid, WEXITED, on_child, ra);
        if (r < 0)
                return ctl_log_errno(r, "cannot watch the app: %m");
        run->n_running++;
        return 0;
}

static void signal_app(Run *run, Running *ra, int sig) {
        if (ra->exited || ra->pid <= 0)
                return;
        (void) kill(run->multi ? -ra->pid : ra->pid, sig);
}

static int on_kill_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Run *run = userdata;
        for (size_t i = 0; i < run->n_apps; i++)
                if (!run->apps[i].exited && run->apps[i].pid > 0) {
                        ctl_log("app '%s' did not stop in %llu s; killing it", run->apps[i].app->app_id,
                                (unsigned long long) (STOP_TIMEOUT_USEC / 1000000));
                        signal_app(run, &run->apps[i], SIGKILL);
                }
        return 0;
}

/* Stop every app (SIGTERM, SIGKILL after 10 s). */
static void stop_all(Run *run, int sig) {
        for (size_t i = 0; i < run->n_apps; i++)
                signal_app(run, &run->apps[i], sig);
        if (!run->stopping) {
                run->stopping = true;
                (void) sd_event_add_time_relative(run->event, &run->kill_timer, CLOCK_MONOTONIC, STOP_TIMEOUT_USEC, 0,
                                                  on_kill_timer, run);
        }
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Running *ra = userdata;

        ra->exited = true;
        ra->status = si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status;
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Run *run = userdata;
        int sig = (int) si->ssi_signo;

        /* one app in our process group already got what the terminal sent (no sender pid) */
        bool from_tty = si->ssi_pid == 0 && si->ssi_code == SI_KERNEL;
        if (sig == SIGINT || sig == SIGTERM || sig == SIGQUIT) {
                if (run->stopping && sig == SIGINT) {
                        stop_all(run, SIGKILL);
                        return 0;
                }
                if (!run->multi && from_tty) {
                        stop_all(run, 0);
                        return 0;
                }
                stop_all(run, run->multi && sig == SIGINT ? SIGTERM : sig);
                return 0;
        }
        for (size_t i = 0; i < run->n_apps; i++)
                if (run->multi || !from_tty)
                        signal_app(run, &run->apps[i], sig);
        return 0;
}

/* The daemon's Apps changed: an app of ours that is gone was stopped (mooringctl stop). */
static int on_apps_changed(sd_bus_message *m, void *userdata, sd_bus_error *reterr) {
        Run *run = userdata;

        for (size_t i = 0; i < run->n_apps; i++) {
                Running *ra = &run->apps[i];
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;

                if (ra->exited)
                        continue;
                if (sd_bus_call_method(run->bus, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "GetApp", &error,
                                       &reply, "s", ra->app->app_id) < 0 &&
                    sd_bus_error_has_name(&error, CTL_BUS_ERROR_NO_SUCH_APP)) {
                        fprintf(stderr, CTL_PROGRAM ": app '%s' was removed from mooringd (mooringctl stop); "
                                        "stopping it\n", ra->app->app_id);
                        signal_app(run, ra, SIGTERM);
                }
        }
        return 0;
}

static int on_daemon_gone(sd_bus_message *m, void *userdata, sd_bus_error *reterr) {
        Run *run = userdata;
        const char *name, *old, *new;

        if (sd_bus_message_read(m, "sss", &name, &old, &new) < 0 || !streq(name, CTL_BUS_NAME) || new[0])
                return 0;
        if (!run->stopping) {
                ctl_log("mooringd left the bus; stopping the app%s", run->n_apps > 1 ? "s" : "");
                stop_all(run, SIGTERM);
        }
        return 0;
}

static int on_bus_lost(sd_bus_message *m, void *userdata, sd_bus_error *reterr) {
        Run *run = userdata;
        if (!run->stopping) {
                ctl_log("lost the connection to the bus; stopping the app%s", run->n_apps > 1 ? "s" : "");
                stop_all(run, SIGTERM);
        }
        return 0;
}

static bool all_done(Run *run) {
        for (size_t i = 0; i < run->n_apps; i++) {
                Running *ra = &run->apps[i];
                if (ra->pid > 0 && (!ra->exited || ra->out.source || ra->err.source))
                        return false;
        }
        return true;
}

static int loop(Run *run) {
        while (!all_done(run)) {
                int r = sd_event_run(run->event, UINT64_MAX);
                if (r < 0)
                        return ctl_log_errno(r, "event loop failed: %m");
        }
        return 0;
}

static bool stdout_is_color_tty(void) {
        const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
        return isatty(STDOUT_FILENO) && !(nc && nc[0]) && !(term && streq(term, "dumb"));
}

int ctl_run_apps(const CtlOptions *o, RunApp *apps, size_t n, bool multi) {
        Run run = { .o = *o, .multi = multi, .exit_status = 0, .daemon_err.fd = -1 };
        sigset_t ss;
        int r;

        run.color = stdout_is_color_tty();
        run.apps = calloc(n, sizeof(Running));
        if (!run.apps)
                return ctl_log_oom();
        run.n_apps = n;
        for (size_t i = 0; i < n; i++) {
                run.apps[i] = (Running) { .app = &apps[i], .out.fd = -1, .err.fd = -1 };
                if (multi ? asprintf(&run.apps[i].prefix, "== APP - %s == ", apps[i].app_id) < 0
                          : !(run.apps[i].prefix = strdup("== APP == "))) {
                        run.apps[i].prefix = NULL;
                        r = ctl_log_oom();
                        goto finish;
                }
        }

        sigemptyset(&ss);
        for (const int *s = (const int[]) { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD, 0 }; *s; s++)
                sigaddset(&ss, *s);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_new(&run.event);
        if (r < 0) {
                r = ctl_log_errno(r, "cannot create an event loop: %m");
                goto finish;
        }
        for (const int *s = (const int[]) { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, 0 }; *s; s++)
                if ((r = sd_event_add_signal(run.event, NULL, *s, on_signal, &run)) < 0) {
                        r = ctl_log_errno(r, "cannot handle signals: %m");
                        goto finish;
                }

        r = run_connect(&run);
        if (r < 0)
                goto finish;

        for (size_t i = 0; i < n; i++) {
                r = register_one(&run, &run.apps[i]);
                if (r < 0)
                        goto finish;
                fprintf(stderr, CTL_PROGRAM ": app '%s' registered: DAPR_HTTP_PORT=%u%s%.0u, socket %s\n",
                        apps[i].app_id, (unsigned) run.apps[i].http_port, run.apps[i].grpc ? ", DAPR_GRPC_PORT=" : "",
                        run.apps[i].grpc ? (unsigned) run.apps[i].grpc_port : 0U, strna(run.apps[i].http_socket));
        }

        r = sd_bus_match_signal(run.bus, NULL, CTL_BUS_NAME, CTL_BUS_PATH, "org.freedesktop.DBus.Properties",
                                "PropertiesChanged", on_apps_changed, &run);
        if (r >= 0)
                r = sd_bus_match_signal(run.bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                        "org.freedesktop.DBus", "NameOwnerChanged", on_daemon_gone, &run);
        if (r >= 0)
                r = sd_bus_match_signal(run.bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                        "org.freedesktop.DBus.Local", "Disconnected", on_bus_lost, &run);
        if (r >= 0)
                r = sd_bus_attach_event(run.bus, run.event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                r = ctl_log_errno(r, "cannot watch mooringd: %m");
                goto finish;
        }

        for (size_t i = 0; i < n; i++) {
                if (!apps[i].cmd) {
                        fprintf(stderr, CTL_PROGRAM ": app '%s' has no command: registered only, until Ctrl-C\n",
                                apps[i].app_id);
                        continue;
                }
                r = spawn_app(&run, &run.apps[i]);
                if (r < 0) {
                        stop_all(&run, SIGTERM);
                        break;
                }
        }
        /* nothing to run at all: hold the registrations until a signal */
        if (run.n_running == 0 && r >= 0) {
                while (!run.stopping && (r = sd_event_run(run.event, UINT64_MAX)) >= 0)
                        ;
        } else {
                int k = loop(&run);
                if (r >= 0)
                        r = k;
        }
        for (size_t i = 0; i < n; i++) {
                Running *ra = &run.apps[i];
                if (ra->pid <= 0)
                        continue;
                if (ra->status != 0)
                        fprintf(stderr, CTL_PROGRAM ": app '%s' exited with status %d\n", apps[i].app_id, ra->status);
                /* several apps that we stopped (Ctrl-C) ended as asked; one app's own status is ours */
                if (multi && run.stopping && (ra->status == 128 + SIGTERM || ra->status == 128 + SIGINT))
                        continue;
                if (run.exit_status == 0)
                        run.exit_status = ra->status;
        }

finish:
        /* our connection goes: the daemon removes the apps (Ephemeral=yes) */
        run.bus = sd_bus_flush_close_unref(run.bus);
        if (run.daemon_pid > 0) {
                stop_process(&run.daemon_pid, "the private mooringd");
                if (run.daemon_err.source) {
                        /* what it said while stopping */
                        while (run.daemon_err.source && sd_event_run(run.event, 100 * 1000) > 0)
                                ;
                        if (run.daemon_err.source)
                                stream_close(&run.daemon_err);
                }
        }
        stop_process(&run.dbus_pid, "the private dbus-daemon");
        if (run.tmp)
                (void) rm_rf(run.tmp);
        for (size_t i = 0; i < run.n_apps; i++) {
                Running *ra = &run.apps[i];
                ra->out.source = sd_event_source_disable_unref(ra->out.source);
                ra->err.source = sd_event_source_disable_unref(ra->err.source);
                safe_close(ra->out.fd);
                safe_close(ra->err.fd);
                ra->child = sd_event_source_disable_unref(ra->child);
                free(ra->prefix);
                free(ra->http_socket);
                free(ra->api_token);
        }
        run.daemon_err.source = sd_event_source_disable_unref(run.daemon_err.source);
        safe_close(run.daemon_err.fd);
        run.kill_timer = sd_event_source_disable_unref(run.kill_timer);
        sd_event_unref(run.event);
        free(run.apps);
        free(run.tmp);
        free(run.bus_address);
        if (r < 0)
                return r == -CTL_ERR_UNREACHABLE ? CTL_EXIT_NOT_RUNNING : CTL_EXIT_FAILURE;
        return run.exit_status;
}

/* ---- the command line ---- */

static int usage(const char *fmt, ...) _printf_(1, 2);

static int usage(const char *fmt, ...) {
        va_list ap;
        fputs(CTL_PROGRAM ": ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry '" CTL_PROGRAM " help run' for more information.\n", stderr);
        return CTL_EXIT_USAGE;
}

static bool parse_port(const char *s, uint16_t *ret) {
        char *end;
        unsigned long v;

        if (!s[0] || strspn(s, "0123456789") != strlen(s))
                return false;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || v < 1 || v > 65535)
                return false;
        *ret = (uint16_t) v;
        return true;
}

/* An absolute, resolved path of an existing file (dir: a directory); NULL when it is not one. */
static char *resolve(const char *path, bool dir) {
        struct stat st;
        char *r = realpath(path, NULL);

        if (!r)
                return NULL;
        if (stat(r, &st) < 0 || (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))) {
                free(r);
                errno = dir ? ENOTDIR : EISDIR;
                return NULL;
        }
        return r;
}

/* Without --app-id, as dapr run: a name of our own, from the command. */
static char *make_app_id(const char *cmd) {
        const char *base = strrchr(cmd, '/') ? strrchr(cmd, '/') + 1 : cmd;
        char id[64];
        size_t n = 0;
        unsigned rnd;

        for (const char *p = base; *p && n < 40; p++) {
                char c = *p >= 'A' && *p <= 'Z' ? (char) (*p - 'A' + 'a') : *p;
                id[n++] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : '-';
        }
        while (n > 0 && id[0] == '-')
                memmove(id, id + 1, --n);
        if (n == 0)
                id[n++] = 'a';
        if (getentropy(&rnd, sizeof rnd) < 0)
                rnd = (unsigned) getpid();
        snprintf(id + n, sizeof id - n, "-%04x", rnd & 0xffff);
        return strdup(id);
}

static int strv_push(char ***l, char *s) {
        size_t n = 0;
        char **x;

        if (!s)
                return -ENOMEM;
        while (*l && (*l)[n])
                n++;
        x = realloc(*l, (n + 2) * sizeof(char *));
        if (!x) {
                free(s);
                return -ENOMEM;
        }
        x[n] = s;
        x[n + 1] = NULL;
        *l = x;
        return 0;
}

int ctl_run_main(const CtlOptions *o, int argc, char *argv[]) {
        enum { ARG_HEALTH = 0x100, ARG_MAX_CONC };
        static const struct option options[] = {
                { "app-id", required_argument, NULL, 'a' },
                { "app-port", required_argument, NULL, 'p' },
                { "app-protocol", required_argument, NULL, 'P' },
                { "dapr-http-port", required_argument, NULL, 'H' },
                { "dapr-grpc-port", required_argument, NULL, 'G' },
                { "resources-path", required_argument, NULL, 'd' },
                { "components-path", required_argument, NULL, 'd' }, /* Dapr's older name */
                { "config", required_argument, NULL, 'c' },
                { "app-health-check-path", required_argument, NULL, ARG_HEALTH },
                { "app-max-concurrency", required_argument, NULL, ARG_MAX_CONC },
                { "run-file", required_argument, NULL, 'f' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        RunApp a = {};
        const char *run_file = NULL;
        bool other = false;
        int c, rc;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+:a:p:P:H:G:d:c:f:h", options, NULL)) >= 0) {
                char *x = NULL;
                if (c != 'f' && c != 'h')
                        other = true;
                switch (c) {
                case 'a':
                        if (!ctl_app_id_is_valid(optarg)) {
                                rc = usage("invalid app id '%s': lower-case letters, digits, '-', '_' and '.'", optarg);
                                goto out;
                        }
                        free(a.app_id);
                        a.app_id = strdup(optarg);
                        break;
                case 'p':
                        if (!parse_port(optarg, &a.app_port)) {
                                rc = usage("invalid --app-port '%s': expected a port 1-65535", optarg);
                                goto out;
                        }
                        break;
                case 'P':
                        if (!streq(optarg, "http") && !streq(optarg, "grpc") && !streq(optarg, "https") &&
                            !streq(optarg, "grpcs") && !streq(optarg, "h2c")) {
                                rc = usage("invalid --app-protocol '%s': expected http, grpc, https, grpcs or h2c",
                                           optarg);
                                goto out;
                        }
                        free(a.app_protocol);
                        a.app_protocol = strdup(optarg);
                        break;
                case 'H':
                        if (!parse_port(optarg, &a.http_port)) {
                                rc = usage("invalid --dapr-http-port '%s': expected a port 1-65535", optarg);
                                goto out;
                        }
                        break;
                case 'G':
                        if (!parse_port(optarg, &a.grpc_port)) {
                                rc = usage("invalid --dapr-grpc-port '%s': expected a port 1-65535", optarg);
                                goto out;
                        }
                        break;
                case 'd':
                        x = resolve(optarg, true);
                        if (!x) {
                                ctl_log_errno(-errno, "--resources-path '%s': %m", optarg);
                                rc = CTL_EXIT_USAGE;
                                goto out;
                        }
                        if (strv_push(&a.resources, x) < 0) {
                                rc = (ctl_log_oom(), CTL_EXIT_FAILURE);
                                goto out;
                        }
                        break;
                case 'c':
                        x = resolve(optarg, false);
                        if (!x) {
                                ctl_log_errno(-errno, "--config '%s': %m", optarg);
                                rc = CTL_EXIT_USAGE;
                                goto out;
                        }
                        free(a.config);
                        a.config = x;
                        break;
                case ARG_HEALTH:
                        if (optarg[0] != '/') {
                                rc = usage("invalid --app-health-check-path '%s': expected a path such as /healthz",
                                           optarg);
                                goto out;
                        }
                        free(a.health_path);
                        a.health_path = strdup(optarg);
                        break;
                case ARG_MAX_CONC:
                        if (!optarg[0] || strspn(optarg, "0123456789") != strlen(optarg)) {
                                rc = usage("invalid --app-max-concurrency '%s': expected a number", optarg);
                                goto out;
                        }
                        free(a.max_concurrency);
                        a.max_concurrency = strdup(optarg);
                        break;
                case 'f':
                        run_file = optarg;
                        break;
                case 'h':
                        printf("%s [OPTIONS...] run [--app-id ID] [--app-port P] [--app-protocol http|grpc] "
                               "[--dapr-http-port N]\n"
                               "        [--dapr-grpc-port N] [--resources-path DIR]... [--config FILE]\n"
                               "        [--app-health-check-path P] [--app-max-concurrency N] -- CMD [ARGS...]\n"
                               "%s [OPTIONS...] run -f dapr.yaml|DIR\n\n"
                               "Run CMD as app ID with mooringd, as 'dapr run' does: the app is registered for as\n"
                               "long as it runs, gets APP_ID, APP_PORT, DAPR_HTTP_PORT (DAPR_GRPC_PORT where\n"
                               "mooringd has gRPC), its output is prefixed, signals are passed on, and the exit\n"
                               "status is the app's. Free ports are picked when none are given. With -f, the apps\n"
                               "of a Dapr Multi-App Run template. With no mooringd running for this user, a\n"
                               "private one is started for the run.\n",
                               CTL_PROGRAM, CTL_PROGRAM);
                        rc = CTL_EXIT_SUCCESS;
                        goto out;
                case ':':
                        rc = usage("option '%s' needs an argument", argv[optind - 1]);
                        goto out;
                default:
                        rc = usage("unknown option '%s' for run", argv[optind - 1]);
                        goto out;
                }
        }

        if (run_file) {
                _cleanup_free_ RunApp *apps = NULL;
                size_t n = 0;

                if (other || optind < argc) {
                        rc = usage("%s", "run -f takes no other options and no command: the template says it all");
                        goto out;
                }
                if (ctl_runfile_load(run_file, &apps, &n) < 0) {
                        rc = CTL_EXIT_FAILURE;
                        goto out;
                }
                rc = ctl_run_apps(o, apps, n, true);
                for (size_t i = 0; i < n; i++)
                        run_app_done(&apps[i]);
                goto out;
        }

        if (optind < argc) {
                if (!streq(argv[optind - 1], "--") && argv[optind][0] == '-') {
                        rc = usage("unexpected argument '%s'", argv[optind]);
                        goto out;
                }
                a.cmd = calloc((size_t) (argc - optind) + 1, sizeof(char *));
                if (!a.cmd) {
                        rc = (ctl_log_oom(), CTL_EXIT_FAILURE);
                        goto out;
                }
                for (int i = optind; i < argc; i++)
                        if (!(a.cmd[i - optind] = strdup(argv[i]))) {
                                rc = (ctl_log_oom(), CTL_EXIT_FAILURE);
                                goto out;
                        }
        }
        if (!a.app_id) {
                if (!a.cmd) {
                        rc = usage("%s", "run needs --app-id, a command after '--', or -f dapr.yaml");
                        goto out;
                }
                a.app_id = make_app_id(a.cmd[0]);
        }
        rc = ctl_run_apps(o, &a, 1, false);
out:
        run_app_done(&a);
        return rc;
}
