#!/usr/bin/env bash
# The project's performance figures, the targets beside them, in one table.
#
# Instructions per request, counted by callgrind (steady on shared machines,
# unlike time): on the thread that serves the requests, and on all threads
# together (the batch processor's export thread and the log writer
# included). Each scenario runs twice, with N1 and N2 requests (thousands:
# the peer stack has periodic upkeep that fewer requests do not average
# out); the difference divided by N2 - N1 cancels start-up and shutdown.
#
# `service-*` is the reference service built exactly as its `main` builds it
# (Telemetry, order_service::app) against its own routes without the layer
# (`service-bare`; `service-bare-health` for the filtered `/health`): the
# figure users get. `peer-*` is axum-tracing-opentelemetry +
# axum-prometheus (`peer-service-*` over the service's routes, the peer
# the targets compare with). The other HTTP scenarios are
# the hand-assembled stacks of earlier reports, kept for comparison.
# `grpc-*`: a unary call to tonic's generated health service, bare, under
# tonic-tracing-opentelemetry (the peer) and under looptel's gRPC layer.
# `kafka-*`: one consumed record through the fulfilment consumer's
# telemetry (see benches/src/messaging.rs).
#
# Throughput: `serve` (one thread, pinned to CPU 0) under `load` (one
# thread, pinned to CPU 1, 32 keep-alive connections, a gateway's mix: see benches/src/bin/load.rs),
# ROUNDS interleaved rounds of every stack, WINDOW seconds each after a
# second of warm-up; the median round. Memory: the server's resident set
# idle (after start-up and a second of requests on one connection), and
# sampled every second under MEMORY_SECONDS of load.
#
# THROUGHPUT=0 skips the load runs; SCENARIOS picks instruction scenarios.
# Time per request: `cargo bench -p looptel-benches`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
command -v taskset >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux; }
N1=${N1:-1000}
N2=${N2:-6000}
THROUGHPUT=${THROUGHPUT:-1}
ROUNDS=${ROUNDS:-5}
WINDOW=${WINDOW:-5}
MEMORY_SECONDS=${MEMORY_SECONDS:-60}
SCENARIOS=${SCENARIOS:-"bare noop-layer peer-sampled peer-unsampled looptel-sampled looptel-unsampled looptel-filtered red-sampled red-unsampled full-sampled full-unsampled service-bare floor-service-sampled floor-service-unsampled peer-service-sampled peer-service-unsampled service-sampled service-unsampled service-bare-health service-filtered grpc-bare grpc-peer-sampled grpc-peer-unsampled grpc-looptel-sampled grpc-looptel-unsampled kafka-bare kafka-peer-sampled kafka-peer-unsampled kafka-looptel-sampled kafka-looptel-unsampled"}
cargo build --release --locked -q -p looptel-benches --bin count --bin serve --bin load
out=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$out"; }
trap cleanup EXIT

count() { # scenario n -> "request-thread all-threads" instructions
    # --fair-sched: without it valgrind lets the request thread run on while
    # the export thread waits for the lock, the span queue fills and a third
    # of the sampled spans are dropped (counted, not exported): the export
    # thread's share read low and moved by thousands between runs.
    valgrind --tool=callgrind --fair-sched=yes --separate-threads=yes --callgrind-out-file="$out/cg" \
        ./target/release/count "$1" "$2" >/dev/null 2>&1
    local req all
    req=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$out/cg-01")
    all=$(awk '/^totals:/ {s += $2} END {print s}' "$out"/cg-*)
    rm -f "$out"/cg*
    echo "$req $all"
}
declare -A req all
for s in $SCENARIOS; do
    read -r a1 a2 < <(count "$s" "$N1")
    read -r b1 b2 < <(count "$s" "$N2")
    req[$s]=$(( (b1 - a1) / (N2 - N1) ))
    all[$s]=$(( (b2 - a2) / (N2 - N1) ))
