//! A call in flight, ended exactly once.

use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};
use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, MESSAGING_DESTINATION_PARTITION_ID,
};

use looptel_core::Outcome;

use crate::{CallEvent, Classification, GrpcCode, HookState, ProtocolStatus};

/// A request, call or message in flight: the context it runs in (with its
/// span, when the layer started one), its hooks' state and, once known, its
/// [`Classification`]. It ends exactly once, when dropped: the
/// classification is recorded on the span, the hooks end, the span ends.
/// Dropped before it was classified, it ends as [`on_cancel`](Self::on_cancel)
/// says (the engine sets the classifier's
/// [`classify_cancel`](crate::Classify::classify_cancel)).
///
/// The engine's future and body wrapper carry one; transports that have
/// no response future (a message handler, a `reqwest` middleware) hold one
/// themselves and [`end`](Self::end) it.
///
/// ```
/// use looptel_engine::{Call, Messaging};
/// use opentelemetry::Context;
///
/// let call = Call::new(Context::new(), false, ());
/// call.end(Messaging.success()); // hooks ended, span (none here) ended
/// ```
pub struct Call<G: HookState = ()> {
    cx: Context,
    /// Whether `cx` holds a span of ours to record and end.
    owned: bool,
    hooks: Option<G>,
    classified: Option<Classification>,
    /// What the call ends as when dropped before it was classified: kept
    /// as outcome and status only, so the call fits in 48 bytes (it is
    /// copied with every request's future and body).
    on_cancel: Option<(Outcome, ProtocolStatus)>,
}

impl<G: HookState> std::fmt::Debug for Call<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("cx", &self.cx)
            .field("owned", &self.owned)
            .field("classified", &self.classified)
            .finish_non_exhaustive()
    }
}

impl<G: HookState> Call<G> {
    /// A call running in `cx`; `owned` when `cx` holds a span the call must
    /// record and end (not just a caller's context).
    pub fn new(cx: Context, owned: bool, hooks: G) -> Self {
        Self {
            cx,
            owned,
            hooks: Some(hooks),
            classified: None,
            on_cancel: None,
        }
    }

    /// What the call ends as if dropped before it is classified (gRPC:
    /// CANCELLED): its outcome and status (an error class or message given
    /// with it is not kept; `error.type` is then the status). By default it
    /// does not end then: its hooks are dropped without
    /// [`end`](crate::HookState::end), its span ends without a status.
    #[must_use]
    pub fn on_cancel(mut self, classification: Option<Classification>) -> Self {
        self.on_cancel = classification.map(|c| (c.outcome(), c.status()));
        self
    }

    /// The context the call runs in.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Whether the context holds a span of this call's.
    pub fn owns_span(&self) -> bool {
        self.owned
    }

    /// Whether the call has been classified.
    pub fn is_classified(&self) -> bool {
        self.classified.is_some()
    }

    /// Sets how the call ended; it ends with that when dropped.
    pub fn classify(&mut self, classification: Classification) {
        self.classified = Some(classification);
    }

    /// Something happened to the call: the hooks see it
    /// ([`HookState::event`]), and the span — when it is the call's and
    /// records — gets it as an event (`retry` with `error.type`,
    /// `looptel.retry.attempt` and `looptel.retry.delay` in seconds;
    /// `dead_lettered` with `error.type`; a partition as
    /// `messaging.destination.partition.id`).
    pub fn event(&mut self, event: &CallEvent<'_>) {
        if self.owned {
            let span = self.cx.span();
            if span.is_recording() {
                match *event {
                    CallEvent::Retry {
                        error_type,
                        attempt,
                        delay,
                    } => span.add_event(
                        "retry",
                        vec![
                            KeyValue::new(ERROR_TYPE, error_type.to_owned()),
                            KeyValue::new("looptel.retry.attempt", i64::from(attempt)),
                            KeyValue::new("looptel.retry.delay", delay.as_secs_f64()),
                        ],
                    ),
                    CallEvent::Partition { id } => span.set_attribute(KeyValue::new(
                        MESSAGING_DESTINATION_PARTITION_ID,
                        id.to_owned(),
                    )),
                    CallEvent::DeadLettered { error_type } => span.add_event(
                        "dead_lettered",
                        vec![KeyValue::new(ERROR_TYPE, error_type.to_owned())],
                    ),
                }
            }
        }
        if let Some(hooks) = self.hooks.as_mut() {
            hooks.event(event, &self.cx);
        }
    }

    /// Takes the classification given so far.
    pub(crate) fn take_classification(&mut self) -> Option<Classification> {
        self.classified.take()
    }

    /// Ends the call now, as `classification` says.
    pub fn end(mut self, classification: Classification) {
        self.classify(classification);
    }
}

impl<G: HookState> Drop for Call<G> {
    fn drop(&mut self) {
        let cancelled = || {
            self.on_cancel.map(|(outcome, status)| {
                // Dropped past the deadline its context carries: the call
                // missed it (a failure on either side).
                let deadline = crate::Deadline::passed;
                if status == ProtocolStatus::Grpc(GrpcCode::Cancelled)
                    && self
                        .cx
                        .get::<crate::Deadline>()
                        .copied()
                        .is_some_and(deadline)
                {
                    return Classification::new(
                        Outcome::Failure,
                        ProtocolStatus::Grpc(GrpcCode::DeadlineExceeded),
                    );
                }
                Classification::new(outcome, status)
            })
        };
        // A span that does not record (its caller did not sample) has
        // nothing to end: no status, no timestamp read.
        let recording = self.owned && self.cx.span().is_recording();
        if let Some(end) = self.classified.take().or_else(cancelled) {
            if recording {
                end.record(&self.cx.span());
            }
            if let Some(hooks) = self.hooks.take() {
                hooks.end(&end, &self.cx);
            }
        }
        if recording {
            self.cx.span().end();
        }
    }
}
