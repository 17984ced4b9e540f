/* SPDX-License-Identifier: Apache-2.0 */
/*
 * See membership.h (the view) and drivers/membership/driver.h (the engines).
 *
 * Remote hosts live in an array sorted by id, each with the end of its lease
 * on CLOCK_MONOTONIC; one timer fires at the earliest end. The published view
 * (ClusterHost array) is rebuilt at every change and points into the hosts'
 * own strings, which is why it is only valid until the next change.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../drivers/membership/driver.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "membership.h"

#define RECORD_MAX (256 * 1024)
#define NAMES_MAX 4096

typedef struct Host {
        MemberRecord rec;
        uint64_t lease_end;        /* CLOCK_MONOTONIC */
        bool seen;                 /* marked during a sync */
} Host;

typedef struct Callback {
        MembershipChangedFn fn;
        void *userdata;
        bool removed;              /* removed during a dispatch: dropped after it */
} Callback;

struct Membership {
        sd_event *event;           /* ref */
        uint64_t lease_usec;
        const char *engine_name;
        MemberRecord self;
        uint64_t self_lease_end;   /* 0: never renewed */
        char *conflict_address;    /* another daemon announces this host's id from there (NULL: none) */
        uint64_t conflict_until;   /* CLOCK_MONOTONIC: a lease after it was last seen */
        Host **hosts;              /* remote hosts, sorted by id */
        size_t n_hosts;
        ClusterHost *view;         /* self + hosts, sorted by id */
        size_t n_view;
        uint64_t generation;
        bool syncing;
        sd_event_source *expire_timer;
        sd_event_source *notify_defer;
        Callback *callbacks;
        size_t n_callbacks;
        unsigned dispatching;
        MembershipBackend *backend;
        char *backend_error;       /* NULL: connected (or not yet told) */
        bool backend_told;         /* the engine reported its state at least once */
        Transport *transport;      /* borrowed: calls to peers */
};

/* ---- names and records ---- */

bool member_id_is_valid(const char *s) {
        size_t n = 0;
        if (!s || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= '0' && s[0] <= '9')))
                return false;
        for (; s[n]; n++) {
                char c = s[n];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-'))
                        return false;
        }
        return n <= 253;
}

bool member_name_is_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > 256 || !utf8_is_valid(s, n))
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return false;
        return true;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* A sorted, unique, checked copy of l (NULL: empty) into *ret. 0, -EINVAL, -ENOMEM. */
static int names_normalize(char *const *l, char ***ret) {
        _cleanup_strv_free_ char **c = NULL;
        size_t n = strv_length(l), k = 0;

        if (n > NAMES_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (!member_name_is_valid(l[i]))
                        return -EINVAL;
        c = calloc(n + 1, sizeof *c);
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(c[i] = strdup(l[i])))
                        return -ENOMEM;
        qsort(c, n, sizeof *c, cmp_str);
        for (size_t i = 0; i < n; i++) {
                if (k > 0 && streq(c[k - 1], c[i])) {
                        free(c[i]);
                        c[i] = NULL;
                        continue;
                }
                c[k++] = c[i];
        }
        c[k] = NULL;
        *ret = TAKE_PTR(c);
        return 0;
}

void member_record_done(MemberRecord *r) {
        if (!r)
                return;
        free(r->id);
        free(r->address);
        strv_free(r->apps);
        strv_free(r->actor_types);
        *r = (MemberRecord){};
}

static bool address_is_valid(const char *s) {
        _cleanup_free_ char *a = NULL;
        uint16_t port;
        return s && strlen(s) <= 300 && cluster_parse_address(s, &a, &port) >= 0 && port > 0;
}

static int names_from_json(json_t *a, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        size_t i, n = 0;
        json_t *v;

        if (!a) /* absent: none */
                return names_normalize(NULL, ret);
        if (!json_is_array(a) || json_array_size(a) > NAMES_MAX)
                return -EINVAL;
        l = calloc(json_array_size(a) + 1, sizeof *l);
        if (!l)
                return -ENOMEM;
        json_array_foreach(a, i, v) {
                if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
                        return -EINVAL;
                if (!(l[n++] = strdup(json_string_value(v))))
                        return -ENOMEM;
        }
        return names_normalize(l, ret);
}

