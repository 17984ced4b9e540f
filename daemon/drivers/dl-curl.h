/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcurl, loaded at the first use by whoever talks to outside URLs
 * (bindings.http; later the trace exporters), never linked: a daemon that
 * calls no outside URL maps neither libcurl nor its TLS, HTTP/2, SSH, LDAP
 * and Kerberos chains.
 *
 * Call sites use sym_<function>(), declared with the library's own prototype
 * (typeof), so the compiler checks every call against curl/curl.h as if the
 * library were linked. The pointers are NULL until dlopen_curl() has
 * succeeded. dlopen_curl() also runs curl_global_init() once, on the loop
 * thread, before any other thread of ours could call into libcurl.
 *
 * curl-event.h drives easy handles on the daemon's sd-event loop.
 */
#pragma once

#include <curl/curl.h>

#include "../util/dlfcn-util.h"

extern DLSYM_PROTOTYPE(curl_easy_cleanup);
extern DLSYM_PROTOTYPE(curl_easy_getinfo);
extern DLSYM_PROTOTYPE(curl_easy_init);
extern DLSYM_PROTOTYPE(curl_easy_setopt);
extern DLSYM_PROTOTYPE(curl_easy_strerror);
extern DLSYM_PROTOTYPE(curl_global_init);
extern DLSYM_PROTOTYPE(curl_multi_add_handle);
extern DLSYM_PROTOTYPE(curl_multi_assign);
extern DLSYM_PROTOTYPE(curl_multi_cleanup);
extern DLSYM_PROTOTYPE(curl_multi_info_read);
extern DLSYM_PROTOTYPE(curl_multi_init);
extern DLSYM_PROTOTYPE(curl_multi_perform);
extern DLSYM_PROTOTYPE(curl_multi_poll);
extern DLSYM_PROTOTYPE(curl_multi_remove_handle);
extern DLSYM_PROTOTYPE(curl_multi_setopt);
extern DLSYM_PROTOTYPE(curl_multi_socket_action);
extern DLSYM_PROTOTYPE(curl_multi_strerror);
extern DLSYM_PROTOTYPE(curl_slist_append);
extern DLSYM_PROTOTYPE(curl_slist_free_all);
extern DLSYM_PROTOTYPE(curl_version_info);

/*
 * Loads the library the first time (see dl_engine_load()) and initialises it
 * once; who names the user asking ("bindings.http"), for the error message.
 * Returns 0, -EOPNOTSUPP with *reterr_msg set (library missing or its global
 * init failed), or -ENOMEM.
 */
int dlopen_curl(const char *who, char **reterr_msg);
