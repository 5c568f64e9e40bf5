//! Payment requests over RabbitMQ, written to be copied: a connection that
//! comes back after any outage, a publisher with confirms, a consumer
//! that settles every message it was handed, and dead letters that keep
//! their trace.
//!
//! - **One supervisor** ([`Payments::start`]) owns the connection: it
//!   connects, declares the topology, opens a publishing channel (publisher
//!   confirms on) and a consuming one, and consumes until the connection
//!   fails; then it reports `rabbitmq` down (WARN, `/health/ready` 503,
//!   `looptel_dependency_up{dependency="rabbitmq"} 0`) and connects again
//!   with capped, fully jittered backoff (100 ms doubling up to 5 s) until
//!   it succeeds (INFO, up again). A new connection per outage rather than
//!   lapin's `enable_auto_recover`: that one gives up after its backoff's
//!   attempts, and an acknowledgement of a delivery made on the lost
//!   channel fails on the recovered one.
//! - **Publishing** ([`Payments::request`]) waits up to the publish wait
//!   ([`PUBLISH_WAIT`] by default) for a connection, publishes a persistent
//!   message and waits for the broker's confirm: `Ok` means RabbitMQ has
//!   it. Past the wait it publishes on the lost channel all the same, so
//!   the failure is a `publish` span and a failed send in the messaging
//!   metrics (`error.type` = lapin's error kind) — what the processing
//!   SLO's card reads to name the broker. A failure is the caller's to
//!   retry (the fulfilment consumer does, then dead-letters).
//! - **Topology**, declared at every connection: the durable direct
//!   exchange `payments`, the durable queue `payments` bound to it with
//!   `x-dead-letter-exchange: payments.dlx`, and the fanout `payments.dlx`
//!   → durable queue `payments.dead` (the conventions' names,
//!   `<exchange>.dlx` and `<queue>.dead`).
//! - **Consuming** (prefetch [`PREFETCH`]): each delivery through
//!   [`amqp::handle`] — one `process` span, acknowledged once processed;
//!   a body that cannot be read is poison: an error on its span
//!   (`error.type=unreadable_payment`), an ERROR line naming the queue and
//!   why (never the body), counted, and rejected in a `nack` span of the
//!   same trace so RabbitMQ moves it to `payments.dead`.
//! - **Exactly once** over at-least-once delivery: a payment is captured
//!   once per order id (the last [`REMEMBERED`] ids are remembered); a
//!   redelivery — a confirm lost in an outage, an acknowledgement that did
//!   not reach the broker — is logged and acknowledged, never captured
//!   twice.
//! - **Stopping**: the consumer is cancelled, the message in hand
//!   finishes, the ones RabbitMQ had already sent (up to the prefetch) are
//!   returned to the queue and counted in the `payment consumer stopped`
//!   line.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use looptel::Messaging;
use looptel::core::{ErrorOutcome, Outcome};
use looptel::messaging::{Retry, amqp};

use crate::consumers::stopped;
use looptel::metrics::{Dependency, Health};
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use crate::events::OrderPlaced;

/// The routing key of payment requests.
pub const PAYMENT_REQUESTED: &str = "payment.requested";
/// How long a publish waits for a connection before it fails, by default.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(5);
/// Deliveries RabbitMQ may hand the consumer before it acknowledges.
pub const PREFETCH: u16 = 16;
/// Order ids remembered to capture each payment once.
pub const REMEMBERED: usize = 100_000;
/// The name of the dependency on `/health/ready` and its gauge.
pub const DEPENDENCY: &str = "rabbitmq";

/// Where payment requests go: an exchange and the queue the consumer
/// reads (each test or tenant of a shared broker can have its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The direct exchange requests are published to (`payments`).
    pub exchange: String,
    /// The queue bound to it (`payments`).
    pub queue: String,
}

impl Default for Names {
    fn default() -> Self {
        Self {
            exchange: "payments".into(),
            queue: "payments".into(),
        }
    }
}

impl Names {
    /// `<exchange>.dlx`: where rejected requests go.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.exchange)
    }

    /// `<queue>.dead`: where they stay.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.queue)
    }
}

/// Why a payment request was not processed.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The body is not a payment request (poison): dead-lettered at once.
    #[error("unreadable payment request: {0}")]
    Unreadable(String),
}

impl ErrorOutcome for PaymentError {
    fn outcome(&self) -> Outcome {
        // The message's fault: no attempt will read it.
        Outcome::BusinessError
    }

    fn error_type(&self) -> &'static str {
        "unreadable_payment"
    }
}

