/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: the transport-independent model (status, apps, components,
 * state values).
 *
 * Lists own copies of every string; a NULL input string is stored as "" so
 * printers never test for NULL. The _add functions leave the list unchanged
 * when they fail.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

void ctl_status_done(CtlStatus *s) {
        free(s->version);
        free(s->state);
        *s = (CtlStatus) {};
}

/* Fill an empty *s with copies of the given values; -ENOMEM leaves it empty. */
int ctl_status_set(CtlStatus *s, const char *version, const char *state,
                   uint64_t n_apps, uint64_t n_components) {
        _cleanup_free_ char *v = strdup(strempty(version));
        _cleanup_free_ char *st = strdup(strempty(state));

        if (!v || !st)
                return -ENOMEM;
        ctl_status_done(s);
        s->version = TAKE_PTR(v);
        s->state = TAKE_PTR(st);
        s->n_apps = n_apps;
        s->n_components = n_components;
        return 0;
}

static void app_done(CtlApp *a) {
        free(a->id);
        free(a->app_address);
        free(a->http_socket);
        free(a->health);
        free(a->grpc_socket);
}

void ctl_app_list_done(CtlAppList *l) {
        for (size_t i = 0; i < l->n; i++)
                app_done(&l->items[i]);
        free(l->items);
        *l = (CtlAppList) {};
}

/* Append a copy of one app to *l. Returns 0 or -ENOMEM. */
int ctl_app_list_add(CtlAppList *l, const char *id, const char *app_address,
                     const char *http_socket, uint16_t http_port, const char *health) {
        CtlApp a = {
                .id = strdup(strempty(id)),
                .app_address = strdup(strempty(app_address)),
                .http_socket = strdup(strempty(http_socket)),
                .http_port = http_port,
                .health = strdup(strempty(health)),
        };
        CtlApp *items;

        if (!a.id || !a.app_address || !a.http_socket || !a.health)
                goto oom;
        items = reallocarray(l->items, l->n + 1, sizeof(CtlApp));
        if (!items)
                goto oom;
        l->items = items;
        l->items[l->n++] = a;
        return 0;
oom:
        app_done(&a);
        return -ENOMEM;
}

static int app_cmp(const void *a, const void *b) {
        const CtlApp *x = a, *y = b;

        return strcmp(x->id, y->id);
}

void ctl_app_list_sort(CtlAppList *l) {
        if (l->n > 1)
                qsort(l->items, l->n, sizeof(CtlApp), app_cmp);
}

static void component_done(CtlComponent *c) {
        free(c->name);
        free(c->type);
        free(c->version);
        free(c->file);
        free(c->error);
}

void ctl_component_list_done(CtlComponentList *l) {
        for (size_t i = 0; i < l->n; i++)
                component_done(&l->items[i]);
        free(l->items);
        *l = (CtlComponentList) {};
}

/* Append a copy of one component to *l. Returns 0 or -ENOMEM. */
int ctl_component_list_set_error(CtlComponentList *l, const char *name, const char *error) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i].name, name)) {
                        char *e = strdup(error);
                        if (!e)
                                return -ENOMEM;
                        free(l->items[i].error);
                        l->items[i].error = e;
                }
        return 0;
}

int ctl_component_list_add(CtlComponentList *l, const char *name, const char *type,
                           const char *version, const char *file) {
        CtlComponent c = {
                .name = strdup(strempty(name)),
                .type = strdup(strempty(type)),
                .version = strdup(strempty(version)),
                .file = strdup(strempty(file)),
                .error = strdup(""),
        };
        CtlComponent *items;

        if (!c.name || !c.type || !c.version || !c.file || !c.error)
                goto oom;
        items = reallocarray(l->items, l->n + 1, sizeof(CtlComponent));
        if (!items)
                goto oom;
        l->items = items;
        l->items[l->n++] = c;
        return 0;
oom:
        component_done(&c);
        return -ENOMEM;
}

static int component_cmp(const void *a, const void *b) {
        const CtlComponent *x = a, *y = b;
        int r = strcmp(x->name, y->name);

        return r != 0 ? r : strcmp(x->type, y->type);
}

/* Sort by name (then type), so output does not depend on load order. */
void ctl_component_list_sort(CtlComponentList *l) {
        if (l->n > 1)
                qsort(l->items, l->n, sizeof(CtlComponent), component_cmp);
}

void ctl_state_value_done(CtlStateValue *v) {
        free(v->data);
        free(v->etag);
        *v = (CtlStateValue) {};
}

/*
 * Fill an empty *v with a copy of size bytes at data (any bytes, NUL
 * included; a NUL is added after them) and of etag. -ENOMEM leaves it empty.
 */
int ctl_state_value_set(CtlStateValue *v, const void *data, size_t size, const char *etag) {
        _cleanup_free_ char *d = NULL;
        _cleanup_free_ char *e = strdup(strempty(etag));

        if (size == SIZE_MAX)
                return -ENOMEM;
        d = malloc(size + 1);
        if (!d || !e)
                return -ENOMEM;
        if (size > 0)
                memcpy(d, data, size);
        d[size] = '\0';
        ctl_state_value_done(v);
        v->data = TAKE_PTR(d);
        v->size = size;
        v->etag = TAKE_PTR(e);
        return 0;
}

static void subscription_done(CtlSubscription *s) {
        free(s->app);
        free(s->pubsub);
        free(s->topic);
        free(s->route);
        free(s->kind);
}

void ctl_subscription_list_done(CtlSubscriptionList *l) {
        for (size_t i = 0; i < l->n; i++)
                subscription_done(&l->items[i]);
        free(l->items);
        *l = (CtlSubscriptionList) {};
}

/* Append a copy of one subscription to *l (NULL strings become ""). Returns 0 or -ENOMEM. */
int ctl_subscription_list_add(CtlSubscriptionList *l, const char *app, const char *pubsub, const char *topic,
                              const char *route, const char *kind) {
        CtlSubscription s = {
                .app = strdup(strempty(app)),
                .pubsub = strdup(strempty(pubsub)),
                .topic = strdup(strempty(topic)),
                .route = strdup(strempty(route)),
                .kind = strdup(strempty(kind)),
        };
        CtlSubscription *items;

        if (!s.app || !s.pubsub || !s.topic || !s.route || !s.kind)
                goto oom;
        items = reallocarray(l->items, l->n + 1, sizeof(CtlSubscription));
        if (!items)
                goto oom;
        l->items = items;
        l->items[l->n++] = s;
        return 0;
oom:
        subscription_done(&s);
        return -ENOMEM;
}

static int subscription_cmp(const void *a, const void *b) {
        const CtlSubscription *x = a, *y = b;
        int r = strcmp(x->pubsub, y->pubsub);

        if (r == 0)
                r = strcmp(x->topic, y->topic);
        if (r == 0)
                r = strcmp(x->app, y->app);
        if (r == 0)
                r = strcmp(x->kind, y->kind);
        return r != 0 ? r : strcmp(x->route, y->route);
}

/* Sort by pubsub, topic, app, kind and route, so output does not depend on the daemon's order. */
void ctl_subscription_list_sort(CtlSubscriptionList *l) {
        if (l->n > 1)
                qsort(l->items, l->n, sizeof(CtlSubscription), subscription_cmp);
}
