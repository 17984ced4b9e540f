/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for the configuration readers: the INI tokenizer (util/ini.c), the
 * value parsers (util/strv.c), daemon settings (core/settings.c), app files
 * (core/app-config.c), ConfError formatting and the unit-name identity check
 * (core/identity.c). Errors are checked for line, field and message, since
 * that is what an operator sees.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/app-config.h"
#include "core/conferr.h"
#include "core/identity.h"
#include "core/settings.h"
#include "util/cleanup.h"
#include "util/ini.h"
#include "util/strv.h"
#include "tests.h"

/* ---- INI tokenizer ---- */

/* Records every assignment as "line:[section]key=value;" so one string compare checks a whole parse. */
typedef struct Collect {
        char buf[8192];
        size_t n;
        unsigned calls;
        unsigned fail_at_call; /* 0: never fail */
        int fail_with;
} Collect;

static int collect(const char *section, const char *key, const char *value, unsigned line, void *userdata,
                   char **reterr_msg) {
        Collect *c = userdata;
        int k;

        c->calls++;
        if (c->fail_at_call == c->calls) {
                if (c->fail_with == -EINVAL)
                        *reterr_msg = strdup("rejected by callback");
                return c->fail_with;
        }
        k = snprintf(c->buf + c->n, sizeof c->buf - c->n, "%u:[%s]%s=%s;", line, section, key, value);
        if (k > 0 && (size_t) k < sizeof c->buf - c->n)
                c->n += (size_t) k;
        return 0;
}

/* Parses a NUL-terminated text; on error the message is kept in *ret_msg (caller frees). */
static int ini_text(const char *text, Collect *c, unsigned *ret_line, char **ret_msg) {
        *ret_line = 0;
        return ini_parse(text, strlen(text), collect, c, ret_line, ret_msg);
}

TEST(ini_basic) {
        Collect c = {};
        unsigned line;
        _cleanup_free_ char *msg = NULL;

        ASSERT_OK(ini_text("[A]\nx=1\n  y = two words  \n\n[B-c_d]\nz=\nkey.with-dots_=v\n", &c, &line, &msg));
        ASSERT_STREQ(c.buf, "2:[A]x=1;3:[A]y=two words;6:[B-c_d]z=;7:[B-c_d]key.with-dots_=v;");
        ASSERT_NULL(msg);
}

TEST(ini_empty) {
        Collect c = {};
        unsigned line;
        _cleanup_free_ char *msg = NULL;

        ASSERT_OK(ini_parse("", 0, collect, &c, &line, &msg));
        ASSERT_EQ(c.calls, 0);
        ASSERT_OK(ini_text("\n\n  \n\t\n", &c, &line, &msg));
        ASSERT_EQ(c.calls, 0);
        /* A section with nothing in it is fine. */
        ASSERT_OK(ini_text("[Empty]\n", &c, &line, &msg));
        ASSERT_EQ(c.calls, 0);
}

TEST(ini_comments) {
        Collect c = {};
        unsigned line;
        _cleanup_free_ char *msg = NULL;

        ASSERT_OK(ini_text("# comment\n; other comment\n  # indented\n[S]\n"
                           "a=1 # trailing\n"
                           "b=x#y\n"      /* '#' not preceded by whitespace is data */
                           "c=#z\n"       /* ... also at the start of the value */
                           "d=v\t# tab\n"
                           "e= # only a comment\n"
                           "f=u ; semicolons are data\n",
                           &c, &line, &msg));
        ASSERT_STREQ(c.buf, "5:[S]a=1;6:[S]b=x#y;7:[S]c=#z;8:[S]d=v;9:[S]e=;10:[S]f=u ; semicolons are data;");
}

TEST(ini_crlf_and_no_final_newline) {
        Collect c = {};
        unsigned line;
        _cleanup_free_ char *msg = NULL;

        ASSERT_OK(ini_text("[S]\r\na=1\r\nb=2", &c, &line, &msg));
        ASSERT_STREQ(c.buf, "2:[S]a=1;3:[S]b=2;");
}

TEST(ini_not_nul_terminated) {
        Collect c = {};
        unsigned line;
        _cleanup_free_ char *msg = NULL;
        const char text[] = "[S]\na=123XYZ";

        /* Only len bytes count; the value must end at "123". */
        ASSERT_OK(ini_parse(text, strlen("[S]\na=123"), collect, &c, &line, &msg));
        ASSERT_STREQ(c.buf, "2:[S]a=123;");
}

TEST(ini_section_switch) {
        Collect c = {};
        unsigned line;
        _cleanup_free_ char *msg = NULL;

        ASSERT_OK(ini_text("[A]\nk=1\n[B]\nk=2\n[A]\nk=3\n", &c, &line, &msg));
        ASSERT_STREQ(c.buf, "2:[A]k=1;4:[B]k=2;6:[A]k=3;");
}

/* Expects text to fail with -EINVAL at line, with a message containing needle. */
static void expect_ini_error(const char *text, size_t len, unsigned line, const char *needle) {
        Collect c = {};
        unsigned l = 0;
        _cleanup_free_ char *msg = NULL;

        ASSERT_ERROR(ini_parse(text, len, collect, &c, &l, &msg), EINVAL);
        ASSERT_EQ(l, line);
        ASSERT_NOT_NULL(msg);
        if (!strstr(msg, needle)) {
                fprintf(stderr, "message \"%s\" does not contain \"%s\"\n", msg, needle);
                ASSERT_TRUE(false);
        }
}

TEST(ini_key_outside_section) {
        expect_ini_error("a=1\n", 4, 1, "outside");
        expect_ini_error("# c\n\nkey = v\n[S]\n", 16, 3, "outside");
}

TEST(ini_missing_equals) {
        const char *t = "[S]\na=1\n\njust words\n";
        expect_ini_error(t, strlen(t), 4, "Key=Value");
}

TEST(ini_bad_section_header) {
        const char *t;

        expect_ini_error("[S\n", 3, 1, "section header");
        expect_ini_error("[]\n", 3, 1, "section header");
        t = "[S]\na=1\n[S]x\n";
        expect_ini_error(t, strlen(t), 3, "section header");
        expect_ini_error("[a b]\n", 6, 1, "invalid character");
        expect_ini_error("[a]]\n", 5, 1, "invalid character");
        expect_ini_error("[a.b]\n", 6, 1, "invalid character");

        /* 127 characters fit the section buffer, 128 do not. */
        char buf[200];
        memset(buf, 'x', sizeof buf);
        buf[0] = '[';
        buf[128] = ']';
        buf[129] = '\n';
        Collect c = {};
        unsigned l;
        _cleanup_free_ char *msg = NULL;
        ASSERT_OK(ini_parse(buf, 130, collect, &c, &l, &msg));
        buf[128] = 'x';
        buf[129] = ']';
        buf[130] = '\n';
        expect_ini_error(buf, 131, 1, "too long");
}

