/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: command line client of mooringd.
 *
 * Parses the command line, picks the transport (D-Bus unless --socket or
 * $MOORING_SOCKET asks for HTTP on the shared API socket; app-exec and state
 * always use D-Bus), runs one command and maps the result to the exit
 * status: 0 success, 1 failure (for invoke also an answer with a status
 * outside 200-399), 2 usage error, 3 mooringd (or its bus) not reachable.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "ctl-run.h"
#include "ctl.h"

enum {
        ARG_VERSION = 0x100,
        ARG_USER,
        ARG_BUS_ADDRESS,
        ARG_SOCKET,
        ARG_JSON,
        ARG_NO_PAGER,
        ARG_APP,
        ARG_ETAG,
        ARG_FIRST_WRITE,
        ARG_TTL,
        ARG_VERB,
        ARG_DATA,
        ARG_HEADER,
        ARG_CONTENT_TYPE,
        ARG_METADATA,
        ARG_SINCE,
        ARG_DIRECTORY,
        ARG_OPEN,
};

typedef struct Args {
        CtlOptions options;
        bool show_help;
        bool show_version;
        const char *socket_option; /* --socket as given; options.socket_path may come from the environment */
        const char *app;           /* --app (state), validated */
        const char *etag;          /* --etag (state set, state delete) */
        bool first_write;          /* --first-write (state set) */
        const char *ttl;           /* --ttl (state set), validated */
        const char *verb;          /* --verb (invoke), validated, upper case */
        const char *data;          /* --data (invoke) */
        char **headers;            /* --header (invoke), validated, NULL-terminated; the array is ours */
        size_t n_headers;
        bool verbose;              /* -v, --verbose (invoke) */
        const char *content_type;  /* --content-type (publish), validated */
        char **metadata;           /* --metadata (publish), validated, NULL-terminated; the array is ours */
        size_t n_metadata;
        bool follow;               /* -f, --follow (logs) */
        int64_t lines;             /* -n, --lines (logs); -1 when not given */
        const char *since;         /* --since (logs), validated */
        uint64_t since_usec;
        const char *directory;     /* --directory (logs) */
        bool open;                 /* --open (dashboard) */
        bool options_ended;        /* the last parse_options() stopped after a "--" */
        const char *command;       /* the command, for "COMMAND --help"; NULL before it is known */
} Args;

static void args_done(Args *args) {
        free(args->headers);
        free(args->metadata);
}

static const struct option long_options[] = {
        { "help",        no_argument,       NULL, 'h'             },
        { "version",     no_argument,       NULL, ARG_VERSION     },
        { "user",        no_argument,       NULL, ARG_USER        },
        { "bus-address", required_argument, NULL, ARG_BUS_ADDRESS },
        { "socket",      required_argument, NULL, ARG_SOCKET      },
        { "json",        no_argument,       NULL, ARG_JSON        },
        { "no-pager",    no_argument,       NULL, ARG_NO_PAGER    },
        { "app",         required_argument, NULL, ARG_APP         },
        { "etag",        required_argument, NULL, ARG_ETAG        },
        { "first-write", no_argument,       NULL, ARG_FIRST_WRITE },
        { "ttl",         required_argument, NULL, ARG_TTL         },
        { "verb",        required_argument, NULL, ARG_VERB        },
        { "data",        required_argument, NULL, ARG_DATA        },
        { "header",      required_argument, NULL, ARG_HEADER      },
        { "verbose",     no_argument,       NULL, 'v'             },
        { "content-type", required_argument, NULL, ARG_CONTENT_TYPE },
        { "metadata",    required_argument, NULL, ARG_METADATA    },
        { "follow",      no_argument,       NULL, 'f'             },
        { "lines",       required_argument, NULL, 'n'             },
        { "since",       required_argument, NULL, ARG_SINCE       },
        { "directory",   required_argument, NULL, ARG_DIRECTORY   },
        { "open",        no_argument,       NULL, ARG_OPEN        },
        {}
};

