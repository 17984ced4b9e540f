/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See invoke.h. A call moves through: checks (target, access control,
 * health) → queued for a slot (MaxConcurrency=) → running (one curl
 * transfer through the app channel; on a failure before any answer byte, a
 * retry timer and another transfer) → done. One deadline timer covers all of
 * it. The answer streams out as it arrives: head from curl's header
 * callback, body from its write callback (paused when the front-end is full).
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/app.h"
#include "../core/configuration.h"
#include "../core/tracecontext.h"
#include "../manager.h"
#include "../transport/app-channel.h"
#include "../transport/http-client.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "invoke.h"

/* Dapr's built-in policy retries transport failures 3 times (1 s apart); on a local
 * socket an app restarting is usually back sooner, so back off from 250 ms. */
#define INVOKE_RETRIES 3
#define INVOKE_RETRY_FIRST_USEC (250 * 1000ULL)

typedef enum CallState {
        CALL_QUEUED,      /* waiting for a slot */
        CALL_RUNNING,     /* a transfer is out */
        CALL_BACKOFF,     /* waiting to retry */
        CALL_FINISHING,   /* done is scheduled */
} CallState;

struct InvokeCall {
        Manager *manager;
        App *target;                  /* ref */
        char *caller_app;             /* NULL: not an app */
        char *verb;
        char *path;                   /* "/method?query" for the callee */
        struct curl_slist *headers;   /* what the callee gets */
        const void *body;
        size_t body_len;
        const InvokeHandler *h;
        void *userdata;

        CallState state;
        bool holds_slot;
        unsigned attempt;             /* retries done */
        HttpClientRequest *req;
        CURL *easy;                   /* of req, while running */
        sd_event_source *deadline;
        sd_event_source *backoff;
        sd_event_source *later;       /* runs done (or unpauses) from the loop */
        bool paused, unpause;

        /* the answer */
        bool got_bytes;               /* any byte of an answer arrived: never retry */
        bool head_sent;
        unsigned status;
        char **resp_headers;          /* pairs */
        int64_t content_length;

        /* the end */
        int error;
        unsigned error_status;
        char *error_message;

        TraceContext span;
        char traceparent[TRACEPARENT_LEN + 1];
        uint64_t start_usec;
        InvokeCall *next, *prev;      /* Manager's list */
        AppSlotWaiter waiter;         /* in the target's line for a slot (first member not needed) */
};

/* Request headers the callee never gets from the caller: hop-by-hop ones (RFC 9110 7.6.1),
 * those curl computes, the caller's token, and those only mooringd may set. */
static const char *const request_skip[] = {
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "host", "content-length", "expect", "dapr-api-token", "traceparent", "tracestate",
        "dapr-caller-app-id", "dapr-callee-app-id", NULL,
};

/* Response headers the caller never gets: hop-by-hop, and those libmicrohttpd writes itself. */
static const char *const response_skip[] = {
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "content-length", "date", NULL,
};

static bool in_list_ci(const char *const *l, const char *s, size_t len) {
        for (; *l; l++)
                if (strlen(*l) == len && strncasecmp(*l, s, len) == 0)
                        return true;
        return false;
}

/* Is name listed in a Connection header value ("close, X-Foo")? Those are hop-by-hop too. */
static bool in_connection_tokens(const char *connection, const char *name) {
        size_t n = strlen(name);
        for (const char *p = connection; p && *p;) {
                p += strspn(p, " \t,");
                size_t len = strcspn(p, " \t,");
                if (len == n && strncasecmp(p, name, n) == 0)
                        return true;
                p += len;
        }
        return false;
}

static bool is_token(const char *s) {
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char) *s) && !strchr("!#$%&'*+-.^_`|~", *s))
                        return false;
        return true;
}

/* ---- lifecycle ---- */

