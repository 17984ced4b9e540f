/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's state RPCs: GetState, GetBulkState, SaveState, DeleteState,
 * DeleteBulkState, ExecuteStateTransaction. Translate to the state block's
 * calls (the same ones http/api-state.c makes) and its answers back, with
 * Dapr's gRPC codes from core/errors.c (an etag mismatch is ABORTED).
 *
 * Values are stored as the bytes the caller sent (Dapr does the same over
 * gRPC; HTTP stores the JSON text of "value"), so what one API saves the
 * other reads back unchanged.
 *
 * A call whose client leaves (or whose deadline passes) before the answer
 * cancels its block call: queued work is never started (state_cancel()).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../blocks/state.h"
#include "../util/strv.h"
#include "services.h"

typedef struct StateCall {
        GrpcCall *call;
        StateStore *store;          /* borrowed: outlives the block call (see state_cancel()) */
        char **keys;                /* bulk get: the caller's keys */
        DaprError code;             /* the operation's Dapr code, for a failed write */
} StateCall;

static void state_call_free(StateCall *sc) {
        if (!sc)
                return;
        strv_free(sc->keys);
        free(sc);
}

/* Finds the caller's store, or answers (and returns < 0). */
static int find_store(GrpcCall *c, const char *name, StateStore **ret) {
        int k = state_lookup(grpc_call_registry(c), name, grpc_call_app_id(c), ret);
        if (k == -ENODEV)
                return grpc_fail_dapr(c, DAPR_ERR_STATE_STORE_NOT_CONFIGURED, "state store is not configured"), -1;
        if (k < 0)
                return grpc_fail_dapr(c, DAPR_ERR_STATE_STORE_NOT_FOUND, "state store %s is not found", name), -1;
        return 0;
}

static void on_cancel(GrpcCall *c, void *userdata) {
        StateCall *sc = userdata;
        /* No done runs after this: the answer (dropped, the client is gone) is ours to give. */
        state_cancel(sc->store, sc);
        (void) grpc_call_fail(c, GRPC_STATUS_CANCELLED, "the call ended before the state store answered");
        state_call_free(sc);
}

/* Takes the block's return value after starting a call for sc. */
static int started(StateCall *sc, int k) {
        GrpcCall *c = sc->call;
        if (k >= 0) {
                grpc_call_on_cancel(c, on_cancel, sc);
                return 0;
        }
        state_call_free(sc);
        if (k == -EINVAL)
                return grpc_fail_dapr(c, DAPR_ERR_MALFORMED_REQUEST, "keys must be non-empty and must not contain '||'");
        if (k == -E2BIG)
                return grpc_fail_dapr(c, DAPR_ERR_STATE_STORE_TOO_MANY_TRANSACTIONS,
                                      "more items than the store takes in one request (maxOperationsPerRequest)");
        if (k == -EOPNOTSUPP)
                return grpc_fail_dapr(c, DAPR_ERR_STATE_STORE_NOT_SUPPORTED,
                                      "state store does not support transactions");
        return k;
}

static StateCall *state_call_new(GrpcCall *c, StateStore *s, DaprError code) {
        StateCall *sc = calloc(1, sizeof *sc);
        if (sc)
                *sc = (StateCall){ .call = c, .store = s, .code = code };
        return sc;
}

/* The answer is here: no cancel hook any more. */
static GrpcCall *answering(StateCall *sc) {
        grpc_call_on_cancel(sc->call, NULL, NULL);
        return sc->call;
}

static void format_expiry(uint64_t usec, char *buf, size_t n) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Metadata of the request as name/value pairs for the write: ttlInSeconds is the one the block reads. */
static int op_ttl(size_t n, PB(GetStateRequest__MetadataEntry) *const *md, int64_t *ret) {
        *ret = 0;
        for (size_t i = 0; i < n; i++)
                if (streq(md[i]->key, "ttlInSeconds"))
                        return state_parse_ttl(md[i]->value, ret);
        return 0;
}

/* ---- GetState ---- */

