/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's error codes for the HTTP handlers: defined once, with the rest of the
 * error table, in core/errors.h. Handlers name an error and a message;
 * http_reply_error() renders {"errorCode":"ERR_...","message":"..."}.
 */
#pragma once

#include "../core/errors.h"
