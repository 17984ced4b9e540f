/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bindings.http: calls an outside HTTP(S) URL with libcurl on the loop
 * (drivers/curl-event.h; libcurl is dlopen()ed at the first open()), as
 * daprd's component does:
 *
 * - url (required) is the base; request metadata `path` is appended to it.
 * - Operations get, head, post, put, patch, delete, options, trace, and
 *   create (= post). Only put, post and patch send the data as body.
 * - Request headers: Content-Type "application/json; charset=utf-8" (body
 *   methods) and Accept "application/json; charset=utf-8" unless given;
 *   securityToken in securityTokenHeader; then every request metadata key
 *   that starts with a capital letter, as a header of that name; traceparent,
 *   tracestate and baggage from the metadata.
 * - Response: the body (at most maxResponseBodySize, default 100Mi, cut there
 *   silently as daprd's LimitReader does; <= 0: no limit), and metadata
 *   statusCode, status ("200 OK") and every response header in Go's canonical
 *   form ("Content-Type"), repeated ones joined with ", ". A non-2xx answer is
 *   an error ("received status code N", with the response) unless
 *   errorIfNot2XX is false (component or request metadata).
 * - TLS: MTLSRootCA, MTLSClientCert, MTLSClientKey, each a PEM text or a
 *   file path; TLS 1.2 at least; MTLSRenegotiation is validated and accepted
 *   (libcurl with OpenSSL 3 renegotiates as a client as needed).
 * - responseTimeout (a duration) bounds each call; connecting is bounded by
 *   15 s as in daprd. Redirects are followed (at most 10), as Go's client does.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../curl-event.h"
#include "../dl-curl.h"
#include "driver.h"

#define HTTP_DEFAULT_MAX_BODY (100ULL * 1024 * 1024)
#define HTTP_CONNECT_TIMEOUT_MS 15000L
#define HTTP_JSON "application/json; charset=utf-8"

typedef struct HttpCall HttpCall;

typedef struct HttpBinding {
        Binding base;
        CurlEvent *curl;
        char *url;
        uint64_t max_body;            /* 0: no limit */
        uint64_t timeout_usec;        /* 0: none */
        bool error_if_not_2xx;
        char *token, *token_header;   /* token: secret, wiped */
        char *ca, *cert, *key;        /* PEM text or file path; key wiped */
        HttpCall *calls;
} HttpBinding;

struct HttpCall {
        HttpBinding *h;
        CURL *easy;
        struct curl_slist *headers;
        char *body;
        size_t body_len;
        char *out;
        size_t out_len, out_cap;
        char **resp_md;               /* response metadata pairs */
        bool error_if_not_2xx;
        BindingDoneFn done;
        void *userdata;
        HttpCall *next, *prev;
};

static const char *const http_operations[] = { "create", "get", "head", "post", "put", "patch", "delete",
                                               "options", "trace", NULL };

static void wipe_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

static bool is_pem(const char *s) {
        return strstr(s, "-----BEGIN ") != NULL;
}

static int set_blob_or_file(CURL *easy, CURLoption blob_opt, CURLoption file_opt, const char *v) {
        if (!v)
                return 0;
        if (is_pem(v)) {
                struct curl_blob b = { .data = (void *) v, .len = strlen(v), .flags = CURL_BLOB_COPY };
                return sym_curl_easy_setopt(easy, blob_opt, &b) == CURLE_OK ? 0 : -EINVAL;
        }
        return sym_curl_easy_setopt(easy, file_opt, v) == CURLE_OK ? 0 : -EINVAL;
}

static int http_fail(char **reterr_msg, int r, const char *fmt, ...) _printf_(3, 4);
static int http_fail(char **reterr_msg, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(reterr_msg, fmt, ap) < 0)
                *reterr_msg = NULL;
        va_end(ap);
        return r;
}

