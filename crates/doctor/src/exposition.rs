//! A scrape, read: OpenMetrics 1.0 or Prometheus text 0.0.4, families with
//! their type, unit and help, samples with their labels and exemplars.
//!
//! Hand-written (about 200 lines) because no permissively licensed crate
//! reads OpenMetrics exemplars: `openmetrics-parser` is LGPL-3.0, and
//! `prometheus-parse` reads Prometheus text only.

use std::collections::BTreeMap;

/// One metric family.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Family {
    /// Its name (OpenMetrics: without `_total` for a counter).
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `summary`, `info`, `stateset`,
    /// `gaugehistogram`, `unknown` (Prometheus text: `untyped`).
    pub kind: String,
    /// `# UNIT`, OpenMetrics only.
    pub unit: Option<String>,
    /// `# HELP`.
    pub help: Option<String>,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

/// One sample line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Its name (`…_bucket`, `…_total`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
    /// Its exemplar, if any.
    pub exemplar: Option<Exemplar>,
}

/// An exemplar: its labels (a trace id, usually) and value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exemplar {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// The trace ids the exemplars of `families` carry, in scrape order
/// (repeats included).
pub fn exemplar_trace_ids(families: &[Family]) -> impl Iterator<Item = &str> {
    families
        .iter()
        .flat_map(|f| f.samples.iter())
        .filter_map(|s| s.exemplar.as_ref())
        .filter_map(|e| e.labels.get("trace_id").map(String::as_str))
}

/// The `target_info` sample (OpenMetrics family `target`, Prometheus text
/// `target_info`): the service's resource attributes as labels.
pub fn target_info(families: &[Family]) -> Option<&Sample> {
    families
        .iter()
        .filter(|f| f.name == "target" || f.name == "target_info")
        .find_map(|f| f.samples.first())
}

/// A line the parser could not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    /// What was wrong.
    pub why: String,
}

/// The suffixes a sample of a family may carry.
const SUFFIXES: [&str; 8] = [
    "_total", "_bucket", "_count", "_sum", "_created", "_info", "_gcount", "_gsum",
];

/// Reads an exposition (either format).
///
/// # Errors
/// The first line that is neither a comment nor a sample.
pub fn parse(text: &str) -> Result<Vec<Family>, ParseError> {
    let mut families: Vec<Family> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let err = |why: &str| ParseError {
            line: n + 1,
            why: why.to_owned(),
        };
        if line.trim().is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(what), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let value = parts.next().unwrap_or("").to_owned();
            if !matches!(what, "TYPE" | "UNIT" | "HELP") {
                continue;
            }
            let i = *index.entry(name.to_owned()).or_insert_with(|| {
                families.push(Family {
                    name: name.to_owned(),
                    kind: "unknown".to_owned(),
                    ..Family::default()
                });
                families.len() - 1
            });
            let f = &mut families[i];
            match what {
                "TYPE" => f.kind = value,
                "UNIT" => f.unit = Some(value).filter(|u| !u.is_empty()),
                _ => f.help = Some(value),
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = sample(line).map_err(|why| err(&why))?;
        let family = family_of(&sample.name, &index);
        let i = match family {
            Some(i) => i,
            None => {
                families.push(Family {
                    name: sample.name.clone(),
                    kind: "untyped".to_owned(),
                    ..Family::default()
                });
                index.insert(sample.name.clone(), families.len() - 1);
                families.len() - 1
            }
        };
        families[i].samples.push(sample);
    }
    Ok(families)
}

/// The declared family a sample belongs to: its own name, or its name
/// without a suffix the family's type gives it.
fn family_of(sample: &str, index: &BTreeMap<String, usize>) -> Option<usize> {
    index.get(sample).copied().or_else(|| {
        SUFFIXES.iter().find_map(|s| {
            sample
                .strip_suffix(s)
                .and_then(|base| index.get(base).copied())
        })
    })
}

