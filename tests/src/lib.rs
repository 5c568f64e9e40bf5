//! Support for looptel's cross-crate tests: a fake OpenTelemetry collector
//! that receives real OTLP over HTTP/protobuf and over gRPC on 127.0.0.1.

mod alertmanager;
pub mod browser;
mod prometheus;
mod proxy;
mod wait;
pub use alertmanager::Alertmanager;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest as MetricsRequest;
pub use prometheus::Prometheus;
pub use proxy::Proxy;
pub use wait::{budget, eventually};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prost::Message;
use tokio::net::TcpListener;

/// A span exporter that keeps every span it is given — also across the
/// provider's shutdown, unlike the SDK's in-memory exporter — and the
/// resource it was handed.
#[derive(Clone, Debug, Default)]
pub struct CapturedSpans {
    spans: Arc<Mutex<Vec<SpanData>>>,
    resource: Arc<Mutex<Option<Resource>>>,
}

impl CapturedSpans {
    /// Every span exported so far.
    pub fn spans(&self) -> Vec<SpanData> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The resource the provider set, once it has.
    pub fn resource(&self) -> Option<Resource> {
        self.resource
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl SpanExporter for CapturedSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch);
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self.resource.lock().unwrap_or_else(PoisonError::into_inner) = Some(resource.clone());
    }
}

/// Serves `app` on `127.0.0.1:0`; returns the bound address.
///
/// # Panics
/// When the loopback port cannot be bound (a broken test machine).
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A span attribute as text (`200`, `GET`); `None` when the span lacks it.
pub fn attr(span: &SpanData, key: &str) -> Option<String> {
    attr_value(span, key).map(|v| v.to_string())
}

/// A span attribute with its type, for the attributes the semantic
/// conventions say are integers (`Some(200_i64.into())`).
pub fn attr_value(span: &SpanData, key: &str) -> Option<opentelemetry::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// Every span of a file of OTLP JSON lines (the collector's file exporter,
/// `LOOPTEL_TRACES_FILE`), as JSON; lines that are not OTLP are skipped,
/// a missing file is no spans.
pub fn otlp_json_spans(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                out.extend(ss["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    out
}

/// An attribute of a span read by [`otlp_json_spans`]: its `AnyValue`
/// (`{"stringValue": …}`, `{"intValue": …}`).
pub fn otlp_json_attribute<'a>(
    span: &'a serde_json::Value,
    key: &str,
) -> Option<&'a serde_json::Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// The value of one series in a Prometheus or OpenMetrics exposition:
/// `series` is the name with its labels as written
/// (`http_server_active_requests{http_request_method="POST",url_scheme="http"}`),
/// or a bare name. An exemplar after the value is ignored.
pub fn scrape_value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| l.strip_prefix(series).is_some_and(|r| r.starts_with(' ')))
        .find_map(sample_value)
}

/// The value of one sample line of an exposition (`name{labels} 3 # {…} …`
/// gives 3): the number after the series, an exemplar ignored.
pub fn sample_value(line: &str) -> Option<f64> {
    let rest = match line.find('{') {
        // Label values may hold spaces and braces: the series ends at the
        // first `}` outside quotes.
        Some(open) if !line[..open].contains(' ') => {
            let (mut quoted, mut escaped) = (false, false);
            let close = line[open..].char_indices().find_map(|(i, c)| {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if quoted => escaped = true,
                    '"' => quoted = !quoted,
                    '}' if !quoted => return Some(open + i),
                    _ => {}
                }
                None
            })?;
            line[close + 1..].strip_prefix(' ')?
        }
        _ => line.split_once(' ')?.1,
    };
    rest.split(' ').next()?.parse().ok()
}

/// A loopback address nothing listens on (it was free a moment ago): a
/// collector or broker that is down, refusing connections.
///
/// # Panics
/// When no loopback port can be bound (a broken test machine).
pub fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// A span as the collector received it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// The span name.
    pub name: String,
    /// Lowercase hex, 32 characters.
    pub trace_id: String,
    /// Lowercase hex, 16 characters.
    pub span_id: String,
    /// Lowercase hex, empty for a root span.
    pub parent_span_id: String,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    /// String renderings of the span's attributes.
    pub attributes: Vec<(String, String)>,
    /// String renderings of the resource's attributes.
    pub resource: Vec<(String, String)>,
    /// `http` or `grpc`: how it arrived.
    pub transport: &'static str,
}

impl ReceivedSpan {
    /// The value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        find(&self.attributes, key)
    }

    /// The value of resource attribute `key`.
    pub fn resource_attribute(&self, key: &str) -> Option<&str> {
        find(&self.resource, key)
    }
}

