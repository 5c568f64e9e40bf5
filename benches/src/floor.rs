//! The floor: what a request must cost at least to do looptel's job, by
//! hand and nothing else — read the caller's `traceparent` with the
//! crate's parser, observe one histogram (resolved once) with the span's
//! ids as its exemplar, answer with a `traceparent`. No span is built, no
//! context attached, no log line written: every figure of the other
//! scenarios is also a multiple of this one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use http::{HeaderValue, Request, Response};
use looptel_core::TraceIds;
use looptel_core::tracecontext::{TRACEPARENT_HEADER, parse_traceparent_bytes, traceparent_bytes};
use looptel_red_metrics::{Histogram, Registry};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};
use tower::{Layer, Service};

/// The floor as a layer.
#[derive(Clone, Debug)]
pub struct FloorLayer {
    histogram: Arc<Histogram>,
    next_span: Arc<AtomicU64>,
}

impl FloorLayer {
    /// One duration histogram on `registry`, its series resolved once.
    pub fn new(registry: &Registry) -> Self {
        let metric = registry.histogram(
            "http.server.request.duration",
            "s",
            "Duration of HTTP server requests.",
            &["http.route"],
            looptel_red_metrics::DURATION_BUCKETS,
        );
        Self {
            histogram: metric.family().series(&["/orders/{id}"]),
            next_span: Arc::new(AtomicU64::new(0x9e37_79b9_7f4a_7c15)),
        }
    }
}

impl<S> Layer<S> for FloorLayer {
    type Service = Floor<S>;

    fn layer(&self, inner: S) -> Floor<S> {
        Floor {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`FloorLayer`] builds.
#[derive(Clone, Debug)]
pub struct Floor<S> {
    inner: S,
    layer: FloorLayer,
}

impl<S> Service<Request<Body>> for Floor<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = FloorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let caller = req
            .headers()
            // By a header name, not a `&str`: no name parsed per request.
            .get(TRACEPARENT_HEADER)
            .and_then(|v| parse_traceparent_bytes(v.as_bytes()));
        // A span id of our own, by a counter's golden-ratio steps.
        let span = SpanId::from(
            self.layer
                .next_span
                .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed),
        );
        FloorFuture {
            inner: self.inner.call(req),
            histogram: self.layer.histogram.clone(),
            ids: caller.and_then(|c| TraceIds::new(c.trace_id, span, c.flags & 1 == 1)),
            start: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The floor's future: the inner one, then the observation and the
    /// header (no allocation of its own).
    pub struct FloorFuture<F> {
        #[pin]
        inner: F,
        histogram: Arc<Histogram>,
        ids: Option<TraceIds>,
        start: Instant,
    }
}

impl<F, E> Future for FloorFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r?,
        };
        let ids = *this.ids;
        this.histogram.observe(
            this.start.elapsed().as_secs_f64(),
            ids.filter(TraceIds::is_sampled),
        );
        if let Some(ids) = ids {
            let sc = SpanContext::new(
                ids.trace_id(),
                ids.span_id(),
                if ids.is_sampled() {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                false,
                TraceState::NONE,
            );
            if let Ok(v) = HeaderValue::from_bytes(&traceparent_bytes(&sc, false)) {
                res.headers_mut().insert(TRACEPARENT_HEADER, v);
            }
        }
        Poll::Ready(Ok(res))
    }
}
