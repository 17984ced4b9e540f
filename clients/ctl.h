/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: shared declarations.
 *
 * mooringctl reads the daemon's state over one of two transports (D-Bus, or
 * HTTP on the shared API socket) into the small model below, and prints the
 * model the same way whichever transport filled it. Errors are reported once,
 * on stderr, by the function that decides them; callers only pass the
 * negative errno up. The one errno with a fixed meaning is
 * -CTL_ERR_UNREACHABLE: "the daemon (or the bus) could not be reached, and
 * that was already reported", which main() turns into exit status 3.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../daemon/util/cleanup.h"

#define CTL_PROGRAM "mooringctl"

#define CTL_BUS_NAME "org.mooring.Runtime1"
#define CTL_BUS_PATH "/org/mooring/Runtime1"
#define CTL_BUS_INTERFACE "org.mooring.Runtime1"
#define CTL_BUS_ERROR_NO_SUCH_APP "org.mooring.Runtime1.Error.NoSuchApp"
#define CTL_BUS_ERROR_NO_SUCH_STORE "org.mooring.Runtime1.Error.NoSuchStore"
#define CTL_BUS_ERROR_ETAG_MISMATCH "org.mooring.Runtime1.Error.EtagMismatch"
#define CTL_BUS_ERROR_PERMISSION_DENIED "org.mooring.Runtime1.Error.PermissionDenied"
#define CTL_BUS_ERROR_NO_SUCH_PUBSUB "org.mooring.Runtime1.Error.NoSuchPubsub"

/* The most a DATA argument may hold: sd-bus refuses arrays above 64 MiB, HTTP gets the same bound. */
#define CTL_DATA_MAX ((size_t) 64 << 20)

/* Reserved errno: the daemon or bus is unreachable and this was reported. */
#define CTL_ERR_UNREACHABLE EHOSTDOWN

enum {
        CTL_EXIT_SUCCESS = 0,
        CTL_EXIT_FAILURE = 1,
        CTL_EXIT_USAGE = 2,
        CTL_EXIT_NOT_RUNNING = 3,
};

typedef struct CtlOptions {
        bool user;                 /* --user: session bus */
        bool json;                 /* --json */
        bool no_pager;             /* --no-pager */
        const char *bus_address;   /* --bus-address, borrowed from argv */
        const char *socket_path;   /* --socket or $MOORING_SOCKET, borrowed; NULL = D-Bus */
} CtlOptions;

typedef struct CtlStatus {
        char *version;
        char *state;
        uint64_t n_apps;
        uint64_t n_components;
} CtlStatus;

typedef struct CtlApp {
        char *id;
        char *app_address;
        char *http_socket;
        uint16_t http_port;        /* 0 = no TCP listener */
        char *health;
        char *grpc_socket;         /* the gRPC API's socket; NULL when not known */
        uint16_t grpc_port;        /* GrpcPort=; 0 = none */
} CtlApp;

typedef struct CtlComponent {
        char *name;
        char *type;
        char *version;
        char *file;
        char *error;       /* why it could not be loaded; "" when it was */
} CtlComponent;

/* One state item as GetState returned it; data is NUL-terminated for convenience. */
typedef struct CtlStateValue {
        char *data;
        size_t size;
        char *etag;
} CtlStateValue;

/* What a "state" command acts on; strings are borrowed from argv. */
typedef struct CtlStateRequest {
        const char *app_id;        /* --app, or "" for the app of the caller's own unit */
        const char *store;
        const char *key;
        const char *value;         /* "state set": VALUE, "-" for standard input */
        const char *etag;          /* --etag, or NULL */
        bool first_write;          /* --first-write */
        const char *ttl;           /* --ttl, validated, or NULL */
} CtlStateRequest;

/* What "invoke" sends; strings are borrowed from argv. */
typedef struct CtlInvokeRequest {
        const char *app_id;
        const char *method;        /* the callee's path, may carry "?query" */
        const char *verb;          /* upper case; never NULL */
        const char *data;          /* --data as given (literal, "@FILE" or "-"), or NULL */
        char **headers;            /* --header lines "Name: value", NULL-terminated, or NULL */
        const char *content_type;  /* --content-type, or NULL: application/json when the data is JSON */
        bool verbose;              /* --verbose: status and headers on stderr */
} CtlInvokeRequest;

/* What "publish" sends; strings are borrowed from argv. */
typedef struct CtlPublishRequest {
        const char *pubsub;
        const char *topic;
        const char *data;          /* DATA as given: literal, "@FILE" or "-" */
        const char *content_type;  /* --content-type, or NULL: application/json when the data is JSON, else text/plain */
        char **metadata;           /* --metadata "KEY=VALUE" items, validated, NULL-terminated, or NULL */
} CtlPublishRequest;

