/* SPDX-License-Identifier: Apache-2.0 */
/* The symbol table behind dl-avahi.h (see dl-libpq.c). */
#include "../util/cleanup.h"
#include "dl-avahi.h"
#include "dl-engine.h"

DLSYM_PROTOTYPE(avahi_alternative_service_name) = NULL;
DLSYM_PROTOTYPE(avahi_client_errno) = NULL;
DLSYM_PROTOTYPE(avahi_client_free) = NULL;
DLSYM_PROTOTYPE(avahi_client_new) = NULL;
DLSYM_PROTOTYPE(avahi_entry_group_add_service_strlst) = NULL;
DLSYM_PROTOTYPE(avahi_entry_group_commit) = NULL;
DLSYM_PROTOTYPE(avahi_entry_group_free) = NULL;
DLSYM_PROTOTYPE(avahi_entry_group_new) = NULL;
DLSYM_PROTOTYPE(avahi_entry_group_reset) = NULL;
DLSYM_PROTOTYPE(avahi_entry_group_update_service_txt_strlst) = NULL;
DLSYM_PROTOTYPE(avahi_free) = NULL;
DLSYM_PROTOTYPE(avahi_service_browser_free) = NULL;
DLSYM_PROTOTYPE(avahi_service_browser_new) = NULL;
DLSYM_PROTOTYPE(avahi_service_resolver_free) = NULL;
DLSYM_PROTOTYPE(avahi_service_resolver_new) = NULL;
DLSYM_PROTOTYPE(avahi_strerror) = NULL;
DLSYM_PROTOTYPE(avahi_string_list_add_pair) = NULL;
DLSYM_PROTOTYPE(avahi_string_list_free) = NULL;
DLSYM_PROTOTYPE(avahi_string_list_get_next) = NULL;
DLSYM_PROTOTYPE(avahi_string_list_get_pair) = NULL;

static const DlSym avahi_syms[] = {
        DLSYM(avahi_alternative_service_name),
        DLSYM(avahi_client_errno),
        DLSYM(avahi_client_free),
        DLSYM(avahi_client_new),
        DLSYM(avahi_entry_group_add_service_strlst),
        DLSYM(avahi_entry_group_commit),
        DLSYM(avahi_entry_group_free),
        DLSYM(avahi_entry_group_new),
        DLSYM(avahi_entry_group_reset),
        DLSYM(avahi_entry_group_update_service_txt_strlst),
        DLSYM(avahi_free),
        DLSYM(avahi_service_browser_free),
        DLSYM(avahi_service_browser_new),
        DLSYM(avahi_service_resolver_free),
        DLSYM(avahi_service_resolver_new),
        DLSYM(avahi_strerror),
        DLSYM(avahi_string_list_add_pair),
        DLSYM(avahi_string_list_free),
        DLSYM(avahi_string_list_get_next),
        DLSYM(avahi_string_list_get_pair),
};

static DlEngine avahi_engine = {
        .soname = DLOPEN_AVAHI_SONAME,
        .package = DLOPEN_AVAHI_PACKAGE,
        .syms = avahi_syms,
        .n_syms = ELEMENTSOF(avahi_syms),
};

int dlopen_avahi(const char *who, char **reterr_msg) {
        return dl_engine_load(&avahi_engine, who, reterr_msg);
}
