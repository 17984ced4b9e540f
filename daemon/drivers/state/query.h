/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dapr's state query (the QUERY_API capability) as the state drivers see it:
 * a parsed, engine-neutral tree (blocks/state-query.c builds it from the
 * query body; drivers translate it to their engine's language with bound
 * parameters only, never by pasting input into SQL).
 *
 * Semantics every driver follows (the conformance suite pins them):
 * - A field path ("a.b") names a member of the item's JSON value; an item
 *   whose value is not JSON, or lacks the member, has no value there.
 * - EQ compares with JSON's types: a string matches only that string, a
 *   number only an equal number (1 and 1.0 are equal), true/false only that
 *   boolean, null only a missing or null member. IN is EQ with any of its
 *   values. AND/OR combine two or more filters.
 * - Sorting is by the field's JSON value, missing last in ascending order,
 *   numbers numerically, strings by their bytes; the key is the final
 *   tie-breaker, so pages are stable.
 * - Expired items are never returned.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "driver.h"

typedef enum StateQueryOp {
        STATE_QUERY_EQ,
        STATE_QUERY_IN,
        STATE_QUERY_AND,
        STATE_QUERY_OR,
} StateQueryOp;

typedef enum StateQueryValueType {
        STATE_QUERY_NULL,
        STATE_QUERY_STRING,
        STATE_QUERY_INTEGER,
        STATE_QUERY_REAL,
        STATE_QUERY_BOOL,
} StateQueryValueType;

typedef struct StateQueryValue {
        StateQueryValueType type;
        char *string;          /* STRING: UTF-8, no NUL inside */
        int64_t integer;       /* INTEGER; BOOL: 0 or 1 */
        double real;           /* REAL */
        char *json;            /* the value as compact JSON text (every type) */
} StateQueryValue;

typedef struct StateQueryFilter StateQueryFilter;
struct StateQueryFilter {
        StateQueryOp op;
        char **path;                   /* EQ, IN: the member names, NULL-terminated, none empty */
        StateQueryValue *values;       /* EQ: 1, IN: n_values (>= 1) */
        size_t n_values;
        StateQueryFilter *children;    /* AND, OR: n_children (>= 2) */
        size_t n_children;
};

typedef struct StateQuerySort {
        char **path;
        bool descending;
} StateQuerySort;

struct StateQuery {
        StateQueryFilter *filter;      /* NULL: every item */
        StateQuerySort *sort;
        size_t n_sort;
        uint64_t limit;                /* 0: no limit */
        uint64_t offset;               /* from the page token */
        char *key_prefix;              /* only keys starting with it (the caller's "app||"); NULL: all */
};

typedef struct StateQueryItem {
        char *key;                     /* the stored key (scoped) */
        void *value;                   /* value_len bytes plus a NUL not counted */
        size_t value_len;
        char *etag;                    /* NULL if the engine has none */
} StateQueryItem;

struct StateQueryResult {
        int error;                     /* 0 or a negative errno */
        char *message;
        StateQueryItem *items;
        size_t n_items;
};

void state_query_result_done(StateQueryResult *r);
/* Sets r->error and r->message (formatted). Returns error. */
int state_query_fail(StateQueryResult *r, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Appends a copy of key/value/etag to r->items. -ENOMEM. */
int state_query_result_add(StateQueryResult *r, const char *key, const void *value, size_t value_len,
                           const char *etag);

/*
 * The JSON path text of SQLite's json_extract() for path ('$."a"."b"'), malloc'd.
 * Members are quoted; a member containing '"' is refused when the query is parsed.
 */
char *state_query_sqlite_path(char *const *path);
