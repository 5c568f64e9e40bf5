//! Each policy rule: deny-list, budget, naming, typed API, trust boundary,
//! promotion onto the server span, child spans and log lines.

use looptel_tests::CapturedSpans;
use looptel_tests::attr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderMap, HeaderName, Request};
use looptel_baggage::{BaggageError, BaggagePolicy, EdgeLayer, from_header, is_conventional_key};
use looptel_core::{HeaderInjector, Propagator};
use looptel_engine::HookLayer;
use looptel_http_layer::server::ServerLayer;
use looptel_logs::JsonLogs;
use looptel_telemetry::Telemetry;
use looptel_tests::SharedBuf;
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry_sdk::trace::SpanData;
use tower::ServiceExt;

fn policy() -> BaggagePolicy {
    BaggagePolicy::builder().promote(["tenant.id"]).build()
}

fn outgoing(policy: &BaggagePolicy, cx: &Context) -> Option<String> {
    let p = Propagator::default().with_baggage_policy(policy.inject_policy());
    let mut h = HeaderMap::new();
    p.inject(cx, &mut HeaderInjector(&mut h));
    h.get("baggage")
        .map(|v| v.to_str().expect("ascii").to_owned())
}

#[test]
fn denied_keys_never_leave_and_are_counted() {
    let policy = policy();
    let cx = Context::new().with_baggage([
        opentelemetry::KeyValue::new("tenant.id", "acme"),
        opentelemetry::KeyValue::new("user.email", "a@example.com"),
        opentelemetry::KeyValue::new("card_number", "4111111111111111"),
        opentelemetry::KeyValue::new("x-api-key", "k"),
    ]);
    assert_eq!(outgoing(&policy, &cx).as_deref(), Some("tenant.id=acme"));
    assert_eq!(policy.stats().denied, 3);
    for key in [
        "phone",
        "user.phone",
        "customer_email",
        "password",
        "session.token",
        "authorization",
        "ssn",
    ] {
        assert!(policy.is_denied(key), "{key}");
    }
    for key in ["tenant.id", "region", "token_count.x", "span.kind"] {
        assert!(!policy.is_denied(key), "{key}");
    }
    let custom = BaggagePolicy::builder()
        .deny(["iban"])
        .allow(["auth.token_type"])
        .build();
    assert!(
        custom.is_denied("payer.iban")
            && !custom.is_denied("auth.token_type")
            && custom.is_denied("auth.token")
    );
}

#[test]
fn the_budget_is_counted_when_exceeded() {
    let policy = BaggagePolicy::builder().budget_bytes(32).build();
    let small = Context::new().with_baggage([opentelemetry::KeyValue::new("tenant.id", "acme")]);
    assert!(outgoing(&policy, &small).is_some());
    assert_eq!(policy.stats().over_budget, 0);
    let big = Context::new().with_baggage([opentelemetry::KeyValue::new("note", "x".repeat(100))]);
    assert!(
        outgoing(&policy, &big).is_some(),
        "a recommended budget: counted, not enforced"
    );
    assert_eq!(policy.stats().over_budget, 1);
    assert_eq!(BaggagePolicy::builder().build().stats().over_budget, 0);
}

#[test]
fn keys_named_in_code_are_checked_once_at_build() {
    let policy = BaggagePolicy::builder()
        .promote(["tenant.id", "tenantId", "Region", "order..id", "user_tier"])
        .build();
    assert_eq!(
        policy.naming_warnings(),
        ["tenantId", "Region", "order..id"]
    );
    assert!(is_conventional_key("tenant.id") && is_conventional_key("deployment.ring_2"));
    assert!(
        !is_conventional_key("tenant-id")
            && !is_conventional_key(".id")
            && !is_conventional_key("")
    );
}

#[test]
fn the_typed_api_applies_the_policy() {
    let policy = policy();
    let cx = policy
        .set(&Context::new(), "tenant.id", "acme")
        .expect("allowed");
    assert_eq!(policy.get(&cx, "tenant.id").as_deref(), Some("acme"));
    assert_eq!(
        policy.set(&cx, "user.email", "a@b").err(),
        Some(BaggageError::Denied("user.email".into()))
    );
    assert_eq!(
        policy.set(&cx, "bad key", "v").err(),
        Some(BaggageError::InvalidKey("bad key".into()))
    );
    let huge = "v".repeat(8200);
    assert_eq!(
        policy.set(&cx, "blob", &huge).err(),
        Some(BaggageError::Full("blob".into()))
    );
    let mut full = cx.clone();
    for i in 0..63 {
        full = policy.set(&full, &format!("k{i}"), "v").expect("room");
    }
    assert_eq!(
        policy.set(&full, "one.more", "v").err(),
        Some(BaggageError::Full("one.more".into()))
    );
    assert!(
        policy.set(&full, "tenant.id", "other").is_ok(),
        "replacing a member needs no room"
    );
    let _g = cx.attach();
    assert_eq!(policy.current("tenant.id").as_deref(), Some("acme"));
}

