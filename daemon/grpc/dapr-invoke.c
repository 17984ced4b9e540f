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
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/invoke.h"
#include "../manager.h"
#include "../util/strv.h"
#include "services.h"

/* The callee's content type, with room in front for its field's tag and length in the answer. */
#define CT_ROOM 6
#define CT_INLINE 160

/* The call's state, in the call's scratch space (no allocation): nothing touches it once the call
 * is answered. The answer's body goes straight into the call's draft (grpc_call_draft_append()). */
typedef struct GrpcInvoke {
        GrpcCall *call;
        InvokeCall *ic;
        unsigned status;
        bool too_large;
        size_t max;
        size_t ct_len;              /* the callee's content type, 0: none */
        char *ct;                   /* CT_ROOM bytes, then the content type: ct_inline or malloc'd */
        char ct_inline[CT_ROOM + CT_INLINE];
} GrpcInvoke;

_Static_assert(sizeof(GrpcInvoke) <= GRPC_CALL_SCRATCH, "GrpcInvoke must fit the call's scratch space");

/* What must be freed before the call is answered (after the answer, gi is gone). */
static void grpc_invoke_done(GrpcInvoke *gi) {
        if (gi->ct != gi->ct_inline)
                free(gi->ct);
        gi->ct = NULL;
        gi->ct_len = 0;
}

/* HTTP token characters mooringd forwards in a header name: letters, digits, '-', '_', '.'. */
static const bool name_chars[256] = {
        ['a' ... 'z'] = true, ['A' ... 'Z'] = true, ['0' ... '9'] = true, ['-'] = true, ['_'] = true, ['.'] = true,
};

/* HTTP/1.1 header names that HTTP/2 forbids or that gRPC owns (names in lower case); metadata also
 * keeps its binary (-bin) entries, the API token and the user agent to itself. The names refused
 * by name first (most of what a gRPC client sends is), then the characters of the others. */
static bool header_forwardable(const char *name, size_t n, bool metadata) {
        bool refused;

        if (n == 0 || (n >= 5 && memcmp(name, "grpc-", 5) == 0) ||
            (metadata && n >= 4 && memcmp(name + n - 4, "-bin", 4) == 0))
                return false;
        switch (n) {
        case 2: refused = memcmp(name, "te", 2) == 0; break;
        case 4: refused = memcmp(name, "host", 4) == 0; break;
        case 7: refused = memcmp(name, "upgrade", 7) == 0; break;
        case 10:
                refused = memcmp(name, "connection", 10) == 0 || memcmp(name, "keep-alive", 10) == 0 ||
                          (metadata && memcmp(name, "user-agent", 10) == 0);
                break;
        case 12: refused = memcmp(name, "content-type", 12) == 0; break;
        case 14:
                refused = memcmp(name, "content-length", 14) == 0 ||
                          (metadata && memcmp(name, "dapr-api-token", 14) == 0);
                break;
        case 16: refused = memcmp(name, "proxy-connection", 16) == 0; break;
        case 17: refused = memcmp(name, "transfer-encoding", 17) == 0; break;
        default: refused = false;
        }
        if (refused)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!name_chars[(uint8_t) name[i]])
                        return false; /* ':' of pseudo-headers included */
        return true;
}

/* The callee's headers go to the call's response headers right away (lower case, those HTTP/2
 * allows), rather than copied for on_done(); on_done() drops them again if the answer fails. */
static void on_head(InvokeCall *ic, unsigned status, char *const *headers, int64_t content_length,
                    void *userdata) {
        GrpcInvoke *gi = userdata;
        char lower[256];

        gi->status = status;
        for (char *const *p = headers; p && p[0] && p[1]; p += 2) {
                size_t n = 0;
                for (; p[0][n] && n < sizeof lower; n++) {
                        char ch = p[0][n];
                        lower[n] = ch >= 'A' && ch <= 'Z' ? (char) (ch | 0x20) : ch;
                }
                if (n >= sizeof lower)
                        continue; /* no such header is forwardable in practice; HTTP/2 peers refuse them */
                lower[n] = 0;
                if (n == 12 && memcmp(lower, "content-type", 12) == 0) {
                        size_t l = strlen(p[1]);
                        grpc_invoke_done(gi);
                        if (l == 0)
                                continue;
                        gi->ct = l <= CT_INLINE ? gi->ct_inline : malloc(CT_ROOM + l);
                        if (!gi->ct)
                                continue; /* out of memory: the answer goes without it */
                        memcpy(gi->ct + CT_ROOM, p[1], l);
                        gi->ct_len = l;
                } else if (header_forwardable(lower, n, false))
                        (void) grpc_call_add_header(gi->call, lower, p[1]);
        }
}

static bool on_body(InvokeCall *ic, const void *buf, size_t len, void *userdata) {
        GrpcInvoke *gi = userdata;
        if (gi->too_large || grpc_call_draft_len(gi->call) + len > gi->max ||
            grpc_call_draft_append(gi->call, buf, len) < 0)
                gi->too_large = true; /* answered in on_done; the rest is read and dropped */
        return true;
}

/* A protobuf varint at p; its length. */
static size_t put_varint(uint8_t *p, uint64_t v) {
        size_t n = 0;
        for (; v >= 0x80; v >>= 7)
                p[n++] = (uint8_t) (v | 0x80);
        p[n++] = (uint8_t) v;
        return n;
}

