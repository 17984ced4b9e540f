/* SPDX-License-Identifier: Apache-2.0 */
/* See actor-time.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "actor-time.h"

#define USEC_PER_SEC 1000000LL
/* 9999-12-31T23:59:59Z: past it no schedule is accepted (and calendar sums cannot overflow) */
#define TIME_MAX_USEC (253402300799LL * USEC_PER_SEC)
#define ISO_PART_MAX 3660000LL /* any single Y/M/W/D/H/M/S number: ten thousand years of days */

/* ---- Go durations ---- */

static const struct {
        const char *name;
        uint64_t ns;
} go_units[] = {
        { "ns", 1ULL },
        { "us", 1000ULL },
        { "\xc2\xb5s", 1000ULL },  /* U+00B5 micro sign */
        { "\xce\xbcs", 1000ULL },  /* U+03BC Greek mu */
        { "ms", 1000000ULL },
        { "s", 1000000000ULL },
        { "m", 60000000000ULL },
        { "h", 3600000000000ULL },
};

int actor_parse_go_duration(const char *s, int64_t *ret_usec) {
        const uint64_t limit = 1ULL << 63; /* Go: a duration is an int64 of nanoseconds */
        uint64_t total = 0;
        bool neg = false;

        if (!s || !*s)
                return -EINVAL;
        if (*s == '-' || *s == '+')
                neg = *s++ == '-';
        if (strcmp(s, "0") == 0) {
                *ret_usec = 0;
                return 0;
        }
        if (!*s)
                return -EINVAL;
        while (*s) {
                uint64_t whole = 0, frac = 0, scale = 1;
                bool digits = false, overflow = false;
                while (*s >= '0' && *s <= '9') {
                        if (whole > (limit - 9) / 10)
                                overflow = true;
                        else
                                whole = whole * 10 + (uint64_t) (*s - '0');
                        digits = true;
                        s++;
                }
                if (*s == '.') {
                        s++;
                        while (*s >= '0' && *s <= '9') {
                                /* beyond 18 digits the rest cannot change a nanosecond count */
                                if (scale < 1000000000000000000ULL) {
                                        frac = frac * 10 + (uint64_t) (*s - '0');
                                        scale *= 10;
                                }
                                digits = true;
                                s++;
                        }
                }
                if (!digits)
                        return -EINVAL;
                if (overflow)
                        return -ERANGE;
                size_t best = 0;
                uint64_t unit = 0;
                for (size_t i = 0; i < sizeof go_units / sizeof go_units[0]; i++) {
                        size_t l = strlen(go_units[i].name);
                        if (strncmp(s, go_units[i].name, l) == 0 && l > best &&
                            /* "m" must not take the "m" of "ms" */
                            !(l == 1 && s[0] == 'm' && s[1] == 's')) {
                                best = l;
                                unit = go_units[i].ns;
                        }
                }
                if (!best)
                        return -EINVAL; /* a number without a unit, or an unknown unit ("d") */
                s += best;
                if (whole > limit / unit)
                        return -ERANGE;
                uint64_t v = whole * unit;
                /* the fraction, as Go does: frac/scale of the unit */
                long double f = (long double) frac * (long double) unit / (long double) scale;
                v += (uint64_t) f;
                if (v > limit || total > limit - v)
                        return -ERANGE;
                total += v;
        }
        if (!neg && total == limit)
                return -ERANGE;
        *ret_usec = neg ? -(int64_t) (total / 1000) : (int64_t) (total / 1000);
        return 0;
}

/* ---- ISO 8601 durations ---- */

