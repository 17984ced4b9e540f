/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The symbol table behind dl-openssl.h. Add a function here and in the header
 * when a driver starts calling it: a missing entry fails the build (the
 * sym_ pointer is undeclared), never the daemon at run time.
 */
#include "../util/cleanup.h"
#include "dl-engine.h"
#include "dl-openssl.h"

DLSYM_PROTOTYPE(SSL_CTX_check_private_key) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_ctrl) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_free) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_get0_certificate) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_get_cert_store) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_load_verify_locations) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_new) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_sess_set_new_cb) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_set_default_verify_paths) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_set_num_tickets) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_set_options) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_set_session_id_context) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_set_verify) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_use_PrivateKey) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_use_PrivateKey_file) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_use_certificate) = NULL;
DLSYM_PROTOTYPE(SSL_CTX_use_certificate_chain_file) = NULL;
DLSYM_PROTOTYPE(SSL_SESSION_free) = NULL;
DLSYM_PROTOTYPE(SSL_connect) = NULL;
DLSYM_PROTOTYPE(SSL_ctrl) = NULL;
DLSYM_PROTOTYPE(SSL_do_handshake) = NULL;
DLSYM_PROTOTYPE(SSL_free) = NULL;
DLSYM_PROTOTYPE(SSL_get0_param) = NULL;
DLSYM_PROTOTYPE(SSL_get1_peer_certificate) = NULL;
DLSYM_PROTOTYPE(SSL_get_error) = NULL;
DLSYM_PROTOTYPE(SSL_get_ex_data) = NULL;
DLSYM_PROTOTYPE(SSL_get_verify_result) = NULL;
DLSYM_PROTOTYPE(SSL_has_pending) = NULL;
DLSYM_PROTOTYPE(SSL_new) = NULL;
DLSYM_PROTOTYPE(SSL_pending) = NULL;
DLSYM_PROTOTYPE(SSL_read) = NULL;
DLSYM_PROTOTYPE(SSL_session_reused) = NULL;
DLSYM_PROTOTYPE(SSL_set1_host) = NULL;
DLSYM_PROTOTYPE(SSL_set_accept_state) = NULL;
DLSYM_PROTOTYPE(SSL_set_connect_state) = NULL;
DLSYM_PROTOTYPE(SSL_set_ex_data) = NULL;
DLSYM_PROTOTYPE(SSL_set_fd) = NULL;
DLSYM_PROTOTYPE(SSL_set_session) = NULL;
DLSYM_PROTOTYPE(SSL_set_shutdown) = NULL;
DLSYM_PROTOTYPE(SSL_shutdown) = NULL;
DLSYM_PROTOTYPE(SSL_write) = NULL;
DLSYM_PROTOTYPE(TLS_client_method) = NULL;
DLSYM_PROTOTYPE(TLS_method) = NULL;
DLSYM_PROTOTYPE(ASN1_STRING_get0_data) = NULL;
DLSYM_PROTOTYPE(ASN1_STRING_length) = NULL;
DLSYM_PROTOTYPE(ASN1_TIME_diff) = NULL;
DLSYM_PROTOTYPE(BIO_free) = NULL;
DLSYM_PROTOTYPE(BIO_new_mem_buf) = NULL;
DLSYM_PROTOTYPE(ERR_clear_error) = NULL;
DLSYM_PROTOTYPE(ERR_error_string_n) = NULL;
DLSYM_PROTOTYPE(ERR_get_error) = NULL;
DLSYM_PROTOTYPE(EVP_PKEY_free) = NULL;
DLSYM_PROTOTYPE(GENERAL_NAMES_free) = NULL;
DLSYM_PROTOTYPE(OPENSSL_sk_num) = NULL;
DLSYM_PROTOTYPE(OPENSSL_sk_value) = NULL;
DLSYM_PROTOTYPE(PEM_read_bio_PrivateKey) = NULL;
DLSYM_PROTOTYPE(PEM_read_bio_X509) = NULL;
DLSYM_PROTOTYPE(X509_STORE_add_cert) = NULL;
DLSYM_PROTOTYPE(X509_VERIFY_PARAM_set1_ip_asc) = NULL;
DLSYM_PROTOTYPE(X509_free) = NULL;
DLSYM_PROTOTYPE(X509_get0_notAfter) = NULL;
DLSYM_PROTOTYPE(X509_get_ext_d2i) = NULL;
DLSYM_PROTOTYPE(X509_verify_cert_error_string) = NULL;

