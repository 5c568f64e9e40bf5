#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run calls this script).
# On a fresh Debian machine with only Rust installed it first installs what
# the checks need; everything the tests start (collectors, servers) they
# start themselves on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
# A run from a clean clone gains nothing from incremental caches but their
# size on disk (2 GB here); a developer's own setting wins.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

need_cargo_tool() { # <binary> <crate>
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "==> installing $2 from crates.io"
        cargo install --locked "$2"
    fi
}
need_cargo_tool cargo-nextest cargo-nextest
need_cargo_tool cargo-deny cargo-deny

# Real Prometheus (and promtool) and Alertmanager for the metrics, SLO and
# retro tests, a headless Chromium for the incident card's page, and
# docker-compose to validate deploy/compose.yaml (no engine runs): Debian's.
missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# curl and jq for scripts/loop.sh, which a test runs.
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]} (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# RabbitMQ on 127.0.0.1:5672 for the AMQP tests (guest/guest), from Debian,
# started here when nothing listens there (AMQP_URL points elsewhere).
if [ -z "${AMQP_URL:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        echo "==> installing rabbitmq-server (Debian package)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server
    fi
    echo "==> starting rabbitmq-server"
    (rabbitmq-server >/tmp/looptel-rabbitmq.log 2>&1 &)
    for _ in $(seq 1 120); do
        (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break
        sleep 1
    done
    (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || { echo "RabbitMQ did not start"; exit 1; }
fi

# PostgreSQL on 127.0.0.1:5432 (user postgres, trust on loopback) for
# retro's store tests, which create and drop databases of their own; from
# Debian, started here when nothing listens there (RETRO_TEST_POSTGRES_URL
# points elsewhere).
if [ -z "${RETRO_TEST_POSTGRES_URL:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    if ! ls /etc/postgresql/*/main/pg_hba.conf >/dev/null 2>&1; then
        echo "==> installing postgresql (Debian package)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
    fi
    pg=$(ls /etc/postgresql | sort -V | tail -1)
    hba=/etc/postgresql/$pg/main/pg_hba.conf
    grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    echo "==> starting PostgreSQL $pg"
    pg_ctlcluster --skip-systemctl-redirect "$pg" main start || true  # may already be starting
    for _ in $(seq 1 60); do
        (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && break
        sleep 1
    done
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null || { echo "PostgreSQL did not start"; exit 1; }
fi

# NATS with JetStream on 127.0.0.1:4222 for the NATS tests, from Debian,
# started here when nothing listens there.
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
    if ! command -v nats-server >/dev/null 2>&1; then
        echo "==> installing nats-server (Debian package)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
    fi
    echo "==> starting nats-server"
    mkdir -p /tmp/looptel-nats
    (nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/looptel-nats >/tmp/looptel-nats.log 2>&1 &)
    for _ in $(seq 1 30); do
        (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break
        sleep 1
    done
    (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null || { echo "nats-server did not start"; exit 1; }
fi

# /bin/kill (util-linux) sends SIGTERM in the process tests.
if ! type -P kill >/dev/null; then
    echo "==> installing util-linux for /bin/kill"
    apt-get update -qq && apt-get install -y -qq util-linux
fi

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

echo "==> cargo deny check bans licenses sources"
cargo deny --locked check bans licenses sources

echo "==> cargo doc (broken intra-doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked --quiet

echo "==> doc tests"
cargo test --workspace --all-features --doc --locked --quiet

echo "==> the facade's small build (axum, OTLP/HTTP): no tonic, rdkafka, lapin, async-nats or zipkin"
small=$(cargo tree -p looptel --no-default-features -F axum,otlp-http -e normal --prefix none --locked)
if grep -E '^(tonic|rdkafka|lapin|async-nats|opentelemetry-zipkin) ' <<<"$small"; then
    echo "the small build pulls the crates above"
    exit 1
fi
# And a telemetry built without gRPC and B3 refuses them by name.
cargo test -p looptel-telemetry --no-default-features -F otlp-http --lib --locked --quiet lacking

echo "==> every library crate packages (cargo package: built from its .crate, nothing uploaded)"
# cargo unpacks the packaged crates into CARGO_HOME's registry sources and
# does not unpack the same name and version again: a source from an earlier
# run would be verified instead of today's. looptel's crates never come from
# crates.io here, so any unpacked copy is stale.
# Their compiled copies too: cargo takes a registry crate of the same
# version as unchanged.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/looptel-* \
    "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/looptel-*
for d in target/debug/deps/looptel_*.d; do
    [ -e "$d" ] && grep -q "/registry/src/" "$d" || continue
    h=$(basename "$d" .d)
    rm -f target/debug/deps/"$h".d target/debug/deps/lib"$h".*
    n=${h%-*}
    rm -rf target/debug/.fingerprint/"${n//_/-}-${h##*-}"
done
cargo package --workspace --locked --allow-dirty --quiet \
    --exclude looptel-benches --exclude looptel-tests --exclude order-service --exclude w3c-conformance

echo "==> tests"
cargo nextest run --workspace --all-features --locked --no-fail-fast
