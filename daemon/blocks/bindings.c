/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See bindings.h. A Runner is one input binding read for one app: first the
 * OPTIONS probe (unless `direction` says input), then the driver's reader,
 * whose events become Deliveries: a POST to the app through the transport,
 * holding one of the app's MaxConcurrency= slots, whose answer settles the
 * event (ok, or retry with backoff where the source redelivers).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/app.h"
#include "../core/component.h"
#include "../core/metrics.h"
#include "../core/registry.h"
#include "../transport/app-channel.h"
#include "../core/resiliency.h"
#include "../transport/transport.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "bindings.h"

#define APP_ANSWER_MAX (64 * 1024)
#define PROBE_TIMEOUT_USEC (10 * 1000 * 1000ULL)

typedef struct Delivery Delivery;

struct BindingRunner {
        Registry *registry;
        App *app;                    /* ref */
        Binding *binding;            /* borrowed: closing it frees its runners first */
        char *route;                 /* "/route" */
        TransportCall *probe;        /* OPTIONS /route, while out */
        BindingReader *rd;           /* the driver's, once subscribed */
        Delivery *deliveries;        /* events in the block's hands */
        BindingRunner *next, *prev;
};
typedef BindingRunner Runner;

struct Delivery {
        AppSlotWaiter waiter;        /* first: in the app's line for a slot (MaxConcurrency=) */
        bool holds_slot;
        Runner *runner;
        BindingDelivery *d;          /* NULL once abandoned */
        void *data;
        size_t len;
        unsigned attempt;
        char **headers;              /* name, value pairs for the app */
        TransportCall *call;         /* the POST, while out */
        Resiliency *res;             /* ref, when the binding's inbound Resiliency policy applies */
        ResiliencyPolicy policy;
        unsigned retries_done;
        uint64_t breaker_generation;
        bool breaker_counting;       /* the POST out was allowed by the policy's breaker */
        sd_event_source *retry_timer; /* the back-off before the policy's next POST */
        uint64_t start_usec;         /* the event came: for dapr_component_input_binding_latencies */
        Delivery *next, *prev;
};

struct BindingOut {
        BindingDoneFn done;          /* NULL once the caller is gone */
        void *userdata;
        char *binding;               /* the binding's name, once the driver has the call */
        int error;                   /* refused before the driver saw it: answered from the defer */
        char *message;
        sd_event_source *defer;
        /* the binding's outbound Resiliency policy for the caller, when one applies: the request is
         * kept to be sent again */
        Registry *registry;
        Resiliency *res;             /* ref */
        ResiliencyPolicy policy;
        unsigned retries_done;
        uint64_t breaker_generation;
        bool breaker_counting;
        bool breaker_refused;        /* the last attempt was refused by the open breaker */
        sd_event_source *retry_timer;
        char *operation;
        void *data;
        size_t len;
        char **metadata;
        /* dapr_component_output_binding_*: the caller, the operation (the driver's own string: its
         * list is what the request was checked against, so the label is bounded), the start */
        char *metrics_app;
        const char *metrics_op;
        uint64_t start_usec;
};

/* ---- helpers ---- */

/* Does the component's `direction` (a comma list; absent = both) name dir? */
static bool direction_has(const Component *c, const char *dir, bool *ret_given) {
        const char *v = component_get_string(c, "direction");
        if (ret_given)
                *ret_given = v && *v;
        if (!v || !*v)
                return true;
        size_t n = strlen(dir);
        for (const char *p = v; *p;) {
                p += strspn(p, " ,");
                size_t len = strcspn(p, ",");
                size_t l = len;
                while (l > 0 && p[l - 1] == ' ')
                        l--;
                if (l == n && strncasecmp(p, dir, n) == 0)
                        return true;
                p += len;
        }
        return false;
}

static bool in_scope(const Component *c, const char *app) {
        return app ? component_in_scope(c, app) : !(c->scopes && c->scopes[0]);
}

/* ---- bindings ---- */

