/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: the HTTP transport (--socket, $MOORING_SOCKET).
 *
 * One request per command on the daemon's shared API socket: a GET of the
 * admin routes of CONTRACT.md (/mooring/v1/status, /apps, /components,
 * /subscriptions), with the JSON reply parsed into the same model the D-Bus
 * transport fills, or any request (ctl_http_request(), used by "invoke" and
 * "publish") whose answer is returned raw. A socket that cannot be connected
 * to is reported as "mooringd is not running" and returned as
 * -CTL_ERR_UNREACHABLE; other failures return other errnos.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "ctl.h"

/* Far above any real reply; stops a confused peer from eating memory. */
#define BODY_MAX ((size_t) 64 << 20)
#define REQUEST_TIMEOUT_SEC 30L

DEFINE_CLEANUP_FUNC(CURL, curl_easy_cleanup);
DEFINE_CLEANUP_FUNC(struct curl_slist, curl_slist_free_all);
/* json_decrefp() comes with jansson (json_auto_t) */

typedef struct Body {
        char *data;
        size_t size;
        bool too_large;
        bool oom;
} Body;

/* The header lines of the (last) answer, as a growing NULL-terminated array. */
typedef struct Headers {
        char **lines;
        size_t n;
        bool oom;
} Headers;

static char **lines_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
        return NULL;
}

static void body_done(Body *b) {
        free(b->data);
        *b = (Body) {};
}

static void headers_done(Headers *h) {
        lines_free(h->lines);
        *h = (Headers) {};
}

void ctl_http_reply_done(CtlHttpReply *r) {
        lines_free(r->headers);
        free(r->body);
        *r = (CtlHttpReply) {};
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Body *b = userdata;
        size_t n = size * nmemb; /* curl documents size as always 1 */
        char *p;

        if (n > BODY_MAX - b->size) {
                b->too_large = true;
                return 0;
        }
        p = realloc(b->data, b->size + n + 1);
        if (!p) {
                b->oom = true;
                return 0;
        }
        memcpy(p + b->size, ptr, n);
        b->size += n;
        p[b->size] = '\0';
        b->data = p;
        return n;
}

/* Called by curl once per header line, the status line and the empty line that ends the head included. */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Headers *h = userdata;
        size_t n = size * nmemb, len = n;
        char **l, *line;

        while (len > 0 && (ptr[len - 1] == '\n' || ptr[len - 1] == '\r'))
                len--;
        if (len >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
                /* a new answer (after "100 Continue" or a redirect): forget the previous head */
                headers_done(h);
                return n;
        }
        if (len == 0)
                return n;
        if ((ptr[0] == ' ' || ptr[0] == '\t') && h->n > 0) {
                /* obsolete line folding: continue the previous line, as one space */
                size_t prev = strlen(h->lines[h->n - 1]);
                while (len > 0 && (*ptr == ' ' || *ptr == '\t')) {
                        ptr++;
                        len--;
                }
                line = realloc(h->lines[h->n - 1], prev + 1 + len + 1);
                if (!line) {
                        h->oom = true;
                        return 0;
                }
                line[prev] = ' ';
                memcpy(line + prev + 1, ptr, len);
                line[prev + 1 + len] = '\0';
                h->lines[h->n - 1] = line;
                return n;
        }
        l = realloc(h->lines, (h->n + 2) * sizeof(char *));
        if (!l) {
                h->oom = true;
                return 0;
        }
        h->lines = l;
        line = strndup(ptr, len);
        if (!line) {
                h->oom = true;
                return 0;
        }
        h->lines[h->n++] = line;
        h->lines[h->n] = NULL;
        return n;
}

/* Whether one of the "Name: value" lines has this name. */
static bool has_header(char *const *lines, const char *name) {
        size_t n = strlen(name);

        for (char *const *p = lines; p && *p; p++)
                if (strncasecmp(*p, name, n) == 0 && ((*p)[n] == ':' || (*p)[n] == ';'))
                        return true;
        return false;
}

/*
 * The request's header list for curl: the caller's lines ("Name: value"; an
 * empty value is written "Name;", curl's way of sending it rather than
 * removing the header), and blanks that stop curl from adding headers of its
 * own (Expect, Accept, and the form Content-Type it assumes for a body).
 */
