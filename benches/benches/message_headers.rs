#![allow(missing_docs)] // criterion's macros generate undocumented items
//! Inject and extract of a typical context through Kafka record headers and
//! AMQP header tables, per message: looptel's carriers beside the seed's
//! approach (copy every header into a `HashMap<String, String>`, lossily,
//! then propagate through the map).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use looptel_core::{Instrumentation, Propagator};
use looptel_kafka_propagation::{MessagingTelemetry, amqp, kafka};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// A sampled span and `tenant.id` in baggage, as order-service sends.
fn typical() -> Context {
    let sc = SpanContext::new(
        TraceId::from(0x0af7651916cd43dd8448eb211c80319c),
        SpanId::from(0xb7ad6b7169203331),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    Context::new()
        .with_remote_span_context(sc)
        .with_baggage([opentelemetry::KeyValue::new("tenant.id", "acme")])
}

/// The user's own headers on every message.
fn user_headers() -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
        .insert(Header {
            key: "event-type",
            value: Some("OrderPlaced"),
        })
}

fn user_table() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "content-type".into(),
        AMQPValue::LongString("application/json".into()),
    );
    t.insert(
        "event-type".into(),
        AMQPValue::LongString("OrderPlaced".into()),
    );
    t
}

fn headers(c: &mut Criterion) {
    let propagator = Propagator::default();
    let telemetry = MessagingTelemetry::new(Instrumentation::disabled(propagator.clone()));
    let cx = typical();
    let mut g = c.benchmark_group("message_headers");
    // The user's headers exist either way: made outside the timing.
    let small = BatchSize::SmallInput;

    // Trace context alone (no baggage): the carrier and the W3C fields.
    let bare = Context::new().with_remote_span_context(cx.span().span_context().clone());
    g.bench_function("kafka/looptel/inject+extract/traceparent-only", |b| {
        let _guard = bare.clone().attach();
        b.iter_batched(
            user_headers,
            |user| {
                let h = kafka::inject(&telemetry, Some(user));
                let back = propagator.extract_message(&kafka::extractor(Some(&h)));
                black_box(back.span().span_context().trace_id())
            },
            small,
        );
    });
    g.bench_function("kafka/looptel/inject+extract", |b| {
        let _guard = cx.clone().attach();
        b.iter_batched(
            user_headers,
            |user| {
                let h = kafka::inject(&telemetry, Some(user));
                let back = propagator.extract_message(&kafka::extractor(Some(&h)));
                black_box(back.span().span_context().trace_id())
            },
            small,
        );
    });
    g.bench_function("kafka/map-copy/inject+extract", |b| {
        b.iter_batched(
            user_headers,
            |mut h| {
                // The seed: inject into a map, copy the map into the headers…
                let mut map: HashMap<String, String> = HashMap::new();
                propagator.inject(black_box(&cx), &mut map);
                for (k, v) in &map {
                    h = h.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
                // …and on receipt copy every header into a map.
                let mut received: HashMap<String, String> = HashMap::new();
                for header in h.iter() {
                    received.insert(
                        header.key.to_owned(),
                        String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                    );
                }
                let back = propagator.extract(&received);
                black_box(back.span().span_context().trace_id())
            },
            small,
        );
    });
    g.bench_function("amqp/looptel/inject+extract", |b| {
        let _guard = cx.clone().attach();
        b.iter_batched(
            user_table,
            |user| {
                let t = amqp::inject(&telemetry, Some(user));
                let back = propagator.extract_message(&amqp::extractor(Some(&t)));
                black_box(back.span().span_context().trace_id())
            },
            small,
        );
    });
    g.bench_function("amqp/map-copy/inject+extract", |b| {
        b.iter_batched(
            user_table,
            |mut t| {
                let mut map: HashMap<String, String> = HashMap::new();
                propagator.inject(black_box(&cx), &mut map);
                for (k, v) in &map {
                    t.insert(
                        ShortString::from(k.as_str()),
                        AMQPValue::LongString(LongString::from(v.as_bytes())),
                    );
                }
                let mut received: HashMap<String, String> = HashMap::new();
                for (k, v) in t.inner() {
                    if let AMQPValue::LongString(s) = v {
                        received.insert(
                            k.to_string(),
                            String::from_utf8_lossy(s.as_bytes()).into_owned(),
                        );
                    }
                }
                let back = propagator.extract(&received);
                black_box(back.span().span_context().trace_id())
            },
            small,
        );
    });
    g.finish();
}

criterion_group!(benches, headers);
criterion_main!(benches);
