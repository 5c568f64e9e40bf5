//! Order events: `PlaceOrder` publishes `OrderPlaced` to the Kafka topic
//! [`ORDERS_TOPIC`]; a fulfilment consumer in the same binary processes it
//! and, when RabbitMQ is configured (`AMQP_URL`), requests the payment
//! through the `payments` exchange ([`crate::payments`]).
//!
//! With nothing configured, librdkafka's in-process mock cluster is the
//! embedded broker (real protocol over a socket on 127.0.0.1);
//! `KAFKA_BROKERS` points the service at a real one.
//!
//! # Nothing lost
//! The fulfilment consumer stores an event's offset only once the event
//! is settled (`enable.auto.offset.store=false`; the stored offsets are
//! committed every 5 s and at shutdown): processed, or sent to
//! [`ORDERS_DLQ`]. A failure of its own (the payment request not
//! published, an injected fault) is retried with backoff up to the
//! configured attempts; an event that cannot be read is dead-lettered at
//! once. The dead letter keeps the event's key, payload and headers, adds
//! why and where from, and is sent in a span of the event's trace. When
//! even the dead-letter topic cannot be written (Kafka down), the event is
//! handled again, never skipped.
//!
//! librdkafka reconnects to the brokers by itself; the consumer's
//! statistics (every second) say whether a broker is up: `kafka` on
//! `/health/ready` and `looptel_dependency_up`.
//!
//! The consumers use [`Mode::Parent`]: each message is processed alone,
//! so the trace that placed the order goes on through the broker — one
//! trace from the HTTP request to the payment, which is what a "one trace"
//! view wants. A consumer that handles messages of many traces at once
//! should keep the default, [`Mode::Link`].

use std::time::{Duration, Instant};

use looptel::Messaging;
use looptel::core::{ErrorOutcome, Instrumentation};
use looptel::messaging::{Mode, Retry, kafka};
use looptel::metrics::{Dependency, Health};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, ClientContext, Statistics};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::faults::FaultSwitch;
use crate::notifications::{Notifications, NotifyError};
use crate::payments::{Payments, PublishError};

/// The topic of `OrderPlaced` events.
pub const ORDERS_TOPIC: &str = "orders";
/// Where events that cannot be processed go (`<topic>.dlq`).
pub const ORDERS_DLQ: &str = "orders.dlq";
/// The name of the dependency on `/health/ready` and its gauge.
pub const DEPENDENCY: &str = "kafka";
/// The fulfilment consumer's own name there: down when it is not running.
pub const CONSUMER: &str = "fulfilment";
/// The fulfilment consumer's group.
pub const FULFILMENT_GROUP: &str = "fulfilment";

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
                mock.create_topic(ORDERS_DLQ, 1, 1)?;
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
            // After an outage, a reconnection within a second, not after
            // librdkafka's backoff of up to 10 s: an event queued while
            // the broker was down must still go out within its 10 s.
            .set("reconnect.backoff.max.ms", "1000")
            .create()
    }

    /// A consumer of [`ORDERS_TOPIC`] in [`FULFILMENT_GROUP`] that stores
    /// offsets only when told ([`fulfil`] does, once an event is settled)
    /// and says whether a broker is up as `kafka` on `health`.
    ///
    /// # Errors
    /// rdkafka's.
    /// A consumer that stops without leaving the group cleanly (killed)
    /// holds its partitions for `session_timeout`.
    pub fn fulfilment_consumer(
        &self,
        health: &Health,
        session_timeout: Duration,
    ) -> Result<Fulfilment, KafkaError> {
        let c: Fulfilment = ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .set("group.id", FULFILMENT_GROUP)
            .set(
                "session.timeout.ms",
                session_timeout.as_millis().to_string(),
            )
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.offset.store", "false")
            .set("statistics.interval.ms", "1000")
            .create_with_context(BrokerHealth::new(health.dependency(DEPENDENCY)))?;
        c.subscribe(&[ORDERS_TOPIC])?;
        Ok(c)
    }
}

/// The consumers' and producers' instrumentation, as the service runs it:
/// parent mode (see the module's docs), messaging metrics.
pub fn telemetry(instrumentation: Instrumentation, metrics: &crate::Metrics) -> Messaging {
    metrics
        .instruments()
        .messaging(instrumentation)
        .mode(Mode::Parent)
}

