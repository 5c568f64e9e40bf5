//! Per-request work that runs with the request's span, for any transport.

use std::time::Duration;

use opentelemetry::Context;

use crate::{Classification, Derived};

/// Per-request work a layer runs for the requests it traces (not for those
/// its filter skips), sharing the layer's context, future and body wrapper
/// instead of stacking a layer of its own — RED metrics and the baggage
/// edge plug in this way. `R` is what the transport handles: an
/// `http::Request<B>` for HTTP and gRPC, a message for messaging.
///
/// - [`prepare`](Self::prepare) runs before the span starts, with the
///   context it will start in (to drop baggage that must not reach it);
/// - [`start`](Self::start) runs after the span has started, before the
///   inner service is called, with the context the request runs in; it may
///   replace that context (to add baggage);
/// - both get the [`Derived`] facts of the request: the layer's trust
///   decision, and what it read off the request for the span (method,
///   route…) — read them there instead of deriving them again;
/// - [`event`](HookState::event) runs for what happens in between (a
///   message's retries, its dead-lettering);
/// - [`end`](HookState::end) runs exactly once with the request's
///   [`Classification`], before the span ends: at end of stream (after the
///   trailers, if any), when the body fails or is dropped, when the service
///   fails or panics. A request dropped before it was classified ends as
///   its classifier's [`classify_cancel`](crate::Classify::classify_cancel)
///   says: gRPC as CANCELLED; HTTP not at all (the state is only dropped).
///
/// `()` does nothing; a pair runs the first then the second at the start
/// and in reverse order at the end; a closure `Fn(&R, &mut Context) -> S`
/// is a hook (the [`Derived`] facts left aside) whose state `S` is any
/// [`HookState`] — another closure
/// `FnOnce(&Classification, &Context)`, say.
///
/// ```
/// use looptel_engine::{Classification, Derived, HookState, HttpServer, Classify, RequestHook};
/// use opentelemetry::Context;
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// // Counts requests that ended in a failure, as a closure.
/// let failures = Arc::new(AtomicU64::new(0));
/// let counter = failures.clone();
/// let hook = move |_: &http::Request<()>, _: &mut Context| {
///     let counter = counter.clone();
///     move |end: &Classification, _: &Context| {
///         if end.is_error() {
///             counter.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// };
///
/// let request = http::Request::new(());
/// let state = hook.start(&request, &Derived::of(&request), &mut Context::new());
/// let end = HttpServer.classify_response(http::StatusCode::BAD_GATEWAY, &Default::default());
/// state.end(&end.unwrap(), &Context::new());
/// assert_eq!(failures.load(Ordering::Relaxed), 1);
/// ```
pub trait RequestHook<R>: Clone + Send + Sync + 'static {
    /// What [`start`](Self::start) leaves for the end of the request.
    type State: HookState;

    /// Runs first, before the caller's context is read, for a caller
    /// inside the trust boundary ([`Derived::is_public`] is `false`): what
    /// it sets in `base` — baggage members the service adds itself, say —
    /// is the context the caller's span context and baggage are read into,
    /// in one step, and that the span starts in. Its baggage members win
    /// over the caller's of the same key. A public caller's call does not
    /// run it (its baggage is dropped first), nor does a
    /// [`HookLayer`](crate::HookLayer) (its span has started already):
    /// [`Derived::ran_base`] tells [`start`](Self::start) when to set them
    /// there instead. Does nothing by default.
    #[inline]
    fn base(&self, request: &R, derived: &Derived<'_>, base: &mut Base) {
        let _ = (request, derived, base);
    }

    /// Runs before the span starts; `parent` is the context it will start
    /// in (the caller's, or — for a public caller — a new root's, the
    /// caller's baggage still in it). Does nothing by default.
    #[inline]
    fn prepare(&self, request: &R, derived: &Derived<'_>, parent: &mut Context) {
        let _ = (request, derived, parent);
    }

    /// Runs before the inner service is called; `cx` is the context the
    /// request runs in (its span, the caller's baggage).
    fn start(&self, request: &R, derived: &Derived<'_>, cx: &mut Context) -> Self::State;
}

/// The context a call starts from before its caller's context is read
/// into it ([`RequestHook::base`]): empty until a hook sets one. A hook may
/// replace an empty base with a context it built once and keeps (a cached
/// baggage context): nothing is lost, and the call pays no copy.
///
/// ```
/// use looptel_engine::Base;
/// use opentelemetry::Context;
/// use opentelemetry::baggage::BaggageExt;
/// use opentelemetry::KeyValue;
///
/// let mut base = Base::default();
/// assert!(base.get().is_none());
/// base.set(Context::new().with_baggage([KeyValue::new("tenant.id", "acme")]));
/// assert_eq!(base.into_context().baggage().len(), 1);
/// ```
#[derive(Debug, Default)]
pub struct Base {
    cx: Option<Context>,
}

