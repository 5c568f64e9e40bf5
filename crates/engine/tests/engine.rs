//! The engine's contract: hooks end exactly once — at end of stream (with
//! the trailers' status), on body error, on drop, on panic — and the span
//! reads the same classification the hooks get.

use looptel_tests::attr_value as attr;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use looptel_engine::{
    Classification, Classify, ClassifyError, Engine, GrpcClient, GrpcCode, GrpcServer, HookLayer,
    HttpServer, RequestHook,
};
use opentelemetry::Context;
use opentelemetry::trace::{Status, TraceContextExt, Tracer, TracerProvider as _};
use tower::{Service, ServiceBuilder, ServiceExt};

/// A body of scripted frames; `Err` items are body errors.
#[derive(Debug, Default)]
struct Frames(VecDeque<Result<Frame<Bytes>, &'static str>>);

impl Frames {
    fn data(mut self, d: &'static str) -> Self {
        self.0
            .push_back(Ok(Frame::data(Bytes::from_static(d.as_bytes()))));
        self
    }
    fn trailers(mut self, grpc_status: &'static str) -> Self {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static(grpc_status));
        self.0.push_back(Ok(Frame::trailers(t)));
        self
    }
    fn error(mut self, e: &'static str) -> Self {
        self.0.push_back(Err(e));
        self
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = &'static str;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        Poll::Ready(self.0.pop_front())
    }
}

/// The services' error.
type Failed = std::io::Error;

/// Every end the hook saw: the classification, once per request.
type Ends = Arc<Mutex<Vec<Classification>>>;

fn hook(ends: &Ends) -> impl RequestHook<Request<()>, State = impl looptel_engine::HookState> {
    let ends = Ends::clone(ends);
    move |_: &Request<()>, _: &mut Context| {
        let ends = ends.clone();
        move |end: &Classification, _: &Context| ends.lock().expect("ends").push(end.clone())
    }
}

fn take(ends: &Ends) -> Vec<Classification> {
    std::mem::take(&mut *ends.lock().expect("ends"))
}

type Spans = looptel_tests::InMemorySpans;

/// A context holding a new span of ours.
fn start(spans: &Spans) -> Context {
    let span = spans.provider.tracer("test").start("call");
    Context::new().with_span(span)
}

/// Calls `handler` through the engine with `classifier`, a span of ours
/// and the hook; returns the response future's output.
async fn through<C, F, Fut>(
    spans: &Spans,
    ends: &Ends,
    classifier: C,
    handler: F,
) -> Result<Response<looptel_engine::ResponseBody<Frames, C, impl looptel_engine::HookState>>, Failed>
where
    C: Classify + ClassifyError<Failed>,
    F: FnMut(Request<()>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Frames>, Failed>>,
{
    let mut svc = tower::service_fn(handler);
    let engine = Engine::new(classifier);
    let fut = engine.call(&mut svc, Request::new(()), &hook(ends), start(spans), true);
    fut.await
}

fn grpc_ok_head() -> Response<Frames> {
    Response::new(Frames::default())
}

#[tokio::test]
async fn a_grpc_status_in_the_trailers_ends_the_call_once_at_end_of_stream() {
    let spans = Spans::new();
    let ends = Ends::default();
    let res = through(&spans, &ends, GrpcServer, |_| async {
        let mut res = grpc_ok_head();
        *res.body_mut() = Frames::default().data("a").data("b").trailers("13");
        Ok(res)
    })
    .await
    .expect("answered");
    assert!(take(&ends).is_empty(), "nothing ends with the head");
    assert!(spans.finished().is_empty());
    let collected = res.into_body().collect().await.expect("body");
    assert_eq!(
        collected.trailers().and_then(GrpcCode::from_headers),
        Some(GrpcCode::Internal)
    );
    let ends = take(&ends);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].grpc_code(), Some(GrpcCode::Internal));
    assert!(ends[0].is_error());
    let span = &spans.finished()[0];
    assert_eq!(
        attr(span, "rpc.response.status_code"),
        Some("INTERNAL".into())
    );
    assert_eq!(attr(span, "error.type"), Some("INTERNAL".into()));
    assert!(matches!(span.status, Status::Error { .. }));
}

