/* SPDX-License-Identifier: Apache-2.0 */
/* See iomux.h. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "iomux.h"
#include "log.h"

/* Events taken per dispatch; more wait for the next loop iteration (the mux's fd stays
 * readable), so timers and other sources run in between. */
#define IOMUX_BATCH 64

struct IoWatch {
        IoMux *mux;
        int fd;
        uint32_t events;
        bool enabled;               /* registered with the epoll fd */
        bool dead;                  /* removed during a batch: freed after it */
        IoWatchFn fn;
        void *userdata;
        IoWatch *next_dead;
};

struct IoMux {
        int efd;
        sd_event_source *source;
        bool dispatching;
        IoWatch *dead;
        size_t n_watches;
};

static void free_dead(IoMux *m) {
        while (m->dead) {
                IoWatch *w = m->dead;
                m->dead = w->next_dead;
                free(w);
        }
}

static int on_ready(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        IoMux *m = userdata;
        struct epoll_event ev[IOMUX_BATCH];

        int n = epoll_wait(m->efd, ev, IOMUX_BATCH, 0);
        if (n < 0) {
                /* Never return an error: sd-event would switch the source (every connection)
                 * off for good. */
                if (errno != EINTR)
                        log_warning_errno(-errno, "epoll_wait() on the connection mux failed: %m");
                return 0;
        }
        m->dispatching = true;
        for (int i = 0; i < n; i++) {
                IoWatch *w = ev[i].data.ptr;
                /* Removed, switched off or changed by an earlier callback of this batch: what
                 * epoll said about it may no longer apply (sd-event drops a pending event on
                 * such changes too). */
                if (w->dead || !w->enabled)
                        continue;
                uint32_t r = ev[i].events & (w->events | EPOLLERR | EPOLLHUP);
                if (r)
                        w->fn(w, w->fd, r, w->userdata);
        }
        m->dispatching = false;
        free_dead(m);
        return 0;
}

int iomux_new(sd_event *e, const char *description, IoMux **ret) {
        IoMux *m = calloc(1, sizeof *m);
        int r;

        if (!m)
                return -ENOMEM;
        m->efd = epoll_create1(EPOLL_CLOEXEC);
        if (m->efd < 0) {
                r = -errno;
                free(m);
                return r;
        }
        r = sd_event_add_io(e, &m->source, m->efd, EPOLLIN, on_ready, m);
        if (r < 0) {
                close(m->efd);
                free(m);
                return r;
        }
        if (description)
                (void) sd_event_source_set_description(m->source, description);
        *ret = m;
        return 0;
}

IoMux *iomux_free(IoMux *m) {
        if (!m)
                return NULL;
        if (m->n_watches > 0)
                log_warning("connection mux freed with %zu watches left", m->n_watches);
        free_dead(m);
        sd_event_source_disable_unref(m->source);
        close(m->efd);
        free(m);
        return NULL;
}

static int ctl(IoWatch *w, int op) {
        struct epoll_event ev = { .events = w->events, .data.ptr = w };
        return epoll_ctl(w->mux->efd, op, w->fd, &ev) < 0 ? -errno : 0;
}

int iomux_add(IoMux *m, int fd, uint32_t events, IoWatchFn fn, void *userdata, IoWatch **ret) {
        IoWatch *w = calloc(1, sizeof *w);
        int r;

        if (!w)
                return -ENOMEM;
        *w = (IoWatch){ .mux = m, .fd = fd, .events = events, .enabled = true, .fn = fn, .userdata = userdata };
        r = ctl(w, EPOLL_CTL_ADD);
        if (r < 0) {
                free(w);
                return r;
        }
        m->n_watches++;
        *ret = w;
        return 0;
}

IoWatch *iomux_remove(IoWatch *w) {
        if (!w)
                return NULL;
        IoMux *m = w->mux;
        if (w->enabled)
                (void) ctl(w, EPOLL_CTL_DEL);
        w->enabled = false;
        m->n_watches--;
        if (m->dispatching) {
                /* its event may still be ahead in this batch */
                w->dead = true;
                w->next_dead = m->dead;
                m->dead = w;
        } else
                free(w);
        return NULL;
}

int iomux_set_events(IoWatch *w, uint32_t events) {
        if (w->events == events)
                return 0;
        uint32_t old = w->events;
        w->events = events;
        if (!w->enabled)
                return 0;
        int r = ctl(w, EPOLL_CTL_MOD);
        if (r < 0)
                w->events = old;
        return r;
}

int iomux_set_enabled(IoWatch *w, bool on) {
        if (w->enabled == on)
                return 0;
        int r = ctl(w, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL);
        if (r >= 0)
                w->enabled = on;
        return r;
}
