//! From the facts on a card to what most likely caused the burn: when it
//! started and what to compare it with, what changed just before, which
//! log patterns rose, and the hypotheses ranked.
//!
//! Everything here is a pure function of what the sources answered, so
//! that the ranking is tested without a Prometheus; `evidence` asks the
//! sources.
//!
//! # How hypotheses are scored
//! Each hypothesis gets a score between 0 and 1, the sum of the terms its
//! `why` lists:
//! - **a dependency** that moved (errors up a point or more, p99 doubled
//!   or over the SLO's bound — without a baseline: failing, or over the
//!   bound): 0.5; +0.2 when the move is large (errors up 10 points, p99
//!   five times or over the bound); + 0.3 × the share of evidence traces
//!   that agree (its call failed in them, or — for a latency SLO — held
//!   half their critical path or more).
//! - **a dependency down** (`looptel_dependency_up` 0 during the burn):
//!   0.7, +0.2 when a moved dependency of the same name agrees.
//! - **a step** of the service's own (an error span that is not the root,
//!   or for a latency SLO the span holding most of the critical path):
//!   0.3 + 0.4 × the share of evidence traces it is in, +0.2 when the
//!   pattern of those traces' ERROR (else WARN) lines rose.
//! - **a change** before the burn: 0.6 (a start or restart 0.4) × how
//!   close it came to the burn (1 at the burn, 0 a whole look-back
//!   earlier).
//! - **no traffic**: 0.9.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use time::OffsetDateTime;

use crate::incident::{
    Change, ChangeSource, Dependency, Hypothesis, HypothesisKind, LogPattern, Red, TraceEvidence,
    Window, Windows,
};
use crate::sources::{LogLine, Series};

