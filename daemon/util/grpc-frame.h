/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC's wire framing over HTTP/2, protocol-free and without I/O so it can be
 * fuzzed: the length-prefixed messages of a DATA stream (1 byte compressed
 * flag, 4 bytes big-endian length, the message), the grpc-timeout header, and
 * the percent-encoding of grpc-message. Every limit is checked before memory
 * is taken: a peer cannot make the decoder hold more than max_message bytes
 * plus one prefix.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GRPC_PREFIX_SIZE 5

typedef struct GrpcDecoder {
        size_t max_message;     /* a message longer than this fails with -EMSGSIZE */
        uint8_t prefix[GRPC_PREFIX_SIZE];
        size_t have_prefix;     /* bytes of prefix[] filled */
        uint8_t *buf;           /* the message being read, malloc'd once its length is known */
        size_t len, have;       /* its length, and how much of it arrived */
        size_t last_size;       /* on -EMSGSIZE: the length the peer announced */
} GrpcDecoder;

void grpc_decoder_init(GrpcDecoder *d, size_t max_message);
void grpc_decoder_done(GrpcDecoder *d);
/* Bytes held (prefix and partial message), for a connection's accounting. */
size_t grpc_decoder_buffered(const GrpcDecoder *d);
/* True while a message has begun and not ended (a stream closed here was cut short). */
bool grpc_decoder_partial(const GrpcDecoder *d);

/*
 * Called for every complete message, in order; msg is valid during the call. A negative return
 * stops decoding and is passed on.
 */
typedef int (*GrpcMessageFn)(const uint8_t *msg, size_t len, void *userdata);
/*
 * Feeds bytes. 0 when all were taken; -EMSGSIZE a message is longer than max_message
 * (d->last_size says how long); -EPROTONOSUPPORT a compressed message (we offer no encoding);
 * -EBADMSG a flag byte that is neither 0 nor 1; -ENOMEM; or fn's error. After an error the
 * decoder takes nothing more.
 */
int grpc_decoder_feed(GrpcDecoder *d, const uint8_t *data, size_t len, GrpcMessageFn fn, void *userdata);

/* The 5-byte prefix of an uncompressed message of len bytes. */
void grpc_frame_prefix(uint8_t out[GRPC_PREFIX_SIZE], uint32_t len);

/*
 * grpc-timeout ("1-8 digits" then one of H M S m u n) in microseconds, rounded up, saturating.
 * -EINVAL when malformed.
 */
int grpc_timeout_parse(const char *s, uint64_t *ret_usec);

/*
 * Request header fields as RFC 9113 8.2.1 wants them (the checks nghttp2's HTTP messaging made):
 * a name is lower-case RFC 9110 tchar; upper case makes the request malformed, any other bad
 * byte only the field (it is dropped).
 */
typedef enum GrpcFieldName {
        GRPC_FIELD_NAME_OK,
        GRPC_FIELD_NAME_UPPER,
        GRPC_FIELD_NAME_INVALID,
} GrpcFieldName;
/* A value has no NUL, CR or LF and no space or tab at either end: grpc_field_value_ok(). A
 * pseudo-header's value (method, scheme, path, authority) is visible ASCII only, non-empty if
 * asked: grpc_pseudo_value_ok(). Inline: they run for every field of every request. */

/* Word-at-a-time byte tests (eight bytes per step; fields are checked on every call). */
#define GRPC_ONES UINT64_C(0x0101010101010101)
#define GRPC_HIGHS UINT64_C(0x8080808080808080)
static inline uint64_t grpc_load64(const uint8_t *p) {
        uint64_t x;
        memcpy(&x, p, sizeof x);
        return x;
}

/* Every byte of x is a lower-case letter or '-', as in nearly every field name. Exact per byte:
 * with the high bits set first, no subtraction borrows from the byte above. */
static inline bool grpc_name_word_plain(uint64_t x) {
        uint64_t h = x | GRPC_HIGHS;
        uint64_t ge_a = h - GRPC_ONES * 'a';            /* high bit: byte >= 'a' */
        uint64_t gt_z = h - GRPC_ONES * ('z' + 1);      /* high bit: byte > 'z' */
        uint64_t not_dash = ((x ^ (GRPC_ONES * '-')) | GRPC_HIGHS) - GRPC_ONES; /* high bit: byte != '-' */
        return (x & GRPC_HIGHS) == 0 && (((ge_a & ~gt_z) | ~not_dash) & GRPC_HIGHS) == GRPC_HIGHS;
}

