//! NATS through [`async_nats`]: header carriers, a traced publish, a traced
//! `process` of a received message, a `receive` span for a batch — the
//! same spans and metrics as Kafka and AMQP.
//!
//! ```no_run
//! use async_nats::Client;
//! use looptel_kafka_propagation::{MessagingTelemetry, nats};
//! use tokio_stream::StreamExt as _;
//!
//! # async fn run(client: Client, telemetry: MessagingTelemetry) -> Result<(), Box<dyn std::error::Error>> {
//! // Publisher: a `publish orders.placed` span, its context in the headers.
//! nats::publish(&telemetry, &client, "orders.placed", None, "{}".into()).await?;
//!
//! // Subscriber: a `process orders.placed` span per message.
//! let mut sub = client.subscribe("orders.placed").await?;
//! if let Some(message) = sub.next().await {
//!     let processed: Result<(), Unreadable> =
//!         nats::process(&telemetry, &message, || async { Ok(()) }).await;
//! }
//! # Ok(()) }
//!
//! /// The producer's fault, not this service's.
//! struct Unreadable;
//! impl looptel_core::ErrorOutcome for Unreadable {
//!     fn outcome(&self) -> looptel_core::Outcome { looptel_core::Outcome::BusinessError }
//!     fn error_type(&self) -> &'static str { "unreadable_event" }
//! }
//! ```

use std::future::Future;

use async_nats::{Client, HeaderMap, Message, PublishError};
use bytes::Bytes;
use looptel_core::{ErrorOutcome, MessageHeaderExtractor};
use looptel_engine::{MessageHook, MessageOp, Messaging};

use crate::telemetry::{Batch, MessagingTelemetry, send_failure, variant_name};

/// `messaging.system` for NATS.
pub const SYSTEM: &str = "nats";

/// Reads the propagation fields of a message's headers; see
/// [`MessageHeaderExtractor`] for how repeated, empty and oversized values
/// read (NATS header values are text already).
pub fn extractor(headers: Option<&HeaderMap>) -> MessageHeaderExtractor<'_> {
    match headers {
        None => MessageHeaderExtractor::default(),
        Some(h) => MessageHeaderExtractor::new(h.iter().flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (name.as_ref(), Some(v.as_str().as_bytes())))
        })),
    }
}

/// `headers` with `fields` set (replacing values of the same name), the
/// user's other headers kept.
pub fn with_fields(headers: Option<HeaderMap>, fields: &[(String, String)]) -> HeaderMap {
    let mut headers = headers.unwrap_or_default();
    for (key, value) in fields {
        headers.insert(key.as_str(), value.as_str());
    }
    headers
}

/// Injects the current context's propagation fields into `headers` (the
/// baggage policy applies), keeping the user's other headers.
pub fn inject<H>(telemetry: &MessagingTelemetry<H>, headers: Option<HeaderMap>) -> HeaderMap {
    with_fields(headers, &telemetry.current_fields())
}

/// A publish error's class, for `error.type`: its kind's name
/// (`MaxPayloadExceeded`, `InvalidSubject`, `Send`).
pub fn error_type(e: &PublishError) -> String {
    variant_name(&e.kind(), "PublishError")
}

/// Publishes `payload` on `subject` in a PRODUCER span `publish {subject}`:
/// the span's context injected into `headers` (the user's kept),
/// `messaging.client.operation.duration` and
/// `messaging.client.sent.messages` with `error.type` on failure.
///
/// # Errors
/// async-nats', as [`Client::publish_with_headers`].
pub async fn publish<H: MessageHook>(
    telemetry: &MessagingTelemetry<H>,
    client: &Client,
    subject: &str,
    headers: Option<HeaderMap>,
    payload: Bytes,
) -> Result<(), PublishError> {
    let op = MessageOp::new(SYSTEM, "publish", "send", subject);
    telemetry
        .run_send(
            &op,
            |fields| {
                let headers = with_fields(headers, &fields);
                client.publish_with_headers(subject.to_owned(), headers, payload)
            },
            |result| match result {
                Ok(()) => (Messaging.success(), None),
                Err(e) => (send_failure(error_type(e), e), None),
            },
        )
        .await
}

