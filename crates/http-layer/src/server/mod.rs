//! The server layer: one SERVER span per request, named and attributed by
//! the HTTP semantic conventions.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use looptel_core::{Instrumentation, Propagator};
//! use looptel_http_layer::server::{ServerLayer, skip_paths};
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//!
//! let provider = SdkTracerProvider::builder().build();
//! let inst = Instrumentation::new(&provider, Propagator::default());
//! let app: Router = Router::new()
//!     .route("/orders/{id}", get(|| async { "order" }))
//!     .route("/health", get(|| async { "ok" }))
//!     // `Router::layer` runs after routing, so the span knows the route.
//!     .layer(
//!         ServerLayer::new(inst)
//!             .filter(skip_paths(["/health"]))
//!             .response_traceparent(true),
//!     );
//! ```
//!
//! # What the span holds
//! - Name `{method} {http.route}`, `{method}` when no route matched, `HTTP`
//!   for methods the conventions do not know (then `http.request.method` is
//!   `_OTHER` and `http.request.method_original` holds the method). The raw
//!   path never appears in the name, nor in `http.route`.
//! - `http.request.method`, `url.path`, `url.scheme`, `url.query`,
//!   `http.route` (only when known), `network.protocol.version`,
//!   `server.address`/`server.port`, `client.address`,
//!   `user_agent.original`, then `http.response.status_code`.
//! - Status Error only for 5xx, with `error.type` set to the status code; a
//!   4xx stays Unset. A service error sets `error.type` to its type. A
//!   handler that panics is answered with a 500 and recorded as one, with an
//!   `exception` event. A client that goes away mid-request ends the span
//!   without an error.
//! - The span ends when the response body ends, so streaming responses are
//!   timed whole.
//!
//! # Outside the router
//! When `ServerLayer` wraps the whole app (a `ServiceBuilder` around the
//! `Router`), the route is not known when the span starts; add
//! [`RouteLayer`] inside the router and the span is renamed once the route
//! has matched.
//!
//! # Layer order
//! RED metrics and the baggage edge are best added as the server layer's
//! [hooks](ServerLayer::hook): they then run inside its span in the order
//! given, end with the response body, and share one future and one body
//! wrapper — there is no order to get wrong. Inside the handler,
//! `opentelemetry::Context::current()` — and so every `tracing` span and
//! JSON log line — belongs to the request's trace.
//!
//! Stacked as layers of their own instead (for a stack looptel does not
//! build), put `ServerLayer` outermost so they find its span as the current
//! context, and give axum one `Router::layer` call: it boxes each layer it
//! is given separately, at a cost on every request.
//!
//! ```
//! # use looptel_core::{Instrumentation, Propagator};
//! # use looptel_http_layer::server::ServerLayer;
//! # let inst = Instrumentation::disabled(Propagator::default());
//! use tower::ServiceBuilder;
//! let stack = ServiceBuilder::new()
//!     .layer(ServerLayer::new(inst)); // outermost: extract context, start the span
//!     // .layer(red_metrics)          // then metrics, which read the span for exemplars
//!     // .layer(baggage_edge)         // then business context
//! # let _ = stack;
//! ```

mod layer;
#[cfg(feature = "axum")]
mod route;
mod service;

pub use layer::{Server, ServerLayer};
pub use looptel_engine::{
    AllPublic, And, FilterExt, Not, Or, PublicEndpoint, RequestFilter, ResponseFuture, SkipPaths,
    Untraced, skip_paths,
};
#[cfg(feature = "axum")]
pub use route::{Route, RouteLayer};
pub use service::Http;
