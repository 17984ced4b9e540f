/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging: structured journal entries when journald is reachable, otherwise
 * one line per message on stderr with a "<N>" priority prefix that journald
 * (and systemd's stderr capture) understands.
 *
 * log_*_errno(r, ...) logs with errno = -r (so %m works) and returns r, so
 * "return log_error_errno(r, "Failed to ...: %m");" is one statement.
 * Extra journal fields (APP_ID=, COMPONENT=, ...) go through log_struct().
 */
#pragma once

#include <stdbool.h>
#include <syslog.h>

#include "cleanup.h"

/* Level names as accepted by --log-level: debug info notice warning err. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);
void log_set_max_level(int level);
int log_get_max_level(void);
/* Chooses the journal if its socket exists (or force is set). */
void log_open(bool force_stderr);

/*
 * Emits one entry. app_id / component may be NULL. error > 0 is an errno
 * made available to %m and as ERRNO=. Returns -error (or 0).
 */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *app_id, const char *component, const char *format, ...)
        _printf_(8, 9);

#define log_full_errno(level, error, ...)                                                  \
        ({                                                                                 \
                int _l = (level), _e = (error);                                            \
                _e = _e < 0 ? -_e : _e;                                                    \
                (log_get_max_level() >= _l)                                                \
                        ? log_internal(_l, _e, __FILE__, __LINE__, __func__, NULL, NULL,   \
                                       __VA_ARGS__)                                        \
                        : -_e;                                                             \
        })
#define log_full(level, ...) (void) log_full_errno((level), 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)

/* With APP_ID= and COMPONENT= journal fields (either may be NULL). */
#define log_struct(level, error, app, comp, ...)                                           \
        ({                                                                                 \
                int _l = (level), _e = (error);                                            \
                _e = _e < 0 ? -_e : _e;                                                    \
                (log_get_max_level() >= _l)                                                \
                        ? log_internal(_l, _e, __FILE__, __LINE__, __func__, (app), (comp), \
                                       __VA_ARGS__)                                        \
                        : -_e;                                                             \
        })

int log_oom_internal(const char *file, int line, const char *func);
#define log_oom() log_oom_internal(__FILE__, __LINE__, __func__)