static int build_headers(const CtlHttpRequest *req, struct curl_slist **ret) {
        _cleanup_(curl_slist_free_allp) struct curl_slist *list = NULL;
        struct curl_slist *l;

        for (char *const *p = req->headers; p && *p; p++) {
                const char *colon = strchr(*p, ':');
                const char *v = colon ? colon + strspn(colon + 1, " \t") + 1 : NULL;
                _cleanup_free_ char *empty = NULL;

                if (v && !*v) {
                        empty = strndup(*p, (size_t) (colon - *p) + 1);
                        if (!empty)
                                return -ENOMEM;
                        empty[colon - *p] = ';';
                }
                l = curl_slist_append(list, empty ?: *p);
                if (!l)
                        return -ENOMEM;
                list = l;
        }
        if (!has_header(req->headers, "Expect")) {
                l = curl_slist_append(list, "Expect:");
                if (!l)
                        return -ENOMEM;
                list = l;
        }
        if (!has_header(req->headers, "Accept")) {
                l = curl_slist_append(list, "Accept:");
                if (!l)
                        return -ENOMEM;
                list = l;
        }
        if (req->body && !has_header(req->headers, "Content-Type")) {
                l = curl_slist_append(list, "Content-Type:");
                if (!l)
                        return -ENOMEM;
                list = l;
        }
        *ret = TAKE_PTR(list);
        return 0;
}

/* Sets up curl for req; only allocation can fail (every option is known to this libcurl). */
static int setup(CURL *curl, const CtlHttpRequest *req, const char *url, struct curl_slist *headers,
                 char *errbuf, Body *body, Headers *head) {
        bool is_head = strcmp(req->verb, "HEAD") == 0;

        if (curl_easy_setopt(curl, CURLOPT_URL, url) != CURLE_OK ||
            /* send the path as given: "/a/../b" is the callee's business */
            curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_USERAGENT, CTL_PROGRAM "/" PACKAGE_VERSION) != CURLE_OK ||
            /* the socket is the destination; a configured proxy must not reroute it */
            curl_easy_setopt(curl, CURLOPT_PROXY, "") != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_TIMEOUT, req->timeout_sec) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_WRITEDATA, body) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_HEADERDATA, head) != CURLE_OK)
                return -ENOMEM;
        if (req->body &&
            (curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_size) != CURLE_OK ||
             curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body) != CURLE_OK))
                return -ENOMEM;
        /* HEAD must not wait for the body its Content-Length announces */
        if (is_head && curl_easy_setopt(curl, CURLOPT_NOBODY, 1L) != CURLE_OK)
                return -ENOMEM;
        /* anything but a plain GET or HEAD: curl's own method (POST with a body) is replaced */
        if ((req->body || (strcmp(req->verb, "GET") != 0 && !is_head)) &&
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->verb) != CURLE_OK)
                return -ENOMEM;
        return 0;
}

/* One request on socket_path; see ctl_http_request(). */
static int perform(const char *socket_path, const CtlHttpRequest *req, CtlHttpReply *ret) {
        _cleanup_(curl_easy_cleanupp) CURL *curl = NULL;
        _cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
        _cleanup_(body_done) Body body = {};
        _cleanup_(headers_done) Headers head = {};
        _cleanup_free_ char *url = NULL;
        char errbuf[CURL_ERROR_SIZE] = "";
        long status = 0;
        CURLcode c;

        if (asprintf(&url, "http://localhost%s", req->target) < 0) {
                url = NULL;
                return ctl_log_oom();
        }
        curl = curl_easy_init();
        if (!curl || build_headers(req, &headers) < 0)
                return ctl_log_oom();
        c = curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, socket_path);
        if (c != CURLE_OK) {
                ctl_log("cannot use Unix socket '%s' with libcurl: %s", socket_path, curl_easy_strerror(c));
                return -EOPNOTSUPP;
        }
        if (setup(curl, req, url, headers, errbuf, &body, &head) < 0)
                return ctl_log_oom();

        c = curl_easy_perform(curl);
        if (c == CURLE_COULDNT_CONNECT) {
                long os_errno = 0;

                (void) curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
                if (os_errno > 0)
                        ctl_log_errno(-(int) os_errno, "mooringd is not running (cannot connect to %s: %m)",
                                      socket_path);
                else
                        ctl_log("mooringd is not running (cannot connect to %s: %s)", socket_path,
                                errbuf[0] ? errbuf : curl_easy_strerror(c));
                return -CTL_ERR_UNREACHABLE;
        }
        if (body.oom || head.oom)
                return ctl_log_oom();
        if (body.too_large) {
                ctl_log("the reply to %s %s is larger than %zu MiB, refusing it", req->verb, req->target,
                        BODY_MAX >> 20);
                return -EFBIG;
        }
        if (c != CURLE_OK) {
                ctl_log("%s %s on %s failed: %s", req->verb, req->target, socket_path,
                        errbuf[0] ? errbuf : curl_easy_strerror(c));
                return c == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
        }
        if (curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
                status = 0;

        *ret = (CtlHttpReply) {
                .status = status,
                .headers = TAKE_PTR(head.lines),
                .body = TAKE_PTR(body.data),
                .body_size = body.size,
        };
        return 0;
}