static size_t varint_size(uint64_t v) {
        size_t n = 1;
        for (; v >= 0x80; v >>= 7)
                n++;
        return n;
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

/*
 * Answers InvokeResponse{data = Any{value = the body}, content_type}, encoded here around the body
 * that on_body() put in the call's draft, as protobuf-c would pack it (fields in order, empty ones
 * left out, data always there), so the body is copied once on its way through.
 */
static void reply(GrpcInvoke *gi) {
        GrpcCall *c = gi->call;
        uint8_t head[GRPC_DRAFT_HEAD_MAX];
        size_t body_len = grpc_call_draft_len(c), h = 0, tail_len = 0;
        uint8_t *tail = NULL;

        /* data (1): Any, whose value (2) is the body */
        head[h++] = 1 << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
        h += put_varint(head + h, body_len > 0 ? 1 + varint_size(body_len) + body_len : 0);
        if (body_len > 0) {
                head[h++] = 2 << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
                h += put_varint(head + h, body_len);
        }
        /* content_type (2), in the room left in front of it */
        if (gi->ct_len > 0) {
                size_t k = 1 + varint_size(gi->ct_len);
                tail = (uint8_t *) gi->ct + CT_ROOM - k;
                tail[0] = 2 << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
                (void) put_varint(tail + 1, gi->ct_len);
                tail_len = k + gi->ct_len;
        }
        /* from here on gi is the call's and may go with it: the content type's memory is freed after */
        char *ct_free = gi->ct != gi->ct_inline ? gi->ct : NULL;
        (void) grpc_call_reply_draft(c, head, h, tail, tail_len);
        free(ct_free);
}

static void on_done(InvokeCall *ic, const InvokeError *e, void *userdata) {
        GrpcInvoke *gi = userdata;
        GrpcCall *c = gi->call;
        char code[16];

        grpc_call_on_cancel(c, NULL, NULL);
        if (e || gi->too_large) {
                grpc_call_clear_headers(c); /* the callee's, from on_head: not for a failed call */
                grpc_invoke_done(gi);
        }
        if (e) {
                (void) grpc_fail_dapr_status(c, error_grpc_status(ERROR_CONTEXT_INVOKE, e->error, DAPR_ERR_DIRECT_INVOKE),
                                             error_lookup(ERROR_CONTEXT_INVOKE, e->error)->dapr, "%s", e->message);
                return;
        }
        if (gi->too_large) {
                (void) grpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                      "grpc: trying to send message larger than max (more than %zu bytes)", gi->max);
                return;
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
                grpc_invoke_done(gi);
                (void) grpc_call_fail_detail(c, g, status_text(gi->status), "%s", status_text(gi->status));
                return;
        }
        reply(gi);
}

static void on_cancel(GrpcCall *c, void *userdata) {
        GrpcInvoke *gi = userdata;
        invoke_call_cancel(gi->ic);
        grpc_invoke_done(gi);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the callee answered");
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
        char method_stack[512], *method = msg ? msg->method : NULL;
        _cleanup_free_ char *method_alloc = NULL;
        size_t n_hv = 0, n_md = 0;
        int k;

        if (!*req->id)
                return grpc_fail_dapr(c, DAPR_ERR_DIRECT_INVOKE_NOT_FOUND,
                                      "failed getting app id either from the URL path or the header dapr-app-id");
        /* daprd refuses these for an HTTP callee (pkg/channel/http) with INVALID_ARGUMENT */
        if (!msg || !msg->http_extension)
                return grpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "missing HTTP extension field");
        unsigned v = (unsigned) msg->http_extension->verb;
        if (v == 0 || v >= ELEMENTSOF(verbs) || v == DAPR__PROTO__COMMON__V1__HTTPEXTENSION__VERB__CONNECT)
                return grpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "invalid HTTP verb");

        /* "method?query": the block copies it in invoke_start() */
        const char *qs = msg->http_extension->querystring;
        if (*qs) {
                size_t lm = strlen(msg->method), lq = strlen(qs);
                if (lm + 1 + lq + 1 <= sizeof method_stack)
                        method = method_stack;
                else if (!(method = method_alloc = malloc(lm + 1 + lq + 1)))
                        return -ENOMEM;
                char *w = mempcpy(method, msg->method, lm);
                *w++ = '?';
                memcpy(w, qs, lq + 1);
        }

        /* The caller's metadata as headers: the array is read by invoke_start() only, the strings
         * are the call's (valid until it is answered, which is after done or cancel), and so are the
         * request's (the content type, the body). */
        for (char *const *p = grpc_call_metadata_pairs(c); p[0] && p[1]; p += 2)
                n_md += 2;
        if (n_md + 3 > ELEMENTSOF(hv_stack)) {
                hv = malloc((n_md + 3) * sizeof(char *));
                if (!hv)
                        return -ENOMEM;
        }
        for (char *const *p = grpc_call_metadata_pairs(c); p[0] && p[1]; p += 2)
                if (header_forwardable(p[0], strlen(p[0]), true)) {
                        hv[n_hv++] = p[0];
                        hv[n_hv++] = p[1];
                }
        if (*msg->content_type) {
                hv[n_hv++] = (char *) "Content-Type";
                hv[n_hv++] = msg->content_type;
        }
        hv[n_hv] = NULL;

        gi = grpc_call_scratch(c, sizeof *gi);
        gi->call = c;
        gi->max = manager_max_body(grpc_call_manager(c)) ?: 4U << 20;
        InvokeRequest ireq = {
                .caller_app = grpc_call_app_id(c),
                .target_app = req->id,
                .verb = verbs[v],
                .method = method,
                .headers = hv,
                /* borrowed from the request, which stays until the call is answered */
                .body = msg->data ? msg->data->value.data : NULL,
                .body_len = msg->data ? msg->data->value.len : 0,
        };
        k = invoke_start(grpc_call_registry(c), &ireq, &handler, gi, &gi->ic);
        if (hv != hv_stack)
                free(hv);
        if (k < 0) {
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
