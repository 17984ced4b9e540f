/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See cron-schedule.h. next() walks the calendar in the schedule's zone the
 * way robfig/cron does: the first field that does not match is advanced
 * (the smaller ones reset) until every field matches.
 *
 * Time zones: the C library only knows one zone at a time ($TZ). next() sets
 * TZ around its mktime()/localtime_r() calls and restores it; it runs on the
 * loop thread, and no other thread of the daemon reads the local time.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../../util/strv.h"
#include "cron-schedule.h"

#define STAR (UINT64_C(1) << 63)

typedef struct Bounds {
        unsigned min, max;
        const char *const *names; /* names[i] is the value min + i */
} Bounds;

static const char *const month_names[] = { "jan", "feb", "mar", "apr", "may", "jun",
                                           "jul", "aug", "sep", "oct", "nov", "dec", NULL };
static const char *const dow_names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL };

static const Bounds b_sec = { 0, 59, NULL }, b_min = { 0, 59, NULL }, b_hour = { 0, 23, NULL },
                    b_dom = { 1, 31, NULL }, b_month = { 1, 12, month_names }, b_dow = { 0, 6, dow_names };

static int parse_value(const char *s, size_t n, const Bounds *b, unsigned *ret) {
        if (n == 0 || n > 9)
                return -EINVAL;
        if (b->names && isalpha((unsigned char) s[0])) {
                for (unsigned i = 0; b->names[i]; i++)
                        if (n == strlen(b->names[i]) && strncasecmp(s, b->names[i], n) == 0) {
                                *ret = b->min + i;
                                return 0;
                        }
                return -EINVAL;
        }
        unsigned v = 0;
        for (size_t i = 0; i < n; i++) {
                if (!isdigit((unsigned char) s[i]))
                        return -EINVAL;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        *ret = v;
        return 0;
}

/* One comma-separated part: "*", "?", "N", "N-M", each with an optional "/step". */
static int parse_range(const char *s, size_t n, const Bounds *b, uint64_t *bits) {
        const char *slash = memchr(s, '/', n);
        size_t rn = slash ? (size_t) (slash - s) : n;
        unsigned lo, hi, step = 1;
        bool star = false;

        if (rn == 1 && (s[0] == '*' || s[0] == '?')) {
                lo = b->min;
                hi = b->max;
                star = true;
        } else {
                const char *dash = memchr(s, '-', rn);
                if (dash) {
                        if (parse_value(s, (size_t) (dash - s), b, &lo) < 0 ||
                            parse_value(dash + 1, rn - (size_t) (dash - s) - 1, b, &hi) < 0)
                                return -EINVAL;
                } else {
                        if (parse_value(s, rn, b, &lo) < 0)
                                return -EINVAL;
                        hi = slash ? b->max : lo; /* "N/step" runs to the end */
                }
        }
        if (slash) {
                if (parse_value(slash + 1, n - rn - 1, &(Bounds){ 0, 0, NULL }, &step) < 0 || step == 0)
                        return -EINVAL;
                star = false; /* robfig: a step makes it a restriction */
        }
        if (lo < b->min || hi > b->max || lo > hi)
                return -ERANGE;
        for (unsigned v = lo; v <= hi; v += step)
                *bits |= UINT64_C(1) << v;
        if (star)
                *bits |= STAR;
        return 0;
}

static int parse_field(const char *s, size_t n, const Bounds *b, uint64_t *ret) {
        *ret = 0;
        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n;) {
                size_t len = 0;
                while (i + len < n && s[i + len] != ',')
                        len++;
                int r = parse_range(s + i, len, b, ret);
                if (r < 0)
                        return r;
                i += len + 1;
                if (i == n && s[n - 1] == ',')
                        return -EINVAL;
        }
        return 0;
}

static bool zone_valid(const char *z) {
        char path[128];
        if (!*z || z[0] == '/' || strstr(z, "..") || strlen(z) >= 64)
                return false;
        if (streq(z, "UTC") || streq(z, "Local"))
                return true;
        snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", z);
        return access(path, R_OK) == 0;
}

