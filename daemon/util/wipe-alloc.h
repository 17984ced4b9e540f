/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jansson's allocator for the daemon: memory jansson frees is overwritten
 * first. Secret values pass through jansson (the secrets file is parsed by
 * it, answers are built with it), and jansson frees its strings without
 * wiping them; this closes that gap for every object at the cost of one
 * memset per free. Installed once at start, before any JSON is made.
 */
#pragma once

void json_wipe_alloc_install(void);
