/* SPDX-License-Identifier: Apache-2.0 */
/* See actor-config.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor-config.h"
#include "actor-time.h"

void actor_app_config_done(ActorAppConfig *c) {
        for (size_t i = 0; c && i < c->n; i++)
                free(c->types[i].type);
        if (c) {
                free(c->types);
                *c = (ActorAppConfig){};
        }
}

__attribute__((format(printf, 2, 3))) static int fail(char **reterr, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(reterr, fmt, ap) < 0)
                *reterr = NULL;
        va_end(ap);
        return -EINVAL;
}

/* Reads the settings of o (top level or an entitiesConfig entry) over *t. */
static int read_settings(json_t *o, ActorTypeConfig *t, char **reterr) {
        static const char *const durations[] = { "actorIdleTimeout", "drainOngoingCallTimeout" };
        for (size_t i = 0; i < 2; i++) {
                json_t *v = json_object_get(o, durations[i]);
                int64_t d;
                if (!v || json_is_null(v) || (json_is_string(v) && !*json_string_value(v)))
                        continue;
                /* daprd parses these with Go's time.ParseDuration: no "d" unit, no ISO form */
                if (!json_is_string(v) || actor_parse_go_duration(json_string_value(v), &d) < 0 || d <= 0)
                        return fail(reterr, "%s: not a positive Go duration", durations[i]);
                if (i == 0)
                        t->idle_usec = (uint64_t) d;
                else
                        t->drain_usec = (uint64_t) d;
        }
        json_t *v = json_object_get(o, "drainRebalancedActors");
        if (v && !json_is_null(v)) {
                if (!json_is_boolean(v))
                        return fail(reterr, "%s: not a boolean", "drainRebalancedActors");
                t->drain_rebalanced = json_is_true(v);
        }
        v = json_object_get(o, "remindersStoragePartitions");
        if (v && !json_is_null(v)) {
                if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                    json_integer_value(v) > (json_int_t) ACTOR_PARTITIONS_MAX)
                        return fail(reterr, "%s: not a number of partitions from 0 to %u",
                                    "remindersStoragePartitions", ACTOR_PARTITIONS_MAX);
                t->reminder_partitions = (unsigned) json_integer_value(v);
        }
        v = json_object_get(o, "reentrancy");
        if (v && !json_is_null(v)) {
                json_t *en = json_object_get(v, "enabled"), *depth = json_object_get(v, "maxStackDepth");
                if (!json_is_object(v) || (en && !json_is_boolean(en)) || (depth && !json_is_null(depth) &&
                                                                           !json_is_integer(depth)))
                        return fail(reterr, "%s: not {\"enabled\": bool, \"maxStackDepth\": int}", "reentrancy");
                t->reentrancy = json_is_true(en);
                if (json_is_integer(depth)) {
                        json_int_t d = json_integer_value(depth);
                        if (d < 1 || d > 100000)
                                return fail(reterr, "%s: maxStackDepth must be between 1 and 100000", "reentrancy");
                        t->max_depth = (unsigned) d;
                }
        }
        return 0;
}