int binding_open(Registry *m, Component *c, Binding **ret, char **reterr_msg) {
        const BindingDriver *d = binding_driver_find(c->type);
        Binding *b;
        int r;

        if (!d) {
                if (asprintf(reterr_msg, "no bindings driver for type '%s' in this build", c->type) < 0)
                        *reterr_msg = NULL;
                return -EOPNOTSUPP;
        }
        if (d->abi != BINDING_DRIVER_ABI || d->instance_size < sizeof(Binding))
                return -EPROTO;
        b = calloc(1, d->instance_size);
        if (!b)
                return -ENOMEM;
        *b = (Binding){ .driver = d, .component = component_ref(c), .event = m->event, .name = c->name,
                        .state_dir = m->state_dir, .instance_id = m->instance_id };
        r = d->open(b, reterr_msg);
        if (r < 0) {
                d->close(b);
                component_unref(b->component);
                free(b);
                return r;
        }
        *ret = b;
        return 0;
}

static void runner_free(Runner *rn);

Binding *binding_close(Registry *m, Binding *b) {
        if (!b)
                return NULL;
        for (Runner *rn = m ? m->binding_runners : NULL, *n; rn; rn = n) {
                n = rn->next;
                if (rn->binding == b)
                        runner_free(rn);
        }
        b->driver->close(b);
        component_unref(b->component);
        free(b);
        return NULL;
}

/* ---- output ---- */

static void out_free(BindingOut *o) {
        sd_event_source_disable_unref(o->defer);
        sd_event_source_disable_unref(o->retry_timer);
        resiliency_unref(o->res);
        free(o->operation);
        free(o->data);
        strv_free(o->metadata);
        free(o->message);
        free(o->binding);
        free(o->metrics_app);
        free(o);
}

static void on_out_done(int error, const char *message, const BindingResponse *resp, void *userdata);

/* One attempt under the policy: the breaker's consent, then the driver. < 0: not started (*reterr_msg). */
static int out_attempt(BindingOut *o, Binding *b, const BindingRequest *br, char **reterr_msg) {
        int r;
        if (o->policy.breaker) {
                const char *why;
                uint64_t now = 0;
                (void) sd_event_now(o->registry->event, CLOCK_MONOTONIC, &now);
                if (resiliency_breaker_allow(o->policy.breaker, now, &o->breaker_generation, &why) < 0) {
                        o->breaker_refused = true;
                        *reterr_msg = strdup(why);
                        return -EHOSTUNREACH;
                }
                o->breaker_counting = true;
        }
        r = b->driver->invoke(b, br, on_out_done, o, reterr_msg);
        if (r < 0)
                o->breaker_counting = false;
        return r;
}

static int on_out_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        BindingOut *o = userdata;
        _cleanup_free_ char *why = NULL;
        Binding *b;
        int r;

        o->retry_timer = sd_event_source_disable_unref(o->retry_timer);
        if (!o->done) { /* the caller went away meanwhile */
                out_free(o);
                return 0;
        }
        b = registry_find_binding(o->registry, o->binding);
        if (!b) {
                on_out_done(-EIO, "the binding is gone", NULL, o);
                return 0;
        }
        BindingRequest br = { .operation = o->operation, .data = o->data, .len = o->len, .metadata = o->metadata };
        r = out_attempt(o, b, &br, &why);
        if (o->breaker_refused)
                o->policy.retry = NULL; /* the breaker is open: daprd stops retrying there */
        if (r < 0)
                on_out_done(r, why ?: strerror(-r), NULL, o);
        return 0;
}

/* After a failed attempt under a policy: true when another follows after the back-off. */
static bool out_retry(BindingOut *o, int error) {
        uint64_t now = 0, delay;
        (void) sd_event_now(o->registry->event, CLOCK_MONOTONIC, &now);
        if (o->breaker_counting) {
                o->breaker_counting = false;
                resiliency_breaker_report(o->policy.breaker, o->breaker_generation, error >= 0, now);
        }
        /* refused before the driver had it (o->binding unset): nothing to send again */
        if (error >= 0 || error == -ECANCELED || !o->binding || !o->done || !o->policy.retry ||
            !resiliency_retry_next(o->policy.retry, o->retries_done + 1, 0, &delay))
                return false;
        if (sd_event_add_time_relative(o->registry->event, &o->retry_timer, CLOCK_MONOTONIC, delay, 0, on_out_retry,
                                       o) < 0)
                return false;
        o->retries_done++;
        return true;
}

