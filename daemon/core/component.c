/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See component.h. Uses libyaml's document API: each document is loaded as a
 * node tree whose marks give the line of every field, so an error can point
 * at the exact line. Nothing here trusts the input: every node's kind is
 * checked before use, sizes are bounded by the caller's file limit.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../util/strv.h"
#include "component.h"
#include "yaml-walk.h"

static const char *const categories[] = {
        "state", "pubsub", "bindings", "secretstores", "configuration", "lock",
        "middleware", "nameresolution", "crypto", "workflow", "conversation",
};

static void item_done(ComponentItem *i) {
        free(i->name);
        if (i->resolved)
                erase_and_free(i->value);
        else
                free(i->value);
        free(i->secret_name);
        free(i->secret_key);
        free(i->env_ref);
}

static Component *component_free(Component *c) {
        for (size_t i = 0; i < c->n_items; i++)
                item_done(&c->items[i]);
        free(c->items);
        free(c->name);
        free(c->namespace_);
        free(c->type);
        free(c->version);
        free(c->secret_store);
        strv_free(c->scopes);
        free(c->file);
        free(c->load_error);
        free(c);
        return NULL;
}

Component *component_ref(Component *c) {
        if (c)
                c->n_ref++;
        return c;
}

Component *component_unref(Component *c) {
        if (!c || --c->n_ref > 0)
                return NULL;
        return component_free(c);
}

const char *component_category(const Component *c) {
        const char *dot = strchr(c->type, '.');
        for (size_t i = 0; dot && i < ELEMENTSOF(categories); i++)
                if (strlen(categories[i]) == (size_t) (dot - c->type) &&
                    strneq(c->type, categories[i], (size_t) (dot - c->type)))
                        return categories[i];
        return NULL;
}

bool component_is_builtin(const Component *c) {
        return c && c->file && strcmp(c->file, COMPONENT_BUILTIN_FILE) == 0;
}

bool component_is_category(const Component *c, const char *category) {
        const char *cat = component_category(c);
        return cat && streq(cat, category);
}

bool component_in_scope(const Component *c, const char *app_id) {
        if (strv_length(c->scopes) == 0)
                return true;
        return app_id && strv_contains(c->scopes, app_id);
}

const char *component_get_string(const Component *c, const char *name) {
        ComponentItem *it = NULL;
        for (size_t i = 0; i < c->n_items && !it; i++)
                if (streq(c->items[i].name, name))
                        it = &c->items[i];
        for (size_t i = 0; i < c->n_items && !it; i++)
                if (strcasecmp(c->items[i].name, name) == 0)
                        it = &c->items[i];
        if (!it)
                return NULL;
        it->used = true;
        return it->value;
}

static bool item_equal(const ComponentItem *a, const ComponentItem *b) {
        return streq(a->name, b->name) && streq_ptr(a->value, b->value) &&
               streq_ptr(a->secret_name, b->secret_name) && streq_ptr(a->secret_key, b->secret_key) &&
               streq_ptr(a->env_ref, b->env_ref);
}

bool component_equal(const Component *a, const Component *b) {
        if (!streq(a->name, b->name) || !streq(a->type, b->type) || !streq(a->version, b->version) ||
            !streq_ptr(a->namespace_, b->namespace_) || !streq_ptr(a->secret_store, b->secret_store) ||
            a->init_timeout_usec != b->init_timeout_usec || a->ignore_errors != b->ignore_errors ||
            a->n_items != b->n_items || !strv_equal(a->scopes, b->scopes))
                return false;
        for (size_t i = 0; i < a->n_items; i++)
                if (!item_equal(&a->items[i], &b->items[i]))
                        return false;
        return true;
}

static int dup_to(char **dst, const char *s) {
        if (!s)
                return 0;
        *dst = strdup(s);
        return *dst ? 0 : -ENOMEM;
}

