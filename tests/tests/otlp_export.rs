//! Telemetry exports over real OTLP (HTTP/protobuf and gRPC) to a fake
//! collector, and loses nothing at a clean shutdown.

use std::collections::HashMap;
use std::time::Duration;

use looptel_logs::JsonLogs;
use looptel_telemetry::{Telemetry, TelemetryBuilder};
use looptel_tests::SharedBuf;
use looptel_tests::{FakeCollector, budget, eventually};
use opentelemetry::metrics::MeterProvider as _;

fn env(pairs: Vec<(&'static str, String)>) -> TelemetryBuilder {
    let map: HashMap<&'static str, String> = pairs.into_iter().collect();
    Telemetry::from_lookup(move |k| map.get(k).cloned())
        .service_name("export-test")
        .logs(JsonLogs::builder().output(SharedBuf::default()))
}

/// Every trace export request carried `OTEL_EXPORTER_OTLP_HEADERS`,
/// decoded, with names in lower case.
fn carried_the_configured_headers(collector: &FakeCollector) {
    let requests = collector.trace_request_headers();
    assert!(!requests.is_empty());
    for headers in requests {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-tenant"), Some("acme"), "{headers:?}");
        assert_eq!(get("authorization"), Some("Bearer s3cret"), "{headers:?}");
    }
}

/// Ends `n` spans, then drops the guard at once: with a one-minute schedule
/// delay, only the shutdown flush can have exported them.
async fn spans_survive_shutdown(protocol: &str, endpoint: String) {
    let t = env(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "60000".to_owned()),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=payments".to_owned()),
        // A vendor's key and a tenant, as the spec writes them (values
        // percent-encoded).
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "X-Tenant=acme,authorization=Bearer%20s3cret".to_owned(),
        ),
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
    carried_the_configured_headers(&collector);
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
    carried_the_configured_headers(&collector);
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
    // The interval is ten minutes: what arrived is the flush at shutdown,
    // holding the counter as it was.
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
    let sums: Vec<(String, u64)> = collector
        .metric_requests()
        .iter()
        .flat_map(|(r, _)| &r.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter_map(|m| match &m.data {
            Some(Data::Sum(sum)) => Some((m.name.clone(), sum)),
            _ => None,
        })
        .flat_map(|(name, sum)| {
            sum.data_points.iter().filter_map(move |p| match p.value {
                Some(Value::AsInt(v)) => Some((name.clone(), u64::try_from(v).unwrap_or(0))),
                _ => None,
            })
        })
        .collect();
    assert_eq!(sums, [("orders.created".to_owned(), 1)], "{sums:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_collector_neither_blocks_spans_nor_hangs_shutdown() {
    let closed = looptel_tests::closed_port();
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
    let stats = guard.exports().clone();
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
    // Every span is accounted for: dropped at the full queue, or lost in a
    // failed export. How many exports fail while the loop runs depends on
    // the machine's load (a refused connection fails in well under a
    // millisecond, freeing 64 places each time), so only both kinds are
    // required, and nothing left pending.
    assert_eq!(
        stats.dropped_spans() + stats.failed_spans(),
        20_000,
        "{stats:?}"
    );
    assert!(
        stats.failed_spans() >= 1 && stats.dropped_spans() >= 1 && stats.pending_spans() == 0,
        "{stats:?}"
    );
}

/// Log records over OTLP: the span's ids in the record's own fields, the
/// service as the resource, redaction applied; flushed at shutdown.
async fn logs_reach_the_collector(protocol: &str, endpoint: String, collector: &FakeCollector) {
    let t = env(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_LOGS_EXPORTER", "otlp".to_owned()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "60000".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "60000".to_owned()),
    ])
    .build()
    .expect("valid");
    assert!(
        t.notes()
            .iter()
            .any(|n| n.text().starts_with("logs: OTLP to ")),
        "{:?}",
        t.notes()
    );
    let (subscriber, guard) = t.into_subscriber();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("place.order").in_scope(|| {
            tracing::warn!(phone = "13812348000", order.id = "o-7", "stock low");
        });
        tracing::info!("outside any span");
    });
    guard.shutdown().expect("clean shutdown");
    let logs = collector.logs();
    let spans = collector.spans();
    let span = spans
        .iter()
        .find(|s| s.name == "place.order")
        .expect("span");
    let warn = logs.iter().find(|l| l.body == "stock low").expect("record");
    assert_eq!(warn.trace_id, span.trace_id);
    assert_eq!(warn.span_id, span.span_id);
    assert_eq!(
        (warn.severity_text.as_str(), warn.severity_number),
        ("WARN", 13)
    );
    assert_eq!(warn.attribute("phone"), Some("138****8000"));
    assert_eq!(warn.attribute("order.id"), Some("o-7"));
    assert_eq!(warn.attribute("trace_id"), None, "ids are native fields");
    assert_eq!(warn.resource_attribute("service.name"), Some("export-test"));
    assert_eq!(
        warn.transport,
        if protocol == "grpc" { "grpc" } else { "http" }
    );
    let outside = logs
        .iter()
        .find(|l| l.body == "outside any span")
        .expect("record");
    assert_eq!(outside.trace_id, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_are_exported_over_http_with_their_span_ids() {
    let collector = FakeCollector::start().await;
    logs_reach_the_collector("http/protobuf", collector.http_endpoint(), &collector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_are_exported_over_grpc_with_their_span_ids() {
    let collector = FakeCollector::start().await;
    logs_reach_the_collector("grpc", collector.grpc_endpoint(), &collector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_a_down_collector_cannot_take_are_counted_not_queued() {
    let closed = looptel_tests::closed_port();
    let t = env(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "200".to_owned()),
        ("OTEL_LOGS_EXPORTER", "otlp".to_owned()),
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "64".to_owned()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "50".to_owned()),
    ])
    .shutdown_timeout(Duration::from_secs(2))
    .build()
    .expect("valid");
    let (subscriber, guard) = t.into_subscriber();
    let stats = guard.exports().clone();
    let done = tokio::task::spawn_blocking(move || {
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..20_000 {
                tracing::info!(i, "while down");
            }
        });
        let _ = guard.shutdown();
    });
    tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("logging and shutdown never hang on a down collector")
        .expect("no panic");
    assert_eq!(
        stats.dropped_logs() + stats.failed_logs(),
        20_000,
        "{stats:?}"
    );
    assert!(stats.failed_logs() >= 1, "{stats:?}");
}

