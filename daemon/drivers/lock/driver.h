/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The distributed-lock driver interface: one const LockDriver per engine
 * (lock.redis, and lock.sqlite, the embedded default for one host), listed in
 * drivers/lock/registry.c. The lock block (blocks/lock.c) owns what is
 * Dapr-specific (request checks, key prefixes, scopes); drivers get the
 * final key and plain operations.
 *
 * Rules every driver follows (the same as the state drivers'):
 * - try_lock/unlock start the operation and return 0; the outcome arrives
 *   exactly once through done, later, on the loop, never from inside the
 *   starting call. A negative return means nothing started and done will
 *   not run. Arguments are borrowed for the starting call only.
 * - A lease ends at its expiry by the wall clock (CLOCK_REALTIME), also when
 *   the daemon was not running in between: an expired lease is as good as
 *   absent for try_lock and unlock.
 * - Errors: 0, or -ENOTCONN (server unreachable), -ETIMEDOUT, -EIO/-errno,
 *   always with a short message. A lost server yields errors and a
 *   reconnect; a driver never exits the daemon.
 * - close() answers every pending done with -ECANCELED before it returns,
 *   then frees what the engine owns; the block frees the LockStore memory.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "../../forward.h"

#define LOCK_DRIVER_ABI 1

typedef struct LockDriver LockDriver;
typedef struct LockStore LockStore;
typedef struct LockSched LockSched;

/* Dapr's UnlockResponse.Status numbers (runtime/v1 proto): what unlock answers. */
typedef enum LockUnlockStatus {
        LOCK_UNLOCK_SUCCESS = 0,
        LOCK_UNLOCK_NOT_EXIST = 1,
        LOCK_UNLOCK_OTHER_OWNER = 2,
        LOCK_UNLOCK_INTERNAL_ERROR = 3,
} LockUnlockStatus;

typedef struct LockResult {
        int error;                  /* 0 or a negative errno */
        char *message;              /* malloc'd or NULL */
        bool acquired;              /* try_lock: the lease is the caller's now */
        LockUnlockStatus status;    /* unlock */
} LockResult;

/* result is valid during the call only. */
typedef void (*LockDoneFn)(const LockResult *result, void *userdata);

/* The generic part every engine's instance begins with. */
struct LockStore {
        const LockDriver *driver;
        Component *component;       /* ref */
        sd_event *event;            /* borrowed */
        const char *name;           /* borrowed from component */
        const char *state_dir;      /* borrowed: the daemon's state directory */
        LockSched *sched;           /* the block's bookkeeping (blocks/lock.c); drivers ignore it */
};

struct LockDriver {
        const char *type;           /* Dapr spec.type, e.g. "lock.redis" */
        unsigned abi;               /* LOCK_DRIVER_ABI */
        size_t instance_size;       /* sizeof the engine's struct, LockStore first */

        /* Validates metadata and sets up; a server not there yet is no error. *reterr_msg names the field. */
        int (*open)(LockStore *s, char **reterr_msg);
        void (*close)(LockStore *s);
        /* Takes key for owner for expiry_sec seconds if nobody (unexpired) holds it; acquired says. */
        int (*try_lock)(LockStore *s, const char *key, const char *owner, int64_t expiry_sec, LockDoneFn done,
                        void *userdata);
        /* Releases key if owner holds it; status says what happened. */
        int (*unlock)(LockStore *s, const char *key, const char *owner, LockDoneFn done, void *userdata);
};

void lock_result_done(LockResult *r);
/* Sets r->error and r->message (formatted). Returns error. */
int lock_result_fail(LockResult *r, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Registry (registry.c): by type; NULL if unknown. */
const LockDriver *lock_driver_find(const char *type);
