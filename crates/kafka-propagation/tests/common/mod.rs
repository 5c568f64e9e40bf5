//! What the transport tests share: an in-memory span exporter, a registry,
//! the telemetry under test with the order-service's baggage policy, and a
//! caller with a tenant and a phone number in its baggage.

#![allow(dead_code, unused_imports)] // each test binary uses its part

use looptel_core::{Instrumentation, Propagator};
use looptel_kafka_propagation::{MessagingTelemetry, Mode};
use looptel_red_metrics::{Format, MessagingMetrics, Registry};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceId, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

/// The phone number the caller puts in baggage, which must never leave.
pub(crate) const PHONE: &str = "+33 6 12 34 56 78";

pub(crate) struct Setup {
    pub exporter: InMemorySpanExporter,
    pub provider: SdkTracerProvider,
    pub registry: Registry,
    pub telemetry: MessagingTelemetry<((), MessagingMetrics)>,
}

pub(crate) fn setup(mode: Mode) -> Setup {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let policy = looptel_baggage::BaggagePolicy::builder()
        .promote(["tenant.id"])
        .build();
    let inst = Instrumentation::new(
        &provider,
        Propagator::default().with_baggage_policy(policy.inject_policy()),
    );
    let registry = Registry::new();
    let telemetry = MessagingTelemetry::new(inst)
        .hook(MessagingMetrics::new(&registry))
        .mode(mode);
    Setup {
        exporter,
        provider,
        registry,
        telemetry,
    }
}

impl Setup {
    pub(crate) fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().expect("spans")
    }

    /// The spans named `name`.
    pub(crate) fn named(&self, name: &str) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    pub(crate) fn span(&self, name: &str) -> SpanData {
        self.named(name).into_iter().next().unwrap_or_else(|| {
            panic!(
                "no span {name:?}: {:?}",
                self.spans()
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
            )
        })
    }

    /// The caller: a span with `tenant.id` and a phone number in baggage.
    pub(crate) fn caller(&self) -> Context {
        let span = self.provider.tracer("test").start("POST /orders");
        Context::current_with_span(span).with_baggage([
            KeyValue::new("tenant.id", "acme"),
            KeyValue::new("user.phone", PHONE),
        ])
    }

    pub(crate) fn exposition(&self) -> String {
        self.registry.encode(Format::OpenMetrics)
    }
}

pub(crate) use looptel_tests::attr;

/// A span context's ids (remote or not).
pub(crate) fn ids(sc: &SpanContext) -> (TraceId, SpanId) {
    (sc.trace_id(), sc.span_id())
}
