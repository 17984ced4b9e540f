/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's service invocation over HTTP: /v1.0/invoke/{app-id}/method/{path}
 * for any verb, and any otherwise unrouted path with a dapr-app-id header
 * (or Basic credentials "dapr-app-id:<id>"). The caller is who its listener
 * or peer credentials say, never a header (on the peer listener: the app id
 * the calling host vouches for in mooring-caller-app, from a host whose
 * certificate was verified). The callee's answer streams back:
 * the request stays suspended until its head arrives, then the body flows
 * through a bounded buffer (the block pauses the app when the caller reads
 * slowly).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/invoke.h"
#include "../core/app-config.h"
#include "../core/app.h"
#include "../util/strv.h"
#include "handlers.h"
#include "invoke-url.h"
#include "server.h"

/* Answers up to this size are collected and sent in one piece (one reply with a
 * Content-Length, written at once); larger ones stream from the first byte past it. */
#define INVOKE_BUFFER_MAX (64U * 1024)

typedef struct HttpInvoke {
        HttpRequest *r;
        InvokeCall *call;
        bool streaming;             /* the callee's head went out: errors can only cut the body */
        unsigned status;            /* the callee's head, held until we know how to answer */
        char **resp_headers;        /* pairs, traceparent added; one allocation (strv_pack()) */
        int64_t content_length;
        char *buf;                  /* the answer so far, while not streaming */
        size_t len;
} HttpInvoke;

static void http_invoke_free(HttpInvoke *hi) {
        free(hi->resp_headers);
        free(hi->buf);
        free(hi);
}

static void on_drain(void *userdata) {
        HttpInvoke *hi = userdata;
        invoke_call_resume(hi->call);
}

static void on_head(InvokeCall *c, unsigned status, char *const *headers, int64_t content_length, void *userdata) {
        HttpInvoke *hi = userdata;
        size_t n = 0;
        char *small[64], **v = small;

        hi->status = status;
        hi->content_length = content_length;
        while (headers[n])
                n++;
        if (n + 3 > ELEMENTSOF(small) && !(v = malloc((n + 3) * sizeof(char *))))
                return; /* no resp_headers: answered as OOM in on_done */
        memcpy(v, headers, n * sizeof(char *));
        v[n] = (char *) "traceparent";
        v[n + 1] = (char *) invoke_call_traceparent(c);
        v[n + 2] = NULL;
        /* headers live only during this call: one copy of all of it */
        hi->resp_headers = strv_pack(v, n + 2);
        if (v != small)
                free(v);
}

/* Switches to streaming: the head and what was collected go out now. */
static bool start_streaming(HttpInvoke *hi) {
        if (!hi->resp_headers ||
            http_reply_stream(hi->r, hi->status, (const char *const *) hi->resp_headers, hi->content_length, on_drain,
                              hi) < 0)
                return false;
        hi->streaming = true;
        if (hi->len > 0 && !http_stream_write(hi->r, hi->buf, hi->len))
                return false; /* cannot happen: the buffer starts empty */
        free(hi->buf);
        hi->buf = NULL;
        hi->len = 0;
        return true;
}

static bool on_body(InvokeCall *c, const void *buf, size_t len, void *userdata) {
        HttpInvoke *hi = userdata;
        if (hi->streaming)
                return http_stream_write(hi->r, buf, len);
        if (hi->len + len <= INVOKE_BUFFER_MAX &&
            (hi->content_length < 0 || (uint64_t) hi->content_length <= INVOKE_BUFFER_MAX)) {
                char *b = realloc(hi->buf, hi->len + len);
                if (b) {
                        memcpy(b + hi->len, buf, len);
                        hi->buf = b;
                        hi->len += len;
                        return true;
                }
        }
        if (!start_streaming(hi)) {
                /* Out of memory: end the call; on_done answers what it can. */
                return true;
        }
        return http_stream_write(hi->r, buf, len);
}

static void on_done(InvokeCall *c, const InvokeError *e, void *userdata) {
        HttpInvoke *hi = userdata;
        HttpRequest *r = hi->r;

        /* From here the request may end on its own; nothing of ours must run then. */
        http_request_on_end(r, NULL, NULL);
        http_request_release_next(r); /* below, at the end */
        if (hi->streaming)
                http_stream_end(r, !e);
        else if (e)
                (void) http_reply_error_status(r, error_lookup(ERROR_CONTEXT_INVOKE, e->error)->http_status,
                                               error_lookup(ERROR_CONTEXT_INVOKE, e->error)->dapr, "%s", e->message);
        else if (!hi->resp_headers)
                (void) http_reply_error(r, DAPR_ERR_INTERNAL, "out of memory");
        else if (hi->content_length >= 0 && (uint64_t) hi->content_length != hi->len) {
                /* A HEAD answer (no body, a length to tell), or a callee that sent less than it said. */
                if (start_streaming(hi))
                        http_stream_end(r, streq(http_request_method(r), "HEAD"));
                else
                        (void) http_reply_error(r, DAPR_ERR_INTERNAL, "out of memory");
        } else
                /* The whole answer is here: one response from the buffer. */
                (void) http_reply_headers(r, hi->status, NULL, hi->buf, hi->len,
                                          (const char *const *) hi->resp_headers);
        http_invoke_free(hi);
        /* The hottest path of the daemon: finish the request now rather than on another loop pass. */
        http_request_release(r);
}

