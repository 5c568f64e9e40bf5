//! Kafka through [`rdkafka`]: header carriers, a traced send on a
//! [`FutureProducer`], a traced `process` of a consumed message, a
//! `receive` span for a batch.
//!
//! ```no_run
//! use looptel_kafka_propagation::{MessagingTelemetry, Mode, kafka};
//! use rdkafka::consumer::{Consumer, StreamConsumer};
//! use rdkafka::producer::{FutureProducer, FutureRecord};
//! use std::time::Duration;
//!
//! # async fn run(producer: FutureProducer, consumer: StreamConsumer,
//! #              telemetry: MessagingTelemetry) -> Result<(), Box<dyn std::error::Error>> {
//! // Producer: a `send orders` span, the context in the record's headers.
//! let record = FutureRecord::to("orders").key("o-1").payload("{}");
//! kafka::send(&telemetry, &producer, record, Duration::from_secs(5)).await
//!     .map_err(|(e, _)| e)?;
//!
//! // Consumer: a `process orders` span per message, the producer's
//! // baggage in the handler's context.
//! let message = consumer.recv().await?;
//! let processed: Result<(), Unreadable> =
//!     kafka::process(&telemetry, &message, Some("fulfilment"), || async {
//!         // … handle the message; tracing's log lines carry the trace id …
//!         Ok(())
//!     })
//!     .await;
//! # Ok(()) }
//!
//! /// The handler's error says whose fault it is (here: the producer's).
//! struct Unreadable;
//! impl looptel_core::ErrorOutcome for Unreadable {
//!     fn outcome(&self) -> looptel_core::Outcome { looptel_core::Outcome::BusinessError }
//!     fn error_type(&self) -> &'static str { "unreadable_event" }
//! }
//! ```

use std::future::Future;
use std::time::Duration;

use looptel_core::{ErrorOutcome, MessageHeaderExtractor};
use looptel_engine::{MessageHook, MessageOp, Messaging, SpanAttributes};
use opentelemetry::KeyValue;
use opentelemetry_semantic_conventions::attribute as a;
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, ToBytes};
use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::telemetry::{Batch, MessagingTelemetry, Placed, send_failure, variant_name};

/// `messaging.system` for Kafka.
pub const SYSTEM: &str = "kafka";

/// Reads the propagation fields of a record's headers (borrowed from a
/// consumed message, or owned): see [`MessageHeaderExtractor`] for how
/// repeated, garbled, empty and oversized values read.
pub fn extractor<H: Headers>(headers: Option<&H>) -> MessageHeaderExtractor<'_> {
    match headers {
        Some(h) => MessageHeaderExtractor::new(h.iter().map(|h| (h.key, h.value))),
        None => MessageHeaderExtractor::default(),
    }
}

