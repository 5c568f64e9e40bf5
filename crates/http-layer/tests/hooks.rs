//! Request hooks of the server layer: what they see, what they may change,
//! when and how they end, and that filtered requests never reach them.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use common::Spans;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use looptel_core::{Instrumentation, Propagator};
use looptel_engine::{AllPublic, Base, Classification, Derived, HookState, RequestHook};
use looptel_http_layer::server::{ServerLayer, SkipPaths, skip_paths};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};
use tower::ServiceExt;

/// What a hook saw, in order.
type Log = Arc<Mutex<Vec<String>>>;

/// Records its start (with the span it ran in) and its end; puts a value of
/// its own in the context.
#[derive(Clone)]
struct Recorder {
    name: &'static str,
    log: Log,
}

#[derive(Debug, PartialEq)]
struct Mark(&'static str);

struct Ending {
    name: &'static str,
    log: Log,
}

impl<B> RequestHook<Request<B>> for Recorder {
    type State = Ending;

    fn prepare(&self, request: &Request<B>, derived: &Derived<'_>, parent: &mut Context) {
        let span = parent.span().span_context().span_id();
        let public = if derived.is_public() {
            format!(" public, baggage {}", parent.baggage().len())
        } else {
            String::new()
        };
        self.log.lock().expect("log").push(format!(
            "prepare {} {} under {span}{public}",
            self.name,
            request.uri().path()
        ));
    }

    fn start(&self, request: &Request<B>, derived: &Derived<'_>, cx: &mut Context) -> Ending {
        let span = cx.span().span_context().span_id();
        // What the layer read off the request for its span.
        let route = derived.route().map_or("-", |r| r.as_str());
        let method = derived.http_facts().map_or("-", |f| f.method());
        self.log.lock().expect("log").push(format!(
            "start {} {method} {} in {span} route {route} baggage {}",
            self.name,
            request.uri().path(),
            cx.baggage().len()
        ));
        *cx = cx.with_value(Mark(self.name));
        Ending {
            name: self.name,
            log: self.log.clone(),
        }
    }
}

impl HookState for Ending {
    fn end(self, end: &Classification, _: &Context) {
        self.log.lock().expect("log").push(format!(
            "end {} {:?} {:?}",
            self.name,
            end.http_status().map(|s| s.as_u16()),
            end.error_type()
        ));
    }
}

fn layer(spans: &Spans, log: &Log) -> ServerLayer<SkipPaths, (), (((), Recorder), Recorder)> {
    ServerLayer::new(spans.instrumentation())
        .filter(skip_paths(["/health"]))
        .hook(Recorder {
            name: "first",
            log: log.clone(),
        })
        .hook(Recorder {
            name: "second",
            log: log.clone(),
        })
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().expect("log"))
}

/// The `end` lines of the log, taking all of it.
fn take_ends(log: &Log) -> Vec<String> {
    take(log)
        .into_iter()
        .filter(|l| l.starts_with("end"))
        .collect()
}

