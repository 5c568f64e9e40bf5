use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_semantic_conventions::attribute::{ERROR_TYPE, HTTP_RESPONSE_STATUS_CODE};
use pin_project_lite::pin_project;

use crate::body::{Finish, ResponseBody};

pin_project! {
    /// The response future of [`Client`](super::Client).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        cx: Option<OtelContext>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, cx: Option<OtelContext>) -> Self {
        Self { inner, cx }
    }
}

/// Records the response status on the client span: Error from 400 on.
pub(crate) fn record_status(cx: &OtelContext, status: http::StatusCode) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        HTTP_RESPONSE_STATUS_CODE,
        i64::from(status.as_u16()),
    ));
    if status.as_u16() >= 400 {
        span.set_attribute(KeyValue::new(ERROR_TYPE, status.as_str().to_owned()));
        span.set_status(Status::error(""));
    }
}

/// Records a transport error on the client span.
pub(crate) fn record_error(cx: &OtelContext, error: &(dyn std::error::Error + 'static)) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(ERROR_TYPE, super::error_class(error)));
    span.set_status(Status::error(error.to_string()));
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: std::error::Error + 'static,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        let span = this.cx.take();
        Poll::Ready(match result {
            Ok(res) => {
                if let Some(span) = &span {
                    record_status(span, res.status());
                }
                Ok(res.map(|b| ResponseBody::new(b, span.map(Finish::span))))
            }
            Err(e) => {
                if let Some(span) = span {
                    record_error(&span, &e);
                    drop(Finish::span(span));
                }
                Err(e)
            }
        })
    }
}
