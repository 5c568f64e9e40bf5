//! The order-service's SLO rules in a real Prometheus (Debian's), windows
//! scaled down 60× (the 1h/5m page pair becomes 1m/5s): traffic inside the
//! budget raises nothing; failures injected through the fault switch take
//! the availability page through pending to firing; once the fault is
//! removed, it resolves. On native histograms (one setting), a latency SLO
//! at a bound between classic buckets pages on slow calls and only then.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Service, Traffic};
use looptel_tests::Prometheus;
use serde_json::Value;

const SLO: &str = "order-api-availability";

/// `DELETE /admin/faults`: the service healthy again.
async fn clear_faults(addr: &str) {
    assert_eq!(common::faults(addr, None).await, 204);
}

/// The states of the availability page (`ErrorBudgetBurn1h`) Prometheus
/// reports now.
async fn page_states(prometheus: &Prometheus) -> BTreeSet<String> {
    page_states_of(prometheus, SLO).await
}

/// The states of `slo`'s page (`ErrorBudgetBurn1h`) Prometheus reports now.
async fn page_states_of(prometheus: &Prometheus, slo: &str) -> BTreeSet<String> {
    let alerts = prometheus.api("alerts").await;
    alerts["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == "ErrorBudgetBurn1h" && a["labels"]["slo"] == slo)
        .filter_map(|a| a["state"].as_str().map(str::to_owned))
        .collect()
}

/// Polls until `done` holds for the page's states, recording every state
/// seen on the way; fails after `limit`.
async fn watch(
    prometheus: &Prometheus,
    limit: Duration,
    seen: &mut Vec<BTreeSet<String>>,
    done: impl Fn(&BTreeSet<String>) -> bool,
) {
    watch_slo(prometheus, SLO, limit, seen, done).await;
}

async fn watch_slo(
    prometheus: &Prometheus,
    slo: &str,
    limit: Duration,
    seen: &mut Vec<BTreeSet<String>>,
    done: impl Fn(&BTreeSet<String>) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let states = page_states_of(prometheus, slo).await;
        if seen.last() != Some(&states) {
            seen.push(states.clone());
        }
        if done(&states) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; states seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_page_through_pending_and_firing_and_the_page_resolves_after_the_fix() {
    let mut svc = Service::start(&[
        ("ENABLE_FAULTS", "1".to_owned()),
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
    ]);
    let addr = svc.http_addr();

    // The committed spec, windows scaled down as a demo would.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(dir.join("slo.yaml")).expect("spec");
    let spec = looptel_slo::Spec::from_yaml(&format!("{text}\nwindows: {{ scale: 1h=1m }}\n"))
        .expect("valid spec");
    let rules = looptel_slo::generate(&spec, false).expect("rules");
    let prometheus = Prometheus::start("order-service", addr.parse().expect("addr"), &rules);

    // Orders, 20 a second, until the end.
    let traffic = Traffic::start(&addr);

    // Healthy traffic, rules evaluated over it: no page.
    let ratio = looptel_tests::eventually(
        looptel_tests::budget::PROCESS,
        "the recorded error ratio",
        async || common::recorded_ratio(&prometheus, SLO).await,
    )
    .await;
    assert_eq!(ratio, "0", "healthy traffic has no errors");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        page_states(&prometheus).await.is_empty(),
        "no page while healthy"
    );

    // Every inventory call fails: pending, then firing.
    assert_eq!(
        common::faults(&addr, Some(r#"{"inventory_error_rate": 1}"#)).await,
        200
    );
    let faulted = Instant::now();
    let mut seen = Vec::new();
    let firing = |s: &BTreeSet<String>| s.contains("firing");
    watch(&prometheus, Duration::from_secs(60), &mut seen, firing).await;
    let to_fire = faulted.elapsed();
    // Pending before firing, as Prometheus recorded it at each evaluation
    // (its ALERTS series), not as a poll happened to catch it.
    let pending = prometheus
        .api(&format!(
            "query?query=count_over_time(ALERTS{{alertname=%22ErrorBudgetBurn1h%22,slo=%22{SLO}%22,alertstate=%22pending%22}}[10m])"
        ))
        .await;
    let evaluations: f64 = pending["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        evaluations >= 1.0,
        "pending before firing: {pending}; states polled: {seen:?}"
    );
    let alert: Value = prometheus.api("alerts").await["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["alertname"] == "ErrorBudgetBurn1h" && a["labels"]["slo"] == SLO)
        .cloned()
        .expect("the page");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["service"], "order-service");
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks.example.com/order-service"
    );

    // The fault removed: the short window empties and the page resolves.
    clear_faults(&addr).await;
    let fixed = Instant::now();
    watch(
        &prometheus,
        Duration::from_secs(60),
        &mut seen,
        BTreeSet::is_empty,
    )
    .await;
    let took = fixed.elapsed();
    // The 5-second short window (scaled from 5 minutes) plus an
    // evaluation or two: the page clears within about 10 scaled minutes.
    assert!(
        took < Duration::from_secs(20),
        "resolved {took:?} after the fix"
    );
    eprintln!("page firing {to_fire:?} after the fault, resolved {took:?} after the fix");

    drop(traffic);
}

/// One setting switches the service to native histograms; a latency SLO at
/// 350 ms — between the classic buckets 0.25 and 0.5, which the classic
/// rules refuse — then works under the real Prometheus (native histograms
/// on): quiet while calls take 250 ms, paging once they take 450 ms, and
/// resolving after the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_native_histograms_a_350ms_latency_slo_pages_when_calls_get_slow_and_only_then() {
    const LATENCY: &str = "place-order-under-350ms";
    let mut svc = Service::start(&[
        ("ENABLE_FAULTS", "1".to_owned()),
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
        ("LOOPTEL_METRICS_HISTOGRAMS", "native".to_owned()),
    ]);
    let addr = svc.http_addr();
    let spec = looptel_slo::Spec::from_yaml(&format!(
        r#"
service: order-service
owner: team-orders
runbook_url: https://runbooks.example.com/order-service
response_sla: {{ page: 15m, ticket: next business day }}
selector: {{ job: order-service }}
histograms: native
windows: {{ scale: 1h=1m }}
slos:
  - name: {LATENCY}
    objective: 99
    sli:
      http: {{ routes: ["/orders"], methods: ["POST"] }}
      latency_under: 350ms
"#
    ))
    .expect("350 ms is a valid bound on native histograms");
    let rules = looptel_slo::generate(&spec, false).expect("rules");
    let prometheus =
        Prometheus::start_native("order-service", addr.parse().expect("addr"), &rules, None);
    let traffic = Traffic::start(&addr);
    let set_delay = async |ms: u64| {
        let body = format!(r#"{{"inventory_delay_ms": {ms}}}"#);
        assert_eq!(common::faults(&addr, Some(&body)).await, 200);
    };
    let ratio = async || {
        common::recorded_ratio(&prometheus, LATENCY)
            .await
            .and_then(|v| v.parse::<f64>().ok())
    };

    // Scraped as a native histogram: one series per label set.
    let native = looptel_tests::eventually(
        looptel_tests::budget::PROCESS,
        "POST /orders as a native histogram",
        async || {
            let body = prometheus
                .api("query?query=histogram_count(http_server_request_duration_seconds%7Bhttp_route%3D%22%2Forders%22%7D)")
                .await;
            body["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|n| *n > 0.0)
        },
    )
    .await;
    assert!(native > 0.0);

    // Calls of 250 ms: under the bound, no errors, no page.
    set_delay(250).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let quiet = ratio().await.expect("the recorded ratio");
    assert!(
        quiet < 0.05,
        "250 ms calls are within 350 ms: ratio {quiet}"
    );
    assert!(
        page_states_of(&prometheus, LATENCY).await.is_empty(),
        "no page while calls take 250 ms"
    );

    // Calls of 450 ms: over the bound, the page fires.
    set_delay(450).await;
    let mut seen = Vec::new();
    watch_slo(
        &prometheus,
        LATENCY,
        Duration::from_secs(60),
        &mut seen,
        |s| s.contains("firing"),
    )
    .await;
    let slow = ratio().await.expect("the recorded ratio");
    assert!(slow > 0.5, "450 ms calls are errors: ratio {slow}");

    // Fixed: it resolves.
    clear_faults(&addr).await;
    watch_slo(
        &prometheus,
        LATENCY,
        Duration::from_secs(60),
        &mut seen,
        BTreeSet::is_empty,
    )
    .await;
    drop(traffic);
}
