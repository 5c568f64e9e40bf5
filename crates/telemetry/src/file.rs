//! Finished spans as OTLP JSON lines appended to a file (one
//! `ExportTraceServiceRequest` per exported batch, ids in hex): the format
//! of the OpenTelemetry Collector's file exporter, which `looptel-retro`
//! and other tools read. With it, the whole loop runs on one machine with
//! no collector.
//!
//! The encoding is `opentelemetry-proto`'s own (its serde feature), so the
//! file is what any OTLP JSON reader expects.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// Appends each exported batch to a file as one OTLP JSON line.
pub(crate) struct OtlpFileExporter {
    out: Mutex<File>,
    resource: ResourceAttributesWithSchema,
}

impl std::fmt::Debug for OtlpFileExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpFileExporter").finish_non_exhaustive()
    }
}

impl OtlpFileExporter {
    /// Opens `path` for appending (created if missing).
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            out: Mutex::new(file),
            resource: ResourceAttributesWithSchema::default(),
        })
    }
}

/// One batch as one line of OTLP JSON.
pub(crate) fn line(batch: Vec<SpanData>, resource: &ResourceAttributesWithSchema) -> Vec<u8> {
    let request = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(batch, resource),
    };
    let mut buf = serde_json::to_vec(&request).unwrap_or_default();
    buf.push(b'\n');
    buf
}

impl SpanExporter for OtlpFileExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let buf = line(batch, &self.resource);
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        // One write per line: a reader never sees half of another batch.
        out.write_all(&buf)
            .map_err(|e| OTelSdkError::InternalFailure(format!("writing the traces file: {e}")))
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Span as _, Status, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    #[test]
    fn writes_one_otlp_json_line_per_batch_with_hex_ids_and_the_resource() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("spans.jsonl");
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder_empty()
                    .with_service_name("order-service")
                    .build(),
            )
            .with_simple_exporter(OtlpFileExporter::open(&path).expect("opens"))
            .build();
        let tracer = provider.tracer("t");
        let (trace_id, parent_id) = tracer.in_span("POST /orders", |cx| {
            use opentelemetry::trace::TraceContextExt as _;
            let mut child = tracer.start_with_context("inventory", &cx);
            child.set_attribute(KeyValue::new("error.type", "UNAVAILABLE"));
            child.set_status(Status::error("inventory down"));
            child.end();
            let sc = cx.span().span_context().clone();
            (sc.trace_id(), sc.span_id())
        });
        provider.shutdown().expect("flushed");
        let text = std::fs::read_to_string(&path).expect("written");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "a simple exporter exports span by span");
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
        let rs = &v["resourceSpans"][0];
        assert_eq!(rs["resource"]["attributes"][0]["key"], "service.name");
        assert_eq!(
            rs["resource"]["attributes"][0]["value"]["stringValue"],
            "order-service"
        );
        let span = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(span["name"], "inventory");
        assert_eq!(span["traceId"], trace_id.to_string());
        assert_eq!(span["parentSpanId"], parent_id.to_string());
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["status"]["message"], "inventory down");
        // Read back by the proto crate itself: the encoding round-trips.
        let back: ExportTraceServiceRequest = serde_json::from_str(lines[1]).expect("OTLP JSON");
        assert_eq!(
            back.resource_spans[0].scope_spans[0].spans[0].name,
            "POST /orders"
        );
    }
}
