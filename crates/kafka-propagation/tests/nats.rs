//! NATS against the server on 127.0.0.1:4222 (or `NATS_URL`), which runs
//! on these machines. Each test uses its own subjects.

#![cfg(feature = "async-nats")]

mod common;

use std::time::Duration;

use common::setup;

use async_nats::{HeaderMap, Subscriber};
use looptel_core::ErrorOutcome;
use looptel_kafka_propagation::{Mode, nats};
use looptel_red_metrics::Format;
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use opentelemetry_sdk::trace::SpanData;
use tokio_stream::StreamExt as _;

async fn client() -> async_nats::Client {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    eprintln!("NATS: the server at {url} (NATS_URL, or 127.0.0.1:4222)");
    async_nats::connect(url)
        .await
        .expect("NATS on 127.0.0.1:4222")
}

fn subject(name: &str) -> String {
    format!("looptel.test.{}.{name}", std::process::id())
}

async fn next(sub: &mut Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a message within 10 s")
        .expect("subscription open")
}

#[derive(Debug)]
struct Failed;

impl ErrorOutcome for Failed {
    fn error_type(&self) -> &'static str {
        "fulfilment_failed"
    }
}

#[tokio::test]
async fn link_and_parent_modes_through_nats_with_baggage_and_no_pii() {
    for mode in [Mode::Link, Mode::Parent] {
        let s = setup(mode);
        let c = client().await;
        let subj = subject(&format!("{mode:?}").to_lowercase());
        let mut sub = c.subscribe(subj.clone()).await.expect("subscribe");
        let mut user = HeaderMap::new();
        user.insert("Content-Type", "application/json");
        let caller = s.caller();
        {
            let _g = caller.clone().attach();
            nats::publish(&s.telemetry, &c, &subj, Some(user), "{}".into())
                .await
                .expect("published");
        }
        let m = next(&mut sub).await;
        let headers = m.headers.clone().expect("headers");
        assert_eq!(
            headers.get("Content-Type").map(|v| v.as_str()),
            Some("application/json")
        );
        assert_eq!(
            headers.get("baggage").map(|v| v.as_str()),
            Some("tenant.id=acme"),
            "no email"
        );
        let tenant = nats::process(&s.telemetry, &m, || async {
            Ok::<_, Failed>(
                Context::current()
                    .baggage()
                    .get("tenant.id")
                    .map(|v| v.to_string()),
            )
        })
        .await
        .expect("processed");
        assert_eq!(tenant.as_deref(), Some("acme"));

        let publish = s.span(&format!("publish {subj}"));
        let process = s.span(&format!("process {subj}"));
        assert_eq!(publish.span_kind, SpanKind::Producer);
        assert_eq!(process.span_kind, SpanKind::Consumer);
        match mode {
            Mode::Link => {
                assert_ne!(
                    process.span_context.trace_id(),
                    publish.span_context.trace_id()
                );
                assert_eq!(
                    process.links[0].span_context.span_id(),
                    publish.span_context.span_id()
                );
            }
            Mode::Parent => {
                assert_eq!(
                    process.span_context.trace_id(),
                    caller.span().span_context().trace_id()
                );
                assert_eq!(process.parent_span_id, publish.span_context.span_id());
            }
        }
        let text = s.registry.encode(Format::OpenMetrics);
        assert!(
            text.lines()
                .any(|l| l.starts_with("messaging_client_sent_messages_total{")
                    && l.contains("messaging_system=\"nats\"")
                    && l.contains(&format!("messaging_destination_name=\"{subj}\""))),
            "{text}"
        );
    }
}

#[tokio::test]
async fn foreign_headers_a_failing_handler_and_a_batch() {
    let s = setup(Mode::Parent);
    let c = client().await;
    let subj = subject("foreign");
    let mut sub = c.subscribe(subj.clone()).await.expect("subscribe");
    let huge = "k=v,".repeat(5_000);
    let cases: Vec<HeaderMap> = vec![
        [("traceparent", "not-a-traceparent")]
            .into_iter()
            .collect::<Vec<_>>(),
        vec![("baggage", huge.as_str())],
        vec![("traceparent", "")],
    ]
    .into_iter()
    .map(|pairs| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k, v);
        }
        h
    })
    .collect();
    let mut repeated = HeaderMap::new();
    repeated.append(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    repeated.append(
        "traceparent",
        "00-11111111111111111111111111111111-2222222222222222-01",
    );
    let n = cases.len() + 1;
    for h in cases.into_iter().chain([repeated]) {
        c.publish_with_headers(subj.clone(), h, "{}".into())
            .await
            .expect("published");
    }
    c.flush().await.expect("flushed");
    let mut got = Vec::new();
    for _ in 0..n {
        let m = next(&mut sub).await;
        let r = nats::process(&s.telemetry, &m, || async { Err::<(), _>(Failed) }).await;
        assert!(r.is_err());
        got.push(m);
    }
    let spans: Vec<SpanData> = s
        .exporter
        .get_finished_spans()
        .expect("spans")
        .into_iter()
        .filter(|sp| sp.name == format!("process {subj}"))
        .collect();
    assert_eq!(spans.len(), n);
    for sp in &spans {
        assert_eq!(
            sp.parent_span_id,
            opentelemetry::trace::SpanId::INVALID,
            "a new root"
        );
        assert!(matches!(sp.status, Status::Error { .. }));
    }
    let text = s.registry.encode(Format::OpenMetrics);
    assert!(
        text.lines().any(
            |l| l.starts_with("messaging_process_duration_seconds_count{")
                && l.contains("error_type=\"fulfilment_failed\"")
        ),
        "{text}"
    );

    nats::receive_batch(&s.telemetry, &got, &subj).end(&Ok::<_, Failed>(()));
    let receive = s.span(&format!("receive {subj}"));
    assert_eq!(receive.span_kind, SpanKind::Client);
    assert!(receive.links.is_empty(), "no valid context among them");
    assert!(
        receive
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "messaging.batch.message_count"
                && kv.value == opentelemetry::Value::I64(n as i64))
    );
}