static void on_got(const StateResult *res, void *userdata) {
        StateCall *sc = userdata;
        GrpcCall *c = answering(sc);
        PB(GetStateResponse) resp = DAPR__PROTO__RUNTIME__V1__GET_STATE_RESPONSE__INIT;
        PB(GetStateResponse__MetadataEntry) ttl = DAPR__PROTO__RUNTIME__V1__GET_STATE_RESPONSE__METADATA_ENTRY__INIT;
        PB(GetStateResponse__MetadataEntry) *mds[] = { &ttl };
        char expiry[64];

        if (res->error < 0)
                (void) grpc_fail_dapr(c, DAPR_ERR_STATE_GET, "fail to get from state store %s: %s",
                                      state_store_name(sc->store), res->message ?: strerror(-res->error));
        else {
                /* Not found is an empty answer, as in Dapr. */
                if (res->value.found) {
                        resp.data = (ProtobufCBinaryData){ res->value.value_len, res->value.value };
                        if (res->value.etag)
                                resp.etag = res->value.etag;
                        if (res->value.expire_realtime_usec) {
                                format_expiry(res->value.expire_realtime_usec, expiry, sizeof expiry);
                                ttl.key = (char *) "ttlExpireTime";
                                ttl.value = expiry;
                                resp.n_metadata = 1;
                                resp.metadata = mds;
                        }
                }
                (void) grpc_call_reply(c, &resp.base);
        }
        state_call_free(sc);
}

int grpc_dapr_get_state(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(GetStateRequest) *req = (const PB(GetStateRequest) *) m;
        StateStore *s;
        StateCall *sc;

        if (find_store(c, req->store_name, &s) < 0)
                return 0;
        sc = state_call_new(c, s, DAPR_ERR_STATE_GET);
        if (!sc)
                return -ENOMEM;
        return started(sc, state_get(s, grpc_call_app_id(c), req->key, on_got, sc));
}

/* ---- writes ---- */

static void on_written(const StateResult *res, void *userdata) {
        StateCall *sc = userdata;
        GrpcCall *c = answering(sc);
        if (res->error == 0) {
                Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
                (void) grpc_call_reply(c, &e.base);
        } else if (res->error == -ESTALE)
                (void) grpc_fail_dapr_status(c, error_grpc_status(ERROR_CONTEXT_STATE, res->error, sc->code), sc->code,
                                             "possible etag mismatch. error from state store: %s",
                                             strna(res->message));
        else if (res->error == -EINVAL)
                (void) grpc_fail_dapr_status(c, error_grpc_status(ERROR_CONTEXT_STATE, res->error, sc->code), sc->code,
                                             "invalid etag value: %s", strna(res->message));
        else if (sc->code == DAPR_ERR_STATE_TRANSACTION)
                (void) grpc_fail_dapr(c, sc->code, "error while executing state transaction: %s",
                                      res->message ?: strerror(-res->error));
        else
                (void) grpc_fail_dapr_status(c, error_grpc_status(ERROR_CONTEXT_STATE, res->error, sc->code), sc->code,
                                             "failed saving state in state store %s: %s",
                                             state_store_name(sc->store), res->message ?: strerror(-res->error));
        state_call_free(sc);
}

/* One StateItem as an op (key unscoped: the block scopes it). NULL, or the error text. */
static const char *item_op(const PBC(StateItem) *it, StateOpKind kind, StateOp *op) {
        *op = (StateOp){ .kind = kind, .key = it->key };
        if (it->etag && it->etag->value && *it->etag->value)
                op->etag = it->etag->value;
        if (it->options && it->options->concurrency == DAPR__PROTO__COMMON__V1__STATE_OPTIONS__STATE_CONCURRENCY__CONCURRENCY_FIRST_WRITE)
                op->concurrency = STATE_CONCURRENCY_FIRST_WRITE;
        if (kind == STATE_OP_UPSERT) {
                op->value = it->value.data ?: (const uint8_t *) "";
                op->value_len = it->value.len;
                if (op_ttl(it->n_metadata, (PB(GetStateRequest__MetadataEntry) *const *) it->metadata,
                           &op->ttl_sec) < 0)
                        return "'ttlInSeconds' must be -1 or an integer from 0 to 2147483647";
        }
        return NULL;
}

