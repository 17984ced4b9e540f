#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The include graph points down (STYLE.md section 1): nothing under blocks/,
# core/, drivers/ or transport/ includes manager.h, so no include path can go
# through the Manager and back; blocks/ stay protocol-free, so they include no
# HTTP server, HTTP/2, libcurl or sd-bus header. Prints every offending line
# and fails if there is one. Usage: check-includes.sh <daemon dir>
set -eu
daemon=${1:?usage: check-includes.sh DAEMON_DIR}
[ -d "$daemon/blocks" ] || { echo "no $daemon/blocks" >&2; exit 2; }
bad=0

# #include "…manager.h" (any relative spelling) below the Manager.
if grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^">]*/)?manager\.h[">]' \
        -r --include='*.c' --include='*.h' \
        "$daemon/blocks" "$daemon/core" "$daemon/drivers" "$daemon/transport"; then
        echo "error: the lines above include manager.h below the Manager (take the Registry instead)" >&2
        bad=1
fi

# Blocks translate nothing: no front-end or client library headers.
if grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](microhttpd\.h|nghttp2/[^">]*|curl/[^">]*|systemd/sd-bus[^">]*|([^">]*/)?(http|dbus|grpc)/[^">]*)[">]' \
        -r --include='*.c' --include='*.h' "$daemon/blocks"; then
        echo "error: the lines above include a front-end or protocol header in a block" >&2
        bad=1
fi

exit $bad