/* Keep in sync with docs/mooringctl.1. */
static void help(void) {
        printf("%s [OPTIONS...] COMMAND\n"
               "\n"
               "Query mooringd, the Dapr-compatible application runtime, start its apps, use\n"
               "their state, call them, publish to their topics and use output bindings.\n"
               "\n"
               "Commands:\n"
               "  status                  Show the daemon's version, state and counts\n"
               "  apps                    List the registered apps\n"
               "  components              List the loaded components\n"
               "  subscriptions           List the running pub/sub subscriptions\n"
               "  actors                  List the hosted actor types and their active actors\n"
               "  resiliency              List the Resiliency policies and circuit breakers\n"
               "  cluster                 Show the cluster's hosts with their apps and actor types\n"
               "  actor invoke TYPE ID METHOD\n"
               "                          Call METHOD of actor TYPE/ID (--data: its body) and\n"
               "                          print the answer\n"
               "  actor reminders TYPE ID List the reminders of actor TYPE/ID\n"
               "  app-exec APP_ID [-- CMD [ARGS...]]\n"
               "                          Run app APP_ID with its Dapr environment set\n"
               "                          (the ExecStart= of mooring-app@.service)\n"
               "  state get STORE KEY     Print the value of KEY in state store STORE\n"
               "  state set STORE KEY VALUE\n"
               "                          Save VALUE as KEY in state store STORE\n"
               "                          (VALUE '-': read it from standard input)\n"
               "  state delete STORE KEY  Delete KEY from state store STORE\n"
               "  secret get STORE NAME   Print secret NAME of secret store STORE, as the app\n"
               "                          of --app (the caller's app by default; its secret\n"
               "                          scopes apply)\n"
               "  state query STORE QUERY Run a Dapr state query (JSON: filter, sort, page) on\n"
               "                          STORE and print the matching items as JSON\n"
               "  lock STORE RESOURCE OWNER SECONDS\n"
               "                          Take RESOURCE's lock in lock STORE for OWNER for\n"
               "                          SECONDS (exit status 1 when someone else holds it)\n"
               "  unlock STORE RESOURCE OWNER\n"
               "                          Release OWNER's lock of RESOURCE in lock STORE\n"
               "  configuration get STORE [KEY...]\n"
               "                          Print the items (all, or KEYs) of configuration STORE\n"
               "  invoke APP_ID METHOD    Call METHOD (a path, may end in ?QUERY) of app APP_ID\n"
               "                          and print the body of its answer\n"
               "  publish PUBSUB TOPIC DATA\n"
               "                          Publish DATA on TOPIC of pubsub PUBSUB (@FILE: the\n"
               "                          file's contents, '-': standard input)\n"
               "  binding invoke NAME OPERATION\n"
               "                          Run OPERATION on output binding NAME (--data,\n"
               "                          --metadata, --app) and print what it answered\n"
               "  logs APP_ID             Show the app's log lines and mooringd's about it,\n"
               "                          from the journal, in time order\n"
               "  dashboard               Print the URL of mooringd's web dashboard; without\n"
               "                          DashboardPort=, serve it on a loopback port until\n"
               "                          stopped\n"
               "  list                    The same as apps\n"
               "  reload                  Reload the daemon's configuration\n"
               "  register APP_ID [KEY=VALUE...]\n"
               "                          Register app APP_ID with apps.d settings, until\n"
               "                          unregister (e.g. AppAddress=http://127.0.0.1:3000)\n"
               "  unregister APP_ID       Remove an app registered over D-Bus\n"
               "  stop APP_ID             Stop an app started with run (same as unregister)\n"
               "  run [--app-id ID] [--app-port P] [--dapr-http-port N] [--resources-path DIR]...\n"
               "      [--config FILE] [--app-health-check-path P] [--app-max-concurrency N] -- CMD...\n"
               "                          Run CMD as app ID as 'dapr run' does: registered while it\n"
               "                          runs, Dapr's environment, prefixed output, its exit status\n"
               "  run -f dapr.yaml|DIR    Run the apps of a Dapr Multi-App Run template\n"
               "  init [--no-systemd]     Set up ~/.config/mooring with embedded stores and enable\n"
               "                          mooringd.socket for the user where systemd runs\n"
               "  uninstall [--all]       Undo init (--all: also the stores' data)\n"
               "  ca init [--dir DIR] [--trust-domain TD] [--days N]\n"
               "                          Make the trust root of a cluster of hosts: DIR/ca.key\n"
               "                          and DIR/ca.crt (default DIR: /etc/mooring/pki)\n"
               "  ca issue HOST [--dir DIR] [--out DIR] [--days N] [--ip ADDR]...\n"
               "                          Issue host HOST's key and certificate for [Cluster]\n"
               "                          peer TLS: OUT/HOST.key and OUT/HOST.crt\n"
               "  help [COMMAND]          Show this help, or the help of COMMAND\n"
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
               "     --app=APP_ID         Act as app APP_ID in state, binding, secret, lock,\n"
               "                          unlock and configuration commands (default: the\n"
               "                          app of the caller's mooring-app@.service unit)\n"
               "     --etag=ETAG          Set or delete only if the key's etag is ETAG\n"
               "     --first-write        Set only if the key does not exist yet\n"
               "     --ttl=SECONDS        Let the value expire after SECONDS (-1: never)\n"
               "     --verb=VERB          HTTP method of invoke (default: GET, or POST with --data)\n"
               "     --data=DATA          Send DATA as the body of invoke, or as the data of\n"
               "                          binding invoke (@FILE: the file's contents, '-':\n"
               "                          standard input)\n"
               "     --header='NAME: VALUE'\n"
               "                          Add a header to the call of invoke (repeatable)\n"
               "  -v --verbose            Show the status and headers of invoke's answer, or\n"
               "                          the metadata of binding invoke's, on standard error\n"
               "     --content-type=TYPE  Content type of invoke's --data or publish's DATA\n"
               "                          (default: application/json for a JSON object or array,\n"
               "                          else text/plain for publish and none for invoke)\n"
               "     --metadata=KEY=VALUE\n"
               "                          Publish, binding or secret get metadata (repeatable),\n"
               "                          e.g. rawPayload=true, ttlInSeconds=60, fileName=a.txt\n"
               "  -f --follow             logs: keep showing new lines as they come\n"
               "  -n --lines=N            logs: show the last N lines (with -f: 10)\n"
               "     --since=TIME         logs: only lines from TIME on (YYYY-MM-DD [HH:MM[:SS]],\n"
               "                          @EPOCH, or 30s, 10m, 2h, 1d ago)\n"
               "     --directory=DIR      logs: read the journal files in DIR\n"
               "     --open               dashboard: open the URL in a browser (xdg-open)\n"
               "\n"
               "Exit status: 0 success, 1 failure (invoke: also an answer with a status\n"
               "outside 200-399), 2 usage error, 3 mooringd not running.\n",
               CTL_PROGRAM);
}