static void on_out_done(int error, const char *message, const BindingResponse *resp, void *userdata) {
        BindingOut *o = userdata;
        _cleanup_free_ char *m = NULL;

        if (o->res && out_retry(o, error))
                return;

        /* The driver's failure, worded as daprd words it; its errno must not read as one of the
         * block's refusals (-ENOENT "no such binding" and the like): it is the binding's error. */
        if (error < 0 && o->binding) {
                if (asprintf(&m, "error invoking output binding %s: %s", o->binding,
                             message ?: strerror(-error)) < 0)
                        m = NULL;
                message = m ?: message;
                error = error == -ECANCELED || error == -ETIMEDOUT ? error : -EIO;
        }
        /* counted when the binding had the call (not the block's refusals), under the caller */
        App *a = o->binding && o->metrics_app && o->registry ? registry_find_app(o->registry, o->metrics_app) : NULL;
        if (a)
                metrics_component_op(a->metrics, METRICS_OUTPUT_BINDING, o->binding, o->metrics_op, NULL,
                                     error < 0 ? "false" : "true", metrics_now_usec() - o->start_usec);
        if (o->done)
                o->done(error, message, resp, o->userdata);
        out_free(o);
}

static int on_out_refused(sd_event_source *s, void *userdata) {
        BindingOut *o = userdata;
        on_out_done(o->error, o->message, NULL, o);
        return 0;
}

static int out_refuse(Registry *m, BindingOut *o, int error, const char *fmt, ...) _printf_(4, 5);
static int out_refuse(Registry *m, BindingOut *o, int error, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&o->message, fmt, ap);
        va_end(ap);
        if (r < 0)
                o->message = NULL;
        o->error = error;
        if (sd_event_add_defer(m->event, &o->defer, on_out_refused, o) < 0)
                return -ENOMEM;
        return 0;
}

int bindings_invoke(Registry *m, const BindingInvokeRequest *req, BindingDoneFn done, void *userdata,
                    BindingOut **ret) {
        _cleanup_strv_free_ char **md = NULL;
        BindingOut *o;
        Binding *b;
        int r;

        o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        *o = (BindingOut){ .done = done, .userdata = userdata };

        b = req->name ? registry_find_binding(m, req->name) : NULL;
        /* Dapr's messages: "couldn't find output binding X", "operation field is missing from request",
         * "binding X does not support operation Y. supported operations: ..." */
        if (!b || !in_scope(b->component, req->app) || !b->driver->operations ||
            !direction_has(b->component, "output", NULL))
                r = out_refuse(m, o, -ENOENT, "couldn't find output binding %s", strempty(req->name));
        else if (!req->operation || !*req->operation)
                r = out_refuse(m, o, -EINVAL, "operation field is missing from request");
        else if (!(o->metrics_op = binding_driver_operation(b->driver, req->operation))) {
                _cleanup_free_ char *ops = binding_driver_operations_string(b->driver);
                r = out_refuse(m, o, -EOPNOTSUPP, "binding %s does not support operation %s. supported operations: %s",
                               b->name, req->operation, strempty(ops));
        } else {
                r = strv_copy(req->metadata, &md);
                /* The caller's trace context reaches the binding in its metadata, as in daprd. */
                if (r >= 0 && req->traceparent && *req->traceparent && !binding_metadata_get(md, "traceparent"))
                        r = strv_extend(&md, "traceparent") < 0 ? -ENOMEM : strv_extend(&md, req->traceparent);
                if (r >= 0 && req->tracestate && *req->tracestate && !binding_metadata_get(md, "tracestate"))
                        r = strv_extend(&md, "tracestate") < 0 ? -ENOMEM : strv_extend(&md, req->tracestate);
                if (r >= 0 && !(o->binding = strdup(b->name)))
                        r = -ENOMEM;
                o->registry = m;
                o->start_usec = metrics_now_usec();
                if (r >= 0 && req->app && !(o->metrics_app = strdup(req->app)))
                        r = -ENOMEM;
                if (r >= 0 && m->resiliency) {
                        r = resiliency_lookup(m->resiliency, req->app, RESILIENCY_COMPONENT_OUTBOUND, b->name,
                                              "Binding", &o->policy);
                        if (r > 0) {
                                o->res = resiliency_ref(m->resiliency);
                                /* a retry sends the request again: it is kept */
                                o->operation = strdup(req->operation);
                                o->data = malloc(req->len ? req->len : 1);
                                r = strv_copy(md, &o->metadata);
                                if (!o->operation || !o->data)
                                        r = -ENOMEM;
                                else if (req->len > 0)
                                        memcpy(o->data, req->data, req->len);
                                o->len = req->len;
                        }
                }
                if (r >= 0) {
                        BindingRequest br = { .operation = req->operation, .data = req->data, .len = req->len,
                                              .metadata = md };
                        _cleanup_free_ char *why = NULL;
                        r = out_attempt(o, b, &br, &why);
                        /* refused by the driver before it started (bad metadata): a bad request */
                        if (r < 0 && r != -ENOMEM) {
                                free(o->binding);
                                o->binding = NULL;
                                r = out_refuse(m, o, r == -EINVAL ? -EINVAL : -EIO,
                                               "error invoking output binding %s: %s", b->name, why ?: strerror(-r));
                        }
                }
        }
        if (r < 0) {
                out_free(o);
                return r;
        }
        if (ret)
                *ret = o;
        return 0;
}

