//! "Can my code be observed?" asked of order-service as its `main` builds
//! it: looptel-doctor reads its `/metrics`, its settings and its log lines,
//! and follows probes of its own through it. No check may fail; the
//! report is printed (it is the README's).

mod common;

use std::time::Duration;

use common::{Service, Traffic};
use looptel_doctor::checks::{self, Status, Thresholds};
use looptel_doctor::report::{self, Format};
use looptel_doctor::{Inputs, gather};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_service_as_main_builds_it_comes_out_without_a_fail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("service.log");
    let spans = dir.path().join("spans.jsonl");
    let settings = [
        ("LOOPTEL_TRACES_FILE", spans.display().to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
    ];
    let mut svc = Service::start_logging(&settings, Some(&log));
    let addr = svc.http_addr();
    let env = dir.path().join("service.env");
    std::fs::write(
        &env,
        settings
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect::<String>(),
    )
    .expect("env file");
    let traffic = Traffic::start(&addr);
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(traffic);

    let started = std::time::Instant::now();
    let (observed, problems) = gather(&Inputs {
        metrics_url: Some(format!("http://{addr}/metrics")),
        probe: Some(format!("http://{addr}/orders/doctor-probe")),
        // As the gateway's callers: inside the trust boundary.
        probe_headers: vec![("x-tenant-id".to_owned(), "acme".to_owned())],
        probes: 5,
        env_file: Some(env),
        logs: Some(log),
        traces: Some(spans),
        slo: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/slo.yaml").into()),
        environment: Some("production".to_owned()),
        ..Inputs::default()
    })
    .await;
    let findings = checks::run(&observed, &Thresholds::default());
    let text = report::render(
        Format::Markdown,
        "order-service",
        &findings,
        &problems,
        false,
    );
    eprintln!("{text}");
    eprintln!("checked in {:?}", started.elapsed());
    assert!(problems.is_empty(), "{problems:?}");
    let failed: Vec<_> = findings
        .iter()
        .filter(|f| f.status == Status::Fail)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let status = |id: &str| {
        findings
            .iter()
            .find(|f| f.id == id)
            .map(|f| f.status)
            .expect("catalogued")
    };
    for id in [
        "traces.service-name",
        "metrics.high-cardinality",
        "metrics.no-exemplars",
        "metrics.missing-unit",
        "propagation.response-traceparent",
        "propagation.baggage-in-labels",
        "metrics.slo-bound-not-a-bucket",
        "logs.mixed-formats",
        "logs.uncorrelated",
        "logs.pii",
        "logs.debug-in-production",
        "traces.orphan-spans",
        "traces.span-depth",
        "traces.spans-per-trace",
        "traces.library-spans",
        "metrics.exemplar-not-exported",
    ] {
        assert_eq!(status(id), Status::Pass, "{id}: {text}");
    }
    assert_eq!(report::exit_code(&findings, &problems, false), 0);
    drop(svc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointed_at_the_doctor_over_otlp_its_spans_are_checked_too() {
    // A port for the doctor's OTLP/HTTP receiver, given to the service.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut svc = Service::start(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
    ]);
    let addr = svc.http_addr();
    let traffic = Traffic::start(&addr);
    let (observed, problems) = gather(&Inputs {
        metrics_url: Some(format!("http://{addr}/metrics")),
        probe: Some(format!("http://{addr}/orders/doctor-probe")),
        // As the gateway's callers: inside the trust boundary.
        probe_headers: vec![("x-tenant-id".to_owned(), "acme".to_owned())],
        probes: 5,
        otlp_listen: Some(format!("127.0.0.1:{port}")),
        listen_for: Some(Duration::from_secs(4)),
        ..Inputs::default()
    })
    .await;
    drop(traffic);
    assert!(problems.is_empty(), "{problems:?}");
    let traces = observed.traces.as_ref().expect("spans received");
    assert!(traces.len() >= 5, "{} traces", traces.len());
    // The probes' traces among them, continued from the probes.
    let probes = observed.probes.as_ref().expect("probed");
    assert!(
        probes
            .answers
            .iter()
            .all(|(sent, _)| traces.iter().any(|t| &t.trace_id == sent)),
        "every probe's trace received"
    );
    let findings = checks::run(&observed, &Thresholds::default());
    let failed: Vec<_> = findings
        .iter()
        .filter(|f| f.status == Status::Fail)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for id in [
        "traces.orphan-spans",
        "traces.span-depth",
        "traces.spans-per-trace",
        "traces.library-spans",
        "metrics.exemplar-not-exported",
    ] {
        let f = findings.iter().find(|f| f.id == id).expect("catalogued");
        assert_eq!(f.status, Status::Pass, "{id}: {f:?}");
    }
    drop(svc);
}
