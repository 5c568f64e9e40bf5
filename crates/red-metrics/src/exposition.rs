//! The two text expositions: OpenMetrics (with exemplars) and Prometheus
//! text 0.0.4, negotiated from `Accept`; how each instrument writes itself.

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use crate::exemplar::Exemplar;
use crate::metric::Metric;
use crate::metrics::{Counter, Gauge, Histogram};
use looptel_catalogue::prometheus::label_name;

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// OpenMetrics 1.0 text, with exemplars.
    OpenMetrics,
    /// Prometheus text 0.0.4, without exemplars.
    Prometheus,
    /// Prometheus' protobuf format (`io.prometheus.client.MetricFamily`,
    /// length-delimited): native histograms, with exemplars.
    Protobuf,
}

/// The `Content-Type` of OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of Prometheus text 0.0.4.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub use crate::protobuf::PROTOBUF_CONTENT_TYPE;

/// What one media range of `Accept` offers, and its weight.
fn offer(range: &str) -> Option<(Format, f32)> {
    let mut parts = range.split(';').map(str::trim);
    let media = parts.next()?.to_ascii_lowercase();
    let mut q = 1.0_f32;
    let mut version = None;
    let (mut proto, mut encoding) = (None, None);
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "q" => q = v.parse().unwrap_or(0.0),
            "version" => version = Some(v.to_owned()),
            "proto" => proto = Some(v.to_owned()),
            "encoding" => encoding = Some(v.to_owned()),
            _ => {}
        }
    }
    let format = match media.as_str() {
        "application/openmetrics-text" if version.as_deref().is_none_or(|v| v == "1.0.0") => {
            Format::OpenMetrics
        }
        "application/vnd.google.protobuf"
            if proto.as_deref() == Some("io.prometheus.client.MetricFamily")
                && encoding.as_deref() == Some("delimited") =>
        {
            Format::Protobuf
        }
        "text/plain" | "*/*" | "text/*" if version.as_deref().is_none_or(|v| v == "0.0.4") => {
            Format::Prometheus
        }
        _ => return None,
    };
    (q > 0.0).then_some((format, q))
}

impl Format {
    /// The format `accept` weighs highest among those served (OpenMetrics
    /// 1.0.0 or unversioned, Prometheus' protobuf, Prometheus text 0.0.4;
    /// the first of equal weights), Prometheus text when it names none.
    pub fn negotiate(accept: Option<&http::HeaderValue>) -> Self {
        Self::negotiate_among(accept, true)
    }

    /// As [`negotiate`](Self::negotiate); `protobuf` false leaves
    /// Prometheus' protobuf format out.
    pub(crate) fn negotiate_among(accept: Option<&http::HeaderValue>, protobuf: bool) -> Self {
        let Some(accept) = accept.and_then(|a| a.to_str().ok()) else {
            return Self::Prometheus;
        };
        let mut best: Option<(Format, f32)> = None;
        for (format, q) in accept.split(',').filter_map(offer) {
            if format == Self::Protobuf && !protobuf {
                continue;
            }
            if best.is_none_or(|(_, b)| q > b) {
                best = Some((format, q));
            }
        }
        best.map_or(Self::Prometheus, |(f, _)| f)
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::Prometheus => PROMETHEUS_CONTENT_TYPE,
            Self::Protobuf => PROTOBUF_CONTENT_TYPE,
        }
    }
}

/// What a registered instrument does for the registry: write itself,
/// say its overflow, snapshot itself.
pub(crate) trait Encode: Send + Sync + std::fmt::Debug {
    /// Writes the family in a text format.
    fn encode(&self, out: &mut String, format: Format);
    /// Appends the family in Prometheus' protobuf format.
    fn protobuf(&self, out: &mut Vec<u8>);
    fn overflow(&self) -> (&str, u64);
    fn snapshot(&self) -> crate::snapshot::InstrumentSnapshot;
}

