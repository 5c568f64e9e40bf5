//! `deploy/`, validated without a container engine (none runs where this
//! is built): the compose file by Debian's `docker-compose config`, the
//! Prometheus configuration and the generated rules by `promtool`, the
//! Alertmanager configuration by `amtool`, the collector configuration
//! against the collector's documented structure, and Grafana's provisioning
//! for links that only work when uids, label names and field names agree.
//!
//! And the drift test: every metric and label a dashboard or a rule reads
//! exists in a real scrape of order-service after traffic on every route,
//! gRPC method and topic — a renamed metric fails here, not silently on a
//! dashboard.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Service, amqp_url};
use promql_parser::parser::{self, Expr, LabelModifier};
use serde_json::Value as Json;
use yaml_serde::Value as Yaml;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

fn yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn spec() -> looptel_slo::Spec {
    looptel_slo::read_spec(&repo().join("examples/order-service/slo.yaml")).expect("spec")
}

/// Runs a checker; its output on failure.
fn check(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} (scripts/test.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The compose file as `docker-compose config` resolved it.
fn compose() -> Yaml {
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(deploy("compose.yaml"))
        .arg("config")
        .output()
        .expect("docker-compose (Debian package; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_serde::from_slice(&out.stdout).expect("resolved compose file")
}

fn env_of<'a>(compose: &'a Yaml, service: &str, key: &str) -> &'a str {
    compose["services"][service]["environment"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{service} sets no {key}"))
}

/// `http://host:port/path` → (host, port, path).
fn url_parts(url: &str) -> (String, u16, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = authority.rsplit_once(':').expect("a port in the URL");
    (
        host.to_owned(),
        port.parse().expect("port"),
        format!("/{path}"),
    )
}

fn strs(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// The secrets a compose service mounts (`docker-compose config` writes
/// the short form as `{source: name}`).
fn secrets(service: &Yaml) -> Vec<String> {
    service["secrets"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            s.as_str()
                .or_else(|| s["source"].as_str())
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn the_compose_file_is_valid_and_mounts_files_that_exist() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    for (name, service) in services {
        let name = name.as_str().expect("name");
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            // docker-compose 1.x prints bind mounts as `source:target[:mode]`.
            let source = match volume {
                Yaml::String(s) => s.split(':').next().unwrap_or_default().to_owned(),
                v => v["source"].as_str().unwrap_or_default().to_owned(),
            };
            if source.starts_with('/') {
                assert!(
                    Path::new(&source).exists(),
                    "{name} mounts {source}, which does not exist"
                );
            }
        }
        if let Some(build) = service["build"].as_mapping() {
            let context = build[&Yaml::from("context")].as_str().expect("context");
            let file = build[&Yaml::from("dockerfile")]
                .as_str()
                .expect("dockerfile");
            let dockerfile = Path::new(context).join(file);
            let text = std::fs::read_to_string(&dockerfile)
                .unwrap_or_else(|e| panic!("{name}: {}: {e}", dockerfile.display()));
            let target = build[&Yaml::from("target")].as_str().expect("target");
            assert!(
                text.lines()
                    .any(|l| l.starts_with("FROM ") && l.ends_with(&format!(" AS {target}"))),
                "{name}: no stage {target} in {}",
                dockerfile.display()
            );
        }
    }
    // order-service's healthcheck asks for readiness on the port it serves,
    // with a tool its image has.
    let check: Vec<&str> = compose["services"]["order-service"]["healthcheck"]["test"]
        .as_sequence()
        .expect("order-service has a healthcheck")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let (_, port, _) = url_parts(check.last().copied().unwrap_or_default());
    assert_eq!(
        (
            check.get(1).copied(),
            port,
            check.last().map(|u| u.ends_with("/health/ready"))
        ),
        (Some("curl"), 8080, Some(true)),
        "{check:?}"
    );
    assert!(
        std::fs::read_to_string(deploy("Dockerfile"))
            .expect("Dockerfile")
            .contains(" curl"),
        "the runtime image installs curl"
    );

    // The services send to the collector's OTLP/HTTP receiver.
    let collector = yaml(&deploy("otel-collector/config.yaml"));
    let http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        .as_str()
        .expect("OTLP/HTTP receiver");
    for service in ["order-service", "retro"] {
        let (host, port, _) = url_parts(env_of(&compose, service, "OTEL_EXPORTER_OTLP_ENDPOINT"));
        assert_eq!(host, "otel-collector", "{service}");
        assert_eq!(Some(port), url_parts(http).1.into(), "{service}");
        assert_eq!(
            env_of(&compose, service, "OTEL_EXPORTER_OTLP_PROTOCOL"),
            "http/protobuf"
        );
        assert_eq!(env_of(&compose, service, "OTEL_LOGS_EXPORTER"), "otlp");
        // Scraped, not pushed as well: one copy of each series for the rules.
        assert_eq!(
            env_of(&compose, service, "OTEL_METRICS_EXPORTER"),
            "prometheus"
        );
    }
    // retro reads the spec Prometheus' rules were generated from.
    assert_eq!(
        env_of(&compose, "retro", "RETRO_SPEC"),
        "/etc/looptel/slo.yaml"
    );
}

#[test]
fn prometheus_config_and_the_generated_rules_pass_promtool() {
    // Laid out as the compose file mounts it: the config, and the rules
    // looptel-slo generated under rules/.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        deploy("prometheus/prometheus.yml"),
        dir.path().join("prometheus.yml"),
    )
    .expect("copy config");
    std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
    let mut rules = 0;
    for entry in std::fs::read_dir(repo().join("examples/order-service/slo")).expect("slo/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".rules.yaml") {
            std::fs::copy(&path, dir.path().join("rules").join(name)).expect("copy rules");
            rules += 1;
        }
    }
    assert_eq!(rules, spec().slos.len(), "one rule file per SLO");
    let out = Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(dir.path().join("prometheus.yml"))
        .output()
        .expect("promtool");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("SUCCESS: {rules} rule files found")),
        "promtool read every rule file: {text}"
    );

    // The scrape job is the one the SLO spec selects.
    let config = yaml(&deploy("prometheus/prometheus.yml"));
    let jobs: Vec<&str> = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .filter_map(|c| c["job_name"].as_str())
        .collect();
    let spec = spec();
    assert!(
        jobs.contains(&spec.selector["job"].as_str()),
        "no scrape job {:?} in {jobs:?}",
        spec.selector["job"]
    );
    // It pages the compose file's Alertmanager.
    let compose = compose();
    let am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
        .as_str()
        .expect("an Alertmanager");
    let (host, _) = am.split_once(':').expect("host:port");
    assert!(compose["services"][host].is_mapping(), "{am}");
    let flags = strs(&compose["services"]["prometheus"]["command"]);
    let features: Vec<&str> = flags
        .iter()
        .filter_map(|f| f.strip_prefix("--enable-feature="))
        .flat_map(|f| f.split(','))
        .collect();
    assert!(
        features.contains(&"exemplar-storage") && features.contains(&"native-histograms"),
        "exemplars stored, native histograms scraped: {flags:?}"
    );
}

