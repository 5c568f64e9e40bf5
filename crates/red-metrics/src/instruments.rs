//! Instruments for the other crates (HTTP client, gRPC, messaging) and for
//! business metrics; each records the current sampled span as its exemplar.

use std::sync::{Arc, PoisonError};

use looptel_core::TraceIds;

use looptel_catalogue::metrics as m;

use crate::metric::Metric;
use crate::metrics::{Counter, Gauge, Histogram};
use crate::registry::Registry;

impl Metric<Counter> {
    /// Adds one; the current span becomes the exemplar when sampled.
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    /// Adds `n`; the current span becomes the exemplar when sampled.
    pub fn add(&self, values: &[&str], n: u64) {
        let ids = TraceIds::current();
        self.with(values, |c| c.add(n, ids));
    }
}

impl Metric<Histogram> {
    /// Records `value`; the current span becomes the bucket's exemplar when
    /// sampled.
    pub fn record(&self, values: &[&str], value: f64) {
        let ids = TraceIds::current();
        self.with(values, |h| h.observe(value, ids));
    }
}

impl Metric<Gauge> {
    /// Adds `n` (may be negative).
    pub fn add(&self, values: &[&str], n: i64) {
        self.with(values, |g| g.add(n));
    }

    /// Sets the value.
    pub fn set(&self, values: &[&str], v: i64) {
        self.with(values, |g| g.set(v));
    }
}

/// `http.client.request.duration`, labelled `http.request.method`,
/// `url.scheme`, `http.response.status_code`, `error.type`,
/// `network.protocol.version`: a hook for looptel's HTTP client layer and
/// reqwest middleware (`ClientLayer::hook`, `TracingMiddleware::hook`),
/// timed from the request to the end of the response (the response head
/// for reqwest), with the CLIENT span as exemplar when sampled.
///
/// ```
/// use looptel_engine::{Classify, Derived, HookState, HttpClient, RequestHook};
/// use looptel_red_metrics::{Format, HttpClientMetrics, Registry};
///
/// let registry = Registry::new();
/// let metrics = HttpClientMetrics::new(&registry);
/// let request = http::Request::get("https://inventory.internal/items").body(()).unwrap();
/// let state = metrics.start(&request, &Derived::of(&request), &mut opentelemetry::Context::new());
/// let end = HttpClient.classify_response(http::StatusCode::SERVICE_UNAVAILABLE, &Default::default());
/// state.end(&end.unwrap(), &opentelemetry::Context::new());
/// let text = registry.encode(Format::Prometheus);
/// assert!(text.contains(
///     "http_client_request_duration_seconds_count{http_request_method=\"GET\",url_scheme=\"https\",http_response_status_code=\"503\",error_type=\"503\",network_protocol_version=\"1.1\"} 1"
/// ));
/// ```
#[derive(Clone, Debug)]
pub struct HttpClientMetrics {
    /// The duration histogram.
    pub duration: Arc<Metric<Histogram>>,
}

impl HttpClientMetrics {
    /// Registers the instrument.
    pub fn new(registry: &Registry) -> Self {
        Self {
            duration: registry.instrument_histogram(&m::HTTP_CLIENT_REQUEST_DURATION),
        }
    }
}

/// An outgoing HTTP request being timed by [`HttpClientMetrics`].
#[derive(Debug)]
pub struct HttpClientRecording {
    duration: Arc<Metric<Histogram>>,
    facts: looptel_engine::HttpFacts,
    start: std::time::Instant,
}

impl<B> looptel_engine::RequestHook<http::Request<B>> for HttpClientMetrics {
    type State = HttpClientRecording;

    fn start(
        &self,
        request: &http::Request<B>,
        derived: &looptel_engine::Derived<'_>,
        _: &mut opentelemetry::Context,
    ) -> Self::State {
        HttpClientRecording {
            duration: self.duration.clone(),
            facts: derived.http_facts_of(request),
            start: std::time::Instant::now(),
        }
    }
}

