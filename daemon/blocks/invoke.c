/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See invoke.h. A call moves through: checks (target, access control,
 * health, hops) → queued for a slot (MaxConcurrency=) → running (one
 * transport call, which resends by itself while no answer byte arrived) →
 * done. One deadline timer covers all of it. The answer streams out as it
 * arrives: head, then body chunks (paused when the front-end is full).
 */
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/app.h"
#include "../core/configuration.h"
#include "../core/membership.h"
#include "../core/metrics.h"
#include "../core/trace.h"
#include "../core/tracecontext.h"
#include "../core/registry.h"
#include "../core/resiliency.h"
#include "../core/settings.h"
#include "../transport/app-channel.h"
#include "../transport/transport.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "invoke.h"

/* Dapr's built-in policy retries transport failures 3 times (1 s apart); on a local
 * socket an app restarting is usually back sooner: the transport backs off from 250 ms. */
#define INVOKE_RETRIES 3
/* Calls through this host that one request may cause, each a hop (see mooring-hops below). */
#define INVOKE_MAX_HOPS 16

typedef enum CallState {
        CALL_QUEUED,      /* waiting for a slot */
        CALL_RUNNING,     /* the transport has it */
        CALL_WAITING,     /* a Resiliency retry waits for its back-off */
        CALL_FINISHING,   /* done is scheduled */
} CallState;

typedef struct RemoteInstance {
        char *host_id;
        char *address;                /* "ADDR:PORT" / "[V6]:PORT" */
} RemoteInstance;

struct InvokeCall {
        Registry *registry;
        App *target;                  /* ref */
        char *caller_app;             /* NULL: not an app; this and the next two follow slots[] */
        char *verb;
        char *path;                   /* "/method?query" for the callee */
        char **headers;               /* what the callee gets: name, value pairs; the array is ours,
                                       * the strings the caller's (InvokeRequest), ours, or below */
        char hops_text[24];
        const void *body;
        size_t body_len;
        const InvokeHandler *h;
        void *userdata;

        CallState state;
        bool holds_slot;
        bool starting;                /* inside invoke_start(): done waits for the loop */
        TransportCall *tc;
        uint64_t deadline_usec;       /* 0: none; else in the registry's deadline list */
        InvokeCall *dl_next, *dl_prev;
        sd_event_source *later;       /* runs done from the loop when it cannot run at once */

        /* the answer */
        bool head_sent;
        unsigned status;
        unsigned attempts;

        /* the end */
        int error;
        char *error_message;

        TraceContext span;
        char traceparent[TRACEPARENT_LEN + 1];
        uint64_t transfer_usec;       /* metrics: when the call went to the app (0: it never did) */
        Span tspan;                   /* the exported CLIENT span (core/trace.h), when traced */
        bool traced;
        uint64_t received;            /* answer body bytes taken */
        uint64_t start_usec;
        InvokeCall *next, *prev;      /* the registry's list */
        AppSlotWaiter waiter;         /* in the target's line for a slot */

        /* Resiliency (core/resiliency.h): set when a policy targets the callee for this caller */
        Resiliency *res;              /* ref: the set the policy belongs to */
        ResiliencyPolicy policy;
        unsigned retries_done;
        uint64_t breaker_generation;
        bool breaker_counting;        /* the running attempt was allowed by the breaker */
        bool discarding;              /* a failed answer that is retried: it never reaches the caller */
        uint64_t retry_delay_usec;    /* the back-off before the next attempt */
        unsigned transport_retries;   /* resends while nothing reached the app (no retry policy) */
        sd_event_source *res_timer;   /* the attempt's timeout, or the back-off before the next one */

        /* On another host (multi-host): the target app has no healthy instance here, so the call goes
         * over the peer transport to a host that announces one. Instances are tried in turn, starting
         * at a rotating one; another is tried only while no answer byte has come (as locally). */
        RemoteInstance *remote;       /* NULL: the app is on this host */
        size_t n_remote;
        size_t remote_at;             /* the instance of the running attempt */
        size_t remote_tried;          /* instances tried so far in this attempt */
        char *remote_target;          /* "/v1.0/invoke/<app>/method/<path>" */
        /* One allocation with the call: the headers array (the caller's pairs and at most five of
         * ours), then the strings verb, path and caller_app. */
        char *slots[];
};

/* Slots for a request with n header strings (names and values): ours and the NULL. */
#define INVOKE_HEADER_SLOTS(n) ((n) + 11)

