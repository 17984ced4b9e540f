/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine libraries of the network drivers (libpq, hiredis, libmosquitto)
 * are loaded with dlopen() by the first component that needs them, never
 * linked: see dl-libpq.h, dl-hiredis.h and dl-mosquitto.h for the symbol
 * tables, util/dlfcn-util.h for the mechanism.
 *
 * dl_engine_load() adds what an operator needs when the library is missing:
 * which component wanted it and which Debian package provides it, e.g.
 *   state.postgresql needs libpq5: apt install libpq5 (dlopen libpq.so.5: <why>)
 * That text becomes the component's load error, which the Manager prints
 * with the component file and line; the rest of the daemon keeps running.
 */
#pragma once

#include <stddef.h>

#include "../util/dlfcn-util.h"

/* One optional engine library: what to load and what to tell when it cannot be. */
typedef struct DlEngine {
        const char *soname;            /* from meson: the soname of the library the build compiled against */
        const char *package;           /* the Debian 12 package that ships it */
        const DlSym *syms;
        size_t n_syms;
        void *dl;                      /* the handle once loaded; never closed */
} DlEngine;

/*
 * Loads e (once; later calls return 0 at once). who names the component type
 * that needs it, for the message. Returns 0, -EOPNOTSUPP with *reterr_msg
 * (malloc'd) naming who, the package and the loader's reason, or -ENOMEM.
 */
int dl_engine_load(DlEngine *e, const char *who, char **reterr_msg);