void bindings_invoke_cancel(BindingOut *o) {
        if (o)
                o->done = NULL;
}

/* ---- input: deliveries ---- */

static void delivery_free(Delivery *dl) {
        Runner *rn = dl->runner;
        if (dl->call)
                transport_call_cancel(dl->call);
        if (dl->holds_slot)
                app_slot_release(rn->app);
        else
                app_slot_cancel(rn->app, &dl->waiter);
        if (dl->prev)
                dl->prev->next = dl->next;
        else
                rn->deliveries = dl->next;
        if (dl->next)
                dl->next->prev = dl->prev;
        strv_free(dl->headers);
        sd_event_source_disable_unref(dl->retry_timer);
        resiliency_unref(dl->res);
        free(dl->data);
        free(dl);
}

static uint64_t backoff(unsigned attempt) {
        uint64_t d = BINDINGS_RETRY_FIRST_USEC;
        for (unsigned i = 1; i < attempt && d < BINDINGS_RETRY_MAX_USEC; i++)
                d *= 2;
        return d < BINDINGS_RETRY_MAX_USEC ? d : BINDINGS_RETRY_MAX_USEC;
}

/* ok: done with it. Else retried after a backoff where the source redelivers, given up otherwise. */
static void settle(Delivery *dl, bool ok) {
        Runner *rn = dl->runner;
        BindingDelivery *d = dl->d;
        const BindingDriver *drv = rn->binding->driver;
        unsigned attempt = dl->attempt;

        delivery_free(dl);
        if (d)
                drv->settle(d, ok || !drv->redelivers, backoff(attempt));
}

static void delivery_post(Delivery *dl);

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Delivery *dl = userdata;
        dl->retry_timer = sd_event_source_disable_unref(dl->retry_timer);
        delivery_post(dl); /* the delivery kept its slot */
        return 0;
}

/*
 * The inbound Resiliency policy, as daprd applies it to input bindings: the app's answer counts
 * in the breaker, and a failure is POSTed again after the back-off (the event is held here, so
 * this works for sources that do not redeliver, such as cron). true: another POST follows.
 */
static bool delivery_retry(Delivery *dl, bool ok) {
        Runner *rn = dl->runner;
        uint64_t now = 0, delay;

        (void) sd_event_now(rn->registry->event, CLOCK_MONOTONIC, &now);
        if (dl->breaker_counting) {
                dl->breaker_counting = false;
                resiliency_breaker_report(dl->policy.breaker, dl->breaker_generation, ok, now);
        }
        if (ok || !dl->policy.retry || !resiliency_retry_next(dl->policy.retry, dl->retries_done + 1, 0, &delay) ||
            sd_event_add_time_relative(rn->registry->event, &dl->retry_timer, CLOCK_MONOTONIC, delay, 0,
                                       on_retry_timer, dl) < 0)
                return false;
        dl->retries_done++;
        log_struct(LOG_DEBUG, 0, rn->app->config->id, rn->binding->name,
                   "Event of binding %s is sent again in %" PRIu64 " ms (Resiliency policy '%s').", rn->binding->name,
                   delay / 1000, dl->policy.retry->name);
        return true;
}

