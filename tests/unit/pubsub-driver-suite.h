/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A conformance suite for any PubsubDriver (drivers/pubsub/driver.h), header
 * only, for the tests/unit/test-pubsub-<engine>.c files:
 *
 *     #include "tests.h"
 *     #include "pubsub-driver-suite.h"
 *
 *     TEST(suite) {
 *             static const char *const md[] = { "connectionString", "x.db", NULL };
 *             pubsub_driver_suite_run(&pubsub_sqlite_driver, md, PUBSUB_SUITE_PERSISTENT);
 *     }
 *
 * Every case gets a fresh sd_event loop, a fresh state directory, its own
 * topic and group names (unique per process and run, so a shared server such
 * as Redis or Mosquitto needs no cleaning between cases), and brokers built
 * the way the Manager builds them: d->instance_size bytes, the generic
 * PubsubBroker filled in (instance_id "test-<pid>"), then open().
 * Cases drive the loop until the callbacks they wait for arrive, each wait
 * bounded so nothing hangs. Checks that a callback cannot make itself (a
 * deliver() after unsubscribe, a done() twice, a callback from inside the
 * starting call) are recorded there and reported by the case.
 *
 * A case fails on its own: the others still run. Every case prints
 * "  ok suite/<name>", "  FAIL suite/<name>" or "  skip suite/<name> (why)";
 * PUBSUB_SUITE_CASES=a:b runs only the cases named. The suite's TEST fails if
 * any case failed.
 *
 * Timing: no case asserts that something is fast. The only clock checks are
 * lower bounds the contract promises (a retry is not offered before its
 * retry_after), which a slow machine cannot break; "nothing more arrives" is
 * checked by running the loop for a while (a few hundred ms).
 *
 * Readiness: a subscription may need a round trip before its group exists in
 * the broker (Redis XGROUP CREATE, an MQTT SUBSCRIBE). Where a case depends on
 * the group existing before it publishes, it first publishes "probe"
 * messages until one reaches the subscription (pss_sub_ready()). Probes are
 * acked and otherwise ignored by every subscription of the suite.
 */
#pragma once

#include <assert.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "core/component.h"
#include "drivers/pubsub/driver.h"
#include "util/cleanup.h"
#include "util/strv.h"
#include "tests.h"

/* What the driver under test does; flags select and shape the cases. */
typedef enum PubsubSuiteFlags {
        /* Messages, groups and unsettled deliveries survive close() + open() of a new broker
         * instance on the same storage (same metadata, same state directory). */
        PUBSUB_SUITE_PERSISTENT = 1 << 0,
        /* Two subscriptions of one group on one broker do not share the group's messages
         * (skips the competing-consumers case). */
        PUBSUB_SUITE_NO_GROUPS = 1 << 1,
        /* Messages published to a topic no group ever subscribed to are kept and delivered to
         * the first group that subscribes. Without it they are expected to be dropped. */
        PUBSUB_SUITE_KEEPS_UNCLAIMED = 1 << 2,
        /* The broker does not carry publish metadata to deliver(). */
        PUBSUB_SUITE_NO_METADATA = 1 << 3,
        /* The broker does not count attempts: PubsubMessage.attempt is 1 on redeliveries too. */
        PUBSUB_SUITE_NO_ATTEMPTS = 1 << 4,
        /* A group's messages published while it has no subscriber are not kept for it. */
        PUBSUB_SUITE_NO_QUEUE = 1 << 5,
} PubsubSuiteFlags;

#define PSS_WAIT_MS 10000        /* upper bound of any wait for something that must happen */
#define PSS_QUIET_MS 400         /* how long "nothing more arrives" is watched */
#define PSS_MAX_SUBS 32
#define PSS_MAX_BROKERS 8

typedef struct Pss Pss;

typedef enum PssMode {
        PSS_ACK,         /* ACK inside deliver() */
        PSS_HOLD,        /* keep the delivery; the case settles it (or abandons it) */
        PSS_RETRY_FIRST, /* RETRY the first retry_left deliveries (retry_usec), ACK the rest */
        PSS_UNSUB_FIRST, /* unsubscribe from inside the first deliver(), without settling */
} PssMode;

/* One delivery as deliver() saw it, deep-copied. */
typedef struct PssRecv {
        char *data; /* len bytes plus a NUL */
        size_t len;
        int key;    /* n for a payload "m<n>", else -1 */
        unsigned attempt;
        uint64_t at_usec; /* CLOCK_MONOTONIC */
        char **metadata;
} PssRecv;

typedef struct PssSub {
        Pss *suite;
        PubsubBroker *broker;
        PubsubSubscription *sub;
        char *topic, *group;
        PssMode mode;
        unsigned retry_left;
        uint64_t retry_usec;
        bool subscribing; /* inside subscribe(): a deliver() now is a contract violation */
        bool gone;        /* unsubscribed, or its broker closed */
        unsigned n_probes;
        unsigned outstanding, max_outstanding; /* unsettled non-probe deliveries */
        PubsubDelivery **held;
        size_t n_held, cap_held;
        PssRecv *recv; /* every non-probe delivery, in order */
        size_t n_recv, cap_recv;
} PssSub;

/* One publish()'s outcome. */
typedef struct PssPub {
        Pss *suite;
        bool started;
        unsigned n_fired;
        int error;
} PssPub;

struct Pss {
        const PubsubDriver *driver;
        const char *const *metadata;
        unsigned flags;
        const char *case_name;
        sd_event *event;
        char dir[PATH_MAX];
        char instance_id[64];
        char prefix[96];
        PubsubBroker *brokers[PSS_MAX_BROKERS];
        PssSub *subs[PSS_MAX_SUBS];
        size_t n_subs;
        unsigned n_probe_pubs;
        PssPub probe_pubs[64];
        char error[512]; /* first problem a callback saw */
};

/* ---- small helpers ---- */

_unused_ static uint64_t pss_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

_printf_(2, 3) _unused_ static void pss_bad(Pss *S, const char *fmt, ...) {
        va_list ap;
        if (S->error[0])
                return; /* keep the first */
        va_start(ap, fmt);
        (void) vsnprintf(S->error, sizeof S->error, fmt, ap);
        va_end(ap);
}

