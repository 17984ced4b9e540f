#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/soak.sh - mixed, partly hostile traffic against one mooringd for a
# long time (default 10 minutes): state saves and gets on the built-in SQLite
# store, invocations of an echo app, publishes delivered to a subscribing
# app (built-in pubsub.sqlite), 1,000 mostly idle keep-alive connections,
# and a client that opens connections and goes away mid-request, all at
# once.  Every --sample seconds it prints the daemon's VmRSS, RssAnon and
# open fds, and the requests and 5xx answers of each kind of traffic in that
# interval.  At the end it decides: memory and fds flat after the warm-up,
# no 5xx, no wrong or missing answer, every published message delivered.
#
# Usage: bench/soak.sh [--mooringd PATH] [--duration SEC] [--sample SEC] [--warmup SEC]
#                      [--state-rate R] [--invoke-rate R] [--publish-rate R]
#                      [--abort-rate R] [--connections C] [--idle N] [--idle-interval S]
#                      [--rss-tolerance PCT] [--rss-slack KIB] [--fd-tolerance N]
#                      [--drain S] [--echo-app PATH] [--pubsub-sub PATH]
#                      [--soak-load PATH] [--keep]
#
# The rule (also printed): the baseline is the first sample taken at or
# after --warmup seconds of load.  Every later sample, the end one included,
# must have VmRSS and RssAnon <= baseline + max(PCT% of baseline, KIB), and
# open fds <= baseline fds + N.  Everything runs on 127.0.0.1 and on Unix
# sockets in a temporary directory; every process started here is stopped
# on exit (including on failure or Ctrl-C).  See bench/README.md.

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
# shellcheck source=bench/lib.sh
. "$script_dir/lib.sh"

mooringd=${MOORINGD:-$repo_root/build/daemon/mooringd}
echo_app=${ECHO_APP:-}
pubsub_sub=${PUBSUB_SUB:-}
soak_load=${SOAK_LOAD:-}
duration=600
sample=60
warmup=60
state_rate=200          # state requests/s (half saves, half gets)
invoke_rate=200         # invocations/s
publish_rate=50         # publishes/s
abort_rate=20           # aborted connections/s
connections=8           # keep-alive connections of each paced client, and aborting connections at once
idle=1000               # mostly idle keep-alive connections
idle_interval=30        # seconds between two healthz requests on each idle connection
rss_tol_pct=10
rss_slack_kib=2048
fd_tol=32
drain=60                # seconds to wait for the last deliveries
keep=0
ready_timeout=10
stop_timeout=15
active_timeout=30       # seconds for the subscription to deliver a warm-up message

