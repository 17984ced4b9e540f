/* SPDX-License-Identifier: Apache-2.0 */
/*
 * WorkQueue: one worker thread running jobs in submission order, for the few
 * engines whose calls can only block (SQLite, later libsecret). Each job's
 * run() executes on the thread; its done() then executes on the sd-event loop
 * (woken through an eventfd). Nothing of the loop's state may be touched from
 * run().
 */
#pragma once

#include <systemd/sd-event.h>

typedef struct WorkQueue WorkQueue;

typedef void (*WorkRunFn)(void *userdata);
typedef void (*WorkDoneFn)(void *userdata);

/* Starts the thread. NULL on failure (errno set). */
WorkQueue *work_queue_new(sd_event *e);
/* Queues a job. 0, or -ENOMEM (nothing queued). */
int work_queue_submit(WorkQueue *q, WorkRunFn run, WorkDoneFn done, void *userdata);
/*
 * Runs every job still queued, joins the thread, then calls the done() of
 * every finished job whose done() has not run yet, before returning. NULL-safe.
 */
WorkQueue *work_queue_free(WorkQueue *q);