/* Fails the case if a callback recorded a problem. */
#define PSS_CHECK(S)                                                                               \
        do {                                                                                       \
                if ((S)->error[0]) {                                                               \
                        fprintf(stderr, "%s:%d: [%s] %s\n", __FILE__, __LINE__, (S)->case_name,     \
                                (S)->error);                                                       \
                        test_fail();                                                               \
                }                                                                                  \
        } while (0)

/* Runs the loop until cond holds or ms passed; evaluates to cond's last value. */
#define PSS_WAIT_UNTIL(S, cond, ms)                                                                \
        ({                                                                                         \
                uint64_t _end = pss_now() + (uint64_t) (ms) * 1000ULL;                             \
                bool _ok;                                                                          \
                for (;;) {                                                                         \
                        PSS_CHECK(S);                                                              \
                        if ((_ok = (cond)))                                                        \
                                break;                                                             \
                        if (pss_now() >= _end)                                                     \
                                break;                                                             \
                        ASSERT_OK(sd_event_run((S)->event, 10 * 1000));                            \
                }                                                                                  \
                _ok;                                                                               \
        })

/* Waits for cond; fails the case (naming cond) if it does not come true in PSS_WAIT_MS. */
#define PSS_WAIT(S, cond)                                                                          \
        do {                                                                                       \
                if (!PSS_WAIT_UNTIL(S, cond, PSS_WAIT_MS)) {                                       \
                        fprintf(stderr, "%s:%d: [%s] timed out waiting for: %s\n", __FILE__,        \
                                __LINE__, (S)->case_name, #cond);                                  \
                        test_fail();                                                               \
                }                                                                                  \
        } while (0)

/* Runs the loop for ms. */
_unused_ static void pss_run_for(Pss *S, unsigned ms) {
        (void) PSS_WAIT_UNTIL(S, false, ms);
}

/* A name unique to this process, run and case: "<prefix>-<what>". Caller frees. */
_unused_ static char *pss_name(Pss *S, const char *what) {
        char *n = NULL;
        ASSERT_TRUE(asprintf(&n, "%s-%s", S->prefix, what) > 0);
        return n;
}

/* The key of a payload "m<n>" (exactly), else -1. */
_unused_ static int pss_key(const void *data, size_t len) {
        const char *p = data;
        unsigned v = 0;
        if (len < 2 || len > 10 || p[0] != 'm')
                return -1;
        for (size_t i = 1; i < len; i++) {
                if (p[i] < '0' || p[i] > '9')
                        return -1;
                v = v * 10 + (unsigned) (p[i] - '0');
        }
        return (int) v;
}

static bool pss_is_probe(const void *data, size_t len) {
        return len == 5 && memcmp(data, "probe", 5) == 0;
}

/* ---- brokers ---- */

static Component *pss_component(Pss *S) {
        Component *c = calloc(1, sizeof *c);
        size_t n = 0;

        ASSERT_NOT_NULL(c);
        c->n_ref = 1;
        c->name = strdup("pubsub-suite");
        c->type = strdup(S->driver->type);
        c->version = strdup("v1");
        ASSERT_TRUE(c->name && c->type && c->version);
        while (S->metadata && S->metadata[2 * n])
                n++;
        if (n > 0) {
                c->items = calloc(n, sizeof *c->items);
                ASSERT_NOT_NULL(c->items);
                for (size_t i = 0; i < n; i++) {
                        ASSERT_NOT_NULL(S->metadata[2 * i + 1]);
                        c->items[i].name = strdup(S->metadata[2 * i]);
                        c->items[i].value = strdup(S->metadata[2 * i + 1]);
                        ASSERT_TRUE(c->items[i].name && c->items[i].value);
                        c->items[i].line = (unsigned) i + 1;
                        c->n_items++;
                }
        }
        return c;
}

/*
 * A broker built as the Manager builds one, opened with the suite's metadata on the case's state
 * directory. Returns the open() result; on success *ret is the broker (closed by pss_close() or at
 * the end of the case), on failure *ret_msg gets open()'s message (caller frees).
 */
_unused_ static int pss_open_full(Pss *S, PubsubBroker **ret, char **ret_msg) {
        const PubsubDriver *d = S->driver;
        PubsubBroker *b;
        char *msg = NULL;
        size_t slot = 0;
        int r;

        while (slot < PSS_MAX_BROKERS && S->brokers[slot])
                slot++;
        ASSERT_TRUE(slot < PSS_MAX_BROKERS);
        ASSERT_TRUE(d->instance_size >= sizeof(PubsubBroker));
        b = calloc(1, d->instance_size);
        ASSERT_NOT_NULL(b);
        b->driver = d;
        b->component = pss_component(S);
        b->event = S->event;
        b->name = b->component->name;
        b->state_dir = S->dir;
        b->instance_id = S->instance_id;
        r = d->open(b, &msg);
        if (r < 0) {
                component_unref(b->component);
                free(b);
                *ret = NULL;
                if (ret_msg)
                        *ret_msg = msg;
                else
                        free(msg);
                return r;
        }
        free(msg); /* a driver should not set it on success; tolerate */
        S->brokers[slot] = b;
        *ret = b;
        if (ret_msg)
                *ret_msg = NULL;
        return r;
}

_unused_ static PubsubBroker *pss_open(Pss *S) {
        PubsubBroker *b = NULL;
        _cleanup_free_ char *msg = NULL;
        int r = pss_open_full(S, &b, &msg);
        if (r < 0)
                fprintf(stderr, "[%s] open: %s: %s\n", S->case_name, strerror(-r), strna(msg));
        ASSERT_OK(r);
        return b;
}

static void pss_sub_forget(PssSub *s) {
        /* Held deliveries are invalid once the subscription is gone: abandoned, never settled. */
        s->gone = true;
        s->n_held = 0;
        s->outstanding = 0;
        s->sub = NULL;
}

/* close(), then frees the broker as the Manager does. Its subscriptions are gone. */
_unused_ static void pss_close(Pss *S, PubsubBroker *b) {
        if (!b)
                return;
        for (size_t i = 0; i < PSS_MAX_BROKERS; i++)
                if (S->brokers[i] == b)
                        S->brokers[i] = NULL;
        for (size_t i = 0; i < S->n_subs; i++)
                if (S->subs[i]->broker == b && !S->subs[i]->gone)
                        pss_sub_forget(S->subs[i]);
        b->driver->close(b);
        component_unref(b->component);
        free(b);
}

/* ---- publishing ---- */

static void pss_on_published(int error, const char *message, void *userdata) {
        PssPub *p = userdata;

        if (!p->started)
                pss_bad(p->suite, "publish done() called from inside publish()");
        if (p->n_fired++ > 0)
                pss_bad(p->suite, "publish done() called twice");
        if (error > 0)
                pss_bad(p->suite, "publish done() with a positive error %d", error);
        p->error = error;
}

/* Starts one publish; p records its outcome. */
_unused_ static void pss_publish(Pss *S, PubsubBroker *b, const char *topic, const void *data, size_t len,
                                 char *const *metadata, int64_t ttl_sec, PssPub *p) {
        *p = (PssPub){ .suite = S };
        ASSERT_OK(b->driver->publish(b, topic, data, len, metadata, ttl_sec, pss_on_published, p));
        if (p->n_fired != 0)
                pss_bad(S, "publish done() called from inside publish()");
        p->started = true;
        PSS_CHECK(S);
}

/* Starts publishes of "m<first>" .. "m<first+n-1>" without waiting; pubs has n slots. */
_unused_ static void pss_publish_keys(Pss *S, PubsubBroker *b, const char *topic, unsigned first, unsigned n,
                                      PssPub *pubs) {
        for (unsigned i = 0; i < n; i++) {
                char buf[16];
                int l = snprintf(buf, sizeof buf, "m%u", first + i);
                pss_publish(S, b, topic, buf, (size_t) l, NULL, 0, &pubs[i]);
        }
}

static bool pss_pubs_done(const PssPub *pubs, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                if (pubs[i].n_fired == 0)
                        return false;
        return true;
}

/* Waits for every publish of pubs to complete, and to have succeeded. */
_unused_ static void pss_wait_published(Pss *S, const PssPub *pubs, unsigned n) {
        PSS_WAIT(S, pss_pubs_done(pubs, n));
        for (unsigned i = 0; i < n; i++)
                if (pubs[i].error != 0) {
                        fprintf(stderr, "[%s] publish %u failed: %s\n", S->case_name, i,
                                strerror(-pubs[i].error));
                        ASSERT_EQ(pubs[i].error, 0);
                }
}

/* Publishes "m<first>".. one at a time, each after the previous one completed. */
_unused_ static void pss_publish_keys_sequential(Pss *S, PubsubBroker *b, const char *topic, unsigned first,
                                                 unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                PssPub p;
                pss_publish_keys(S, b, topic, first + i, 1, &p);
                pss_wait_published(S, &p, 1);
        }
}

