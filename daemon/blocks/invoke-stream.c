/* SPDX-License-Identifier: Apache-2.0 */
/* See invoke-stream.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/app.h"
#include "../core/configuration.h"
#include "../core/registry.h"
#include "../core/tracecontext.h"
#include "../transport/app-channel.h"
#include "../util/strv.h"
#include "invoke-stream.h"
#include "invoke.h"

/* The same bound on chains through this host as invoke.c's. */
#define STREAM_HOPS_MAX 16

static int refuse(char **reterr_msg, int error, const char *fmt, ...) _printf_(3, 4);
static int refuse(char **reterr_msg, int error, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(reterr_msg, fmt, ap) < 0)
                *reterr_msg = NULL;
        va_end(ap);
        return *reterr_msg ? error : -ENOMEM;
}

int invoke_stream_open(Registry *m, const char *caller_app, const char *target_app, const char *path,
                       char *const *metadata, uint64_t timeout_usec, const GrpcStreamHandler *h, void *userdata,
                       GrpcStream **ret, char **reterr_msg) {
        /* never forwarded: routing, the caller's identity, and what the transport sets itself */
        static const char *const drop[] = { "dapr-app-id", "dapr-caller-app-id", "dapr-callee-app-id",
                                            "dapr-api-token", "traceparent", "tracestate", "grpc-timeout",
                                            "content-type", "te", "user-agent", INVOKE_HOPS_HEADER, NULL };
        _cleanup_strv_free_ char **md = NULL;
        const Configuration *cfg = NULL;
        const char *cfg_error = NULL, *reason = NULL;
        TransportAddress addr;
        App *target = registry_find_app(m, target_app);
        char tp[TRACEPARENT_LEN + 1], hops[16];
        int r;

        if (!target)
                return refuse(reterr_msg, -ENOENT, "failed to invoke, id: %s, err: no app '%s' is registered on "
                              "this host", target_app, target_app);
        r = registry_app_configuration(m, target, &cfg, &cfg_error);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return refuse(reterr_msg, -EACCES, "access control configuration is invalid: %s", cfg_error);
        if (acl_evaluate(cfg, caller_app, "NONE", path, &reason) == ACL_DENY)
                return refuse(reterr_msg, -EACCES, "access control policy has denied access to id: %s operation: "
                              "%s verb: NONE (%s)", target_app, path, reason);
        if (!app_channel_address(target, &addr))
                return refuse(reterr_msg, -EADDRNOTAVAIL, "app '%s' has no AppAddress: it takes no calls",
                              target_app);
        if (addr.protocol != TRANSPORT_PROTOCOL_GRPC)
                return refuse(reterr_msg, -EPROTONOSUPPORT, "app '%s' does not speak gRPC (AppProtocol=grpc): "
                              "call its methods through InvokeService", target_app);
        if (app_channel_is_down(target))
                return refuse(reterr_msg, -EHOSTDOWN, "app '%s' is unhealthy (its health probe fails)", target_app);
        const char *hops_in = grpc_pairs_get(metadata, INVOKE_HOPS_HEADER);
        unsigned long n_hops = hops_in ? strtoul(hops_in, NULL, 10) : 0;
        if (n_hops >= STREAM_HOPS_MAX)
                return refuse(reterr_msg, -ELOOP, "invocation loop: the call went through mooringd %lu times",
                              n_hops);

        TraceContext parent, span;
        bool has_parent = traceparent_parse(grpc_pairs_get(metadata, "traceparent"), &parent) >= 0;
        trace_context_new_span(has_parent ? &parent : NULL, false, &span);
        traceparent_format(&span, tp);
        snprintf(hops, sizeof hops, "%lu", n_hops + 1);
        for (char *const *p = metadata; p && p[0] && p[1]; p += 2) {
                bool keep = p[0][0] != ':';
                for (const char *const *d = drop; keep && *d; d++)
                        keep = strcasecmp(p[0], *d) != 0;
                if (keep && (strv_extend(&md, p[0]) < 0 || strv_extend(&md, p[1]) < 0))
                        return -ENOMEM;
        }
        const char *ts = has_parent ? grpc_pairs_get(metadata, "tracestate") : NULL;
        if ((caller_app && (strv_extend(&md, "dapr-caller-app-id") < 0 || strv_extend(&md, caller_app) < 0)) ||
            strv_extend(&md, "dapr-callee-app-id") < 0 || strv_extend(&md, target_app) < 0 ||
            strv_extend(&md, "traceparent") < 0 || strv_extend(&md, tp) < 0 ||
            (ts && tracestate_is_valid(ts) && (strv_extend(&md, "tracestate") < 0 || strv_extend(&md, ts) < 0)) ||
            strv_extend(&md, INVOKE_HOPS_HEADER) < 0 || strv_extend(&md, hops) < 0)
                return -ENOMEM;
        /* Bounded by the caller's deadline only: InvokeTimeoutSec= is for one request and answer, a
         * stream may rightly live long. */
        return grpc_channel_open(transport_grpc_channel(m->transport), &addr, path, md, timeout_usec, h, userdata, ret);
}
