/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See secrets.h. A call is a SecretCall linked into its store: started from
 * a defer source (drivers that do not block run there, on the loop) or on
 * the store's WorkQueue (blocking drivers), and answered on the loop, where
 * a bulk answer is filtered by the caller's scopes as they are then.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "../core/app.h"
#include "../core/component.h"
#include "../core/configuration.h"
#include "../core/metrics.h"
#include "../core/registry.h"
#include "../util/cleanup.h"
#include "../util/strv.h"
#include "../work/queue.h"
#include "secrets.h"

struct SecretCall {
        SecretStore *store;       /* back-reference; NULL once the store closed */
        char *app_id;
        char *name;               /* NULL: bulk */
        char **metadata;
        SecretDoneFn done;
        void *userdata;
        bool cancelled;           /* the caller is gone: no done */
        uint64_t start_usec;      /* for dapr_component_secret_latencies */
        sd_event_source *defer;   /* non-blocking drivers */
        /* filled by the driver (on the worker thread for blocking ones) */
        int error;
        char *message;
        SecretData data;
        SecretCall *next;
};

const char *secret_store_name(const SecretStore *s) {
        return s->component->name;
}

bool secret_store_multi_valued(const SecretStore *s) {
        if (s->driver->features & SECRET_FEATURE_MULTIPLE_KEY_VALUES)
                return true;
        /* local.file decides per component */
        const char *mv = component_get_string(s->component, "multiValued");
        return streq(s->driver->type, "secretstores.local.file") && mv && parse_boolean(mv) > 0;
}

int secret_store_open(Registry *r, Component *c, SecretStore **ret, char **reterr_msg) {
        const SecretDriver *d = secret_driver_find(c->type);
        SecretStore *s;
        int k;

        if (!d) {
                *reterr_msg = secret_msg("unknown secret store type '%s' (this mooringd has no such driver)", c->type);
                return -EOPNOTSUPP;
        }
        s = calloc(1, d->instance_size);
        if (!s)
                return -ENOMEM;
        s->driver = d;
        s->component = component_ref(c);
        s->registry = r;
        if (d->blocking) {
                s->work = work_queue_new(r->event);
                if (!s->work) {
                        k = -errno;
                        component_unref(s->component);
                        free(s);
                        return k;
                }
        }
        k = d->open(s, c, reterr_msg);
        if (k < 0) {
                s->work = work_queue_free(s->work);
                d->close(s);
                component_unref(s->component);
                free(s);
                return k;
        }
        *ret = s;
        return 0;
}

static void call_unlink(SecretCall *call) {
        SecretStore *s = call->store;
        if (!s)
                return;
        for (SecretCall **p = &s->calls; *p; p = &(*p)->next)
                if (*p == call) {
                        *p = call->next;
                        break;
                }
        call->store = NULL;
}

static SecretCall *call_free(SecretCall *call) {
        if (!call)
                return NULL;
        call_unlink(call);
        sd_event_source_disable_unref(call->defer);
        secret_data_done(&call->data);
        free(call->app_id);
        erase_and_free(call->name);
        strv_free(call->metadata);
        free(call->message);
        free(call);
        return NULL;
}

SecretStore *secret_store_close(SecretStore *s) {
        if (!s)
                return NULL;
        /* Calls not yet started never start; each caller still waiting hears -ECANCELED. */
        __atomic_store_n(&s->closing, true, __ATOMIC_RELEASE);
        /* Joins the worker: the done of each job runs (and answers or frees its call) before this returns. */
        s->work = work_queue_free(s->work);
        while (s->calls) {
                SecretCall *c = s->calls;
                if (!c->cancelled)
                        c->done(-ECANCELED, "the secret store was closed", NULL, c->userdata);
                call_free(c);
        }
        s->driver->close(s);
        component_unref(s->component);
        free(s);
        return NULL;
}