#[tokio::test]
async fn an_error_sent_after_messages_is_not_a_success() {
    // The case other gRPC instrumentations get wrong: OK headers, data,
    // then a failure in the trailers — here for a client, whose every
    // non-OK code is an error.
    let spans = Spans::new();
    let ends = Ends::default();
    let res = through(&spans, &ends, GrpcClient, |_| async {
        let mut res = grpc_ok_head();
        *res.body_mut() = Frames::default().data("a").trailers("5");
        Ok(res)
    })
    .await
    .expect("answered");
    res.into_body().collect().await.expect("body");
    let ends = take(&ends);
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].error_type(), Some("NOT_FOUND"));
    assert_eq!(
        attr(&spans.finished()[0], "rpc.response.status_code"),
        Some("NOT_FOUND".into())
    );
}

#[tokio::test]
async fn trailers_only_responses_are_classified_at_the_head() {
    let spans = Spans::new();
    let ends = Ends::default();
    let res = through(&spans, &ends, GrpcServer, |_| async {
        let mut res = grpc_ok_head();
        res.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("5"));
        Ok(res)
    })
    .await
    .expect("answered");
    drop(res); // no body read at all
    let ends = take(&ends);
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].grpc_code(), Some(GrpcCode::NotFound));
    assert!(
        !ends[0].is_error(),
        "NOT_FOUND is the caller's, not the server's"
    );
    assert_eq!(spans.finished()[0].status, Status::Unset);
}

#[tokio::test]
async fn a_body_error_ends_once_as_a_failure_with_the_heads_status() {
    let spans = Spans::new();
    let ends = Ends::default();
    let res = through(&spans, &ends, HttpServer, |_| async {
        Ok(Response::new(Frames::default().data("a").error("reset")))
    })
    .await
    .expect("answered");
    let mut body = res.into_body();
    assert!(body.frame().await.expect("frame").is_ok());
    assert!(body.frame().await.expect("frame").is_err());
    assert!(body.frame().await.is_none());
    drop(body);
    let ends = take(&ends);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].http_status(), Some(StatusCode::OK));
    assert_eq!(ends[0].error_type(), Some("body_error"));
    let span = &spans.finished()[0];
    assert_eq!(span.status, Status::error("reset"));
    assert_eq!(attr(span, "error.type"), Some("body_error".into()));
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(200_i64.into())
    );
}

#[tokio::test]
async fn a_dropped_body_ends_once_with_what_is_known() {
    // HTTP: the head's status, not an error (the client went away).
    let spans = Spans::new();
    let ends = Ends::default();
    let res = through(&spans, &ends, HttpServer, |_| async {
        Ok(Response::new(Frames::default().data("a").data("b")))
    })
    .await
    .expect("answered");
    let mut body = res.into_body();
    body.frame().await.expect("frame").expect("data");
    drop(body);
    let http = take(&ends);
    assert_eq!(http.len(), 1);
    assert_eq!(http[0].http_status(), Some(StatusCode::OK));
    assert!(!http[0].is_error());

    // gRPC before its trailers: CANCELLED, not a server error.
    let res = through(&spans, &ends, GrpcServer, |_| async {
        let mut res = grpc_ok_head();
        *res.body_mut() = Frames::default().data("a").trailers("0");
        Ok(res)
    })
    .await
    .expect("answered");
    drop(res);
    let grpc = take(&ends);
    assert_eq!(grpc.len(), 1);
    assert_eq!(grpc[0].grpc_code(), Some(GrpcCode::Cancelled));
    assert!(!grpc[0].is_error());
    assert_eq!(spans.finished().len(), 2, "both spans ended");
}

#[tokio::test]
async fn a_call_dropped_before_its_answer_ends_as_the_classifier_says() {
    let spans = Spans::new();
    let ends = Ends::default();
    for (classifier_is_grpc, expected) in [(false, None), (true, Some(GrpcCode::Cancelled))] {
        let mut svc = tower::service_fn(|_: Request<()>| {
            std::future::pending::<Result<Response<Frames>, Failed>>()
        });
        if classifier_is_grpc {
            let fut = Engine::new(GrpcServer).call(
                &mut svc,
                Request::new(()),
                &hook(&ends),
                start(&spans),
                true,
            );
            drop(fut);
        } else {
            let fut = Engine::new(HttpServer).call(
                &mut svc,
                Request::new(()),
                &hook(&ends),
                start(&spans),
                true,
            );
            drop(fut);
        }
        let got: Vec<_> = take(&ends).iter().map(Classification::grpc_code).collect();
        match expected {
            None => assert!(got.is_empty(), "HTTP: not ended, {got:?}"),
            Some(code) => assert_eq!(got, [Some(code)]),
        }
    }
    assert_eq!(spans.finished().len(), 2, "the spans end either way");
}

