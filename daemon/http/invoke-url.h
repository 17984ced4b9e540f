/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where a service-invocation request points, from what arrived: the
 * /v1.0/invoke/{app-id}/method/{path...} form, and the target given by
 * header (dapr-app-id, or HTTP Basic credentials "dapr-app-id:<id>") for
 * any other path. Pure functions, fuzzed by tests/fuzz/fuzz-invoke-url.c.
 */
#pragma once

#include <stddef.h>

#define INVOKE_URL_PREFIX "/v1.0/invoke/"

/*
 * path is the request path as sent (escaped, no query string).
 * Returns 0 when it is not under /v1.0/invoke/. Returns 1 for the invoke
 * form: *ret_app gets the unescaped app id (in buf when it fits in size
 * bytes, else malloc'd: free it when it is not buf), *ret_method points
 * into path at what follows the first "/method/" (still escaped, no leading
 * '/'). -EINVAL when it is under /v1.0/invoke/ but names no app or no
 * method ("/v1.0/invoke/b", "/v1.0/invoke/b/method/") or has a bad escape;
 * -ENOMEM.
 */
int invoke_url_parse(const char *path, char *buf, size_t size, char **ret_app, const char **ret_method);

/*
 * The target app named by headers, for paths that match no other route:
 * dapr-app-id's value, else the password of "Authorization: Basic ..." when
 * its user is "dapr-app-id". Either may be NULL. Returns 1 with *ret
 * malloc'd, 0 when none names a target, -ENOMEM.
 */
int invoke_target_from_headers(const char *dapr_app_id, const char *authorization, char **ret);
