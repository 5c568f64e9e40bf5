//! The SLO spec: what a team writes (YAML), read strictly and validated,
//! every error naming its field.

use std::collections::BTreeMap;
use std::time::Duration;

use looptel_catalogue::alerts::BURN_WINDOWS;
use looptel_catalogue::metrics::DURATION_BUCKETS;
use serde::Deserialize;

use crate::duration;
use crate::error::{Error, Invalid};

/// A service's SLOs, validated: every objective can page, every latency
/// threshold is a bucket bound (any duration on native histograms), every
/// name is a valid label value.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The service (`service` label of every rule).
    pub service: String,
    /// The owning team or on-call rotation (`owner` annotation).
    pub owner: String,
    /// The runbook (`runbook_url` annotation).
    pub runbook_url: String,
    /// The response each severity promises (`response_sla` annotation).
    pub response_sla: ResponseSla,
    /// Extra label matchers on every SLI's series (`job: order-service`).
    pub selector: BTreeMap<String, String>,
    /// Windows divided by this factor (1 = as the conventions say).
    pub scale: u32,
    /// With a duration, an alert when an SLO sees no traffic that long.
    pub no_traffic_alert: Option<Duration>,
    /// Which histograms the rules read: what the service keeps and
    /// Prometheus stores (`histograms: native` in the spec).
    pub histograms: HistogramKind,
    /// The SLOs.
    pub slos: Vec<Slo>,
}

/// Which histograms an SLO's rules read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistogramKind {
    /// Classic buckets (`_bucket{le=…}`, `_count`): a latency threshold
    /// must be a bucket bound.
    #[default]
    Classic,
    /// Native histograms (one series per label set, Prometheus with native
    /// histograms on): `histogram_count` and `histogram_fraction`, a
    /// latency threshold at any duration.
    Native,
}

/// The response time each severity promises.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSla {
    /// For a page (`15m`).
    pub page: String,
    /// For a ticket (`1 business day`).
    pub ticket: String,
}

/// One SLO.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    /// Its name (`slo` label): lower-case letters, digits and `-`.
    pub name: String,
    /// What it promises, in a sentence.
    pub description: String,
    /// The objective as a ratio (0.999).
    pub objective: f64,
    /// What counts.
    pub sli: Sli,
}

impl Slo {
    /// The error budget: `1 − objective`.
    pub fn budget(&self) -> f64 {
        1.0 - self.objective
    }
}

/// What an SLO measures.
#[derive(Clone, Debug, PartialEq)]
pub struct Sli {
    /// Whose calls.
    pub source: Source,
    /// `None`: availability (the classifier's failures are errors). Some
    /// bucket bound in seconds: latency (calls slower than it are errors).
    pub latency_under: Option<f64>,
}

