/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for core/membership.c, the engine-independent part of cluster
 * membership: the view (self always in it, sorted, lists normalized), leases
 * counted on the local clock, the generation and the coalesced change
 * callbacks, and the record format engines carry. A driver defined here
 * feeds records as an engine would; the loop is a real sd-event loop.
 */
#include <systemd/sd-event.h>
#include <unistd.h>

#include "core/membership.h"
#include "drivers/membership/driver.h"
#include "util/strv.h"
#include "tests.h"

static unsigned published;

static int t_open(MembershipBackend *b, const MembershipOptions *o, char **reterr_msg) {
        return 0;
}
static void t_close(MembershipBackend *b) {
}
static void t_publish(MembershipBackend *b) {
        published++;
}

static const MembershipDriver test_driver = {
        .name = "test",
        .abi = MEMBERSHIP_DRIVER_ABI,
        .instance_size = sizeof(MembershipBackend),
        .open = t_open,
        .close = t_close,
        .publish = t_publish,
};

static Membership *new_membership(sd_event *e, const char *id) {
        MembershipOptions o = { .host_id = id, .address = "127.0.0.1:7000", .lease_usec = 5000000 };
        Membership *m = NULL;
        ASSERT_OK(membership_new_with_driver(e, &test_driver, &o, &m));
        ASSERT_NOT_NULL(m);
        return m;
}

static void feed(Membership *m, const char *json, uint64_t lease_left) {
        MemberRecord r = {};
        ASSERT_OK(member_record_parse(json, strlen(json), &r));
        membership_backend_seen(membership_get_backend(m), &r, lease_left);
        member_record_done(&r);
}

typedef struct Counter {
        unsigned calls;
        uint64_t last_generation;
        Membership *remove_self_from; /* set: the callback removes itself */
} Counter;

static void on_changed(Membership *m, void *userdata) {
        Counter *c = userdata;
        c->calls++;
        c->last_generation = membership_generation(m);
        if (c->remove_self_from)
                ASSERT_OK(membership_remove_callback(m, on_changed, c));
}

/* Runs the loop until nothing is pending right now (defer sources included). */
static void run_pending(sd_event *e) {
        while (sd_event_run(e, 0) > 0)
                ;
}

TEST(self_alone) {
        sd_event *e = NULL;
        size_t n;
        ASSERT_OK(sd_event_new(&e));
        Membership *m = new_membership(e, "h2");
        const ClusterHost *h = membership_hosts(m, &n);
        ASSERT_EQ(n, 1u);
        ASSERT_STREQ(h[0].id, "h2");
        ASSERT_STREQ(h[0].address, "127.0.0.1:7000");
        ASSERT_TRUE(h[0].self);
        ASSERT_NOT_NULL(h[0].apps);
        ASSERT_NULL(h[0].apps[0]);
        ASSERT_NOT_NULL(membership_find(m, "h2"));
        ASSERT_NULL(membership_find(m, "h1"));
        ASSERT_STREQ(membership_engine(m), "test");
        membership_free(m);
        sd_event_unref(e);
}

TEST(bad_settings) {
        sd_event *e = NULL;
        Membership *m = NULL;
        ASSERT_OK(sd_event_new(&e));
        MembershipOptions o = { .host_id = "bad id", .address = "127.0.0.1:7000" };
        ASSERT_ERROR(membership_new_with_driver(e, NULL, &o, &m), EINVAL);
        o = (MembershipOptions){ .host_id = "h1", .address = "nowhere" };
        ASSERT_ERROR(membership_new_with_driver(e, NULL, &o, &m), EINVAL);
        ASSERT_NULL(m);
        sd_event_unref(e);
}

