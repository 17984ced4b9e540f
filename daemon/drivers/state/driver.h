/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The state store driver interface: one const StateDriver per engine
 * (state.sqlite, state.postgresql, state.redis, state.in-memory), listed in
 * drivers/state/registry.c. The state block (blocks/state.c) owns
 * everything Dapr-specific — key scoping, request parsing, feature checks,
 * error codes — and hands drivers fully scoped keys and plain operations.
 *
 * Rules every driver follows:
 * - get/write/transact start the operation and return 0; the outcome is
 *   delivered exactly once through done, later, on the event loop — never
 *   from inside the starting call (defer it if the answer is immediate).
 *   A negative return means nothing was started and done will not run.
 * - Arguments are borrowed for the duration of the starting call only:
 *   copy what you keep (keys, values, etags).
 * - Blocking engines (SQLite) run their work on a thread (work/queue.h) and
 *   complete on the loop; network engines (libpq, hiredis) use non-blocking
 *   I/O on s->event and never block the loop.
 * - A lost server yields errors with a clear message (StateResult.message),
 *   then a reconnect with backoff; a driver never exits the daemon.
 * - Expired items (ttl) are never returned; the driver purges them itself,
 *   at the latest periodically.
 * - Errors: 0 success; -ESTALE etag mismatch, or first-write conflict (the key
 *   exists); -EINVAL a malformed etag (e.g. not a number where the engine's
 *   etags are numbers); -ENOTCONN server unreachable; -EIO/-errno anything
 *   else. Always with a short human message when not 0.
 * - close() cancels what is in flight: pending done callbacks are called with
 *   -ECANCELED before close() returns (so callers never wait forever), then
 *   everything is freed. After close() the core frees the StateStore memory.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "../../forward.h"

#define STATE_DRIVER_ABI 1

typedef struct StateDriver StateDriver;
typedef struct StateStore StateStore;
typedef struct StateSched StateSched;
typedef struct StateQuery StateQuery;
typedef struct StateQueryResult StateQueryResult;
/* result is valid during the call only. */
typedef void (*StateQueryDoneFn)(const StateQueryResult *result, void *userdata);

typedef enum StateFeature {
        STATE_FEATURE_ETAG = 1 << 0,
        STATE_FEATURE_TRANSACTIONAL = 1 << 1,
        STATE_FEATURE_TTL = 1 << 2,
        STATE_FEATURE_QUERY = 1 << 3,  /* Dapr's QUERY_API: the query slot is filled */
} StateFeature;

typedef enum StateConcurrency {
        STATE_CONCURRENCY_LAST_WRITE,  /* default */
        STATE_CONCURRENCY_FIRST_WRITE,
} StateConcurrency;

typedef enum StateOpKind {
        STATE_OP_UPSERT,
        STATE_OP_DELETE,
} StateOpKind;

/*
 * One write. Semantics (Dapr's):
 * - upsert, etag NULL, last-write: unconditional upsert.
 * - upsert, etag NULL, first-write: insert only if the key is absent (or
 *   expired), else -ESTALE.
 * - upsert, etag given: update only if the stored etag equals it, else
 *   -ESTALE (also when the key is absent).
 * - delete, etag NULL: delete if present; absent is success.
 * - delete, etag given: delete only if the stored etag equals it, else -ESTALE.
 * Every successful upsert gives the item a new etag.
 */
typedef struct StateOp {
        StateOpKind kind;
        const char *key;               /* full stored key, scoping applied; never empty */
        const void *value;             /* upsert: the bytes to store (any bytes, may contain NUL) */
        size_t value_len;
        const char *etag;              /* NULL: none given */
        StateConcurrency concurrency;
        int64_t ttl_sec;               /* upsert: > 0 expire after this many seconds; <= 0 never */
} StateOp;

/* What a get finds. Memory is owned by the StateResult. */
typedef struct StateValue {
        bool found;
        void *value;                   /* malloc'd, value_len bytes (plus a NUL not counted) */
        size_t value_len;
        char *etag;                    /* malloc'd; NULL if the engine has none */
        uint64_t expire_realtime_usec; /* CLOCK_REALTIME expiry, 0 = none */
} StateValue;

typedef struct StateResult {
        int error;                     /* 0 or a negative errno, see above */
        char *message;                 /* malloc'd or NULL */
        StateValue value;              /* get only */
        /* write_many that failed: op_failed[i] is true when op i was not stored (malloc'd, one per op).
         * NULL with an error: none was stored. */
        bool *op_failed;
} StateResult;

/* result is valid during the call only; the driver frees it afterwards (state_result_done()). */
typedef void (*StateDoneFn)(const StateResult *result, void *userdata);

/* The generic part every engine's instance begins with (the engine's struct embeds it first). */
struct StateStore {
        const StateDriver *driver;
        Component *component;          /* ref: metadata via component_get_string() */
        sd_event *event;               /* the loop (borrowed) */
        const char *name;              /* component name (borrowed from component) */
        const char *state_dir;               /* the daemon's state directory (borrowed), for embedded stores */
        StateSched *sched;             /* the state block's per-store queues (blocks/state.c); drivers ignore it */
};

struct StateDriver {
        const char *type;              /* Dapr spec.type, e.g. "state.postgresql" */
        const char *alias;             /* another accepted type, e.g. "state.postgres"; may be NULL */
        unsigned abi;                  /* STATE_DRIVER_ABI */
        size_t instance_size;          /* sizeof the engine's struct, StateStore first */
        StateFeature features;

        /*
         * Validates the component's metadata and sets up (may start connecting; a server that is
         * not there yet is not an error: calls fail with -ENOTCONN until it is). On failure
         * returns < 0 and sets *reterr_msg (malloc'd) naming the offending metadata field.
         */
        int (*open)(StateStore *s, char **reterr_msg);
        /* See the rules above: in-flight callbacks get -ECANCELED, then free everything. */
        void (*close)(StateStore *s);

        int (*get)(StateStore *s, const char *key, StateDoneFn done, void *userdata);
        /* A single upsert or delete. */
        int (*write)(StateStore *s, const StateOp *op, StateDoneFn done, void *userdata);
        /* Optional (NULL unless STATE_FEATURE_TRANSACTIONAL): all ops or none, in order. */
        int (*transact)(StateStore *s, const StateOp *ops, size_t n_ops, StateDoneFn done, void *userdata);
        /*
         * Optional: n independent writes as ONE job (a bulk save). Each op is applied on its own, in
         * order; one that fails (etag, first-write) fails alone and the others stay. done gets the
         * first failure, or success. NULL: the block calls write() per op.
         */
        int (*write_many)(StateStore *s, const StateOp *ops, size_t n_ops, StateDoneFn done, void *userdata);
        /*
         * Optional: the caller of the call started with userdata no longer wants its outcome. A call
         * not yet started is not started (its writes never happen); done still runs exactly once
         * (-ECANCELED, or the real outcome if it had already begun).
         */
        void (*cancel)(StateStore *s, void *userdata);
        /*
         * Optional (NULL unless STATE_FEATURE_QUERY): the live items matching q (see
         * drivers/state/query.h), in q's order with the key as the last tie-breaker, at most
         * q->limit from q->offset on. The query is borrowed for the starting call only.
         */
        int (*query)(StateStore *s, const StateQuery *q, StateQueryDoneFn done, void *userdata);
};

/* Frees what a StateResult owns and zeroes it. */
void state_result_done(StateResult *r);
/* Sets r->error and r->message (formatted). Returns error. */
int state_result_fail(StateResult *r, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Registry (registry.c): by type or alias; NULL if unknown. */
const StateDriver *state_driver_find(const char *type);
