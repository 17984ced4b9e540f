/* SPDX-License-Identifier: Apache-2.0 */
/* Reading whole (small) files, bounded. */
#pragma once

#include <stddef.h>

#define SETTINGS_FILE_MAX (1024 * 1024)

/* Reads at most max bytes (-EFBIG beyond). *ret is NUL-terminated. */
int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len);