static void call_free(InvokeCall *c) {
        Manager *m = c->manager;
        if (c->prev)
                c->prev->next = c->next;
        else if (m->invoke_calls == c)
                m->invoke_calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        http_client_cancel(c->req);
        sd_event_source_disable_unref(c->deadline);
        sd_event_source_disable_unref(c->backoff);
        sd_event_source_disable_unref(c->later);
        curl_slist_free_all(c->headers);
        strv_free(c->resp_headers);
        app_unref(c->target);
        free(c->caller_app);
        free(c->verb);
        free(c->path);
        free(c->error_message);
        free(c);
}

static void queue_remove(InvokeCall *c) {
        app_slot_cancel(c->target, &c->waiter);
}

static void start_transfer(InvokeCall *c);
static void finish(InvokeCall *c, int error, unsigned status, const char *fmt, ...) _printf_(4, 5);

static void on_slot_granted(AppSlotWaiter *w) {
        InvokeCall *c = (InvokeCall *) ((char *) w - offsetof(InvokeCall, waiter));
        c->holds_slot = true;
        start_transfer(c);
}

/* Done with the app: the next call (or delivery) in its line goes. */
static void release_slot(InvokeCall *c) {
        if (!c->holds_slot)
                return;
        c->holds_slot = false;
        app_slot_release(c->target);
}

static int on_later(sd_event_source *s, void *userdata) {
        InvokeCall *c = userdata;
        if (c->state != CALL_FINISHING) {
                /* An unpause: curl may deliver the held chunk right here, outside its callbacks. */
                c->unpause = false;
                if (c->paused && c->easy) {
                        c->paused = false;
                        (void) curl_easy_pause(c->easy, CURLPAUSE_CONT);
                }
                return 0;
        }

        uint64_t now = 0;
        (void) sd_event_now(c->manager->event, CLOCK_MONOTONIC, &now);
        char trace_id[33];
        trace_id_format(&c->span, trace_id);
        if (c->error_message)
                log_struct(LOG_DEBUG, 0, c->target->config->id, NULL,
                           "invoke %s -> %s %s %s failed after %.1f ms, %u retries: %s (trace %s)",
                           c->caller_app ?: "-", c->target->config->id, c->verb, c->path,
                           (double) (now - c->start_usec) / 1000.0, c->attempt, c->error_message, trace_id);
        else
                log_struct(LOG_DEBUG, 0, c->target->config->id, NULL,
                           "invoke %s -> %s %s %s: %u in %.1f ms, %u retries (trace %s)", c->caller_app ?: "-",
                           c->target->config->id, c->verb, c->path, c->status,
                           (double) (now - c->start_usec) / 1000.0, c->attempt, trace_id);

        InvokeError e = { .error = c->error, .status = c->error_status, .message = c->error_message };
        c->h->done(c, c->error_message ? &e : NULL, c->userdata);
        call_free(c);
        return 0;
}

/* Ends the call: stops whatever is out and runs done from the loop. error 0 (fmt NULL): success. */
static void finish(InvokeCall *c, int error, unsigned status, const char *fmt, ...) {
        if (c->state == CALL_FINISHING)
                return;
        if (c->state == CALL_QUEUED)
                queue_remove(c);
        c->state = CALL_FINISHING;
        if (c->req) {
                http_client_cancel(c->req);
                c->req = NULL;
                c->easy = NULL;
        }
        c->deadline = sd_event_source_disable_unref(c->deadline);
        c->backoff = sd_event_source_disable_unref(c->backoff);
        if (fmt) {
                _cleanup_free_ char *what = NULL;
                va_list ap;
                va_start(ap, fmt);
                if (vasprintf(&what, fmt, ap) < 0)
                        what = NULL;
                va_end(ap);
                c->error = error;
                c->error_status = status;
                if (asprintf(&c->error_message, "failed to invoke, id: %s, err: %s", c->target->config->id,
                             what ?: "out of memory") < 0)
                        c->error_message = NULL;
                if (!c->error_message)
                        c->error_message = strdup("failed to invoke: out of memory");
                /* Still NULL: success is reported; an OOM this deep cannot be said better. */
        }
        release_slot(c);
        (void) sd_event_source_set_enabled(c->later, SD_EVENT_ONESHOT);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        InvokeCall *c = userdata;
        finish(c, -ETIMEDOUT, 500, "timed out after %.1f s (InvokeTimeoutSec=)",
               (double) c->target->config->invoke_timeout_usec / 1e6);
        return 0;
}

