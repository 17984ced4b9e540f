/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON secrets file of secretstores.local.file, as Dapr reads it:
 *
 * - single-valued (default): nested objects and arrays are flattened, their
 *   keys joined with the nested separator (":" by default), so
 *   {"db": {"user": "u", "hosts": ["a"]}} holds secrets "db:user" and
 *   "db:hosts:0", each answered as {name: value};
 * - multiValued: each top-level string is a secret {name: value}, each
 *   top-level object is one secret whose keys are its (flattened) members;
 *   other top-level values are ignored, as Dapr ignores them.
 *
 * Strings are taken as they are; numbers, booleans and null as their JSON
 * text ("5", "true", "null"). daprd formats those with Go's %s and answers
 * text such as "%!s(float64=5)": mooring gives the number instead.
 * Two paths that flatten to the same name are an error (daprd silently stops
 * reading the file there; an error that says where is kinder).
 *
 * Quiet; never puts a value into the error message.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "driver.h"

#define SECRET_FILE_MAX (1024 * 1024)

/* Parses text[0..len). 0 with *ret filled (sorted), -EINVAL with *reterr_msg, or -ENOMEM. */
int secret_file_parse(const char *text, size_t len, const char *separator, bool multi_valued, SecretData *ret,
                      char **reterr_msg);
