//! The registry: where instruments and collectors are registered, and
//! what `/metrics` encodes and a push snapshots.

use std::fmt::Write as _;
use std::sync::{Arc, PoisonError, RwLock};

use crate::collectors::Collector;
use crate::exposition::{Encode, Format, TARGET_INFO_HELP, float, header};
use crate::family::{DEFAULT_MAX_SERIES, Family};
use crate::metric::Metric;
use crate::metrics::{Counter, Gauge, Histogram};
use crate::native::Histograms;
use looptel_catalogue::metrics::{DURATION_BUCKETS, Instrument};
use looptel_catalogue::prometheus::{label_name, metric_name as prometheus_name};

/// Where instruments live, and what `/metrics` encodes.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<RwLock<Inner>>,
    max_series: usize,
    histograms: Histograms,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            max_series: DEFAULT_MAX_SERIES,
            histograms: Histograms::Classic,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// `target_info`'s labels, exposed form, once set.
    target_info: Vec<(String, String)>,
    metrics: Vec<Arc<dyn Encode>>,
    collectors: Vec<Arc<dyn Collector>>,
    #[cfg(feature = "prometheus-client")]
    foreign: Vec<crate::foreign::Foreign>,
}

#[cfg(feature = "prometheus-client")]
impl Inner {
    /// The family names of looptel's own metrics (OpenMetrics form), with
    /// the values the collectors give now.
    fn own_families(&self, collected: &[crate::collectors::Collected]) -> Vec<String> {
        let mut names: Vec<String> = self
            .metrics
            .iter()
            .map(|m| m.overflow().0.to_owned())
            .collect();
        if !self.metrics.is_empty() {
            names.push(OVERFLOW_COUNTER.to_owned());
        }
        names.extend(collected.iter().map(|c| c.name.to_owned()));
        if !self.target_info.is_empty() {
            names.push("target".to_owned());
        }
        names
    }
}

/// The counter of records sent to overflow series.
pub use looptel_catalogue::metrics::OVERFLOW_COUNTER;

/// [`OVERFLOW_COUNTER`]'s help, in every format.
const OVERFLOW_HELP: &str =
    "Records sent to a metric's overflow series because it reached its series cap.";