usage() {
        cat <<EOF
usage: bench/soak.sh [options]
  --mooringd PATH        daemon binary (default: \$MOORINGD or build/daemon/mooringd)
  --duration SEC         length of the load (default: $duration)
  --sample SEC           print a sample every SEC seconds (default: $sample)
  --warmup SEC           the baseline is the first sample at or after SEC s of load (default: $warmup)
  --state-rate R         state requests/s, saves and gets alternately (default: $state_rate)
  --invoke-rate R        invocations/s of the echo app (default: $invoke_rate)
  --publish-rate R       publishes/s to the subscribed topic (default: $publish_rate)
  --abort-rate R         connections/s that go away mid-request (default: $abort_rate)
  --connections C        keep-alive connections per paced client, and aborting connections at once (default: $connections)
  --idle N               mostly idle keep-alive connections held open (default: $idle)
  --idle-interval S      seconds between two healthz on each idle connection (default: $idle_interval)
  --rss-tolerance PCT    VmRSS/RssAnon may exceed the baseline by PCT% ... (default: $rss_tol_pct)
  --rss-slack KIB        ... or by KIB KiB, whichever is larger (default: $rss_slack_kib)
  --fd-tolerance N       open fds may exceed the baseline by N (default: $fd_tol)
  --drain S              wait at most S s after the load for the last deliveries (default: $drain)
  --echo-app PATH        the invoked app (default: \$ECHO_APP, else bench/echo-app next to the
                         daemon's build dir, else compiled from bench/echo-app.c)
  --pubsub-sub PATH      the subscribing app (default: \$PUBSUB_SUB, else found or compiled the same way)
  --soak-load PATH       the load generator (default: \$SOAK_LOAD, else found or compiled the same way)
  --keep                 keep the temporary directory (configs, logs, counters)
EOF
}

posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer"; }

while [ $# -gt 0 ]; do
        opt=$1
        case $opt in
        -h|--help) usage; exit 0 ;;
        --keep) keep=1; shift; continue ;;
        --*=*) val=${opt#*=}; opt=${opt%%=*}; shift ;;
        --*) [ $# -ge 2 ] || die "$opt needs a value"; val=$2; shift 2 ;;
        *) usage >&2; die "unknown argument: $opt" ;;
        esac
        case $opt in
        --mooringd) mooringd=$val ;;
        --duration) posint "$opt" "$val"; duration=$val ;;
        --sample) posint "$opt" "$val"; sample=$val ;;
        --warmup) [[ $val =~ ^[0-9]+$ ]] || die "--warmup must be a number of seconds"; warmup=$val ;;
        --state-rate) posint "$opt" "$val"; state_rate=$val ;;
        --invoke-rate) posint "$opt" "$val"; invoke_rate=$val ;;
        --publish-rate) posint "$opt" "$val"; publish_rate=$val ;;
        --abort-rate) posint "$opt" "$val"; abort_rate=$val ;;
        --connections) posint "$opt" "$val"; connections=$val ;;
        --idle) posint "$opt" "$val"; idle=$val ;;
        --idle-interval) posint "$opt" "$val"; idle_interval=$val ;;
        --rss-tolerance) [[ $val =~ ^[0-9]+$ ]] || die "--rss-tolerance must be a whole percentage"; rss_tol_pct=$val ;;
        --rss-slack) [[ $val =~ ^[0-9]+$ ]] || die "--rss-slack must be KiB"; rss_slack_kib=$val ;;
        --fd-tolerance) [[ $val =~ ^[0-9]+$ ]] || die "--fd-tolerance must be a count"; fd_tol=$val ;;
        --drain) posint "$opt" "$val"; drain=$val ;;
        --echo-app) echo_app=$val ;;
        --pubsub-sub) pubsub_sub=$val ;;
        --soak-load) soak_load=$val ;;
        *) usage >&2; die "unknown option: $opt" ;;
        esac
done

# ---------------------------------------------------------------- tools, state & cleanup

require_tools curl python3 timeout awk
check_mooringd_binary

echo_pid=
sub_pid=
declare -A load_pid=()
kinds=(state invoke publish idle abort)

# called by cleanup (bench/lib.sh) after mooringd is stopped: the loaders
# (normally gone by then) and the two apps
stop_servers() {
        local k
        for k in "${!load_pid[@]}"; do
                stop_pid "${load_pid[$k]}" "soak-load $k" 5 >/dev/null 2>&1
        done
        load_pid=()
        [ -z "$echo_pid" ] || stop_pid "$echo_pid" echo-app 5 >/dev/null 2>&1
        [ -z "$sub_pid" ] || stop_pid "$sub_pid" pubsub-sub 5 >/dev/null 2>&1
        echo_pid=
        sub_pid=
}
make_tmp mooring-soak

echo_app=$(find_helper echo-app "$echo_app")
pubsub_sub=$(find_helper pubsub-sub "$pubsub_sub")
soak_load=$(find_helper soak-load "$soak_load")

# ---------------------------------------------------------------- setup

mkdir -p "$tmp/config/apps.d" "$tmp/state" "$tmp/runtime" "$tmp/out"
read -r echo_port sub_port load_port idle_port < <(free_ports 4)
api_sock=$tmp/runtime/mooringd.sock
load_sock=$tmp/runtime/apps/load/http.sock

