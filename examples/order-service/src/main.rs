//! `order-service`: the looptel reference service.
//!
//! Runs with embedded defaults — no collector, no broker needed: logs are
//! JSON lines on standard output, spans JSON lines on standard error, order
//! events go through an in-process Kafka mock cluster. Set
//! `OTEL_EXPORTER_OTLP_ENDPOINT` to send traces to a collector,
//! `KAFKA_BROKERS` for a real Kafka, `AMQP_URL` to request payments
//! through RabbitMQ.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use looptel::{Drained, Shutdown};

/// The looptel reference order service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Address the inventory's gRPC service listens on; port 0 picks a
    /// free port. The order path calls it there.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,
    /// Serves the fault switch on `/admin/faults` (failures and latency
    /// injected into the inventory hop); off by default. The variable takes
    /// `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`.
    #[arg(long, env = "ENABLE_FAULTS", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    enable_faults: bool,
    /// Kafka bootstrap servers for the order events; unset, an embedded
    /// mock cluster (librdkafka's own, on 127.0.0.1) serves.
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// RabbitMQ (`amqp://guest:guest@127.0.0.1:5672/%2f`): fulfilment then
    /// requests each order's payment through it.
    #[arg(long, env = "AMQP_URL")]
    amqp_url: Option<String>,
    /// The exchange payment requests are published to; its dead letters
    /// go through `<exchange>.dlx`.
    #[arg(long, env = "PAYMENTS_EXCHANGE", default_value = "payments")]
    payments_exchange: String,
    /// The queue the payment consumer reads; its dead letters stay in
    /// `<queue>.dead`.
    #[arg(long, env = "PAYMENTS_QUEUE", default_value = "payments")]
    payments_queue: String,
    /// Attempts at a message whose processing fails by the consumer's
    /// fault, the first included, before it is dead-lettered (waits:
    /// 100 ms doubling, capped at 30 s, fully jittered).
    #[arg(long, env = "MESSAGE_MAX_ATTEMPTS", default_value_t = 5)]
    message_max_attempts: u32,
    /// How long a payment request waits for RabbitMQ when the connection
    /// is down (ms) before it fails (and is retried by fulfilment).
    #[arg(long, env = "PAYMENTS_PUBLISH_WAIT_MS", default_value_t = 5_000)]
    payments_publish_wait_ms: u64,
    /// NATS (`nats://127.0.0.1:4222`): customers are notified through it
    /// once their order is fulfilled.
    #[arg(long, env = "NATS_URL")]
    nats_url: Option<String>,
    /// The subject notifications go to; poison ones to `<subject>.dlq`.
    #[arg(long, env = "NOTIFY_SUBJECT", default_value = "orders.fulfilled")]
    notify_subject: String,
    /// The fulfilment consumer's Kafka session timeout (ms): how long a
    /// consumer that vanished holds its partitions, and how long a group
    /// rebalance may wait for its members (librdkafka's default).
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 45_000)]
    kafka_session_timeout_ms: u64,
    /// After SIGTERM, how long requests in flight may take to finish (ms);
    /// connections still open then are cut, and telemetry is flushed
    /// either way. Keep it under the orchestrator's grace period.
    #[arg(long, env = "DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    drain_timeout_ms: u64,
    /// `service.version`, as a deploy names the build (an image tag); the
    /// crate's version by default.
    #[arg(long, env = "SERVICE_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    service_version: String,
    /// Where to read about this deploy (a pipeline run), sent with its
    /// announcement to retro (`LOOPTEL_RETRO_URL`).
    #[arg(long, env = "DEPLOY_LINK")]
    deploy_link: Option<String>,
    /// How long a client may take to send a request's headers, idle
    /// keep-alive included (ms); then its connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    header_read_timeout_ms: u64,
    /// Connections served at once; more wait until one closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let drain = std::time::Duration::from_millis(args.drain_timeout_ms);
    // Telemetry from OTEL_*, the metrics registry with telemetry's own drop
    // counters on it (pushed over OTLP too when configured), readiness:
    // one handle.
    let lt = looptel::builder()
        .service_name("order-service")
        .service_version(args.service_version.clone())
        .baggage(order_service::baggage_policy())
        .init()
        .context("starting telemetry")?;
    let metrics = order_service::Metrics::on(lt.instruments().clone());
    // This deploy announced to retro (LOOPTEL_RETRO_URL, LOOPTEL_RETRO_TOKEN),
    // for the incident card's "what changed"; in the background, so a retro
    // that is down delays nothing.
    if let Some(retro) = looptel::retro::Announcer::from_env() {
        let mut change = looptel::retro::Change::deploy("order-service", &args.service_version);
        if let Some(link) = &args.deploy_link {
            change = change.link(link);
        }
        tokio::spawn(async move {
            match retro.announce(&change).await {
                Ok(()) => tracing::info!("deploy announced to retro"),
                Err(e) => tracing::warn!(error = %e, "deploy not announced to retro"),
            }
        });
    }
    // Every switch change is `looptel_change_time_seconds`: on the card.
    let faults = order_service::faults::FaultSwitch::recording(lt.instruments().changes().clone());

    // The inventory, a gRPC hop in the same binary.
    let grpc = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("binding {}", args.grpc_addr))?;
    let grpc_addr = grpc
        .local_addr()
        .context("reading the bound gRPC address")?;
    tracing::info!(grpc.addr = %grpc_addr, "inventory listening");
    let (stop_grpc, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let inventory = tokio::spawn({
        let (instrumentation, metrics) = (lt.instrumentation(), metrics.clone());
        let faults = faults.clone();
        async move {
            order_service::inventory::serve(grpc, instrumentation, &metrics, faults, async {
                let _ = grpc_stopped.await;
            })
            .await
        }
    });

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(http.addr = %addr, "order-service listening");

    // Order events: Kafka (embedded unless KAFKA_BROKERS), fulfilment in
    // this binary, payments through RabbitMQ when AMQP_URL is set.
    let broker = order_service::events::Broker::new(args.kafka_brokers.clone())
        .context("starting the embedded Kafka cluster")?;
    tracing::info!(
        kafka.brokers = broker.servers(),
        kafka.embedded = broker.is_embedded(),
        "order events on Kafka"
    );
    let messaging = order_service::events::telemetry(lt.instrumentation(), &metrics);
    let events = order_service::events::Events::new(
        broker.producer().context("creating the Kafka producer")?,
        messaging.clone(),
    );
    let health = metrics.health().clone();
    let retry = looptel::messaging::Retry::new(
        args.message_max_attempts,
        looptel::messaging::Backoff::default(),
    );
    // Stopped in this order at shutdown: fulfilment (it publishes payment
    // requests and notifications), then payments and notifications.
    let (stop_fulfilment, fulfilment_stops) = tokio::sync::watch::channel(false);
    let (stop_payments, payments_stop) = tokio::sync::watch::channel(false);
    let (stop_probe, probe_stops) = tokio::sync::watch::channel(false);
    let probe = tokio::spawn(order_service::inventory::probe(
        grpc_addr,
        health.dependency(order_service::inventory::DEPENDENCY),
        std::time::Duration::from_secs(2),
        probe_stops,
    ));
    let (payments, payment_consumer) = match &args.amqp_url {
        None => (None, None),
        Some(url) => {
            let names = order_service::payments::Names {
                exchange: args.payments_exchange.clone(),
                queue: args.payments_queue.clone(),
            };
            tracing::info!(
                exchange = %names.exchange,
                queue = %names.queue,
                "payments through RabbitMQ"
            );
            let (payments, task) = order_service::payments::Payments::start(
                url.clone(),
                names,
                messaging.clone(),
                retry,
                std::time::Duration::from_millis(args.payments_publish_wait_ms),
                &health,
                payments_stop.clone(),
            );
            (Some(payments), Some(task))
        }
    };
    let (notifications, notification_subscriber) = match &args.nats_url {
        None => (None, None),
        Some(url) => {
            tracing::info!(subject = %args.notify_subject, "notifications through NATS");
            let (notifications, task) = order_service::notifications::Notifications::start(
                url,
                args.notify_subject.clone(),
                messaging.clone(),
                retry,
                &health,
                payments_stop.clone(),
            )
            .await
            .context("configuring the NATS client")?;
            (Some(notifications), Some(task))
        }
    };
    let fulfilment = tokio::spawn(order_service::events::fulfil(
        broker
            .fulfilment_consumer(
                &health,
                std::time::Duration::from_millis(args.kafka_session_timeout_ms),
            )
            .context("creating the fulfilment consumer")?,
        order_service::events::Fulfil {
            telemetry: messaging,
            payments,
            notifications,
            faults: faults.clone(),
            retry,
            dead_letters: events.dead_letters(),
            running: health.dependency(order_service::events::CONSUMER),
        },
        fulfilment_stops,
    ));

    let client = order_service::inventory::client(lt.instrumentation(), &metrics, grpc_addr)?;
    let dependencies = order_service::Dependencies {
        inventory: client,
        events: Some(events.clone()),
    };
    let mut app = order_service::app(
        lt.instrumentation(),
        lt.baggage().clone(),
        metrics,
        dependencies,
    )?;
    if args.enable_faults {
        tracing::warn!(
            path = order_service::faults::FAULTS_PATH,
            "fault switch enabled"
        );
        app = app.merge(order_service::faults::routes(faults));
    }
    // A client that never finishes its request cannot hold the process
    // past the drain deadline: the flush below always runs.
    let shutdown = Shutdown::on_signal();
    let limits = order_service::serve::Limits {
        header_read_timeout: std::time::Duration::from_millis(args.header_read_timeout_ms),
        max_connections: args.max_connections,
    };
    let server = order_service::serve::serve(listener, app, limits, shutdown.clone());
    if let Drained::TimedOut = shutdown.drain(server, drain).await {
        // Logged by the drain; the flush below runs all the same.
    }
    // The inventory stops on purpose: no probe reports it down.
    let _ = stop_probe.send(true);
    let _ = probe.await;
    let _ = stop_grpc.send(());
    match tokio::time::timeout(drain, inventory).await {
        Ok(joined) => joined
            .context("joining the inventory")?
            .context("serving the inventory")?,
        Err(_) => tracing::warn!("the inventory did not stop within the drain deadline"),
    }
    // The consumers finish the message in hand and return the rest:
    // fulfilment first (it publishes payment requests), then payments.
    let _ = stop_fulfilment.send(true);
    if tokio::time::timeout(drain, fulfilment).await.is_err() {
        tracing::warn!("the fulfilment consumer did not stop within the drain deadline");
    }
    let _ = stop_payments.send(true);
    for (what, task) in [
        ("payment consumer", payment_consumer),
        ("notification subscriber", notification_subscriber),
    ] {
        if let Some(task) = task
            && tokio::time::timeout(drain, task).await.is_err()
        {
            tracing::warn!("the {what} did not stop within the drain deadline");
        }
    }
    // Every event and dead letter out (librdkafka's flush blocks: off the
    // async threads).
    let flushing = events.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush(drain)).await;
    drop(broker);

    tracing::info!("order-service stopped");
    // What could not be flushed is logged, with how many spans and log
    // records were lost; how the collector failed (refused, or silent until
    // the timeout) does not change the exit status: the work was done.
    let _ = lt.shutdown();
    Ok(())
}
