/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The symbol table behind dl-hiredis.h. Add a function here and in the header
 * when a driver starts calling it: a missing entry fails the build (the
 * sym_ pointer is undeclared), never the daemon at run time.
 */
#include "../util/cleanup.h"
#include "dl-engine.h"
#include "dl-hiredis.h"

DLSYM_PROTOTYPE(redisAsyncCommandArgv) = NULL;
DLSYM_PROTOTYPE(redisAsyncConnect) = NULL;
DLSYM_PROTOTYPE(redisAsyncConnectUnix) = NULL;
DLSYM_PROTOTYPE(redisAsyncFree) = NULL;
DLSYM_PROTOTYPE(redisAsyncHandleRead) = NULL;
DLSYM_PROTOTYPE(redisAsyncHandleWrite) = NULL;
DLSYM_PROTOTYPE(redisAsyncSetConnectCallback) = NULL;

static const DlSym hiredis_syms[] = {
        DLSYM(redisAsyncCommandArgv),
        DLSYM(redisAsyncConnect),
        DLSYM(redisAsyncConnectUnix),
        DLSYM(redisAsyncFree),
        DLSYM(redisAsyncHandleRead),
        DLSYM(redisAsyncHandleWrite),
        DLSYM(redisAsyncSetConnectCallback),
};

static DlEngine hiredis_engine = {
        .soname = DLOPEN_HIREDIS_SONAME,
        .package = DLOPEN_HIREDIS_PACKAGE,
        .syms = hiredis_syms,
        .n_syms = ELEMENTSOF(hiredis_syms),
};

int dlopen_hiredis(const char *who, char **reterr_msg) {
        return dl_engine_load(&hiredis_engine, who, reterr_msg);
}
