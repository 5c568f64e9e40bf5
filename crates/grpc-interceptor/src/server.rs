//! The server layer: one SERVER span per call, from the request to the end
//! of the response stream, with the status from the trailers.

use std::task::{Context, Poll};

use http::{Request, Response, Uri};
use looptel_core::Instrumentation;
use looptel_engine::{
    AttributesOn, Classification, Deadline, Engine, GrpcServer, HookState, PublicEndpoint,
    RequestFilter, RequestHook, ResponseBody, ResponseFuture, RpcServices, method_of,
    rpc_method_label, server_attributes,
};
use opentelemetry::KeyValue;
use opentelemetry::global::ObjectSafeSpan;
use opentelemetry::trace::{SpanBuilder, SpanKind, TraceContextExt};
use opentelemetry_semantic_conventions::attribute::{
    RPC_METHOD, RPC_METHOD_ORIGINAL, RPC_SYSTEM_NAME,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::SkipServices;

/// Traces each call of a tonic server; see the [crate docs](crate).
#[derive(Clone, Debug)]
#[must_use]
pub struct GrpcServerLayer<F = SkipServices, P = (), H = ()> {
    instrumentation: Instrumentation,
    filter: F,
    public: P,
    hooks: H,
    services: RpcServices,
    engine: Engine<GrpcServer>,
}

impl GrpcServerLayer {
    /// Traces every call but the health service's, trusts every caller.
    pub fn new(instrumentation: Instrumentation) -> Self {
        Self {
            instrumentation,
            filter: crate::skip_services([crate::HEALTH_SERVICE]),
            public: (),
            hooks: (),
            services: RpcServices::default(),
            engine: Engine::new(GrpcServer),
        }
    }
}

impl<F, P, H> GrpcServerLayer<F, P, H> {
    /// Calls the filter rejects get no span and are marked
    /// [`Untraced`](looptel_engine::Untraced) for inner layers (default: all but
    /// `grpc.health.v1.Health`).
    pub fn filter<F2>(self, filter: F2) -> GrpcServerLayer<F2, P, H> {
        GrpcServerLayer {
            instrumentation: self.instrumentation,
            filter,
            public: self.public,
            hooks: self.hooks,
            services: self.services,
            engine: self.engine,
        }
    }

    /// Callers the rule calls public start a new trace linked to their
    /// context (default: every caller trusted).
    pub fn public_endpoint<P2>(self, rule: P2) -> GrpcServerLayer<F, P2, H> {
        GrpcServerLayer {
            instrumentation: self.instrumentation,
            filter: self.filter,
            public: rule,
            hooks: self.hooks,
            services: self.services,
            engine: self.engine,
        }
    }

    /// Runs `hook` for every traced call, inside its span, ending with the
    /// response stream (RED metrics, the baggage edge).
    pub fn hook<H2>(self, hook: H2) -> GrpcServerLayer<F, P, (H, H2)> {
        GrpcServerLayer {
            instrumentation: self.instrumentation,
            filter: self.filter,
            public: self.public,
            hooks: (self.hooks, hook),
            services: self.services,
            engine: self.engine,
        }
    }

    /// The services the server has (tonic's `NamedService::NAME`): calls
    /// to others are `_OTHER`. Without it, a call the router answers
    /// UNIMPLEMENTED is `_OTHER`.
    pub fn services<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.services = RpcServices::new(names);
        self
    }
}

impl<S, F: Clone, P: Clone, H: Clone> Layer<S> for GrpcServerLayer<F, P, H> {
    type Service = GrpcServerService<S, F, P, H>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerService {
            inner,
            layer: GrpcServerLayer {
                instrumentation: self.instrumentation.clone(),
                filter: self.filter.clone(),
                public: self.public.clone(),
                hooks: (),
                services: self.services.clone(),
                engine: self.engine,
            },
            hooks: (
                MethodAtEnd {
                    services: self.services.clone(),
                    dup: self.instrumentation.semconv().rpc_dup(),
                },
                self.hooks.clone(),
            ),
        }
    }
}

/// The service built by [`GrpcServerLayer`].
#[derive(Clone, Debug)]
pub struct GrpcServerService<S, F = SkipServices, P = (), H = ()> {
    inner: S,
    layer: GrpcServerLayer<F, P, ()>,
    /// The method namer first, then the user's hooks.
    hooks: (MethodAtEnd, H),
}