/* "help COMMAND" and "COMMAND --help": the command's synopsis and what it does. */
static const struct {
        const char *name, *synopsis, *text;
} command_help[] = {
        { "status", "status", "Show the daemon's version, state and the number of apps and components." },
        { "apps", "apps", "List the registered apps: id, app address, socket, port and health." },
        { "list", "list", "The same as apps." },
        { "components", "components", "List the loaded components: name, type, version and file." },
        { "subscriptions", "subscriptions", "List the running pub/sub subscriptions." },
        { "app-exec", "app-exec APP_ID [-- CMD [ARGS...]]",
          "Run app APP_ID (its Exec= line, or CMD) with its Dapr environment set: APP_ID,\n"
          "DAPR_HTTP_PORT, DAPR_HTTP_ENDPOINT, DAPR_API_TOKEN, APP_PORT, MOORING_HTTP_SOCKET.\n"
          "This is the ExecStart= of mooring-app@.service." },
        { "state", "state get|set|delete STORE KEY [VALUE] [--app=APP_ID] [--etag=ETAG] [--first-write] [--ttl=S]",
          "Read, write or delete KEY in state store STORE as app APP_ID (over D-Bus); 'state query\n"
          "STORE QUERY' runs a Dapr state query (JSON: filter, sort, page) and prints the items." },
        { "invoke", "invoke APP_ID METHOD [--verb=V] [--data=D|@FILE|-] [--content-type=T] [--header='N: v']... [-v]",
          "Call METHOD of app APP_ID through mooringd and print the body of its answer. JSON\n"
          "data is sent as application/json unless --content-type or a Content-Type header says\n"
          "otherwise." },
        { "publish", "publish PUBSUB TOPIC DATA|@FILE|- [--content-type=T] [--metadata=K=V]...",
          "Publish DATA on TOPIC of pubsub PUBSUB; returns once the broker has it. JSON data is\n"
          "sent as application/json, other data as text/plain, unless --content-type is given." },
        { "binding", "binding invoke NAME OPERATION [--data=D|@FILE|-] [--metadata=K=V]... [--app=APP_ID] [-v]",
          "Run OPERATION on output binding NAME and print what it answered (-v: its metadata)." },
        { "secret", "secret get STORE NAME [--app=APP_ID] [--metadata=K=V]...",
          "Print secret NAME of secret store STORE as app APP_ID (its secret scopes apply)." },
        { "actors", "actors", "List the hosted actor types: app, active actors and reminders." },
        { "resiliency", "resiliency",
          "List the Resiliency documents in force (timeouts, retries, circuit breakers, targets) and\n"
          "the circuit breakers made so far with their state (over the shared socket)." },
        { "cluster", "cluster",
          "Show this host's view of the cluster ([Cluster] in mooringd.conf): the membership engine and\n"
          "whether it is connected, and every live host with its address, lease left, healthy apps and\n"
          "actor types; '*' marks this host (over the shared socket)." },
        { "actor", "actor invoke TYPE ID METHOD [--data=D|@FILE|-] [--app=APP_ID] | actor reminders TYPE ID",
          "Call METHOD of actor TYPE/ID and print its answer, or list the actor's reminders." },
        { "lock", "lock STORE RESOURCE OWNER SECONDS [--app=APP_ID]",
          "Take RESOURCE's lock in lock store STORE for OWNER for SECONDS; exit status 1 when\n"
          "someone else holds it." },
        { "unlock", "unlock STORE RESOURCE OWNER [--app=APP_ID]", "Release OWNER's lock of RESOURCE in STORE." },
        { "configuration", "configuration get STORE [KEY...] [--app=APP_ID]",
          "Print the items (all, or KEYs) of configuration store STORE." },
        { "logs", "logs APP_ID [-f] [-n N] [--since=TIME] [--directory=DIR]",
          "Show the app's journal lines and mooringd's about it, merged in time order." },
        { "dashboard", "dashboard [--open]",
          "Print the URL of mooringd's web dashboard (and open it with --open); without\n"
          "DashboardPort=, serve it on a loopback port until stopped." },
        { "reload", "reload", "Reload the daemon's configuration (as systemctl reload mooringd does); exit status 1\n"
          "when files were broken and kept their previous version." },
        { "register", "register APP_ID [KEY=VALUE...]",
          "Register app APP_ID with the settings of an apps.d file (AppAddress=, HttpPort=, ...)\n"
          "until it is unregistered or the daemon stops." },
        { "unregister", "unregister APP_ID", "Remove app APP_ID, registered over D-Bus (register or run)." },
        { "stop", "stop APP_ID", "Stop app APP_ID started with run: mooringctl run stops the app and exits." },
        { "run", "run [--app-id ID] [--app-port P] [--dapr-http-port N] [--resources-path DIR]... -- CMD [ARGS...]\n"
                 "                     run -f dapr.yaml|DIR",
          "Run CMD as app ID with mooringd, as 'dapr run' does (see 'mooringctl run --help'); with -f,\n"
          "the apps of a Dapr Multi-App Run template." },
        { "init", "init [--no-systemd]",
          "Set up mooring for this user, as 'dapr init' does but with no Docker and no Redis:\n"
          "~/.config/mooring with a state store and a pub/sub on the embedded SQLite stores, and,\n"
          "where a systemd user manager runs, mooringd.socket enabled for the user." },
        { "uninstall", "uninstall [--all] [--no-systemd]",
          "Undo init: disable the user's mooringd.socket and remove what init wrote (if unchanged);\n"
          "--all also removes the embedded stores' data (~/.local/state/mooring)." },
        { "ca", "ca init [--dir DIR] [--trust-domain TD] [--days N] | ca issue HOST [--dir DIR] [--out DIR] [--days N] "
                "[--ip ADDR]...",
          "The trust root of a cluster of mooringd hosts. init makes DIR/ca.key (0600) and DIR/ca.crt for trust\n"
          "domain TD (default public); issue makes OUT/HOST.key and OUT/HOST.crt, naming HOST (SAN DNS), each\n"
          "--ip and spiffe://TD/mooring/host/HOST. DIR: /etc/mooring/pki by default; OUT: DIR." },
        { "help", "help [COMMAND]", "Show the help, or the help of COMMAND." },
};