static int read_check(const char *name, const char *v, char **reterr_msg) {
        if (!v || is_pem(v))
                return 0;
        FILE *f = fopen(v, "re");
        if (!f)
                return http_fail(reterr_msg, -EINVAL, "'%s' is neither PEM text nor a readable file: %s: %m", name,
                                 v);
        fclose(f);
        return 0;
}

static int http_open(Binding *b, char **reterr_msg) {
        HttpBinding *h = (HttpBinding *) b;
        const Component *c = b->component;
        const char *v;
        int r;

        h->max_body = HTTP_DEFAULT_MAX_BODY;
        h->error_if_not_2xx = true;
        v = binding_component_get(c, "url");
        if (!v || !*v)
                return http_fail(reterr_msg, -EINVAL, "'url' is required");
        if (strncasecmp(v, "http://", 7) != 0 && strncasecmp(v, "https://", 8) != 0)
                return http_fail(reterr_msg, -EINVAL, "'url' must be an http:// or https:// URL: %s", v);
        h->url = strdup(v);
        if (!h->url)
                return -ENOMEM;
        v = binding_component_get(c, "maxResponseBodySize");
        if (v && *v) {
                _cleanup_free_ char *s = strdup(v);
                uint64_t n;
                if (!s)
                        return -ENOMEM;
                size_t l = strlen(s);
                if (l > 1 && s[l - 1] == 'i') /* Kubernetes-style "100Mi" */
                        s[l - 1] = 0;
                if (s[0] == '-' || streq(s, "0"))
                        h->max_body = 0;
                else if (parse_size(s, &n) < 0)
                        return http_fail(reterr_msg, -EINVAL, "'maxResponseBodySize' is not a size: %s", v);
                else
                        h->max_body = n;
        }
        v = binding_component_get(c, "responseTimeout");
        if (v && *v && parse_duration_usec(v, &h->timeout_usec) < 0)
                return http_fail(reterr_msg, -EINVAL, "'responseTimeout' is not a duration: %s", v);
        v = binding_component_get(c, "errorIfNot2XX");
        if (v && *v) {
                r = parse_boolean(v);
                h->error_if_not_2xx = r != 0; /* daprd: anything not truthy is false; we refuse garbage */
                if (r < 0)
                        return http_fail(reterr_msg, -EINVAL, "'errorIfNot2XX' is not a boolean: %s", v);
        }
        v = binding_component_get(c, "securityToken");
        const char *hdr = binding_component_get(c, "securityTokenHeader");
        if (v && *v && hdr && *hdr) {
                if (strpbrk(v, "\r\n") || strpbrk(hdr, "\r\n:"))
                        return http_fail(reterr_msg, -EINVAL, "'securityToken' or its header holds a line break");
                h->token = strdup(v);
                h->token_header = strdup(hdr);
                if (!h->token || !h->token_header)
                        return -ENOMEM;
        }
        v = binding_component_get(c, "MTLSRenegotiation");
        if (v && *v && !streq(v, "RenegotiateNever") && !streq(v, "RenegotiateOnceAsClient") &&
            !streq(v, "RenegotiateFreelyAsClient"))
                return http_fail(reterr_msg, -EINVAL, "invalid renegotiation value: %s", v);
        static const char *const tls_names[] = { "MTLSRootCA", "MTLSClientCert", "MTLSClientKey" };
        char **tls_fields[] = { &h->ca, &h->cert, &h->key };
        for (size_t i = 0; i < 3; i++) {
                v = binding_component_get(c, tls_names[i]);
                if (!v || !*v)
                        continue;
                r = read_check(tls_names[i], v, reterr_msg);
                if (r < 0)
                        return r;
                *tls_fields[i] = strdup(v);
                if (!*tls_fields[i])
                        return -ENOMEM;
        }
        if (!h->cert != !h->key)
                return http_fail(reterr_msg, -EINVAL, "'MTLSClientCert' and 'MTLSClientKey' go together");
        return curl_event_new(b->event, b->driver->type, &h->curl, reterr_msg);
}

