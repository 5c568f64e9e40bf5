//! The HTTP interface: the webhook's refusals, idempotent retries, the
//! cards in three formats, actions, and sources that are down.
//!
//! The metrics source here is an in-process double that counts its calls
//! and answers with canned exemplars; the end-to-end test in `tests/` runs
//! the real Prometheus and Alertmanager.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use looptel_core::{Instrumentation, Propagator};
use looptel_retro::sources::{
    Exemplar, Http, MetricsSource, Series, SourceFuture, files, prometheus::Prometheus,
    tempo::Tempo,
};
use looptel_retro::{Retro, Settings, Store};
use looptel_tests::{budget, eventually};
use serde_json::{Value, json};
use time::OffsetDateTime;

const SPEC: &str = r#"
service: order-service
owner: "team-orders (on-call: orders-primary)"
runbook_url: https://runbooks.example.com/order-service
response_sla: { page: 15 minutes, ticket: next business day }
selector: { job: order-service }
slos:
  - name: order-api-availability
    description: 99.9 % of order API calls succeed.
    objective: 99.9
    sli: { http: { routes: ["/orders"] } }
"#;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// Answers exemplars and queries from a script; counts exemplar reads.
#[derive(Debug, Default)]
struct Canned {
    /// The exemplars every read answers; none set: one of a failed call in
    /// [`TRACE`].
    exemplars: Option<Vec<Exemplar>>,
    /// A recovery check's answers: the calls in the window and the SLI's
    /// error ratio; none set: every query answers nothing.
    recovery: Option<(f64, f64)>,
    exemplar_reads: AtomicUsize,
    /// Exemplar reads in flight, and the most seen at once.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// How long an exemplar read takes.
    delay: Duration,
    exemplar_selectors: Mutex<Vec<String>>,
    queries: Mutex<Vec<String>>,
}

impl MetricsSource for Canned {
    fn exemplars<'a>(
        &'a self,
        selector: &'a str,
        _start: OffsetDateTime,
        _end: OffsetDateTime,
    ) -> SourceFuture<'a, Vec<Exemplar>> {
        self.exemplar_reads.fetch_add(1, Ordering::SeqCst);
        self.exemplar_selectors
            .lock()
            .expect("lock")
            .push(selector.to_owned());
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(self
                .exemplars
                .clone()
                .unwrap_or_else(|| vec![failed_call(TRACE, 0.2)]))
        })
    }

    fn query<'a>(&'a self, expr: &'a str, _at: OffsetDateTime) -> SourceFuture<'a, Vec<Series>> {
        self.queries.lock().expect("lock").push(expr.to_owned());
        let answer = self.recovery.map(|(requests, ratio)| Series {
            labels: BTreeMap::new(),
            points: vec![(
                0.0,
                if expr.starts_with("sum(increase(") {
                    requests
                } else {
                    ratio
                },
            )],
        });
        Box::pin(async move { Ok(answer.into_iter().collect()) })
    }

    fn query_range<'a>(
        &'a self,
        _expr: &'a str,
        _start: OffsetDateTime,
        _end: OffsetDateTime,
        _step: Duration,
    ) -> SourceFuture<'a, Vec<Series>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn graph_url(&self, expr: &str) -> String {
        format!("http://prometheus/graph?g0.expr={expr}")
    }

    fn name(&self) -> String {
        "canned".to_owned()
    }
}

/// An exemplar of a call that failed (503), in `trace`.
fn failed_call(trace: &str, value: f64) -> Exemplar {
    Exemplar {
        series: BTreeMap::from([
            ("error_type".to_owned(), "503".to_owned()),
            ("le".to_owned(), "0.25".to_owned()),
        ]),
        trace_id: trace.to_owned(),
        span_id: None,
        value,
        timestamp: 1_796_032_800.0,
    }
}

/// A store in memory (the file and PostgreSQL stores are tested in
/// `store.rs`).
async fn memory() -> Store {
    Store::open("sqlite::memory:").await.expect("store")
}

fn http() -> Http {
    Http::new(
        Instrumentation::disabled(Propagator::default()),
        Duration::from_secs(2),
    )
}

