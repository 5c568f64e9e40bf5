//! The client layer: one CLIENT span per outgoing request, with the context
//! injected into its headers.
//!
//! Works with any Tower client of `http::Request`s, such as hyper-util's:
//!
//! ```
//! use looptel_core::{Instrumentation, Propagator};
//! use looptel_http_layer::client::ClientLayer;
//! use tower::ServiceBuilder;
//!
//! # let inst = Instrumentation::disabled(Propagator::default());
//! let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
//!     .build_http::<http_body_util::Empty<bytes::Bytes>>();
//! let traced = ServiceBuilder::new().layer(ClientLayer::new(inst)).service(client);
//! # let _ = traced;
//! ```
//!
//! The span is named `{method}` (`HTTP` for unknown methods) and carries
//! `http.request.method`, `server.address`, `server.port`, `url.full` without
//! credentials, and `http.response.status_code`. Status Error for a status of
//! 400 or more (`error.type` the code) and for transport errors (`error.type`
//! a class such as `timeout` or `connection_refused`). The parent is the
//! current context, so calls made inside a traced request continue its
//! trace. The span ends when the response body ends.

pub(crate) mod future;

use std::task::{Context, Poll};

use http::{Request, Response};
use looptel_core::{HeaderInjector, Instrumentation};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_semantic_conventions::attribute::URL_FULL;
use tower_layer::Layer;
use tower_service::Service;

pub use future::ResponseFuture;

use crate::attributes::{full_url_without_credentials, name_method, push_method, push_server};
use crate::body::ResponseBody;

/// Traces and propagates each outgoing request; see the [module docs](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientLayer {
    instrumentation: Instrumentation,
}

impl ClientLayer {
    /// The layer.
    pub fn new(instrumentation: Instrumentation) -> Self {
        Self { instrumentation }
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = Client<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Client {
            inner,
            instrumentation: self.instrumentation.clone(),
        }
    }
}

/// The service built by [`ClientLayer`].
#[derive(Clone, Debug)]
pub struct Client<S> {
    inner: S,
    instrumentation: Instrumentation,
}

impl<S> Client<S> {
    /// A layer producing this service.
    pub fn layer(instrumentation: Instrumentation) -> ClientLayer {
        ClientLayer::new(instrumentation)
    }
}

crate::macros::service_accessors!(Client<S>);

/// Starts the CLIENT span of `req` as a child of the current context and
/// injects the context into its headers. Returns the context to end.
pub(crate) fn start_client_span(
    inst: &Instrumentation,
    method: &http::Method,
    uri: &http::Uri,
    headers: &mut http::HeaderMap,
) -> Option<OtelContext> {
    let parent = OtelContext::current();
    let Some(tracer) = inst.tracer() else {
        inst.propagator()
            .inject(&parent, &mut HeaderInjector(headers));
        return None;
    };
    let mut attrs = Vec::with_capacity(6);
    let m = push_method(&mut attrs, method);
    push_server(&mut attrs, uri, headers);
    attrs.push(KeyValue::new(URL_FULL, full_url_without_credentials(uri)));
    let builder = tracer
        .span_builder(name_method(m))
        .with_kind(SpanKind::Client)
        .with_attributes(attrs);
    let cx = parent.with_span(tracer.build_with_context(builder, &parent));
    inst.propagator().inject(&cx, &mut HeaderInjector(headers));
    Some(cx)
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Client<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: std::error::Error + 'static,
    ResB: http_body::Body,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let cx = start_client_span(&self.instrumentation, &method, &uri, req.headers_mut());
        ResponseFuture::new(self.inner.call(req), cx)
    }
}

/// A low-cardinality class for a transport error, from the `std::io::Error`
/// in its source chain: `timeout`, `connection_refused`, … or `_OTHER`.
pub(crate) fn error_class(error: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::TimedOut => "timeout",
                K::ConnectionRefused => "connection_refused",
                K::ConnectionReset => "connection_reset",
                K::ConnectionAborted => "connection_aborted",
                K::NotConnected => "not_connected",
                K::AddrNotAvailable => "address_not_available",
                K::UnexpectedEof => "unexpected_eof",
                _ => "io_error",
            };
        }
        current = e.source();
    }
    if error.to_string().to_ascii_lowercase().contains("timed out") {
        return "timeout";
    }
    "_OTHER"
}
