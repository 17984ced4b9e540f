/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See pubsub.h. A Runner is one active subscription of one app on one
 * broker; each message the broker delivers becomes a Delivery: a POST of the
 * CloudEvent to the app through the app channel, whose answer settles the
 * message (ack, retry after a backoff, or drop / dead-letter).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../core/app.h"
#include "../core/cloudevent.h"
#include "../core/json-scan.h"
#include "../core/component.h"
#include "../core/conf-keep.h"
#include "../core/metrics.h"
#include "../core/trace.h"
#include "../core/subscription.h"
#include "../core/tracecontext.h"
#include "../core/registry.h"
#include "../core/resiliency.h"
#include "../transport/app-channel.h"
#include "../transport/transport.h"
#include "../util/base64.h"
#include "../util/fileio.h"
#include "../util/json-util.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "pubsub.h"

#define SUBSCRIBE_ANSWER_MAX (1024 * 1024)
#define APP_ANSWER_MAX (64 * 1024)
/* At most one line per this long about a broker's failed publishes (util/ratelimit.h). */
#define PUBLISH_FAILURE_LOG_INTERVAL_USEC (10 * USEC_PER_SEC_RL)
/* An app's publishes in a broker's hands at once; the rest wait in its line (see PublishLine). */
#define PUBLISH_IN_DRIVER_PER_APP 64

typedef struct Delivery Delivery;
typedef struct BulkPost BulkPost;

struct PubsubRunner {
        Registry *registry;
        App *app;                    /* ref; NULL for a sink */
        Subscription *sub;           /* borrowed: m->subscriptions or the app's AppSubscriptions; a sink's own */
        PubsubSinkFn sink;           /* set: messages go to it, not to an app */
        void *sink_userdata;
        char *sink_app;              /* the sink's app, if it is one (listings) */
        PubsubBroker *broker;
        PubsubSubscription *ds;      /* the driver's */
        Delivery *deliveries;        /* POSTs to the app in flight */
        /* bulkSubscribe: messages wait in bulk_pending until the batch is full or its time is up */
        Delivery **bulk_pending;
        size_t n_bulk_pending;
        sd_event_source *bulk_timer;
        BulkPost *bulk_posts;        /* the batches' POSTs to the app */
        PubsubRunner *next, *prev;
};
typedef PubsubRunner Runner;

struct Delivery {
        AppSlotWaiter waiter;        /* first: in the app's line for a slot (MaxConcurrency=) */
        bool holds_slot;
        Runner *runner;
        PubsubDelivery *d;
        void *data;                  /* the message as stored (copied: the driver's is call-scoped) */
        size_t len;
        unsigned attempt;
        char *path;
        uint64_t post_usec;          /* metrics: when the POST went out */
        TransportCall *call;         /* the POST to the app, while out */
        char **headers;              /* name, value pairs for the app */
        json_t *bulk_entry;          /* bulk: {entryId, event, metadata, contentType} */
        Resiliency *res;             /* ref: the set of policy, when an inbound policy applies */
        ResiliencyPolicy policy;     /* the broker's inbound policy for the app (core/resiliency.h) */
        uint64_t breaker_generation;
        bool breaker_counting;       /* the POST out was allowed by the policy's breaker */
        Delivery *next, *prev;
};


/* ---- brokers ---- */

int pubsub_broker_open(Registry *m, Component *c, PubsubBroker **ret, char **reterr_msg) {
        const PubsubDriver *d = pubsub_driver_find(c->type);
        PubsubBroker *b;
        int r;

        if (!d) {
                if (asprintf(reterr_msg, "no pub/sub driver for type '%s' in this build", c->type) < 0)
                        *reterr_msg = NULL;
                return -EOPNOTSUPP;
        }
        if (d->abi != PUBSUB_DRIVER_ABI || d->instance_size < sizeof(PubsubBroker))
                return -EPROTO;
        b = calloc(1, d->instance_size);
        if (!b)
                return -ENOMEM;
        *b = (PubsubBroker){ .driver = d, .component = component_ref(c), .event = m->event,
                             .name = c->name, .state_dir = m->state_dir, .instance_id = m->instance_id,
                             .publish_failures = RATELIMIT_INIT(PUBLISH_FAILURE_LOG_INTERVAL_USEC) };
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
static void lines_cancel(PubsubBroker *b);
static void lines_free(PubsubBroker *b);

PubsubBroker *pubsub_broker_close(Registry *m, PubsubBroker *b) {
        if (!b)
                return NULL;
        /* Whatever still runs on it stops first; a sink hears it through a NULL delivery. */
        for (Runner *rn = m ? m->pubsub_runners : NULL, *n; rn; rn = n) {
                n = rn->next;
                if (rn->broker != b)
                        continue;
                PubsubSinkFn fn = rn->sink;
                void *ud = rn->sink_userdata;
                runner_free(rn);
                if (fn)
                        fn(NULL, NULL, NULL, 0, ud);
        }
        lines_cancel(b);
        b->driver->close(b);
        lines_free(b);
        component_unref(b->component);
        free(b);
        return NULL;
}

static PubsubBroker *broker_find(Registry *m, const char *name) {
        return registry_find_pubsub(m, name);
}

/* "t1,t2" list membership (allowedTopics). */
static bool in_csv(const char *list, const char *item) {
        size_t n = strlen(item);
        for (const char *p = list; p && *p;) {
                p += strspn(p, " ,");
                size_t len = strcspn(p, ",");
                size_t l = len;
                while (l > 0 && p[l - 1] == ' ')
                        l--;
                if (l == n && strncmp(p, item, n) == 0)
                        return true;
                p += len;
        }
        return false;
}

/* publishingScopes / subscriptionScopes: "app1=t1,t2;app2=". An app not listed may use any topic. */
static bool scope_allows(const char *scopes, const char *app, const char *topic) {
        if (!scopes || !app)
                return true;
        size_t an = strlen(app);
        for (const char *p = scopes; *p;) {
                size_t len = strcspn(p, ";");
                const char *eq = memchr(p, '=', len);
                if (eq && (size_t) (eq - p) == an && strncmp(p, app, an) == 0) {
                        _cleanup_free_ char *topics = strndup(eq + 1, len - (size_t) (eq + 1 - p));
                        return topics && in_csv(topics, topic);
                }
                p += len;
                if (*p == ';')
                        p++;
        }
        return true;
}

/* May app use topic on b at all, and publish (or subscribe) there? */
static bool topic_allowed(const PubsubBroker *b, const char *app, const char *topic, bool publish) {
        const char *allowed = component_get_string(b->component, "allowedTopics");
        if (allowed && *allowed && !in_csv(allowed, topic))
                return false;
        return scope_allows(component_get_string(b->component, publish ? "publishingScopes" : "subscriptionScopes"),
                            app, topic);
}

/* ---- publish ---- */

typedef struct Publish Publish;

/*
 * One app's line at one broker: at most PUBLISH_IN_DRIVER_PER_APP of its publishes are in the
 * driver at once, the rest wait here in order. The brokers serve their queues first come, first
 * served: without the line a bulk publish of 10,000 entries put 10,000 publishes ahead of every
 * other app's next one (issue 10 part 2: one app's batch delays only that app).
 */
typedef struct PublishLine {
        char *app;              /* NULL: callers that are no app (D-Bus programs) share one line */
        unsigned in_driver;
        Publish *head, *tail;   /* waiting */
        Publish *retrying;      /* waiting for a Resiliency retry (linked by next_waiting) */
        struct PublishLine *next;
} PublishLine;

struct Publish {
        Registry *registry;
        PublishDoneFn done;
        void *userdata;
        int error;
        char *message;
        sd_event_source *later;
        PubsubBroker *broker;   /* once the target is known; valid until done (close completes it) */
        char *app;              /* the publisher, for the failure log */
        /* what the driver gets, kept while the publish waits in its line */
        PublishLine *line;
        Publish *next_waiting;
        char *topic;
        void *data;
        size_t len;
        char **broker_md;
        int64_t ttl;
        uint64_t start_usec;    /* metrics */
        bool traced;            /* span: a PRODUCER child of the inbound call's (core/trace.h) */
        Span span;
        /* the broker's outbound Resiliency policy for the publisher (core/resiliency.h), when one applies */
        Resiliency *res;        /* ref */
        ResiliencyPolicy policy;
        unsigned retries_done;
        uint64_t breaker_generation;
        bool breaker_counting;
        sd_event_source *retry_timer;
        /* the policy's timeout: the attempt in the driver, and the timer that gives up on it */
        struct PublishAttempt *attempt;
        sd_event_source *timeout_timer;
};

/*
 * What the driver completes when a policy timeout applies: the publish may give up on the attempt
 * (p NULL then), and the driver's late answer only frees it and gives its line's place back (the
 * broker still held the message until then).
 */
typedef struct PublishAttempt {
        Publish *p;             /* NULL: timed out */
        PublishLine *line;      /* borrowed: lines outlive what the driver holds */
} PublishAttempt;

static void publish_free(Publish *p) {
        if (p->attempt)
                p->attempt->p = NULL;
        sd_event_source_disable_unref(p->timeout_timer);
        sd_event_source_disable_unref(p->later);
        sd_event_source_disable_unref(p->retry_timer);
        resiliency_unref(p->res);
        free(p->message);
        free(p->app);
        free(p->topic);
        free(p->data);
        strv_free(p->broker_md);
        free(p);
}

/*
 * A broker that failed a publish (its server down, its disk full) is logged with the cause: the
 * first failure in full, then at most one line per interval saying how many more there were
 * (issue 10 part 6: failures were silent). Refusals of the caller's own making are not failures
 * of the component and never get here.
 */
static void note_publish_failure(Publish *p, int error, const char *cause) {
        PubsubBroker *b = p->broker;
        uint64_t now = 0, held = 0;

        if (!b || error == -ECANCELED)
                return;
        (void) sd_event_now(b->event, CLOCK_MONOTONIC, &now);
        switch (ratelimit_event(&b->publish_failures, now, &held)) {
        case RATELIMIT_FIRST:
                log_struct(LOG_WARNING, error, p->app, b->name, "Publish to pubsub '%s' failed: %s", b->name,
                           cause ?: strerror(-error));
                break;
        case RATELIMIT_SUMMARY:
                log_struct(LOG_WARNING, error, p->app, b->name,
                           "Publish to pubsub '%s' failed: %s (%" PRIu64 " more failures since the last report)",
                           b->name, cause ?: strerror(-error), held);
                break;
        case RATELIMIT_HELD:
                break;
        }
}

static int on_publish_later(sd_event_source *s, void *userdata) {
        Publish *p = userdata;
        p->done(p->error, p->message, p->userdata);
        publish_free(p);
        return 0;
}

/* Answers from the loop (never inside pubsub_publish). */
_printf_(3, 4) static int publish_fail(Publish *p, int error, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&p->message, fmt, ap) < 0)
                p->message = NULL;
        va_end(ap);
        p->error = error;
        if (sd_event_add_defer(p->registry->event, &p->later, on_publish_later, p) < 0) {
                publish_free(p);
                return -ENOMEM;
        }
        return 0;
}

