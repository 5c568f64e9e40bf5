//! Telemetry exports over real OTLP (HTTP/protobuf and gRPC) to a fake
//! collector, and loses nothing at a clean shutdown.

use std::collections::HashMap;
use std::time::Duration;

use looptel_logs::JsonLogs;
use looptel_telemetry::{Telemetry, TelemetryBuilder};
use looptel_tests::FakeCollector;
use looptel_tests::SharedBuf;
use opentelemetry::metrics::MeterProvider as _;

fn env(pairs: Vec<(&'static str, String)>) -> TelemetryBuilder {
    let map: HashMap<&'static str, String> = pairs.into_iter().collect();
    Telemetry::from_lookup(move |k| map.get(k).cloned())
        .service_name("export-test")
        .logs(JsonLogs::builder().output(SharedBuf::default()))
}

/// Ends `n` spans, then drops the guard at once: with a one-minute schedule
/// delay, only the shutdown flush can have exported them.
async fn spans_survive_shutdown(protocol: &str, endpoint: String) {
    let t = env(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "60000".to_owned()),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=payments".to_owned()),
    ])
    .build()
    .expect("valid");
    let (subscriber, guard) = t.into_subscriber();
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..5 {
            let span = tracing::info_span!("last.words", i);
            span.in_scope(|| tracing::info!("ending"));
        }
    });
    guard.shutdown().expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_ended_just_before_shutdown_are_exported_over_http() {
    let collector = FakeCollector::start().await;
    spans_survive_shutdown("http/protobuf", collector.http_endpoint()).await;
    let spans = collector.spans();
    assert_eq!(
        spans.iter().filter(|s| s.name == "last.words").count(),
        5,
        "{spans:#?}"
    );
    assert!(spans.iter().all(|s| s.transport == "http"));
    assert_eq!(
        spans[0].resource_attribute("service.name"),
        Some("export-test")
    );
    assert_eq!(spans[0].resource_attribute("team"), Some("payments"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_ended_just_before_shutdown_are_exported_over_grpc() {
    let collector = FakeCollector::start().await;
    spans_survive_shutdown("grpc", collector.grpc_endpoint()).await;
    let spans = collector.spans();
    assert_eq!(
        spans.iter().filter(|s| s.name == "last.words").count(),
        5,
        "{spans:#?}"
    );
    assert!(spans.iter().all(|s| s.transport == "grpc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_pushed_and_flushed_at_shutdown() {
    let collector = FakeCollector::start().await;
    let t = env(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint()),
        ("OTEL_METRICS_EXPORTER", "otlp".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "600000".to_owned()),
    ])
    .build()
    .expect("valid");
    let counter = t
        .meter_provider()
        .expect("metrics pushed")
        .meter("test")
        .u64_counter("orders.created")
        .build();
    counter.add(1, &[]);
    let (_subscriber, guard) = t.into_subscriber();
    guard.shutdown().expect("clean shutdown");
    assert!(collector.metric_exports() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_collector_neither_blocks_spans_nor_hangs_shutdown() {
    // A port that was just free: nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let t = env(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "200".to_owned()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
    ])
    .shutdown_timeout(Duration::from_secs(2))
    .build()
    .expect("valid");
    let (subscriber, guard) = t.into_subscriber();
    // Far more spans than the queue holds: the excess is dropped, not queued.
    let done = tokio::task::spawn_blocking(move || {
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..20_000 {
                tracing::info_span!("while.down", i).in_scope(|| {});
            }
        });
        // Shutdown reports the failed export but returns.
        let _ = guard.shutdown();
    });
    tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("spans and shutdown never hang on a down collector")
        .expect("no panic");
}
