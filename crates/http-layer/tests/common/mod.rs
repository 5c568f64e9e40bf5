//! Shared by the http-layer tests: a tracer whose spans land in memory.
#![allow(dead_code, unreachable_pub)]

use looptel_core::{Instrumentation, Propagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

pub struct Spans {
    pub exporter: InMemorySpanExporter,
    pub provider: SdkTracerProvider,
}

impl Spans {
    pub fn new() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        Self { exporter, provider }
    }

    pub fn instrumentation(&self) -> Instrumentation {
        Instrumentation::new(&self.provider, Propagator::default())
    }

    pub fn finished(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().expect("spans")
    }

    pub fn one(&self) -> SpanData {
        let mut spans = self.finished();
        assert_eq!(spans.len(), 1, "{spans:#?}");
        spans.remove(0)
    }
}

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
