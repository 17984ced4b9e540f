/* SPDX-License-Identifier: Apache-2.0 */
/* See settings.h. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/fileio.h"
#include "../util/ini.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "settings.h"

void settings_init(Settings *s) {
        *s = (Settings){
                .max_request_body = SETTINGS_DEFAULT_MAX_BODY,
                .drain_usec = SETTINGS_DEFAULT_DRAIN_USEC,
                .max_connections = SETTINGS_DEFAULT_MAX_CONNECTIONS,
                .max_connections_per_listener = SETTINGS_DEFAULT_MAX_CONNECTIONS_PER_LISTENER,
                .max_connections_per_user = SETTINGS_DEFAULT_MAX_CONNECTIONS_PER_USER,
                .header_timeout_usec = SETTINGS_DEFAULT_HEADER_TIMEOUT_USEC,
                .body_timeout_usec = SETTINGS_DEFAULT_BODY_TIMEOUT_USEC,
                .idle_timeout_usec = SETTINGS_DEFAULT_IDLE_TIMEOUT_USEC,
                .log_level = -1,
        };
}

static void settings_done_token(Settings *s) {
        if (s->dashboard_token)
                explicit_bzero(s->dashboard_token, strlen(s->dashboard_token));
        free(s->dashboard_token);
        s->dashboard_token = NULL;
}

void settings_done(Settings *s) {
        free(s->api_socket);
        s->api_socket = NULL;
        settings_done_token(s);
}

/* A TCP port for a loopback listener: 1..65535, or 0 for none. */
static int parse_listen_port(const char *v, uint16_t *ret) {
        char *e;
        unsigned long n;
        if (*v < '0' || *v > '9')
                return -EINVAL;
        errno = 0;
        n = strtoul(v, &e, 10);
        if (errno != 0 || *e != 0 || n > 65535)
                return -EINVAL;
        *ret = (uint16_t) n;
        return 0;
}

/* A positive count; 0 would lock every client out, which is never what was meant. */
static int parse_count(const char *v, unsigned *ret) {
        char *e;
        unsigned long n;

        if (*v < '0' || *v > '9')
                return -EINVAL;
        errno = 0;
        n = strtoul(v, &e, 10);
        if (errno != 0 || *e != 0 || n == 0 || n > 1000000000UL)
                return -EINVAL;
        *ret = (unsigned) n;
        return 0;
}

static const struct {
        const char *key;
        size_t offset;
} count_keys[] = {
        { "MaxConnections", offsetof(Settings, max_connections) },
        { "MaxConnectionsPerListener", offsetof(Settings, max_connections_per_listener) },
        { "MaxConnectionsPerUser", offsetof(Settings, max_connections_per_user) },
}, timeout_keys[] = {
        { "HeaderTimeoutSec", offsetof(Settings, header_timeout_usec) },
        { "BodyTimeoutSec", offsetof(Settings, body_timeout_usec) },
        { "IdleTimeoutSec", offsetof(Settings, idle_timeout_usec) },
};

typedef struct {
        Settings *s;
        char field[64]; /* last key, for the error (the parser's buffer is gone by then) */
        ConfError *err;
        const char *file;
} ParseState;

static int assign(const char *section, const char *key, const char *value, unsigned line, void *ud,
                  char **reterr_msg) {
        ParseState *p = ud;
        Settings *s = p->s;
        int r;

        p->field[0] = 0;
        if (!streq(section, "Daemon")) {
                *reterr_msg = strdup("unknown section, expected [Daemon]");
                return -EINVAL;
        }
        snprintf(p->field, sizeof p->field, "%s", key);
        if (streq(key, "ApiSocket")) {
                if (!*value || strlen(value) >= 100) {
                        *reterr_msg = strdup("socket path empty or longer than 99 bytes");
                        return -EINVAL;
                }
                char *c = strdup(value);
                if (!c)
                        return -ENOMEM;
                free(s->api_socket);
                s->api_socket = c;
        } else if (streq(key, "MaxRequestBodySize")) {
                r = parse_size(value, &s->max_request_body);
                if (r < 0 || s->max_request_body == 0) {
                        *reterr_msg = strdup("expected a size such as 4M, 512K or 1048576");
                        return -EINVAL;
                }
        } else if (streq(key, "DrainTimeoutSec")) {
                r = parse_duration_usec(value, &s->drain_usec);
                if (r < 0) {
                        *reterr_msg = strdup("expected a duration such as 10, 10s or 1m30s");
                        return -EINVAL;
                }
        } else if (streq(key, "MetricsPort") || streq(key, "DashboardPort")) {
                if (parse_listen_port(value, streq(key, "MetricsPort") ? &s->metrics_port : &s->dashboard_port) < 0) {
                        *reterr_msg = strdup("expected a TCP port from 1 to 65535, or 0 for none");
                        return -EINVAL;
                }
        } else if (streq(key, "DashboardToken")) {
                if (strlen(value) < 16 || strlen(value) > 256) {
                        *reterr_msg = strdup("expected a token of 16 to 256 characters");
                        return -EINVAL;
                }
                char *c = strdup(value);
                if (!c)
                        return -ENOMEM;
                settings_done_token(s);
                s->dashboard_token = c;
        } else if (streq(key, "LogLevel")) {
                r = log_level_from_string(value);
                if (r < 0) {
                        *reterr_msg = strdup("expected debug, info, notice, warning or err");
                        return -EINVAL;
                }
                s->log_level = r;
        } else {
                for (size_t i = 0; i < sizeof count_keys / sizeof count_keys[0]; i++)
                        if (streq(key, count_keys[i].key)) {
                                if (parse_count(value, (unsigned *) ((char *) s + count_keys[i].offset)) < 0) {
                                        *reterr_msg = strdup("expected a positive number");
                                        return -EINVAL;
                                }
                                return 0;
                        }
                for (size_t i = 0; i < sizeof timeout_keys / sizeof timeout_keys[0]; i++)
                        if (streq(key, timeout_keys[i].key)) {
                                uint64_t *u = (uint64_t *) ((char *) s + timeout_keys[i].offset);
                                r = parse_duration_usec(value, u);
                                if (r < 0 || *u < 1000000) {
                                        *reterr_msg = strdup("expected a duration of at least 1s, such as 10, 10s or 1m");
                                        return -EINVAL;
                                }
                                return 0;
                        }
                *reterr_msg = strdup("unknown key");
                return -EINVAL;
        }
        return 0;
}

/* Every error of the file goes into p->err: one reload shows them all. */
static int collect_error(unsigned line, const char *key, const char *msg, void *ud) {
        ParseState *p = ud;
        /* the field is the key only where the key itself was wrong, not for a misplaced line */
        int r = conf_error_append(p->err, p->file, line, key && p->field[0] ? p->field : NULL, "%s",
                                  msg ?: "invalid");
        return r == -ENOMEM ? r : 0;
}

int settings_parse(Settings *s, const char *file, const char *text, size_t len, ConfError *err) {
        Settings n;
        int r;

        settings_init(&n);
        conf_error_done(err);
        ParseState p = { .s = &n, .err = err, .file = file };
        r = ini_parse_all(text, len, assign, collect_error, &p);
        if (r < 0) {
                settings_done(&n);
                return r;
        }
        settings_done(s);
        *s = n;
        return 0;
}

int settings_load(Settings *s, const char *path, ConfError *err) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_full_file(path, SETTINGS_FILE_MAX, &text, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                conf_error_set(err, path, 0, NULL, "cannot read: %s", strerror(-r));
                return r;
        }
        return settings_parse(s, path, text, len, err);
}