/*
 * Request headers the callee never gets from the caller: hop-by-hop ones (RFC 9110 7.6.1), those
 * the transport writes, the caller's token, and those only mooringd may set. dapr-app-id routed
 * this call: forwarding it made an app whose address is a mooringd listener call itself without
 * end (daprd stopped forwarding it too, dapr/dapr#8893).
 */
static const HeaderName request_skip[] = {
        HEADER_NAME("connection"), HEADER_NAME("keep-alive"), HEADER_NAME("proxy-connection"),
        HEADER_NAME("te"), HEADER_NAME("trailer"), HEADER_NAME("transfer-encoding"), HEADER_NAME("upgrade"),
        HEADER_NAME("host"), HEADER_NAME("content-length"), HEADER_NAME("expect"),
        HEADER_NAME("dapr-api-token"), HEADER_NAME("traceparent"), HEADER_NAME("tracestate"),
        HEADER_NAME("dapr-app-id"), HEADER_NAME("dapr-caller-app-id"), HEADER_NAME("dapr-callee-app-id"),
        HEADER_NAME("dapr-caller-namespace"), HEADER_NAME("dapr-callee-namespace"),
        HEADER_NAME(INVOKE_HOPS_HEADER), HEADER_NAME(INVOKE_PEER_CALLER_HEADER),
};

/* Response headers the caller never gets: hop-by-hop, and those the front-end writes itself
 * (traceparent: the front-end adds this call's own; passing the callee's on too gave a chain of
 * calls one traceparent per hop in its answer). */
static const HeaderName response_skip[] = {
        HEADER_NAME("connection"), HEADER_NAME("keep-alive"), HEADER_NAME("proxy-connection"),
        HEADER_NAME("te"), HEADER_NAME("trailer"), HEADER_NAME("transfer-encoding"), HEADER_NAME("upgrade"),
        HEADER_NAME("content-length"), HEADER_NAME("date"), HEADER_NAME("traceparent"),
};

static bool skipped(const HeaderName *l, size_t n, const char *name) {
        return header_name_in(l, n, name, strlen(name));
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

/* name is lower case */
static const char *header_get(char *const *headers, const char *name) {
        for (char *const *h = headers; h && h[0] && h[1]; h += 2)
                if ((h[0][0] | 0x20) == name[0] && ascii_eq_ci(h[0], name))
                        return h[1];
        return NULL;
}

/* ---- deadlines ----
 *
 * Every call with a deadline sits in one list, earliest first, under one timer. A timer source
 * per call cost more than the rest of starting a call. Calls to one app share a timeout, so a
 * new call goes to the end of the list in one step; a call that ends leaves the timer as it is,
 * which then fires early at most once and is set for the next deadline.
 */

#define INVOKE_DEADLINE_ACCURACY_USEC (50 * 1000ULL)

static void deadline_unlink(InvokeCall *c) {
        Registry *m = c->registry;
        if (c->deadline_usec == 0)
                return;
        if (c->dl_prev)
                c->dl_prev->dl_next = c->dl_next;
        else
                m->invoke_deadline_first = c->dl_next;
        if (c->dl_next)
                c->dl_next->dl_prev = c->dl_prev;
        else
                m->invoke_deadline_last = c->dl_prev;
        c->dl_next = c->dl_prev = NULL;
        c->deadline_usec = 0;
}

static int deadline_arm(Registry *m, uint64_t at) {
        int r = sd_event_source_set_time(m->invoke_timer, at);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->invoke_timer, SD_EVENT_ONESHOT);
        m->invoke_timer_usec = r >= 0 ? at : 0;
        return r;
}

static void finish(InvokeCall *c, int error, const char *fmt, ...) _printf_(3, 4);

static uint64_t now_usec(const InvokeCall *c) {
        uint64_t now = 0;
        (void) sd_event_now(c->registry->event, CLOCK_MONOTONIC, &now);
        return now;
}

static int on_deadlines(sd_event_source *s, uint64_t usec, void *userdata) {
        Registry *m = userdata;
        uint64_t now = usec;

        m->invoke_timer_usec = 0;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        while (m->invoke_deadline_first && m->invoke_deadline_first->deadline_usec <= now) {
                InvokeCall *c = m->invoke_deadline_first;
                deadline_unlink(c);
                finish(c, -ETIMEDOUT, "timed out after %.1f s (InvokeTimeoutSec=)",
                       (double) c->target->config->invoke_timeout_usec / 1e6);
        }
        if (m->invoke_deadline_first)
                (void) deadline_arm(m, m->invoke_deadline_first->deadline_usec);
        return 0;
}

