//! Every check, by a stable id: the pitfall it looks for, how it decides,
//! and the fix in one line. Each reads only what the service showed
//! (`Observed`); a check whose input was not given, or cannot be seen from
//! outside at all, says so — it is never skipped silently.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::exposition::Family;

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The pitfall is not there.
    Pass,
    /// Not observable: the input was not given, or this cannot be seen
    /// from outside the process.
    NotObservable,
    /// Probably a pitfall; look.
    Warn,
    /// The pitfall is there.
    Fail,
}

impl Status {
    /// As the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::NotObservable => "not-observable",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// Its stable id (`metrics.high-cardinality`).
    pub id: &'static str,
    /// The pitfall, in words.
    pub pitfall: &'static str,
    /// The verdict.
    pub status: Status,
    /// Why, in one sentence.
    pub summary: String,
    /// What was seen (a metric, a label, a line), personal data masked.
    pub evidence: Vec<String>,
    /// The fix, in one line.
    pub fix: &'static str,
}

/// A check: its id, the pitfall and the fix.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// Stable id.
    pub id: &'static str,
    /// The pitfall.
    pub pitfall: &'static str,
    /// The fix.
    pub fix: &'static str,
    /// What it needs, for the "not-observable" reason.
    pub needs: Needs,
}

/// What a check reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// `--metrics-url`.
    Metrics,
    /// `--env-file` or `--env-of`.
    Env,
    /// `--traces`.
    Traces,
    /// `--logs`.
    Logs,
    /// `--probe` (and `--metrics-url`).
    Probe,
    /// `--slo` and `--metrics-url`.
    Slo,
    /// The metrics or the settings, either.
    MetricsOrEnv,
    /// Nothing outside the process shows it.
    Inside(&'static str),
}

impl Needs {
    fn why(self) -> String {
        match self {
            Self::Metrics => "needs --metrics-url".to_owned(),
            Self::Env => "needs --env-file or --env-of".to_owned(),
            Self::Traces => "needs --traces (OTLP JSON lines) or --otlp-listen".to_owned(),
            Self::Logs => "needs --logs".to_owned(),
            Self::Probe => "needs --probe and --metrics-url".to_owned(),
            Self::Slo => "needs --slo and --metrics-url".to_owned(),
            Self::MetricsOrEnv => "needs --metrics-url or the service's settings".to_owned(),
            Self::Inside(why) => format!("cannot be seen from outside the process: {why}"),
        }
    }
}

/// Every check, in report order.
pub const CHECKS: &[Check] = &[
    Check {
        id: "traces.service-name",
        pitfall: "service.name or service.version not set",
        fix: "set OTEL_SERVICE_NAME and service.version (OTEL_RESOURCE_ATTRIBUTES or in code)",
        needs: Needs::MetricsOrEnv,
    },
    Check {
        id: "traces.library-spans",
        pitfall: "spans created in library and utility functions",
        fix: "trace at service boundaries and meaningful operations, not in helpers",
        needs: Needs::Traces,
    },
    Check {
        id: "traces.span-depth",
        pitfall: "hot-path traces deeper than 10 levels",
        fix: "merge fine-grained spans into their parent; use events or attributes",
        needs: Needs::Traces,
    },
    Check {
        id: "traces.spans-per-trace",
        pitfall: "hot-path traces wider than 100 spans",
        fix: "merge fine-grained spans into their parent; use events or attributes",
        needs: Needs::Traces,
    },
    Check {
        id: "traces.unended-spans",
        pitfall: "spans never ended (leaked)",
        fix: "end every span on every path (RAII guards, `defer span.End()`)",
        needs: Needs::Inside(
            "a span never ended is never exported; a parent missing from its trace shows under traces.orphan-spans",
        ),
    },
    Check {
        id: "traces.no-shutdown-flush",
        pitfall: "TracerProvider never shut down: the last spans lost at exit",
        fix: "shut the provider down on SIGTERM, bounded by a timeout",
        needs: Needs::Inside("spans lost at exit leave no trace to read"),
    },
    Check {
        id: "traces.orphan-spans",
        pitfall: "context not passed across tasks: broken traces",
        fix: "pass the context into spawned tasks (`.in_current_span()`, `Context::attach`)",
        needs: Needs::Traces,
    },
    Check {
        id: "metrics.high-cardinality",
        pitfall: "user or request ids as metric labels",
        fix: "label with bounded values (route templates, status classes); put ids on spans and logs",
        needs: Needs::Metrics,
    },
    Check {
        id: "metrics.coarse-buckets",
        pitfall: "histogram buckets too coarse to tell 10 ms from 100 ms",
        fix: "use the conventions' duration buckets (5 ms … 10 s) or native histograms",
        needs: Needs::Metrics,
    },
    Check {
        id: "metrics.counter-as-gauge",
        pitfall: "a count exposed as a gauge (or a counter without `_total`)",
        fix: "expose monotonic counts as counters",
        needs: Needs::Metrics,
    },
    Check {
        id: "metrics.missing-unit",
        pitfall: "metrics without units, or in non-base units",
        fix: "name by unit in base units: `_seconds`, `_bytes` (OpenMetrics `# UNIT`)",
        needs: Needs::Metrics,
    },
    Check {
        id: "metrics.no-exemplars",
        pitfall: "exemplars off: no way from a metric to a trace",
        fix: "serve OpenMetrics with exemplars of sampled spans",
        needs: Needs::Metrics,
    },
    Check {
        id: "logs.mixed-formats",
        pitfall: "several logging libraries, several formats",
        fix: "route every library through one subscriber writing one format",
        needs: Needs::Logs,
    },
    Check {
        id: "logs.uncorrelated",
        pitfall: "log lines without the trace they belong to",
        fix: "write trace_id and span_id on every line written inside a span",
        needs: Needs::Logs,
    },
    Check {
        id: "logs.logger-in-hot-path",
        pitfall: "a new logger built on every request",
        fix: "build loggers once; add fields with spans or child loggers",
        needs: Needs::Inside("how a logger is built does not show in its output"),
    },
    Check {
        id: "logs.pii",
        pitfall: "personal data (emails, card numbers, secrets) in plain text",
        fix: "mask or drop personal fields before they are written",
        needs: Needs::Logs,
    },
    Check {
        id: "logs.debug-in-production",
        pitfall: "debug logging in production",
        fix: "INFO in production; turn DEBUG on per module, for a while",
        needs: Needs::Env,
    },
    Check {
        id: "export.synchronous",
        pitfall: "a synchronous exporter blocking requests",
        fix: "export through a batch processor (OTEL_BSP_*), never the console in production",
        needs: Needs::Env,
    },
    Check {
        id: "export.no-timeout",
        pitfall: "no export timeout: a slow collector stalls the service",
        fix: "set OTEL_EXPORTER_OTLP_TIMEOUT (a few seconds)",
        needs: Needs::Env,
    },
    Check {
        id: "export.unbounded-queue",
        pitfall: "no bound on the export queue: memory grows while the collector is down",
        fix: "bound OTEL_BSP_MAX_QUEUE_SIZE (2048 by default) and count drops",
        needs: Needs::Env,
    },
    Check {
        id: "export.not-closed",
        pitfall: "exporters never closed in local runs",
        fix: "close exporters with the provider (a guard dropped at exit)",
        needs: Needs::Inside("open connections at exit cannot be told from outside"),
    },
    Check {
        id: "traces.as-profiler",
        pitfall: "traces used for profiling",
        fix: "profile with pprof or eBPF; traces show where, profiles show why",
        needs: Needs::Inside("a practice, not a setting"),
    },
    Check {
        id: "sampling.always-on-in-production",
        pitfall: "100 % sampling in production",
        fix: "sample root traces (parentbased_traceidratio) or tail-sample in the collector",
        needs: Needs::Env,
    },
    Check {
        id: "sampling.unset",
        pitfall: "the sampler not set per environment",
        fix: "set OTEL_TRACES_SAMPLER and _ARG per environment",
        needs: Needs::Env,
    },
    Check {
        id: "metrics.exemplar-not-exported",
        pitfall: "exemplars pointing at traces that were never exported",
        fix: "sample exemplars only from sampled spans, and export those spans",
        needs: Needs::Traces,
    },
    Check {
        id: "telemetry.drops",
        pitfall: "telemetry dropped (spans, log lines, series) without anyone looking",
        fix: "alert on drop counters; raise the bound or lower the volume",
        needs: Needs::Metrics,
    },
    Check {
        id: "propagation.response-traceparent",
        pitfall: "a caller's trace not continued (or no way from a response to its trace)",
        fix: "extract the caller's traceparent and answer with the server span's",
        needs: Needs::Probe,
    },
    Check {
        id: "propagation.baggage-in-labels",
        pitfall: "caller-controlled baggage copied into metric labels",
        fix: "never label metrics with baggage values; allow-list what is promoted",
        needs: Needs::Probe,
    },
    Check {
        id: "metrics.slo-bound-not-a-bucket",
        pitfall: "a latency SLO's bound that is not a bucket edge",
        fix: "add the bound to the histogram's buckets (or use native histograms)",
        needs: Needs::Slo,
    },
];

