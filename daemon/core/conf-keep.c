/* SPDX-License-Identifier: Apache-2.0 */
/* See conf-keep.h. */
#include <errno.h>
#include <stdlib.h>

#include "../util/strv.h"
#include "conf-keep.h"

void conf_keep_begin_file(ConfKeep *k, const char *file) {
        k->file = file;
        k->whole = false;
        k->names = strv_free(k->names);
}

/* Is there a running object from the current file (with that name, or any when name is NULL)? */
static bool has_previous(const ConfKeep *k, const char *name) {
        for (size_t i = 0; i < k->n_old; i++) {
                const void *o = k->old[i];
                if (!o || !streq_ptr(k->file_of(o), k->file))
                        continue;
                if (!name)
                        return true;
                if (streq_ptr(k->name_of(o), name))
                        return true;
        }
        return false;
}

int conf_keep_note_error(ConfKeep *k, const char *name) {
        /* Once the file is broken as a whole, every later error is covered by that. */
        if (k->whole)
                return 1;
        if (!name || !*name) {
                if (!has_previous(k, NULL))
                        return 0;
                k->whole = true;
                return 1;
        }
        if (!has_previous(k, name))
                return 0;
        if (!strv_contains(k->names, name) && strv_extend(&k->names, name) < 0)
                return -ENOMEM;
        return 1;
}

void conf_keep_end_file(ConfKeep *k, bool (*has_new)(const char *name, void *userdata),
                        void (*keep)(size_t i, void *userdata), void *userdata) {
        bool whole = k->whole;

        for (size_t i = 0; i < k->n_old; i++) {
                const void *o = k->old[i];
                const char *name;
                if (!o || !streq_ptr(k->file_of(o), k->file))
                        continue;
                name = k->name_of(o);
                if (whole)
                        keep(i, userdata);
                /* Two documents of one name, one good and one bad: the good one is the new version. */
                else if (name && strv_contains(k->names, name) && !has_new(name, userdata))
                        keep(i, userdata);
        }
        conf_keep_begin_file(k, NULL);
}

void conf_keep_done(ConfKeep *k) {
        k->names = strv_free(k->names);
}