/// `headers` with `fields` set: every header of the same name (any case)
/// replaced, the user's other headers kept in order.
pub fn with_fields(headers: Option<OwnedHeaders>, fields: &[(String, String)]) -> OwnedHeaders {
    let ours = |key: &str| fields.iter().any(|(k, _)| k.eq_ignore_ascii_case(key));
    let mut out = match headers {
        None => OwnedHeaders::new_with_capacity(fields.len()),
        // The usual case: none of ours there yet; append to them as they are.
        Some(h) if !h.iter().any(|header| ours(header.key)) => h,
        // A stale field (a message forwarded as is): rebuild without it.
        Some(h) => {
            let mut out = OwnedHeaders::new_with_capacity(h.count() + fields.len());
            for header in h.iter().filter(|header| !ours(header.key)) {
                out = out.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
            out
        }
    };
    for (key, value) in fields {
        out = out.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    out
}

/// Injects the current context's propagation fields into `headers` (the
/// baggage policy applies), keeping the user's other headers.
pub fn inject<H>(telemetry: &MessagingTelemetry<H>, headers: Option<OwnedHeaders>) -> OwnedHeaders {
    with_fields(headers, &telemetry.current_fields())
}

/// A Kafka error's class, for `error.type`: its code's name
/// (`MessageTimedOut`), or the error's kind.
pub fn error_type(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => variant_name(&code, "KafkaError"),
        None => variant_name(e, "KafkaError"),
    }
}

fn key_attribute(key: Option<&[u8]>) -> Option<KeyValue> {
    key.and_then(|k| std::str::from_utf8(k).ok())
        .map(|k| KeyValue::new(a::MESSAGING_KAFKA_MESSAGE_KEY, k.to_owned()))
}

/// Sends `record` through `producer` in a PRODUCER span `send {topic}`: the
/// span's context injected into the record's headers (the user's other
/// headers kept), partition and offset recorded once delivered,
/// `messaging.client.operation.duration` and
/// `messaging.client.sent.messages` with `error.type` on failure.
///
/// # Errors
/// rdkafka's: the error and the message, as [`FutureProducer::send`].
pub async fn send<K, P, C, H>(
    telemetry: &MessagingTelemetry<H>,
    producer: &FutureProducer<C>,
    mut record: FutureRecord<'_, K, P>,
    queue_timeout: impl Into<Timeout>,
) -> OwnedDeliveryResult
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: rdkafka::ClientContext + 'static,
    H: MessageHook,
{
    let mut attributes = Vec::new();
    if let Some(k) = key_attribute(record.key.map(ToBytes::to_bytes)) {
        attributes.push(k);
    }
    if record.payload.is_none() {
        attributes.push(KeyValue::new(a::MESSAGING_KAFKA_MESSAGE_TOMBSTONE, true));
    }
    let topic = record.topic;
    let mut digits = itoa::Buffer::new();
    let partition = record.partition.map(|p| digits.format(p));
    let op = MessageOp::new(SYSTEM, "send", "send", topic)
        .partition(partition)
        .attributes(attributes);
    let queue_timeout = queue_timeout.into();
    telemetry
        .run_send(
            &op,
            |fields| {
                record.headers = Some(with_fields(record.headers.take(), &fields));
                producer.send(record, queue_timeout)
            },
            |result| match result {
                Ok(Delivery {
                    partition, offset, ..
                }) => (
                    Messaging.success(),
                    Some(Placed {
                        partition: decimal(*partition),
                        attributes: vec![KeyValue::new(a::MESSAGING_KAFKA_OFFSET, *offset)],
                    }),
                ),
                Err((e, _)) => (send_failure(error_type(e), e), None),
            },
        )
        .await
}

/// A partition number as text, without `format!` (`itoa`).
fn decimal(partition: i32) -> String {
    itoa::Buffer::new().format(partition).to_owned()
}

/// The span attributes of a consumed record: its offset, its key, whether
/// it is a tombstone.
fn record_attributes<M: Message>(message: &M) -> impl Fn(&mut Vec<KeyValue>) + Sync + '_ {
    let (offset, key, tombstone) = (message.offset(), message.key(), message.payload().is_none());
    move |attributes: &mut Vec<KeyValue>| {
        attributes.push(KeyValue::new(a::MESSAGING_KAFKA_OFFSET, offset));
        attributes.extend(key_attribute(key));
        if tombstone {
            attributes.push(KeyValue::new(a::MESSAGING_KAFKA_MESSAGE_TOMBSTONE, true));
        }
    }
}

/// The `process` of a record; its offset and key (`attributes`) are built
/// only for a span that records.
fn consumer_op<'a, M: Message>(
    message: &'a M,
    partition: &'a str,
    group: Option<&'a str>,
    attributes: &'a dyn SpanAttributes,
) -> MessageOp<'a> {
    MessageOp::new(SYSTEM, "process", "process", message.topic())
        .partition(Some(partition))
        .group(group)
        .lazy_attributes(attributes)
}

/// Runs `run` with the `process` of `message` and its headers: the
/// partition's label and the record's span attributes (built only for a
/// span that records) live on this stack, for `process` and `handle` alike.
async fn consumed<M: Message, R>(
    message: &M,
    group: Option<&str>,
    run: impl AsyncFnOnce(&MessageOp<'_>, &MessageHeaderExtractor<'_>) -> R,
) -> R {
    let mut digits = itoa::Buffer::new();
    let attributes = record_attributes(message);
    let op = consumer_op(
        message,
        digits.format(message.partition()),
        group,
        &attributes,
    );
    let headers = extractor(message.headers());
    run(&op, &headers).await
}

