/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for drivers/state/postgresql.c against a real PostgreSQL server:
 * initdb into a private temporary directory, a postmaster listening on a unix
 * socket in that directory only (no TCP), torn down by a guardian process when
 * this one exits however it exits (a failed run leaves through _exit()).
 *
 * Exits 77 (skipped) when the PostgreSQL server binaries are missing, unless
 * MOORING_TEST_NO_SKIP=1. As root the server runs as user postgres (or nobody).
 *
 * The driver runs on a real sd-event loop; every wait is bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "core/component.h"
#include "drivers/state/driver.h"
#include "tests.h"

extern const StateDriver state_postgresql_driver;

#define PG_BIN "/usr/lib/postgresql/15/bin"
#define PG_PORT 5432
#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)

/* ---- the server ---- */

static char server_dir[] = "/tmp/mooring-test-pg-XXXXXX";
static bool server_ready;
static char run_as[64]; /* "runuser -u postgres -- " as root, else "" */

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Runs a shell command; its exit status (or -1). */
static int shell(const char *fmt, ...) _printf_(1, 2);
static int shell(const char *fmt, ...) {
        _cleanup_free_ char *cmd = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&cmd, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -1;
        r = system(cmd);
        if (r < 0 || !WIFEXITED(r)) {
                fprintf(stderr, "command failed (%d): %s\n", r, cmd);
                return -1;
        }
        if (WEXITSTATUS(r) != 0)
                fprintf(stderr, "command exited %d: %s\n", WEXITSTATUS(r), cmd);
        return WEXITSTATUS(r);
}

static int server_start(void) {
        return shell("%s" PG_BIN "/pg_ctl -D %s/data -l %s/server.log -w -t 60 "
                     "-o \"-k %s -c listen_addresses='' -p %d -c fsync=off -c synchronous_commit=off "
                     "-c full_page_writes=off\" start >/dev/null",
                     run_as, server_dir, server_dir, server_dir, PG_PORT);
}

static int server_stop(const char *mode) {
        return shell("%s" PG_BIN "/pg_ctl -D %s/data -w -t 60 -m %s stop >/dev/null", run_as, server_dir,
                     mode);
}

/*
 * When this process ends — normally, through _exit() after a failure, or by a
 * crash — the pipe's write end closes and the guardian stops the server and
 * removes the directory.
 */
static void guardian_spawn(void) {
        _cleanup_free_ char *cmd = NULL;
        int fds[2];
        pid_t pid;

        ASSERT_OK(pipe2(fds, O_CLOEXEC));
        ASSERT_TRUE(asprintf(&cmd,
                             "cat >/dev/null; %s" PG_BIN "/pg_ctl -D %s/data -m immediate stop; rm -rf %s",
                             run_as, server_dir, server_dir) > 0);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);
                (void) setsid();
                (void) dup2(fds[0], STDIN_FILENO);
                if (null >= 0) {
                        (void) dup2(null, STDOUT_FILENO);
                        (void) dup2(null, STDERR_FILENO);
                }
                execl("/bin/sh", "sh", "-c", cmd, (char *) NULL);
                _exit(127);
        }
        close(fds[0]);
        /* fds[1] stays open (close-on-exec) for as long as we live */
}

static void server_ensure(void) {
        const char *no_skip = getenv("MOORING_TEST_NO_SKIP");

        if (server_ready)
                return;
        if (access(PG_BIN "/initdb", X_OK) < 0 || access(PG_BIN "/pg_ctl", X_OK) < 0 ||
            access(PG_BIN "/postgres", X_OK) < 0 || access(PG_BIN "/pg_isready", X_OK) < 0) {
                if (no_skip && streq(no_skip, "1")) {
                        fprintf(stderr, "PostgreSQL server binaries missing in " PG_BIN "\n");
                        ASSERT_TRUE(false);
                }
                printf("# PostgreSQL server binaries missing in " PG_BIN ", skipping\n");
                fflush(stdout);
                exit(77);
        }

        ASSERT_NOT_NULL(mkdtemp(server_dir));
        if (geteuid() == 0) {
                /* initdb refuses to run as root */
                struct passwd *pw = getpwnam("postgres") ?: getpwnam("nobody");
                ASSERT_NOT_NULL(pw);
                ASSERT_OK(chown(server_dir, pw->pw_uid, pw->pw_gid));
                snprintf(run_as, sizeof run_as, "runuser -u %s -- ", pw->pw_name);
        }
        ASSERT_OK(chmod(server_dir, 0700));
        guardian_spawn();

        ASSERT_EQ(shell("%s" PG_BIN "/initdb -D %s/data -A trust -U postgres -N -E UTF8 --locale=C "
                        ">%s/initdb.log 2>&1",
                        run_as, server_dir, server_dir),
                  0);
        ASSERT_EQ(server_start(), 0);
        ASSERT_EQ(shell(PG_BIN "/pg_isready -q -h %s -p %d -t 30", server_dir, PG_PORT), 0);
        server_ready = true;
}

