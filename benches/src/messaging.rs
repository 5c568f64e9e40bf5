//! The Kafka consumer path: one consumed record processed by a handler, as
//! the reference service's fulfilment consumer processes `OrderPlaced`.
//!
//! - `kafka-bare`: the handler alone;
//! - `kafka-peer-*`: the usual hand-written instrumentation (every header
//!   copied into a map, the global W3C propagator, a `tracing` span made
//!   the producer's child through tracing-opentelemetry, the handler
//!   instrumented with it) — spans only, no metrics;
//! - `kafka-looptel-*`: `kafka::process` with the service's messaging
//!   telemetry (`order_service::events::telemetry`: parent mode, messaging
//!   metrics), built through `Telemetry` as its `main` builds it.
//!
//! `*-sampled` records carry a sampled producer context, `*-unsampled` one
//! that was not sampled; both carry `tenant.id` in `baggage` and the user's
//! own headers.

use std::collections::HashMap;
use std::hint::black_box;

use looptel_kafka_propagation::{MessagingTelemetry, kafka};
use order_service::events::ProcessError;
use rdkafka::Message as _;
use rdkafka::message::{Header, Headers as _, OwnedHeaders, OwnedMessage, Timestamp};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::{SAMPLED, UNSAMPLED, peer_tracing, service_telemetry};

/// The consumer scenarios, in the order they are reported.
pub const SCENARIOS: &[&str] = &[
    "kafka-bare",
    "kafka-peer-sampled",
    "kafka-peer-unsampled",
    "kafka-looptel-sampled",
    "kafka-looptel-unsampled",
];

/// A consumer stack of a `kafka-*` scenario.
#[derive(Debug)]
pub struct Consumer {
    /// The subscriber to process records under.
    pub dispatch: tracing::Dispatch,
    telemetry: Option<MessagingTelemetry<((), looptel_red_metrics::MessagingMetrics)>>,
    peer: bool,
    _provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    _telemetry: Option<looptel_telemetry::TelemetryGuard>,
}

/// The record of a scenario: an `OrderPlaced` event on `orders`.
pub fn record(scenario: &str) -> OwnedMessage {
    let traceparent = if scenario.ends_with("unsampled") {
        UNSAMPLED
    } else {
        SAMPLED
    };
    let headers = OwnedHeaders::new_with_capacity(4)
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
        .insert(Header {
            key: "traceparent",
            value: Some(traceparent),
        })
        .insert(Header {
            key: "baggage",
            value: Some("tenant.id=acme"),
        })
        .insert(Header {
            key: "event-type",
            value: Some("OrderPlaced"),
        });
    OwnedMessage::new(
        Some(br#"{"order_id":"o-1","sku":"sku-1","quantity":2}"#.to_vec()),
        Some(b"o-1".to_vec()),
        "orders".to_owned(),
        Timestamp::CreateTime(1_700_000_000_000),
        0,
        42,
        Some(headers),
    )
}

/// Builds the consumer stack of a `kafka-*` scenario.
///
/// # Panics
/// When the telemetry cannot be built (it can, from an empty environment).
pub fn consumer(scenario: &str) -> Consumer {
    if scenario == "kafka-bare" {
        return Consumer {
            dispatch: tracing::Dispatch::none(),
            telemetry: None,
            peer: false,
            _provider: None,
            _telemetry: None,
        };
    }
    if scenario.starts_with("kafka-peer") {
        let (provider, dispatch) = peer_tracing();
        return Consumer {
            dispatch,
            telemetry: None,
            peer: true,
            _provider: Some(provider),
            _telemetry: None,
        };
    }
    // As `main` builds the fulfilment consumer's telemetry.
    let (dispatch, guard, _) = service_telemetry(None);
    let metrics = order_service::Metrics::new();
    let messaging = order_service::events::telemetry(guard.instrumentation(), &metrics);
    Consumer {
        dispatch,
        telemetry: Some(messaging),
        peer: false,
        _provider: None,
        _telemetry: Some(guard),
    }
}

/// The handler: reads the event, as the fulfilment handler starts by doing.
async fn handle(message: &OwnedMessage) -> Result<usize, ProcessError> {
    Ok(black_box(message.payload().map_or(0, <[u8]>::len)))
}

/// Processes one record through the consumer stack.
pub async fn process(consumer: &Consumer, message: &OwnedMessage) -> usize {
    let done = if let Some(telemetry) = &consumer.telemetry {
        kafka::process(telemetry, message, Some("fulfilment"), || handle(message)).await
    } else if consumer.peer {
        // The map-copy carrier and a tracing span, as hand-written
        // consumers do it.
        let mut carrier: HashMap<String, String> = HashMap::new();
        if let Some(headers) = message.headers() {
            for h in headers.iter() {
                carrier.insert(
                    h.key.to_owned(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                );
            }
        }
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        let span = tracing::info_span!(
            "process orders",
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = message.topic(),
            messaging.consumer.group.name = "fulfilment",
            messaging.destination.partition.id = message.partition(),
            messaging.kafka.offset = message.offset(),
        );
        let _ = span.set_parent(parent);
        handle(message).instrument(span).await
    } else {
        handle(message).await
    };
    done.unwrap_or_default()
}