/// Processes one consumed `message` with `handler` in a CONSUMER span
/// `process {topic}`: linked to the producer's context, or its child in
/// [`Mode::Parent`](crate::Mode::Parent); the producer's baggage restored
/// into the handler's context (so `tenant.id` reaches its spans and log
/// lines); the handler's error classified as business or system by its
/// [`ErrorOutcome`]; `messaging.process.duration` and
/// `messaging.client.consumed.messages` recorded. Partition, offset, key
/// and group are span attributes; only the partition and group are labels.
///
/// # Errors
/// The handler's.
pub async fn process<M, F, Fut, T, E, H>(
    telemetry: &MessagingTelemetry<H>,
    message: &M,
    group: Option<&str>,
    handler: F,
) -> Result<T, E>
where
    M: Message,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: ErrorOutcome,
    H: MessageHook,
{
    consumed(message, group, async |op, headers| {
        telemetry.run_process(op, headers, handler).await
    })
    .await
}

/// Where a consumer's dead letters go: `<topic>.dlq`, through a producer
/// of the service's. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetters<C: rdkafka::ClientContext + 'static = DefaultClientContext> {
    producer: FutureProducer<C>,
    queue_timeout: Duration,
}

impl<C: rdkafka::ClientContext + 'static> std::fmt::Debug for DeadLetters<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("queue_timeout", &self.queue_timeout)
            .finish_non_exhaustive()
    }
}

impl<C: rdkafka::ClientContext + 'static> DeadLetters<C> {
    /// Dead letters sent through `producer`, waiting at most
    /// `queue_timeout` in its queue.
    pub fn new(producer: FutureProducer<C>, queue_timeout: Duration) -> Self {
        Self {
            producer,
            queue_timeout,
        }
    }

    /// The dead-letter topic of `topic`: `<topic>.dlq`.
    pub fn topic_for(topic: &str) -> String {
        format!("{topic}{DLQ_SUFFIX}")
    }
}

/// The suffix of a dead-letter topic.
pub const DLQ_SUFFIX: &str = ".dlq";

/// The header names a dead letter carries beside the trace context.
pub mod dead_letter_headers {
    /// Why it was not processed: the last error, as text.
    pub const REASON: &str = "x-death-reason";
    /// Where it was consumed.
    pub const ORIGINAL_TOPIC: &str = "x-original-topic";
    /// Its partition there.
    pub const ORIGINAL_PARTITION: &str = "x-original-partition";
    /// Its offset there.
    pub const ORIGINAL_OFFSET: &str = "x-original-offset";
    /// How many times it was tried again after the first attempt.
    pub const RETRIES: &str = "x-retries";
}

