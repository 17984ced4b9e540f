/* SPDX-License-Identifier: Apache-2.0 */
/*
 * secretstores.freedesktop.secretservice: the desktop's Secret Service
 * (GNOME Keyring, KeePassXC, KWallet's bridge) through libsecret, dlopen()ed
 * at the first open. For a `mooringd --user` on a desktop session: the
 * service lives on the session bus ($DBUS_SESSION_BUS_ADDRESS).
 *
 * Every call is a D-Bus round trip that can wait on the service (or on a
 * locked keyring), so the driver is .blocking: the block runs it on the
 * store's worker thread, never on the loop.
 *
 * A secret NAME is the item whose attribute nameAttribute (default "name")
 * is NAME, plus, when set, service=<service> and each of attributes
 * ("k=v,k2=v2"): `secret-tool store --label=L name db-password service
 * orders` makes one. Bulk lists the matching items that have nameAttribute.
 * Items are only read: a locked collection answers an error, never a prompt.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/component.h"
#include "../../util/cleanup.h"
#include "../../util/strv.h"
#include "../dl-libsecret.h"
#include "driver.h"

#define TYPE "secretstores.freedesktop.secretservice"
#define ATTRS_MAX 30  /* SecretSchema holds 32, one is the terminator */

typedef struct ServiceStore {
        SecretStore base;
        SecretSchema schema;   /* the attribute names we match on; DONT_MATCH_NAME: any item */
        char *name_attribute;
        char **match;          /* attribute, value pairs every item must have (service, attributes) */
} ServiceStore;

static unsigned n_open; /* loop thread: stores open, to drop libsecret's connection with the last */

static int add_match(ServiceStore *s, const char *k, const char *v, char **reterr_msg) {
        if (strv_length(s->match) / 2 + 1 >= ATTRS_MAX)
                return *reterr_msg = secret_msg("at most %d attributes", ATTRS_MAX - 1), -EINVAL;
        return strv_extend(&s->match, k) < 0 || strv_extend(&s->match, v) < 0 ? -ENOMEM : 0;
}

static int service_open(SecretStore *st, const Component *c, char **reterr_msg) {
        ServiceStore *s = (ServiceStore *) st;
        const char *service = component_get_string(c, "service");
        const char *attrs = component_get_string(c, "attributes");
        const char *na = component_get_string(c, "nameAttribute");
        size_t n = 0;
        int r;

        s->name_attribute = strdup(na && *na ? na : "name");
        if (!s->name_attribute)
                return -ENOMEM;
        if (service && *service && (r = add_match(s, "service", service, reterr_msg)) < 0)
                return r;
        if (attrs && *attrs) {
                _cleanup_free_ char *copy = strdup(attrs);
                char *save = NULL;
                if (!copy)
                        return -ENOMEM;
                for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                        char *eq = strchr(tok, '=');
                        if (!eq || eq == tok)
                                return *reterr_msg = secret_msg("metadata attributes must be name=value pairs "
                                                                "separated by ',', not '%s'", tok),
                                       -EINVAL;
                        *eq = 0;
                        if ((r = add_match(s, strstrip(tok), strstrip(eq + 1), reterr_msg)) < 0)
                                return r;
                }
        }
        for (char **p = s->match; p && p[0]; p += 2)
                if (streq(p[0], s->name_attribute))
                        return *reterr_msg = secret_msg("attribute '%s' names the secret; it cannot be matched "
                                                        "as well", p[0]),
                               -EINVAL;
        r = dlopen_libsecret(TYPE, reterr_msg);
        if (r < 0)
                return r;
        s->schema.name = "org.mooring.Secret";
        s->schema.flags = SECRET_SCHEMA_DONT_MATCH_NAME;
        s->schema.attributes[n++] = (SecretSchemaAttribute) { s->name_attribute, SECRET_SCHEMA_ATTRIBUTE_STRING };
        for (char **p = s->match; p && p[0]; p += 2)
                s->schema.attributes[n++] = (SecretSchemaAttribute) { p[0], SECRET_SCHEMA_ATTRIBUTE_STRING };
        n_open++;
        return 0;
}

