/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr `Resiliency` documents (apiVersion dapr.io/v1alpha1): named timeout,
 * retry and circuit-breaker policies and the targets they apply to (apps
 * for service invocation, components outbound and inbound, actor types),
 * plus the runtime state they need: one circuit breaker per caller app and
 * target, as each daprd sidecar keeps its own.
 *
 * A Resiliency set is what one load found: every good document of the
 * components/ and resiliency/ directories, in file order. It is reference
 * counted: a reload builds a new set and swaps it in, calls that started
 * under the old one finish with it. The set knows nothing of HTTP: callers
 * tell it "this attempt failed" or "succeeded", it answers "retry after d",
 * "give up" or "the breaker is open".
 *
 * Lookups follow daprd (pkg/resiliency): a target's own entry, else the
 * Default{App,Actor,[Type]Component[Inbound|Outbound],Component}{Retry,
 * Timeout,CircuitBreaker}Policy names when defined, else nothing. Documents
 * with `scopes` count only for the listed app ids (the app whose "sidecar"
 * acts: the caller of an invocation, the app calling a state store, the
 * subscriber of a delivery).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/cleanup.h"
#include "conferr.h"

typedef enum ResiliencyKind {
        RESILIENCY_APP,                 /* spec.targets.apps.<id> */
        RESILIENCY_ACTOR,               /* spec.targets.actors.<type> */
        RESILIENCY_COMPONENT_OUTBOUND,  /* spec.targets.components.<name>.outbound */
        RESILIENCY_COMPONENT_INBOUND,   /* spec.targets.components.<name>.inbound */
        _RESILIENCY_KIND_MAX,
        _RESILIENCY_KIND_INVALID = -EINVAL,
} ResiliencyKind;

typedef struct ResiliencyRetry {
        char *name;
        bool exponential;
        uint64_t duration_usec;         /* constant back-off (default 5 s) */
        uint64_t initial_interval_usec; /* exponential: first interval (500 ms) */
        double multiplier;              /* exponential (1.5) */
        double randomization;           /* exponential jitter factor (0.5) */
        uint64_t max_interval_usec;     /* exponential cap (60 s) */
        uint64_t max_elapsed_usec;      /* exponential: give up after this much time (15 min); 0: never */
        int64_t max_retries;            /* -1: without end (Dapr's default) */
        unsigned line;
} ResiliencyRetry;

/* A trip expression: comparisons joined by && and || (&& binds tighter). */
typedef enum TripVar {
        TRIP_REQUESTS, TRIP_TOTAL_SUCCESSES, TRIP_TOTAL_FAILURES, TRIP_CONSECUTIVE_SUCCESSES,
        TRIP_CONSECUTIVE_FAILURES, _TRIP_VAR_MAX,
} TripVar;
typedef enum TripOp { TRIP_GE, TRIP_GT, TRIP_LE, TRIP_LT, TRIP_EQ, TRIP_NE } TripOp;
#define TRIP_TERMS_MAX 8
typedef struct TripExpr {
        unsigned n;
        struct {
                TripVar var;
                TripOp op;
                int64_t value;
                bool or_before;         /* joined to the term before by || (else &&) */
        } t[TRIP_TERMS_MAX];
} TripExpr;

typedef struct ResiliencyBreakerPolicy {
        char *name;
        uint32_t max_requests;          /* half-open probes (0 counts as 1, as gobreaker) */
        uint64_t interval_usec;         /* closed: clear the counts this often; 0: never */
        uint64_t timeout_usec;          /* open → half-open after this (default 60 s) */
        char *trip_text;                /* as written; NULL: gobreaker's consecutiveFailures > 5 */
        TripExpr trip;
        unsigned line;
} ResiliencyBreakerPolicy;

typedef struct ResiliencyTimeout {
        char *name;
        uint64_t usec;
        unsigned line;
} ResiliencyTimeout;