/// The entry of `id`.
pub fn check(id: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|c| c.id == id)
}

/// Thresholds, all configurable.
#[derive(Clone, Debug)]
pub struct Thresholds {
    /// More distinct values than this in one label of one family: fail.
    pub max_label_values: usize,
    /// Fewer finite buckets than this in a duration histogram: warn.
    pub min_buckets: usize,
    /// A queue bound above this: warn.
    pub max_queue: u64,
    /// An export timeout above this (ms): warn.
    pub max_export_timeout_ms: u64,
    /// A trace deeper than this: warn.
    pub max_depth: usize,
    /// A trace with more spans than this: warn.
    pub max_spans_per_trace: usize,
    /// One span name repeated more than this in one trace: warn.
    pub max_repeated_spans: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_label_values: 100,
            min_buckets: 8,
            max_queue: 100_000,
            max_export_timeout_ms: 30_000,
            max_depth: 10,
            max_spans_per_trace: 100,
            max_repeated_spans: 20,
        }
    }
}

/// What the service showed.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The scrape, and whether it was OpenMetrics.
    pub metrics: Option<(Vec<Family>, bool)>,
    /// Its environment (`OTEL_*`, `RUST_LOG`, …).
    pub env: Option<BTreeMap<String, String>>,
    /// Its log lines.
    pub logs: Option<Vec<String>>,
    /// Its exported traces.
    pub traces: Option<Vec<looptel_retro::trace::Trace>>,
    /// The probes: each sent trace id and the `traceparent` answered.
    pub probes: Option<Probes>,
    /// The SLO spec.
    pub slo: Option<looptel_slo::Spec>,
    /// Whether this is production (`--environment`, or
    /// `deployment.environment` in the settings).
    pub production: Option<bool>,
}

/// What the probes sent and got back.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    /// (trace id sent, `traceparent` answered).
    pub answers: Vec<(String, Option<String>)>,
    /// The baggage value sent with every probe.
    pub baggage_token: String,
}

fn finding(
    id: &'static str,
    status: Status,
    summary: impl Into<String>,
    evidence: Vec<String>,
) -> Finding {
    let c = check(id).expect("a catalogued id");
    Finding {
        id,
        pitfall: c.pitfall,
        status,
        summary: summary.into(),
        evidence: evidence.into_iter().map(|e| mask(&e)).collect(),
        fix: c.fix,
    }
}

/// `Pass` saying `clean` when nothing was `found`; otherwise `status`,
/// saying `problem(how many)`, with the first five as evidence.
fn judged(
    id: &'static str,
    mut found: Vec<String>,
    status: Status,
    clean: impl Into<String>,
    problem: impl FnOnce(usize) -> String,
) -> Finding {
    if found.is_empty() {
        return finding(id, Status::Pass, clean, Vec::new());
    }
    let n = found.len();
    found.truncate(5);
    finding(id, status, problem(n), found)
}

/// Personal data masked: emails (`j***@example.com`), and runs of 9 or
/// more digits, spaces and dashes allowed between them (cards, phones),
/// all but their last 4 digits.
pub fn mask(text: &str) -> String {
    // Digit runs first: all but their last 4 digits.
    let mut chars: Vec<char> = text.chars().collect();
    for run in standalone_digit_runs(&chars) {
        let digits = chars[run.clone()]
            .iter()
            .filter(|c| c.is_ascii_digit())
            .count();
        if digits >= 9 {
            for c in chars[run]
                .iter_mut()
                .filter(|c| c.is_ascii_digit())
                .take(digits - 4)
            {
                *c = '*';
            }
        }
    }
    let text: String = chars.into_iter().collect();
    // Then emails.
    let mut result = String::with_capacity(text.len());
    for word in text.split_inclusive(|c: char| c.is_whitespace() || c == ',' || c == '"') {
        let core = word.trim_end_matches(|c: char| c.is_whitespace() || c == ',' || c == '"');
        let tail = &word[core.len()..];
        match core.find('@').filter(|&i| i > 0 && core[i..].contains('.')) {
            Some(at) => {
                let first: String = core.chars().take(1).collect();
                result.push_str(&first);
                result.push_str("***");
                result.push_str(&core[at..]);
            }
            None => result.push_str(core),
        }
        result.push_str(tail);
    }
    result
}

/// Runs every check on what was observed.
pub fn run(o: &Observed, t: &Thresholds) -> Vec<Finding> {
    CHECKS
        .iter()
        .map(|c| {
            let result = match c.id {
                "traces.service-name" => service_identity(o),
                "metrics.high-cardinality" => {
                    o.metrics.as_ref().map(|(f, _)| high_cardinality(f, t))
                }
                "metrics.coarse-buckets" => o.metrics.as_ref().map(|(f, _)| coarse_buckets(f, t)),
                "metrics.counter-as-gauge" => o.metrics.as_ref().map(|(f, _)| counter_as_gauge(f)),
                "metrics.missing-unit" => o.metrics.as_ref().map(|(f, _)| units(f)),
                "metrics.no-exemplars" => o
                    .metrics
                    .as_ref()
                    .map(|(f, om)| exemplars(f, *om, o.probes.as_ref())),
                "telemetry.drops" => o.metrics.as_ref().map(|(f, _)| drops(f)),
                "traces.library-spans" => o.traces.as_ref().map(|tr| library_spans(tr, t)),
                "traces.span-depth" => o.traces.as_ref().map(|tr| span_depth(tr, t)),
                "traces.spans-per-trace" => o.traces.as_ref().map(|tr| spans_per_trace(tr, t)),
                "traces.orphan-spans" => o.traces.as_ref().map(|tr| orphan_spans(tr)),
                "metrics.exemplar-not-exported" => match (&o.traces, &o.metrics) {
                    (Some(tr), Some((f, _))) => Some(dangling_exemplars(tr, f)),
                    _ => None,
                },
                "logs.mixed-formats" => o.logs.as_ref().map(|l| mixed_libraries(l)),
                "logs.uncorrelated" => o.logs.as_ref().map(|l| uncorrelated(l)),
                "logs.pii" => o.logs.as_ref().map(|l| pii(l)),
                "logs.debug-in-production" => debug_in_production(o),
                "export.synchronous" => o.env.as_ref().map(|e| sync_exporter(e, o.production)),
                "export.no-timeout" => o.env.as_ref().map(|e| export_timeout(e, t)),
                "export.unbounded-queue" => o.env.as_ref().map(|e| unbounded_queue(e, t)),
                "sampling.always-on-in-production" => {
                    o.env.as_ref().map(|e| full_sampling(e, o.production))
                }
                "sampling.unset" => o.env.as_ref().map(sampling_configured),
                "propagation.response-traceparent" => o.probes.as_ref().map(response_traceparent),
                "propagation.baggage-in-labels" => match (&o.probes, &o.metrics) {
                    (Some(p), Some((f, _))) => Some(baggage_in_labels(p, f)),
                    _ => None,
                },
                "metrics.slo-bound-not-a-bucket" => match (&o.slo, &o.metrics) {
                    (Some(s), Some((f, _))) => Some(slo_buckets(s, f)),
                    _ => None,
                },
                _ => None,
            };
            result
                .unwrap_or_else(|| finding(c.id, Status::NotObservable, c.needs.why(), Vec::new()))
        })
        .collect()
}

fn family<'a>(f: &'a [Family], name: &str) -> Option<&'a Family> {
    f.iter().find(|x| x.name == name)
}

fn service_identity(o: &Observed) -> Option<Finding> {
    let id = "traces.service-name";
    let from_metrics = o.metrics.as_ref().and_then(|(f, _)| {
        crate::exposition::target_info(f).map(|s| {
            (
                s.labels.get("service_name").cloned(),
                s.labels.get("service_version").cloned(),
            )
        })
    });
    let from_env = o.env.as_ref().map(|e| {
        let attrs = resource_attributes(e);
        (
            e.get("OTEL_SERVICE_NAME")
                .cloned()
                .or_else(|| attrs.get("service.name").cloned()),
            attrs.get("service.version").cloned(),
        )
    });
    let from_traces = o.traces.as_ref().and_then(|tr| {
        tr.iter()
            .flat_map(|t| t.spans.iter())
            .map(|s| s.service.clone())
            .find(|s| !s.is_empty())
            .map(|name| (Some(name), None))
    });
    let from_env = from_env.or(from_traces);
    if from_metrics.is_none() && from_env.is_none() {
        return None;
    }
    let (mut name, mut version) = from_metrics.clone().unwrap_or((None, None));
    if let Some((n, v)) = from_env {
        name = name.or(n);
        version = version.or(v);
    }
    let source = if from_metrics.is_some() {
        "target_info"
    } else {
        "the settings"
    };
    Some(match (name, version) {
        (None, _) => finding(
            id,
            Status::Fail,
            format!("no service.name in {source}"),
            Vec::new(),
        ),
        (Some(n), _) if n.starts_with("unknown_service") => finding(
            id,
            Status::Fail,
            format!("service.name is the SDK's default {n:?}"),
            vec![format!("service.name={n}")],
        ),
        (Some(n), None) => finding(
            id,
            Status::Warn,
            "service.version not set: deploys cannot be told apart",
            vec![format!("service.name={n}")],
        ),
        (Some(n), Some(v)) => finding(
            id,
            Status::Pass,
            format!("{n} {v}"),
            vec![format!("{source}: service.name={n} service.version={v}")],
        ),
    })
}

