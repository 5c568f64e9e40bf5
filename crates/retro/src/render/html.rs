//! The card, and the list of cards, as HTML pages.

use std::fmt::Write as _;

use super::svg::{sli_svg, trace_svg};
use super::text::{budget_words, burn_words, escape, rfc3339, safe_url, series_words, summary};
use crate::incident::Incident;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}\
.state{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;background:#eee}.state.firing{background:#fdd}\
.state.verified{background:#dfd}.state.not_verified{background:#fec}pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}\
.moved{font-weight:bold;color:#b00}.hypothesis.top{font-size:1.2rem;padding:.5rem .75rem;background:#fff4e5;border-left:4px solid #e67e00}\
.score{color:#666;font-size:.85rem}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

fn link(url: &str, text: &str) -> String {
    match safe_url(url) {
        Some(u) => format!("<a href=\"{}\">{}</a>", escape(u), escape(text)),
        None => escape(text),
    }
}

/// The card as an HTML page.
pub fn html(card: &Incident) -> String {
    let mut b = facts(card);
    if let Some(ev) = &card.evidence {
        cause(ev, &mut b);
    }
    timeline(card, &mut b);
    match &card.evidence {
        None => b.push_str("<h2>Evidence</h2><p>Being gathered…</p>"),
        Some(ev) => evidence(ev, &mut b),
    }
    actions(card, &mut b);
    verification(card, &mut b);
    let a = &card.alert;
    page(&format!("{} — {}", a.name(), card.id), &b)
}

/// The heading, the summary, the facts table and the alert's description.
fn facts(card: &Incident) -> String {
    let a = &card.alert;
    let state_class = match card.state {
        crate::State::Firing => "firing",
        crate::State::Resolved => "resolved",
        crate::State::Verified => "verified",
        crate::State::NotVerified => "not_verified",
    };
    let mut b = format!(
        "<p><a href=\"/incidents\">all incidents</a></p><h1>{} <span class=\"state {state_class}\" id=\"state\">{}</span></h1><p id=\"summary\">{}</p>",
        escape(a.name()),
        escape(card.state.as_str()),
        escape(&summary(card))
    );
    b.push_str("<table id=\"facts\">");
    let mut row = |k: &str, v: String| {
        let _ = write!(b, "<tr><th>{}</th><td>{v}</td></tr>", escape(k));
    };
    row("incident", escape(&card.id));
    row("severity", escape(a.label("severity")));
    row("started", escape(&rfc3339(a.starts_at)));
    if let Some(end) = a.ends_at {
        row("resolved", escape(&rfc3339(end)));
    }
    if let Some(slo) = &card.slo {
        row(
            "SLO",
            format!(
                "{} — {} % <br>{}",
                escape(&slo.name),
                slo.objective_percent,
                escape(&slo.description)
            ),
        );
        if let Some(burn) = burn_words(slo) {
            row("burn", escape(&burn));
        }
        if let Some(left) = slo.budget_remaining {
            row("budget left", escape(&budget_words(left)));
        }
        row("owner", escape(&slo.owner));
        row("response", escape(&slo.response_sla));
        row("runbook", link(&slo.runbook_url, &slo.runbook_url));
    }
    if safe_url(&a.generator_url).is_some() {
        row(
            "rule",
            link(&a.generator_url, "the alert's expression in Prometheus"),
        );
    }
    b.push_str("</table>");
    let description = a.annotation("description");
    if !description.is_empty() {
        let _ = write!(b, "<p>{}</p>", escape(description));
    }
    b
}

/// The answer first: the most likely cause, the other hypotheses with
/// how each was scored, what changed before the burn, and for a
/// no-traffic alert what stopped.
fn cause(ev: &crate::incident::Evidence, b: &mut String) {
    b.push_str("<h2>Most likely</h2>");
    if let Some(nt) = &ev.no_traffic {
        let _ = write!(
            b,
            "<p id=\"no-traffic\">No calls counted by <code>{}</code>{}.</p>",
            escape(&nt.sli),
            match nt.last_seen {
                Some(t) => format!(" since {}", escape(&rfc3339(t))),
                None => format!(" in the last {:.0} s", nt.looked_back_seconds),
            }
        );
    }
    match ev.hypotheses.first() {
        None => b.push_str(
            "<p id=\"top-hypothesis\" class=\"hypothesis\">No hypothesis: no dependency moved or was down, no step of the service failed, nothing changed before the burn.</p>",
        ),
        Some(top) => {
            let _ = write!(
                b,
                "<p id=\"top-hypothesis\" class=\"hypothesis top\">{} <span class=\"score\">score {:.2}</span></p>",
                escape(&top.text),
                top.score
            );
        }
    }
    if ev.hypotheses.len() > 1 || ev.hypotheses.first().is_some_and(|h| !h.why.is_empty()) {
        let _ = write!(
            b,
            "<details><summary>All {} hypotheses, and how they were scored</summary><ol id=\"hypotheses\">",
            ev.hypotheses.len()
        );
        for h in &ev.hypotheses {
            let _ = write!(
                b,
                "<li>{} <span class=\"score\">{:.2}: {}</span></li>",
                escape(&h.text),
                h.score,
                escape(&h.why.join("; "))
            );
        }
        b.push_str("</ol></details>");
    }
    b.push_str("<h2>What changed</h2>");
    if ev.changes.is_empty() {
        b.push_str("<p id=\"changes\">Nothing seen or announced before the burn.</p>");
    } else {
        b.push_str("<ul id=\"changes\">");
        for c in &ev.changes {
            let what = match &c.link {
                Some(l) => link(l, &c.what),
                None => escape(&c.what),
            };
            let _ = write!(
                b,
                "<li>{} — <b>{}</b> {what}</li>",
                escape(&rfc3339(c.at)),
                escape(&c.kind)
            );
        }
        b.push_str("</ul>");
    }
}

/// What happened when.
fn timeline(card: &Incident, b: &mut String) {
    b.push_str("<h2>Timeline</h2><ul id=\"timeline\">");
    for e in &card.timeline {
        let _ = write!(
            b,
            "<li>{} — {}</li>",
            escape(&rfc3339(e.at)),
            escape(&e.what)
        );
    }
    b.push_str("</ul>");
}

/// The SLI, the evidence traces, their log lines, the dependencies, the
/// sources that failed and the links.
fn evidence(ev: &crate::incident::Evidence, b: &mut String) {
    b.push_str("<h2>The SLI around the alert</h2>");
    match &ev.sli {
        Some(chart) => b.push_str(&sli_svg(chart)),
        None => b.push_str("<p>Not available.</p>"),
    }
    let _ = write!(
        b,
        "<h2>Evidence traces</h2><p>{} exemplars of <code>{}</code>.</p>",
        ev.exemplars_seen,
        escape(&ev.selector)
    );
    for t in &ev.traces {
        trace(t, b);
    }
    if !ev.missing.is_empty() {
        b.push_str("<ul id=\"missing\">");
        for miss in &ev.missing {
            let _ = write!(
                b,
                "<li>trace <code>{}</code> not used: {}</li>",
                escape(&miss.trace_id),
                escape(&miss.reason)
            );
        }
        b.push_str("</ul>");
    }
    logs(ev, b);
    patterns(ev, b);
    dependencies(ev, b);
    if !ev.problems.is_empty() {
        b.push_str("<h2>Sources that failed</h2><ul id=\"problems\">");
        for p in &ev.problems {
            let _ = write!(b, "<li>{}</li>", escape(&p.to_string()));
        }
        b.push_str("</ul>");
    }
    if !ev.links.is_empty() {
        b.push_str("<h2>Links</h2><ul>");
        for l in &ev.links {
            let _ = write!(b, "<li>{}</li>", link(&l.url, &l.title));
        }
        b.push_str("</ul>");
    }
}

/// One evidence trace: where it came from, its error spans, its largest
/// self time, its critical path, and its waterfall.
fn trace(t: &crate::incident::TraceEvidence, b: &mut String) {
    let an = &t.analysis;
    let _ = write!(
        b,
        "<section class=\"trace\" data-trace-id=\"{id}\"><h3>Trace <code>{id}</code></h3><p>From an exemplar of {} ({:.3} s{}). Services: {}.</p><ul>",
        escape(&series_words(t)),
        t.exemplar.value,
        if t.from_error_series {
            ", an error series"
        } else {
            ""
        },
        escape(&an.services.join(" → ")),
        id = escape(&t.trace_id),
    );
    for e in &an.errors {
        let _ = write!(
            b,
            "<li class=\"error-span\">error: <b>{}</b> ({}, {}) {:.1} ms{}</li>",
            escape(&e.name),
            escape(&e.service),
            escape(&e.kind),
            e.ms,
            escape(
                &e.error
                    .as_deref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            )
        );
    }
    if let Some(s) = &an.largest_self_time {
        let _ = write!(
            b,
            "<li>largest self time: <b>{}</b> ({}) {:.1} ms</li>",
            escape(&s.name),
            escape(&s.service),
            s.ms
        );
    }
    let path: Vec<String> = an
        .critical_path
        .iter()
        .map(|s| format!("{} ({:.1} ms)", s.name, s.ms))
        .collect();
    let _ = write!(b, "<li>critical path: {}</li>", escape(&path.join(" → ")));
    if let Some(l) = &t.link {
        let _ = write!(b, "<li>{}</li>", link(l, "open in Grafana"));
    }
    b.push_str("</ul>");
    b.push_str(&trace_svg(t));
    b.push_str("</section>");
}

/// The evidence traces' log lines.
fn logs(ev: &crate::incident::Evidence, b: &mut String) {
    b.push_str("<h2>Log lines</h2>");
    if ev.logs.is_empty() {
        b.push_str("<p>None found.</p>");
    } else {
        b.push_str("<table id=\"logs\"><tr><th>time</th><th>level</th><th>service</th><th>message</th><th>trace</th></tr>");
        for l in &ev.logs {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                escape(&l.timestamp),
                escape(&l.level),
                escape(&l.service),
                escape(&l.message),
                escape(&l.trace_id)
            );
        }
        b.push_str("</table>");
    }
}

/// WARN and ERROR lines as patterns, during the burn and before it.
fn patterns(ev: &crate::incident::Evidence, b: &mut String) {
    if ev.log_patterns.is_empty() {
        return;
    }
    b.push_str("<h2>Log patterns</h2><table id=\"log-patterns\"><tr><th>level</th><th>pattern</th><th>during</th><th>before</th></tr>");
    for p in &ev.log_patterns {
        let _ = write!(
            b,
            "<tr><td>{}</td><td title=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.level),
            escape(&p.example),
            escape(&p.pattern),
            p.during,
            p.before
        );
    }
    b.push_str("</table>");
}

/// The dependencies, the ones that moved first.
fn dependencies(ev: &crate::incident::Evidence, b: &mut String) {
    b.push_str("<h2>Dependencies</h2>");
    if let Some(w) = &ev.windows {
        let _ = write!(
            b,
            "<p id=\"windows\">The burn started {}; {}.</p>",
            escape(&rfc3339(w.burn_started)),
            escape(&w.note)
        );
    }
    if ev.dependencies.is_empty() {
        b.push_str("<p>No dependency calls recorded.</p>");
    } else {
        b.push_str("<table id=\"dependencies\">");
        for d in &ev.dependencies {
            let _ = write!(
                b,
                "<tr class=\"{}\"><td>{}</td><td>{} {}</td><td>{}</td></tr>",
                if d.moved { "moved" } else { "" },
                if d.moved { "moved" } else { "" },
                escape(&d.kind),
                escape(&d.name),
                escape(&d.summary)
            );
        }
        b.push_str("</table>");
    }
}

/// The actions taken.
fn actions(card: &Incident, b: &mut String) {
    b.push_str("<h2>Actions</h2><ul id=\"actions\">");
    if card.actions.is_empty() {
        b.push_str("<li>None yet.</li>");
    }
    for act in &card.actions {
        let _ = write!(
            b,
            "<li>{} — {}{}</li>",
            escape(&rfc3339(act.at)),
            escape(&act.text),
            act.link
                .as_deref()
                .map(|l| format!(" ({})", link(l, "change")))
                .unwrap_or_default()
        );
    }
    b.push_str("</ul>");
}

/// Whether the recovery was verified.
fn verification(card: &Incident, b: &mut String) {
    b.push_str("<h2>Verification</h2>");
    match &card.verification {
        None => b.push_str("<p id=\"verification\">Not checked yet.</p>"),
        Some(v) => {
            let _ = write!(
                b,
                "<p id=\"verification\" class=\"{}\"><b>{}</b> — {}</p>",
                if v.verified {
                    "verified"
                } else {
                    "not-verified"
                },
                if v.verified {
                    "Verified"
                } else {
                    "Not verified"
                },
                escape(&v.reason)
            );
        }
    }
}

/// The list of cards as an HTML page, with a link to the `older` ones
/// when there are more.
pub fn html_list(cards: &[Incident], older: Option<&str>) -> String {
    let mut b = String::from("<h1>Incidents</h1>");
    if cards.is_empty() {
        b.push_str("<p>None.</p>");
    } else {
        b.push_str("<table id=\"incidents\"><tr><th>started</th><th>alert</th><th>SLO</th><th>state</th></tr>");
        for c in cards {
            let _ = write!(
                b,
                "<tr><td>{}</td><td><a href=\"/incidents/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                escape(&rfc3339(c.alert.starts_at)),
                escape(&c.id),
                escape(c.alert.name()),
                escape(c.alert.label("slo")),
                escape(c.state.as_str())
            );
        }
        b.push_str("</table>");
    }
    if let Some(href) = older {
        let _ = write!(b, "<p><a href=\"{}\">older incidents</a></p>", escape(href));
    }
    page("Incidents", &b)
}
