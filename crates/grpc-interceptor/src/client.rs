//! The client layer: one CLIENT span per call, context injected into its
//! metadata, every non-OK status an error.

use std::task::{Context, Poll};

use http::{Request, Response};
use looptel_core::{HeaderInjector, Instrumentation, SpanStart};
use looptel_engine::{
    AttributesOn, Classification, Derived, Engine, GrpcClient, HookState, RequestHook,
    ResponseBody, ResponseFuture, method_of, server_attributes,
};
use opentelemetry::global::ObjectSafeSpan;
use opentelemetry::trace::{SpanBuilder, SpanKind, TraceContextExt};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_semantic_conventions::attribute::{
    RPC_METHOD, RPC_METHOD_ORIGINAL, RPC_SYSTEM_NAME,
};
use tower_layer::Layer;
use tower_service::Service;

/// Traces and propagates each call of a tonic client (around a `Channel`);
/// see the [crate docs](crate).
#[derive(Clone, Debug)]
#[must_use]
pub struct GrpcClientLayer<H = ()> {
    instrumentation: Instrumentation,
    hooks: H,
    engine: Engine<GrpcClient>,
}

impl GrpcClientLayer {
    /// The layer.
    pub fn new(instrumentation: Instrumentation) -> Self {
        Self {
            instrumentation,
            hooks: (),
            engine: Engine::new(GrpcClient),
        }
    }
}

impl<H> GrpcClientLayer<H> {
    /// Runs `hook` for every call, inside its span, ending with the
    /// response stream (`rpc.client.call.duration`:
    /// `looptel_red_metrics::RpcMetrics::client_hook`).
    pub fn hook<H2>(self, hook: H2) -> GrpcClientLayer<(H, H2)> {
        GrpcClientLayer {
            instrumentation: self.instrumentation,
            hooks: (self.hooks, hook),
            engine: self.engine,
        }
    }
}

impl<S, H: Clone> Layer<S> for GrpcClientLayer<H> {
    type Service = GrpcClientService<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcClientService {
            inner,
            layer: GrpcClientLayer {
                instrumentation: self.instrumentation.clone(),
                hooks: (
                    StatusAtEnd(self.instrumentation.semconv().rpc_dup()),
                    self.hooks.clone(),
                ),
                engine: self.engine,
            },
        }
    }
}

/// The service built by [`GrpcClientLayer`].
#[derive(Clone, Debug)]
pub struct GrpcClientService<S, H = ()> {
    inner: S,
    /// The legacy namer first, then the user's hooks.
    layer: GrpcClientLayer<(StatusAtEnd, H)>,
}

/// The client layer's own hook: with `rpc/dup`, the pre-1.39 names once the
/// call has ended (`rpc.system`, `rpc.service`, `rpc.grpc.status_code`).
#[derive(Clone, Copy, Debug)]
pub struct StatusAtEnd(bool);

/// What [`StatusAtEnd`] keeps: the method of a recording span's call.
#[derive(Debug)]
pub struct LegacyEnding(String);

impl<B> RequestHook<Request<B>> for StatusAtEnd {
    type State = Option<LegacyEnding>;

    #[inline]
    fn start(&self, request: &Request<B>, _: &Derived<'_>, cx: &mut OtelContext) -> Self::State {
        (self.0 && cx.span().is_recording()).then(|| {
            let method = method_of(request.uri().path(), &Default::default());
            LegacyEnding(method.unwrap_or(looptel_engine::OTHER_METHOD).to_owned())
        })
    }
}

impl HookState for LegacyEnding {
    fn end(self, end: &Classification, cx: &OtelContext) {
        crate::legacy_names(&cx.span(), &self.0, end);
    }
}

looptel_engine::service_accessors!(GrpcClientService<S, H>);

impl<S, H, ReqB, ResB> Service<Request<ReqB>> for GrpcClientService<S, H>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: std::error::Error + 'static,
    H: RequestHook<Request<ReqB>>,
    ResB: http_body::Body,
{
    type Response = Response<ResponseBody<ResB, GrpcClient, (Option<LegacyEnding>, H::State)>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, GrpcClient, (Option<LegacyEnding>, H::State)>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let inst = &self.layer.instrumentation;
        let parent = OtelContext::current();
        if !inst.is_tracing() {
            inst.propagator()
                .inject(&parent, &mut HeaderInjector(req.headers_mut()));
            let layer = &self.layer;
            return layer
                .engine
                .call(&mut self.inner, req, &layer.hooks, parent, false);
        }
        // The client knows what it calls: its own generated paths.
        let path = req.uri().path();
        let method = method_of(path, &Default::default());
        let mut attrs = vec![
            KeyValue::new(RPC_SYSTEM_NAME, "grpc"),
            KeyValue::new(
                RPC_METHOD,
                method.unwrap_or(looptel_engine::OTHER_METHOD).to_owned(),
            ),
        ];
        if method.is_none() {
            attrs.push(KeyValue::new(RPC_METHOD_ORIGINAL, path.to_owned()));
        }
        let builder = SpanBuilder {
            span_kind: Some(SpanKind::Client),
            attributes: Some(attrs),
            ..SpanBuilder::from_name(method.unwrap_or(looptel_engine::OTHER_METHOD).to_owned())
        };
        let cx = inst.start_span(
            SpanStart::child_of(parent),
            builder,
            &mut |span: &mut dyn ObjectSafeSpan| {
                if span.is_recording() {
                    // The channel's target.
                    server_attributes(req.uri(), req.headers(), &mut AttributesOn(span));
                }
            },
        );
        inst.propagator()
            .inject(&cx, &mut HeaderInjector(req.headers_mut()));
        let layer = &self.layer;
        layer
            .engine
            .call(&mut self.inner, req, &layer.hooks, cx, true)
    }
}

/// A tonic interceptor that injects the current context — `traceparent`,
/// `tracestate`, `baggage` through the propagator's inject policy — into a
/// call's metadata, for clients that want propagation without spans
/// (`ServiceClient::with_interceptor(channel, inject_context(inst))`).
///
/// ```
/// use looptel_core::{Instrumentation, Propagator};
/// use looptel_grpc_interceptor::inject_context;
///
/// let inst = Instrumentation::disabled(Propagator::default());
/// let mut intercept = inject_context(inst);
/// let req = intercept(tonic::Request::new(())).unwrap();
/// assert!(req.metadata().get("traceparent").is_none()); // no current span
/// ```
pub fn inject_context(
    instrumentation: Instrumentation,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut req| {
        let mut headers = std::mem::take(req.metadata_mut()).into_headers();
        instrumentation
            .propagator()
            .inject(&OtelContext::current(), &mut HeaderInjector(&mut headers));
        *req.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        Ok(req)
    }
}
