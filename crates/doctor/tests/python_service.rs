//! A service the doctor has never seen: Python, on OpenTelemetry's official
//! SDK (from PyPI, in a virtualenv these tests make once), with one pitfall
//! switched on at a time. Each injected pitfall must be reported by its
//! check; the clean variant must come out without a fail.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use looptel_doctor::checks::{self, Finding, Status, Thresholds};
use looptel_doctor::{Inputs, gather};

/// The SDK's versions, pinned.
const PACKAGES: &[&str] = &[
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-prometheus==0.66b2",
    "opentelemetry-exporter-otlp-proto-common==1.45.2",
];

/// The virtualenv's python, made once for every test of this binary run
/// (a directory created atomically is the lock).
fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("doctor-python");
    let python = root.join("bin/python");
    let ready = root.join(".ready");
    let lock = Path::new(env!("CARGO_TARGET_TMPDIR")).join("doctor-python.lock");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if ready.exists() {
            return python;
        }
        if std::fs::create_dir(&lock).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "another test's virtualenv never got ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let made = (|| {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&root)
            .status()
            .ok()?
            .success();
        ok.then_some(())?;
        Command::new(root.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PACKAGES)
            .status()
            .ok()?
            .success()
            .then_some(())
    })();
    if made.is_some() {
        std::fs::write(&ready, "").expect("mark ready");
    }
    let _ = std::fs::remove_dir(&lock);
    assert!(
        made.is_some(),
        "python3 -m venv and pip install {PACKAGES:?}"
    );
    python
}

/// The service, running with `pitfall` and `env`; its log file, spans
/// file and settings file in `dir`.
struct PyService {
    child: Child,
    port: u16,
}

impl Drop for PyService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, pitfall: &str, env: &[(&str, &str)]) -> PyService {
    let log = std::fs::File::create(dir.join("service.log")).expect("log file");
    let mut child = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/pitfall_service.py"
        ))
        .env_clear()
        .env("SPANS_FILE", dir.join("spans.jsonl"))
        .env("PITFALL", pitfall)
        .envs(env.iter().copied())
        .stdout(Stdio::from(log))
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    let deadline = Instant::now() + Duration::from_secs(60);
    let port = loop {
        let text = std::fs::read_to_string(dir.join("service.log")).unwrap_or_default();
        if let Some(port) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["port"].as_u64())
        {
            break u16::try_from(port).expect("a port");
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(e) = child.stderr.take() {
                for l in BufReader::new(e).lines().map_while(Result::ok) {
                    err.push_str(&l);
                    err.push('\n');
                }
            }
            panic!("the Python service exited ({status}): {err}");
        }
        assert!(
            Instant::now() < deadline,
            "the Python service never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::fs::write(
        dir.join("service.env"),
        env.iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect::<String>(),
    )
    .expect("settings");
    PyService { child, port }
}

/// The doctor's findings for the service with `pitfall`, in production.
async fn doctor(pitfall: &str, extra: &[(&str, &str)]) -> Vec<Finding> {
    let dir = tempfile::tempdir().expect("dir");
    let mut env = vec![
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=production",
        ),
    ];
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k, v));
    }
    let svc = start(dir.path(), pitfall, &env);
    let base = format!("http://127.0.0.1:{}", svc.port);
    // Some traffic of its own first, flushed.
    let client = reqwest::Client::new();
    for i in 0..5 {
        client
            .get(format!("{base}/orders/{i}"))
            .send()
            .await
            .expect("served");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (observed, problems) = gather(&Inputs {
        metrics_url: Some(format!("{base}/metrics")),
        probe: Some(format!("{base}/orders/probe")),
        probes: 5,
        env_file: Some(dir.path().join("service.env")),
        logs: Some(dir.path().join("service.log")),
        traces: Some(dir.path().join("spans.jsonl")),
        ..Inputs::default()
    })
    .await;
    assert!(problems.is_empty(), "{pitfall}: {problems:?}");
    drop(svc);
    checks::run(&observed, &Thresholds::default())
}

fn status(findings: &[Finding], id: &str) -> Status {
    findings
        .iter()
        .find(|f| f.id == id)
        .map(|f| f.status)
        .expect("catalogued")
}

