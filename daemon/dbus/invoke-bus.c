/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's service invocation over D-Bus: InvokeMethod, through the same
 * invoke block as POST /v1.0/invoke/{app}/method/{method}.
 *
 * The caller is the app its systemd unit names (mooring-app@<id>.service),
 * or no app; there is no polkit check and no way to name another caller:
 * the callee's accessControl decides, exactly as for an HTTP caller.
 *
 * The callee's answer is collected whole and returned in one reply (of at
 * most REPLY_MAX bytes, see there) with its status unchanged, so a 404 or 500
 * from the app is a normal reply. Only calls the callee never answered (or whose
 * answer was cut short) become D-Bus errors. A call whose caller left the bus
 * runs to its end and the reply is dropped; so is one whose reply cannot be
 * sent because the daemon's own connection went away.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-event.h>

#include "../blocks/invoke.h"
#include "../core/errors.h"
#include "../manager.h"
#include "../util/log.h"
#include "../util/strv.h"
#include "invoke-bus.h"
#include "state-bus.h"


/*
 * The largest reply we send. sd-bus would take a 64 MiB body, but dbus-daemon
 * disconnects a peer that sends a message above its max_message_size (32 MiB
 * by default on the system bus), and for mooringd that would mean losing the
 * bus for every caller. So body, headers and framing together stay within
 * 32 MiB; REPLY_FRAMING covers the message header (dbus-daemon adds the
 * sender), the status and the array lengths, HEADER_FRAMING the alignment and
 * lengths of one (ss) pair.
 */
#define REPLY_MAX ((size_t) 32 << 20)
#define REPLY_FRAMING ((size_t) 4096)
#define HEADER_FRAMING ((size_t) 32)

typedef enum CollectFailure {
        COLLECT_OK,
        COLLECT_TOO_LARGE,
        COLLECT_OOM,
} CollectFailure;

/* One InvokeMethod call, from the method handler until the reply is sent (or dropped). */
typedef struct BusInvoke {
        Manager *manager;               /* back-reference */
        sd_bus_message *call;           /* referenced: the request's strings and body live in it */
        char *caller;                   /* the sender's app, NULL when it is none */
        char **headers;                 /* request pairs, NULL-terminated; the strings are borrowed from call */
        InvokeCall *invoke;             /* borrowed: the block frees it after done (or on cancel) */
        sd_event_source *abort_source;  /* defer: ends a call whose answer we will not take */

        unsigned status;
        char **answer_headers;          /* the callee's header pairs */
        char *body;
        size_t size, allocated;
        size_t body_max;                /* what REPLY_MAX leaves for the body once the headers are in */
        CollectFailure failure;
        bool head_request;              /* HEAD: a Content-Length announces no body */
} BusInvoke;

static BusInvoke *bus_invoke_free(BusInvoke *bi) {
        if (!bi)
                return NULL;
        /* when the block still runs the call, it must not call back into freed memory */
        invoke_call_cancel(bi->invoke);
        sd_event_source_disable_unref(bi->abort_source);
        sd_bus_message_unref(bi->call);
        free(bi->caller);
        free(bi->headers);
        strv_free(bi->answer_headers);
        free(bi->body);
        free(bi);
        return NULL;
}
DEFINE_CLEANUP_FUNC(BusInvoke, bus_invoke_free);

/* A verb as HTTP writes it: a token, and (as Dapr's routes match them) in upper case. */
static bool verb_is_valid(const char *verb) {
        if (!is_token(verb))
                return false;
        for (const char *p = verb; *p; p++)
                if (*p >= 'a' && *p <= 'z')
                        return false;
        return true;
}

/* The request target must stay one token of the request line: printable ASCII, no spaces. */
static bool method_is_valid(const char *method) {
        for (const unsigned char *p = (const unsigned char *) method; *p; p++)
                if (*p <= ' ' || *p >= 0x7f)
                        return false;
        return true;
}

/* field-value: visible characters, spaces, tabs and obs-text; never CR or LF. */
static bool header_value_is_valid(const char *v) {
        for (const unsigned char *p = (const unsigned char *) v; *p; p++)
                if ((*p < ' ' && *p != '\t') || *p == 0x7f)
                        return false;
        return true;
}

/*
 * Reads the a(ss) request headers into a NULL-terminated pair array whose
 * strings are borrowed from call. Invalid names or values are answered
 * through reterr.
 */
