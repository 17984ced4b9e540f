/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's InvokeService over gRPC: the same invoke block call as
 * /v1.0/invoke/{id}/method/{path} (http/api-invoke.c). The caller is the
 * app of the listener, never metadata. The request's metadata goes to the
 * callee as headers (as daprd does), the verb and query come from the
 * HTTPExtension, and the callee's answer comes back whole as an
 * InvokeResponse: its headers as response metadata, its HTTP status in
 * dapr-http-status, and a status other than 2xx as a gRPC error mapped the
 * way daprd maps it (pkg/messaging/v1: 404 NOT_FOUND, 400 INTERNAL, ...).
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/invoke.h"
#include "../manager.h"
#include "../util/strv.h"
#include "services.h"

typedef struct GrpcInvoke {
        GrpcCall *call;
        InvokeCall *ic;
        char *method;               /* path and query for the callee, then the content type: one
                                     * allocation (the headers' strings are the call's metadata,
                                     * which outlives the block call) */
        void *body;                 /* the request body: the block borrows it until done */
        unsigned status;
        char *resp_content_type;    /* the callee's content type (its other headers went to the call) */
        uint8_t *buf;
        size_t len, max;
        bool too_large;
} GrpcInvoke;

static void grpc_invoke_free(GrpcInvoke *gi) {
        free(gi->resp_content_type);
        free(gi->method);
        free(gi->body);
        free(gi->buf);
        free(gi);
}

static bool name_char(char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
               ch == '_' || ch == '.';
}

/* HTTP/1.1 header names that HTTP/2 forbids or that gRPC owns (names in lower case). */
static bool header_forwardable(const char *name) {
        size_t n = 0;
        for (; name[n]; n++)
                if (!name_char(name[n]))
                        return false; /* ':' of pseudo-headers included */
        if (n == 0 || startswith(name, "grpc-"))
                return false;
        /* by length first: this runs for every header both ways */
        switch (n) {
        case 2: return !streq(name, "te");
        case 4: return !streq(name, "host");
        case 7: return !streq(name, "upgrade");
        case 10: return !streq(name, "connection") && !streq(name, "keep-alive");
        case 12: return !streq(name, "content-type");
        case 14: return !streq(name, "content-length");
        case 16: return !streq(name, "proxy-connection");
        case 17: return !streq(name, "transfer-encoding");
        default: return true;
        }
}

/* The callee's headers go to the call's response headers right away (lower case, those HTTP/2
 * allows), rather than copied for on_done(); on_done() drops them again if the answer fails. */
static void on_head(InvokeCall *ic, unsigned status, char *const *headers, int64_t content_length,
                    void *userdata) {
        GrpcInvoke *gi = userdata;
        char lower[256];

        gi->status = status;
        for (char *const *p = headers; p && p[0] && p[1]; p += 2) {
                size_t n = strlen(p[0]);
                if (n >= sizeof lower)
                        continue; /* no such header is forwardable in practice; HTTP/2 peers refuse them */
                for (size_t i = 0; i <= n; i++)
                        lower[i] = (char) tolower((unsigned char) p[0][i]);
                if (streq(lower, "content-type")) {
                        free(gi->resp_content_type);
                        gi->resp_content_type = strdup(p[1]);
                } else if (header_forwardable(lower))
                        (void) grpc_call_add_header(gi->call, lower, p[1]);
        }
}



static bool on_body(InvokeCall *ic, const void *buf, size_t len, void *userdata) {
        GrpcInvoke *gi = userdata;
        if (gi->too_large || gi->len + len > gi->max) {
                gi->too_large = true; /* answered in on_done; the rest is read and dropped */
                return true;
        }
        uint8_t *b = realloc(gi->buf, gi->len + len);
        if (!b) {
                gi->too_large = true;
                return true;
        }
        memcpy(b + gi->len, buf, len);
        gi->buf = b;
        gi->len += len;
        return true;
}

