//! Two real `looptel-retro` processes on one PostgreSQL database, as two
//! replicas behind an Alertmanager pair (which delivers each notification
//! from both members): every notification posted to both at once, 100
//! times, makes one card and one evidence gathering; both serve the same
//! cards; each recovery is checked once.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::process::Retro;
use common::{
    FakePrometheus, PgDatabase, alert, cards, events, metric, post, rfc3339, until, webhook,
};
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_make_one_card_per_alert_and_check_it_once() {
    let db = PgDatabase::create("replicas").await;
    let fake = FakePrometheus::default();
    let prometheus = format!("http://{}", fake.start().await);
    let args = [
        "--database-url",
        &db.url,
        "--prometheus-url",
        &prometheus,
        "--recovery-window",
        "1s",
        "--settle",
        "1ms",
    ];
    // Both start at once: the schema is migrated once (PostgreSQL's
    // advisory lock), neither fails.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Retro::start(&args));
        let b = s.spawn(|| Retro::start(&args));
        (a.join().expect("a"), b.join().expect("b"))
    });
    let client = reqwest::Client::new();
    let starts = rfc3339(OffsetDateTime::now_utc() - time::Duration::minutes(5));
    let never = "0001-01-01T00:00:00Z";
    // How many exemplar reads one gathering makes: a card on one replica.
    post(
        &client,
        &a.base,
        &webhook("firing", vec![alert("firing", "alone", &starts, never)]),
    )
    .await;
    until(&client, &a.base, "the lone card's evidence", |c| {
        c.len() == 1 && !c[0]["evidence"].is_null()
    })
    .await;
    let per_gathering = fake.exemplar_reads.load(Ordering::SeqCst);
    assert!(per_gathering > 0);
    let fingerprints: Vec<String> = (0..100).map(|i| format!("pair{i}")).collect();
    for fp in &fingerprints {
        let body = webhook("firing", vec![alert("firing", fp, &starts, never)]);
        let (x, y) = tokio::join!(post(&client, &a.base, &body), post(&client, &b.base, &body));
        assert_eq!(x, y, "the same card's id from both");
    }
    let on_a = until(&client, &a.base, "101 cards with their evidence", |c| {
        c.len() == 101 && c.iter().all(|c| !c["evidence"].is_null())
    })
    .await;
    assert_eq!(
        cards(&client, &b.base).await,
        on_a,
        "both serve the same cards"
    );
    for card in &on_a {
        assert_eq!(events(card, "evidence gathered"), 1, "{card:#}");
    }
    assert_eq!(
        fake.exemplar_reads.load(Ordering::SeqCst),
        101 * per_gathering,
        "each card gathered once, by one replica"
    );
    let new = metric(
        &client,
        &a.base,
        "looptel_retro_alerts_total{status=\"firing\",new=\"true\"}",
    )
    .await
        + metric(
            &client,
            &b.base,
            "looptel_retro_alerts_total{status=\"firing\",new=\"true\"}",
        )
        .await;
    let retries = metric(
        &client,
        &a.base,
        "looptel_retro_alerts_total{status=\"firing\",new=\"false\"}",
    )
    .await
        + metric(
            &client,
            &b.base,
            "looptel_retro_alerts_total{status=\"firing\",new=\"false\"}",
        )
        .await;
    assert_eq!((new, retries), (101.0, 100.0));

    let ended = rfc3339(OffsetDateTime::now_utc());
    for fp in &fingerprints {
        let body = webhook("resolved", vec![alert("resolved", fp, &starts, &ended)]);
        tokio::join!(post(&client, &a.base, &body), post(&client, &b.base, &body));
    }
    let on_b = until(&client, &b.base, "100 recoveries checked", |c| {
        c.iter().filter(|c| c["state"] == "verified").count() == 100
    })
    .await;
    // Later writes than the checks would show here: none come.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cards(&client, &a.base).await, on_b);
    assert_eq!(
        fake.recovery_reads.load(Ordering::SeqCst),
        100,
        "each recovery checked once, by one replica"
    );
    for card in on_b.iter().filter(|c| c["alert"]["fingerprint"] != "alone") {
        assert_eq!(events(card, "verified: recovered"), 1, "{card:#}");
        assert_eq!(events(card, "ErrorBudgetBurn1h resolved"), 1, "{card:#}");
    }
    a.terminate();
    b.terminate();
}
