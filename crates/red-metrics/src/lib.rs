//! RED metrics — Rate, Errors, Duration — with exemplars that work.
//!
//! Histograms and counters record with atomics only (no lock per
//! observation); each bucket keeps the trace id and span id of a sampled
//! observation as its exemplar, so a click on a latency spike lands on the
//! trace that caused it. The registry encodes OpenMetrics 1.0 (with
//! exemplars) or Prometheus text 0.0.4, as the scraper asks.

mod exemplar;
mod family;
mod metrics;
mod registry;

pub use exemplar::Exemplar;
pub use family::{DEFAULT_MAX_SERIES, Family, OVERFLOW_LABEL};
pub use metrics::{Counter, DURATION_BUCKETS, Gauge, Histogram};
pub use registry::{
    Collector, Format, Metric, OPENMETRICS_CONTENT_TYPE, OVERFLOW_COUNTER, PROMETHEUS_CONTENT_TYPE,
    Registry,
};
