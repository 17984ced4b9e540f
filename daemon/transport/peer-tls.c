/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See peer-tls.h. One SSL_CTX serves both directions (TLS_method(); each
 * connection is put in accept or connect state): the same key, certificate
 * and trust root, the same verification rules. A reload builds a new context
 * and swaps it in only when it is complete; connections hold a reference to
 * the one they started with.
 *
 * Session resumption: the server issues one TLS 1.3 ticket per full
 * handshake (stateless, encrypted with keys of the context: a reload makes
 * every old ticket useless, so a renewed or revoked-by-reissue certificate is
 * checked again); the client keeps the last ticket per peer pool in a
 * PeerTlsSessionSlot and offers it on the next connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "../drivers/dl-openssl.h"
#include "../util/cleanup.h"
#include "../util/strv.h"
#include "peer-tls.h"

#define SPIFFE_PREFIX "spiffe://"
#define SPIFFE_HOST_PATH "/mooring/host/"
#define COALESCE_MAX 16384 /* one TLS record: small writes of several pieces go out as one */

struct PeerTls {
        SSL_CTX *ctx;           /* the current context; connections ref their own */
        uint64_t generation;
        char *cert_path;        /* the files it was loaded from */
        int64_t not_after;      /* seconds since the epoch, of the leaf certificate */
};

/* The last OpenSSL error as text, and the queue cleared. */
static void ssl_error_text(char *buf, size_t size) {
        unsigned long e, last = 0;
        while ((e = sym_ERR_get_error()) != 0)
                last = e;
        if (last)
                sym_ERR_error_string_n(last, buf, size);
        else
                snprintf(buf, size, "unknown TLS error");
}

/* "<what> '<path>': <OpenSSL's reason>" */
static int fail(char **reterr_msg, int error, const char *what, const char *path) {
        char ssl[256];
        ssl_error_text(ssl, sizeof ssl);
        if (reterr_msg) {
                free(*reterr_msg);
                if (asprintf(reterr_msg, "%s%s%s%s: %s", what, path ? " '" : "", path ?: "", path ? "'" : "", ssl) < 0)
                        *reterr_msg = NULL;
        }
        return error;
}

/* The file to use: configured, else the systemd credential if it exists, else the PKI default. */
static char *resolve_file(const char *configured, const char *credential, const char *fallback) {
        if (configured)
                return strdup(configured);
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        if (dir && *dir) {
                char *p = NULL;
                if (asprintf(&p, "%s/%s", dir, credential) < 0)
                        return NULL;
                if (access(p, F_OK) == 0)
                        return p;
                free(p);
        }
        char *p = NULL;
        if (asprintf(&p, PEER_TLS_PKI_DIR "/%s", fallback) < 0)
                return NULL;
        return p;
}

static int check_readable(const char *path, const char *what, char **reterr_msg) {
        if (access(path, R_OK) == 0)
                return 0;
        int r = -errno;
        if (reterr_msg) {
                free(*reterr_msg);
                if (asprintf(reterr_msg, "cannot read the %s '%s': %s", what, path, strerror(-r)) < 0)
                        *reterr_msg = NULL;
        }
        return r;
}

/* The SAN entries of a certificate: calls fn for each DNS name and URI. */
typedef void (*SanFn)(int type, const char *value, size_t len, void *userdata);

static void san_foreach(X509 *x, SanFn fn, void *userdata) {
        GENERAL_NAMES *names = sym_X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        if (!names)
                return;
        int n = sym_OPENSSL_sk_num((const OPENSSL_STACK *) names);
        for (int i = 0; i < n; i++) {
                const GENERAL_NAME *g = sym_OPENSSL_sk_value((const OPENSSL_STACK *) names, i);
                const ASN1_STRING *s = NULL;
                if (g->type == GEN_DNS)
                        s = g->d.dNSName;
                else if (g->type == GEN_URI)
                        s = g->d.uniformResourceIdentifier;
                if (!s)
                        continue;
                const unsigned char *data = sym_ASN1_STRING_get0_data(s);
                int len = sym_ASN1_STRING_length(s);
                /* an embedded NUL would let a name pass for another: such an entry is skipped */
                if (len <= 0 || memchr(data, 0, (size_t) len))
                        continue;
                fn(g->type, (const char *) data, (size_t) len, userdata);
        }
        sym_GENERAL_NAMES_free(names);
}

