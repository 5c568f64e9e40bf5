//! ServerLayer with axum: names, attributes, status rules, propagation,
//! panics, streaming, filters and public endpoints.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use bytes::Bytes;
use common::{Spans, attr, current_ids};
use http_body_util::BodyExt;
use looptel_http_layer::server::{AllPublic, FilterExt, ServerLayer, Untraced, skip_paths};
use opentelemetry::trace::{SpanKind, Status};
use tower::ServiceExt;

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn app(spans: &Spans) -> Router {
    Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .route("/orders", post(|| async { StatusCode::CREATED }))
        .route(
            "/fail/{code}",
            get(
                |axum::extract::Path(code): axum::extract::Path<u16>| async move {
                    StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT)
                },
            ),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("handler exploded");
                }
                "unreachable"
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(ServerLayer::new(spans.instrumentation()))
}

async fn send(app: Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Bytes) {
    let res = app.oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, bytes)
}

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

#[tokio::test]
async fn request_text_on_spans_is_bounded() {
    let long = "a".repeat(5000);
    let req = |host_path: &str| {
        Request::get(format!("{host_path}?q={long}"))
            .header("user-agent", long.as_str())
            .header("x-forwarded-for", format!("{long}, 10.0.0.1"))
            .body(Body::empty())
            .expect("request")
    };
    // By default: 1 KiB of a caller's text at most, routed or not.
    let spans = Spans::new();
    send(app(&spans), req(&format!("/orders/{long}"))).await;
    send(app(&spans), req(&format!("/nowhere/{long}"))).await;
    let all = spans.finished();
    assert_eq!(all.len(), 2);
    for span in all {
        for key in [
            "url.path",
            "url.query",
            "user_agent.original",
            "client.address",
        ] {
            let v = attr(&span, key).unwrap_or_else(|| panic!("{key} on {}", span.name));
            assert_eq!(v.len(), looptel_core::DEFAULT_REQUEST_VALUE_LIMIT, "{key}");
        }
    }
    // As configured (OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT, via telemetry).
    let spans = Spans::new();
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .layer(ServerLayer::new(
            spans.instrumentation().with_value_limit(16),
        ));
    send(app, req(&format!("/orders/{long}"))).await;
    let span = spans.one();
    assert_eq!(attr(&span, "url.path").as_deref(), Some("/orders/aaaaaaaa"));
    assert_eq!(
        attr(&span, "user_agent.original").map(|v| v.len()),
        Some(16)
    );
}

#[tokio::test]
async fn personal_and_secret_query_parameters_are_redacted_on_the_span() {
    let spans = Spans::new();
    let req = Request::get(
        "/orders/42?expand=items&email=ada%40example.com&access_token=abc&phone_number=%2B336",
    )
    .body(Body::empty())
    .expect("request");
    let (status, _, _) = send(app(&spans), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        attr(&spans.one(), "url.query").as_deref(),
        Some("expand=items&email=REDACTED&access_token=REDACTED&phone_number=REDACTED")
    );
}

