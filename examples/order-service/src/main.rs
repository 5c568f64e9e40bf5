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
use looptel_telemetry::{Drained, Shutdown, Telemetry};

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
    /// After SIGTERM, how long requests in flight may take to finish (ms);
    /// connections still open then are cut, and telemetry is flushed
    /// either way. Keep it under the orchestrator's grace period.
    #[arg(long, env = "DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    drain_timeout_ms: u64,
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
    let baggage = order_service::baggage_policy();
    let mut telemetry = Telemetry::from_env()
        .service_name("order-service")
        .service_version(env!("CARGO_PKG_VERSION"))
        .promote_baggage(baggage.promotion())
        .baggage_policy(baggage.inject_policy())
        .init()
        .context("starting telemetry")?;

    let metrics = order_service::Metrics::new();
    order_service::register_drops(
        metrics.registry(),
        telemetry.logs().clone(),
        &baggage,
        telemetry.exports().clone(),
    );
    // With OTEL_METRICS_EXPORTER=otlp (or an OTLP endpoint), the same RED
    // metrics are also pushed to the collector; /metrics serves them still.
    telemetry.push_metrics(metrics.registry().clone());
    let faults = order_service::faults::FaultSwitch::new();

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
        let (instrumentation, metrics) = (telemetry.instrumentation(), metrics.clone());
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
    let messaging =
        order_service::events::telemetry(telemetry.instrumentation(), metrics.messaging().clone());
    let events = order_service::events::Events::new(
        broker.producer().context("creating the Kafka producer")?,
        messaging.clone(),
    );
    let (stop_consumers, consumers_stopped) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = consumers_stopped.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let mut consumers = Vec::new();
    let mut _amqp = None;
    let payments = match &args.amqp_url {
        None => None,
        Some(url) => {
            let (payments, connection) =
                order_service::events::Payments::connect(url, messaging.clone())
                    .await
                    .context("connecting to RabbitMQ")?;
            tracing::info!("payments through RabbitMQ");
            _amqp = Some(connection);
            consumers.push(tokio::spawn({
                let (payments, stopped) = (payments.clone(), stopped());
                async move {
                    if let Err(e) = payments.consume(stopped).await {
                        tracing::error!(error = %e, "payment consumer stopped");
                    }
                }
            }));
            Some(payments)
        }
    };
    consumers.push(tokio::spawn(order_service::events::fulfil(
        broker
            .fulfilment_consumer()
            .context("creating the fulfilment consumer")?,
        messaging,
        payments,
        faults.clone(),
        stopped(),
    )));

    let client =
        order_service::inventory::client(telemetry.instrumentation(), &metrics, grpc_addr)?;
    let dependencies = order_service::Dependencies {
        inventory: client,
        events: Some(events.clone()),
    };
    let mut app = order_service::app(telemetry.instrumentation(), baggage, metrics, dependencies)?;
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
    let _ = stop_grpc.send(());
    match tokio::time::timeout(drain, inventory).await {
        Ok(joined) => joined
            .context("joining the inventory")?
            .context("serving the inventory")?,
        Err(_) => tracing::warn!("the inventory did not stop within the drain deadline"),
    }
    // Every event out (librdkafka's flush blocks: off the async threads),
    // then the consumers stop.
    let flushing = events.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush(drain)).await;
    let _ = stop_consumers.send(true);
    for c in consumers {
        let _ = tokio::time::timeout(drain, c).await;
    }
    drop(broker);

    tracing::info!("order-service stopped");
    // What could not be flushed is logged, with how many spans and log
    // records were lost; how the collector failed (refused, or silent until
    // the timeout) does not change the exit status: the work was done.
    let _ = telemetry.shutdown();
    Ok(())
}