static PublishLine *line_get(PubsubBroker *b, const char *app) {
        for (PublishLine *l = b->publish_lines; l; l = l->next)
                if (streq_ptr(l->app, app))
                        return l;
        PublishLine *l = calloc(1, sizeof *l);
        if (!l || (app && !(l->app = strdup(app)))) {
                free(l);
                return NULL;
        }
        l->next = b->publish_lines;
        b->publish_lines = l;
        return l;
}

static void on_published(int error, const char *message, void *userdata);
static void on_attempt_published(int error, const char *message, void *userdata);
static int on_publish_timeout(sd_event_source *s, uint64_t usec, void *userdata);

/* Hands p to the driver; the driver has copied what it needs when publish() returns. */
static void publish_start(Publish *p) {
        PubsubBroker *b = p->broker;
        PubsubDoneFn cb = on_published;
        void *ud = p;
        int r;

        if (p->policy.breaker) {
                const char *why;
                uint64_t now = 0;
                (void) sd_event_now(b->event, CLOCK_MONOTONIC, &now);
                if (resiliency_breaker_allow(p->policy.breaker, now, &p->breaker_generation, &why) < 0) {
                        (void) publish_fail(p, -EHOSTUNREACH, "error when publishing to topic %s in pubsub %s: %s",
                                            p->topic, b->name, why);
                        return;
                }
                p->breaker_counting = true;
        }
        if (p->policy.timeout_usec > 0) {
                p->attempt = calloc(1, sizeof *p->attempt);
                if (!p->attempt ||
                    sd_event_add_time_relative(b->event, &p->timeout_timer, CLOCK_MONOTONIC, p->policy.timeout_usec,
                                               0, on_publish_timeout, p) < 0) {
                        free(p->attempt);
                        p->attempt = NULL;
                        p->breaker_counting = false;
                        (void) publish_fail(p, -ENOMEM, "error when publishing to topic %s in pubsub %s: %s",
                                            p->topic, b->name, strerror(ENOMEM));
                        return;
                }
                *p->attempt = (PublishAttempt){ .p = p, .line = p->line };
                cb = on_attempt_published;
                ud = p->attempt;
        }
        p->line->in_driver++;
        r = b->driver->publish(b, p->topic, p->data, p->len, p->broker_md, p->ttl, cb, ud);
        if (!p->policy.retry) { /* a retry sends them again: kept until the end */
                free(p->data);
                p->data = NULL;
                p->broker_md = strv_free(p->broker_md);
        }
        if (r < 0) {
                p->breaker_counting = false;
                p->line->in_driver--;
                p->timeout_timer = sd_event_source_disable_unref(p->timeout_timer);
                free(p->attempt); /* the driver took nothing */
                p->attempt = NULL;
                note_publish_failure(p, r, strerror(-r));
                (void) publish_fail(p, r, "error when publishing to topic %s in pubsub %s: %s", p->topic, b->name,
                                    strerror(-r));
        }
}

/* Starts what waits in the line while the line has room. */
static void line_pump(PublishLine *l) {
        while (l->head && l->in_driver < PUBLISH_IN_DRIVER_PER_APP) {
                Publish *p = l->head;
                l->head = p->next_waiting;
                if (!l->head)
                        l->tail = NULL;
                p->next_waiting = NULL;
                publish_start(p);
        }
}

/* dapr_component_pubsub_egress_*: under the publishing app. */
static void publish_metrics(Publish *p, bool ok) {
        App *a = p->app ? registry_find_app(p->registry, p->app) : NULL;
        AppMetrics *m = a ? a->metrics : p->registry->metrics;
        if (app_metrics_enabled(m))
                metrics_component_op(m, METRICS_PUBSUB_EGRESS, p->broker->name, NULL, p->topic, ok ? "true" : "false",
                                     metrics_now_usec() - p->start_usec);
        if (p->traced)
                trace_span_end(&p->span, 0, !ok);
}

static int on_publish_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Publish *p = userdata;
        PublishLine *l = p->line;
        p->retry_timer = sd_event_source_disable_unref(p->retry_timer);
        for (Publish **q = &l->retrying; *q; q = &(*q)->next_waiting)
                if (*q == p) {
                        *q = p->next_waiting;
                        break;
                }
        p->next_waiting = NULL;
        publish_start(p);
        return 0;
}

/* After a failed attempt under a policy: true when another follows (p waits on its line's retrying list). */
static bool publish_retry(Publish *p, int error) {
        PubsubBroker *b = p->broker;
        uint64_t now = 0, delay;
        (void) sd_event_now(b->event, CLOCK_MONOTONIC, &now);
        if (p->breaker_counting) {
                p->breaker_counting = false;
                resiliency_breaker_report(p->policy.breaker, p->breaker_generation, error >= 0, now);
        }
        if (error >= 0 || error == -ECANCELED || !p->policy.retry ||
            !resiliency_retry_next(p->policy.retry, p->retries_done + 1, 0, &delay) ||
            sd_event_add_time_relative(b->event, &p->retry_timer, CLOCK_MONOTONIC, delay, 0, on_publish_retry, p) < 0)
                return false;
        p->retries_done++;
        p->next_waiting = p->line->retrying;
        p->line->retrying = p;
        return true;
}

static void on_published(int error, const char *message, void *userdata) {
        Publish *p = userdata;
        PublishLine *l = p->line;
        p->timeout_timer = sd_event_source_disable_unref(p->timeout_timer);
        if (p->res && publish_retry(p, error)) {
                note_publish_failure(p, error, message);
                l->in_driver--;
                line_pump(l);
                return;
        }
        publish_metrics(p, error >= 0);
        if (error < 0)
                note_publish_failure(p, error, message);
        l->in_driver--;
        p->done(error, message, p->userdata);
        publish_free(p);
        line_pump(l);
}

static void on_attempt_published(int error, const char *message, void *userdata) {
        PublishAttempt *a = userdata;
        Publish *p = a->p;
        PublishLine *l = a->line;

        free(a);
        if (p) {
                p->attempt = NULL;
                return on_published(error, message, p);
        }
        l->in_driver--; /* its publish gave up on it already */
        line_pump(l);
}

/*
 * The outbound policy's timeout (daprd: "context deadline exceeded"; its publish and bulk publish
 * run under the policy's timeout, pkg/runtime/pubsub/publisher): the attempt failed, whatever the
 * broker makes of the message later. The attempt keeps its place in the line until the driver
 * answers it.
 */
static int on_publish_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Publish *p = userdata;
        PubsubBroker *b = p->broker;

        p->timeout_timer = sd_event_source_disable_unref(p->timeout_timer);
        p->attempt->p = NULL;
        p->attempt = NULL;
        if (publish_retry(p, -ETIMEDOUT)) {
                note_publish_failure(p, -ETIMEDOUT, "context deadline exceeded");
                return 0;
        }
        _cleanup_free_ char *msg = NULL;
        if (asprintf(&msg, "error when publishing to topic %s in pubsub %s: context deadline exceeded", p->topic,
                     b->name) < 0)
                msg = NULL;
        publish_metrics(p, false);
        note_publish_failure(p, -ETIMEDOUT, "context deadline exceeded");
        p->done(-ETIMEDOUT, msg ?: "context deadline exceeded", p->userdata);
        publish_free(p);
        return 0;
}

/* The broker closes: what still waits in a line ends now (-ECANCELED); the lines go after the
 * driver closed, since it completes what it holds through on_published(). */
static void lines_cancel(PubsubBroker *b) {
        for (PublishLine *l = b->publish_lines; l; l = l->next) {
                while (l->retrying) {
                        Publish *p = l->retrying;
                        l->retrying = p->next_waiting;
                        p->done(-ECANCELED, "the pubsub component is closing", p->userdata);
                        publish_free(p);
                }
                while (l->head) {
                        Publish *p = l->head;
                        l->head = p->next_waiting;
                        p->done(-ECANCELED, "the pubsub component is closing", p->userdata);
                        publish_free(p);
                }
        }
}