/* ---- subscribing ---- */

static void pss_settle(PssSub *s, PubsubDelivery *d, PubsubOutcome o, uint64_t retry_usec) {
        assert(s->outstanding > 0);
        s->outstanding--;
        s->suite->driver->settle(d, o, retry_usec);
}

/* MQTT filter matching (+ one level, # the rest), for drivers with subscribe_wildcards. */
static bool pss_topic_matches(const char *filter, const char *topic) {
        for (;;) {
                if (filter[0] == '#')
                        return true;
                if (filter[0] == '+') {
                        topic += strcspn(topic, "/");
                        filter++;
                } else {
                        size_t n = strcspn(filter, "/");
                        if (strncmp(filter, topic, n) != 0 || (topic[n] != '/' && topic[n] != 0))
                                return false;
                        filter += n;
                        topic += n;
                }
                if (!*filter || !*topic)
                        return !*filter && !*topic;
                /* both at a '/' */
                if (*filter != '/' || *topic != '/')
                        return false;
                filter++;
                topic++;
                if (!*topic && filter[0] == '#')
                        return true;
        }
}

static void pss_on_deliver(PubsubSubscription *sub, PubsubDelivery *d, const PubsubMessage *msg,
                           void *userdata) {
        PssSub *s = userdata;
        Pss *S = s->suite;

        if (s->subscribing) {
                pss_bad(S, "deliver() called from inside subscribe()");
                return;
        }
        if (s->gone) {
                /* Must not happen; do not touch d (the contract says it is invalid). */
                pss_bad(S, "deliver() on topic '%s' group '%s' after unsubscribe()/close()", s->topic,
                        s->group);
                return;
        }
        if (sub != s->sub)
                pss_bad(S, "deliver() with a subscription handle other than subscribe() returned");
        if (!msg || !msg->topic ||
            !(streq(msg->topic, s->topic) || (S->driver->subscribe_wildcards && pss_topic_matches(s->topic, msg->topic))))
                pss_bad(S, "deliver() for topic '%s' on a subscription of '%s'",
                        msg && msg->topic ? msg->topic : "(null)", s->topic);
        if (!msg || (msg->len > 0 && !msg->data)) {
                pss_bad(S, "deliver() without data");
                return;
        }
        if (msg->attempt < 1)
                pss_bad(S, "deliver() with attempt %u", msg->attempt);

        if (pss_is_probe(msg->data, msg->len)) {
                s->n_probes++;
                S->driver->settle(d, PUBSUB_ACK, 0);
                return;
        }

        if (s->n_recv == s->cap_recv) {
                s->cap_recv = s->cap_recv ? s->cap_recv * 2 : 64;
                s->recv = realloc(s->recv, s->cap_recv * sizeof *s->recv);
                assert(s->recv);
        }
        PssRecv *r = &s->recv[s->n_recv++];
        *r = (PssRecv){ .len = msg->len,
                        .key = pss_key(msg->data, msg->len),
                        .attempt = msg->attempt,
                        .at_usec = pss_now() };
        r->data = malloc(msg->len + 1);
        assert(r->data);
        if (msg->len > 0)
                memcpy(r->data, msg->data, msg->len);
        r->data[msg->len] = 0;
        if (msg->metadata && strv_copy(msg->metadata, &r->metadata) < 0)
                abort();

        s->outstanding++;
        if (s->outstanding > s->max_outstanding)
                s->max_outstanding = s->outstanding;

        switch (s->mode) {
        case PSS_ACK:
                pss_settle(s, d, PUBSUB_ACK, 0);
                break;
        case PSS_HOLD:
                if (s->n_held == s->cap_held) {
                        s->cap_held = s->cap_held ? s->cap_held * 2 : 64;
                        s->held = realloc(s->held, s->cap_held * sizeof *s->held);
                        assert(s->held);
                }
                s->held[s->n_held++] = d;
                break;
        case PSS_RETRY_FIRST:
                if (s->retry_left > 0) {
                        s->retry_left--;
                        pss_settle(s, d, PUBSUB_RETRY, s->retry_usec);
                } else
                        pss_settle(s, d, PUBSUB_ACK, 0);
                break;
        case PSS_UNSUB_FIRST:
                /* d is abandoned unsettled: the unsubscribe makes it invalid. */
                S->driver->unsubscribe(s->sub);
                pss_sub_forget(s);
                break;
        }
}

