//! A bad day, with real brokers: RabbitMQ behind a TCP proxy that cuts
//! every connection (the broker itself untouched), librdkafka's mock
//! cluster with its broker taken down and up, poison messages and hostile
//! headers published straight to the service's destinations, SIGTERM with
//! a message in hand. The service must stay up, say what is down on
//! `/health/ready`, lose no payment request and capture none twice, and
//! make every message it could not process visible (error span, ERROR
//! line, counter) and recoverable (a dead letter in the same trace).
//!
//! RabbitMQ is the one on 127.0.0.1:5672 (or `AMQP_URL`), which
//! `scripts/test.sh` starts; each test declares its own exchange and
//! queue and deletes them at the end. Kafka is a mock cluster of the test
//! (real protocol, real sockets) that the service reaches through
//! `KAFKA_BROKERS`, so the test can stop its broker.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Service, amqp_url, server_of, through};
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use looptel_tests::{Proxy, budget, eventually, scrape_value};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use serde_json::Value;

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn place(client: &reqwest::Client, addr: &str) -> Option<String> {
    let res = client
        .post(format!("http://{addr}/orders"))
        .header("content-type", "application/json")
        .body(r#"{"customer_id":"c-1","items":[{"sku":"pen","quantity":1}]}"#)
        .send()
        .await
        .ok()?;
    if res.status() != 201 {
        return None;
    }
    let body: Value = res.json().await.ok()?;
    body["id"].as_str().map(str::to_owned)
}

async fn ready(client: &reqwest::Client, addr: &str) -> (u16, Value) {
    let res = client
        .get(format!("http://{addr}/health/ready"))
        .send()
        .await
        .expect("readiness answers");
    let status = res.status().as_u16();
    (status, res.json().await.expect("a JSON body"))
}

async fn scrape(client: &reqwest::Client, addr: &str) -> String {
    client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body")
}

async fn until_ready(client: &reqwest::Client, addr: &str, what: &str) {
    eventually(budget::PROCESS, what, async || {
        (ready(client, addr).await.0 == 200).then_some(())
    })
    .await;
}

/// How many lines with `message` each order has (by `order.id`).
fn per_order(svc: &mut Service, message: &str) -> HashMap<String, usize> {
    let mut by_order = HashMap::new();
    for l in svc.drain() {
        if l["message"] == message {
            let id = l["order.id"].as_str().unwrap_or_default().to_owned();
            *by_order.entry(id).or_insert(0) += 1;
        }
    }
    by_order
}

/// How many `payment captured` lines each order has.
fn captured(svc: &mut Service) -> HashMap<String, usize> {
    per_order(svc, "payment captured")
}

/// A broker outage, as the service lives it: orders placed before, during
/// and after `proxy` cuts every connection for 3 s; `/health/ready` 503
/// naming `dependency` (and its gauge 0) during the cut, 200 (and 1) after;
/// in the end every order has exactly one `effect` line (`payment
/// captured`): nothing lost, nothing done twice, and the process still
/// runs.
async fn ride_out(svc: &mut Service, proxy: &Proxy, dependency: &str, effect: &str) {
    let addr = svc.http_addr();
    let client = reqwest::Client::new();
    let gauge = format!(r#"looptel_dependency_up{{dependency="{dependency}"}}"#);
    until_ready(&client, &addr, "ready before the cut").await;
    let mut orders = Vec::new();
    for _ in 0..2 {
        orders.push(place(&client, &addr).await.expect("placed before the cut"));
    }
    eventually(budget::PROCESS, "effects before the cut", async || {
        let done = per_order(svc, effect);
        orders.iter().all(|o| done.contains_key(o)).then_some(())
    })
    .await;

    proxy.cut();
    let down = eventually(budget::PROCESS, "not ready during the cut", async || {
        let (status, body) = ready(&client, &addr).await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(down["status"], "unavailable", "{down}");
    assert!(
        down["down"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["dependency"] == dependency && d["since"].is_string()),
        "{down}"
    );
    assert_eq!(
        scrape_value(&scrape(&client, &addr).await, &gauge),
        Some(0.0)
    );
    // Orders keep being placed (Kafka is up); their effects wait.
    for _ in 0..2 {
        orders.push(place(&client, &addr).await.expect("placed during the cut"));
    }
    // The outage lasts a while: its length is the scenario.
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore().await;

    until_ready(&client, &addr, "ready again after the cut").await;
    for _ in 0..2 {
        orders.push(place(&client, &addr).await.expect("placed after the cut"));
    }
    eventually(budget::PROCESS, "every effect after the cut", async || {
        let done = per_order(svc, effect);
        orders.iter().all(|o| done.contains_key(o)).then_some(())
    })
    .await;
    let done = per_order(svc, effect);
    for o in &orders {
        assert_eq!(done.get(o), Some(&1), "{o}: one {effect:?}: {done:?}");
    }
    assert_eq!(
        scrape_value(&scrape(&client, &addr).await, &gauge),
        Some(1.0)
    );
    assert!(svc.is_running(), "the process never exits");
}

/// A connection of the test's own to RabbitMQ, to publish what a foreign
/// producer would and read the dead letters; deletes the test's exchanges
/// and queues at the end.
struct Rabbit {
    channel: lapin::Channel,
    connection: Connection,
    name: String,
}

impl Rabbit {
    async fn connect(name: &str) -> Self {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ (scripts/test.sh starts it)");
        let channel = connection.create_channel().await.expect("channel");
        Self {
            channel,
            connection,
            name: name.to_owned(),
        }
    }

    async fn publish(&self, body: &[u8], headers: FieldTable) {
        self.channel
            .basic_publish(
                self.name.as_str().into(),
                "payment.requested".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_headers(headers),
            )
            .await
            .expect("published")
            .await
            .expect("handed over");
    }

    /// The next message of `<name>.dead`.
    async fn dead_letter(&self) -> Option<lapin::message::BasicGetMessage> {
        self.channel
            .basic_get(
                format!("{}.dead", self.name).as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get")
    }

    async fn delete(self) {
        let _ = self.connection.close(200, "done".into()).await;
        common::delete_payments(&amqp_url(), &self.name).await;
    }
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_outage_loses_no_payment_captures_none_twice_and_readiness_says_so() {
    let name = unique("outage");
    let proxy = Proxy::start(server_of(&amqp_url())).await;
    let mut svc = Service::start(&[
        ("AMQP_URL", through(&amqp_url(), proxy.addr())),
        ("PAYMENTS_EXCHANGE", name.clone()),
        ("PAYMENTS_QUEUE", name.clone()),
    ]);
    ride_out(&mut svc, &proxy, "rabbitmq", "payment captured").await;
    assert!(svc.count("rabbitmq unreachable, reconnecting") >= 1);
    assert!(svc.count("rabbitmq connected") >= 2, "reconnected");
    drop(svc);
    common::delete_payments(&amqp_url(), &name).await;
}

const POISON_TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4736";
const SHAPE_TRACE: &str = "6bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_payment_requests_are_dead_lettered_in_their_trace_and_hostile_headers_do_no_harm() {
    let name = unique("poison");
    let dir = tempfile::tempdir().expect("temp dir");
    let spans_file = dir.path().join("spans.jsonl");
    let mut svc = Service::start(&[
        ("AMQP_URL", amqp_url()),
        ("PAYMENTS_EXCHANGE", name.clone()),
        ("PAYMENTS_QUEUE", name.clone()),
        ("LOOPTEL_TRACES_FILE", spans_file.display().to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]);
    let addr = svc.http_addr();
    let client = reqwest::Client::new();
    until_ready(&client, &addr, "ready").await;
    let rabbit = Rabbit::connect(&name).await;

    let traced = |trace: &str| {
        let mut t = FieldTable::default();
        t.insert(
            "traceparent".into(),
            long(&format!("00-{trace}-00f067aa0ba902b7-01")),
        );
        t
    };
    // Poison: not JSON, and JSON of the wrong shape.
    rabbit
        .publish(b"{{garbage-7f3a", traced(POISON_TRACE))
        .await;
    rabbit
        .publish(br#"{"order_id": 424242}"#, traced(SHAPE_TRACE))
        .await;
    // Readable requests with hostile headers.
    let body = |id: &str| format!(r#"{{"order_id":"{id}","customer_id":"c-1","items":1}}"#);
    let mut hostile = Vec::new();
    let mut t = FieldTable::default();
    t.insert("traceparent".into(), AMQPValue::LongInt(7));
    t.insert(
        "baggage".into(),
        AMQPValue::FieldTable(FieldTable::default()),
    );
    hostile.push(t);
    let mut t = FieldTable::default();
    t.insert(
        "traceparent".into(),
        AMQPValue::ByteArray(vec![0xff, 0xfe, 0x00].into()),
    );
    t.insert("tracestate".into(), long(&"k=v,".repeat(12_500)));
    hostile.push(t);
    let mut t = FieldTable::default();
    let members: Vec<String> = (0..6_000).map(|i| format!("m{i}=v")).collect();
    t.insert(
        "baggage".into(),
        long(&format!("user.phone=+33612345678,{}", members.join(","))),
    );
    hostile.push(t);
    for (i, headers) in hostile.into_iter().enumerate() {
        rabbit
            .publish(body(&format!("h-{i}")).as_bytes(), headers)
            .await;
    }

    // The readable ones are captured; the poison is said, in its trace.
    eventually(budget::PROCESS, "hostile headers handled", async || {
        let c = captured(&mut svc);
        (0..3)
            .all(|i| c.get(&format!("h-{i}")) == Some(&1))
            .then_some(())
    })
    .await;
    let dead = eventually(budget::PROCESS, "both poison lines", async || {
        let lines: Vec<Value> = svc
            .drain()
            .iter()
            .filter(|l| l["message"] == "payment request dead-lettered")
            .cloned()
            .collect();
        (lines.len() == 2).then_some(lines)
    })
    .await;
    for l in &dead {
        assert_eq!(l["level"], "ERROR", "{l}");
        assert_eq!(l["messaging.destination.name"], name, "{l}");
        let text = l.to_string();
        assert!(text.contains("unreadable payment request"), "{l}");
        for body in ["garbage-7f3a", "424242"] {
            assert!(!text.contains(body), "the body is never logged: {l}");
        }
    }
    let traces: Vec<&str> = dead.iter().filter_map(|l| l["trace_id"].as_str()).collect();
    assert!(
        traces.contains(&POISON_TRACE) && traces.contains(&SHAPE_TRACE),
        "{traces:?}"
    );

    // Both dead letters wait in `<queue>.dead`, their body and trace kept,
    // RabbitMQ's x-death added.
    let mut letters = Vec::new();
    while letters.len() < 2 {
        let letter = eventually(budget::PROCESS, "a dead letter", async || {
            rabbit.dead_letter().await
        })
        .await;
        letters.push(letter);
    }
    for letter in &letters {
        let headers = letter
            .delivery
            .properties
            .headers()
            .clone()
            .expect("headers kept");
        assert!(headers.inner().contains_key("x-death"), "{headers:?}");
        let tp = match headers.inner().get("traceparent") {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => panic!("traceparent kept: {other:?}"),
        };
        assert!(
            tp.contains(POISON_TRACE) || tp.contains(SHAPE_TRACE),
            "{tp}"
        );
    }
    assert!(
        letters.iter().any(|l| l.delivery.data == b"{{garbage-7f3a"),
        "the body is kept"
    );

    // The process span failed with error.type; the reject is its child.
    let process_name = format!("process {name}:payment.requested:{name}");
    let nack_name = format!("nack {name}:payment.requested:{name}");
    let spans = eventually(budget::PROCESS, "the poison's spans", async || {
        let all = looptel_tests::otlp_json_spans(&spans_file);
        all.iter()
            .any(|s| s["name"] == nack_name.as_str() && s["traceId"] == SHAPE_TRACE)
            .then_some(all)
    })
    .await;
    for trace in [POISON_TRACE, SHAPE_TRACE] {
        let process = spans
            .iter()
            .find(|s| s["name"] == process_name.as_str() && s["traceId"] == trace)
            .expect("process span");
        assert_eq!(process["status"]["code"], 2, "Error: {process}");
        assert_eq!(
            looptel_tests::otlp_json_attribute(process, "error.type"),
            Some(&serde_json::json!({"stringValue": "unreadable_payment"}))
        );
        let nack = spans
            .iter()
            .find(|s| s["name"] == nack_name.as_str() && s["traceId"] == trace)
            .expect("nack span");
        assert_eq!(nack["parentSpanId"], process["spanId"]);
    }
    // The phone number in the hostile baggage went nowhere.
    let written = std::fs::read_to_string(&spans_file).expect("spans");
    assert!(!written.contains("+33612345678"));
    assert!(
        !svc.drain()
            .iter()
            .any(|l| l.to_string().contains("+33612345678"))
    );

    // Counted where the processing SLO reads.
    let text = scrape(&client, &addr).await;
    let dead_lettered: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("messaging_dead_lettered_total{")
                && l.contains(r#"error_type="unreadable_payment""#)
        })
        .filter_map(looptel_tests::sample_value)
        .sum();
    assert_eq!(dead_lettered, 2.0, "{text}");
    assert!(svc.is_running());
    drop(svc);
    rabbit.delete().await;
}

/// A mock cluster of the test's with the orders topics.
fn kafka() -> MockCluster<'static, DefaultProducerContext> {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("orders", 1, 1).expect("orders");
    mock.create_topic("orders.dlq", 1, 1).expect("orders.dlq");
    mock
}

fn dlq_consumer(servers: &str) -> StreamConsumer {
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&["orders.dlq"]).expect("subscribed");
    c
}

fn header<'a>(m: &'a rdkafka::message::BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

const EVENT_TRACE: &str = "7bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_events_that_fail_are_retried_then_dead_lettered_with_their_trace() {
    let mock = kafka();
    let servers = mock.bootstrap_servers();
    let mut svc = Service::start(&[
        ("KAFKA_BROKERS", servers.clone()),
        ("ENABLE_FAULTS", "1".to_owned()),
        ("MESSAGE_MAX_ATTEMPTS", "3".to_owned()),
    ]);
    let addr = svc.http_addr();
    let client = reqwest::Client::new();
    until_ready(&client, &addr, "ready").await;

    // Poison, from a foreign producer, with a trace.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to("orders")
                .key("poison")
                .payload(r#"{"order_id": 424242}"#)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "traceparent",
                    value: Some(&format!("00-{EVENT_TRACE}-00f067aa0ba902b7-01")),
                })),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
    let dlq = dlq_consumer(&servers);
    let poison = tokio::time::timeout(budget::PROCESS, dlq.recv())
        .await
        .expect("a dead letter in time")
        .expect("received");
    assert_eq!(poison.payload(), Some(&br#"{"order_id": 424242}"#[..]));
    assert_eq!(poison.key(), Some(&b"poison"[..]));
    assert_eq!(header(&poison, "x-original-topic"), Some("orders"));
    assert_eq!(header(&poison, "x-original-partition"), Some("0"));
    assert!(header(&poison, "x-original-offset").is_some());
    assert_eq!(
        header(&poison, "x-retries"),
        Some("0"),
        "poison is not retried"
    );
    let reason = header(&poison, "x-death-reason").expect("a reason");
    assert!(reason.contains("unreadable event"), "{reason}");
    assert!(
        !reason.contains("424242"),
        "the reason never quotes the body"
    );
    let tp = header(&poison, "traceparent").expect("trace context");
    assert!(
        tp.contains(EVENT_TRACE),
        "the dead letter keeps its trace: {tp}"
    );
    let line = svc.line("order event dead-lettered");
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["trace_id"], EVENT_TRACE);
    assert_eq!(line["messaging.destination.name"], "orders");

    // A failure of the consumer's own: retried, then dead-lettered.
    let faults = format!("http://{addr}/admin/faults");
    let res = client
        .put(&faults)
        .header("content-type", "application/json")
        .body(r#"{"consumer_error_rate": 1.0}"#)
        .send()
        .await
        .expect("faults");
    assert!(res.status().is_success());
    let order = place(&client, &addr).await.expect("placed");
    let failed = tokio::time::timeout(budget::PROCESS, dlq.recv())
        .await
        .expect("a second dead letter in time")
        .expect("received");
    assert_eq!(failed.key(), Some(order.as_bytes()));
    assert_eq!(header(&failed, "x-retries"), Some("2"), "3 attempts");
    assert!(
        header(&failed, "x-death-reason").is_some_and(|r| r.contains("injected fault")),
        "{:?}",
        header(&failed, "x-death-reason")
    );
    let text = scrape(&client, &addr).await;
    let retries: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("messaging_client_retries_total{")
                && l.contains(r#"error_type="fulfilment_failed""#)
        })
        .filter_map(looptel_tests::sample_value)
        .sum();
    assert_eq!(retries, 2.0, "{text}");
    let dead: f64 = text
        .lines()
        .filter(|l| l.starts_with("messaging_dead_lettered_total{") && l.contains("orders"))
        .filter_map(looptel_tests::sample_value)
        .sum();
    assert_eq!(dead, 2.0, "{text}");
    assert!(svc.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_broker_outage_is_ridden_out_and_said() {
    let mock = kafka();
    let servers = mock.bootstrap_servers();
    let mut svc = Service::start(&[
        ("KAFKA_BROKERS", servers.clone()),
        // (librdkafka's mock coordinator waits a session timeout for the
        // group's members when its broker comes back: a short one here.)
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_owned()),
    ]);
    let addr = svc.http_addr();
    let client = reqwest::Client::new();
    until_ready(&client, &addr, "ready").await;
    let fulfilled = async |svc: &mut Service, order: &str| {
        eventually(budget::PROCESS, "fulfilled", async || {
            svc.drain()
                .iter()
                .any(|l| l["message"] == "order fulfilled" && l["order.id"] == order)
                .then_some(())
        })
        .await;
    };
    // Steady first: the consumer is in its group and fulfilling.
    let before = place(&client, &addr).await.expect("placed before");
    fulfilled(&mut svc, &before).await;

    mock.broker_down(1).expect("broker down");
    let down = eventually(
        budget::PROCESS,
        "not ready while the broker is down",
        async || {
            let (status, body) = ready(&client, &addr).await;
            (status == 503).then_some(body)
        },
    )
    .await;
    assert!(
        down["down"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["dependency"] == "kafka"),
        "{down}"
    );
    // An order placed now waits for the broker (up to the producer's
    // message timeout, 10 s).
    let during = tokio::spawn({
        let (client, addr) = (client.clone(), addr.clone());
        async move { place(&client, &addr).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    mock.broker_up(1).expect("broker up");
    until_ready(&client, &addr, "ready once the broker is back").await;
    let during = during
        .await
        .expect("joined")
        .expect("placed across the outage");
    let after = place(&client, &addr).await.expect("placed after");
    for order in [&during, &after] {
        fulfilled(&mut svc, order).await;
    }
    assert!(svc.count("kafka brokers down") >= 1);
    assert!(svc.count("kafka broker up") >= 2);
    // librdkafka's reconnection errors are not a WARN each: one line says
    // the brokers are down, one that they are back.
    let warned = svc
        .drain()
        .iter()
        .filter(|l| l["level"] == "WARN" && l["message"] == "kafka client error")
        .count();
    assert!(warned <= 2, "{warned} WARN lines for one outage");
    // The consumer itself ran throughout: it is a dependency of its own.
    assert_eq!(
        scrape_value(
            &scrape(&client, &addr).await,
            r#"looptel_dependency_up{dependency="fulfilment"}"#
        ),
        Some(1.0)
    );
    assert!(svc.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_event_in_hand_leaves_it_to_the_next_consumer() {
    let mock = kafka();
    let servers = mock.bootstrap_servers();
    let mut first = Service::start(&[
        ("KAFKA_BROKERS", servers.clone()),
        ("ENABLE_FAULTS", "1".to_owned()),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_owned()),
        // Many attempts: the event is still in hand at SIGTERM.
        ("MESSAGE_MAX_ATTEMPTS", "1000".to_owned()),
    ]);
    let addr = first.http_addr();
    let client = reqwest::Client::new();
    until_ready(&client, &addr, "ready").await;
    let res = client
        .put(format!("http://{addr}/admin/faults"))
        .header("content-type", "application/json")
        .body(r#"{"consumer_error_rate": 1.0}"#)
        .send()
        .await
        .expect("faults");
    assert!(res.status().is_success());
    let order = place(&client, &addr).await.expect("placed");
    // Its first attempt failed: it is being retried.
    eventually(budget::PROCESS, "a retry", async || {
        let text = scrape(&client, &addr).await;
        text.lines()
            .any(|l| {
                l.starts_with("messaging_client_retries_total{")
                    && looptel_tests::sample_value(l).is_some_and(|v| v >= 1.0)
            })
            .then_some(())
    })
    .await;
    let exit = first.terminate();
    assert!(exit.success(), "{exit:?}");
    let stopped = first.line("fulfilment consumer stopped");
    assert_eq!(stopped["messages.returned"], 1, "{stopped}");
    assert_eq!(first.count("order fulfilled"), 0);

    // The next consumer of the group gets it: it was never committed.
    // (librdkafka's mock coordinator waits a session timeout before it
    // lets a new member in after one left: a short one here.)
    let mut second = Service::start(&[
        ("KAFKA_BROKERS", servers.clone()),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_owned()),
    ]);
    let line = eventually(budget::PROCESS, "the event consumed again", async || {
        second
            .drain()
            .iter()
            .find(|l| l["message"] == "order fulfilled")
            .cloned()
    })
    .await;
    assert_eq!(line["order.id"], order.as_str());
}

fn nats_server() -> SocketAddr {
    "127.0.0.1:4222".parse().expect("address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_is_ridden_out_by_the_clients_own_reconnection() {
    let subject = unique("notify");
    let proxy = Proxy::start(nats_server()).await;
    let mut svc = Service::start(&[
        ("NATS_URL", format!("nats://{}", proxy.addr())),
        ("NOTIFY_SUBJECT", subject.clone()),
    ]);
    // What is published during the cut waits in the client's buffer.
    ride_out(&mut svc, &proxy, "nats", "customer notified").await;
    assert!(svc.count("nats disconnected, reconnecting") >= 1);
    assert!(svc.count("nats connected") >= 2);
}

const NOTE_TRACE: &str = "8bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_notifications_are_dead_lettered_in_their_trace_and_hostile_headers_do_no_harm() {
    let subject = unique("notes");
    let mut svc = Service::start(&[
        ("NATS_URL", format!("nats://{}", nats_server())),
        ("NOTIFY_SUBJECT", subject.clone()),
    ]);
    let addr = svc.http_addr();
    let client = reqwest::Client::new();
    until_ready(&client, &addr, "ready").await;
    let nats = async_nats::connect(nats_server().to_string())
        .await
        .expect("NATS (scripts/test.sh starts it)");
    let mut dead = nats
        .subscribe(format!("{subject}.dlq"))
        .await
        .expect("subscribed");
    nats.flush().await.expect("flushed");

    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "traceparent",
        format!("00-{NOTE_TRACE}-00f067aa0ba902b7-01").as_str(),
    );
    nats.publish_with_headers(subject.clone(), headers, "{{garbage-7f3a".into())
        .await
        .expect("published");
    // A readable one whose headers are hostile.
    let mut hostile = async_nats::HeaderMap::new();
    hostile.insert("traceparent", "00-zz-zz-01");
    hostile.append(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    hostile.insert("tracestate", "k=v,".repeat(12_500).as_str());
    let members: Vec<String> = (0..6_000).map(|i| format!("m{i}=v")).collect();
    hostile.insert(
        "baggage",
        format!("user.phone=+33612345678,{}", members.join(",")).as_str(),
    );
    nats.publish_with_headers(
        subject.clone(),
        hostile,
        r#"{"order_id":"n-1","customer_id":"c-1","items":1}"#.into(),
    )
    .await
    .expect("published");
    nats.flush().await.expect("flushed");

    let letter = tokio::time::timeout(budget::PROCESS, futures_next(&mut dead))
        .await
        .expect("a dead letter in time")
        .expect("a message");
    assert_eq!(&letter.payload[..], b"{{garbage-7f3a", "the body is kept");
    let h = letter.headers.expect("headers");
    assert!(
        h.get("traceparent")
            .is_some_and(|v| v.as_str().contains(NOTE_TRACE)),
        "the dead letter keeps its trace: {h:?}"
    );
    assert_eq!(
        h.get("x-original-subject").map(|v| v.as_str()),
        Some(subject.as_str())
    );
    assert_eq!(h.get("x-retries").map(|v| v.as_str()), Some("0"));
    assert!(
        h.get("x-death-reason")
            .is_some_and(|v| v.as_str().contains("unreadable notification")
                && !v.as_str().contains("garbage")),
        "{h:?}"
    );
    let line = svc.line("notification dead-lettered");
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["trace_id"], NOTE_TRACE);
    assert!(!line.to_string().contains("garbage-7f3a"), "{line}");
    let ok = svc.line("customer notified");
    assert_eq!(ok["order.id"], "n-1");
    assert!(
        !svc.drain()
            .iter()
            .any(|l| l.to_string().contains("+33612345678"))
    );
    assert!(svc.is_running());
}

async fn futures_next(sub: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
    use tokio_stream::StreamExt as _;
    sub.next().await
}
