/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl ca: the trust root of a cluster of mooringd hosts, owned by the
 * operator (Dapr runs sentry for this; here it is two files and a command).
 *
 *   ca init [--dir DIR] [--trust-domain TD] [--days N]
 *       DIR/ca.key (0600) and DIR/ca.crt: a self-signed ECDSA P-256 root,
 *       CA:TRUE with path length 0, whose SAN URI spiffe://TD records the
 *       trust domain. An existing ca.key is never overwritten.
 *   ca issue HOST [--dir DIR] [--out DIR] [--days N] [--ip ADDR]...
 *       OUT/HOST.key (0600) and OUT/HOST.crt, signed by DIR's root, for both
 *       TLS ends (serverAuth, clientAuth): SAN DNS:HOST (what peers check),
 *       IP:ADDR for each --ip, URI spiffe://TD/mooring/host/HOST (how the
 *       receiving daemon learns the caller's trust domain). Issuing again
 *       replaces the pair (renewal; then reload the daemon).
 *
 * Files are written to a temporary name and renamed, so a daemon that
 * reloads meanwhile reads the old pair or the new one, never half of one.
 * Linked against libcrypto directly (the daemon dlopen()s it).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ctl.h"

#define CA_DEFAULT_DIR "/etc/mooring/pki"
#define CA_DEFAULT_DAYS 3650
#define HOST_DEFAULT_DAYS 365
#define SPIFFE "spiffe://"

static int ssl_fail(const char *what) {
        char buf[256];
        unsigned long e = ERR_get_error();
        if (e)
                ERR_error_string_n(e, buf, sizeof buf);
        else
                snprintf(buf, sizeof buf, "unknown error");
        fprintf(stderr, "%s: %s: %s\n", CTL_PROGRAM, what, buf);
        return -EIO;
}

/* A DNS name as a host id: letters, digits, '-', '.', '_' (at most 253, no dot or dash first). */
static bool host_id_ok(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= 253 && s[0] != '.' && s[0] != '-' &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") == n;
}

/* A trust domain: as SPIFFE says, lower-case letters, digits, '.', '-', '_'. */
static bool trust_domain_ok(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= 255 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.-_") == n;
}

static int parse_days(const char *s, long *ret) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || *end || end == s || v < 1 || v > 36500) {
                fprintf(stderr, "%s: invalid --days '%s': a number of days from 1 to 36500\n", CTL_PROGRAM, s);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int mkdir_parents(const char *dir) {
        _cleanup_free_ char *p = strdup(dir);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* Writes a key (mode 0600) or certificate (0644) as PEM through a temporary file and rename(). */
static int write_pem(const char *dir, const char *name, EVP_PKEY *key, X509 *cert) {
        _cleanup_free_ char *path = NULL, *tmp = NULL;
        if (asprintf(&path, "%s/%s", dir, name) < 0 || asprintf(&tmp, "%s/.%s.tmp", dir, name) < 0)
                return -ENOMEM;
        (void) unlink(tmp);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, key ? 0600 : 0644);
        if (fd < 0) {
                int r = -errno;
                fprintf(stderr, "%s: cannot write %s: %s\n", CTL_PROGRAM, tmp, strerror(-r));
                return r;
        }
        FILE *f = fdopen(fd, "w");
        if (!f) {
                close(fd);
                return -errno;
        }
        int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
        if (fflush(f) != 0 || fsync(fileno(f)) < 0)
                ok = 0;
        if (fclose(f) != 0)
                ok = 0;
        if (!ok || rename(tmp, path) < 0) {
                int r = -errno ?: -EIO;
                (void) unlink(tmp);
                fprintf(stderr, "%s: cannot write %s: %s\n", CTL_PROGRAM, path, strerror(-r));
                return r;
        }
        printf("%s\n", path);
        return 0;
}

static EVP_PKEY *new_key(void) {
        EVP_PKEY *k = EVP_EC_gen("P-256");
        if (!k)
                (void) ssl_fail("cannot make a key");
        return k;
}

static int add_ext(X509 *issuer, X509 *cert, int nid, const char *value) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
        if (!e)
                return ssl_fail("cannot build a certificate extension");
        int ok = X509_add_ext(cert, e, -1);
        X509_EXTENSION_free(e);
        return ok ? 0 : ssl_fail("cannot add a certificate extension");
}

