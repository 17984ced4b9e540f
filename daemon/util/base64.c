/* SPDX-License-Identifier: Apache-2.0 */
/* See base64.h. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "base64.h"

static const char alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_len(size_t n) {
        return (n / 3 + (n % 3 != 0)) * 4;
}

size_t base64_encode_to(const void *p, size_t n, char *buf) {
        const uint8_t *s = p;
        char *o = buf;
        size_t i = 0;

        for (; i + 3 <= n; i += 3) {
                uint32_t v = (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8 | s[i + 2];
                *o++ = alphabet[v >> 18];
                *o++ = alphabet[(v >> 12) & 63];
                *o++ = alphabet[(v >> 6) & 63];
                *o++ = alphabet[v & 63];
        }
        if (i < n) {
                uint32_t v = (uint32_t) s[i] << 16 | (i + 1 < n ? (uint32_t) s[i + 1] << 8 : 0);
                *o++ = alphabet[v >> 18];
                *o++ = alphabet[(v >> 12) & 63];
                *o++ = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
                *o++ = '=';
        }
        *o = '\0';
        return (size_t) (o - buf);
}

char *base64_encode(const void *p, size_t n) {
        size_t len = base64_encoded_len(n);
        char *buf;

        if (len < n) /* overflow: n near SIZE_MAX */
                return NULL;
        buf = malloc(len + 1);
        if (!buf)
                return NULL;
        base64_encode_to(p, n, buf);
        return buf;
}

static int b64val(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+' || c == '-')
                return 62;
        if (c == '/' || c == '_')
                return 63;
        return -1;
}

int base64_decode(const char *s, size_t len, char **ret, size_t *ret_len) {
        uint32_t acc = 0;
        unsigned bits = 0;
        char *out, *o;

        while (len > 0 && s[len - 1] == '=')
                len--;
        /* One character alone carries 6 bits, less than a byte: never valid. */
        if (len % 4 == 1)
                return -EINVAL;
        out = malloc(len / 4 * 3 + 3);
        if (!out)
                return -ENOMEM;
        o = out;
        for (size_t i = 0; i < len; i++) {
                int v = b64val(s[i]);
                if (v < 0) {
                        free(out);
                        return -EINVAL;
                }
                acc = (acc << 6) | (uint32_t) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        *o++ = (char) ((acc >> bits) & 0xff);
                }
        }
        *o = '\0';
        *ret_len = (size_t) (o - out);
        *ret = out;
        return 0;
}
