/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the Redis drivers: connection metadata and RedisConn, a Redis
 * connection (TCP, Unix socket, or TLS over TCP) on sd-event with handshake,
 * watchdog and backoff reconnects. See redis-common.h for what it guarantees.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../core/component.h"
#include "../util/strv.h"
#include "dl-hiredis.h"
#include "dl-openssl.h"
#include "redis-common.h"

#define REDIS_BACKOFF_MIN_USEC (100 * 1000ULL)
#define REDIS_BACKOFF_MAX_USEC (5 * 1000000ULL)

struct RedisCall {
        RedisConn *conn;               /* back-reference; NULL once redis_conn_done() answered it early */
        RedisCall *prev, *next;        /* in one of conn's lists */
        RedisReplyFn fn;
        void *userdata;
        uint64_t deadline;             /* CLOCK_MONOTONIC; pending calls only */
        uint64_t timeout_usec;         /* as given, for the message */
        int error;                     /* deferred calls: the answer */
        char *message;
};

/* ---- liveness ---- */

Liveness *liveness_new(void) {
        Liveness *l = calloc(1, sizeof(*l));
        if (l)
                *l = (Liveness){ .n_ref = 1, .alive = true };
        return l;
}

Liveness *liveness_ref(Liveness *l) {
        l->n_ref++;
        return l;
}

bool liveness_unref(Liveness *l) {
        bool alive = l->alive;
        assert(l->n_ref > 0);
        if (--l->n_ref == 0)
                free(l);
        return alive;
}

Liveness *liveness_kill(Liveness *l) {
        if (l) {
                l->alive = false;
                (void) liveness_unref(l);
        }
        return NULL;
}

/* ---- metadata ---- */

int redis_fail_field(char **reterr_msg, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(reterr_msg, fmt, ap) < 0)
                *reterr_msg = NULL;
        va_end(ap);
        return r;
}

int redis_parse_duration_field(const Component *c, const char *name, bool allow_zero, uint64_t *ret,
                               char **reterr_msg) {
        const char *v = component_get_string(c, name);
        uint64_t t;

        if (!v)
                return 0;
        if (parse_duration_usec(v, &t) < 0 || (t == 0 && !allow_zero))
                return redis_fail_field(reterr_msg, -EINVAL, "%s: invalid duration '%s'", name, v);
        *ret = t;
        return 0;
}

int redis_parse_uint_field(const Component *c, const char *name, uint64_t max, uint64_t *ret,
                           char **reterr_msg) {
        const char *v = component_get_string(c, name);
        unsigned long long n;
        char *end;

        if (!v)
                return 0;
        errno = 0;
        n = strtoull(v, &end, 10);
        if (errno != 0 || end == v || *end || v[0] == '-' || n > max)
                return redis_fail_field(reterr_msg, -EINVAL, "%s: invalid number '%s' (0..%" PRIu64 ")",
                                        name, v, max);
        *ret = n;
        return 0;
}

static int parse_host(RedisConfig *cfg, const char *v, char **reterr_msg) {
        if (v[0] == '/') {
                cfg->unix_path = strdup(v);
                return cfg->unix_path ? 0 : -ENOMEM;
        }

        const char *colon = NULL, *hs = v, *he;
        if (v[0] == '[') {
                he = strchr(v, ']');
                if (!he || (he[1] != 0 && he[1] != ':'))
                        goto bad;
                hs = v + 1;
                colon = he[1] == ':' ? he + 1 : NULL;
        } else {
                colon = strrchr(v, ':');
                if (colon && strchr(v, ':') != colon)
                        goto bad; /* bare IPv6 needs brackets */
                he = colon ?: v + strlen(v);
        }
        if (he == hs)
                goto bad;
        if (strchr(v, ','))
                goto bad;

        cfg->port = REDIS_DEFAULT_PORT;
        if (colon) {
                uint16_t port;
                if (parse_port(colon + 1, &port) < 0)
                        goto bad;
                cfg->port = port;
        }
        cfg->host = strndup(hs, (size_t) (he - hs));
        return cfg->host ? 0 : -ENOMEM;

bad:
        return redis_fail_field(reterr_msg, -EINVAL,
                                "redisHost: invalid value '%s' (expected host:port or a socket path)", v);
}

void redis_config_done(RedisConfig *cfg) {
        free(cfg->host);
        free(cfg->unix_path);
        free(cfg->username);
        cfg->password = erase_and_free(cfg->password);
        if (cfg->ssl_ctx)
                sym_SSL_CTX_free(cfg->ssl_ctx);
        *cfg = (RedisConfig){};
}

/* ---- TLS context ---- */

/* The newest OpenSSL error as text ("" when none), and the queue emptied. */
static const char *ssl_error_text(char *buf, size_t n) {
        unsigned long e = 0, last;

        while ((last = sym_ERR_get_error()) != 0)
                e = e ?: last; /* the first is the cause; later ones only wrap it */
        if (e == 0)
                return "";
        sym_ERR_error_string_n(e, buf, n);
        return buf;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u) {
        return -1; /* an encrypted key has nothing to be decrypted with: refused, never prompted for */
}

static int tls_fail(char **reterr_msg, const char *field, const char *what) {
        char buf[256];
        return redis_fail_field(reterr_msg, -EINVAL, "%s: %s: %s", field, what, ssl_error_text(buf, sizeof(buf)));
}

