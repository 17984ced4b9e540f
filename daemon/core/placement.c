/* SPDX-License-Identifier: Apache-2.0 */
/* See placement.h. */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/strv.h"
#include "membership.h"
#include "placement.h"
#include "../util/fnv.h"

struct Placement {
        char **types;           /* served here */
        Membership *membership; /* NULL: one host */
        sd_event_source *lapse_timer; /* when this host's own lease would lapse unless renewed */
        PlacementLapseFn lapse_fn;
        void *lapse_userdata;
        bool lapsed;            /* told as lapsed: told again when it is a member again */
        uint64_t changed_usec;  /* CLOCK_MONOTONIC: the last change of the view (0: none yet) */
        char host[256];
};

static uint64_t now_monotonic(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

/* Whether this host counts as a member: with a leasing engine, only while its own lease, as last
 * renewed, has a third of its length left. The others drop it when the lease ends (by their clocks,
 * from what the engine said): it gives its actors up before that, never after. */
static bool self_member(const Placement *p, const ClusterHost *self, uint64_t *ret_until) {
        const char *engine = membership_engine(p->membership);
        if (!streq(engine, "postgresql") && !streq(engine, "redis"))
                return true; /* no leases: static peers and DNS-SD */
        uint64_t margin = membership_lease_usec(p->membership) / 3, now = now_monotonic();
        if (ret_until)
                *ret_until = self && self->lease_end_usec > margin ? self->lease_end_usec - margin : 0;
        return self && self->lease_end_usec > now + margin;
}

static const ClusterHost *find_self(Membership *m) {
        size_t n;
        const ClusterHost *hosts = membership_hosts(m, &n);
        for (size_t i = 0; i < n; i++)
                if (hosts[i].self)
                        return &hosts[i];
        return NULL;
}

static void lapse_check(Placement *p);

static int on_lapse_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        lapse_check(userdata);
        return 0;
}

/* Tells the lapse callback when this host stops (or starts again) counting as a member, and sets
 * the timer for the moment its lease would lapse (renewals push it on). */
static void lapse_check(Placement *p) {
        uint64_t until = 0;
        bool member = self_member(p, find_self(p->membership), &until);
        if (member == p->lapsed) {
                p->lapsed = !member;
                if (!member)
                        log_warning("This host could not renew its cluster lease: it gives up its actors until it can.");
                else
                        log_info("This host renewed its cluster lease again.");
                if (p->lapse_fn)
                        p->lapse_fn(p, p->lapse_userdata);
        }
        if (member && until == 0) /* no leases: nothing to watch */
                return (void) sd_event_source_set_enabled(p->lapse_timer, SD_EVENT_OFF);
        /* look again at the lapse time, or a little later when lapsed (or never renewed) */
        uint64_t at = member && until ? until : now_monotonic() + membership_lease_usec(p->membership) / 6;
        if (p->lapse_timer && (sd_event_source_set_time(p->lapse_timer, at) < 0 ||
                               sd_event_source_set_enabled(p->lapse_timer, SD_EVENT_ONESHOT) < 0))
                log_oom();
}

/* Runs first of the membership's callbacks (added at creation). */
static void on_view_changed(Membership *m, void *userdata) {
        Placement *p = userdata;
        p->changed_usec = now_monotonic();
        lapse_check(p);
}

Placement *placement_new_local(void) {
        Placement *p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        if (gethostname(p->host, sizeof p->host - 1) < 0)
                strcpy(p->host, "localhost");
        return p;
}

Placement *placement_new_cluster(sd_event *e, Membership *m, const char *self_id) {
        Placement *p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        p->membership = m;
        p->lapsed = true; /* a member once the first renewal is in */
        snprintf(p->host, sizeof p->host, "%s", self_id);
        if (membership_add_callback(m, on_view_changed, p) < 0 ||
            sd_event_add_time(e, &p->lapse_timer, CLOCK_MONOTONIC, 0, 1000, on_lapse_timer, p) < 0) {
                (void) membership_remove_callback(m, on_view_changed, p);
                free(p);
                return NULL;
        }
        return p;
}

void placement_set_lapse_callback(Placement *p, PlacementLapseFn fn, void *userdata) {
        p->lapse_fn = fn;
        p->lapse_userdata = userdata;
}

Placement *placement_free(Placement *p) {
        if (!p)
                return NULL;
        if (p->membership)
                (void) membership_remove_callback(p->membership, on_view_changed, p);
        sd_event_source_disable_unref(p->lapse_timer);
        strv_free(p->types);
        free(p);
        return NULL;
}