done
base() { case $1 in service-filtered) echo service-bare-health ;; service-* | peer-service-* | floor-service-*) echo service-bare ;; grpc-*) echo grpc-bare ;; kafka-*) echo kafka-bare ;; *) echo bare ;; esac; }
echo "## Instructions per request"
printf '%-24s %12s %10s %12s %10s\n' scenario "req thread" "added" "all threads" "added"
for s in $SCENARIOS; do
    b=$(base "$s")
    [ -n "${req[$b]:-}" ] || { printf '%-24s %12d %10s %12d\n' "$s" "${req[$s]}" "" "${all[$s]}"; continue; }
    printf '%-24s %12d %10d %12d %10d\n' "$s" "${req[$s]}" $(( req[$s] - req[$b] )) \
        "${all[$s]}" $(( all[$s] - all[$b] ))
done
added() { echo $(( all[$1] - all[$(base "$1")] )); } # all threads

# Starts `serve <scenario>` pinned to CPU 0; sets $addr and $pid.
start() {
    taskset -c 0 ./target/release/serve "$1" >"$out/addr" 2>/dev/null &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 600); do [ -s "$out/addr" ] && break; sleep 0.05; done
    addr=$(cat "$out/addr")
    [ -n "$addr" ] || { echo "serve $1 did not start" >&2; exit 1; }
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A rps cpu idle peak last
LOADED="service-bare service-alwayson service-ratio peer-service-alwayson peer-service-ratio"
if [ "$THROUGHPUT" = 1 ]; then
    hz=$(getconf CLK_TCK)
    for s in $LOADED; do : >"$out/rps-$s"; done
    for _ in $(seq "$ROUNDS"); do
        for s in $LOADED; do
            start "$s"
            t0=$(cpu_ticks "$pid")
            read -r n secs < <(taskset -c 1 ./target/release/load "$addr" 1 "$WINDOW" 32)
            t1=$(cpu_ticks "$pid")
            stop
            awk -v n="$n" -v s="$secs" -v t=$(( t1 - t0 )) -v hz="$hz" -v w=$(( WINDOW + 1 )) \
                'BEGIN {printf "%.0f %.2f\n", n / s, t / hz / w}' >>"$out/rps-$s"
        done
    done
    for s in $LOADED; do
        read -r rps[$s] cpu[$s] < <(sort -n "$out/rps-$s" | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}')
    done
    # Memory: idle after start-up and one request, then under load.
    for s in service-bare service-ratio service-alwayson; do
        start "$s"
        taskset -c 1 ./target/release/load "$addr" 0 1 1 >/dev/null
        sleep 1
        idle[$s]=$(rss_kb "$pid")
        taskset -c 1 ./target/release/load "$addr" 0 "$MEMORY_SECONDS" 32 >/dev/null &
        lp=$!
        pids+=("$lp")
        mx=0
        for _ in $(seq "$MEMORY_SECONDS"); do
            sleep 1
            r=$(rss_kb "$pid")
            [ "$r" -gt "$mx" ] && mx=$r
        done
        wait "$lp" || true
        peak[$s]=$mx
        last[$s]=$(rss_kb "$pid")
        stop
    done
    echo
    echo "## Throughput over loopback (median of $ROUNDS interleaved ${WINDOW}-s rounds; server CPU share)"
    for s in $LOADED; do
        printf '%-24s %8s req/s  %5.2f of bare  cpu %s\n' "$s" "${rps[$s]}" \
            "$(awk -v a="${rps[$s]}" -v b="${rps[service-bare]}" 'BEGIN {print a / b}')" "${cpu[$s]}"
    done
    echo
    echo "## Resident memory (kB): idle, peak and last under ${MEMORY_SECONDS} s of load"
    for s in service-bare service-ratio service-alwayson; do
        printf '%-24s idle %8d  peak %8d  last %8d\n' "$s" "${idle[$s]}" "${peak[$s]}" "${last[$s]}"
    done
fi