/* Adds every certificate of the PEM text v to the context's trust store. */
static int tls_load_ca(SSL_CTX *ctx, const char *v, char **reterr_msg) {
        X509_STORE *store = sym_SSL_CTX_get_cert_store(ctx);
        BIO *bio = sym_BIO_new_mem_buf(v, -1);
        unsigned n = 0;
        X509 *x;

        if (!bio)
                return -ENOMEM;
        while ((x = sym_PEM_read_bio_X509(bio, NULL, no_passphrase, NULL))) {
                int ok = sym_X509_STORE_add_cert(store, x);
                sym_X509_free(x);
                if (!ok) {
                        sym_BIO_free(bio);
                        return tls_fail(reterr_msg, "caCert", "cannot add the certificate");
                }
                n++;
        }
        sym_BIO_free(bio);
        sym_ERR_clear_error(); /* the end of the text */
        if (n == 0)
                return redis_fail_field(reterr_msg, -EINVAL, "caCert: no PEM certificate found");
        return 0;
}

/* The client certificate (the first of clientCert; the others are its chain) and its key. */
static int tls_load_client(SSL_CTX *ctx, const char *cert, const char *key, char **reterr_msg) {
        BIO *bio = sym_BIO_new_mem_buf(cert, -1);
        EVP_PKEY *pkey;
        X509 *x;
        int ok;

        if (!bio)
                return -ENOMEM;
        x = sym_PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
        if (!x) {
                sym_BIO_free(bio);
                return tls_fail(reterr_msg, "clientCert", "no PEM certificate");
        }
        ok = sym_SSL_CTX_use_certificate(ctx, x);
        sym_X509_free(x);
        while (ok && (x = sym_PEM_read_bio_X509(bio, NULL, no_passphrase, NULL))) {
                /* SSL_CTX_add0_chain_cert(), a macro: the context takes x */
                ok = (int) sym_SSL_CTX_ctrl(ctx, SSL_CTRL_CHAIN_CERT, 0, x);
                if (!ok)
                        sym_X509_free(x);
        }
        sym_BIO_free(bio);
        if (!ok)
                return tls_fail(reterr_msg, "clientCert", "certificate refused");
        sym_ERR_clear_error();

        bio = sym_BIO_new_mem_buf(key, -1);
        if (!bio)
                return -ENOMEM;
        pkey = sym_PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
        sym_BIO_free(bio);
        if (!pkey)
                return tls_fail(reterr_msg, "clientKey", "no usable PEM private key (an encrypted one is not)");
        ok = sym_SSL_CTX_use_PrivateKey(ctx, pkey);
        sym_EVP_PKEY_free(pkey);
        if (!ok)
                return tls_fail(reterr_msg, "clientKey", "key refused");
        if (!sym_SSL_CTX_check_private_key(ctx))
                return tls_fail(reterr_msg, "clientKey", "does not match clientCert");
        return 0;
}

/*
 * enableTLS and its fields as daprd reads them (components-contrib
 * common/component/redis settings): clientCert and clientKey are PEM text,
 * the server is verified (system trust store, name) unless
 * insecureSkipTLSVerify. Differences, on purpose: daprd silently ignores a
 * clientCert without clientKey (or the reverse) and TLS fields while TLS is
 * off; here those are refused, as they say the operator meant something else.
 * caCert (PEM text, replaces the system trust store) is mooring's: daprd has
 * no such field and trusts the system store only.
 */
