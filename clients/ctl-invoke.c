/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl invoke: call a method of an app through mooringd (Dapr's
 * service invocation).
 *
 * Over D-Bus, InvokeMethod on org.mooring.Runtime1; with --socket or
 * $MOORING_SOCKET, "{VERB} /v1.0/invoke/APP/method/METHOD" on the shared
 * socket. Either way the caller is whoever runs mooringctl (the app of its
 * mooring-app@.service unit, or no app) and the callee's accessControl
 * decides. The answer's body goes to standard output byte for byte; with
 * --verbose its status and headers go to standard error first. A callee
 * status outside 200-399 is reported after the body was written and returned
 * as -EREMOTEIO, so the exit status is 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl-bus.h"

/* From this size on, a lost bus connection probably means the bus refused our message. */
#define BUS_HINT_SIZE ((size_t) 16 << 20)

/* Write the body to standard output as it is; main() flushes and reports write errors. */
static void write_body(const void *body, size_t size) {
        if (size > 0)
                (void) fwrite(body, 1, size, stdout);
}

/* The exit status the callee's answer means: 200-399 success, anything else reported. */
static int check_status(const CtlInvokeRequest *req, unsigned status) {
        if (status >= 200 && status <= 399)
                return 0;
        ctl_log("%s answered %u", req->app_id, status);
        return -EREMOTEIO;
}

static int bad_reply(const char *what, int r) {
        if (r == -ENOMEM)
                return ctl_log_oom();
        ctl_log("%s failed: unexpected reply from mooringd", what);
        return -EBADMSG;
}

/* InvokeMethod(s app_id, s method, s verb, a(ss) headers, ay body) → (q status, a(ss) headers, ay body) */
static int invoke_bus(const CtlOptions *o, const CtlInvokeRequest *req, const void *body, size_t size) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const void *answer;
        size_t answer_size;
        uint16_t status;
        char what[256];
        int r;

        snprintf(what, sizeof(what), "invoking '%s' on app '%s'", req->method, req->app_id);

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;

        r = sd_bus_message_new_method_call(bus, &call, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE,
                                           "InvokeMethod");
        if (r >= 0)
                r = sd_bus_message_append(call, "sss", req->app_id, req->method, req->verb);
        if (r >= 0)
                r = sd_bus_message_open_container(call, 'a', "(ss)");
        for (char **h = req->headers; r >= 0 && h && *h; h++) {
                /* validated by main(): "Name: value" */
                const char *colon = strchr(*h, ':');
                _cleanup_free_ char *name = strndup(*h, (size_t) (colon - *h));

                r = name ? sd_bus_message_append(call, "(ss)", name, colon + 1 + strspn(colon + 1, " \t")) : -ENOMEM;
        }
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (r >= 0)
                r = sd_bus_message_append_array(call, 'y', body ?: "", size);
        if (r < 0) {
                if (r == -ENOMEM)
                        return ctl_log_oom();
                return ctl_log_errno(r, "%s failed: cannot build the D-Bus call: %m", what);
        }

        /* no timeout of our own: mooringd bounds the call by the app's InvokeTimeoutSec= */
        r = sd_bus_call(bus, call, UINT64_MAX, &error, &reply);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, CTL_BUS_ERROR_NO_SUCH_APP)) {
                        ctl_log("no app '%s' is registered", req->app_id);
                        return -ENOENT;
                }
                r = ctl_bus_call_failed(o, r, &error, what);
                /* dbus-daemon drops a peer whose message exceeds max_message_size (32 MiB by default) */
                if (size >= BUS_HINT_SIZE && (r == -ECONNRESET || r == -EPIPE || r == -CTL_ERR_UNREACHABLE))
                        ctl_log("the bus may refuse a message of %zu bytes; use --socket for large data", size);
                return r;
        }

        r = sd_bus_message_read(reply, "q", &status);
        if (r < 0)
                return bad_reply(what, r);
        if (req->verbose)
                fprintf(stderr, "HTTP %u\n", status);
        r = sd_bus_message_enter_container(reply, 'a', "(ss)");
        if (r < 0)
                return bad_reply(what, r);
        for (;;) {
                const char *name, *value;

                r = sd_bus_message_read(reply, "(ss)", &name, &value);
                if (r < 0)
                        return bad_reply(what, r);
                if (r == 0)
                        break;
                if (req->verbose)
                        fprintf(stderr, "%s: %s\n", name, value);
        }
        r = sd_bus_message_exit_container(reply);
        if (r >= 0)
                r = sd_bus_message_read_array(reply, 'y', &answer, &answer_size);
        if (r < 0)
                return bad_reply(what, r);
        if (req->verbose)
                fputc('\n', stderr);

        write_body(answer, answer_size);
        return check_status(req, status);
}