fn escape(value: &str, out: &mut String) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `target_info`'s help, in every format.
pub(crate) const TARGET_INFO_HELP: &str = "Target metadata";

/// Writes `target_info{…} 1`, the service's identity as an info metric
/// (OpenMetrics' `info` type; a gauge in Prometheus text), labels in
/// exposed form.
pub(crate) fn target_info(out: &mut String, format: Format, info: &[(String, String)]) {
    let kind = match format {
        Format::OpenMetrics => "info",
        Format::Prometheus | Format::Protobuf => "gauge",
    };
    let family = match format {
        Format::OpenMetrics => "target",
        Format::Prometheus | Format::Protobuf => "target_info",
    };
    header(out, format, family, kind, None, TARGET_INFO_HELP);
    let names: Vec<String> = info.iter().map(|(k, _)| k.clone()).collect();
    let values: Vec<Box<str>> = info.iter().map(|(_, v)| v.as_str().into()).collect();
    out.push_str("target_info");
    labels(out, &names, Some(&values), None);
    out.push_str(" 1\n");
}

/// Writes `{k="v",…}`: the series' labels (names already exposed form;
/// empty values left out: an absent route or error), or the overflow label,
/// then `extra` (`le`).
fn labels(
    out: &mut String,
    names: &[String],
    values: Option<&[Box<str>]>,
    extra: Option<(&str, &str)>,
) {
    let mut first = true;
    let mut push = |out: &mut String, k: &str, v: &str| {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape(v, out);
        out.push('"');
    };
    match values {
        Some(values) => {
            for (k, v) in names
                .iter()
                .zip(values.iter())
                .filter(|(_, v)| !v.is_empty())
            {
                push(out, k, v);
            }
        }
        None => push(out, &label_name(crate::OVERFLOW_LABEL), "true"),
    }
    if let Some((k, v)) = extra {
        push(out, k, v);
    }
    if !first {
        out.push('}');
    }
}

pub(crate) fn float(v: f64, out: &mut String) {
    if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v.is_nan() {
        out.push_str("NaN");
    } else {
        let _ = write!(out, "{v:?}");
    }
}

fn exemplar(out: &mut String, e: Option<Exemplar>, format: Format) {
    let (Format::OpenMetrics, Some(e)) = (format, e) else {
        return;
    };
    let ts = e.timestamp.duration_since(UNIX_EPOCH).unwrap_or_default();
    let _ = write!(
        out,
        " # {{trace_id=\"{}\",span_id=\"{}\"}} ",
        e.trace_id, e.span_id
    );
    float(e.value, out);
    let _ = write!(out, " {}.{:03}", ts.as_secs(), ts.subsec_millis());
}

pub(crate) fn header(
    out: &mut String,
    format: Format,
    name: &str,
    kind: &str,
    unit: Option<&str>,
    help: &str,
) {
    match format {
        Format::OpenMetrics => {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            if let Some(u) = unit {
                let _ = writeln!(out, "# UNIT {name} {u}");
            }
            let _ = writeln!(out, "# HELP {name} {help}");
        }
        Format::Prometheus | Format::Protobuf => {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        }
    }
}

impl Encode for Metric<Histogram> {
    fn protobuf(&self, out: &mut Vec<u8>) {
        Metric::<Histogram>::protobuf(self, out);
    }

    fn snapshot(&self) -> crate::snapshot::InstrumentSnapshot {
        use crate::snapshot::{Data, HistogramPoint};
        self.snapshot_of(Data::Histogram(Vec::new()), |data, attributes, h| {
            let Data::Histogram(points) = data else {
                return;
            };
            let native = h.native();
            let s = h.snapshot();
            let mut previous = 0;
            let bucket_counts = s
                .buckets
                .iter()
                .map(|(cumulative, _)| {
                    let n = cumulative - previous;
                    previous = *cumulative;
                    n
                })
                .collect();
            points.push(HistogramPoint {
                attributes,
                bounds: s.bounds,
                bucket_counts,
                sum: s.sum,
                count: native.as_ref().map_or(s.count, |n| s.count.max(n.count())),
                // Native buckets alone: their exemplars (spread over the
                // latencies), not the one `+Inf` bucket's.
                exemplars: match &native {
                    Some(n) if s.bounds.is_empty() => n.exemplars.clone(),
                    _ => s.buckets.iter().filter_map(|(_, e)| *e).collect(),
                },
                native: native.as_ref().map(crate::snapshot::NativePoint::of),
            });
        })
    }