#[tokio::test]
async fn span_is_named_by_route_and_carries_the_conventions() {
    let spans = Spans::new();
    let req = Request::get("/orders/42?expand=items")
        .header("host", "shop.example:8080")
        .header("user-agent", "curl/8.0")
        .header("x-forwarded-for", "203.0.113.7, 10.0.0.1")
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = send(app(&spans), req).await;
    assert_eq!(status, StatusCode::OK);
    let span = spans.one();
    assert_eq!(span.name, "GET /orders/{id}");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(attr(&span, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(&span, "http.route").as_deref(), Some("/orders/{id}"));
    assert_eq!(attr(&span, "url.path").as_deref(), Some("/orders/42"));
    assert_eq!(attr(&span, "url.query").as_deref(), Some("expand=items"));
    assert_eq!(attr(&span, "url.scheme").as_deref(), Some("http"));
    assert_eq!(
        attr(&span, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(&span, "network.protocol.version").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        attr(&span, "server.address").as_deref(),
        Some("shop.example")
    );
    assert_eq!(attr(&span, "server.port").as_deref(), Some("8080"));
    assert_eq!(
        attr(&span, "client.address").as_deref(),
        Some("203.0.113.7")
    );
    assert_eq!(
        attr(&span, "user_agent.original").as_deref(),
        Some("curl/8.0")
    );
    assert_eq!(attr(&span, "error.type"), None);
}

#[tokio::test]
async fn unmatched_requests_have_no_route_and_a_method_only_name() {
    let spans = Spans::new();
    let (status, _, _) = send(app(&spans), get_req("/no/such/thing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let span = spans.one();
    assert_eq!(span.name, "GET");
    assert_eq!(attr(&span, "http.route"), None, "omitted, not empty");
    assert_eq!(span.status, Status::Unset);
}

#[tokio::test]
async fn unknown_methods_are_other_and_the_span_is_named_http() {
    let spans = Spans::new();
    let req = Request::builder()
        .method("BREW")
        .uri("/orders/1")
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = send(app(&spans), req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let span = spans.one();
    // {method} is HTTP for _OTHER; the matched route is still the target.
    assert_eq!(span.name, "HTTP /orders/{id}");
    assert_eq!(
        attr(&span, "http.request.method").as_deref(),
        Some("_OTHER")
    );
    assert_eq!(
        attr(&span, "http.request.method_original").as_deref(),
        Some("BREW")
    );
}

#[tokio::test]
async fn only_server_errors_set_error_status() {
    for (code, error) in [
        (500, true),
        (503, true),
        (404, false),
        (422, false),
        (499, false),
    ] {
        let spans = Spans::new();
        let (status, _, _) = send(app(&spans), get_req(&format!("/fail/{code}"))).await;
        assert_eq!(status.as_u16(), code);
        let span = spans.one();
        assert_eq!(
            attr(&span, "http.response.status_code"),
            Some(code.to_string())
        );
        if error {
            assert!(matches!(span.status, Status::Error { .. }), "{code}");
            assert_eq!(attr(&span, "error.type"), Some(code.to_string()));
        } else {
            assert_eq!(span.status, Status::Unset, "{code}");
            assert_eq!(attr(&span, "error.type"), None, "{code}");
        }
    }
}

#[tokio::test]
async fn a_panicking_handler_is_a_recorded_500_not_a_lost_span() {
    let spans = Spans::new();
    let (status, _, _) = send(app(&spans), get_req("/panic")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let span = spans.one();
    assert_eq!(span.name, "GET /panic");
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(
        attr(&span, "http.response.status_code").as_deref(),
        Some("500")
    );
    assert_eq!(attr(&span, "error.type").as_deref(), Some("500"));
    let event = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("exception event");
    let message = event
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "exception.message");
    assert_eq!(
        message.map(|kv| kv.value.to_string()).as_deref(),
        Some("handler exploded")
    );
}

#[tokio::test]
async fn the_remote_parent_is_continued() {
    let spans = Spans::new();
    let req = Request::get("/orders/1")
        .header("traceparent", TP)
        .body(Body::empty())
        .expect("req");
    send(app(&spans), req).await;
    let span = spans.one();
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(span.parent_span_id.to_string(), "b7ad6b7169203331");
    assert!(span.parent_span_is_remote);
}

#[tokio::test]
async fn an_unsampled_caller_is_followed_without_the_sampler_only_when_declared() {
    const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    // A sampler that samples everything, whatever the parent says.
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_simple_exporter(exporter.clone())
        .build();
    let seen = Arc::new(Mutex::new(None));
    let app = |inst: looptel_core::Instrumentation| {
        let seen = seen.clone();
        Router::new()
            .route(
                "/x",
                get(move || {
                    let seen = seen.clone();
                    async move {
                        *seen.lock().expect("lock") = current_ids();
                        "x"
                    }
                }),
            )
            .layer(ServerLayer::new(inst).response_traceparent(true))
    };
    let req = || {
        Request::get("/x")
            .header("traceparent", UNSAMPLED)
            .header("tracestate", "vendor=1")
            .body(Body::empty())
            .expect("req")
    };
    let inst =
        || looptel_core::Instrumentation::new(&provider, looptel_core::Propagator::default());

    // Undeclared: the sampler decides, and this one samples.
    send(app(inst()), req()).await;
    assert_eq!(exporter.get_finished_spans().expect("spans").len(), 1);
    exporter.reset();

    // Declared parent-based: the caller's decision is kept without asking.
    let (status, headers, _) = send(app(inst().parent_based(true)), req()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(exporter.get_finished_spans().expect("spans").is_empty());
    let (trace_id, span_id) = seen.lock().expect("lock").clone().expect("a current span");
    assert_eq!(trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_ne!(
        span_id, "b7ad6b7169203331",
        "a span of its own, not the caller's"
    );
    assert_eq!(
        headers["traceparent"],
        format!("00-{trace_id}-{span_id}-00"),
        "the response names the request's (unsampled) span"
    );

    // A public endpoint does not take the outside caller's decision.
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(ServerLayer::new(inst().parent_based(true)).public_endpoint(AllPublic));
    send(app, req()).await;
    let spans = exporter.get_finished_spans().expect("spans");
    assert_eq!(spans.len(), 1, "a new, sampled root");
    assert_ne!(
        spans[0].span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
}

#[tokio::test]
async fn malformed_or_non_utf8_traceparent_starts_a_new_trace_and_never_fails() {
    for bad in [
        &b"00-zz-yy-01"[..],
        b"\xff\xfe\xfd",
        b"",
        TP.to_uppercase().as_bytes(),
    ] {
        let spans = Spans::new();
        let req = Request::get("/orders/1")
            .header(
                "traceparent",
                http::HeaderValue::from_bytes(bad).expect("opaque"),
            )
            .header("tracestate", "a=1")
            .body(Body::empty())
            .expect("req");
        let (status, _, _) = send(app(&spans), req).await;
        assert_eq!(status, StatusCode::OK);
        let span = spans.one();
        assert_ne!(
            span.span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID);
        assert_eq!(span.span_context.trace_state().header(), "");
    }
}

#[tokio::test]
async fn public_endpoints_start_a_linked_root() {
    let spans = Spans::new();
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(ServerLayer::new(spans.instrumentation()).public_endpoint(AllPublic));
    let req = Request::get("/x")
        .header("traceparent", TP)
        .body(Body::empty())
        .expect("req");
    send(app, req).await;
    let span = spans.one();
    assert_ne!(
        span.span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    let link = span.links.iter().next().expect("a link to the caller");
    assert_eq!(
        link.span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(link.span_context.span_id().to_string(), "b7ad6b7169203331");

    // A per-request rule: only requests without an internal marker are public.
    let spans = Spans::new();
    let rule = |r: &Request<Body>| !r.headers().contains_key("x-internal");
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(ServerLayer::new(spans.instrumentation()).public_endpoint(rule));
    let req = Request::get("/x")
        .header("traceparent", TP)
        .header("x-internal", "1")
        .body(Body::empty())
        .expect("req");
    send(app, req).await;
    assert_eq!(
        spans.one().span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
}

#[tokio::test]
async fn filtered_requests_get_no_span_and_are_marked_for_inner_layers() {
    let spans = Spans::new();
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let app = Router::new()
        .route(
            "/health",
            get(move |req: Request<Body>| {
                let seen = seen2.clone();
                async move {
                    *seen.lock().expect("lock") =
                        Some(req.extensions().get::<Untraced>().is_some());
                    "ok"
                }
            }),
        )
        .route("/orders/{id}", get(|| async { "order" }))
        .layer(
            ServerLayer::new(spans.instrumentation()).filter(
                skip_paths(["/health", "/metrics"])
                    .and(|r: &Request<Body>| r.method() != http::Method::OPTIONS),
            ),
        );
    send(app.clone(), get_req("/health")).await;
    assert!(spans.finished().is_empty());
    assert_eq!(*seen.lock().expect("lock"), Some(true));
    send(
        app.clone(),
        Request::options("/orders/1")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert!(spans.finished().is_empty());
    send(app, get_req("/orders/1")).await;
    assert_eq!(spans.finished().len(), 1);
}

#[tokio::test]
async fn response_traceparent_points_to_the_server_span() {
    let spans = Spans::new();
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(ServerLayer::new(spans.instrumentation()).response_traceparent(true));
    let req = Request::get("/x")
        .header("traceparent", TP)
        .body(Body::empty())
        .expect("req");
    let (_, headers, _) = send(app, req).await;
    let span = spans.one();
    assert_eq!(headers.get_all("traceparent").iter().count(), 1);
    assert_eq!(
        headers["traceparent"],
        format!(
            "00-{}-{}-01",
            span.span_context.trace_id(),
            span.span_context.span_id()
        )
    );
    // Off by default.
    let spans = Spans::new();
    let (_, headers, _) = send(app_default(&spans), get_req("/x")).await;
    assert!(headers.get("traceparent").is_none());
}

fn app_default(spans: &Spans) -> Router {
    Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(ServerLayer::new(spans.instrumentation()))
}

#[tokio::test]
async fn handlers_and_tracing_spans_see_the_server_span_as_current() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::new();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(spans.provider.tracer("app")));
    let _default = tracing::subscriber::set_default(subscriber);
    let ids = Arc::new(Mutex::new(None));
    let ids2 = ids.clone();
    let app = Router::new()
        .route(
            "/x",
            get(move || {
                let ids = ids2.clone();
                async move {
                    *ids.lock().expect("lock") = current_ids();
                    let child = tracing::info_span!("business.step");
                    let _e = child.enter();
                    "x"
                }
            }),
        )
        .layer(ServerLayer::new(spans.instrumentation()));
    send(app, get_req("/x")).await;
    let finished = spans.finished();
    let server = finished
        .iter()
        .find(|s| s.name == "GET /x")
        .expect("server span");
    let child = finished
        .iter()
        .find(|s| s.name == "business.step")
        .expect("child span");
    let (trace, span) = ids.lock().expect("lock").clone().expect("ids in handler");
    assert_eq!(trace, server.span_context.trace_id().to_string());
    assert_eq!(span, server.span_context.span_id().to_string());
    assert_eq!(child.parent_span_id, server.span_context.span_id());
    assert_eq!(
        child.span_context.trace_id(),
        server.span_context.trace_id()
    );
}

/// A router whose `/stream` body yields what is sent on the returned channel.
fn streaming_app(
    spans: &Spans,
) -> (
    Router,
    tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let app = Router::new()
        .route(
            "/stream",
            get(move || {
                let rx = rx.lock().expect("lock").take().expect("once");
                async move {
                    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|item| (item, rx))
                    });
                    Body::from_stream(stream)
                }
            }),
        )
        .layer(ServerLayer::new(spans.instrumentation()));
    (app, tx)
}

#[tokio::test]
async fn the_span_ends_when_a_streaming_body_ends() {
    let spans = Spans::new();
    let (app, tx) = streaming_app(&spans);
    let res = app.oneshot(get_req("/stream")).await.expect("infallible");
    let mut body = res.into_body();
    tx.send(Ok(Bytes::from_static(b"part 1")))
        .await
        .expect("send");
    let frame = body.frame().await.expect("frame").expect("ok");
    assert_eq!(frame.into_data().expect("data"), "part 1");
    assert!(
        spans.finished().is_empty(),
        "still streaming: the span is open"
    );
    drop(tx);
    assert!(body.frame().await.is_none());
    let span = spans.one();
    assert_eq!(span.status, Status::Unset);
}

#[tokio::test]
async fn a_client_that_goes_away_is_not_an_error() {
    let spans = Spans::new();
    let (app, _tx) = streaming_app(&spans);
    let res = app.oneshot(get_req("/stream")).await.expect("infallible");
    drop(res); // the connection is gone mid-body
    let span = spans.one();
    assert_eq!(span.status, Status::Unset);
    assert_eq!(attr(&span, "error.type"), None);

    // A request future dropped before the handler answered ends the span too.
    let spans = Spans::new();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async { std::future::pending::<&str>().await }),
        )
        .layer(ServerLayer::new(spans.instrumentation()));
    let fut = app.oneshot(get_req("/slow"));
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(10), fut)
            .await
            .is_err()
    );
    let finished = spans.finished();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].status, Status::Unset);
}

#[tokio::test]
async fn a_service_error_sets_error_type() {
    use tower::ServiceBuilder;
    let spans = Spans::new();
    let svc = ServiceBuilder::new()
        .layer(ServerLayer::new(spans.instrumentation()))
        .service_fn(|_req: Request<Body>| async {
            Err::<http::Response<Body>, _>(std::io::Error::other("backend gone"))
        });
    let r = svc.oneshot(get_req("/x")).await;
    assert!(r.is_err());
    let span = spans.one();
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(
        attr(&span, "error.type").as_deref(),
        Some("std::io::error::Error")
    );
}

#[tokio::test]
async fn random_paths_never_reach_the_name_or_the_route() {
    let spans = Spans::new();
    let app = app(&spans);
    let mut paths = Vec::new();
    for i in 0..300_u32 {
        let seed = i.wrapping_mul(2_654_435_761);
        let path = format!("/{:x}/{}/%E2%9C%93-{}", seed, i % 7, seed % 1000);
        paths.push(path.clone());
        let method = ["GET", "POST", "DELETE", "PURGE", "get"][i as usize % 5];
        let req = Request::builder()
            .method(method)
            .uri(&path)
            .body(Body::empty())
            .expect("req");
        let (status, _, _) = send(app.clone(), req).await;
        assert!(status.is_client_error(), "{path}: {status}");
    }
    let finished = spans.finished();
    assert_eq!(finished.len(), paths.len());
    for (span, path) in finished.iter().zip(&paths) {
        assert!(
            ["GET", "POST", "DELETE", "HTTP"].contains(&&*span.name),
            "{}",
            span.name
        );
        assert_eq!(attr(span, "http.route"), None);
        for kv in &span.attributes {
            // url.path is required by the conventions and is the only place the path may appear.
            if kv.key.as_str() != "url.path" {
                assert!(
                    !kv.value.to_string().contains(&path[1..]),
                    "{} leaks {path}",
                    kv.key
                );
            }
        }
    }
}

#[tokio::test]
async fn without_a_tracer_context_still_flows_and_nothing_fails() {
    let inst = looptel_core::Instrumentation::disabled(looptel_core::Propagator::default());
    let ids = Arc::new(Mutex::new(None));
    let ids2 = ids.clone();
    let app = Router::new()
        .route(
            "/x",
            get(move || {
                let ids = ids2.clone();
                async move {
                    *ids.lock().expect("lock") = current_ids();
                    "x"
                }
            }),
        )
        .layer(ServerLayer::new(inst));
    let req = Request::get("/x")
        .header("traceparent", TP)
        .body(Body::empty())
        .expect("req");
    let (status, _, _) = send(app, req).await;
    assert_eq!(status, StatusCode::OK);
    let (trace, _) = ids
        .lock()
        .expect("lock")
        .clone()
        .expect("caller's context is current");
    assert_eq!(trace, "0af7651916cd43dd8448eb211c80319c");
}

#[tokio::test]
async fn outside_the_router_the_route_layer_renames_the_span() {
    use looptel_http_layer::server::RouteLayer;
    use tower::ServiceBuilder;
    let spans = Spans::new();
    let router = Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .layer(RouteLayer);
    let app = ServiceBuilder::new()
        .layer(ServerLayer::new(spans.instrumentation()))
        .service(router);
    let res = app.oneshot(get_req("/orders/7")).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    drop(res);
    let span = spans.one();
    assert_eq!(span.name, "GET /orders/{id}");
    assert_eq!(attr(&span, "http.route").as_deref(), Some("/orders/{id}"));

    // Without it, the outer layer cannot know the route.
    let spans = Spans::new();
    let router = Router::new().route("/orders/{id}", get(|| async { "order" }));
    let app = ServiceBuilder::new()
        .layer(ServerLayer::new(spans.instrumentation()))
        .service(router);
    drop(app.oneshot(get_req("/orders/7")).await.expect("infallible"));
    let span = spans.one();
    assert_eq!(span.name, "GET");
    assert_eq!(attr(&span, "http.route"), None);
}