/// Processes one received `message` with `handler` in a CONSUMER span
/// `process {subject}`: linked to the publisher's context, or its child in
/// [`Mode::Parent`](crate::Mode::Parent); the publisher's baggage restored;
/// the handler's error classified by its [`ErrorOutcome`]; the process
/// metrics recorded.
///
/// # Errors
/// The handler's.
pub async fn process<F, Fut, T, E, H: MessageHook>(
    telemetry: &MessagingTelemetry<H>,
    message: &Message,
    handler: F,
) -> Result<T, E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: ErrorOutcome,
{
    let op = process_op(message);
    let headers = extractor(message.headers.as_ref());
    telemetry.run_process(&op, &headers, handler).await
}

fn process_op(message: &Message) -> MessageOp<'_> {
    MessageOp::new(SYSTEM, "process", "process", message.subject.as_str())
}

/// The dead-letter subject of `subject`: `<subject>.dlq`.
pub fn dead_letter_subject(subject: &str) -> String {
    format!("{subject}.dlq")
}

/// Handles one received `message` completely, in one CONSUMER span
/// `process {subject}` (as [`process`]): `handler` is called with the
/// attempt's number (from 1) and retried by `retry` when its error is the
/// consumer's fault (see [`Fault`](crate::Fault)); a message that cannot be
/// processed — poison at once, any other once out of attempts — is
/// published to `<subject>.dlq` ([`dead_letter_subject`]) through `client`
/// in a `publish <subject>.dlq` span of the same trace, with its payload,
/// its headers, the trace context and `x-death-reason`,
/// `x-original-subject` and `x-retries`. `stop` cuts a backoff short.
///
/// Core NATS delivers at most once: a message received while no one
/// listens on the dead-letter subject (or in a disconnection the client's
/// buffer could not hold) is gone. Where that matters, consume from
/// JetStream and settle with its acknowledgements.
pub async fn handle<F, Fut, T, E, H: MessageHook>(
    telemetry: &MessagingTelemetry<H>,
    client: &Client,
    message: &Message,
    retry: &crate::Retry,
    stop: impl Future<Output = ()>,
    handler: F,
) -> crate::Handled<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: ErrorOutcome + std::fmt::Display,
{
    let op = process_op(message);
    let headers = extractor(message.headers.as_ref());
    telemetry
        .run_handled(&op, &headers, retry, stop, handler, |error, attempts| {
            let mut headers = message.headers.clone().unwrap_or_default();
            headers.insert("x-death-reason", error.to_string().as_str());
            headers.insert("x-original-subject", message.subject.as_str());
            headers.insert("x-retries", attempts.saturating_sub(1).to_string().as_str());
            let subject = dead_letter_subject(&message.subject);
            let payload = message.payload.clone();
            async move {
                publish(telemetry, client, &subject, Some(headers), payload)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await
}

/// Starts the `receive` span of a batch of messages from `subject`: a new
/// trace with a link to each message's context and
/// `messaging.batch.message_count`.
pub fn receive_batch<H>(
    telemetry: &MessagingTelemetry<H>,
    messages: &[Message],
    subject: &str,
) -> Batch {
    let op = MessageOp::new(SYSTEM, "receive", "receive", subject);
    telemetry.start_batch(&op, messages.iter().map(|m| extractor(m.headers.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::Extractor as _;

    #[test]
    fn fields_replace_ours_and_keep_the_users() {
        let mut user = HeaderMap::new();
        user.insert("Content-Type", "application/json");
        user.insert("traceparent", "stale");
        let h = with_fields(
            Some(user),
            &[("traceparent".to_owned(), "fresh".to_owned())],
        );
        assert_eq!(h.get("traceparent").map(|v| v.as_str()), Some("fresh"));
        assert_eq!(
            h.get("Content-Type").map(|v| v.as_str()),
            Some("application/json")
        );
        let e = extractor(Some(&h));
        assert_eq!(e.get("TRACEPARENT"), Some("fresh"));
    }
}
