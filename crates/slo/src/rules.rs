//! The Prometheus rule file of a spec: recording rules for the error ratio
//! over each window, the budget figures, one alert rule per burn-rate
//! window pair.

use std::collections::BTreeMap;
use std::time::Duration;

use looptel_catalogue::alerts::{self, BURN_WINDOWS, BurnWindow, Severity};
use looptel_catalogue::metrics::{
    HTTP_SERVER_REQUEST_DURATION, MESSAGING_PROCESS_DURATION, RPC_SERVER_CALL_DURATION,
};
use looptel_catalogue::prometheus::label_name;
use opentelemetry_semantic_conventions::attribute as m;
use serde::Serialize;

use crate::duration;
use crate::spec::{HistogramKind, Slo, Source, Spec, quote};

/// The budget window of every SLO (CONVENTIONS: 30-day window).
pub const BUDGET_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long each window pair's condition must hold before it fires, most
/// urgent first: long enough to ride out one bad scrape, short against
/// the pair's own reset (the short window). Sloth sets none.
pub const FOR: [Duration; 4] = [
    Duration::from_secs(2 * 60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(60 * 60),
];

/// The recording rule of an SLO's error ratio over a window, named by the
/// window as the conventions give it (also when the spec scales windows).
pub fn error_ratio_record(window: Duration) -> String {
    format!("slo:error_ratio:rate{}", duration::format(window))
}

/// The recording rule of the remaining 30-day error budget (1 = untouched,
/// 0 = spent, below 0 = overspent).
pub const BUDGET_REMAINING_RECORD: &str = "slo:error_budget_remaining:ratio";
/// The recording rule of an SLO's objective (0.999).
pub const OBJECTIVE_RECORD: &str = "slo:objective:ratio";
/// The alert on an SLO that sees no traffic (opt-in).
pub const NO_TRAFFIC_ALERT: &str = "SLOTrafficMissing";

/// The alert of a window pair: `ErrorBudgetBurn1h`, … (by its long
/// window, as the conventions give it).
pub fn burn_alert(window: &BurnWindow) -> String {
    format!("ErrorBudgetBurn{}", duration::format(window.long))
}

/// The window pair an alert's `window` label names (`1h` → the 1h/5m
/// page pair).
pub fn burn_window(label: &str) -> Option<&'static BurnWindow> {
    BURN_WINDOWS
        .iter()
        .find(|w| duration::format(w.long) == label)
}

/// Every window a ratio is recorded over: the pairs' long and short ones
/// and the budget window, shortest first.
pub fn windows() -> Vec<Duration> {
    let mut w: Vec<Duration> = BURN_WINDOWS
        .iter()
        .flat_map(|w| [w.short, w.long])
        .chain([BUDGET_WINDOW])
        .collect();
    w.sort();
    w.dedup();
    w
}

