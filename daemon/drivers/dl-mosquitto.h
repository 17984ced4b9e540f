/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libmosquitto, loaded at the first open() of a pubsub.mqtt3 component.
 *
 * Call sites use sym_<function>(), declared with the library's own prototype
 * (typeof), so the compiler checks every call against the header as if the
 * library were linked. The pointers are NULL until dlopen_mosquitto() has
 * succeeded, which each driver using them ensures first thing in its open().
 */
#pragma once

#include <mosquitto.h>

#include "../util/dlfcn-util.h"

extern DLSYM_PROTOTYPE(mosquitto_connack_string);
extern DLSYM_PROTOTYPE(mosquitto_connect_async);
extern DLSYM_PROTOTYPE(mosquitto_connect_with_flags_callback_set);
extern DLSYM_PROTOTYPE(mosquitto_destroy);
extern DLSYM_PROTOTYPE(mosquitto_disconnect);
extern DLSYM_PROTOTYPE(mosquitto_int_option);
extern DLSYM_PROTOTYPE(mosquitto_lib_cleanup);
extern DLSYM_PROTOTYPE(mosquitto_lib_init);
extern DLSYM_PROTOTYPE(mosquitto_loop_misc);
extern DLSYM_PROTOTYPE(mosquitto_loop_read);
extern DLSYM_PROTOTYPE(mosquitto_loop_write);
extern DLSYM_PROTOTYPE(mosquitto_message_callback_set);
extern DLSYM_PROTOTYPE(mosquitto_new);
extern DLSYM_PROTOTYPE(mosquitto_publish);
extern DLSYM_PROTOTYPE(mosquitto_publish_callback_set);
extern DLSYM_PROTOTYPE(mosquitto_socket);
extern DLSYM_PROTOTYPE(mosquitto_strerror);
extern DLSYM_PROTOTYPE(mosquitto_subscribe);
extern DLSYM_PROTOTYPE(mosquitto_subscribe_callback_set);
extern DLSYM_PROTOTYPE(mosquitto_sub_topic_check);
extern DLSYM_PROTOTYPE(mosquitto_threaded_set);
extern DLSYM_PROTOTYPE(mosquitto_topic_matches_sub);
extern DLSYM_PROTOTYPE(mosquitto_username_pw_set);
extern DLSYM_PROTOTYPE(mosquitto_validate_utf8);
extern DLSYM_PROTOTYPE(mosquitto_want_write);

/*
 * Loads the library the first time (see dl_engine_load()); who is the
 * component type asking, for the error message. Returns 0, -EOPNOTSUPP with
 * *reterr_msg set, or -ENOMEM.
 */
int dlopen_mosquitto(const char *who, char **reterr_msg);
