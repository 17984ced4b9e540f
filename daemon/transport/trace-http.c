/* SPDX-License-Identifier: Apache-2.0 */
/* See trace-http.h. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "trace-http.h"

#define WAIT_SLICE_MS 250 /* cancel() is asked at least this often */

struct TraceHttp {
        char *host, *port;
        char *head;             /* "POST <path> HTTP/1.1\r\nHost: ...\r\n<extra>Content-Length: " */
        size_t head_len;
        int fd;                 /* the kept-alive connection, or -EBADF */
};

/* ---- the URL ---- */

int trace_http_url_split(const char *url, char **ret_host, char **ret_port, char **ret_authority,
                         char **ret_path) {
        if (!url || strncasecmp(url, "http://", 7) != 0)
                return -EINVAL;
        const char *a = url + 7;
        size_t alen = strcspn(a, "/?#");
        if (alen == 0 || (a[alen] && a[alen] != '/') || memchr(a, '@', alen))
                return -EINVAL;
        const char *host = a, *colon;
        size_t hlen;
        if (a[0] == '[') { /* [IPv6] */
                const char *close = memchr(a, ']', alen);
                if (!close || close == a + 1)
                        return -EINVAL;
                host = a + 1;
                hlen = (size_t) (close - host);
                colon = close + 1 < a + alen ? close + 1 : NULL;
                if (colon && *colon != ':')
                        return -EINVAL;
        } else {
                colon = memchr(a, ':', alen);
                hlen = colon ? (size_t) (colon - a) : alen;
        }
        if (hlen == 0)
                return -EINVAL;
        const char *port = colon ? colon + 1 : "80";
        size_t plen = colon ? (size_t) (a + alen - port) : 2;
        unsigned long p = 0;
        if (plen == 0 || plen > 5)
                return -EINVAL;
        for (size_t i = 0; i < plen; i++) {
                if (port[i] < '0' || port[i] > '9')
                        return -EINVAL;
                p = p * 10 + (unsigned long) (port[i] - '0');
        }
        if (p == 0 || p > 65535)
                return -EINVAL;
        /* the path as given (it is sent as is: a URL from a configuration file, checked for
         * characters that would break the request line) */
        const char *path = a[alen] ? a + alen : "/";
        for (const char *c = path; *c; c++)
                if ((unsigned char) *c <= ' ' || (unsigned char) *c >= 0x7f)
                        return -EINVAL;
        for (size_t i = 0; i < alen; i++)
                if ((unsigned char) a[i] <= ' ' || (unsigned char) a[i] >= 0x7f)
                        return -EINVAL;

        _cleanup_free_ char *h = strndup(host, hlen), *po = strndup(port, plen), *au = strndup(a, alen),
                            *pa = strdup(path);
        if (!h || !po || !au || !pa)
                return -ENOMEM;
        *ret_host = TAKE_PTR(h);
        *ret_port = TAKE_PTR(po);
        *ret_authority = TAKE_PTR(au);
        *ret_path = TAKE_PTR(pa);
        return 0;
}

/* ---- the answer ---- */

static int on_message_complete(http_parser *p) {
        TraceHttpAnswer *a = p->data;
        a->complete = true;
        http_parser_pause(p, 1); /* whatever follows is not ours */
        return 0;
}

static const http_parser_settings answer_settings = {
        .on_message_complete = on_message_complete,
};

void trace_http_answer_init(TraceHttpAnswer *a) {
        *a = (TraceHttpAnswer){};
        http_parser_init(&a->parser, HTTP_RESPONSE);
        a->parser.data = a;
}

static int answer_done(TraceHttpAnswer *a, bool more_bytes) {
        a->status = a->parser.status_code;
        /* a 1xx answer is not the final one; none is asked for (no Expect), so it is refused */
        if (a->status < 200)
                return -EBADMSG;
        a->keep_alive = !more_bytes && http_should_keep_alive(&a->parser);
        return 1;
}

int trace_http_answer_feed(TraceHttpAnswer *a, const char *p, size_t n) {
        if (a->complete)
                return -EBADMSG;
        a->received += n;
        size_t k = http_parser_execute(&a->parser, &answer_settings, p, n);
        if (a->complete)
                return answer_done(a, k < n);
        if (HTTP_PARSER_ERRNO(&a->parser) != HPE_OK || k != n)
                return -EBADMSG;
        return 0;
}

int trace_http_answer_eof(TraceHttpAnswer *a) {
        if (a->complete)
                return -EBADMSG;
        if (a->received == 0)
                return -ECONNABORTED;
        (void) http_parser_execute(&a->parser, &answer_settings, NULL, 0); /* a body that ends with the connection */
        if (a->complete) {
                int r = answer_done(a, false);
                a->keep_alive = false;
                return r;
        }
        return -EBADMSG;
}

/* ---- the client ---- */

int trace_http_new(const char *url, const char *head_extra, TraceHttp **ret) {
        _cleanup_free_ char *host = NULL, *port = NULL, *authority = NULL, *path = NULL;
        int r = trace_http_url_split(url, &host, &port, &authority, &path);
        if (r < 0)
                return r;
        TraceHttp *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->fd = -EBADF;
        int k = asprintf(&h->head, "POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: ", path, authority,
                         head_extra ?: "");
        if (k < 0) {
                h->head = NULL;
                trace_http_free(h);
                return -ENOMEM;
        }
        h->head_len = (size_t) k;
        h->host = TAKE_PTR(host);
        h->port = TAKE_PTR(port);
        *ret = h;
        return 0;
}