#[test]
fn alertmanager_config_passes_amtool_and_reaches_retro() {
    check(
        Command::new("amtool")
            .arg("check-config")
            .arg(deploy("alertmanager/alertmanager.yml")),
    );
    let config = yaml(&deploy("alertmanager/alertmanager.yml"));
    let receiver = config["route"]["receiver"].as_str().expect("receiver");
    let webhook = config["receivers"]
        .as_sequence()
        .expect("receivers")
        .iter()
        .find(|r| r["name"].as_str() == Some(receiver))
        .map(|r| &r["webhook_configs"][0])
        .expect("the route's receiver has a webhook");
    assert_eq!(
        webhook["send_resolved"].as_bool(),
        Some(true),
        "retro verifies recoveries"
    );
    let (host, port, path) = url_parts(webhook["url"].as_str().expect("url"));
    let compose = compose();
    assert_eq!(host, "retro");
    assert_eq!(path, "/alerts", "retro's webhook route");
    let (_, retro_port) = env_of(&compose, "retro", "RETRO_ADDR")
        .rsplit_once(':')
        .expect("host:port");
    assert_eq!(port.to_string(), retro_port);
    // Pages are grouped per SLO, as the rules label them.
    assert!(strs(&config["route"]["group_by"]).contains(&"slo".to_owned()));
    // It presents the token retro asks for: the same compose secret, read
    // from the file compose mounts in each.
    let auth = &webhook["http_config"]["authorization"];
    assert_eq!(auth["type"].as_str(), Some("Bearer"));
    let file = auth["credentials_file"].as_str().expect("credentials_file");
    let secret = file
        .strip_prefix("/run/secrets/")
        .expect("a compose secret's path");
    for service in ["alertmanager", "retro"] {
        assert!(
            secrets(&compose["services"][service]).contains(&secret.to_owned()),
            "{service} mounts the secret {secret}"
        );
    }
    assert!(compose["secrets"][secret]["file"].as_str().is_some());
    assert_eq!(env_of(&compose, "retro", "RETRO_WEBHOOK_TOKEN_FILE"), file);
    // Listening beyond loopback, retro needs the actions' token too, and
    // keeps its cards on a volume.
    let write = env_of(&compose, "retro", "RETRO_WRITE_TOKEN_FILE");
    let write_secret = write.strip_prefix("/run/secrets/").expect("a secret");
    assert!(secrets(&compose["services"]["retro"]).contains(&write_secret.to_owned()));
    let db = env_of(&compose, "retro", "RETRO_DATABASE_URL");
    let dir = db
        .strip_prefix("sqlite://")
        .and_then(|p| p.rsplit_once('/'))
        .map(|(dir, _)| dir)
        .expect("a SQLite file");
    assert!(
        compose["services"]["retro"]["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .any(|v| match v {
                Yaml::String(s) => s.split(':').nth(1) == Some(dir),
                v => v["target"].as_str() == Some(dir) && v["type"].as_str() == Some("volume"),
            }),
        "the card store's directory {dir} is a volume"
    );
}