looptel_engine::service_accessors!(GrpcServerService<S, F, P, H>);

/// The server layer's own hook: the names a call's span gets once it has
/// ended: `rpc.method`, and
/// `_OTHER` with `rpc.method_original` for a method the server does not
/// have (with `rpc/dup`, also `rpc.service` and `rpc.grpc.status_code`).
/// Runs first, so it ends last, before the span does. It also puts the
/// caller's `grpc-timeout` into the call's context as a [`Deadline`]: a call
/// dropped past it is DEADLINE_EXCEEDED, not CANCELLED.
#[derive(Clone, Debug)]
pub struct MethodAtEnd {
    services: RpcServices,
    dup: bool,
}

/// What [`MethodAtEnd`] keeps: the path of a recording span's call.
#[derive(Debug)]
pub struct Ending {
    services: RpcServices,
    uri: Uri,
    dup: bool,
}

impl<B> RequestHook<Request<B>> for MethodAtEnd {
    type State = Option<Ending>;

    #[inline]
    fn start(&self, request: &Request<B>, cx: &mut opentelemetry::Context) -> Self::State {
        // The caller's deadline: a call tonic drops past it missed it.
        if let Some(deadline) = Deadline::of(request.headers()) {
            *cx = cx.with_value(deadline);
        }
        cx.span().is_recording().then(|| Ending {
            services: self.services.clone(),
            uri: request.uri().clone(),
            dup: self.dup,
        })
    }
}

impl HookState for Ending {
    fn end(self, end: &Classification, cx: &opentelemetry::Context) {
        let path = self.uri.path();
        let method = rpc_method_label(path, &self.services, end);
        let span = cx.span();
        span.set_attribute(KeyValue::new(RPC_METHOD, method.to_owned()));
        if method == looptel_engine::OTHER_METHOD {
            span.update_name(looptel_engine::OTHER_METHOD);
            span.set_attribute(KeyValue::new(RPC_METHOD_ORIGINAL, path.to_owned()));
        }
        if self.dup {
            crate::legacy_names(&span, method, end);
        }
    }
}

impl<S, F, P, H, ReqB, ResB> Service<Request<ReqB>> for GrpcServerService<S, F, P, H>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    F: RequestFilter<Request<ReqB>>,
    P: PublicEndpoint<Request<ReqB>>,
    H: RequestHook<Request<ReqB>>,
    ResB: http_body::Body,
{
    type Response = Response<ResponseBody<ResB, GrpcServer, (Option<Ending>, H::State)>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, GrpcServer, (Option<Ending>, H::State)>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let layer = &self.layer;
        let inst = &layer.instrumentation;
        layer.engine.serve(
            &mut self.inner,
            req,
            inst,
            &layer.filter,
            &layer.public,
            &self.hooks,
            |req, start| {
                // The sampler sees the system and the span name: the
                // method, or `_OTHER` (renamed at the end if the router did
                // not know it).
                let name = method_of(req.uri().path(), &layer.services)
                    .unwrap_or(looptel_engine::OTHER_METHOD)
                    .to_owned();
                let builder = SpanBuilder {
                    span_kind: Some(SpanKind::Server),
                    attributes: Some(vec![KeyValue::new(RPC_SYSTEM_NAME, "grpc")]),
                    ..SpanBuilder::from_name(name)
                };
                inst.start_span(start, builder, &mut |span: &mut dyn ObjectSafeSpan| {
                    if span.is_recording() {
                        server_attributes(req.uri(), req.headers(), &mut AttributesOn(span));
                        peer_attributes(req, &mut AttributesOn(span));
                    }
                })
            },
        )
    }
}

/// `network.peer.address` and `network.peer.port`: the connection tonic's
/// server accepted.
fn peer_attributes<B>(req: &Request<B>, out: &mut impl Extend<KeyValue>) {
    #[cfg(feature = "server")]
    use opentelemetry_semantic_conventions::attribute::{NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT};
    #[cfg(feature = "server")]
    if let Some(peer) = req
        .extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
    {
        out.extend([
            KeyValue::new(NETWORK_PEER_ADDRESS, peer.ip().to_string()),
            KeyValue::new(NETWORK_PEER_PORT, i64::from(peer.port())),
        ]);
    }
    #[cfg(not(feature = "server"))]
    let _ = (req, out);
}