TEST(hosts_sorted_and_normalized) {
        sd_event *e = NULL;
        size_t n;
        ASSERT_OK(sd_event_new(&e));
        Membership *m = new_membership(e, "h2");
        uint64_t g0 = membership_generation(m);

        feed(m, "{\"id\":\"h3\",\"address\":\"[::1]:7003\",\"apps\":[\"b\",\"a\",\"b\"],\"actorTypes\":[\"T\"]}",
             5000000);
        feed(m, "{\"id\":\"h1\",\"address\":\"127.0.0.1:7001\"}", 5000000);
        const ClusterHost *h = membership_hosts(m, &n);
        ASSERT_EQ(n, 3u);
        ASSERT_STREQ(h[0].id, "h1");
        ASSERT_STREQ(h[1].id, "h2");
        ASSERT_TRUE(h[1].self);
        ASSERT_STREQ(h[2].id, "h3");
        ASSERT_TRUE(!h[2].self);
        ASSERT_EQ(strv_length(h[2].apps), 2u);
        ASSERT_STREQ(h[2].apps[0], "a");
        ASSERT_STREQ(h[2].apps[1], "b");
        ASSERT_STREQ(h[2].actor_types[0], "T");
        ASSERT_NULL(h[0].apps[0]);
        ASSERT_TRUE(membership_generation(m) > g0);
        ASSERT_STREQ(membership_find(m, "h3")->address, "[::1]:7003");

        /* our own record coming back from the engine changes nothing (from another address it is
         * another daemon with our id: same_host_id_elsewhere) */
        uint64_t g1 = membership_generation(m);
        feed(m, "{\"id\":\"h2\",\"address\":\"127.0.0.1:7000\",\"apps\":[\"x\"]}", 5000000);
        ASSERT_EQ(membership_generation(m), g1);
        ASSERT_NULL(membership_find(m, "h2")->apps[0]);
        ASSERT_NULL(membership_self_conflict(m));
        membership_free(m);
        sd_event_unref(e);
}

TEST(generation_and_callbacks) {
        sd_event *e = NULL;
        Counter c = {}, c2 = {};
        ASSERT_OK(sd_event_new(&e));
        Membership *m = new_membership(e, "h1");
        ASSERT_OK(membership_add_callback(m, on_changed, &c));
        ASSERT_ERROR(membership_add_callback(m, on_changed, &c), EEXIST);
        ASSERT_OK(membership_add_callback(m, on_changed, &c2));

        /* two changes in one iteration: one run of each callback, which sees the newest generation */
        feed(m, "{\"id\":\"h2\",\"address\":\"127.0.0.1:7002\",\"apps\":[\"a\"]}", 5000000);
        feed(m, "{\"id\":\"h3\",\"address\":\"127.0.0.1:7003\"}", 5000000);
        ASSERT_EQ(c.calls, 0u);
        run_pending(e);
        ASSERT_EQ(c.calls, 1u);
        ASSERT_EQ(c2.calls, 1u);
        ASSERT_EQ(c.last_generation, membership_generation(m));

        /* a renewal that changes nothing: no bump, no callback */
        uint64_t g = membership_generation(m);
        feed(m, "{\"id\":\"h2\",\"address\":\"127.0.0.1:7002\",\"apps\":[\"a\"],\"generation\":9}", 5000000);
        run_pending(e);
        ASSERT_EQ(membership_generation(m), g);
        ASSERT_EQ(c.calls, 1u);

        /* its apps changed: a change */
        feed(m, "{\"id\":\"h2\",\"address\":\"127.0.0.1:7002\",\"apps\":[]}", 5000000);
        ASSERT_TRUE(membership_generation(m) > g);
        ASSERT_NULL(membership_find(m, "h2")->apps[0]);

        /* a callback that removes itself runs this once and never again; the other goes on */
        c2.remove_self_from = m;
        run_pending(e);
        ASSERT_EQ(c.calls, 2u);
        ASSERT_EQ(c2.calls, 2u);
        membership_backend_gone(membership_get_backend(m), "h3");
        ASSERT_NULL(membership_find(m, "h3"));
        run_pending(e);
        ASSERT_EQ(c.calls, 3u);
        ASSERT_EQ(c2.calls, 2u);
        ASSERT_ERROR(membership_remove_callback(m, on_changed, &c2), ENOENT);
        ASSERT_OK(membership_remove_callback(m, on_changed, &c));
        membership_free(m);
        sd_event_unref(e);
}