/// Publishes order events. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    producer: FutureProducer,
    telemetry: Messaging,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// Events sent through `producer`.
    pub fn new(producer: FutureProducer, telemetry: Messaging) -> Self {
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

    /// Dead letters through the same producer.
    pub fn dead_letters(&self) -> kafka::DeadLetters {
        kafka::DeadLetters::new(self.producer.clone(), QUEUE_TIMEOUT)
    }

    /// Waits until every event sent is delivered, at most `timeout`.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "order events not all delivered at shutdown");
        }
    }
}

/// The fulfilment consumer: statistics report whether a broker is up.
pub type Fulfilment = StreamConsumer<BrokerHealth>;

/// A Kafka client context that reports, from librdkafka's statistics,
/// whether any broker is up, as a [`Dependency`]; each change is a log
/// line.
#[derive(Debug)]
pub struct BrokerHealth {
    dependency: Dependency,
    last_warned: std::sync::Mutex<Option<Instant>>,
}

/// At most one WARN for librdkafka's errors in this long.
const ERROR_QUIET: Duration = Duration::from_secs(30);

impl BrokerHealth {
    /// Reports through `dependency`.
    pub fn new(dependency: Dependency) -> Self {
        Self {
            dependency,
            last_warned: std::sync::Mutex::new(None),
        }
    }
}

