/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pubsub.mqtt3 (alias pubsub.mqtt): Dapr's MQTT pub/sub over MQTT 3.1.1 with
 * libmosquitto, driven by the daemon's sd-event loop (libmosquitto never
 * starts a thread of its own), plus a local SQLite spool that makes delivery
 * at least once through a crash of the daemon. libmosquitto is not linked:
 * open() loads it first (dl-mosquitto.h); its calls go through sym_ pointers.
 *
 * Metadata (Dapr's names): url (required: tcp:// or mqtt://, optional
 * user:password@, port 1883 by default; ssl://, tls://, mqtts://, ws(s)://
 * and caCert/clientCert/clientKey are refused: no TLS yet), qos (1 default,
 * or 2; 0 is refused, it cannot tell us that the broker took a message),
 * retain (false), cleanSession (false: the broker keeps each group's session
 * and queue while this daemon is away), consumerID (base of the client ids;
 * default "<instance id>-<component name>"; must be stable across restarts
 * and unique per daemon; "{uuid}"-style templates are refused).
 *
 * Connections: one for publishing, client id "<consumerID>-pub" (clean
 * session), and one per group (app id) with subscriptions, client id
 * "<consumerID>-sub-<group>" (persistent session unless cleanSession). A
 * subscription to topic T for group G is the MQTT shared subscription
 * "$share/G/T" at QoS 1 on G's connection: the broker hands each message of
 * T to one session per share group (competing consumers: two daemons running
 * app G share its messages; different apps each get every message). MQTT
 * 3.1.1 has no subscription identifiers, which is why each group has its own
 * connection: a message's topic then names its subscription. Mosquitto 2.x
 * serves $share to MQTT 3.1.1 clients too.
 *
 * Wildcards (issue 14 part 4), as Dapr's MQTT component: a subscription's
 * topic may be a filter ("a/+/temperature", "a/#"), shared the same way
 * ("$share/G/a/#"); a publish names one topic (no + or #). A message is
 * delivered with its own topic, to the stream (group, filter) whose filter
 * it matches; the spool keeps it under the filter (and its own topic in
 * msg_topic). Mosquitto hands a session one copy of a message however many
 * of its subscriptions match, so with overlapping filters of one group
 * (a/+/t and a/#) the copy is spooled once per matching filter and every
 * subscription gets it. Topics starting with '$', and groups containing
 * / + #, are refused (-EINVAL).
 *
 * MQTT 3.1.1 carries no headers: publish metadata is dropped (the block's
 * CloudEvent envelope carries what Dapr needs in the payload). The engine has
 * no message expiry: native_ttl is false.
 *
 * The acknowledgement problem and the spool. libmosquitto 2.0.11 queues the
 * PUBACK of a QoS 1 message *before* it calls on_message
 * (lib/handle_publish.c: send__puback(), then on_message) and has no manual
 * acknowledgement. In its default single-threaded mode packet__queue() even
 * writes that PUBACK to the socket at once, so a crash right after on_message
 * would lose the message. We therefore run the handle with
 * mosquitto_threaded_set(true): queued packets are then written only when
 * we call mosquitto_loop_write() (lib/packet_mosq.c packet__queue), and we
 * call it only while the connection's "gate" is open: when every message
 * received on this connection is committed to the spool. So:
 *
 *   receive (PUBACK queued, not sent) -> INSERT into the spool, group commit
 *   with fsync on the spool's worker thread -> gate opens, PUBACKs go out
 *   -> deliver() -> settle ACK: DELETE from the spool (batched)
 *
 * The spool, <state_dir>/pubsub-mqtt-<component>.db (WAL, synchronous=FULL),
 * holds every message received and not yet acked. A stream (group, topic)
 * delivers from it in spool order; it keeps at most a bounded number of
 * messages in memory and pages the rest in from the spool as the backlog
 * drains, so a long backlog costs disk, not memory. RETRY keeps the message
 * (its attempt count is stored) and offers it again after retry_after_usec.
 *
 * Guarantee: a message whose publish() answered 0 is on the broker (PUBACK,
 * or PUBCOMP for qos 2). From there it reaches every group subscribed at
 * that time at least once, through crashes (SIGKILL, power loss) of this
 * daemon at any point: before its spool commit the broker still has it
 * unacknowledged and redelivers it to the group's session on reconnect;
 * after the commit the spool has it until the app's ACK is committed.
 * Duplicates are possible (a crash or a lost connection between the spool
 * commit and the PUBACK; a crash between an ACK and its DELETE's commit).
 * Messages spooled by this daemon are delivered only by this daemon (after
 * its restart, if need be), never by another member of the group.
 *
 * Limits of that guarantee, all on the broker's side: it needs cleanSession
 * false (with true, the broker drops the group's session, and what it had
 * not delivered, when the connection ends). Mosquitto must run with
 * persistence, and drops messages for a session beyond max_queued_messages
 * (default 1000; 0 = no limit). Mosquitto before 2.0.19 (Debian 12 ships
 * 2.0.11) does not persist shared subscriptions: after a broker restart a
 * group exists again only once one of its daemons has reconnected and
 * resubscribed (at most 2 s of backoff after the broker is back); messages
 * published before that are not queued for the group (messages queued for
 * it before the restart do survive). Mosquitto shares a group's messages
 * round robin over its sessions, connected or not: a daemon that is down
 * holds its share until it comes back. A broker sending QoS 2 on our QoS 1
 * subscription (a protocol violation) would weaken it: libmosquitto answers
 * PUBREC before we see the message.
 *
 * Publishing: done() runs on PUBACK (qos 1) or PUBCOMP (qos 2). While the
 * publishing connection is down and no attempt is in progress, publish()
 * answers -ENOTCONN at once; while an attempt is in progress, publishes wait
 * for its CONNACK (at most the 10 s connect timeout). A lost connection
 * answers its in-flight publishes -ENOTCONN (they may still have reached
 * the broker), and a publish without PUBACK after 30 s drops the connection
 * (-ETIMEDOUT). Each connection attempt uses a fresh libmosquitto handle,
 * so nothing we already failed is resent later behind our back.
 *
 * Connecting never blocks the loop: host names are resolved on a worker
 * thread, libmosquitto connects non-blocking to the numeric address, the
 * CONNECT goes out when the socket is writable. Lost connections come back
 * with backoff (100 ms doubling to 2 s); the addresses of a host name are
 * tried in turn. Groups resubscribe on every connect (the persistent session
 * normally has them already; not after a restart of an older mosquitto, see
 * above). A 1 s tick runs mosquitto_loop_misc() (keepalive 30 s) and the
 * deadlines.
 *
 * Callback discipline: libmosquitto callbacks only record things. User
 * callbacks (publish done, deliver) run from our own defer sources, never
 * inside a libmosquitto call and never inside the call that started them;
 * a liveness flag (broker) or a reference (stream) tells the dispatcher
 * whether the callback closed or unsubscribed what it was iterating.
 *
 * The daemon ignores SIGPIPE (main.c): libmosquitto writes with write(2).
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <mosquitto.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../../work/queue.h"
#include "../dl-mosquitto.h"
#include "../sqlite-common.h"
#include "driver.h"

#define USEC_PER_SEC 1000000ULL
#define MQTT_DEFAULT_PORT 1883
#define MQTT_KEEPALIVE_SEC 30
#define MQTT_CONNECT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define MQTT_PUBLISH_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define MQTT_BACKOFF_MIN_USEC (100 * 1000ULL)
#define MQTT_BACKOFF_MAX_USEC (2 * USEC_PER_SEC)
#define MQTT_TICK_USEC USEC_PER_SEC
#define MQTT_PAYLOAD_MAX 268435455 /* MQTT's remaining-length limit, less for topic and headers */
#define MQTT_ADDRS_MAX 8           /* addresses of a host name tried in turn */
#define MQTT_ADDR_LEN 64
#define MQTT_READ_BATCH 64         /* packets read per io event before yielding to the loop */
#define STREAM_MEM_MIN 256         /* messages a stream keeps in memory at least (cap) */
#define DISPATCH_BATCH 64          /* deliveries per dispatch before yielding to the loop */
#define SPOOL_BUSY_TIMEOUT_MS 10000
#define SPOOL_RETRY_USEC USEC_PER_SEC /* a failed spool read is retried after this */

typedef struct MqttBroker MqttBroker;
typedef struct MqttConn MqttConn;
typedef struct MqttStream MqttStream;
typedef struct MqttPub MqttPub;
typedef struct SpoolJob SpoolJob;
typedef struct SpoolLoad SpoolLoad;
typedef struct PubsubDelivery MqttMsg;

/* ---- liveness: see the header comment ---- */

typedef struct Liveness {
        unsigned n_ref;
        bool alive;
} Liveness;

static Liveness *liveness_new(void) {
        Liveness *l = calloc(1, sizeof(*l));
        if (l)
                *l = (Liveness){ .n_ref = 1, .alive = true };
        return l;
}

static Liveness *liveness_ref(Liveness *l) {
        l->n_ref++;
        return l;
}

/* Drops a reference; returns whether the owner is still alive. */
static bool liveness_unref(Liveness *l) {
        bool alive = l->alive;
        assert(l->n_ref > 0);
        if (--l->n_ref == 0)
                free(l);
        return alive;
}

/* ---- messages ---- */

/*
 * One received message. Until its spool commit it belongs to a SpoolJob (ins list) and knows its
 * group and the connection attempt whose PUBACK waits for it; then it is in a stream's ready or
 * waiting list, or delivered (in its subscription's inflight list), or only in the spool.
 */
struct PubsubDelivery {
        MqttMsg *prev, *next;
        int64_t id;                  /* spool row id; 0 until committed */
        char *group;                 /* until committed: which stream it belongs to */
        uint64_t conn_serial;        /* until committed: the connection attempt it came on */
        char *topic;                 /* its stream's topic (a filter for a wildcard subscription) */
        char *msg_topic;             /* the topic it was published to, when that differs; else NULL */
        void *data;
        size_t len;
        unsigned attempt;            /* deliveries so far */
        uint64_t not_before;         /* waiting list: CLOCK_MONOTONIC */
        PubsubSubscription *sub;     /* while delivered: back-reference */
};

typedef struct MsgList {
        MqttMsg *head, *tail;
        size_t n;
} MsgList;

static void msg_append(MsgList *l, MqttMsg *m) {
        m->prev = l->tail;
        m->next = NULL;
        if (l->tail)
                l->tail->next = m;
        else
                l->head = m;
        l->tail = m;
        l->n++;
}

static void msg_prepend(MsgList *l, MqttMsg *m) {
        m->next = l->head;
        m->prev = NULL;
        if (l->head)
                l->head->prev = m;
        else
                l->tail = m;
        l->head = m;
        l->n++;
}

static void msg_insert_before(MsgList *l, MqttMsg *at, MqttMsg *m) {
        if (!at) {
                msg_append(l, m);
                return;
        }
        m->next = at;
        m->prev = at->prev;
        if (at->prev)
                at->prev->next = m;
        else
                l->head = m;
        at->prev = m;
        l->n++;
}

static void msg_remove(MsgList *l, MqttMsg *m) {
        if (m->prev)
                m->prev->next = m->next;
        else
                l->head = m->next;
        if (m->next)
                m->next->prev = m->prev;
        else
                l->tail = m->prev;
        m->prev = m->next = NULL;
        assert(l->n > 0);
        l->n--;
}

static MqttMsg *msg_pop(MsgList *l) {
        MqttMsg *m = l->head;
        if (m)
                msg_remove(l, m);
        return m;
}

static void msg_free(MqttMsg *m) {
        if (!m)
                return;
        free(m->group);
        free(m->topic);
        free(m->msg_topic);
        free(m->data);
        free(m);
}

static void msg_list_free(MsgList *l) {
        MqttMsg *m;
        while ((m = msg_pop(l)))
                msg_free(m);
}

/* ---- the objects ---- */

struct PubsubSubscription {
        MqttStream *stream;          /* back-reference */
        PubsubSubscription *prev, *next; /* in the stream */
        PubsubDeliverFn deliver;
        void *userdata;
        unsigned max_in_flight;
        MsgList inflight;            /* delivered, not settled */
};

/* The messages of one (group, topic) in this daemon, shared by its subscriptions. */
struct MqttStream {
        unsigned n_ref;              /* the broker's list holds one; a running dispatch another */
        bool dead;                   /* unlinked: its last subscription left, or the broker closed */
        MqttBroker *broker;          /* back-reference; NULL once dead */
        MqttStream *prev, *next;
        char *group, *topic;
        PubsubSubscription *subs, *cursor; /* cursor: who gets the next delivery (round robin) */
        unsigned n_subs;
        uint64_t sum_max_in_flight;
        size_t n_inflight;
        MsgList ready;               /* committed, to deliver, in order */
        MsgList waiting;             /* after RETRY, by not_before */
        int64_t loaded_upto;         /* highest spool id taken into memory */
        bool paged_out;              /* the spool may hold ids > loaded_upto that memory lacks */
        bool loading;                /* a SpoolLoad for us is queued or running */
        SpoolLoad *load;             /* that load */
        uint64_t load_retry_at;      /* after a failed load: when to try again; 0: none */
        sd_event_source *dispatch;   /* defer */
        sd_event_source *timer;      /* next retry due / load retry */
};

typedef enum ConnState {
        CONN_IDLE,                   /* no attempt in progress: waiting for the backoff timer */
        CONN_RESOLVING,              /* host name lookup on the resolver thread */
        CONN_CONNECTING,             /* socket connecting or CONNECT sent, no CONNACK yet */
        CONN_ACTIVE,                 /* CONNACK accepted */
} ConnState;

struct MqttConn {
        MqttBroker *broker;          /* back-reference */
        MqttConn *prev, *next;       /* broker->conns (groups); the publishing one is broker->pub */
        char *group;                 /* NULL: the publishing connection */
        char *client_id;
        bool clean_session;
        ConnState state;
        uint64_t serial;             /* of the current attempt, unique in the broker */
        char addrs[MQTT_ADDRS_MAX][MQTT_ADDR_LEN]; /* the host's addresses, tried in turn */
        unsigned n_addrs, addr_idx;
        struct mosquitto *mosq;      /* NULL unless CONNECTING or ACTIVE */
        sd_event_source *io;
        uint32_t io_events;
        sd_event_source *tick;       /* loop_misc + deadlines while mosq exists */
        sd_event_source *reconnect;  /* backoff */
        uint64_t connect_deadline;
        uint64_t backoff_usec;
        unsigned n_uncommitted;      /* messages of this attempt not yet in the spool: PUBACKs wait */
        unsigned n_streams;          /* streams of this group (group connections) */
        bool lingering;              /* no stream left: closes once every PUBACK may go */
        bool abort;                  /* set inside a libmosquitto callback: drop the connection after it */
        char *abort_reason;          /* why (may be NULL on OOM) */
        char *last_error;            /* why there is no connection */
        char **filters;              /* every topic this connection subscribed to (the broker keeps them) */
};

typedef struct PubList {
        MqttPub *head, *tail;
} PubList;

struct MqttPub {
        MqttPub *prev, *next;
        int mid;                     /* sent: libmosquitto's message id */
        bool sent;                   /* handed to libmosquitto (else: waiting for the connection) */
        char *topic;                 /* unsent only: copies */
        void *data;
        size_t len;
        uint64_t deadline;           /* CLOCK_MONOTONIC */
        PubsubDoneFn done;
        void *userdata;
        int error;                   /* completed */
        char *message;
};

typedef enum SpoolStmt {
        SPOOL_INSERT,
        SPOOL_DELETE,
        SPOOL_UPDATE,
        SPOOL_LOAD,
        SPOOL_BEGIN,
        SPOOL_COMMIT,
        SPOOL_ROLLBACK,
        _SPOOL_MAX,
} SpoolStmt;

static const char *const spool_sql[_SPOOL_MAX] = {
        [SPOOL_INSERT] = ("INSERT INTO spool (grp, topic, payload, attempt, received, msg_topic) "
                          "VALUES (?1, ?2, ?3, 0, ?4, ?5)"),
        [SPOOL_DELETE] = "DELETE FROM spool WHERE id = ?1",
        [SPOOL_UPDATE] = "UPDATE spool SET attempt = ?2 WHERE id = ?1",
        [SPOOL_LOAD] = ("SELECT id, payload, attempt, msg_topic FROM spool WHERE grp = ?1 AND topic = ?2 AND id > ?3 "
                        "ORDER BY id LIMIT ?4"),
        [SPOOL_BEGIN] = "BEGIN IMMEDIATE",
        [SPOOL_COMMIT] = "COMMIT",
        [SPOOL_ROLLBACK] = "ROLLBACK",
};

/* AUTOINCREMENT: ids never come back, so "id > loaded_upto" pages through a stream exactly. */
static const char spool_schema[] =
        "CREATE TABLE IF NOT EXISTS spool ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " grp TEXT NOT NULL,"
        " topic TEXT NOT NULL,"
        " payload BLOB NOT NULL,"
        " attempt INTEGER NOT NULL DEFAULT 0,"
        " received INTEGER NOT NULL,"
        " msg_topic TEXT);"                 /* NULL: the same as topic */
        "CREATE INDEX IF NOT EXISTS spool_stream ON spool (grp, topic, id);";
/* A spool from before wildcards: the column is added (the error for one that has it is ignored). */
static const char spool_migrate[] = "ALTER TABLE spool ADD COLUMN msg_topic TEXT";

/* The SQLite connection: used on the loop thread by open() only, then only by the worker. */
typedef struct Spool {
        sqlite3 *db;
        sqlite3_stmt *stmt[_SPOOL_MAX];
} Spool;

typedef struct SpoolUpdate {
        int64_t id;
        unsigned attempt;
} SpoolUpdate;

/* One page of a stream read from the spool. */
struct SpoolLoad {
        SpoolLoad *next;
        MqttStream *stream;          /* back-reference; NULL once the stream is gone */
        char *group, *topic;
        int64_t after;
        unsigned limit;
        MsgList rows;                /* the result */
        bool failed;
};

/*
 * One transaction on the worker: inserts, deletes and updates (in that order, one commit), then
 * the loads. Jobs run one at a time; whatever arrives meanwhile accumulates in the next one
 * (group commit).
 */
struct SpoolJob {
        MqttBroker *broker;          /* back-reference; valid: close() waits for every job */
        Spool *spool;                /* borrowed */
        MsgList ins;                 /* owned until done */
        int64_t *del;
        size_t n_del, cap_del;
        SpoolUpdate *upd;
        size_t n_upd, cap_upd;
        SpoolLoad *loads, *loads_tail;
        int64_t now_realtime_usec;
        int error;                   /* the writes failed (negative errno) */
        char errmsg[256];
};

typedef struct ResolveJob {
        MqttBroker *broker;          /* back-reference; valid: close() waits for the job */
        uint64_t serial;             /* of the attempt that asked */
        char *host;
        char addrs[MQTT_ADDRS_MAX][MQTT_ADDR_LEN];
        unsigned n_addrs;
        char errmsg[256];
} ResolveJob;

struct MqttBroker {
        PubsubBroker base;

        /* configuration */
        char *host;                  /* brackets stripped */
        bool host_numeric;
        int port;
        char *username;
        char *password;              /* secret: wiped on free */
        int qos;
        bool retain;
        bool clean_session;
        char *consumer_id;
        char *spool_path;

        bool lib_inited;
        MqttConn *pub;
        MqttConn *conns;
        uint64_t next_serial;

        PubList pending;             /* publishes waiting for PUBACK (or for the connection) */
        PubList completed;           /* answered, done() due on the next iteration */
        sd_event_source *complete;   /* defer: runs the done()s */

        MqttStream *streams;

        Spool spool;
        WorkQueue *queue;            /* the spool's worker */
        SpoolJob *acc;               /* the next job, accumulating */
        SpoolJob *running;           /* submitted, done() not yet run */
        sd_event_source *flush;      /* defer: submits acc when nothing runs */
        WorkQueue *resolver;         /* created on first use (host names only) */

        bool closing;
        Liveness *liveness;
};

extern const PubsubDriver pubsub_mqtt_driver;

static void conn_lost(MqttConn *c, int error, const char *message);
static void conn_update_io(MqttConn *c);
static void conn_lost_rc(MqttConn *c, int rc, int err);
static void conn_start(MqttConn *c);
static void conn_connect(MqttConn *c, const char *addr);
static void conn_free(MqttConn *c);
static void stream_kick(MqttStream *st);
static void stream_maybe_load(MqttStream *st);

/* ---- small helpers ---- */

static uint64_t now_usec(MqttBroker *b) {
        uint64_t t = 0;
        if (!b->base.event || sd_event_now(b->base.event, CLOCK_MONOTONIC, &t) < 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                t = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        }
        return t;
}

static char *mfree_str(char *p) {
        free(p);
        return NULL;
}

static void set_string(char **p, char *v) {
        free(*p);
        *p = v;
}

static char *strdup_printf(const char *fmt, ...) _printf_(1, 2);
static char *strdup_printf(const char *fmt, ...) {
        char *s = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

static int fail_field(char **reterr_msg, int r, const char *fmt, ...) _printf_(3, 4);
static int fail_field(char **reterr_msg, int r, const char *fmt, ...) {
        va_list ap;
        free(*reterr_msg);
        va_start(ap, fmt);
        if (vasprintf(reterr_msg, fmt, ap) < 0)
                *reterr_msg = NULL;
        va_end(ap);
        return r;
}

/* A libmosquitto result as text; err: errno right after the call. */
static const char *mosq_error(int rc, int err, char *buf, size_t size) {
        switch (rc) {
        case MOSQ_ERR_ERRNO:
                snprintf(buf, size, "%s", strerror(err ?: EIO));
                break;
        case MOSQ_ERR_EAI:
                snprintf(buf, size, "%s", gai_strerror(err));
                break;
        case MOSQ_ERR_CONN_LOST:
                snprintf(buf, size, "connection closed by the broker");
                break;
        case MOSQ_ERR_KEEPALIVE:
                snprintf(buf, size, "no answer from the broker within the keepalive");
                break;
        default:
                snprintf(buf, size, "%s", sym_mosquitto_strerror(rc));
        }
        return buf;
}

/* A Dapr topic usable as an MQTT topic name (publish) or, after "$share/<group>/", as a filter
 * (subscribe: wildcards where MQTT allows them, + for a whole level, # as the last one). */
static int topic_check(const char *topic, bool filter) {
        size_t n;

        if (!topic || !*topic || topic[0] == '$')
                return -EINVAL;
        n = strlen(topic);
        if (n > 65535 - 64 || (!filter && strpbrk(topic, "+#")))
                return -EINVAL;
        if (filter && sym_mosquitto_sub_topic_check(topic) != MOSQ_ERR_SUCCESS)
                return -EINVAL;
        if (sym_mosquitto_validate_utf8(topic, (int) n) != MOSQ_ERR_SUCCESS)
                return -EINVAL;
        return 0;
}

static int group_check(const char *group) {
        if (!group || !*group || strpbrk(group, "/+#") || strlen(group) > 1024)
                return -EINVAL;
        if (sym_mosquitto_validate_utf8(group, (int) strlen(group)) != MOSQ_ERR_SUCCESS)
                return -EINVAL;
        return 0;
}

/* ---- publishing: completion ---- */

static void pub_list_append(PubList *l, MqttPub *p) {
        p->prev = l->tail;
        p->next = NULL;
        if (l->tail)
                l->tail->next = p;
        else
                l->head = p;
        l->tail = p;
}

static void pub_list_remove(PubList *l, MqttPub *p) {
        if (p->prev)
                p->prev->next = p->next;
        else
                l->head = p->next;
        if (p->next)
                p->next->prev = p->prev;
        else
                l->tail = p->prev;
        p->prev = p->next = NULL;
}

static void pub_free(MqttPub *p) {
        free(p->topic);
        free(p->data);
        free(p->message);
        free(p);
}

/* Moves p from pending to completed with its answer; done() runs from on_complete(). */
static void pub_complete(MqttBroker *b, MqttPub *p, int error, const char *message) {
        pub_list_remove(&b->pending, p);
        p->error = error;
        set_string(&p->message, error != 0 ? strdup(message ?: "mqtt: publish failed") : NULL);
        free(p->topic);
        free(p->data);
        p->topic = NULL;
        p->data = NULL;
        pub_list_append(&b->completed, p);
        if (b->complete)
                (void) sd_event_source_set_enabled(b->complete, SD_EVENT_ONESHOT);
}

static int on_complete(sd_event_source *es, void *userdata) {
        MqttBroker *b = userdata;
        Liveness *l = liveness_ref(b->liveness);
        MqttPub *p;

        while (l->alive && (p = b->completed.head)) {
                pub_list_remove(&b->completed, p);
                p->done(p->error, p->error != 0 ? (p->message ?: "mqtt: publish failed") : NULL, p->userdata);
                pub_free(p);
        }
        (void) liveness_unref(l);
        return 0;
}

/* Answers every publish that waits on the publishing connection. */
static void pubs_fail_all(MqttBroker *b, int error, const char *message) {
        while (b->pending.head)
                pub_complete(b, b->pending.head, error, message);
}

/* ---- the spool (worker side) ---- */

static void job_fail(SpoolJob *j, int error, sqlite3 *db, const char *what) {
        if (j->error)
                return;
        j->error = error;
        snprintf(j->errmsg, sizeof(j->errmsg), "mqtt spool: %s: %s", what, db ? sqlite3_errmsg(db) : "error");
}

static int step_done(sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        (void) sqlite3_reset(st);
        return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : rc;
}

static void job_run_writes(SpoolJob *j) {
        Spool *sp = j->spool;
        sqlite3_stmt *st;
        int rc;

        if (!j->ins.head && j->n_del == 0 && j->n_upd == 0)
                return;
        if (step_done(sp->stmt[SPOOL_BEGIN]) != 0) {
                job_fail(j, -EIO, sp->db, "begin");
                return;
        }

        st = sp->stmt[SPOOL_INSERT];
        for (MqttMsg *m = j->ins.head; m; m = m->next) {
                (void) sqlite3_bind_text(st, 1, m->group, -1, SQLITE_STATIC);
                (void) sqlite3_bind_text(st, 2, m->topic, -1, SQLITE_STATIC);
                (void) sqlite3_bind_blob64(st, 3, m->len > 0 ? m->data : "", m->len, SQLITE_STATIC);
                (void) sqlite3_bind_int64(st, 4, j->now_realtime_usec);
                if (m->msg_topic)
                        (void) sqlite3_bind_text(st, 5, m->msg_topic, -1, SQLITE_STATIC);
                rc = step_done(st);
                (void) sqlite3_clear_bindings(st);
                if (rc != 0) {
                        job_fail(j, rc == SQLITE_FULL ? -ENOSPC : -EIO, sp->db, "insert");
                        goto rollback;
                }
                m->id = sqlite3_last_insert_rowid(sp->db);
        }
        st = sp->stmt[SPOOL_DELETE];
        for (size_t i = 0; i < j->n_del; i++) {
                (void) sqlite3_bind_int64(st, 1, j->del[i]);
                if (step_done(st) != 0) {
                        job_fail(j, -EIO, sp->db, "delete");
                        goto rollback;
                }
        }
        st = sp->stmt[SPOOL_UPDATE];
        for (size_t i = 0; i < j->n_upd; i++) {
                (void) sqlite3_bind_int64(st, 1, j->upd[i].id);
                (void) sqlite3_bind_int64(st, 2, j->upd[i].attempt);
                if (step_done(st) != 0) {
                        job_fail(j, -EIO, sp->db, "update");
                        goto rollback;
                }
        }
        rc = step_done(sp->stmt[SPOOL_COMMIT]);
        if (rc != 0) {
                job_fail(j, rc == SQLITE_FULL ? -ENOSPC : -EIO, sp->db, "commit");
                goto rollback;
        }
        return;

rollback:
        (void) step_done(sp->stmt[SPOOL_ROLLBACK]);
        for (MqttMsg *m = j->ins.head; m; m = m->next)
                m->id = 0;
}

static void job_run_load(SpoolJob *j, SpoolLoad *L) {
        sqlite3_stmt *st = j->spool->stmt[SPOOL_LOAD];
        int rc;

        (void) sqlite3_bind_text(st, 1, L->group, -1, SQLITE_STATIC);
        (void) sqlite3_bind_text(st, 2, L->topic, -1, SQLITE_STATIC);
        (void) sqlite3_bind_int64(st, 3, L->after);
        (void) sqlite3_bind_int64(st, 4, L->limit);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                MqttMsg *m = calloc(1, sizeof(*m));
                const void *blob = sqlite3_column_blob(st, 1);
                size_t n = (size_t) sqlite3_column_bytes(st, 1);

                if (!m) {
                        L->failed = true;
                        break;
                }
                m->id = sqlite3_column_int64(st, 0);
                m->attempt = (unsigned) sqlite3_column_int64(st, 2);
                m->topic = strdup(L->topic);
                const char *mt = (const char *) sqlite3_column_text(st, 3);
                m->msg_topic = mt ? strdup(mt) : NULL;
                m->data = malloc(n + 1); /* + 1: never malloc(0); deliver() gets a pointer either way */
                if (!m->topic || !m->data || (mt && !m->msg_topic)) {
                        msg_free(m);
                        L->failed = true;
                        break;
                }
                if (n > 0)
                        memcpy(m->data, blob, n);
                m->len = n;
                msg_append(&L->rows, m);
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                L->failed = true;
        (void) sqlite3_reset(st);
        (void) sqlite3_clear_bindings(st);
        if (L->failed)
                msg_list_free(&L->rows);
}

static void job_run(void *userdata) {
        SpoolJob *j = userdata;

        job_run_writes(j);
        for (SpoolLoad *L = j->loads; L; L = L->next)
                job_run_load(j, L);
}

/* ---- the spool (loop side) ---- */

static void load_free(SpoolLoad *L) {
        msg_list_free(&L->rows);
        free(L->group);
        free(L->topic);
        free(L);
}

static void job_free(SpoolJob *j) {
        SpoolLoad *L;

        if (!j)
                return;
        msg_list_free(&j->ins);
        while ((L = j->loads)) {
                j->loads = L->next;
                if (L->stream) {
                        L->stream->load = NULL;
                        L->stream->loading = false;
                }
                load_free(L);
        }
        free(j->del);
        free(j->upd);
        free(j);
}

/* The job that collects the next batch; NULL on OOM. Arms the flush. */
static SpoolJob *spool_acc(MqttBroker *b) {
        if (!b->acc) {
                b->acc = calloc(1, sizeof(SpoolJob));
                if (!b->acc)
                        return NULL;
                b->acc->broker = b;
                b->acc->spool = &b->spool;
        }
        if (b->flush)
                (void) sd_event_source_set_enabled(b->flush, SD_EVENT_ONESHOT);
        return b->acc;
}

/* Forgets the ACK of id in the spool. A lost delete only means a redelivery after a restart. */
static void spool_delete(MqttBroker *b, int64_t id) {
        SpoolJob *j = spool_acc(b);

        if (!j || id <= 0)
                return;
        if (j->n_del == j->cap_del) {
                size_t cap = j->cap_del ? j->cap_del * 2 : 64;
                int64_t *p = reallocarray(j->del, cap, sizeof(*p));
                if (!p)
                        return;
                j->del = p;
                j->cap_del = cap;
        }
        j->del[j->n_del++] = id;
}

/* Stores the attempt count of id (best effort, like spool_delete()). */
static void spool_update(MqttBroker *b, int64_t id, unsigned attempt) {
        SpoolJob *j = spool_acc(b);

        if (!j || id <= 0)
                return;
        if (j->n_upd == j->cap_upd) {
                size_t cap = j->cap_upd ? j->cap_upd * 2 : 16;
                SpoolUpdate *p = reallocarray(j->upd, cap, sizeof(*p));
                if (!p)
                        return;
                j->upd = p;
                j->cap_upd = cap;
        }
        j->upd[j->n_upd++] = (SpoolUpdate){ .id = id, .attempt = attempt };
}

static MqttConn *conn_by_serial(MqttBroker *b, uint64_t serial) {
        for (MqttConn *c = b->conns; c; c = c->next)
                if (c->serial == serial && c->mosq)
                        return c;
        return NULL;
}

static MqttStream *stream_find(MqttBroker *b, const char *group, const char *topic) {
        for (MqttStream *st = b->streams; st; st = st->next)
                if (streq(st->group, group) && streq(st->topic, topic))
                        return st;
        return NULL;
}

static size_t stream_mem(const MqttStream *st) {
        return st->ready.n + st->waiting.n + st->n_inflight;
}

static size_t stream_cap(const MqttStream *st) {
        return (size_t) MAX((uint64_t) STREAM_MEM_MIN, 2 * st->sum_max_in_flight);
}

/* A committed message: into its stream's memory, or left to the spool. Consumes m. */
static void stream_take_committed(MqttBroker *b, MqttMsg *m) {
        MqttStream *st = stream_find(b, m->group, m->topic);

        m->group = mfree_str(m->group);
        if (!st || m->id <= st->loaded_upto) {
                /* No subscriber here now (the spool keeps it for the next), or a load took it already. */
                msg_free(m);
                return;
        }
        if (st->loading || st->paged_out || stream_mem(st) >= stream_cap(st)) {
                /* The pending load reads it, or the next one (ids only grow). */
                if (!st->loading)
                        st->paged_out = true;
                msg_free(m);
                return;
        }
        msg_append(&st->ready, m);
        st->loaded_upto = m->id;
        stream_kick(st);
}

static void load_take(MqttBroker *b, SpoolLoad *L) {
        MqttStream *st = L->stream;
        unsigned n = 0;
        MqttMsg *m;

        if (!st)
                return;
        st->load = NULL;
        st->loading = false;
        L->stream = NULL;
        if (L->failed) {
                st->paged_out = true;
                st->load_retry_at = now_usec(b) + SPOOL_RETRY_USEC;
                stream_kick(st);
                return;
        }
        while ((m = msg_pop(&L->rows))) {
                st->loaded_upto = MAX(st->loaded_upto, m->id);
                msg_append(&st->ready, m);
                n++;
        }
        st->paged_out = n >= L->limit;
        stream_kick(st);
}

/* Marks c to be dropped once the libmosquitto call we are inside returns. Keeps the first reason. */
static void conn_set_abort(MqttConn *c, const char *fmt, ...) _printf_(2, 3);
static void conn_set_abort(MqttConn *c, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;

        if (c->abort)
                return;
        c->abort = true;
        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        c->abort_reason = m;
}

/*
 * The gate just opened (or may have): the PUBACKs of what is now spooled go out at once, before
 * anything is delivered, so a broker (or daemon) stopping next redelivers as little as possible.
 * Not inside a libmosquitto callback.
 */
static void conn_flush(MqttConn *c) {
        int rc, err;

        if (c->mosq && c->state == CONN_ACTIVE && c->n_uncommitted == 0 && sym_mosquitto_want_write(c->mosq)) {
                errno = 0;
                rc = sym_mosquitto_loop_write(c->mosq, 1);
                err = errno;
                if (rc != MOSQ_ERR_SUCCESS) {
                        conn_lost_rc(c, rc, err);
                        return;
                }
        }
        conn_update_io(c);
}

/* Graceful end of a group connection: what is spooled gets its PUBACK, then DISCONNECT. Frees c. */
static void conn_close(MqttConn *c) {
        if (c->mosq && c->state == CONN_ACTIVE && c->n_uncommitted == 0 && !c->abort) {
                /* Both only queue (threaded mode); one non-blocking write sends what fits. */
                (void) sym_mosquitto_disconnect(c->mosq);
                (void) sym_mosquitto_loop_write(c->mosq, 1);
        }
        conn_free(c);
}

/* A finished spool job, on the loop (also from work_queue_free() inside close()). */
static void job_done(void *userdata) {
        SpoolJob *j = userdata;
        MqttBroker *b = j->broker;
        SpoolLoad *L;
        MqttMsg *m;

        if (b->running == j)
                b->running = NULL;

        /* Loads first: they ran after this job's inserts and may hold them already. */
        while ((L = j->loads)) {
                j->loads = L->next;
                if (!b->closing)
                        load_take(b, L);
                else if (L->stream) {
                        L->stream->load = NULL;
                        L->stream->loading = false;
                }
                load_free(L);
        }

        while ((m = msg_pop(&j->ins))) {
                MqttConn *c = conn_by_serial(b, m->conn_serial);

                if (c) {
                        assert(c->n_uncommitted > 0);
                        c->n_uncommitted--;
                        /* Not spooled: its PUBACK must never go out. Dropping the connection discards
                         * the queued PUBACKs; the broker offers the message again after reconnecting. */
                        if (j->error)
                                conn_set_abort(c, "%s", j->errmsg);
                }
                if (j->error || b->closing)
                        msg_free(m);
                else
                        stream_take_committed(b, m);
        }
        job_free(j);

        if (b->closing)
                return;
        for (MqttConn *c = b->conns, *next; c; c = next) {
                next = c->next;
                if (c->abort)
                        conn_lost(c, -EIO, c->abort_reason ?: "mqtt spool: write failed");
                else if (c->lingering && c->n_uncommitted == 0)
                        conn_close(c);
                else
                        conn_flush(c);
        }
        if (b->acc && b->flush)
                (void) sd_event_source_set_enabled(b->flush, SD_EVENT_ONESHOT);
}

/* Hands the accumulated job to the worker. */
static void spool_submit(MqttBroker *b) {
        SpoolJob *j = b->acc;
        struct timespec ts;

        if (!j || !b->queue)
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        j->now_realtime_usec = (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        if (work_queue_submit(b->queue, job_run, job_done, j) < 0)
                return; /* OOM: stays accumulated; the next event tries again */
        b->acc = NULL;
        b->running = j;
}

static int on_flush(sd_event_source *es, void *userdata) {
        MqttBroker *b = userdata;

        /* One job at a time: what arrives meanwhile is committed together next (group commit). */
        if (!b->running)
                spool_submit(b);
        return 0;
}

static void spool_close(Spool *sp) {
        for (size_t i = 0; i < _SPOOL_MAX; i++)
                if (sp->stmt[i]) {
                        (void) sqlite3_finalize(sp->stmt[i]);
                        sp->stmt[i] = NULL;
                }
        if (sp->db) {
                (void) sqlite3_close(sp->db);
                sp->db = NULL;
        }
}

static int spool_open(MqttBroker *b, char **reterr_msg) {
        Spool *sp = &b->spool;
        int rc;

        if (!b->base.state_dir || !*b->base.state_dir)
                return fail_field(reterr_msg, -EINVAL, "no state directory for the MQTT spool");
        if (!b->base.name || !*b->base.name || strchr(b->base.name, '/') || b->base.name[0] == '.')
                return fail_field(reterr_msg, -EINVAL, "component name unusable as a spool file name");
        b->spool_path = strdup_printf("%s/pubsub-mqtt-%s.db", b->base.state_dir, b->base.name);
        if (!b->spool_path)
                return -ENOMEM;

        /* synchronous=FULL: a commit is on disk before its PUBACKs go out, also through a power loss. */
        _cleanup_free_ char *why = NULL;
        if (sqlite_open_durable(b->spool_path, false, true, SPOOL_BUSY_TIMEOUT_MS * 1000ULL, NULL, &sp->db, &why) < 0) {
                (void) fail_field(reterr_msg, -EIO, "cannot open the MQTT spool: %s", why ?: "out of memory");
                spool_close(sp);
                return -EIO;
        }
        rc = sqlite3_exec(sp->db, spool_schema, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                (void) sqlite3_exec(sp->db, spool_migrate, NULL, NULL, NULL);
        for (size_t i = 0; rc == SQLITE_OK && i < _SPOOL_MAX; i++)
                rc = sqlite3_prepare_v3(sp->db, spool_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &sp->stmt[i], NULL);
        if (rc != SQLITE_OK)
                goto fail;
        return 0;

fail:
        (void) fail_field(reterr_msg, -EIO, "cannot open the MQTT spool '%s': %s", b->spool_path,
                          sp->db ? sqlite3_errmsg(sp->db) : sqlite3_errstr(rc));
        spool_close(sp);
        return -EIO;
}

/* ---- streams and delivery ---- */

static MqttStream *stream_ref(MqttStream *st) {
        st->n_ref++;
        return st;
}

static void stream_unref(MqttStream *st) {
        assert(st->n_ref > 0);
        if (--st->n_ref > 0)
                return;
        assert(st->dead);
        free(st->group);
        free(st->topic);
        free(st);
}

static void stream_kick(MqttStream *st) {
        if (!st->dead && st->dispatch)
                (void) sd_event_source_set_enabled(st->dispatch, SD_EVENT_ONESHOT);
}

static void stream_arm_timer(MqttStream *st) {
        uint64_t t = UINT64_MAX;

        if (st->dead || !st->timer)
                return;
        if (st->waiting.head)
                t = st->waiting.head->not_before;
        if (st->load_retry_at)
                t = MIN(t, st->load_retry_at);
        if (t == UINT64_MAX) {
                (void) sd_event_source_set_enabled(st->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(st->timer, t);
        (void) sd_event_source_set_enabled(st->timer, SD_EVENT_ONESHOT);
}

static int on_stream_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        MqttStream *st = userdata;

        if (st->load_retry_at && st->load_retry_at <= usec)
                st->load_retry_at = 0;
        stream_kick(st);
        stream_arm_timer(st);
        return 0;
}

/* Asks the spool for the next page of this stream when memory has room for it. */
static void stream_maybe_load(MqttStream *st) {
        MqttBroker *b = st->broker;
        size_t mem, cap;
        SpoolLoad *L;
        SpoolJob *j;

        if (st->dead || !st->paged_out || st->loading || st->load_retry_at)
                return;
        mem = stream_mem(st);
        cap = stream_cap(st);
        if (mem > cap / 2)
                return;

        L = calloc(1, sizeof(*L));
        j = L ? spool_acc(b) : NULL;
        if (L) {
                L->group = strdup(st->group);
                L->topic = strdup(st->topic);
        }
        if (!j || !L->group || !L->topic) {
                if (L)
                        load_free(L);
                st->load_retry_at = now_usec(b) + SPOOL_RETRY_USEC;
                stream_arm_timer(st);
                return;
        }
        L->stream = st;
        L->after = st->loaded_upto;
        L->limit = (unsigned) MIN(cap - mem, (size_t) UINT_MAX);
        if (j->loads_tail)
                j->loads_tail->next = L;
        else
                j->loads = L;
        j->loads_tail = L;
        st->loading = true;
        st->load = L;
}

/* The next subscription with room, round robin. */
static PubsubSubscription *stream_pick(MqttStream *st) {
        PubsubSubscription *s = st->cursor ?: st->subs;

        for (unsigned i = 0; s && i < st->n_subs; i++) {
                PubsubSubscription *next = s->next ?: st->subs;
                if (s->inflight.n < s->max_in_flight) {
                        st->cursor = next;
                        return s;
                }
                s = next;
        }
        return NULL;
}

static int on_dispatch(sd_event_source *es, void *userdata) {
        MqttStream *st = userdata;
        uint64_t now = now_usec(st->broker);
        MqttMsg *orig_head = st->ready.head, *m;
        unsigned n = 0;

        /* Due retries go before what is ready: they are older. */
        while ((m = st->waiting.head) && m->not_before <= now) {
                msg_remove(&st->waiting, m);
                msg_insert_before(&st->ready, orig_head, m);
        }

        stream_ref(st);
        for (;;) {
                PubsubSubscription *s;
                char id[24];

                if (st->dead)
                        break;
                if (n >= DISPATCH_BATCH) {
                        stream_kick(st); /* let the loop breathe, then go on */
                        break;
                }
                m = st->ready.head;
                if (!m || !(s = stream_pick(st)))
                        break;
                msg_remove(&st->ready, m);
                m->attempt++;
                m->sub = s;
                msg_append(&s->inflight, m);
                st->n_inflight++;

                snprintf(id, sizeof(id), "%" PRId64, m->id);
                PubsubMessage pm = {
                        .topic = m->msg_topic ?: m->topic,
                        .data = m->data,
                        .len = m->len,
                        .id = id,
                        .attempt = m->attempt,
                };
                /* May settle, unsubscribe (st->dead then) or close the broker (st->dead too). */
                s->deliver(s, m, &pm, s->userdata);
                n++;
        }
        if (!st->dead) {
                stream_maybe_load(st);
                stream_arm_timer(st);
        }
        stream_unref(st);
        return 0;
}

/* Unlinks and forgets a stream whose subscriptions are gone; its messages stay in the spool. */
static void stream_drop(MqttStream *st) {
        MqttBroker *b = st->broker;
        MqttConn *c;

        assert(!st->dead && st->n_subs == 0);
        if (st->prev)
                st->prev->next = st->next;
        else
                b->streams = st->next;
        if (st->next)
                st->next->prev = st->prev;
        st->prev = st->next = NULL;
        st->dead = true;
        st->broker = NULL;
        msg_list_free(&st->ready);
        msg_list_free(&st->waiting);
        if (st->load) {
                st->load->stream = NULL;
                st->load = NULL;
        }
        st->dispatch = sd_event_source_disable_unref(st->dispatch);
        st->timer = sd_event_source_disable_unref(st->timer);

        /* The group's connection goes when its last stream does (the broker session stays). */
        for (c = b->conns; c && !streq(c->group, st->group); c = c->next)
                ;
        if (c && !b->closing) {
                assert(c->n_streams > 0);
                if (--c->n_streams == 0) {
                        if (c->state != CONN_ACTIVE)
                                conn_free(c);
                        else if (c->n_uncommitted == 0)
                                conn_close(c);
                        else {
                                /* PUBACKs wait for a commit: close once it is done, reading nothing more. */
                                c->lingering = true;
                                conn_update_io(c);
                        }
                }
        }
        stream_unref(st);
}

static void mqtt_settle(PubsubDelivery *m, PubsubOutcome outcome, uint64_t retry_after_usec) {
        PubsubSubscription *s = m->sub;
        MqttStream *st;
        MqttBroker *b;

        assert(s);
        st = s->stream;
        b = st->broker;
        msg_remove(&s->inflight, m);
        m->sub = NULL;
        assert(st->n_inflight > 0);
        st->n_inflight--;

        if (outcome == PUBSUB_RETRY) {
                MqttMsg *at;

                m->not_before = now_usec(b) + retry_after_usec;
                spool_update(b, m->id, m->attempt);
                /* Sorted by not_before; equal ones keep their order. */
                for (at = st->waiting.tail; at && at->not_before > m->not_before; at = at->prev)
                        ;
                msg_insert_before(&st->waiting, at ? at->next : st->waiting.head, m);
                stream_arm_timer(st);
        } else {
                spool_delete(b, m->id);
                msg_free(m);
        }
        stream_kick(st);
}

/* Puts a subscription's unsettled deliveries back at the front of its stream, in order. */
static void sub_abandon(PubsubSubscription *s) {
        MqttStream *st = s->stream;
        MqttMsg *m;

        while ((m = s->inflight.tail)) {
                msg_remove(&s->inflight, m);
                m->sub = NULL;
                st->n_inflight--;
                msg_prepend(&st->ready, m);
        }
}

static void mqtt_unsubscribe(PubsubSubscription *s) {
        MqttStream *st;

        if (!s)
                return;
        st = s->stream;
        sub_abandon(s);
        if (s->prev)
                s->prev->next = s->next;
        else
                st->subs = s->next;
        if (s->next)
                s->next->prev = s->prev;
        if (st->cursor == s)
                st->cursor = s->next;
        st->n_subs--;
        st->sum_max_in_flight -= s->max_in_flight;
        free(s);

        if (st->n_subs == 0)
                stream_drop(st);
        else
                stream_kick(st);
}

/* ---- connections ---- */

static void conn_update_io(MqttConn *c) {
        uint32_t ev = 0;

        if (!c->mosq || !c->io)
                return;
        if (!c->lingering)
                ev |= EPOLLIN;
        /* The gate: nothing is written while a received message is not yet in the spool, since
         * its PUBACK is already queued in libmosquitto. */
        if (c->n_uncommitted == 0 && sym_mosquitto_want_write(c->mosq))
                ev |= EPOLLOUT;
        if (ev != c->io_events && sd_event_source_set_io_events(c->io, ev) >= 0)
                c->io_events = ev;
}

static void conn_teardown(MqttConn *c) {
        /* The io source first: the fd must not be closed (and reused) while epoll watches it. */
        c->io = sd_event_source_disable_unref(c->io);
        c->io_events = 0;
        c->tick = sd_event_source_disable_unref(c->tick);
        if (c->mosq) {
                sym_mosquitto_destroy(c->mosq);
                c->mosq = NULL;
        }
        c->state = CONN_IDLE;
        c->n_uncommitted = 0;
        c->abort = false;
        c->abort_reason = mfree_str(c->abort_reason);
}

static void conn_free(MqttConn *c) {
        MqttBroker *b;

        if (!c)
                return;
        b = c->broker;
        conn_teardown(c);
        c->reconnect = sd_event_source_disable_unref(c->reconnect);
        if (c == b->pub)
                b->pub = NULL;
        else {
                if (c->prev)
                        c->prev->next = c->next;
                else if (b->conns == c)
                        b->conns = c->next;
                if (c->next)
                        c->next->prev = c->prev;
        }
        free(c->group);
        free(c->client_id);
        free(c->last_error);
        strv_free(c->filters);
        free(c);
}

static int on_reconnect(sd_event_source *es, uint64_t usec, void *userdata) {
        MqttConn *c = userdata;

        if (c->state == CONN_IDLE && !c->broker->closing)
                conn_start(c);
        return 0;
}

static void conn_schedule_reconnect(MqttConn *c) {
        MqttBroker *b = c->broker;
        uint64_t t;

        c->backoff_usec = c->backoff_usec == 0 ? MQTT_BACKOFF_MIN_USEC
                                                : MIN(c->backoff_usec * 2, MQTT_BACKOFF_MAX_USEC);
        t = now_usec(b) + c->backoff_usec;
        if (!c->reconnect) {
                if (sd_event_add_time(b->base.event, &c->reconnect, CLOCK_MONOTONIC, t, 10 * 1000, on_reconnect,
                                      c) < 0)
                        c->reconnect = NULL; /* nothing we can do: the next subscribe or close will tell */
                return;
        }
        (void) sd_event_source_set_time(c->reconnect, t);
        (void) sd_event_source_set_enabled(c->reconnect, SD_EVENT_ONESHOT);
}

/*
 * The connection is gone (or the attempt failed): every in-flight publish gets error, a lingering
 * connection is freed, any other tries again after the backoff.
 */
static void conn_lost(MqttConn *c, int error, const char *message) {
        MqttBroker *b = c->broker;
        bool next_addr = c->state == CONN_CONNECTING && c->addr_idx + 1 < c->n_addrs && !c->lingering &&
                         !b->closing;

        set_string(&c->last_error, strdup(message));
        conn_teardown(c);
        if (next_addr) {
                /* This address never answered: the host's next one, at once (waiting publishes wait on). */
                conn_connect(c, c->addrs[++c->addr_idx]);
                return;
        }
        if (c == b->pub)
                pubs_fail_all(b, error, message);
        if (c->lingering) {
                conn_free(c);
                return;
        }
        if (!b->closing)
                conn_schedule_reconnect(c);
}

static void conn_lost_rc(MqttConn *c, int rc, int err) {
        char buf[256], msg[400];

        if (c->abort && c->abort_reason)
                snprintf(msg, sizeof(msg), "%s", c->abort_reason);
        else
                snprintf(msg, sizeof(msg), "mqtt: connection to %s:%d lost: %s", c->broker->host,
                         c->broker->port, mosq_error(rc, err, buf, sizeof(buf)));
        conn_lost(c, -ENOTCONN, msg);
}

static int mosq_publish_error(int rc) {
        switch (rc) {
        case MOSQ_ERR_NOMEM:
                return -ENOMEM;
        case MOSQ_ERR_PAYLOAD_SIZE:
        case MOSQ_ERR_OVERSIZE_PACKET:
                return -EMSGSIZE;
        case MOSQ_ERR_INVAL:
        case MOSQ_ERR_MALFORMED_UTF8:
                return -EINVAL;
        case MOSQ_ERR_NO_CONN:
                return -ENOTCONN;
        case MOSQ_ERR_QOS_NOT_SUPPORTED:
                return -EOPNOTSUPP;
        default:
                return -EIO;
        }
}

/* Hands p to libmosquitto on c (ACTIVE); answers it on failure. */
static void pub_send(MqttBroker *b, MqttConn *c, MqttPub *p, const char *topic, const void *data,
                     size_t len) {
        int mid = 0, rc;

        rc = sym_mosquitto_publish(c->mosq, &mid, topic, (int) len, data, b->qos, b->retain);
        if (rc != MOSQ_ERR_SUCCESS) {
                char buf[200];
                snprintf(buf, sizeof(buf), "mqtt: publish to '%s' failed: %s", topic, sym_mosquitto_strerror(rc));
                pub_complete(b, p, mosq_publish_error(rc), buf);
                return;
        }
        p->mid = mid;
        p->sent = true;
        p->topic = mfree_str(p->topic);
        free(p->data);
        p->data = NULL;
}

/* ---- libmosquitto callbacks: they record, nothing more ---- */

static void conn_send_subscribe(MqttConn *c, const char *topic) {
        _cleanup_free_ char *filter = strdup_printf("$share/%s/%s", c->group, topic);
        int rc;

        if (!filter || (!strv_contains(c->filters, topic) && strv_extend(&c->filters, topic) < 0)) {
                conn_set_abort(c, "mqtt: out of memory");
                return;
        }
        rc = sym_mosquitto_subscribe(c->mosq, NULL, filter, 1);
        if (rc != MOSQ_ERR_SUCCESS)
                conn_set_abort(c, "mqtt: cannot subscribe to '%s': %s", filter, sym_mosquitto_strerror(rc));
}

static void on_connect(struct mosquitto *mosq, void *userdata, int rc, int flags) {
        MqttConn *c = userdata;

        if (rc != 0) {
                conn_set_abort(c, "mqtt: the broker refused the connection of '%s': %s", c->client_id,
                               sym_mosquitto_connack_string(rc));
                return;
        }
        c->state = CONN_ACTIVE;
        c->backoff_usec = 0;
        c->last_error = mfree_str(c->last_error);
        if (!c->group) {
                MqttBroker *b = c->broker;
                /* Publishes that waited for this attempt go now (queued: we are inside loop_read). */
                for (MqttPub *p = b->pending.head, *next; p; p = next) {
                        next = p->next;
                        if (!p->sent)
                                pub_send(b, c, p, p->topic, p->data, p->len);
                }
                return;
        }
        /* The persistent session has them already; subscribing again is harmless and covers a
         * broker that lost its state (flags: session present or not). */
        for (MqttStream *st = c->broker->streams; st; st = st->next)
                if (streq(st->group, c->group))
                        conn_send_subscribe(c, st->topic);
}

static void on_subscribe(struct mosquitto *mosq, void *userdata, int mid, int qos_count, const int *granted_qos) {
        MqttConn *c = userdata;

        for (int i = 0; i < qos_count; i++)
                if (granted_qos[i] < 0 || granted_qos[i] > 2)
                        conn_set_abort(c,
                                       "mqtt: the broker refused a subscription of group '%s' (not authorized, "
                                       "or no shared subscriptions)",
                                       c->group);
}

/*
 * The stream topics a message on topic belongs to: every filter this connection subscribed to that
 * it matches (at most max), or topic itself when it matches none.
 */
static size_t stream_topics_for(MqttConn *c, const char *topic, const char **ret, size_t max) {
        size_t k = 0;
        for (char **f = c->filters; f && *f && k < max; f++) {
                bool hit = false;
                if (sym_mosquitto_topic_matches_sub(*f, topic, &hit) == MOSQ_ERR_SUCCESS && hit)
                        ret[k++] = *f;
        }
        if (k == 0)
                ret[k++] = topic;
        return k;
}

/*
 * A message arrived; libmosquitto has already queued its PUBACK. It goes into the spool's next
 * commit, and the connection writes nothing until that commit is done.
 */
static void on_message(struct mosquitto *mosq, void *userdata, const struct mosquitto_message *msg) {
        MqttConn *c = userdata;
        MqttBroker *b = c->broker;
        size_t len = msg->payloadlen > 0 ? (size_t) msg->payloadlen : 0;
        MqttMsg *m;
        SpoolJob *j;

        if (!c->group || !msg->topic)
                return;
        /* Mosquitto sends a session one copy of a message however many of its shared subscriptions
         * match (a/+/t and a/# of one group): each matching stream gets its own. */
        const char *keys[16];
        size_t k = stream_topics_for(c, msg->topic, keys, ELEMENTSOF(keys));
        for (size_t i = 0; i < k; i++) {
                m = calloc(1, sizeof(*m));
                if (m) {
                        m->topic = strdup(keys[i]);
                        if (!streq(keys[i], msg->topic))
                                m->msg_topic = strdup(msg->topic);
                        m->group = strdup(c->group);
                        m->data = malloc(len + 1);
                }
                j = m && m->topic && m->group && m->data && (m->msg_topic || streq(m->topic, msg->topic))
                            ? spool_acc(b)
                            : NULL;
                if (!j) {
                        msg_free(m);
                        conn_set_abort(c, "mqtt: out of memory receiving a message");
                        return;
                }
                if (len > 0)
                        memcpy(m->data, msg->payload, len);
                m->len = len;
                m->conn_serial = c->serial;
                msg_append(&j->ins, m);
                c->n_uncommitted++;
        }
}

static void on_publish(struct mosquitto *mosq, void *userdata, int mid) {
        MqttConn *c = userdata;
        MqttBroker *b = c->broker;

        /* PUBACK (qos 1) or PUBCOMP (qos 2): the broker has it. */
        for (MqttPub *p = b->pending.head; p; p = p->next)
                if (p->sent && p->mid == mid) {
                        pub_complete(b, p, 0, NULL);
                        return;
                }
}

/* ---- connections on the loop ---- */

static int on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        MqttConn *c = userdata;
        struct mosquitto *mosq = c->mosq;
        int rc = MOSQ_ERR_SUCCESS, err = 0;

        if (!mosq)
                return 0;
        if ((revents & EPOLLOUT) && c->n_uncommitted == 0) {
                errno = 0;
                rc = sym_mosquitto_loop_write(mosq, 1);
                err = errno;
        }
        if (rc == MOSQ_ERR_SUCCESS && (revents & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                /* loop_read() reads about one packet; take what is there, up to a batch. */
                for (unsigned i = 0; i < MQTT_READ_BATCH; i++) {
                        int avail = 0;

                        errno = 0;
                        rc = sym_mosquitto_loop_read(mosq, 1);
                        err = errno;
                        if (rc != MOSQ_ERR_SUCCESS || c->abort)
                                break;
                        if (ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0)
                                break;
                }
        }
        if (rc != MOSQ_ERR_SUCCESS || c->abort) {
                conn_lost_rc(c, rc, err);
                return 0;
        }
        conn_update_io(c);
        return 0;
}

static int on_tick(sd_event_source *es, uint64_t usec, void *userdata) {
        MqttConn *c = userdata;
        MqttBroker *b = c->broker;
        uint64_t now = now_usec(b);
        int rc, err;

        if (!c->mosq)
                return 0;
        if (c->state == CONN_CONNECTING && now >= c->connect_deadline) {
                char msg[300];
                snprintf(msg, sizeof(msg), "mqtt: no answer to CONNECT from %s:%d within %llu s", b->host, b->port,
                         (unsigned long long) (MQTT_CONNECT_TIMEOUT_USEC / USEC_PER_SEC));
                conn_lost(c, -ENOTCONN, msg);
                return 0;
        }
        if (c == b->pub && b->pending.head && b->pending.head->sent && b->pending.head->deadline <= now) {
                char msg[300];
                snprintf(msg, sizeof(msg), "mqtt: no PUBACK from %s:%d within %llu s, connection reset", b->host,
                         b->port, (unsigned long long) (MQTT_PUBLISH_TIMEOUT_USEC / USEC_PER_SEC));
                conn_lost(c, -ETIMEDOUT, msg);
                return 0;
        }
        errno = 0;
        rc = sym_mosquitto_loop_misc(c->mosq); /* keepalive: PINGREQ, or the verdict that the broker is gone */
        err = errno;
        if (rc != MOSQ_ERR_SUCCESS) {
                conn_lost_rc(c, rc, err);
                return 0;
        }
        (void) sd_event_source_set_time(es, now + MQTT_TICK_USEC);
        (void) sd_event_source_set_enabled(es, SD_EVENT_ONESHOT);
        conn_update_io(c);
        return 0;
}

/* Starts the non-blocking connect to a numeric address. */
static void conn_connect(MqttConn *c, const char *addr) {
        MqttBroker *b = c->broker;
        char buf[256], msg[512];
        int rc, err, fd, r;

        assert(!c->mosq);
        c->serial = ++b->next_serial;
        c->n_uncommitted = 0;
        c->mosq = sym_mosquitto_new(c->client_id, c->clean_session, c);
        if (!c->mosq) {
                snprintf(msg, sizeof(msg), "mqtt: cannot create a client '%s': %s", c->client_id,
                         strerror(errno));
                conn_lost(c, -ENOTCONN, msg);
                return;
        }
        /* Threaded mode without threads: packets are only queued, we decide when they are written. */
        (void) sym_mosquitto_threaded_set(c->mosq, true);
        (void) sym_mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        if (b->username)
                (void) sym_mosquitto_username_pw_set(c->mosq, b->username, b->password);
        sym_mosquitto_connect_with_flags_callback_set(c->mosq, on_connect);
        sym_mosquitto_subscribe_callback_set(c->mosq, on_subscribe);
        sym_mosquitto_message_callback_set(c->mosq, on_message);
        sym_mosquitto_publish_callback_set(c->mosq, on_publish);
        c->state = CONN_CONNECTING;

        errno = 0;
        rc = sym_mosquitto_connect_async(c->mosq, addr, b->port, MQTT_KEEPALIVE_SEC);
        err = errno;
        if (rc != MOSQ_ERR_SUCCESS) {
                snprintf(msg, sizeof(msg), "mqtt: cannot connect to %s:%d: %s", b->host, b->port,
                         mosq_error(rc, err, buf, sizeof(buf)));
                conn_lost(c, -ENOTCONN, msg);
                return;
        }
        fd = sym_mosquitto_socket(c->mosq);
        if (fd < 0) {
                conn_lost(c, -ENOTCONN, "mqtt: connecting produced no socket");
                return;
        }
        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
        r = sd_event_add_io(b->base.event, &c->io, fd, EPOLLIN | EPOLLOUT, on_io, c);
        if (r >= 0) {
                c->io_events = EPOLLIN | EPOLLOUT; /* the CONNECT goes out once connect(2) completes */
                r = sd_event_add_time(b->base.event, &c->tick, CLOCK_MONOTONIC, now_usec(b) + MQTT_TICK_USEC,
                                      100 * 1000, on_tick, c);
        }
        if (r < 0) {
                snprintf(msg, sizeof(msg), "mqtt: cannot watch the connection: %s", strerror(-r));
                conn_lost(c, -ENOTCONN, msg);
                return;
        }
        c->connect_deadline = now_usec(b) + MQTT_CONNECT_TIMEOUT_USEC;
        conn_update_io(c);
}

static void resolve_run(void *userdata) {
        ResolveJob *j = userdata;
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC }, *ai = NULL;
        int r;

        r = getaddrinfo(j->host, NULL, &hints, &ai);
        if (r != 0) {
                snprintf(j->errmsg, sizeof(j->errmsg), "mqtt: cannot resolve '%s': %s", j->host,
                         r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
                return;
        }
        for (struct addrinfo *p = ai; p && j->n_addrs < MQTT_ADDRS_MAX; p = p->ai_next) {
                const void *a = NULL;

                if (p->ai_family == AF_INET)
                        a = &((const struct sockaddr_in *) p->ai_addr)->sin_addr;
                else if (p->ai_family == AF_INET6)
                        a = &((const struct sockaddr_in6 *) p->ai_addr)->sin6_addr;
                if (a && inet_ntop(p->ai_family, a, j->addrs[j->n_addrs], MQTT_ADDR_LEN))
                        j->n_addrs++;
        }
        freeaddrinfo(ai);
        if (j->n_addrs == 0)
                snprintf(j->errmsg, sizeof(j->errmsg), "mqtt: '%s' has no IPv4 or IPv6 address", j->host);
}

static void resolve_done(void *userdata) {
        ResolveJob *j = userdata;
        MqttBroker *b = j->broker;
        MqttConn *c = NULL;

        if (!b->closing) {
                if (b->pub && b->pub->serial == j->serial)
                        c = b->pub;
                for (MqttConn *k = b->conns; k && !c; k = k->next)
                        if (k->serial == j->serial)
                                c = k;
        }
        if (c && c->state == CONN_RESOLVING) {
                c->state = CONN_IDLE;
                memcpy(c->addrs, j->addrs, sizeof(c->addrs));
                c->n_addrs = j->n_addrs;
                c->addr_idx = 0;
                if (c->n_addrs > 0)
                        conn_connect(c, c->addrs[0]);
                else
                        conn_lost(c, -ENOTCONN, j->errmsg);
        }
        free(j->host);
        free(j);
}

/* One connection attempt: resolve (names only), then connect. */
static void conn_start(MqttConn *c) {
        MqttBroker *b = c->broker;
        ResolveJob *j;

        assert(c->state == CONN_IDLE && !c->mosq);
        c->serial = ++b->next_serial;
        c->n_uncommitted = 0;
        if (b->host_numeric) {
                snprintf(c->addrs[0], MQTT_ADDR_LEN, "%s", b->host);
                c->n_addrs = 1;
                c->addr_idx = 0;
                conn_connect(c, c->addrs[0]);
                return;
        }

        /* getaddrinfo() blocks: it runs on a thread of its own, not on the loop. */
        if (!b->resolver)
                b->resolver = work_queue_new(b->base.event);
        j = calloc(1, sizeof(*j));
        if (j) {
                j->broker = b;
                j->serial = c->serial;
                j->host = strdup(b->host);
        }
        if (!b->resolver || !j || !j->host || work_queue_submit(b->resolver, resolve_run, resolve_done, j) < 0) {
                if (j)
                        free(j->host);
                free(j);
                conn_lost(c, -ENOTCONN, "mqtt: cannot start resolving the broker's host name");
                return;
        }
        c->state = CONN_RESOLVING;
}

static MqttConn *conn_new(MqttBroker *b, const char *group) {
        MqttConn *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->broker = b;
        c->state = CONN_IDLE;
        if (group) {
                c->group = strdup(group);
                c->client_id = strdup_printf("%s-sub-%s", b->consumer_id, group);
                c->clean_session = b->clean_session;
        } else {
                c->client_id = strdup_printf("%s-pub", b->consumer_id);
                c->clean_session = true; /* publishing needs no session on the broker */
        }
        if ((group && !c->group) || !c->client_id) {
                free(c->group);
                free(c->client_id);
                free(c);
                return NULL;
        }
        if (group) {
                c->next = b->conns;
                if (b->conns)
                        b->conns->prev = c;
                b->conns = c;
        }
        return c;
}

/* ---- publish / subscribe ---- */

static int mqtt_publish(PubsubBroker *base, const char *topic, const void *data, size_t len, char *const *metadata,
                        int64_t ttl_sec, PubsubDoneFn done, void *userdata) {
        MqttBroker *b = (MqttBroker *) base;
        MqttConn *c = b->pub;
        MqttPub *p;
        int r;

        assert(done);
        if (b->closing)
                return -ECANCELED;
        r = topic_check(topic, false);
        if (r < 0)
                return r;
        if (len > MQTT_PAYLOAD_MAX - 2 - strlen(topic) - 2)
                return -EMSGSIZE;
        /* metadata: MQTT 3.1.1 has no headers; ttl_sec: no expiry (native_ttl = false). */

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->done = done;
        p->userdata = userdata;
        p->deadline = now_usec(b) + MQTT_PUBLISH_TIMEOUT_USEC;
        pub_list_append(&b->pending, p);

        if (!c || c->state == CONN_IDLE) {
                char msg[512];
                snprintf(msg, sizeof(msg), "mqtt: not connected to %s:%d: %s", b->host, b->port,
                         c && c->last_error ? c->last_error : "no connection");
                pub_complete(b, p, -ENOTCONN, msg);
                return 0;
        }
        if (c->state != CONN_ACTIVE) {
                /* An attempt is in progress: waits for its CONNACK (on_connect() sends it), or fails with it. */
                p->topic = strdup(topic);
                p->data = malloc(len + 1);
                if (!p->topic || !p->data) {
                        pub_list_remove(&b->pending, p);
                        pub_free(p);
                        return -ENOMEM;
                }
                if (len > 0)
                        memcpy(p->data, data, len);
                p->len = len;
                return 0;
        }
        pub_send(b, c, p, topic, data ?: "", len);
        conn_update_io(c);
        return 0;
}

static int mqtt_subscribe(PubsubBroker *base, const char *topic, const char *group, unsigned max_in_flight,
                          PubsubDeliverFn deliver, void *userdata, PubsubSubscription **ret) {
        MqttBroker *b = (MqttBroker *) base;
        PubsubSubscription *s;
        MqttStream *st;
        MqttConn *c;
        int r;

        assert(deliver && ret);
        if (b->closing)
                return -ECANCELED;
        if (topic_check(topic, true) < 0 || group_check(group) < 0 || max_in_flight == 0)
                return -EINVAL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->deliver = deliver;
        s->userdata = userdata;
        s->max_in_flight = max_in_flight;

        st = stream_find(b, group, topic);
        if (!st) {
                st = calloc(1, sizeof(*st));
                if (!st) {
                        free(s);
                        return -ENOMEM;
                }
                st->n_ref = 1;
                st->broker = b;
                st->group = strdup(group);
                st->topic = strdup(topic);
                st->paged_out = true; /* what the spool holds for us comes first */
                r = st->group && st->topic ? 0 : -ENOMEM;
                if (r >= 0)
                        r = sd_event_add_defer(b->base.event, &st->dispatch, on_dispatch, st);
                if (r >= 0) {
                        (void) sd_event_source_set_enabled(st->dispatch, SD_EVENT_OFF);
                        r = sd_event_add_time(b->base.event, &st->timer, CLOCK_MONOTONIC, 0, 1000, on_stream_timer,
                                              st);
                }
                if (r >= 0) {
                        (void) sd_event_source_set_enabled(st->timer, SD_EVENT_OFF);
                        for (c = b->conns; c && !streq(c->group, group); c = c->next)
                                ;
                        if (!c) {
                                c = conn_new(b, group);
                                if (!c)
                                        r = -ENOMEM;
                        }
                }
                if (r < 0) {
                        st->dispatch = sd_event_source_disable_unref(st->dispatch);
                        st->timer = sd_event_source_disable_unref(st->timer);
                        free(st->group);
                        free(st->topic);
                        free(st);
                        free(s);
                        return r;
                }
                st->next = b->streams;
                if (b->streams)
                        b->streams->prev = st;
                b->streams = st;

                c->n_streams++;
                if (c->lingering) {
                        c->lingering = false;
                        conn_update_io(c);
                }
                if (c->state == CONN_IDLE && !c->reconnect)
                        conn_start(c); /* a new connection (one waiting for its backoff keeps waiting) */
                else if (c->state == CONN_ACTIVE) {
                        conn_send_subscribe(c, topic);
                        if (c->abort)
                                conn_lost(c, -ENOTCONN, c->abort_reason ?: "mqtt: cannot subscribe");
                        else
                                conn_update_io(c);
                }
                /* Asks the spool for what an earlier run (or subscription) left. */
                stream_maybe_load(st);
        }

        s->stream = st;
        s->next = st->subs;
        if (st->subs)
                st->subs->prev = s;
        st->subs = s;
        st->n_subs++;
        st->sum_max_in_flight += max_in_flight;
        stream_kick(st); /* deliveries start on the loop, never from inside this call */
        *ret = s;
        return 0;
}

/* ---- open / close ---- */

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Percent-decodes [s, s + n) into a new string; NULL on a bad escape or OOM (*bad tells which). */
static char *pct_decode(const char *s, size_t n, bool *bad) {
        char *out = malloc(n + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '%') {
                        *o++ = s[i];
                        continue;
                }
                int a = i + 2 < n ? unhex(s[i + 1]) : -1, c = i + 2 < n ? unhex(s[i + 2]) : -1;
                if (a < 0 || c < 0 || (a == 0 && c == 0)) {
                        *bad = true;
                        explicit_wipe(out, n + 1);
                        free(out);
                        return NULL;
                }
                *o++ = (char) (a * 16 + c);
                i += 2;
        }
        *o = 0;
        return out;
}

/* url: tcp|mqtt://[user[:password]@]host[:port][/]. Messages never repeat the value (password). */
static int parse_url(MqttBroker *b, const char *url, char **reterr_msg) {
        static const char *const unsupported[] = {
                "ssl://", "tls://", "mqtts://", "tcps://", "ws://", "wss://",
        };
        _cleanup_erase_free_ char *authority = NULL;
        const char *p, *hostport, *at, *colon, *hs, *he;
        bool bad = false;
        size_t n;

        if (!(p = startswith_ptr(url, "tcp://")) && !(p = startswith_ptr(url, "mqtt://"))) {
                for (size_t i = 0; i < ELEMENTSOF(unsupported); i++)
                        if (startswith(url, unsupported[i]))
                                return fail_field(reterr_msg, -EOPNOTSUPP,
                                                  "url: '%.*s' is not supported (no TLS or WebSocket transport "
                                                  "yet); use tcp:// or mqtt://",
                                                  (int) strlen(unsupported[i]), unsupported[i]);
                return fail_field(reterr_msg, -EINVAL,
                                  "url: invalid value (expected tcp://[user:password@]host[:port])");
        }
        n = strcspn(p, "/?#");
        if (p[n] && !streq(p + n, "/"))
                return fail_field(reterr_msg, -EINVAL, "url: a path, query or fragment is not allowed");
        authority = strndup(p, n);
        if (!authority)
                return -ENOMEM;

        at = strrchr(authority, '@');
        hostport = at ? at + 1 : authority;
        if (at) {
                colon = memchr(authority, ':', (size_t) (at - authority));
                size_t ulen = colon ? (size_t) (colon - authority) : (size_t) (at - authority);
                b->username = pct_decode(authority, ulen, &bad);
                if (b->username && colon)
                        b->password = pct_decode(colon + 1, (size_t) (at - colon - 1), &bad);
                if (bad)
                        return fail_field(reterr_msg, -EINVAL, "url: invalid %%-escape in the user or password");
                if (!b->username || (colon && !b->password))
                        return -ENOMEM;
                if (!*b->username)
                        b->username = mfree_str(b->username);
        }

        b->port = MQTT_DEFAULT_PORT;
        colon = NULL;
        if (hostport[0] == '[') {
                he = strchr(hostport, ']');
                if (!he || (he[1] != 0 && he[1] != ':'))
                        goto bad_host;
                hs = hostport + 1;
                colon = he[1] == ':' ? he + 1 : NULL;
        } else {
                hs = hostport;
                colon = strchr(hostport, ':');
                if (colon && strchr(colon + 1, ':'))
                        goto bad_host; /* a bare IPv6 address needs brackets */
                he = colon ?: hostport + strlen(hostport);
        }
        if (he == hs)
                goto bad_host;
        if (colon) {
                uint16_t port;
                if (parse_port(colon + 1, &port) < 0)
                        goto bad_host;
                b->port = port;
        }
        b->host = strndup(hs, (size_t) (he - hs));
        if (!b->host)
                return -ENOMEM;
        {
                unsigned char buf[sizeof(struct in6_addr)];
                b->host_numeric = inet_pton(AF_INET, b->host, buf) == 1 ||
                                  inet_pton(AF_INET6, b->host, buf) == 1;
        }
        return 0;

bad_host:
        return fail_field(reterr_msg, -EINVAL, "url: invalid host or port (expected host[:port] or [v6]:port)");
}

static void mqtt_free_config(MqttBroker *b) {
        b->host = mfree_str(b->host);
        b->username = mfree_str(b->username);
        b->password = erase_and_free(b->password);
        b->consumer_id = mfree_str(b->consumer_id);
        b->spool_path = mfree_str(b->spool_path);
}

static int parse_config(MqttBroker *b, char **reterr_msg) {
        const Component *c = b->base.component;
        static const char *const tls_fields[] = { "caCert", "clientCert", "clientKey" };
        const char *v;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(tls_fields); i++) {
                v = component_get_string(c, tls_fields[i]);
                if (v && *v)
                        return fail_field(reterr_msg, -EOPNOTSUPP, "%s: TLS is not supported yet", tls_fields[i]);
        }

        v = component_get_string(c, "url");
        if (!v || !*v)
                return fail_field(reterr_msg, -EINVAL, "url: required metadata field is missing");
        r = parse_url(b, v, reterr_msg);
        if (r < 0)
                return r;

        b->qos = 1;
        v = component_get_string(c, "qos");
        if (v) {
                if (streq(v, "0"))
                        return fail_field(reterr_msg, -EOPNOTSUPP,
                                          "qos: 0 (at most once) is not supported: the broker would not confirm "
                                          "a publish; use 1 or 2");
                if (!streq(v, "1") && !streq(v, "2"))
                        return fail_field(reterr_msg, -EINVAL, "qos: invalid value '%s' (expected 1 or 2)", v);
                b->qos = v[0] - '0';
        }

        v = component_get_string(c, "retain");
        if (v) {
                r = parse_boolean(v);
                if (r < 0)
                        return fail_field(reterr_msg, -EINVAL, "retain: invalid boolean '%s'", v);
                b->retain = r;
        }
        v = component_get_string(c, "cleanSession");
        if (v) {
                r = parse_boolean(v);
                if (r < 0)
                        return fail_field(reterr_msg, -EINVAL, "cleanSession: invalid boolean '%s'", v);
                b->clean_session = r;
        }

        v = component_get_string(c, "consumerID");
        if (v && *v) {
                if (strpbrk(v, "{}"))
                        return fail_field(reterr_msg, -EINVAL,
                                          "consumerID: templates such as '{uuid}' are not supported: the client "
                                          "id must stay the same across restarts");
                if (strlen(v) > 1024 || sym_mosquitto_validate_utf8(v, (int) strlen(v)) != MOSQ_ERR_SUCCESS)
                        return fail_field(reterr_msg, -EINVAL, "consumerID: invalid value");
                b->consumer_id = strdup(v);
        } else {
                if (!b->base.instance_id || !*b->base.instance_id)
                        return fail_field(reterr_msg, -EINVAL,
                                          "consumerID: required here (no daemon instance id to derive it from)");
                b->consumer_id = strdup_printf("%s-%s", b->base.instance_id, b->base.name);
        }
        return b->consumer_id ? 0 : -ENOMEM;
}

/* Frees what open() built, without answering anything (nothing was started). */
static void mqtt_release(MqttBroker *b) {
        b->complete = sd_event_source_disable_unref(b->complete);
        b->flush = sd_event_source_disable_unref(b->flush);
        b->queue = work_queue_free(b->queue);
        b->resolver = work_queue_free(b->resolver);
        spool_close(&b->spool);
        if (b->liveness) {
                b->liveness->alive = false;
                (void) liveness_unref(b->liveness);
                b->liveness = NULL;
        }
        if (b->lib_inited) {
                (void) sym_mosquitto_lib_cleanup();
                b->lib_inited = false;
        }
        mqtt_free_config(b);
}

static int mqtt_open(PubsubBroker *base, char **reterr_msg) {
        MqttBroker *b = (MqttBroker *) base;
        int r;

        *reterr_msg = NULL;
        /* First: the configuration is checked with libmosquitto's UTF-8 validator. */
        r = dlopen_mosquitto("pubsub.mqtt3", reterr_msg);
        if (r >= 0)
                r = parse_config(b, reterr_msg);
        if (r >= 0)
                r = spool_open(b, reterr_msg);
        if (r < 0)
                goto fail;

        b->liveness = liveness_new();
        if (!b->liveness) {
                r = -ENOMEM;
                goto fail;
        }
        if (sym_mosquitto_lib_init() != MOSQ_ERR_SUCCESS) {
                r = fail_field(reterr_msg, -EIO, "cannot initialize libmosquitto");
                goto fail;
        }
        b->lib_inited = true;

        r = sd_event_add_defer(base->event, &b->complete, on_complete, b);
        if (r >= 0) {
                (void) sd_event_source_set_enabled(b->complete, SD_EVENT_OFF);
                r = sd_event_add_defer(base->event, &b->flush, on_flush, b);
        }
        if (r < 0) {
                r = fail_field(reterr_msg, r, "cannot create event sources: %s", strerror(-r));
                goto fail;
        }
        (void) sd_event_source_set_enabled(b->flush, SD_EVENT_OFF);
        b->queue = work_queue_new(base->event);
        if (!b->queue) {
                r = fail_field(reterr_msg, -errno ?: -ENOMEM, "cannot start the spool's worker thread");
                goto fail;
        }

        b->pub = conn_new(b, NULL);
        if (!b->pub) {
                r = -ENOMEM;
                goto fail;
        }
        /* Does not wait: a broker that is not up yet only makes publishes fail with -ENOTCONN. */
        conn_start(b->pub);
        return 0;

fail:
        if (r == -ENOMEM && !*reterr_msg)
                *reterr_msg = strdup("out of memory");
        conn_free(b->pub);
        mqtt_release(b);
        return r;
}

static void mqtt_close(PubsubBroker *base) {
        MqttBroker *b = (MqttBroker *) base;
        MqttStream *st;
        MqttPub *p;

        if (b->closing)
                return;
        b->closing = true;
        if (b->liveness) {
                b->liveness->alive = false;
                (void) liveness_unref(b->liveness);
                b->liveness = NULL;
        }

        /* Subscriptions go; unsettled deliveries are abandoned (the spool keeps them). */
        while ((st = b->streams)) {
                PubsubSubscription *s;
                while ((s = st->subs)) {
                        st->subs = s->next;
                        msg_list_free(&s->inflight);
                        free(s);
                }
                st->n_subs = 0;
                st->n_inflight = 0;
                stream_drop(st);
        }

        /* Everything received goes into the spool (this waits for the worker), ... */
        spool_submit(b);
        b->queue = work_queue_free(b->queue);
        if (b->acc) {
                /* Could not be submitted: not spooled, so its PUBACKs must not go out. */
                for (MqttMsg *m = b->acc->ins.head; m; m = m->next) {
                        MqttConn *c = conn_by_serial(b, m->conn_serial);
                        if (c)
                                conn_set_abort(c, "mqtt: closed before spooling");
                }
                job_free(b->acc);
                b->acc = NULL;
        }
        /* ... then its PUBACKs go out with a DISCONNECT. */
        while (b->conns)
                conn_close(b->conns);
        conn_free(b->pub);
        b->resolver = work_queue_free(b->resolver);

        /* Publishes: answered ones get their answer, the others -ECANCELED, before we return. */
        while (b->pending.head)
                pub_complete(b, b->pending.head, -ECANCELED, "mqtt: pub/sub component closed");
        while ((p = b->completed.head)) {
                pub_list_remove(&b->completed, p);
                p->done(p->error, p->error != 0 ? (p->message ?: "mqtt: publish failed") : NULL, p->userdata);
                pub_free(p);
        }

        mqtt_release(b);
}

const PubsubDriver pubsub_mqtt_driver = {
        .type = "pubsub.mqtt3",
        .alias = "pubsub.mqtt",
        .abi = PUBSUB_DRIVER_ABI,
        .instance_size = sizeof(MqttBroker),
        .native_ttl = false,
        .open = mqtt_open,
        .close = mqtt_close,
        .publish = mqtt_publish,
        .subscribe = mqtt_subscribe,
        .unsubscribe = mqtt_unsubscribe,
        .settle = mqtt_settle,
        .subscribe_wildcards = true,
};
