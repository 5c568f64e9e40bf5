//! The order-service's SLO rules in a real Prometheus (Debian's), windows
//! scaled down 60× (the 1h/5m page pair becomes 1m/5s): traffic inside the
//! budget raises nothing; failures injected through the fault switch take
//! the availability page through pending to firing; once the fault is
//! removed, it resolves.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Service, Traffic};
use looptel_tests::Prometheus;
use serde_json::Value;

const SLO: &str = "order-api-availability";

/// The states of the availability page (`ErrorBudgetBurn1h`) Prometheus
/// reports now.
async fn page_states(prometheus: &Prometheus) -> BTreeSet<String> {
    let alerts = prometheus.api("alerts").await;
    alerts["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == "ErrorBudgetBurn1h" && a["labels"]["slo"] == SLO)
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
    let deadline = Instant::now() + limit;
    loop {
        let states = page_states(prometheus).await;
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
        async || {
            let ratio = prometheus
                .api(&format!(
                    "query?query=slo:error_ratio:rate5m{{slo=%22{SLO}%22}}"
                ))
                .await;
            ratio["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_owned)
        },
    )
    .await;
    assert_eq!(ratio, "0", "healthy traffic has no errors");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        page_states(&prometheus).await.is_empty(),
        "no page while healthy"
    );

    // Every inventory call fails: pending, then firing.
    let client = reqwest::Client::new();
    let res = client
        .put(format!("http://{addr}/admin/faults"))
        .header("content-type", "application/json")
        .body(r#"{"inventory_error_rate": 1}"#)
        .send()
        .await
        .expect("set faults");
    assert_eq!(res.status(), 200);
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
    let res = client
        .delete(format!("http://{addr}/admin/faults"))
        .send()
        .await
        .expect("clear faults");
    assert_eq!(res.status(), 204);
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
