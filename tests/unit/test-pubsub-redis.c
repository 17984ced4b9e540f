/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for drivers/pubsub/redis.c against a real redis-server started here
 * (127.0.0.1, a free port, no persistence, a temporary directory): the
 * generic driver suite (pubsub-driver-suite.h), then what is particular to
 * Redis Streams: reclaiming a dead consumer's pending entries from another
 * daemon (and not a live one's), a restarted daemon re-reading its own
 * pending entries, two daemons competing in one group, a server killed and
 * restarted or stalled under a live subscription, no server at open(),
 * entries deleted while pending, MAXLEN ~ trimming, a group that gets the
 * stream's history (Dapr's "0"), consumerID and redisDB, close() from
 * inside deliver(), the component's metadata errors, and publish/consume
 * rates (printed, not asserted). A test-side hiredis (blocking) connection
 * looks at the server directly.
 *
 * Exits 77 (skip) when redis-server is not installed, unless
 * MOORING_TEST_NO_SKIP=1. The server is killed at exit and dies with this
 * process (PR_SET_PDEATHSIG) when a failed run leaves through _exit().
 */
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "tests.h"
#include "pubsub-driver-suite.h"

extern const PubsubDriver pubsub_redis_driver;

/* ---- the server ---- */

static struct {
        char *exe;
        char dir[64];
        char port[8];
        char host[32]; /* "127.0.0.1:<port>" */
        pid_t pid;
} srv;

/* redis-server on PATH (or in /usr/sbin); NULL when not installed. */
static char *redis_server_path(void) {
        _cleanup_free_ char *path = strdup(getenv("PATH") ?: "/usr/local/bin:/usr/bin:/bin");
        char *state = NULL;

        ASSERT_NOT_NULL(path);
        for (char *dir = strtok_r(path, ":", &state); dir; dir = strtok_r(NULL, ":", &state)) {
                char *exe = NULL;
                ASSERT_TRUE(asprintf(&exe, "%s/redis-server", dir) > 0);
                if (access(exe, X_OK) == 0)
                        return exe;
                free(exe);
        }
        return access("/usr/sbin/redis-server", X_OK) == 0 ? strdup("/usr/sbin/redis-server") : NULL;
}

/* A blocking hiredis connection to the server, or NULL when it does not answer. */
static redisContext *srv_connect(void) {
        struct timeval tv = { .tv_sec = 2 };
        redisContext *c = redisConnectWithTimeout("127.0.0.1", atoi(srv.port), tv);
        if (c && c->err) {
                redisFree(c);
                return NULL;
        }
        return c;
}

static bool srv_answers(void) {
        redisContext *c = srv_connect();
        redisReply *r = c ? redisCommand(c, "PING") : NULL;
        bool ok = r && r->type == REDIS_REPLY_STATUS;

        if (r)
                freeReplyObject(r);
        if (c)
                redisFree(c);
        return ok;
}

static void srv_start(void) {
        char *argv[] = {srv.exe, "--port",       srv.port,  "--bind",    "127.0.0.1", "--save",
                        "",      "--appendonly", "no",      "--dir",     srv.dir,     "--protected-mode",
                        "no",    "--loglevel",   "warning", "--logfile", "/dev/null", NULL};
        pid_t me = getpid();

        srv.pid = fork();
        ASSERT_TRUE(srv.pid >= 0);
        if (srv.pid == 0) {
                sigset_t none;
                /* Dies with us, also when a failed run leaves through _exit() (no destructor then). */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != me)
                        _exit(EXIT_FAILURE);
                sigemptyset(&none);
                (void) sigprocmask(SIG_SETMASK, &none, NULL);
                execv(srv.exe, argv);
                _exit(127);
        }

        for (unsigned i = 0; i < 500; i++) {
                if (srv_answers())
                        return;
                ASSERT_EQ(waitpid(srv.pid, NULL, WNOHANG), 0); /* it must not have died */
                usleep(20 * 1000);
        }
        fprintf(stderr, "redis-server on port %s does not answer\n", srv.port);
        test_fail();
}