/// Unix seconds as a time (the epoch for nonsense).
pub(crate) fn at(seconds: f64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos((seconds * 1e9) as i128)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Seconds from `a` to `b`.
fn secs(a: OffsetDateTime, b: OffsetDateTime) -> f64 {
    (b - a).as_seconds_f64()
}

/// `12 s`, `3 min`, `2 h`.
pub(crate) fn ago(seconds: f64) -> String {
    let s = seconds.abs();
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// When the burn started: the first point of the last run of the SLI's
/// short-window ratio above `threshold` that ends at or before `alert`
/// (Unix seconds, `points` oldest first); `None` when no point is above.
pub(crate) fn burn_start(points: &[(f64, f64)], threshold: f64, alert: f64) -> Option<f64> {
    let upto: Vec<&(f64, f64)> = points.iter().filter(|p| p.0 <= alert).collect();
    let last_above = upto.iter().rposition(|p| p.1 > threshold)?;
    let mut first = last_above;
    while first > 0 && upto[first - 1].1 > threshold {
        first -= 1;
    }
    Some(upto[first].0)
}

/// The windows a card compares. The baseline ends a `short` window before
/// the burn (a short-window ratio crosses up to that long after the fault
/// began), lasts up to `baseline`, starts no earlier than the data
/// (`earliest`), and is dropped when shorter than `min`. The burn window
/// runs from that end to `end`.
pub(crate) fn windows(
    burn_started: OffsetDateTime,
    earliest: Option<OffsetDateTime>,
    short: Duration,
    baseline: Duration,
    min: Duration,
    end: OffsetDateTime,
) -> Windows {
    let before_end = burn_started - short;
    let wanted = before_end - baseline;
    let from = earliest.map_or(wanted, |e| e.max(wanted));
    let length = secs(from, before_end);
    let during = Window {
        from: before_end,
        to: end.max(burn_started),
    };
    let (before, note) = if length >= min.as_secs_f64() {
        let note = if from > wanted {
            format!(
                "before: the {} of data before the burn (the data starts then; {} wanted)",
                ago(length),
                ago(baseline.as_secs_f64())
            )
        } else {
            format!("before: the {} before the burn", ago(length))
        };
        (
            Some(Window {
                from,
                to: before_end,
            }),
            note,
        )
    } else {
        (
            None,
            format!(
                "no baseline: {} of data before the burn, less than the {} minimum; dependencies are named when failing or over the SLO's bound",
                ago(length.max(0.0)),
                ago(min.as_secs_f64())
            ),
        )
    };
    Windows {
        burn_started,
        before,
        during,
        min_baseline_seconds: min.as_secs_f64(),
        note,
    }
}

fn fmt_ms(s: Option<f64>) -> String {
    s.map_or("–".to_owned(), |s| {
        if s < 0.01 {
            format!("{:.1} ms", s * 1e3)
        } else {
            format!("{:.0} ms", s * 1e3)
        }
    })
}

fn fmt_pct(r: f64) -> String {
    format!("{:.1} %", r * 100.0)
}

/// Whether a dependency is named as a cause, and how it moved, in words.
/// `bound`: the SLO's latency bound (seconds), for a latency SLO.
pub(crate) fn judge(
    before: Option<Red>,
    during: Option<Red>,
    bound: Option<f64>,
) -> (bool, String) {
    let Some(d) = during else {
        return (false, "no calls during the burn".to_owned());
    };
    let over_bound = |p: Option<f64>| bound.zip(p).is_some_and(|(b, p)| p > b);
    let Some(b) = before else {
        let failing = d.error_ratio >= 0.01;
        let slow = over_bound(d.p99_seconds);
        return (
            failing || slow,
            format!(
                "no baseline: errors {}, p99 {}, {:.1} calls/s",
                fmt_pct(d.error_ratio),
                fmt_ms(d.p99_seconds),
                d.rate
            ),
        );
    };
    let errors_up = d.error_ratio - b.error_ratio >= 0.01;
    let slower = match (b.p99_seconds, d.p99_seconds) {
        (Some(x), Some(y)) => {
            (y >= 2.0 * x && y - x >= 0.005) || (over_bound(Some(y)) && !over_bound(Some(x)))
        }
        (None, y) => over_bound(y),
        _ => false,
    };
    let summary = format!(
        "errors {} → {}, p99 {} → {}, {:.1} → {:.1} calls/s",
        fmt_pct(b.error_ratio),
        fmt_pct(d.error_ratio),
        fmt_ms(b.p99_seconds),
        fmt_ms(d.p99_seconds),
        b.rate,
        d.rate
    );
    (errors_up || slower, summary)
}

/// The changes the service's metrics show between `from` and `to`:
/// `target_info` series that appeared (a new version, or a new instance
/// of the same one: a restart), process start times, and
/// `looptel_change_time_seconds` values. `step`: the range queries'
/// resolution (a series present at the first point did not appear).
pub(crate) fn metric_changes(
    target_info: &[Series],
    process_starts: &[Series],
    self_changes: &[Series],
    from: OffsetDateTime,
    to: OffsetDateTime,
    step: Duration,
) -> Vec<Change> {
    let (from_s, to_s) = (from.unix_timestamp() as f64, to.unix_timestamp() as f64);
    let tolerance = step.as_secs_f64() * 1.5;
    let mut out = Vec::new();
    // Each series by its first and last point.
    let spans: Vec<(&Series, f64, f64)> = target_info
        .iter()
        .filter_map(|s| Some((s, s.points.first()?.0, s.points.last()?.0)))
        .collect();
    let label = |s: &Series, k: &str| s.labels.get(k).cloned().unwrap_or_default();
    // Process start times by target: a new target_info series is first
    // seen at the next scrape, its process started a little earlier.
    let mut start_times: Vec<(String, f64, bool)> = Vec::new();
    for s in process_starts {
        for (_, v) in &s.points {
            let instance = label(s, "instance");
            if !start_times
                .iter()
                .any(|(i, t, _)| *i == instance && (t - v).abs() < 1.0)
            {
                start_times.push((instance, *v, false));
            }
        }
    }
    for (s, first, _) in &spans {
        if *first <= from_s + tolerance || *first > to_s {
            continue;
        }
        let (service, version, instance) = (
            label(s, "service_name"),
            label(s, "service_version"),
            label(s, "service_instance_id"),
        );
        // What it replaced: a series of the same target that ended about
        // when it began.
        let previous = spans
            .iter()
            .filter(|(o, f, l)| {
                !std::ptr::eq(*o, *s)
                    && label(o, "instance") == label(s, "instance")
                    && *f < *first
                    && *l <= *first + tolerance
            })
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(o, _, _)| label(o, "service_version"));
        let short_id: String = instance.chars().take(8).collect();
        // When its process started, if that is known and just before.
        let started = start_times
            .iter_mut()
            .filter(|(i, t, _)| {
                *i == label(s, "instance") && *t <= *first + tolerance && *t >= *first - 60.0
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|entry| {
                entry.2 = true;
                entry.1
            });
        let (kind, what) = match &previous {
            Some(old) if *old != version => (
                "version",
                format!("{service} {version} replaced {old} (instance {short_id})"),
            ),
            Some(_) => (
                "restart",
                format!("{service} {version} restarted (instance {short_id})"),
            ),
            None => (
                "start",
                format!("{service} {version} started (instance {short_id})"),
            ),
        };
        out.push(Change {
            at: at(started.unwrap_or(*first)),
            kind: kind.to_owned(),
            what,
            version: (!version.is_empty()).then_some(version),
            link: None,
            source: ChangeSource::Metrics,
        });
    }
    // Restarts of services without target_info (or not yet seen by it).
    for (instance, t, used) in start_times {
        if used || t <= from_s || t > to_s {
            continue;
        }
        out.push(Change {
            at: at(t),
            kind: "restart".to_owned(),
            what: format!("the process at {instance} restarted"),
            version: None,
            link: None,
            source: ChangeSource::Metrics,
        });
    }
    for s in self_changes {
        let Some(v) = s.points.last().map(|p| p.1) else {
            continue;
        };
        if v < from_s || v > to_s {
            continue;
        }
        out.push(Change {
            at: at(v),
            kind: label(s, "change_kind"),
            what: label(s, "change_what"),
            version: None,
            link: None,
            source: ChangeSource::Metrics,
        });
    }
    out.sort_by_key(|c| c.at);
    out
}

/// A message with its variable parts masked: quoted values `"…"`, ids
/// (hex of 8 or more, UUIDs) `<id>`, numbers `<n>`.
pub(crate) fn mask(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let chars: Vec<char> = message.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // A quote opens a value, an apostrophe inside a word does not.
        let opens =
            c == '"' || ((c == '\'' || c == '`') && (i == 0 || !chars[i - 1].is_alphanumeric()));
        if opens && let Some(end) = chars[i + 1..].iter().position(|x| *x == c) {
            out.push(c);
            out.push('…');
            out.push(c);
            i += end + 2;
            continue;
        }
        if c.is_ascii_alphanumeric() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '-') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let hexish = word.chars().filter(char::is_ascii_hexdigit).count();
            let digits = word.chars().filter(char::is_ascii_digit).count();
            if word.len() >= 8 && hexish + word.matches('-').count() == word.len() && digits > 0 {
                out.push_str("<id>");
            } else if digits > 0 && word.chars().all(|c| c.is_ascii_digit() || c == '-') {
                out.push_str("<n>");
            } else if word.len() >= 6 && digits * 2 >= word.len() {
                out.push_str("<id>");
            } else {
                // Words with a number inside (`v2`, `order42`): the number.
                let mut last_digit = false;
                for ch in word.chars() {
                    if ch.is_ascii_digit() {
                        if !last_digit {
                            out.push_str("<n>");
                        }
                        last_digit = true;
                    } else {
                        out.push(ch);
                        last_digit = false;
                    }
                }
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// WARN and ERROR lines grouped by pattern, counted during and before,
/// the most risen first (ERROR before WARN on a tie), at most `max`;
/// `scale`: the burn window's length over the baseline's, so that a long
/// baseline does not outweigh a short burn.
pub(crate) fn patterns(
    during: &[LogLine],
    before: &[LogLine],
    scale: f64,
    max: usize,
) -> Vec<LogPattern> {
    let mut by: BTreeMap<(String, String), LogPattern> = BTreeMap::new();
    for (lines, is_during) in [(during, true), (before, false)] {
        for l in lines {
            let level = l.level.to_ascii_uppercase();
            if !matches!(level.as_str(), "ERROR" | "WARN" | "WARNING" | "FATAL") {
                continue;
            }
            let pattern = mask(&l.message);
            let e = by
                .entry((level.clone(), pattern.clone()))
                .or_insert_with(|| LogPattern {
                    pattern,
                    level,
                    during: 0,
                    before: 0,
                    example: l.message.chars().take(300).collect(),
                });
            if is_during {
                e.during += 1;
            } else {
                e.before += 1;
            }
        }
    }
    let mut out: Vec<LogPattern> = by.into_values().collect();
    out.sort_by(|a, b| {
        let rise = |p: &LogPattern| p.during as f64 - p.before as f64 * scale;
        rise(b)
            .total_cmp(&rise(a))
            .then_with(|| (b.level == "ERROR").cmp(&(a.level == "ERROR")))
    });
    out.truncate(max);
    out
}

/// What the hypotheses are made from.
pub(crate) struct Facts<'a> {
    pub(crate) latency_bound: Option<f64>,
    pub(crate) windows: Option<&'a Windows>,
    pub(crate) dependencies: &'a [Dependency],
    pub(crate) traces: &'a [TraceEvidence],
    pub(crate) logs: &'a [LogLine],
    pub(crate) patterns: &'a [LogPattern],
    pub(crate) changes: &'a [Change],
    /// Dependencies `looptel_dependency_up` said were down, with since
    /// when (Unix seconds).
    pub(crate) down: &'a [(String, f64)],
    pub(crate) changes_window: Duration,
}

/// Whether `span` is a call to `dependency` (every part of its name
/// among the span's attribute values, or its name).
fn calls(span: &crate::trace::Span, dependency: &Dependency) -> bool {
    matches!(span.kind.as_str(), "CLIENT" | "PRODUCER")
        && dependency.name.split(" @ ").all(|part| {
            span.name == part
                || span.name.contains(part)
                || span.attributes.values().any(|v| v == part)
        })
}

fn share(n: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// The critical path's share a set of spans holds in a trace, 0–1.
fn critical_share(t: &TraceEvidence, matches: impl Fn(&str) -> bool) -> f64 {
    let Some(root) = t.analysis.root.as_ref().filter(|r| r.ms > 0.0) else {
        return 0.0;
    };
    let held: f64 = t
        .analysis
        .critical_path
        .iter()
        .filter(|s| s.span_id != root.span_id && matches(&s.span_id))
        .map(|s| s.ms)
        .sum();
    (held / root.ms).clamp(0.0, 1.0)
}

/// The pattern of `traces`' own ERROR lines (else WARN lines) most
/// written during the burn.
fn pattern_of<'a>(
    logs: &[LogLine],
    patterns: &'a [LogPattern],
    traces: &[&str],
) -> Option<&'a LogPattern> {
    ["ERROR", "WARN"].into_iter().find_map(|level| {
        let mine: Vec<String> = logs
            .iter()
            .filter(|l| {
                l.level.eq_ignore_ascii_case(level) && traces.contains(&l.trace_id.as_str())
            })
            .map(|l| mask(&l.message))
            .collect();
        patterns
            .iter()
            .filter(|p| p.level == level && mine.contains(&p.pattern))
            .max_by_key(|p| p.during)
    })
}

fn quoted(p: &LogPattern) -> String {
    let text: String = p.example.chars().take(80).collect();
    format!("{} {} lines '{}'", p.during, p.level, text)
}

/// The hypotheses, best first.
pub(crate) fn hypotheses(f: &Facts<'_>) -> Vec<Hypothesis> {
    let mut out: Vec<Hypothesis> = Vec::new();
    let n = f.traces.len();
    let mut explained_spans: Vec<String> = Vec::new();

    for (name, since) in f.down {
        let agrees = f.dependencies.iter().any(|d| {
            d.moved
                && d.name
                    .to_ascii_lowercase()
                    .contains(&name.to_ascii_lowercase())
        });
        let since_at = at(*since);
        let mut why = vec!["0.70 looptel_dependency_up was 0 during the burn".to_owned()];
        if agrees {
            why.push("+0.20 a dependency of that name moved too".to_owned());
        }
        out.push(Hypothesis {
            kind: HypothesisKind::Down,
            text: format!(
                "{name} was down from {}",
                since_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            ),
            score: if agrees { 0.9 } else { 0.7 },
            why,
        });
    }

    for d in f.dependencies.iter().filter(|d| d.moved) {
        let Some(during) = d.during else { continue };
        let before = d.before;
        let errors = during.error_ratio - before.map_or(0.0, |b| b.error_ratio) >= 0.01;
        let mut why = vec![format!("0.50 it moved ({})", d.summary)];
        let large = match (
            errors,
            before.and_then(|b| b.p99_seconds),
            during.p99_seconds,
        ) {
            (true, _, _) => during.error_ratio - before.map_or(0.0, |b| b.error_ratio) >= 0.10,
            (false, Some(x), Some(y)) => y >= 5.0 * x || f.latency_bound.is_some_and(|b| y > b),
            (false, None, Some(y)) => f.latency_bound.is_some_and(|b| y > b),
            _ => false,
        };
        let mut score = 0.5;
        if large {
            score += 0.2;
            why.push("+0.20 a large move".to_owned());
        }
        // The evidence traces that agree.
        let mut agreeing = 0;
        let mut held = Vec::new();
        for t in f.traces {
            let ids: Vec<&str> = t
                .spans
                .iter()
                .filter(|s| calls(s, d))
                .map(|s| s.span_id.as_str())
                .collect();
            for s in t.spans.iter().filter(|s| calls(s, d)) {
                if !explained_spans.contains(&s.name) {
                    explained_spans.push(s.name.clone());
                }
            }
            if errors {
                if t.spans.iter().any(|s| s.error && calls(s, d)) {
                    agreeing += 1;
                }
            } else if f.latency_bound.is_some() {
                let part = critical_share(t, |id| {
                    ids.contains(&id)
                        || t.spans.iter().any(|s| {
                            s.span_id == id
                                && s.parent_span_id
                                    .as_deref()
                                    .is_some_and(|p| ids.contains(&p))
                        })
                });
                held.push(part);
                if part >= 0.5 {
                    agreeing += 1;
                }
            }
        }
        let support = 0.3 * share(agreeing, n);
        if n > 0 {
            score += support;
            why.push(format!(
                "+{support:.2} {agreeing} of {n} evidence traces agree"
            ));
        }
        let subject = d.name.split(" @ ").next().unwrap_or(&d.name);
        let mut text = match (errors, before) {
            (true, Some(b)) => format!(
                "{subject} fails: errors {} → {}",
                fmt_pct(b.error_ratio),
                fmt_pct(during.error_ratio)
            ),
            (true, None) => format!(
                "{subject} fails: errors {} (no baseline)",
                fmt_pct(during.error_ratio)
            ),
            (false, Some(b)) => format!(
                "{subject} is slow: p99 {} → {}",
                fmt_ms(b.p99_seconds),
                fmt_ms(during.p99_seconds)
            ),
            (false, None) => format!(
                "{subject} is slow: p99 {} (no baseline; the SLO's bound is {})",
                fmt_ms(during.p99_seconds),
                fmt_ms(f.latency_bound)
            ),
        };
        if n > 0 {
            if errors {
                text.push_str(&format!("; it failed in {agreeing} of {n} evidence traces"));
            } else if !held.is_empty() {
                let mean = held.iter().sum::<f64>() / held.len() as f64;
                text.push_str(&format!(
                    "; in {agreeing} of {n} evidence traces it holds {:.0} % of the critical path",
                    mean * 100.0
                ));
            }
        }
        out.push(Hypothesis {
            kind: HypothesisKind::Dependency,
            text,
            score: score.min(1.0),
            why,
        });
    }

    // Steps: error spans that are not the root (the symptom), by name;
    // for a latency SLO without errors, the span holding most of the
    // critical path.
    let mut steps: HashMap<String, Vec<&str>> = HashMap::new();
    for t in f.traces {
        let root = t.analysis.root.as_ref().map(|r| r.span_id.as_str());
        // A failing span whose child failed only passed the failure on:
        // the deepest failing span is the step.
        let parent: HashMap<&str, &str> = t
            .spans
            .iter()
            .filter_map(|s| Some((s.span_id.as_str(), s.parent_span_id.as_deref()?)))
            .collect();
        let mut passed_on: Vec<&str> = Vec::new();
        for failed in t.spans.iter().filter(|s| s.error) {
            let mut at = failed.span_id.as_str();
            for _ in 0..t.spans.len() {
                let Some(p) = parent.get(at) else { break };
                passed_on.push(p);
                at = p;
            }
        }
        for e in &t.analysis.errors {
            if Some(e.span_id.as_str()) == root
                || explained_spans.contains(&e.name)
                || passed_on.contains(&e.span_id.as_str())
            {
                continue;
            }
            let ids = steps.entry(e.name.clone()).or_default();
            if !ids.contains(&t.trace_id.as_str()) {
                ids.push(t.trace_id.as_str());
            }
        }
    }
    let mut steps: Vec<(String, Vec<&str>)> = steps.into_iter().collect();
    steps.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    // The deepest failing step explains its parents: keep the first of
    // each trace set.
    let mut seen_sets: Vec<Vec<&str>> = Vec::new();
    for (name, ids) in steps {
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        if seen_sets.contains(&sorted) {
            continue;
        }
        seen_sets.push(sorted);
        let s = share(ids.len(), n);
        let mut why = vec![
            "0.30 an error span of the service's own".to_owned(),
            format!("+{:.2} in {} of {n} evidence traces", 0.4 * s, ids.len()),
        ];
        let mut score = 0.3 + 0.4 * s;
        let mut text = format!("{name} fails: {} of {n} traces", ids.len());
        if let Some(p) = pattern_of(f.logs, f.patterns, &ids) {
            text.push_str(&format!(", {}", quoted(p)));
            if p.during > p.before {
                score += 0.2;
                why.push(format!(
                    "+0.20 its ERROR lines rose ({} → {})",
                    p.before, p.during
                ));
            }
        }
        out.push(Hypothesis {
            kind: HypothesisKind::Step,
            text,
            score,
            why,
        });
    }
    if f.latency_bound.is_some() && !out.iter().any(|h| h.kind == HypothesisKind::Dependency) {
        let mut held: HashMap<String, (usize, f64)> = HashMap::new();
        for t in f.traces {
            let root = t.analysis.root.as_ref().map(|r| (r.span_id.clone(), r.ms));
            if let Some((root_id, root_ms)) = root.filter(|r| r.1 > 0.0)
                && let Some(top) = t
                    .analysis
                    .critical_path
                    .iter()
                    .filter(|s| s.span_id != root_id)
                    .max_by(|a, b| a.ms.total_cmp(&b.ms))
            {
                let e = held.entry(top.name.clone()).or_insert((0, 0.0));
                e.0 += 1;
                e.1 += top.ms / root_ms;
            }
        }
        if let Some((name, (count, sum))) = held.into_iter().max_by_key(|(_, (c, _))| *c) {
            let s = share(count, n);
            out.push(Hypothesis {
                kind: HypothesisKind::Step,
                text: format!(
                    "{name} holds the time: {:.0} % of the critical path in {count} of {n} slow traces",
                    100.0 * sum / count as f64
                ),
                score: 0.3 + 0.4 * s,
                why: vec![
                    "0.30 the span holding most of the critical path".to_owned(),
                    format!("+{:.2} in {count} of {n} evidence traces", 0.4 * s),
                ],
            });
        }
    }

    if let Some(w) = f.windows {
        let look = f.changes_window.as_secs_f64().max(1.0);
        for c in f.changes {
            let before = secs(c.at, w.burn_started);
            let closeness = (1.0 - before.max(0.0) / look).clamp(0.0, 1.0);
            let weight = if matches!(c.kind.as_str(), "restart" | "start") {
                0.4
            } else {
                0.6
            };
            let when = if before >= 0.0 {
                format!("{} before the burn", ago(before))
            } else {
                format!("{} after the burn started", ago(before))
            };
            out.push(Hypothesis {
                kind: HypothesisKind::Change,
                text: format!("{} ({}): {when}", c.what, c.kind),
                score: weight * closeness,
                why: vec![format!(
                    "{weight:.2} × {closeness:.2}: a {} {when}, of a {} look-back",
                    c.kind,
                    ago(look)
                )],
            });
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    for h in &mut out {
        h.score = (h.score * 100.0).round() / 100.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Analysis, Span, SpanRef};
    use time::macros::datetime;

    #[test]
    fn the_burn_starts_where_the_last_run_above_the_threshold_begins() {
        let p = [
            (0.0, 0.0),
            (1.0, 0.5),
            (2.0, 0.0),
            (3.0, 0.02),
            (4.0, 0.3),
            (5.0, 0.4),
            (6.0, 0.4),
        ];
        assert_eq!(burn_start(&p, 0.0144, 5.0), Some(3.0));
        assert_eq!(burn_start(&p, 0.0144, 1.5), Some(1.0));
        assert_eq!(burn_start(&p[..1], 0.0144, 5.0), None);
    }

    #[test]
    fn the_baseline_is_just_before_the_burn_or_what_data_there_is() {
        let burn = datetime!(2026-12-04 12:00 UTC);
        let w = windows(
            burn,
            Some(burn - Duration::from_secs(7200)),
            Duration::from_secs(300),
            Duration::from_secs(3600),
            Duration::from_secs(60),
            burn + Duration::from_secs(600),
        );
        let before = w.before.expect("a baseline");
        assert_eq!(
            before.to,
            burn - Duration::from_secs(300),
            "a short window before"
        );
        assert_eq!(before.length(), Duration::from_secs(3600));
        assert_eq!(w.during.from, before.to);
        // A service one minute old: what there is.
        let young = windows(
            burn,
            Some(burn - Duration::from_secs(60)),
            Duration::from_secs(5),
            Duration::from_secs(3600),
            Duration::from_secs(10),
            burn,
        );
        assert_eq!(
            young.before.expect("a short baseline").length(),
            Duration::from_secs(55)
        );
        assert!(young.note.contains("data starts then"), "{}", young.note);
        // Younger than the minimum: none, and the card says so.
        let none = windows(
            burn,
            Some(burn - Duration::from_secs(20)),
            Duration::from_secs(5),
            Duration::from_secs(3600),
            Duration::from_secs(60),
            burn,
        );
        assert!(none.before.is_none());
        assert!(none.note.starts_with("no baseline"), "{}", none.note);
    }

    fn red(e: f64, p: f64) -> Red {
        Red {
            rate: 10.0,
            error_ratio: e,
            p99_seconds: Some(p),
        }
    }

    #[test]
    fn a_dependency_is_named_when_it_moves_or_without_baseline_when_it_is_bad() {
        assert!(
            judge(Some(red(0.0, 0.2)), Some(red(0.0, 2.0)), None).0,
            "200 ms → 2 s"
        );
        assert!(judge(Some(red(0.0, 0.2)), Some(red(0.3, 0.2)), None).0);
        assert!(!judge(Some(red(0.0, 0.2)), Some(red(0.001, 0.25)), None).0);
        assert!(
            !judge(Some(red(0.0, 0.001)), Some(red(0.0, 0.003)), None).0,
            "a few ms is noise"
        );
        assert!(!judge(Some(red(0.5, 0.2)), None, None).0);
        // Over the SLO's bound though not doubled.
        assert!(judge(Some(red(0.0, 0.4)), Some(red(0.0, 0.6)), Some(0.5)).0);
        // Without a baseline: failing, or over the bound.
        assert!(judge(None, Some(red(0.3, 0.01)), None).0);
        let (named, words) = judge(None, Some(red(0.0, 0.95)), Some(0.5));
        assert!(named);
        assert_eq!(words, "no baseline: errors 0.0 %, p99 950 ms, 10.0 calls/s");
        assert!(
            !judge(None, Some(red(0.0, 0.2)), Some(0.5)).0,
            "fast enough"
        );
        let (_, words) = judge(Some(red(0.0, 0.003)), Some(red(0.3, 2.0)), None);
        assert_eq!(
            words,
            "errors 0.0 % → 30.0 %, p99 3.0 ms → 2000 ms, 10.0 → 10.0 calls/s"
        );
    }

    fn series(labels: &[(&str, &str)], points: &[(f64, f64)]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn versions_restarts_and_self_changes_come_off_the_metrics() {
        let t0 = 1_796_400_000.0;
        let from = at(t0);
        let to = at(t0 + 600.0);
        let old = series(
            &[
                ("instance", "a:1"),
                ("service_name", "orders"),
                ("service_version", "0.1.0"),
                ("service_instance_id", "11111111-x"),
            ],
            &[(t0, 1.0), (t0 + 200.0, 1.0)],
        );
        let new = series(
            &[
                ("instance", "a:1"),
                ("service_name", "orders"),
                ("service_version", "0.1.1"),
                ("service_instance_id", "22222222-y"),
            ],
            &[(t0 + 205.0, 1.0), (t0 + 400.0, 1.0)],
        );
        let restarted = series(
            &[
                ("instance", "a:1"),
                ("service_name", "orders"),
                ("service_version", "0.1.1"),
                ("service_instance_id", "33333333-z"),
            ],
            &[(t0 + 410.0, 1.0), (t0 + 600.0, 1.0)],
        );
        let starts = [series(
            &[("instance", "a:1")],
            &[
                (t0, t0 - 50.0),
                (t0 + 300.0, t0 + 203.0),
                (t0 + 500.0, t0 + 409.0),
            ],
        )];
        let switch = [
            series(
                &[
                    ("change_kind", "fault_switch"),
                    ("change_what", "inventory_error_rate=0.5"),
                ],
                &[(t0 + 590.0, t0 + 500.0)],
            ),
            series(
                &[("change_kind", "fault_switch"), ("change_what", "none")],
                &[(t0 + 590.0, t0 - 3000.0)],
            ),
        ];
        let changes = metric_changes(
            &[old, new, restarted],
            &starts,
            &switch,
            from,
            to,
            Duration::from_secs(5),
        );
        let kinds: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| (c.kind.as_str(), c.what.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("version", "orders 0.1.1 replaced 0.1.0 (instance 22222222)"),
                ("restart", "orders 0.1.1 restarted (instance 33333333)"),
                ("fault_switch", "inventory_error_rate=0.5"),
            ],
            "the process starts agree with target_info and add nothing; the switch's old value is outside"
        );
        assert_eq!(changes[0].version.as_deref(), Some("0.1.1"));
        assert_eq!(
            changes[0].at,
            at(t0 + 203.0),
            "when its process started, not its first scrape"
        );
        // A service without target_info: its restart from the start time.
        let only = metric_changes(&[], &starts, &[], from, to, Duration::from_secs(5));
        assert_eq!(only.len(), 2);
        assert!(only.iter().all(|c| c.kind == "restart"));
    }

    #[test]
    fn messages_are_masked_into_patterns_and_counted_during_and_before() {
        assert_eq!(
            mask(
                r#"order 4711 failed for 0af7651916cd43dd8448eb211c80319c: "out of stock" after 3 tries"#
            ),
            r#"order <n> failed for <id>: "…" after <n> tries"#
        );
        assert_eq!(
            mask("payment request not published"),
            "payment request not published"
        );
        assert_eq!(
            mask("id 123e4567-e89b-12d3-a456-426614174000 v2"),
            "id <id> v<n>"
        );
        let line = |level: &str, m: &str| LogLine {
            level: level.to_owned(),
            message: m.to_owned(),
            ..LogLine::default()
        };
        let during = [
            line("ERROR", "order 1 failed"),
            line("ERROR", "order 2 failed"),
            line("WARN", "slow 1"),
            line("INFO", "order 3 placed"),
        ];
        let before = [line("WARN", "slow 7"), line("WARN", "slow 8")];
        let p = patterns(&during, &before, 1.0, 10);
        let got: Vec<(&str, usize, usize)> = p
            .iter()
            .map(|p| (p.pattern.as_str(), p.during, p.before))
            .collect();
        assert_eq!(got, [("order <n> failed", 2, 0), ("slow <n>", 1, 2)]);
    }

    fn span(
        id: &str,
        parent: Option<&str>,
        name: &str,
        kind: &str,
        error: bool,
        attrs: &[(&str, &str)],
    ) -> Span {
        Span {
            span_id: id.to_owned(),
            parent_span_id: parent.map(str::to_owned),
            name: name.to_owned(),
            service: "orders".to_owned(),
            kind: kind.to_owned(),
            start_ns: 0,
            end_ns: 1,
            error,
            error_message: None,
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn sref(id: &str, name: &str, ms: f64) -> SpanRef {
        SpanRef {
            span_id: id.to_owned(),
            name: name.to_owned(),
            service: "orders".to_owned(),
            kind: "INTERNAL".to_owned(),
            ms,
            error: None,
        }
    }

    fn trace(
        id: &str,
        spans: Vec<Span>,
        errors: Vec<SpanRef>,
        path: Vec<SpanRef>,
    ) -> TraceEvidence {
        TraceEvidence {
            trace_id: id.to_owned(),
            exemplar: crate::sources::Exemplar {
                series: BTreeMap::new(),
                trace_id: id.to_owned(),
                span_id: None,
                value: 1.0,
                timestamp: 0.0,
            },
            from_error_series: true,
            analysis: Analysis {
                services: vec!["orders".to_owned()],
                root: Some(sref("r", "POST /orders", 1000.0)),
                errors,
                largest_self_time: None,
                critical_path: path,
            },
            spans,
            link: None,
        }
    }

    const METHOD: &str = "inventory.v1.StockService/ReserveItem";

    /// A burn at noon with no data before it: no baseline.
    fn burn_at_noon() -> (OffsetDateTime, Windows) {
        let burn = datetime!(2026-12-04 12:00 UTC);
        let w = windows(
            burn,
            None,
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(10),
            burn,
        );
        (burn, w)
    }

    fn facts<'a>(
        deps: &'a [Dependency],
        traces: &'a [TraceEvidence],
        changes: &'a [Change],
        windows: &'a Windows,
        bound: Option<f64>,
    ) -> Facts<'a> {
        Facts {
            latency_bound: bound,
            windows: Some(windows),
            dependencies: deps,
            traces,
            logs: &[],
            patterns: &[],
            changes,
            down: &[],
            changes_window: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_slow_dependency_on_the_critical_path_beats_a_deploy_before_it() {
        let (burn, w) = burn_at_noon();
        let deps = [Dependency {
            kind: "gRPC".to_owned(),
            name: format!("{METHOD} @ 127.0.0.1"),
            before: Some(red(0.0, 0.003)),
            during: Some(red(0.0, 0.95)),
            moved: true,
            summary: "p99 3 ms → 950 ms".to_owned(),
        }];
        let spans = vec![
            span("r", None, "POST /orders", "SERVER", false, &[]),
            span(
                "c",
                Some("r"),
                METHOD,
                "CLIENT",
                false,
                &[("rpc.method", METHOD), ("server.address", "127.0.0.1")],
            ),
            span(
                "s",
                Some("c"),
                METHOD,
                "SERVER",
                false,
                &[("rpc.method", METHOD)],
            ),
        ];
        let path = vec![
            sref("r", "POST /orders", 30.0),
            sref("c", METHOD, 20.0),
            sref("s", METHOD, 950.0),
        ];
        let traces: Vec<TraceEvidence> = (0..3)
            .map(|i| trace(&format!("t{i}"), spans.clone(), vec![], path.clone()))
            .collect();
        let changes = [Change {
            at: burn - Duration::from_secs(120),
            kind: "version".to_owned(),
            what: "orders 0.1.1 replaced 0.1.0".to_owned(),
            version: Some("0.1.1".to_owned()),
            link: None,
            source: ChangeSource::Metrics,
        }];
        let h = hypotheses(&facts(&deps, &traces, &changes, &w, Some(0.5)));
        assert_eq!(h[0].kind, HypothesisKind::Dependency);
        assert_eq!(
            h[0].text,
            format!(
                "{METHOD} is slow: p99 3.0 ms → 950 ms; in 3 of 3 evidence traces it holds 97 % of the critical path"
            )
        );
        assert_eq!(h[0].score, 1.0, "{:?}", h[0].why);
        let change = h
            .iter()
            .find(|h| h.kind == HypothesisKind::Change)
            .expect("the deploy");
        assert_eq!(
            change.text,
            "orders 0.1.1 replaced 0.1.0 (version): 2 min before the burn"
        );
        assert!(
            change.score < h[0].score && change.score > 0.55,
            "{change:?}"
        );
        assert!(h.windows(2).all(|p| p[0].score >= p[1].score), "best first");
    }

    #[test]
    fn a_failing_call_is_the_cause_not_the_handler_that_passed_it_on() {
        let (_, w) = burn_at_noon();
        let deps = [Dependency {
            kind: "gRPC".to_owned(),
            name: format!("{METHOD} @ 127.0.0.1"),
            before: None,
            during: Some(red(0.5, 0.003)),
            moved: true,
            summary: "no baseline: errors 50.0 %".to_owned(),
        }];
        let spans = vec![
            span("r", None, "POST /orders", "SERVER", true, &[]),
            span("h", Some("r"), "PlaceOrder", "INTERNAL", true, &[]),
            span(
                "c",
                Some("h"),
                METHOD,
                "CLIENT",
                true,
                &[("rpc.method", METHOD), ("server.address", "127.0.0.1")],
            ),
        ];
        let errors = vec![
            sref("r", "POST /orders", 3.0),
            sref("h", "PlaceOrder", 2.0),
            sref("c", METHOD, 1.0),
        ];
        let traces: Vec<TraceEvidence> = (0..2)
            .map(|i| trace(&format!("t{i}"), spans.clone(), errors.clone(), vec![]))
            .collect();
        let h = hypotheses(&facts(&deps, &traces, &[], &w, None));
        let texts: Vec<&str> = h.iter().map(|h| h.text.as_str()).collect();
        assert_eq!(
            texts,
            [format!(
                "{METHOD} fails: errors 50.0 % (no baseline); it failed in 2 of 2 evidence traces"
            )
            .as_str()],
            "PlaceOrder only passed it on"
        );
    }

    #[test]
    fn a_failing_consumer_step_is_named_with_its_error_lines() {
        let (_, w) = burn_at_noon();
        let spans = vec![
            span("r", None, "POST /orders", "SERVER", false, &[]),
            span("p", Some("r"), "process orders", "CONSUMER", true, &[]),
        ];
        let traces: Vec<TraceEvidence> = (0..3)
            .map(|i| {
                trace(
                    &format!("t{i}"),
                    spans.clone(),
                    vec![sref("p", "process orders", 5.0)],
                    vec![],
                )
            })
            .collect();
        let logs: Vec<LogLine> = (0..3)
            .map(|i| LogLine {
                level: "ERROR".to_owned(),
                message: format!("order {i} not processed: \"injected\""),
                trace_id: format!("t{i}"),
                ..LogLine::default()
            })
            .collect();
        let patterns = patterns(&logs, &[], 1.0, 10);
        let f = Facts {
            logs: &logs,
            patterns: &patterns,
            ..facts(&[], &traces, &[], &w, None)
        };
        let h = hypotheses(&f);
        assert_eq!(h[0].kind, HypothesisKind::Step);
        assert_eq!(
            h[0].text,
            "process orders fails: 3 of 3 traces, 3 ERROR lines 'order 0 not processed: \"injected\"'"
        );
        assert_eq!(h[0].score, 0.9, "{:?}", h[0].why);
    }
}
