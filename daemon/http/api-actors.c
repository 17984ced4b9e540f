/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's actor API over HTTP (/v1.0/actors/{type}/{id}/...): parse, call
 * the actor block, render its answers with Dapr's codes (core/errors.c's
 * ERROR_CONTEXT_ACTOR rows). Requests that wait for the block are
 * suspended; one whose client leaves first cancels its part in the block.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/actors.h"
#include "../blocks/invoke.h"
#include "../core/actor-config.h"
#include "../core/app-config.h"
#include "../core/app.h"
#include "../core/registry.h"
#include "../util/strv.h"
#include "handlers.h"
#include "server.h"
#include "state-body.h"

/* Another host's mooringd is calling (the peer listener, mutual TLS): the app it calls for is the
 * one that host vouches for (blocks/invoke.h); such calls are never sent on to a third host. */
static bool from_peer(HttpRequest *r) {
        return http_request_caller(r)->via == LISTENER_PEER;
}

static const char *caller_app(HttpRequest *r) {
        const Caller *c = http_request_caller(r);
        if (c->via == LISTENER_PEER) {
                const char *id = http_request_header(r, INVOKE_PEER_CALLER_HEADER);
                return id && app_id_is_valid(id) ? id : NULL;
        }
        return c->app ? c->app->config->id : NULL;
}

/* A peer sent a call for an actor this host does not own by its view: the views differ for a
 * moment; the sender asks its placement again (blocks/actors.c, PLACEMENT_HEADER). */
static int reply_moved(HttpRequest *r, DaprError op) {
        static const char *const moved[] = { "mooring-placement", "moved", NULL };
        _cleanup_free_ char *body = NULL;
        if (asprintf(&body, "{\"errorCode\":\"%s\",\"message\":\"the actor is not placed on this host\"}",
                     dapr_error_code(op)) < 0)
                return -ENOMEM;
        return http_reply_headers(r, 503, "application/json", body, strlen(body), moved);
}

/* Answers a block error for operation op (its own Dapr code unless the table names another). */
static int reply_actor_error(HttpRequest *r, DaprError op, int error, const char *prefix, const char *detail) {
        const ErrorRow *row = error_lookup(ERROR_CONTEXT_ACTOR, error);
        DaprError code = row->dapr == _DAPR_ERROR_INVALID ? op : row->dapr;
        unsigned status = row->dapr == _DAPR_ERROR_INVALID ? row->http_status : dapr_error_status(code);
        if (error == -ENODEV)
                detail = "actors are not available: no usable actor state store";
        return http_reply_error_status(r, status, code, "%s%s", prefix, detail ?: strerror(-error));
}

/* ---- method calls ---- */

static void on_invoke_end(HttpRequest *r, void *userdata) {
        actor_call_cancel(userdata);
}

static void on_invoked(const ActorAnswer *a, int error, const char *message, void *userdata) {
        HttpRequest *r = userdata;
        http_request_on_end(r, NULL, NULL);
        if (error == 0) {
                const char *ct = NULL;
                _cleanup_free_ const char **h = calloc(strv_length(a->headers) + 1, sizeof(char *));
                size_t n = 0;
                for (char *const *p = a->headers; h && p && p[0] && p[1]; p += 2) {
                        if (strcasecmp(p[0], "Content-Type") == 0) {
                                ct = p[1];
                                continue;
                        }
                        h[n++] = p[0];
                        h[n++] = p[1];
                }
                (void) http_reply_headers(r, a->status, ct, a->body, a->body_len, h);
                return;
        }
        (void) reply_actor_error(r, DAPR_ERR_ACTOR_INVOKE_METHOD, error, "", message);
}

/* The owner's answer to a forwarded request, as it is. */
static void on_forwarded(const ActorAnswer *a, int error, const char *message, void *userdata) {
        if (error == 0)
                return on_invoked(a, error, message, userdata);
        HttpRequest *r = userdata;
        http_request_on_end(r, NULL, NULL);
        (void) reply_actor_error(r, DAPR_ERR_ACTOR_INVOKE_METHOD, error, "", message);
}