/* A certificate for key with subject CN=cn, valid from an hour ago (clocks differ) for days. */
static X509 *new_cert(EVP_PKEY *key, const char *cn, long days) {
        X509 *x = X509_new();
        unsigned char serial[16];
        BIGNUM *bn = NULL;

        if (!x || RAND_bytes(serial, sizeof serial) != 1)
                goto fail;
        serial[0] &= 0x7f; /* positive */
        bn = BN_bin2bn(serial, sizeof serial, NULL);
        if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
                goto fail;
        BN_free(bn);
        bn = NULL;
        if (!X509_set_version(x, 2) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
            !X509_time_adj_ex(X509_getm_notAfter(x), (int) days, 0, NULL) || !X509_set_pubkey(x, key))
                goto fail;
        X509_NAME *name = X509_get_subject_name(x);
        if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *) cn, -1, -1, 0))
                goto fail;
        return x;
fail:
        (void) ssl_fail("cannot make a certificate");
        BN_free(bn);
        X509_free(x);
        return NULL;
}

static int ca_init(const char *dir, const char *td, long days) {
        _cleanup_free_ char *key_path = NULL, *cn = NULL, *san = NULL;
        EVP_PKEY *key = NULL;
        X509 *x = NULL;
        int r;

        if (asprintf(&key_path, "%s/ca.key", dir) < 0 || asprintf(&cn, "mooring trust root (%s)", td) < 0 ||
            asprintf(&san, "URI:" SPIFFE "%s", td) < 0)
                return -ENOMEM;
        if (access(key_path, F_OK) == 0) {
                fprintf(stderr, "%s: %s exists already: a trust root is not replaced (remove it first if you "
                        "mean to, and issue every host's certificate again)\n", CTL_PROGRAM, key_path);
                return -EEXIST;
        }
        r = mkdir_parents(dir);
        if (r < 0) {
                fprintf(stderr, "%s: cannot create %s: %s\n", CTL_PROGRAM, dir, strerror(-r));
                return r;
        }
        r = -EIO;
        key = new_key();
        if (!key)
                goto out;
        x = new_cert(key, cn, days);
        if (!x || !X509_set_issuer_name(x, X509_get_subject_name(x)))
                goto out;
        if (add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
            add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
            add_ext(x, x, NID_subject_key_identifier, "hash") < 0 || add_ext(x, x, NID_subject_alt_name, san) < 0)
                goto out;
        if (!X509_sign(x, key, EVP_sha256())) {
                r = ssl_fail("cannot sign the certificate");
                goto out;
        }
        r = write_pem(dir, "ca.key", key, NULL);
        if (r >= 0)
                r = write_pem(dir, "ca.crt", NULL, x);
out:
        X509_free(x);
        EVP_PKEY_free(key);
        return r;
}

/* The trust domain a root records: its SAN URI spiffe://TD. */
static char *ca_trust_domain(X509 *ca) {
        GENERAL_NAMES *names = X509_get_ext_d2i(ca, NID_subject_alt_name, NULL, NULL);
        char *td = NULL;
        for (int i = 0; names && !td && i < sk_GENERAL_NAME_num(names); i++) {
                const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
                if (g->type != GEN_URI)
                        continue;
                const char *v = (const char *) ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
                int len = ASN1_STRING_length(g->d.uniformResourceIdentifier);
                size_t pl = strlen(SPIFFE);
                if (len > (int) pl && strncmp(v, SPIFFE, pl) == 0 && !memchr(v + pl, '/', (size_t) len - pl))
                        td = strndup(v + pl, (size_t) len - pl);
        }
        GENERAL_NAMES_free(names);
        return td;
}