TEST(set_apps_publishes_on_change_only) {
        sd_event *e = NULL;
        Counter c = {};
        char *apps[] = { (char *) "orders", (char *) "billing", NULL };
        char *same[] = { (char *) "billing", (char *) "orders", (char *) "orders", NULL };
        char *bad[] = { (char *) "", NULL };
        ASSERT_OK(sd_event_new(&e));
        Membership *m = new_membership(e, "h1");
        ASSERT_OK(membership_add_callback(m, on_changed, &c));
        published = 0;

        ASSERT_OK(membership_set_apps(m, apps));
        ASSERT_EQ(published, 1u);
        const ClusterHost *self = membership_find(m, "h1");
        ASSERT_STREQ(self->apps[0], "billing");
        ASSERT_STREQ(self->apps[1], "orders");
        ASSERT_NULL(self->apps[2]);
        ASSERT_OK(membership_set_apps(m, same));
        ASSERT_EQ(published, 1u);
        ASSERT_ERROR(membership_set_apps(m, bad), EINVAL);
        ASSERT_EQ(strv_length(membership_find(m, "h1")->apps), 2u);
        ASSERT_OK(membership_set_actor_types(m, (char *[]){ (char *) "Cart", NULL }));
        ASSERT_EQ(published, 2u);
        run_pending(e);
        ASSERT_EQ(c.calls, 1u);

        /* the self record as the engines carry it */
        _cleanup_free_ char *json = membership_self_json(m);
        MemberRecord r = {};
        ASSERT_OK(member_record_parse(json, strlen(json), &r));
        ASSERT_STREQ(r.id, "h1");
        ASSERT_STREQ(r.apps[1], "orders");
        ASSERT_STREQ(r.actor_types[0], "Cart");
        ASSERT_TRUE(r.generation >= 3);
        member_record_done(&r);
        membership_free(m);
        sd_event_unref(e);
}

TEST(sync_drops_unseen) {
        sd_event *e = NULL;
        size_t n;
        ASSERT_OK(sd_event_new(&e));
        Membership *m = new_membership(e, "h1");
        MembershipBackend *b = membership_get_backend(m);
        feed(m, "{\"id\":\"h2\",\"address\":\"127.0.0.1:7002\"}", 5000000);
        feed(m, "{\"id\":\"h3\",\"address\":\"127.0.0.1:7003\"}", 5000000);
        membership_backend_sync_begin(b);
        feed(m, "{\"id\":\"h3\",\"address\":\"127.0.0.1:7003\"}", 5000000);
        membership_backend_sync_end(b);
        (void) membership_hosts(m, &n);
        ASSERT_EQ(n, 2u);
        ASSERT_NULL(membership_find(m, "h2"));
        ASSERT_NOT_NULL(membership_find(m, "h3"));
        membership_free(m);
        sd_event_unref(e);
}

/* A lease that runs out takes the host away on its own, and the engine's state does not matter. */
TEST(lease_runs_out) {
        sd_event *e = NULL;
        Counter c = {};
        ASSERT_OK(sd_event_new(&e));
        Membership *m = new_membership(e, "h1");
        ASSERT_OK(membership_add_callback(m, on_changed, &c));
        membership_backend_state(membership_get_backend(m), "connection refused");
        ASSERT_STREQ(membership_engine_error(m), "connection refused");
        feed(m, "{\"id\":\"h2\",\"address\":\"127.0.0.1:7002\"}", 1000);
        feed(m, "{\"id\":\"h3\",\"address\":\"127.0.0.1:7003\"}", 3600ULL * 1000000);
        run_pending(e);
        ASSERT_EQ(c.calls, 1u);
        /* the loop wakes for the lease's end; nothing else is armed */
        while (membership_find(m, "h2"))
                ASSERT_TRUE(sd_event_run(e, 5000000) > 0);
        ASSERT_NOT_NULL(membership_find(m, "h3"));
        run_pending(e);
        ASSERT_EQ(c.calls, 2u);
        membership_backend_state(membership_get_backend(m), NULL);
        ASSERT_NULL(membership_engine_error(m));
        membership_free(m);
        sd_event_unref(e);
}

/* Two daemons given the same HostId=: each reads its id back from the other's address; while that
 * lasts (and a lease after) its own lease is not renewed in the view, so it owns no actors. */
