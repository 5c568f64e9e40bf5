//! The gRPC layers over real sockets: a tonic server and a tonic channel on
//! 127.0.0.1, the status read from trailers, streams, cancellation, unknown
//! methods, panics, the health filter and propagation between the two.

use looptel_tests::attr_value as attr;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use looptel_core::Instrumentation;
use looptel_grpc_interceptor::{GrpcClientLayer, GrpcServerLayer};
use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::{Service, ServiceBuilder, ServiceExt};

/// One process's spans.
type Spans = looptel_tests::InMemorySpans;

/// A gRPC message frame: the 5-byte prefix and the payload.
fn message(payload: &'static [u8]) -> Frame<Bytes> {
    let mut m = vec![0_u8];
    m.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    m.extend_from_slice(payload);
    Frame::data(Bytes::from(m))
}

fn trailers(code: &'static str) -> Frame<Bytes> {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static(code));
    Frame::trailers(t)
}

/// A scripted response body: frames with a pause before each.
struct Script {
    frames: VecDeque<Frame<Bytes>>,
    gap: Duration,
    forever: bool,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Script {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if !self.gap.is_zero() {
            let gap = self.gap;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        if self.forever {
            return Poll::Ready(Some(Ok(message(b"tick"))));
        }
        Poll::Ready(self.frames.pop_front().map(Ok))
    }
}

/// The response of a bidirectional call: the request's data frames as
/// they arrive, then OK in the trailers.
struct Echo {
    inner: Body,
    done: bool,
}

impl http_body::Body for Echo {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status))),
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(Some(Ok(trailers("0"))));
                }
            }
        }
    }
}

/// A hand-written gRPC service (no code generation): what it answers
/// depends on the method.
#[derive(Clone)]
struct Raw;

impl NamedService for Raw {
    const NAME: &'static str = "test.v1.Raw";
}

impl Service<Request<Body>> for Raw {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
        Box::pin(async move {
            let (frames, gap, forever) = match method.as_str() {
                // OK headers, messages, then a failure in the trailers.
                "StreamThenFail" => (
                    vec![message(b"a"), message(b"b"), message(b"c"), trailers("13")],
                    Duration::ZERO,
                    false,
                ),
                "Long" => (
                    vec![message(b"1"), message(b"2"), message(b"3"), trailers("0")],
                    Duration::from_millis(40),
                    false,
                ),
                "Forever" => (Vec::new(), Duration::from_millis(5), true),
                // Client streaming: reads every message the client sends,
                // then answers with their count.
                "Collect" => {
                    let mut body = req.into_body();
                    // Messages are 6 bytes each here; HTTP/2 may split or
                    // join frames, so count bytes.
                    let mut bytes = 0_u16;
                    while let Some(frame) = body.frame().await {
                        if let Some(data) = frame.ok().and_then(|f| f.into_data().ok()) {
                            bytes += u16::try_from(data.len()).unwrap_or(u16::MAX);
                        }
                    }
                    let n = bytes / 6;
                    let mut res = Response::new(Body::empty());
                    res.headers_mut()
                        .insert("grpc-status", HeaderValue::from_static("0"));
                    res.headers_mut().insert("x-messages", HeaderValue::from(n));
                    return Ok(res);
                }
                // Bidirectional: every message back as it arrives, then OK.
                "Echo" => {
                    let mut res = Response::new(Body::new(Echo {
                        inner: req.into_body(),
                        done: false,
                    }));
                    res.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/grpc"),
                    );
                    return Ok(res);
                }
                // Answers after 300 ms: past a short deadline.
                "Slow" => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let mut res = Response::new(Body::empty());
                    res.headers_mut()
                        .insert("grpc-status", HeaderValue::from_static("0"));
                    return Ok(res);
                }
                "Panic" => panic!("handler bug"),
                // Answers with the tenant the call's context carries.
                "Tenant" => {
                    let tenant = opentelemetry::Context::map_current(|cx| {
                        use opentelemetry::baggage::BaggageExt;
                        cx.baggage().get("tenant.id").map(|v| v.to_string())
                    });
                    let mut res = Response::new(Body::empty());
                    res.headers_mut()
                        .insert("grpc-status", HeaderValue::from_static("0"));
                    if let Some(Ok(t)) = tenant.map(|t| HeaderValue::from_str(&t)) {
                        res.headers_mut().insert("x-seen-tenant", t);
                    }
                    return Ok(res);
                }
                _ => (vec![trailers("12")], Duration::ZERO, false),
            };
            let body = Script {
                frames: frames.into(),
                gap,
                forever,
                sleep: None,
            };
            let mut res = Response::new(Body::new(body));
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            Ok(res)
        })
    }
}