static int deadline_link(InvokeCall *c, uint64_t at) {
        Registry *m = c->registry;
        int r;

        if (!m->invoke_timer) {
                r = sd_event_add_time(m->event, &m->invoke_timer, CLOCK_MONOTONIC, at,
                                      INVOKE_DEADLINE_ACCURACY_USEC, on_deadlines, m);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(m->invoke_timer, "invoke-deadlines");
                m->invoke_timer_usec = at;
        } else if (m->invoke_timer_usec == 0 || at < m->invoke_timer_usec) {
                r = deadline_arm(m, at);
                if (r < 0)
                        return r;
        }
        InvokeCall *p = m->invoke_deadline_last;
        while (p && p->deadline_usec > at)
                p = p->dl_prev;
        c->deadline_usec = at;
        c->dl_prev = p;
        c->dl_next = p ? p->dl_next : m->invoke_deadline_first;
        if (c->dl_next)
                c->dl_next->dl_prev = c;
        else
                m->invoke_deadline_last = c;
        if (p)
                p->dl_next = c;
        else
                m->invoke_deadline_first = c;
        return 0;
}

/* ---- lifecycle ---- */

static void call_free(InvokeCall *c) {
        Registry *m = c->registry;
        if (c->prev)
                c->prev->next = c->next;
        else if (m->invoke_calls == c)
                m->invoke_calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        transport_call_cancel(c->tc);
        deadline_unlink(c);
        sd_event_source_disable_unref(c->later);
        sd_event_source_disable_unref(c->res_timer);
        resiliency_unref(c->res);
        app_unref(c->target);
        for (size_t i = 0; i < c->n_remote; i++) {
                free(c->remote[i].host_id);
                free(c->remote[i].address);
        }
        free(c->remote);
        free(c->remote_target);
        free(c->error_message);
        free(c);
}

static void start_transfer(InvokeCall *c);

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

/* Logs the outcome, tells the front-end, frees the call. */
static void complete(InvokeCall *c) {
        if (log_get_max_level() >= LOG_DEBUG) {
                uint64_t now = 0;
                (void) sd_event_now(c->registry->event, CLOCK_MONOTONIC, &now);
                char trace_id[33];
                trace_id_format(&c->span, trace_id);
                if (c->error_message)
                        log_struct(LOG_DEBUG, 0, c->target->config->id, NULL,
                                   "invoke %s -> %s %s %s failed after %.1f ms, %u attempts: %s (trace %s)",
                                   c->caller_app ?: "-", c->target->config->id, c->verb, c->path,
                                   (double) (now - c->start_usec) / 1000.0, c->attempts, c->error_message,
                                   trace_id);
                else
                        log_struct(LOG_DEBUG, 0, c->target->config->id, NULL,
                                   "invoke %s -> %s %s %s: %u in %.1f ms (trace %s)", c->caller_app ?: "-",
                                   c->target->config->id, c->verb, c->path, c->status,
                                   (double) (now - c->start_usec) / 1000.0, trace_id);
        }
        InvokeError e = { .error = c->error, .message = c->error_message };
        c->h->done(c, c->error_message ? &e : NULL, c->userdata);
        call_free(c);
}

static int on_later(sd_event_source *s, void *userdata) {
        complete(userdata);
        return 0;
}

/* Ends the call: stops whatever is out and runs done (from the loop if we are inside
 * invoke_start()). error 0 (fmt NULL): success. */
static void finish(InvokeCall *c, int error, const char *fmt, ...) {
        if (c->state == CALL_FINISHING)
                return;
        if (c->state == CALL_QUEUED)
                app_slot_cancel(c->target, &c->waiter);
        c->state = CALL_FINISHING;
        c->res_timer = sd_event_source_disable_unref(c->res_timer);
        if (c->breaker_counting) { /* an attempt cut short (deadline, app removed): a failure */
                c->breaker_counting = false;
                resiliency_breaker_report(c->policy.breaker, c->breaker_generation, false, now_usec(c));
        }
        uint64_t now = c->traced || c->transfer_usec ? metrics_now_usec() : 0; /* one reading for both */
        if (c->traced)
                trace_span_end_at(&c->tspan, now, c->head_sent ? c->status : 0, fmt != NULL || c->status >= 500);
        if (c->transfer_usec)
                metrics_http_client(c->target->metrics, METRICS_CALL_INVOKE, c->verb, c->head_sent ? c->status : 0,
                                    c->body_len, c->received, now - c->transfer_usec);
        TransportCall *tc = TAKE_PTR(c->tc);
        transport_call_cancel(tc);
        deadline_unlink(c);
        if (fmt) {
                _cleanup_free_ char *what = NULL;
                va_list ap;
                va_start(ap, fmt);
                if (vasprintf(&what, fmt, ap) < 0)
                        what = NULL;
                va_end(ap);
                c->error = error;
                if (asprintf(&c->error_message, "failed to invoke, id: %s, err: %s", c->target->config->id,
                             what ?: "out of memory") < 0)
                        c->error_message = NULL;
                if (!c->error_message)
                        c->error_message = strdup("failed to invoke: out of memory");
                /* Still NULL: success is reported; an OOM this deep cannot be said better. */
        }
        release_slot(c);
        if (c->starting) {
                if (sd_event_add_defer(c->registry->event, &c->later, on_later, c) >= 0)
                        return;
                /* No way to wait for the loop (OOM): the front-end copes with an early done. */
        }
        complete(c);
}