typedef struct Identity {
        char *host;          /* the first DNS name */
        char *trust_domain;  /* from the first spiffe:// URI */
        char *uri_host;      /* the host the URI names */
        bool bad_uri;
} Identity;

static void identity_done(Identity *id) {
        free(id->host);
        free(id->trust_domain);
        free(id->uri_host);
}

static void identity_add(int type, const char *v, size_t len, void *userdata) {
        Identity *id = userdata;
        if (type == GEN_DNS) {
                if (!id->host)
                        id->host = strndup(v, len);
                return;
        }
        if (id->trust_domain || id->bad_uri || len <= strlen(SPIFFE_PREFIX) ||
            strncmp(v, SPIFFE_PREFIX, strlen(SPIFFE_PREFIX)) != 0)
                return;
        /* spiffe://<trust-domain>/mooring/host/<host-id> */
        const char *td = v + strlen(SPIFFE_PREFIX), *end = v + len;
        const char *slash = memchr(td, '/', (size_t) (end - td));
        size_t pl = strlen(SPIFFE_HOST_PATH);
        if (!slash || slash == td || (size_t) (end - slash) <= pl || strncmp(slash, SPIFFE_HOST_PATH, pl) != 0 ||
            memchr(slash + pl, '/', (size_t) (end - slash - pl))) {
                id->bad_uri = true;
                return;
        }
        id->trust_domain = strndup(td, (size_t) (slash - td));
        id->uri_host = strndup(slash + pl, (size_t) (end - slash - pl));
}

/* What peers will think of our own certificate: NULL if fine, else why not (malloc'd). */
static char *own_certificate_problem(X509 *x, const char *path, const char *host, const char *trust_domain) {
        _cleanup_(identity_done) Identity id = {};
        char *msg = NULL;
        san_foreach(x, identity_add, &id);
        if (!id.host || strcasecmp(id.host, host) != 0) {
                if (asprintf(&msg, "the certificate '%s' does not name this host '%s' (SAN DNS): peers will refuse "
                             "it", path, host) < 0)
                        return NULL;
        } else if (!id.trust_domain || !id.uri_host || strcasecmp(id.uri_host, host) != 0) {
                if (asprintf(&msg, "the certificate '%s' has no SAN URI spiffe://<trust-domain>/mooring/host/%s: "
                             "peers will refuse it", path, host) < 0)
                        return NULL;
        } else if (!streq(id.trust_domain, trust_domain)) {
                if (asprintf(&msg, "the certificate '%s' is for trust domain '%s', TrustDomain= says '%s': peers "
                             "will see '%s'", path, id.trust_domain, trust_domain, id.trust_domain) < 0)
                        return NULL;
        }
        return msg;
}

static int on_new_session(SSL *ssl, SSL_SESSION *session) {
        PeerTlsSessionSlot *slot = sym_SSL_get_ex_data(ssl, 0);
        if (!slot)
                return 0; /* not kept: OpenSSL frees it */
        if (slot->session)
                sym_SSL_SESSION_free(slot->session);
        slot->session = session;
        slot->generation = slot->tls ? slot->tls->generation : 0;
        return 1; /* ours now */
}

