#!/usr/bin/env bash
# Instructions per request of each stack, counted by callgrind (steady on
# shared machines, unlike time) on the thread that serves the requests: the
# batch processor's export thread, off the request path, is left out. Each
# scenario runs twice, with N1 and N2 requests (thousands: the peer stack
# has periodic upkeep that fewer requests do not average out); the difference divided by
# N2 - N1 cancels start-up.
# Time per request: `cargo bench -p looptel-benches`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
N1=${N1:-1000}
N2=${N2:-6000}
cargo build --release --locked -q -p looptel-benches --bin count
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() { # scenario n -> instructions on the request thread (thread 1)
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/cg" \
        ./target/release/count "$1" "$2" >/dev/null 2>&1
    sed -n 's/^totals: \([0-9]*\).*/\1/p' "$out/cg-01"
    rm -f "$out"/cg*
}
declare -A per
for s in bare noop-layer peer-sampled peer-unsampled looptel-sampled looptel-unsampled looptel-filtered red-sampled red-unsampled full-sampled full-unsampled; do
    a=$(count "$s" "$N1"); b=$(count "$s" "$N2")
    per[$s]=$(( (b - a) / (N2 - N1) ))
done
printf '%-20s %14s %16s\n' scenario "instr/request" "added over bare"
for s in bare noop-layer peer-sampled peer-unsampled looptel-sampled looptel-unsampled looptel-filtered red-sampled red-unsampled full-sampled full-unsampled; do
    printf '%-20s %14d %16d\n' "$s" "${per[$s]}" $(( per[$s] - per[bare] ))
done
ps=$(( per[peer-sampled] - per[bare] )); pu=$(( per[peer-unsampled] - per[bare] ))
ls=$(( per[looptel-sampled] - per[bare] )); lu=$(( per[looptel-unsampled] - per[bare] ))
echo
echo "sampled:   looptel adds ${ls}, peer ${ps} (target: at most a quarter, $(( ps / 4 )))"
echo "unsampled: looptel adds ${lu}, peer ${pu} (target: at most a tenth, $(( pu / 10 )))"
rs=$(( per[red-sampled] - per[bare] )); ru=$(( per[red-unsampled] - per[bare] ))
echo "server + RED metrics: sampled ${rs}, unsampled ${ru}"
fs=$(( per[full-sampled] - per[bare] )); fu=$(( per[full-unsampled] - per[bare] ))
echo "full stack (server + RED + baggage + logs): sampled ${fs}, unsampled ${fu}"
