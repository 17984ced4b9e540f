/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client side of mutual TLS between hosts (transport/peer-tls.c through
 * transport/transport.c with TransportAddress.peer_host), on a real sd-event
 * loop against a real TLS server process (tests/unit/peer-tls-server.py, on a
 * loopback socket this file binds), with keys and certificates made by
 * `mooringctl ca` ($MOORINGCTL, set by meson).
 *
 * Checked:
 *   - a call reaches the peer, which sees our host id in our certificate;
 *     sequential calls share one pooled connection;
 *   - a new connection after the server closed one resumes the TLS session;
 *     after peer_tls_reload() old sessions are not resumed (a reload may
 *     change what is trusted, and a resumed session skips verification);
 *   - a server whose certificate names another host, or chains to another
 *     root, is refused (-EKEYREJECTED) and never gets the request;
 *   - a peer address on a transport without peer TLS fails (-ENOPROTOOPT);
 *   - peer_tls_new() explains a missing file.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "transport/peer-tls.h"
#include "transport/transport.h"
#include "util/cleanup.h"
#include "tests.h"

#define HANG_USEC (120ULL * 1000 * 1000)

static sd_event *loop;
static char pki[128]; /* trusted/ (h1, h2, h3) and other/ (h2) */

static void run(const char *cmd) {
        int r = system(cmd);
        if (r != 0)
                fprintf(stderr, "command failed (%d): %s\n", r, cmd);
        ASSERT_EQ(r, 0);
}

static void pki_remove(void) {
        char cmd[256];
        if (!pki[0])
                return;
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", pki);
        (void) !system(cmd);
}

static void pki_make(void) {
        const char *ctl = getenv("MOORINGCTL");
        char cmd[1024];

        if (pki[0])
                return;
        ASSERT_NOT_NULL(ctl);
        snprintf(pki, sizeof pki, "%s/peertls-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        ASSERT_NOT_NULL(mkdtemp(pki));
        atexit(pki_remove);
        snprintf(cmd, sizeof cmd,
                 "set -e; '%1$s' ca init --dir %2$s/trusted >/dev/null; '%1$s' ca init --dir %2$s/other >/dev/null; "
                 "for h in h1 h2 h3; do '%1$s' ca issue $h --dir %2$s/trusted >/dev/null; done; "
                 "'%1$s' ca issue h2 --dir %2$s/other >/dev/null",
                 ctl, pki);
        run(cmd);
}

/* ---- the server process ---- */

typedef struct Server {
        pid_t pid;
        int out;
        uint16_t port;
} Server;

static void server_start(Server *s, const char *root, const char *host) {
        const char *src = getenv("MOORING_SOURCE_ROOT");
        char script[512], cert[256], key[256], ca[256], buf[6];
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sin;
        int out[2];

        ASSERT_NOT_NULL(src);
        snprintf(script, sizeof script, "%s/tests/unit/peer-tls-server.py", src);
        snprintf(cert, sizeof cert, "%s/%s/%s.crt", pki, root, host);
        snprintf(key, sizeof key, "%s/%s/%s.key", pki, root, host);
        snprintf(ca, sizeof ca, "%s/%s/ca.crt", pki, root);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(fd);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sin, sizeof sin));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sin, &len));
        s->port = ntohs(sin.sin_port);
        ASSERT_OK(pipe2(out, O_CLOEXEC));
        s->pid = fork();
        ASSERT_OK(s->pid);
        if (s->pid == 0) {
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || dup2(out[1], 1) < 0 ||
                    (fd == 3 ? fcntl(3, F_SETFD, 0) : dup2(fd, 3)) < 0)
                        _exit(126);
                execlp("python3", "python3", script, "3", cert, key, ca, (char *) NULL);
                _exit(127);
        }
        close(fd);
        close(out[1]);
        s->out = out[0];
        size_t n = 0;
        while (n < 6) {
                ssize_t k = read(s->out, buf + n, 6 - n);
                ASSERT_TRUE(k > 0);
                n += (size_t) k;
        }
        ASSERT_TRUE(memcmp(buf, "ready\n", 6) == 0);
}

