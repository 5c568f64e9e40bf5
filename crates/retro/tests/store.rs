//! The card store with the real SQLite file and the real PostgreSQL: cards
//! outlive the process, a newer schema is refused, and every fault — a
//! file that is not a database, a place nothing can be created, a server
//! that refuses, a network cut mid-run, a full disk — is a clear error or
//! a 503, counted, with no card half-written.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{PgDatabase, alert, metric, rfc3339, webhook};
use looptel_retro::webhook::Notification;
use looptel_retro::{Retro, Settings, Store, StoreError, Token, Tokens};
use looptel_tests::{budget, eventually};
use serde_json::{Value, json};
use sqlx::Connection as _;
use time::OffsetDateTime;

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/order-service/slo.yaml"
);

fn spec() -> looptel_slo::Spec {
    looptel_slo::read_spec(SPEC.as_ref()).expect("spec")
}

/// A service on `store` whose Prometheus is down (evidence is gathered at
/// once, with the failure on the card).
fn retro(store: Store, settings: Settings) -> Retro {
    let http = looptel_retro::sources::Http::new(
        looptel_core::Instrumentation::disabled(looptel_core::Propagator::default()),
        Duration::from_secs(2),
    );
    Retro::builder(
        spec(),
        Arc::new(looptel_retro::sources::prometheus::Prometheus::new(
            format!("http://{}", looptel_tests::closed_port()),
            http,
        )),
        store,
    )
    .settings(settings)
    .build()
}

fn firing(fingerprints: impl IntoIterator<Item = String>) -> Notification {
    let starts = rfc3339(OffsetDateTime::now_utc() - time::Duration::minutes(5));
    let alerts = fingerprints
        .into_iter()
        .map(|fp| alert("firing", &fp, &starts, "0001-01-01T00:00:00Z"))
        .collect();
    Notification::from_json(webhook("firing", alerts).to_string().as_bytes()).expect("valid")
}

/// Waits until every card has its evidence.
async fn gathered(retro: &Retro, n: usize) -> Vec<looptel_retro::Incident> {
    eventually(
        budget::IN_PROCESS,
        &format!("{n} cards with their evidence"),
        async || {
            let cards = retro.incidents(1000, 0).await.expect("list");
            (cards.len() == n && cards.iter().all(|c| c.evidence.is_some())).then_some(cards)
        },
    )
    .await
}

