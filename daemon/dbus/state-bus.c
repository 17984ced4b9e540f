/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's state operations over D-Bus, through the same state block as HTTP.
 * Values are byte arrays, stored as given (binary stays binary).
 *
 * Who the caller is: every method takes app_id first. Empty means "the app
 * my systemd unit names" (mooring-app@<id>.service); naming an app is allowed
 * when it is that same app, and otherwise needs polkit's
 * org.mooring.runtime1.act-as-app (root and the daemon's user pass). A caller
 * that is no app gets PermissionDenied: state always belongs to an app.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../blocks/state.h"
#include "../core/errors.h"
#include "../core/identity.h"
#include "../manager.h"
#include "../util/strv.h"
#include "polkit.h"
#include "state-bus.h"


/*
 * dbus-daemon disconnects a peer that sends a message over its max_message_size
 * (32 MiB by default): one large reply would take mooringd off the bus for every
 * caller. Replies are sized first; what would not fit is refused (use HTTP).
 * The slack covers the header (dbus-daemon adds the sender) and per-item framing.
 */
#define REPLY_MAX (((size_t) 32 << 20) - 64 * 1024)
#define ITEM_FRAMING ((size_t) 32)

static size_t result_size(const char *key, const StateResult *res) {
        return strlen(key ?: "") + res->value.value_len + strlen(strempty(res->value.etag)) + ITEM_FRAMING;
}

static int reply_too_large(sd_bus_message *call, size_t size) {
        return sd_bus_reply_method_errorf(call, BUS_ERROR_RESPONSE_TOO_LARGE,
                                          "The answer (%zu bytes) does not fit in one D-Bus message (at most %zu); "
                                          "read it over HTTP", size, REPLY_MAX);
}

/*
 * The app id the sender's systemd unit names (mooring-app@<id>.service, as a
 * system or user unit), malloc'd, or NULL when it runs in no app's unit (or
 * its credentials cannot be read). Shared with the other front-ends of the
 * object (invoke-bus.c), which is why it is not static.
 */
char *bus_sender_app(sd_bus_message *call) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const char *unit = NULL;
        char *id = NULL;

        if (sd_bus_query_sender_creds(call, SD_BUS_CREDS_UNIT | SD_BUS_CREDS_USER_UNIT, &creds) < 0)
                return NULL;
        if (sd_bus_creds_get_unit(creds, &unit) >= 0 && identity_app_from_unit(unit, &id))
                return id;
        if (sd_bus_creds_get_user_unit(creds, &unit) >= 0 && identity_app_from_unit(unit, &id))
                return id;
        return NULL;
}

/*
 * Runs op once the caller may act as the app it asks for. op re-reads the
 * message from the start (it may run later, after polkit answered). Shared
 * with the other app-owned methods (lock-bus.c, ...).
 */
int bus_with_identity(sd_bus_message *call, Manager *m, PolkitContinueFn op, sd_bus_error *reterr) {
        _cleanup_free_ char *own = bus_sender_app(call);
        const char *app_id;
        int r = sd_bus_message_read(call, "s", &app_id);
        if (r < 0)
                return r;
        if (!*app_id) {
                if (!own)
                        return sd_bus_error_set(reterr, BUS_ERROR_PERMISSION_DENIED,
                                                "The caller is not an app: pass an app id (needs authorization) "
                                                "or call from mooring-app@<id>.service");
                return op(call, m);
        }
        if (own && streq(own, app_id))
                return op(call, m);
        return polkit_authorize_async(call, m, "org.mooring.runtime1.act-as-app", op, reterr);
}

/* Re-reads app id and store name; replies with an error itself (and returns 0) when they do not resolve. */
static int resolve(sd_bus_message *call, Manager *m, char **ret_app, StateStore **ret_store, bool *ret_replied) {
        _cleanup_free_ char *own = NULL;
        const char *app_id, *store;
        int r;

        *ret_replied = true;
        r = sd_bus_message_rewind(call, true);
        if (r >= 0)
                r = sd_bus_message_read(call, "ss", &app_id, &store);
        if (r < 0)
                return r;
        if (!*app_id)
                app_id = own = bus_sender_app(call);
        if (!app_id || !registry_find_app(m->registry, app_id))
                return sd_bus_reply_method_errorf(call, BUS_ERROR_NO_SUCH_APP, "No app '%s' is registered", strna(app_id));
        r = state_lookup(m->registry, store, app_id, ret_store);
        if (r < 0)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_NO_SUCH_STORE, "State store '%s' is not found", store);
        *ret_app = strdup(app_id);
        if (!*ret_app)
                return -ENOMEM;
        *ret_replied = false;
        return 0;
}

static int reply_state_error(sd_bus_message *call, const StateResult *res) {
        const char *name = error_lookup(ERROR_CONTEXT_STATE, res->error)->bus_error;
        return sd_bus_reply_method_errorf(call, name, "%s", res->message ?: strerror(-res->error));
}