static int ca_issue(const char *dir, const char *out, const char *host, char **ips, size_t n_ips, long days) {
        _cleanup_free_ char *ca_key_path = NULL, *ca_crt_path = NULL, *td = NULL, *san = NULL, *key_name = NULL,
                            *crt_name = NULL;
        EVP_PKEY *ca_key = NULL, *key = NULL;
        X509 *ca = NULL, *x = NULL;
        FILE *f;
        int r = -EIO;

        if (asprintf(&ca_key_path, "%s/ca.key", dir) < 0 || asprintf(&ca_crt_path, "%s/ca.crt", dir) < 0 ||
            asprintf(&key_name, "%s.key", host) < 0 || asprintf(&crt_name, "%s.crt", host) < 0)
                return -ENOMEM;
        f = fopen(ca_key_path, "re");
        if (f) {
                ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
                fclose(f);
        }
        f = fopen(ca_crt_path, "re");
        if (f) {
                ca = PEM_read_X509(f, NULL, NULL, NULL);
                fclose(f);
        }
        if (!ca_key || !ca) {
                fprintf(stderr, "%s: cannot read the trust root %s and %s (mooringctl ca init makes them)\n",
                        CTL_PROGRAM, ca_crt_path, ca_key_path);
                goto out;
        }
        if (X509_check_private_key(ca, ca_key) != 1) {
                fprintf(stderr, "%s: %s is not the key of %s\n", CTL_PROGRAM, ca_key_path, ca_crt_path);
                goto out;
        }
        td = ca_trust_domain(ca);
        if (!td) {
                fprintf(stderr, "%s: %s names no trust domain (SAN URI spiffe://TD): not made by mooringctl ca "
                        "init?\n", CTL_PROGRAM, ca_crt_path);
                goto out;
        }
        if (asprintf(&san, "DNS:%s,URI:" SPIFFE "%s/mooring/host/%s", host, td, host) < 0) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n_ips; i++) {
                char *n = NULL;
                if (asprintf(&n, "%s,IP:%s", san, ips[i]) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
                free(san);
                san = n;
        }
        r = mkdir_parents(out);
        if (r < 0) {
                fprintf(stderr, "%s: cannot create %s: %s\n", CTL_PROGRAM, out, strerror(-r));
                goto out;
        }
        r = -EIO;
        key = new_key();
        if (!key)
                goto out;
        x = new_cert(key, host, days);
        if (!x || !X509_set_issuer_name(x, X509_get_subject_name(ca)))
                goto out;
        /* Not valid past the root: peers would refuse it then anyway, and the date would mislead. */
        if (ASN1_TIME_compare(X509_get0_notAfter(ca), X509_get0_notAfter(x)) < 0 &&
            !X509_set1_notAfter(x, X509_get0_notAfter(ca)))
                goto out;
        if (add_ext(ca, x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
            add_ext(ca, x, NID_key_usage, "critical,digitalSignature") < 0 ||
            add_ext(ca, x, NID_ext_key_usage, "serverAuth,clientAuth") < 0 ||
            add_ext(ca, x, NID_authority_key_identifier, "keyid:always") < 0 ||
            add_ext(ca, x, NID_subject_alt_name, san) < 0)
                goto out;
        if (!X509_sign(x, ca_key, EVP_sha256())) {
                r = ssl_fail("cannot sign the certificate");
                goto out;
        }
        r = write_pem(out, key_name, key, NULL);
        if (r >= 0)
                r = write_pem(out, crt_name, NULL, x);
out:
        X509_free(x);
        X509_free(ca);
        EVP_PKEY_free(key);
        EVP_PKEY_free(ca_key);
        return r;
}

int ctl_ca_main(int argc, char *argv[]) {
        enum { ARG_DIR = 0x100, ARG_OUT, ARG_TD, ARG_DAYS, ARG_IP };
        static const struct option options[] = {
                { "dir", required_argument, NULL, ARG_DIR },
                { "out", required_argument, NULL, ARG_OUT },
                { "trust-domain", required_argument, NULL, ARG_TD },
                { "days", required_argument, NULL, ARG_DAYS },
                { "ip", required_argument, NULL, ARG_IP },
                {}
        };
        const char *dir = CA_DEFAULT_DIR, *out = NULL, *td = NULL, *days_arg = NULL;
        _cleanup_free_ char **ips = NULL;
        size_t n_ips = 0;
        long days;
        int c;

        /* argv[0] is "ca"; options may come anywhere (getopt moves the rest to the end) */
        optind = 0;
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case ARG_DIR:
                        dir = optarg;
                        break;
                case ARG_OUT:
                        out = optarg;
                        break;
                case ARG_TD:
                        td = optarg;
                        break;
                case ARG_DAYS:
                        days_arg = optarg;
                        break;
                case ARG_IP: {
                        unsigned char buf[16];
                        if (inet_pton(AF_INET, optarg, buf) != 1 && inet_pton(AF_INET6, optarg, buf) != 1) {
                                fprintf(stderr, "%s: invalid --ip '%s': an IPv4 or IPv6 address\n", CTL_PROGRAM,
                                        optarg);
                                return CTL_EXIT_USAGE;
                        }
                        char **n = reallocarray(ips, n_ips + 2, sizeof *ips);
                        if (!n)
                                return 1;
                        ips = n;
                        ips[n_ips++] = optarg;
                        ips[n_ips] = NULL;
                        break;
                }
                default:
                        fprintf(stderr, "Try '%s ca --help' for more information.\n", CTL_PROGRAM);
                        return CTL_EXIT_USAGE;
                }
        }
        const char *const *pos = (const char *const *) argv + optind;
        size_t n_pos = (size_t) (argc - optind);
        if (n_pos == 0) {
                fprintf(stderr, "%s: ca needs init or issue\nTry '%s ca --help' for more information.\n",
                        CTL_PROGRAM, CTL_PROGRAM);
                return CTL_EXIT_USAGE;
        }
        bool init = streq(pos[0], "init");
        if (!init && !streq(pos[0], "issue")) {
                fprintf(stderr, "%s: unknown ca command '%s': init or issue\n", CTL_PROGRAM, pos[0]);
                return CTL_EXIT_USAGE;
        }
        if ((init && n_pos != 1) || (!init && n_pos != 2)) {
                fprintf(stderr, "%s: ca %s %s\n", CTL_PROGRAM, pos[0],
                        init ? "takes no arguments besides options" : "needs one HOST");
                return CTL_EXIT_USAGE;
        }
        if (init && (out || n_ips > 0)) {
                fprintf(stderr, "%s: --out and --ip are for ca issue\n", CTL_PROGRAM);
                return CTL_EXIT_USAGE;
        }
        if (!init && td) {
                fprintf(stderr, "%s: --trust-domain is for ca init: a host's trust domain is its root's\n",
                        CTL_PROGRAM);
                return CTL_EXIT_USAGE;
        }
        days = init ? CA_DEFAULT_DAYS : HOST_DEFAULT_DAYS;
        if (days_arg && parse_days(days_arg, &days) < 0)
                return CTL_EXIT_USAGE;
        if (init) {
                td = td ?: "public";
                if (!trust_domain_ok(td)) {
                        fprintf(stderr, "%s: invalid trust domain '%s': lower-case letters, digits, '.', '-', '_'\n",
                                CTL_PROGRAM, td);
                        return CTL_EXIT_USAGE;
                }
                return ca_init(dir, td, days) < 0 ? 1 : 0;
        }
        if (!host_id_ok(pos[1])) {
                fprintf(stderr, "%s: invalid host id '%s': letters, digits, '-', '.', '_'\n", CTL_PROGRAM, pos[1]);
                return CTL_EXIT_USAGE;
        }
        return ca_issue(dir, out ?: dir, pos[1], ips, n_ips, days) < 0 ? 1 : 0;
}
