//! The real binary: port 0, a real OTLP export to a fake collector, SIGTERM,
//! and the log line's `trace_id` equal to the exported span's.

mod common;

use std::process::Command;

use common::Service;
use looptel_tests::{FakeCollector, budget, eventually};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_the_span_whose_trace_id_the_logs_carry() {
    let collector = FakeCollector::start().await;
    let mut svc = Service::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint()),
        // Exports only at shutdown: the test proves the SIGTERM flush.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=ci,team=orders".to_owned(),
        ),
    ]);
    let addr = svc.http_addr();

    let res = reqwest::Client::new()
        .post(format!("http://{addr}/orders"))
        .header("content-type", "application/json")
        .header("traceparent", CALLER)
        .header("x-tenant-id", "acme")
        .body(r#"{"customer_id":"c-9","items":[{"sku":"lamp","quantity":1}]}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 201);
    let response_tp = res.headers()["traceparent"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let placed = svc.line("order placed");

    // The business counter and the RED histogram carry the caller's trace
    // as exemplars, in OpenMetrics; plain Prometheus text has none.
    let om = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let orders = om
        .lines()
        .find(|l| l.starts_with("orders_created_total{tenant_id=\"acme\"} 1 # {trace_id="))
        .unwrap_or_else(|| panic!("no orders counter with an exemplar in\n{om}"));
    assert!(orders.contains(CALLER_TRACE), "{orders}");
    assert!(
        om.lines().any(|l| l.starts_with(
            "http_server_request_duration_seconds_bucket{http_request_method=\"POST\""
        ) && l.contains(CALLER_TRACE))
    );
    assert!(om.contains("process_resident_memory_bytes") && om.contains("tokio_workers"));
    assert!(!om.contains("/metrics"), "scrapes are not measured");
    assert!(
        collector.spans().is_empty(),
        "nothing exported before shutdown"
    );

    let exit = svc.terminate();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    svc.line("order-service stopped");

    let span = collector
        .spans()
        .into_iter()
        .find(|s| s.name == "Order.OrderService.PlaceOrder")
        .expect("the PlaceOrder span was flushed at shutdown");
    assert_eq!(
        span.trace_id, CALLER_TRACE,
        "the caller's trace is continued"
    );
    let server = collector
        .spans()
        .into_iter()
        .find(|s| s.name == "POST /orders")
        .expect("the server span");
    assert_eq!(server.parent_span_id, CALLER_SPAN);
    assert_eq!(span.parent_span_id, server.span_id);
    assert_eq!(
        response_tp,
        format!("00-{CALLER_TRACE}-{}-01", server.span_id)
    );
    assert_eq!(placed["trace_id"].as_str(), Some(span.trace_id.as_str()));
    assert_eq!(placed["tenant.id"], "acme");
    assert_eq!(span.attribute("tenant.id"), Some("acme"));
    assert_eq!(server.attribute("tenant.id"), Some("acme"));
    assert_eq!(placed["span_id"].as_str(), Some(span.span_id.as_str()));
    assert_eq!(placed["deployment.environment"], "ci");
    assert_eq!(
        span.resource_attribute("service.name"),
        Some("order-service")
    );
    assert_eq!(span.resource_attribute("team"), Some("orders"));
}

#[test]
fn an_invalid_variable_stops_start_up_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_order-service"))
        .env_clear()
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("GRPC_ADDR", "127.0.0.1:0")
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("OTEL_TRACES_SAMPLER") && stderr.contains("sometimes"),
        "{stderr}"
    );
}

