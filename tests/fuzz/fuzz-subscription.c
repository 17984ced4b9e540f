/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes core/subscription.c. The input is read as a Subscription YAML file
 * (subscription_load_yaml) and as a /dapr/subscribe answer
 * (subscription_parse_programmatic); every subscription found is routed with
 * a few fixed events and with none, and its promises checked (pubsub and
 * topic set, paths start with '/', a route is one of its paths). Each of the
 * input's first lines is also compiled as a match expression and evaluated.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/cloudevent.h"
#include "core/conferr.h"
#include "core/subscription.h"
#include "fuzz.h"

static const char *const events[] = {
        "{\"id\":\"1\",\"type\":\"order\",\"source\":\"shop\",\"specversion\":\"1.0\",\"topic\":\"orders\","
        "\"data\":{\"amount\":150,\"price\":19.99,\"ok\":true,\"none\":null,\"tags\":[\"a\",\"b\"],"
        "\"nested\":{\"x\":{\"y\":\"z\"}},\"my-key\":\"v\",\"s\":\"a\\u0000b\"}}",
        "{\"type\":\"widget\",\"data\":\"text\",\"big\":123456789012345678901234567890}",
        "{}",
};

static void check_subscription(const Subscription *s, json_t **evs, size_t n_evs) {
        if (!s->pubsub || !*s->pubsub || !s->topic || !*s->topic || (s->n_rules == 0 && !s->default_path))
                abort();
        if (s->default_path && s->default_path[0] != '/')
                abort();
        for (size_t i = 0; i < s->n_rules; i++)
                if (!s->rules[i].match || !s->rules[i].path || s->rules[i].path[0] != '/')
                        abort();
        for (size_t i = 0; i <= n_evs; i++) {
                const char *p = subscription_route(s, i < n_evs ? evs[i] : NULL);
                bool found = p && p == s->default_path;
                for (size_t j = 0; p && j < s->n_rules && !found; j++)
                        found = p == s->rules[j].path;
                if (p && !found)
                        abort();
        }
        (void) subscription_in_scope(s, "app");
        (void) subscription_in_scope(s, NULL);
        (void) subscription_get_metadata(s, "rawPayload");
}

typedef struct {
        json_t **evs;
        size_t n_evs;
} Ctx;

static void on_sub(Subscription *s, void *ud) {
        Ctx *c = ud;
        if (!s->declarative || !s->file)
                abort();
        check_subscription(s, c->evs, c->n_evs);
        subscription_free(s);
}

static void on_error(const ConfError *e, void *ud) {
        if (!e->message)
                abort();
        free(conf_error_format(e));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_t *evs[ELEMENTSOF(events)];
        Ctx ctx = { .evs = evs, .n_evs = ELEMENTSOF(events) };
        Subscription **l = NULL;
        size_t n = 0, skipped = 0;
        char *err = NULL;
        int r;

        if (size > 256 * 1024)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(events); i++) {
                evs[i] = cloudevent_parse(events[i], strlen(events[i]));
                if (!evs[i])
                        abort();
        }

        r = subscription_load_yaml("fuzz.yaml", (const char *) data, size, on_sub, on_error, &ctx);
        if (r < 0 && r != -ENOMEM)
                abort();

        r = subscription_parse_programmatic((const char *) data, size, &l, &n, &skipped, &err);
        if (r >= 0) {
                if ((n == 0) != (l == NULL) || (skipped > 0) != (err != NULL))
                        abort();
                for (size_t i = 0; i < n; i++) {
                        if (l[i]->declarative || l[i]->file)
                                abort();
                        check_subscription(l[i], evs, ELEMENTSOF(events));
                }
                subscription_free_many(l, n);
        } else if (r != -ENOMEM && !(r == -EINVAL && err))
                abort();
        free(err);

        /* The first lines as match expressions. */
        const char *p = (const char *) data, *end = p + size;
        for (int line = 0; line < 8 && p < end; line++) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t k = nl ? (size_t) (nl - p) : (size_t) (end - p);
                char *text = strndup(p, k);
                MatchExpr *e = NULL;
                err = NULL;
                if (!text)
                        break;
                r = match_expr_compile(text, &e, &err);
                if (r >= 0) {
                        if (err)
                                abort();
                        for (size_t i = 0; i < ELEMENTSOF(events); i++)
                                (void) match_expr_eval(e, evs[i]);
                        (void) match_expr_eval(e, NULL);
                        match_expr_free(e);
                } else if (e || (r == -EINVAL && !err))
                        abort();
                free(err);
                free(text);
                p += k + 1;
        }

        for (size_t i = 0; i < ELEMENTSOF(events); i++)
                json_decref(evs[i]);
        return 0;
}
