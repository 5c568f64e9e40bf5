//! `looptel-doctor`: see the crate's README.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use looptel_doctor::checks::{self, Thresholds};
use looptel_doctor::report::{self, Format};
use looptel_doctor::{Inputs, gather};

/// Can my code be observed? The common observability pitfalls, checked
/// against a running service: pass, warn, fail or not-observable, with
/// the evidence and the fix.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The service's metrics endpoint (scraped as OpenMetrics, or text).
    #[arg(long, env = "DOCTOR_METRICS_URL")]
    metrics_url: Option<String>,
    /// A URL of the service: a few requests with a sampled `traceparent`
    /// and baggage are sent and followed.
    #[arg(long, env = "DOCTOR_PROBE")]
    probe: Option<String>,
    /// How many probes.
    #[arg(long, default_value_t = 5)]
    probes: usize,
    /// A header every probe carries, `name: value` (repeatable): what
    /// puts it inside the service's trust boundary, so that its trace is
    /// continued (a gateway's header, say).
    #[arg(long = "probe-header", value_parser = parse_header)]
    probe_headers: Vec<(String, String)>,
    /// A file of the service's settings (`KEY=value` lines).
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// A running process whose environment holds the service's settings.
    #[arg(long)]
    env_of: Option<u32>,
    /// A file of the service's log lines.
    #[arg(long)]
    logs: Option<PathBuf>,
    /// A file of its exported spans, OTLP JSON lines.
    #[arg(long)]
    traces: Option<PathBuf>,
    /// Receive its spans over OTLP/HTTP on this address while checking
    /// (point the service's OTEL_EXPORTER_OTLP_ENDPOINT here).
    #[arg(long)]
    otlp_listen: Option<String>,
    /// How long to receive, seconds.
    #[arg(long, default_value_t = 30)]
    listen_for: u64,
    /// Tempo: the probes' and the exemplars' traces are read from it.
    #[arg(long)]
    tempo_url: Option<String>,
    /// Jaeger's query service, likewise.
    #[arg(long)]
    jaeger_url: Option<String>,
    /// Seconds to wait before reading traces and lines from a backend
    /// (export delay and ingestion).
    #[arg(long, default_value_t = 10)]
    trace_wait: u64,
    /// Loki: the service's last 5 minutes of lines.
    #[arg(long)]
    loki_url: Option<String>,
    /// Loki's stream selector (default: `{service_name="…"}` from the
    /// service's `target_info`).
    #[arg(long)]
    loki_selector: Option<String>,
    /// The SLO spec: latency bounds must be bucket edges.
    #[arg(long)]
    slo: Option<PathBuf>,
    /// `production`, `staging`, … (default: the settings'
    /// `deployment.environment`).
    #[arg(long)]
    environment: Option<String>,
    /// Table, JSON or Markdown.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Exit 1 on a warning too.
    #[arg(long, value_parser = ["fail", "warn"], default_value = "fail")]
    fail_on: String,
    /// Each request's timeout, seconds.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    /// More distinct values in one label than this fail.
    #[arg(long, default_value_t = 100)]
    max_label_values: usize,
    /// Fewer buckets in a duration histogram than this warn.
    #[arg(long, default_value_t = 8)]
    min_buckets: usize,
    /// A trace deeper than this warns.
    #[arg(long, default_value_t = 10)]
    max_depth: usize,
    /// A trace with more spans than this warns.
    #[arg(long, default_value_t = 100)]
    max_spans_per_trace: usize,
    /// One span name repeated more than this in a trace warns.
    #[arg(long, default_value_t = 20)]
    max_repeated_spans: usize,
    /// An export queue bound above this warns.
    #[arg(long, default_value_t = 100_000)]
    max_queue: u64,
    /// An export timeout above this (ms), or none, warns.
    #[arg(long, default_value_t = 30_000)]
    max_export_timeout_ms: u64,
    /// The name the report gives the service.
    #[arg(long, default_value = "the service")]
    name: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    if args.metrics_url.is_none()
        && args.probe.is_none()
        && args.env_file.is_none()
        && args.env_of.is_none()
        && args.logs.is_none()
        && args.traces.is_none()
        && args.otlp_listen.is_none()
        && args.tempo_url.is_none()
        && args.jaeger_url.is_none()
        && args.loki_url.is_none()
    {
        eprintln!(
            "looptel-doctor: nothing to check: give --metrics-url, --probe, --env-file, --env-of, --logs, --traces, --otlp-listen, --tempo-url, --jaeger-url or --loki-url"
        );
        std::process::exit(2);
    }
    let inputs = Inputs {
        metrics_url: args.metrics_url,
        probe: args.probe,
        probes: args.probes,
        probe_headers: args.probe_headers,
        env_file: args.env_file,
        env_of: args.env_of,
        logs: args.logs,
        traces: args.traces,
        otlp_listen: args.otlp_listen,
        listen_for: Some(Duration::from_secs(args.listen_for)),
        tempo_url: args.tempo_url,
        jaeger_url: args.jaeger_url,
        trace_wait: Some(Duration::from_secs(args.trace_wait)),
        loki_url: args.loki_url,
        loki_selector: args.loki_selector,
        slo: args.slo,
        environment: args.environment,
        timeout: Some(Duration::from_secs(args.timeout)),
    };
    if let Some(addr) = &inputs.otlp_listen {
        eprintln!(
            "looptel-doctor: receiving OTLP/HTTP on http://{addr} for {} s",
            args.listen_for
        );
    }
    let (observed, problems) = gather(&inputs).await;
    let thresholds = Thresholds {
        max_label_values: args.max_label_values,
        min_buckets: args.min_buckets,
        max_depth: args.max_depth,
        max_spans_per_trace: args.max_spans_per_trace,
        max_repeated_spans: args.max_repeated_spans,
        max_queue: args.max_queue,
        max_export_timeout_ms: args.max_export_timeout_ms,
    };
    let findings = checks::run(&observed, &thresholds);
    let colour = args.format == Format::Table
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    print!(
        "{}",
        report::render(args.format, &args.name, &findings, &problems, colour)
    );
    for p in &problems {
        eprintln!("looptel-doctor: could not read {p}");
    }
    std::process::exit(report::exit_code(
        &findings,
        &problems,
        args.fail_on == "warn",
    ));
}

/// `name: value` (or `name=value`) as a header.
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .or_else(|| text.split_once('='))
        .ok_or_else(|| format!("{text:?}: not `name: value`"))?;
    let (name, value) = (name.trim(), value.trim());
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?}: not a header name"))?;
    reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("{value:?}: not a header value"))?;
    Ok((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::parse_header;

    #[test]
    fn probe_headers_are_name_and_value_or_refused() {
        assert_eq!(
            parse_header("x-tenant-id: acme"),
            Ok(("x-tenant-id".to_owned(), "acme".to_owned()))
        );
        assert_eq!(
            parse_header("x-tenant-id=acme"),
            Ok(("x-tenant-id".to_owned(), "acme".to_owned()))
        );
        assert!(parse_header("no separator").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert!(parse_header("x-ok: line\nbreak").is_err());
    }
}
