/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libkeyutils, loaded at the first open() of a secretstores.linux.keyring
 * component (see dl-hiredis.h for how sym_ pointers work).
 */
#pragma once

#include <keyutils.h>

#include "../util/dlfcn-util.h"

extern DLSYM_PROTOTYPE(keyctl_describe_alloc);
extern DLSYM_PROTOTYPE(keyctl_get_persistent);
extern DLSYM_PROTOTYPE(keyctl_read_alloc);
extern DLSYM_PROTOTYPE(keyctl_search);

int dlopen_keyutils(const char *who, char **reterr_msg);
