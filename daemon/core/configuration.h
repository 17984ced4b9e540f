/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The typed model of a Dapr `Configuration` resource (apiVersion
 * dapr.io/v1alpha1, kind Configuration), its loader, and the two checks the
 * runtime answers from it: service-invocation access control (the callee's
 * `spec.accessControl`) and secret-store scopes (`spec.secrets.scopes`).
 *
 * Only the parts mooring uses are modelled: tracing, accessControl,
 * secrets.scopes and features. Every other field under spec is accepted and
 * ignored, as Dapr itself ignores fields it does not know.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "conferr.h"

typedef enum AclDecision {
        ACL_ALLOW,
        ACL_DENY,
        _ACL_DECISION_MAX,
        _ACL_DECISION_INVALID = -EINVAL, /* in the model: "not set in the file" */
} AclDecision;

typedef enum SecretAccess {
        SECRET_ACCESS_ALLOW,
        SECRET_ACCESS_DENY,
        _SECRET_ACCESS_MAX,
        _SECRET_ACCESS_INVALID = -EINVAL,
} SecretAccess;

/* HTTP verbs an operation rule applies to, as bits. */
typedef enum HttpVerbFlags {
        HTTP_VERB_GET = 1 << 0,
        HTTP_VERB_HEAD = 1 << 1,
        HTTP_VERB_POST = 1 << 2,
        HTTP_VERB_PUT = 1 << 3,
        HTTP_VERB_DELETE = 1 << 4,
        HTTP_VERB_CONNECT = 1 << 5,
        HTTP_VERB_OPTIONS = 1 << 6,
        HTTP_VERB_TRACE = 1 << 7,
        HTTP_VERB_PATCH = 1 << 8,
        HTTP_VERB_ALL = (1 << 9) - 1,
} HttpVerbFlags;

/* In comments here and in configuration.c, {star} stands for the '*' wildcard where
 * a literal one would end the comment. */
typedef struct AclOperation {
        char *name;        /* as written in the file, e.g. "/Admin/{star}" (see below) */
        char *pattern;     /* normalized: lower case, single '/', none trailing: "/admin/{star}" */
        unsigned verbs;    /* HttpVerbFlags */
        bool all_verbs;    /* httpVerb absent, empty or "*": any verb, also unknown ones */
        AclDecision action;
        char *reason;      /* "denied by policy for app 'x', operation '/admin/{star}'" */
        unsigned line;
} AclOperation;

typedef struct AclPolicy {
        char *app_id;
        char *trust_domain;         /* NULL: any (Dapr requires it; mooring does not) */
        char *namespace_;           /* NULL: any (likewise) */
        AclDecision default_action; /* _ACL_DECISION_INVALID when not set */
        char *reason;               /* for default_action: "denied by policy for app 'x' (defaultAction)" */
        AclOperation *operations;
        size_t n_operations;
        unsigned line;
} AclPolicy;

typedef struct AccessControl {
        AclDecision default_action; /* effective: as written, else deny when there are policies, else allow */
        bool default_action_set;
        char *trust_domain;         /* "public" when absent */
        AclPolicy *policies;
        size_t n_policies;
        unsigned line;
} AccessControl;

typedef struct SecretScope {
        char *store_name;
        SecretAccess default_access; /* allow when absent */
        char **allowed_secrets;      /* NULL or empty: no allow-list */
        char **denied_secrets;
        unsigned line;
} SecretScope;

typedef struct ConfigFeature {
        char *name;
        bool enabled;
} ConfigFeature;

typedef struct ConfigTracing {
        double sampling_rate;     /* 0..1; Dapr's default 0.0001 when absent */
        bool sampling_rate_set;
        bool stdout_;
        char *zipkin_endpoint;    /* zipkin.endpointAddress, NULL when absent */
        char *otel_endpoint;      /* otel.endpointAddress */
        char *otel_protocol;      /* otel.protocol ("grpc", "http"), NULL when absent */
        bool otel_is_secure;
        bool otel_is_secure_set;  /* isSecure given: daprd takes an absent one as true */
        char *otel_headers;       /* otel.headers, "key1=value1,key2=value2" as daprd; NULL when absent */
        uint64_t otel_timeout_ms; /* otel.timeout in ms; 0 when absent (daprd's 10000) */
} ConfigTracing;