/*
 * A gRPC app's OnBindingEvent answer may name output bindings to send data to (transport/grpc-app.c
 * gives it as {"to", "data", "concurrency"}), and daprd does so once the event is taken: operation
 * "create", the data as JSON, one binding after the other until one fails ("sequential", the default)
 * or all at once ("parallel"). Failures are logged and change nothing for the event, as in daprd. An
 * HTTP app's answer body daprd does not read for this, and neither does mooringd.
 */
typedef struct SendOn SendOn;
typedef struct SendOnCall {
        SendOn *s;
        const char *to;           /* s->to[i] */
} SendOnCall;

struct SendOn {
        Registry *registry;
        char *app, *binding;      /* the app that answered; the input binding, for the logs */
        char **to;
        SendOnCall *calls;        /* one per entry of to */
        size_t next, n, pending;
        char *data;
        bool parallel;
};

static void send_on_free(SendOn *s) {
        free(s->app);
        free(s->binding);
        strv_free(s->to);
        free(s->calls);
        free(s->data);
        free(s);
}

static void send_on_next(SendOn *s);

static void on_sent_on(int error, const char *message, const BindingResponse *resp, void *userdata) {
        SendOnCall *call = userdata;
        SendOn *s = call->s;
        s->pending--;
        if (error < 0) {
                log_struct(LOG_WARNING, 0, s->app, s->binding, "Sending what %s answered to an event of binding %s "
                           "on to output binding %s failed: %s.", s->app, s->binding, call->to,
                           message ?: strerror(-error));
                if (!s->parallel)
                        s->next = s->n; /* daprd stops at the first failure */
        }
        send_on_next(s);
}

static void send_on_next(SendOn *s) {
        while (s->next < s->n) {
                SendOnCall *call = &s->calls[s->next];
                *call = (SendOnCall){ .s = s, .to = s->to[s->next] };
                BindingInvokeRequest req = { .app = s->app, .name = call->to, .operation = "create",
                                             .data = s->data, .len = strlen(s->data) };
                s->next++;
                s->pending++;
                if (bindings_invoke(s->registry, &req, on_sent_on, call, NULL) < 0) {
                        s->pending--;
                        log_oom();
                        s->next = s->n;
                        break;
                }
                if (!s->parallel)
                        return; /* the next one when this one is done */
        }
        if (s->pending == 0)
                send_on_free(s);
}

static void send_on_start(Runner *rn, const TransportAnswer *ans) {
        if (!rn->app->config->app_protocol_grpc || ans->body_len == 0)
                return;
        _cleanup_(json_decrefp) json_t *j = json_loadb(ans->body, ans->body_len, 0, NULL);
        json_t *to = json_object_get(j, "to");
        if (!json_is_array(to) || json_array_size(to) == 0)
                return;
        SendOn *s = calloc(1, sizeof *s);
        if (!s || !(s->to = calloc(json_array_size(to) + 1, sizeof *s->to)) ||
            !(s->calls = calloc(json_array_size(to), sizeof *s->calls)) ||
            !(s->data = json_dumps(json_object_get(j, "data") ?: json_null(), JSON_COMPACT | JSON_ENCODE_ANY)) ||
            !(s->app = strdup(rn->app->config->id)) || !(s->binding = strdup(rn->binding->name))) {
                if (s)
                        send_on_free(s);
                return (void) log_oom();
        }
        s->registry = rn->registry;
        const char *concurrency = json_string_value(json_object_get(j, "concurrency"));
        s->parallel = concurrency && streq(concurrency, "parallel");
        size_t i;
        json_t *v;
        json_array_foreach(to, i, v)
                if (json_is_string(v) && !(s->to[s->n++] = strdup(json_string_value(v)))) {
                        send_on_free(s);
                        return (void) log_oom();
                }
        send_on_next(s);
}

