//! `order-service`: the looptel reference service.
//!
//! Runs with embedded defaults — no collector needed: logs are JSON lines on
//! standard output, spans JSON lines on standard error. Set
//! `OTEL_EXPORTER_OTLP_ENDPOINT` to send traces to a collector.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use looptel_telemetry::{Telemetry, shutdown_signal};

/// The looptel reference order service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let baggage = order_service::baggage_policy();
    let telemetry = Telemetry::from_env()
        .service_name("order-service")
        .service_version(env!("CARGO_PKG_VERSION"))
        .promote_baggage(baggage.promotion())
        .baggage_policy(baggage.inject_policy())
        .init()
        .context("starting telemetry")?;

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(http.addr = %addr, "order-service listening");

    axum::serve(
        listener,
        order_service::app(
            telemetry.instrumentation(),
            baggage,
            order_service::Metrics::new(),
        )?,
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving")?;

    tracing::info!("order-service stopped");
    telemetry.shutdown().context("flushing telemetry")?;
    Ok(())
}
