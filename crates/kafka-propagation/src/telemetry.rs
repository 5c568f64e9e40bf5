//! What every transport shares: the PRODUCER span and the injected
//! fields, the CONSUMER span with a link or a parent, baggage restored,
//! the classifier's outcome — each call started by the engine's
//! [`begin`](looptel_engine::begin) and ended by its
//! [`Call`], with the hooks (the messaging metrics among them) run by both.
// Without a transport feature nothing calls these yet.
#![cfg_attr(
    not(any(feature = "rdkafka", feature = "lapin", feature = "async-nats")),
    allow(dead_code)
)]

use std::future::Future;

use looptel_core::{ErrorOutcome, Extracted, Instrumentation, MessageHeaderExtractor, SpanStart};
use looptel_engine::{
    Call, CallEvent, Classification, Derived, MessageOp, Messaging, Relation, RequestHook,
};
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
/// propagator, the consumer [`Mode`], and the hooks every operation runs
/// ([`hook`](Self::hook): the messaging metrics, your own). Cheap to clone.
///
/// ```
/// use looptel_core::{Instrumentation, Propagator};
/// use looptel_kafka_propagation::{MessagingTelemetry, Mode};
/// use looptel_red_metrics::{MessagingMetrics, Registry};
///
/// let registry = Registry::new();
/// let telemetry = MessagingTelemetry::new(Instrumentation::disabled(Propagator::default()))
///     .mode(Mode::Parent)
///     .hook(MessagingMetrics::new(&registry));
/// # let _ = telemetry;
/// ```
#[derive(Clone, Debug)]
pub struct MessagingTelemetry<H = ()> {
    pub(crate) instrumentation: Instrumentation,
    pub(crate) hooks: H,
    pub(crate) mode: Mode,
}

/// A send that went through: where the broker put the message, when the
/// producer learns it only then (Kafka).
#[derive(Debug)]
pub(crate) struct Placed {
    pub(crate) partition: String,
    /// Span attributes known only then (the offset).
    pub(crate) attributes: Vec<KeyValue>,
}

impl MessagingTelemetry {
    /// Spans from `instrumentation`; consumers link to producers
    /// ([`Mode::Link`]); no hooks until [`hook`](Self::hook).
    pub fn new(instrumentation: Instrumentation) -> Self {
        Self {
            instrumentation,
            hooks: (),
            mode: Mode::Link,
        }
    }
}

impl<H> MessagingTelemetry<H> {
    /// Runs `hook` for every operation — sends, processed messages,
    /// settlements — with its [`MessageOp`], inside its span, its retries
    /// and dead letters as [`CallEvent`]s: the messaging metrics
    /// (`looptel_red_metrics::MessagingMetrics`) are such a hook. Hooks
    /// start in the order they are added and end in reverse.
    pub fn hook<H2>(self, hook: H2) -> MessagingTelemetry<(H, H2)> {
        MessagingTelemetry {
            instrumentation: self.instrumentation,
            hooks: (self.hooks, hook),
            mode: self.mode,
        }
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

    /// Starts a call of `kind` for `op` as the engine starts every call:
    /// its span in the context `extract` gives (related as `relation`
    /// says), the hooks with it. Attributes are built only for a span
    /// that starts: a message whose producer did not sample costs none.
    fn begin<'o>(
        &self,
        op: &MessageOp<'o>,
        kind: SpanKind,
        relation: Relation,
        extract: impl FnOnce(bool, Option<Context>) -> Extracted,
    ) -> Call<<H as RequestHook<MessageOp<'o>>>::State>
    where
        H: RequestHook<MessageOp<'o>>,
    {
        let (cx, owned, state) = looptel_engine::begin(
            &self.instrumentation,
            op,
            &Derived::none(),
            relation,
            extract,
            &self.hooks,
            |start| {
                self.instrumentation.start_span(
                    start,
                    SpanBuilder::from_name(op.span_name())
                        .with_kind(kind)
                        .with_attributes(op.span_attributes()),
                    &mut |_| {},
                )
            },
        );
        Call::new(cx, owned, state)
    }