/// deploy/'s Alertmanager configuration, run by the real Alertmanager (the
/// webhook's address and the token file moved to this machine): a page
/// holds back the tickets of the same SLO and no other, and the webhook
/// carries the token as `Authorization: Bearer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_inhibits_an_slos_tickets_while_it_pages_and_presents_the_token() {
    use looptel_tests::{budget, eventually};
    use std::sync::{Arc, Mutex};

    /// Each notification: its `Authorization` header and its body.
    type Received = Vec<(Option<String>, Json)>;
    let received: Arc<Mutex<Received>> = Arc::default();
    let sink = received.clone();
    let webhook = looptel_tests::serve(axum::Router::new().route(
        "/alerts",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Json>| {
                let sink = sink.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    sink.lock().expect("lock").push((auth, body));
                    "ok"
                }
            },
        ),
    ))
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-webhook-token\n").expect("token");
    let config = std::fs::read_to_string(deploy("alertmanager/alertmanager.yml"))
        .expect("config")
        .replace(
            "http://retro:9099/alerts",
            &format!("http://{webhook}/alerts"),
        )
        .replace(
            "/run/secrets/retro_webhook_token",
            token.to_str().expect("path"),
        )
        // Deliver at once instead of after deploy's 10 s.
        .replace("group_wait: 10s", "group_wait: 1s");
    let am = looptel_tests::Alertmanager::with_config(&config);
    let client = reqwest::Client::new();
    let alert = |name: &str, severity: &str, slo: &str| {
        serde_json::json!({"labels": {"alertname": name, "severity": severity, "slo": slo,
                                      "service": "order-service"}})
    };
    let alerts = serde_json::json!([
        alert("ErrorBudgetBurn1h", "page", "order-api-availability"),
        alert("ErrorBudgetBurn3d", "ticket", "order-api-availability"),
        alert("ErrorBudgetBurn3d", "ticket", "order-api-latency"),
    ]);
    eventually(
        budget::PROCESS,
        "Alertmanager to take the alerts",
        async || {
            let res = client
                .post(format!("http://{}/api/v2/alerts", am.addr()))
                .json(&alerts)
                .send()
                .await
                .ok()?;
            res.status().is_success().then_some(())
        },
    )
    .await;
    let inhibited = eventually(budget::PROCESS, "the page to inhibit", async || {
        let all: Json = client
            .get(format!("http://{}/api/v2/alerts", am.addr()))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let held: Vec<String> = all
            .as_array()?
            .iter()
            .filter(|a| {
                a["status"]["inhibitedBy"]
                    .as_array()
                    .is_some_and(|by| !by.is_empty())
            })
            .map(|a| {
                format!(
                    "{} {}",
                    a["labels"]["alertname"].as_str().unwrap_or(""),
                    a["labels"]["slo"].as_str().unwrap_or("")
                )
            })
            .collect();
        (all.as_array()?.len() == 3 && !held.is_empty()).then_some(held)
    })
    .await;
    assert_eq!(inhibited, ["ErrorBudgetBurn3d order-api-availability"]);
    // What reached the webhook: the page and the other SLO's ticket, with
    // the token; never the held ticket.
    let delivered = eventually(budget::PROCESS, "two notifications", async || {
        let got = received.lock().expect("lock").clone();
        (got.len() >= 2).then_some(got)
    })
    .await;
    for (auth, body) in &delivered {
        assert_eq!(
            auth.as_deref(),
            Some("Bearer s3cret-webhook-token"),
            "{body}"
        );
        for a in body["alerts"].as_array().expect("alerts") {
            assert!(
                !(a["labels"]["severity"] == "ticket"
                    && a["labels"]["slo"] == "order-api-availability"),
                "an inhibited ticket was sent: {body}"
            );
        }
    }
}

/// The components of the collector's contrib distribution this file may
/// use, as its documentation names them.
const RECEIVERS: &[&str] = &["otlp"];
const PROCESSORS: &[&str] = &["memory_limiter", "tail_sampling", "batch"];
const EXPORTERS: &[&str] = &["otlp", "otlphttp", "prometheusremotewrite", "debug"];
const EXTENSIONS: &[&str] = &["health_check"];
const TAIL_POLICIES: &[&str] = &["status_code", "latency", "probabilistic"];

