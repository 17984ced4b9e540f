/* SPDX-License-Identifier: Apache-2.0 */
/* See file-parse.h. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/cleanup.h"
#include "file-parse.h"

/* A growing path "a<sep>b<sep>0" while walking the tree. */
typedef struct Path {
        char *buf;
        size_t len, allocated;
} Path;

static int path_push(Path *p, const char *sep, const char *part, size_t *ret_old) {
        size_t sl = p->len > 0 ? strlen(sep) : 0, pl = strlen(part);
        size_t need = p->len + sl + pl + 1;
        if (need > p->allocated) {
                size_t na = MAX(need, p->allocated * 2);
                char *n = realloc(p->buf, na);
                if (!n)
                        return -ENOMEM;
                p->buf = n;
                p->allocated = na;
        }
        *ret_old = p->len;
        if (sl)
                memcpy(p->buf + p->len, sep, sl);
        memcpy(p->buf + p->len + sl, part, pl);
        p->len += sl + pl;
        p->buf[p->len] = 0;
        return 0;
}

typedef struct Walk {
        const char *sep;
        const char *secret;  /* multiValued: the top-level secret the keys belong to; NULL otherwise */
        SecretData *out;
        char **reterr_msg;
} Walk;

static int add_leaf(Walk *w, const char *path, json_t *v) {
        _cleanup_free_ char *text = NULL;
        const char *s;
        size_t len;
        const char *name = w->secret ?: path;

        if (secret_data_find(w->out, name, path))
                return *w->reterr_msg = secret_msg("secret name '%s' appears twice once nested names are "
                                                   "joined with '%s'", path, w->sep),
                       -EINVAL;
        if (json_is_string(v)) {
                s = json_string_value(v);
                len = json_string_length(v);
        } else {
                text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                if (!text)
                        return -ENOMEM;
                s = text;
                len = strlen(text);
        }
        return secret_data_add(w->out, name, path, s, len);
}

static int walk(Walk *w, Path *p, json_t *v) {
        size_t old;
        int r;

        if (json_is_object(v)) {
                const char *k;
                json_t *c;
                json_object_foreach(v, k, c) {
                        r = path_push(p, w->sep, k, &old);
                        if (r < 0)
                                return r;
                        r = walk(w, p, c);
                        p->len = old;
                        p->buf[old] = 0;
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        if (json_is_array(v)) {
                size_t i;
                json_t *c;
                json_array_foreach(v, i, c) {
                        char idx[24];
                        snprintf(idx, sizeof idx, "%zu", i);
                        r = path_push(p, w->sep, idx, &old);
                        if (r < 0)
                                return r;
                        r = walk(w, p, c);
                        p->len = old;
                        p->buf[old] = 0;
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        /* an empty key or an empty path: the value has no name to be asked for */
        return add_leaf(w, p->buf ? p->buf : "", v);
}

static const char *error_kind(const json_error_t *e) {
        switch (json_error_code(e)) {
        case json_error_out_of_memory:
                return "out of memory";
        case json_error_stack_overflow:
                return "nested too deeply";
        case json_error_invalid_utf8:
                return "not UTF-8";
        case json_error_premature_end_of_input:
                return "the text ends too early";
        case json_error_end_of_input_expected:
                return "text after the object";
        case json_error_null_character:
        case json_error_null_byte_in_key:
                return "a NUL character";
        case json_error_duplicate_key:
                return "a key appears twice in one object";
        case json_error_numeric_overflow:
                return "a number out of range";
        default:
                return "invalid syntax";
        }
}

int secret_file_parse(const char *text, size_t len, const char *separator, bool multi_valued, SecretData *ret,
                      char **reterr_msg) {
        _cleanup_(secret_data_done) SecretData d = {};
        json_error_t jerr;
        json_t *root;
        Path p = {};
        int r = 0;

        if (len > SECRET_FILE_MAX)
                return *reterr_msg = secret_msg("the secrets file is larger than %d bytes", SECRET_FILE_MAX), -EINVAL;
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                /* jansson's own text quotes the input near the error ("invalid token near 'hunter2'"): a
                 * value could reach the log through it, so only the position and the kind are told */
                return *reterr_msg = secret_msg("the secrets file is not valid JSON: line %d column %d: %s",
                                                jerr.line, jerr.column, error_kind(&jerr)),
                       -EINVAL;
        if (!json_is_object(root)) {
                json_decref(root);
                return *reterr_msg = secret_msg("the secrets file must hold a JSON object"), -EINVAL;
        }
        if (!multi_valued) {
                Walk w = { .sep = separator, .out = &d, .reterr_msg = reterr_msg };
                r = walk(&w, &p, root);
        } else {
                const char *k;
                json_t *v;
                json_object_foreach(root, k, v) {
                        if (json_is_string(v))
                                r = secret_data_add(&d, k, k, json_string_value(v), json_string_length(v));
                        else if (json_is_object(v)) {
                                Walk w = { .sep = separator, .secret = k, .out = &d, .reterr_msg = reterr_msg };
                                p.len = 0;
                                if (p.buf)
                                        p.buf[0] = 0;
                                r = walk(&w, &p, v);
                        }
                        if (r < 0)
                                break;
                }
        }
        if (p.buf)
                explicit_wipe(p.buf, p.allocated);
        free(p.buf);
        /* jansson kept copies of the values: util/wipe-alloc.h makes the daemon's jansson wipe on free */
        json_decref(root);
        if (r < 0)
                return r;
        secret_data_sort(&d);
        *ret = d;
        d = (SecretData) {};
        return 0;
}