static void srv_stop(void) {
        if (srv.pid > 0) {
                (void) kill(srv.pid, SIGKILL);
                (void) waitpid(srv.pid, NULL, 0);
        }
        srv.pid = 0;
}

__attribute__((destructor)) static void srv_cleanup(void) {
        srv_stop();
        if (srv.dir[0])
                (void) rmdir(srv.dir);
        free(srv.exe);
}

/* Starts the shared server the first time; skips the whole binary when redis-server is missing. */
static void srv_ensure(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);

        if (srv.pid > 0)
                return;
        if (!srv.exe && !(srv.exe = redis_server_path())) {
                /* CI (MOORING_TEST_NO_SKIP=1) must not pass by skipping. */
                const char *no_skip = getenv("MOORING_TEST_NO_SKIP");
                bool must = no_skip && streq(no_skip, "1");
                fprintf(must ? stderr : stdout, "redis-server not installed: %s\n",
                        must ? "failing" : "skipped");
                if (must)
                        test_fail();
                exit(77);
        }
        if (!srv.dir[0]) {
                snprintf(srv.dir, sizeof(srv.dir), "/tmp/mooring-test-pubsub-redis-XXXXXX");
                ASSERT_NOT_NULL(mkdtemp(srv.dir));
                /* A port nobody uses now: bind to 0 and keep the number. */
                _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                ASSERT_TRUE(fd >= 0);
                ASSERT_OK(bind(fd, (struct sockaddr *) &a, sizeof(a)));
                ASSERT_OK(getsockname(fd, (struct sockaddr *) &a, &len));
                snprintf(srv.port, sizeof(srv.port), "%u", ntohs(a.sin_port));
                snprintf(srv.host, sizeof(srv.host), "127.0.0.1:%s", srv.port);
        }
        srv_start();
}

/* One command on a fresh blocking connection; returns the integer reply (or -1). */
static long long srv_integer(const char *fmt, ...) {
        redisContext *c = srv_connect();
        redisReply *r;
        long long v = -1;
        va_list ap;

        ASSERT_NOT_NULL(c);
        va_start(ap, fmt);
        r = redisvCommand(c, fmt, ap);
        va_end(ap);
        if (r && r->type == REDIS_REPLY_INTEGER)
                v = r->integer;
        if (r)
                freeReplyObject(r);
        redisFree(c);
        return v;
}

/* How many entries of a group are pending (XPENDING summary). */
static long long srv_pending(const char *topic, const char *group) {
        redisContext *c = srv_connect();
        redisReply *r;
        long long v = -1;

        ASSERT_NOT_NULL(c);
        r = redisCommand(c, "XPENDING %s %s", topic, group);
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
            r->element[0]->type == REDIS_REPLY_INTEGER)
                v = r->element[0]->integer;
        if (r)
                freeReplyObject(r);
        redisFree(c);
        return v;
}

/* ---- cases on the suite's harness ---- */

/* Up to 5 extra name, value pairs after redisHost. */
static const char *const *metadata(const char *const *extra) {
        static const char *md[16];
        size_t n = 0;

        md[n++] = "redisHost";
        md[n++] = srv.host;
        for (size_t i = 0; extra && extra[i] && n + 2 < ELEMENTSOF(md); i++)
                md[n++] = extra[i];
        md[n] = NULL;
        return md;
}

/* A harness for one case outside the suite's own list; the case ends with pss_case_done(). */
static Pss *case_begin(const char *name, const char *const *extra) {
        static Pss S;
        srv_ensure();
        pss_case_init(&S, &pubsub_redis_driver, metadata(extra), PUBSUB_SUITE_PERSISTENT, name);
        return &S;
}

/* Opens a broker with the given instance id (the driver copies it at open). */
static PubsubBroker *open_as(Pss *S, const char *instance_id) {
        snprintf(S->instance_id, sizeof(S->instance_id), "test-%d-%.8s", (int) getpid(), instance_id);
        return pss_open(S);
}

