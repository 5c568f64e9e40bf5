//! The pictures: the SLI around the alert, and each evidence trace as a
//! waterfall, as inline SVG.

use std::fmt::Write as _;

use super::text::{escape, pct};
use crate::incident::{SliChart, TraceEvidence};

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
