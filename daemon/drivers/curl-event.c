/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See curl-event.h. libcurl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to call it back (CURLMOPT_TIMERFUNCTION);
 * we translate that into sd-event sources and feed the events back with
 * curl_multi_socket_action(). Finished transfers are collected with
 * curl_multi_info_read() after every action, outside any libcurl callback,
 * so done callbacks may add and remove handles freely.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "../util/cleanup.h"
#include "curl-event.h"
#include "dl-curl.h"

typedef struct Transfer {
        CURL *easy;
        CurlDoneFn done;
        void *userdata;
        struct Transfer *next, *prev;
} Transfer;

struct CurlEvent {
        sd_event *event;              /* ref */
        CURLM *multi;
        sd_event_source *timer;
        Transfer *transfers;
        unsigned n_running;
        bool freeing;
};

static void transfer_unlink(CurlEvent *ce, Transfer *t) {
        if (t->prev)
                t->prev->next = t->next;
        else
                ce->transfers = t->next;
        if (t->next)
                t->next->prev = t->prev;
        ce->n_running--;
}

static void collect_done(CurlEvent *ce) {
        CURLMsg *msg;
        int left;

        while ((msg = sym_curl_multi_info_read(ce->multi, &left))) {
                Transfer *t = NULL;
                if (msg->msg != CURLMSG_DONE)
                        continue;
                CURL *easy = msg->easy_handle;
                CURLcode result = msg->data.result;
                (void) sym_curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
                sym_curl_multi_remove_handle(ce->multi, easy);
                if (!t)
                        continue;
                transfer_unlink(ce, t);
                CurlDoneFn done = t->done;
                void *ud = t->userdata;
                free(t);
                (void) sym_curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                done(easy, result, ud);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        CurlEvent *ce = userdata;
        int flags = 0, running;

        if (revents & (EPOLLIN | EPOLLHUP))
                flags |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                flags |= CURL_CSELECT_ERR;
        (void) sym_curl_multi_socket_action(ce->multi, fd, flags, &running);
        collect_done(ce);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CurlEvent *ce = userdata;
        int running;

        (void) sym_curl_multi_socket_action(ce->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        collect_done(ce);
        return 0;
}

/* libcurl: watch (or stop watching) socket s for what. socketp: our io source, once assigned. */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
        CurlEvent *ce = userp;
        sd_event_source *src = socketp;
        uint32_t events = 0;

        if (what == CURL_POLL_REMOVE) {
                if (src) {
                        sd_event_source_disable_unref(src);
                        if (!ce->freeing)
                                (void) sym_curl_multi_assign(ce->multi, s, NULL);
                }
                return 0;
        }
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                events |= EPOLLIN;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                events |= EPOLLOUT;
        if (src) {
                if (sd_event_source_set_io_events(src, events) < 0)
                        return -1;
                return 0;
        }
        if (sd_event_add_io(ce->event, &src, s, events, on_io, ce) < 0)
                return -1;
        (void) sd_event_source_set_description(src, "curl-socket");
        if (sym_curl_multi_assign(ce->multi, s, src) != CURLM_OK) {
                sd_event_source_disable_unref(src);
                return -1;
        }
        return 0;
}

/* libcurl: call me back in timeout_ms (-1: never; 0: as soon as possible, but not from here). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        CurlEvent *ce = userp;
        uint64_t now;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(ce->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        if (sd_event_now(ce->event, CLOCK_MONOTONIC, &now) < 0)
                return -1;
        if (sd_event_source_set_time(ce->timer, now + (uint64_t) timeout_ms * 1000) < 0 ||
            sd_event_source_set_enabled(ce->timer, SD_EVENT_ONESHOT) < 0)
                return -1;
        return 0;
}

int curl_event_new(sd_event *e, const char *who, CurlEvent **ret, char **reterr_msg) {
        CurlEvent *ce;
        int r;

        r = dlopen_curl(who, reterr_msg);
        if (r < 0)
                return r;
        ce = calloc(1, sizeof *ce);
        if (!ce)
                return -ENOMEM;
        ce->event = sd_event_ref(e);
        ce->multi = sym_curl_multi_init();
        if (!ce->multi || sd_event_add_time(e, &ce->timer, CLOCK_MONOTONIC, UINT64_MAX, 1, on_timer, ce) < 0) {
                curl_event_free(ce);
                return -ENOMEM;
        }
        (void) sd_event_source_set_enabled(ce->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(ce->timer, "curl-timer");
        if (sym_curl_multi_setopt(ce->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
            sym_curl_multi_setopt(ce->multi, CURLMOPT_SOCKETDATA, ce) != CURLM_OK ||
            sym_curl_multi_setopt(ce->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
            sym_curl_multi_setopt(ce->multi, CURLMOPT_TIMERDATA, ce) != CURLM_OK) {
                curl_event_free(ce);
                return -ENOMEM;
        }
        *ret = ce;
        return 0;
}

CurlEvent *curl_event_free(CurlEvent *ce) {
        if (!ce)
                return NULL;
        ce->freeing = true;
        while (ce->transfers) {
                Transfer *t = ce->transfers;
                sym_curl_multi_remove_handle(ce->multi, t->easy);
                (void) sym_curl_easy_setopt(t->easy, CURLOPT_PRIVATE, NULL);
                transfer_unlink(ce, t);
                free(t);
        }
        /* Cleanup closes the cached connections, which removes their io sources through socket_cb. */
        if (ce->multi)
                sym_curl_multi_cleanup(ce->multi);
        sd_event_source_disable_unref(ce->timer);
        sd_event_unref(ce->event);
        free(ce);
        return NULL;
}

int curl_event_start(CurlEvent *ce, CURL *easy, CurlDoneFn done, void *userdata) {
        Transfer *t;

        if (!easy || !done)
                return -EINVAL;
        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        *t = (Transfer){ .easy = easy, .done = done, .userdata = userdata, .next = ce->transfers };
        if (sym_curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *) t) != CURLE_OK) {
                free(t);
                return -EINVAL;
        }
        if (sym_curl_multi_add_handle(ce->multi, easy) != CURLM_OK) {
                (void) sym_curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                free(t);
                return -ENOMEM;
        }
        if (t->next)
                t->next->prev = t;
        ce->transfers = t;
        ce->n_running++;
        return 0;
}

void curl_event_cancel(CurlEvent *ce, CURL *easy) {
        Transfer *t = NULL;

        if (!ce || !easy)
                return;
        (void) sym_curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
        if (!t)
                return;
        sym_curl_multi_remove_handle(ce->multi, easy);
        (void) sym_curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        transfer_unlink(ce, t);
        free(t);
}

unsigned curl_event_running(const CurlEvent *ce) {
        return ce ? ce->n_running : 0;
}