/* ---- the transfer ---- */

static size_t on_header(char *buf, size_t size, size_t n, void *userdata) {
        InvokeCall *c = userdata;
        size_t len = size * n, l = len;

        c->got_bytes = true;
        while (l > 0 && (buf[l - 1] == '\r' || buf[l - 1] == '\n'))
                l--;
        if (l >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
                /* A status line: a new response starts (after a 1xx, the real one). */
                const char *sp = memchr(buf, ' ', l);
                c->status = sp ? (unsigned) strtoul(sp + 1, NULL, 10) : 0;
                c->resp_headers = strv_free(c->resp_headers);
                c->content_length = -1;
                return len;
        }
        if (l == 0) {
                /* End of a header block. */
                if (c->status < 200 || c->head_sent)
                        return len;
                c->head_sent = true;
                if (!c->resp_headers && !(c->resp_headers = calloc(1, sizeof(char *))))
                        return 0; /* OOM: curl aborts the transfer */
                c->h->head(c, c->status, c->resp_headers, c->content_length, c->userdata);
                return len;
        }
        const char *colon = memchr(buf, ':', l);
        if (!colon || colon == buf)
                return len; /* folded or malformed line: dropped */
        size_t nlen = (size_t) (colon - buf);
        const char *v = colon + 1, *end = buf + l;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        if (nlen == strlen("content-length") && strncasecmp(buf, "content-length", nlen) == 0) {
                char tmp[24] = "";
                memcpy(tmp, v, MIN((size_t) (end - v), sizeof tmp - 1));
                char *e;
                long long cl = strtoll(tmp, &e, 10);
                c->content_length = (e != tmp && *e == 0 && cl >= 0) ? cl : -1;
        }
        if (in_list_ci(response_skip, buf, nlen))
                return len;
        _cleanup_free_ char *name = strndup(buf, nlen), *value = strndup(v, (size_t) (end - v));
        if (!name || !value || strv_extend(&c->resp_headers, name) < 0 || strv_extend(&c->resp_headers, value) < 0)
                return 0;
        return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *userdata) {
        InvokeCall *c = userdata;
        size_t len = size * n;
        c->got_bytes = true;
        if (!c->head_sent || len == 0)
                return len; /* the body of a 1xx (none) */
        if (!c->h->body(c, buf, len, c->userdata)) {
                c->paused = true;
                return CURL_WRITEFUNC_PAUSE;
        }
        return len;
}

static int on_backoff(sd_event_source *s, uint64_t usec, void *userdata) {
        InvokeCall *c = userdata;
        c->backoff = sd_event_source_disable_unref(c->backoff);
        start_transfer(c);
        return 0;
}

static bool transport_error_retryable(CURLcode r) {
        return r == CURLE_COULDNT_CONNECT || r == CURLE_SEND_ERROR || r == CURLE_RECV_ERROR ||
               r == CURLE_GOT_NOTHING;
}

