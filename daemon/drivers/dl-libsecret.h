/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libsecret (and the GLib functions its API takes), loaded at the first open()
 * of a secretstores.freedesktop.secretservice component (see dl-hiredis.h for
 * how sym_ pointers work). GLib comes in with libsecret; its symbols are
 * resolved through libsecret's handle, which searches its dependencies.
 */
#pragma once

#include <libsecret/secret.h>

#include "../util/dlfcn-util.h"

extern DLSYM_PROTOTYPE(secret_password_lookupv_sync);
extern DLSYM_PROTOTYPE(secret_password_searchv_sync);
extern DLSYM_PROTOTYPE(secret_password_free);
extern DLSYM_PROTOTYPE(secret_retrievable_get_attributes);
extern DLSYM_PROTOTYPE(secret_retrievable_retrieve_secret_sync);
extern DLSYM_PROTOTYPE(secret_service_disconnect);
extern DLSYM_PROTOTYPE(secret_value_get);
extern DLSYM_PROTOTYPE(secret_value_unref);
extern DLSYM_PROTOTYPE(g_error_free);
extern DLSYM_PROTOTYPE(g_hash_table_insert);
extern DLSYM_PROTOTYPE(g_hash_table_lookup);
extern DLSYM_PROTOTYPE(g_hash_table_new);
extern DLSYM_PROTOTYPE(g_hash_table_unref);
extern DLSYM_PROTOTYPE(g_list_free_full);
extern DLSYM_PROTOTYPE(g_object_unref);
extern DLSYM_PROTOTYPE(g_str_equal);
extern DLSYM_PROTOTYPE(g_str_hash);

int dlopen_libsecret(const char *who, char **reterr_msg);
