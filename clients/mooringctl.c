/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: command line client of mooringd.
 *
 * Parses the command line, picks the transport (D-Bus unless --socket or
 * $MOORING_SOCKET asks for HTTP on the shared API socket), runs one command
 * and maps the result to the exit status: 0 success, 1 failure, 2 usage
 * error, 3 mooringd (or its bus) not reachable.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "ctl.h"

enum {
        ARG_VERSION = 0x100,
        ARG_USER,
        ARG_BUS_ADDRESS,
        ARG_SOCKET,
        ARG_JSON,
        ARG_NO_PAGER,
};

typedef struct Args {
        CtlOptions options;
        bool show_help;
        bool show_version;
        const char *socket_option; /* --socket as given; options.socket_path may come from the environment */
} Args;

static const struct option long_options[] = {
        { "help",        no_argument,       NULL, 'h'             },
        { "version",     no_argument,       NULL, ARG_VERSION     },
        { "user",        no_argument,       NULL, ARG_USER        },
        { "bus-address", required_argument, NULL, ARG_BUS_ADDRESS },
        { "socket",      required_argument, NULL, ARG_SOCKET      },
        { "json",        no_argument,       NULL, ARG_JSON        },
        { "no-pager",    no_argument,       NULL, ARG_NO_PAGER    },
        {}
};

/* Keep in sync with docs/mooringctl.1. */
static void help(void) {
        printf("%s [OPTIONS...] COMMAND\n"
               "\n"
               "Query mooringd, the Dapr-compatible application runtime, and start its apps.\n"
               "\n"
               "Commands:\n"
               "  status                  Show the daemon's version, state and counts\n"
               "  apps                    List the registered apps\n"
               "  components              List the loaded components\n"
               "  app-exec APP_ID [-- CMD [ARGS...]]\n"
               "                          Run app APP_ID with its Dapr environment set\n"
               "                          (the ExecStart= of mooring-app@.service)\n"
               "\n"
               "Options:\n"
               "  -h --help               Show this help and exit\n"
               "     --version            Show the version and exit\n"
               "     --user               Talk to the per-user daemon on the session bus\n"
               "     --bus-address=ADDR   Talk to mooringd on the D-Bus bus at ADDR\n"
               "     --socket=PATH        Use HTTP on mooringd's shared API socket PATH\n"
               "                          instead of D-Bus (default: $MOORING_SOCKET)\n"
               "     --json               Print JSON instead of tables\n"
               "     --no-pager           Do not pipe tables into a pager\n"
               "\n"
               "Exit status: 0 success, 1 failure, 2 usage error, 3 mooringd not running.\n",
               CTL_PROGRAM);
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);

static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs(CTL_PROGRAM ": ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry '" CTL_PROGRAM " --help' for more information.\n", stderr);
        return -EINVAL;
}

/*
 * Parse options from argv[1...] up to the first non-option; used both before
 * and after the command name, so "mooringctl apps --json" works too. Returns
 * the index of the first unparsed argument, or -EINVAL (reported).
 */
static int parse_options(int argc, char *argv[], Args *args) {
        int c;

        /* 0 makes glibc re-initialize, which a second pass needs */
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+:h", long_options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        args->show_help = true;
                        break;
                case ARG_VERSION:
                        args->show_version = true;
                        break;
                case ARG_USER:
                        args->options.user = true;
                        break;
                case ARG_BUS_ADDRESS:
                        if (!optarg[0])
                                return usage_error("--bus-address needs a non-empty address");
                        args->options.bus_address = optarg;
                        break;
                case ARG_SOCKET:
                        if (!optarg[0])
                                return usage_error("--socket needs a non-empty path");
                        args->socket_option = optarg;
                        break;
                case ARG_JSON:
                        args->options.json = true;
                        break;
                case ARG_NO_PAGER:
                        args->options.no_pager = true;
                        break;
                case ':':
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                case '?':
                default:
                        /* optopt holds the character of an unknown short option, 0 for a long one */
                        if (optopt > 0 && optopt < 0x100)
                                return usage_error("unknown option '-%c'", optopt);
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        return optind;
}

/*
 * Choose the transport once options are known: --socket wins, then
 * --bus-address, then $MOORING_SOCKET; app-exec always uses D-Bus.
 */