/* ---- Resiliency: attempts, back-off, breaker ---- */

static void start_transfer(InvokeCall *c);

/* Whether the policy allows one more attempt now; stores its back-off. */
static bool resiliency_retry_possible(InvokeCall *c) {
        return c->policy.retry && resiliency_retry_next(c->policy.retry, c->retries_done + 1,
                                                        now_usec(c) - c->start_usec, &c->retry_delay_usec);
}

/* Tells the breaker how the attempt it allowed went (once). */
static void attempt_report(InvokeCall *c, bool ok) {
        if (!c->breaker_counting)
                return;
        c->breaker_counting = false;
        resiliency_breaker_report(c->policy.breaker, c->breaker_generation, ok, now_usec(c));
}

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        InvokeCall *c = userdata;
        c->res_timer = sd_event_source_disable_unref(c->res_timer);
        /* the next attempt queues for a slot like a new call: a back-off holds none */
        if (app_slot_acquire(c->target, &c->waiter)) {
                c->holds_slot = true;
                start_transfer(c);
        } else
                c->state = CALL_QUEUED;
        return 0;
}

/* The attempt failed and the policy allows another (resiliency_retry_possible() said so). */
static void attempt_retry(InvokeCall *c) {
        int r;
        c->retries_done++;
        c->discarding = false;
        c->status = 0;
        release_slot(c);
        c->state = CALL_WAITING;
        r = sd_event_add_time_relative(c->registry->event, &c->res_timer, CLOCK_MONOTONIC, c->retry_delay_usec, 0,
                                       on_retry_timer, c);
        if (r < 0)
                finish(c, r, "cannot wait to retry: %s", strerror(-r));
}

/* The policy's timeout for one attempt: daprd answers "context deadline exceeded". */
static int on_attempt_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        InvokeCall *c = userdata;
        c->res_timer = sd_event_source_disable_unref(c->res_timer);
        if (c->head_sent) { /* the answer is streaming to the caller: it is cut */
                finish(c, -ETIMEDOUT, "context deadline exceeded");
                return 0;
        }
        TransportCall *tc = TAKE_PTR(c->tc);
        transport_call_cancel(tc);
        attempt_report(c, false);
        if (c->discarding || resiliency_retry_possible(c))
                attempt_retry(c);
        else
                finish(c, -ETIMEDOUT, "context deadline exceeded");
        return 0;
}

/* ---- the transfer ---- */

static void on_answer_head(TransportCall *tc, const TransportAnswer *a, void *userdata) {
        InvokeCall *c = userdata;
        const char *connection = header_get(a->headers, "connection");

        char *small[64], **keep = small;
        size_t n = 0, k = 0;

        /* With a Resiliency policy a status outside 200-399 is a failed attempt (as daprd's direct
         * messaging counts it); while another attempt will follow, the caller never sees it. */
        if (c->res && (a->status < 200 || a->status >= 400) && resiliency_retry_possible(c)) {
                c->discarding = true;
                c->status = a->status;
                return;
        }
        c->head_sent = true;
        c->status = a->status;
        while (a->headers[n])
                n++;
        if (n + 1 > ELEMENTSOF(small) && !(keep = malloc((n + 1) * sizeof(char *))))
                return finish(c, -ENOMEM, "out of memory");
        /* The front-end copies what it keeps: pointers into the transport's answer do. */
        for (char *const *h = a->headers; h[0] && h[1]; h += 2) {
                if (skipped(response_skip, ELEMENTSOF(response_skip), h[0]) || in_connection_tokens(connection, h[0]))
                        continue;
                keep[k++] = h[0];
                keep[k++] = h[1];
        }
        keep[k] = NULL;
        c->h->head(c, c->status, keep, a->content_length, c->userdata);
        if (keep != small)
                free(keep);
}