static void server_stop(Server *s) {
        if (s->pid > 0) {
                (void) kill(s->pid, SIGKILL);
                (void) waitpid(s->pid, NULL, 0);
        }
        safe_close(s->out);
        *s = (Server){ .pid = -1, .out = -1 };
}

/* ---- calls ---- */

typedef struct Call {
        bool done;
        int error;
        unsigned status;
        char body[256];
        char message[256];
} Call;

static void on_done(TransportCall *tc, const TransportAnswer *a, const TransportError *e, void *userdata) {
        Call *c = userdata;
        c->done = true;
        if (e) {
                c->error = e->error;
                snprintf(c->message, sizeof c->message, "%s", e->message);
                return;
        }
        c->status = a->status;
        snprintf(c->body, sizeof c->body, "%.*s", (int) a->body_len, (const char *) a->body);
}

static const TransportHandler handler = { .done = on_done };

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void call(Transport *t, const Server *s, const char *peer_host, const char *target, Call *c) {
        TransportAddress addr = { .kind = TRANSPORT_ADDRESS_TCP, .host = "127.0.0.1", .port = s->port,
                                  .peer_host = peer_host };
        TransportRequest req = { .method = "GET", .target = target, .max_answer = 4096,
                                 .timeout_usec = 30ULL * 1000000 };
        *c = (Call){};
        ASSERT_OK(transport_call_start(t, &addr, &req, &handler, c, NULL));
        uint64_t begin = now_usec();
        while (!c->done) {
                ASSERT_TRUE(now_usec() - begin < HANG_USEC);
                ASSERT_OK(sd_event_run(loop, 1000 * 1000));
        }
}

static void stats(Transport *t, const Server *s, unsigned *ret_requests, unsigned *ret_connections,
                  unsigned *ret_failed) {
        Call c;
        call(t, s, "h2", "/stats", &c);
        ASSERT_EQ(c.error, 0);
        ASSERT_EQ(sscanf(c.body, "requests=%u connections=%u handshakes_failed=%u", ret_requests, ret_connections,
                         ret_failed), 3);
}

static PeerTls *tls_for(const char *root, const char *host) {
        char cert[256], key[256], ca[256];
        snprintf(cert, sizeof cert, "%s/%s/%s.crt", pki, root, host);
        snprintf(key, sizeof key, "%s/%s/%s.key", pki, root, host);
        snprintf(ca, sizeof ca, "%s/%s/ca.crt", pki, root);
        ClusterSettings cs = { .cert_file = cert, .key_file = key, .trust_root_file = ca };
        _cleanup_free_ char *warning = NULL, *err = NULL;
        PeerTls *tls = NULL;
        int r = peer_tls_new(&cs, host, &tls, &warning, &err);
        if (r < 0)
                fprintf(stderr, "peer_tls_new: %s\n", err ?: "?");
        ASSERT_OK(r);
        ASSERT_NULL(warning);
        return tls;
}

static void setup(Transport **ret_t, PeerTls **ret_tls) {
        pki_make();
        if (!loop)
                ASSERT_OK(sd_event_new(&loop));
        *ret_t = transport_new(loop);
        ASSERT_NOT_NULL(*ret_t);
        *ret_tls = tls_for("trusted", "h1");
        transport_set_peer_tls(*ret_t, *ret_tls);
}

TEST(call_and_keep_alive) {
        Transport *t;
        PeerTls *tls;
        Server s;
        Call c;
        unsigned requests, connections, failed;

        setup(&t, &tls);
        server_start(&s, "trusted", "h2");
        for (unsigned i = 0; i < 20; i++) {
                call(t, &s, "h2", "/whoami", &c);
                ASSERT_EQ(c.error, 0);
                ASSERT_EQ(c.status, 200);
                ASSERT_STREQ(c.body, "h1");
        }
        ASSERT_EQ(transport_connections_opened(t), 1);
        stats(t, &s, &requests, &connections, &failed);
        ASSERT_EQ(requests, 20);
        ASSERT_EQ(connections, 1);
        transport_free(t);
        peer_tls_free(tls);
        server_stop(&s);
}