/// Serves `Raw` and the health service on 127.0.0.1 behind a layer.
macro_rules! serve {
    ($layer:expr) => {{
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let (_reporter, health) = tonic_health::server::health_reporter();
        let routes = tonic::service::Routes::new(Raw).add_service(health);
        let layer = $layer;
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .layer(layer)
                .serve_with_incoming(
                    routes,
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                )
                .await
        });
        addr
    }};
}

/// A connected channel to `addr`.
async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// A traced channel to `addr`.
async fn client(
    inst: Instrumentation,
    addr: SocketAddr,
) -> looptel_grpc_interceptor::GrpcClientService<tonic::transport::Channel> {
    ServiceBuilder::new()
        .layer(GrpcClientLayer::new(inst))
        .service(channel(addr).await)
}

/// Sends `req` once the client is ready; the call must be answered.
async fn send<S, B>(client: &mut S, req: Request<Body>) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    client
        .ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .expect("answered")
}

fn call(addr: SocketAddr, method: &str) -> Request<Body> {
    Request::post(format!("http://{addr}/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::empty())
        .expect("request")
}

/// A call that streams three messages, 30 ms apart.
fn upload(addr: SocketAddr, method: &str) -> Request<Body> {
    let mut req = call(addr, method);
    *req.body_mut() = Body::new(Script {
        frames: vec![message(b"1"), message(b"2"), message(b"3")].into(),
        gap: Duration::from_millis(30),
        forever: false,
        sleep: None,
    });
    req
}

/// How long a span lasted.
fn took(span: &SpanData) -> Duration {
    span.end_time
        .duration_since(span.start_time)
        .expect("ordered")
}

fn code(span: &SpanData) -> Option<Value> {
    attr(span, "rpc.response.status_code")
}

fn by_kind(spans: &[SpanData], kind: SpanKind) -> Vec<&SpanData> {
    spans.iter().filter(|s| s.span_kind == kind).collect()
}

#[tokio::test]
async fn an_error_in_the_trailers_after_messages_is_that_error_on_both_sides() {
    let (server_spans, client_spans) = (Spans::new(), Spans::new());
    let addr = serve!(GrpcServerLayer::new(server_spans.instrumentation()));
    let mut client = client(client_spans.instrumentation(), addr).await;
    let res = send(&mut client, call(addr, "test.v1.Raw/StreamThenFail")).await;
    assert_eq!(
        res.status(),
        http::StatusCode::OK,
        "the head says nothing yet"
    );
    let collected = res.into_body().collect().await.expect("body");
    assert_eq!(
        collected.trailers().and_then(|t| t.get("grpc-status")),
        Some(&HeaderValue::from_static("13"))
    );

    let server = server_spans.wait_for(1).await;
    let server = by_kind(&server, SpanKind::Server)[0];
    assert_eq!(server.name, "test.v1.Raw/StreamThenFail");
    assert_eq!(code(server), Some("INTERNAL".into()));
    assert_eq!(attr(server, "error.type"), Some("INTERNAL".into()));
    assert!(matches!(server.status, Status::Error { .. }));
    assert_eq!(attr(server, "rpc.system.name"), Some("grpc".into()));
    // The pre-1.39 names only with `rpc/dup`.
    assert_eq!(attr(server, "rpc.system"), None);
    assert_eq!(attr(server, "rpc.grpc.status_code"), None);
    assert_eq!(
        attr(server, "network.peer.address"),
        Some("127.0.0.1".into())
    );
    assert_eq!(
        attr(server, "server.port"),
        Some(i64::from(addr.port()).into())
    );
    assert_eq!(
        attr(server, "rpc.method"),
        Some("test.v1.Raw/StreamThenFail".into())
    );

    let client = client_spans.finished();
    let client = by_kind(&client, SpanKind::Client)[0];
    assert_eq!(code(client), Some("INTERNAL".into()));
    assert!(matches!(client.status, Status::Error { .. }));
    assert_eq!(attr(client, "server.address"), Some("127.0.0.1".into()));
    assert_eq!(
        attr(client, "server.port"),
        Some(i64::from(addr.port()).into())
    );
    // One trace: the server continued the client's span.
    assert_eq!(
        server.span_context.trace_id(),
        client.span_context.trace_id()
    );
    assert_eq!(server.parent_span_id, client.span_context.span_id());
}

#[tokio::test]
async fn a_long_stream_is_timed_whole_and_a_dropped_one_is_cancelled_once() {
    let (server_spans, client_spans) = (Spans::new(), Spans::new());
    let addr = serve!(GrpcServerLayer::new(server_spans.instrumentation()));
    let mut client = client(client_spans.instrumentation(), addr).await;

    let res = send(&mut client, call(addr, "test.v1.Raw/Long")).await;
    let mut body = res.into_body();
    while body.frame().await.is_some() {}
    let spans = server_spans.wait_for(1).await;
    assert_eq!(spans.len(), 1);
    assert_eq!(code(&spans[0]), Some("OK".into()));
    let took = took(&spans[0]);
    assert!(
        took >= Duration::from_millis(150),
        "the whole stream: {took:?}"
    );

    // The client reads one message of an endless stream and goes away.
    let res = send(&mut client, call(addr, "test.v1.Raw/Forever")).await;
    let mut body = res.into_body();
    body.frame().await.expect("frame").expect("data");
    // Its headers and a message are out, and it never ends by itself: a
    // span ended at the headers would be here already.
    body.frame().await.expect("frame").expect("data");
    assert_eq!(server_spans.finished().len(), 1, "not ended early");
    drop(body);
    let spans = server_spans.wait_for(2).await;
    assert_eq!(spans.len(), 2, "ended once");
    let cancelled = &spans[1];
    assert_eq!(code(cancelled), Some("CANCELLED".into()));
    assert_eq!(
        cancelled.status,
        Status::Unset,
        "a client that cancels is not a server error"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server_spans.finished().len(), 2, "and only once");
    let client = client_spans.finished();
    assert_eq!(code(&client[1]), Some("CANCELLED".into()));
    assert!(
        matches!(client[1].status, Status::Error { .. }),
        "for the client, any non-OK"
    );
}

#[tokio::test]
async fn unknown_methods_are_other_panics_are_internal_and_health_is_skipped() {
    let (server_spans, client_spans) = (Spans::new(), Spans::new());
    let addr = serve!(GrpcServerLayer::new(server_spans.instrumentation()));
    let mut client = client(client_spans.instrumentation(), addr).await;
    for method in [
        "nope.v1.Unknown/Call",
        "test.v1.Raw/Panic",
        "grpc.health.v1.Health/Check",
    ] {
        let res = send(&mut client, call(addr, method)).await;
        res.into_body().collect().await.expect("body");
    }
    let spans = server_spans.wait_for(2).await;
    assert_eq!(spans.len(), 2, "the health check is not traced: {spans:?}");
    let unknown = &spans[0];
    assert_eq!(unknown.name, "_OTHER");
    assert_eq!(attr(unknown, "rpc.method"), Some("_OTHER".into()));
    assert_eq!(
        attr(unknown, "rpc.method_original"),
        Some("/nope.v1.Unknown/Call".into())
    );
    assert_eq!(code(unknown), Some("UNIMPLEMENTED".into()));
    let panicked = &spans[1];
    assert_eq!(code(panicked), Some("INTERNAL".into()));
    assert_eq!(panicked.status, Status::error("handler bug"));
    assert_eq!(panicked.events.events[0].name, "exception");
    // The client saw three calls; the health check was an empty request,
    // answered with a status of its own.
    assert_eq!(client_spans.finished().len(), 3);
}

#[tokio::test]
async fn a_generated_client_and_server_work_through_the_layers() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let (server_spans, client_spans) = (Spans::new(), Spans::new());
    // Health traced here: the filter is the user's to change.
    let addr = serve!(GrpcServerLayer::new(server_spans.instrumentation()).filter(()));
    let mut health = HealthClient::new(client(client_spans.instrumentation(), addr).await);
    let status = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(status.code(), tonic::Code::NotFound);
    let server = server_spans.wait_for(1).await;
    assert_eq!(server[0].name, "grpc.health.v1.Health/Check");
    assert_eq!(code(&server[0]), Some("NOT_FOUND".into()));
    assert_eq!(server[0].status, Status::Unset, "NOT_FOUND is the caller's");
    let client = client_spans.finished();
    assert_eq!(attr(&client[0], "error.type"), Some("NOT_FOUND".into()));
}

#[tokio::test]
async fn call_durations_are_recorded_with_the_spans_labels_and_as_long_as_the_span() {
    use looptel_red_metrics::{Format, Registry, RpcMetrics};
    let (server_spans, client_spans) = (Spans::new(), Spans::new());
    let (server_registry, client_registry) = (Registry::new(), Registry::new());
    let server_rpc = RpcMetrics::new(&server_registry);
    let client_rpc = RpcMetrics::new(&client_registry);
    let addr =
        serve!(GrpcServerLayer::new(server_spans.instrumentation()).hook(server_rpc.server_hook()));
    let mut client = ServiceBuilder::new()
        .layer(GrpcClientLayer::new(client_spans.instrumentation()).hook(client_rpc.client_hook()))
        .service(channel(addr).await);
    for method in [
        "test.v1.Raw/Long",
        "test.v1.Raw/StreamThenFail",
        "nope.v1.X/Y",
    ] {
        let res = send(&mut client, call(addr, method)).await;
        res.into_body().collect().await.expect("body");
    }
    let spans = server_spans.wait_for(3).await;
    let server = server_registry.encode(Format::OpenMetrics);
    for line in [
        "rpc_server_call_duration_seconds_count{rpc_system_name=\"grpc\",rpc_method=\"test.v1.Raw/Long\",rpc_response_status_code=\"OK\"} 1",
        "rpc_server_call_duration_seconds_count{rpc_system_name=\"grpc\",rpc_method=\"test.v1.Raw/StreamThenFail\",rpc_response_status_code=\"INTERNAL\",error_type=\"INTERNAL\"} 1",
        // Never the raw path of a method the server does not have.
        "rpc_server_call_duration_seconds_count{rpc_system_name=\"grpc\",rpc_method=\"_OTHER\",rpc_response_status_code=\"UNIMPLEMENTED\",error_type=\"UNIMPLEMENTED\"} 1",
    ] {
        assert!(server.lines().any(|l| l == line), "{line}\n{server}");
    }
    assert!(!server.contains("nope.v1"), "{server}");
    // The metric is the span's duration, and its exemplar is the span.
    let long = &spans[0];
    let span_secs = took(long).as_secs_f64();
    let sum: f64 = server
        .lines()
        .find(|l| {
            l.starts_with("rpc_server_call_duration_seconds_sum{") && l.contains("test.v1.Raw/Long")
        })
        .and_then(looptel_tests::sample_value)
        .expect("sum");
    // The hook's clock starts just after the span does and stops just
    // before it ends (1 ms for the two clocks' difference), and covers the
    // whole stream: four messages 40 ms apart. No closeness bound: a
    // loaded machine may preempt between the two ends.
    assert!(
        sum <= span_secs + 0.001,
        "the metric runs inside the span: {sum} vs {span_secs}"
    );
    assert!(sum >= 0.15, "the whole stream, not its headers: {sum}");
    assert!(
        server.contains(&long.span_context.trace_id().to_string()),
        "exemplar of the sampled span"
    );
    let client = client_registry.encode(Format::OpenMetrics);
    let expected = format!(
        "rpc_client_call_duration_seconds_count{{rpc_system_name=\"grpc\",rpc_method=\"test.v1.Raw/StreamThenFail\",rpc_response_status_code=\"INTERNAL\",error_type=\"INTERNAL\",server_address=\"127.0.0.1\",server_port=\"{}\"}} 1",
        addr.port()
    );
    assert!(
        client.lines().any(|l| l == expected),
        "{expected}\n{client}"
    );
}

#[tokio::test]
async fn baggage_crosses_the_call_and_the_edge_hook_runs_on_a_grpc_server() {
    use looptel_baggage::{BaggagePolicy, EdgeLayer, from_header};
    use opentelemetry::KeyValue;
    use opentelemetry::baggage::BaggageExt;
    let (server_spans, client_spans) = (Spans::new(), Spans::new());
    let policy = BaggagePolicy::builder()
        .promote(["tenant.id", "region.id"])
        .build();
    let addr = serve!(GrpcServerLayer::new(server_spans.instrumentation()).hook(
        EdgeLayer::new(policy).members(from_header(
            http::HeaderName::from_static("x-region"),
            "region.id",
        ))
    ));
    let mut client = client(client_spans.instrumentation(), addr).await;
    let mut req = call(addr, "test.v1.Raw/Tenant");
    req.headers_mut()
        .insert("x-region", HeaderValue::from_static("eu-west"));
    let cx = opentelemetry::Context::new().with_baggage([KeyValue::new("tenant.id", "acme")]);
    let res = {
        let _attached = cx.attach();
        client.ready().await.expect("ready").call(req)
    }
    .await
    .expect("answered");
    assert_eq!(
        res.headers().get("x-seen-tenant"),
        Some(&HeaderValue::from_static("acme")),
        "the handler ran in a context holding the caller's baggage"
    );
    res.into_body().collect().await.expect("body");
    let server = server_spans.wait_for(1).await;
    let client = client_spans.finished();
    assert_eq!(
        server[0].span_context.trace_id(),
        client[0].span_context.trace_id()
    );
    assert_eq!(code(&server[0]), Some("OK".into()));
    // The edge hook ran inside the gRPC server span: the member it set from
    // the metadata is promoted onto it.
    assert_eq!(attr(&server[0], "region.id"), Some("eu-west".into()));
}

#[tokio::test]
async fn a_client_stream_is_one_span_covering_the_whole_call() {
    let (server_spans, client_spans) = (Spans::new(), Spans::new());
    let addr = serve!(GrpcServerLayer::new(server_spans.instrumentation()));
    let mut client = client(client_spans.instrumentation(), addr).await;
    let req = upload(addr, "test.v1.Raw/Collect");
    let res = send(&mut client, req).await;
    assert_eq!(
        res.headers().get("x-messages"),
        Some(&HeaderValue::from(3_u16))
    );
    res.into_body().collect().await.expect("body");
    let spans = server_spans.wait_for(1).await;
    assert_eq!(spans.len(), 1);
    assert_eq!(code(&spans[0]), Some("OK".into()));
    let took = took(&spans[0]);
    assert!(
        took >= Duration::from_millis(80),
        "the whole upload: {took:?}"
    );
    assert_eq!(client_spans.finished().len(), 1);
}

#[tokio::test]
async fn a_flood_of_random_method_paths_keeps_one_series_and_no_raw_path() {
    use looptel_red_metrics::{Format, Registry, RpcMetrics};
    let (server_spans, client_spans) = (Spans::new(), Spans::new());
    let registry = Registry::new();
    let rpc = RpcMetrics::new(&registry);
    let addr = serve!(
        GrpcServerLayer::new(server_spans.instrumentation())
            .services(["test.v1.Raw"])
            .hook(rpc.server_hook())
    );
    let mut client = client(client_spans.instrumentation(), addr).await;
    for i in 0..40 {
        let res = send(&mut client, call(addr, &format!("attack{i}.Svc/Probe{i}"))).await;
        res.into_body().collect().await.expect("body");
    }
    let spans = server_spans.wait_for(40).await;
    assert_eq!(spans.len(), 40);
    assert!(spans.iter().all(|s| s.name == "_OTHER"));
    let text = registry.encode(Format::Prometheus);
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("rpc_server_call_duration_seconds_count"))
        .collect();
    assert_eq!(
        series,
        [
            "rpc_server_call_duration_seconds_count{rpc_system_name=\"grpc\",rpc_method=\"_OTHER\",rpc_response_status_code=\"UNIMPLEMENTED\",error_type=\"UNIMPLEMENTED\"} 40"
        ]
    );
    assert!(!text.contains("attack"), "no raw path in a label");
}