static bool on_answer_body(TransportCall *tc, const void *buf, size_t len, void *userdata) {
        InvokeCall *c = userdata;
        if (c->discarding)
                return true;
        bool taken = c->h->body(c, buf, len, c->userdata);
        if (taken)
                c->received += len;
        return taken;
}

static void on_answer_done(TransportCall *tc, const TransportAnswer *a, const TransportError *e, void *userdata) {
        InvokeCall *c = userdata;

        c->tc = NULL; /* the transport frees it after this returns */
        if (c->res && (!e || e->error != -ECANCELED)) {
                bool ok = !e && !c->discarding && c->status >= 200 && c->status < 400;
                c->res_timer = sd_event_source_disable_unref(c->res_timer);
                attempt_report(c, ok);
                /* a failed answer held back, or a failure before any answer: the next attempt */
                if (c->discarding || (e && !c->head_sent && resiliency_retry_possible(c)))
                        return attempt_retry(c);
        }
        if (!e)
                return finish(c, 0, NULL);
        if (c->remote && !c->head_sent && e->error != -ECANCELED && ++c->remote_tried < c->n_remote) {
                log_struct(LOG_INFO, 0, c->target->config->id, NULL,
                           "invoke %s: host %s failed before answering (%s), trying host %s",
                           c->target->config->id, c->remote[c->remote_at].host_id, e->message,
                           c->remote[(c->remote_at + 1) % c->n_remote].host_id);
                c->remote_at = (c->remote_at + 1) % c->n_remote;
                return start_transfer(c);
        }
        c->attempts = e->attempts;
        if (e->error == -ECANCELED)
                return finish(c, -ECANCELED, "mooringd is stopping");
        if (c->head_sent)
                return finish(c, -EIO, "%s", e->message);
        if (e->error == -ECONNREFUSED || e->error == -ENOENT)
                return finish(c, -ECONNREFUSED, "%s", e->message);
        finish(c, -EIO, "%s", e->message);
}

static const TransportHandler answer_handler = {
        .head = on_answer_head,
        .body = on_answer_body,
        .done = on_answer_done,
};

static void start_transfer(InvokeCall *c) {
        TransportAddress addr;
        int r;

        if (c->policy.breaker) {
                const char *msg = NULL;
                r = resiliency_breaker_allow(c->policy.breaker, now_usec(c), &c->breaker_generation, &msg);
                if (r < 0)
                        return finish(c, r, "%s", msg);
                c->breaker_counting = true;
        }
        if (c->policy.timeout_usec > 0) {
                r = sd_event_add_time_relative(c->registry->event, &c->res_timer, CLOCK_MONOTONIC,
                                               c->policy.timeout_usec, 0, on_attempt_timeout, c);
                if (r < 0)
                        return finish(c, r, "cannot set the timeout: %s", strerror(-r));
        }
        _cleanup_free_ char *remote_host = NULL;
        if (c->remote) {
                const RemoteInstance *ri = &c->remote[c->remote_at];
                uint16_t port;
                if (cluster_parse_address(ri->address, &remote_host, &port) < 0)
                        return finish(c, -EIO, "host %s announces a bad address '%s'", ri->host_id, ri->address);
                addr = (TransportAddress){ .kind = TRANSPORT_ADDRESS_TCP, .host = remote_host, .port = port,
                                           .peer_host = ri->host_id };
        } else
                (void) app_channel_address(c->target, &addr); /* checked in invoke_start() */
        TransportRequest req = {
                .method = c->verb,
                .target = c->remote_target ?: c->path,
                .headers = c->headers,
                .body = c->body,
                .body_len = c->body_len,
                /* the deadline above bounds them; a Resiliency retry policy replaces them */
                .retries = c->policy.retry || c->remote ? 0 : c->transport_retries,
        };
        c->state = CALL_RUNNING;
        c->transfer_usec = metrics_now_usec();
        r = transport_call_start(c->registry->transport, &addr, &req, &answer_handler, c, &c->tc);
        if (r < 0)
                finish(c, r, "cannot start the request: %s", strerror(-r));
}

/* ---- starting a call ---- */

