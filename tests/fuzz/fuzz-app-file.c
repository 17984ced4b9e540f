/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the INI-based loaders: app_config_parse() (core/app-config.c) with
 * the id "fuzz", and settings_parse() (core/settings.c) on the same bytes.
 * Also checks the promise that a failed settings parse leaves the previous
 * settings untouched.
 */
#include <stdlib.h>
#include <string.h>

#include "core/app-config.h"
#include "core/conferr.h"
#include "core/settings.h"
#include "fuzz.h"

static void consume_error(ConfError *e) {
        free(conf_error_format(e));
        conf_error_done(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *text = (const char *) data;
        AppConfig *c = NULL;
        ConfError e = {};
        Settings s;

        if (size > 1024 * 1024)
                return 0;

        if (app_config_parse("fuzz", "fuzz.conf", text, size, &c, &e) >= 0) {
                if (!c || !app_config_equal(c, c) || !app_config_same_listeners(c, c))
                        abort();
                app_config_free(c);
        }
        consume_error(&e);

        settings_init(&s);
        s.api_socket = strdup("previous.sock");
        if (!s.api_socket)
                return 0;
        char *before = s.api_socket;
        if (settings_parse(&s, "fuzz.conf", text, size, &e) < 0 && s.api_socket != before)
                abort();
        settings_done(&s);
        consume_error(&e);
        return 0;
}
