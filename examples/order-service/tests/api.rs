//! The order API through `app()`, with its telemetry: span names, statuses,
//! log levels and trace ids, on an in-memory exporter and captured logs.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use looptel::logs::JsonLogs;
use looptel::telemetry::Telemetry;
use looptel_tests::CapturedSpans;
use looptel_tests::SharedBuf;
use looptel_tests::attr;
use opentelemetry::trace::Status;
use opentelemetry_sdk::trace::SpanData;
use order_service::faults::{FaultSwitch, Faults};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Observed {
    status: StatusCode,
    body: Value,
    spans: Vec<SpanData>,
    logs: Vec<Value>,
}

/// The inventory on 127.0.0.1, traced by `inst`, acting on `faults`, and
/// a client of it.
async fn inventory(
    inst: &looptel::core::Instrumentation,
    metrics: &order_service::Metrics,
    faults: FaultSwitch,
) -> order_service::inventory::Inventory {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (server_inst, server_metrics) = (inst.clone(), metrics.clone());
    tokio::spawn(async move {
        order_service::inventory::serve(
            listener,
            server_inst,
            &server_metrics,
            faults,
            std::future::pending(),
        )
        .await
    });
    order_service::inventory::client(inst.clone(), metrics, addr).expect("client")
}

/// Sends one request to `app()` with telemetry installed for this thread.
async fn call(req: Request<Body>) -> Observed {
    call_with(FaultSwitch::new(), req).await
}

/// [`call`], the inventory acting on `faults`.
async fn call_with(faults: FaultSwitch, req: Request<Body>) -> Observed {
    let spans = CapturedSpans::default();
    let out = SharedBuf::default();
    let policy = order_service::baggage_policy();
    let t = Telemetry::builder()
        .service_name("order-service")
        .promote_baggage(policy.promotion())
        .baggage_policy(policy.inject_policy())
        .service_version("9.9.9")
        .deployment_environment("test")
        .span_exporter(spans.clone())
        .logs(JsonLogs::builder().output(out.clone()))
        .build()
        .expect("telemetry");
    let inst = t.instrumentation();
    let (subscriber, guard) = t.into_subscriber();
    let _default = tracing::subscriber::set_default(subscriber);
    let metrics = order_service::Metrics::new();
    let inventory = inventory(&inst, &metrics, faults).await;
    let res = order_service::app(inst, policy, metrics, inventory)
        .expect("app")
        .oneshot(req)
        .await
        .expect("infallible");
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    drop(_default);
    guard.shutdown().expect("flush");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let spans = spans.spans();
    Observed {
        status,
        body,
        spans,
        logs: out.json_lines(),
    }
}

fn post(body: Value) -> Request<Body> {
    Request::post("/orders")
        .header("content-type", "application/json")
        .header("x-tenant-id", "acme")
        .body(Body::from(body.to_string()))
        .expect("request")
}

fn place_order_span(o: &Observed) -> &SpanData {
    o.spans
        .iter()
        .find(|s| s.name == "Order.OrderService.PlaceOrder")
        .expect("a PlaceOrder span")
}