static void build_headers(InvokeCall *c, const InvokeRequest *req, const char *tracestate, unsigned hops) {
        const char *connection = header_get(req->headers, "connection");
        char **v = c->slots; /* INVOKE_HEADER_SLOTS() of them */
        size_t k = 0;

        for (char *const *h = req->headers; h && h[0] && h[1]; h += 2) {
                /* Names are tokens: both front-ends refuse others, and the transport checks again. */
                if (skipped(request_skip, ELEMENTSOF(request_skip), h[0]) || in_connection_tokens(connection, h[0]))
                        continue;
                /* Basic credentials "dapr-app-id:<id>" that routed the call are a routing header. */
                if (req->routed_by_authorization && ascii_eq_ci(h[0], "authorization"))
                        continue;
                v[k++] = h[0];
                v[k++] = h[1];
        }
        if (c->caller_app) {
                /* to a peer mooringd the caller is named in its own header, believed there only
                 * because this host's certificate was verified (blocks/invoke.h) */
                v[k++] = c->remote ? (char *) INVOKE_PEER_CALLER_HEADER : (char *) "dapr-caller-app-id";
                v[k++] = c->caller_app;
        }
        v[k++] = (char *) "dapr-callee-app-id";
        v[k++] = c->target->config->id;
        v[k++] = (char *) "traceparent";
        v[k++] = c->traceparent;
        if (tracestate) {
                v[k++] = (char *) "tracestate";
                v[k++] = (char *) tracestate;
        }
        *fmt_u64(c->hops_text, hops) = 0;
        v[k++] = (char *) INVOKE_HOPS_HEADER;
        v[k++] = c->hops_text;
        v[k] = NULL;
        /* The strings stay where they are: the caller's live until done (see invoke.h). */
        c->headers = v;
}

static bool sampled_by(const Configuration *cfg) {
        double rate = cfg && cfg->tracing.sampling_rate_set ? cfg->tracing.sampling_rate : 0.0001;
        return rate >= 1.0 || (rate > 0 && (double) random() / RAND_MAX < rate);
}

/* The hosts other than this one that announce a healthy instance of app id, starting at a rotating
 * one (the balance), into c. 0 when there is none. */
static int remote_instances(InvokeCall *c, const char *id) {
        Registry *m = c->registry;
        size_t n = 0, k = 0;
        const ClusterHost *hosts = m->membership ? membership_hosts(m->membership, &n) : NULL;

        for (size_t i = 0; i < n; i++)
                k += !hosts[i].self && strv_contains(hosts[i].apps, id);
        if (k == 0)
                return 0;
        if (!(c->remote = calloc(k, sizeof *c->remote)))
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (hosts[i].self || !strv_contains(hosts[i].apps, id))
                        continue;
                RemoteInstance *ri = &c->remote[c->n_remote++];
                if (!(ri->host_id = strdup(hosts[i].id)) || !(ri->address = strdup(hosts[i].address)))
                        return -ENOMEM;
        }
        c->remote_at = m->invoke_rr++ % c->n_remote;
        if (asprintf(&c->remote_target, "/v1.0/invoke/%s/method%s", id, c->path) < 0) {
                c->remote_target = NULL;
                return -ENOMEM;
        }
        return 1;
}

/* The call's span (a child of the front-end's or of the caller's traceparent) and its traceparent
 * for the callee; returns the tracestate to forward, or NULL. */
static const char *trace_setup(InvokeCall *c, const InvokeRequest *req, const Configuration *cfg) {
        TraceContext parent;
        /* the front-end's span, when there is one, stands for the caller's traceparent: no lookup */
        const char *tp = req->trace_parent ? NULL : header_get(req->headers, "traceparent");
        bool has_parent = req->trace_parent || traceparent_parse(tp, &parent) >= 0;
        bool caller_sent_tp = req->trace_parent ? req->trace_parent_remote : tp != NULL;
        if (req->trace_parent)
                parent = *req->trace_parent;
        if (trace_enabled()) {
                /* The span the callee's traceparent names is the one exported: "CallLocal/<app>/<method>". */
                trace_span_begin(&c->tspan, has_parent ? &parent : NULL,
                                 cfg && cfg->tracing.sampling_rate_set ? cfg->tracing.sampling_rate : 0.0001,
                                 SPAN_CLIENT, "CallLocal/", c->caller_app);
                trace_span_name_append(&c->tspan, c->target->config->id, strlen(c->target->config->id));
                trace_span_name_append(&c->tspan, c->path, strcspn(c->path, "?"));
                c->traced = true;
                c->span = c->tspan.ctx;
        } else
                trace_context_new_span(has_parent ? &parent : NULL, sampled_by(cfg), &c->span);
        traceparent_format(&c->span, c->traceparent);
        /* tracestate travels with the caller's traceparent: without one there is none to forward */
        const char *ts = has_parent && caller_sent_tp ? header_get(req->headers, "tracestate") : NULL;
        return ts && tracestate_is_valid(ts) ? ts : NULL;
}

/* Calls through mooringd (on any host) that led to this one. */
static unsigned long hops_of(const InvokeRequest *req) {
        const char *hops_in = header_get(req->headers, INVOKE_HOPS_HEADER);
        return hops_in ? strtoul(hops_in, NULL, 10) : 0;
}

