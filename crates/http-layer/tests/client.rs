//! ClientLayer (hyper-util) and the reqwest middleware against a real server
//! on 127.0.0.1: what goes on the wire, and the CLIENT span.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use bytes::Bytes;
use common::{Spans, attr};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use looptel_http_layer::client::ClientLayer;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use tower::{ServiceBuilder, ServiceExt};

/// A server that answers with the trace headers it received.
async fn echo_server() -> SocketAddr {
    let app = Router::new()
        .route(
            "/echo",
            get(|headers: HeaderMap| async move {
                let get = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                format!(
                    "{}|{}|{}",
                    get("traceparent"),
                    get("tracestate"),
                    headers.get_all("traceparent").iter().count()
                )
            }),
        )
        .route(
            "/missing",
            get(|| async { (http::StatusCode::NOT_FOUND, "no") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

async fn call(spans: &Spans, uri: String) -> Result<(http::StatusCode, String), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(ClientLayer::new(spans.instrumentation()))
        .service(client);
    let req = http::Request::get(uri).body(Empty::new()).expect("req");
    match svc.oneshot(req).await {
        Ok(res) => {
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        }
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn injects_exactly_one_traceparent_of_the_client_span() {
    let addr = echo_server().await;
    let spans = Spans::new();
    let (status, body) = call(&spans, format!("http://user:pw@{addr}/echo?x=1"))
        .await
        .expect("ok");
    assert_eq!(status, 200);
    let span = spans.one();
    let (tp, rest) = body.split_once('|').expect("echo");
    assert_eq!(
        tp,
        format!(
            "00-{}-{}-01",
            span.span_context.trace_id(),
            span.span_context.span_id()
        )
    );
    assert!(rest.ends_with("|1"), "one traceparent line: {body}");
    assert_eq!(span.name, "GET");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(
        attr(&span, "url.full"),
        Some(format!("http://{addr}/echo?x=1"))
    );
    assert_eq!(attr(&span, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(attr(&span, "server.port"), Some(addr.port().to_string()));
    assert_eq!(
        attr(&span, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(span.status, Status::Unset);
}

#[tokio::test]
async fn the_current_context_is_the_parent() {
    let addr = echo_server().await;
    let spans = Spans::new();
    let parent = opentelemetry::Context::new().with_remote_span_context(
        opentelemetry::trace::SpanContext::new(
            opentelemetry::trace::TraceId::from(0xabc_u128),
            opentelemetry::trace::SpanId::from(0xdef_u64),
            opentelemetry::trace::TraceFlags::SAMPLED,
            true,
            "vendor=x".parse().expect("tracestate"),
        ),
    );
    use opentelemetry::context::FutureExt as _;
    let (_, body) = call(&spans, format!("http://{addr}/echo"))
        .with_context(parent)
        .await
        .expect("ok");
    let span = spans.one();
    assert_eq!(
        span.span_context.trace_id(),
        opentelemetry::trace::TraceId::from(0xabc_u128)
    );
    assert_eq!(
        span.parent_span_id,
        opentelemetry::trace::SpanId::from(0xdef_u64)
    );
    assert!(body.contains("|vendor=x|"), "{body}");
}

#[tokio::test]
async fn status_400_and_above_is_an_error_for_clients() {
    let addr = echo_server().await;
    let spans = Spans::new();
    let (status, _) = call(&spans, format!("http://{addr}/missing"))
        .await
        .expect("ok");
    assert_eq!(status, 404);
    let span = spans.one();
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(attr(&span, "error.type").as_deref(), Some("404"));
}

#[tokio::test]
async fn a_refused_connection_sets_a_low_cardinality_error_type() {
    let closed = looptel_tests::closed_port();
    let spans = Spans::new();
    let err = call(&spans, format!("http://{closed}/x"))
        .await
        .expect_err("refused");
    assert!(!err.is_empty());
    let span = spans.one();
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(
        attr(&span, "error.type").as_deref(),
        Some("connection_refused")
    );
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn reqwest_middleware_traces_and_propagates() {
    use looptel_http_layer::reqwest::TracingMiddleware;
    let addr = echo_server().await;
    let spans = Spans::new();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TracingMiddleware::new(spans.instrumentation()))
        .build();
    let body = client
        .get(format!("http://{addr}/echo"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    let span = spans.one();
    assert!(
        body.starts_with(&format!(
            "00-{}-{}-01|",
            span.span_context.trace_id(),
            span.span_context.span_id()
        )),
        "{body}"
    );
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(
        attr(&span, "http.response.status_code").as_deref(),
        Some("200")
    );

    let closed = looptel_tests::closed_port();
    let spans = Spans::new();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TracingMiddleware::new(spans.instrumentation()))
        .build();
    assert!(
        client
            .get(format!("http://{closed}/x"))
            .send()
            .await
            .is_err()
    );
    let span = spans.one();
    assert!(matches!(span.status, Status::Error { .. }));
    assert_ne!(attr(&span, "error.type"), None);
}