#[tokio::test]
async fn a_placed_order_logs_with_the_trace_id_of_its_span() {
    let o = call(post(
        json!({"customer_id": "c-1", "items": [{"sku": "book", "quantity": 2}]}),
    ))
    .await;
    assert_eq!(o.status, StatusCode::CREATED);
    assert_eq!(o.body["status"], "placed");
    let span = place_order_span(&o);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(attr(span, "order.id").as_deref(), o.body["id"].as_str());
    let server = o
        .spans
        .iter()
        .find(|s| s.name == "POST /orders")
        .expect("server span");
    assert_eq!(
        span.parent_span_id,
        server.span_context.span_id(),
        "business span is a child of the server span"
    );
    assert_eq!(span.span_context.trace_id(), server.span_context.trace_id());
    let line = o
        .logs
        .iter()
        .find(|l| l["message"] == "order placed")
        .expect("log line");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["trace_id"], span.span_context.trace_id().to_string());
    assert_eq!(line["span_id"], span.span_context.span_id().to_string());
    assert_eq!(line["service.name"], "order-service");
    assert_eq!(line["service.version"], "9.9.9");
    assert_eq!(line["deployment.environment"], "test");
    // tenant.id from the edge header: on both spans and on the log line.
    assert_eq!(line["tenant.id"], "acme");
    assert_eq!(attr(span, "tenant.id").as_deref(), Some("acme"));
    assert_eq!(attr(server, "tenant.id").as_deref(), Some("acme"));

    // The gRPC hop: the inventory's server span continues the order's
    // client span, in the same trace, and `tenant.id` crossed with it.
    let kind = |k| {
        let found: Vec<_> = o
            .spans
            .iter()
            .filter(|s| s.name == "inventory.v1.StockService/ReserveItem" && s.span_kind == k)
            .collect();
        assert_eq!(found.len(), 1, "{k:?}");
        found[0]
    };
    let (client, inventory) = (
        kind(opentelemetry::trace::SpanKind::Client),
        kind(opentelemetry::trace::SpanKind::Server),
    );
    assert_eq!(client.parent_span_id, span.span_context.span_id());
    assert_eq!(inventory.parent_span_id, client.span_context.span_id());
    assert_eq!(
        inventory.span_context.trace_id(),
        server.span_context.trace_id()
    );
    assert_eq!(attr(inventory, "tenant.id").as_deref(), Some("acme"));
    assert_eq!(
        attr(inventory, "rpc.response.status_code").as_deref(),
        Some("OK")
    );
    let reserved = o
        .logs
        .iter()
        .find(|l| l["message"] == "stock reserved")
        .expect("the inventory's log line");
    assert_eq!(
        reserved["trace_id"],
        server.span_context.trace_id().to_string()
    );
    assert_eq!(
        reserved["span_id"],
        inventory.span_context.span_id().to_string()
    );
    assert_eq!(reserved["tenant.id"], "acme");
}

#[tokio::test]
async fn a_business_validation_failure_is_a_warning_not_an_error() {
    for body in [
        json!({"customer_id": "c-1", "items": []}),
        json!({"customer_id": "c-1", "items": [{"sku": "book", "quantity": 0}]}),
        json!({"customer_id": "c-1", "items": [{"sku": "book", "quantity": 101}]}),
    ] {
        let o = call(post(body)).await;
        assert_eq!(o.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(o.body["error"], "invalid_order");
        let span = place_order_span(&o);
        assert_eq!(span.status, Status::Unset);
        assert_eq!(attr(span, "error.type"), None);
        let line = o
            .logs
            .iter()
            .find(|l| l["message"] == "order rejected")
            .expect("log line");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["trace_id"], span.span_context.trace_id().to_string());
    }
}

#[tokio::test]
async fn a_system_failure_sets_error_status_and_logs_at_error() {
    let o = call(post(
        json!({"customer_id": "c-1", "items": [{"sku": "unavailable", "quantity": 1}]}),
    ))
    .await;
    assert_eq!(o.status, StatusCode::SERVICE_UNAVAILABLE);
    let span = place_order_span(&o);
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    assert_eq!(
        attr(span, "error.type").as_deref(),
        Some("inventory_unavailable")
    );
    // The inventory said so over gRPC: the client span, a child of the
    // operation's, carries the status it read.
    let reserve = o
        .spans
        .iter()
        .find(|s| {
            s.name == "inventory.v1.StockService/ReserveItem"
                && s.span_kind == opentelemetry::trace::SpanKind::Client
        })
        .expect("the inventory call");
    assert_eq!(reserve.parent_span_id, span.span_context.span_id());
    assert_eq!(
        attr(reserve, "rpc.response.status_code").as_deref(),
        Some("UNAVAILABLE")
    );
    assert!(matches!(reserve.status, Status::Error { .. }));
    let line = o
        .logs
        .iter()
        .find(|l| l["message"] == "order failed")
        .expect("log line");
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["span_id"], span.span_context.span_id().to_string());
}

