//! looptel's own metrics registry pushed over OTLP
//! ([`TelemetryGuard::push_metrics`](crate::TelemetryGuard::push_metrics)).
//!
//! The OpenTelemetry SDK cannot carry these: its metric data types cannot
//! be built outside it, and an observable instrument cannot be a histogram.
//! So a thread of its own takes a [`Snapshot`] of the registry at each
//! interval — the atomics a scrape reads; recording never waits — turns it
//! into an OTLP `ExportMetricsServiceRequest` and sends it, one export at a
//! time, each bounded by the OTLP timeout. Nothing queues: a failed export
//! is counted ([`ExportStats::failed_metric_exports`]) and the next
//! snapshot carries the (cumulative) values on. At shutdown a last export
//! is sent.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use looptel_red_metrics::{Data, NativePoint, Registry, Snapshot};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
#[cfg(feature = "otlp-grpc")]
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1 as pb;
use opentelemetry_proto::tonic::resource::v1::Resource;
#[cfg(feature = "otlp-http")]
use prost::Message as _;

use crate::ExportStats;
use crate::config::{OtlpSignal, Protocol, Temporality};

/// Where and how the registry is pushed, resolved at build time.
#[derive(Clone, Debug)]
pub(crate) struct PushConfig {
    pub(crate) url: String,
    pub(crate) protocol: Protocol,
    pub(crate) signal: OtlpSignal,
    pub(crate) timeout: Duration,
    pub(crate) interval: Duration,
    pub(crate) temporality: Temporality,
    /// Histograms with native buckets sent as OTLP exponential histograms
    /// (`OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`).
    pub(crate) exponential: bool,
    pub(crate) resource: Vec<KeyValue>,
}

/// The running pusher.
#[derive(Debug)]
pub(crate) struct MetricsPush {
    stop: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
}

impl MetricsPush {
    pub(crate) fn start(
        config: PushConfig,
        registry: Registry,
        stats: ExportStats,
    ) -> Option<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let (finished, done) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("looptel-metrics-push".to_owned())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let mut state = State::new(config.temporality, config.exponential);
                let mut last = false;
                while !last {
                    last = !matches!(
                        stopped.recv_timeout(config.interval),
                        Err(mpsc::RecvTimeoutError::Timeout)
                    );
                    let request = state.request(&registry.snapshot(), &config.resource);
                    let sent = rt.block_on(async {
                        tokio::time::timeout(config.timeout, send(&config, request))
                            .await
                            .unwrap_or(Err(()))
                    });
                    if sent.is_err() {
                        stats.metric_export_failed();
                    }
                }
                let _ = finished.send(());
            })
            .ok()?;
        Some(Self { stop, done })
    }

    /// Sends the last export and waits for it, at most `timeout`.
    pub(crate) fn stop(self, timeout: Duration) {
        drop(self.stop);
        let _ = self.done.recv_timeout(timeout);
    }
}

async fn send(config: &PushConfig, request: ExportMetricsServiceRequest) -> Result<(), ()> {
    match config.protocol {
        #[cfg(feature = "otlp-http")]
        Protocol::HttpProtobuf => {
            let client = reqwest::Client::builder()
                .timeout(config.timeout)
                .no_proxy()
                .build()
                .map_err(|_| ())?;
            let mut req = client
                .post(&config.url)
                .header("content-type", "application/x-protobuf")
                .body(request.encode_to_vec());
            for (k, v) in &config.signal.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let res = req.send().await.map_err(|_| ())?;
            res.status().is_success().then_some(()).ok_or(())
        }
        #[cfg(feature = "otlp-grpc")]
        Protocol::Grpc => {
            let channel = tonic::transport::Endpoint::from_shared(config.url.clone())
                .map_err(|_| ())?
                .timeout(config.timeout)
                .connect()
                .await
                .map_err(|_| ())?;
            let mut req = tonic::Request::new(request);
            *req.metadata_mut() = crate::otlp::grpc_metadata(&config.signal);
            MetricsServiceClient::new(channel)
                .export(req)
                .await
                .map(|_| ())
                .map_err(|_| ())
        }
        // Refused at start-up: this build has no such protocol.
        #[allow(unreachable_patterns)]
        _ => {
            let _ = request;
            Err(())
        }
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn attributes(attrs: &[(&'static str, String)]) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: (*k).to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.clone())),
            }),
            ..KeyValue::default()
        })
        .collect()
}