static int read_headers(sd_bus_message *call, char ***ret, sd_bus_error *reterr) {
        _cleanup_free_ char **pairs = NULL;
        size_t n = 0, allocated = 0;
        int r;

        r = sd_bus_message_enter_container(call, 'a', "(ss)");
        if (r < 0)
                return r;
        for (;;) {
                const char *name, *value;

                r = sd_bus_message_read(call, "(ss)", &name, &value);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (!is_token(name))
                        return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                                 "Invalid header name '%s': an HTTP token is needed", name);
                if (!header_value_is_valid(value))
                        return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                                 "Invalid value of header '%s': control characters are not allowed",
                                                 name);
                if (n + 3 > allocated) {
                        size_t a = allocated ? allocated * 2 : 16;
                        char **p = reallocarray(pairs, a, sizeof(char *));
                        if (!p)
                                return -ENOMEM;
                        pairs = p;
                        allocated = a;
                }
                pairs[n++] = (char *) name;
                pairs[n++] = (char *) value;
        }
        r = sd_bus_message_exit_container(call);
        if (r < 0)
                return r;
        if (!pairs) {
                pairs = calloc(1, sizeof(char *));
                if (!pairs)
                        return -ENOMEM;
        }
        pairs[n] = NULL;
        *ret = TAKE_PTR(pairs);
        return 0;
}

/* The D-Bus error name: the core error table decides (core/errors.c). */
static const char *invoke_error_name(int error) {
        return error_lookup(ERROR_CONTEXT_INVOKE, error)->bus_error;
}

/* Answers a call whose answer we refused to collect. */
static void reply_collect_failure(BusInvoke *bi) {
        if (bi->failure == COLLECT_TOO_LARGE)
                (void) sd_bus_reply_method_errorf(bi->call, BUS_ERROR_RESPONSE_TOO_LARGE,
                                                  "The answer does not fit in a D-Bus reply of %zu MiB; use HTTP "
                                                  "for large payloads",
                                                  REPLY_MAX >> 20);
        else
                (void) sd_bus_reply_method_errorf(bi->call, BUS_ERROR_FAILED, "Out of memory while collecting the answer");
}

/* The whole answer arrived: (q status, a(ss) headers, ay body). */
static void reply_answer(BusInvoke *bi) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(bi->call, &reply);
        if (r >= 0)
                r = sd_bus_message_append(reply, "q", (uint16_t) (bi->status > UINT16_MAX ? 0 : bi->status));
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(ss)");
        for (char **p = bi->answer_headers; r >= 0 && p && p[0] && p[1]; p += 2)
                r = sd_bus_message_append(reply, "(ss)", p[0], p[1]);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_append_array(reply, 'y', bi->body ?: "", bi->size);
        if (r < 0) {
                log_debug_errno(r, "Cannot build the InvokeMethod reply: %m");
                (void) sd_bus_reply_method_errorf(bi->call, BUS_ERROR_FAILED, "Cannot build the reply: %s", strerror(-r));
                return;
        }
        r = sd_bus_send(NULL, reply, NULL);
        if (r < 0)
                /* the caller, or our own connection, is gone: nobody is left to tell */
                log_debug_errno(r, "Cannot send the InvokeMethod reply, dropping it: %m");
}

/* Deferred from the head/body callbacks: stop a call whose answer we will not take, and answer it. */
static int on_abort(sd_event_source *s, void *userdata) {
        BusInvoke *bi = userdata;

        /* no more callbacks after this; the block frees its call */
        invoke_call_cancel(TAKE_PTR(bi->invoke));
        reply_collect_failure(bi);
        bus_invoke_free(bi);
        return 0;
}

/* From now on the answer is only waited for to be dropped: pause the transfer and end the call soon. */
static void collect_fail(BusInvoke *bi, CollectFailure f) {
        if (bi->failure == COLLECT_OK)
                bi->failure = f;
        if (!bi->abort_source && sd_event_add_defer(bi->manager->event, &bi->abort_source, on_abort, bi) < 0)
                bi->abort_source = NULL; /* body() then takes and drops the rest; done answers */
}

/* Grows the buffer to hold at least need bytes (need <= body_max). */
static int reserve(BusInvoke *bi, size_t need) {
        size_t a;
        char *p;

        if (need <= bi->allocated)
                return 0;
        a = bi->allocated ? bi->allocated : 64 * 1024;
        while (a < need)
                a = a > bi->body_max / 2 ? bi->body_max : a * 2;
        p = realloc(bi->body, a);
        if (!p)
                return -ENOMEM;
        bi->body = p;
        bi->allocated = a;
        return 0;
}