int member_record_parse(const char *text, size_t len, MemberRecord *ret) {
        _cleanup_(member_record_done) MemberRecord r = {};
        json_t *j, *v;
        int k;

        if (len > RECORD_MAX)
                return -EINVAL;
        j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                return -EINVAL;
        }
        k = -EINVAL;
        v = json_object_get(j, "id");
        if (!json_is_string(v) || !member_id_is_valid(json_string_value(v)))
                goto out;
        r.id = strdup(json_string_value(v));
        v = json_object_get(j, "address");
        if (!json_is_string(v) || !address_is_valid(json_string_value(v)))
                goto out;
        r.address = strdup(json_string_value(v));
        if (!r.id || !r.address) {
                k = -ENOMEM;
                goto out;
        }
        k = names_from_json(json_object_get(j, "apps"), &r.apps);
        if (k >= 0)
                k = names_from_json(json_object_get(j, "actorTypes"), &r.actor_types);
        if (k < 0)
                goto out;
        v = json_object_get(j, "generation");
        if (v && (!json_is_integer(v) || json_integer_value(v) < 0)) {
                k = -EINVAL;
                goto out;
        }
        r.generation = v ? (uint64_t) json_integer_value(v) : 0;
        *ret = r;
        r = (MemberRecord){};
        k = 0;
out:
        json_decref(j);
        return k;
}