static int parse_items(YamlWalk *w, yaml_node_t *seq, Component *c) {
        if (seq->type != YAML_SEQUENCE_NODE)
                return yaml_fail(w, seq, "spec.metadata", "expected a list of {name, value} items");
        size_t n = (size_t) (seq->data.sequence.items.top - seq->data.sequence.items.start);
        c->items = calloc(n ? n : 1, sizeof(ComponentItem));
        if (!c->items)
                return -ENOMEM;

        for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
                yaml_node_t *in = yaml_walk_node(w, *it);
                ComponentItem *item = &c->items[c->n_items];
                const char *name, *value = NULL, *env = NULL;
                yaml_node_t *v, *skr;
                int r;

                if (!in || in->type != YAML_MAPPING_NODE)
                        return yaml_fail(w, in, "spec.metadata", "expected a mapping with 'name' and 'value'");
                r = yaml_get_scalar(w, in, "name", "spec.metadata[].name", true, &name);
                if (r < 0)
                        return r;
                if (!*name)
                        return yaml_fail(w, in, "spec.metadata[].name", "must not be empty");
                for (size_t j = 0; j < c->n_items; j++)
                        if (streq(c->items[j].name, name))
                                return yaml_fail(w, in, "spec.metadata[].name", "duplicate metadata item '%s'", name);

                v = yaml_map_get_raw(w, in, "value"); /* Dapr stringifies any scalar, null included */
                skr = yaml_map_get(w, in, "secretKeyRef");
                r = yaml_get_scalar(w, in, "envRef", "spec.metadata[].envRef", false, &env);
                if (r < 0)
                        return r;
                if (!!v + !!skr + !!env != 1)
                        return yaml_fail(w, in, "spec.metadata[].value",
                                    "item '%s' needs exactly one of value, secretKeyRef or envRef", name);
                if (v) {
                        /* Dapr stringifies any scalar; lists and maps become JSON there, which we do
                         * not emulate: say so instead of guessing. */
                        if (v->type != YAML_SCALAR_NODE)
                                return yaml_fail(w, v, "spec.metadata[].value",
                                            "value of '%s' must be a scalar (quote JSON as a string)", name);
                        value = yaml_scalar(v);
                }
                if (skr) {
                        const char *sn, *sk;
                        if (skr->type != YAML_MAPPING_NODE)
                                return yaml_fail(w, skr, "spec.metadata[].secretKeyRef", "expected {name, key}");
                        r = yaml_get_scalar(w, skr, "name", "spec.metadata[].secretKeyRef.name", true, &sn);
                        if (r < 0)
                                return r;
                        r = yaml_get_scalar(w, skr, "key", "spec.metadata[].secretKeyRef.key", false, &sk);
                        if (r < 0)
                                return r;
                        if (!*sn)
                                return yaml_fail(w, skr, "spec.metadata[].secretKeyRef.name", "must not be empty");
                        if (dup_to(&item->secret_name, sn) < 0 || dup_to(&item->secret_key, sk && *sk ? sk : sn) < 0)
                                return -ENOMEM;
                }
                if (env) {
                        if (startswith(env, "DAPR_") || streq(env, "APP_API_TOKEN"))
                                return yaml_fail(w, in, "spec.metadata[].envRef",
                                            "environment variable '%s' may not be referenced", env);
                        if (dup_to(&item->env_ref, env) < 0)
                                return -ENOMEM;
                }
                if (dup_to(&item->name, name) < 0 || dup_to(&item->value, value) < 0)
                        return -ENOMEM;
                item->line = yaml_node_line(in);
                c->n_items++;
        }
        return 0;
}

static int parse_component(YamlWalk *w, yaml_node_t *root, Component **ret) {
        _cleanup_(component_unrefp) Component *c = NULL;
        yaml_node_t *meta, *spec, *scopes, *auth;
        const char *s;
        int r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->line = yaml_node_line(root);
        c->init_timeout_usec = 5 * 1000000ULL;
        if (dup_to(&c->file, w->file) < 0)
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
                return yaml_fail(w, yaml_map_get(w, meta, "name"), "metadata.name",
                            "invalid component name '%s': letters, digits, '.', '_', '-', max 63", s);
        if (dup_to(&c->name, s) < 0)
                return -ENOMEM;
        r = yaml_get_scalar(w, meta, "namespace", "metadata.namespace", false, &s);
        if (r < 0)
                return r;
        if (dup_to(&c->namespace_, s) < 0)
                return -ENOMEM;

        spec = yaml_map_get(w, root, "spec");
        if (!spec || spec->type != YAML_MAPPING_NODE)
                return yaml_fail(w, spec ?: root, "spec", "required mapping is missing");
        r = yaml_get_scalar(w, spec, "type", "spec.type", true, &s);
        if (r < 0)
                return r;
        if (dup_to(&c->type, s) < 0)
                return -ENOMEM;
        if (!component_category(c) || strlen(strchr(c->type, '.')) < 2)
                return yaml_fail(w, yaml_map_get(w, spec, "type"), "spec.type",
                            "'%s' is not <category>.<name> with a known category "
                            "(state, pubsub, bindings, secretstores, ...)", s);
        r = yaml_get_scalar(w, spec, "version", "spec.version", false, &s);
        if (r < 0)
                return r;
        if (s && (s[0] != 'v' || !s[1] || strspn(s + 1, "0123456789") != strlen(s + 1)))
                return yaml_fail(w, yaml_map_get(w, spec, "version"), "spec.version", "expected v1, v2, ... not '%s'", s);
        if (dup_to(&c->version, s ?: "v1") < 0)
                return -ENOMEM;

        r = yaml_get_scalar(w, spec, "initTimeout", "spec.initTimeout", false, &s);
        if (r < 0)
                return r;
        if (s && parse_duration_usec(s, &c->init_timeout_usec) < 0)
                return yaml_fail(w, yaml_map_get(w, spec, "initTimeout"), "spec.initTimeout",
                            "expected a duration such as 5s, not '%s'", s);
        r = yaml_get_scalar(w, spec, "ignoreErrors", "spec.ignoreErrors", false, &s);
        if (r < 0)
                return r;
        if (s) {
                int b = parse_boolean(s);
                if (b < 0)
                        return yaml_fail(w, yaml_map_get(w, spec, "ignoreErrors"), "spec.ignoreErrors",
                                    "expected true or false, not '%s'", s);
                c->ignore_errors = b;
        }

        yaml_node_t *items = yaml_map_get(w, spec, "metadata");
        if (items) {
                r = parse_items(w, items, c);
                if (r < 0)
                        return r;
        }

        auth = yaml_map_get(w, root, "auth");
        if (auth) {
                if (auth->type != YAML_MAPPING_NODE)
                        return yaml_fail(w, auth, "auth", "expected a mapping with 'secretStore'");
                r = yaml_get_scalar(w, auth, "secretStore", "auth.secretStore", false, &s);
                if (r < 0)
                        return r;
                if (dup_to(&c->secret_store, s) < 0)
                        return -ENOMEM;
        }

        scopes = yaml_map_get(w, root, "scopes");
        if (scopes) {
                if (scopes->type != YAML_SEQUENCE_NODE)
                        return yaml_fail(w, scopes, "scopes", "expected a list of app ids");
                c->scopes = calloc(1, sizeof(char *));
                if (!c->scopes)
                        return -ENOMEM;
                for (yaml_node_item_t *it = scopes->data.sequence.items.start;
                     it < scopes->data.sequence.items.top; it++) {
                        yaml_node_t *sn = yaml_walk_node(w, *it);
                        const char *id = yaml_scalar(sn);
                        if (!id || !name_is_valid(id))
                                return yaml_fail(w, sn, "scopes", "invalid app id '%s' in scopes", id ?: "(not a string)");
                        if (strv_extend(&c->scopes, id) < 0)
                                return -ENOMEM;
                }
        }

        *ret = TAKE_PTR(c);
        return 0;
}