static int select_transport(Args *args, bool needs_bus) {
        CtlOptions *o = &args->options;
        const char *env = getenv("MOORING_SOCKET");

        if (args->socket_option && o->bus_address)
                return usage_error("--socket and --bus-address cannot be combined");
        if (args->socket_option && needs_bus)
                return usage_error("app-exec talks to mooringd over D-Bus and cannot use --socket");

        if (args->socket_option)
                o->socket_path = args->socket_option;
        else if (!o->bus_address && !needs_bus && env && env[0])
                o->socket_path = env;

        if (o->socket_path && strlen(o->socket_path) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return usage_error("socket path '%s' is too long for a Unix socket", o->socket_path);
        return 0;
}

static int run_status(const CtlOptions *o) {
        _cleanup_(ctl_status_done) CtlStatus s = {};
        int r;

        r = o->socket_path ? ctl_http_get_status(o, &s) : ctl_bus_get_status(o, &s);
        if (r < 0)
                return r;
        return ctl_print_status(&s, o->json);
}

static int run_apps(const CtlOptions *o) {
        _cleanup_(ctl_app_list_done) CtlAppList l = {};
        int r;

        r = o->socket_path ? ctl_http_get_apps(o, &l) : ctl_bus_get_apps(o, &l);
        if (r < 0)
                return r;
        if (!o->json)
                ctl_pager_open(o->no_pager);
        return ctl_print_apps(&l, o->json);
}

static int run_components(const CtlOptions *o) {
        _cleanup_(ctl_component_list_done) CtlComponentList l = {};
        int r;

        r = o->socket_path ? ctl_http_get_components(o, &l) : ctl_bus_get_components(o, &l);
        if (r < 0)
                return r;
        if (!o->json)
                ctl_pager_open(o->no_pager);
        return ctl_print_components(&l, o->json);
}

/* Make sure what we printed reached stdout; a reader that went away is fine. */
static int flush_stdout(void) {
        errno = 0;
        if (fflush(stdout) == 0 && !ferror(stdout))
                return 0;
        if (errno == EPIPE)
                return 0;
        return ctl_log_errno(errno > 0 ? -errno : -EIO, "cannot write output: %m");
}

static int exit_status(int r) {
        if (r >= 0)
                return CTL_EXIT_SUCCESS;
        return r == -CTL_ERR_UNREACHABLE ? CTL_EXIT_NOT_RUNNING : CTL_EXIT_FAILURE;
}

int main(int argc, char *argv[]) {
        Args args = {};
        const char *verb;
        char **rest;
        int n_rest, r;

        r = parse_options(argc, argv, &args);
        if (r < 0)
                return CTL_EXIT_USAGE;

        /* options may follow the command too: parse again with the verb as argv[0] */
        rest = argv + r;
        n_rest = argc - r;
        if (n_rest > 0) {
                r = parse_options(n_rest, rest, &args);
                if (r < 0)
                        return CTL_EXIT_USAGE;
        } else
                r = 0;

        if (args.show_help) {
                help();
                return exit_status(flush_stdout());
        }
        if (args.show_version) {
                puts(CTL_PROGRAM " " PACKAGE_VERSION);
                return exit_status(flush_stdout());
        }
        if (n_rest <= 0) {
                usage_error("missing command");
                return CTL_EXIT_USAGE;
        }

        verb = rest[0];
        /* rest[r...] are the command's own arguments */
        rest += r;
        n_rest -= r;

        if (streq(verb, "app-exec")) {
                const char *app_id;
                char **cmd = NULL;

                if (n_rest < 1) {
                        usage_error("app-exec needs an APP_ID");
                        return CTL_EXIT_USAGE;
                }
                app_id = rest[0];
                if (!ctl_app_id_is_valid(app_id)) {
                        usage_error("invalid app id '%s'", app_id);
                        return CTL_EXIT_USAGE;
                }
                /* options may follow APP_ID as well; getopt consumes the "--" before CMD */
                r = parse_options(n_rest, rest, &args);
                if (r < 0)
                        return CTL_EXIT_USAGE;
                if (r < n_rest) {
                        if (!streq(rest[r - 1], "--")) {
                                usage_error("unexpected argument '%s' (put the command after '--')", rest[r]);
                                return CTL_EXIT_USAGE;
                        }
                        cmd = rest + r;
                } else if (n_rest > 1 && streq(rest[n_rest - 1], "--")) {
                        usage_error("'--' must be followed by a command");
                        return CTL_EXIT_USAGE;
                }
                if (select_transport(&args, true) < 0)
                        return CTL_EXIT_USAGE;
                /* only returns on failure */
                return exit_status(ctl_app_exec(&args.options, app_id, cmd));
        }

        if (!streq(verb, "status") && !streq(verb, "apps") && !streq(verb, "components")) {
                usage_error("unknown command '%s'", verb);
                return CTL_EXIT_USAGE;
        }
        if (n_rest > 0) {
                usage_error("'%s' takes no arguments, got '%s'", verb, rest[0]);
                return CTL_EXIT_USAGE;
        }
        if (select_transport(&args, false) < 0)
                return CTL_EXIT_USAGE;

        if (streq(verb, "status"))
                r = run_status(&args.options);
        else if (streq(verb, "apps"))
                r = run_apps(&args.options);
        else
                r = run_components(&args.options);
        if (r >= 0)
                r = flush_stdout();
        ctl_pager_close();
        return exit_status(r);
}
