/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The symbol table behind dl-curl.h. Add a function here and in the header
 * when a caller starts using it: a missing entry fails the build (the sym_
 * pointer is undeclared), never the daemon at run time.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "../util/cleanup.h"
#include "dl-curl.h"
#include "dl-engine.h"

DLSYM_PROTOTYPE(curl_easy_cleanup) = NULL;
DLSYM_PROTOTYPE(curl_easy_getinfo) = NULL;
DLSYM_PROTOTYPE(curl_easy_init) = NULL;
DLSYM_PROTOTYPE(curl_easy_setopt) = NULL;
DLSYM_PROTOTYPE(curl_easy_strerror) = NULL;
DLSYM_PROTOTYPE(curl_global_init) = NULL;
DLSYM_PROTOTYPE(curl_multi_add_handle) = NULL;
DLSYM_PROTOTYPE(curl_multi_assign) = NULL;
DLSYM_PROTOTYPE(curl_multi_cleanup) = NULL;
DLSYM_PROTOTYPE(curl_multi_info_read) = NULL;
DLSYM_PROTOTYPE(curl_multi_init) = NULL;
DLSYM_PROTOTYPE(curl_multi_perform) = NULL;
DLSYM_PROTOTYPE(curl_multi_poll) = NULL;
DLSYM_PROTOTYPE(curl_multi_remove_handle) = NULL;
DLSYM_PROTOTYPE(curl_multi_setopt) = NULL;
DLSYM_PROTOTYPE(curl_multi_socket_action) = NULL;
DLSYM_PROTOTYPE(curl_multi_strerror) = NULL;
DLSYM_PROTOTYPE(curl_slist_append) = NULL;
DLSYM_PROTOTYPE(curl_slist_free_all) = NULL;
DLSYM_PROTOTYPE(curl_version_info) = NULL;

static const DlSym curl_syms[] = {
        DLSYM(curl_easy_cleanup),
        DLSYM(curl_easy_getinfo),
        DLSYM(curl_easy_init),
        DLSYM(curl_easy_setopt),
        DLSYM(curl_easy_strerror),
        DLSYM(curl_global_init),
        DLSYM(curl_multi_add_handle),
        DLSYM(curl_multi_assign),
        DLSYM(curl_multi_cleanup),
        DLSYM(curl_multi_info_read),
        DLSYM(curl_multi_init),
        DLSYM(curl_multi_perform),
        DLSYM(curl_multi_poll),
        DLSYM(curl_multi_remove_handle),
        DLSYM(curl_multi_setopt),
        DLSYM(curl_multi_socket_action),
        DLSYM(curl_multi_strerror),
        DLSYM(curl_slist_append),
        DLSYM(curl_slist_free_all),
        DLSYM(curl_version_info),
};

static DlEngine curl_engine = {
        .soname = DLOPEN_LIBCURL_SONAME,
        .package = DLOPEN_LIBCURL_PACKAGE,
        .syms = curl_syms,
        .n_syms = ELEMENTSOF(curl_syms),
};

int dlopen_curl(const char *who, char **reterr_msg) {
        static bool initialised = false;
        CURLcode cc;
        int r;

        r = dl_engine_load(&curl_engine, who, reterr_msg);
        if (r < 0 || initialised)
                return r;
        /* Not thread-safe in older libcurl: the loop thread does it once, before any worker could. */
        cc = sym_curl_global_init(CURL_GLOBAL_DEFAULT);
        if (cc != CURLE_OK) {
                if (reterr_msg && asprintf(reterr_msg, "%s: curl_global_init failed: %s", who,
                                           sym_curl_easy_strerror(cc)) < 0) {
                        *reterr_msg = NULL;
                        return -ENOMEM;
                }
                return -EOPNOTSUPP;
        }
        initialised = true;
        return 0;
}
