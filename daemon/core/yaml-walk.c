/* SPDX-License-Identifier: Apache-2.0 */
/* See yaml-walk.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "../util/cleanup.h"
#include "yaml-walk.h"

unsigned yaml_node_line(const yaml_node_t *n) {
        return n ? (unsigned) n->start_mark.line + 1 : 0;
}

yaml_node_t *yaml_walk_node(YamlWalk *w, int id) {
        return yaml_document_get_node(w->doc, id);
}

const char *yaml_scalar(const yaml_node_t *n) {
        return n && n->type == YAML_SCALAR_NODE ? (const char *) n->data.scalar.value : NULL;
}

bool yaml_is_null(const yaml_node_t *n) {
        const char *s = yaml_scalar(n);
        return s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
               (!*s || streq(s, "~") || streq(s, "null") || streq(s, "Null") || streq(s, "NULL"));
}

yaml_node_t *yaml_map_get_raw(YamlWalk *w, yaml_node_t *map, const char *key) {
        if (!map || map->type != YAML_MAPPING_NODE)
                return NULL;
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
                const char *k = yaml_scalar(yaml_walk_node(w, p->key));
                if (k && streq(k, key))
                        return yaml_walk_node(w, p->value);
        }
        return NULL;
}

yaml_node_t *yaml_map_get(YamlWalk *w, yaml_node_t *map, const char *key) {
        yaml_node_t *v = yaml_map_get_raw(w, map, key);
        return yaml_is_null(v) ? NULL : v;
}

int yaml_fail(YamlWalk *w, const yaml_node_t *n, const char *field, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        return conf_error_set(w->err, w->file, yaml_node_line(n), field, "%s", msg ?: "invalid");
}

int yaml_get_scalar(YamlWalk *w, yaml_node_t *map, const char *key, const char *field, bool required,
                    const char **ret) {
        yaml_node_t *n = yaml_map_get(w, map, key);
        if (!n) {
                if (required)
                        return yaml_fail(w, map, field, "required field is missing");
                *ret = NULL;
                return 0;
        }
        if (n->type != YAML_SCALAR_NODE)
                return yaml_fail(w, n, field, "expected a string value");
        *ret = yaml_scalar(n);
        return 0;
}

int yaml_walk_documents(const char *file, const char *text, size_t len, ConfError *e, YamlDocumentFn fn,
                        void *userdata) {
        yaml_parser_t parser;
        int r = 0;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);
        for (;;) {
                yaml_document_t doc;
                YamlWalk w = { .doc = &doc, .file = file, .err = e };

                if (!yaml_parser_load(&parser, &doc)) {
                        if (parser.error == YAML_MEMORY_ERROR)
                                r = -ENOMEM;
                        else
                                r = conf_error_set(e, file, (unsigned) parser.problem_mark.line + 1, NULL,
                                                   "YAML syntax error: %s%s%s", parser.problem ?: "unknown",
                                                   parser.context ? " " : "", parser.context ?: "");
                        break;
                }
                yaml_node_t *root = yaml_document_get_root_node(&doc);
                if (!root) { /* end of stream */
                        yaml_document_delete(&doc);
                        break;
                }
                r = fn(&w, root, userdata);
                yaml_document_delete(&doc);
                if (r != 0)
                        break;
        }
        yaml_parser_delete(&parser);
        return r < 0 ? r : 0;
}