/// Label names that are per user or per request.
const ID_LABELS: &[&str] = &[
    "user_id",
    "userid",
    "user",
    "request_id",
    "requestid",
    "session_id",
    "trace_id",
    "span_id",
    "order_id",
    "customer_id",
    "email",
    "client_address",
    "ip",
    "url_full",
    "url_path",
];

fn looks_like_id(v: &str) -> bool {
    let hex = v.chars().filter(char::is_ascii_hexdigit).count();
    let digits = v.chars().filter(char::is_ascii_digit).count();
    (v.len() >= 16 && hex + v.matches('-').count() == v.len() && digits > 0)
        || (v.len() >= 6 && digits == v.len())
}

fn high_cardinality(f: &[Family], t: &Thresholds) -> Finding {
    let id = "metrics.high-cardinality";
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    for fam in f {
        let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for s in &fam.samples {
            for (k, v) in &s.labels {
                if k != "le" && k != "quantile" {
                    values.entry(k).or_default().insert(v);
                }
            }
        }
        for (label, vals) in values {
            let example = vals.iter().next().copied().unwrap_or("");
            if ID_LABELS.contains(&label.to_ascii_lowercase().as_str())
                && !(fam.name == "target_info" || fam.name == "target")
            {
                fails.push(format!(
                    "{}{{{label}}}: a per-user or per-request label ({} values, e.g. {example:?})",
                    fam.name,
                    vals.len()
                ));
            } else if vals.len() > t.max_label_values {
                fails.push(format!(
                    "{}{{{label}}}: {} values (more than {})",
                    fam.name,
                    vals.len(),
                    t.max_label_values
                ));
            } else if vals.len() > 10
                && vals.iter().filter(|v| looks_like_id(v)).count() * 2 > vals.len()
            {
                warns.push(format!(
                    "{}{{{label}}}: {} values that look like ids, e.g. {example:?}",
                    fam.name,
                    vals.len()
                ));
            }
        }
    }
    if !fails.is_empty() {
        finding(
            id,
            Status::Fail,
            format!(
                "{} label{} unbounded",
                fails.len(),
                if fails.len() == 1 { " is" } else { "s are" }
            ),
            fails,
        )
    } else if !warns.is_empty() {
        finding(id, Status::Warn, "labels whose values look like ids", warns)
    } else {
        finding(
            id,
            Status::Pass,
            format!("every label of {} families bounded", f.len()),
            Vec::new(),
        )
    }
}

fn is_duration(fam: &Family) -> bool {
    fam.name.ends_with("_seconds")
        || fam.unit.as_deref() == Some("seconds")
        || fam.name.contains("duration")
        || fam.name.contains("latency")
}

fn coarse_buckets(f: &[Family], t: &Thresholds) -> Finding {
    let id = "metrics.coarse-buckets";
    let mut bad = Vec::new();
    let mut seen = 0;
    for fam in f.iter().filter(|x| x.kind == "histogram" && is_duration(x)) {
        // Only `+Inf` in text: native buckets alone, which only Prometheus'
        // protobuf format carries; their resolution is not read here.
        if fam
            .samples
            .iter()
            .filter_map(|s| s.labels.get("le"))
            .all(|le| le == "+Inf")
        {
            continue;
        }
        seen += 1;
        let les: BTreeSet<String> = fam
            .samples
            .iter()
            .filter_map(|s| s.labels.get("le"))
            .filter(|le| *le != "+Inf")
            .cloned()
            .collect();
        let bounds: Vec<f64> = les.iter().filter_map(|l| l.parse().ok()).collect();
        if les.is_empty() {
            // Declared, no series yet: nothing to judge.
            seen -= 1;
            continue;
        }
        let per_ms =
            fam.name.ends_with("_milliseconds") || fam.unit.as_deref() == Some("milliseconds");
        let fine = if per_ms { 100.0 } else { 0.1 };
        let below = bounds.iter().filter(|b| **b < fine).count();
        if bounds.len() < t.min_buckets || below < 2 {
            bad.push(format!(
                "{}: {} buckets, {} under {}",
                fam.name,
                bounds.len(),
                below,
                if per_ms { "100 ms" } else { "0.1 s" }
            ));
        }
    }
    if seen == 0 {
        return finding(
            id,
            Status::Pass,
            "no duration histograms to judge",
            Vec::new(),
        );
    }
    judged(
        id,
        bad,
        Status::Warn,
        format!("{seen} duration histograms tell 10 ms from 100 ms"),
        |n| format!("{n} of {seen} duration histograms are coarse"),
    )
}

fn counter_as_gauge(f: &[Family]) -> Finding {
    let id = "metrics.counter-as-gauge";
    let bad: Vec<String> = f
        .iter()
        .filter(|x| {
            x.kind == "gauge"
                && (x.name.ends_with("_total")
                    || x.name.ends_with("_count")
                    || x.name.contains("requests_served"))
        })
        .map(|x| format!("{} is a gauge named like a count", x.name))
        .chain(
            f.iter()
                .filter(|x| x.kind == "counter")
                .flat_map(|x| {
                    x.samples
                        .iter()
                        .filter(|s| !s.name.ends_with("_total") && !s.name.ends_with("_created"))
                        .map(|s| format!("counter sample {} without _total", s.name))
                })
                .take(5),
        )
        .collect();
    judged(id, bad, Status::Warn, "counts are counters", |n| {
        format!("{n} families look miscounted")
    })
}

fn units(f: &[Family]) -> Finding {
    let id = "metrics.missing-unit";
    let mut bad = Vec::new();
    for fam in f {
        let n = fam.name.as_str();
        if [
            "_milliseconds",
            "_ms",
            "_microseconds",
            "_us",
            "_nanoseconds",
            "_kilobytes",
            "_megabytes",
        ]
        .iter()
        .any(|s| n.ends_with(s) || n.ends_with(&format!("{s}_total")))
        {
            bad.push(format!("{n}: not in base units (seconds, bytes)"));
        } else if ["duration", "latency", "elapsed", "_time", "size"]
            .iter()
            .any(|w| n.contains(w))
            && ![
                "_seconds",
                "_bytes",
                "_ratio",
                "_timestamp_seconds",
                "_info",
            ]
            .iter()
            .any(|s| n.ends_with(s) || n.ends_with(&format!("{s}_total")))
            && fam.unit.is_none()
        {
            bad.push(format!("{n}: a duration or size without its unit"));
        }
    }
    judged(
        id,
        bad,
        Status::Warn,
        "durations and sizes carry their base unit",
        |n| format!("{n} families without a clear unit"),
    )
}

fn exemplars(f: &[Family], openmetrics: bool, probes: Option<&Probes>) -> Finding {
    let id = "metrics.no-exemplars";
    if !openmetrics {
        return finding(
            id,
            Status::Warn,
            "the endpoint answered Prometheus text to an OpenMetrics request: no exemplars",
            Vec::new(),
        );
    }
    let trace_ids: BTreeSet<&str> = crate::exposition::exemplar_trace_ids(f).collect();
    if trace_ids.is_empty() {
        return match probes {
            Some(_) => finding(
                id,
                Status::Warn,
                "OpenMetrics without one exemplar, after sampled probes",
                Vec::new(),
            ),
            None => finding(
                id,
                Status::NotObservable,
                "no exemplar yet; with --probe, sampled requests are sent first",
                Vec::new(),
            ),
        };
    }
    let ours: Vec<&String> = probes
        .map(|p| {
            p.answers
                .iter()
                .map(|(t, _)| t)
                .filter(|t| trace_ids.contains(t.as_str()))
                .collect()
        })
        .unwrap_or_default();
    match probes {
        Some(p) if ours.is_empty() => finding(
            id,
            Status::Warn,
            format!(
                "{} exemplars, none of the {} probes' traces",
                trace_ids.len(),
                p.answers.len()
            ),
            Vec::new(),
        ),
        _ => finding(
            id,
            Status::Pass,
            format!(
                "{} exemplars carry trace ids{}",
                trace_ids.len(),
                if ours.is_empty() {
                    String::new()
                } else {
                    format!(", {} of them the probes'", ours.len())
                }
            ),
            ours.iter()
                .take(3)
                .map(|t| format!("trace_id={t}"))
                .collect(),
        ),
    }
}

