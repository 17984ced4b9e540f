/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /mooring/v1/resiliency (admin): the Resiliency documents in force, their
 * policies and targets, and every circuit breaker made so far with its state
 * and counts. `mooringctl resiliency` prints it.
 */
#include <jansson.h>
#include <systemd/sd-event.h>

#include "../core/registry.h"
#include "../core/resiliency.h"
#include "../util/cleanup.h"
#include "handlers.h"
#include "server.h"

static json_t *usec_json(uint64_t usec) {
        return json_real((double) usec / 1e6);
}

static json_t *doc_json(const ResiliencyDoc *d) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:[], s:{}, s:{}, s:{}, s:[]}", "name", d->name, "file", d->file,
                              "line", (int) d->line, "scopes", "timeouts", "retries", "circuitBreakers", "targets");
        if (!o)
                return NULL;
        for (char **s = d->scopes; s && *s; s++)
                json_array_append_new(json_object_get(o, "scopes"), json_string(*s));
        for (size_t i = 0; i < d->n_timeouts; i++)
                json_object_set_new(json_object_get(o, "timeouts"), d->timeouts[i].name,
                                    usec_json(d->timeouts[i].usec));
        for (size_t i = 0; i < d->n_retries; i++) {
                const ResiliencyRetry *p = &d->retries[i];
                json_t *v = json_pack("{s:s, s:I, s:o, s:o}", "policy", p->exponential ? "exponential" : "constant",
                                      "maxRetries", (json_int_t) p->max_retries, "durationSec",
                                      usec_json(p->duration_usec), "maxIntervalSec", usec_json(p->max_interval_usec));
                json_object_set_new(json_object_get(o, "retries"), p->name, v);
        }
        for (size_t i = 0; i < d->n_breakers; i++) {
                const ResiliencyBreakerPolicy *p = &d->breakers[i];
                json_t *v = json_pack("{s:I, s:o, s:o, s:s}", "maxRequests", (json_int_t) p->max_requests,
                                      "intervalSec", usec_json(p->interval_usec), "timeoutSec",
                                      usec_json(p->timeout_usec), "trip",
                                      p->trip_text ? p->trip_text : "consecutiveFailures > 5");
                json_object_set_new(json_object_get(o, "circuitBreakers"), p->name, v);
        }
        for (size_t i = 0; i < d->n_targets; i++) {
                const ResiliencyTarget *t = &d->targets[i];
                json_array_append_new(json_object_get(o, "targets"),
                                      json_pack("{s:s, s:s, s:s*, s:s*, s:s*, s:i}", "kind",
                                                resiliency_kind_to_string(t->kind), "name", t->name, "timeout",
                                                t->timeout, "retry", t->retry, "circuitBreaker", t->breaker, "line",
                                                (int) t->line));
        }
        return o;
}

static json_t *breaker_json(const ResiliencyBreaker *b, uint64_t now) {
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "caller", b->caller, "kind",
                         /* one breaker per component for both directions, as daprd */
                         b->kind == RESILIENCY_COMPONENT_OUTBOUND ? "component" : resiliency_kind_to_string(b->kind),
                         "target", b->target, "policy", b->policy->name, "state",
                         breaker_state_to_string(resiliency_breaker_state(b, now)), "requests",
                         (json_int_t) b->counts[TRIP_REQUESTS], "consecutiveFailures",
                         (json_int_t) b->counts[TRIP_CONSECUTIVE_FAILURES], "totalFailures",
                         (json_int_t) b->counts[TRIP_TOTAL_FAILURES]);
}

int http_get_resiliency(HttpRequest *r, const RouteMatch *m) {
        Registry *reg = http_request_registry(r);
        Resiliency *res = reg->resiliency;
        json_t *o = json_pack("{s:[], s:[]}", "documents", "circuitBreakers");
        uint64_t now = 0;

        (void) sd_event_now(reg->event, CLOCK_MONOTONIC, &now);
        for (size_t i = 0; o && res && i < res->n_docs; i++)
                json_array_append_new(json_object_get(o, "documents"), doc_json(res->docs[i]));
        for (const ResiliencyBreaker *b = res ? res->breakers : NULL; o && b; b = b->next)
                json_array_append_new(json_object_get(o, "circuitBreakers"), breaker_json(b, now));
        /* actor breakers: per caller and type, most recently used first; target "<type>" or "<type>-<id>" */
        for (const ActorBreakerCache *c = res ? res->actor_caches : NULL; o && c; c = c->next)
                for (const ResiliencyBreaker *b = c->mru; b; b = b->lru_next)
                        json_array_append_new(json_object_get(o, "circuitBreakers"), breaker_json(b, now));
        return http_reply_json(r, 200, o);
}
