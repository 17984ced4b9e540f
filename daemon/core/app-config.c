/* SPDX-License-Identifier: Apache-2.0 */
/* See app-config.h. */
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/fileio.h"
#include "../util/ini.h"
#include "../util/strv.h"
#include "app-config.h"

AppConfig *app_config_free(AppConfig *c) {
        if (!c)
                return NULL;
        free(c->id);
        free(c->app_address);
        free(c->address_host);
        erase_and_free(c->api_token);
        free(c->exec);
        free(c->user);
        free(c->health_check_path);
        free(c->configuration);
        strv_free(c->resources_paths);
        free(c->file);
        free(c);
        return NULL;
}

AppConfig *app_config_new(const char *id) {
        AppConfig *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->id = strdup(id);
        if (!c->id)
                return app_config_free(c);
        c->health_probe_interval_usec = APP_CONFIG_DEFAULT_PROBE_INTERVAL;
        c->invoke_timeout_usec = APP_CONFIG_DEFAULT_INVOKE_TIMEOUT;
        return c;
}

static int err(char **reterr_msg, const char *m) {
        *reterr_msg = strdup(m);
        return -EINVAL;
}

static int replace(char **field, const char *value) {
        char *c = strdup(value);
        if (!c)
                return -ENOMEM;
        free(*field);
        *field = c;
        return 0;
}

/* http://host:port[/], unix:/abs/path, unix:///abs/path, or a bare port (loopback). */
static int parse_address(AppConfig *c, const char *v, char **reterr_msg) {
        const char *p;
        uint16_t port;
        _cleanup_free_ char *host = NULL;

        if (!*v) {
                free(c->app_address);
                free(c->address_host);
                c->app_address = c->address_host = NULL;
                c->address_kind = APP_ADDRESS_NONE;
                return 0;
        }
        if ((p = startswith_ptr(v, "unix:"))) {
                if (startswith(p, "//"))
                        p += 2;
                if (*p != '/')
                        return err(reterr_msg, "unix: address needs an absolute path");
                if (strlen(p) >= 108)
                        return err(reterr_msg, "unix socket path longer than 107 bytes");
                host = strdup(p);
                if (!host)
                        return -ENOMEM;
                c->address_kind = APP_ADDRESS_UNIX;
                c->address_port = 0;
        } else if (parse_port(v, &port) >= 0) {
                host = strdup("127.0.0.1");
                if (!host)
                        return -ENOMEM;
                c->address_kind = APP_ADDRESS_HTTP;
                c->address_port = port;
        } else if ((p = startswith_ptr(v, "http://"))) {
                const char *colon, *end;
                if (*p == '[') { /* [::1]:3000 */
                        end = strchr(p, ']');
                        if (!end || end == p + 1 || end[1] != ':')
                                return err(reterr_msg, "expected http://[ipv6]:port");
                        host = strndup(p + 1, (size_t) (end - p - 1));
                        colon = end + 1;
                } else {
                        colon = strchr(p, ':');
                        if (!colon || colon == p)
                                return err(reterr_msg, "expected http://host:port");
                        host = strndup(p, (size_t) (colon - p));
                }
                if (!host)
                        return -ENOMEM;
                _cleanup_free_ char *ps = strdup(colon + 1);
                if (!ps)
                        return -ENOMEM;
                size_t n = strlen(ps);
                if (n > 0 && ps[n - 1] == '/')
                        ps[n - 1] = 0;
                if (parse_port(ps, &port) < 0)
                        return err(reterr_msg, "invalid port in http:// address");
                for (const char *h = host; *h; h++)
                        if (strchr("/?#@ ", *h))
                                return err(reterr_msg, "invalid host in http:// address");
                c->address_kind = APP_ADDRESS_HTTP;
                c->address_port = port;
        } else
                return err(reterr_msg, "expected http://host:port, unix:/path or a port number");

        int r = replace(&c->app_address, v);
        if (r < 0)
                return r;
        free(c->address_host);
        c->address_host = TAKE_PTR(host);
        return 0;
}

