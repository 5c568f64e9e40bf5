//! Message headers (Kafka, AMQP, NATS) as a foreign producer may send them:
//! any keys and bytes extract without panicking, and the direct byte read
//! agrees with the generic carrier path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use looptel_core::{MessageHeaderExtractor, Propagator};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::TraceContextExt;

const KEYS: [&str; 4] = ["traceparent", "TraceState", "baggage", "x-other"];

fuzz_target!(|data: &[u8]| {
    let headers: Vec<(&str, Option<&[u8]>)> = data
        .split(|b| *b == 0)
        .enumerate()
        .map(|(i, v)| (KEYS[i % 4], (!v.is_empty()).then_some(v)))
        .collect();
    let e = MessageHeaderExtractor::new(headers);
    let p = Propagator::default();
    let (direct, generic) = (p.extract_message(&e), p.extract(&e));
    let (a, b) = (
        direct.span().span_context().clone(),
        generic.span().span_context().clone(),
    );
    assert_eq!(
        (a.trace_id(), a.span_id(), a.is_sampled()),
        (b.trace_id(), b.span_id(), b.is_sampled())
    );
    assert_eq!(direct.baggage().len(), generic.baggage().len());
});
