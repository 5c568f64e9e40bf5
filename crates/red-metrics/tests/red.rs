//! RED metrics through ServerLayer + RedLayer, and as the server layer's
//! hook, on an axum router: labels,
//! exemplars from sampled server spans only, filtered requests, streaming
//! bodies, both expositions, and a flood of random paths.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use looptel_core::{Instrumentation, Propagator};
use looptel_http_layer::server::{ServerLayer, skip_paths};
use looptel_red_metrics::{Format, HttpServerMetrics, RedLayer, Registry, metrics_endpoint};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
use tower::ServiceExt;

struct Stack {
    app: Router,
    registry: Registry,
    spans: InMemorySpanExporter,
}

fn stack(sampler: Sampler) -> Stack {
    stack_with(sampler, false)
}

/// The routes, measured by a `RedLayer` inside the server layer, or — when
/// `hooked` — by `HttpServerMetrics` as the server layer's hook.
fn stack_with(sampler: Sampler, hooked: bool) -> Stack {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(spans.clone())
        .build();
    let registry = Registry::new();
    registry.register_collector(std::sync::Arc::new(looptel_red_metrics::ProcessCollector));
    let metrics = HttpServerMetrics::new(&registry);
    let server = ServerLayer::new(Instrumentation::new(&provider, Propagator::default()))
        .filter(skip_paths(["/health", "/metrics"]));
    let routes = Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route(
            "/slow",
            get(|| async {
                let stream = futures_util::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                    Ok::<_, std::io::Error>(Bytes::from_static(b"done"))
                });
                Body::from_stream(stream)
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", metrics_endpoint(registry.clone()));
    let app = if hooked {
        routes.layer(server.hook(metrics))
    } else {
        routes.layer(
            tower::ServiceBuilder::new()
                .layer(server)
                .layer(RedLayer::new(metrics)),
        )
    };
    Stack {
        app,
        registry,
        spans,
    }
}

async fn get_body(app: &Router, uri: &str) -> (StatusCode, String) {
    let res = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("req"))
        .await
        .expect("infallible");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
}