#[test]
fn the_collector_config_has_the_documented_structure() {
    let config = yaml(&deploy("otel-collector/config.yaml"));
    let kinds = [
        ("receivers", RECEIVERS),
        ("processors", PROCESSORS),
        ("exporters", EXPORTERS),
        ("extensions", EXTENSIONS),
    ];
    let mut defined: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (kind, known) in kinds {
        for (id, _) in config[kind].as_mapping().into_iter().flatten() {
            let id = id.as_str().expect("component id").to_owned();
            // `type[/name]`
            let ty = id.split('/').next().unwrap_or_default();
            assert!(known.contains(&ty), "{kind}: unknown component type {ty}");
            defined.entry(kind).or_default().insert(id);
        }
    }
    let pipelines = config["service"]["pipelines"]
        .as_mapping()
        .expect("pipelines");
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, pipeline) in pipelines {
        let name = name.as_str().expect("pipeline name");
        let signal = name.split('/').next().unwrap_or_default();
        assert!(
            ["traces", "metrics", "logs"].contains(&signal),
            "pipeline {name}"
        );
        for kind in ["receivers", "processors", "exporters"] {
            let ids = strs(&pipeline[kind]);
            if kind != "processors" {
                assert!(!ids.is_empty(), "{name} has no {kind}");
            }
            for id in &ids {
                assert!(
                    defined.get(kind).is_some_and(|d| d.contains(id)),
                    "{name} uses {kind} {id}, which is not defined"
                );
            }
            used.entry(kind).or_default().extend(ids);
        }
        let processors = strs(&pipeline["processors"]);
        assert_eq!(
            processors.first().map(String::as_str),
            Some("memory_limiter"),
            "{name}: the memory limiter comes first"
        );
        assert_eq!(
            processors.iter().any(|p| p.starts_with("tail_sampling")),
            signal == "traces",
            "{name}: tail sampling is for traces"
        );
    }
    for kind in ["receivers", "processors", "exporters"] {
        assert_eq!(
            defined.get(kind),
            used.get(kind),
            "{kind} defined but unused"
        );
    }
    for id in strs(&config["service"]["extensions"]) {
        assert!(defined["extensions"].contains(&id), "extension {id}");
    }

    // Tail sampling keeps errors, traces slower than the SLO bound, and a
    // share of the rest.
    let policies = config["processors"]["tail_sampling"]["policies"]
        .as_sequence()
        .expect("policies");
    let of = |ty: &str| {
        policies
            .iter()
            .find(|p| p["type"].as_str() == Some(ty))
            .unwrap_or_else(|| panic!("no {ty} policy"))
    };
    for p in policies {
        let ty = p["type"].as_str().expect("policy type");
        assert!(TAIL_POLICIES.contains(&ty), "policy type {ty}");
        assert!(p["name"].is_string(), "policy {ty} has a name");
    }
    assert_eq!(
        strs(&of("status_code")["status_code"]["status_codes"]),
        ["ERROR"]
    );
    let bound = spec()
        .slos
        .iter()
        .filter_map(|s| s.sli.latency_under)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(
        of("latency")["latency"]["threshold_ms"].as_f64(),
        Some(bound * 1000.0),
        "the latency policy keeps what the tightest latency SLO counts as slow"
    );
    let share = of("probabilistic")["probabilistic"]["sampling_percentage"]
        .as_f64()
        .expect("sampling_percentage");
    assert!(share > 0.0 && share < 100.0, "{share}");

    // The exporters reach what the compose file runs, where it listens.
    let compose = compose();
    let tempo = yaml(&deploy("tempo/tempo.yaml"));
    let loki = yaml(&deploy("loki/loki.yaml"));
    let tempo_grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .expect("Tempo's OTLP gRPC receiver");
    let endpoint = |id: &str| {
        config["exporters"][id]["endpoint"]
            .as_str()
            .expect(id)
            .to_owned()
    };
    let (host, port, _) = url_parts(&format!("grpc://{}", endpoint("otlp/tempo")));
    assert_eq!((host.as_str(), port), ("tempo", url_parts(tempo_grpc).1));
    let (host, port, path) = url_parts(&endpoint("otlphttp/loki"));
    assert_eq!(host, "loki");
    assert_eq!(
        Some(port),
        loki["server"]["http_listen_port"]
            .as_u64()
            .map(|p| p as u16)
    );
    assert_eq!(path, "/otlp", "Loki's OTLP ingestion");
    assert_eq!(
        loki["limits_config"]["allow_structured_metadata"].as_bool(),
        Some(true),
        "trace ids are kept as structured metadata"
    );
    let (host, _, path) = url_parts(&endpoint("otlphttp/prometheus"));
    assert_eq!(
        (host.as_str(), path.as_str()),
        ("prometheus", "/api/v1/otlp")
    );
    assert!(
        strs(&compose["services"]["prometheus"]["command"])
            .iter()
            .any(|f| f == "--web.enable-otlp-receiver"),
        "Prometheus receives OTLP"
    );
    for host in ["tempo", "loki", "prometheus"] {
        assert!(compose["services"][host].is_mapping(), "{host}");
    }
}

/// Every `datasource.uid` in a dashboard.
fn datasource_uids(v: &Json, out: &mut BTreeSet<String>) {
    match v {
        Json::Object(m) => {
            if let Some(uid) = m.get("datasource").and_then(|d| d["uid"].as_str()) {
                out.insert(uid.to_owned());
            }
            m.values().for_each(|v| datasource_uids(v, out));
        }
        Json::Array(a) => a.iter().for_each(|v| datasource_uids(v, out)),
        _ => {}
    }
}

