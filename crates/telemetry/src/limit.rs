//! What every exported span goes through:
//! - `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT` / `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`
//!   for every attribute: string values (and strings in arrays) of spans and
//!   their events cut at a character boundary. The SDK has no such limit;
//!   request-derived attributes are already cut where the layers set them.
//! - The personal-data policy for attributes the service sets itself
//!   (`tracing` span fields such as `user.email`, `phone_number`,
//!   `session_id`): their values read `REDACTED`, as `url.query` parameters
//!   do ([`looptel_core::pii`]). The verdict per attribute name is cached
//!   (names come from code: a few hundred at most are kept).

use opentelemetry::{Array, Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::queue::Queue;

/// An exporter whose spans' string values are cut at `limit` bytes (none:
/// passed through as they are), which releases each batch's places in its
/// processor's [`Queue`] once exported, and whose failed exports are
/// counted.
#[derive(Debug)]
pub(crate) struct Limited<E> {
    inner: E,
    limit: Option<usize>,
    queue: Queue,
    /// Verdicts by attribute name, hashed with FxHash: the names come
    /// from code, not from requests, and SipHash cost about 2,000
    /// instructions a sampled order-service request on the export thread
    /// (callgrind, `scripts/bench.sh` service-sampled).
    denied: std::sync::Mutex<std::collections::HashMap<Key, bool, rustc_hash::FxBuildHasher>>,
}

/// The most attribute names whose verdict is cached.
const MAX_CACHED_NAMES: usize = 1024;

impl<E> Limited<E> {
    pub(crate) fn new(inner: E, limit: Option<usize>, queue: &Queue) -> Self {
        Self {
            inner,
            limit,
            queue: queue.clone(),
            denied: std::sync::Mutex::default(),
        }
    }

    /// Replaces the values of attributes whose names are personal data
    /// or a secret, in every span (and event) of `batch`: the cache of
    /// verdicts locked once per batch.
    fn redact(&self, batch: &mut [SpanData]) {
        let mut cache = self
            .denied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut redact = |attributes: &mut [KeyValue]| {
            for kv in attributes {
                let denied = match cache.get(&kv.key) {
                    Some(&denied) => denied,
                    None => {
                        let denied = looptel_core::pii::is_personal_or_secret(kv.key.as_str());
                        if cache.len() < MAX_CACHED_NAMES {
                            cache.insert(kv.key.clone(), denied);
                        }
                        denied
                    }
                };
                if denied {
                    kv.value = Value::from(looptel_core::pii::REDACTED);
                }
            }
        };
        for span in batch {
            redact(&mut span.attributes);
            for event in &mut span.events.events {
                redact(&mut event.attributes);
            }
        }
    }
}

fn cut(s: &str, limit: usize) -> Option<StringValue> {
    (s.len() > limit).then(|| StringValue::from(looptel_core::bounded(s, limit).to_owned()))
}

fn limit_value(value: &mut Value, limit: usize) {
    match value {
        Value::String(s) => {
            if let Some(c) = cut(s.as_str(), limit) {
                *s = c;
            }
        }
        Value::Array(Array::String(items)) => {
            for s in items {
                if let Some(c) = cut(s.as_str(), limit) {
                    *s = c;
                }
            }
        }
        _ => {}
    }
}

fn limit_all(attributes: &mut [KeyValue], limit: usize) {
    for kv in attributes {
        limit_value(&mut kv.value, limit);
    }
}

/// Cuts the string values of `span` at `limit` bytes.
pub(crate) fn limit_span(span: &mut SpanData, limit: usize) {
    limit_all(&mut span.attributes, limit);
    for event in &mut span.events.events {
        limit_all(&mut event.attributes, limit);
    }
}

impl<E: SpanExporter> SpanExporter for Limited<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        self.redact(&mut batch);
        if let Some(limit) = self.limit {
            for span in &mut batch {
                limit_span(span, limit);
            }
        }
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.queue.ended(spans, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    #[test]
    fn string_values_of_spans_and_events_are_cut_at_a_character_boundary() {
        let mem = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(mem.clone())
            .build();
        let mut span = provider.tracer("t").start("s");
        span.set_attribute(KeyValue::new("long", "é".repeat(10)));
        span.set_attribute(KeyValue::new("short", "ok"));
        span.set_attribute(KeyValue::new("n", 123_456_789_i64));
        span.add_event("e", vec![KeyValue::new("msg", "x".repeat(20))]);
        span.end();
        let mut data = mem.get_finished_spans().expect("spans").remove(0);
        limit_span(&mut data, 5);
        let get = |k: &str| {
            data.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(
            get("long"),
            Some(Value::from("éé")),
            "cut at a boundary: 4 of 5 bytes"
        );
        assert_eq!(get("short"), Some(Value::from("ok")));
        assert_eq!(get("n"), Some(Value::I64(123_456_789)));
        assert_eq!(data.events[0].attributes[0].value, Value::from("xxxxx"));
    }
}

#[cfg(test)]
mod redaction {
    use super::*;
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    #[tokio::test]
    async fn personal_attributes_set_by_the_service_are_redacted_on_export() {
        let mem = InMemorySpanExporter::default();
        let limited = Limited::new(
            mem.clone(),
            None,
            &Queue::spans(8, &crate::ExportStats::default()),
        );
        // The span as the SDK hands it to exporters.
        let spans = {
            let inner = InMemorySpanExporter::default();
            let p = SdkTracerProvider::builder()
                .with_simple_exporter(inner.clone())
                .build();
            let mut s = p.tracer("t").start("s");
            for (k, v) in [
                ("user.email", "ada@example.com"),
                ("phoneNumber", "13812348000"),
                ("session_id", "s-1"),
                ("order.id", "o-1"),
                ("user_agent.original", "curl/8"),
            ] {
                s.set_attribute(KeyValue::new(k, v));
            }
            s.add_event("e", vec![KeyValue::new("cc_number", "4111111111111111")]);
            s.end();
            inner.get_finished_spans().expect("spans")
        };
        limited.export(spans).await.expect("exported");
        let data = mem.get_finished_spans().expect("spans").remove(0);
        let get = |k: &str| {
            data.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(get("user.email").as_deref(), Some("REDACTED"));
        assert_eq!(get("phoneNumber").as_deref(), Some("REDACTED"));
        assert_eq!(get("session_id").as_deref(), Some("REDACTED"));
        assert_eq!(get("order.id").as_deref(), Some("o-1"));
        assert_eq!(get("user_agent.original").as_deref(), Some("curl/8"));
        assert_eq!(data.events[0].attributes[0].value.to_string(), "REDACTED");
    }
}
