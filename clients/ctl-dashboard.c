/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl dashboard [--open]: prints the dashboard's URL (and opens it with
 * xdg-open). With DashboardPort= set, that is the daemon's own loopback port.
 * Without, mooringctl listens on a free loopback port itself and forwards to
 * the shared socket until it is stopped (Ctrl-C), with two guards, because
 * anything on the host can connect to a loopback port while the shared
 * socket knows the caller as mooringctl's user:
 *   - only GET requests of the dashboard's files and its read-only JSON
 *     routes pass, one request per connection (Connection: close);
 *   - the JSON routes need the random token that is part of the printed URL
 *     (the page sends it as "Authorization: Bearer"); the static files do not.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"

#define HEAD_MAX (16 * 1024)

static const char *const allowed[] = {
        "/dashboard/",
        "/dashboard/index.html",
        "/dashboard/dashboard.css",
        "/dashboard/dashboard.js",
        "/mooring/v1/status",
        "/mooring/v1/apps",
        "/mooring/v1/components",
        "/mooring/v1/subscriptions",
        "/mooring/v1/logs",
        "/mooring/v1/actors",
};

typedef struct Forward {
        int client;
        const char *socket_path;
        const char *token;
} Forward;

static bool write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return false;
                p += k;
                n -= (size_t) k;
        }
        return true;
}