/* The owner of the actor is another host: the request goes there as it came. */
static int forward(HttpRequest *r, const RouteMatch *m, DaprError op) {
        if (from_peer(r))
                return reply_moved(r, op);
        _cleanup_free_ char **headers = NULL;
        _cleanup_free_ char *target = NULL;
        size_t len;
        const void *body = http_request_body(r, &len);
        const char *q = http_request_raw_query(r);
        int k = http_request_header_pairs(r, &headers);
        if (k < 0)
                return k;
        if (asprintf(&target, "%s%s%s", http_request_url(r), q ? "?" : "", q ?: "") < 0)
                return -ENOMEM;
        ActorForwardRequest req = { .caller_app = caller_app(r), .type = m->params[0], .id = m->params[1],
                                    .verb = http_request_method(r), .target = target, .headers = headers,
                                    .body = body, .body_len = len };
        ActorCall *call = NULL;
        k = actor_forward(http_request_registry(r), &req, on_forwarded, r, &call);
        if (k < 0)
                return reply_actor_error(r, op, k, "", NULL);
        http_request_on_end(r, on_invoke_end, call);
        http_request_suspend(r);
        return 0;
}

int http_actor_method(HttpRequest *r, const RouteMatch *m) {
        _cleanup_free_ char **headers = NULL; /* the strings are the request's */
        size_t len;
        const void *body = http_request_body(r, &len);
        ActorCall *call = NULL;
        int k;

        k = http_request_header_pairs(r, &headers);
        if (k < 0)
                return k;
        ActorInvokeRequest req = {
                .caller_app = caller_app(r),
                .type = m->params[0],
                .id = m->params[1],
                .method = m->params[2],
                .query = http_request_raw_query(r),
                .headers = headers,
                .body = body,
                .body_len = len,
                .local_only = from_peer(r),
        };
        k = actor_invoke(http_request_registry(r), &req, on_invoked, r, &call);
        if (k == -ENOMEM)
                return k;
        if (k == -EREMCHG)
                return reply_moved(r, DAPR_ERR_ACTOR_INVOKE_METHOD);
        if (k == -ENOENT)
                return http_reply_error(r, DAPR_ERR_ACTOR_INVOKE_METHOD,
                                        "failed to invoke actor: no app hosts actor type '%s'", m->params[0]);
        if (k == -EBUSY)
                return reply_actor_error(r, DAPR_ERR_ACTOR_INVOKE_METHOD, k, "",
                                         "too many calls waiting for this actor");
        if (k == -ELOOP)
                return reply_actor_error(r, DAPR_ERR_ACTOR_INVOKE_METHOD, k, "",
                                         "maximum stack depth exceeded for a reentrant call");
        if (k == -EHOSTDOWN)
                return reply_actor_error(r, DAPR_ERR_ACTOR_INVOKE_METHOD, k, "",
                                         "the app hosting the actor type is not reachable");
        if (k == -EINVAL)
                return reply_actor_error(r, DAPR_ERR_ACTOR_INVOKE_METHOD, k, "",
                                         "actor type, id and method must not be empty; type and id must not "
                                         "contain '||'");
        if (k < 0)
                return reply_actor_error(r, DAPR_ERR_ACTOR_INVOKE_METHOD, k, "", NULL);
        http_request_on_end(r, on_invoke_end, call);
        http_request_suspend(r);
        return 0;
}

/* ---- state ---- */

static void on_state_end(HttpRequest *r, void *userdata) {
        actor_state_cancel(userdata, r);
}

static HttpRequest *answering(void *userdata) {
        HttpRequest *r = userdata;
        http_request_on_end(r, NULL, NULL);
        return r;
}

static void on_state_got(const StateResult *res, void *userdata) {
        HttpRequest *r = answering(userdata);
        if (res->error < 0)
                (void) http_reply_error(r, DAPR_ERR_ACTOR_STATE_GET, "error getting actor state: %s",
                                        res->message ?: strerror(-res->error));
        else if (!res->value.found)
                (void) http_reply_empty(r, 204);
        else
                (void) http_reply(r, 200, "application/json", res->value.value, res->value.value_len);
}

static void on_state_saved(const StateResult *res, void *userdata) {
        HttpRequest *r = answering(userdata);
        if (res->error < 0)
                (void) http_reply_error(r, DAPR_ERR_ACTOR_STATE_TRANSACTION_SAVE,
                                        "error saving actor transaction state: %s",
                                        res->message ?: strerror(-res->error));
        else
                (void) http_reply_empty(r, 204);
}

static int state_started(HttpRequest *r, int k, DaprError op) {
        if (k == -ENOMEM)
                return k;
        if (k == -EADDRNOTAVAIL)
                return reply_actor_error(r, op, k, "", "actor instance is missing: it is not active on this "
                                         "host for the calling app");
        if (k == -EINVAL)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "actor state key must not be empty");
        if (k < 0)
                return reply_actor_error(r, op, k, "", NULL);
        http_request_on_end(r, on_state_end, http_request_registry(r));
        http_request_suspend(r);
        return 0;
}

int http_actor_state_get(HttpRequest *r, const RouteMatch *m) {
        int k = actor_state_get(http_request_registry(r), caller_app(r), m->params[0], m->params[1], m->params[2],
                                on_state_got, r);
        return state_started(r, k, DAPR_ERR_ACTOR_STATE_GET);
}

