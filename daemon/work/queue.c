/* SPDX-License-Identifier: Apache-2.0 */
/*
 * WorkQueue: one worker thread, two lists under one mutex.
 *
 *   loop thread                         worker thread
 *   work_queue_submit() ── queued ───▶  run()
 *   on_wakeup() → done()  ◀── finished ─┘ + eventfd write
 *
 * Everything the two threads share (queued, finished, stopping) is only
 * touched with the mutex held; a job belongs to exactly one list (or to the
 * one thread running it) at any time, so run() and done() never overlap for a
 * job and every done() runs exactly once, on the loop. The eventfd is read
 * before the finished list is taken, so a wakeup is never lost (at worst one
 * is spurious). work_queue_free() joins the thread before it closes the
 * eventfd, so the worker never writes to a closed (or reused) fd.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "queue.h"

typedef struct WorkJob {
        WorkRunFn run;
        WorkDoneFn done;
        void *userdata;
        struct WorkJob *next;
} WorkJob;

typedef struct WorkList {
        WorkJob *head, *tail;
} WorkList;

struct WorkQueue {
        sd_event *event;         /* ref */
        sd_event_source *wakeup; /* io source on efd */
        int efd;
        pthread_t thread;
        bool thread_started;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Protected by lock: */
        WorkList queued;   /* submitted, not yet run */
        WorkList finished; /* run, done() not yet called */
        bool stopping;     /* no more submissions; the thread exits when queued is empty */

        /* Loop thread only: */
        WorkList ready;   /* taken from finished by on_wakeup(), done() pending */
        bool dispatching; /* inside on_wakeup() */
        bool freed;       /* work_queue_free() ran inside a done(): on_wakeup() frees */
};

static void list_append(WorkList *l, WorkJob *j) {
        j->next = NULL;
        if (l->tail)
                l->tail->next = j;
        else
                l->head = j;
        l->tail = j;
}

static WorkJob *list_pop(WorkList *l) {
        WorkJob *j = l->head;
        if (j) {
                l->head = j->next;
                if (!l->head)
                        l->tail = NULL;
                j->next = NULL;
        }
        return j;
}

/* Moves all of from to the end of to. */
static void list_splice(WorkList *to, WorkList *from) {
        if (!from->head)
                return;
        if (to->tail)
                to->tail->next = from->head;
        else
                to->head = from->head;
        to->tail = from->tail;
        *from = (WorkList){};
}

static void *worker(void *userdata) {
        WorkQueue *q = userdata;

        pthread_mutex_lock(&q->lock);
        for (;;) {
                WorkJob *j = list_pop(&q->queued);
                if (!j) {
                        if (q->stopping)
                                break;
                        pthread_cond_wait(&q->cond, &q->lock);
                        continue;
                }
                pthread_mutex_unlock(&q->lock);

                j->run(j->userdata);

                pthread_mutex_lock(&q->lock);
                list_append(&q->finished, j);
                /* A failed write can only mean the counter is already nonzero (EAGAIN): the
                 * loop will wake up anyway. */
                (void) !write(q->efd, &(uint64_t){ 1 }, sizeof(uint64_t));
        }
        pthread_mutex_unlock(&q->lock);
        return NULL;
}

/* Calls the done() of every job in l, in order. Loop thread only. */
static void run_done(WorkList *l) {
        WorkJob *j;
        while ((j = list_pop(l))) {
                WorkDoneFn done = j->done;
                void *ud = j->userdata;
                free(j);
                if (done)
                        done(ud);
        }
}

static void queue_release(WorkQueue *q) {
        (void) pthread_mutex_destroy(&q->lock);
        (void) pthread_cond_destroy(&q->cond);
        sd_event_unref(q->event);
        free(q);
}

