/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Daemon-wide settings from mooringd.conf ([Daemon] section). A missing file
 * means all defaults; a bad file is rejected whole with file:line:field and
 * the previous (or default) settings stay in force.
 */
#pragma once

#include <stdint.h>

#include "conferr.h"

#define SETTINGS_DEFAULT_MAX_BODY (4ULL * 1024 * 1024)
#define SETTINGS_DEFAULT_DRAIN_USEC (10ULL * 1000000)

typedef struct Settings {
        char *api_socket;        /* relative to the runtime dir, or absolute */
        uint64_t max_request_body;
        uint64_t drain_usec;
        int log_level;           /* -1 when not set in the file */
} Settings;

void settings_init(Settings *s);
void settings_done(Settings *s);
/* Parses text; on failure *s is unchanged and err says where. */
int settings_parse(Settings *s, const char *file, const char *text, size_t len, ConfError *err);
/* Reads path; -ENOENT is not an error (defaults remain, returns 0). */
int settings_load(Settings *s, const char *path, ConfError *err);
