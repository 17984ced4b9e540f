#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/state.sh - throughput/latency of the Dapr state API served by
# mooringd over an app's Unix socket:
#   (a) state.redis, against redis-benchmark SET/GET on the same redis-server
#       in the same run (interleaved);
#   (b) the embedded default store (state.sqlite, synchronous=FULL), against
#       raw SQLite (bench/sqlite-ref.c) on the same filesystem in the same run:
#       one commit per save, and one commit per C saves.
#
# Usage: bench/state.sh [--mooringd PATH] [--requests N] [--concurrency C]
#                       [--state-load PATH] [--part all|redis|sqlite] [--keep]
#
# Everything runs on 127.0.0.1 and Unix sockets under a temporary directory;
# every process started here is stopped by PID on exit (including on failure
# or Ctrl-C) and the temporary directory removed (unless --keep).  See
# bench/README.md for what the numbers mean.

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
# shellcheck source=bench/lib.sh
. "$script_dir/lib.sh"

mooringd=${MOORINGD:-$repo_root/build/daemon/mooringd}
state_load=${STATE_LOAD:-}
requests=50000
concurrency=50
keep=0
part=all
n_keys=1000             # saves/gets use keys k0..k999
value_size=100          # bytes of the saved string (redis-benchmark -d 100)
ready_timeout=10        # seconds to wait for a server to answer
stop_timeout=15         # seconds to wait for mooringd after SIGTERM
run_timeout=60          # seconds at most per load run (state-load --max-seconds; redis-benchmark timeout)

