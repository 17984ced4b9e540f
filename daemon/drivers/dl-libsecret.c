/* SPDX-License-Identifier: Apache-2.0 */
/* The symbol table behind dl-libsecret.h (see dl-hiredis.c). */
#include "../util/cleanup.h"
#include "dl-engine.h"
#include "dl-libsecret.h"

DLSYM_PROTOTYPE(secret_password_lookupv_sync) = NULL;
DLSYM_PROTOTYPE(secret_password_searchv_sync) = NULL;
DLSYM_PROTOTYPE(secret_password_free) = NULL;
DLSYM_PROTOTYPE(secret_retrievable_get_attributes) = NULL;
DLSYM_PROTOTYPE(secret_retrievable_retrieve_secret_sync) = NULL;
DLSYM_PROTOTYPE(secret_service_disconnect) = NULL;
DLSYM_PROTOTYPE(secret_value_get) = NULL;
DLSYM_PROTOTYPE(secret_value_unref) = NULL;
DLSYM_PROTOTYPE(g_error_free) = NULL;
DLSYM_PROTOTYPE(g_hash_table_insert) = NULL;
DLSYM_PROTOTYPE(g_hash_table_lookup) = NULL;
DLSYM_PROTOTYPE(g_hash_table_new) = NULL;
DLSYM_PROTOTYPE(g_hash_table_unref) = NULL;
DLSYM_PROTOTYPE(g_list_free_full) = NULL;
DLSYM_PROTOTYPE(g_object_unref) = NULL;
DLSYM_PROTOTYPE(g_str_equal) = NULL;
DLSYM_PROTOTYPE(g_str_hash) = NULL;

static const DlSym libsecret_syms[] = {
        DLSYM(secret_password_lookupv_sync),
        DLSYM(secret_password_searchv_sync),
        DLSYM(secret_password_free),
        DLSYM(secret_retrievable_get_attributes),
        DLSYM(secret_retrievable_retrieve_secret_sync),
        DLSYM(secret_service_disconnect),
        DLSYM(secret_value_get),
        DLSYM(secret_value_unref),
        DLSYM(g_error_free),
        DLSYM(g_hash_table_insert),
        DLSYM(g_hash_table_lookup),
        DLSYM(g_hash_table_new),
        DLSYM(g_hash_table_unref),
        DLSYM(g_list_free_full),
        DLSYM(g_object_unref),
        DLSYM(g_str_equal),
        DLSYM(g_str_hash),
};

static DlEngine libsecret_engine = {
        .soname = DLOPEN_LIBSECRET_SONAME,
        .package = DLOPEN_LIBSECRET_PACKAGE,
        .syms = libsecret_syms,
        .n_syms = ELEMENTSOF(libsecret_syms),
};

int dlopen_libsecret(const char *who, char **reterr_msg) {
        return dl_engine_load(&libsecret_engine, who, reterr_msg);
}
