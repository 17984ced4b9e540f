/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OpenSSL (libssl, and through it libcrypto), loaded by the first Redis
 * component that has enableTLS on, or at start when [Cluster] PeerListen= is
 * set (transport/peer-tls.c): a single-host daemon without TLS Redis
 * components never maps it.
 *
 * As with the other engines (dl-engine.h), call sites use sym_<function>()
 * declared with the library's own prototype. libcrypto's functions are
 * resolved through libssl's handle: libssl needs libcrypto, so the loader
 * maps it with libssl and dlsym() finds its symbols in that scope. Macros of
 * the OpenSSL headers that expand to SSL_ctrl()/SSL_CTX_ctrl() are written
 * out at the call sites with the sym_ pointers.
 */
#pragma once

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../util/dlfcn-util.h"

/* libssl */
extern DLSYM_PROTOTYPE(SSL_CTX_check_private_key);
extern DLSYM_PROTOTYPE(SSL_CTX_ctrl);
extern DLSYM_PROTOTYPE(SSL_CTX_free);
extern DLSYM_PROTOTYPE(SSL_CTX_get0_certificate);
extern DLSYM_PROTOTYPE(SSL_CTX_get_cert_store);
extern DLSYM_PROTOTYPE(SSL_CTX_load_verify_locations);
extern DLSYM_PROTOTYPE(SSL_CTX_new);
extern DLSYM_PROTOTYPE(SSL_CTX_sess_set_new_cb);
extern DLSYM_PROTOTYPE(SSL_CTX_set_default_verify_paths);
extern DLSYM_PROTOTYPE(SSL_CTX_set_num_tickets);
extern DLSYM_PROTOTYPE(SSL_CTX_set_options);
extern DLSYM_PROTOTYPE(SSL_CTX_set_session_id_context);
extern DLSYM_PROTOTYPE(SSL_CTX_set_verify);
extern DLSYM_PROTOTYPE(SSL_CTX_use_PrivateKey);
extern DLSYM_PROTOTYPE(SSL_CTX_use_PrivateKey_file);
extern DLSYM_PROTOTYPE(SSL_CTX_use_certificate);
extern DLSYM_PROTOTYPE(SSL_CTX_use_certificate_chain_file);
extern DLSYM_PROTOTYPE(SSL_SESSION_free);
extern DLSYM_PROTOTYPE(SSL_connect);
extern DLSYM_PROTOTYPE(SSL_ctrl);
extern DLSYM_PROTOTYPE(SSL_do_handshake);
extern DLSYM_PROTOTYPE(SSL_free);
extern DLSYM_PROTOTYPE(SSL_get0_param);
extern DLSYM_PROTOTYPE(SSL_get1_peer_certificate);
extern DLSYM_PROTOTYPE(SSL_get_error);
extern DLSYM_PROTOTYPE(SSL_get_ex_data);
extern DLSYM_PROTOTYPE(SSL_get_verify_result);
extern DLSYM_PROTOTYPE(SSL_has_pending);
extern DLSYM_PROTOTYPE(SSL_new);
extern DLSYM_PROTOTYPE(SSL_pending);
extern DLSYM_PROTOTYPE(SSL_read);
extern DLSYM_PROTOTYPE(SSL_session_reused);
extern DLSYM_PROTOTYPE(SSL_set1_host);
extern DLSYM_PROTOTYPE(SSL_set_accept_state);
extern DLSYM_PROTOTYPE(SSL_set_connect_state);
extern DLSYM_PROTOTYPE(SSL_set_ex_data);
extern DLSYM_PROTOTYPE(SSL_set_fd);
extern DLSYM_PROTOTYPE(SSL_set_session);
extern DLSYM_PROTOTYPE(SSL_set_shutdown);
extern DLSYM_PROTOTYPE(SSL_shutdown);
extern DLSYM_PROTOTYPE(SSL_write);
extern DLSYM_PROTOTYPE(TLS_client_method);
extern DLSYM_PROTOTYPE(TLS_method);
/* libcrypto */
extern DLSYM_PROTOTYPE(ASN1_STRING_get0_data);
extern DLSYM_PROTOTYPE(ASN1_STRING_length);
extern DLSYM_PROTOTYPE(ASN1_TIME_diff);
extern DLSYM_PROTOTYPE(BIO_free);
extern DLSYM_PROTOTYPE(BIO_new_mem_buf);
extern DLSYM_PROTOTYPE(ERR_clear_error);
extern DLSYM_PROTOTYPE(ERR_error_string_n);
extern DLSYM_PROTOTYPE(ERR_get_error);
extern DLSYM_PROTOTYPE(EVP_PKEY_free);
extern DLSYM_PROTOTYPE(GENERAL_NAMES_free);
extern DLSYM_PROTOTYPE(OPENSSL_sk_num);
extern DLSYM_PROTOTYPE(OPENSSL_sk_value);
extern DLSYM_PROTOTYPE(PEM_read_bio_PrivateKey);
extern DLSYM_PROTOTYPE(PEM_read_bio_X509);
extern DLSYM_PROTOTYPE(X509_STORE_add_cert);
extern DLSYM_PROTOTYPE(X509_VERIFY_PARAM_set1_ip_asc);
extern DLSYM_PROTOTYPE(X509_free);
extern DLSYM_PROTOTYPE(X509_get0_notAfter);
extern DLSYM_PROTOTYPE(X509_get_ext_d2i);
extern DLSYM_PROTOTYPE(X509_verify_cert_error_string);

/*
 * Loads libssl the first time (see dl_engine_load()); who is the component
 * type asking, for the error message. Returns 0, -EOPNOTSUPP with
 * *reterr_msg set, or -ENOMEM.
 */
int dlopen_openssl(const char *who, char **reterr_msg);
