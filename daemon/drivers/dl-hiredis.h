/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hiredis, loaded at the first open() of a Redis component. Only its reply
 * parser (redisReader) and its command formatter are used: the connection
 * itself is RedisConn's (redis-common.h), which TLS needs.
 *
 * Call sites use sym_<function>(), declared with the library's own prototype
 * (typeof), so the compiler checks every call against the header as if the
 * library were linked. The pointers are NULL until dlopen_hiredis() has
 * succeeded, which each driver using them ensures first thing in its open().
 */
#pragma once

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "../util/dlfcn-util.h"

extern DLSYM_PROTOTYPE(freeReplyObject);
extern DLSYM_PROTOTYPE(redisFormatCommandArgv);
extern DLSYM_PROTOTYPE(redisFreeCommand);
extern DLSYM_PROTOTYPE(redisReaderCreate);
extern DLSYM_PROTOTYPE(redisReaderFeed);
extern DLSYM_PROTOTYPE(redisReaderFree);
extern DLSYM_PROTOTYPE(redisReaderGetReply);

/*
 * Loads the library the first time (see dl_engine_load()); who is the
 * component type asking, for the error message. Returns 0, -EOPNOTSUPP with
 * *reterr_msg set, or -ENOMEM.
 */
int dlopen_hiredis(const char *who, char **reterr_msg);
