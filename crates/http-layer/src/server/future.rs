use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode};
use looptel_core::tracecontext::render_traceparent;
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, EXCEPTION_MESSAGE, HTTP_RESPONSE_STATUS_CODE,
};
use pin_project_lite::pin_project;

use crate::body::{ResponseBody, SpanEnd};

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
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Inner<F>,
        state: Option<State>,
    }
}

#[derive(Debug)]
struct State {
    cx: OtelContext,
    /// Whether `cx` holds a span of ours to end (not just the caller's).
    owned: bool,
    response_traceparent: bool,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn untraced(inner: Inner<F>) -> Self {
        Self { inner, state: None }
    }

    pub(crate) fn traced(
        inner: Inner<F>,
        cx: OtelContext,
        owned: bool,
        response_traceparent: bool,
    ) -> Self {
        Self {
            inner,
            state: Some(State {
                cx,
                owned,
                response_traceparent,
            }),
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

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

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
                if let Some(s) = state.filter(|s| s.owned) {
                    let span = s.cx.span();
                    span.set_attribute(KeyValue::new(ERROR_TYPE, std::any::type_name::<E>()));
                    span.set_status(Status::error("service error"));
                    drop(SpanEnd(s.cx));
                }
                Err(e)
            }
            Err(message) => Ok(panicked(message, state)),
        })
    }
}

fn respond<B>(res: Response<B>, state: Option<State>) -> Response<ResponseBody<B>> {
    let Some(state) = state else {
        return res.map(|b| ResponseBody::new(b, None));
    };
    if !state.owned {
        return res.map(|b| ResponseBody::new(b, None));
    }
    let span = state.cx.span();
    if !span.is_recording() && !state.response_traceparent {
        // Nothing to record: the span only needs ending.
        return res.map(|b| ResponseBody::new(b, Some(SpanEnd(state.cx))));
    }
    let status = res.status();
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
    res.map(|b| ResponseBody::new(b, Some(SpanEnd(state.cx))))
}

fn panicked<B>(message: String, state: Option<State>) -> Response<ResponseBody<B>> {
    if let Some(s) = state.filter(|s| s.owned) {
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
        drop(SpanEnd(s.cx));
    }
    let mut res = Response::new(ResponseBody::empty());
    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    res
}