TEST(ini_bad_key) {
        expect_ini_error("[S]\n=v\n", 7, 2, "empty key");
        expect_ini_error("[S]\n  = v\n", 10, 2, "empty key");
        expect_ini_error("[S]\na b=v\n", 10, 2, "invalid character");
        expect_ini_error("[S]\nk\xc3\xa4=v\n", 10, 2, "invalid character");
}

TEST(ini_nul_byte) {
        static const char text[] = "[S]\na=1\nb=x\0y\nc=3\n";

        expect_ini_error(text, sizeof text - 1, 3, "NUL");
        /* A NUL in a comment line is still a NUL. */
        static const char text2[] = "[S]\n# \0\n";
        expect_ini_error(text2, sizeof text2 - 1, 2, "NUL");
}

TEST(ini_long_line) {
        const size_t max = 4096; /* INI_LINE_MAX: longest line is max - 1 bytes */
        _cleanup_free_ char *t = malloc(max + 64);
        Collect c = {};
        unsigned l;
        _cleanup_free_ char *msg = NULL;

        ASSERT_NOT_NULL(t);
        strcpy(t, "[S]\nk=");
        size_t off = strlen(t);
        memset(t + off, 'v', max - 1 - 2);
        t[4 + max - 1] = '\n';
        ASSERT_OK(ini_parse(t, 4 + max, collect, &c, &l, &msg));
        ASSERT_EQ(c.calls, 1);

        memset(t + off, 'v', max - 2);
        t[4 + max] = '\n';
        expect_ini_error(t, 4 + max + 1, 2, "too long");

        /* A long comment line is refused too: the limit is per line. */
        memset(t, '#', max + 10);
        expect_ini_error(t, max + 10, 1, "too long");
}

TEST(ini_callback_error) {
        Collect c = { .fail_at_call = 2, .fail_with = -EINVAL };
        unsigned l;
        _cleanup_free_ char *msg = NULL;

        ASSERT_ERROR(ini_text("[S]\na=1\n\nb=2\nc=3\n", &c, &l, &msg), EINVAL);
        ASSERT_EQ(l, 4);
        ASSERT_STREQ(msg, "rejected by callback");
        ASSERT_EQ(c.calls, 2); /* stopped at the failure */

        Collect c2 = { .fail_at_call = 1, .fail_with = -ENOMEM };
        _cleanup_free_ char *msg2 = NULL;
        ASSERT_ERROR(ini_text("[S]\na=1\n", &c2, &l, &msg2), ENOMEM);
        ASSERT_NULL(msg2);
}

/* ---- value parsers ---- */

TEST(parse_size_values) {
        uint64_t v;

        ASSERT_OK(parse_size("0", &v));
        ASSERT_EQ(v, 0);
        ASSERT_OK(parse_size("4194304", &v));
        ASSERT_EQ(v, 4194304);
        ASSERT_OK(parse_size("4M", &v));
        ASSERT_EQ(v, 4ULL << 20);
        ASSERT_OK(parse_size("4MiB", &v));
        ASSERT_EQ(v, 4ULL << 20);
        ASSERT_OK(parse_size("512K", &v));
        ASSERT_EQ(v, 512ULL << 10);
        ASSERT_OK(parse_size("512KiB", &v));
        ASSERT_EQ(v, 512ULL << 10);
        ASSERT_OK(parse_size("1G", &v));
        ASSERT_EQ(v, 1ULL << 30);
        ASSERT_OK(parse_size("3GiB", &v));
        ASSERT_EQ(v, 3ULL << 30);
        ASSERT_OK(parse_size("100B", &v));
        ASSERT_EQ(v, 100);
        ASSERT_OK(parse_size("18446744073709551615", &v));
        ASSERT_TRUE(v == UINT64_MAX);
}

TEST(parse_size_errors) {
        uint64_t v = 42;

        ASSERT_ERROR(parse_size("18446744073709551616", &v), ERANGE);
        ASSERT_ERROR(parse_size("17179869184G", &v), ERANGE); /* 2^64 */
        ASSERT_ERROR(parse_size("17592186044416M", &v), ERANGE);
        ASSERT_ERROR(parse_size("", &v), EINVAL);
        ASSERT_ERROR(parse_size("M", &v), EINVAL);
        ASSERT_ERROR(parse_size("4X", &v), EINVAL);
        ASSERT_ERROR(parse_size("4m", &v), EINVAL);
        ASSERT_ERROR(parse_size("4 M", &v), EINVAL);
        ASSERT_ERROR(parse_size(" 4M", &v), EINVAL);
        ASSERT_ERROR(parse_size("-1", &v), EINVAL);
        ASSERT_ERROR(parse_size("+1", &v), EINVAL);
        ASSERT_ERROR(parse_size("1.5M", &v), EINVAL);
        ASSERT_ERROR(parse_size("4MiBx", &v), EINVAL);
        ASSERT_EQ(v, 42); /* untouched on failure */
}

TEST(parse_duration_values) {
        uint64_t v;

        ASSERT_OK(parse_duration_usec("10", &v));
        ASSERT_EQ(v, 10000000);
        ASSERT_OK(parse_duration_usec("0", &v));
        ASSERT_EQ(v, 0);
        ASSERT_OK(parse_duration_usec("10s", &v));
        ASSERT_EQ(v, 10000000);
        ASSERT_OK(parse_duration_usec("500ms", &v));
        ASSERT_EQ(v, 500000);
        ASSERT_OK(parse_duration_usec("1m30s", &v));
        ASSERT_EQ(v, 90000000);
        ASSERT_OK(parse_duration_usec("2h", &v));
        ASSERT_EQ(v, 7200000000ULL);
        ASSERT_OK(parse_duration_usec("1h2m3s4ms5us", &v));
        ASSERT_EQ(v, 3723004005ULL);
        ASSERT_OK(parse_duration_usec("1m", &v));
        ASSERT_EQ(v, 60000000);
        ASSERT_OK(parse_duration_usec("250us", &v));
        ASSERT_EQ(v, 250);
}

TEST(parse_duration_errors) {
        uint64_t v = 42;

        ASSERT_ERROR(parse_duration_usec("", &v), EINVAL);
        ASSERT_ERROR(parse_duration_usec("s", &v), EINVAL);
        ASSERT_ERROR(parse_duration_usec("abc", &v), EINVAL);
        ASSERT_ERROR(parse_duration_usec("10x", &v), EINVAL);
        ASSERT_ERROR(parse_duration_usec("10S", &v), EINVAL);
        ASSERT_ERROR(parse_duration_usec("10 s", &v), EINVAL);
        ASSERT_ERROR(parse_duration_usec("-5s", &v), EINVAL);
        ASSERT_ERROR(parse_duration_usec("1m30", &v), EINVAL); /* bare number only on its own */
        ASSERT_ERROR(parse_duration_usec("1.5s", &v), EINVAL);
        ASSERT_ERROR(parse_duration_usec("18446744073709551616", &v), ERANGE);
        ASSERT_ERROR(parse_duration_usec("18446744073709551615", &v), ERANGE); /* * 1e6 overflows */
        ASSERT_ERROR(parse_duration_usec("5124095577h", &v), ERANGE);
        ASSERT_ERROR(parse_duration_usec("18446744073709551615us1us", &v), ERANGE);
        ASSERT_EQ(v, 42);
}