/// Every query (`expr`) in a dashboard.
fn exprs(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Object(m) => {
            if let Some(e) = m.get("expr").and_then(Json::as_str) {
                out.push(e.to_owned());
            }
            m.values().for_each(|v| exprs(v, out));
        }
        Json::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The dashboards read native histograms as well as classic buckets: each
/// query of a histogram's `_count` or `_bucket` series has its native
/// alternative (`histogram_count`, `histogram_quantile` without `le`).
#[test]
fn dashboards_read_native_histograms_too() {
    let mut checked = 0;
    for (path, dashboard) in dashboards() {
        let mut all = Vec::new();
        exprs(&dashboard, &mut all);
        for e in all {
            if e.contains("_seconds_count{") {
                assert!(e.contains("or histogram_count("), "{path}: {e}");
                checked += 1;
            }
            if e.contains("_seconds_bucket{") {
                assert!(e.contains(") or histogram_quantile("), "{path}: {e}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "{checked} histogram queries");
}

fn dashboards() -> Vec<(String, Json)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(deploy("grafana/dashboards")).expect("dashboards") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            out.push((path.display().to_string(), json(&path)));
        }
    }
    assert!(
        out.len() >= 4,
        "RED, messaging, SLO and saturation dashboards"
    );
    out
}

#[test]
fn grafana_links_agree_with_each_other_and_with_what_is_emitted() {
    let provisioning = yaml(&deploy("grafana/provisioning/datasources/datasources.yaml"));
    let sources = provisioning["datasources"]
        .as_sequence()
        .expect("datasources");
    let uid_of = |ty: &str| {
        sources
            .iter()
            .find(|d| d["type"].as_str() == Some(ty))
            .and_then(|d| d["uid"].as_str())
            .unwrap_or_else(|| panic!("no {ty} data source"))
            .to_owned()
    };
    let (prometheus, tempo, loki) = (uid_of("prometheus"), uid_of("tempo"), uid_of("loki"));
    let of = |uid: &str| {
        sources
            .iter()
            .find(|d| d["uid"].as_str() == Some(uid))
            .expect("data source")
    };

    // Exemplar → trace: the exemplar label the metrics carry.
    let dest = &of(&prometheus)["jsonData"]["exemplarTraceIdDestinations"][0];
    assert_eq!(
        dest["name"].as_str(),
        Some(looptel_catalogue::exemplars::TRACE_ID)
    );
    assert_eq!(dest["datasourceUid"].as_str(), Some(tempo.as_str()));

    // Trace → logs: Loki, by the trace id Loki keeps as structured
    // metadata, in the stream Loki labels by the span's service.
    let to_logs = &of(&tempo)["jsonData"]["tracesToLogsV2"];
    assert_eq!(to_logs["datasourceUid"].as_str(), Some(loki.as_str()));
    let query = to_logs["query"].as_str().expect("trace → logs query");
    assert!(
        query.contains(&format!(
            "{}=\"${{__trace.traceId}}\"",
            looptel_catalogue::logs::TRACE_ID
        )),
        "{query}"
    );
    assert!(
        query.contains("service_name=") && query.contains("\"service.name\""),
        "{query}"
    );
    for link in ["tracesToMetrics", "serviceMap"] {
        assert_eq!(
            of(&tempo)["jsonData"][link]["datasourceUid"].as_str(),
            Some(prometheus.as_str()),
            "{link}"
        );
    }

    // Log → trace: the record's trace id opens Tempo.
    let field = &of(&loki)["jsonData"]["derivedFields"][0];
    assert_eq!(field["matcherType"].as_str(), Some("label"));
    assert_eq!(
        field["matcherRegex"].as_str(),
        Some(looptel_catalogue::logs::TRACE_ID)
    );
    assert_eq!(field["datasourceUid"].as_str(), Some(tempo.as_str()));

    // retro's Grafana links name the same data sources, and its Loki
    // source matches the same structured metadata.
    let compose = compose();
    for (key, uid) in [
        ("RETRO_GRAFANA_PROMETHEUS_UID", &prometheus),
        ("RETRO_GRAFANA_TEMPO_UID", &tempo),
        ("RETRO_GRAFANA_LOKI_UID", &loki),
    ] {
        assert_eq!(env_of(&compose, "retro", key), uid, "{key}");
    }
    assert_eq!(
        env_of(&compose, "retro", "RETRO_LOKI_TRACE_LABEL"),
        looptel_catalogue::logs::TRACE_ID
    );
    // Each data source points at the compose service of its kind.
    for (uid, service) in [
        (&prometheus, "prometheus"),
        (&tempo, "tempo"),
        (&loki, "loki"),
    ] {
        let (host, _, _) = url_parts(of(uid)["url"].as_str().expect("url"));
        assert_eq!(host, service);
        assert!(compose["services"][service].is_mapping(), "{service}");
    }

    // Dashboards: unique uids, only provisioned data sources, and the
    // folder Grafana reads them from is the one the compose file mounts.
    let known: BTreeSet<String> = [prometheus, tempo, loki].into_iter().collect();
    let mut uids = BTreeSet::new();
    for (path, dashboard) in dashboards() {
        assert!(
            uids.insert(dashboard["uid"].as_str().expect("uid").to_owned()),
            "{path}: uid taken"
        );
        let mut used = BTreeSet::new();
        datasource_uids(&dashboard, &mut used);
        assert!(used.is_subset(&known), "{path}: {used:?} not in {known:?}");
    }
    let providers = yaml(&deploy("grafana/provisioning/dashboards/dashboards.yaml"));
    let folder = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("dashboards path");
    assert!(
        strs(&compose["services"]["grafana"]["volumes"])
            .iter()
            .any(|v| v.ends_with(&format!("deploy/grafana/dashboards:{folder}:ro"))),
        "Grafana mounts the dashboards where its provider reads them"
    );
}

// --- drift -------------------------------------------------------------

/// Sample name → the label names seen on it, from an OpenMetrics scrape.
fn scrape_labels(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_owned()).or_default();
        let mut rest = &line[end..];
        if let Some(body) = rest.strip_prefix('{') {
            rest = body;
            // name="value"[,name="value"]…}
            while let Some((name, after)) = rest.split_once("=\"") {
                labels.insert(name.trim_start_matches(',').to_owned());
                let mut escaped = false;
                let close = after
                    .char_indices()
                    .find(|&(_, c)| {
                        let end = c == '"' && !escaped;
                        escaped = c == '\\' && !escaped;
                        end
                    })
                    .map_or(after.len(), |(i, _)| i);
                rest = &after[(close + 1).min(after.len())..];
                if rest.starts_with('}') {
                    break;
                }
            }
        }
    }
    out
}