impl looptel_engine::HookState for HttpClientRecording {
    fn end(self, end: &looptel_engine::Classification, cx: &opentelemetry::Context) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let status = end.http_status();
        let values = [
            self.facts.method(),
            self.facts.scheme(),
            status.as_ref().map_or("", http::StatusCode::as_str),
            end.error_type().unwrap_or(""),
            self.facts.protocol_version().unwrap_or(""),
        ];
        self.duration.with(&values, |h| {
            h.observe(elapsed, TraceIds::from_context(cx));
        });
    }
}

/// The labels of `rpc.server.call.duration` (semantic conventions 1.42):
/// `rpc.system.name`, `rpc.method`, `rpc.response.status_code`,
/// `error.type`; the client's add `server.address` and `server.port`.
pub const RPC_LABELS: &[&str] = m::RPC_SERVER_CALL_DURATION.labels;

/// `rpc.server.call.duration` and `rpc.client.call.duration`.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    /// Server calls.
    pub server: Arc<Metric<Histogram>>,
    /// Client calls.
    pub client: Arc<Metric<Histogram>>,
    /// The server's series, found again by method and code.
    server_series: Arc<crate::resolved::ResolvedSeries<Option<looptel_engine::GrpcCode>>>,
    /// `rpc.server.duration` and `rpc.client.duration` (ms), with
    /// `rpc/dup` only.
    legacy: Option<crate::rpc::Legacy>,
}

impl RpcMetrics {
    /// Registers the instruments.
    pub fn new(registry: &Registry) -> Self {
        let server = registry.instrument_histogram(&m::RPC_SERVER_CALL_DURATION);
        Self {
            server_series: Arc::new(crate::resolved::ResolvedSeries::new(server.clone())),
            server,
            client: registry.instrument_histogram(&m::RPC_CLIENT_CALL_DURATION),
            legacy: None,
        }
    }

    /// With [`SemconvOptIn::rpc_dup`](looptel_core::SemconvOptIn::rpc_dup),
    /// also records the pre-1.39 `rpc.server.duration` and
    /// `rpc.client.duration` (milliseconds; `rpc.system`, `rpc.service`,
    /// the bare `rpc.method`, `rpc.grpc.status_code`) for dashboards not yet
    /// migrated. Registered in `registry` only then.
    ///
    /// ```
    /// use looptel_core::SemconvOptIn;
    /// use looptel_red_metrics::{Registry, RpcMetrics};
    ///
    /// let registry = Registry::new();
    /// let _rpc = RpcMetrics::new(&registry)
    ///     .semconv(&registry, SemconvOptIn::parse("rpc/dup"));
    /// ```
    #[must_use]
    pub fn semconv(mut self, registry: &Registry, semconv: looptel_core::SemconvOptIn) -> Self {
        let legacy = |i: &m::Instrument| {
            let buckets = m::legacy_rpc::DURATION_BUCKETS_MS;
            registry.histogram(i.name, i.unit, i.description, i.labels, buckets)
        };
        self.legacy = semconv.rpc_dup().then(|| crate::rpc::Legacy {
            server: legacy(&m::legacy_rpc::RPC_SERVER_DURATION),
            client: legacy(&m::legacy_rpc::RPC_CLIENT_DURATION),
        });
        self
    }

    /// The gRPC server layer's hook recording `rpc.server.call.duration`.
    pub fn server_hook(&self) -> crate::RpcServerMetrics {
        crate::RpcServerMetrics {
            duration: self.server_series.clone(),
            legacy: self.legacy.as_ref().map(|l| l.server.clone()),
        }
    }

    /// The gRPC client layer's hook recording `rpc.client.call.duration`.
    pub fn client_hook(&self) -> crate::RpcClientMetrics {
        crate::RpcClientMetrics {
            duration: self.client.clone(),
            legacy: self.legacy.as_ref().map(|l| l.client.clone()),
        }
    }
}

/// The labels of the messaging instruments.
pub const MESSAGING_LABELS: &[&str] = m::MESSAGING_LABELS;

