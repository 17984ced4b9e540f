/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bindings driver interface: one const BindingDriver per engine
 * (bindings.http, bindings.localstorage, bindings.postgresql, bindings.redis,
 * bindings.mqtt3, bindings.cron), listed in drivers/bindings/registry.c. The
 * bindings block (blocks/bindings.c) owns everything Dapr-specific around
 * them: which operations a caller may ask for, the OPTIONS probe, calling the
 * app with an input event, deciding ack or retry, MaxConcurrency=.
 *
 * Output (invoke): the block checks the operation against the driver's
 * operations[] list first; invoke() then runs it and calls done exactly once,
 * later on the loop, never from inside invoke(). A response (body and/or
 * metadata pairs) may come with an error too (bindings.http hands back the
 * status of a non-2xx answer that way); resp NULL with no error means "nothing
 * to return" (Dapr answers 204).
 *
 * Input (read_start): the driver hands events to fn; the block answers each
 * with exactly one settle(): ok, or retry after retry_after_usec. Drivers whose
 * source cannot redeliver (cron) treat retry as done; drivers that can (MQTT)
 * offer the event again and keep it until ok, also across a crash of the
 * daemon where the source allows it. At most max_in_flight events of one
 * reader are unsettled at once. One reader per app (group): each app that
 * subscribed gets every event.
 *
 * Rules as for the other kinds: arguments are borrowed for the call only;
 * callbacks never run from inside the starting call; a lost server yields
 * errors with a clear message and a reconnect with backoff, never an exit;
 * close() first answers everything pending with -ECANCELED and stops every
 * reader (their unsettled events go back to the source where it can keep
 * them).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "../../forward.h"

#define BINDING_DRIVER_ABI 1

typedef struct BindingDriver BindingDriver;
typedef struct Binding Binding;
typedef struct BindingReader BindingReader;     /* driver-defined */
typedef struct BindingDelivery BindingDelivery; /* driver-defined */

typedef struct BindingRequest {
        const char *operation;
        const void *data;              /* the request's data as JSON bytes (Dapr re-encodes it) */
        size_t len;
        char *const *metadata;         /* name, value pairs, NULL-terminated; may be NULL */
} BindingRequest;

typedef struct BindingResponse {
        const void *data;              /* may be NULL with len 0 */
        size_t len;
        char *const *metadata;         /* pairs, NULL-terminated; may be NULL */
        const char *content_type;      /* NULL: application/json */
} BindingResponse;

/* error 0 or a negative errno with message; resp may be NULL, and may come with an error. All valid
 * during the call only. */
typedef void (*BindingDoneFn)(int error, const char *message, const BindingResponse *resp, void *userdata);

/* One input event; valid during the call only. */
typedef struct BindingEvent {
        const void *data;
        size_t len;
        char *const *metadata;         /* pairs (become request headers to the app); may be NULL */
        unsigned attempt;              /* 1 on the first delivery */
} BindingEvent;

typedef void (*BindingEventFn)(BindingReader *rd, BindingDelivery *d, const BindingEvent *ev, void *userdata);

/* The generic part every engine's instance begins with (the engine's struct embeds it first). */
struct Binding {
        const BindingDriver *driver;
        Component *component;          /* ref: metadata via component_get_string() */
        sd_event *event;               /* the loop (borrowed) */
        const char *name;              /* component name (borrowed from component) */
        const char *state_dir;         /* the daemon's state directory (borrowed) */
        const char *instance_id;       /* stable per installation (borrowed) */
        struct BindingOut *calls;      /* the block's: output calls in flight */
};

struct BindingDriver {
        const char *type;              /* Dapr spec.type, e.g. "bindings.http" */
        const char *alias;             /* another accepted type; may be NULL */
        unsigned abi;                  /* BINDING_DRIVER_ABI */
        size_t instance_size;          /* sizeof the engine's struct, Binding first */
        const char *const *operations; /* output operations, NULL-terminated; NULL: input only */
        bool redelivers;               /* input: a retried event comes again (else retry = give up) */

        /* Validates metadata and sets up. On failure < 0 with *reterr_msg (malloc'd) naming the field;
         * close() is still called. */
        int (*open)(Binding *b, char **reterr_msg);
        void (*close)(Binding *b);

        /* Output: runs one operation (already checked against operations[]). A request refused at once
         * returns < 0 (no callback) with *reterr_msg (malloc'd) saying why, when it can tell. */
        int (*invoke)(Binding *b, const BindingRequest *req, BindingDoneFn done, void *userdata,
                      char **reterr_msg);

        /* Input: NULL when the engine has none. group names the reader (the app id). */
        int (*read_start)(Binding *b, const char *group, unsigned max_in_flight, BindingEventFn fn, void *userdata,
                          BindingReader **ret);
        void (*read_stop)(BindingReader *rd);
        void (*settle)(BindingDelivery *d, bool ok, uint64_t retry_after_usec);
};

/* Registry (registry.c): by type or alias; NULL if unknown. */
const BindingDriver *binding_driver_find(const char *type);
/* The driver's own string for op if it lists op among its output operations (static: fit for a
 * bounded metrics label), else NULL. */
const char *binding_driver_operation(const BindingDriver *d, const char *op);
/* "a, b, c": the operations, for messages (malloc'd; NULL on OOM). */
char *binding_driver_operations_string(const BindingDriver *d);

/* Looks up a metadata pair (case-sensitive, as Dapr's maps are); NULL if absent. */
const char *binding_metadata_get(char *const *md, const char *name);
/* A component metadata value by name, case-insensitively as Dapr decodes metadata; NULL if absent. */
const char *binding_component_get(const Component *c, const char *name);
