//! Shared by the http-layer tests: a tracer whose spans land in memory.
#![allow(dead_code, unreachable_pub, unused_imports)]

use opentelemetry::trace::TraceContextExt;

/// Spans in memory, shared with the other crates' tests.
pub type Spans = looptel_tests::InMemorySpans;

pub use looptel_tests::attr;

/// The trace and span id of the current OpenTelemetry context.
pub fn current_ids() -> Option<(String, String)> {
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}
