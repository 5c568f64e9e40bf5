//! The incident card — alert, SLO, timeline, evidence, actions,
//! verification — one per alert fingerprint and start time.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::sources::{Exemplar, LogLine, SourceError};
use crate::trace::{Analysis, Span};
use crate::webhook::Alert;

/// Where a card stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The alert fires.
    Firing,
    /// The alert resolved; the recovery is being checked.
    Resolved,
    /// The SLI recovered with traffic flowing.
    Verified,
    /// The alert resolved but the SLI did not recover, or there was no
    /// traffic to tell.
    NotVerified,
}

impl State {
    /// As a card shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved, verifying",
            Self::Verified => "verified",
            Self::NotVerified => "not verified",
        }
    }
}

/// An incident card.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Incident {
    /// `{fingerprint}-{startsAt, Unix seconds}`.
    pub id: String,
    /// Where it stands.
    pub state: State,
    /// The alert, as last received.
    pub alert: Alert,
    /// The SLO it burns, from the spec.
    pub slo: Option<SloFacts>,
    /// What happened, in order.
    pub timeline: Vec<Event>,
    /// What explains it (once gathered).
    pub evidence: Option<Evidence>,
    /// Improvement items.
    pub actions: Vec<Action>,
    /// The recovery check (once done).
    pub verification: Option<Verification>,
}

/// The SLO an alert burns, as the spec says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SloFacts {
    /// Its name.
    pub name: String,
    /// What it promises.
    pub description: String,
    /// Objective, percent.
    pub objective_percent: f64,
    /// The window pair that fired (`1h/5m`, as the spec runs it).
    pub windows: String,
    /// Its burn rate threshold (14.4).
    pub burn_rate: f64,
    /// The share of the 30-day budget that pair spends before it fires.
    pub budget_spent_percent: f64,
    /// The error ratio the alert fires above (burn rate × budget).
    pub threshold: f64,
    /// `page` or `ticket`.
    pub severity: String,
    /// Runbook.
    pub runbook_url: String,
    /// Owner / on-call.
    pub owner: String,
    /// The response the severity promises.
    pub response_sla: String,
    /// The remaining 30-day budget when the evidence was gathered (1 =
    /// untouched).
    pub budget_remaining: Option<f64>,
}

/// One line of a timeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What.
    pub what: String,
}

/// An improvement item.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Action {
    /// When it was attached.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What is to be (or was) done.
    pub text: String,
    /// The change that does it.
    pub link: Option<String>,
}

/// What was gathered for a firing alert.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// The exemplar window's start.
    #[serde(with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// Its end.
    #[serde(with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    /// The raw selector exemplars were read from.
    pub selector: String,
    /// How many exemplars the window held.
    pub exemplars_seen: usize,
    /// The traces found, best first.
    pub traces: Vec<TraceEvidence>,
    /// Exemplars whose trace the source did not have.
    pub missing: Vec<MissingTrace>,
    /// Log lines of those traces (found or not), oldest first.
    pub logs: Vec<LogLine>,
    /// The service's dependencies, before and during.
    pub dependencies: Vec<Dependency>,
    /// The SLI around the alert.
    pub sli: Option<SliChart>,
    /// When the burn started and the windows compared (before it, during
    /// it).
    #[serde(default)]
    pub windows: Option<Windows>,
    /// What changed before the burn, oldest first.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// WARN and ERROR lines grouped into patterns, during the burn and
    /// before it, most risen first.
    #[serde(default)]
    pub log_patterns: Vec<LogPattern>,
    /// What most likely caused it, best first.
    #[serde(default)]
    pub hypotheses: Vec<Hypothesis>,
    /// For an alert about missing traffic: what stopped, and when.
    #[serde(default)]
    pub no_traffic: Option<NoTraffic>,
    /// Sources that failed.
    pub problems: Vec<SourceError>,
    /// Links for a person.
    pub links: Vec<Link>,
}

/// A trace that explains the alert.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TraceEvidence {
    /// Its id.
    pub trace_id: String,
    /// The exemplar that named it.
    pub exemplar: Exemplar,
    /// Whether that exemplar's series holds the SLI's errors (a failed or
    /// too slow call).
    pub from_error_series: bool,
    /// What it says.
    pub analysis: Analysis,
    /// Its spans (at most [`MAX_SPANS`]), for the waterfall.
    pub spans: Vec<Span>,
    /// The trace in Grafana Explore, if configured.
    pub link: Option<String>,
}

/// The most spans a card keeps of one trace.
pub const MAX_SPANS: usize = 200;

/// An exemplar whose trace was not found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MissingTrace {
    /// Its id.
    pub trace_id: String,
    /// Why.
    pub reason: String,
}

/// RED of one dependency at one time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Red {
    /// Calls per second.
    pub rate: f64,
    /// Failed share (0–1).
    pub error_ratio: f64,
    /// 99th percentile duration, seconds.
    pub p99_seconds: Option<f64>,
}

