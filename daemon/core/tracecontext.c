/* SPDX-License-Identifier: Apache-2.0 */
/* See tracecontext.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "tracecontext.h"

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1; /* upper case is invalid in traceparent */
}

/* n bytes from 2n hex characters; false on a non-hex character. */
static bool unhex(const char *s, uint8_t *out, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return false;
                out[i] = (uint8_t) (hi << 4 | lo);
        }
        return true;
}

static bool all_zero(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

int traceparent_parse(const char *s, TraceContext *ret) {
        uint8_t version;
        TraceContext t;
        size_t len;

        if (!s)
                return -EINVAL;
        len = strlen(s);
        if (len < TRACEPARENT_LEN || !unhex(s, &version, 1) || version == 0xff)
                return -EINVAL;
        if (s[2] != '-' || s[35] != '-' || s[52] != '-')
                return -EINVAL;
        if (!unhex(s + 3, t.trace_id, 16) || !unhex(s + 36, t.span_id, 8) || !unhex(s + 53, &t.flags, 1))
                return -EINVAL;
        if (all_zero(t.trace_id, 16) || all_zero(t.span_id, 8))
                return -EINVAL;
        /* Version 00 has nothing after the flags; later versions may append "-...". */
        if (version == 0 ? len != TRACEPARENT_LEN : (len > TRACEPARENT_LEN && s[TRACEPARENT_LEN] != '-'))
                return -EINVAL;
        *ret = t;
        return 0;
}

static void hex(const uint8_t *p, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[p[i] >> 4];
                out[2 * i + 1] = digits[p[i] & 15];
        }
}

void traceparent_format(const TraceContext *t, char buf[static TRACEPARENT_LEN + 1]) {
        memcpy(buf, "00-", 3);
        hex(t->trace_id, 16, buf + 3);
        buf[35] = '-';
        hex(t->span_id, 8, buf + 36);
        buf[52] = '-';
        hex(&t->flags, 1, buf + 53);
        buf[TRACEPARENT_LEN] = 0;
}

void trace_id_format(const TraceContext *t, char buf[static 33]) {
        hex(t->trace_id, 16, buf);
        buf[32] = 0;
}

/*
 * Trace and span ids must be unique, not secret (W3C Trace Context: "randomly
 * generated"): splitmix64 over a per-thread counter seeded once from
 * getrandom(), so a new span costs no system call on the hot path (a
 * getrandom() per id was two syscalls per proxied call) and a handful of
 * instructions: one word of state, an add and a mix. The mix is a bijection
 * of the counter, so a thread repeats no id before 2^64 of them; threads and
 * processes start at unrelated random points. (xoshiro256** before it kept
 * four words of state and cost about three times as much per id.)
 */
/* initial-exec: the daemon's code is linked into the executable, so the thread's copy is at a fixed
 * offset from the thread pointer; the default for position-independent code called
 * __tls_get_addr() on every access (about a third of making an id). */
static _Thread_local uint64_t rng_state __attribute__((tls_model("initial-exec")));
static _Thread_local bool rng_seeded __attribute__((tls_model("initial-exec")));

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static void rng_seed(void) {
        if (getrandom(&rng_state, sizeof rng_state, GRND_NONBLOCK) != (ssize_t) sizeof rng_state) {
                /* no entropy yet (early boot): time, pid and an address, spread by the mix itself */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                uint64_t x = (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
                x ^= (uint64_t) getpid() << 32 ^ (uint64_t) (uintptr_t) &x;
                rng_state = splitmix64(&x);
        }
        rng_seeded = true;
}

static inline uint64_t random_word(void) {
        if (_unlikely_(!rng_seeded))
                rng_seed();
        return splitmix64(&rng_state);
}

void trace_context_new_span(const TraceContext *parent, bool sampled, TraceContext *ret) {
        TraceContext t;
        if (parent) {
                memcpy(t.trace_id, parent->trace_id, sizeof t.trace_id);
                t.flags = parent->flags;
        } else {
                uint64_t id[2] = { random_word(), random_word() };
                if (!(id[0] | id[1])) /* an all-zero id is invalid */
                        id[0] = 1;
                memcpy(t.trace_id, id, sizeof t.trace_id);
                t.flags = sampled ? 1 : 0;
        }
        uint64_t id = random_word();
        if (!id)
                id = 1;
        memcpy(t.span_id, &id, sizeof t.span_id);
        *ret = t;
}

bool tracestate_is_valid(const char *s) {
        size_t n = 0;
        for (; s && s[n]; n++)
                if ((unsigned char) s[n] < 0x20 || (unsigned char) s[n] > 0x7e || n >= TRACESTATE_MAX)
                        return false;
        return s && n > 0;
}