static bool valid_type_name(const char *s) {
        size_t n = strlen(s);
        /* a type names a path segment and a key part: no '/', no "||", no control characters */
        if (n == 0 || n > ACTOR_NAME_MAX || strchr(s, '/') || strstr(s, "||"))
                return false;
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

int actor_app_config_parse(const char *data, size_t len, ActorAppConfig *ret, char **reterr) {
        json_error_t je;
        json_t *j = NULL, *ent;
        ActorAppConfig c = {};
        ActorTypeConfig base = { .idle_usec = ACTOR_DEFAULT_IDLE_USEC, .drain_usec = ACTOR_DEFAULT_DRAIN_USEC,
                                 .max_depth = ACTOR_DEFAULT_MAX_DEPTH };
        int r;

        *reterr = NULL;
        if (len == 0) { /* no config: no actors */
                *ret = c;
                return 0;
        }
        j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
        if (!j) {
                if (asprintf(reterr, "not JSON: %s (at %d:%d)", je.text, je.line, je.column) < 0)
                        *reterr = NULL;
                return -EINVAL;
        }
        if (!json_is_object(j)) {
                r = fail(reterr, "%s", "not a JSON object");
                goto out;
        }
        r = read_settings(j, &base, reterr);
        if (r < 0)
                goto out;
        ent = json_object_get(j, "entities");
        if (ent && !json_is_null(ent) && !json_is_array(ent)) {
                r = fail(reterr, "%s", "entities: not an array of strings");
                goto out;
        }
        if (json_array_size(ent) > ACTOR_TYPES_MAX) {
                r = fail(reterr, "%s", "entities: too many actor types");
                goto out;
        }
        c.types = calloc(json_array_size(ent) + 1, sizeof *c.types);
        if (!c.types) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < json_array_size(ent); i++) {
                json_t *e = json_array_get(ent, i);
                if (!json_is_string(e) || !valid_type_name(json_string_value(e))) {
                        r = fail(reterr, "entities: entry %s is not a valid actor type name", "");
                        goto out;
                }
                bool dup = false;
                for (size_t k = 0; k < c.n; k++)
                        dup = dup || strcmp(c.types[k].type, json_string_value(e)) == 0;
                if (dup)
                        continue;
                c.types[c.n] = base;
                c.types[c.n].type = strdup(json_string_value(e));
                if (!c.types[c.n].type) {
                        r = -ENOMEM;
                        goto out;
                }
                c.n++;
        }
        json_t *ec = json_object_get(j, "entitiesConfig");
        if (ec && !json_is_null(ec) && !json_is_array(ec)) {
                r = fail(reterr, "%s", "entitiesConfig: not an array");
                goto out;
        }
        for (size_t i = 0; i < json_array_size(ec); i++) {
                json_t *o = json_array_get(ec, i), *names = json_object_get(o, "entities");
                if (!json_is_object(o) || !json_is_array(names)) {
                        r = fail(reterr, "%s", "entitiesConfig: an entry without an entities array");
                        goto out;
                }
                for (size_t k = 0; k < json_array_size(names); k++) {
                        const char *name = json_string_value(json_array_get(names, k));
                        ActorTypeConfig *t = NULL;
                        for (size_t x = 0; name && x < c.n; x++)
                                if (strcmp(c.types[x].type, name) == 0)
                                        t = &c.types[x];
                        if (!t) {
                                r = fail(reterr, "entitiesConfig: type '%s' is not in entities", name ?: "?");
                                goto out;
                        }
                        r = read_settings(o, t, reterr);
                        if (r < 0)
                                goto out;
                }
        }
        *ret = c;
        c = (ActorAppConfig){};
        r = 0;
out:
        actor_app_config_done(&c);
        json_decref(j);
        return r;
}

void actor_reminder_body_done(ActorReminderBody *b) {
        if (!b)
                return;
        free(b->due);
        free(b->period);
        free(b->ttl);
        free(b->callback);
        json_decref(b->data);
        *b = (ActorReminderBody){};
}

int actor_reminder_body_parse(const char *data, size_t len, ActorReminderBody *ret, const char **reterr) {
        static const char *const names[] = { "dueTime", "period", "ttl", "callback" };
        ActorReminderBody b = {};
        json_t *j;

        if (len == 0) {
                *ret = b;
                return 0;
        }
        j = json_loadb(data, len, JSON_DECODE_ANY, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                *reterr = "the body is not a JSON object";
                return -EINVAL;
        }
        char **fields[] = { &b.due, &b.period, &b.ttl, &b.callback };
        for (size_t i = 0; i < 4; i++) {
                json_t *v = json_object_get(j, names[i]);
                if (!v || json_is_null(v))
                        continue;
                if (!json_is_string(v)) {
                        actor_reminder_body_done(&b);
                        json_decref(j);
                        *reterr = "dueTime, period, ttl and callback must be strings";
                        return -EINVAL;
                }
                *fields[i] = strdup(json_string_value(v));
                if (!*fields[i]) {
                        actor_reminder_body_done(&b);
                        json_decref(j);
                        return -ENOMEM;
                }
        }
        json_t *d = json_object_get(j, "data");
        if (d && !json_is_null(d))
                b.data = json_incref(d);
        json_decref(j);
        *ret = b;
        return 0;
}
