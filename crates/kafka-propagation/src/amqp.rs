//! AMQP 0.9.1 (RabbitMQ) through [`lapin`]: header-table carriers, a
//! traced `basic_publish`, a traced `process` of a delivery, a `receive`
//! span for a batch.
//!
//! Header values are written as long strings: RabbitMQ closes the
//! connection on some other types, and every client reads long strings.
//! They are read back from long strings, short strings and byte arrays.
//!
//! ```no_run
//! use lapin::{BasicProperties, Channel, message::Delivery, options::BasicPublishOptions};
//! use looptel_kafka_propagation::{MessagingTelemetry, amqp};
//!
//! # async fn run(channel: Channel, delivery: Delivery, telemetry: MessagingTelemetry)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! // Publisher: a `publish payments:payment.requested` span, the context
//! // in the message's headers.
//! amqp::publish(&telemetry, &channel, "payments", "payment.requested",
//!     BasicPublishOptions::default(), b"{}", BasicProperties::default()).await?;
//!
//! // Consumer: a `process payments:payment.requested:payments` span.
//! let processed: Result<(), Declined> =
//!     amqp::process(&telemetry, &delivery, "payments", || async { Ok(()) }).await;
//! # Ok(()) }
//!
//! /// A failure of this service (the default outcome).
//! struct Declined;
//! impl looptel_core::ErrorOutcome for Declined {
//!     fn error_type(&self) -> &'static str { "payment_declined" }
//! }
//! ```

use std::future::Future;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, PublisherConfirm};
use looptel_core::{ErrorOutcome, MessageHeaderExtractor};
use looptel_engine::{MessageHook, MessageOp, Messaging, SpanAttributes};
use opentelemetry::KeyValue;
use opentelemetry_semantic_conventions::attribute as a;

use crate::telemetry::{Batch, MessagingTelemetry, send_failure, variant_name};

/// `messaging.system` for RabbitMQ.
pub const SYSTEM: &str = "rabbitmq";

/// The name the conventions give the default exchange.
pub const DEFAULT_EXCHANGE: &str = "amq.default";

/// Not text: reads as garbled, so it is counted but never parsed.
const NOT_TEXT: &[u8] = &[0xff];

/// Reads the propagation fields of an AMQP header table: long strings,
/// short strings and byte arrays as text; any other type reads as garbled.
/// See [`MessageHeaderExtractor`] for the rest of the rules.
pub fn extractor(headers: Option<&FieldTable>) -> MessageHeaderExtractor<'_> {
    match headers {
        None => MessageHeaderExtractor::default(),
        Some(table) => MessageHeaderExtractor::new(table.inner().iter().map(|(k, v)| {
            let bytes: &[u8] = match v {
                AMQPValue::LongString(s) => s.as_bytes(),
                AMQPValue::ShortString(s) => s.as_str().as_bytes(),
                AMQPValue::ByteArray(b) => b.as_slice(),
                AMQPValue::Void => &[],
                _ => NOT_TEXT,
            };
            (k.as_str(), Some(bytes))
        })),
    }
}