static int ctx_build(const ClusterSettings *cs, const char *host_id, SSL_CTX **ret_ctx, char **ret_cert_path,
                     int64_t *ret_not_after, char **ret_warning, char **reterr_msg) {
        _cleanup_free_ char *cert = resolve_file(cs->cert_file, "peer.crt", "host.crt");
        _cleanup_free_ char *key = resolve_file(cs->key_file, "peer.key", "host.key");
        _cleanup_free_ char *ca = resolve_file(cs->trust_root_file, "ca.crt", "ca.crt");
        static const unsigned char sid_ctx[] = "mooring-peer";
        SSL_CTX *ctx;
        int r;

        if (!cert || !key || !ca)
                return -ENOMEM;
        if ((r = check_readable(cert, "certificate", reterr_msg)) < 0 ||
            (r = check_readable(key, "key", reterr_msg)) < 0 ||
            (r = check_readable(ca, "trust root", reterr_msg)) < 0)
                return r;

        sym_ERR_clear_error();
        ctx = sym_SSL_CTX_new(sym_TLS_method());
        if (!ctx)
                return fail(reterr_msg, -ENOMEM, "cannot make a TLS context", NULL);
        /* 1.2 at least; no compression, no renegotiation; an EOF without close_notify is an EOF
         * (HTTP's framing tells a truncated answer, as over plain TCP). */
        sym_SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
        sym_SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
        sym_SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, NULL);
        /* Read what the socket has in one read(), not a record header and then its body: a small
         * request or answer costs one read() (and the one that says EAGAIN), not three. */
        sym_SSL_CTX_ctrl(ctx, SSL_CTRL_SET_READ_AHEAD, 1, NULL);
        /* Both directions demand a certificate that chains to the trust root below, and nothing
         * else: no default verify paths are loaded. */
        sym_SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        sym_SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
        sym_SSL_CTX_ctrl(ctx, SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_BOTH | SSL_SESS_CACHE_NO_INTERNAL_STORE,
                         NULL);
        sym_SSL_CTX_sess_set_new_cb(ctx, on_new_session);
        sym_SSL_CTX_set_num_tickets(ctx, 1);

        if (sym_SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
                r = fail(reterr_msg, -EBADMSG, "cannot load the certificate", cert);
        else if (sym_SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
                r = fail(reterr_msg, -EBADMSG, "cannot load the key", key);
        else if (sym_SSL_CTX_check_private_key(ctx) != 1)
                r = fail(reterr_msg, -EBADMSG, "the key does not belong to the certificate: key", key);
        else if (sym_SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
                r = fail(reterr_msg, -EBADMSG, "cannot load the trust root", ca);
        if (r < 0) {
                sym_SSL_CTX_free(ctx);
                return r;
        }

        X509 *leaf = sym_SSL_CTX_get0_certificate(ctx);
        int days = 0, secs = 0;
        int64_t now = (int64_t) time(NULL);
        if (leaf && sym_ASN1_TIME_diff(&days, &secs, NULL, sym_X509_get0_notAfter(leaf)))
                *ret_not_after = now + (int64_t) days * 86400 + secs;
        else
                *ret_not_after = now;
        if (ret_warning && leaf && host_id) {
                free(*ret_warning);
                *ret_warning = own_certificate_problem(leaf, cert, host_id,
                                                       cs->trust_domain ?: SETTINGS_DEFAULT_TRUST_DOMAIN);
        }
        *ret_ctx = ctx;
        *ret_cert_path = TAKE_PTR(cert);
        return 0;
}

int peer_tls_new(const ClusterSettings *cs, const char *host_id, PeerTls **ret, char **ret_warning,
                 char **reterr_msg) {
        _cleanup_free_ PeerTls *t = NULL;
        int r;

        r = dlopen_openssl("[Cluster] peer TLS", reterr_msg);
        if (r < 0)
                return r;
        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        r = ctx_build(cs, host_id, &t->ctx, &t->cert_path, &t->not_after, ret_warning, reterr_msg);
        if (r < 0)
                return r;
        t->generation = 1;
        *ret = TAKE_PTR(t);
        return 0;
}

PeerTls *peer_tls_free(PeerTls *t) {
        if (!t)
                return NULL;
        if (t->ctx)
                sym_SSL_CTX_free(t->ctx);
        free(t->cert_path);
        free(t);
        return NULL;
}

int peer_tls_reload(PeerTls *t, const ClusterSettings *cs, const char *host_id, char **ret_warning,
                    char **reterr_msg) {
        SSL_CTX *ctx = NULL;
        char *path = NULL;
        int64_t not_after = 0;
        int r = ctx_build(cs, host_id, &ctx, &path, &not_after, ret_warning, reterr_msg);
        if (r < 0)
                return r;
        sym_SSL_CTX_free(t->ctx); /* connections using it keep their reference */
        t->ctx = ctx;
        free(t->cert_path);
        t->cert_path = path;
        t->not_after = not_after;
        t->generation++;
        return 0;
}

uint64_t peer_tls_generation(const PeerTls *t) {
        return t->generation;
}

const char *peer_tls_certificate_path(const PeerTls *t) {
        return t->cert_path;
}

int64_t peer_tls_seconds_left(const PeerTls *t) {
        return t->not_after - (int64_t) time(NULL);
}

/* ---- connections ---- */

int peer_tls_conn_new(PeerTls *t, int fd, const char *expect_host, PeerTlsSessionSlot *slot, SSL **ret) {
        sym_ERR_clear_error();
        SSL *ssl = sym_SSL_new(t->ctx);
        if (!ssl)
                return -ENOMEM;
        if (sym_SSL_set_fd(ssl, fd) != 1) {
                sym_SSL_free(ssl);
                return -ENOMEM;
        }
        if (!expect_host) {
                sym_SSL_set_accept_state(ssl);
                *ret = ssl;
                return 0;
        }
        sym_SSL_set_connect_state(ssl);
        /* The server's certificate must name the host we mean (SAN DNS), checked in the handshake. */
        if (sym_SSL_set1_host(ssl, expect_host) != 1 ||
            /* SNI too: a server resumes a session only for the name it was made for */
            sym_SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, (void *) expect_host) != 1) {
                sym_SSL_free(ssl);
                return -EINVAL;
        }
        if (slot) {
                slot->tls = t;
                (void) sym_SSL_set_ex_data(ssl, 0, slot);
                if (slot->session && slot->generation == t->generation)
                        (void) sym_SSL_set_session(ssl, slot->session);
        }
        *ret = ssl;
        return 0;
}

SSL *peer_tls_conn_free(SSL *ssl) {
        if (!ssl)
                return NULL;
        /* Without this, OpenSSL takes a connection freed before a close_notify for a broken one
         * and marks its session (the ticket the client keeps) as not resumable. HTTP's framing
         * tells a complete exchange, not TLS's shutdown. */
        sym_SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        sym_SSL_free(ssl);
        return NULL;
}

void peer_tls_session_slot_done(PeerTlsSessionSlot *slot) {
        if (slot->session)
                sym_SSL_SESSION_free(slot->session);
        slot->session = NULL;
}

int peer_tls_handshake(SSL *ssl, uint32_t *ret_events, char **reterr_msg) {
        char buf[256];

        sym_ERR_clear_error();
        errno = 0;
        int k = sym_SSL_do_handshake(ssl);
        if (k == 1) {
                long v = sym_SSL_get_verify_result(ssl);
                if (v == X509_V_OK)
                        return 1;
                if (reterr_msg && asprintf(reterr_msg, "peer certificate refused: %s",
                                           sym_X509_verify_cert_error_string(v)) < 0)
                        *reterr_msg = NULL;
                return -EKEYREJECTED;
        }
        int e = sym_SSL_get_error(ssl, k);
        if (e == SSL_ERROR_WANT_READ) {
                *ret_events = EPOLLIN;
                return 0;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
                *ret_events = EPOLLOUT;
                return 0;
        }
        int saved = errno;
        long v = sym_SSL_get_verify_result(ssl);
        ssl_error_text(buf, sizeof buf);
        int r;
        if (v != X509_V_OK) {
                r = -EKEYREJECTED;
                snprintf(buf, sizeof buf, "certificate verify failed: %s", sym_X509_verify_cert_error_string(v));
        } else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
                r = -ECONNRESET;
                snprintf(buf, sizeof buf, "the peer closed the connection during the TLS handshake%s%s",
                         saved ? ": " : "", saved ? strerror(saved) : "");
        } else
                /* an alert from the peer about our certificate, or no common ground */
                r = strstr(buf, "alert") || strstr(buf, "certificate") ? -EKEYREJECTED : -EPROTO;
        if (reterr_msg && asprintf(reterr_msg, "TLS handshake failed: %s", buf) < 0)
                *reterr_msg = NULL;
        return r;
}

