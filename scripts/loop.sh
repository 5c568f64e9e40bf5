#!/usr/bin/env bash
# The whole loop on one machine, in one command:
#
#   order-service (fault switch on, spans to an OTLP JSON lines file, JSON
#   log lines to a file) → Debian's Prometheus (exemplar storage, the rules
#   looptel-slo generates from examples/order-service/slo.yaml with windows
#   scaled 60×: an hour of burn takes a minute) → Debian's Alertmanager →
#   looptel-retro (reading Prometheus, the spans file and the log file).
#
# It drives orders, breaks the inventory, waits for the page, prints where
# the incident card is and its summary, mends the inventory, waits for the
# resolved notification and prints the verification. Installs what it needs
# when missing (Debian packages), cleans up after itself. About two minutes
# once built.
#
# Environment:
#   LOOP_BIN_DIR   use the order-service, looptel-retro and looptel-slo
#                  binaries there instead of building them
#   LOOP_KEEP=1    keep the working directory (spans, logs, configs)
#   LOOP_TIMEOUT   seconds to wait for each step (default 120)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
timeout=${LOOP_TIMEOUT:-120}

say() { printf '==> %s\n' "$*"; }
die() { printf 'loop: %s\n' "$*" >&2; exit 1; }

# What the loop needs, from Debian, when missing.
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -n "${LOOP_BIN_DIR:-}" ]; then
    bin=$LOOP_BIN_DIR
else
    say "building order-service, looptel-retro, looptel-slo and looptel-doctor"
    cargo build --locked --quiet -p order-service -p looptel-retro -p looptel-slo -p looptel-doctor
    bin=$root/target/debug
fi
for b in order-service looptel-retro looptel-slo looptel-doctor; do
    [ -x "$bin/$b" ] || die "no $bin/$b"
done

work=$(mktemp -d -t looptel-loop.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${LOOP_KEEP:-}" = 1 ]; then
        say "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say "working in $work (removed at the end unless LOOP_KEEP=1)"

# A free loopback port.
port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port"
}

# Waits until "$@" succeeds, at most $timeout seconds; says what it waited for.
wait_for() {
    local what=$1
    shift
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || die "no $what within ${timeout}s (files in $work; LOOP_KEEP=1 keeps them)"
        sleep 1
    done
}

# The spec with its windows scaled 60×, for the rules and for retro alike.
cp examples/order-service/slo.yaml "$work/slo.yaml"
printf '\nwindows: { scale: 1h=1m }\n' >>"$work/slo.yaml"
"$bin/looptel-slo" generate "$work/slo.yaml" --out "$work/rules" >/dev/null

http=127.0.0.1:$(port)
grpc=127.0.0.1:$(port)
prom=127.0.0.1:$(port)
am=127.0.0.1:$(port)
retro=127.0.0.1:$(port)

say "order-service on http://$http (faults switchable)"
env ENABLE_FAULTS=1 HTTP_ADDR="$http" GRPC_ADDR="$grpc" \
    LOOPTEL_TRACES_FILE="$work/spans.jsonl" OTEL_BSP_SCHEDULE_DELAY=200 \
    "$bin/order-service" >"$work/service.log" 2>"$work/service.err" &
service_pid=$!
pids+=($service_pid)

# retro's tokens, as in production: Alertmanager's for the webhook (from a
# file, as its http_config reads it), another for actions.
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/webhook-token"
write_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

say "looptel-retro on http://$retro (cards in $work/retro.db)"
env RETRO_ADDR="$retro" RETRO_SPEC="$work/slo.yaml" \
    RETRO_DATABASE_URL="sqlite://$work/retro.db" \
    RETRO_WEBHOOK_TOKEN_FILE="$work/webhook-token" RETRO_WRITE_TOKEN="$write_token" \
    RETRO_PROMETHEUS_URL="http://$prom" \
    RETRO_TRACES_FILE="$work/spans.jsonl" RETRO_LOGS_FILE="$work/service.log" \
    RETRO_WINDOW=60s RETRO_SETTLE=2s RETRO_MIN_REQUESTS=10 \
    OTEL_TRACES_EXPORTER=none \
    "$bin/looptel-retro" >"$work/retro.log" 2>&1 &
pids+=($!)

say "Alertmanager on http://$am → retro"
cat >"$work/alertmanager.yml" <<EOF
route:
  receiver: retro
  group_by: [alertname, slo]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: retro
    webhook_configs:
      - url: http://$retro/alerts
        send_resolved: true
        http_config:
          authorization:
            credentials_file: $work/webhook-token
EOF
prometheus-alertmanager --config.file="$work/alertmanager.yml" \
    --storage.path="$work/alertmanager" --web.listen-address="$am" \
    --cluster.listen-address= >"$work/alertmanager.log" 2>&1 &
pids+=($!)

