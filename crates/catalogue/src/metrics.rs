//! Every instrument looptel records, by the semantic conventions.

use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE,
    MESSAGING_CONSUMER_GROUP_NAME, MESSAGING_DESTINATION_NAME, MESSAGING_DESTINATION_PARTITION_ID,
    MESSAGING_OPERATION_NAME, MESSAGING_SYSTEM, NETWORK_PROTOCOL_NAME, NETWORK_PROTOCOL_VERSION,
    RPC_METHOD, RPC_RESPONSE_STATUS_CODE, RPC_SYSTEM_NAME, SERVER_ADDRESS, SERVER_PORT, URL_SCHEME,
};

use crate::prometheus;

/// The bucket bounds of every duration histogram, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The label a series over the cardinality cap carries (`="true"`).
pub const OVERFLOW_LABEL: &str = "otel.metric.overflow";

/// The counter of records that landed in an overflow series (Prometheus
/// name, without `_total`), labelled `metric`.
pub const OVERFLOW_COUNTER: &str = "looptel_metric_overflow_records";

/// What kind of instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A histogram (`_bucket`, `_sum`, `_count`).
    Histogram,
    /// A monotonic counter (`_total`).
    Counter,
    /// A value that goes up and down (an up-down counter).
    Gauge,
}

/// An instrument: its OpenTelemetry name, unit, kind, description and
/// label keys (in order).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Instrument {
    /// The OpenTelemetry name: `http.server.request.duration`.
    pub name: &'static str,
    /// The UCUM unit: `s`, `{request}`.
    pub unit: &'static str,
    /// The kind.
    pub kind: Kind,
    /// The help text.
    pub description: &'static str,
    /// The label keys, in order.
    pub labels: &'static [&'static str],
}

impl Instrument {
    /// The Prometheus family name: `http_server_request_duration_seconds`
    /// (a counter's samples add `_total`).
    pub fn prometheus_name(&self) -> String {
        prometheus::metric_name(self.name, self.unit).0
    }

    /// The label keys as Prometheus names.
    pub fn prometheus_label_names(&self) -> Vec<String> {
        self.labels
            .iter()
            .map(|k| prometheus::label_name(k))
            .collect()
    }
}

/// `http.server.request.duration`: until the response body ended.
pub const HTTP_SERVER_REQUEST_DURATION: Instrument = Instrument {
    name: "http.server.request.duration",
    unit: "s",
    kind: Kind::Histogram,
    description: "Duration of HTTP server requests, until the response body ended.",
    labels: &[
        HTTP_REQUEST_METHOD,
        URL_SCHEME,
        HTTP_RESPONSE_STATUS_CODE,
        HTTP_ROUTE,
        ERROR_TYPE,
        NETWORK_PROTOCOL_NAME,
        NETWORK_PROTOCOL_VERSION,
    ],
};

/// `http.server.active_requests`: saturation.
pub const HTTP_SERVER_ACTIVE_REQUESTS: Instrument = Instrument {
    name: "http.server.active_requests",
    unit: "{request}",
    kind: Kind::Gauge,
    description: "Number of active HTTP server requests.",
    labels: &[HTTP_REQUEST_METHOD, URL_SCHEME],
};

/// `http.client.request.duration`.
pub const HTTP_CLIENT_REQUEST_DURATION: Instrument = Instrument {
    name: "http.client.request.duration",
    unit: "s",
    kind: Kind::Histogram,
    description: "Duration of HTTP client requests.",
    labels: &[
        HTTP_REQUEST_METHOD,
        URL_SCHEME,
        HTTP_RESPONSE_STATUS_CODE,
        ERROR_TYPE,
        NETWORK_PROTOCOL_VERSION,
    ],
};

/// `rpc.server.call.duration`: until the end of the stream.
pub const RPC_SERVER_CALL_DURATION: Instrument = Instrument {
    name: "rpc.server.call.duration",
    unit: "s",
    kind: Kind::Histogram,
    description: "Duration of RPC server calls, until the end of the stream.",
    labels: &[
        RPC_SYSTEM_NAME,
        RPC_METHOD,
        RPC_RESPONSE_STATUS_CODE,
        ERROR_TYPE,
    ],
};