/*
 * A daemon ("instance") that took the first n messages published to topic
 * in group and died without settling them: they stay pending with its
 * consumer. Returns when that daemon is closed.
 */
static void leave_unsettled(Pss *S, const char *instance, const char *topic, const char *group, unsigned n) {
        _cleanup_free_ PssPub *pubs = calloc(n, sizeof(*pubs));

        ASSERT_NOT_NULL(pubs);
        PubsubBroker *b = open_as(S, instance);
        PssSub *s = pss_subscribe(S, b, topic, group, n, PSS_HOLD);
        pss_sub_ready(S, s);
        pss_publish_keys(S, b, topic, 0, n, pubs);
        pss_wait_published(S, pubs, n);
        PSS_WAIT(S, s->outstanding == n);
        pss_close(S, b); /* nothing settled */
        ASSERT_EQ(srv_pending(topic, group), n);
}

/* ---- tests ---- */

/* Reclaims every 100 ms of what nobody touched for 300 ms. */
static const char *const fast_reclaim[] = { "processingTimeout", "300ms", "redeliverInterval", "100ms",
                                            NULL };

TEST(suite) {
        static const char *const reclaim_fast[] = { "processingTimeout", "1s", "redeliverInterval", "100ms",
                                                    NULL };
        _cleanup_free_ char *cases = NULL;
        const char *filter = getenv("PUBSUB_SUITE_CASES");

        srv_ensure();
        /*
         * unclaimed_topic expects a group to start at its subscribe (or the first group only to get
         * what came before). Redis groups start at the stream's first entry, as in Dapr: every new
         * group gets the history. That behaviour is tested below (group_gets_history) instead.
         */
        if (!filter || !*filter) {
                for (size_t i = 0; i < ELEMENTSOF(pss_cases); i++) {
                        if (streq(pss_cases[i].name, "unclaimed_topic"))
                                continue;
                        char *n = NULL;
                        ASSERT_TRUE(asprintf(&n, "%s%s%s", cases ?: "", cases ? ":" : "",
                                             pss_cases[i].name) > 0);
                        free(cases);
                        cases = n;
                }
                printf("  skip suite/unclaimed_topic (every new Redis group gets the stream's history)\n");
                ASSERT_OK(setenv("PUBSUB_SUITE_CASES", cases, 1));
        }
        pubsub_driver_suite_run(&pubsub_redis_driver, metadata(NULL), PUBSUB_SUITE_PERSISTENT);

        /* The cases that hold, retry or abandon deliveries, again with reclaims running all the time:
         * they must not take what this broker holds, nor deliver anything twice. */
        if (!filter || !*filter)
                ASSERT_OK(setenv("PUBSUB_SUITE_CASES",
                                 "competing_consumers:retry:max_in_flight:unsubscribe_redelivers:"
                                 "unsubscribe_in_deliver:close_unsettled",
                                 1));
        printf("  (again with processingTimeout 1s, redeliverInterval 100ms)\n");
        pubsub_driver_suite_run(&pubsub_redis_driver, metadata(reclaim_fast), PUBSUB_SUITE_PERSISTENT);
        if (!filter || !*filter)
                (void) unsetenv("PUBSUB_SUITE_CASES");
}

