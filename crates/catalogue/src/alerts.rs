//! What every SLO alert carries, and the burn-rate windows
//! (CONVENTIONS: SLO burn-rate alerts, 30-day window).

use std::time::Duration;

/// Label: `page` or `ticket`.
pub const SEVERITY: &str = "severity";
/// Label: the SLO's name.
pub const SLO: &str = "slo";
/// Label: the service.
pub const SERVICE: &str = "service";
/// Label: which window pair fired (`1h`, `6h`, `1d`, `3d`: the long window).
pub const WINDOW: &str = "window";

/// Annotation: one line.
pub const SUMMARY: &str = "summary";
/// Annotation: what burns and how fast.
pub const DESCRIPTION: &str = "description";
/// Annotation: the runbook.
pub const RUNBOOK_URL: &str = "runbook_url";
/// Annotation: the owning team or on-call.
pub const OWNER: &str = "owner";
/// Annotation: the response time the severity promises.
pub const RESPONSE_SLA: &str = "response_sla";

/// The severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Wake someone up.
    Page,
    /// Next working day.
    Ticket,
}

impl Severity {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Page => "page",
            Self::Ticket => "ticket",
        }
    }
}

/// A multi-window burn-rate pair: the alert fires when both windows burn
/// faster than `burn_rate × (1 − objective)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurnWindow {
    /// Page or ticket.
    pub severity: Severity,
    /// The long window.
    pub long: Duration,
    /// The short window (fast reset).
    pub short: Duration,
    /// The burn-rate factor.
    pub burn_rate: f64,
    /// The share of a 30-day budget spent when it fires, in percent.
    pub budget_spent_percent: f64,
}

const HOUR: u64 = 3600;

/// The four window pairs, most urgent first.
pub const BURN_WINDOWS: [BurnWindow; 4] = [
    BurnWindow {
        severity: Severity::Page,
        long: Duration::from_secs(HOUR),
        short: Duration::from_secs(5 * 60),
        burn_rate: 14.4,
        budget_spent_percent: 2.0,
    },
    BurnWindow {
        severity: Severity::Page,
        long: Duration::from_secs(6 * HOUR),
        short: Duration::from_secs(30 * 60),
        burn_rate: 6.0,
        budget_spent_percent: 5.0,
    },
    BurnWindow {
        severity: Severity::Ticket,
        long: Duration::from_secs(24 * HOUR),
        short: Duration::from_secs(2 * HOUR),
        burn_rate: 3.0,
        budget_spent_percent: 10.0,
    },
    BurnWindow {
        severity: Severity::Ticket,
        long: Duration::from_secs(72 * HOUR),
        short: Duration::from_secs(6 * HOUR),
        burn_rate: 1.0,
        budget_spent_percent: 10.0,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_spent_is_burn_rate_times_long_window_over_thirty_days() {
        for w in BURN_WINDOWS {
            let spent = w.burn_rate * w.long.as_secs_f64() / (30.0 * 24.0 * 3600.0) * 100.0;
            assert!(
                (spent - w.budget_spent_percent).abs() < 0.01,
                "{w:?}: {spent}"
            );
            assert!(w.short < w.long);
        }
    }
}
