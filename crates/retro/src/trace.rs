//! A trace as every trace source returns it, and what a card says about
//! it: the services involved, the error spans, the span with the largest
//! self time, the critical path.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// One span, whatever source it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// The parent's id; `None` for a root (or a parent not in the trace).
    pub parent_span_id: Option<String>,
    /// Its name (`POST /orders`).
    pub name: String,
    /// `service.name` of its resource.
    pub service: String,
    /// `SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER` or `INTERNAL`.
    pub kind: String,
    /// Start, Unix nanoseconds.
    pub start_ns: u64,
    /// End, Unix nanoseconds.
    pub end_ns: u64,
    /// Status Error.
    pub error: bool,
    /// The status message, or `error.type`.
    pub error_message: Option<String>,
    /// Its attributes, rendered as strings.
    pub attributes: BTreeMap<String, String>,
}

impl Span {
    /// Its duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// A trace: its id and spans.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// Its spans, by start time.
    pub spans: Vec<Span>,
}

/// What a card says about one trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// The services involved, in order of their first span.
    pub services: Vec<String>,
    /// The root span's name and duration.
    pub root: Option<SpanRef>,
    /// The spans with status Error, earliest first.
    pub errors: Vec<SpanRef>,
    /// The span that spent the most time itself (not in its children).
    pub largest_self_time: Option<SpanRef>,
    /// From the root down: the spans the trace's end waited on, each with
    /// the time it was on the path.
    pub critical_path: Vec<SpanRef>,
}

/// A span as a card names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanRef {
    /// Its id.
    pub span_id: String,
    /// Its name.
    pub name: String,
    /// Its service.
    pub service: String,
    /// Its kind.
    pub kind: String,
    /// Milliseconds: its duration, its self time or its time on the
    /// critical path (by where it is listed).
    pub ms: f64,
    /// Its error message, for an error span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl SpanRef {
    fn of(span: &Span, ns: u64) -> Self {
        Self {
            span_id: span.span_id.clone(),
            name: span.name.clone(),
            service: span.service.clone(),
            kind: span.kind.clone(),
            ms: ms(ns),
            error: span.error_message.clone().filter(|_| span.error),
        }
    }
}

/// The length of the union of `intervals` clipped to `[lo, hi]`.
fn covered(mut intervals: Vec<(u64, u64)>, lo: u64, hi: u64) -> u64 {
    intervals.sort_unstable();
    let (mut total, mut cursor) = (0, lo);
    for (s, e) in intervals {
        let (s, e) = (s.max(cursor), e.min(hi));
        if e > s {
            total += e - s;
            cursor = e;
        }
    }
    total
}

impl Trace {
    /// Orders spans by start and drops exact duplicates (a span reported
    /// twice by a retrying exporter).
    pub fn new(trace_id: String, mut spans: Vec<Span>) -> Self {
        spans.sort_by(|a, b| (a.start_ns, &a.span_id).cmp(&(b.start_ns, &b.span_id)));
        spans.dedup_by(|a, b| a.span_id == b.span_id);
        Self { trace_id, spans }
    }

    fn children(&self) -> HashMap<&str, Vec<&Span>> {
        let mut children: HashMap<&str, Vec<&Span>> = HashMap::new();
        for s in &self.spans {
            if let Some(p) = &s.parent_span_id {
                children.entry(p.as_str()).or_default().push(s);
            }
        }
        children
    }

    /// The root: the earliest span whose parent is not in the trace.
    pub fn root(&self) -> Option<&Span> {
        let ids: std::collections::HashSet<&str> =
            self.spans.iter().map(|s| s.span_id.as_str()).collect();
        self.spans
            .iter()
            .find(|s| s.parent_span_id.as_deref().is_none_or(|p| !ids.contains(p)))
    }

    /// What a card says about this trace.
    pub fn analyse(&self) -> Analysis {
        let mut services: Vec<String> = Vec::new();
        for s in &self.spans {
            if !services.contains(&s.service) {
                services.push(s.service.clone());
            }
        }
        let children = self.children();
        let self_time = |s: &Span| {
            let kids = children
                .get(s.span_id.as_str())
                .map(|k| k.iter().map(|c| (c.start_ns, c.end_ns)).collect())
                .unwrap_or_default();
            s.duration_ns()
                .saturating_sub(covered(kids, s.start_ns, s.end_ns))
        };
        let largest_self_time = self
            .spans
            .iter()
            .map(|s| (self_time(s), s))
            .max_by_key(|(t, _)| *t)
            .map(|(t, s)| SpanRef::of(s, t));
        let root = self.root();
        let mut critical_path = Vec::new();
        if let Some(root) = root {
            let mut on_path: Vec<(&Span, u64)> = Vec::new();
            walk_critical(root, root.end_ns, &children, &mut on_path, 0);
            // One entry per span, in the order first reached (root first).
            let mut seen: Vec<(&Span, u64)> = Vec::new();
            for (s, t) in on_path {
                match seen.iter_mut().find(|(x, _)| x.span_id == s.span_id) {
                    Some((_, total)) => *total += t,
                    None => seen.push((s, t)),
                }
            }
            critical_path = seen.into_iter().map(|(s, t)| SpanRef::of(s, t)).collect();
        }
        Analysis {
            services,
            root: root.map(|r| SpanRef::of(r, r.duration_ns())),
            errors: self
                .spans
                .iter()
                .filter(|s| s.error)
                .map(|s| SpanRef::of(s, s.duration_ns()))
                .collect(),
            largest_self_time,
            critical_path,
        }
    }
}

