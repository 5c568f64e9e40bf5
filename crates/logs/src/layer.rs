//! The JSON layer itself.

use looptel_catalogue::logs as f;
use std::fmt;
use std::io::Write as _;
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
use tracing_appender::non_blocking::NonBlocking;
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
    pub(crate) writer: NonBlocking,
    pub(crate) promotion: BaggagePromotion,
    /// The subscriber this layer is part of, to look up the OpenTelemetry
    /// context of spans that are not entered.
    pub(crate) dispatch: OnceLock<WeakDispatch>,
}

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
        obj.insert(
            f::TIMESTAMP.into(),
            Value::String(now.format(&Rfc3339).unwrap_or_default()),
        );
        obj.insert(f::LEVEL.into(), Value::String(meta.level().as_str().into()));
        obj.insert(f::MESSAGE.into(), Value::String(String::new()));
        obj.insert(f::TARGET.into(), Value::String(meta.target().into()));

        if let Some(ids) = self.event_trace_ids(event, &ctx) {
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

        let mut line = serde_json::to_vec(&obj).unwrap_or_default();
        line.push(b'\n');
        // One write call per line: the non-blocking writer queues it whole, or
        // drops it whole (and counts it) when the queue is full.
        let mut w = self.writer.clone();
        let _ = w.write_all(&line);
    }
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