static void transfer_done(CURLcode result, long status, void *userdata) {
        InvokeCall *c = userdata;
        int os_errno = http_client_last_os_errno(c->manager->http_client);

        c->req = NULL;
        c->easy = NULL;
        if (c->state == CALL_FINISHING)
                return;
        if (result == CURLE_OK) {
                if (!c->head_sent) /* cannot happen with a final status; be safe */
                        return finish(c, -EIO, 500, "the app's answer had no final status");
                return finish(c, 0, 0, NULL);
        }
        if (result == CURLE_ABORTED_BY_CALLBACK)
                return finish(c, -ECANCELED, 500, "mooringd is stopping");

        const char *why = curl_easy_strerror(result);
        _cleanup_free_ char *detail = NULL;
        if (os_errno > 0 && asprintf(&detail, "%s (%s)", why, strerror(os_errno)) >= 0)
                why = detail;

        if (!c->got_bytes && transport_error_retryable(result) && c->attempt < INVOKE_RETRIES) {
                /* Nothing reached the app as far as an answer shows: try again a little later. */
                uint64_t delay = INVOKE_RETRY_FIRST_USEC << c->attempt;
                c->attempt++;
                log_struct(LOG_DEBUG, 0, c->target->config->id, NULL,
                           "invoke %s %s: %s; retry %u of %u in %llu ms", c->verb, c->path, why, c->attempt,
                           INVOKE_RETRIES, (unsigned long long) (delay / 1000));
                c->state = CALL_BACKOFF;
                if (sd_event_add_time_relative(c->manager->event, &c->backoff, CLOCK_MONOTONIC, delay, 1000,
                                               on_backoff, c) >= 0)
                        return;
        }
        if (c->head_sent)
                return finish(c, -EIO, 500, "the app's answer was cut short: %s", why);
        int err = result == CURLE_COULDNT_CONNECT && os_errno == ECONNREFUSED ? -ECONNREFUSED : -EIO;
        if (result == CURLE_COULDNT_CONNECT && os_errno == ENOENT)
                why = "no socket at the app's address (connection refused)";
        finish(c, err, 500, "%s%s", why, c->attempt ? " (after retries)" : "");
}

static void start_transfer(InvokeCall *c) {
        CURL *e = app_channel_new_easy(c->target, c->path);
        int r;

        if (!e)
                return finish(c, -ENOMEM, 500, "out of memory");
        c->state = CALL_RUNNING;
        c->status = 0;
        c->head_sent = c->got_bytes = false;
        c->resp_headers = strv_free(c->resp_headers);
        c->content_length = -1;

        curl_easy_setopt(e, CURLOPT_USERAGENT, NULL); /* the caller's, if it sent one */
        curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
        if (streq(c->verb, "HEAD"))
                curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        else if (c->body_len > 0 || streq(c->verb, "POST") || streq(c->verb, "PUT") || streq(c->verb, "PATCH")) {
                /* Sent from the front-end's buffer, not copied. */
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) c->body_len);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body_len ? c->body : "");
        }
        /* A body makes curl say POST: any other verb (GET with a body too) is named. */
        if (!streq(c->verb, "HEAD") && (!streq(c->verb, "GET") || c->body_len > 0) &&
            !(streq(c->verb, "POST") && c->body_len > 0))
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->verb);

        c->easy = e;
        r = http_client_start(c->manager->http_client, e, transfer_done, c, &c->req);
        if (r < 0) {
                c->easy = NULL;
                return finish(c, r, 500, "cannot start the request: %s", strerror(-r));
        }
}

/* ---- starting a call ---- */