static void lines_free(PubsubBroker *b) {
        while (b->publish_lines) {
                PublishLine *l = b->publish_lines;
                b->publish_lines = l->next;
                free(l->app);
                free(l);
        }
}


int pubsub_check_publish(Registry *m, const char *app, const char *pubsub, const char *topic, PubsubBroker **ret,
                         char **reterr) {
        int r = 0;
        PubsubBroker *b = NULL;

        if (m->n_pubsubs == 0)
                r = -ENODEV;
        else if (!(b = broker_find(m, pubsub)) ||
                 /* A caller that is no app (a desktop program over D-Bus) sees only unscoped pubsubs. */
                 (app ? !component_in_scope(b->component, app) : b->component->scopes && b->component->scopes[0]))
                r = -ENOENT;
        else if (!topic || !*topic)
                r = -EDESTADDRREQ;
        else if (!topic_allowed(b, app, topic, true))
                r = -EACCES;
        if (r == 0) {
                if (ret)
                        *ret = b;
                return 0;
        }
        int k = r == -ENODEV         ? asprintf(reterr, "no pubsub is configured")
                : r == -ENOENT       ? asprintf(reterr, "pubsub %s not found", pubsub)
                : r == -EDESTADDRREQ ? asprintf(reterr, "topic is empty in pubsub %s", pubsub)
                                     : asprintf(reterr, "topic %s is not allowed for app id %s", topic,
                                                app ?: "(none)");
        return k < 0 ? -ENOMEM : r;
}

/*
 * Dapr's own envelope, stored on a broker only this daemon writes (PubsubDriver.own_storage),
 * carries what its delivery needs to read (trace context, expiration) as message metadata too:
 * the delivery then skips parsing the envelope, which was the largest single cost of a delivery
 * (a yajl pass over the whole event). Apps never see message metadata. Any other message (raw,
 * passthrough, or from a broker others write to) is parsed as before.
 */
#define FACTS_MARK "mooring.envelope"
#define FACTS_TRACEPARENT "mooring.traceparent"
#define FACTS_TRACESTATE "mooring.tracestate"
#define FACTS_EXPIRATION "mooring.expiration"

static int envelope_facts_store(char ***md, const CloudEventFacts *f) {
        if (strv_extend(md, FACTS_MARK) < 0 || strv_extend(md, "1") < 0)
                return -ENOMEM;
        if (f->traceparent && (strv_extend(md, FACTS_TRACEPARENT) < 0 || strv_extend(md, f->traceparent) < 0))
                return -ENOMEM;
        if (f->tracestate && *f->tracestate &&
            (strv_extend(md, FACTS_TRACESTATE) < 0 || strv_extend(md, f->tracestate) < 0))
                return -ENOMEM;
        if (*f->expiration && (strv_extend(md, FACTS_EXPIRATION) < 0 || strv_extend(md, f->expiration) < 0))
                return -ENOMEM;
        return 0;
}

static const char *md_get(char *const *md, const char *name) {
        for (char *const *p = md; p && p[0] && p[1]; p += 2)
                if (streq(p[0], name))
                        return p[1];
        return NULL;
}

int pubsub_publish(Registry *m, const PublishRequest *req, PublishDoneFn done, void *userdata) {
        Publish *p = calloc(1, sizeof *p);
        _cleanup_strv_free_ char **overrides = NULL, **broker_md = NULL;
        _cleanup_free_ char *envelope = NULL, *err = NULL;
        size_t envelope_len = 0;
        int64_t ttl = 0;
        bool raw = false;
        int r;

        if (!p)
                return -ENOMEM;
        *p = (Publish){ .registry = m, .done = done, .userdata = userdata, .start_usec = metrics_now_usec() };

        _cleanup_free_ char *why = NULL;
        PubsubBroker *b = NULL;
        r = pubsub_check_publish(m, req->app, req->pubsub, req->topic, &b, &why);
        if (r == -ENOMEM)
                goto oom;
        if (r < 0)
                return publish_fail(p, r, "%s", why);
        char span_name[TRACE_NAME_MAX];
        snprintf(span_name, sizeof span_name, "pubsub/%s/publish", b->name);
        p->traced = trace_span_begin_child(&p->span, SPAN_PRODUCER, span_name, req->app);

        /* Dapr's own metadata; the rest is the broker's. */
        for (char *const *md = req->metadata; md && md[0] && md[1]; md += 2) {
                const char *k = md[0], *v = md[1];
                const char *ce = strncasecmp(k, "cloudevent.", 11) == 0 ? k + 11 : NULL;
                if (strcasecmp(k, "rawPayload") == 0) {
                        int bv = parse_boolean(v);
                        if (bv < 0)
                                return publish_fail(p, -EINVAL, "metadata.rawPayload must be a boolean: '%s'", v);
                        raw = bv;
                } else if (strcasecmp(k, "ttlInSeconds") == 0) {
                        char *e;
                        long long t = strtoll(v, &e, 10);
                        if (!*v || *e || t <= 0 || t > INT32_MAX)
                                return publish_fail(p, -EINVAL, "metadata.ttlInSeconds must be a positive integer: '%s'", v);
                        ttl = t;
                } else if (ce) {
                        if (strv_extend(&overrides, ce) < 0 || strv_extend(&overrides, v) < 0)
                                goto oom;
                        continue;
                }
                if (strv_extend(&broker_md, k) < 0 || strv_extend(&broker_md, v) < 0)
                        goto oom;
        }

        /* Every published event carries a trace: a child of the publisher's, or a new one. */
        TraceContext parent, span;
        char traceparent[TRACEPARENT_LEN + 1];
        bool has_parent = traceparent_parse(req->traceparent, &parent) >= 0;
        trace_context_new_span(has_parent ? &parent : NULL, false, &span);
        traceparent_format(&span, traceparent);

        const void *data = req->data;
        size_t len = req->len;
        if (!raw) {
                CloudEventFacts facts = {};
                CloudEventInput in = {
                        .topic = req->topic,
                        .pubsub = req->pubsub,
                        .source = req->app,
                        .content_type = req->content_type,
                        .data = req->data,
                        .len = req->len,
                        .traceparent = traceparent,
                        .tracestate = has_parent && tracestate_is_valid(req->tracestate) ? req->tracestate : NULL,
                        .ttl_sec = b->driver->native_ttl ? 0 : ttl,
                        .overrides = overrides,
                        .facts = b->driver->own_storage ? &facts : NULL,
                };
                r = cloudevent_build(&in, &envelope, &envelope_len, &err);
                if (r == -ENOMEM)
                        goto oom;
                if (r < 0)
                        return publish_fail(p, -EBADMSG, "error when marshalling cloud event envelope: %s",
                                            err ?: "invalid");
                if (facts.set && envelope_facts_store(&broker_md, &facts) < 0)
                        goto oom;
                data = envelope;
                len = envelope_len;
        }
        p->broker = b;
        p->app = req->app ? strdup(req->app) : NULL;
        p->topic = strdup(req->topic);
        if (envelope)
                p->data = TAKE_PTR(envelope);
        else if ((p->data = malloc(len ? len : 1)))
                memcpy(p->data, data, len);
        p->len = len;
        p->broker_md = TAKE_PTR(broker_md);
        p->ttl = ttl;
        p->line = line_get(b, req->app);
        if ((req->app && !p->app) || !p->topic || !p->data || !p->line)
                goto oom;
        if (m->resiliency) {
                r = resiliency_lookup(m->resiliency, req->app, RESILIENCY_COMPONENT_OUTBOUND, b->name, "Pubsub",
                                      &p->policy);
                if (r < 0)
                        goto oom;
                if (r > 0)
                        p->res = resiliency_ref(m->resiliency);
        }
        if (p->line->head || p->line->in_driver >= PUBLISH_IN_DRIVER_PER_APP) {
                if (p->line->tail)
                        p->line->tail->next_waiting = p;
                else
                        p->line->head = p;
                p->line->tail = p;
                return 0;
        }
        publish_start(p);
        return 0;
oom:
        publish_free(p);
        return -ENOMEM;
}

/* ---- deliveries ---- */

static const char *runner_who(const Runner *rn) {
        return rn->app ? rn->app->config->id : rn->sink_app;
}

/*
 * The default inbound policy, when no Resiliency policy applies or the one that does is spent:
 * the broker offers the message again after 0.5 s, doubling to 30 s, without end. (daprd has no
 * inbound retry of its own; the broker's redelivery, such as Redis streams' processingTimeout,
 * takes over. Ours is that redelivery, with this schedule.)
 */
static const ResiliencyRetry default_inbound_retry = {
        .name = (char *) "(built-in)", .exponential = true, .initial_interval_usec = PUBSUB_RETRY_FIRST_USEC,
        .multiplier = 2, .max_interval_usec = PUBSUB_RETRY_MAX_USEC, .max_retries = -1,
};

/* The wait before the broker offers dl's message again: the inbound policy's back-off while it
 * allows more retries, then the default one. Retries go through the broker, so a message
 * waiting for one survives a restart. */
static uint64_t delivery_retry_delay(const Delivery *dl) {
        uint64_t d = PUBSUB_RETRY_FIRST_USEC;
        if (dl->policy.retry && resiliency_retry_next(dl->policy.retry, dl->attempt, 0, &d)) {
                log_debug("Message of topic %s for app '%s' is offered again in %" PRIu64 " ms (Resiliency policy '%s').",
                          dl->runner->sub->topic, runner_who(dl->runner), d / 1000, dl->policy.retry->name);
                return d;
        }
        (void) resiliency_retry_next(&default_inbound_retry, dl->attempt, 0, &d);
        return d;
}

