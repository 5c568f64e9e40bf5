//! The request engine every looptel transport is a preset on.
//!
//! A transport's layer (HTTP server and client, gRPC server and client,
//! messaging) decides the context and starts the span; the engine does the
//! rest, the same way for all of them:
//!
//! - [`RequestHook`]s — types or closures — start with the span and end
//!   with the request; RED metrics and the baggage edge are hooks.
//! - [`Engine::call`] attaches the context, calls the inner service (a
//!   panic in `call` included) and returns the [`ResponseFuture`], which
//!   catches a panicking handler and answers it as the classifier says.
//! - [`ResponseBody`] ends the call exactly once: at the last frame (the
//!   trailers' `grpc-status` when the head had none), when the body fails,
//!   or when it is dropped.
//! - One classifier, [`Classify`] with presets [`HttpServer`],
//!   [`HttpClient`], [`GrpcServer`], [`GrpcClient`] and [`Messaging`],
//!   turns the head or the trailers into one [`Classification`] — outcome,
//!   protocol status, `error.type` — that the span, the metrics, the logs
//!   and the hooks all read.
//! - [`Call`]: the same ending for transports without a response future,
//!   and [`begin`]: the same start — messaging's `process`, `send` and
//!   settlements start and end their calls as the server layers do, with
//!   hooks of [`MessageOp`]s ([`MessageHook`]).
//! - [`ServerLayer`]: the server layer, once — its builder, type-state,
//!   `Layer` and `call` — with each transport a [`ServerPreset`] (the HTTP
//!   and gRPC layers are this layer with their preset).
//! - [`HookLayer`]: any hook as a layer of its own.
//! - [`RequestFilter`] and [`PublicEndpoint`]: which requests are traced,
//!   and the one trust rule, given to the layer that runs the hooks; its
//!   decision reaches them in [`Derived`], with what the layer read off the
//!   request (method, route, services), so nothing is derived twice.
//! - [`HttpFacts`] and [`matched_route`]: what the conventions read off an
//!   HTTP request, derived the same way for spans and metrics.
//!
//! # Features
//! - `axum`: [`matched_route`] reads axum's `MatchedPath`.
//!
//! # Example
//!
//! ```
//! use looptel_engine::{Classification, HookLayer, HttpServer};
//! use std::sync::{Arc, Mutex};
//! use tower::{ServiceBuilder, ServiceExt};
//! use http_body_util::BodyExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let ended = Arc::new(Mutex::new(Vec::new()));
//! let log = ended.clone();
//! let svc = ServiceBuilder::new()
//!     .layer(HookLayer::new(move |_: &http::Request<String>, _: &mut opentelemetry::Context| {
//!         let log = log.clone();
//!         move |end: &Classification, _: &opentelemetry::Context| {
//!             log.lock().unwrap().push(end.http_status());
//!         }
//!     }))
//!     .service_fn(|_req: http::Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
//!     });
//! let res = svc.oneshot(http::Request::new(String::new())).await.unwrap();
//! assert!(ended.lock().unwrap().is_empty(), "the call ends with its body");
//! res.into_body().collect().await.unwrap();
//! assert_eq!(*ended.lock().unwrap(), [Some(http::StatusCode::OK)]);
//! # }
//! ```

mod body;
mod call;
mod classify;
mod derived;
mod facts;
mod filter;
mod future;
mod grpc;
mod hook;
mod layer;
mod message;
mod server;

pub use body::ResponseBody;
pub use call::Call;
pub use classify::{
    Classification, Classify, ClassifyError, GrpcClient, GrpcServer, HttpClient, HttpServer,
    Messaging, ProtocolStatus, transport_error_class,
};
pub use derived::{Derive, Derived};
pub use facts::{
    AttributesOn, HttpFacts, PROTOCOL_VERSIONS, Route, SCHEMES, matched_route, server_attributes,
};
pub use filter::{
    AllPublic, And, FilterExt, Not, Or, PublicEndpoint, RequestFilter, SkipPaths, Untraced,
    skip_paths,
};
pub use future::{Engine, Relation, ResponseFuture, begin};
pub use grpc::{
    Deadline, GRPC_STATUS, GRPC_TIMEOUT, GrpcCode, OTHER_METHOD, RpcServices, method_of,
    parse_grpc_timeout, rpc_method, rpc_method_label,
};
pub use hook::{Base, CallEvent, HookState, RequestHook};
pub use layer::{HookLayer, Hooked};
pub use looptel_core::ErrorOutcome;
pub use message::{MessageHook, MessageOp, SpanAttributes};
pub use server::{Server, ServerHooksState, ServerLayer, ServerPreset, ServiceNames};

/// `get_ref`, `get_mut` and `into_inner` for a service with an `inner`
/// field: the one copy of this boilerplate for looptel's services.
#[doc(hidden)]
#[macro_export]
macro_rules! service_accessors {
    ($name:ident < $inner:ident $(, $param:ident)* >) => {
        impl<$inner $(, $param)*> $name<$inner $(, $param)*> {
            /// The wrapped service.
            pub fn get_ref(&self) -> &$inner {
                &self.inner
            }

            /// The wrapped service, mutably.
            pub fn get_mut(&mut self) -> &mut $inner {
                &mut self.inner
            }

            /// Unwraps the service.
            pub fn into_inner(self) -> $inner {
                self.inner
            }
        }
    };
}
