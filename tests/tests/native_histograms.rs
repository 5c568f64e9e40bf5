//! Native histograms in a real Prometheus (Debian's 2.42, with
//! `--enable-feature=native-histograms`): it asks for the protobuf format,
//! stores one series per label set instead of one per bucket, answers
//! `histogram_quantile` within one bucket of the exact quantile of what was
//! observed, and keeps the exemplars.
//!
//! The registry keeps classic and native buckets. Prometheus 2.42 reads a
//! native histogram's exemplars from the classic buckets of the same
//! message only (its parser knows no `exemplars` field of the histogram
//! itself, which later versions read first and looptel fills as well), so
//! with native buckets alone this Prometheus stores no exemplar; it
//! stores no classic series either way (it keeps the native ones of a
//! histogram that has both, as later versions do by default).

use std::collections::{BTreeMap, HashSet};

use axum::Router;
use looptel_core::TraceIds;
use looptel_red_metrics::{Histograms, NativeHistograms, Registry, metrics_endpoint};
use looptel_tests::{Prometheus, budget, eventually, serve};
use opentelemetry::trace::{SpanId, TraceId};
use serde_json::Value;

/// Latencies spread log-uniformly over 1 ms..4 s, the same every run.
fn latencies(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (x >> 11) as f64 / (1_u64 << 53) as f64;
            0.001 * 4000_f64.powf(u)
        })
        .collect()
}

fn exact_quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((q * sorted.len() as f64).ceil() as usize).saturating_sub(1)]
}

fn value(body: &Value) -> Option<f64> {
    body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_one_native_series_per_label_set_with_quantiles_and_exemplars() {
    let native = NativeHistograms::default();
    let registry = Registry::new().with_histograms(Histograms::ClassicAndNative(native));
    let histogram = registry.histogram(
        "checkout.duration",
        "s",
        "Checkout latency.",
        &["route"],
        looptel_red_metrics::DURATION_BUCKETS,
    );
    let routes = ["/a", "/b", "/c"];
    let mut observed: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut sampled = HashSet::new();
    for (i, route) in routes.iter().enumerate() {
        let values = latencies(3000, i as u64 + 1);
        for (j, v) in values.iter().enumerate() {
            // Every tenth call sampled: its trace is an exemplar candidate.
            let ids = (j % 10 == 0).then(|| {
                let trace = TraceId::from(((i as u128) << 64) | (j as u128 + 1));
                sampled.insert(trace.to_string());
                TraceIds::new(trace, SpanId::from(j as u64 + 1), true)
            });
            histogram.with(&[route], |h| h.observe(*v, ids.flatten()));
        }
        observed.insert(route, values);
    }
    let service = serve(Router::new().route("/metrics", metrics_endpoint(registry.clone()))).await;
    let prometheus = Prometheus::start_native("native", service, &[], None);

    // One series per route, no `_bucket` series at all.
    let series = eventually(budget::PROCESS, "the native series", async || {
        let body = prometheus
            .api("query?query=count%20by%20(__name__)(%7B__name__%3D~%22checkout_duration_seconds.*%22%7D)")
            .await;
        let found: BTreeMap<String, f64> = body["data"]["result"]
            .as_array()?
            .iter()
            .filter_map(|r| {
                Some((
                    r["metric"]["__name__"].as_str()?.to_owned(),
                    r["value"][1].as_str()?.parse().ok()?,
                ))
            })
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(
        series,
        BTreeMap::from([("checkout_duration_seconds".to_owned(), 3.0)]),
        "one native series per route (classic would be {} per route)",
        looptel_red_metrics::DURATION_BUCKETS.len() + 3
    );

    // The quantile Prometheus computes from the buckets is in the bucket
    // of the exact one: off by at most the bucket's width, 2^(2^-3) − 1.
    let width = (2_f64.powf(2_f64.powi(-i32::from(native.schema())))) - 1.0;
    for route in routes {
        for q in [0.5, 0.9, 0.99] {
            let exact = exact_quantile(&observed[route], q);
            let query = format!(
                "query?query=histogram_quantile({q},checkout_duration_seconds%7Broute%3D%22{route}%22%7D)"
            );
            let got = value(&prometheus.api(&query).await).expect("a quantile");
            let error = (got - exact).abs() / exact;
            assert!(
                error <= width,
                "{route} p{}: Prometheus {got}, exact {exact}: {:.1} % off, one bucket is {:.1} %",
                q * 100.0,
                error * 100.0,
                width * 100.0
            );
        }
        let count = value(
            &prometheus
                .api(&format!(
                    "query?query=histogram_count(checkout_duration_seconds%7Broute%3D%22{route}%22%7D)"
                ))
                .await,
        );
        assert_eq!(count, Some(3000.0), "{route}: every observation counted");
    }

    // The exemplars stored are traces that were sampled.
    let stored = eventually(
        budget::PROCESS,
        "exemplars of the native histogram",
        async || {
            let found = prometheus
                .exemplar_trace_ids("checkout_duration_seconds")
                .await;
            (!found.is_empty()).then_some(found)
        },
    )
    .await;
    for trace in &stored {
        assert!(sampled.contains(trace), "{trace} was not sampled");
    }
}
