//! The server layer: one SERVER span per call, from the request to the end
//! of the response stream, with the status from the trailers.

use http::{Request, Uri};
use looptel_core::{Instrumentation, SpanStart};
use looptel_engine::{
    AttributesOn, Classification, Deadline, Derived, GrpcServer, HookState, RequestHook,
    RpcServices, ServerPreset, ServiceNames, method_of, rpc_method_label, server_attributes,
};
use opentelemetry::KeyValue;
use opentelemetry::global::ObjectSafeSpan;
use opentelemetry::trace::{SpanBuilder, SpanKind, TraceContextExt};
use opentelemetry_semantic_conventions::attribute::{
    RPC_METHOD, RPC_METHOD_ORIGINAL, RPC_SYSTEM_NAME,
};

use crate::SkipServices;

/// Traces each call of a tonic server; see the [crate docs](crate).
///
/// The engine's [`ServerLayer`](looptel_engine::ServerLayer) with the
/// [`Grpc`] preset: `filter` (default: all but `grpc.health.v1.Health`),
/// `public_endpoint`, `hook` (RED metrics, the baggage edge, inside the
/// span, ending with the response stream) and `services` (the services
/// the server has: calls to others are `_OTHER`; without it, a call the
/// router answers UNIMPLEMENTED is `_OTHER`).
pub type GrpcServerLayer<F = SkipServices, P = (), H = ()> =
    looptel_engine::ServerLayer<Grpc, F, P, H>;

/// The service built by [`GrpcServerLayer`].
pub type GrpcServerService<S, F = SkipServices, P = (), H = ()> =
    looptel_engine::Server<S, Grpc, F, P, H>;

/// The gRPC naming of the engine's server layer: span named by the
/// method (`_OTHER` for methods the server does not have, renamed at the
/// end if the router did not know it), `rpc.system.name`, the server and
/// peer addresses, classified by [`GrpcServer`] from the trailers.
#[derive(Clone, Debug, Default)]
pub struct Grpc {
    services: RpcServices,
}

impl ServiceNames for Grpc {
    fn set_services(&mut self, services: RpcServices) {
        self.services = services;
    }
}

impl ServerPreset for Grpc {
    type Classifier = GrpcServer;
    type Filter = SkipServices;
    type Own = MethodAtEnd;

    fn classifier(&self) -> GrpcServer {
        GrpcServer
    }

    fn default_filter(&self) -> SkipServices {
        crate::skip_services([crate::HEALTH_SERVICE])
    }

    fn own_hook(&self, instrumentation: &Instrumentation) -> MethodAtEnd {
        MethodAtEnd {
            services: self.services.clone(),
            dup: instrumentation.semconv().rpc_dup(),
        }
    }

    fn derive<'r, B>(&'r self, request: &'r Request<B>) -> Derived<'r> {
        Derived::of(request).with_services(&self.services)
    }

    fn start_span<B>(
        &self,
        req: &Request<B>,
        _: &Derived<'_>,
        start: SpanStart,
        inst: &Instrumentation,
    ) -> opentelemetry::Context {
        // The sampler sees the system and the span name: the method, or
        // `_OTHER` (renamed at the end if the router did not know it).
        let name = method_of(req.uri().path(), &self.services)
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
    }
}

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
    fn start(
        &self,
        request: &Request<B>,
        _: &Derived<'_>,
        cx: &mut opentelemetry::Context,
    ) -> Self::State {
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
