//! The Tempo, Jaeger and Loki clients over HTTP: the paths and parameters
//! they call, a trace the store has not got (404), a store that answers
//! 500, one that is too slow.
//!
//! No Tempo, Jaeger or Loki server can be installed on the machines this
//! is built on: a local stub serves response bodies written from those
//! APIs' documentation. It is not the real thing, and the test says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::get;
use looptel_core::{Instrumentation, Propagator};
use looptel_retro::sources::{
    Http, LogSource, TraceSource, jaeger::Jaeger, loki::Loki, tempo::Tempo,
};
use time::macros::datetime;

const FOUND: &str = "000000000000000047e4ea3db46ba890";

/// Tempo's documented answer: `batches`, base64 ids.
const TEMPO: &str = r#"{"batches":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"inventory"}}]},
  "scopeSpans":[{"scope":{"name":"looptel"},"spans":[
    {"traceId":"AAAAAAAAAABH5Oo9tGuokA==","spanId":"cmteMBAvwNA=","name":"inventory.v1.StockService/ReserveItem",
     "kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1796032800000000000","endTimeUnixNano":"1796032802000000000",
     "status":{"code":"STATUS_CODE_ERROR","message":"UNAVAILABLE"}}]}]}]}"#;

/// Jaeger's documented answer.
const JAEGER: &str = r#"{"data":[{"traceID":"47e4ea3db46ba890","spans":[
  {"traceID":"47e4ea3db46ba890","spanID":"47e4ea3db46ba890","operationName":"POST /orders","references":[],
   "startTime":1796032800000000,"duration":2000000,"tags":[{"key":"span.kind","type":"string","value":"server"}],
   "logs":[],"processID":"p1","warnings":null}],
  "processes":{"p1":{"serviceName":"order-service","tags":[]}},"warnings":null}],"total":0,"limit":0,"offset":0,"errors":null}"#;

const JAEGER_NOT_FOUND: &str = r#"{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":404,"msg":"trace not found"}]}"#;

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<HashMap<String, String>>>>);

async fn stub(seen: Seen) -> String {
    let app = axum::Router::new()
        .route(
            "/tempo/api/traces/{id}",
            get(|Path(id): Path<String>| async move {
                match id.as_str() {
                    FOUND => (StatusCode::OK, TEMPO),
                    "00000000000000000000000000000500" => (StatusCode::INTERNAL_SERVER_ERROR, "ingester unavailable"),
                    "00000000000000000000000000000510" => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        (StatusCode::OK, TEMPO)
                    }
                    _ => (StatusCode::NOT_FOUND, "trace not found"),
                }
            }),
        )
        .route(
            "/jaeger/api/traces/{id}",
            get(|Path(id): Path<String>| async move {
                if id == FOUND {
                    (StatusCode::OK, JAEGER)
                } else {
                    (StatusCode::NOT_FOUND, JAEGER_NOT_FOUND)
                }
            }),
        )
        .route(
            "/loki/api/v1/query_range",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let seen = seen.clone();
                async move {
                    seen.0.lock().expect("lock").push(q);
                    format!(
                        r#"{{"status":"success","data":{{"resultType":"streams","result":[{{"stream":{{"service_name":"order-service","detected_level":"error"}},
                        "values":[["1796032801000000000","{{\"timestamp\":\"2026-11-30T10:00:01Z\",\"level\":\"ERROR\",\"message\":\"order failed\",\"trace_id\":\"{FOUND}\",\"span_id\":\"47e4ea3db46ba890\"}}"]]}}],"stats":{{}}}}}}"#
                    )
                }
            }),
        );
    let addr = looptel_tests::serve(app).await;
    format!("http://{addr}")
}

fn http(timeout: Duration) -> Http {
    Http::new(Instrumentation::disabled(Propagator::default()), timeout)
}

#[tokio::test]
async fn tempo_found_not_found_failing_and_slow() {
    let base = stub(Seen::default()).await;
    let tempo = Tempo::new(format!("{base}/tempo/"), http(Duration::from_millis(500)));
    let t = tempo.trace(FOUND).await.expect("answered").expect("found");
    assert_eq!(t.spans[0].name, "inventory.v1.StockService/ReserveItem");
    assert_eq!(t.spans[0].service, "inventory");
    assert!(t.spans[0].error);
    assert_eq!(
        tempo
            .trace("0000000000000000000000000000dead")
            .await
            .expect("answered"),
        None,
        "a 404 is a trace not kept, not an error"
    );
    let err = tempo
        .trace("00000000000000000000000000000500")
        .await
        .expect_err("a 500 is an error");
    assert!(
        err.to_string()
            .contains("500 Internal Server Error: ingester unavailable"),
        "{err}"
    );
    assert!(err.source_name.starts_with("tempo http://127.0.0.1"));
    let started = Instant::now();
    let err = tempo
        .trace("00000000000000000000000000000510")
        .await
        .expect_err("too slow");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout holds"
    );
    assert!(
        err.message.contains("timed out") || err.message.contains("timeout"),
        "{err}"
    );
}

#[tokio::test]
async fn jaeger_found_and_not_found() {
    let base = stub(Seen::default()).await;
    let jaeger = Jaeger::new(format!("{base}/jaeger"), http(Duration::from_secs(2)));
    let t = jaeger.trace(FOUND).await.expect("answered").expect("found");
    assert_eq!(t.spans[0].name, "POST /orders");
    assert_eq!(t.spans[0].kind, "SERVER");
    assert_eq!(
        jaeger
            .trace("0000000000000000000000000000dead")
            .await
            .expect("answered"),
        None
    );
}

#[tokio::test]
async fn loki_is_asked_for_the_trace_ids_over_the_window() {
    let seen = Seen::default();
    let base = stub(seen.clone()).await;
    let loki = Loki::new(
        format!("{base}/"),
        r#"{service_name="order-service"}"#,
        http(Duration::from_secs(2)),
    );
    let lines = loki
        .lines(
            &[FOUND.to_owned()],
            datetime!(2026-11-30 09:50 UTC),
            datetime!(2026-11-30 10:10 UTC),
            50,
        )
        .await
        .expect("answered");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].message, "order failed");
    let q = seen.0.lock().expect("lock")[0].clone();
    assert_eq!(
        q["query"],
        format!(r#"{{service_name="order-service"}} |~ "{FOUND}""#)
    );
    assert_eq!(q["start"], "1796032200000000000");
    assert_eq!(q["end"], "1796033400000000000");
    assert_eq!(q["limit"], "50");
    assert_eq!(q["direction"], "forward");
}