/// Drop counters: looptel's, the OpenTelemetry collector's, overflow —
/// telemetry lost, not a policy at work (baggage an untrusted caller sent,
/// members denied: those count the service doing its job).
fn is_drop_counter(name: &str) -> bool {
    (name.contains("dropped")
        || name.contains("_failed")
        || name.contains("overflow")
        || name.contains("refused"))
        && (name.starts_with("looptel_")
            || name.starts_with("otel")
            || name.starts_with("otelcol_"))
        && !(name.contains("untrusted") || name.contains("denied"))
}

fn drops(f: &[Family]) -> Finding {
    let id = "telemetry.drops";
    let mut seen = 0;
    let mut bad = Vec::new();
    for fam in f.iter().filter(|x| is_drop_counter(&x.name)) {
        seen += 1;
        for s in fam
            .samples
            .iter()
            .filter(|s| !s.name.ends_with("_created") && s.value > 0.0)
        {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            bad.push(format!("{}{{{}}} = {}", s.name, labels.join(","), s.value));
        }
    }
    if seen == 0 {
        return finding(
            id,
            Status::Warn,
            "no drop counter exposed: drops, if any, are invisible",
            Vec::new(),
        );
    }
    if bad.is_empty() {
        finding(
            id,
            Status::Pass,
            format!("{seen} drop counters, all zero"),
            Vec::new(),
        )
    } else {
        finding(
            id,
            Status::Warn,
            format!(
                "{} drop counter{} not zero",
                bad.len(),
                if bad.len() == 1 { " is" } else { "s are" }
            ),
            bad,
        )
    }
}

fn resource_attributes(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.get("OTEL_RESOURCE_ATTRIBUTES")
        .map(|v| {
            v.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the settings say production.
pub fn production_of(env: &BTreeMap<String, String>) -> Option<bool> {
    let attrs = resource_attributes(env);
    attrs
        .get("deployment.environment.name")
        .or_else(|| attrs.get("deployment.environment"))
        .map(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "prod" | "production" | "live"
            )
        })
}

fn debug_in_production(o: &Observed) -> Option<Finding> {
    let id = "logs.debug-in-production";
    let from_env = o.env.as_ref().and_then(|e| {
        ["RUST_LOG", "OTEL_LOG_LEVEL", "LOG_LEVEL"]
            .iter()
            .find_map(|k| {
                e.get(*k)
                    .filter(|v| {
                        let v = v.to_ascii_lowercase();
                        v.contains("debug") || v.contains("trace")
                    })
                    .map(|v| format!("{k}={v}"))
            })
    });
    let from_logs = o.logs.as_ref().and_then(|lines| {
        lines
            .iter()
            .find(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("\"level\":\"debug\"")
                    || l.contains("\"level\":\"trace\"")
                    || l.contains("\"levelname\": \"debug\"")
            })
            .map(|l| l.chars().take(160).collect::<String>())
    });
    if o.env.is_none() && o.logs.is_none() {
        return None;
    }
    let seen = from_env.into_iter().chain(from_logs).collect::<Vec<_>>();
    Some(match (o.production, seen.is_empty()) {
        (_, true) => finding(
            id,
            Status::Pass,
            "no debug level set or written",
            Vec::new(),
        ),
        (Some(true), false) => finding(id, Status::Fail, "debug logging in production", seen),
        (Some(false), false) => {
            finding(id, Status::Pass, "debug logging, outside production", seen)
        }
        (None, false) => finding(
            id,
            Status::Warn,
            "debug logging, and nothing says this is not production (--environment)",
            seen,
        ),
    })
}

fn sync_exporter(env: &BTreeMap<String, String>, production: Option<bool>) -> Finding {
    let id = "export.synchronous";
    let console = ["OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER"]
        .iter()
        .filter_map(|k| {
            env.get(*k)
                .filter(|v| v.contains("console") || v.contains("stdout"))
                .map(|v| format!("{k}={v}"))
        })
        .collect::<Vec<_>>();
    let immediate = env
        .get("OTEL_BSP_SCHEDULE_DELAY")
        .filter(|v| v.trim() == "0")
        .map(|v| format!("OTEL_BSP_SCHEDULE_DELAY={v}"));
    let seen: Vec<String> = console.into_iter().chain(immediate).collect();
    if seen.is_empty() {
        finding(
            id,
            Status::Pass,
            "exports go through the batch processor",
            Vec::new(),
        )
    } else if production == Some(false) {
        finding(
            id,
            Status::Pass,
            "a console or immediate exporter, outside production",
            seen,
        )
    } else {
        finding(
            id,
            Status::Warn,
            "a console or immediate exporter writes on the request's path",
            seen,
        )
    }
}

fn export_timeout(env: &BTreeMap<String, String>, t: &Thresholds) -> Finding {
    let id = "export.no-timeout";
    let set: Vec<(&str, u64)> = [
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_BSP_EXPORT_TIMEOUT",
    ]
    .iter()
    .filter_map(|k| {
        env.get(*k)
            .and_then(|v| v.trim().parse().ok())
            .map(|v| (*k, v))
    })
    .collect();
    let bad: Vec<String> = set
        .iter()
        .filter(|(_, v)| *v == 0 || *v > t.max_export_timeout_ms)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !bad.is_empty() {
        finding(
            id,
            Status::Warn,
            format!(
                "an export timeout of none or over {} ms",
                t.max_export_timeout_ms
            ),
            bad,
        )
    } else if set.is_empty() {
        finding(
            id,
            Status::Pass,
            "the SDK's 10 s default timeout",
            Vec::new(),
        )
    } else {
        finding(
            id,
            Status::Pass,
            "export timeouts set",
            set.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        )
    }
}

fn unbounded_queue(env: &BTreeMap<String, String>, t: &Thresholds) -> Finding {
    let id = "export.unbounded-queue";
    let bad: Vec<String> = ["OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BLRP_MAX_QUEUE_SIZE"]
        .iter()
        .filter_map(|k| env.get(*k).map(|v| (k, v)))
        .filter(|(_, v)| v.trim().parse::<u64>().map_or(true, |n| n > t.max_queue))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    judged(
        id,
        bad,
        Status::Warn,
        format!("export queues bounded (at most {})", t.max_queue),
        |_| "an export queue bound so large it is none".to_owned(),
    )
}

fn sampler(env: &BTreeMap<String, String>) -> (String, Option<String>) {
    (
        env.get("OTEL_TRACES_SAMPLER")
            .cloned()
            .unwrap_or_else(|| "parentbased_always_on".to_owned()),
        env.get("OTEL_TRACES_SAMPLER_ARG").cloned(),
    )
}

fn full_sampling(env: &BTreeMap<String, String>, production: Option<bool>) -> Finding {
    let id = "sampling.always-on-in-production";
    let (s, arg) = sampler(env);
    let full = matches!(s.as_str(), "always_on" | "parentbased_always_on")
        || (s.ends_with("traceidratio")
            && arg
                .as_deref()
                .and_then(|a| a.parse::<f64>().ok())
                .is_some_and(|r| r >= 1.0));
    let evidence = vec![format!(
        "OTEL_TRACES_SAMPLER={s}{}",
        arg.map(|a| format!(" _ARG={a}")).unwrap_or_default()
    )];
    match (full, production) {
        (false, _) => finding(id, Status::Pass, "root traces are sampled", evidence),
        (true, Some(true)) => finding(
            id,
            Status::Warn,
            "every root trace kept in production",
            evidence,
        ),
        (true, Some(false)) => finding(
            id,
            Status::Pass,
            "every trace kept, outside production",
            evidence,
        ),
        (true, None) => finding(
            id,
            Status::Warn,
            "every root trace kept, and nothing says this is not production (--environment)",
            evidence,
        ),
    }
}

fn sampling_configured(env: &BTreeMap<String, String>) -> Finding {
    let id = "sampling.unset";
    match env.get("OTEL_TRACES_SAMPLER") {
        Some(s) => finding(
            id,
            Status::Pass,
            "the sampler is set",
            vec![format!("OTEL_TRACES_SAMPLER={s}")],
        ),
        None => finding(
            id,
            Status::Warn,
            "OTEL_TRACES_SAMPLER unset: the SDK default everywhere",
            Vec::new(),
        ),
    }
}

