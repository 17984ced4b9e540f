/* SPDX-License-Identifier: Apache-2.0 */
/*
 * util/iomux: many fds behind one sd-event source. Real socketpairs on a real sd-event loop:
 * every ready fd of a wake-up is served in one loop iteration; a callback may remove any watch
 * of the same batch (its own included) and the removed one is never called again (ASan sees a
 * use after free if it were); off means no events at all; the event mask is epoll's, EPOLLET
 * included.
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests.h"
#include "util/iomux.h"

typedef struct Peer {
        int fd[2];                  /* [0] watched, [1] the other end */
        IoWatch *w;
        unsigned calls;
        uint32_t last;
        struct Peer *victim;        /* removed by this one's callback */
        bool remove_self;
        bool no_read;               /* leave the bytes where they are */
} Peer;

static void on_io(IoWatch *w, int fd, uint32_t revents, void *userdata) {
        Peer *p = userdata;
        char buf[64];
        p->calls++;
        p->last = revents;
        if ((revents & EPOLLIN) && !p->no_read)
                (void) !read(fd, buf, sizeof buf);
        if (p->victim && p->victim->w)
                p->victim->w = iomux_remove(p->victim->w);
        if (p->remove_self)
                p->w = iomux_remove(p->w);
}

static void peer_open(IoMux *m, Peer *p, uint32_t events) {
        *p = (Peer){};
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p->fd), 0);
        ASSERT_EQ(iomux_add(m, p->fd[0], events, on_io, p, &p->w), 0);
}

static void peer_close(Peer *p) {
        p->w = iomux_remove(p->w);
        close(p->fd[0]);
        close(p->fd[1]);
}

static void poke(Peer *p) {
        ASSERT_EQ(write(p->fd[1], "x", 1), 1);
}

/* Runs the loop until nothing is ready (each iteration without waiting); bounded, for fds that
 * stay ready (EPOLLOUT, a hang-up). */
static unsigned run_ready(sd_event *e) {
        unsigned n = 0;
        while (n < 8 && sd_event_run(e, 0) > 0)
                n++;
        return n;
}

static void run_once(sd_event *e) {
        (void) sd_event_run(e, 0);
}

TEST(one_iteration_serves_every_ready_fd) {
        sd_event *e = NULL;
        IoMux *m = NULL;
        Peer p[16];

        ASSERT_EQ(sd_event_new(&e), 0);
        ASSERT_EQ(iomux_new(e, "test", &m), 0);
        for (int i = 0; i < 16; i++)
                peer_open(m, &p[i], EPOLLIN);
        for (int i = 0; i < 16; i++)
                poke(&p[i]);
        /* One source per fd took 16 iterations here. */
        ASSERT_EQ(run_ready(e), 1);
        for (int i = 0; i < 16; i++) {
                ASSERT_EQ(p[i].calls, 1);
                ASSERT_TRUE(p[i].last & EPOLLIN);
        }
        for (int i = 0; i < 16; i++)
                peer_close(&p[i]);
        iomux_free(m);
        sd_event_unref(e);
}

TEST(removing_a_watch_of_the_same_batch) {
        sd_event *e = NULL;
        IoMux *m = NULL;
        Peer a, b, c;

        ASSERT_EQ(sd_event_new(&e), 0);
        ASSERT_EQ(iomux_new(e, "test", &m), 0);
        peer_open(m, &a, EPOLLIN);
        peer_open(m, &b, EPOLLIN);
        peer_open(m, &c, EPOLLIN);
        /* Whichever of a and b runs first removes the other: exactly one of them runs. */
        a.victim = &b;
        b.victim = &a;
        c.remove_self = true;
        poke(&a);
        poke(&b);
        poke(&c);
        run_ready(e);
        ASSERT_EQ(a.calls + b.calls, 1);
        ASSERT_EQ(c.calls, 1);
        ASSERT_TRUE(c.w == NULL);
        ASSERT_TRUE((a.w == NULL) != (b.w == NULL));
        /* nothing more comes from the removed ones; the one left still works */
        Peer *left = a.w ? &a : &b, *gone = a.w ? &b : &a;
        left->victim = NULL;
        poke(&a);
        poke(&b);
        poke(&c);
        run_ready(e);
        ASSERT_EQ(left->calls, 2);
        ASSERT_EQ(gone->calls, 0);
        ASSERT_EQ(c.calls, 1);
        a.victim = b.victim = NULL;
        peer_close(&a);
        peer_close(&b);
        peer_close(&c);
        iomux_free(m);
        sd_event_unref(e);
}

TEST(off_means_nothing_not_even_hangups) {
        sd_event *e = NULL;
        IoMux *m = NULL;
        Peer a;

        ASSERT_EQ(sd_event_new(&e), 0);
        ASSERT_EQ(iomux_new(e, "test", &m), 0);
        peer_open(m, &a, EPOLLIN);
        ASSERT_EQ(iomux_set_enabled(a.w, false), 0);
        poke(&a);
        ASSERT_EQ(run_ready(e), 0);
        ASSERT_EQ(a.calls, 0);
        /* back on: the byte that waited is reported (level-triggered) */
        ASSERT_EQ(iomux_set_enabled(a.w, true), 0);
        run_ready(e);
        ASSERT_EQ(a.calls, 1);
        /* a hang-up while off is not reported either, until on */
        ASSERT_EQ(iomux_set_enabled(a.w, false), 0);
        close(a.fd[1]);
        a.fd[1] = -1;
        ASSERT_EQ(run_ready(e), 0);
        ASSERT_EQ(a.calls, 1);
        ASSERT_EQ(iomux_set_enabled(a.w, true), 0);
        run_once(e);
        ASSERT_EQ(a.calls, 2);
        ASSERT_TRUE(a.last & EPOLLHUP);
        a.w = iomux_remove(a.w);
        close(a.fd[0]);
        iomux_free(m);
        sd_event_unref(e);
}

TEST(event_mask_and_edge_trigger) {
        sd_event *e = NULL;
        IoMux *m = NULL;
        Peer a;
        char buf[8];

        ASSERT_EQ(sd_event_new(&e), 0);
        ASSERT_EQ(iomux_new(e, "test", &m), 0);
        /* EPOLLOUT only: a readable socket is not reported as readable */
        peer_open(m, &a, EPOLLOUT);
        poke(&a);
        run_once(e);
        ASSERT_TRUE(a.calls >= 1);
        ASSERT_TRUE(!(a.last & EPOLLIN));
        /* edge-triggered input: one report per arrival, even if nothing is read */
        ASSERT_EQ(iomux_set_events(a.w, EPOLLIN | EPOLLET), 0);
        ASSERT_EQ(read(a.fd[0], buf, sizeof buf), 1);
        unsigned before = a.calls;
        a.no_read = true;
        poke(&a);
        run_ready(e);
        ASSERT_EQ(a.calls, before + 1);
        run_ready(e);
        ASSERT_EQ(a.calls, before + 1);
        peer_close(&a);
        iomux_free(m);
        sd_event_unref(e);
}


