/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the Redis drivers (state.redis, pubsub.redis) share: the connection
 * metadata Dapr gives both (redisHost, redisUsername, redisPassword, redisDB,
 * dialTimeout, and the refusal of TLS, sentinel failover and clusters), and
 * RedisConn, one hiredis async connection driven by the daemon's sd-event
 * loop through a small adapter (one io source whose event mask follows
 * hiredis' addRead/delRead/addWrite/delWrite hooks). hiredis is not linked:
 * both drivers load it first thing in their open() (dl-hiredis.h), and the
 * calls here go through its sym_ pointers.
 *
 * RedisConn guarantees:
 * - It connects without waiting, pipelines AUTH/SELECT first, and reconnects
 *   with backoff (100 ms doubling to 5 s) whenever the connection is lost.
 * - Every command sent with redis_conn_send() gets exactly one callback,
 *   never from inside the sending call: the server's reply (which may be an
 *   error reply), or a NULL reply with a negative errno and a message:
 *   -ENOTCONN when there was no connection (answered on the next loop
 *   iteration) or it was lost, -ETIMEDOUT when the command had no reply
 *   within its timeout (the connection is then reset and re-established),
 *   -ECANCELED when redis_conn_done() ran first.
 * - A watchdog bounds connecting (dial timeout) and every command. Deadlines
 *   never decrease along the pipeline: a command queued behind a slow one
 *   (a blocking read) cannot be late before it.
 * - Reply callbacks may call redis_conn_done() on their own connection and
 *   free the struct it is embedded in; the adapter notices (a refcounted
 *   liveness flag) and touches nothing afterwards.
 *
 * hiredis 0.14 rules this relies on (async.c): pending reply callbacks run
 * with a NULL reply when the context dies, then ev.cleanup, then
 * onDisconnect (only if it had connected), then the context is freed;
 * redisAsyncFree() called from inside a reply callback is postponed until
 * that callback returns; commands on a dying context are refused.
 */
#pragma once

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "../forward.h"
#include "../util/cleanup.h"

#define REDIS_DEFAULT_PORT 6379
#define REDIS_DEFAULT_TIMEOUT_USEC (3 * 1000000ULL)
#define REDIS_DEFAULT_DIAL_TIMEOUT_USEC (5 * 1000000ULL)

/* Where and how to connect; filled by redis_config_parse(). */
typedef struct RedisConfig {
        char *host;                    /* TCP host (brackets stripped), or NULL with unix_path */
        int port;
        char *unix_path;
        char *username;
        char *password;                /* secret: wiped on free */
        unsigned db;
        uint64_t dial_timeout_usec;
} RedisConfig;

/*
 * Reads the connection metadata of c into cfg (zeroed first). Returns 0, or
 * < 0 with *reterr_msg (malloc'd, may be NULL on OOM) naming the field; cfg
 * holds nothing on failure.
 */
int redis_config_parse(RedisConfig *cfg, const Component *c, char **reterr_msg);
void redis_config_done(RedisConfig *cfg);

/* Sets *reterr_msg to the formatted text (NULL on OOM) and returns r. */
int redis_fail_field(char **reterr_msg, int r, const char *fmt, ...) _printf_(3, 4);

/*
 * A Go/Dapr-style duration ("60s", "500ms", plain seconds) from metadata
 * field name into *ret; left unchanged when the field is absent. Zero is
 * refused unless allow_zero. Returns 0 or -EINVAL with *reterr_msg set.
 */
int redis_parse_duration_field(const Component *c, const char *name, bool allow_zero, uint64_t *ret,
                               char **reterr_msg);

/*
 * An unsigned decimal metadata field into *ret, left unchanged when absent;
 * values above max are refused. Returns 0 or -EINVAL with *reterr_msg set.
 */
int redis_parse_uint_field(const Component *c, const char *name, uint64_t max, uint64_t *ret,
                           char **reterr_msg);

/*
 * Tells a dispatcher whether an object still exists after it called into code
 * that may have freed it: the object holds one reference and clears alive
 * when it goes; a dispatcher takes a reference around the call.
 */
typedef struct Liveness {
        unsigned n_ref;
        bool alive;
} Liveness;