struct Observed {
    spans: Vec<SpanData>,
    logs: Vec<serde_json::Value>,
    seen: Option<String>,
    /// The handler's `session` member.
    session: Option<String>,
}

/// One request through ServerLayer + EdgeLayer with telemetry promoting the
/// policy; the handler logs, opens a child span and reads the typed API.
async fn run(policy: BaggagePolicy, edge: Edge, req: Request<Body>) -> Observed {
    run_stacked(policy, edge, req, false).await
}

/// An edge and the trust rule for the layer that runs it.
type Edge = (
    EdgeLayer<looptel_baggage::FromHeader>,
    fn(&Request<Body>) -> bool,
);

/// [`run`], the edge a layer of its own (the rule given to its
/// `HookLayer`) or (`hooked`) the server layer's hook (the rule given to
/// the server layer).
async fn run_stacked(
    policy: BaggagePolicy,
    (edge, untrusted): Edge,
    req: Request<Body>,
    hooked: bool,
) -> Observed {
    let spans = CapturedSpans::default();
    let out = SharedBuf::default();
    let t = Telemetry::builder()
        .service_name("edge")
        .span_exporter(spans.clone())
        .promote_baggage(policy.promotion())
        .baggage_policy(policy.inject_policy())
        .logs(JsonLogs::builder().output(out.clone()))
        .build()
        .expect("telemetry");
    let inst = t.instrumentation();
    let (subscriber, guard) = t.into_subscriber();
    let _default = tracing::subscriber::set_default(subscriber);
    let seen = Arc::new(Mutex::new((None, None)));
    let seen2 = seen.clone();
    let handler_policy = policy.clone();
    let routes = Router::new().route(
        "/orders",
        get(move || {
            let seen = seen2.clone();
            let policy = handler_policy.clone();
            async move {
                let _child = tracing::info_span!("Order.OrderService.ListOrders").entered();
                tracing::info!("listing orders");
                *seen.lock().expect("lock") =
                    (policy.current("tenant.id"), policy.current("session"));
                "ok"
            }
        }),
    );
    let app = stacked(routes, inst, (edge, untrusted), hooked);
    let res = app.oneshot(req).await.expect("infallible");
    drop(res);
    drop(_default);
    guard.shutdown().expect("flush");
    let spans = spans.spans();
    let (seen, session) = seen.lock().expect("lock").clone();
    Observed {
        spans,
        logs: out.json_lines(),
        seen,
        session,
    }
}

/// `routes` under the server layer on `inst` and the edge: the layer's hook
/// (`hooked`, the rule given to the server layer) or a layer of its own
/// inside it (the rule given to its `HookLayer`).
fn stacked(
    routes: Router,
    inst: looptel_core::Instrumentation,
    (edge, untrusted): Edge,
    hooked: bool,
) -> Router {
    if hooked {
        routes.layer(ServerLayer::new(inst).public_endpoint(untrusted).hook(edge))
    } else {
        routes
            .layer(HookLayer::new(edge).public_endpoint(untrusted))
            .layer(ServerLayer::new(inst))
    }
}

/// The server span among `spans`.
fn server(spans: &[SpanData]) -> &SpanData {
    spans
        .iter()
        .find(|s| s.name == "GET /orders")
        .expect("server span")
}

fn never(_: &Request<Body>) -> bool {
    false
}

fn always(_: &Request<Body>) -> bool {
    true
}

fn edge(policy: &BaggagePolicy, untrusted: fn(&Request<Body>) -> bool) -> Edge {
    let edge = EdgeLayer::new(policy.clone()).members(from_header(
        HeaderName::from_static("x-tenant-id"),
        "tenant.id",
    ));
    (edge, untrusted)
}

#[tokio::test]
async fn promoted_members_reach_the_server_span_child_spans_and_logs() {
    let policy = policy();
    let req = Request::get("/orders")
        .header("x-tenant-id", "acme")
        .body(Body::empty())
        .expect("req");
    let o = run(policy.clone(), edge(&policy, never), req).await;
    let server = server(&o.spans);
    let child = o
        .spans
        .iter()
        .find(|s| s.name == "Order.OrderService.ListOrders")
        .expect("child span");
    assert_eq!(attr(server, "tenant.id").as_deref(), Some("acme"));
    assert_eq!(attr(child, "tenant.id").as_deref(), Some("acme"));
    let line = o
        .logs
        .iter()
        .find(|l| l["message"] == "listing orders")
        .expect("log line");
    assert_eq!(line["tenant.id"], "acme");
    assert_eq!(o.seen.as_deref(), Some("acme"));
}

