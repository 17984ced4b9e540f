/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsers of what apps send about actors: the app's answer to
 * GET /dapr/config (the types it hosts and their settings) and the body of a
 * reminder or timer registration. Pure functions of their input, no I/O,
 * fuzzed by tests/fuzz/fuzz-actor-time.c together with the time parsers.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Dapr's defaults (daprd 1.14: actorIdleTimeout 60m, drainOngoingCallTimeout 60s, maxStackDepth 32). */
#define ACTOR_DEFAULT_IDLE_USEC (60ULL * 60 * 1000000)
#define ACTOR_DEFAULT_DRAIN_USEC (60ULL * 1000000)
#define ACTOR_DEFAULT_MAX_DEPTH 32U
/* Types one app may declare; a name longer than this is refused too. */
#define ACTOR_TYPES_MAX 1024U
#define ACTOR_NAME_MAX 1024U
/* remindersStoragePartitions above this is refused: a change of the count rewrites every partition
 * (and the old ones are deleted) in ONE transaction, which must stay below a store's bound. */
#define ACTOR_PARTITIONS_MAX 1000U

typedef struct ActorTypeConfig {
        char *type;
        uint64_t idle_usec;
        uint64_t drain_usec;
        bool drain_rebalanced;
        bool reentrancy;
        unsigned max_depth;
        unsigned reminder_partitions; /* remindersStoragePartitions; 0: one record "actors||<type>" */
} ActorTypeConfig;

typedef struct ActorAppConfig {
        ActorTypeConfig *types;
        size_t n;
} ActorAppConfig;

/*
 * The answer to GET /dapr/config. An app that hosts no actors answers {} or no
 * "entities": n is 0. -EINVAL with *reterr (malloc'd) on a body that is not
 * Dapr's shape (bad JSON, a duration Go cannot parse, an entitiesConfig type
 * not in entities).
 */
int actor_app_config_parse(const char *data, size_t len, ActorAppConfig *ret, char **reterr);
void actor_app_config_done(ActorAppConfig *c);

/* A reminder or timer registration body: {"dueTime","period","ttl","data","callback"}. */
typedef struct ActorReminderBody {
        char *due, *period, *ttl, *callback;  /* NULL when absent */
        json_t *data;                          /* NULL when absent; any JSON */
} ActorReminderBody;

/* -EINVAL with *reterr (static text) when the body is not a JSON object or a field has the wrong type.
 * An empty body is an empty object. */
int actor_reminder_body_parse(const char *data, size_t len, ActorReminderBody *ret, const char **reterr);
void actor_reminder_body_done(ActorReminderBody *b);