Liveness *liveness_new(void);
Liveness *liveness_ref(Liveness *l);
/* Drops a reference; returns whether the object was still alive. */
bool liveness_unref(Liveness *l);
/* The owner is going: clears alive and drops the owner's reference. Returns NULL. */
Liveness *liveness_kill(Liveness *l);

typedef struct RedisConn RedisConn;
typedef struct RedisCall RedisCall;

/*
 * The answer to one command: reply (owned by hiredis, valid during the call;
 * may be REDIS_REPLY_ERROR), or NULL with error < 0 and message.
 */
typedef void (*RedisReplyFn)(const redisReply *reply, int error, const char *message, void *userdata);
/*
 * The connection became ready (connected, AUTH/SELECT answered: ready true)
 * or was lost (ready false, after the callbacks of its pending commands ran).
 * Must not call redis_conn_done().
 */
typedef void (*RedisReadyFn)(RedisConn *conn, bool ready, void *userdata);

typedef struct RedisCallList {
        RedisCall *head, *tail;
} RedisCallList;

struct RedisConn {
        sd_event *event;               /* borrowed */
        const RedisConfig *config;     /* borrowed from the owner */
        RedisReadyFn ready_fn;         /* may be NULL */
        void *userdata;

        redisAsyncContext *ac;         /* NULL while waiting to reconnect */
        sd_event_source *io;
        uint32_t io_events;
        bool ready;                    /* connected and AUTH/SELECT answered */
        unsigned handshake_pending;
        uint64_t connect_deadline;
        uint64_t backoff_usec;
        sd_event_source *reconnect_timer;
        sd_event_source *watchdog;
        char *last_error;              /* why there is no connection */
        int fail_error;                /* set while we tear a connection down ourselves */
        char *fail_message;

        RedisCallList pending;         /* handed to hiredis, in reply order */
        RedisCallList deferred;        /* answered with an error on the next iteration */
        RedisCallList answering;       /* taken from deferred, being answered now */
        sd_event_source *defer;

        bool closing;
        const char *close_message;     /* borrowed: given to redis_conn_done() */
        Liveness *liveness;
};

/*
 * Sets up conn (embedded in its owner) and starts connecting; config must
 * outlive it. A server that is not there yet is not an error. Returns 0 or
 * a negative errno with nothing allocated.
 */
int redis_conn_init(RedisConn *conn, sd_event *event, const RedisConfig *config, RedisReadyFn ready_fn,
                    void *userdata);
/*
 * Ends conn: every command not answered yet gets -ECANCELED with message
 * (a static or owner-held string) before this returns, and nothing stays
 * armed. May be called from inside one of conn's reply callbacks. Idempotent.
 */
void redis_conn_done(RedisConn *conn, const char *message);
/*
 * Sends one command (binary-safe argv) with a reply deadline timeout_usec
 * from now. Returns 0 (fn will run exactly once, later), or -ENOMEM /
 * -ECANCELED (after redis_conn_done) with nothing started.
 */
int redis_conn_send(RedisConn *conn, uint64_t timeout_usec, RedisReplyFn fn, void *userdata, int argc,
                    const char **argv, const size_t *argvlen);
/*
 * Answers fn with a NULL reply, error and message (copied) on the next loop
 * iteration, never from inside this call, as a command that failed would
 * be; redis_conn_done() answers it -ECANCELED first if it comes before.
 * Returns 0 (fn will run exactly once), or -ENOMEM / -ECANCELED with nothing
 * started.
 */
int redis_conn_fail_later(RedisConn *conn, int error, const char *message, RedisReplyFn fn, void *userdata);
/*
 * Drops the connection on our own initiative (error and message go to the
 * pending commands) and reconnects after the backoff. May run reply
 * callbacks, which may free the owner: hold a Liveness around it.
 */
void redis_conn_reset(RedisConn *conn, int error, const char *message);

/* Connected, handshake done, and not being torn down (pending calls may be getting NULL replies). */
static inline bool redis_conn_is_ready(const RedisConn *conn) {
        return conn->ready && conn->ac && !(conn->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING));
}