/// Cards written through one store are all there, whole, through a new one.
async fn cards_outlive_their_store(url: &str) {
    let store = Store::open(url).await.expect("open");
    let first = retro(store.clone(), Settings::default());
    let ids = first
        .receive(firing((0..50).map(|i| format!("fp{i}"))))
        .await
        .expect("stored");
    assert_eq!(ids.len(), 50);
    first
        .add_action(&ids[7], "Timeout on the inventory call".to_owned(), None)
        .await
        .expect("write")
        .expect("card");
    let before = serde_json::to_value(gathered(&first, 50).await).expect("json");
    let deployed = time::OffsetDateTime::from_unix_timestamp(1_796_032_800).expect("time");
    let change = looptel_retro::incident::Change {
        at: deployed,
        kind: "deploy".to_owned(),
        what: "order-service 0.1.1 deployed".to_owned(),
        version: Some("0.1.1".to_owned()),
        link: Some("https://ci.example.com/run/7".to_owned()),
        source: looptel_retro::incident::ChangeSource::Announced,
    };
    store
        .add_change("order-service", &change)
        .await
        .expect("kept");
    store.close().await;
    drop(first);

    let store = Store::open(url).await.expect("reopen");
    assert_eq!(store.count().await.expect("count"), 50);
    let second = retro(store, Settings::default());
    let after = serde_json::to_value(second.incidents(1000, 0).await.expect("list")).expect("json");
    assert_eq!(after, before, "every card as it was, newest first");
    let card = second.incident(&ids[7]).await.expect("read").expect("card");
    assert_eq!(card.actions[0].text, "Timeout on the inventory call");
    let minute = time::Duration::minutes(1);
    let kept = second
        .store()
        .changes("order-service", deployed - minute, deployed + minute, 10)
        .await
        .expect("read");
    assert_eq!(kept, [change], "announced changes outlive the store too");
    let other = second
        .store()
        .changes("billing", deployed - minute, deployed + minute, 10)
        .await
        .expect("read");
    assert!(other.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_outlive_the_process_in_a_sqlite_file_in_wal_mode() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("retro.db");
    let url = format!("sqlite://{}", file.display());
    cards_outlive_their_store(&url).await;
    // WAL: the journal beside the database while a connection is open.
    let store = Store::open(&url).await.expect("open");
    assert_eq!(store.location(), file.display().to_string());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_outlive_the_process_in_postgres() {
    let db = PgDatabase::create("outlive").await;
    cards_outlive_their_store(&db.url).await;
    let store = Store::open(&db.url).await.expect("open");
    assert_eq!(
        store.location(),
        db.url,
        "the server and database, no password"
    );
}

/// A schema version this build does not know, as a newer release would
/// have recorded it.
async fn newer_schema_is_refused(url: &str, mut record: impl AsyncFnMut(&str)) {
    Store::open(url).await.expect("first open migrates");
    record(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from a newer release', TRUE, X'00', 1)",
    )
    .await;
    match Store::open(url).await {
        Err(StoreError::NewerSchema { found, known, .. }) => {
            assert_eq!((found, known), (99, looptel_retro::store::SCHEMA_VERSION));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused_never_downgraded() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("retro.db").display());
    newer_schema_is_refused(&url, async |sql| {
        let mut c = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        sqlx::query(sql).execute(&mut c).await.expect("insert");
    })
    .await;

    let db = PgDatabase::create("newer").await;
    let url = db.url.clone();
    newer_schema_is_refused(&db.url, async |sql| {
        let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
        // PostgreSQL's bytea literal.
        let sql = sql.replace("X'00'", "'\\x00'::bytea");
        sqlx::query(&sql).execute(&mut c).await.expect("insert");
    })
    .await;
}

#[tokio::test]
async fn a_store_that_cannot_be_opened_says_where_and_why() {
    let dir = tempfile::tempdir().expect("dir");
    let junk = dir.path().join("retro.db");
    std::fs::write(&junk, vec![b'x'; 8192]).expect("write");
    let err = Store::open(&format!("sqlite://{}", junk.display()))
        .await
        .expect_err("not a database");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(text.contains(&junk.display().to_string()), "{text}");
    assert!(text.contains("not a database"), "{text}");
    assert_eq!(
        std::fs::read(&junk).expect("read"),
        vec![b'x'; 8192],
        "left as it was"
    );

    // A directory where nothing can be created (even by root).
    let err = Store::open("sqlite:///proc/retro-test/retro.db")
        .await
        .expect_err("read-only");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/proc/retro-test/retro.db"),
        "{err}"
    );

    let closed = looptel_tests::closed_port();
    let err = Store::open(&format!("postgres://postgres:hunter2@{closed}/retro"))
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(text.contains(&closed.to_string()), "{text}");
    assert!(!text.contains("hunter2"), "no password in errors: {text}");

    for url in ["mysql://localhost/retro", "retro.db", "sqlite://"] {
        assert!(
            matches!(Store::open(url).await, Err(StoreError::Url(_))),
            "{url}"
        );
    }
}

async fn serve(retro: &Retro) -> String {
    format!("http://{}", looptel_tests::serve(retro.router()).await)
}

fn one_alert(fp: &str) -> Value {
    let starts = rfc3339(OffsetDateTime::now_utc() - time::Duration::minutes(5));
    webhook(
        "firing",
        vec![alert("firing", fp, &starts, "0001-01-01T00:00:00Z")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_mid_run_is_a_503_counted_and_it_comes_back() {
    let db = PgDatabase::create("cut").await;
    let server: std::net::SocketAddr = common::postgres_server()
        .rsplit('@')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("PostgreSQL at host:port");
    let proxy = looptel_tests::Proxy::start(server).await;
    let url = format!("postgres://postgres@{}/{}", proxy.addr(), db.name);
    let retro = retro(Store::open(&url).await.expect("open"), Settings::default());
    let base = serve(&retro).await;
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/alerts"))
        .json(&one_alert("before"))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 200);

    proxy.cut();
    let res = client
        .post(format!("{base}/alerts"))
        .json(&one_alert("during"))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 503, "Alertmanager retries a 5xx");
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("the store failed"),
        "{body}"
    );
    let res = client
        .get(format!("{base}/incidents"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 503);
    assert!(
        metric(
            &client,
            &base,
            "looptel_retro_store_errors_total{operation=\"write\"}"
        )
        .await
            >= 1.0
    );

    proxy.restore().await;
    // Alertmanager's retry, once the database is back.
    eventually(budget::PROCESS, "the store back", async || {
        let res = client
            .post(format!("{base}/alerts"))
            .json(&one_alert("during"))
            .send()
            .await
            .expect("post");
        (res.status() == 200).then_some(())
    })
    .await;
    let ids: Vec<String> = retro
        .incidents(10, 0)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.alert.fingerprint)
        .collect();
    assert_eq!(ids, ["during", "before"]);
}

/// The effective user is root (a tmpfs can be mounted).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A small tmpfs of the test's own, unmounted whatever the test's outcome.
struct Mounted {
    dir: tempfile::TempDir,
}

impl Mounted {
    /// Mounts one with `options` (`size=384k`, `ro,size=64k`); `None`, said
    /// on standard error, when not root (CI runs as root).
    fn tmpfs(options: &str) -> Option<Self> {
        if !is_root() {
            eprintln!("SKIPPED: mounting a tmpfs ({options}) needs root (CI runs as root)");
            return None;
        }
        let dir = tempfile::tempdir().expect("dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a tmpfs ({options}) as root");
        Some(Self { dir })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_503_and_no_card_is_half_written() {
    let Some(disk) = Mounted::tmpfs("size=384k") else {
        return;
    };
    let dir = &disk.dir;
    let url = format!("sqlite://{}", dir.path().join("retro.db").display());
    let retro = retro(Store::open(&url).await.expect("open"), Settings::default());
    let base = serve(&retro).await;
    let client = reqwest::Client::new();
    let description = "d".repeat(20_000);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..100 {
        let mut body = one_alert(&format!("disk{i}"));
        body["alerts"][0]["annotations"]["description"] = json!(description);
        let res = client
            .post(format!("{base}/alerts"))
            .json(&body)
            .send()
            .await
            .expect("post");
        match res.status().as_u16() {
            200 => acknowledged.push(format!("disk{i}")),
            503 => {
                let v: Value = res.json().await.expect("json");
                refused = Some((format!("disk{i}"), v["error"].to_string()));
                break;
            }
            other => panic!("{other}"),
        }
    }
    let (refused, why) = refused.expect("the disk filled up");
    assert!(why.contains("full"), "{why}");
    assert!(!acknowledged.is_empty());
    assert!(
        metric(
            &client,
            &base,
            "looptel_retro_store_errors_total{operation=\"write\"}"
        )
        .await
            >= 1.0
    );
    // Every acknowledged card is whole; the refused one is not there at all.
    let cards = retro.incidents(1000, 0).await.expect("list");
    let mut stored: Vec<String> = cards.iter().map(|c| c.alert.fingerprint.clone()).collect();
    stored.sort();
    acknowledged.sort();
    assert_eq!(stored, acknowledged);
    assert!(
        cards
            .iter()
            .all(|c| c.alert.annotation("description") == description)
    );
    assert!(!stored.contains(&refused));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_past_the_retention_are_deleted_and_counted_never_for_room() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("retro.db").display());
    let retro = retro(
        Store::open(&url).await.expect("open"),
        Settings {
            retention: Duration::from_secs(30 * 86_400),
            ..Settings::default()
        },
    );
    retro
        .receive(firing((0..5).map(|i| format!("keep{i}"))))
        .await
        .expect("stored");
    retro
        .receive(firing((0..3).map(|i| format!("old{i}"))))
        .await
        .expect("stored");
    // Three cards received 31 days ago.
    let mut c = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query(
        "UPDATE incidents SET received_ms = received_ms - 31 * 86400000 WHERE id LIKE 'old%'",
    )
    .execute(&mut c)
    .await
    .expect("age");
    // Announced changes: one made 31 days ago, one now.
    let now = time::OffsetDateTime::now_utc();
    for (at, what) in [(now - time::Duration::days(31), "old"), (now, "new")] {
        retro
            .store()
            .add_change(
                "order-service",
                &looptel_retro::incident::Change {
                    at,
                    kind: "deploy".to_owned(),
                    what: what.to_owned(),
                    version: None,
                    link: None,
                    source: looptel_retro::incident::ChangeSource::Announced,
                },
            )
            .await
            .expect("kept");
    }
    let sweep = retro.sweep().await.expect("sweep");
    assert_eq!(sweep.deleted, 3);
    let kept: Vec<String> = retro
        .store()
        .changes("order-service", now - time::Duration::days(60), now, 10)
        .await
        .expect("read")
        .into_iter()
        .map(|c| c.what)
        .collect();
    assert_eq!(kept, ["new"], "changes past the retention go too");
    let mut left: Vec<String> = retro
        .incidents(100, 0)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.alert.fingerprint)
        .collect();
    left.sort();
    assert_eq!(left, ["keep0", "keep1", "keep2", "keep3", "keep4"]);
    let base = serve(&retro).await;
    assert_eq!(
        metric(
            &reqwest::Client::new(),
            &base,
            "looptel_retro_incidents_deleted_total"
        )
        .await,
        3.0
    );
    // The list pages: a full page links the older ones.
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    let mut next = Some("/incidents?limit=2&format=json".to_owned());
    while let Some(path) = next.take() {
        let res = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("get");
        next = res
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.strip_prefix('<')?.split_once(">; rel=\"next\""))
            .map(|(href, _)| href.to_owned());
        let page: Vec<Value> = res.json().await.expect("json");
        assert!(page.len() <= 2);
        seen.extend(
            page.into_iter()
                .map(|c| c["alert"]["fingerprint"].as_str().map(str::to_owned)),
        );
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let html = client
        .get(format!("{base}/incidents?limit=2"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(
        html.contains("<a href=\"/incidents?limit=2&amp;offset=2\">older incidents</a>"),
        "{html}"
    );
}

#[tokio::test]
async fn writes_need_their_token_and_reads_theirs_when_one_is_set() {
    let retro = Retro::builder(
        spec(),
        Arc::new(looptel_retro::sources::prometheus::Prometheus::new(
            format!("http://{}", looptel_tests::closed_port()),
            looptel_retro::sources::Http::new(
                looptel_core::Instrumentation::disabled(looptel_core::Propagator::default()),
                Duration::from_secs(2),
            ),
        )),
        Store::open("sqlite::memory:").await.expect("store"),
    )
    .tokens(Tokens {
        webhook: Some(Token::new("am-secret").expect("token")),
        write: Some(Token::new("people-secret").expect("token")),
        read: Some(Token::new("read-secret").expect("token")),
    })
    .build();
    let base = serve(&retro).await;
    let client = reqwest::Client::new();
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut r = client.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    for (token, challenge) in [
        (None, r#"Bearer realm="looptel-retro""#),
        (
            Some("people-secret"),
            r#"Bearer realm="looptel-retro", error="invalid_token""#,
        ),
        (
            Some("am-secre"),
            r#"Bearer realm="looptel-retro", error="invalid_token""#,
        ),
    ] {
        let res = post("/alerts", token, one_alert("forged"))
            .await
            .expect("post");
        assert_eq!(res.status(), 401, "{token:?}");
        assert_eq!(res.headers()["www-authenticate"], challenge);
    }
    // Refused before the body is read: a huge body gets a 401, not a 413.
    let res = client
        .post(format!("{base}/alerts"))
        .body(vec![b' '; looptel_retro::MAX_WEBHOOK_BYTES + 1])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 401);
    assert_eq!(
        retro.store().count().await.expect("count"),
        0,
        "nothing forged"
    );

    let res = post("/alerts", Some("am-secret"), one_alert("real"))
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    let id = v["incidents"][0].as_str().expect("id").to_owned();

    let action = json!({"text": "Alert on the inventory's own SLO"});
    let path = format!("/incidents/{id}/actions");
    for token in [None, Some("am-secret"), Some("read-secret")] {
        let res = post(&path, token, action.clone()).await.expect("post");
        assert_eq!(res.status(), 401, "{token:?}");
    }
    let res = post(&path, Some("people-secret"), action)
        .await
        .expect("post");
    assert_eq!(res.status(), 201);

    for path in [
        "/incidents".to_owned(),
        format!("/incidents/{id}"),
        "/metrics".to_owned(),
    ] {
        let res = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 401, "{path}");
        let res = client
            .get(format!("{base}{path}"))
            .bearer_auth("read-secret")
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 200, "{path}");
    }
    let res = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200, "probes need no secret");
}

#[tokio::test]
async fn a_read_only_directory_is_a_clear_error_at_start() {
    let Some(disk) = Mounted::tmpfs("ro,size=64k") else {
        return;
    };
    let dir = &disk.dir;
    let file = dir.path().join("retro.db");
    let err = Store::open(&format!("sqlite://{}", file.display()))
        .await
        .expect_err("read-only");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("unable to open database file"), "{text}");
}