# The idle connections get a listener of their own (the app "idle"), so that
# they never count against the per-listener limit of the app that carries the
# rest of the load.  Past the default limit (1024) the script raises it for
# that purpose, and says so.
{
        echo "[Daemon]"
        echo "ApiSocket=$api_sock"
        if [ $((idle + 16)) -gt 1024 ]; then
                echo "MaxConnectionsPerListener=$((idle + 64))"
        fi
} >"$tmp/config/mooringd.conf"
cat >"$tmp/config/apps.d/echo.conf" <<EOF
[App]
AppAddress=http://127.0.0.1:$echo_port
EOF
cat >"$tmp/config/apps.d/sub.conf" <<EOF
[App]
AppAddress=http://127.0.0.1:$sub_port
HealthProbeInterval=1s
EOF
# the caller of everything but the idle connections: state on its Unix
# socket, invocations, publishes and aborted requests on its HttpPort
cat >"$tmp/config/apps.d/load.conf" <<EOF
[App]
HttpPort=$load_port
EOF
cat >"$tmp/config/apps.d/idle.conf" <<EOF
[App]
HttpPort=$idle_port
EOF

kv() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (n && substr($i, 1, n - 1) == k) print substr($i, n + 1) } }' <<<"$2"; }
sub_ctl() { curl -s --max-time "${3:-5}" -X "$1" "http://127.0.0.1:$sub_port$2" 2>/dev/null || true; }
admin() { curl -s --max-time 5 --unix-socket "$api_sock" "$@" 2>/dev/null || true; }

echo "== environment"
echo "host:        $(uname -srm), $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mooringd:    $mooringd ($("$mooringd" --version 2>/dev/null | head -1 || echo 'version unknown'))"
echo "apps:        load (HttpPort $load_port + Unix socket), idle (HttpPort $idle_port), echo ($echo_app on 127.0.0.1:$echo_port),"
echo "             sub ($pubsub_sub on 127.0.0.1:$sub_port); built-in statestore (state.sqlite) and pubsub (pubsub.sqlite)"
echo "load:        ${duration}s, all at once, one soak-load process per kind ($soak_load):"
echo "               state    $state_rate req/s on $connections conns, Unix socket of app load: save [{key soak-<i % 1000>, 100-byte value}] -> 204, get -> 200"
echo "               invoke   $invoke_rate req/s on $connections conns, TCP: POST /v1.0/invoke/echo/method/echo, 1 KiB body -> 200 + same bytes"
echo "               publish  $publish_rate req/s on $connections conns, TCP: POST /v1.0/publish/pubsub/soak, 1 KiB -> 204, delivered to sub"
echo "               idle     $idle conns on app idle's port, each one GET /v1.0/healthz every ${idle_interval}s -> 204"
echo "               abort    $abort_rate conns/s (at most $connections at once), TCP: half a header, or a header and half a body"
echo "                        (save, invoke, publish), or a whole invoke/save; then FIN or RST after 0-50 ms"
echo "sampling:    every ${sample}s; baseline = first sample at >= ${warmup}s of load"
echo "rule:        after the baseline, VmRSS and RssAnon <= baseline + max(${rss_tol_pct}%, ${rss_slack_kib} KiB); fds <= baseline + $fd_tol;"
echo "             no 5xx; no wrong answer, dropped request or timeout on state/invoke/publish/idle; every publish delivered"
echo "temp dir:    $tmp ($(df -PT "$tmp" | awk 'NR == 2 { print $2 }'))"
if [ "$duration" -lt $((warmup + sample)) ]; then
        warn "--duration $duration leaves no sample after the warm-up baseline: flatness is not judged"
fi
echo

# ---------------------------------------------------------------- start everything

wait_200() {
        local pid=$1 name=$2 u=$3 t0
        t0=$(now_ms)
        until [ "$(http_code "$u")" = 200 ]; do
                proc_alive "$pid" || die "$name exited while starting"
                [ $(( $(now_ms) - t0 )) -lt $((ready_timeout * 1000)) ] || die "$name did not answer 200 on $u"
                sleep 0.02
        done
}
"$echo_app" "$echo_port" </dev/null >"$tmp/echo-app.log" 2>&1 &
echo_pid=$!
wait_200 "$echo_pid" echo-app "http://127.0.0.1:$echo_port/"
"$pubsub_sub" "$sub_port" pubsub soak /soak </dev/null >"$tmp/pubsub-sub.log" 2>&1 &
sub_pid=$!
wait_200 "$sub_pid" pubsub-sub "http://127.0.0.1:$sub_port/"

