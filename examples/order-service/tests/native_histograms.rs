//! order-service with native histograms (`LOOPTEL_METRICS_HISTOGRAMS=
//! classic+native`) scraped by Debian's Prometheus with native histograms
//! on: every duration is one series per label set, none per bucket; the
//! p50/p90/p99 Prometheus computes from the native buckets are within one
//! bucket's width of the exact quantiles of the requests the test sent —
//! exact as the service's own server spans measured them, written to a
//! file — the histogram counts exactly those requests, and the exemplars
//! Prometheus stores are their traces. (Prometheus 2.42 reads a native
//! histogram's exemplars from the classic buckets beside it: hence
//! `classic+native`; it stores the native side only.)

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Service, Traffic};
use looptel_tests::{Prometheus, budget, eventually};
use serde_json::Value;

/// The durations, in seconds, of the `POST /orders` server spans written.
fn server_durations(spans: &std::path::Path) -> Vec<(String, f64)> {
    let nanos = |s: &Value, k: &str| {
        s[k].as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default()
    };
    looptel_tests::otlp_json_spans(spans)
        .iter()
        .filter(|s| s["name"] == "POST /orders" && s["kind"] == 2)
        .map(|s| {
            let d = nanos(s, "endTimeUnixNano").saturating_sub(nanos(s, "startTimeUnixNano"));
            (
                s["traceId"].as_str().unwrap_or_default().to_owned(),
                d as f64 / 1e9,
            )
        })
        .collect()
}

fn value(body: &Value) -> Option<f64> {
    body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

async fn set_delay(addr: &str, ms: u64) {
    let body = format!(r#"{{"inventory_delay_ms": {ms}}}"#);
    assert_eq!(common::faults(addr, Some(&body)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_order_service_durations_as_native_series_with_exact_quantiles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spans = dir.path().join("spans.jsonl");
    let mut svc = Service::start(&[
        ("ENABLE_FAULTS", "1".to_owned()),
        ("LOOPTEL_TRACES_FILE", spans.display().to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ("LOOPTEL_METRICS_HISTOGRAMS", "classic+native".to_owned()),
    ]);
    let addr = svc.http_addr();
    let prometheus =
        Prometheus::start_native("order-service", addr.parse().expect("addr"), &[], None);

    // Latencies spread over three levels: the inventory answering at once,
    // after 30 ms, after 120 ms.
    let traffic = Traffic::start(&addr);
    for (ms, secs) in [(0, 3), (30, 2), (120, 1)] {
        set_delay(&addr, ms).await;
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    traffic.pause();
    set_delay(&addr, 0).await;

    // Every request the histogram counted is a server span written, and
    // the other way round.
    let orders = "http_server_request_duration_seconds%7Bhttp_route%3D%22%2Forders%22%2Chttp_request_method%3D%22POST%22%7D";
    let durations = eventually(
        budget::PROCESS,
        "the spans and the scrape agree",
        async || {
            let written = server_durations(&spans);
            let counted = value(
                &prometheus
                    .api(&format!("query?query=histogram_count(sum({orders}))"))
                    .await,
            )?;
            (!written.is_empty() && counted == written.len() as f64).then_some(written)
        },
    )
    .await;
    assert!(durations.len() >= 40, "{} requests", durations.len());

    // One series per label set: no `_bucket` series at all.
    let names = prometheus
        .api("query?query=count%20by%20(__name__)(%7B__name__%3D~%22http_server_request_duration_seconds.*%22%7D)")
        .await;
    let names: Vec<&str> = names["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["metric"]["__name__"].as_str())
        .collect();
    assert_eq!(names, ["http_server_request_duration_seconds"]);

    // The quantiles, within one bucket's width (schema 3: 2^(1/8) − 1).
    let width = 2_f64.powf(1.0 / 8.0) - 1.0;
    let mut sorted: Vec<f64> = durations.iter().map(|(_, d)| *d).collect();
    sorted.sort_by(f64::total_cmp);
    for q in [0.5, 0.9, 0.99] {
        let exact = sorted[((q * sorted.len() as f64).ceil() as usize).saturating_sub(1)];
        let got = value(
            &prometheus
                .api(&format!(
                    "query?query=histogram_quantile({q},sum({orders}))"
                ))
                .await,
        )
        .expect("a quantile");
        let error = (got - exact).abs() / exact;
        assert!(
            error <= width * 1.02,
            "p{}: Prometheus {got:.6} s, the spans {exact:.6} s: {:.1} % off (a bucket: {:.1} %)",
            q * 100.0,
            error * 100.0,
            width * 100.0
        );
        eprintln!("p{}: {got:.6} s against {exact:.6} s", q * 100.0);
    }

    // The exemplars stored are traces of those requests.
    let sent: HashSet<String> = durations.into_iter().map(|(t, _)| t).collect();
    let stored = eventually(budget::PROCESS, "exemplars", async || {
        let found = prometheus.exemplar_trace_ids(orders).await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    for t in &stored {
        assert!(sent.contains(t), "{t} is not a request's trace");
    }
}
