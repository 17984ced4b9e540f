/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Many fds behind one sd-event source: an epoll fd of our own, drained in full each time
 * sd-event dispatches it.
 *
 * Why: sd-event dispatches one source per loop iteration, and every iteration with something
 * pending polls the kernel again (sd_event_prepare() calls sd_event_wait(e, 0)). With one
 * source per connection, a proxied call cost two loop iterations, each an epoll_wait() and
 * the bookkeeping around it. Behind one mux source, a wake-up with N ready connections costs
 * one iteration and one more epoll_wait(), whatever N is.
 *
 * The surface is what the HTTP server and the transport used of sd-event io sources: add,
 * change the event mask, switch off and on, remove. Events are passed to epoll as given
 * (EPOLLET included). A watch removed while a batch is being dispatched is never called again
 * and is freed after the batch, so callbacks may remove any watch, their own included.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct IoMux IoMux;
typedef struct IoWatch IoWatch;

/* revents as epoll reports them */
typedef void (*IoWatchFn)(IoWatch *w, int fd, uint32_t revents, void *userdata);

int iomux_new(sd_event *e, const char *description, IoMux **ret);
/* Every watch must have been removed. */
IoMux *iomux_free(IoMux *m);

int iomux_add(IoMux *m, int fd, uint32_t events, IoWatchFn fn, void *userdata, IoWatch **ret);
/* Stops the watch for good (the fd stays open: it is the caller's). Returns NULL. */
IoWatch *iomux_remove(IoWatch *w);
int iomux_set_events(IoWatch *w, uint32_t events);
/* Off: no events at all, not even hang-ups, until switched on again. */
int iomux_set_enabled(IoWatch *w, bool on);