static void call_free(HttpCall *call) {
        HttpBinding *h = call->h;
        if (call->prev)
                call->prev->next = call->next;
        else
                h->calls = call->next;
        if (call->next)
                call->next->prev = call->prev;
        if (call->easy)
                sym_curl_easy_cleanup(call->easy);
        if (call->headers)
                sym_curl_slist_free_all(call->headers);
        free(call->body);
        free(call->out);
        strv_free(call->resp_md);
        free(call);
}

static void http_close(Binding *b) {
        HttpBinding *h = (HttpBinding *) b;
        while (h->calls) {
                HttpCall *call = h->calls;
                curl_event_cancel(h->curl, call->easy);
                BindingDoneFn done = call->done;
                void *ud = call->userdata;
                call_free(call);
                done(-ECANCELED, "the binding was closed", NULL, ud);
        }
        h->curl = curl_event_free(h->curl);
        free(h->url);
        wipe_free(h->token);
        free(h->token_header);
        free(h->ca);
        free(h->cert);
        wipe_free(h->key);
}

/* ---- response ---- */

static size_t on_body(char *p, size_t size, size_t n, void *userdata) {
        HttpCall *call = userdata;
        size_t len = size * n, take = len;
        if (call->h->max_body && call->out_len + take > call->h->max_body)
                take = call->h->max_body - call->out_len; /* daprd's LimitReader: cut, no error */
        if (call->out_len + take + 1 > call->out_cap) {
                size_t cap = call->out_cap ? call->out_cap : 4096;
                while (cap < call->out_len + take + 1)
                        cap *= 2;
                char *o = realloc(call->out, cap);
                if (!o)
                        return 0; /* fails the transfer */
                call->out = o;
                call->out_cap = cap;
        }
        memcpy(call->out + call->out_len, p, take);
        call->out_len += take;
        return len;
}

/* "content-type" → "Content-Type" (Go's CanonicalMIMEHeaderKey for token names). */
static void canonical_key(char *k) {
        bool upper = true;
        for (; *k; k++) {
                *k = upper ? (char) toupper((unsigned char) *k) : (char) tolower((unsigned char) *k);
                upper = *k == '-';
        }
}

static const char *reason_for(long code) {
        switch (code) {
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 204: return "No Content";
        case 301: return "Moved Permanently";
        case 302: return "Found";
        case 304: return "Not Modified";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 409: return "Conflict";
        case 500: return "Internal Server Error";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        default: return "";
        }
}

static int md_set(char ***md, const char *k, const char *v, bool join) {
        for (char **p = *md; p && p[0] && p[1]; p += 2)
                if (streq(p[0], k)) {
                        char *n = NULL;
                        if (join ? asprintf(&n, "%s, %s", p[1], v) < 0 : !(n = strdup(v)))
                                return -ENOMEM;
                        free(p[1]);
                        p[1] = n;
                        return 0;
                }
        return strv_extend(md, k) < 0 || strv_extend(md, v) < 0 ? -ENOMEM : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *userdata) {
        HttpCall *call = userdata;
        size_t len = size * n;
        _cleanup_free_ char *line = strndup(p, len);

        if (!line)
                return 0;
        line[strcspn(line, "\r\n")] = 0;
        if (strncmp(line, "HTTP/", 5) == 0) {
                /* a new answer (redirect or 1xx before): start over */
                call->resp_md = strv_free(call->resp_md);
                char *sp = strchr(line, ' ');
                long code = sp ? strtol(sp + 1, NULL, 10) : 0;
                char *reason = sp ? strchr(sp + 1, ' ') : NULL;
                _cleanup_free_ char *status = NULL, *code_s = NULL;
                if (asprintf(&status, "%ld %s", code, reason && reason[1] ? reason + 1 : reason_for(code)) < 0 ||
                    asprintf(&code_s, "%ld", code) < 0)
                        return 0;
                if (md_set(&call->resp_md, "statusCode", code_s, false) < 0 ||
                    md_set(&call->resp_md, "status", status, false) < 0)
                        return 0;
                return len;
        }
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
                return len;
        *colon = 0;
        char *v = colon + 1;
        v += strspn(v, " \t");
        size_t vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                v[--vl] = 0;
        canonical_key(line);
        return md_set(&call->resp_md, line, v, true) < 0 ? 0 : len;
}