int http_actor_state_transaction(HttpRequest *r, const RouteMatch *m) {
        size_t len;
        const char *body = http_request_body(r, &len);
        _cleanup_free_ char *wrapped = NULL, *err = NULL;
        _cleanup_(json_decrefp) json_t *md = json_object();
        OpList l = {};
        int k;

        if (!md)
                return -ENOMEM;
        /* The body is a bare array of Dapr's transaction operations; the state API's parser reads
         * them inside {"operations": [...]}. Anything but an array is refused first. */
        size_t i = 0;
        while (i < len && strchr(" \t\r\n", body[i]))
                i++;
        if (i == len || body[i] != '[')
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "the body must be a JSON array of "
                                        "operations");
        if (asprintf(&wrapped, "{\"operations\":%.*s}", (int) len, body) < 0)
                return -ENOMEM;
        k = state_body_parse_transaction(wrapped, strlen(wrapped), md, 0, &l, &err);
        if (k == -ENOMEM)
                return k;
        if (k == -EOPNOTSUPP)
                return http_reply_error(r, DAPR_ERR_NOT_SUPPORTED_STATE_OPERATION, "%s", strna(err));
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "%s", strna(err));
        k = actor_state_transact(http_request_registry(r), caller_app(r), m->params[0], m->params[1], l.ops, l.n,
                                 on_state_saved, r);
        op_list_done(&l);
        return state_started(r, k, DAPR_ERR_ACTOR_STATE_TRANSACTION_SAVE);
}

/* ---- reminders and timers ---- */

static void on_reminder_end(HttpRequest *r, void *userdata) {
        actor_reminder_cancel(userdata, r);
}

static void on_reminder_done(int error, const char *message, void *userdata) {
        HttpRequest *r = answering(userdata);
        if (error < 0)
                (void) http_reply_error(r, DAPR_ERR_ACTOR_REMINDER_CREATE, "error storing the reminder: %s",
                                        message ?: strerror(-error));
        else
                (void) http_reply_empty(r, 204);
}

static void on_reminder_deleted(int error, const char *message, void *userdata) {
        HttpRequest *r = answering(userdata);
        if (error < 0)
                (void) http_reply_error(r, DAPR_ERR_ACTOR_REMINDER_DELETE, "error deleting the reminder: %s",
                                        message ?: strerror(-error));
        else
                (void) http_reply_empty(r, 204);
}

static int parse_spec(HttpRequest *r, ActorReminderBody *b) {
        size_t len;
        const char *body = http_request_body(r, &len);
        const char *err = NULL;
        int k = actor_reminder_body_parse(body, len, b, &err);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return http_reply_error(r, DAPR_ERR_MALFORMED_REQUEST, "%s", err), -EINVAL;
        return 0;
}

static int non_hosted(HttpRequest *r, const char *type) {
        return http_reply_error(r, DAPR_ERR_ACTOR_REMINDER_NON_HOSTED,
                                "the calling app does not host actor type '%s'", type);
}

int http_actor_reminder_set(HttpRequest *r, const RouteMatch *m) {
        ActorReminderBody b = {};
        const char *err = NULL;
        int k = parse_spec(r, &b);

        if (k == -EINVAL)
                return 0;
        if (k < 0)
                return k;
        ActorReminderSpec spec = { .due = b.due, .period = b.period, .ttl = b.ttl, .data = b.data };
        k = actor_reminder_set(http_request_registry(r), caller_app(r), m->params[0], m->params[1], m->params[2],
                               &spec, on_reminder_done, r, &err);
        actor_reminder_body_done(&b);
        if (k == -ENOMEM)
                return k;
        if (k == -EPERM)
                return non_hosted(r, m->params[0]);
        if (k == -EREMOTE)
                return forward(r, m, DAPR_ERR_ACTOR_REMINDER_CREATE);
        if (k < 0)
                return reply_actor_error(r, DAPR_ERR_ACTOR_REMINDER_CREATE, k, "error creating the reminder: ",
                                         err);
        http_request_on_end(r, on_reminder_end, http_request_registry(r));
        http_request_suspend(r);
        return 0;
}

