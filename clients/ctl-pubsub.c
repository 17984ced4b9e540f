/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl publish: publish a message on a topic through mooringd (Dapr's
 * pub/sub).
 *
 * Over D-Bus, Publish on org.mooring.Runtime1; with --socket or
 * $MOORING_SOCKET, "POST /v1.0/publish/PUBSUB/TOPIC?metadata.KEY=VALUE..."
 * on the shared socket. Either way the publisher is whoever runs mooringctl
 * (the app of its mooring-app@.service unit, or no app) and the pubsub's
 * scopes decide. Success means the broker has durably accepted the message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-bus.h"

/* From this size on, a lost bus connection probably means the bus refused our message. */
#define BUS_HINT_SIZE ((size_t) 16 << 20)

/* Publish(s pubsub, s topic, s content_type, ay data, a{ss} metadata) */
static int publish_bus(const CtlOptions *o, const CtlPublishRequest *req, const void *data, size_t size,
                       const char *what) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = ctl_bus_open(o, &bus);
        if (r < 0)
                return r;

        r = sd_bus_message_new_method_call(bus, &call, CTL_BUS_NAME, CTL_BUS_PATH, CTL_BUS_INTERFACE, "Publish");
        if (r >= 0)
                r = sd_bus_message_append(call, "sss", req->pubsub, req->topic, strempty(req->content_type));
        if (r >= 0)
                r = sd_bus_message_append_array(call, 'y', data ?: "", size);
        if (r >= 0)
                r = sd_bus_message_open_container(call, 'a', "{ss}");
        for (char **m = req->metadata; r >= 0 && m && *m; m++) {
                /* validated by main(): "KEY=VALUE" */
                const char *eq = strchr(*m, '=');
                _cleanup_free_ char *key = strndup(*m, (size_t) (eq - *m));

                r = key ? sd_bus_message_append(call, "{ss}", key, eq + 1) : -ENOMEM;
        }
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (r < 0) {
                if (r == -ENOMEM)
                        return ctl_log_oom();
                return ctl_log_errno(r, "%s failed: cannot build the D-Bus call: %m", what);
        }

        /* no timeout of our own: the broker answers, or mooringd reports its failure */
        r = sd_bus_call(bus, call, UINT64_MAX, &error, &reply);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, CTL_BUS_ERROR_NO_SUCH_PUBSUB)) {
                        ctl_log("%s failed: %s", what, error.message ?: "no such pubsub");
                        return -ENOENT;
                }
                r = ctl_bus_call_failed(o, r, &error, what);
                /* dbus-daemon drops a peer whose message exceeds max_message_size (32 MiB by default) */
                if (size >= BUS_HINT_SIZE && (r == -ECONNRESET || r == -EPIPE || r == -CTL_ERR_UNREACHABLE))
                        ctl_log("the bus may refuse a message of %zu bytes; use --socket for large data", size);
                return r;
        }
        return 0;
}

/* Writes s to f percent-encoded (RFC 3986 unreserved characters, and those in keep, stay as they are). */
static int append_escaped(FILE *f, const char *s, const char *keep) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                             strchr("-._~", *p) || (keep && strchr(keep, *p));
                if ((plain ? fputc(*p, f) : fprintf(f, "%%%02X", *p)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* "/v1.0/publish/PUBSUB/TOPIC?metadata.KEY=VALUE&...", malloc'd in *ret. */
static int publish_target(const CtlPublishRequest *req, char **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        r = fputs("/v1.0/publish/", f) < 0 ? -ENOMEM : 0;
        if (r >= 0)
                r = append_escaped(f, req->pubsub, NULL);
        if (r >= 0)
                r = fputc('/', f) < 0 ? -ENOMEM : 0;
        /* a topic may hold '/' (the route takes the rest of the path) */
        if (r >= 0)
                r = append_escaped(f, req->topic, "/");
        for (char **m = req->metadata; r >= 0 && m && *m; m++) {
                const char *eq = strchr(*m, '=');
                _cleanup_free_ char *key = strndup(*m, (size_t) (eq - *m));

                r = key && fputs(m == req->metadata ? "?metadata." : "&metadata.", f) >= 0 ? 0 : -ENOMEM;
                if (r >= 0)
                        r = append_escaped(f, key, NULL);
                if (r >= 0)
                        r = fputc('=', f) < 0 ? -ENOMEM : 0;
                if (r >= 0)
                        r = append_escaped(f, eq + 1, NULL);
        }
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0)
                return r;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* POST /v1.0/publish/... on the shared socket: 204 is success, anything else Dapr's error body. */
static int publish_http(const CtlOptions *o, const CtlPublishRequest *req, const void *data, size_t size,
                        const char *what) {
        _cleanup_(ctl_http_reply_done) CtlHttpReply a = {};
        _cleanup_(json_decrefp) json_t *j = NULL;
        _cleanup_free_ char *target = NULL, *content_type = NULL;
        char *headers[2] = {};
        const char *code = NULL, *message = NULL;
        int r;

        if (publish_target(req, &target) < 0)
                return ctl_log_oom();
        if (req->content_type) {
                if (asprintf(&content_type, "Content-Type: %s", req->content_type) < 0) {
                        content_type = NULL;
                        return ctl_log_oom();
                }
                headers[0] = content_type;
        }
        const CtlHttpRequest hr = {
                .verb = "POST",
                .target = target,
                .headers = headers,
                .body = data ?: "",
                .body_size = size,
                .timeout_sec = 0, /* the broker answers, or mooringd reports its failure */
        };
        r = ctl_http_request(o, &hr, &a);
        if (r < 0)
                return r;
        if (a.status >= 200 && a.status <= 299)
                return 0;

        if (a.body_size > 0)
                j = json_loadb(a.body, a.body_size, 0, NULL);
        if (j)
                (void) json_unpack(j, "{s?s, s?s}", "errorCode", &code, "message", &message);
        if (message && code)
                ctl_log("%s failed: %s (%s)", what, message, code);
        else
                ctl_log("%s failed: mooringd answered HTTP %ld", what, a.status);
        return code && (streq(code, "ERR_PUBSUB_NOT_FOUND") || streq(code, "ERR_PUBSUB_NOT_CONFIGURED")) ? -ENOENT
                                                                                                          : -EIO;
}

/*
 * "publish PUBSUB TOPIC DATA": returns 0 once the broker has the message,
 * or a reported negative errno (-ENOENT: no such pubsub;
 * -CTL_ERR_UNREACHABLE: mooringd not running).
 */
int ctl_publish(const CtlOptions *o, const CtlPublishRequest *req) {
        _cleanup_free_ char *buf = NULL;
        const void *data;
        size_t size;
        char what[256];
        int r;

        /* read the data first: a failure there should not need the daemon */
        r = ctl_load_data(req->data, &data, &size, &buf);
        if (r < 0)
                return r;
        snprintf(what, sizeof(what), "publishing to topic '%s' of pubsub '%s'", req->topic, req->pubsub);
        /* as the Dapr CLI does: JSON data goes out as JSON, so a subscriber's SDK gets an object */
        CtlPublishRequest typed = *req;
        if (!typed.content_type && ctl_data_is_json(data, size))
                typed.content_type = "application/json";
        return o->socket_path ? publish_http(o, &typed, data, size, what) : publish_bus(o, &typed, data, size, what);
}
