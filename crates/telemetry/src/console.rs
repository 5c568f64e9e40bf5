//! The embedded default exporter: one JSON object per finished span on
//! standard error, so `trace_id`s in logs can be matched without a collector.

use std::fmt;
use std::io::Write;
use std::sync::{Mutex, PoisonError};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Writes each finished span as one JSON line.
pub(crate) struct ConsoleExporter {
    out: Mutex<Box<dyn Write + Send>>,
}

impl fmt::Debug for ConsoleExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleExporter").finish_non_exhaustive()
    }
}

impl ConsoleExporter {
    pub(crate) fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }
}

fn rfc3339(t: std::time::SystemTime) -> Value {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .map_or(Value::Null, Value::String)
}

fn value(v: &opentelemetry::Value) -> Value {
    match v {
        opentelemetry::Value::Bool(b) => (*b).into(),
        opentelemetry::Value::I64(i) => (*i).into(),
        opentelemetry::Value::F64(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        other => other.as_str().into_owned().into(),
    }
}

pub(crate) fn span_json(span: &SpanData) -> Value {
    let attributes: Map<String, Value> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), value(&kv.value)))
        .collect();
    let events: Vec<Value> = span
        .events
        .iter()
        .map(|e| {
            let attrs: Map<String, Value> = e
                .attributes
                .iter()
                .map(|kv| (kv.key.to_string(), value(&kv.value)))
                .collect();
            json!({ "name": e.name, "timestamp": rfc3339(e.timestamp), "attributes": attrs })
        })
        .collect();
    let (status, description) = match &span.status {
        Status::Unset => ("Unset", None),
        Status::Ok => ("Ok", None),
        Status::Error { description } => ("Error", Some(description.to_string())),
    };
    let kind = match span.span_kind {
        SpanKind::Client => "CLIENT",
        SpanKind::Server => "SERVER",
        SpanKind::Producer => "PRODUCER",
        SpanKind::Consumer => "CONSUMER",
        SpanKind::Internal => "INTERNAL",
    };
    let duration = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    let mut obj = json!({
        "span": span.name,
        "trace_id": span.span_context.trace_id().to_string(),
        "span_id": span.span_context.span_id().to_string(),
        "kind": kind,
        "start_time": rfc3339(span.start_time),
        "end_time": rfc3339(span.end_time),
        "duration_ms": duration.as_secs_f64() * 1e3,
        "status": status,
        "attributes": attributes,
    });
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        obj["parent_span_id"] = span.parent_span_id.to_string().into();
    }
    if let Some(d) = description {
        obj["status_description"] = d.into();
    }
    if !events.is_empty() {
        obj["events"] = events.into();
    }
    obj
}

impl SpanExporter for ConsoleExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut buf = Vec::with_capacity(batch.len() * 512);
        for span in &batch {
            let _ = serde_json::to_writer(&mut buf, &span_json(span));
            buf.push(b'\n');
        }
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        // A broken stderr must not fail the service; the spans are dropped.
        let _ = out.write_all(&buf).and_then(|()| out.flush());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    #[test]
    fn renders_ids_status_attributes_and_parent() {
        let mem = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(mem.clone())
            .build();
        let tracer = provider.tracer("t");
        tracer.in_span("parent", |cx| {
            let mut child = tracer.start_with_context("child", &cx);
            child.set_attribute(KeyValue::new("order.id", "o-1"));
            child.set_status(Status::error("boom"));
            child.end();
        });
        let spans = mem.get_finished_spans().expect("spans");
        let child = spans.iter().find(|s| s.name == "child").expect("child");
        let j = span_json(child);
        assert_eq!(j["span"], "child");
        assert_eq!(j["trace_id"], child.span_context.trace_id().to_string());
        assert_eq!(j["parent_span_id"], child.parent_span_id.to_string());
        assert_eq!(j["status"], "Error");
        assert_eq!(j["status_description"], "boom");
        assert_eq!(j["attributes"]["order.id"], "o-1");
        assert_eq!(j["kind"], "INTERNAL");
    }
}