say "Prometheus on http://$prom (rules: $(ls "$work/rules" | tr '\n' ' '))"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $work/rules/*.rules.yaml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['$am']
scrape_configs:
  - job_name: order-service
    static_configs:
      - targets: ['$http']
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
    --web.listen-address="$prom" --enable-feature=exemplar-storage \
    --rules.alert.resend-delay=1s >"$work/prometheus.log" 2>&1 &
pids+=($!)

up() { curl -fs -o /dev/null "$1"; }
wait_for "order-service" up "http://$http/health"
wait_for "looptel-retro" up "http://$retro/health"
wait_for "Alertmanager" up "http://$am/-/ready"
wait_for "Prometheus" up "http://$prom/-/ready"

say "orders, 20 a second"
(
    while true; do
        curl -s -o /dev/null -X POST "http://$http/orders" \
            -H 'content-type: application/json' -H 'x-tenant-id: acme' \
            -d '{"customer_id":"c-1","items":[{"sku":"pen","quantity":1}]}' || true
        sleep 0.05
    done
) &
pids+=($!)

recorded() {
    curl -fsS "http://$prom/api/v1/query" \
        --data-urlencode 'query=slo:error_ratio:rate5m{slo="order-api-availability"}' |
        jq -e '.data.result | length > 0' >/dev/null
}
wait_for "recorded error ratio" recorded
sleep 3

# Can it be observed? Asked before it is broken: the doctor's summary line.
# (The settings of this order-service: another one started from the same
# binary — a test running beside — has settings of its own.)
doctor=$("$bin/looptel-doctor" --metrics-url "http://$http/metrics" --probe "http://$http/orders/doctor-probe" --probe-header "x-tenant-id: acme" \
    --env-of "$service_pid" --logs "$work/service.log" --traces "$work/spans.jsonl" \
    --slo examples/order-service/slo.yaml --name order-service --format json) || true
say "looptel-doctor: $(jq -r '.counts | "\(.fail) fail, \(.warn) warn, \(.pass) pass, \(.not_observable) not-observable"' <<<"$doctor")"
jq -r '.checks[] | select(.status == "fail") | "   fail: \(.id): \(.summary) \(.evidence | join("; "))"' <<<"$doctor"

say "fault on: half the inventory calls fail"
curl -fsS -X PUT "http://$http/admin/faults" -H 'content-type: application/json' \
    -d '{"inventory_error_rate": 0.5}' >/dev/null
start=$SECONDS

# retro's cards as JSON.
cards() { curl -fsS -H 'accept: application/json' "http://$retro/incidents$1"; }
card_id=""
paged() {
    card_id=$(cards "" | jq -r \
        '[.[] | select((.alert.labels.alertname | startswith("ErrorBudgetBurn")) and (.evidence.traces // [] | length > 0))][0].id // empty')
    [ -n "$card_id" ]
}
wait_for "page with evidence" paged
say "paged after $((SECONDS - start))s: incident card http://$retro/incidents/$card_id"
curl -fsS "http://$retro/incidents?format=md" | grep -F "/incidents/$card_id)" | sed 's/^- \[[^]]*\]([^)]*) — /   /'
card=$(cards "/$card_id")
echo "   most likely: $(jq -r '.evidence.hypotheses[0].text // "no hypothesis"' <<<"$card")"
echo "   what changed: $(jq -r '[.evidence.changes[] | "\(.kind) \(.what)"] | join("; ")' <<<"$card")"
echo "   traces: $(jq -r '[.evidence.traces[].trace_id] | join(", ")' <<<"$card")"
echo "   log lines: $(jq -r '.evidence.logs | length' <<<"$card"), dependencies that moved: $(jq -r '[.evidence.dependencies[] | select(.moved) | .name] | join(", ")' <<<"$card")"

say "fault off"
curl -fsS -X DELETE "http://$http/admin/faults" >/dev/null
start=$SECONDS
checked() {
    cards "/$card_id" | jq -e '.verification != null' >/dev/null
}
wait_for "resolved notification and its verification" checked
card=$(cards "/$card_id")
state=$(jq -r '.state' <<<"$card")
say "resolved after $((SECONDS - start))s: $state — $(jq -r '.verification.reason' <<<"$card")"
echo "   card: http://$retro/incidents/$card_id (a page in a browser; ?format=md or JSON for tools)"

# The post-mortem's action items are writes: they need the write token.
action='{"text": "Alert on the inventory'"'"'s own SLO", "link": "https://example.com/pr/1"}'
refused=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://$retro/incidents/$card_id/actions" \
    -H 'content-type: application/json' -d "$action")
[ "$refused" = 401 ] || die "an action without the write token answered $refused, not 401"
curl -fsS -X POST "http://$retro/incidents/$card_id/actions" -H "Authorization: Bearer $write_token" \
    -H 'content-type: application/json' -d "$action" >/dev/null
say "action added with the write token (without it: $refused): $(cards "/$card_id" | jq -r '.actions[0].text')"
[ "$state" = verified ] || die "the recovery was not verified"
