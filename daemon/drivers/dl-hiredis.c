/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The symbol table behind dl-hiredis.h. Add a function here and in the header
 * when a driver starts calling it: a missing entry fails the build (the
 * sym_ pointer is undeclared), never the daemon at run time.
 */
#include "../util/cleanup.h"
#include "dl-engine.h"
#include "dl-hiredis.h"

DLSYM_PROTOTYPE(freeReplyObject) = NULL;
DLSYM_PROTOTYPE(redisFormatCommandArgv) = NULL;
DLSYM_PROTOTYPE(redisFreeCommand) = NULL;
DLSYM_PROTOTYPE(redisReaderCreate) = NULL;
DLSYM_PROTOTYPE(redisReaderFeed) = NULL;
DLSYM_PROTOTYPE(redisReaderFree) = NULL;
DLSYM_PROTOTYPE(redisReaderGetReply) = NULL;

static const DlSym hiredis_syms[] = {
        DLSYM(freeReplyObject),
        DLSYM(redisFormatCommandArgv),
        DLSYM(redisFreeCommand),
        DLSYM(redisReaderCreate),
        DLSYM(redisReaderFeed),
        DLSYM(redisReaderFree),
        DLSYM(redisReaderGetReply),
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
