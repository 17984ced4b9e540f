/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's actor RPCs: InvokeActor, GetActorState, ExecuteActorStateTransaction,
 * RegisterActorReminder, UnregisterActorReminder, RegisterActorTimer,
 * UnregisterActorTimer. The same block calls as http/api-actors.c
 * (blocks/actors.h), the same errors through core/errors.c's actor rows.
 *
 * As daprd over gRPC: the method call reaches the hosting app as
 * PUT /actors/{type}/{id}/method/{method} with Content-Type application/json
 * and the request's metadata as headers, and its body comes back as
 * InvokeActorResponse.data; a non-200 answer of the app is an error
 * (ERR_ACTOR_INVOKE_METHOD). State values are the bytes of the Any's value
 * (stored as sent, as the state RPCs do). Reminder and timer data, bytes on
 * the wire, become what daprd's json.Marshal of a byte slice makes of them:
 * a JSON string of their base64.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../blocks/actors.h"
#include "../blocks/state.h"
#include "../util/base64.h"
#include "../util/strv.h"
#include "services.h"

/* A block error for operation op: its own Dapr code unless the table names another. */
static int actor_fail(GrpcCall *c, DaprError op, int error, const char *prefix, const char *detail) {
        const ErrorRow *row = error_lookup(ERROR_CONTEXT_ACTOR, error);
        DaprError code = row->dapr == _DAPR_ERROR_INVALID ? op : row->dapr;
        if (error == -ENODEV)
                detail = "actors are not available: no usable actor state store";
        return grpc_fail_dapr_status(c, error_grpc_status(ERROR_CONTEXT_ACTOR, error, op), code, "%s%s", prefix,
                                     detail ?: strerror(-error));
}

static GrpcCall *answering(GrpcCall *c) {
        grpc_call_on_cancel(c, NULL, NULL);
        return c;
}

static void reply_empty(GrpcCall *c) {
        Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
        (void) grpc_call_reply(c, &e.base);
}

static const char *nonempty(const char *s) {
        return s && *s ? s : NULL;
}

/* ---- InvokeActor ---- */

static void on_invoke_cancel(GrpcCall *c, void *userdata) {
        actor_call_cancel(userdata);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the actor answered");
}

static void on_invoked(const ActorAnswer *a, int error, const char *message, void *userdata) {
        GrpcCall *c = answering(userdata);
        if (error == 0) {
                PB(InvokeActorResponse) resp = DAPR__PROTO__RUNTIME__V1__INVOKE_ACTOR_RESPONSE__INIT;
                resp.data = (ProtobufCBinaryData){ a->body_len, (uint8_t *) a->body };
                (void) grpc_call_reply(c, &resp.base);
        } else if (error == -EBADMSG)
                (void) grpc_fail_dapr(c, DAPR_ERR_ACTOR_INVOKE_METHOD, "error invoke actor method: the app answered "
                                      "%u: %.*s", a ? a->status : 0, a && a->body_len < 512 ? (int) a->body_len : 0,
                                      a && a->body ? (const char *) a->body : "");
        else
                (void) actor_fail(c, DAPR_ERR_ACTOR_INVOKE_METHOD, error, "error invoke actor method: ", message);
}

