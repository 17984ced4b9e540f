/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringd: parses the command line, picks directories, blocks the signals the
 * loop will handle, builds the Manager and runs the loop. Nothing here that a
 * test would want to reach.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "manager.h"
#include "util/log.h"
#include "util/wipe-alloc.h"

static void help(void) {
        printf("Usage: mooringd [OPTIONS]\n\n"
               "The mooring application runtime daemon: Dapr's HTTP API for every app on this host.\n\n"
               "  --config-dir DIR     configuration directory (default /etc/mooring)\n"
               "  --state-dir DIR      state directory (default /var/lib/mooring)\n"
               "  --runtime-dir DIR    sockets directory (default /run/mooring)\n"
               "  --user               per-user mode: XDG directories and the session bus\n"
               "  --bus=BUS            system, session or none (default system; session with --user)\n"
               "  --log-level LEVEL    debug, info, notice, warning or err (default info)\n"
               "  --log-target=TARGET  auto, console or journal (default auto: the journal, or the\n"
               "                       terminal with timestamps when stderr is one)\n"
               "  --log-format=FORMAT  text or json (JSON lines on stderr, as daprd writes them)\n"
               "  --version            print the version and exit\n"
               "  -h, --help           print this help and exit\n\n"
               "Signals: SIGHUP reloads apps and components; SIGTERM drains requests and stops.\n"
               "See mooringd(8) and mooringd.conf(5).\n");
}

/* $VAR/mooring, or $HOME/<fallback>/mooring. */
static char *xdg_dir(const char *var, const char *fallback) {
        const char *v = getenv(var), *home = getenv("HOME");
        char *s = NULL;
        if (v && v[0] == '/')
                return asprintf(&s, "%s/mooring", v) < 0 ? NULL : s;
        if (!fallback || !home || home[0] != '/')
                return NULL;
        return asprintf(&s, "%s/%s/mooring", home, fallback) < 0 ? NULL : s;
}

static int set_dir(char **dst, const char *v) {
        char *c = strdup(v);
        if (!c)
                return log_oom();
        free(*dst);
        *dst = c;
        return 0;
}

