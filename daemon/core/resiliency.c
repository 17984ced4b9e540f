/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See resiliency.h. The loader walks libyaml's node tree (core/yaml-walk.c)
 * so every error names file, line and field; nothing in the input is trusted
 * (every node's kind is checked, numbers are range-checked, the trip
 * expression is parsed by a small grammar that refuses what it does not know).
 *
 * Where daprd decodes loosely (unknown keys in a policy are dropped by its
 * decoder) we refuse them with file:line: a misspelt "maxRetries" silently
 * meaning "retry forever" is the kind of surprise the operator should see.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../util/cleanup.h"
#include "../util/strv.h"
#include "resiliency.h"
#include "yaml-walk.h"
#include "../util/fnv.h"

/* gobreaker's defaults, which daprd keeps */
#define BREAKER_DEFAULT_TIMEOUT_USEC (60ULL * 1000000)
#define BREAKER_DEFAULT_TRIP_FAILURES 5 /* trips at consecutiveFailures > 5 */
/* bounds that keep a policy from doing something absurd with our timers */
#define DURATION_MAX_USEC (365ULL * 24 * 3600 * 1000000)
#define POLICIES_MAX 1024

static const char *const kind_names[_RESILIENCY_KIND_MAX] = {
        [RESILIENCY_APP] = "app",
        [RESILIENCY_ACTOR] = "actor",
        [RESILIENCY_COMPONENT_OUTBOUND] = "component-outbound",
        [RESILIENCY_COMPONENT_INBOUND] = "component-inbound",
};

const char *resiliency_kind_to_string(ResiliencyKind k) {
        return k >= 0 && k < _RESILIENCY_KIND_MAX ? kind_names[k] : NULL;
}

static const char *const breaker_state_names[_BREAKER_STATE_MAX] = {
        [BREAKER_CLOSED] = "closed",
        [BREAKER_OPEN] = "open",
        [BREAKER_HALF_OPEN] = "half-open",
};

const char *breaker_state_to_string(BreakerState s) {
        return s >= 0 && s < _BREAKER_STATE_MAX ? breaker_state_names[s] : NULL;
}

static const char *const trip_var_names[_TRIP_VAR_MAX] = {
        [TRIP_REQUESTS] = "requests",
        [TRIP_TOTAL_SUCCESSES] = "totalSuccesses",
        [TRIP_TOTAL_FAILURES] = "totalFailures",
        [TRIP_CONSECUTIVE_SUCCESSES] = "consecutiveSuccesses",
        [TRIP_CONSECUTIVE_FAILURES] = "consecutiveFailures",
};

/* ---- durations and trip expressions ---- */

int resiliency_parse_duration(const char *s, uint64_t *ret) {
        static const struct {
                const char *unit;
                double usec;
        } units[] = {
                /* longest first so "ms" wins over "m" */
                { "ns", 1e-3 }, { "us", 1 }, { "\xc2\xb5s", 1 }, { "ms", 1e3 }, { "h", 3600e6 }, { "m", 60e6 },
                { "s", 1e6 },
        };
        double total = 0;
        const char *p = s;

        if (!s || !*s)
                return -EINVAL;
        /* daprd: a bare integer is milliseconds */
        if (strspn(s, "0123456789") == strlen(s)) {
                if (strlen(s) > 12)
                        return -ERANGE;
                *ret = strtoull(s, NULL, 10) * 1000;
                return 0;
        }
        if (streq(s, "0")) {
                *ret = 0;
                return 0;
        }
        while (*p) {
                const char *start = p;
                double v = 0, frac = 0.1;
                size_t i;

                while (isdigit((unsigned char) *p))
                        v = v * 10 + (*p++ - '0');
                if (*p == '.') {
                        p++;
                        while (isdigit((unsigned char) *p)) {
                                v += (*p++ - '0') * frac;
                                frac /= 10;
                        }
                }
                if (p == start || (p == start + 1 && *start == '.'))
                        return -EINVAL;
                for (i = 0; i < ELEMENTSOF(units); i++)
                        if (strneq(p, units[i].unit, strlen(units[i].unit)))
                                break;
                if (i >= ELEMENTSOF(units))
                        return -EINVAL;
                total += v * units[i].usec;
                if (total > (double) DURATION_MAX_USEC)
                        return -ERANGE;
                p += strlen(units[i].unit);
        }
        *ret = (uint64_t) total;
        return 0;
}

static const char *skip_ws(const char *p) {
        while (*p == ' ' || *p == '\t')
                p++;
        return p;
}

/*
 * The forms Dapr documents for `trip`: comparisons of a count with an integer,
 * joined by && and ||. daprd evaluates full CEL; anything beyond this subset is
 * refused at load instead of being evaluated differently.
 */
int resiliency_parse_trip(const char *s, TripExpr *ret, const char **reterr_msg) {
        static const struct {
                const char *text;
                TripOp op;
        } ops[] = { { ">=", TRIP_GE }, { "<=", TRIP_LE }, { "==", TRIP_EQ }, { "!=", TRIP_NE }, { ">", TRIP_GT },
                    { "<", TRIP_LT } };
        TripExpr e = {};
        const char *p = skip_ws(s);
        bool or_next = false;

        for (;;) {
                size_t len = 0, i, j;
                char *end;

                if (e.n >= TRIP_TERMS_MAX) {
                        *reterr_msg = "too many comparisons (at most 8)";
                        return -EINVAL;
                }
                while (isalpha((unsigned char) p[len]))
                        len++;
                for (i = 0; i < _TRIP_VAR_MAX; i++)
                        if (len == strlen(trip_var_names[i]) && strneq(p, trip_var_names[i], len))
                                break;
                if (i >= _TRIP_VAR_MAX) {
                        *reterr_msg = "expected one of requests, totalSuccesses, totalFailures, "
                                      "consecutiveSuccesses, consecutiveFailures";
                        return -EINVAL;
                }
                p = skip_ws(p + len);
                for (j = 0; j < ELEMENTSOF(ops); j++)
                        if (strneq(p, ops[j].text, strlen(ops[j].text)))
                                break;
                if (j >= ELEMENTSOF(ops)) {
                        *reterr_msg = "expected a comparison (>=, >, <=, <, ==, !=)";
                        return -EINVAL;
                }
                p = skip_ws(p + strlen(ops[j].text));
                if (!isdigit((unsigned char) *p)) {
                        *reterr_msg = "expected a non-negative integer after the comparison";
                        return -EINVAL;
                }
                errno = 0;
                long long v = strtoll(p, &end, 10);
                if (errno != 0 || v > INT32_MAX) {
                        *reterr_msg = "number out of range";
                        return -EINVAL;
                }
                e.t[e.n].var = (TripVar) i;
                e.t[e.n].op = ops[j].op;
                e.t[e.n].value = v;
                e.t[e.n].or_before = or_next;
                e.n++;
                p = skip_ws(end);
                if (!*p)
                        break;
                if (strneq(p, "&&", 2))
                        or_next = false;
                else if (strneq(p, "||", 2))
                        or_next = true;
                else {
                        *reterr_msg = "expected && or || between comparisons";
                        return -EINVAL;
                }
                p = skip_ws(p + 2);
        }
        *ret = e;
        return 0;
}