/*
 * Report an HTTP answer that is mooringd's own error rather than the
 * callee's: Dapr's error shape with an invocation error code. (A callee that
 * answers the same JSON cannot be told apart; it is then reported as
 * mooringd's failure, with the same exit status.) Returns true if it was.
 */
static bool report_daemon_error(const CtlHttpReply *a, const char *what) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        const char *code = NULL, *message = NULL;

        if (a->status < 400 || a->body_size == 0)
                return false;
        j = json_loadb(a->body, a->body_size, 0, NULL);
        if (!j || json_unpack(j, "{s:s, s:s}", "errorCode", &code, "message", &message) < 0)
                return false;
        if (!streq(code, "ERR_DIRECT_INVOKE") && !streq(code, "ERR_PERMISSION_DENIED"))
                return false;
        ctl_log("%s failed: %s", what, message);
        return true;
}

/* "{VERB} /v1.0/invoke/APP/method/METHOD" on the shared socket. */
static int invoke_http(const CtlOptions *o, const CtlInvokeRequest *req, const void *body, size_t size) {
        _cleanup_(ctl_http_reply_done) CtlHttpReply a = {};
        _cleanup_free_ char *target = NULL;
        char what[256];
        int r;

        snprintf(what, sizeof(what), "invoking '%s' on app '%s'", req->method, req->app_id);

        /* METHOD is passed as written, with or without its leading '/' */
        if (asprintf(&target, "/v1.0/invoke/%s/method/%s", req->app_id,
                     req->method[0] == '/' ? req->method + 1 : req->method) < 0) {
                target = NULL;
                return ctl_log_oom();
        }
        const CtlHttpRequest hr = {
                .verb = req->verb,
                .target = target,
                .headers = req->headers,
                .body = body,
                .body_size = size,
                .timeout_sec = 0, /* mooringd bounds the call by the app's InvokeTimeoutSec= */
        };
        r = ctl_http_request(o, &hr, &a);
        if (r < 0)
                return r;

        if (req->verbose) {
                fprintf(stderr, "HTTP %ld\n", a.status);
                for (char **h = a.headers; h && *h; h++)
                        fprintf(stderr, "%s\n", *h);
                fputc('\n', stderr);
        }
        if (report_daemon_error(&a, what))
                return -EIO;
        write_body(a.body, a.body_size);
        return check_status(req, a.status < 0 || a.status > 999 ? 0 : (unsigned) a.status);
}

/*
 * "invoke APP METHOD": call the app, write its answer's body to standard
 * output. Returns 0 for a callee status 200-399, -EREMOTEIO (reported) for
 * any other status, or another reported negative errno when there was no
 * answer (-ENOENT: no such app; -CTL_ERR_UNREACHABLE: mooringd not running).
 */
int ctl_invoke(const CtlOptions *o, const CtlInvokeRequest *req) {
        _cleanup_free_ char *buf = NULL;
        const void *body;
        size_t size;
        int r;

        /* read the data first: a failure there should not need the daemon */
        r = ctl_load_data(req->data, &body, &size, &buf);
        if (r < 0)
                return r;

        /* --content-type, else application/json for JSON data (as the Dapr CLI sends it), unless a
         * --header names the type itself */
        const char *type = req->content_type;
        bool has_type = false;
        for (char **h = req->headers; h && *h; h++)
                has_type = has_type || strncasecmp(*h, "Content-Type:", 13) == 0;
        if (!type && !has_type && ctl_data_is_json(body, size))
                type = "application/json";
        if (!type)
                return o->socket_path ? invoke_http(o, req, body, size) : invoke_bus(o, req, body, size);

        size_t n = 0;
        while (req->headers && req->headers[n])
                n++;
        _cleanup_free_ char **headers = calloc(n + 2, sizeof(char *));
        _cleanup_free_ char *line = NULL;
        if (!headers || asprintf(&line, "Content-Type: %s", type) < 0) {
                line = NULL;
                return ctl_log_oom();
        }
        for (size_t i = 0; i < n; i++)
                headers[i] = req->headers[i];
        headers[n] = line;
        CtlInvokeRequest typed = *req;
        typed.headers = headers;
        return o->socket_path ? invoke_http(o, &typed, body, size) : invoke_bus(o, &typed, body, size);
}
