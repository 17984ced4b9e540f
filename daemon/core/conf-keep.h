/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ConfKeep: the "last good version" rule of a reload, for loaders of files
 * that hold several named documents (components/, subscriptions/).
 *
 * While a file is read, each bad document is noted with the name it gives
 * itself (metadata.name) or with none. After the file, the running objects
 * that must stay are picked:
 *
 *  - a bad document that names itself keeps the running object of that
 *    name from the same file (per document);
 *  - a bad document that names nothing (a YAML syntax error, which also
 *    leaves the rest of the file unread; a document that is no mapping;
 *    one without metadata.name) makes the whole file broken: every running
 *    object from that file stays and what was read from it this time is
 *    dropped (per file).
 *
 * A file with no running object (first start, a new file) has no previous
 * version: its errors are errors as before and its good documents load.
 * Pure bookkeeping: ConfKeep never logs, owns no object and never frees one.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct ConfKeep {
        /* Set by the caller before the first file: the running objects (borrowed, entries may be NULL). */
        void *const *old;
        size_t n_old;
        const char *(*file_of)(const void *o);
        const char *(*name_of)(const void *o); /* NULL when the object has no name */

        /* State of the file being read. */
        const char *file;  /* borrowed from the caller for the file's duration */
        bool whole;        /* an error that names nothing: the file as a whole is broken */
        char **names;      /* bad documents that named themselves (strv) */
} ConfKeep;

/* Starts a file: forgets what was noted for the previous one. file is borrowed until the next call. */
void conf_keep_begin_file(ConfKeep *k, const char *file);

/*
 * Notes a bad document of the current file; name is its metadata.name or NULL.
 * Returns 1 when a previous version of it (or of the whole file) is running and
 * will be kept, 0 when there is none (the error stands as at first start), -ENOMEM.
 */
int conf_keep_note_error(ConfKeep *k, const char *name);

/*
 * Ends the current file. When k->whole is true the whole file's previous
 * version is kept: the caller drops everything it loaded from this file now,
 * before this call. Then calls keep(i, userdata) for every index i into old
 * of a running object to carry into the new set, in their old order.
 * has_new(name, userdata) says whether this load already has a good object
 * of that name from this file (a named bad document then keeps nothing).
 */
void conf_keep_end_file(ConfKeep *k, bool (*has_new)(const char *name, void *userdata),
                        void (*keep)(size_t i, void *userdata), void *userdata);

/* Frees what conf_keep_note_error() collected. */
void conf_keep_done(ConfKeep *k);
