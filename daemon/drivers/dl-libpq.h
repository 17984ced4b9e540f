/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libpq, loaded at the first open() of a state.postgresql component.
 *
 * Call sites use sym_<function>(), declared with the library's own prototype
 * (typeof), so the compiler checks every call against the header as if the
 * library were linked. The pointers are NULL until dlopen_libpq() has
 * succeeded, which each driver using them ensures first thing in its open().
 */
#pragma once

#include <libpq-fe.h>

#include "../util/dlfcn-util.h"

extern DLSYM_PROTOTYPE(PQclear);
extern DLSYM_PROTOTYPE(PQcmdTuples);
extern DLSYM_PROTOTYPE(PQconnectPoll);
extern DLSYM_PROTOTYPE(PQconnectStartParams);
extern DLSYM_PROTOTYPE(PQconninfoFree);
extern DLSYM_PROTOTYPE(PQconninfoParse);
extern DLSYM_PROTOTYPE(PQconsumeInput);
extern DLSYM_PROTOTYPE(PQerrorMessage);
extern DLSYM_PROTOTYPE(PQfformat);
extern DLSYM_PROTOTYPE(PQfname);
extern DLSYM_PROTOTYPE(PQftype);
extern DLSYM_PROTOTYPE(PQfinish);
extern DLSYM_PROTOTYPE(PQflush);
extern DLSYM_PROTOTYPE(PQfreemem);
extern DLSYM_PROTOTYPE(PQgetResult);
extern DLSYM_PROTOTYPE(PQgetisnull);
extern DLSYM_PROTOTYPE(PQgetlength);
extern DLSYM_PROTOTYPE(PQgetvalue);
extern DLSYM_PROTOTYPE(PQisBusy);
extern DLSYM_PROTOTYPE(PQnfields);
extern DLSYM_PROTOTYPE(PQnotifies);
extern DLSYM_PROTOTYPE(PQntuples);
extern DLSYM_PROTOTYPE(PQresultErrorField);
extern DLSYM_PROTOTYPE(PQresultErrorMessage);
extern DLSYM_PROTOTYPE(PQresultStatus);
extern DLSYM_PROTOTYPE(PQsendPrepare);
extern DLSYM_PROTOTYPE(PQsendQuery);
extern DLSYM_PROTOTYPE(PQsendQueryParams);
extern DLSYM_PROTOTYPE(PQsendQueryPrepared);
extern DLSYM_PROTOTYPE(PQsetNoticeProcessor);
extern DLSYM_PROTOTYPE(PQsetnonblocking);
extern DLSYM_PROTOTYPE(PQsocket);
extern DLSYM_PROTOTYPE(PQstatus);

/*
 * Loads the library the first time (see dl_engine_load()); who is the
 * component type asking, for the error message. Returns 0, -EOPNOTSUPP with
 * *reterr_msg set, or -ENOMEM.
 */
int dlopen_libpq(const char *who, char **reterr_msg);