#[tokio::test]
async fn requests_are_recorded_with_bounded_labels_and_sampled_exemplars() {
    for hooked in [false, true] {
        let s = stack_with(Sampler::AlwaysOn, hooked);
        get_body(&s.app, "/orders/1").await;
        get_body(&s.app, "/orders/2").await;
        get_body(&s.app, "/fail").await;
        let om = s.registry.encode(Format::OpenMetrics);
        // Both requests in one series…
        line(
            &om,
            r#"http_server_request_duration_seconds_count{http_request_method="GET",url_scheme="http",http_response_status_code="200",http_route="/orders/{id}",network_protocol_name="http",network_protocol_version="1.1"} 2"#,
        );
        // …and the bucket they landed in (whichever it is: a loaded
        // machine can take more than 5 ms) carries a sampled span's ids.
        let series = r#"http_server_request_duration_seconds_bucket{http_request_method="GET",url_scheme="http",http_response_status_code="200",http_route="/orders/{id}",network_protocol_name="http",network_protocol_version="1.1",le="#;
        let bucket = om
            .lines()
            .find(|l| l.starts_with(series) && l.contains(" # {trace_id=\""))
            .unwrap_or_else(|| panic!("no bucket of {series} with an exemplar in\n{om}"));
        let span = s
            .spans
            .get_finished_spans()
            .expect("spans")
            .into_iter()
            .find(|sp| sp.name == "GET /orders/{id}")
            .expect("span");
        let trace = span.span_context.trace_id().to_string();
        assert!(bucket.contains(" # {trace_id=\""), "{bucket}");
        let exemplar_trace = bucket
            .split("trace_id=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("trace id");
        let traces: Vec<String> = s
            .spans
            .get_finished_spans()
            .expect("spans")
            .iter()
            .map(|sp| sp.span_context.trace_id().to_string())
            .collect();
        assert!(
            traces.contains(&exemplar_trace.to_owned()),
            "exemplar {exemplar_trace} is one of {traces:?}; e.g. {trace}"
        );
        let exemplar_part = bucket.split(" # ").nth(1).expect("exemplar");
        let labels = exemplar_part.split('}').next().expect("labels");
        assert!(
            labels.len() <= 128,
            "exemplar labels within 128 characters: {labels}"
        );
        // The 5xx request carries error.type.
        line(
            &om,
            r#"http_server_request_duration_seconds_count{http_request_method="GET",url_scheme="http",http_response_status_code="503",http_route="/fail",error_type="503",network_protocol_name="http",network_protocol_version="1.1"} 1"#,
        );
        // Active requests went back to zero.
        line(
            &om,
            r#"http_server_active_requests{http_request_method="GET",url_scheme="http"} 0"#,
        );
        assert!(om.ends_with("# EOF\n"));
    }
}

#[tokio::test]
async fn unsampled_requests_leave_no_exemplar() {
    for hooked in [false, true] {
        let s = stack_with(Sampler::AlwaysOff, hooked);
        get_body(&s.app, "/orders/1").await;
        let om = s.registry.encode(Format::OpenMetrics);
        assert!(om.contains("http_server_request_duration_seconds_count{"));
        assert!(!om.contains("trace_id"), "{om}");
    }
}

/// Parent-based sampling, as order-service runs it: a caller that did not
/// sample is counted without an exemplar (its trace is never exported, so
/// an exemplar would point nowhere); one that did is its exemplar.
#[tokio::test]
async fn a_caller_that_did_not_sample_is_counted_without_an_exemplar() {
    const UNSAMPLED: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SAMPLED: &str = "0af7651916cd43dd8448eb211c80319c";
    for hooked in [false, true] {
        let s = stack_with(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), hooked);
        let call = |trace: &str, flags: &str| {
            Request::get("/orders/1")
                .header(
                    "traceparent",
                    format!("00-{trace}-b7ad6b7169203331-{flags}"),
                )
                .body(Body::empty())
                .expect("req")
        };
        let res = s
            .app
            .clone()
            .oneshot(call(UNSAMPLED, "00"))
            .await
            .expect("infallible");
        res.into_body().collect().await.expect("body");
        let om = s.registry.encode(Format::OpenMetrics);
        assert!(
            om.contains("http_server_request_duration_seconds_count{http_request_method=\"GET\",url_scheme=\"http\",http_response_status_code=\"200\",http_route=\"/orders/{id}\",network_protocol_name=\"http\",network_protocol_version=\"1.1\"} 1"),
            "counted: {om}"
        );
        assert!(!om.contains("trace_id"), "no exemplar: {om}");
        assert!(s.spans.get_finished_spans().expect("spans").is_empty());

        let res = s
            .app
            .clone()
            .oneshot(call(SAMPLED, "01"))
            .await
            .expect("infallible");
        res.into_body().collect().await.expect("body");
        let om = s.registry.encode(Format::OpenMetrics);
        assert!(om.contains(&format!("trace_id=\"{SAMPLED}\"")), "{om}");
        assert!(!om.contains(UNSAMPLED), "{om}");
    }
}

