/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl logs APP: one app's log lines from the journal (sd-journal),
 * the app's own (its unit mooring-app@APP.service) and mooringd's about it
 * (APP_ID=APP, written by the daemon's unit), merged in time order as the
 * journal keeps them.
 *
 * Only trusted fields decide what belongs to an app: _SYSTEMD_UNIT (or
 * _SYSTEMD_USER_UNIT for per-user daemons), which journald sets from the
 * sender's cgroup. A process that writes APP_ID=orders or
 * SYSLOG_IDENTIFIER=mooring-app-orders from another unit is not shown.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-journal.h>

#include "ctl.h"


/* Adds one alternative: every field=value of the NULL-terminated list, ANDed. */
static int add_group(sd_journal *j, const char *const *matches) {
        for (const char *const *m = matches; *m; m++) {
                int r = sd_journal_add_match(j, *m, 0);
                if (r < 0)
                        return r;
        }
        return sd_journal_add_disjunction(j);
}

static int add_matches(sd_journal *j, const char *app, const char *daemon_unit) {
        _cleanup_free_ char *unit = NULL, *uunit = NULL, *appid = NULL, *dunit = NULL, *duunit = NULL;
        int r;

        if (asprintf(&unit, "_SYSTEMD_UNIT=mooring-app@%s.service", app) < 0 ||
            asprintf(&uunit, "_SYSTEMD_USER_UNIT=mooring-app@%s.service", app) < 0 ||
            asprintf(&appid, "APP_ID=%s", app) < 0 || asprintf(&dunit, "_SYSTEMD_UNIT=%s", daemon_unit) < 0 ||
            asprintf(&duunit, "_SYSTEMD_USER_UNIT=%s", daemon_unit) < 0)
                return -ENOMEM;
        const char *const g1[] = { unit, NULL }, *const g2[] = { uunit, NULL }, *const g3[] = { appid, dunit, NULL },
                          *const g4[] = { appid, duunit, NULL };
        if ((r = add_group(j, g1)) < 0 || (r = add_group(j, g2)) < 0 || (r = add_group(j, g3)) < 0 ||
            (r = add_group(j, g4)) < 0)
                return r;
        return 0;
}

/* The field's value (borrowed until the next call on j), or NULL. */
static const char *field(sd_journal *j, const char *name, size_t *ret_len) {
        const void *d;
        size_t l, n = strlen(name);
        if (sd_journal_get_data(j, name, &d, &l) < 0 || l <= n || ((const char *) d)[n] != '=')
                return NULL;
        *ret_len = l - n - 1;
        return (const char *) d + n + 1;
}

static int print_entry(sd_journal *j, bool json) {
        uint64_t usec = 0;
        size_t ml = 0, il = 0, al = 0, pl = 0;
        const char *msg, *ident, *app, *prio;
        char when[64];
        int r;

        r = sd_journal_get_realtime_usec(j, &usec);
        if (r < 0)
                return r;
        msg = field(j, "MESSAGE", &ml);
        ident = field(j, "SYSLOG_IDENTIFIER", &il);
        app = field(j, "APP_ID", &al);
        prio = field(j, "PRIORITY", &pl);
        _cleanup_free_ char *m = msg ? strndup(msg, ml) : strdup("");
        _cleanup_free_ char *id = ident ? strndup(ident, il) : strdup("-");
        if (!m || !id)
                return -ENOMEM;

        time_t sec = (time_t) (usec / 1000000);
        struct tm tm;
        if (!localtime_r(&sec, &tm))
                return -EINVAL;
        size_t k = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + k, sizeof when - k, ".%06" PRIu64, usec % 1000000);

        if (json) {
                json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s*}", "time", when, "realtimeUsec", (json_int_t) usec,
                                      "source", app ? "mooringd" : id, "message", m, "priority",
                                      prio && pl == 1 ? (char[]){ prio[0], 0 } : NULL);
                if (!o)
                        return -ENOMEM;
                r = json_dumpf(o, stdout, JSON_COMPACT);
                json_decref(o);
                if (r < 0)
                        return -EIO;
                putchar('\n');
        } else
                printf("%s %s: %s\n", when, app ? "mooringd" : id, m);
        return 0;
}