/* One value from psql (as the superuser, over the socket), or NULL. */
static char *psql_value(const char *sql) {
        _cleanup_free_ char *cmd = NULL;
        char buf[256] = {};
        FILE *f;

        if (asprintf(&cmd, PG_BIN "/psql -h %s -p %d -U postgres -d postgres -XAtc \"%s\"", server_dir,
                     PG_PORT, sql) < 0)
                return NULL;
        f = popen(cmd, "r");
        if (!f)
                return NULL;
        if (!fgets(buf, sizeof buf, f))
                buf[0] = 0;
        (void) pclose(f);
        buf[strcspn(buf, "\n")] = 0;
        return strdup(buf);
}

/* ---- the store ---- */

typedef struct Store {
        sd_event *event;
        Component *component;
        StateStore *s;
} Store;

static void on_component(Component *c, void *userdata) {
        Component **ret = userdata;
        component_unref(*ret);
        *ret = c;
}

static void on_component_error(const ConfError *e, void *userdata) {
        fprintf(stderr, "component error: %s\n", strna(e->message));
}

/* Opens a store whose metadata is the given "- name: x\n    value: y\n" items. */
static int store_open_yaml(Store *st, const char *items, char **ret_err) {
        _cleanup_free_ char *yaml = NULL;
        int r;

        *st = (Store){};
        ASSERT_OK(sd_event_new(&st->event));
        ASSERT_TRUE(asprintf(&yaml,
                             "apiVersion: dapr.io/v1alpha1\n"
                             "kind: Component\n"
                             "metadata:\n"
                             "  name: pg\n"
                             "spec:\n"
                             "  type: state.postgresql\n"
                             "  version: v1\n"
                             "  metadata:\n"
                             "%s",
                             items) > 0);
        ASSERT_EQ(component_parse("test.yaml", yaml, strlen(yaml), on_component, on_component_error,
                                  &st->component),
                  1);
        ASSERT_NOT_NULL(st->component);

        st->s = calloc(1, state_postgresql_driver.instance_size);
        ASSERT_NOT_NULL(st->s);
        st->s->driver = &state_postgresql_driver;
        st->s->component = st->component;
        st->s->event = st->event;
        st->s->name = st->component->name;
        r = state_postgresql_driver.open(st->s, ret_err);
        if (r < 0) {
                free(st->s);
                st->s = NULL;
        }
        return r;
}

/* A store on the test server with the given table and extra metadata items. */
static void store_open(Store *st, const char *table, const char *extra) {
        _cleanup_free_ char *items = NULL, *err = NULL;

        server_ensure();
        ASSERT_TRUE(asprintf(&items,
                             "  - name: connectionString\n"
                             "    value: \"host=%s port=%d user=postgres dbname=postgres\"\n"
                             "  - name: tableName\n"
                             "    value: %s\n"
                             "%s",
                             server_dir, PG_PORT, table, strempty(extra)) > 0);
        ASSERT_OK(store_open_yaml(st, items, &err));
        ASSERT_NULL(err);
}

static void store_close(Store *st) {
        if (st->s) {
                st->s->driver->close(st->s);
                free(st->s);
        }
        component_unref(st->component);
        sd_event_unref(st->event);
        *st = (Store){};
}

/* ---- calls ---- */

typedef struct Call {
        unsigned n_calls;
        int error;
        char *message;
        bool found;
        void *value;
        size_t value_len;
        char *etag;
        uint64_t expire;
} Call;

static void call_done(Call *c) {
        free(c->message);
        free(c->value);
        free(c->etag);
        *c = (Call){};
}

static void on_done(const StateResult *r, void *userdata) {
        Call *c = userdata;

        c->n_calls++;
        c->error = r->error;
        free(c->message);
        c->message = r->message ? strdup(r->message) : NULL;
        c->found = r->value.found;
        free(c->value);
        c->value = NULL;
        c->value_len = r->value.value_len;
        if (r->value.value) {
                /* the driver promises a NUL after the bytes */
                ASSERT_EQ(((const char *) r->value.value)[r->value.value_len], 0);
                c->value = malloc(r->value.value_len + 1);
                memcpy(c->value, r->value.value, r->value.value_len + 1);
        }
        free(c->etag);
        c->etag = r->value.etag ? strdup(r->value.etag) : NULL;
        c->expire = r->value.expire_realtime_usec;
}

