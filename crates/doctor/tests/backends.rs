//! Traces from Tempo and lines from Loki, through retro's clients. No
//! Tempo or Loki server can be installed where looptel is built: the
//! stand-ins below answer with bodies written from those APIs'
//! documentation (Tempo's `GET /api/traces/{id}` in OTLP JSON, Loki's
//! `query_range` streams); they are not Tempo or Loki.

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use looptel_doctor::checks::{self, Status, Thresholds};
use looptel_doctor::{Inputs, gather};

const KEPT: &str = "0af7651916cd43dd8448eb211c80319c";

fn otlp(trace: &str) -> String {
    format!(
        r#"{{"batches":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"orders"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"b7ad6b7169203331","name":"GET /orders","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1796032800000000000","endTimeUnixNano":"1796032800100000000"}}]}}]}}]}}"#
    )
}

async fn stand_ins() -> String {
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    format!(
                        "# TYPE target info\ntarget_info{{service_name=\"orders\",service_version=\"1\"}} 1\n\
# TYPE d_seconds histogram\n\
d_seconds_bucket{{le=\"0.1\"}} 1 # {{trace_id=\"{KEPT}\"}} 0.05\n\
d_seconds_bucket{{le=\"1\"}} 2 # {{trace_id=\"11111111111111111111111111111111\"}} 0.5\n\
d_seconds_bucket{{le=\"+Inf\"}} 3 # {{trace_id=\"22222222222222222222222222222222\"}} 2\n\
d_seconds_count 3\n# EOF\n"
                    ),
                )
            }),
        )
        .route(
            "/api/traces/{id}",
            get(|Path(id): Path<String>| async move {
                if id == KEPT {
                    otlp(&id).into_response()
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            }),
        )
        .route(
            "/loki/api/v1/query_range",
            get(|| async {
                format!(
                    r#"{{"status":"success","data":{{"resultType":"streams","result":[{{"stream":{{"service_name":"orders"}},"values":[
["1796032801000000000","{{\"timestamp\":\"2026-11-30T10:00:01Z\",\"level\":\"INFO\",\"message\":\"order read for jane.doe@example.com\",\"trace_id\":\"{KEPT}\"}}"]]}}],"stats":{{}}}}}}"#
                )
            }),
        );
    let addr = looptel_tests::serve(app).await;
    format!("http://{addr}")
}

#[tokio::test]
async fn exemplars_are_followed_into_tempo_and_lines_read_from_loki() {
    let base = stand_ins().await;
    let (observed, problems) = gather(&Inputs {
        metrics_url: Some(format!("{base}/metrics")),
        tempo_url: Some(base.clone()),
        loki_url: Some(base.clone()),
        trace_wait: Some(Duration::ZERO),
        ..Inputs::default()
    })
    .await;
    assert!(problems.is_empty(), "{problems:?}");
    let traces = observed.traces.as_ref().expect("traces read");
    assert_eq!(traces.len(), 1, "the one Tempo has");
    assert_eq!(traces[0].trace_id, KEPT);
    let findings = checks::run(&observed, &Thresholds::default());
    let status = |id: &str| {
        findings
            .iter()
            .find(|f| f.id == id)
            .map(|f| f.status)
            .expect("catalogued")
    };
    assert_eq!(
        status("metrics.exemplar-not-exported"),
        Status::Warn,
        "2 of 3 never exported"
    );
    assert_eq!(status("logs.pii"), Status::Fail, "Loki's line read");
    assert_eq!(status("logs.uncorrelated"), Status::Pass);
}

#[tokio::test]
async fn a_backend_that_is_down_is_named() {
    let (_, problems) = gather(&Inputs {
        tempo_url: Some("http://127.0.0.1:1".to_owned()),
        loki_url: Some("http://127.0.0.1:1".to_owned()),
        loki_selector: Some("{service_name=\"orders\"}".to_owned()),
        probe: None,
        trace_wait: Some(Duration::ZERO),
        ..Inputs::default()
    })
    .await;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("--loki-url: loki http://127.0.0.1:1")),
        "{problems:?}"
    );
}