/* Subscribes a new PssSub (freed at the end of the case). */
_unused_ static PssSub *pss_subscribe(Pss *S, PubsubBroker *b, const char *topic, const char *group,
                                      unsigned max_in_flight, PssMode mode) {
        PssSub *s;

        ASSERT_TRUE(S->n_subs < PSS_MAX_SUBS);
        s = calloc(1, sizeof *s);
        ASSERT_NOT_NULL(s);
        S->subs[S->n_subs++] = s;
        s->suite = S;
        s->broker = b;
        s->mode = mode;
        s->topic = strdup(topic);
        s->group = strdup(group);
        ASSERT_TRUE(s->topic && s->group);
        s->subscribing = true;
        ASSERT_OK(b->driver->subscribe(b, topic, group, max_in_flight, pss_on_deliver, s, &s->sub));
        s->subscribing = false;
        ASSERT_NOT_NULL(s->sub);
        return s;
}

_unused_ static void pss_unsubscribe(Pss *S, PssSub *s) {
        ASSERT_TRUE(!s->gone);
        S->driver->unsubscribe(s->sub);
        pss_sub_forget(s);
}

/*
 * Makes sure s's group exists in the broker: publishes a probe on its topic until one reaches s
 * (see the top of the file).
 */
_unused_ static void pss_sub_ready(Pss *S, PssSub *s) {
        unsigned before = s->n_probes;
        for (unsigned i = 0; i < 20; i++) {
                ASSERT_TRUE(S->n_probe_pubs < ELEMENTSOF(S->probe_pubs));
                PssPub *p = &S->probe_pubs[S->n_probe_pubs++];
                pss_publish(S, s->broker, s->topic, "probe", 5, NULL, 0, p);
                if (PSS_WAIT_UNTIL(S, s->n_probes > before, 500))
                        return;
        }
        fprintf(stderr, "[%s] no probe reached topic '%s' group '%s'\n", S->case_name, s->topic, s->group);
        ASSERT_TRUE(false);
}

/* Settles the i-th held delivery of s. */
_unused_ static void pss_settle_held(PssSub *s, size_t i, PubsubOutcome o, uint64_t retry_usec) {
        ASSERT_TRUE(i < s->n_held);
        PubsubDelivery *d = s->held[i];
        memmove(s->held + i, s->held + i + 1, (s->n_held - i - 1) * sizeof *s->held);
        s->n_held--;
        pss_settle(s, d, o, retry_usec);
}

_unused_ static void pss_ack_all_held(PssSub *s) {
        while (s->n_held > 0)
                pss_settle_held(s, 0, PUBSUB_ACK, 0);
}

/* How many deliveries of key s got. */
_unused_ static unsigned pss_count(const PssSub *s, int key) {
        unsigned n = 0;
        for (size_t i = 0; i < s->n_recv; i++)
                n += s->recv[i].key == key;
        return n;
}

/* How many of the keys first..first+n-1 s got at least once. */
_unused_ static unsigned pss_distinct(const PssSub *s, unsigned first, unsigned n) {
        unsigned k = 0;
        for (unsigned key = first; key < first + n; key++)
                k += pss_count(s, (int) key) > 0;
        return k;
}

/* The first delivery of key on s, or NULL. */
_unused_ static const PssRecv *pss_find(const PssSub *s, int key) {
        for (size_t i = 0; i < s->n_recv; i++)
                if (s->recv[i].key == key)
                        return &s->recv[i];
        return NULL;
}

/* Asserts s got exactly the keys first..first+n-1, each exactly once, and nothing else. */
#define PSS_ASSERT_EXACTLY_ONCE(S, s, first, n)                                                    \
        do {                                                                                       \
                for (unsigned _k = (first); _k < (first) + (n); _k++)                              \
                        if (pss_count((s), (int) _k) != 1) {                                       \
                                fprintf(stderr, "[%s] key m%u delivered %u times\n",               \
                                        (S)->case_name, _k, pss_count((s), (int) _k));             \
                                ASSERT_EQ(pss_count((s), (int) _k), 1);                            \
                        }                                                                          \
                ASSERT_EQ((s)->n_recv, (n));                                                       \
        } while (0)

/* Asserts the first deliveries of keys on s follow key order. */
_unused_ static void pss_assert_first_in_order(Pss *S, const PssSub *s) {
        int last = -1;
        for (size_t i = 0; i < s->n_recv; i++) {
                int k = s->recv[i].key;
                bool first = true;
                for (size_t j = 0; j < i; j++)
                        if (s->recv[j].key == k)
                                first = false;
                if (!first)
                        continue;
                if (k <= last) {
                        fprintf(stderr, "[%s] m%d first delivered after m%d\n", S->case_name, k, last);
                        ASSERT_TRUE(k > last);
                }
                last = k;
        }
}

/* ---- the cases ---- */

