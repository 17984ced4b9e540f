/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See lock.h. Every call the block starts is a LockCall on its store's list,
 * so a front-end whose caller left can drop its calls (lock_cancel()): the
 * driver still finishes the operation (a lease taken stays taken until it
 * expires, as with daprd when a client disconnects), only the answer is
 * dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/component.h"
#include "../core/registry.h"
#include "../util/strv.h"
#include "lock.h"

#define KEY_SEPARATOR "||"

typedef struct LockCall LockCall;
struct LockCall {
        LockStore *store;          /* back-reference */
        LockDoneFn done;
        void *userdata;
        bool cancelled;
        LockCall *next, *prev;
};

struct LockSched {
        char *prefix;              /* keyPrefix: "appid", "name", "none", or a fixed prefix (lowercased) */
        LockCall *calls;           /* started, not answered */
};

int lock_store_open(Registry *m, Component *c, LockStore **ret, char **reterr_msg) {
        const LockDriver *d = lock_driver_find(c->type);
        const char *v;
        LockStore *s;
        int r;

        *reterr_msg = NULL;
        if (!d) {
                if (asprintf(reterr_msg, "no lock store driver for type '%s' in this build", c->type) < 0)
                        *reterr_msg = NULL;
                return -EOPNOTSUPP;
        }
        if (d->abi != LOCK_DRIVER_ABI || d->instance_size < sizeof(LockStore))
                return -EPROTO;
        v = component_get_string(c, "keyPrefix");
        if (v && strstr(v, KEY_SEPARATOR)) {
                if (asprintf(reterr_msg, "keyPrefix: '%s' must not contain '" KEY_SEPARATOR "'", v) < 0)
                        *reterr_msg = NULL;
                return -EINVAL;
        }
        s = calloc(1, d->instance_size);
        if (!s)
                return -ENOMEM;
        *s = (LockStore){ .driver = d, .component = component_ref(c), .event = m->event, .name = c->name,
                          .state_dir = m->state_dir };
        s->sched = calloc(1, sizeof *s->sched);
        /* daprd lowercases the strategy, a fixed prefix included (pkg/components/lock/lock_config.go). */
        if (s->sched)
                s->sched->prefix = strdup(v && *v ? v : "appid");
        if (!s->sched || !s->sched->prefix) {
                r = -ENOMEM;
                goto fail;
        }
        for (char *p = s->sched->prefix; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p = (char) (*p - 'A' + 'a');
        r = d->open(s, reterr_msg);
        if (r < 0) {
                d->close(s);
                goto fail;
        }
        *ret = s;
        return 0;
fail:
        if (s->sched)
                free(s->sched->prefix);
        free(s->sched);
        component_unref(s->component);
        free(s);
        return r;
}

LockStore *lock_store_close(LockStore *s) {
        if (!s)
                return NULL;
        /* The driver answers what it holds (-ECANCELED); on_done() below unlinks each. */
        s->driver->close(s);
        while (s->sched->calls) {
                /* Only a driver that broke its contract leaves calls here: free them without answering. */
                LockCall *c = s->sched->calls;
                s->sched->calls = c->next;
                free(c);
        }
        free(s->sched->prefix);
        free(s->sched);
        component_unref(s->component);
        free(s);
        return NULL;
}

int lock_lookup(Registry *m, const char *name, const char *app_id, LockStore **ret) {
        if (m->n_lock_stores == 0)
                return -ENODEV;
        for (size_t i = 0; i < m->n_lock_stores; i++) {
                LockStore *s = m->lock_stores[i];
                if (!streq(s->name, name))
                        continue;
                if (app_id && !component_in_scope(s->component, app_id))
                        return -ENOENT;
                *ret = s;
                return 0;
        }
        return -ENOENT;
}

const char *lock_request_problem(const char *resource, const char *owner, int64_t expiry_sec, bool unlocking) {
        if (!resource || !*resource)
                return "ResourceId is empty in lock store %s";
        if (!owner || !*owner)
                return "LockOwner is empty in lock store %s";
        if (!unlocking && expiry_sec <= 0)
                return "ExpiryInSeconds is not positive in lock store %s";
        return NULL;
}

/* Dapr's key: lock||<prefix>||<resource>, or lock||<resource> for prefix none (and for no app). */
static int make_key(const LockStore *s, const char *app_id, const char *resource, char **ret) {
        const char *p = s->sched->prefix;
        int k;

        if (strstr(resource, KEY_SEPARATOR))
                return -EBADR;
        if (streq(p, "none") || (streq(p, "appid") && !app_id))
                k = asprintf(ret, "lock" KEY_SEPARATOR "%s", resource);
        else
                k = asprintf(ret, "lock" KEY_SEPARATOR "%s" KEY_SEPARATOR "%s",
                             streq(p, "appid") ? app_id : streq(p, "name") ? s->name : p, resource);
        return k < 0 ? -ENOMEM : 0;
}

static void on_done(const LockResult *result, void *userdata) {
        LockCall *c = userdata;
        LockSched *q = c->store->sched;

        if (c->prev)
                c->prev->next = c->next;
        else
                q->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        if (!c->cancelled)
                c->done(result, c->userdata);
        free(c);
}

static int start(LockStore *s, const char *app_id, const char *resource, const char *owner, int64_t expiry_sec,
                 bool unlocking, LockDoneFn done, void *userdata) {
        _cleanup_free_ char *key = NULL;
        LockCall *c;
        int r;

        if (lock_request_problem(resource, owner, expiry_sec, unlocking))
                return -EINVAL;
        r = make_key(s, app_id, resource, &key);
        if (r < 0)
                return r;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        *c = (LockCall){ .store = s, .done = done, .userdata = userdata };
        r = unlocking ? s->driver->unlock(s, key, owner, on_done, c)
                      : s->driver->try_lock(s, key, owner, expiry_sec, on_done, c);
        if (r < 0) {
                free(c);
                return r;
        }
        c->next = s->sched->calls;
        if (c->next)
                c->next->prev = c;
        s->sched->calls = c;
        return 0;
}

int lock_try(LockStore *s, const char *app_id, const char *resource, const char *owner, int64_t expiry_sec,
             LockDoneFn done, void *userdata) {
        return start(s, app_id, resource, owner, expiry_sec, false, done, userdata);
}

int lock_unlock(LockStore *s, const char *app_id, const char *resource, const char *owner, LockDoneFn done,
                void *userdata) {
        return start(s, app_id, resource, owner, 0, true, done, userdata);
}

void lock_cancel(LockStore *s, void *userdata) {
        for (LockCall *c = s->sched->calls; c; c = c->next)
                if (c->userdata == userdata)
                        c->cancelled = true;
}

const char *lock_unlock_status_to_string(LockUnlockStatus s) {
        static const char *const names[] = {
                [LOCK_UNLOCK_SUCCESS] = "SUCCESS",
                [LOCK_UNLOCK_NOT_EXIST] = "LOCK_DOES_NOT_EXIST",
                [LOCK_UNLOCK_OTHER_OWNER] = "LOCK_BELONGS_TO_OTHERS",
                [LOCK_UNLOCK_INTERNAL_ERROR] = "INTERNAL_ERROR",
        };
        return (unsigned) s < ELEMENTSOF(names) ? names[s] : NULL;
}
