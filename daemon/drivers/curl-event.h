/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcurl's multi interface on the daemon's sd-event loop: the glue every
 * caller of outside URLs shares (bindings.http now, trace exporters later).
 * libcurl is dlopen()ed (dl-curl.h): curl_event_new() loads it.
 *
 * The caller builds an easy handle with sym_curl_easy_*() as usual and hands
 * it over with curl_event_start(); the transfer then runs on the loop (one io
 * source per socket libcurl watches, one timer for its timeouts) and done
 * runs exactly once, later, never from inside curl_event_start(), with the
 * handle already removed from the multi handle: done may clean it up, reuse
 * it, or start another transfer. Connections are kept and reused between
 * transfers by the multi handle (keep-alive, TLS sessions).
 */
#pragma once

#include <curl/curl.h>
#include <systemd/sd-event.h>

typedef struct CurlEvent CurlEvent;

/* result CURLE_OK or libcurl's error for the transfer of easy. */
typedef void (*CurlDoneFn)(CURL *easy, CURLcode result, void *userdata);

/*
 * Loads libcurl (who: the component type, for the message) and sets up a multi handle on e.
 * 0, -EOPNOTSUPP with *reterr_msg (malloc'd), or -ENOMEM.
 */
int curl_event_new(sd_event *e, const char *who, CurlEvent **ret, char **reterr_msg);
/* Transfers still running end without their done callback (their owners go first). NULL-safe. */
CurlEvent *curl_event_free(CurlEvent *ce);

/* Starts easy; done runs exactly once, later. < 0 (nothing started, no callback): -ENOMEM, -EINVAL. */
int curl_event_start(CurlEvent *ce, CURL *easy, CurlDoneFn done, void *userdata);
/* Stops a running transfer: no callback; the caller still owns easy. */
void curl_event_cancel(CurlEvent *ce, CURL *easy);
/* Transfers running now. */
unsigned curl_event_running(const CurlEvent *ce);