TEST(parse_port_values) {
        uint16_t p = 7;

        ASSERT_OK(parse_port("1", &p));
        ASSERT_EQ(p, 1);
        ASSERT_OK(parse_port("3000", &p));
        ASSERT_EQ(p, 3000);
        ASSERT_OK(parse_port("65535", &p));
        ASSERT_EQ(p, 65535);
        ASSERT_TRUE(parse_port("0", &p) < 0);
        ASSERT_TRUE(parse_port("65536", &p) < 0);
        ASSERT_TRUE(parse_port("99999999999999999999999", &p) < 0);
        ASSERT_TRUE(parse_port("", &p) < 0);
        ASSERT_TRUE(parse_port("-1", &p) < 0);
        ASSERT_TRUE(parse_port("80x", &p) < 0);
        ASSERT_TRUE(parse_port(" 80", &p) < 0);
        ASSERT_TRUE(parse_port("http", &p) < 0);
        ASSERT_EQ(p, 65535);
}

TEST(parse_boolean_values) {
        static const char *const yes[] = { "1", "yes", "YES", "y", "true", "True", "t", "on", "ON" };
        static const char *const no[] = { "0", "no", "No", "n", "false", "FALSE", "f", "off" };
        static const char *const bad[] = { "", "2", "yess", "nope", " yes", "enable", "-1" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                ASSERT_EQ(parse_boolean(yes[i]), 1);
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                ASSERT_EQ(parse_boolean(no[i]), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ASSERT_ERROR(parse_boolean(bad[i]), EINVAL);
}

TEST(name_is_valid_values) {
        char buf[80];

        ASSERT_TRUE(name_is_valid("a"));
        ASSERT_TRUE(name_is_valid("0"));
        ASSERT_TRUE(name_is_valid("my-app_1.v2"));
        ASSERT_TRUE(name_is_valid("Order-Service"));
        ASSERT_TRUE(!name_is_valid(NULL));
        ASSERT_TRUE(!name_is_valid(""));
        ASSERT_TRUE(!name_is_valid("-app"));
        ASSERT_TRUE(!name_is_valid(".app"));
        ASSERT_TRUE(!name_is_valid("_app"));
        ASSERT_TRUE(!name_is_valid("my app"));
        ASSERT_TRUE(!name_is_valid("a/b"));
        ASSERT_TRUE(!name_is_valid("a@b"));
        ASSERT_TRUE(!name_is_valid("caf\xc3\xa9"));

        memset(buf, 'a', sizeof buf);
        buf[63] = 0;
        ASSERT_TRUE(name_is_valid(buf)); /* 63 characters */
        buf[63] = 'a';
        buf[64] = 0;
        ASSERT_TRUE(!name_is_valid(buf)); /* 64 */
}

TEST(strv_helpers) {
        _cleanup_strv_free_ char **l = NULL, **copy = NULL;

        ASSERT_EQ(strv_length(NULL), 0);
        ASSERT_OK(strv_extend(&l, "a"));
        ASSERT_OK(strv_extend(&l, "b"));
        ASSERT_EQ(strv_length(l), 2);
        ASSERT_TRUE(strv_contains(l, "b"));
        ASSERT_TRUE(!strv_contains(l, "c"));
        ASSERT_OK(strv_copy(l, &copy));
        ASSERT_TRUE(strv_equal(l, copy));
        ASSERT_OK(strv_extend(&copy, "c"));
        ASSERT_TRUE(!strv_equal(l, copy));
        ASSERT_TRUE(strv_equal(NULL, NULL));

        char s[] = " \t x y \n";
        ASSERT_STREQ(strstrip(s), "x y");
        ASSERT_TRUE(endswith("a.conf", ".conf"));
        ASSERT_TRUE(!endswith("conf", ".conf"));
        ASSERT_STREQ(startswith_ptr("unix:/x", "unix:"), "/x");
        ASSERT_NULL(startswith_ptr("http://", "unix:"));
}

/* ---- settings ---- */

TEST(settings_defaults) {
        Settings s;
        ConfError e = {};

        settings_init(&s);
        ASSERT_NULL(s.api_socket);
        ASSERT_EQ(s.max_request_body, SETTINGS_DEFAULT_MAX_BODY);
        ASSERT_EQ(s.drain_usec, SETTINGS_DEFAULT_DRAIN_USEC);
        ASSERT_EQ(s.log_level, -1);

        /* An empty or comment-only file gives the defaults. */
        ASSERT_OK(settings_parse(&s, "mooringd.conf", "# nothing\n[Daemon]\n", 19, &e));
        ASSERT_NULL(s.api_socket);
        ASSERT_EQ(s.max_request_body, SETTINGS_DEFAULT_MAX_BODY);
        ASSERT_EQ(s.drain_usec, SETTINGS_DEFAULT_DRAIN_USEC);
        ASSERT_EQ(s.log_level, -1);
        ASSERT_NULL(e.message);
        settings_done(&s);
}

static int settings_text(Settings *s, const char *text, ConfError *e) {
        return settings_parse(s, "mooringd.conf", text, strlen(text), e);
}

TEST(settings_every_key) {
        Settings s;
        ConfError e = {};

        settings_init(&s);
        ASSERT_OK(settings_text(&s,
                                "[Daemon]\n"
                                "ApiSocket=api.sock\n"
                                "MaxRequestBodySize=8M\n"
                                "DrainTimeoutSec=1m30s\n"
                                "LogLevel=debug\n",
                                &e));
        ASSERT_STREQ(s.api_socket, "api.sock");
        ASSERT_EQ(s.max_request_body, 8ULL << 20);
        ASSERT_EQ(s.drain_usec, 90000000);
        ASSERT_EQ(s.log_level, 7);

        ASSERT_OK(settings_text(&s, "[Daemon]\nApiSocket=/run/x/api.sock\nDrainTimeoutSec=3\nLogLevel=warn\n",
                                &e));
        ASSERT_STREQ(s.api_socket, "/run/x/api.sock");
        ASSERT_EQ(s.drain_usec, 3000000);
        ASSERT_EQ(s.log_level, 4);
        /* Keys not in the new file fall back to defaults: a reload is a fresh parse. */
        ASSERT_EQ(s.max_request_body, SETTINGS_DEFAULT_MAX_BODY);

        static const struct {
                const char *name;
                int level;
        } levels[] = { { "err", 3 }, { "error", 3 }, { "warning", 4 }, { "notice", 5 }, { "info", 6 } };
        for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
                char buf[64];
                snprintf(buf, sizeof buf, "[Daemon]\nLogLevel=%s\n", levels[i].name);
                ASSERT_OK(settings_text(&s, buf, &e));
                ASSERT_EQ(s.log_level, levels[i].level);
        }

        /* The last assignment wins. */
        ASSERT_OK(settings_text(&s, "[Daemon]\nMaxRequestBodySize=1K\nMaxRequestBodySize=2K\n", &e));
        ASSERT_EQ(s.max_request_body, 2048);
        settings_done(&s);
}

/* Expects text to be rejected at line with field (NULL: no field) and a message containing needle. */
static void expect_settings_error(const char *text, unsigned line, const char *field, const char *needle) {
        Settings s;
        ConfError e = {};

        settings_init(&s);
        ASSERT_ERROR(settings_text(&s, text, &e), EINVAL);
        ASSERT_STREQ(e.file, "mooringd.conf");
        ASSERT_EQ(e.line, line);
        if (field)
                ASSERT_STREQ(e.field, field);
        else
                ASSERT_NULL(e.field);
        ASSERT_NOT_NULL(e.message);
        if (!strstr(e.message, needle)) {
                fprintf(stderr, "message \"%s\" does not contain \"%s\"\n", e.message, needle);
                ASSERT_TRUE(false);
        }
        conf_error_done(&e);
        settings_done(&s);
}

TEST(settings_unknown_key) {
        expect_settings_error("[Daemon]\nApiSocket=a\n\nBogus=1\n", 4, "Bogus", "unknown key");
}

TEST(settings_wrong_section) {
        expect_settings_error("[Other]\nApiSocket=a\n", 2, NULL, "[Daemon] or [Cluster]");
        expect_settings_error("[Daemon]\nLogLevel=info\n[App]\nHttpPort=1\n", 4, NULL, "[Daemon]");
}

TEST(settings_bad_values) {
        char longpath[128];

        expect_settings_error("[Daemon]\nMaxRequestBodySize=0\n", 2, "MaxRequestBodySize", "size");
        expect_settings_error("[Daemon]\nMaxRequestBodySize=4X\n", 2, "MaxRequestBodySize", "size");
        expect_settings_error("[Daemon]\nMaxRequestBodySize=\n", 2, "MaxRequestBodySize", "size");
        expect_settings_error("[Daemon]\nMaxRequestBodySize=99999999999G\n", 2, "MaxRequestBodySize", "size");
        expect_settings_error("[Daemon]\nDrainTimeoutSec=soon\n", 2, "DrainTimeoutSec", "duration");
        expect_settings_error("[Daemon]\nDrainTimeoutSec=\n", 2, "DrainTimeoutSec", "duration");
        expect_settings_error("[Daemon]\nLogLevel=loud\n", 2, "LogLevel", "debug");
        expect_settings_error("[Daemon]\nLogLevel=7\n", 2, "LogLevel", "debug");
        expect_settings_error("[Daemon]\nApiSocket=\n", 2, "ApiSocket", "empty");

        /* A path of 100 bytes is refused; 99 is the limit. */
        snprintf(longpath, sizeof longpath, "[Daemon]\nApiSocket=/%0*d\n", 99, 0);
        expect_settings_error(longpath, 2, "ApiSocket", "99");

        /* Tokenizer errors carry the line but no field. */
        expect_settings_error("[Daemon]\nLogLevel info\n", 2, NULL, "Key=Value");
        expect_settings_error("LogLevel=info\n", 1, NULL, "outside");
}

TEST(settings_cluster) {
        Settings s;
        ConfError e = {};

        settings_init(&s);
        ASSERT_EQ(s.cluster.membership, CLUSTER_MEMBERSHIP_NONE);
        ASSERT_EQ(s.cluster.lease_usec, SETTINGS_DEFAULT_LEASE_USEC);
        ASSERT_OK(settings_text(&s,
                                "[Daemon]\nLogLevel=info\n"
                                "[Cluster]\n"
                                "HostId=host-1.lan\n"
                                "PeerListen=0.0.0.0:3510\n"
                                "PeerAddress=[fd00::1]:3510\n"
                                "Membership=postgresql\n"
                                "MembershipConnection=host=10.0.0.9 dbname=mooring\n"
                                "LeaseSec=3s\n"
                                "TrustDomain=example.org\n"
                                "CertificateFile=/etc/mooring/pki/host.crt\n"
                                "KeyFile=/etc/mooring/pki/host.key\n"
                                "TrustRootFile=/etc/mooring/pki/ca.crt\n",
                                &e));
        ASSERT_STREQ(s.cluster.host_id, "host-1.lan");
        ASSERT_STREQ(s.cluster.listen, "0.0.0.0:3510");
        ASSERT_STREQ(s.cluster.advertise, "[fd00::1]:3510");
        ASSERT_EQ(s.cluster.membership, CLUSTER_MEMBERSHIP_POSTGRESQL);
        ASSERT_STREQ(s.cluster.membership_connection, "host=10.0.0.9 dbname=mooring");
        ASSERT_EQ(s.cluster.lease_usec, 3000000);
        ASSERT_STREQ(s.cluster.trust_domain, "example.org");
        ASSERT_STREQ(s.cluster.trust_root_file, "/etc/mooring/pki/ca.crt");
        ASSERT_EQ(s.log_level, 6);

        /* Static peers: a list, extended by further lines; PeerListen= alone means static. */
        ASSERT_OK(settings_text(&s,
                                "[Cluster]\nPeerListen=10.0.0.1:3510\nPeers=b=10.0.0.2:3510  c=[fd00::3]:1\n"
                                "Peers=d=10.0.0.4:9\n",
                                &e));
        ASSERT_EQ(s.cluster.membership, CLUSTER_MEMBERSHIP_STATIC);
        ASSERT_EQ(strv_length(s.cluster.peers), 3u);
        ASSERT_STREQ(s.cluster.peers[1], "c=[fd00::3]:1");
        ASSERT_NULL(s.cluster.host_id);
        ASSERT_EQ(s.cluster.lease_usec, SETTINGS_DEFAULT_LEASE_USEC);

        /* PeerListen= with neither Membership= nor Peers=: left to config.yaml's spec.nameResolution */
        ASSERT_OK(settings_text(&s, "[Cluster]\nPeerListen=10.0.0.1:3510\n", &e));
        ASSERT_EQ(s.cluster.membership, CLUSTER_MEMBERSHIP_NONE);
        ASSERT_STREQ(s.cluster.listen, "10.0.0.1:3510");

        char *a = NULL;
        uint16_t port = 0;
        ASSERT_OK(cluster_parse_address("[fd00::3]:1", &a, &port));
        ASSERT_STREQ(a, "fd00::3");
        ASSERT_EQ(port, 1);
        free(a);
        ASSERT_ERROR(cluster_parse_address("fd00::3:1", &a, &port), EINVAL);
        ASSERT_ERROR(cluster_parse_address("10.0.0.1:0", &a, &port), EINVAL);
        ASSERT_ERROR(cluster_parse_address("10.0.0.1", &a, &port), EINVAL);
        settings_done(&s);

        expect_settings_error("[Cluster]\nHostId=Host_1\n", 2, "HostId", "host name");
        expect_settings_error("[Cluster]\nPeerListen=10.0.0.1\n", 2, "PeerListen", "ADDRESS:PORT");
        expect_settings_error("[Cluster]\nPeerListen=10.0.0.1:1\nPeerAddress=0.0.0.0:1\nPeers=a=1.2.3.4:5\n", 3,
                              "PeerAddress", "wildcard");
        expect_settings_error("[Cluster]\nPeerListen=10.0.0.1:1\nMembership=consul\n", 3, "Membership", "static");
        expect_settings_error("[Cluster]\nPeerListen=10.0.0.1:1\nPeers=b\n", 3, "Peers", "ID=ADDRESS:PORT");
        expect_settings_error("[Cluster]\nPeerListen=10.0.0.1:1\nLeaseSec=0\n", 3, "LeaseSec", "1s");
        expect_settings_error("[Cluster]\nPeerListen=10.0.0.1:1\nKeyFile=key.pem\n", 3, "KeyFile", "absolute");
        /* What only the whole section tells: the section's first line, the field named. */
        expect_settings_error("[Cluster]\nMembership=redis\n", 2, "PeerListen", "PeerListen=");
        expect_settings_error("[Cluster]\nPeerListen=10.0.0.1:1\nMembership=redis\n", 2, "MembershipConnection",
                              "MembershipConnection=");
        expect_settings_error("[Cluster]\nPeerListen=[::]:1\nMembership=mdns\n", 2, "PeerAddress", "wildcard");
}

TEST(settings_failure_keeps_previous) {
        Settings s;
        ConfError e = {};

        settings_init(&s);
        ASSERT_OK(settings_text(&s, "[Daemon]\nApiSocket=old.sock\nMaxRequestBodySize=1M\nLogLevel=notice\n",
                                &e));
        const char *old_socket = s.api_socket;

        /* The first keys of the bad file are good; none of them may leak into s. */
        ASSERT_ERROR(settings_text(&s,
                                   "[Daemon]\nApiSocket=new.sock\nMaxRequestBodySize=2M\nLogLevel=debug\n"
                                   "DrainTimeoutSec=never\n",
                                   &e),
                     EINVAL);
        ASSERT_EQ(e.line, 5);
        ASSERT_STREQ(e.field, "DrainTimeoutSec");
        ASSERT_TRUE(s.api_socket == old_socket);
        ASSERT_STREQ(s.api_socket, "old.sock");
        ASSERT_EQ(s.max_request_body, 1ULL << 20);
        ASSERT_EQ(s.log_level, 5);
        ASSERT_EQ(s.drain_usec, SETTINGS_DEFAULT_DRAIN_USEC);

        /* A later good parse clears the old error's relevance but err is only written on failure. */
        conf_error_done(&e);
        settings_done(&s);
}

/* Makes a private temp dir; the caller removes it with rm_rf_dir(). */
static char *make_tmpdir(void) {
        char *d = strdup("/tmp/test-config-XXXXXX");
        if (d && !mkdtemp(d)) {
                free(d);
                return NULL;
        }
        return d;
}

static char *write_file(const char *dir, const char *name, const char *text) {
        char *p = NULL;
        FILE *f;

        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return NULL;
        f = fopen(p, "we");
        if (!f) {
                free(p);
                return NULL;
        }
        fputs(text, f);
        fclose(f);
        return p;
}

/* Removes the files a test created (given by name) and the directory. */
static void cleanup_dir(const char *dir, const char *const *names, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char *p = NULL;
                if (asprintf(&p, "%s/%s", dir, names[i]) >= 0) {
                        (void) unlink(p);
                        free(p);
                }
        }
        (void) rmdir(dir);
}

