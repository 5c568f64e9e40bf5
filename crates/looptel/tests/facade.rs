//! The facade as a service uses it: one `init`, the layer and the routes
//! from the handle, a request served, and what `/metrics` then shows —
//! the request's RED series, telemetry's own drop counters (registered by
//! `init`, not by the service), the dependencies' readiness.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

async fn body(res: axum::response::Response) -> String {
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_init_one_layer_and_metrics_probes_and_drops_on_one_registry() {
    let lt = looptel::builder()
        .service_name("facade-test")
        .service_version("0.0.1")
        .init()
        .expect("telemetry starts");
    let app: Router = Router::new()
        .route("/hello/{name}", get(|| async { "hello" }))
        .layer(lt.http_server())
        .merge(lt.routes());

    let res = app
        .clone()
        .oneshot(
            http::Request::get("/hello/ada")
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("served");
    assert_eq!(res.status(), 200);
    let traceparent = res
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("the response names the request's span")
        .to_owned();
    assert!(
        traceparent.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{traceparent}"
    );
    assert_eq!(body(res).await, "hello");

    // A dependency, down until it says up: readiness follows.
    let db = lt.health().dependency("db");
    let ready = |app: Router| async move {
        app.oneshot(
            http::Request::get("/health/ready")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("served")
    };
    let res = ready(app.clone()).await;
    assert_eq!(res.status(), 503);
    assert!(body(res).await.contains(r#""dependency":"db""#));
    db.up();
    assert_eq!(ready(app.clone()).await.status(), 200);

    let res = app
        .clone()
        .oneshot(
            http::Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("served");
    let text = body(res).await;
    let request = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains(r#"http_route="/hello/{name}""#)
        })
        .unwrap_or_else(|| panic!("the request's series: {text}"));
    assert!(request.ends_with(" 1"), "{request}");
    // The probes and the scrape are neither traced nor measured.
    assert!(!text.contains(r#"http_route="/health/ready""#), "{text}");
    for drops in [
        "looptel_spans_dropped_total",
        "looptel_log_lines_dropped_total",
        "looptel_baggage_members_denied_total",
        "looptel_metric_exports_failed_total",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(drops)),
            "{drops} on /metrics without the service wiring it: {text}"
        );
    }
    assert!(
        text.contains(r#"looptel_dependency_up{dependency="db"} 1"#),
        "{text}"
    );
    // Who this is, for Prometheus and incident cards: the service, its
    // version, this process (a fresh UUID), and when it started.
    let info = text
        .lines()
        .find(|l| l.starts_with("target_info{"))
        .unwrap_or_else(|| panic!("no target_info: {text}"));
    assert!(
        info.starts_with(r#"target_info{service_name="facade-test",service_version="0.0.1",service_instance_id=""#)
            && info.ends_with("} 1"),
        "{info}"
    );
    assert!(text.contains("# TYPE target_info gauge"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("process_start_time_seconds "))
    );
    assert!(text.contains("# TYPE looptel_change_time_seconds gauge"));
    lt.instruments()
        .changes()
        .record("config", "limits reloaded");
    let res = app
        .clone()
        .oneshot(
            http::Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("served");
    assert!(body(res).await.contains(
        r#"looptel_change_time_seconds{change_kind="config",change_what="limits reloaded"}"#
    ));
    lt.shutdown().expect("flushed");
}

#[cfg(feature = "reqwest")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_requests_are_traced_and_timed_on_the_same_registry() {
    let lt = looptel::builder()
        .service_name("facade-client-test")
        .init()
        .expect("telemetry starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let upstream: Router = Router::new().route(
        "/items",
        get(|headers: http::HeaderMap| async move {
            // The context reached the callee.
            assert!(headers.contains_key("traceparent"));
            (http::StatusCode::SERVICE_UNAVAILABLE, "down")
        }),
    );
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(lt.reqwest())
        .build();
    let res = client
        .get(format!("http://{addr}/items"))
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status(), 503);
    let text = lt
        .instruments()
        .registry()
        .encode(looptel::metrics::Format::Prometheus);
    let line = text
        .lines()
        .find(|l| l.starts_with("http_client_request_duration_seconds_count{"))
        .unwrap_or_else(|| panic!("the call's series: {text}"));
    assert!(
        line.contains(r#"http_response_status_code="503""#) && line.ends_with(" 1"),
        "{line}"
    );
    lt.shutdown().expect("flushed");
}