fn find<'a>(kvs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kvs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A log record as the collector received it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedLog {
    /// The body, rendered as a string.
    pub body: String,
    /// `INFO`, `WARN`, …
    pub severity_text: String,
    /// The OpenTelemetry severity number (9 for INFO, 13 for WARN).
    pub severity_number: i32,
    /// Lowercase hex, 32 characters; empty outside a span.
    pub trace_id: String,
    /// Lowercase hex, 16 characters; empty outside a span.
    pub span_id: String,
    /// String renderings of the record's attributes.
    pub attributes: Vec<(String, String)>,
    /// String renderings of the resource's attributes.
    pub resource: Vec<(String, String)>,
    /// `http` or `grpc`: how it arrived.
    pub transport: &'static str,
}

impl ReceivedLog {
    /// The value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        find(&self.attributes, key)
    }

    /// The value of resource attribute `key`.
    pub fn resource_attribute(&self, key: &str) -> Option<&str> {
        find(&self.resource, key)
    }
}

#[derive(Default)]
struct State {
    spans: Vec<ReceivedSpan>,
    /// The headers (or gRPC metadata) of each trace export request.
    trace_headers: Vec<Vec<(String, String)>>,
    logs: Vec<ReceivedLog>,
    metric_exports: usize,
    metric_requests: Vec<(ExportMetricsServiceRequest, &'static str)>,
}

/// A fake collector listening for OTLP on two loopback ports.
#[derive(Clone)]
pub struct FakeCollector {
    http: SocketAddr,
    grpc: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCollector")
            .field("http", &self.http)
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn render(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn pairs(kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect()
}

impl State {
    fn take(&mut self, req: ExportTraceServiceRequest, transport: &'static str) {
        for rs in req.resource_spans {
            let resource = rs
                .resource
                .map(|r| pairs(&r.attributes))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    self.spans.push(ReceivedSpan {
                        name: s.name,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        status_code: s.status.map_or(0, |st| st.code),
                        attributes: pairs(&s.attributes),
                        resource: resource.clone(),
                        transport,
                    });
                }
            }
        }
    }
}

impl State {
    fn take_logs(&mut self, req: ExportLogsServiceRequest, transport: &'static str) {
        for rl in req.resource_logs {
            let resource = rl
                .resource
                .map(|r| pairs(&r.attributes))
                .unwrap_or_default();
            for sl in rl.scope_logs {
                for r in sl.log_records {
                    self.logs.push(ReceivedLog {
                        body: render(r.body.as_ref()),
                        severity_text: r.severity_text,
                        severity_number: r.severity_number,
                        trace_id: hex(&r.trace_id),
                        span_id: hex(&r.span_id),
                        attributes: pairs(&r.attributes),
                        resource: resource.clone(),
                        transport,
                    });
                }
            }
        }
    }
}

struct Grpc(Arc<Mutex<State>>);

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut state = lock(&self.0);
        state.metric_exports += 1;
        state.metric_requests.push((request.into_inner(), "grpc"));
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        lock(&self.0).take_logs(request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .iter()
            .filter_map(|kv| match kv {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                    Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))
                }
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect();
        let mut state = lock(&self.0);
        state.trace_headers.push(headers);
        state.take(request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn protobuf(body: Vec<u8>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        body,
    )
}

impl FakeCollector {
    /// Starts both listeners on `127.0.0.1:0`.
    ///
    /// # Panics
    /// When the loopback ports cannot be bound (a broken test machine).
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));

        let http_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let http = http_listener.local_addr().expect("http addr");
        let traces_state = state.clone();
        let metrics_state = state.clone();
        let logs_state = state.clone();
        let app = axum::Router::new()
            .route(
                "/v1/logs",
                post(move |body: Bytes| {
                    let state = logs_state.clone();
                    async move {
                        match ExportLogsServiceRequest::decode(body) {
                            Ok(req) => {
                                lock(&state).take_logs(req, "http");
                                protobuf(ExportLogsServiceResponse::default().encode_to_vec())
                                    .into_response()
                            }
                            Err(_) => StatusCode::BAD_REQUEST.into_response(),
                        }
                    }
                }),
            )
            .route(
                "/v1/traces",
                post(move |headers: axum::http::HeaderMap, body: Bytes| {
                    let state = traces_state.clone();
                    async move {
                        match ExportTraceServiceRequest::decode(body) {
                            Ok(req) => {
                                let headers = headers
                                    .iter()
                                    .filter_map(|(k, v)| {
                                        Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))
                                    })
                                    .collect();
                                let mut state = lock(&state);
                                state.trace_headers.push(headers);
                                state.take(req, "http");
                                protobuf(ExportTraceServiceResponse::default().encode_to_vec())
                                    .into_response()
                            }
                            Err(_) => StatusCode::BAD_REQUEST.into_response(),
                        }
                    }
                }),
            )
            .route(
                "/v1/metrics",
                post(move |body: Bytes| {
                    let state = metrics_state.clone();
                    async move {
                        match ExportMetricsServiceRequest::decode(body) {
                            Ok(req) => {
                                let mut state = lock(&state);
                                state.metric_exports += 1;
                                state.metric_requests.push((req, "http"));
                                protobuf(ExportMetricsServiceResponse::default().encode_to_vec())
                                    .into_response()
                            }
                            Err(_) => StatusCode::BAD_REQUEST.into_response(),
                        }
                    }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(http_listener, app).await;
        });

        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let grpc = grpc_listener.local_addr().expect("grpc addr");
        let service = TraceServiceServer::new(Grpc(state.clone()));
        let logs = LogsServiceServer::new(Grpc(state.clone()));
        let metrics = MetricsServiceServer::new(Grpc(state.clone()));
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .add_service(logs)
                .add_service(metrics)
                .serve_with_incoming(incoming)
                .await;
        });

        Self { http, grpc, state }
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT` with `http/protobuf`.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The URL for `OTEL_EXPORTER_OTLP_ENDPOINT` with `grpc`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.state).spans.clone()
    }

    /// The headers (gRPC: the metadata) of every trace export request so
    /// far, names in lower case.
    pub fn trace_request_headers(&self) -> Vec<Vec<(String, String)>> {
        lock(&self.state).trace_headers.clone()
    }

    /// Every log record received so far.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        lock(&self.state).logs.clone()
    }

    /// Every metrics request received so far, with how it arrived (`http`
    /// or `grpc`).
    pub fn metric_requests(&self) -> Vec<(ExportMetricsServiceRequest, &'static str)> {
        lock(&self.state).metric_requests.clone()
    }

    /// How many metric exports were received.
    pub fn metric_exports(&self) -> usize {
        lock(&self.state).metric_exports
    }

    /// Waits until a span named `name` arrives, up to `timeout`.
    pub async fn wait_for_span(&self, name: &str, timeout: Duration) -> Option<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| s.name == name) {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A cloneable in-memory writer, for log output read back by tests.
#[derive(Clone, Debug, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Everything written so far, as text.
    pub fn contents(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Every line written so far, parsed as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.contents()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl std::io::Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Spans of one tracer provider, kept in memory: what the layers' tests
/// assert on.
#[derive(Debug)]
pub struct InMemorySpans {
    /// The exporter the spans land in.
    pub exporter: opentelemetry_sdk::trace::InMemorySpanExporter,
    /// The provider, exporting each span as it ends.
    pub provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Default for InMemorySpans {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemorySpans {
    /// A provider whose spans are exported as they end.
    pub fn new() -> Self {
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        Self { exporter, provider }
    }

    /// Layers' instrumentation on this provider, with the W3C propagators.
    pub fn instrumentation(&self) -> looptel_core::Instrumentation {
        looptel_core::Instrumentation::new(&self.provider, looptel_core::Propagator::default())
    }

    /// The spans ended so far.
    pub fn finished(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().unwrap_or_default()
    }

    /// The one span ended so far.
    ///
    /// # Panics
    /// When there is not exactly one.
    pub fn one(&self) -> SpanData {
        let mut spans = self.finished();
        assert_eq!(spans.len(), 1, "{spans:#?}");
        spans.remove(0)
    }

    /// Waits for `n` ended spans — a server ends its span on its own task
    /// — and returns them (and any more).
    ///
    /// # Panics
    /// When fewer have ended within [`budget::IN_PROCESS`].
    pub async fn wait_for(&self, n: usize) -> Vec<SpanData> {
        eventually(
            budget::IN_PROCESS,
            &format!("{n} ended spans"),
            async || {
                let spans = self.finished();
                (spans.len() >= n).then_some(spans)
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::{sample_value, scrape_value};

    #[test]
    fn a_samples_value_is_read_past_its_labels_and_before_its_exemplar() {
        assert_eq!(sample_value("up 1"), Some(1.0));
        assert_eq!(
            sample_value(r#"x_bucket{le="0.5",msg="a b} c"} 3 # {trace_id="ab"} 0.2 1795000000"#),
            Some(3.0)
        );
        assert_eq!(sample_value("x{a=\"1\"}"), None);
        let text = "x_total{a=\"1\"} 2\nx_total{a=\"12\"} 5\nx_total 9\n";
        assert_eq!(scrape_value(text, "x_total{a=\"1\"}"), Some(2.0));
        assert_eq!(scrape_value(text, "x_total"), Some(9.0));
        assert_eq!(scrape_value(text, "x"), None);
    }
}