static int write_items(GrpcCall *c, const char *store, PBC(StateItem) *const *items, size_t n, StateOpKind kind,
                       DaprError code) {
        _cleanup_free_ StateOp *ops = NULL;
        StateStore *s;
        StateCall *sc;

        if (find_store(c, store, &s) < 0)
                return 0;
        ops = calloc(n ?: 1, sizeof *ops);
        if (!ops)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *err = item_op(items[i], kind, &ops[i]);
                if (err)
                        return grpc_fail_dapr(c, code, "failed saving state in state store %s: %s", store, err);
        }
        sc = state_call_new(c, s, code);
        if (!sc)
                return -ENOMEM;
        return started(sc, state_write_all(s, grpc_call_app_id(c), ops, n, on_written, sc));
}

int grpc_dapr_save_state(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(SaveStateRequest) *req = (const PB(SaveStateRequest) *) m;
        return write_items(c, req->store_name, req->states, req->n_states, STATE_OP_UPSERT, DAPR_ERR_STATE_SAVE);
}

int grpc_dapr_delete_bulk_state(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(DeleteBulkStateRequest) *req = (const PB(DeleteBulkStateRequest) *) m;
        return write_items(c, req->store_name, req->states, req->n_states, STATE_OP_DELETE, DAPR_ERR_STATE_DELETE);
}

int grpc_dapr_delete_state(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(DeleteStateRequest) *req = (const PB(DeleteStateRequest) *) m;
        PBC(StateItem) it = DAPR__PROTO__COMMON__V1__STATE_ITEM__INIT;
        PBC(StateItem) *items[] = { &it };
        it.key = req->key;
        it.etag = req->etag;
        it.options = req->options;
        return write_items(c, req->store_name, items, 1, STATE_OP_DELETE, DAPR_ERR_STATE_DELETE);
}

int grpc_dapr_execute_state_transaction(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(ExecuteStateTransactionRequest) *req = (const PB(ExecuteStateTransactionRequest) *) m;
        _cleanup_free_ StateOp *ops = NULL;
        StateStore *s;
        StateCall *sc;
        int64_t ttl = 0;

        if (find_store(c, req->storename, &s) < 0)
                return 0;
        if (!(s->driver->features & STATE_FEATURE_TRANSACTIONAL))
                return grpc_fail_dapr(c, DAPR_ERR_STATE_STORE_NOT_SUPPORTED,
                                      "state store %s doesn't support transactions", req->storename);
        if (op_ttl(req->n_metadata, (PB(GetStateRequest__MetadataEntry) *const *) req->metadata, &ttl) < 0)
                return grpc_fail_dapr(c, DAPR_ERR_STATE_TRANSACTION, "error while executing state transaction: "
                                      "'ttlInSeconds' must be -1 or an integer from 0 to 2147483647");
        ops = calloc(req->n_operations ?: 1, sizeof *ops);
        if (!ops)
                return -ENOMEM;
        for (size_t i = 0; i < req->n_operations; i++) {
                const PB(TransactionalStateOperation) *o = req->operations[i];
                StateOpKind kind;
                if (strcasecmp(o->operationtype, "upsert") == 0)
                        kind = STATE_OP_UPSERT;
                else if (strcasecmp(o->operationtype, "delete") == 0)
                        kind = STATE_OP_DELETE;
                else
                        return grpc_fail_dapr(c, DAPR_ERR_NOT_SUPPORTED_STATE_OPERATION,
                                              "operation type %s not supported", o->operationtype);
                if (!o->request)
                        return grpc_fail_dapr(c, DAPR_ERR_MALFORMED_REQUEST, "operation %zu has no request", i);
                const char *err = item_op(o->request, kind, &ops[i]);
                if (err)
                        return grpc_fail_dapr(c, DAPR_ERR_STATE_TRANSACTION,
                                              "error while executing state transaction: %s", err);
                if (kind == STATE_OP_UPSERT && ops[i].ttl_sec == 0)
                        ops[i].ttl_sec = ttl; /* the request's metadata where the item has none */
        }
        sc = state_call_new(c, s, DAPR_ERR_STATE_TRANSACTION);
        if (!sc)
                return -ENOMEM;
        return started(sc, state_transact(s, grpc_call_app_id(c), ops, req->n_operations, on_written, sc));
}