/* daprd's mapping of the callee's HTTP status to a gRPC code (invokev1.CodeFromHTTPStatus). */
static GrpcCode code_from_http(unsigned status) {
        switch (status) {
        case 408: return GRPC_STATUS_CANCELLED;
        case 500: return GRPC_STATUS_UNKNOWN;
        case 400: return GRPC_STATUS_INTERNAL;
        case 504: return GRPC_STATUS_DEADLINE_EXCEEDED;
        case 404: return GRPC_STATUS_NOT_FOUND;
        case 409: return GRPC_STATUS_ALREADY_EXISTS;
        case 403: return GRPC_STATUS_PERMISSION_DENIED;
        case 401: return GRPC_STATUS_UNAUTHENTICATED;
        case 429: return GRPC_STATUS_RESOURCE_EXHAUSTED;
        case 501: return GRPC_STATUS_UNIMPLEMENTED;
        case 503: return GRPC_STATUS_UNAVAILABLE;
        default: return status >= 200 && status < 300 ? GRPC_STATUS_OK : GRPC_STATUS_UNKNOWN;
        }
}

static const char *status_text(unsigned status) {
        switch (status) {
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 413: return "Request Entity Too Large";
        case 429: return "Too Many Requests";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        default: return "Unknown";
        }
}

static void on_done(InvokeCall *ic, const InvokeError *e, void *userdata) {
        GrpcInvoke *gi = userdata;
        GrpcCall *c = gi->call;
        char code[16];

        grpc_call_on_cancel(c, NULL, NULL);
        if (e || gi->too_large)
                grpc_call_clear_headers(c); /* the callee's, from on_head: not for a failed call */
        if (e) {
                (void) grpc_fail_dapr_status(c, error_grpc_status(ERROR_CONTEXT_INVOKE, e->error, DAPR_ERR_DIRECT_INVOKE),
                                             error_lookup(ERROR_CONTEXT_INVOKE, e->error)->dapr, "%s", e->message);
                goto finish;
        }
        if (gi->too_large) {
                (void) grpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                      "grpc: trying to send message larger than max (more than %zu bytes)", gi->max);
                goto finish;
        }
        /* the status in decimal, without snprintf() (this runs for every call) */
        char *q = code + sizeof code;
        *--q = 0;
        unsigned st = gi->status;
        do
                *--q = (char) ('0' + st % 10);
        while ((st /= 10) > 0);
        (void) grpc_call_add_header(c, "dapr-http-status", q);
        GrpcCode g = code_from_http(gi->status);
        if (g != GRPC_STATUS_OK) {
                (void) grpc_call_fail_detail(c, g, status_text(gi->status), "%s", status_text(gi->status));
                goto finish;
        }
        Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
        PBC(InvokeResponse) resp = DAPR__PROTO__COMMON__V1__INVOKE_RESPONSE__INIT;
        any.value = (ProtobufCBinaryData){ gi->len, gi->buf };
        resp.data = &any;
        if (gi->resp_content_type)
                resp.content_type = gi->resp_content_type;
        (void) grpc_call_reply(c, &resp.base);
finish:
        grpc_invoke_free(gi);
}

static void on_cancel(GrpcCall *c, void *userdata) {
        GrpcInvoke *gi = userdata;
        invoke_call_cancel(gi->ic);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the callee answered");
        grpc_invoke_free(gi);
}

static const InvokeHandler handler = {
        .head = on_head,
        .body = on_body,
        .done = on_done,
};