static void on_request_end(HttpRequest *r, void *userdata) {
        HttpInvoke *hi = userdata;
        /* The caller went away (or the reply finished before the call did): stop the call. */
        invoke_call_cancel(hi->call);
        http_invoke_free(hi);
}

static const InvokeHandler handler = {
        .head = on_head,
        .body = on_body,
        .done = on_done,
};

/* Starts the call; method is the callee's path, still escaped, without the query. */
static int invoke(HttpRequest *r, const char *target, const char *method, bool routed_by_authorization) {
        const Caller *caller = http_request_caller(r);
        const char *query = http_request_raw_query(r);
        _cleanup_free_ char *with_query = NULL;
        /* The array of pairs lives while invoke_start() runs (it keeps what it needs); the strings
         * are the request's, which outlives the call. */
        char *small[2 * 32 + 1], **headers = small;
        _cleanup_free_ char **headers_alloc = NULL;
        HttpInvoke *hi;
        int k;

        if (query) {
                size_t method_len = strlen(method), query_len = strlen(query);
                with_query = malloc(method_len + 1 + query_len + 1);
                if (!with_query)
                        return -ENOMEM;
                memcpy(with_query, method, method_len);
                with_query[method_len] = '?';
                memcpy(with_query + method_len + 1, query, query_len + 1);
        }
        if (http_request_header_pairs_into(r, small, ELEMENTSOF(small)) < 0) {
                k = http_request_header_pairs(r, &headers_alloc);
                if (k < 0)
                        return k;
                headers = headers_alloc;
        }
        /* From another host: the caller's app id is what that host says (its certificate was
         * verified), its trust domain what the certificate says. */
        const char *caller_app = caller->app ? caller->app->config->id : NULL;
        if (caller->via == LISTENER_PEER) {
                caller_app = http_request_header(r, INVOKE_PEER_CALLER_HEADER);
                if (caller_app && !*caller_app)
                        caller_app = NULL;
                if (caller_app && !app_id_is_valid(caller_app))
                        return http_reply_error(r, DAPR_ERR_BAD_REQUEST, "invalid caller app id in %s",
                                                INVOKE_PEER_CALLER_HEADER);
        }
        hi = calloc(1, sizeof *hi);
        if (!hi)
                return -ENOMEM;
        hi->r = r;
        size_t body_len;
        const void *body = http_request_body(r, &body_len);
        InvokeRequest req = {
                .caller_app = caller_app,
                .target_app = target,
                .verb = http_request_method(r),
                .method = with_query ?: method,
                .headers = headers,
                .body = body,
                .body_len = body_len,
                .routed_by_authorization = routed_by_authorization,
                .trace_parent = http_request_trace(r),
                .trace_parent_remote = http_request_trace_remote(r),
                .caller_trust_domain = caller->via == LISTENER_PEER ? caller->peer_trust_domain : NULL,
                .local_only = caller->via == LISTENER_PEER,
        };
        k = invoke_start(http_request_registry(r), &req, &handler, hi, &hi->call);
        if (k < 0) {
                http_invoke_free(hi);
                if (k == -EINVAL)
                        return http_reply_error_status(r, error_lookup(ERROR_CONTEXT_INVOKE_START, k)->http_status,
                                                       error_lookup(ERROR_CONTEXT_INVOKE_START, k)->dapr,
                                                       "failed to invoke, id: %s, err: method %s not allowed",
                                                       target, http_request_method(r));
                return k;
        }
        http_request_on_end(r, on_request_end, hi);
        http_request_suspend(r);
        return 0;
}

int http_invoke(HttpRequest *r, const RouteMatch *m) {
        char buf[256], *app = NULL;
        const char *method;
        int k = invoke_url_parse(http_request_url(r), buf, sizeof buf, &app, &method);
        if (k <= 0)
                return http_reply_error(r, DAPR_ERR_DIRECT_INVOKE_NOT_FOUND,
                                        "failed getting app id either from the URL path or the header dapr-app-id");
        k = invoke(r, app, method, false);
        if (app != buf)
                free(app);
        return k;
}

int http_invoke_by_header(HttpRequest *r) {
        _cleanup_free_ char *app = NULL;
        const char *by_header = http_request_header(r, "dapr-app-id");
        int k = invoke_target_from_headers(by_header, http_request_header(r, "Authorization"), &app);
        if (k <= 0)
                return k;
        /* The whole path goes to the callee as it came. */
        k = invoke(r, app, http_request_url(r), !by_header || !*by_header);
        return k < 0 ? k : 1;
}
