//! Business context across services in W3C Baggage — the classic
//! multi-tenant case: the edge puts `tenant.id` into baggage, and every
//! downstream service sees it on its spans and in its logs without passing
//! it by hand.
//!
//! - [`BaggagePolicy`]: built once and typed — which keys are promoted to
//!   span attributes and log fields, which are never propagated (personal
//!   data, secrets), a byte budget, and a naming check; plus
//!   [`get`](BaggagePolicy::get)/[`set`](BaggagePolicy::set) for handlers.
//! - [`EdgeLayer`]: the trust boundary (drop inbound baggage from untrusted
//!   callers), business members from the request, promotion onto the server
//!   span.
//! - The propagator itself is `looptel_core::baggage::BaggagePropagator`,
//!   faithful to the W3C specification up to 64 members and 8192 bytes.
//!
//! # Wiring
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use looptel_baggage::{BaggagePolicy, EdgeLayer, from_header};
//! use looptel_http_layer::server::ServerLayer;
//! use looptel_telemetry::Telemetry;
//!
//! let policy = BaggagePolicy::builder().promote(["tenant.id"]).build();
//! let telemetry = Telemetry::from_env()
//!     .service_name("order-service")
//!     .promote_baggage(policy.promotion())   // onto every span and log line
//!     .baggage_policy(policy.inject_policy()) // deny-list and budget on the way out
//!     .init()?;
//! let app: axum::Router = axum::Router::new()
//!     .route("/orders", axum::routing::post(|| async { "ok" }))
//!     .layer(EdgeLayer::new(policy).members(from_header(
//!         http::HeaderName::from_static("x-tenant-id"),
//!         "tenant.id",
//!     )))
//!     .layer(ServerLayer::new(telemetry.instrumentation()));
//! # let _ = app; Ok(()) }
//! ```

mod edge;
mod policy;

pub use edge::{EdgeLayer, FromHeader, MembersFromRequest, from_header};
pub use policy::{
    BaggageError, BaggagePolicy, BaggagePolicyBuilder, BaggageStats, DEFAULT_BUDGET_BYTES,
    is_conventional_key,
};