/* Runs the loop until c got its answer; fails the test after timeout_usec. */
static void wait_for(Store *st, unsigned *counter, unsigned target, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;

        while (*counter < target) {
                if (now_usec() > end) {
                        fprintf(stderr, "timed out waiting for %u callbacks (have %u)\n", target, *counter);
                        ASSERT_TRUE(false);
                }
                ASSERT_OK(sd_event_run(st->event, 100 * USEC_PER_MSEC));
        }
}

/* Runs the loop for a while, whatever happens. */
static void run_for(Store *st, uint64_t usec) {
        uint64_t end = now_usec() + usec;
        while (now_usec() < end)
                (void) sd_event_run(st->event, 20 * USEC_PER_MSEC);
}

static void wait_call(Store *st, Call *c) {
        wait_for(st, &c->n_calls, 1, 30 * USEC_PER_SEC);
        ASSERT_EQ(c->n_calls, 1);
        if (c->error != 0)
                ASSERT_NOT_NULL(c->message);
}

static int do_get(Store *st, const char *key, Call *c) {
        call_done(c);
        ASSERT_OK(st->s->driver->get(st->s, key, on_done, c));
        /* never from inside the starting call */
        ASSERT_EQ(c->n_calls, 0);
        wait_call(st, c);
        return c->error;
}

static int do_write(Store *st, const StateOp *op, Call *c) {
        call_done(c);
        ASSERT_OK(st->s->driver->write(st->s, op, on_done, c));
        ASSERT_EQ(c->n_calls, 0);
        wait_call(st, c);
        return c->error;
}

static int do_set(Store *st, const char *key, const void *value, size_t len, const char *etag,
                  StateConcurrency conc, int64_t ttl) {
        _cleanup_(call_done) Call c = {};
        StateOp op = { .kind = STATE_OP_UPSERT, .key = key, .value = value, .value_len = len, .etag = etag,
                       .concurrency = conc, .ttl_sec = ttl };
        return do_write(st, &op, &c);
}

static int do_set_str(Store *st, const char *key, const char *value, const char *etag) {
        return do_set(st, key, value, strlen(value), etag, STATE_CONCURRENCY_LAST_WRITE, 0);
}

static int do_del(Store *st, const char *key, const char *etag) {
        _cleanup_(call_done) Call c = {};
        StateOp op = { .kind = STATE_OP_DELETE, .key = key, .etag = etag };
        return do_write(st, &op, &c);
}

static int do_transact(Store *st, const StateOp *ops, size_t n, Call *c) {
        call_done(c);
        ASSERT_OK(st->s->driver->transact(st->s, ops, n, on_done, c));
        ASSERT_EQ(c->n_calls, 0);
        wait_call(st, c);
        return c->error;
}

/* The stored value of key as a string (must be found). */
static void expect_value(Store *st, const char *key, const char *value) {
        _cleanup_(call_done) Call c = {};
        ASSERT_EQ(do_get(st, key, &c), 0);
        ASSERT_TRUE(c.found);
        ASSERT_EQ(c.value_len, strlen(value));
        ASSERT_STREQ(c.value, value);
}

static void expect_absent(Store *st, const char *key) {
        _cleanup_(call_done) Call c = {};
        ASSERT_EQ(do_get(st, key, &c), 0);
        ASSERT_TRUE(!c.found);
        ASSERT_NULL(c.value);
        ASSERT_NULL(c.etag);
}

static char *get_etag(Store *st, const char *key) {
        _cleanup_(call_done) Call c = {};
        ASSERT_EQ(do_get(st, key, &c), 0);
        ASSERT_TRUE(c.found);
        ASSERT_NOT_NULL(c.etag);
        return TAKE_PTR(c.etag);
}

static void expect_message(const Call *c, const char *needle) {
        if (!c->message || !strstr(c->message, needle)) {
                fprintf(stderr, "message \"%s\" does not contain \"%s\"\n", strna(c->message), needle);
                ASSERT_TRUE(false);
        }
}

/* ---- tests ---- */