int secrets_lookup(Registry *r, const char *name, const char *app_id, SecretStore **ret, const char **ret_error) {
        bool any = false;

        for (size_t i = 0; i < r->n_components; i++) {
                const Component *c = r->components[i];
                if (!component_is_category(c, "secretstores"))
                        continue;
                any = true;
                if (!streq(c->name, name) || !component_in_scope(c, app_id))
                        continue;
                for (size_t j = 0; j < r->n_secret_stores; j++)
                        if (streq(secret_store_name(r->secret_stores[j]), name)) {
                                *ret = r->secret_stores[j];
                                return 0;
                        }
                if (ret_error)
                        *ret_error = registry_component_error(r, name);
                return -EIO;
        }
        return any ? -ENXIO : -ENODEV;
}

int secrets_check_scope(Registry *r, const char *app_id, const char *store, const char *secret,
                        const char **ret_error) {
        const Configuration *conf = NULL;
        App *a = app_id ? registry_find_app(r, app_id) : NULL;
        int k;

        if (!a)
                return -ENOENT;
        k = registry_app_configuration(r, a, &conf, ret_error);
        if (k < 0)
                return k;
        return secret_scope_check(conf, store, secret) == SECRET_ACCESS_ALLOW ? 0 : -EACCES;
}

/* On the loop: hand the outcome to the caller (bulk: what the caller's scopes let through). */
/* dapr_component_secret_count/_latencies of the calling app: the driver's outcome, before scoping */
static void call_metrics(SecretCall *call) {
        App *a = call->app_id ? registry_find_app(call->store->registry, call->app_id) : NULL;
        if (a)
                metrics_component_op(a->metrics, METRICS_SECRET, secret_store_name(call->store),
                                     call->name ? "get" : "bulk_get", NULL, call->error < 0 ? "false" : "true",
                                     metrics_now_usec() - call->start_usec);
}

static void call_answer(SecretCall *call) {
        call_metrics(call);
        if (!call->cancelled && call->error == 0 && !call->name) {
                Registry *r = call->store->registry;
                SecretData *d = &call->data;
                size_t kept = 0;
                const char *why = NULL;

                /* The app's Configuration as it is now; a broken one lets nothing through (fail closed). */
                for (size_t i = 0; i < d->n; i++) {
                        SecretEntry *it = &d->items[i];
                        if (secrets_check_scope(r, call->app_id, secret_store_name(call->store), it->name, &why) == 0) {
                                d->items[kept++] = *it;
                                continue;
                        }
                        explicit_wipe(it->value, it->value_len);
                        free(it->value);
                        erase_and_free(it->name);
                        erase_and_free(it->key);
                }
                d->n = kept;
        }
        if (!call->cancelled)
                call->done(call->error, call->message, call->error == 0 ? &call->data : NULL, call->userdata);
        call_free(call);
}

/* The driver's part: on the loop for drivers that do not block, on the worker thread for the others. */
static void call_run(void *userdata) {
        SecretCall *call = userdata;
        SecretStore *s = call->store;
        if (__atomic_load_n(&call->cancelled, __ATOMIC_ACQUIRE) || __atomic_load_n(&s->closing, __ATOMIC_ACQUIRE)) {
                call->error = -ECANCELED;
                return;
        }
        if (call->name)
                call->error = s->driver->get(s, call->name, call->metadata, &call->data, &call->message);
        else
                call->error = s->driver->bulk(s, call->metadata, &call->data, &call->message);
        if (call->error < 0)
                secret_data_done(&call->data);
        else
                secret_data_sort(&call->data);
}

static void on_work_done(void *userdata) {
        SecretCall *call = userdata;
        if (call->cancelled)
                call_free(call); /* the caller left: nothing to answer */
        else if (call->store->closing) {
                call->done(-ECANCELED, "the secret store was closed", NULL, call->userdata);
                call_free(call);
        } else
                call_answer(call);
}