fn exemplar(e: &looptel_red_metrics::Exemplar) -> pb::Exemplar {
    pb::Exemplar {
        filtered_attributes: Vec::new(),
        time_unix_nano: nanos(e.timestamp),
        span_id: e.span_id.to_bytes().to_vec(),
        trace_id: e.trace_id.to_bytes().to_vec(),
        value: Some(pb::exemplar::Value::AsDouble(e.value)),
    }
}

/// What a delta export subtracts: the last values sent, per series.
#[derive(Default)]
struct Previous {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
    value: f64,
    native: Option<NativePoint>,
}

/// `buckets` (first key, counts) at `schema` − `by`: each halving merges
/// keys `2j−1` and `2j` into `j`, as the registry does.
fn downscale((first, counts): &(i32, Vec<u64>), by: u32) -> (i32, Vec<u64>) {
    if by == 0 || counts.is_empty() {
        return (*first, counts.clone());
    }
    let coarse = |k: i32| {
        let mut k = k;
        for _ in 0..by {
            k = (k + 1) >> 1;
        }
        k
    };
    let new_first = coarse(*first);
    let mut out = vec![0; (coarse(*first + counts.len() as i32 - 1) - new_first + 1) as usize];
    for (i, c) in counts.iter().enumerate() {
        out[(coarse(*first + i as i32) - new_first) as usize] += c;
    }
    (new_first, out)
}

/// `now` less `before` (both at the same schema), per key.
fn subtract((first, counts): &(i32, Vec<u64>), before: &(i32, Vec<u64>)) -> Vec<u64> {
    counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let k = i64::from(*first) + i as i64 - i64::from(before.0);
            let prev = usize::try_from(k)
                .ok()
                .and_then(|k| before.1.get(k))
                .copied()
                .unwrap_or(0);
            c.saturating_sub(prev)
        })
        .collect()
}

/// An OTLP exponential bucket list from native buckets: OpenTelemetry's
/// bucket `i` is Prometheus' key `i + 1`.
fn exponential_buckets(
    (first, counts): (i32, Vec<u64>),
) -> Option<pb::exponential_histogram_data_point::Buckets> {
    Some(pb::exponential_histogram_data_point::Buckets {
        offset: if counts.is_empty() { 0 } else { first - 1 },
        bucket_counts: counts,
    })
}

/// The start time and, for delta, the last values per series.
struct State {
    temporality: Temporality,
    exponential: bool,
    start: u64,
    last_export: u64,
    previous: HashMap<(String, looptel_red_metrics::Attributes), Previous>,
}

impl State {
    fn new(temporality: Temporality, exponential: bool) -> Self {
        let now = nanos(SystemTime::now());
        Self {
            temporality,
            exponential,
            start: now,
            last_export: now,
            previous: HashMap::new(),
        }
    }

    fn delta(&self) -> bool {
        self.temporality != Temporality::Cumulative
    }

