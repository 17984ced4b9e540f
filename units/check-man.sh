#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Formats each man page given with groff (-man -ww, all warnings) and fails
# if groff reports anything. Run by meson in the suite 'units' for docs/.
# Exit 77 (skipped) when groff is not installed.

set -u

if ! command -v groff >/dev/null 2>&1; then
        echo "groff not found, skipping" >&2
        exit 77
fi

[ $# -gt 0 ] || { echo "usage: $0 PAGE..." >&2; exit 2; }

bad=0
for page in "$@"; do
        out=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>&1)
        rc=$?
        if [ $rc -ne 0 ] || [ -n "$out" ]; then
                printf '%s\n' "$out"
                echo "FAIL: $page (groff exit $rc)" >&2
                bad=1
        else
                echo "OK: $page"
        fi
done
exit $bad
