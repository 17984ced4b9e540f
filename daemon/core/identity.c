/* SPDX-License-Identifier: Apache-2.0 */
/* See identity.h. */
#include <stdlib.h>
#include <string.h>

#include "../util/strv.h"
#include "identity.h"

bool identity_app_from_unit(const char *unit, char **ret_id) {
        const char *p = unit ? startswith_ptr(unit, "mooring-app@") : NULL;
        char *id;

        if (!p || !endswith(p, ".service"))
                return false;
        id = strndup(p, strlen(p) - strlen(".service"));
        if (!id)
                return false;
        if (!name_is_valid(id)) {
                free(id);
                return false;
        }
        if (ret_id)
                *ret_id = id;
        else
                free(id);
        return true;
}