#[derive(Serialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Serialize)]
struct Group {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Rule {
    Record {
        record: String,
        expr: String,
        labels: BTreeMap<&'static str, String>,
    },
    Alert {
        alert: String,
        expr: String,
        #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
        for_: Option<String>,
        labels: BTreeMap<&'static str, String>,
        annotations: BTreeMap<&'static str, String>,
    },
}

/// A number as PromQL reads it, without float noise (`0.0144`, not
/// `0.014400000000000001`).
pub(crate) fn number(x: f64) -> String {
    let rounded = (x * 1e12).round() / 1e12;
    format!("{rounded}")
}

/// Escapes a label value for a PromQL regex.
fn regex_escape(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `name="v"` for one value, `name=~"a|b"` for several.
fn matcher(name: &str, values: &[String]) -> Option<String> {
    match values {
        [] => None,
        [one] => Some(format!("{name}=\"{}\"", quote(one))),
        many => Some(format!(
            "{name}=~\"{}\"",
            quote(
                &many
                    .iter()
                    .map(|v| regex_escape(v))
                    .collect::<Vec<_>>()
                    .join("|")
            )
        )),
    }
}

/// Both renderings of a bucket bound: as looptel and Prometheus 2 write it
/// (`1`) and as Prometheus 3 normalises it (`1.0`).
pub fn le_renderings(bound: f64) -> Vec<String> {
    let plain = format!("{bound}");
    let mut out = vec![plain.clone()];
    if !plain.contains('.') && !plain.contains('e') {
        out.push(format!("{plain}.0"));
    }
    out
}

/// The histogram an SLI reads, and its labels with the values it counts
/// (an empty list: any value), as Prometheus names them.
pub(crate) fn source_labels(source: &Source) -> (String, Vec<(String, &[String])>) {
    let label = |key: &str| label_name(key);
    match source {
        Source::Http { routes, methods } => (
            HTTP_SERVER_REQUEST_DURATION.prometheus_name(),
            vec![
                (label(m::HTTP_ROUTE), routes.as_slice()),
                (label(m::HTTP_REQUEST_METHOD), methods.as_slice()),
            ],
        ),
        Source::Grpc { methods } => (
            RPC_SERVER_CALL_DURATION.prometheus_name(),
            vec![(label(m::RPC_METHOD), methods.as_slice())],
        ),
        Source::Messaging { destinations } => (
            MESSAGING_PROCESS_DURATION.prometheus_name(),
            vec![(
                label(m::MESSAGING_DESTINATION_NAME),
                destinations.as_slice(),
            )],
        ),
    }
}

/// The label of the classifier's failures: set on exactly their series.
pub(crate) fn error_type_label() -> String {
    label_name(m::ERROR_TYPE)
}

/// The histogram an SLO reads and its label matchers (the spec's selector
/// first).
pub(crate) fn series(spec: &Spec, slo: &Slo) -> (String, Vec<String>) {
    let mut matchers = spec.matchers();
    let (metric, labels) = source_labels(&slo.sli.source);
    matchers.extend(labels.iter().filter_map(|(l, values)| matcher(l, values)));
    (metric, matchers)
}

/// The raw series an SLO's SLI is computed from, for what reads them back
/// (exemplar queries, dashboards): the histogram, its label matchers, and
/// which of its series count as errors. The rule files are built from the
/// same values.
#[derive(Clone, Debug, PartialEq)]
pub struct SliSeries {
    /// The histogram's Prometheus name (`http_server_request_duration_seconds`).
    pub metric: String,
    /// Its label matchers, the spec's selector first (`job="order-service"`,
    /// `http_route=~"/orders|/orders/\\{id\\}"`).
    pub matchers: Vec<String>,
    /// The latency bound in seconds, for a latency SLI.
    pub latency_under: Option<f64>,
    /// Whether the histogram is native (one series per label set, its
    /// exemplars on the series itself).
    pub native: bool,
}

impl SliSeries {
    /// The series of an SLO of `spec`.
    pub fn of(spec: &Spec, slo: &Slo) -> Self {
        let (metric, matchers) = series(spec, slo);
        Self {
            metric,
            matchers,
            latency_under: slo.sli.latency_under,
            native: spec.histograms == HistogramKind::Native,
        }
    }

    /// A selector of the series exemplars are kept on: the buckets
    /// (`http_server_request_duration_seconds_bucket{job="…",…}`), or the
    /// native histogram itself.
    pub fn buckets(&self) -> String {
        let suffix = if self.native { "" } else { "_bucket" };
        format!("{}{suffix}{}", self.metric, selector(&self.matchers, &[]))
    }

    /// A selector of the histogram's `_count` series (the native histogram
    /// itself: read it with `histogram_count`), plus `extra` matchers.
    pub fn count(&self, extra: &[String]) -> String {
        let suffix = if self.native { "" } else { "_count" };
        format!("{}{suffix}{}", self.metric, selector(&self.matchers, extra))
    }

    /// The calls over `window` (a PromQL range such as `5m`), summed, plus
    /// `extra` matchers: `sum(increase(…_count{…}[5m]))`, or
    /// `histogram_count(sum(increase(…{…}[5m])))` for a native histogram.
    pub fn calls(&self, extra: &[String], window: &str) -> String {
        self.summed("increase", extra, window)
    }

    /// The calls per second over `window`, summed, plus `extra` matchers
    /// (`rate` where [`calls`](Self::calls) has `increase`).
    pub fn call_rate(&self, extra: &[String], window: &str) -> String {
        self.summed("rate", extra, window)
    }

    fn summed(&self, function: &str, extra: &[String], window: &str) -> String {
        let sum = format!("sum({function}({}[{window}]))", self.count(extra));
        if self.native {
            format!("histogram_count({sum})")
        } else {
            sum
        }
    }

    /// Whether an exemplar with these series labels and this value is one
    /// of the SLI's errors: for availability, one on a series with an
    /// `error_type`; for latency, one above the bound (by its bucket's `le`
    /// on classic buckets, by its value on a native histogram).
    pub fn is_error<'a>(&self, mut label: impl FnMut(&str) -> Option<&'a str>, value: f64) -> bool {
        match self.latency_under {
            None => label(&error_type_label()).is_some_and(|v| !v.is_empty()),
            Some(bound) if self.native => value > bound,
            Some(bound) => label("le")
                .and_then(|le| le.parse::<f64>().ok())
                .is_some_and(|le| le > bound),
        }
    }

    /// The label of the classifier's failures (`error_type`).
    pub fn error_label() -> String {
        error_type_label()
    }
}

fn selector(matchers: &[String], extra: &[String]) -> String {
    let all: Vec<&str> = matchers.iter().chain(extra).map(String::as_str).collect();
    format!("{{{}}}", all.join(","))
}

/// `sum(rate(…[w])) or vector(0)`: zero, not nothing, when no series has
/// data, so that no traffic is a ratio of 0, never NaN.
fn rate_sum(metric: &str, selector: &str, window: &str) -> String {
    format!("(sum(rate({metric}{selector}[{window}])) or vector(0))")
}

/// The error ratio of an SLO over `window` (already scaled): a ratio of
/// rates over the whole window, never an average of shorter ratios.
pub fn error_ratio_expr(spec: &Spec, slo: &Slo, window: Duration) -> String {
    let (metric, matchers) = series(spec, slo);
    let w = duration::format(window);
    if spec.histograms == HistogramKind::Native {
        return native_error_ratio(&metric, &matchers, slo.sli.latency_under, &w);
    }
    let count = format!("{metric}_count");
    let total = rate_sum(&count, &selector(&matchers, &[]), &w);
    let errors = match slo.sli.latency_under {
        // The classifier's failures: the only series with an `error_type`.
        None => rate_sum(
            &count,
            &selector(&matchers, &[format!("{}!=\"\"", error_type_label())]),
            &w,
        ),
        // Calls above the bound: all minus those in its bucket, either
        // rendering of `le`.
        Some(bound) => {
            let le = le_renderings(bound)
                .iter()
                .map(|r| regex_escape(r))
                .collect::<Vec<_>>()
                .join("|");
            let good = rate_sum(
                &format!("{metric}_bucket"),
                &selector(&matchers, &[format!("le=~\"{}\"", quote(&le))]),
                &w,
            );
            format!("clamp_min({total} - {good}, 0)")
        }
    };
    format!("{errors} / clamp_min({total}, 1e-12)")
}

/// [`rate_sum`] on a native histogram: its count, zero when no series has
/// data.
fn native_rate_sum(metric: &str, selector: &str, window: &str) -> String {
    format!("(histogram_count(sum(rate({metric}{selector}[{window}]))) or vector(0))")
}

/// The error ratio over `w` on a native histogram: calls are
/// `histogram_count` of the summed rates; for latency, the errors are the
/// calls above the bound, `1 − histogram_fraction(0, bound, …)` of them —
/// a ratio of rates, as on classic buckets. A window without calls, where
/// the fraction is NaN, counts no errors (`> 0` drops NaN and 0 alike).
fn native_error_ratio(
    metric: &str,
    matchers: &[String],
    latency_under: Option<f64>,
    w: &str,
) -> String {
    let all = format!("sum(rate({metric}{}[{w}]))", selector(matchers, &[]));
    let total = native_rate_sum(metric, &selector(matchers, &[]), w);
    let errors = match latency_under {
        None => native_rate_sum(
            metric,
            &selector(matchers, &[format!("{}!=\"\"", error_type_label())]),
            w,
        ),
        Some(bound) => format!(
            "((histogram_count({all}) * (1 - histogram_fraction(0, {}, {all}))) > 0 or vector(0))",
            number(bound)
        ),
    };
    format!("{errors} / clamp_min({total}, 1e-12)")
}

fn slo_labels(spec: &Spec, slo: &Slo) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (alerts::SERVICE, spec.service.clone()),
        (alerts::SLO, slo.name.clone()),
    ])
}