#[tokio::test]
async fn a_panic_is_answered_and_ends_once() {
    let spans = Spans::new();
    let ends = Ends::default();
    // In the future, for HTTP: a 500 with an exception event.
    let res = through(&spans, &ends, HttpServer, |_| async {
        if true {
            panic!("boom");
        }
        Ok(Response::new(Frames::default()))
    })
    .await
    .expect("answered");
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let ends_now = take(&ends);
    assert_eq!(ends_now.len(), 1);
    assert_eq!(ends_now[0].message(), Some("boom"));
    drop(res);
    assert!(take(&ends).is_empty(), "once");
    let span = &spans.finished()[0];
    assert_eq!(span.status, Status::error("boom"));
    assert_eq!(span.events.events[0].name, "exception");

    // In `call` itself, for gRPC: Trailers-Only INTERNAL.
    let mut svc = PanicsInCall;
    let res = Engine::new(GrpcServer)
        .call(
            &mut svc,
            Request::new(()),
            &hook(&ends),
            start(&spans),
            true,
        )
        .await
        .expect("answered");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        GrpcCode::from_headers(res.headers()),
        Some(GrpcCode::Internal)
    );
    let ends = take(&ends);
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].grpc_code(), Some(GrpcCode::Internal));
}

#[derive(Clone)]
struct PanicsInCall;

impl Service<Request<()>> for PanicsInCall {
    type Response = Response<Frames>;
    type Error = Failed;
    type Future = std::future::Ready<Result<Response<Frames>, Failed>>;
    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Failed>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<()>) -> Self::Future {
        panic!("in call")
    }
}

#[tokio::test]
async fn a_clients_panic_goes_on_after_the_call_ended() {
    let spans = Spans::new();
    let ends = Ends::default();
    let ends2 = ends.clone();
    let task = tokio::spawn(async move {
        let spans = Spans::new();
        let _ = through(&spans, &ends2, GrpcClient, |_| async {
            if true {
                panic!("client bug");
            }
            Ok(grpc_ok_head())
        })
        .await;
    });
    assert!(task.await.expect_err("panicked").is_panic());
    // Dropped while unwinding: a client's call ends as CANCELLED.
    let ends = take(&ends);
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].grpc_code(), Some(GrpcCode::Cancelled));
    drop(spans);
}

#[tokio::test]
async fn a_service_error_ends_once_with_its_type() {
    let spans = Spans::new();
    let ends = Ends::default();
    let err = through(&spans, &ends, HttpServer, |_| async {
        Err(Failed::other("down"))
    })
    .await
    .expect_err("failed");
    assert_eq!(err.to_string(), "down");
    let ends = take(&ends);
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].error_type(), Some("std::io::error::Error"));
    assert_eq!(ends[0].http_status(), None);
    assert_eq!(spans.finished()[0].status, Status::error("service error"));
}

#[tokio::test]
async fn a_closure_hook_runs_as_a_layer_of_its_own_in_the_current_context() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let layer = HookLayer::new(move |req: &Request<()>, cx: &mut Context| {
        let log = log.clone();
        log.lock().expect("log").push(format!(
            "start {} {}",
            req.uri().path(),
            cx.has_active_span()
        ));
        move |end: &Classification, _: &Context| {
            log.lock()
                .expect("log")
                .push(format!("end {:?}", end.http_status()));
        }
    });
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_: Request<()>| async {
            Ok::<_, Failed>(Response::new(Frames::default().data("x")))
        });
    let res = svc
        .clone()
        .oneshot(Request::get("/a").body(()).expect("req"))
        .await
        .expect("answered");
    res.into_body().collect().await.expect("body");
    // Marked untraced by a layer outside: skipped.
    let mut req = Request::get("/health").body(()).expect("req");
    req.extensions_mut().insert(looptel_engine::Untraced);
    let res = svc.oneshot(req).await.expect("answered");
    res.into_body().collect().await.expect("body");
    assert_eq!(
        *seen.lock().expect("log"),
        ["start /a false", "end Some(200)"]
    );
}
