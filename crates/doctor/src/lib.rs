//! *Can my code be observed?* — the common observability pitfalls checked
//! against a running service from the outside: its `/metrics`, its
//! OpenTelemetry settings, its log lines, and a few probes of its own.
//!
//! [`checks::CHECKS`] lists every check by its stable id; [`gather`] reads
//! what [`Inputs`] names (each input optional; one that cannot be read is
//! named in the report), [`checks::run`] judges, [`report::render`]
//! writes the table, JSON or Markdown.
//!
//! ```no_run
//! # async fn run() {
//! use looptel_doctor::{Inputs, checks, gather, report};
//!
//! let inputs = Inputs {
//!     metrics_url: Some("http://127.0.0.1:8080/metrics".to_owned()),
//!     probe: Some("http://127.0.0.1:8080/orders".to_owned()),
//!     ..Inputs::default()
//! };
//! let (observed, problems) = gather(&inputs).await;
//! let findings = checks::run(&observed, &checks::Thresholds::default());
//! print!("{}", report::render(report::Format::Table, "the service", &findings, &problems, false));
//! # }
//! ```

pub mod checks;
pub mod exposition;
pub mod otlp;
pub mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use checks::{Observed, Probes};

/// What to look at; every field optional.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// The service's `/metrics`.
    pub metrics_url: Option<String>,
    /// A URL of the service to send probes to.
    pub probe: Option<String>,
    /// How many probes.
    pub probes: usize,
    /// Headers every probe carries besides `traceparent` and `baggage`
    /// (name, value): what puts it inside the service's trust boundary —
    /// a gateway's header, say — so that its trace is continued.
    pub probe_headers: Vec<(String, String)>,
    /// A file of `KEY=value` lines: the service's settings.
    pub env_file: Option<PathBuf>,
    /// A process whose environment holds the service's settings.
    pub env_of: Option<u32>,
    /// A file of the service's log lines.
    pub logs: Option<PathBuf>,
    /// A file of its exported spans, OTLP JSON lines (the collector's file
    /// exporter, `LOOPTEL_TRACES_FILE`).
    pub traces: Option<PathBuf>,
    /// Receive its spans over OTLP/HTTP on this address while checking.
    pub otlp_listen: Option<String>,
    /// How long to receive (default 30 s, counted from the start).
    pub listen_for: Option<Duration>,
    /// Tempo, to read the probes' and the exemplars' traces from.
    pub tempo_url: Option<String>,
    /// Jaeger (its query service), likewise.
    pub jaeger_url: Option<String>,
    /// How long to wait before reading them (the service's export delay
    /// and the backend's ingestion; default 10 s).
    pub trace_wait: Option<Duration>,
    /// Loki, to read the last minutes of the service's lines from.
    pub loki_url: Option<String>,
    /// The streams (`{service_name="orders"}`; default: the service name
    /// `target_info` gives).
    pub loki_selector: Option<String>,
    /// The SLO spec.
    pub slo: Option<PathBuf>,
    /// `production`, `staging`, …: overrides the settings'
    /// `deployment.environment`.
    pub environment: Option<String>,
    /// Each request's timeout.
    pub timeout: Option<Duration>,
}

/// How long `--otlp-listen` receives by default.
pub const LISTEN_FOR: Duration = Duration::from_secs(30);

/// The most spans read from a traces file.
pub const MAX_SPANS: usize = 200_000;

/// What OpenMetrics scrapers send.
const OPENMETRICS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