    /// A histogram series' native buckets as an OTLP exponential data
    /// point; for delta, less what the last export sent (brought to the
    /// current resolution when the registry halved it since).
    fn exponential_point(
        &mut self,
        name: &str,
        p: &looptel_red_metrics::HistogramPoint,
        delta: bool,
        (start, now): (u64, u64),
    ) -> Option<pb::ExponentialHistogramDataPoint> {
        let native = p.native.as_ref()?;
        let (mut positive, mut negative) = (native.positive.clone(), native.negative.clone());
        let (mut sum, mut count, mut zero) = (p.sum, p.count, native.zero_count);
        if delta {
            let prev = self
                .previous
                .entry((name.to_owned(), p.attributes.clone()))
                .or_default();
            if let Some(before) = &prev.native {
                let by =
                    u32::try_from(i32::from(before.schema) - i32::from(native.schema)).unwrap_or(0);
                positive.1 = subtract(&positive, &downscale(&before.positive, by));
                negative.1 = subtract(&negative, &downscale(&before.negative, by));
                zero = zero.saturating_sub(before.zero_count);
            }
            sum -= prev.sum;
            count = count.saturating_sub(prev.count);
            (prev.sum, prev.count) = (p.sum, p.count);
            prev.native = Some(native.clone());
        }
        Some(pb::ExponentialHistogramDataPoint {
            attributes: attributes(&p.attributes),
            start_time_unix_nano: start,
            time_unix_nano: now,
            count,
            sum: Some(sum),
            scale: i32::from(native.schema),
            zero_count: zero,
            positive: exponential_buckets(positive),
            negative: exponential_buckets(negative),
            flags: 0,
            exemplars: p.exemplars.iter().map(exemplar).collect(),
            min: None,
            max: None,
            zero_threshold: native.zero_threshold,
        })
    }

