/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The core registry: apps kept sorted and found by id, and the callback
 * lists through which the layers above hear about apps (health changed,
 * removed). The health test drives a real app channel: probes through the
 * transport against a Unix socket path where first nothing listens (the app
 * turns unhealthy) and then a small HTTP server of this test answers (it
 * turns healthy), each transition reaching the registered callbacks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "core/app-config.h"
#include "core/app.h"
#include "core/registry.h"
#include "transport/app-channel.h"
#include "transport/transport.h"
#include "util/cleanup.h"
#include "tests.h"

#define CALLS_MAX 16

/* What the callbacks saw, in order. */
typedef struct Seen {
        Registry *r;
        struct {
                char who;
                RegistryEvent ev;
                App *app;
                AppHealth health;
                bool linked;      /* a->registry set while the callback ran */
        } calls[CALLS_MAX];
        size_t n;
        /* what a callback does to the lists while it runs */
        RegistryAppFn remove_fn;
        void *remove_ud;
        RegistryAppFn add_fn;
        void *add_ud;
} Seen;

typedef struct Hook {
        Seen *seen;
        char who;
        RegistryEvent ev;
        bool remove_self;
        bool remove_other;
        bool add_other;
} Hook;

static void record(Registry *r, App *a, void *userdata) {
        Hook *h = userdata;
        Seen *s = h->seen;
        ASSERT_TRUE(s->n < CALLS_MAX);
        ASSERT_TRUE(r == s->r);
        s->calls[s->n].who = h->who;
        s->calls[s->n].ev = h->ev;
        s->calls[s->n].app = a;
        s->calls[s->n].health = a->health;
        s->calls[s->n].linked = a->registry == r;
        s->n++;
        if (h->remove_self)
                ASSERT_OK(registry_remove_callback(r, h->ev, record, h));
        if (h->remove_other)
                ASSERT_OK(registry_remove_callback(r, h->ev, s->remove_fn, s->remove_ud));
        if (h->add_other)
                ASSERT_OK(registry_add_callback(r, h->ev, s->add_fn, s->add_ud));
}

static App *app_make(const char *id, const char *address) {
        AppConfig *c = app_config_new(id);
        _cleanup_free_ char *msg = NULL;
        ASSERT_NOT_NULL(c);
        if (address)
                ASSERT_OK(app_config_set(c, "AppAddress", address, &msg));
        App *a = app_new(c, APP_SOURCE_FILE);
        ASSERT_NOT_NULL(a);
        return a;
}

TEST(apps_sorted_found_removed) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        Registry *r = registry_new(e);
        ASSERT_NOT_NULL(r);
        const char *ids[] = { "orders", "billing", "zeta", "alpha" };
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                App *a = app_make(ids[i], NULL);
                ASSERT_OK(registry_add_app(r, a));
                ASSERT_TRUE(a->registry == r);
                app_unref(a); /* the registry holds its own */
        }
        App *dup = app_make("orders", NULL);
        ASSERT_ERROR(registry_add_app(r, dup), EEXIST);
        ASSERT_NULL(dup->registry);
        app_unref(dup);

        ASSERT_EQ(r->n_apps, 4);
        ASSERT_STREQ(r->apps[0]->config->id, "alpha");
        ASSERT_STREQ(r->apps[1]->config->id, "billing");
        ASSERT_STREQ(r->apps[2]->config->id, "orders");
        ASSERT_STREQ(r->apps[3]->config->id, "zeta");
        ASSERT_NULL(registry_find_app(r, "nope"));
        App *b = registry_find_app(r, "billing");
        ASSERT_NOT_NULL(b);
        ASSERT_STREQ(b->config->id, "billing");

        b = registry_remove_app(r, b);
        ASSERT_NULL(b->registry);
        ASSERT_NULL(registry_find_app(r, "billing"));
        ASSERT_EQ(r->n_apps, 3);
        app_unref(b); /* the registry's reference came back to us */
        ASSERT_NOT_NULL(registry_find_app(r, "zeta"));
        r = registry_free(r);
}

