//! The card as Markdown: the post-mortem document.

use std::fmt::Write as _;

use super::text::{budget_words, burn_words, rfc3339, series_words};
use crate::incident::{Evidence, Incident, TraceEvidence};

/// The card as Markdown.
pub fn markdown(card: &Incident) -> String {
    let a = &card.alert;
    let mut m = String::new();
    let _ = writeln!(m, "# {} — {}\n", a.name(), card.state.as_str());
    let summary = a.annotation("summary");
    if !summary.is_empty() {
        let _ = writeln!(m, "{summary}\n");
    }
    let _ = writeln!(m, "| | |\n|---|---|");
    let _ = writeln!(m, "| incident | `{}` |", card.id);
    let _ = writeln!(m, "| severity | {} |", a.label("severity"));
    let _ = writeln!(m, "| started | {} |", rfc3339(a.starts_at));
    if let Some(end) = a.ends_at {
        let _ = writeln!(m, "| resolved | {} |", rfc3339(end));
    }
    if let Some(slo) = &card.slo {
        let _ = writeln!(
            m,
            "| SLO | {} — {} % ({}) |",
            slo.name, slo.objective_percent, slo.description
        );
        if let Some(burn) = burn_words(slo) {
            let _ = writeln!(m, "| burn | {burn} |");
        }
        if let Some(b) = slo.budget_remaining {
            let _ = writeln!(m, "| budget left | {} |", budget_words(b));
        }
        let _ = writeln!(m, "| owner | {} |", slo.owner);
        let _ = writeln!(m, "| response | {} |", slo.response_sla);
        let _ = writeln!(m, "| runbook | {} |", slo.runbook_url);
    }
    let description = a.annotation("description");
    if !description.is_empty() {
        let _ = writeln!(m, "\n{description}");
    }

    if let Some(ev) = &card.evidence {
        cause_markdown(&mut m, ev);
    }

    let _ = writeln!(m, "\n## Timeline\n");
    for e in &card.timeline {
        let _ = writeln!(m, "- {} — {}", rfc3339(e.at), e.what);
    }

    if let Some(ev) = &card.evidence {
        let _ = writeln!(m, "\n## Evidence\n");
        let _ = writeln!(
            m,
            "{} exemplars of `{}` between {} and {}.\n",
            ev.exemplars_seen,
            ev.selector,
            ev.from.map(rfc3339).unwrap_or_default(),
            ev.to.map(rfc3339).unwrap_or_default()
        );
        for t in &ev.traces {
            trace_markdown(&mut m, t);
        }
        for miss in &ev.missing {
            let _ = writeln!(m, "- trace `{}` not used: {}", miss.trace_id, miss.reason);
        }
        if !ev.logs.is_empty() {
            let _ = writeln!(m, "\n### Log lines\n\n```");
            for l in &ev.logs {
                let _ = writeln!(
                    m,
                    "{} {:5} {} [{}] {} trace_id={} span_id={}",
                    l.timestamp,
                    l.level,
                    l.service,
                    l.fields.get("target").map_or("", String::as_str),
                    l.message,
                    l.trace_id,
                    l.span_id
                );
            }
            let _ = writeln!(m, "```");
        }
        if !ev.log_patterns.is_empty() {
            let _ = writeln!(
                m,
                "\n### Log patterns\n\n| level | pattern | during | before |\n|---|---|---|---|"
            );
            for p in &ev.log_patterns {
                let _ = writeln!(
                    m,
                    "| {} | `{}` | {} | {} |",
                    p.level,
                    p.pattern.replace('`', "'").replace('|', "\\|"),
                    p.during,
                    p.before
                );
            }
        }
        if let Some(w) = &ev.windows {
            let _ = writeln!(
                m,
                "\nThe burn started {}; {}.",
                rfc3339(w.burn_started),
                w.note
            );
        }
        if !ev.dependencies.is_empty() {
            let _ = writeln!(
                m,
                "\n### Dependencies\n\n| | dependency | before → during |\n|---|---|---|"
            );
            for d in &ev.dependencies {
                let _ = writeln!(
                    m,
                    "| {} | {} {} | {} |",
                    if d.moved { "**moved**" } else { "" },
                    d.kind,
                    d.name,
                    d.summary
                );
            }
        }
        if !ev.problems.is_empty() {
            let _ = writeln!(m, "\n### Sources that failed\n");
            for p in &ev.problems {
                let _ = writeln!(m, "- {p}");
            }
        }
        if !ev.links.is_empty() {
            let _ = writeln!(m, "\n### Links\n");
            for l in &ev.links {
                let _ = writeln!(m, "- [{}]({})", l.title, l.url);
            }
        }
    }

    let _ = writeln!(m, "\n## Actions\n");
    if card.actions.is_empty() {
        let _ = writeln!(m, "None yet.");
    }
    for act in &card.actions {
        match &act.link {
            Some(l) => {
                let _ = writeln!(m, "- {} — {} ([change]({l}))", rfc3339(act.at), act.text);
            }
            None => {
                let _ = writeln!(m, "- {} — {}", rfc3339(act.at), act.text);
            }
        }
    }
    let _ = writeln!(m, "\n## Verification\n");
    match &card.verification {
        None => {
            let _ = writeln!(
                m,
                "Not checked yet: the alert has not resolved, or its recovery window has not passed."
            );
        }
        Some(v) => {
            let _ = writeln!(
                m,
                "**{}** — {}",
                if v.verified {
                    "Verified"
                } else {
                    "Not verified"
                },
                v.reason
            );
        }
    }
    m
}