/// Handles one consumed `message` completely, in one CONSUMER span
/// `process {topic}` (as [`process`]): `handler` is called with the
/// attempt's number (from 1) and retried by `retry` when its error is the
/// consumer's fault (see [`Fault`](crate::Fault)); a message that cannot be
/// processed — poison at once, any other once out of attempts — is sent to
/// `<topic>.dlq` in a `send <topic>.dlq` span of the same trace, with its
/// key, payload and headers, the trace context and the
/// [`dead_letter_headers`]. `stop` (the consumer's shutdown) cuts a backoff
/// short.
///
/// Store the message's offset when the result [`is_settled`]
/// (processed or dead-lettered) and not otherwise: with
/// `enable.auto.offset.store=false`, nothing is committed that was neither.
///
/// ```no_run
/// use std::time::Duration;
/// use looptel_kafka_propagation::{MessagingTelemetry, Retry, kafka};
/// use rdkafka::consumer::{Consumer, StreamConsumer};
///
/// # async fn run(consumer: StreamConsumer, dead_letters: kafka::DeadLetters,
/// #              telemetry: MessagingTelemetry) -> Result<(), rdkafka::error::KafkaError> {
/// let message = consumer.recv().await?;
/// let handled = kafka::handle(&telemetry, &message, Some("fulfilment"), &Retry::default(),
///     &dead_letters, std::future::pending(), |_attempt| async {
///         Ok::<(), Unreadable>(())
///     }).await;
/// if handled.is_settled() {
///     consumer.store_offset_from_message(&message)?;
/// }
/// # Ok(()) }
/// # #[derive(Debug)] struct Unreadable;
/// # impl std::fmt::Display for Unreadable {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("unreadable") } }
/// # impl looptel_core::ErrorOutcome for Unreadable {
/// #     fn outcome(&self) -> looptel_core::Outcome { looptel_core::Outcome::BusinessError }
/// #     fn error_type(&self) -> &'static str { "unreadable_event" } }
/// ```
///
/// [`is_settled`]: crate::Handled::is_settled
#[allow(clippy::too_many_arguments)] // each is a part of the job
pub async fn handle<M, F, Fut, T, E, C, H>(
    telemetry: &MessagingTelemetry<H>,
    message: &M,
    group: Option<&str>,
    retry: &crate::Retry,
    dead_letters: &DeadLetters<C>,
    stop: impl Future<Output = ()>,
    handler: F,
) -> crate::Handled<T, E>
where
    M: Message,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: ErrorOutcome + std::fmt::Display,
    C: rdkafka::ClientContext + 'static,
    H: MessageHook,
{
    consumed(message, group, async |op, headers| {
        telemetry
            .run_handled(op, headers, retry, stop, handler, |error, attempts| {
                dead_letter(
                    telemetry,
                    message,
                    dead_letters,
                    error.to_string(),
                    attempts,
                )
            })
            .await
    })
    .await
}

/// Sends `message` to `<topic>.dlq` under the current context.
async fn dead_letter<M: Message, C: rdkafka::ClientContext + 'static, H: MessageHook>(
    telemetry: &MessagingTelemetry<H>,
    message: &M,
    dead_letters: &DeadLetters<C>,
    reason: String,
    attempts: u32,
) -> Result<(), String> {
    use dead_letter_headers as h;
    let topic = DeadLetters::<C>::topic_for(message.topic());
    let mut headers =
        OwnedHeaders::new_with_capacity(message.headers().map_or(0, Headers::count) + 5);
    if let Some(original) = message.headers() {
        for header in original.iter() {
            headers = headers.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
    }
    let partition = decimal(message.partition());
    let offset = message.offset().to_string();
    let retries = attempts.saturating_sub(1).to_string();
    for (key, value) in [
        (h::REASON, reason.as_str()),
        (h::ORIGINAL_TOPIC, message.topic()),
        (h::ORIGINAL_PARTITION, partition.as_str()),
        (h::ORIGINAL_OFFSET, offset.as_str()),
        (h::RETRIES, retries.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    send(
        telemetry,
        &dead_letters.producer,
        record,
        dead_letters.queue_timeout,
    )
    .await
    .map(|_| ())
    .map_err(|(e, _)| e.to_string())
}

/// Starts the `receive` span of a batch of messages from one topic: a new
/// trace with a link to each message's context and
/// `messaging.batch.message_count`.
pub fn receive_batch<M: Message, H>(
    telemetry: &MessagingTelemetry<H>,
    messages: &[M],
    group: Option<&str>,
) -> Batch {
    let topic = messages.first().map_or("", Message::topic);
    let op = MessageOp::new(SYSTEM, "receive", "receive", topic).group(group);
    telemetry.start_batch(&op, messages.iter().map(|m| extractor(m.headers())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_fields_replaces_ours_and_keeps_the_users_headers() {
        let user = OwnedHeaders::new()
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            })
            .insert(Header {
                key: "TraceParent",
                value: Some("stale"),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        let out = with_fields(
            Some(user),
            &[(
                "traceparent".to_owned(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
            )],
        );
        let all: Vec<(&str, Option<&[u8]>)> = out.iter().map(|h| (h.key, h.value)).collect();
        assert_eq!(
            all,
            [
                ("content-type", Some(&b"application/json"[..])),
                ("empty", None),
                (
                    "traceparent",
                    Some(&b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..])
                ),
            ]
        );
    }
}
