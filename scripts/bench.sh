#!/usr/bin/env bash
# Instructions per request of each stack, counted by callgrind (steady on
# shared machines, unlike time): on the thread that serves the requests, and
# on all threads together (the batch processor's export thread and the log
# writer included). Each scenario runs twice, with N1 and N2 requests
# (thousands: the peer stack has periodic upkeep that fewer requests do not
# average out); the difference divided by N2 - N1 cancels start-up and
# shutdown.
#
# `service-*` is the reference service built exactly as its `main` builds it
# (Telemetry, order_service::app) against its own routes without the layer
# (`service-bare`): the figure users get. The other scenarios are the
# hand-assembled stacks of earlier reports, kept for comparison. `grpc-*`:
# a unary call to tonic's generated health service, bare, under
# tonic-tracing-opentelemetry (the peer) and under looptel's gRPC layer.
# Time per request: `cargo bench -p looptel-benches`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
N1=${N1:-1000}
N2=${N2:-6000}
SCENARIOS=${SCENARIOS:-"bare noop-layer peer-sampled peer-unsampled looptel-sampled looptel-unsampled looptel-filtered red-sampled red-unsampled full-sampled full-unsampled service-bare service-sampled service-unsampled grpc-bare grpc-peer-sampled grpc-peer-unsampled grpc-looptel-sampled grpc-looptel-unsampled"}
cargo build --release --locked -q -p looptel-benches --bin count
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() { # scenario n -> "request-thread all-threads" instructions
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/cg" \
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
base() { case $1 in service-*) echo service-bare ;; grpc-*) echo grpc-bare ;; *) echo bare ;; esac; }
printf '%-20s %14s %12s %14s %12s\n' scenario "req thread" "added" "all threads" "added"
for s in $SCENARIOS; do
    b=$(base "$s")
    [ -n "${req[$b]:-}" ] || { printf '%-20s %14d\n' "$s" "${req[$s]}"; continue; }
    printf '%-20s %14d %12d %14d %12d\n' "$s" "${req[$s]}" $(( req[$s] - req[$b] )) \
        "${all[$s]}" $(( all[$s] - all[$b] ))
done
