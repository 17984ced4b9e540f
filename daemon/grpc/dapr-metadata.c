/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's GetMetadata, SetMetadata and Shutdown over gRPC. The metadata answer
 * is built from the registry exactly as GET /v1.0/metadata builds its JSON
 * (http/routes.c): the caller's components (scopes), its extended metadata,
 * its running subscriptions and its app connection.
 *
 * Shutdown: daprd stops the sidecar of the app that asks. mooringd is one
 * daemon for every app on the host, and one app must not stop the others'
 * runtime, so the call is acknowledged and logged, and nothing stops; the
 * operator stops mooringd with systemctl.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/pubsub.h"
#include "../blocks/state.h"
#include "../core/app.h"
#include "../core/component.h"
#include "../core/registry.h"
#include "../core/subscription.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "services.h"

/* As http/routes.c (the same numbers, so both APIs refuse the same input). */
#define DAPR_COMPAT_VERSION "1.14.0"
#define METADATA_VALUE_MAX (64 * 1024)
#define METADATA_KEYS_MAX 256

/* Every allocation of one answer, freed together after it went out. */
typedef struct Arena {
        void **p;
        size_t n;
        bool oom;
} Arena;

static void *arena_alloc(Arena *a, size_t size) {
        void **l = realloc(a->p, (a->n + 1) * sizeof *l);
        void *p = l ? calloc(1, size ?: 1) : NULL;
        if (l)
                a->p = l;
        if (!p) {
                a->oom = true;
                return NULL;
        }
        a->p[a->n++] = p;
        return p;
}

static char *arena_strdup(Arena *a, const char *s) {
        char *d = arena_alloc(a, strlen(s) + 1);
        return d ? strcpy(d, s) : (char *) "";
}

static void arena_done(Arena *a) {
        for (size_t i = 0; i < a->n; i++)
                free(a->p[i]);
        free(a->p);
}

typedef struct SubsOf {
        Arena *arena;
        const char *app_id;
        PB(PubsubSubscription) **list;
        size_t n, cap;
} SubsOf;

static PB(PubsubSubscriptionRule) *rule_new(Arena *a, const char *match, const char *path) {
        PB(PubsubSubscriptionRule) *r = arena_alloc(a, sizeof *r);
        if (!r)
                return NULL;
        dapr__proto__runtime__v1__pubsub_subscription_rule__init(r);
        if (match)
                r->match = arena_strdup(a, match);
        r->path = arena_strdup(a, path);
        return r;
}

static void add_subscription(const char *app_id, const char *pubsub, const char *topic, const Subscription *s,
                             void *userdata) {
        SubsOf *so = userdata;
        Arena *a = so->arena;
        if (!s || !app_id || !streq(app_id, so->app_id))
                return;
        if (so->n == so->cap) {
                PB(PubsubSubscription) **l = arena_alloc(a, (so->cap * 2 + 8) * sizeof *l);
                if (!l)
                        return;
                memcpy(l, so->list, so->n * sizeof *l);
                so->list = l;
                so->cap = so->cap * 2 + 8;
        }
        PB(PubsubSubscription) *p = arena_alloc(a, sizeof *p);
        PB(PubsubSubscriptionRules) *rules = arena_alloc(a, sizeof *rules);
        size_t n_md = strv_length(s->metadata) / 2, n_rules = s->n_rules + (s->default_path ? 1 : 0);
        PB(PubsubSubscription__MetadataEntry) **md = arena_alloc(a, (n_md + 1) * sizeof *md);
        PB(PubsubSubscriptionRule) **rl = arena_alloc(a, (n_rules + 1) * sizeof *rl);
        if (!p || !rules || !md || !rl)
                return;
        dapr__proto__runtime__v1__pubsub_subscription__init(p);
        dapr__proto__runtime__v1__pubsub_subscription_rules__init(rules);
        p->pubsub_name = arena_strdup(a, s->pubsub);
        p->topic = arena_strdup(a, s->topic);
        p->type = s->declarative ? DAPR__PROTO__RUNTIME__V1__PUBSUB_SUBSCRIPTION_TYPE__DECLARATIVE
                                 : DAPR__PROTO__RUNTIME__V1__PUBSUB_SUBSCRIPTION_TYPE__PROGRAMMATIC;
        if (s->dead_letter_topic)
                p->dead_letter_topic = arena_strdup(a, s->dead_letter_topic);
        for (size_t i = 0; i < n_md; i++) {
                md[i] = arena_alloc(a, sizeof **md);
                if (!md[i])
                        return;
                dapr__proto__runtime__v1__pubsub_subscription__metadata_entry__init(md[i]);
                md[i]->key = arena_strdup(a, s->metadata[2 * i]);
                md[i]->value = arena_strdup(a, s->metadata[2 * i + 1]);
        }
        p->n_metadata = n_md;
        p->metadata = md;
        /* as Dapr lists them: the rules in order, then the default route as a rule without match */
        for (size_t i = 0; i < s->n_rules; i++)
                if (!(rl[i] = rule_new(a, s->rules[i].match, s->rules[i].path)))
                        return;
        if (s->default_path && !(rl[s->n_rules] = rule_new(a, NULL, s->default_path)))
                return;
        rules->n_rules = n_rules;
        rules->rules = rl;
        if (n_rules > 0)
                p->rules = rules;
        so->list[so->n++] = p;
}

