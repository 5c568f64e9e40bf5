//! The carriers on arbitrary input: header bytes from anyone never panic;
//! what is injected extracts back to the same context, the user's own
//! headers untouched.

#![cfg(all(feature = "rdkafka", feature = "lapin", feature = "async-nats"))]

use std::collections::HashMap;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use looptel_core::Propagator;
use looptel_kafka_propagation::{amqp, kafka, nats};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use proptest::prelude::*;
use rdkafka::message::{Header, Headers, OwnedHeaders};

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("traceparent".to_owned()),
        Just("TRACEPARENT".to_owned()),
        Just("tracestate".to_owned()),
        Just("baggage".to_owned()),
        "[a-zA-Z0-9._-]{1,20}",
    ]
}

fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Some),
        "00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]".prop_map(|s| Some(s.into_bytes())),
        // Any version, then a tail of anything (a future version may add
        // fields; non-ASCII bytes make it invalid).
        (
            "[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-0[0-3]",
            proptest::collection::vec(any::<u8>(), 0..6),
        )
            .prop_map(|(s, tail)| {
                let mut v = s.into_bytes();
                if !tail.is_empty() {
                    v.push(b'-');
                    v.extend(tail);
                }
                Some(v)
            }),
        "([a-z.]{1,8}=[ -~]{0,12},?){0,5}".prop_map(|s| Some(s.into_bytes())),
    ]
}

fn context(trace: u128, span: u64, sampled: bool, tenant: &str) -> Context {
    let sc = SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        false,
        TraceState::default(),
    );
    Context::new()
        .with_remote_span_context(sc)
        .with_baggage([opentelemetry::KeyValue::new("tenant.id", tenant.to_owned())])
}

fn fields(cx: &Context) -> Vec<(String, String)> {
    let mut map: HashMap<String, String> = HashMap::new();
    Propagator::default().inject(cx, &mut map);
    map.into_iter().collect()
}

/// What W3C Trace Context says a carrier's `traceparent` fields give, where
/// it is simple to say: no field, no parent; exactly one field holding a
/// version-00 value, that parent (or none when its ids are all zeros).
/// Other cases (repeated fields, future versions) are left to the
/// differential property below.
#[derive(Debug, PartialEq)]
enum Expected {
    Parent {
        trace: String,
        span: String,
        sampled: bool,
    },
    None,
    NotSaid,
}

fn expected<'a>(fields: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> Expected {
    let values: Vec<Option<&[u8]>> = fields
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
        .map(|(_, v)| v)
        .collect();
    let value = match values.as_slice() {
        [] => return Expected::None,
        [one] => one.unwrap_or_default(),
        _ => return Expected::NotSaid,
    };
    let Ok(text) = std::str::from_utf8(value) else {
        return Expected::None;
    };
    let parts: Vec<&str> = text.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !text.starts_with("00-") {
        return Expected::NotSaid;
    }
    match parts.as_slice() {
        ["00", trace, span, flags] if hex(trace, 32) && hex(span, 16) && hex(flags, 2) => {
            if trace.bytes().all(|b| b == b'0') || span.bytes().all(|b| b == b'0') {
                Expected::None
            } else {
                let flags = u8::from_str_radix(flags, 16).unwrap_or(0);
                Expected::Parent {
                    trace: (*trace).to_owned(),
                    span: (*span).to_owned(),
                    sampled: flags & 1 == 1,
                }
            }
        }
        _ => Expected::None,
    }
}

fn got(cx: &Context) -> Expected {
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        Expected::Parent {
            trace: sc.trace_id().to_string(),
            span: sc.span_id().to_string(),
            sampled: sc.is_sampled(),
        }
    } else {
        Expected::None
    }
}