int grpc_dapr_invoke_actor(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(InvokeActorRequest) *req = (const PB(InvokeActorRequest) *) m;
        _cleanup_strv_free_ char **headers = NULL;
        ActorCall *call = NULL;
        int k;

        if (strv_extend(&headers, "Content-Type") < 0 || strv_extend(&headers, "application/json") < 0)
                return -ENOMEM;
        for (size_t i = 0; i < req->n_metadata; i++) {
                const char *n = req->metadata[i]->key, *v = req->metadata[i]->value;
                /* what cannot be an HTTP header is left out, as the HTTP path never sees it */
                if (!*n || strpbrk(n, "\r\n: \t") || strpbrk(v, "\r\n") || strcasecmp(n, "content-type") == 0)
                        continue;
                if (strv_extend(&headers, n) < 0 || strv_extend(&headers, v) < 0)
                        return -ENOMEM;
        }
        ActorInvokeRequest ar = {
                .caller_app = grpc_call_app_id(c),
                .type = req->actor_type,
                .id = req->actor_id,
                .method = req->method,
                .headers = headers,
                .body = req->data.data ?: (const uint8_t *) "",
                .body_len = req->data.len,
        };
        k = actor_invoke(grpc_call_registry(c), &ar, on_invoked, c, &call);
        if (k == -ENOMEM)
                return k;
        if (k == -ENOENT)
                return grpc_fail_dapr(c, DAPR_ERR_ACTOR_INVOKE_METHOD,
                                      "failed to invoke actor: no app hosts actor type '%s'", req->actor_type);
        if (k == -EBUSY)
                return actor_fail(c, DAPR_ERR_ACTOR_INVOKE_METHOD, k, "", "too many calls waiting for this actor");
        if (k == -ELOOP)
                return actor_fail(c, DAPR_ERR_ACTOR_INVOKE_METHOD, k, "",
                                  "maximum stack depth exceeded for a reentrant call");
        if (k == -EHOSTDOWN)
                return actor_fail(c, DAPR_ERR_ACTOR_INVOKE_METHOD, k, "",
                                  "the app hosting the actor type is not reachable");
        if (k == -EINVAL)
                return actor_fail(c, DAPR_ERR_ACTOR_INVOKE_METHOD, k, "",
                                  "actor type, id and method must not be empty; type and id must not contain '||'");
        if (k < 0)
                return actor_fail(c, DAPR_ERR_ACTOR_INVOKE_METHOD, k, "", NULL);
        grpc_call_on_cancel(c, on_invoke_cancel, call);
        return 0;
}

/* ---- state ---- */

static void on_state_cancel(GrpcCall *c, void *userdata) {
        actor_state_cancel(grpc_call_registry(c), c);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the state store answered");
}

static void on_state_got(const StateResult *res, void *userdata) {
        GrpcCall *c = answering(userdata);
        if (res->error < 0) {
                (void) grpc_fail_dapr(c, DAPR_ERR_ACTOR_STATE_GET, "error getting actor state: %s",
                                      res->message ?: strerror(-res->error));
                return;
        }
        PB(GetActorStateResponse) resp = DAPR__PROTO__RUNTIME__V1__GET_ACTOR_STATE_RESPONSE__INIT;
        if (res->value.found) /* not found: an empty answer, as daprd gives */
                resp.data = (ProtobufCBinaryData){ res->value.value_len, res->value.value };
        (void) grpc_call_reply(c, &resp.base);
}

static void on_state_saved(const StateResult *res, void *userdata) {
        GrpcCall *c = answering(userdata);
        if (res->error < 0)
                (void) grpc_fail_dapr(c, DAPR_ERR_ACTOR_STATE_TRANSACTION_SAVE, "error saving actor transaction "
                                      "state: %s", res->message ?: strerror(-res->error));
        else
                reply_empty(c);
}

static int state_started(GrpcCall *c, int k, DaprError op) {
        if (k == -ENOMEM)
                return k;
        if (k == -EADDRNOTAVAIL)
                return actor_fail(c, op, k, "", "actor instance is missing: it is not active on this host for the "
                                  "calling app");
        if (k == -EINVAL)
                return grpc_fail_dapr(c, DAPR_ERR_MALFORMED_REQUEST, "actor state key must not be empty");
        if (k < 0)
                return actor_fail(c, op, k, "", NULL);
        grpc_call_on_cancel(c, on_state_cancel, NULL);
        return 0;
}

int grpc_dapr_get_actor_state(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(GetActorStateRequest) *req = (const PB(GetActorStateRequest) *) m;
        int k = actor_state_get(grpc_call_registry(c), grpc_call_app_id(c), req->actor_type, req->actor_id, req->key,
                                on_state_got, c);
        return state_started(c, k, DAPR_ERR_ACTOR_STATE_GET);
}