/// `headers` with `fields` set as long strings: a header of the same name
/// (any case) replaced, the user's other headers kept.
pub fn with_fields(headers: Option<FieldTable>, fields: &[(String, String)]) -> FieldTable {
    let ours = |key: &ShortString| {
        fields
            .iter()
            .any(|(f, _)| f.eq_ignore_ascii_case(key.as_str()))
    };
    let mut table = match headers {
        None => FieldTable::default(),
        // The usual case: none of ours there yet; insert into it as it is.
        Some(t) if !t.inner().keys().any(ours) => t,
        // A stale field (a message forwarded as is): without it.
        Some(t) => FieldTable::from(
            t.inner()
                .iter()
                .filter(|(k, _)| !ours(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
    };
    for (key, value) in fields {
        table.insert(
            ShortString::from(key.as_str()),
            AMQPValue::LongString(LongString::from(value.as_bytes())),
        );
    }
    table
}

/// Injects the current context's propagation fields into `headers` as
/// long strings (the baggage policy applies), keeping the user's other
/// headers.
pub fn inject<H>(telemetry: &MessagingTelemetry<H>, headers: Option<FieldTable>) -> FieldTable {
    with_fields(headers, &telemetry.current_fields())
}

/// `{exchange}:{routing_key}`, the default exchange named `amq.default`.
pub fn destination(exchange: &str, routing_key: &str) -> String {
    let exchange = if exchange.is_empty() {
        DEFAULT_EXCHANGE
    } else {
        exchange
    };
    format!("{exchange}:{routing_key}")
}

/// A lapin error's class, for `error.type`: the kind's name
/// (`InvalidChannelState`, `IOError`, `ProtocolError`).
pub fn error_type(e: &lapin::Error) -> String {
    variant_name(e.kind(), "Error")
}

fn message_attributes(properties: &BasicProperties, routing_key: &str) -> Vec<KeyValue> {
    let mut attrs = Vec::with_capacity(3);
    extend_message_attributes(properties, routing_key, &mut attrs);
    attrs
}

/// The routing key and the message's ids, as span attributes.
fn extend_message_attributes(
    properties: &BasicProperties,
    routing_key: &str,
    attrs: &mut Vec<KeyValue>,
) {
    attrs.push(KeyValue::new(
        a::MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY,
        routing_key.to_owned(),
    ));
    if let Some(id) = properties.correlation_id() {
        attrs.push(KeyValue::new(
            a::MESSAGING_MESSAGE_CONVERSATION_ID,
            id.as_str().to_owned(),
        ));
    }
    if let Some(id) = properties.message_id() {
        attrs.push(KeyValue::new(
            a::MESSAGING_MESSAGE_ID,
            id.as_str().to_owned(),
        ));
    }
}

/// Publishes through `channel` in a PRODUCER span `publish
/// {exchange}:{routing_key}`: the span's context injected into the
/// properties' headers as long strings (the user's other headers kept),
/// `messaging.client.operation.duration` and
/// `messaging.client.sent.messages` with `error.type` on failure. The span
/// ends when the channel has taken the message; awaiting the returned
/// confirm is the caller's choice, as with `basic_publish`.
///
/// # Errors
/// lapin's, as [`Channel::basic_publish`].
pub async fn publish<H: MessageHook>(
    telemetry: &MessagingTelemetry<H>,
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    options: BasicPublishOptions,
    payload: &[u8],
    properties: BasicProperties,
) -> lapin::Result<PublisherConfirm> {
    let destination = destination(exchange, routing_key);
    let op = MessageOp::new(SYSTEM, "publish", "send", &destination)
        .attributes(message_attributes(&properties, routing_key));
    telemetry
        .run_send(
            &op,
            |fields| {
                let headers = with_fields(properties.headers().clone(), &fields);
                channel.basic_publish(
                    ShortString::from(exchange),
                    ShortString::from(routing_key),
                    options,
                    payload,
                    properties.with_headers(headers),
                )
            },
            |result| match result {
                Ok(_) => (Messaging.success(), None),
                Err(e) => (send_failure(error_type(e), e), None),
            },
        )
        .await
}

/// Processes one `delivery` from `queue` with `handler` in a CONSUMER span
/// `process {exchange}:{routing_key}:{queue}`: linked to the publisher's
/// context, or its child in [`Mode::Parent`](crate::Mode::Parent); the
/// publisher's baggage restored into the handler's context; the handler's
/// error classified by its [`ErrorOutcome`]; `messaging.process.duration`
/// and `messaging.client.consumed.messages` recorded. The delivery tag is a
/// span attribute only. Acknowledging is the handler's (or the caller's)
/// business.
///
/// # Errors
/// The handler's.
pub async fn process<F, Fut, T, E, H: MessageHook>(
    telemetry: &MessagingTelemetry<H>,
    delivery: &Delivery,
    queue: &str,
    handler: F,
) -> Result<T, E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: ErrorOutcome,
{
    let destination = delivery_destination(delivery, queue);
    let attributes = delivery_attributes(delivery);
    let op = delivery_op(&destination, &attributes);
    let headers = extractor(delivery.properties.headers().as_ref());
    telemetry.run_process(&op, &headers, handler).await
}

/// The arguments of a queue whose rejected messages go to `dlx`
/// (`x-dead-letter-exchange`): pass them to `queue_declare`.
pub fn dead_letter_arguments(dlx: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString(LongString::from(dlx.as_bytes())),
    );
    args
}

/// Handles one `delivery` from `queue` completely, in one CONSUMER span
/// (as [`process`]), and settles it: `handler` is called with the
/// attempt's number (from 1) and retried by `retry` when its error is the
/// consumer's fault (see [`Fault`](crate::Fault)); then
/// - processed: acknowledged;
/// - not processed (poison at once, any other once out of attempts):
///   rejected without requeue in a `nack {destination}` span of the same
///   trace, so RabbitMQ routes it through the queue's
///   `x-dead-letter-exchange` ([`dead_letter_arguments`]) with the
///   message's headers — its trace context included — and its own
///   `x-death`; counted in `messaging.dead_lettered`;
/// - `stop` fired during a backoff: rejected with requeue, delivered again.
///
/// A failed acknowledgement (the channel went away) is in
/// [`Handled::settle_error`](crate::Handled::settle_error): RabbitMQ then
/// delivers the message again, so a handler must be idempotent.
pub async fn handle<F, Fut, T, E, H: MessageHook>(
    telemetry: &MessagingTelemetry<H>,
    delivery: &Delivery,
    queue: &str,
    retry: &crate::Retry,
    stop: impl Future<Output = ()>,
    handler: F,
) -> crate::Handled<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: ErrorOutcome,
{
    let destination = delivery_destination(delivery, queue);
    let attributes = delivery_attributes(delivery);
    let op = delivery_op(&destination, &attributes);
    let headers = extractor(delivery.properties.headers().as_ref());
    let nack = op.renamed("nack", "settle");
    let mut handled = telemetry
        .run_handled(&op, &headers, retry, stop, handler, |_, _| {
            telemetry.settle(&nack, async {
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: false,
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| (error_type(&e), e.to_string()))
            })
        })
        .await;
    let settled = match &handled.settlement {
        crate::Settlement::Processed(_) => delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ()),
        crate::Settlement::Redeliver {
            reason: crate::Redeliver::Stopping,
            ..
        } => delivery
            .acker
            .nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            })
            .await
            .map(|_| ()),
        // Rejected above, or the reject failed (and the channel with it).
        _ => Ok(()),
    };
    handled.settle_error = settled.err().map(|e| e.to_string());
    handled
}

