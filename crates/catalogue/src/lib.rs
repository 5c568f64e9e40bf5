//! The names looptel emits, in one place, so that what reads them — the SLO
//! rule generator, the alert retrospection service, dashboards — reads
//! exactly what the services write.
//!
//! - [`metrics`]: every instrument (name, unit, kind, labels) and the
//!   duration buckets, by the semantic conventions;
//! - [`prometheus`]: the OpenTelemetry-to-Prometheus naming rule
//!   (`http.server.request.duration` + `s` →
//!   `http_server_request_duration_seconds`);
//! - [`logs`]: the JSON log line's field names;
//! - [`exemplars`]: the exemplar label keys;
//! - [`alerts`]: the labels and annotations every alert carries, and the
//!   burn-rate windows.
//!
//! It depends on nothing but the semantic-conventions constants.
//!
//! # Example
//!
//! ```
//! use looptel_catalogue::metrics::HTTP_SERVER_REQUEST_DURATION as D;
//!
//! assert_eq!(D.prometheus_name(), "http_server_request_duration_seconds");
//! assert_eq!(D.prometheus_label_names()[0], "http_request_method");
//! ```

pub mod alerts;
pub mod metrics;
pub mod prometheus;

/// The field names of a JSON log line (CONVENTIONS: Logs).
pub mod logs {
    /// RFC 3339, UTC.
    pub const TIMESTAMP: &str = "timestamp";
    /// `TRACE` … `ERROR`.
    pub const LEVEL: &str = "level";
    /// The event's message.
    pub const MESSAGE: &str = "message";
    /// The `tracing` target.
    pub const TARGET: &str = "target";
    /// The span's trace id, 32 lowercase hex digits, as exported.
    pub const TRACE_ID: &str = "trace_id";
    /// The span's id, 16 lowercase hex digits, as exported.
    pub const SPAN_ID: &str = "span_id";
    /// `service.name`.
    pub const SERVICE_NAME: &str = opentelemetry_semantic_conventions::resource::SERVICE_NAME;
    /// `service.version`.
    pub const SERVICE_VERSION: &str = opentelemetry_semantic_conventions::resource::SERVICE_VERSION;
    /// `deployment.environment`, as CONVENTIONS names it.
    pub const DEPLOYMENT_ENVIRONMENT: &str = "deployment.environment";
    /// The tenant, from promoted baggage.
    pub const TENANT_ID: &str = "tenant.id";
    /// A user id: hashed or masked, never plain.
    pub const USER_ID: &str = "user.id";
    /// What a field that was never configured says.
    pub const UNKNOWN: &str = "unknown";
}

/// The label keys of an OpenMetrics exemplar.
pub mod exemplars {
    /// The sampled span's trace id.
    pub const TRACE_ID: &str = "trace_id";
    /// The sampled span's id.
    pub const SPAN_ID: &str = "span_id";
}