int grpc_dapr_execute_actor_state_transaction(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(ExecuteActorStateTransactionRequest) *req = (const PB(ExecuteActorStateTransactionRequest) *) m;
        _cleanup_free_ StateOp *ops = calloc(req->n_operations ?: 1, sizeof *ops);
        int k;

        if (!ops)
                return -ENOMEM;
        for (size_t i = 0; i < req->n_operations; i++) {
                const PB(TransactionalActorStateOperation) *o = req->operations[i];
                if (strcasecmp(o->operationtype, "upsert") == 0) {
                        ops[i] = (StateOp){ .kind = STATE_OP_UPSERT, .key = o->key, .value = (const uint8_t *) "" };
                        if (o->value) {
                                ops[i].value = o->value->value.data ?: (const uint8_t *) "";
                                ops[i].value_len = o->value->value.len;
                        }
                        for (size_t j = 0; j < o->n_metadata; j++)
                                if (streq(o->metadata[j]->key, "ttlInSeconds") &&
                                    state_parse_ttl(o->metadata[j]->value, &ops[i].ttl_sec) < 0)
                                        return grpc_fail_dapr(c, DAPR_ERR_MALFORMED_REQUEST, "'ttlInSeconds' must be "
                                                              "-1 or an integer from 0 to 2147483647");
                } else if (strcasecmp(o->operationtype, "delete") == 0)
                        ops[i] = (StateOp){ .kind = STATE_OP_DELETE, .key = o->key };
                else
                        return grpc_fail_dapr(c, DAPR_ERR_NOT_SUPPORTED_STATE_OPERATION,
                                              "operation type %s not supported", o->operationtype);
        }
        k = actor_state_transact(grpc_call_registry(c), grpc_call_app_id(c), req->actor_type, req->actor_id, ops,
                                 req->n_operations, on_state_saved, c);
        return state_started(c, k, DAPR_ERR_ACTOR_STATE_TRANSACTION_SAVE);
}

/* ---- reminders and timers ---- */

static void on_reminder_cancel(GrpcCall *c, void *userdata) {
        actor_reminder_cancel(grpc_call_registry(c), c);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the reminder was stored");
}

static void on_reminder_done(int error, const char *message, void *userdata) {
        GrpcCall *c = answering(userdata);
        if (error < 0)
                (void) grpc_fail_dapr(c, DAPR_ERR_ACTOR_REMINDER_CREATE, "error storing the reminder: %s",
                                      message ?: strerror(-error));
        else
                reply_empty(c);
}

static void on_reminder_deleted(int error, const char *message, void *userdata) {
        GrpcCall *c = answering(userdata);
        if (error < 0)
                (void) grpc_fail_dapr(c, DAPR_ERR_ACTOR_REMINDER_DELETE, "error deleting the reminder: %s",
                                      message ?: strerror(-error));
        else
                reply_empty(c);
}

static int non_hosted(GrpcCall *c, const char *type) {
        return grpc_fail_dapr(c, DAPR_ERR_ACTOR_REMINDER_NON_HOSTED, "the calling app does not host actor type '%s'",
                              type);
}

static void on_reminder_forward_cancel(GrpcCall *c, void *userdata) {
        actor_call_cancel(userdata);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the owning host answered");
}

/* How a reminder registration or deletion started: answered later (on_reminder_done/deleted), or
 * failed now. -EREMOTE: another host of the cluster owns the actor; the block sends it there (spec:
 * a registration, else a deletion). */
static int reminder_started(GrpcCall *c, int k, const char *type, const char *id, const char *name,
                            const ActorReminderSpec *spec, DaprError op, const char *prefix, const char *err) {
        if (k == -EREMOTE) {
                ActorCall *call = NULL;
                k = actor_reminder_forward(grpc_call_registry(c), grpc_call_app_id(c), type, id, name, spec,
                                           spec ? on_reminder_done : on_reminder_deleted, c, &call);
                if (k >= 0) {
                        grpc_call_on_cancel(c, on_reminder_forward_cancel, call);
                        return 0;
                }
        }
        if (k == -ENOMEM)
                return k;
        if (k == -EPERM)
                return non_hosted(c, type);
        if (k < 0)
                return actor_fail(c, op, k, prefix, err);
        grpc_call_on_cancel(c, on_reminder_cancel, NULL);
        return 0;
}

