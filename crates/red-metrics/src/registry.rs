//! The registry and its two text expositions.

use std::fmt::Write as _;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::UNIX_EPOCH;

use crate::exemplar::Exemplar;
use crate::family::{DEFAULT_MAX_SERIES, Family};
use crate::metrics::{Counter, Gauge, Histogram};

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// OpenMetrics 1.0 text, with exemplars.
    OpenMetrics,
    /// Prometheus text 0.0.4, without exemplars.
    Prometheus,
}

/// The `Content-Type` of OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of Prometheus text 0.0.4.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Format {
    /// OpenMetrics when the scraper's `Accept` names
    /// `application/openmetrics-text` (version 1.0.0 or unversioned),
    /// Prometheus text otherwise.
    pub fn negotiate(accept: Option<&http::HeaderValue>) -> Self {
        let Some(accept) = accept.and_then(|a| a.to_str().ok()) else {
            return Self::Prometheus;
        };
        let openmetrics = accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            parts.next() == Some("application/openmetrics-text")
                && parts.all(|p| {
                    let p = p.replace(' ', "");
                    !p.starts_with("version=") || p == "version=1.0.0"
                })
        });
        if openmetrics {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }
}

/// A registered instrument: its name, help and unit, and its series.
#[derive(Debug)]
pub struct Metric<M> {
    /// Prometheus name without a `_total` suffix.
    name: String,
    /// The semantic-convention name and unit, as registered.
    otel_name: String,
    otel_unit: String,
    unit: Option<&'static str>,
    help: &'static str,
    /// The family's label names as exposed (`http_request_method`).
    label_names: Vec<String>,
    family: Family<M>,
}

impl<M> Metric<M> {
    /// The series for `values`, one per label in registration order.
    pub fn with<R>(&self, values: &[&str], f: impl FnOnce(&M) -> R) -> R {
        self.family.with(values, f)
    }

    /// The series, bounded by the cap.
    pub fn family(&self) -> &Family<M> {
        &self.family
    }

    /// The name as exposed (`http_server_request_duration_seconds`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

trait Encode: Send + Sync + std::fmt::Debug {
    fn encode(&self, out: &mut String, format: Format);
    fn overflow(&self) -> (&str, u64);
    fn snapshot(&self) -> crate::snapshot::InstrumentSnapshot;
}

impl<M> Metric<M> {
    /// The instrument's snapshot: each series (with its attributes) pushed
    /// into `data` by `push`.
    fn snapshot_of(
        &self,
        mut data: crate::snapshot::Data,
        push: impl Fn(&mut crate::snapshot::Data, crate::snapshot::Attributes, &M),
    ) -> crate::snapshot::InstrumentSnapshot {
        self.family.for_each(|values, m| {
            push(
                &mut data,
                crate::snapshot::attributes(self.family.labels, values),
                m,
            );
        });
        crate::snapshot::InstrumentSnapshot {
            name: self.otel_name.clone(),
            unit: self.otel_unit.clone(),
            description: self.help.to_owned(),
            data,
            asynchronous: false,
        }
    }
}

/// A value read at scrape time, with no labels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Collected {
    name: &'static str,
    help: &'static str,
    counter: bool,
    value: f64,
}

impl Collected {
    /// A gauge; `name` in Prometheus form.
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Self {
        Self {
            name,
            help,
            counter: false,
            value,
        }
    }

    /// A counter; `name` in Prometheus form without `_total`.
    pub fn counter(name: &'static str, help: &'static str, value: f64) -> Self {
        Self {
            name,
            help,
            counter: true,
            value,
        }
    }
}

/// Metrics read at scrape time (process and runtime saturation).
pub trait Collector: Send + Sync + std::fmt::Debug {
    /// Pushes the current values.
    fn collect(&self, out: &mut Vec<Collected>);
}