    fn encode(&self, out: &mut String, format: Format) {
        header(out, format, &self.name, "histogram", self.unit, self.help);
        let mut le_texts: Vec<String> = Vec::new();
        self.family.for_each(|values, h| {
            let s = h.snapshot();
            if le_texts.is_empty() {
                le_texts = s
                    .bounds
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .map(|b| {
                        let mut t = String::new();
                        float(b, &mut t);
                        t
                    })
                    .collect();
            }
            for ((count, e), le) in s.buckets.iter().zip(&le_texts) {
                out.push_str(&self.name);
                out.push_str("_bucket");
                labels(out, &self.label_names, values, Some(("le", le)));
                let _ = write!(out, " {count}");
                exemplar(out, *e, format);
                out.push('\n');
            }
            out.push_str(&self.name);
            out.push_str("_sum");
            labels(out, &self.label_names, values, None);
            out.push(' ');
            float(s.sum, out);
            out.push('\n');
            out.push_str(&self.name);
            out.push_str("_count");
            labels(out, &self.label_names, values, None);
            let _ = writeln!(out, " {}", s.count);
        });
    }

    fn overflow(&self) -> (&str, u64) {
        (&self.name, self.family.overflowed())
    }
}

impl Encode for Metric<Counter> {
    fn protobuf(&self, out: &mut Vec<u8>) {
        Metric::<Counter>::protobuf(self, out);
    }

    fn snapshot(&self) -> crate::snapshot::InstrumentSnapshot {
        use crate::snapshot::{CounterPoint, Data};
        self.snapshot_of(Data::Counter(Vec::new()), |data, attributes, c| {
            if let Data::Counter(points) = data {
                let (value, exemplar) = c.get();
                points.push(CounterPoint {
                    attributes,
                    value: value as f64,
                    exemplar,
                });
            }
        })
    }

    fn encode(&self, out: &mut String, format: Format) {
        let total = format!("{}_total", self.name);
        let family_name = match format {
            Format::OpenMetrics => &self.name,
            Format::Prometheus | Format::Protobuf => &total,
        };
        header(out, format, family_name, "counter", self.unit, self.help);
        self.family.for_each(|values, c| {
            let (v, e) = c.get();
            out.push_str(&total);
            labels(out, &self.label_names, values, None);
            let _ = write!(out, " {v}");
            exemplar(out, e, format);
            out.push('\n');
        });
    }

    fn overflow(&self) -> (&str, u64) {
        (&self.name, self.family.overflowed())
    }
}

impl Encode for Metric<Gauge> {
    fn protobuf(&self, out: &mut Vec<u8>) {
        Metric::<Gauge>::protobuf(self, out);
    }

    fn snapshot(&self) -> crate::snapshot::InstrumentSnapshot {
        use crate::snapshot::{Data, GaugePoint};
        self.snapshot_of(Data::UpDown(Vec::new()), |data, attributes, g| {
            if let Data::UpDown(points) = data {
                points.push(GaugePoint {
                    attributes,
                    value: g.get() as f64,
                });
            }
        })
    }

    fn encode(&self, out: &mut String, format: Format) {
        header(out, format, &self.name, "gauge", self.unit, self.help);
        self.family.for_each(|values, g| {
            out.push_str(&self.name);
            labels(out, &self.label_names, values, None);
            let _ = writeln!(out, " {}", g.get());
        });
    }

    fn overflow(&self) -> (&str, u64) {
        (&self.name, self.family.overflowed())
    }
}