static int tls_config(RedisConfig *cfg, const Component *c, char **reterr_msg) {
        const char *ca = component_get_string(c, "caCert");
        const char *cert = component_get_string(c, "clientCert");
        const char *key = component_get_string(c, "clientKey");
        SSL_CTX *ctx;
        int r;

        ca = ca && *ca ? ca : NULL;
        cert = cert && *cert ? cert : NULL;
        key = key && *key ? key : NULL;

        if (!cfg->tls) {
                const char *f = cert ? "clientCert" : key ? "clientKey" : ca ? "caCert" :
                                cfg->tls_skip_verify ? "insecureSkipTLSVerify" : NULL;
                if (f)
                        return redis_fail_field(reterr_msg, -EINVAL, "%s: given, but enableTLS is not \"true\"", f);
                return 0;
        }
        if (!cert != !key)
                return redis_fail_field(reterr_msg, -EINVAL, "%s: missing (clientCert and clientKey go together)",
                                        cert ? "clientKey" : "clientCert");
        if (ca && cfg->tls_skip_verify)
                return redis_fail_field(reterr_msg, -EINVAL,
                                        "caCert: given with insecureSkipTLSVerify \"true\", which verifies nothing");
        if (cfg->unix_path)
                return redis_fail_field(reterr_msg, -EINVAL, "enableTLS: not over a Unix socket (redisHost '%s')",
                                        cfg->unix_path);

        r = dlopen_openssl(c->type ?: "redis", reterr_msg);
        if (r < 0)
                return r;
        sym_ERR_clear_error();
        ctx = sym_SSL_CTX_new(sym_TLS_client_method());
        if (!ctx)
                return tls_fail(reterr_msg, "enableTLS", "cannot create a TLS context");
        cfg->ssl_ctx = ctx;
        /* SSL_CTX_set_min_proto_version(): TLS 1.2 and newer, as Go's client */
        (void) sym_SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
        /* SSL_CTX_set_mode(): SSL_write() may take a grown buffer and report partial writes */
        (void) sym_SSL_CTX_ctrl(ctx, SSL_CTRL_MODE,
                                SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, NULL);
        sym_SSL_CTX_set_verify(ctx, cfg->tls_skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
        if (ca)
                r = tls_load_ca(ctx, ca, reterr_msg);
        else if (!cfg->tls_skip_verify && !sym_SSL_CTX_set_default_verify_paths(ctx))
                r = tls_fail(reterr_msg, "enableTLS", "cannot load the system's trusted certificates");
        if (r >= 0 && cert)
                r = tls_load_client(ctx, cert, key, reterr_msg);
        return r;
}

int redis_config_parse(RedisConfig *cfg, const Component *c, char **reterr_msg) {
        const char *v;
        uint64_t db = 0;
        int r;

        *cfg = (RedisConfig){ .dial_timeout_usec = REDIS_DEFAULT_DIAL_TIMEOUT_USEC };

        v = component_get_string(c, "enableTLS");
        if (v) {
                r = parse_boolean(v);
                if (r < 0)
                        return redis_fail_field(reterr_msg, -EINVAL, "enableTLS: invalid boolean '%s'", v);
                cfg->tls = r > 0;
        }
        v = component_get_string(c, "insecureSkipTLSVerify");
        if (v) {
                r = parse_boolean(v);
                if (r < 0)
                        return redis_fail_field(reterr_msg, -EINVAL, "insecureSkipTLSVerify: invalid boolean '%s'", v);
                cfg->tls_skip_verify = r > 0;
        }
        v = component_get_string(c, "redisType");
        if (v && !streq(v, "node"))
                return redis_fail_field(reterr_msg, -EOPNOTSUPP, "redisType: only 'node' is supported, not '%s'", v);
        v = component_get_string(c, "failover");
        if (v && parse_boolean(v) != 0)
                return redis_fail_field(reterr_msg, -EOPNOTSUPP, "failover: sentinel failover is not supported");

        v = component_get_string(c, "redisHost");
        if (!v || !*v)
                return redis_fail_field(reterr_msg, -EINVAL, "redisHost: required metadata field is missing");
        r = parse_host(cfg, v, reterr_msg);
        if (r < 0)
                goto fail;

        r = redis_parse_uint_field(c, "redisDB", INT_MAX, &db, reterr_msg);
        if (r < 0) {
                free(*reterr_msg);
                r = redis_fail_field(reterr_msg, -EINVAL, "redisDB: invalid database number '%s'",
                                     component_get_string(c, "redisDB"));
                goto fail;
        }
        cfg->db = (unsigned) db;

        r = redis_parse_duration_field(c, "dialTimeout", false, &cfg->dial_timeout_usec, reterr_msg);
        if (r < 0)
                goto fail;

        v = component_get_string(c, "redisUsername");
        if (v && *v && !(cfg->username = strdup(v))) {
                r = -ENOMEM;
                goto fail;
        }
        v = component_get_string(c, "redisPassword");
        if (v && *v && !(cfg->password = strdup(v))) {
                r = -ENOMEM;
                goto fail;
        }
        r = tls_config(cfg, c, reterr_msg);
        if (r < 0)
                goto fail;
        return 0;

fail:
        if (r == -ENOMEM && !*reterr_msg)
                *reterr_msg = strdup("out of memory");
        redis_config_done(cfg);
        return r;
}

/* ---- call lists ---- */

static void list_append(RedisCallList *l, RedisCall *call) {
        call->prev = l->tail;
        call->next = NULL;
        if (l->tail)
                l->tail->next = call;
        else
                l->head = call;
        l->tail = call;
}

static void list_remove(RedisCallList *l, RedisCall *call) {
        if (call->prev)
                call->prev->next = call->next;
        else
                l->head = call->next;
        if (call->next)
                call->next->prev = call->prev;
        else
                l->tail = call->prev;
        call->prev = call->next = NULL;
}

static void call_free(RedisCall *call) {
        free(call->message);
        free(call);
}

static uint64_t now_monotonic(RedisConn *c) {
        uint64_t t = 0;
        if (sd_event_now(c->event, CLOCK_MONOTONIC, &t) < 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                t = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
        }
        return t;
}

static char *mfree(char *p) {
        free(p);
        return NULL;
}

static void set_string(char **p, char *v) {
        free(*p);
        *p = v;
}

static RedisCall *call_new(RedisConn *c, RedisReplyFn fn, void *userdata) {
        RedisCall *call = calloc(1, sizeof(*call));
        if (call)
                *call = (RedisCall){ .conn = c, .fn = fn, .userdata = userdata };
        return call;
}

static int schedule_reconnect(RedisConn *c);
static void watchdog_arm(RedisConn *c);

/* ---- the socket ---- */

static void io_update(RedisConn *c) {
        uint32_t events = 0;

        if (!c->io)
                return;
        if (c->state == REDIS_CONN_CONNECTING)
                events = EPOLLOUT; /* connect(2) completes as writable */
        else if (c->state == REDIS_CONN_UP)
                events = EPOLLIN | (c->olen > c->ooff ? EPOLLOUT : 0);
        else
                events = c->io_events; /* the TLS handshake sets what it waits for */
        if (events == c->io_events)
                return;
        c->io_events = events;
        (void) sd_event_source_set_io_events(c->io, events);
}

/* Closes the socket and what rides on it; the calls stay where they are. */
static void socket_close(RedisConn *c) {
        c->io = sd_event_source_disable_unref(c->io);
        c->io_events = 0;
        if (c->ssl) {
                sym_SSL_free(c->ssl); /* no close_notify: the peer learns from the FIN, as from a plain socket */
                c->ssl = NULL;
        }
        if (c->fd >= 0)
                (void) close(c->fd);
        c->fd = -1;
        if (c->reader) {
                sym_redisReaderFree(c->reader);
                c->reader = NULL;
        }
        c->obuf = mfree(c->obuf);
        c->olen = c->ooff = c->ocap = 0;
        c->state = REDIS_CONN_IDLE;
        c->ready = false;
        c->handshake_pending = 0;
        c->push_fn = NULL;
        c->push_userdata = NULL;
        c->generation++;
}

/*
 * The connection is gone (error, timeout, EOF, refused): closes it, answers
 * every call that was on it with error and message, plans the next attempt
 * and tells the owner. Callbacks may free the owner: callers hold a Liveness.
 */
static void conn_drop(RedisConn *c, int error, const char *message) {
        Liveness *l;
        RedisCall *call;

        if (c->state == REDIS_CONN_IDLE || c->closing)
                return;
        set_string(&c->last_error, strdup(message));
        socket_close(c);

        /* Answered from a list of c's, so that redis_conn_done() from a callback finds the rest. */
        c->dropping = c->pending;
        c->pending = (RedisCallList){};
        l = liveness_ref(c->liveness);
        while (l->alive && (call = c->dropping.head)) {
                list_remove(&c->dropping, call);
                call->fn(NULL, error, c->last_error ?: message, call->userdata);
                call_free(call);
        }
        if (l->alive && !c->closing && c->state == REDIS_CONN_IDLE) {
                (void) schedule_reconnect(c);
                if (c->ready_fn)
                        c->ready_fn(c, false, c->userdata);
        }
        (void) liveness_unref(l);
}

void redis_conn_reset(RedisConn *c, int error, const char *message) {
        conn_drop(c, error, message);
}

/* "redis connection failed: why" before the connection was up, "... lost: why" after. */
static void conn_fail(RedisConn *c, const char *why) {
        char buf[600];
        bool up = c->state == REDIS_CONN_UP;
        snprintf(buf, sizeof(buf), "redis connection %s: %s", up ? "lost" : "failed", why);
        conn_drop(c, -ENOTCONN, buf);
}

static void handshake_check(RedisConn *c) {
        if (c->ready || c->handshake_pending > 0 || c->state != REDIS_CONN_UP)
                return;
        c->ready = true;
        c->last_error = mfree(c->last_error);
        if (c->ready_fn)
                c->ready_fn(c, true, c->userdata);
}

/* What went wrong with the TLS connection, from the OpenSSL error queue, the verify result, or errno. */
static const char *tls_error(RedisConn *c, int ret, int err, int saved_errno, char *buf, size_t n) {
        char ebuf[256];
        const char *e = ssl_error_text(ebuf, sizeof(ebuf));

        if (c->state == REDIS_CONN_TLS_HANDSHAKE) {
                long v = sym_SSL_get_verify_result(c->ssl);
                if (v != X509_V_OK) {
                        snprintf(buf, n, "TLS handshake: server certificate refused: %s",
                                 sym_X509_verify_cert_error_string(v));
                        return buf;
                }
        }
        if (*e)
                snprintf(buf, n, "TLS%s: %s", c->state == REDIS_CONN_TLS_HANDSHAKE ? " handshake" : "", e);
        else if (err == SSL_ERROR_SYSCALL && ret < 0 && saved_errno != 0)
                snprintf(buf, n, "%s", strerror(saved_errno));
        else
                snprintf(buf, n, "%s", c->state == REDIS_CONN_TLS_HANDSHAKE ?
                         "TLS handshake: connection closed by the server (is it a TLS port?)" : "connection closed");
        return buf;
}

static int conn_write(RedisConn *c);

static int conn_up(RedisConn *c) {
        uint64_t gen = c->generation;

        c->state = REDIS_CONN_UP;
        /* without AUTH/SELECT the owner hears now, and what it sends goes out with the rest, at once */
        handshake_check(c);
        if (c->generation != gen)
                return -1;
        return conn_write(c); /* AUTH/SELECT, what was queued while connecting, what the owner just sent */
}

/* One step of SSL_connect(); returns 0 (done or waiting) or -1 (dropped). */
static int tls_handshake(RedisConn *c) {
        char buf[512];
        int r, err;

        sym_ERR_clear_error();
        errno = 0;
        r = sym_SSL_connect(c->ssl);
        if (r == 1)
                return conn_up(c);
        int saved_errno = errno;
        err = sym_SSL_get_error(c->ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                uint32_t events = err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
                if (events != c->io_events) {
                        c->io_events = events;
                        (void) sd_event_source_set_io_events(c->io, events);
                }
                return 0;
        }
        conn_fail(c, tls_error(c, r, err, saved_errno, buf, sizeof(buf)));
        return -1;
}

static bool is_ip_address(const char *host) {
        unsigned char a[sizeof(struct in6_addr)];
        return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* connect(2) finished: check it, then start TLS or go up. Returns 0, or -1 when dropped. */
static int connect_finished(RedisConn *c) {
        const RedisConfig *cfg = c->config;
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (err != 0) {
                conn_fail(c, strerror(err));
                return -1;
        }
        if (!cfg->tls)
                return conn_up(c);

        char buf[300];
        sym_ERR_clear_error();
        c->ssl = sym_SSL_new(cfg->ssl_ctx);
        if (!c->ssl || !sym_SSL_set_fd(c->ssl, c->fd)) {
                snprintf(buf, sizeof(buf), "TLS setup: %s", ssl_error_text(buf + 100, sizeof(buf) - 100));
                conn_fail(c, buf);
                return -1;
        }
        if (!cfg->tls_skip_verify) {
                /* The name the certificate must carry: redisHost, as a DNS name or an IP address. */
                int ok = is_ip_address(cfg->host) ? sym_X509_VERIFY_PARAM_set1_ip_asc(sym_SSL_get0_param(c->ssl), cfg->host)
                                                  : sym_SSL_set1_host(c->ssl, cfg->host);
                if (!ok) {
                        conn_fail(c, "TLS setup: cannot set the name to verify");
                        return -1;
                }
        }
        /* SNI (SSL_set_tlsext_host_name(), a macro) names a host, never an address (RFC 6066) */
        if (!is_ip_address(cfg->host))
                (void) sym_SSL_ctrl(c->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, cfg->host);
        c->state = REDIS_CONN_TLS_HANDSHAKE;
        return tls_handshake(c);
}

/* Writes what obuf holds, as far as the socket takes it. Returns 0, or -1 when dropped. */
static int conn_write(RedisConn *c) {
        char buf[512];

        while (c->olen > c->ooff) {
                size_t n = c->olen - c->ooff;
                ssize_t k;

                if (c->ssl) {
                        sym_ERR_clear_error();
                        errno = 0;
                        int r = sym_SSL_write(c->ssl, c->obuf + c->ooff, (int) MIN(n, (size_t) INT_MAX));
                        if (r <= 0) {
                                int saved_errno = errno;
                                int err = sym_SSL_get_error(c->ssl, r);
                                if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
                                        break;
                                conn_fail(c, tls_error(c, r, err, saved_errno, buf, sizeof(buf)));
                                return -1;
                        }
                        k = r;
                } else {
                        k = send(c->fd, c->obuf + c->ooff, n, MSG_NOSIGNAL);
                        if (k < 0) {
                                if (errno == EAGAIN || errno == EINTR)
                                        break;
                                conn_fail(c, strerror(errno));
                                return -1;
                        }
                }
                c->ooff += (size_t) k;
        }
        if (c->ooff == c->olen)
                c->ooff = c->olen = 0;
        io_update(c);
        return 0;
}

/*
 * Hands one parsed reply to whoever waits for it: the oldest pending call,
 * else the subscriber. Returns false when the dispatch loop must stop (the
 * connection or c itself went).
 */
static bool reply_dispatch(RedisConn *c, Liveness *l, redisReply *reply) {
        uint64_t gen = c->generation;
        RedisCall *call = c->pending.head;

        /*
         * The backoff starts over once the server answered something: not at connect, since a
         * TLS 1.3 server refuses a client certificate only after the client's handshake is done.
         */
        c->backoff_usec = 0;
        if (call) {
                list_remove(&c->pending, call);
                call->fn(reply, 0, NULL, call->userdata);
                call_free(call);
        } else if (c->push_fn)
                c->push_fn(reply, c->push_userdata);
        else {
                sym_freeReplyObject(reply);
                conn_fail(c, "protocol error: a reply nobody asked for");
                return false;
        }
        sym_freeReplyObject(reply);
        return l->alive && !c->closing && c->generation == gen;
}

/* Reads what the socket has, parses and dispatches the replies. Returns 0, or -1 when dropped or gone. */
static int conn_read(RedisConn *c, Liveness *l) {
        char buf[16 * 1024];
        uint64_t gen = c->generation;

        for (unsigned rounds = 0;; rounds++) {
                ssize_t k;

                if (c->ssl) {
                        sym_ERR_clear_error();
                        errno = 0;
                        int r = sym_SSL_read(c->ssl, buf, sizeof(buf));
                        if (r <= 0) {
                                int saved_errno = errno;
                                int err = sym_SSL_get_error(c->ssl, r);
                                if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                                        break;
                                char ebuf[512];
                                conn_fail(c, err == SSL_ERROR_ZERO_RETURN ? "connection closed" :
                                                                              tls_error(c, r, err, saved_errno, ebuf, sizeof(ebuf)));
                                return -1;
                        }
                        k = r;
                } else {
                        /* level-triggered: a busy socket is read again next iteration, after the others */
                        if (rounds >= 4)
                                break;
                        k = recv(c->fd, buf, sizeof(buf), 0);
                        if (k < 0) {
                                if (errno == EAGAIN || errno == EINTR)
                                        break;
                                conn_fail(c, strerror(errno));
                                return -1;
                        }
                        if (k == 0) {
                                conn_fail(c, "connection closed");
                                return -1;
                        }
                }
                if (sym_redisReaderFeed(c->reader, buf, (size_t) k) != REDIS_OK) {
                        conn_fail(c, "out of memory");
                        return -1;
                }

                for (;;) {
                        void *reply = NULL;
                        if (sym_redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
                                char ebuf[200];
                                snprintf(ebuf, sizeof(ebuf), "protocol error: %s", c->reader->errstr);
                                conn_fail(c, ebuf);
                                return -1;
                        }
                        if (!reply)
                                break;
                        if (!reply_dispatch(c, l, reply))
                                return -1;
                }
                if (c->generation != gen)
                        return -1;
        }
        return 0;
}

static int on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        RedisConn *c = userdata;
        Liveness *l = liveness_ref(c->liveness);
        uint64_t gen = c->generation;

        switch (c->state) {
        case REDIS_CONN_CONNECTING:
                (void) connect_finished(c);
                break;
        case REDIS_CONN_TLS_HANDSHAKE:
                (void) tls_handshake(c);
                break;
        case REDIS_CONN_UP:
                /* TLS may want to read to write, or the reverse: a TLS socket tries both */
                if ((revents & (EPOLLIN | EPOLLERR | EPOLLHUP)) || c->ssl) {
                        if (conn_read(c, l) < 0)
                                break;
                }
                if (c->olen > c->ooff && (revents & EPOLLOUT || c->ssl))
                        (void) conn_write(c);
                break;
        case REDIS_CONN_IDLE:
                break;
        }
        if (liveness_unref(l) && c->generation == gen)
                watchdog_arm(c);
        return 0;
}

/* Appends one command to obuf. Returns 0 or -ENOMEM. */
static int obuf_append(RedisConn *c, int argc, const char **argv, const size_t *argvlen) {
        char *cmd = NULL;
        int n = sym_redisFormatCommandArgv(&cmd, argc, argv, argvlen);

        if (n < 0)
                return -ENOMEM;
        if (c->olen + (size_t) n > c->ocap) {
                if (c->ooff > 0) {
                        memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
                        c->olen -= c->ooff;
                        c->ooff = 0;
                }
                if (c->olen + (size_t) n > c->ocap) {
                        size_t cap = MAX(c->ocap * 2, c->olen + (size_t) n);
                        char *p = realloc(c->obuf, MAX(cap, (size_t) 4096));
                        if (!p) {
                                sym_redisFreeCommand(cmd);
                                return -ENOMEM;
                        }
                        c->obuf = p;
                        c->ocap = MAX(cap, (size_t) 4096);
                }
        }
        memcpy(c->obuf + c->olen, cmd, (size_t) n);
        c->olen += (size_t) n;
        sym_redisFreeCommand(cmd);
        return 0;
}

/* ---- connecting ---- */

static void on_handshake(RedisConn *c, const char *what, const redisReply *reply) {
        char buf[600];

        if (!reply)
                return; /* the connection went: conn_drop() handles the rest */
        if (reply->type == REDIS_REPLY_ERROR) {
                snprintf(buf, sizeof(buf), "redis %s failed: %.*s", what, (int) MIN(reply->len, 512),
                         reply->str ?: "");
                conn_drop(c, -ENOTCONN, buf);
                return;
        }
        assert(c->handshake_pending > 0);
        c->handshake_pending--;
        handshake_check(c);
}

static void on_auth_reply(const redisReply *reply, int error, const char *message, void *userdata) {
        on_handshake(userdata, "AUTH", reply);
}

static void on_select_reply(const redisReply *reply, int error, const char *message, void *userdata) {
        on_handshake(userdata, "SELECT", reply);
}

/* Queues one internal command, due at the connect deadline. */
static int handshake_push(RedisConn *c, RedisReplyFn fn, int argc, const char **argv, const size_t *argvlen) {
        RedisCall *call = call_new(c, fn, c);

        if (!call)
                return -ENOMEM;
        if (obuf_append(c, argc, argv, argvlen) < 0) {
                free(call);
                return -ENOMEM;
        }
        call->deadline = c->connect_deadline;
        call->timeout_usec = c->config->dial_timeout_usec;
        list_append(&c->pending, call);
        c->handshake_pending++;
        return 0;
}

/* AUTH and SELECT go first into the output buffer, ahead of anything queued while connecting. */
static int handshake_send(RedisConn *c) {
        const RedisConfig *cfg = c->config;
        char buf[32];
        int r = 0;

        if (cfg->password) {
                const char *argv[3] = { "AUTH" };
                size_t argvlen[3] = { 4 };
                int n = 1;
                if (cfg->username) {
                        argv[n] = cfg->username;
                        argvlen[n++] = strlen(cfg->username);
                }
                argv[n] = cfg->password;
                argvlen[n++] = strlen(cfg->password);
                r = handshake_push(c, on_auth_reply, n, argv, argvlen);
        }
        if (r >= 0 && cfg->db > 0) {
                snprintf(buf, sizeof(buf), "%u", cfg->db);
                const char *argv[2] = { "SELECT", buf };
                size_t argvlen[2] = { 6, strlen(buf) };
                r = handshake_push(c, on_select_reply, 2, argv, argvlen);
        }
        return r;
}

static void connection_failed(RedisConn *c, const char *detail) {
        char *m = NULL;
        if (asprintf(&m, "redis connection failed: %s", detail) < 0)
                m = NULL;
        set_string(&c->last_error, m);
        (void) schedule_reconnect(c);
}

/* A non-blocking socket with connect(2) under way (or done) to the configured server. */
static int socket_open(const RedisConfig *cfg, int *ret_fd, char *err, size_t n) {
        if (cfg->unix_path) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                if (strlen(cfg->unix_path) >= sizeof(sa.sun_path)) {
                        snprintf(err, n, "socket path too long");
                        return -ENAMETOOLONG;
                }
                strcpy(sa.sun_path, cfg->unix_path);
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0 || (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 && errno != EINPROGRESS &&
                               errno != EAGAIN)) {
                        int e = errno;
                        snprintf(err, n, "%s", strerror(e));
                        if (fd >= 0)
                                close(fd);
                        return -e;
                }
                *ret_fd = fd;
                return 0;
        }

        /* The name is resolved in place, as hiredis' connect did: a host name costs one lookup per attempt. */
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
        char port[8];
        int r, e = ECONNREFUSED;

        snprintf(port, sizeof(port), "%d", cfg->port);
        r = getaddrinfo(cfg->host, port, &hints, &ai);
        if (r != 0) {
                snprintf(err, n, "cannot resolve '%s': %s", cfg->host, gai_strerror(r));
                return -EHOSTUNREACH;
        }
        for (struct addrinfo *p = ai; p; p = p->ai_next) {
                int fd = socket(p->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0) {
                        e = errno;
                        continue;
                }
                int one = 1;
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                (void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
                if (connect(fd, p->ai_addr, p->ai_addrlen) == 0 || errno == EINPROGRESS) {
                        freeaddrinfo(ai);
                        *ret_fd = fd;
                        return 0;
                }
                e = errno;
                close(fd);
        }
        freeaddrinfo(ai);
        snprintf(err, n, "%s", strerror(e));
        return -e;
}

