/* SPDX-License-Identifier: Apache-2.0 */
/* Reading whole (small) files, bounded. */
#pragma once

#include <stddef.h>

#define SETTINGS_FILE_MAX (1024 * 1024)

/* Reads at most max bytes (-EFBIG beyond). *ret is NUL-terminated. */
int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* Sorted list of dir/NAME for entries not starting with '.' and ending in one of suffixes (NULL-terminated);
 * a missing dir is an empty (NULL) list. */
int dir_list_sorted(const char *dir, const char *const *suffixes, char ***ret);