fn response_traceparent(p: &Probes) -> Finding {
    let id = "propagation.response-traceparent";
    let continued = p
        .answers
        .iter()
        .filter(|(sent, got)| {
            got.as_deref().and_then(|t| t.split('-').nth(1)) == Some(sent.as_str())
        })
        .count();
    let answered = p.answers.iter().filter(|(_, got)| got.is_some()).count();
    let n = p.answers.len();
    if continued == n && n > 0 {
        finding(
            id,
            Status::Pass,
            format!("{n} of {n} probes answered with their trace continued"),
            Vec::new(),
        )
    } else if answered > 0 {
        finding(
            id,
            Status::Warn,
            format!(
                "{continued} of {n} probes continued; {answered} answered a traceparent (a new trace: the caller not trusted?)"
            ),
            Vec::new(),
        )
    } else {
        finding(
            id,
            Status::Warn,
            format!(
                "none of {n} probes answered a traceparent: no way from a response to its trace"
            ),
            Vec::new(),
        )
    }
}

fn baggage_in_labels(p: &Probes, f: &[Family]) -> Finding {
    let id = "propagation.baggage-in-labels";
    let leaked: Vec<String> = f
        .iter()
        .flat_map(|x| x.samples.iter())
        .filter(|s| s.labels.values().any(|v| v.contains(&p.baggage_token)))
        .map(|s| s.name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    judged(
        id,
        leaked,
        Status::Fail,
        "the probes' baggage reached no label",
        |_| "a caller's baggage value became a metric label".to_owned(),
    )
}

fn slo_buckets(spec: &looptel_slo::Spec, f: &[Family]) -> Finding {
    let id = "metrics.slo-bound-not-a-bucket";
    let mut bad = Vec::new();
    let mut ok = Vec::new();
    for slo in &spec.slos {
        let series = looptel_slo::SliSeries::of(spec, slo);
        let Some(bound) = series.latency_under else {
            continue;
        };
        let Some(fam) = family(f, &series.metric) else {
            bad.push(format!(
                "{}: no histogram {} on /metrics",
                slo.name, series.metric
            ));
            continue;
        };
        if series.native {
            // Any bound: `histogram_fraction` reads it between buckets.
            ok.push(format!("{}: native histogram, {bound} s", slo.name));
            continue;
        }
        let has = fam
            .samples
            .iter()
            .filter_map(|s| s.labels.get("le"))
            .filter_map(|le| le.parse::<f64>().ok())
            .any(|le| (le - bound).abs() < 1e-9);
        if has {
            ok.push(format!("{}: le={bound}", slo.name));
        } else {
            bad.push(format!(
                "{}: no bucket at {bound} s in {}",
                slo.name, series.metric
            ));
        }
    }
    if !bad.is_empty() {
        finding(
            id,
            Status::Fail,
            "latency SLOs whose bound is not a bucket edge",
            bad,
        )
    } else if ok.is_empty() {
        finding(id, Status::Pass, "no latency SLO in the spec", Vec::new())
    } else {
        finding(id, Status::Pass, "every latency bound is a bucket edge", ok)
    }
}

type Trace = looptel_retro::trace::Trace;

fn library_spans(traces: &[Trace], t: &Thresholds) -> Finding {
    let id = "traces.library-spans";
    let mut bad = Vec::new();
    for tr in traces {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for s in tr.spans.iter().filter(|s| s.kind == "INTERNAL") {
            *names.entry(s.name.as_str()).or_default() += 1;
        }
        if let Some((name, n)) = names
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .filter(|(_, n)| *n > t.max_repeated_spans)
        {
            bad.push(format!(
                "trace {}: {n} INTERNAL spans named {name:?}",
                tr.trace_id
            ));
        }
    }
    judged(
        id,
        bad,
        Status::Warn,
        format!(
            "no span name repeated more than {} times in one of {} traces",
            t.max_repeated_spans,
            traces.len()
        ),
        |n| format!("{n} traces where one helper is traced again and again"),
    )
}

/// How deep a trace goes: the longest chain of parents, counted in spans.
fn depth(tr: &Trace) -> usize {
    let parent: BTreeMap<&str, &str> = tr
        .spans
        .iter()
        .filter_map(|s| Some((s.span_id.as_str(), s.parent_span_id.as_deref()?)))
        .collect();
    tr.spans
        .iter()
        .map(|s| {
            let mut d = 1;
            let mut at = s.span_id.as_str();
            while let Some(p) = parent.get(at).copied() {
                if d > tr.spans.len() {
                    break; // a cycle
                }
                d += 1;
                at = p;
            }
            d
        })
        .max()
        .unwrap_or(0)
}

/// Traces whose `measure` exceeds `max` (`unit`: levels, spans).
fn traces_over(
    id: &'static str,
    traces: &[Trace],
    measure: impl Fn(&Trace) -> usize,
    max: usize,
    (unit, beyond): (&str, &str),
) -> Finding {
    let mut bad = Vec::new();
    let mut most = 0;
    for tr in traces {
        let m = measure(tr);
        most = most.max(m);
        if m > max {
            bad.push(format!("trace {}: {m} {unit}", tr.trace_id));
        }
    }
    judged(
        id,
        bad,
        Status::Warn,
        format!("{} traces, at most {most} {unit}", traces.len()),
        |n| format!("{n} traces {beyond} {max} {unit}"),
    )
}

fn span_depth(traces: &[Trace], t: &Thresholds) -> Finding {
    traces_over(
        "traces.span-depth",
        traces,
        depth,
        t.max_depth,
        ("levels", "deeper than"),
    )
}

fn spans_per_trace(traces: &[Trace], t: &Thresholds) -> Finding {
    traces_over(
        "traces.spans-per-trace",
        traces,
        |tr| tr.spans.len(),
        t.max_spans_per_trace,
        ("spans", "wider than"),
    )
}

fn orphan_spans(traces: &[Trace]) -> Finding {
    let id = "traces.orphan-spans";
    let mut bad = Vec::new();
    let mut broken = 0;
    for tr in traces {
        let ids: BTreeSet<&str> = tr.spans.iter().map(|s| s.span_id.as_str()).collect();
        // A SERVER or CONSUMER span's parent is the caller's: it is
        // elsewhere by design. Any other span's parent is local — once the
        // trace's entry is in: children are exported before the spans
        // they ran in, so a trace read while it is still being exported
        // (a live file, a receiver) lacks its parents for a while.
        // Its entry: a span without a parent, or a SERVER or CONSUMER span
        // whose caller is elsewhere (not an in-process hop whose client
        // span is here).
        let entered = tr.spans.iter().any(|s| match s.parent_span_id.as_deref() {
            None => true,
            Some(p) => matches!(s.kind.as_str(), "SERVER" | "CONSUMER") && !ids.contains(p),
        });
        let lost: Vec<&str> = tr
            .spans
            .iter()
            .filter(|_| entered)
            .filter(|s| !matches!(s.kind.as_str(), "SERVER" | "CONSUMER"))
            .filter(|s| {
                s.parent_span_id
                    .as_deref()
                    .is_some_and(|p| !ids.contains(p))
            })
            .map(|s| s.name.as_str())
            .collect();
        let rootless_calls: Vec<&str> = tr
            .spans
            .iter()
            .filter(|s| {
                s.parent_span_id.is_none() && matches!(s.kind.as_str(), "CLIENT" | "PRODUCER")
            })
            .map(|s| s.name.as_str())
            .collect();
        if !lost.is_empty() || !rootless_calls.is_empty() {
            broken += 1;
            if bad.len() < 5 {
                bad.push(format!(
                    "trace {}: {}{}",
                    tr.trace_id,
                    if lost.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "parent missing for {:?}",
                            lost.first().copied().unwrap_or("")
                        )
                    },
                    if rootless_calls.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " outgoing call {:?} started a trace of its own",
                            rootless_calls[0]
                        )
                    }
                ));
            }
        }
    }
    if broken == 0 {
        finding(
            id,
            Status::Pass,
            format!("every local span of {} traces has its parent", traces.len()),
            Vec::new(),
        )
    } else if broken * 100 > traces.len() {
        finding(
            id,
            Status::Fail,
            format!(
                "{broken} of {} traces broken: context lost across tasks",
                traces.len()
            ),
            bad,
        )
    } else {
        finding(
            id,
            Status::Warn,
            format!("{broken} of {} traces broken", traces.len()),
            bad,
        )
    }
}