static int parse_argv(int argc, char *argv[], Manager *m) {
        enum { ARG_CONFIG_DIR = 0x100, ARG_STATE_DIR, ARG_RUNTIME_DIR, ARG_USER, ARG_BUS, ARG_LOG_LEVEL,
               ARG_LOG_TARGET, ARG_LOG_FORMAT, ARG_VERSION };
        static const struct option options[] = {
                { "config-dir", required_argument, NULL, ARG_CONFIG_DIR },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "runtime-dir", required_argument, NULL, ARG_RUNTIME_DIR },
                { "user", no_argument, NULL, ARG_USER },
                { "bus", required_argument, NULL, ARG_BUS },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "log-target", required_argument, NULL, ARG_LOG_TARGET },
                { "log-format", required_argument, NULL, ARG_LOG_FORMAT },
                { "version", no_argument, NULL, ARG_VERSION },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        char *config = NULL, *state = NULL, *runtime = NULL;
        bool user = false;
        int bus = -1, c, r = 0;
        LogTarget target = LOG_TARGET_AUTO;
        LogFormat format = LOG_FORMAT_TEXT;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_CONFIG_DIR:
                        r = set_dir(&config, optarg);
                        break;
                case ARG_STATE_DIR:
                        r = set_dir(&state, optarg);
                        break;
                case ARG_RUNTIME_DIR:
                        r = set_dir(&runtime, optarg);
                        break;
                case ARG_USER:
                        user = true;
                        break;
                case ARG_BUS:
                        bus = manager_bus_mode_from_string(optarg);
                        if (bus < 0) {
                                fprintf(stderr, "mooringd: --bus must be system, session or none, not '%s'\n", optarg);
                                r = -EINVAL;
                        }
                        break;
                case ARG_LOG_LEVEL:
                        m->cli_log_level = log_level_from_string(optarg);
                        if (m->cli_log_level < 0) {
                                fprintf(stderr, "mooringd: unknown log level '%s'\n", optarg);
                                r = -EINVAL;
                        } else
                                log_set_max_level(m->cli_log_level);
                        break;
                case ARG_LOG_TARGET:
                        target = log_target_from_string(optarg);
                        if (target < 0) {
                                fprintf(stderr, "mooringd: --log-target must be auto, console or journal, not '%s'\n",
                                        optarg);
                                r = -EINVAL;
                        }
                        break;
                case ARG_LOG_FORMAT:
                        format = log_format_from_string(optarg);
                        if (format < 0) {
                                fprintf(stderr, "mooringd: --log-format must be text or json, not '%s'\n", optarg);
                                r = -EINVAL;
                        }
                        break;
                case ARG_VERSION:
                        printf("mooringd %s\n", PACKAGE_VERSION);
                        r = 0;
                        goto out_exit;
                case 'h':
                        help();
                        goto out_exit;
                default:
                        fprintf(stderr, "Try 'mooringd --help'.\n");
                        r = -EINVAL;
                }
                if (r < 0)
                        goto out;
        }
        if (optind < argc) {
                fprintf(stderr, "mooringd: unexpected argument '%s'. Try 'mooringd --help'.\n", argv[optind]);
                r = -EINVAL;
                goto out;
        }

        /* A directory named on the command line must exist: a typo would otherwise start a daemon that
         * silently serves nothing of what the user meant. (The default directories may be absent: then
         * only the built-in defaults are served.) */
        if (config) {
                struct stat st;
                const char *why = stat(config, &st) < 0 ? strerror(errno)
                                  : !S_ISDIR(st.st_mode)   ? "not a directory"
                                                           : NULL;
                if (why) {
                        fprintf(stderr, "mooringd: configuration directory '%s': %s\n", config, why);
                        r = -EINVAL;
                        goto out;
                }
        }
        if (!config)
                config = user ? xdg_dir("XDG_CONFIG_HOME", ".config") : strdup(MOORING_CONFIG_DIR);
        if (!state)
                state = user ? xdg_dir("XDG_STATE_HOME", ".local/state") : strdup(MOORING_STATE_DIR);
        if (!runtime)
                runtime = user ? xdg_dir("XDG_RUNTIME_DIR", NULL) : strdup(MOORING_RUNTIME_DIR);
        if (!config || !state || !runtime) {
                fprintf(stderr, "mooringd: cannot determine directories (set $HOME and $XDG_RUNTIME_DIR, "
                                "or pass --config-dir, --state-dir and --runtime-dir)\n");
                r = -EINVAL;
                goto out;
        }
        log_setup(target, format);
        m->config_dir = TAKE_PTR(config);
        m->state_dir = TAKE_PTR(state);
        m->runtime_dir = TAKE_PTR(runtime);
        m->bus_mode = bus >= 0 ? (BusMode) bus : user ? BUS_MODE_SESSION : BUS_MODE_SYSTEM;
        return 1;

out_exit:
        r = 0;
out:
        free(config);
        free(state);
        free(runtime);
        return r;
}

int main(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        sigset_t ss;
        int r;

        log_setup(LOG_TARGET_AUTO, LOG_FORMAT_TEXT); /* until the command line says otherwise */
        json_wipe_alloc_install(); /* before any JSON exists: secrets pass through jansson */
        umask(0022);
        m = manager_new();
        if (!m)
                return log_oom(), EXIT_FAILURE;
        r = parse_argv(argc, argv, m);
        if (r <= 0)
                return r < 0 ? 2 : EXIT_SUCCESS;

        /* One connection, one fd: take the hard limit (systemd's soft default is 1024, far
         * below what a host's apps may hold open). select() is never used here. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) >= 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }

        /* The loop takes these through signalfd. */
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = manager_start(m);
        if (r < 0) {
                log_error_errno(r, "Failed to start: %m");
                return EXIT_FAILURE;
        }
        r = sd_event_loop(m->event);
        if (r < 0) {
                log_error_errno(r, "Event loop failed: %m");
                return EXIT_FAILURE;
        }
        log_info("Stopped.");
        return EXIT_SUCCESS;
}
