/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libavahi-client (and, through it, libavahi-common), loaded when
 * [Cluster] Membership=mdns starts: see dl-libpq.h for the mechanism. The
 * daemon never links it, so a host without Avahi runs every other engine.
 */
#pragma once

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-client/publish.h>
#include <avahi-common/alternative.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/strlst.h>

#include "../util/dlfcn-util.h"

extern DLSYM_PROTOTYPE(avahi_alternative_service_name);
extern DLSYM_PROTOTYPE(avahi_client_errno);
extern DLSYM_PROTOTYPE(avahi_client_free);
extern DLSYM_PROTOTYPE(avahi_client_new);
extern DLSYM_PROTOTYPE(avahi_entry_group_add_service_strlst);
extern DLSYM_PROTOTYPE(avahi_entry_group_commit);
extern DLSYM_PROTOTYPE(avahi_entry_group_free);
extern DLSYM_PROTOTYPE(avahi_entry_group_new);
extern DLSYM_PROTOTYPE(avahi_entry_group_reset);
extern DLSYM_PROTOTYPE(avahi_entry_group_update_service_txt_strlst);
extern DLSYM_PROTOTYPE(avahi_free);
extern DLSYM_PROTOTYPE(avahi_service_browser_free);
extern DLSYM_PROTOTYPE(avahi_service_browser_new);
extern DLSYM_PROTOTYPE(avahi_service_resolver_free);
extern DLSYM_PROTOTYPE(avahi_service_resolver_new);
extern DLSYM_PROTOTYPE(avahi_strerror);
extern DLSYM_PROTOTYPE(avahi_string_list_add_pair);
extern DLSYM_PROTOTYPE(avahi_string_list_free);
extern DLSYM_PROTOTYPE(avahi_string_list_get_next);
extern DLSYM_PROTOTYPE(avahi_string_list_get_pair);

/* Loads the library the first time (see dl_engine_load()). 0, -EOPNOTSUPP with *reterr_msg, -ENOMEM. */
int dlopen_avahi(const char *who, char **reterr_msg);
