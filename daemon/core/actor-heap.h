/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One timer source for many deadlines: a binary min-heap of entries embedded
 * in their owners, behind ONE sd-event timer armed for the earliest. The
 * actor runtime keeps every reminder and timer on one (CLOCK_REALTIME: due
 * times are wall-clock) and every idle deadline on another
 * (CLOCK_MONOTONIC), so 100,000 reminders cost 100,000 heap slots and one
 * event source, and nothing ever scans them all.
 *
 * Insert, move and remove are O(log n). When the timer fires, due entries
 * are popped in time order (then in order of their tie), at most ACTOR_HEAP_BATCH per loop wake-up (the
 * rest on the next pass), and fn runs for each with the entry already out of
 * the heap; fn may add or remove any entry, itself included.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>
#include <time.h>

#define ACTOR_HEAP_BATCH 4096U

typedef struct ActorHeap ActorHeap;

/* Embedded in the owner; zero-initialised means "not in a heap". */
typedef struct ActorHeapEntry {
        uint64_t when;          /* usec on the heap's clock */
        uintptr_t tie;          /* set by the owner: entries due at the same time come out lowest
                                 * first, so those best handled together come out together */
        size_t slot;            /* position + 1; 0: not in the heap */
} ActorHeapEntry;

typedef void (*ActorHeapFn)(ActorHeap *h, ActorHeapEntry *e, void *userdata);

/* accuracy_usec: how late sd-event may run the timer to coalesce wake-ups (0: its default,
 * 250 ms). */
ActorHeap *actor_heap_new(sd_event *e, clockid_t clock, uint64_t accuracy_usec, ActorHeapFn fn, void *userdata);
/* The heap's timer source once armed (tests), else NULL. */
sd_event_source *actor_heap_timer(ActorHeap *h);
/* Entries still in the heap are left alone (their owners free them). NULL-safe. */
ActorHeap *actor_heap_free(ActorHeap *h);
/* Puts e in the heap at when, or moves it there. -ENOMEM. */
int actor_heap_set(ActorHeap *h, ActorHeapEntry *e, uint64_t when);
/* Takes e out; no-op when it is not in. */
void actor_heap_remove(ActorHeap *h, ActorHeapEntry *e);
size_t actor_heap_size(const ActorHeap *h);
/* The heap's clock now (the loop's cached time). */
uint64_t actor_heap_now(const ActorHeap *h);