typedef struct ResiliencyTarget {
        ResiliencyKind kind;
        char *name;                     /* app id, actor type or component name */
        char *timeout, *retry, *breaker; /* policy names, NULL when not given */
        char *breaker_scope;            /* actors: "id", "type" or "both" */
        uint32_t breaker_cache_size;    /* circuitBreakerCacheSize; 0: daprd's default */
        unsigned line;
} ResiliencyTarget;

typedef struct ResiliencyDoc {
        char *name;                     /* metadata.name */
        char *file;
        unsigned line;
        char **scopes;                  /* NULL or empty: every app */
        ResiliencyTimeout *timeouts;
        size_t n_timeouts;
        ResiliencyRetry *retries;
        size_t n_retries;
        ResiliencyBreakerPolicy *breakers;
        size_t n_breakers;
        ResiliencyTarget *targets;
        size_t n_targets;
} ResiliencyDoc;

typedef enum BreakerState { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN, _BREAKER_STATE_MAX } BreakerState;

/* One circuit breaker's state: per caller app, target kind and target name (gobreaker's model). */
typedef struct ResiliencyBreaker {
        char *caller;                   /* "" when the caller is no app */
        ResiliencyKind kind;
        char *target;
        const ResiliencyBreakerPolicy *policy; /* borrowed from a document of the same set */
        BreakerState state;
        uint64_t generation;
        uint64_t expiry_usec;           /* closed: next count reset (0: none); open: when it half-opens */
        uint64_t counts[_TRIP_VAR_MAX];
        struct ResiliencyBreaker *next;
        /* actor breakers (resiliency_actor_policy()) live in an ActorBreakerCache instead */
        unsigned n_ref;                 /* calls holding it */
        struct ActorBreakerCache *cache; /* back-reference; NULL once evicted (freed at the last release) */
        uint64_t hash;
        struct ResiliencyBreaker *hnext, *lru_prev, *lru_next;
} ResiliencyBreaker;

/*
 * The breakers of one caller app for one actor type: at most max of them (the target's
 * circuitBreakerCacheSize), the least recently used one forgotten past that, as daprd's LRU.
 */
typedef struct ActorBreakerCache {
        char *caller;                   /* "" when the caller is no app */
        char *type;
        size_t max, n;
        ResiliencyBreaker **buckets;    /* by hash of the breaker's target ("<type>" or "<type>-<id>") */
        size_t n_buckets;
        ResiliencyBreaker *mru, *lru;
        struct ActorBreakerCache *next;
} ActorBreakerCache;

typedef struct Resiliency {
        unsigned n_ref;
        ResiliencyDoc **docs;
        size_t n_docs;
        ResiliencyBreaker *breakers;
        ActorBreakerCache *actor_caches;
        unsigned n_errors;              /* bad documents of the load that made this set */
        uint64_t digest;                /* of the files it was read from (names and texts): a reload
                                         * that finds them unchanged keeps this set and its breakers */
} Resiliency;

Resiliency *resiliency_new(void);
Resiliency *resiliency_ref(Resiliency *r);
Resiliency *resiliency_unref(Resiliency *r);
DEFINE_CLEANUP_FUNC(Resiliency, resiliency_unref);

/* Called with each good document (the callee takes it) and each bad one (e valid during the call). */
typedef void (*ResiliencyFoundFn)(ResiliencyDoc *d, void *userdata);
typedef void (*ResiliencyErrorFn)(const ConfError *e, void *userdata);
/*
 * Parses the Resiliency documents of YAML text (other kinds are skipped).
 * Returns the number of good documents, or -ENOMEM. A YAML syntax error ends
 * the file there (reported through error_fn).
 */
int resiliency_parse(const char *file, const char *text, size_t len, ResiliencyFoundFn found_fn,
                     ResiliencyErrorFn error_fn, void *userdata);
ResiliencyDoc *resiliency_doc_free(ResiliencyDoc *d);
/* Appends d (taken) to r. -ENOMEM (d freed). */
int resiliency_add(Resiliency *r, ResiliencyDoc *d);