proptest! {
    #[test]
    fn kafka_headers_from_anyone_give_the_parent_w3c_says(headers in proptest::collection::vec((key(), value()), 0..12)) {
        let mut owned = OwnedHeaders::new();
        for (k, v) in &headers {
            owned = owned.insert(Header { key: k, value: v.as_deref() });
        }
        let cx = Propagator::default().extract(&kafka::extractor(Some(&owned)));
        let want = expected(headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
        if want != Expected::NotSaid {
            prop_assert_eq!(got(&cx), want);
        }
        // Baggage members come only from baggage fields.
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("baggage")) {
            prop_assert_eq!(cx.baggage().len(), 0);
        }
        let rewritten = kafka::with_fields(Some(owned), &[("traceparent".to_owned(), "x".to_owned())]);
        prop_assert!(rewritten.iter().filter(|h| h.key.eq_ignore_ascii_case("traceparent")).count() == 1);
    }

    #[test]
    fn amqp_tables_from_anyone_give_the_parent_w3c_says(headers in proptest::collection::vec((key(), value(), 0..4_u8), 0..12)) {
        let mut table = FieldTable::default();
        for (k, v, kind) in headers {
            let bytes = v.unwrap_or_default();
            let value = match kind {
                0 => AMQPValue::LongString(LongString::from(bytes)),
                1 => AMQPValue::ByteArray(bytes.into()),
                2 => AMQPValue::LongLongInt(bytes.len() as i64),
                _ => match String::from_utf8(bytes) {
                    Ok(s) if s.len() < 256 => AMQPValue::ShortString(ShortString::from(s)),
                    _ => AMQPValue::Void,
                },
            };
            table.insert(ShortString::from(k), value);
        }
        let cx = Propagator::default().extract(&amqp::extractor(Some(&table)));
        // Only text values carry a field: a number or nothing is no parent.
        let fields: Vec<(String, Option<Vec<u8>>)> = table
            .inner()
            .iter()
            .map(|(k, v)| {
                let bytes = match v {
                    AMQPValue::LongString(s) => Some(s.as_bytes().to_vec()),
                    AMQPValue::ShortString(s) => Some(s.as_str().as_bytes().to_vec()),
                    AMQPValue::ByteArray(b) => Some(b.as_slice().to_vec()),
                    _ => None,
                };
                (k.as_str().to_owned(), bytes)
            })
            .collect();
        // A traceparent that is not text: left to the differential property.
        let untyped = fields
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("traceparent") && v.is_none());
        let want = expected(fields.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
        if !untyped && want != Expected::NotSaid {
            prop_assert_eq!(got(&cx), want);
        }
    }

    #[test]
    fn what_is_injected_extracts_back_the_same_context(
        trace in 1..u128::MAX,
        span in 1..u64::MAX,
        sampled in any::<bool>(),
        tenant in "[a-z0-9]{1,16}",
        user in proptest::collection::vec(("x-[a-z]{1,10}", "[ -~]{0,30}"), 0..6),
    ) {
        let cx = context(trace, span, sampled, &tenant);
        let ours = fields(&cx);

        let mut owned = OwnedHeaders::new();
        let mut table = FieldTable::default();
        for (k, v) in &user {
            owned = owned.insert(Header { key: k, value: Some(v.as_bytes()) });
            table.insert(ShortString::from(k.as_str()), AMQPValue::LongString(LongString::from(v.as_bytes())));
        }
        let mut nats_headers = async_nats::HeaderMap::new();
        for (k, v) in &user {
            nats_headers.insert(k.as_str(), v.as_str());
        }
        let owned = kafka::with_fields(Some(owned), &ours);
        let table = amqp::with_fields(Some(table), &ours);
        let nats_headers = nats::with_fields(Some(nats_headers), &ours);
        for back in [
            Propagator::default().extract_message(&kafka::extractor(Some(&owned))),
            Propagator::default().extract_message(&amqp::extractor(Some(&table))),
            Propagator::default().extract_message(&nats::extractor(Some(&nats_headers))),
        ] {
            let sc = back.span().span_context().clone();
            prop_assert_eq!(sc.trace_id(), TraceId::from(trace));
            prop_assert_eq!(sc.span_id(), SpanId::from(span));
            prop_assert_eq!(sc.is_sampled(), sampled);
            prop_assert_eq!(back.baggage().get("tenant.id").map(|v| v.to_string()), Some(tenant.clone()));
        }
        // The user's headers, untouched and in order.
        let kept: Vec<(String, Vec<u8>)> = owned
            .iter()
            .filter(|h| h.key.starts_with("x-"))
            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
            .collect();
        let expected: Vec<(String, Vec<u8>)> = user.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
        prop_assert_eq!(kept, expected);
    }
}

fn summary(cx: &Context) -> (String, String, bool, String, Vec<(String, String)>) {
    let sc = cx.span().span_context().clone();
    let mut baggage: Vec<(String, String)> = cx
        .baggage()
        .iter()
        .map(|(k, (v, _))| (k.to_string(), v.to_string()))
        .collect();
    baggage.sort();
    (
        sc.trace_id().to_string(),
        sc.span_id().to_string(),
        sc.is_sampled(),
        sc.trace_state().header(),
        baggage,
    )
}

proptest! {
    /// One rule: the direct read of the header bytes and the generic
    /// carrier path agree on anything.
    #[test]
    fn the_direct_and_the_generic_read_agree(headers in proptest::collection::vec((key(), value()), 0..8)) {
        let e = looptel_core::MessageHeaderExtractor::new(
            headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
        );
        let p = Propagator::default();
        prop_assert_eq!(summary(&p.extract_message(&e)), summary(&p.extract(&e)));
    }
}