#[tokio::test]
async fn hooks_run_in_the_span_change_its_context_and_end_with_the_body() {
    let spans = Spans::new();
    let log = Log::default();
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let app = Router::new()
        .route(
            "/slow",
            get(move || {
                *seen2.lock().expect("seen") =
                    Context::map_current(|cx| cx.get::<Mark>().map(|m| m.0));
                async {
                    let stream = futures_util::stream::once(async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, std::io::Error>(Bytes::from_static(b"done"))
                    });
                    Body::from_stream(stream)
                }
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(layer(&spans, &log));

    let res = app
        .clone()
        .oneshot(Request::get("/slow").body(Body::empty()).expect("req"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    let started = take(&log);
    assert!(spans.finished().is_empty(), "the span runs with the body");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"done");
    // Started in order inside the server span, ended in reverse with the body.
    let id = spans.one().span_context.span_id();
    assert_eq!(
        started,
        [
            "prepare first /slow under 0000000000000000".to_owned(),
            "prepare second /slow under 0000000000000000".to_owned(),
            format!("start first GET /slow in {id} route /slow baggage 0"),
            format!("start second GET /slow in {id} route /slow baggage 0"),
        ]
    );
    assert_eq!(
        take(&log),
        ["end second Some(200) None", "end first Some(200) None"]
    );
    // The handler ran in the context the hooks left.
    assert_eq!(*seen.lock().expect("seen"), Some("second"));

    // Filtered requests reach no hook.
    let res = app
        .oneshot(Request::get("/health").body(Body::empty()).expect("req"))
        .await
        .expect("infallible");
    res.into_body().collect().await.expect("body");
    assert!(take(&log).is_empty());
}

#[tokio::test]
async fn hooks_end_once_for_failures_panics_and_dropped_bodies() {
    let log = Log::default();
    let spans = Spans::new();

    // A service error: no status, the error's type.
    let svc = tower::ServiceBuilder::new()
        .layer(layer(&spans, &log))
        .service_fn(|_req: Request<Body>| async {
            Err::<http::Response<Body>, _>(std::io::Error::other("backend gone"))
        });
    assert!(
        svc.oneshot(Request::get("/x").body(Body::empty()).expect("req"))
            .await
            .is_err()
    );
    let ends = take_ends(&log);
    assert_eq!(
        ends,
        [
            "end second None Some(\"std::io::error::Error\")",
            "end first None Some(\"std::io::error::Error\")"
        ]
    );

    // A panicking handler: the 500 it is answered with (a failure, so
    // `error.type` is its code).
    let app = Router::new()
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("boom");
                }
                "unreachable"
            }),
        )
        .layer(layer(&spans, &log));
    let res = app
        .oneshot(Request::get("/panic").body(Body::empty()).expect("req"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let ends = take_ends(&log);
    assert_eq!(
        ends,
        [
            "end second Some(500) Some(\"500\")",
            "end first Some(500) Some(\"500\")"
        ]
    );

    // A request dropped before it was answered: started, never ended.
    let app = Router::new()
        .route("/slow", get(std::future::pending::<&str>))
        .layer(layer(&spans, &log));
    let fut = app.oneshot(Request::get("/slow").body(Body::empty()).expect("req"));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), fut)
            .await
            .is_err()
    );
    let lines = take(&log);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().all(|l| !l.starts_with("end")), "{lines:?}");

    // A body dropped unread (the client went away): ended once, on drop.
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(layer(&spans, &log));
    let res = app
        .oneshot(Request::get("/x").body(Body::empty()).expect("req"))
        .await
        .expect("infallible");
    assert_eq!(take(&log).len(), 4, "prepared and started, not ended");
    drop(res);
    assert_eq!(
        take(&log),
        ["end second Some(200) None", "end first Some(200) None"]
    );
}

