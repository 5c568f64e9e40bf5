//! Prometheus' protobuf exposition (`io.prometheus.client.MetricFamily`,
//! length-delimited), the one format that carries native histograms.
//!
//! The messages are declared here with prost's derive, field for field as
//! Prometheus' `metrics.proto` numbers them (only those looptel sends):
//! prost does the encoding, and the crate needs neither a build script nor
//! a protobuf compiler at its users' build (generating them with protox
//! would put a protobuf compiler in every user's build for nine messages).

use std::time::UNIX_EPOCH;

use prost::Message as _;

use crate::exemplar::Exemplar;
use crate::metric::Metric;
use crate::metrics::{Counter, Gauge, Histogram};
use crate::native::NativeSnapshot;
use looptel_catalogue::prometheus::label_name;

/// The `Content-Type` of Prometheus' protobuf exposition.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LabelPair {
    #[prost(string, optional, tag = "1")]
    pub(crate) name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub(crate) value: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 4,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GaugeValue {
    #[prost(double, optional, tag = "1")]
    pub(crate) value: Option<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CounterValue {
    #[prost(double, optional, tag = "1")]
    pub(crate) value: Option<f64>,
    #[prost(message, optional, tag = "2")]
    pub(crate) exemplar: Option<ExemplarValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HistogramValue {
    #[prost(uint64, optional, tag = "1")]
    pub(crate) sample_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub(crate) sample_sum: Option<f64>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) bucket: Vec<Bucket>,
    #[prost(sint32, optional, tag = "5")]
    pub(crate) schema: Option<i32>,
    #[prost(double, optional, tag = "6")]
    pub(crate) zero_threshold: Option<f64>,
    #[prost(uint64, optional, tag = "7")]
    pub(crate) zero_count: Option<u64>,
    #[prost(message, repeated, tag = "9")]
    pub(crate) negative_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "10")]
    pub(crate) negative_delta: Vec<i64>,
    #[prost(message, repeated, tag = "12")]
    pub(crate) positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "13")]
    pub(crate) positive_delta: Vec<i64>,
    #[prost(message, repeated, tag = "16")]
    pub(crate) exemplars: Vec<ExemplarValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Bucket {
    #[prost(uint64, optional, tag = "1")]
    pub(crate) cumulative_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub(crate) upper_bound: Option<f64>,
    #[prost(message, optional, tag = "3")]
    pub(crate) exemplar: Option<ExemplarValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BucketSpan {
    #[prost(sint32, optional, tag = "1")]
    pub(crate) offset: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    pub(crate) length: Option<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExemplarValue {
    #[prost(message, repeated, tag = "1")]
    pub(crate) label: Vec<LabelPair>,
    #[prost(double, optional, tag = "2")]
    pub(crate) value: Option<f64>,
    #[prost(message, optional, tag = "3")]
    pub(crate) timestamp: Option<Timestamp>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Timestamp {
    #[prost(int64, tag = "1")]
    pub(crate) seconds: i64,
    #[prost(int32, tag = "2")]
    pub(crate) nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MetricValue {
    #[prost(message, repeated, tag = "1")]
    pub(crate) label: Vec<LabelPair>,
    #[prost(message, optional, tag = "2")]
    pub(crate) gauge: Option<GaugeValue>,
    #[prost(message, optional, tag = "3")]
    pub(crate) counter: Option<CounterValue>,
    #[prost(message, optional, tag = "7")]
    pub(crate) histogram: Option<HistogramValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MetricFamily {
    #[prost(string, optional, tag = "1")]
    pub(crate) name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub(crate) help: Option<String>,
    #[prost(enumeration = "MetricType", optional, tag = "3")]
    pub(crate) r#type: Option<i32>,
    #[prost(message, repeated, tag = "4")]
    pub(crate) metric: Vec<MetricValue>,
    #[prost(string, optional, tag = "5")]
    pub(crate) unit: Option<String>,
}

impl MetricFamily {
    pub(crate) fn new(name: &str, help: &str, kind: MetricType, unit: Option<&str>) -> Self {
        Self {
            name: Some(name.to_owned()),
            help: Some(help.to_owned()),
            r#type: Some(kind as i32),
            metric: Vec::new(),
            unit: unit.map(str::to_owned),
        }
    }

    /// Appends the family, length-delimited (an empty family is left out,
    /// as Prometheus' clients do).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        if self.metric.is_empty() {
            return;
        }
        // Writing to a Vec cannot run out of room.
        let _ = self.encode_length_delimited(out);
    }
}

fn pair(name: &str, value: &str) -> LabelPair {
    LabelPair {
        name: Some(name.to_owned()),
        value: Some(value.to_owned()),
    }
}

/// The series' labels (empty values left out), or the overflow label.
pub(crate) fn labels(names: &[String], values: Option<&[Box<str>]>) -> Vec<LabelPair> {
    match values {
        Some(values) => names
            .iter()
            .zip(values)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| pair(k, v))
            .collect(),
        None => vec![pair(&label_name(crate::OVERFLOW_LABEL), "true")],
    }
}

pub(crate) fn gauge(label: Vec<LabelPair>, value: f64) -> MetricValue {
    MetricValue {
        label,
        gauge: Some(GaugeValue { value: Some(value) }),
        ..MetricValue::default()
    }
}

pub(crate) fn counter(label: Vec<LabelPair>, value: f64, e: Option<Exemplar>) -> MetricValue {
    MetricValue {
        label,
        counter: Some(CounterValue {
            value: Some(value),
            exemplar: e.map(exemplar),
        }),
        ..MetricValue::default()
    }
}

fn exemplar(e: Exemplar) -> ExemplarValue {
    let ts = e.timestamp.duration_since(UNIX_EPOCH).unwrap_or_default();
    ExemplarValue {
        label: vec![
            pair("trace_id", &e.trace_id.to_string()),
            pair("span_id", &e.span_id.to_string()),
        ],
        value: Some(e.value),
        timestamp: Some(Timestamp {
            seconds: i64::try_from(ts.as_secs()).unwrap_or(i64::MAX),
            nanos: ts.subsec_nanos() as i32,
        }),
    }
}

/// Native runs as spans (gap to the previous run's end) and deltas (each
/// count less the one before).
fn spans(runs: &[(i32, Vec<u64>)]) -> (Vec<BucketSpan>, Vec<i64>) {
    let mut spans = Vec::with_capacity(runs.len());
    let mut deltas = Vec::new();
    let mut next = 0;
    let mut previous = 0_i64;
    for (i, (first, counts)) in runs.iter().enumerate() {
        spans.push(BucketSpan {
            offset: Some(if i == 0 { *first } else { first - next }),
            length: Some(counts.len() as u32),
        });
        next = first + counts.len() as i32;
        for c in counts {
            let c = i64::try_from(*c).unwrap_or(i64::MAX);
            deltas.push(c - previous);
            previous = c;
        }
    }
    (spans, deltas)
}

fn native(h: &mut HistogramValue, n: NativeSnapshot) {
    h.schema = Some(i32::from(n.schema));
    h.zero_threshold = Some(n.zero_threshold);
    h.zero_count = Some(n.zero_count);
    (h.positive_span, h.positive_delta) = spans(&n.positive);
    (h.negative_span, h.negative_delta) = spans(&n.negative);
    if h.positive_span.is_empty() && h.negative_span.is_empty() {
        // A native histogram without observations: a no-op span tells it
        // from a classic one whatever the zero threshold.
        h.positive_span.push(BucketSpan {
            offset: Some(0),
            length: Some(0),
        });
    }
    h.exemplars = n.exemplars.into_iter().map(exemplar).collect();
}

impl Metric<Histogram> {
    pub(crate) fn protobuf(&self, out: &mut Vec<u8>) {
        let mut family = MetricFamily::new(&self.name, self.help, MetricType::Histogram, self.unit);
        self.family.for_each(|values, h| {
            let native_snapshot = h.native();
            let s = h.snapshot();
            let classic = s.bounds.len();
            let mut value = HistogramValue {
                sample_count: Some(s.count),
                sample_sum: Some(s.sum),
                bucket: s
                    .buckets
                    .iter()
                    .take(classic)
                    .zip(s.bounds)
                    .map(|((count, e), bound)| Bucket {
                        cumulative_count: Some(*count),
                        upper_bound: Some(*bound),
                        exemplar: e.map(exemplar),
                    })
                    .collect(),
                ..HistogramValue::default()
            };
            if let Some(n) = native_snapshot {
                // The count is at least what the buckets hold, read first.
                value.sample_count = Some(s.count.max(n.count()));
                native(&mut value, n);
            }
            family.metric.push(MetricValue {
                label: labels(&self.label_names, values),
                histogram: Some(value),
                ..MetricValue::default()
            });
        });
        family.write(out);
    }
}

impl Metric<Counter> {
    pub(crate) fn protobuf(&self, out: &mut Vec<u8>) {
        let mut family = MetricFamily::new(
            &format!("{}_total", self.name),
            self.help,
            MetricType::Counter,
            self.unit,
        );
        self.family.for_each(|values, c| {
            let (v, e) = c.get();
            family
                .metric
                .push(counter(labels(&self.label_names, values), v as f64, e));
        });
        family.write(out);
    }
}

impl Metric<Gauge> {
    pub(crate) fn protobuf(&self, out: &mut Vec<u8>) {
        let mut family = MetricFamily::new(&self.name, self.help, MetricType::Gauge, self.unit);
        self.family.for_each(|values, g| {
            family
                .metric
                .push(gauge(labels(&self.label_names, values), g.get() as f64));
        });
        family.write(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Histograms, NativeHistograms, Registry};
    use looptel_core::TraceIds;
    use opentelemetry::trace::{SpanId, TraceId};

    fn families(bytes: &[u8]) -> Vec<MetricFamily> {
        let mut buf = bytes;
        let mut out = Vec::new();
        while !buf.is_empty() {
            out.push(MetricFamily::decode_length_delimited(&mut buf).expect("a family"));
        }
        out
    }

    /// The counts per key the spans and deltas say.
    fn buckets(spans: &[BucketSpan], deltas: &[i64]) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        let (mut key, mut count, mut d) = (0, 0, deltas.iter());
        for s in spans {
            key += s.offset.unwrap_or(0);
            for _ in 0..s.length.unwrap_or(0) {
                count += d.next().expect("a delta per bucket");
                out.push((key, count));
                key += 1;
            }
        }
        out
    }

    #[test]
    fn a_native_histogram_decodes_to_its_observations_with_exemplars() {
        let registry =
            Registry::new().with_histograms(Histograms::Native(NativeHistograms::default()));
        let h = registry.histogram("job.duration", "s", "Jobs.", &["queue"], &[0.1, 1.0]);
        let ids = TraceIds::new(TraceId::from(5_u128), SpanId::from(6_u64), true);
        for v in [0.001, 0.001, 0.3, 0.35, 2.0, 700.0] {
            h.with(&["mail"], |h| h.observe(v, ids));
        }
        h.with(&["idle"], |_| ());
        let all = families(&registry.encode_protobuf());
        let family = all
            .iter()
            .find(|f| f.name.as_deref() == Some("job_duration_seconds"))
            .expect("the family");
        assert_eq!(family.r#type, Some(MetricType::Histogram as i32));
        assert_eq!(family.unit.as_deref(), Some("seconds"));
        let mail = family.metric[0].histogram.as_ref().expect("histogram");
        assert_eq!(family.metric[0].label, vec![pair("queue", "mail")]);
        assert_eq!(mail.sample_count, Some(6));
        assert!(mail.bucket.is_empty(), "no classic buckets");
        assert_eq!(mail.schema, Some(3));
        let got = buckets(&mail.positive_span, &mail.positive_delta);
        let mut want: Vec<(i32, i64)> = Vec::new();
        for v in [0.001, 0.001, 0.3, 0.35, 2.0, 700.0] {
            let k = crate::native::key(v, 3);
            match want.last_mut() {
                Some((last, n)) if *last == k => *n += 1,
                _ => want.push((k, 1)),
            }
        }
        assert_eq!(
            got.iter()
                .filter(|(_, n)| *n > 0)
                .cloned()
                .collect::<Vec<_>>(),
            want
        );
        assert!(!mail.exemplars.is_empty());
        for e in &mail.exemplars {
            assert!(e.timestamp.is_some(), "native exemplars carry a timestamp");
            assert_eq!(
                e.label[0],
                pair("trace_id", &TraceId::from(5_u128).to_string())
            );
        }
        // A series without observations is still a native histogram.
        let idle = family.metric[1].histogram.as_ref().expect("histogram");
        assert_eq!(
            idle.positive_span,
            vec![BucketSpan {
                offset: Some(0),
                length: Some(0)
            }]
        );
    }

    #[test]
    fn classic_and_native_send_both_and_counters_keep_their_total() {
        let registry = Registry::new()
            .with_histograms(Histograms::ClassicAndNative(NativeHistograms::default()));
        let h = registry.histogram("job.duration", "s", "Jobs.", &[], &[0.1, 1.0]);
        h.with(&[], |h| h.observe(0.5, None));
        registry
            .counter("jobs", "{job}", "Jobs run.", &[])
            .with(&[], |c| c.add(2, None));
        let all = families(&registry.encode_protobuf());
        let histogram = all[0].metric[0].histogram.as_ref().expect("histogram");
        let classic: Vec<(Option<u64>, Option<f64>)> = histogram
            .bucket
            .iter()
            .map(|b| (b.cumulative_count, b.upper_bound))
            .collect();
        assert_eq!(classic, vec![(Some(0), Some(0.1)), (Some(1), Some(1.0))]);
        assert_eq!(histogram.positive_delta, vec![1]);
        let jobs = all
            .iter()
            .find(|f| f.name.as_deref() == Some("jobs_total"))
            .expect("the counter");
        assert_eq!(
            jobs.metric[0].counter.as_ref().and_then(|c| c.value),
            Some(2.0)
        );
    }
}
