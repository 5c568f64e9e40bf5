//! Two services over real HTTP on 127.0.0.1: the edge takes `tenant.id` from
//! a header, the downstream service sees it on its spans and log lines with
//! no code of its own; denied members never cross.

use looptel_tests::CapturedSpans;
use looptel_tests::attr;
use looptel_tests::serve;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http::HeaderName;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use looptel_baggage::{BaggagePolicy, EdgeLayer, from_header};
use looptel_http_layer::client::ClientLayer;
use looptel_http_layer::server::ServerLayer;
use looptel_logs::JsonLogs;
use looptel_telemetry::Telemetry;
use looptel_tests::SharedBuf;
use tower::{Service, ServiceBuilder, ServiceExt};

type Downstream = looptel_http_layer::client::Client<
    Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
>;

#[tokio::test]
async fn tenant_reaches_the_downstream_spans_and_logs_and_pii_stays_home() {
    let policy = BaggagePolicy::builder().promote(["tenant.id"]).build();

    // Downstream service B: server layer + edge layer (trusting its callers),
    // a handler that only logs and opens a child span.
    let b_spans = CapturedSpans::default();
    let b_logs = SharedBuf::default();
    let b = Telemetry::builder()
        .service_name("inventory")
        .span_exporter(b_spans.clone())
        .promote_baggage(policy.promotion())
        .baggage_policy(policy.inject_policy())
        .logs(JsonLogs::builder().output(b_logs.clone()))
        .build()
        .expect("telemetry b");
    let b_inst = b.instrumentation();
    let (subscriber, b_guard) = b.into_subscriber();
    let _default = tracing::subscriber::set_default(subscriber);
    let b_addr = serve(
        Router::new()
            .route(
                "/stock",
                get(|headers: http::HeaderMap| async move {
                    let _span = tracing::info_span!("Inventory.StockService.Check").entered();
                    tracing::info!("checking stock");
                    headers
                        .get("baggage")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                }),
            )
            .layer(EdgeLayer::new(policy.clone()))
            .layer(ServerLayer::new(b_inst)),
    )
    .await;

    // Edge service A: takes tenant.id from a verified header, calls B.
    let a_spans = CapturedSpans::default();
    let a = Telemetry::builder()
        .service_name("gateway")
        .span_exporter(a_spans.clone())
        .promote_baggage(policy.promotion())
        .baggage_policy(policy.inject_policy())
        .logs(JsonLogs::builder().output(SharedBuf::default()))
        .build()
        .expect("telemetry a");
    let a_inst = a.instrumentation();
    let (_a_subscriber, a_guard) = a.into_subscriber();
    let client = ServiceBuilder::new()
        .layer(ClientLayer::new(a_inst.clone()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let a_addr = serve(
        Router::new()
            .route(
                "/orders",
                get(move |State(mut client): State<Downstream>| async move {
                    let req = http::Request::get(format!("http://{b_addr}/stock"))
                        .body(Empty::<Bytes>::new())
                        .expect("req");
                    let res = client
                        .ready()
                        .await
                        .expect("ready")
                        .call(req)
                        .await
                        .expect("call b");
                    let body = res.into_body().collect().await.expect("body").to_bytes();
                    String::from_utf8_lossy(&body).into_owned()
                }),
            )
            .with_state(client)
            .layer(EdgeLayer::new(policy.clone()).members(from_header(
                HeaderName::from_static("x-tenant-id"),
                "tenant.id",
            )))
            .layer(ServerLayer::new(a_inst)),
    )
    .await;

    // The outside caller sends a tenant header, and baggage with personal data.
    let res = reqwest::Client::new()
        .get(format!("http://{a_addr}/orders"))
        .header("x-tenant-id", "acme")
        .header("baggage", "user.email=a%40example.com,campaign=spring")
        .send()
        .await
        .expect("request");
    let seen_by_b = res.text().await.expect("body");

    drop(_default);
    b_guard.shutdown().expect("flush b");
    a_guard.shutdown().expect("flush a");

    // On the wire to B: tenant and the harmless member, never the email.
    let mut members: Vec<&str> = seen_by_b.split(',').collect();
    members.sort_unstable();
    assert_eq!(members, ["campaign=spring", "tenant.id=acme"]);
    assert!(policy.stats().denied >= 1);

    // B's server span and child span carry tenant.id; so do its log lines.
    let spans = b_spans.spans();
    let server = spans
        .iter()
        .find(|s| s.name == "GET /stock")
        .expect("B server span");
    let child = spans
        .iter()
        .find(|s| s.name == "Inventory.StockService.Check")
        .expect("B child span");
    assert_eq!(attr(server, "tenant.id").as_deref(), Some("acme"));
    assert_eq!(attr(child, "tenant.id").as_deref(), Some("acme"));
    assert_eq!(
        attr(server, "campaign"),
        None,
        "only allow-listed keys are promoted"
    );
    let line = b_logs
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "checking stock")
        .expect("B log line");
    assert_eq!(line["tenant.id"], "acme");
    assert_eq!(line["trace_id"], child.span_context.trace_id().to_string());
    // And A's spans, including its CLIENT span, carry it too.
    let a_spans = a_spans.spans();
    assert!(
        a_spans
            .iter()
            .all(|s| attr(s, "tenant.id").as_deref() == Some("acme")),
        "{a_spans:#?}"
    );
    assert_eq!(
        server.span_context.trace_id(),
        a_spans[0].span_context.trace_id()
    );
}
