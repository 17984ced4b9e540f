/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hiredis, loaded at the first open() of a state.redis or pubsub.redis component.
 *
 * Call sites use sym_<function>(), declared with the library's own prototype
 * (typeof), so the compiler checks every call against the header as if the
 * library were linked. The pointers are NULL until dlopen_hiredis() has
 * succeeded, which each driver using them ensures first thing in its open().
 */
#pragma once

#include <hiredis/async.h>

#include "../util/dlfcn-util.h"

extern DLSYM_PROTOTYPE(redisAsyncCommandArgv);
extern DLSYM_PROTOTYPE(redisAsyncConnect);
extern DLSYM_PROTOTYPE(redisAsyncConnectUnix);
extern DLSYM_PROTOTYPE(redisAsyncFree);
extern DLSYM_PROTOTYPE(redisAsyncHandleRead);
extern DLSYM_PROTOTYPE(redisAsyncHandleWrite);
extern DLSYM_PROTOTYPE(redisAsyncSetConnectCallback);

/*
 * Loads the library the first time (see dl_engine_load()); who is the
 * component type asking, for the error message. Returns 0, -EOPNOTSUPP with
 * *reterr_msg set, or -ENOMEM.
 */
int dlopen_hiredis(const char *who, char **reterr_msg);
