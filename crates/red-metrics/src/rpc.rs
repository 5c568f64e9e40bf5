//! gRPC call durations as hooks of the gRPC layers.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Uri};
use looptel_core::TraceIds;
use looptel_engine::{
    Classification, Derived, GrpcCode, HookState, RequestHook, RpcServices, rpc_method_label,
};

use crate::metric::Metric;
use crate::metrics::Histogram;
use crate::resolved::ResolvedSeries;

/// The hook that records `rpc.server.call.duration` for each call of a
/// gRPC server layer (`GrpcServerLayer::hook`), from the start of its span
/// to the end of its stream, with the span as exemplar when sampled. From
/// [`RpcMetrics::server_hook`](crate::RpcMetrics::server_hook).
///
/// Calls to services the layer was not told of (its `services`) are
/// `_OTHER`: the list is the layer's, read through [`Derived`].
#[derive(Clone, Debug)]
pub struct RpcServerMetrics {
    pub(crate) duration: Arc<ResolvedSeries<Option<GrpcCode>>>,
    pub(crate) legacy: Option<Arc<Metric<Histogram>>>,
}

/// The hook that records `rpc.client.call.duration` for each call of a
/// gRPC client layer (`GrpcClientLayer::hook`). From
/// [`RpcMetrics::client_hook`](crate::RpcMetrics::client_hook).
#[derive(Clone, Debug)]
pub struct RpcClientMetrics {
    pub(crate) duration: Arc<Metric<Histogram>>,
    pub(crate) legacy: Option<Arc<Metric<Histogram>>>,
}

/// The pre-1.39 histograms (`rpc/dup`).
#[derive(Clone, Debug)]
pub(crate) struct Legacy {
    pub(crate) server: Arc<Metric<Histogram>>,
    pub(crate) client: Arc<Metric<Histogram>>,
}

/// A call being timed.
#[derive(Debug)]
pub struct RpcRecording {
    side: Side,
    uri: Uri,
    start: Instant,
    legacy: Option<Arc<Metric<Histogram>>>,
}

/// Whose call: a server's (its series found again by method and code, its
/// known services) or a client's.
#[derive(Debug)]
enum Side {
    Server(Arc<ResolvedSeries<Option<GrpcCode>>>, RpcServices),
    Client(Arc<Metric<Histogram>>),
}

impl<B> RequestHook<Request<B>> for RpcServerMetrics {
    type State = RpcRecording;

    fn start(
        &self,
        request: &Request<B>,
        derived: &Derived<'_>,
        _: &mut opentelemetry::Context,
    ) -> RpcRecording {
        let services = derived.rpc_services().cloned().unwrap_or_default();
        RpcRecording {
            side: Side::Server(self.duration.clone(), services),
            uri: request.uri().clone(),
            start: Instant::now(),
            legacy: self.legacy.clone(),
        }
    }
}

impl<B> RequestHook<Request<B>> for RpcClientMetrics {
    type State = RpcRecording;

    fn start(
        &self,
        request: &Request<B>,
        _: &Derived<'_>,
        _: &mut opentelemetry::Context,
    ) -> RpcRecording {
        RpcRecording {
            side: Side::Client(self.duration.clone()),
            uri: request.uri().clone(),
            start: Instant::now(),
            legacy: self.legacy.clone(),
        }
    }
}

impl HookState for RpcRecording {
    fn end(self, end: &Classification, cx: &opentelemetry::Context) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let path = self.uri.path();
        let any = RpcServices::default();
        let (services, server) = match &self.side {
            Side::Server(_, services) => (services, None),
            Side::Client(_) => (&any, Some(host_port(self.uri.authority()))),
        };
        let method = rpc_method_label(path, services, end);
        if let Some(legacy) = &self.legacy {
            record_legacy(legacy, method, end, server.as_ref(), elapsed, cx);
        }
        let status = end.grpc_code().map_or("", looptel_engine::GrpcCode::name);
        let error_type = end.error_type().unwrap_or("");
        let ids = TraceIds::from_context(cx);
        match &self.side {
            Side::Server(duration, _) => {
                // The error type follows from the code; a service error
                // (no code, named by type) is looked up by its labels.
                let code = end.grpc_code();
                let labels = || ["grpc", method, status, error_type];
                duration.observe(method, code.map(Some), labels, elapsed, ids);
            }
            Side::Client(duration) => {
                // A client calls its own generated paths: any well-formed
                // one is a method. The server is the channel's target.
                let (host, port) = server.unwrap_or_default();
                duration.with(&["grpc", method, status, error_type, host, &port], |h| {
                    h.observe(elapsed, ids);
                });
            }
        }
    }
}

/// The server a client called: the channel's target.
fn host_port(authority: Option<&http::uri::Authority>) -> (&str, String) {
    let (host, port) = authority.map_or(("", None), |a| (a.host(), a.port_u16()));
    (host, port.map(|p| p.to_string()).unwrap_or_default())
}

/// `rpc.server.duration` / `rpc.client.duration` in milliseconds, with the
/// pre-1.39 labels: the service and the bare method apart, the code as its
/// number (`rpc/dup`). A client's also names the server.
fn record_legacy(
    legacy: &Metric<Histogram>,
    method: &str,
    end: &Classification,
    server: Option<&(&str, String)>,
    elapsed: f64,
    cx: &opentelemetry::Context,
) {
    let (service, bare) = method.split_once('/').unwrap_or(("", method));
    let code = end
        .grpc_code()
        .map(|c| c.as_i32().to_string())
        .unwrap_or_default();
    let ids = TraceIds::from_context(cx);
    let ms = elapsed * 1000.0;
    let observe = |h: &Histogram| h.observe(ms, ids);
    if let Some((host, port)) = server {
        legacy.with(&["grpc", service, bare, &code, host, port], observe);
    } else {
        legacy.with(&["grpc", service, bare, &code], observe);
    }
}
