/* SPDX-License-Identifier: Apache-2.0 */
/* See grpc-frame.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "grpc-frame.h"

void grpc_decoder_init(GrpcDecoder *d, size_t max_message) {
        *d = (GrpcDecoder){ .max_message = max_message };
}

void grpc_decoder_done(GrpcDecoder *d) {
        free(d->buf);
        d->buf = NULL;
        d->have_prefix = d->len = d->have = 0;
}

size_t grpc_decoder_buffered(const GrpcDecoder *d) {
        return d->have_prefix + d->have;
}

bool grpc_decoder_partial(const GrpcDecoder *d) {
        return d->have_prefix > 0;
}

int grpc_decoder_feed(GrpcDecoder *d, const uint8_t *data, size_t len, GrpcMessageFn fn, void *userdata) {
        int r;

        while (len > 0) {
                if (d->have_prefix < GRPC_PREFIX_SIZE) {
                        size_t n = MIN(len, GRPC_PREFIX_SIZE - d->have_prefix);
                        memcpy(d->prefix + d->have_prefix, data, n);
                        d->have_prefix += n;
                        data += n;
                        len -= n;
                        if (d->have_prefix < GRPC_PREFIX_SIZE)
                                return 0;
                        if (d->prefix[0] == 1)
                                return -EPROTONOSUPPORT;
                        if (d->prefix[0] != 0)
                                return -EBADMSG;
                        d->len = (size_t) d->prefix[1] << 24 | (size_t) d->prefix[2] << 16 |
                                 (size_t) d->prefix[3] << 8 | d->prefix[4];
                        if (d->len > d->max_message) {
                                d->last_size = d->len;
                                return -EMSGSIZE;
                        }
                        d->have = 0;
                        if (len >= d->len) {
                                /* All of it is in this chunk (the usual case): handed over in
                                 * place, never copied. */
                                size_t mlen = d->len;
                                const uint8_t *msg = data;
                                d->have_prefix = d->len = 0;
                                data += mlen;
                                len -= mlen;
                                r = fn(mlen > 0 ? msg : (const uint8_t *) "", mlen, userdata);
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        /* Only the announced length, and only once it is known to be allowed. */
                        d->buf = d->len > 0 ? malloc(d->len) : NULL;
                        if (d->len > 0 && !d->buf)
                                return -ENOMEM;
                }
                size_t n = MIN(len, d->len - d->have);
                if (n > 0)
                        memcpy(d->buf + d->have, data, n);
                d->have += n;
                data += n;
                len -= n;
                if (d->have < d->len)
                        return 0;
                /* complete: hand it over, then start on the next prefix */
                uint8_t *msg = TAKE_PTR(d->buf);
                size_t mlen = d->len;
                d->have_prefix = d->have = d->len = 0;
                r = fn(msg ?: (const uint8_t *) "", mlen, userdata);
                free(msg);
                if (r < 0)
                        return r;
        }
        return 0;
}

void grpc_frame_prefix(uint8_t out[GRPC_PREFIX_SIZE], uint32_t len) {
        out[0] = 0;
        out[1] = (uint8_t) (len >> 24);
        out[2] = (uint8_t) (len >> 16);
        out[3] = (uint8_t) (len >> 8);
        out[4] = (uint8_t) len;
}

int grpc_timeout_parse(const char *s, uint64_t *ret_usec) {
        uint64_t v = 0, usec;
        size_t n = 0;

        while (s[n] >= '0' && s[n] <= '9') {
                if (n == 8)
                        return -EINVAL; /* the spec allows at most 8 digits */
                v = v * 10 + (uint64_t) (s[n] - '0');
                n++;
        }
        if (n == 0 || !s[n] || s[n + 1])
                return -EINVAL;
        switch (s[n]) {
        case 'H':
                usec = v * 3600ULL * 1000000ULL;
                break;
        case 'M':
                usec = v * 60ULL * 1000000ULL;
                break;
        case 'S':
                usec = v * 1000000ULL;
                break;
        case 'm':
                usec = v * 1000ULL;
                break;
        case 'u':
                usec = v;
                break;
        case 'n':
                usec = (v + 999) / 1000;
                break;
        default:
                return -EINVAL;
        }
        *ret_usec = usec; /* 99999999 hours still fits in 64 bits of microseconds */
        return 0;
}

char *grpc_percent_encode(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                n += (*p < 0x20 || *p > 0x7e || *p == '%') ? 3 : 1;
        char *out = malloc(n + 1), *o = out;
        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p < 0x20 || *p > 0x7e || *p == '%') {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 15];
                } else
                        *o++ = (char) *p;
        }
        *o = 0;
        return out;
}

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

char *grpc_percent_decode(const char *s) {
        char *out = malloc(strlen(s) + 1), *o = out;
        if (!out)
                return NULL;
        for (const char *p = s; *p; p++) {
                int hi, lo;
                if (p[0] == '%' && (hi = unhex(p[1])) >= 0 && (lo = unhex(p[2])) >= 0) {
                        *o++ = (char) (hi << 4 | lo);
                        p += 2;
                } else
                        *o++ = *p;
        }
        *o = 0;
        return out;
}

int grpc_content_length_parse(const uint8_t *v, size_t n, int64_t *ret) {
        int64_t x = 0;
        if (n == 0 || n > 18)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (v[i] < '0' || v[i] > '9')
                        return -EINVAL;
                x = x * 10 + (v[i] - '0');
        }
        *ret = x;
        return 0;
}
