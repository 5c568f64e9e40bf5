//! The whole loop on one machine, for real: the order-service binary with
//! its fault switch, writing spans as OTLP JSON lines and JSON log lines to
//! files; Debian's Prometheus (exemplar storage, the spec's rules with
//! windows scaled 60×) sending its alerts to Debian's Alertmanager, whose
//! webhook reaches looptel-retro (its library, served on a port). Failures
//! injected → the page fires → the card names traces of requests that
//! really failed (checked against the spans written), their error spans
//! and log lines → the fault is removed → the resolved webhook → the card
//! says verified. Again, with traffic stopped instead: not verified. The
//! HTML card is opened in Debian's headless Chromium and its text and SVG
//! are checked.
//!
//! Set `LOOPTEL_CARD_PNG=/path/card.png` to keep a screenshot of the card.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Service, Traffic, amqp_url, server_of, through};
use looptel::core::{Instrumentation, Propagator};
use looptel_retro::sources::{Http, files, prometheus::Prometheus as PrometheusSource};
use looptel_retro::{Retro, Settings, State};
use looptel_tests::otlp_json_attribute as attribute;
use looptel_tests::{Alertmanager, Prometheus, browser};
use serde_json::{Value, json};

const SLO: &str = "order-api-availability";

/// The spans of `trace_id` in the OTLP JSON lines file, as JSON.
fn spans_written(path: &Path, trace_id: &str) -> Vec<Value> {
    looptel_tests::otlp_json_spans(path)
        .into_iter()
        .filter(|s| s["traceId"] == trace_id)
        .collect()
}

