/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Walking Dapr resource documents loaded with libyaml's document API: typed,
 * bounds-checked access to mappings and scalars, and errors that carry the
 * file, the line of the offending node and a dotted field path. Shared by the
 * Component and Configuration loaders. A YAML null ("key:", "~", "null")
 * counts as absent everywhere.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "conferr.h"

typedef struct YamlWalk {
        yaml_document_t *doc;
        const char *file;
        ConfError *err;
} YamlWalk;

unsigned yaml_node_line(const yaml_node_t *n);
yaml_node_t *yaml_walk_node(YamlWalk *w, int id);
/* The scalar's text, or NULL for any other node kind. */
const char *yaml_scalar(const yaml_node_t *n);
bool yaml_is_null(const yaml_node_t *n);
/* key's value in a mapping node; NULL when absent, null, or map is no mapping. */
yaml_node_t *yaml_map_get(YamlWalk *w, yaml_node_t *map, const char *key);
/* The same, but a null value is returned as the node it is (where null is a value). */
yaml_node_t *yaml_map_get_raw(YamlWalk *w, yaml_node_t *map, const char *key);
/* Sets w->err at n's line for field. Always returns -EINVAL. */
int yaml_fail(YamlWalk *w, const yaml_node_t *n, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* A field that must be a scalar if present; required and absent is an error. *ret NULL when absent. */
int yaml_get_scalar(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, bool required,
                    const char **ret);

/*
 * Calls fn for every document of text, with w->err = e. fn returns < 0 to stop
 * with that error, > 0 to stop successfully, 0 to go on. A YAML syntax error
 * stops the walk: e is set and -EINVAL returned. -ENOMEM on allocation failure.
 */
typedef int (*YamlDocumentFn)(YamlWalk *w, yaml_node_t *root, void *userdata);
int yaml_walk_documents(const char *file, const char *text, size_t len, ConfError *e, YamlDocumentFn fn,
                        void *userdata);
