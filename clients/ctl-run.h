/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl run: Dapr's "dapr run" and "dapr run -f" on mooringd. One
 * RunApp per app to start; ctl-runfile.c fills them from a Multi-App Run
 * template, ctl-run.c from the command line, and runs them.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ctl.h"

typedef struct RunApp {
        char *app_id;
        char **cmd;                /* argv, NULL-terminated; NULL: no command (the app runs elsewhere) */
        char *dir;                 /* working directory, NULL: ours */
        char **env;                /* "KEY=VALUE" set for the app on top of ours, NULL-terminated or NULL */
        uint16_t app_port;         /* 0: the app takes no calls */
        char *app_protocol;        /* NULL: http */
        uint16_t http_port;        /* 0: a free one */
        uint16_t grpc_port;        /* 0: a free one, where mooringd has gRPC */
        char **resources;          /* absolute directories, NULL-terminated or NULL */
        char *config;              /* absolute path of a Dapr Configuration, or NULL */
        char *health_path;         /* or NULL */
        char *max_concurrency;     /* as given, validated by the daemon; or NULL */
} RunApp;

void run_app_done(RunApp *a);

/* ctl-runfile.c: reads a Multi-App Run template (a directory means its dapr.yaml). */
int ctl_runfile_load(const char *path, RunApp **ret, size_t *ret_n);

/* ctl-run.c */
int ctl_run_main(const CtlOptions *o, int argc, char *argv[]);
int ctl_run_apps(const CtlOptions *o, RunApp *apps, size_t n, bool multi);
