//! The future that runs a call: context attached, panics caught, the
//! response classified.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use http::{HeaderValue, Response};
use looptel_core::tracecontext::{TRACEPARENT_HEADER, traceparent_bytes};
use looptel_core::{Extracted, Instrumentation, SpanStart};
use opentelemetry::KeyValue;
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_semantic_conventions::attribute::EXCEPTION_MESSAGE;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::{Call, Classify, ClassifyError, Derive, HookState, RequestHook, ResponseBody};

/// A transport's settings for the engine, built once with its layer: the
/// classifier, and whether responses carry the span's `traceparent`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Engine<C> {
    classifier: C,
    response_traceparent: bool,
}

impl<C: Classify> Engine<C> {
    /// An engine classifying with `classifier`.
    pub fn new(classifier: C) -> Self {
        Self {
            classifier,
            response_traceparent: false,
        }
    }

    /// Writes the span's `traceparent` into response headers (default
    /// `false`); only for calls whose span is the layer's own.
    #[must_use]
    pub fn response_traceparent(mut self, enabled: bool) -> Self {
        self.response_traceparent = enabled;
        self
    }

    /// The classifier.
    pub fn classifier(&self) -> &C {
        &self.classifier
    }

    /// Starts `hooks` in `cx` (with what the request tells: [`Derive`]),
    /// calls `inner` with `cx` attached, and returns the future that ends
    /// the call; `owned` when `cx` holds a span of the layer's. A panic in
    /// `inner.call` is handled like one in its future.
    pub fn call<S, R, H>(
        &self,
        inner: &mut S,
        request: R,
        hooks: &H,
        mut cx: opentelemetry::Context,
        owned: bool,
    ) -> ResponseFuture<S::Future, C, H::State>
    where
        S: Service<R>,
        R: Derive,
        H: RequestHook<R>,
    {
        let state = hooks.start(&request, &request.derive(), &mut cx);
        self.run(inner, request, cx, owned, state)
    }

    /// Calls `inner` with `cx` attached, for hooks already started (their
    /// `state`), and returns the future that ends the call; `owned` when
    /// `cx` holds a span of the layer's.
    pub fn run<S, R, G>(
        &self,
        inner: &mut S,
        request: R,
        cx: opentelemetry::Context,
        owned: bool,
        state: G,
    ) -> ResponseFuture<S::Future, C, G>
    where
        S: Service<R>,
        G: HookState,
    {
        let fut = {
            let _attached = cx.clone().attach();
            call_catching(inner, request)
        };
        ResponseFuture {
            inner: fut,
            // Dropped before it is classified (the client went away), the
            // call ends as the classifier says of a cancelled one.
            call: Some(Call::new(cx, owned, state).on_cancel(self.classifier.classify_cancel())),
            classifier: self.classifier.clone(),
            response_traceparent: owned && self.response_traceparent,
        }
    }

    /// Calls `inner` for a request the layer does not trace: no context,
    /// no hooks; a panic is still answered as the classifier says.
    pub fn untraced<S, R, G>(&self, inner: &mut S, request: R) -> ResponseFuture<S::Future, C, G>
    where
        S: Service<R>,
        G: HookState,
    {
        ResponseFuture {
            inner: call_catching(inner, request),
            call: None,
            classifier: self.classifier.clone(),
            response_traceparent: false,
        }
    }
}

/// Drops the baggage a context holds.
fn drop_baggage(cx: &mut opentelemetry::Context) {
    if !cx.baggage().is_empty() {
        *cx = cx.with_baggage(opentelemetry::baggage::Baggage::new());
    }
}

/// How a call's span relates to its caller's context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Relation {
    /// Its child — unless the caller is
    /// [`public`](crate::Derived::is_public): then a new root linked to it, whose
    /// baggage the hooks see in `prepare` and the call never does.
    #[default]
    Child,
    /// A new root linked to it, its baggage kept (a consumer in link
    /// mode: a trusted producer, a trace of its own).
    Linked,
    /// No caller: the call runs under the current context (a send, a
    /// settlement), which the hooks' [`base`](RequestHook::base) builds on
    /// and `extract` is given.
    Current,
}

