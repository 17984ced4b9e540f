/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes what service invocation reads from a request before it calls an
 * app (http/invoke-url.c, core/tracecontext.c). The input is split at its
 * first newline into A and B: A goes through invoke_url_parse() as a path
 * and through traceparent_parse(); B is tried as a dapr-app-id value and as
 * an Authorization header. Results are checked for their promises: the
 * method points inside the path, a parsed traceparent formats back to a
 * valid one that parses to the same ids.
 */
#include <stdlib.h>
#include <string.h>

#include "core/tracecontext.h"
#include "fuzz.h"
#include "http/invoke-url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *in = (const char *) data;
        size_t k = 0;

        if (size > 64 * 1024)
                return 0;
        while (k < size && in[k] != '\n')
                k++;
        char *a = strndup(in, k), *b = k < size ? strndup(in + k + 1, size - k - 1) : strdup("");
        if (!a || !b)
                goto out;

        char *app = NULL, small[16];
        const char *method = NULL;
        int r = invoke_url_parse(a, small, sizeof small, &app, &method);
        if (r > 0) {
                if (!app || !*app || strchr(app, '/') || !method || method < a || method >= a + strlen(a))
                        abort();
                if (app == small && strlen(app) >= sizeof small)
                        abort();
                if (app != small)
                        free(app);
        } else if (app)
                abort();

        TraceContext t, t2;
        if (traceparent_parse(a, &t) >= 0) {
                char buf[TRACEPARENT_LEN + 1];
                traceparent_format(&t, buf);
                if (strlen(buf) != TRACEPARENT_LEN || traceparent_parse(buf, &t2) < 0 ||
                    memcmp(t.trace_id, t2.trace_id, sizeof t.trace_id) != 0 ||
                    memcmp(t.span_id, t2.span_id, sizeof t.span_id) != 0 || t.flags != t2.flags)
                        abort();
                trace_context_new_span(&t, false, &t2);
                if (memcmp(t.trace_id, t2.trace_id, sizeof t.trace_id) != 0)
                        abort();
        }
        (void) tracestate_is_valid(a);

        char *target = NULL;
        for (int i = 0; i < 2; i++) {
                r = invoke_target_from_headers(i == 0 ? b : NULL, i == 0 ? NULL : b, &target);
                if (r > 0) {
                        if (!target || !*target)
                                abort();
                        free(target);
                        target = NULL;
                }
        }
out:
        free(a);
        free(b);
        return 0;
}
