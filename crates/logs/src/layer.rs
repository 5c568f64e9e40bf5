//! The JSON layer itself.

use looptel_catalogue::logs as f;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use looptel_core::{BaggagePromotion, ServiceInfo, TraceIds};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::redact::Redaction;
use crate::sample::Sampler;

/// The `tracing_subscriber` layer that writes one JSON object per line.
///
/// Built by [`JsonLogs`](crate::JsonLogs); see the [crate docs](crate).
#[derive(Debug)]
pub struct JsonLayer {
    pub(crate) service: Option<ServiceInfo>,
    pub(crate) redaction: Redaction,
    pub(crate) sampler: Option<Sampler>,
    pub(crate) sampled_out: Arc<AtomicU64>,
    pub(crate) sink: Sink,
    pub(crate) promotion: BaggagePromotion,
    /// The subscriber this layer is part of, to look up the OpenTelemetry
    /// context of spans that are not entered.
    pub(crate) dispatch: OnceLock<WeakDispatch>,
}

/// Where records go.
#[derive(Debug)]
pub(crate) enum Sink {
    /// JSON lines through the non-blocking writer.
    Json(crate::writer::LineWriter),
    /// Nowhere: the writer thread could not start.
    Discard,
    /// OpenTelemetry log records, to a logger provider's processors (a
    /// bounded batch processor and an OTLP exporter).
    Otel(opentelemetry_sdk::logs::SdkLogger),
}

/// The fields of a JSON line that an OpenTelemetry log record carries in
/// its own fields or its resource, not as attributes.
const NATIVE: [&str; 9] = [
    f::TIMESTAMP,
    f::LEVEL,
    f::MESSAGE,
    f::TARGET,
    f::TRACE_ID,
    f::SPAN_ID,
    f::SERVICE_NAME,
    f::SERVICE_VERSION,
    f::DEPLOYMENT_ENVIRONMENT,
];

/// Span fields kept for the log lines written inside the span.
#[derive(Debug, Default)]
struct SpanFields(Vec<(&'static str, Value)>);

impl<S> tracing_subscriber::Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut FieldVisitor {
            redaction: &self.redaction,
            out: &mut fields.0,
        });
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(fields) = ext.get_mut::<SpanFields>() {
            values.record(&mut FieldVisitor {
                redaction: &self.redaction,
                out: &mut fields.0,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::WARN
            && let Some(sampler) = &self.sampler
            && !sampler.keep(&meta.callsite())
        {
            self.sampled_out.fetch_add(1, Ordering::Relaxed);
            return;
        }

        let mut obj = Map::new();
        let now = OffsetDateTime::now_utc();
        let ids = self.event_trace_ids(event, &ctx);
        if let Sink::Json(_) = self.sink {
            obj.insert(
                f::TIMESTAMP.into(),
                Value::String(now.format(&Rfc3339).unwrap_or_default()),
            );
            obj.insert(f::LEVEL.into(), Value::String(meta.level().as_str().into()));
            obj.insert(f::MESSAGE.into(), Value::String(String::new()));
            obj.insert(f::TARGET.into(), Value::String(meta.target().into()));
            if let Some(ids) = &ids {
                obj.insert(
                    f::TRACE_ID.into(),
                    Value::String(ids.trace_id().to_string()),
                );
                obj.insert(f::SPAN_ID.into(), Value::String(ids.span_id().to_string()));
            }
            // Required on every line: `unknown` where it was never configured.
            let service = self.service.as_ref();
            obj.insert(
                f::SERVICE_NAME.into(),
                service.map_or(f::UNKNOWN, ServiceInfo::name).into(),
            );
            obj.insert(
                f::SERVICE_VERSION.into(),
                service
                    .and_then(ServiceInfo::version)
                    .unwrap_or(f::UNKNOWN)
                    .into(),
            );
            obj.insert(
                f::DEPLOYMENT_ENVIRONMENT.into(),
                service
                    .and_then(ServiceInfo::environment)
                    .unwrap_or(f::UNKNOWN)
                    .into(),
            );
        }

        // Promoted baggage (`tenant.id`), from the active context.
        if !self.promotion.is_empty() {
            opentelemetry::Context::map_current(|cx| {
                for (k, v) in self.promotion.members(cx) {
                    let v = self.redaction.redact(k, &v).unwrap_or(v);
                    obj.insert(k.to_owned(), Value::String(v));
                }
            });
        }

        // Span fields, root first, so the innermost span wins; then the event's.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &fields.0 {
                        obj.insert((*k).into(), v.clone());
                    }
                }
            }
        }
        let mut fields = Vec::new();
        event.record(&mut FieldVisitor {
            redaction: &self.redaction,
            out: &mut fields,
        });
        for (k, v) in fields {
            obj.insert(k.into(), v);
        }

        match &self.sink {
            Sink::Json(writer) => {
                let mut line = serde_json::to_vec(&obj).unwrap_or_default();
                line.push(b'\n');
                // Queued whole, or dropped whole (and counted) when the
                // queue is full.
                writer.send(line);
            }
            Sink::Otel(logger) => emit(logger, meta, now, ids, obj),
            Sink::Discard => {}
        }
    }
}