/// Why a payment request could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Never connected within the publish wait.
    #[error("RabbitMQ unreachable for {0:?}")]
    Unreachable(Duration),
    /// The publish failed (the channel went away meanwhile).
    #[error("publish failed: {0}")]
    Failed(String),
    /// RabbitMQ refused to take it.
    #[error("not confirmed by RabbitMQ")]
    Nacked,
}

/// Payment requests: the publisher for fulfilment, the consumer running
/// beside it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Payments {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    names: Names,
    telemetry: Messaging,
    retry: Retry,
    /// The latest publishing channel, and whether it is live.
    publisher: watch::Sender<(Option<Channel>, bool)>,
    publish_wait: Duration,
    dependency: Dependency,
    captured: Mutex<Captured>,
}

/// The order ids whose payment was captured, the oldest forgotten first.
#[derive(Debug, Default)]
struct Captured {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Captured {
    /// Whether `id` is new (and now remembered).
    fn first(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

impl Payments {
    /// Starts the supervisor: connects to `url` (again after every
    /// outage) and consumes until `stop` resolves; `rabbitmq` on `health`
    /// says whether it is connected. Returns at once: while RabbitMQ is
    /// unreachable the service runs, not ready, and publishes fail after
    /// `publish_wait`.
    pub fn start(
        url: String,
        names: Names,
        telemetry: Messaging,
        retry: Retry,
        publish_wait: Duration,
        health: &Health,
        stop: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let payments = Self {
            inner: Arc::new(Inner {
                names,
                telemetry,
                retry,
                publisher: watch::Sender::new((None, false)),
                publish_wait,
                dependency: health.dependency(DEPENDENCY),
                captured: Mutex::default(),
            }),
        };
        let task = tokio::spawn(payments.clone().supervise(url, stop));
        (payments, task)
    }

    /// The names in use.
    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    /// Publishes a payment request for `event`'s order in a `publish
    /// payments:payment.requested` span and waits for RabbitMQ's confirm.
    ///
    /// # Errors
    /// When there was never a connection within the publish wait, the
    /// publish fails (on a channel lost meanwhile, say), or RabbitMQ does
    /// not confirm it.
    pub async fn request(&self, event: &OrderPlaced) -> Result<(), PublishError> {
        let wait = self.inner.publish_wait;
        let mut rx = self.inner.publisher.subscribe();
        let live = tokio::time::timeout(wait, rx.wait_for(|(_, live)| *live))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|p| p.0.clone());
        // Past the wait, the lost channel: the publish fails, and is seen.
        let channel = live
            .or_else(|| self.inner.publisher.borrow().0.clone())
            .ok_or(PublishError::Unreachable(wait))?;
        let payload = serde_json::to_vec(event).unwrap_or_default();
        let confirm = amqp::publish(
            &self.inner.telemetry,
            &channel,
            &self.inner.names.exchange,
            PAYMENT_REQUESTED,
            BasicPublishOptions::default(),
            &payload,
            BasicProperties::default()
                .with_content_type("application/json".into())
                // Persistent: kept across a broker restart.
                .with_delivery_mode(2)
                .with_correlation_id(event.order_id.as_str().into()),
        )
        .await
        .map_err(|e| PublishError::Failed(e.to_string()))?;
        match confirm.await {
            Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => Ok(()),
            Ok(Confirmation::Nack(_)) => Err(PublishError::Nacked),
            Err(e) => Err(PublishError::Failed(e.to_string())),
        }
    }

    /// Connects, consumes, reconnects, until `stop`.
    async fn supervise(self, url: String, mut stop: watch::Receiver<bool>) {
        let backoff = crate::consumers::RECONNECT;
        let mut failures = 0_u32;
        loop {
            if *stop.borrow() {
                return;
            }
            let lost = match self.connect(&url).await {
                Ok((connection, publisher, consumer)) => {
                    failures = 0;
                    self.inner
                        .publisher
                        .send_replace((Some(publisher.clone()), true));
                    if self.inner.dependency.up() {
                        tracing::info!(
                            dependency = DEPENDENCY,
                            queue = %self.inner.names.queue,
                            "rabbitmq connected"
                        );
                    }
                    let ended = self.consume(&connection, &consumer, &mut stop).await;
                    self.inner.publisher.send_modify(|p| p.1 = false);
                    match ended {
                        Ended::Stopped => {
                            // Channels first: closing the connection under
                            // open ones makes lapin log an error.
                            let _ = consumer.close(200, "shutting down".into()).await;
                            let _ = publisher.close(200, "shutting down".into()).await;
                            let _ = connection.close(200, "shutting down".into()).await;
                            self.inner.dependency.down("stopped");
                            return;
                        }
                        Ended::Lost(error) => error,
                    }
                }
                Err(e) => e.to_string(),
            };
            if self.inner.dependency.down(lost.clone()) || failures == 0 {
                tracing::warn!(dependency = DEPENDENCY, error = %lost, "rabbitmq unreachable, reconnecting");
            }
            let wait = backoff.delay(failures);
            failures = failures.saturating_add(1);
            if crate::consumers::stopped_within(wait, &stop).await {
                return;
            }
        }
    }

    /// A connection, the topology declared, a confirming publisher
    /// channel and a consuming channel.
    async fn connect(&self, url: &str) -> lapin::Result<(Connection, Channel, Channel)> {
        let names = &self.inner.names;
        let connection = Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name("order-service".into()),
        )
        .await?;
        let channel = connection.create_channel().await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let (dlx, dead) = (names.dead_letter_exchange(), names.dead_letter_queue());
        channel
            .exchange_declare(
                dlx.as_str().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(dead.as_str().into(), durable_queue, FieldTable::default())
            .await?;
        channel
            .queue_bind(
                dead.as_str().into(),
                dlx.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                names.exchange.as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                names.queue.as_str().into(),
                durable_queue,
                amqp::dead_letter_arguments(&dlx),
            )
            .await?;
        channel
            .queue_bind(
                names.queue.as_str().into(),
                names.exchange.as_str().into(),
                PAYMENT_REQUESTED.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consumer = connection.create_channel().await?;
        consumer
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        Ok((connection, channel, consumer))
    }

    /// Consumes on `channel` until the connection fails or `stop`.
    async fn consume(
        &self,
        connection: &Connection,
        channel: &Channel,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        let queue = self.inner.names.queue.as_str();
        let mut consumer = match channel
            .basic_consume(
                queue.into(),
                "order-service".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => return Ended::Lost(e.to_string()),
        };
        let mut events = connection.events_listener();
        loop {
            let delivery = tokio::select! {
                () = stopped(stop.clone()) => break,
                event = events.next() => match event {
                    Some(lapin::Event::Error(e)) => return Ended::Lost(e.to_string()),
                    Some(_) => continue,
                    None => return Ended::Lost("connection closed".into()),
                },
                next = consumer.next() => match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Ended::Lost(e.to_string()),
                    None => return Ended::Lost("consumer cancelled by RabbitMQ".into()),
                },
            };
            self.handle(&delivery, stop.clone()).await;
        }
        // Stopping: no new deliveries; those already sent go back.
        let _ = channel
            .basic_cancel("order-service".into(), BasicCancelOptions::default())
            .await;
        let mut returned = 0_usize;
        while let Ok(Some(Ok(d))) =
            tokio::time::timeout(Duration::from_millis(100), consumer.next()).await
        {
            let requeue = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            if d.acker.nack(requeue).await.is_ok() {
                returned += 1;
            }
        }
        tracing::info!(
            queue,
            messages.returned = returned,
            "payment consumer stopped"
        );
        Ended::Stopped
    }

    /// One payment request: captured once per order, poison dead-lettered.
    async fn handle(&self, delivery: &lapin::message::Delivery, stop: watch::Receiver<bool>) {
        let queue = self.inner.names.queue.as_str();
        let handled = amqp::handle(
            &self.inner.telemetry,
            delivery,
            queue,
            &self.inner.retry,
            stopped(stop),
            |_attempt| async {
                let event: OrderPlaced = serde_json::from_slice(&delivery.data)
                    .map_err(|e| PaymentError::Unreadable(crate::events::unreadable(&e)))?;
                let first = self
                    .inner
                    .captured
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .first(&event.order_id);
                if first {
                    tracing::info!(order.id = %event.order_id, "payment captured");
                } else {
                    tracing::info!(order.id = %event.order_id, "payment already captured");
                }
                Ok::<_, PaymentError>(())
            },
        )
        .await;
        crate::consumers::report(
            &handled,
            "payment request",
            queue,
            &self.inner.names.dead_letter_queue(),
        );
    }
}

/// How a connection's consuming ended.
enum Ended {
    Stopped,
    Lost(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_is_captured_once_and_old_ids_are_forgotten() {
        let mut c = Captured::default();
        assert!(c.first("o-1"));
        assert!(!c.first("o-1"));
        for i in 0..REMEMBERED {
            c.first(&format!("x-{i}"));
        }
        assert!(c.ids.len() <= REMEMBERED);
        assert!(c.first("o-1"), "forgotten after REMEMBERED newer ids");
    }
}
