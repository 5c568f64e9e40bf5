//! The `looptel-retro` binary as an operator runs it: flags and their
//! variables, its own JSON logs, spans and RED metrics, clear start-up
//! errors.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/order-service/slo.yaml"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_is_instrumented_by_looptel_and_logs_where_it_listens() {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_looptel-retro"))
        .env_clear()
        .current_dir(dir.path())
        .env("RETRO_ADDR", "127.0.0.1:0")
        .env("RETRO_SPEC", SPEC)
        .env("OTEL_TRACES_EXPORTER", "none")
        .arg("--prometheus-url=http://127.0.0.1:1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let listening = loop {
        let l = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a log line");
        seen.push(l.clone());
        if l["message"] == "looptel-retro listening" {
            break l;
        }
    };
    assert!(
        seen.iter()
            .any(|l| l["message"] == "no trace source: cards will name exemplars' trace ids only"),
        "{seen:#?}"
    );
    assert_eq!(listening["service.name"], "looptel-retro");
    // The embedded default: a SQLite file in the working directory, named.
    let db = dir.path().join("retro.db");
    assert!(
        seen.iter()
            .any(|l| l["message"] == format!("cards are kept in {}", db.display())),
        "{seen:#?}"
    );
    assert!(db.exists());
    let addr = listening["http.addr"].as_str().expect("address").to_owned();
    assert!(!addr.ends_with(":0"));

    let client = reqwest::Client::new();
    let res = client
        .post(format!("http://{addr}/alerts"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains("http_route=\"/alerts\"")
        })
        .unwrap_or_else(|| panic!("its own RED: {metrics}"));
    assert!(line.contains("http_response_status_code=\"400\""), "{line}");
    // A page makes it call its sources: each call timed on its own
    // /metrics, a refused connection by its class.
    let res = client
        .post(format!("http://{addr}/alerts"))
        .json(&common::webhook(
            "firing",
            vec![common::alert(
                "firing",
                "b1",
                "2026-11-30T10:00:00Z",
                "0001-01-01T00:00:00Z",
            )],
        ))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    let source = looptel_tests::eventually(
        looptel_tests::budget::IN_PROCESS,
        "the sources' calls on /metrics",
        async || {
            let text = client
                .get(format!("http://{addr}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .find(|l| l.starts_with("http_client_request_duration_seconds_count{"))
                .map(str::to_owned)
        },
    )
    .await;
    assert!(
        source.contains("http_request_method=\"GET\"")
            && source.contains("error_type=\"connection_refused\""),
        "{source}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_bad_spec_or_duration_stops_it_with_the_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_looptel-retro"))
        .env_clear()
        .args(["--spec", "/nonexistent/slo.yaml"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reading the SLO spec"), "{err}");
    assert!(err.contains("/nonexistent/slo.yaml"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_looptel-retro"))
        .env_clear()
        .args(["--spec", SPEC, "--window", "ten minutes"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a duration such as 10m"), "{err}");
}

/// Runs the binary to its exit with `args` and `env`; (success, stdout and
/// stderr together).
fn run(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_looptel-retro"))
        .env_clear()
        .env("OTEL_TRACES_EXPORTER", "none")
        .envs(env.iter().copied())
        .current_dir(dir)
        .args(["--spec", SPEC])
        .args(args)
        .output()
        .expect("run");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn open_writes_on_a_network_address_are_refused_unless_asked_for() {
    let dir = tempfile::tempdir().expect("dir");
    let (ok, text) = run(&["--addr", "0.0.0.0:0"], &[], dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("refusing to serve writes without a token on 0.0.0.0:0"),
        "{text}"
    );
    assert!(text.contains("RETRO_WEBHOOK_TOKEN"), "{text}");
    assert!(text.contains("RETRO_WRITE_TOKEN"), "{text}");
    assert!(
        !dir.path().join("retro.db").exists(),
        "refused before anything"
    );

    // With only the webhook's token, the actions are still open: refused.
    let (ok, text) = run(
        &["--addr", "0.0.0.0:0"],
        &[("RETRO_WEBHOOK_TOKEN", "am-secret-1")],
        dir.path(),
    );
    assert!(!ok, "{text}");
    assert!(!text.contains("RETRO_WEBHOOK_TOKEN"), "{text}");
    assert!(
        !text.contains("am-secret-1"),
        "no token in any line: {text}"
    );

    // An empty token file is no token.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    let (ok, text) = run(
        &["--webhook-token-file", empty.to_str().expect("path")],
        &[],
        dir.path(),
    );
    assert!(!ok, "{text}");
    assert!(text.contains("the webhook-token token"), "{text}");
    assert!(text.contains("must not be empty"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_files_guard_the_writes_and_never_reach_a_log_line() {
    let dir = tempfile::tempdir().expect("dir");
    let am = dir.path().join("am-token");
    std::fs::write(&am, "am-secret-from-a-file\n").expect("write");
    let db = format!("sqlite://{}", dir.path().join("retro.db").display());
    let retro = common::process::Retro::start_with_env(
        &[
            "--webhook-token-file",
            am.to_str().expect("path"),
            "--database-url",
            &db,
            "--prometheus-url=http://127.0.0.1:1",
        ],
        &[("RETRO_WRITE_TOKEN", "people-secret-from-env")],
    );
    let client = reqwest::Client::new();
    let body = serde_json::json!({"version": "4", "status": "firing", "alerts": [{
        "status": "firing", "labels": {"alertname": "X"}, "startsAt": "2026-11-30T10:00:00Z",
        "fingerprint": "f00"}]});
    for (token, status) in [
        (None, 401),
        (Some("people-secret-from-env"), 401),
        (Some("am-secret-from-a-file"), 200),
    ] {
        let mut r = client.post(format!("{}/alerts", retro.base)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        assert_eq!(r.send().await.expect("post").status(), status, "{token:?}");
    }
    let res = client
        .post(format!("{}/incidents/f00-1796032800/actions", retro.base))
        .bearer_auth("people-secret-from-env")
        .json(&serde_json::json!({"text": "a fix"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 201);
    // Every line it wrote, to its clean stop.
    let all: String = retro
        .terminate()
        .iter()
        .map(|l| l.to_string() + "\n")
        .collect();
    for secret in ["am-secret-from-a-file", "people-secret-from-env"] {
        assert!(!all.contains(secret), "{secret} in the logs: {all}");
    }
}

#[test]
fn a_store_that_is_not_a_database_stops_it_with_the_reason() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("retro.db"), "not a database, a text file").expect("write");
    let (ok, text) = run(&[], &[], dir.path());
    assert!(!ok, "{text}");
    assert!(text.contains("opening the card store"), "{text}");
    assert!(text.contains("retro.db"), "{text}");
    assert!(text.contains("not a database"), "{text}");
}
