//! A real Prometheus (the Debian package) scrapes a service on 127.0.0.1
//! with exemplar storage on; the exemplars it stores are the trace ids of
//! the requests that were sent.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use looptel_core::{Instrumentation, Propagator};
use looptel_http_layer::server::{ServerLayer, skip_paths};
use looptel_red_metrics::{HttpServerMetrics, RedLayer, Registry, metrics_endpoint};
use looptel_tests::{Prometheus, serve};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_the_trace_ids_of_the_requests_as_exemplars() {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let registry = Registry::new();
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .route("/metrics", metrics_endpoint(registry.clone()))
        .layer(RedLayer::new(HttpServerMetrics::new(&registry)))
        .layer(
            ServerLayer::new(Instrumentation::new(&provider, Propagator::default()))
                .filter(skip_paths(["/metrics"])),
        );
    let service = serve(app).await;
    let prometheus = Prometheus::start("looptel", service, &[]);

    let client = reqwest::Client::new();
    for i in 0..20 {
        let res = client
            .get(format!("http://{service}/orders/{i}"))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200);
    }
    let sent: HashSet<String> = spans
        .get_finished_spans()
        .expect("spans")
        .iter()
        .map(|s| s.span_context.trace_id().to_string())
        .collect();
    assert_eq!(sent.len(), 20);

    // Wait for a scrape to land, then ask for the stored exemplars.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let body = prometheus
            .api(&format!(
                "query_exemplars?query=http_server_request_duration_seconds_bucket&start={}&end={}",
                now - 600,
                now + 60
            ))
            .await;
        let found: Vec<String> = body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["exemplars"].as_array().into_iter().flatten())
            .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
            .collect();
        if !found.is_empty() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no exemplars stored by Prometheus within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for trace_id in &stored {
        assert!(
            sent.contains(trace_id),
            "stored exemplar {trace_id} is not one of the requests' traces"
        );
    }
    drop(prometheus);
}