int app_config_set(AppConfig *c, const char *key, const char *value, char **reterr_msg) {
        if (streq(key, "AppAddress"))
                return parse_address(c, value, reterr_msg);
        if (streq(key, "HttpPort")) {
                if (!*value) {
                        c->http_port = 0;
                        return 0;
                }
                if (parse_port(value, &c->http_port) < 0)
                        return err(reterr_msg, "expected a port number 1-65535");
                return 0;
        }
        if (streq(key, "AppProtocol")) {
                if (!*value || streq(value, "http"))
                        c->app_protocol_grpc = false;
                else if (streq(value, "grpc"))
                        c->app_protocol_grpc = true;
                else
                        return err(reterr_msg, "expected http or grpc");
                return 0;
        }
        if (streq(key, "GrpcPort")) {
                if (!*value) {
                        c->grpc_port = 0;
                        return 0;
                }
                if (parse_port(value, &c->grpc_port) < 0)
                        return err(reterr_msg, "expected a port number 1-65535");
                return 0;
        }
        if (streq(key, "ApiToken")) {
                if (strlen(value) > 1024)
                        return err(reterr_msg, "token longer than 1024 bytes");
                for (const char *p = value; *p; p++)
                        if ((unsigned char) *p < 0x21 || (unsigned char) *p > 0x7e)
                                return err(reterr_msg, "token must be printable ASCII without spaces");
                char *t = *value ? strdup(value) : NULL;
                if (*value && !t)
                        return -ENOMEM;
                erase_and_free(c->api_token);
                c->api_token = t;
                return 0;
        }
        if (streq(key, "Exec"))
                return replace(&c->exec, value);
        if (streq(key, "User")) {
                /* A user name as useradd accepts it, or a numeric uid. */
                if (!*value || strlen(value) > 32 || value[0] == '-' ||
                    strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
                            strlen(value))
                        return err(reterr_msg, "expected a user name or uid");
                return replace(&c->user, value);
        }
        if (streq(key, "AllowAnyUser")) {
                int b = parse_boolean(value);
                if (b < 0)
                        return err(reterr_msg, "expected a boolean");
                c->allow_any_user = b;
                return 0;
        }
        if (streq(key, "HealthCheckPath")) {
                if (*value && *value != '/')
                        return err(reterr_msg, "must start with '/'");
                for (const char *p = value; *p; p++)
                        if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f)
                                return err(reterr_msg, "must be a URL path without spaces");
                if (!*value) {
                        free(c->health_check_path);
                        c->health_check_path = NULL;
                        return 0;
                }
                return replace(&c->health_check_path, value);
        }
        if (streq(key, "HealthProbeInterval")) {
                uint64_t u;
                if (parse_duration_usec(value, &u) < 0 || u < 100 * 1000 || u > 3600ULL * 1000000)
                        return err(reterr_msg, "expected a duration between 100ms and 1h, such as 5s");
                c->health_probe_interval_usec = u;
                return 0;
        }
        if (streq(key, "MaxConcurrency")) {
                char *end;
                errno = 0;
                unsigned long long u = strtoull(value, &end, 10);
                if (!*value || !isdigit((unsigned char) *value) || *end || errno || u > APP_CONFIG_MAX_CONCURRENCY_MAX)
                        return err(reterr_msg, "expected a number of calls between 0 (unlimited) and 65535");
                c->max_concurrency = (unsigned) u;
                return 0;
        }
        if (streq(key, "InvokeTimeoutSec")) {
                uint64_t u;
                if (streq(value, "infinity"))
                        u = 0;
                else if (parse_duration_usec(value, &u) < 0 || u > 24ULL * 3600 * 1000000)
                        return err(reterr_msg, "expected a duration up to 24h such as 30s, or 0 for none");
                c->invoke_timeout_usec = u;
                return 0;
        }
        if (streq(key, "ResourcesPath")) {
                /* Dapr's --resources-path: component files for this app alone (mooringctl run) */
                if (*value != '/')
                        return err(reterr_msg, "expected an absolute path to a directory of component files");
                if (strv_contains(c->resources_paths, value))
                        return 0;
                return strv_extend(&c->resources_paths, value);
        }
        if (streq(key, "Configuration")) {
                if (*value != '/')
                        return err(reterr_msg, "expected an absolute path to a Dapr Configuration file");
                return replace(&c->configuration, value);
        }
        return err(reterr_msg, "unknown key");
}

