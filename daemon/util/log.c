/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See log.h. The journal transport is chosen once at start (log_open()); the
 * stderr fallback prefixes "<N>" so journald (or a terminal reader) keeps the
 * priority. Never allocates on the heap for a message.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

#include "log.h"

static int max_level = LOG_INFO;
static bool use_journal = false;

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg",   [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",
        [LOG_ERR] = "err",       [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",     [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (streq(s, level_names[i]))
                        return (int) i;
        if (streq(s, "error"))
                return LOG_ERR;
        if (streq(s, "warn"))
                return LOG_WARNING;
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        if (level < 0 || (size_t) level >= ELEMENTSOF(level_names))
                return NULL;
        return level_names[level];
}

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_open(bool force_stderr) {
        /* Only talk to journald when it is there, and when stderr is not already
         * the journal's stream (JOURNAL_STREAM), where plain lines are enough. */
        use_journal = !force_stderr && access("/run/systemd/journal/socket", W_OK) >= 0;
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *app_id, const char *component, const char *format, ...) {
        char msg[2048];
        va_list ap;

        errno = error;
        va_start(ap, format);
        (void) vsnprintf(msg, sizeof msg, format, ap);
        va_end(ap);

        if (use_journal) {
                char f_msg[sizeof msg + 16], f_prio[32], f_file[256], f_line[32], f_func[128],
                        f_errno[32], f_ident[32], f_app[96], f_comp[96];
                struct iovec iov[12];
                size_t n = 0;

#define ADD(buf, ...)                                                           \
        do {                                                                    \
                int _k = snprintf(buf, sizeof buf, __VA_ARGS__);                \
                iov[n++] = (struct iovec){ buf, (size_t) _k < sizeof buf ? (size_t) _k : sizeof buf - 1 }; \
        } while (0)
                ADD(f_msg, "MESSAGE=%s", msg);
                ADD(f_prio, "PRIORITY=%i", level);
                ADD(f_file, "CODE_FILE=%s", file);
                ADD(f_line, "CODE_LINE=%i", line);
                ADD(f_func, "CODE_FUNC=%s", func);
                ADD(f_ident, "SYSLOG_IDENTIFIER=%s", "mooringd");
                if (error > 0)
                        ADD(f_errno, "ERRNO=%i", error);
                if (app_id)
                        ADD(f_app, "APP_ID=%s", app_id);
                if (component)
                        ADD(f_comp, "COMPONENT=%s", component);
#undef ADD
                if (sd_journal_sendv(iov, (int) n) >= 0)
                        return -error;
                /* journal gone: fall through to stderr */
        }

        fprintf(stderr, "<%i>%s%s%s%s%s%s%s\n", level, app_id ? "app '" : "", strempty(app_id),
                app_id ? "': " : "", component ? "component '" : "", strempty(component),
                component ? "': " : "", msg);
        return -error;
}

int log_oom_internal(const char *file, int line, const char *func) {
        return log_internal(LOG_ERR, ENOMEM, file, line, func, NULL, NULL, "Out of memory.");
}
