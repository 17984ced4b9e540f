/* SPDX-License-Identifier: Apache-2.0 */
/* Route handlers defined outside routes.c, one file per API area. */
#pragma once

#include "router.h"

/* api-state.c: Dapr's state API */
int http_state_save(HttpRequest *r, const RouteMatch *m);
int http_state_get(HttpRequest *r, const RouteMatch *m);
int http_state_delete(HttpRequest *r, const RouteMatch *m);
int http_state_bulk(HttpRequest *r, const RouteMatch *m);
int http_state_transaction(HttpRequest *r, const RouteMatch *m);