/// What the rules define: recorded series and `ALERTS`, with their labels.
fn rule_outputs(groups: &[Yaml]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
    {
        let labels: BTreeSet<String> = rule["labels"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.as_str().map(str::to_owned))
            .collect();
        let name = match (rule["record"].as_str(), rule["alert"].as_str()) {
            (Some(record), _) => record.to_owned(),
            (None, Some(_)) => "ALERTS".to_owned(),
            _ => continue,
        };
        let set = out.entry(name.clone()).or_default();
        set.extend(labels);
        if name == "ALERTS" {
            set.extend(["alertname", "alertstate"].map(str::to_owned));
        }
    }
    out
}

/// Checks `expr` against the known series; returns the labels it yields.
fn labels_of(
    expr: &Expr,
    known: &BTreeMap<String, BTreeSet<String>>,
    problems: &mut Vec<String>,
) -> BTreeSet<String> {
    let selector = |vs: &promql_parser::parser::VectorSelector, problems: &mut Vec<String>| {
        let name = vs.name.clone().unwrap_or_default();
        let Some(labels) = known.get(&name) else {
            problems.push(format!(
                "metric {name} is not in the scrape nor defined by a rule"
            ));
            return BTreeSet::new();
        };
        // Prometheus adds the target's labels to every scraped series.
        let mut labels = labels.clone();
        labels.extend(["job", "instance"].map(str::to_owned));
        for m in vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten())
        {
            if m.name != "__name__" && !labels.contains(&m.name) {
                problems.push(format!("{name} has no label {}", m.name));
            }
        }
        labels
    };
    let require =
        |want: &[String], have: &BTreeSet<String>, what: &str, problems: &mut Vec<String>| {
            for l in want {
                if !have.contains(l) {
                    problems.push(format!(
                        "{what} ({l}) names a label its operand lacks: {have:?}"
                    ));
                }
            }
        };
    match expr {
        Expr::VectorSelector(vs) => selector(vs, problems),
        Expr::MatrixSelector(ms) => selector(&ms.vs, problems),
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                labels_of(p, known, problems);
            }
            let inner = labels_of(&a.expr, known, problems);
            match &a.modifier {
                Some(LabelModifier::Include(l)) => {
                    require(&l.labels, &inner, "by", problems);
                    l.labels.iter().cloned().collect()
                }
                Some(LabelModifier::Exclude(l)) => inner
                    .iter()
                    .filter(|x| !l.labels.contains(x))
                    .cloned()
                    .collect(),
                None => BTreeSet::new(),
            }
        }
        Expr::Binary(b) => {
            let lhs = labels_of(&b.lhs, known, problems);
            let rhs = labels_of(&b.rhs, known, problems);
            if let Some(LabelModifier::Include(l)) =
                b.modifier.as_ref().and_then(|m| m.matching.as_ref())
            {
                for side in [&lhs, &rhs].into_iter().filter(|s| !s.is_empty()) {
                    require(&l.labels, side, "on", problems);
                }
            }
            lhs.union(&rhs).cloned().collect()
        }
        Expr::Paren(p) => labels_of(&p.expr, known, problems),
        Expr::Unary(u) => labels_of(&u.expr, known, problems),
        Expr::Subquery(s) => labels_of(&s.expr, known, problems),
        Expr::Call(c) => {
            let mut out = BTreeSet::new();
            for arg in &c.args.args {
                out.extend(labels_of(arg, known, problems));
            }
            if c.func.name == "histogram_quantile" {
                out.remove("le");
            }
            out
        }
        _ => BTreeSet::new(),
    }
}

