#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The two set-up commands of the README, for a fresh Debian 12 machine:
#
#   ./dev.sh run    install build dependencies, build, run mooringd in the
#                   foreground on the development config in data/dev
#                   (no root needed to run; sockets under $XDG_RUNTIME_DIR
#                   or .dev/ in the checkout; one demo app registered)
#   ./dev.sh test   install build and test dependencies, build with
#                   ASan+UBSan, run the whole test suite; the last line is
#                   "tests: N passed, N failed"
#
# Dependencies are installed with apt-get (through sudo when not root) only
# when something is missing.
set -euo pipefail
cd "$(dirname "$0")"

# binutils: meson reads the engines' sonames with readelf (they are dlopen()ed).
BUILD_DEPS=(meson ninja-build gcc binutils pkg-config libsystemd-dev libhttp-parser-dev libcurl4-openssl-dev
            libyaml-dev libjansson-dev libsqlite3-dev libpq-dev libhiredis-dev libmosquitto-dev python3)
# systemd-socket-activate, systemd-analyze and busctl come with systemd;
# util-linux has setpriv and runuser (clients as another uid), prlimit (fd
# limits) and unshare (a private mount namespace for the journal test), mount
# the mounts in it; gdbus (libglib2.0-bin) shows D-Bus error names; the state
# and pub/sub drivers' tests start real PostgreSQL, Redis and Mosquitto servers
# on loopback/Unix sockets; prometheus (with promtool) scrapes the daemon in the metrics test;
# openssl makes the certificates of the TLS tests.
TEST_DEPS=(systemd dbus-daemon curl groff-base gettext polkitd util-linux mount libglib2.0-bin
           clang libclang-rt-14-dev python3-dbus python3-gi postgresql redis-server redis-tools mosquitto
           prometheus openssl)

install_deps() {
        local missing=()
        for p in "$@"; do
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
        done
        [ ${#missing[@]} -eq 0 ] && return 0
        echo "Installing: ${missing[*]}" >&2
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

cmd_run() {
        install_deps "${BUILD_DEPS[@]}" dbus-daemon curl
        [ -d build-dev ] || meson setup build-dev >/dev/null
        ninja -C build-dev
        local rt="${XDG_RUNTIME_DIR:-}"
        if [ -z "$rt" ] || [ ! -w "$rt" ]; then rt="$PWD/.dev/run"; fi
        local runtime="$rt/mooring-dev" state="$PWD/.dev/state"
        mkdir -p "$runtime" "$state"
        local args=(--config-dir "$PWD/data/dev" --state-dir "$state" --runtime-dir "$runtime" --bus=session)
        cat >&2 <<TXT
mooringd (development config: data/dev) — try, in another shell:
  curl -i --unix-socket $runtime/mooringd.sock http://localhost/v1.0/healthz
  curl -s --unix-socket $runtime/apps/demo/http.sock http://localhost/v1.0/metadata
  curl -s http://127.0.0.1:3500/v1.0/metadata
TXT
        if [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
                echo "  busctl --user introspect org.mooring.Runtime1 /org/mooring/Runtime1" >&2
                echo "  build-dev/clients/mooringctl --user apps" >&2
                exec build-dev/daemon/mooringd "${args[@]}"
        fi
        # No session bus (ssh, container): start one for the daemon's lifetime.
        echo "  (no session bus: a private one is started; see its address in the log below)" >&2
        exec dbus-run-session -- sh -c 'echo "DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS" >&2; exec "$@"' \
                sh build-dev/daemon/mooringd "${args[@]}"
}

cmd_test() {
        install_deps "${BUILD_DEPS[@]}" "${TEST_DEPS[@]}"
        if [ ! -d build-test ]; then
                meson setup build-test -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
        fi
        ninja -C build-test
        local rc=0
        meson test -C build-test --print-errorlogs --num-processes 2 "$@" || rc=$?
        # meson's own summary is in testlog.json: count the results for the closing line.
        python3 - build-test/meson-logs/testlog.json <<'PY'
import json, sys
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif r == "SKIP":
        skipped += 1
    else:
        failed += 1
print(f"tests: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PY
        return $rc
}

case "${1:-}" in
        deps) install_deps "${BUILD_DEPS[@]}" "${TEST_DEPS[@]}" ;;
        run) shift; cmd_run "$@" ;;
        test) shift; cmd_test "$@" ;;
        *) echo "usage: $0 run|test|deps [meson test arguments]" >&2; exit 2 ;;
esac
