/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AppConfig: one registered app as written in apps.d/<app-id>.conf or given
 * to RegisterApp over D-Bus. Immutable once built; a reload builds a new one
 * and compares with app_config_equal().
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "conferr.h"

#define APP_CONFIG_DEFAULT_PROBE_INTERVAL (5ULL * 1000000)
#define APP_CONFIG_DEFAULT_INVOKE_TIMEOUT (60ULL * 1000000)
#define APP_CONFIG_MAX_CONCURRENCY_MAX 65535U

typedef enum AppAddressKind {
        APP_ADDRESS_NONE,   /* the app takes no calls (publish/read only) */
        APP_ADDRESS_HTTP,   /* http://host:port */
        APP_ADDRESS_UNIX,   /* unix:/path */
        _APP_ADDRESS_KIND_MAX,
} AppAddressKind;

typedef struct AppConfig {
        char *id;
        char *app_address;     /* as written, NULL for none */
        AppAddressKind address_kind;
        char *address_host;    /* HTTP: host; UNIX: socket path */
        uint16_t address_port; /* HTTP only */
        uint16_t http_port;    /* 0: no TCP listener */
        uint16_t grpc_port;    /* GrpcPort=: the gRPC API on loopback (the app's DAPR_GRPC_PORT); 0: none */
        bool app_protocol_grpc; /* AppProtocol=grpc: mooringd calls the app through Dapr's AppCallback service */
        char *api_token;       /* secret: wiped on free */
        char *exec;
        char *user;            /* who may connect to the app's socket; NULL: the app's own unit (see manager.c) */
        bool allow_any_user;   /* AllowAnyUser=yes: socket 0666, every local user may act as the app (development) */
        char *health_check_path; /* NULL: probe "/" and accept any HTTP answer */
        uint64_t health_probe_interval_usec;
        unsigned max_concurrency;   /* calls to this app at once; 0: unlimited (Dapr's app-max-concurrency) */
        uint64_t invoke_timeout_usec; /* bound on one call to this app, queueing included; 0: none */
        char *configuration;        /* the app's own Dapr Configuration file; NULL: <config dir>/config.yaml */
        char **resources_paths;     /* ResourcesPath=: directories of components for this app only; NULL: none */
        char *file;            /* source file, NULL when registered over D-Bus */
} AppConfig;

/* An app id as documented (mooringd.conf(5), CONTRACT.md): [a-z0-9][a-z0-9-_.]{0,62}. */
bool app_id_is_valid(const char *id);

AppConfig *app_config_free(AppConfig *c);
DEFINE_CLEANUP_FUNC(AppConfig, app_config_free);

AppConfig *app_config_new(const char *id);
/* Validates and stores one key. field is the INI key name. */
int app_config_set(AppConfig *c, const char *key, const char *value, char **reterr_msg);
/* Parses an app file's text. id must already be valid. */
int app_config_parse(const char *id, const char *file, const char *text, size_t len, AppConfig **ret,
                     ConfError *err);
/* Derives the id from "<dir>/<id>.conf" and parses the file. */
int app_config_load(const char *path, AppConfig **ret, ConfError *err);
bool app_config_equal(const AppConfig *a, const AppConfig *b);
/* Only the listener-relevant parts differ? (port) */
bool app_config_same_listeners(const AppConfig *a, const AppConfig *b);