static bool term_eval(int64_t have, TripOp op, int64_t want) {
        switch (op) {
        case TRIP_GE: return have >= want;
        case TRIP_GT: return have > want;
        case TRIP_LE: return have <= want;
        case TRIP_LT: return have < want;
        case TRIP_EQ: return have == want;
        case TRIP_NE: return have != want;
        }
        return false;
}

bool resiliency_trip_eval(const TripExpr *e, const uint64_t counts[_TRIP_VAR_MAX]) {
        /* an OR of AND-groups: && binds tighter, as in CEL */
        bool any = false, group = true;
        for (unsigned i = 0; i < e->n; i++) {
                if (i > 0 && e->t[i].or_before) {
                        any = any || group;
                        group = true;
                }
                group = group && term_eval((int64_t) counts[e->t[i].var], e->t[i].op, e->t[i].value);
        }
        return e->n > 0 && (any || group);
}

/* ---- the document model ---- */

static void target_done(ResiliencyTarget *t) {
        free(t->name);
        free(t->timeout);
        free(t->retry);
        free(t->breaker);
        free(t->breaker_scope);
}

ResiliencyDoc *resiliency_doc_free(ResiliencyDoc *d) {
        if (!d)
                return NULL;
        for (size_t i = 0; i < d->n_timeouts; i++)
                free(d->timeouts[i].name);
        for (size_t i = 0; i < d->n_retries; i++)
                free(d->retries[i].name);
        for (size_t i = 0; i < d->n_breakers; i++) {
                free(d->breakers[i].name);
                free(d->breakers[i].trip_text);
        }
        for (size_t i = 0; i < d->n_targets; i++)
                target_done(&d->targets[i]);
        free(d->timeouts);
        free(d->retries);
        free(d->breakers);
        free(d->targets);
        strv_free(d->scopes);
        free(d->name);
        free(d->file);
        free(d);
        return NULL;
}
DEFINE_CLEANUP_FUNC(ResiliencyDoc, resiliency_doc_free);

static void breaker_free(ResiliencyBreaker *b);
static void cache_free(ActorBreakerCache *c);

Resiliency *resiliency_new(void) {
        Resiliency *r = calloc(1, sizeof *r);
        if (r)
                r->n_ref = 1;
        return r;
}

Resiliency *resiliency_ref(Resiliency *r) {
        if (r)
                r->n_ref++;
        return r;
}

Resiliency *resiliency_unref(Resiliency *r) {
        if (!r || --r->n_ref > 0)
                return NULL;
        for (size_t i = 0; i < r->n_docs; i++)
                resiliency_doc_free(r->docs[i]);
        free(r->docs);
        while (r->breakers) {
                ResiliencyBreaker *b = r->breakers;
                r->breakers = b->next;
                breaker_free(b);
        }
        while (r->actor_caches) {
                ActorBreakerCache *c = r->actor_caches;
                r->actor_caches = c->next;
                cache_free(c);
        }
        free(r);
        return NULL;
}

int resiliency_add(Resiliency *r, ResiliencyDoc *d) {
        ResiliencyDoc **n = reallocarray(r->docs, r->n_docs + 1, sizeof *n);
        if (!n) {
                resiliency_doc_free(d);
                return -ENOMEM;
        }
        r->docs = n;
        r->docs[r->n_docs++] = d;
        return 0;
}

/* ---- parsing ---- */

static int dup_to(char **dst, const char *s) {
        if (!s)
                return 0;
        *dst = strdup(s);
        return *dst ? 0 : -ENOMEM;
}

