/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Membership by DNS-SD on the LAN ([Cluster] Membership=mdns, Dapr's
 * nameresolution.mdns), through the host's avahi-daemon (libavahi-client,
 * loaded by dlopen; its poll API runs on the daemon's sd-event loop).
 *
 * Each host publishes a service of type _mooring._tcp named by its host id
 * (an alternative name on a collision), on the port of its peer address,
 * with TXT entries id=, address=, gen= and the whole record in JSON split
 * over rec0=, rec1=, ... (a TXT string holds at most 255 bytes); a change of
 * this host's record updates the TXT data in place. Every host browses the
 * type and keeps one resolver open per service seen, which reports TXT
 * changes as they come.
 *
 * DNS-SD has no leases of its own: a service is alive while the browser
 * lists it (avahi withdraws a client's services when the client goes, so a
 * killed mooringd disappears at once from its own host's avahi-daemon and,
 * through its goodbye packets, from the others'). Each listed host's lease
 * is renewed every lease/3 while avahi-daemon is connected; when the
 * connection to it is lost the leases run out by the local clock, and the
 * client reconnects as soon as the daemon is back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../dl-avahi.h"
#include "driver.h"

#define SERVICE_TYPE "_mooring._tcp"
#define TXT_CHUNK 200
#define TXT_CHUNKS_MAX 256
#define RETRY_USEC (1000 * 1000ULL)

/* ---- AvahiPoll on sd-event ---- */

struct AvahiWatch {
        sd_event_source *source;
        AvahiWatchEvent revents;     /* during the callback */
        AvahiWatchCallback callback;
        void *userdata;
};

struct AvahiTimeout {
        sd_event_source *source;
        AvahiTimeoutCallback callback;
        void *userdata;
};

static uint32_t to_epoll(AvahiWatchEvent e) {
        return (e & AVAHI_WATCH_IN ? EPOLLIN : 0) | (e & AVAHI_WATCH_OUT ? EPOLLOUT : 0);
}

static AvahiWatchEvent from_epoll(uint32_t e) {
        return (e & EPOLLIN ? AVAHI_WATCH_IN : 0) | (e & EPOLLOUT ? AVAHI_WATCH_OUT : 0) |
               (e & EPOLLERR ? AVAHI_WATCH_ERR : 0) | (e & EPOLLHUP ? AVAHI_WATCH_HUP : 0);
}

static int on_watch(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        AvahiWatch *w = userdata;
        w->revents = from_epoll(revents);
        /* may free w */
        w->callback(w, fd, from_epoll(revents), w->userdata);
        return 0;
}

static AvahiWatch *watch_new(const AvahiPoll *api, int fd, AvahiWatchEvent event, AvahiWatchCallback callback,
                             void *userdata) {
        AvahiWatch *w = calloc(1, sizeof *w);
        if (!w)
                return NULL;
        *w = (AvahiWatch){ .callback = callback, .userdata = userdata };
        if (sd_event_add_io(api->userdata, &w->source, fd, to_epoll(event), on_watch, w) < 0) {
                free(w);
                return NULL;
        }
        return w;
}

static void watch_update(AvahiWatch *w, AvahiWatchEvent event) {
        (void) sd_event_source_set_io_events(w->source, to_epoll(event));
}

static AvahiWatchEvent watch_get_events(AvahiWatch *w) {
        return w->revents;
}

static void watch_free(AvahiWatch *w) {
        w->source = sd_event_source_disable_unref(w->source);
        free(w);
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        AvahiTimeout *t = userdata;
        (void) sd_event_source_set_enabled(t->source, SD_EVENT_OFF);
        t->callback(t, t->userdata); /* may free t */
        return 0;
}

static void timeout_arm(AvahiTimeout *t, const struct timeval *tv) {
        if (!tv) {
                (void) sd_event_source_set_enabled(t->source, SD_EVENT_OFF);
                return;
        }
        /* avahi's times are gettimeofday()'s: CLOCK_REALTIME */
        (void) sd_event_source_set_time(t->source, (uint64_t) tv->tv_sec * 1000000ULL + (uint64_t) tv->tv_usec);
        (void) sd_event_source_set_enabled(t->source, SD_EVENT_ONESHOT);
}

static AvahiTimeout *timeout_new(const AvahiPoll *api, const struct timeval *tv, AvahiTimeoutCallback callback,
                                 void *userdata) {
        AvahiTimeout *t = calloc(1, sizeof *t);
        if (!t)
                return NULL;
        *t = (AvahiTimeout){ .callback = callback, .userdata = userdata };
        if (sd_event_add_time(api->userdata, &t->source, CLOCK_REALTIME, 0, 0, on_timeout, t) < 0) {
                free(t);
                return NULL;
        }
        timeout_arm(t, tv);
        return t;
}

static void timeout_update(AvahiTimeout *t, const struct timeval *tv) {
        timeout_arm(t, tv);
}

static void timeout_free(AvahiTimeout *t) {
        t->source = sd_event_source_disable_unref(t->source);
        free(t);
}

/* ---- the engine ---- */

typedef struct MdnsMembership MdnsMembership;
typedef struct Service Service;
struct Service {
        MdnsMembership *owner;     /* back-reference */
        AvahiIfIndex iface;
        AvahiProtocol proto;
        char *name;
        AvahiServiceResolver *resolver;
        MemberRecord rec;          /* id NULL until resolved */
        Service *next;
};

struct MdnsMembership {
        MembershipBackend base;
        AvahiPoll poll;
        AvahiClient *client;
        AvahiEntryGroup *group;
        AvahiServiceBrowser *browser;
        char *name;                /* our service name (another one after a collision) */
        uint16_t port;
        uint64_t lease_usec;
        Service *services;
        sd_event_source *tick;     /* every lease/3: renew the leases of listed hosts */
        sd_event_source *retry;    /* a new client after the old one failed */
        bool running;              /* the client is connected and the server running */
};

static const char *client_error(MdnsMembership *p) {
        return sym_avahi_strerror(p->client ? sym_avahi_client_errno(p->client) : AVAHI_ERR_DISCONNECTED);
}

static AvahiStringList *make_txt(MdnsMembership *p) {
        const MemberRecord *self = membership_backend_self(&p->base);
        _cleanup_free_ char *json = member_record_to_json(self);
        AvahiStringList *l = NULL;
        char gen[24], key[24]; /* "rec" and any size_t */
        size_t n;

        if (!json)
                return NULL;
        n = strlen(json);
        (void) snprintf(gen, sizeof gen, "%llu", (unsigned long long) self->generation);
        l = sym_avahi_string_list_add_pair(l, "id", self->id);
        l = l ? sym_avahi_string_list_add_pair(l, "address", self->address) : NULL;
        l = l ? sym_avahi_string_list_add_pair(l, "gen", gen) : NULL;
        for (size_t i = 0, k = 0; l && i < n; i += TXT_CHUNK, k++) {
                char chunk[TXT_CHUNK + 1];
                size_t len = MIN((size_t) TXT_CHUNK, n - i);
                memcpy(chunk, json + i, len);
                chunk[len] = 0;
                (void) snprintf(key, sizeof key, "rec%zu", k);
                l = sym_avahi_string_list_add_pair(l, key, chunk);
        }
        return l;
}

/* rec0.. rec<n> joined, parsed. 0 or < 0 (not a mooring record). */
static int parse_txt(AvahiStringList *txt, MemberRecord *ret) {
        _cleanup_free_ char *json = NULL;
        char *parts[TXT_CHUNKS_MAX] = {};
        size_t total = 0, n = 0;
        int r = -EINVAL;

        for (AvahiStringList *l = txt; l; l = sym_avahi_string_list_get_next(l)) {
                char *key = NULL, *value = NULL;
                size_t size = 0;
                unsigned k;
                if (sym_avahi_string_list_get_pair(l, &key, &value, &size) < 0)
                        continue;
                if (key && value && sscanf(key, "rec%u", &k) == 1 && k < TXT_CHUNKS_MAX && !parts[k] &&
                    strlen(value) == size) {
                        parts[k] = value;
                        value = NULL;
                }
                sym_avahi_free(key);
                sym_avahi_free(value);
        }
        while (n < TXT_CHUNKS_MAX && parts[n])
                total += strlen(parts[n++]);
        json = n > 0 ? malloc(total + 1) : NULL;
        if (json) {
                char *o = json;
                for (size_t i = 0; i < n; i++)
                        o = stpcpy(o, parts[i]);
                r = member_record_parse(json, total, ret);
        }
        for (size_t i = 0; i < TXT_CHUNKS_MAX; i++)
                sym_avahi_free(parts[i]);
        return r;
}

static bool id_listed_elsewhere(MdnsMembership *p, const Service *except, const char *id) {
        for (Service *s = p->services; s; s = s->next)
                if (s != except && s->rec.id && streq(s->rec.id, id))
                        return true;
        return false;
}

static void service_free(Service *s) {
        if (s->resolver)
                sym_avahi_service_resolver_free(s->resolver);
        free(s->name);
        member_record_done(&s->rec);
        free(s);
}

static void report_service(MdnsMembership *p, Service *s) {
        if (s->rec.id)
                membership_backend_seen(&p->base, &s->rec, p->lease_usec);
}

/* Found (again: the resolver stays open and reports every change of the TXT data). */
static void on_resolved(AvahiServiceResolver *r, AvahiIfIndex iface, AvahiProtocol proto, AvahiResolverEvent event,
                        const char *name, const char *type, const char *domain, const char *host_name,
                        const AvahiAddress *a, uint16_t port, AvahiStringList *txt, AvahiLookupResultFlags flags,
                        void *userdata) {
        Service *s = userdata;
        MemberRecord rec = {};

        if (event != AVAHI_RESOLVER_FOUND || parse_txt(txt, &rec) < 0)
                return; /* not (yet) a mooring record: ignored */
        if (s->rec.id && !streq(s->rec.id, rec.id) && !id_listed_elsewhere(s->owner, s, s->rec.id))
                membership_backend_gone(&s->owner->base, s->rec.id);
        member_record_done(&s->rec);
        s->rec = rec;
        report_service(s->owner, s);
}

static void on_browse(AvahiServiceBrowser *b, AvahiIfIndex iface, AvahiProtocol proto, AvahiBrowserEvent event,
                      const char *name, const char *type, const char *domain, AvahiLookupResultFlags flags,
                      void *userdata) {
        MdnsMembership *p = userdata;
        Service **sp, *s;

        if (event == AVAHI_BROWSER_FAILURE) {
                membership_backend_state(&p->base, client_error(p));
                return;
        }
        if (event != AVAHI_BROWSER_NEW && event != AVAHI_BROWSER_REMOVE)
                return;
        for (sp = &p->services; *sp; sp = &(*sp)->next)
                if ((*sp)->iface == iface && (*sp)->proto == proto && streq((*sp)->name, name))
                        break;
        if (event == AVAHI_BROWSER_REMOVE) {
                s = *sp;
                if (!s)
                        return;
                *sp = s->next;
                if (s->rec.id && !id_listed_elsewhere(p, s, s->rec.id))
                        membership_backend_gone(&p->base, s->rec.id);
                service_free(s);
                return;
        }
        if (*sp)
                return;
        s = calloc(1, sizeof *s);
        if (!s || !(s->name = strdup(name))) {
                free(s);
                return;
        }
        s->owner = p;
        s->iface = iface;
        s->proto = proto;
        s->next = p->services;
        p->services = s;
        /* kept open: it reports every change of the TXT data */
        s->resolver = sym_avahi_service_resolver_new(p->client, iface, proto, name, type, domain, AVAHI_PROTO_UNSPEC, 0,
                                                     on_resolved, s);
}

static void publish_now(MdnsMembership *p);

static void on_group(AvahiEntryGroup *g, AvahiEntryGroupState state, void *userdata) {
        MdnsMembership *p = userdata;

        if (state == AVAHI_ENTRY_GROUP_COLLISION) {
                /* another service has our name (another mooringd with the same HostId=, or a stale one) */
                char *alt = sym_avahi_alternative_service_name(p->name);
                if (alt) {
                        free(p->name);
                        p->name = strdup(alt);
                        sym_avahi_free(alt);
                }
                sym_avahi_entry_group_reset(g);
                publish_now(p);
        } else if (state == AVAHI_ENTRY_GROUP_ESTABLISHED)
                membership_backend_renewed(&p->base, p->lease_usec);
        else if (state == AVAHI_ENTRY_GROUP_FAILURE)
                membership_backend_state(&p->base, client_error(p));
}

static void publish_now(MdnsMembership *p) {
        AvahiStringList *txt;
        int r;

        if (!p->running || !p->name)
                return;
        if (!p->group) {
                p->group = sym_avahi_entry_group_new(p->client, on_group, p);
                if (!p->group) {
                        membership_backend_state(&p->base, client_error(p));
                        return;
                }
                txt = make_txt(p);
                if (!txt)
                        return;
                r = sym_avahi_entry_group_add_service_strlst(p->group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, 0, p->name,
                                                             SERVICE_TYPE, NULL, NULL, p->port, txt);
                sym_avahi_string_list_free(txt);
                if (r >= 0)
                        r = sym_avahi_entry_group_commit(p->group);
                if (r < 0)
                        membership_backend_state(&p->base, sym_avahi_strerror(r));
                return;
        }
        txt = make_txt(p);
        if (!txt)
                return;
        r = sym_avahi_entry_group_update_service_txt_strlst(p->group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, 0, p->name,
                                                            SERVICE_TYPE, NULL, txt);
        sym_avahi_string_list_free(txt);
        if (r < 0) {
                /* reset (e.g. after a collision): add it all again */
                sym_avahi_entry_group_reset(p->group);
                sym_avahi_entry_group_free(p->group);
                p->group = NULL;
                publish_now(p);
        }
}

static void drop_client_objects(MdnsMembership *p) {
        while (p->services) {
                Service *s = p->services;
                p->services = s->next;
                service_free(s);
        }
        if (p->browser)
                sym_avahi_service_browser_free(p->browser);
        p->browser = NULL;
        if (p->group)
                sym_avahi_entry_group_free(p->group);
        p->group = NULL;
        p->running = false;
}

static void on_client(AvahiClient *c, AvahiClientState state, void *userdata) {
        MdnsMembership *p = userdata;

        p->client = c; /* the first call comes from inside avahi_client_new() */
        switch (state) {
        case AVAHI_CLIENT_S_RUNNING:
                p->running = true;
                membership_backend_state(&p->base, NULL);
                publish_now(p);
                if (!p->browser)
                        p->browser = sym_avahi_service_browser_new(c, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, SERVICE_TYPE,
                                                                   NULL, 0, on_browse, p);
                break;
        case AVAHI_CLIENT_S_COLLISION:
        case AVAHI_CLIENT_S_REGISTERING:
                /* the host name changes: our service goes, and comes back when the server runs again */
                if (p->group)
                        sym_avahi_entry_group_reset(p->group);
                if (p->group)
                        sym_avahi_entry_group_free(p->group);
                p->group = NULL;
                p->running = false;
                break;
        case AVAHI_CLIENT_CONNECTING:
                membership_backend_state(&p->base, "waiting for avahi-daemon");
                break;
        case AVAHI_CLIENT_FAILURE:
                membership_backend_state(&p->base, client_error(p));
                p->running = false;
                /* a new client, from the loop (not from inside this one's callback) */
                (void) sd_event_source_set_time(p->retry, membership_backend_now(&p->base) + RETRY_USEC);
                (void) sd_event_source_set_enabled(p->retry, SD_EVENT_ONESHOT);
                break;
        default:
                break;
        }
}

static void client_start(MdnsMembership *p) {
        int error = 0;
        AvahiClient *c;

        c = sym_avahi_client_new(&p->poll, AVAHI_CLIENT_NO_FAIL, on_client, p, &error);
        if (!c) {
                membership_backend_state(&p->base, sym_avahi_strerror(error));
                (void) sd_event_source_set_time(p->retry, membership_backend_now(&p->base) + RETRY_USEC);
                (void) sd_event_source_set_enabled(p->retry, SD_EVENT_ONESHOT);
                return;
        }
        p->client = c;
}

static int on_retry(sd_event_source *es, uint64_t usec, void *userdata) {
        MdnsMembership *p = userdata;
        drop_client_objects(p);
        if (p->client)
                sym_avahi_client_free(p->client);
        p->client = NULL;
        client_start(p);
        return 0;
}

static int on_tick(sd_event_source *es, uint64_t usec, void *userdata) {
        MdnsMembership *p = userdata;
        /* listed hosts stay alive while avahi-daemon is there to list them */
        if (p->running)
                for (Service *s = p->services; s; s = s->next)
                        report_service(p, s);
        (void) sd_event_source_set_time(p->tick, membership_backend_now(&p->base) + p->lease_usec / 3);
        return 0;
}

static void mdns_publish(MembershipBackend *b) {
        publish_now((MdnsMembership *) b);
}

static int mdns_open(MembershipBackend *b, const MembershipOptions *o, char **reterr_msg) {
        MdnsMembership *p = (MdnsMembership *) b;
        _cleanup_free_ char *host = NULL;
        int r;

        p->lease_usec = o->lease_usec;
        r = dlopen_avahi("membership mdns", reterr_msg);
        if (r < 0)
                return r;
        r = cluster_parse_address(o->address, &host, &p->port);
        if (r < 0)
                return r;
        /* a DNS label: at most 63 bytes (the full id is in the TXT data) */
        p->name = strndup(o->host_id, 63);
        if (!p->name)
                return -ENOMEM;
        p->poll = (AvahiPoll){
                .userdata = b->event,
                .watch_new = watch_new,
                .watch_update = watch_update,
                .watch_get_events = watch_get_events,
                .watch_free = watch_free,
                .timeout_new = timeout_new,
                .timeout_update = timeout_update,
                .timeout_free = timeout_free,
        };
        r = sd_event_add_time(b->event, &p->retry, CLOCK_MONOTONIC, UINT64_MAX, 0, on_retry, p);
        if (r >= 0)
                r = sd_event_add_time(b->event, &p->tick, CLOCK_MONOTONIC, 0, 0, on_tick, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->retry, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(p->tick, SD_EVENT_ON);
        client_start(p);
        return 0;
}

static void mdns_close(MembershipBackend *b) {
        MdnsMembership *p = (MdnsMembership *) b;

        /* freeing the entry group withdraws our service (avahi-daemon sends the goodbye) */
        drop_client_objects(p);
        if (p->client)
                sym_avahi_client_free(p->client);
        p->client = NULL;
        p->tick = sd_event_source_disable_unref(p->tick);
        p->retry = sd_event_source_disable_unref(p->retry);
        free(p->name);
}

const MembershipDriver membership_mdns_driver = {
        .name = "mdns",
        .abi = MEMBERSHIP_DRIVER_ABI,
        .instance_size = sizeof(MdnsMembership),
        .open = mdns_open,
        .close = mdns_close,
        .publish = mdns_publish,
};
