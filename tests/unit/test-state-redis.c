/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for drivers/state/redis.c against a real redis-server started here
 * (on a free port, no persistence, in a temporary directory), driven by a
 * real sd-event loop: round trip of binary values, etags and CAS, first
 * write, deletes with etag, TTL, transactions (all or nothing), malformed
 * etags, a 1 MiB value, a server restart under the store's feet, and close()
 * with calls in flight. Exits 77 (skip) when redis-server is not installed,
 * unless MOORING_TEST_NO_SKIP=1.
 *
 * The server is killed at exit, and also dies with this process
 * (PR_SET_PDEATHSIG) when a failed run leaves through _exit().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "core/component.h"
#include "drivers/state/driver.h"
#include "util/cleanup.h"
#include "tests.h"

extern const StateDriver state_redis_driver;

static pid_t server_pid;
static int server_port;
static char server_dir[] = "/tmp/mooring-test-redis-XXXXXX";
static bool server_dir_made;
static char *server_exe;

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static char *find_redis_server(void) {
        const char *path = getenv("PATH");
        _cleanup_free_ char *dirs = strdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
        char *save = NULL;

        ASSERT_NOT_NULL(dirs);
        for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                char *p = NULL;
                ASSERT_TRUE(asprintf(&p, "%s/redis-server", d) >= 0);
                if (access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        if (access("/usr/sbin/redis-server", X_OK) == 0)
                return strdup("/usr/sbin/redis-server");
        return NULL;
}

static int free_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &a, sizeof(a)));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &a, &len));
        return ntohs(a.sin_port);
}

/* One PING over a raw socket: true on "+PONG". */
static bool server_pings(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                 .sin_port = htons((uint16_t) server_port) };
        struct timeval tv = { .tv_sec = 1 };
        char buf[16] = {};
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return false;
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0)
                return false;
        if (write(fd, "PING\r\n", 6) != 6)
                return false;
        return read(fd, buf, sizeof(buf) - 1) >= 5 && strneq(buf, "+PONG", 5);
}

static void server_start(void) {
        char port[16];
        pid_t parent = getpid();

        snprintf(port, sizeof(port), "%d", server_port);
        server_pid = fork();
        ASSERT_TRUE(server_pid >= 0);
        if (server_pid == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(1);
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (null >= 0) {
                        (void) dup2(null, STDOUT_FILENO);
                        (void) dup2(null, STDERR_FILENO);
                }
                execl(server_exe, server_exe, "--port", port, "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--dir", server_dir, "--protected-mode", "no", (char *) NULL);
                _exit(127);
        }

        for (uint64_t end = now_usec() + 10 * 1000000ULL; now_usec() < end;) {
                if (server_pings())
                        return;
                int status;
                ASSERT_TRUE(waitpid(server_pid, &status, WNOHANG) == 0); /* still running */
                usleep(20 * 1000);
        }
        fprintf(stderr, "redis-server did not answer PING within 10 s\n");
        test_fail();
}

static void server_stop(void) {
        if (server_pid <= 0)
                return;
        (void) kill(server_pid, SIGKILL);
        (void) waitpid(server_pid, NULL, 0);
        server_pid = 0;
}

__attribute__((destructor)) static void server_cleanup(void) {
        server_stop();
        if (server_dir_made)
                (void) rmdir(server_dir);
        free(server_exe);
}

/* Starts the shared server once; skips the whole binary when redis-server is missing. */
static void server_ensure(void) {
        if (server_pid > 0)
                return;
        if (!server_exe) {
                server_exe = find_redis_server();
                if (!server_exe) {
                        const char *e = getenv("MOORING_TEST_NO_SKIP");
                        if (e && streq(e, "1")) {
                                fprintf(stderr, "redis-server not found and MOORING_TEST_NO_SKIP=1\n");
                                test_fail();
                        }
                        printf("redis-server not found, skipping\n");
                        fflush(stdout);
                        exit(77);
                }
        }
        if (!server_dir_made) {
                ASSERT_NOT_NULL(mkdtemp(server_dir));
                server_dir_made = true;
        }
        if (server_port == 0)
                server_port = free_port();
        server_start();
}