/// The calls an SLI counts, by the metrics looptel emits.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// `http.server.request.duration`: these route templates, and these
    /// methods (all when empty).
    Http {
        /// `http.route` values (`/orders/{id}`).
        routes: Vec<String>,
        /// `http.request.method` values.
        methods: Vec<String>,
    },
    /// `rpc.server.call.duration`: these full methods
    /// (`inventory.v1.StockService/ReserveItem`).
    Grpc {
        /// `rpc.method` values.
        methods: Vec<String>,
    },
    /// `messaging.process.duration`: messages processed from these
    /// destinations.
    Messaging {
        /// `messaging.destination.name` values.
        destinations: Vec<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    service: String,
    owner: String,
    runbook_url: String,
    response_sla: ResponseSla,
    #[serde(default)]
    selector: BTreeMap<String, String>,
    #[serde(default)]
    windows: Option<RawWindows>,
    #[serde(default)]
    no_traffic_alert: Option<String>,
    #[serde(default)]
    histograms: Option<String>,
    slos: Vec<RawSlo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindows {
    /// `1h=1m`: the one-hour window becomes one minute, every window and
    /// `for` the same share.
    scale: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// Percent: `99.9`.
    objective: f64,
    sli: RawSli,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSli {
    #[serde(default)]
    http: Option<RawHttp>,
    #[serde(default)]
    grpc: Option<RawGrpc>,
    #[serde(default)]
    messaging: Option<RawMessaging>,
    #[serde(default)]
    latency_under: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    routes: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpc {
    methods: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessaging {
    destinations: Vec<String>,
}

impl Spec {
    /// Reads and validates a spec.
    ///
    /// # Errors
    /// [`Error::Yaml`] for YAML that does not fit the spec's shape (an
    /// unknown or missing field, a wrong type: the message names it and
    /// its line), [`Error::Invalid`] for values that cannot make working
    /// rules, each naming its field.
    ///
    /// ```
    /// let spec = looptel_slo::Spec::from_yaml(r#"
    /// service: checkout
    /// owner: team-payments
    /// runbook_url: https://runbooks.example.com/checkout
    /// response_sla: { page: 15m, ticket: 1 business day }
    /// slos:
    ///   - name: checkout-availability
    ///     objective: 99.9
    ///     sli: { http: { routes: ["/checkout"] } }
    /// "#).unwrap();
    /// assert!((spec.slos[0].budget() - 0.001).abs() < 1e-12);
    ///
    /// let err = looptel_slo::Spec::from_yaml(r#"
    /// service: checkout
    /// owner: team-payments
    /// runbook_url: https://runbooks.example.com/checkout
    /// response_sla: { page: 15m, ticket: 1 business day }
    /// slos:
    ///   - name: checkout-availability
    ///     objective: 90
    ///     sli: { http: { routes: ["/checkout"] } }
    /// "#).unwrap_err();
    /// assert!(err.to_string().contains("slos[0].objective"));
    /// ```
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        let raw: RawSpec = yaml_serde::from_str(text).map_err(|e| Error::Yaml(e.to_string()))?;
        let mut problems = Vec::new();
        let spec = validate(raw, &mut problems);
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(Error::Invalid(problems))
        }
    }

    /// A window as generated: divided by the spec's scale.
    pub fn scaled(&self, d: Duration) -> Duration {
        d / self.scale
    }

    /// The spec's selector as PromQL label matchers (`job="order-service"`),
    /// as every rule uses them.
    pub fn matchers(&self) -> Vec<String> {
        self.selector
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", quote(v)))
            .collect()
    }

    /// The SLO named `name`.
    pub fn slo(&self, name: &str) -> Option<&Slo> {
        self.slos.iter().find(|s| s.name == name)
    }
}

fn problem(problems: &mut Vec<Invalid>, field: impl Into<String>, message: impl Into<String>) {
    problems.push(Invalid {
        field: field.into(),
        message: message.into(),
    });
}

fn validate(raw: RawSpec, problems: &mut Vec<Invalid>) -> Spec {
    let label_value = |v: &str| !v.is_empty() && !v.chars().any(char::is_control);
    if !label_value(&raw.service) {
        problem(problems, "service", "must be a non-empty name");
    }
    if raw.owner.trim().is_empty() {
        problem(problems, "owner", "must name a team or on-call rotation");
    }
    if !(raw.runbook_url.starts_with("https://") || raw.runbook_url.starts_with("http://")) {
        problem(problems, "runbook_url", "must be an http(s) URL");
    }
    for (k, v) in &raw.selector {
        let name_ok = k
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if k.is_empty() || !name_ok || k.starts_with("__") {
            problem(problems, format!("selector.{k}"), "is not a label name");
        }
        if v.chars().any(char::is_control) {
            problem(
                problems,
                format!("selector.{k}"),
                "holds a control character",
            );
        }
    }
    let scale = match &raw.windows {
        None => 1,
        Some(w) => parse_scale(&w.scale).unwrap_or_else(|| {
            problem(
                problems,
                "windows.scale",
                format!(
                    "`{}` is not `1h=<shorter duration>` dividing an hour evenly (e.g. `1h=1m`)",
                    w.scale
                ),
            );
            1
        }),
    };
    let no_traffic_alert = raw.no_traffic_alert.as_deref().and_then(|t| {
        duration::parse(t).or_else(|| {
            problem(
                problems,
                "no_traffic_alert",
                format!("`{t}` is not a duration such as `15m`"),
            );
            None
        })
    });
    let histograms = match raw.histograms.as_deref().map(str::trim) {
        None | Some("classic") => HistogramKind::Classic,
        Some("native") => HistogramKind::Native,
        Some(other) => {
            problem(
                problems,
                "histograms",
                format!("`{other}` is neither `classic` nor `native`"),
            );
            HistogramKind::Classic
        }
    };
    if raw.slos.is_empty() {
        problem(problems, "slos", "lists no SLO");
    }
    let mut names = std::collections::HashSet::new();
    let slos = raw
        .slos
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let at = |f: &str| format!("slos[{i}].{f}");
            let name_ok = !s.name.is_empty()
                && s.name.len() <= 63
                && s.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && s.name.as_bytes()[0].is_ascii_lowercase();
            if !name_ok {
                problem(
                    problems,
                    at("name"),
                    format!("`{}` must be lower-case letters, digits and `-`, starting with a letter", s.name),
                );
            }
            if !names.insert(s.name.clone()) {
                problem(problems, at("name"), format!("`{}` is used twice", s.name));
            }
            let fastest = BURN_WINDOWS
                .iter()
                .map(|w| w.burn_rate)
                .fold(0.0_f64, f64::max);
            if !(s.objective > 0.0 && s.objective < 100.0) {
                problem(
                    problems,
                    at("objective"),
                    format!(
                        "{} must be a percentage above 0 and below 100 (100 leaves no error budget to burn)",
                        s.objective
                    ),
                );
            } else if fastest * (100.0 - s.objective) / 100.0 > 1.0 {
                problem(
                    problems,
                    at("objective"),
                    format!(
                        "{} % can never page: the fastest burn rate ({fastest}×) times the budget ({:.2} %) exceeds 100 % errors; use an objective of at least {:.2} %",
                        s.objective,
                        100.0 - s.objective,
                        100.0 - 100.0 / fastest
                    ),
                );
            }
            let sli = validate_sli(s.sli, &at("sli"), histograms, problems);
            Slo {
                description: s.description.unwrap_or_else(|| default_description(&s.name)),
                name: s.name,
                objective: s.objective / 100.0,
                sli,
            }
        })
        .collect();
    Spec {
        service: raw.service,
        owner: raw.owner,
        runbook_url: raw.runbook_url,
        response_sla: raw.response_sla,
        selector: raw.selector,
        scale,
        no_traffic_alert,
        histograms,
        slos,
    }
}