fn dangling_exemplars(traces: &[Trace], f: &[Family]) -> Finding {
    let id = "metrics.exemplar-not-exported";
    let known: BTreeSet<&str> = traces.iter().map(|t| t.trace_id.as_str()).collect();
    let pointed: BTreeSet<&str> = crate::exposition::exemplar_trace_ids(f).collect();
    if pointed.is_empty() {
        return finding(
            id,
            Status::NotObservable,
            "no exemplar to follow",
            Vec::new(),
        );
    }
    let missing: Vec<&str> = pointed
        .iter()
        .copied()
        .filter(|t| !known.contains(t))
        .collect();
    // The newest exemplars may wait for the next export: most must be there.
    if missing.len() * 2 > pointed.len() {
        finding(
            id,
            Status::Warn,
            format!(
                "{} of {} exemplars point at traces not exported",
                missing.len(),
                pointed.len()
            ),
            missing
                .iter()
                .take(3)
                .map(|t| format!("trace_id={t}"))
                .collect(),
        )
    } else {
        finding(
            id,
            Status::Pass,
            format!(
                "{} of {} exemplars' traces were exported",
                pointed.len() - missing.len(),
                pointed.len()
            ),
            Vec::new(),
        )
    }
}

fn mixed_libraries(lines: &[String]) -> Finding {
    let id = "logs.mixed-formats";
    let mut shapes: BTreeMap<String, usize> = BTreeMap::new();
    for l in lines.iter().filter(|l| !l.trim().is_empty()) {
        let shape = match serde_json::from_str::<serde_json::Value>(l) {
            Ok(serde_json::Value::Object(m)) => {
                let time = ["timestamp", "time", "ts", "@timestamp", "asctime"]
                    .iter()
                    .find(|k| m.contains_key(**k))
                    .copied()
                    .unwrap_or("-");
                let level = ["level", "levelname", "severity", "lvl"]
                    .iter()
                    .find(|k| m.contains_key(**k))
                    .copied()
                    .unwrap_or("-");
                let msg = ["message", "msg", "event"]
                    .iter()
                    .find(|k| m.contains_key(**k))
                    .copied()
                    .unwrap_or("-");
                format!("JSON {time}/{level}/{msg}")
            }
            _ => "plain text".to_owned(),
        };
        *shapes.entry(shape).or_default() += 1;
    }
    if shapes.is_empty() {
        return finding(
            id,
            Status::NotObservable,
            "no log lines to read",
            Vec::new(),
        );
    }
    let evidence: Vec<String> = shapes
        .iter()
        .map(|(s, n)| format!("{n} lines: {s}"))
        .collect();
    if shapes.len() == 1 {
        finding(id, Status::Pass, "one format", evidence)
    } else {
        finding(
            id,
            Status::Fail,
            format!("{} formats in one stream", shapes.len()),
            evidence,
        )
    }
}

fn uncorrelated(lines: &[String]) -> Finding {
    let id = "logs.uncorrelated";
    let mut with = 0;
    let mut without = Vec::new();
    let mut total = 0;
    for l in lines.iter().filter(|l| !l.trim().is_empty()) {
        total += 1;
        let has = serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .is_some_and(|v| {
                ["trace_id", "traceId", "otelTraceID", "trace.id"]
                    .iter()
                    .any(|k| {
                        v.get(*k)
                            .and_then(serde_json::Value::as_str)
                            .is_some_and(|t| t.len() == 32)
                    })
            });
        if has {
            with += 1;
        } else if without.len() < 3 {
            without.push(l.chars().take(160).collect::<String>());
        }
    }
    if total == 0 {
        return finding(
            id,
            Status::NotObservable,
            "no log lines to read",
            Vec::new(),
        );
    }
    match with {
        0 => finding(
            id,
            Status::Fail,
            format!("none of {total} lines carries a trace id"),
            without,
        ),
        _ => finding(
            id,
            Status::Pass,
            format!("{with} of {total} lines carry a trace id (lines outside requests need none)"),
            Vec::new(),
        ),
    }
}

fn pii(lines: &[String]) -> Finding {
    let id = "logs.pii";
    let mut seen = Vec::new();
    for l in lines {
        let lower = l.to_ascii_lowercase();
        let email = l
            .split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '=')
            .any(|w| {
                w.find('@')
                    .is_some_and(|i| i > 0 && w[i..].contains('.') && !w.starts_with('@'))
            });
        let card = digit_runs(&text_of(l))
            .iter()
            .any(|d| (13..=19).contains(&d.len()) && luhn(d));
        let secret = [
            "password=",
            "\"password\":",
            "passwd",
            "authorization: bearer",
            "\"authorization\":",
        ]
        .iter()
        .any(|k| lower.contains(k));
        if email || card || secret {
            let what = [
                (email, "an email"),
                (card, "a card number"),
                (secret, "a secret"),
            ]
            .iter()
            .filter(|x| x.0)
            .map(|x| x.1)
            .collect::<Vec<_>>()
            .join(", ");
            seen.push(format!(
                "{what}: {}",
                mask(&l.chars().take(160).collect::<String>())
            ));
        }
    }
    if seen.is_empty() {
        finding(
            id,
            Status::Pass,
            format!("no email, card number or secret in {} lines", lines.len()),
            Vec::new(),
        )
    } else {
        let n = seen.len();
        seen.truncate(5);
        finding(
            id,
            Status::Fail,
            format!("{n} lines with personal data in plain text"),
            seen,
        )
    }
}

/// What a line says, without the fields every line carries (times, ids):
/// a JSON line's other string values, or the line.
fn text_of(line: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(m)) => m
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "timestamp"
                        | "time"
                        | "ts"
                        | "@timestamp"
                        | "trace_id"
                        | "span_id"
                        | "traceId"
                        | "spanId"
                        | "trace.id"
                        | "span.id"
                )
            })
            .filter_map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => line.to_owned(),
    }
}

/// Whether a character next to a digit run makes it part of something
/// else: a word, an id, a decimal, a time.
fn glued(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | ':' | '_'))
}

