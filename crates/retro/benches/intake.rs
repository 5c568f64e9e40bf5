//! How fast the real `looptel-retro` binary (release build) takes
//! Alertmanager's webhooks into each store, and its memory once it holds
//! 10,000 cards.
//!
//! `cargo bench -p looptel-retro --bench intake` (PostgreSQL on
//! 127.0.0.1:5432 or `RETRO_TEST_POSTGRES_URL`; `INTAKE_CARDS` changes the
//! 10,000). Each webhook carries one new firing alert — the worst case:
//! Alertmanager groups alerts — posted over 8 keep-alive connections; the
//! rate counts acknowledged webhooks (each card on disk before its 200).
//! Prometheus is a closed port, so each card's evidence gathering fails
//! fast and writes its card again in the background, as it would with
//! sources that answer quickly.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection as _;

// The Any driver: one connection type for both stores.
fn install() {
    sqlx::any::install_default_drivers();
}

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/order-service/slo.yaml"
);
const CONNECTIONS: usize = 8;

fn start(database_url: &str) -> (Child, String) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let mut child = Command::new(env!("CARGO_BIN_EXE_looptel-retro"))
        .env_clear()
        .env("OTEL_TRACES_EXPORTER", "none")
        .args(["--addr", "127.0.0.1:0", "--spec", SPEC])
        .args(["--database-url", database_url])
        .arg(format!("--prometheus-url=http://{closed}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn looptel-retro");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["message"] == "looptel-retro listening" {
                let _ = tx.send(v["http.addr"].as_str().unwrap_or_default().to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("listening");
    (child, format!("http://{addr}"))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn body(i: usize, starts: &str) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "retro",
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "ErrorBudgetBurn1h", "severity": "page", "slo": "order-api-availability",
                       "service": "order-service", "window": "1h", "instance": format!("bench-{i}")},
            "annotations": {"summary": "order-service: order-api-availability is burning its error budget 14.4× too fast",
                            "runbook_url": "https://runbooks.example.com/order-service"},
            "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": format!("bench{i:08}")
        }]
    })
}

async fn run(name: &str, database_url: &str, cards: usize) {
    let (mut child, base) = start(database_url);
    let idle = rss_kib(child.id());
    let starts = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, base, next, starts) =
            (client.clone(), base.clone(), next.clone(), starts.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= cards {
                    break;
                }
                let res = client
                    .post(format!("{base}/alerts"))
                    .json(&body(i, &starts))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(res.status(), 200);
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let took = began.elapsed();
    // Every card's gathering done (asked of the database itself, so that
    // the figure below is not what serving the cards costs): the
    // background writes are over.
    let mut db = sqlx::AnyConnection::connect(database_url)
        .await
        .expect("database");
    loop {
        let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM incidents WHERE gathered = 0")
            .fetch_one(&mut db)
            .await
            .expect("count");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled = Instant::now();
    let held = rss_kib(child.id());
    // And after serving the biggest page of the list, 1,000 cards.
    assert!(all_gathered(&client, &base, cards).await);
    let served = rss_kib(child.id());
    println!(
        "{name:<10} {cards} webhooks in {:.2} s: {:.0} webhooks/s over {CONNECTIONS} connections (evidence all written {:.1} s later); RSS idle {:.1} MB, holding {cards} cards {:.1} MB, after serving them in pages of 1,000 {:.1} MB",
        took.as_secs_f64(),
        cards as f64 / took.as_secs_f64(),
        (settled - began - took).as_secs_f64(),
        idle as f64 / 1024.0,
        held as f64 / 1024.0,
        served as f64 / 1024.0,
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

async fn all_gathered(client: &reqwest::Client, base: &str, cards: usize) -> bool {
    let mut offset = 0;
    while offset < cards {
        let page: Vec<Value> = client
            .get(format!(
                "{base}/incidents?format=json&limit=1000&offset={offset}"
            ))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if page.is_empty() || page.iter().any(|c| c["evidence"].is_null()) {
            return false;
        }
        offset += page.len();
    }
    true
}

fn main() {
    let cards: usize = std::env::var("INTAKE_CARDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    install();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        run(
            "SQLite",
            &format!("sqlite://{}", dir.path().join("retro.db").display()),
            cards,
        )
        .await;

        let server = std::env::var("RETRO_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
        let name = format!("retro_bench_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .expect("PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create");
        run("PostgreSQL", &format!("{server}/{name}"), cards).await;
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .expect("drop");
    });
}