/// An SLO's recorded series (`slo:error_ratio:rate5m`,
/// [`BUDGET_REMAINING_RECORD`], …) selected by its `service` and `slo`
/// labels, as the alert rules read it.
pub fn recorded(name: &str, spec: &Spec, slo: &Slo) -> String {
    format!(
        "{name}{{{}=\"{}\",{}=\"{}\"}}",
        alerts::SERVICE,
        quote(&spec.service),
        alerts::SLO,
        quote(&slo.name)
    )
}

fn percent(ratio: f64) -> String {
    number(ratio * 100.0)
}

/// The annotations of a window pair's alert (static text, so that
/// promtool tests can name them exactly).
pub(crate) fn burn_annotations(
    spec: &Spec,
    slo: &Slo,
    w: &BurnWindow,
) -> BTreeMap<&'static str, String> {
    let (long, short) = (
        duration::format(spec.scaled(w.long)),
        duration::format(spec.scaled(w.short)),
    );
    let what = if slo.sli.latency_under.is_some() {
        "were too slow"
    } else {
        "failed"
    };
    BTreeMap::from([
        (
            alerts::SUMMARY,
            format!(
                "{}: {} is burning its error budget {}× too fast",
                spec.service, slo.name, w.burn_rate
            ),
        ),
        (
            alerts::DESCRIPTION,
            format!(
                "More than {} % of the calls counted by {} {what} over both the last {long} and the last {short} (objective {} %): at this rate {} % of the 30-day error budget is gone within {long}. {}",
                percent(w.burn_rate * slo.budget()),
                slo.name,
                percent(slo.objective),
                number(w.budget_spent_percent),
                slo.description
            ),
        ),
        (alerts::RUNBOOK_URL, spec.runbook_url.clone()),
        (alerts::OWNER, spec.owner.clone()),
        (
            alerts::RESPONSE_SLA,
            match w.severity {
                Severity::Page => spec.response_sla.page.clone(),
                Severity::Ticket => spec.response_sla.ticket.clone(),
            },
        ),
    ])
}