static inline GrpcFieldName grpc_field_name_check(const uint8_t *name, size_t n) {
        /* RFC 9110 tchar, lower case only */
        static const bool grpc_name_char[256] = {
                ['!'] = true, ['#'] = true, ['$'] = true, ['%'] = true, ['&'] = true, ['\''] = true,
                ['*'] = true, ['+'] = true, ['-'] = true, ['.'] = true, ['^'] = true, ['_'] = true,
                ['`'] = true, ['|'] = true, ['~'] = true, ['0' ... '9'] = true, ['a' ... 'z'] = true,
        };
        GrpcFieldName r = n > 0 ? GRPC_FIELD_NAME_OK : GRPC_FIELD_NAME_INVALID;
        size_t i = 0;

        /* Eight plain bytes at a time, the last ones as a word overlapping what was checked;
         * from the first word with another byte on, one by one. */
        if (n >= 8) {
                for (; i + 8 <= n; i += 8)
                        if (!grpc_name_word_plain(grpc_load64(name + i)))
                                break;
                if (i == n || (i + 8 > n && grpc_name_word_plain(grpc_load64(name + n - 8))))
                        return r;
        }
        for (; i < n; i++)
                if (!grpc_name_char[name[i]]) {
                        if (name[i] >= 'A' && name[i] <= 'Z')
                                return GRPC_FIELD_NAME_UPPER;
                        r = GRPC_FIELD_NAME_INVALID;
                }
        return r;
}
/* some byte of x is zero */
static inline bool grpc_has_zero(uint64_t x) {
        return ((x - GRPC_ONES) & ~x & GRPC_HIGHS) != 0;
}
/* some byte of x is below n (n <= 128) */
static inline bool grpc_has_less(uint64_t x, uint8_t n) {
        return ((x - GRPC_ONES * n) & ~x & GRPC_HIGHS) != 0;
}
/* some byte of x is above n (n <= 127) */
static inline bool grpc_has_more(uint64_t x, uint8_t n) {
        return (((x + GRPC_ONES * (uint8_t) (127 - n)) | x) & GRPC_HIGHS) != 0;
}

/* NUL, CR or LF in x; a word without control characters (nearly every one) is passed by the first test */
static inline bool grpc_value_word_bad(uint64_t x) {
        return grpc_has_less(x, 0x20) &&
               (grpc_has_zero(x) || grpc_has_zero(x ^ (GRPC_ONES * '\r')) || grpc_has_zero(x ^ (GRPC_ONES * '\n')));
}

static inline bool grpc_pseudo_word_bad(uint64_t x) {
        return grpc_has_less(x, 0x21) || grpc_has_more(x, 0x7e);
}

/* Eight bytes at a time; from eight bytes on, the last bytes as one more word that overlaps
 * what was checked already, rather than one by one. */
static inline bool grpc_field_value_ok(const uint8_t *v, size_t n) {
        size_t i = 0;
        if (n > 0 && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t'))
                return false;
        if (n >= 8) {
                for (; i + 8 <= n; i += 8)
                        if (grpc_value_word_bad(grpc_load64(v + i)))
                                return false;
                return i == n || !grpc_value_word_bad(grpc_load64(v + n - 8));
        }
        for (; i < n; i++)
                if (v[i] == 0 || v[i] == '\r' || v[i] == '\n')
                        return false;
        return true;
}

static inline bool grpc_pseudo_value_ok(const uint8_t *v, size_t n, bool nonempty) {
        size_t i = 0;
        if (n == 0)
                return !nonempty;
        if (n >= 8) {
                for (; i + 8 <= n; i += 8)
                        if (grpc_pseudo_word_bad(grpc_load64(v + i)))
                                return false;
                return i == n || !grpc_pseudo_word_bad(grpc_load64(v + n - 8));
        }
        for (; i < n; i++)
                if (v[i] <= 0x20 || v[i] >= 0x7f)
                        return false;
        return true;
}
/* content-length: decimal digits only, at most 18. -EINVAL otherwise. */
int grpc_content_length_parse(const uint8_t *v, size_t n, int64_t *ret);

/* grpc-message's percent-encoding (bytes outside 0x20..0x7e and '%' become %XX). malloc'd or NULL. */
char *grpc_percent_encode(const char *s);
/* The reverse, tolerant as the spec asks: a bad escape is kept as is. malloc'd or NULL. */
char *grpc_percent_decode(const char *s);