/// looptel's registry over OTLP: a request's histogram, pushed, equals the
/// scrape's — buckets, sum and count — and its exemplar is the request's
/// trace; over HTTP and gRPC.
async fn red_metrics_are_pushed(protocol: &str, endpoint: String, collector: &FakeCollector) {
    use axum::Router;
    use axum::routing::get;
    use looptel_http_layer::server::ServerLayer;
    use looptel_red_metrics::{Format, HttpServerMetrics, RedLayer, Registry};
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use tower::ServiceExt as _;

    let t = env(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_METRICS_EXPORTER", "otlp".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "60000".to_owned()),
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
    ])
    .build()
    .expect("valid");
    let instrumentation = t.instrumentation();
    let (_subscriber, mut guard) = t.into_subscriber();
    let registry = Registry::new();
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .layer(RedLayer::new(HttpServerMetrics::new(&registry)))
        .layer(ServerLayer::new(instrumentation));
    assert!(
        guard.push_metrics(registry.clone()),
        "metrics export is OTLP"
    );
    let res = app
        .oneshot(
            http::Request::get("/orders/7")
                .header(
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(res.status(), 200);
    // Recorded when the body ends.
    let _ = axum::body::to_bytes(res.into_body(), usize::MAX).await;
    let scrape = registry.encode(Format::Prometheus);
    // The last push, at shutdown (the interval is a minute).
    guard.shutdown().expect("clean shutdown");

    // looptel's push (the SDK's meter provider sends its own requests too).
    let requests = collector.metric_requests();
    let (last, transport) = requests
        .iter()
        .rev()
        .find(|(r, _)| {
            r.resource_metrics.iter().any(|rm| {
                rm.scope_metrics.iter().any(|sm| {
                    sm.metrics
                        .iter()
                        .any(|m| m.name == "http.server.request.duration")
                })
            })
        })
        .unwrap_or_else(|| panic!("no push of the registry: {requests:#?}"));
    assert_eq!(*transport, if protocol == "grpc" { "grpc" } else { "http" });
    let rm = &last.resource_metrics[0];
    let service = rm
        .resource
        .as_ref()
        .expect("resource")
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(|v| format!("{v:?}"));
    assert!(service.is_some_and(|s| s.contains("export-test")));
    let metric = rm.scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == "http.server.request.duration")
        .expect("the server histogram");
    assert_eq!(metric.unit, "s");
    let Some(Data::Histogram(h)) = &metric.data else {
        panic!("a histogram: {metric:?}");
    };
    let point = &h.data_points[0];
    let attr = |k: &str| {
        point
            .attributes
            .iter()
            .find(|kv| kv.key == k)
            .map(|kv| format!("{:?}", kv.value))
    };
    assert!(
        attr("http.route").is_some_and(|v| v.contains("/orders/{id}")),
        "{point:?}"
    );
    // Buckets, sum and count equal the scrape's.
    assert_eq!(point.count, 1);
    let cumulative: Vec<u64> = point
        .bucket_counts
        .iter()
        .scan(0, |acc, c| {
            *acc += c;
            Some(*acc)
        })
        .collect();
    for (bound, count) in point.explicit_bounds.iter().zip(&cumulative) {
        let le = if bound.fract() == 0.0 {
            format!("{bound:.1}")
        } else {
            bound.to_string()
        };
        let line = scrape
            .lines()
            .find(|l| {
                l.starts_with("http_server_request_duration_seconds_bucket")
                    && l.contains(&format!("le=\"{le}\""))
            })
            .unwrap_or_else(|| panic!("no bucket le={le} in\n{scrape}"));
        assert!(line.ends_with(&format!(" {count}")), "{line} vs {count}");
    }
    let sum_line = scrape
        .lines()
        .find(|l| l.starts_with("http_server_request_duration_seconds_sum"))
        .expect("sum");
    let scraped_sum = looptel_tests::sample_value(sum_line).expect("a number");
    assert!((point.sum.unwrap_or_default() - scraped_sum).abs() < 1e-9);
    // The exemplar is the request's trace (its caller's trace id).
    let e = point.exemplars.first().expect("an exemplar");
    assert_eq!(
        e.trace_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        "0af7651916cd43dd8448eb211c80319c"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_metrics_are_pushed_over_http_as_the_scrape_shows_them() {
    let collector = FakeCollector::start().await;
    red_metrics_are_pushed("http/protobuf", collector.http_endpoint(), &collector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_metrics_are_pushed_over_grpc_as_the_scrape_shows_them() {
    let collector = FakeCollector::start().await;
    red_metrics_are_pushed("grpc", collector.grpc_endpoint(), &collector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_collector_counts_failed_pushes_and_keeps_shutdown_bounded() {
    let closed = looptel_tests::closed_port();
    let t = env(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
        ("OTEL_METRICS_EXPORTER", "otlp".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "50".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "200".to_owned()),
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
    ])
    .shutdown_timeout(Duration::from_secs(2))
    .build()
    .expect("valid");
    let (_subscriber, mut guard) = t.into_subscriber();
    let registry = looptel_red_metrics::Registry::new();
    let c = registry.counter("jobs", "{job}", "Jobs.", &[]);
    assert!(guard.push_metrics(registry));
    let stats = guard.exports().clone();
    eventually(
        budget::IN_PROCESS,
        "two failed pushes counted",
        async || {
            // Recording goes on, unaffected.
            c.with(&[], |c| c.add(1, None));
            (stats.failed_metric_exports() >= 2).then_some(())
        },
    )
    .await;
    let started = std::time::Instant::now();
    let _ = tokio::task::spawn_blocking(move || guard.shutdown()).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The temporality preference from the environment, per the OpenTelemetry
/// specification: `cumulative` (and unset) everything cumulative; `delta`
/// counters (recorded or collected) and histograms as changes, up-down
/// counters cumulative; `lowmemory` as `delta` but a collector's counter
/// cumulative. Pushed every 100 ms while the values change: the deltas add
/// up to the totals, the cumulative values end at them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_temporality_preference_from_the_environment_is_honoured() {
    use looptel_red_metrics::{FnCollector, Registry};
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Metric, metric::Data, number_data_point::Value,
    };
    use std::sync::atomic::{AtomicU64, Ordering};

    const DELTA: i32 = AggregationTemporality::Delta as i32;
    const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;

    /// (temporality, value) of a sum in one push.
    fn sum(push: &[Metric], name: &str) -> Option<(i32, f64)> {
        let m = push.iter().find(|m| m.name == name)?;
        let Some(Data::Sum(s)) = &m.data else {
            panic!("{name} is a sum: {m:?}")
        };
        let v = match s.data_points.first()?.value {
            Some(Value::AsDouble(v)) => v,
            Some(Value::AsInt(v)) => v as f64,
            None => f64::NAN,
        };
        Some((s.aggregation_temporality, v))
    }
    fn histogram(push: &[Metric]) -> Option<(i32, u64)> {
        let m = push.iter().find(|m| m.name == "jobs.duration")?;
        let Some(Data::Histogram(h)) = &m.data else {
            panic!("a histogram: {m:?}")
        };
        Some((h.aggregation_temporality, h.data_points.first()?.count))
    }
    /// What a series came to over `pushes`: the sum of its changes, or its
    /// last cumulative value; and every push's temporality.
    fn total(values: &[(i32, f64)]) -> (Vec<i32>, f64) {
        let kinds = values.iter().map(|v| v.0).collect();
        let total = if values.iter().all(|v| v.0 == DELTA) {
            values.iter().map(|v| v.1).sum()
        } else {
            values.last().map_or(0.0, |v| v.1)
        };
        (kinds, total)
    }

    for (preference, recorded, collected, hist) in [
        (None, CUMULATIVE, CUMULATIVE, CUMULATIVE),
        (Some("cumulative"), CUMULATIVE, CUMULATIVE, CUMULATIVE),
        (Some("delta"), DELTA, DELTA, DELTA),
        (Some("lowmemory"), DELTA, CUMULATIVE, DELTA),
    ] {
        let collector = FakeCollector::start().await;
        let mut vars = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint()),
            ("OTEL_METRICS_EXPORTER", "otlp".to_owned()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "100".to_owned()),
            ("OTEL_TRACES_EXPORTER", "none".to_owned()),
        ];
        if let Some(p) = preference {
            vars.push((
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                p.to_owned(),
            ));
        }
        let t = env(vars).build().expect("valid");
        let (_subscriber, mut guard) = t.into_subscriber();
        let registry = Registry::new();
        let orders = registry.counter("orders.created", "{order}", "Orders.", &[]);
        let active = registry.gauge("jobs.active", "{job}", "Jobs running.", &[]);
        let took = registry.histogram("jobs.duration", "s", "Job durations.", &[], &[0.1, 1.0]);
        let retried = std::sync::Arc::new(AtomicU64::new(0));
        let read = retried.clone();
        registry.register_collector(std::sync::Arc::new(FnCollector::new().counter(
            "jobs_retried",
            "Jobs retried.",
            move || read.load(Ordering::Relaxed) as f64,
        )));
        active.add(&[], 4);
        assert!(guard.push_metrics(registry.clone()));
        let pushes = || -> Vec<Vec<Metric>> {
            collector
                .metric_requests()
                .iter()
                .map(|(r, _)| {
                    r.resource_metrics
                        .iter()
                        .flat_map(|rm| &rm.scope_metrics)
                        .flat_map(|sm| sm.metrics.clone())
                        .collect::<Vec<_>>()
                })
                .filter(|m| m.iter().any(|m| m.name == "orders.created"))
                .collect()
        };
        // Changes spread over several pushes.
        for _ in 0..5 {
            let before = pushes().len();
            orders.add(&[], 1);
            retried.fetch_add(1, Ordering::Relaxed);
            took.record(&[], 0.5);
            eventually(budget::IN_PROCESS, "a push after a change", async || {
                (pushes().len() > before).then_some(())
            })
            .await;
        }
        let done = eventually(budget::IN_PROCESS, "the totals pushed", async || {
            let all = pushes();
            let orders: Vec<_> = all
                .iter()
                .filter_map(|p| sum(p, "orders.created"))
                .collect();
            let retried: Vec<_> = all.iter().filter_map(|p| sum(p, "jobs_retried")).collect();
            let took: Vec<_> = all
                .iter()
                .filter_map(|p| histogram(p))
                .map(|(k, c)| (k, c as f64))
                .collect();
            let (o, r, h) = (total(&orders), total(&retried), total(&took));
            (o.1 == 5.0 && r.1 == 5.0 && h.1 == 5.0).then_some((o.0, r.0, h.0, all))
        })
        .await;
        guard.shutdown().expect("clean shutdown");
        let (orders_kinds, retried_kinds, took_kinds, all) = done;
        assert!(all.len() >= 5, "{preference:?}: several pushes");
        assert!(
            orders_kinds.iter().all(|k| *k == recorded),
            "{preference:?}: {orders_kinds:?}"
        );
        assert!(
            retried_kinds.iter().all(|k| *k == collected),
            "{preference:?}: {retried_kinds:?}"
        );
        assert!(
            took_kinds.iter().all(|k| *k == hist),
            "{preference:?}: {took_kinds:?}"
        );
        for push in &all {
            assert_eq!(
                sum(push, "jobs.active"),
                Some((CUMULATIVE, 4.0)),
                "{preference:?}: an up-down counter stays cumulative"
            );
        }
    }
}

/// `LOOPTEL_METRICS_HISTOGRAMS=native`: the registry built as the guard
/// says keeps native buckets, and the push carries them as an OTLP
/// exponential histogram whose buckets hold what was recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_are_pushed_as_exponential_histograms() {
    use looptel_red_metrics::{Histograms, NativeHistograms, Registry};
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;

    let collector = FakeCollector::start().await;
    let t = env(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint()),
        ("OTEL_METRICS_EXPORTER", "otlp".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100".to_owned()),
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
        ("LOOPTEL_METRICS_HISTOGRAMS", "native".to_owned()),
    ])
    .build()
    .expect("valid");
    assert_eq!(
        t.histograms(),
        Histograms::Native(NativeHistograms::default())
    );
    let (_subscriber, mut guard) = t.into_subscriber();
    let registry = Registry::new().with_histograms(guard.histograms());
    let took = registry.histogram("jobs.duration", "s", "Job durations.", &[], &[0.1, 1.0]);
    for v in [0.003, 0.003, 0.35, 2.0] {
        took.with(&[], |h| h.observe(v, None));
    }
    assert!(guard.push_metrics(registry.clone()));
    let point = eventually(
        budget::IN_PROCESS,
        "an exponential histogram pushed",
        async || {
            collector.metric_requests().iter().find_map(|(r, _)| {
                r.resource_metrics
                    .iter()
                    .flat_map(|rm| &rm.scope_metrics)
                    .flat_map(|sm| &sm.metrics)
                    .filter(|m| m.name == "jobs.duration")
                    .find_map(|m| match &m.data {
                        Some(Data::ExponentialHistogram(h)) => h.data_points.first().cloned(),
                        _ => None,
                    })
            })
        },
    )
    .await;
    guard.shutdown().expect("clean shutdown");
    assert_eq!(point.count, 4);
    assert_eq!(point.scale, 3);
    let positive = point.positive.expect("positive buckets");
    // OpenTelemetry's bucket i at scale 3 holds (2^(i/8), 2^((i+1)/8)].
    let holds = |v: f64| {
        let i = (v.log2() * 8.0).ceil() as i32 - 1;
        positive
            .bucket_counts
            .get(usize::try_from(i - positive.offset).expect("inside"))
            .copied()
    };
    assert_eq!(holds(0.003), Some(2));
    assert_eq!(holds(0.35), Some(1));
    assert_eq!(holds(2.0), Some(1));
    assert_eq!(positive.bucket_counts.iter().sum::<u64>(), 4);
}