/// The labels of a window pair's alert, beyond those of its expression.
pub(crate) fn burn_labels(
    spec: &Spec,
    slo: &Slo,
    w: &BurnWindow,
) -> BTreeMap<&'static str, String> {
    let mut labels = slo_labels(spec, slo);
    labels.insert(alerts::SEVERITY, w.severity.as_str().to_owned());
    labels.insert(alerts::WINDOW, duration::format(w.long));
    labels
}

/// The no-traffic alert's labels.
pub(crate) fn no_traffic_labels(spec: &Spec, slo: &Slo) -> BTreeMap<&'static str, String> {
    let mut labels = slo_labels(spec, slo);
    labels.insert(alerts::SEVERITY, Severity::Ticket.as_str().to_owned());
    labels
}

/// The no-traffic alert's annotations.
pub(crate) fn no_traffic_annotations(
    spec: &Spec,
    slo: &Slo,
    after: Duration,
) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (
            alerts::SUMMARY,
            format!(
                "{}: {} has seen no traffic for {}",
                spec.service,
                slo.name,
                duration::format(after)
            ),
        ),
        (
            alerts::DESCRIPTION,
            format!(
                "No call counted by {} in the last {}: its burn-rate alerts cannot fire without traffic. Is the service down, unscraped, or renamed?",
                slo.name,
                duration::format(after)
            ),
        ),
        (alerts::RUNBOOK_URL, spec.runbook_url.clone()),
        (alerts::OWNER, spec.owner.clone()),
        (alerts::RESPONSE_SLA, spec.response_sla.ticket.clone()),
    ])
}

/// The group a spec's SLO gets.
pub(crate) fn group_name(spec: &Spec, slo: &Slo) -> String {
    format!("looptel-slo:{}:{}", spec.service, slo.name)
}