/*
 * One request on the shared socket the options name, with libcurl's global
 * state set up and torn down around it (one request per run). Returns 0 and
 * the answer in *ret whatever its status, or a reported negative errno:
 * -CTL_ERR_UNREACHABLE when the socket cannot be connected to, -EFBIG for an
 * answer above BODY_MAX, -ETIMEDOUT, -EIO.
 */
int ctl_http_request(const CtlOptions *o, const CtlHttpRequest *req, CtlHttpReply *ret) {
        CURLcode c;
        int r;

        c = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (c != CURLE_OK) {
                ctl_log("cannot initialize libcurl: %s", curl_easy_strerror(c));
                return -EIO;
        }
        r = perform(o->socket_path, req, ret);
        curl_global_cleanup();
        return r;
}

/* Render a non-200 answer, preferring the Dapr error body when there is one. */
static int log_http_error(const char *route, long status, json_t *reply) {
        const char *code = NULL, *message = NULL;

        if (reply)
                (void) json_unpack(reply, "{s?s, s?s}", "errorCode", &code, "message", &message);
        if (message && code)
                ctl_log("mooringd answered GET %s with HTTP %ld: %s (%s)", route, status, message, code);
        else if (message)
                ctl_log("mooringd answered GET %s with HTTP %ld: %s", route, status, message);
        else
                ctl_log("mooringd answered GET %s with HTTP %ld", route, status);
        return -EIO;
}

/*
 * GET route on the socket the options name. Returns 0 with the parsed JSON
 * reply of a 200 answer in *ret, or a reported negative errno.
 */
static int http_get_json(const CtlOptions *o, const char *route, json_t **ret) {
        static char *const headers[] = { (char *) "Accept: application/json", NULL };
        const CtlHttpRequest req = {
                .verb = "GET",
                .target = route,
                .headers = headers,
                .timeout_sec = REQUEST_TIMEOUT_SEC,
        };
        _cleanup_(ctl_http_reply_done) CtlHttpReply answer = {};
        _cleanup_(json_decrefp) json_t *reply = NULL;
        json_error_t jerr;
        int r;

        r = ctl_http_request(o, &req, &answer);
        if (r < 0)
                return r;
        if (answer.body_size > 0)
                reply = json_loadb(answer.body, answer.body_size, 0, &jerr);
        if (answer.status != 200)
                return log_http_error(route, answer.status, reply);
        if (!reply) {
                if (answer.body_size == 0)
                        ctl_log("the reply to GET %s is empty", route);
                else
                        ctl_log("cannot parse the reply to GET %s: %s (line %d, column %d)", route, jerr.text,
                                jerr.line, jerr.column);
                return -EBADMSG;
        }

        *ret = TAKE_PTR(reply);
        return 0;
}

int ctl_http_get_json(const CtlOptions *o, const char *route, json_t **ret) {
        return http_get_json(o, route, ret);
}

static int bad_json(const char *route, const json_error_t *jerr) {
        ctl_log("unexpected reply to GET %s: %s", route, jerr->text);
        return -EBADMSG;
}

/* "status" over HTTP: GET /mooring/v1/status. */
int ctl_http_get_status(const CtlOptions *o, CtlStatus *ret) {
        static const char route[] = "/mooring/v1/status";
        _cleanup_(json_decrefp) json_t *reply = NULL;
        const char *version, *state;
        json_int_t n_apps, n_components;
        json_error_t jerr;
        int r;

        r = http_get_json(o, route, &reply);
        if (r < 0)
                return r;

        if (json_unpack_ex(reply, &jerr, 0, "{s:s, s:s, s:I, s:I}",
                           "version", &version, "state", &state,
                           "apps", &n_apps, "components", &n_components) < 0)
                return bad_json(route, &jerr);
        if (n_apps < 0 || n_components < 0) {
                ctl_log("unexpected reply to GET %s: negative count", route);
                return -EBADMSG;
        }

        r = ctl_status_set(ret, version, state, (uint64_t) n_apps, (uint64_t) n_components);
        if (r < 0)
                return ctl_log_oom();
        return 0;
}

