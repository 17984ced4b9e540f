/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's gRPC proxying: a call to a method mooringd does not serve, with
 * metadata dapr-app-id: B, goes to app B's own gRPC service (AppProtocol=grpc)
 * through the invoke block's checks (blocks/invoke-stream.h), unary and
 * streaming alike. Messages pass through undecoded, one by one, both ways;
 * the app's headers and trailers come back to the caller, its status too.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/invoke-stream.h"
#include "../util/grpc-frame.h"
#include "../util/strv.h"
#include "services.h"

typedef struct Proxy {
        GrpcCall *call;
        GrpcStream *up;             /* NULL once it ended */
        GrpcDecoder dec;            /* the app's framed messages */
} Proxy;

static void proxy_free(Proxy *p) {
        grpc_stream_cancel(p->up);
        grpc_decoder_done(&p->dec);
        free(p);
}

static bool forwardable(const char *name) {
        return !startswith(name, "grpc-") && !streq(name, "content-type") && !startswith(name, ":");
}

static void up_headers(GrpcStream *s, char *const *headers, void *userdata) {
        Proxy *p = userdata;
        for (char *const *h = headers; h[0] && h[1]; h += 2)
                if (forwardable(h[0]))
                        (void) grpc_call_add_header(p->call, h[0], h[1]);
}

static int up_message(const uint8_t *msg, size_t len, void *userdata) {
        Proxy *p = userdata;
        return grpc_call_send_raw(p->call, msg, len);
}

static bool up_data(GrpcStream *s, const void *buf, size_t len, void *userdata) {
        Proxy *p = userdata;
        int r = grpc_decoder_feed(&p->dec, buf, len, up_message, p);
        if (r < 0) {
                /* the app's framing is broken, or the caller does not read: the call ends here */
                GrpcCall *c = p->call;
                grpc_call_on_cancel(c, NULL, NULL);
                grpc_call_set_userdata(c, NULL);
                p->up = NULL; /* cancelled below by proxy_free, after this callback: mark and reset */
                grpc_stream_cancel(s);
                (void) grpc_call_fail(c, r == -ENOBUFS ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL,
                                      "mooringd could not pass the app's answer on: %s", strerror(-r));
                proxy_free(p);
                return true;
        }
        return true;
}

static void up_done(GrpcStream *s, int error, char *const *trailers, void *userdata) {
        Proxy *p = userdata;
        GrpcCall *c = p->call;

        p->up = NULL;
        grpc_call_on_cancel(c, NULL, NULL);
        grpc_call_set_userdata(c, NULL);
        if (error < 0) {
                (void) grpc_call_fail(c, error == -ETIMEDOUT ? GRPC_STATUS_DEADLINE_EXCEEDED : GRPC_STATUS_UNAVAILABLE,
                                      "failed to proxy request: %s",
                                      error == -EPROTO ? "the app's answer is not gRPC" : strerror(-error));
                proxy_free(p);
                return;
        }
        for (char *const *t = trailers; t[0] && t[1]; t += 2)
                if (forwardable(t[0]) || streq(t[0], "grpc-status-details-bin"))
                        (void) grpc_call_add_trailer(c, t[0], t[1]);
        long code = strtol(grpc_pairs_get(trailers, "grpc-status"), NULL, 10);
        const char *m = grpc_pairs_get(trailers, "grpc-message");
        _cleanup_free_ char *msg = m ? grpc_percent_decode(m) : NULL;
        if (code == 0)
                (void) grpc_call_reply(c, NULL);
        else
                (void) grpc_call_fail(c, (GrpcCode) code, "%s", msg ?: "");
        proxy_free(p);
}

static const GrpcStreamHandler up_handler = {
        .headers = up_headers,
        .data = up_data,
        .done = up_done,
};

static void on_cancel(GrpcCall *c, void *userdata) {
        Proxy *p = userdata;
        grpc_call_set_userdata(c, NULL);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended");
        proxy_free(p);
}

static int proxy_open(GrpcCall *c) {
        _cleanup_free_ char *err = NULL;
        const char *target = grpc_call_metadata(c, "dapr-app-id");
        uint64_t left = grpc_call_deadline_left_usec(c);
        Proxy *p = calloc(1, sizeof *p);
        int r;

        if (!p)
                return -ENOMEM;
        p->call = c;
        grpc_decoder_init(&p->dec, 64U << 20);
        r = invoke_stream_open(grpc_call_registry(c), grpc_call_app_id(c), target, grpc_call_path(c),
                               grpc_call_metadata_pairs(c), left == UINT64_MAX ? 0 : MAX(left, 1U), &up_handler, p,
                               &p->up, &err);
        if (r < 0) {
                p->up = NULL;
                proxy_free(p);
                if (r == -ENOMEM)
                        return r;
                if (r == -EPROTONOSUPPORT)
                        return grpc_call_fail(c, GRPC_STATUS_UNIMPLEMENTED, "%s", err);
                return grpc_fail_dapr_status(c, error_grpc_status(ERROR_CONTEXT_INVOKE, r, DAPR_ERR_DIRECT_INVOKE),
                                             error_lookup(ERROR_CONTEXT_INVOKE, r)->dapr, "%s", err);
        }
        grpc_call_set_userdata(c, p);
        grpc_call_on_cancel(c, on_cancel, p);
        return 0;
}

static int proxy_raw(GrpcCall *c, const uint8_t *msg, size_t len) {
        Proxy *p = grpc_call_get_userdata(c);
        uint8_t prefix[GRPC_PREFIX_SIZE];
        int r;

        if (!p || !p->up)
                return 0;
        grpc_frame_prefix(prefix, (uint32_t) len);
        r = grpc_stream_send(p->up, prefix, sizeof prefix);
        if (r >= 0 && len > 0)
                r = grpc_stream_send(p->up, msg, len);
        return r == -EPIPE ? 0 : r;
}

static void proxy_half_closed(GrpcCall *c) {
        Proxy *p = grpc_call_get_userdata(c);
        if (p && p->up)
                grpc_stream_close_send(p->up);
}

const GrpcMethod grpc_proxy_method = {
        .path = "(proxy)",
        .kind = GRPC_METHOD_RAW,
        .open = proxy_open,
        .raw = proxy_raw,
        .half_closed = proxy_half_closed,
};
