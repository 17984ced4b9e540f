/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The symbol table behind dl-mosquitto.h. Add a function here and in the header
 * when a driver starts calling it: a missing entry fails the build (the
 * sym_ pointer is undeclared), never the daemon at run time.
 */
#include "../util/cleanup.h"
#include "dl-engine.h"
#include "dl-mosquitto.h"

DLSYM_PROTOTYPE(mosquitto_connack_string) = NULL;
DLSYM_PROTOTYPE(mosquitto_connect_async) = NULL;
DLSYM_PROTOTYPE(mosquitto_connect_with_flags_callback_set) = NULL;
DLSYM_PROTOTYPE(mosquitto_destroy) = NULL;
DLSYM_PROTOTYPE(mosquitto_disconnect) = NULL;
DLSYM_PROTOTYPE(mosquitto_int_option) = NULL;
DLSYM_PROTOTYPE(mosquitto_lib_cleanup) = NULL;
DLSYM_PROTOTYPE(mosquitto_lib_init) = NULL;
DLSYM_PROTOTYPE(mosquitto_loop_misc) = NULL;
DLSYM_PROTOTYPE(mosquitto_loop_read) = NULL;
DLSYM_PROTOTYPE(mosquitto_loop_write) = NULL;
DLSYM_PROTOTYPE(mosquitto_message_callback_set) = NULL;
DLSYM_PROTOTYPE(mosquitto_new) = NULL;
DLSYM_PROTOTYPE(mosquitto_publish) = NULL;
DLSYM_PROTOTYPE(mosquitto_publish_callback_set) = NULL;
DLSYM_PROTOTYPE(mosquitto_socket) = NULL;
DLSYM_PROTOTYPE(mosquitto_strerror) = NULL;
DLSYM_PROTOTYPE(mosquitto_subscribe) = NULL;
DLSYM_PROTOTYPE(mosquitto_subscribe_callback_set) = NULL;
DLSYM_PROTOTYPE(mosquitto_sub_topic_check) = NULL;
DLSYM_PROTOTYPE(mosquitto_threaded_set) = NULL;
DLSYM_PROTOTYPE(mosquitto_topic_matches_sub) = NULL;
DLSYM_PROTOTYPE(mosquitto_username_pw_set) = NULL;
DLSYM_PROTOTYPE(mosquitto_validate_utf8) = NULL;
DLSYM_PROTOTYPE(mosquitto_want_write) = NULL;

static const DlSym mosquitto_syms[] = {
        DLSYM(mosquitto_connack_string),
        DLSYM(mosquitto_connect_async),
        DLSYM(mosquitto_connect_with_flags_callback_set),
        DLSYM(mosquitto_destroy),
        DLSYM(mosquitto_disconnect),
        DLSYM(mosquitto_int_option),
        DLSYM(mosquitto_lib_cleanup),
        DLSYM(mosquitto_lib_init),
        DLSYM(mosquitto_loop_misc),
        DLSYM(mosquitto_loop_read),
        DLSYM(mosquitto_loop_write),
        DLSYM(mosquitto_message_callback_set),
        DLSYM(mosquitto_new),
        DLSYM(mosquitto_publish),
        DLSYM(mosquitto_publish_callback_set),
        DLSYM(mosquitto_socket),
        DLSYM(mosquitto_strerror),
        DLSYM(mosquitto_subscribe),
        DLSYM(mosquitto_subscribe_callback_set),
        DLSYM(mosquitto_sub_topic_check),
        DLSYM(mosquitto_threaded_set),
        DLSYM(mosquitto_topic_matches_sub),
        DLSYM(mosquitto_username_pw_set),
        DLSYM(mosquitto_validate_utf8),
        DLSYM(mosquitto_want_write),
};

static DlEngine mosquitto_engine = {
        .soname = DLOPEN_LIBMOSQUITTO_SONAME,
        .package = DLOPEN_LIBMOSQUITTO_PACKAGE,
        .syms = mosquitto_syms,
        .n_syms = ELEMENTSOF(mosquitto_syms),
};

int dlopen_mosquitto(const char *who, char **reterr_msg) {
        return dl_engine_load(&mosquitto_engine, who, reterr_msg);
}
