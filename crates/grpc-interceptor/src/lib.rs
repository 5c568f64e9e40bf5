//! Tower layers for tonic servers and clients that read the real status.
//!
//! - [`GrpcServerLayer`]: one SERVER span per call, named by its method
//!   (`inventory.v1.StockService/ReserveItem`), from the request to the end
//!   of the response stream; the status read from the response headers
//!   (Trailers-Only) or from the trailers at the end of the stream, so an
//!   error sent after streamed messages is recorded as that error; Error
//!   only for UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
//!   UNAVAILABLE and DATA_LOSS; a client that cancels is CANCELLED, not an
//!   error; a handler panic is INTERNAL with an `exception` event; methods
//!   the server does not have are `_OTHER` with `rpc.method_original`. The
//!   health service is skipped by default ([`skip_services`]).
//! - [`GrpcClientLayer`]: one CLIENT span per call, the context injected
//!   into the metadata exactly once, every non-OK status an error,
//!   `server.address`/`server.port` from the channel's target.
//! - [`inject_context`]: a plain tonic interceptor for clients that only
//!   propagate.
//!
//! Both are presets on `looptel-engine` (its future, end-of-stream body
//! wrapper and gRPC classifiers) and take hooks as the HTTP layers do.
//!
//! # Example
//!
//! ```no_run
//! use looptel_core::{Instrumentation, Propagator};
//! use looptel_grpc_interceptor::{GrpcClientLayer, GrpcServerLayer};
//! # async fn run(inst: Instrumentation) -> Result<(), Box<dyn std::error::Error>> {
//! let (_, health) = tonic_health::server::health_reporter();
//! tonic::transport::Server::builder()
//!     .layer(GrpcServerLayer::new(inst.clone()))
//!     .add_service(health)
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//!
//! let channel = tonic::transport::Channel::from_static("http://127.0.0.1:50051").connect().await?;
//! let channel = tower::ServiceBuilder::new().layer(GrpcClientLayer::new(inst)).service(channel);
//! let _client = tonic_health::pb::health_client::HealthClient::new(channel);
//! # Ok(()) }
//! ```

mod client;
mod server;

pub use client::{GrpcClientLayer, GrpcClientService, LegacyEnding, StatusAtEnd, inject_context};
pub use looptel_engine::{OTHER_METHOD, rpc_method};
pub use server::{Ending, Grpc, GrpcServerLayer, GrpcServerService, MethodAtEnd};

use std::sync::Arc;

use http::Request;
use looptel_catalogue::metrics::legacy_rpc;
use looptel_engine::{Classification, RequestFilter};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanRef;

/// The gRPC health-checking service, skipped by default.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// Skips calls to the listed services (the health service by default).
#[derive(Clone, Debug)]
pub struct SkipServices(Arc<[Box<str>]>);

/// Skips calls to the services named (`grpc.health.v1.Health`).
///
/// ```
/// use looptel_engine::RequestFilter;
/// use looptel_grpc_interceptor::skip_services;
/// let f = skip_services(["grpc.health.v1.Health"]);
/// let check = http::Request::post("/grpc.health.v1.Health/Check").body(()).unwrap();
/// assert!(!f.traced(&check));
/// ```
pub fn skip_services<I, S>(services: I) -> SkipServices
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    SkipServices(
        services
            .into_iter()
            .map(|s| s.into().into_boxed_str())
            .collect(),
    )
}

impl<B> RequestFilter<Request<B>> for SkipServices {
    fn traced(&self, request: &Request<B>) -> bool {
        let service = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .map(|(service, _)| service);
        !service.is_some_and(|s| self.0.iter().any(|k| **k == *s))
    }
}

/// The pre-1.39 names of a call's span, beside the current ones
/// (`OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup`): `rpc.system`, `rpc.service`
/// (the service of `method`, none for `_OTHER`), `rpc.grpc.status_code` as
/// a number. `rpc.method` keeps its current value, the full method.
fn legacy_names(span: &SpanRef<'_>, method: &str, end: &Classification) {
    span.set_attribute(KeyValue::new(legacy_rpc::RPC_SYSTEM, "grpc"));
    if let Some((service, _)) = method.split_once('/') {
        span.set_attribute(KeyValue::new(legacy_rpc::RPC_SERVICE, service.to_owned()));
    }
    if let Some(code) = end.grpc_code() {
        span.set_attribute(KeyValue::new(
            legacy_rpc::RPC_GRPC_STATUS_CODE,
            i64::from(code.as_i32()),
        ));
    }
}