impl Registry {
    /// The exposition `accept` asks for, with its `Content-Type`
    /// ([`Format::negotiate`]). Prometheus' protobuf format is offered
    /// unless a prometheus-client registry is attached (its families exist
    /// only as text).
    pub fn render(
        &self,
        accept: Option<&http::HeaderValue>,
    ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        let format = Format::negotiate_among(accept, self.serves_protobuf());
        let body = match format {
            Format::Protobuf => self.encode_protobuf(),
            text => self.encode(text).into_bytes(),
        };
        let mut res = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
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

    /// The same registry, whose histograms created from now on keep the
    /// buckets `histograms` says: classic (the default), native, or both.
    ///
    /// ```
    /// use looptel_red_metrics::{Format, Histograms, NativeHistograms, Registry};
    ///
    /// let registry = Registry::new().with_histograms(Histograms::Native(NativeHistograms::default()));
    /// let h = registry.histogram("job.duration", "s", "Jobs.", &[], &[0.1, 1.0]);
    /// h.with(&[], |h| h.observe(0.35, None));
    /// // Text scrapers see the count and sum; protobuf scrapers the buckets.
    /// assert!(registry.encode(Format::Prometheus).contains("job_duration_seconds_count 1"));
    /// ```
    #[must_use]
    pub fn with_histograms(mut self, histograms: Histograms) -> Self {
        self.histograms = histograms;
        self
    }

    /// What the registry's histograms keep.
    pub fn histograms(&self) -> Histograms {
        self.histograms
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
        let kind = self.histograms;
        self.add(otel, name, unit, help, labels, move || {
            Histogram::with(buckets, kind)
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

    /// Serves `target_info{…} 1` with these resource attributes as labels
    /// (`service.name`, `service.version`, `service.instance.id`, …, in
    /// Prometheus form: `service_version`), as OpenTelemetry's Prometheus
    /// exporters do: Prometheus and retro read a service's version and
    /// instance from it, and see a deploy or a restart as a new series.
    /// Only on `/metrics`: an OTLP push carries the resource itself. Empty
    /// values are left out; a second call replaces the first.
    ///
    /// ```
    /// use looptel_red_metrics::{Format, Registry};
    ///
    /// let registry = Registry::new();
    /// registry.target_info([("service.name", "orders"), ("service.version", "1.4.2")]);
    /// assert!(registry.encode(Format::Prometheus).contains(
    ///     "target_info{service_name=\"orders\",service_version=\"1.4.2\"} 1"
    /// ));
    /// ```
    pub fn target_info<'a>(&self, attributes: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let info = attributes
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (label_name(k), v.to_owned()))
            .collect();
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .target_info = info;
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

    /// Whether [`render`](Self::render) offers the protobuf format: no
    /// prometheus-client registry is attached.
    fn serves_protobuf(&self) -> bool {
        #[cfg(feature = "prometheus-client")]
        {
            self.inner
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .foreign
                .is_empty()
        }
        #[cfg(not(feature = "prometheus-client"))]
        true
    }

    /// The whole registry in Prometheus' protobuf format (length-delimited
    /// `MetricFamily` messages): what carries native histograms. An
    /// attached prometheus-client registry's families are not in it.
    pub fn encode_protobuf(&self) -> Vec<u8> {
        use crate::protobuf::{MetricFamily, MetricType, counter, gauge, labels};
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(4096);
        if !inner.target_info.is_empty() {
            let mut family =
                MetricFamily::new("target_info", TARGET_INFO_HELP, MetricType::Gauge, None);
            let names: Vec<String> = inner.target_info.iter().map(|(k, _)| k.clone()).collect();
            let values: Vec<Box<str>> = inner
                .target_info
                .iter()
                .map(|(_, v)| v.as_str().into())
                .collect();
            family
                .metric
                .push(gauge(labels(&names, Some(&values)), 1.0));
            family.write(&mut out);
        }
        for m in &inner.metrics {
            m.protobuf(&mut out);
        }
        if !inner.metrics.is_empty() {
            let mut family = MetricFamily::new(
                &format!("{OVERFLOW_COUNTER}_total"),
                OVERFLOW_HELP,
                MetricType::Counter,
                None,
            );
            let names = ["metric".to_owned()];
            for m in &inner.metrics {
                let (metric, n) = m.overflow();
                family.metric.push(counter(
                    labels(&names, Some(&[metric.into()])),
                    n as f64,
                    None,
                ));
            }
            family.write(&mut out);
        }
        let mut collected = Vec::new();
        for c in &inner.collectors {
            c.collect(&mut collected);
        }
        for c in collected {
            let (name, kind, metric) = if c.counter {
                (
                    format!("{}_total", c.name),
                    MetricType::Counter,
                    counter(Vec::new(), c.value, None),
                )
            } else {
                (
                    c.name.to_owned(),
                    MetricType::Gauge,
                    gauge(Vec::new(), c.value),
                )
            };
            let mut family = MetricFamily::new(&name, c.help, kind, None);
            family.metric.push(metric);
            family.write(&mut out);
        }
        out
    }

    /// The whole registry in a text format (Prometheus text for
    /// [`Format::Protobuf`]: see [`encode_protobuf`](Self::encode_protobuf)).
    pub fn encode(&self, format: Format) -> String {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(4096);
        if !inner.target_info.is_empty() {
            crate::exposition::target_info(&mut out, format, &inner.target_info);
        }
        for m in &inner.metrics {
            m.encode(&mut out, format);
        }
        if !inner.metrics.is_empty() {
            let name = match format {
                Format::OpenMetrics => OVERFLOW_COUNTER.to_owned(),
                Format::Prometheus | Format::Protobuf => format!("{OVERFLOW_COUNTER}_total"),
            };
            header(&mut out, format, &name, "counter", None, OVERFLOW_HELP);
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
                (true, Format::Prometheus | Format::Protobuf) => {
                    (total.as_str(), "counter", total.as_str())
                }
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