static void on_head(InvokeCall *c, unsigned status, char *const *headers, int64_t content_length, void *userdata) {
        BusInvoke *bi = userdata;
        size_t used = REPLY_FRAMING;

        bi->status = status;
        if (strv_copy(headers, &bi->answer_headers) < 0) {
                collect_fail(bi, COLLECT_OOM);
                return;
        }
        for (char *const *p = headers; p && p[0] && p[1]; p += 2)
                used += strlen(p[0]) + strlen(p[1]) + HEADER_FRAMING;
        if (used > REPLY_MAX) {
                collect_fail(bi, COLLECT_TOO_LARGE);
                return;
        }
        bi->body_max = REPLY_MAX - used;
        /* these answers carry no body whatever Content-Length says (RFC 9110 6.4.1) */
        if (bi->head_request || status < 200 || status == 204 || status == 304)
                return;
        /* refuse a body announced too large early, and make room for one that fits */
        if (content_length > (int64_t) bi->body_max)
                collect_fail(bi, COLLECT_TOO_LARGE);
        else if (content_length > 0 && reserve(bi, (size_t) content_length) < 0)
                collect_fail(bi, COLLECT_OOM);
}

static bool on_body(InvokeCall *c, const void *buf, size_t len, void *userdata) {
        BusInvoke *bi = userdata;

        if (bi->failure == COLLECT_OK) {
                if (len > bi->body_max - bi->size)
                        collect_fail(bi, COLLECT_TOO_LARGE);
                else if (reserve(bi, bi->size + len) < 0)
                        collect_fail(bi, COLLECT_OOM);
                else {
                        memcpy(bi->body + bi->size, buf, len);
                        bi->size += len;
                        return true;
                }
        }
        /* paused until on_abort() ends the call; without that source, drop the bytes and let done answer */
        return !bi->abort_source;
}

static void on_done(InvokeCall *c, const InvokeError *e, void *userdata) {
        BusInvoke *bi = userdata;

        bi->invoke = NULL; /* the block frees it when we return */
        if (bi->failure != COLLECT_OK)
                reply_collect_failure(bi);
        else if (e) {
                log_debug("InvokeMethod failed: %s", strna(e->message));
                (void) sd_bus_reply_method_errorf(bi->call, invoke_error_name(e->error), "%s",
                                                  e->message ?: strerror(-e->error));
        } else
                reply_answer(bi);
        bus_invoke_free(bi);
}

static const InvokeHandler bus_invoke_handler = {
        .head = on_head,
        .body = on_body,
        .done = on_done,
};

/*
 * InvokeMethod(s app_id, s method, s verb, a(ss) headers, ay body)
 *   → (q status, a(ss) headers, ay body)
 *
 * Validates the request, identifies the caller by its unit and starts the
 * call; the reply is sent from on_done() (or on_abort()). Returns 1 when the
 * call runs, or an error sd-bus answers.
 */
int bus_method_invoke_method(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        _cleanup_(bus_invoke_freep) BusInvoke *bi = NULL;
        Manager *m = userdata;
        const char *app_id, *method, *verb;
        const void *body;
        size_t body_len;
        int r;

        r = sd_bus_message_read(call, "sss", &app_id, &method, &verb);
        if (r < 0)
                return r;
        if (!*verb)
                verb = "GET";
        else if (!verb_is_valid(verb))
                return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid verb '%s': an HTTP method in upper case is needed (GET, POST, ...)",
                                         verb);
        if (!method_is_valid(method))
                return sd_bus_error_setf(reterr, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid method '%s': spaces, control characters and non-ASCII bytes "
                                         "must be percent-encoded",
                                         method);

        bi = calloc(1, sizeof *bi);
        if (!bi)
                return -ENOMEM;
        bi->manager = m;
        bi->head_request = streq(verb, "HEAD");
        r = read_headers(call, &bi->headers, reterr);
        if (r < 0 || sd_bus_error_is_set(reterr))
                return r;
        r = sd_bus_message_read_array(call, 'y', &body, &body_len);
        if (r < 0)
                return r;
        bi->caller = bus_sender_app(call);
        bi->call = sd_bus_message_ref(call);

        InvokeRequest req = {
                .caller_app = bi->caller,
                .target_app = app_id,
                .verb = verb,
                .method = method,
                .headers = bi->headers,
                .body = body_len > 0 ? body : NULL,
                .body_len = body_len,
        };
        r = invoke_start(m->registry, &req, &bus_invoke_handler, bi, &bi->invoke);
        if (r == -EINVAL) /* what the block refuses beyond our checks: verbs such as CONNECT */
                return sd_bus_error_setf(reterr, error_lookup(ERROR_CONTEXT_INVOKE_START, r)->bus_error,
                                         "failed to invoke, id: %s, err: method %s not allowed", app_id, verb);
        if (r < 0)
                return r;
        TAKE_PTR(bi);
        return 1;
}