start_mooringd "$tmp/state"
for p in "$load_port" "$idle_port"; do
        if ! wait_204 "$mooringd_pid" mooringd "http://127.0.0.1:$p/v1.0/healthz"; then
                show_mooringd_log
                die "mooringd did not come up"
        fi
done
for a in echo sub; do
        t0=$(now_ms)
        until admin -X POST "http://localhost/mooring/v1/apps/$a/probe" | grep -q '"health":"healthy"'; do
                check_mooringd_alive "the health probe of app $a"
                if [ $(( $(now_ms) - t0 )) -ge $((ready_timeout * 1000)) ]; then
                        show_mooringd_log
                        die "mooringd did not find app $a healthy within ${ready_timeout}s: $(admin http://localhost/mooring/v1/apps)"
                fi
                sleep 0.05
        done
done

# one of each before anything is measured: a binary without these APIs stops here
code=$(curl -s -o "$tmp/out/check.txt" -w '%{http_code}' --max-time 5 --unix-socket "$load_sock" \
        -H 'Content-Type: application/json' -d '[{"key":"check","value":"x"}]' http://load/v1.0/state/statestore || true)
[ "$code" = 204 ] || die "state save answered $code: $(head -c 300 "$tmp/out/check.txt")"
code=$(curl -s -o "$tmp/out/check.txt" -w '%{http_code}' --max-time 5 --unix-socket "$load_sock" \
        http://load/v1.0/state/statestore/check || true)
{ [ "$code" = 200 ] && [ "$(cat "$tmp/out/check.txt")" = '"x"' ]; } || die "state get answered $code: $(head -c 300 "$tmp/out/check.txt")"
code=$(curl -s -o "$tmp/out/check.txt" -w '%{http_code}' --max-time 5 -H 'Content-Type: text/plain' -d hello \
        "http://127.0.0.1:$load_port/v1.0/invoke/echo/method/echo" || true)
{ [ "$code" = 200 ] && [ "$(cat "$tmp/out/check.txt")" = hello ]; } || die "invoke answered $code: $(head -c 300 "$tmp/out/check.txt")"

# the subscription is active once a warm-up message arrives (run 999999999,
# which the measured run then counts as stray)
warm_run=999999999
sub_ctl POST "/control/start?run=$warm_run&count=1" >/dev/null
t0=$(now_ms)
n=0
while :; do
        n=$((n + 1))
        code=$(curl -s -o "$tmp/out/check.txt" --max-time 5 -w '%{http_code}' -H 'Content-Type: application/json' \
                -d "{\"run\":$warm_run,\"seq\":0,\"ts\":0,\"pad\":\"warm-up\"}" \
                "http://127.0.0.1:$load_port/v1.0/publish/pubsub/soak" || true)
        [ "$code" = 204 ] || die "warm-up publish answered $code: $(head -c 300 "$tmp/out/check.txt")"
        [ "$(kv complete "$(sub_ctl GET "/control/wait?timeout_ms=500")")" = 1 ] && break
        check_mooringd_alive "warm-up"
        [ $(( $(now_ms) - t0 )) -lt $((active_timeout * 1000)) ] || die "no warm-up message reached the subscriber within ${active_timeout}s"
done
echo "checks: save, get and invoke answered; subscription active after $n warm-up publish(es)"
# the measured run: seq 0.. of run 1; count is an upper bound of what can be sent
sub_ctl POST "/control/start?run=1&count=$((publish_rate * (duration + 2) + 1000))" >/dev/null
echo

# ---------------------------------------------------------------- sampling

# mem_fds: "VmRSS RssAnon fds threads" of mooringd now
mem_fds() {
        local rss anon fds thr
        read -r rss anon thr < <(awk '$1 == "VmRSS:" { r = $2 } $1 == "RssAnon:" { a = $2 } $1 == "Threads:" { t = $2 }
                END { print r, a, t }' "/proc/$mooringd_pid/status")
        fds=$(find "/proc/$mooringd_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        echo "$rss $anon $fds $thr"
}
# fd_kinds: mooringd's open fds grouped by what they are (sockets, eventfds,
# files by path), the most numerous first: where a growth of fds comes from
fd_kinds() {
        local f
        for f in /proc/"$mooringd_pid"/fd/*; do readlink "$f" 2>/dev/null; done |
                sed -E 's/^(socket|pipe):\[[0-9]+\]$/\1/' | sort | uniq -c | sort -rn |
                awk '{ c = $1; $1 = ""; printf "%s%s %d", sep, substr($0, 2), c; sep = ", " } END { print "" }'
}
stat_of() { cat "$tmp/out/$1.stats" 2>/dev/null || echo "kind=$1"; }
num() { local v; v=$(kv "$1" "$2"); echo "${v:-0}"; }
# bad_of LINE: unexpected outcomes other than 5xx answers, for the paced and idle kinds
bad_of() { echo $(( $(num bad_status "$1") - $(num s5xx "$1") + $(num bad_body "$1") + $(num errors "$1") + $(num timeouts "$1") + $(num unanswered "$1") )); }

declare -A prev_ans prev_5xx prev_bad
for k in "${kinds[@]}"; do prev_ans[$k]=0; prev_5xx[$k]=0; prev_bad[$k]=0; done
samples_t=(); samples_rss=(); samples_anon=(); samples_fds=(); samples_fdk=()
daemon_conns() { admin http://localhost/mooring/v1/status | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["http"]["connections"])
except Exception: print("?")'; }

hdr() {
        printf '%-7s %9s %9s %6s %4s %6s | %-18s | %-18s | %-18s | %-18s | %s\n' "t (s)" "VmRSS" "RssAnon" fds thr conns \
                "state req/5xx/bad" "invoke req/5xx/bad" "publish req/5xx/bad" "idle req/5xx/bad" "abort conns"
}
# take_sample LABEL T: one line; the counts are what happened since the previous line
take_sample() {
        local label=$1 t=$2 rss anon fds thr line k a x b cols=() conns
        read -r rss anon fds thr < <(mem_fds)
        conns=$(daemon_conns)
        for k in "${kinds[@]}"; do
                line=$(stat_of "$k")
                if [ "$k" = abort ]; then
                        a=$(num aborted "$line")
                        cols+=("$((a - prev_ans[$k]))")
                        prev_ans[$k]=$a
                        continue
                fi
                a=$(num answered "$line"); x=$(num s5xx "$line"); b=$(bad_of "$line")
                cols+=("$(printf '%d/%d/%d' $((a - prev_ans[$k])) $((x - prev_5xx[$k])) $((b - prev_bad[$k])))")
                prev_ans[$k]=$a; prev_5xx[$k]=$x; prev_bad[$k]=$b
        done
        printf '%-7s %9s %9s %6s %4s %6s | %-18s | %-18s | %-18s | %-18s | %s\n' "$label" "$rss" "$anon" "$fds" "$thr" "$conns" "${cols[@]}"
        if [ -n "$t" ]; then
                samples_t+=("$t"); samples_rss+=("$rss"); samples_anon+=("$anon"); samples_fds+=("$fds")
                samples_fdk+=("$(fd_kinds)")
        fi
}

echo "== samples (VmRSS and RssAnon in KiB; fds and threads of mooringd; conns: its open HTTP connections;"
echo "   req/5xx/bad: answers, 5xx answers and other unexpected outcomes in the interval; abort: connections that went away)"
hdr
take_sample "before" ""
fds_before=$(fd_kinds)

# ---------------------------------------------------------------- load

common=(--duration "$duration" --connections "$connections" --drain 10)
start_load() {
        local k=$1; shift
        timeout $((duration + 60)) "$soak_load" --kind "$k" --stats "$tmp/out/$k.stats" "$@" \
                </dev/null >"$tmp/out/$k.out" 2>"$tmp/out/$k.err" &
        load_pid[$k]=$!
}
start_load state --unix "$load_sock" --rate "$state_rate" "${common[@]}"
start_load invoke --tcp "127.0.0.1:$load_port" --rate "$invoke_rate" "${common[@]}"
start_load publish --tcp "127.0.0.1:$load_port" --rate "$publish_rate" --run 1 "${common[@]}"
start_load idle --tcp "127.0.0.1:$idle_port" --connections "$idle" --interval "$idle_interval" --duration "$duration" --drain 10
start_load abort --tcp "127.0.0.1:$load_port" --rate "$abort_rate" "${common[@]}"
load_t0=$(now_ms)

# sleep until T s of load, watching that nothing died
sleep_until() {
        local k
        while [ $(( $(now_ms) - load_t0 )) -lt $(($1 * 1000)) ]; do
                check_mooringd_alive "the load"
                for k in "${!load_pid[@]}"; do
                        proc_alive "${load_pid[$k]}" || die "soak-load $k exited early: $(tail -n 5 "$tmp/out/$k.err")"
                done
                sleep 1
        done
}
t=$sample
while [ "$t" -lt "$duration" ]; do
        sleep_until "$t"
        take_sample "$t" "$t"
        t=$((t + sample))
done
sleep_until "$duration"
for k in "${kinds[@]}"; do
        wait "${load_pid[$k]}" 2>/dev/null || true
        unset "load_pid[$k]"
done
check_mooringd_alive "the load"
take_sample "end" "$duration"

# every publish that was answered 204 must reach the subscriber
pub_ok=$(num ok "$(stat_of publish)")
t0=$(now_ms)
while :; do
        sline=$(sub_ctl GET /control/stats)
        uniq=$(num unique "$sline")
        [ "$uniq" -lt "$pub_ok" ] || break
        [ $(( $(now_ms) - t0 )) -lt $((drain * 1000)) ] || break
        sleep 0.5
done
drain_ms=$(( $(now_ms) - t0 ))
# the load has gone: what the daemon keeps now is what an idle daemon holds after it
sleep 2
take_sample "after" ""
fds_after=$(fd_kinds)
echo
echo "mooringd fds before the load: $fds_before"
echo "mooringd fds after the load:  $fds_after"
echo

# ---------------------------------------------------------------- verdict

failures=()
notes=()

echo "== totals"
printf '%-8s %10s %9s %6s %6s %10s %9s %7s %9s %11s %8s %8s\n' kind sent answered 5xx 4xx "wrong ans" "conn err" timeouts unanswered "srv closed" skipped "conn fail"
for k in state invoke publish idle; do
        line=$(stat_of "$k")
        printf '%-8s %10s %9s %6s %6s %10s %9s %7s %9s %11s %8s %8s\n' "$k" "$(num sent "$line")" "$(num answered "$line")" \
                "$(num s5xx "$line")" "$(num s4xx "$line")" $(( $(num bad_status "$line") + $(num bad_body "$line") )) \
                "$(num errors "$line")" "$(num timeouts "$line")" "$(num unanswered "$line")" "$(num server_closed "$line")" \
                "$(num skipped "$line")" "$(num connect_errors "$line")"
        [ "$(num s5xx "$line")" = 0 ] || failures+=("$k: $(num s5xx "$line") answers with a 5xx status")
        b=$(bad_of "$line")
        [ "$b" = 0 ] || failures+=("$k: $b unexpected outcomes other than 5xx (wrong status or body, connection dropped mid-request, timeout, unanswered)")
        [ "$(num connect_errors "$line")" = 0 ] || failures+=("$k: $(num connect_errors "$line") connections refused or failed")
        [ "$(num server_closed "$line")" = 0 ] || notes+=("$k: the daemon closed $(num server_closed "$line") keep-alive connections that had been idle (reopened; the pool reuses the last freed connection first, so a spare one can reach IdleTimeoutSec=)")
        [ "$(num skipped "$line")" = 0 ] || notes+=("$k: $(num skipped "$line") requests skipped: the target rate was not reached (machine too busy, or the daemon too slow)")
        [ "$(num sent "$line")" -gt 0 ] || failures+=("$k: nothing was sent")
done
line=$(stat_of abort)
echo "abort: $(num attempts "$line") connections, $(num aborted "$line") went away mid-request, $(num connect_errors "$line") could not connect"
[ "$(num connect_errors "$line")" = 0 ] || failures+=("abort: $(num connect_errors "$line") connections refused or failed")
echo "publish: $pub_ok answered 204; subscriber got $uniq of them (waited ${drain_ms} ms after the load), duplicates $(num duplicates "$sline"), stray $(num stray "$sline") (warm-up, and aborted publishes that were whole), bad $(num bad "$sline")"
[ "$uniq" -ge "$pub_ok" ] || failures+=("publish: $((pub_ok - uniq)) of $pub_ok accepted messages never reached the subscriber within ${drain}s")
[ "$(num duplicates "$sline")" = 0 ] || notes+=("publish: $(num duplicates "$sline") duplicate deliveries (at-least-once: allowed)")
echo "daemon HTTP counters: $(admin http://localhost/mooring/v1/status | python3 -c 'import json,sys
try: print(", ".join("%s %s" % kv for kv in json.load(sys.stdin)["http"].items()))
except Exception: print("unavailable")')"
echo

# flatness: against the first sample at or after the warm-up
base=-1
for i in "${!samples_t[@]}"; do
        if [ "${samples_t[$i]}" -ge "$warmup" ]; then base=$i; break; fi
done
echo "== memory and fds after the warm-up"
if [ "$base" -lt 0 ] || [ "$base" -ge $(( ${#samples_t[@]} - 1 )) ]; then
        failures+=("no sample after the warm-up baseline: flatness not judged (--duration must exceed --warmup + --sample)")
else
        b_rss=${samples_rss[$base]}; b_anon=${samples_anon[$base]}; b_fds=${samples_fds[$base]}
        lim() { awk -v b="$1" -v p="$rss_tol_pct" -v s="$rss_slack_kib" 'BEGIN { d = b * p / 100; if (d < s) d = s; printf "%d", b + d }'; }
        l_rss=$(lim "$b_rss"); l_anon=$(lim "$b_anon"); l_fds=$((b_fds + fd_tol))
        echo "baseline at ${samples_t[$base]}s: VmRSS $b_rss KiB (limit $l_rss), RssAnon $b_anon KiB (limit $l_anon), fds $b_fds (limit $l_fds)"
        last=$(( ${#samples_t[@]} - 1 ))
        fd_grew=0
        for ((i = base + 1; i <= last; i++)); do
                [ "${samples_rss[$i]}" -le "$l_rss" ] || failures+=("VmRSS ${samples_rss[$i]} KiB at ${samples_t[$i]}s > $l_rss KiB (baseline $b_rss at ${samples_t[$base]}s)")
                [ "${samples_anon[$i]}" -le "$l_anon" ] || failures+=("RssAnon ${samples_anon[$i]} KiB at ${samples_t[$i]}s > $l_anon KiB (baseline $b_anon at ${samples_t[$base]}s)")
                if [ "${samples_fds[$i]}" -gt "$l_fds" ]; then
                        failures+=("fds ${samples_fds[$i]} at ${samples_t[$i]}s > $l_fds (baseline $b_fds at ${samples_t[$base]}s)")
                        echo "fds at ${samples_t[$i]}s: ${samples_fdk[$i]}"
                        fd_grew=1
                fi
        done
        [ "$fd_grew" = 0 ] || echo "fds at the baseline: ${samples_fdk[$base]}"
        echo "end (${samples_t[$last]}s): VmRSS $(( samples_rss[last] - b_rss )) KiB, RssAnon $(( samples_anon[last] - b_anon )) KiB, fds $(( samples_fds[last] - b_fds )) against the baseline"
fi
echo

stop_mooringd
echo "mooringd stop after SIGTERM: ${last_stop_ms} ms"
for k in "${kinds[@]}"; do
        if [ -s "$tmp/out/$k.err" ]; then
                echo "---- soak-load $k: first unexpected events ----"
                head -n 20 "$tmp/out/$k.err"
        fi
done
if [ -s "$mooringd_log" ]; then
        echo "---- mooringd log: $(wc -l <"$mooringd_log") line(s) at warning or above; the most frequent (numbers blanked) ----"
        sed -E 's/[0-9]+/N/g' "$mooringd_log" | sort | uniq -c | sort -rn | head -n 15
fi
for f in "${notes[@]}"; do echo "note: $f"; done
for f in "${failures[@]}"; do daemon_problems+=("$f"); done
print_daemon_problems
if [ ${#daemon_problems[@]} -gt 0 ]; then
        echo "soak: FAILED"
        exit 1
fi
echo "soak: passed"