impl ClientContext for BrokerHealth {
    fn stats(&self, statistics: Statistics) {
        // Brokers learnt from metadata have an id; the bootstrap entries
        // (-1) only say an address was given.
        let brokers = statistics.brokers.values().filter(|b| b.nodeid >= 0);
        let (mut up, mut states) = (false, Vec::new());
        for b in brokers {
            up |= b.state == "UP";
            states.push(format!("{} {}", b.nodeid, b.state));
        }
        if up {
            if self.dependency.up() {
                tracing::info!(dependency = DEPENDENCY, "kafka broker up");
            }
        } else {
            let why = if states.is_empty() {
                "no broker known".to_owned()
            } else {
                format!("brokers not up: {}", states.join(", "))
            };
            if self.dependency.down(why.clone()) {
                tracing::warn!(dependency = DEPENDENCY, error = %why, "kafka brokers down");
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka reports every failed reconnection, several a second:
        // one WARN per quiet period while the brokers are up (the news),
        // DEBUG for the rest and once they are known down (the statistics
        // say so, in one line).
        let now = Instant::now();
        let fresh = {
            let mut last = self
                .last_warned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let fresh = last.is_none_or(|t| now.duration_since(t) >= ERROR_QUIET);
            if fresh {
                *last = Some(now);
            }
            fresh
        };
        if fresh && self.dependency.is_up() {
            tracing::warn!(dependency = DEPENDENCY, error = %error, reason, "kafka client error");
        } else {
            tracing::debug!(dependency = DEPENDENCY, error = %error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for BrokerHealth {}

/// Why a message was not processed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Not an event this consumer reads (poison): dead-lettered at once.
    #[error("unreadable event: {0}")]
    Unreadable(String),
    /// The fault switch failed it.
    #[error("injected fault: fulfilment failed")]
    Injected,
    /// The payment request could not be published.
    #[error("payment request not published: {0}")]
    Payment(#[from] PublishError),
    /// The customer's notification could not be published.
    #[error("{0}")]
    Notify(#[from] NotifyError),
}

impl ErrorOutcome for ProcessError {
    fn outcome(&self) -> looptel::core::Outcome {
        match self {
            // The message's fault: no retry will read it.
            Self::Unreadable(_) => looptel::core::Outcome::BusinessError,
            _ => looptel::core::Outcome::Failure,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Unreadable(_) => "unreadable_event",
            Self::Injected => "fulfilment_failed",
            Self::Payment(_) => "payment_unavailable",
            Self::Notify(e) => e.error_type(),
        }
    }
}

/// Why a body could not be read, without any of its content: serde's
/// messages quote the offending value (`invalid type: string "…"`), which
/// may be personal data, so only the kind of error and where it is.
pub fn unreadable(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "not JSON",
        Category::Eof => "truncated JSON",
        Category::Data => "JSON of the wrong shape",
        Category::Io => "unreadable",
    };
    format!("{what} at line {}, column {}", e.line(), e.column())
}

/// What the fulfilment consumer needs besides its consumer.
#[derive(Clone, Debug)]
pub struct Fulfil {
    /// Its instrumentation.
    pub telemetry: Messaging,
    /// Payments, when RabbitMQ is configured.
    pub payments: Option<Payments>,
    /// Notifications, when NATS is configured.
    pub notifications: Option<Notifications>,
    /// The fault switch.
    pub faults: FaultSwitch,
    /// Attempts and backoff for its own failures.
    pub retry: Retry,
    /// Where events go that cannot be processed.
    pub dead_letters: kafka::DeadLetters,
    /// The consumer itself on `/health/ready`: up while it runs, down once
    /// it stopped, however it stopped.
    pub running: Dependency,
}

/// Says the consumer is down when dropped: at its end, or a panic's.
struct Running(Dependency);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.down("the consumer stopped") {
            tracing::warn!(
                dependency = self.0.name(),
                "fulfilment consumer not running"
            );
        }
    }
}

/// Processes `OrderPlaced` events until `stop`: each in a `process orders`
/// span (the placing request's trace goes on), retried and dead-lettered
/// as the [module docs](self) say, its offset stored once settled. When
/// stopping, the event in hand finishes (a backoff is cut short and the
/// event left unstored, to be consumed again), and the stored offsets
/// are committed.
pub async fn fulfil(consumer: Fulfilment, fulfil: Fulfil, stop: watch::Receiver<bool>) {
    let again = crate::consumers::RECONNECT;
    fulfil.running.up();
    let _running = Running(fulfil.running.clone());
    // Events received but not settled when stopping: consumed again from
    // the committed offset by the next consumer of the group.
    let mut returned = 0_u32;
    // Receive errors come in runs while a broker is away: the first of a
    // run is a WARN, the rest DEBUG, the end of the run an INFO.
    let mut failing = 0_u64;
    loop {
        let message = tokio::select! {
            () = crate::consumers::stopped(stop.clone()) => break,
            m = consumer.recv() => match m {
                Ok(m) => m,
                Err(e) => {
                    if failing == 0 {
                        tracing::warn!(error = %e, "order events: receive failed");
                    } else {
                        tracing::debug!(error = %e, "order events: receive failed");
                    }
                    failing += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        if failing > 0 {
            tracing::info!(failures = failing, "order events: receiving again");
            failing = 0;
        }
        // Handled until settled: never skipped, never committed unsettled.
        let mut round = 0;
        loop {
            let handled = kafka::handle(
                &fulfil.telemetry,
                &message,
                Some(FULFILMENT_GROUP),
                &fulfil.retry,
                &fulfil.dead_letters,
                crate::consumers::stopped(stop.clone()),
                |attempt| {
                    let (message, fulfil) = (&message, &fulfil);
                    async move {
                        let result = fulfil_one(message, fulfil).await;
                        // In the event's span: the line has its trace.
                        if let Err(e) = &result {
                            tracing::warn!(attempt, error = %e, "order event failed");
                        }
                        result
                    }
                },
            )
            .await;
            crate::consumers::report(&handled, "order event", ORDERS_TOPIC, ORDERS_DLQ);
            if handled.is_settled() {
                if let Err(e) = consumer.store_offset_from_message(&message) {
                    tracing::warn!(error = %e, "order event offset not stored");
                }
                break;
            }
            if *stop.borrow() {
                returned += 1;
                break;
            }
            let wait = again.delay(round);
            round += 1;
            if crate::consumers::stopped_within(wait, &stop).await {
                returned += 1;
                break;
            }
        }
    }
    // What was settled is committed now, not at the next interval.
    let committed = match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is not an error.
        Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "order events: offsets not committed");
            false
        }
    };
    tracing::info!(
        messaging.destination.name = ORDERS_TOPIC,
        messages.returned = returned,
        committed,
        "fulfilment consumer stopped"
    );
}

async fn fulfil_one(
    message: &rdkafka::message::BorrowedMessage<'_>,
    fulfil: &Fulfil,
) -> Result<(), ProcessError> {
    use rdkafka::Message as _;
    let event: OrderPlaced = serde_json::from_slice(message.payload().unwrap_or_default())
        .map_err(|e| ProcessError::Unreadable(unreadable(&e)))?;
    if fulfil.faults.consumer_call() {
        return Err(ProcessError::Injected);
    }
    tracing::info!(order.id = %event.order_id, items = event.items, "order fulfilled");
    if let Some(p) = &fulfil.payments {
        p.request(&event).await?;
    }
    if let Some(n) = &fulfil.notifications {
        n.fulfilled(&event).await?;
    }
    Ok(())
}