static json_t *names_json(char *const *l) {
        json_t *a = json_array();
        for (char *const *s = l; a && s && *s; s++)
                if (json_array_append_new(a, json_string(*s)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

char *member_record_to_json(const MemberRecord *r) {
        json_t *o = json_pack("{s:s, s:s, s:o*, s:o*, s:I}", "id", r->id, "address", r->address, "apps",
                              names_json(r->apps), "actorTypes", names_json(r->actor_types), "generation",
                              (json_int_t) r->generation);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        return s;
}

/* ---- the view ---- */

static uint64_t now_usec(const Membership *m) {
        uint64_t t = 0;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &t);
        return t;
}

static void arm_expiry(Membership *m) {
        uint64_t first = UINT64_MAX;
        for (size_t i = 0; i < m->n_hosts; i++)
                first = MIN(first, m->hosts[i]->lease_end);
        if (!m->expire_timer)
                return;
        if (first == UINT64_MAX) {
                (void) sd_event_source_set_enabled(m->expire_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(m->expire_timer, first);
        (void) sd_event_source_set_enabled(m->expire_timer, SD_EVENT_ONESHOT);
}

/* Rebuilds the published view and bumps the generation; the callbacks run on the loop. */
static int view_changed(Membership *m) {
        ClusterHost *v = calloc(m->n_hosts + 1, sizeof *v);
        size_t n = 0;
        bool self_done = false;

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i <= m->n_hosts; i++) {
                const Host *h = i < m->n_hosts ? m->hosts[i] : NULL;
                if (!self_done && (!h || strcmp(m->self.id, h->rec.id) < 0)) {
                        v[n++] = (ClusterHost){ .id = m->self.id,
                                                .address = m->self.address,
                                                .apps = m->self.apps,
                                                .actor_types = m->self.actor_types,
                                                .self = true,
                                                .lease_end_usec = m->self_lease_end };
                        self_done = true;
                }
                if (h)
                        v[n++] = (ClusterHost){ .id = h->rec.id,
                                                .address = h->rec.address,
                                                .apps = h->rec.apps,
                                                .actor_types = h->rec.actor_types,
                                                .lease_end_usec = h->lease_end };
        }
        free(m->view);
        m->view = v;
        m->n_view = n;
        m->generation++;
        arm_expiry(m);
        if (m->notify_defer)
                (void) sd_event_source_set_enabled(m->notify_defer, SD_EVENT_ONESHOT);
        return 0;
}

static size_t host_index(const Membership *m, const char *id, bool *ret_found) {
        size_t lo = 0, hi = m->n_hosts;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = strcmp(m->hosts[mid]->rec.id, id);
                if (c == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_found = false;
        return lo;
}

static void host_free(Host *h) {
        if (!h)
                return;
        member_record_done(&h->rec);
        free(h);
}

static void host_remove_at(Membership *m, size_t i) {
        host_free(m->hosts[i]);
        memmove(m->hosts + i, m->hosts + i + 1, (m->n_hosts - i - 1) * sizeof *m->hosts);
        m->n_hosts--;
}

static int on_expire(sd_event_source *s, uint64_t usec, void *userdata) {
        Membership *m = userdata;
        uint64_t now = now_usec(m);
        bool changed = false;

        for (size_t i = 0; i < m->n_hosts;)
                if (m->hosts[i]->lease_end <= now) {
                        log_info("Cluster host '%s' left: its lease ran out.", m->hosts[i]->rec.id);
                        host_remove_at(m, i);
                        changed = true;
                } else
                        i++;
        if (changed && view_changed(m) < 0)
                log_oom();
        arm_expiry(m);
        return 0;
}

static int on_notify(sd_event_source *s, void *userdata) {
        Membership *m = userdata;

        m->dispatching++;
        /* callbacks added during the dispatch run at the next change */
        for (size_t i = 0, n = m->n_callbacks; i < n; i++) {
                Callback *c = &m->callbacks[i];
                if (!c->removed)
                        c->fn(m, c->userdata);
        }
        m->dispatching--;
        if (m->dispatching == 0) {
                size_t k = 0;
                for (size_t i = 0; i < m->n_callbacks; i++)
                        if (!m->callbacks[i].removed)
                                m->callbacks[k++] = m->callbacks[i];
                m->n_callbacks = k;
        }
        return 0;
}

/* The self entry of the published view, patched in place (not a change of the view). */
static void set_self_lease_end(Membership *m, uint64_t end) {
        m->self_lease_end = end;
        for (size_t i = 0; i < m->n_view; i++)
                if (m->view[i].self)
                        m->view[i].lease_end_usec = end;
}

static void self_conflict(Membership *m, const char *address) {
        bool new = !m->conflict_address || !streq(m->conflict_address, address);
        m->conflict_until = now_usec(m) + m->lease_usec;
        if (new) {
                char *a = strdup(address);
                if (!a)
                        return (void) log_oom();
                free(m->conflict_address);
                m->conflict_address = a;
                log_error("Another daemon announces this host's id '%s' from %s (this one is %s): two hosts were "
                          "given the same HostId=. This host gives up its actors until it stops.",
                          m->self.id, address, m->self.address);
        }
        /* placement (core/placement.c) counts a host as a member only while its lease runs; told once,
         * not at every sighting (the view's generation bumps only on a change) */
        if (m->self_lease_end != 0) {
                set_self_lease_end(m, 0);
                if (view_changed(m) < 0)
                        log_oom();
        }
}

const char *membership_self_conflict(const Membership *m) {
        return m->conflict_address;
}

void membership_backend_seen(MembershipBackend *b, const MemberRecord *rec, uint64_t lease_left_usec) {
        Membership *m = b->membership;
        uint64_t end = now_usec(m) + lease_left_usec;
        bool found;
        size_t i;
        Host *h;

        if (rec && rec->id && streq(rec->id, m->self.id)) {
                /* This host's own record, as read back: from another address, a second daemon was
                 * given the same HostId= and each overwrites the other's record. Both would think
                 * they own the same actors: neither counts as a member while it lasts. */
                if (rec->address && !streq(rec->address, m->self.address))
                        self_conflict(m, rec->address);
                return;
        }
        if (!rec || !rec->id || lease_left_usec == 0)
                return;
        i = host_index(m, rec->id, &found);
        if (found) {
                h = m->hosts[i];
                h->lease_end = end;
                h->seen = true;
                if (streq(h->rec.address, rec->address) && strv_equal(h->rec.apps, rec->apps) &&
                    strv_equal(h->rec.actor_types, rec->actor_types)) {
                        h->rec.generation = rec->generation;
                        arm_expiry(m);
                        return;
                }
                MemberRecord n = { .generation = rec->generation };
                if (!(n.id = strdup(rec->id)) || !(n.address = strdup(rec->address)) ||
                    names_normalize(rec->apps, &n.apps) < 0 || names_normalize(rec->actor_types, &n.actor_types) < 0) {
                        member_record_done(&n);
                        log_oom();
                        return;
                }
                member_record_done(&h->rec);
                h->rec = n;
                log_info("Cluster host '%s' (%s) now serves %zu app(s), %zu actor type(s).", h->rec.id, h->rec.address,
                         strv_length(h->rec.apps), strv_length(h->rec.actor_types));
        } else {
                Host **nh = reallocarray(m->hosts, m->n_hosts + 1, sizeof *m->hosts);
                if (!nh) {
                        log_oom();
                        return;
                }
                m->hosts = nh;
                h = calloc(1, sizeof *h);
                if (!h || !(h->rec.id = strdup(rec->id)) || !(h->rec.address = strdup(rec->address)) ||
                    names_normalize(rec->apps, &h->rec.apps) < 0 ||
                    names_normalize(rec->actor_types, &h->rec.actor_types) < 0) {
                        host_free(h);
                        log_oom();
                        return;
                }
                h->rec.generation = rec->generation;
                h->lease_end = end;
                h->seen = true;
                memmove(m->hosts + i + 1, m->hosts + i, (m->n_hosts - i) * sizeof *m->hosts);
                m->hosts[i] = h;
                m->n_hosts++;
                log_info("Cluster host '%s' (%s) joined with %zu app(s), %zu actor type(s).", h->rec.id,
                         h->rec.address, strv_length(h->rec.apps), strv_length(h->rec.actor_types));
        }
        if (view_changed(m) < 0)
                log_oom();
}

void membership_backend_gone(MembershipBackend *b, const char *id) {
        Membership *m = b->membership;
        bool found;
        size_t i = host_index(m, id, &found);

        if (!found)
                return;
        log_info("Cluster host '%s' left.", id);
        host_remove_at(m, i);
        if (view_changed(m) < 0)
                log_oom();
}

void membership_backend_sync_begin(MembershipBackend *b) {
        Membership *m = b->membership;
        for (size_t i = 0; i < m->n_hosts; i++)
                m->hosts[i]->seen = false;
        m->syncing = true;
}

void membership_backend_sync_end(MembershipBackend *b) {
        Membership *m = b->membership;
        bool changed = false;

        if (!m->syncing)
                return;
        m->syncing = false;
        for (size_t i = 0; i < m->n_hosts;)
                if (!m->hosts[i]->seen) {
                        log_info("Cluster host '%s' left.", m->hosts[i]->rec.id);
                        host_remove_at(m, i);
                        changed = true;
                } else
                        i++;
        if (changed && view_changed(m) < 0)
                log_oom();
}

void membership_backend_renewed(MembershipBackend *b, uint64_t lease_usec) {
        Membership *m = b->membership;
        uint64_t now = now_usec(m);
        if (m->conflict_address) {
                if (now < m->conflict_until)
                        return; /* not a member while another daemon has this id */
                log_notice("No other daemon announces this host's id '%s' any more.", m->self.id);
                free(m->conflict_address);
                m->conflict_address = NULL;
        }
        set_self_lease_end(m, now + lease_usec);
}

void membership_backend_state(MembershipBackend *b, const char *error) {
        Membership *m = b->membership;

        if (!error) {
                if (m->backend_error || !m->backend_told)
                        log_info("Cluster membership (%s): connected.", m->engine_name);
                free(m->backend_error);
                m->backend_error = NULL;
                m->backend_told = true;
                return;
        }
        if (m->backend_told && m->backend_error && streq(m->backend_error, error))
                return;
        log_error("Cluster membership (%s): %s; retrying, the last view stays until its leases run out.",
                  m->engine_name, error);
        free(m->backend_error);
        m->backend_error = strdup(error);
        m->backend_told = true;
}

const MemberRecord *membership_backend_self(MembershipBackend *b) {
        return &b->membership->self;
}

uint64_t membership_backend_now(MembershipBackend *b) {
        return now_usec(b->membership);
}

Transport *membership_backend_transport(MembershipBackend *b) {
        return b->membership->transport;
}

void membership_set_transport(Membership *m, Transport *t) {
        m->transport = t;
}

MembershipBackend *membership_get_backend(Membership *m) {
        return m->backend;
}

/* ---- life ---- */

static const MembershipDriver *driver_for(ClusterMembershipKind k) {
        switch (k) {
        case CLUSTER_MEMBERSHIP_STATIC:
                return &membership_static_driver;
#if HAVE_LIBPQ
        case CLUSTER_MEMBERSHIP_POSTGRESQL:
                return &membership_postgresql_driver;
#endif
#if HAVE_HIREDIS
        case CLUSTER_MEMBERSHIP_REDIS:
                return &membership_redis_driver;
#endif
#if HAVE_AVAHI
        case CLUSTER_MEMBERSHIP_MDNS:
                return &membership_mdns_driver;
#endif
        default:
                return NULL;
        }
}

int membership_new_with_driver(sd_event *e, const MembershipDriver *driver, const MembershipOptions *opts,
                               Membership **ret) {
        _cleanup_(membership_freep) Membership *m = NULL;
        _cleanup_free_ char *err = NULL;
        int r;

        if (!member_id_is_valid(opts->host_id)) {
                log_error("[Cluster] HostId='%s' is not a valid host id (letters, digits, '.', '_', '-').",
                          strna(opts->host_id));
                return -EINVAL;
        }
        if (!address_is_valid(opts->address)) {
                log_error("[Cluster] PeerAddress='%s' is not ADDR:PORT.", strna(opts->address));
                return -EINVAL;
        }
        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(e);
        m->lease_usec = opts->lease_usec ?: SETTINGS_DEFAULT_LEASE_USEC;
        m->engine_name = driver ? driver->name : "none";
        if (!(m->self.id = strdup(opts->host_id)) || !(m->self.address = strdup(opts->address)) ||
            names_normalize(NULL, &m->self.apps) < 0 || names_normalize(NULL, &m->self.actor_types) < 0)
                return -ENOMEM;
        m->self.generation = 1;
        r = sd_event_add_time(e, &m->expire_timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_expire, m);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(m->expire_timer, SD_EVENT_OFF);
        r = sd_event_add_defer(e, &m->notify_defer, on_notify, m);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(m->notify_defer, SD_EVENT_OFF);
        r = view_changed(m);
        if (r < 0)
                return r;
        /* the first view is not a change anyone waits for */
        (void) sd_event_source_set_enabled(m->notify_defer, SD_EVENT_OFF);

        if (driver) {
                if (driver->abi != MEMBERSHIP_DRIVER_ABI || driver->instance_size < sizeof(MembershipBackend))
                        return -EINVAL;
                m->backend = calloc(1, driver->instance_size);
                if (!m->backend)
                        return -ENOMEM;
                *m->backend = (MembershipBackend){ .driver = driver, .membership = m, .event = e };
                r = driver->open(m->backend, opts, &err);
                if (r < 0) {
                        if (r != -ENOMEM)
                                log_error("Cluster membership (%s): %s", driver->name,
                                          err ?: "the engine could not start");
                        return r;
                }
        }
        *ret = TAKE_PTR(m);
        return 0;
}

int membership_new(sd_event *e, const ClusterSettings *cs, const char *host_id, const char *address,
                   Membership **ret) {
        const MembershipDriver *driver = NULL;

        if (cs->membership != CLUSTER_MEMBERSHIP_NONE) {
                driver = driver_for(cs->membership);
                if (!driver) {
                        log_error("[Cluster] Membership=%s is not available in this build.",
                                  cluster_membership_to_string(cs->membership));
                        return -EOPNOTSUPP;
                }
        }
        MembershipOptions o = {
                .host_id = host_id,
                .address = address,
                .connection = cs->membership_connection,
                .peers = cs->peers,
                .table = cs->membership_table,
                .lease_usec = cs->lease_usec,
        };
        return membership_new_with_driver(e, driver, &o, ret);
}

Membership *membership_free(Membership *m) {
        if (!m)
                return NULL;
        if (m->backend) {
                if (m->backend->driver)
                        m->backend->driver->close(m->backend);
                free(m->backend);
        }
        m->expire_timer = sd_event_source_disable_unref(m->expire_timer);
        m->notify_defer = sd_event_source_disable_unref(m->notify_defer);
        for (size_t i = 0; i < m->n_hosts; i++)
                host_free(m->hosts[i]);
        free(m->hosts);
        free(m->view);
        free(m->callbacks);
        member_record_done(&m->self);
        free(m->conflict_address);
        free(m->backend_error);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

static int set_names(Membership *m, char ***field, char *const *l) {
        _cleanup_strv_free_ char **n = NULL;
        int r = names_normalize(l, &n);
        if (r < 0)
                return r;
        if (strv_equal(*field, n))
                return 0;
        strv_free(*field);
        *field = TAKE_PTR(n);
        m->self.generation++;
        r = view_changed(m);
        if (m->backend && m->backend->driver->publish)
                m->backend->driver->publish(m->backend);
        return r;
}

int membership_set_apps(Membership *m, char *const *apps) {
        return set_names(m, &m->self.apps, apps);
}

int membership_set_actor_types(Membership *m, char *const *types) {
        return set_names(m, &m->self.actor_types, types);
}

const ClusterHost *membership_hosts(const Membership *m, size_t *ret_n) {
        *ret_n = m->n_view;
        return m->view;
}

const ClusterHost *membership_find(const Membership *m, const char *host_id) {
        size_t lo = 0, hi = m->n_view;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = strcmp(m->view[mid].id, host_id);
                if (c == 0)
                        return &m->view[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

uint64_t membership_generation(const Membership *m) {
        return m->generation;
}

int membership_add_callback(Membership *m, MembershipChangedFn fn, void *userdata) {
        Callback *n;
        for (size_t i = 0; i < m->n_callbacks; i++)
                if (m->callbacks[i].fn == fn && m->callbacks[i].userdata == userdata && !m->callbacks[i].removed)
                        return -EEXIST;
        n = reallocarray(m->callbacks, m->n_callbacks + 1, sizeof *n);
        if (!n)
                return -ENOMEM;
        m->callbacks = n;
        m->callbacks[m->n_callbacks++] = (Callback){ .fn = fn, .userdata = userdata };
        return 0;
}

int membership_remove_callback(Membership *m, MembershipChangedFn fn, void *userdata) {
        for (size_t i = 0; i < m->n_callbacks; i++) {
                Callback *c = &m->callbacks[i];
                if (c->fn != fn || c->userdata != userdata || c->removed)
                        continue;
                if (m->dispatching)
                        c->removed = true;
                else {
                        memmove(c, c + 1, (m->n_callbacks - i - 1) * sizeof *c);
                        m->n_callbacks--;
                }
                return 0;
        }
        return -ENOENT;
}

const char *membership_engine(const Membership *m) {
        return m->engine_name;
}

const char *membership_engine_error(const Membership *m) {
        return m->backend ? m->backend_error : NULL;
}

uint64_t membership_lease_usec(const Membership *m) {
        return m->lease_usec;
}

char *membership_self_json(const Membership *m) {
        return member_record_to_json(&m->self);
}
