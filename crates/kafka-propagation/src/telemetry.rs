//! What every transport shares: the PRODUCER span and the injected
//! fields, the CONSUMER span with a link or a parent, baggage restored,
//! the classifier's outcome, the messaging metrics with exemplars.
// Without a transport feature nothing calls these yet.
#![cfg_attr(
    not(any(feature = "rdkafka", feature = "lapin", feature = "async-nats")),
    allow(dead_code)
)]

use std::future::Future;
use std::time::Instant;

use looptel_core::{
    ErrorOutcome, Extracted, Instrumentation, MessageHeaderExtractor, SpanStart, TraceIds,
};
use looptel_engine::{Call, Classification, Messaging};
use looptel_red_metrics::MessagingMetrics;
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{Link, SpanBuilder, SpanKind, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use opentelemetry_semantic_conventions::attribute as a;

/// How a consumer's `process` span relates to the message's producer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// A new trace that links to the producer's context: what the semantic
    /// conventions ask, right when one process call may handle messages
    /// of several traces.
    #[default]
    Link,
    /// A child of the producer's context: one trace from the HTTP request
    /// through the broker, right for single-message processing.
    Parent,
}

/// Producer and consumer instrumentation for one service: its tracer and
/// propagator, the consumer [`Mode`], and optionally the messaging metrics.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct MessagingTelemetry {
    pub(crate) instrumentation: Instrumentation,
    pub(crate) metrics: Option<MessagingMetrics>,
    pub(crate) mode: Mode,
}

/// One messaging operation as the conventions describe it.
#[derive(Debug)]
pub(crate) struct Op<'a> {
    pub(crate) system: &'static str,
    /// `send`, `publish`, `process`, `receive`.
    pub(crate) name: &'static str,
    /// `send`, `process`, `receive`.
    pub(crate) kind: &'static str,
    pub(crate) destination: &'a str,
    pub(crate) partition: Option<String>,
    pub(crate) group: Option<&'a str>,
    /// Span attributes beyond the common ones (offsets, keys, tags).
    pub(crate) attributes: Vec<KeyValue>,
}

impl Op<'_> {
    fn span_name(&self) -> String {
        // Not `format!`: a third of the cost for two pieces.
        let mut name = String::with_capacity(self.name.len() + 1 + self.destination.len());
        name.push_str(self.name);
        name.push(' ');
        name.push_str(self.destination);
        name
    }

    fn span_attributes(&self) -> Vec<KeyValue> {
        // Sized once: the four below, partition, group and the transport's.
        let mut attrs = Vec::with_capacity(6 + self.attributes.len());
        attrs.extend([
            KeyValue::new(a::MESSAGING_SYSTEM, self.system),
            KeyValue::new(a::MESSAGING_OPERATION_NAME, self.name),
            KeyValue::new(a::MESSAGING_OPERATION_TYPE, self.kind),
            KeyValue::new(a::MESSAGING_DESTINATION_NAME, self.destination.to_owned()),
        ]);
        if let Some(p) = &self.partition {
            attrs.push(KeyValue::new(
                a::MESSAGING_DESTINATION_PARTITION_ID,
                p.clone(),
            ));
        }
        if let Some(g) = self.group {
            attrs.push(KeyValue::new(
                a::MESSAGING_CONSUMER_GROUP_NAME,
                g.to_owned(),
            ));
        }
        attrs.extend(self.attributes.iter().cloned());
        attrs
    }

    /// The metric labels, in `MESSAGING_LABELS` order.
    fn labels<'s>(&'s self, error_type: &'s str) -> [&'s str; 6] {
        [
            self.system,
            self.name,
            self.destination,
            self.partition.as_deref().unwrap_or(""),
            self.group.unwrap_or(""),
            error_type,
        ]
    }
}

impl MessagingTelemetry {
    /// Spans from `instrumentation`; consumers link to producers
    /// ([`Mode::Link`]); no metrics until [`metrics`](Self::metrics).
    pub fn new(instrumentation: Instrumentation) -> Self {
        Self {
            instrumentation,
            metrics: None,
            mode: Mode::Link,
        }
    }