/* Reads digits into *ret (int range). Returns the count read, -ERANGE on overflow. */
static int read_int(const char **p, int64_t max, int64_t *ret) {
        int64_t v = 0;
        int n = 0;
        while (**p >= '0' && **p <= '9') {
                if (v > (max - (**p - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (**p - '0');
                (*p)++;
                n++;
        }
        *ret = v;
        return n;
}

int actor_parse_iso_duration(const char *s, ActorPeriod *ret, int64_t *ret_repetitions) {
        ActorPeriod p = {};
        int64_t reps = -1, v;
        bool any = false, time_part = false;
        int k;

        if (!s)
                return -EINVAL;
        if (*s == 'R') {
                if (!ret_repetitions)
                        return -EINVAL;
                s++;
                k = read_int(&s, INT32_MAX, &reps);
                if (k < 0)
                        return k;
                if (k == 0 || *s != '/' || reps == 0)
                        return -EINVAL;
                s++;
        }
        if (*s++ != 'P')
                return -EINVAL;
        /* date designators in order Y M W D, then T and H M S in order */
        static const char date_order[] = "YMWD", time_order[] = "HMS";
        const char *order = date_order;
        while (*s) {
                if (*s == 'T') {
                        if (time_part)
                                return -EINVAL;
                        time_part = true;
                        order = time_order;
                        s++;
                        if (!*s)
                                return -EINVAL; /* "PT" names nothing */
                        continue;
                }
                k = read_int(&s, ISO_PART_MAX * 3600, &v);
                if (k < 0)
                        return k;
                if (k == 0)
                        return -EINVAL;
                if (*s != 'S' && *s != 'M' && *s != 'H' && v > ISO_PART_MAX)
                        return -ERANGE;
                if ((*s == 'M' || *s == 'H') && v > ISO_PART_MAX * 60)
                        return -ERANGE;
                const char *d = *s ? strchr(order, *s) : NULL;
                if (!d)
                        return -EINVAL;
                order = d + 1; /* each designator once, in order */
                if (!time_part)
                        switch (*s) {
                        case 'Y': p.years = (int) v; break;
                        case 'M': p.months = (int) v; break;
                        case 'W':
                                p.days += (int) (v * 7);
                                break;
                        case 'D':
                                p.days += (int) v;
                                break;
                        }
                else {
                        int64_t mul = *s == 'H' ? 3600 : *s == 'M' ? 60 : 1;
                        p.usec += v * mul * USEC_PER_SEC; /* each part <= ISO_PART_MAX hours: no overflow */
                }
                any = true;
                s++;
        }
        if (!any)
                return -EINVAL;
        *ret = p;
        if (ret_repetitions)
                *ret_repetitions = reps;
        return 0;
}

/* ---- RFC 3339 ---- */

static int digits(const char **p, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++, (*p)++) {
                if (**p < '0' || **p > '9')
                        return -EINVAL;
                v = v * 10 + (**p - '0');
        }
        *ret = v;
        return 0;
}

static bool leap(int y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int actor_parse_rfc3339(const char *s, int64_t *ret_usec) {
        static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        int Y, M, D, h, m, sec, oh = 0, om = 0, sign = 0;
        const char *p = s;

        if (!s)
                return -EINVAL;
        if (digits(&p, 4, &Y) < 0 || *p++ != '-' || digits(&p, 2, &M) < 0 || *p++ != '-' ||
            digits(&p, 2, &D) < 0 || (*p != 'T' && *p != 't') || !*p++ || digits(&p, 2, &h) < 0 ||
            *p++ != ':' || digits(&p, 2, &m) < 0 || *p++ != ':' || digits(&p, 2, &sec) < 0)
                return -EINVAL;
        if (*p == '.') {
                p++;
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                while (*p >= '0' && *p <= '9')
                        p++; /* daprd truncates to whole seconds */
        }
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                sign = *p++ == '-' ? -1 : 1;
                if (digits(&p, 2, &oh) < 0 || *p++ != ':' || digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
                        return -EINVAL;
        } else
                return -EINVAL;
        if (*p)
                return -EINVAL;
        if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] + (M == 2 && leap(Y)) || h > 23 || m > 59 || sec > 59)
                return -EINVAL;
        struct tm tm = { .tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h, .tm_min = m,
                         .tm_sec = sec };
        int64_t t = (int64_t) timegm(&tm);
        t -= sign * (oh * 3600 + om * 60);
        *ret_usec = t * USEC_PER_SEC;
        return 0;
}

char *actor_format_rfc3339(int64_t usec, char *buf) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                strcpy(buf, "1970-01-01T00:00:00Z");
        return buf;
}

