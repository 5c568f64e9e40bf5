//! The response body wrapper that finishes a request when the body ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use looptel_core::{HookState, RequestEnd};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry_semantic_conventions::attribute::ERROR_TYPE;
use pin_project_lite::pin_project;

/// Finishes a request exactly once — the hooks, then the span, if the
/// layer started one — when the body ends, fails, or is dropped (a client
/// that went away is not an error).
#[derive(Debug)]
pub(crate) struct Finish<G: HookState> {
    pub(crate) cx: opentelemetry::Context,
    /// Whether `cx` holds a span of ours to end (not just the caller's).
    pub(crate) owned: bool,
    /// The hooks to end, and how the request ended.
    pub(crate) hooks: Option<(G, RequestEnd)>,
}

impl Finish<()> {
    /// Ends the span of `cx` and nothing else.
    pub(crate) fn span(cx: opentelemetry::Context) -> Self {
        Self {
            cx,
            owned: true,
            hooks: None,
        }
    }
}

impl<G: HookState> Finish<G> {
    fn fail(self, error_type: &'static str, description: String) {
        if self.owned {
            let span = self.cx.span();
            span.set_attribute(KeyValue::new(ERROR_TYPE, error_type));
            span.set_status(Status::error(description));
        }
    }
}

impl<G: HookState> Drop for Finish<G> {
    fn drop(&mut self) {
        if let Some((hooks, end)) = self.hooks.take() {
            hooks.end(end, &self.cx);
        }
        if self.owned {
            self.cx.span().end();
        }
    }
}

pin_project! {
    /// The body of a traced response: the inner body, unchanged, whose end
    /// finishes the request (its span and hooks). Streaming bodies keep the
    /// span open until their last frame.
    #[derive(Debug)]
    pub struct ResponseBody<B, G: HookState = ()> {
        #[pin]
        inner: Option<B>,
        span: Option<Finish<G>>,
    }
}

impl<B, G: HookState> ResponseBody<B, G> {
    pub(crate) fn new(inner: B, span: Option<Finish<G>>) -> Self {
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

impl<B, G> Body for ResponseBody<B, G>
where
    B: Body,
    G: HookState,
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
