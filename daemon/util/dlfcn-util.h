/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading an optional library at run time: dlopen() by soname and resolve a
 * table of symbols into function pointers, all or nothing.
 *
 * Why: mooringd maps libpq, hiredis and libmosquitto (and the TLS, Kerberos
 * and LDAP libraries they pull in) only when a component needs them, so a
 * host that uses the embedded SQLite stores pays neither their pages nor
 * their start-up relocations, and a host without them installed still runs.
 * The engine loaders in drivers/dl-*.c build on this.
 *
 * Guarantees:
 * - dlopen_syms() either resolves every symbol of the table and keeps the
 *   library loaded for the rest of the process (it is never closed: code and
 *   callbacks of the library may still be referenced), or leaves every
 *   pointer of the table NULL, closes what it opened, and explains why.
 * - A failure is not remembered: the next call tries again, so installing
 *   the missing package and reloading the daemon is enough.
 * - Quiet (returns errors, never logs), like the rest of util/.
 * - Meant for the event-loop thread: the table is written without locks.
 */
#pragma once

#include <stddef.h>

/*
 * One entry of a symbol table: the symbol's name and where its address goes.
 * Declare the pointer with the library's own prototype so every call site is
 * type-checked against the header:
 *     extern typeof(PQfinish) *sym_PQfinish;
 * and list it with DLSYM(PQfinish).
 */
typedef struct DlSym {
        const char *name;
        void **fn;
} DlSym;

#define DLSYM_PROTOTYPE(symbol) typeof(symbol) *sym_##symbol
#define DLSYM(symbol) { #symbol, (void **) &sym_##symbol }

/*
 * Loads soname (if *dl is NULL) and resolves the n_syms entries of syms.
 * Returns 0 when the library is loaded and every pointer set (also when *dl
 * was set already: nothing is done then). Returns -EOPNOTSUPP when the
 * library cannot be loaded or lacks a symbol, with *reterr_msg set to
 * "dlopen <soname>: <dlerror text>" or "<soname> lacks '<symbol>': ...";
 * -ENOMEM on OOM (*reterr_msg NULL). reterr_msg may be NULL.
 */
int dlopen_syms(void **dl, const char *soname, const DlSym *syms, size_t n_syms, char **reterr_msg);
