//! The response body wrapper that ends a span when the body ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry_semantic_conventions::attribute::ERROR_TYPE;
use pin_project_lite::pin_project;

/// Ends the span of a request exactly once: when the body ends, fails, or is
/// dropped (a client that went away is not an error).
#[derive(Debug)]
pub(crate) struct SpanEnd(pub(crate) opentelemetry::Context);

impl SpanEnd {
    fn fail(self, error_type: &'static str, description: String) {
        let span = self.0.span();
        span.set_attribute(KeyValue::new(ERROR_TYPE, error_type));
        span.set_status(Status::error(description));
    }
}

impl Drop for SpanEnd {
    fn drop(&mut self) {
        self.0.span().end();
    }
}

pin_project! {
    /// The body of a traced response: the inner body, unchanged, whose end
    /// ends the request's span. Streaming bodies keep the span open until
    /// their last frame.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        inner: Option<B>,
        span: Option<SpanEnd>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, span: Option<SpanEnd>) -> Self {
        Self {
            inner: Some(inner),
            span,
        }
    }

    /// An empty body (the response to a handler that panicked).
    pub(crate) fn empty() -> Self {
        Self {
            inner: None,
            span: None,
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let polled = inner.poll_frame(cx);
        match &polled {
            Poll::Ready(None) => drop(this.span.take()),
            Poll::Ready(Some(Err(e))) => {
                if let Some(end) = this.span.take() {
                    end.fail("body_error", e.to_string());
                }
            }
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