/* The Resiliency policy that targets the callee for this caller, else daprd's built-in retries. */
static int resiliency_setup(InvokeCall *c, const InvokeRequest *req) {
        Registry *m = c->registry;
        if (m->resiliency) {
                int r = resiliency_lookup(m->resiliency, req->caller_app, RESILIENCY_APP, c->target->config->id,
                                          NULL, &c->policy);
                if (r < 0)
                        return r;
                if (r > 0)
                        c->res = resiliency_ref(m->resiliency);
        }
        /* no policy targets the callee: daprd's built-in retries, which DaprBuiltInServiceRetries may
         * override (its count; the back-off stays the transport's) */
        int64_t n = resiliency_builtin_retries(m->resiliency, req->caller_app, "DaprBuiltInServiceRetries",
                                               INVOKE_RETRIES);
        c->transport_retries = n < 0 || n > 1000 ? 1000 : (unsigned) n;
        return 0;
}

/* A placeholder App for a target that is not on this host, so that every path can name it. */
static int placeholder_target(InvokeCall *c, const char *id) {
        AppConfig *ac = app_config_new(id);
        c->target = ac ? app_new(ac, APP_SOURCE_BUS) : NULL;
        if (!c->target) {
                app_config_free(ac);
                return -ENOMEM;
        }
        return 0;
}

/*
 * The call goes to another host's mooringd (c->remote is set). The callee's access policy, its
 * MaxConcurrency= and InvokeTimeoutSec= are that host's to apply: it knows the app's files. Here:
 * the span, the hops, the Resiliency policy of this caller for the callee, and the instance.
 */
static int start_remote(InvokeCall *c, const InvokeRequest *req, InvokeCall **ret) {
        int r = placeholder_target(c, req->target_app);
        if (r >= 0)
                r = resiliency_setup(c, req);
        if (r < 0) {
                call_free(c);
                return r;
        }
        const char *ts = trace_setup(c, req, registry_host_configuration(c->registry));
        unsigned long hops = hops_of(req);
        if (hops >= INVOKE_MAX_HOPS)
                finish(c, -ELOOP, "the call has gone through mooringd %lu times (%s): a loop?", hops,
                       INVOKE_HOPS_HEADER);
        else {
                build_headers(c, req, ts, (unsigned) hops + 1);
                start_transfer(c);
        }
        c->starting = false;
        if (ret)
                *ret = c;
        return 0;
}