static bool command_help_print(const char *verb) {
        for (size_t i = 0; i < ELEMENTSOF(command_help); i++)
                if (streq(command_help[i].name, verb)) {
                        printf("%s [OPTIONS...] %s\n\n%s\n\nSee '%s --help' for the options and mooringctl(1).\n",
                               CTL_PROGRAM, command_help[i].synopsis, command_help[i].text, CTL_PROGRAM);
                        return true;
                }
        return false;
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

/* --ttl: a number of seconds that fits Dapr's int32, or -1 for "never expires". */
static bool ttl_is_valid(const char *s) {
        long long v;
        char *end;

        if (streq(s, "-1"))
                return true;
        if (!s[0] || strspn(s, "0123456789") != strlen(s))
                return false;
        errno = 0;
        v = strtoll(s, &end, 10);
        return errno == 0 && *end == '\0' && v >= 0 && v <= INT32_MAX;
}

/* RFC 9110 tchar */
static bool is_tchar(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A non-empty HTTP token of at most max characters. */
static bool is_token(const char *s, size_t max) {
        size_t n = 0;

        for (; s[n]; n++)
                if (!is_tchar(s[n]))
                        return false;
        return n > 0 && n <= max;
}

/* --verb: an HTTP method; written in upper case (in place) as mooringd expects it. */
static bool verb_normalize(char *verb) {
        if (!is_token(verb, 32))
                return false;
        for (char *p = verb; *p; p++)
                if (*p >= 'a' && *p <= 'z')
                        *p = (char) (*p - 'a' + 'A');
        return true;
}

/* --header: "NAME: VALUE" with NAME an HTTP token and VALUE free of control characters. */
static const char *header_check(const char *h) {
        const char *colon = strchr(h, ':');

        if (!colon)
                return "expected 'NAME: VALUE'";
        for (const char *p = h; p < colon; p++)
                if (!is_tchar(*p))
                        return "the name must be an HTTP token";
        if (colon == h)
                return "the name must not be empty";
        for (const unsigned char *p = (const unsigned char *) colon + 1; *p; p++)
                if ((*p < ' ' && *p != '\t') || *p == 0x7f)
                        return "the value must not contain control characters";
        return NULL;
}

/* --content-type: a header value, so no control characters. */
static bool content_type_is_valid(const char *t) {
        if (!t[0])
                return false;
        for (const unsigned char *p = (const unsigned char *) t; *p; p++)
                if ((*p < ' ' && *p != '\t') || *p == 0x7f)
                        return false;
        return true;
}

/* --metadata: "KEY=VALUE" with a non-empty KEY; NULL, or what is wrong. */
static const char *metadata_check(const char *m) {
        const char *eq = strchr(m, '=');

        if (!eq)
                return "expected 'KEY=VALUE'";
        if (eq == m)
                return "the key must not be empty";
        return NULL;
}

/* METHOD of invoke stays one token of the request line: printable ASCII without spaces. */
static bool method_is_valid(const char *method) {
        if (!method[0])
                return false;
        for (const unsigned char *p = (const unsigned char *) method; *p; p++)
                if (*p <= ' ' || *p >= 0x7f)
                        return false;
        return true;
}

/*
 * Parse options from argv[1...] up to the first non-option; used both before
 * and after the command name, so "mooringctl apps --json" works too. Returns
 * the index of the first unparsed argument, or -EINVAL (reported).
 */
static int parse_options(int argc, char *argv[], Args *args) {
        const char *last_optarg = NULL;
        int c;

        /* 0 makes glibc re-initialize, which a second pass needs */
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+:hvfn:", long_options, NULL)) >= 0) {
                last_optarg = optarg;
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
                case ARG_APP:
                        if (!optarg[0])
                                return usage_error("--app needs a non-empty app id");
                        if (!ctl_app_id_is_valid(optarg))
                                return usage_error("invalid app id '%s'", optarg);
                        args->app = optarg;
                        break;
                case ARG_ETAG:
                        if (!optarg[0])
                                return usage_error("--etag needs a non-empty etag");
                        args->etag = optarg;
                        break;
                case ARG_FIRST_WRITE:
                        args->first_write = true;
                        break;
                case ARG_TTL:
                        if (!ttl_is_valid(optarg))
                                return usage_error("invalid --ttl '%s': expected 0 to %" PRId32 " seconds, or -1",
                                                   optarg, INT32_MAX);
                        args->ttl = optarg;
                        break;
                case ARG_VERB:
                        if (!verb_normalize(optarg))
                                return usage_error("invalid --verb '%s': expected an HTTP method such as GET or POST",
                                                   optarg);
                        args->verb = optarg;
                        break;
                case ARG_DATA:
                        args->data = optarg;
                        break;
                case ARG_HEADER: {
                        const char *e = header_check(optarg);
                        char **h;

                        if (e)
                                return usage_error("invalid --header '%s': %s", optarg, e);
                        h = realloc(args->headers, (args->n_headers + 2) * sizeof(char *));
                        if (!h) {
                                ctl_log_oom();
                                return -ENOMEM;
                        }
                        args->headers = h;
                        args->headers[args->n_headers++] = optarg;
                        args->headers[args->n_headers] = NULL;
                        break;
                }
                case 'v':
                        args->verbose = true;
                        break;
                case ARG_CONTENT_TYPE:
                        if (!content_type_is_valid(optarg))
                                return usage_error("invalid --content-type '%s': expected a non-empty media type "
                                                   "without control characters", optarg);
                        args->content_type = optarg;
                        break;
                case ARG_METADATA: {
                        const char *e = metadata_check(optarg);
                        char **l;

                        if (e)
                                return usage_error("invalid --metadata '%s': %s", optarg, e);
                        l = realloc(args->metadata, (args->n_metadata + 2) * sizeof(char *));
                        if (!l) {
                                ctl_log_oom();
                                return -ENOMEM;
                        }
                        args->metadata = l;
                        args->metadata[args->n_metadata++] = optarg;
                        args->metadata[args->n_metadata] = NULL;
                        break;
                }
                case 'f':
                        args->follow = true;
                        break;
                case 'n': {
                        char *end;
                        errno = 0;
                        long long v = strtoll(optarg, &end, 10);
                        if (errno || end == optarg || *end || v < 0)
                                return usage_error("invalid --lines '%s': expected a number of lines", optarg);
                        args->lines = v;
                        break;
                }
                case ARG_SINCE:
                        if (ctl_parse_since(optarg, &args->since_usec) < 0)
                                return usage_error("invalid --since '%s': expected YYYY-MM-DD [HH:MM[:SS]], @EPOCH "
                                                   "or a time ago such as 10m", optarg);
                        args->since = optarg;
                        break;
                case ARG_DIRECTORY:
                        if (!optarg[0])
                                return usage_error("--directory needs a non-empty path");
                        args->directory = optarg;
                        break;
                case ARG_OPEN:
                        args->open = true;
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
        }
        /* getopt consumed a "--" unless that was the argument of an option ("--etag --") */
        args->options_ended = optind > 1 && streq(argv[optind - 1], "--") && argv[optind - 1] != last_optarg;
        return optind;
}

/*
 * Collect up to max positional arguments from argv[1...] into ret, parsing
 * options wherever they appear among them, until a "--" after which every
 * argument is positional (from the start, when the parse that led here
 * already ended with one). Returns how many were collected, or -EINVAL
 * (reported).
 */
static int parse_positionals(int argc, char *argv[], Args *args, char **ret, int max) {
        bool options = !args->options_ended;
        int n = 0, i = 0; /* argv[i] is done with; it serves as getopt's argv[0] */

        for (;;) {
                int next;

                if (options) {
                        int r = parse_options(argc - i, argv + i, args);

                        if (r < 0)
                                return r;
                        next = i + r;
                        options = !args->options_ended;
                } else
                        next = i + 1;
                if (next >= argc)
                        break;
                if (n >= max)
                        return usage_error("unexpected argument '%s'", argv[next]);
                ret[n++] = argv[next];
                i = next;
        }
        return n;
}

/*
 * Options belong to one verb each. Given to another verb (or to none, verb NULL),
 * the first such option is a usage error, printed here; returns < 0 then.
 */
static int check_foreign_options(const Args *a, const char *verb) {
        const struct {
                const char *verb, *name;
                bool given;
        } opts[] = {
                { "binding", "--app", a->app },
                { "lock", "--app", a->app },
                { "unlock", "--app", a->app },
                { "configuration", "--app", a->app },
                { "binding", "--data", a->data },
                { "binding", "--metadata", a->metadata },
                { "binding", "--verbose", a->verbose },
                { "state", "--app", a->app },
                { "state", "--etag", a->etag },
                { "state", "--first-write", a->first_write },
                { "state", "--ttl", a->ttl },
                { "invoke", "--verb", a->verb },
                { "invoke", "--data", a->data },
                { "invoke", "--header", a->headers },
                { "invoke", "--verbose", a->verbose },
                { "invoke", "--content-type", a->content_type },
                { "publish", "--content-type", a->content_type },
                { "publish", "--metadata", a->metadata },
                { "secret", "--app", a->app },
                { "secret", "--metadata", a->metadata },
                { "actor", "--app", a->app },
                { "actor", "--data", a->data },
                { "logs", "--follow", a->follow },
                { "logs", "--lines", a->lines >= 0 },
                { "logs", "--since", a->since },
                { "logs", "--directory", a->directory },
                { "dashboard", "--open", a->open },
        };
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                bool ok = false;
                if (!opts[i].given)
                        continue;
                /* an option may belong to several verbs: one matching entry is enough */
                for (size_t j = 0; j < ELEMENTSOF(opts); j++)
                        ok = ok || (streq(opts[j].name, opts[i].name) && streq_ptr(verb, opts[j].verb));
                if (!ok)
                        return usage_error("option '%s' is only valid for '%s'", opts[i].name, opts[i].verb);
        }
        return 0;
}

