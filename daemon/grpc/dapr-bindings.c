/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's output binding RPC, InvokeBinding: the same bindings_invoke() as
 * http/api-bindings.c. The data goes to the binding as the bytes sent (daprd
 * does not re-encode gRPC data as it re-encodes the JSON "data" of the HTTP
 * body); the binding's answer and its metadata come back in
 * InvokeBindingResponse. Every refusal or failure is Dapr's
 * ERR_INVOKE_OUTPUT_BINDING, INTERNAL, as daprd answers it, with the block's
 * message (the same text the HTTP route answers).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/bindings.h"
#include "../util/strv.h"
#include "services.h"

typedef struct BindingCall {
        GrpcCall *call;
        BindingOut *out;
        char *name;
} BindingCall;

static void binding_call_free(BindingCall *bc) {
        if (!bc)
                return;
        free(bc->name);
        free(bc);
}

static void on_cancel(GrpcCall *c, void *userdata) {
        BindingCall *bc = userdata;
        /* the binding still finishes; nobody hears of it */
        bindings_invoke_cancel(bc->out);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the binding answered");
        binding_call_free(bc);
}

static void on_done(int error, const char *message, const BindingResponse *r, void *userdata) {
        BindingCall *bc = userdata;
        GrpcCall *c = bc->call;
        PB(InvokeBindingResponse) resp = DAPR__PROTO__RUNTIME__V1__INVOKE_BINDING_RESPONSE__INIT;
        _cleanup_free_ PB(InvokeBindingResponse__MetadataEntry) *md = NULL;
        _cleanup_free_ PB(InvokeBindingResponse__MetadataEntry) **mdp = NULL;
        size_t n = 0;

        grpc_call_on_cancel(c, NULL, NULL);
        if (error < 0) {
                const ErrorRow *row = error_lookup(ERROR_CONTEXT_BINDING, error);
                (void) grpc_fail_dapr_status(c, error_grpc_status(ERROR_CONTEXT_BINDING, error, row->dapr), row->dapr,
                                             "%s", message ?: strerror(-error));
                goto out;
        }
        n = r ? strv_length(r->metadata) / 2 : 0;
        md = calloc(n ?: 1, sizeof *md);
        mdp = calloc(n ?: 1, sizeof *mdp);
        if (!md || !mdp) {
                (void) grpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                dapr__proto__runtime__v1__invoke_binding_response__metadata_entry__init(&md[i]);
                md[i].key = r->metadata[2 * i];
                md[i].value = r->metadata[2 * i + 1];
                mdp[i] = &md[i];
        }
        if (r && r->data)
                resp.data = (ProtobufCBinaryData){ r->len, (uint8_t *) r->data };
        resp.n_metadata = n;
        resp.metadata = mdp;
        (void) grpc_call_reply(c, &resp.base);
out:
        binding_call_free(bc);
}

int grpc_dapr_invoke_binding(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(InvokeBindingRequest) *req = (const PB(InvokeBindingRequest) *) m;
        _cleanup_strv_free_ char **md = NULL;
        BindingCall *bc;
        int k;

        for (size_t i = 0; i < req->n_metadata; i++)
                if (strv_extend(&md, req->metadata[i]->key) < 0 || strv_extend(&md, req->metadata[i]->value) < 0)
                        return -ENOMEM;
        bc = calloc(1, sizeof *bc);
        if (!bc)
                return -ENOMEM;
        *bc = (BindingCall){ .call = c, .name = strdup(req->name) };
        if (!bc->name) {
                free(bc);
                return -ENOMEM;
        }
        BindingInvokeRequest br = {
                .app = grpc_call_app_id(c),
                .name = req->name,
                .operation = req->operation,
                .data = req->data.data ?: (const uint8_t *) "",
                .len = req->data.len,
                .metadata = md,
                .traceparent = grpc_call_metadata(c, "traceparent"),
                .tracestate = grpc_call_metadata(c, "tracestate"),
        };
        k = bindings_invoke(grpc_call_registry(c), &br, on_done, bc, &bc->out);
        if (k < 0) {
                binding_call_free(bc);
                return k;
        }
        grpc_call_on_cancel(c, on_cancel, bc);
        return 0;
}