/// Values read by closures at scrape time — counters kept elsewhere (log
/// lines dropped, baggage members denied, exports failed) shown in the
/// registry without a copy.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use looptel_red_metrics::{FnCollector, Format, Registry};
///
/// let dropped = Arc::new(AtomicU64::new(3));
/// let registry = Registry::new();
/// let d = dropped.clone();
/// registry.register_collector(Arc::new(FnCollector::new().counter(
///     "looptel_logs_dropped",
///     "Log lines dropped because the output queue was full.",
///     move || d.load(Ordering::Relaxed) as f64,
/// )));
/// assert!(registry.encode(Format::Prometheus).contains("looptel_logs_dropped_total 3"));
/// ```
#[derive(Default)]
pub struct FnCollector {
    items: Vec<(Collected, Box<dyn Fn() -> f64 + Send + Sync>)>,
}

impl std::fmt::Debug for FnCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.items.iter().map(|(c, _)| c.name))
            .finish()
    }
}

impl FnCollector {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter `name` (Prometheus form, without `_total`) read from `f`.
    #[must_use]
    pub fn counter(
        mut self,
        name: &'static str,
        help: &'static str,
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Self {
        self.items
            .push((Collected::counter(name, help, 0.0), Box::new(f)));
        self
    }

    /// A gauge `name` read from `f`.
    #[must_use]
    pub fn gauge(
        mut self,
        name: &'static str,
        help: &'static str,
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Self {
        self.items
            .push((Collected::gauge(name, help, 0.0), Box::new(f)));
        self
    }
}

impl Collector for FnCollector {
    fn collect(&self, out: &mut Vec<Collected>) {
        out.extend(
            self.items
                .iter()
                .map(|(c, f)| Collected { value: f(), ..*c }),
        );
    }
}

/// Where instruments live, and what `/metrics` encodes.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<RwLock<Inner>>,
    max_series: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    metrics: Vec<Arc<dyn Encode>>,
    collectors: Vec<Arc<dyn Collector>>,
    #[cfg(feature = "prometheus-client")]
    foreign: Vec<crate::foreign::Foreign>,
}

#[cfg(feature = "prometheus-client")]
impl Inner {
    /// The family names of looptel's own metrics (OpenMetrics form), with
    /// the values the collectors give now.
    fn own_families(&self, collected: &[Collected]) -> Vec<String> {
        let mut names: Vec<String> = self
            .metrics
            .iter()
            .map(|m| m.overflow().0.to_owned())
            .collect();
        if !self.metrics.is_empty() {
            names.push(OVERFLOW_COUNTER.to_owned());
        }
        names.extend(collected.iter().map(|c| c.name.to_owned()));
        names
    }
}

use looptel_catalogue::metrics::{DURATION_BUCKETS, Instrument};
use looptel_catalogue::prometheus::{label_name, metric_name as prometheus_name};

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

fn float(v: f64, out: &mut String) {
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

fn header(
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
        Format::Prometheus => {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        }
    }
}

impl Encode for Metric<Histogram> {
    fn snapshot(&self) -> crate::snapshot::InstrumentSnapshot {
        use crate::snapshot::{Data, HistogramPoint};
        self.snapshot_of(Data::Histogram(Vec::new()), |data, attributes, h| {
            let Data::Histogram(points) = data else {
                return;
            };
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
                count: s.count,
                exemplars: s.buckets.iter().filter_map(|(_, e)| *e).collect(),
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
            Format::Prometheus => &total,
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

/// The counter of records sent to overflow series.
pub use looptel_catalogue::metrics::OVERFLOW_COUNTER;

impl Registry {
    /// The exposition `accept` asks for, with its `Content-Type`.
    pub fn render(&self, accept: Option<&http::HeaderValue>) -> http::Response<String> {
        let format = Format::negotiate(accept);
        let mut res = http::Response::new(self.encode(format));
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(format.content_type()),
        );
        res
    }

    /// An empty registry; each metric holds at most [`DEFAULT_MAX_SERIES`]
    /// series.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same registry, whose metrics created from now on hold at most
    /// `max_series` series each (beyond, records go to the overflow series).
    #[must_use]
    pub fn with_max_series(mut self, max_series: usize) -> Self {
        self.max_series = max_series;
        self
    }

    /// Registers a metric exposed as `name` (Prometheus form) whose series
    /// are made by `make`.
    #[allow(clippy::too_many_arguments)]
    fn add<M>(
        &self,
        (otel_name, otel_unit): (&str, &str),
        name: String,
        unit: Option<&'static str>,
        help: &'static str,
        labels: &'static [&'static str],
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> Arc<Metric<M>>
    where
        Metric<M>: Encode + 'static,
    {
        let metric = Arc::new(Metric {
            name,
            otel_name: otel_name.to_owned(),
            otel_unit: otel_unit.to_owned(),
            unit,
            help,
            label_names: labels.iter().map(|l| label_name(l)).collect(),
            family: Family::new(labels, self.max_series, make),
        });
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .metrics
            .push(metric.clone());
        metric
    }

    /// A histogram named by the semantic conventions (`http.server.request.duration`,
    /// unit `s`), with these label names and buckets, capped at
    /// [`DEFAULT_MAX_SERIES`] series.
    pub fn histogram(
        &self,
        name: &str,
        unit: &str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Arc<Metric<Histogram>> {
        let otel = (name, unit);
        let (name, unit) = prometheus_name(name, unit);
        self.add(otel, name, unit, help, labels, move || {
            Histogram::new(buckets)
        })
    }

    /// A histogram of the catalogue, with the duration buckets.
    pub(crate) fn instrument_histogram(&self, i: &Instrument) -> Arc<Metric<Histogram>> {
        self.histogram(i.name, i.unit, i.description, i.labels, DURATION_BUCKETS)
    }

    /// A counter of the catalogue.
    pub(crate) fn instrument_counter(&self, i: &Instrument) -> Arc<Metric<Counter>> {
        self.counter(i.name, i.unit, i.description, i.labels)
    }

    /// A gauge of the catalogue.
    pub(crate) fn instrument_gauge(&self, i: &Instrument) -> Arc<Metric<Gauge>> {
        self.gauge(i.name, i.unit, i.description, i.labels)
    }

    /// A counter (`orders.created`, unit `{order}`); exposed with `_total`.
    pub fn counter(
        &self,
        name: &str,
        unit: &str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Arc<Metric<Counter>> {
        let otel = (name, unit);
        let (name, unit) = prometheus_name(name.trim_end_matches(".total"), unit);
        let name = name.trim_end_matches("_total").to_owned();
        self.add(otel, name, unit, help, labels, Counter::default)
    }

    /// An up-down gauge (`http.server.active_requests`).
    pub fn gauge(
        &self,
        name: &str,
        unit: &str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Arc<Metric<Gauge>> {
        let otel = (name, unit);
        let (name, unit) = prometheus_name(name, unit);
        self.add(otel, name, unit, help, labels, Gauge::default)
    }

    /// Serves the families of a prometheus-client registry on this
    /// registry's `/metrics`, after looptel's, in both formats (OpenMetrics
    /// with its exemplars; Prometheus text 0.0.4 rewritten as that format
    /// wants), with one `# EOF`.
    ///
    /// Attach once looptel's metrics and collectors are registered (as at
    /// the end of start-up): a family name both define is then an error,
    /// never served twice. A looptel metric registered later under a name
    /// an attached registry uses wins: the attached family is left out.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use looptel_red_metrics::{Format, Registry};
    /// use prometheus_client::metrics::counter::Counter;
    ///
    /// let mut theirs = prometheus_client::registry::Registry::default();
    /// let jobs: Counter = Counter::default();
    /// theirs.register("jobs", "Jobs run.", jobs.clone());
    /// jobs.inc();
    ///
    /// let registry = Registry::new();
    /// registry.attach(Arc::new(theirs))?;
    /// assert!(registry.encode(Format::Prometheus).contains("jobs_total 1"));
    /// # Ok::<(), looptel_red_metrics::DuplicateFamily>(())
    /// ```
    #[cfg(feature = "prometheus-client")]
    pub fn attach(
        &self,
        registry: Arc<prometheus_client::registry::Registry>,
    ) -> Result<(), crate::DuplicateFamily> {
        let foreign = crate::foreign::Foreign::new(registry);
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let mut collected = Vec::new();
        for c in &inner.collectors {
            c.collect(&mut collected);
        }
        let mut taken = inner.own_families(&collected);
        for f in &inner.foreign {
            taken.extend(f.families.iter().cloned());
        }
        if let Some(name) = foreign.families.iter().find(|n| taken.contains(n)) {
            return Err(crate::DuplicateFamily { name: name.clone() });
        }
        inner.foreign.push(foreign);
        Ok(())
    }

    /// Adds values read at each scrape.
    pub fn register_collector(&self, collector: Arc<dyn Collector>) {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .collectors
            .push(collector);
    }

    /// Every instrument's values now, and the collectors' (each as a
    /// counter or a gauge without attributes), for pushing them elsewhere.
    pub fn snapshot(&self) -> crate::Snapshot {
        use crate::snapshot::{CounterPoint, Data, GaugePoint, InstrumentSnapshot};
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut instruments: Vec<InstrumentSnapshot> =
            inner.metrics.iter().map(|m| m.snapshot()).collect();
        let mut collected = Vec::new();
        for c in &inner.collectors {
            c.collect(&mut collected);
        }
        instruments.extend(collected.into_iter().map(|c| InstrumentSnapshot {
            name: c.name.to_owned(),
            unit: String::new(),
            description: c.help.to_owned(),
            data: match c.counter {
                true => Data::Counter(vec![CounterPoint {
                    attributes: Vec::new(),
                    value: c.value,
                    exemplar: None,
                }]),
                false => Data::Gauge(vec![GaugePoint {
                    attributes: Vec::new(),
                    value: c.value,
                }]),
            },
            asynchronous: true,
        }));
        crate::Snapshot { instruments }
    }

    /// The whole registry in `format`.
    pub fn encode(&self, format: Format) -> String {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(4096);
        for m in &inner.metrics {
            m.encode(&mut out, format);
        }
        if !inner.metrics.is_empty() {
            let name = match format {
                Format::OpenMetrics => OVERFLOW_COUNTER.to_owned(),
                Format::Prometheus => format!("{OVERFLOW_COUNTER}_total"),
            };
            header(
                &mut out,
                format,
                &name,
                "counter",
                None,
                "Records sent to a metric's overflow series because it reached its series cap.",
            );
            for m in &inner.metrics {
                let (metric, n) = m.overflow();
                let _ = writeln!(out, "{OVERFLOW_COUNTER}_total{{metric=\"{metric}\"}} {n}");
            }
        }
        let mut gauges = Vec::new();
        for c in &inner.collectors {
            c.collect(&mut gauges);
        }
        #[cfg(feature = "prometheus-client")]
        if !inner.foreign.is_empty() {
            let mut taken = inner.own_families(&gauges);
            // Collectors' values go last: the attached families before them.
            for f in &inner.foreign {
                f.encode(&mut out, format, &taken);
                taken.extend(f.families.iter().cloned());
            }
        }
        for c in gauges {
            let total = format!("{}_total", c.name);
            let (family, kind, sample) = match (c.counter, format) {
                (false, _) => (c.name, "gauge", c.name),
                (true, Format::OpenMetrics) => (c.name, "counter", total.as_str()),
                (true, Format::Prometheus) => (total.as_str(), "counter", total.as_str()),
            };
            header(&mut out, format, family, kind, None, c.help);
            out.push_str(sample);
            out.push(' ');
            float(c.value, &mut out);
            out.push('\n');
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}