    /// The request for `snapshot`, with `resource`.
    fn request(
        &mut self,
        snapshot: &Snapshot,
        resource: &[KeyValue],
    ) -> ExportMetricsServiceRequest {
        let now = nanos(SystemTime::now());
        let delta = self.delta();
        let start = if delta { self.last_export } else { self.start };
        let temporality = if delta {
            pb::AggregationTemporality::Delta
        } else {
            pb::AggregationTemporality::Cumulative
        } as i32;
        let mut metrics = Vec::with_capacity(snapshot.instruments.len());
        for i in &snapshot.instruments {
            let data = match &i.data {
                Data::Histogram(points)
                    if self.exponential && points.iter().all(|p| p.native.is_some()) =>
                {
                    pb::metric::Data::ExponentialHistogram(pb::ExponentialHistogram {
                        aggregation_temporality: temporality,
                        data_points: points
                            .iter()
                            .filter_map(|p| self.exponential_point(&i.name, p, delta, (start, now)))
                            .collect(),
                    })
                }
                Data::Histogram(points) => pb::metric::Data::Histogram(pb::Histogram {
                    aggregation_temporality: temporality,
                    data_points: points
                        .iter()
                        .map(|p| {
                            let mut counts = p.bucket_counts.clone();
                            let (mut sum, mut count) = (p.sum, p.count);
                            if delta {
                                let prev = self
                                    .previous
                                    .entry((i.name.clone(), p.attributes.clone()))
                                    .or_default();
                                for (c, before) in counts.iter_mut().zip(&prev.counts) {
                                    *c = c.saturating_sub(*before);
                                }
                                sum -= prev.sum;
                                count = count.saturating_sub(prev.count);
                                prev.counts.clone_from(&p.bucket_counts);
                                (prev.sum, prev.count) = (p.sum, p.count);
                            }
                            pb::HistogramDataPoint {
                                attributes: attributes(&p.attributes),
                                start_time_unix_nano: start,
                                time_unix_nano: now,
                                count,
                                sum: Some(sum),
                                bucket_counts: counts,
                                explicit_bounds: p.bounds.to_vec(),
                                exemplars: p.exemplars.iter().map(exemplar).collect(),
                                flags: 0,
                                min: None,
                                max: None,
                            }
                        })
                        .collect(),
                }),
                Data::Counter(points) => {
                    // `lowmemory` keeps a collector's counter (an
                    // asynchronous one) cumulative; `delta` does not.
                    let delta =
                        delta && !(i.asynchronous && self.temporality == Temporality::LowMemory);
                    pb::metric::Data::Sum(pb::Sum {
                        aggregation_temporality: if delta {
                            pb::AggregationTemporality::Delta
                        } else {
                            pb::AggregationTemporality::Cumulative
                        } as i32,
                        is_monotonic: true,
                        data_points: points
                            .iter()
                            .map(|p| {
                                let mut value = p.value;
                                if delta {
                                    let prev = self
                                        .previous
                                        .entry((i.name.clone(), p.attributes.clone()))
                                        .or_default();
                                    value -= prev.value;
                                    prev.value = p.value;
                                }
                                pb::NumberDataPoint {
                                    attributes: attributes(&p.attributes),
                                    start_time_unix_nano: if delta { start } else { self.start },
                                    time_unix_nano: now,
                                    exemplars: p.exemplar.iter().map(exemplar).collect(),
                                    flags: 0,
                                    value: Some(pb::number_data_point::Value::AsDouble(value)),
                                }
                            })
                            .collect(),
                    })
                }
                Data::UpDown(points) | Data::Gauge(points) => {
                    let data_points = points
                        .iter()
                        .map(|p| pb::NumberDataPoint {
                            attributes: attributes(&p.attributes),
                            start_time_unix_nano: self.start,
                            time_unix_nano: now,
                            exemplars: Vec::new(),
                            flags: 0,
                            value: Some(pb::number_data_point::Value::AsDouble(p.value)),
                        })
                        .collect();
                    match &i.data {
                        Data::UpDown(_) => pb::metric::Data::Sum(pb::Sum {
                            // Up-down counters stay cumulative.
                            aggregation_temporality: pb::AggregationTemporality::Cumulative as i32,
                            is_monotonic: false,
                            data_points,
                        }),
                        _ => pb::metric::Data::Gauge(pb::Gauge { data_points }),
                    }
                }
                _ => continue,
            };
            metrics.push(pb::Metric {
                name: i.name.clone(),
                description: i.description.clone(),
                unit: i.unit.clone(),
                metadata: Vec::new(),
                data: Some(data),
            });
        }
        self.last_export = now;
        ExportMetricsServiceRequest {
            resource_metrics: vec![pb::ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource.to_vec(),
                    dropped_attributes_count: 0,
                    entity_refs: Vec::new(),
                }),
                scope_metrics: vec![pb::ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: looptel_core::SCOPE.to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

/// The resource's attributes as OTLP key-values.
pub(crate) fn resource_attributes(resource: &opentelemetry_sdk::Resource) -> Vec<KeyValue> {
    resource
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: Some(AnyValue {
                value: Some(match v {
                    opentelemetry::Value::Bool(b) => any_value::Value::BoolValue(*b),
                    opentelemetry::Value::I64(i) => any_value::Value::IntValue(*i),
                    opentelemetry::Value::F64(f) => any_value::Value::DoubleValue(*f),
                    other => any_value::Value::StringValue(other.to_string()),
                }),
            }),
            ..KeyValue::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric<'r>(req: &'r ExportMetricsServiceRequest, name: &str) -> &'r pb::Metric {
        req.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .expect("metric")
    }

    fn value(req: &ExportMetricsServiceRequest, name: &str) -> (f64, i32) {
        match &metric(req, name).data {
            Some(pb::metric::Data::Sum(s)) => match s.data_points[0].value {
                Some(pb::number_data_point::Value::AsDouble(v)) => (v, s.aggregation_temporality),
                _ => panic!("a double"),
            },
            Some(pb::metric::Data::Histogram(h)) => {
                (h.data_points[0].count as f64, h.aggregation_temporality)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn delta_sends_the_change_since_the_last_push_cumulative_the_total() {
        let registry = Registry::new();
        let c = registry.counter("jobs", "{job}", "Jobs.", &[]);
        let h = registry.histogram("work.duration", "s", "Work.", &[], &[1.0]);
        let g = registry.gauge("in.flight", "{job}", "In flight.", &[]);
        let mut delta = State::new(Temporality::Delta, false);
        let mut cumulative = State::new(Temporality::Cumulative, false);
        c.with(&[], |c| c.add(3, None));
        h.with(&[], |h| h.observe(0.5, None));
        g.with(&[], |g| g.add(2));
        let (d1, c1) = (
            delta.request(&registry.snapshot(), &[]),
            cumulative.request(&registry.snapshot(), &[]),
        );
        c.with(&[], |c| c.add(2, None));
        h.with(&[], |h| h.observe(0.5, None));
        let (d2, c2) = (
            delta.request(&registry.snapshot(), &[]),
            cumulative.request(&registry.snapshot(), &[]),
        );
        let (d, c) = (
            pb::AggregationTemporality::Delta as i32,
            pb::AggregationTemporality::Cumulative as i32,
        );
        assert_eq!(value(&d1, "jobs"), (3.0, d));
        assert_eq!(value(&d2, "jobs"), (2.0, d));
        assert_eq!(value(&c2, "jobs"), (5.0, c));
        assert_eq!(value(&c1, "work.duration"), (1.0, c));
        assert_eq!(value(&d2, "work.duration"), (1.0, d));
        assert_eq!(value(&c2, "work.duration"), (2.0, c));
        // An up-down counter stays cumulative either way.
        assert_eq!(value(&d2, "in.flight"), (2.0, c));
    }

    fn exponential(
        req: &ExportMetricsServiceRequest,
        name: &str,
    ) -> pb::ExponentialHistogramDataPoint {
        match &metric(req, name).data {
            Some(pb::metric::Data::ExponentialHistogram(h)) => h.data_points[0].clone(),
            other => panic!("an exponential histogram: {other:?}"),
        }
    }

    /// (OpenTelemetry index, count) of each non-empty bucket.
    fn buckets(p: &pb::ExponentialHistogramDataPoint) -> Vec<(i32, u64)> {
        let b = p.positive.as_ref().expect("positive buckets");
        b.bucket_counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (b.offset + i as i32, *c))
            .collect()
    }

    #[test]
    fn native_buckets_are_pushed_as_exponential_histograms_in_the_otel_index() {
        use looptel_red_metrics::{Histograms, NativeHistograms};
        let registry = Registry::new().with_histograms(Histograms::Native(
            NativeHistograms::default().bucket_factor(2.0),
        ));
        let h = registry.histogram("work.duration", "s", "Work.", &[], &[1.0]);
        let mut cumulative = State::new(Temporality::Cumulative, true);
        for v in [0.75, 1.0, 3.0, 0.0] {
            h.with(&[], |h| h.observe(v, None));
        }
        let p = exponential(
            &cumulative.request(&registry.snapshot(), &[]),
            "work.duration",
        );
        assert_eq!(p.scale, 0);
        assert_eq!(p.count, 4);
        assert_eq!(p.zero_count, 1);
        // OpenTelemetry's bucket i holds (2^i, 2^(i+1)]: 0.75 and 1 are in
        // bucket −1, 3 in bucket 1.
        assert_eq!(buckets(&p), vec![(-1, 2), (1, 1)]);
        // Classic settings are pushed as explicit buckets.
        let mut explicit = State::new(Temporality::Cumulative, false);
        let classic = Registry::new();
        classic
            .histogram("work.duration", "s", "Work.", &[], &[1.0])
            .with(&[], |h| h.observe(0.5, None));
        assert_eq!(
            value(&explicit.request(&classic.snapshot(), &[]), "work.duration").0,
            1.0
        );
    }

    #[test]
    fn delta_exponential_points_subtract_at_the_resolution_of_now() {
        use looptel_red_metrics::{Histograms, NativeHistograms};
        let registry = Registry::new().with_histograms(Histograms::Native(
            NativeHistograms::default()
                .bucket_factor(2.0)
                .max_buckets(2),
        ));
        let h = registry.histogram("work.duration", "s", "Work.", &[], &[1.0]);
        let mut delta = State::new(Temporality::Delta, true);
        h.with(&[], |h| h.observe(1.5, None));
        let first = exponential(&delta.request(&registry.snapshot(), &[]), "work.duration");
        assert_eq!((first.scale, buckets(&first)), (0, vec![(0, 1)]));
        // A far value and the limit of two buckets: the resolution halves.
        for v in [1.5, 3.5, 7.5] {
            h.with(&[], |h| h.observe(v, None));
        }
        let second = exponential(&delta.request(&registry.snapshot(), &[]), "work.duration");
        assert!(second.scale < 0, "scale {}", second.scale);
        assert_eq!(second.count, 3);
        let total: u64 = buckets(&second).iter().map(|(_, c)| c).sum();
        assert_eq!(total, 3, "the first push's 1.5 is not sent again");
    }
}
