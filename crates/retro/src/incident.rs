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
    /// Whether it moved: errors up by a point or more, or p99 doubled.
    pub moved: bool,
    /// How, in words.
    pub summary: String,
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
