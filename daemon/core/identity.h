/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Caller identity from the kernel's view of the peer: the systemd unit a
 * process runs in names its app ("mooring-app@<app-id>.service").
 */
#pragma once

#include <stdbool.h>

/* True if unit is mooring-app@<valid id>.service; *ret_id (if non-NULL) gets a malloc'd copy. */
bool identity_app_from_unit(const char *unit, char **ret_id);