/// `{exchange}:{routing_key}:{queue}`, where a delivery was consumed.
fn delivery_destination(delivery: &Delivery, queue: &str) -> String {
    format!(
        "{}:{queue}",
        destination(delivery.exchange.as_str(), delivery.routing_key.as_str())
    )
}

/// A delivery's span attributes: its routing key, ids and delivery tag.
fn delivery_attributes(delivery: &Delivery) -> impl Fn(&mut Vec<KeyValue>) + Sync + '_ {
    move |attributes: &mut Vec<KeyValue>| {
        extend_message_attributes(
            &delivery.properties,
            delivery.routing_key.as_str(),
            attributes,
        );
        attributes.push(KeyValue::new(
            a::MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG,
            i64::try_from(delivery.delivery_tag).unwrap_or(i64::MAX),
        ));
    }
}

/// The `process` of a delivery; its attributes are built only for a span
/// that records.
fn delivery_op<'a>(destination: &'a str, attributes: &'a dyn SpanAttributes) -> MessageOp<'a> {
    MessageOp::new(SYSTEM, "process", "process", destination).lazy_attributes(attributes)
}

/// Starts the `receive` span of a batch of deliveries from `queue`: a new
/// trace with a link to each delivery's context and
/// `messaging.batch.message_count`.
pub fn receive_batch<H>(
    telemetry: &MessagingTelemetry<H>,
    deliveries: &[Delivery],
    queue: &str,
) -> Batch {
    let op = MessageOp::new(SYSTEM, "receive", "receive", queue);
    telemetry.start_batch(
        &op,
        deliveries
            .iter()
            .map(|d| extractor(d.properties.headers().as_ref())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::Extractor as _;

    #[test]
    fn writes_long_strings_and_reads_every_string_type() {
        let mut user = FieldTable::default();
        user.insert("x-user".into(), AMQPValue::LongInt(7));
        user.insert("TraceParent".into(), AMQPValue::LongString("stale".into()));
        let table = with_fields(
            Some(user),
            &[(
                "traceparent".to_owned(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
            )],
        );
        assert_eq!(table.inner().len(), 2);
        assert_eq!(table.inner().get("x-user"), Some(&AMQPValue::LongInt(7)));
        assert!(matches!(
            table.inner().get("traceparent"),
            Some(AMQPValue::LongString(_))
        ));

        let mut foreign = FieldTable::default();
        foreign.insert(
            "traceparent".into(),
            AMQPValue::ShortString("00-a-b-01".into()),
        );
        foreign.insert(
            "tracestate".into(),
            AMQPValue::ByteArray(b"k=v".to_vec().into()),
        );
        foreign.insert("baggage".into(), AMQPValue::Double(1.5));
        let e = extractor(Some(&foreign));
        assert_eq!(e.get("traceparent"), Some("00-a-b-01"));
        assert_eq!(e.get("tracestate"), Some("k=v"));
        assert_eq!(e.get("baggage"), Some("\u{fffd}"), "not text: garbled");
        assert_eq!(destination("", "orders"), "amq.default:orders");
        assert_eq!(
            destination("payments", "payment.requested"),
            "payments:payment.requested"
        );
    }
}
