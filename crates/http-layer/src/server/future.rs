use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode};
use looptel_core::tracecontext::render_traceparent;
use looptel_core::{HookState, RequestEnd};
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, EXCEPTION_MESSAGE, HTTP_RESPONSE_STATUS_CODE,
};
use pin_project_lite::pin_project;

use crate::body::{Finish, ResponseBody};

pin_project! {
    #[project = InnerProj]
    /// The inner service's future, or the panic its `call` raised.
    #[derive(Debug)]
    pub(crate) enum Inner<F> {
        Running { #[pin] fut: F },
        Panicked { message: String },
    }
}

pin_project! {
    /// The response future of [`Server`](super::Server).
    #[derive(Debug)]
    pub struct ResponseFuture<F, G: HookState = ()> {
        #[pin]
        inner: Inner<F>,
        state: Option<State<G>>,
    }
}

#[derive(Debug)]
pub(crate) struct State<G> {
    pub(crate) cx: OtelContext,
    /// Whether `cx` holds a span of ours to end (not just the caller's).
    pub(crate) owned: bool,
    pub(crate) response_traceparent: bool,
    pub(crate) hooks: G,
}

impl<G: HookState> State<G> {
    fn finish(self, end: RequestEnd) -> Finish<G> {
        Finish {
            cx: self.cx,
            owned: self.owned,
            hooks: Some((self.hooks, end)),
        }
    }
}

impl<F, G: HookState> ResponseFuture<F, G> {
    pub(crate) fn untraced(inner: Inner<F>) -> Self {
        Self { inner, state: None }
    }

    pub(crate) fn traced(inner: Inner<F>, state: State<G>) -> Self {
        Self {
            inner,
            state: Some(state),
        }
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "handler panicked".to_owned())
}

impl<F, B, E, G> Future for ResponseFuture<F, G>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    G: HookState,
{
    type Output = Result<Response<ResponseBody<B, G>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _attached = this.state.as_ref().map(|s| s.cx.clone().attach());
        let polled = match this.inner.project() {
            InnerProj::Running { fut } => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(r)) => Ok(r),
                    Err(panic) => Err(panic_message(&*panic)),
                }
            }
            InnerProj::Panicked { message } => Err(std::mem::take(message)),
        };
        let state = this.state.take();
        Poll::Ready(match polled {
            Ok(Ok(res)) => Ok(respond(res, state)),
            Ok(Err(e)) => {
                if let Some(s) = state {
                    let error_type = std::any::type_name::<E>();
                    if s.owned {
                        let span = s.cx.span();
                        span.set_attribute(KeyValue::new(ERROR_TYPE, error_type));
                        span.set_status(Status::error("service error"));
                    }
                    drop(s.finish(RequestEnd::failed(error_type)));
                }
                Err(e)
            }
            Err(message) => Ok(panicked(message, state)),
        })
    }
}

fn respond<B, G: HookState>(
    res: Response<B>,
    state: Option<State<G>>,
) -> Response<ResponseBody<B, G>> {
    let Some(state) = state else {
        return res.map(|b| ResponseBody::new(b, None));
    };
    let status = res.status();
    let span = state.cx.span();
    if !state.owned || (!span.is_recording() && !state.response_traceparent) {
        // Nothing to record: the span only needs ending, the hooks finishing.
        let finish = state.finish(RequestEnd::answered(status));
        return res.map(|b| ResponseBody::new(b, Some(finish)));
    }
    span.set_attribute(KeyValue::new(
        HTTP_RESPONSE_STATUS_CODE,
        i64::from(status.as_u16()),
    ));
    if status.is_server_error() {
        span.set_attribute(KeyValue::new(ERROR_TYPE, status.as_str().to_owned()));
        span.set_status(Status::error(""));
    }
    let mut res = res;
    if state.response_traceparent
        && let Ok(v) = HeaderValue::from_str(&render_traceparent(span.span_context(), false))
    {
        res.headers_mut()
            .insert(looptel_core::tracecontext::TRACEPARENT, v);
    }
    let finish = state.finish(RequestEnd::answered(status));
    res.map(|b| ResponseBody::new(b, Some(finish)))
}

fn panicked<B, G: HookState>(
    message: String,
    state: Option<State<G>>,
) -> Response<ResponseBody<B, G>> {
    if let Some(s) = state {
        if s.owned {
            let span = s.cx.span();
            span.add_event(
                "exception",
                vec![
                    KeyValue::new(EXCEPTION_MESSAGE, message.clone()),
                    KeyValue::new("exception.type", "panic"),
                ],
            );
            span.set_attribute(KeyValue::new(HTTP_RESPONSE_STATUS_CODE, 500_i64));
            span.set_attribute(KeyValue::new(ERROR_TYPE, "500"));
            span.set_status(Status::error(message));
        }
        drop(s.finish(RequestEnd::answered(StatusCode::INTERNAL_SERVER_ERROR)));
    }
    let mut res = Response::new(ResponseBody::empty());
    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    res
}