static void delivery_free(Delivery *dl) {
        Runner *rn = dl->runner;
        if (dl->prev)
                dl->prev->next = dl->next;
        else if (rn->deliveries == dl)
                rn->deliveries = dl->next;
        if (dl->next)
                dl->next->prev = dl->prev;
        transport_call_cancel(dl->call);
        if (rn->app) {
                app_slot_cancel(rn->app, &dl->waiter);
                if (dl->holds_slot)
                        app_slot_release(rn->app); /* the next in the app's line goes */
        }
        free(dl->headers); /* strv_pack(): one allocation */
        json_decref(dl->bulk_entry);
        resiliency_unref(dl->res);
        free(dl->data);
        free(dl->path);
        free(dl);
}

static void settle_after(Delivery *dl, PubsubOutcome o, uint64_t delay) {
        Runner *rn = dl->runner;
        if (dl->breaker_counting) { /* the app's answer, as the policy's breaker counts it */
                dl->breaker_counting = false;
                uint64_t now = 0;
                (void) sd_event_now(rn->registry->event, CLOCK_MONOTONIC, &now);
                resiliency_breaker_report(dl->policy.breaker, dl->breaker_generation, o == PUBSUB_ACK, now);
        }
        PubsubDelivery *d = TAKE_PTR(dl->d);
        delivery_free(dl);
        rn->broker->driver->settle(d, o, delay);
}

static void settle(Delivery *dl, PubsubOutcome o) {
        settle_after(dl, o, o == PUBSUB_RETRY ? delivery_retry_delay(dl) : 0);
}

static void on_dead_lettered(int error, const char *message, void *userdata) {
        Delivery *dl = userdata;
        if (error < 0)
                log_struct(LOG_WARNING, error, runner_who(dl->runner), dl->runner->broker->name,
                           "Could not send a message of topic %s to dead-letter topic %s: %s; retrying it later.",
                           dl->runner->sub->topic, dl->runner->sub->dead_letter_topic, message ?: "");
        settle(dl, error < 0 ? PUBSUB_RETRY : PUBSUB_ACK);
}

/* Done with it: to the dead-letter topic when there is one (then ack), else ack (dropped). */
static void drop(Delivery *dl, const char *why) {
        Runner *rn = dl->runner;
        const char *dlt = rn->sub->dead_letter_topic;
        if (dlt && *dlt) {
                log_struct(LOG_WARNING, 0, runner_who(rn), rn->broker->name,
                           "Message on topic %s %s; sending it to dead-letter topic %s.", rn->sub->topic, why, dlt);
                /* The original bytes, as stored; the delivery stays open until the broker has it. */
                if (rn->broker->driver->publish(rn->broker, dlt, dl->data, dl->len, NULL, 0, on_dead_lettered, dl) >= 0)
                        return;
                return settle(dl, PUBSUB_RETRY);
        }
        log_struct(LOG_WARNING, 0, runner_who(rn), rn->broker->name, "Message on topic %s %s; dropped.",
                   rn->sub->topic, why);
        settle(dl, PUBSUB_ACK);
}

/* dapr_component_pubsub_ingress_* and dapr_http_client_*, under the subscribed app; st is what
 * on_app_answered() makes of the answer: success, retry or drop. */
static void delivery_metrics(Delivery *dl, const TransportAnswer *ans, const TransportError *e, const char *st) {
        Runner *rn = dl->runner;
        AppMetrics *m = rn->app->metrics;
        if (!app_metrics_enabled(m))
                return;
        uint64_t usec = metrics_now_usec() - dl->post_usec;
        metrics_component_op(m, METRICS_PUBSUB_INGRESS, rn->broker->name, NULL, rn->sub->topic, st, usec);
        metrics_http_client(m, METRICS_CALL_DELIVERY, "POST", e ? 0 : ans->status, dl->len, e ? 0 : ans->body_len,
                            usec);
}

static void on_app_answered(TransportCall *tc, const TransportAnswer *ans, const TransportError *e,
                            void *userdata) {
        Delivery *dl = userdata;
        Runner *rn = dl->runner;
        const char *app = rn->app->config->id;

        dl->call = NULL; /* the transport frees it after this returns */
        if (e) {
                delivery_metrics(dl, ans, e, "retry");
                log_struct(LOG_WARNING, 0, app, rn->broker->name, "Delivering a message of topic %s to %s failed: %s; "
                           "retrying.", rn->sub->topic, dl->path, e->message);
                return settle(dl, PUBSUB_RETRY);
        }
        if (ans->status == 404) {
                delivery_metrics(dl, ans, e, "drop");
                /* Dapr: the route does not exist; an error, and the message is not retried. */
                log_struct(LOG_ERR, 0, app, rn->broker->name, "App answered 404 for %s (topic %s): message dropped.",
                           dl->path, rn->sub->topic);
                return settle(dl, PUBSUB_ACK);
        }
        if (ans->status < 200 || ans->status > 299) {
                delivery_metrics(dl, ans, e, "retry");
                log_struct(LOG_WARNING, 0, app, rn->broker->name, "App answered %u for %s (topic %s): retrying.",
                           ans->status, dl->path, rn->sub->topic);
                return settle(dl, PUBSUB_RETRY);
        }
        /* Without a tree (json-scan.h): a jansson parse of {"status":"SUCCESS"} cost more than
         * the rest of reading the answer. Not an object, or no string "status": an ACK. */
        _cleanup_free_ char *st = NULL;
        if (ans->body_len > 0 && json_peek_string_ci(ans->body, ans->body_len, "status", &st) == -ENOMEM)
                return settle(dl, PUBSUB_RETRY);
        PubsubOutcome o = PUBSUB_ACK;
        if (st && strcasecmp(st, "DROP") == 0) {
                delivery_metrics(dl, ans, e, "drop");
                return drop(dl, "was dropped by the app (DROP)");
        }
        if (st && strcasecmp(st, "SUCCESS") != 0) {
                log_struct(LOG_INFO, 0, app, rn->broker->name, "App asked to retry a message of topic %s (%s).",
                           rn->sub->topic, st);
                o = PUBSUB_RETRY;
        }
        delivery_metrics(dl, ans, e, o == PUBSUB_RETRY ? "retry" : "success");
        settle(dl, o);
}

static const TransportHandler delivery_handler = { .done = on_app_answered };

/* POSTs the stored event to the app (holding a slot). */
static void delivery_post(Delivery *dl) {
        Runner *rn = dl->runner;
        App *a = rn->app;
        TransportAddress addr;
        if (!app_channel_address(a, &addr))
                return settle(dl, PUBSUB_RETRY);
        if (dl->policy.breaker) {
                const char *why;
                uint64_t now = 0;
                (void) sd_event_now(rn->registry->event, CLOCK_MONOTONIC, &now);
                if (resiliency_breaker_allow(dl->policy.breaker, now, &dl->breaker_generation, &why) < 0) {
                        log_debug("Message of topic %s for app '%s' not delivered: %s.", rn->sub->topic, a->config->id,
                                  why);
                        return settle(dl, PUBSUB_RETRY);
                }
                dl->breaker_counting = true;
        }
        TransportRequest req = {
                .method = "POST",
                .target = dl->path,
                .headers = dl->headers,
                .body = dl->data,
                .body_len = dl->len,
                .timeout_usec = a->config->invoke_timeout_usec,
                .max_answer = APP_ANSWER_MAX,
                .purpose = TRANSPORT_PURPOSE_DELIVERY,
        };
        if (dl->policy.timeout_usec > 0 && (req.timeout_usec == 0 || dl->policy.timeout_usec < req.timeout_usec))
                req.timeout_usec = dl->policy.timeout_usec;
        dl->post_usec = metrics_now_usec();
        if (transport_call_start(rn->registry->transport, &addr, &req, &delivery_handler, dl, &dl->call) < 0)
                return settle(dl, PUBSUB_RETRY);
}

static void on_delivery_slot(AppSlotWaiter *w) {
        Delivery *dl = (Delivery *) w; /* the waiter is the first member */
        dl->holds_slot = true;
        delivery_post(dl);
}

/* Adds a header pair; a value with a line break would forge headers: it is left out. */
static int header_add(char ***l, const char *name, const char *value) {
        int r;
        if (!value || strpbrk(value, "\r\n"))
                return 0;
        r = strv_extend(l, name);
        return r < 0 ? r : strv_extend(l, value);
}

/* ---- bulk deliveries (bulkSubscribe) ---- */

/*
 * daprd's bulk delivery for brokers without a bulk API of their own
 * (pkg/runtime/pubsub/default_bulksub.go, pkg/runtime/subscription/): messages gather until
 * maxMessagesCount are there or maxAwaitDurationMs passed since the first, then go to the app
 * as one POST per route, Content-Type application/json, body
 *   {"id","type":"com.dapr.event.sent.bulk","topic","pubsubname","metadata":{"pubsubName":..},
 *    "entries":[{"entryId","event","metadata","contentType"}]}
 * where event is the CloudEvent object, or with rawPayload the stored bytes in base64. The app
 * answers {"statuses":[{"entryId","status"}]}: SUCCESS acks, DROP drops (to the dead-letter
 * topic if any), RETRY, an empty or unknown status and an entry the answer leaves out are
 * retried; an answer that is no such JSON retries every entry, 404 drops every entry (not
 * dead-lettered), any other status retries every entry.
 *
 * The subscriber's inbound Resiliency policy applies to a batch as daprd applies it
 * (pkg/runtime/subscription/bulkresiliency.go): the POST is one attempt, bounded by the policy's
 * timeout and counted once by its breaker, failed when any entry is left unsettled; only the
 * failed entries are tried again, after the policy's back-off. daprd re-POSTs them itself; here,
 * as for single deliveries, the broker offers them again after that back-off (they may then
 * share a batch with newer messages), so a retry survives a restart.
 */