TEST(settings_load_file) {
        static const char *const names[] = { "mooringd.conf" };
        _cleanup_free_ char *dir = make_tmpdir(), *path = NULL, *missing = NULL;
        Settings s;
        ConfError e = {};

        ASSERT_NOT_NULL(dir);
        settings_init(&s);
        ASSERT_TRUE(asprintf(&missing, "%s/nonexistent.conf", dir) > 0);
        ASSERT_EQ(settings_load(&s, missing, &e), 0);
        ASSERT_EQ(s.max_request_body, SETTINGS_DEFAULT_MAX_BODY);

        path = write_file(dir, "mooringd.conf", "[Daemon]\nMaxRequestBodySize=16M\n");
        ASSERT_NOT_NULL(path);
        ASSERT_OK(settings_load(&s, path, &e));
        ASSERT_EQ(s.max_request_body, 16ULL << 20);

        cleanup_dir(dir, names, ELEMENTSOF(names));
        settings_done(&s);
}

/* ---- ConfError ---- */

TEST(conf_error_format_forms) {
        ConfError e = {};
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;

        ASSERT_ERROR(conf_error_set(&e, "apps.d/x.conf", 3, "HttpPort", "expected %s", "a port"), EINVAL);
        a = conf_error_format(&e);
        ASSERT_STREQ(a, "apps.d/x.conf:3: field 'HttpPort': expected a port");

        conf_error_set(&e, "f.yaml", 0, NULL, "cannot read");
        b = conf_error_format(&e);
        ASSERT_STREQ(b, "f.yaml: cannot read");

        conf_error_set(&e, NULL, 0, "ApiToken", "bad");
        c = conf_error_format(&e);
        ASSERT_STREQ(c, "field 'ApiToken': bad");

        conf_error_done(&e);
        ASSERT_NULL(e.message);
        d = conf_error_format(&e);
        ASSERT_STREQ(d, "invalid configuration");
        ASSERT_ERROR(conf_error_set(NULL, "x", 1, NULL, "y"), EINVAL);
}

