//! Order events: `PlaceOrder` publishes `OrderPlaced` to the Kafka topic
//! [`ORDERS_TOPIC`]; a fulfilment consumer in the same binary processes it
//! and, when RabbitMQ is configured (`AMQP_URL`), requests the payment
//! through the `payments` exchange, which a payment consumer processes.
//!
//! With nothing configured, librdkafka's in-process mock cluster is the
//! embedded broker (real protocol over a socket on 127.0.0.1);
//! `KAFKA_BROKERS` points the service at a real one.
//!
//! The consumers use [`Mode::Parent`]: each message is processed alone,
//! so the trace that placed the order goes on through the broker — one
//! trace from the HTTP request to the payment, which is what a "one trace"
//! view wants. A consumer that handles messages of many traces at once
//! should keep the default, [`Mode::Link`].

use std::future::Future;
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use looptel_core::{ErrorOutcome, Instrumentation};
use looptel_kafka_propagation::{MessagingTelemetry, Mode, amqp, kafka};
use looptel_red_metrics::MessagingMetrics;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt as _;

use crate::faults::FaultSwitch;

/// The topic of `OrderPlaced` events.
pub const ORDERS_TOPIC: &str = "orders";
/// The fulfilment consumer's group.
pub const FULFILMENT_GROUP: &str = "fulfilment";
/// The exchange payment requests go through.
pub const PAYMENTS_EXCHANGE: &str = "payments";
/// Their routing key.
pub const PAYMENT_REQUESTED: &str = "payment.requested";
/// The queue the payment consumer reads.
pub const PAYMENTS_QUEUE: &str = "payments";

/// How long a send may wait in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// The event a placed order publishes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// How many lines.
    pub items: usize,
}

/// The Kafka brokers: `KAFKA_BROKERS`, or an embedded mock cluster kept
/// alive as long as this value.
pub struct Broker {
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
    servers: String,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("embedded", &self.mock.is_some())
            .field("servers", &self.servers)
            .finish()
    }
}

impl Broker {
    /// `servers` (`host:port,…`), or an embedded one with the topic made.
    ///
    /// # Errors
    /// When the embedded cluster cannot start.
    pub fn new(servers: Option<String>) -> Result<Self, KafkaError> {
        match servers {
            Some(servers) => Ok(Self {
                mock: None,
                servers,
            }),
            None => {
                let mock = MockCluster::new(1)?;
                mock.create_topic(ORDERS_TOPIC, 1, 1)?;
                let servers = mock.bootstrap_servers();
                Ok(Self {
                    mock: Some(mock),
                    servers,
                })
            }
        }
    }

    /// The bootstrap servers.
    pub fn servers(&self) -> &str {
        &self.servers
    }

    /// Whether it is the embedded mock cluster.
    pub fn is_embedded(&self) -> bool {
        self.mock.is_some()
    }

    /// A producer.
    ///
    /// # Errors
    /// rdkafka's, for a configuration it refuses.
    pub fn producer(&self) -> Result<FutureProducer, KafkaError> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .set("message.timeout.ms", "10000")
            .create()
    }

    /// A consumer of [`ORDERS_TOPIC`] in [`FULFILMENT_GROUP`].
    ///
    /// # Errors
    /// rdkafka's.
    pub fn fulfilment_consumer(&self) -> Result<StreamConsumer, KafkaError> {
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .set("group.id", FULFILMENT_GROUP)
            .set("auto.offset.reset", "earliest")
            .create()?;
        c.subscribe(&[ORDERS_TOPIC])?;
        Ok(c)
    }
}

/// The consumers' and producers' instrumentation, as the service runs it:
/// parent mode (see the module's docs), messaging metrics.
pub fn telemetry(
    instrumentation: Instrumentation,
    metrics: MessagingMetrics,
) -> MessagingTelemetry {
    MessagingTelemetry::new(instrumentation)
        .metrics(metrics)
        .mode(Mode::Parent)
}

/// Publishes order events. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    producer: FutureProducer,
    telemetry: MessagingTelemetry,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// Events sent through `producer`.
    pub fn new(producer: FutureProducer, telemetry: MessagingTelemetry) -> Self {
        Self {
            producer,
            telemetry,
        }
    }

    /// Publishes `OrderPlaced` (key: the order id), in a `send orders` span
    /// under the current one.
    ///
    /// # Errors
    /// Kafka's, when the event could not be delivered.
    pub async fn order_placed(&self, event: &OrderPlaced) -> Result<(), KafkaError> {
        let payload = serde_json::to_vec(event).unwrap_or_default();
        let record = FutureRecord::to(ORDERS_TOPIC)
            .key(event.order_id.as_str())
            .payload(&payload);
        kafka::send(&self.telemetry, &self.producer, record, QUEUE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// Waits until every event sent is delivered, at most `timeout`.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "order events not all delivered at shutdown");
        }
    }
}

/// Why a message was not processed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Not an event this consumer reads: a poison message, dropped.
    #[error("unreadable event: {0}")]
    Unreadable(String),
    /// The fault switch failed it.
    #[error("injected fault: fulfilment failed")]
    Injected,
    /// The payment request could not be published.
    #[error("payment request not published: {0}")]
    Payment(String),
}