static int reply_start_error(sd_bus_message *call, int r) {
        if (r == -EINVAL)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_INVALID_ARGUMENT,
                                                  "Keys must be non-empty and must not contain '||'");
        if (r == -EOPNOTSUPP)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_NOT_SUPPORTED, "The store does not support transactions");
        return sd_bus_reply_method_errnof(call, r, "Cannot start the operation: %m");
}

/* After starting a block call that holds a reference on call: 1, or drop it and answer the error. */
static int started(sd_bus_message *call, int r) {
        if (r >= 0)
                return 1;
        sd_bus_message_unref(call);
        return reply_start_error(call, r);
}

/* ---- GetState(s app_id, s store, s key) → (b found, ay value, s etag) ---- */

static void on_get(const StateResult *res, void *userdata) {
        sd_bus_message *call = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;

        if (res->error < 0)
                (void) reply_state_error(call, res);
        else if (result_size(NULL, res) > REPLY_MAX)
                (void) reply_too_large(call, result_size(NULL, res));
        else if (sd_bus_message_new_method_return(call, &reply) >= 0 &&
                 sd_bus_message_append(reply, "b", res->value.found) >= 0 &&
                 sd_bus_message_append_array(reply, 'y', res->value.value ?: "", res->value.value_len) >= 0 &&
                 sd_bus_message_append(reply, "s", strempty(res->value.etag)) >= 0)
                (void) sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(call);
}

static int do_get(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        StateStore *s;
        const char *key;
        bool replied;
        int r = resolve(call, m, &app, &s, &replied);
        if (r < 0 || replied)
                return r;
        r = sd_bus_message_read(call, "s", &key);
        if (r < 0)
                return r;
        return started(call, state_get(s, app, key, on_get, sd_bus_message_ref(call)));
}

int bus_method_get_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_get, reterr);
}

/* ---- writes ---- */

static void on_written(const StateResult *res, void *userdata) {
        sd_bus_message *call = userdata;
        if (res->error < 0)
                (void) reply_state_error(call, res);
        else
                (void) sd_bus_reply_method_return(call, NULL);
        sd_bus_message_unref(call);
}

/* Reads the a{ss} options of SaveState/DeleteState into op. Returns an error text or NULL. */
static const char *read_options(sd_bus_message *call, StateOp *op, int *ret_r) {
        const char *k, *v;
        int r;

        *ret_r = 0; /* also when an option is refused below */
        r = sd_bus_message_enter_container(call, 'a', "{ss}");
        while (r >= 0 && (r = sd_bus_message_read(call, "{ss}", &k, &v)) > 0) {
                if (streq(k, "concurrency")) {
                        if (streq(v, "first-write"))
                                op->concurrency = STATE_CONCURRENCY_FIRST_WRITE;
                        else if (!streq(v, "last-write"))
                                return "concurrency must be first-write or last-write";
                } else if (streq(k, "ttlInSeconds")) {
                        int64_t ttl;
                        if (state_parse_ttl(v, &ttl) < 0)
                                return "ttlInSeconds must be -1 or an integer from 0 to 2147483647";
                        op->ttl_sec = ttl;
                } /* consistency and other hints: accepted, not needed */
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(call);
        *ret_r = r;
        return NULL;
}

/* Reads the trailing a{ss} options into op and starts the write. */
static int write_with_options(sd_bus_message *call, StateStore *s, const char *app, StateOp *op) {
        int r;
        const char *e = read_options(call, op, &r);
        if (r < 0)
                return r;
        if (e)
                return sd_bus_reply_method_errorf(call, BUS_ERROR_INVALID_ARGUMENT, "%s", e);
        return started(call, state_write_all(s, app, op, 1, on_written, sd_bus_message_ref(call)));
}

/* SaveState(s app_id, s store, s key, ay value, s etag, a{ss} options) */
static int do_save(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        StateStore *s;
        StateOp op = { .kind = STATE_OP_UPSERT };
        const void *value;
        size_t len;
        const char *etag;
        bool replied;
        int r = resolve(call, m, &app, &s, &replied);
        if (r < 0 || replied)
                return r;
        r = sd_bus_message_read(call, "s", &op.key);
        if (r >= 0)
                r = sd_bus_message_read_array(call, 'y', &value, &len);
        if (r >= 0)
                r = sd_bus_message_read(call, "s", &etag);
        if (r < 0)
                return r;
        op.value = value;
        op.value_len = len;
        op.etag = *etag ? etag : NULL;
        return write_with_options(call, s, app, &op);
}

int bus_method_save_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_save, reterr);
}

/* DeleteState(s app_id, s store, s key, s etag, a{ss} options) */
static int do_delete(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        StateStore *s;
        StateOp op = { .kind = STATE_OP_DELETE };
        const char *etag;
        bool replied;
        int r = resolve(call, m, &app, &s, &replied);
        if (r < 0 || replied)
                return r;
        r = sd_bus_message_read(call, "ss", &op.key, &etag);
        if (r < 0)
                return r;
        op.etag = *etag ? etag : NULL;
        return write_with_options(call, s, app, &op);
}

