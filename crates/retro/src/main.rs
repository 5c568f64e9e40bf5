//! `looptel-retro`: the alert retrospection service.
//!
//! Point Alertmanager's webhook at `POST /alerts`; open `/incidents`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use looptel_http_layer::server::{ServerLayer, skip_paths};
use looptel_red_metrics::{HttpServerMetrics, Registry};
use looptel_retro::sources::{
    Http, files, jaeger::Jaeger, loki, loki::Loki, prometheus::Prometheus, tempo::Tempo,
};
use looptel_retro::{Grafana, LogSource, Retro, Settings, TraceSource};
use looptel_telemetry::{Telemetry, shutdown_signal};

fn label_name(s: &str) -> Result<String, String> {
    if loki::is_label_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: a LogQL label name such as trace_id"))
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    looptel_slo::parse_duration(s)
        .ok_or_else(|| format!("{s:?}: a duration such as 10m, 30s, 500ms"))
}

/// Turns a firing alert into an incident card holding the traces and log
/// lines that explain it, and checks the recovery once it resolves.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "RETRO_ADDR", default_value = "127.0.0.1:9099")]
    addr: SocketAddr,
    /// The SLO spec the alert rules were generated from.
    #[arg(long, env = "RETRO_SPEC")]
    spec: PathBuf,
    /// Prometheus, for exemplars, the SLI and the dependencies' RED.
    #[arg(
        long,
        env = "RETRO_PROMETHEUS_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    prometheus_url: String,
    /// Traces from Grafana Tempo (`http://tempo:3200`).
    #[arg(long, env = "RETRO_TEMPO_URL", group = "traces")]
    tempo_url: Option<String>,
    /// Traces from Jaeger's query service (`http://jaeger:16686`).
    #[arg(long, env = "RETRO_JAEGER_URL", group = "traces")]
    jaeger_url: Option<String>,
    /// Traces from a file of OTLP JSON lines (`LOOPTEL_TRACES_FILE` of the service).
    #[arg(long, env = "RETRO_TRACES_FILE", group = "traces")]
    traces_file: Option<PathBuf>,
    /// Log lines from Grafana Loki (`http://loki:3100`).
    #[arg(long, env = "RETRO_LOKI_URL", group = "logs")]
    loki_url: Option<String>,
    /// The Loki streams to search; default `{service_name="<the spec's service>"}`.
    #[arg(long, env = "RETRO_LOKI_SELECTOR")]
    loki_selector: Option<String>,
    /// Match trace ids on this Loki label or structured metadata field
    /// (`trace_id` for records ingested over OTLP) instead of in the line.
    #[arg(long, env = "RETRO_LOKI_TRACE_LABEL", value_parser = label_name)]
    loki_trace_label: Option<String>,
    /// Log lines from a file of looptel's JSON log lines.
    #[arg(long, env = "RETRO_LOGS_FILE", group = "logs")]
    logs_file: Option<PathBuf>,
    /// Exemplars are read this long either side of the alert's start.
    #[arg(long, env = "RETRO_WINDOW", default_value = "10m", value_parser = duration)]
    window: Duration,
    /// The recovery window checked after the alert resolves; default the
    /// fired pair's short window.
    #[arg(long, env = "RETRO_RECOVERY_WINDOW", value_parser = duration)]
    recovery_window: Option<Duration>,
    /// Fewer calls in the recovery window: no traffic, not verified.
    #[arg(long, env = "RETRO_MIN_REQUESTS", default_value_t = 10.0)]
    min_requests: f64,
    /// Waited after the recovery window, for the last scrape.
    #[arg(long, env = "RETRO_SETTLE", default_value = "15s", value_parser = duration)]
    settle: Duration,
    /// Timeout of every call to a source.
    #[arg(long, env = "RETRO_SOURCE_TIMEOUT", default_value = "5s", value_parser = duration)]
    source_timeout: Duration,
    /// Grafana, for Explore links.
    #[arg(long, env = "RETRO_GRAFANA_URL")]
    grafana_url: Option<String>,
    /// Grafana's Tempo data source uid.
    #[arg(long, env = "RETRO_GRAFANA_TEMPO_UID", default_value = "tempo")]
    grafana_tempo_uid: String,
    /// Grafana's Loki data source uid.
    #[arg(long, env = "RETRO_GRAFANA_LOKI_UID", default_value = "loki")]
    grafana_loki_uid: String,
    /// Grafana's Prometheus data source uid.
    #[arg(
        long,
        env = "RETRO_GRAFANA_PROMETHEUS_UID",
        default_value = "prometheus"
    )]
    grafana_prometheus_uid: String,
    /// A summary of each card is POSTed here (JSON) once its evidence is in.
    #[arg(long, env = "RETRO_NOTIFY_URL")]
    notify_url: Option<String>,
    /// Where people reach this service, for links in notifications.
    #[arg(long, env = "RETRO_PUBLIC_URL")]
    public_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec = looptel_slo::read_spec(&args.spec).context("reading the SLO spec")?;
    let telemetry = Telemetry::from_env()
        .service_name("looptel-retro")
        .service_version(env!("CARGO_PKG_VERSION"))
        .init()
        .context("starting telemetry")?;
    let http = Http::new(telemetry.instrumentation(), args.source_timeout);

    let traces: Option<Arc<dyn TraceSource>> = if let Some(url) = &args.tempo_url {
        Some(Arc::new(Tempo::new(url, http.clone())))
    } else if let Some(url) = &args.jaeger_url {
        Some(Arc::new(Jaeger::new(url, http.clone())))
    } else {
        args.traces_file
            .as_ref()
            .map(|p| Arc::new(files::OtlpFile::new(p)) as Arc<dyn TraceSource>)
    };
    let logs: Option<Arc<dyn LogSource>> = if let Some(url) = &args.loki_url {
        let selector = args
            .loki_selector
            .clone()
            .unwrap_or_else(|| format!("{{service_name=\"{}\"}}", spec.service));
        let loki = Loki::new(url, selector, http.clone());
        Some(Arc::new(match &args.loki_trace_label {
            Some(label) => loki.trace_label(label),
            None => loki,
        }))
    } else {
        args.logs_file
            .as_ref()
            .map(|p| Arc::new(files::JsonLogFile::new(p)) as Arc<dyn LogSource>)
    };
    if traces.is_none() {
        tracing::warn!("no trace source: cards will name exemplars' trace ids only");
    }
    if logs.is_none() {
        tracing::warn!("no log source: cards will hold no log lines");
    }

    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let registry = Registry::new();
    let mut builder = Retro::builder(
        spec,
        Arc::new(Prometheus::new(&args.prometheus_url, http.clone())),
    )
    .registry(&registry)
    .http(http)
    .settings(Settings {
        window: args.window,
        recovery_window: args.recovery_window,
        min_requests: args.min_requests,
        settle: args.settle,
        grafana: args.grafana_url.map(|base| Grafana {
            base,
            tempo_uid: args.grafana_tempo_uid,
            loki_uid: args.grafana_loki_uid,
            prometheus_uid: args.grafana_prometheus_uid,
        }),
        public_url: Some(args.public_url.unwrap_or_else(|| format!("http://{addr}"))),
        notify_url: args.notify_url,
        ..Settings::default()
    });
    if let Some(t) = traces {
        builder = builder.traces(t);
    }
    if let Some(l) = logs {
        builder = builder.logs(l);
    }
    let retro = builder.build();
    let app = retro.router().layer(
        ServerLayer::new(telemetry.instrumentation())
            .filter(skip_paths(["/health", "/metrics"]))
            .hook(HttpServerMetrics::new(&registry)),
    );
    tracing::info!(http.addr = %addr, "looptel-retro listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("looptel-retro stopped");
    telemetry.shutdown().context("flushing telemetry")?;
    Ok(())
}
