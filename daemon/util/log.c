/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See log.h. The journal transport is chosen once at start (log_open()); the
 * stderr fallback prefixes "<N>" so journald (or a terminal reader) keeps the
 * priority. Never allocates on the heap for a message.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

#include "log.h"

static int max_level = LOG_INFO;
static bool use_journal = false;
static bool use_time = false;   /* a timestamp in front of stderr lines */
static LogFormat log_format = LOG_FORMAT_TEXT;

typedef struct Recent {
        uint64_t usec;
        int level;
        char app[64];
        char msg[240];
} Recent;
static Recent recent[LOG_RECENT_MAX];
static size_t recent_next, recent_n;
/* Workers may log too (rarely): the ring is shared. */
static pthread_mutex_t recent_lock = PTHREAD_MUTEX_INITIALIZER;

static void recent_add(int level, const char *app_id, const char *msg) {
        struct timespec ts;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        pthread_mutex_lock(&recent_lock);
        Recent *r = &recent[recent_next];
        r->usec = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
        r->level = level;
        /* cut to the ring's size; the journal keeps the whole line */
        size_t la = strnlen(app_id, sizeof r->app - 1), lm = strnlen(msg, sizeof r->msg - 1);
        memcpy(r->app, app_id, la);
        r->app[la] = 0;
        memcpy(r->msg, msg, lm);
        r->msg[lm] = 0;
        recent_next = (recent_next + 1) % LOG_RECENT_MAX;
        if (recent_n < LOG_RECENT_MAX)
                recent_n++;
        pthread_mutex_unlock(&recent_lock);
}

void log_recent_foreach(const char *app_id, LogRecentFn fn, void *userdata) {
        /* fn must not log (it would wait for itself). */
        pthread_mutex_lock(&recent_lock);
        size_t start = (recent_next + LOG_RECENT_MAX - recent_n) % LOG_RECENT_MAX;
        for (size_t i = 0; i < recent_n; i++) {
                const Recent *r = &recent[(start + i) % LOG_RECENT_MAX];
                if (!app_id || streq(app_id, r->app))
                        fn(r->usec, r->level, r->app, r->msg, userdata);
        }
        pthread_mutex_unlock(&recent_lock);
}

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

LogTarget log_target_from_string(const char *s) {
        return streq(s, "auto") ? LOG_TARGET_AUTO : streq(s, "console") ? LOG_TARGET_CONSOLE
               : streq(s, "journal") ? LOG_TARGET_JOURNAL : _LOG_TARGET_INVALID;
}

LogFormat log_format_from_string(const char *s) {
        return streq(s, "text") ? LOG_FORMAT_TEXT : streq(s, "json") ? LOG_FORMAT_JSON : _LOG_FORMAT_INVALID;
}

void log_setup(LogTarget target, LogFormat f) {
        bool tty = isatty(STDERR_FILENO) > 0;
        log_format = f;
        switch (target) {
        case LOG_TARGET_CONSOLE:
                use_journal = false;
                use_time = true;
                break;
        case LOG_TARGET_JOURNAL:
                use_journal = f == LOG_FORMAT_TEXT;
                use_time = !use_journal;
                break;
        default:
                /* A foreground run on a terminal wants to see its lines there, journal or not. */
                use_journal = f == LOG_FORMAT_TEXT && !tty && access("/run/systemd/journal/socket", W_OK) >= 0;
                use_time = tty;
                break;
        }
}

/* "2026-12-07T05:24:32.123456Z" */
static void format_time(char *buf, size_t size) {
        struct timespec ts;
        struct tm tm;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        (void) gmtime_r(&ts.tv_sec, &tm);
        size_t k = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf + k, size - k, ".%06ldZ", ts.tv_nsec / 1000);
}

/* s as a JSON string body into f (quotes not included). */
static void json_escape(FILE *f, const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p == '\n')
                        fputs("\\n", f);
                else if (*p < 0x20 || *p == 0x7f)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
}

static void log_json(int level, const char *app_id, const char *component, const char *msg) {
        char t[40];
        const char *lv = level <= LOG_ERR ? "error" : level == LOG_WARNING ? "warning" : level == LOG_DEBUG ? "debug" : "info";
        format_time(t, sizeof t);
        flockfile(stderr);
        fprintf(stderr, "{\"time\":\"%s\",\"level\":\"%s\",\"type\":\"log\",\"scope\":\"mooringd\",\"ver\":\"%s\",\"msg\":\"",
                t, lv, PACKAGE_VERSION);
        json_escape(stderr, msg);
        fputc('"', stderr);
        if (app_id) {
                fputs(",\"app_id\":\"", stderr);
                json_escape(stderr, app_id);
                fputc('"', stderr);
        }
        if (component) {
                fputs(",\"component\":\"", stderr);
                json_escape(stderr, component);
                fputc('"', stderr);
        }
        fputs("}\n", stderr);
        funlockfile(stderr);
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *app_id, const char *component, const char *format, ...) {
        char msg[2048];
        va_list ap;

        errno = error;
        va_start(ap, format);
        (void) vsnprintf(msg, sizeof msg, format, ap);
        va_end(ap);
        if (app_id && level <= LOG_INFO)
                recent_add(level, app_id, msg);

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

        if (log_format == LOG_FORMAT_JSON) {
                log_json(level, app_id, component, msg);
                return -error;
        }
        if (use_time) {
                char t[40];
                format_time(t, sizeof t);
                fprintf(stderr, "%s %-7s %s%s%s%s%s%s%s\n", t, strempty(log_level_to_string(level)),
                        app_id ? "app '" : "", strempty(app_id), app_id ? "': " : "", component ? "component '" : "",
                        strempty(component), component ? "': " : "", msg);
                return -error;
        }
        fprintf(stderr, "<%i>%s%s%s%s%s%s%s\n", level, app_id ? "app '" : "", strempty(app_id),
                app_id ? "': " : "", component ? "component '" : "", strempty(component),
                component ? "': " : "", msg);
        return -error;
}

int log_oom_internal(const char *file, int line, const char *func) {
        return log_internal(LOG_ERR, ENOMEM, file, line, func, NULL, NULL, "Out of memory.");
}