struct BulkPost {
        AppSlotWaiter waiter;        /* first: in the app's line for a slot */
        bool holds_slot;
        Runner *runner;
        Delivery **entries;          /* the entries for this route; settled when the app answered */
        size_t n;
        char *body;
        size_t len;
        char **headers;
        TransportCall *call;
        ResiliencyBreaker *breaker;  /* borrowed from entries[0]'s policy (it holds the set) */
        uint64_t breaker_generation;
        bool breaker_counting;       /* the POST out was allowed by the breaker */
        BulkPost *next, *prev;
};

static unsigned bulk_max(const Runner *rn) {
        return rn->sub->bulk_max_messages ?: SUBSCRIPTION_BULK_DEFAULT_MESSAGES;
}

static void bulk_breaker_report(BulkPost *bp, bool success) {
        uint64_t now = 0;
        if (!bp->breaker_counting)
                return;
        bp->breaker_counting = false;
        (void) sd_event_now(bp->runner->registry->event, CLOCK_MONOTONIC, &now);
        resiliency_breaker_report(bp->breaker, bp->breaker_generation, success, now);
}

static void bulk_post_free(BulkPost *bp) {
        Runner *rn = bp->runner;
        bulk_breaker_report(bp, false); /* a POST ended unheard (its runner stops) failed */
        if (bp->prev)
                bp->prev->next = bp->next;
        else if (rn->bulk_posts == bp)
                rn->bulk_posts = bp->next;
        if (bp->next)
                bp->next->prev = bp->prev;
        transport_call_cancel(bp->call);
        app_slot_cancel(rn->app, &bp->waiter);
        if (bp->holds_slot)
                app_slot_release(rn->app);
        strv_free(bp->headers);
        free(bp->body);
        free(bp->entries);
        free(bp);
}

/* Ends the post and settles each entry: SUCCESS, DROP, or (anything else) RETRY. */
static void bulk_post_settle(BulkPost *bp, const PubsubVerdict *verdicts, PubsubVerdict all) {
        Delivery **entries = TAKE_PTR(bp->entries);
        size_t n = bp->n;
        bool success = true; /* daprd: the attempt failed when any entry is to be retried */
        for (size_t i = 0; i < n; i++)
                success = success && (verdicts ? verdicts[i] : all) != PUBSUB_VERDICT_RETRY;
        bulk_breaker_report(bp, success);
        bulk_post_free(bp); /* the slot goes back first: settling may start the next delivery */
        for (size_t i = 0; i < n; i++) {
                PubsubVerdict v = verdicts ? verdicts[i] : all;
                if (v == PUBSUB_VERDICT_SUCCESS)
                        settle(entries[i], PUBSUB_ACK);
                else if (v == PUBSUB_VERDICT_DROP)
                        drop(entries[i], "was dropped by the app (DROP in a bulk answer)");
                else
                        settle(entries[i], PUBSUB_RETRY);
        }
        free(entries);
}

static const char *bulk_entry_id(const Delivery *dl) {
        return json_string_value(json_object_get(dl->bulk_entry, "entryId"));
}

static void on_bulk_answered(TransportCall *tc, const TransportAnswer *ans, const TransportError *e,
                             void *userdata) {
        BulkPost *bp = userdata;
        Runner *rn = bp->runner;
        const char *app = rn->app->config->id, *path = bp->entries[0]->path;
        _cleanup_free_ PubsubVerdict *v = NULL;
        size_t settled = 0, retried = 0;

        bp->call = NULL; /* the transport frees it after this returns */
        if (e) {
                log_struct(LOG_WARNING, 0, app, rn->broker->name, "Delivering %zu messages of topic %s in bulk to %s "
                           "failed: %s; retrying them.", bp->n, rn->sub->topic, path, e->message);
                return bulk_post_settle(bp, NULL, PUBSUB_VERDICT_RETRY);
        }
        if (ans->status == 404) {
                log_struct(LOG_ERR, 0, app, rn->broker->name, "App answered 404 for %s (topic %s, bulk): %zu "
                           "messages dropped.", path, rn->sub->topic, bp->n);
                return bulk_post_settle(bp, NULL, PUBSUB_VERDICT_SUCCESS);
        }
        if (ans->status < 200 || ans->status > 299) {
                log_struct(LOG_WARNING, 0, app, rn->broker->name, "App answered %u for %s (topic %s, bulk): "
                           "retrying %zu messages.", ans->status, path, rn->sub->topic, bp->n);
                return bulk_post_settle(bp, NULL, PUBSUB_VERDICT_RETRY);
        }
        _cleanup_(json_decrefp) json_t *j = ans->body_len ? json_loadb(ans->body, ans->body_len, 0, NULL) : NULL;
        json_t *statuses = json_is_object(j) ? json_object_get_ci(j, "statuses") : NULL;
        if (!json_is_object(j) || (statuses && !json_is_array(statuses) && !json_is_null(statuses))) {
                log_struct(LOG_WARNING, 0, app, rn->broker->name, "App's answer for %s (topic %s, bulk) is not "
                           "{\"statuses\":[...]}: retrying %zu messages.", path, rn->sub->topic, bp->n);
                return bulk_post_settle(bp, NULL, PUBSUB_VERDICT_RETRY);
        }
        v = malloc(bp->n * sizeof *v);
        if (!v)
                return bulk_post_settle(bp, NULL, PUBSUB_VERDICT_RETRY);
        for (size_t i = 0; i < bp->n; i++)
                v[i] = PUBSUB_VERDICT_RETRY;
        /* daprd: an entry left out of the answer, or with an empty or unknown status, is retried;
         * ids it did not send are ignored; statuses are matched exactly (SUCCESS, RETRY, DROP). */
        size_t k;
        json_t *st;
        json_array_foreach (statuses, k, st) {
                const char *id = json_string_value(json_object_get_ci(st, "entryId"));
                const char *status = json_string_value(json_object_get_ci(st, "status"));
                if (!id)
                        continue;
                for (size_t i = 0; i < bp->n; i++)
                        if (streq_ptr(bulk_entry_id(bp->entries[i]), id)) {
                                v[i] = !status                    ? PUBSUB_VERDICT_RETRY
                                     : streq(status, "SUCCESS") ? PUBSUB_VERDICT_SUCCESS
                                     : streq(status, "DROP")    ? PUBSUB_VERDICT_DROP
                                                                : PUBSUB_VERDICT_RETRY;
                                break;
                        }
        }
        for (size_t i = 0; i < bp->n; i++)
                if (v[i] == PUBSUB_VERDICT_RETRY)
                        retried++;
                else
                        settled++;
        if (retried)
                log_struct(LOG_INFO, 0, app, rn->broker->name, "App's bulk answer for %s (topic %s) settled %zu of "
                           "%zu messages; retrying the other %zu.", path, rn->sub->topic, settled, bp->n, retried);
        bulk_post_settle(bp, v, 0);
}

static const TransportHandler bulk_handler = { .done = on_bulk_answered };

static void bulk_post_send(BulkPost *bp) {
        Runner *rn = bp->runner;
        App *a = rn->app;
        TransportAddress addr;
        if (!app_channel_address(a, &addr))
                return bulk_post_settle(bp, NULL, PUBSUB_VERDICT_RETRY);
        const ResiliencyPolicy *pol = &bp->entries[0]->policy; /* the runner's: the same for every entry */
        if (pol->breaker) {
                const char *why;
                uint64_t now = 0;
                (void) sd_event_now(rn->registry->event, CLOCK_MONOTONIC, &now);
                if (resiliency_breaker_allow(pol->breaker, now, &bp->breaker_generation, &why) < 0) {
                        log_debug("%zu messages of topic %s for app '%s' not delivered in bulk: %s.", bp->n,
                                  rn->sub->topic, a->config->id, why);
                        return bulk_post_settle(bp, NULL, PUBSUB_VERDICT_RETRY);
                }
                bp->breaker = pol->breaker;
                bp->breaker_counting = true;
        }
        TransportRequest req = {
                .method = "POST",
                .target = bp->entries[0]->path,
                .headers = bp->headers,
                .body = bp->body,
                .body_len = bp->len,
                .timeout_usec = a->config->invoke_timeout_usec,
                .max_answer = APP_ANSWER_MAX + bp->n * 256,
                .purpose = TRANSPORT_PURPOSE_BULK_DELIVERY,
        };
        if (pol->timeout_usec > 0 && (req.timeout_usec == 0 || pol->timeout_usec < req.timeout_usec))
                req.timeout_usec = pol->timeout_usec;
        if (transport_call_start(rn->registry->transport, &addr, &req, &bulk_handler, bp, &bp->call) < 0)
                return bulk_post_settle(bp, NULL, PUBSUB_VERDICT_RETRY);
}

static void on_bulk_slot(AppSlotWaiter *w) {
        BulkPost *bp = (BulkPost *) w; /* the waiter is the first member */
        bp->holds_slot = true;
        bulk_post_send(bp);
}