usage() {
        cat <<EOF
usage: bench/state.sh [--mooringd PATH] [--requests N] [--concurrency C] [--state-load PATH] [--keep]
  --mooringd PATH    daemon binary (default: \$MOORINGD or build/daemon/mooringd)
  --requests N       requests per save run and per get run (default: 50000)
  --concurrency C    keep-alive connections, for both clients (default: 50)
  --state-load PATH  load generator (default: \$STATE_LOAD, else bench/state-load
                     next to the daemon's build dir, else compiled from bench/state-load.c)
  --part P           all (default), redis (part a only) or sqlite (part b only)
  --keep             keep the temporary directory (configs, logs, raw outputs)
EOF
}

while [ $# -gt 0 ]; do
        case $1 in
        --mooringd) [ $# -ge 2 ] || die "--mooringd needs a value"; mooringd=$2; shift 2 ;;
        --mooringd=*) mooringd=${1#*=}; shift ;;
        --requests) [ $# -ge 2 ] || die "--requests needs a value"; requests=$2; shift 2 ;;
        --requests=*) requests=${1#*=}; shift ;;
        --concurrency) [ $# -ge 2 ] || die "--concurrency needs a value"; concurrency=$2; shift 2 ;;
        --concurrency=*) concurrency=${1#*=}; shift ;;
        --state-load) [ $# -ge 2 ] || die "--state-load needs a value"; state_load=$2; shift 2 ;;
        --state-load=*) state_load=${1#*=}; shift ;;
        --part) [ $# -ge 2 ] || die "--part needs a value"; part=$2; shift 2 ;;
        --part=*) part=${1#*=}; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
        esac
done

[[ $requests =~ ^[1-9][0-9]*$ ]] || die "--requests must be a positive integer"
[[ $concurrency =~ ^[1-9][0-9]*$ ]] || die "--concurrency must be a positive integer"
[[ $part =~ ^(all|redis|sqlite)$ ]] || die "--part must be all, redis or sqlite"

# ---------------------------------------------------------------- tools

need_install=()
command -v redis-server >/dev/null 2>&1 || need_install+=(redis-server)
{ command -v redis-benchmark >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; } || need_install+=(redis-tools)
if [ ${#need_install[@]} -gt 0 ]; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
                echo "installing missing tools: ${need_install[*]}" >&2
                DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_install[@]}" >&2 ||
                        die "apt-get install ${need_install[*]} failed"
        else
                die "missing ${need_install[*]}: install them (Debian: apt-get install redis-server redis-tools) or run as root to let this script do it"
        fi
fi
require_tools curl python3 timeout awk

check_mooringd_binary

# ---------------------------------------------------------------- state & cleanup

redis_pid=

# called by cleanup (bench/lib.sh) once the client and mooringd are stopped
stop_servers() {
        if [ -n "$redis_pid" ]; then
                stop_pid "$redis_pid" redis-server 5 >/dev/null 2>&1
                redis_pid=
        fi
}
make_tmp mooring-state-bench

# proc_ticks PID: user+system CPU ticks of a process (all its threads)
proc_ticks() {
        awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# pct TICKS MS: CPU ticks over a wall-clock span as % of one core
pct() { awk -v t="$1" -v hz="$clk_tck" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0) ? t / hz / (ms / 1000) * 100 : 0 }'; }

# other_pct BUSY_TICKS SERVER_TICKS CLIENT_S MS: CPU used by anything else than
# mooringd, redis-server and the client during a run, as % of one core (noise)
other_pct() {
        awk -v b="$1" -v t="$2" -v w="$3" -v hz="$clk_tck" -v ms="$4" \
                'BEGIN { o = (b - t) / hz - w; if (o < 0) o = 0; printf "%.0f", (ms > 0) ? o / (ms / 1000) * 100 : 0 }'
}
max_other=0
note_other() { [ "$1" -le "$max_other" ] || max_other=$1; }

rcli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }

# ---------------------------------------------------------------- load generator

if [ -z "$state_load" ]; then
        cand=$(cd "$(dirname "$mooringd")/.." && pwd)/bench/state-load
        if [ -x "$cand" ]; then
                state_load=$cand
        else
                cc=${CC:-cc}
                command -v "$cc" >/dev/null 2>&1 || die "no state-load next to $mooringd and no C compiler ($cc) to build bench/state-load.c"
                "$cc" -O2 -std=gnu11 -o "$tmp/state-load" "$script_dir/state-load.c" || die "could not build bench/state-load.c"
                state_load=$tmp/state-load
        fi
fi
[ -x "$state_load" ] || die "load generator not executable: $state_load"

# ---------------------------------------------------------------- setup

mkdir -p "$tmp/config/apps.d" "$tmp/config/components" "$tmp/state-redis" "$tmp/state-sqlite" "$tmp/runtime" "$tmp/redis" "$tmp/out"
read -r redis_port < <(free_ports 1)

printf '[App]\n' >"$tmp/config/apps.d/bench.conf"
app_sock=$tmp/runtime/apps/bench/http.sock
api_sock=$tmp/runtime/mooringd.sock

cat >"$tmp/config/components/redis.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: redis
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:$redis_port
EOF

fs_of() { df -PT "$1" 2>/dev/null | awk 'NR == 2 { print $2 " (" $1 " on " $7 ")" }'; }

echo "== environment"
echo "host:           $(uname -srm), $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "mooringd:       $mooringd ($("$mooringd" --version 2>/dev/null | head -1 || echo 'version unknown'))"
echo "redis-server:   $(redis-server --version | sed 's/^Redis server //'), 127.0.0.1:$redis_port, --save '' --appendonly no (single-threaded command execution)"
echo "redis-benchmark: $(redis-benchmark --version 2>/dev/null | head -1 || echo '?'), -t set,get -n $requests -c $concurrency -d $value_size -q --csv (one thread, one request in flight per connection)"
echo "state-load:     $state_load, one epoll thread, $concurrency keep-alive HTTP/1.1 connections, one request in flight per connection"
echo "transport:      Unix socket runtime/apps/bench/http.sock (HTTP/1.1 keep-alive) for mooringd; TCP 127.0.0.1 (RESP) for redis-benchmark"
echo "workload:       $requests saves, then $requests gets per run; request i uses key k<i % $n_keys>; value: JSON string of $value_size bytes"
echo "state dir fs:   $(fs_of "$tmp")"
echo "temp dir:       $tmp"
echo

# ---------------------------------------------------------------- start servers

redis-server --port "$redis_port" --bind 127.0.0.1 --protected-mode yes --save '' --appendonly no \
        --dir "$tmp/redis" --logfile "$tmp/redis/redis.log" --daemonize no </dev/null >/dev/null 2>&1 &
redis_pid=$!
t0=$(now_ms)
until [ "$(rcli ping 2>/dev/null || true)" = PONG ]; do
        if ! proc_alive "$redis_pid"; then cat "$tmp/redis/redis.log" >&2 2>/dev/null; die "redis-server exited at startup"; fi
        [ $(( $(now_ms) - t0 )) -lt $((ready_timeout * 1000)) ] || die "redis-server did not answer PING within ${ready_timeout}s"
        sleep 0.02
done

# ---------------------------------------------------------------- runs

declare -A best_rps best_p50 best_p99 best_max best_run best_mcpu best_rcpu best_ccpu best_note
declare -A all_runs
bad_runs=0

# keep_best KEY RUN RPS P50 P99 MAX MCPU RCPU CCPU NOTE
keep_best() {
        if [ -z "${best_rps[$1]:-}" ] || awk -v a="$3" -v b="${best_rps[$1]}" 'BEGIN { exit !(a > b) }'; then
                best_rps[$1]=$3; best_p50[$1]=$4; best_p99[$1]=$5; best_max[$1]=$6; best_run[$1]=$2
                best_mcpu[$1]=$7; best_rcpu[$1]=$8; best_ccpu[$1]=$9; best_note[$1]=${10}
        fi
        all_runs[$1]+="${all_runs[$1]:+ }$3"
}

# run_redis_benchmark RUN
run_redis_benchmark() {
        local run_no=$1 out=$tmp/out/redis-benchmark-$1.txt r0 r1 t0 t1 c0 c1 b0 b1 rc=0 ms rcpu ccpu other t
        rcli flushall >/dev/null
        r0=$(proc_ticks "$redis_pid"); b0=$(busy_ticks); t0=$(now_ms)
        children_cpu_s >"$tmp/c0.txt"; c0=$(<"$tmp/c0.txt")
        timeout $((run_timeout * 2)) redis-benchmark -h 127.0.0.1 -p "$redis_port" -t set,get -n "$requests" -c "$concurrency" \
                -d "$value_size" -q --csv </dev/null >"$out" 2>&1 &
        client_pid=$!
        wait "$client_pid" || rc=$?
        client_pid=
        r1=$(proc_ticks "$redis_pid"); b1=$(busy_ticks); t1=$(now_ms)
        children_cpu_s >"$tmp/c1.txt"; c1=$(<"$tmp/c1.txt")
        [ "$rc" -eq 0 ] || { cat "$out" >&2; die "redis-benchmark failed (status $rc)"; }
        ms=$((t1 - t0))
        rcpu=$(pct $((r1 - r0)) "$ms")
        ccpu=$(awk -v a="$c0" -v b="$c1" -v ms="$ms" 'BEGIN { printf "%.0f", (b - a) / (ms / 1000) * 100 }')
        other=$(other_pct $((b1 - b0)) $((r1 - r0)) "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" "$ms")
        note_other "$other"
        for t in SET GET; do
                # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
                read -r rps p50 p99 max < <(awk -F, -v t="\"$t\"" '$1 == t { gsub(/"/, ""); print $2, $5, $7, $8 }' "$out") ||
                        { cat "$out" >&2; die "could not parse redis-benchmark output"; }
                printf 'run %d  %-34s %10.2f ops/s  p50 %7.3f ms  p99 %7.3f ms  max %8.3f ms  redis CPU %3s%%  client CPU %3s%%  other CPU %3s%% (CPU: SET+GET together)\n' \
                        "$run_no" "redis-benchmark $t" "$rps" "$p50" "$p99" "$max" "$rcpu" "$ccpu" "$other"
                keep_best "rb-$t" "$run_no" "$rps" "$p50" "$p99" "$max" - "$rcpu" "$ccpu" ""
        done
}

# run_load RUN KEY LABEL MODE STORE [redis]: one state-load run through mooringd
run_load() {
        local run_no=$1 key=$2 label=$3 lmode=$4 store=$5 with_redis=${6:-} out=$tmp/out/$2-$1.txt err=$tmp/out/$2-$1.err
        local m0 m1 r0=0 r1=0 t0 t1 c0 c1 b0 b1 other rc=0 ms line rps p50 p99 max ndone ok bad badb errs recon tmo mcpu rcpu=- ccpu note="" cmds=""
        [ -z "$with_redis" ] || rcli config resetstat >/dev/null
        m0=$(proc_ticks "$mooringd_pid"); [ -z "$with_redis" ] || r0=$(proc_ticks "$redis_pid")
        children_cpu_s >"$tmp/c0.txt"; c0=$(<"$tmp/c0.txt")
        b0=$(busy_ticks); t0=$(now_ms)
        timeout $((run_timeout + 30)) "$state_load" --unix "$app_sock" --mode "$lmode" --store "$store" \
                --requests "$requests" --concurrency "$concurrency" --keys "$n_keys" --value-size "$value_size" \
                --max-seconds "$run_timeout" </dev/null >"$out" 2>"$err" &
        client_pid=$!
        wait "$client_pid" || rc=$?
        client_pid=
        b1=$(busy_ticks); t1=$(now_ms)
        m1=$(proc_ticks "$mooringd_pid"); [ -z "$with_redis" ] || r1=$(proc_ticks "$redis_pid")
        children_cpu_s >"$tmp/c1.txt"; c1=$(<"$tmp/c1.txt")
        line=$(head -n 1 "$out")
        if [ -z "$line" ]; then
                cat "$err" >&2
                check_mooringd_alive "$label run $run_no"
                die "state-load printed nothing (status $rc)"
        fi
        kv() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) print a[2] } }' <<<"$line"; }
        rps=$(kv ops/s); p50=$(kv p50_ms); p99=$(kv p99_ms); max=$(kv max_ms); ndone=$(kv done); ok=$(kv ok)
        bad=$(kv bad_status); badb=$(kv bad_body); errs=$(kv errors); recon=$(kv reconnects); tmo=$(kv timed_out)
        ms=$((t1 - t0))
        mcpu=$(pct $((m1 - m0)) "$ms")
        [ -z "$with_redis" ] || rcpu=$(pct $((r1 - r0)) "$ms")
        ccpu=$(awk -v a="$c0" -v b="$c1" -v ms="$ms" 'BEGIN { printf "%.0f", (b - a) / (ms / 1000) * 100 }')
        other=$(other_pct $((b1 - b0)) $((m1 - m0 + r1 - r0)) "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" "$ms")
        note_other "$other"
        if [ "$ok" != "$requests" ]; then
                note="  ok $ok/$requests (done $ndone, bad status $bad, bad body $badb, socket errors $errs, reconnects $recon${tmo:+, timed out $tmo})"
                daemon_problems+=("$label run $run_no:$note")
                bad_runs=$((bad_runs + 1))
                sed 's/^/    /' "$err"
        elif [ "$recon" != 0 ]; then
                note="  reconnects $recon (server closed keep-alive connections)"
        fi
        if [ -n "$with_redis" ]; then
                # what the daemon sent redis per HTTP request, and over how many connections
                cmds=$(rcli info commandstats | tr -d '\r' | awk -F'[:,=]' -v n="$ndone" \
                        '/^cmdstat_/ && $1 !~ /^cmdstat_(info|config|ping|flushall)/ { sub(/^cmdstat_/, "", $1); if (n > 0) printf "%s%s=%.2f", sep, $1, $3 / n; sep = " " }')
                note+="  redis commands/req (incl. inside EVAL): ${cmds:-none}, redis clients: $(rcli info clients | tr -d '\r' | awk -F: '$1 == "connected_clients" { print $2 - 1 }')"
        fi
        printf 'run %d  %-34s %10.2f ops/s  p50 %7.3f ms  p99 %7.3f ms  max %8.3f ms  mooringd CPU %3s%%  redis CPU %3s%%  client CPU %3s%%  other CPU %3s%%%s\n' \
                "$run_no" "$label" "$rps" "$p50" "$p99" "$max" "$mcpu" "$rcpu" "$ccpu" "$other" "$note"
        keep_best "$key" "$run_no" "$rps" "$p50" "$p99" "$max" "$mcpu" "$rcpu" "$ccpu" "$note"
        check_mooringd_alive "$label run $run_no"
}

