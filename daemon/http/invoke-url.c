/* SPDX-License-Identifier: Apache-2.0 */
/* See invoke-url.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../util/strv.h"
#include "invoke-url.h"
#include "router.h"

int invoke_url_parse(const char *path, char **ret_app, const char **ret_method) {
        const char *p = startswith_ptr(path, INVOKE_URL_PREFIX), *m;
        char *app;

        if (!p)
                return 0;
        /* The id is the text before the first "/method/" (Dapr's rule), the method all after it. */
        m = strstr(p, "/method/");
        if (!m || m == p || !m[strlen("/method/")])
                return -EINVAL;
        app = http_unescape(p, (size_t) (m - p), false);
        if (!app)
                return -EINVAL; /* a bad escape (OOM looks the same here, and is as unlikely) */
        if (!*app || strchr(app, '/')) {
                free(app);
                return -EINVAL;
        }
        *ret_app = app;
        *ret_method = m + strlen("/method/");
        return 1;
}

static int b64val(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+' || c == '-')
                return 62;
        if (c == '/' || c == '_')
                return 63;
        return -1;
}

/* RFC 4648 base64 (padding optional) into a NUL-terminated malloc'd string; NULL if invalid. */
static char *unbase64(const char *s, size_t len) {
        while (len > 0 && s[len - 1] == '=')
                len--;
        if (len % 4 == 1)
                return NULL;
        char *out = malloc(len / 4 * 3 + 3), *o = out;
        uint32_t acc = 0;
        unsigned bits = 0;
        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                int v = b64val(s[i]);
                if (v < 0) {
                        free(out);
                        return NULL;
                }
                acc = (acc << 6) | (uint32_t) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        *o++ = (char) ((acc >> bits) & 0xff);
                }
        }
        *o = 0;
        if ((size_t) (o - out) != strlen(out)) { /* a NUL inside: not a credential */
                free(out);
                return NULL;
        }
        return out;
}

int invoke_target_from_headers(const char *dapr_app_id, const char *authorization, char **ret) {
        if (dapr_app_id && *dapr_app_id) {
                *ret = strdup(dapr_app_id);
                return *ret ? 1 : -ENOMEM;
        }
        if (!authorization)
                return 0;
        /* The scheme is case-insensitive; one or more spaces before the credentials. */
        if (strncasecmp(authorization, "Basic ", 6) != 0)
                return 0;
        const char *c = authorization + 6;
        c += strspn(c, " ");
        _cleanup_free_ char *plain = unbase64(c, strcspn(c, " "));
        const char *id = plain ? startswith_ptr(plain, "dapr-app-id:") : NULL;
        if (!id || !*id)
                return 0;
        *ret = strdup(id);
        return *ret ? 1 : -ENOMEM;
}