int grpc_dapr_get_metadata(GrpcCall *c, const ProtobufCMessage *m) {
        Registry *reg = grpc_call_registry(c);
        App *app = grpc_call_app(c);
        const AppConfig *cfg = app->config;
        PB(GetMetadataResponse) resp = DAPR__PROTO__RUNTIME__V1__GET_METADATA_RESPONSE__INIT;
        Arena a = {};
        int r;

        resp.id = cfg->id;
        resp.runtime_version = (char *) DAPR_COMPAT_VERSION "-mooring." PACKAGE_VERSION;

        resp.registered_components = arena_alloc(&a, (reg->n_components + 1) * sizeof(void *));
        for (size_t i = 0; resp.registered_components && i < reg->n_components; i++) {
                const Component *comp = reg->components[i];
                if (!component_in_scope(comp, cfg->id))
                        continue;
                PB(RegisteredComponents) *rc = arena_alloc(&a, sizeof *rc);
                if (!rc)
                        break;
                dapr__proto__runtime__v1__registered_components__init(rc);
                rc->name = comp->name;
                rc->type = comp->type;
                rc->version = comp->version;
                for (size_t j = 0; j < reg->n_state_stores; j++)
                        if (reg->state_stores[j]->component == comp) {
                                const char *const *caps = state_store_capabilities(reg->state_stores[j]);
                                size_t n = 0;
                                while (caps[n])
                                        n++;
                                rc->capabilities = (char **) caps;
                                rc->n_capabilities = n;
                        }
                resp.registered_components[resp.n_registered_components++] = rc;
        }

        /* extended metadata: what the app set, plus the versions (as the HTTP answer) */
        size_t n_ext = json_object_size(app->extended) + 2;
        resp.extended_metadata = arena_alloc(&a, n_ext * sizeof(void *));
        if (resp.extended_metadata) {
                const char *key;
                json_t *v;
                const char *fixed[][2] = { { "daprRuntimeVersion", DAPR_COMPAT_VERSION },
                                           { "mooringVersion", PACKAGE_VERSION } };
                json_object_foreach(app->extended, key, v) {
                        PB(GetMetadataResponse__ExtendedMetadataEntry) *e = arena_alloc(&a, sizeof *e);
                        if (!e || !json_is_string(v))
                                continue;
                        dapr__proto__runtime__v1__get_metadata_response__extended_metadata_entry__init(e);
                        e->key = (char *) key;
                        e->value = (char *) json_string_value(v);
                        resp.extended_metadata[resp.n_extended_metadata++] = e;
                }
                for (size_t i = 0; i < ELEMENTSOF(fixed); i++) {
                        PB(GetMetadataResponse__ExtendedMetadataEntry) *e = arena_alloc(&a, sizeof *e);
                        if (!e)
                                break;
                        dapr__proto__runtime__v1__get_metadata_response__extended_metadata_entry__init(e);
                        e->key = (char *) fixed[i][0];
                        e->value = (char *) fixed[i][1];
                        resp.extended_metadata[resp.n_extended_metadata++] = e;
                }
        }

        SubsOf so = { .arena = &a, .app_id = cfg->id };
        pubsub_foreach_subscription(reg, add_subscription, &so);
        resp.n_subscriptions = so.n;
        resp.subscriptions = so.list;

        PB(AppConnectionProperties) acp = DAPR__PROTO__RUNTIME__V1__APP_CONNECTION_PROPERTIES__INIT;
        PB(AppConnectionHealthProperties) health = DAPR__PROTO__RUNTIME__V1__APP_CONNECTION_HEALTH_PROPERTIES__INIT;
        if (cfg->address_kind != APP_ADDRESS_NONE) {
                acp.protocol = (char *) "http";
                acp.max_concurrency = (int32_t) cfg->max_concurrency;
                if (cfg->address_kind == APP_ADDRESS_HTTP) {
                        acp.port = cfg->address_port;
                        acp.channel_address = cfg->address_host;
                } else
                        acp.channel_address = cfg->app_address;
                if (cfg->health_check_path) {
                        health.health_check_path = cfg->health_check_path;
                        health.health_probe_interval = (char *) "5s";
                        health.health_probe_timeout = (char *) "500ms";
                        health.health_threshold = 3;
                        acp.health = &health;
                }
                resp.app_connection_properties = &acp;
        }
        if (a.oom)
                r = -ENOMEM;
        else
                r = grpc_call_reply(c, &resp.base);
        arena_done(&a);
        return r == -ENOMEM ? r : 0;
}

int grpc_dapr_set_metadata(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(SetMetadataRequest) *req = (const PB(SetMetadataRequest) *) m;
        json_t *ext = grpc_call_app(c)->extended, *v;

        if (!*req->key)
                return grpc_fail_dapr(c, DAPR_ERR_BAD_REQUEST, "metadata key must not be empty");
        if (strlen(req->value) > METADATA_VALUE_MAX)
                return grpc_fail_dapr(c, DAPR_ERR_BAD_REQUEST, "metadata value larger than %d bytes",
                                      METADATA_VALUE_MAX);
        if (!json_object_get(ext, req->key) && json_object_size(ext) >= METADATA_KEYS_MAX)
                return grpc_fail_dapr(c, DAPR_ERR_BAD_REQUEST, "at most %d metadata keys per app", METADATA_KEYS_MAX);
        v = json_string(req->value);
        if (!v)
                return grpc_fail_dapr(c, DAPR_ERR_BAD_REQUEST, "metadata value must be UTF-8 text");
        if (json_object_set_new(ext, req->key, v) < 0)
                return -ENOMEM;
        Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
        return grpc_call_reply(c, &e.base);
}

int grpc_dapr_shutdown(GrpcCall *c, const ProtobufCMessage *m) {
        log_struct(LOG_NOTICE, 0, grpc_call_app_id(c), NULL,
                   "App asked for a shutdown over gRPC: mooringd serves every app on this host and keeps "
                   "running (stop it with systemctl), ignoring.");
        Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
        return grpc_call_reply(c, &e.base);
}
