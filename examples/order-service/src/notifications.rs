//! Customer notifications over NATS (when `NATS_URL` is set): fulfilment
//! publishes `OrderPlaced` on [`DEFAULT_SUBJECT`] once an order is
//! fulfilled, and a subscriber in the same binary notifies the customer.
//!
//! The client's own reconnection, configured rather than rewritten: it
//! keeps reconnecting for as long as the process lives (no attempt limit),
//! waits a capped, fully jittered backoff between attempts (100 ms to
//! 5 s), starts even when NATS is down at boot, resubscribes
//! by itself, and holds what is published meanwhile in its buffer. Its
//! events drive `nats` on `/health/ready` and `looptel_dependency_up`,
//! each change a log line.
//!
//! Core NATS delivers at most once: a notification published while the
//! subscriber is away, or past the client's buffer, is gone — fine for a
//! notification, not for a payment (that goes through RabbitMQ with
//! confirms, [`crate::payments`]). A notification that cannot be read is
//! poison: an error on its span, an ERROR line, and a dead letter on
//! `<subject>.dlq` in the same trace.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use looptel::Messaging;
use looptel::core::{ErrorOutcome, Outcome};
use looptel::messaging::{Retry, nats};
use looptel::metrics::Health;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use crate::consumers::stopped;
use crate::events::OrderPlaced;

/// The subject notifications go to.
pub const DEFAULT_SUBJECT: &str = "orders.fulfilled";
/// How long a publish may wait for room in the client's buffer.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(2);
/// The name of the dependency on `/health/ready` and its gauge.
pub const DEPENDENCY: &str = "nats";

/// Why a notification was not sent or not processed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The client's buffer stayed full (a long disconnection).
    #[error("notification not published: {0}")]
    Unpublished(String),
    /// Not a notification (poison).
    #[error("unreadable notification: {0}")]
    Unreadable(String),
}

impl ErrorOutcome for NotifyError {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Unreadable(_) => Outcome::BusinessError,
            Self::Unpublished(_) => Outcome::Failure,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Unreadable(_) => "unreadable_notification",
            Self::Unpublished(_) => "notification_unpublished",
        }
    }
}

/// The notification publisher and its subscriber. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifications {
    client: Client,
    subject: String,
    telemetry: Messaging,
}

impl Notifications {
    /// A client of `url` that reconnects forever, `nats` on `health`
    /// following its connection, and the subscriber on `subject` running
    /// until `stop`. Returns at once, connected or not.
    ///
    /// # Errors
    /// async-nats', for a URL it cannot use.
    pub async fn start(
        url: &str,
        subject: String,
        telemetry: Messaging,
        retry: Retry,
        health: &Health,
        stop: watch::Receiver<bool>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), async_nats::ConnectError> {
        let dependency = health.dependency(DEPENDENCY);
        let backoff = crate::consumers::RECONNECT;
        let client = ConnectOptions::new()
            .name("order-service")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| {
                backoff.delay(u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX))
            })
            .event_callback(move |event| {
                let dependency = dependency.clone();
                async move {
                    match event {
                        Event::Connected => {
                            if dependency.up() {
                                tracing::info!(dependency = DEPENDENCY, "nats connected");
                            }
                        }
                        Event::Disconnected | Event::Closed => {
                            if dependency.down(event.to_string()) {
                                tracing::warn!(
                                    dependency = DEPENDENCY,
                                    error = %event,
                                    "nats disconnected, reconnecting"
                                );
                            }
                        }
                        other => {
                            tracing::warn!(dependency = DEPENDENCY, event = %other, "nats event");
                        }
                    }
                }
            })
            .connect(url)
            .await?;
        let notifications = Self {
            client,
            subject,
            telemetry,
        };
        let task = tokio::spawn(notifications.clone().subscribe(retry, stop));
        Ok((notifications, task))
    }

    /// Publishes that `event`'s order was fulfilled, in a `publish
    /// orders.fulfilled` span; buffered by the client while disconnected.
    ///
    /// # Errors
    /// When the client's buffer stays full for [`PUBLISH_WAIT`].
    pub async fn fulfilled(&self, event: &OrderPlaced) -> Result<(), NotifyError> {
        let payload = serde_json::to_vec(event).unwrap_or_default();
        let published = tokio::time::timeout(
            PUBLISH_WAIT,
            nats::publish(
                &self.telemetry,
                &self.client,
                &self.subject,
                None,
                payload.into(),
            ),
        )
        .await;
        match published {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(NotifyError::Unpublished(e.to_string())),
            Err(_) => Err(NotifyError::Unpublished(format!(
                "the client's buffer stayed full for {PUBLISH_WAIT:?}"
            ))),
        }
    }

    /// Notifies customers until `stop`; the subscription is renewed by
    /// the client after every reconnection.
    async fn subscribe(self, retry: Retry, stop: watch::Receiver<bool>) {
        let mut subscriber = loop {
            match self.client.subscribe(self.subject.clone()).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, subject = %self.subject, "nats: subscribing failed");
                    if crate::consumers::stopped_within(Duration::from_secs(1), &stop).await {
                        return;
                    }
                }
            }
        };
        loop {
            let message = tokio::select! {
                () = stopped(stop.clone()) => break,
                next = subscriber.next() => match next {
                    Some(m) => m,
                    None => break,
                },
            };
            let handled = nats::handle(
                &self.telemetry,
                &self.client,
                &message,
                &retry,
                stopped(stop.clone()),
                |_attempt| async {
                    let event: OrderPlaced = serde_json::from_slice(&message.payload)
                        .map_err(|e| NotifyError::Unreadable(crate::events::unreadable(&e)))?;
                    tracing::info!(order.id = %event.order_id, "customer notified");
                    Ok::<_, NotifyError>(())
                },
            )
            .await;
            crate::consumers::report(
                &handled,
                "notification",
                &self.subject,
                &nats::dead_letter_subject(&self.subject),
            );
        }
        // What was published is sent before the process goes.
        let _ = subscriber.unsubscribe().await;
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "nats: notifications not all flushed");
        }
        tracing::info!(subject = %self.subject, "notification subscriber stopped");
    }
}