static const DlSym openssl_syms[] = {
        DLSYM(SSL_CTX_check_private_key),
        DLSYM(SSL_CTX_ctrl),
        DLSYM(SSL_CTX_free),
        DLSYM(SSL_CTX_get0_certificate),
        DLSYM(SSL_CTX_get_cert_store),
        DLSYM(SSL_CTX_load_verify_locations),
        DLSYM(SSL_CTX_new),
        DLSYM(SSL_CTX_sess_set_new_cb),
        DLSYM(SSL_CTX_set_default_verify_paths),
        DLSYM(SSL_CTX_set_num_tickets),
        DLSYM(SSL_CTX_set_options),
        DLSYM(SSL_CTX_set_session_id_context),
        DLSYM(SSL_CTX_set_verify),
        DLSYM(SSL_CTX_use_PrivateKey),
        DLSYM(SSL_CTX_use_PrivateKey_file),
        DLSYM(SSL_CTX_use_certificate),
        DLSYM(SSL_CTX_use_certificate_chain_file),
        DLSYM(SSL_SESSION_free),
        DLSYM(SSL_connect),
        DLSYM(SSL_ctrl),
        DLSYM(SSL_do_handshake),
        DLSYM(SSL_free),
        DLSYM(SSL_get0_param),
        DLSYM(SSL_get1_peer_certificate),
        DLSYM(SSL_get_error),
        DLSYM(SSL_get_ex_data),
        DLSYM(SSL_get_verify_result),
        DLSYM(SSL_has_pending),
        DLSYM(SSL_new),
        DLSYM(SSL_pending),
        DLSYM(SSL_read),
        DLSYM(SSL_session_reused),
        DLSYM(SSL_set1_host),
        DLSYM(SSL_set_accept_state),
        DLSYM(SSL_set_connect_state),
        DLSYM(SSL_set_ex_data),
        DLSYM(SSL_set_fd),
        DLSYM(SSL_set_session),
        DLSYM(SSL_set_shutdown),
        DLSYM(SSL_shutdown),
        DLSYM(SSL_write),
        DLSYM(TLS_client_method),
        DLSYM(TLS_method),
        DLSYM(ASN1_STRING_get0_data),
        DLSYM(ASN1_STRING_length),
        DLSYM(ASN1_TIME_diff),
        DLSYM(BIO_free),
        DLSYM(BIO_new_mem_buf),
        DLSYM(ERR_clear_error),
        DLSYM(ERR_error_string_n),
        DLSYM(ERR_get_error),
        DLSYM(EVP_PKEY_free),
        DLSYM(GENERAL_NAMES_free),
        DLSYM(OPENSSL_sk_num),
        DLSYM(OPENSSL_sk_value),
        DLSYM(PEM_read_bio_PrivateKey),
        DLSYM(PEM_read_bio_X509),
        DLSYM(X509_STORE_add_cert),
        DLSYM(X509_VERIFY_PARAM_set1_ip_asc),
        DLSYM(X509_free),
        DLSYM(X509_get0_notAfter),
        DLSYM(X509_get_ext_d2i),
        DLSYM(X509_verify_cert_error_string),
};

static DlEngine openssl_engine = {
        .soname = DLOPEN_LIBSSL_SONAME,
        .package = DLOPEN_LIBSSL_PACKAGE,
        .syms = openssl_syms,
        .n_syms = ELEMENTSOF(openssl_syms),
};

int dlopen_openssl(const char *who, char **reterr_msg) {
        return dl_engine_load(&openssl_engine, who, reterr_msg);
}