static int add_header(struct curl_slist **l, const char *name, const char *value) {
        _cleanup_free_ char *line = NULL;
        /* "Name:" alone tells curl to drop a header; "Name;" sends it empty. */
        if (asprintf(&line, *value ? "%s: %s" : "%s;", name, value) < 0)
                return -ENOMEM;
        struct curl_slist *n = curl_slist_append(*l, line);
        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

static int build_headers(InvokeCall *c, const InvokeRequest *req, const char *tracestate) {
        const char *connection = NULL;
        bool has_type = false, has_accept = false;
        struct curl_slist *n;
        int r;

        for (char *const *h = req->headers; h && h[0] && h[1]; h += 2)
                if (strcasecmp(h[0], "connection") == 0)
                        connection = h[1];
        for (char *const *h = req->headers; h && h[0] && h[1]; h += 2) {
                if (!is_token(h[0]) || in_list_ci(request_skip, h[0], strlen(h[0])) ||
                    in_connection_tokens(connection, h[0]))
                        continue;
                has_type = has_type || strcasecmp(h[0], "content-type") == 0;
                has_accept = has_accept || strcasecmp(h[0], "accept") == 0;
                r = add_header(&c->headers, h[0], h[1]);
                if (r < 0)
                        return r;
        }
        /* curl would add its own defaults; the callee gets what the caller sent. */
        static const char *const suppress[] = { "Expect:", "Content-Type:", "Accept:" };
        for (size_t i = 0; i < ELEMENTSOF(suppress); i++) {
                if ((i == 1 && has_type) || (i == 2 && has_accept))
                        continue;
                if (!(n = curl_slist_append(c->headers, suppress[i])))
                        return -ENOMEM;
                c->headers = n;
        }
        if (c->caller_app && (r = add_header(&c->headers, "dapr-caller-app-id", c->caller_app)) < 0)
                return r;
        if ((r = add_header(&c->headers, "dapr-callee-app-id", c->target->config->id)) < 0)
                return r;
        if ((r = add_header(&c->headers, "traceparent", c->traceparent)) < 0)
                return r;
        if (tracestate && (r = add_header(&c->headers, "tracestate", tracestate)) < 0)
                return r;
        return 0;
}

static const char *header_get(char *const *headers, const char *name) {
        for (char *const *h = headers; h && h[0] && h[1]; h += 2)
                if (strcasecmp(h[0], name) == 0)
                        return h[1];
        return NULL;
}

static bool sampled_by(const Configuration *cfg) {
        double rate = cfg && cfg->tracing.sampling_rate_set ? cfg->tracing.sampling_rate : 0.0001;
        return rate >= 1.0 || (rate > 0 && (double) random() / RAND_MAX < rate);
}

int invoke_start(Manager *m, const InvokeRequest *req, const InvokeHandler *h, void *userdata, InvokeCall **ret) {
        const Configuration *cfg = NULL;
        const char *cfg_error = NULL, *reason = NULL;
        App *target;
        int r;

        if (!is_token(req->verb) || streq(req->verb, "CONNECT") || !req->method)
                return -EINVAL;

        InvokeCall *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        *c = (InvokeCall){ .manager = m, .h = h, .userdata = userdata, .body = req->body,
                           .body_len = req->body_len, .content_length = -1 };
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &c->start_usec);
        c->verb = strdup(req->verb);
        c->caller_app = req->caller_app ? strdup(req->caller_app) : NULL;
        if (asprintf(&c->path, "%s%s", req->method[0] == '/' ? "" : "/", req->method) < 0)
                c->path = NULL;
        if (!c->verb || !c->path || (req->caller_app && !c->caller_app) ||
            sd_event_add_defer(m->event, &c->later, on_later, c) < 0) {
                free(c->verb);
                free(c->caller_app);
                free(c->path);
                sd_event_source_disable_unref(c->later);
                free(c);
                return -ENOMEM;
        }
        (void) sd_event_source_set_enabled(c->later, SD_EVENT_OFF);
        c->next = m->invoke_calls;
        if (c->next)
                c->next->prev = c;
        m->invoke_calls = c;

        /* Until the target is known, messages name the id as asked. */
        target = manager_find_app(m, req->target_app);
        if (!target) {
                /* A placeholder App so every path below can name the target. */
                AppConfig *ac = app_config_new(req->target_app);
                c->target = ac ? app_new(ac, APP_SOURCE_BUS) : NULL;
                if (!c->target) {
                        app_config_free(ac);
                        call_free(c);
                        return -ENOMEM;
                }
                trace_context_new_span(NULL, false, &c->span);
                traceparent_format(&c->span, c->traceparent);
                finish(c, -ENOENT, 500, "no app '%s' is registered on this host", req->target_app);
                goto started;
        }
        c->target = app_ref(target);

        r = manager_app_configuration(m, target, &cfg, &cfg_error);
        if (r == -ENOMEM) {
                call_free(c);
                return r;
        }

        TraceContext parent;
        const char *tp = header_get(req->headers, "traceparent");
        bool has_parent = traceparent_parse(tp, &parent) >= 0;
        trace_context_new_span(has_parent ? &parent : NULL, sampled_by(cfg), &c->span);
        traceparent_format(&c->span, c->traceparent);
        const char *ts = has_parent ? header_get(req->headers, "tracestate") : NULL;
        if (ts && !tracestate_is_valid(ts))
                ts = NULL;

        if (r < 0) {
                /* Fail closed: an access policy that cannot be read allows nothing. */
                finish(c, -EACCES, 403, "access control configuration is invalid: %s", cfg_error);
                goto started;
        }
        if (acl_evaluate(cfg, req->caller_app, req->verb, req->method, &reason) == ACL_DENY) {
                finish(c, -EACCES, 403, "access control policy has denied access to id: %s operation: %s verb: %s (%s)",
                       target->config->id, req->method, req->verb, reason);
                goto started;
        }
        if (target->config->address_kind == APP_ADDRESS_NONE) {
                finish(c, -EADDRNOTAVAIL, 500, "app '%s' has no AppAddress: it takes no calls", target->config->id);
                goto started;
        }
        if (app_channel_is_down(target)) {
                finish(c, -EHOSTDOWN, 500, "app '%s' is unhealthy (its health probe fails)", target->config->id);
                goto started;
        }

        r = build_headers(c, req, ts);
        if (r < 0) {
                call_free(c);
                return r;
        }
        if (target->config->invoke_timeout_usec > 0 &&
            sd_event_add_time_relative(m->event, &c->deadline, CLOCK_MONOTONIC, target->config->invoke_timeout_usec,
                                       1000, on_deadline, c) < 0) {
                call_free(c);
                return -ENOMEM;
        }

        c->waiter.granted = on_slot_granted;
        if (app_slot_acquire(target, &c->waiter)) {
                c->holds_slot = true;
                /* Adding a transfer runs none of its callbacks (curl starts it from the loop),
                 * so starting here keeps the promise that nothing runs inside invoke_start(). */
                start_transfer(c);
        } else
                c->state = CALL_QUEUED;

started:
        if (ret)
                *ret = c;
        return 0;
}

