#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Checks for the shipped systemd units, run by meson (suite 'units').
#
#   test-units.sh verify FILE...
#       Copies each FILE into a fresh directory under its unit name (a
#       trailing ".verify" is dropped; meson generates those copies with
#       ExecStart= pointing at the build tree) and runs `systemd-analyze
#       verify` on them. Fails if systemd-analyze fails OR prints any
#       diagnostic about one of our units: unknown keys and unparsable values
#       are only warnings to systemd-analyze (exit 0), but they are bugs here.
#       Messages about other units or the host (a container without systemd
#       as PID 1) are shown and otherwise ignored.
#
#   test-units.sh security FILE MAX
#       Runs `systemd-analyze security --offline=true` on FILE and fails if
#       the overall exposure is above MAX (e.g. 2.5).
#
# Exit 77 (skipped) only when systemd-analyze is not installed.

set -u

if ! command -v systemd-analyze >/dev/null 2>&1; then
        echo "systemd-analyze not found, skipping" >&2
        exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mooring-units.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

cmd=${1:-}
[ $# -gt 0 ] && shift

case "$cmd" in
verify)
        [ $# -gt 0 ] || { echo "usage: $0 verify FILE..." >&2; exit 2; }
        units=""
        names=""
        for f in "$@"; do
                name=$(basename "$f" .verify)
                cp "$f" "$tmp/$name" || exit 1
                units="$units $tmp/$name"
                names="$names $name"
        done

        # systemd-analyze reports template units under a test instance
        # name (mooring-app@i.service), so match those too.
        # shellcheck disable=SC2086
        out=$(systemd-analyze verify --man=no $units 2>&1)
        rc=$?
        [ -n "$out" ] && printf '%s\n' "$out"

        bad=0
        if [ $rc -ne 0 ]; then
                echo "FAIL: systemd-analyze verify exited with $rc" >&2
                bad=1
        fi
        # Diagnostics look like "/path/unit:LINE: message" or "unit: message".
        for name in $names; do
                prefix=${name%%@*}
                case "$name" in
                *@*) pattern="^$prefix@[^:]*:" ;;
                *)   pattern="^$name:" ;;
                esac
                if printf '%s\n' "$out" | grep -qF "$tmp/$name:" ||
                   printf '%s\n' "$out" | grep -q "$pattern"; then
                        echo "FAIL: systemd-analyze verify reported problems in $name" >&2
                        bad=1
                fi
        done
        [ $bad -eq 0 ] && echo "OK:$names"
        exit $bad
        ;;
security)
        [ $# -eq 2 ] || { echo "usage: $0 security FILE MAX" >&2; exit 2; }
        file=$1
        max=$2
        name=$(basename "$file" .verify)
        cp "$file" "$tmp/$name" || exit 1

        out=$(systemd-analyze security --offline=true --no-pager "$tmp/$name" 2>&1)
        rc=$?
        printf '%s\n' "$out"
        if [ $rc -ne 0 ]; then
                echo "FAIL: systemd-analyze security exited with $rc" >&2
                exit 1
        fi

        level=$(printf '%s\n' "$out" |
                sed -n 's/.*Overall exposure level for [^:]*: *\([0-9][0-9.]*\).*/\1/p' |
                tail -n 1)
        if [ -z "$level" ]; then
                echo "FAIL: no overall exposure level in the output" >&2
                exit 1
        fi
        if ! awk -v l="$level" -v m="$max" 'BEGIN { exit !(l + 0 <= m + 0) }'; then
                echo "FAIL: exposure of $name is $level, above $max" >&2
                exit 1
        fi
        echo "OK: exposure of $name is $level (at most $max)"
        exit 0
        ;;
*)
        echo "usage: $0 verify FILE... | security FILE MAX" >&2
        exit 2
        ;;
esac