fn default_description(name: &str) -> String {
    format!("SLO {name}")
}

/// `1h=1m` → 60.
fn parse_scale(text: &str) -> Option<u32> {
    let (from, to) = text.split_once('=')?;
    let (from, to) = (duration::parse(from)?, duration::parse(to)?);
    if from != Duration::from_secs(3600) || to > from {
        return None;
    }
    let (from, to) = (from.as_millis(), to.as_millis());
    (from % to == 0)
        .then(|| u32::try_from(from / to).ok())
        .flatten()
}

fn validate_sli(
    raw: RawSli,
    at: &str,
    histograms: HistogramKind,
    problems: &mut Vec<Invalid>,
) -> Sli {
    let sources = [
        raw.http.is_some(),
        raw.grpc.is_some(),
        raw.messaging.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if sources != 1 {
        problem(
            problems,
            at,
            "needs exactly one of `http`, `grpc`, `messaging`",
        );
    }
    let values = |field: String, list: &[String], problems: &mut Vec<Invalid>| {
        if list.is_empty() {
            problem(problems, field.clone(), "lists nothing");
        }
        for v in list {
            if v.is_empty() || v.chars().any(char::is_control) {
                problem(
                    problems,
                    field.clone(),
                    format!("`{v}` is not a label value"),
                );
            }
        }
    };
    let source = if let Some(h) = raw.http {
        values(format!("{at}.http.routes"), &h.routes, problems);
        for m in &h.methods {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) && m != "_OTHER" {
                problem(
                    problems,
                    format!("{at}.http.methods"),
                    format!("`{m}` is not an HTTP method"),
                );
            }
        }
        Source::Http {
            routes: h.routes,
            methods: h.methods,
        }
    } else if let Some(g) = raw.grpc {
        values(format!("{at}.grpc.methods"), &g.methods, problems);
        for m in &g.methods {
            if !m.contains('/') || m.starts_with('/') {
                problem(
                    problems,
                    format!("{at}.grpc.methods"),
                    format!(
                        "`{m}` is not a full method such as `inventory.v1.StockService/ReserveItem`"
                    ),
                );
            }
        }
        Source::Grpc { methods: g.methods }
    } else if let Some(m) = raw.messaging {
        values(
            format!("{at}.messaging.destinations"),
            &m.destinations,
            problems,
        );
        Source::Messaging {
            destinations: m.destinations,
        }
    } else {
        Source::Http {
            routes: Vec::new(),
            methods: Vec::new(),
        }
    };
    let latency_under = raw.latency_under.as_deref().and_then(|t| {
        let Some(d) = duration::parse(t) else {
            problem(problems, format!("{at}.latency_under"), format!("`{t}` is not a duration such as `500ms`"));
            return None;
        };
        let secs = d.as_secs_f64();
        if histograms == HistogramKind::Classic && !DURATION_BUCKETS.iter().any(|b| (b - secs).abs() < 1e-9) {
            let bounds: Vec<String> = DURATION_BUCKETS
                .iter()
                .map(|b| duration::format(Duration::from_secs_f64(*b)))
                .collect();
            problem(
                problems,
                format!("{at}.latency_under"),
                format!(
                    "{t} is not a bucket bound of the duration histograms, so no series counts calls under it; use one of {}",
                    bounds.join(", ")
                ),
            );
            return None;
        }
        Some(secs)
    });
    Sli {
        source,
        latency_under,
    }
}

/// A PromQL string literal's contents.
pub(crate) fn quote(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}
