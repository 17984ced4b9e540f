/* SPDX-License-Identifier: Apache-2.0 */
/* See invoke-url.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../util/base64.h"
#include "../util/strv.h"
#include "invoke-url.h"
#include "router.h"

int invoke_url_parse(const char *path, char *buf, size_t size, char **ret_app, const char **ret_method) {
        const char *p = startswith_ptr(path, INVOKE_URL_PREFIX), *m;
        char *app;

        if (!p)
                return 0;
        /* The id is the text before the first "/method/" (Dapr's rule), the method all after it. */
        m = strstr(p, "/method/");
        if (!m || m == p || !m[strlen("/method/")])
                return -EINVAL;
        app = http_unescape_buf(p, (size_t) (m - p), false, buf, size);
        if (!app)
                return -EINVAL; /* a bad escape (OOM looks the same here, and is as unlikely) */
        if (!*app || strchr(app, '/')) {
                if (app != buf)
                        free(app);
                return -EINVAL;
        }
        *ret_app = app;
        *ret_method = m + strlen("/method/");
        return 1;
}

/* Basic credentials decoded as text; NULL if not base64 or holding a NUL (not a credential). */
static char *unbase64_text(const char *s, size_t len) {
        char *out = NULL;
        size_t n = 0;

        if (base64_decode(s, len, &out, &n) < 0)
                return NULL;
        if (memchr(out, 0, n)) {
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
        _cleanup_free_ char *plain = unbase64_text(c, strcspn(c, " "));
        const char *id = plain ? startswith_ptr(plain, "dapr-app-id:") : NULL;
        if (!id || !*id)
                return 0;
        *ret = strdup(id);
        return *ret ? 1 : -ENOMEM;
}