/* What "binding invoke" sends; strings are borrowed from argv. */
typedef struct CtlBindingRequest {
        const char *app_id;        /* --app, or NULL: the caller's own app (or none) */
        const char *name;
        const char *operation;
        const char *data;          /* --data as given: literal, "@FILE" or "-"; NULL: none */
        char **metadata;           /* --metadata "KEY=VALUE" items, validated, NULL-terminated, or NULL */
        bool verbose;              /* --verbose: the binding's metadata on stderr */
} CtlBindingRequest;

/* One running subscription, as ListSubscriptions or GET /mooring/v1/subscriptions list it. */
typedef struct CtlSubscription {
        char *app;                 /* "" when the subscriber is no app */
        char *pubsub;
        char *topic;
        char *route;               /* the default route, "" when none */
        char *kind;                /* "declarative", "programmatic" or "dbus" */
} CtlSubscription;

typedef struct CtlSubscriptionList {
        CtlSubscription *items;
        size_t n;
} CtlSubscriptionList;

/* One HTTP request on the shared socket (ctl_http_request()). */
typedef struct CtlHttpRequest {
        const char *verb;          /* "GET", "POST", ... */
        const char *target;        /* path and query, e.g. "/mooring/v1/status" */
        char *const *headers;      /* "Name: value" lines, NULL-terminated, or NULL */
        const void *body;          /* NULL: no body */
        size_t body_size;
        long timeout_sec;          /* 0: none */
} CtlHttpRequest;

/* Its answer, whatever the status. */
typedef struct CtlHttpReply {
        long status;
        char **headers;            /* "Name: value" lines, NULL-terminated, or NULL */
        char *body;                /* NUL-terminated, or NULL when empty */
        size_t body_size;
} CtlHttpReply;

typedef struct CtlAppList {
        CtlApp *items;
        size_t n;
} CtlAppList;

typedef struct CtlComponentList {
        CtlComponent *items;
        size_t n;
} CtlComponentList;

/* ctl-util.c */
void ctl_log(const char *fmt, ...) _printf_(1, 2);
int ctl_log_errno(int r, const char *fmt, ...) _printf_(2, 3);
int ctl_log_oom(void);
/* The shared API socket when none is named: $XDG_RUNTIME_DIR/mooring/mooringd.sock for --user
 * (with an absolute XDG_RUNTIME_DIR), else MOORING_RUNTIME_DIR/mooringd.sock. malloc'd; NULL on OOM. */
char *ctl_default_socket_path(const CtlOptions *o);
bool ctl_app_id_is_valid(const char *id);
int ctl_read_all(int fd, size_t max, char **ret, size_t *ret_size);
int ctl_load_data(const char *data, const void **ret, size_t *ret_size, char **ret_buf);
bool ctl_data_is_json(const void *data, size_t size);

/* ctl-model.c */
void ctl_status_done(CtlStatus *s);
int ctl_status_set(CtlStatus *s, const char *version, const char *state,
                   uint64_t n_apps, uint64_t n_components);
void ctl_app_list_done(CtlAppList *l);
int ctl_app_list_add(CtlAppList *l, const char *id, const char *app_address,
                     const char *http_socket, uint16_t http_port, const char *health);
void ctl_app_list_sort(CtlAppList *l);
void ctl_component_list_done(CtlComponentList *l);
/* Sets the error of the component named name (why it could not be loaded). */
int ctl_component_list_set_error(CtlComponentList *l, const char *name, const char *error);
int ctl_component_list_add(CtlComponentList *l, const char *name, const char *type,
                           const char *version, const char *file);
void ctl_component_list_sort(CtlComponentList *l);
void ctl_state_value_done(CtlStateValue *v);
int ctl_state_value_set(CtlStateValue *v, const void *data, size_t size, const char *etag);
void ctl_subscription_list_done(CtlSubscriptionList *l);
int ctl_subscription_list_add(CtlSubscriptionList *l, const char *app, const char *pubsub, const char *topic,
                              const char *route, const char *kind);
void ctl_subscription_list_sort(CtlSubscriptionList *l);

/* ctl-output.c */
int ctl_print_status(const CtlStatus *s, bool json);
int ctl_print_apps(const CtlAppList *l, bool json);
int ctl_print_components(const CtlComponentList *l, bool json);
int ctl_print_state_value(const CtlStateValue *v, bool json);
int ctl_print_subscriptions(const CtlSubscriptionList *l, bool json);