static void connection_start(RedisConn *c) {
        const RedisConfig *cfg = c->config;
        char err[300];
        int r, fd = -1;

        assert(c->state == REDIS_CONN_IDLE);

        r = socket_open(cfg, &fd, err, sizeof(err));
        if (r < 0) {
                connection_failed(c, err);
                return;
        }
        c->reader = sym_redisReaderCreate();
        r = c->reader ? sd_event_add_io(c->event, &c->io, fd, EPOLLOUT, on_io, c) : -ENOMEM;
        if (r < 0) {
                snprintf(err, sizeof(err), "cannot watch socket: %s", strerror(-r));
                close(fd);
                c->fd = -1;
                socket_close(c);
                connection_failed(c, err);
                return;
        }
        c->fd = fd;
        c->io_events = EPOLLOUT;
        c->state = REDIS_CONN_CONNECTING;
        c->ready = false;
        c->connect_deadline = now_monotonic(c) + cfg->dial_timeout_usec;
        if (handshake_send(c) < 0) {
                Liveness *l = liveness_ref(c->liveness);
                conn_fail(c, "out of memory");
                (void) liveness_unref(l);
                return;
        }
        watchdog_arm(c);
}

static int on_reconnect(sd_event_source *es, uint64_t usec, void *userdata) {
        RedisConn *c = userdata;

        if (c->state == REDIS_CONN_IDLE && !c->closing)
                connection_start(c);
        return 0;
}

