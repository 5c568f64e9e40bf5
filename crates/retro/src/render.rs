//! A card as a person reads it: a one-paragraph summary, Markdown (the
//! post-mortem document) and an HTML page with the SLI around the alert and
//! each evidence trace drawn as inline SVG.

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::incident::{Incident, SliChart, TraceEvidence};

/// RFC 3339 to the millisecond.
fn rfc3339(t: OffsetDateTime) -> String {
    let ms = t.nanosecond() / 1_000_000 * 1_000_000;
    t.replace_nanosecond(ms)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn pct(r: f64) -> String {
    format!("{:.2} %", r * 100.0)
}

/// The fired pair's burn in words; `None` for an alert that is not a
/// burn-rate pair's (`SLOTrafficMissing`).
fn burn_words(slo: &crate::incident::SloFacts) -> Option<String> {
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
fn budget_words(remaining: f64) -> String {
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
fn safe_url(u: &str) -> Option<&str> {
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

fn series_words(t: &TraceEvidence) -> String {
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

/// The SLI around the alert as SVG: the error ratio, the threshold, the
/// alert's start (and end).
pub fn sli_svg(chart: &SliChart) -> String {
    let (w, h, pad) = (640.0, 200.0, 36.0);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="sli" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="error ratio around the alert">"##
    );
    let (t0, t1) = chart
        .points
        .iter()
        .fold((chart.starts_at, chart.starts_at), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let t1 = chart.ends_at.map_or(t1, |e| t1.max(e)).max(t0 + 1.0);
    let ymax = chart
        .points
        .iter()
        .map(|p| p.1)
        .fold(chart.threshold * 1.5, f64::max)
        .max(1e-6);
    let x = |t: f64| pad + (t - t0) / (t1 - t0) * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / ymax * (h - 2.0 * pad);
    let _ = write!(
        svg,
        r##"<rect x="{pad}" y="{pad}" width="{}" height="{}" fill="#fafafa" stroke="#ccc"/>"##,
        w - 2.0 * pad,
        h - 2.0 * pad
    );
    let ty = y(chart.threshold);
    let _ = write!(
        svg,
        r##"<line class="threshold" x1="{pad}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#d33" stroke-dasharray="4 3"/><text x="{}" y="{:.1}" font-size="10" fill="#d33" text-anchor="end">threshold {}</text>"##,
        w - pad,
        w - pad - 2.0,
        ty - 3.0,
        pct(chart.threshold)
    );
    let sx = x(chart.starts_at);
    let _ = write!(
        svg,
        r##"<line class="starts" x1="{sx:.1}" x2="{sx:.1}" y1="{pad}" y2="{}" stroke="#e80"/><text x="{:.1}" y="{}" font-size="10" fill="#e80">fired</text>"##,
        h - pad,
        sx + 2.0,
        pad + 10.0
    );
    if let Some(e) = chart.ends_at {
        let ex = x(e);
        let _ = write!(
            svg,
            r##"<line class="ends" x1="{ex:.1}" x2="{ex:.1}" y1="{pad}" y2="{}" stroke="#393"/><text x="{:.1}" y="{}" font-size="10" fill="#393">resolved</text>"##,
            h - pad,
            ex + 2.0,
            pad + 10.0
        );
    }
    if !chart.points.is_empty() {
        let pts: Vec<String> = chart
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        let _ = write!(
            svg,
            r##"<polyline class="ratio" points="{}" fill="none" stroke="#36c" stroke-width="2"/>"##,
            pts.join(" ")
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{pad}" y="{}" font-size="10">{}</text><text x="4" y="{}" font-size="10">{}</text><text x="4" y="{}" font-size="10">0</text></svg>"##,
        h - 8.0,
        escape(&chart.series),
        pad + 4.0,
        pct(ymax),
        h - pad
    );
    svg
}

/// A trace as a waterfall: a bar per span, errors red, the critical path
/// outlined.
pub fn trace_svg(t: &TraceEvidence) -> String {
    let row = 18.0;
    let (w, label) = (640.0, 260.0);
    let spans = &t.spans;
    let h = row * spans.len() as f64 + 24.0;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="waterfall" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="trace {}">"##,
        escape(&t.trace_id)
    );
    let t0 = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let t1 = spans
        .iter()
        .map(|s| s.end_ns)
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let scale = (w - label - 10.0) / (t1 - t0) as f64;
    let depth = |s: &crate::trace::Span| {
        let mut d = 0;
        let mut p = s.parent_span_id.as_deref();
        while let Some(id) = p {
            match spans.iter().find(|x| x.span_id == id) {
                Some(parent) if d < 16 => {
                    d += 1;
                    p = parent.parent_span_id.as_deref();
                }
                _ => break,
            }
        }
        d
    };
    for (i, s) in spans.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let x = label + (s.start_ns - t0) as f64 * scale;
        let bw = (s.duration_ns() as f64 * scale).max(1.0);
        let critical = t
            .analysis
            .critical_path
            .iter()
            .any(|c| c.span_id == s.span_id);
        let fill = if s.error { "#d33" } else { "#6a9ad4" };
        let stroke = if critical {
            r##" stroke="#222" stroke-width="1.5""##
        } else {
            ""
        };
        let _ = write!(
            svg,
            r##"<g class="span{}{}"><text x="{:.1}" y="{:.1}" font-size="11">{}</text><rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{}" fill="{fill}"{stroke}><title>{} ({}) {:.1} ms</title></rect></g>"##,
            if s.error { " error" } else { "" },
            if critical { " critical" } else { "" },
            4.0 + 10.0 * depth(s) as f64,
            y + 12.0,
            escape(&truncate(&s.name, 34)),
            row - 4.0,
            escape(&s.name),
            escape(&s.service),
            s.duration_ns() as f64 / 1e6
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{label}" y="{:.1}" font-size="10">0</text><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{:.1} ms</text></svg>"##,
        h - 4.0,
        w - 10.0,
        h - 4.0,
        (t1 - t0) as f64 / 1e6
    );
    svg
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}\
.state{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;background:#eee}.state.firing{background:#fdd}\
.state.verified{background:#dfd}.state.not_verified{background:#fec}pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}\
.moved{font-weight:bold;color:#b00}";

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

    match &card.evidence {
        None => b.push_str("<h2>Evidence</h2><p>Being gathered…</p>"),
        Some(ev) => {
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
            b.push_str("<h2>Dependencies</h2>");
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
    }

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
    b.push_str("</ul><h2>Verification</h2>");
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
    page(&format!("{} — {}", a.name(), card.id), &b)
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