/*
 * spec.nameResolution: how the hosts of a cluster find each other, as an alternative to
 * mooringd.conf's [Cluster] Membership= (which wins; see mooringd.conf(5)). component is Dapr's
 * name ("mdns"), or "postgresql" / "redis" for mooring's engines; configuration.connectionString
 * carries their connection, configuration.tableName (PostgreSQL: the table; Redis: the key
 * prefix) where to keep the records.
 */
typedef struct ConfigNameResolution {
        char *component;          /* NULL: no nameResolution */
        char *connection;         /* configuration.connectionString, NULL when absent */
        char *table;              /* configuration.tableName, NULL when absent */
        unsigned line;            /* of spec.nameResolution */
} ConfigNameResolution;

typedef struct Configuration {
        char *name;               /* metadata.name, NULL when absent */
        char *namespace_;         /* metadata.namespace, NULL when absent */
        ConfigTracing tracing;
        bool metric_disabled;     /* spec.metric.enabled: false (Dapr's default: enabled) */
        AccessControl *access_control; /* NULL: no accessControl, every call is allowed */
        SecretScope *secret_scopes;
        size_t n_secret_scopes;
        ConfigFeature *features;
        size_t n_features;
        ConfigNameResolution name_resolution;
        char *file;
        unsigned line;            /* line of the document's start */
} Configuration;

Configuration *configuration_free(Configuration *c);
DEFINE_CLEANUP_FUNC(Configuration, configuration_free);

const char *acl_decision_to_string(AclDecision d);
AclDecision acl_decision_from_string(const char *s); /* "allow"/"deny", any case */
const char *secret_access_to_string(SecretAccess a);
SecretAccess secret_access_from_string(const char *s);
/* "GET" → HTTP_VERB_GET; exact upper case as on the wire; 0 if unknown. */
unsigned http_verb_from_string(const char *s);

/* Is the named feature listed with enabled: true? */
bool configuration_feature_enabled(const Configuration *c, const char *name);

/*
 * Parses YAML text holding one or more documents. The first document of kind
 * Configuration is loaded into *ret; documents of other kinds (and those
 * after it) are ignored. Returns 0 with *ret NULL when there is none.
 * A bad Configuration document, or a YAML syntax error before one was found,
 * returns -EINVAL with e naming file, line and field; -ENOMEM on OOM.
 */
int configuration_parse(const char *file, const char *text, size_t len, Configuration **ret, ConfError *e);

/*
 * Service-invocation access control as the callee's runtime applies it (see
 * configuration.c for the rules). c is the callee's configuration (NULL: no
 * configuration, allow). caller_app_id is the calling app (NULL or "" when
 * unknown: the global defaultAction decides), verb the HTTP method as
 * received ("GET"), path the method path as the caller sent it, after
 * /method/, with or without leading '/', possibly with a query string.
 *
 * If ret_reason is not NULL it is set to a description of the rule that
 * decided, for the 403 message. It is a static string or one owned by c,
 * valid while c is; never NULL.
 */
AclDecision acl_evaluate(const Configuration *c, const char *caller_app_id, const char *verb, const char *path,
                         const char **ret_reason);
/* The same for a caller whose trust domain is known (a peer host's certificate, this host's
 * TrustDomain=); NULL: the configuration's own accessControl.trustDomain, as on a single host. */
AclDecision acl_evaluate_caller(const Configuration *c, const char *caller_app_id, const char *caller_trust_domain,
                                const char *verb, const char *path, const char **ret_reason);

/*
 * Secret scopes (spec.secrets.scopes): may an app using configuration c read
 * secret from store? No configuration, or no scope for the store: allow.
 * Otherwise a non-empty allowedSecrets lists the only readable names; else a
 * name in deniedSecrets is refused; else defaultAccess decides.
 */
SecretAccess secret_scope_check(const Configuration *c, const char *store, const char *secret);