int bus_method_delete_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_delete, reterr);
}

/* ---- GetBulkState(s app_id, s store, as keys) → a(sbays) (key, found, value, etag) ---- */

typedef struct BusBulk {
        sd_bus_message *call;
        char **keys;
} BusBulk;

static void on_bulk(const StateResult *results, size_t n, const StateResult *failed, void *userdata) {
        BusBulk *b = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        size_t size = 0;
        int r;

        if (failed) {
                (void) reply_state_error(b->call, failed);
                goto out;
        }
        for (size_t i = 0; i < n; i++)
                size += result_size(b->keys[i], &results[i]);
        if (size > REPLY_MAX) {
                (void) reply_too_large(b->call, size);
                goto out;
        }
        r = sd_bus_message_new_method_return(b->call, &reply);

        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sbays)");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const StateResult *res = &results[i];
                if (res->error < 0) {
                        /* one failed key fails the call: a client cannot tell "missing" from "failed" otherwise */
                        (void) reply_state_error(b->call, res);
                        goto out;
                }
                r = sd_bus_message_open_container(reply, 'r', "sbays");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "sb", b->keys[i], res->value.found);
                if (r >= 0)
                        r = sd_bus_message_append_array(reply, 'y', res->value.value ?: "", res->value.value_len);
                if (r >= 0)
                        r = sd_bus_message_append(reply, "s", strempty(res->value.etag));
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                (void) sd_bus_send(NULL, reply, NULL);
        else
                (void) sd_bus_reply_method_errnof(b->call, r, "Cannot build the reply: %m");
out:
        sd_bus_message_unref(b->call);
        strv_free(b->keys);
        free(b);
}

static int do_bulk(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        _cleanup_strv_free_ char **keys = NULL;
        StateStore *s;
        bool replied;
        int r = resolve(call, m, &app, &s, &replied);
        if (r < 0 || replied)
                return r;
        r = sd_bus_message_read_strv(call, &keys);
        if (r < 0)
                return r;
        BusBulk *b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        b->call = sd_bus_message_ref(call);
        b->keys = keys ? TAKE_PTR(keys) : calloc(1, sizeof(char *));
        r = b->keys ? state_bulk_get(s, app, b->keys, strv_length(b->keys), on_bulk, b) : -ENOMEM;
        if (r < 0) {
                sd_bus_message_unref(b->call);
                strv_free(b->keys);
                free(b);
                return reply_start_error(call, r);
        }
        return 1;
}

int bus_method_get_bulk_state(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_bulk, reterr);
}

/* ---- ExecuteStateTransaction(s app_id, s store, a(ssays) ops): (operation, key, value, etag) ---- */

static int do_transaction(sd_bus_message *call, Manager *m) {
        _cleanup_free_ char *app = NULL;
        _cleanup_free_ StateOp *ops = NULL;
        size_t n = 0, cap = 0;
        StateStore *s;
        bool replied;
        int r = resolve(call, m, &app, &s, &replied);
        if (r < 0 || replied)
                return r;
        r = sd_bus_message_enter_container(call, 'a', "(ssays)");
        if (r < 0)
                return r;
        for (;;) {
                const char *kind, *key, *etag;
                const void *value;
                size_t len;
                r = sd_bus_message_enter_container(call, 'r', "ssays");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read(call, "ss", &kind, &key);
                if (r >= 0)
                        r = sd_bus_message_read_array(call, 'y', &value, &len);
                if (r >= 0)
                        r = sd_bus_message_read(call, "s", &etag);
                if (r >= 0)
                        r = sd_bus_message_exit_container(call);
                if (r < 0)
                        return r;
                if (!streq(kind, "upsert") && !streq(kind, "delete"))
                        return sd_bus_reply_method_errorf(call, BUS_ERROR_INVALID_ARGUMENT,
                                                          "Operation '%s' is not supported (upsert, delete)", kind);
                if (n == cap) {
                        StateOp *nops = realloc(ops, (cap = cap ? cap * 2 : 8) * sizeof(StateOp));
                        if (!nops)
                                return -ENOMEM;
                        ops = nops;
                }
                ops[n++] = (StateOp){ .kind = streq(kind, "upsert") ? STATE_OP_UPSERT : STATE_OP_DELETE,
                                      .key = key, .value = value, .value_len = len, .etag = *etag ? etag : NULL };
        }
        r = sd_bus_message_exit_container(call);
        if (r < 0)
                return r;
        return started(call, state_transact(s, app, ops, n, on_written, sd_bus_message_ref(call)));
}

int bus_method_execute_state_transaction(sd_bus_message *call, void *userdata, sd_bus_error *reterr) {
        return bus_with_identity(call, userdata, do_transaction, reterr);
}