/* ---- GetBulkState ---- */

static void on_bulk(const StateResult *results, size_t n, const StateResult *failed, void *userdata) {
        StateCall *sc = userdata;
        GrpcCall *c = answering(sc);
        if (failed) { /* as daprd: the get as a whole */
                (void) grpc_fail_dapr(c, DAPR_ERR_STATE_BULK_GET, "%s", failed->message ?: strerror(-failed->error));
                state_call_free(sc);
                return;
        }
        PB(GetBulkStateResponse) resp = DAPR__PROTO__RUNTIME__V1__GET_BULK_STATE_RESPONSE__INIT;
        _cleanup_free_ PB(BulkStateItem) *items = calloc(n ?: 1, sizeof *items);
        _cleanup_free_ PB(BulkStateItem) **ptrs = calloc(n ?: 1, sizeof *ptrs);
        _cleanup_free_ PB(BulkStateItem__MetadataEntry) *ttls = calloc(n ?: 1, sizeof *ttls);
        _cleanup_free_ PB(BulkStateItem__MetadataEntry) **ttlp = calloc(n ?: 1, sizeof *ttlp);
        _cleanup_free_ char *expiries = calloc(n ?: 1, 64);

        if (!items || !ptrs || !ttls || !ttlp || !expiries) {
                (void) grpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                state_call_free(sc);
                return;
        }
        for (size_t i = 0; i < n; i++) {
                const StateResult *res = &results[i];
                PB(BulkStateItem) *it = &items[i];
                dapr__proto__runtime__v1__bulk_state_item__init(it);
                it->key = sc->keys[i];
                if (res->error < 0)
                        it->error = res->message ?: (char *) strerror(-res->error);
                else if (res->value.found) {
                        it->data = (ProtobufCBinaryData){ res->value.value_len, res->value.value };
                        if (res->value.etag)
                                it->etag = res->value.etag;
                        if (res->value.expire_realtime_usec) {
                                dapr__proto__runtime__v1__bulk_state_item__metadata_entry__init(&ttls[i]);
                                format_expiry(res->value.expire_realtime_usec, expiries + 64 * i, 64);
                                ttls[i].key = (char *) "ttlExpireTime";
                                ttls[i].value = expiries + 64 * i;
                                ttlp[i] = &ttls[i];
                                it->n_metadata = 1;
                                it->metadata = &ttlp[i];
                        }
                }
                ptrs[i] = it;
        }
        resp.n_items = n;
        resp.items = ptrs;
        (void) grpc_call_reply(c, &resp.base);
        state_call_free(sc);
}

int grpc_dapr_get_bulk_state(GrpcCall *c, const ProtobufCMessage *m) {
        const PB(GetBulkStateRequest) *req = (const PB(GetBulkStateRequest) *) m;
        StateStore *s;
        StateCall *sc;

        if (find_store(c, req->store_name, &s) < 0)
                return 0;
        sc = state_call_new(c, s, DAPR_ERR_STATE_BULK_GET);
        if (!sc)
                return -ENOMEM;
        sc->keys = calloc(req->n_keys + 1, sizeof(char *));
        for (size_t i = 0; sc->keys && i < req->n_keys; i++)
                if (!(sc->keys[i] = strdup(req->keys[i]))) {
                        state_call_free(sc);
                        return -ENOMEM;
                }
        if (!sc->keys) {
                state_call_free(sc);
                return -ENOMEM;
        }
        return started(sc, state_bulk_get(s, grpc_call_app_id(c), sc->keys, req->n_keys, on_bulk, sc));
}
