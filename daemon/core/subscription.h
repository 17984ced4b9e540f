/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr pub/sub subscriptions (reference §4.5, §4.7): the model, its two
 * loaders — declarative `Subscription` YAML documents (apiVersion
 * dapr.io/v1alpha1 or dapr.io/v2alpha1) and the app's `GET /dapr/subscribe`
 * JSON answer — and routing an event to a path with the routes.rules match
 * expressions. Pure functions; fuzzed by tests/fuzz/fuzz-subscription.c.
 *
 * Match expressions are a small subset of CEL over the CloudEvent, bound to
 * the name `event`:
 *
 *   expr     := or
 *   or       := and ( "||" and )*
 *   and      := relation ( "&&" relation )*
 *   relation := unary [ ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) unary ]
 *   unary    := "!" unary | primary
 *   primary  := "(" expr ")" | literal | "event" ( "." ident | "[" string "]" | "[" integer "]" )*
 *   literal  := string ('...' or "...", escapes \\ \" \' \n \r \t) | number (integer or
 *               decimal, optional leading '-', optional exponent) | true | false | null
 *
 * Semantics: a path that does not resolve (missing member, member of a
 * non-object, index out of range) is "missing": it compares unequal to
 * everything, so == and the orderings are false and != is true. == and !=
 * compare numbers by value (1 == 1.0), strings by bytes, objects and arrays
 * structurally, and values of different types as unequal. < <= > >= order
 * two numbers, two strings (bytewise) or two booleans (false < true) and are
 * false for anything else. Where a truth value is needed (&&, ||, !, the
 * whole expression) only JSON true is true. A match that is empty or blank
 * is always true (as in Dapr). Anything else is a compile error that names
 * the column (1-based, in bytes).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "../util/cleanup.h"
#include "conferr.h"

/* Bounds: far above real use, low enough to keep recursion and copies cheap. */
#define MATCH_EXPR_MAX 4096U       /* bytes of one match expression */
#define MATCH_EXPR_DEPTH_MAX 64U   /* nesting of parentheses and '!' */
#define SUBSCRIPTION_RULES_MAX 1024U
/* bulkSubscribe: Dapr's defaults (pkg/runtime/pubsub/default_bulksub.go) and our ceiling. */
#define SUBSCRIPTION_BULK_DEFAULT_MESSAGES 100U
#define SUBSCRIPTION_BULK_DEFAULT_AWAIT_MS 1000U
#define SUBSCRIPTION_BULK_MAX_MESSAGES 1000U

typedef struct MatchExpr MatchExpr;

typedef struct SubscriptionRule {
        char *match;               /* as written; "" when absent (always true) */
        MatchExpr *expr;           /* compiled; NULL: always true */
        char *path;                /* with a leading '/' */
} SubscriptionRule;

typedef struct Subscription {
        char *name;                /* metadata.name (declarative), NULL when absent and for programmatic */
        char *pubsub, *topic;      /* required */
        SubscriptionRule *rules;   /* routes.rules, in order */
        size_t n_rules;
        char *default_path;        /* routes.default, else route; NULL when only rules */
        char **metadata;           /* spec.metadata as name, value pairs (strv), may be NULL */
        char *dead_letter_topic;   /* NULL: none */
        char **scopes;             /* NULL or empty: every app */
        bool raw_payload;          /* metadata rawPayload true */
        bool bulk;                 /* bulkSubscribe.enabled: deliveries go to the app in batches */
        unsigned bulk_max_messages;    /* bulkSubscribe.maxMessagesCount; 0: Dapr's default */
        unsigned bulk_max_await_ms;    /* bulkSubscribe.maxAwaitDurationMs; 0: Dapr's default */
        bool declarative;
        char *file;                /* declarative: where it was defined; NULL otherwise */
        unsigned line;             /* line of the document's start; 0 for programmatic */
} Subscription;

Subscription *subscription_free(Subscription *s);
DEFINE_CLEANUP_FUNC(Subscription, subscription_free);

/* Frees an array of n subscriptions and the array itself. Returns NULL. */
Subscription **subscription_free_many(Subscription **l, size_t n);