int invoke_start(Registry *m, const InvokeRequest *req, const InvokeHandler *h, void *userdata, InvokeCall **ret) {
        const Configuration *cfg = NULL;
        const char *cfg_error = NULL, *reason = NULL;
        App *target;
        int r;

        if (!is_token(req->verb) || streq(req->verb, "CONNECT") || !req->method)
                return -EINVAL;

        size_t verb_len = strlen(req->verb), method_len = strlen(req->method),
               caller_len = req->caller_app ? strlen(req->caller_app) : 0;
        bool slash = req->method[0] != '/';
        size_t n_header_strings = 0;
        while (req->headers && req->headers[n_header_strings])
                n_header_strings++;
        size_t n_slots = INVOKE_HEADER_SLOTS(n_header_strings);
        /* the literal below zeroes the struct; the slots and strings after it are written before use */
        InvokeCall *c = malloc(sizeof *c + n_slots * sizeof(char *) + verb_len + 1 + slash + method_len + 1 +
                               caller_len + 1);
        if (!c)
                return -ENOMEM;
        *c = (InvokeCall){ .registry = m, .h = h, .userdata = userdata, .body = req->body,
                           .body_len = req->body_len, .starting = true };
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &c->start_usec);
        c->verb = memcpy((char *) (c->slots + n_slots), req->verb, verb_len + 1);
        c->path = c->verb + verb_len + 1;
        if (slash)
                c->path[0] = '/';
        memcpy(c->path + slash, req->method, method_len + 1);
        if (req->caller_app)
                c->caller_app = memcpy(c->path + slash + method_len + 1, req->caller_app, caller_len + 1);
        c->next = m->invoke_calls;
        if (c->next)
                c->next->prev = c;
        m->invoke_calls = c;

        /* Until the target is known, messages name the id as asked. */
        target = registry_find_app(m, req->target_app);
        /* Local first; another host when this one has no instance that can take the call. A call
         * that came from a peer is never sent on (no loops, and the sender picks the instance). */
        if ((!target || target->config->address_kind == APP_ADDRESS_NONE || app_channel_is_down(target)) &&
            !req->local_only && m->membership) {
                r = remote_instances(c, req->target_app);
                if (r < 0) {
                        call_free(c);
                        return r;
                }
                if (r > 0)
                        return start_remote(c, req, ret);
        }
        if (!target) {
                if (placeholder_target(c, req->target_app) < 0) {
                        call_free(c);
                        return -ENOMEM;
                }
                trace_context_new_span(NULL, false, &c->span);
                traceparent_format(&c->span, c->traceparent);
                finish(c, -ENOENT, "no app '%s' is registered on this host", req->target_app);
                goto started;
        }
        c->target = app_ref(target);

        r = registry_app_configuration(m, target, &cfg, &cfg_error);
        if (r == -ENOMEM) {
                call_free(c);
                return r;
        }

        const char *ts = trace_setup(c, req, cfg);

        if (r < 0) {
                /* Fail closed: an access policy that cannot be read allows nothing. */
                finish(c, -EACCES, "access control configuration is invalid: %s", cfg_error);
                goto started;
        }
        /* A caller on this host is in this host's trust domain ([Cluster] TrustDomain=); on a single
         * host (none), in the one the callee's accessControl names, as ever. */
        if (acl_evaluate_caller(cfg, req->caller_app, req->caller_trust_domain ?: m->trust_domain, req->verb,
                                req->method, &reason) == ACL_DENY) {
                finish(c, -EACCES, "access control policy has denied access to id: %s operation: %s verb: %s (%s)",
                       target->config->id, req->method, req->verb, reason);
                goto started;
        }
        if (target->config->address_kind == APP_ADDRESS_NONE) {
                finish(c, -EADDRNOTAVAIL, "app '%s' has no AppAddress: it takes no calls", target->config->id);
                goto started;
        }
        if (app_channel_is_down(target)) {
                finish(c, -EHOSTDOWN, "app '%s' is unhealthy (its health probe fails)", target->config->id);
                goto started;
        }
        /* Each call through mooringd adds a hop; a chain that comes back too often is a loop (an
         * app calling itself on every call, or an AppAddress that is a mooringd listener). */
        unsigned long hops = hops_of(req);
        if (hops >= INVOKE_MAX_HOPS) {
                finish(c, -ELOOP, "the call has gone through mooringd %lu times (%s): a loop?", hops,
                       INVOKE_HOPS_HEADER);
                goto started;
        }

        build_headers(c, req, ts, (unsigned) hops + 1);
        if (target->config->invoke_timeout_usec > 0 &&
            deadline_link(c, c->start_usec + target->config->invoke_timeout_usec) < 0) {
                call_free(c);
                return -ENOMEM;
        }

        r = resiliency_setup(c, req);
        if (r < 0) {
                call_free(c);
                return r;
        }

        c->waiter.granted = on_slot_granted;
        if (app_slot_acquire(target, &c->waiter)) {
                c->holds_slot = true;
                start_transfer(c);
        } else
                c->state = CALL_QUEUED;

started:
        c->starting = false;
        if (ret)
                *ret = c;
        return 0;
}

void invoke_call_resume(InvokeCall *c) {
        if (c && c->state == CALL_RUNNING && c->tc)
                transport_call_resume(c->tc);
}

void invoke_call_cancel(InvokeCall *c) {
        if (!c)
                return;
        if (c->state == CALL_QUEUED)
                app_slot_cancel(c->target, &c->waiter);
        release_slot(c);
        call_free(c);
}

const char *invoke_call_traceparent(const InvokeCall *c) {
        return c->traceparent;
}

static void on_app_removed(Registry *m, App *a, void *userdata) {
        for (InvokeCall *c = m->invoke_calls, *n; c; c = n) {
                n = c->next;
                if (c->target == a && (c->state == CALL_QUEUED || c->state == CALL_WAITING))
                        finish(c, -ENOENT, "app '%s' was removed", a->config->id);
        }
}

int invoke_setup(Registry *m) {
        return registry_add_callback(m, REGISTRY_APP_REMOVED, on_app_removed, NULL);
}

void invoke_done(Registry *m) {
        (void) registry_remove_callback(m, REGISTRY_APP_REMOVED, on_app_removed, NULL);
        /* Each done may start nothing new (the daemon is going away); take the list as it is. */
        while (m->invoke_calls) {
                InvokeCall *c = m->invoke_calls;
                if (c->state != CALL_FINISHING)
                        finish(c, -ECANCELED, "mooringd is stopping"); /* runs done, frees c */
                else
                        complete(c); /* done was waiting for the loop */
        }
        m->invoke_timer = sd_event_source_disable_unref(m->invoke_timer);
        m->invoke_timer_usec = 0;
}