#[tokio::test]
async fn a_transport_error_is_a_client_failure_with_its_class() {
    let client_spans = Spans::new();
    // A port nothing listens on.
    let unused = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let channel = tonic::transport::Channel::from_shared(format!("http://{unused}"))
        .expect("uri")
        .connect_lazy();
    let mut client = ServiceBuilder::new()
        .layer(GrpcClientLayer::new(client_spans.instrumentation()))
        .service(channel);
    let result = client
        .ready()
        .await
        .expect("ready")
        .call(call(unused, "test.v1.Raw/Long"))
        .await;
    assert!(result.is_err(), "nothing listens");
    let spans = client_spans.finished();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        attr(&spans[0], "error.type"),
        Some("connection_refused".into())
    );
    assert!(matches!(spans[0].status, Status::Error { .. }));
    assert_eq!(code(&spans[0]), None, "no status was received");
}

#[tokio::test]
async fn rpc_dup_also_emits_the_pre_1_39_names_on_spans_and_metrics() {
    use looptel_core::SemconvOptIn;
    use looptel_red_metrics::{Format, Registry, RpcMetrics};
    let dup = SemconvOptIn::parse("http,rpc/dup");
    let (server_spans, client_spans) = (Spans::new(), Spans::new());
    let registry = Registry::new();
    let rpc = RpcMetrics::new(&registry).semconv(&registry, dup);
    let addr = serve!(
        GrpcServerLayer::new(server_spans.instrumentation().with_semconv(dup))
            .hook(rpc.server_hook())
    );
    let mut client = ServiceBuilder::new()
        .layer(
            GrpcClientLayer::new(client_spans.instrumentation().with_semconv(dup))
                .hook(rpc.client_hook()),
        )
        .service(channel(addr).await);
    for method in ["test.v1.Raw/StreamThenFail", "nope.v1.X/Y"] {
        let res = send(&mut client, call(addr, method)).await;
        res.into_body().collect().await.expect("body");
    }
    let spans = server_spans.wait_for(2).await;
    let failed = spans
        .iter()
        .find(|s| s.name == "test.v1.Raw/StreamThenFail")
        .expect("span");
    // Both generations; `rpc.method` keeps the current, full value.
    assert_eq!(attr(failed, "rpc.system.name"), Some("grpc".into()));
    assert_eq!(attr(failed, "rpc.system"), Some("grpc".into()));
    assert_eq!(attr(failed, "rpc.service"), Some("test.v1.Raw".into()));
    assert_eq!(
        attr(failed, "rpc.method"),
        Some("test.v1.Raw/StreamThenFail".into())
    );
    assert_eq!(code(failed), Some("INTERNAL".into()));
    assert_eq!(attr(failed, "rpc.grpc.status_code"), Some(13_i64.into()));
    let other = spans.iter().find(|s| s.name == "_OTHER").expect("span");
    assert_eq!(attr(other, "rpc.service"), None, "no service for _OTHER");
    assert_eq!(attr(other, "rpc.grpc.status_code"), Some(12_i64.into()));
    let client = client_spans.finished();
    let client = client
        .iter()
        .find(|s| s.name == "test.v1.Raw/StreamThenFail")
        .expect("client span");
    assert_eq!(attr(client, "rpc.service"), Some("test.v1.Raw".into()));
    assert_eq!(attr(client, "rpc.grpc.status_code"), Some(13_i64.into()));

    // The metrics: the current histograms and the legacy ones in ms.
    let text = registry.encode(Format::OpenMetrics);
    let port = addr.port();
    for line in [
        "rpc_server_call_duration_seconds_count{rpc_system_name=\"grpc\",rpc_method=\"test.v1.Raw/StreamThenFail\",rpc_response_status_code=\"INTERNAL\",error_type=\"INTERNAL\"} 1".to_owned(),
        "rpc_server_duration_milliseconds_count{rpc_system=\"grpc\",rpc_service=\"test.v1.Raw\",rpc_method=\"StreamThenFail\",rpc_grpc_status_code=\"13\"} 1".to_owned(),
        "rpc_server_duration_milliseconds_count{rpc_system=\"grpc\",rpc_method=\"_OTHER\",rpc_grpc_status_code=\"12\"} 1".to_owned(),
        format!("rpc_client_duration_milliseconds_count{{rpc_system=\"grpc\",rpc_service=\"test.v1.Raw\",rpc_method=\"StreamThenFail\",rpc_grpc_status_code=\"13\",server_address=\"127.0.0.1\",server_port=\"{port}\"}} 1"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
    // Milliseconds: the same call, a thousand times the seconds.
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains("StreamThenFail"))
            .and_then(looptel_tests::sample_value)
            .expect("sum")
    };
    let (s, ms) = (
        sum("rpc_server_call_duration_seconds_sum{"),
        sum("rpc_server_duration_milliseconds_sum{"),
    );
    assert!((ms - s * 1000.0).abs() < 1.0, "{ms} ms vs {s} s");
}