impl Base {
    /// What the hooks set so far; `None` while nothing is (the call then
    /// starts from an empty context).
    #[inline]
    pub fn get(&self) -> Option<&Context> {
        self.cx.as_ref()
    }

    /// Sets the context the call starts from: build it from
    /// [`get`](Self::get) when there is one, so nothing set before is lost.
    #[inline]
    pub fn set(&mut self, cx: Context) {
        self.cx = Some(cx);
    }

    /// The context the call starts from.
    #[inline]
    pub fn into_context(self) -> Context {
        self.cx.unwrap_or_default()
    }

    /// The context the hooks set, if any (`None`: the call starts from the
    /// caller's context alone, whose baggage may then be shared with other
    /// calls' — see [`Instrumentation::extract_request`](looptel_core::Instrumentation::extract_request)).
    #[inline]
    pub fn into_inner(self) -> Option<Context> {
        self.cx
    }
}

/// Something that happened to a call between its start and its end, for
/// hooks to count: recorded on the call's span as an event too (see
/// [`Call::event`](crate::Call::event)).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum CallEvent<'a> {
    /// Attempt `attempt` failed as `error_type` says; the next follows
    /// after `delay`.
    Retry {
        /// The failed attempt's `error.type`.
        error_type: &'a str,
        /// The failed attempt's number (from 1).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// The broker placed the message in this partition (a Kafka producer
    /// learns it on delivery).
    Partition {
        /// `messaging.destination.partition.id`.
        id: &'a str,
    },
    /// The message, not processed, went to its dead-letter destination.
    DeadLettered {
        /// Why it was not processed: its last attempt's `error.type`.
        error_type: &'a str,
    },
}

/// What a [`RequestHook`] keeps while its request runs.
pub trait HookState: Send {
    /// Runs for each [`CallEvent`] of the request, before it ends. Does
    /// nothing by default.
    #[inline]
    fn event(&mut self, event: &CallEvent<'_>, cx: &Context) {
        let _ = (event, cx);
    }

    /// Runs once when the request has ended; `cx` is the context it ran in
    /// (its span, still open).
    fn end(self, end: &Classification, cx: &Context);
}

impl<R> RequestHook<R> for () {
    type State = ();

    #[inline]
    fn start(&self, _: &R, _: &Derived<'_>, _: &mut Context) {}
}

impl HookState for () {
    #[inline]
    fn end(self, _: &Classification, _: &Context) {}
}

/// A state that may be absent (a hook with nothing to do for this request).
impl<S: HookState> HookState for Option<S> {
    #[inline]
    fn event(&mut self, event: &CallEvent<'_>, cx: &Context) {
        if let Some(state) = self {
            state.event(event, cx);
        }
    }

    #[inline]
    fn end(self, end: &Classification, cx: &Context) {
        if let Some(state) = self {
            state.end(end, cx);
        }
    }
}

impl<R, H1, H2> RequestHook<R> for (H1, H2)
where
    H1: RequestHook<R>,
    H2: RequestHook<R>,
{
    type State = (H1::State, H2::State);

    #[inline]
    fn base(&self, request: &R, derived: &Derived<'_>, base: &mut Base) {
        self.0.base(request, derived, base);
        self.1.base(request, derived, base);
    }

    #[inline]
    fn prepare(&self, request: &R, derived: &Derived<'_>, parent: &mut Context) {
        self.0.prepare(request, derived, parent);
        self.1.prepare(request, derived, parent);
    }

    #[inline]
    fn start(&self, request: &R, derived: &Derived<'_>, cx: &mut Context) -> Self::State {
        let first = self.0.start(request, derived, cx);
        (first, self.1.start(request, derived, cx))
    }
}

impl<S1: HookState, S2: HookState> HookState for (S1, S2) {
    #[inline]
    fn event(&mut self, event: &CallEvent<'_>, cx: &Context) {
        self.0.event(event, cx);
        self.1.event(event, cx);
    }

    #[inline]
    fn end(self, end: &Classification, cx: &Context) {
        self.1.end(end, cx);
        self.0.end(end, cx);
    }
}

impl<R, F, S> RequestHook<R> for F
where
    F: Fn(&R, &mut Context) -> S + Clone + Send + Sync + 'static,
    S: HookState,
{
    type State = S;

    #[inline]
    fn start(&self, request: &R, _: &Derived<'_>, cx: &mut Context) -> S {
        self(request, cx)
    }
}

impl<F> HookState for F
where
    F: FnOnce(&Classification, &Context) + Send,
{
    #[inline]
    fn end(self, end: &Classification, cx: &Context) {
        self(end, cx);
    }
}
