//! Instruments for the other crates (HTTP client, gRPC, messaging) and for
//! business metrics; each records the current sampled span as its exemplar.

use std::sync::Arc;

use looptel_core::TraceIds;

use crate::metrics::{Counter, DURATION_BUCKETS, Gauge, Histogram};
use crate::registry::{Metric, Registry};

impl Metric<Counter> {
    /// Adds one; the current span becomes the exemplar when sampled.
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    /// Adds `n`; the current span becomes the exemplar when sampled.
    pub fn add(&self, values: &[&str], n: u64) {
        let ids = TraceIds::current();
        self.with(values, |c| c.add(n, ids));
    }
}

impl Metric<Histogram> {
    /// Records `value`; the current span becomes the bucket's exemplar when
    /// sampled.
    pub fn record(&self, values: &[&str], value: f64) {
        let ids = TraceIds::current();
        self.with(values, |h| h.observe(value, ids));
    }
}

impl Metric<Gauge> {
    /// Adds `n` (may be negative).
    pub fn add(&self, values: &[&str], n: i64) {
        self.with(values, |g| g.add(n));
    }

    /// Sets the value.
    pub fn set(&self, values: &[&str], v: i64) {
        self.with(values, |g| g.set(v));
    }
}

/// `http.client.request.duration`, labelled `http.request.method`,
/// `url.scheme`, `http.response.status_code`, `error.type`,
/// `network.protocol.version`.
#[derive(Clone, Debug)]
pub struct HttpClientMetrics {
    /// The duration histogram.
    pub duration: Arc<Metric<Histogram>>,
}

impl HttpClientMetrics {
    /// Registers the instrument.
    pub fn new(registry: &Registry) -> Self {
        Self {
            duration: registry.histogram(
                "http.client.request.duration",
                "s",
                "Duration of HTTP client requests.",
                &[
                    "http.request.method",
                    "url.scheme",
                    "http.response.status_code",
                    "error.type",
                    "network.protocol.version",
                ],
                DURATION_BUCKETS,
            ),
        }
    }
}

/// The labels of the RPC durations.
pub const RPC_LABELS: &[&str] = &[
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "rpc.grpc.status_code",
];

/// `rpc.server.call.duration` and `rpc.client.call.duration`.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    /// Server calls.
    pub server: Arc<Metric<Histogram>>,
    /// Client calls.
    pub client: Arc<Metric<Histogram>>,
}

impl RpcMetrics {
    /// Registers the instruments.
    pub fn new(registry: &Registry) -> Self {
        Self {
            server: registry.histogram(
                "rpc.server.call.duration",
                "s",
                "Duration of RPC server calls.",
                RPC_LABELS,
                DURATION_BUCKETS,
            ),
            client: registry.histogram(
                "rpc.client.call.duration",
                "s",
                "Duration of RPC client calls.",
                RPC_LABELS,
                DURATION_BUCKETS,
            ),
        }
    }
}

/// The labels of the messaging instruments.
pub const MESSAGING_LABELS: &[&str] = &[
    "messaging.system",
    "messaging.operation.name",
    "messaging.destination.name",
    "error.type",
];

/// The messaging instruments: operation and process durations, sent and
/// consumed messages.
#[derive(Clone, Debug)]
pub struct MessagingMetrics {
    /// `messaging.client.operation.duration`.
    pub operation_duration: Arc<Metric<Histogram>>,
    /// `messaging.process.duration`.
    pub process_duration: Arc<Metric<Histogram>>,
    /// `messaging.client.sent.messages`.
    pub sent: Arc<Metric<Counter>>,
    /// `messaging.client.consumed.messages`.
    pub consumed: Arc<Metric<Counter>>,
}

impl MessagingMetrics {
    /// Registers the instruments.
    pub fn new(registry: &Registry) -> Self {
        Self {
            operation_duration: registry.histogram(
                "messaging.client.operation.duration",
                "s",
                "Duration of messaging operations (send, receive, settle).",
                MESSAGING_LABELS,
                DURATION_BUCKETS,
            ),
            process_duration: registry.histogram(
                "messaging.process.duration",
                "s",
                "Duration of processing a message.",
                MESSAGING_LABELS,
                DURATION_BUCKETS,
            ),
            sent: registry.counter(
                "messaging.client.sent.messages",
                "{message}",
                "Messages sent.",
                MESSAGING_LABELS,
            ),
            consumed: registry.counter(
                "messaging.client.consumed.messages",
                "{message}",
                "Messages consumed.",
                MESSAGING_LABELS,
            ),
        }
    }
}