int cron_schedule_parse(const char *text, CronSchedule *ret, const char **reterr) {
        CronSchedule s = {};
        const char *p = text;
        const char *fields[6];
        size_t lens[6], n = 0;

        if (!text) {
                *reterr = "empty schedule";
                return -EINVAL;
        }
        p += strspn(p, " \t");
        const char *tz = startswith_ptr(p, "CRON_TZ=") ?: startswith_ptr(p, "TZ=");
        if (tz) {
                size_t zl = strcspn(tz, " \t");
                if (zl == 0 || zl >= sizeof s.zone) {
                        *reterr = "time zone name missing or too long";
                        return -EINVAL;
                }
                memcpy(s.zone, tz, zl);
                if (streq(s.zone, "Local"))
                        s.zone[0] = 0;
                else if (!zone_valid(s.zone)) {
                        *reterr = "unknown time zone";
                        return -EINVAL;
                }
                p = tz + zl;
                p += strspn(p, " \t");
        }
        if (*p == '@') {
                static const struct { const char *name; const char *expr; } d[] = {
                        { "@yearly", "0 0 0 1 1 *" },  { "@annually", "0 0 0 1 1 *" }, { "@monthly", "0 0 0 1 * *" },
                        { "@weekly", "0 0 0 * * 0" }, { "@daily", "0 0 0 * * *" },    { "@midnight", "0 0 0 * * *" },
                        { "@hourly", "0 0 * * * *" },
                };
                const char *ev = startswith_ptr(p, "@every");
                if (ev && (*ev == ' ' || *ev == '\t')) {
                        ev += strspn(ev, " \t");
                        char buf[64];
                        size_t l = strcspn(ev, " \t");
                        if (l == 0 || l >= sizeof buf || ev[l + strspn(ev + l, " \t")] != 0) {
                                *reterr = "@every needs one duration";
                                return -EINVAL;
                        }
                        memcpy(buf, ev, l);
                        buf[l] = 0;
                        /* a Go duration: at least one unit ("15s", "1m30s", "500ms"); robfig rounds below 1 s up */
                        if (!strpbrk(buf, "hmsuµn") || parse_duration_usec(buf, &s.every_usec) < 0 ||
                            s.every_usec == 0) {
                                *reterr = "@every: not a duration such as 15s, 1m or 2h";
                                return -EINVAL;
                        }
                        if (s.every_usec < 1000000)
                                s.every_usec = 1000000;
                        s.every_usec -= s.every_usec % 1000000;
                        *ret = s;
                        return 0;
                }
                for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
                        if (streq(p, d[i].name) || (startswith(p, d[i].name) &&
                                                    p[strlen(d[i].name) + strspn(p + strlen(d[i].name), " \t")] == 0)) {
                                CronSchedule t;
                                int r = cron_schedule_parse(d[i].expr, &t, reterr);
                                if (r < 0)
                                        return r;
                                memcpy(t.zone, s.zone, sizeof t.zone);
                                *ret = t;
                                return 0;
                        }
                *reterr = "unknown descriptor";
                return -EINVAL;
        }
        while (*p) {
                if (n == 6) {
                        *reterr = "more than 6 fields";
                        return -EINVAL;
                }
                fields[n] = p;
                lens[n] = strcspn(p, " \t");
                p += lens[n];
                p += strspn(p, " \t");
                n++;
        }
        if (n != 5 && n != 6) {
                *reterr = "expected 5 or 6 fields (seconds optional)";
                return -EINVAL;
        }
        const Bounds *bounds[6] = { &b_sec, &b_min, &b_hour, &b_dom, &b_month, &b_dow };
        uint64_t *out[6] = { &s.second, &s.minute, &s.hour, &s.dom, &s.month, &s.dow };
        size_t off = n == 6 ? 0 : 1;
        if (n == 5)
                s.second = 1; /* second 0 */
        for (size_t i = 0; i < n; i++)
                if (parse_field(fields[i], lens[i], bounds[i + off], out[i + off]) < 0) {
                        static const char *const what[] = { "bad seconds field", "bad minutes field",
                                                            "bad hours field", "bad day-of-month field",
                                                            "bad month field", "bad day-of-week field" };
                        *reterr = what[i + off];
                        return -EINVAL;
                }
        *ret = s;
        return 0;
}

static bool has(uint64_t bits, int v) {
        return v >= 0 && v < 63 && (bits & (UINT64_C(1) << v));
}

static bool day_matches(const CronSchedule *s, const struct tm *t) {
        bool dom = has(s->dom, t->tm_mday), dow = has(s->dow, t->tm_wday);
        if ((s->dom & STAR) || (s->dow & STAR))
                return dom && dow;
        return dom || dow;
}

int cron_schedule_next(const CronSchedule *s, uint64_t start_usec, uint64_t after_usec, uint64_t *ret_usec) {
        if (s->every_usec) {
                uint64_t k = after_usec < start_usec ? 0 : (after_usec - start_usec) / s->every_usec;
                uint64_t t = start_usec + (k + 1) * s->every_usec;
                *ret_usec = t;
                return 0;
        }

        _cleanup_free_ char *saved = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
        bool swap = s->zone[0] != 0;
        if (swap) {
                setenv("TZ", s->zone, 1);
                tzset();
        }
        time_t t = (time_t) (after_usec / 1000000) + 1;
        struct tm tm;
        localtime_r(&t, &tm);
        int year_limit = tm.tm_year + 5;
        int r = -ERANGE;

        while (tm.tm_year <= year_limit) {
                if (!has(s->month, tm.tm_mon + 1)) {
                        tm.tm_mon++;
                        tm.tm_mday = 1;
                        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
                } else if (!day_matches(s, &tm)) {
                        tm.tm_mday++;
                        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
                } else if (!has(s->hour, tm.tm_hour)) {
                        tm.tm_hour++;
                        tm.tm_min = tm.tm_sec = 0;
                } else if (!has(s->minute, tm.tm_min)) {
                        tm.tm_min++;
                        tm.tm_sec = 0;
                } else if (!has(s->second, tm.tm_sec)) {
                        tm.tm_sec++;
                } else {
                        r = 0;
                        break;
                }
                tm.tm_isdst = -1;
                time_t n = mktime(&tm);
                if (n == (time_t) -1)
                        break;
                localtime_r(&n, &tm);
        }
        if (r == 0)
                *ret_usec = (uint64_t) mktime(&tm) * 1000000;
        if (swap) {
                if (saved)
                        setenv("TZ", saved, 1);
                else
                        unsetenv("TZ");
                tzset();
        }
        return r;
}
