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
use looptel_retro::{Grafana, LogSource, Retro, Settings, Store, Token, Tokens, TraceSource};
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

/// A token from its variable or its file (a file wins; its last newline is
/// dropped); the flag's name for the error.
fn token(
    value: Option<&str>,
    file: Option<&std::path::Path>,
    flag: &str,
) -> anyhow::Result<Option<Token>> {
    let secret = match (file, value) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --{flag}-file {}", path.display()))?,
        (None, Some(v)) => v.to_owned(),
        (None, None) => return Ok(None),
    };
    Token::new(&secret)
        .map(Some)
        .with_context(|| format!("the {flag} token"))
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
    /// The longest baseline a burn is compared with: the stretch just
    /// before it, as long as there is data.
    #[arg(long, env = "RETRO_BASELINE", default_value = "1h", value_parser = duration)]
    baseline: Duration,
    /// With less data than this before a burn, the card says "no
    /// baseline".
    #[arg(long, env = "RETRO_MIN_BASELINE", default_value = "2m", value_parser = duration)]
    min_baseline: Duration,
    /// Changes this long before a burn are on the card.
    #[arg(long, env = "RETRO_CHANGES_WINDOW", default_value = "1h", value_parser = duration)]
    changes_window: Duration,
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
    /// Where the cards live: `sqlite://FILE` (created if missing, WAL mode)
    /// or `postgres://USER@HOST/DB` for several replicas on one database.
    #[arg(long, env = "RETRO_DATABASE_URL", default_value = "sqlite://retro.db")]
    database_url: String,
    /// Cards first received longer ago are deleted (`90d`, `720h`).
    #[arg(long, env = "RETRO_RETENTION", default_value = "90d", value_parser = duration)]
    retention: Duration,
    /// The bearer token `POST /alerts` requires (Alertmanager's
    /// `http_config.authorization`).
    #[arg(long, env = "RETRO_WEBHOOK_TOKEN", hide_env_values = true)]
    webhook_token: Option<String>,
    /// A file holding the webhook token (wins over the variable).
    #[arg(long, env = "RETRO_WEBHOOK_TOKEN_FILE")]
    webhook_token_file: Option<PathBuf>,
    /// The bearer token `POST /incidents/{id}/actions` requires.
    #[arg(long, env = "RETRO_WRITE_TOKEN", hide_env_values = true)]
    write_token: Option<String>,
    /// A file holding the write token.
    #[arg(long, env = "RETRO_WRITE_TOKEN_FILE")]
    write_token_file: Option<PathBuf>,
    /// The bearer token reads (cards, list, `/metrics`) require; open
    /// without it. `/health` is always open.
    #[arg(long, env = "RETRO_READ_TOKEN", hide_env_values = true)]
    read_token: Option<String>,
    /// A file holding the read token.
    #[arg(long, env = "RETRO_READ_TOKEN_FILE")]
    read_token_file: Option<PathBuf>,
    /// Serve writes without tokens on an address other than loopback
    /// (refused otherwise).
    #[arg(long, env = "RETRO_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
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
    let registry = Registry::new();
    let http = Http::with_metrics(telemetry.instrumentation(), args.source_timeout, &registry);
    let tokens = Tokens {
        webhook: token(
            args.webhook_token.as_deref(),
            args.webhook_token_file.as_deref(),
            "webhook-token",
        )?,
        write: token(
            args.write_token.as_deref(),
            args.write_token_file.as_deref(),
            "write-token",
        )?,
        read: token(
            args.read_token.as_deref(),
            args.read_token_file.as_deref(),
            "read-token",
        )?,
    };
    let open_writes: Vec<&str> = [
        (
            "POST /alerts (RETRO_WEBHOOK_TOKEN)",
            tokens.webhook.is_none(),
        ),
        (
            "POST /incidents/{id}/actions (RETRO_WRITE_TOKEN)",
            tokens.write.is_none(),
        ),
    ]
    .into_iter()
    .filter_map(|(what, open)| open.then_some(what))
    .collect();
    if !open_writes.is_empty() && !args.addr.ip().is_loopback() {
        if !args.insecure_no_auth {
            anyhow::bail!(
                "refusing to serve writes without a token on {}, where anyone who reaches it could open or amend incidents: set {} (or --insecure-no-auth)",
                args.addr,
                open_writes.join(" and ")
            );
        }
        tracing::warn!(
            http.addr = %args.addr,
            open = %open_writes.join(", "),
            "--insecure-no-auth: writes are open to anyone who reaches this address"
        );
    }

    let store = Store::open(&args.database_url)
        .await
        .context("opening the card store")?;
    tracing::info!(
        store.backend = ?store.backend(),
        store.location = store.location(),
        cards = store.count().await.unwrap_or(0),
        "cards are kept in {}",
        store.location()
    );

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

    let mut builder = Retro::builder(
        spec,
        Arc::new(Prometheus::new(&args.prometheus_url, http.clone())),
        store.clone(),
    )
    .registry(&registry)
    .tokens(tokens)
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
        retention: args.retention,
        baseline: args.baseline,
        min_baseline: args.min_baseline,
        changes_window: args.changes_window,
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
    // Work left by a previous run (or a replica that stopped) is taken up
    // now, then at every sweep.
    let sweeper = retro.spawn_sweeper();
    tracing::info!(http.addr = %addr, "looptel-retro listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    sweeper.abort();
    // Work in flight is given back: the next start (or the other replica)
    // takes it up at once instead of waiting for its claim to lapse.
    let released = retro.release().await.unwrap_or(0);
    store.close().await;
    tracing::info!(released, "looptel-retro stopped");
    telemetry.shutdown().context("flushing telemetry")?;
    Ok(())
}
