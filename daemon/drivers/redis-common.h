/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the Redis drivers (state, pubsub, bindings, lock, configuration) share:
 * the connection metadata Dapr gives them all (redisHost, redisUsername,
 * redisPassword, redisDB, dialTimeout, enableTLS and its certificates; sentinel
 * failover and clusters are refused), and RedisConn, one Redis connection
 * driven by the daemon's sd-event loop.
 *
 * RedisConn owns its socket: a non-blocking TCP or Unix socket, with OpenSSL
 * on top when enableTLS is on (hiredis 0.14, Debian 12's, has no TLS, and its
 * async context reads and writes the fd itself, so TLS cannot go under it).
 * From hiredis (dl-hiredis.h) it takes the command formatter and the reply
 * parser (redisReader), so replies are hiredis' redisReply as before. OpenSSL
 * is loaded (dl-openssl.h) only by a component with enableTLS on.
 *
 * RedisConn guarantees:
 * - It connects without waiting, pipelines AUTH/SELECT first, and reconnects
 *   with backoff (100 ms doubling to 5 s) whenever the connection is lost or
 *   could not be made (refused, TLS handshake or certificate refused): a
 *   failing server is retried at most every 5 s, never in a busy loop.
 * - Every command sent with redis_conn_send() gets exactly one callback,
 *   never from inside the sending call: the server's reply (which may be an
 *   error reply), or a NULL reply with a negative errno and a message:
 *   -ENOTCONN when there was no connection (answered on the next loop
 *   iteration) or it was lost, -ETIMEDOUT when the command had no reply
 *   within its timeout (the connection is then reset and re-established),
 *   -ECANCELED when redis_conn_done() ran first.
 * - A watchdog bounds connecting (dial timeout, TLS handshake included) and
 *   every command. Deadlines never decrease along the pipeline: a command
 *   queued behind a slow one (a blocking read) cannot be late before it.
 * - Reply callbacks may call redis_conn_done() on their own connection and
 *   free the struct it is embedded in; the dispatcher notices (a refcounted
 *   liveness flag) and touches nothing afterwards.
 * - With TLS, the server certificate is verified against caCert (or the
 *   system's trust store) and redisHost (SNI too, for a name) unless
 *   insecureSkipTLSVerify is true.
 */
#pragma once

#include <hiredis/hiredis.h>
#include <hiredis/read.h>
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
        bool tls;                      /* enableTLS */
        bool tls_skip_verify;          /* insecureSkipTLSVerify */
        struct ssl_ctx_st *ssl_ctx;    /* SSL_CTX with CA and client certificate, when tls */
} RedisConfig;

/*
 * Reads the connection metadata of c into cfg (zeroed first); with enableTLS
 * on, loads OpenSSL and builds the TLS context (certificates and keys are
 * checked here, so a bad one fails the component). Returns 0, or
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

/* A subscribed connection's messages (RESP2 push replies), after redis_conn_subscribe(). */
typedef void (*RedisPushFn)(const redisReply *reply, void *userdata);

typedef enum RedisConnState {
        REDIS_CONN_IDLE,               /* no socket: waiting to reconnect */
        REDIS_CONN_CONNECTING,         /* connect(2) under way */
        REDIS_CONN_TLS_HANDSHAKE,
        REDIS_CONN_UP,                 /* bytes flow; AUTH/SELECT may still be pending */
} RedisConnState;

struct RedisConn {
        sd_event *event;               /* borrowed */
        const RedisConfig *config;     /* borrowed from the owner */
        RedisReadyFn ready_fn;         /* may be NULL */
        void *userdata;

        RedisConnState state;
        int fd;                        /* -1 while IDLE */
        struct ssl_st *ssl;            /* TLS connections */
        redisReader *reader;
        sd_event_source *io;
        uint32_t io_events;
        char *obuf;                    /* formatted commands not written yet: obuf[ooff..olen) */
        size_t olen, ooff, ocap;
        uint64_t generation;           /* bumped whenever the socket goes */
        RedisPushFn push_fn;           /* subscribed: replies beyond the pending calls go here */
        void *push_userdata;

        bool ready;                    /* connected and AUTH/SELECT answered */
        unsigned handshake_pending;
        uint64_t connect_deadline;
        uint64_t backoff_usec;
        sd_event_source *reconnect_timer;
        sd_event_source *watchdog;
        char *last_error;              /* why there is no connection */

        RedisCallList pending;         /* written or to be written, in reply order */
        RedisCallList dropping;        /* taken from pending when the socket went, being answered */
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
 * Puts the connection in subscribe mode: sends the command (SUBSCRIBE,
 * PSUBSCRIBE) and hands every reply that answers no pending command to fn,
 * the command's own confirmation included, until the connection is lost
 * (the ready callback then says so; subscribe again when it is back).
 * Returns 0, -ENOTCONN when not ready, -ENOMEM or -ECANCELED.
 */
int redis_conn_subscribe(RedisConn *conn, RedisPushFn fn, void *userdata, int argc, const char **argv,
                         const size_t *argvlen);
/*
 * Drops the connection on our own initiative (error and message go to the
 * pending commands) and reconnects after the backoff. May run reply
 * callbacks, which may free the owner: hold a Liveness around it.
 */
void redis_conn_reset(RedisConn *conn, int error, const char *message);

/* Connected, handshake done, and not being torn down (pending calls may be getting NULL replies). */
static inline bool redis_conn_is_ready(const RedisConn *conn) {
        return conn->ready && conn->state == REDIS_CONN_UP && !conn->closing;
}