static void pss_case_roundtrip(Pss *S) {
        static const char binary[] = { 'a', 0, 'b', '\xff', 0, '\n', 0 };
        char *md[] = { "content-type", "application/octet-stream", "k", "a value, with spaces", NULL };
        size_t n_kib = 1024, n_mib = 1024 * 1024;
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        _cleanup_free_ char *kib = malloc(n_kib), *mib = malloc(n_mib);
        PssPub pubs[4];

        ASSERT_TRUE(kib && mib);
        for (size_t i = 0; i < n_kib; i++)
                kib[i] = (char) (i * 7 + 3);
        for (size_t i = 0; i < n_mib; i++)
                mib[i] = (char) (i * 131 + (i >> 8));

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 16, PSS_ACK);
        pss_sub_ready(S, s);

        pss_publish(S, b, topic, "hello", 5, (S->flags & PUBSUB_SUITE_NO_METADATA) ? NULL : md, 0, &pubs[0]);
        pss_publish(S, b, topic, binary, sizeof binary, NULL, 0, &pubs[1]);
        pss_publish(S, b, topic, kib, n_kib, NULL, 0, &pubs[2]);
        pss_publish(S, b, topic, mib, n_mib, NULL, 0, &pubs[3]);
        pss_wait_published(S, pubs, 4);
        PSS_WAIT(S, s->n_recv >= 4);
        pss_run_for(S, 100);
        ASSERT_EQ(s->n_recv, 4);

        const void *want[] = { "hello", binary, kib, mib };
        size_t want_len[] = { 5, sizeof binary, n_kib, n_mib };
        for (size_t i = 0; i < 4; i++) {
                const PssRecv *r = NULL;
                for (size_t j = 0; j < s->n_recv && !r; j++)
                        if (s->recv[j].len == want_len[i] &&
                            memcmp(s->recv[j].data, want[i], want_len[i]) == 0)
                                r = &s->recv[j];
                if (!r)
                        fprintf(stderr, "[%s] payload %zu (%zu bytes) not delivered intact\n",
                                S->case_name, i, want_len[i]);
                ASSERT_NOT_NULL(r);
                ASSERT_EQ(r->attempt, 1);
                if (i == 0 && !(S->flags & PUBSUB_SUITE_NO_METADATA)) {
                        ASSERT_NOT_NULL(r->metadata);
                        /* Every published pair arrives (a driver may add its own). */
                        for (size_t m = 0; md[m]; m += 2) {
                                bool found = false;
                                for (size_t k = 0; r->metadata[k] && r->metadata[k + 1]; k += 2)
                                        if (streq(r->metadata[k], md[m]) &&
                                            streq(r->metadata[k + 1], md[m + 1]))
                                                found = true;
                                if (!found)
                                        fprintf(stderr, "[%s] metadata '%s' lost\n", S->case_name, md[m]);
                                ASSERT_TRUE(found);
                        }
                }
        }
}

/* publish() done means stored: close right after it and the message is still there. */
static void pss_case_durable_publish(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        PssPub pubs[5];

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 16, PSS_ACK);
        pss_sub_ready(S, s);
        pss_unsubscribe(S, s);
        pss_publish_keys(S, b, topic, 0, 5, pubs);
        pss_wait_published(S, pubs, 5);
        pss_close(S, b);

        b = pss_open(S);
        s = pss_subscribe(S, b, topic, group, 16, PSS_ACK);
        PSS_WAIT(S, pss_distinct(s, 0, 5) == 5);
        pss_run_for(S, 100);
        PSS_ASSERT_EXACTLY_ONCE(S, s, 0, 5);
}

/* Two groups on one topic: each gets every message. */
static void pss_case_fanout(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *ga = pss_name(S, "ga"), *gb = pss_name(S, "gb");
        enum { N = 20 };
        PssPub pubs[N];

        PubsubBroker *b = pss_open(S);
        PssSub *a = pss_subscribe(S, b, topic, ga, 8, PSS_ACK);
        PssSub *c = pss_subscribe(S, b, topic, gb, 8, PSS_ACK);
        pss_sub_ready(S, a);
        pss_sub_ready(S, c);
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        PSS_WAIT(S, pss_distinct(a, 0, N) == N && pss_distinct(c, 0, N) == N);
        pss_run_for(S, PSS_QUIET_MS);
        PSS_ASSERT_EXACTLY_ONCE(S, a, 0, N);
        PSS_ASSERT_EXACTLY_ONCE(S, c, 0, N);
}

/* Two subscriptions of one group share its messages: each message goes to one of them. */
static void pss_case_competing_consumers(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        enum { N = 40, MAX = 4 };
        PssPub pubs[N];

        PubsubBroker *b = pss_open(S);
        PssSub *a = pss_subscribe(S, b, topic, group, MAX, PSS_HOLD);
        pss_sub_ready(S, a);
        PssSub *c = pss_subscribe(S, b, topic, group, MAX, PSS_HOLD);
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);

        /* With both full, both have some. */
        PSS_WAIT(S, a->outstanding == MAX && c->outstanding == MAX);
        pss_run_for(S, 100);
        ASSERT_EQ(a->outstanding, MAX);
        ASSERT_EQ(c->outstanding, MAX);

        uint64_t end = pss_now() + PSS_WAIT_MS * 1000ULL;
        while (pss_now() < end) {
                unsigned got = 0;
                for (unsigned k = 0; k < N; k++)
                        got += pss_count(a, (int) k) + pss_count(c, (int) k) > 0;
                if (got == N)
                        break;
                pss_ack_all_held(a);
                pss_ack_all_held(c);
                ASSERT_OK(sd_event_run(S->event, 10 * 1000));
                PSS_CHECK(S);
        }
        pss_ack_all_held(a);
        pss_ack_all_held(c);
        pss_run_for(S, PSS_QUIET_MS);
        ASSERT_TRUE(a->max_outstanding <= MAX && c->max_outstanding <= MAX);
        for (unsigned k = 0; k < N; k++) {
                unsigned n = pss_count(a, (int) k) + pss_count(c, (int) k);
                if (n != 1)
                        fprintf(stderr, "[%s] m%u delivered %u times in the group\n", S->case_name, k, n);
                ASSERT_EQ(n, 1);
        }
        ASSERT_EQ(a->n_recv + c->n_recv, N);
        fprintf(stderr, "  [%s] split %zu/%zu\n", S->case_name, a->n_recv, c->n_recv);
}

static void pss_case_topics_isolated(Pss *S) {
        _cleanup_free_ char *t1 = pss_name(S, "t1"), *t2 = pss_name(S, "t2"), *group = pss_name(S, "g");
        PssPub p1[5], p2[3];

        PubsubBroker *b = pss_open(S);
        PssSub *s1 = pss_subscribe(S, b, t1, group, 8, PSS_ACK);
        PssSub *s2 = pss_subscribe(S, b, t2, group, 8, PSS_ACK);
        pss_sub_ready(S, s1);
        pss_sub_ready(S, s2);
        pss_publish_keys(S, b, t1, 0, 5, p1);
        pss_publish_keys(S, b, t2, 100, 3, p2);
        pss_wait_published(S, p1, 5);
        pss_wait_published(S, p2, 3);
        PSS_WAIT(S, pss_distinct(s1, 0, 5) == 5 && pss_distinct(s2, 100, 3) == 3);
        pss_run_for(S, PSS_QUIET_MS);
        PSS_ASSERT_EXACTLY_ONCE(S, s1, 0, 5);
        PSS_ASSERT_EXACTLY_ONCE(S, s2, 100, 3);
}