/// The rule file of one SLO of `spec` (one group), as YAML, with a header
/// saying what made it (and, for scaled windows, that they are scaled).
/// One file per SLO keeps each SLO's promtool tests to its own alerts.
///
/// # Errors
/// [`Error::Write`](crate::Error::Write) if the YAML cannot be written.
pub fn rule_file(spec: &Spec, slo: &Slo) -> Result<String, crate::Error> {
    let groups = std::iter::once(slo)
        .map(|slo| {
            let labels = slo_labels(spec, slo);
            let mut rules: Vec<Rule> = windows()
                .into_iter()
                .map(|w| Rule::Record {
                    record: error_ratio_record(w),
                    expr: error_ratio_expr(spec, slo, spec.scaled(w)),
                    labels: labels.clone(),
                })
                .collect();
            rules.push(Rule::Record {
                record: OBJECTIVE_RECORD.to_owned(),
                expr: format!("vector({})", number(slo.objective)),
                labels: labels.clone(),
            });
            rules.push(Rule::Record {
                record: BUDGET_REMAINING_RECORD.to_owned(),
                expr: format!(
                    "1 - {} / {}",
                    recorded(&error_ratio_record(BUDGET_WINDOW), spec, slo),
                    number(slo.budget())
                ),
                labels: labels.clone(),
            });
            for (w, for_) in BURN_WINDOWS.iter().zip(FOR) {
                let threshold = number(w.burn_rate * slo.budget());
                rules.push(Rule::Alert {
                    alert: burn_alert(w),
                    expr: format!(
                        "{} > {threshold} and {} > {threshold}",
                        recorded(&error_ratio_record(w.long), spec, slo),
                        recorded(&error_ratio_record(w.short), spec, slo),
                    ),
                    for_: Some(duration::format(spec.scaled(for_))),
                    labels: burn_labels(spec, slo, w),
                    annotations: burn_annotations(spec, slo, w),
                });
            }
            if let Some(after) = spec.no_traffic_alert {
                let (metric, matchers) = series(spec, slo);
                let window = duration::format(spec.scaled(after));
                let calls = if spec.histograms == HistogramKind::Native {
                    native_rate_sum(&metric, &selector(&matchers, &[]), &window)
                } else {
                    rate_sum(
                        &format!("{metric}_count"),
                        &selector(&matchers, &[]),
                        &window,
                    )
                };
                rules.push(Rule::Alert {
                    alert: NO_TRAFFIC_ALERT.to_owned(),
                    expr: format!("{calls} == 0"),
                    for_: None,
                    labels: no_traffic_labels(spec, slo),
                    annotations: no_traffic_annotations(spec, slo, spec.scaled(after)),
                });
            }
            Group {
                name: group_name(spec, slo),
                interval: (spec.scale > 1).then(|| evaluation_interval(spec)),
                rules,
            }
        })
        .collect();
    let body = yaml_serde::to_string(&RuleFile { groups })
        .map_err(|e| crate::Error::Write(e.to_string()))?;
    Ok(format!("{}{body}", header(spec, "rules")))
}

/// How often scaled rules are evaluated: a minute, scaled (at least 1 s).
pub(crate) fn evaluation_interval(spec: &Spec) -> String {
    duration::format(
        spec.scaled(Duration::from_secs(60))
            .max(Duration::from_secs(1)),
    )
}

/// The comment at the top of a generated file.
pub(crate) fn header(spec: &Spec, what: &str) -> String {
    let mut h = format!(
        "# Generated by looptel-slo from the SLO spec of {}: do not edit; edit the spec and run\n# `looptel-slo generate` again ({what}).\n",
        spec.service
    );
    if spec.scale > 1 {
        let pairs: Vec<String> = BURN_WINDOWS
            .iter()
            .map(|w| {
                format!(
                    "{}/{} -> {}/{}",
                    duration::format(w.long),
                    duration::format(w.short),
                    duration::format(spec.scaled(w.long)),
                    duration::format(spec.scaled(w.short))
                )
            })
            .collect();
        h.push_str(&format!(
            "# WINDOWS SCALED DOWN {}x FOR DEMOS AND TESTS: {}; budget 30d -> {}.\n# Rule names keep the nominal windows.\n",
            spec.scale,
            pairs.join(", "),
            duration::format(spec.scaled(BUDGET_WINDOW))
        ));
    }
    h
}