/* ---- app files ---- */

static int app_text(const char *id, const char *text, AppConfig **ret, ConfError *e) {
        return app_config_parse(id, "apps.d/test.conf", text, strlen(text), ret, e);
}

TEST(app_config_every_key) {
        _cleanup_(app_config_freep) AppConfig *c = NULL;
        ConfError e = {};

        ASSERT_OK(app_text("orders",
                           "# the orders service\n"
                           "[App]\n"
                           "AppAddress=http://127.0.0.1:3000\n"
                           "HttpPort=3500\n"
                           "ApiToken=s3cr3t-T0ken!\n"
                           "Exec=/usr/bin/orders --port 3000 # not a comment? yes it is\n"
                           "HealthCheckPath=/healthz\n"
                           "HealthProbeInterval=10s\n",
                           &c, &e));
        ASSERT_STREQ(c->id, "orders");
        ASSERT_STREQ(c->file, "apps.d/test.conf");
        ASSERT_STREQ(c->app_address, "http://127.0.0.1:3000");
        ASSERT_EQ(c->address_kind, APP_ADDRESS_HTTP);
        ASSERT_STREQ(c->address_host, "127.0.0.1");
        ASSERT_EQ(c->address_port, 3000);
        ASSERT_EQ(c->http_port, 3500);
        ASSERT_STREQ(c->api_token, "s3cr3t-T0ken!");
        ASSERT_STREQ(c->exec, "/usr/bin/orders --port 3000");
        ASSERT_STREQ(c->health_check_path, "/healthz");
        ASSERT_EQ(c->health_probe_interval_usec, 10000000);
        ASSERT_NULL(e.message);
}

