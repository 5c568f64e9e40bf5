//! prometheus-client registries served on looptel's `/metrics`
//! ([`Registry::attach`](crate::Registry::attach)).
//!
//! prometheus-client encodes OpenMetrics only; for scrapers that ask for
//! Prometheus text 0.0.4 its families are rewritten as that format wants:
//! counters named with `_total`, no `# UNIT` lines, no exemplars, no
//! `_created` samples, `unknown` as `untyped`, `info` and `stateset` as
//! gauges.

use std::sync::Arc;

use crate::exposition::Format;

/// A family name that two registries both define: never served twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateFamily {
    /// The family name (OpenMetrics form, without `_total`).
    pub name: String,
}

impl std::fmt::Display for DuplicateFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "metric family {:?} is defined both by looptel's registry and by an attached prometheus-client registry (or by two of those): rename one",
            self.name
        )
    }
}

impl std::error::Error for DuplicateFamily {}

/// An attached registry.
#[derive(Debug)]
pub(crate) struct Foreign {
    registry: Arc<prometheus_client::registry::Registry>,
    /// Its family names, read once: a prometheus-client registry gains no
    /// families once shared.
    pub(crate) families: Vec<String>,
}

/// One family of an OpenMetrics text: its name, type and lines.
struct Block<'a> {
    name: &'a str,
    kind: &'a str,
    lines: Vec<&'a str>,
}

/// The family a metadata line (`# HELP name …`, `# TYPE`, `# UNIT`) names.
fn meta(line: &str) -> Option<(&str, &str, &str)> {
    let rest = line.strip_prefix("# ")?;
    let (keyword, rest) = rest.split_once(' ')?;
    if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
        return None;
    }
    let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((keyword, name, value))
}

fn blocks(text: &str) -> Vec<Block<'_>> {
    let mut out: Vec<Block<'_>> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && *l != "# EOF") {
        if let Some((keyword, name, value)) = meta(line) {
            if out.last().is_none_or(|b| b.name != name) {
                out.push(Block {
                    name,
                    kind: "unknown",
                    lines: Vec::new(),
                });
            }
            if let Some(b) = out.last_mut() {
                if keyword == "TYPE" {
                    b.kind = value;
                }
                b.lines.push(line);
            }
        } else if let Some(b) = out.last_mut() {
            b.lines.push(line);
        }
    }
    out
}

/// A sample line without its exemplar (`… # {trace_id="…"} 1.0`).
fn without_exemplar(line: &str) -> &str {
    // Past the labels (quote-aware: a label value may hold " # {").
    let mut end_of_labels = 0;
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    if line[name_end..].starts_with('{') {
        let open = name_end;
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in line[open..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '}' if !quoted => {
                    end_of_labels = open + i;
                    break;
                }
                _ => {}
            }
        }
    }
    match line[end_of_labels..].find(" # ") {
        Some(at) => &line[..end_of_labels + at],
        None => line,
    }
}

fn sample_name(line: &str) -> &str {
    line.split(['{', ' ']).next().unwrap_or_default()
}

/// One family in Prometheus text 0.0.4.
fn to_prometheus(b: &Block<'_>, out: &mut String) {
    let (name, kind) = match b.kind {
        "counter" => (format!("{}_total", b.name), "counter"),
        "info" => (format!("{}_info", b.name), "gauge"),
        "stateset" => (b.name.to_owned(), "gauge"),
        "gauge" | "histogram" | "summary" => (b.name.to_owned(), b.kind),
        _ => (b.name.to_owned(), "untyped"),
    };
    for line in &b.lines {
        match meta(line) {
            Some(("HELP", _, help)) => {
                out.push_str(&format!("# HELP {name} {help}\n"));
            }
            Some(("TYPE", _, _)) => out.push_str(&format!("# TYPE {name} {kind}\n")),
            Some(_) => {} // UNIT: not in 0.0.4
            None if line.starts_with('#') => {}
            None => {
                if sample_name(line).ends_with("_created") {
                    continue;
                }
                out.push_str(without_exemplar(line));
                out.push('\n');
            }
        }
    }
}

impl Foreign {
    pub(crate) fn new(registry: Arc<prometheus_client::registry::Registry>) -> Self {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &registry);
        let families = blocks(&text).iter().map(|b| b.name.to_owned()).collect();
        Self { registry, families }
    }

    /// Appends its families in `format`, except those named in `taken`.
    pub(crate) fn encode(&self, out: &mut String, format: Format, taken: &[String]) {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut text, &self.registry).is_err() {
            return;
        }
        for b in blocks(&text) {
            if taken.iter().any(|t| t == b.name) {
                continue;
            }
            match format {
                Format::OpenMetrics => {
                    for line in &b.lines {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
                Format::Prometheus | Format::Protobuf => to_prometheus(&b, out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exemplars_are_cut_past_the_labels_only() {
        assert_eq!(
            without_exemplar(r#"a_bucket{le="1",x="a # {b}"} 3 # {trace_id="ab"} 0.5 1.0"#),
            r#"a_bucket{le="1",x="a # {b}"} 3"#
        );
        assert_eq!(without_exemplar("a_total 3"), "a_total 3");
        assert_eq!(without_exemplar("a_total 3 # {t=\"1\"} 1"), "a_total 3");
    }

    #[test]
    fn families_are_rewritten_for_prometheus_text() {
        let om = "# HELP jobs Jobs run.\n# TYPE jobs counter\n# UNIT jobs seconds\njobs_total{k=\"v\"} 2 # {trace_id=\"ab\"} 1\njobs_created{k=\"v\"} 1.7e9\n# HELP build Build.\n# TYPE build info\nbuild_info{v=\"1\"} 1\n# HELP q Q.\n# TYPE q unknown\nq 1\n# EOF\n";
        let mut out = String::new();
        for b in blocks(om) {
            to_prometheus(&b, &mut out);
        }
        assert_eq!(
            out,
            "# HELP jobs_total Jobs run.\n# TYPE jobs_total counter\njobs_total{k=\"v\"} 2\n# HELP build_info Build.\n# TYPE build_info gauge\nbuild_info{v=\"1\"} 1\n# HELP q Q.\n# TYPE q untyped\nq 1\n"
        );
    }
}