TEST(callbacks_run_in_order_and_go_away) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        Registry *r = registry_new(e);
        ASSERT_NOT_NULL(r);
        Seen s = { .r = r };
        Hook h1 = { &s, '1', REGISTRY_APP_HEALTH_CHANGED }, h2 = { &s, '2', REGISTRY_APP_HEALTH_CHANGED };
        Hook gone = { &s, 'g', REGISTRY_APP_REMOVED };

        ASSERT_OK(registry_add_callback(r, REGISTRY_APP_HEALTH_CHANGED, record, &h1));
        ASSERT_OK(registry_add_callback(r, REGISTRY_APP_HEALTH_CHANGED, record, &h2));
        ASSERT_ERROR(registry_add_callback(r, REGISTRY_APP_HEALTH_CHANGED, record, &h1), EEXIST);
        ASSERT_OK(registry_add_callback(r, REGISTRY_APP_REMOVED, record, &gone));

        App *a = app_make("orders", NULL);
        ASSERT_OK(registry_add_app(r, a));
        a->health = APP_HEALTH_HEALTHY;
        registry_notify(r, REGISTRY_APP_HEALTH_CHANGED, a);
        ASSERT_EQ(s.n, 2);
        ASSERT_EQ(s.calls[0].who, '1');
        ASSERT_EQ(s.calls[1].who, '2');
        ASSERT_EQ(s.calls[1].health, APP_HEALTH_HEALTHY);
        ASSERT_TRUE(s.calls[0].app == a);

        /* Removal: the removed-hooks run (the app still linked), the health ones do not. */
        App *back = registry_remove_app(r, a);
        ASSERT_TRUE(back == a);
        ASSERT_EQ(s.n, 3);
        ASSERT_EQ(s.calls[2].who, 'g');
        ASSERT_EQ(s.calls[2].ev, REGISTRY_APP_REMOVED);
        ASSERT_TRUE(s.calls[2].linked);
        ASSERT_NULL(a->registry);
        app_unref(back); /* the registry's reference; ours (from app_make) stays */

        /* Unregistered: no more calls. */
        ASSERT_OK(registry_remove_callback(r, REGISTRY_APP_HEALTH_CHANGED, record, &h1));
        ASSERT_ERROR(registry_remove_callback(r, REGISTRY_APP_HEALTH_CHANGED, record, &h1), ENOENT);
        registry_notify(r, REGISTRY_APP_HEALTH_CHANGED, a);
        ASSERT_EQ(s.n, 4);
        ASSERT_EQ(s.calls[3].who, '2');
        app_unref(a);
        r = registry_free(r); /* frees the hooks still there */
}

TEST(unregister_inside_a_callback) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        Registry *r = registry_new(e);
        ASSERT_NOT_NULL(r);
        Seen s = { .r = r };
        const RegistryEvent ev = REGISTRY_APP_HEALTH_CHANGED;
        /* 1 removes itself and 3; 2 adds 4. Expected: 1, 2 now (3 removed before its turn, 4 added
         * during the dispatch); then 2, 4. */
        Hook h1 = { &s, '1', ev, .remove_self = true, .remove_other = true };
        Hook h2 = { &s, '2', ev, .add_other = true };
        Hook h3 = { &s, '3', ev }, h4 = { &s, '4', ev };
        s.remove_fn = record;
        s.remove_ud = &h3;
        s.add_fn = record;
        s.add_ud = &h4;
        ASSERT_OK(registry_add_callback(r, ev, record, &h1));
        ASSERT_OK(registry_add_callback(r, ev, record, &h2));
        ASSERT_OK(registry_add_callback(r, ev, record, &h3));

        App *a = app_make("orders", NULL);
        ASSERT_OK(registry_add_app(r, a));
        registry_notify(r, ev, a);
        ASSERT_EQ(s.n, 2);
        ASSERT_EQ(s.calls[0].who, '1');
        ASSERT_EQ(s.calls[1].who, '2');

        h2.add_other = false;
        registry_notify(r, ev, a);
        ASSERT_EQ(s.n, 4);
        ASSERT_EQ(s.calls[2].who, '2');
        ASSERT_EQ(s.calls[3].who, '4');

        /* A removed-hook that unregisters itself while the app leaves. */
        Hook once = { &s, 'o', REGISTRY_APP_REMOVED, .remove_self = true };
        ASSERT_OK(registry_add_callback(r, REGISTRY_APP_REMOVED, record, &once));
        app_unref(registry_remove_app(r, a));
        ASSERT_EQ(s.n, 5);
        ASSERT_EQ(s.calls[4].who, 'o');
        ASSERT_ERROR(registry_remove_callback(r, REGISTRY_APP_REMOVED, record, &once), ENOENT);
        app_unref(a);
        r = registry_free(r);
}