static int schedule_reconnect(RedisConn *c) {
        int r;

        c->backoff_usec = c->backoff_usec == 0 ? REDIS_BACKOFF_MIN_USEC
                                                : MIN(c->backoff_usec * 2, REDIS_BACKOFF_MAX_USEC);
        uint64_t t = now_monotonic(c) + c->backoff_usec;

        if (!c->reconnect_timer)
                return sd_event_add_time(c->event, &c->reconnect_timer, CLOCK_MONOTONIC, t, 10 * 1000,
                                         on_reconnect, c);
        r = sd_event_source_set_time(c->reconnect_timer, t);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(c->reconnect_timer, SD_EVENT_ONESHOT);
}

/* ---- deferred answers ---- */

static int on_defer(sd_event_source *es, void *userdata) {
        RedisConn *c = userdata;
        Liveness *l = liveness_ref(c->liveness);
        RedisCall *call;

        /* Calls deferred by the callbacks below wait for the next iteration. */
        c->answering = c->deferred;
        c->deferred = (RedisCallList){};
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);

        /* A callback may end the connection: redis_conn_done() then answers the rest itself. */
        while (l->alive && (call = c->answering.head)) {
                list_remove(&c->answering, call);
                call->fn(NULL, call->error, call->message, call->userdata);
                call_free(call);
        }
        (void) liveness_unref(l);
        return 0;
}