/// The serve protocol's first half, for any transport — an HTTP or gRPC
/// request, a consumed message: for a caller that is not
/// [`public`](crate::Derived::is_public) the hooks'
/// [`base`](RequestHook::base) runs first; the caller's context comes from
/// `extract`, given that base to read it onto (`None` when no hook set
/// one, and for a public caller) and told whether the caller's sampling decision counts
/// (not for a public caller, nor for a new trace: a linked call keeps only
/// the baggage of both); a caller
/// that did not sample under a parent-based sampler, or telemetry switched
/// off, gets no span of the layer's. Otherwise the hooks are prepared with
/// the context the span starts in (as `relation` says) and `span`, the
/// transport's naming, starts the span where the [`SpanStart`] says (with
/// [`Instrumentation::start_span`]). Then the hooks start. Returns the
/// context the call runs in, whether it holds a span of the layer's, and
/// the hooks' state: what [`Engine::run`] or a [`Call`] takes.
#[inline]
pub fn begin<R, H: RequestHook<R>>(
    instrumentation: &Instrumentation,
    request: &R,
    derived: &crate::Derived<'_>,
    relation: Relation,
    extract: impl FnOnce(bool, Option<opentelemetry::Context>) -> Extracted,
    hooks: &H,
    span: impl FnOnce(SpanStart) -> opentelemetry::Context,
) -> (opentelemetry::Context, bool, H::State) {
    let public = derived.is_public();
    let trust = !public && relation == Relation::Child;
    // What the hooks add for every call (the edge's baggage members) is
    // the context the caller's is read into: one context built, not one
    // per hook on top of the caller's.
    let base = if public {
        None
    } else {
        let mut base = crate::Base::default();
        if relation == Relation::Current {
            base.set(opentelemetry::Context::current());
        }
        hooks.base(request, derived, &mut base);
        derived.set_ran_base();
        base.into_inner()
    };
    let remote = match extract(trust, base) {
        Extracted::Remote(cx) => cx,
        Extracted::UnsampledChild(mut cx) => {
            // The caller did not sample and the sampler follows it: no
            // sampler call, no attributes, no name.
            hooks.prepare(request, derived, &mut cx);
            let state = hooks.start(request, derived, &mut cx);
            return (cx, true, state);
        }
    };
    if !instrumentation.is_tracing() {
        // Telemetry off: no span, but the caller's context still flows
        // to outgoing calls, and the hooks run.
        let mut cx = remote;
        hooks.prepare(request, derived, &mut cx);
        if public {
            drop_baggage(&mut cx);
        }
        let state = hooks.start(request, derived, &mut cx);
        return (cx, false, state);
    }
    let mut start = match relation {
        // A public caller's baggage is there for the hooks to see (and
        // count), then dropped: it never reaches the span or the handler.
        Relation::Child if public => SpanStart::linked_to(&remote),
        Relation::Child | Relation::Current => SpanStart::child_of(remote),
        Relation::Linked => SpanStart::linked_to(&remote),
    };
    hooks.prepare(request, derived, start.parent_mut());
    if public {
        drop_baggage(start.parent_mut());
    }
    let mut cx = span(start);
    let state = hooks.start(request, derived, &mut cx);
    (cx, true, state)
}

pin_project! {
    #[project = InnerProj]
    /// The inner service's future, or the panic its `call` raised.
    #[derive(Debug)]
    enum Inner<F> {
        Running { #[pin] fut: F },
        Panicked { payload: Option<Box<dyn Any + Send>> },
    }
}

/// Calls the inner service; a panic in `call` itself becomes a panicked
/// future.
fn call_catching<S: Service<R>, R>(inner: &mut S, req: R) -> Inner<S::Future> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req))) {
        Ok(fut) => Inner::Running { fut },
        Err(payload) => Inner::Panicked {
            payload: Some(payload),
        },
    }
}

pin_project! {
    /// The response future of every looptel layer: runs the inner future
    /// in the call's context, classifies the response head (or the
    /// service's error), and hands the call to the [`ResponseBody`], which
    /// ends it at end of stream.
    pub struct ResponseFuture<F, C: Classify, G: HookState = ()> {
        #[pin]
        inner: Inner<F>,
        call: Option<Call<G>>,
        classifier: C,
        response_traceparent: bool,
    }
}

impl<F: std::fmt::Debug, C: Classify + std::fmt::Debug, G: HookState> std::fmt::Debug
    for ResponseFuture<F, C, G>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .field("call", &self.call)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

/// The text of a panic's payload.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "handler panicked".to_owned())
}

impl<F, B, E, C, G> Future for ResponseFuture<F, C, G>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    C: Classify + ClassifyError<E>,
    G: HookState,
{
    type Output = Result<Response<ResponseBody<B, C, G>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _attached = this.call.as_ref().map(|c| c.context().clone().attach());
        let polled = match this.inner.project() {
            InnerProj::Running { fut } => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(r)) => Ok(r),
                    Err(payload) => Err(payload),
                }
            }
            InnerProj::Panicked { payload } => Err(payload
                .take()
                .unwrap_or_else(|| Box::new("polled after completion"))),
        };
        let call = this.call.take();
        let classifier = this.classifier;
        Poll::Ready(match polled {
            Ok(Ok(res)) => Ok(respond(res, call, classifier, *this.response_traceparent)),
            Ok(Err(e)) => {
                if let Some(call) = call {
                    call.end(classifier.classify_error(&e));
                }
                Err(e)
            }
            Err(payload) => Ok(panicked(payload, call, classifier)),
        })
    }
}

fn respond<B, C: Classify, G: HookState>(
    mut res: Response<B>,
    call: Option<Call<G>>,
    classifier: &C,
    response_traceparent: bool,
) -> Response<ResponseBody<B, C, G>> {
    let Some(mut call) = call else {
        return res.map(|b| ResponseBody::new(b, None, classifier.clone()));
    };
    if let Some(c) = classifier.classify_response(res.status(), res.headers()) {
        call.classify(c);
    }
    if response_traceparent
        && let Ok(v) = HeaderValue::from_bytes(&traceparent_bytes(
            call.context().span().span_context(),
            false,
        ))
    {
        res.headers_mut().insert(TRACEPARENT_HEADER, v);
    }
    res.map(|b| ResponseBody::new(b, Some(call), classifier.clone()))
}

/// Answers a panic as the classifier says, or lets it go on.
fn panicked<B, C: Classify, G: HookState>(
    payload: Box<dyn Any + Send>,
    call: Option<Call<G>>,
    classifier: &C,
) -> Response<ResponseBody<B, C, G>> {
    let Some(answer) = classifier.panic_response() else {
        drop(call);
        std::panic::resume_unwind(payload);
    };
    let message = panic_message(&*payload);
    if let Some(call) = call {
        if call.owns_span() {
            call.context().span().add_event(
                "exception",
                vec![
                    KeyValue::new(EXCEPTION_MESSAGE, message.clone()),
                    KeyValue::new("exception.type", "panic"),
                ],
            );
        }
        let classified = classifier
            .classify_response(answer.status(), answer.headers())
            .unwrap_or_else(|| classifier.classify_eos(None));
        call.end(classified.with_message(message));
    }
    answer.map(|()| ResponseBody::empty(classifier.clone()))
}
