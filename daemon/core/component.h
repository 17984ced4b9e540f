/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The typed model of a Dapr `Component` resource (apiVersion dapr.io/v1alpha1)
 * and its loader. A file may hold several YAML documents separated by "---";
 * each good Component document is handed out, each bad one is reported with
 * file, line and field, and documents of other kinds are skipped.
 *
 * Components are reference counted: a reload swaps the set while calls that
 * hold the old one finish.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conferr.h"

typedef struct ComponentItem {
        char *name;
        char *value;       /* NULL when the value comes from secretKeyRef/envRef */
        char *secret_name; /* secretKeyRef.name */
        char *secret_key;  /* secretKeyRef.key (defaults to the name) */
        char *env_ref;
        bool resolved;     /* value was filled from envRef or secretKeyRef: wiped on free */
        bool used;         /* read through component_get_string() (what is never read is warned about) */
        unsigned line;
} ComponentItem;

typedef struct Component {
        unsigned n_ref;
        char *name;
        char *namespace_;
        char *type;          /* "state.redis": category "." kind */
        char *version;       /* "v1" when absent */
        char *secret_store;  /* auth.secretStore */
        uint64_t init_timeout_usec;
        bool ignore_errors;
        ComponentItem *items;
        size_t n_items;
        char **scopes;       /* NULL or empty = every app */
        char *file;
        unsigned line;       /* line of the document's start */
        char *load_error;    /* it could not be loaded: "file:line: field '..': why"; else NULL */
} Component;

Component *component_ref(Component *c);
Component *component_unref(Component *c);
DEFINE_CLEANUP_FUNC(Component, component_unref);

/* "state" for "state.redis". Returns a pointer to a static string or NULL. */
const char *component_category(const Component *c);
bool component_is_category(const Component *c, const char *category);
/* The file name of the components the daemon adds where none of a category is configured. */
#define COMPONENT_BUILTIN_FILE "(built-in default)"
/* Whether c is one of those (statestore, pubsub, lockstore, configstore on SQLite). */
bool component_is_builtin(const Component *c);
bool component_in_scope(const Component *c, const char *app_id);
bool component_equal(const Component *a, const Component *b);
/* Plain metadata value lookup (secretKeyRef items return NULL). Names match without regard to case
 * when none matches exactly, as Dapr decodes metadata (mapstructure). Marks the item used. */
const char *component_get_string(const Component *c, const char *name);

/*
 * Looks up key of secret name in the open secret store store (for
 * secretKeyRef). 0 with *ret malloc'd (the caller wipes it), or < 0 with
 * *reterr_msg (malloc'd, may be NULL) saying why; -ENOMEM stops the load.
 */
typedef int (*ComponentSecretFn)(const char *store, const char *name, const char *key, char **ret,
                                 char **reterr_msg, void *userdata);

/*
 * Fills the values of envRef and secretKeyRef items: envRef from the daemon's
 * environment, secretKeyRef through secret_fn with the store named in
 * auth.secretStore. On failure e names the item.
 */
int component_resolve(Component *c, ComponentSecretFn secret_fn, void *userdata, ConfError *e);

/* Called with a component the callee takes (must unref). */
typedef void (*ComponentFoundFn)(Component *c, void *userdata);
/* Called for each bad document; e is only valid during the call. */
typedef void (*ComponentErrorFn)(const ConfError *e, void *userdata);

/*
 * Parses YAML text. Returns the number of good components, or -ENOMEM.
 * Errors in individual documents go to error_fn and do not stop the rest;
 * a YAML syntax error stops the file at that point.
 */
int component_parse(const char *file, const char *text, size_t len, ComponentFoundFn found_fn,
                    ComponentErrorFn error_fn, void *userdata);

/*
 * For reload: called for each bad document with the component it meant to
 * define, its metadata.name (a non-empty scalar under a metadata mapping),
 * or NULL when that cannot be told: the document is no mapping or names
 * nothing, or the YAML syntax broke (then the rest of the file is unread).
 */
typedef void (*ComponentNamedErrorFn)(const ConfError *e, const char *name, void *userdata);
/* Like component_parse(), with the bad document's name given to error_fn. */
int component_parse_named(const char *file, const char *text, size_t len, ComponentFoundFn found_fn,
                          ComponentNamedErrorFn error_fn, void *userdata);