/// The hypotheses, best first, with how each was scored; what changed;
/// what stopped.
fn cause_markdown(m: &mut String, ev: &Evidence) {
    let _ = writeln!(m, "\n## Most likely\n");
    if let Some(nt) = &ev.no_traffic {
        let _ = writeln!(
            m,
            "No calls counted by `{}`{}.\n",
            nt.sli,
            nt.last_seen
                .map(|t| format!(" since {}", rfc3339(t)))
                .unwrap_or_else(|| format!(" in the last {:.0} s", nt.looked_back_seconds))
        );
    }
    if ev.hypotheses.is_empty() {
        let _ = writeln!(
            m,
            "No hypothesis: no dependency moved or was down, no step of the service failed, nothing changed before the burn."
        );
    }
    for (i, h) in ev.hypotheses.iter().enumerate() {
        let _ = writeln!(
            m,
            "{}. {}{}{} — score {:.2} ({})",
            i + 1,
            if i == 0 { "**" } else { "" },
            h.text,
            if i == 0 { "**" } else { "" },
            h.score,
            h.why.join("; ")
        );
    }
    let _ = writeln!(m, "\n## What changed\n");
    if ev.changes.is_empty() {
        let _ = writeln!(m, "Nothing seen or announced before the burn.");
    }
    for c in &ev.changes {
        let what = match &c.link {
            Some(l) => format!("[{}]({l})", c.what),
            None => c.what.clone(),
        };
        let _ = writeln!(m, "- {} — **{}** {what}", rfc3339(c.at), c.kind);
    }
}

fn trace_markdown(m: &mut String, t: &TraceEvidence) {
    let a = &t.analysis;
    let _ = writeln!(
        m,
        "### Trace `{}`\n\nFrom an exemplar of {} ({:.3} s{}). Services: {}.\n",
        t.trace_id,
        series_words(t),
        t.exemplar.value,
        if t.from_error_series {
            ", an error series"
        } else {
            ""
        },
        a.services.join(" → ")
    );
    for e in &a.errors {
        let _ = writeln!(
            m,
            "- error: **{}** ({}, {}) {:.1} ms{}",
            e.name,
            e.service,
            e.kind,
            e.ms,
            e.error
                .as_deref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
    }
    if let Some(s) = &a.largest_self_time {
        let _ = writeln!(
            m,
            "- largest self time: **{}** ({}) {:.1} ms",
            s.name, s.service, s.ms
        );
    }
    let path: Vec<String> = a
        .critical_path
        .iter()
        .map(|s| format!("{} ({:.1} ms)", s.name, s.ms))
        .collect();
    let _ = writeln!(m, "- critical path: {}", path.join(" → "));
    if let Some(l) = &t.link {
        let _ = writeln!(m, "- [open in Grafana]({l})");
    }
    m.push('\n');
}