async fn serve(retro: &Retro) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = retro.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Now, as a webhook writes times: a resolution that just happened.
fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn webhook(status: &str, fingerprint: &str, ends_at: &str) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": status,
        "receiver": "retro", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "ErrorBudgetBurn1h", "severity": "page", "slo": "order-api-availability",
                       "service": "order-service", "window": "1h"},
            "annotations": {"summary": "order-service: order-api-availability is burning its error budget 14.4× too fast",
                            "description": "<script>alert(1)</script>", "runbook_url": "javascript:alert(1)"},
            "startsAt": "2026-11-30T10:00:00Z", "endsAt": ends_at,
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint
        }]
    })
}

/// Posts a webhook body; its JSON answer.
async fn post(client: &reqwest::Client, base: &str, body: &Value) -> Value {
    client
        .post(format!("{base}/alerts"))
        .json(body)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json")
}

async fn card(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    until: impl Fn(&Value) -> bool,
) -> Value {
    eventually(budget::IN_PROCESS, &format!("card {id}"), async || {
        let v: Value = client
            .get(format!("{base}/incidents/{id}"))
            .header("accept", "application/json")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        until(&v).then_some(v)
    })
    .await
}

#[tokio::test]
async fn bad_webhooks_get_a_400_naming_the_problem_and_big_ones_a_413() {
    let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
    let retro = Retro::builder(spec, Arc::new(Canned::default()), memory().await).build();
    let base = serve(&retro).await;
    let client = reqwest::Client::new();
    for (body, expected) in [
        ("{not json".to_owned(), "not an Alertmanager webhook"),
        (
            r#"{"version":"3","status":"firing","alerts":[]}"#.to_owned(),
            "unsupported webhook version \"3\"",
        ),
        (
            webhook("firing", "", "0001-01-01T00:00:00Z").to_string(),
            "alerts[0].fingerprint is empty",
        ),
    ] {
        let res = client
            .post(format!("{base}/alerts"))
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(res.status(), 400);
        let v: Value = res.json().await.expect("json error");
        assert!(
            v["error"].as_str().expect("message").contains(expected),
            "{v}"
        );
    }
    let huge = vec![b' '; looptel_retro::MAX_WEBHOOK_BYTES + 1];
    let res = client
        .post(format!("{base}/alerts"))
        .body(huge)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 413);
    assert!(retro.incidents(10, 0).await.expect("list").is_empty());
}

