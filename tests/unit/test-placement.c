/* SPDX-License-Identifier: Apache-2.0 */
/*
 * core/placement: who owns actor (type, id) in a cluster view. Every host computes it alone, so
 * the answer must depend on the view only (not on the order hosts were seen in), serve only hosts
 * that host the type, spread actors evenly, and move as few as possible when a host comes or goes.
 */
#include <stdio.h>
#include <string.h>

#include "core/membership.h"
#include "core/placement.h"
#include "tests.h"

static char *const cart[] = { "Cart", NULL };
static char *const cart_order[] = { "Cart", "Order", NULL };
static char *const order[] = { "Order", NULL };

static const char *owner(const ClusterHost *h, size_t n, const char *type, const char *id) {
        const ClusterHost *o = NULL;
        if (placement_owner_in(h, n, type, id, &o) < 0)
                return NULL;
        return o->id;
}

TEST(placement_only_hosts_of_the_type) {
        ClusterHost h[] = {
                { .id = "a", .actor_types = cart },
                { .id = "b", .actor_types = order },
                { .id = "c", .actor_types = NULL },
        };
        for (int i = 0; i < 50; i++) {
                char id[16];
                snprintf(id, sizeof id, "%d", i);
                ASSERT_STREQ(owner(h, 3, "Cart", id), "a");
                ASSERT_STREQ(owner(h, 3, "Order", id), "b");
        }
        const ClusterHost *o;
        ASSERT_ERROR(placement_owner_in(h, 3, "Nobody", "1", &o), ENOENT);
        ASSERT_ERROR(placement_owner_in(h, 0, "Cart", "1", &o), ENOENT);
}

TEST(placement_independent_of_order_and_even) {
        ClusterHost h[] = {
                { .id = "h1", .actor_types = cart_order },
                { .id = "h2", .actor_types = cart },
                { .id = "h3", .actor_types = cart_order },
        };
        ClusterHost r[] = { h[2], h[0], h[1] };
        unsigned count[3] = { 0 };
        for (int i = 0; i < 3000; i++) {
                char id[16];
                snprintf(id, sizeof id, "%d", i);
                const char *a = owner(h, 3, "Cart", id), *b = owner(r, 3, "Cart", id);
                ASSERT_STREQ(a, b);
                count[a[1] - '1']++;
        }
        /* 1000 each on average; rendezvous hashing with a good hash stays well within 20% */
        for (int i = 0; i < 3; i++)
                ASSERT_TRUE(count[i] > 800 && count[i] < 1200);
        /* the same id under another type is another actor: its owner is drawn again */
        unsigned same = 0;
        for (int i = 0; i < 3000; i++) {
                char id[16];
                snprintf(id, sizeof id, "%d", i);
                same += strcmp(owner(h, 3, "Cart", id), owner(h, 3, "Order", id) ?: "") == 0;
        }
        /* Order is on h1 and h3: the owners agree when Cart's is one of them (2/3) and Order's draw
         * picks the same one (1/2), so for about a third of the ids */
        ASSERT_TRUE(same > 800 && same < 1200);
}

TEST(placement_moves_only_what_must_move) {
        ClusterHost three[] = {
                { .id = "h1", .actor_types = cart },
                { .id = "h2", .actor_types = cart },
                { .id = "h3", .actor_types = cart },
        };
        ClusterHost four[] = { three[0], three[1], three[2], { .id = "h4", .actor_types = cart } };
        unsigned moved_on_leave = 0, owned_by_h3 = 0, moved_on_join = 0;
        for (int i = 0; i < 4000; i++) {
                char id[16];
                snprintf(id, sizeof id, "cart-%d", i);
                const char *before = owner(three, 3, "Cart", id);
                /* h3 goes: only its actors move, the others stay where they are */
                const char *after = owner(three, 2, "Cart", id);
                if (strcmp(before, "h3") == 0)
                        owned_by_h3++, moved_on_leave++;
                else
                        ASSERT_STREQ(before, after);
                /* h4 comes: an actor moves only to h4 */
                const char *joined = owner(four, 4, "Cart", id);
                if (strcmp(before, joined) != 0) {
                        ASSERT_STREQ(joined, "h4");
                        moved_on_join++;
                }
        }
        ASSERT_EQ(moved_on_leave, owned_by_h3);
        ASSERT_TRUE(moved_on_join > 800 && moved_on_join < 1200); /* about a quarter */
}