typedef struct {
        ComponentFoundFn found_fn;
        ComponentNamedErrorFn error_fn;
        ComponentErrorFn plain_error_fn; /* component_parse()'s caller's, for the trampoline */
        void *userdata;
        int n_good;
} ParseCtx;

/* metadata.name of a document as written, if it is a non-empty scalar: what the document meant to
 * define, even when it is otherwise broken. */
static const char *document_name(YamlWalk *w, yaml_node_t *root) {
        if (!root || root->type != YAML_MAPPING_NODE)
                return NULL;
        const char *s = yaml_scalar(yaml_map_get(w, yaml_map_get(w, root, "metadata"), "name"));
        return s && *s ? s : NULL;
}

static int on_document(YamlWalk *w, yaml_node_t *root, void *userdata) {
        ParseCtx *ctx = userdata;
        const char *kind = yaml_scalar(yaml_map_get(w, root, "kind"));
        int r = 0;

        if (yaml_is_null(root))
                return 0; /* an empty document, e.g. after a trailing "---": nothing to load */
        if (root->type != YAML_MAPPING_NODE)
                r = conf_error_set(w->err, w->file, yaml_node_line(root), NULL, "expected a mapping document");
        else if (!kind)
                r = conf_error_set(w->err, w->file, yaml_node_line(root), "kind", "required field is missing");
        else if (streq(kind, "Component")) {
                Component *c = NULL;
                r = parse_component(w, root, &c);
                if (r >= 0) {
                        ctx->found_fn(c, ctx->userdata);
                        ctx->n_good++;
                }
        }
        /* Other kinds (Subscription, Configuration, Resiliency, ...) are not ours here. */
        if (r == -ENOMEM)
                return r;
        if (r < 0) { /* a bad document: report it, go on with the next */
                ctx->error_fn(w->err, document_name(w, root), ctx->userdata);
                conf_error_done(w->err);
        }
        return 0;
}

int component_parse_named(const char *file, const char *text, size_t len, ComponentFoundFn found_fn,
                          ComponentNamedErrorFn error_fn, void *userdata) {
        ParseCtx ctx = { .found_fn = found_fn, .error_fn = error_fn, .userdata = userdata };
        ConfError e = {};
        int r = yaml_walk_documents(file, text, len, &e, on_document, &ctx);

        if (r == -EINVAL) /* a YAML syntax error ends the file there: what it meant is unknown */
                error_fn(&e, NULL, userdata);
        conf_error_done(&e);
        return r == -ENOMEM ? r : ctx.n_good;
}

static void plain_error(const ConfError *e, const char *name, void *userdata) {
        ParseCtx *outer = userdata;
        if (outer->plain_error_fn)
                outer->plain_error_fn(e, outer->userdata);
}

static void plain_found(Component *c, void *userdata) {
        ParseCtx *outer = userdata;
        outer->found_fn(c, outer->userdata);
}

int component_parse(const char *file, const char *text, size_t len, ComponentFoundFn found_fn,
                    ComponentErrorFn error_fn, void *userdata) {
        /* The named variant with the caller's callbacks behind a trampoline. */
        ParseCtx outer = { .found_fn = found_fn, .plain_error_fn = error_fn, .userdata = userdata };
        return component_parse_named(file, text, len, plain_found, plain_error, &outer);
}
