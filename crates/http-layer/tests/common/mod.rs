//! Shared by the http-layer tests: a tracer whose spans land in memory.
#![allow(dead_code, unreachable_pub)]

use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::trace::SpanData;

/// Spans in memory, shared with the other crates' tests.
pub type Spans = looptel_tests::InMemorySpans;

pub fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The trace and span id of the current OpenTelemetry context.
pub fn current_ids() -> Option<(String, String)> {
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}
