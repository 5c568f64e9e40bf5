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

use std::task::{Context, Poll};

use http::{Request, Response};
use looptel_core::{HeaderInjector, Instrumentation, SpanStart};
use looptel_engine::{Engine, HttpClient, RequestHook, ResponseBody, ResponseFuture};
use opentelemetry::trace::{SpanBuilder, SpanKind};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_semantic_conventions::attribute::URL_FULL;
use tower_layer::Layer;
use tower_service::Service;

use crate::attributes::{name_method, push_method, redacted_full_url};
use looptel_engine::server_attributes;

/// Traces and propagates each outgoing request; see the [module docs](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientLayer<H = ()> {
    instrumentation: Instrumentation,
    hooks: H,
}

impl ClientLayer {
    /// The layer.
    pub fn new(instrumentation: Instrumentation) -> Self {
        Self {
            instrumentation,
            hooks: (),
        }
    }
}

impl<H> ClientLayer<H> {
    /// Runs `hook` for every request, with the CLIENT span as its context,
    /// ending with the response body — the client's RED metrics
    /// (`looptel_red_metrics::HttpClientMetrics`) this way. Hooks start in
    /// the order they are added and end in reverse.
    pub fn hook<H2>(self, hook: H2) -> ClientLayer<(H, H2)> {
        ClientLayer {
            instrumentation: self.instrumentation,
            hooks: (self.hooks, hook),
        }
    }
}

impl<S, H: Clone> Layer<S> for ClientLayer<H> {
    type Service = Client<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Client {
            inner,
            instrumentation: self.instrumentation.clone(),
            hooks: self.hooks.clone(),
            engine: Engine::new(HttpClient),
        }
    }
}

/// The service built by [`ClientLayer`].
#[derive(Clone, Debug)]
pub struct Client<S, H = ()> {
    inner: S,
    instrumentation: Instrumentation,
    hooks: H,
    engine: Engine<HttpClient>,
}

impl<S> Client<S> {
    /// A layer producing this service.
    pub fn layer(instrumentation: Instrumentation) -> ClientLayer {
        ClientLayer::new(instrumentation)
    }
}

looptel_engine::service_accessors!(Client<S, H>);

/// Starts the CLIENT span of `req` as a child of the current context and
/// injects the context into its headers. Returns the context the call runs
/// in, and whether it holds a span of ours.
pub(crate) fn start_client_span(
    inst: &Instrumentation,
    method: &http::Method,
    uri: &http::Uri,
    headers: &mut http::HeaderMap,
) -> (OtelContext, bool) {
    let parent = OtelContext::current();
    if !inst.is_tracing() {
        inst.propagator()
            .inject(&parent, &mut HeaderInjector(headers));
        return (parent, false);
    }
    let mut attrs = Vec::with_capacity(6);
    let m = push_method(&mut attrs, looptel_core::normalize_method(method), method);
    server_attributes(uri, headers, &mut attrs);
    attrs.push(KeyValue::new(URL_FULL, redacted_full_url(uri)));
    let builder = SpanBuilder::from_name(name_method(m))
        .with_kind(SpanKind::Client)
        .with_attributes(attrs);
    let cx = inst.start_span(SpanStart::child_of(parent), builder, &mut |_| {});
    inst.propagator().inject(&cx, &mut HeaderInjector(headers));
    (cx, true)
}

impl<S, H, ReqB, ResB> Service<Request<ReqB>> for Client<S, H>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: std::error::Error + 'static,
    H: RequestHook<Request<ReqB>>,
    ResB: http_body::Body,
{
    type Response = Response<ResponseBody<ResB, HttpClient, H::State>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, HttpClient, H::State>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let (cx, owned) =
            start_client_span(&self.instrumentation, &method, &uri, req.headers_mut());
        self.engine
            .call(&mut self.inner, req, &self.hooks, cx, owned)
    }
}