/// Polls `retro` until a card other than `except` satisfies `done`.
async fn card_where(
    retro: &Retro,
    except: &HashSet<String>,
    limit: Duration,
    what: &str,
    done: impl Fn(&looptel_retro::Incident) -> bool,
) -> looptel_retro::Incident {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(c) = retro
            .incidents(1000, 0)
            .await
            .expect("cards")
            .into_iter()
            .find(|c| !except.contains(&c.id) && done(c))
        {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "no card {what} within {limit:?}; cards: {:#?}",
            retro
                .incidents(1000, 0)
                .await
                .expect("cards")
                .iter()
                .map(|c| (&c.id, c.state, &c.timeline))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The loop around a running order-service at `addr`: the committed spec
/// with its windows scaled down 60× (the same spec for the rules and for
/// retro), Debian's Prometheus scraping the service and evaluating the
/// rules, Debian's Alertmanager, and retro (its library, served on a port)
/// reading Prometheus — and the spans and log files when given.
struct Loop {
    retro: Retro,
    retro_addr: std::net::SocketAddr,
    prometheus: Prometheus,
    _alertmanager: Alertmanager,
}

/// The settings the loop's retro runs with: windows scaled down like the
/// spec's.
fn scaled_settings() -> Settings {
    Settings {
        window: Duration::from_secs(60),
        settle: Duration::from_secs(2),
        min_requests: 10.0,
        // An hour of look-back is a minute here; the baseline likewise,
        // and its 2-minute minimum half a minute.
        changes_window: Duration::from_secs(60),
        baseline: Duration::from_secs(60),
        min_baseline: Duration::from_secs(30),
        ..Settings::default()
    }
}

impl Loop {
    async fn start(addr: &str, store: &str, files_of: Option<(&Path, &Path)>) -> Self {
        Self::start_with(addr, store, files_of, scaled_settings(), false).await
    }

    /// With `native`, the spec reads native histograms (`histograms:
    /// native`) and Prometheus scrapes them (`native-histograms` on).
    async fn start_with(
        addr: &str,
        store: &str,
        files_of: Option<(&Path, &Path)>,
        settings: Settings,
        native: bool,
    ) -> Self {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(manifest.join("slo.yaml")).expect("spec");
        let histograms = if native { "histograms: native\n" } else { "" };
        let spec = looptel_slo::Spec::from_yaml(&format!(
            "{text}\nwindows: {{ scale: 1h=1m }}\n{histograms}"
        ))
        .expect("valid spec");
        let rules = looptel_slo::generate(&spec, false).expect("rules");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let retro_addr = listener.local_addr().expect("addr");
        let alertmanager = Alertmanager::start(&format!("http://{retro_addr}/alerts"));
        let prometheus = if native {
            Prometheus::start_native(
                "order-service",
                addr.parse().expect("addr"),
                &rules,
                Some(alertmanager.addr()),
            )
        } else {
            Prometheus::start_alerting(
                "order-service",
                addr.parse().expect("addr"),
                &rules,
                alertmanager.addr(),
            )
        };
        let http = Http::new(
            Instrumentation::disabled(Propagator::default()),
            Duration::from_secs(5),
        );
        let mut builder = Retro::builder(
            spec,
            Arc::new(PrometheusSource::new(
                format!("http://{}", prometheus.addr()),
                http,
            )),
            looptel_retro::Store::open(store).await.expect("card store"),
        );
        if let Some((spans, log)) = files_of {
            builder = builder
                .traces(Arc::new(files::OtlpFile::new(spans)))
                .logs(Arc::new(files::JsonLogFile::new(log)));
        }
        let retro = builder.settings(settings).build();
        let app = retro.router();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            retro,
            retro_addr,
            prometheus,
            _alertmanager: alertmanager,
        }
    }
}

/// The card's top hypothesis starts with `words`, and it is the first
/// thing the HTML card says after its facts.
fn assert_names_the_cause(card: &looptel_retro::Incident, words: &str) {
    let ev = card.evidence.as_ref().expect("evidence");
    let top = ev
        .hypotheses
        .first()
        .unwrap_or_else(|| panic!("no hypothesis: {ev:#?}"));
    assert!(
        top.text.starts_with(words),
        "top hypothesis {:?}, all: {:#?}",
        top.text,
        ev.hypotheses
    );
    for h in &ev.hypotheses {
        eprintln!("hypothesis {:.2} {:?}: {}", h.score, h.kind, h.text);
    }
    let html = looptel_retro::render::html(card);
    let at = html.find(r#"id="top-hypothesis""#).expect("on the page");
    assert!(at < html.find("<h2>Timeline</h2>").expect("a timeline"));
    assert!(looptel_retro::render::markdown(card).contains(&format!("1. **{}**", top.text)));
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The evidence was gathered within `limit` of the webhook's arrival.
fn ready_within(card: &looptel_retro::Incident, limit: Duration) {
    let at = |what: &str| {
        card.timeline
            .iter()
            .find(|e| e.what.starts_with(what))
            .unwrap_or_else(|| panic!("no {what:?} in {:#?}", card.timeline))
            .at
    };
    let took = at("evidence gathered") - at("webhook received");
    assert!(took < limit, "the card took {took} after the page");
    eprintln!("card ready {took} after the page");
}

/// An evidence trace is a request that really failed: found on an error
/// series, its server span as the service wrote it answered 503. Every span
/// of the trace written.
fn failed_request(spans: &Path, t: &looptel_retro::incident::TraceEvidence) -> Vec<Value> {
    assert!(t.from_error_series, "{} from an error series", t.trace_id);
    let written = spans_written(spans, &t.trace_id);
    let server = written
        .iter()
        .find(|s| s["name"] == "POST /orders")
        .unwrap_or_else(|| panic!("no server span of {} written", t.trace_id));
    assert_eq!(
        attribute(server, "http.response.status_code").map(|v| v["intValue"].clone()),
        Some("503".into()),
        "trace {} failed",
        t.trace_id
    );
    written
}

/// The dependency that moved: the inventory's gRPC method, failing.
fn assert_inventory_moved(ev: &looptel_retro::incident::Evidence) {
    let moved = ev
        .dependencies
        .iter()
        .find(|d| d.moved)
        .expect("a dependency moved");
    assert_eq!(moved.kind, "gRPC");
    assert!(
        moved
            .name
            .starts_with("inventory.v1.StockService/ReserveItem"),
        "{}",
        moved.name
    );
    assert!(moved.during.expect("calls during").error_ratio > 0.3);
}

async fn set_faults(addr: &str, body: Option<&str>) {
    let status = common::faults(addr, body).await;
    assert!(status.is_success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_becomes_a_card_with_the_failed_requests_and_a_verified_recovery() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spans, log) = (
        dir.path().join("spans.jsonl"),
        dir.path().join("service.log"),
    );

    // The reference service: faults on, spans to a file, logs to a file.
    let mut svc = Service::start_logging(
        &[
            ("ENABLE_FAULTS", "1".to_owned()),
            ("LOOPTEL_TRACES_FILE", spans.display().to_string()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ],
        Some(&log),
    );
    let addr = svc.http_addr();

    // Prometheus, Alertmanager and retro, with the spans file and the log
    // file as sources; the card store a SQLite file, as the binary keeps it.
    let store = format!("sqlite://{}", dir.path().join("retro.db").display());
    let Loop {
        retro,
        retro_addr,
        prometheus,
        _alertmanager,
    } = Loop::start(&addr, &store, Some((&spans, &log))).await;

    // Orders, 20 a second.
    let traffic = Traffic::start(&addr);

    // Healthy first: the ratio is recorded, and no card.
    looptel_tests::eventually(
        looptel_tests::budget::PROCESS,
        "the recorded error ratio",
        async || common::recorded_ratio(&prometheus, SLO).await,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // (The messaging SLO sees no traffic here: its SLOTrafficMissing
    // ticket may well have made a card.)
    assert!(
        retro
            .incidents(1000, 0)
            .await
            .expect("cards")
            .iter()
            .all(|c| !c.alert.name().starts_with("ErrorBudgetBurn")),
        "no burn card while healthy"
    );

    // Half the inventory calls fail.
    set_faults(&addr, Some(r#"{"inventory_error_rate": 0.5}"#)).await;
    let faulted = Instant::now();
    let none = HashSet::new();
    let card = card_where(
        &retro,
        &none,
        Duration::from_secs(90),
        "with evidence",
        |c| {
            c.alert.name() == "ErrorBudgetBurn1h"
                && c.evidence.as_ref().is_some_and(|e| !e.traces.is_empty())
        },
    )
    .await;
    eprintln!("card with evidence {:?} after the fault", faulted.elapsed());
    assert_eq!(card.alert.label("slo"), SLO);
    let slo = card.slo.as_ref().expect("the SLO's facts");
    assert_eq!((slo.burn_rate, slo.windows.as_str()), (14.4, "1m/5s"));
    assert_eq!(slo.response_sla, "15 minutes");
    let ev = card.evidence.as_ref().expect("evidence");
    assert!(
        ev.problems.is_empty(),
        "no source failed: {:?}",
        ev.problems
    );

    // Every evidence trace is a request that really failed: its server span
    // as written by the service answered 503.
    let ids: Vec<&str> = ev.traces.iter().map(|t| t.trace_id.as_str()).collect();
    for t in &ev.traces {
        let written = failed_request(&spans, t);
        assert_eq!(t.spans.len(), written.len(), "every span of the trace");
        // Its error spans name the inventory hop that failed.
        assert!(
            t.analysis
                .errors
                .iter()
                .any(|e| e.name == "inventory.v1.StockService/ReserveItem"),
            "{:?}",
            t.analysis.errors
        );
        assert_eq!(
            t.analysis.root.as_ref().map(|r| r.name.as_str()),
            Some("POST /orders")
        );
        assert!(!t.analysis.critical_path.is_empty());
    }
    // Their log lines, from the log file, with the injected fault's line
    // (and those of traces tried but not yet in the spans file: a trace
    // sampling or a flush left out may still have its lines).
    let tried: Vec<&str> = ids
        .iter()
        .copied()
        .chain(ev.missing.iter().map(|m| m.trace_id.as_str()))
        .collect();
    assert!(
        ev.logs.iter().all(|l| tried.contains(&l.trace_id.as_str())),
        "only those traces' lines"
    );
    assert!(
        ev.logs
            .iter()
            .any(|l| l.message == "injected fault: inventory unavailable"),
        "{:?}",
        ev.logs.iter().map(|l| &l.message).collect::<Vec<_>>()
    );
    assert!(ev.logs.iter().any(|l| l.level == "ERROR"));
    // The dependency that moved: the inventory's gRPC method.
    assert_inventory_moved(ev);
    let sli = ev.sli.as_ref().expect("the SLI around the alert");
    assert!(
        sli.points.iter().any(|p| p.1 > sli.threshold),
        "the burn is drawn"
    );
    // The answer: the failing inventory call first, with the traces that
    // agree; the switch that injected it among what changed; its lines
    // as a pattern that rose; ready within 10 s of the page.
    assert_names_the_cause(&card, "inventory.v1.StockService/ReserveItem fails: errors");
    assert!(
        ev.hypotheses[0].text.contains("it failed in"),
        "{:?}",
        ev.hypotheses[0]
    );
    // A service seconds old has no baseline, and the card says so; the
    // failing dependency is named all the same.
    let windows = ev.windows.as_ref().expect("windows");
    assert!(windows.before.is_none(), "{}", windows.note);
    assert!(windows.note.starts_with("no baseline"), "{}", windows.note);
    assert!(ev.hypotheses[0].text.contains("(no baseline)"));
    assert!(
        !ev.hypotheses.iter().any(|h| h.text.contains("PlaceOrder")),
        "the handler only passed the failure on: {:#?}",
        ev.hypotheses
    );
    let switch = ev
        .changes
        .iter()
        .find(|c| c.kind == "fault_switch")
        .unwrap_or_else(|| panic!("the switch among the changes: {:#?}", ev.changes));
    assert_eq!(switch.what, "inventory_error_rate=0.5");
    assert!(
        switch.at <= ev.windows.as_ref().expect("windows").burn_started + Duration::from_secs(2),
        "set before the burn"
    );
    assert!(
        ev.log_patterns
            .iter()
            .any(|p| p.pattern == "injected fault: inventory unavailable" && p.during > p.before),
        "{:#?}",
        ev.log_patterns
    );
    ready_within(&card, Duration::from_secs(10));

    // The fix: the page resolves, and the recovery is verified with traffic.
    set_faults(&addr, None).await;
    let fixed = Instant::now();
    let first = card.id.clone();
    let verified = card_where(&retro, &none, Duration::from_secs(90), "checked", |c| {
        c.id == first && c.verification.is_some()
    })
    .await;
    eprintln!("recovery checked {:?} after the fix", fixed.elapsed());
    let v = verified.verification.as_ref().expect("checked");
    assert_eq!(verified.state, State::Verified, "{}", v.reason);
    assert!(
        v.requests >= 10.0 && v.burn_rate.is_some_and(|b| b < 1.0),
        "{v:?}"
    );
    assert!(verified.alert.ends_at.is_some());
    // The SLI is drawn again through the recovery: back under the threshold.
    let sli = verified
        .evidence
        .as_ref()
        .and_then(|e| e.sli.as_ref())
        .expect("the SLI");
    let last = sli.points.last().expect("points");
    assert!(last.1 < sli.threshold, "{last:?} under {}", sli.threshold);
    assert!(sli.ends_at.is_some(), "the resolution is marked");

    // The card in a real browser: the text and the pictures.
    let url = format!("http://{retro_addr}/incidents/{first}");
    let dom = browser::dom(&url);
    assert!(dom.contains("ErrorBudgetBurn1h"), "{dom}");
    assert!(dom.contains(r#"<span class="state verified" id="state">verified</span>"#));
    assert!(dom.contains("recovered: burn rate"));
    assert!(dom.contains(r#"<svg xmlns="http://www.w3.org/2000/svg" class="sli""#));
    assert!(dom.contains(r#"<polyline class="ratio""#));
    assert!(dom.contains(r#"class="waterfall""#));
    assert!(
        dom.contains(r#"<g class="span error"#),
        "error spans drawn red"
    );
    assert!(dom.contains(&format!(r#"data-trace-id="{}""#, ids[0])));
    assert!(dom.contains("injected fault: inventory unavailable"));
    if let Ok(png) = std::env::var("LOOPTEL_CARD_PNG") {
        browser::screenshot(&url, Path::new(&png), 1100, 2400);
    }

    // Again, but the traffic stops instead of the fault being fixed: the
    // page resolves by itself, and that is no recovery.
    set_faults(&addr, Some(r#"{"inventory_error_rate": 0.5}"#)).await;
    let seen: HashSet<String> = [first.clone()].into();
    let second = card_where(
        &retro,
        &seen,
        Duration::from_secs(90),
        "firing again",
        |c| c.alert.name() == "ErrorBudgetBurn1h" && c.evidence.is_some(),
    )
    .await;
    traffic.pause();
    let paused = unix_now();
    let id = second.id.clone();
    let unverified = card_where(&retro, &seen, Duration::from_secs(90), "checked", |c| {
        c.id == id && c.verification.is_some()
    })
    .await;
    let v = unverified.verification.as_ref().expect("checked");
    assert_eq!(unverified.state, State::NotVerified);
    assert!(v.reason.starts_with("no traffic:"), "{}", v.reason);

    // With no calls for the spec's no-traffic window, a card that says so:
    // which SLI, and when it last saw calls.
    let quiet = card_where(
        &retro,
        &seen,
        Duration::from_secs(90),
        "about no traffic",
        |c| {
            // (Not the one that fired at start-up, before any order.)
            c.alert.name() == "SLOTrafficMissing"
                && c.alert.label("slo") == SLO
                && c.alert.starts_at.unix_timestamp() >= paused
                && c.evidence.is_some()
        },
    )
    .await;
    let ev = quiet.evidence.as_ref().expect("evidence");
    let nt = ev.no_traffic.as_ref().expect("says no traffic");
    assert!(
        nt.sli
            .starts_with("http_server_request_duration_seconds_count{"),
        "{}",
        nt.sli
    );
    let last = nt.last_seen.expect("calls were seen before");
    assert!(
        (last.unix_timestamp() - paused).abs() < 20,
        "last calls {last} near the pause ({paused})"
    );
    let traffic_words = ev
        .hypotheses
        .iter()
        .find(|h| h.kind == looptel_retro::incident::HypothesisKind::Traffic)
        .expect("a traffic hypothesis");
    assert!(
        traffic_words
            .text
            .starts_with(&format!("{SLO} saw no calls since ")),
        "{}",
        traffic_words.text
    );
    assert!(ev.traces.is_empty(), "no exemplars to read without calls");

    drop(traffic);
    drop(svc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_burns_the_processing_slo_and_its_card_names_the_broker() {
    // RabbitMQ behind a proxy the test cuts; every event's payment request
    // then fails (one attempt, 200 ms of waiting for the connection) and is
    // dead-lettered: the order-events-processing SLO burns.
    let name = format!("loop-{}", std::process::id());
    let proxy = looptel_tests::Proxy::start(server_of(&amqp_url())).await;
    let mut svc = Service::start(&[
        ("AMQP_URL", through(&amqp_url(), proxy.addr())),
        ("PAYMENTS_EXCHANGE", name.clone()),
        ("PAYMENTS_QUEUE", name.clone()),
        ("MESSAGE_MAX_ATTEMPTS", "1".to_owned()),
        ("PAYMENTS_PUBLISH_WAIT_MS", "200".to_owned()),
        ("OTEL_TRACES_EXPORTER", "none".to_owned()),
    ]);
    let addr = svc.http_addr();
    svc.line("rabbitmq connected");

    let Loop {
        retro,
        prometheus,
        _alertmanager,
        ..
    } = Loop::start(&addr, "sqlite::memory:", None).await;
    let traffic = Traffic::start(&addr);

    // Healthy first: payments flow, the processing SLO's ratio recorded.
    looptel_tests::eventually(
        looptel_tests::budget::PROCESS,
        "the recorded processing error ratio",
        async || {
            prometheus
                .api("query?query=slo:error_ratio:rate5m{slo=%22order-events-processing%22}")
                .await["data"]["result"][0]["value"][1]
                .as_str()
                .map(|_| ())
        },
    )
    .await;
    svc.line("payment captured");

    proxy.cut();
    let cut = Instant::now();
    let none = HashSet::new();
    let card = card_where(
        &retro,
        &none,
        Duration::from_secs(120),
        "for the processing SLO with evidence",
        |c| {
            c.alert.name() == "ErrorBudgetBurn1h"
                && c.alert.label("slo") == "order-events-processing"
                && c.evidence.is_some()
        },
    )
    .await;
    eprintln!("processing card {:?} after the cut", cut.elapsed());
    let ev = card.evidence.as_ref().expect("evidence");
    let moved: Vec<_> = ev.dependencies.iter().filter(|d| d.moved).collect();
    let broker = moved
        .iter()
        .find(|d| d.kind == "messaging" && d.name.contains(&format!("{name}:payment.requested")))
        .unwrap_or_else(|| panic!("the broker named among {:#?}", ev.dependencies));
    assert!(
        broker
            .during
            .expect("publishes during the burn")
            .error_ratio
            > 0.5,
        "{broker:?}"
    );
    assert!(
        svc.count("order event dead-lettered") > 0,
        "the events were dead-lettered, not dropped"
    );
    assert!(svc.is_running());

    proxy.restore().await;
    drop(traffic);
    drop(svc);
    common::delete_payments(&amqp_url(), &name).await;
}

/// A `POST /changes` to retro, as a deploy tool sends it.
async fn announce(retro_addr: std::net::SocketAddr, body: Value) {
    let res = reqwest::Client::new()
        .post(format!("http://{retro_addr}/changes"))
        .json(&body)
        .send()
        .await
        .expect("announce");
    assert_eq!(res.status(), 201, "{body}");
}

/// An RFC 3339 time `seconds_ago` before now.
fn rfc3339_ago(seconds_ago: u64) -> String {
    (time::OffsetDateTime::now_utc() - Duration::from_secs(seconds_ago))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formatted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_inventory_and_a_failing_consumer_after_a_version_bump_each_name_their_cause() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spans, log) = (
        dir.path().join("spans.jsonl"),
        dir.path().join("service.log"),
    );
    let envs = |version: &str, http: &str| {
        vec![
            ("ENABLE_FAULTS", "1".to_owned()),
            ("SERVICE_VERSION", version.to_owned()),
            ("HTTP_ADDR", http.to_owned()),
            ("LOOPTEL_TRACES_FILE", spans.display().to_string()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ]
    };
    // Version 0.1.0 first; its start falls outside the changes' look-back
    // (a minute here: an hour as the spec's windows are scaled).
    let mut old = Service::start_logging(&envs("0.1.0", "127.0.0.1:0"), Some(&log));
    let addr = old.http_addr();
    let started = Instant::now();
    let store = format!("sqlite://{}", dir.path().join("retro.db").display());
    let Loop {
        retro,
        retro_addr,
        prometheus,
        _alertmanager,
    } = Loop::start_with(
        &addr,
        &store,
        Some((&spans, &log)),
        Settings {
            changes_window: Duration::from_secs(30),
            min_baseline: Duration::from_secs(10),
            ..scaled_settings()
        },
        false,
    )
    .await;
    // Each order waits on the inventory: three clients keep the rate up
    // once it is slow.
    let traffic: Vec<Traffic> = (0..3).map(|_| Traffic::start(&addr)).collect();
    // A deploy announced well before the look-back: not on the card.
    announce(
        retro_addr,
        json!({"version": "0.0.9", "at": rfc3339_ago(300)}),
    )
    .await;
    looptel_tests::eventually(
        looptel_tests::budget::PROCESS,
        "target_info of 0.1.0 scraped",
        async || {
            prometheus
                .api("query?query=target_info{service_version=%220.1.0%22}")
                .await["data"]["result"][0]["metric"]["service_instance_id"]
                .as_str()
                .map(|_| ())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(35).saturating_sub(started.elapsed())).await;

    // The bump: 0.1.1 on the same address, announcing itself to retro
    // (looptel's `retro-client`) with its pipeline's link.
    assert!(old.terminate().success());
    let mut bumped = envs("0.1.1", &addr);
    bumped.push(("LOOPTEL_RETRO_URL", format!("http://{retro_addr}")));
    bumped.push(("DEPLOY_LINK", "https://ci.example.com/run/8".to_owned()));
    let mut new = Service::start_logging(&bumped, Some(&log));
    assert_eq!(new.http_addr(), addr);
    tokio::time::sleep(Duration::from_secs(12)).await;

    // The inventory slows past the latency SLO's 500 ms; every order event
    // fails in the fulfilment consumer.
    set_faults(
        &addr,
        Some(r#"{"inventory_delay_ms": 700, "consumer_error_rate": 1.0}"#),
    )
    .await;
    let none = HashSet::new();
    let burn_card = |slo: &'static str| {
        move |c: &looptel_retro::Incident| {
            c.alert.name() == "ErrorBudgetBurn1h"
                && c.alert.label("slo") == slo
                && c.evidence.as_ref().is_some_and(|e| !e.traces.is_empty())
        }
    };
    let latency = card_where(
        &retro,
        &none,
        Duration::from_secs(120),
        "for the latency SLO",
        burn_card("place-order-latency"),
    )
    .await;
    let processing = card_where(
        &retro,
        &none,
        Duration::from_secs(120),
        "for the processing SLO",
        burn_card("order-events-processing"),
    )
    .await;

    // The latency card: the slow inventory call, holding the critical path
    // of every evidence trace — each a request that really was slow.
    assert_names_the_cause(
        &latency,
        "inventory.v1.StockService/ReserveItem is slow: p99 ",
    );
    let ev = latency.evidence.as_ref().expect("evidence");
    let top = &ev.hypotheses[0];
    assert!(top.text.contains("of the critical path"), "{}", top.text);
    let windows = ev.windows.as_ref().expect("windows");
    assert!(
        windows.before.is_some(),
        "a baseline from the data there is: {}",
        windows.note
    );
    for t in &ev.traces {
        let written = spans_written(&spans, &t.trace_id);
        let server = written
            .iter()
            .find(|s| s["name"] == "POST /orders")
            .unwrap_or_else(|| panic!("no server span of {} written", t.trace_id));
        let ns = |k: &str| {
            server[k]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a time")
        };
        assert!(
            ns("endTimeUnixNano") - ns("startTimeUnixNano") > 500_000_000,
            "trace {} was slow",
            t.trace_id
        );
    }
    // What changed: the new version (seen on target_info, and announced),
    // the switch; not the first start, not the old announcement.
    let changes: Vec<(&str, &str)> = ev
        .changes
        .iter()
        .map(|c| (c.kind.as_str(), c.what.as_str()))
        .collect();
    assert!(
        changes
            .iter()
            .any(|(k, w)| *k == "version" && w.starts_with("order-service 0.1.1 replaced 0.1.0")),
        "{changes:#?}"
    );
    assert!(changes.contains(&("deploy", "order-service 0.1.1 deployed")));
    // Announced by the service itself, with its pipeline's link.
    assert!(
        ev.changes.iter().any(
            |c| c.kind == "deploy" && c.link.as_deref() == Some("https://ci.example.com/run/8")
        ),
        "{:#?}",
        ev.changes
    );
    assert!(changes.contains(&(
        "fault_switch",
        "inventory_delay_ms=700 consumer_error_rate=1"
    )));
    assert!(
        !changes
            .iter()
            .any(|(_, w)| w.contains("0.0.9") || w.contains("0.1.0 started")),
        "outside the look-back: {changes:#?}"
    );
    assert!(ev.hypotheses.iter().any(|h| h.kind
        == looptel_retro::incident::HypothesisKind::Change
        && h.text.contains("0.1.1")));
    ready_within(&latency, Duration::from_secs(10));

    // The processing card: the consumer step that fails, with its lines.
    assert_names_the_cause(&processing, "process orders fails: ");
    let ev = processing.evidence.as_ref().expect("evidence");
    assert!(
        ev.hypotheses[0]
            .text
            .contains("'order event dead-lettered'")
            || ev.hypotheses[0].text.contains("'order event failed'"),
        "{}",
        ev.hypotheses[0].text
    );
    for t in &ev.traces {
        assert!(
            spans_written(&spans, &t.trace_id)
                .iter()
                .any(|s| s["name"] == "process orders" && s["status"]["code"] == 2),
            "trace {} failed in the consumer",
            t.trace_id
        );
    }
    ready_within(&processing, Duration::from_secs(10));

    drop(traffic);
    drop(new);
}

/// The loop on native histograms: order-service with
/// `LOOPTEL_METRICS_HISTOGRAMS=classic+native` (Prometheus 2.42 stores the
/// native side and takes the exemplars from the classic buckets beside
/// it), the spec with `histograms: native`. The page's card holds traces
/// of requests that really failed, found by the exemplars of the native
/// series; the failing dependency is found by its native histogram; the
/// recovery is verified on `histogram_count`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_native_histograms_a_page_becomes_a_card_with_failed_traces_and_a_verified_recovery() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spans, log) = (
        dir.path().join("spans.jsonl"),
        dir.path().join("service.log"),
    );
    let mut svc = Service::start_logging(
        &[
            ("ENABLE_FAULTS", "1".to_owned()),
            ("LOOPTEL_TRACES_FILE", spans.display().to_string()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
            ("LOOPTEL_METRICS_HISTOGRAMS", "classic+native".to_owned()),
        ],
        Some(&log),
    );
    let addr = svc.http_addr();
    let Loop {
        retro,
        prometheus,
        _alertmanager,
        ..
    } = Loop::start_with(
        &addr,
        "sqlite::memory:",
        Some((&spans, &log)),
        scaled_settings(),
        true,
    )
    .await;
    let traffic = Traffic::start(&addr);

    // Stored as native series: no `_bucket` series of the server's
    // durations.
    looptel_tests::eventually(
        looptel_tests::budget::PROCESS,
        "the recorded error ratio",
        async || common::recorded_ratio(&prometheus, SLO).await,
    )
    .await;
    let buckets = prometheus
        .api("query?query=count(http_server_request_duration_seconds_bucket)")
        .await;
    assert!(
        buckets["data"]["result"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "no classic series stored: {buckets}"
    );

    set_faults(&addr, Some(r#"{"inventory_error_rate": 0.5}"#)).await;
    let none = HashSet::new();
    let card = card_where(
        &retro,
        &none,
        Duration::from_secs(90),
        "with evidence",
        |c| {
            c.alert.name() == "ErrorBudgetBurn1h"
                && c.alert.label("slo") == SLO
                && c.evidence.as_ref().is_some_and(|e| !e.traces.is_empty())
        },
    )
    .await;
    let ev = card.evidence.as_ref().expect("evidence");
    assert!(ev.problems.is_empty(), "no query failed: {:?}", ev.problems);
    assert!(
        ev.selector
            .starts_with("http_server_request_duration_seconds{"),
        "{}",
        ev.selector
    );
    for t in &ev.traces {
        failed_request(&spans, t);
    }
    assert_inventory_moved(ev);
    assert_names_the_cause(&card, "inventory.v1.StockService/ReserveItem fails: errors");

    set_faults(&addr, None).await;
    let first = card.id.clone();
    let verified = card_where(&retro, &none, Duration::from_secs(90), "checked", |c| {
        c.id == first && c.verification.is_some()
    })
    .await;
    let v = verified.verification.as_ref().expect("checked");
    assert_eq!(verified.state, State::Verified, "{}", v.reason);
    assert!(v.requests >= 10.0, "{v:?}");
    drop(traffic);
}
