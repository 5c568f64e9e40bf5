//! The generated rules, proven by Debian's promtool (`scripts/test.sh`
//! installs it): `promtool check rules` and `promtool test rules` on the
//! files committed for examples/order-service (checked to be up to date)
//! and on specs with other objectives and scaled windows. And every spec
//! that cannot make working rules is refused, naming its field.

use std::path::{Path, PathBuf};
use std::process::Command;

use looptel_slo::{Error, Spec};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs promtool; panics with its output unless it succeeds.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// Writes every file of `spec` into a fresh directory, checks and tests
/// them with promtool, and returns the directory.
fn prove(spec: &Spec) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, contents) in looptel_slo::generate(spec, true).expect("generate") {
        std::fs::write(dir.path().join(name), contents).expect("write");
    }
    for slo in &spec.slos {
        let rules = looptel_slo::rules_file_name(slo);
        let checked = promtool(dir.path(), &["check", "rules", &rules]);
        assert!(checked.contains("SUCCESS"), "{checked}");
        let tested = promtool(
            dir.path(),
            &["test", "rules", &looptel_slo::tests_file_name(slo)],
        );
        assert!(tested.contains("SUCCESS"), "{tested}");
    }
    dir
}

const BASE: &str = r#"
service: checkout
owner: team-payments
runbook_url: https://runbooks.example.com/checkout
response_sla: { page: 15m, ticket: next business day }
"#;

fn spec(rest: &str) -> Result<Spec, Error> {
    Spec::from_yaml(&format!("{BASE}{rest}"))
}

#[test]
fn the_order_service_files_are_up_to_date_and_pass_promtool() {
    let dir = repo().join("examples/order-service");
    let spec = looptel_slo::read_spec(&dir.join("slo.yaml")).expect("spec");
    for (name, contents) in looptel_slo::generate(&spec, true).expect("generate") {
        let committed = std::fs::read_to_string(dir.join("slo").join(&name))
            .unwrap_or_else(|e| panic!("slo/{name}: {e}"));
        assert!(
            committed == contents,
            "examples/order-service/slo/{name} is out of date: run\n  cargo run -p looptel-slo -- generate examples/order-service/slo.yaml --out examples/order-service/slo --tests"
        );
    }
    let slo_dir = dir.join("slo");
    for slo in &spec.slos {
        promtool(
            &slo_dir,
            &["check", "rules", &looptel_slo::rules_file_name(slo)],
        );
        promtool(
            &slo_dir,
            &["test", "rules", &looptel_slo::tests_file_name(slo)],
        );
    }
}