/* ---- watchdog: connect and command deadlines ---- */

static uint64_t watchdog_next(RedisConn *c) {
        uint64_t t = UINT64_MAX;
        if (c->state != REDIS_CONN_IDLE && !c->ready)
                t = c->connect_deadline;
        if (c->state != REDIS_CONN_IDLE && c->pending.head)
                t = MIN(t, c->pending.head->deadline);
        return t;
}

static void watchdog_arm(RedisConn *c) {
        int enabled = SD_EVENT_OFF;
        uint64_t t, armed;

        if (!c->watchdog)
                return;
        t = watchdog_next(c);
        if (t == UINT64_MAX)
                return; /* an armed watchdog finds nothing to do and stays off */
        if (sd_event_source_get_enabled(c->watchdog, &enabled) >= 0 && enabled != SD_EVENT_OFF &&
            sd_event_source_get_time(c->watchdog, &armed) >= 0 && armed <= t)
                return; /* fires earlier and re-arms itself */
        (void) sd_event_source_set_time(c->watchdog, t);
        (void) sd_event_source_set_enabled(c->watchdog, SD_EVENT_ONESHOT);
}

static int on_watchdog(sd_event_source *es, uint64_t usec, void *userdata) {
        RedisConn *c = userdata;
        uint64_t now = now_monotonic(c);
        char buf[160];

        if (c->state != REDIS_CONN_IDLE && !c->ready && now >= c->connect_deadline) {
                snprintf(buf, sizeof(buf), "redis connection failed: not connected within %" PRIu64 " ms%s",
                         c->config->dial_timeout_usec / 1000,
                         c->state == REDIS_CONN_TLS_HANDSHAKE ? " (TLS handshake not finished)" : "");
        } else if (c->state != REDIS_CONN_IDLE && c->pending.head && now >= c->pending.head->deadline) {
                snprintf(buf, sizeof(buf), "redis: no reply within %" PRIu64 " ms, connection reset",
                         c->pending.head->timeout_usec / 1000);
        } else {
                watchdog_arm(c);
                return 0;
        }

        Liveness *l = liveness_ref(c->liveness);
        conn_drop(c, c->ready ? -ETIMEDOUT : -ENOTCONN, buf);
        (void) liveness_unref(l); /* nothing more to do either way */
        return 0;
}

