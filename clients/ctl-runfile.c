/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's Multi-App Run template (dapr.yaml, version 1) for "mooringctl run
 * -f": "common" holds what every app shares, "apps" one entry per app.
 * Relative paths are taken from the template's directory, as the Dapr CLI
 * takes them. Fields mooring has no use for are warned about and skipped,
 * never fatal; a field with a wrong type is an error with file:line.
 * An app without resourcesPath uses <appDirPath>/.dapr/resources when it
 * exists, as the Dapr CLI does; likewise .dapr/config.yaml.
 */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "ctl-run.h"

#define RUNFILE_MAX ((size_t) 1 << 20)

typedef struct Ctx {
        const char *file;
        char *base;               /* the template's directory */
        yaml_document_t doc;
        unsigned n_errors;
} Ctx;

static void warn(Ctx *c, const yaml_node_t *n, const char *fmt, ...) _printf_(3, 4);
static int fail(Ctx *c, const yaml_node_t *n, const char *fmt, ...) _printf_(3, 4);

static void warn(Ctx *c, const yaml_node_t *n, const char *fmt, ...) {
        va_list ap;
        fprintf(stderr, CTL_PROGRAM ": %s:%lu: warning: ", c->file, (unsigned long) n->start_mark.line + 1);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static int fail(Ctx *c, const yaml_node_t *n, const char *fmt, ...) {
        va_list ap;
        fprintf(stderr, CTL_PROGRAM ": %s:%lu: ", c->file, n ? (unsigned long) n->start_mark.line + 1 : 0UL);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        c->n_errors++;
        return -EINVAL;
}

static const char *scalar(const yaml_node_t *n) {
        return n && n->type == YAML_SCALAR_NODE ? (const char *) n->data.scalar.value : NULL;
}

static char *path_from(Ctx *c, const char *p) {
        char *s = NULL;
        if (p[0] == '/')
                return strdup(p);
        if (p[0] == '~' && p[1] == '/' && getenv("HOME"))
                return asprintf(&s, "%s/%s", getenv("HOME"), p + 2) < 0 ? NULL : s;
        return asprintf(&s, "%s/%s", c->base, p) < 0 ? NULL : s;
}

static bool is_dir(const char *p) {
        struct stat st;
        return stat(p, &st) >= 0 && S_ISDIR(st.st_mode);
}

static int strv_add(char ***l, char *s) {
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

static bool parse_port(const char *s, uint16_t *ret) {
        char *end;
        unsigned long v;
        if (!s || !s[0] || strspn(s, "0123456789") != strlen(s))
                return false;
        v = strtoul(s, &end, 10);
        if (*end || v < 1 || v > 65535)
                return false;
        *ret = (uint16_t) v;
        return true;
}

/* One resources directory (resourcesPath, or an item of resourcesPaths): resolved, must exist. */
static int add_resources(Ctx *c, RunApp *a, const yaml_node_t *n, const char *p) {
        _cleanup_free_ char *full = path_from(c, p);
        char *real;
        if (!full)
                return -ENOMEM;
        real = realpath(full, NULL);
        if (!real || !is_dir(real)) {
                free(real);
                return fail(c, n, "resources directory '%s' does not exist", full);
        }
        for (char **q = a->resources; q && *q; q++)
                if (streq(*q, real)) {
                        free(real);
                        return 0;
                }
        return strv_add(&a->resources, real);
}

/* The fields an app (or "common") may set. common: what is filled is the shared part. */
static int app_field(Ctx *c, RunApp *a, const char *key, yaml_node_t *v, bool common) {
        const char *s = scalar(v);

        if (streq(key, "appID") && !common) {
                if (!s || !ctl_app_id_is_valid(s))
                        return fail(c, v, "invalid appID '%s': lower-case letters, digits, '-', '_' and '.'",
                                    strempty(s));
                free(a->app_id);
                return (a->app_id = strdup(s)) ? 0 : -ENOMEM;
        }
        if (streq(key, "appDirPath") && !common) {
                if (!s)
                        return fail(c, v, "%s must be a path", key);
                free(a->dir);
                a->dir = path_from(c, s);
                if (!a->dir)
                        return -ENOMEM;
                if (!is_dir(a->dir))
                        return fail(c, v, "appDirPath '%s' is no directory", a->dir);
                return 0;
        }
        if (streq(key, "appPort") || streq(key, "daprHTTPPort") || streq(key, "daprGRPCPort")) {
                uint16_t *dst = streq(key, "appPort") ? &a->app_port : streq(key, "daprHTTPPort") ? &a->http_port
                                                                                                 : &a->grpc_port;
                if (!parse_port(s, dst))
                        return fail(c, v, "%s must be a port number 1-65535", key);
                return 0;
        }
        if (streq(key, "appProtocol")) {
                if (!s)
                        return fail(c, v, "%s must be a string", key);
                free(a->app_protocol);
                return (a->app_protocol = strdup(s)) ? 0 : -ENOMEM;
        }
        if (streq(key, "appHealthCheckPath")) {
                if (!s || s[0] != '/')
                        return fail(c, v, "%s must be a path such as /healthz", key);
                free(a->health_path);
                return (a->health_path = strdup(s)) ? 0 : -ENOMEM;
        }
        if (streq(key, "appMaxConcurrency")) {
                if (!s || strspn(s, "0123456789") != strlen(s) || !s[0])
                        return fail(c, v, "%s must be a number", key);
                free(a->max_concurrency);
                return (a->max_concurrency = strdup(s)) ? 0 : -ENOMEM;
        }
        if (streq(key, "configFilePath")) {
                _cleanup_free_ char *full = NULL;
                if (!s)
                        return fail(c, v, "%s must be a path", key);
                full = path_from(c, s);
                if (!full)
                        return -ENOMEM;
                free(a->config);
                a->config = realpath(full, NULL);
                /* as the Dapr CLI: a missing configuration file is no error */
                if (!a->config)
                        warn(c, v, "configFilePath '%s' does not exist; ignored", full);
                return 0;
        }
        if (streq(key, "resourcesPath") || streq(key, "resourcesPaths")) {
                if (s) {
                        /* a comma-separated list is allowed too */
                        _cleanup_free_ char *copy = strdup(s);
                        char *save = NULL;
                        if (!copy)
                                return -ENOMEM;
                        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                                int r = add_resources(c, a, v, t);
                                if (r == -ENOMEM)
                                        return r;
                        }
                        return 0;
                }
                if (v->type != YAML_SEQUENCE_NODE)
                        return fail(c, v, "%s must be a path or a list of paths", key);
                for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
                        const char *p = scalar(yaml_document_get_node(&c->doc, *i));
                        if (!p)
                                return fail(c, v, "%s must be a list of paths", key);
                        if (add_resources(c, a, v, p) == -ENOMEM)
                                return -ENOMEM;
                }
                return 0;
        }
        if (streq(key, "env")) {
                if (v->type != YAML_MAPPING_NODE)
                        return fail(c, v, "%s must be a mapping of NAME: value", key);
                for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
                        const char *k = scalar(yaml_document_get_node(&c->doc, p->key));
                        const char *val = scalar(yaml_document_get_node(&c->doc, p->value));
                        char *kv = NULL;
                        if (!k || !val || !k[0] || strchr(k, '='))
                                return fail(c, v, "env: '%s' is no NAME: value pair", strempty(k));
                        if (asprintf(&kv, "%s=%s", k, val) < 0 || strv_add(&a->env, kv) < 0)
                                return -ENOMEM;
                }
                return 0;
        }
        if (streq(key, "command") && !common) {
                if (s) {
                        /* a single string: run through the shell, as a line of a script */
                        char **cmd = calloc(4, sizeof(char *));
                        if (!cmd || !(cmd[0] = strdup("/bin/sh")) || !(cmd[1] = strdup("-c")) || !(cmd[2] = strdup(s))) {
                                if (cmd)
                                        for (int i = 0; i < 3; i++)
                                                free(cmd[i]);
                                free(cmd);
                                return -ENOMEM;
                        }
                        a->cmd = cmd;
                        return 0;
                }
                if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.start == v->data.sequence.items.top)
                        return fail(c, v, "%s must be a non-empty list such as [\"npm\", \"start\"]", key);
                for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
                        const char *arg = scalar(yaml_document_get_node(&c->doc, *i));
                        if (!arg)
                                return fail(c, v, "%s must be a list of strings", key);
                        if (strv_add(&a->cmd, strdup(arg)) < 0)
                                return -ENOMEM;
                }
                return 0;
        }
        /* Dapr's other fields: what they set has no meaning for mooring, or is not supported yet */
        static const char *const known[] = {
                "appChannelAddress", "appHealthProbeInterval", "appHealthProbeTimeout", "appHealthThreshold",
                "appSSL", "enableAppHealthCheck", "enableApiLogging", "enableProfiling", "logLevel",
                "metricsPort", "profilePort", "placementHostAddress", "schedulerHostAddress",
                "daprInternalGRPCPort", "daprHTTPMaxRequestSize", "daprHTTPReadBufferSize", "unixDomainSocket",
                "apiListenAddresses", "runtimePath", "daprdInstallPath", "appLogDestination",
                "daprdLogDestination", "containerImage", "containerImagePullPolicy", "createService",
                "daprPath", NULL
        };
        for (const char *const *k = known; *k; k++)
                if (streq(*k, key)) {
                        warn(c, v, "'%s' is not supported by mooring; ignored", key);
                        return 0;
                }
        warn(c, v, "unknown field '%s'; ignored", key);
        return 0;
}