bool peer_tls_resumed(SSL *ssl) {
        return sym_SSL_session_reused(ssl) == 1;
}

ssize_t peer_tls_read(SSL *ssl, void *buf, size_t len) {
        size_t got = 0;

        while (got < len) {
                sym_ERR_clear_error();
                int chunk = len - got > INT32_MAX ? INT32_MAX : (int) (len - got);
                int k = sym_SSL_read(ssl, (char *) buf + got, chunk);
                if (k > 0) {
                        got += (size_t) k;
                        continue;
                }
                int e = sym_SSL_get_error(ssl, k);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                        if (got > 0)
                                break;
                        errno = EAGAIN;
                        return -1;
                }
                if (e == SSL_ERROR_ZERO_RETURN)
                        break; /* close_notify (or EOF): what we have, then 0 */
                if (got > 0)
                        break; /* the error comes back on the next call */
                if (e != SSL_ERROR_SYSCALL || errno == 0)
                        errno = e == SSL_ERROR_SYSCALL ? ECONNRESET : EPROTO;
                sym_ERR_clear_error();
                return -1;
        }
        return (ssize_t) got;
}

static ssize_t write_one(SSL *ssl, const void *buf, size_t len) {
        sym_ERR_clear_error();
        int k = sym_SSL_write(ssl, buf, len > INT32_MAX ? INT32_MAX : (int) len);
        if (k > 0)
                return k;
        int e = sym_SSL_get_error(ssl, k);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                errno = EAGAIN;
        else if (e != SSL_ERROR_SYSCALL || errno == 0)
                errno = e == SSL_ERROR_SYSCALL ? EPIPE : EPROTO;
        sym_ERR_clear_error();
        return -1;
}