/* The data bytes as daprd's json.Marshal([]byte) writes them; *ret NULL for none. */
static int data_json(const ProtobufCBinaryData *d, json_t **ret) {
        _cleanup_free_ char *b64 = NULL;
        *ret = NULL;
        if (d->len == 0)
                return 0;
        b64 = base64_encode(d->data, d->len);
        if (!b64)
                return -ENOMEM;
        *ret = json_string(b64);
        return *ret ? 0 : -ENOMEM;
}

int grpc_dapr_register_actor_reminder(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(RegisterActorReminderRequest) *req = (const PB(RegisterActorReminderRequest) *) m;
        _cleanup_(json_decrefp) json_t *data = NULL;
        const char *err = NULL;
        int k;

        if (data_json(&req->data, &data) < 0)
                return -ENOMEM;
        ActorReminderSpec spec = { .due = nonempty(req->due_time), .period = nonempty(req->period),
                                   .ttl = nonempty(req->ttl), .data = data };
        k = actor_reminder_set(grpc_call_registry(c), grpc_call_app_id(c), req->actor_type, req->actor_id, req->name,
                               &spec, on_reminder_done, c, &err);
        return reminder_started(c, k, req->actor_type, req->actor_id, req->name, &spec, DAPR_ERR_ACTOR_REMINDER_CREATE,
                                "error creating the reminder: ", err);
}

int grpc_dapr_unregister_actor_reminder(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(UnregisterActorReminderRequest) *req = (const PB(UnregisterActorReminderRequest) *) m;
        int k = actor_reminder_delete(grpc_call_registry(c), grpc_call_app_id(c), req->actor_type, req->actor_id,
                                      req->name, on_reminder_deleted, c);
        return reminder_started(c, k, req->actor_type, req->actor_id, req->name, NULL, DAPR_ERR_ACTOR_REMINDER_DELETE,
                                "error deleting the reminder: ", NULL);
}

int grpc_dapr_register_actor_timer(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(RegisterActorTimerRequest) *req = (const PB(RegisterActorTimerRequest) *) m;
        _cleanup_(json_decrefp) json_t *data = NULL;
        const char *err = NULL;
        int k;

        if (data_json(&req->data, &data) < 0)
                return -ENOMEM;
        ActorReminderSpec spec = { .due = nonempty(req->due_time), .period = nonempty(req->period),
                                   .ttl = nonempty(req->ttl), .callback = nonempty(req->callback), .data = data };
        k = actor_timer_set(grpc_call_registry(c), grpc_call_app_id(c), req->actor_type, req->actor_id, req->name,
                            &spec, &err);
        if (k == -ENOMEM)
                return k;
        /* daprd: a timer on an actor that is not active here is ERR_ACTOR_TIMER_CREATE */
        if (k == -EADDRNOTAVAIL)
                return grpc_fail_dapr(c, DAPR_ERR_ACTOR_TIMER_CREATE, "error creating the timer: %s",
                                      err ?: "the actor is not active on this host for the calling app");
        if (k < 0)
                return actor_fail(c, DAPR_ERR_ACTOR_TIMER_CREATE, k, "error creating the timer: ", err);
        reply_empty(c);
        return 0;
}

int grpc_dapr_unregister_actor_timer(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(UnregisterActorTimerRequest) *req = (const PB(UnregisterActorTimerRequest) *) m;
        int k = actor_timer_delete(grpc_call_registry(c), grpc_call_app_id(c), req->actor_type, req->actor_id,
                                   req->name);
        if (k == -EADDRNOTAVAIL)
                return grpc_fail_dapr(c, DAPR_ERR_ACTOR_TIMER_DELETE, "error deleting the timer: %s",
                                      "the calling app does not host the actor type");
        if (k < 0)
                return actor_fail(c, DAPR_ERR_ACTOR_TIMER_DELETE, k, "error deleting the timer: ", NULL);
        reply_empty(c);
        return 0;
}
