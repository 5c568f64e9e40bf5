//! A copy of the registry's values at one instant, for pushing them
//! elsewhere (OTLP): instruments by their semantic-convention names, label
//! values as attributes, histogram buckets with their exemplars. Taking one
//! reads the same atomics a scrape reads; recording never waits.

use crate::exemplar::Exemplar;

/// Every instrument of a [`Registry`](crate::Registry), and the values its
/// collectors give, at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// One entry per instrument, in registration order.
    pub instruments: Vec<InstrumentSnapshot>,
}

/// One instrument's series.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct InstrumentSnapshot {
    /// The semantic-convention name (`http.server.request.duration`); for
    /// collector values, the exposed name (`process_cpu_seconds`).
    pub name: String,
    /// The UCUM unit (`s`, `{request}`; empty when none).
    pub unit: String,
    /// The help text.
    pub description: String,
    /// The series.
    pub data: Data,
    /// Read from a callback when the snapshot is taken (a collector's
    /// value: CPU seconds, drop counts) rather than recorded as it happens:
    /// OpenTelemetry's asynchronous instruments, which the `lowmemory`
    /// temporality preference keeps cumulative.
    pub asynchronous: bool,
}

/// The series of one instrument, by kind.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Data {
    /// Cumulative histograms.
    Histogram(Vec<HistogramPoint>),
    /// Monotonic cumulative sums.
    Counter(Vec<CounterPoint>),
    /// An up-down counter's current value (`http.server.active_requests`).
    UpDown(Vec<GaugePoint>),
    /// A value read at the instant (a collector's gauge: memory, CPU).
    Gauge(Vec<GaugePoint>),
}

/// The attributes of a series: the semantic-convention label names with
/// their values; the overflow series has `otel.metric.overflow = true`
/// alone.
pub type Attributes = Vec<(&'static str, String)>;

/// One histogram series.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HistogramPoint {
    /// The series' attributes.
    pub attributes: Attributes,
    /// The upper bounds (the last bucket is `+Inf`, implied).
    pub bounds: &'static [f64],
    /// Per bucket, not cumulative: one more than `bounds`.
    pub bucket_counts: Vec<u64>,
    /// The sum of the observations.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
    /// The buckets' exemplars (sampled observations), oldest bucket first.
    pub exemplars: Vec<Exemplar>,
    /// The native buckets, when the registry keeps them
    /// ([`Histograms`](crate::Histograms)); `bounds` is then empty unless
    /// classic buckets are kept too.
    pub native: Option<NativePoint>,
}

/// A histogram series' native buckets: bucket `k` at `schema` holds the
/// values in `(2^((k−1)·2^−schema), 2^(k·2^−schema)]` — OpenTelemetry's
/// exponential bucket `k − 1` at scale `schema`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NativePoint {
    /// The resolution (OpenTelemetry's scale).
    pub schema: i8,
    /// The zero bucket's width.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// The positive buckets: the first one's key and the counts from
    /// there, one per bucket (zeros included).
    pub positive: (i32, Vec<u64>),
    /// The negative buckets (by absolute value), as `positive`.
    pub negative: (i32, Vec<u64>),
}

impl NativePoint {
    pub(crate) fn of(n: &crate::native::NativeSnapshot) -> Self {
        fn dense(runs: &[(i32, Vec<u64>)]) -> (i32, Vec<u64>) {
            let Some((first, _)) = runs.first() else {
                return (0, Vec::new());
            };
            let mut counts = Vec::new();
            for (k, run) in runs {
                counts.resize((k - first) as usize, 0);
                counts.extend_from_slice(run);
            }
            (*first, counts)
        }
        Self {
            schema: n.schema,
            zero_threshold: n.zero_threshold,
            zero_count: n.zero_count,
            positive: dense(&n.positive),
            negative: dense(&n.negative),
        }
    }
}

/// One counter series.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CounterPoint {
    /// The series' attributes.
    pub attributes: Attributes,
    /// The count so far.
    pub value: f64,
    /// The last sampled increment.
    pub exemplar: Option<Exemplar>,
}

/// One gauge series.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct GaugePoint {
    /// The series' attributes.
    pub attributes: Attributes,
    /// The value now.
    pub value: f64,
}

/// The attribute the overflow series carries (OpenTelemetry's name).
pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";

pub(crate) fn attributes(
    labels: &'static [&'static str],
    values: Option<&[Box<str>]>,
) -> Attributes {
    match values {
        Some(values) => labels
            .iter()
            .zip(values)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, v.to_string()))
            .collect(),
        None => vec![(OVERFLOW_ATTRIBUTE, "true".to_owned())],
    }
}