/// `rpc.client.call.duration`: with the server's address.
pub const RPC_CLIENT_CALL_DURATION: Instrument = Instrument {
    name: "rpc.client.call.duration",
    unit: "s",
    kind: Kind::Histogram,
    description: "Duration of RPC client calls, until the end of the stream.",
    labels: &[
        RPC_SYSTEM_NAME,
        RPC_METHOD,
        RPC_RESPONSE_STATUS_CODE,
        ERROR_TYPE,
        SERVER_ADDRESS,
        SERVER_PORT,
    ],
};

/// The labels of every messaging instrument: names of destinations, never
/// per-message ids.
pub const MESSAGING_LABELS: &[&str] = &[
    MESSAGING_SYSTEM,
    MESSAGING_OPERATION_NAME,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_DESTINATION_PARTITION_ID,
    MESSAGING_CONSUMER_GROUP_NAME,
    ERROR_TYPE,
];

/// `messaging.client.operation.duration`: send, receive, settle.
pub const MESSAGING_CLIENT_OPERATION_DURATION: Instrument = Instrument {
    name: "messaging.client.operation.duration",
    unit: "s",
    kind: Kind::Histogram,
    description: "Duration of messaging operations (send, receive, settle).",
    labels: MESSAGING_LABELS,
};

/// `messaging.process.duration`.
pub const MESSAGING_PROCESS_DURATION: Instrument = Instrument {
    name: "messaging.process.duration",
    unit: "s",
    kind: Kind::Histogram,
    description: "Duration of processing a message.",
    labels: MESSAGING_LABELS,
};

/// `messaging.client.sent.messages`.
pub const MESSAGING_CLIENT_SENT_MESSAGES: Instrument = Instrument {
    name: "messaging.client.sent.messages",
    unit: "{message}",
    kind: Kind::Counter,
    description: "Messages sent.",
    labels: MESSAGING_LABELS,
};

/// `messaging.client.consumed.messages`.
pub const MESSAGING_CLIENT_CONSUMED_MESSAGES: Instrument = Instrument {
    name: "messaging.client.consumed.messages",
    unit: "{message}",
    kind: Kind::Counter,
    description: "Messages consumed.",
    labels: MESSAGING_LABELS,
};

/// `messaging.client.retries`: a consumer's attempts to process a message
/// again after a failure of its own (`messaging_client_retries_total`);
/// `error.type` is the failed attempt's.
pub const MESSAGING_CLIENT_RETRIES: Instrument = Instrument {
    name: "messaging.client.retries",
    unit: "{retry}",
    kind: Kind::Counter,
    description: "Messages processed again after a failed attempt.",
    labels: MESSAGING_LABELS,
};

/// `messaging.dead_lettered`: messages sent to a dead-letter destination
/// (`messaging_dead_lettered_total`), labelled as where they were
/// consumed, with the last attempt's `error.type`.
pub const MESSAGING_DEAD_LETTERED: Instrument = Instrument {
    name: "messaging.dead_lettered",
    unit: "{message}",
    kind: Kind::Counter,
    description: "Messages not processed and sent to a dead-letter destination.",
    labels: MESSAGING_LABELS,
};

/// The label of [`DEPENDENCY_UP`]: the dependency's name (`rabbitmq`,
/// `kafka`, `inventory`), one per client, never per address.
pub const DEPENDENCY: &str = "dependency";

/// `looptel.dependency.up` (`looptel_dependency_up`): 1 while a
/// dependency the service needs is reachable (a consumer: running), 0
/// while not; what `/health/ready` answers from.
pub const DEPENDENCY_UP: Instrument = Instrument {
    name: "looptel.dependency.up",
    unit: "{dependency}",
    kind: Kind::Gauge,
    description: "Whether a dependency is reachable (1) or not (0).",
    labels: &[DEPENDENCY],
};

/// The labels of [`CHANGE_TIME`]: what kind of change (`fault_switch`,
/// `config`, `feature_flag`) and what it set, in a few words.
pub const CHANGE_KIND: &str = "change.kind";
/// See [`CHANGE_KIND`].
pub const CHANGE_WHAT: &str = "change.what";

/// `looptel.change.time` (`looptel_change_time_seconds`): when the
/// service last made a change of this kind to itself (a fault switch set,
/// a configuration reloaded), Unix seconds, one series per kind and
/// description; retro lists those that fall just before a burn.
pub const CHANGE_TIME: Instrument = Instrument {
    name: "looptel.change.time",
    unit: "s",
    kind: Kind::Gauge,
    description: "When the service last changed itself this way, Unix seconds.",
    labels: &[CHANGE_KIND, CHANGE_WHAT],
};