TEST(open_errors) {
        static const struct {
                const char *name, *value, *field;
        } bad[] = {
                { "redisHost", "", "redisHost" },
                { "clientCert", "x", "clientCert" },        /* TLS metadata while TLS is off */
                { "insecureSkipTLSVerify", "true", "insecureSkipTLSVerify" },
                { "enableTLS", "maybe", "enableTLS" },
                { "redisDB", "x", "redisDB" },
                { "processingTimeout", "soon", "processingTimeout" },
                { "redeliverInterval", "-1s", "redeliverInterval" },
                { "queueDepth", "0", "queueDepth" },
                { "concurrency", "0", "concurrency" },
                { "maxLenApprox", "ten", "maxLenApprox" },
                { "timeout", "0", "timeout" },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                const char *extra[] = { bad[i].name, bad[i].value, NULL };
                Pss *S = case_begin("open-errors", extra);
                PubsubBroker *b = NULL;
                _cleanup_free_ char *msg = NULL;

                static const char *const no_host[] = { "redisHost", "", NULL };
                if (streq(bad[i].name, "redisHost"))
                        S->metadata = no_host;
                int r = pss_open_full(S, &b, &msg);
                if (r >= 0 || !msg || !strstr(msg, bad[i].field))
                        fprintf(stderr, "%s=%s: open() = %d, '%s'\n", bad[i].name, bad[i].value, r,
                                strna(msg));
                ASSERT_TRUE(r < 0);
                ASSERT_NOT_NULL(msg);
                ASSERT_TRUE(strstr(msg, bad[i].field));
                if (streq(bad[i].name, "clientCert"))
                        ASSERT_TRUE(strstr(msg, "enableTLS is not \"true\""));
                ASSERT_NULL(b);
                pss_case_done(S);
        }
}

/*
 * A consumer that took messages and died (its subscription never settled
 * them, then went away) in one daemon; a second daemon of the same group
 * reclaims them once they are idle for processingTimeout, with attempt 2.
 * Before that they stay with the dead consumer.
 */
TEST(reclaim_dead_consumer) {
        enum { N = 6 };
        Pss *S = case_begin("reclaim", fast_reclaim);
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");

        leave_unsettled(S, "a", topic, group, N);
        uint64_t taken = pss_now();

        PubsubBroker *b = open_as(S, "b");
        PssSub *heir = pss_subscribe(S, b, topic, group, 16, PSS_ACK);
        PSS_WAIT(S, pss_distinct(heir, 0, N) == N);
        for (size_t i = 0; i < heir->n_recv; i++) {
                ASSERT_EQ(heir->recv[i].attempt, 2);
                ASSERT_TRUE(heir->recv[i].at_usec - taken >= 300 * 1000);
        }
        pss_run_for(S, PSS_QUIET_MS);
        PSS_ASSERT_EXACTLY_ONCE(S, heir, 0, N);
        PSS_WAIT(S, srv_pending(topic, group) == 0);
        pss_case_done(S);
}

