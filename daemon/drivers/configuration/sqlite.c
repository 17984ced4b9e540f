/* SPDX-License-Identifier: Apache-2.0 */
/*
 * configuration.sqlite: the embedded configuration store for one host
 * (mooring's own; Dapr has none). Items live in the table "configuration"
 * (key, value, version, metadata as a JSON object) of an SQLite file in the
 * state directory (connectionString, default configuration.db). They are
 * written through the daemon (D-Bus SetConfiguration, mooringctl) or by any
 * SQLite client: while someone watches, the store checks PRAGMA data_version
 * every pollInterval (default 1s; it changes when another connection
 * commits) and reports what differs from the last snapshot; writes through
 * the daemon are reported at once.
 *
 * Every statement runs on the store's worker thread (work/queue.h).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/log.h"
#include "../../util/strv.h"
#include "../../work/queue.h"
#include "../sqlite-common.h"
#include "driver.h"

#define DEFAULT_PATH "configuration.db"
#define DEFAULT_POLL_USEC (1000 * 1000ULL)
#define MIN_POLL_USEC (10 * 1000ULL)
#define BUSY_TIMEOUT_USEC (20 * 1000 * 1000ULL)

struct ConfigStoreWatch {
        ConfigStoreChangeFn fn;
        void *userdata;
        ConfigStoreWatch *next, *prev;
};

typedef struct SqliteConfig {
        ConfigStore base;
        char *path;
        bool path_is_uri;
        uint64_t poll_usec;
        sqlite3 *db;                 /* worker thread only after open */
        int64_t data_version;        /* worker thread */
        WorkQueue *queue;
        sd_event_source *poll_timer;
        bool poll_in_flight;
        json_t *snapshot;            /* key -> [value, version, metadata]; NULL: no baseline (yet) */
        unsigned generation;         /* bumped when the last watch ends: older snapshot jobs are stale */
        ConfigStoreWatch *watches;
        bool closing;
} SqliteConfig;

typedef enum JobKind {
        JOB_GET,
        JOB_SET,
        JOB_SNAPSHOT,
} JobKind;

typedef struct Job {
        SqliteConfig *store;
        JobKind kind;
        char **keys;
        ConfigItem *items;           /* set: owned copies */
        size_t n_items;
        bool force;                  /* snapshot: read even if data_version did not change */
        bool changed;                /* snapshot: read happened */
        unsigned generation;         /* snapshot: the store's when submitted */
        ConfigResult result;
        ConfigStoreGetFn done;
        void *userdata;
} Job;

static void job_free(Job *j) {
        strv_free(j->keys);
        for (size_t i = 0; i < j->n_items; i++)
                config_item_done(&j->items[i]);
        free(j->items);
        config_result_done(&j->result);
        free(j);
}

static int fail_db(SqliteConfig *s, ConfigResult *r, int rc, const char *what) {
        return config_result_fail(r, sqlite_errno(rc) ?: -EIO, "sqlite: %s: %s", what, sqlite3_errmsg(s->db));
}

/* metadata JSON object text -> name, value pairs (non-string values as JSON text). */
static int metadata_parse(const char *text, char ***ret) {
        json_t *j, *v;
        const char *k;
        char **l = NULL;

        *ret = NULL;
        if (!text || !*text)
                return 0;
        j = json_loads(text, 0, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                return 0; /* not an object: no metadata */
        }
        json_object_foreach(j, k, v) {
                _cleanup_free_ char *dumped = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                if (strv_extend(&l, k) < 0 || strv_extend(&l, json_is_string(v) ? json_string_value(v) : strempty(dumped)) < 0) {
                        strv_free(l);
                        json_decref(j);
                        return -ENOMEM;
                }
        }
        json_decref(j);
        *ret = l;
        return 0;
}

static char *metadata_text(char *const *md) {
        json_t *j = json_object();
        char *t;
        for (char *const *p = md; j && p && p[0] && p[1]; p += 2)
                json_object_set_new(j, p[0], json_string(p[1]));
        t = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        return t;
}