/* "--since": "@EPOCH", "YYYY-MM-DD [HH:MM[:SS]]", or "N{s,m,h,d}" ago. */
int ctl_parse_since(const char *s, uint64_t *ret_usec) {
        struct tm tm = {};
        char *end;

        if (s[0] == '@') {
                errno = 0;
                unsigned long long v = strtoull(s + 1, &end, 10);
                if (errno || end == s + 1 || *end)
                        return -EINVAL;
                *ret_usec = (uint64_t) v * 1000000ULL;
                return 0;
        }
        if (s[0] >= '0' && s[0] <= '9' && !strchr(s, '-')) {
                errno = 0;
                unsigned long long v = strtoull(s, &end, 10);
                uint64_t mult = streq(end, "s") ? 1 : streq(end, "m") ? 60 : streq(end, "h") ? 3600 : streq(end, "d") ? 86400 : 0;
                if (errno || end == s || mult == 0)
                        return -EINVAL;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                uint64_t now = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
                uint64_t back = (uint64_t) v * mult * 1000000ULL;
                *ret_usec = back > now ? 0 : now - back;
                return 0;
        }
        end = strptime(s, "%Y-%m-%d", &tm);
        if (end && *end == ' ')
                end = strptime(end + 1, strchr(end + 1, ':') != strrchr(end + 1, ':') ? "%H:%M:%S" : "%H:%M", &tm);
        if (!end || *end)
                return -EINVAL;
        tm.tm_isdst = -1;
        time_t t = mktime(&tm);
        if (t == (time_t) -1)
                return -EINVAL;
        *ret_usec = (uint64_t) t * 1000000ULL;
        return 0;
}

int ctl_logs(const CtlOptions *o, const CtlLogsRequest *req) {
        _cleanup_(sd_journal_closep) sd_journal *j = NULL;
        int r;

        r = req->directory ? sd_journal_open_directory(&j, req->directory, 0)
                           : sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY | (o->user ? SD_JOURNAL_CURRENT_USER : 0));
        if (r < 0)
                return ctl_log_errno(r, "cannot open the journal%s%s: %m", req->directory ? " in " : "",
                                     strempty(req->directory));
        r = add_matches(j, req->app_id, "mooringd.service");
        if (r < 0)
                return ctl_log_errno(r, "cannot filter the journal: %m");

        /* Where to start: the last N lines (10 when following without -n, as journalctl), none
         * from before --since (those are skipped as they come). */
        int64_t lines = req->lines >= 0 ? req->lines : req->follow ? 10 : -1;
        bool current = false; /* positioned on an entry not printed yet */
        if (lines == 0 && !req->follow)
                return 0;
        if (lines >= 0) {
                r = sd_journal_seek_tail(j);
                if (r >= 0 && lines > 0) {
                        r = sd_journal_previous_skip(j, (uint64_t) lines);
                        current = r > 0;
                }
        } else if (req->since_set)
                r = sd_journal_seek_realtime_usec(j, req->since_usec);
        else
                r = sd_journal_seek_head(j);
        if (r < 0)
                return ctl_log_errno(r, "cannot read the journal: %m");

        for (;;) {
                r = current ? 1 : sd_journal_next(j);
                current = false;
                if (r < 0)
                        return ctl_log_errno(r, "cannot read the journal: %m");
                if (r > 0) {
                        uint64_t t = 0;
                        if (req->since_set && sd_journal_get_realtime_usec(j, &t) >= 0 && t < req->since_usec)
                                continue;
                        r = print_entry(j, o->json);
                        if (r < 0)
                                return ctl_log_errno(r, "cannot show a journal entry: %m");
                        continue;
                }
                if (!req->follow)
                        return 0;
                if (fflush(stdout) != 0)
                        return 0; /* the reader went away */
                r = sd_journal_wait(j, UINT64_MAX);
                if (r < 0)
                        return ctl_log_errno(r, "cannot wait for the journal: %m");
        }
}