/* Per topic and group, first deliveries follow publish order, live and from the backlog. */
static void pss_case_ordering(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        enum { N = 30 };

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 64, PSS_ACK);
        pss_sub_ready(S, s);
        pss_publish_keys_sequential(S, b, topic, 0, N);
        PSS_WAIT(S, pss_distinct(s, 0, N) == N);
        pss_assert_first_in_order(S, s);

        if (S->flags & PUBSUB_SUITE_NO_QUEUE)
                return;
        pss_unsubscribe(S, s);
        pss_publish_keys_sequential(S, b, topic, N, N);
        s = pss_subscribe(S, b, topic, group, 4, PSS_ACK);
        PSS_WAIT(S, pss_distinct(s, N, N) == N);
        pss_assert_first_in_order(S, s);
}

/* RETRY with retry_after 200 ms: offered again, not before; ACK: never again. */
static void pss_case_retry(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        PssPub p;

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 4, PSS_RETRY_FIRST);
        s->retry_left = 1;
        s->retry_usec = 200 * 1000;
        pss_sub_ready(S, s);
        pss_publish_keys(S, b, topic, 0, 1, &p);
        pss_wait_published(S, &p, 1);
        PSS_WAIT(S, pss_count(s, 0) >= 2);
        const PssRecv *r1 = &s->recv[0], *r2 = &s->recv[1];
        ASSERT_EQ(r1->key, 0);
        ASSERT_EQ(r2->key, 0);
        ASSERT_EQ(r1->attempt, 1);
        if (!(S->flags & PUBSUB_SUITE_NO_ATTEMPTS))
                ASSERT_EQ(r2->attempt, 2);
        if (r2->at_usec - r1->at_usec < 150 * 1000) {
                fprintf(stderr, "[%s] redelivered after %" PRIu64 " ms, retry_after was 200 ms\n",
                        S->case_name, (r2->at_usec - r1->at_usec) / 1000);
                ASSERT_TRUE(false);
        }
        /* The second was acked. */
        pss_run_for(S, 2 * PSS_QUIET_MS);
        ASSERT_EQ(pss_count(s, 0), 2);
        ASSERT_EQ(s->n_recv, 2);
}

/* An ACK is final: not again live, nor after re-subscribing, nor after a restart. */
static void pss_case_ack_final(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        enum { N = 5 };
        PssPub pubs[N];

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        pss_sub_ready(S, s);
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        PSS_WAIT(S, pss_distinct(s, 0, N) == N);
        pss_run_for(S, PSS_QUIET_MS);
        PSS_ASSERT_EXACTLY_ONCE(S, s, 0, N);

        pss_unsubscribe(S, s);
        s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        pss_run_for(S, PSS_QUIET_MS);
        ASSERT_EQ(s->n_recv, 0);

        if (!(S->flags & PUBSUB_SUITE_PERSISTENT))
                return;
        pss_close(S, b);
        b = pss_open(S);
        s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        pss_run_for(S, PSS_QUIET_MS);
        ASSERT_EQ(s->n_recv, 0);
}

/* Never more than max_in_flight unsettled deliveries on one subscription. */
static void pss_case_max_in_flight(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        enum { N = 20, MAX = 3 };
        PssPub pubs[N];

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, MAX, PSS_HOLD);
        pss_sub_ready(S, s);
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        PSS_WAIT(S, s->outstanding == MAX);
        pss_run_for(S, PSS_QUIET_MS);
        ASSERT_EQ(s->outstanding, MAX);
        ASSERT_EQ(s->max_outstanding, MAX);

        /* Settle one at a time: the next comes, never more than MAX open. */
        while (pss_distinct(s, 0, N) < N) {
                unsigned before = (unsigned) s->n_recv;
                ASSERT_TRUE(s->n_held > 0);
                pss_settle_held(s, 0, PUBSUB_ACK, 0);
                PSS_WAIT(S, s->n_recv > before);
                ASSERT_TRUE(s->max_outstanding <= MAX);
        }
        pss_ack_all_held(s);
        pss_run_for(S, PSS_QUIET_MS);
        ASSERT_TRUE(s->max_outstanding <= MAX);
        PSS_ASSERT_EXACTLY_ONCE(S, s, 0, N);
}

/* Unsubscribing abandons unsettled deliveries: the group gets them again. */
static void pss_case_unsubscribe_redelivers(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        enum { N = 5 };
        PssPub pubs[N], extra;

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, N, PSS_HOLD);
        pss_sub_ready(S, s);
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        PSS_WAIT(S, s->outstanding == N);
        pss_unsubscribe(S, s); /* no deliver() on s from now on (checked in pss_on_deliver()) */

        pss_publish_keys(S, b, topic, N, 1, &extra);
        pss_wait_published(S, &extra, 1);
        pss_run_for(S, 200);

        if (S->flags & PUBSUB_SUITE_NO_QUEUE)
                return;
        s = pss_subscribe(S, b, topic, group, 16, PSS_ACK);
        PSS_WAIT(S, pss_distinct(s, 0, N + 1) == N + 1);
        pss_run_for(S, 200);
        PSS_ASSERT_EXACTLY_ONCE(S, s, 0, N + 1);
}

/* unsubscribe() from inside deliver(), leaving that delivery unsettled. */
static void pss_case_unsubscribe_in_deliver(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        enum { N = 6 };
        PssPub pubs[N];

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, N, PSS_HOLD);
        pss_sub_ready(S, s);
        s->mode = PSS_UNSUB_FIRST;
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        PSS_WAIT(S, s->gone);
        pss_run_for(S, 200);
        ASSERT_EQ(s->n_recv, 1);

        if (S->flags & PUBSUB_SUITE_NO_QUEUE)
                return;
        s = pss_subscribe(S, b, topic, group, 16, PSS_ACK);
        PSS_WAIT(S, pss_distinct(s, 0, N) == N);
        pss_run_for(S, 200);
        PSS_ASSERT_EXACTLY_ONCE(S, s, 0, N);
}