/* Worker: every row (keys NULL/empty) or the rows of keys. */
static void read_rows(SqliteConfig *s, char *const *keys, ConfigResult *r) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db,
                                    "SELECT key, value, version, metadata FROM configuration ORDER BY key", -1,
                                    &st, NULL);
        while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *key = (const char *) sqlite3_column_text(st, 0);
                _cleanup_strv_free_ char **md = NULL;
                rc = SQLITE_OK;
                if (!key || !config_keys_match(keys, key))
                        continue;
                if (metadata_parse((const char *) sqlite3_column_text(st, 3), &md) < 0) {
                        config_result_fail(r, -ENOMEM, "out of memory");
                        break;
                }
                ConfigItem it = { .key = (char *) key, .value = (char *) (sqlite3_column_text(st, 1) ?: (const unsigned char *) ""),
                                  .version = (char *) sqlite3_column_text(st, 2), .metadata = md };
                if (config_result_add(r, &it) < 0) {
                        config_result_fail(r, -ENOMEM, "out of memory");
                        break;
                }
        }
        if (rc != SQLITE_DONE && rc != SQLITE_OK && r->error == 0)
                fail_db(s, r, rc, "read");
        sqlite3_finalize(st);
}

static void write_items(SqliteConfig *s, Job *j) {
        sqlite3_stmt *up = NULL, *del = NULL;
        int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(s->db,
                                        "INSERT INTO configuration (key, value, version, metadata) VALUES (?1, ?2, ?3, ?4) "
                                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                                        "version = excluded.version, metadata = excluded.metadata",
                                        -1, &up, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(s->db, "DELETE FROM configuration WHERE key = ?1", -1, &del, NULL);
        for (size_t i = 0; rc == SQLITE_OK && i < j->n_items; i++) {
                const ConfigItem *it = &j->items[i];
                sqlite3_stmt *st = it->value ? up : del;
                _cleanup_free_ char *md = it->value ? metadata_text(it->metadata) : NULL;
                sqlite3_reset(st);
                sqlite3_clear_bindings(st);
                sqlite3_bind_text(st, 1, it->key, -1, SQLITE_STATIC);
                if (it->value) {
                        sqlite3_bind_text(st, 2, it->value, -1, SQLITE_STATIC);
                        sqlite3_bind_text(st, 3, it->version ?: "", -1, SQLITE_STATIC);
                        sqlite3_bind_text(st, 4, md ?: "{}", -1, SQLITE_STATIC);
                }
                rc = sqlite3_step(st);
                if (rc == SQLITE_DONE)
                        rc = SQLITE_OK;
        }
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                fail_db(s, &j->result, rc, "write");
                (void) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        }
        sqlite3_finalize(up);
        sqlite3_finalize(del);
}

