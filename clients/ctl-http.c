/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: the HTTP transport (--socket, $MOORING_SOCKET).
 *
 * One GET per command on the daemon's shared API socket, using the admin
 * routes of CONTRACT.md (/mooring/v1/status, /apps, /components), with the
 * JSON reply parsed into the same model the D-Bus transport fills. A socket
 * that cannot be connected to is reported as "mooringd is not running" and
 * returned as -CTL_ERR_UNREACHABLE; other failures return other errnos.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void body_done(Body *b) {
        free(b->data);
        *b = (Body) {};
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

/* GET route on the socket; *ret gets the parsed JSON reply of a 200 answer. */
static int request(const char *socket_path, const char *route, json_t **ret) {
        _cleanup_(curl_easy_cleanupp) CURL *curl = NULL;
        _cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
        _cleanup_(body_done) Body body = {};
        _cleanup_(json_decrefp) json_t *reply = NULL;
        char url[128];
        char errbuf[CURL_ERROR_SIZE] = "";
        json_error_t jerr;
        long status = 0;
        CURLcode c;

        /* routes are our own constants, so this always fits */
        snprintf(url, sizeof(url), "http://localhost%s", route);
        curl = curl_easy_init();
        if (!curl)
                return ctl_log_oom();
        headers = curl_slist_append(NULL, "Accept: application/json");
        if (!headers)
                return ctl_log_oom();

        c = curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, socket_path);
        if (c != CURLE_OK) {
                ctl_log("cannot use Unix socket '%s' with libcurl: %s", socket_path, curl_easy_strerror(c));
                return -EOPNOTSUPP;
        }
        if (curl_easy_setopt(curl, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_USERAGENT, CTL_PROGRAM "/" PACKAGE_VERSION) != CURLE_OK ||
            /* the socket is the destination; a configured proxy must not reroute it */
            curl_easy_setopt(curl, CURLOPT_PROXY, "") != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_SEC) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body) != CURLE_OK)
                return ctl_log_oom(); /* the options are all known; only allocation can fail */

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
        if (body.oom)
                return ctl_log_oom();
        if (body.too_large) {
                ctl_log("the reply to GET %s is larger than %zu MiB, refusing it", route, BODY_MAX >> 20);
                return -EFBIG;
        }
        if (c != CURLE_OK) {
                ctl_log("GET %s on %s failed: %s", route, socket_path, errbuf[0] ? errbuf : curl_easy_strerror(c));
                return c == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
        }

        if (curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
                status = 0;
        if (body.size > 0)
                reply = json_loadb(body.data, body.size, 0, &jerr);
        if (status != 200)
                return log_http_error(route, status, reply);
        if (!reply) {
                if (body.size == 0)
                        ctl_log("the reply to GET %s is empty", route);
                else
                        ctl_log("cannot parse the reply to GET %s: %s (line %d, column %d)", route, jerr.text,
                                jerr.line, jerr.column);
                return -EBADMSG;
        }

        *ret = TAKE_PTR(reply);
        return 0;
}

/*
 * GET route on the socket the options name, with libcurl's global state set
 * up and torn down around it (one request per run). Returns 0 with the
 * parsed reply in *ret, or a reported negative errno.
 */
static int http_get_json(const CtlOptions *o, const char *route, json_t **ret) {
        CURLcode c;
        int r;

        c = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (c != CURLE_OK) {
                ctl_log("cannot initialize libcurl: %s", curl_easy_strerror(c));
                return -EIO;
        }
        r = request(o->socket_path, route, ret);
        curl_global_cleanup();
        return r;
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
                const char *id, *address = NULL, *sock = NULL, *health = NULL;
                json_int_t port = 0;

                if (json_unpack_ex(item, &jerr, 0, "{s:s, s?s, s?s, s?I, s?s}",
                                   "id", &id, "appAddress", &address, "httpSocket", &sock,
                                   "httpPort", &port, "health", &health) < 0)
                        return bad_json(route, &jerr);
                if (port < 0 || port > UINT16_MAX) {
                        ctl_log("unexpected reply to GET %s: app '%s' has port %" JSON_INTEGER_FORMAT,
                                route, id, port);
                        return -EBADMSG;
                }
                r = ctl_app_list_add(&list, id, address, sock, (uint16_t) port, health ?: "unknown");
                if (r < 0)
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
                const char *name, *type = NULL, *version = NULL, *file = NULL;

                if (json_unpack_ex(item, &jerr, 0, "{s:s, s?s, s?s, s?s}",
                                   "name", &name, "type", &type, "version", &version, "file", &file) < 0)
                        return bad_json(route, &jerr);
                r = ctl_component_list_add(&list, name, type, version, file);
                if (r < 0)
                        return ctl_log_oom();
        }

        ctl_component_list_sort(&list);
        *ret = list;
        list = (CtlComponentList) {};
        return 0;
}
