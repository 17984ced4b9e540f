/* SPDX-License-Identifier: Apache-2.0 */
#include <strings.h>

#include "json-util.h"

json_t *json_object_get_ci(const json_t *o, const char *key) {
        json_t *found = NULL, *v;
        const char *k;

        if (!json_is_object(o))
                return NULL;
        /* jansson keeps members in the order of the text: the last match is Go's winner. (Go also
         * folds a few non-ASCII letters, such as the Kelvin sign; those are not matched here.) */
        json_object_foreach ((json_t *) o, k, v)
                if (strcasecmp(k, key) == 0)
                        found = v;
        return found;
}