TraceHttp *trace_http_free(TraceHttp *h) {
        if (!h)
                return NULL;
        safe_close(h->fd);
        free(h->host);
        free(h->port);
        free(h->head);
        free(h);
        return NULL;
}

static uint64_t now_usec(void) {
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

typedef struct Waiter {
        uint64_t deadline;
        int wake_fd;
        TraceHttpCancelFn cancel;
        void *userdata;
} Waiter;

/* Waits until fd is ready for events: 0, -ETIMEDOUT, -ECANCELED or -errno. */
static int wait_fd(const Waiter *w, int fd, short events) {
        for (;;) {
                uint64_t t = now_usec();
                if (t >= w->deadline)
                        return -ETIMEDOUT;
                uint64_t ms = (w->deadline - t + 999) / 1000;
                struct pollfd p[2] = { { .fd = fd, .events = events }, { .fd = w->wake_fd, .events = POLLIN } };
                int n = poll(p, w->wake_fd >= 0 ? 2 : 1, (int) MIN(ms, (uint64_t) WAIT_SLICE_MS));
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n > 0 && (p[1].revents & POLLIN)) {
                        uint64_t x;
                        (void) !read(w->wake_fd, &x, sizeof x);
                }
                if (w->cancel && w->cancel(w->userdata))
                        return -ECANCELED;
                if (n > 0 && p[0].revents)
                        return 0;
        }
}

static int connect_one(const Waiter *w, const struct addrinfo *ai) {
        _cleanup_close_ int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1, err = 0;
        socklen_t l = sizeof err;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                if (errno != EINPROGRESS)
                        return -errno;
                int r = wait_fd(w, fd, POLLOUT);
                if (r < 0)
                        return r;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                        return -errno;
                if (err)
                        return -err;
        }
        return TAKE_FD(fd);
}

static int connect_to(TraceHttp *h, const Waiter *w) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res = NULL;
        int r = getaddrinfo(h->host, h->port, &hints, &res);
        if (r != 0)
                return r == EAI_SYSTEM ? -errno : r == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
        r = -EHOSTUNREACH;
        for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                r = connect_one(w, ai);
                if (r >= 0 || r == -ETIMEDOUT || r == -ECANCELED)
                        break;
        }
        freeaddrinfo(res);
        if (r < 0)
                return r;
        h->fd = r;
        return 0;
}

static int write_all(int fd, const Waiter *w, struct iovec *iov, size_t n) {
        while (n > 0) {
                /* sendmsg() for MSG_NOSIGNAL: a collector gone is -EPIPE here, never SIGPIPE */
                struct msghdr m = { .msg_iov = iov, .msg_iovlen = n };
                ssize_t k = sendmsg(fd, &m, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        int r = wait_fd(w, fd, POLLOUT);
                        if (r < 0)
                                return r;
                        continue;
                }
                size_t done = (size_t) k;
                for (; n > 0 && done >= iov->iov_len; n--, iov++)
                        done -= iov->iov_len;
                if (n > 0) {
                        iov->iov_base = (char *) iov->iov_base + done;
                        iov->iov_len -= done;
                }
        }
        return 0;
}

static int read_answer(int fd, const Waiter *w, TraceHttpAnswer *a) {
        char buf[2048];
        trace_http_answer_init(a);
        for (;;) {
                ssize_t k = read(fd, buf, sizeof buf);
                if (k > 0) {
                        int r = trace_http_answer_feed(a, buf, (size_t) k);
                        if (r != 0)
                                return r;
                } else if (k == 0)
                        return trace_http_answer_eof(a);
                else if (errno == EAGAIN) {
                        int r = wait_fd(w, fd, POLLIN);
                        if (r < 0)
                                return r;
                } else if (errno != EINTR)
                        return errno == ECONNRESET && a->received == 0 ? -ECONNABORTED : -errno;
        }
}

int trace_http_post(TraceHttp *h, const void *body, size_t len, uint64_t deadline_usec, int wake_fd,
                    TraceHttpCancelFn cancel, void *userdata) {
        const Waiter w = { .deadline = deadline_usec, .wake_fd = wake_fd, .cancel = cancel, .userdata = userdata };
        char clen[32];
        int k = snprintf(clen, sizeof clen, "%zu\r\n\r\n", len);

        for (unsigned attempt = 0;; attempt++) {
                bool reused = h->fd >= 0;
                int r = reused ? 0 : connect_to(h, &w);
                if (r < 0)
                        return r;
                struct iovec iov[3] = { { h->head, h->head_len }, { clen, (size_t) k }, { (void *) body, len } };
                TraceHttpAnswer a;
                r = write_all(h->fd, &w, iov, len > 0 ? 3 : 2);
                if (r >= 0)
                        r = read_answer(h->fd, &w, &a);
                if (r > 0 && a.keep_alive)
                        return (int) a.status;
                h->fd = safe_close(h->fd);
                if (r > 0)
                        return (int) a.status;
                /* A kept-alive connection the collector had closed meanwhile (nothing answered, the
                 * write refused): once more on a fresh one, as libcurl does. Anything else is the
                 * collector's answer to this request, or a failure the caller retries later. */
                if (!reused || attempt > 0 || (r != -ECONNABORTED && r != -EPIPE && r != -ECONNRESET))
                        return r;
        }
}