/* A group, once subscribed, is a queue: what is published while it is away waits for it. */
static void pss_case_queue_while_away(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g"), *other = pss_name(S, "o");
        enum { N = 10 };
        PssPub pubs[N];

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        pss_sub_ready(S, s);
        pss_unsubscribe(S, s);
        /* Another group stays subscribed meanwhile: it must not take the away group's share. */
        PssSub *o = pss_subscribe(S, b, topic, other, 8, PSS_ACK);
        pss_sub_ready(S, o);
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        PSS_WAIT(S, pss_distinct(o, 0, N) == N);

        s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        PSS_WAIT(S, pss_distinct(s, 0, N) == N);
        pss_run_for(S, 200);
        PSS_ASSERT_EXACTLY_ONCE(S, s, 0, N);
        PSS_ASSERT_EXACTLY_ONCE(S, o, 0, N);
}

/* Publishing to a topic no group ever subscribed to (PUBSUB_SUITE_KEEPS_UNCLAIMED says what happens). */
static void pss_case_unclaimed_topic(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g"), *late = pss_name(S, "late");
        enum { N = 3 };
        PssPub pubs[N];

        PubsubBroker *b = pss_open(S);
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        PssSub *s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        if (S->flags & PUBSUB_SUITE_KEEPS_UNCLAIMED) {
                PSS_WAIT(S, pss_distinct(s, 0, N) == N);
                /* Kept for the first group only: a group that comes later starts from its subscribe. */
                PssSub *l = pss_subscribe(S, b, topic, late, 8, PSS_ACK);
                pss_sub_ready(S, l);
                pss_run_for(S, 200);
                ASSERT_EQ(l->n_recv, 0);
        } else {
                pss_run_for(S, PSS_QUIET_MS);
                ASSERT_EQ(s->n_recv, 0);
        }
        pss_run_for(S, 100);
        if (S->flags & PUBSUB_SUITE_KEEPS_UNCLAIMED)
                PSS_ASSERT_EXACTLY_ONCE(S, s, 0, N);
}

/*
 * close() with deliveries unsettled, and with a group away: a new broker on the same storage
 * delivers both (PERSISTENT); without persistence, close() just must not trip over them.
 */
static void pss_case_close_unsettled(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *ga = pss_name(S, "ga"), *gb = pss_name(S, "gb");
        enum { N = 5 };
        PssPub pubs[N];

        PubsubBroker *b = pss_open(S);
        PssSub *a = pss_subscribe(S, b, topic, ga, 8, PSS_HOLD);
        PssSub *c = pss_subscribe(S, b, topic, gb, 8, PSS_ACK);
        pss_sub_ready(S, a);
        pss_sub_ready(S, c);
        pss_unsubscribe(S, c);
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        PSS_WAIT(S, a->outstanding == N);
        pss_close(S, b); /* a's deliveries abandoned */

        if (!(S->flags & PUBSUB_SUITE_PERSISTENT))
                return;
        b = pss_open(S);
        a = pss_subscribe(S, b, topic, ga, 8, PSS_ACK);
        c = pss_subscribe(S, b, topic, gb, 8, PSS_ACK);
        PSS_WAIT(S, pss_distinct(a, 0, N) == N && pss_distinct(c, 0, N) == N);
        pss_run_for(S, 200);
        PSS_ASSERT_EXACTLY_ONCE(S, a, 0, N);
        PSS_ASSERT_EXACTLY_ONCE(S, c, 0, N);
}

/* close() with publishes in flight: each done() exactly once, 0 or -ECANCELED, before close() returns. */
static void pss_case_close_with_publishes_in_flight(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        enum { N = 300, H = 4 };
        _cleanup_free_ PssPub *pubs = calloc(N, sizeof *pubs);
        PssPub held[H];
        unsigned ok = 0, cancelled = 0;

        ASSERT_NOT_NULL(pubs);
        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, H, PSS_HOLD);
        pss_sub_ready(S, s);
        pss_publish_keys(S, b, topic, 1000, H, held);
        pss_wait_published(S, held, H);
        PSS_WAIT(S, s->outstanding == H);

        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_close(S, b);
        for (unsigned i = 0; i < N; i++) {
                if (pubs[i].n_fired != 1)
                        fprintf(stderr, "[%s] publish %u: done() ran %u times by the end of close()\n",
                                S->case_name, i, pubs[i].n_fired);
                ASSERT_EQ(pubs[i].n_fired, 1);
                ASSERT_TRUE(pubs[i].error == 0 || pubs[i].error == -ECANCELED);
                if (pubs[i].error == 0)
                        ok++;
                else
                        cancelled++;
        }
        pss_run_for(S, 100);
        for (unsigned i = 0; i < N; i++)
                ASSERT_EQ(pubs[i].n_fired, 1);
        fprintf(stderr, "  [%s] at close: %u stored, %u cancelled\n", S->case_name, ok, cancelled);

        if (!(S->flags & PUBSUB_SUITE_PERSISTENT))
                return;
        /* Every publish answered 0 is there, and the held ones come again. */
        b = pss_open(S);
        s = pss_subscribe(S, b, topic, group, 64, PSS_ACK);
        PSS_WAIT(S, pss_distinct(s, 1000, H) == H);
        for (unsigned i = 0; i < N; i++)
                if (pubs[i].error == 0)
                        PSS_WAIT(S, pss_count(s, (int) i) > 0);
}

/* 1000 concurrent publishes, one consumer acking: every message exactly once, first attempt. */
static void pss_case_many(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        enum { N = 1000 };
        _cleanup_free_ PssPub *pubs = calloc(N, sizeof *pubs);

        ASSERT_NOT_NULL(pubs);
        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 64, PSS_ACK);
        pss_sub_ready(S, s);
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        PSS_WAIT(S, pss_distinct(s, 0, N) == N);
        pss_run_for(S, PSS_QUIET_MS);
        PSS_ASSERT_EXACTLY_ONCE(S, s, 0, N);
        for (size_t i = 0; i < s->n_recv; i++)
                ASSERT_EQ(s->recv[i].attempt, 1);
        ASSERT_TRUE(s->max_outstanding <= 64);
}

/* native_ttl: an expired message is not delivered. */
static void pss_case_ttl(Pss *S) {
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        PssPub p[2];

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        pss_sub_ready(S, s);
        pss_unsubscribe(S, s);
        pss_publish(S, b, topic, "m0", 2, NULL, 1, &p[0]);
        pss_publish(S, b, topic, "m1", 2, NULL, 0, &p[1]);
        pss_wait_published(S, p, 2);
        pss_run_for(S, 1600);
        s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        PSS_WAIT(S, pss_count(s, 1) == 1);
        pss_run_for(S, 200);
        ASSERT_EQ(pss_count(s, 0), 0);
}