TEST(same_host_id_elsewhere) {
        sd_event *e = NULL;
        Counter c = {};
        size_t n;
        ASSERT_OK(sd_event_new(&e));
        MembershipOptions o = { .host_id = "h1", .address = "127.0.0.1:7000", .lease_usec = 300000 };
        Membership *m = NULL;
        ASSERT_OK(membership_new_with_driver(e, &test_driver, &o, &m));
        ASSERT_OK(membership_add_callback(m, on_changed, &c));
        MembershipBackend *b = membership_get_backend(m);
        membership_backend_renewed(b, 300000);
        ASSERT_TRUE(membership_hosts(m, &n)[0].lease_end_usec > 0);
        /* our own record as we wrote it: nothing */
        feed(m, "{\"id\":\"h1\",\"address\":\"127.0.0.1:7000\"}", 300000);
        ASSERT_NULL(membership_self_conflict(m));
        /* from elsewhere: a conflict, the view changes, the lease is gone and stays gone */
        feed(m, "{\"id\":\"h1\",\"address\":\"10.0.0.9:7000\"}", 300000);
        ASSERT_STREQ(membership_self_conflict(m), "10.0.0.9:7000");
        run_pending(e);
        ASSERT_EQ(c.calls, 1u);
        const ClusterHost *h = membership_hosts(m, &n);
        ASSERT_EQ(n, 1u);
        ASSERT_TRUE(h[0].self);
        ASSERT_EQ(h[0].lease_end_usec, 0u);
        membership_backend_renewed(b, 300000);
        ASSERT_EQ(membership_hosts(m, &n)[0].lease_end_usec, 0u);
        /* a lease without seeing it again: the next renewal counts */
        usleep(350000);
        run_pending(e); /* the loop's clock moves on */
        membership_backend_renewed(b, 300000);
        ASSERT_NULL(membership_self_conflict(m));
        ASSERT_TRUE(membership_hosts(m, &n)[0].lease_end_usec > 0);
        membership_free(m);
        sd_event_unref(e);
}

TEST(record_parse) {
        static const char *const bad[] = {
                "",
                "[]",
                "{\"address\":\"127.0.0.1:1\"}",
                "{\"id\":\"\",\"address\":\"127.0.0.1:1\"}",
                "{\"id\":\"a b\",\"address\":\"127.0.0.1:1\"}",
                "{\"id\":\"-a\",\"address\":\"127.0.0.1:1\"}",
                "{\"id\":\"a\"}",
                "{\"id\":\"a\",\"address\":\"127.0.0.1\"}",
                "{\"id\":\"a\",\"address\":\"127.0.0.1:0\"}",
                "{\"id\":\"a\",\"address\":\"127.0.0.1:1\",\"apps\":\"x\"}",
                "{\"id\":\"a\",\"address\":\"127.0.0.1:1\",\"apps\":[1]}",
                "{\"id\":\"a\",\"address\":\"127.0.0.1:1\",\"apps\":[\"\"]}",
                "{\"id\":\"a\",\"address\":\"127.0.0.1:1\",\"apps\":[\"x\\u0001\"]}",
                "{\"id\":\"a\",\"address\":\"127.0.0.1:1\",\"apps\":[\"x\\u0000y\"]}",
                "{\"id\":\"a\",\"address\":\"127.0.0.1:1\",\"generation\":-1}",
                "{\"id\":\"a\",\"id\":\"b\",\"address\":\"127.0.0.1:1\"}",
        };
        MemberRecord r = {};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int k = member_record_parse(bad[i], strlen(bad[i]), &r);
                if (k != -EINVAL)
                        fprintf(stderr, "accepted: %s\n", bad[i]);
                ASSERT_ERROR(k, EINVAL);
        }
        const char *good = "{\"id\":\"host-1.example\",\"address\":\"[fe80::1]:443\",\"apps\":[\"z\",\"y\"],"
                           "\"actorTypes\":[\"Cart\"],\"generation\":12,\"future\":true}";
        ASSERT_OK(member_record_parse(good, strlen(good), &r));
        ASSERT_STREQ(r.id, "host-1.example");
        ASSERT_STREQ(r.apps[0], "y");
        ASSERT_EQ(r.generation, 12u);
        _cleanup_free_ char *back = member_record_to_json(&r);
        MemberRecord r2 = {};
        ASSERT_OK(member_record_parse(back, strlen(back), &r2));
        ASSERT_TRUE(strv_equal(r.apps, r2.apps));
        ASSERT_STREQ(r2.address, "[fe80::1]:443");
        member_record_done(&r);
        member_record_done(&r2);
}