# (a) ------------------------------------------------------------ state.redis

if [ "$part" != sqlite ]; then
start_mooringd "$tmp/state-redis"
if ! wait_204 "$mooringd_pid" mooringd "http://localhost/v1.0/healthz" --unix-socket "$app_sock"; then
        show_mooringd_log
        die "mooringd did not come up (app bench, component redis)"
fi
echo "== (a) state.redis through mooringd vs redis-benchmark, same redis-server, interleaved (redis-benchmark, mooringd save, mooringd get; twice)"
echo "mooringd components: $(curl -s --max-time 2 --unix-socket "$api_sock" http://localhost/mooring/v1/components || echo '(admin socket did not answer)')"
# one save through the daemon must work before measuring anything
code=$(curl -s -o "$tmp/out/probe.txt" --max-time 5 -w '%{http_code}' --unix-socket "$app_sock" \
        -H 'Content-Type: application/json' -d '[{"key":"probe","value":"x"}]' http://localhost/v1.0/state/redis || true)
[ "$code" = 204 ] || { show_mooringd_log; die "POST /v1.0/state/redis answered $code: $(cat "$tmp/out/probe.txt")"; }
for run in 1 2; do
        run_redis_benchmark "$run"
        rcli flushall >/dev/null
        run_load "$run" redis-save "mooringd save -> state.redis" save redis redis
        run_load "$run" redis-get "mooringd get  -> state.redis" get redis redis
done
mooringd_rss_a=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$mooringd_pid/status")
stop_mooringd
echo

echo "== (a) best of two runs each ($requests requests, $concurrency connections)"
printf '%-36s %12s %10s %10s %10s %13s %10s\n' target ops/s "p50 (ms)" "p99 (ms)" "max (ms)" "mooringd CPU" "redis CPU"
row() {
        printf '%-36s %12.2f %10.3f %10.3f %10.3f %12s%% %9s%%%s\n' "$2" "${best_rps[$1]}" "${best_p50[$1]}" "${best_p99[$1]}" \
                "${best_max[$1]}" "${best_mcpu[$1]}" "${best_rcpu[$1]}" "${3:-}"
}
row rb-SET "redis-benchmark SET (TCP, RESP)" "  (redis CPU: SET+GET run)"
row redis-save "mooringd save (unix, HTTP)"
row rb-GET "redis-benchmark GET (TCP, RESP)" "  (redis CPU: SET+GET run)"
row redis-get "mooringd get (unix, HTTP)"
ratio_save=$(awk -v a="${best_rps[redis-save]}" -v b="${best_rps[rb-SET]}" 'BEGIN { printf "%.2f", a / b }')
ratio_get=$(awk -v a="${best_rps[redis-get]}" -v b="${best_rps[rb-GET]}" 'BEGIN { printf "%.2f", a / b }')
met() { awk -v r="$1" 'BEGIN { print (r >= 0.5) ? "met" : "NOT met" }'; }
echo "ratio save through mooringd / redis-benchmark SET: $ratio_save (target >= 0.50: $(met "$ratio_save"))"
echo "ratio get through mooringd / redis-benchmark GET: $ratio_get (target >= 0.50: $(met "$ratio_get"))"
echo "all runs (ops/s): redis-benchmark SET ${all_runs[rb-SET]}; mooringd save ${all_runs[redis-save]}; redis-benchmark GET ${all_runs[rb-GET]}; mooringd get ${all_runs[redis-get]}"
echo "mooringd VmRSS after the runs: $(awk -v k="$mooringd_rss_a" 'BEGIN { printf "%.2f", k / 1024 }') MiB"
echo
fi

# (b) ------------------------------------------------------------ state.sqlite

if [ "$part" != redis ]; then
# The reference: raw SQLite, same filesystem, same pragmas, table and upsert as the driver.
sqlite_ref=$tmp/sqlite-ref
"${CC:-cc}" -O2 -std=gnu11 -o "$sqlite_ref" "$script_dir/sqlite-ref.c" -lsqlite3 ||
        die "could not build bench/sqlite-ref.c (Debian: apt-get install libsqlite3-dev)"
mkdir -p "$tmp/ref"
# One fsync per save is slow on a real disk: a few thousand saves give its rate.
ref1_n=$((requests < 5000 ? requests : 5000))
run_ref() { # RUN KEY LABEL N BATCH
        rm -f "$tmp/ref/ref.db"*
        local line rps
        line=$("$sqlite_ref" "$tmp/ref/ref.db" "$4" "$5" "$value_size") || die "sqlite-ref failed"
        rps=$(awk '{ for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == "ops/s") print a[2] } }' <<<"$line")
        printf 'run %d  %-34s %10.2f ops/s  (%s saves, %s per commit, no daemon)\n' "$1" "$3" "$rps" "$4" "$5"
        if [ -z "${best_rps[$2]:-}" ] || awk -v a="$rps" -v b="${best_rps[$2]}" 'BEGIN { exit !(a > b) }'; then
                best_rps[$2]=$rps
        fi
        all_runs[$2]="${all_runs[$2]:-}${all_runs[$2]:+ }$rps"
}

rm -f "$tmp/config/components/redis.yaml"
start_mooringd "$tmp/state-sqlite"
if ! wait_204 "$mooringd_pid" mooringd "http://localhost/v1.0/healthz" --unix-socket "$app_sock"; then
        show_mooringd_log
        die "mooringd did not come up (app bench, no component: built-in statestore)"
fi
echo "== (b) built-in statestore (state.sqlite, journal_mode=WAL, synchronous=FULL) through mooringd, alone (save, get; twice)"
echo "mooringd components: $(curl -s --max-time 2 --unix-socket "$api_sock" http://localhost/mooring/v1/components || echo '(admin socket did not answer)')"
echo "database on: $(fs_of "$tmp/state-sqlite")"
for run in 1 2; do
        run_ref "$run" ref-1 "raw SQLite, 1 save per commit" "$ref1_n" 1
        run_ref "$run" ref-c "raw SQLite, $concurrency saves per commit" "$requests" "$concurrency"
        run_load "$run" sqlite-save "mooringd save -> state.sqlite" save statestore
        run_load "$run" sqlite-get "mooringd get  -> state.sqlite" get statestore
done
echo "database files: $(cd "$tmp/state-sqlite" && find . -type f -printf '%P %s B; ' 2>/dev/null)"
mooringd_rss_b=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$mooringd_pid/status")
stop_mooringd
echo

echo "== (b) best of two runs each ($requests requests, $concurrency connections)"
printf '%-36s %12s %10s %10s %10s %13s\n' target ops/s "p50 (ms)" "p99 (ms)" "max (ms)" "mooringd CPU"
for k in sqlite-save sqlite-get; do
        printf '%-36s %12.2f %10.3f %10.3f %10.3f %12s%%\n' "mooringd ${k#sqlite-} (unix, HTTP)" "${best_rps[$k]}" \
                "${best_p50[$k]}" "${best_p99[$k]}" "${best_max[$k]}" "${best_mcpu[$k]}"
done
echo "state.sqlite save: $(printf '%.2f' "${best_rps[sqlite-save]}") ops/s, p50 ${best_p50[sqlite-save]} ms, p99 ${best_p99[sqlite-save]} ms"
echo "state.sqlite get: $(printf '%.2f' "${best_rps[sqlite-get]}") ops/s, p50 ${best_p50[sqlite-get]} ms, p99 ${best_p99[sqlite-get]} ms"
echo "all runs (ops/s): save ${all_runs[sqlite-save]}; get ${all_runs[sqlite-get]}"
printf '%-36s %12.2f\n' "raw SQLite, 1 save per commit" "${best_rps[ref-1]}" "raw SQLite, $concurrency saves per commit" "${best_rps[ref-c]}"
echo "all reference runs (ops/s): 1 per commit ${all_runs[ref-1]}; $concurrency per commit ${all_runs[ref-c]}"
ratio1=$(awk -v a="${best_rps[sqlite-save]}" -v b="${best_rps[ref-1]}" 'BEGIN { printf "%.2f", a / b }')
ratioc=$(awk -v a="${best_rps[sqlite-save]}" -v b="${best_rps[ref-c]}" 'BEGIN { printf "%.2f", a / b }')
echo "ratio mooringd save / raw SQLite 1 save per commit: $ratio1 (above 1: saves share commits)"
echo "ratio mooringd save / raw SQLite $concurrency saves per commit: $ratioc (the ceiling of group commit without HTTP)"
target=$(awk -v r="${best_rps[sqlite-save]}" -v p="${best_p99[sqlite-save]}" 'BEGIN { print (r >= 30000 && p <= 5) ? "met" : "NOT met" }')
echo "target >= 30000 durable saves/s with p99 <= 5 ms at $concurrency connections: $target"
echo "mooringd VmRSS after the runs: $(awk -v k="$mooringd_rss_b" 'BEGIN { printf "%.2f", k / 1024 }') MiB"
echo "mooringd stop after SIGTERM (ms): ${stop_times[*]}"
fi
if [ "$max_other" -ge 20 ]; then
        echo "WARNING: other load used up to ${max_other}% of a core during some run: figures are disturbed, rerun on a quiet machine"
fi
echo

# ---------------------------------------------------------------- daemon log / problems

for f in "$tmp"/mooringd-*.log; do
        [ -s "$f" ] || continue
        daemon_problems+=("$(basename "$f"): $(wc -l <"$f") line(s) logged at warning or above")
        echo "---- $(basename "$f") (first 20 lines) ----"
        head -n 20 "$f"
done
print_daemon_problems
[ "$bad_runs" -eq 0 ]