/* One POST for the entries of l (all with the same path); takes them. */
static void bulk_post_start(Runner *rn, Delivery **l, size_t n) {
        _cleanup_(json_decrefp) json_t *body = NULL, *entries = json_array();
        char id[CLOUDEVENT_UUID_MAX] = "";
        BulkPost *bp = calloc(1, sizeof *bp);

        if (!bp || !entries) {
                free(bp);
                for (size_t i = 0; i < n; i++)
                        settle(l[i], PUBSUB_RETRY);
                free(l);
                return;
        }
        *bp = (BulkPost){ .runner = rn, .entries = l, .n = n, .next = rn->bulk_posts };
        if (bp->next)
                bp->next->prev = bp;
        rn->bulk_posts = bp;
        for (size_t i = 0; i < n; i++)
                if (json_array_append(entries, l[i]->bulk_entry) < 0)
                        return bulk_post_settle(bp, NULL, PUBSUB_VERDICT_RETRY);
        (void) cloudevent_new_id(id);
        body = json_pack("{s:s, s:s, s:s, s:s, s:{s:s}, s:O}", "id", id, "type", "com.dapr.event.sent.bulk",
                         "topic", rn->sub->topic, "pubsubname", rn->broker->name, "metadata", "pubsubName",
                         rn->broker->name, "entries", entries);
        bp->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
        bp->len = bp->body ? strlen(bp->body) : 0;
        if (!bp->body || header_add(&bp->headers, "User-Agent", APP_CHANNEL_USER_AGENT) < 0 ||
            header_add(&bp->headers, "Content-Type", "application/json") < 0 ||
            header_add(&bp->headers, "pubsubName", rn->broker->name) < 0)
                return bulk_post_settle(bp, NULL, PUBSUB_VERDICT_RETRY);
        bp->waiter.granted = on_bulk_slot;
        if (app_slot_acquire(rn->app, &bp->waiter)) {
                bp->holds_slot = true;
                bulk_post_send(bp);
        }
}

/* Sends what waits: one POST per route, in the order the routes first appear. */
static void bulk_flush(Runner *rn) {
        Delivery **pending = TAKE_PTR(rn->bulk_pending);
        size_t n = rn->n_bulk_pending;

        rn->n_bulk_pending = 0;
        rn->bulk_timer = sd_event_source_disable_unref(rn->bulk_timer);
        for (size_t i = 0; i < n; i++) {
                if (!pending[i])
                        continue;
                const char *path = pending[i]->path;
                Delivery **l = malloc((n - i) * sizeof *l);
                size_t k = 0;
                for (size_t j = i; j < n; j++)
                        if (pending[j] && streq(pending[j]->path, path)) {
                                if (l)
                                        l[k++] = pending[j];
                                else
                                        settle(pending[j], PUBSUB_RETRY);
                                pending[j] = NULL;
                        }
                if (l)
                        bulk_post_start(rn, l, k);
        }
        free(pending);
}

static int on_bulk_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        bulk_flush(userdata);
        return 0;
}

/* Adds dl (routed to path; event is its CloudEvent) to the runner's batch. */
static void bulk_add(Runner *rn, Delivery *dl, const char *path, json_t *event) {
        char id[CLOUDEVENT_UUID_MAX];
        json_t *ev, *md = json_null();

        if (!rn->bulk_pending && !(rn->bulk_pending = calloc(bulk_max(rn), sizeof *rn->bulk_pending)))
                return settle(dl, PUBSUB_RETRY);
        /* the inbound policy: each entry's back-off when it is retried; the batch's timeout and breaker */
        Resiliency *res = rn->registry->resiliency;
        int k = res ? resiliency_lookup(res, rn->app->config->id, RESILIENCY_COMPONENT_INBOUND, rn->broker->name,
                                        "Pubsub", &dl->policy)
                    : 0;
        if (k < 0)
                return settle(dl, PUBSUB_RETRY);
        if (k > 0)
                dl->res = resiliency_ref(res);
        if (cloudevent_new_id(id) < 0 || !(dl->path = strdup(path)))
                return settle(dl, PUBSUB_RETRY);
        if (rn->sub->raw_payload) {
                _cleanup_free_ char *b64 = base64_encode(dl->data, dl->len);
                ev = b64 ? json_string(b64) : NULL;
        } else
                ev = json_incref(event);
        dl->bulk_entry = ev ? json_pack("{s:s, s:o, s:o, s:s}", "entryId", id, "event", ev, "metadata", md,
                                        "contentType", rn->sub->raw_payload ? "application/octet-stream"
                                                                           : "application/cloudevents+json")
                            : NULL;
        if (!dl->bulk_entry)
                return settle(dl, PUBSUB_RETRY);
        rn->bulk_pending[rn->n_bulk_pending++] = dl;
        if (rn->n_bulk_pending >= bulk_max(rn))
                return bulk_flush(rn);
        if (!rn->bulk_timer) {
                uint64_t ms = rn->sub->bulk_max_await_ms ?: SUBSCRIPTION_BULK_DEFAULT_AWAIT_MS;
                if (sd_event_add_time_relative(rn->registry->event, &rn->bulk_timer, CLOCK_MONOTONIC, ms * 1000, 0,
                                               on_bulk_timer, rn) < 0)
                        bulk_flush(rn);
        }
}

#define NOT_A_CLOUDEVENT "is not a CloudEvent (publish it with rawPayload and subscribe with rawPayload)"