static int copy_strv(char **from, char ***to) {
        for (char **p = from; p && *p; p++)
                if (strv_add(to, strdup(*p)) < 0)
                        return -ENOMEM;
        return 0;
}

/* The app gets common's values where it has none of its own; env: common's first, then its own. */
static int apply_common(RunApp *a, const RunApp *common) {
        char **own_env = a->env;
        a->env = NULL;
        if (copy_strv(common->env, &a->env) < 0 || copy_strv(own_env, &a->env) < 0) {
                for (char **p = own_env; p && *p; p++)
                        free(*p);
                free(own_env);
                return -ENOMEM;
        }
        for (char **p = own_env; p && *p; p++)
                free(*p);
        free(own_env);
        if (!a->resources && copy_strv(common->resources, &a->resources) < 0)
                return -ENOMEM;
#define INHERIT_STR(f) if (!a->f && common->f && !(a->f = strdup(common->f))) return -ENOMEM
        INHERIT_STR(app_protocol);
        INHERIT_STR(config);
        INHERIT_STR(health_path);
        INHERIT_STR(max_concurrency);
#undef INHERIT_STR
        if (!a->app_port)
                a->app_port = common->app_port;
        return 0;
}

/* Dapr's convention: <appDirPath>/.dapr/resources and .dapr/config.yaml when the template names none. */
static int apply_convention(RunApp *a) {
        char *p = NULL;
        if (!a->resources && a->dir) {
                if (asprintf(&p, "%s/.dapr/resources", a->dir) < 0)
                        return -ENOMEM;
                if (is_dir(p)) {
                        char *real = realpath(p, NULL);
                        free(p);
                        if (real && strv_add(&a->resources, real) < 0)
                                return -ENOMEM;
                } else
                        free(p);
        }
        if (!a->config && a->dir) {
                if (asprintf(&p, "%s/.dapr/config.yaml", a->dir) < 0)
                        return -ENOMEM;
                a->config = realpath(p, NULL);
                free(p);
        }
        return 0;
}

