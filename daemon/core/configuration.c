/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See configuration.h. Parsing follows component.c: libyaml's document API,
 * node marks for the line of every field, every node's kind checked before
 * use, list lengths bounded.
 *
 * Fields under spec that are accepted and ignored (Dapr release-1.14 and the
 * docs): metric, metrics, httpPipeline, appHttpPipeline, api, components,
 * logging, mtls, appHealthCheck, wasm, workflow, nameResolution.version and
 * nameResolution.configuration keys other than connectionString and tableName,
 * tracing.otel fields other than endpointAddress/isSecure/protocol. Unknown
 * fields inside the modelled sections are ignored too, as Dapr's decoder does.
 *
 * Access control (acl_evaluate), after Dapr's pkg/acl/acl.go and
 * pkg/config/acl_trie.go, the "invoke-allowlist" docs and the reference
 * §8.3:
 *
 *  1. No accessControl section (or one with no defaultAction, no trustDomain
 *     and no policies): allow.
 *  2. Global defaultAction as written; when absent, deny if there are
 *     policies, else allow (the documented rule; Dapr's Go code also denies
 *     a section holding only a trustDomain).
 *  3. Caller identity. Dapr takes (trust domain, namespace, app id) from the
 *     caller's SPIFFE certificate. For a caller on this host, the app id is
 *     what the runtime knows of the calling app, its trust domain is this
 *     configuration's accessControl.trustDomain (default "public") and its
 *     namespace this configuration's metadata.namespace (default "default"):
 *     all apps of one host share them (with [Cluster] on, the trust domain
 *     is the host's TrustDomain= instead). A call from another host
 *     (acl_evaluate_caller) carries the trust domain of that host's verified
 *     certificate (spiffe://<trust-domain>/mooring/host/<id>), and the app id
 *     that host vouches for. An unknown caller (no app id) gets the global
 *     default.
 *  4. Policy: the first whose appId equals the caller's and whose
 *     trustDomain and namespace, where set, equal the caller's (Dapr requires
 *     both; mooring treats an absent one as "any"). None: global default. A
 *     policy's defaultAction, if set, replaces the global one.
 *  5. Operation: the method path is normalized (query and fragment dropped,
 *     '/' prepended, "//" collapsed, "." and ".." resolved, %XX of unreserved
 *     characters decoded, lower-cased: Dapr lower-cases HTTP operation names
 *     and normalizes with purell; a malformed %-escape denies, as Dapr's
 *     normalization error does). Names in the file get the same treatment.
 *     Per segment, "*" matches any one segment, a segment with '*' inside
 *     ("b*") is a glob within the segment, and a final "**" any number of
 *     segments. A trailing "*" or "**" segment also matches the parent
 *     itself ("/a/{star}" matches "/a", as in Dapr). A name without wildcards also
 *     matches paths below it ("/admin" covers "/admin/users"): Dapr's trie
 *     returns a literal node's rule as soon as it is reached.
 *     Among the operations that match the path and list the verb (or "*", or
 *     no httpVerb at all), the most specific decides: compared segment by
 *     segment from the left, literal > glob > "*" > "**" > implied prefix,
 *     then an exact end beats a trailing wildcard matching nothing, then an
 *     explicitly listed verb beats "*", then the earlier one in the file.
 *     (Dapr's trie picks by insertion order among siblings, so overlapping
 *     rules can shadow each other there; for non-overlapping rules the
 *     outcome is the same.) No operation: the policy's defaultAction if set,
 *     else the global default.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/strv.h"
#include "configuration.h"
#include "yaml-walk.h"

/* Bounds on what one file may declare: far above real use, low enough that
 * the quadratic duplicate checks stay cheap. */
#define LIST_MAX 1024U
#define OPERATION_NAME_MAX 2048U

static const char *const acl_decision_table[_ACL_DECISION_MAX] = {
        [ACL_ALLOW] = "allow",
        [ACL_DENY] = "deny",
};

const char *acl_decision_to_string(AclDecision d) {
        return d >= 0 && d < _ACL_DECISION_MAX ? acl_decision_table[d] : NULL;
}

AclDecision acl_decision_from_string(const char *s) {
        for (size_t i = 0; s && i < ELEMENTSOF(acl_decision_table); i++)
                if (strcasecmp(s, acl_decision_table[i]) == 0)
                        return (AclDecision) i;
        return _ACL_DECISION_INVALID;
}

static const char *const secret_access_table[_SECRET_ACCESS_MAX] = {
        [SECRET_ACCESS_ALLOW] = "allow",
        [SECRET_ACCESS_DENY] = "deny",
};

const char *secret_access_to_string(SecretAccess a) {
        return a >= 0 && a < _SECRET_ACCESS_MAX ? secret_access_table[a] : NULL;
}

SecretAccess secret_access_from_string(const char *s) {
        for (size_t i = 0; s && i < ELEMENTSOF(secret_access_table); i++)
                if (strcasecmp(s, secret_access_table[i]) == 0)
                        return (SecretAccess) i;
        return _SECRET_ACCESS_INVALID;
}

static const struct {
        const char *name;
        unsigned flag;
} verb_table[] = {
        { "GET", HTTP_VERB_GET },         { "HEAD", HTTP_VERB_HEAD },       { "POST", HTTP_VERB_POST },
        { "PUT", HTTP_VERB_PUT },         { "DELETE", HTTP_VERB_DELETE },   { "CONNECT", HTTP_VERB_CONNECT },
        { "OPTIONS", HTTP_VERB_OPTIONS }, { "TRACE", HTTP_VERB_TRACE },     { "PATCH", HTTP_VERB_PATCH },
};

unsigned http_verb_from_string(const char *s) {
        for (size_t i = 0; s && i < ELEMENTSOF(verb_table); i++)
                if (streq(s, verb_table[i].name))
                        return verb_table[i].flag;
        return 0;
}

/* ---- model lifetime ---- */

static void operation_done(AclOperation *o) {
        free(o->name);
        free(o->pattern);
        free(o->reason);
}

static void policy_done(AclPolicy *p) {
        for (size_t i = 0; i < p->n_operations; i++)
                operation_done(&p->operations[i]);
        free(p->operations);
        free(p->app_id);
        free(p->trust_domain);
        free(p->namespace_);
        free(p->reason);
}

static AccessControl *access_control_free(AccessControl *ac) {
        if (!ac)
                return NULL;
        for (size_t i = 0; i < ac->n_policies; i++)
                policy_done(&ac->policies[i]);
        free(ac->policies);
        free(ac->trust_domain);
        free(ac);
        return NULL;
}

Configuration *configuration_free(Configuration *c) {
        if (!c)
                return NULL;
        free(c->name);
        free(c->namespace_);
        free(c->tracing.zipkin_endpoint);
        free(c->tracing.otel_endpoint);
        free(c->tracing.otel_protocol);
        free(c->tracing.otel_headers);
        access_control_free(c->access_control);
        for (size_t i = 0; i < c->n_secret_scopes; i++) {
                free(c->secret_scopes[i].store_name);
                strv_free(c->secret_scopes[i].allowed_secrets);
                strv_free(c->secret_scopes[i].denied_secrets);
        }
        free(c->secret_scopes);
        for (size_t i = 0; i < c->n_features; i++)
                free(c->features[i].name);
        free(c->features);
        free(c->name_resolution.component);
        erase_and_free(c->name_resolution.connection);
        free(c->name_resolution.table);
        free(c->file);
        free(c);
        return NULL;
}

bool configuration_feature_enabled(const Configuration *c, const char *name) {
        for (size_t i = 0; c && name && i < c->n_features; i++)
                if (streq(c->features[i].name, name))
                        return c->features[i].enabled;
        return false;
}

/* ---- path normalization and matching ---- */

static bool is_unreserved(int ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
               ch == '.' || ch == '_' || ch == '~';
}

static int unhex(int ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/*
 * Normalizes the first n bytes of s (see the top of the file) into a new
 * string "/seg/seg" ("/" when empty). With allow_dots false, "." and ".."
 * segments are an error instead of being resolved (file patterns).
 * Returns 0, -EINVAL (bad %-escape or refused dot segment) or -ENOMEM.
 */
static int normalize_path(const char *s, size_t n, bool allow_dots, char **ret) {
        _cleanup_free_ char *out = NULL;
        size_t o = 0;

        /* Output never exceeds input + the leading '/' + NUL. */
        out = malloc(n + 2);
        if (!out)
                return -ENOMEM;

        for (size_t i = 0; i < n;) {
                size_t start, seg;

                if (s[i] == '/') {
                        i++;
                        continue;
                }
                start = o;
                out[o++] = '/';
                for (; i < n && s[i] != '/'; i++) {
                        int ch = (unsigned char) s[i];
                        if (ch == '%') {
                                int hi = i + 2 < n ? unhex((unsigned char) s[i + 1]) : -1;
                                int lo = hi >= 0 ? unhex((unsigned char) s[i + 2]) : -1;
                                if (hi < 0 || lo < 0)
                                        return -EINVAL;
                                if (is_unreserved(hi * 16 + lo)) {
                                        ch = hi * 16 + lo;
                                        i += 2;
                                } else {
                                        out[o++] = '%';
                                        out[o++] = (char) tolower((unsigned char) s[i + 1]);
                                        ch = (unsigned char) s[i + 2];
                                        i += 2;
                                }
                        }
                        out[o++] = (char) (ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
                }
                seg = o - start - 1;
                if (seg == 1 && out[start + 1] == '.') {
                        if (!allow_dots)
                                return -EINVAL;
                        o = start;
                } else if (seg == 2 && out[start + 1] == '.' && out[start + 2] == '.') {
                        if (!allow_dots)
                                return -EINVAL;
                        o = start;
                        while (o > 0 && out[o - 1] != '/')
                                o--;
                        if (o > 0)
                                o--; /* drop the parent's '/' too; above the root stays at the root */
                }
        }
        if (o == 0)
                out[o++] = '/';
        out[o] = '\0';
        *ret = TAKE_PTR(out);
        return 0;
}

/* Glob within one segment: '*' matches any run of characters, possibly empty. */
static bool glob_segment(const char *p, size_t pn, const char *s, size_t sn) {
        size_t pi = 0, si = 0, star = SIZE_MAX, mark = 0;

        while (si < sn) {
                if (pi < pn && p[pi] == '*') {
                        star = pi++;
                        mark = si;
                } else if (pi < pn && p[pi] == s[si]) {
                        pi++;
                        si++;
                } else if (star != SIZE_MAX) {
                        pi = star + 1;
                        si = ++mark;
                } else
                        return false;
        }
        while (pi < pn && p[pi] == '*')
                pi++;
        return pi == pn;
}

/* How a path segment (or the end of the path) was matched; higher is more specific. */
enum {
        MATCH_PREFIX = 1,  /* below a wildcard-free name */
        MATCH_DSTAR = 2,   /* "**", also a trailing "**" matching nothing */
        MATCH_STAR = 3,    /* "*", also a trailing "*" matching nothing */
        MATCH_GLOB = 4,    /* "b*" */
        MATCH_LITERAL = 5, /* equal segment; also an exact end */
};

/* Next segment of a normalized path at *p: sets start/len, advances *p. False at the end. */
static bool next_segment(const char **p, const char **ret_start, size_t *ret_len) {
        const char *s = *p;
        if (*s == '/')
                s++;
        if (!*s)
                return false;
        *ret_start = s;
        *ret_len = strcspn(s, "/");
        *p = s + *ret_len;
        return true;
}

/*
 * Matches a normalized pattern against a normalized path with n_segments
 * segments. On a match fills kinds[0..n_segments] (the last entry describes
 * the end) and returns true.
 */
static bool match_pattern(const char *pattern, const char *path, size_t n_segments, unsigned char *kinds) {
        const char *pp = pattern, *sp = path, *ps = NULL, *ss = NULL;
        size_t pl = 0, sl = 0, i = 0, n_pattern = 0;
        unsigned char last = 0;

        for (;;) {
                bool have_p = next_segment(&pp, &ps, &pl);
                bool have_s = next_segment(&sp, &ss, &sl);

                if (have_p)
                        n_pattern++;
                if (have_p && pl == 2 && ps[0] == '*' && ps[1] == '*') {
                        /* Final "**" (the parser refuses it elsewhere): takes the rest. */
                        for (; have_s; have_s = next_segment(&sp, &ss, &sl))
                                kinds[i++] = MATCH_DSTAR;
                        kinds[i] = MATCH_DSTAR;
                        return true;
                }
                if (!have_p && !have_s) {
                        kinds[i] = MATCH_LITERAL;
                        return true;
                }
                if (!have_s) {
                        /* The path ended: only a single trailing "*" may remain. */
                        if (pl == 1 && ps[0] == '*' && !next_segment(&pp, &ps, &pl)) {
                                kinds[i] = MATCH_STAR;
                                return true;
                        }
                        return false;
                }
                if (!have_p) {
                        /* The pattern ended: a wildcard-free name covers what is below it. */
                        if (last != MATCH_LITERAL || n_pattern == 0)
                                return false;
                        for (; have_s; have_s = next_segment(&sp, &ss, &sl))
                                kinds[i++] = MATCH_PREFIX;
                        kinds[i] = MATCH_PREFIX;
                        return true;
                }
                if (pl == 1 && ps[0] == '*')
                        last = MATCH_STAR;
                else if (memchr(ps, '*', pl)) {
                        if (!glob_segment(ps, pl, ss, sl))
                                return false;
                        last = MATCH_GLOB;
                } else {
                        if (pl != sl || memcmp(ps, ss, pl) != 0)
                                return false;
                        last = MATCH_LITERAL;
                }
                if (i >= n_segments)
                        return false; /* cannot happen: the path has n_segments */
                kinds[i++] = last;
        }
}

static size_t count_segments(const char *path) {
        const char *s = NULL, *p = path;
        size_t l = 0, n = 0;
        while (next_segment(&p, &s, &l))
                n++;
        return n;
}

AclDecision acl_evaluate(const Configuration *c, const char *caller_app_id, const char *verb, const char *path,
                         const char **ret_reason) {
        return acl_evaluate_caller(c, caller_app_id, NULL, verb, path, ret_reason);
}

AclDecision acl_evaluate_caller(const Configuration *c, const char *caller_app_id, const char *caller_trust_domain,
                                const char *verb, const char *path, const char **ret_reason) {
        const AccessControl *ac = c ? c->access_control : NULL;
        const AclPolicy *policy = NULL;
        const AclOperation *best = NULL;
        _cleanup_free_ char *norm = NULL;
        _cleanup_free_ unsigned char *kinds = NULL;
        const char *reason, *caller_ns;
        AclDecision d;
        unsigned verb_flag;
        size_t n_segments, qlen;
        int r;

#define DECIDE(decision, why)                  \
        do {                                   \
                if (ret_reason)                \
                        *ret_reason = (why);   \
                return (decision);             \
        } while (0)

        if (!ac)
                DECIDE(ACL_ALLOW, "no access control configured");

        d = ac->default_action;
        reason = d == ACL_ALLOW ? "allowed by the global defaultAction" : "denied by the global defaultAction";
        if (!caller_app_id || !*caller_app_id)
                DECIDE(d, reason);

        caller_ns = c->namespace_ ?: "default";
        /* a caller on this host shares the callee's trust domain; a peer host's comes from its certificate */
        const char *caller_td = caller_trust_domain ?: ac->trust_domain;
        for (size_t i = 0; i < ac->n_policies && !policy; i++) {
                const AclPolicy *p = &ac->policies[i];
                if (streq(p->app_id, caller_app_id) && (!p->trust_domain || streq(p->trust_domain, caller_td)) &&
                    (!p->namespace_ || streq(p->namespace_, caller_ns)))
                        policy = p;
        }
        if (!policy)
                DECIDE(d, reason);
        if (policy->default_action >= 0) {
                d = policy->default_action;
                reason = policy->reason;
        }
        if (policy->n_operations == 0)
                DECIDE(d, reason);

        path = path ?: "";
        qlen = strcspn(path, "?#");
        r = normalize_path(path, qlen, true, &norm);
        if (r == -ENOMEM)
                DECIDE(ACL_DENY, "denied: out of memory while checking access control");
        if (r < 0)
                DECIDE(ACL_DENY, "denied: malformed %-escape in the method path");
        n_segments = count_segments(norm);
        /* Two rows: the best match so far and the candidate. */
        kinds = malloc(2 * (n_segments + 1));
        if (!kinds)
                DECIDE(ACL_DENY, "denied: out of memory while checking access control");

        verb_flag = http_verb_from_string(verb);
        for (size_t i = 0; i < policy->n_operations; i++) {
                const AclOperation *o = &policy->operations[i];
                unsigned char *cand = kinds + (n_segments + 1);
                int cmp = 0;

                if (!o->all_verbs && !(o->verbs & verb_flag))
                        continue;
                if (!match_pattern(o->pattern, norm, n_segments, cand))
                        continue;
                if (best) {
                        cmp = memcmp(cand, kinds, n_segments + 1);
                        if (cmp == 0)
                                cmp = (int) best->all_verbs - (int) o->all_verbs; /* a listed verb beats "*" */
                        if (cmp <= 0)
                                continue; /* ties: the earlier rule stays */
                }
                memcpy(kinds, cand, n_segments + 1);
                best = o;
        }
        if (best)
                DECIDE(best->action, best->reason);
        DECIDE(d, reason);
#undef DECIDE
}

SecretAccess secret_scope_check(const Configuration *c, const char *store, const char *secret) {
        const SecretScope *s = NULL;

        for (size_t i = 0; c && store && i < c->n_secret_scopes && !s; i++)
                if (streq(c->secret_scopes[i].store_name, store))
                        s = &c->secret_scopes[i];
        if (!s)
                return SECRET_ACCESS_ALLOW;
        if (!secret)
                return SECRET_ACCESS_DENY;
        if (strv_length(s->allowed_secrets) > 0)
                return strv_contains(s->allowed_secrets, secret) ? SECRET_ACCESS_ALLOW : SECRET_ACCESS_DENY;
        if (strv_contains(s->denied_secrets, secret))
                return SECRET_ACCESS_DENY;
        return s->default_access;
}

/* ---- YAML document walking (as in component.c) ---- */

/* A non-empty string field. */
static int get_string(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, bool required,
                      const char **ret) {
        const char *s = NULL;
        int r = yaml_get_scalar(w, map, key, field, required, &s);
        if (r < 0)
                return r;
        if (s && !*s)
                return yaml_fail(w, yaml_map_get(w, map, key), field, "must not be empty");
        *ret = s;
        return 0;
}

static int get_bool(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, bool *ret) {
        const char *s = NULL;
        int r = yaml_get_scalar(w, map, key, field, false, &s);
        if (r < 0 || !s)
                return r;
        r = parse_boolean(s);
        if (r < 0)
                return yaml_fail(w, yaml_map_get(w, map, key), field, "expected true or false, not '%s'", s);
        *ret = r;
        return 0;
}

static int get_action(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, bool required,
                      AclDecision *ret) {
        const char *s = NULL;
        int r = yaml_get_scalar(w, map, key, field, required, &s);
        if (r < 0)
                return r;
        if (!s) {
                *ret = _ACL_DECISION_INVALID;
                return 0;
        }
        *ret = acl_decision_from_string(s);
        if (*ret < 0)
                return yaml_fail(w, yaml_map_get(w, map, key), field, "expected allow or deny, not '%s'", s);
        return 0;
}

/* Optional mapping under key; *ret NULL when absent. */
static int get_mapping(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, yaml_node_t **ret) {
        yaml_node_t *n = yaml_map_get(w, map, key);
        if (n && n->type != YAML_MAPPING_NODE)
                return yaml_fail(w, n, field, "expected a mapping");
        *ret = n;
        return 0;
}

/* Optional bounded sequence under key; *ret NULL when absent, *ret_n its length. */
static int get_sequence(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, yaml_node_t **ret,
                        size_t *ret_n) {
        yaml_node_t *n = yaml_map_get(w, map, key);
        size_t len = 0;
        if (n) {
                if (n->type != YAML_SEQUENCE_NODE)
                        return yaml_fail(w, n, field, "expected a list");
                len = (size_t) (n->data.sequence.items.top - n->data.sequence.items.start);
                if (len > LIST_MAX)
                        return yaml_fail(w, n, field, "too many entries (%zu, at most %u)", len, LIST_MAX);
        }
        *ret = n;
        *ret_n = len;
        return 0;
}

static int dup_to(char **dst, const char *s) {
        if (!s)
                return 0;
        *dst = strdup(s);
        return *dst ? 0 : -ENOMEM;
}

/* A list of non-empty strings into a strv (an empty list gives an empty strv). */
static int get_string_list(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        yaml_node_t *seq = NULL;
        size_t n = 0;
        int r;

        r = get_sequence(w, map, key, field, &seq, &n);
        if (r < 0 || !seq)
                return r;
        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
                yaml_node_t *in = yaml_walk_node(w, *it);
                const char *s = yaml_scalar(in);
                if (!s || !*s)
                        return yaml_fail(w, in ?: seq, field, "expected a list of non-empty strings");
                if (strv_extend(&l, s) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* ---- sections ---- */

static int parse_sampling_rate(const char *s, double *ret) {
        char *end = NULL;
        double v;

        if (!*s || strspn(s, "0123456789.eE+-") != strlen(s))
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || !end || *end || !isfinite(v) || v < 0.0 || v > 1.0)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_tracing(YamlWalk *w, yaml_node_t *spec, ConfigTracing *t) {
        yaml_node_t *tr = NULL, *zipkin = NULL, *otel = NULL;
        const char *s = NULL;
        int r;

        t->sampling_rate = 0.0001;
        r = get_mapping(w, spec, "tracing", "spec.tracing", &tr);
        if (r < 0 || !tr)
                return r;

        r = yaml_get_scalar(w, tr, "samplingRate", "spec.tracing.samplingRate", false, &s);
        if (r < 0)
                return r;
        if (s) {
                if (parse_sampling_rate(s, &t->sampling_rate) < 0)
                        return yaml_fail(w, yaml_map_get(w, tr, "samplingRate"), "spec.tracing.samplingRate",
                                    "expected a number from 0 to 1 (as a string, e.g. \"1\"), not '%s'", s);
                t->sampling_rate_set = true;
        }
        r = get_bool(w, tr, "stdout", "spec.tracing.stdout", &t->stdout_);
        if (r < 0)
                return r;

        r = get_mapping(w, tr, "zipkin", "spec.tracing.zipkin", &zipkin);
        if (r < 0)
                return r;
        r = get_string(w, zipkin, "endpointAddress", "spec.tracing.zipkin.endpointAddress", false, &s);
        if (r < 0)
                return r;
        if (dup_to(&t->zipkin_endpoint, s) < 0)
                return -ENOMEM;

        r = get_mapping(w, tr, "otel", "spec.tracing.otel", &otel);
        if (r < 0)
                return r;
        r = get_string(w, otel, "endpointAddress", "spec.tracing.otel.endpointAddress", false, &s);
        if (r < 0)
                return r;
        if (dup_to(&t->otel_endpoint, s) < 0)
                return -ENOMEM;
        r = get_bool(w, otel, "isSecure", "spec.tracing.otel.isSecure", &t->otel_is_secure);
        if (r < 0)
                return r;
        t->otel_is_secure_set = otel && yaml_map_get(w, otel, "isSecure");
        r = get_string(w, otel, "headers", "spec.tracing.otel.headers", false, &s);
        if (r < 0)
                return r;
        if (s && (strpbrk(s, "\r\n") || !strchr(s, '=')))
                return yaml_fail(w, yaml_map_get(w, otel, "headers"), "spec.tracing.otel.headers",
                            "expected key1=value1,key2=value2 on one line");
        if (dup_to(&t->otel_headers, s) < 0)
                return -ENOMEM;
        r = get_string(w, otel, "timeout", "spec.tracing.otel.timeout", false, &s);
        if (r < 0)
                return r;
        if (s) {
                char *end;
                errno = 0;
                unsigned long long v = strtoull(s, &end, 10);
                if (errno || end == s || *end || v == 0 || v > 3600000 || *s == '-')
                        return yaml_fail(w, yaml_map_get(w, otel, "timeout"), "spec.tracing.otel.timeout",
                                    "expected milliseconds from 1 to 3600000, not '%s'", s);
                t->otel_timeout_ms = v;
        }
        r = get_string(w, otel, "protocol", "spec.tracing.otel.protocol", false, &s);
        if (r < 0)
                return r;
        if (s && !streq(s, "grpc") && !streq(s, "http"))
                return yaml_fail(w, yaml_map_get(w, otel, "protocol"), "spec.tracing.otel.protocol",
                            "expected grpc or http, not '%s'", s);
        if (dup_to(&t->otel_protocol, s) < 0)
                return -ENOMEM;
        return 0;
}

/* spec.metric.enabled (daprd's MetricSpec; absent means enabled). */
static int parse_metric(YamlWalk *w, yaml_node_t *spec, Configuration *c) {
        yaml_node_t *metric = NULL;
        bool enabled = true;
        int r = get_mapping(w, spec, "metric", "spec.metric", &metric);
        if (r < 0 || !metric)
                return r;
        r = get_bool(w, metric, "enabled", "spec.metric.enabled", &enabled);
        if (r < 0)
                return r;
        c->metric_disabled = !enabled;
        return 0;
}

#define OP_FIELD "spec.accessControl.policies[].operations[]"

/* A pattern may hold '*' anywhere in a segment and "**" only as the whole last segment. */
static bool pattern_wildcards_ok(const char *pattern) {
        const char *p = pattern, *s = NULL;
        size_t l = 0;
        while (next_segment(&p, &s, &l)) {
                bool last = *p == '\0';
                const char *dd = memmem(s, l, "**", 2);
                if (dd && !(last && l == 2))
                        return false;
        }
        return true;
}

static int parse_operation(YamlWalk *w, yaml_node_t *in, const char *app_id, AclOperation *o) {
        yaml_node_t *verbs = NULL;
        const char *name = NULL;
        size_t n_verbs = 0;
        int r;

        if (!in || in->type != YAML_MAPPING_NODE)
                return yaml_fail(w, in, OP_FIELD, "expected a mapping with 'name', 'httpVerb' and 'action'");
        o->line = yaml_node_line(in);

        r = get_string(w, in, "name", OP_FIELD ".name", true, &name);
        if (r < 0)
                return r;
        if (name[0] != '/')
                return yaml_fail(w, yaml_map_get(w, in, "name"), OP_FIELD ".name", "operation '%s' must start with '/'", name);
        if (strlen(name) > OPERATION_NAME_MAX)
                return yaml_fail(w, yaml_map_get(w, in, "name"), OP_FIELD ".name", "longer than %u characters",
                            OPERATION_NAME_MAX);
        for (const char *p = name; *p; p++)
                if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f || *p == '?' || *p == '#')
                        return yaml_fail(w, yaml_map_get(w, in, "name"), OP_FIELD ".name",
                                    "operation '%s' may only hold printable ASCII without spaces, '?' or '#'",
                                    name);
        r = normalize_path(name, strlen(name), false, &o->pattern);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return yaml_fail(w, yaml_map_get(w, in, "name"), OP_FIELD ".name",
                            "operation '%s' has a bad %%-escape or a '.' or '..' segment", name);
        if (!pattern_wildcards_ok(o->pattern))
                return yaml_fail(w, yaml_map_get(w, in, "name"), OP_FIELD ".name",
                            "in operation '%s', '**' may only be the whole last segment", name);
        if (dup_to(&o->name, name) < 0)
                return -ENOMEM;

        r = get_sequence(w, in, "httpVerb", OP_FIELD ".httpVerb", &verbs, &n_verbs);
        if (r < 0)
                return r;
        o->all_verbs = n_verbs == 0;
        for (size_t i = 0; i < n_verbs; i++) {
                yaml_node_t *vn = yaml_walk_node(w, verbs->data.sequence.items.start[i]);
                const char *v = yaml_scalar(vn);
                unsigned f = http_verb_from_string(v);
                if (v && streq(v, "*"))
                        o->all_verbs = true;
                else if (f == 0)
                        return yaml_fail(w, vn ?: verbs, OP_FIELD ".httpVerb",
                                    "unknown HTTP verb '%s' (GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, "
                                    "TRACE, PATCH or \"*\", upper case)", v ?: "(not a string)");
                o->verbs |= f;
        }
        if (o->all_verbs)
                o->verbs = HTTP_VERB_ALL;

        r = get_action(w, in, "action", OP_FIELD ".action", true, &o->action);
        if (r < 0)
                return r;
        if (asprintf(&o->reason, "%s by policy for app '%s', operation '%s'",
                     o->action == ACL_ALLOW ? "allowed" : "denied", app_id, name) < 0) {
                o->reason = NULL;
                return -ENOMEM;
        }
        return 0;
}

#define POLICY_FIELD "spec.accessControl.policies[]"

static int parse_policy(YamlWalk *w, yaml_node_t *in, AccessControl *ac, AclPolicy *p) {
        yaml_node_t *ops = NULL;
        const char *s = NULL;
        size_t n_ops = 0;
        int r;

        if (!in || in->type != YAML_MAPPING_NODE)
                return yaml_fail(w, in, POLICY_FIELD, "expected a mapping with 'appId'");
        p->line = yaml_node_line(in);

        r = get_string(w, in, "appId", POLICY_FIELD ".appId", true, &s);
        if (r < 0)
                return r;
        if (!name_is_valid(s))
                return yaml_fail(w, yaml_map_get(w, in, "appId"), POLICY_FIELD ".appId",
                            "invalid app id '%s': letters, digits, '.', '_', '-', max 63", s);
        if (dup_to(&p->app_id, s) < 0)
                return -ENOMEM;
        r = get_string(w, in, "trustDomain", POLICY_FIELD ".trustDomain", false, &s);
        if (r < 0)
                return r;
        if (dup_to(&p->trust_domain, s) < 0)
                return -ENOMEM;
        r = get_string(w, in, "namespace", POLICY_FIELD ".namespace", false, &s);
        if (r < 0)
                return r;
        if (dup_to(&p->namespace_, s) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < ac->n_policies; i++) {
                const AclPolicy *q = &ac->policies[i];
                if (streq(q->app_id, p->app_id) && streq_ptr(q->trust_domain, p->trust_domain) &&
                    streq_ptr(q->namespace_, p->namespace_))
                        return yaml_fail(w, in, POLICY_FIELD ".appId",
                                    "duplicate policy for app '%s' (first on line %u)", p->app_id, q->line);
        }

        r = get_action(w, in, "defaultAction", POLICY_FIELD ".defaultAction", false, &p->default_action);
        if (r < 0)
                return r;
        if (asprintf(&p->reason, "%s by the defaultAction of the policy for app '%s'",
                     p->default_action == ACL_ALLOW ? "allowed" : "denied", p->app_id) < 0) {
                p->reason = NULL;
                return -ENOMEM;
        }

        r = get_sequence(w, in, "operations", POLICY_FIELD ".operations", &ops, &n_ops);
        if (r < 0)
                return r;
        if (n_ops == 0)
                return 0;
        p->operations = calloc(n_ops, sizeof(AclOperation));
        if (!p->operations)
                return -ENOMEM;
        for (size_t i = 0; i < n_ops; i++) {
                /* Counted before parsing so a half-filled entry is freed too. */
                AclOperation *o = &p->operations[p->n_operations++];
                r = parse_operation(w, yaml_walk_node(w, ops->data.sequence.items.start[i]), p->app_id, o);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_access_control(YamlWalk *w, yaml_node_t *spec, Configuration *c) {
        AccessControl *ac;
        yaml_node_t *acn = NULL, *pols = NULL;
        const char *s = NULL;
        size_t n_pols = 0;
        int r;

        r = get_mapping(w, spec, "accessControl", "spec.accessControl", &acn);
        if (r < 0 || !acn)
                return r;

        ac = c->access_control = calloc(1, sizeof(AccessControl));
        if (!ac)
                return -ENOMEM;
        ac->line = yaml_node_line(acn);

        r = get_action(w, acn, "defaultAction", "spec.accessControl.defaultAction", false, &ac->default_action);
        if (r < 0)
                return r;
        ac->default_action_set = ac->default_action >= 0;
        r = get_string(w, acn, "trustDomain", "spec.accessControl.trustDomain", false, &s);
        if (r < 0)
                return r;
        if (dup_to(&ac->trust_domain, s ?: "public") < 0)
                return -ENOMEM;

        r = get_sequence(w, acn, "policies", "spec.accessControl.policies", &pols, &n_pols);
        if (r < 0)
                return r;
        if (n_pols > 0) {
                ac->policies = calloc(n_pols, sizeof(AclPolicy));
                if (!ac->policies)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n_pols; i++) {
                AclPolicy *p = &ac->policies[ac->n_policies];
                r = parse_policy(w, yaml_walk_node(w, pols->data.sequence.items.start[i]), ac, p);
                ac->n_policies++; /* after the duplicate check, which must not see p itself */
                if (r < 0)
                        return r;
        }

        if (!ac->default_action_set) {
                if (n_pols == 0 && !s) {
                        /* An empty section is no section (Dapr: "no ACL has been specified"). */
                        c->access_control = access_control_free(ac);
                        return 0;
                }
                ac->default_action = n_pols > 0 ? ACL_DENY : ACL_ALLOW;
        }
        return 0;
}

#define SCOPE_FIELD "spec.secrets.scopes[]"

static int parse_secrets(YamlWalk *w, yaml_node_t *spec, Configuration *c) {
        yaml_node_t *sec = NULL, *scopes = NULL;
        size_t n = 0;
        int r;

        r = get_mapping(w, spec, "secrets", "spec.secrets", &sec);
        if (r < 0 || !sec)
                return r;
        r = get_sequence(w, sec, "scopes", "spec.secrets.scopes", &scopes, &n);
        if (r < 0 || n == 0)
                return r;
        c->secret_scopes = calloc(n, sizeof(SecretScope));
        if (!c->secret_scopes)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                yaml_node_t *in = yaml_walk_node(w, scopes->data.sequence.items.start[i]);
                SecretScope *sc = &c->secret_scopes[c->n_secret_scopes];
                const char *s = NULL;

                if (!in || in->type != YAML_MAPPING_NODE)
                        return yaml_fail(w, in ?: scopes, SCOPE_FIELD, "expected a mapping with 'storeName'");
                sc->line = yaml_node_line(in);
                r = get_string(w, in, "storeName", SCOPE_FIELD ".storeName", true, &s);
                if (r < 0)
                        return r;
                for (size_t j = 0; j < c->n_secret_scopes; j++)
                        if (streq(c->secret_scopes[j].store_name, s))
                                return yaml_fail(w, yaml_map_get(w, in, "storeName"), SCOPE_FIELD ".storeName",
                                            "duplicate scope for store '%s' (first on line %u)", s,
                                            c->secret_scopes[j].line);
                if (dup_to(&sc->store_name, s) < 0)
                        return -ENOMEM;
                c->n_secret_scopes++;

                r = yaml_get_scalar(w, in, "defaultAccess", SCOPE_FIELD ".defaultAccess", false, &s);
                if (r < 0)
                        return r;
                sc->default_access = s ? secret_access_from_string(s) : SECRET_ACCESS_ALLOW;
                if (sc->default_access < 0)
                        return yaml_fail(w, yaml_map_get(w, in, "defaultAccess"), SCOPE_FIELD ".defaultAccess",
                                    "expected allow or deny, not '%s'", s);
                r = get_string_list(w, in, "allowedSecrets", SCOPE_FIELD ".allowedSecrets", &sc->allowed_secrets);
                if (r < 0)
                        return r;
                r = get_string_list(w, in, "deniedSecrets", SCOPE_FIELD ".deniedSecrets", &sc->denied_secrets);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* spec.nameResolution: component and, under configuration, connectionString and tableName. */
static int parse_name_resolution(YamlWalk *w, yaml_node_t *spec, ConfigNameResolution *nr) {
        yaml_node_t *n = NULL, *cfg = NULL;
        const char *s = NULL;
        int r;

        r = get_mapping(w, spec, "nameResolution", "spec.nameResolution", &n);
        if (r < 0 || !n)
                return r;
        nr->line = (unsigned) n->start_mark.line + 1;
        r = get_string(w, n, "component", "spec.nameResolution.component", false, &s);
        if (r < 0)
                return r;
        if (dup_to(&nr->component, s) < 0)
                return -ENOMEM;
        r = get_mapping(w, n, "configuration", "spec.nameResolution.configuration", &cfg);
        if (r < 0 || !cfg)
                return r;
        s = NULL;
        r = get_string(w, cfg, "connectionString", "spec.nameResolution.configuration.connectionString", false, &s);
        if (r < 0)
                return r;
        if (dup_to(&nr->connection, s) < 0)
                return -ENOMEM;
        s = NULL;
        r = get_string(w, cfg, "tableName", "spec.nameResolution.configuration.tableName", false, &s);
        if (r < 0)
                return r;
        return dup_to(&nr->table, s);
}

static int parse_features(YamlWalk *w, yaml_node_t *spec, Configuration *c) {
        yaml_node_t *seq = NULL;
        size_t n = 0;
        int r;

        r = get_sequence(w, spec, "features", "spec.features", &seq, &n);
        if (r < 0 || n == 0)
                return r;
        c->features = calloc(n, sizeof(ConfigFeature));
        if (!c->features)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                yaml_node_t *in = yaml_walk_node(w, seq->data.sequence.items.start[i]);
                ConfigFeature *f = &c->features[c->n_features];
                const char *s = NULL;

                if (!in || in->type != YAML_MAPPING_NODE)
                        return yaml_fail(w, in ?: seq, "spec.features[]", "expected a mapping with 'name' and 'enabled'");
                r = get_string(w, in, "name", "spec.features[].name", true, &s);
                if (r < 0)
                        return r;
                if (dup_to(&f->name, s) < 0)
                        return -ENOMEM;
                c->n_features++;
                r = get_bool(w, in, "enabled", "spec.features[].enabled", &f->enabled);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_configuration(YamlWalk *w, yaml_node_t *root, Configuration **ret) {
        _cleanup_(configuration_freep) Configuration *c = NULL;
        yaml_node_t *meta = NULL, *spec = NULL;
        const char *s = NULL;
        int r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->line = yaml_node_line(root);
        c->tracing.sampling_rate = 0.0001;
        if (dup_to(&c->file, w->file) < 0)
                return -ENOMEM;

        r = yaml_get_scalar(w, root, "apiVersion", "apiVersion", true, &s);
        if (r < 0)
                return r;
        if (!streq(s, "dapr.io/v1alpha1"))
                return yaml_fail(w, yaml_map_get(w, root, "apiVersion"), "apiVersion",
                            "unsupported apiVersion '%s', expected dapr.io/v1alpha1", s);

        r = get_mapping(w, root, "metadata", "metadata", &meta);
        if (r < 0)
                return r;
        r = get_string(w, meta, "name", "metadata.name", false, &s);
        if (r < 0)
                return r;
        if (s && !name_is_valid(s))
                return yaml_fail(w, yaml_map_get(w, meta, "name"), "metadata.name",
                            "invalid configuration name '%s': letters, digits, '.', '_', '-', max 63", s);
        if (dup_to(&c->name, s) < 0)
                return -ENOMEM;
        r = get_string(w, meta, "namespace", "metadata.namespace", false, &s);
        if (r < 0)
                return r;
        if (dup_to(&c->namespace_, s) < 0)
                return -ENOMEM;

        /* A Configuration without spec is valid: every default applies. */
        r = get_mapping(w, root, "spec", "spec", &spec);
        if (r < 0)
                return r;
        r = parse_tracing(w, spec, &c->tracing);
        if (r < 0)
                return r;
        r = parse_metric(w, spec, c);
        if (r < 0)
                return r;
        r = parse_access_control(w, spec, c);
        if (r < 0)
                return r;
        r = parse_secrets(w, spec, c);
        if (r < 0)
                return r;
        r = parse_features(w, spec, c);
        if (r < 0)
                return r;
        r = parse_name_resolution(w, spec, &c->name_resolution);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

typedef struct {
        Configuration *c;
} ParseCtx;

/* The first kind: Configuration document is ours; every other document is skipped. */
static int on_document(YamlWalk *w, yaml_node_t *root, void *userdata) {
        ParseCtx *ctx = userdata;
        const char *kind = yaml_scalar(yaml_map_get(w, root, "kind"));
        int r;

        if (!kind || !streq(kind, "Configuration"))
                return 0;
        r = parse_configuration(w, root, &ctx->c);
        return r < 0 ? r : 1;
}

int configuration_parse(const char *file, const char *text, size_t len, Configuration **ret, ConfError *e) {
        ParseCtx ctx = {};
        int r = yaml_walk_documents(file, text, len, e, on_document, &ctx);
        if (r < 0)
                return r;
        *ret = ctx.c;
        return 0;
}