#[tokio::test]
async fn orders_can_be_read_back_and_unknown_ids_are_404() {
    let inst = looptel::core::Instrumentation::disabled(looptel::core::Propagator::default());
    let metrics = order_service::Metrics::new();
    let inventory = inventory(&inst, &metrics, FaultSwitch::new()).await;
    let app =
        order_service::app(inst, order_service::baggage_policy(), metrics, inventory).expect("app");
    let res = app
        .clone()
        .oneshot(post(
            json!({"customer_id": "c-2", "items": [{"sku": "pen", "quantity": 1}]}),
        ))
        .await
        .expect("infallible");
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let placed: Value = serde_json::from_slice(&bytes).expect("json");
    let id = placed["id"].as_str().expect("id");
    let res = app
        .clone()
        .oneshot(
            Request::get(format!("/orders/{id}"))
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).expect("json"),
        placed
    );
    let res = app
        .oneshot(
            Request::get("/orders/o-does-not-exist")
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_answers_and_bad_input_gets_a_clear_4xx() {
    let o = call(Request::get("/health").body(Body::empty()).expect("req")).await;
    assert_eq!(o.status, StatusCode::OK);
    assert!(o.spans.is_empty());
    let o = call(
        Request::post("/orders")
            .header("content-type", "application/json")
            .body(Body::from(&b"{\"customer_id\": \xff"[..]))
            .expect("req"),
    )
    .await;
    assert_eq!(o.status, StatusCode::BAD_REQUEST);
    let o = call(
        Request::builder()
            .method("BREW")
            .uri("/orders")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(o.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn an_injected_inventory_failure_is_the_system_error_path_inside_the_inventory_hop() {
    let faults = FaultSwitch::new();
    faults.set(Faults {
        inventory_error_rate: 1.0,
        ..Faults::default()
    });
    let o = call_with(
        faults,
        post(json!({"customer_id": "c-1", "items": [{"sku": "book", "quantity": 1}]})),
    )
    .await;
    assert_eq!(o.status, StatusCode::SERVICE_UNAVAILABLE);
    let span = place_order_span(&o);
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(
        attr(span, "error.type").as_deref(),
        Some("inventory_unavailable")
    );
    // Where a real outage would show: the inventory's own server span
    // failed, and the inventory logged it in the order's trace.
    let inventory = o
        .spans
        .iter()
        .find(|s| {
            s.name == "inventory.v1.StockService/ReserveItem"
                && s.span_kind == opentelemetry::trace::SpanKind::Server
        })
        .expect("the inventory's span");
    assert_eq!(
        attr(inventory, "rpc.response.status_code").as_deref(),
        Some("UNAVAILABLE")
    );
    assert!(matches!(inventory.status, Status::Error { .. }));
    let line = o
        .logs
        .iter()
        .find(|l| l["message"] == "injected fault: inventory unavailable")
        .expect("the inventory's log line");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["trace_id"], span.span_context.trace_id().to_string());
    assert_eq!(
        line["span_id"],
        inventory.span_context.span_id().to_string()
    );
}

#[tokio::test]
async fn an_injected_delay_past_the_deadline_fails_the_order_as_deadline_exceeded() {
    let faults = FaultSwitch::new();
    let delay = order_service::inventory::RESERVE_TIMEOUT + std::time::Duration::from_millis(100);
    faults.set(Faults {
        inventory_delay_ms: u64::try_from(delay.as_millis()).expect("small"),
        ..Faults::default()
    });
    let o = call_with(
        faults,
        post(json!({"customer_id": "c-1", "items": [{"sku": "book", "quantity": 1}]})),
    )
    .await;
    assert_eq!(o.status, StatusCode::SERVICE_UNAVAILABLE);
    let client = o
        .spans
        .iter()
        .find(|s| {
            s.name == "inventory.v1.StockService/ReserveItem"
                && s.span_kind == opentelemetry::trace::SpanKind::Client
        })
        .expect("the inventory call");
    assert_eq!(
        attr(client, "rpc.response.status_code").as_deref(),
        Some("DEADLINE_EXCEEDED")
    );
    assert!(matches!(place_order_span(&o).status, Status::Error { .. }));
}

#[tokio::test]
async fn the_fault_switch_reads_sets_clears_and_refuses_bad_input() {
    let inst = looptel::core::Instrumentation::disabled(looptel::core::Propagator::default());
    let metrics = order_service::Metrics::new();
    let faults = FaultSwitch::new();
    let inventory = inventory(&inst, &metrics, faults.clone()).await;
    let app =
        order_service::app(inst, order_service::baggage_policy(), metrics, inventory).expect("app");
    // Without --enable-faults the path does not exist.
    let res = app
        .clone()
        .oneshot(
            Request::get("/admin/faults")
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let app = app.merge(order_service::faults::routes(faults));
    let send = |req: Request<Body>| {
        let app = app.clone();
        async move {
            let res = app.oneshot(req).await.expect("infallible");
            let status = res.status();
            let bytes = res.into_body().collect().await.expect("body").to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let put = |body: Body| {
        Request::put("/admin/faults")
            .header("content-type", "application/json")
            .body(body)
            .expect("req")
    };
    let get = || {
        Request::get("/admin/faults")
            .body(Body::empty())
            .expect("req")
    };
    let order = || post(json!({"customer_id": "c-3", "items": [{"sku": "pen", "quantity": 1}]}));

    assert_eq!(
        send(get()).await,
        (
            StatusCode::OK,
            json!({"inventory_error_rate": 0.0, "inventory_delay_ms": 0, "consumer_error_rate": 0.0})
        )
    );
    let (status, body) = send(put(Body::from(r#"{"inventory_error_rate": 1}"#))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["inventory_error_rate"], 1.0);
    assert_eq!(send(order()).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(send(get()).await.1["inventory_error_rate"], 1.0);

    // Bad input: a clear answer, the faults in force unchanged.
    let (status, body) = send(put(Body::from(r#"{"inventory_error_rate": 1.5}"#))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "inventory_error_rate");
    let (status, body) = send(put(Body::from(r#"{"inventory_delay_ms": 3600000}"#))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "inventory_delay_ms");
    let (status, body) = send(put(Body::from(r#"{"consumer_error_rate": -0.1}"#))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "consumer_error_rate");
    for bad in [
        Body::from(r#"{"consumer_errors": 1}"#),
        Body::from(r#"{"inventory_error_rate": "high"}"#),
        Body::from("not json"),
        Body::from(vec![0xff_u8, 0xfe, 0x7b]),
    ] {
        let (status, body) = send(put(bad)).await;
        assert!(status.is_client_error(), "{status}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert_eq!(send(get()).await.1["inventory_error_rate"], 1.0);

    let res = app
        .clone()
        .oneshot(
            Request::delete("/admin/faults")
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(send(order()).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn a_caller_outside_the_gateway_cannot_name_a_tenant_through_baggage() {
    // No verified tenant header: the caller's baggage is dropped at the edge.
    let req = Request::post("/orders")
        .header("content-type", "application/json")
        .header("baggage", "tenant.id=evil,campaign=x")
        .body(Body::from(
            json!({"customer_id": "c-1", "items": [{"sku": "book", "quantity": 1}]}).to_string(),
        ))
        .expect("request");
    let o = call(req).await;
    assert_eq!(o.status, StatusCode::CREATED);
    let placed = o
        .logs
        .iter()
        .find(|l| l["message"] == "order placed")
        .expect("the order line");
    assert!(placed.get("tenant.id").is_none(), "{placed}");
    assert!(
        o.spans
            .iter()
            .all(|s| s.attributes.iter().all(|kv| kv.key.as_str() != "tenant.id")),
        "no span names the tenant"
    );

    // Through the gateway the header is the tenant, whatever baggage says.
    let req = Request::post("/orders")
        .header("content-type", "application/json")
        .header("x-tenant-id", "acme")
        .header("baggage", "tenant.id=evil")
        .body(Body::from(
            json!({"customer_id": "c-1", "items": [{"sku": "book", "quantity": 1}]}).to_string(),
        ))
        .expect("request");
    let o = call(req).await;
    let placed = o
        .logs
        .iter()
        .find(|l| l["message"] == "order placed")
        .expect("the order line");
    assert_eq!(placed["tenant.id"], "acme");
}
