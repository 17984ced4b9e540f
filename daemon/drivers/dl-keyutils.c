/* SPDX-License-Identifier: Apache-2.0 */
/* The symbol table behind dl-keyutils.h (see dl-hiredis.c). */
#include "../util/cleanup.h"
#include "dl-engine.h"
#include "dl-keyutils.h"

DLSYM_PROTOTYPE(keyctl_describe_alloc) = NULL;
DLSYM_PROTOTYPE(keyctl_get_persistent) = NULL;
DLSYM_PROTOTYPE(keyctl_read_alloc) = NULL;
DLSYM_PROTOTYPE(keyctl_search) = NULL;

static const DlSym keyutils_syms[] = {
        DLSYM(keyctl_describe_alloc),
        DLSYM(keyctl_get_persistent),
        DLSYM(keyctl_read_alloc),
        DLSYM(keyctl_search),
};

static DlEngine keyutils_engine = {
        .soname = DLOPEN_KEYUTILS_SONAME,
        .package = DLOPEN_KEYUTILS_PACKAGE,
        .syms = keyutils_syms,
        .n_syms = ELEMENTSOF(keyutils_syms),
};

int dlopen_keyutils(const char *who, char **reterr_msg) {
        return dl_engine_load(&keyutils_engine, who, reterr_msg);
}