/* ---- schedules ---- */

bool actor_period_is_zero(const ActorPeriod *p) {
        return p->years == 0 && p->months == 0 && p->days == 0 && p->usec == 0;
}

int64_t actor_period_add(const ActorPeriod *p, int64_t from_usec) {
        int64_t t = from_usec;
        if (from_usec >= TIME_MAX_USEC || from_usec < 0)
                return TIME_MAX_USEC;
        if (p->years || p->months || p->days) {
                time_t secs = (time_t) (from_usec / USEC_PER_SEC);
                int64_t rest = from_usec % USEC_PER_SEC;
                struct tm tm;
                if (!gmtime_r(&secs, &tm))
                        return TIME_MAX_USEC;
                /* as Go's AddDate: the fields are added, then normalized (Jan 31 + 1M = Mar 3) */
                tm.tm_year += p->years;
                tm.tm_mon += p->months;
                tm.tm_mday += p->days;
                time_t n = timegm(&tm);
                if (n == (time_t) -1 || n > TIME_MAX_USEC / USEC_PER_SEC)
                        return TIME_MAX_USEC;
                t = (int64_t) n * USEC_PER_SEC + rest;
        }
        if (p->usec > TIME_MAX_USEC - t)
                return TIME_MAX_USEC;
        return t + p->usec;
}

/* dueTime or ttl: a duration (relative to base) or an RFC 3339 time. Repetitions refused. */
static int parse_point(const char *s, int64_t base, int64_t *ret) {
        ActorPeriod p;
        int64_t d;
        if (actor_parse_iso_duration(s, &p, NULL) >= 0) {
                *ret = actor_period_add(&p, base);
                return 0;
        }
        if (actor_parse_go_duration(s, &d) >= 0) {
                *ret = d > 0 && base > TIME_MAX_USEC - d ? TIME_MAX_USEC : base + d;
                return 0;
        }
        return actor_parse_rfc3339(s, ret);
}

int actor_schedule_parse(const char *due, const char *period, const char *ttl, int64_t now_usec,
                         ActorSchedule *ret, const char **reterr) {
        ActorSchedule sc = { .first_usec = now_usec, .repetitions = -1 };

        if (due && *due && parse_point(due, now_usec, &sc.first_usec) < 0) {
                *reterr = "dueTime: not a Go duration, an ISO 8601 duration or an RFC 3339 time";
                return -EINVAL;
        }
        if (sc.first_usec < now_usec)
                sc.first_usec = now_usec; /* a past time fires now */
        if (sc.first_usec >= TIME_MAX_USEC) {
                *reterr = "dueTime: too far in the future";
                return -EINVAL;
        }
        if (period && *period) {
                int64_t d;
                if (actor_parse_iso_duration(period, &sc.period, &sc.repetitions) < 0) {
                        if (actor_parse_go_duration(period, &d) < 0) {
                                *reterr = "period: not a Go duration or an ISO 8601 duration (Rn/ allowed, n > 0)";
                                return -EINVAL;
                        }
                        if (d < 0) {
                                *reterr = "period: must not be negative";
                                return -EINVAL;
                        }
                        sc.period = (ActorPeriod){ .usec = d };
                        sc.repetitions = -1;
                }
                sc.periodic = !actor_period_is_zero(&sc.period);
                if (sc.periodic && actor_period_add(&sc.period, sc.first_usec) >= TIME_MAX_USEC) {
                        *reterr = "period: too long";
                        return -EINVAL;
                }
                if (!sc.periodic && sc.repetitions < 0)
                        sc.repetitions = 1;
        } else
                sc.repetitions = 1;
        if (ttl && *ttl) {
                if (parse_point(ttl, sc.first_usec, &sc.expiry_usec) < 0) {
                        *reterr = "ttl: not a Go duration, an ISO 8601 duration or an RFC 3339 time";
                        return -EINVAL;
                }
                if (sc.expiry_usec <= now_usec) {
                        *reterr = "ttl: the expiry time is already in the past";
                        return -EINVAL;
                }
        }
        *ret = sc;
        return 0;
}