/// The check `id` says `want` of the service with `pitfall`.
async fn reported(pitfall: &str, extra: &[(&str, &str)], id: &str, want: Status) {
    let findings = doctor(pitfall, extra).await;
    let got = findings.iter().find(|f| f.id == id).expect("catalogued");
    assert_eq!(got.status, want, "{pitfall}: {got:#?}");
}

#[tokio::test]
async fn the_clean_variant_comes_out_without_a_fail() {
    let findings = doctor("", &[]).await;
    let failed: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.status == Status::Fail)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for id in [
        "traces.service-name",
        "traces.orphan-spans",
        "traces.span-depth",
        "traces.spans-per-trace",
        "traces.library-spans",
        "metrics.high-cardinality",
        "metrics.coarse-buckets",
        "metrics.counter-as-gauge",
        "metrics.missing-unit",
        "logs.mixed-formats",
        "logs.uncorrelated",
        "logs.pii",
        "logs.debug-in-production",
        "sampling.always-on-in-production",
        "export.unbounded-queue",
        "propagation.response-traceparent",
        "propagation.baggage-in-labels",
    ] {
        assert_eq!(status(&findings, id), Status::Pass, "{id}: {findings:#?}");
    }
}

#[tokio::test]
async fn user_ids_as_labels() {
    reported(
        "user_id_label",
        &[],
        "metrics.high-cardinality",
        Status::Fail,
    )
    .await;
}

#[tokio::test]
async fn the_sdks_default_buckets_for_seconds() {
    reported(
        "coarse_buckets",
        &[],
        "metrics.coarse-buckets",
        Status::Warn,
    )
    .await;
}

#[tokio::test]
async fn a_count_as_a_gauge() {
    reported(
        "counter_as_gauge",
        &[],
        "metrics.counter-as-gauge",
        Status::Warn,
    )
    .await;
}

#[tokio::test]
async fn a_duration_without_its_unit() {
    reported("no_units", &[], "metrics.missing-unit", Status::Warn).await;
}

#[tokio::test]
async fn no_service_version() {
    reported("no_version", &[], "traces.service-name", Status::Warn).await;
}

#[tokio::test]
async fn log_lines_without_their_trace() {
    reported("uncorrelated", &[], "logs.uncorrelated", Status::Fail).await;
}

#[tokio::test]
async fn an_email_in_a_log_line() {
    reported("pii", &[], "logs.pii", Status::Fail).await;
}

#[tokio::test]
async fn print_beside_the_logger() {
    reported("mixed_logging", &[], "logs.mixed-formats", Status::Fail).await;
}

#[tokio::test]
async fn debug_logging_in_production() {
    reported(
        "debug_logs",
        &[("LOG_LEVEL", "debug")],
        "logs.debug-in-production",
        Status::Fail,
    )
    .await;
}

#[tokio::test]
async fn spans_twelve_levels_deep() {
    reported("deep_spans", &[], "traces.span-depth", Status::Warn).await;
}

#[tokio::test]
async fn a_helper_traced_in_a_loop() {
    reported("helper_loop", &[], "traces.library-spans", Status::Warn).await;
}

#[tokio::test]
async fn a_task_that_lost_the_context() {
    // The lost task's span is a root: kept whatever the ratio says.
    reported(
        "lost_context",
        &[("OTEL_TRACES_SAMPLER", "parentbased_always_on")],
        "traces.orphan-spans",
        Status::Fail,
    )
    .await;
}

#[tokio::test]
async fn baggage_copied_into_a_label() {
    reported(
        "baggage_label",
        &[],
        "propagation.baggage-in-labels",
        Status::Fail,
    )
    .await;
}

#[tokio::test]
async fn no_traceparent_in_the_response() {
    reported(
        "no_traceparent",
        &[],
        "propagation.response-traceparent",
        Status::Warn,
    )
    .await;
}

#[tokio::test]
async fn every_trace_kept_in_production() {
    reported(
        "",
        &[("OTEL_TRACES_SAMPLER", "always_on")],
        "sampling.always-on-in-production",
        Status::Warn,
    )
    .await;
}

#[tokio::test]
async fn an_export_queue_without_a_real_bound() {
    reported(
        "",
        &[("OTEL_BSP_MAX_QUEUE_SIZE", "100000000")],
        "export.unbounded-queue",
        Status::Warn,
    )
    .await;
}