typedef struct PssCase {
        const char *name;
        void (*func)(Pss *S);
        unsigned needs;   /* flags that must be set */
        unsigned skip_if; /* flags that must not be set */
        bool needs_ttl;
} PssCase;

static const PssCase pss_cases[] = {
        { "roundtrip", pss_case_roundtrip },
        { "durable_publish", pss_case_durable_publish, .needs = PUBSUB_SUITE_PERSISTENT },
        { "fanout", pss_case_fanout },
        { "competing_consumers", pss_case_competing_consumers, .skip_if = PUBSUB_SUITE_NO_GROUPS },
        { "topics_isolated", pss_case_topics_isolated },
        { "ordering", pss_case_ordering },
        { "retry", pss_case_retry },
        { "ack_final", pss_case_ack_final },
        { "max_in_flight", pss_case_max_in_flight },
        { "unsubscribe_redelivers", pss_case_unsubscribe_redelivers },
        { "unsubscribe_in_deliver", pss_case_unsubscribe_in_deliver },
        { "queue_while_away", pss_case_queue_while_away, .skip_if = PUBSUB_SUITE_NO_QUEUE },
        { "unclaimed_topic", pss_case_unclaimed_topic },
        { "close_unsettled", pss_case_close_unsettled },
        { "close_with_publishes_in_flight", pss_case_close_with_publishes_in_flight },
        { "many", pss_case_many },
        { "ttl", pss_case_ttl, .needs_ttl = true },
};

/* ---- running ---- */

static int pss_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void pss_case_init(Pss *S, const PubsubDriver *d, const char *const *metadata, unsigned flags,
                          const char *name) {
        static unsigned run_counter;
        const char *tmp = getenv("TMPDIR") ?: "/tmp";
        struct timespec ts;

        *S = (Pss){ .driver = d, .metadata = metadata, .flags = flags, .case_name = name };
        ASSERT_TRUE((size_t) snprintf(S->dir, sizeof S->dir, "%s/test-pubsub-XXXXXX", tmp) < sizeof S->dir);
        ASSERT_NOT_NULL(mkdtemp(S->dir));
        ASSERT_OK(sd_event_new(&S->event));
        snprintf(S->instance_id, sizeof S->instance_id, "test-%d", (int) getpid());
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(S->prefix, sizeof S->prefix, "pss%d-%lx-%u-%s", (int) getpid(),
                 (unsigned long) (ts.tv_nsec ^ ts.tv_sec) & 0xffffff, run_counter++, name);
        for (char *p = S->prefix; *p; p++)
                if (*p == '_')
                        *p = '-';
}

/* Closes what the case left open and frees everything. */
static void pss_case_done(Pss *S) {
        for (size_t i = 0; i < S->n_subs; i++) {
                PssSub *s = S->subs[i];
                if (!s->gone && s->sub) {
                        /* Held deliveries are abandoned by the unsubscribe. */
                        S->driver->unsubscribe(s->sub);
                        pss_sub_forget(s);
                }
        }
        for (size_t i = 0; i < PSS_MAX_BROKERS; i++)
                if (S->brokers[i])
                        pss_close(S, S->brokers[i]);
        for (size_t i = 0; i < S->n_subs; i++) {
                PssSub *s = S->subs[i];
                for (size_t j = 0; j < s->n_recv; j++) {
                        free(s->recv[j].data);
                        strv_free(s->recv[j].metadata);
                }
                free(s->recv);
                free(s->held);
                free(s->topic);
                free(s->group);
                free(s);
        }
        S->n_subs = 0;
        /* Whatever the driver still has on the loop must be harmless now. */
        (void) sd_event_run(S->event, 0);
        S->event = sd_event_unref(S->event);
        (void) nftw(S->dir, pss_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Runs every case (or those in PUBSUB_SUITE_CASES=a:b) against driver d. metadata: the
 * component's metadata as name, value pairs, NULL-terminated (NULL for none). flags: what the
 * driver does (PubsubSuiteFlags). Fails the calling TEST if any case failed.
 */
_unused_ static void pubsub_driver_suite_run(const PubsubDriver *d, const char *const *metadata,
                                             unsigned flags) {
        /* static: setjmp() leaves locals changed after it indeterminate */
        static const char *filter;
        static Pss S;
        static unsigned n_failed;
        static bool case_failed;
        static uint64_t started;
        jmp_buf saved;

        filter = getenv("PUBSUB_SUITE_CASES");
        if (filter && !*filter)
                filter = NULL;
        ASSERT_NOT_NULL(d);
        ASSERT_EQ(d->abi, PUBSUB_DRIVER_ABI);
        ASSERT_TRUE(d->open && d->close && d->publish && d->subscribe && d->unsubscribe && d->settle);

        n_failed = 0;
        memcpy(saved, test_jmp, sizeof saved);
        for (size_t i = 0; i < ELEMENTSOF(pss_cases); i++) {
                const PssCase *c = &pss_cases[i];

                if (filter && !test_selected(filter, c->name))
                        continue;
                if ((c->needs & flags) != c->needs || (c->skip_if & flags) ||
                    (c->needs_ttl && !d->native_ttl)) {
                        printf("  skip suite/%s (%s)\n", c->name,
                               c->needs_ttl && !d->native_ttl ? "no native_ttl" : "driver flags");
                        continue;
                }
                pss_case_init(&S, d, metadata, flags, c->name);
                started = pss_now();
                test_failed = false;
                if (setjmp(test_jmp) == 0) {
                        c->func(&S);
                        PSS_CHECK(&S);
                }
                case_failed = test_failed;
                /* After a failure too: the case's brokers are closed and its loop freed, so the
                 * next case starts clean (asserts never fire inside a callback, so the loop is
                 * not mid-dispatch here). A failure during the cleanup fails the case. */
                if (setjmp(test_jmp) == 0)
                        pss_case_done(&S);
                case_failed = case_failed || test_failed;
                n_failed += case_failed;
                printf("  %s suite/%s (%" PRIu64 " ms)\n", case_failed ? "FAIL" : "ok", c->name,
                       (pss_now() - started) / 1000);
                fflush(stdout);
        }
        memcpy(test_jmp, saved, sizeof saved);
        test_failed = false;
        if (n_failed > 0) {
                fprintf(stderr, "pubsub suite: %u case(s) failed\n", n_failed);
                test_fail();
        }
}