#[tokio::test]
async fn filtered_requests_are_not_recorded() {
    for hooked in [false, true] {
        let s = stack_with(Sampler::AlwaysOn, hooked);
        for _ in 0..5 {
            get_body(&s.app, "/health").await;
        }
        let text = s.registry.encode(Format::Prometheus);
        assert!(!text.contains("/health"));
        assert!(
            !text.contains("http_server_request_duration_seconds_count{"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn duration_runs_until_the_body_ends_like_the_span() {
    for hooked in [false, true] {
        let s = stack_with(Sampler::AlwaysOn, hooked);
        let (_, body) = get_body(&s.app, "/slow").await;
        assert_eq!(body, "done");
        let text = s.registry.encode(Format::Prometheus);
        let sum_line = line(
            &text,
            "http_server_request_duration_seconds_sum{http_request_method=\"GET\",url_scheme=\"http\",http_response_status_code=\"200\",http_route=\"/slow\"",
        );
        let sum = looptel_tests::sample_value(sum_line).expect("sum");
        let span = s
            .spans
            .get_finished_spans()
            .expect("spans")
            .into_iter()
            .find(|sp| sp.name == "GET /slow")
            .expect("span");
        let span_secs = span
            .end_time
            .duration_since(span.start_time)
            .expect("ordered")
            .as_secs_f64();
        // The headers go at once and the body 60 ms later: a metric that
        // ended at the headers would be near 0. (No upper bound from the
        // clock: a loaded machine may preempt between the two ends.)
        assert!(sum >= 0.06, "the body took 60 ms: {sum}");
        assert!(
            sum <= span_secs,
            "the metric runs inside the span: {sum} vs {span_secs}"
        );
    }
}

/// `GET /metrics` with this `Accept`.
async fn scrape(app: &axum::Router, accept: &str) -> http::Response<Body> {
    app.clone()
        .oneshot(
            Request::get("/metrics")
                .header("accept", accept)
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("ok")
}

#[tokio::test]
async fn the_endpoint_negotiates_the_format() {
    let s = stack(Sampler::AlwaysOn);
    get_body(&s.app, "/orders/1").await;
    // What Prometheus sends when exemplar storage is on.
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let res = scrape(&s.app, prometheus_accept).await;
    assert_eq!(
        res.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = String::from_utf8(
        res.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf8");
    assert!(
        om.contains("# {trace_id=")
            && om.contains("# UNIT http_server_request_duration_seconds seconds")
            && om.ends_with("# EOF\n")
    );

    for accept in [
        None,
        Some("text/plain"),
        Some("application/openmetrics-text;version=2.0.0"),
    ] {
        let mut req = Request::get("/metrics");
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let res = s
            .app
            .clone()
            .oneshot(req.body(Body::empty()).expect("req"))
            .await
            .expect("ok");
        assert_eq!(
            res.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8",
            "{accept:?}"
        );
        let text = String::from_utf8(
            res.into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
                .to_vec(),
        )
        .expect("utf8");
        assert!(
            !text.contains("trace_id") && !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(text.contains("# TYPE looptel_metric_overflow_records_total counter"));
    }
    assert_eq!(
        Format::negotiate(Some(&HeaderValue::from_static(
            "application/openmetrics-text"
        ))),
        Format::OpenMetrics
    );
    // What Prometheus sends with native histograms on: protobuf first.
    let native_accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let res = scrape(&s.app, native_accept).await;
    assert_eq!(
        res.headers()["content-type"],
        looptel_red_metrics::PROTOBUF_CONTENT_TYPE
    );
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    assert!(
        bytes
            .windows(b"http_server_request_duration_seconds".len())
            .any(|w| w == b"http_server_request_duration_seconds")
    );
    // Bytes that are not text, and a weight that is not a number: the
    // default, never an error.
    for accept in [
        HeaderValue::from_bytes(b"application/vnd.google.protobuf\xff").expect("opaque bytes"),
        HeaderValue::from_static("application/openmetrics-text;q=lots, text/plain;q=0.1"),
    ] {
        assert_eq!(
            Format::negotiate(Some(&accept)),
            Format::Prometheus,
            "{accept:?}"
        );
    }
    // Weights decide, not the order; a zero weight refuses.
    for (accept, want) in [
        (
            "text/plain;q=0.9, application/openmetrics-text;q=0.5",
            Format::Prometheus,
        ),
        (
            "text/plain;q=0.2, application/openmetrics-text;q=0.5",
            Format::OpenMetrics,
        ),
        (
            "application/openmetrics-text;q=0, text/plain;q=0.1",
            Format::Prometheus,
        ),
        (
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily",
            Format::Prometheus,
        ),
        ("application/json", Format::Prometheus),
    ] {
        assert_eq!(
            Format::negotiate(Some(&HeaderValue::from_static(accept))),
            want,
            "{accept}"
        );
    }
}

#[tokio::test]
async fn a_flood_of_random_paths_and_methods_stays_under_the_cap() {
    let s = stack(Sampler::AlwaysOff);
    let methods = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "PURGE", "BREW", "get", "X-CUSTOM", "OPTIONS",
    ];
    for i in 0..100_000_u32 {
        let seed = i.wrapping_mul(2_654_435_761);
        let path = format!("/{:x}/{}", seed, seed % 97);
        let method = methods[(seed % methods.len() as u32) as usize];
        let req = Request::builder()
            .method(method)
            .uri(&path)
            .body(Body::empty())
            .expect("req");
        let res = s.app.clone().oneshot(req).await.expect("infallible");
        drop(res);
    }
    let text = s.registry.encode(Format::Prometheus);
    let series = text
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count{"))
        .count();
    assert!(series <= 20, "{series} series:\n{text}");
    assert!(series >= 1);
    assert!(
        !text.contains("/1") && !text.contains("BREW") && !text.contains("X-CUSTOM"),
        "no raw path or method in labels"
    );
    assert!(text.contains("http_request_method=\"_OTHER\""));
}

#[tokio::test]
async fn repeated_requests_count_in_their_series_and_overflow_is_counted_per_record() {
    // Room for three duration series: GET /a, /b and the nested route.
    let registry = Registry::new().with_max_series(3);
    let app = Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/b", get(|| async { "b" }))
        // A nested router: axum builds the route's string anew per request.
        .nest(
            "/api",
            Router::new().route("/items/{id}", get(|| async { "item" })),
        )
        .route("/c", get(|| async { "c" }))
        .layer(
            ServerLayer::new(Instrumentation::disabled(Propagator::default()))
                .hook(HttpServerMetrics::new(&registry)),
        );
    for (path, n) in [
        ("/a", 5),
        ("/b", 3),
        ("/api/items/7", 6),
        ("/c", 4),
        ("/a", 2),
        ("/api/items/8", 1),
    ] {
        for _ in 0..n {
            get_body(&app, path).await;
        }
    }
    let text = registry.encode(Format::Prometheus);
    let count = |route: &str| {
        looptel_tests::sample_value(line(
            &text,
            &format!("http_server_request_duration_seconds_count{{http_request_method=\"GET\",url_scheme=\"http\",http_response_status_code=\"200\",http_route=\"{route}\""),
        ))
        .expect("count")
    };
    assert_eq!(count("/a"), 7.0);
    assert_eq!(count("/b"), 3.0);
    assert_eq!(count("/api/items/{id}"), 7.0);
    assert!(!text.contains("http_route=\"/c\""));
    assert!(
        text.contains(
            "http_server_request_duration_seconds_count{otel_metric_overflow=\"true\"} 4"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "looptel_metric_overflow_records_total{metric=\"http_server_request_duration_seconds\"} 4"
        ),
        "every overflowed record is counted: {text}"
    );
}

/// `promtool check metrics` — the Prometheus project's own linter — finds
/// nothing to complain about in the Prometheus text exposition. (It reads
/// only that format; the OpenMetrics exposition, exemplars included, is
/// checked by a real Prometheus scraping it in tests/prometheus.rs.)
#[tokio::test]
async fn promtool_finds_the_exposition_clean() {
    let s = stack(Sampler::AlwaysOn);
    get_body(&s.app, "/orders/1").await;
    get_body(&s.app, "/fail").await;
    {
        let format = Format::Prometheus;
        let text = s.registry.encode(format);
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("promtool ran");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && report.trim().is_empty(),
            "{format:?}: {report}\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_and_other_instruments_are_named_by_the_conventions() {
    use looptel_red_metrics::{MessagingMetrics, ProcessCollector, RpcMetrics, TokioCollector};
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    let registry = Registry::new();
    let orders = registry.counter(
        "orders.created",
        "{order}",
        "Orders placed.",
        &["tenant.id"],
    );
    let rpc = RpcMetrics::new(&registry);
    let messaging = MessagingMetrics::new(&registry);
    registry.register_collector(std::sync::Arc::new(ProcessCollector));
    registry.register_collector(std::sync::Arc::new(
        TokioCollector::current().expect("runtime"),
    ));

    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    provider
        .tracer("t")
        .in_span("PlaceOrder", |_cx| orders.inc(&["acme"]));
    rpc.server.record(
        &["grpc", "inventory.v1.StockService/ReserveItem", "OK", ""],
        0.02,
    );
    for _ in 0..3 {
        use looptel_engine::{Derived, HookState, MessageOp, Messaging, RequestHook};
        let op = MessageOp::new("kafka", "send", "send", "orders").partition(Some("3"));
        let state = messaging.start(&op, &Derived::none(), &mut opentelemetry::Context::new());
        state.end(&Messaging.success(), &opentelemetry::Context::new());
    }

    let om = registry.encode(Format::OpenMetrics);
    let trace = spans.get_finished_spans().expect("spans")[0]
        .span_context
        .trace_id()
        .to_string();
    assert!(om.contains("# TYPE orders_created counter\n"), "{om}");
    let sample = line(
        &om,
        "orders_created_total{tenant_id=\"acme\"} 1 # {trace_id=",
    );
    assert!(
        sample.contains(&trace),
        "the counter's exemplar is the current span: {sample}"
    );
    line(
        &om,
        // Semantic conventions 1.42: the new RPC names.
        "rpc_server_call_duration_seconds_count{rpc_system_name=\"grpc\",rpc_method=\"inventory.v1.StockService/ReserveItem\",rpc_response_status_code=\"OK\"} 1",
    );
    line(
        &om,
        "messaging_client_sent_messages_total{messaging_system=\"kafka\",messaging_operation_name=\"send\",messaging_destination_name=\"orders\",messaging_destination_partition_id=\"3\"} 3",
    );
    let text = registry.encode(Format::Prometheus);
    assert!(text.contains("# TYPE orders_created_total counter\n"));
    // Each gauge follows what it measures, not merely exists.
    let value = |text: &str, name: &str| -> f64 {
        looptel_tests::sample_value(line(text, name)).expect("value")
    };
    assert_eq!(value(&text, "tokio_workers "), 2.0);
    let (fds, tasks) = (
        value(&text, "process_open_fds "),
        value(&text, "tokio_alive_tasks "),
    );
    let files: Vec<std::fs::File> = (0..20)
        .map(|_| std::fs::File::open("/dev/null").expect("file"))
        .collect();
    let (release, parked) = tokio::sync::watch::channel(false);
    let parked: Vec<_> = (0..50)
        .map(|_| {
            let mut parked = parked.clone();
            tokio::spawn(async move {
                let _ = parked.wait_for(|go| *go).await;
            })
        })
        .collect();
    // Both workers blocked, then ten tasks spawned from outside the
    // runtime: they wait in the global queue.
    let (started, both) = std::sync::mpsc::channel();
    let unblock = std::sync::Arc::new(std::sync::Barrier::new(3));
    let blockers: Vec<_> = (0..2)
        .map(|_| {
            let (started, unblock) = (started.clone(), unblock.clone());
            tokio::spawn(async move {
                let _ = started.send(());
                // Blocks the worker (on purpose) until the scrape is done.
                unblock.wait();
            })
        })
        .collect();
    for _ in 0..2 {
        both.recv_timeout(std::time::Duration::from_secs(10))
            .expect("a worker blocked");
    }
    let queued: Vec<_> = (0..10).map(|_| tokio::spawn(async {})).collect();
    let busy = registry.encode(Format::Prometheus);
    assert!(
        value(&busy, "tokio_global_queue_depth ") >= 10.0,
        "{}",
        line(&busy, "tokio_global_queue_depth ")
    );
    assert!(
        value(&busy, "process_open_fds ") >= fds + 20.0,
        "{fds} → {busy}"
    );
    assert!(
        value(&busy, "tokio_alive_tasks ") >= tasks + 50.0,
        "{tasks} → {busy}"
    );
    unblock.wait();
    let _ = release.send(true);
    for t in parked.into_iter().chain(blockers).chain(queued) {
        t.await.expect("task");
    }
    drop(files);
    assert!(line(&text, "process_cpu_seconds_total ").len() > 26);
    assert!(
        looptel_tests::sample_value(line(&text, "process_resident_memory_bytes ")).expect("rss")
            > 1e6
    );
}

#[test]
fn a_snapshot_holds_what_a_scrape_shows_by_semantic_convention_names() {
    use looptel_red_metrics::{Data, OVERFLOW_ATTRIBUTE};
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };

    let registry = Registry::new().with_max_series(1);
    let h = registry.histogram("work.duration", "s", "Work.", &["kind"], &[0.1, 1.0]);
    let sc = SpanContext::new(
        TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128),
        SpanId::from(0xb7ad6b7169203331_u64),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(sc);
    let ids = looptel_core::TraceIds::from_context(&cx);
    h.with(&["a"], |h| {
        h.observe(0.05, None);
        h.observe(0.5, ids);
        h.observe(5.0, None);
    });
    h.with(&["b"], |h| h.observe(0.05, None)); // over the cap: overflow
    let c = registry.counter("jobs", "{job}", "Jobs.", &[]);
    c.with(&[], |c| c.add(3, None));
    let g = registry.gauge("queue.depth", "{job}", "Queue.", &[]);
    g.with(&[], |g| g.set(-2));

    let snap = registry.snapshot();
    let names: Vec<&str> = snap.instruments.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["work.duration", "jobs", "queue.depth"]);
    let Data::Histogram(points) = &snap.instruments[0].data else {
        panic!("a histogram");
    };
    assert_eq!(snap.instruments[0].unit, "s");
    assert_eq!(points[0].attributes, [("kind", "a".to_owned())]);
    assert_eq!(points[0].bucket_counts, [1, 1, 1], "per bucket, +Inf last");
    assert_eq!((points[0].count, points[0].sum), (3, 5.55));
    assert_eq!(points[0].exemplars.len(), 1);
    assert_eq!(
        points[0].exemplars[0].trace_id.to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(
        points[1].attributes,
        [(OVERFLOW_ATTRIBUTE, "true".to_owned())]
    );
    let Data::Counter(points) = &snap.instruments[1].data else {
        panic!("a counter");
    };
    assert_eq!(points[0].value, 3.0);
    let Data::UpDown(points) = &snap.instruments[2].data else {
        panic!("an up-down counter");
    };
    assert_eq!(points[0].value, -2.0);
    // The same numbers a scrape shows.
    let text = registry.encode(Format::Prometheus);
    assert!(
        text.contains("work_duration_seconds_count{kind=\"a\"} 3"),
        "{text}"
    );
    assert!(text.contains("jobs_total 3"), "{text}");
}

/// Messaging records land in the series of their labels whether found by
/// the resolved table (operations without error) or by their labels
/// (errors): kinds, partitions and groups apart, every record counted.
#[test]
fn messaging_records_land_in_their_own_series_however_found() {
    use looptel_engine::{ClassifyError, Derived, HookState, MessageOp, Messaging, RequestHook};
    use looptel_red_metrics::MessagingMetrics;
    struct Broken;
    impl looptel_core::ErrorOutcome for Broken {
        fn error_type(&self) -> &'static str {
            "broken"
        }
    }
    let registry = Registry::new();
    let messaging = MessagingMetrics::new(&registry);
    let run =
        |kind: &'static str, partition: &'static str, group: Option<&'static str>, ok: bool| {
            let op = MessageOp::new("kafka", kind, kind, "orders")
                .partition(Some(partition))
                .group(group);
            let state = messaging.start(&op, &Derived::none(), &mut opentelemetry::Context::new());
            let end = if ok {
                Messaging.success()
            } else {
                Messaging.classify_error(&Broken)
            };
            state.end(&end, &opentelemetry::Context::new());
        };
    for _ in 0..5 {
        run("process", "0", Some("fulfilment"), true);
    }
    for _ in 0..3 {
        run("process", "1", Some("fulfilment"), true);
        run("send", "1", None, true);
    }
    run("process", "0", Some("billing"), true);
    run("process", "0", Some("fulfilment"), false);
    run("process", "0", Some("fulfilment"), false);
    let om = registry.encode(Format::Prometheus);
    let count = |prefix: &str| looptel_tests::sample_value(line(&om, prefix)).expect("value");
    let consumed = "messaging_client_consumed_messages_total{messaging_system=\"kafka\",messaging_operation_name=\"process\",messaging_destination_name=\"orders\",messaging_destination_partition_id=";
    assert_eq!(
        count(&format!(
            "{consumed}\"0\",messaging_consumer_group_name=\"fulfilment\"}} "
        )),
        5.0
    );
    assert_eq!(
        count(&format!(
            "{consumed}\"1\",messaging_consumer_group_name=\"fulfilment\"}} "
        )),
        3.0
    );
    assert_eq!(
        count(&format!(
            "{consumed}\"0\",messaging_consumer_group_name=\"billing\"}} "
        )),
        1.0
    );
    assert_eq!(
        count(&format!(
            "{consumed}\"0\",messaging_consumer_group_name=\"fulfilment\",error_type=\"broken\"}} "
        )),
        2.0
    );
    assert_eq!(
        count(
            "messaging_process_duration_seconds_count{messaging_system=\"kafka\",messaging_operation_name=\"process\",messaging_destination_name=\"orders\",messaging_destination_partition_id=\"0\",messaging_consumer_group_name=\"fulfilment\"} "
        ),
        5.0
    );
    assert_eq!(
        count(
            "messaging_client_sent_messages_total{messaging_system=\"kafka\",messaging_operation_name=\"send\",messaging_destination_name=\"orders\",messaging_destination_partition_id=\"1\"} "
        ),
        3.0
    );
    assert_eq!(
        count(
            "messaging_client_operation_duration_seconds_count{messaging_system=\"kafka\",messaging_operation_name=\"send\",messaging_destination_name=\"orders\",messaging_destination_partition_id=\"1\"} "
        ),
        3.0
    );
}