TEST(driver_table) {
        ASSERT_STREQ(state_postgresql_driver.type, "state.postgresql");
        ASSERT_STREQ(state_postgresql_driver.alias, "state.postgres");
        ASSERT_EQ(state_postgresql_driver.abi, STATE_DRIVER_ABI);
        ASSERT_EQ(state_postgresql_driver.features,
                  STATE_FEATURE_ETAG | STATE_FEATURE_TRANSACTIONAL | STATE_FEATURE_TTL | STATE_FEATURE_QUERY);
        ASSERT_NOT_NULL(state_postgresql_driver.transact);
        ASSERT_TRUE(state_driver_find("state.postgresql") == &state_postgresql_driver);
        ASSERT_TRUE(state_driver_find("state.postgres") == &state_postgresql_driver);
}

static void expect_open_error(const char *items, const char *needle) {
        _cleanup_free_ char *err = NULL;
        Store st;

        ASSERT_TRUE(store_open_yaml(&st, items, &err) < 0);
        ASSERT_NOT_NULL(err);
        if (!strstr(err, needle)) {
                fprintf(stderr, "error \"%s\" does not name \"%s\"\n", err, needle);
                ASSERT_TRUE(false);
        }
        store_close(&st);
}

TEST(open_errors) {
        expect_open_error("  - name: tableName\n    value: x\n", "connectionString");
        expect_open_error("  - name: connectionString\n    value: \"bogus\"\n", "connectionString");
        expect_open_error("  - name: connectionString\n    value: \"host=/x\"\n"
                          "  - name: tableName\n    value: \"a-b\"\n",
                          "tableName");
        expect_open_error("  - name: connectionString\n    value: \"host=/x\"\n"
                          "  - name: tableName\n    value: \"a.b.c\"\n",
                          "tableName");
        expect_open_error("  - name: connectionString\n    value: \"host=/x\"\n"
                          "  - name: tableName\n    value: \"x; DROP TABLE y\"\n",
                          "tableName");
        expect_open_error("  - name: connectionString\n    value: \"host=/x\"\n"
                          "  - name: timeout\n    value: soon\n",
                          "timeout");
        expect_open_error("  - name: connectionString\n    value: \"host=/x\"\n"
                          "  - name: timeout\n    value: \"0\"\n",
                          "timeout");
        expect_open_error("  - name: connectionString\n    value: \"host=/x\"\n"
                          "  - name: cleanupInterval\n    value: often\n",
                          "cleanupInterval");
}

/* A server that is not there: open() succeeds, calls fail with -ENOTCONN, nothing hangs. */
TEST(no_server) {
        _cleanup_(call_done) Call c = {};
        _cleanup_free_ char *err = NULL;
        Store st;

        ASSERT_OK(store_open_yaml(&st,
                                  "  - name: connectionString\n"
                                  "    value: \"postgres://postgres@%2Fnonexistent-mooring-dir:5432/postgres\"\n"
                                  "  - name: cleanupInterval\n    value: \"-1\"\n"
                                  "  - name: timeout\n    value: 2s\n",
                                  &err));
        ASSERT_NULL(err);
        ASSERT_ERROR(do_get(&st, "k", &c), ENOTCONN);
        expect_message(&c, "postgresql");
        /* and again, while backing off: fast */
        ASSERT_ERROR(do_get(&st, "k", &c), ENOTCONN);
        expect_message(&c, "not connected");
        store_close(&st);
}

TEST(roundtrip) {
        static const char bin[] = { 'a', 0, 'b', (char) 0xff, 0, '\n', 'z' };
        _cleanup_(call_done) Call c = {};
        _cleanup_free_ char *etag1 = NULL, *etag2 = NULL;
        Store st;

        store_open(&st, "roundtrip", NULL);
        expect_absent(&st, "app||k");
        ASSERT_EQ(do_set(&st, "app||k", bin, sizeof bin, NULL, STATE_CONCURRENCY_LAST_WRITE, 0), 0);

        ASSERT_EQ(do_get(&st, "app||k", &c), 0);
        ASSERT_TRUE(c.found);
        ASSERT_EQ(c.value_len, sizeof bin);
        ASSERT_TRUE(memcmp(c.value, bin, sizeof bin) == 0);
        ASSERT_NOT_NULL(c.etag);
        ASSERT_EQ(c.expire, 0);
        etag1 = TAKE_PTR(c.etag);

        /* every write gives a new etag, even with the same bytes */
        ASSERT_EQ(do_set(&st, "app||k", bin, sizeof bin, NULL, STATE_CONCURRENCY_LAST_WRITE, 0), 0);
        etag2 = get_etag(&st, "app||k");
        ASSERT_TRUE(!streq(etag1, etag2));

        /* empty values are values */
        ASSERT_EQ(do_set_str(&st, "app||empty", "", NULL), 0);
        expect_value(&st, "app||empty", "");

        /* keys are text with any characters */
        ASSERT_EQ(do_set_str(&st, "app||ключ 'quoted' \"x\" ; --", "v", NULL), 0);
        expect_value(&st, "app||ключ 'quoted' \"x\" ; --", "v");

        ASSERT_EQ(do_del(&st, "app||k", NULL), 0);
        expect_absent(&st, "app||k");
        /* deleting what is not there succeeds */
        ASSERT_EQ(do_del(&st, "app||k", NULL), 0);
        ASSERT_EQ(do_del(&st, "app||never", NULL), 0);
        store_close(&st);
}

