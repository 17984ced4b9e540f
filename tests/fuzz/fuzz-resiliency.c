/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes resiliency_parse() (core/resiliency.c): arbitrary bytes as a file of
 * Resiliency documents. Every good document joins a set that is then used as
 * the daemon uses it: lookups for every target (and a name no target has, for
 * the Default*Policy names), breakers driven through failures and successes,
 * retry schedules. The same bytes are also read as a trip expression and a
 * duration, the two small grammars of the document.
 */
#include <stdlib.h>
#include <string.h>

#include "core/conferr.h"
#include "core/resiliency.h"
#include "fuzz.h"

static void found(ResiliencyDoc *d, void *userdata) {
        Resiliency *set = userdata;
        (void) resiliency_add(set, d);
}

static void error(const ConfError *e, void *userdata) {
        free(conf_error_format(e));
}

static void exercise(Resiliency *set, const char *caller, ResiliencyKind kind, const char *name) {
        ResiliencyPolicy p;
        uint64_t now = 1000000, gen = 0, delay;
        const char *msg;

        if (resiliency_lookup(set, caller, kind, name, "Statestore", &p) <= 0)
                return;
        for (unsigned i = 1; i < 4; i++)
                (void) resiliency_retry_next(p.retry, i, i * 1000, &delay);
        for (unsigned i = 0; p.breaker && i < 12; i++) {
                now += 700000;
                if (resiliency_breaker_allow(p.breaker, now, &gen, &msg) >= 0)
                        resiliency_breaker_report(p.breaker, gen, i % 3 == 2, now);
                (void) breaker_state_to_string(resiliency_breaker_state(p.breaker, now));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Resiliency *set;
        int r;

        /* The loader refuses files over 1 MiB before parsing; stay in that range. */
        if (size > 1024 * 1024)
                return 0;
        set = resiliency_new();
        if (!set)
                return 0;
        r = resiliency_parse("fuzz.yaml", (const char *) data, size, found, error, set);
        if (r >= 0 && (size_t) r != set->n_docs)
                abort(); /* the count returned must match what was handed out */
        for (size_t i = 0; i < set->n_docs; i++)
                for (size_t j = 0; j < set->docs[i]->n_targets; j++) {
                        const ResiliencyTarget *t = &set->docs[i]->targets[j];
                        exercise(set, "fuzz", t->kind, t->name);
                        exercise(set, NULL, t->kind, t->name);
                }
        for (int k = 0; k < _RESILIENCY_KIND_MAX; k++)
                exercise(set, "fuzz", (ResiliencyKind) k, "no-such-target");
        resiliency_unref(set);

        if (size < 256) {
                char s[256];
                TripExpr e;
                uint64_t counts[_TRIP_VAR_MAX] = { 7, 3, 4, 1, 2 }, usec;
                const char *msg;
                memcpy(s, data, size);
                s[size] = 0;
                if (resiliency_parse_trip(s, &e, &msg) >= 0)
                        (void) resiliency_trip_eval(&e, counts);
                (void) resiliency_parse_duration(s, &usec);
        }
        return 0;
}