/* ---- health transitions through the real app channel ---- */

typedef struct Server {
        int fd;
        sd_event_source *src;
        unsigned answered;
} Server;

static int on_conn(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Server *sv = userdata;
        static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        char buf[4096];
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
                return 0;
        /* A probe is one small GET: read it (blocking is fine, it is already sent), answer, close. */
        ssize_t n = read(c, buf, sizeof buf);
        if (n > 0 && write(c, answer, sizeof answer - 1) == (ssize_t) sizeof answer - 1)
                sv->answered++;
        close(c);
        return 0;
}

/* Runs the loop until the callbacks saw want calls (the probes' own timers drive it). The bound
 * only keeps a broken build from hanging the suite: 3000 turns of at most 100 ms each. */
static void run_until(sd_event *e, Seen *s, size_t want) {
        for (unsigned i = 0; s->n < want; i++) {
                ASSERT_TRUE(i < 3000);
                ASSERT_TRUE(sd_event_run(e, 100 * 1000) >= 0);
        }
}

TEST(health_transitions_reach_the_callbacks) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        char dir[] = "/tmp/test-registry-XXXXXX", path[128], address[160];
        ASSERT_OK(sd_event_new(&e));
        ASSERT_NOT_NULL(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/app.sock", dir);
        snprintf(address, sizeof address, "unix:%s", path);

        Registry *r = registry_new(e);
        ASSERT_NOT_NULL(r);
        r->transport = transport_new(e);
        ASSERT_NOT_NULL(r->transport);
        Seen s = { .r = r };
        Hook h = { &s, 'h', REGISTRY_APP_HEALTH_CHANGED }, g = { &s, 'g', REGISTRY_APP_REMOVED };
        ASSERT_OK(registry_add_callback(r, REGISTRY_APP_HEALTH_CHANGED, record, &h));
        ASSERT_OK(registry_add_callback(r, REGISTRY_APP_REMOVED, record, &g));

        App *a = app_make("orders", address);
        _cleanup_free_ char *msg = NULL;
        ASSERT_OK(app_config_set(a->config, "HealthProbeInterval", "100ms", &msg));
        ASSERT_OK(registry_add_app(r, a));
        app_unref(a);
        ASSERT_OK(app_channel_probe_start(r, a));

        /* Nothing listens: the first failed probe makes the unknown app unhealthy. */
        run_until(e, &s, 1);
        ASSERT_EQ(s.calls[0].who, 'h');
        ASSERT_EQ(s.calls[0].health, APP_HEALTH_UNHEALTHY);

        /* Now the app answers: the next probe makes it healthy. */
        Server sv = {};
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy(sa.sun_path, path);
        sv.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ASSERT_TRUE(sv.fd >= 0);
        ASSERT_OK(bind(sv.fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(listen(sv.fd, 16));
        ASSERT_OK(sd_event_add_io(e, &sv.src, sv.fd, EPOLLIN, on_conn, &sv));
        run_until(e, &s, 2);
        ASSERT_EQ(s.calls[1].who, 'h');
        ASSERT_EQ(s.calls[1].health, APP_HEALTH_HEALTHY);
        ASSERT_TRUE(sv.answered >= 1);

        /* Removal reaches its callback; a probe answered afterwards changes nothing. */
        app_channel_probe_stop(a);
        App *back = registry_remove_app(r, a);
        ASSERT_EQ(s.n, 3);
        ASSERT_EQ(s.calls[2].who, 'g');
        app_unref(back);

        sv.src = sd_event_source_disable_unref(sv.src);
        close(sv.fd);
        unlink(path);
        rmdir(dir);
        r->transport = transport_free(r->transport);
        r = registry_free(r);
}