void invoke_call_resume(InvokeCall *c) {
        if (!c || !c->paused || c->unpause || c->state != CALL_RUNNING)
                return;
        c->unpause = true;
        (void) sd_event_source_set_enabled(c->later, SD_EVENT_ONESHOT);
}

void invoke_call_cancel(InvokeCall *c) {
        if (!c)
                return;
        if (c->state == CALL_QUEUED)
                queue_remove(c);
        if (c->req) {
                http_client_cancel(c->req);
                c->req = NULL;
        }
        release_slot(c);
        call_free(c);
}

const char *invoke_call_traceparent(const InvokeCall *c) {
        return c->traceparent;
}

void invoke_abort_all(Manager *m) {
        /* Each done may start nothing new (the manager is going away); take the list as it is. */
        while (m->invoke_calls) {
                InvokeCall *c = m->invoke_calls;
                if (c->state != CALL_FINISHING)
                        finish(c, -ECANCELED, 500, "mooringd is stopping");
                on_later(c->later, c); /* runs done and frees c */
        }
}

void invoke_app_removed(Manager *m, App *a) {
        for (InvokeCall *c = m->invoke_calls, *n; c; c = n) {
                n = c->next;
                if (c->target == a && c->state == CALL_QUEUED)
                        finish(c, -ENOENT, 500, "app '%s' was removed", a->config->id);
        }
}
