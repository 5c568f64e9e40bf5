//! Shared pieces of looptel that every signal builds on, for any carrier
//! (HTTP headers, gRPC metadata, message headers). The request engine the
//! transports' layers are presets on is `looptel-engine`; the names they
//! emit are in `looptel-catalogue`.
//!
//! - [`ServiceInfo`]: who is speaking — `service.name`, `service.version`,
//!   `deployment.environment` — resolved once by the bootstrap and handed to
//!   the logs layer and the metrics registry.
//! - [`Propagator`]: the text-map propagator handle, built once at start-up and
//!   cloned into layers, so no request looks up a global.
//! - [`Instrumentation`]: the tracer and propagator a layer holds;
//!   extraction with the trust rule and the unsampled shortcut
//!   ([`extract_request`](Instrumentation::extract_request) for HTTP
//!   headers, [`extract`](Instrumentation::extract) for any carrier) and
//!   [`SpanStart`] — a parent, or a new root with links.
//! - [`Outcome`]: how an operation ended (success, business error, failure),
//!   which spans, metrics and logs agree on; [`ErrorOutcome`] lets an error
//!   type say its own, and [`Operation`] turns a business operation's
//!   result into its span status, `error.type` and log line.
//! - [`TraceIds`]: the trace and span id of the current span, as exported.
//!
//! # Example
//!
//! ```
//! use looptel_core::{Outcome, ServiceInfo};
//!
//! let service = ServiceInfo::new("order-service")
//!     .with_version("1.4.2")
//!     .with_environment("staging");
//! assert_eq!(service.name(), "order-service");
//!
//! // A rejected order is the caller's fault: logged at WARN, span status unset.
//! assert_eq!(Outcome::BusinessError.level(), tracing::Level::WARN);
//! assert_eq!(Outcome::Failure.level(), tracing::Level::ERROR);
//! ```

pub mod baggage;
mod headers;
mod ids;
mod instrumentation;
mod method;
mod operation;
mod outcome;
pub mod pii;
mod promotion;
mod propagation;
mod semconv;
mod service;
pub mod tracecontext;

pub use headers::{
    HeaderExtractor, HeaderInjector, MAX_MESSAGE_HEADER_VALUE, MessageHeaderExtractor,
};
pub use ids::TraceIds;
pub use instrumentation::{
    DEFAULT_REQUEST_VALUE_LIMIT, Extracted, Instrumentation, SCOPE, SpanStart, bounded,
};
pub use method::{METHODS, OTHER_METHOD, method_index, normalize_method};
pub use operation::{Operation, OperationNameError};
pub use outcome::{ErrorOutcome, Outcome};
pub use promotion::BaggagePromotion;
pub use propagation::Propagator;
pub use semconv::{OTEL_SEMCONV_STABILITY_OPT_IN, SemconvOptIn};
pub use service::ServiceInfo;

/// The OpenTelemetry API crate this version of looptel is built against,
/// re-exported so users name exactly one version.
pub use opentelemetry;
