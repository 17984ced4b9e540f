/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes gRPC's framing (util/grpc-frame.c): the input, cut into pieces at places
 * the first bytes choose, is fed to a decoder with a small message limit; a
 * message handed out must have the length its prefix announced and never
 * more than the limit, and the decoder must hold no more than the limit plus
 * one prefix. The same bytes go to the grpc-timeout parser and through the
 * grpc-message percent-encoding, which must round-trip, and to the request
 * header field checks, whose verdicts must hold for every byte.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "util/grpc-frame.h"

#define LIMIT 4096

typedef struct Seen {
        size_t messages, bytes;
} Seen;

static int on_message(const uint8_t *msg, size_t len, void *userdata) {
        Seen *s = userdata;
        if (len > LIMIT || (len > 0 && !msg))
                abort();
        s->messages++;
        s->bytes += len;
        return s->messages > 10000 ? -ECANCELED : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        GrpcDecoder d;
        Seen seen = {};
        size_t off = 0, step;
        int r = 0;

        if (size < 1 || size > 1024 * 1024)
                return 0;
        step = data[0] % 17 + 1;
        grpc_decoder_init(&d, LIMIT);
        for (off = 1; off < size && r >= 0; off += step) {
                size_t n = size - off < step ? size - off : step;
                r = grpc_decoder_feed(&d, data + off, n, on_message, &seen);
                if (grpc_decoder_buffered(&d) > LIMIT + GRPC_PREFIX_SIZE)
                        abort();
        }
        if (r < 0 && r != -EMSGSIZE && r != -EPROTONOSUPPORT && r != -EBADMSG && r != -ECANCELED && r != -ENOMEM)
                abort();
        if (seen.bytes + seen.messages * GRPC_PREFIX_SIZE > size)
                abort();
        grpc_decoder_done(&d);

        /* as a header field name and value */
        GrpcFieldName k = grpc_field_name_check(data, size);
        bool upper = false, other = false;
        for (size_t i = 0; i < size; i++) {
                uint8_t ch = data[i];
                if (ch >= 'A' && ch <= 'Z')
                        upper = true;
                else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch)) ||
                         ch == 0)
                        other = true;
        }
        if (k != (upper ? GRPC_FIELD_NAME_UPPER : other ? GRPC_FIELD_NAME_INVALID : GRPC_FIELD_NAME_OK))
                abort();
        /* exact verdicts, byte by byte */
        bool value_ok = data[0] != ' ' && data[0] != '\t' && data[size - 1] != ' ' && data[size - 1] != '\t';
        bool pseudo_ok = true;
        for (size_t i = 0; i < size; i++) {
                if (data[i] == 0 || data[i] == '\r' || data[i] == '\n')
                        value_ok = false;
                if (data[i] <= 0x20 || data[i] >= 0x7f)
                        pseudo_ok = false;
        }
        if (grpc_field_value_ok(data, size) != value_ok || grpc_pseudo_value_ok(data, size, true) != pseudo_ok)
                abort();
        int64_t cl;
        if (grpc_content_length_parse(data, size, &cl) >= 0) {
                if (cl < 0 || size > 18)
                        abort();
                char digits[32];
                snprintf(digits, sizeof digits, "%lld", (long long) cl);
                /* the digits again, leading zeros aside */
                size_t z = 0;
                while (z + 1 < size && data[z] == '0')
                        z++;
                if (strlen(digits) != size - z || memcmp(digits, data + z, size - z) != 0)
                        abort();
        }

        /* as text: grpc-timeout and grpc-message */
        char *s = strndup((const char *) data, size);
        if (s) {
                uint64_t usec;
                (void) grpc_timeout_parse(s, &usec);
                char *enc = grpc_percent_encode(s), *dec = enc ? grpc_percent_decode(enc) : NULL;
                if (enc) {
                        for (const char *p = enc; *p; p++)
                                if (*p < 0x20 || *p > 0x7e)
                                        abort();
                }
                if (dec && strcmp(dec, s) != 0)
                        abort();
                free(dec);
                free(enc);
                free(s);
        }
        return 0;
}