#[test]
fn other_objectives_sources_and_both_le_renderings_are_proven_too() {
    let spec = spec(
        r#"
no_traffic_alert: 1h
selector: { job: checkout, namespace: "shop" }
slos:
  - name: pay-availability
    objective: 99
    sli: { grpc: { methods: ["payments.v1.Payments/Charge", "payments.v1.Payments/Refund"] } }
  - name: pay-latency
    objective: 99.5
    sli:
      grpc: { methods: ["payments.v1.Payments/Charge"] }
      latency_under: 1s
  - name: tight-availability
    objective: 99.99
    sli: { http: { routes: ["/pay/{id}"], methods: ["POST", "PUT"] } }
  - name: events
    objective: 95
    sli: { messaging: { destinations: ["payments"] } }
"#,
    )
    .expect("valid");
    let dir = prove(&spec);
    // 1s renders as `1` (looptel, Prometheus 2) and `1.0` (Prometheus 3):
    // the rule matches both and a test runs with each.
    let tests = std::fs::read_to_string(dir.path().join("pay-latency.test.yaml")).expect("read");
    assert!(
        tests.contains(r#",le="1"}"#) && tests.contains(r#",le="1.0"}"#),
        "{tests}"
    );
}

#[test]
fn scaled_windows_are_proven_and_say_so() {
    let spec = spec(
        r#"
windows: { scale: 1h=1m }
slos:
  - name: pay-availability
    objective: 99.9
    sli: { http: { routes: ["/pay"] } }
"#,
    )
    .expect("valid");
    assert_eq!(spec.scale, 60);
    let dir = prove(&spec);
    let rules =
        std::fs::read_to_string(dir.path().join("pay-availability.rules.yaml")).expect("read");
    assert!(rules.starts_with("# Generated"), "{rules}");
    assert!(rules.contains("WINDOWS SCALED DOWN 60x"), "{rules}");
    assert!(rules.contains("1h/5m -> 1m/5s"), "{rules}");
    assert!(rules.contains("[5s]"), "the 5m window is 5s: {rules}");
    assert!(
        rules.contains("interval: 1s"),
        "evaluated every second: {rules}"
    );
    // Record names keep the nominal windows.
    assert!(rules.contains("record: slo:error_ratio:rate5m"), "{rules}");
}

#[test]
fn specs_that_cannot_work_are_refused_naming_the_field() {
    let invalid = |rest: &str| match spec(rest) {
        Err(Error::Invalid(problems)) => problems,
        other => panic!("expected invalid, got {other:?}"),
    };
    let one = |rest: &str, field: &str, says: &str| {
        let problems = invalid(rest);
        assert!(
            problems
                .iter()
                .any(|p| p.field == field && p.message.contains(says)),
            "{field} / {says}: {problems:?}"
        );
    };
    let slo = |objective: &str, sli: &str| {
        format!("slos:\n  - name: pay\n    objective: {objective}\n    sli: {sli}\n")
    };
    let http = r#"{ http: { routes: ["/pay"] } }"#;
    one(&slo("100", http), "slos[0].objective", "no error budget");
    one(&slo("90", http), "slos[0].objective", "can never page");
    one(&slo("0", http), "slos[0].objective", "above 0");
    one(
        &slo(
            "99",
            r#"{ http: { routes: ["/pay"] }, latency_under: 300ms }"#,
        ),
        "slos[0].sli.latency_under",
        "not a bucket bound",
    );
    one(
        &slo(
            "99",
            r#"{ http: { routes: ["/pay"] }, latency_under: soon }"#,
        ),
        "slos[0].sli.latency_under",
        "not a duration",
    );
    one(&slo("99", "{}"), "slos[0].sli", "exactly one of");
    one(
        &slo(
            "99",
            r#"{ http: { routes: ["/pay"] }, grpc: { methods: ["a.B/C"] } }"#,
        ),
        "slos[0].sli",
        "exactly one of",
    );
    one(
        &slo("99", r#"{ grpc: { methods: ["/a.B/C"] } }"#),
        "slos[0].sli.grpc.methods",
        "full method",
    );
    one(
        &slo("99", r#"{ http: { routes: [] } }"#),
        "slos[0].sli.http.routes",
        "lists nothing",
    );
    one(
        &format!("windows: {{ scale: 1h=7m }}\n{}", slo("99", http)),
        "windows.scale",
        "dividing an hour",
    );
    one(
        &format!("selector: {{ \"bad-name\": x }}\n{}", slo("99", http)),
        "selector.bad-name",
        "not a label name",
    );
    one(
        "slos:\n  - name: Pay Now\n    objective: 99\n    sli: { http: { routes: [\"/pay\"] } }\n",
        "slos[0].name",
        "lower-case",
    );
    one("slos: []\n", "slos", "no SLO");
    // Two problems at once: both named.
    let both = invalid(&format!(
        "{}  - name: pay\n    objective: 100\n    sli: {http}\n",
        slo("99", http)
    ));
    assert!(
        both.iter().any(|p| p.message.contains("used twice")),
        "{both:?}"
    );
    assert!(
        both.iter().any(|p| p.field == "slos[1].objective"),
        "{both:?}"
    );

    // The shape: unknown and missing fields, wrong types, bad YAML.
    for (rest, says) in [
        (format!("objectiv: 99\n{}", slo("99", http)), "objectiv"),
        (
            "slos:\n  - name: pay\n    sli: {}\n".to_owned(),
            "objective",
        ),
        (slo("high", http), "objective"),
        ("slos: [".to_owned(), "line"),
    ] {
        match spec(&rest) {
            Err(Error::Yaml(message)) => assert!(message.contains(says), "{says}: {message}"),
            other => panic!("{rest}: {other:?}"),
        }
    }
}

/// On native histograms a latency SLO takes any bound: its rules read
/// `histogram_fraction`, pass `promtool check rules`, and come without a
/// promtool test file (promtool 2.42 cannot write native series: the
/// order-service's native SLO test proves them in a real Prometheus).
#[test]
fn native_histograms_take_any_latency_bound_and_check_clean() {
    let spec = spec(
        "histograms: native\nslos:\n  - name: pay-latency\n    objective: 99\n    sli: { http: { routes: [\"/pay\"] }, latency_under: 350ms }\n  - name: pay-availability\n    objective: 99.9\n    sli: { http: { routes: [\"/pay\"] } }\n",
    )
    .expect("350 ms is fine on a native histogram");
    let files = looptel_slo::generate(&spec, true).expect("generate");
    assert!(
        files.iter().all(|(name, _)| name.ends_with(".rules.yaml")),
        "no promtool test files: {:?}",
        files.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, contents) in &files {
        std::fs::write(dir.path().join(name), contents).expect("write");
        let checked = promtool(dir.path(), &["check", "rules", name]);
        assert!(checked.contains("SUCCESS"), "{checked}");
    }
    let latency = &files
        .iter()
        .find(|(n, _)| n.starts_with("pay-latency"))
        .expect("latency rules")
        .1;
    assert!(
        latency
            .contains("histogram_fraction(0, 0.35, sum(rate(http_server_request_duration_seconds{"),
        "{latency}"
    );
    assert!(!latency.contains("seconds_bucket") && !latency.contains("seconds_count"));
    let availability = &files
        .iter()
        .find(|(n, _)| n.starts_with("pay-availability"))
        .expect("availability rules")
        .1;
    assert!(
        availability.contains("histogram_count(sum(rate(http_server_request_duration_seconds{")
    );
    match spec_err(
        "histograms: sparse\nslos:\n  - name: pay\n    objective: 99\n    sli: { http: { routes: [\"/pay\"] } }\n",
    ) {
        Error::Invalid(problems) => assert!(problems.iter().any(|p| p.field == "histograms")),
        other => panic!("{other:?}"),
    }
}

fn spec_err(rest: &str) -> Error {
    spec(rest).expect_err("refused")
}
