/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading the Resiliency set of the registry: every `kind: Resiliency`
 * document of <config>/components/ and <config>/resiliency/ (*.yaml, *.yml,
 * file order), as daprd reads them from its resources directories.
 *
 * A reload builds a new set and swaps it in whole. When any Resiliency
 * document is now broken and a set was running, the running set stays as it
 * is (its policies and its breakers' state) and the error says so: a typo in
 * one policy must not silently drop every other one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/fileio.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "registry.h"
#include "resiliency.h"
#include "../util/fnv.h"

#define RESILIENCY_FILE_MAX (1024 * 1024)

typedef struct {
        Resiliency *set;
        ConfError errors;  /* every bad document, in order */
        bool oom;
} Load;

static void on_found(ResiliencyDoc *d, void *userdata) {
        Load *l = userdata;
        if (resiliency_add(l->set, d) < 0)
                l->oom = true;
}

static void on_error(const ConfError *e, void *userdata) {
        Load *l = userdata;
        for (; e; e = e->next)
                if (conf_error_append(&l->errors, e->file, e->line, e->field, "%s", e->message) == -ENOMEM)
                        l->oom = true;
}

int registry_reload_resiliency(Registry *r) {
        static const char *const suffixes[] = { ".yaml", ".yml", NULL };
        static const char *const dirs[] = { "components", "resiliency" };
        Load l = { .set = resiliency_new() };
        int ret = 0;

        if (!l.set)
                return -ENOMEM;
        l.set->digest = FNV64_OFFSET; /* enough to tell "the same files as last time" */
        for (size_t i = 0; i < ELEMENTSOF(dirs) && !l.oom; i++) {
                _cleanup_strv_free_ char **files = NULL;
                _cleanup_free_ char *dir = NULL;
                if (asprintf(&dir, "%s/%s", r->config_dir, dirs[i]) < 0) {
                        l.oom = true;
                        break;
                }
                if (dir_list_sorted(dir, suffixes, &files) == -ENOMEM)
                        l.oom = true;
                for (char **f = files; f && *f && !l.oom; f++) {
                        _cleanup_free_ char *text = NULL;
                        size_t len;
                        /* unreadable files are the component loader's to report (components/) */
                        if (read_full_file(*f, RESILIENCY_FILE_MAX, &text, &len) < 0)
                                continue;
                        if (!strstr(text, "Resiliency"))
                                continue; /* no need to load a component file's node tree twice */
                        l.set->digest = fnv64_add(l.set->digest, *f, strlen(*f) + 1);
                        l.set->digest = fnv64_add(l.set->digest, text, len);
                        if (resiliency_parse(*f, text, len, on_found, on_error, &l) == -ENOMEM)
                                l.oom = true;
                }
        }
        if (l.oom) {
                ret = -ENOMEM;
                goto finish;
        }
        if (r->resiliency && r->resiliency->digest == l.set->digest) {
                /* nothing changed: the running set stays, and with it the breakers' state */
                if (l.errors.message)
                        registry_log_conf_error(r, &l.errors);
                goto finish;
        }
        if (l.errors.message) {
                l.set->n_errors = 0;
                for (const ConfError *e = &l.errors; e; e = e->next)
                        l.set->n_errors++;
                if (r->resiliency && r->resiliency->n_docs > 0) {
                        registry_log_conf_kept(r, &l.errors);
                        goto finish; /* the running policies stay */
                }
                registry_log_conf_error(r, &l.errors);
        }
        if (l.set->n_docs > 0 || (r->resiliency && r->resiliency->n_docs > 0))
                log_info("Resiliency: %zu documents loaded.", l.set->n_docs);
        resiliency_unref(r->resiliency);
        r->resiliency = TAKE_PTR(l.set);
finish:
        resiliency_unref(l.set);
        conf_error_done(&l.errors);
        return ret;
}