static void service_close(SecretStore *st) {
        ServiceStore *s = (ServiceStore *) st;
        /* the worker thread is joined already: no call is in libsecret now */
        if (s->schema.name && --n_open == 0)
                sym_secret_service_disconnect();
        free(s->name_attribute);
        strv_free(s->match);
}

/* The attributes to match (values borrowed from s and name). */
static GHashTable *attributes(ServiceStore *s, const char *name) {
        GHashTable *h = sym_g_hash_table_new(sym_g_str_hash, sym_g_str_equal);
        if (name)
                sym_g_hash_table_insert(h, s->name_attribute, (char *) name);
        for (char **p = s->match; p && p[0]; p += 2)
                sym_g_hash_table_insert(h, p[0], p[1]);
        return h;
}

static int failed(GError *e, const char *what, char **reterr_msg) {
        /* GLib's messages name the bus, service or object: never a value */
        *reterr_msg = secret_msg("Secret Service: %s: %s", what, e->message);
        sym_g_error_free(e);
        return -EIO;
}

static int service_get(SecretStore *st, const char *name, char *const *metadata, SecretData *ret,
                       char **reterr_msg) {
        ServiceStore *s = (ServiceStore *) st;
        GHashTable *h = attributes(s, name);
        GError *e = NULL;
        gchar *pw = sym_secret_password_lookupv_sync(&s->schema, h, NULL, &e);
        int r;

        sym_g_hash_table_unref(h);
        if (e)
                return failed(e, "lookup", reterr_msg);
        if (!pw)
                return *reterr_msg = secret_msg("no item with %s=%s", s->name_attribute, name), -ENOENT;
        r = secret_data_add(ret, name, name, pw, strlen(pw));
        sym_secret_password_free(pw); /* wipes */
        return r;
}

static int service_bulk(SecretStore *st, char *const *metadata, SecretData *ret, char **reterr_msg) {
        ServiceStore *s = (ServiceStore *) st;
        GHashTable *h = attributes(s, NULL);
        GError *e = NULL;
        /* the values come with the search, in one GetSecrets round trip */
        GList *items = sym_secret_password_searchv_sync(&s->schema, h, SECRET_SEARCH_ALL | SECRET_SEARCH_LOAD_SECRETS,
                                                        NULL, &e);
        int r = 0;

        sym_g_hash_table_unref(h);
        if (e)
                return failed(e, "search", reterr_msg);
        for (GList *l = items; l && r >= 0; l = l->next) {
                SecretRetrievable *item = l->data;
                GHashTable *a = sym_secret_retrievable_get_attributes(item);
                const char *name = a ? sym_g_hash_table_lookup(a, s->name_attribute) : NULL;
                if (name && *name) {
                        SecretValue *v = sym_secret_retrievable_retrieve_secret_sync(item, NULL, &e);
                        if (e) {
                                r = failed(e, "reading an item", reterr_msg);
                                e = NULL;
                        } else if (v) {
                                gsize len = 0;
                                const gchar *text = sym_secret_value_get(v, &len);
                                r = secret_data_add(ret, name, name, text, len);
                                sym_secret_value_unref(v); /* libsecret wipes its copy */
                        }
                }
                if (a)
                        sym_g_hash_table_unref(a);
        }
        sym_g_list_free_full(items, sym_g_object_unref);
        return r;
}

const SecretDriver secret_secretservice_driver = {
        .type = TYPE,
        .abi = SECRET_DRIVER_ABI,
        .instance_size = sizeof(ServiceStore),
        .blocking = true,
        .open = service_open,
        .close = service_close,
        .get = service_get,
        .bulk = service_bulk,
};
