//! The real binary on a SQLite file, stopped with SIGTERM as a deploy
//! stops it, in the middle of each state of a card: nothing is lost, and
//! work left unfinished is finished by the next start.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::process::Retro;
use common::{FakePrometheus, alert, card, cards, events, post, rfc3339, until, webhook};
use looptel_tests::{budget, eventually};
use serde_json::json;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cards_and_their_actions_outlive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("retro.db").display());
    let prometheus = format!("http://{}", looptel_tests::closed_port());
    let args = ["--database-url", &db, "--prometheus-url", &prometheus];
    let first = Retro::start(&args);
    let stored = first.logged(&format!(
        "cards are kept in {}",
        dir.path().join("retro.db").display()
    ));
    assert_eq!(stored["cards"], 0);
    let client = reqwest::Client::new();
    let starts = rfc3339(OffsetDateTime::now_utc() - time::Duration::minutes(5));
    for batch in 0..10 {
        let alerts = (0..100)
            .map(|i| {
                alert(
                    "firing",
                    &format!("fp{batch}x{i}"),
                    &starts,
                    "0001-01-01T00:00:00Z",
                )
            })
            .collect();
        post(&client, &first.base, &webhook("firing", alerts)).await;
    }
    until(
        &client,
        &first.base,
        "1,000 cards with their evidence",
        |c| c.len() == 1000 && c.iter().all(|c| !c["evidence"].is_null()),
    )
    .await;
    let id = cards(&client, &first.base).await[500]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let res = client
        .post(format!("{}/incidents/{id}/actions", first.base))
        .json(&json!({"text": "Timeout on the inventory call: 2 s → 300 ms"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 201);
    let before = cards(&client, &first.base).await;
    first.terminate();

    let second = Retro::start(&args);
    let stored = second.logged(&format!(
        "cards are kept in {}",
        dir.path().join("retro.db").display()
    ));
    assert_eq!(stored["cards"], 1000);
    let after = cards(&client, &second.base).await;
    assert_eq!(after, before, "every card as it was");
    assert_eq!(
        card(&client, &second.base, &id).await["actions"][0]["text"],
        "Timeout on the inventory call: 2 s → 300 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_each_state_loses_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("retro.db").display());
    let fake = FakePrometheus::default();
    fake.hang.store(true, Ordering::SeqCst);
    let prometheus = format!("http://{}", fake.start().await);
    let args = [
        "--database-url",
        &db,
        "--prometheus-url",
        &prometheus,
        "--recovery-window",
        "2s",
        "--settle",
        "1ms",
    ];
    let client = reqwest::Client::new();
    let now = OffsetDateTime::now_utc();
    let starts = rfc3339(now - time::Duration::minutes(5));
    let never = "0001-01-01T00:00:00Z";

    let first = Retro::start(&args);
    // G: firing, its evidence being gathered (Prometheus hangs).
    post(
        &client,
        &first.base,
        &webhook("firing", vec![alert("firing", "gather", &starts, never)]),
    )
    .await;
    // V: resolved 10 s ago, its recovery window (2 s) already over at the
    // restart; W: resolved "in 4 s", its window not over at the restart.
    for fp in ["verify", "wait"] {
        post(
            &client,
            &first.base,
            &webhook("firing", vec![alert("firing", fp, &starts, never)]),
        )
        .await;
    }
    let v_end = now - time::Duration::seconds(10);
    let w_end = now + time::Duration::seconds(4);
    post(
        &client,
        &first.base,
        &webhook(
            "resolved",
            vec![alert("resolved", "verify", &starts, &rfc3339(v_end))],
        ),
    )
    .await;
    post(
        &client,
        &first.base,
        &webhook(
            "resolved",
            vec![alert("resolved", "wait", &starts, &rfc3339(w_end))],
        ),
    )
    .await;
    eventually(budget::PROCESS, "three gatherings in flight", async || {
        (fake.exemplar_reads.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert_eq!(
        fake.exemplar_reads.load(Ordering::SeqCst),
        3,
        "three gatherings in flight"
    );
    let before = cards(&client, &first.base).await;
    assert!(before.iter().all(|c| c["evidence"].is_null()));
    // V's check is due and in flight, its first query hanging too.
    let lines = first.terminate();
    let stopped = lines.last().expect("the last line");
    assert_eq!(
        stopped["released"], 5,
        "three gatherings and two recovery checks given back: {stopped}"
    );

    fake.hang.store(false, Ordering::SeqCst);
    let second = Retro::start(&args);
    until(
        &client,
        &second.base,
        "every card gathered, V and W verified",
        |c| {
            c.len() == 3
                && c.iter().all(|c| !c["evidence"].is_null())
                && c.iter().filter(|c| c["state"] == "verified").count() == 2
        },
    )
    .await;
    let id = |fp: &str| {
        format!(
            "{fp}-{}",
            (now - time::Duration::minutes(5)).unix_timestamp()
        )
    };
    let g = card(&client, &second.base, &id("gather")).await;
    assert_eq!(g["state"], "firing");
    assert_eq!(events(&g, "evidence gathered"), 1, "{g:#}");
    for fp in ["verify", "wait"] {
        let c = card(&client, &second.base, &id(fp)).await;
        assert_eq!(events(&c, "evidence gathered"), 1, "{c:#}");
        assert_eq!(events(&c, "verified: recovered"), 1, "{c:#}");
        assert_eq!(c["verification"]["requests"], 100.0);
    }
    // W was checked once its window was over, not at the restart.
    let w = card(&client, &second.base, &id("wait")).await;
    let checked = w["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .find(|e| {
            e["what"]
                .as_str()
                .is_some_and(|s| s.starts_with("verified"))
        })
        .and_then(|e| e["at"].as_str())
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .expect("when verified");
    assert!(
        checked >= w_end + time::Duration::seconds(2),
        "{checked} before {w_end} + 2 s"
    );
    let after = cards(&client, &second.base).await;
    let lines = second.terminate();
    let taken_up = |message: &str| lines.iter().filter(|l| l["message"] == message).count();
    assert_eq!(taken_up("gathering evidence left unfinished"), 3);
    assert_eq!(taken_up("checking a recovery left unchecked"), 2);

    // A third start: finished cards are served as they were, nothing redone.
    let third = Retro::start(&args);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cards(&client, &third.base).await, after);
    third.terminate();
}