static void on_done(CURL *easy, CURLcode code, void *userdata) {
        HttpCall *call = userdata;
        BindingDoneFn done = call->done;
        void *ud = call->userdata;
        long status = 0;
        _cleanup_free_ char *msg = NULL;
        int error = 0;

        (void) sym_curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        BindingResponse resp = { .data = call->out, .len = call->out_len, .metadata = call->resp_md };
        if (code != CURLE_OK) {
                error = code == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : code == CURLE_COULDNT_CONNECT ? -ECONNREFUSED
                        : -EIO;
                if (asprintf(&msg, "%s", sym_curl_easy_strerror(code)) < 0)
                        msg = NULL;
                call_free(call);
                return done(error, msg ?: "transfer failed", NULL, ud);
        }
        if (call->error_if_not_2xx && status / 100 != 2) {
                error = -EREMOTEIO;
                if (asprintf(&msg, "received status code %ld", status) < 0)
                        msg = NULL;
        }
        done(error, msg, &resp, ud);
        call_free(call);
}

/* ---- request ---- */

typedef struct Hdr {
        char **pairs;
} Hdr;

/* Sets (replaces, case-insensitively) a request header. */
static int hdr_set(Hdr *h, const char *k, const char *v) {
        if (strpbrk(k, "\r\n:") || strpbrk(v, "\r\n"))
                return -EINVAL;
        for (char **p = h->pairs; p && p[0] && p[1]; p += 2)
                if (strcasecmp(p[0], k) == 0) {
                        char *n = strdup(v);
                        if (!n)
                                return -ENOMEM;
                        free(p[1]);
                        p[1] = n;
                        return 0;
                }
        return strv_extend(&h->pairs, k) < 0 || strv_extend(&h->pairs, v) < 0 ? -ENOMEM : 0;
}

