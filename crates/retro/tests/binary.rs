//! The `looptel-retro` binary as an operator runs it: flags and their
//! variables, its own JSON logs, spans and RED metrics, clear start-up
//! errors.

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_looptel-retro"))
        .env_clear()
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