/* ---- the driver on a real loop ---- */

typedef struct Call {
        bool fired;
        int error;
        char *message;
        StateValue value;
        unsigned *counter;
} Call;

static void call_reset(Call *c) {
        free(c->message);
        free(c->value.value);
        free(c->value.etag);
        *c = (Call){};
}

static void on_done(const StateResult *r, void *userdata) {
        Call *c = userdata;

        ASSERT_TRUE(!c->fired); /* exactly once */
        c->fired = true;
        c->error = r->error;
        c->message = r->message ? strdup(r->message) : NULL;
        c->value.found = r->value.found;
        c->value.value_len = r->value.value_len;
        c->value.expire_realtime_usec = r->value.expire_realtime_usec;
        if (r->value.value) {
                c->value.value = malloc(r->value.value_len + 1);
                memcpy(c->value.value, r->value.value, r->value.value_len + 1);
        }
        c->value.etag = r->value.etag ? strdup(r->value.etag) : NULL;
        if (c->counter)
                (*c->counter)++;
}

typedef struct Store {
        StateStore *s;
        sd_event *event;
} Store;

static void on_component(Component *c, void *userdata) {
        Component **ret = userdata;
        ASSERT_NULL(*ret);
        *ret = c;
}

static void on_component_error(const ConfError *e, void *userdata) {
        fprintf(stderr, "component error: %s\n", e->message ?: "?");
}

static Component *component_for(const char *extra_metadata) {
        _cleanup_free_ char *yaml = NULL;
        Component *c = NULL;

        ASSERT_TRUE(asprintf(&yaml,
                             "apiVersion: dapr.io/v1alpha1\n"
                             "kind: Component\n"
                             "metadata:\n"
                             "  name: redisstore\n"
                             "spec:\n"
                             "  type: state.redis\n"
                             "  version: v1\n"
                             "  metadata:\n"
                             "%s",
                             extra_metadata) >= 0);
        ASSERT_EQ(component_parse("test.yaml", yaml, strlen(yaml), on_component, on_component_error, &c), 1);
        ASSERT_NOT_NULL(c);
        return c;
}

/* Opens a store; returns the open() result, *reterr_msg set on failure. */
static int store_open_with(Store *st, const char *metadata, char **reterr_msg) {
        int r;

        *st = (Store){};
        ASSERT_OK(sd_event_default(&st->event));
        st->s = calloc(1, state_redis_driver.instance_size);
        ASSERT_NOT_NULL(st->s);
        st->s->driver = &state_redis_driver;
        st->s->component = component_for(metadata);
        st->s->event = st->event;
        st->s->name = st->s->component->name;
        r = state_redis_driver.open(st->s, reterr_msg);
        if (r < 0) {
                component_unref(st->s->component);
                free(st->s);
                st->s = NULL;
                st->event = sd_event_unref(st->event);
        }
        return r;
}

static void store_close(Store *st) {
        if (st->s) {
                state_redis_driver.close(st->s);
                component_unref(st->s->component);
                free(st->s);
                st->s = NULL;
        }
        st->event = sd_event_unref(st->event);
}

static char *host_metadata(const char *more) {
        char *m = NULL;
        ASSERT_TRUE(asprintf(&m, "  - name: redisHost\n    value: \"127.0.0.1:%d\"\n%s", server_port, more ?: "") >= 0);
        return m;
}

/* Runs the loop until c fired (bounded). */
static void wait_call(Store *st, Call *c, uint64_t timeout_usec) {
        for (uint64_t end = now_usec() + timeout_usec; !c->fired;) {
                ASSERT_TRUE(now_usec() < end);
                ASSERT_OK(sd_event_run(st->event, 100 * 1000));
        }
}

static void do_get(Store *st, const char *key, Call *c) {
        call_reset(c);
        ASSERT_OK(state_redis_driver.get(st->s, key, on_done, c));
        ASSERT_TRUE(!c->fired); /* never from inside the starting call */
        wait_call(st, c, 5 * 1000000ULL);
}

static void do_write(Store *st, const StateOp *op, Call *c) {
        call_reset(c);
        ASSERT_OK(state_redis_driver.write(st->s, op, on_done, c));
        ASSERT_TRUE(!c->fired);
        wait_call(st, c, 5 * 1000000ULL);
}