/// Grafana's template variables, replaced by values PromQL can parse.
fn untemplate(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

/// Checks one PromQL expression and the `{{label}}` placeholders of its
/// legend.
fn check_query(
    where_: &str,
    expr: &str,
    legend: Option<&str>,
    known: &BTreeMap<String, BTreeSet<String>>,
    problems: &mut Vec<String>,
) {
    let parsed = match parser::parse(&untemplate(expr)) {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!("{where_}: not PromQL: {e}: {expr}"));
            return;
        }
    };
    let mut found = Vec::new();
    let labels = labels_of(&parsed, known, &mut found);
    problems.extend(found.into_iter().map(|p| format!("{where_}: {p}")));
    for placeholder in legend.into_iter().flat_map(|l| l.split("{{").skip(1)) {
        let name = placeholder.split("}}").next().unwrap_or_default().trim();
        if !labels.contains(name) {
            problems.push(format!(
                "{where_}: legend {{{{{name}}}}} is not a label of {expr}"
            ));
        }
    }
}

/// Checks every PromQL query of a dashboard: panel targets, variables
/// (inside `label_values(…, label)`) and annotations; how many there were.
fn dashboard_queries(
    path: &str,
    d: &Json,
    known: &BTreeMap<String, BTreeSet<String>>,
    problems: &mut Vec<String>,
) -> usize {
    let mut count = 0;
    let is_prometheus = |v: &Json| v["datasource"]["type"].as_str() == Some("prometheus");
    for panel in d["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if is_prometheus(target) || (is_prometheus(panel) && target["datasource"].is_null()) {
                let expr = target["expr"].as_str().unwrap_or_default();
                check_query(
                    &format!("{path}: {title}"),
                    expr,
                    target["legendFormat"].as_str(),
                    known,
                    problems,
                );
                count += 1;
            }
        }
    }
    for var in d["templating"]["list"].as_array().into_iter().flatten() {
        let q = var["query"]["query"]
            .as_str()
            .or(var["query"].as_str())
            .unwrap_or_default();
        let Some(inner) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        else {
            continue;
        };
        let (expr, label) = inner.rsplit_once(',').expect("label_values(expr, label)");
        let where_ = format!("{path}: variable {}", var["name"]);
        check_query(
            &where_,
            expr,
            Some(&format!("{{{{{}}}}}", label.trim())),
            known,
            problems,
        );
        count += 1;
    }
    for ann in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = ann["expr"].as_str() {
            let where_ = format!("{path}: annotation {}", ann["name"]);
            check_query(&where_, expr, ann["titleFormat"].as_str(), known, problems);
            count += 1;
        }
    }
    count
}

async fn put_faults(addr: &str, body: Option<&str>) {
    let status = common::faults(addr, body).await;
    assert!(status.is_success(), "{status}");
}