/* ---- the public part ---- */

int redis_conn_init(RedisConn *c, sd_event *event, const RedisConfig *config, RedisReadyFn ready_fn,
                    void *userdata) {
        int r;

        *c = (RedisConn){ .event = event, .config = config, .ready_fn = ready_fn, .userdata = userdata, .fd = -1 };
        c->liveness = liveness_new();
        if (!c->liveness)
                return -ENOMEM;
        r = sd_event_add_time(event, &c->watchdog, CLOCK_MONOTONIC, 0, 10 * 1000, on_watchdog, c);
        if (r >= 0)
                r = sd_event_add_defer(event, &c->defer, on_defer, c);
        if (r < 0) {
                c->watchdog = sd_event_source_disable_unref(c->watchdog);
                c->liveness = liveness_kill(c->liveness);
                return r;
        }
        (void) sd_event_source_set_enabled(c->watchdog, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);

        /* Does not wait: a server that is not up yet only makes calls fail with -ENOTCONN. */
        connection_start(c);
        return 0;
}

/* Answers every call of a list with -ECANCELED. */
static void calls_cancel(RedisConn *c, RedisCallList *l) {
        RedisCall *call;

        while ((call = l->head)) {
                list_remove(l, call);
                call->fn(NULL, -ECANCELED, c->close_message, call->userdata);
                call_free(call);
        }
}