static void on_app_answered(TransportCall *tc, const TransportAnswer *ans, const TransportError *e, void *userdata) {
        Delivery *dl = userdata;
        Runner *rn = dl->runner;
        const char *app = rn->app->config->id;
        bool again = rn->binding->driver->redelivers;

        dl->call = NULL; /* the transport frees it after this returns */
        if (dl->res && delivery_retry(dl, !e && ans->status >= 200 && ans->status <= 299)) {
                if (e)
                        log_struct(LOG_WARNING, 0, app, rn->binding->name, "Delivering an event of binding %s to %s "
                                   "failed: %s; retrying.", rn->binding->name, rn->route, e->message);
                else
                        log_struct(LOG_WARNING, 0, app, rn->binding->name, "App answered %u for %s (binding %s); "
                                   "retrying.", ans->status, rn->route, rn->binding->name);
                return;
        }
        /* the event's outcome with the app (after any retries of its inbound policy) */
        metrics_component_op(rn->app->metrics, METRICS_INPUT_BINDING, rn->binding->name, NULL, NULL,
                             !e && ans->status >= 200 && ans->status <= 299 ? "true" : "false",
                             metrics_now_usec() - dl->start_usec);
        if (e) {
                log_struct(LOG_WARNING, 0, app, rn->binding->name, "Delivering an event of binding %s to %s failed: "
                           "%s%s", rn->binding->name, rn->route, e->message, again ? "; retrying." : ".");
                return settle(dl, false);
        }
        if (ans->status < 200 || ans->status > 299) {
                log_struct(LOG_WARNING, 0, app, rn->binding->name, "App answered %u for %s (binding %s)%s",
                           ans->status, rn->route, rn->binding->name, again ? "; retrying." : ".");
                return settle(dl, false);
        }
        send_on_start(rn, ans);
        settle(dl, true);
}

static const TransportHandler delivery_handler = { .done = on_app_answered };

static void delivery_post(Delivery *dl) {
        Runner *rn = dl->runner;
        App *a = rn->app;
        TransportAddress addr;

        if (!app_channel_address(a, &addr))
                return settle(dl, false);
        if (dl->policy.breaker) {
                const char *why;
                uint64_t now = 0;
                (void) sd_event_now(rn->registry->event, CLOCK_MONOTONIC, &now);
                if (resiliency_breaker_allow(dl->policy.breaker, now, &dl->breaker_generation, &why) < 0) {
                        log_struct(LOG_DEBUG, 0, a->config->id, rn->binding->name, "Event of binding %s not sent: %s.",
                                   rn->binding->name, why);
                        return settle(dl, false);
                }
                dl->breaker_counting = true;
        }
        TransportRequest req = {
                .method = "POST",
                .target = rn->route,
                .headers = dl->headers,
                .body = dl->data,
                .body_len = dl->len,
                .timeout_usec = a->config->invoke_timeout_usec,
                .max_answer = APP_ANSWER_MAX,
                .purpose = TRANSPORT_PURPOSE_BINDING_EVENT,
                .name = rn->binding->name,
        };
        if (dl->policy.timeout_usec > 0 && (req.timeout_usec == 0 || dl->policy.timeout_usec < req.timeout_usec))
                req.timeout_usec = dl->policy.timeout_usec;
        if (transport_call_start(rn->registry->transport, &addr, &req, &delivery_handler, dl, &dl->call) < 0)
                return settle(dl, false);
}

static void on_delivery_slot(AppSlotWaiter *w) {
        Delivery *dl = (Delivery *) w; /* the waiter is the first member */
        dl->holds_slot = true;
        delivery_post(dl);
}

/* An HTTP token (RFC 9110) as header name; anything else would not be a header. */
static bool header_name_ok(const char *s) {
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (!strchr("!#$%&'*+-.^_`|~", *s) && !(*s >= '0' && *s <= '9') && !(*s >= 'a' && *s <= 'z') &&
                    !(*s >= 'A' && *s <= 'Z'))
                        return false;
        return true;
}

static bool header_reserved(const char *name) {
        static const char *const reserved[] = { "Host", "Content-Length", "Content-Type", "Transfer-Encoding",
                                                "Connection", "User-Agent", NULL };
        for (const char *const *p = reserved; *p; p++)
                if (strcasecmp(name, *p) == 0)
                        return true;
        return false;
}

static int header_add(char ***l, const char *name, const char *value) {
        /* A value with a line break would forge headers: it is left out. */
        if (!value || strpbrk(value, "\r\n") || !header_name_ok(name))
                return 0;
        return strv_extend(l, name) < 0 || strv_extend(l, value) < 0 ? -ENOMEM : 0;
}