/* Go duration ("1h2m3.5s", "250ms") or a bare integer of milliseconds, as daprd's resiliency reads them. */
int resiliency_parse_duration(const char *s, uint64_t *ret);
/* Parses a trip expression; *reterr_msg says what is wrong (static string). */
int resiliency_parse_trip(const char *s, TripExpr *ret, const char **reterr_msg);
bool resiliency_trip_eval(const TripExpr *e, const uint64_t counts[_TRIP_VAR_MAX]);

/* What applies to one operation. Pointers are borrowed from the set, valid while a reference is held. */
typedef struct ResiliencyPolicy {
        uint64_t timeout_usec;          /* per attempt; 0: none */
        const ResiliencyRetry *retry;   /* NULL: no retries from the policy */
        ResiliencyBreaker *breaker;     /* NULL: none */
} ResiliencyPolicy;

/*
 * The policy for caller app (NULL: not an app) acting on target name of kind.
 * component_type is the component's category with the first letter upper
 * case ("State", "Pubsub", "Bindings") for the Default*Component* names; NULL
 * otherwise. Returns true when anything applies. -ENOMEM as a breaker is made.
 */
int resiliency_lookup(Resiliency *r, const char *caller, ResiliencyKind kind, const char *name,
                      const char *component_type, ResiliencyPolicy *ret);

/*
 * How many times a built-in retry of daprd's (DaprBuiltInServiceRetries, ...) runs for caller:
 * the maxRetries of a retry policy of that name in scope (at least 3, as daprd resets lower
 * values), else dflt. -1: without end.
 */
int64_t resiliency_builtin_retries(Resiliency *r, const char *caller, const char *name, int64_t dflt);

/*
 * The timeout for calls into actors of actor_type hosted by app (daprd's post-lock actor policy:
 * the target's timeout, else DefaultActorTimeoutPolicy, else DefaultTimeoutPolicy); 0: none.
 */
uint64_t resiliency_actor_timeout(Resiliency *r, const char *app, const char *actor_type);

/*
 * daprd's pre-lock actor policy for caller (NULL: not an app) calling actor (type, id): the
 * retry and circuit breaker of the type's target, else of DefaultActor*Policy / Default*Policy;
 * never a timeout (ret->timeout_usec is 0). The breaker is the one of the target's
 * circuitBreakerScope ("type": one per type; "id" and "both": one per actor id), kept in a
 * cache of circuitBreakerCacheSize per caller and type. ret->breaker, when set, is held for the
 * caller: hand it to resiliency_breaker_release() when the call is over (before unreffing r).
 * Returns true when anything applies; -ENOMEM.
 */
int resiliency_actor_policy(Resiliency *r, const char *caller, const char *type, const char *id,
                            ResiliencyPolicy *ret);
void resiliency_breaker_release(ResiliencyBreaker *b);

/*
 * Before an attempt: 0 with *ret_generation to hand to _report(), or -EHOSTUNREACH
 * when the breaker is open ("circuit breaker is open") or half-open with its
 * probes taken ("too many requests"); *ret_msg says which.
 */
int resiliency_breaker_allow(ResiliencyBreaker *b, uint64_t now_usec, uint64_t *ret_generation,
                             const char **ret_msg);
/* After an attempt allowed by _allow(). A result of an older generation is ignored. */
void resiliency_breaker_report(ResiliencyBreaker *b, uint64_t generation, bool success, uint64_t now_usec);
/* The state as of now (an open breaker past its timeout reads half-open). */
BreakerState resiliency_breaker_state(const ResiliencyBreaker *b, uint64_t now_usec);

/*
 * Whether attempt number attempt (1 = the first retry) may be made, and after
 * what delay. elapsed_usec is the time since the operation began.
 */
bool resiliency_retry_next(const ResiliencyRetry *p, unsigned attempt, uint64_t elapsed_usec,
                           uint64_t *ret_delay_usec);

const char *resiliency_kind_to_string(ResiliencyKind k);
const char *breaker_state_to_string(BreakerState s);
