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
#include <stdint.h>
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
 * Where lines go (--log-target=): AUTO is the journal when its socket exists and stderr is
 * not a terminal, else stderr; CONSOLE is stderr with a timestamp on every line (a terminal
 * gets that under AUTO too); JOURNAL is the journal, stderr when it cannot be reached.
 */
typedef enum LogTarget {
        LOG_TARGET_AUTO,
        LOG_TARGET_CONSOLE,
        LOG_TARGET_JOURNAL,
        _LOG_TARGET_MAX,
        _LOG_TARGET_INVALID = -EINVAL,
} LogTarget;
/* Line format on stderr (--log-format=): TEXT, or JSON objects one per line as daprd writes them
 * (time, level, type, msg, scope, app_id, ...). JSON always goes to stderr. */
typedef enum LogFormat {
        LOG_FORMAT_TEXT,
        LOG_FORMAT_JSON,
        _LOG_FORMAT_MAX,
        _LOG_FORMAT_INVALID = -EINVAL,
} LogFormat;
LogTarget log_target_from_string(const char *s);
LogFormat log_format_from_string(const char *s);
/* Sets target and format and opens accordingly (replaces log_open()). */
void log_setup(LogTarget target, LogFormat format);

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

/*
 * The last LOG_RECENT_MAX messages at info level or above that name an app, kept in memory for
 * the dashboard (fixed ring, no allocation). fn gets them oldest first; app_id NULL: every app.
 */
#define LOG_RECENT_MAX 512
typedef void (*LogRecentFn)(uint64_t realtime_usec, int level, const char *app_id, const char *message,
                            void *userdata);
void log_recent_foreach(const char *app_id, LogRecentFn fn, void *userdata);

int log_oom_internal(const char *file, int line, const char *func);
#define log_oom() log_oom_internal(__FILE__, __LINE__, __func__)