/* A live consumer that holds its messages longer than the reclaim interval keeps them. */
TEST(reclaim_spares_live_holder) {
        enum { N = 4 };
        PssPub pubs[N];
        Pss *S = case_begin("spare", fast_reclaim);
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");

        PubsubBroker *a = open_as(S, "a"), *b = open_as(S, "b");
        PssSub *holder = pss_subscribe(S, a, topic, group, N, PSS_HOLD);
        pss_sub_ready(S, holder);
        pss_publish_keys(S, a, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        PSS_WAIT(S, holder->outstanding == N);
        /* The other daemon's reclaims run while a's subscription keeps them (a retry renews them). */
        PssSub *other = pss_subscribe(S, b, topic, group, 16, PSS_ACK);
        pss_run_for(S, 200);
        for (size_t i = 0; i < holder->n_held;)
                pss_settle_held(holder, i, PUBSUB_RETRY, 0);
        PSS_WAIT(S, holder->outstanding == N);
        pss_run_for(S, 200);
        pss_ack_all_held(holder);
        pss_run_for(S, PSS_QUIET_MS);
        ASSERT_EQ(other->n_recv, 0);
        PSS_WAIT(S, srv_pending(topic, group) == 0);
        pss_case_done(S);
}

/* Two daemons (two brokers, two instance ids) in one group: each message goes to one of them. */
TEST(two_daemons_compete) {
        enum { N = 200 };
        PssPub pubs[N];
        Pss *S = case_begin("compete", NULL);
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");

        PubsubBroker *a = open_as(S, "a"), *b = open_as(S, "b");
        PssSub *sa = pss_subscribe(S, a, topic, group, 2, PSS_HOLD);
        PssSub *sb = pss_subscribe(S, b, topic, group, 2, PSS_HOLD);
        pss_sub_ready(S, sa);
        pss_publish_keys(S, a, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        /* Both fill up: the group shares its messages between them. */
        PSS_WAIT(S, sa->outstanding == 2 && sb->outstanding == 2);
        for (;;) {
                unsigned got = 0;
                for (unsigned k = 0; k < N; k++)
                        got += pss_count(sa, (int) k) + pss_count(sb, (int) k) > 0;
                if (got == N)
                        break;
                pss_ack_all_held(sa);
                pss_ack_all_held(sb);
                ASSERT_TRUE(PSS_WAIT_UNTIL(S, sa->outstanding + sb->outstanding > 0, PSS_WAIT_MS));
        }
        pss_ack_all_held(sa);
        pss_ack_all_held(sb);
        pss_run_for(S, PSS_QUIET_MS);
        for (unsigned k = 0; k < N; k++)
                ASSERT_EQ(pss_count(sa, (int) k) + pss_count(sb, (int) k), 1);
        ASSERT_TRUE(sa->n_recv > 0 && sb->n_recv > 0);
        ASSERT_TRUE(sa->max_outstanding <= 2 && sb->max_outstanding <= 2);
        fprintf(stderr, "  split %zu/%zu\n", sa->n_recv, sb->n_recv);
        pss_case_done(S);
}

/* Dapr's groups start at "0": a group created after messages were published still gets them. */
TEST(group_gets_history) {
        enum { N = 3 };
        PssPub pubs[N];
        Pss *S = case_begin("history", NULL);
        _cleanup_free_ char *topic = pss_name(S, "t"), *g1 = pss_name(S, "g1"), *g2 = pss_name(S, "g2");

        PubsubBroker *b = pss_open(S);
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        PssSub *s1 = pss_subscribe(S, b, topic, g1, 8, PSS_ACK);
        PSS_WAIT(S, pss_distinct(s1, 0, N) == N);
        PssSub *s2 = pss_subscribe(S, b, topic, g2, 8, PSS_ACK);
        PSS_WAIT(S, pss_distinct(s2, 0, N) == N);
        pss_run_for(S, 200);
        PSS_ASSERT_EXACTLY_ONCE(S, s1, 0, N);
        PSS_ASSERT_EXACTLY_ONCE(S, s2, 0, N);
        pss_case_done(S);
}

/* The server dies under a live subscription: publishes fail fast, then both recover by themselves. */
TEST(server_restart) {
        Pss *S = case_begin("restart", NULL);
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        PssPub p;

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        pss_sub_ready(S, s);
        pss_publish_keys(S, b, topic, 0, 1, &p);
        pss_wait_published(S, &p, 1);
        PSS_WAIT(S, pss_count(s, 0) == 1);

        srv_stop();
        /* Down: -ENOTCONN with a message naming the cause, each answered within the second. */
        for (unsigned i = 0; i < 5; i++) {
                uint64_t t0 = pss_now();
                pss_publish(S, b, topic, "m1", 2, NULL, 0, &p);
                PSS_WAIT(S, p.n_fired == 1);
                ASSERT_EQ(p.error, -ENOTCONN);
                ASSERT_TRUE(pss_now() - t0 < 1000 * 1000);
                pss_run_for(S, 150);
        }

        srv_start(); /* same port, empty: the group must be created again */
        for (uint64_t end = pss_now() + PSS_WAIT_MS * 1000ULL;;) {
                pss_publish(S, b, topic, "m2", 2, NULL, 0, &p);
                PSS_WAIT(S, p.n_fired == 1);
                if (p.error == 0)
                        break;
                ASSERT_EQ(p.error, -ENOTCONN);
                ASSERT_TRUE(pss_now() < end);
                pss_run_for(S, 50);
        }
        /* m2 may have gone in before the reader re-created the group: then it is history, which "0" gets */
        PSS_WAIT(S, pss_count(s, 2) == 1);
        pss_publish_keys(S, b, topic, 3, 1, &p);
        pss_wait_published(S, &p, 1);
        PSS_WAIT(S, pss_count(s, 3) == 1);
        pss_run_for(S, 200);
        ASSERT_EQ(pss_count(s, 1), 0);
        ASSERT_EQ(s->n_recv, 3);
        pss_case_done(S);
}

/* No server yet at open() and subscribe(): both succeed, and work once the server is there. */
TEST(no_server_yet) {
        Pss *S = case_begin("noserver", NULL);
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        PssPub p;

        srv_stop();
        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        pss_publish(S, b, topic, "m0", 2, NULL, 0, &p);
        PSS_WAIT(S, p.n_fired == 1);
        ASSERT_EQ(p.error, -ENOTCONN);
        srv_start();
        pss_sub_ready(S, s);
        pss_publish_keys(S, b, topic, 1, 1, &p);
        pss_wait_published(S, &p, 1);
        PSS_WAIT(S, pss_count(s, 1) == 1);
        pss_case_done(S);
}

/* A server that stops answering: publishes end with -ETIMEDOUT after `timeout`, then all recovers. */
TEST(server_stalls) {
        static const char *const extra[] = { "timeout", "300ms", NULL };
        Pss *S = case_begin("stall", extra);
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        PssPub p;

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        pss_sub_ready(S, s);
        ASSERT_OK(kill(srv.pid, SIGSTOP));
        uint64_t t0 = pss_now();
        pss_publish(S, b, topic, "m0", 2, NULL, 0, &p);
        bool answered = PSS_WAIT_UNTIL(S, p.n_fired == 1, 3000);
        uint64_t dt = pss_now() - t0;
        (void) kill(srv.pid, SIGCONT);
        ASSERT_TRUE(answered);
        ASSERT_EQ(p.error, -ETIMEDOUT);
        ASSERT_TRUE(dt >= 250 * 1000);

        /* Both connections come back (the reader's blocked read times out too, later). */
        for (uint64_t end = pss_now() + PSS_WAIT_MS * 1000ULL;;) {
                pss_publish_keys(S, b, topic, 1, 1, &p);
                PSS_WAIT(S, p.n_fired == 1);
                if (p.error == 0)
                        break;
                ASSERT_TRUE(pss_now() < end);
                pss_run_for(S, 50);
        }
        PSS_WAIT(S, pss_count(s, 1) == 1);
        pss_case_done(S);
}

/* Entries deleted from the stream while pending are acknowledged away, not delivered empty. */
TEST(deleted_while_pending) {
        enum { N = 3 };
        Pss *S = case_begin("deleted", fast_reclaim);
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");

        leave_unsettled(S, "a", topic, group, N);
        ASSERT_EQ(srv_integer("XTRIM %s MAXLEN 0", topic), N + 1); /* and the probe */

        /* The same daemon again (its own pending entries), and another one (a reclaim). */
        PubsubBroker *a = open_as(S, "a"), *b = open_as(S, "b");
        PssSub *again = pss_subscribe(S, a, topic, group, 8, PSS_ACK);
        PssSub *other = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        PSS_WAIT(S, srv_pending(topic, group) == 0);
        pss_run_for(S, PSS_QUIET_MS);
        ASSERT_EQ(again->n_recv, 0);
        ASSERT_EQ(other->n_recv, 0);
        pss_case_done(S);
}

/* maxLenApprox: XADD MAXLEN ~ keeps the stream near that length. */
TEST(max_len) {
        static const char *const extra[] = { "maxLenApprox", "10", NULL };
        enum { N = 1000 };
        _cleanup_free_ PssPub *pubs = calloc(N, sizeof(*pubs));
        Pss *S = case_begin("maxlen", extra);
        _cleanup_free_ char *topic = pss_name(S, "t");

        ASSERT_NOT_NULL(pubs);
        PubsubBroker *b = pss_open(S);
        pss_publish_keys(S, b, topic, 0, N, pubs);
        pss_wait_published(S, pubs, N);
        long long len = srv_integer("XLEN %s", topic);
        fprintf(stderr, "  XLEN after %d publishes with MAXLEN ~ 10: %lld\n", N, len);
        ASSERT_TRUE(len >= 10 && len < 200); /* "~": whole macro nodes (100 entries by default) */
        pss_case_done(S);
}

/* consumerID overrides the group; redisDB and a password are used on every connection. */
TEST(consumer_id_db_password) {
        static const char *const extra[] = { "consumerID", "fixed-group", "redisDB", "2", NULL };
        Pss *S = case_begin("consumerid", extra);
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");
        PssPub p;

        PubsubBroker *b = pss_open(S);
        PssSub *s = pss_subscribe(S, b, topic, group, 8, PSS_ACK);
        pss_sub_ready(S, s);
        pss_publish_keys(S, b, topic, 0, 1, &p);
        pss_wait_published(S, &p, 1);
        PSS_WAIT(S, pss_count(s, 0) == 1);
        /* In db 2, group "fixed-group"; nothing in db 0. */
        ASSERT_EQ(srv_integer("EXISTS %s", topic), 0);
        redisContext *c = srv_connect();
        ASSERT_NOT_NULL(c);
        redisReply *r = redisCommand(c, "SELECT 2");
        ASSERT_TRUE(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
        r = redisCommand(c, "XINFO GROUPS %s", topic);
        ASSERT_TRUE(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
        bool found = false;
        for (size_t i = 0; i + 1 < r->element[0]->elements; i += 2)
                if (streq(r->element[0]->element[i]->str, "name"))
                        found = streq(r->element[0]->element[i + 1]->str, "fixed-group");
        freeReplyObject(r);
        redisFree(c);
        ASSERT_TRUE(found);
        pss_case_done(S);

        /* A wrong password: publishes fail with the server's answer. */
        static const char *const wrong[] = { "redisPassword", "nope", NULL };
        S = case_begin("password", wrong);
        b = pss_open(S);
        pss_publish(S, b, topic, "m0", 2, NULL, 0, &p);
        PSS_WAIT(S, p.n_fired == 1);
        ASSERT_TRUE(p.error < 0);
        pss_case_done(S);
}

/* Publish throughput through the driver: one at a time, and 64 in flight (pipelined). */
TEST(bench_publish) {
        enum { N = 20000, WINDOW = 64 };
        _cleanup_free_ PssPub *pubs = calloc(N, sizeof(*pubs));
        Pss *S = case_begin("bench", NULL);
        _cleanup_free_ char *topic = pss_name(S, "t");
        static const char payload[] =
                "{\"specversion\":\"1.0\",\"type\":\"bench\",\"data\":\"xxxxxxxxxxxxxxxx\"}";

        ASSERT_NOT_NULL(pubs);
        PubsubBroker *b = pss_open(S);

        uint64_t t0 = pss_now();
        for (unsigned i = 0; i < N / 4; i++) {
                pss_publish(S, b, topic, payload, sizeof(payload) - 1, NULL, 0, &pubs[i]);
                while (pubs[i].n_fired == 0)
                        ASSERT_OK(sd_event_run(S->event, 1000 * 1000));
                ASSERT_EQ(pubs[i].error, 0);
        }
        uint64_t t1 = pss_now();
        unsigned started = 0, done = 0;
        while (done < N) {
                while (started < N && started - done < WINDOW) {
                        pss_publish(S, b, topic, payload, sizeof(payload) - 1, NULL, 0, &pubs[started]);
                        started++;
                }
                ASSERT_OK(sd_event_run(S->event, 1000 * 1000));
                while (done < started && pubs[done].n_fired > 0)
                        ASSERT_EQ(pubs[done++].error, 0);
        }
        uint64_t t2 = pss_now();
        printf("# XADD through the driver: %.0f/s one at a time, %.0f/s with %d in flight\n",
               (N / 4) / ((t1 - t0) / 1e6), N / ((t2 - t1) / 1e6), WINDOW);
        ASSERT_EQ(srv_integer("XLEN %s", topic), N + N / 4);

        /* Consuming it all (a new group gets the history), acking inside deliver(), 64 in flight. */
        _cleanup_free_ char *group = pss_name(S, "g");
        PssSub *s = pss_subscribe(S, b, topic, group, WINDOW, PSS_ACK);
        PSS_WAIT(S, s->n_recv == N + N / 4);
        PSS_WAIT(S, srv_pending(topic, group) == 0);
        uint64_t t3 = pss_now();
        printf("# delivered and acknowledged: %.0f/s\n", (N + N / 4) / ((t3 - t2) / 1e6));
        pss_case_done(S);
}

/*
 * A restarted daemon (same instance id) first re-reads what it had not
 * settled: at once, not after processingTimeout (60 s by default), with the
 * broker's attempt number, before anything new.
 */
TEST(own_pending_after_restart) {
        enum { N = 4 };
        PssPub p;
        Pss *S = case_begin("ownpending", NULL);
        _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");

        leave_unsettled(S, "same", topic, group, N);
        PubsubBroker *b = open_as(S, "same");
        pss_publish_keys(S, b, topic, N, 1, &p);
        pss_wait_published(S, &p, 1);
        PssSub *s =
                pss_subscribe(S, b, topic, group, 2, PSS_ACK); /* two at a time: the re-read takes turns */
        PSS_WAIT(S, pss_distinct(s, 0, N + 1) == N + 1);
        pss_run_for(S, 200);
        PSS_ASSERT_EXACTLY_ONCE(S, s, 0, N + 1);
        for (unsigned k = 0; k < N; k++)
                ASSERT_EQ(pss_find(s, (int) k)->attempt, 2);
        ASSERT_EQ(pss_find(s, N)->attempt, 1);
        pss_assert_first_in_order(S, s);
        pss_case_done(S);
}

/* close() from inside deliver(), on a first delivery and on a redelivery after RETRY. */
typedef struct CloseInDeliver {
        Pss *S;
        PubsubBroker *b;
        unsigned n, close_at;
        PssPub pubs[3];
} CloseInDeliver;

static void on_deliver_close(PubsubSubscription *sub, PubsubDelivery *d, const PubsubMessage *msg,
                             void *userdata) {
        CloseInDeliver *x = userdata;

        ASSERT_NOT_NULL(x->b); /* nothing after close() */
        if (++x->n < x->close_at) {
                pubsub_redis_driver.settle(d, PUBSUB_RETRY, 0);
                return;
        }
        /* Publishes in flight too: answered -ECANCELED before close() returns. */
        for (size_t i = 0; i < ELEMENTSOF(x->pubs); i++)
                pss_publish(x->S, x->b, msg->topic, "late", 4, NULL, 0, &x->pubs[i]);
        PubsubBroker *b = TAKE_PTR(x->b);
        pss_close(x->S, b);
        for (size_t i = 0; i < ELEMENTSOF(x->pubs); i++)
                ASSERT_EQ(x->pubs[i].n_fired, 1);
}

TEST(close_in_deliver) {
        for (unsigned close_at = 1; close_at <= 2; close_at++) {
                enum { N = 5 };
                PssPub pubs[N];
                CloseInDeliver x = { .close_at = close_at };
                PubsubSubscription *sub;
                Pss *S = case_begin("closeindeliver", NULL);
                _cleanup_free_ char *topic = pss_name(S, "t"), *group = pss_name(S, "g");

                x.S = S;
                x.b = pss_open(S);
                pss_publish_keys(S, x.b, topic, 0, N, pubs);
                pss_wait_published(S, pubs, N);
                ASSERT_OK(pubsub_redis_driver.subscribe(x.b, topic, group, 8, on_deliver_close, &x, &sub));
                PSS_WAIT(S, !x.b);
                pss_run_for(S, 300);
                ASSERT_EQ(x.n, close_at);
                pss_case_done(S);
        }
}