static size_t map_size(const yaml_node_t *n) {
        return (size_t) (n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* Checks that every key of map is one of allowed (NULL-terminated). */
static int check_keys(YamlWalk *w, yaml_node_t *map, const char *field, const char *const *allowed) {
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_walk_node(w, p->key);
                const char *key = yaml_scalar(k);
                bool ok = false;
                for (const char *const *a = allowed; key && *a && !ok; a++)
                        ok = streq(key, *a);
                if (!ok)
                        return yaml_fail(w, k ?: map, field, "unknown key '%s'", key ?: "(not a string)");
        }
        return 0;
}

static int get_duration(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, uint64_t *ret) {
        const char *s;
        int r = yaml_get_scalar(w, map, key, field, false, &s);
        if (r < 0 || !s)
                return r;
        if (resiliency_parse_duration(s, ret) < 0)
                return yaml_fail(w, yaml_map_get(w, map, key), field,
                                 "expected a duration such as 5s, 250ms or 1m30s, not '%s'", s);
        return 0;
}

static int get_number(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, double lo, double hi,
                      bool integer, double *ret) {
        const char *s;
        char *end;
        int r = yaml_get_scalar(w, map, key, field, false, &s);
        if (r < 0 || !s)
                return r;
        errno = 0;
        double v = strtod(s, &end);
        if (!*s || *end || errno != 0 || isnan(v) || v < lo || v > hi || (integer && v != (double) (long long) v))
                return yaml_fail(w, yaml_map_get(w, map, key), field, "expected %s from %g to %g, not '%s'",
                                 integer ? "an integer" : "a number", lo, hi, s);
        *ret = v;
        return 0;
}

/* Every entry of a mapping of named policies, with a name that is a non-empty scalar. */
typedef int (*EntryFn)(YamlWalk *w, const char *name, yaml_node_t *key, yaml_node_t *value, ResiliencyDoc *d);

static int each_entry(YamlWalk *w, yaml_node_t *map, const char *field, EntryFn fn, ResiliencyDoc *d) {
        if (map->type != YAML_MAPPING_NODE)
                return yaml_fail(w, map, field, "expected a mapping of names to policies");
        if (map_size(map) > POLICIES_MAX)
                return yaml_fail(w, map, field, "more than %d entries", POLICIES_MAX);
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_walk_node(w, p->key), *v = yaml_walk_node(w, p->value);
                const char *name = yaml_scalar(k);
                if (!name || !*name)
                        return yaml_fail(w, k ?: map, field, "expected a non-empty name");
                if (!v)
                        return yaml_fail(w, k, field, "'%s' has no value", name);
                int r = fn(w, name, k, v, d);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int on_timeout(YamlWalk *w, const char *name, yaml_node_t *key, yaml_node_t *v, ResiliencyDoc *d) {
        const char *s = yaml_scalar(v);
        uint64_t usec;
        for (size_t i = 0; i < d->n_timeouts; i++)
                if (streq(d->timeouts[i].name, name))
                        return yaml_fail(w, key, "spec.policies.timeouts", "duplicate timeout '%s'", name);
        if (!s || resiliency_parse_duration(s, &usec) < 0)
                return yaml_fail(w, v, "spec.policies.timeouts", "timeout '%s': expected a duration such as 5s, not '%s'",
                                 name, s ?: "(not a string)");
        ResiliencyTimeout *n = reallocarray(d->timeouts, d->n_timeouts + 1, sizeof *n);
        if (!n)
                return -ENOMEM;
        d->timeouts = n;
        d->timeouts[d->n_timeouts] = (ResiliencyTimeout){ .usec = usec, .line = yaml_node_line(key) };
        if (dup_to(&d->timeouts[d->n_timeouts].name, name) < 0)
                return -ENOMEM;
        d->n_timeouts++;
        return 0;
}

static int on_retry(YamlWalk *w, const char *name, yaml_node_t *key, yaml_node_t *v, ResiliencyDoc *d) {
        static const char *const keys[] = { "policy", "duration", "initialInterval", "randomizationFactor",
                                            "multiplier", "maxInterval", "maxElapsedTime", "maxRetries", NULL };
        /* dapr/kit retry.DefaultConfig() */
        ResiliencyRetry p = {
                .duration_usec = 5ULL * 1000000, .initial_interval_usec = 500ULL * 1000, .multiplier = 1.5,
                .randomization = 0.5, .max_interval_usec = 60ULL * 1000000, .max_elapsed_usec = 15ULL * 60 * 1000000,
                .max_retries = -1, .line = yaml_node_line(key),
        };
        const char *s;
        double num;
        int r;

        for (size_t i = 0; i < d->n_retries; i++)
                if (streq(d->retries[i].name, name))
                        return yaml_fail(w, key, "spec.policies.retries", "duplicate retry policy '%s'", name);
        if (v->type != YAML_MAPPING_NODE)
                return yaml_fail(w, v, "spec.policies.retries", "retry policy '%s' must be a mapping", name);
        r = check_keys(w, v, "spec.policies.retries", keys);
        if (r < 0)
                return r;
        r = yaml_get_scalar(w, v, "policy", "spec.policies.retries.policy", false, &s);
        if (r < 0)
                return r;
        if (s && strcasecmp(s, "exponential") == 0)
                p.exponential = true;
        else if (s && strcasecmp(s, "constant") != 0)
                return yaml_fail(w, yaml_map_get(w, v, "policy"), "spec.policies.retries.policy",
                                 "expected constant or exponential, not '%s'", s);
        if ((r = get_duration(w, v, "duration", "spec.policies.retries.duration", &p.duration_usec)) < 0 ||
            (r = get_duration(w, v, "initialInterval", "spec.policies.retries.initialInterval",
                              &p.initial_interval_usec)) < 0 ||
            (r = get_duration(w, v, "maxInterval", "spec.policies.retries.maxInterval", &p.max_interval_usec)) < 0 ||
            (r = get_duration(w, v, "maxElapsedTime", "spec.policies.retries.maxElapsedTime", &p.max_elapsed_usec)) < 0)
                return r;
        num = p.multiplier;
        if ((r = get_number(w, v, "multiplier", "spec.policies.retries.multiplier", 1, 100, false, &num)) < 0)
                return r;
        p.multiplier = num;
        num = p.randomization;
        if ((r = get_number(w, v, "randomizationFactor", "spec.policies.retries.randomizationFactor", 0, 1, false,
                            &num)) < 0)
                return r;
        p.randomization = num;
        num = (double) p.max_retries;
        if ((r = get_number(w, v, "maxRetries", "spec.policies.retries.maxRetries", -1, 1e9, true, &num)) < 0)
                return r;
        p.max_retries = (int64_t) num;

        ResiliencyRetry *n = reallocarray(d->retries, d->n_retries + 1, sizeof *n);
        if (!n)
                return -ENOMEM;
        d->retries = n;
        if (dup_to(&p.name, name) < 0)
                return -ENOMEM;
        d->retries[d->n_retries++] = p;
        return 0;
}

static int on_breaker(YamlWalk *w, const char *name, yaml_node_t *key, yaml_node_t *v, ResiliencyDoc *d) {
        static const char *const keys[] = { "maxRequests", "interval", "timeout", "trip", NULL };
        ResiliencyBreakerPolicy p = { .timeout_usec = BREAKER_DEFAULT_TIMEOUT_USEC, .line = yaml_node_line(key) };
        const char *s, *msg = NULL;
        double num = 0;
        int r;

        for (size_t i = 0; i < d->n_breakers; i++)
                if (streq(d->breakers[i].name, name))
                        return yaml_fail(w, key, "spec.policies.circuitBreakers", "duplicate circuit breaker '%s'",
                                         name);
        if (v->type != YAML_MAPPING_NODE)
                return yaml_fail(w, v, "spec.policies.circuitBreakers", "circuit breaker '%s' must be a mapping",
                                 name);
        r = check_keys(w, v, "spec.policies.circuitBreakers", keys);
        if (r < 0)
                return r;
        if ((r = get_number(w, v, "maxRequests", "spec.policies.circuitBreakers.maxRequests", 0, UINT32_MAX, true,
                            &num)) < 0)
                return r;
        p.max_requests = (uint32_t) num;
        if ((r = get_duration(w, v, "interval", "spec.policies.circuitBreakers.interval", &p.interval_usec)) < 0 ||
            (r = get_duration(w, v, "timeout", "spec.policies.circuitBreakers.timeout", &p.timeout_usec)) < 0)
                return r;
        if (p.timeout_usec == 0) /* gobreaker: 0 means its default */
                p.timeout_usec = BREAKER_DEFAULT_TIMEOUT_USEC;
        r = yaml_get_scalar(w, v, "trip", "spec.policies.circuitBreakers.trip", false, &s);
        if (r < 0)
                return r;
        if (s && resiliency_parse_trip(s, &p.trip, &msg) < 0)
                return yaml_fail(w, yaml_map_get(w, v, "trip"), "spec.policies.circuitBreakers.trip",
                                 "cannot use '%s': %s", s, msg);
        ResiliencyBreakerPolicy *n = reallocarray(d->breakers, d->n_breakers + 1, sizeof *n);
        if (!n)
                return -ENOMEM;
        d->breakers = n;
        if (dup_to(&p.name, name) < 0 || dup_to(&p.trip_text, s) < 0) {
                free(p.name);
                return -ENOMEM;
        }
        d->breakers[d->n_breakers++] = p;
        return 0;
}

static int add_target(YamlWalk *w, ResiliencyDoc *d, ResiliencyKind kind, const char *name, yaml_node_t *key,
                      yaml_node_t *v, const char *field) {
        static const char *const app_keys[] = { "timeout", "retry", "circuitBreaker", "circuitBreakerCacheSize",
                                                NULL };
        static const char *const actor_keys[] = { "timeout", "retry", "circuitBreaker", "circuitBreakerScope",
                                                  "circuitBreakerCacheSize", NULL };
        ResiliencyTarget t = { .kind = kind, .line = yaml_node_line(key) };
        const char *timeout, *retry, *breaker, *scope = NULL;
        int r;

        for (size_t i = 0; i < d->n_targets; i++)
                if (d->targets[i].kind == kind && streq(d->targets[i].name, name))
                        return yaml_fail(w, key, field, "duplicate target '%s'", name);
        if (v->type != YAML_MAPPING_NODE)
                return yaml_fail(w, v, field, "target '%s' must be a mapping of timeout, retry, circuitBreaker", name);
        r = check_keys(w, v, field, kind == RESILIENCY_ACTOR ? actor_keys : app_keys);
        if (r < 0)
                return r;
        if ((r = yaml_get_scalar(w, v, "timeout", field, false, &timeout)) < 0 ||
            (r = yaml_get_scalar(w, v, "retry", field, false, &retry)) < 0 ||
            (r = yaml_get_scalar(w, v, "circuitBreaker", field, false, &breaker)) < 0)
                return r;
        double cache_size = 0;
        if ((r = get_number(w, v, "circuitBreakerCacheSize", field, 0, 1e9, true, &cache_size)) < 0)
                return r;
        t.breaker_cache_size = (uint32_t) cache_size; /* daprd: 0 means its default */
        if (kind == RESILIENCY_ACTOR) {
                r = yaml_get_scalar(w, v, "circuitBreakerScope", field, false, &scope);
                if (r < 0)
                        return r;
                /* daprd refuses an actor breaker without a scope */
                if (breaker && *breaker && !scope)
                        return yaml_fail(w, v, field, "actor circuit breakers must include circuitBreakerScope");
                if (scope && !streq(scope, "id") && !streq(scope, "type") && !streq(scope, "both"))
                        return yaml_fail(w, yaml_map_get(w, v, "circuitBreakerScope"), field,
                                         "circuitBreakerScope must be id, type or both, not '%s'", scope);
        }
        ResiliencyTarget *n = reallocarray(d->targets, d->n_targets + 1, sizeof *n);
        if (!n)
                return -ENOMEM;
        d->targets = n;
        if (dup_to(&t.name, name) < 0 || dup_to(&t.timeout, timeout && *timeout ? timeout : NULL) < 0 ||
            dup_to(&t.retry, retry && *retry ? retry : NULL) < 0 ||
            dup_to(&t.breaker, breaker && *breaker ? breaker : NULL) < 0 || dup_to(&t.breaker_scope, scope) < 0) {
                target_done(&t);
                return -ENOMEM;
        }
        d->targets[d->n_targets++] = t;
        return 0;
}

static int on_app(YamlWalk *w, const char *name, yaml_node_t *key, yaml_node_t *v, ResiliencyDoc *d) {
        return add_target(w, d, RESILIENCY_APP, name, key, v, "spec.targets.apps");
}

static int on_actor(YamlWalk *w, const char *name, yaml_node_t *key, yaml_node_t *v, ResiliencyDoc *d) {
        return add_target(w, d, RESILIENCY_ACTOR, name, key, v, "spec.targets.actors");
}

static int on_component(YamlWalk *w, const char *name, yaml_node_t *key, yaml_node_t *v, ResiliencyDoc *d) {
        static const char *const keys[] = { "inbound", "outbound", NULL };
        yaml_node_t *in, *out;
        int r;

        if (v->type != YAML_MAPPING_NODE)
                return yaml_fail(w, v, "spec.targets.components", "component '%s' must be a mapping of inbound, outbound",
                                 name);
        r = check_keys(w, v, "spec.targets.components", keys);
        if (r < 0)
                return r;
        out = yaml_map_get(w, v, "outbound");
        in = yaml_map_get(w, v, "inbound");
        if (out && (r = add_target(w, d, RESILIENCY_COMPONENT_OUTBOUND, name, key, out,
                                   "spec.targets.components.outbound")) < 0)
                return r;
        if (in && (r = add_target(w, d, RESILIENCY_COMPONENT_INBOUND, name, key, in,
                                  "spec.targets.components.inbound")) < 0)
                return r;
        return 0;
}

static int parse_doc(YamlWalk *w, yaml_node_t *root, ResiliencyDoc **ret) {
        static const char *const spec_keys[] = { "policies", "targets", NULL };
        static const char *const policy_keys[] = { "timeouts", "retries", "circuitBreakers", NULL };
        static const char *const target_keys[] = { "apps", "actors", "components", NULL };
        _cleanup_(resiliency_doc_freep) ResiliencyDoc *d = calloc(1, sizeof *d);
        yaml_node_t *meta, *spec, *n, *scopes;
        const char *s;
        int r;

        if (!d)
                return -ENOMEM;
        d->line = yaml_node_line(root);
        if (dup_to(&d->file, w->file) < 0)
                return -ENOMEM;
        r = yaml_get_scalar(w, root, "apiVersion", "apiVersion", true, &s);
        if (r < 0)
                return r;
        if (!streq(s, "dapr.io/v1alpha1"))
                return yaml_fail(w, yaml_map_get(w, root, "apiVersion"), "apiVersion",
                                 "unsupported apiVersion '%s', expected dapr.io/v1alpha1", s);
        meta = yaml_map_get(w, root, "metadata");
        if (!meta || meta->type != YAML_MAPPING_NODE)
                return yaml_fail(w, meta ?: root, "metadata", "required mapping with 'name' is missing");
        r = yaml_get_scalar(w, meta, "name", "metadata.name", true, &s);
        if (r < 0)
                return r;
        if (!name_is_valid(s))
                return yaml_fail(w, yaml_map_get(w, meta, "name"), "metadata.name", "invalid name '%s'", s);
        if (dup_to(&d->name, s) < 0)
                return -ENOMEM;

        spec = yaml_map_get(w, root, "spec");
        if (!spec || spec->type != YAML_MAPPING_NODE)
                return yaml_fail(w, spec ?: root, "spec", "required mapping is missing");
        if ((r = check_keys(w, spec, "spec", spec_keys)) < 0)
                return r;
        if (yaml_map_get(w, root, "targets"))
                return yaml_fail(w, yaml_map_get(w, root, "targets"), "targets",
                                 "'targets' belongs under 'spec' (daprd reads spec.targets)");

        yaml_node_t *pol = yaml_map_get(w, spec, "policies");
        if (pol) {
                if (pol->type != YAML_MAPPING_NODE)
                        return yaml_fail(w, pol, "spec.policies", "expected a mapping");
                if ((r = check_keys(w, pol, "spec.policies", policy_keys)) < 0)
                        return r;
                if ((n = yaml_map_get(w, pol, "timeouts")) &&
                    (r = each_entry(w, n, "spec.policies.timeouts", on_timeout, d)) < 0)
                        return r;
                if ((n = yaml_map_get(w, pol, "retries")) &&
                    (r = each_entry(w, n, "spec.policies.retries", on_retry, d)) < 0)
                        return r;
                if ((n = yaml_map_get(w, pol, "circuitBreakers")) &&
                    (r = each_entry(w, n, "spec.policies.circuitBreakers", on_breaker, d)) < 0)
                        return r;
        }
        yaml_node_t *tg = yaml_map_get(w, spec, "targets");
        if (tg) {
                if (tg->type != YAML_MAPPING_NODE)
                        return yaml_fail(w, tg, "spec.targets", "expected a mapping");
                if ((r = check_keys(w, tg, "spec.targets", target_keys)) < 0)
                        return r;
                if ((n = yaml_map_get(w, tg, "apps")) && (r = each_entry(w, n, "spec.targets.apps", on_app, d)) < 0)
                        return r;
                if ((n = yaml_map_get(w, tg, "actors")) &&
                    (r = each_entry(w, n, "spec.targets.actors", on_actor, d)) < 0)
                        return r;
                if ((n = yaml_map_get(w, tg, "components")) &&
                    (r = each_entry(w, n, "spec.targets.components", on_component, d)) < 0)
                        return r;
        }

        scopes = yaml_map_get(w, root, "scopes");
        if (scopes) {
                if (scopes->type != YAML_SEQUENCE_NODE)
                        return yaml_fail(w, scopes, "scopes", "expected a list of app ids");
                d->scopes = calloc(1, sizeof(char *));
                if (!d->scopes)
                        return -ENOMEM;
                for (yaml_node_item_t *it = scopes->data.sequence.items.start; it < scopes->data.sequence.items.top;
                     it++) {
                        yaml_node_t *sn = yaml_walk_node(w, *it);
                        const char *id = yaml_scalar(sn);
                        if (!id || !name_is_valid(id))
                                return yaml_fail(w, sn ?: scopes, "scopes", "invalid app id '%s' in scopes",
                                                 id ?: "(not a string)");
                        if (strv_extend(&d->scopes, id) < 0)
                                return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(d);
        return 0;
}

typedef struct {
        ResiliencyFoundFn found_fn;
        ResiliencyErrorFn error_fn;
        void *userdata;
        int n_good;
} ParseCtx;

static int on_document(YamlWalk *w, yaml_node_t *root, void *userdata) {
        ParseCtx *ctx = userdata;
        const char *kind;
        int r;

        if (yaml_is_null(root) || root->type != YAML_MAPPING_NODE)
                return 0; /* not ours: the Component loader reports documents that are no mapping */
        kind = yaml_scalar(yaml_map_get(w, root, "kind"));
        if (!kind || !streq(kind, "Resiliency"))
                return 0;
        ResiliencyDoc *d = NULL;
        r = parse_doc(w, root, &d);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                ctx->error_fn(w->err, ctx->userdata);
                conf_error_done(w->err);
                return 0;
        }
        ctx->n_good++;
        ctx->found_fn(d, ctx->userdata);
        return 0;
}

int resiliency_parse(const char *file, const char *text, size_t len, ResiliencyFoundFn found_fn,
                     ResiliencyErrorFn error_fn, void *userdata) {
        ParseCtx ctx = { .found_fn = found_fn, .error_fn = error_fn, .userdata = userdata };
        ConfError e = {};
        int r = yaml_walk_documents(file, text, len, &e, on_document, &ctx);
        if (r == -EINVAL)
                error_fn(&e, userdata);
        conf_error_done(&e);
        return r == -ENOMEM ? r : ctx.n_good;
}

/* ---- lookups ---- */

static bool doc_in_scope(const ResiliencyDoc *d, const char *caller) {
        return strv_length(d->scopes) == 0 || (caller && strv_contains(d->scopes, caller));
}

/* Later documents override earlier ones, as daprd merges them into one set of maps. */
static const ResiliencyTarget *find_target(const Resiliency *r, const char *caller, ResiliencyKind kind,
                                           const char *name) {
        for (size_t i = r->n_docs; i-- > 0;) {
                const ResiliencyDoc *d = r->docs[i];
                if (!doc_in_scope(d, caller))
                        continue;
                for (size_t j = d->n_targets; j-- > 0;)
                        if (d->targets[j].kind == kind && streq(d->targets[j].name, name))
                                return &d->targets[j];
        }
        return NULL;
}

static const ResiliencyTimeout *find_timeout(const Resiliency *r, const char *caller, const char *name) {
        for (size_t i = r->n_docs; name && i-- > 0;)
                for (size_t j = 0; doc_in_scope(r->docs[i], caller) && j < r->docs[i]->n_timeouts; j++)
                        if (streq(r->docs[i]->timeouts[j].name, name))
                                return &r->docs[i]->timeouts[j];
        return NULL;
}

static const ResiliencyRetry *find_retry(const Resiliency *r, const char *caller, const char *name) {
        for (size_t i = r->n_docs; name && i-- > 0;)
                for (size_t j = 0; doc_in_scope(r->docs[i], caller) && j < r->docs[i]->n_retries; j++)
                        if (streq(r->docs[i]->retries[j].name, name))
                                return &r->docs[i]->retries[j];
        return NULL;
}

static const ResiliencyBreakerPolicy *find_breaker(const Resiliency *r, const char *caller, const char *name) {
        for (size_t i = r->n_docs; name && i-- > 0;)
                for (size_t j = 0; doc_in_scope(r->docs[i], caller) && j < r->docs[i]->n_breakers; j++)
                        if (streq(r->docs[i]->breakers[j].name, name))
                                return &r->docs[i]->breakers[j];
        return NULL;
}

/* The breaker instance for caller and target, made on first use. */
static int breaker_get(Resiliency *r, const char *caller, ResiliencyKind kind, const char *target,
                       const ResiliencyBreakerPolicy *p, ResiliencyBreaker **ret) {
        /* daprd keeps one breaker per component name for both directions (componentCBs) */
        if (kind == RESILIENCY_COMPONENT_INBOUND)
                kind = RESILIENCY_COMPONENT_OUTBOUND;
        for (ResiliencyBreaker *b = r->breakers; b; b = b->next)
                if (b->kind == kind && streq(b->caller, strempty(caller)) && streq(b->target, target)) {
                        *ret = b;
                        return 0;
                }
        ResiliencyBreaker *b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        b->caller = strdup(strempty(caller));
        b->target = strdup(target);
        if (!b->caller || !b->target) {
                free(b->caller);
                free(b->target);
                free(b);
                return -ENOMEM;
        }
        b->kind = kind;
        b->policy = p;
        b->next = r->breakers;
        r->breakers = b;
        *ret = b;
        return 0;
}

/*
 * The policy names for caller acting on target name of kind: the target's own entry, else daprd's
 * Default<level><Timeout|Retry|CircuitBreaker>Policy names that exist, most specific level first.
 * names[] is the storage for the default names; *ret_target is the entry found (NULL: defaults).
 */
static void policy_names(const Resiliency *r, const char *caller, ResiliencyKind kind, const char *name,
                         const char *component_type, char names[3][96], const char *ret[3],
                         const ResiliencyTarget **ret_target) {
        const ResiliencyTarget *t = find_target(r, caller, kind, name);

        *ret_target = t;
        if (t) {
                ret[0] = t->timeout;
                ret[1] = t->retry;
                ret[2] = t->breaker;
                return;
        }
        static const char *const what[3] = { "Timeout", "Retry", "CircuitBreaker" };
        const char *dir = kind == RESILIENCY_COMPONENT_INBOUND ? "Inbound" : "Outbound";
        char levels[3][64];
        size_t n_levels = 0;
        switch (kind) {
        case RESILIENCY_APP:
                snprintf(levels[n_levels++], sizeof levels[0], "App");
                break;
        case RESILIENCY_ACTOR:
                snprintf(levels[n_levels++], sizeof levels[0], "Actor");
                break;
        default:
                if (component_type)
                        snprintf(levels[n_levels++], sizeof levels[0], "%sComponent%s", component_type, dir);
                snprintf(levels[n_levels++], sizeof levels[0], "Component%s", dir);
                snprintf(levels[n_levels++], sizeof levels[0], "Component");
                break;
        }
        for (size_t k = 0; k < 3; k++) {
                ret[k] = NULL;
                for (size_t l = 0; l <= n_levels && !ret[k]; l++) {
                        snprintf(names[k], sizeof names[k], "Default%s%sPolicy", l < n_levels ? levels[l] : "",
                                 what[k]);
                        if ((k == 0 && find_timeout(r, caller, names[k])) ||
                            (k == 1 && find_retry(r, caller, names[k])) ||
                            (k == 2 && find_breaker(r, caller, names[k])))
                                ret[k] = names[k];
                }
        }
}

int resiliency_lookup(Resiliency *r, const char *caller, ResiliencyKind kind, const char *name,
                      const char *component_type, ResiliencyPolicy *ret) {
        const ResiliencyTarget *t;
        const char *n[3];
        char names[3][96];
        int r2;

        *ret = (ResiliencyPolicy){};
        if (!r || r->n_docs == 0)
                return 0;
        policy_names(r, caller, kind, name, component_type, names, n, &t);
        const ResiliencyTimeout *to = find_timeout(r, caller, n[0]);
        const ResiliencyBreakerPolicy *bp = find_breaker(r, caller, n[2]);
        ret->timeout_usec = to ? to->usec : 0;
        ret->retry = find_retry(r, caller, n[1]);
        if (bp) {
                r2 = breaker_get(r, caller, kind, name, bp, &ret->breaker);
                if (r2 < 0)
                        return r2;
        }
        return ret->timeout_usec > 0 || ret->retry || ret->breaker;
}

int64_t resiliency_builtin_retries(Resiliency *r, const char *caller, const char *name, int64_t dflt) {
        const ResiliencyRetry *p = r ? find_retry(r, caller, name) : NULL;
        if (!p)
                return dflt;
        if (p->max_retries >= 0 && p->max_retries < 3)
                return 3;
        return p->max_retries;
}

uint64_t resiliency_actor_timeout(Resiliency *r, const char *app, const char *actor_type) {
        const ResiliencyTimeout *to = NULL;
        const ResiliencyTarget *t;

        if (!r || r->n_docs == 0 || !actor_type)
                return 0;
        t = find_target(r, app, RESILIENCY_ACTOR, actor_type);
        if (t)
                to = find_timeout(r, app, t->timeout);
        else if (!(to = find_timeout(r, app, "DefaultActorTimeoutPolicy")))
                to = find_timeout(r, app, "DefaultTimeoutPolicy");
        return to ? to->usec : 0;
}

/* ---- actor breakers: one cache per caller and actor type ---- */

static uint64_t hash_key(const char *s) {
        return fnv64_str(s);
}

static void breaker_free(ResiliencyBreaker *b) {
        free(b->caller);
        free(b->target);
        free(b);
}

static void cache_lru_unlink(ActorBreakerCache *c, ResiliencyBreaker *b) {
        if (b->lru_prev)
                b->lru_prev->lru_next = b->lru_next;
        else
                c->mru = b->lru_next;
        if (b->lru_next)
                b->lru_next->lru_prev = b->lru_prev;
        else
                c->lru = b->lru_prev;
        b->lru_prev = b->lru_next = NULL;
}

static void cache_lru_push(ActorBreakerCache *c, ResiliencyBreaker *b) {
        b->lru_prev = NULL;
        b->lru_next = c->mru;
        if (c->mru)
                c->mru->lru_prev = b;
        c->mru = b;
        if (!c->lru)
                c->lru = b;
}

/* Takes b out of its cache (daprd's LRU eviction): freed now, or by the last call that uses it. */
static void cache_evict(ActorBreakerCache *c, ResiliencyBreaker *b) {
        for (ResiliencyBreaker **p = &c->buckets[b->hash % c->n_buckets]; *p; p = &(*p)->hnext)
                if (*p == b) {
                        *p = b->hnext;
                        break;
                }
        cache_lru_unlink(c, b);
        c->n--;
        b->cache = NULL;
        if (b->n_ref == 0)
                breaker_free(b);
}

static void cache_free(ActorBreakerCache *c) {
        while (c->mru)
                cache_evict(c, c->mru); /* every user holds a reference on the set, so none is left */
        free(c->buckets);
        free(c->caller);
        free(c->type);
        free(c);
}

static ActorBreakerCache *cache_get(Resiliency *r, const char *caller, const char *type, size_t max) {
        for (ActorBreakerCache *c = r->actor_caches; c; c = c->next)
                if (streq(c->caller, strempty(caller)) && streq(c->type, type))
                        return c;
        ActorBreakerCache *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->max = max;
        c->n_buckets = MIN(max, (size_t) 1024);
        c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
        c->caller = strdup(strempty(caller));
        c->type = strdup(type);
        if (!c->buckets || !c->caller || !c->type) {
                free(c->buckets);
                free(c->caller);
                free(c->type);
                free(c);
                return NULL;
        }
        c->next = r->actor_caches;
        r->actor_caches = c;
        return c;
}

int resiliency_actor_policy(Resiliency *r, const char *caller, const char *type, const char *id,
                            ResiliencyPolicy *ret) {
        const ResiliencyTarget *t;
        const char *n[3];
        char names[3][96];

        *ret = (ResiliencyPolicy){};
        if (!r || r->n_docs == 0 || !type || !id)
                return 0;
        policy_names(r, caller, RESILIENCY_ACTOR, type, NULL, names, n, &t);
        /* the pre-lock policy has no timeout: that is the post-lock one, resiliency_actor_timeout() */
        ret->retry = find_retry(r, caller, n[1]);
        const ResiliencyBreakerPolicy *bp = find_breaker(r, caller, n[2]);
        if (!bp)
                return ret->retry != NULL;

        /* daprd keys a breaker by the type for scope "type" and for the Default* policies, else by
         * "<type>-<id>": scope "both" is documented as both at once, but daprd (pkg/resiliency,
         * ActorPreLockPolicy) implements it exactly as "id". */
        bool per_id = t && t->breaker_scope && !streq(t->breaker_scope, "type");
        _cleanup_free_ char *key = NULL;
        if (per_id ? asprintf(&key, "%s-%s", type, id) < 0 : !(key = strdup(type)))
                return -ENOMEM;
        /* daprd's defaults: 5000 breakers per type of a target, 100 for the Default* policies */
        size_t max = t ? (t->breaker_cache_size ?: 5000) : 100;
        ActorBreakerCache *c = cache_get(r, caller, type, max);
        if (!c)
                return -ENOMEM;
        uint64_t h = hash_key(key);
        ResiliencyBreaker *b;
        for (b = c->buckets[h % c->n_buckets]; b; b = b->hnext)
                if (b->hash == h && streq(b->target, key))
                        break;
        if (b) {
                cache_lru_unlink(c, b); /* a use makes it the most recent, as the LRU's Get does */
                cache_lru_push(c, b);
        } else {
                b = calloc(1, sizeof *b);
                if (!b)
                        return -ENOMEM;
                b->caller = strdup(strempty(caller));
                b->target = TAKE_PTR(key);
                if (!b->caller) {
                        breaker_free(b);
                        return -ENOMEM;
                }
                b->kind = RESILIENCY_ACTOR;
                b->policy = bp;
                b->hash = h;
                b->cache = c;
                b->hnext = c->buckets[h % c->n_buckets];
                c->buckets[h % c->n_buckets] = b;
                cache_lru_push(c, b);
                if (++c->n > c->max)
                        cache_evict(c, c->lru);
        }
        b->n_ref++;
        ret->breaker = b;
        return 1;
}

void resiliency_breaker_release(ResiliencyBreaker *b) {
        if (!b || b->kind != RESILIENCY_ACTOR)
                return;
        assert(b->n_ref > 0);
        if (--b->n_ref == 0 && !b->cache)
                breaker_free(b);
}

/* ---- circuit breakers (gobreaker's state machine) ---- */

static void breaker_new_generation(ResiliencyBreaker *b, uint64_t now) {
        b->generation++;
        memset(b->counts, 0, sizeof b->counts);
        if (b->state == BREAKER_CLOSED)
                b->expiry_usec = b->policy->interval_usec > 0 ? now + b->policy->interval_usec : 0;
        else if (b->state == BREAKER_OPEN)
                b->expiry_usec = now + b->policy->timeout_usec;
        else
                b->expiry_usec = 0;
}

static void breaker_set_state(ResiliencyBreaker *b, BreakerState s, uint64_t now) {
        if (b->state == s)
                return;
        b->state = s;
        breaker_new_generation(b, now);
}

/* Moves time on: an expired closed generation starts over, an open breaker past its timeout half-opens. */
static void breaker_tick(ResiliencyBreaker *b, uint64_t now) {
        if (b->state == BREAKER_CLOSED && b->expiry_usec != 0 && b->expiry_usec <= now)
                breaker_new_generation(b, now);
        else if (b->state == BREAKER_OPEN && b->expiry_usec <= now)
                breaker_set_state(b, BREAKER_HALF_OPEN, now);
}

BreakerState resiliency_breaker_state(const ResiliencyBreaker *b, uint64_t now_usec) {
        if (b->state == BREAKER_OPEN && b->expiry_usec <= now_usec)
                return BREAKER_HALF_OPEN;
        return b->state;
}

int resiliency_breaker_allow(ResiliencyBreaker *b, uint64_t now_usec, uint64_t *ret_generation,
                             const char **ret_msg) {
        uint32_t max = b->policy->max_requests ? b->policy->max_requests : 1;

        breaker_tick(b, now_usec);
        if (b->state == BREAKER_OPEN) {
                *ret_msg = "circuit breaker is open";
                return -EHOSTUNREACH;
        }
        if (b->state == BREAKER_HALF_OPEN && b->counts[TRIP_REQUESTS] >= max) {
                *ret_msg = "too many requests";
                return -EHOSTUNREACH;
        }
        b->counts[TRIP_REQUESTS]++;
        *ret_generation = b->generation;
        return 0;
}

void resiliency_breaker_report(ResiliencyBreaker *b, uint64_t generation, bool success, uint64_t now_usec) {
        uint32_t max = b->policy->max_requests ? b->policy->max_requests : 1;

        breaker_tick(b, now_usec);
        if (generation != b->generation)
                return;
        if (success) {
                b->counts[TRIP_TOTAL_SUCCESSES]++;
                b->counts[TRIP_CONSECUTIVE_SUCCESSES]++;
                b->counts[TRIP_CONSECUTIVE_FAILURES] = 0;
                if (b->state == BREAKER_HALF_OPEN && b->counts[TRIP_CONSECUTIVE_SUCCESSES] >= max)
                        breaker_set_state(b, BREAKER_CLOSED, now_usec);
                return;
        }
        b->counts[TRIP_TOTAL_FAILURES]++;
        b->counts[TRIP_CONSECUTIVE_FAILURES]++;
        b->counts[TRIP_CONSECUTIVE_SUCCESSES] = 0;
        if (b->state == BREAKER_HALF_OPEN)
                breaker_set_state(b, BREAKER_OPEN, now_usec);
        else if (b->state == BREAKER_CLOSED) {
                bool trip = b->policy->trip_text ? resiliency_trip_eval(&b->policy->trip, b->counts)
                                                 : b->counts[TRIP_CONSECUTIVE_FAILURES] > BREAKER_DEFAULT_TRIP_FAILURES;
                if (trip)
                        breaker_set_state(b, BREAKER_OPEN, now_usec);
        }
}

/* ---- retries ---- */

bool resiliency_retry_next(const ResiliencyRetry *p, unsigned attempt, uint64_t elapsed_usec,
                           uint64_t *ret_delay_usec) {
        if (!p || (p->max_retries >= 0 && attempt > (uint64_t) p->max_retries))
                return false;
        if (!p->exponential) {
                *ret_delay_usec = p->duration_usec;
                return true;
        }
        /* cenkalti/backoff's ExponentialBackOff: interval grows by multiplier up to the cap, each delay
         * drawn within ±randomization of it; it stops once maxElapsedTime has passed */
        if (p->max_elapsed_usec > 0 && elapsed_usec >= p->max_elapsed_usec)
                return false;
        double interval = (double) p->initial_interval_usec;
        for (unsigned i = 1; i < attempt && interval < (double) p->max_interval_usec; i++)
                interval *= p->multiplier;
        if (interval > (double) p->max_interval_usec)
                interval = (double) p->max_interval_usec;
        double delta = p->randomization * interval;
        double lo = interval - delta, hi = interval + delta;
        *ret_delay_usec = (uint64_t) (lo + (hi - lo + 1) * ((double) random() / ((double) RAND_MAX + 1.0)));
        return true;
}