/// The critical path below `span`, up to `until`: walking back from the
/// end, the child that finished last before the cursor is on the path
/// (and, recursively, its own path); the gaps between are the span's own.
fn walk_critical<'a>(
    span: &'a Span,
    until: u64,
    children: &HashMap<&str, Vec<&'a Span>>,
    out: &mut Vec<(&'a Span, u64)>,
    depth: usize,
) {
    let index = out.len();
    out.push((span, 0));
    if depth > 256 {
        return;
    }
    let end = span.end_ns.min(until);
    let mut own = 0;
    let mut cursor = end;
    let mut kids: Vec<&Span> = children
        .get(span.span_id.as_str())
        .cloned()
        .unwrap_or_default();
    kids.sort_by_key(|c| std::cmp::Reverse(c.end_ns.min(end)));
    for child in kids {
        let child_end = child.end_ns.min(cursor);
        if child_end <= child.start_ns.max(span.start_ns) {
            continue;
        }
        own += cursor - child_end;
        walk_critical(child, child_end, children, out, depth + 1);
        cursor = child.start_ns.max(span.start_ns);
        if cursor <= span.start_ns {
            break;
        }
    }
    own += cursor.saturating_sub(span.start_ns);
    out[index].1 = own;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn span(
        id: &str,
        parent: Option<&str>,
        service: &str,
        start_ms: u64,
        end_ms: u64,
    ) -> Span {
        Span {
            span_id: id.to_owned(),
            parent_span_id: parent.map(str::to_owned),
            name: format!("op-{id}"),
            service: service.to_owned(),
            kind: "INTERNAL".to_owned(),
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            error: false,
            error_message: None,
            attributes: BTreeMap::new(),
        }
    }

    /// The seed's incident: `POST /orders` (0–2000 ms) waits on the order
    /// span (10–1990), which calls the inventory twice: a fast call
    /// (20–60) and a slow one (100–1980) whose server side (110–1970)
    /// fails after a long wait of its own.
    fn seed_trace() -> Trace {
        let mut failing = span("e", Some("d"), "inventory", 110, 1970);
        failing.error = true;
        failing.error_message = Some("UNAVAILABLE".to_owned());
        Trace::new(
            "t".to_owned(),
            vec![
                span("d", Some("b"), "order-service", 100, 1980),
                span("a", None, "order-service", 0, 2000),
                span("b", Some("a"), "order-service", 10, 1990),
                span("c", Some("b"), "order-service", 20, 60),
                failing,
            ],
        )
    }

    #[test]
    fn names_services_errors_self_time_and_the_critical_path() {
        let a = seed_trace().analyse();
        assert_eq!(a.services, ["order-service", "inventory"]);
        assert_eq!(a.root.as_ref().map(|r| r.span_id.as_str()), Some("a"));
        assert_eq!(a.errors.len(), 1);
        assert_eq!(a.errors[0].error.as_deref(), Some("UNAVAILABLE"));
        let largest = a.largest_self_time.expect("some span");
        assert_eq!((largest.span_id.as_str(), largest.ms), ("e", 1860.0));
        let path: Vec<(&str, f64)> = a
            .critical_path
            .iter()
            .map(|s| (s.span_id.as_str(), s.ms))
            .collect();
        // The fast call finished before the slow one started: it is on the
        // path too, for its 40 ms; the times add up to the root's 2000 ms.
        assert_eq!(
            path,
            [
                ("a", 20.0),
                ("b", 60.0),
                ("d", 20.0),
                ("e", 1860.0),
                ("c", 40.0)
            ]
        );
        let total: f64 = a.critical_path.iter().map(|s| s.ms).sum();
        assert!((total - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn overlapping_children_count_once_and_orphans_make_roots() {
        let t = Trace::new(
            "t".to_owned(),
            vec![
                span("p", None, "s", 0, 100),
                span("x", Some("p"), "s", 10, 60),
                span("y", Some("p"), "s", 40, 90),
                span("z", Some("gone"), "s", 200, 300),
                span("z", Some("gone"), "s", 200, 300),
            ],
        );
        assert_eq!(t.spans.len(), 4, "the duplicate is dropped");
        let a = t.analyse();
        // p's own time: 0-10 and 90-100.
        let p_self = 100 - covered(vec![(10, 60), (40, 90)], 0, 100);
        assert_eq!(p_self, 20);
        // The critical path: y (latest end), then x up to y's start.
        let path: Vec<&str> = a.critical_path.iter().map(|s| s.span_id.as_str()).collect();
        assert_eq!(path, ["p", "y", "x"]);
        assert_eq!(a.critical_path[2].ms, 30.0);
    }

    #[test]
    fn a_cycle_or_a_deep_chain_cannot_hang_it() {
        let mut spans = vec![span("0", None, "s", 0, 10_000)];
        for i in 1..2000 {
            spans.push(span(
                &i.to_string(),
                Some(&(i - 1).to_string()),
                "s",
                i,
                10_000 - i,
            ));
        }
        let a = Trace::new("t".to_owned(), spans).analyse();
        assert!(a.critical_path.len() <= 258);
        let cyclic = Trace::new(
            "t".to_owned(),
            vec![
                span("a", Some("b"), "s", 0, 10),
                span("b", Some("a"), "s", 1, 9),
            ],
        );
        let a = cyclic.analyse();
        assert!(a.root.is_none());
        assert!(a.critical_path.is_empty());
    }
}