static int fields(Ctx *c, yaml_node_t *map, RunApp *a, bool common) {
        int r = 0;
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_document_get_node(&c->doc, p->key);
                const char *key = scalar(k);
                if (!key)
                        return fail(c, k, "%s", "keys must be names");
                int k2 = app_field(c, a, key, yaml_document_get_node(&c->doc, p->value), common);
                if (k2 == -ENOMEM)
                        return k2;
                if (k2 < 0)
                        r = k2;
        }
        return r;
}

int ctl_runfile_load(const char *path, RunApp **ret, size_t *ret_n) {
        _cleanup_free_ char *file = NULL, *text = NULL, *dircopy = NULL;
        yaml_parser_t parser;
        yaml_node_t *root, *apps_node = NULL, *common_node = NULL;
        RunApp common = {}, *apps = NULL;
        size_t n = 0, len = 0;
        struct stat st;
        FILE *f;
        int r = 0;
        Ctx c = {};

        if (stat(path, &st) >= 0 && S_ISDIR(st.st_mode)) {
                if (asprintf(&file, "%s/dapr.yaml", path) < 0)
                        return ctl_log_oom();
        } else if (!(file = strdup(path)))
                return ctl_log_oom();
        f = fopen(file, "re");
        if (!f)
                return ctl_log_errno(-errno, "cannot read %s: %m", file);
        text = malloc(RUNFILE_MAX + 1);
        if (text)
                len = fread(text, 1, RUNFILE_MAX + 1, f);
        fclose(f);
        if (!text)
                return ctl_log_oom();
        if (len > RUNFILE_MAX)
                return ctl_log_errno(-EFBIG, "%s is larger than 1 MiB", file);
        c.file = file;
        dircopy = realpath(file, NULL);
        if (!dircopy)
                return ctl_log_errno(-errno, "cannot resolve %s: %m", file);
        c.base = dirname(dircopy);

        if (!yaml_parser_initialize(&parser))
                return ctl_log_oom();
        yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);
        if (!yaml_parser_load(&parser, &c.doc)) {
                ctl_log("%s:%lu: %s", file, (unsigned long) parser.problem_mark.line + 1,
                        parser.problem ?: "invalid YAML");
                yaml_parser_delete(&parser);
                return -EINVAL;
        }
        yaml_parser_delete(&parser);

        root = yaml_document_get_root_node(&c.doc);
        if (!root || root->type != YAML_MAPPING_NODE) {
                r = fail(&c, root, "%s", "expected a Multi-App Run template: version, common, apps");
                goto out;
        }
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_document_get_node(&c.doc, p->key), *v = yaml_document_get_node(&c.doc, p->value);
                const char *key = scalar(k);
                if (!key)
                        continue;
                if (streq(key, "version")) {
                        if (!scalar(v) || !streq(scalar(v), "1"))
                                r = fail(&c, v, "version '%s' is not supported: expected 1", strempty(scalar(v)));
                } else if (streq(key, "common"))
                        common_node = v;
                else if (streq(key, "apps"))
                        apps_node = v;
                else
                        warn(&c, k, "unknown field '%s'; ignored", key);
        }
        if (common_node) {
                if (common_node->type != YAML_MAPPING_NODE)
                        r = fail(&c, common_node, "%s", "common must be a mapping");
                else if (fields(&c, common_node, &common, true) == -ENOMEM) {
                        r = ctl_log_oom();
                        goto out;
                }
        }
        if (!apps_node || apps_node->type != YAML_SEQUENCE_NODE ||
            apps_node->data.sequence.items.start == apps_node->data.sequence.items.top) {
                r = fail(&c, apps_node ?: root, "%s", "apps must be a non-empty list");
                goto out;
        }
        n = (size_t) (apps_node->data.sequence.items.top - apps_node->data.sequence.items.start);
        apps = calloc(n, sizeof(RunApp));
        if (!apps) {
                r = ctl_log_oom();
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                yaml_node_t *an = yaml_document_get_node(&c.doc, apps_node->data.sequence.items.start[i]);
                RunApp *a = &apps[i];
                if (!an || an->type != YAML_MAPPING_NODE) {
                        r = fail(&c, an ?: apps_node, "%s", "each app must be a mapping");
                        continue;
                }
                if (fields(&c, an, a, false) == -ENOMEM || apply_common(a, &common) < 0 || apply_convention(a) < 0) {
                        r = ctl_log_oom();
                        goto out;
                }
                if (!a->dir)
                        r = fail(&c, an, "%s", "appDirPath is required");
                if (!a->app_id && a->dir) {
                        /* as the Dapr CLI: the directory's name */
                        _cleanup_free_ char *copy = strdup(a->dir);
                        const char *b = copy ? basename(copy) : NULL;
                        if (!b || !ctl_app_id_is_valid(b))
                                r = fail(&c, an, "no appID, and the directory name '%s' is no valid app id",
                                         strempty(b));
                        else if (!(a->app_id = strdup(b))) {
                                r = ctl_log_oom();
                                goto out;
                        }
                }
                for (size_t j = 0; j < i; j++)
                        if (a->app_id && apps[j].app_id && streq(a->app_id, apps[j].app_id))
                                r = fail(&c, an, "appID '%s' is used twice", a->app_id);
        }
        if (c.n_errors > 0)
                r = -EINVAL;
out:
        yaml_document_delete(&c.doc);
        run_app_done(&common);
        if (r < 0) {
                for (size_t i = 0; apps && i < n; i++)
                        run_app_done(&apps[i]);
                free(apps);
                return r;
        }
        *ret = apps;
        *ret_n = n;
        return 0;
}
