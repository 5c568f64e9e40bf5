//! What every format shares: times, shares and the burn in words, HTML
//! escaping, safe links, a trace's series in words, and the card's summary.

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::incident::{Incident, TraceEvidence};

/// RFC 3339 to the millisecond.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let ms = t.nanosecond() / 1_000_000 * 1_000_000;
    t.replace_nanosecond(ms)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn pct(r: f64) -> String {
    format!("{:.2} %", r * 100.0)
}

/// The fired pair's burn in words; `None` for an alert that is not a
/// burn-rate pair's (`SLOTrafficMissing`).
pub(crate) fn burn_words(slo: &crate::incident::SloFacts) -> Option<String> {
    (!slo.windows.is_empty()).then(|| {
        format!(
            "{}× over {} (error ratio above {}; {} % of the 30-day budget at this pace)",
            slo.burn_rate,
            slo.windows,
            pct(slo.threshold),
            slo.budget_spent_percent
        )
    })
}

/// The remaining budget in words: a share, or how far it is overspent.
pub(crate) fn budget_words(remaining: f64) -> String {
    if remaining >= 0.0 {
        pct(remaining)
    } else {
        format!("none: {:.1}× the 30-day budget spent", 1.0 - remaining)
    }
}

/// Escapes text for HTML (element content and quoted attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link only if it is http(s): nothing else from an alert reaches an
/// `href`.
pub(crate) fn safe_url(u: &str) -> Option<&str> {
    (u.starts_with("http://") || u.starts_with("https://")).then_some(u)
}

/// What the card says, in a few sentences.
pub fn summary(card: &Incident) -> String {
    let a = &card.alert;
    let mut s = format!(
        "{} ({}) — {}.",
        a.name(),
        a.label("severity"),
        card.state.as_str()
    );
    if let Some(slo) = &card.slo {
        let _ = write!(s, " SLO {} ({} %)", slo.name, slo.objective_percent);
        if !slo.windows.is_empty() {
            let _ = write!(s, " burning {}× over {}", slo.burn_rate, slo.windows);
        }
        s.push('.');
    }
    if let Some(ev) = &card.evidence {
        if let Some(h) = ev.hypotheses.first() {
            let _ = write!(s, " Most likely: {}.", h.text);
        }
        if let Some(t) = ev.traces.first() {
            let _ = write!(s, " Trace {}", t.trace_id);
            if let Some(e) = t.analysis.errors.first() {
                let _ = write!(
                    s,
                    ": error in {} ({}){}",
                    e.name,
                    e.service,
                    e.error
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
            }
            if let Some(slow) = &t.analysis.largest_self_time {
                let _ = write!(s, "; slowest span {} ({:.0} ms)", slow.name, slow.ms);
            }
            s.push('.');
        }
        if let Some(d) = ev.dependencies.iter().find(|d| d.moved) {
            let _ = write!(
                s,
                " Dependency moved: {} {} ({}).",
                d.kind, d.name, d.summary
            );
        }
    }
    if let Some(v) = &card.verification {
        let _ = write!(s, " {}", v.reason);
    }
    s
}

pub(crate) fn series_words(t: &TraceEvidence) -> String {
    let s = &t.exemplar.series;
    let mut parts: Vec<String> = [
        "http_request_method",
        "http_route",
        "rpc_method",
        "messaging_destination_name",
        "error_type",
        "le",
    ]
    .iter()
    .filter_map(|k| s.get(*k).map(|v| format!("{k}={v}")))
    .collect();
    if parts.is_empty() {
        parts.push("the SLI".to_owned());
    }
    parts.join(" ")
}