/// One OpenTelemetry log record: the message as its body, the level as its
/// severity, the span's ids in its trace context, the other fields
/// (already redacted) as attributes. The service fields are the logger
/// provider's resource.
fn emit(
    logger: &opentelemetry_sdk::logs::SdkLogger,
    meta: &tracing::Metadata<'_>,
    now: OffsetDateTime,
    ids: Option<TraceIds>,
    mut fields: Map<String, Value>,
) {
    use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
    let mut record = logger.create_log_record();
    let time = std::time::SystemTime::from(now);
    record.set_timestamp(time);
    record.set_observed_timestamp(time);
    let (number, text) = match *meta.level() {
        Level::ERROR => (Severity::Error, "ERROR"),
        Level::WARN => (Severity::Warn, "WARN"),
        Level::INFO => (Severity::Info, "INFO"),
        Level::DEBUG => (Severity::Debug, "DEBUG"),
        Level::TRACE => (Severity::Trace, "TRACE"),
    };
    record.set_severity_number(number);
    record.set_severity_text(text);
    record.set_target(meta.target().to_owned());
    if let Some(ids) = ids {
        let flags = match ids.is_sampled() {
            true => opentelemetry::trace::TraceFlags::SAMPLED,
            false => opentelemetry::trace::TraceFlags::default(),
        };
        record.set_trace_context(ids.trace_id(), ids.span_id(), Some(flags));
    }
    let message = match fields.remove(f::MESSAGE) {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    record.set_body(AnyValue::from(message));
    for (k, v) in fields {
        if NATIVE.contains(&k.as_str()) {
            continue;
        }
        let value = match v {
            Value::String(s) => AnyValue::from(s),
            Value::Bool(b) => AnyValue::from(b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => AnyValue::from(i),
                (None, Some(f)) => AnyValue::from(f),
                (None, None) => AnyValue::from(n.to_string()),
            },
            other => AnyValue::from(other.to_string()),
        };
        record.add_attribute(k, value);
    }
    logger.emit(record);
}

impl JsonLayer {
    /// The ids of the span an event belongs to: its explicit parent, or else
    /// the active OpenTelemetry context (the innermost entered span).
    fn event_trace_ids<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>) -> Option<TraceIds>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let span_id = match event.parent() {
            Some(id) => id.clone(),
            None => {
                if let Some(ids) = TraceIds::current() {
                    return Some(ids);
                }
                ctx.lookup_current()?.id()
            }
        };
        let dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(&span_id, &dispatch)?;
        TraceIds::from_context(&cx)
    }
}

struct FieldVisitor<'a> {
    redaction: &'a Redaction,
    out: &'a mut Vec<(&'static str, Value)>,
}

impl FieldVisitor<'_> {
    fn push(&mut self, field: &Field, value: Value) {
        let name = field.name();
        // tracing-opentelemetry's control fields are not log content.
        if name.starts_with("otel.") {
            return;
        }
        let value = match self.redaction.is_denied(name) {
            false => value,
            true => {
                let plain = match &value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Value::String(self.redaction.redact(name, &plain).unwrap_or_default())
            }
        };
        if let Some(slot) = self.out.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = value;
        } else {
            self.out.push((name, value));
        }
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(
            field,
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.push(field, text.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format!("{value:?}").into());
    }
}