static void do_set(Store *st, const char *key, const char *value, const char *etag, Call *c) {
        StateOp op = { .kind = STATE_OP_UPSERT, .key = key, .value = value, .value_len = strlen(value), .etag = etag };
        do_write(st, &op, c);
}

static void do_tx(Store *st, const StateOp *ops, size_t n, Call *c) {
        call_reset(c);
        ASSERT_OK(state_redis_driver.transact(st->s, ops, n, on_done, c));
        ASSERT_TRUE(!c->fired);
        wait_call(st, c, 5 * 1000000ULL);
}

/* Waits until the store answers a get without -ENOTCONN. */
static void wait_connected(Store *st, uint64_t timeout_usec) {
        Call c = {};
        for (uint64_t end = now_usec() + timeout_usec;;) {
                do_get(st, "mooring-test||probe", &c);
                if (c.error != -ENOTCONN)
                        break;
                ASSERT_TRUE(now_usec() < end);
                /* let the reconnect timer run */
                uint64_t pause = now_usec() + 50 * 1000;
                while (now_usec() < pause)
                        ASSERT_OK(sd_event_run(st->event, 10 * 1000));
        }
        ASSERT_EQ(c.error, 0);
        call_reset(&c);
}

static void store_open(Store *st, const char *more) {
        _cleanup_free_ char *m = NULL;
        _cleanup_free_ char *err = NULL;

        server_ensure();
        m = host_metadata(more);
        ASSERT_OK(store_open_with(st, m, &err));
        wait_connected(st, 5 * 1000000ULL);
}

/* ---- tests ---- */

TEST(open_errors) {
        Store st;
        char *err = NULL;

        ASSERT_ERROR(store_open_with(&st, "  - name: redisPassword\n    value: x\n", &err), EINVAL);
        ASSERT_NOT_NULL(err);
        ASSERT_TRUE(strstr(err, "redisHost"));
        free(err);
        err = NULL;

        /* TLS metadata that cannot be what was meant, and certificates that are not: refused at open */
        static const struct {
                const char *yaml, *says;
        } tls_bad[] = {
                { "  - name: enableTLS\n    value: \"true\"\n  - name: clientCert\n    value: x\n",
                  "clientKey: missing" },
                { "  - name: enableTLS\n    value: \"true\"\n  - name: caCert\n    value: not a PEM\n",
                  "caCert: no PEM certificate" },
                { "  - name: enableTLS\n    value: \"true\"\n  - name: clientCert\n    value: x\n"
                  "  - name: clientKey\n    value: y\n",
                  "clientCert: no PEM certificate" },
                { "  - name: enableTLS\n    value: \"true\"\n  - name: insecureSkipTLSVerify\n    value: \"true\"\n"
                  "  - name: caCert\n    value: x\n",
                  "caCert: given with insecureSkipTLSVerify" },
                { "  - name: caCert\n    value: x\n", "caCert: given, but enableTLS is not" },
                { "  - name: enableTLS\n    value: \"yes please\"\n", "enableTLS: invalid boolean" },
        };
        for (size_t i = 0; i < ELEMENTSOF(tls_bad); i++) {
                _cleanup_free_ char *yaml = NULL;
                ASSERT_TRUE(asprintf(&yaml, "  - name: redisHost\n    value: localhost:6379\n%s", tls_bad[i].yaml) > 0);
                ASSERT_ERROR(store_open_with(&st, yaml, &err), EINVAL);
                ASSERT_NOT_NULL(err);
                if (!strstr(err, tls_bad[i].says))
                        fprintf(stderr, "expected '%s' in '%s'\n", tls_bad[i].says, err);
                ASSERT_TRUE(strstr(err, tls_bad[i].says));
                free(err);
                err = NULL;
        }
        ASSERT_ERROR(store_open_with(&st, "  - name: redisHost\n    value: /run/redis.sock\n"
                                          "  - name: enableTLS\n    value: \"true\"\n", &err), EINVAL);
        ASSERT_TRUE(strstr(err, "not over a Unix socket"));
        free(err);
        err = NULL;

        ASSERT_ERROR(store_open_with(&st, "  - name: redisHost\n    value: \"127.0.0.1:notaport\"\n", &err), EINVAL);
        ASSERT_TRUE(err && strstr(err, "redisHost"));
        free(err);
        err = NULL;

        ASSERT_ERROR(store_open_with(&st,
                                     "  - name: redisHost\n    value: \"127.0.0.1:1\"\n"
                                     "  - name: redisDB\n    value: \"x\"\n",
                                     &err),
                     EINVAL);
        ASSERT_TRUE(err && strstr(err, "redisDB"));
        free(err);
}