async fn openmetrics(client: &reqwest::Client, addr: &str) -> String {
    client
        .get(format!("http://{addr}/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body")
}

async fn post_to(addr: String, order: &'static str) {
    let _ = reqwest::Client::new()
        .post(format!("http://{addr}/orders"))
        .header("content-type", "application/json")
        .body(order)
        .send()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_and_label_in_a_dashboard_or_rule_is_in_a_real_scrape() {
    // The service as the compose file runs it: faults switchable, Kafka
    // (its embedded mock cluster) and RabbitMQ for the payment messages.
    let name = format!("deploy-{}", std::process::id());
    let mut svc = Service::start(&[
        ("ENABLE_FAULTS", "1".to_owned()),
        ("AMQP_URL", amqp_url()),
        ("PAYMENTS_EXCHANGE", name.clone()),
        ("PAYMENTS_QUEUE", name.clone()),
    ]);
    let addr = svc.http_addr();
    // A replica whose Kafka is down, for failed sends (librdkafka gives up
    // after the service's 10-second message timeout).
    let closed = looptel_tests::closed_port();
    let mut down = Service::start(&[("KAFKA_BROKERS", closed.to_string())]);
    let down_addr = down.http_addr();
    let client = reqwest::Client::new();
    let order = r#"{"customer_id":"c-1","items":[{"sku":"pen","quantity":1}]}"#;
    let post = || {
        client
            .post(format!("http://{addr}/orders"))
            .header("content-type", "application/json")
            .header("x-tenant-id", "acme")
            .body(order)
            .send()
    };
    // Every route and method, healthy and failing: successes, client
    // errors, unknown paths and methods, then server errors (inventory
    // down) and failed message processing.
    let created: Json = post().await.expect("order").json().await.expect("json");
    let id = created["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| created["id"].to_string());
    for path in [
        format!("/orders/{id}"),
        "/orders/missing".to_owned(),
        "/health".to_owned(),
        "/no/such/path".to_owned(),
    ] {
        client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("get");
    }
    client
        .request(
            reqwest::Method::from_bytes(b"BREW").expect("method"),
            format!("http://{addr}/orders"),
        )
        .send()
        .await
        .expect("brew");
    client
        .post(format!("http://{addr}/orders"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("bad body");
    put_faults(
        &addr,
        Some(r#"{"inventory_error_rate": 1.0, "consumer_error_rate": 1.0}"#),
    )
    .await;
    for _ in 0..3 {
        post().await.expect("order");
    }
    put_faults(&addr, Some(r#"{"consumer_error_rate": 1.0}"#)).await;
    for _ in 0..3 {
        post().await.expect("order");
    }

    tokio::spawn(post_to(down_addr.clone(), order));

    // The scrapes Prometheus takes (OpenMetrics, with exemplars), once the
    // consumer has failed to process messages and the other replica failed
    // to send one; the labels of both replicas together.
    let has_error = |scrape: &BTreeMap<String, BTreeSet<String>>, metric: &str| {
        scrape.get(metric).is_some_and(|l| l.contains("error_type"))
    };
    let (mut scrape, mut other) = (BTreeMap::new(), BTreeMap::new());
    for _ in 0..300 {
        scrape = scrape_labels(&openmetrics(&client, &addr).await);
        other = scrape_labels(&openmetrics(&client, &down_addr).await);
        if has_error(&scrape, "messaging_process_duration_seconds_count")
            && has_error(&other, "messaging_client_operation_duration_seconds_count")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    put_faults(&addr, None).await;
    assert!(
        has_error(&scrape, "messaging_process_duration_seconds_count"),
        "failed message processing reached the metrics: {scrape:#?}"
    );
    assert!(
        has_error(&other, "messaging_client_operation_duration_seconds_count"),
        "a failed send reached the metrics: {other:#?}"
    );
    for (name, labels) in other {
        scrape.entry(name).or_default().extend(labels);
    }
    down.terminate();
    drop(svc);
    common::delete_payments(&amqp_url(), &name).await;

    // The rules as Prometheus loads them.
    let mut groups = Vec::new();
    for entry in std::fs::read_dir(repo().join("examples/order-service/slo")).expect("slo/") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().ends_with(".rules.yaml") {
            groups.extend(
                yaml(&path)["groups"]
                    .as_sequence()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    let mut known = scrape.clone();
    known.extend(rule_outputs(&groups));
    // A histogram scraped as a native one (LOOPTEL_METRICS_HISTOGRAMS)
    // is one series under its own name, with its `_count`'s labels.
    let natives: Vec<(String, BTreeSet<String>)> = scrape
        .iter()
        .filter_map(|(name, labels)| {
            let base = name.strip_suffix("_count")?;
            scrape
                .contains_key(&format!("{base}_bucket"))
                .then(|| (base.to_owned(), labels.clone()))
        })
        .collect();
    known.extend(natives);

    let mut problems = Vec::new();
    let mut queries = 0;
    for group in &groups {
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            let name = rule["record"]
                .as_str()
                .or(rule["alert"].as_str())
                .unwrap_or_default();
            check_query(
                &format!("rule {name}"),
                rule["expr"].as_str().expect("expr"),
                None,
                &known,
                &mut problems,
            );
            queries += 1;
        }
    }
    let rules = queries;
    for (path, d) in dashboards() {
        queries += dashboard_queries(&path, &d, &known, &mut problems);
    }
    assert!(
        rules >= 45 && queries - rules >= 40,
        "{rules} rules, {} dashboard queries",
        queries - rules
    );
    assert!(problems.is_empty(), "drift:\n{}", problems.join("\n"));
}

#[test]
fn the_drift_check_catches_renamed_metrics_labels_and_legends() {
    let known: BTreeMap<String, BTreeSet<String>> = [(
        "http_server_request_duration_seconds_count".to_owned(),
        ["http_route", "error_type"].map(str::to_owned).into(),
    )]
    .into();
    let problems = |expr: &str, legend: Option<&str>| {
        let mut p = Vec::new();
        check_query("t", expr, legend, &known, &mut p);
        p
    };
    let ok = r#"sum by (http_route) (rate(http_server_request_duration_seconds_count{job="x",error_type!=""}[$__rate_interval]))"#;
    assert_eq!(problems(ok, Some("{{http_route}}")), Vec::<String>::new());
    assert_eq!(
        problems("rate(http_requests_total[5m])", None).len(),
        1,
        "renamed metric"
    );
    assert_eq!(
        problems(
            r#"http_server_request_duration_seconds_count{route="/"}"#,
            None
        )
        .len(),
        1,
        "renamed label"
    );
    assert_eq!(
        problems(
            "sum by (route) (http_server_request_duration_seconds_count)",
            None
        )
        .len(),
        1,
        "grouping"
    );
    assert_eq!(problems(ok, Some("{{route}}")).len(), 1, "legend");
    assert_eq!(problems("sum(", None).len(), 1, "not PromQL");
    let scrape = scrape_labels(
        "# TYPE a counter\na_total{x=\"1,y=\\\"2\\\"\",z=\"\"} 1 # {trace_id=\"ab\"} 1\nb 2\n",
    );
    assert_eq!(scrape["a_total"], ["x", "z"].map(str::to_owned).into());
    assert!(scrape["b"].is_empty());
}
