/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HttpClient: libcurl's multi interface driven by sd-event, so outgoing HTTP
 * (the app channel, later peers and bindings) never blocks the loop. Idle
 * connections stay in curl's cache and are reused across requests to the
 * same address (keep-alive), Unix socket addresses included.
 */
#pragma once

#include <curl/curl.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "../forward.h"

typedef struct HttpClientRequest HttpClientRequest;

/* Called once per started request, on the loop, never from inside http_client_start(). */
typedef void (*HttpClientDoneFn)(CURLcode result, long status, void *userdata);

HttpClient *http_client_new(sd_event *e);
/* Requests still in flight end with CURLE_ABORTED_BY_CALLBACK: their callbacks run. */
HttpClient *http_client_free(HttpClient *c);

/*
 * Starts easy (the client takes it: it is cleaned up after done runs or on
 * cancel). The caller sets CURLOPT_WRITEFUNCTION (http_client_discard_body
 * to drop the body).
 */
int http_client_start(HttpClient *c, CURL *easy_take, HttpClientDoneFn done, void *userdata,
                      HttpClientRequest **ret);
/* Stops a request; its callback will not run. Accepts NULL. */
void http_client_cancel(HttpClientRequest *req);
CURL *http_client_request_easy(HttpClientRequest *req);
/* A CURLOPT_WRITEFUNCTION that drops the body (curl's default writes to stdout). */
size_t http_client_discard_body(char *ptr, size_t size, size_t nmemb, void *ud);
/* Number of requests in flight. */
unsigned http_client_in_flight(const HttpClient *c);
/* Inside a done callback: the errno of the request's last failed system call (0 if none). */
int http_client_last_os_errno(const HttpClient *c);