static int http_invoke(Binding *b, const BindingRequest *req, BindingDoneFn done, void *userdata,
                       char **reterr_msg) {
        HttpBinding *h = (HttpBinding *) b;
        const char *path = binding_metadata_get(req->metadata, "path");
        const char *e2 = binding_metadata_get(req->metadata, "errorIfNot2XX");
        _cleanup_free_ char *url = NULL, *method = NULL;
        _cleanup_(strv_freep) char **pairs = NULL;
        Hdr hdr = {};
        HttpCall *call;
        int r;

        method = strdup(streq(req->operation, "create") ? "post" : req->operation);
        if (!method)
                return -ENOMEM;
        for (char *p = method; *p; p++)
                *p = (char) toupper((unsigned char) *p);
        bool has_body = streq(method, "POST") || streq(method, "PUT") || streq(method, "PATCH");

        if (path && *path) {
                size_t ul = strlen(h->url);
                while (ul > 0 && h->url[ul - 1] == '/')
                        ul--;
                while (*path == '/')
                        path++;
                if (asprintf(&url, "%.*s/%s", (int) ul, h->url, path) < 0)
                        return -ENOMEM;
        } else if (!(url = strdup(h->url)))
                return -ENOMEM;

        if (has_body && !binding_metadata_get(req->metadata, "Content-Type"))
                r = hdr_set(&hdr, "Content-Type", HTTP_JSON);
        else
                r = 0;
        if (r >= 0 && !binding_metadata_get(req->metadata, "Accept"))
                r = hdr_set(&hdr, "Accept", HTTP_JSON);
        if (r >= 0 && h->token)
                r = hdr_set(&hdr, h->token_header, h->token);
        for (char *const *p = req->metadata; r >= 0 && p && p[0] && p[1]; p += 2)
                if (p[0][0] >= 'A' && p[0][0] <= 'Z')
                        r = hdr_set(&hdr, p[0], p[1]);
        static const char *const trace[] = { "traceparent", "tracestate", "baggage" };
        for (size_t i = 0; r >= 0 && i < 3; i++) {
                const char *v = binding_metadata_get(req->metadata, trace[i]);
                if (v && *v)
                        r = hdr_set(&hdr, trace[i], v);
        }
        /* libcurl would add "Expect: 100-continue" to large bodies; daprd's client does not. */
        if (r >= 0)
                r = hdr_set(&hdr, "Expect", "");
        pairs = hdr.pairs;
        if (r < 0)
                return r;

        call = calloc(1, sizeof *call);
        if (!call)
                return -ENOMEM;
        *call = (HttpCall){ .h = h, .done = done, .userdata = userdata, .next = h->calls,
                            .error_if_not_2xx = e2 && *e2 ? parse_boolean(e2) > 0 : h->error_if_not_2xx };
        if (call->next)
                call->next->prev = call;
        h->calls = call;

        for (char **p = pairs; p && p[0] && p[1]; p += 2) {
                _cleanup_free_ char *line = NULL;
                /* "Name;" is libcurl's way to send a header with an empty value */
                if ((*p[1] ? asprintf(&line, "%s: %s", p[0], p[1]) : asprintf(&line, "%s%s", p[0],
                                                                                 streq(p[0], "Expect") ? ":" : ";")) < 0)
                        goto oom;
                struct curl_slist *l = sym_curl_slist_append(call->headers, line);
                if (!l)
                        goto oom;
                call->headers = l;
        }
        call->easy = sym_curl_easy_init();
        if (!call->easy)
                goto oom;
        CURL *e = call->easy;
        bool ok = sym_curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK;
        if (!ok) {
                call_free(call);
                return -EINVAL;
        }
        (void) sym_curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
        (void) sym_curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        (void) sym_curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
        (void) sym_curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        (void) sym_curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
        (void) sym_curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        (void) sym_curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        (void) sym_curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
        (void) sym_curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        (void) sym_curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        (void) sym_curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, HTTP_CONNECT_TIMEOUT_MS);
        (void) sym_curl_easy_setopt(e, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
        (void) sym_curl_easy_setopt(e, CURLOPT_USERAGENT, "mooringd/" PACKAGE_VERSION);
        if (h->timeout_usec)
                (void) sym_curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) (h->timeout_usec / 1000));
        if (set_blob_or_file(e, CURLOPT_CAINFO_BLOB, CURLOPT_CAINFO, h->ca) < 0 ||
            set_blob_or_file(e, CURLOPT_SSLCERT_BLOB, CURLOPT_SSLCERT, h->cert) < 0 ||
            set_blob_or_file(e, CURLOPT_SSLKEY_BLOB, CURLOPT_SSLKEY, h->key) < 0) {
                call_free(call);
                return -EINVAL;
        }
        if (streq(method, "HEAD"))
                (void) sym_curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        else if (has_body) {
                call->body = malloc(req->len ? req->len : 1);
                if (!call->body)
                        goto oom;
                memcpy(call->body, req->data, req->len);
                call->body_len = req->len;
                (void) sym_curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) call->body_len);
                (void) sym_curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
        }
        if (!streq(method, "GET") && !streq(method, "HEAD") && !streq(method, "POST"))
                (void) sym_curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        r = curl_event_start(h->curl, e, on_done, call);
        if (r < 0) {
                call_free(call);
                return r;
        }
        return 0;
oom:
        call_free(call);
        return -ENOMEM;
}

const BindingDriver binding_http_driver = {
        .type = "bindings.http",
        .abi = BINDING_DRIVER_ABI,
        .instance_size = sizeof(HttpBinding),
        .operations = http_operations,
        .open = http_open,
        .close = http_close,
        .invoke = http_invoke,
};