    /// Records `messaging.client.operation.duration`,
    /// `messaging.client.sent.messages`, `messaging.process.duration` and
    /// `messaging.client.consumed.messages`, with the sampled span as
    /// exemplar.
    #[must_use]
    pub fn metrics(mut self, metrics: MessagingMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// How consumers' `process` spans relate to the producer.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The consumer mode.
    pub fn consumer_mode(&self) -> Mode {
        self.mode
    }

    /// Starts a PRODUCER span in the current context and returns its
    /// context and the fields to put in the message's headers (through the
    /// propagator and its baggage policy).
    pub(crate) fn start_send(&self, op: &Op<'_>) -> (Context, Vec<(String, String)>, bool) {
        let parent = Context::current();
        let cx = self.instrumentation.start_span(
            SpanStart::child_of(parent),
            SpanBuilder::from_name(op.span_name())
                .with_kind(SpanKind::Producer)
                .with_attributes(op.span_attributes()),
            &mut |_| {},
        );
        let owned = self.instrumentation.is_tracing();
        (cx.clone(), self.fields(&cx), owned)
    }

    /// The propagation fields of `cx`, through the propagator and its
    /// baggage policy, in the order it writes them.
    pub(crate) fn fields(&self, cx: &Context) -> Vec<(String, String)> {
        let mut fields = Fields(Vec::with_capacity(3));
        self.instrumentation.propagator().inject(cx, &mut fields);
        fields.0
    }

    /// The current context's propagation fields.
    pub(crate) fn current_fields(&self) -> Vec<(String, String)> {
        Context::map_current(|cx| self.fields(cx))
    }

    /// Ends a send: late attributes (partition, offset), the outcome, the
    /// metrics.
    pub(crate) fn end_send(
        &self,
        cx: Context,
        owned: bool,
        op: &Op<'_>,
        started: Instant,
        late: Vec<KeyValue>,
        classification: Classification,
    ) {
        if owned && !late.is_empty() {
            cx.span().set_attributes(late);
        }
        if let Some(m) = &self.metrics {
            let ids = TraceIds::from_context(&cx);
            let error = classification.error_type().unwrap_or("");
            let labels = op.labels(error);
            m.operation_duration
                .with(&labels, |h| h.observe(started.elapsed().as_secs_f64(), ids));
            m.sent.with(&labels, |c| c.add(1, ids));
        }
        Call::new(cx, owned, ()).end(classification);
    }

    /// The context a message is processed in: its span (a link to the
    /// producer, or its child) and the producer's baggage.
    pub(crate) fn start_process(
        &self,
        op: &Op<'_>,
        headers: &MessageHeaderExtractor<'_>,
    ) -> (Context, bool) {
        // Built only when a span starts: a message whose producer did not
        // sample costs no attributes (~2,600 instructions in parent mode,
        // `scripts/bench.sh`).
        let builder = || {
            SpanBuilder::from_name(op.span_name())
                .with_kind(SpanKind::Consumer)
                .with_attributes(op.span_attributes())
        };
        match self.mode {
            Mode::Parent => match self.instrumentation.extract_message(headers, true) {
                // The producer did not sample and the sampler follows it.
                Extracted::UnsampledChild(cx) => (cx, false),
                Extracted::Remote(remote) => (
                    self.instrumentation.start_span(
                        SpanStart::child_of(remote),
                        builder(),
                        &mut |_| {},
                    ),
                    self.instrumentation.is_tracing(),
                ),
            },
            Mode::Link => {
                let remote = match self.instrumentation.extract_message(headers, false) {
                    Extracted::Remote(cx) | Extracted::UnsampledChild(cx) => cx,
                };
                let sc = remote.span().span_context().clone();
                let links = if sc.is_valid() {
                    vec![Link::with_context(sc)]
                } else {
                    Vec::new()
                };
                let mut start = SpanStart::root_linked(links);
                let baggage: Baggage = looptel_core::baggage::copy(remote.baggage());
                if !baggage.is_empty() {
                    *start.parent_mut() = Context::new().with_baggage(baggage);
                }
                (
                    self.instrumentation
                        .start_span(start, builder(), &mut |_| {}),
                    self.instrumentation.is_tracing(),
                )
            }
        }
    }

    /// Runs `handler` in the message's context, classifies its result and
    /// ends the span; records the process metrics.
    pub(crate) async fn run_process<F, Fut, T, E>(
        &self,
        op: &Op<'_>,
        headers: &MessageHeaderExtractor<'_>,
        handler: F,
    ) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ErrorOutcome,
    {
        let (cx, owned) = self.start_process(op, headers);
        let started = Instant::now();
        let result = handler().with_context(cx.clone()).await;
        self.end_process(cx, owned, op, started, Messaging.classify(&result));
        result
    }

    /// Records the process metrics and ends the span.
    fn end_process(
        &self,
        cx: Context,
        owned: bool,
        op: &Op<'_>,
        started: Instant,
        classification: Classification,
    ) {
        if let Some(m) = &self.metrics {
            let ids = TraceIds::from_context(&cx);
            let error = classification.error_type().unwrap_or("");
            let labels = op.labels(error);
            m.process_duration
                .with(&labels, |h| h.observe(started.elapsed().as_secs_f64(), ids));
            m.consumed.with(&labels, |c| c.add(1, ids));
        }
        Call::new(cx, owned, ()).end(classification);
    }

    /// One message's whole handling in one `process` span: `handler`'s
    /// attempts by `retry` (each retry a `retry` event and counted in
    /// `messaging.client.retries`); a message not processed goes through
    /// `dead_letter` in the span's context (counted in
    /// `messaging.dead_lettered` when it succeeds); `stop` cuts a backoff
    /// short and leaves the message to redelivery.
    #[cfg(feature = "retry")]
    #[allow(clippy::too_many_arguments)] // one per part of the protocol
    pub(crate) async fn run_handled<T, E, F, Fut, D, DFut>(
        &self,
        op: &Op<'_>,
        headers: &MessageHeaderExtractor<'_>,
        retry: &crate::Retry,
        stop: impl Future<Output = ()>,
        mut handler: F,
        dead_letter: D,
    ) -> crate::Handled<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ErrorOutcome,
        D: FnOnce(&E, u32) -> DFut,
        DFut: Future<Output = Result<(), String>>,
    {
        use crate::retry::{Next, Redeliver, Settlement};
        let (cx, owned) = self.start_process(op, headers);
        let ids = TraceIds::from_context(&cx);
        let started = Instant::now();
        let (result, attempts) = crate::retry::attempts(
            retry,
            stop,
            |n| handler(n).with_context(cx.clone()),
            |error, n, wait| {
                if owned {
                    cx.span().add_event(
                        "retry",
                        vec![
                            KeyValue::new(a::ERROR_TYPE, error.error_type()),
                            KeyValue::new("looptel.retry.attempt", i64::from(n)),
                            KeyValue::new("looptel.retry.delay", wait.as_secs_f64()),
                        ],
                    );
                }
                if let Some(m) = &self.metrics {
                    m.retries
                        .with(&op.labels(error.error_type()), |c| c.add(1, ids));
                }
            },
        )
        .await;
        let settlement = match result {
            Ok(v) => Settlement::Processed(v),
            Err(Next::Stopped(error)) => Settlement::Redeliver {
                error,
                reason: Redeliver::Stopping,
            },
            Err(Next::Done(error)) => {
                match dead_letter(&error, attempts).with_context(cx.clone()).await {
                    Ok(()) => {
                        if let Some(m) = &self.metrics {
                            m.dead_lettered
                                .with(&op.labels(error.error_type()), |c| c.add(1, ids));
                        }
                        Settlement::DeadLettered(error)
                    }
                    Err(why) => Settlement::Redeliver {
                        error,
                        reason: Redeliver::DeadLetterFailed(why),
                    },
                }
            }
        };
        let classification = match &settlement {
            Settlement::Processed(_) => Messaging.success(),
            Settlement::DeadLettered(e) | Settlement::Redeliver { error: e, .. } => {
                looptel_engine::ClassifyError::classify_error(&Messaging, e)
            }
        };
        self.end_process(cx.clone(), owned, op, started, classification);
        crate::Handled {
            settlement,
            attempts,
            settle_error: None,
            context: cx,
        }
    }

    /// A settlement (`ack`, `nack`) in a CLIENT span `{name} {destination}`
    /// under the current context, with `messaging.client.operation.duration`.
    #[cfg(feature = "retry")]
    pub(crate) async fn settle(
        &self,
        op: &Op<'_>,
        settlement: impl Future<Output = Result<(), (String, String)>>,
    ) -> Result<(), String> {
        let cx = self.instrumentation.start_span(
            SpanStart::child_of(Context::current()),
            SpanBuilder::from_name(op.span_name())
                .with_kind(SpanKind::Client)
                .with_attributes(op.span_attributes()),
            &mut |_| {},
        );
        let owned = self.instrumentation.is_tracing();
        let started = Instant::now();
        let result = settlement.with_context(cx.clone()).await;
        let classification = match &result {
            Ok(()) => Messaging.success(),
            Err((error_type, message)) => send_failure(error_type.clone(), message),
        };
        if let Some(m) = &self.metrics {
            let ids = TraceIds::from_context(&cx);
            let labels = op.labels(classification.error_type().unwrap_or(""));
            m.operation_duration
                .with(&labels, |h| h.observe(started.elapsed().as_secs_f64(), ids));
        }
        Call::new(cx, owned, ()).end(classification);
        result.map_err(|(_, message)| message)
    }

    /// A `receive` span for a batch: a new trace linked to every message's
    /// valid context, with `messaging.batch.message_count`.
    pub(crate) fn start_batch<'h>(
        &self,
        op: &Op<'_>,
        messages: impl IntoIterator<Item = MessageHeaderExtractor<'h>>,
    ) -> Batch {
        let mut links = Vec::new();
        let mut count = 0_i64;
        for headers in messages {
            count += 1;
            let (Extracted::Remote(cx) | Extracted::UnsampledChild(cx)) =
                self.instrumentation.extract_message(&headers, false);
            let sc = cx.span().span_context().clone();
            if sc.is_valid() {
                links.push(Link::with_context(sc));
            }
        }
        let mut attrs = op.span_attributes();
        attrs.push(KeyValue::new(a::MESSAGING_BATCH_MESSAGE_COUNT, count));
        let cx = self.instrumentation.start_span(
            SpanStart::root_linked(links),
            SpanBuilder::from_name(op.span_name())
                .with_kind(SpanKind::Client)
                .with_attributes(attrs),
            &mut |_| {},
        );
        Batch {
            call: Some(Call::new(cx, self.instrumentation.is_tracing(), ())),
        }
    }
}