/// Reads every input given; those that could not be read are returned as
/// problems, one clear sentence each.
pub async fn gather(inputs: &Inputs) -> (Observed, Vec<String>) {
    let mut o = Observed::default();
    let mut problems = Vec::new();
    // Listening first: the service's exports reach it while the rest runs.
    let receiver = match &inputs.otlp_listen {
        None => None,
        Some(addr) => match otlp::Receiver::bind(addr).await {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(format!("--otlp-listen: {e}"));
                None
            }
        },
    };
    let timeout = inputs.timeout.unwrap_or(Duration::from_secs(5));
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("cannot build an HTTP client: {e}"));
            return (o, problems);
        }
    };
    if let Some(path) = &inputs.env_file {
        match std::fs::read_to_string(path) {
            Ok(text) => o.env = Some(parse_env(&text, '\n')),
            Err(e) => problems.push(format!("--env-file {}: {e}", path.display())),
        }
    }
    if let Some(pid) = inputs.env_of {
        match std::fs::read(format!("/proc/{pid}/environ")) {
            Ok(bytes) => {
                let env = parse_env(&String::from_utf8_lossy(&bytes), '\0');
                o.env.get_or_insert_with(BTreeMap::new).extend(env);
            }
            Err(e) => problems.push(format!(
                "--env-of {pid}: cannot read its environment ({e}); run as its user or root"
            )),
        }
    }
    o.production = match &inputs.environment {
        Some(e) => Some(matches!(
            e.to_ascii_lowercase().as_str(),
            "prod" | "production" | "live"
        )),
        None => o.env.as_ref().and_then(checks::production_of),
    };
    if let Some(path) = &inputs.slo {
        match looptel_slo::read_spec(path) {
            Ok(spec) => o.slo = Some(spec),
            Err(e) => problems.push(format!("--slo {}: {e}", path.display())),
        }
    }
    // Probes first, so that the scrape holds their series and exemplars.
    if let Some(url) = &inputs.probe {
        match probe(&client, url, inputs.probes.max(1), &inputs.probe_headers).await {
            Ok(p) => o.probes = Some(p),
            Err(e) => problems.push(format!("--probe {url}: {e}")),
        }
    }
    if let Some(url) = &inputs.metrics_url {
        match scrape(&client, url).await {
            Ok(m) => o.metrics = Some(m),
            Err(e) => problems.push(format!("--metrics-url {url}: {e}")),
        }
    }
    // Backends last: what the probes and the exemplars name, once ingested.
    backends(inputs, &mut o, &mut problems, timeout).await;
    // Logs and spans last: the probes' lines and spans have been written
    // (the batch processor's delay permitting).
    if let Some(path) = &inputs.logs {
        match std::fs::read(path) {
            Ok(bytes) => o.logs = Some(complete_lines(&bytes)),
            Err(e) => problems.push(format!("--logs {}: {e}", path.display())),
        }
    }
    if let Some(path) = &inputs.traces {
        let file = looptel_retro::sources::files::OtlpFile::new(path.clone());
        match file.traces(MAX_SPANS) {
            Ok(traces) => o.traces = Some(traces),
            Err(e) => problems.push(format!("--traces {}: {}", path.display(), e.message)),
        }
    }
    if let Some(r) = receiver {
        let documents = r.finish(inputs.listen_for.unwrap_or(LISTEN_FOR)).await;
        let mut traces = looptel_retro::sources::files::Traces::default();
        for d in &documents {
            if !traces.add(d, MAX_SPANS) {
                break;
            }
        }
        let received = traces.into_traces();
        if received.is_empty() {
            problems.push(format!(
                "--otlp-listen: no span received in {} s (is OTEL_EXPORTER_OTLP_ENDPOINT pointed here, over http/protobuf or http/json?)",
                inputs.listen_for.unwrap_or(LISTEN_FOR).as_secs()
            ));
        }
        o.traces.get_or_insert_with(Vec::new).extend(received);
    }
    (o, problems)
}

/// The trace ids worth reading from a backend: the probes', then the
/// exemplars' (at most 50).
fn wanted_traces(o: &Observed) -> Vec<String> {
    let mut ids: Vec<String> = o
        .probes
        .iter()
        .flat_map(|p| p.answers.iter().map(|(t, _)| t.clone()))
        .collect();
    if let Some((families, _)) = &o.metrics {
        for t in exposition::exemplar_trace_ids(families) {
            if !ids.iter().any(|i| i == t) {
                ids.push(t.to_owned());
            }
        }
    }
    ids.truncate(50);
    ids
}

