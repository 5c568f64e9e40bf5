//! One trace across every hop of the real binary: the caller's HTTP request
//! → order-service's server span → the business span → the gRPC client
//! and server → the Kafka producer → the fulfilment consumer (parent mode)
//! → the AMQP publish → the payment consumer. Checked from the spans the
//! service wrote (OTLP JSON lines) and its log lines: the caller's trace
//! id everywhere, the right parents, `tenant.id` on every hop's lines, and
//! the phone number the caller put in baggage nowhere.
//!
//! Kafka is the service's embedded mock cluster; RabbitMQ the one on
//! 127.0.0.1:5672 (or `AMQP_URL`), which `scripts/test.sh` starts.

mod common;

use std::path::Path;

use common::{Service, amqp_url};
use serde_json::Value;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const PHONE: &str = "+33-6-12-34-56-78";

/// Every span written so far.
fn spans(path: &Path) -> Vec<Value> {
    looptel_tests::otlp_json_spans(path)
}

fn find<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name && s["traceId"] == CALLER_TRACE)
        .unwrap_or_else(|| {
            panic!(
                "no span {name:?} in the caller's trace; written: {:?}",
                spans
                    .iter()
                    .map(|s| (&s["name"], &s["traceId"]))
                    .collect::<Vec<_>>()
            )
        })
}

fn kind(span: &Value) -> i64 {
    span["kind"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_http_request_through_grpc_kafka_and_amqp() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("spans.jsonl");
    // An exchange and queue of its own: no other test's payments in it.
    let name = format!("one-trace-{}", std::process::id());
    let mut svc = Service::start(&[
        ("LOOPTEL_TRACES_FILE", file.display().to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("AMQP_URL", amqp_url()),
        ("PAYMENTS_EXCHANGE", name.clone()),
        ("PAYMENTS_QUEUE", name.clone()),
    ]);
    let addr = svc.http_addr();
    svc.line("payments through RabbitMQ");

    let res = reqwest::Client::new()
        .post(format!("http://{addr}/orders"))
        .header("content-type", "application/json")
        .header("x-tenant-id", "acme")
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .header("baggage", format!("user.phone={PHONE}"))
        .body(r#"{"customer_id":"c-1","items":[{"sku":"book","quantity":1}]}"#)
        .send()
        .await
        .expect("order");
    assert_eq!(res.status(), 201);

    // Every hop's line, in the caller's trace, with the tenant.
    let mut lines = Vec::new();
    for message in [
        "order placed",
        "stock reserved",
        "order fulfilled",
        "payment captured",
    ] {
        let l = svc.line(message);
        assert_eq!(l["trace_id"], CALLER_TRACE, "{message}: {l}");
        assert_eq!(l["tenant.id"], "acme", "{message}: {l}");
        lines.push(l);
    }

    // The spans, once the last hop's is written.
    let all = looptel_tests::eventually(
        looptel_tests::budget::PROCESS,
        "the payment's span written",
        async || {
            let all = spans(&file);
            all.iter()
                .any(|s| s["name"] == format!("process {name}:payment.requested:{name}"))
                .then_some(all)
        },
    )
    .await;
    let server = find(&all, "POST /orders");
    let place = find(&all, "Order.OrderService.PlaceOrder");
    let grpc: Vec<&Value> = all
        .iter()
        .filter(|s| {
            s["name"] == "inventory.v1.StockService/ReserveItem" && s["traceId"] == CALLER_TRACE
        })
        .collect();
    let grpc_client = grpc
        .iter()
        .find(|s| kind(s) == 3)
        .expect("gRPC client span");
    let grpc_server = grpc
        .iter()
        .find(|s| kind(s) == 2)
        .expect("gRPC server span");
    let send = find(&all, "send orders");
    let fulfil = find(&all, "process orders");
    let publish = find(&all, &format!("publish {name}:payment.requested"));
    let pay = find(&all, &format!("process {name}:payment.requested:{name}"));

    let parent = |child: &Value, parent: &Value| {
        assert_eq!(
            child["parentSpanId"], parent["spanId"],
            "{} is a child of {}",
            child["name"], parent["name"]
        );
    };
    assert_eq!(server["parentSpanId"], CALLER_SPAN);
    parent(place, server);
    parent(grpc_client, place);
    parent(grpc_server, grpc_client);
    parent(send, place);
    parent(fulfil, send);
    parent(publish, fulfil);
    parent(pay, publish);
    // SERVER 2, CLIENT 3, PRODUCER 4, CONSUMER 5.
    assert_eq!(
        [send, fulfil, publish, pay].map(kind),
        [4, 5, 4, 5],
        "producer and consumer kinds"
    );
    // The log lines were written inside their hop's span.
    assert_eq!(lines[2]["span_id"], fulfil["spanId"]);
    assert_eq!(lines[3]["span_id"], pay["spanId"]);

    // The phone number went nowhere: no span, no log line.
    let written = std::fs::read_to_string(&file).expect("spans");
    assert!(!written.contains(PHONE), "a span carries the phone number");
    drop(svc);
    common::delete_payments(&amqp_url(), &name).await;
    assert!(lines.iter().all(|l| !l.to_string().contains(PHONE)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fulfilment_is_an_error_span_a_logged_error_and_a_counted_failure() {
    let mut svc = Service::start(&[
        ("ENABLE_FAULTS", "1".to_owned()),
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
        ("MESSAGE_MAX_ATTEMPTS", "2".to_owned()),
    ]);
    let addr = svc.http_addr();
    let client = reqwest::Client::new();
    let res = client
        .put(format!("http://{addr}/admin/faults"))
        .header("content-type", "application/json")
        .body(r#"{"consumer_error_rate": 1}"#)
        .send()
        .await
        .expect("faults");
    assert_eq!(res.status(), 200);
    let res = client
        .post(format!("http://{addr}/orders"))
        .header("content-type", "application/json")
        .header("x-tenant-id", "acme")
        .body(r#"{"customer_id":"c-1","items":[{"sku":"book","quantity":1}]}"#)
        .send()
        .await
        .expect("order");
    assert_eq!(
        res.status(),
        201,
        "the order is placed; its processing fails"
    );
    let placed = svc.line("order placed");
    // Each failed attempt is a WARN, the last one's dead letter an ERROR,
    // all in the order's trace with its tenant.
    let retried = svc.line("order event failed");
    assert_eq!(retried["level"], "WARN");
    assert_eq!(retried["attempt"], 1);
    let failed = svc.line("order event dead-lettered");
    assert_eq!(failed["level"], "ERROR");
    assert_eq!(failed["attempts"], 2);
    for l in [&retried, &failed] {
        assert_eq!(l["trace_id"], placed["trace_id"], "in the order's trace");
        assert_eq!(l["tenant.id"], "acme");
    }

    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("messaging_process_duration_seconds_count{"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        line.contains("messaging_destination_name=\"orders\""),
        "{line}"
    );
    assert!(
        line.contains("messaging_consumer_group_name=\"fulfilment\""),
        "{line}"
    );
    assert!(line.contains("error_type=\"fulfilment_failed\""), "{line}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("messaging_client_sent_messages_total{")
                && l.contains("messaging_operation_name=\"send\"")),
        "{metrics}"
    );
}