/// The variant name at the head of a value's `Debug` form (`IOError` of
/// `IOError(Os { … })`), a low-cardinality `error.type`; `fallback` when it
/// has none.
pub(crate) fn variant_name(value: &dyn std::fmt::Debug, fallback: &str) -> String {
    let debug = format!("{value:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(fallback)
        .to_owned()
}

/// A send that failed: a failure with the transport's error class and
/// message.
pub(crate) fn send_failure(error_type: String, error: &dyn std::fmt::Display) -> Classification {
    Classification::new(
        looptel_core::Outcome::Failure,
        looptel_engine::ProtocolStatus::None,
    )
    .with_error_type(error_type)
    .with_message(error.to_string())
}

/// Collects what a propagator writes, each field once.
struct Fields(Vec<(String, String)>);

impl opentelemetry::propagation::Injector for Fields {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value));
    }
}

/// A batch's `receive` span, in flight: run the batch's work in
/// [`context`](Self::context), then [`end`](Self::end) it with the result.
/// Dropped without an end, the span ends without a status.
#[derive(Debug)]
pub struct Batch {
    call: Option<Call>,
}

impl Batch {
    /// The batch's context (its span).
    pub fn context(&self) -> Context {
        self.call
            .as_ref()
            .map(|c| c.context().clone())
            .unwrap_or_default()
    }

    /// Ends the span with the work's result, classified like any message.
    pub fn end<T, E: ErrorOutcome>(mut self, result: &Result<T, E>) {
        if let Some(call) = self.call.take() {
            call.end(Messaging.classify(result));
        }
    }
}