/// The messaging instruments — `messaging.client.operation.duration`,
/// `messaging.process.duration`, `messaging.client.sent.messages`,
/// `messaging.client.consumed.messages`, `messaging.client.retries`,
/// `messaging.dead_lettered` — as the hook of a messaging telemetry
/// (`MessagingTelemetry::hook`): a send records its duration and counts
/// as sent, a processed message its process duration and counts as
/// consumed, a settlement (`ack`, `nack`) its duration; retries and dead
/// letters count as they happen; the span, when sampled, is the exemplar.
/// Labels: [`MESSAGING_LABELS`], from the [`MessageOp`](looptel_engine::MessageOp)
/// (offsets and keys never).
///
/// ```
/// use looptel_engine::{Derived, HookState, MessageOp, Messaging, RequestHook};
/// use looptel_red_metrics::{Format, MessagingMetrics, Registry};
///
/// let registry = Registry::new();
/// let metrics = MessagingMetrics::new(&registry);
/// let op = MessageOp::new("kafka", "send", "send", "orders").partition(Some("3"));
/// let state = metrics.start(&op, &Derived::none(), &mut opentelemetry::Context::new());
/// state.end(&Messaging.success(), &opentelemetry::Context::new());
/// assert!(registry.encode(Format::Prometheus).contains(
///     "messaging_client_sent_messages_total{messaging_system=\"kafka\",messaging_operation_name=\"send\",messaging_destination_name=\"orders\",messaging_destination_partition_id=\"3\"} 1"
/// ));
/// ```
#[derive(Clone, Debug)]
pub struct MessagingMetrics {
    instruments: Arc<MessagingInstruments>,
}

#[derive(Debug)]
struct MessagingInstruments {
    operation_duration: Arc<Metric<Histogram>>,
    process_duration: Arc<Metric<Histogram>>,
    sent: Arc<Metric<Counter>>,
    consumed: Arc<Metric<Counter>>,
    retries: Arc<Metric<Counter>>,
    dead_lettered: Arc<Metric<Counter>>,
    /// The series an operation without error lands in (its duration and
    /// its count), found again by one hash of its labels instead of one
    /// lookup per family: about 600 instructions a message less.
    resolved: std::sync::RwLock<
        std::collections::HashMap<u64, Vec<ResolvedOp>, rustc_hash::FxBuildHasher>,
    >,
}

/// At most this many label sets are remembered (beyond, each family is
/// looked up by its labels, as before).
const MAX_RESOLVED_OPS: usize = 4096;

/// The series of one label set of an operation without error.
#[derive(Debug)]
struct ResolvedOp {
    kind: OpKind,
    /// The labels but `error.type` (empty: none).
    labels: [Box<str>; 5],
    duration: Arc<Histogram>,
    count: Option<Arc<Counter>>,
}

impl MessagingMetrics {
    /// Registers the instruments.
    pub fn new(registry: &Registry) -> Self {
        Self {
            instruments: Arc::new(MessagingInstruments {
                operation_duration: registry
                    .instrument_histogram(&m::MESSAGING_CLIENT_OPERATION_DURATION),
                process_duration: registry.instrument_histogram(&m::MESSAGING_PROCESS_DURATION),
                sent: registry.instrument_counter(&m::MESSAGING_CLIENT_SENT_MESSAGES),
                consumed: registry.instrument_counter(&m::MESSAGING_CLIENT_CONSUMED_MESSAGES),
                retries: registry.instrument_counter(&m::MESSAGING_CLIENT_RETRIES),
                dead_lettered: registry.instrument_counter(&m::MESSAGING_DEAD_LETTERED),
                resolved: std::sync::RwLock::default(),
            }),
        }
    }
}

/// A messaging operation being recorded by [`MessagingMetrics`].
#[derive(Debug)]
pub struct MessagingRecording<'a> {
    instruments: Arc<MessagingInstruments>,
    system: &'static str,
    name: &'static str,
    /// The duration and the count `end` records.
    kind: OpKind,
    destination: &'a str,
    /// Known at the start, or learnt on delivery.
    partition: Option<std::borrow::Cow<'a, str>>,
    group: Option<&'a str>,
    start: std::time::Instant,
}

impl<'a> looptel_engine::RequestHook<looptel_engine::MessageOp<'a>> for MessagingMetrics {
    type State = MessagingRecording<'a>;