/* "apps" over HTTP: GET /mooring/v1/apps, sorted by id. */
int ctl_http_get_apps(const CtlOptions *o, CtlAppList *ret) {
        static const char route[] = "/mooring/v1/apps";
        _cleanup_(json_decrefp) json_t *reply = NULL;
        _cleanup_(ctl_app_list_done) CtlAppList list = {};
        json_error_t jerr;
        json_t *item;
        size_t i;
        int r;

        r = http_get_json(o, route, &reply);
        if (r < 0)
                return r;
        if (!json_is_array(reply)) {
                ctl_log("unexpected reply to GET %s: not a JSON array", route);
                return -EBADMSG;
        }

        json_array_foreach(reply, i, item) {
                const char *id, *address = NULL, *sock = NULL, *health = NULL, *gsock = NULL;
                json_int_t port = 0, gport = 0;

                if (json_unpack_ex(item, &jerr, 0, "{s:s, s?s, s?s, s?I, s?s, s?s, s?I}",
                                   "id", &id, "appAddress", &address, "httpSocket", &sock,
                                   "httpPort", &port, "health", &health, "grpcSocket", &gsock,
                                   "grpcPort", &gport) < 0)
                        return bad_json(route, &jerr);
                if (port < 0 || port > UINT16_MAX) {
                        ctl_log("unexpected reply to GET %s: app '%s' has port %" JSON_INTEGER_FORMAT,
                                route, id, port);
                        return -EBADMSG;
                }
                r = ctl_app_list_add(&list, id, address, sock, (uint16_t) port, health ?: "unknown");
                if (r < 0)
                        return ctl_log_oom();
                list.items[list.n - 1].grpc_port = gport > 0 && gport <= UINT16_MAX ? (uint16_t) gport : 0;
                if (gsock && *gsock && !(list.items[list.n - 1].grpc_socket = strdup(gsock)))
                        return ctl_log_oom();
        }

        ctl_app_list_sort(&list);
        *ret = list;
        list = (CtlAppList) {};
        return 0;
}

/* "components" over HTTP: GET /mooring/v1/components, sorted by name. */
int ctl_http_get_components(const CtlOptions *o, CtlComponentList *ret) {
        static const char route[] = "/mooring/v1/components";
        _cleanup_(json_decrefp) json_t *reply = NULL;
        _cleanup_(ctl_component_list_done) CtlComponentList list = {};
        json_error_t jerr;
        json_t *item;
        size_t i;
        int r;

        r = http_get_json(o, route, &reply);
        if (r < 0)
                return r;
        if (!json_is_array(reply)) {
                ctl_log("unexpected reply to GET %s: not a JSON array", route);
                return -EBADMSG;
        }

        json_array_foreach(reply, i, item) {
                const char *name, *type = NULL, *version = NULL, *file = NULL, *error = NULL;

                if (json_unpack_ex(item, &jerr, 0, "{s:s, s?s, s?s, s?s, s?s}",
                                   "name", &name, "type", &type, "version", &version, "file", &file,
                                   "error", &error) < 0)
                        return bad_json(route, &jerr);
                r = ctl_component_list_add(&list, name, type, version, file);
                if (r >= 0 && error)
                        r = ctl_component_list_set_error(&list, name, error);
                if (r < 0)
                        return ctl_log_oom();
        }

        ctl_component_list_sort(&list);
        *ret = list;
        list = (CtlComponentList) {};
        return 0;
}

/* "subscriptions" over HTTP: GET /mooring/v1/subscriptions, sorted. */
int ctl_http_get_subscriptions(const CtlOptions *o, CtlSubscriptionList *ret) {
        static const char route[] = "/mooring/v1/subscriptions";
        _cleanup_(json_decrefp) json_t *reply = NULL;
        _cleanup_(ctl_subscription_list_done) CtlSubscriptionList list = {};
        json_error_t jerr;
        json_t *item;
        size_t i;
        int r;

        r = http_get_json(o, route, &reply);
        if (r < 0)
                return r;
        if (!json_is_array(reply)) {
                ctl_log("unexpected reply to GET %s: not a JSON array", route);
                return -EBADMSG;
        }

        json_array_foreach(reply, i, item) {
                const char *app = NULL, *pubsub, *topic, *sub_route = NULL, *kind = NULL;

                if (json_unpack_ex(item, &jerr, 0, "{s?s, s:s, s:s, s?s, s?s}",
                                   "app", &app, "pubsub", &pubsub, "topic", &topic,
                                   "route", &sub_route, "kind", &kind) < 0)
                        return bad_json(route, &jerr);
                r = ctl_subscription_list_add(&list, app, pubsub, topic, sub_route, kind);
                if (r < 0)
                        return ctl_log_oom();
        }

        ctl_subscription_list_sort(&list);
        *ret = list;
        list = (CtlSubscriptionList) {};
        return 0;
}
