/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mutual TLS between mooringd hosts ([Cluster], issue 17): the key, the
 * certificate and the trust root of this host, and the TLS side of the peer
 * listener (http/server.c) and of calls to peers (transport.c).
 *
 * Guarantees:
 *   - TLS 1.2 at least (1.3 when both ends have it). Both ends present a
 *     certificate and verify the other's chain against the trust root file
 *     ONLY: no system CA is ever trusted.
 *   - A client names the host it means to reach: the server's certificate
 *     must carry that host id as a SAN DNS name, or the handshake fails.
 *   - A server learns the client's host id (its first SAN DNS name) and trust
 *     domain (SAN URI spiffe://<trust-domain>/mooring/host/<host-id>) from the
 *     verified certificate; a certificate without both is refused.
 *   - peer_tls_reload() swaps in new files for new connections; on any error
 *     the old ones stay. Connections already up keep the context they began
 *     with (OpenSSL counts its references).
 *   - Everything is non-blocking: handshakes, reads and writes say what they
 *     wait for and never sleep.
 *
 * libssl is dlopen()ed (drivers/dl-openssl.h) by peer_tls_new(): a host
 * without [Cluster] never maps it. Quiet: errors come back as text.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "../core/settings.h"

struct ssl_st;
typedef struct PeerTls PeerTls;

/* Where the files are: the given ones, else $CREDENTIALS_DIRECTORY/{peer.crt,peer.key,ca.crt}, else
 * /etc/mooring/pki/{host.crt,host.key,ca.crt}; per file. */
#define PEER_TLS_PKI_DIR "/etc/mooring/pki"

/*
 * Loads libssl and the three files of cs. host_id: this host's id, which its own certificate
 * should name (a certificate that does not is loaded but said so in *ret_warning, malloc'd).
 * -EOPNOTSUPP (no libssl), -ENOENT/-EACCES (a file), -EBADMSG (a file that is not what it
 * should be, the key not matching the certificate), -ENOMEM; *reterr_msg says which file and why.
 */
int peer_tls_new(const ClusterSettings *cs, const char *host_id, PeerTls **ret, char **ret_warning,
                 char **reterr_msg);
PeerTls *peer_tls_free(PeerTls *t);

/* Reads the files again (SIGHUP). On error the old context stays and *reterr_msg says why. */
int peer_tls_reload(PeerTls *t, const ClusterSettings *cs, const char *host_id, char **ret_warning,
                    char **reterr_msg);
/* Bumped by every successful reload: cached sessions of an older generation are not resumed. */
uint64_t peer_tls_generation(const PeerTls *t);
/* The certificate in use: its path and how long it is still valid (negative: expired). */
const char *peer_tls_certificate_path(const PeerTls *t);
int64_t peer_tls_seconds_left(const PeerTls *t);

/*
 * A TLS connection on the connected socket fd (borrowed: closing it stays the caller's).
 * expect_host NULL: the server side; else the client side, and the server must be that host.
 * session_slot (client side, may be NULL): a place where the connection stores the session
 * the server hands out, and from which it resumes (*session_slot, of generation *slot_generation);
 * it must outlive the connection. Free with peer_tls_conn_free().
 */
typedef struct PeerTlsSessionSlot {
        void *session;            /* SSL_SESSION, owned */
        uint64_t generation;      /* of the PeerTls it came from */
        PeerTls *tls;             /* borrowed */
} PeerTlsSessionSlot;
int peer_tls_conn_new(PeerTls *t, int fd, const char *expect_host, PeerTlsSessionSlot *slot,
                      struct ssl_st **ret);
struct ssl_st *peer_tls_conn_free(struct ssl_st *ssl);
void peer_tls_session_slot_done(PeerTlsSessionSlot *slot);

/*
 * Drives the handshake. 1: done (and verified); 0: not yet, *ret_events says what to wait for
 * (EPOLLIN or EPOLLOUT); < 0 failed (-EKEYREJECTED: the peer's certificate was refused, -EPROTO:
 * not TLS or no common ground, -ECONNRESET: the peer went away) with *reterr_msg (malloc'd) saying why.
 */
int peer_tls_handshake(struct ssl_st *ssl, uint32_t *ret_events, char **reterr_msg);
/* After the handshake: whether the session was resumed (tests, metrics). */
bool peer_tls_resumed(struct ssl_st *ssl);

/*
 * As read(2) and writev(2) on a non-blocking socket: a count, 0 for the end of the stream (read),
 * or -1 with errno (EAGAIN: try again when the socket is ready; the read fills buf as far as
 * the data at hand goes, so a short read means nothing more is buffered, in TLS or the socket).
 */
ssize_t peer_tls_read(struct ssl_st *ssl, void *buf, size_t len);
ssize_t peer_tls_writev(struct ssl_st *ssl, const struct iovec *iov, int n);
/* Decrypted bytes waiting inside TLS (the socket may be empty meanwhile). */
bool peer_tls_pending(struct ssl_st *ssl);
/* A close_notify, best effort, without waiting for the peer's. */
void peer_tls_shutdown(struct ssl_st *ssl);

/* The peer's host id and trust domain from its verified certificate (server side). -EKEYREJECTED
 * when the certificate lacks them or they disagree. */
int peer_tls_peer_identity(struct ssl_st *ssl, char **ret_host, char **ret_trust_domain);