static const char *const verbs[] = { "NONE", "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                                     "PATCH" };

int grpc_dapr_invoke_service(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(InvokeServiceRequest) *req = (const PB(InvokeServiceRequest) *) m;
        const PBC(InvokeRequest) *msg = req->message;
        GrpcInvoke *gi;
        char *hv_stack[64], **hv = hv_stack;
        size_t n_hv = 0, n_md = 0;
        int k;

        if (!*req->id)
                return grpc_fail_dapr(c, DAPR_ERR_DIRECT_INVOKE_NOT_FOUND,
                                      "failed getting app id either from the URL path or the header dapr-app-id");
        /* daprd refuses these for an HTTP callee (pkg/channel/http) with INVALID_ARGUMENT */
        if (!msg || !msg->http_extension)
                return grpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "missing HTTP extension field");
        unsigned v = (unsigned) msg->http_extension->verb;
        if (v == 0 || v >= ELEMENTSOF(verbs) || streq(verbs[v], "CONNECT"))
                return grpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "invalid HTTP verb");

        gi = calloc(1, sizeof *gi);
        if (!gi)
                return -ENOMEM;
        gi->call = c;
        gi->max = manager_max_body(grpc_call_manager(c)) ?: 4U << 20;
        /* "method[?query]\0content-type\0": the content type outlives the request message */
        const char *qs = msg->http_extension->querystring;
        size_t lm = strlen(msg->method), lq = strlen(qs), lct = strlen(msg->content_type);
        gi->method = malloc(lm + 1 + lq + 1 + lct + 1);
        if (!gi->method) {
                grpc_invoke_free(gi);
                return -ENOMEM;
        }
        char *w = mempcpy(gi->method, msg->method, lm);
        if (lq > 0) {
                *w++ = '?';
                w = mempcpy(w, qs, lq);
        }
        *w++ = 0;
        char *content_type = w;
        memcpy(content_type, msg->content_type, lct + 1);

        /* The caller's metadata as headers: the array is read by invoke_start() only, the strings
         * are the call's (valid until it is answered, which is after done or cancel). */
        for (char *const *p = grpc_call_metadata_pairs(c); p[0] && p[1]; p += 2)
                n_md += 2;
        if (n_md + 3 > ELEMENTSOF(hv_stack)) {
                hv = malloc((n_md + 3) * sizeof(char *));
                if (!hv) {
                        grpc_invoke_free(gi);
                        return -ENOMEM;
                }
        }
        for (char *const *p = grpc_call_metadata_pairs(c); p[0] && p[1]; p += 2)
                if (header_forwardable(p[0]) && !endswith(p[0], "-bin") && !streq(p[0], "dapr-api-token") &&
                    !streq(p[0], "user-agent")) {
                        hv[n_hv++] = p[0];
                        hv[n_hv++] = p[1];
                }
        if (lct > 0) {
                hv[n_hv++] = (char *) "Content-Type";
                hv[n_hv++] = content_type;
        }
        hv[n_hv] = NULL;
        InvokeRequest ireq = {
                .caller_app = grpc_call_app_id(c),
                .target_app = req->id,
                .verb = verbs[v],
                .method = gi->method,
                .headers = hv,
                .body = msg->data ? msg->data->value.data : NULL,
                .body_len = msg->data ? msg->data->value.len : 0,
        };
        /* The body is borrowed until done: keep a copy, the request message is freed on return. */
        if (ireq.body_len > 0) {
                gi->body = malloc(ireq.body_len);
                if (!gi->body) {
                        if (hv != hv_stack)
                                free(hv);
                        grpc_invoke_free(gi);
                        return -ENOMEM;
                }
                memcpy(gi->body, ireq.body, ireq.body_len);
                ireq.body = gi->body;
        }
        k = invoke_start(grpc_call_registry(c), &ireq, &handler, gi, &gi->ic);
        if (hv != hv_stack)
                free(hv);
        if (k < 0) {
                grpc_invoke_free(gi);
                if (k == -EINVAL)
                        return grpc_fail_dapr_status(c, error_grpc_status(ERROR_CONTEXT_INVOKE_START, k,
                                                                          DAPR_ERR_DIRECT_INVOKE),
                                                     DAPR_ERR_DIRECT_INVOKE, "failed to invoke, id: %s, err: %s",
                                                     req->id, "the request was refused");
                return k;
        }
        grpc_call_on_cancel(c, on_cancel, gi);
        return 0;
}