#[tokio::test]
async fn without_rpc_dup_no_legacy_metric_is_registered() {
    use looptel_red_metrics::{Format, Registry, RpcMetrics};
    let registry = Registry::new();
    let _rpc =
        RpcMetrics::new(&registry).semconv(&registry, looptel_core::SemconvOptIn::parse("rpc"));
    let text = registry.encode(Format::OpenMetrics);
    assert!(text.contains("rpc_server_call_duration_seconds"), "{text}");
    assert!(!text.contains("rpc_server_duration_milliseconds"), "{text}");
}

#[tokio::test]
async fn a_bidirectional_stream_is_one_span_on_each_side_covering_the_whole_call() {
    let (server_spans, client_spans) = (Spans::new(), Spans::new());
    let addr = serve!(GrpcServerLayer::new(server_spans.instrumentation()));
    let mut client = client(client_spans.instrumentation(), addr).await;
    let req = upload(addr, "test.v1.Raw/Echo");
    let res = send(&mut client, req).await;
    let mut body = res.into_body();
    // The first message comes back while the others are still to be sent.
    let first = body.frame().await.expect("frame").expect("ok");
    assert!(first.is_data());
    assert!(server_spans.finished().is_empty(), "not ended at the head");
    assert!(client_spans.finished().is_empty(), "nor on the client");
    let rest = body.collect().await.expect("rest");
    assert_eq!(
        rest.trailers().and_then(|t| t.get("grpc-status")),
        Some(&HeaderValue::from_static("0"))
    );
    let spans = server_spans.wait_for(1).await;
    assert_eq!(spans.len(), 1);
    assert_eq!(code(&spans[0]), Some("OK".into()));
    assert!(
        took(&spans[0]) >= Duration::from_millis(80),
        "{:?}",
        took(&spans[0])
    );
    let client = client_spans.wait_for(1).await;
    assert_eq!(client.len(), 1);
    assert_eq!(code(&client[0]), Some("OK".into()));
    assert!(
        took(&client[0]) >= took(&spans[0]),
        "the client's covers the server's"
    );
}