static void on_event(BindingReader *rd, BindingDelivery *d, const BindingEvent *ev, void *userdata) {
        Runner *rn = userdata;
        const BindingDriver *drv = rn->binding->driver;
        Delivery *dl = calloc(1, sizeof *dl);

        if (!dl) {
                drv->settle(d, !drv->redelivers, BINDINGS_RETRY_FIRST_USEC);
                return;
        }
        *dl = (Delivery){ .runner = rn, .d = d, .attempt = ev->attempt ? ev->attempt : 1, .next = rn->deliveries,
                          .start_usec = metrics_now_usec() };
        if (dl->next)
                dl->next->prev = dl;
        rn->deliveries = dl;
        dl->data = malloc(ev->len ? ev->len : 1);
        if (!dl->data)
                return settle(dl, false);
        memcpy(dl->data, ev->data, ev->len);
        dl->len = ev->len;
        /* Dapr sends input events as application/json whatever the bytes are. */
        bool ok = header_add(&dl->headers, "User-Agent", APP_CHANNEL_USER_AGENT) >= 0 &&
                  header_add(&dl->headers, "Content-Type", "application/json") >= 0;
        for (char *const *p = ev->metadata; ok && p && p[0] && p[1]; p += 2)
                if (!header_reserved(p[0]))
                        ok = header_add(&dl->headers, p[0], p[1]) >= 0;
        if (!ok)
                return settle(dl, false);
        /* An app its probes found down is not called; where the source keeps the event, it waits. */
        if (app_channel_is_down(rn->app)) {
                log_struct(LOG_DEBUG, 0, rn->app->config->id, rn->binding->name, "App is down; event of binding "
                           "%s %s.", rn->binding->name, drv->redelivers ? "waits" : "skipped");
                return settle(dl, false);
        }
        Resiliency *res = rn->registry->resiliency;
        int k = res ? resiliency_lookup(res, rn->app->config->id, RESILIENCY_COMPONENT_INBOUND, rn->binding->name,
                                        "Binding", &dl->policy)
                    : 0;
        if (k < 0)
                return settle(dl, false);
        if (k > 0)
                dl->res = resiliency_ref(res);
        dl->waiter.granted = on_delivery_slot;
        if (app_slot_acquire(rn->app, &dl->waiter)) {
                dl->holds_slot = true;
                delivery_post(dl);
        }
}

/* ---- input: runners ---- */

static void runner_free(Runner *rn) {
        Registry *m = rn->registry;

        /* Leave the app's line first, so freed slots do not start deliveries about to be dropped. */
        for (Delivery *dl = rn->deliveries; dl; dl = dl->next)
                if (!dl->holds_slot)
                        app_slot_cancel(rn->app, &dl->waiter);
        while (rn->deliveries) {
                Delivery *dl = rn->deliveries;
                dl->d = NULL; /* abandoned: the reader's stop gives it back to the source */
                delivery_free(dl);
        }
        if (rn->rd)
                rn->binding->driver->read_stop(rn->rd);
        if (rn->probe)
                transport_call_cancel(rn->probe);
        if (rn->prev)
                rn->prev->next = rn->next;
        else if (m->binding_runners == rn)
                m->binding_runners = rn->next;
        if (rn->next)
                rn->next->prev = rn->prev;
        free(rn->route);
        app_unref(rn->app);
        free(rn);
}

static void runner_read(Runner *rn) {
        Binding *b = rn->binding;
        const char *app = rn->app->config->id;
        int r = b->driver->read_start(b, app, BINDINGS_DEFAULT_IN_FLIGHT, on_event, rn, &rn->rd);
        if (r < 0) {
                rn->rd = NULL;
                log_struct(LOG_ERR, r, app, b->name, "Cannot read input binding %s for app %s: %s", b->name, app,
                           strerror(-r));
                return runner_free(rn);
        }
        log_struct(LOG_INFO, 0, app, b->name, "Input binding %s delivers to %s %s.", b->name, app, rn->route);
}

static void on_probe_answered(TransportCall *tc, const TransportAnswer *ans, const TransportError *e,
                              void *userdata) {
        Runner *rn = userdata;
        const char *app = rn->app->config->id;

        rn->probe = NULL;
        if (e) {
                log_struct(LOG_WARNING, 0, app, rn->binding->name, "OPTIONS %s (input binding %s) failed: %s; the "
                           "binding is not read for this app until it is healthy again.", rn->route,
                           rn->binding->name, e->message);
                return runner_free(rn);
        }
        /* daprd: 2xx or 405 (the route exists, only not for OPTIONS) subscribes; anything else does not. */
        if ((ans->status >= 200 && ans->status <= 299) || ans->status == 405)
                return runner_read(rn);
        log_struct(LOG_INFO, 0, app, rn->binding->name, "App answered %u to OPTIONS %s: it does not read input "
                   "binding %s.", ans->status, rn->route, rn->binding->name);
        runner_free(rn);
}