/// The pre-1.39 RPC names, emitted beside the current ones only with
/// `OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup` (the conventions' RPC migration
/// guide); deprecated by the conventions, so not in [`ALL`].
pub mod legacy_rpc {
    #![allow(deprecated)]
    use super::{Instrument, Kind};
    use opentelemetry_semantic_conventions::{attribute, metric};

    /// `rpc.system` (now `rpc.system.name`).
    pub const RPC_SYSTEM: &str = attribute::RPC_SYSTEM;
    /// `rpc.service` (now part of `rpc.method`).
    pub const RPC_SERVICE: &str = attribute::RPC_SERVICE;
    /// `rpc.grpc.status_code`, the code's number (now
    /// `rpc.response.status_code`, its name).
    pub const RPC_GRPC_STATUS_CODE: &str = attribute::RPC_GRPC_STATUS_CODE;

    /// The bucket bounds of the legacy histograms, in milliseconds: the
    /// current ones, scaled.
    pub const DURATION_BUCKETS_MS: &[f64] = &[
        5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
        10000.0,
    ];

    /// `rpc.server.duration` in ms (now `rpc.server.call.duration`), with
    /// the bare method in `rpc.method`.
    pub const RPC_SERVER_DURATION: Instrument = Instrument {
        name: metric::RPC_SERVER_DURATION,
        unit: "ms",
        kind: Kind::Histogram,
        description: "Duration of inbound RPC (pre-1.39 name).",
        labels: &[
            RPC_SYSTEM,
            RPC_SERVICE,
            attribute::RPC_METHOD,
            RPC_GRPC_STATUS_CODE,
        ],
    };

    /// `rpc.client.duration` in ms (now `rpc.client.call.duration`).
    pub const RPC_CLIENT_DURATION: Instrument = Instrument {
        name: metric::RPC_CLIENT_DURATION,
        unit: "ms",
        kind: Kind::Histogram,
        description: "Duration of outbound RPC (pre-1.39 name).",
        labels: &[
            RPC_SYSTEM,
            RPC_SERVICE,
            attribute::RPC_METHOD,
            RPC_GRPC_STATUS_CODE,
            attribute::SERVER_ADDRESS,
            attribute::SERVER_PORT,
        ],
    };
}

/// Every instrument above.
pub const ALL: &[Instrument] = &[
    HTTP_SERVER_REQUEST_DURATION,
    HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_CLIENT_REQUEST_DURATION,
    RPC_SERVER_CALL_DURATION,
    RPC_CLIENT_CALL_DURATION,
    MESSAGING_CLIENT_OPERATION_DURATION,
    MESSAGING_PROCESS_DURATION,
    MESSAGING_CLIENT_SENT_MESSAGES,
    MESSAGING_CLIENT_CONSUMED_MESSAGES,
    MESSAGING_CLIENT_RETRIES,
    MESSAGING_DEAD_LETTERED,
    DEPENDENCY_UP,
    CHANGE_TIME,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_follow_the_conventions() {
        let names: Vec<String> = ALL.iter().map(Instrument::prometheus_name).collect();
        assert_eq!(
            names,
            [
                "http_server_request_duration_seconds",
                "http_server_active_requests",
                "http_client_request_duration_seconds",
                "rpc_server_call_duration_seconds",
                "rpc_client_call_duration_seconds",
                "messaging_client_operation_duration_seconds",
                "messaging_process_duration_seconds",
                "messaging_client_sent_messages",
                "messaging_client_consumed_messages",
                "messaging_client_retries",
                "messaging_dead_lettered",
                "looptel_dependency_up",
                "looptel_change_time_seconds",
            ]
        );
    }

    #[test]
    fn no_label_is_per_request() {
        for i in ALL {
            for forbidden in ["url.path", "url.full", "client.address", "user.id"] {
                assert!(!i.labels.contains(&forbidden), "{} {forbidden}", i.name);
            }
        }
        assert!(
            !HTTP_SERVER_REQUEST_DURATION
                .labels
                .contains(&SERVER_ADDRESS)
        );
        // Buckets strictly increasing; the legacy ones the same, in ms.
        assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        let ms: Vec<f64> = DURATION_BUCKETS
            .iter()
            .map(|b| (b * 1000.0).round())
            .collect();
        assert_eq!(ms, legacy_rpc::DURATION_BUCKETS_MS);
        assert_eq!(
            legacy_rpc::RPC_SERVER_DURATION.prometheus_name(),
            "rpc_server_duration_milliseconds"
        );
    }
}
