#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of executions (default 200000
# each; RUNS=… to change), on stable Rust: cargo-fuzz with the sanitizer
# off. Outside the workspace and outside scripts/test.sh: a finding stops
# the run and leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
RUNS="${RUNS:-200000}"
for target in traceparent baggage header_map message_headers webhook; do
    echo "==> $target ($RUNS runs)"
    cargo fuzz run --sanitizer none "$target" -- -runs="$RUNS" -max_len=20000
done