/// Traces from Tempo or Jaeger, log lines from Loki.
async fn backends(
    inputs: &Inputs,
    o: &mut Observed,
    problems: &mut Vec<String>,
    timeout: Duration,
) {
    use looptel_retro::sources::{Http, TraceSource};
    let http = || {
        Http::new(
            looptel_core::Instrumentation::disabled(looptel_core::Propagator::default()),
            timeout,
        )
    };
    let source: Option<(&str, Box<dyn TraceSource>)> = match (&inputs.tempo_url, &inputs.jaeger_url)
    {
        (Some(url), _) => Some((
            "--tempo-url",
            Box::new(looptel_retro::sources::tempo::Tempo::new(
                url.clone(),
                http(),
            )),
        )),
        (None, Some(url)) => Some((
            "--jaeger-url",
            Box::new(looptel_retro::sources::jaeger::Jaeger::new(
                url.clone(),
                http(),
            )),
        )),
        (None, None) => None,
    };
    if source.is_some() || inputs.loki_url.is_some() {
        tokio::time::sleep(inputs.trace_wait.unwrap_or(Duration::from_secs(10))).await;
    }
    if let Some((flag, source)) = source {
        let mut found = Vec::new();
        for id in wanted_traces(o) {
            match source.trace(&id).await {
                Ok(Some(t)) => found.push(t),
                Ok(None) => {}
                Err(e) => {
                    problems.push(format!("{flag}: {e}"));
                    break;
                }
            }
        }
        o.traces.get_or_insert_with(Vec::new).extend(found);
    }
    if let Some(url) = &inputs.loki_url {
        let service = o.metrics.as_ref().and_then(|(f, _)| {
            exposition::target_info(f).and_then(|s| s.labels.get("service_name").cloned())
        });
        let selector = match (&inputs.loki_selector, service) {
            (Some(s), _) => s.clone(),
            (None, Some(name)) => format!("{{service_name=\"{name}\"}}"),
            (None, None) => {
                problems.push(
                    "--loki-url: give --loki-selector (no service name on /metrics to select by)"
                        .to_owned(),
                );
                return;
            }
        };
        let loki = looptel_retro::sources::loki::Loki::new(url.clone(), selector, http());
        let end = time::OffsetDateTime::now_utc();
        match loki.recent(end - Duration::from_secs(300), end, 5000).await {
            Err(e) => problems.push(format!("--loki-url: {e}")),
            Ok(lines) => {
                let as_json = lines.into_iter().map(|l| {
                    let mut v = serde_json::json!({
                        "timestamp": l.timestamp,
                        "level": l.level,
                        "message": l.message,
                    });
                    if !l.trace_id.is_empty() {
                        v["trace_id"] = l.trace_id.into();
                        v["span_id"] = l.span_id.into();
                    }
                    v.to_string()
                });
                o.logs.get_or_insert_with(Vec::new).extend(as_json);
            }
        }
    }
}

/// The lines of a file a service may still be writing: a last line
/// without its newline is being written, and left for the next read.
pub fn complete_lines(bytes: &[u8]) -> Vec<String> {
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    String::from_utf8_lossy(&bytes[..end])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `KEY=value` entries split by `sep`; comments and blank lines skipped,
/// `export ` and quotes dropped.
pub fn parse_env(text: &str, sep: char) -> BTreeMap<String, String> {
    text.split(sep)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_owned(),
                v.trim().trim_matches('"').trim_matches('\'').to_owned(),
            )
        })
        .collect()
}

async fn scrape(
    client: &reqwest::Client,
    url: &str,
) -> Result<(Vec<exposition::Family>, bool), String> {
    let res = client
        .get(url)
        .header("accept", OPENMETRICS_ACCEPT)
        .send()
        .await
        .map_err(|e| format!("unreachable ({e})"))?;
    if !res.status().is_success() {
        return Err(format!("answered {}", res.status()));
    }
    let openmetrics = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/openmetrics-text"));
    let text = res
        .text()
        .await
        .map_err(|e| format!("unreadable body ({e})"))?;
    let families = exposition::parse(&text).map_err(|e| format!("not an exposition: {e}"))?;
    Ok((families, openmetrics))
}

/// A random lowercase hex string of `n` characters (the std hasher's
/// per-process keys and the clock: probes need to be unique, not secret).
fn random_hex(n: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    let mut i = 0u64;
    while out.len() < n {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        out.push_str(&format!("{:016x}", h.finish()));
        i += 1;
    }
    out.truncate(n);
    out
}

async fn probe(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    headers: &[(String, String)],
) -> Result<Probes, String> {
    let token = format!("doctor{}", random_hex(12));
    let mut answers = Vec::new();
    for _ in 0..n {
        let trace = random_hex(32);
        let traceparent = format!("00-{trace}-{}-01", random_hex(16));
        let mut request = client.get(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let res = request
            .header("traceparent", traceparent)
            .header("baggage", format!("doctor.probe={token}"))
            .send()
            .await
            .map_err(|e| format!("unreachable ({e})"))?;
        let answered = res
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        answers.push((trace, answered));
    }
    // A scrape right after may miss the last exemplars by a flush; give
    // the service a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Probes {
        answers,
        baggage_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_still_being_written_is_left_for_later() {
        assert_eq!(
            complete_lines(b"{\"level\":\"INFO\"}\n{\"level\":\"IN"),
            ["{\"level\":\"INFO\"}"]
        );
        assert_eq!(complete_lines(b"a\nb\n"), ["a", "b"]);
        assert!(complete_lines(b"partial").is_empty());
    }
}