TEST(server_down_open_succeeds) {
        Store st;
        char *err = NULL;
        Call c = {};
        int port = free_port(); /* nothing listens there */
        _cleanup_free_ char *m = NULL;

        ASSERT_TRUE(asprintf(&m, "  - name: redisHost\n    value: \"127.0.0.1:%d\"\n", port) >= 0);
        ASSERT_OK(store_open_with(&st, m, &err));
        ASSERT_NULL(err);
        do_get(&st, "k", &c);
        ASSERT_EQ(c.error, -ENOTCONN);
        ASSERT_NOT_NULL(c.message);
        /* a while later (reconnects failing) still fast -ENOTCONN */
        uint64_t end = now_usec() + 300 * 1000;
        while (now_usec() < end)
                ASSERT_OK(sd_event_run(st.event, 20 * 1000));
        uint64_t t0 = now_usec();
        do_get(&st, "k", &c);
        ASSERT_EQ(c.error, -ENOTCONN);
        ASSERT_TRUE(now_usec() - t0 < 1000000ULL);
        call_reset(&c);
        store_close(&st);
}

TEST(round_trip_binary) {
        Store st;
        Call c = {};
        static const char bin[] = { 'a', 0, 'b', '\r', '\n', (char) 0xff, 0, 'z' };
        StateOp op = { .kind = STATE_OP_UPSERT, .key = "app||bin", .value = bin, .value_len = sizeof(bin) };

        store_open(&st, NULL);
        do_write(&st, &op, &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||bin", &c);
        ASSERT_EQ(c.error, 0);
        ASSERT_TRUE(c.value.found);
        ASSERT_EQ(c.value.value_len, sizeof(bin));
        ASSERT_TRUE(memcmp(c.value.value, bin, sizeof(bin)) == 0);
        ASSERT_EQ(((char *) c.value.value)[sizeof(bin)], 0);
        ASSERT_NOT_NULL(c.value.etag);
        ASSERT_EQ(c.value.expire_realtime_usec, 0);
        _cleanup_free_ char *etag1 = strdup(c.value.etag);

        /* empty value */
        StateOp empty = { .kind = STATE_OP_UPSERT, .key = "app||empty" };
        do_write(&st, &empty, &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||empty", &c);
        ASSERT_TRUE(c.value.found);
        ASSERT_EQ(c.value.value_len, 0);

        /* etag changes on every write */
        do_write(&st, &op, &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||bin", &c);
        ASSERT_NOT_NULL(c.value.etag);
        ASSERT_TRUE(!streq(c.value.etag, etag1));

        do_get(&st, "app||missing", &c);
        ASSERT_EQ(c.error, 0);
        ASSERT_TRUE(!c.value.found);
        ASSERT_NULL(c.value.value);
        ASSERT_NULL(c.value.etag);

        call_reset(&c);
        store_close(&st);
}

TEST(etag_cas) {
        Store st;
        Call c = {};

        store_open(&st, NULL);
        do_set(&st, "app||cas", "v1", NULL, &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||cas", &c);
        _cleanup_free_ char *e1 = strdup(c.value.etag);

        do_set(&st, "app||cas", "v2", e1, &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||cas", &c);
        ASSERT_STREQ(c.value.value, "v2");
        _cleanup_free_ char *e2 = strdup(c.value.etag);
        ASSERT_TRUE(!streq(e1, e2));

        /* stale etag */
        do_set(&st, "app||cas", "v3", e1, &c);
        ASSERT_EQ(c.error, -ESTALE);
        ASSERT_NOT_NULL(c.message);
        do_get(&st, "app||cas", &c);
        ASSERT_STREQ(c.value.value, "v2");
        ASSERT_STREQ(c.value.etag, e2);

        /* etag on an absent key: no conflict, as in Dapr's state.redis */
        do_set(&st, "app||cas-absent", "x", "1", &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||cas-absent", &c);
        ASSERT_STREQ(c.value.value, "x");

        /* malformed etags */
        do_set(&st, "app||cas", "v4", "abc", &c);
        ASSERT_EQ(c.error, -EINVAL);
        ASSERT_TRUE(c.message && strstr(c.message, "invalid etag"));
        do_set(&st, "app||cas", "v4", "", &c);
        ASSERT_EQ(c.error, -EINVAL);
        do_set(&st, "app||cas", "v4", "-1", &c);
        ASSERT_EQ(c.error, -EINVAL);
        StateOp del = { .kind = STATE_OP_DELETE, .key = "app||cas", .etag = "1.5" };
        do_write(&st, &del, &c);
        ASSERT_EQ(c.error, -EINVAL);
        do_get(&st, "app||cas", &c);
        ASSERT_STREQ(c.value.value, "v2");

        call_reset(&c);
        store_close(&st);
}

TEST(first_write) {
        Store st;
        Call c = {};
        StateOp op = { .kind = STATE_OP_UPSERT, .key = "app||fw", .value = "a", .value_len = 1,
                       .concurrency = STATE_CONCURRENCY_FIRST_WRITE };

        store_open(&st, NULL);
        do_write(&st, &op, &c);
        ASSERT_EQ(c.error, 0);
        op.value = "b";
        do_write(&st, &op, &c);
        ASSERT_EQ(c.error, -ESTALE);
        ASSERT_NOT_NULL(c.message);
        do_get(&st, "app||fw", &c);
        ASSERT_STREQ(c.value.value, "a");

        /* first-write with the right etag updates */
        StateOp op2 = op;
        _cleanup_free_ char *e = strdup(c.value.etag);
        op2.etag = e;
        do_write(&st, &op2, &c);
        ASSERT_EQ(c.error, 0);

        call_reset(&c);
        store_close(&st);
}

TEST(delete_with_etag) {
        Store st;
        Call c = {};
        StateOp del = { .kind = STATE_OP_DELETE, .key = "app||del" };

        store_open(&st, NULL);
        do_set(&st, "app||del", "x", NULL, &c);
        do_get(&st, "app||del", &c);
        _cleanup_free_ char *e = strdup(c.value.etag);

        del.etag = "999999";
        do_write(&st, &del, &c);
        ASSERT_EQ(c.error, -ESTALE);
        do_get(&st, "app||del", &c);
        ASSERT_TRUE(c.value.found);

        del.etag = e;
        do_write(&st, &del, &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||del", &c);
        ASSERT_TRUE(!c.value.found);

        /* absent: with an etag or without, success (Dapr's state.redis) */
        do_write(&st, &del, &c);
        ASSERT_EQ(c.error, 0);
        del.etag = NULL;
        do_write(&st, &del, &c);
        ASSERT_EQ(c.error, 0);

        call_reset(&c);
        store_close(&st);
}

TEST(ttl) {
        Store st;
        Call c = {};
        StateOp op = { .kind = STATE_OP_UPSERT, .key = "app||ttl", .value = "t", .value_len = 1, .ttl_sec = 1 };
        struct timespec ts;

        store_open(&st, NULL);
        do_write(&st, &op, &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||ttl", &c);
        ASSERT_TRUE(c.value.found);
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t now = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
        ASSERT_TRUE(c.value.expire_realtime_usec > now);
        ASSERT_TRUE(c.value.expire_realtime_usec <= now + 1100000ULL);

        uint64_t end = now_usec() + 3 * 1000000ULL;
        for (;;) {
                do_get(&st, "app||ttl", &c);
                ASSERT_EQ(c.error, 0);
                if (!c.value.found)
                        break;
                ASSERT_TRUE(now_usec() < end);
                usleep(100 * 1000);
        }

        /* a write without ttl makes a key persistent again */
        do_write(&st, &op, &c);
        op.ttl_sec = -1;
        do_write(&st, &op, &c);
        do_get(&st, "app||ttl", &c);
        ASSERT_EQ(c.value.expire_realtime_usec, 0);

        call_reset(&c);
        store_close(&st);
}

TEST(default_ttl) {
        Store st;
        Call c = {};
        StateOp op = { .kind = STATE_OP_UPSERT, .key = "app||dttl", .value = "t", .value_len = 1 };

        store_open(&st, "  - name: ttlInSeconds\n    value: \"100\"\n  - name: redisDB\n    value: \"3\"\n");
        do_write(&st, &op, &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||dttl", &c);
        ASSERT_TRUE(c.value.expire_realtime_usec > 0);
        op.ttl_sec = -1; /* explicitly never */
        do_write(&st, &op, &c);
        do_get(&st, "app||dttl", &c);
        ASSERT_EQ(c.value.expire_realtime_usec, 0);
        call_reset(&c);
        store_close(&st);

        /* db 3 is not db 0 */
        store_open(&st, NULL);
        do_get(&st, "app||dttl", &c);
        ASSERT_TRUE(!c.value.found);
        call_reset(&c);
        store_close(&st);
}

TEST(transaction) {
        Store st;
        Call c = {};

        store_open(&st, NULL);
        do_set(&st, "app||tx-a", "a0", NULL, &c);
        do_set(&st, "app||tx-b", "b0", NULL, &c);
        do_get(&st, "app||tx-b", &c);
        _cleanup_free_ char *eb = strdup(c.value.etag);

        /* second op's etag is wrong: nothing applied */
        StateOp bad[] = {
                { .kind = STATE_OP_UPSERT, .key = "app||tx-a", .value = "a1", .value_len = 2 },
                { .kind = STATE_OP_UPSERT, .key = "app||tx-b", .value = "b1", .value_len = 2, .etag = "424242" },
                { .kind = STATE_OP_DELETE, .key = "app||tx-c" },
        };
        do_tx(&st, bad, ELEMENTSOF(bad), &c);
        ASSERT_EQ(c.error, -ESTALE);
        ASSERT_NOT_NULL(c.message);
        do_get(&st, "app||tx-a", &c);
        ASSERT_STREQ(c.value.value, "a0");

        /* first-write conflict: nothing applied */
        StateOp fw[] = {
                { .kind = STATE_OP_DELETE, .key = "app||tx-b" },
                { .kind = STATE_OP_UPSERT, .key = "app||tx-a", .value = "a2", .value_len = 2,
                  .concurrency = STATE_CONCURRENCY_FIRST_WRITE },
        };
        do_tx(&st, fw, ELEMENTSOF(fw), &c);
        ASSERT_EQ(c.error, -ESTALE);
        do_get(&st, "app||tx-b", &c);
        ASSERT_TRUE(c.value.found);

        /* malformed etag */
        StateOp inval[] = { { .kind = STATE_OP_DELETE, .key = "app||tx-b", .etag = "x" } };
        do_tx(&st, inval, 1, &c);
        ASSERT_EQ(c.error, -EINVAL);

        /* good: all applied, in order (delete then first-write of the same key succeeds) */
        StateOp good[] = {
                { .kind = STATE_OP_UPSERT, .key = "app||tx-a", .value = "a3", .value_len = 2 },
                { .kind = STATE_OP_UPSERT, .key = "app||tx-b", .value = "b3", .value_len = 2, .etag = eb },
                { .kind = STATE_OP_DELETE, .key = "app||tx-a" },
                { .kind = STATE_OP_UPSERT, .key = "app||tx-a", .value = "a4", .value_len = 2,
                  .concurrency = STATE_CONCURRENCY_FIRST_WRITE },
                { .kind = STATE_OP_UPSERT, .key = "app||tx-c", .value = "c\0c", .value_len = 3, .ttl_sec = 100 },
        };
        do_tx(&st, good, ELEMENTSOF(good), &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||tx-a", &c);
        ASSERT_STREQ(c.value.value, "a4");
        ASSERT_STREQ(c.value.etag, "1");
        do_get(&st, "app||tx-b", &c);
        ASSERT_STREQ(c.value.value, "b3");
        do_get(&st, "app||tx-c", &c);
        ASSERT_EQ(c.value.value_len, 3);
        ASSERT_TRUE(memcmp(c.value.value, "c\0c", 3) == 0);
        ASSERT_TRUE(c.value.expire_realtime_usec > 0);

        /* an etag that the transaction itself produced is honoured within it */
        StateOp chain[] = {
                { .kind = STATE_OP_UPSERT, .key = "app||tx-a", .value = "a5", .value_len = 2, .etag = "1" },
                { .kind = STATE_OP_UPSERT, .key = "app||tx-a", .value = "a6", .value_len = 2, .etag = "2" },
        };
        do_tx(&st, chain, ELEMENTSOF(chain), &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||tx-a", &c);
        ASSERT_STREQ(c.value.value, "a6");

        call_reset(&c);
        store_close(&st);
}

TEST(big_value) {
        Store st;
        Call c = {};
        size_t n = 1024 * 1024;
        _cleanup_free_ char *v = malloc(n);

        ASSERT_NOT_NULL(v);
        for (size_t i = 0; i < n; i++)
                v[i] = (char) (i * 131 + 7);
        StateOp op = { .kind = STATE_OP_UPSERT, .key = "app||big", .value = v, .value_len = n };

        store_open(&st, NULL);
        do_write(&st, &op, &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||big", &c);
        ASSERT_EQ(c.value.value_len, n);
        ASSERT_TRUE(memcmp(c.value.value, v, n) == 0);
        call_reset(&c);
        store_close(&st);
}

TEST(server_restart) {
        Store st;
        Call c = {}, inflight[20] = {};

        store_open(&st, NULL);
        do_set(&st, "app||restart", "before", NULL, &c);
        ASSERT_EQ(c.error, 0);

        /* calls in flight when the server dies */
        for (size_t i = 0; i < ELEMENTSOF(inflight); i++)
                ASSERT_OK(state_redis_driver.get(st.s, "app||restart", on_done, &inflight[i]));
        server_stop();
        for (size_t i = 0; i < ELEMENTSOF(inflight); i++) {
                wait_call(&st, &inflight[i], 5 * 1000000ULL);
                /* some may have been answered before the kill */
                ASSERT_TRUE(inflight[i].error == 0 || inflight[i].error == -ENOTCONN);
                if (inflight[i].error)
                        ASSERT_TRUE(inflight[i].message && strstr(inflight[i].message, "redis"));
                call_reset(&inflight[i]);
        }

        /* while it is down: fast -ENOTCONN, several times over the backoff */
        for (int i = 0; i < 5; i++) {
                uint64_t t0 = now_usec();
                do_set(&st, "app||restart", "during", NULL, &c);
                ASSERT_EQ(c.error, -ENOTCONN);
                ASSERT_NOT_NULL(c.message);
                ASSERT_TRUE(now_usec() - t0 < 2000000ULL);
                uint64_t pause = now_usec() + 150 * 1000;
                while (now_usec() < pause)
                        ASSERT_OK(sd_event_run(st.event, 20 * 1000));
        }

        /* same port again: the store reconnects by itself (data is gone: no persistence) */
        server_start();
        wait_connected(&st, 8 * 1000000ULL);
        do_set(&st, "app||restart", "after", NULL, &c);
        ASSERT_EQ(c.error, 0);
        do_get(&st, "app||restart", &c);
        ASSERT_STREQ(c.value.value, "after");

        call_reset(&c);
        store_close(&st);
}

/* A server that stops answering: calls end with -ETIMEDOUT after `timeout`, then the store recovers. */
TEST(command_timeout) {
        Store st;
        Call c = {};

        store_open(&st, "  - name: timeout\n    value: 300ms\n");
        ASSERT_OK(kill(server_pid, SIGSTOP));
        uint64_t t0 = now_usec();
        call_reset(&c);
        ASSERT_OK(state_redis_driver.get(st.s, "app||t", on_done, &c));
        wait_call(&st, &c, 3 * 1000000ULL);
        uint64_t dt = now_usec() - t0;
        (void) kill(server_pid, SIGCONT);
        ASSERT_EQ(c.error, -ETIMEDOUT);
        ASSERT_TRUE(c.message && strstr(c.message, "no reply"));
        ASSERT_TRUE(dt >= 250 * 1000 && dt < 2000000ULL);

        wait_connected(&st, 8 * 1000000ULL);
        do_set(&st, "app||t", "ok", NULL, &c);
        ASSERT_EQ(c.error, 0);
        call_reset(&c);
        store_close(&st);
}

TEST(close_in_flight) {
        Store st;
        unsigned count = 0;
        Call calls[100] = {};
        size_t n = ELEMENTSOF(calls);

        store_open(&st, NULL);
        for (size_t i = 0; i < n; i++) {
                calls[i].counter = &count;
                if (i % 10 == 9) {
                        StateOp bad = { .kind = STATE_OP_UPSERT, .key = "app||c", .etag = "bad" }; /* deferred answer */
                        ASSERT_OK(state_redis_driver.write(st.s, &bad, on_done, &calls[i]));
                } else {
                        StateOp op = { .kind = STATE_OP_UPSERT, .key = "app||c", .value = "v", .value_len = 1 };
                        ASSERT_OK(state_redis_driver.write(st.s, &op, on_done, &calls[i]));
                }
        }
        ASSERT_EQ(count, 0);
        state_redis_driver.close(st.s);
        ASSERT_EQ(count, n);
        for (size_t i = 0; i < n; i++) {
                ASSERT_EQ(calls[i].error, -ECANCELED);
                ASSERT_NOT_NULL(calls[i].message);
                call_reset(&calls[i]);
        }
        component_unref(st.s->component);
        free(st.s);
        st.s = NULL;
        /* nothing left armed that would touch the freed store */
        for (int i = 0; i < 5; i++)
                ASSERT_OK(sd_event_run(st.event, 10 * 1000));
        store_close(&st);
}

/* close() from inside a done callback that hiredis is running. */
typedef struct CloseFromCb {
        Store *st;
        unsigned count;
        bool closed;
} CloseFromCb;

static void on_done_close(const StateResult *r, void *userdata) {
        CloseFromCb *x = userdata;
        x->count++;
        if (!x->closed) {
                x->closed = true;
                state_redis_driver.close(x->st->s);
                component_unref(x->st->s->component);
                free(x->st->s);
                x->st->s = NULL;
        }
}

TEST(close_from_callback) {
        Store st;
        CloseFromCb x = { .st = &st };

        store_open(&st, NULL);
        for (int i = 0; i < 10; i++)
                ASSERT_OK(state_redis_driver.get(st.s, "app||x", on_done_close, &x));
        for (uint64_t end = now_usec() + 5 * 1000000ULL; x.count < 10;) {
                ASSERT_TRUE(now_usec() < end);
                ASSERT_OK(sd_event_run(st.event, 100 * 1000));
        }
        ASSERT_EQ(x.count, 10);
        for (int i = 0; i < 5; i++)
                ASSERT_OK(sd_event_run(st.event, 10 * 1000));
        store_close(&st);
}

typedef struct Counter {
        unsigned done, failed;
} Counter;

static void on_done_count(const StateResult *r, void *userdata) {
        Counter *n = userdata;
        n->done++;
        if (r->error != 0)
                n->failed++;
}

/* 10k sequential SETs through the driver (one in flight at a time); prints ops/s. */
TEST(bench_sequential_set) {
        Store st;
        Counter cnt = {};
        const unsigned n = 10000;

        store_open(&st, NULL);
        uint64_t t0 = now_usec();
        for (unsigned i = 0; i < n; i++) {
                StateOp op = { .kind = STATE_OP_UPSERT, .key = "app||bench", .value = "xxx", .value_len = 3 };
                unsigned before = cnt.done;
                ASSERT_OK(state_redis_driver.write(st.s, &op, on_done_count, &cnt));
                while (cnt.done == before)
                        ASSERT_OK(sd_event_run(st.event, 1000000));
        }
        uint64_t dt = now_usec() - t0;
        ASSERT_EQ(cnt.failed, 0);
        printf("# %u sequential SETs through the driver: %.0f ops/s\n", n, n / (dt / 1e6));
        store_close(&st);
}
