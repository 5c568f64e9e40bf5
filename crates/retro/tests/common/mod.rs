//! What the store, restart and replica tests share: a PostgreSQL database
//! of their own, webhook bodies, and a stand-in for Prometheus' HTTP API.
#![allow(dead_code, unreachable_pub)]

pub mod process;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection as _;
use time::OffsetDateTime;

/// The PostgreSQL server the tests use: `RETRO_TEST_POSTGRES_URL`, or the
/// one on 127.0.0.1:5432 (trust auth, user `postgres`), which
/// `scripts/test.sh` starts when missing.
pub fn postgres_server() -> String {
    std::env::var("RETRO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A database created for one test and dropped (with its connections)
/// when this is dropped.
#[derive(Debug)]
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(tag: &str) -> Self {
        let name = format!(
            "retro_{tag}_{}_{}",
            std::process::id(),
            OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000
        );
        let server = postgres_server();
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {server}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        Self {
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let server = postgres_server();
        let name = self.name.clone();
        // Its own thread and runtime: Drop may run inside a runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut admin) =
                    sqlx::PgConnection::connect(&format!("{server}/postgres")).await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// An RFC 3339 time, as Alertmanager writes it.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// One alert of order-service's availability SLO.
pub fn alert(status: &str, fingerprint: &str, starts_at: &str, ends_at: &str) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": "ErrorBudgetBurn1h", "severity": "page", "slo": "order-api-availability",
                   "service": "order-service", "window": "1h", "instance": fingerprint},
        "annotations": {"summary": "order-service: order-api-availability is burning its error budget 14.4× too fast"},
        "startsAt": starts_at, "endsAt": ends_at,
        "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint
    })
}

/// A webhook body holding `alerts`.
pub fn webhook(status: &str, alerts: Vec<Value>) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": status,
        "receiver": "retro", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": alerts
    })
}

/// A stand-in for Prometheus' HTTP API (not Prometheus: the end-to-end
/// tests in order-service run the real one). Exemplar reads and instant
/// queries hang while `hang` is set — evidence being gathered, a recovery
/// being checked when a test stops retro. Otherwise exemplar reads answer
/// none, and an instant query answers 100 calls for the
/// recovery's request count and 0 for everything else (no errors), so a
/// recovery check says verified.
#[derive(Clone, Debug, Default)]
pub struct FakePrometheus {
    pub hang: Arc<AtomicBool>,
    pub exemplar_reads: Arc<AtomicUsize>,
    /// Recovery checks: the instant queries of a recovery's request count.
    pub recovery_reads: Arc<AtomicUsize>,
}

impl FakePrometheus {
    pub async fn start(&self) -> std::net::SocketAddr {
        use axum::extract::Query;
        use axum::routing::get;
        let this = self.clone();
        let exemplars = get(move || {
            let this = this.clone();
            async move {
                this.exemplar_reads.fetch_add(1, Ordering::SeqCst);
                while this.hang.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                axum::Json(json!({"status": "success", "data": []}))
            }
        });
        let this = self.clone();
        let query = get(
            move |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                while this.hang.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let expr = q.get("query").cloned().unwrap_or_default();
                let value = if expr.starts_with("sum(increase(") {
                    this.recovery_reads.fetch_add(1, Ordering::SeqCst);
                    "100"
                } else {
                    "0"
                };
                let now = OffsetDateTime::now_utc().unix_timestamp();
                axum::Json(json!({"status": "success", "data": {"resultType": "vector",
                    "result": [{"metric": {}, "value": [now, value]}]}}))
            },
        );
        let range = get(|| async {
            axum::Json(json!({"status": "success", "data": {"resultType": "matrix", "result": []}}))
        });
        let app = axum::Router::new()
            .route("/api/v1/query_exemplars", exemplars)
            .route("/api/v1/query", query)
            .route("/api/v1/query_range", range);
        looptel_tests::serve(app).await
    }
}

/// Posts a webhook body to `base`; its JSON answer, which must be a 200.
pub async fn post(client: &reqwest::Client, base: &str, body: &Value) -> Value {
    let res = client
        .post(format!("{base}/alerts"))
        .json(body)
        .send()
        .await
        .expect("post");
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    res.json().await.expect("json")
}

/// Every card `base` serves (up to 1,000), newest first, as JSON.
pub async fn cards(client: &reqwest::Client, base: &str) -> Vec<Value> {
    client
        .get(format!("{base}/incidents?format=json&limit=1000"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// One card, as JSON.
pub async fn card(client: &reqwest::Client, base: &str, id: &str) -> Value {
    client
        .get(format!("{base}/incidents/{id}?format=json"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// Waits until `done` holds for the cards `base` serves; returns them.
pub async fn until(
    client: &reqwest::Client,
    base: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    looptel_tests::eventually(looptel_tests::budget::PROCESS, what, async || {
        let c = cards(client, base).await;
        done(&c).then_some(c)
    })
    .await
}

/// How many of a card's timeline lines start with `prefix`.
pub fn events(card: &Value, prefix: &str) -> usize {
    card["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|e| e["what"].as_str().is_some_and(|w| w.starts_with(prefix)))
        .count()
}

/// One series of `base`'s own `/metrics` (0 when absent).
pub async fn metric(client: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    looptel_tests::scrape_value(&text, series).unwrap_or(0.0)
}