static const TransportHandler probe_handler = { .done = on_probe_answered };

static Runner *runner_find(Registry *m, App *a, Binding *b) {
        for (Runner *rn = m->binding_runners; rn; rn = rn->next)
                if (rn->app == a && rn->binding == b)
                        return rn;
        return NULL;
}

static void runner_start(Registry *m, App *a, Binding *b) {
        const char *route = component_get_string(b->component, "route");
        TransportAddress addr;
        bool given;
        Runner *rn;

        if (!b->driver->read_start || !component_in_scope(b->component, a->config->id) ||
            !direction_has(b->component, "input", &given) || runner_find(m, a, b) || !app_channel_address(a, &addr))
                return;
        rn = calloc(1, sizeof *rn);
        if (!rn)
                return (void) log_oom();
        if (!route || !*route)
                route = b->name;
        while (*route == '/')
                route++;
        *rn = (Runner){ .registry = m, .app = app_ref(a), .binding = b, .next = m->binding_runners };
        if (asprintf(&rn->route, "/%s", route) < 0) {
                app_unref(rn->app);
                free(rn);
                return (void) log_oom();
        }
        if (rn->next)
                rn->next->prev = rn;
        m->binding_runners = rn;
        if (given) /* `direction: input`: daprd skips the probe */
                return runner_read(rn);

        static char *const headers[] = { "User-Agent", APP_CHANNEL_USER_AGENT, NULL };
        TransportRequest req = {
                .method = "OPTIONS",
                .target = rn->route,
                .headers = headers,
                .timeout_usec = PROBE_TIMEOUT_USEC,
                .max_answer = APP_ANSWER_MAX,
                .purpose = TRANSPORT_PURPOSE_BINDING_PROBE,
                .name = b->name,
        };
        if (transport_call_start(m->transport, &addr, &req, &probe_handler, rn, &rn->probe) < 0) {
                rn->probe = NULL;
                log_oom();
                runner_free(rn);
        }
}

static void app_start(Registry *m, App *a) {
        if (m->stopping)
                return;
        for (size_t i = 0; i < m->n_bindings; i++)
                runner_start(m, a, m->bindings[i]);
}

static void app_stop(Registry *m, App *a) {
        for (Runner *rn = m->binding_runners, *n; rn; rn = n) {
                n = rn->next;
                if (rn->app == a)
                        runner_free(rn);
        }
}

static void on_app_health_changed(Registry *m, App *a, void *userdata) {
        if (a->health == APP_HEALTH_HEALTHY)
                app_start(m, a);
}

static void on_app_removed(Registry *m, App *a, void *userdata) {
        app_stop(m, a);
}

int bindings_setup(Registry *m) {
        int r = registry_add_callback(m, REGISTRY_APP_HEALTH_CHANGED, on_app_health_changed, NULL);
        if (r >= 0)
                r = registry_add_callback(m, REGISTRY_APP_REMOVED, on_app_removed, NULL);
        return r;
}

int bindings_reload(Registry *m) {
        for (size_t i = 0; i < m->n_apps; i++)
                if (m->apps[i]->health == APP_HEALTH_HEALTHY)
                        app_start(m, m->apps[i]);
        return 0;
}

void bindings_stop_all(Registry *m) {
        while (m->binding_runners)
                runner_free(m->binding_runners);
}

void bindings_done(Registry *m) {
        bindings_stop_all(m);
        (void) registry_remove_callback(m, REGISTRY_APP_HEALTH_CHANGED, on_app_health_changed, NULL);
        (void) registry_remove_callback(m, REGISTRY_APP_REMOVED, on_app_removed, NULL);
}

void bindings_foreach_reader(Registry *m, BindingReaderFn fn, void *userdata) {
        for (Runner *rn = m->binding_runners; rn; rn = rn->next)
                if (rn->rd)
                        fn(rn->app->config->id, rn->binding->name, rn->route, userdata);
}
