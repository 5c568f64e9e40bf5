//! Work that runs inside the server layer, with its span, for each request.

use http::{Request, StatusCode};
use opentelemetry::Context;

/// How a request ended, as handed to [`HookState::end`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestEnd {
    /// The response status; `None` when the service failed without a
    /// response.
    pub status: Option<StatusCode>,
    /// The service error's type, when the service failed without a response
    /// (a 5xx status is an error by itself).
    pub error_type: Option<&'static str>,
}

impl RequestEnd {
    /// A request answered with `status`.
    pub fn answered(status: StatusCode) -> Self {
        Self {
            status: Some(status),
            error_type: None,
        }
    }

    /// A request whose service failed with an error of type `error_type`.
    pub fn failed(error_type: &'static str) -> Self {
        Self {
            status: None,
            error_type: Some(error_type),
        }
    }
}

/// Per-request work a server layer runs for the requests it traces (not for
/// those its filter skips), sharing the layer's context, future and body
/// wrapper instead of stacking a layer of its own — RED metrics and the
/// baggage edge plug in this way.
///
/// [`prepare`](Self::prepare) runs before the server span starts, with the
/// context it will start in (to drop baggage that must not reach it, say);
/// [`start`](Self::start) runs after the server span has started, before
/// the inner service is called, with the context the request runs in; it
/// may replace that context (to add baggage, say). [`end`](HookState::end) runs
/// exactly once, when the response body has ended (or failed, or was
/// dropped), or when the service failed, before the span ends — and not at
/// all when the request is dropped before it was answered (the client went
/// away while the handler ran): then the state is only dropped.
///
/// `()` does nothing; a pair runs the first then the second at the start
/// and in reverse order at the end. What `start` returns is the
/// [`HookState`] whose [`end`](HookState::end) finishes the request.
///
/// ```
/// use http::Request;
/// use looptel_core::{HookState, RequestEnd, RequestHook};
/// use opentelemetry::Context;
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// Counts requests that ended in a server error.
/// #[derive(Clone, Default)]
/// struct ServerErrors(Arc<AtomicU64>);
///
/// impl<B> RequestHook<B> for ServerErrors {
///     type State = Counting;
///     fn start(&self, _: &Request<B>, _: &mut Context) -> Counting {
///         Counting(self.0.clone())
///     }
/// }
///
/// struct Counting(Arc<AtomicU64>);
///
/// impl HookState for Counting {
///     fn end(self, end: RequestEnd, _: &Context) {
///         if end.status.is_none_or(|s| s.is_server_error()) {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let hook = ServerErrors::default();
/// let state = hook.start(&Request::new(()), &mut Context::new());
/// state.end(RequestEnd::answered(http::StatusCode::BAD_GATEWAY), &Context::new());
/// assert_eq!(hook.0.load(Ordering::Relaxed), 1);
/// ```
pub trait RequestHook<B>: Clone + Send + Sync + 'static {
    /// What [`start`](Self::start) leaves for the end of the request.
    type State: HookState;

    /// Runs before the server span starts; `parent` is the context it will
    /// start in (the caller's, or a new root's). Does nothing by default.
    #[inline]
    fn prepare(&self, request: &Request<B>, parent: &mut Context) {
        let _ = (request, parent);
    }

    /// Runs before the inner service is called; `cx` is the context the
    /// request runs in (its server span, the caller's baggage).
    fn start(&self, request: &Request<B>, cx: &mut Context) -> Self::State;
}

/// What a [`RequestHook`] keeps while its request runs.
pub trait HookState: Send + 'static {
    /// Runs once when the request has ended; `cx` is the context it ran in
    /// (its server span, still open).
    fn end(self, end: RequestEnd, cx: &Context);
}

impl<B> RequestHook<B> for () {
    type State = ();

    #[inline]
    fn start(&self, _: &Request<B>, _: &mut Context) {}
}

impl HookState for () {
    #[inline]
    fn end(self, _: RequestEnd, _: &Context) {}
}

impl<B, H1, H2> RequestHook<B> for (H1, H2)
where
    H1: RequestHook<B>,
    H2: RequestHook<B>,
{
    type State = (H1::State, H2::State);

    #[inline]
    fn prepare(&self, request: &Request<B>, parent: &mut Context) {
        self.0.prepare(request, parent);
        self.1.prepare(request, parent);
    }

    #[inline]
    fn start(&self, request: &Request<B>, cx: &mut Context) -> Self::State {
        let first = self.0.start(request, cx);
        (first, self.1.start(request, cx))
    }
}

impl<S1: HookState, S2: HookState> HookState for (S1, S2) {
    #[inline]
    fn end(self, end: RequestEnd, cx: &Context) {
        self.1.end(end, cx);
        self.0.end(end, cx);
    }
}