/* Called with a subscription the callee takes (must free). */
typedef void (*SubscriptionFoundFn)(Subscription *s, void *userdata);
/* Called for each bad document; e is only valid during the call. */
typedef void (*SubscriptionErrorFn)(const ConfError *e, void *userdata);

/*
 * Parses YAML text holding one or more documents. Each good document of kind
 * Subscription goes to on_sub; each bad one to on_error with file, line and
 * field (e.g. "spec.routes.rules[1].match" for a bad expression), and the
 * others are still read; documents of other kinds are skipped. A YAML syntax
 * error is reported the same way and ends the file there.
 *
 * Both apiVersions read the same fields: spec.pubsubname, spec.topic (both
 * required), spec.route (v1alpha1's single path), spec.routes.rules[] and
 * spec.routes.default (v2alpha1; default wins over route), spec.metadata (a
 * string map; rawPayload must be a boolean), spec.deadLetterTopic,
 * spec.bulkSubscribe (a mapping: enabled, maxMessagesCount, maxAwaitDurationMs; any other
 * shape, such as the list the v1alpha1 docs show, is ignored), top-level scopes (app ids).
 * At least one path must be given. Paths get a leading '/' when missing and
 * must not hold spaces or control characters.
 *
 * Returns the number of good subscriptions, or -ENOMEM.
 */
int subscription_load_yaml(const char *file, const char *text, size_t len, SubscriptionFoundFn on_sub,
                           SubscriptionErrorFn on_error, void *ud);

/*
 * For reload: called for each bad document with the subscription it meant to
 * define, its metadata.name (a non-empty scalar under a metadata mapping), or
 * NULL when that cannot be told: the document is no mapping or names nothing
 * (the name is optional for subscriptions), or the YAML syntax broke (then
 * the rest of the file is unread).
 */
typedef void (*SubscriptionNamedErrorFn)(const ConfError *e, const char *name, void *userdata);
/* Like subscription_load_yaml(), with the bad document's name given to on_error. */
int subscription_load_yaml_named(const char *file, const char *text, size_t len, SubscriptionFoundFn on_sub,
                                 SubscriptionNamedErrorFn on_error, void *ud);

/*
 * Parses the app's answer to GET /dapr/subscribe: a JSON array of
 * {pubsubname, topic, route | routes{rules[{match, path}], default}, metadata{},
 * deadLetterTopic, bulkSubscribe}. Unknown members are ignored. Good entries
 * go into *ret (a malloc'd array of owned pointers, free with
 * subscription_free_many(); NULL when *ret_n is 0). An entry that is
 * malformed, or whose routes resolve to no path at all (Dapr discards those
 * too), is skipped and counted in *ret_skipped, and the reason for the first
 * one is put in *reterr ("subscription 2 (topic 'orders'): ..."; malloc'd;
 * NULL when nothing was skipped). Returns 0; -EINVAL when the body is not a
 * JSON array (then *reterr says why, and nothing else is written); -ENOMEM.
 * reterr may be NULL.
 */
int subscription_parse_programmatic(const char *json, size_t len, Subscription ***ret, size_t *ret_n,
                                    size_t *ret_skipped, char **reterr);

/*
 * The route for an event: the path of the first rule whose match is true,
 * else default_path; NULL when nothing matches. event may be NULL (the
 * payload is not JSON): every path in an expression is then missing, so
 * rules without a match (and, say, "event.x != 1") still apply. Does not
 * allocate. The string is owned by s.
 */
const char *subscription_route(const Subscription *s, json_t *event);

/* Is app_id among s's scopes (or are there none)? */
bool subscription_in_scope(const Subscription *s, const char *app_id);

/* The spec.metadata value for name, or NULL. */
const char *subscription_get_metadata(const Subscription *s, const char *name);

/*
 * Compiles a match expression (the grammar above). Blank text gives
 * *ret = NULL (always true). On error returns -EINVAL with *reterr (if not
 * NULL) a malloc'd "column N: ..." message; -ENOMEM.
 */
int match_expr_compile(const char *text, MatchExpr **ret, char **reterr);
MatchExpr *match_expr_free(MatchExpr *e);
DEFINE_CLEANUP_FUNC(MatchExpr, match_expr_free);
/* Evaluates e against event (may be NULL). NULL e is true. Does not allocate. */
bool match_expr_eval(const MatchExpr *e, json_t *event);
