/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the host records of cluster membership (core/membership.c), which
 * arrive from other hosts through Redis, PostgreSQL, the peer transport or
 * DNS-SD. Promises checked: a record either parses or is refused whole; a
 * parsed one has a valid id and sorted, unique, valid names; and what it
 * prints parses again to the same record.
 */
#include <stdlib.h>
#include <string.h>

#include "core/membership.h"
#include "fuzz.h"
#include "util/strv.h"

static void check_names(char *const *l) {
        if (!l)
                abort();
        for (size_t i = 0; l[i]; i++) {
                if (!member_name_is_valid(l[i]))
                        abort();
                if (i > 0 && strcmp(l[i - 1], l[i]) >= 0)
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        MemberRecord r = {}, again = {};
        char *text;

        if (member_record_parse((const char *) data, size, &r) < 0)
                return 0;
        if (!member_id_is_valid(r.id) || !r.address)
                abort();
        check_names(r.apps);
        check_names(r.actor_types);
        text = member_record_to_json(&r);
        if (text) {
                if (member_record_parse(text, strlen(text), &again) < 0 || strcmp(again.id, r.id) != 0 ||
                    strcmp(again.address, r.address) != 0 || !strv_equal(again.apps, r.apps) ||
                    !strv_equal(again.actor_types, r.actor_types) || again.generation != r.generation)
                        abort();
                member_record_done(&again);
                free(text);
        }
        member_record_done(&r);
        return 0;
}
