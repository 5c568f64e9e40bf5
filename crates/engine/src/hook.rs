//! Per-request work that runs with the request's span, for any transport.

use opentelemetry::Context;

use crate::Classification;

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
/// - [`end`](HookState::end) runs exactly once with the request's
///   [`Classification`], before the span ends: at end of stream (after the
///   trailers, if any), when the body fails or is dropped, when the service
///   fails or panics. A request dropped before it was classified ends as
///   its classifier's [`classify_cancel`](crate::Classify::classify_cancel)
///   says: gRPC as CANCELLED; HTTP not at all (the state is only dropped).
///
/// `()` does nothing; a pair runs the first then the second at the start
/// and in reverse order at the end; a closure `Fn(&R, &mut Context) -> S`
/// is a hook whose state `S` is any [`HookState`] — another closure
/// `FnOnce(&Classification, &Context)`, say.
///
/// ```
/// use looptel_engine::{Classification, HookState, HttpServer, Classify, RequestHook};
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
/// let state = hook.start(&http::Request::new(()), &mut Context::new());
/// let end = HttpServer.classify_response(http::StatusCode::BAD_GATEWAY, &Default::default());
/// state.end(&end.unwrap(), &Context::new());
/// assert_eq!(failures.load(Ordering::Relaxed), 1);
/// ```
pub trait RequestHook<R>: Clone + Send + Sync + 'static {
    /// What [`start`](Self::start) leaves for the end of the request.
    type State: HookState;

    /// Runs before the span starts; `parent` is the context it will start
    /// in (the caller's, or a new root's). Does nothing by default.
    #[inline]
    fn prepare(&self, request: &R, parent: &mut Context) {
        let _ = (request, parent);
    }

    /// Runs before the inner service is called; `cx` is the context the
    /// request runs in (its span, the caller's baggage).
    fn start(&self, request: &R, cx: &mut Context) -> Self::State;
}

/// What a [`RequestHook`] keeps while its request runs.
pub trait HookState: Send + 'static {
    /// Runs once when the request has ended; `cx` is the context it ran in
    /// (its span, still open).
    fn end(self, end: &Classification, cx: &Context);
}

impl<R> RequestHook<R> for () {
    type State = ();

    #[inline]
    fn start(&self, _: &R, _: &mut Context) {}
}

impl HookState for () {
    #[inline]
    fn end(self, _: &Classification, _: &Context) {}
}

/// A state that may be absent (a hook with nothing to do for this request).
impl<S: HookState> HookState for Option<S> {
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
    fn prepare(&self, request: &R, parent: &mut Context) {
        self.0.prepare(request, parent);
        self.1.prepare(request, parent);
    }

    #[inline]
    fn start(&self, request: &R, cx: &mut Context) -> Self::State {
        let first = self.0.start(request, cx);
        (first, self.1.start(request, cx))
    }
}

impl<S1: HookState, S2: HookState> HookState for (S1, S2) {
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
    fn start(&self, request: &R, cx: &mut Context) -> S {
        self(request, cx)
    }
}

impl<F> HookState for F
where
    F: FnOnce(&Classification, &Context) + Send + 'static,
{
    #[inline]
    fn end(self, end: &Classification, cx: &Context) {
        self(end, cx);
    }
}