    /// A call under the current context (a send, a settlement).
    fn begin_here<'o>(
        &self,
        op: &MessageOp<'o>,
        kind: SpanKind,
    ) -> Call<<H as RequestHook<MessageOp<'o>>>::State>
    where
        H: RequestHook<MessageOp<'o>>,
    {
        self.begin(op, kind, Relation::Current, |_, current| {
            Extracted::Remote(current.unwrap_or_else(Context::current))
        })
    }

    /// The call a message is processed in: its span (a link to the
    /// producer, or its child) and the producer's baggage.
    fn begin_process<'o>(
        &self,
        op: &MessageOp<'o>,
        headers: &MessageHeaderExtractor<'_>,
    ) -> Call<<H as RequestHook<MessageOp<'o>>>::State>
    where
        H: RequestHook<MessageOp<'o>>,
    {
        let relation = match self.mode {
            Mode::Parent => Relation::Child,
            Mode::Link => Relation::Linked,
        };
        self.begin(op, SpanKind::Consumer, relation, |trust, base| match base {
            Some(base) => self
                .instrumentation
                .extract_message_onto(base, headers, trust),
            None => self.instrumentation.extract_message(headers, trust),
        })
    }

    /// One send, the same for every transport: a PRODUCER span `{name}
    /// {destination}` under the current context, `send` given the fields
    /// to put in the message's headers (through the propagator and its
    /// baggage policy), its result classified by `outcome` — which also
    /// says where the broker put the message, when the producer learns it
    /// only then — and the hooks ended with it.
    pub(crate) async fn run_send<'o, T, E, Fut>(
        &self,
        op: &MessageOp<'o>,
        send: impl FnOnce(Vec<(String, String)>) -> Fut,
        outcome: impl FnOnce(&Result<T, E>) -> (Classification, Option<Placed>),
    ) -> Result<T, E>
    where
        H: RequestHook<MessageOp<'o>>,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut call = self.begin_here(op, SpanKind::Producer);
        let fields = self.fields(call.context());
        let result = send(fields).await;
        let (classification, placed) = outcome(&result);
        if let Some(placed) = placed {
            call.event(&CallEvent::Partition {
                id: &placed.partition,
            });
            if call.owns_span() && !placed.attributes.is_empty() {
                call.context().span().set_attributes(placed.attributes);
            }
        }
        call.end(classification);
        result
    }

    /// Runs `handler` in the message's context, classifies its result and
    /// ends the call.
    pub(crate) async fn run_process<'o, F, Fut, T, E>(
        &self,
        op: &MessageOp<'o>,
        headers: &MessageHeaderExtractor<'_>,
        handler: F,
    ) -> Result<T, E>
    where
        H: RequestHook<MessageOp<'o>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ErrorOutcome,
    {
        let call = self.begin_process(op, headers);
        let result = handler().with_context(call.context().clone()).await;
        call.end(Messaging.classify(&result));
        result
    }

    /// One message's whole handling in one `process` call: `handler`'s
    /// attempts by `retry` (each retry a [`CallEvent::Retry`]); a message
    /// not processed goes through `dead_letter` in the call's context (a
    /// [`CallEvent::DeadLettered`] when it succeeds); `stop` cuts a backoff
    /// short and leaves the message to redelivery.
    #[cfg(feature = "retry")]
    #[allow(clippy::too_many_arguments)] // one per part of the protocol
    pub(crate) async fn run_handled<'o, T, E, F, Fut, D, DFut>(
        &self,
        op: &MessageOp<'o>,
        headers: &MessageHeaderExtractor<'_>,
        retry: &crate::Retry,
        stop: impl Future<Output = ()>,
        mut handler: F,
        dead_letter: D,
    ) -> crate::Handled<T, E>
    where
        H: RequestHook<MessageOp<'o>>,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ErrorOutcome,
        D: FnOnce(&E, u32) -> DFut,
        DFut: Future<Output = Result<(), String>>,
    {
        use crate::retry::{Next, Redeliver, Settlement};
        let mut call = self.begin_process(op, headers);
        let cx = call.context().clone();
        let (result, attempts) = crate::retry::attempts(
            retry,
            stop,
            |n| handler(n).with_context(cx.clone()),
            |error, attempt, delay| {
                call.event(&CallEvent::Retry {
                    error_type: error.error_type(),
                    attempt,
                    delay,
                });
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
                        call.event(&CallEvent::DeadLettered {
                            error_type: error.error_type(),
                        });
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
        call.end(classification);
        crate::Handled {
            settlement,
            attempts,
            settle_error: None,
            context: cx,
        }
    }

    /// A settlement (`ack`, `nack`) in a CLIENT span `{name} {destination}`
    /// under the current context; the hooks with it.
    #[cfg(feature = "retry")]
    pub(crate) async fn settle<'o>(
        &self,
        op: &MessageOp<'o>,
        settlement: impl Future<Output = Result<(), (String, String)>>,
    ) -> Result<(), String>
    where
        H: RequestHook<MessageOp<'o>>,
    {
        let call = self.begin_here(op, SpanKind::Client);
        let result = settlement.with_context(call.context().clone()).await;
        call.end(match &result {
            Ok(()) => Messaging.success(),
            Err((error_type, message)) => send_failure(error_type.clone(), message),
        });
        result.map_err(|(_, message)| message)
    }

    /// A `receive` span for a batch: a new trace linked to every message's
    /// valid context, with `messaging.batch.message_count`. No hooks: the
    /// batch's messages are each processed (and recorded) on their own.
    pub(crate) fn start_batch<'h>(
        &self,
        op: &MessageOp<'_>,
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