static int on_wakeup(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        WorkQueue *q = userdata;
        uint64_t n;

        /* Reset the counter before taking the list: a job finished after this read writes
         * the eventfd again, so it is seen on the next wakeup at the latest. */
        (void) !read(q->efd, &n, sizeof n);

        pthread_mutex_lock(&q->lock);
        list_splice(&q->ready, &q->finished);
        pthread_mutex_unlock(&q->lock);

        /* One at a time from q->ready, not a local list: a done() may call work_queue_free(),
         * which then runs the rest itself (and leaves the final free to us). */
        q->dispatching = true;
        WorkJob *j;
        while (!q->freed && (j = list_pop(&q->ready))) {
                WorkDoneFn done = j->done;
                void *ud = j->userdata;
                free(j);
                if (done)
                        done(ud);
        }
        q->dispatching = false;
        if (q->freed)
                queue_release(q);
        return 0;
}

WorkQueue *work_queue_new(sd_event *e) {
        WorkQueue *q;
        sigset_t all, saved;
        int r;

        if (!e) {
                errno = EINVAL;
                return NULL;
        }
        q = calloc(1, sizeof *q);
        if (!q)
                return NULL;
        q->efd = -EBADF;
        if (pthread_mutex_init(&q->lock, NULL) != 0) {
                free(q);
                errno = ENOMEM;
                return NULL;
        }
        if (pthread_cond_init(&q->cond, NULL) != 0) {
                (void) pthread_mutex_destroy(&q->lock);
                free(q);
                errno = ENOMEM;
                return NULL;
        }
        q->event = sd_event_ref(e);

        q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->efd < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(e, &q->wakeup, q->efd, EPOLLIN, on_wakeup, q);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(q->wakeup, "work-queue");

        /* The worker must never take a signal meant for the loop (signalfd, SIGTERM, ...):
         * it starts with every signal blocked, inherited from this thread's mask. */
        sigfillset(&all);
        r = -pthread_sigmask(SIG_SETMASK, &all, &saved);
        if (r < 0)
                goto fail;
        r = -pthread_create(&q->thread, NULL, worker, q);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0)
                goto fail;
        q->thread_started = true;
        return q;

fail:
        q->wakeup = sd_event_source_disable_unref(q->wakeup);
        q->efd = safe_close(q->efd);
        queue_release(q);
        errno = -r;
        return NULL;
}

int work_queue_submit(WorkQueue *q, WorkRunFn run, WorkDoneFn done, void *userdata) {
        WorkJob *j;
        bool stopping;

        if (!q || !run)
                return -EINVAL;
        j = malloc(sizeof *j);
        if (!j)
                return -ENOMEM;
        *j = (WorkJob){ .run = run, .done = done, .userdata = userdata };

        pthread_mutex_lock(&q->lock);
        stopping = q->stopping;
        if (!stopping) {
                list_append(&q->queued, j);
                pthread_cond_signal(&q->cond);
        }
        pthread_mutex_unlock(&q->lock);

        if (stopping) {
                /* Submitted from a done() that work_queue_free() is running: there is no
                 * thread left to run it. Nothing was queued. */
                free(j);
                return -ECANCELED;
        }
        return 0;
}

WorkQueue *work_queue_free(WorkQueue *q) {
        if (!q)
                return NULL;

        pthread_mutex_lock(&q->lock);
        q->stopping = true;
        pthread_cond_signal(&q->cond);
        pthread_mutex_unlock(&q->lock);

        /* The thread runs what is still queued, then exits. */
        if (q->thread_started)
                (void) pthread_join(q->thread, NULL);
        q->thread_started = false;

        q->wakeup = sd_event_source_disable_unref(q->wakeup);
        q->efd = safe_close(q->efd);

        /* The thread is gone: the lists are ours alone. Jobs on_wakeup() already took come
         * first, then the rest, in the order they finished. submit() now fails, so nothing
         * new can be added while the done()s run. */
        list_splice(&q->ready, &q->finished);
        run_done(&q->ready);

        if (q->dispatching)
                q->freed = true; /* on_wakeup() is on the stack and still uses q */
        else
                queue_release(q);
        return NULL;
}
