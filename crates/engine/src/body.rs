//! The response body wrapper that ends a call once, at end of stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::{Call, Classify, HookState};

pin_project! {
    /// The body of a traced response: the inner body, unchanged, whose end
    /// ends the call (hooks, then span) exactly once — at the last frame
    /// (with the trailers' status when the head had none, as gRPC sends
    /// it), when the body fails, or when it is dropped (a client that went
    /// away). Streaming bodies keep the span open until their end.
    pub struct ResponseBody<B, C: Classify, G: HookState = ()> {
        #[pin]
        inner: Option<B>,
        call: Option<Call<G>>,
        classifier: C,
    }
}

impl<B: std::fmt::Debug, C: Classify + std::fmt::Debug, G: HookState> std::fmt::Debug
    for ResponseBody<B, C, G>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("call", &self.call)
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl<B, C: Classify, G: HookState> ResponseBody<B, C, G> {
    pub(crate) fn new(inner: B, call: Option<Call<G>>, classifier: C) -> Self {
        Self {
            inner: Some(inner),
            call,
            classifier,
        }
    }

    /// An empty body (the answer to a service that panicked).
    pub(crate) fn empty(classifier: C) -> Self {
        Self {
            inner: None,
            call: None,
            classifier,
        }
    }
}

impl<B, C, G> Body for ResponseBody<B, C, G>
where
    B: Body,
    B::Error: std::fmt::Display,
    C: Classify,
    G: HookState,
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
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut call) = this.call.take()
                {
                    // Trailers end the stream.
                    if !call.is_classified() {
                        call.classify(this.classifier.classify_eos(Some(trailers)));
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(mut call) = this.call.take()
                    && !call.is_classified()
                {
                    call.classify(this.classifier.classify_eos(None));
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(mut call) = this.call.take() {
                    let head = call.take_classification();
                    call.end(this.classifier.classify_body_error(head, e.to_string()));
                }
            }
            Poll::Pending => {}
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