static void job_run(void *userdata) {
        Job *j = userdata;
        SqliteConfig *s = j->store;

        switch (j->kind) {
        case JOB_GET:
                read_rows(s, j->keys, &j->result);
                break;
        case JOB_SET:
                write_items(s, j);
                break;
        case JOB_SNAPSHOT: {
                sqlite3_stmt *st = NULL;
                int64_t v = -1;
                if (sqlite3_prepare_v2(s->db, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
                    sqlite3_step(st) == SQLITE_ROW)
                        v = sqlite3_column_int64(st, 0);
                sqlite3_finalize(st);
                if (!j->force && v == s->data_version)
                        break;
                s->data_version = v;
                j->changed = true;
                read_rows(s, NULL, &j->result);
                break;
        }
        }
}

/* ---- the loop side ---- */

static json_t *item_entry(const ConfigItem *it) {
        _cleanup_free_ char *md = metadata_text(it->metadata);
        return json_pack("[s, s, s]", strempty(it->value), strempty(it->version), md ?: "{}");
}

static ConfigItem entry_item(const char *key, json_t *e, char **md_storage) {
        ConfigItem it = { .key = (char *) key };
        if (e) {
                it.value = (char *) json_string_value(json_array_get(e, 0));
                it.version = (char *) json_string_value(json_array_get(e, 1));
                (void) metadata_parse(json_string_value(json_array_get(e, 2)), &it.metadata);
                *md_storage = (char *) it.metadata;
        }
        return it;
}

/* Compares a fresh read with the snapshot, reports the differences to every watch, keeps the read. */
static void apply_snapshot(SqliteConfig *s, const ConfigResult *r, bool report) {
        json_t *fresh = json_object(), *e;
        ConfigResult changes = {};
        const char *key;

        if (!fresh)
                return;
        for (size_t i = 0; i < r->n_items; i++)
                json_object_set_new(fresh, r->items[i].key, item_entry(&r->items[i]));
        if (report && s->snapshot) {
                json_object_foreach(fresh, key, e) {
                        json_t *old = json_object_get(s->snapshot, key);
                        if (old && json_equal(old, e))
                                continue;
                        char *md = NULL;
                        ConfigItem it = entry_item(key, e, &md);
                        (void) config_result_add(&changes, &it);
                        strv_free((char **) md);
                }
                json_object_foreach(s->snapshot, key, e)
                        if (!json_object_get(fresh, key)) {
                                ConfigItem it = { .key = (char *) key };
                                (void) config_result_add(&changes, &it);
                        }
        }
        json_decref(s->snapshot);
        s->snapshot = fresh;
        if (changes.n_items > 0)
                for (ConfigStoreWatch *w = s->watches, *next; w; w = next) {
                        next = w->next; /* a callback may end its own watch */
                        w->fn(&s->base, changes.items, changes.n_items, w->userdata);
                }
        config_result_done(&changes);
}

static int submit(SqliteConfig *s, Job *j);

static void job_done(void *userdata) {
        Job *j = userdata;
        SqliteConfig *s = j->store;

        switch (j->kind) {
        case JOB_GET:
                j->done(&j->result, j->userdata);
                break;
        case JOB_SET:
                j->done(&j->result, j->userdata);
                /* our own writes do not move data_version for our connection: report them now */
                if (j->result.error == 0 && !s->closing && s->watches) {
                        Job *snap = calloc(1, sizeof *snap);
                        if (snap) {
                                *snap = (Job){ .store = s, .kind = JOB_SNAPSHOT, .force = true,
                                               .generation = s->generation };
                                (void) submit(s, snap);
                        }
                }
                break;
        case JOB_SNAPSHOT:
                s->poll_in_flight = false;
                /* the first read after the first watch is the baseline, reported as nothing */
                if (j->changed && j->result.error == 0 && !s->closing && j->generation == s->generation &&
                    s->watches)
                        apply_snapshot(s, &j->result, s->snapshot != NULL);
                break;
        }
        job_free(j);
}

static int connect_now(SqliteConfig *s, char **reterr_msg);

static int submit(SqliteConfig *s, Job *j) {
        if (!s->queue && !s->closing) {
                _cleanup_free_ char *msg = NULL;
                int r = connect_now(s, &msg);
                if (r < 0) {
                        log_struct(LOG_ERR, 0, NULL, s->base.component->name, "Configuration store: %s",
                                   msg ?: "out of memory");
                        job_free(j);
                        return r;
                }
        }
        if (s->closing || !s->queue || work_queue_submit(s->queue, job_run, job_done, j) < 0) {
                job_free(j);
                return -ENOMEM;
        }
        return 0;
}

static int on_poll(sd_event_source *es, uint64_t usec, void *userdata) {
        SqliteConfig *s = userdata;
        if (!s->poll_in_flight && s->watches) {
                Job *j = calloc(1, sizeof *j);
                if (j) {
                        *j = (Job){ .store = s, .kind = JOB_SNAPSHOT, .force = !s->snapshot,
                                    .generation = s->generation };
                        s->poll_in_flight = submit(s, j) >= 0;
                }
        }
        (void) sd_event_source_set_time_relative(es, s->poll_usec);
        return 0;
}

static int sqlite_get(ConfigStore *base, char *const *keys, char *const *metadata, ConfigStoreGetFn done,
                      void *userdata) {
        SqliteConfig *s = (SqliteConfig *) base;
        Job *j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        *j = (Job){ .store = s, .kind = JOB_GET, .done = done, .userdata = userdata };
        if (keys && strv_copy(keys, &j->keys) < 0) {
                job_free(j);
                return -ENOMEM;
        }
        return submit(s, j);
}

static int sqlite_set(ConfigStore *base, const ConfigItem *items, size_t n_items, ConfigStoreGetFn done,
                      void *userdata) {
        SqliteConfig *s = (SqliteConfig *) base;
        Job *j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        *j = (Job){ .store = s, .kind = JOB_SET, .done = done, .userdata = userdata,
                    .items = calloc(n_items ?: 1, sizeof(ConfigItem)) };
        if (!j->items) {
                job_free(j);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_items; i++) {
                if (config_item_copy(&j->items[i], &items[i]) < 0) {
                        job_free(j);
                        return -ENOMEM;
                }
                j->n_items++;
        }
        return submit(s, j);
}

static int sqlite_watch(ConfigStore *base, char *const *keys, char *const *metadata, ConfigStoreChangeFn fn,
                        void *userdata, ConfigStoreWatch **ret, char **reterr_msg) {
        SqliteConfig *s = (SqliteConfig *) base;
        ConfigStoreWatch *w = calloc(1, sizeof *w);
        int r;

        if (!w)
                return -ENOMEM;
        *w = (ConfigStoreWatch){ .fn = fn, .userdata = userdata, .next = s->watches };
        if (!s->watches && !s->poll_in_flight) {
                /* the first watch: the baseline is read (and not reported) before any change counts */
                Job *j = calloc(1, sizeof *j);
                if (!j) {
                        free(w);
                        return -ENOMEM;
                }
                *j = (Job){ .store = s, .kind = JOB_SNAPSHOT, .force = true, .generation = s->generation };
                r = submit(s, j);
                if (r < 0) {
                        free(w);
                        return r;
                }
                s->poll_in_flight = true;
        }
        if (w->next)
                w->next->prev = w;
        s->watches = w;
        (void) sd_event_source_set_enabled(s->poll_timer, SD_EVENT_ON);
        *ret = w;
        return 0;
}

static void sqlite_unwatch(ConfigStore *base, ConfigStoreWatch *w) {
        SqliteConfig *s = (SqliteConfig *) base;
        if (w->prev)
                w->prev->next = w->next;
        else
                s->watches = w->next;
        if (w->next)
                w->next->prev = w->prev;
        free(w);
        if (!s->watches) {
                (void) sd_event_source_set_enabled(s->poll_timer, SD_EVENT_OFF);
                json_decref(s->snapshot);
                s->snapshot = NULL;
                s->generation++;
        }
}

static int sqlite_open(ConfigStore *base, char **reterr_msg) {
        SqliteConfig *s = (SqliteConfig *) base;
        const Component *c = base->component;
        const char *v;
        int r;

        r = sqlite_resolve_path(base->state_dir, component_get_string(c, "connectionString"), DEFAULT_PATH,
                                &s->path, &s->path_is_uri, reterr_msg);
        if (r < 0)
                return r;
        s->poll_usec = DEFAULT_POLL_USEC;
        v = component_get_string(c, "pollInterval");
        if (v && (parse_duration_usec(v, &s->poll_usec) < 0 || s->poll_usec < MIN_POLL_USEC))
                return sqlite_fail(reterr_msg, -EINVAL, "pollInterval: '%s' is not a duration of 10ms or more", v);
        s->data_version = -1;
        r = sd_event_add_time_relative(base->event, &s->poll_timer, CLOCK_MONOTONIC, s->poll_usec, 0, on_poll, s);
        if (r < 0)
                return sqlite_fail(reterr_msg, r, "cannot set up the poll timer");
        (void) sd_event_source_set_enabled(s->poll_timer, SD_EVENT_OFF);
        r = connect_now(s, reterr_msg);
        /* The built-in default is there for every host, used by few: once its table exists (so that
         * any SQLite client may write items, as documented), its connection, cache and thread (about
         * 300 KiB resident) wait for the first get or subscription. */
        if (r >= 0 && component_is_builtin(c)) {
                s->queue = work_queue_free(s->queue);
                sqlite3_close_v2(s->db);
                s->db = NULL;
        }
        return r;
}

/* Loop: the database, its table and the worker thread. */
static int connect_now(SqliteConfig *s, char **reterr_msg) {
        int r;

        *reterr_msg = NULL;
        r = sqlite_open_durable(s->path, s->path_is_uri, true, BUSY_TIMEOUT_USEC, NULL, &s->db, reterr_msg);
        if (r < 0)
                return r;
        if (sqlite3_exec(s->db,
                         "CREATE TABLE IF NOT EXISTS configuration (key TEXT PRIMARY KEY NOT NULL, "
                         "value TEXT NOT NULL, version TEXT NOT NULL DEFAULT '', metadata TEXT NOT NULL DEFAULT '{}')",
                         NULL, NULL, NULL) != SQLITE_OK)
                return sqlite_fail(reterr_msg, -EIO, "connectionString: cannot create the table in '%s': %s",
                                   s->path, sqlite3_errmsg(s->db));
        s->queue = work_queue_new(s->base.event);
        if (!s->queue)
                return sqlite_fail(reterr_msg, -errno, "cannot start the worker thread: %m");
        return 0;
}

static void sqlite_close(ConfigStore *base) {
        SqliteConfig *s = (SqliteConfig *) base;
        s->closing = true;
        s->poll_timer = sd_event_source_disable_unref(s->poll_timer);
        /* pending jobs run and answer (gets and sets with their real outcome) before this returns */
        s->queue = work_queue_free(s->queue);
        while (s->watches)
                sqlite_unwatch(base, s->watches);
        json_decref(s->snapshot);
        if (s->db)
                sqlite3_close_v2(s->db);
        free(s->path);
}

const ConfigStoreDriver config_sqlite_driver = {
        .type = "configuration.sqlite",
        .abi = CONFIG_STORE_DRIVER_ABI,
        .instance_size = sizeof(SqliteConfig),
        .open = sqlite_open,
        .close = sqlite_close,
        .get = sqlite_get,
        .watch = sqlite_watch,
        .unwatch = sqlite_unwatch,
        .set = sqlite_set,
};