/// `name{labels} value [timestamp] [# {labels} value [timestamp]]`.
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample without a value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("a sample without a name".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if rest.starts_with('{') {
        let (l, after) = label_set(rest)?;
        labels = l;
        rest = after;
    }
    let (main, exemplar) = match rest.find(" # ") {
        Some(i) => (&rest[..i], Some(&rest[i + 3..])),
        None => (rest, None),
    };
    let value = main
        .split_whitespace()
        .next()
        .ok_or("a sample without a value")?;
    let value = number(value)?;
    let exemplar = match exemplar {
        None => None,
        Some(e) => {
            let e = e.trim_start();
            if !e.starts_with('{') {
                return Err("an exemplar without labels".to_owned());
            }
            let (labels, after) = label_set(e)?;
            let value = after
                .split_whitespace()
                .next()
                .ok_or("an exemplar without a value")?;
            Some(Exemplar {
                labels,
                value: number(value)?,
            })
        }
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
        exemplar,
    })
}

fn number(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("{s:?} is not a number")),
    }
}

/// `{k="v",…}` at the start of `s`: the labels and what follows.
fn label_set(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let bytes = s.as_bytes();
    let mut i = 1;
    loop {
        while i < bytes.len() && (bytes[i] == b',' || bytes[i] == b' ') {
            i += 1;
        }
        if i >= bytes.len() {
            return Err("labels without a closing brace".to_owned());
        }
        if bytes[i] == b'}' {
            return Ok((labels, &s[i + 1..]));
        }
        let eq = s[i..].find('=').ok_or("a label without a value")? + i;
        let key = s[i..eq].trim().to_owned();
        if bytes.get(eq + 1) != Some(&b'"') {
            return Err(format!("label {key}: its value is not quoted"));
        }
        let mut value = String::new();
        let mut j = eq + 2;
        let mut closed = false;
        let mut chars = s[j..].char_indices();
        while let Some((k, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => break,
                },
                '"' => {
                    j += k + 1;
                    closed = true;
                    break;
                }
                c => value.push(c),
            }
        }
        if !closed {
            return Err(format!("label {key}: its value is not closed"));
        }
        labels.insert(key, value);
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openmetrics_with_units_exemplars_and_escapes() {
        let text = "# TYPE http_server_request_duration_seconds histogram\n\
# UNIT http_server_request_duration_seconds seconds\n\
# HELP http_server_request_duration_seconds Duration.\n\
http_server_request_duration_seconds_bucket{http_route=\"/orders\",le=\"0.005\"} 3 # {trace_id=\"0af7651916cd43dd8448eb211c80319c\",span_id=\"b7ad6b7169203331\"} 0.002 1796032800.123\n\
http_server_request_duration_seconds_bucket{http_route=\"/orders\",le=\"+Inf\"} 4\n\
http_server_request_duration_seconds_count{http_route=\"/orders\"} 4\n\
# TYPE jobs counter\n\
jobs_total{note=\"a \\\"quoted\\\" \\\\ value\"} 2\n\
# EOF\n";
        let f = parse(text).expect("readable");
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].kind.as_str(), f[0].unit.as_deref()),
            ("histogram", Some("seconds"))
        );
        assert_eq!(f[0].samples.len(), 3);
        let e = f[0].samples[0].exemplar.as_ref().expect("an exemplar");
        assert_eq!(e.labels["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert!((e.value - 0.002).abs() < 1e-12);
        assert!(f[0].samples[1].value.is_infinite() || f[0].samples[1].labels["le"] == "+Inf");
        assert_eq!(f[1].samples[0].labels["note"], "a \"quoted\" \\ value");
    }

    #[test]
    fn reads_prometheus_text_and_untyped_samples() {
        let text =
            "# HELP up Up.\n# TYPE up gauge\nup 1\nloose_metric{a=\"b\"} 2.5 1796032800000\n";
        let f = parse(text).expect("readable");
        assert_eq!(f[0].name, "up");
        assert_eq!(
            (f[1].name.as_str(), f[1].kind.as_str()),
            ("loose_metric", "untyped")
        );
        assert_eq!(f[1].samples[0].value, 2.5);
    }

    #[test]
    fn says_which_line_it_cannot_read() {
        for (text, why) in [
            ("ok 1\nbroken{a=\"b\" 1\n", "line 2"),
            ("x{a=b} 1\n", "not quoted"),
            ("x seven\n", "not a number"),
            ("x{a=\"b\"} 1 # trace\n", "exemplar without labels"),
        ] {
            let e = parse(text).expect_err("refused").to_string();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }
}