/// Where the runs of digits (spaces and dashes allowed between them) that
/// stand alone are in `chars`: not part of a word, an id, a decimal or a
/// time.
fn standalone_digit_runs(chars: &[char]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut last = i;
        while i < chars.len()
            && (chars[i].is_ascii_digit()
                || (matches!(chars[i], ' ' | '-')
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
        {
            if chars[i].is_ascii_digit() {
                last = i;
            }
            i += 1;
        }
        if !glued(start.checked_sub(1).map(|b| &chars[b])) && !glued(chars.get(last + 1)) {
            out.push(start..last + 1);
        }
        i = last + 1;
    }
    out
}

/// The digits of each standalone run of digits in `text`.
fn digit_runs(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    standalone_digit_runs(&chars)
        .into_iter()
        .map(|r| chars[r].iter().filter(|c| c.is_ascii_digit()).collect())
        .collect()
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::parse;

    fn metrics(text: &str, openmetrics: bool) -> Observed {
        Observed {
            metrics: Some((parse(text).expect("exposition"), openmetrics)),
            ..Observed::default()
        }
    }

    fn status(o: &Observed, id: &str) -> (Status, Finding) {
        let f = run(o, &Thresholds::default())
            .into_iter()
            .find(|f| f.id == id)
            .expect("catalogued");
        (f.status, f)
    }

    fn env(pairs: &[(&str, &str)]) -> Observed {
        Observed {
            env: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            production: Some(true),
            ..Observed::default()
        }
    }

    #[test]
    fn every_pitfall_has_one_stable_id_and_none_is_skipped_silently() {
        let ids: BTreeSet<&str> = CHECKS.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), CHECKS.len(), "ids are unique");
        // The practice's 23 (its deep-or-wide pitfall as two checks, as the
        // conventions name them), and what looptel adds.
        assert_eq!(CHECKS.len(), 23 + 1 + 5);
        // Every id of the conventions' list is a check.
        for id in [
            "traces.service-name",
            "traces.span-depth",
            "traces.spans-per-trace",
            "traces.unended-spans",
            "traces.orphan-spans",
            "traces.no-shutdown-flush",
            "metrics.high-cardinality",
            "metrics.coarse-buckets",
            "metrics.counter-as-gauge",
            "metrics.missing-unit",
            "metrics.no-exemplars",
            "logs.mixed-formats",
            "logs.uncorrelated",
            "logs.pii",
            "logs.debug-in-production",
            "export.synchronous",
            "export.no-timeout",
            "export.unbounded-queue",
            "sampling.always-on-in-production",
            "sampling.unset",
            "metrics.exemplar-not-exported",
            "telemetry.drops",
            "metrics.slo-bound-not-a-bucket",
        ] {
            assert!(ids.contains(id), "{id}");
        }
        let nothing = run(&Observed::default(), &Thresholds::default());
        assert_eq!(nothing.len(), CHECKS.len());
        assert!(
            nothing
                .iter()
                .all(|f| f.status == Status::NotObservable && !f.summary.is_empty())
        );
    }

    #[test]
    fn user_and_request_ids_as_labels_fail_bounded_labels_pass() {
        let bad = "# TYPE orders counter\norders_total{user_id=\"u-1\"} 1\norders_total{user_id=\"u-2\"} 1\n";
        let (s, f) = status(&metrics(bad, true), "metrics.high-cardinality");
        assert_eq!(s, Status::Fail, "{f:?}");
        assert!(f.evidence[0].contains("orders{user_id}"), "{f:?}");
        let many: String = (0..150)
            .map(|i| format!("jobs_total{{queue=\"q{i}\"}} 1\n"))
            .collect();
        assert_eq!(
            status(
                &metrics(&format!("# TYPE jobs counter\n{many}"), true),
                "metrics.high-cardinality"
            )
            .0,
            Status::Fail
        );
        let ids: String = (0..20)
            .map(|i| format!("x{{who=\"{:032x}\"}} 1\n", i + 1_000_000))
            .collect();
        assert_eq!(
            status(&metrics(&ids, true), "metrics.high-cardinality").0,
            Status::Warn
        );
        let ok = "# TYPE http_server_request_duration_seconds histogram\nhttp_server_request_duration_seconds_count{http_route=\"/orders/{id}\"} 3\n";
        assert_eq!(
            status(&metrics(ok, true), "metrics.high-cardinality").0,
            Status::Pass
        );
    }

    fn histogram(name: &str, les: &[&str]) -> String {
        let mut t = format!("# TYPE {name} histogram\n");
        for le in les {
            t.push_str(&format!("{name}_bucket{{le=\"{le}\"}} 1\n"));
        }
        t.push_str(&format!("{name}_count 1\n"));
        t
    }

    #[test]
    fn buckets_that_cannot_tell_10_ms_from_100_ms_warn() {
        let coarse = histogram("rpc_duration_seconds", &["0.1", "1", "10", "+Inf"]);
        assert_eq!(
            status(&metrics(&coarse, true), "metrics.coarse-buckets").0,
            Status::Warn
        );
        let fine = histogram(
            "rpc_duration_seconds",
            &[
                "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1",
                "2.5", "+Inf",
            ],
        );
        assert_eq!(
            status(&metrics(&fine, true), "metrics.coarse-buckets").0,
            Status::Pass
        );
    }

    #[test]
    fn counts_as_gauges_and_units_are_flagged() {
        let t = "# TYPE requests_total gauge\nrequests_total 5\n# TYPE http_duration_ms gauge\nhttp_duration_ms 3\n# TYPE payload_size gauge\npayload_size 3\n";
        assert_eq!(
            status(&metrics(t, false), "metrics.counter-as-gauge").0,
            Status::Warn
        );
        let (s, f) = status(&metrics(t, false), "metrics.missing-unit");
        assert_eq!(s, Status::Warn);
        assert_eq!(f.evidence.len(), 2, "{f:?}");
        let ok = "# TYPE jobs counter\njobs_total 1\n# TYPE queue_wait_seconds gauge\nqueue_wait_seconds 0.1\n";
        assert_eq!(
            status(&metrics(ok, true), "metrics.counter-as-gauge").0,
            Status::Pass
        );
        assert_eq!(
            status(&metrics(ok, true), "metrics.missing-unit").0,
            Status::Pass
        );
    }

    #[test]
    fn exemplars_must_be_served_and_carry_the_probes_traces() {
        let with = "# TYPE d_seconds histogram\nd_seconds_bucket{le=\"+Inf\"} 1 # {trace_id=\"0af7651916cd43dd8448eb211c80319c\"} 0.1\n";
        let mut o = metrics(with, true);
        assert_eq!(status(&o, "metrics.no-exemplars").0, Status::Pass);
        o.probes = Some(Probes {
            answers: vec![("ffffffffffffffffffffffffffffffff".to_owned(), None)],
            baggage_token: "doctorx".to_owned(),
        });
        assert_eq!(
            status(&o, "metrics.no-exemplars").0,
            Status::Warn,
            "none of ours"
        );
        o.probes = Some(Probes {
            answers: vec![("0af7651916cd43dd8448eb211c80319c".to_owned(), None)],
            baggage_token: "doctorx".to_owned(),
        });
        assert_eq!(status(&o, "metrics.no-exemplars").0, Status::Pass);
        assert_eq!(
            status(&metrics(with, false), "metrics.no-exemplars").0,
            Status::Warn,
            "Prometheus text"
        );
    }

    #[test]
    fn drops_that_are_not_zero_warn_and_no_counter_at_all_too() {
        let t = "# TYPE looptel_spans_dropped counter\nlooptel_spans_dropped_total 0\n";
        assert_eq!(status(&metrics(t, true), "telemetry.drops").0, Status::Pass);
        let t = "# TYPE looptel_spans_dropped counter\nlooptel_spans_dropped_total 12\n";
        assert_eq!(status(&metrics(t, true), "telemetry.drops").0, Status::Warn);
        assert_eq!(
            status(&metrics("up 1\n", true), "telemetry.drops").0,
            Status::Warn
        );
        let policy = "# TYPE looptel_baggage_untrusted_dropped counter\nlooptel_baggage_untrusted_dropped_total 5\n# TYPE looptel_spans_dropped counter\nlooptel_spans_dropped_total 0\n";
        assert_eq!(
            status(&metrics(policy, true), "telemetry.drops").0,
            Status::Pass,
            "a policy at work is no loss"
        );
        let empty = "# TYPE d_seconds histogram\n";
        assert_eq!(
            status(&metrics(empty, true), "metrics.coarse-buckets").0,
            Status::Pass,
            "no series to judge"
        );
    }

    #[test]
    fn the_service_is_named_and_versioned() {
        let t =
            "# TYPE target info\ntarget_info{service_name=\"orders\",service_version=\"1.2\"} 1\n";
        assert_eq!(
            status(&metrics(t, true), "traces.service-name").0,
            Status::Pass
        );
        let t = "# TYPE target info\ntarget_info{service_name=\"unknown_service:orders\"} 1\n";
        assert_eq!(
            status(&metrics(t, true), "traces.service-name").0,
            Status::Fail
        );
        assert_eq!(
            status(
                &env(&[("OTEL_SERVICE_NAME", "orders")]),
                "traces.service-name"
            )
            .0,
            Status::Warn
        );
        assert_eq!(
            status(
                &env(&[("OTEL_TRACES_SAMPLER", "always_on")]),
                "traces.service-name"
            )
            .0,
            Status::Fail
        );
    }

    #[test]
    fn settings_say_how_it_samples_exports_and_logs() {
        let prod = env(&[
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("RUST_LOG", "debug"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "10000000"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ("OTEL_TRACES_EXPORTER", "console"),
        ]);
        for (id, want) in [
            ("sampling.always-on-in-production", Status::Warn),
            ("sampling.unset", Status::Pass),
            ("logs.debug-in-production", Status::Fail),
            ("export.unbounded-queue", Status::Warn),
            ("export.no-timeout", Status::Warn),
            ("export.synchronous", Status::Warn),
        ] {
            assert_eq!(status(&prod, id).0, want, "{id}");
        }
        let good = env(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ("RUST_LOG", "info"),
        ]);
        for id in [
            "sampling.always-on-in-production",
            "logs.debug-in-production",
            "export.unbounded-queue",
            "export.no-timeout",
            "export.synchronous",
        ] {
            assert_eq!(status(&good, id).0, Status::Pass, "{id}");
        }
        let mut dev = env(&[("RUST_LOG", "debug")]);
        dev.production = Some(false);
        assert_eq!(status(&dev, "logs.debug-in-production").0, Status::Pass);
        assert_eq!(status(&dev, "sampling.unset").0, Status::Warn);
        assert_eq!(
            production_of(
                &[(
                    "OTEL_RESOURCE_ATTRIBUTES".to_owned(),
                    "deployment.environment.name=production".to_owned()
                )]
                .into()
            ),
            Some(true)
        );
    }

    #[test]
    fn probes_follow_the_trace_and_the_baggage() {
        let o = Observed {
            probes: Some(Probes {
                answers: vec![(
                    "0af7651916cd43dd8448eb211c80319c".to_owned(),
                    Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
                )],
                baggage_token: "doctorabc".to_owned(),
            }),
            metrics: Some((
                parse("x_total{tenant=\"doctorabc\"} 1\n").expect("ok"),
                true,
            )),
            ..Observed::default()
        };
        assert_eq!(
            status(&o, "propagation.response-traceparent").0,
            Status::Pass
        );
        assert_eq!(status(&o, "propagation.baggage-in-labels").0, Status::Fail);
        let new_trace = Observed {
            probes: Some(Probes {
                answers: vec![(
                    "0af7651916cd43dd8448eb211c80319c".to_owned(),
                    Some("00-11111111111111111111111111111111-b7ad6b7169203331-01".to_owned()),
                )],
                baggage_token: "doctorabc".to_owned(),
            }),
            metrics: Some((parse("x_total{tenant=\"acme\"} 1\n").expect("ok"), true)),
            ..Observed::default()
        };
        assert_eq!(
            status(&new_trace, "propagation.response-traceparent").0,
            Status::Warn
        );
        assert_eq!(
            status(&new_trace, "propagation.baggage-in-labels").0,
            Status::Pass
        );
    }

    #[test]
    fn log_lines_one_format_correlated_and_without_personal_data() {
        let line = |m: &str| {
            format!(
                "{{\"timestamp\":\"2026-12-04T10:00:00Z\",\"level\":\"INFO\",\"message\":\"{m}\",\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\"}}"
            )
        };
        let good = Observed {
            logs: Some(vec![line("order placed"), line("order shipped")]),
            ..Observed::default()
        };
        for id in ["logs.mixed-formats", "logs.uncorrelated", "logs.pii"] {
            assert_eq!(status(&good, id).0, Status::Pass, "{id}");
        }
        let bad = Observed {
            logs: Some(vec![
                "plain print: order 7 for jane.doe@example.com".to_owned(),
                "{\"msg\":\"paid with 4111 1111 1111 1111\",\"lvl\":\"info\"}".to_owned(),
            ]),
            ..Observed::default()
        };
        assert_eq!(status(&bad, "logs.mixed-formats").0, Status::Fail);
        assert_eq!(status(&bad, "logs.uncorrelated").0, Status::Fail);
        let (s, f) = status(&bad, "logs.pii");
        assert_eq!(s, Status::Fail);
        let shown = f.evidence.join(" ");
        assert!(
            !shown.contains("jane.doe@") && !shown.contains("4111 1111 1111 1111"),
            "masked in the report: {shown}"
        );
        assert!(
            shown.contains("j***@example.com") && shown.contains("**** **** **** 1111"),
            "{shown}"
        );
        assert_eq!(
            mask("order 4711 at 10:00"),
            "order 4711 at 10:00",
            "short numbers stay"
        );
        // Ids and times are no card numbers, however many digits they hold.
        let ids = Observed {
            logs: Some(vec![
                "{\"timestamp\":\"2026-12-04T23:20:13.4111111111111111Z\",\"level\":\"INFO\",\"message\":\"order placed\",\"trace_id\":\"d75ac5d99a7afc4111111111111111aa\"}".to_owned(),
                "batch ab4111111111111111 done at 12:4111111111111111".to_owned(),
            ]),
            ..Observed::default()
        };
        assert_eq!(status(&ids, "logs.pii").0, Status::Pass);
        assert_eq!(
            mask("trace d75ac5d99a7afc411111111111"),
            "trace d75ac5d99a7afc411111111111"
        );
    }

    fn span(id: &str, parent: Option<&str>, name: &str, kind: &str) -> looptel_retro::trace::Span {
        looptel_retro::trace::Span {
            span_id: id.to_owned(),
            parent_span_id: parent.map(str::to_owned),
            name: name.to_owned(),
            service: "orders".to_owned(),
            kind: kind.to_owned(),
            start_ns: 1,
            end_ns: 2,
            error: false,
            error_message: None,
            attributes: BTreeMap::new(),
        }
    }

    fn traced(traces: Vec<Trace>) -> Observed {
        Observed {
            traces: Some(traces),
            ..Observed::default()
        }
    }

    #[test]
    fn traces_show_lost_context_depth_width_and_helpers_traced_in_loops() {
        // A server span whose caller is elsewhere, a local child: fine.
        let good = Trace::new(
            "t1".to_owned(),
            vec![
                span("a", Some("remote"), "GET /orders", "SERVER"),
                span("b", Some("a"), "SELECT", "CLIENT"),
            ],
        );
        let o = traced(vec![good.clone()]);
        for id in [
            "traces.orphan-spans",
            "traces.span-depth",
            "traces.spans-per-trace",
            "traces.library-spans",
        ] {
            assert_eq!(status(&o, id).0, Status::Pass, "{id}");
        }
        assert_eq!(
            status(&o, "traces.service-name").0,
            Status::Warn,
            "a name, no version"
        );
        // A task that lost its context: its span's parent never arrives,
        // and an outgoing call starts a trace of its own.
        let lost = Trace::new(
            "t2".to_owned(),
            vec![
                span("e", Some("remote"), "POST /orders", "SERVER"),
                span("c", Some("gone"), "send email", "INTERNAL"),
            ],
        );
        // A trace still being exported: its call is in, the server span it
        // ran in not yet — not judged.
        let in_flight = Trace::new(
            "t6".to_owned(),
            vec![
                span("f", Some("later"), "ReserveItem", "CLIENT"),
                // An in-process hop's server span is no entry.
                span("g", Some("f"), "ReserveItem", "SERVER"),
            ],
        );
        assert_eq!(
            status(
                &traced(vec![good.clone(), in_flight]),
                "traces.orphan-spans"
            )
            .0,
            Status::Pass
        );
        let rootless = Trace::new(
            "t3".to_owned(),
            vec![span("d", None, "POST /payments", "CLIENT")],
        );
        let (s, f) = status(&traced(vec![good, lost, rootless]), "traces.orphan-spans");
        assert_eq!(s, Status::Fail);
        assert_eq!(f.evidence.len(), 2, "{f:?}");
        // Twelve levels deep; a helper traced 30 times.
        let chain: Vec<_> = (0..12)
            .map(|i| {
                span(
                    &format!("s{i}"),
                    (i > 0).then(|| format!("s{}", i - 1)).as_deref(),
                    "step",
                    "INTERNAL",
                )
            })
            .collect();
        let deep = traced(vec![Trace::new("t4".to_owned(), chain)]);
        assert_eq!(status(&deep, "traces.span-depth").0, Status::Warn);
        assert_eq!(status(&deep, "traces.spans-per-trace").0, Status::Pass);
        let flat: Vec<_> = std::iter::once(span("w", None, "batch", "SERVER"))
            .chain((0..120).map(|i| span(&format!("c{i}"), Some("w"), "item", "INTERNAL")))
            .collect();
        let wide = traced(vec![Trace::new("t6".to_owned(), flat)]);
        assert_eq!(status(&wide, "traces.spans-per-trace").0, Status::Warn);
        assert_eq!(status(&wide, "traces.span-depth").0, Status::Pass);
        let helpers: Vec<_> = std::iter::once(span("r", None, "job", "SERVER"))
            .chain((0..30).map(|i| span(&format!("h{i}"), Some("r"), "format_price", "INTERNAL")))
            .collect();
        let looped = traced(vec![Trace::new("t5".to_owned(), helpers)]);
        assert_eq!(status(&looped, "traces.library-spans").0, Status::Warn);
    }

    #[test]
    fn exemplars_must_point_at_exported_traces() {
        let f = parse(
            "# TYPE d_seconds histogram\nd_seconds_bucket{le=\"0.1\"} 1 # {trace_id=\"t1\"} 0.05\nd_seconds_bucket{le=\"+Inf\"} 2 # {trace_id=\"t9\"} 2\n",
        )
        .expect("ok");
        let tr = |ids: &[&str]| {
            ids.iter()
                .map(|i| Trace::new((*i).to_owned(), vec![span("a", None, "x", "SERVER")]))
                .collect::<Vec<_>>()
        };
        let o = |ids: &[&str]| Observed {
            metrics: Some((f.clone(), true)),
            traces: Some(tr(ids)),
            ..Observed::default()
        };
        assert_eq!(
            status(&o(&["t1", "t9"]), "metrics.exemplar-not-exported").0,
            Status::Pass
        );
        assert_eq!(
            status(&o(&["t1"]), "metrics.exemplar-not-exported").0,
            Status::Pass,
            "one may lag"
        );
        assert_eq!(
            status(&o(&["t5"]), "metrics.exemplar-not-exported").0,
            Status::Warn
        );
    }

    #[test]
    fn a_latency_bound_must_be_a_bucket_edge() {
        let spec = looptel_slo::Spec::from_yaml(
            "service: s\nowner: team\nrunbook_url: https://runbooks.example.com/s\nresponse_sla: { page: 15 minutes, ticket: next business day }\nselector: { job: s }\nslos:\n  - name: fast\n    description: fast\n    objective: 99\n    sli: { http: { routes: [\"/a\"] }, latency_under: 250ms }\n",
        )
        .expect("spec");
        let mut o = metrics(
            &histogram(
                "http_server_request_duration_seconds",
                &["0.1", "0.5", "+Inf"],
            ),
            true,
        );
        o.slo = Some(spec.clone());
        assert_eq!(status(&o, "metrics.slo-bound-not-a-bucket").0, Status::Fail);
        let mut o = metrics(
            &histogram(
                "http_server_request_duration_seconds",
                &["0.1", "0.25", "+Inf"],
            ),
            true,
        );
        o.slo = Some(spec);
        assert_eq!(status(&o, "metrics.slo-bound-not-a-bucket").0, Status::Pass);
    }
}