/*
 * Choose the transport once options are known: --socket wins, then
 * --bus-address, then $MOORING_SOCKET; bus_only_verb (app-exec, state) names
 * a command that always uses D-Bus, NULL for the others.
 */
static int select_transport(Args *args, const char *bus_only_verb) {
        CtlOptions *o = &args->options;
        const char *env = getenv("MOORING_SOCKET");

        if (args->socket_option && o->bus_address)
                return usage_error("--socket and --bus-address cannot be combined");
        if (args->socket_option && bus_only_verb)
                return usage_error("%s talks to mooringd over D-Bus and cannot use --socket", bus_only_verb);

        if (args->socket_option)
                o->socket_path = args->socket_option;
        else if (!o->bus_address && !bus_only_verb && env && env[0])
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

static int run_subscriptions(const CtlOptions *o) {
        _cleanup_(ctl_subscription_list_done) CtlSubscriptionList l = {};
        int r;

        r = o->socket_path ? ctl_http_get_subscriptions(o, &l) : ctl_bus_get_subscriptions(o, &l);
        if (r < 0)
                return r;
        if (!o->json)
                ctl_pager_open(o->no_pager);
        return ctl_print_subscriptions(&l, o->json);
}

static int run_state(const CtlOptions *o, const char *command, const CtlStateRequest *req) {
        _cleanup_(ctl_state_value_done) CtlStateValue v = {};
        int r;

        if (streq(command, "query")) /* KEY is the query */
                return ctl_state_query(o, req->app_id, req->store, req->key);
        if (streq(command, "set"))
                return ctl_state_set(o, req);
        if (streq(command, "delete"))
                return ctl_state_delete(o, req);

        r = ctl_state_get(o, req, &v);
        if (r < 0)
                return r;
        return ctl_print_state_value(&v, o->json);
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

/* --help or --version, whichever was given (--help wins). Returns the exit status. */
static int help_or_version(const Args *args) {
        if (args->show_help && args->command && command_help_print(args->command))
                ;
        else if (args->show_help)
                help();
        else
                puts(CTL_PROGRAM " " PACKAGE_VERSION);
        return exit_status(flush_stdout());
}

/*
 * "state get|set|delete ...": argv[1...] are the arguments after "state",
 * with options allowed anywhere among them; argv[0] is only getopt's
 * placeholder. Returns the exit status.
 */
static int state_main(Args *args, int argc, char *argv[]) {
        CtlStateRequest req = {};
        const char *command, *needs;
        char *pos[4];
        int n, n_needed, r;

        n = parse_positionals(argc, argv, args, pos, (int) ELEMENTSOF(pos));
        if (n < 0)
                return CTL_EXIT_USAGE;
        /* options among the arguments were not seen by main() */
        if (args->show_help || args->show_version)
                return help_or_version(args);
        if (n == 0) {
                usage_error("state needs a command: get, set or delete");
                return CTL_EXIT_USAGE;
        }
        command = pos[0];
        if (streq(command, "get") || streq(command, "delete")) {
                n_needed = 3;
                needs = "STORE and KEY";
        } else if (streq(command, "query")) {
                n_needed = 3;
                needs = "STORE and QUERY";
        } else if (streq(command, "set")) {
                n_needed = 4;
                needs = "STORE, KEY and VALUE";
        } else {
                usage_error("unknown state command '%s' (expected get, set, delete or query)", command);
                return CTL_EXIT_USAGE;
        }
        if (n < n_needed) {
                usage_error("state %s needs %s", command, needs);
                return CTL_EXIT_USAGE;
        }
        if (n > n_needed) {
                usage_error("unexpected argument '%s'", pos[n_needed]);
                return CTL_EXIT_USAGE;
        }

        if (check_foreign_options(args, "state") < 0)
                return CTL_EXIT_USAGE;
        if (streq(command, "get") && args->etag) {
                usage_error("option '--etag' does not apply to 'state get'");
                return CTL_EXIT_USAGE;
        }
        if (!streq(command, "set") && (args->first_write || args->ttl)) {
                usage_error("option '%s' does not apply to 'state %s'",
                            args->first_write ? "--first-write" : "--ttl", command);
                return CTL_EXIT_USAGE;
        }
        if (!pos[1][0] || !pos[2][0]) {
                usage_error("%s must not be empty", !pos[1][0] ? "STORE" : "KEY");
                return CTL_EXIT_USAGE;
        }
        if (select_transport(args, "state") < 0)
                return CTL_EXIT_USAGE;

        req = (CtlStateRequest) {
                .app_id = strempty(args->app),
                .store = pos[1],
                .key = pos[2],
                .value = n_needed > 3 ? pos[3] : NULL,
                .etag = args->etag,
                .first_write = args->first_write,
                .ttl = args->ttl,
        };
        r = run_state(&args->options, command, &req);
        if (r >= 0)
                r = flush_stdout();
        return exit_status(r);
}

/*
 * "secret get STORE NAME": argv[1...] are the arguments after "secret", with
 * options allowed anywhere among them. Returns the exit status.
 */
static int secret_main(Args *args, int argc, char *argv[]) {
        char *pos[3];
        int n;

        n = parse_positionals(argc, argv, args, pos, (int) ELEMENTSOF(pos));
        if (n < 0)
                return CTL_EXIT_USAGE;
        if (args->show_help || args->show_version)
                return help_or_version(args);
        if (n == 0) {
                usage_error("secret needs a command: get");
                return CTL_EXIT_USAGE;
        }
        if (!streq(pos[0], "get")) {
                usage_error("unknown secret command '%s' (expected get)", pos[0]);
                return CTL_EXIT_USAGE;
        }
        if (n < 3) {
                usage_error("secret get needs STORE and NAME");
                return CTL_EXIT_USAGE;
        }
        if (check_foreign_options(args, "secret") < 0)
                return CTL_EXIT_USAGE;
        if (!pos[1][0] || !pos[2][0]) {
                usage_error("%s must not be empty", !pos[1][0] ? "STORE" : "NAME");
                return CTL_EXIT_USAGE;
        }
        if (select_transport(args, "secret") < 0)
                return CTL_EXIT_USAGE;
        int r = ctl_secret_get(&args->options, strempty(args->app), pos[1], pos[2], args->metadata);
        if (r >= 0)
                r = flush_stdout();
        return exit_status(r);
}

/*
 * "invoke APP_ID METHOD": argv[1...] are the arguments after "invoke", with
 * options allowed anywhere among them; argv[0] is only getopt's placeholder.
 * Returns the exit status.
 */
static int invoke_main(Args *args, int argc, char *argv[]) {
        CtlInvokeRequest req;
        char *pos[2];
        int n, r, f;

        n = parse_positionals(argc, argv, args, pos, (int) ELEMENTSOF(pos));
        if (n < 0)
                return CTL_EXIT_USAGE;
        if (args->show_help || args->show_version)
                return help_or_version(args);
        if (n < 2) {
                usage_error("invoke needs APP_ID and METHOD");
                return CTL_EXIT_USAGE;
        }
        if (check_foreign_options(args, "invoke") < 0)
                return CTL_EXIT_USAGE;
        if (!ctl_app_id_is_valid(pos[0])) {
                usage_error("invalid app id '%s'", pos[0]);
                return CTL_EXIT_USAGE;
        }
        if (!method_is_valid(pos[1])) {
                usage_error("invalid METHOD '%s': it must not be empty, and spaces, control characters and "
                            "non-ASCII bytes must be percent-encoded", pos[1]);
                return CTL_EXIT_USAGE;
        }
        if (select_transport(args, NULL) < 0)
                return CTL_EXIT_USAGE;

        req = (CtlInvokeRequest) {
                .app_id = pos[0],
                .method = pos[1],
                .verb = args->verb ?: (args->data ? "POST" : "GET"),
                .data = args->data,
                .headers = args->headers,
                .content_type = args->content_type,
                .verbose = args->verbose,
        };
        r = ctl_invoke(&args->options, &req);
        /* the body is written also when the app answered with an error status */
        f = flush_stdout();
        return exit_status(r < 0 ? r : f);
}

/*
 * "publish PUBSUB TOPIC DATA": argv[1...] are the arguments after "publish",
 * with options allowed anywhere among them; argv[0] is only getopt's
 * placeholder. Returns the exit status.
 */
static int publish_main(Args *args, int argc, char *argv[]) {
        CtlPublishRequest req;
        char *pos[3];
        int n, r;

        n = parse_positionals(argc, argv, args, pos, (int) ELEMENTSOF(pos));
        if (n < 0)
                return CTL_EXIT_USAGE;
        if (args->show_help || args->show_version)
                return help_or_version(args);
        if (n < 3) {
                usage_error("publish needs PUBSUB, TOPIC and DATA");
                return CTL_EXIT_USAGE;
        }
        if (check_foreign_options(args, "publish") < 0)
                return CTL_EXIT_USAGE;
        if (!pos[0][0] || !pos[1][0]) {
                usage_error("%s must not be empty", !pos[0][0] ? "PUBSUB" : "TOPIC");
                return CTL_EXIT_USAGE;
        }
        if (select_transport(args, NULL) < 0)
                return CTL_EXIT_USAGE;

        req = (CtlPublishRequest) {
                .pubsub = pos[0],
                .topic = pos[1],
                .data = pos[2],
                .content_type = args->content_type,
                .metadata = args->metadata,
        };
        r = ctl_publish(&args->options, &req);
        return exit_status(r);
}

/*
 * "binding invoke NAME OPERATION": argv[1...] are the arguments after "binding",
 * with options allowed anywhere among them; argv[0] is only getopt's
 * placeholder. Returns the exit status.
 */
static int binding_main(Args *args, int argc, char *argv[]) {
        CtlBindingRequest req;
        char *pos[3];
        int n, r, f;

        n = parse_positionals(argc, argv, args, pos, (int) ELEMENTSOF(pos));
        if (n < 0)
                return CTL_EXIT_USAGE;
        if (args->show_help || args->show_version)
                return help_or_version(args);
        if (n < 1) {
                usage_error("binding needs a command: invoke");
                return CTL_EXIT_USAGE;
        }
        if (!streq(pos[0], "invoke")) {
                usage_error("unknown binding command '%s' (expected invoke)", pos[0]);
                return CTL_EXIT_USAGE;
        }
        if (n < 3 || !pos[1][0] || !pos[2][0]) {
                usage_error("binding invoke needs NAME and OPERATION");
                return CTL_EXIT_USAGE;
        }
        if (check_foreign_options(args, "binding") < 0)
                return CTL_EXIT_USAGE;
        if (select_transport(args, "binding") < 0)
                return CTL_EXIT_USAGE;
        req = (CtlBindingRequest) {
                .app_id = args->app,
                .name = pos[1],
                .operation = pos[2],
                .data = args->data,
                .metadata = args->metadata,
                .verbose = args->verbose,
        };
        r = ctl_binding_invoke(&args->options, &req);
        f = flush_stdout();
        return exit_status(r < 0 ? r : f);
}

/* "actor invoke TYPE ID METHOD" and "actor reminders TYPE ID", over D-Bus. */
static int actor_main(Args *args, int argc, char *argv[]) {
        char *pos[4];
        int n, r, f;

        n = parse_positionals(argc, argv, args, pos, (int) ELEMENTSOF(pos));
        if (n < 0)
                return CTL_EXIT_USAGE;
        if (args->show_help || args->show_version)
                return help_or_version(args);
        if (check_foreign_options(args, "actor") < 0)
                return CTL_EXIT_USAGE;
        if (n < 1 || (!streq(pos[0], "invoke") && !streq(pos[0], "reminders"))) {
                usage_error("actor needs 'invoke TYPE ID METHOD' or 'reminders TYPE ID'");
                return CTL_EXIT_USAGE;
        }
        if (streq(pos[0], "invoke") ? n != 4 : n != 3) {
                usage_error("actor %s needs %s", pos[0], streq(pos[0], "invoke") ? "TYPE, ID and METHOD" : "TYPE and ID");
                return CTL_EXIT_USAGE;
        }
        if (streq(pos[0], "reminders") && (args->data || args->app)) {
                usage_error("actor reminders takes no --data or --app");
                return CTL_EXIT_USAGE;
        }
        if (!*pos[1] || !*pos[2] || (n == 4 && !*pos[3])) {
                usage_error("TYPE, ID and METHOD must not be empty");
                return CTL_EXIT_USAGE;
        }
        if (select_transport(args, "actor") < 0)
                return CTL_EXIT_USAGE;
        if (streq(pos[0], "invoke"))
                r = ctl_actor_invoke(&args->options, args->app, pos[1], pos[2], pos[3], args->data);
        else
                r = ctl_actor_reminders(&args->options, pos[1], pos[2]);
        f = flush_stdout();
        return exit_status(r < 0 ? r : f);
}

/*
 * "lock STORE RESOURCE OWNER SECONDS", "unlock STORE RESOURCE OWNER", "configuration get STORE [KEY...]":
 * the app-owned alpha APIs (ctl-alpha.c), over D-Bus. argv as for state_main(). Returns the exit status.
 */
static int alpha_main(Args *args, const char *verb, int argc, char *argv[]) {
        char *pos[64];
        const char *app;
        int n, r;

        n = parse_positionals(argc, argv, args, pos, (int) ELEMENTSOF(pos));
        if (n < 0)
                return CTL_EXIT_USAGE;
        if (args->show_help || args->show_version)
                return help_or_version(args);
        if (check_foreign_options(args, verb) < 0 || select_transport(args, verb) < 0)
                return CTL_EXIT_USAGE;
        app = strempty(args->app);
        if (streq(verb, "configuration")) {
                if (n < 2 || !streq(pos[0], "get")) {
                        usage_error("configuration needs 'get STORE [KEY...]'");
                        return CTL_EXIT_USAGE;
                }
                pos[n] = NULL;
                r = ctl_configuration_get(&args->options, app, pos[1], pos + 2);
        } else if (streq(verb, "unlock")) {
                if (n != 3) {
                        usage_error("unlock needs STORE, RESOURCE and OWNER");
                        return CTL_EXIT_USAGE;
                }
                r = ctl_unlock(&args->options, app, pos[0], pos[1], pos[2]);
        } else {
                char *end;
                long secs;
                if (n != 4) {
                        usage_error("lock needs STORE, RESOURCE, OWNER and SECONDS");
                        return CTL_EXIT_USAGE;
                }
                errno = 0;
                secs = strtol(pos[3], &end, 10);
                if (errno || *end || secs <= 0 || secs > INT32_MAX) {
                        usage_error("SECONDS must be a positive number, not '%s'", pos[3]);
                        return CTL_EXIT_USAGE;
                }
                r = ctl_lock(&args->options, app, pos[0], pos[1], pos[2], (int32_t) secs);
        }
        if (r >= 0)
                r = flush_stdout();
        return exit_status(r);
}

/*
 * "logs APP_ID": argv[1...] are the arguments after "logs", options allowed anywhere among
 * them. Returns the exit status.
 */
static int logs_main(Args *args, int argc, char *argv[]) {
        char *pos[1];
        int n, r;

        n = parse_positionals(argc, argv, args, pos, (int) ELEMENTSOF(pos));
        if (n < 0)
                return CTL_EXIT_USAGE;
        if (args->show_help || args->show_version)
                return help_or_version(args);
        if (n < 1) {
                usage_error("logs needs an APP_ID");
                return CTL_EXIT_USAGE;
        }
        if (check_foreign_options(args, "logs") < 0)
                return CTL_EXIT_USAGE;
        if (!ctl_app_id_is_valid(pos[0])) {
                usage_error("invalid app id '%s'", pos[0]);
                return CTL_EXIT_USAGE;
        }
        CtlLogsRequest req = {
                .app_id = pos[0],
                .follow = args->follow,
                .lines = args->lines,
                .since_set = args->since != NULL,
                .since_usec = args->since_usec,
                .directory = args->directory,
        };
        r = ctl_logs(&args->options, &req);
        if (r >= 0)
                r = flush_stdout();
        return exit_status(r);
}

/* "dashboard [--open]": always over the shared socket (the default one unless told). */
static int dashboard_main(Args *args, int argc, char *argv[]) {
        char *pos[1];
        _cleanup_free_ char *dflt = NULL;
        int n;

        n = parse_positionals(argc, argv, args, pos, 0);
        if (n < 0)
                return CTL_EXIT_USAGE;
        if (args->show_help || args->show_version)
                return help_or_version(args);
        if (check_foreign_options(args, "dashboard") < 0 || select_transport(args, NULL) < 0)
                return CTL_EXIT_USAGE;
        if (!args->options.socket_path) {
                if (!(dflt = ctl_default_socket_path(&args->options)))
                        return exit_status(ctl_log_oom());
                args->options.socket_path = dflt;
        }
        return exit_status(ctl_dashboard(&args->options, args->open));
}

/* "resiliency", "cluster": always over the shared socket (the default one unless told), as dashboard. */
static int resiliency_main(Args *args, const char *verb, int argc, char *argv[]) {
        char *pos[1];
        _cleanup_free_ char *dflt = NULL;
        int n, r;

        n = parse_positionals(argc, argv, args, pos, 0);
        if (n < 0)
                return CTL_EXIT_USAGE;
        if (args->show_help || args->show_version)
                return help_or_version(args);
        if (check_foreign_options(args, NULL) < 0 || select_transport(args, NULL) < 0)
                return CTL_EXIT_USAGE;
        if (!args->options.socket_path) {
                if (!(dflt = ctl_default_socket_path(&args->options)))
                        return exit_status(ctl_log_oom());
                args->options.socket_path = dflt;
        }
        r = streq(verb, "cluster") ? ctl_cluster(&args->options) : ctl_resiliency(&args->options);
        if (r >= 0)
                r = flush_stdout();
        return exit_status(r);
}

/* "register APP_ID [KEY=VALUE...]", "unregister APP_ID", "stop APP_ID": over D-Bus. */
static int manage_main(Args *args, const char *verb, int n_rest, char **rest) {
        bool reg = streq(verb, "register");

        if (n_rest < 1) {
                usage_error("%s needs an APP_ID", verb);
                return CTL_EXIT_USAGE;
        }
        if (!ctl_app_id_is_valid(rest[0])) {
                usage_error("invalid app id '%s'", rest[0]);
                return CTL_EXIT_USAGE;
        }
        if (!reg && n_rest > 1) {
                usage_error("unexpected argument '%s'", rest[1]);
                return CTL_EXIT_USAGE;
        }
        for (int i = 1; i < n_rest; i++) {
                const char *eq = strchr(rest[i], '=');
                if (!eq || eq == rest[i]) {
                        usage_error("invalid setting '%s': expected KEY=VALUE as in an apps.d file", rest[i]);
                        return CTL_EXIT_USAGE;
                }
        }
        if (select_transport(args, verb) < 0)
                return CTL_EXIT_USAGE;
        if (reg)
                return exit_status(ctl_register(&args->options, rest[0], rest + 1));
        return exit_status(ctl_unregister(&args->options, rest[0]));
}

int main(int argc, char *argv[]) {
        _cleanup_(args_done) Args args = { .lines = -1 };
        const char *verb;
        char **rest;
        int n_rest, r;

        r = parse_options(argc, argv, &args);
        if (r < 0)
                return CTL_EXIT_USAGE;

        /* options may follow the command too: parse again with the verb as argv[0] */
        rest = argv + r;
        n_rest = argc - r;
        /* run has options of its own, Dapr's (ctl-run.c) */
        if (n_rest > 0 && streq(rest[0], "run") && !args.show_help && !args.show_version) {
                if (args.socket_option) {
                        usage_error("run talks to mooringd over D-Bus and cannot use --socket");
                        return CTL_EXIT_USAGE;
                }
                return ctl_run_main(&args.options, n_rest, rest);
        }
        /* ca has options of its own and needs no daemon */
        if (n_rest > 0 && streq(rest[0], "ca") && !args.show_help && !args.show_version) {
                for (int i = 1; i < n_rest; i++)
                        if (streq(rest[i], "--help") || streq(rest[i], "-h")) {
                                command_help_print(rest[0]);
                                return exit_status(flush_stdout());
                        }
                return ctl_ca_main(n_rest, rest);
        }
        if (n_rest > 0 && (streq(rest[0], "init") || streq(rest[0], "uninstall")) && !args.show_help &&
            !args.show_version) {
                bool all = false, no_systemd = false, init = streq(rest[0], "init");
                for (int i = 1; i < n_rest; i++) {
                        if (streq(rest[i], "--no-systemd"))
                                no_systemd = true;
                        else if (streq(rest[i], "--all") && !init)
                                all = true;
                        else if (streq(rest[i], "--help") || streq(rest[i], "-h")) {
                                command_help_print(rest[0]);
                                return exit_status(flush_stdout());
                        } else {
                                usage_error("unexpected argument '%s' for %s", rest[i], rest[0]);
                                return CTL_EXIT_USAGE;
                        }
                }
                r = init ? ctl_init(no_systemd) : ctl_uninstall(all, no_systemd);
                if (r >= 0)
                        r = flush_stdout();
                return exit_status(r);
        }
        if (n_rest > 0) {
                r = parse_options(n_rest, rest, &args);
                if (r < 0)
                        return CTL_EXIT_USAGE;
        } else
                r = 0;

        if (n_rest > 0)
                args.command = rest[0];
        if (args.show_help || args.show_version)
                return help_or_version(&args);
        if (n_rest <= 0) {
                usage_error("missing command");
                return CTL_EXIT_USAGE;
        }

        verb = rest[0];
        /* rest[r...] are the command's own arguments */
        rest += r;
        n_rest -= r;

        /* r >= 1 here, so rest[-1] exists: the verb or the last option before the arguments */
        if (streq(verb, "state"))
                return state_main(&args, n_rest + 1, rest - 1);
        if (streq(verb, "secret"))
                return secret_main(&args, n_rest + 1, rest - 1);
        if (streq(verb, "invoke"))
                return invoke_main(&args, n_rest + 1, rest - 1);
        if (streq(verb, "publish"))
                return publish_main(&args, n_rest + 1, rest - 1);
        if (streq(verb, "binding"))
                return binding_main(&args, n_rest + 1, rest - 1);
        if (streq(verb, "actor"))
                return actor_main(&args, n_rest + 1, rest - 1);
        if (streq(verb, "lock") || streq(verb, "unlock") || streq(verb, "configuration"))
                return alpha_main(&args, verb, n_rest + 1, rest - 1);
        if (streq(verb, "logs"))
                return logs_main(&args, n_rest + 1, rest - 1);
        if (streq(verb, "dashboard"))
                return dashboard_main(&args, n_rest + 1, rest - 1);
        if (streq(verb, "resiliency") || streq(verb, "cluster"))
                return resiliency_main(&args, verb, n_rest + 1, rest - 1);
        if (streq(verb, "help")) {
                if (n_rest > 1) {
                        usage_error("unexpected argument '%s'", rest[1]);
                        return CTL_EXIT_USAGE;
                }
                if (n_rest == 1 && !command_help_print(rest[0])) {
                        usage_error("unknown command '%s'", rest[0]);
                        return CTL_EXIT_USAGE;
                }
                if (n_rest == 0)
                        help();
                return exit_status(flush_stdout());
        }
        if (check_foreign_options(&args, NULL) < 0)
                return CTL_EXIT_USAGE;
        if (streq(verb, "register") || streq(verb, "unregister") || streq(verb, "stop"))
                return manage_main(&args, verb, n_rest, rest);
        if (streq(verb, "list"))
                verb = "apps";

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
                if (check_foreign_options(&args, NULL) < 0)
                        return CTL_EXIT_USAGE;
                if (select_transport(&args, "app-exec") < 0)
                        return CTL_EXIT_USAGE;
                /* only returns on failure */
                return exit_status(ctl_app_exec(&args.options, app_id, cmd));
        }

        if (!streq(verb, "status") && !streq(verb, "apps") && !streq(verb, "components") &&
            !streq(verb, "subscriptions") && !streq(verb, "actors") && !streq(verb, "reload")) {
                usage_error("unknown command '%s'", verb);
                return CTL_EXIT_USAGE;
        }
        if (n_rest > 0) {
                usage_error("'%s' takes no arguments, got '%s'", verb, rest[0]);
                return CTL_EXIT_USAGE;
        }
        if (select_transport(&args, streq(verb, "actors") || streq(verb, "reload") ? verb : NULL) < 0)
                return CTL_EXIT_USAGE;

        if (streq(verb, "actors"))
                r = ctl_actors_list(&args.options);
        else if (streq(verb, "reload"))
                r = ctl_reload(&args.options);
        else if (streq(verb, "status"))
                r = run_status(&args.options);
        else if (streq(verb, "apps"))
                r = run_apps(&args.options);
        else if (streq(verb, "components"))
                r = run_components(&args.options);
        else
                r = run_subscriptions(&args.options);
        if (r >= 0)
                r = flush_stdout();
        ctl_pager_close();
        return exit_status(r);
}