/* 64-bit FNV-1a over the parts with a 0 between them (so "ab"+"c" and "a"+"bc" differ), then a
 * finalizer that spreads every input bit over the result: rendezvous hashing compares whole
 * scores, and plain FNV's high bits depend too little on the last bytes. */
static uint64_t score(const char *host, const char *type, const char *id) {
        uint64_t h = FNV64_OFFSET;
        const char *parts[3] = { host, type, id };
        for (size_t i = 0; i < 3; i++)
                h = (fnv64_add_str(h, parts[i]) ^ 0xff) * FNV64_PRIME;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return h;
}

int placement_owner_in(const ClusterHost *hosts, size_t n, const char *type, const char *id,
                       const ClusterHost **ret) {
        const ClusterHost *best = NULL;
        uint64_t best_score = 0;

        for (size_t i = 0; i < n; i++) {
                if (!strv_contains(hosts[i].actor_types, type))
                        continue;
                uint64_t s = score(hosts[i].id, type, id);
                /* ties (never seen in practice) go to the smaller id, the same on every host */
                if (!best || s > best_score || (s == best_score && strcmp(hosts[i].id, best->id) < 0)) {
                        best = &hosts[i];
                        best_score = s;
                }
        }
        if (!best)
                return -ENOENT;
        *ret = best;
        return 0;
}

int placement_lookup(const Placement *p, const char *type, const char *id, PlacementAnswer *ret) {
        if (!p->membership) {
                /* one host: every id of a served type is here */
                if (!strv_contains(p->types, type))
                        return -ENOENT;
                *ret = (PlacementAnswer){ .local = true, .host = p->host };
                return 0;
        }
        size_t n;
        const ClusterHost *hosts = membership_hosts(p->membership, &n), *owner;
        if (!self_member(p, find_self(p->membership), NULL))
                return -EHOSTUNREACH;
        int r = placement_owner_in(hosts, n, type, id, &owner);
        if (r < 0)
                return r;
        *ret = (PlacementAnswer){ .local = owner->self, .host = owner->id, .address = owner->self ? NULL : owner->address };
        return 0;
}

int placement_previous_owner(const Placement *p, const char *type, const char *id, uint64_t window_usec,
                             PlacementAnswer *ret) {
        if (!p->membership || p->changed_usec == 0 || now_monotonic() > p->changed_usec + window_usec)
                return -ENOENT; /* no change of owner lately: nobody else can have it */
        /*
         * With rendezvous hashing the actor was, before this host came (or came back), where it goes
         * when this host is not there: with the highest score among the others. (When another host
         * left instead, that one is asked and answers at once: it never had the actor.)
         */
        size_t n;
        const ClusterHost *hosts = membership_hosts(p->membership, &n), *best = NULL;
        uint64_t best_score = 0;
        for (size_t i = 0; i < n; i++) {
                if (hosts[i].self || !strv_contains(hosts[i].actor_types, type))
                        continue;
                uint64_t s = score(hosts[i].id, type, id);
                if (!best || s > best_score || (s == best_score && strcmp(hosts[i].id, best->id) < 0)) {
                        best = &hosts[i];
                        best_score = s;
                }
        }
        if (!best)
                return -ENOENT;
        *ret = (PlacementAnswer){ .local = false, .host = best->id, .address = best->address };
        return 0;
}

int placement_set_type_hosted(Placement *p, const char *type, bool hosted) {
        bool has = strv_contains(p->types, type);
        int r;

        if (hosted && !has) {
                r = strv_extend(&p->types, type);
                if (r < 0)
                        return r;
        } else if (!hosted && has) {
                size_t n = strv_length(p->types), j = 0;
                for (size_t i = 0; i < n; i++) {
                        if (strcmp(p->types[i], type) == 0)
                                free(p->types[i]);
                        else
                                p->types[j++] = p->types[i];
                }
                p->types[j] = NULL;
        } else
                return 0;
        return p->membership ? membership_set_actor_types(p->membership, p->types) : 0;
}

uint64_t placement_generation(const Placement *p) {
        return p->membership ? membership_generation(p->membership) : 0;
}

bool placement_is_cluster(const Placement *p) {
        return p->membership;
}

const char *placement_status(const Placement *p) {
        if (!p->membership || self_member(p, find_self(p->membership), NULL))
                return "placement: connected";
        return "placement: disconnected";
}