#[tokio::test]
async fn a_missed_deadline_is_deadline_exceeded_on_both_sides() {
    let (server_spans, client_spans) = (Spans::new(), Spans::new());
    let addr = serve!(GrpcServerLayer::new(server_spans.instrumentation()));
    let mut client = client(client_spans.instrumentation(), addr).await;
    let mut req = call(addr, "test.v1.Raw/Slow");
    req.headers_mut()
        .insert("grpc-timeout", HeaderValue::from_static("50m"));
    let err = client
        .ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .expect_err("the channel gives up at the deadline");
    // tonic says CANCELLED here; gRPC's own name for it is DEADLINE_EXCEEDED.
    assert_eq!(
        tonic::Status::from_error(Box::new(err)).code(),
        tonic::Code::Cancelled
    );
    let client = client_spans.wait_for(1).await;
    assert_eq!(code(&client[0]), Some("DEADLINE_EXCEEDED".into()));
    assert_eq!(
        attr(&client[0], "error.type"),
        Some("DEADLINE_EXCEEDED".into())
    );
    assert!(matches!(client[0].status, Status::Error { .. }));
    // The server's own deadline (from the same header, started when the
    // request arrived) and the client's reset race. Nearly always the
    // deadline passes first: tonic drops the handler, a miss, an error of
    // the server's. On a loaded machine the reset can arrive first: the
    // client went away before the server's deadline, which is no server
    // error. Either way the span says which, consistently.
    let server = server_spans.wait_for(1).await;
    assert_eq!(server.len(), 1);
    match code(&server[0]).map(|c| c.to_string()).as_deref() {
        Some("DEADLINE_EXCEEDED") => {
            assert_eq!(
                attr(&server[0], "error.type"),
                Some("DEADLINE_EXCEEDED".into())
            );
            assert!(matches!(server[0].status, Status::Error { .. }));
        }
        Some("CANCELLED") => assert_eq!(server[0].status, Status::Unset),
        other => panic!("the server's span says {other:?}"),
    }
}