TEST(session_resumption_and_reload) {
        Transport *t;
        PeerTls *tls;
        Server s;
        Call c;

        setup(&t, &tls);
        server_start(&s, "trusted", "h2");
        /* each answer closes its connection: every call is a new connection */
        for (unsigned i = 0; i < 3; i++) {
                call(t, &s, "h2", "/close", &c);
                ASSERT_EQ(c.error, 0);
                ASSERT_STREQ(c.body, "bye");
        }
        ASSERT_EQ(transport_connections_opened(t), 3);
        ASSERT_TRUE(transport_peer_sessions_resumed(t) >= 1);

        /* a reload to files that do not trust this server: no old session lets a connection past */
        char cert[256], key[256], ca[256];
        snprintf(cert, sizeof cert, "%s/trusted/h1.crt", pki);
        snprintf(key, sizeof key, "%s/trusted/h1.key", pki);
        snprintf(ca, sizeof ca, "%s/other/ca.crt", pki);
        ClusterSettings cs = { .cert_file = cert, .key_file = key, .trust_root_file = ca };
        _cleanup_free_ char *err = NULL;
        ASSERT_OK(peer_tls_reload(tls, &cs, "h1", NULL, &err));
        uint64_t resumed = transport_peer_sessions_resumed(t);
        call(t, &s, "h2", "/close", &c);
        ASSERT_ERROR(c.error, EKEYREJECTED);
        ASSERT_EQ(transport_peer_sessions_resumed(t), resumed);

        /* a broken reload keeps what is in use */
        snprintf(ca, sizeof ca, "%s/nonexistent.crt", pki);
        cs.trust_root_file = ca;
        free(err);
        err = NULL;
        ASSERT_ERROR(peer_tls_reload(tls, &cs, "h1", NULL, &err), ENOENT);
        ASSERT_NOT_NULL(strstr(err, "nonexistent.crt"));
        call(t, &s, "h2", "/close", &c);
        ASSERT_ERROR(c.error, EKEYREJECTED);

        transport_free(t);
        peer_tls_free(tls);
        server_stop(&s);
}

TEST(wrong_host_refused) {
        Transport *t;
        PeerTls *tls;
        Server s;
        Call c;
        unsigned requests, connections, failed;

        setup(&t, &tls);
        server_start(&s, "trusted", "h2");
        call(t, &s, "h3", "/whoami", &c);
        ASSERT_ERROR(c.error, EKEYREJECTED);
        ASSERT_NOT_NULL(strstr(c.message, "verify"));
        stats(t, &s, &requests, &connections, &failed);
        ASSERT_EQ(requests, 0);
        transport_free(t);
        peer_tls_free(tls);
        server_stop(&s);
}

TEST(other_root_refused) {
        Transport *t;
        PeerTls *tls;
        Server s;
        Call c;

        setup(&t, &tls);
        server_start(&s, "other", "h2");
        call(t, &s, "h2", "/whoami", &c);
        ASSERT_ERROR(c.error, EKEYREJECTED);
        transport_free(t);
        peer_tls_free(tls);
        server_stop(&s);
}

TEST(no_peer_tls) {
        Transport *t;
        Server s;
        Call c;

        pki_make();
        if (!loop)
                ASSERT_OK(sd_event_new(&loop));
        t = transport_new(loop);
        server_start(&s, "trusted", "h2");
        call(t, &s, "h2", "/whoami", &c);
        ASSERT_ERROR(c.error, ENOPROTOOPT);
        transport_free(t);
        server_stop(&s);
}

TEST(missing_file) {
        char cert[256];
        pki_make();
        snprintf(cert, sizeof cert, "%s/trusted/nope.crt", pki);
        ClusterSettings cs = { .cert_file = cert, .key_file = cert, .trust_root_file = cert };
        _cleanup_free_ char *err = NULL;
        PeerTls *tls = NULL;
        ASSERT_ERROR(peer_tls_new(&cs, "h1", &tls, NULL, &err), ENOENT);
        ASSERT_NOT_NULL(strstr(err, "nope.crt"));
        ASSERT_NULL(tls);
}

