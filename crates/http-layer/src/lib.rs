//! Tower layers that trace HTTP servers (axum, hyper) and clients by the
//! OpenTelemetry semantic conventions, with W3C Trace Context propagation
//! that follows the specification to the letter.
//!
//! - [`server::ServerLayer`]: extracts the caller's context, one SERVER span
//!   per request (`GET /orders/{id}`), status by the conventions, optional
//!   `traceparent` in the response, a filter for health checks, and a
//!   public-endpoint rule for trust boundaries.
//! - [`client::ClientLayer`]: one CLIENT span per outgoing request, context
//!   injected into its headers; with the `reqwest` feature,
//!   [`reqwest::TracingMiddleware`] does the same for `reqwest`.
//!
//! Both take a [`looptel_core::Instrumentation`] — the tracer and propagator
//! built once at start-up (`TelemetryGuard::instrumentation()`); nothing is
//! looked up per request.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use looptel_core::{Instrumentation, Propagator};
//! use looptel_http_layer::server::{ServerLayer, skip_paths};
//! # use opentelemetry_sdk::trace::SdkTracerProvider;
//! # let provider = SdkTracerProvider::builder().build();
//! let inst = Instrumentation::new(&provider, Propagator::default());
//! let app: Router = Router::new()
//!     .route("/orders/{id}", get(|| async { "order" }))
//!     .layer(ServerLayer::new(inst).filter(skip_paths(["/health"])));
//! ```
//!
//! # Features
//! - `axum` (default): the route from axum's `MatchedPath`, the peer from
//!   `ConnectInfo`.
//! - `reqwest`: [`reqwest::TracingMiddleware`] for `reqwest-middleware`.

mod attributes;
pub mod client;
#[cfg(feature = "reqwest")]
pub mod reqwest;
pub mod server;

pub use client::ClientLayer;
pub use looptel_engine::ResponseBody;
pub use server::ServerLayer;