typedef struct {
        AppConfig *c;
        char field[64]; /* last key, for the error (the parser's buffer is gone by then) */
        ConfError *err;
        const char *file;
} ParseState;

static int assign(const char *section, const char *key, const char *value, unsigned line, void *ud,
                  char **reterr_msg) {
        ParseState *p = ud;
        p->field[0] = 0;
        if (!streq(section, "App"))
                return err(reterr_msg, "unknown section, expected [App]");
        snprintf(p->field, sizeof p->field, "%s", key);
        return app_config_set(p->c, key, value, reterr_msg);
}

bool app_id_is_valid(const char *id) {
        size_t n = 0;

        if (!id)
                return false;
        for (; id[n]; n++) {
                char ch = id[n];
                bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                          (n > 0 && (ch == '-' || ch == '_' || ch == '.'));
                if (!ok || n >= 63)
                        return false;
        }
        return n > 0;
}

/* Every error of the file goes into p->err: one reload shows them all. */
static int collect_error(unsigned line, const char *key, const char *msg, void *ud) {
        ParseState *p = ud;
        /* the field is the key only where the key itself was wrong, not for a misplaced line */
        int r = conf_error_append(p->err, p->file, line, key && p->field[0] ? p->field : NULL, "%s",
                                  msg ?: "invalid");
        return r == -ENOMEM ? r : 0;
}

int app_config_parse(const char *id, const char *file, const char *text, size_t len, AppConfig **ret,
                     ConfError *e) {
        _cleanup_(app_config_freep) AppConfig *c = NULL;
        int r;

        if (!app_id_is_valid(id))
                return conf_error_set(e, file, 0, NULL,
                                      "invalid app id '%s': use lower-case letters, digits, '.', '_' and '-', "
                                      "at most 63, starting with a letter or digit", id);
        c = app_config_new(id);
        if (!c)
                return -ENOMEM;
        if (file) {
                c->file = strdup(file);
                if (!c->file)
                        return -ENOMEM;
        }
        conf_error_done(e);
        ParseState p = { .c = c, .err = e, .file = file };
        r = ini_parse_all(text, len, assign, collect_error, &p);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

int app_config_load(const char *path, AppConfig **ret, ConfError *e) {
        _cleanup_free_ char *text = NULL, *copy = strdup(path);
        size_t len;
        int r;

        if (!copy)
                return -ENOMEM;
        char *base = basename(copy);
        if (!endswith(base, ".conf"))
                return conf_error_set(e, path, 0, NULL, "app files must end in .conf");
        base[strlen(base) - 5] = 0;

        r = read_full_file(path, SETTINGS_FILE_MAX, &text, &len);
        if (r < 0) {
                conf_error_set(e, path, 0, NULL, "cannot read: %s", strerror(-r));
                return r;
        }
        return app_config_parse(base, path, text, len, ret, e);
}

bool app_config_same_listeners(const AppConfig *a, const AppConfig *b) {
        return streq(a->id, b->id) && a->http_port == b->http_port && a->grpc_port == b->grpc_port &&
               streq_ptr(a->user, b->user) &&
               a->allow_any_user == b->allow_any_user;
}

bool app_config_equal(const AppConfig *a, const AppConfig *b) {
        return app_config_same_listeners(a, b) && streq_ptr(a->app_address, b->app_address) &&
               streq_ptr(a->api_token, b->api_token) && streq_ptr(a->exec, b->exec) &&
               streq_ptr(a->health_check_path, b->health_check_path) &&
               a->health_probe_interval_usec == b->health_probe_interval_usec &&
               a->max_concurrency == b->max_concurrency && a->invoke_timeout_usec == b->invoke_timeout_usec &&
               a->app_protocol_grpc == b->app_protocol_grpc &&
               streq_ptr(a->configuration, b->configuration) && strv_equal(a->resources_paths, b->resources_paths) &&
               streq_ptr(a->file, b->file);
}
