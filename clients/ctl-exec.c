/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl app-exec: the ExecStart= of mooring-app@.service.
 *
 * Asks mooringd how app APP_ID is wired, puts the
 * Dapr-style environment in place and replaces itself with the app: the
 * command given after "--", or the app file's Exec= line through /bin/sh.
 * Variables the daemon is authoritative for (DAPR_HTTP_PORT,
 * DAPR_HTTP_ENDPOINT, DAPR_GRPC_PORT, DAPR_GRPC_ENDPOINT, DAPR_API_TOKEN,
 * MOORING_HTTP_SOCKET, MOORING_GRPC_SOCKET) are removed when
 * the app has no value for them, so stale values cannot leak in from the
 * caller's environment; APP_PORT and APP_CHANNEL_ADDRESS are only set, never
 * removed, so a unit drop-in can provide them for unix: app addresses.
 * The app is not started when it could not connect to its own socket (the
 * unit runs as another user than the app file's User=).
 *
 * Inside the app's own unit (mooring-app@APP_ID.service) it asks on mooringd's shared
 * socket (GET /mooring/v1/self: the peer's cgroup names the app), else, or when that
 * fails, over D-Bus (GetApp). The socket comes first because a DynamicUser= unit may
 * not reach the system bus: in a booted Debian 12 (systemd 252, dbus-daemon) the bus
 * could not resolve dynamic uids and refused such connections.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl-bus.h"

/* What GetApp returned; strings are borrowed from the reply message. */
typedef struct AppInfo {
        const char *app_id;
        const char *app_address;
        const char *http_socket;
        const char *grpc_socket;
        const char *exec;
        const char *api_token; /* secret; NULL when the daemon did not send one */
        uint16_t http_port;
        uint16_t grpc_port;
} AppInfo;

static int bad_reply(const char *what, int r) {
        if (r == -ENOMEM)
                return ctl_log_oom();
        ctl_log("%s failed: unexpected reply from mooringd", what);
        return -EBADMSG;
}

/* Read GetApp's a{sv}; unknown keys are skipped so the daemon may add some. */
static int read_app_info(sd_bus_message *reply, const char *what, AppInfo *ret) {
        AppInfo info = {};
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return bad_reply(what, r);
        for (;;) {
                const char *key;

                r = sd_bus_message_enter_container(reply, 'e', "sv");
                if (r < 0)
                        return bad_reply(what, r);
                if (r == 0)
                        break;
                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return bad_reply(what, r);

                if (streq(key, "AppId"))
                        r = sd_bus_message_read(reply, "v", "s", &info.app_id);
                else if (streq(key, "AppAddress"))
                        r = sd_bus_message_read(reply, "v", "s", &info.app_address);
                else if (streq(key, "HttpSocket"))
                        r = sd_bus_message_read(reply, "v", "s", &info.http_socket);
                else if (streq(key, "HttpPort"))
                        r = sd_bus_message_read(reply, "v", "q", &info.http_port);
                else if (streq(key, "GrpcSocket"))
                        r = sd_bus_message_read(reply, "v", "s", &info.grpc_socket);
                else if (streq(key, "GrpcPort"))
                        r = sd_bus_message_read(reply, "v", "q", &info.grpc_port);
                else if (streq(key, "Exec"))
                        r = sd_bus_message_read(reply, "v", "s", &info.exec);
                else if (streq(key, "ApiToken"))
                        r = sd_bus_message_read(reply, "v", "s", &info.api_token);
                else
                        r = sd_bus_message_skip(reply, "v");
                if (r < 0)
                        return bad_reply(what, r);

                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return bad_reply(what, r);
        }
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return bad_reply(what, r);

        *ret = info;
        return 0;
}

/*
 * Split "http://HOST:PORT[/...]" (HOST may be a bracketed IPv6 literal,
 * returned without brackets) into host and port. Returns 0, or -EINVAL when
 * the address has another scheme (unix:...) or no explicit port.
 */
static int parse_http_address(const char *address, char *host, size_t host_size, char *port, size_t port_size) {
        const char *p, *h, *q;
        size_t host_len, port_len;
        unsigned long value;

        if (!address || strncasecmp(address, "http://", 7) != 0)
                return -EINVAL;
        p = address + 7;

        if (*p == '[') {
                const char *end = strchr(p, ']');

                if (!end)
                        return -EINVAL;
                h = p + 1;
                host_len = (size_t) (end - h);
                q = end + 1;
        } else {
                h = p;
                host_len = strcspn(p, ":/?#@");
                q = p + host_len;
        }
        if (host_len == 0 || host_len >= host_size || *q != ':')
                return -EINVAL;
        q++;

        port_len = strspn(q, "0123456789");
        if (port_len == 0 || port_len >= port_size || port_len > 5 || !strchr("/?#", q[port_len]))
                return -EINVAL;
        value = strtoul(q, NULL, 10);
        if (value == 0 || value > 65535)
                return -EINVAL;

        memcpy(host, h, host_len);
        host[host_len] = '\0';
        snprintf(port, port_size, "%lu", value);
        return 0;
}

/* setenv(name, value) when value is non-empty, unsetenv(name) otherwise. */
static int set_or_unset(const char *name, const char *value) {
        int r;

        if (value && value[0])
                r = setenv(name, value, 1);
        else
                r = unsetenv(name);
        if (r < 0)
                return ctl_log_errno(negative_errno(), "cannot set $%s: %m", name);
        return 0;
}

static int setup_environment(const char *app_id, const AppInfo *info) {
        char port[8] = "", endpoint[32] = "", host[256], app_port[8];
        int r;

        if (info->http_port != 0) {
                snprintf(port, sizeof(port), "%u", (unsigned) info->http_port);
                snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%u", (unsigned) info->http_port);
        }

        r = set_or_unset("APP_ID", app_id);
        if (r < 0)
                return r;
        r = set_or_unset("DAPR_HTTP_PORT", port);
        if (r < 0)
                return r;
        r = set_or_unset("DAPR_HTTP_ENDPOINT", endpoint);
        if (r < 0)
                return r;
        r = set_or_unset("MOORING_HTTP_SOCKET", info->http_socket);
        if (r < 0)
                return r;
        /* the gRPC API: DAPR_GRPC_PORT is what Dapr's SDKs read (DAPR_GRPC_ENDPOINT first, where they know it) */
        char gport[8] = "", gendpoint[32] = "";
        if (info->grpc_port != 0) {
                snprintf(gport, sizeof(gport), "%u", (unsigned) info->grpc_port);
                snprintf(gendpoint, sizeof(gendpoint), "http://127.0.0.1:%u", (unsigned) info->grpc_port);
        }
        r = set_or_unset("DAPR_GRPC_PORT", gport);
        if (r >= 0)
                r = set_or_unset("DAPR_GRPC_ENDPOINT", gendpoint);
        if (r >= 0)
                r = set_or_unset("MOORING_GRPC_SOCKET", info->grpc_socket);
        if (r < 0)
                return r;
        /* the environment is where the token is meant to go: the app reads it there */
        r = set_or_unset("DAPR_API_TOKEN", info->api_token);
        if (r < 0)
                return r;

        if (parse_http_address(info->app_address, host, sizeof(host), app_port, sizeof(app_port)) >= 0) {
                r = set_or_unset("APP_PORT", app_port);
                if (r < 0)
                        return r;
                r = set_or_unset("APP_CHANNEL_ADDRESS", host);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Replace the process with cmd (argv, NULL-terminated) or with "exec <exec_line>" run by /bin/sh. */
static int exec_app(const char *app_id, char **cmd, const char *exec_line) {
        _cleanup_free_ char *script = NULL;
        size_t n;

        fflush(NULL);

        if (cmd && cmd[0]) {
                execvp(cmd[0], cmd);
                return ctl_log_errno(negative_errno(), "cannot execute '%s': %m", cmd[0]);
        }

        if (!exec_line || !exec_line[0]) {
                ctl_log("app '%s' has no Exec= line", app_id);
                return -ENOEXEC;
        }

        /* "exec" so the app, not the shell, becomes the unit's main process */
        n = strlen(exec_line);
        script = malloc(n + sizeof("exec "));
        if (!script)
                return ctl_log_oom();
        memcpy(script, "exec ", 5);
        memcpy(script + 5, exec_line, n + 1);

        execl("/bin/sh", "sh", "-c", script, (char *) NULL);
        return ctl_log_errno(negative_errno(), "cannot execute /bin/sh: %m");
}

static const char *json_str_or_null(json_t *o, const char *key) {
        const char *s = json_string_value(json_object_get(o, key));
        return s && *s ? s : NULL;
}

/*
 * The app's wiring from GET /mooring/v1/self on the shared socket, when this process runs in
 * the app's own unit. Returns 1 with *ret filled (strings borrowed from *ret_json), 0 when not
 * applicable or it failed (D-Bus is asked then).
 */
/*
 * Whether /proc/self/cgroup puts us in unit (a component of a path of the systemd hierarchy,
 * unified or named). Not sd_pid_get_unit(): it also reads /proc/1/cgroup, which the unit's
 * ProtectProc=invisible hides from a DynamicUser= process.
 */
static bool in_unit(const char *unit) {
        FILE *f = fopen("/proc/self/cgroup", "re");
        char line[4096];
        size_t n = strlen(unit);
        bool found = false;

        if (!f)
                return false;
        while (!found && fgets(line, sizeof line, f)) {
                char *p = strchr(line, ':'), *path;
                if (!p || !(path = strchr(p + 1, ':')))
                        continue;
                *path++ = '\0';
                if (!streq(p + 1, "") && !streq(p + 1, "name=systemd"))
                        continue;
                path[strcspn(path, "\n")] = '\0';
                for (char *c = strstr(path, unit); c && !found; c = strstr(c + 1, unit))
                        found = c > path && c[-1] == '/' && (c[n] == '\0' || c[n] == '/');
        }
        fclose(f);
        return found;
}

static int self_from_socket(const CtlOptions *o, const char *app_id, json_t **ret_json, AppInfo *ret) {
        _cleanup_free_ char *want = NULL, *path = NULL;
        CtlOptions so = *o;
        json_t *j = NULL;

        if (asprintf(&want, "mooring-app@%s.service", app_id) < 0 || !in_unit(want))
                return 0;
        const char *env = getenv("MOORING_SOCKET");
        path = env && *env ? strdup(env) : ctl_default_socket_path(o);
        if (!path)
                return 0;
        so.socket_path = path;
        if (ctl_http_get_json(&so, "/mooring/v1/self", &j) < 0)
                return 0;
        const char *id = json_str_or_null(j, "appId");
        if (!id || !streq(id, app_id)) {
                json_decref(j);
                return 0;
        }
        *ret = (AppInfo){
                .app_id = id,
                .app_address = json_str_or_null(j, "appAddress"),
                .http_socket = json_str_or_null(j, "httpSocket"),
                .grpc_socket = json_str_or_null(j, "grpcSocket"),
                .exec = json_str_or_null(j, "exec"),
                .api_token = json_str_or_null(j, "apiToken"),
                .http_port = (uint16_t) json_integer_value(json_object_get(j, "httpPort")),
                .grpc_port = (uint16_t) json_integer_value(json_object_get(j, "grpcPort")),
        };
        *ret_json = j;
        return 1;
}

/*
 * app-exec APP_ID [-- CMD...]: look the app up, set the environment, exec.
 * Only returns on failure, with a reported negative errno (-ENOENT: no such
 * app).
 */
int ctl_app_exec(const CtlOptions *o, const char *app_id, char **cmd) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(json_decrefp) json_t *self = NULL;
        char what[128];
        AppInfo info = {};
        int r;

        snprintf(what, sizeof(what), "looking up app '%s'", app_id);

        if (self_from_socket(o, app_id, &self, &info) <= 0) {
                r = ctl_bus_open(o, &bus);
                if (r < 0)
                        return r;

                r = sd_bus_call_method(bus, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "GetApp",
                                       &error, &reply, "s", app_id);
                if (r < 0) {
                        if (sd_bus_error_has_name(&error, CTL_BUS_ERROR_NO_SUCH_APP)) {
                                ctl_log("no app '%s' is registered", app_id);
                                return -ENOENT;
                        }
                        return ctl_bus_call_failed(o, r, &error, what);
                }

                r = read_app_info(reply, what, &info);
                if (r < 0)
                        return r;

                /* the app must not inherit our bus connection */
                bus = sd_bus_flush_close_unref(bus);
        }

        /* mooringd hands the app's socket to the uid of the app's own unit when it has no User=
         * (see GetApp); with User= the socket is that user's. A unit running as anyone else
         * would start an app that cannot reach its runtime: say so now, not at its first call. */
        if (info.http_socket && info.http_socket[0] && access(info.http_socket, W_OK) < 0) {
                r = negative_errno();
                return ctl_log_errno(r, "app '%s' cannot use its socket %s as uid %u: %m; if the app file has "
                                     "User=, give the unit the same User= (systemctl edit mooring-app@%s)",
                                     app_id, info.http_socket, (unsigned) geteuid(), app_id);
        }

        r = setup_environment(app_id, &info);
        if (r < 0)
                return r;

        return exec_app(app_id, cmd, info.exec);
}
