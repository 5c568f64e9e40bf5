//! `w3c-conformance`: run it, then point the W3C Trace Context test harness
//! at `http://127.0.0.1:5000/test`.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use looptel_telemetry::{Telemetry, TracesExporter, shutdown_signal};

/// A service in the W3C Trace Context test harness's contract.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "ADDR", default_value = "127.0.0.1:5000")]
    addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = Telemetry::from_env()
        .service_name("w3c-conformance")
        .traces_exporter(TracesExporter::None)
        .init()
        .context("starting telemetry")?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    tracing::info!(addr = %listener.local_addr().context("address")?, "listening");
    axum::serve(listener, w3c_conformance::app(telemetry.instrumentation()))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    telemetry.shutdown().context("flushing telemetry")?;
    Ok(())
}