/// A dependency the service calls, before the alert and during it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dependency {
    /// `gRPC`, `HTTP` or `messaging`.
    pub kind: String,
    /// The method, route or destination, and the server.
    pub name: String,
    /// Before the alert (no calls: `None`).
    pub before: Option<Red>,
    /// During it.
    pub during: Option<Red>,
    /// Whether it is named as a cause: errors up by a point or more, p99
    /// doubled or over the SLO's latency bound — or, without a baseline,
    /// failing or over the bound.
    pub moved: bool,
    /// How, in words.
    pub summary: String,
}

/// A stretch of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// From.
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// To.
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
}

impl Window {
    /// Its length.
    pub fn length(&self) -> std::time::Duration {
        (self.to - self.from).try_into().unwrap_or_default()
    }
}

/// When the burn started, and the windows a card compares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    /// When the SLI's short-window error ratio crossed the alert's
    /// threshold (the alert fires later: it needs the long window too).
    #[serde(with = "time::serde::rfc3339")]
    pub burn_started: OffsetDateTime,
    /// The baseline: the stretch just before the burn (ending a short
    /// window before it, so no faulty call is in it), as long as there is
    /// data; `None` when there is less than the minimum.
    pub before: Option<Window>,
    /// The burn: from a short window before it started to the evidence's
    /// end.
    pub during: Window,
    /// The shortest baseline used, seconds.
    pub min_baseline_seconds: f64,
    /// What was compared, in words (`no baseline: …` when there was none).
    pub note: String,
}

/// Where a change was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSource {
    /// On the service's metrics: `target_info`,
    /// `process_start_time_seconds`, `looptel_change_time_seconds`.
    Metrics,
    /// Announced to retro (`POST /changes`) by a deploy tool or a person.
    Announced,
}

/// Something that changed before a burn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `version` (a new `service.version`), `restart`, `fault_switch`,
    /// `deploy`, … (announced changes: as announced).
    pub kind: String,
    /// What, in a few words.
    pub what: String,
    /// The version it brought, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The pull request, pipeline run or release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Where it was seen.
    pub source: ChangeSource,
}

/// Log lines of one pattern (numbers, ids and quoted values masked).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogPattern {
    /// The message with its variable parts masked (`order <n> failed:
    /// "…"`).
    pub pattern: String,
    /// `ERROR` or `WARN`.
    pub level: String,
    /// Lines during the burn.
    pub during: usize,
    /// Lines in the baseline window (0 without one).
    pub before: usize,
    /// One line as written.
    pub example: String,
}

/// What a hypothesis is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HypothesisKind {
    /// A dependency the service calls got slow or failed.
    Dependency,
    /// A dependency the service needs was down (`looptel_dependency_up`).
    Down,
    /// A step of the service's own work failed or held the time.
    Step,
    /// Something changed just before.
    Change,
    /// The calls stopped.
    Traffic,
}

/// A likely cause, in one sentence, with its evidence and its score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    /// What it is about.
    pub kind: HypothesisKind,
    /// The sentence (`inventory.v1.StockService/ReserveItem is slow: p99
    /// 3 ms → 950 ms; in 3 of 3 evidence traces it holds 97 % of the
    /// critical path`).
    pub text: String,
    /// 0 to 1; the card's order.
    pub score: f64,
    /// How the score was made, term by term.
    pub why: Vec<String>,
}

/// An alert about missing traffic: which SLI saw no calls, since when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoTraffic {
    /// The SLI's series.
    pub sli: String,
    /// The last time it saw calls, within what was looked at.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    /// How far back was looked, seconds.
    pub looked_back_seconds: f64,
}

/// The SLI around the alert, for the picture.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SliChart {
    /// The recorded series drawn (`slo:error_ratio:rate5m`).
    pub series: String,
    /// (Unix seconds, error ratio).
    pub points: Vec<(f64, f64)>,
    /// The alert's threshold.
    pub threshold: f64,
    /// The alert's start, Unix seconds.
    pub starts_at: f64,
    /// Its end, if resolved.
    pub ends_at: Option<f64>,
}

/// A link for a person.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Link {
    /// What it opens.
    pub title: String,
    /// Where.
    pub url: String,
}

/// The recovery check.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verification {
    /// Recovered with traffic flowing.
    pub verified: bool,
    /// When it was checked.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The window checked, seconds.
    pub window_seconds: f64,
    /// Calls counted by the SLI in the window.
    pub requests: f64,
    /// At least this many were needed.
    pub min_requests: f64,
    /// The SLI's error ratio over the window.
    pub error_ratio: Option<f64>,
    /// That ratio over the budget (1 = spending exactly the budget).
    pub burn_rate: Option<f64>,
    /// Why, in words.
    pub reason: String,
}

/// The key a retry shares with the first delivery.
pub(crate) fn incident_id(alert: &Alert) -> String {
    format!(
        "{}-{}",
        alert
            .fingerprint
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(32)
            .collect::<String>(),
        alert.starts_at.unix_timestamp()
    )
}