#[tokio::test]
async fn without_a_tracer_hooks_still_run_in_the_callers_context() {
    let log = Log::default();
    let app = Router::new().route("/x", get(|| async { "x" })).layer(
        ServerLayer::new(Instrumentation::disabled(Propagator::default())).hook(Recorder {
            name: "only",
            log: log.clone(),
        }),
    );
    let res = app
        .oneshot(
            Request::get("/x")
                .header(
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    res.into_body().collect().await.expect("body");
    assert_eq!(
        take(&log),
        [
            "prepare only /x under b7ad6b7169203331",
            "start only GET /x in b7ad6b7169203331 route /x baggage 0",
            "end only Some(200) None"
        ]
    );
}

#[tokio::test]
async fn client_hooks_run_in_the_client_span_and_end_with_the_response_body() {
    let spans = Spans::new();
    let log: Log = Arc::default();
    let seen = Arc::new(Mutex::new(None));
    let inner = {
        let seen = seen.clone();
        tower::service_fn(move |req: Request<Body>| {
            let seen = seen.clone();
            async move {
                // The context was injected for the callee.
                *seen.lock().expect("seen") = Some(req.headers().contains_key("traceparent"));
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(StatusCode::SERVICE_UNAVAILABLE)
                        .body(Body::from("down"))
                        .expect("response"),
                )
            }
        })
    };
    let client = tower::ServiceBuilder::new()
        .layer(
            looptel_http_layer::ClientLayer::new(spans.instrumentation()).hook(Recorder {
                name: "client",
                log: log.clone(),
            }),
        )
        .service(inner);
    let res = client
        .oneshot(
            Request::get("http://inventory.internal/items")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answered");
    assert_eq!(*seen.lock().expect("seen"), Some(true));
    let started = take(&log);
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(
        started[0].starts_with("start client GET /items in "),
        "{started:?}"
    );
    assert!(
        !started[0].contains(" in 0000000000000000"),
        "in the CLIENT span: {started:?}"
    );
    res.into_body().collect().await.expect("body");
    assert_eq!(take_ends(&log), ["end client Some(503) Some(\"503\")"]);
}

#[tokio::test]
async fn the_trust_rule_given_once_reaches_the_hooks_and_the_callers_baggage_goes() {
    let spans = Spans::new();
    let log = Log::default();
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(move || {
                *seen2.lock().expect("seen") = Some(Context::map_current(|cx| cx.baggage().len()));
                async { "ok" }
            }),
        )
        .layer(
            ServerLayer::new(spans.instrumentation())
                .public_endpoint(AllPublic)
                .hook(Recorder {
                    name: "only",
                    log: log.clone(),
                }),
        );
    let res = app
        .oneshot(
            Request::get("/orders/7")
                .header(
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )
                .header("baggage", "tenant.id=evil,user.id=42")
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    res.into_body().collect().await.expect("body");
    let span = spans.one();
    let id = span.span_context.span_id();
    // The hook saw the caller's baggage and the decision before the span
    // started; the span, the hook's start and the handler did not.
    assert_eq!(
        take(&log),
        [
            "prepare only /orders/7 under 0000000000000000 public, baggage 2".to_owned(),
            format!("start only GET /orders/7 in {id} route /orders/{{id}} baggage 0"),
            "end only Some(200) None".to_owned(),
        ]
    );
    assert_eq!(*seen.lock().expect("seen"), Some(0));
    // A new trace, linked to the caller's.
    assert_ne!(
        span.span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(span.links.len(), 1);
}

/// Sets a baggage member and a value of its own in the base; logs whether
/// its start saw them there.
#[derive(Clone)]
struct Based {
    log: Log,
}

impl<B> RequestHook<Request<B>> for Based {
    type State = ();

    fn base(&self, _: &Request<B>, derived: &Derived<'_>, base: &mut Base) {
        self.log.lock().expect("log").push(format!(
            "base, public {}, set before {}",
            derived.is_public(),
            base.get().is_some()
        ));
        base.set(
            Context::new()
                .with_baggage([KeyValue::new("tenant.id", "acme")])
                .with_value(Mark("based")),
        );
    }

    fn start(&self, _: &Request<B>, derived: &Derived<'_>, cx: &mut Context) {
        self.log.lock().expect("log").push(format!(
            "start, ran base {}, mark {:?}, tenant {:?}",
            derived.ran_base(),
            cx.get::<Mark>(),
            cx.baggage().get("tenant.id").map(|v| v.as_str().to_owned())
        ));
    }
}

#[tokio::test]
async fn what_the_base_holds_is_under_the_callers_context_for_trusted_callers_only() {
    for (public, sampled) in [(false, "01"), (false, "00"), (true, "01")] {
        let spans = Spans::new();
        let log = Log::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        // Parent-based: a caller that did not sample takes the shortcut
        // without a sampler call, and its base all the same.
        let layer = ServerLayer::new(spans.instrumentation().parent_based(true))
            .public_endpoint(move |_: &Request<Body>| public)
            .hook(Based { log: log.clone() });
        let app = Router::new()
            .route(
                "/orders/{id}",
                get(move || {
                    *seen2.lock().expect("seen") = Context::map_current(|cx| {
                        let sc = cx.span().span_context().clone();
                        let member = |k: &str| cx.baggage().get(k).map(|v| v.as_str().to_owned());
                        vec![
                            sc.trace_id().to_string(),
                            format!("{:?}", member("tenant.id")),
                            format!("{:?}", member("session")),
                            format!("{:?}", cx.get::<Mark>()),
                        ]
                    });
                    async { "ok" }
                }),
            )
            .layer(layer);
        let res = app
            .oneshot(
                Request::get("/orders/7")
                    .header(
                        "traceparent",
                        format!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{sampled}"),
                    )
                    .header("baggage", "tenant.id=from-caller,session=s1")
                    .body(Body::empty())
                    .expect("req"),
            )
            .await
            .expect("infallible");
        res.into_body().collect().await.expect("body");
        let seen = seen.lock().expect("seen").clone();
        if public {
            // No base: the caller's baggage dropped, nothing of the hook's.
            assert_eq!(
                take(&log),
                ["start, ran base false, mark None, tenant None"]
            );
            assert_eq!(seen[1..], ["None", "None", "None"]);
            assert_ne!(seen[0], "0af7651916cd43dd8448eb211c80319c");
        } else {
            // The hook's member wins over the caller's of the same key; the
            // caller's trace and its other members are kept; so is the
            // hook's own value.
            assert_eq!(
                take(&log),
                [
                    "base, public false, set before false",
                    "start, ran base true, mark Some(Mark(\"based\")), tenant Some(\"acme\")",
                ],
                "caller sampled {sampled}"
            );
            assert_eq!(
                seen,
                [
                    "0af7651916cd43dd8448eb211c80319c",
                    "Some(\"acme\")",
                    "Some(\"s1\")",
                    "Some(Mark(\"based\"))"
                ],
                "caller sampled {sampled}"
            );
        }
    }
}