#[tokio::test]
async fn a_retry_changes_nothing_and_a_card_reads_in_three_formats() {
    let dir = tempfile::tempdir().expect("dir");
    let logs = dir.path().join("service.log");
    let mut f = std::fs::File::create(&logs).expect("log file");
    writeln!(
        f,
        r#"{{"timestamp":"2026-11-30T10:00:01Z","level":"ERROR","message":"order failed","service.name":"order-service","trace_id":"{TRACE}","span_id":"b7ad6b7169203331"}}"#
    )
    .expect("write");
    let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
    let metrics = Arc::new(Canned::default());
    let retro = Retro::builder(spec, metrics.clone(), memory().await)
        .traces(Arc::new(files::OtlpFile::new(
            dir.path().join("no-spans.jsonl"),
        )))
        .logs(Arc::new(files::JsonLogFile::new(&logs)))
        .build();
    let base = serve(&retro).await;
    let client = reqwest::Client::new();
    let firing = webhook("firing", "c0ffee", "0001-01-01T00:00:00Z");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let v = post(&client, &base, &firing).await;
        ids.push(v["incidents"][0].as_str().expect("id").to_owned());
    }
    assert_eq!(ids, ["c0ffee-1796032800"; 3]);
    let id = &ids[0];
    let v = card(&client, &base, id, |v| !v["evidence"].is_null()).await;
    assert_eq!(
        retro.incidents(10, 0).await.expect("list").len(),
        1,
        "one card for three deliveries"
    );
    assert_eq!(
        metrics.exemplar_reads.load(Ordering::SeqCst),
        1,
        "gathered once"
    );
    // The SLI's raw series, from the spec: not a recording rule.
    assert_eq!(
        metrics.exemplar_selectors.lock().expect("lock")[0],
        r#"http_server_request_duration_seconds_bucket{job="order-service",http_route="/orders"}"#
    );
    assert_eq!(v["state"], "firing");
    assert_eq!(v["slo"]["objective_percent"], 99.9);
    assert_eq!(v["slo"]["burn_rate"], 14.4);
    assert_eq!(v["slo"]["owner"], "team-orders (on-call: orders-primary)");
    assert_eq!(v["slo"]["response_sla"], "15 minutes");
    // The exemplar's trace is not in the file: reported, its logs kept.
    let ev = &v["evidence"];
    assert_eq!(ev["missing"][0]["trace_id"], TRACE);
    assert!(
        ev["missing"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("cannot open")
    );
    assert_eq!(ev["logs"][0]["message"], "order failed");
    // The file that is missing is named as a failed source.
    assert!(
        ev["problems"][0]["source_name"]
            .as_str()
            .expect("name")
            .starts_with("file ")
    );

    let md = client
        .get(format!("{base}/incidents/{id}?format=md"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(md.starts_with("# ErrorBudgetBurn1h — firing"), "{md}");
    assert!(md.contains("| owner | team-orders (on-call: orders-primary) |"));
    assert!(md.contains("order failed"));

    let html = client
        .get(format!("{base}/incidents/{id}"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped"
    );
    assert!(!html.contains("<script>"));
    assert!(!html.contains("href=\"javascript:"), "only http(s) links");
    let list = client
        .get(format!("{base}/incidents"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(list.contains(&format!("href=\"/incidents/{id}\"")));
    let res = client
        .get(format!("{base}/incidents/{id}?format=pdf"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 400);
    let res = client
        .get(format!("{base}/incidents/nope"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn actions_are_checked_and_kept_in_order() {
    let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
    let retro = Retro::builder(spec, Arc::new(Canned::default()), memory().await).build();
    let base = serve(&retro).await;
    let client = reqwest::Client::new();
    post(
        &client,
        &base,
        &webhook("firing", "beef", "0001-01-01T00:00:00Z"),
    )
    .await;
    let url = format!("{base}/incidents/beef-1796032800/actions");
    for (body, status) in [
        (json!({"text": ""}), 400),
        (json!({"text": "x", "link": "javascript:alert(1)"}), 400),
        (json!({"text": "x", "extra": 1}), 400),
        (
            json!({"text": "x".repeat(looptel_retro::MAX_ACTION_CHARS + 1)}),
            400,
        ),
        (
            json!({"text": "Timeout on the inventory call: 2 s → 300 ms", "link": "https://git.example.com/pr/42"}),
            201,
        ),
        (json!({"text": "Alert on the inventory's own SLO"}), 201),
    ] {
        let res = client.post(&url).json(&body).send().await.expect("post");
        assert_eq!(res.status(), status, "{body}");
    }
    let res = client
        .post(format!("{base}/incidents/nope/actions"))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 404);
    let card = retro
        .incident("beef-1796032800")
        .await
        .expect("read")
        .expect("card");
    let texts: Vec<&str> = card.actions.iter().map(|a| a.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Timeout on the inventory call: 2 s → 300 ms",
            "Alert on the inventory's own SLO"
        ]
    );
    assert_eq!(
        card.actions[0].link.as_deref(),
        Some("https://git.example.com/pr/42")
    );
}

#[tokio::test]
async fn announced_changes_need_the_write_token_and_those_just_before_the_burn_are_on_its_card() {
    let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
    let retro = Retro::builder(spec, Arc::new(Canned::default()), memory().await)
        .tokens(looptel_retro::Tokens {
            write: Some(looptel_retro::Token::new("deploy-secret").expect("token")),
            ..looptel_retro::Tokens::default()
        })
        .build();
    let base = serve(&retro).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/changes");
    // The burn (the canned Prometheus has no ratio: the alert's start).
    let burn = OffsetDateTime::parse(
        "2026-11-30T10:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .expect("time");
    let at = |minutes: i64| {
        (burn - time::Duration::minutes(minutes))
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format")
    };
    let res = client
        .post(&url)
        .json(&json!({"version": "0.1.1"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 401, "no token, no change");
    for (body, status) in [
        (json!({}), 400),
        (
            json!({"version": "0.1.1", "link": "javascript:alert(1)"}),
            400,
        ),
        (json!({"version": "0.1.1", "at": "yesterday"}), 400),
        (json!({"version": "0.1.1", "extra": 1}), 400),
        (
            json!({"what": "x".repeat(looptel_retro::MAX_CHANGE_FIELD_CHARS + 1)}),
            400,
        ),
        (
            json!({"version": "0.1.1", "link": "https://ci.example.com/run/7", "at": at(2)}),
            201,
        ),
        (json!({"version": "0.1.0", "at": at(120)}), 201),
        (
            json!({"service": "billing", "kind": "config", "what": "limits raised", "at": at(1)}),
            201,
        ),
    ] {
        let res = client
            .post(&url)
            .bearer_auth("deploy-secret")
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(res.status(), status, "{body}");
    }
    let listed: Value = client
        .get(format!("{url}?since={}", at(24 * 60).replace('+', "%2B")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let versions: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["version"].as_str())
        .collect();
    assert_eq!(versions, ["0.1.0", "0.1.1"], "this service's, oldest first");

    post(
        &client,
        &base,
        &webhook("firing", "c0de", "0001-01-01T00:00:00Z"),
    )
    .await;
    let card = card(&client, &base, "c0de-1796032800", |v| {
        !v["evidence"].is_null()
    })
    .await;
    let changes = card["evidence"]["changes"].as_array().expect("changes");
    assert_eq!(
        changes.len(),
        1,
        "only the deploy 2 min before: {changes:#?}"
    );
    assert_eq!(changes[0]["what"], "order-service 0.1.1 deployed");
    assert_eq!(changes[0]["kind"], "deploy");
    assert_eq!(changes[0]["source"], "announced");
    assert_eq!(changes[0]["link"], "https://ci.example.com/run/7");
    let top = &card["evidence"]["hypotheses"][0];
    assert_eq!(top["kind"], "change");
    assert_eq!(
        top["text"],
        "order-service 0.1.1 deployed (deploy): 2 min before the burn"
    );
    let html = client
        .get(format!("{base}/incidents/c0de-1796032800"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    let top_at = html
        .find("id=\"top-hypothesis\"")
        .expect("the top hypothesis");
    assert!(
        top_at < html.find("<h2>Timeline</h2>").expect("timeline"),
        "the card opens with it"
    );
    assert!(
        html.contains(r#"<a href="https://ci.example.com/run/7">order-service 0.1.1 deployed</a>"#)
    );
}

#[tokio::test]
async fn sources_that_are_down_are_named_on_the_card_and_the_recovery_says_why_not() {
    // Nothing listens on these ports: real connection refusals.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
    let retro = Retro::builder(
        spec,
        Arc::new(Prometheus::new(format!("http://{closed}"), http())),
        memory().await,
    )
    .traces(Arc::new(Tempo::new(format!("http://{closed}"), http())))
    .settings(Settings {
        recovery_window: Some(Duration::from_millis(10)),
        settle: Duration::ZERO,
        ..Settings::default()
    })
    .build();
    let base = serve(&retro).await;
    let client = reqwest::Client::new();
    post(
        &client,
        &base,
        &webhook("firing", "dead", "0001-01-01T00:00:00Z"),
    )
    .await;
    let v = card(&client, &base, "dead-1796032800", |v| {
        !v["evidence"].is_null()
    })
    .await;
    let problems: Vec<&str> = v["evidence"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["source_name"].as_str())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("prometheus http://127.0.0.1")),
        "{problems:?}"
    );
    post(&client, &base, &webhook("resolved", "dead", &now())).await;
    let v = card(&client, &base, "dead-1796032800", |v| {
        !v["verification"].is_null()
    })
    .await;
    assert_eq!(v["state"], "not_verified");
    assert!(
        v["verification"]["reason"]
            .as_str()
            .expect("reason")
            .starts_with("could not check: prometheus"),
        "{v}"
    );
    // The service's own metrics count the failures.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("looptel_retro_source_errors_total{source=\"prometheus\"}")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_summary_is_posted_to_the_notification_webhook_once_the_evidence_is_in() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(v);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
    let retro = Retro::builder(spec, Arc::new(Canned::default()), memory().await)
        .http(http())
        .settings(Settings {
            notify_url: Some(format!("http://{hook}/notify")),
            public_url: Some("https://retro.example.com/".to_owned()),
            ..Settings::default()
        })
        .build();
    let base = serve(&retro).await;
    post(
        &reqwest::Client::new(),
        &base,
        &webhook("firing", "feed", "0001-01-01T00:00:00Z"),
    )
    .await;
    let v = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("posted in time")
        .expect("a body");
    assert_eq!(v["incident"], "feed-1796032800");
    assert_eq!(
        v["url"],
        "https://retro.example.com/incidents/feed-1796032800"
    );
    assert_eq!(v["alert"], "ErrorBudgetBurn1h");
    assert_eq!(v["state"], "firing");
    let text = v["text"].as_str().expect("text");
    assert!(
        text.starts_with("ErrorBudgetBurn1h (page) — firing. SLO order-api-availability (99.9 %) burning 14.4× over 1h/5m."),
        "{text}"
    );
}

#[tokio::test]
async fn a_webhook_of_many_alerts_gathers_a_few_at_a_time() {
    let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
    let metrics = Arc::new(Canned {
        delay: Duration::from_millis(50),
        ..Canned::default()
    });
    let retro = Retro::builder(spec, metrics.clone(), memory().await)
        .settings(Settings {
            max_concurrent_gathering: 2,
            ..Settings::default()
        })
        .build();
    let mut body = webhook("firing", "x", "0001-01-01T00:00:00Z");
    let alert = body["alerts"][0].clone();
    body["alerts"] = (0..8)
        .map(|i| {
            let mut a = alert.clone();
            a["fingerprint"] = format!("f{i}").into();
            a
        })
        .collect();
    let base = serve(&retro).await;
    let v = post(&reqwest::Client::new(), &base, &body).await;
    assert_eq!(v["incidents"].as_array().map(Vec::len), Some(8));
    eventually(budget::IN_PROCESS, "every card's evidence", async || {
        let cards = retro.incidents(100, 0).await.expect("list");
        cards.iter().all(|c| c.evidence.is_some()).then_some(())
    })
    .await;
    assert_eq!(metrics.exemplar_reads.load(Ordering::SeqCst), 8);
    assert_eq!(metrics.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_alert_without_a_window_pair_says_no_burn() {
    let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
    let retro = Retro::builder(spec, Arc::new(Canned::default()), memory().await).build();
    let mut body = webhook("firing", "quiet", "0001-01-01T00:00:00Z");
    body["alerts"][0]["labels"] = json!({
        "alertname": "SLOTrafficMissing", "severity": "ticket",
        "slo": "order-api-availability", "service": "order-service"
    });
    let n = looptel_retro::webhook::Notification::from_json(body.to_string().as_bytes())
        .expect("valid");
    let ids = retro.receive(n).await.expect("stored");
    let card = retro.incident(&ids[0]).await.expect("read").expect("card");
    let text = looptel_retro::render::summary(&card);
    assert!(
        text.starts_with(
            "SLOTrafficMissing (ticket) — firing. SLO order-api-availability (99.9 %)."
        ),
        "{text}"
    );
    assert!(!looptel_retro::render::markdown(&card).contains("| burn |"));
    assert_eq!(
        card.slo.as_ref().map(|s| s.response_sla.as_str()),
        Some("next business day")
    );
    // Its evidence says what stopped, not that nothing was found: no
    // exemplars are read, and (the canned Prometheus has no series) no
    // calls were seen in the whole look-back.
    let card = eventually(budget::IN_PROCESS, "the evidence", async || {
        retro
            .incident(&ids[0])
            .await
            .ok()
            .flatten()
            .filter(|c| c.evidence.is_some())
    })
    .await;
    let ev = card.evidence.as_ref().expect("evidence");
    let nt = ev.no_traffic.as_ref().expect("about the traffic");
    assert_eq!(
        nt.sli,
        "http_server_request_duration_seconds_count{job=\"order-service\",http_route=\"/orders\"}"
    );
    assert_eq!((nt.last_seen, nt.looked_back_seconds), (None, 3600.0));
    assert!(ev.traces.is_empty() && ev.exemplars_seen == 0);
    assert_eq!(
        ev.hypotheses[0].text,
        "order-api-availability saw no calls in the last 60 min"
    );
    assert!(
        looptel_retro::render::html(&card).contains("<p id=\"no-traffic\">No calls counted by")
    );
}

#[tokio::test]
async fn cards_beyond_the_gathering_queue_wait_in_the_store_for_a_sweep() {
    let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
    let metrics = Arc::new(Canned {
        delay: Duration::from_millis(20),
        ..Canned::default()
    });
    let retro = Retro::builder(spec, metrics.clone(), memory().await)
        .settings(Settings {
            max_concurrent_gathering: 1,
            max_queued_gathering: 2,
            ..Settings::default()
        })
        .build();
    let mut body = webhook("firing", "x", "0001-01-01T00:00:00Z");
    let alert = body["alerts"][0].clone();
    body["alerts"] = (0..6)
        .map(|i| {
            let mut a = alert.clone();
            a["fingerprint"] = format!("q{i}").into();
            a
        })
        .collect();
    let n = looptel_retro::webhook::Notification::from_json(body.to_string().as_bytes())
        .expect("valid");
    assert_eq!(
        retro.receive(n).await.expect("stored").len(),
        6,
        "all stored"
    );
    let gathered = async || {
        retro
            .incidents(10, 0)
            .await
            .expect("list")
            .iter()
            .filter(|c| c.evidence.is_some())
            .count()
    };
    // Two queued, at most one with the dispatcher and one gathering: the
    // rest (two at least) have no place and no claim, and sweeps take them
    // up, each card once.
    let mut swept = 0;
    eventually(budget::IN_PROCESS, "all six gathered", async || {
        if gathered().await == 6 {
            return Some(());
        }
        swept += retro.sweep().await.expect("sweep").gathering;
        None
    })
    .await;
    assert!((2..=4).contains(&swept), "{swept} taken up by sweeps");
    assert_eq!(metrics.exemplar_reads.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_flood_beyond_the_queue_is_gathered_as_the_queue_drains_not_at_the_next_sweep() {
    let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
    let metrics = Arc::new(Canned {
        delay: Duration::from_millis(10),
        ..Canned::default()
    });
    let retro = Retro::builder(spec, metrics.clone(), memory().await)
        .settings(Settings {
            max_concurrent_gathering: 1,
            max_queued_gathering: 2,
            // Only the queue's room can bring the sweeps on in time.
            sweep_interval: Duration::from_secs(3600),
            ..Settings::default()
        })
        .build();
    let sweeper = retro.spawn_sweeper();
    let mut body = webhook("firing", "x", "0001-01-01T00:00:00Z");
    let alert = body["alerts"][0].clone();
    body["alerts"] = (0..20)
        .map(|i| {
            let mut a = alert.clone();
            a["fingerprint"] = format!("flood{i}").into();
            a
        })
        .collect();
    let n = looptel_retro::webhook::Notification::from_json(body.to_string().as_bytes())
        .expect("valid");
    retro.receive(n).await.expect("stored");
    // Well within the hour a sweep would otherwise take.
    eventually(
        Duration::from_secs(60),
        "the flood gathered as the queue drained",
        async || {
            let cards = retro.incidents(100, 0).await.expect("list");
            cards.iter().all(|c| c.evidence.is_some()).then_some(())
        },
    )
    .await;
    assert_eq!(
        metrics.exemplar_reads.load(Ordering::SeqCst),
        20,
        "each once"
    );
    sweeper.abort();
}

#[tokio::test]
async fn verified_needs_both_a_burn_under_one_and_enough_calls() {
    // The SLO's budget is 0.1 % (99.9): a ratio of 0.0005 burns at 0.5.
    for (requests, ratio, verified, reason) in [
        (5.0, 0.0, false, "no traffic: 5 calls"),
        (9.0, 0.0, false, "no traffic: 9 calls"),
        (
            10.0,
            0.0009,
            true,
            "recovered: burn rate 0.90 (under 1) over 10 calls",
        ),
        (100.0, 0.0005, true, "recovered: burn rate 0.50"),
        (
            100.0,
            0.001,
            false,
            "still burning: burn rate 1.00 (1 or more)",
        ),
        (100.0, 0.002, false, "still burning: burn rate 2.00"),
    ] {
        let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
        let retro = Retro::builder(
            spec,
            Arc::new(Canned {
                recovery: Some((requests, ratio)),
                ..Canned::default()
            }),
            memory().await,
        )
        .settings(Settings {
            recovery_window: Some(Duration::from_millis(10)),
            settle: Duration::ZERO,
            min_requests: 10.0,
            ..Settings::default()
        })
        .build();
        let fp = format!("r{requests}x{ratio}").replace('.', "");
        for status in ["firing", "resolved"] {
            let body = webhook(status, &fp, &now());
            let n = looptel_retro::webhook::Notification::from_json(body.to_string().as_bytes())
                .expect("valid");
            retro.receive(n).await.expect("stored");
        }
        let id = format!("{fp}-1796032800");
        let card = eventually(budget::IN_PROCESS, "the recovery check", async || {
            retro
                .incident(&id)
                .await
                .expect("read")
                .filter(|c| c.verification.is_some())
        })
        .await;
        let v = card.verification.expect("checked");
        assert_eq!(
            v.verified, verified,
            "{requests} calls, ratio {ratio}: {}",
            v.reason
        );
        assert!(v.reason.starts_with(reason), "{}", v.reason);
        assert_eq!(
            card.state,
            if verified {
                looptel_retro::State::Verified
            } else {
                looptel_retro::State::NotVerified
            }
        );
    }
}

#[tokio::test]
async fn a_trace_the_source_has_not_got_is_reported_and_the_next_one_tried() {
    const KEPT: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let dir = tempfile::tempdir().expect("dir");
    let spans = dir.path().join("spans.jsonl");
    std::fs::write(
        &spans,
        format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"order-service"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{KEPT}","spanId":"00f067aa0ba902b7","name":"POST /orders","kind":2,"startTimeUnixNano":"1796032800000000000","endTimeUnixNano":"1796032800200000000","status":{{"code":2,"message":"inventory unavailable"}}}}]}}]}}]}}"#
        ) + "\n",
    )
    .expect("spans");

    let spec = looptel_slo::Spec::from_yaml(SPEC).expect("spec");
    // Two exemplars of failed calls; the first (slower, so ranked first)
    // names a trace that was not kept.
    let two = Canned {
        exemplars: Some(vec![failed_call(TRACE, 0.24), failed_call(KEPT, 0.2)]),
        ..Canned::default()
    };
    let retro = Retro::builder(spec, Arc::new(two), memory().await)
        .traces(Arc::new(files::OtlpFile::new(&spans)))
        .build();
    let body = webhook("firing", "next", "0001-01-01T00:00:00Z");
    let n = looptel_retro::webhook::Notification::from_json(body.to_string().as_bytes())
        .expect("valid");
    let id = retro.receive(n).await.expect("stored").remove(0);
    let card = eventually(budget::IN_PROCESS, "the evidence", async || {
        retro
            .incident(&id)
            .await
            .expect("read")
            .filter(|c| c.evidence.is_some())
    })
    .await;
    let ev = card.evidence.expect("gathered");
    let found: Vec<&str> = ev.traces.iter().map(|t| t.trace_id.as_str()).collect();
    let missing: Vec<&str> = ev.missing.iter().map(|m| m.trace_id.as_str()).collect();
    assert_eq!(found, [KEPT], "the next exemplar's trace");
    assert_eq!(missing, [TRACE], "the first, reported as not kept");
    assert_eq!(
        ev.traces[0].analysis.errors[0].error.as_deref(),
        Some("inventory unavailable")
    );
}
