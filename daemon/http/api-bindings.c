/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's output binding API over HTTP: POST/PUT /v1.0/bindings/{name}. The
 * request stays suspended until the binding answered: 200 with its bytes
 * (Content-Type application/json unless the binding names one) or 204 when
 * it returns nothing; the binding's response metadata become
 * `metadata.<key>` headers, on errors too (daprd does so: bindings.http
 * reports the status of a failed call that way). Bad JSON is 400
 * ERR_MALFORMED_REQUEST; an unknown binding, an unsupported or missing
 * operation and a failure of the binding are 500 ERR_INVOKE_OUTPUT_BINDING.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/bindings.h"
#include "../core/app.h"
#include "../core/registry.h"
#include "../util/strv.h"
#include "binding-body.h"
#include "handlers.h"
#include "server.h"

typedef struct OutCall {
        HttpRequest *r;
        BindingOut *out;
        char *name;
} OutCall;

static const char *caller_app(HttpRequest *r) {
        const Caller *c = http_request_caller(r);
        return c->app ? c->app->config->id : NULL;
}

/* Metadata pairs as "metadata.<key>" header pairs; keys or values that cannot be headers are left out. */
static char **metadata_headers(char *const *md) {
        char **h = NULL;
        for (char *const *p = md; p && p[0] && p[1]; p += 2) {
                _cleanup_free_ char *name = NULL;
                if (strpbrk(p[0], "\r\n: \t") || strpbrk(p[1], "\r\n") || !*p[0])
                        continue;
                if (asprintf(&name, "metadata.%s", p[0]) < 0 || strv_extend(&h, name) < 0 ||
                    strv_extend(&h, p[1]) < 0)
                        return strv_free(h);
        }
        if (!h)
                h = calloc(1, sizeof(char *));
        return h;
}

static void on_request_end(HttpRequest *r, void *userdata) {
        OutCall *oc = userdata;
        /* the caller left: the binding still finishes, nobody hears of it */
        bindings_invoke_cancel(oc->out);
        free(oc->name);
        free(oc);
}

static void on_done(int error, const char *message, const BindingResponse *resp, void *userdata) {
        OutCall *oc = userdata;
        HttpRequest *r = oc->r;
        _cleanup_strv_free_ char **h = metadata_headers(resp ? resp->metadata : NULL);

        http_request_on_end(r, NULL, NULL);
        if (!h)
                (void) http_reply_error(r, DAPR_ERR_INTERNAL, "out of memory");
        else if (error < 0) {
                /* daprd's JSON error shape, with the binding's metadata as headers */
                const ErrorRow *row = error_lookup(ERROR_CONTEXT_BINDING, error);
                json_t *j = json_pack("{s:s, s:s}", "errorCode", dapr_error_code(row->dapr), "message",
                                      message ?: strerror(-error));
                _cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
                json_decref(j);
                if (text)
                        (void) http_reply_headers(r, row->http_status, "application/json", text, strlen(text),
                                                  (const char *const *) h);
                else
                        (void) http_reply_error(r, DAPR_ERR_INTERNAL, "out of memory");
        } else if (!resp)
                (void) http_reply_headers(r, 204, NULL, NULL, 0, (const char *const *) h);
        else
                (void) http_reply_headers(r, 200, resp->content_type ?: "application/json", resp->data, resp->len,
                                          (const char *const *) h);
        http_request_release(r);
        free(oc->name);
        free(oc);
}

int http_binding_invoke(HttpRequest *r, const RouteMatch *m) {
        _cleanup_free_ char *why = NULL;
        BindingBody bb = {};
        size_t len;
        const void *body = http_request_body(r, &len);
        int k;

        k = binding_body_parse(body, len, &bb, &why);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "%s", why);
        OutCall *oc = calloc(1, sizeof *oc);
        if (!oc) {
                binding_body_done(&bb);
                return -ENOMEM;
        }
        oc->r = r;
        BindingInvokeRequest req = {
                .app = caller_app(r),
                .name = m->params[0],
                .operation = bb.operation,
                .data = bb.data,
                .len = bb.data_len,
                .metadata = bb.metadata,
                .traceparent = http_request_header(r, "traceparent"),
                .tracestate = http_request_header(r, "tracestate"),
        };
        k = bindings_invoke(http_request_registry(r), &req, on_done, oc, &oc->out);
        binding_body_done(&bb);
        if (k < 0) {
                free(oc);
                return k;
        }
        http_request_on_end(r, on_request_end, oc);
        http_request_suspend(r);
        return 0;
}