#[tokio::test]
async fn inbound_baggage_is_kept_from_trusted_callers_and_dropped_from_untrusted_ones() {
    let policy = policy();
    let req = || {
        Request::get("/orders")
            .header("baggage", "tenant.id=from-caller,session=s1")
            .body(Body::empty())
            .expect("req")
    };
    let o = run(policy.clone(), edge(&policy, never), req()).await;
    assert_eq!(o.seen.as_deref(), Some("from-caller"));
    assert_eq!(policy.stats().untrusted_dropped, 0);

    for (hooked, dropped) in [(false, 1), (true, 2)] {
        let o = run_stacked(policy.clone(), edge(&policy, always), req(), hooked).await;
        assert_eq!(
            o.seen, None,
            "an untrusted caller's baggage is not taken in"
        );
        assert_eq!(policy.stats().untrusted_dropped, dropped);
        let line = o
            .logs
            .iter()
            .find(|l| l["message"] == "listing orders")
            .expect("log line");
        assert!(line.get("tenant.id").is_none());
        if hooked {
            // Dropped before the server span started: not promoted onto it.
            let server = server(&o.spans);
            assert_eq!(attr(server, "tenant.id"), None, "{server:?}");
        }
    }
}

#[tokio::test]
async fn the_edge_sets_members_but_refuses_denied_ones() {
    let policy = policy();
    let edge = EdgeLayer::new(policy.clone()).members(from_header(
        HeaderName::from_static("x-user-email"),
        "user.email",
    ));
    let req = Request::get("/orders")
        .header("x-user-email", "a@example.com")
        .body(Body::empty())
        .expect("req");
    let spans = CapturedSpans::default();
    let t = Telemetry::builder()
        .span_exporter(spans.clone())
        .logs(JsonLogs::builder().output(SharedBuf::default()))
        .build()
        .expect("t");
    let inst = t.instrumentation();
    let seen = Arc::new(Mutex::new(Some(String::new())));
    let seen2 = seen.clone();
    let app = Router::new()
        .route(
            "/orders",
            get(move || {
                let seen = seen2.clone();
                async move {
                    *seen.lock().expect("lock") = Context::map_current(|cx| {
                        cx.baggage().get("user.email").map(|v| v.to_string())
                    });
                    "ok"
                }
            }),
        )
        .layer(edge)
        .layer(ServerLayer::new(inst));
    let res = app.oneshot(req).await.expect("infallible");
    assert_eq!(res.status(), 200);
    assert_eq!(*seen.lock().expect("lock"), None);
}

/// How many times `key` is among the attributes of `span`.
fn times(span: &SpanData, key: &str) -> usize {
    span.attributes
        .iter()
        .filter(|kv| kv.key.as_str() == key)
        .count()
}

#[tokio::test]
async fn the_edges_member_wins_over_the_callers_and_the_callers_others_are_kept() {
    let policy = policy();
    for hooked in [true, false] {
        let req = Request::get("/orders")
            .header("x-tenant-id", "acme")
            .header("baggage", "tenant.id=from-caller,session=s1")
            .body(Body::empty())
            .expect("req");
        let o = run_stacked(policy.clone(), edge(&policy, never), req, hooked).await;
        assert_eq!(o.seen.as_deref(), Some("acme"), "hooked {hooked}");
        assert_eq!(o.session.as_deref(), Some("s1"), "hooked {hooked}");
        if !hooked {
            // A layer of its own runs inside the server span, which started
            // with the caller's member (see `EdgeLayer`'s docs).
            continue;
        }
        let server = server(&o.spans);
        assert_eq!(attr(server, "tenant.id").as_deref(), Some("acme"));
        assert_eq!(times(server, "tenant.id"), 1, "{server:?}");
    }
}

/// With looptel's telemetry a span processor promotes members as spans
/// start; with a provider of the user's own there is none, and the edge
/// copies its members onto the server span itself. Either way, once.
#[tokio::test]
async fn the_edges_members_are_on_the_server_span_once_with_or_without_a_promotion_processor() {
    let policy = policy();
    for hooked in [true, false] {
        let req = Request::get("/orders")
            .header("x-tenant-id", "acme")
            .body(Body::empty())
            .expect("req");
        let o = run_stacked(policy.clone(), edge(&policy, never), req, hooked).await;
        let server = server(&o.spans);
        assert_eq!(times(server, "tenant.id"), 1, "telemetry, hooked {hooked}");
    }

    // A policy no telemetry was built with, a provider of the user's.
    let own = BaggagePolicy::builder().promote(["tenant.id"]).build();
    for hooked in [true, false] {
        let spans = CapturedSpans::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let inst = looptel_core::Instrumentation::new(&provider, Propagator::default());
        let routes = Router::new().route("/orders", get(|| async { "ok" }));
        let app = stacked(routes, inst, edge(&own, never), hooked);
        let req = Request::get("/orders")
            .header("x-tenant-id", "acme")
            .body(Body::empty())
            .expect("req");
        drop(app.oneshot(req).await.expect("infallible"));
        let spans = spans.spans();
        let server = server(&spans);
        assert_eq!(attr(server, "tenant.id").as_deref(), Some("acme"));
        assert_eq!(
            times(server, "tenant.id"),
            1,
            "own provider, hooked {hooked}"
        );
    }
}