/// `http_server_active_requests` of POST requests, from the service's own
/// `/metrics`.
async fn active_posts(addr: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    looptel_tests::scrape_value(
        &text,
        "http_server_active_requests{http_request_method=\"POST\",url_scheme=\"http\"}",
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_request_leaves_no_active_request() {
    use std::io::Write as _;

    let mut svc = Service::start(&[("OTEL_TRACES_EXPORTER", "none".to_owned())]);
    let addr = svc.http_addr();
    let body = r#"{"customer_id":"c-2","items":[]}"#;
    let mut gone = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        gone,
        "POST /orders HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len() + 10
    )
    .expect("write");
    gone.flush().expect("flush");
    eventually(budget::PROCESS, "the request in flight", async || {
        (active_posts(&addr).await == 1.0).then_some(())
    })
    .await;
    drop(gone);
    eventually(
        budget::PROCESS,
        "the gauge back to 0 once the client went away",
        async || (active_posts(&addr).await == 0.0).then_some(()),
    )
    .await;
}

#[test]
fn connections_past_the_cap_wait_until_one_closes() {
    use std::io::{Read as _, Write as _};

    let mut svc = Service::start(&[
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
        ("MAX_CONNECTIONS", "4".to_owned()),
        ("HEADER_READ_TIMEOUT_MS", "120000".to_owned()),
    ]);
    let addr = svc.http_addr();
    // Four clients hold every place, their headers never finished.
    let mut held: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).expect("connect");
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("write");
            s
        })
        .collect();
    // A fifth is accepted by the kernel (the backlog) but not served.
    let mut fifth = std::net::TcpStream::connect(&addr).expect("connect");
    fifth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    fifth
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .expect("timeout");
    let mut buf = [0_u8; 256];
    match fifth.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("served past the cap of 4: {other:?}"),
    }
    // One of the four goes away: the fifth is served.
    drop(held.pop());
    fifth
        .set_read_timeout(Some(looptel_tests::budget::PROCESS))
        .expect("timeout");
    let mut answer = Vec::new();
    fifth.read_to_end(&mut answer).expect("the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_cannot_hold_shutdown_past_the_drain_deadline() {
    use std::io::Write as _;

    let collector = FakeCollector::start().await;
    let mut svc = Service::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000".to_owned()),
        ("DRAIN_TIMEOUT_MS", "1000".to_owned()),
    ]);
    let addr = svc.http_addr();
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/orders"))
        .header("content-type", "application/json")
        .body(r#"{"customer_id":"c-1","items":[{"sku":"lamp","quantity":1}]}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 201);

    // A client whose body stays 10 bytes short, forever.
    let body = r#"{"customer_id":"c-2","items":[]}"#;
    let mut stuck = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        stuck,
        "POST /orders HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len() + 10
    )
    .expect("write");
    stuck.flush().expect("flush");
    // In flight: the service has its headers and waits for the rest.
    eventually(budget::PROCESS, "the stuck request in flight", async || {
        (active_posts(&addr).await >= 1.0).then_some(())
    })
    .await;

    let exit = svc
        .terminate_within(std::time::Duration::from_secs(30))
        .expect("the stuck client cannot keep the service up");
    assert!(exit.success(), "{exit:?}");
    svc.line("drain deadline passed: connections still open were cut");
    svc.line("order-service stopped");
    // The flush ran: the finished request's span reached the collector.
    assert!(
        collector.spans().iter().any(|s| s.name == "POST /orders"),
        "spans flushed after the cut"
    );
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_requests_are_closed_and_big_bodies_refused() {
    use std::io::{Read as _, Write as _};

    let mut svc = Service::start(&[
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
        ("HEADER_READ_TIMEOUT_MS", "300".to_owned()),
        ("MAX_CONNECTIONS", "64".to_owned()),
    ]);
    let addr = svc.http_addr();

    // Fifty clients that start a request and never finish its headers.
    let mut stuck: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).expect("connect");
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("write");
            s
        })
        .collect();
    // Each is closed by the service, not left open.
    for s in &mut stuck {
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = [0_u8; 512];
        match s.read(&mut buf) {
            // Closed (a 408 first, or nothing).
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a stuck client was not cut off: {e}"),
        }
    }
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);

    // An order body over the limit is refused before it is read whole.
    let big = format!(
        r#"{{"customer_id":"{}","items":[]}}"#,
        "c".repeat(order_service::serve::MAX_BODY_BYTES)
    );
    let res = client
        .post(format!("http://{addr}/orders"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("order");
    assert_eq!(res.status(), 413);
    drop(svc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_while_standard_output_is_stalled() {
    use std::process::Stdio;

    // Standard output is a pipe nobody reads: once it is full, every write
    // to it blocks.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_order-service"))
        .env_clear()
        .env("HTTP_ADDR", &addr)
        .env("GRPC_ADDR", "127.0.0.1:0")
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("LOOPTEL_LOG_BUFFER_LINES", "64")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let client = reqwest::Client::new();
    eventually(budget::PROCESS, "the service up", async || {
        client
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    // Enough lines to fill the pipe (64 KiB) and the log queue (64 lines).
    for i in 0..300 {
        let res = client
            .post(format!("http://{addr}/orders"))
            .header("content-type", "application/json")
            .header("x-tenant-id", "acme")
            .body(format!(
                r#"{{"customer_id":"c-{i}","items":[{{"sku":"book","quantity":1}}]}}"#
            ))
            .send()
            .await
            .expect("order");
        assert_eq!(res.status(), 201, "serving goes on while logs are dropped");
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = eventually(
        budget::PROCESS,
        "the exit after SIGTERM with standard output stalled",
        async || child.try_wait().expect("wait"),
    )
    .await;
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_drop_is_a_counter_on_metrics() {
    let closed = looptel_tests::closed_port();
    let mut svc = Service::start(&[
        // A collector that is down: every export fails.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        // Its metrics pushed there too (an OTLP endpoint, no metrics
        // exporter named), five times a second.
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".to_owned()),
    ]);
    let addr = svc.http_addr();
    let client = reqwest::Client::new();
    let order = r#"{"customer_id":"c-1","items":[{"sku":"book","quantity":1}]}"#;
    // Through the gateway, with an email in baggage: not passed on.
    let res = client
        .post(format!("http://{addr}/orders"))
        .header("content-type", "application/json")
        .header("x-tenant-id", "acme")
        .header("baggage", "user.email=ada%40example.com")
        .body(order)
        .send()
        .await
        .expect("order");
    assert_eq!(res.status(), 201);
    // Not through the gateway: its baggage is dropped at the edge.
    let res = client
        .post(format!("http://{addr}/orders"))
        .header("content-type", "application/json")
        .header("baggage", "tenant.id=evil")
        .body(order)
        .send()
        .await
        .expect("order");
    assert_eq!(res.status(), 201);

    let value = |text: &str, name: &str| -> f64 {
        looptel_tests::scrape_value(text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    let text = eventually(
        budget::PROCESS,
        "a failed span export counted",
        async || {
            let text = client
                .get(format!("http://{addr}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (value(&text, "looptel_spans_export_failed_total") >= 1.0
                && value(&text, "looptel_metric_exports_failed_total") >= 1.0)
                .then_some(text)
        },
    )
    .await;
    assert!(
        value(&text, "looptel_baggage_members_denied_total") >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, "looptel_baggage_untrusted_dropped_total") >= 1.0,
        "{text}"
    );
    // What this scenario never causes reads 0: a counter wired to one of
    // the sources above would not.
    for quiet in [
        "looptel_log_lines_dropped_total",
        "looptel_log_lines_sampled_out_total",
        "looptel_baggage_over_budget_total",
        "looptel_spans_dropped_total",
        "looptel_log_records_export_failed_total",
    ] {
        assert_eq!(value(&text, quiet), 0.0, "{quiet}: {text}");
    }
    // A warning says so once drops start (and at most every 10 s after).
    let warning = svc.line(
        "telemetry: dropping data (counts since the last warning; a collector down or too slow?)",
    );
    assert_eq!(warning["level"], "WARN");
    assert!(
        warning["spans"].as_u64().is_some_and(|n| n >= 1),
        "{warning}"
    );
    // The shutdown says how many spans were lost, and the exit is clean.
    let exit = svc.terminate();
    assert!(exit.success(), "{exit:?}");
    let lost = svc.line("telemetry: spans not delivered");
    assert!(lost["lost"].as_u64().is_some_and(|n| n >= 1), "{lost}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_collector_ends_like_a_refusing_one_with_the_loss_said() {
    // Accepts connections and never answers: every export times out.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let at = blackhole.local_addr().expect("addr");
    let held = std::thread::spawn(move || {
        let _conns: Vec<_> = blackhole.incoming().take(64).collect();
    });
    let mut svc = Service::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{at}")),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "60000".to_owned()),
    ]);
    let addr = svc.http_addr();
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let res = client
            .get(format!("http://{addr}/orders/o-1"))
            .send()
            .await
            .expect("request");
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let exit = svc
        .terminate_within(std::time::Duration::from_secs(30))
        .expect("a bounded shutdown");
    assert!(
        exit.success(),
        "the exit status does not depend on how the collector failed: {exit:?}"
    );
    let lost = svc.line("telemetry: spans not delivered");
    assert!(lost["lost"].as_u64().is_some_and(|n| n >= 3), "{lost}");
    drop(held);
}
