/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the decoding of every request mooringd's gRPC services take
 * (grpc/services.c's tables, unpacked by libprotobuf-c with the generated
 * descriptors exactly as grpc/server.c does): the first byte picks the method,
 * the rest is the message. A message that decodes must encode again to the
 * size protobuf-c announces, and that encoding must decode again.
 */
#include <stdlib.h>

#include "fuzz.h"
#include "grpc/services.h"

static size_t n_methods(void) {
        size_t n = 0;
        for (const GrpcService *const *s = grpc_services; *s; s++)
                n += (*s)->n_methods;
        return n;
}

static const GrpcMethod *method_at(size_t i) {
        for (const GrpcService *const *s = grpc_services; *s; s++) {
                if (i < (*s)->n_methods)
                        return &(*s)->methods[i];
                i -= (*s)->n_methods;
        }
        return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > 1024 * 1024)
                return 0;
        const GrpcMethod *m = method_at(data[0] % n_methods());
        ProtobufCMessage *msg = protobuf_c_message_unpack(m->request, NULL, size - 1, data + 1);
        if (!msg)
                return 0;
        size_t n = protobuf_c_message_get_packed_size(msg);
        uint8_t *buf = malloc(n ?: 1);
        if (!buf)
                abort();
        if (protobuf_c_message_pack(msg, buf) != n)
                abort();
        ProtobufCMessage *again = protobuf_c_message_unpack(m->request, NULL, n, buf);
        if (!again)
                abort();
        protobuf_c_message_free_unpacked(again, NULL);
        protobuf_c_message_free_unpacked(msg, NULL);
        free(buf);
        return 0;
}