void redis_conn_done(RedisConn *c, const char *message) {
        if (c->closing)
                return;
        c->closing = true;
        c->close_message = message ?: "redis connection closed";
        c->liveness = liveness_kill(c->liveness);

        c->reconnect_timer = sd_event_source_disable_unref(c->reconnect_timer);
        c->watchdog = sd_event_source_disable_unref(c->watchdog);
        c->defer = sd_event_source_disable_unref(c->defer);
        socket_close(c);

        /* Callbacks may send (refused: closing) but not end c again; c itself stays valid until we return. */
        calls_cancel(c, &c->pending);
        calls_cancel(c, &c->dropping);
        calls_cancel(c, &c->answering);
        calls_cancel(c, &c->deferred);

        c->last_error = mfree(c->last_error);
}

static void call_defer(RedisConn *c, RedisCall *call, int error) {
        call->error = error;
        list_append(&c->deferred, call);
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
}

int redis_conn_fail_later(RedisConn *c, int error, const char *message, RedisReplyFn fn, void *userdata) {
        RedisCall *call;

        assert(fn && error < 0 && message);
        if (c->closing)
                return -ECANCELED;
        call = call_new(c, fn, userdata);
        if (!call)
                return -ENOMEM;
        call->message = strdup(message);
        if (!call->message) {
                free(call);
                return -ENOMEM;
        }
        call_defer(c, call, error);
        return 0;
}

int redis_conn_send(RedisConn *c, uint64_t timeout_usec, RedisReplyFn fn, void *userdata, int argc,
                    const char **argv, const size_t *argvlen) {
        RedisCall *call;

        assert(fn);
        if (c->closing)
                return -ECANCELED;
        call = call_new(c, fn, userdata);
        if (!call)
                return -ENOMEM;

        /* Queued while connecting too: written once the connection (and TLS) is up, behind AUTH/SELECT. */
        if (c->state != REDIS_CONN_IDLE && !c->push_fn) {
                if (obuf_append(c, argc, argv, argvlen) < 0) {
                        free(call);
                        return -ENOMEM;
                }
                uint64_t deadline = now_monotonic(c) + timeout_usec;
                /* Replies come in order: nothing behind a slow command can be answered before it. */
                call->deadline = c->pending.tail ? MAX(deadline, c->pending.tail->deadline) : deadline;
                call->timeout_usec = timeout_usec;
                list_append(&c->pending, call);
                io_update(c);
                watchdog_arm(c);
                return 0;
        }

        if (asprintf(&call->message, "redis not connected: %s",
                     c->push_fn ? "the connection is subscribed" :
                     c->last_error ?: "connection not established yet") < 0) {
                free(call);
                return -ENOMEM;
        }
        call_defer(c, call, -ENOTCONN);
        return 0;
}

int redis_conn_subscribe(RedisConn *c, RedisPushFn fn, void *userdata, int argc, const char **argv,
                         const size_t *argvlen) {
        assert(fn);
        if (c->closing)
                return -ECANCELED;
        if (!redis_conn_is_ready(c))
                return -ENOTCONN;
        if (obuf_append(c, argc, argv, argvlen) < 0)
                return -ENOMEM;
        c->push_fn = fn;
        c->push_userdata = userdata;
        io_update(c);
        return 0;
}
