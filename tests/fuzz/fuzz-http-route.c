/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the HTTP router (http/router.c): the input is "METHOD\npath" (split
 * at the first NUL or newline) matched against the daemon's real route table;
 * the whole input also goes through http_unescape() with and without
 * '+'-as-space.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *in = (const char *) data;
        size_t k = 0;
        char *method, *path, *u;
        RouteMatch m = {};

        if (size > 64 * 1024)
                return 0;
        while (k < size && in[k] != '\n' && in[k] != '\0')
                k++;
        method = strndup(in, k);
        path = k < size ? strndup(in + k + 1, size - k - 1) : strdup("");
        if (method && path) {
                int r = router_match(http_routes, http_routes_n, method, path, &m);
                if (r > 0) {
                        if (!m.route || m.n_params > ROUTE_PARAMS_MAX)
                                abort();
                        for (size_t i = 0; i < m.n_params; i++)
                                (void) strlen(m.params[i]);
                        route_match_done(&m);
                }
        }
        free(method);
        free(path);

        for (int plus = 0; plus <= 1; plus++) {
                u = http_unescape(in, size, plus);
                if (u && strlen(u) > size)
                        abort(); /* unescaping never grows the text */
                free(u);
        }
        return 0;
}
