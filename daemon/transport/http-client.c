/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See http-client.h. curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to time out (CURLMOPT_TIMERFUNCTION);
 * we mirror that into sd-event io and time sources and feed events back with
 * curl_multi_socket_action(). Completions are collected with
 * curl_multi_info_read() after every action.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "../util/cleanup.h"
#include "http-client.h"

struct HttpClientRequest {
        HttpClient *client;
        CURL *easy;
        HttpClientDoneFn done;
        void *userdata;
        HttpClientRequest *next, *prev;
};

struct HttpClient {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        sd_event_source *now;       /* curl's "time out now" */
        HttpClientRequest *requests;
        unsigned n_requests;
        long last_os_errno;         /* of the request whose done callback is running */
};

static void request_unlink_free(HttpClientRequest *r) {
        HttpClient *c = r->client;
        if (r->prev)
                r->prev->next = r->next;
        else
                c->requests = r->next;
        if (r->next)
                r->next->prev = r->prev;
        c->n_requests--;
        curl_multi_remove_handle(c->multi, r->easy);
        curl_easy_cleanup(r->easy);
        free(r);
}

static void check_done(HttpClient *c) {
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(c->multi, &left))) {
                HttpClientRequest *r = NULL;
                long status = 0;
                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &r);
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
                c->last_os_errno = 0;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_OS_ERRNO, &c->last_os_errno);
                CURLcode result = msg->data.result;
                HttpClientDoneFn done = r->done;
                void *ud = r->userdata;
                /* Free before the callback so it may start new requests freely. */
                request_unlink_free(r);
                done(result, status, ud);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HttpClient *c = userdata;
        int flags = 0, running;
        if (revents & EPOLLIN)
                flags |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(c->multi, fd, flags, &running);
        check_done(c);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpClient *c = userdata;
        int running;
        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(c);
        return 0;
}

static int on_now(sd_event_source *s, void *userdata) {
        return on_timer(s, 0, userdata);
}

/* curl: start/stop watching fd. socketp holds our sd_event_source. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userdata, void *socketp) {
        HttpClient *c = userdata;
        sd_event_source *s = socketp;
        uint32_t events = 0;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        sd_event_source_disable_unref(s);
                        curl_multi_assign(c->multi, fd, NULL);
                }
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;
        if (s)
                return sd_event_source_set_io_events(s, events) < 0 ? -1 : 0;
        if (sd_event_add_io(c->event, &s, fd, events, on_io, c) < 0)
                return -1;
        curl_multi_assign(c->multi, fd, s);
        return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userdata) {
        HttpClient *c = userdata;
        uint64_t now;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        if (timeout_ms == 0) {
                /* "Now" (a new transfer, an unpause): from the loop's next iteration, not a
                 * timer that sd-event may coalesce to its accuracy. */
                if (sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) < 0)
                        return -1;
                return sd_event_source_set_enabled(c->now, SD_EVENT_ONESHOT) < 0 ? -1 : 0;
        }
        if (sd_event_now(c->event, CLOCK_MONOTONIC, &now) < 0)
                return -1;
        if (sd_event_source_set_time(c->timer, now + (uint64_t) timeout_ms * 1000) < 0)
                return -1;
        return sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT) < 0 ? -1 : 0;
}

HttpClient *http_client_new(sd_event *e) {
        HttpClient *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->event = sd_event_ref(e);
        c->multi = curl_multi_init();
        if (!c->multi)
                return http_client_free(c);
        if (sd_event_add_time(e, &c->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_timer, c) < 0 ||
            sd_event_add_defer(e, &c->now, on_now, c) < 0)
                return http_client_free(c);
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->now, SD_EVENT_OFF);
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
        /* Keep idle connections to apps: one app, one host — a small cache is plenty per host. */
        curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 256L);
        return c;
}

HttpClient *http_client_free(HttpClient *c) {
        if (!c)
                return NULL;
        /* Whoever waits for an answer gets one: a request still out is aborted. */
        while (c->requests) {
                HttpClientRequest *r = c->requests;
                HttpClientDoneFn done = r->done;
                void *ud = r->userdata;
                request_unlink_free(r);
                done(CURLE_ABORTED_BY_CALLBACK, 0, ud);
        }
        if (c->multi)
                curl_multi_cleanup(c->multi); /* closes cached connections, calls socket_cb REMOVE */
        sd_event_source_disable_unref(c->timer);
        sd_event_source_disable_unref(c->now);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

int http_client_start(HttpClient *c, CURL *easy, HttpClientDoneFn done, void *userdata,
                      HttpClientRequest **ret) {
        HttpClientRequest *r = calloc(1, sizeof *r);
        if (!r) {
                curl_easy_cleanup(easy);
                return -ENOMEM;
        }
        *r = (HttpClientRequest){ .client = c, .easy = easy, .done = done, .userdata = userdata };
        curl_easy_setopt(easy, CURLOPT_PRIVATE, r);
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
                curl_easy_cleanup(easy);
                free(r);
                return -EIO;
        }
        r->next = c->requests;
        if (r->next)
                r->next->prev = r;
        c->requests = r;
        c->n_requests++;
        if (ret)
                *ret = r;
        return 0;
}

void http_client_cancel(HttpClientRequest *r) {
        if (r)
                request_unlink_free(r);
}

CURL *http_client_request_easy(HttpClientRequest *r) {
        return r->easy;
}

unsigned http_client_in_flight(const HttpClient *c) {
        return c->n_requests;
}

size_t http_client_discard_body(char *ptr, size_t size, size_t nmemb, void *ud) {
        return size * nmemb;
}

int http_client_last_os_errno(const HttpClient *c) {
        return (int) c->last_os_errno;
}