    fn start(
        &self,
        op: &looptel_engine::MessageOp<'a>,
        _: &looptel_engine::Derived<'_>,
        _: &mut opentelemetry::Context,
    ) -> MessagingRecording<'a> {
        MessagingRecording {
            instruments: self.instruments.clone(),
            system: op.system,
            name: op.name,
            kind: match op.kind {
                "send" => OpKind::Send,
                "process" => OpKind::Process,
                _ => OpKind::Other,
            },
            destination: op.destination,
            partition: op.partition.map(std::borrow::Cow::Borrowed),
            group: op.group,
            start: std::time::Instant::now(),
        }
    }
}

/// What a messaging operation records at its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    /// `messaging.client.operation.duration`, `messaging.client.sent.messages`.
    Send,
    /// `messaging.process.duration`, `messaging.client.consumed.messages`.
    Process,
    /// `messaging.client.operation.duration` (a settlement, a receive).
    Other,
}

impl MessagingRecording<'_> {
    /// The labels, in [`MESSAGING_LABELS`] order.
    fn labels<'s>(&'s self, error_type: &'s str) -> [&'s str; 6] {
        [
            self.system,
            self.name,
            self.destination,
            self.partition.as_deref().unwrap_or(""),
            self.group.unwrap_or(""),
            error_type,
        ]
    }
}

impl looptel_engine::HookState for MessagingRecording<'_> {
    fn event(&mut self, event: &looptel_engine::CallEvent<'_>, cx: &opentelemetry::Context) {
        use looptel_engine::CallEvent;
        let ids = TraceIds::from_context(cx);
        match *event {
            CallEvent::Retry { error_type, .. } => self
                .instruments
                .retries
                .with(&self.labels(error_type), |c| c.add(1, ids)),
            CallEvent::DeadLettered { error_type } => self
                .instruments
                .dead_lettered
                .with(&self.labels(error_type), |c| c.add(1, ids)),
            CallEvent::Partition { id } => {
                self.partition = Some(std::borrow::Cow::Owned(id.to_owned()));
            }
            _ => {}
        }
    }

    fn end(self, end: &looptel_engine::Classification, cx: &opentelemetry::Context) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let ids = TraceIds::from_context(cx);
        let labels = self.labels(end.error_type().unwrap_or(""));
        let i = &self.instruments;
        let (duration, count) = match self.kind {
            OpKind::Send => (&i.operation_duration, Some(&i.sent)),
            OpKind::Process => (&i.process_duration, Some(&i.consumed)),
            OpKind::Other => (&i.operation_duration, None),
        };
        if end.error_type().is_some() {
            // Errors are rare and their types many: by the labels.
            duration.with(&labels, |h| h.observe(elapsed, ids));
            if let Some(count) = count {
                count.with(&labels, |c| c.add(1, ids));
            }
            return;
        }
        let mut h = rustc_hash::FxHasher::default();
        std::hash::Hash::hash(&(self.kind as u8), &mut h);
        for l in &labels[..5] {
            std::hash::Hash::hash(l, &mut h);
        }
        let hash = std::hash::Hasher::finish(&h);
        let same = |r: &ResolvedOp| {
            r.kind == self.kind && r.labels.iter().zip(&labels).all(|(a, b)| **a == **b)
        };
        let room = {
            let resolved = i.resolved.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(r) = resolved.get(&hash).and_then(|v| v.iter().find(|r| same(r))) {
                r.duration.observe(elapsed, ids);
                if let Some(c) = &r.count {
                    c.add(1, ids);
                }
                return;
            }
            resolved.len() < MAX_RESOLVED_OPS
        };
        let series = duration.family().series(&labels);
        series.observe(elapsed, ids);
        let counter = count.map(|c| c.family().series(&labels));
        if let Some(c) = &counter {
            c.add(1, ids);
        }
        // A full table, or an overflow series, takes no write lock.
        let overflow = duration.family().is_overflow(&series)
            || count
                .zip(counter.as_ref())
                .is_some_and(|(m, c)| m.family().is_overflow(c));
        if room && !overflow {
            let mut resolved = i.resolved.write().unwrap_or_else(PoisonError::into_inner);
            let entry = resolved.entry(hash).or_default();
            if !entry.iter().any(same) {
                entry.push(ResolvedOp {
                    kind: self.kind,
                    labels: [0, 1, 2, 3, 4].map(|k| Box::from(labels[k])),
                    duration: series,
                    count: counter,
                });
            }
        }
    }
}
