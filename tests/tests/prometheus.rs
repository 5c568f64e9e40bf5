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
        let found = prometheus
            .exemplar_trace_ids("http_server_request_duration_seconds_bucket")
            .await;
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

/// A service's own prometheus-client registry, attached: one `/metrics`
/// that Prometheus scrapes in OpenMetrics (exemplars of both kept) and
/// that promtool reads in Prometheus text 0.0.4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_client_registry_is_served_beside_looptels() {
    use prometheus_client::metrics::exemplar::CounterWithExemplar;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::info::Info;
    use std::sync::Arc;

    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let registry = Registry::new();
    let metrics = HttpServerMetrics::new(&registry);

    let mut theirs = prometheus_client::registry::Registry::default();
    type Labels = Vec<(String, String)>;
    let jobs: Family<Labels, CounterWithExemplar<Labels>> = Family::default();
    theirs.register("jobs", "Jobs run.", jobs.clone());
    let queue: Gauge = Gauge::default();
    theirs.register("queue_depth", "Jobs waiting.", queue.clone());
    theirs.register("build", "The build.", Info::new(vec![("version", "1.2.3")]));
    jobs.get_or_create(&vec![("kind".to_owned(), "email".to_owned())])
        .inc_by(
            3,
            Some(vec![(
                "trace_id".to_owned(),
                "0af7651916cd43dd8448eb211c80319c".to_owned(),
            )]),
            Some(std::time::SystemTime::now()),
        );
    queue.set(7);
    registry
        .attach(Arc::new(theirs))
        .expect("no family in common");

    // Both formats: one `# EOF`, both registries' families.
    let om = registry.encode(looptel_red_metrics::Format::OpenMetrics);
    assert_eq!(om.matches("# EOF").count(), 1, "{om}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# TYPE jobs counter")
            && om.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{om}"
    );
    let text = registry.encode(looptel_red_metrics::Format::Prometheus);
    assert!(!text.contains("# EOF") && !text.contains(" # {"), "{text}");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &text).expect("write");
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("metrics file"))
        .output()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    // promtool's exit status: 0 clean, 3 lint findings (naming advice, not
    // errors), 1 a file it cannot parse.
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "promtool check metrics: {:?}\n{}\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // A real scrape, OpenMetrics: looptel's histogram with its exemplar and
    // their counter with its exemplar.
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .route("/metrics", metrics_endpoint(registry.clone()))
        .layer(RedLayer::new(metrics))
        .layer(
            ServerLayer::new(Instrumentation::new(&provider, Propagator::default()))
                .filter(skip_paths(["/metrics"])),
        );
    let service = serve(app).await;
    let prometheus = Prometheus::start("looptel", service, &[]);
    reqwest::get(format!("http://{service}/orders/1"))
        .await
        .expect("request");
    let sent = spans.get_finished_spans().expect("spans")[0]
        .span_context
        .trace_id()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ours = prometheus
            .exemplar_trace_ids("http_server_request_duration_seconds_bucket")
            .await;
        let theirs = prometheus.exemplar_trace_ids("jobs_total").await;
        let value = prometheus.api("query?query=queue_depth").await;
        if ours.contains(&sent)
            && theirs
                .iter()
                .any(|t| t == "0af7651916cd43dd8448eb211c80319c")
            && value["data"]["result"][0]["value"][1] == "7"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not scraped together: {ours:?} / {theirs:?} / {value}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
fn a_family_both_registries_define_is_refused() {
    use prometheus_client::metrics::counter::Counter;
    use std::sync::Arc;

    let registry = Registry::new();
    let _ = registry.counter("jobs", "{job}", "Jobs.", &[]);
    let mut theirs = prometheus_client::registry::Registry::default();
    theirs.register("jobs", "Jobs run.", Counter::<u64>::default());
    let err = registry.attach(Arc::new(theirs)).expect_err("a clash");
    assert_eq!(err.name, "jobs");
    assert!(err.to_string().contains("\"jobs\""), "{err}");
    // Nothing of it is served.
    let text = registry.encode(looptel_red_metrics::Format::OpenMetrics);
    assert_eq!(text.matches("# TYPE jobs counter").count(), 1, "{text}");

    // Two attached registries may not clash either.
    let registry = Registry::new();
    let mut a = prometheus_client::registry::Registry::default();
    a.register("queue", "Q.", Counter::<u64>::default());
    let mut b = prometheus_client::registry::Registry::default();
    b.register("queue", "Q.", Counter::<u64>::default());
    registry.attach(Arc::new(a)).expect("first");
    assert_eq!(
        registry.attach(Arc::new(b)).expect_err("a clash").name,
        "queue"
    );
}