TEST(app_config_defaults) {
        _cleanup_(app_config_freep) AppConfig *c = NULL;
        ConfError e = {};

        ASSERT_OK(app_config_parse("a", NULL, "", 0, &c, &e));
        ASSERT_STREQ(c->id, "a");
        ASSERT_NULL(c->file);
        ASSERT_NULL(c->app_address);
        ASSERT_NULL(c->address_host);
        ASSERT_EQ(c->address_kind, APP_ADDRESS_NONE);
        ASSERT_EQ(c->http_port, 0);
        ASSERT_NULL(c->api_token);
        ASSERT_NULL(c->exec);
        ASSERT_NULL(c->health_check_path);
        ASSERT_EQ(c->health_probe_interval_usec, APP_CONFIG_DEFAULT_PROBE_INTERVAL);
}

TEST(app_config_address_forms) {
        static const struct {
                const char *value;
                AppAddressKind kind;
                const char *host;
                uint16_t port;
        } cases[] = {
                { "http://127.0.0.1:3000", APP_ADDRESS_HTTP, "127.0.0.1", 3000 },
                { "http://[::1]:3000", APP_ADDRESS_HTTP, "::1", 3000 },
                { "http://host:3000/", APP_ADDRESS_HTTP, "host", 3000 },
                { "http://app.example:65535", APP_ADDRESS_HTTP, "app.example", 65535 },
                { "unix:/run/app.sock", APP_ADDRESS_UNIX, "/run/app.sock", 0 },
                { "unix:///run/app.sock", APP_ADDRESS_UNIX, "/run/app.sock", 0 },
                { "3000", APP_ADDRESS_HTTP, "127.0.0.1", 3000 },
                { "1", APP_ADDRESS_HTTP, "127.0.0.1", 1 },
                { "", APP_ADDRESS_NONE, NULL, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(app_config_freep) AppConfig *c = NULL;
                ConfError e = {};
                char text[256];

                snprintf(text, sizeof text, "[App]\nAppAddress=%s\n", cases[i].value);
                fprintf(stderr, "AppAddress=%s\n", cases[i].value);
                ASSERT_OK(app_text("a", text, &c, &e));
                ASSERT_EQ(c->address_kind, cases[i].kind);
                if (cases[i].host) {
                        ASSERT_STREQ(c->address_host, cases[i].host);
                        ASSERT_STREQ(c->app_address, cases[i].value);
                } else {
                        ASSERT_NULL(c->address_host);
                        ASSERT_NULL(c->app_address);
                }
                ASSERT_EQ(c->address_port, cases[i].port);
        }
}

TEST(app_config_address_reset) {
        _cleanup_(app_config_freep) AppConfig *c = NULL, *d = NULL;
        ConfError e = {};

        /* The last assignment wins, including switching kinds and back to none. */
        ASSERT_OK(app_text("a", "[App]\nAppAddress=http://h:1\nAppAddress=unix:/s\n", &c, &e));
        ASSERT_EQ(c->address_kind, APP_ADDRESS_UNIX);
        ASSERT_STREQ(c->address_host, "/s");
        ASSERT_EQ(c->address_port, 0);
        ASSERT_OK(app_text("a", "[App]\nAppAddress=unix:/s\nAppAddress=\n", &d, &e));
        ASSERT_EQ(d->address_kind, APP_ADDRESS_NONE);
        ASSERT_NULL(d->app_address);
        ASSERT_NULL(d->address_host);
}

/* Expects one "[App]\nkey=value\n" to be rejected at line 2 for field key. */
static void expect_app_error(const char *key, const char *value, const char *needle) {
        _cleanup_(app_config_freep) AppConfig *c = NULL;
        ConfError e = {};
        char text[2048];

        snprintf(text, sizeof text, "[App]\n%s=%s\n", key, value);
        fprintf(stderr, "%s=%s\n", key, value);
        ASSERT_ERROR(app_text("a", text, &c, &e), EINVAL);
        ASSERT_NULL(c);
        ASSERT_STREQ(e.file, "apps.d/test.conf");
        ASSERT_EQ(e.line, 2);
        ASSERT_STREQ(e.field, key);
        ASSERT_NOT_NULL(e.message);
        if (needle && !strstr(e.message, needle)) {
                fprintf(stderr, "message \"%s\" does not contain \"%s\"\n", e.message, needle);
                ASSERT_TRUE(false);
        }
        conf_error_done(&e);
}

TEST(app_config_address_bad) {
        static const char *const bad[] = {
                "http://",
                "http://host",
                "http://host:",
                "http://:3000",
                "http://host:0",
                "http://host:65536",
                "http://host:3000/path",
                "http://host:3000//",
                "http://host:http",
                "http://[::1]",
                "http://[::1]3000",
                "http://[::1:3000",
                "http://user@host:3000",
                "http://a b:3000",
                "http://h/x:3000",
                "https://host:3000",
                "ftp://host:21",
                "HTTP://host:3000",
                "host:3000",
                "unix:",
                "unix:relative.sock",
                "unix://relative.sock",
                "0",
                "65536",
                "-1",
                "localhost",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                expect_app_error("AppAddress", bad[i], NULL);

        /* sun_path holds 107 bytes plus the NUL. */
        char v[200] = "unix:/";
        memset(v + 6, 's', 106);
        v[112] = 0;
        _cleanup_(app_config_freep) AppConfig *c = NULL;
        ConfError e = {};
        char text[256];
        snprintf(text, sizeof text, "[App]\nAppAddress=%s\n", v);
        ASSERT_OK(app_text("a", text, &c, &e));
        ASSERT_EQ(strlen(c->address_host), 107);
        v[112] = 's';
        v[113] = 0;
        expect_app_error("AppAddress", v, "107");
}

TEST(app_config_address_empty_ipv6_host) {
        /* "[]" names no host at all; it must be refused like "http://:3000". */
        expect_app_error("AppAddress", "http://[]:3000", NULL);
}

TEST(app_config_http_port) {
        _cleanup_(app_config_freep) AppConfig *a = NULL, *b = NULL, *c = NULL;
        ConfError e = {};

        ASSERT_OK(app_text("a", "[App]\nHttpPort=1\n", &a, &e));
        ASSERT_EQ(a->http_port, 1);
        ASSERT_OK(app_text("a", "[App]\nHttpPort=65535\n", &b, &e));
        ASSERT_EQ(b->http_port, 65535);
        ASSERT_OK(app_text("a", "[App]\nHttpPort=8080\nHttpPort=\n", &c, &e));
        ASSERT_EQ(c->http_port, 0);
        expect_app_error("HttpPort", "0", "1-65535");
        expect_app_error("HttpPort", "65536", "1-65535");
        expect_app_error("HttpPort", "-1", "1-65535");
        expect_app_error("HttpPort", "http", "1-65535");
        expect_app_error("HttpPort", "80 81", "1-65535");
}

TEST(app_config_api_token) {
        _cleanup_(app_config_freep) AppConfig *a = NULL, *b = NULL;
        ConfError e = {};
        char tok[1100], text[1200];

        expect_app_error("ApiToken", "with space", "without spaces");
        expect_app_error("ApiToken", "tab\there", "without spaces");
        expect_app_error("ApiToken", "caf\xc3\xa9", "printable ASCII");
        expect_app_error("ApiToken", "del\x7f", "printable ASCII");

        memset(tok, 'T', 1024);
        tok[1024] = 0;
        snprintf(text, sizeof text, "[App]\nApiToken=%s\n", tok);
        ASSERT_OK(app_text("a", text, &a, &e));
        ASSERT_EQ(strlen(a->api_token), 1024);
        tok[1024] = 'T';
        tok[1025] = 0;
        expect_app_error("ApiToken", tok, "1024");

        /* Empty means no token. */
        ASSERT_OK(app_text("a", "[App]\nApiToken=abc\nApiToken=\n", &b, &e));
        ASSERT_NULL(b->api_token);
}

TEST(app_config_health) {
        _cleanup_(app_config_freep) AppConfig *a = NULL, *b = NULL, *c = NULL, *d = NULL;
        ConfError e = {};

        ASSERT_OK(app_text("a", "[App]\nHealthCheckPath=/v1/ready?deep=1\n", &a, &e));
        ASSERT_STREQ(a->health_check_path, "/v1/ready?deep=1");
        ASSERT_OK(app_text("a", "[App]\nHealthCheckPath=/x\nHealthCheckPath=\n", &b, &e));
        ASSERT_NULL(b->health_check_path);
        expect_app_error("HealthCheckPath", "healthz", "start with '/'");
        expect_app_error("HealthCheckPath", "http://x/healthz", "start with '/'");
        expect_app_error("HealthCheckPath", "/a b", "without spaces");
        expect_app_error("HealthCheckPath", "/caf\xc3\xa9", "without spaces");

        ASSERT_OK(app_text("a", "[App]\nHealthProbeInterval=100ms\n", &c, &e));
        ASSERT_EQ(c->health_probe_interval_usec, 100000);
        ASSERT_OK(app_text("a", "[App]\nHealthProbeInterval=1h\n", &d, &e));
        ASSERT_EQ(d->health_probe_interval_usec, 3600000000ULL);
        expect_app_error("HealthProbeInterval", "99ms", "100ms and 1h");
        expect_app_error("HealthProbeInterval", "0", "100ms and 1h");
        expect_app_error("HealthProbeInterval", "1h1us", "100ms and 1h");
        expect_app_error("HealthProbeInterval", "3601", "100ms and 1h");
        expect_app_error("HealthProbeInterval", "soon", "100ms and 1h");
        expect_app_error("HealthProbeInterval", "", "100ms and 1h");
}

TEST(app_config_unknown_key) {
        expect_app_error("Bogus", "1", "unknown key");
        expect_app_error("appaddress", "3000", "unknown key"); /* keys are case-sensitive */
}

TEST(app_config_error_lines) {
        _cleanup_(app_config_freep) AppConfig *c = NULL;
        ConfError e = {};
        _cleanup_free_ char *s = NULL;

        ASSERT_ERROR(app_text("a", "# header\n[App]\nHttpPort=1\n\n; x\nHttpPort=x\nExec=y\n", &c, &e), EINVAL);
        ASSERT_EQ(e.line, 6);
        ASSERT_STREQ(e.field, "HttpPort");
        s = conf_error_format(&e);
        ASSERT_STREQ(s, "apps.d/test.conf:6: field 'HttpPort': expected a port number 1-65535");
        conf_error_done(&e);
}

TEST(app_config_wrong_section) {
        _cleanup_(app_config_freep) AppConfig *c = NULL;
        ConfError e = {};

        ASSERT_ERROR(app_text("a", "[Daemon]\nHttpPort=1\n", &c, &e), EINVAL);
        ASSERT_EQ(e.line, 2);
        ASSERT_NULL(e.field);
        ASSERT_TRUE(strstr(e.message, "[App]") != NULL);
        ASSERT_ERROR(app_text("a", "[App]\nHttpPort=1\n[Extra]\nX=1\n", &c, &e), EINVAL);
        ASSERT_EQ(e.line, 4);
        ASSERT_ERROR(app_text("a", "HttpPort=1\n", &c, &e), EINVAL);
        ASSERT_EQ(e.line, 1);
        ASSERT_NULL(c);
        conf_error_done(&e);
}

TEST(app_config_invalid_id) {
        _cleanup_(app_config_freep) AppConfig *c = NULL;
        ConfError e = {};

        ASSERT_ERROR(app_text("bad id", "[App]\n", &c, &e), EINVAL);
        ASSERT_EQ(e.line, 0);
        ASSERT_TRUE(strstr(e.message, "bad id") != NULL);
        ASSERT_ERROR(app_text("", "[App]\n", &c, &e), EINVAL);
        ASSERT_NULL(c);
        conf_error_done(&e);
}

TEST(app_config_load_file) {
        static const char *const names[] = { "orders.conf", "bad name.conf", "orders.txt", ".conf" };
        _cleanup_free_ char *dir = make_tmpdir(), *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL,
                            *missing = NULL;
        _cleanup_(app_config_freep) AppConfig *c = NULL, *x = NULL;
        ConfError e = {};

        ASSERT_NOT_NULL(dir);
        p1 = write_file(dir, names[0], "[App]\nAppAddress=3000\nHttpPort=3500\n");
        p2 = write_file(dir, names[1], "[App]\n");
        p3 = write_file(dir, names[2], "[App]\n");
        p4 = write_file(dir, names[3], "[App]\n");
        ASSERT_TRUE(p1 && p2 && p3 && p4);

        ASSERT_OK(app_config_load(p1, &c, &e));
        ASSERT_STREQ(c->id, "orders");
        ASSERT_STREQ(c->file, p1);
        ASSERT_EQ(c->http_port, 3500);

        ASSERT_ERROR(app_config_load(p2, &x, &e), EINVAL);
        ASSERT_STREQ(e.file, p2);
        ASSERT_TRUE(strstr(e.message, "bad name") != NULL);
        ASSERT_ERROR(app_config_load(p3, &x, &e), EINVAL);
        ASSERT_TRUE(strstr(e.message, ".conf") != NULL);
        ASSERT_ERROR(app_config_load(p4, &x, &e), EINVAL);
        ASSERT_NULL(x);

        ASSERT_TRUE(asprintf(&missing, "%s/missing.conf", dir) > 0);
        ASSERT_ERROR(app_config_load(missing, &x, &e), ENOENT);
        ASSERT_STREQ(e.file, missing);
        ASSERT_TRUE(strstr(e.message, "cannot read") != NULL);

        conf_error_done(&e);
        cleanup_dir(dir, names, ELEMENTSOF(names));
}

TEST(app_config_compare) {
        _cleanup_(app_config_freep) AppConfig *a = NULL, *b = NULL, *tok = NULL, *port = NULL, *other = NULL,
                                              *addr = NULL, *file = NULL;
        ConfError e = {};
        const char *base = "[App]\nAppAddress=3000\nHttpPort=3500\nApiToken=t\n";

        ASSERT_OK(app_text("a", base, &a, &e));
        ASSERT_OK(app_text("a", base, &b, &e));
        ASSERT_TRUE(app_config_equal(a, b));
        ASSERT_TRUE(app_config_same_listeners(a, b));

        ASSERT_OK(app_text("a", "[App]\nAppAddress=3000\nHttpPort=3500\nApiToken=u\n", &tok, &e));
        ASSERT_TRUE(!app_config_equal(a, tok));
        ASSERT_TRUE(app_config_same_listeners(a, tok));

        ASSERT_OK(app_text("a", "[App]\nAppAddress=3001\nHttpPort=3500\nApiToken=t\n", &addr, &e));
        ASSERT_TRUE(!app_config_equal(a, addr));
        ASSERT_TRUE(app_config_same_listeners(a, addr));

        ASSERT_OK(app_text("a", "[App]\nAppAddress=3000\nHttpPort=3501\nApiToken=t\n", &port, &e));
        ASSERT_TRUE(!app_config_equal(a, port));
        ASSERT_TRUE(!app_config_same_listeners(a, port));

        ASSERT_OK(app_text("b", base, &other, &e));
        ASSERT_TRUE(!app_config_equal(a, other));
        ASSERT_TRUE(!app_config_same_listeners(a, other));

        ASSERT_OK(app_config_parse("a", "elsewhere.conf", base, strlen(base), &file, &e));
        ASSERT_TRUE(!app_config_equal(a, file));
}

TEST(app_config_set_direct) {
        _cleanup_(app_config_freep) AppConfig *c = app_config_new("dbus-app");
        _cleanup_free_ char *msg = NULL;

        /* RegisterApp over D-Bus goes through app_config_set() key by key. */
        ASSERT_NOT_NULL(c);
        ASSERT_OK(app_config_set(c, "AppAddress", "unix:/run/x.sock", &msg));
        ASSERT_EQ(c->address_kind, APP_ADDRESS_UNIX);
        ASSERT_ERROR(app_config_set(c, "HttpPort", "0", &msg), EINVAL);
        ASSERT_NOT_NULL(msg);
        ASSERT_EQ(c->http_port, 0);
}

/* ---- identity ---- */

TEST(identity_units) {
        _cleanup_free_ char *id = NULL;

        ASSERT_TRUE(identity_app_from_unit("mooring-app@orders.service", &id));
        ASSERT_STREQ(id, "orders");
        ASSERT_TRUE(identity_app_from_unit("mooring-app@my-app_1.v2.service", NULL));

        static const char *const bad[] = {
                "mooring-app@.service",
                "mooring-app@orders.socket",
                "mooring-app@orders",
                "mooring-app.service",
                "other-app@orders.service",
                "xmooring-app@orders.service",
                "mooring-app@-orders.service",
                "mooring-app@a b.service",
                "mooring-app@a\\x2db.service",
                "",
                "mooring-app@service",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *x = NULL;
                fprintf(stderr, "unit %s\n", bad[i]);
                ASSERT_TRUE(!identity_app_from_unit(bad[i], &x));
                ASSERT_NULL(x);
        }
        ASSERT_TRUE(!identity_app_from_unit(NULL, NULL));

        char unit[128];
        snprintf(unit, sizeof unit, "mooring-app@%0*d.service", 64, 1);
        ASSERT_TRUE(!identity_app_from_unit(unit, NULL)); /* id of 64 characters */
}

/* A file with several errors reports every one at once (issue 16): before, each reload showed
 * only the first, and a user needed three reloads for three mistakes. */
TEST(app_config_all_errors_at_once) {
        _cleanup_(app_config_freep) AppConfig *c = NULL;
        _cleanup_free_ char *s = NULL;
        ConfError e = {};
        unsigned n = 0;

        ASSERT_ERROR(app_text("a", "[App]\nHttpPort=x\nAppAddress=http://127.0.0.1:3000\nBogus=1\nno equals\n"
                                   "MaxConcurrency=-1\n",
                              &c, &e),
                     EINVAL);
        ASSERT_NULL(c);
        for (ConfError *x = &e; x; x = x->next)
                n++;
        ASSERT_EQ(n, 4);
        ASSERT_EQ(e.line, 2);
        ASSERT_STREQ(e.field, "HttpPort");
        ASSERT_EQ(e.next->line, 4);
        ASSERT_STREQ(e.next->field, "Bogus");
        ASSERT_EQ(e.next->next->line, 5);
        ASSERT_NULL(e.next->next->field);
        ASSERT_EQ(e.next->next->next->line, 6);
        s = conf_error_format(&e);
        ASSERT_TRUE(strstr(s, "apps.d/test.conf:2: field 'HttpPort'") != NULL);
        ASSERT_TRUE(strstr(s, "; apps.d/test.conf:6: field 'MaxConcurrency'") != NULL);
        conf_error_done(&e);
        ASSERT_NULL(e.next);

        /* the same for mooringd.conf */
        Settings st;
        settings_init(&st);
        ASSERT_ERROR(settings_text(&st, "[Daemon]\nLogLevel=loud\nBogus=1\nMaxRequestBodySize=x\n", &e), EINVAL);
        n = 0;
        for (ConfError *x = &e; x; x = x->next)
                n++;
        ASSERT_EQ(n, 3);
        ASSERT_EQ(e.next->next->line, 4);
        conf_error_done(&e);
        settings_done(&st);
}

/* App ids as the man page has them, [a-z0-9][a-z0-9-_.]{0,62}: upper case is refused. */
TEST(app_id_documented_form) {
        _cleanup_(app_config_freep) AppConfig *c = NULL;
        ConfError e = {};

        ASSERT_TRUE(app_id_is_valid("orders"));
        ASSERT_TRUE(app_id_is_valid("a.b_c-9"));
        ASSERT_TRUE(!app_id_is_valid("Bad_App"));
        ASSERT_TRUE(!app_id_is_valid("-a"));
        ASSERT_TRUE(!app_id_is_valid(""));
        ASSERT_ERROR(app_text("Bad_App", "[App]\n", &c, &e), EINVAL);
        ASSERT_TRUE(strstr(e.message, "Bad_App") != NULL);
        conf_error_done(&e);
}

/* Lists of keys in daprd's messages, as Go's %v prints a []string. */
TEST(strv_go_text) {
        char *none[] = { NULL }, *one[] = { "a", NULL }, *two[] = { "a", "b c", NULL };
        _cleanup_free_ char *t0 = strv_go_text(none), *t1 = strv_go_text(one), *t2 = strv_go_text(two),
                            *tn = strv_go_text(NULL);
        ASSERT_STREQ(t0, "[]");
        ASSERT_STREQ(t1, "[a]");
        ASSERT_STREQ(t2, "[a b c]");
        ASSERT_STREQ(tn, "[]");
}