impl ErrorOutcome for ProcessError {
    fn outcome(&self) -> looptel_core::Outcome {
        match self {
            // The producer's problem, not this service's.
            Self::Unreadable(_) => looptel_core::Outcome::BusinessError,
            _ => looptel_core::Outcome::Failure,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Unreadable(_) => "unreadable_event",
            Self::Injected => "fulfilment_failed",
            Self::Payment(_) => "payment_unavailable",
        }
    }
}

/// Payment requests over AMQP: the exchange, queue and binding declared
/// once. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Payments {
    channel: Channel,
    telemetry: MessagingTelemetry,
}

impl Payments {
    /// Connects to `url`, declares the `payments` exchange and queue.
    ///
    /// # Errors
    /// lapin's.
    pub async fn connect(
        url: &str,
        telemetry: MessagingTelemetry,
    ) -> lapin::Result<(Self, Connection)> {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                PAYMENTS_EXCHANGE.into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                PAYMENTS_QUEUE.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                PAYMENTS_QUEUE.into(),
                PAYMENTS_EXCHANGE.into(),
                PAYMENT_REQUESTED.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((Self { channel, telemetry }, connection))
    }

    /// Publishes a payment request for `event`'s order.
    async fn request(&self, event: &OrderPlaced) -> Result<(), ProcessError> {
        let payload = serde_json::to_vec(event).unwrap_or_default();
        amqp::publish(
            &self.telemetry,
            &self.channel,
            PAYMENTS_EXCHANGE,
            PAYMENT_REQUESTED,
            BasicPublishOptions::default(),
            &payload,
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_correlation_id(event.order_id.as_str().into()),
        )
        .await
        .map(|_| ())
        .map_err(|e| ProcessError::Payment(e.to_string()))
    }

    /// Processes payment requests until `shutdown`: each in a `process
    /// payments:payment.requested:payments` span, acknowledged once
    /// processed.
    ///
    /// # Errors
    /// lapin's, when the consumer cannot start.
    pub async fn consume(self, shutdown: impl Future<Output = ()>) -> lapin::Result<()> {
        let mut consumer = self
            .channel
            .basic_consume(
                PAYMENTS_QUEUE.into(),
                "payments".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tokio::pin!(shutdown);
        loop {
            let delivery = tokio::select! {
                () = &mut shutdown => return Ok(()),
                next = consumer.next() => match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "payment consumer failed");
                        return Err(e);
                    }
                    None => return Ok(()),
                },
            };
            let result = amqp::process(&self.telemetry, &delivery, PAYMENTS_QUEUE, || async {
                let event: OrderPlaced = serde_json::from_slice(&delivery.data)
                    .map_err(|e| ProcessError::Unreadable(e.to_string()))?;
                tracing::info!(order.id = %event.order_id, "payment captured");
                Ok::<_, ProcessError>(())
            })
            .await;
            let acked = match result {
                Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
                // A message no one can read is not requeued.
                Err(_) => delivery.acker.nack(BasicNackOptions::default()).await,
            };
            if let Err(e) = acked {
                tracing::warn!(error = %e, "payment not acknowledged");
            }
        }
    }
}

/// Processes `OrderPlaced` events until `shutdown`: each in a `process
/// orders` span (the placing request's trace goes on), logged, then the
/// payment requested when `payments` is set. Failures are logged and
/// counted by the instrumentation; the consumer goes on.
pub async fn fulfil(
    consumer: StreamConsumer,
    telemetry: MessagingTelemetry,
    payments: Option<Payments>,
    faults: FaultSwitch,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let message = tokio::select! {
            () = &mut shutdown => return,
            m = consumer.recv() => match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "order events: receive failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let payments = payments.as_ref();
        let faults = &faults;
        // Failures are logged and counted by the instrumentation; the
        // consumer goes on (a dead-letter topic is the next step).
        let _ = kafka::process(&telemetry, &message, Some(FULFILMENT_GROUP), || async {
            let result = fulfil_one(&message, payments, faults).await;
            // Logged inside the message's context: the line has its trace.
            match &result {
                Err(e) if e.outcome() == looptel_core::Outcome::Failure => {
                    tracing::error!(error = %e, "order event not processed");
                }
                Err(e) => tracing::warn!(error = %e, "order event dropped"),
                Ok(()) => {}
            }
            result
        })
        .await;
    }
}

async fn fulfil_one(
    message: &rdkafka::message::BorrowedMessage<'_>,
    payments: Option<&Payments>,
    faults: &FaultSwitch,
) -> Result<(), ProcessError> {
    use rdkafka::Message as _;
    let event: OrderPlaced = serde_json::from_slice(message.payload().unwrap_or_default())
        .map_err(|e| ProcessError::Unreadable(e.to_string()))?;
    if faults.consumer_call() {
        return Err(ProcessError::Injected);
    }
    tracing::info!(order.id = %event.order_id, items = event.items, "order fulfilled");
    if let Some(p) = payments {
        p.request(&event).await?;
    }
    Ok(())
}