/* ctl-bus.c */
int ctl_bus_get_status(const CtlOptions *o, CtlStatus *ret);
int ctl_bus_get_apps(const CtlOptions *o, CtlAppList *ret);
int ctl_bus_get_components(const CtlOptions *o, CtlComponentList *ret);
int ctl_bus_get_subscriptions(const CtlOptions *o, CtlSubscriptionList *ret);

/* ctl-http.c */
int ctl_http_get_status(const CtlOptions *o, CtlStatus *ret);
int ctl_http_get_apps(const CtlOptions *o, CtlAppList *ret);
int ctl_http_get_components(const CtlOptions *o, CtlComponentList *ret);
int ctl_http_get_subscriptions(const CtlOptions *o, CtlSubscriptionList *ret);
int ctl_http_request(const CtlOptions *o, const CtlHttpRequest *req, CtlHttpReply *ret);
void ctl_http_reply_done(CtlHttpReply *r);

/* ctl-exec.c */
int ctl_app_exec(const CtlOptions *o, const char *app_id, char **cmd);

/* ctl-state.c */
int ctl_state_get(const CtlOptions *o, const CtlStateRequest *req, CtlStateValue *ret);
/* ctl-actors.c (over D-Bus) */
int ctl_actors_list(const CtlOptions *o);
int ctl_actor_invoke(const CtlOptions *o, const char *app, const char *type, const char *id, const char *method,
                     const char *data);
int ctl_actor_reminders(const CtlOptions *o, const char *type, const char *id);
int ctl_state_set(const CtlOptions *o, const CtlStateRequest *req);
int ctl_state_delete(const CtlOptions *o, const CtlStateRequest *req);

/* ctl-secret.c: GetSecret as app (""), printed; metadata: "K=V" strings, NULL-terminated */
int ctl_secret_get(const CtlOptions *o, const char *app, const char *store, const char *name,
                   char *const *metadata);
/* ctl-alpha.c */
int ctl_lock(const CtlOptions *o, const char *app, const char *store, const char *resource, const char *owner,
             int32_t seconds);
int ctl_unlock(const CtlOptions *o, const char *app, const char *store, const char *resource, const char *owner);
int ctl_configuration_get(const CtlOptions *o, const char *app, const char *store, char **keys);
int ctl_state_query(const CtlOptions *o, const char *app, const char *store, const char *query);

/* ctl-invoke.c */
int ctl_invoke(const CtlOptions *o, const CtlInvokeRequest *req);

/* ctl-pubsub.c */
int ctl_publish(const CtlOptions *o, const CtlPublishRequest *req);

/* ctl-binding.c */
int ctl_binding_invoke(const CtlOptions *o, const CtlBindingRequest *req);

/* ctl-ca.c: "ca init|issue ..." (argv[0] is "ca"; --help is mooringctl.c's); returns the exit status */
int ctl_ca_main(int argc, char *argv[]);

/* ctl-init.c */
int ctl_init(bool no_systemd);
int ctl_uninstall(bool all, bool no_systemd);

/* ctl-manage.c */
int ctl_reload(const CtlOptions *o);
int ctl_register(const CtlOptions *o, const char *app_id, char **settings);
int ctl_unregister(const CtlOptions *o, const char *app_id);

/* ctl-pager.c */
void ctl_pager_open(bool no_pager);
void ctl_pager_close(void);

/* What "logs" shows; strings borrowed from argv. */
typedef struct CtlLogsRequest {
        const char *app_id;
        bool follow;               /* -f: wait for new lines */
        int64_t lines;             /* -n: the last N lines; -1: all (10 with -f) */
        bool since_set;
        uint64_t since_usec;       /* --since, CLOCK_REALTIME */
        const char *directory;     /* --directory: journal files there instead of the system journal */
} CtlLogsRequest;

/* ctl-http.c: GET route on the shared socket, the answer's JSON (errors reported) */
int ctl_http_get_json(const CtlOptions *o, const char *route, json_t **ret);

/* ctl-cluster.c: prints this host's view of the cluster (shared socket) */
int ctl_cluster(const CtlOptions *o);
/* ctl-resiliency.c: prints the Resiliency policies and circuit breakers (shared socket) */
int ctl_resiliency(const CtlOptions *o);

/* ctl-dashboard.c: prints (and opens) the dashboard's URL; forwards to the socket when needed */
int ctl_dashboard(const CtlOptions *o, bool open_browser);

/* ctl-logs.c */
int ctl_parse_since(const char *s, uint64_t *ret_usec);
int ctl_logs(const CtlOptions *o, const CtlLogsRequest *req);