TEST(etags) {
        _cleanup_(call_done) Call c = {};
        _cleanup_free_ char *etag = NULL, *etag2 = NULL;
        Store st;
        StateOp op;

        /* schema.table, mixed case folds like an unquoted SQL name */
        store_open(&st, "public.EtagS", NULL);
        ASSERT_EQ(do_set_str(&st, "k", "v1", NULL), 0);
        etag = get_etag(&st, "k");

        /* CAS: a wrong etag changes nothing */
        ASSERT_ERROR(do_set_str(&st, "k", "v2", "999999999"), ESTALE);
        expect_value(&st, "k", "v1");
        /* the right one works once */
        ASSERT_EQ(do_set_str(&st, "k", "v2", etag), 0);
        expect_value(&st, "k", "v2");
        ASSERT_ERROR(do_set_str(&st, "k", "v3", etag), ESTALE);
        etag2 = get_etag(&st, "k");
        ASSERT_TRUE(!streq(etag, etag2));

        /* an etag for a key that is not there */
        ASSERT_ERROR(do_set_str(&st, "absent", "v", "1"), ESTALE);
        expect_absent(&st, "absent");

        /* first-write: only if absent */
        ASSERT_ERROR(do_set(&st, "k", "x", 1, NULL, STATE_CONCURRENCY_FIRST_WRITE, 0), ESTALE);
        expect_value(&st, "k", "v2");
        ASSERT_EQ(do_set(&st, "fw", "x", 1, NULL, STATE_CONCURRENCY_FIRST_WRITE, 0), 0);
        expect_value(&st, "fw", "x");
        /* first-write with the right etag is a CAS update */
        free(etag);
        etag = get_etag(&st, "fw");
        ASSERT_EQ(do_set(&st, "fw", "y", 1, etag, STATE_CONCURRENCY_FIRST_WRITE, 0), 0);
        expect_value(&st, "fw", "y");

        /* delete with etags */
        ASSERT_ERROR(do_del(&st, "k", etag), ESTALE);
        expect_value(&st, "k", "v2");
        ASSERT_ERROR(do_del(&st, "absent", "1"), ESTALE);
        ASSERT_EQ(do_del(&st, "k", etag2), 0);
        expect_absent(&st, "k");

        /* malformed etags: -EINVAL, nothing changed */
        ASSERT_ERROR(do_set_str(&st, "fw", "z", "not-a-number"), EINVAL);
        op = (StateOp){ .kind = STATE_OP_UPSERT, .key = "fw", .value = "z", .value_len = 1, .etag = "12abc" };
        ASSERT_ERROR(do_write(&st, &op, &c), EINVAL);
        expect_message(&c, "invalid etag");
        ASSERT_ERROR(do_del(&st, "fw", ""), EINVAL);
        ASSERT_ERROR(do_del(&st, "fw", "99999999999999999999999"), EINVAL);
        ASSERT_ERROR(do_del(&st, "fw", " 1"), EINVAL);
        expect_value(&st, "fw", "y");
        store_close(&st);
}