static void on_deliver(PubsubSubscription *ds, PubsubDelivery *d, const PubsubMessage *msg, void *userdata) {
        Runner *rn = userdata;
        App *a = rn->app;
        Delivery *dl = calloc(1, sizeof *dl);
        json_t *event = NULL;
        const char *route;
        _cleanup_free_ char *wrapped = NULL;
        size_t wrapped_len = 0;

        if (!dl) {
                rn->broker->driver->settle(d, PUBSUB_RETRY, PUBSUB_RETRY_FIRST_USEC);
                return;
        }
        *dl = (Delivery){ .runner = rn, .d = d, .attempt = msg->attempt, .next = rn->deliveries };
        if (dl->next)
                dl->next->prev = dl;
        rn->deliveries = dl;
        dl->data = malloc(msg->len ? msg->len : 1);
        if (!dl->data)
                return settle(dl, PUBSUB_RETRY);
        memcpy(dl->data, msg->data, msg->len);
        dl->len = msg->len;

        /* An app its probes found down is not called; the message waits. */
        if (a && app_channel_is_down(a))
                /* No backoff growth while it is down: it gets its messages soon after it is back. */
                return settle_after(dl, PUBSUB_RETRY, PUBSUB_RETRY_FIRST_USEC * 2);

        const void *body = dl->data;
        size_t body_len = dl->len;
        if (rn->sub->raw_payload) {
                if (cloudevent_wrap_raw(msg->topic, rn->broker->name, dl->data, dl->len, &wrapped, &wrapped_len) < 0)
                        return settle(dl, PUBSUB_RETRY);
                body = wrapped;
                body_len = wrapped_len;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t now = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
        _cleanup_(cloudevent_peek_done) CloudEventPeek peek = {};
        const char *tp, *tstate;

        if (!rn->sink && !rn->sub->bulk && rn->sub->n_rules == 0) {
                const char *expiration;
                if (!rn->sub->raw_payload && rn->broker->driver->own_storage && md_get(msg->metadata, FACTS_MARK)) {
                        /* our own envelope: what it holds came with it (envelope_facts_store()) */
                        tp = md_get(msg->metadata, FACTS_TRACEPARENT);
                        tstate = md_get(msg->metadata, FACTS_TRACESTATE);
                        expiration = md_get(msg->metadata, FACTS_EXPIRATION);
                } else {
                        /* The common case reads three members of the envelope, without a tree of
                         * it (a jansson parse was about half of a delivery's CPU). */
                        int k = cloudevent_peek(body, body_len, &peek);
                        if (k == -ENOMEM)
                                return settle(dl, PUBSUB_RETRY);
                        if (k < 0)
                                return drop(dl, NOT_A_CLOUDEVENT);
                        tp = peek.traceparent;
                        tstate = peek.tracestate;
                        expiration = peek.expiration;
                }
                int64_t t;
                if (expiration && cloudevent_parse_time(expiration, &t) >= 0 && (t < 0 || (uint64_t) t < now))
                        return drop(dl, "expired (ttl)");
                route = rn->sub->default_path;
                if (!route)
                        return drop(dl, "matches no route of the subscription");
        } else {
                event = cloudevent_parse(body, body_len);
                if (!event && rn->sink && !wrapped) {
                        /* A sink gets everything as a CloudEvent: raw payloads wrapped as Dapr wraps them. */
                        if (cloudevent_wrap_raw(msg->topic, rn->broker->name, dl->data, dl->len, &wrapped,
                                                &wrapped_len) < 0)
                                return settle(dl, PUBSUB_RETRY);
                        event = cloudevent_parse(wrapped, wrapped_len);
                }
                if (!event)
                        return drop(dl, NOT_A_CLOUDEVENT);
                if (cloudevent_expired(event, now)) {
                        json_decref(event);
                        return drop(dl, "expired (ttl)");
                }
                if (rn->sink) {
                        json_decref(event);
                        if (wrapped) {
                                free(dl->data);
                                dl->data = TAKE_PTR(wrapped);
                                dl->len = wrapped_len;
                        }
                        rn->sink((PubsubSinkDelivery *) dl, rn->sub->topic, dl->data, dl->len, rn->sink_userdata);
                        return;
                }
                route = subscription_route(rn->sub, event);
                tp = json_string_value(json_object_get(event, "traceparent"));
                tstate = json_string_value(json_object_get(event, "tracestate"));
                if (!route) {
                        json_decref(event);
                        return drop(dl, "matches no route of the subscription");
                }
                if (rn->sub->bulk) {
                        bulk_add(rn, dl, route, event);
                        json_decref(event);
                        return;
                }
        }
        dl->path = strdup(route);
        /* one allocation for the lot (strv_pack()); a value with a line break would forge headers:
         * it is left out */
        char *h[11];
        size_t nh = 0;
        const char *pairs[][2] = {
                { "User-Agent", APP_CHANNEL_USER_AGENT }, { "Content-Type", "application/cloudevents+json" },
                { "pubsubname", rn->broker->name },       { "traceparent", tp },
                { "tracestate", tstate && *tstate ? tstate : NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(pairs); i++)
                if (pairs[i][1] && !strpbrk(pairs[i][1], "\r\n")) {
                        h[nh++] = (char *) pairs[i][0];
                        h[nh++] = (char *) pairs[i][1];
                }
        h[nh] = NULL;
        dl->headers = strv_pack(h, nh);
        bool ok = dl->path && dl->headers;
        json_decref(event);
        if (!ok)
                return settle(dl, PUBSUB_RETRY);

        if (wrapped) { /* the body must outlive this call: keep the wrapped form instead */
                free(dl->data);
                dl->data = TAKE_PTR(wrapped);
                dl->len = wrapped_len;
        }
        Resiliency *res = rn->registry->resiliency;
        int k = res ? resiliency_lookup(res, a->config->id, RESILIENCY_COMPONENT_INBOUND, rn->broker->name, "Pubsub",
                                        &dl->policy)
                    : 0;
        if (k < 0)
                return settle(dl, PUBSUB_RETRY);
        if (k > 0)
                dl->res = resiliency_ref(res);
        /* One of the app's MaxConcurrency= slots, shared with service invocation. */
        dl->waiter.granted = on_delivery_slot;
        if (app_slot_acquire(a, &dl->waiter)) {
                dl->holds_slot = true;
                delivery_post(dl);
        }
}

/* ---- runners ---- */

static void runner_free(Runner *rn) {
        Registry *m = rn->registry;
        /* Unsettled messages stay with the broker, which offers them again later. Leave the
         * app's line first, so freed slots do not start deliveries about to be dropped. */
        for (Delivery *dl = rn->deliveries; dl && rn->app; dl = dl->next)
                app_slot_cancel(rn->app, &dl->waiter);
        while (rn->bulk_posts)
                bulk_post_free(rn->bulk_posts); /* its entries are among rn->deliveries */
        free(rn->bulk_pending);
        sd_event_source_disable_unref(rn->bulk_timer);
        while (rn->deliveries) {
                Delivery *dl = rn->deliveries;
                dl->d = NULL;
                delivery_free(dl);
        }
        if (rn->ds)
                rn->broker->driver->unsubscribe(rn->ds);
        if (rn->prev)
                rn->prev->next = rn->next;
        else if (m->pubsub_runners == rn)
                m->pubsub_runners = rn->next;
        if (rn->next)
                rn->next->prev = rn->prev;
        if (rn->sink)
                subscription_free(rn->sub);
        free(rn->sink_app);
        app_unref(rn->app);
        free(rn);
}

static unsigned concurrency(const Runner *rn) {
        const char *v = NULL;
        for (char **p = rn->sub->metadata; p && p[0] && p[1]; p += 2)
                if (strcasecmp(p[0], "concurrency") == 0)
                        v = p[1];
        if (!v)
                v = component_get_string(rn->broker->component, "concurrency");
        unsigned long n = v ? strtoul(v, NULL, 10) : 0;
        return n > 0 && n <= 4096 ? (unsigned) n : PUBSUB_DEFAULT_CONCURRENCY;
}

static void runner_start(Registry *m, App *a, Subscription *s) {
        PubsubBroker *b = broker_find(m, s->pubsub);
        Runner *rn;
        int r;

        if (!b || !component_in_scope(b->component, a->config->id)) {
                log_struct(LOG_WARNING, 0, a->config->id, s->pubsub,
                           "Subscription to topic %s: no pubsub '%s' for this app; ignored.", s->topic, s->pubsub);
                return;
        }
        if (!topic_allowed(b, a->config->id, s->topic, false)) {
                log_struct(LOG_WARNING, 0, a->config->id, s->pubsub,
                           "Subscription to topic %s refused by the pubsub's scopes.", s->topic);
                return;
        }
        rn = calloc(1, sizeof *rn);
        if (!rn)
                return;
        *rn = (Runner){ .registry = m, .app = app_ref(a), .sub = s, .broker = b,
                        .next = m->pubsub_runners };
        if (rn->next)
                rn->next->prev = rn;
        m->pubsub_runners = rn;
        unsigned in_flight = concurrency(rn);
        if (s->bulk && in_flight < 2 * bulk_max(rn)) /* a full batch, and the next one filling meanwhile */
                in_flight = 2 * bulk_max(rn);
        r = b->driver->subscribe(b, s->topic, a->config->id, in_flight, on_deliver, rn, &rn->ds);
        if (r < 0) {
                log_struct(LOG_ERR, r, a->config->id, s->pubsub, "Cannot subscribe to topic %s: %s.", s->topic,
                           strerror(-r));
                rn->ds = NULL;
                runner_free(rn);
                return;
        }
        log_struct(LOG_INFO, 0, a->config->id, s->pubsub, "Subscribed to topic %s (%s%s).", s->topic,
                   s->declarative ? "declarative" : "programmatic", s->bulk ? ", bulk" : "");
}

static void stop_app(Registry *m, App *a) {
        for (Runner *rn = m->pubsub_runners, *n; rn; rn = n) {
                n = rn->next;
                if (rn->app == a)
                        runner_free(rn);
        }
}

static AppSubscriptions *app_subs_find(Registry *m, const char *id) {
        for (size_t i = 0; i < m->n_app_subscriptions; i++)
                if (streq(m->app_subscriptions[i].app_id, id))
                        return &m->app_subscriptions[i];
        return NULL;
}

/* (Re)starts every subscription of a: declarative ones in scope, then its programmatic ones. */
static void start_app(Registry *m, App *a) {
        stop_app(m, a);
        if (a->config->address_kind == APP_ADDRESS_NONE || !a->registry)
                return;
        for (size_t i = 0; i < m->n_subscriptions; i++)
                if (subscription_in_scope(m->subscriptions[i], a->config->id))
                        runner_start(m, a, m->subscriptions[i]);
        AppSubscriptions *as = app_subs_find(m, a->config->id);
        for (size_t i = 0; as && i < as->n; i++)
                runner_start(m, a, as->subs[i]);
}

static void app_subs_set(Registry *m, const char *id, Subscription **subs, size_t n) {
        AppSubscriptions *as = app_subs_find(m, id);
        if (!as) {
                AppSubscriptions *l = realloc(m->app_subscriptions, (m->n_app_subscriptions + 1) * sizeof *l);
                char *copy = strdup(id);
                if (!l || !copy) {
                        free(copy);
                        if (l)
                                m->app_subscriptions = l;
                        for (size_t i = 0; i < n; i++)
                                subscription_free(subs[i]);
                        free(subs);
                        return;
                }
                m->app_subscriptions = l;
                as = &l[m->n_app_subscriptions++];
                *as = (AppSubscriptions){ .app_id = copy };
        }
        for (size_t i = 0; i < as->n; i++)
                subscription_free(as->subs[i]);
        free(as->subs);
        as->subs = subs;
        as->n = n;
}

/* ---- GET /dapr/subscribe ---- */

typedef struct SubscribeQuery {
        Registry *registry;
        App *app;
} SubscribeQuery;

static void on_subscribe_answered(TransportCall *tc, const TransportAnswer *ans, const TransportError *e,
                                  void *userdata) {
        SubscribeQuery *q = userdata;
        Registry *m = q->registry;
        App *a = q->app;
        Subscription **subs = NULL;
        size_t n = 0, skipped = 0;
        _cleanup_free_ char *err = NULL;

        if (!a->registry || m->stopping)
                goto done;
        if (e)
                log_struct(LOG_WARNING, 0, a->config->id, NULL, "GET /dapr/subscribe failed: %s; keeping what it "
                           "answered before.", e->message);
        else if (ans->status == 404 || (ans->status >= 200 && ans->status < 300 && ans->body_len == 0)) {
                stop_app(m, a);
                app_subs_set(m, a->config->id, NULL, 0);
        }
        else if (ans->status < 200 || ans->status > 299)
                log_struct(LOG_WARNING, 0, a->config->id, NULL, "GET /dapr/subscribe answered %u; no programmatic "
                           "subscriptions.", ans->status);
        else {
                int r = subscription_parse_programmatic(ans->body, ans->body_len, &subs, &n, &skipped, &err);
                if (r < 0)
                        log_struct(LOG_WARNING, r, a->config->id, NULL, "GET /dapr/subscribe answer is not a JSON "
                                   "array: %s", err ?: strerror(-r));
                else {
                        if (skipped)
                                log_struct(LOG_WARNING, 0, a->config->id, NULL, "GET /dapr/subscribe: %zu entries "
                                           "skipped, first: %s", skipped, err ?: "invalid");
                        stop_app(m, a); /* its runners borrow the subscriptions replaced now */
                        app_subs_set(m, a->config->id, subs, n);
                }
        }
        start_app(m, a);
done:
        app_unref(a);
        free(q);
}

static const TransportHandler subscribe_handler = { .done = on_subscribe_answered };

static void app_ready(Registry *m, App *a) {
        TransportAddress addr;
        SubscribeQuery *q;

        if (!app_channel_address(a, &addr) || m->stopping)
                return;
        q = calloc(1, sizeof *q);
        if (!q) {
                start_app(m, a);
                return;
        }
        *q = (SubscribeQuery){ .registry = m, .app = app_ref(a) };
        static char *const headers[] = { "User-Agent", APP_CHANNEL_USER_AGENT, NULL };
        TransportRequest req = {
                .method = "GET",
                .target = "/dapr/subscribe",
                .headers = headers,
                .timeout_usec = 10 * 1000 * 1000,
                .max_answer = SUBSCRIBE_ANSWER_MAX,
                .purpose = TRANSPORT_PURPOSE_SUBSCRIPTIONS,
        };
        if (transport_call_start(m->transport, &addr, &req, &subscribe_handler, q, NULL) < 0) {
                app_unref(q->app);
                free(q);
                start_app(m, a);
        }
}

/* Dapr asks an app for its subscriptions once it is up; again after each recovery. */
static void on_app_health_changed(Registry *m, App *a, void *userdata) {
        if (a->health == APP_HEALTH_HEALTHY)
                app_ready(m, a);
}

static void on_app_removed(Registry *m, App *a, void *userdata) {
        stop_app(m, a);
}

int pubsub_setup(Registry *m) {
        int r = registry_add_callback(m, REGISTRY_APP_HEALTH_CHANGED, on_app_health_changed, NULL);
        if (r >= 0)
                r = registry_add_callback(m, REGISTRY_APP_REMOVED, on_app_removed, NULL);
        return r;
}

void pubsub_stop_all(Registry *m) {
        for (Runner *rn = m->pubsub_runners, *n; rn; rn = n) {
                n = rn->next;
                if (!rn->sink)
                        runner_free(rn);
        }
}

/* ---- declarative subscriptions ---- */

typedef struct SubLoad {
        Registry *m;
        Subscription **list;
        size_t n;
        ConfKeep keep;          /* what of the running set a broken file keeps */
        size_t file_start;      /* list[file_start..n) came from the file being read */
        bool oom;
} SubLoad;

static void on_sub(Subscription *s, void *userdata) {
        SubLoad *sl = userdata;
        Subscription **l = realloc(sl->list, (sl->n + 1) * sizeof *l);
        if (!l) {
                subscription_free(s);
                return;
        }
        sl->list = l;
        l[sl->n++] = s;
}

/* A bad document on reload: per document where it names itself (metadata.name), else per file;
 * see core/conf-keep.h. Unnamed subscriptions can only be kept with their whole file. */
static void on_sub_error(const ConfError *e, const char *name, void *userdata) {
        SubLoad *sl = userdata;
        int r = conf_keep_note_error(&sl->keep, name);
        if (r < 0)
                sl->oom = true;
        if (r > 0)
                registry_log_conf_kept(sl->m, e);
        else
                registry_log_conf_error(sl->m, e);
}

static const char *sub_file_of(const void *o) {
        return ((const Subscription *) o)->file;
}

static const char *sub_name_of(const void *o) {
        return ((const Subscription *) o)->name;
}

static bool sub_has_new(const char *name, void *userdata) {
        SubLoad *sl = userdata;
        for (size_t i = sl->file_start; i < sl->n; i++)
                if (streq_ptr(sl->list[i]->name, name))
                        return true;
        return false;
}

/* Moves running subscription i into the new list: the old list no longer owns it. */
static void sub_keep(size_t i, void *userdata) {
        SubLoad *sl = userdata;
        Subscription **l = realloc(sl->list, (sl->n + 1) * sizeof *l);
        if (!l) {
                sl->oom = true; /* stays in the old list and goes with it */
                return;
        }
        sl->list = l;
        l[sl->n++] = TAKE_PTR(sl->m->subscriptions[i]);
}

int pubsub_reload(Registry *m) {
        static const char *const suffixes[] = { ".yaml", ".yml", NULL };
        _cleanup_strv_free_ char **files = NULL;
        _cleanup_free_ char *dir = NULL;
        SubLoad sl = {
                .m = m,
                .keep = { .old = (void *const *) m->subscriptions, .n_old = m->n_subscriptions,
                          .file_of = sub_file_of, .name_of = sub_name_of },
        };
        int r;

        if (asprintf(&dir, "%s/subscriptions", m->config_dir) < 0)
                return -ENOMEM;
        r = dir_list_sorted(dir, suffixes, &files);
        if (r < 0)
                log_warning_errno(r, "Failed to read %s: %m", dir);
        for (char **f = files; f && *f; f++) {
                _cleanup_free_ char *text = NULL;
                size_t len;
                sl.file_start = sl.n;
                conf_keep_begin_file(&sl.keep, *f);
                r = read_full_file(*f, SETTINGS_FILE_MAX, &text, &len);
                if (r < 0) {
                        ConfError e = {};
                        conf_error_set(&e, *f, 0, NULL, "cannot read: %s", strerror(-r));
                        on_sub_error(&e, NULL, &sl);
                        conf_error_done(&e);
                } else
                        (void) subscription_load_yaml_named(*f, text, len, on_sub, on_sub_error, &sl);
                if (sl.keep.whole) /* the file's last good version stays whole: drop what was read now */
                        while (sl.n > sl.file_start)
                                subscription_free(sl.list[--sl.n]);
                conf_keep_end_file(&sl.keep, sub_has_new, sub_keep, &sl);
        }
        conf_keep_done(&sl.keep);

        pubsub_stop_all(m);
        for (size_t i = 0; i < m->n_subscriptions; i++)
                subscription_free(m->subscriptions[i]);
        free(m->subscriptions);
        m->subscriptions = sl.list;
        m->n_subscriptions = sl.n;
        for (size_t i = 0; i < m->n_apps; i++)
                start_app(m, m->apps[i]);
        return 0;
}

void pubsub_foreach_subscription(Registry *m, PubsubSubscriptionFn fn, void *userdata) {
        for (Runner *rn = m->pubsub_runners; rn; rn = rn->next)
                fn(runner_who(rn), rn->broker->name, rn->sub->topic, rn->sink ? NULL : rn->sub, userdata);
}

void pubsub_done(Registry *m) {
        (void) registry_remove_callback(m, REGISTRY_APP_HEALTH_CHANGED, on_app_health_changed, NULL);
        (void) registry_remove_callback(m, REGISTRY_APP_REMOVED, on_app_removed, NULL);
        while (m->pubsub_runners) { /* sinks too: they hear it */
                Runner *rn = m->pubsub_runners;
                PubsubSinkFn fn = rn->sink;
                void *ud = rn->sink_userdata;
                runner_free(rn);
                if (fn)
                        fn(NULL, NULL, NULL, 0, ud);
        }
        for (size_t i = 0; i < m->n_subscriptions; i++)
                subscription_free(m->subscriptions[i]);
        free(m->subscriptions);
        m->subscriptions = NULL;
        m->n_subscriptions = 0;
        for (size_t i = 0; i < m->n_app_subscriptions; i++) {
                AppSubscriptions *as = &m->app_subscriptions[i];
                for (size_t j = 0; j < as->n; j++)
                        subscription_free(as->subs[j]);
                free(as->subs);
                free(as->app_id);
        }
        free(m->app_subscriptions);
        m->app_subscriptions = NULL;
        m->n_app_subscriptions = 0;
}

/* ---- sinks ---- */

static Subscription *sink_subscription(const char *pubsub, const char *topic) {
        Subscription *s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->pubsub = strdup(pubsub);
        s->topic = strdup(topic);
        if (!s->pubsub || !s->topic)
                return subscription_free(s);
        return s;
}

int pubsub_sink_subscribe(Registry *m, const char *app_id, const char *group, const char *pubsub,
                          const char *topic, unsigned max_in_flight, PubsubSinkFn fn, void *userdata,
                          PubsubRunner **ret) {
        PubsubBroker *b = broker_find(m, pubsub);
        Runner *rn;
        int r;

        if (!b || (app_id ? !component_in_scope(b->component, app_id) : b->component->scopes && b->component->scopes[0]))
                return -ENOENT;
        if (!topic || !*topic || !group || !*group)
                return -EINVAL;
        if (!topic_allowed(b, app_id, topic, false))
                return -EACCES;
        rn = calloc(1, sizeof *rn);
        if (!rn)
                return -ENOMEM;
        rn->sub = sink_subscription(pubsub, topic);
        if (!rn->sub) {
                free(rn);
                return -ENOMEM;
        }
        *rn = (Runner){ .registry = m, .sub = rn->sub, .sink = fn, .sink_userdata = userdata, .broker = b,
                        .sink_app = app_id ? strdup(app_id) : NULL, .next = m->pubsub_runners };
        if (app_id && !rn->sink_app) {
                subscription_free(rn->sub);
                free(rn);
                return -ENOMEM;
        }
        if (rn->next)
                rn->next->prev = rn;
        m->pubsub_runners = rn;
        r = b->driver->subscribe(b, topic, group, max_in_flight ? max_in_flight : PUBSUB_DEFAULT_CONCURRENCY,
                                 on_deliver, rn, &rn->ds);
        if (r < 0) {
                rn->ds = NULL;
                runner_free(rn);
                return r;
        }
        *ret = rn;
        return 0;
}

void pubsub_sink_settle(PubsubSinkDelivery *sd, PubsubVerdict v) {
        Delivery *dl = (Delivery *) sd;
        if (v == PUBSUB_VERDICT_SUCCESS)
                settle(dl, PUBSUB_ACK);
        else if (v == PUBSUB_VERDICT_DROP)
                drop(dl, "was dropped by the subscriber (DROP)");
        else
                settle(dl, PUBSUB_RETRY);
}

void pubsub_sink_unsubscribe(PubsubRunner *rn) {
        runner_free(rn);
}
