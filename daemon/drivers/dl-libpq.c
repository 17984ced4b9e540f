/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The symbol table behind dl-libpq.h. Add a function here and in the header
 * when a driver starts calling it: a missing entry fails the build (the
 * sym_ pointer is undeclared), never the daemon at run time.
 */
#include "../util/cleanup.h"
#include "dl-engine.h"
#include "dl-libpq.h"

DLSYM_PROTOTYPE(PQclear) = NULL;
DLSYM_PROTOTYPE(PQcmdTuples) = NULL;
DLSYM_PROTOTYPE(PQconnectPoll) = NULL;
DLSYM_PROTOTYPE(PQconnectStartParams) = NULL;
DLSYM_PROTOTYPE(PQconninfoFree) = NULL;
DLSYM_PROTOTYPE(PQconninfoParse) = NULL;
DLSYM_PROTOTYPE(PQconsumeInput) = NULL;
DLSYM_PROTOTYPE(PQerrorMessage) = NULL;
DLSYM_PROTOTYPE(PQfformat) = NULL;
DLSYM_PROTOTYPE(PQfname) = NULL;
DLSYM_PROTOTYPE(PQftype) = NULL;
DLSYM_PROTOTYPE(PQfinish) = NULL;
DLSYM_PROTOTYPE(PQflush) = NULL;
DLSYM_PROTOTYPE(PQfreemem) = NULL;
DLSYM_PROTOTYPE(PQgetResult) = NULL;
DLSYM_PROTOTYPE(PQgetisnull) = NULL;
DLSYM_PROTOTYPE(PQgetlength) = NULL;
DLSYM_PROTOTYPE(PQgetvalue) = NULL;
DLSYM_PROTOTYPE(PQisBusy) = NULL;
DLSYM_PROTOTYPE(PQnfields) = NULL;
DLSYM_PROTOTYPE(PQnotifies) = NULL;
DLSYM_PROTOTYPE(PQntuples) = NULL;
DLSYM_PROTOTYPE(PQresultErrorField) = NULL;
DLSYM_PROTOTYPE(PQresultErrorMessage) = NULL;
DLSYM_PROTOTYPE(PQresultStatus) = NULL;
DLSYM_PROTOTYPE(PQsendPrepare) = NULL;
DLSYM_PROTOTYPE(PQsendQuery) = NULL;
DLSYM_PROTOTYPE(PQsendQueryParams) = NULL;
DLSYM_PROTOTYPE(PQsendQueryPrepared) = NULL;
DLSYM_PROTOTYPE(PQsetNoticeProcessor) = NULL;
DLSYM_PROTOTYPE(PQsetnonblocking) = NULL;
DLSYM_PROTOTYPE(PQsocket) = NULL;
DLSYM_PROTOTYPE(PQstatus) = NULL;

static const DlSym libpq_syms[] = {
        DLSYM(PQclear),
        DLSYM(PQcmdTuples),
        DLSYM(PQconnectPoll),
        DLSYM(PQconnectStartParams),
        DLSYM(PQconninfoFree),
        DLSYM(PQconninfoParse),
        DLSYM(PQconsumeInput),
        DLSYM(PQerrorMessage),
        DLSYM(PQfformat),
        DLSYM(PQfname),
        DLSYM(PQftype),
        DLSYM(PQfinish),
        DLSYM(PQflush),
        DLSYM(PQfreemem),
        DLSYM(PQgetResult),
        DLSYM(PQgetisnull),
        DLSYM(PQgetlength),
        DLSYM(PQgetvalue),
        DLSYM(PQisBusy),
        DLSYM(PQnfields),
        DLSYM(PQnotifies),
        DLSYM(PQntuples),
        DLSYM(PQresultErrorField),
        DLSYM(PQresultErrorMessage),
        DLSYM(PQresultStatus),
        DLSYM(PQsendPrepare),
        DLSYM(PQsendQuery),
        DLSYM(PQsendQueryParams),
        DLSYM(PQsendQueryPrepared),
        DLSYM(PQsetNoticeProcessor),
        DLSYM(PQsetnonblocking),
        DLSYM(PQsocket),
        DLSYM(PQstatus),
};

static DlEngine libpq_engine = {
        .soname = DLOPEN_LIBPQ_SONAME,
        .package = DLOPEN_LIBPQ_PACKAGE,
        .syms = libpq_syms,
        .n_syms = ELEMENTSOF(libpq_syms),
};

int dlopen_libpq(const char *who, char **reterr_msg) {
        return dl_engine_load(&libpq_engine, who, reterr_msg);
}