TEST(ttl) {
        _cleanup_(call_done) Call c = {};
        _cleanup_free_ char *count = NULL;
        uint64_t end;
        struct timespec ts;
        Store st;

        store_open(&st, "ttl", "  - name: cleanupInterval\n    value: 1s\n");
        ASSERT_EQ(do_set(&st, "t", "v", 1, NULL, STATE_CONCURRENCY_LAST_WRITE, 1), 0);
        ASSERT_EQ(do_set(&st, "forever", "v", 1, NULL, STATE_CONCURRENCY_LAST_WRITE, 0), 0);
        ASSERT_EQ(do_get(&st, "t", &c), 0);
        ASSERT_TRUE(c.found);
        clock_gettime(CLOCK_REALTIME, &ts);
        ASSERT_TRUE(c.expire > (uint64_t) ts.tv_sec * USEC_PER_SEC);
        ASSERT_TRUE(c.expire <= ((uint64_t) ts.tv_sec + 2) * USEC_PER_SEC);

        /* gone within 3 s */
        end = now_usec() + 3 * USEC_PER_SEC;
        for (;;) {
                ASSERT_EQ(do_get(&st, "t", &c), 0);
                if (!c.found)
                        break;
                ASSERT_TRUE(now_usec() < end);
                run_for(&st, 100 * USEC_PER_MSEC);
        }
        /* an expired key is absent: CAS against it fails, first-write succeeds */
        ASSERT_ERROR(do_del(&st, "t", "1"), ESTALE);
        ASSERT_EQ(do_set(&st, "t", "new", 3, NULL, STATE_CONCURRENCY_FIRST_WRITE, 1), 0);
        expect_value(&st, "t", "new");

        /* the purge (every 1 s here) removes the rows themselves */
        end = now_usec() + 4 * USEC_PER_SEC;
        for (;;) {
                free(count);
                count = psql_value("SELECT count(*) FROM ttl WHERE expire_at IS NOT NULL");
                ASSERT_NOT_NULL(count);
                if (streq(count, "0"))
                        break;
                ASSERT_TRUE(now_usec() < end);
                run_for(&st, 200 * USEC_PER_MSEC);
        }
        expect_value(&st, "forever", "v");
        store_close(&st);
}

TEST(transactions) {
        _cleanup_(call_done) Call c = {};
        _cleanup_free_ char *etag = NULL;
        Store st;

        store_open(&st, "tx", NULL);
        ASSERT_EQ(do_set_str(&st, "a", "a0", NULL), 0);
        ASSERT_EQ(do_set_str(&st, "c", "c0", NULL), 0);
        etag = get_etag(&st, "a");

        {
                StateOp ops[] = {
                        { .kind = STATE_OP_UPSERT, .key = "a", .value = "a1", .value_len = 2, .etag = etag },
                        { .kind = STATE_OP_UPSERT, .key = "b", .value = "b1", .value_len = 2, .ttl_sec = 60 },
                        { .kind = STATE_OP_DELETE, .key = "c" },
                };
                ASSERT_EQ(do_transact(&st, ops, ELEMENTSOF(ops), &c), 0);
        }
        expect_value(&st, "a", "a1");
        expect_value(&st, "b", "b1");
        expect_absent(&st, "c");

        /* the last op fails: nothing of it happened */
        {
                StateOp ops[] = {
                        { .kind = STATE_OP_UPSERT, .key = "a", .value = "a2", .value_len = 2 },
                        { .kind = STATE_OP_DELETE, .key = "b" },
                        { .kind = STATE_OP_UPSERT, .key = "c", .value = "c2", .value_len = 2 },
                        { .kind = STATE_OP_UPSERT, .key = "a", .value = "a3", .value_len = 2, .etag = etag },
                };
                ASSERT_ERROR(do_transact(&st, ops, ELEMENTSOF(ops), &c), ESTALE);
                expect_message(&c, "'a'");
        }
        expect_value(&st, "a", "a1");
        expect_value(&st, "b", "b1");
        expect_absent(&st, "c");

        /* first-write conflict in the middle */
        {
                StateOp ops[] = {
                        { .kind = STATE_OP_UPSERT, .key = "d", .value = "d", .value_len = 1 },
                        { .kind = STATE_OP_UPSERT, .key = "b", .value = "x", .value_len = 1,
                          .concurrency = STATE_CONCURRENCY_FIRST_WRITE },
                        { .kind = STATE_OP_DELETE, .key = "a" },
                };
                ASSERT_ERROR(do_transact(&st, ops, ELEMENTSOF(ops), &c), ESTALE);
        }
        expect_absent(&st, "d");
        expect_value(&st, "a", "a1");

        /* a malformed etag anywhere: -EINVAL before anything runs */
        {
                StateOp ops[] = {
                        { .kind = STATE_OP_DELETE, .key = "a" },
                        { .kind = STATE_OP_DELETE, .key = "b", .etag = "W/\"1\"" },
                };
                ASSERT_ERROR(do_transact(&st, ops, ELEMENTSOF(ops), &c), EINVAL);
                expect_message(&c, "invalid etag");
        }
        expect_value(&st, "a", "a1");

        /* the connection is still usable after rollbacks; an empty transaction is fine */
        ASSERT_EQ(do_transact(&st, NULL, 0, &c), 0);
        {
                StateOp ops[] = {
                        { .kind = STATE_OP_DELETE, .key = "a" },
                        { .kind = STATE_OP_DELETE, .key = "b" },
                };
                ASSERT_EQ(do_transact(&st, ops, ELEMENTSOF(ops), &c), 0);
        }
        expect_absent(&st, "a");
        expect_absent(&st, "b");
        store_close(&st);
}