static void answer(int fd, const char *status) {
        char buf[256];
        int n = snprintf(buf, sizeof buf, "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
        (void) write_all(fd, buf, (size_t) n);
}

static bool token_in(const char *head, const char *query, const char *token) {
        char want[128];
        snprintf(want, sizeof want, "token=%s", token);
        for (const char *q = query; q && *q;) {
                size_t l = strcspn(q, "&");
                if (l == strlen(want) && strncmp(q, want, l) == 0)
                        return true;
                q += l + (q[l] == '&');
        }
        for (const char *l = strstr(head, "\r\n"); l && l[2] && !(l[2] == '\r'); l = strstr(l + 2, "\r\n"))
                if (strncasecmp(l + 2, "Authorization: Bearer ", 22) == 0 && strncmp(l + 24, token, strlen(token)) == 0 &&
                    (l[24 + strlen(token)] == '\r'))
                        return true;
        return false;
}

/* One connection: check the request head, pass it on with Connection: close, copy the answer back. */
static void *forward(void *userdata) {
        Forward *f = userdata;
        char *head = malloc(HEAD_MAX + 1);
        size_t len = 0;
        int up = -1;

        if (!head)
                goto out;
        while (len < HEAD_MAX) {
                ssize_t k = read(f->client, head + len, HEAD_MAX - len);
                if (k <= 0)
                        goto out;
                len += (size_t) k;
                head[len] = 0;
                if (strstr(head, "\r\n\r\n"))
                        break;
        }
        char *end = strstr(head, "\r\n\r\n");
        if (!end) {
                answer(f->client, "431 Request Header Fields Too Large");
                goto out;
        }
        char method[8] = "", target[2048] = "";
        if (sscanf(head, "%7s %2047s HTTP/1.", method, target) != 2 || strcmp(method, "GET") != 0) {
                answer(f->client, "405 Method Not Allowed");
                goto out;
        }
        char *query = strchr(target, '?');
        if (query)
                *query++ = 0;
        bool ok = false, needs_token = true;
        for (size_t i = 0; i < ELEMENTSOF(allowed); i++)
                if (streq(target, allowed[i])) {
                        ok = true;
                        needs_token = strncmp(target, "/dashboard/", 11) != 0;
                }
        if (!ok) {
                answer(f->client, "404 Not Found");
                goto out;
        }
        if (needs_token && !token_in(head, query, f->token)) {
                answer(f->client, "401 Unauthorized");
                goto out;
        }

        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", f->socket_path);
        up = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (up < 0 || connect(up, (struct sockaddr *) &sa, sizeof sa) < 0) {
                answer(f->client, "502 Bad Gateway");
                goto out;
        }
        /* the request line and headers, without any Connection header, then ours */
        char *line_end = strstr(head, "\r\n");
        bool sent = write_all(up, head, (size_t) (line_end + 2 - head));
        for (char *l = line_end + 2; sent && l < end + 2;) {
                char *e = strstr(l, "\r\n");
                if (strncasecmp(l, "Connection:", 11) != 0 && strncasecmp(l, "Keep-Alive:", 11) != 0)
                        sent = write_all(up, l, (size_t) (e + 2 - l));
                l = e + 2;
        }
        sent = sent && write_all(up, "Connection: close\r\n\r\n", 21);
        /* a GET body (there should be none) is not forwarded */
        char buf[16384];
        for (ssize_t k; sent && (k = read(up, buf, sizeof buf)) > 0;)
                sent = write_all(f->client, buf, (size_t) k);
out:
        if (up >= 0)
                close(up);
        close(f->client);
        free(head);
        free(f);
        return NULL;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
        stop = 1;
}

static void open_url(const char *url) {
        pid_t pid = fork();
        if (pid == 0) {
                execlp("xdg-open", "xdg-open", url, (char *) NULL);
                _exit(127);
        }
        if (pid > 0) {
                int st;
                (void) waitpid(pid, &st, 0);
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                        ctl_log("cannot open the browser (xdg-open); open the URL above yourself");
        }
}

int ctl_dashboard(const CtlOptions *o, bool open_browser) {
        _cleanup_(json_decrefp) json_t *status = NULL;
        char url[256];
        int r;

        r = ctl_http_get_json(o, "/mooring/v1/status", &status);
        if (r < 0)
                return r;
        json_int_t port = json_integer_value(json_object_get(status, "dashboardPort"));
        if (port > 0) {
                snprintf(url, sizeof url, "http://127.0.0.1:%lld/dashboard/", (long long) port);
                printf("%s\n", url);
                printf("(with DashboardToken= set, add ?token=TOKEN)\n");
                fflush(stdout);
                if (open_browser)
                        open_url(url);
                return 0;
        }

        unsigned char raw[16];
        char token[33];
        if (getrandom(raw, sizeof raw, 0) != (ssize_t) sizeof raw)
                return ctl_log_errno(-errno, "cannot make a token: %m");
        for (size_t i = 0; i < sizeof raw; i++)
                snprintf(token + 2 * i, 3, "%02x", raw[i]);

        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof sa;
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(lfd, 64) < 0 ||
            getsockname(lfd, (struct sockaddr *) &sa, &sl) < 0) {
                r = -errno;
                if (lfd >= 0)
                        close(lfd);
                return ctl_log_errno(r, "cannot listen on a loopback port: %m");
        }
        snprintf(url, sizeof url, "http://127.0.0.1:%u/dashboard/?token=%s", (unsigned) ntohs(sa.sin_port), token);
        printf("%s\n", url);
        printf("Forwarding to %s; press Ctrl-C to stop.\n", o->socket_path);
        fflush(stdout);

        struct sigaction act = { .sa_handler = on_signal };
        sigaction(SIGINT, &act, NULL);
        sigaction(SIGTERM, &act, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (open_browser)
                open_url(url);

        while (!stop) {
                struct pollfd p = { .fd = lfd, .events = POLLIN };
                if (poll(&p, 1, -1) < 0)
                        continue; /* EINTR: look at stop */
                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        continue;
                Forward *f = malloc(sizeof *f);
                pthread_t t;
                if (!f) {
                        close(c);
                        continue;
                }
                *f = (Forward){ .client = c, .socket_path = o->socket_path, .token = token };
                if (pthread_create(&t, NULL, forward, f) != 0) {
                        close(c);
                        free(f);
                        continue;
                }
                pthread_detach(t);
        }
        close(lfd);
        return 0;
}