# The targets beside the figures.
verdict() { if [ "$1" = 1 ]; then echo met; else echo "not met"; fi; }
le() { awk -v a="$1" -v b="$2" 'BEGIN {print (a <= b) ? 1 : 0}'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN {print (a >= b) ? 1 : 0}'; }
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4"; }
instr_row() { # label ours peer fraction fraction-label
    local ours peer limit
    [ -n "${all[$2]:-}" ] && [ -n "${all[$3]:-}" ] || return 0
    ours=$(added "$2")
    peer=$(added "$3")
    limit=$(awk -v p="$peer" -v f="$4" 'BEGIN {printf "%d", p * f}')
    row "$1" "+$ours instr ($(awk -v a="$ours" -v p="$peer" 'BEGIN {printf "%.2f", a / p}') of the peer's +$peer)" \
        "≤ +$limit ($5 of the peer)" "$(verdict "$(le "$ours" "$limit")")"
}
echo
echo "## Targets"
row "what" "figure" "target" "verdict"
row "---" "---" "---" "---"
instr_row "HTTP, every request sampled" service-sampled peer-service-sampled 0.25 "¼"
instr_row "HTTP, caller not sampled" service-unsampled peer-service-unsampled 0.10 "1/10"
# The floor: the job done by hand (benches/src/floor.rs); looptel and the
# peer as multiples of it.
floor_row() { # label ours floor
    [ -n "${all[$2]:-}" ] && [ -n "${all[$3]:-}" ] || return 0
    local ours floor
    ours=$(added "$2")
    floor=$(added "$3")
    row "$1" "+$ours instr = $(awk -v a="$ours" -v f="$floor" 'BEGIN {printf "%.1f", a / f}')× the floor's +$floor" \
        "${4:-reported}" "${5:-reported}"
}
floor_row "HTTP sampled, as a multiple of the floor" service-sampled floor-service-sampled
if [ -n "${all[service-unsampled]:-}" ] && [ -n "${all[floor-service-unsampled]:-}" ]; then
    u=$(added service-unsampled) fl=$(added floor-service-unsampled)
    floor_row "HTTP not sampled, as a multiple of the floor" service-unsampled floor-service-unsampled \
        "≤ 2× the floor" "$(verdict "$(le "$u" $(( 2 * fl )))")"
fi
floor_row "the peer, sampled, as a multiple of the floor" peer-service-sampled floor-service-sampled
if [ -n "${all[service-filtered]:-}" ]; then
    f=$(added service-filtered)
    row "HTTP, filtered (/health)" "+$f instr" "≤ +1000" "$(verdict "$(le "$f" 1000)")"
fi
if [ "$THROUGHPUT" = 1 ]; then
    for s in service-alwayson:0.80 service-ratio:0.88; do
        n=${s%%:*} t=${s##*:}
        r=$(awk -v a="${rps[$n]}" -v b="${rps[service-bare]}" 'BEGIN {printf "%.2f", a / b}')
        p=${n/service/peer-service}
        row "throughput, ${n#service-}" "$r of bare (${rps[$n]} vs ${rps[service-bare]} req/s; peer $(awk -v a="${rps[$p]}" -v b="${rps[service-bare]}" 'BEGIN {printf "%.2f", a / b}'))" \
            "≥ $t of bare" "$(verdict "$(ge "$r" "$t")")"
    done
    d=$(( idle[service-ratio] - idle[service-bare] ))
    row "idle memory" "+$(awk -v d="$d" 'BEGIN {printf "%.1f", d / 1024}') MB (${idle[service-ratio]} vs ${idle[service-bare]} kB)" \
        "≤ +2 MB" "$(verdict "$(le "$d" 2048)")"
    for s in service-ratio service-alwayson; do
        row "memory under ${MEMORY_SECONDS} s of load, ${s#service-}" \
            "peak $(( peak[$s] / 1024 )) MB, $(( last[$s] / 1024 )) MB at the end (bare: $(( peak[service-bare] / 1024 )) MB)" \
            "bounded, reported" "reported"
    done
fi
instr_row "gRPC unary, sampled" grpc-looptel-sampled grpc-peer-sampled 0.25 "¼"
instr_row "gRPC unary, caller not sampled" grpc-looptel-unsampled grpc-peer-unsampled 0.10 "1/10"
instr_row "Kafka record processed, sampled" kafka-looptel-sampled kafka-peer-sampled 0.25 "¼"
instr_row "Kafka record processed, not sampled" kafka-looptel-unsampled kafka-peer-unsampled 0.10 "1/10"