TEST(large_value) {
        _cleanup_(call_done) Call c = {};
        _cleanup_free_ uint8_t *big = NULL;
        const size_t n = 1024 * 1024;
        uint32_t x = 2463534242u;
        Store st;

        big = malloc(n);
        ASSERT_NOT_NULL(big);
        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                big[i] = (i % 7 == 0) ? 0 : (uint8_t) x;
        }
        store_open(&st, "large", NULL);
        ASSERT_EQ(do_set(&st, "big", big, n, NULL, STATE_CONCURRENCY_LAST_WRITE, 0), 0);
        ASSERT_EQ(do_get(&st, "big", &c), 0);
        ASSERT_TRUE(c.found);
        ASSERT_EQ(c.value_len, n);
        ASSERT_TRUE(memcmp(c.value, big, n) == 0);
        store_close(&st);
}

/* The server goes away and comes back: errors meanwhile, then it works again by itself. */
TEST(server_restart) {
        _cleanup_(call_done) Call c = {};
        uint64_t start, end;
        Store st;
        int r;

        store_open(&st, "restart", NULL);
        ASSERT_EQ(do_set_str(&st, "k", "before", NULL), 0);

        ASSERT_EQ(server_stop("fast"), 0);
        /* the first call may be the one that finds out; either way -ENOTCONN, quickly */
        start = now_usec();
        ASSERT_ERROR(do_get(&st, "k", &c), ENOTCONN);
        expect_message(&c, "postgresql");
        ASSERT_ERROR(do_set_str(&st, "k", "during", NULL), ENOTCONN);
        ASSERT_ERROR(do_get(&st, "k", &c), ENOTCONN);
        ASSERT_TRUE(now_usec() - start < 5 * USEC_PER_SEC);
        /* let it try to reconnect a few times against nothing */
        run_for(&st, 500 * USEC_PER_MSEC);

        ASSERT_EQ(server_start(), 0);
        end = now_usec() + 10 * USEC_PER_SEC;
        for (;;) {
                r = do_get(&st, "k", &c);
                if (r == 0)
                        break;
                ASSERT_ERROR(r, ENOTCONN);
                ASSERT_TRUE(now_usec() < end);
                run_for(&st, 100 * USEC_PER_MSEC);
        }
        ASSERT_TRUE(c.found);
        ASSERT_STREQ(c.value, "before");
        ASSERT_EQ(do_set_str(&st, "k", "after", NULL), 0);
        expect_value(&st, "k", "after");
        store_close(&st);
}

/* A statement stuck behind a lock: -ETIMEDOUT, and the store recovers. */
TEST(timeout) {
        _cleanup_(call_done) Call c = {};
        _cleanup_free_ char *cmd = NULL, *locked = NULL;
        uint64_t start, end;
        pid_t pid;
        int status;
        Store st;

        store_open(&st, "timeout", "  - name: timeout\n    value: 1s\n");
        ASSERT_EQ(do_set_str(&st, "k", "v", NULL), 0);

        ASSERT_TRUE(asprintf(&cmd,
                             PG_BIN "/psql -h %s -p %d -U postgres -d postgres -Xq -c "
                             "\"BEGIN; LOCK TABLE timeout IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;\" "
                             ">/dev/null",
                             server_dir, PG_PORT) > 0);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                execl("/bin/sh", "sh", "-c", cmd, (char *) NULL);
                _exit(127);
        }
        end = now_usec() + 5 * USEC_PER_SEC;
        for (;;) {
                free(locked);
                locked = psql_value("SELECT count(*) FROM pg_locks WHERE relation = 'timeout'::regclass "
                                    "AND mode = 'AccessExclusiveLock' AND granted");
                if (locked && streq(locked, "1"))
                        break;
                ASSERT_TRUE(now_usec() < end);
                usleep(50 * 1000);
        }

        start = now_usec();
        ASSERT_ERROR(do_get(&st, "k", &c), ETIMEDOUT);
        ASSERT_TRUE(now_usec() - start >= 900 * USEC_PER_MSEC);
        ASSERT_TRUE(now_usec() - start < 3 * USEC_PER_SEC);
        expect_message(&c, "timed out");

        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        /* the lock is gone: the store reconnected (or is doing so) and works */
        end = now_usec() + 5 * USEC_PER_SEC;
        while (do_get(&st, "k", &c) != 0) {
                ASSERT_TRUE(now_usec() < end);
                run_for(&st, 100 * USEC_PER_MSEC);
        }
        expect_value(&st, "k", "v");
        store_close(&st);
}