int http_actor_reminder_get(HttpRequest *r, const RouteMatch *m) {
        json_t *j = NULL;
        int k = actor_reminder_get(http_request_registry(r), caller_app(r), m->params[0], m->params[1], m->params[2],
                                   &j);
        if (k == -ENOMEM)
                return k;
        if (k == -EPERM)
                return non_hosted(r, m->params[0]);
        if (k == -EREMOTE)
                return forward(r, m, DAPR_ERR_ACTOR_REMINDER_GET);
        if (k < 0)
                return reply_actor_error(r, DAPR_ERR_ACTOR_REMINDER_GET, k, "error getting the reminder: ",
                                         k == -EAGAIN ? "the reminders of this type are still being loaded" : NULL);
        /* daprd answers an unknown reminder with 200 and the body null */
        if (!j)
                return http_reply(r, 200, "application/json", "null", 4);
        return http_reply_json(r, 200, j);
}

int http_actor_reminder_delete(HttpRequest *r, const RouteMatch *m) {
        int k = actor_reminder_delete(http_request_registry(r), caller_app(r), m->params[0], m->params[1],
                                      m->params[2], on_reminder_deleted, r);
        if (k == -ENOMEM)
                return k;
        if (k == -EPERM)
                return non_hosted(r, m->params[0]);
        if (k == -EREMOTE)
                return forward(r, m, DAPR_ERR_ACTOR_REMINDER_DELETE);
        if (k < 0)
                return reply_actor_error(r, DAPR_ERR_ACTOR_REMINDER_DELETE, k, "error deleting the reminder: ",
                                         NULL);
        http_request_on_end(r, on_reminder_end, http_request_registry(r));
        http_request_suspend(r);
        return 0;
}

int http_actor_timer_set(HttpRequest *r, const RouteMatch *m) {
        ActorReminderBody b = {};
        const char *err = NULL;
        int k = parse_spec(r, &b);

        if (k == -EINVAL)
                return 0;
        if (k < 0)
                return k;
        ActorReminderSpec spec = { .due = b.due, .period = b.period, .ttl = b.ttl, .callback = b.callback,
                                   .data = b.data };
        k = actor_timer_set(http_request_registry(r), caller_app(r), m->params[0], m->params[1], m->params[2], &spec,
                            &err);
        actor_reminder_body_done(&b);
        if (k == -ENOMEM)
                return k;
        /* daprd: a timer on an actor that is not active here is ERR_ACTOR_TIMER_CREATE, 500 */
        if (k == -EADDRNOTAVAIL)
                return http_reply_error(r, DAPR_ERR_ACTOR_TIMER_CREATE, "error creating the timer: %s",
                                        err ?: "the actor is not active on this host for the calling app");
        if (k < 0)
                return reply_actor_error(r, DAPR_ERR_ACTOR_TIMER_CREATE, k, "error creating the timer: ", err);
        return http_reply_empty(r, 204);
}

int http_actor_timer_delete(HttpRequest *r, const RouteMatch *m) {
        int k = actor_timer_delete(http_request_registry(r), caller_app(r), m->params[0], m->params[1], m->params[2]);
        if (k == -EADDRNOTAVAIL)
                return http_reply_error(r, DAPR_ERR_ACTOR_TIMER_DELETE, "error deleting the timer: %s",
                                        "the calling app does not host the actor type");
        if (k < 0)
                return reply_actor_error(r, DAPR_ERR_ACTOR_TIMER_DELETE, k, "error deleting the timer: ", NULL);
        return http_reply_empty(r, 204);
}

/* ---- admin: mooringctl actors ---- */

int http_actors_admin_types(HttpRequest *r, const RouteMatch *m) {
        return http_reply_json(r, 200, actors_types_json(http_request_registry(r)));
}

int http_actors_admin_reminders(HttpRequest *r, const RouteMatch *m) {
        json_t *j = NULL;
        int k = actor_reminder_list(http_request_registry(r), m->params[0], m->params[1], &j);
        if (k == -ENOENT)
                return http_reply_error(r, DAPR_ERR_BAD_REQUEST, "no app hosts actor type '%s'", m->params[0]);
        if (k < 0)
                return k;
        return http_reply_json(r, 200, j);
}

/* ---- another host takes an actor over (peer listener only) ---- */

static void on_release_end(HttpRequest *r, void *userdata) {
        actor_release_cancel(userdata, r);
}

static void on_released(int error, const char *message, void *userdata) {
        HttpRequest *r = answering(userdata);
        (void) http_reply_empty(r, 200);
}

int http_peer_actor_release(HttpRequest *r, const RouteMatch *m) {
        if (!from_peer(r))
                return http_reply(r, 404, "text/plain", "not found\n", 10); /* as for no route at all */
        int k = actor_release(http_request_registry(r), m->params[0], m->params[1], on_released, r);
        if (k < 0)
                return k;
        if (k == 0)
                return http_reply_empty(r, 200);
        http_request_on_end(r, on_release_end, http_request_registry(r));
        http_request_suspend(r);
        return 0;
}
