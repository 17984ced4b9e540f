/* SPDX-License-Identifier: Apache-2.0 */
/*
 * String vectors and value parsers shared by the config loaders. Nothing here
 * logs or allocates beyond what it returns.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "strv.h"

char **strv_free(char **l) {
        if (!l)
                return NULL;
        for (char **i = l; *i; i++)
                free(*i);
        free(l);
        return NULL;
}

size_t strv_length(char *const *l) {
        size_t n = 0;
        for (; l && l[n]; n++)
                ;
        return n;
}

bool strv_contains(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

int strv_extend(char ***l, const char *s) {
        size_t n = strv_length(*l);
        char *c = strdup(s);
        if (!c)
                return -ENOMEM;
        char **nl = realloc(*l, sizeof(char *) * (n + 2));
        if (!nl) {
                free(c);
                return -ENOMEM;
        }
        nl[n] = c;
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

int strv_copy(char *const *l, char ***ret) {
        _cleanup_strv_free_ char **c = NULL;
        if (!l) {
                *ret = NULL;
                return 0;
        }
        c = calloc(strv_length(l) + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; l[i]; i++) {
                c[i] = strdup(l[i]);
                if (!c[i])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

char *strv_go_text(char *const *l) {
        size_t n = 3;
        for (char *const *k = l; k && *k; k++)
                n += strlen(*k) + 1;
        char *t = malloc(n), *o = t;
        if (!t)
                return NULL;
        *o++ = '[';
        for (char *const *k = l; k && *k; k++) {
                if (k != l)
                        *o++ = ' ';
                o = stpcpy(o, *k);
        }
        *o++ = ']';
        *o = 0;
        return t;
}

char **strv_pack(char *const *l, size_t n) {
        size_t total = 0, k = 0;
        for (; (n == SIZE_MAX || k < n) && l && l[k]; k++)
                total += strlen(l[k]) + 1;
        char **v = malloc((k + 1) * sizeof(char *) + total);
        if (!v)
                return NULL;
        char *p = (char *) (v + k + 1);
        for (size_t i = 0; i < k; i++) {
                size_t len = strlen(l[i]) + 1;
                v[i] = memcpy(p, l[i], len);
                p += len;
        }
        v[k] = NULL;
        return v;
}

const uint8_t tchar_table[256] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
        0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

bool is_token(const char *s) {
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (!is_tchar((unsigned char) *s))
                        return false;
        return true;
}

bool utf8_is_valid(const void *p, size_t n) {
        const unsigned char *s = p;

        for (size_t i = 0; i < n;) {
                unsigned char c = s[i];
                uint32_t cp, min;
                size_t k;

                if (c < 0x80) {
                        /* ASCII runs (most of every JSON body) 8 bytes at a time */
                        uint64_t w;
                        i++;
                        while (n - i >= sizeof w) {
                                memcpy(&w, s + i, sizeof w);
                                if (w & UINT64_C(0x8080808080808080))
                                        break;
                                i += sizeof w;
                        }
                        continue;
                }
                if ((c & 0xe0) == 0xc0) {
                        k = 1;
                        cp = c & 0x1f;
                        min = 0x80;
                } else if ((c & 0xf0) == 0xe0) {
                        k = 2;
                        cp = c & 0x0f;
                        min = 0x800;
                } else if ((c & 0xf8) == 0xf0) {
                        k = 3;
                        cp = c & 0x07;
                        min = 0x10000;
                } else
                        return false;
                if (n - i <= k)
                        return false;
                for (size_t j = 1; j <= k; j++) {
                        if ((s[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + j] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += k + 1;
        }
        return true;
}

char *fmt_u64(char *p, uint64_t v) {
        /* two digits per division: span timestamps are 19-digit numbers, several per span */
        static const char pairs[] =
                "00010203040506070809101112131415161718192021222324"
                "25262728293031323334353637383940414243444546474849"
                "50515253545556575859606162636465666768697071727374"
                "75767778798081828384858687888990919293949596979899";
        char tmp[20], *t = tmp + sizeof tmp;
        size_t n;

        while (v >= 100) {
                unsigned r = (unsigned) (v % 100);
                v /= 100;
                t -= 2;
                memcpy(t, pairs + 2 * r, 2);
        }
        if (v >= 10) {
                t -= 2;
                memcpy(t, pairs + 2 * v, 2);
        } else
                *--t = (char) ('0' + v);
        n = (size_t) (tmp + sizeof tmp - t);
        memcpy(p, t, n);
        return p + n;
}

bool strv_equal(char *const *a, char *const *b) {
        size_t na = strv_length(a), nb = strv_length(b);
        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return true;
}

char *strstrip(char *s) {
        char *e;
        while (isspace((unsigned char) *s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char) e[-1]))
                e--;
        *e = 0;
        return s;
}

bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

const char *startswith_ptr(const char *s, const char *prefix) {
        size_t n = strlen(prefix);
        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

bool endswith(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

int parse_boolean(const char *s) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        return -EINVAL;
}

/* Parses a leading unsigned decimal; rejects signs, overflow, empty input. */
static int parse_u64_prefix(const char *s, uint64_t *ret, const char **ret_end) {
        uint64_t v = 0;
        const char *p = s;
        if (!isdigit((unsigned char) *p))
                return -EINVAL;
        for (; isdigit((unsigned char) *p); p++) {
                unsigned d = (unsigned) (*p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        *ret_end = p;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                uint64_t factor;
        } table[] = {
                { "", 1 },
                { "B", 1 },
                { "K", 1024ULL },
                { "KiB", 1024ULL },
                { "M", 1024ULL * 1024 },
                { "MiB", 1024ULL * 1024 },
                { "G", 1024ULL * 1024 * 1024 },
                { "GiB", 1024ULL * 1024 * 1024 },
        };
        uint64_t v;
        const char *e;
        int r = parse_u64_prefix(s, &v, &e);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(e, table[i].suffix)) {
                        if (v > UINT64_MAX / table[i].factor)
                                return -ERANGE;
                        *ret = v * table[i].factor;
                        return 0;
                }
        return -EINVAL;
}

int parse_duration_usec(const char *s, uint64_t *ret) {
        static const struct {
                const char *unit;
                uint64_t usec;
        } units[] = {
                /* longest first so "ms" wins over "m" */
                { "ms", 1000ULL },
                { "us", 1ULL },
                { "h", 3600ULL * 1000000 },
                { "m", 60ULL * 1000000 },
                { "s", 1000000ULL },
        };
        uint64_t total = 0;
        const char *p = s;
        bool any = false;

        if (!*s)
                return -EINVAL;
        while (*p) {
                uint64_t v;
                const char *e;
                size_t i;
                int r = parse_u64_prefix(p, &v, &e);
                if (r < 0)
                        return r;
                if (!*e && !any) {
                        /* a bare number is seconds */
                        if (v > UINT64_MAX / 1000000)
                                return -ERANGE;
                        *ret = v * 1000000;
                        return 0;
                }
                for (i = 0; i < ELEMENTSOF(units); i++)
                        if (strneq(e, units[i].unit, strlen(units[i].unit)))
                                break;
                if (i >= ELEMENTSOF(units))
                        return -EINVAL;
                if (v > (UINT64_MAX - total) / units[i].usec)
                        return -ERANGE;
                total += v * units[i].usec;
                p = e + strlen(units[i].unit);
                any = true;
        }
        *ret = total;
        return 0;
}

int parse_port(const char *s, uint16_t *ret) {
        uint64_t v;
        const char *e;
        int r = parse_u64_prefix(s, &v, &e);
        if (r < 0)
                return r;
        if (*e || v == 0 || v > 65535)
                return -ERANGE;
        *ret = (uint16_t) v;
        return 0;
}

bool name_is_valid(const char *s) {
        size_t n = 0;
        if (!s || !isalnum((unsigned char) s[0]))
                return false;
        for (; s[n]; n++) {
                unsigned char c = (unsigned char) s[n];
                if (!isalnum(c) && c != '.' && c != '_' && c != '-')
                        return false;
                if (n >= 63)
                        return false;
        }
        return true;
}