typedef struct Counter {
        unsigned n, n_ok, n_canceled, n_other;
} Counter;

static void on_count(const StateResult *r, void *userdata) {
        Counter *k = userdata;
        k->n++;
        if (r->error == 0)
                k->n_ok++;
        else if (r->error == -ECANCELED)
                k->n_canceled++;
        else
                k->n_other++;
}

/* close() with work queued and on the wire: every callback, before close() returns. */
TEST(close_in_flight) {
        Counter k = {};
        Store st;
        StateOp tx[] = {
                { .kind = STATE_OP_UPSERT, .key = "x", .value = "1", .value_len = 1 },
                { .kind = STATE_OP_DELETE, .key = "y" },
        };

        store_open(&st, "closing", NULL);
        /* connected and idle */
        ASSERT_EQ(do_set_str(&st, "x", "0", NULL), 0);
        for (unsigned i = 0; i < 50; i++) {
                StateOp op = { .kind = STATE_OP_UPSERT, .key = "x", .value = "v", .value_len = 1 };
                ASSERT_OK(st.s->driver->write(st.s, &op, on_count, &k));
        }
        ASSERT_OK(st.s->driver->get(st.s, "x", on_count, &k));
        ASSERT_OK(st.s->driver->transact(st.s, tx, ELEMENTSOF(tx), on_count, &k));
        /* an answer that was decided at once (bad etag) but not delivered yet */
        tx[0].etag = "bad";
        ASSERT_OK(st.s->driver->transact(st.s, tx, ELEMENTSOF(tx), on_count, &k));
        /* one turn of the loop: some of it is on the wire now */
        (void) sd_event_run(st.event, 0);
        ASSERT_TRUE(k.n < 53);

        st.s->driver->close(st.s);
        ASSERT_EQ(k.n, 53);
        ASSERT_EQ(k.n_other, 1); /* the bad etag keeps its -EINVAL */
        ASSERT_TRUE(k.n_canceled >= 1);
        free(st.s);
        st.s = NULL;
        store_close(&st);
}

typedef struct Reentrant {
        Store *st;
        Counter k;
} Reentrant;

static void on_close_from_callback(const StateResult *r, void *userdata) {
        Reentrant *re = userdata;
        on_count(r, &re->k);
        if (re->st->s) {
                StateStore *s = TAKE_PTR(re->st->s);
                s->driver->close(s);
                free(s);
        }
}

/* A done callback that closes the store while more answers are pending. */
TEST(close_from_callback) {
        Reentrant re = {};
        Store st;

        store_open(&st, "closing", NULL);
        re.st = &st;
        ASSERT_EQ(do_set_str(&st, "x", "0", NULL), 0);
        for (unsigned i = 0; i < 5; i++)
                ASSERT_OK(st.s->driver->get(st.s, "x", on_close_from_callback, &re));
        wait_for(&st, &re.k.n, 5, 10 * USEC_PER_SEC);
        ASSERT_NULL(st.s);
        ASSERT_EQ(re.k.n, 5);
        ASSERT_TRUE(re.k.n_ok >= 1);
        ASSERT_EQ(re.k.n_ok + re.k.n_canceled, 5);
        store_close(&st);
}

/* Not a benchmark: a sanity number for 5000 single upserts, one at a time on the connection. */
TEST(upsert_rate) {
        enum { N = 5000 };
        Counter k = {};
        uint64_t start, elapsed;
        char key[32];
        Store st;

        store_open(&st, "rate", "  - name: cleanupInterval\n    value: \"0\"\n");
        ASSERT_EQ(do_set_str(&st, "warmup", "v", NULL), 0);
        start = now_usec();
        for (unsigned i = 0; i < N; i++) {
                StateOp op = { .kind = STATE_OP_UPSERT, .key = key, .value = "value", .value_len = 5 };
                snprintf(key, sizeof key, "k%u", i % 100);
                ASSERT_OK(st.s->driver->write(st.s, &op, on_count, &k));
        }
        wait_for(&st, &k.n, N, 60 * USEC_PER_SEC);
        elapsed = now_usec() - start;
        ASSERT_EQ(k.n_ok, N);
        printf("# %d upserts in %" PRIu64 " ms: %" PRIu64 " ops/s\n", N, elapsed / 1000,
               (uint64_t) N * USEC_PER_SEC / (elapsed ?: 1));
        store_close(&st);
}
