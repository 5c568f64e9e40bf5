//! The binary as a pipeline runs it: a service with a pitfall fails the
//! check (exit 1), an input that cannot be read is said and exits 2, and
//! the report comes as JSON or Markdown.

use std::process::Command;

use axum::Router;
use axum::routing::get;

/// A service whose metrics label orders by user.
async fn pitfall_service() -> String {
    let app = Router::new().route(
        "/metrics",
        get(|| async {
            "# TYPE orders counter\norders_total{user_id=\"u-1\"} 1\norders_total{user_id=\"u-2\"} 3\n"
        }),
    );
    let addr = looptel_tests::serve(app).await;
    format!("http://{addr}/metrics")
}

fn doctor(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_looptel-doctor"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pitfall_fails_with_its_evidence_and_fix() {
    let url = pitfall_service().await;
    let url2 = url.clone();
    let (code, out, _) =
        tokio::task::spawn_blocking(move || doctor(&["--metrics-url", &url2, "--format", "json"]))
            .await
            .expect("ran");
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let card = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == "metrics.high-cardinality")
        .expect("the check");
    assert_eq!(card["status"], "fail");
    assert!(
        card["evidence"][0]
            .as_str()
            .expect("evidence")
            .contains("orders{user_id}")
    );
    assert!(
        card["fix"]
            .as_str()
            .expect("fix")
            .contains("bounded values")
    );
    assert_eq!(report["counts"]["fail"], 1);
    // Markdown for a pull request; the table for people.
    let (code, md, _) = tokio::task::spawn_blocking(move || {
        doctor(&["--metrics-url", &url, "--format", "markdown"])
    })
    .await
    .expect("ran");
    assert_eq!(code, 1);
    assert!(md.contains("| fail | `metrics.high-cardinality` |"), "{md}");
}

#[test]
fn an_unreachable_input_is_named_and_exits_2() {
    let (code, out, err) = doctor(&["--metrics-url", "http://127.0.0.1:1/metrics"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("could not read --metrics-url http://127.0.0.1:1/metrics: unreachable"),
        "{err}"
    );
    let (code, _, err) = doctor(&["--logs", "/nonexistent/service.log"]);
    assert_eq!(code, 2);
    assert!(err.contains("--logs /nonexistent/service.log"), "{err}");
    let (code, _, err) = doctor(&[]);
    assert_eq!(code, 2);
    assert!(err.contains("nothing to check"), "{err}");
}

#[test]
fn warnings_fail_a_strict_pipeline() {
    let dir = tempfile_dir();
    let env = dir.join("service.env");
    std::fs::write(&env, "OTEL_SERVICE_NAME=orders\n").expect("write");
    let path = env.display().to_string();
    let (code, out, _) = doctor(&["--env-file", &path, "--environment", "production"]);
    assert_eq!(code, 0, "warnings only: {out}");
    assert!(
        out.contains("warn") && out.contains("sampling.unset"),
        "{out}"
    );
    let (code, _, _) = doctor(&[
        "--env-file",
        &path,
        "--environment",
        "production",
        "--fail-on",
        "warn",
    ]);
    assert_eq!(code, 1);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("doctor-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}
