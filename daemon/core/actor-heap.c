/* SPDX-License-Identifier: Apache-2.0 */
/* See actor-heap.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "actor-heap.h"

struct ActorHeap {
        sd_event *event;            /* borrowed */
        clockid_t clock;
        uint64_t accuracy;
        sd_event_source *timer;
        uint64_t armed;             /* what the timer is set to; 0: off */
        ActorHeapEntry **v;
        size_t n, cap;
        ActorHeapFn fn;
        void *userdata;
};

static void put(ActorHeap *h, size_t i, ActorHeapEntry *e) {
        h->v[i] = e;
        e->slot = i + 1;
}

/* a comes out before b: earlier, or due together and lower in tie */
static bool before(const ActorHeapEntry *a, const ActorHeapEntry *b) {
        return a->when < b->when || (a->when == b->when && a->tie < b->tie);
}

static void sift_up(ActorHeap *h, size_t i) {
        ActorHeapEntry *e = h->v[i];
        while (i > 0) {
                size_t p = (i - 1) / 2;
                if (!before(e, h->v[p]))
                        break;
                put(h, i, h->v[p]);
                i = p;
        }
        put(h, i, e);
}

static void sift_down(ActorHeap *h, size_t i) {
        ActorHeapEntry *e = h->v[i];
        for (;;) {
                size_t l = 2 * i + 1, m = i;
                const ActorHeapEntry *best = e;
                if (l < h->n && before(h->v[l], best)) {
                        m = l;
                        best = h->v[l];
                }
                if (l + 1 < h->n && before(h->v[l + 1], best))
                        m = l + 1;
                if (m == i)
                        break;
                put(h, i, h->v[m]);
                i = m;
        }
        put(h, i, e);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* Arms the one timer for the earliest entry (or turns it off). */
static void rearm(ActorHeap *h) {
        if (h->n == 0) {
                if (h->timer)
                        (void) sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
                h->armed = 0;
                return;
        }
        uint64_t when = h->v[0]->when ?: 1;
        if (h->armed == when)
                return;
        if (!h->timer) {
                if (sd_event_add_time(h->event, &h->timer, h->clock, when, h->accuracy, on_timer, h) < 0)
                        return; /* retried at the next change */
        } else {
                (void) sd_event_source_set_time(h->timer, when);
                (void) sd_event_source_set_enabled(h->timer, SD_EVENT_ONESHOT);
        }
        h->armed = when;
}

static void remove_at(ActorHeap *h, size_t i) {
        ActorHeapEntry *e = h->v[i];
        e->slot = 0;
        h->n--;
        if (i == h->n)
                return;
        put(h, i, h->v[h->n]);
        if (i > 0 && before(h->v[i], h->v[(i - 1) / 2]))
                sift_up(h, i);
        else
                sift_down(h, i);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ActorHeap *h = userdata;
        uint64_t now = actor_heap_now(h);
        h->armed = 0;
        for (unsigned k = 0; k < ACTOR_HEAP_BATCH && h->n > 0 && h->v[0]->when <= now; k++) {
                ActorHeapEntry *e = h->v[0];
                remove_at(h, 0);
                h->fn(h, e, h->userdata);
        }
        /* more due: the timer is set to a past time and fires on the next loop pass */
        rearm(h);
        return 0;
}

ActorHeap *actor_heap_new(sd_event *e, clockid_t clock, uint64_t accuracy_usec, ActorHeapFn fn, void *userdata) {
        ActorHeap *h = calloc(1, sizeof *h);
        if (h)
                *h = (ActorHeap){ .event = e, .clock = clock, .accuracy = accuracy_usec, .fn = fn,
                                  .userdata = userdata };
        return h;
}

sd_event_source *actor_heap_timer(ActorHeap *h) {
        return h->timer;
}

ActorHeap *actor_heap_free(ActorHeap *h) {
        if (!h)
                return NULL;
        for (size_t i = 0; i < h->n; i++)
                h->v[i]->slot = 0;
        sd_event_source_disable_unref(h->timer);
        free(h->v);
        free(h);
        return NULL;
}

int actor_heap_set(ActorHeap *h, ActorHeapEntry *e, uint64_t when) {
        if (e->slot) {
                /* moved either way (the time, or the tie its owner changed) */
                e->when = when;
                sift_up(h, e->slot - 1);
                sift_down(h, e->slot - 1);
        } else {
                if (h->n == h->cap) {
                        size_t cap = h->cap ? h->cap * 2 : 64;
                        ActorHeapEntry **v = realloc(h->v, cap * sizeof *v);
                        if (!v)
                                return -ENOMEM;
                        h->v = v;
                        h->cap = cap;
                }
                e->when = when;
                put(h, h->n++, e);
                sift_up(h, h->n - 1);
        }
        rearm(h);
        return 0;
}

void actor_heap_remove(ActorHeap *h, ActorHeapEntry *e) {
        if (!e->slot)
                return;
        remove_at(h, e->slot - 1);
        rearm(h);
}

size_t actor_heap_size(const ActorHeap *h) {
        return h->n;
}

uint64_t actor_heap_now(const ActorHeap *h) {
        uint64_t now = 0;
        if (sd_event_now(h->event, h->clock, &now) < 0) {
                struct timespec ts;
                clock_gettime(h->clock, &ts);
                now = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
        }
        return now;
}