ssize_t peer_tls_writev(SSL *ssl, const struct iovec *iov, int n) {
        size_t total = 0, done = 0;

        for (int i = 0; i < n; i++)
                total += iov[i].iov_len;
        if (total == 0)
                return 0;
        if (n > 1 && total <= COALESCE_MAX) {
                /* One record, one send(), instead of one per piece (a head and a small body). A
                 * retry after EAGAIN offers the same bytes first, as OpenSSL requires. */
                char tmp[COALESCE_MAX], *p = tmp;
                for (int i = 0; i < n; i++) {
                        memcpy(p, iov[i].iov_base, iov[i].iov_len);
                        p += iov[i].iov_len;
                }
                return write_one(ssl, tmp, total);
        }
        for (int i = 0; i < n; i++) {
                size_t off = 0;
                while (off < iov[i].iov_len) {
                        ssize_t k = write_one(ssl, (const char *) iov[i].iov_base + off, iov[i].iov_len - off);
                        if (k < 0)
                                return done > 0 ? (ssize_t) done : -1;
                        off += (size_t) k;
                        done += (size_t) k;
                }
        }
        return (ssize_t) done;
}

bool peer_tls_pending(SSL *ssl) {
        /* decrypted, or read ahead from the socket and not yet decrypted */
        return sym_SSL_has_pending(ssl) == 1;
}

void peer_tls_shutdown(SSL *ssl) {
        sym_ERR_clear_error();
        (void) sym_SSL_shutdown(ssl);
        sym_ERR_clear_error();
}

int peer_tls_peer_identity(SSL *ssl, char **ret_host, char **ret_trust_domain) {
        _cleanup_(identity_done) Identity id = {};
        X509 *x = sym_SSL_get1_peer_certificate(ssl);
        if (!x)
                return -EKEYREJECTED;
        san_foreach(x, identity_add, &id);
        sym_X509_free(x);
        if (!id.host || !id.trust_domain || !id.uri_host || strcasecmp(id.host, id.uri_host) != 0)
                return -EKEYREJECTED;
        *ret_host = TAKE_PTR(id.host);
        *ret_trust_domain = TAKE_PTR(id.trust_domain);
        return 0;
}