static int on_defer(sd_event_source *src, void *userdata) {
        SecretCall *call = userdata;
        call->defer = sd_event_source_disable_unref(call->defer);
        call_run(call);
        call_answer(call);
        return 0;
}

static int call_start(SecretStore *s, const char *app_id, const char *name, char *const *metadata,
                      SecretDoneFn done, void *userdata) {
        SecretCall *call = calloc(1, sizeof *call);
        int k;

        if (!call)
                return -ENOMEM;
        call->store = s;
        call->done = done;
        call->userdata = userdata;
        call->start_usec = metrics_now_usec();
        call->app_id = app_id ? strdup(app_id) : NULL;
        call->name = name ? strdup(name) : NULL;
        if ((app_id && !call->app_id) || (name && !call->name) || strv_copy(metadata, &call->metadata) < 0) {
                call->store = NULL;
                call_free(call);
                return -ENOMEM;
        }
        if (s->work)
                k = work_queue_submit(s->work, call_run, on_work_done, call);
        else
                k = sd_event_add_defer(s->registry->event, &call->defer, on_defer, call);
        if (k < 0) {
                call->store = NULL;
                call_free(call);
                return k;
        }
        call->next = s->calls;
        s->calls = call;
        return 0;
}

int secrets_get(SecretStore *s, const char *app_id, const char *name, char *const *metadata, SecretDoneFn done,
                void *userdata) {
        const char *why = NULL;
        int k = secrets_check_scope(s->registry, app_id, secret_store_name(s), name, &why);
        if (k < 0)
                return k == -EINVAL || k == -ENOMEM ? k : -EACCES;
        return call_start(s, app_id, name, metadata, done, userdata);
}

int secrets_bulk(SecretStore *s, const char *app_id, char *const *metadata, SecretDoneFn done, void *userdata) {
        return call_start(s, app_id, NULL, metadata, done, userdata);
}

void secrets_cancel(SecretStore *s, void *userdata) {
        for (SecretCall *c = s->calls; c; c = c->next)
                if (c->userdata == userdata)
                        __atomic_store_n(&c->cancelled, true, __ATOMIC_RELEASE);
}

/* ---- secretKeyRef at load time ---- */

typedef struct ResolveJob {
        SecretStore *s;
        const char *name;
        SecretData data;
        char *message;
        int error;
} ResolveJob;

static void *resolve_thread(void *userdata) {
        ResolveJob *j = userdata;
        j->error = j->s->driver->get(j->s, j->name, NULL, &j->data, &j->message);
        return NULL;
}

int secrets_resolve(Registry *r, const char *store_name, const char *name, const char *key, char **ret,
                    char **reterr_msg) {
        ResolveJob j = { .name = name };
        const SecretEntry *it;

        for (size_t i = 0; i < r->n_secret_stores && !j.s; i++)
                if (streq(secret_store_name(r->secret_stores[i]), store_name))
                        j.s = r->secret_stores[i];
        if (!j.s) {
                const char *why = registry_component_error(r, store_name);
                *reterr_msg = why ? secret_msg("secret store '%s' did not open: %s", store_name, why)
                                  : secret_msg("no secret store named '%s'", store_name);
                return -ENOENT;
        }
        if (j.s->driver->blocking) {
                pthread_t t;
                int k = pthread_create(&t, NULL, resolve_thread, &j);
                if (k != 0)
                        return -k;
                pthread_join(t, NULL);
        } else
                resolve_thread(&j);
        if (j.error < 0) {
                secret_data_done(&j.data);
                *reterr_msg = j.message;
                return j.error;
        }
        free(j.message);
        it = secret_data_find(&j.data, name, key ?: name);
        if (!it) {
                secret_data_done(&j.data);
                *reterr_msg = secret_msg("secret '%s' has no key '%s'", name, key ?: name);
                return -ENOENT;
        }
        *ret = strdup(it->value);
        secret_data_done(&j.data);
        return *ret ? 0 : -ENOMEM;
}
